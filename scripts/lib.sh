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
