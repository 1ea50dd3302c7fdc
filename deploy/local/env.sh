# shellcheck shell=bash
# Source me (bash or zsh) after `make up`:   . deploy/local/env.sh
# Exports the addresses of the local stack and puts Kafka's own tools (kafka-topics,
# kafka-consumer-groups, kafka-console-consumer, ...) on PATH.
if [ -n "${BASH_SOURCE:-}" ]; then
  _starstream_env="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
  # shellcheck disable=SC2296
  _starstream_env="${(%):-%x}"
else
  _starstream_env="$0"
fi
_starstream_local="$(cd "$(dirname "$_starstream_env")" && pwd -P)"

_starstream_data="${STARSTREAM_DATA_DIR:-$(dirname "$(dirname "$_starstream_local")")/.data}"
export STARSTREAM_PG_DSN="postgres://starstream:starstream@127.0.0.1:${STARSTREAM_PG_PORT:-15432}/starstream?sslmode=disable"
export STARSTREAM_KAFKA_BROKERS="127.0.0.1:${STARSTREAM_KAFKA_PORT:-19092}"
# The secure side of the same stack (deploy/local/README.md, "TLS and SASL"): the least-privilege
# capture role over TLS, the SASL_SSL listener, and the CA both certificates come from.
export STARSTREAM_TLS_CA_FILE="$_starstream_data/tls/ca.crt"
export STARSTREAM_PG_CAPTURE_DSN="postgres://starstream_capture:capture-secret@127.0.0.1:${STARSTREAM_PG_PORT:-15432}/starstream?sslmode=verify-full&sslrootcert=$STARSTREAM_TLS_CA_FILE"
export STARSTREAM_KAFKA_SASL_BROKERS="127.0.0.1:${STARSTREAM_KAFKA_SASL_PORT:-$((${STARSTREAM_KAFKA_PORT:-19092} + 2))}"
export STARSTREAM_KAFKA_SASL_USERNAME="starstream"
export STARSTREAM_KAFKA_SASL_PASSWORD="starstream-secret"
export STARSTREAM_KAFKA_CLIENT_PROPERTIES="$_starstream_data/kafka/client-sasl.properties"
case ":$PATH:" in
  *":$_starstream_local/kafka/bin:"*) ;;
  *) export PATH="$_starstream_local/kafka/bin:$PATH" ;;
esac
unset _starstream_env _starstream_local _starstream_data
