# Shared helpers for scripts/*: installing what is missing, readable steps.
# shellcheck shell=bash

step() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $*"
    fi
}

APT_UPDATED=
# apt_install PACKAGE COMMAND: installs PACKAGE when COMMAND is not on PATH.
apt_install() {
    local pkg=$1 cmd=$2
    if command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/bin/$cmd" ]; then return 0; fi
    command -v apt-get >/dev/null 2>&1 || die "$cmd is missing and apt-get is not available: install $pkg"
    note "installing $pkg (for $cmd)"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$pkg" >/dev/null
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/bin/$cmd" ] || die "installing $pkg did not provide $cmd"
}

# python_venv DIR PACKAGES...: a virtualenv with these pip packages, created when missing.
python_venv() {
    local dir=$1; shift
    if [ ! -x "$dir/bin/python" ]; then
        note "creating Python virtualenv $dir"
        python3 -m venv "$dir" || die "python3 -m venv failed (install python3-venv)"
    fi
    if ! "$dir/bin/python" -c 'import sys' >/dev/null 2>&1; then die "broken virtualenv $dir"; fi
    local missing=()
    for p in "$@"; do
        local name=${p%%[=<>]*}
        "$dir/bin/pip" show -q "$name" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        note "pip installing ${missing[*]}"
        "$dir/bin/pip" install -q --disable-pip-version-check "${missing[@]}" >/dev/null
    fi
}

# cargo_tool CRATE SUBCOMMAND: `cargo install --locked CRATE` when `cargo SUBCOMMAND`
# is missing (from crates.io; the first time takes minutes).
cargo_tool() {
    local crate=$1 sub=$2
    if cargo "$sub" --version >/dev/null 2>&1; then return 0; fi
    note "installing $crate from crates.io (cargo install --locked; a few minutes, once)"
    local t0; t0=$(date +%s)
    cargo install --locked --quiet "$crate" || die "cargo install $crate failed"
    cargo "$sub" --version >/dev/null 2>&1 || die "installing $crate did not provide cargo $sub"
    note "installed $crate in $(( $(date +%s) - t0 ))s"
}

# unit_exposure UNIT_FILE MAX: prints systemd-analyze's overall exposure of the unit
# (offline: no systemd needs to run) and fails when it is above MAX (e.g. 1.5) or
# when systemd complains about the file.
unit_exposure() {
    local unit=$1 max=$2 out err score
    out=$(mktemp) err=$(mktemp)
    systemd-analyze security --offline=true --no-pager "$unit" >"$out" 2>"$err" || true
    if grep -q . "$err"; then
        cat "$err" >&2; rm -f "$out" "$err"
        die "systemd-analyze complained about $unit"
    fi
    # What still counts against it (✗, or "-" in the C locale).
    grep -E '^(✗|- )' "$out" | sed 's/^/    /' >&2 || true
    score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p' "$out")
    rm -f "$out" "$err"
    [ -n "$score" ] || die "no overall exposure level from systemd-analyze for $unit"
    note "overall exposure of $(basename "$unit"): $score (limit $max; Debian's certbot.service: 9.4)"
    awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' \
        || die "exposure $score of $unit is above $max: tighten the sandbox"
}

# deb_assets DIR COMMAND...: shell completions and man pages generated from the CLI
# (COMMAND runs gclb-acme), for the assets of [package.metadata.deb]: target/assets.
deb_assets() {
    local dir=$1; shift
    rm -rf "$dir"
    mkdir -p "$dir/completions" "$dir/man"
    "$@" completions bash >"$dir/completions/gclb-acme.bash"
    "$@" completions zsh >"$dir/completions/_gclb-acme"
    "$@" completions fish >"$dir/completions/gclb-acme.fish"
    "$@" manpage --out-dir "$dir/man"
    note "generated $(find "$dir" -type f | wc -l) files in $dir (completions, man pages)"
}
