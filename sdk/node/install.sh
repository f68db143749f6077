#!/usr/bin/env bash
# Installs the pinned dependencies from package-lock.json (npm ci) unless node_modules already
# matches the lock file: the lock's hash is stamped into node_modules after a successful install,
# so a second run costs one sha256sum.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.setpoint-lock-sha256"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
# --ignore-scripts: nothing we depend on needs an install script, and none may download anything.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
echo "$want" > "$stamp"
