# starstream — developer entry points.
#   make up      start the local stack (PostgreSQL :55432, Kafka :19092) under .data/
#   make down    stop it (data is kept; rm -rf .data for a clean slate)
#   make status  state, port and PID of each service
#   make test    start the stack if needed, then run all tests
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

.PHONY: chromium
# Headless Chromium for the status-page browser test (Debian's package).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

.PHONY: test
test: up chromium
	go test -count=1 -p 2 -timeout 20m ./...
