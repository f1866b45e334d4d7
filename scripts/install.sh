#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its dev tools.
# PyPI's default torch/torchvision builds (CUDA) run on the CPU too; about 5.5 GB on first run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e '.[bench,dev]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, torchvision, open_clip; print('installed: torch', torch.__version__, '| open_clip', open_clip.__version__)"
