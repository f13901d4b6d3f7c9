#!/usr/bin/env bash
# duijie beside a peer on the same job, same broker, same run: the shared
# workload file -> mapping -> Kafka (acknowledged), with Benthos (the
# open-source core of Redpanda Connect, github.com/redpanda-data/benthos/v4,
# built here from the Go module proxy with one Kafka output plugin of ours:
# scripts/peers/benthos). First checks that the Bloblang mapping
# (urban_case.blobl) gives the same records and rejects as `duijie map` on
# the first 1,000 records (plus three that must be rejected); then runs
# scripts/bench-e2e.sh with the peer in every run. Extra arguments go to
# `cargo bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
peers=/var/tmp/duijie-peers
mkdir -p "$peers"
if [ ! -x "$peers/benthos" ]; then
  echo "== building Benthos v4.60.0 (once)"
  (cd scripts/peers/benthos && go build -o "$peers/benthos" .)
fi
cargo build --release -q --bin duijie
bin=${CARGO_TARGET_DIR:-target}/release/duijie
work=$(mktemp -d -t duijie-peers.XXXXXX)
data=/var/tmp/duijie-bench
mkdir -p "$data"
[ -s "$data/urban_cases_200000.ndjson" ] || python3 ../shared/bench/gen_urban_cases.py 200000 >"$data/urban_cases_200000.ndjson"
head -1000 "$data/urban_cases_200000.ndjson" >"$work/check.ndjson"
python3 - "$work/check.ndjson" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
bad = []
for i, (field, value) in enumerate([("eventSrcId", "7"), ("cellId", "4205"), ("eventStateId", "2")]):
    r = json.loads(lines[i]); r[field] = value; r["taskNum"] = f"YCBAD{i}"; bad.append(r)
open(sys.argv[1], "a").write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bad))
PY
INPUT="$work/check.ndjson" MAPPING="$PWD/scripts/peers/benthos/urban_case.blobl" REJECTS="$work/benthos.rejects" \
  "$peers/benthos" run scripts/peers/benthos/file_to_stdout.yaml >"$work/benthos.jsonl"
"$bin" map --mapping urban_case --mappings benches/workload/mappings --schemas benches/workload/schemas --input "$work/check.ndjson" --output "$work/duijie.jsonl" --rejects "$work/duijie.rejects" 2>/dev/null
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
b = {r["id"]: r for r in map(json.loads, open(f"{w}/benthos.jsonl"))}
d = {r["id"]: r for r in map(json.loads, open(f"{w}/duijie.jsonl"))}
assert set(b) == set(d), f"different records: {sorted(set(b) ^ set(d))[:5]}"
diffs = [(k, f) for k, r in b.items() for f in r if r[f] != d[k].get(f)]
assert not diffs, f"fields differ: {diffs[:5]}"
nb = sum(1 for _ in open(f"{w}/benthos.rejects")); nd = sum(1 for _ in open(f"{w}/duijie.rejects"))
assert nb == nd == 3, f"rejects: benthos {nb}, duijie {nd}"
print(f"== check: {len(b)} records identical in every Benthos output field, {nb} rejects on both sides")
PY
DUIJIE_BENCH_BENTHOS="$peers/benthos" scripts/bench-e2e.sh "$@"
