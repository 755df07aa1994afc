#!/usr/bin/env bash
# Installs TensorBoard (pinned) into the project's .venv/, beside the torch of setup-libtorch.sh:
# tests/tensorboard.rs reads the event files of `train.tensorboard = true` back with TensorBoard's
# own reader. ebm itself does not need it. Quick when already present.
set -euo pipefail
cd "$(dirname "$0")/.."
TENSORBOARD_VERSION=2.21.0
VENV=.venv
STAMP="$VENV/.tensorboard-$TENSORBOARD_VERSION"
if [ -f "$STAMP" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || { echo "setup-tensorboard: $VENV/bin/python missing; run scripts/setup-libtorch.sh first" >&2; exit 1; }
echo "setup-tensorboard: installing tensorboard==$TENSORBOARD_VERSION into $VENV (once)" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "tensorboard==$TENSORBOARD_VERSION"
"$VENV/bin/python" -c 'import tensorboard.backend.event_processing.event_accumulator' \
  || { echo "setup-tensorboard: tensorboard installed but its event reader does not import" >&2; exit 1; }
touch "$STAMP"
