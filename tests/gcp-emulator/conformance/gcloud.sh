#!/usr/bin/env bash
# Conformance: drive the gcp-emulator with the real Google Cloud CLI (gcloud).
# Usage: tests/gcp-emulator/conformance/gcloud.sh [pytest args...]
# Fails (never skips) when gcloud is missing; scripts/test installs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

if ! command -v gcloud >/dev/null 2>&1; then
  echo "gcloud.sh: gcloud is missing: install the Google Cloud CLI" >&2
  echo "  (Debian/Ubuntu: add Google's apt repository, see" >&2
  echo "  https://cloud.google.com/sdk/docs/install#deb, then apt-get install google-cloud-cli)" >&2
  exit 1
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Installs only into the virtualenv; a no-op once satisfied.
if ! "$venv/bin/python" -c 'import pytest, cryptography' 2>/dev/null; then
  "$venv/bin/pip" install --quiet pytest cryptography
fi

(cd "$root" && cargo build --quiet -p gcp-emulator --bin gcp-emulator)
target="${CARGO_TARGET_DIR:-$root/target}"
export EMULATOR_BIN="$target/debug/gcp-emulator"

cd "$here"
exec "$venv/bin/python" -m pytest -q gcloud_test.py "$@"
