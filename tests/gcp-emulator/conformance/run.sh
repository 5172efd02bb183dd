#!/usr/bin/env bash
# Conformance: drive the gcp-emulator with Google's own Python clients
# (google-api-python-client; google-cloud-storage for Cloud Storage).
# Usage: tests/gcp-emulator/conformance/run.sh [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Installs only into the virtualenv; a no-op once satisfied.
# google-cloud-certificate-manager: Google's GAPIC client (REST transport), the
# one client of these tests not built from a discovery document.
if ! "$venv/bin/python" -c 'import googleapiclient, pytest, cryptography, google.cloud.storage, google.cloud.certificate_manager' 2>/dev/null; then
  "$venv/bin/pip" install --quiet google-api-python-client pytest cryptography google-cloud-storage google-cloud-certificate-manager
fi

(cd "$root" && cargo build --quiet -p gcp-emulator --bin gcp-emulator)
target="${CARGO_TARGET_DIR:-$root/target}"
export EMULATOR_BIN="$target/debug/gcp-emulator"

cd "$here"
exec "$venv/bin/python" -m pytest -q conformance_test.py storage_test.py "$@"
