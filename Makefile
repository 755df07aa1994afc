# The two commands of the README: `make test` and `make demo`. Each sets up what is missing.
CARGO ?= cargo
EBM := target/release/ebm

.PHONY: setup build test demo lint bench clean-demo

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

clean-demo:
	rm -rf checkpoints/demo
