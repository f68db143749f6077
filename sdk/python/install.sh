#!/usr/bin/env bash
# Installs the Python SDK and what its tests need into sdk/python/.venv (pinned, idempotent): a
# new venv when Python or pyproject.toml changed, else the package alone again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

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

