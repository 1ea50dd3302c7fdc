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

export STARSTREAM_PG_DSN="postgres://starstream:starstream@127.0.0.1:55432/starstream?sslmode=disable"
export STARSTREAM_KAFKA_BROKERS="127.0.0.1:19092"
case ":$PATH:" in
  *":$_starstream_local/kafka/bin:"*) ;;
  *) export PATH="$_starstream_local/kafka/bin:$PATH" ;;
esac
unset _starstream_env _starstream_local
