#!/usr/bin/env bash
# End-to-end benchmark: file drop -> map -> Avro -> Kafka (acknowledged)
# beside a plain rdkafka producer, against a Tansu broker (memory storage)
# started here. Extra arguments go to `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v tansu >/dev/null || cargo install tansu --locked --features dynostore
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp -t tansu-bench.XXXXXX.log)
tansu broker --listener-url "tcp://127.0.0.1:${port}" --advertised-listener-url "tcp://127.0.0.1:${port}" \
  --storage-engine memory://tansu/ >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break; sleep 0.1; done
DUIJIE_BENCH_BROKERS="127.0.0.1:${port}" cargo bench --bench e2e "$@"
