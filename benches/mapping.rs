//! Parse + map + Avro-encode throughput on the shared workload
//! (`../shared/bench/gen_urban_cases.py 200000`), on one core, beside a
//! baseline measured in the same run: serde_json parse + re-serialise of the
//! same lines.
//!
//! `cargo bench --bench mapping` (set `DUIJIE_BENCH_RECORDS` and
//! `DUIJIE_BENCH_RUNS` to change the size and the number of runs). Each
//! side runs in a function of its own (`baseline_pass`, `engine_pass`),
//! which `scripts/bench-instructions.sh` counts under callgrind.

use duijie::mapping::MappingSet;
use duijie::schema::{Encoding, RecordEncoder, SchemaSet};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

mod common;
use common::{median, workload};

fn main() {
    let records: usize = std::env::var("DUIJIE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runs: usize = std::env::var("DUIJIE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let bytes = workload(records);
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), records);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemas = SchemaSet::load_dir(&root.join("benches/workload/schemas")).unwrap();
    let mappings = MappingSet::load_dir(&root.join("benches/workload/mappings"), &schemas).unwrap();
    let mapping = mappings.get("urban_case").unwrap();
    let encoder = RecordEncoder::new(Encoding::SingleObject);

    let mut baseline = Vec::new();
    let mut engine = Vec::new();
    let mut out = Vec::with_capacity(1024);
    let mut rejects = 0usize;
    for _ in 0..runs {
        let start = Instant::now();
        black_box(baseline_pass(&lines, &mut out));
        baseline.push(records as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        let (total, r) = engine_pass(&lines, &mapping, &encoder, &mut out);
        black_box(total);
        rejects = r;
        engine.push(records as f64 / start.elapsed().as_secs_f64());
    }
    let (b, e) = (median(baseline), median(engine));
    println!("workload: {records} urban cases, {runs} runs, one core, median");
    println!("baseline serde_json parse + re-serialise: {b:>10.0} records/s");
    println!("duijie parse + map + Avro encode:         {e:>10.0} records/s ({rejects} rejects)");
    println!("ratio engine / baseline:                  {:>10.2}", e / b);
}

/// Baseline: serde_json parse + re-serialise of every line.
#[inline(never)]
fn baseline_pass(lines: &[&[u8]], out: &mut Vec<u8>) -> usize {
    let mut total = 0usize;
    for line in lines {
        out.clear();
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        serde_json::to_writer(&mut *out, &v).unwrap();
        total += out.len();
    }
    total
}

/// The fetch time the records are mapped at, as the hub maps a batch at its
/// fetch time (`Mapping::map_at`): 2026-12-01T00:00:00Z.
const FETCHED_AT_MS: i64 = 1_796_083_200_000;

/// The engine: parse what the mapping reads + map + Avro encode; gives the
/// bytes written and the rejects.
#[inline(never)]
fn engine_pass(
    lines: &[&[u8]],
    mapping: &duijie::mapping::Mapping,
    encoder: &RecordEncoder,
    out: &mut Vec<u8>,
) -> (usize, usize) {
    let (mut total, mut rejects) = (0usize, 0usize);
    for line in lines {
        out.clear();
        match mapping.map_at(line, FETCHED_AT_MS) {
            Ok(m) => {
                encoder.encode(&mapping.schema, &m.values, out).unwrap();
                total += out.len();
            }
            Err(_) => rejects += 1,
        }
    }
    (total, rejects)
}
