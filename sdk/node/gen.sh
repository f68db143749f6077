#!/usr/bin/env bash
# Regenerates src/gen/edge_pb.{js,d.ts} from proto/proto/edge.proto with Debian's protoc and
# protoc-gen-es (a pinned devDependency). `gen.sh --check` generates into a temp dir and fails
# when the checked-in copy differs, so a proto change cannot ship with stale SDK code.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/src/gen"

command -v protoc >/dev/null || { echo "gen.sh: protoc is missing (apt-get install -y protobuf-compiler)" >&2; exit 1; }
"$here/install.sh"

generate() {
  protoc \
    --plugin=protoc-gen-es="$here/node_modules/.bin/protoc-gen-es" \
    -I "$root/proto/proto" \
    --es_out="$1" \
    --es_opt=target=js+dts,js_import_style=legacy_commonjs \
    edge.proto
}

if [[ "${1:-}" == "--check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  if ! diff -r "$tmp" "$out" >/dev/null; then
    diff -ru "$out" "$tmp" >&2 || true
    echo "gen.sh --check: sdk/node/src/gen is stale against proto/proto/edge.proto; run sdk/node/gen.sh and commit" >&2
    exit 1
  fi
  echo "sdk/node/src/gen is up to date"
else
  rm -rf "$out"
  mkdir -p "$out"
  generate "$out"
  echo "generated $out"
fi
