#!/usr/bin/env bash
# Prints the state, port and PID of each local service (and where its log is).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

printf '%-10s %-38s %-6s %-8s %s\n' SERVICE STATE PORT PID LOG
"$DIR/postgres.sh" status
"$DIR/kafka.sh" status
"$DIR/registry.sh" status
