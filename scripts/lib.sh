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

# advisory_source_time DIR: the Unix time of the advisory database in DIR, either a git
# clone of rustsec/advisory-db (its last commit) or a plain-file snapshot whose SNAPSHOT
# file has a `date:` line (its upstream commit's date); 0 when DIR holds neither.
advisory_source_time() {
    local dir=$1 d
    if [ -d "$dir/.git" ]; then
        git -C "$dir" log -1 --format=%ct 2>/dev/null || echo 0
    elif [ -f "$dir/SNAPSHOT" ]; then
        d=$(sed -n 's/^date: *//p' "$dir/SNAPSHOT" | head -n 1)
        date -d "$d" +%s 2>/dev/null || echo 0
    else
        echo 0
    fi
}

# advisory_db_install SOURCE DEST: makes DEST a git repository holding SOURCE's
# advisories, as cargo deny expects of its database. A clone is copied; a plain-file
# snapshot becomes one commit dated as the snapshot's upstream commit, so cargo deny's
# staleness check and our age line see the real age of the data.
advisory_db_install() {
    local src=$1 dest=$2 tmp d commit
    tmp=$(mktemp -d "$(dirname "$dest")/.advisory-db.XXXXXX")
    if [ -d "$src/.git" ]; then
        cp -a "$src/." "$tmp/"
    else
        d=$(sed -n 's/^date: *//p' "$src/SNAPSHOT" | head -n 1)
        commit=$(sed -n 's/^commit: *//p' "$src/SNAPSHOT" | head -n 1)
        cp -a "$src/." "$tmp/"
        chmod -R u+w "$tmp"
        git -C "$tmp" init -q -b main
        git -C "$tmp" add -A
        GIT_AUTHOR_DATE=$d GIT_COMMITTER_DATE=$d git -C "$tmp" \
            -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
            commit -q -m "RustSec advisory-db snapshot of upstream $commit"
    fi
    rm -rf "$dest"
    mv "$tmp" "$dest"
}
