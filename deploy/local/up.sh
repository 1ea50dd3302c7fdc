#!/usr/bin/env bash
# Starts the local stack (PostgreSQL on 127.0.0.1:15432, Kafka on 127.0.0.1:19092) as local
# processes under <repo>/.data, installing or fetching what is missing. Idempotent: services
# already running are only checked. Waits until both answer. `make up` runs this.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
start=$SECONDS

# Both services start in parallel; each prefixes its messages with its name.
"$DIR/postgres.sh" up & pg=$!
"$DIR/kafka.sh" up & kafka=$!
rc=0
wait $pg || { echo "up:       PostgreSQL failed (see above)" >&2; rc=1; }
wait $kafka || { echo "up:       Kafka failed (see above)" >&2; rc=1; }
[ $rc = 0 ] || exit $rc
"$DIR/registry.sh" up  # after Kafka and PostgreSQL: it needs neither, but is least urgent

echo "up:       stack ready in $((SECONDS - start))s; 'source deploy/local/env.sh' for STARSTREAM_PG_DSN, STARSTREAM_KAFKA_BROKERS and the Kafka tools" >&2
