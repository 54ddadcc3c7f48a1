#!/usr/bin/env bash
# Create (or refresh) .venv-slicer, the environment of the Slicer extension's MRML tests: the slicer-core
# wheel (Slicer's MRML libraries; it pins its own vtk) kept apart from the server's .venv. Idempotent:
# skips work while slicer_extension/requirements-mrml.txt is unchanged since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BREASTLAB_SLICER_VENV:-.venv-slicer}
PY=${PYTHON:-python3}
requirements=slicer_extension/requirements-mrml.txt
stamp="$VENV/.breastlab-setup"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "Setting up $VENV (first run takes a minute) ..."
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
echo "$want" > "$stamp"
