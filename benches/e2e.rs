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
//! `DUIJIE_BENCH_RECORDS`, `DUIJIE_BENCH_RUNS` change the size and runs;
//! `DUIJIE_BENCH_RAW=1` turns on the pipeline's raw retention;
//! `DUIJIE_BENCH_SEALED=1` measures the CPU sealing at rest costs a record
//! (the hub with and without `[hub.encryption]`, alternating).
//!
//! To find where the time goes: `DUIJIE_BENCH_BROKER_PID` (the script sets
//! it) adds the broker's CPU on each side; `DUIJIE_BENCH_ONLY=hub|baseline`
//! runs one side; `DUIJIE_BENCH_BASE_HEADER=N` gives the baseline's records
//! a header of N bytes; `DUIJIE_BENCH_BASE_PARSE=1` has the baseline parse
//! each line as JSON first; `DUIJIE_BENCH_HUB_PROPERTIES="k=v,k=v"` gives the
//! hub librdkafka properties.

mod common;

/// mimalloc: the hub allocates and frees across threads (mapping threads,
/// tokio workers, librdkafka's callbacks), where glibc's allocator spends a
/// quarter of the time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{env_or, lines, median, tag, workload};
use duijie::bus::{Bus, TopicSpec};
use duijie::config::Deployment;
use duijie::runtime::Hub;
use duijie::runtime::stats::PipelineStats;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The baseline: every line to the broker, keyed by its case number.
async fn baseline(
    brokers: &str,
    records: &[(&str, &[u8])],
    broker_cpu: &dyn Fn() -> f64,
) -> Measured {
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
    // `DUIJIE_BENCH_BASE_HEADER=N`: each record carries a header of N bytes
    // (what a provenance header costs the producer and the broker).
    let header = std::env::var("DUIJIE_BENCH_BASE_HEADER")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| vec![b'p'; n]);
    // `DUIJIE_BENCH_BASE_PARSE=1`: the baseline also parses each line as
    // JSON (into nothing, on every core, a chunk ahead of sending it): the
    // least any hub that reads JSON must do beyond sending.
    let parse = std::env::var("DUIJIE_BENCH_BASE_PARSE").is_ok_and(|v| v == "1");
    let (start, cpu_before, broker_before) = (Instant::now(), cpu_seconds(), broker_cpu());
    let mut pending = Vec::with_capacity(records.len());
    for chunk in records.chunks(10_000) {
        if parse {
            use rayon::prelude::*;
            chunk.par_iter().for_each(|(_, line)| {
                serde_json::from_slice::<serde::de::IgnoredAny>(line).expect("JSON");
            });
        }
        for (key, line) in chunk {
            let mut record = FutureRecord::to(&topic).key(*key).payload(*line);
            if let Some(h) = &header {
                record = record.headers(rdkafka::message::OwnedHeaders::new().insert(
                    rdkafka::message::Header {
                        key: "duijie-provenance",
                        value: Some(h.as_slice()),
                    },
                ));
            }
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
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    let rate = records.len() as f64 / start.elapsed().as_secs_f64();
    let broker = broker_cpu() - broker_before;
    drop(producer);
    Measured {
        rate,
        cpu: cpu_seconds() - cpu_before,
        broker,
        rejects: 0,
    }
}

/// One side's run: records/s over its timed span, and the CPU seconds its
/// process and the broker used in that span (from the first record taken
/// to the last acknowledgement and the client's close; the setup before —
/// topics, writing the workload file — is not the side's work).
struct Measured {
    rate: f64,
    cpu: f64,
    broker: f64,
    rejects: u64,
}

/// The hub: a file-drop pipeline over the workload file.
///
/// Long because the benchmark's hub run: write the deployment, start the
/// process, wait for every record, measure its CPU.
async fn hub(
    brokers: &str,
    bytes: &[u8],
    records: usize,
    broker_cpu: &dyn Fn() -> f64,
    sealed: bool,
) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = tag();
    let text = format!(
        r#"[hub]
name = "bench-{t}"
mappings = "{mappings}"
schemas = "{schemas}"
{sealing}

[kafka]
brokers = "{brokers}"
cursor_topic = "bench-cursors-{t}"
{props}

[pipelines.urban_files]
system = "digital_urban"
mapping = "urban_case"
topic = "bench-canonical-{t}"
dlq_topic = "bench-dlq-{t}"
partitions = 3
schedule = "* * * * * *"
batch_size = {batch}
max_in_flight_batches = {in_flight}
{raw}


[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
"#,
        // `DUIJIE_BENCH_HUB_PROPERTIES="k=v,k=v"`: librdkafka properties
        // for the hub's clients (`[kafka] properties`), to try settings.
        props = std::env::var("DUIJIE_BENCH_HUB_PROPERTIES")
            .map(|v| {
                let pairs: Vec<String> = v
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| format!("\"{k}\" = \"{v}\""))
                    .collect();
                format!("properties = {{ {} }}", pairs.join(", "))
            })
            .unwrap_or_default(),
        // `DUIJIE_BENCH_BATCH` and `DUIJIE_BENCH_IN_FLIGHT`: the
        // pipeline's `batch_size` and `max_in_flight_batches`. 2,000 × 8
        // (16,000 records in flight, about 7 MB of payloads) keeps the
        // hub's memory warm; 10,000 × 16, used before 2026-12-08, held 80%
        // of the workload in flight, so that nearly every batch took fresh
        // pages the kernel zeroed: 6.7–8.1 µs CPU a record against 4.9–5.6
        // µs, at the same records/s (docs/PERFORMANCE.md).
        batch = env_or("DUIJIE_BENCH_BATCH", 2_000),
        in_flight = env_or("DUIJIE_BENCH_IN_FLIGHT", 8),
        mappings = root.join("benches/workload/mappings").display(),
        schemas = root.join("benches/workload/schemas").display(),
        // Sealing at rest: the raw topic and the canonical topic, SM4-GCM.
        sealing = if sealed {
            format!(
                "[hub.encryption]\ncurrent = \"b1\"\nkeys = {{ b1 = \"00112233445566778899aabbccddeeff\" }}\ntopics = [\"bench-canonical-{t}\"]"
            )
        } else {
            String::new()
        },
        // `DUIJIE_BENCH_RAW=1`: the pipeline keeps its raw records too
        // (always with `DUIJIE_BENCH_SEALED=1`).
        raw = if std::env::var("DUIJIE_BENCH_RAW").is_ok_and(|v| v == "1")
            || std::env::var("DUIJIE_BENCH_SEALED").is_ok_and(|v| v == "1")
        {
            "raw = { retention = \"1d\" }"
        } else {
            ""
        },
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
    let (start, cpu_before, broker_before) = (Instant::now(), cpu_seconds(), broker_cpu());
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
    let broker = broker_cpu() - broker_before;
    stop.cancel();
    running.await.unwrap().unwrap();
    Measured {
        rate: records as f64 / elapsed.as_secs_f64(),
        cpu: cpu_seconds() - cpu_before,
        broker,
        rejects: PipelineStats::get(&stats.dead_lettered),
    }
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// CPU seconds process `pid` ("self" for this one) has used, from /proc;
/// 0 when it cannot be read.
fn process_cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat (11 and 12 here), in
    // clock ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The peer: Benthos (scripts/peers/benthos) on the same file, to a fresh
/// topic on the same broker, from its start to its exit (the file read to
/// its end, every record acknowledged). Records/s and CPU seconds.
fn benthos(brokers: &str, binary: &str, peers: &Path, input: &Path, records: usize) -> (f64, f64) {
    let topic = format!("bench-benthos-{}", tag());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(Bus::new(brokers, "bench").ensure_topics(&[TopicSpec {
        name: topic.clone(),
        partitions: 3,
        cleanup: duijie::bus::Cleanup::Delete,
    }]))
    .unwrap();
    let times = tempfile::NamedTempFile::new().unwrap();
    let rejects = tempfile::NamedTempFile::new().unwrap();
    let start = Instant::now();
    let status = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%U %S", "-o"])
        .arg(times.path())
        .arg(binary)
        .args(["run", "--log.level", "warn"])
        .arg(peers.join("file_to_kafka.yaml"))
        .env("INPUT", input)
        .env("MAPPING", peers.join("urban_case.blobl"))
        .env("REJECTS", rejects.path())
        .env("BROKERS", brokers)
        .env("TOPIC", &topic)
        .env("THREADS", "2")
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "benthos exited with {status}");
    let cpu: f64 = std::fs::read_to_string(times.path())
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    (records as f64 / elapsed.as_secs_f64(), cpu)
}

/// Long because the benchmark's script: bring up the broker, run each part
/// in turn, print the ratios; sequential and run by hand.
fn main() {
    let brokers = std::env::var("DUIJIE_BENCH_BROKERS")
        .expect("DUIJIE_BENCH_BROKERS is not set: run scripts/bench-e2e.sh, which starts a broker");
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
    // `DUIJIE_BENCH_BENTHOS=path/to/benthos` adds the peer to every run.
    let peer = std::env::var("DUIJIE_BENCH_BENTHOS").ok();
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/benthos");
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), &bytes).unwrap();
    let (mut peer_rates, mut peer_cpu, mut hub_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let (mut base_cpu, mut base_broker_cpu, mut hub_broker_cpu) =
        (Vec::new(), Vec::new(), Vec::new());
    // The engine alone, in each run: what the hub's CPU a record is
    // compared with (issue 31: hub ≤ 1.3 × (engine + the plain producer)).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemas =
        duijie::schema::SchemaSet::load_dir(&root.join("benches/workload/schemas")).unwrap();
    let mappings =
        duijie::mapping::MappingSet::load_dir(&root.join("benches/workload/mappings"), &schemas)
            .unwrap();
    let mapping = mappings.get("urban_case").unwrap();
    let encoder = duijie::schema::RecordEncoder::new(duijie::schema::Encoding::SingleObject);
    let mut engine_cpu = Vec::new();
    // `DUIJIE_BENCH_BROKER_PID` (scripts/bench-e2e.sh sets it): the broker's
    // CPU during each side's run is reported too, since on this machine the
    // broker shares the two cores with the client.
    let broker_pid = std::env::var("DUIJIE_BENCH_BROKER_PID").ok();
    let broker_cpu = || broker_pid.as_deref().map_or(0.0, process_cpu_seconds);
    // `DUIJIE_BENCH_SEALED=1`: the cost of sealing at rest (issue 28: at
    // most 10% more CPU a record). The hub alone, raw retention on, with
    // and without `[hub.encryption]` (raw and canonical topics sealed),
    // alternating in the same run. The keyring is the process's, set once
    // at load (`bus::seal::install`), so each measure runs in a process of
    // its own: this binary again, with `DUIJIE_BENCH_SEALED_ONE=0|1`.
    if let Ok(on) = std::env::var("DUIJIE_BENCH_SEALED_ONE") {
        let m = rt.block_on(hub(&brokers, &bytes, records, &broker_cpu, on == "1"));
        let cpu = m.cpu * 1e6 / records as f64;
        println!("{} {cpu} {}", m.rate, m.rejects);
        return;
    }
    if std::env::var("DUIJIE_BENCH_SEALED").is_ok_and(|v| v == "1") {
        let exe = std::env::current_exe().unwrap();
        let (mut plain, mut sealed) = (Vec::new(), Vec::new());
        for run in 0..runs {
            for (on, into) in [(false, &mut plain), (true, &mut sealed)] {
                let out = std::process::Command::new(&exe)
                    .env("DUIJIE_BENCH_SEALED_ONE", if on { "1" } else { "0" })
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "the measuring process failed");
                let text = String::from_utf8_lossy(&out.stdout);
                let v: Vec<f64> = text
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                let [rate, cpu, rejects] = v[..] else {
                    panic!("unexpected output from the measuring process: {text}")
                };
                eprintln!(
                    "run {run}: sealed {on}: {rate:.0} records/s, {cpu:.2} µs CPU a record, {rejects} rejected"
                );
                into.push(cpu);
            }
        }
        let (p, q) = (median(plain), median(sealed));
        println!(
            "workload: {records} urban cases, {runs} alternating runs, raw retention on, median"
        );
        println!("duijie CPU a record, not sealed:                   {p:>10.2} µs");
        println!("duijie CPU a record, raw + canonical SM4-GCM:      {q:>10.2} µs");
        println!(
            "sealing costs:                                     {:>+10.1} %",
            (q / p - 1.0) * 100.0
        );
        return;
    }
    // the broker's CPU within each side's timed span, as measured there
    for run in 0..runs {
        if let Some(binary) = &peer {
            let (rate, cpu) = benthos(&brokers, binary, &peers_dir, input.path(), records);
            eprintln!(
                "run {run}: benthos {rate:.0} records/s, {:.2} µs CPU a record",
                cpu * 1e6 / records as f64
            );
            peer_rates.push(rate);
            peer_cpu.push(cpu);
        }
        let b = if only_hub {
            f64::NAN
        } else {
            let m = rt.block_on(baseline(&brokers, &keyed, &broker_cpu));
            base_broker_cpu.push(m.broker);
            base_cpu.push(m.cpu);
            m.rate
        };
        if std::env::var("DUIJIE_BENCH_ONLY").is_ok_and(|v| v == "baseline") {
            eprintln!(
                "run {run}: baseline {b:.0} records/s, {:.2} µs CPU a record, broker {:.2} µs",
                base_cpu.last().copied().unwrap_or_default() * 1e6 / records as f64,
                base_broker_cpu.last().copied().unwrap_or_default() * 1e6 / records as f64
            );
            continue;
        }
        let engine_before = cpu_seconds();
        std::hint::black_box(engine_pass(&lines, &mapping, &encoder));
        engine_cpu.push(cpu_seconds() - engine_before);
        let m = rt.block_on(hub(&brokers, &bytes, records, &broker_cpu, false));
        hub_cpu.push(m.cpu);
        hub_broker_cpu.push(m.broker);
        rejects = m.rejects;
        let h = m.rate;
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
    let per_record = |cpu: Vec<f64>| median(cpu) * 1e6 / records as f64;
    let (base_us, hub_us, engine_us) = (
        per_record(base_cpu),
        per_record(hub_cpu),
        per_record(engine_cpu),
    );
    println!("baseline CPU a record (its process):                {base_us:>10.2} µs");
    println!("duijie CPU a record (the hub's process):            {hub_us:>10.2} µs");
    println!("engine CPU a record (parse + map + Avro, one thread): {engine_us:>9.2} µs");
    if broker_pid.is_some() {
        println!(
            "broker CPU a record, baseline / duijie:             {:>10.2} / {:.2} µs",
            per_record(base_broker_cpu),
            per_record(hub_broker_cpu)
        );
    }
    if !peer_rates.is_empty() {
        let p = median(peer_rates);
        println!(
            "benthos file -> bloblang -> Kafka (JSON), acked:     {p:>10.0} records/s, {:.2} µs CPU a record",
            per_record(peer_cpu)
        );
        println!(
            "ratio duijie / benthos:                             {:>10.2}",
            h / p
        );
    }
    // Last, the hub's own overhead: its CPU a record over the engine's and
    // the plain producer's, all three from the same runs.
    println!(
        "overhead ratio: {:.2} (hub {hub_us:.2} µs / (engine {engine_us:.2} + producer {base_us:.2}))",
        hub_us / (engine_us + base_us)
    );
}

/// Parse + map + Avro encode of every line on this thread, at one fetch
/// time as the hub maps a batch (`Mapping::map_at`); bytes written.
fn engine_pass(
    lines: &[&[u8]],
    mapping: &duijie::mapping::Mapping,
    encoder: &duijie::schema::RecordEncoder,
) -> usize {
    let mut out = Vec::with_capacity(1024);
    let mut total = 0;
    let fetched_at_ms = chrono::Utc::now().timestamp_millis();
    for line in lines {
        out.clear();
        if let Ok(m) = mapping.map_at(line, fetched_at_ms) {
            encoder
                .encode(&mapping.schema, &m.values, &mut out)
                .unwrap();
            total += out.len();
        }
    }
    total
}
