#!/usr/bin/env bash
# A department's webhook feed: records/s to the sandbox's receiver
# answering in 5 ms, one request at a time (in_flight = 1) beside the
# default in_flight, same run, alternating; every key's versions checked
# in order. Starts one Apache Kafka node (scripts/kafka.sh). Environment:
# DUIJIE_BENCH_RECORDS (20000), DUIJIE_BENCH_RUNS (3),
# DUIJIE_BENCH_IN_FLIGHT (32), DUIJIE_BENCH_ANSWER_MS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
work=$(mktemp -d -t duijie-bench-feeds.XXXXXX)
brokers=$(scripts/kafka.sh start "$work/kafka" 1)
trap 'scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true' EXIT
echo "== broker: kafka at $brokers"
DUIJIE_BENCH_BROKERS="$brokers" cargo bench --bench feeds "$@"
