#!/usr/bin/env bash
# Runs the Go SDK's tests: vet, the generated code's freshness, and `go test -race ./...`
# (unit tests, and end-to-end tests against a real `setpoint dev` from SETPOINT_BIN, default
# <repo root>/target/debug/setpoint — they fail, never skip, without it). Needs only the Go
# toolchain: modules come from the Go module proxy into the normal module cache (pinned by
# go.sum), generators into .tools/. Exit code = result.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || { echo "sdk/go/test.sh: Go is missing (1.26 or later)" >&2; exit 1; }
export SETPOINT_BIN="${SETPOINT_BIN:-$root/target/debug/setpoint}"
[ -x "$SETPOINT_BIN" ] || echo "sdk/go/test.sh: warning: no setpoint binary at $SETPOINT_BIN; the end-to-end tests will fail" >&2

cd "$here"
go mod download
go vet ./...
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "sdk/go/test.sh: not gofmt-formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi
if command -v protoc >/dev/null 2>&1; then
  ./gen.sh --check
else
  echo "sdk/go/test.sh: protoc is missing; skipping gen.sh --check (scripts/ensure-tools installs it)" >&2
fi
go build -o /dev/null ./cmd/setpoint-conformance
go test -race -count=1 "$@" ./...
