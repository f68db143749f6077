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

# The stamp names everything that decides the venv's contents; a change reinstalls.
stamp_want="$("$python" --version 2>&1) $(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp_want" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # The build backend is installed once so reinstalling the package below needs no network.
  "$venv/bin/pip" install --quiet --disable-pip-version-check "setuptools==84.2.1"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation "$here[test]"
  echo "$stamp_want" > "$venv/.stamp"
else
  # The package's own code may have changed since: reinstall it alone, without dependencies.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall "$here"
fi

cd "$here"
# The pytest script (not `python -m pytest`) keeps the checkout off sys.path, so the tests and the
# conformance driver exercise the installed package.
exec "$venv/bin/pytest" -p no:cacheprovider "$@"
