#!/usr/bin/env bash
# Quality per minute: each recipe trains a WRN-10-2 on the real CIFAR-10 JPEG copy for the same
# wall-clock budget (train.max_seconds; JEM++'s Gaussian fit happens before the clock starts), then
# its test accuracy and ECE (raw weights and the weight average) and last energy gap are read with
# `ebm eval` and metrics.jsonl; `steps` is the furthest step reached, `rollbacks` the guard's. Run from the repository root after `make build`:
#   scripts/quality-per-minute.sh [BUDGET_SECONDS=240] [OUT=/tmp/ebm-qpm] [RECIPES="ce jem ..."]
# Needs ../shared/data/cifar10-jpeg/{train,test}.tar.gz (unpacked once into datasets/cifar10/).
set -euo pipefail
BUDGET=${1:-240}
OUT=${2:-/tmp/ebm-qpm}
RECIPES=${3:-"ce jem m-ebm jempp sada-jem"}
EBM=${EBM:-target/release/ebm}
THREADS=${THREADS:-2}
SRC=${CIFAR_JPEG:-../shared/data/cifar10-jpeg}
mkdir -p datasets/cifar10 "$OUT"
for split in train test; do
  [ -d datasets/cifar10/$split ] || tar xzf "$SRC/$split.tar.gz" -C datasets/cifar10
done

# The common part: WRN-10-2, batch 32, JEM's augmentation and data noise, 5 SGLD steps, a
# 2,000-chain buffer; each recipe changes only what its paper changes.
common=(--config configs/jem-wrn28-10.toml --data folder:datasets/cifar10/train --device cpu
  --set model.depth=10 --set model.width=2 --set data.batch_size=32 --set data.valid_fraction=0.02
  --set sgld.steps=5 --set buffer.size=2000 --set train.epochs=100 --set "train.max_seconds=$BUDGET"
  --set train.threads=$THREADS --set train.log_every=10 --set train.sample_every=0 --set train.ckpt_every=0
  --set optim.warmup_iters=100 --set 'optim.decay_epochs=[]')
sada_sampler=(--set 'sgld.variant="igebm"' --set sgld.step_size=1.0 --set sgld.grad_clip=1.0 --set sgld.noise=0.0
  --set sgld.clamp=true)
informative=(--set 'buffer.init="class-gaussian"' --set 'model.norm="batch"' --set 'optim.name="sgd"'
  --set optim.lr=0.1 --set optim.momentum=0.9)
recipe_args() {
  case $1 in
    ce) echo --set objective.px_weight=0.0 ;;                        # cross-entropy alone
    jem) echo --set optim.lr=1e-4 ;;                                  # JEM: Adam 1e-4, p(x) at 1
    m-ebm) echo --set optim.lr=1e-4 --set objective.alpha=0.5 ;;      # JEM + M-EBM's penalty
    jempp) echo "${informative[@]}" --set optim.weight_decay=4e-4 "${sada_sampler[@]}" --set sgld.steps=10 ;;
    sada-jem) echo "${informative[@]}" --set optim.weight_decay=5e-4 "${sada_sampler[@]}" --set optim.sam_rho=2.0 \
                   --set 'data.px_batch="plain"' --set data.noise_sigma=0.0 ;;
    *) echo "unknown recipe $1" >&2; exit 2 ;;
  esac
}
printf '%-9s %6s %9s %8s %7s %9s %s\n' recipe steps rollbacks test_acc ECE last_gap weights
for r in $RECIPES; do
  run="$OUT/$r"
  rm -rf "$run"
  # shellcheck disable=SC2046
  "$EBM" train "${common[@]}" $(recipe_args "$r") --set ema.decay=0.999 --set ema.warmup=10 --out "$run" --quiet \
    > "$run.log" 2>&1 || { echo "$r: training failed, see $run.log"; continue; }
  for w in raw ema; do
    "$EBM" eval --ckpt "$run" --data folder:datasets/cifar10/test --device cpu --weights $w --json > "$run.eval-$w.json"
  done
  python3 - "$run" "$r" <<'PY'
import json, sys
run, name = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
steps = max(r.get("step", 0) for r in rows)
rollbacks = sum(1 for r in rows if r.get("event") == "rollback")
gaps = [r["gap"] for r in rows if "gap" in r]
for w in ("raw", "ema"):
    e = json.loads(open(f"{run}.eval-{w}.json").read().splitlines()[-1])
    gap = f"{gaps[-1]:.3f}" if gaps else "-"
    print(f"{name:<9} {steps:>6} {rollbacks:>9} {100*e['accuracy']:>7.2f}% {100*e['ece']:>6.2f}% {gap:>9} {w}")
PY
done
