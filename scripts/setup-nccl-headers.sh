#!/usr/bin/env bash
# The two header-only wheels (scripts/nccl-headers.txt, checked by hash) that build.rs needs to
# compile c10d's NCCL process group into csrc/dist.cpp (`dist.backend = "nccl"`, multi-GPU
# training). They go into .venv beside torch's own nvidia/ wheels, where build.rs looks. Skipped
# when libtorch has no CUDA (a CPU-only torch), and once installed. Without them ebm builds with
# Gloo only and build.rs says so.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.nccl-headers-13.0"
[ -f "$STAMP" ] && exit 0
[ -e "$VENV/libtorch/lib/libtorch_cuda.so" ] || exit 0
echo "setup-nccl-headers: installing CUDA's crt and CCCL headers into $VENV (3 MB, for the NCCL backend)" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
  -r scripts/nccl-headers.txt
touch "$STAMP"
