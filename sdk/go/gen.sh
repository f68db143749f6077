#!/usr/bin/env bash
# Regenerates the checked-in Go code for proto/proto/edge.proto into internal/edgepb, so users
# of the module need no protoc. `gen.sh --check` generates into a temp dir and fails when the
# checked-in copy differs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"

# Pinned generator versions: the generated code is checked in, so it must not change with
# whatever @latest is on the day.
protoc_gen_go_version=v1.36.12
protoc_gen_go_grpc_version=v1.6.2
tools="$here/.tools/bin"
mkdir -p "$tools"

install_tool() { # name module version
  local stamp="$tools/.$1-$3"
  if [ ! -x "$tools/$1" ] || [ ! -e "$stamp" ]; then
    GOBIN="$tools" go install "$2@$3"
    rm -f "$tools/.$1-"*
    touch "$stamp"
  fi
}
install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$protoc_gen_go_version"
install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$protoc_gen_go_grpc_version"

if ! command -v protoc >/dev/null 2>&1; then
  echo "gen.sh: protoc is missing (Debian: apt-get install -y protobuf-compiler)" >&2
  exit 1
fi

pkg="github.com/setpoint/setpoint/sdk/go/internal/edgepb"
generate() { # out dir
  mkdir -p "$1"
  PATH="$tools:$PATH" protoc -I "$root/proto/proto" \
    --go_out="$1" --go_opt=paths=source_relative --go_opt="Medge.proto=$pkg;edgepb" \
    --go-grpc_out="$1" --go-grpc_opt=paths=source_relative --go-grpc_opt="Medge.proto=$pkg;edgepb" \
    edge.proto
}

out="$here/internal/edgepb"
if [ "${1:-}" = "--check" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  # The protoc version line names the machine's protoc, not a difference in the code.
  strip() { grep -Ev '^//[[:space:]]+(- )?protoc[[:space:]]+v' "$1" > "$2"; }
  stale=0
  for f in "$tmp"/*.go; do
    name="$(basename "$f")"
    strip "$f" "$tmp/$name.new"
    if [ ! -f "$out/$name" ] || { strip "$out/$name" "$tmp/$name.old"; ! cmp -s "$tmp/$name.new" "$tmp/$name.old"; }; then
      echo "gen.sh --check: sdk/go/internal/edgepb/$name is stale; run sdk/go/gen.sh" >&2
      stale=1
    fi
  done
  for f in "$out"/*.go; do
    [ -f "$tmp/$(basename "$f")" ] || { echo "gen.sh --check: sdk/go/internal/edgepb/$(basename "$f") is no longer generated" >&2; stale=1; }
  done
  exit $stale
fi

rm -rf "$out"
generate "$out"
echo "gen.sh: wrote $out" >&2
