#!/usr/bin/env bash
# Regenerates setpoint/_pb/ from proto/proto/edge.proto with grpcio-tools (which bundles its own
# protoc, so the output does not depend on the machine's protoc version). `--check` generates into
# a temporary directory and fails when the checked-in copy differs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
proto_dir="$root/proto/proto"
out="$here/setpoint/_pb"
# Pinned: the generated code names the protobuf/grpcio versions it needs, so a different
# generator version would make --check fail for no behavioural reason.
tools_version="1.85.1"
tools="$here/.tools/gen"

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
if ! "$tools/bin/python" -c "import grpc_tools, importlib.metadata as m; assert m.version('grpcio-tools') == '$tools_version'" 2>/dev/null; then
  echo "gen.sh: installing grpcio-tools==$tools_version into $tools" >&2
  rm -rf "$tools"
  "$python" -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check "grpcio-tools==$tools_version"
fi

generate() {
  local dest="$1"
  mkdir -p "$dest"
  "$tools/bin/python" -m grpc_tools.protoc -I"$proto_dir" \
    --python_out="$dest" --pyi_out="$dest" --grpc_python_out="$dest" "$proto_dir/edge.proto"
  # grpc_tools writes `import edge_pb2`, which only works with the folder on sys.path; the
  # package imports it relatively.
  sed -i 's/^import edge_pb2 as edge__pb2$/from . import edge_pb2 as edge__pb2/' "$dest/edge_pb2_grpc.py"
  cat > "$dest/__init__.py" <<'PY'
"""Generated gRPC and protobuf code for setpoint.edge.v1 (sdk/python/gen.sh makes it; do not edit)."""
PY
}

if [ "$check" = 1 ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  if ! diff -r -x __pycache__ "$tmp" "$out" >/dev/null 2>&1; then
    diff -r -x __pycache__ "$tmp" "$out" | head -40 >&2 || true
    echo "gen.sh --check: sdk/python/setpoint/_pb is stale versus proto/proto/edge.proto; run sdk/python/gen.sh and commit the result" >&2
    exit 1
  fi
  echo "gen.sh --check: sdk/python/setpoint/_pb is up to date"
else
  rm -rf "$out"
  generate "$out"
  echo "gen.sh: wrote $out"
fi
