# faultline: the two commands of README.md, and their helpers.
# Every target that runs something first runs `setup`, which installs what is missing
# (Debian packages, Apache Kafka's jars) and does nothing when all is in place.

CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup build demo test bench lint claims fuzz

setup:
	@scripts/setup

build: setup
	$(CARGO) build --release --locked --bin faultline

# The main job, as far as it exists: the reference system on the real stack, open-model
# load through its gateway, a pause fault on one service mid-run, results (see scripts/demo).
demo: build
	scripts/demo

# The whole test suite against the real stack, plus the Docker (testcontainers) backend,
# which is built here and whose test skips, saying why, where no Docker daemon answers.
test: setup
	$(CARGO) test --workspace --locked --no-fail-fast
	$(CARGO) test --locked -p faultline-system --features containers --test containers -- --nocapture
	$(CARGO) check --locked --features containers

# The property tests of the parsers that read untrusted input (HTTP/1.1 responses, event
# envelopes, scenario files, JWTs, the fault proxy's control bodies) with more cases than
# `make test` runs (10,000 each); PROPTEST_CASES=N sets how many. Release build: the cases
# are the point, not the build time.
PROPTEST_CASES ?= 200000
fuzz: setup
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release --locked -p faultline-loadgen --lib engine::h1::props
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release --locked -p faultline-chaos --lib control::props
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release --locked -p faultline-system --test props
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --release --locked -p faultline-scenarios --test props

# Benchmarks, not tests: ratios in one run (loadgen vs wrk and oha), system throughput,
# the checkout saga at stepped rates with its drain capacity (scripts/bench-saga), and
# Kafka producers: document 002's Table 5 rows on 3 brokers, rdkafka beside Apache Kafka's
# ProducerPerformance in one run (a quick grid: 50,000 records of 1 KiB per row and side).
bench: build
	scripts/bench-loadgen
	scripts/bench-system
	scripts/idle-cpu
	scripts/bench-saga
	$${FAULTLINE_BIN:-target/release/faultline} kafka-bench --brokers 3 --table5 --records 50000 -o reports/out/kafka-bench

# The claims suite: every scenario of scenarios/claims/ (capacity searches where this machine
# cannot reach a document's rate), Table 5's Kafka benchmark and Table 1's NATS and RabbitMQ
# (broker-bench, ~35 s for both), then one claims report of every
# claim of the documents: reports/out/claims/claims.{html,md,json}. CLAIMS_FLAGS=--quick
# shortens every search (5.3 min measured with a debug build on a busy 2-core machine: one
# system for every family, then kafka-bench). README's table is claims.md of such a run.
claims: build
	$${FAULTLINE_BIN:-target/release/faultline} claims -o reports/out/claims $(CLAIMS_FLAGS)

# Formatting, clippy with warnings as errors, and the size limits of scripts/check-size.
lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	scripts/check-size
