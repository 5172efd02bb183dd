//! What the Debian package ships besides the binary: shell completions and man pages,
//! generated from the command line by hidden subcommands.

use assert_cmd::Command;

const PUBLIC: [&str; 8] = [
    "run",
    "renew",
    "status",
    "check",
    "bootstrap",
    "teardown",
    "certificate-map",
    "state",
];
/// Subcommands of subcommands: a page each too.
const NESTED: [&str; 3] = [
    "certificate-map-attach",
    "certificate-map-detach",
    "state-move",
];

fn cmd() -> Command {
    let mut c = Command::cargo_bin("gclb-acme").unwrap();
    c.env_remove("GCLB_ACME_CONFIG").env("HOME", "/nonexistent");
    c
}

fn stdout_of(args: &[&str]) -> String {
    let out = cmd().args(args).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn completions_offer_every_public_subcommand_and_no_hidden_one() {
    for shell in ["bash", "zsh", "fish"] {
        let text = stdout_of(&["completions", shell]);
        for sub in PUBLIC {
            assert!(text.contains(sub), "{shell}: {sub} missing");
        }
        for opt in ["--config", "--log-format", "--certificate", "--dry-run"] {
            assert!(
                text.contains(opt.trim_start_matches('-')),
                "{shell}: {opt} missing"
            );
        }
        for hidden in ["completions", "manpage"] {
            assert!(!text.contains(hidden), "{shell}: offers hidden {hidden}");
        }
    }
    let bash = stdout_of(&["completions", "bash"]);
    assert!(bash.contains("complete -F _gclb__acme"), "{bash}");
    assert!(stdout_of(&["completions", "zsh"]).starts_with("#compdef gclb-acme"));
    assert!(stdout_of(&["completions", "fish"]).contains("complete -c gclb-acme"));
}

#[test]
fn completions_reject_an_unknown_shell() {
    cmd()
        .args(["completions", "cmd.exe"])
        .assert()
        .failure()
        .code(2);
}

#[test]
fn manpage_is_roff_naming_every_subcommand() {
    let roff = stdout_of(&["manpage"]);
    assert!(roff.contains(".TH gclb-acme 1"), "{roff}");
    assert!(roff.contains(".SH NAME"));
    assert!(roff.contains(".SH SYNOPSIS"));
    assert!(roff.contains(".SH SUBCOMMANDS"));
    assert!(roff.contains("\\-\\-config"));
    for sub in PUBLIC {
        assert!(
            // roff escapes every hyphen.
            roff.contains(&format!("gclb\\-acme\\-{}(1)", sub.replace('-', "\\-"))),
            "{sub} missing"
        );
    }
    assert!(!roff.contains("manpage") && !roff.contains("completions"));
}

#[test]
fn manpage_out_dir_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    cmd()
        .args(["manpage", "--out-dir"])
        .arg(&out)
        .assert()
        .success();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = PUBLIC
        .iter()
        .chain(&NESTED)
        .map(|s| format!("gclb-acme-{s}.1"))
        .collect();
    want.push("gclb-acme.1".to_string());
    want.sort();
    assert_eq!(names, want);
    let renew = std::fs::read_to_string(out.join("gclb-acme-renew.1")).unwrap();
    assert!(renew.contains(".TH gclb-acme-renew 1"), "{renew}");
    assert!(renew.contains("\\-\\-force"));
}

#[test]
fn hidden_subcommands_stay_out_of_help() {
    let help = stdout_of(&["--help"]);
    assert!(
        !help.contains("completions") && !help.contains("manpage"),
        "{help}"
    );
}
