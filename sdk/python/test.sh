#!/usr/bin/env bash
# Installs what the Python SDK's tests need into sdk/python/.venv (pinned, idempotent) and runs
# them with pytest. The end-to-end tests start a real `setpoint dev` from $SETPOINT_BIN (default:
# <repo root>/target/debug/setpoint) and fail when it is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
export SETPOINT_BIN="${SETPOINT_BIN:-$root/target/debug/setpoint}"

"$here/install.sh"

cd "$here"
# The pytest script (not `python -m pytest`) keeps the checkout off sys.path, so the tests and the
# conformance driver exercise the installed package.
exec "$venv/bin/pytest" -p no:cacheprovider "$@"
