# The two commands of the README: `make test` and `make demo`. Each sets up what is missing.
CARGO ?= cargo
EBM := target/release/ebm

.PHONY: setup build test demo lint bench gpu-smoke clean-demo fuzz

setup:
	@bash scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release

test: build
	$(CARGO) test --release

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

demo: build
	$(EBM) train --config configs/demo.toml --out checkpoints/demo

bench: build
	$(EBM) bench --preset wrn-28-10 --batch 64 --sgld-steps 20 --iters 3

# scripts/gpu-checks.sh in its CPU smoke mode (the GPU checks' plumbing, tiny sizes, 10-40 s on 2 cores).
gpu-smoke: build
	bash scripts/gpu-checks.sh "$$(mktemp -d)" --smoke

clean-demo:
	rm -rf checkpoints/demo

# Each cargo-fuzz target for FUZZ_SECONDS (nightly toolchain and `cargo install cargo-fuzz`).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := cifar npy image decode_cache manifest safetensors config
fuzz: setup
	cargo +nightly fuzz build -a --codegen-units 16
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t && \
	  cargo +nightly fuzz run -a --codegen-units 16 $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -detect_leaks=0 || exit 1; \
	done
