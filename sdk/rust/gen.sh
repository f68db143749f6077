#!/usr/bin/env bash
# The Rust SDK checks in no generated code: its gRPC client comes from the workspace crate
# `setpoint-proto`, whose build.rs compiles proto/proto/edge.proto with protox (pure Rust) at
# build time, so it can never be stale and users need no protoc. This script therefore only
# checks that the SDK builds against the current proto; `--check` does the same (nothing to
# compare), so both modes fail exactly when the proto and the SDK disagree.
#
# Usage: sdk/rust/gen.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
  ""|--check) ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
if ! cargo check --locked -p setpoint-sdk --all-targets; then
  echo "sdk/rust: the SDK does not build against proto/proto/edge.proto; update sdk/rust/src to the proto" >&2
  exit 1
fi
echo "sdk/rust: generated at build time by setpoint-proto (protox); nothing checked in to regenerate"
