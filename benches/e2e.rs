//! End to end: file drop → mapped → Avro → Kafka, acknowledged, on the
//! shared workload (200,000 urban cases), beside a baseline measured in the
//! same run against the same broker: a minimal rdkafka producer sending
//! the same lines, already split and in memory, with the same durability
//! settings (idempotent, `acks=all`, `linger.ms=5`), waiting for every
//! acknowledgement.
//!
//! The hub's figure counts from its start, with the file waiting in the
//! exchange folder, to the last record (and dead letter) acknowledged and
//! its cursor committed; topics exist beforehand in both cases. Runs alternate, and the medians
//! are compared.
//!
//! `scripts/bench-e2e.sh` starts Apache Kafka (or Tansu with
//! `BROKER=tansu`) and runs this; or `DUIJIE_BENCH_BROKERS=host:port cargo bench --bench e2e`.
//! `DUIJIE_BENCH_RECORDS`, `DUIJIE_BENCH_RUNS` change the size and runs.

mod common;

/// mimalloc: the hub allocates and frees across threads (mapping threads,
/// tokio workers, librdkafka's callbacks), where glibc's allocator spends a
/// quarter of the time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{env_or, lines, median, workload};
use duijie::bus::{Bus, TopicSpec};
use duijie::config::Deployment;
use duijie::runtime::Hub;
use duijie::runtime::stats::PipelineStats;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn tag() -> String {
    format!("{}-{:06x}", std::process::id(), fastrand::u32(..0xFFFFFF))
}

/// The baseline: every line to the broker, keyed by its case number.
async fn baseline(brokers: &str, records: &[(&str, &[u8])]) -> f64 {
    let topic = format!("bench-baseline-{}", tag());
    Bus::new(brokers, "bench")
        .ensure_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 3,
            cleanup: duijie::bus::Cleanup::Delete,
        }])
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .unwrap();
    let start = Instant::now();
    let mut pending = Vec::with_capacity(records.len());
    for (key, line) in records {
        let mut record = FutureRecord::to(&topic).key(*key).payload(*line);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, r)) => {
                    // Queue full: let the broker catch up.
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    let rate = records.len() as f64 / start.elapsed().as_secs_f64();
    drop(producer);
    rate
}

/// The hub: a file-drop pipeline over the workload file.
async fn hub(brokers: &str, bytes: &[u8], records: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = tag();
    let text = format!(
        r#"[hub]
name = "bench-{t}"
mappings = "{mappings}"
schemas = "{schemas}"

[kafka]
brokers = "{brokers}"
cursor_topic = "bench-cursors-{t}"

[pipelines.urban_files]
system = "digital_urban"
mapping = "urban_case"
topic = "bench-canonical-{t}"
dlq_topic = "bench-dlq-{t}"
partitions = 3
schedule = "* * * * * *"
batch_size = 10000
max_in_flight_batches = 16


[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
"#,
        mappings = root.join("mappings").display(),
        schemas = root.join("schemas").display(),
    );
    let file = dir.path().join("deploy.toml");
    std::fs::write(&file, text).unwrap();
    let deployment = Deployment::load(&file).unwrap();
    deployment
        .bus()
        .ensure_topics(&deployment.topics())
        .await
        .unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    std::fs::write(dir.path().join("inbox/cases.jsonl"), bytes).unwrap();

    let hub = Hub::load(deployment).unwrap();
    let stats = hub.stats.pipeline("urban_files");
    let stop = CancellationToken::new();
    // From the hub's start (cursor loaded, source opened: its first poll
    // finds the file) to the last acknowledgement.
    let start = Instant::now();
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move { hub.run(&[], stop).await })
    };
    loop {
        let done = PipelineStats::get(&stats.delivered) + PipelineStats::get(&stats.dead_lettered);
        if done as usize >= records {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    stop.cancel();
    running.await.unwrap().unwrap();
    (
        records as f64 / elapsed.as_secs_f64(),
        PipelineStats::get(&stats.dead_lettered),
    )
}

fn main() {
    let brokers = std::env::var("DUIJIE_BENCH_BROKERS").expect(
        "DUIJIE_BENCH_BROKERS is not set: run scripts/bench-e2e.sh, which starts a Tansu broker",
    );
    let records = env_or("DUIJIE_BENCH_RECORDS", 200_000);
    let runs = env_or("DUIJIE_BENCH_RUNS", 5);
    let bytes = workload(records);
    let lines = lines(&bytes);
    assert_eq!(lines.len(), records);
    // Keys as the baseline's own work: the case number, found beforehand.
    let keyed: Vec<(&str, &[u8])> = lines
        .iter()
        .map(|l| {
            let s = std::str::from_utf8(l).unwrap();
            let key = s
                .split("\"taskNum\":")
                .nth(1)
                .and_then(|r| r.split('"').nth(1))
                .unwrap_or("");
            (key, *l)
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut base = Vec::new();
    let mut ours = Vec::new();
    let mut rejects = 0;
    // `DUIJIE_BENCH_ONLY=hub` skips the baseline (for profiling).
    let only_hub = std::env::var("DUIJIE_BENCH_ONLY").is_ok_and(|v| v == "hub");
    for run in 0..runs {
        let b = if only_hub {
            f64::NAN
        } else {
            rt.block_on(baseline(&brokers, &keyed))
        };
        if std::env::var("DUIJIE_BENCH_ONLY").is_ok_and(|v| v == "baseline") {
            eprintln!("run {run}: baseline {b:.0} records/s");
            continue;
        }
        let (h, r) = rt.block_on(hub(&brokers, &bytes, records));
        rejects = r;
        eprintln!(
            "run {run}: baseline {b:.0} records/s, duijie {h:.0} records/s ({:.2})",
            h / b
        );
        base.push(b);
        ours.push(h);
    }
    if only_hub || ours.is_empty() {
        return; // a profiling run: the per-run lines are the result
    }
    let (b, h) = (median(base), median(ours));
    println!("workload: {records} urban cases, {runs} alternating runs, broker {brokers}, median");
    println!("baseline rdkafka producer, lines pre-split:         {b:>10.0} records/s");
    println!(
        "duijie file drop -> map -> Avro -> Kafka, acked:    {h:>10.0} records/s ({rejects} dead-lettered)"
    );
    println!(
        "ratio duijie / baseline:                            {:>10.2}",
        h / b
    );
}
