# starstream — developer entry points.
#   make up      start the local stack (PostgreSQL :15432, Kafka :19092) under .data/
#   make down    stop it (data is kept; rm -rf .data for a clean slate)
#   make status  state, port and PID of each service
#   make test    start the stack if needed, run all tests, then one short chaos round on a
#                stack of its own (make chaos-short)
# Addresses for your shell: . deploy/local/env.sh

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

.PHONY: up down status
up:
	$(ROOT)/deploy/local/up.sh

down:
	$(ROOT)/deploy/local/down.sh

status:
	$(ROOT)/deploy/local/status.sh

.PHONY: demo build
# make demo                 seed, then capture + pipelines + generator until Ctrl-C
# make demo DURATION=60s    the same, stopping by itself
demo: up
	go run ./cmd/starstream demo $(if $(DURATION),--duration $(DURATION))

build:
	go build -o starstream ./cmd/starstream

.PHONY: bench bench-capture bench-sinks bench-e2e bench-state bench-debezium
# Benchmarks print figures with a baseline measured in the same run; they never fail.
bench: bench-capture bench-sinks bench-e2e bench-state bench-debezium

# starstream capture vs pg_recvlogical on the same rows (STARSTREAM_BENCH_ROWS, default 1M).
bench-capture: up
	go test ./capture -run '^$$' -bench BenchmarkCapture -benchtime 1x -timeout 30m

# 1M-row upsert workload into each sink, with a raw-append baseline.
bench-sinks:
	go test ./sinks/duckdb ./sinks/bigquery -run '^$$' -bench BenchmarkUpsert1M -benchtime 1x -timeout 30m

# Source commit → warehouse latency (dimension and fact), rows/s and peak RSS at a steady rate
# (STARSTREAM_BENCH_RATE tx/s, default 100; STARSTREAM_BENCH_SECONDS, default 30).
bench-e2e: up
	go test ./cmd/starstream -run '^$$' -bench BenchmarkEndToEndLatency -benchtime 1x -timeout 30m

# Go heap fact_sales keeps per order item (bytes/line), against the decoded records it came from.
bench-state:
	go test ./facts -run '^$$' -bench BenchmarkSalesLineMemory -benchtime 1x -timeout 10m

# starstream vs Debezium (Kafka Connect standalone) vs pg_recvlogical: rows/s, latency, RSS.
bench-debezium: up
	go run ./deploy/bench/cmd/compare $(BENCH_ARGS)

.PHONY: chaos chaos-short chaos-down bigtx
# make chaos ROUNDS=N: SIGKILL capture, pipelines, the Kafka broker and PostgreSQL at random
# under traffic with warehouse faults, then verify: rows lost and duplicated must be 0.
# Runs on a stack of its own (deploy/local/chaos-stack.sh: .data/chaos, PostgreSQL :15442,
# Kafka :19102), started fresh and stopped at the end, also on failure or Ctrl-C; the shared
# stack (:15432/:19092) is never touched. CHAOS_SEED replays a schedule.
chaos:
	$(ROOT)/deploy/local/chaos-stack.sh run env ROUNDS=$(or $(ROUNDS),3) \
		go test -tags chaos -run '^TestChaos$$' ./cmd/starstream -count=1 -timeout 90m -v

# One short round (about 2 minutes): one SIGKILL each of capture, the pipelines, the broker
# and PostgreSQL, with warehouse faults; make test runs it after the package tests.
chaos-short:
	$(ROOT)/deploy/local/chaos-stack.sh run \
		go test -tags chaos -short -run '^TestChaos$$' ./cmd/starstream -count=1 -timeout 15m -v

# One order of 1,000,000 items in one transaction, and a 10 MB row, through capture and
# fact_sales with the pipelines under a 2 GiB limit (STARSTREAM_MEMORY_LIMIT; about 2.5 minutes; make test runs the
# 100,000-item version). Prints the time to fact_sales and each process's peak RSS.
bigtx:
	$(ROOT)/deploy/local/chaos-stack.sh run \
		go test -tags chaos -run '^TestBadInputMillionRowTransaction$$' ./cmd/starstream -count=1 -timeout 30m -v

# Stops the chaos stack if a run was killed before it could (make chaos stops it itself).
chaos-down:
	$(ROOT)/deploy/local/chaos-stack.sh down

.PHONY: chromium
# Headless Chromium for the status-page browser test (Debian's package).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

.PHONY: test
test: up chromium
	go test -count=1 -p 1 -timeout 30m ./...
	$(MAKE) chaos-short
