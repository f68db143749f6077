#!/usr/bin/env bash
# Runs the Rust SDK's tests: unit tests, and integration tests against a real `setpoint dev`.
# Needs only the Rust toolchain: cargo fetches the pinned dependencies (Cargo.lock), and the
# `setpoint` binary is built here unless SETPOINT_BIN names one. Exit code = result.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SETPOINT_BIN:-}" ]; then
  cargo build --locked -p setpoint-cli
  SETPOINT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/setpoint"
  export SETPOINT_BIN
fi
cargo test --locked -p setpoint-sdk "$@"
