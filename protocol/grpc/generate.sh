#!/bin/sh
# Regenerate the committed gRPC modules from cloudevent.proto.
# Needs grpcio-tools matching the grpcio/protobuf the project runs (kept out of the project venv):
#   python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install "grpcio-tools==1.85.*"
set -eu
cd "$(dirname "$0")/../.."
PY="${GEN_PYTHON:-/tmp/gen-venv/bin/python}"
"$PY" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. protocol/grpc/cloudevent.proto
# NB: the generated files are linted and type-checked with the rest of the package (pyproject is shared), so
# mark them: no lint rules, no complaints about the bare Mapping protoc writes into the stubs; then format.
for f in protocol/grpc/cloudevent_pb2.py protocol/grpc/cloudevent_pb2_grpc.py protocol/grpc/cloudevent_pb2.pyi; do
    { echo "# ruff: noqa"; echo "# mypy: disable-error-code=\"type-arg\""; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
done
"$(dirname "$PY")/python" -m ruff --version >/dev/null 2>&1 && RUFF="$(dirname "$PY")/python -m ruff" || RUFF=".venv/bin/ruff"
$RUFF format -q protocol/grpc/
