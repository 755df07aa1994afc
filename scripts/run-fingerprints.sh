#!/usr/bin/env bash
# Short single-thread training runs of every objective and several samplers, one line per run:
# name, newest checkpoint, SHA-256 (first 16) of its weights and of its replay buffer.
# Two builds that train identically print identical lines, so a refactor or a speed change that
# must not change the maths is checked by:
#   scripts/run-fingerprints.sh OLD_EBM /tmp/a > a.txt; scripts/run-fingerprints.sh NEW_EBM /tmp/b > b.txt; diff a.txt b.txt
# (about 1 minute per build on 2 cores). OUT is emptied first. THREADS=N (default 1) sets
# train.threads: two runs of one build at the same N must print the same lines. Across thread
# counts the MLP runs print the same lines (the fused sampler's tiles are whole per thread), the
# convolutional ones (jem, jempxy, igebm) do not: seen 2026-12-03 at 1 against 2 threads, on the
# builds before and after the AVX-512 sampler kernels alike (libtorch's CPU convolutions).
set -euo pipefail
BIN=$(realpath "${1:?usage: scripts/run-fingerprints.sh EBM_BINARY OUT_DIR}")
R=${2:?usage: scripts/run-fingerprints.sh EBM_BINARY OUT_DIR}
cd "$(dirname "$0")/.."
rm -rf "$R"
mkdir -p "$R"
R=$(realpath "$R")
train() { "$BIN" train --quiet --set "train.threads=${THREADS:-1}" "$@" >/dev/null; }
train --config configs/demo.toml --out "$R/jem" --set train.epochs=1 --set train.max_steps=12 \
  --set data.spec='"synthetic:shapes:1000"' --set train.ckpt_every=5 --set train.sample_every=0
train --config configs/demo.toml --out "$R/jempxy" --set train.max_steps=6 --set data.spec='"synthetic:shapes:1000"' \
  --set objective.pxy_weight=1 --set buffer.per_class=true --set 'sgld.sampler="mala"' --set sgld.step_size=0.01
train --config configs/igebm.toml --out "$R/igebm" --set train.max_steps=4 --set data.spec='"synthetic:shapes:500"' \
  --set model.preset='"convnet-small"' --set model.width=8 --set buffer.size=200
for o in pcd cd sm ssm dsm nce is-mle; do
  train --config configs/toy2d.toml --out "$R/$o" --set objective.name="\"$o\"" --set train.max_steps=30 \
    --set data.spec='"toy2d:8gaussians:2000"'
done
train --config configs/toy2d.toml --out "$R/isad" --set objective.name='"is-mle"' \
  --set objective.is_proposal='"adaptive"' --set train.max_steps=30 --set data.spec='"toy2d:rings:2000"'
train --config configs/toy2d.toml --out "$R/hmc" --set 'sgld.sampler="hmc"' --set sgld.step_size=0.05 \
  --set sgld.leapfrog=3 --set train.max_steps=20 --set data.spec='"toy2d:8gaussians:2000"'
# A resumed leg: the jem run continued to the end of its epoch.
train --resume "$R/jem" --out "$R/jem" --set train.max_steps=20
for d in "$R"/*; do
  f=$(ls -d "$d"/checkpoints/step-* | sort | tail -1)
  buffer=""
  if [ -f "$f/buffer.safetensors" ]; then buffer=$(sha256sum "$f/buffer.safetensors" | cut -c1-16); fi
  echo "$(basename "$d") $(basename "$f") $(sha256sum "$f/model.safetensors" | cut -c1-16) $buffer"
done
