#!/usr/bin/env bash
# The checks ../shared/docs/gpu.md owes on a GPU, as one prepared command:
#   1. `ebm bench` at JEM's setting (WRN-28-10, batch 64, 20 SGLD steps), float32 and the fast
#      mode (and the plain-PyTorch reference when `ebm bench` has --compare-pytorch);
#   2. the CPU/CUDA agreement check (`ebm bench --agreement`);
#   3. a short real CIFAR-10 run (configs/jem-wrn28-10.toml) in two legs, the second resumed from
#      the first, then `ebm eval` on the test split and a sample grid;
#   4. a 1-rank data-parallel run on NCCL (`ebm train --nproc-per-node 1`, dist.backend "nccl") and
#      its resume (smoke: the same on Gloo, NCCL reported as skipped);
#   5. the fast-mode tests are Rust tests: the GPU machine has no toolchain, so they are reported
#      as not run, with check 1's `--fast both` and check 2's bf16 row as the fast-mode evidence.
#
# Usage: scripts/gpu-checks.sh OUT_DIR [--smoke] [--cifar DIR] [--steps N] [--budget S]
#                              [--set KEY=VALUE]... [--ebm PATH]
#   OUT_DIR      gets report.md, report.json, checks.log (every command's output) and samples.png;
#                nothing else (scratch data and checkpoints live in a temporary folder, removed at exit)
#   --smoke      the same steps on the CPU with tiny sizes (ConvNet-8, batch 4, 2 SGLD steps,
#                synthetic:shapes unless --cifar is given): well under a minute on 2 cores; CI runs it
#   --cifar DIR  CIFAR-10 as JPEG class folders: DIR/train.tar.gz + DIR/test.tar.gz (the shared
#                JPEG copy) or DIR/train/ + DIR/test/. Default (full mode): datasets/cifar10-jpeg,
#                then ../shared/data/cifar10-jpeg, whichever exists
#   --steps N    training steps of each CIFAR-10 leg (default 100; smoke 3)
#   --budget S   wall-clock budget of the whole script in seconds (default 450; smoke 240): each
#                step's timeout is cut to what is left, so the report is always written
#   --set K=V    extra config override for both training legs (repeatable)
#   --ebm PATH   the binary (default $EBM, else $CARGO_TARGET_DIR/release/ebm, else target/release/ebm)
# Every step runs under `timeout`; a failing step is FAILED in the report with its exit code and
# the script goes on. Exit status: 0 when no step failed, 1 otherwise, 2 on bad usage.
#
# On the GPU machine (no Rust toolchain; its python3 holds torch 2.11.0), from a checkout that
# carries the binary built here and the JPEG copy:
#   cargo build --release && mkdir -p datasets/cifar10-jpeg && cp ../shared/data/cifar10-jpeg/*.tar.gz datasets/cifar10-jpeg/
#   device run: command  bash scripts/gpu-checks.sh "$OUT"
#               carry    ["target/release/ebm", "datasets/cifar10-jpeg"]    timeout_s 540
# The binary finds libtorch through LD_LIBRARY_PATH set from python3's torch (gpu.md), else
# .venv/libtorch/lib here, else its own rpath.
set -uo pipefail

usage() {
  sed -n '/^# Usage:/,/^#   --ebm/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

OUT=""
SMOKE=0
CIFAR=""
STEPS=""
BUDGET=""
EBM=${EBM:-}
EXTRA_SET=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --cifar) CIFAR=${2:?--cifar needs a folder}; shift ;;
    --steps) STEPS=${2:?--steps needs a number}; shift ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
    --set) EXTRA_SET+=(--set "${2:?--set needs KEY=VALUE}"); shift ;;
    --ebm) EBM=${2:?--ebm needs a path}; shift ;;
    -h | --help) usage ;;
    -*) echo "gpu-checks: unknown option $1" >&2; usage ;;
    *) [ -z "$OUT" ] || { echo "gpu-checks: one OUT_DIR only ($OUT, $1)" >&2; usage; }; OUT=$1 ;;
  esac
  shift
done
[ -n "$OUT" ] || usage
for v in "${STEPS:-1}" "${BUDGET:-1}"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "gpu-checks: --steps and --budget take positive integers, not '$v'" >&2; exit 2; }
done

T0=$(date +%s)
# Paths given by the caller are relative to where it stands; the rest to the repository root.
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
abs() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s' "$PWD/$1" ;; esac; }
[ -z "$CIFAR" ] || CIFAR=$(abs "$CIFAR")
[ -z "$EBM" ] || EBM=$(abs "$EBM")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
EBM=${EBM:-${CARGO_TARGET_DIR:-target}/release/ebm}
if [ ! -x "$EBM" ]; then
  echo "gpu-checks: $EBM is not an executable; build it (cargo build --release) or pass --ebm PATH" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "gpu-checks: python3 is needed to write the report" >&2; exit 2; }
if [ $SMOKE = 1 ]; then
  MODE=smoke DEVICE=cpu STEPS=${STEPS:-3} BUDGET=${BUDGET:-240}
else
  MODE=full DEVICE=cuda STEPS=${STEPS:-100} BUDGET=${BUDGET:-450}
fi
DEADLINE=$((T0 + BUDGET))
RESERVE=15 # seconds kept for the report

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gpu-checks.XXXXXX") || exit 2
trap 'rm -rf "$SCRATCH"' EXIT
export EBM_CACHE_DIR="$SCRATCH/cache" # image-folder decode caches stay out of datasets/ and OUT
LOG="$OUT/checks.log"
: >"$LOG"
rm -f "$OUT/samples.png" "$OUT/report.md" "$OUT/report.json"

# libtorch for the binary: python3's torch (gpu.md), else the project's .venv, else the rpath.
torch_lib=$(timeout 90 python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
if [ -n "$torch_lib" ] && [ -e "$torch_lib/libtorch_cpu.so" ]; then
  LIB_FROM="python3's torch: $torch_lib"
elif [ -e "$ROOT/.venv/libtorch/lib/libtorch_cpu.so" ]; then
  torch_lib=$(cd "$ROOT/.venv/libtorch/lib" && pwd -P)
  LIB_FROM="the project's .venv: $torch_lib"
else
  torch_lib=""
  LIB_FROM="not set (the binary's rpath)"
fi
[ -z "$torch_lib" ] || export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Facts about the run for the report, one file each.
mkdir -p "$SCRATCH/meta" "$SCRATCH/steps"
meta() { printf '%s' "$2" >"$SCRATCH/meta/$1"; }
meta mode "$MODE"
meta device "$DEVICE"
meta started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta host "$(hostname 2>/dev/null || echo unknown)"
meta ebm "$EBM"
meta libtorch_from "$LIB_FROM"
meta budget_s "$BUDGET"
meta cifar_steps "$STEPS"
meta commit "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
meta cpus "$(nproc 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null; then
  meta gpu "$(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 4)"
fi

progress() { echo "gpu-checks: $*" >&2; }

# A command line as one would type it: plain words bare, others in single quotes.
show() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
      out+=("$a")
    else
      out+=("'${a//\'/\'\\\'\'}'")
    fi
  done
  printf '%s' "${out[*]}"
}

# step ID TITLE TIMEOUT CMD...: runs CMD under timeout (cut to the budget left), its stdout and
# stderr into the step's files and checks.log; records exit code and seconds. Returns the exit code.
N=0
# step_dir ID TITLE: the next step's folder (numbered in order) with its id and title; sets d.
step_dir() {
  N=$((N + 1))
  d="$SCRATCH/steps/$(printf %02d $N)-$1"
  mkdir -p "$d"
  printf '%s' "$1" >"$d/id"
  printf '%s' "$2" >"$d/title"
}

step() {
  local id=$1 title=$2 limit=$3
  shift 3
  local d
  step_dir "$id" "$title"
  show "$@" >"$d/command"
  local left=$((DEADLINE - RESERVE - $(date +%s)))
  [ "$limit" -le "$left" ] || limit=$((left > 0 ? left : 0))
  printf '%s' "$limit" >"$d/timeout_s"
  {
    echo
    echo "===== [$id] $title"
    echo "\$ $(cat "$d/command")"
  } >>"$LOG"
  if [ "$limit" -lt 5 ]; then
    echo "no time left in the ${BUDGET} s budget: not run" | tee "$d/note" >>"$LOG"
    printf 124 >"$d/rc"
    printf 0 >"$d/seconds"
    progress "[$id] not run: the budget is spent"
    return 124
  fi
  progress "[$id] $title (timeout ${limit} s)"
  local ms0 rc secs
  ms0=$(($(date +%s%N) / 1000000))
  timeout -k 10 "$limit" "$@" >"$d/stdout" 2>"$d/stderr"
  rc=$?
  secs=$((($(date +%s%N) / 1000000 - ms0) / 100))
  secs="$((secs / 10)).$((secs % 10))"
  printf '%s' "$rc" >"$d/rc"
  printf '%s' "$secs" >"$d/seconds"
  [ $rc != 124 ] && [ $rc != 137 ] || echo "timed out after ${limit} s" >"$d/note"
  {
    cat "$d/stdout"
    [ ! -s "$d/stderr" ] || { echo "--- stderr"; cat "$d/stderr"; }
    echo "--- exit $rc after $secs s"
  } >>"$LOG"
  progress "[$id] exit $rc after $secs s"
  return $rc
}

# skip ID TITLE REASON: a step that was not run (recorded, not a failure of its own).
skip() {
  local d
  step_dir "$1" "$2"
  printf '%s' "$3" >"$d/note"
  printf '%s\n' "" "===== [$1] $2" "not run: $3" >>"$LOG"
  progress "[$1] not run: $3"
}

# 0. What the binary sees.
step info "ebm info (versions, CUDA, cuDNN, threads)" 90 "$EBM" info --json

# 1. Seconds per training step, float32 and fast mode (and plain PyTorch when ebm can).
# The PyTorch reference builds WRNs only, so its comparison uses a WRN in the smoke run too.
if [ $SMOKE = 1 ]; then
  bench=(--device cpu --preset convnet-small --width 8 --batch 4 --sgld-steps 2 --iters 1)
  compare=(--device cpu --preset wrn-16-2 --depth 10 --width 1 --batch 4 --sgld-steps 2 --iters 1 --rounds 1)
else
  bench=(--device cuda --preset wrn-28-10 --batch 64 --sgld-steps 20 --iters 5)
  compare=(--device cuda --preset wrn-28-10 --batch 64 --sgld-steps 20 --iters 5 --rounds 2)
fi
step bench "training step: float32 and fast mode" 240 "$EBM" bench "${bench[@]}" --fast both --json
bench_help=$("$EBM" bench --help 2>&1)
if [[ $bench_help == *compare-pytorch* ]]; then
  meta pytorch_reference "run by ebm bench --compare-pytorch (step pytorch)"
  step pytorch "training step: ebm float32 against plain PyTorch, alternating" 240 \
    "$EBM" bench "${compare[@]}" --case jem --compare-pytorch --json
else
  ref=absent
  [ ! -e scripts/pytorch_reference.py ] || ref=present
  meta pytorch_reference "SKIPPED: this ebm bench has no --compare-pytorch (scripts/pytorch_reference.py $ref)"
fi

# 2. One JEM step on the device against float32 on the CPU.
if [ $SMOKE = 1 ]; then
  step agreement "agreement with the CPU (float32 and fast mode)" 120 \
    "$EBM" bench --agreement --device cpu --preset convnet-small --width 8 --json
else
  step agreement "agreement with the CPU (float32 and fast mode)" 180 \
    "$EBM" bench --agreement --device cuda --preset wrn-28-10 --json
fi

# 3. A short real training run in two legs, eval on the test split, a sample grid.
if [ -z "$CIFAR" ] && [ $SMOKE = 0 ]; then
  for c in datasets/cifar10-jpeg ../shared/data/cifar10-jpeg; do
    if [ -e "$c/train.tar.gz" ] || [ -d "$c/train" ]; then CIFAR=$c && break; fi
  done
fi
data_ok=1
if [ -n "$CIFAR" ]; then
  meta data "CIFAR-10 JPEG folders from $CIFAR"
  if [ -e "$CIFAR/train.tar.gz" ] && [ -e "$CIFAR/test.tar.gz" ]; then
    mkdir -p "$SCRATCH/cifar"
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
    step cifar-unpack "unpack CIFAR-10 (train.tar.gz, test.tar.gz)" 180 \
      bash -c 'tar xzf "$1/train.tar.gz" -C "$2" && tar xzf "$1/test.tar.gz" -C "$2" && ls "$2/train" | wc -l' \
      unpack "$CIFAR" "$SCRATCH/cifar" || data_ok=0
    D="$SCRATCH/cifar"
  elif [ -d "$CIFAR/train" ] && [ -d "$CIFAR/test" ]; then
    D=$(cd "$CIFAR" && pwd)
  else
    # shellcheck disable=SC2016
    step cifar-unpack "find CIFAR-10" 10 bash -c 'echo "$1: neither train.tar.gz + test.tar.gz nor train/ + test/" >&2; exit 2' \
      find "$CIFAR"
    data_ok=0
  fi
  TRAIN="folder:$D/train" TEST="folder:$D/test"
elif [ $SMOKE = 1 ]; then
  meta data "synthetic:shapes (smoke; no --cifar)"
  TRAIN="synthetic:shapes:256" TEST="synthetic:shapes:200:test"
else
  meta data "none found"
  step cifar-unpack "find CIFAR-10" 10 bash -c 'echo "no CIFAR-10: pass --cifar DIR (train.tar.gz + test.tar.gz, or train/ + test/)" >&2; exit 2'
  data_ok=0
fi
if [ $SMOKE = 1 ]; then
  small=(--set 'model.preset="convnet-small"' --set model.width=8 --set data.batch_size=4 --set sgld.steps=2
    --set buffer.size=64 --set train.log_every=1)
  grid=(--per-class 4 --steps 2)
else
  small=()
  grid=(--per-class 8)
fi
RUN="$SCRATCH/run"
TITLE_LEG1="configs/jem-wrn28-10.toml: leg 1, steps 0-$STEPS"
TITLE_LEG2="leg 2, resumed: steps $STEPS-$((2 * STEPS))"
if [ $data_ok = 1 ]; then
  if step train-leg1 "$TITLE_LEG1" 180 "$EBM" train --config configs/jem-wrn28-10.toml --data "$TRAIN" --test-data "$TEST" \
    --out "$RUN" --device "$DEVICE" ${small[@]+"${small[@]}"} ${EXTRA_SET[@]+"${EXTRA_SET[@]}"} --set train.max_steps="$STEPS" --json; then
    if step train-leg2 "$TITLE_LEG2" 180 "$EBM" train --resume "$RUN" --out "$RUN" --device "$DEVICE" \
      ${EXTRA_SET[@]+"${EXTRA_SET[@]}"} --set train.max_steps=$((2 * STEPS)) --json; then
      { echo; echo "===== the run's metrics.jsonl"; cat "$RUN/metrics.jsonl"; } >>"$LOG" 2>&1
      step eval "ebm eval on the test split" 120 "$EBM" eval --ckpt "$RUN" --data "$TEST" --device "$DEVICE" --json
      step sample "ebm sample: a grid, rows are classes" 90 "$EBM" sample --ckpt "$RUN" --out "$OUT/samples.png" \
        --device "$DEVICE" "${grid[@]}"
    else
      skip eval "ebm eval on the test split" "leg 2 failed"
      skip sample "ebm sample: a grid, rows are classes" "leg 2 failed"
    fi
  else
    skip train-leg2 "$TITLE_LEG2" "leg 1 failed"
    skip eval "ebm eval on the test split" "leg 1 failed"
    skip sample "ebm sample: a grid, rows are classes" "leg 1 failed"
  fi
else
  for s in "train-leg1:$TITLE_LEG1" "train-leg2:$TITLE_LEG2" "eval:ebm eval on the test split" \
    "sample:ebm sample: a grid, rows are classes"; do
    skip "${s%%:*}" "${s#*:}" "no training data"
  done
fi

# 4. A 1-rank data-parallel run (`--nproc-per-node 1`) on the NCCL backend, then resumed: the
# launcher, the rendezvous, NCCL's communicator and its collectives (broadcast of the weights,
# gradient all-reduce, the checkpoint's all-gather) on one GPU. One GPU here, so one rank. The
# smoke run (CPU) runs the same commands on Gloo: NCCL needs a GPU.
if [ $SMOKE = 1 ]; then
  BACKEND=gloo
  meta dist_backend "gloo (smoke: NCCL skipped, no GPU; the same 1-rank commands on Gloo)"
else
  BACKEND=nccl
  meta dist_backend "nccl"
fi
DRUN="$SCRATCH/dist-run"
tiny=(--set 'model.preset="convnet-small"' --set model.width=8 --set data.batch_size=4 --set sgld.steps=2
  --set buffer.size=64 --set train.log_every=1 --set dist.timeout=120 --set "dist.backend=\"$BACKEND\"")
TITLE_D1="1-rank $BACKEND run (--nproc-per-node 1): steps 0-3"
TITLE_D2="1-rank $BACKEND run, resumed: steps 3-6"
if step dist-leg1 "$TITLE_D1" 120 "$EBM" train --config configs/jem-wrn28-10.toml --data synthetic:shapes:256 \
  --out "$DRUN" --device "$DEVICE" --nproc-per-node 1 "${tiny[@]}" --set train.max_steps=3 --json; then
  step dist-leg2 "$TITLE_D2" 120 "$EBM" train --resume "$DRUN" --out "$DRUN" --device "$DEVICE" --nproc-per-node 1 \
    --set "dist.backend=\"$BACKEND\"" --set train.max_steps=6 --json
else
  skip dist-leg2 "$TITLE_D2" "leg 1 failed"
fi

meta seconds "$(($(date +%s) - T0))"
python3 "$ROOT/scripts/gpu_checks_report.py" "$SCRATCH" "$OUT"
rc=$?
[ -f "$OUT/report.md" ] && cat "$OUT/report.md"
exit $rc
