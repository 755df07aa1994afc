#!/usr/bin/env bash
# Installs libtorch (PyPI's torch==2.11.0, the version tch 0.24.0 binds) into a project-local
# virtual environment, .venv/, and points .venv/libtorch at it. Quick when already present.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
VENV=.venv
STAMP="$VENV/.torch-$TORCH_VERSION"
if [ -f "$STAMP" ] && [ -e "$VENV/libtorch/lib/libtorch_cpu.so" ]; then
  exit 0
fi
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "setup-libtorch: $PY not found; install Python 3.9+ first" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "setup-libtorch: installing torch==$TORCH_VERSION into $VENV (once; a few GB with its CUDA libraries)" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
site=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
ln -sfn "$site" "$VENV/libtorch"
[ -e "$VENV/libtorch/lib/libtorch_cpu.so" ] || { echo "setup-libtorch: $site/lib/libtorch_cpu.so missing after install" >&2; exit 1; }
touch "$STAMP"
echo "setup-libtorch: libtorch at $site" >&2
