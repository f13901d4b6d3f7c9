#!/usr/bin/env bash
# Peak memory across a 1,000,000-record backfill: a front-end PostgreSQL
# table of a million hidden-danger rows, re-read by `duijie backfill`
# (release build) into Apache Kafka (one node). Samples the resident set
# every half second and prints it at each tenth of the way, and the peak.
# Usage: scripts/bench-memory.sh [ROWS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rows=${1:-1000000}
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/duijie
pg="postgres://postgres@127.0.0.1:5432/test"
table="bench_hazards"
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
# Apache Kafka, one KRaft node (scripts/kafka.sh).
brokers=$(scripts/kafka.sh start "$work/kafka" 1)
trap 'scripts/kafka.sh stop "$work/kafka" >/dev/null 2>&1 || true; wait 2>/dev/null || true' EXIT

echo "preparing ${rows} rows in ${table} …"
psql -q -h 127.0.0.1 -U postgres -d test <<SQL
DROP VIEW IF EXISTS v_${table};
DROP TABLE IF EXISTS ${table};
CREATE TABLE ${table} (
  id BIGINT PRIMARY KEY, hazard_no VARCHAR(32) NOT NULL, ent_name VARCHAR(128) NOT NULL,
  ent_credit_code VARCHAR(40), ent_legal_person VARCHAR(32), check_time TIMESTAMP(6) NULL,
  checker VARCHAR(32), place VARCHAR(64), description VARCHAR(256), grade CHAR(1) NOT NULL,
  measures VARCHAR(256), rectify_deadline DATE, responsible VARCHAR(32), funds DECIMAL(12,2),
  state CHAR(1) NOT NULL, accept_time TIMESTAMP(6) NULL, updated_at TIMESTAMP(6) NOT NULL);
INSERT INTO ${table}
SELECT g, 'YH2026' || lpad(g::text, 8, '0'), '宜昌高新区宏达机械制造有限公司', '91420500MA4F0N5Q8W', '张伟',
       TIMESTAMP '2026-01-01 08:00:00' + g * INTERVAL '1 second', '李强', '生产车间',
       '配电箱未上锁，线路老化。', CASE WHEN g % 3 = 0 THEN '2' ELSE '1' END, '更换线路并加锁。',
       DATE '2026-03-01', '王芳', 1200.50, (g % 5)::text, NULL,
       TIMESTAMP '2026-01-01 00:00:00' + g * INTERVAL '1 second'
FROM generate_series(1, ${rows}) g;
CREATE INDEX ON ${table} (updated_at, id);
CREATE VIEW v_${table} AS SELECT * FROM ${table};
SQL

cat >"$work/memory.toml" <<TOML
[hub]
name = "memory"
mappings = "$PWD/benches/workload/mappings"
schemas = "$PWD/benches/workload/schemas"

[kafka]
brokers = "${brokers}"

[pipelines.hazard_pg]
system = "safety"
mapping = "safety_hazard"
topic = "canonical.safety_hazard"
schedule = "*/10 * * * * *"
batch_size = 2000

[pipelines.hazard_pg.source]
kind = "sql_poll"
url = "${pg}"
table = "v_${table}"
page_size = 2000
TOML
sleep 1
start=$(date +%s.%N)
"$bin" backfill --config "$work/memory.toml" --pipeline hazard_pg --from 2026-01-01 >"$work/out.txt" 2>"$work/err.txt" &
pid=$!
peak=0; samples="$work/rss.txt"; : >"$samples"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
  [ -n "$rss" ] && echo "$(date +%s.%N) $rss" >>"$samples"
  sleep 0.5
done
wait "$pid"
end=$(date +%s.%N)
cat "$work/out.txt"
python3 - "$samples" "$rows" "$start" "$end" <<'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
n, start, end = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
if not rows:
    sys.exit("no samples")
peak = max(r for _, r in rows)
print(f"{n} records in {end - start:.1f} s ({n / (end - start):.0f} records/s)")
print("resident set at each tenth of the run (MB):",
      " ".join(f"{rows[min(len(rows) - 1, int(len(rows) * k / 10))][1] / 1024:.0f}" for k in range(1, 11)))
print(f"peak resident set: {peak / 1024:.0f} MB (target < 200 MB, flat)")
PY
