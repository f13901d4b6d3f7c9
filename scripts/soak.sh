#!/usr/bin/env bash
# Soak: the whole Yichang deployment — six systems from the sandbox with
# faults on (HTTP 500s, slow answers, duplicated rows), webhook pushes,
# every delivery — for MINUTES (default 20) against a Apache Kafka broker,
# then reconciled:
#   - per pipeline, records fetched = records read back from its topic +
#     dead letters read back from its DLQ (by their provenance headers);
#   - per delivery, every record settled (delivered, refused, failed,
#     not sent by policy) has exactly one receipt on the receipts topic, and
#     every refused or failed one a dead letter;
#   - the hub's resident set at the end is not above the one a quarter in
#     (+20%); the sandbox runs as its own process (`--sandbox-process`), so
#     its growing stores are not counted.
# Not part of the test command. Usage: scripts/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
minutes=${1:-20}
cargo build --release -q --workspace
bin=${CARGO_TARGET_DIR:-target}/release/duijie-sandbox
work=$(mktemp -d)
# Apache Kafka, one KRaft node (scripts/kafka.sh).
brokers=$(scripts/kafka.sh start "$work/kafka" 1)
trap 'scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true; wait 2>/dev/null || true' EXIT
sleep 1
echo "soaking for ${minutes} min (log in $work) …"
"$bin" demo --sandbox-process --brokers "${brokers}" --seconds $((minutes * 60)) >"$work/summary.txt" 2>"$work/demo.log" &
pid=$!
: >"$work/rss.txt"
while kill -0 "$pid" 2>/dev/null; do
  awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null >>"$work/rss.txt" || true
  sleep 5
done
if ! wait "$pid"; then
  echo "soak: FAILED — the demo stopped with an error:"
  tail -5 "$work/demo.log"
  exit 1
fi
python3 - "$work/summary.txt" "$work/rss.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ok = True
print(text[text.find("Pipelines"):text.find("Alerts")].rstrip())
pattern = r"^\s+(\S+)\s+fetched\s+(\d+)\s+delivered\s+(\d+)\s+dead-lettered\s+(\d+)\s+on topic\s+(\d+)\s+in DLQ\s+(\d+)"
for m in re.finditer(pattern, text, re.M):
    name, fetched, delivered, dlq, on_topic, in_dlq = m.group(1), *map(int, m.groups()[1:])
    if fetched != on_topic + in_dlq:
        ok = False
        print(f"MISMATCH {name}: fetched {fetched} != {on_topic} read back from the topic + {in_dlq} from the DLQ")
    if (delivered, dlq) != (on_topic, in_dlq):
        ok = False
        print(f"MISMATCH {name}: acknowledged {delivered} + {dlq}, read back {on_topic} + {in_dlq}")
pattern = r"^\s+(\S+)\s+delivered\s+(\d+)\s+refused\s+(\d+)\s+failed\s+(\d+)\s+not sent\s+(\d+)\s+receipts\s+(\d+)\s+twice\s+(\d+)\s+dead letters\s+(\d+)"
pushes = 0
for m in re.finditer(pattern, text, re.M):
    pushes += 1
    name, delivered, refused, failed, not_sent, receipts, twice, letters = m.group(1), *map(int, m.groups()[1:])
    settled = delivered + refused + failed + not_sent
    if receipts != settled or twice != 0:
        ok = False
        print(f"MISMATCH {name}: {settled} settled, {receipts} receipts read back ({twice} for the same record)")
    if letters != refused + failed:
        ok = False
        print(f"MISMATCH {name}: {refused} refused + {failed} failed, {letters} dead letters read back")
print(f"{pushes} deliveries reconciled: receipts read back = records settled; dead letters = refused + failed")
if pushes == 0:
    ok = False
rss = [int(l) for l in open(sys.argv[2]) if l.strip()]
if rss:
    quarter, last = rss[len(rss) // 4], rss[-1]
    print(f"resident set: {quarter / 1024:.0f} MB a quarter in, {last / 1024:.0f} MB at the end, peak {max(rss) / 1024:.0f} MB")
    if last > quarter * 1.2:
        ok = False
        print("MEMORY GREW")
print("soak: OK" if ok else "soak: FAILED")
sys.exit(0 if ok else 1)
PY
