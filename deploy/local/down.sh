#!/usr/bin/env bash
# Stops what deploy/local/up.sh started (by the PIDs it recorded) and waits for the processes
# to exit. Data under <repo>/.data is kept; `rm -rf .data` after this for a clean slate.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

"$DIR/kafka.sh" down & kafka=$!
"$DIR/postgres.sh" down & pg=$!
rc=0
wait $kafka || rc=1
wait $pg || rc=1
"$DIR/registry.sh" down || rc=1
exit $rc
