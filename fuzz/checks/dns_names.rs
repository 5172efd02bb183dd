//! Names and small text formats: DNS names, GCP resource names, TXT quoting and the
//! TXT merge, zone membership, human durations and maintenance-window cron
//! expressions. The first byte picks the function (a readable letter in the seeds);
//! the rest is its text input.
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/dns_names.rs` and the seed replay test
//! `tests/fuzz_seeds.rs`, so both check exactly the same properties.

use gclb_acme::config::duration;
use gclb_acme::dns::{cloud_dns, txt, zone};
use gclb_acme::gcp::dns::{Change, ManagedZone, ResourceRecordSet};
use gclb_acme::names;
use gclb_acme::schedule::Cron;
use time::OffsetDateTime;

fn dns_name(s: &str) {
    if let Ok(n) = names::normalize_dns_name(s) {
        assert!(n.len() <= 253, "{n:?} is too long");
        assert!(!n.ends_with('.'), "{n:?} keeps its trailing dot");
        assert!(
            !n.bytes().any(|b| b.is_ascii_uppercase()),
            "{n:?} is not lower case"
        );
        assert_eq!(
            names::normalize_dns_name(&n),
            Ok(n.clone()),
            "not idempotent"
        );
        let base = names::base_name(&n);
        assert!(
            names::normalize_dns_name(base).is_ok(),
            "base of {n:?} is refused"
        );
    }
}

fn gcp_name(s: &str) {
    for max in [1, 30, 50, 63] {
        if names::is_gcp_name(s, max) {
            assert!(!s.is_empty() && s.len() <= max);
        }
    }
    if gclb_acme::config::is_project_id(s) {
        assert!(names::is_gcp_name(s, 30));
    }
    let _ = names::gcp_name_rule(s.len());
}

fn quoting(s: &str) {
    let q = txt::quote(s);
    assert_eq!(txt::unquote(&q), s, "unquote(quote(v)) != v; quoted: {q}");
    let _ = txt::unquote(s);
}

/// Line 1: the record name; `+v` adds v, `-v` removes v, `=n` sets the TTL of the
/// current set; any other line is a current rrdata (there is a current set when at
/// least one such line or a `=` line is present).
fn plan(s: &str) {
    let mut lines = s.split('\n');
    let name = lines.next().unwrap_or_default().to_string();
    let mut edit = txt::Edit {
        name: name.clone(),
        ..Default::default()
    };
    let mut current: Option<ResourceRecordSet> = None;
    for line in lines {
        if let Some(v) = line.strip_prefix('+') {
            edit.add.push(v.to_string());
        } else if let Some(v) = line.strip_prefix('-') {
            edit.remove.push(v.to_string());
        } else {
            let cur = current.get_or_insert_with(|| ResourceRecordSet {
                name: name.clone(),
                rtype: "TXT".into(),
                ..Default::default()
            });
            match line.strip_prefix('=') {
                Some(ttl) => cur.ttl = ttl.parse().ok(),
                None => cur.rrdatas.push(line.to_string()),
            }
        }
    }
    let mut change = Change::default();
    let changed = cloud_dns::plan_change(&mut change, current.as_ref(), &edit, 60);
    if !changed {
        assert_eq!(
            change,
            Change::default(),
            "no change reported, but one was planned"
        );
    }
    let after: Vec<String> = if changed {
        change
            .additions
            .iter()
            .flat_map(|r| r.rrdatas.iter().map(|d| txt::unquote(d)))
            .collect()
    } else {
        current
            .iter()
            .flat_map(|r| r.rrdatas.iter().map(|d| txt::unquote(d)))
            .collect()
    };
    for v in &edit.add {
        assert!(after.contains(v), "added value {v:?} is missing: {after:?}");
    }
    for v in &edit.remove {
        if !edit.add.contains(v) {
            assert!(
                !after.contains(v),
                "removed value {v:?} is still there: {after:?}"
            );
        }
    }
    if let Some(cur) = &current {
        for d in &cur.rrdatas {
            let v = txt::unquote(d);
            if !edit.remove.contains(&v) {
                assert!(
                    after.contains(&v),
                    "another writer's value {v:?} was dropped"
                );
            }
        }
        if changed {
            assert_eq!(change.deletions.as_slice(), std::slice::from_ref(cur));
        }
    }
    for r in &change.additions {
        assert!(!r.rrdatas.is_empty(), "an empty record set is added");
    }
}

fn zones(s: &str) {
    let (fqdn, z) = s.split_once(' ').unwrap_or((s, s));
    let inside = zone::in_zone(fqdn, z);
    assert!(zone::in_zone(fqdn, fqdn), "a name is not in its own zone");
    let managed = ManagedZone {
        name: "z".into(),
        dns_name: z.to_string(),
        ..Default::default()
    };
    let selected = zone::select(std::slice::from_ref(&managed), fqdn, "p");
    assert_eq!(selected.is_ok(), inside);
    let _ = zone::check_explicit(&managed, fqdn);
}

fn durations(s: &str) {
    if let Ok(d) = duration::parse(s) {
        let text = duration::format(d);
        assert_eq!(duration::parse(&text), Ok(d), "{s:?} -> {d:?} -> {text:?}");
    }
}

fn cron(s: &str) {
    let (expr, at) = s.split_once('@').unwrap_or((s, "1798761600"));
    let Ok(c) = Cron::parse(expr) else {
        return;
    };
    let Some(t) = at
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| OffsetDateTime::from_unix_timestamp(n).ok())
    else {
        return;
    };
    let Some(open) = c.next_open(t) else {
        return;
    };
    assert!(open >= t, "next_open({t}) = {open} is in the past");
    assert!(c.matches(open), "next_open({t}) = {open} does not match");
    if c.matches(t) {
        assert_eq!(open, t);
    } else {
        let before = open - time::Duration::minutes(1);
        assert!(
            before < t || !c.matches(before),
            "next_open({t}) = {open} skipped {before}"
        );
    }
}

/// Runs every check on one input; panics when a property does not hold.
pub fn run(data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match op {
        b'n' => dns_name(s),
        b'g' => gcp_name(s),
        b'q' => quoting(s),
        b'p' => plan(s),
        b'z' => zones(s),
        b'd' => durations(s),
        b'c' => cron(s),
        _ => match op % 7 {
            0 => dns_name(s),
            1 => gcp_name(s),
            2 => quoting(s),
            3 => plan(s),
            4 => zones(s),
            5 => durations(s),
            _ => cron(s),
        },
    }
}
