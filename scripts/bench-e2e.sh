#!/usr/bin/env bash
# End-to-end benchmark: file drop -> map -> Avro -> Kafka (acknowledged,
# cursor committed) beside a plain rdkafka producer sending the same lines,
# same broker, same run. The broker is Apache Kafka (one KRaft node from
# scripts/kafka.sh) unless BROKER=tansu (Tansu, memory storage, which the
# earlier figures used). Extra arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
broker=${BROKER:-kafka}
work=$(mktemp -d -t duijie-bench-e2e.XXXXXX)
case "$broker" in
  kafka)
    brokers=$(scripts/kafka.sh start "$work/kafka" 1)
    export DUIJIE_BENCH_BROKER_PID
    DUIJIE_BENCH_BROKER_PID=$(cat "$work/kafka/node-1/pid")
    trap 'scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true' EXIT
    ;;
  tansu)
    command -v tansu >/dev/null || cargo install tansu --locked --features dynostore
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    tansu broker --listener-url "tcp://127.0.0.1:${port}" --advertised-listener-url "tcp://127.0.0.1:${port}" \
      --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break; sleep 0.1; done
    brokers="127.0.0.1:${port}"
    ;;
  *) echo "BROKER is kafka or tansu, not $broker" >&2; exit 2 ;;
esac
echo "== broker: $broker at $brokers"
DUIJIE_BENCH_BROKERS="$brokers" cargo bench --bench e2e "$@"
