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

# The front-end databases the safety-production tests read (PostgreSQL and
# MariaDB run on this kind of machine; start them if they stopped).
if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 100); do
  pg_isready -h 127.0.0.1 -q 2>/dev/null && mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1 && break
  sleep 0.2
done

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
