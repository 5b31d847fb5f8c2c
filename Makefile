# The entry points of ladder. `make demo` and `make test` work on a fresh Debian machine with Rust.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test lint deps test-deps bench build fuzz fuzz-ci

## demo: run the whole stack with a test pattern and print the URL to watch
demo: deps
	@echo "demo: building ladder (the first build takes a few minutes)"
	$(CARGO) build --bin ladder
	./target/debug/ladder dev --test-source

## test: lint, every fuzz target briefly, then every test, with real nats-server, ffmpeg, SRT peers, a Garage S3
## server and deploy/compose on Docker
test: deps test-deps lint fuzz-ci
	$(CARGO) test --workspace --no-fail-fast

## fuzz: every fuzz target (fuzz/) for FUZZ_SECONDS each on a seed corpus made with ffmpeg; prints the executions
FUZZ_SECONDS ?= 300
fuzz: deps
	@./scripts/install-fuzz-deps.sh
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

## fuzz-ci: every fuzz target for 15 s, so that a regression shows; a crash fails it
fuzz-ci: deps
	@./scripts/install-fuzz-deps.sh
	FUZZ_SECONDS=15 fuzz/run.sh

## bench: latency, efficiency and throughput against ffmpeg and nginx; writes bench/RESULTS.md (not in CI)
bench: deps
	@./scripts/install-bench-deps.sh
	@./scripts/install-browser-deps.sh
	$(CARGO) build --release --bin ladder
	python3 bench/run.py

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

deps:
	@./scripts/install-deps.sh

test-deps:
	@./scripts/install-garage.sh
	@./scripts/install-docker.sh
	@./scripts/install-prometheus.sh
	@./scripts/install-python-deps.sh
	@./scripts/install-browser-deps.sh

build:
	$(CARGO) build --workspace
