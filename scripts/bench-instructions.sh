#!/usr/bin/env bash
# Instructions a record, which do not move with the machine's noise: the
# mapping benchmark (benches/mapping.rs) under callgrind, a fixed record
# count of the shared workload, one pass of each side. Counts the engine's
# pass (parse what the mapping reads + map + Avro encode, `engine_pass`)
# and, in the same process, the baseline's (serde_json parse +
# re-serialise, `baseline_pass`), each inclusive of everything it calls.
# Prints, last: `engine instructions a record: N; serde_json parse +
# re-serialise: M; ratio R`.
# Usage: scripts/bench-instructions.sh [RECORDS]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v valgrind >/dev/null || { echo "valgrind is required (Debian package valgrind)"; exit 1; }
records=${1:-20000}
bin=$(cargo bench --bench mapping --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "mapping" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "the mapping benchmark did not build"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  DUIJIE_BENCH_RECORDS=$records DUIJIE_BENCH_RUNS=1 valgrind --tool=callgrind \
    --collect-atstart=no --toggle-collect="*$1*" \
    --callgrind-out-file="$out/$1.out" "$bin" --bench >/dev/null 2>"$out/$1.log"
  awk '/^totals:/ {print $2}' "$out/$1.out"
}
engine=$(count engine_pass)
baseline=$(count baseline_pass)
python3 - "$records" "$engine" "$baseline" <<'PY'
import sys
n, e, b = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(f"{n} records, one pass each, callgrind (instructions, inclusive)")
print(f"engine instructions a record: {e / n:,.0f}; serde_json parse + re-serialise: {b / n:,.0f}; ratio {e / b:.2f}")
PY
