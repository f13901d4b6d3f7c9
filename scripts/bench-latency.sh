#!/usr/bin/env bash
# Source-to-push latency at 1,000 records/s: the sandbox pushes signed
# urgent grid events to the hub's webhook every millisecond; the hub maps
# them onto the bus and a delivery delivers each to the sandbox's
# department receiver. The hub's own histogram (`duijie_delivery_seconds`,
# from the record's fetch to the receiver's acknowledgement) gives p50 and
# p99, interpolated within its 50%-wide buckets as Prometheus does.
# Usage: scripts/bench-latency.sh [SECONDS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds=${1:-30}
cargo build --release -q --workspace
bin=${CARGO_TARGET_DIR:-target}/release/duijie
sandbox_bin=${CARGO_TARGET_DIR:-target}/release/duijie-sandbox
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hport=$(free); sport=18080
work=$(mktemp -d)
# Apache Kafka, one KRaft node (scripts/kafka.sh).
brokers=$(scripts/kafka.sh start "$work/kafka" 1)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true' EXIT
cat >"$work/latency.toml" <<TOML
[hub]
name = "latency"
mappings = "$PWD/benches/workload/mappings"
schemas = "$PWD/benches/workload/schemas"

[kafka]
brokers = "${brokers}"

[http]
listen = "127.0.0.1:${hport}"

[pipelines.grid_urgent]
system = "grid"
mapping = "grid_event"
topic = "canonical.grid_event"
partitions = 3

[pipelines.grid_urgent.source]
kind = "webhook"
path = "/hooks/grid/urgent"
secret = "\${file:$PWD/pipelines/secrets/grid_webhook_secret}"
max_age = "5m"

[deliveries.feed_urgent]
topic = "canonical.grid_event"
department = "emergency"
transform = { kind = "fields", fields = ["event_no", "category_name", "location", "status", "reported_at"] }
target = { kind = "webhook", url = "http://127.0.0.1:${sport}/dept/emergency/webhook", secret = "\${file:$PWD/pipelines/secrets/dept_feed_secret}" }
TOML
sleep 1
"$bin" run --config "$work/latency.toml" 2>"$work/hub.log" &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${hport}") 2>/dev/null && break; sleep 0.1; done
"$sandbox_bin" serve --error-rate 0 --slow-rate 0 --duplicate-rate 0 \
  --grid-webhook "http://127.0.0.1:${hport}/hooks/grid/urgent" --grid-webhook-every 1ms 2>"$work/sandbox.log" &
pids+=($!)
warmup=${WARMUP:-10}
echo "pushing 1,000 urgent events a second: ${warmup} s of warm-up (start, group join), then ${seconds} s measured …"
sleep "$warmup"
curl -s "http://127.0.0.1:${hport}/metrics" >"$work/warm.txt"
sleep "$seconds"
curl -s "http://127.0.0.1:${hport}/metrics" >"$work/metrics.txt"
python3 - "$work/metrics.txt" "$seconds" "$work/warm.txt" <<'PY'
import re, sys
def read(path):
    text = open(path).read()
    b = {}
    for line in text.splitlines():
        m = re.match(r'duijie_delivery_seconds_bucket\{.*le="([^"]+)".*\} (\d+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            b[le] = b.get(le, 0) + int(m.group(2))
    return text, b
text, end = read(sys.argv[1])
_, warm = read(sys.argv[3])
# Only what was delivered after the warm-up.
buckets = sorted((le, n - warm.get(le, 0)) for le, n in end.items())
total = buckets[-1][1] if buckets else 0
def q(p):
    want = p * total
    lo, below = 0.0, 0
    for le, n in buckets:
        if n >= want:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (want - below) / max(n - below, 1)
        lo, below = le, n
    return lo
def count(name):
    m = re.search(name + r'_total\{[^}]*\} (\d+)', text)
    return int(m.group(1)) if m else 0
print(f"delivered {count('duijie_delivery_delivered')} of {count('duijie_records_delivered')} events taken in; "
      f"{total} delivered in the measured {sys.argv[2]} s ({total / float(sys.argv[2]):.0f} events/s)")
print(f"source-to-push latency: p50 {q(0.5) * 1000:.0f} ms, p99 {q(0.99) * 1000:.0f} ms (target p99 < 500 ms)")
PY
