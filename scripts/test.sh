#!/usr/bin/env bash
# The test command: the whole suite against a real Kafka-protocol broker.
#
# Starts a Tansu broker (memory storage) on a free loopback port, installing
# it first if it is missing (`cargo install` is a no-op once installed),
# exports DUIJIE_TEST_BROKERS, runs `cargo test`, and stops the broker.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh ingest`).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tansu >/dev/null 2>&1; then
  echo "== installing the Tansu broker (once; about 10 minutes on 2 cores)"
  cargo install tansu --locked --features dynostore
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp -t tansu.XXXXXX.log)
tansu broker \
  --listener-url "tcp://127.0.0.1:${port}" \
  --advertised-listener-url "tcp://127.0.0.1:${port}" \
  --storage-engine memory://tansu/ >"$log" 2>&1 &
tansu_pid=$!
trap 'kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then break; fi
  if ! kill -0 "$tansu_pid" 2>/dev/null; then echo "tansu failed to start:"; cat "$log"; exit 1; fi
  sleep 0.1
done
echo "== Tansu broker on 127.0.0.1:${port}"

export DUIJIE_TEST_BROKERS="127.0.0.1:${port}"
cargo test --workspace "$@"
