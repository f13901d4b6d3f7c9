#!/usr/bin/env bash
# `duijie map` as a user runs it — the whole process, file in, file out — on
# the shared workload (../shared/bench/gen_urban_cases.py), beside a
# hand-written serde implementation of the same workload
# (examples/urban_serde.rs) and Vector's VRL running the same mapping
# (../shared/bench/vrl-bench, the `vrl` crate with jemalloc, as Vector
# ships) in the same run, alternating, median of RUNS. Prints records/s,
# peak resident set, and the ratios (duijie / serde, duijie / VRL).
# The VRL peer is built once into /var/tmp/vrl-bench-target (VRL_BENCH=0
# leaves it out).
# Usage: scripts/bench-map.sh [RECORDS ...]   (default 200000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
runs=${RUNS:-5}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(200000 1000000)
cargo build --release -q --bin duijie --example urban_serde
target=${CARGO_TARGET_DIR:-target}/release
vrl=""
if [ "${VRL_BENCH:-1}" != 0 ] && [ -d ../shared/bench/vrl-bench ]; then
  (cd ../shared/bench/vrl-bench && CARGO_TARGET_DIR=/var/tmp/vrl-bench-target cargo build --release -q --features jemalloc)
  vrl=/var/tmp/vrl-bench-target/release/vrl-bench
fi
data=/var/tmp/duijie-bench
mkdir -p "$data"

# One timed run: prints "seconds peak_kib".
timed() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for n in "${sizes[@]}"; do
  input="$data/urban_cases_$n.ndjson"
  [ -s "$input" ] || python3 ../shared/bench/gen_urban_cases.py "$n" >"$input"
  : >"$data/duijie.times"; : >"$data/serde.times"; : >"$data/vrl.times"
  for _ in $(seq 1 "$runs"); do
    timed "$target/duijie" map --mapping urban_case --mappings benches/workload/mappings --schemas benches/workload/schemas --input "$input" --output /dev/null --rejects /dev/null >>"$data/duijie.times"
    timed "$target/examples/urban_serde" "$input" >>"$data/serde.times"
    [ -z "$vrl" ] || timed "$vrl" "$input" vrl >>"$data/vrl.times"
  done
  d=$(cut -d' ' -f1 "$data/duijie.times" | median); dm=$(cut -d' ' -f2 "$data/duijie.times" | sort -n | tail -1)
  s=$(cut -d' ' -f1 "$data/serde.times" | median); sm=$(cut -d' ' -f2 "$data/serde.times" | sort -n | tail -1)
  echo "== $n records ($(du -h "$input" | cut -f1)), median of $runs alternating runs"
  awk -v n="$n" -v d="$d" -v s="$s" -v dm="$dm" -v sm="$sm" 'BEGIN {
    printf "  hand-written serde (baseline): %9.0f records/s  peak RSS %6.1f MiB\n", n / s, sm / 1024
    printf "  duijie map:                    %9.0f records/s  peak RSS %6.1f MiB\n", n / d, dm / 1024
    printf "  ratio duijie / serde: %.2f\n", s / d
  }'
  if [ -n "$vrl" ]; then
    v=$(cut -d' ' -f1 "$data/vrl.times" | median); vm=$(cut -d' ' -f2 "$data/vrl.times" | sort -n | tail -1)
    awk -v n="$n" -v d="$d" -v v="$v" -v vm="$vm" 'BEGIN {
      printf "  Vector VRL (vrl-bench, jemalloc): %6.0f records/s  peak RSS %6.1f MiB\n", n / v, vm / 1024
      printf "  ratio duijie / VRL: %.2f\n", v / d
    }'
  fi
done
