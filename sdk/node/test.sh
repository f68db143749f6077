#!/usr/bin/env bash
# Installs the pinned dependencies (fast when already installed), type-checks the sources and the
# public types, and runs the SDK's tests with node's own runner. The end-to-end tests start a real
# `setpoint dev` from SETPOINT_BIN (default <repo>/target/debug/setpoint) and fail if it is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
./install.sh
node_modules/.bin/tsc -p tsconfig.json
exec node --test --test-timeout=120000 test/*.test.js
