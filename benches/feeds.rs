//! A department's webhook feed: how many records a second reach a receiver
//! that takes 5 ms to answer each, with every key's versions in order.
//!
//! The shared workload's urban cases (`DUIJIE_BENCH_RECORDS`, default
//! 20,000) are ingested once by the hub's file-drop pipeline; a tenth of
//! the cases come again in a later version (another status), so that a key
//! has two versions to keep in order. Each run is a fresh delivery
//! (its own consumer group, its own department box at the sandbox's
//! receiver, in this process) reading them all from the start, timed from
//! the hub's start to the receiver holding the last record. Runs alternate
//! `in_flight = 1` (one request at a time, the partition's offset order),
//! the default (`DUIJIE_BENCH_IN_FLIGHT`, default 32), and the batch form
//! (`batch = true`, 50 records a request).
//!
//! `scripts/bench-feeds.sh` starts Apache Kafka and runs this; or
//! `DUIJIE_BENCH_BROKERS=host:port cargo bench --bench feeds`.
//! `DUIJIE_BENCH_RUNS` (default 3), `DUIJIE_BENCH_ANSWER_MS` (default 5).

mod common;

use common::{env_or, lines, median, tag, workload};
use duijie::config::Deployment;
use duijie::runtime::Hub;
use duijie::runtime::stats::PipelineStats;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The deployment: the file-drop pipeline, and delivery `name` to box
/// `name` when one is given.
fn deployment(
    dir: &Path,
    brokers: &str,
    t: &str,
    receiver: &str,
    feed: Option<(&str, Form)>,
) -> Deployment {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let feed = feed
        .map(|(name, form)| {
            let (in_flight, batch) = match form {
                Form::InFlight(n) => (n, false),
                Form::Batch => (1, true),
            };
            format!(
                r#"
[deliveries.{name}]
topic = "bench-canonical-{t}"
department = "{name}"
dlq_topic = "bench-dlq-{name}"
in_flight = {in_flight}
transform = {{ kind = "fields", fields = ["case_no", "status", "category_code", "grid_code"] }}
target = {{ kind = "webhook", url = "http://{receiver}/dept/{name}/webhook", secret = "{secret}", batch = {batch} }}
retry = {{ initial = "100ms", max = "1s", max_attempts = 100 }}
"#,
                secret = duijie_sandbox::dept::DEPT_SECRET
            )
        })
        .unwrap_or_default();
    let text = format!(
        r#"[hub]
name = "bench-{t}"
mappings = "{mappings}"
schemas = "{schemas}"
receipts_topic = "bench-receipts-{t}"

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

[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
{feed}"#,
        mappings = root.join("benches/workload/mappings").display(),
        schemas = root.join("benches/workload/schemas").display(),
    );
    let file = dir.join("deploy.toml");
    std::fs::write(&file, text).unwrap();
    Deployment::load(&file).unwrap()
}

/// How a run delivers: one record a request with this many in flight, or
/// the batch form (`batch_size` 50, the default).
#[derive(Debug, Clone, Copy)]
enum Form {
    InFlight(usize),
    Batch,
}

/// The workload, and a later version (status 6, closed) of every tenth
/// case after it.
fn cases(records: usize) -> (Vec<u8>, usize) {
    let bytes = workload(records);
    let mut out = bytes.clone();
    let mut again = 0;
    for line in lines(&bytes).iter().step_by(10) {
        let mut v: Value = serde_json::from_slice(line).unwrap();
        v["eventStateId"] = Value::from(6);
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
        again += 1;
    }
    (out, records + again)
}

/// The receiver: the sandbox's department webhooks, answering after
/// `answer_ms`.
async fn receiver(answer_ms: u64) -> (String, duijie_sandbox::dept::Departments) {
    let departments = duijie_sandbox::dept::Departments::default();
    departments.answer_ms.store(answer_ms, Ordering::Relaxed);
    let app = departments.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, departments)
}

/// One delivery's run: records a second to the last record at the
/// receiver, and whether every key's versions arrived in order.
async fn feed(
    brokers: &str,
    t: &str,
    receiver: &(String, duijie_sandbox::dept::Departments),
    form: Form,
    expected: usize,
) -> (f64, bool) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("bench_{}", tag().replace('-', "_"));
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let deployment = deployment(dir.path(), brokers, t, &receiver.0, Some((&name, form)));
    let hub = Hub::load(deployment).unwrap();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let running = {
        let stop = stop.clone();
        // Deliveries always run; the file-drop pipeline finds its (new)
        // inbox empty.
        tokio::spawn(async move { hub.run(&["urban_files".to_owned()], stop).await })
    };
    let held = || {
        receiver.1.webhook.view(&name)["records"]
            .as_array()
            .map_or(0, Vec::len)
    };
    while held() < expected {
        assert!(
            !running.is_finished(),
            "the hub stopped: {:?}",
            running.await
        );
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "{} of {expected} records in 30 minutes",
            held()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = expected as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    running.await.unwrap().unwrap();
    // Each case's versions in the order of the file: a closed case
    // (status CLOSED) never before its earlier version.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in receiver.1.webhook.view(&name)["records"]
        .as_array()
        .unwrap()
    {
        let record = &r["record"];
        seen.entry(record["case_no"].as_str().unwrap().to_owned())
            .or_default()
            .push(record["status"].as_str().unwrap_or_default().to_owned());
    }
    let in_order = seen
        .values()
        .all(|v| v.len() < 2 || v.last().map(String::as_str) == Some("CLOSED"));
    (rate, in_order)
}

fn main() {
    let brokers = std::env::var("DUIJIE_BENCH_BROKERS").expect(
        "DUIJIE_BENCH_BROKERS is not set: run scripts/bench-feeds.sh, which starts a broker",
    );
    let records = env_or("DUIJIE_BENCH_RECORDS", 20_000);
    let runs = env_or("DUIJIE_BENCH_RUNS", 3);
    let in_flight = env_or("DUIJIE_BENCH_IN_FLIGHT", 32);
    let answer_ms = env_or("DUIJIE_BENCH_ANSWER_MS", 5) as u64;
    let (bytes, expected) = cases(records);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = tag();
        // The cases on the bus, once.
        let dir = tempfile::tempdir().unwrap();
        let deployment = deployment(dir.path(), &brokers, &t, "", None);
        deployment
            .bus()
            .ensure_topics(&deployment.topics())
            .await
            .unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        std::fs::write(dir.path().join("inbox/cases.jsonl"), &bytes).unwrap();
        let hub = Hub::load(deployment).unwrap();
        let stats = hub.stats.pipeline("urban_files");
        let stop = CancellationToken::new();
        let running = {
            let stop = stop.clone();
            tokio::spawn(async move { hub.run(&[], stop).await })
        };
        let total = lines(&bytes).len();
        while (PipelineStats::get(&stats.delivered) + PipelineStats::get(&stats.dead_lettered))
            < total as u64
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rejected = PipelineStats::get(&stats.dead_lettered) as usize;
        stop.cancel();
        running.await.unwrap().unwrap();
        // Rejected lines (the workload has some) are not on the topic; a
        // rejected later version is, its first version is not: count what
        // the topic holds.
        let expected = expected - rejected;
        eprintln!(
            "== {expected} records on the bus ({rejected} of {total} lines rejected by the mapping); receiver answers in {answer_ms} ms"
        );
        let receiver = receiver(answer_ms).await;
        let (mut one, mut many, mut batch) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=runs {
            let (r1, o1) = feed(&brokers, &t, &receiver, Form::InFlight(1), expected).await;
            let (rn, on) =
                feed(&brokers, &t, &receiver, Form::InFlight(in_flight), expected).await;
            let (rb, ob) = feed(&brokers, &t, &receiver, Form::Batch, expected).await;
            eprintln!(
                "run {run}: in_flight 1: {r1:.0} records/s; in_flight {in_flight}: {rn:.0} records/s; batch form: {rb:.0} records/s; keys in order: {}",
                o1 && on && ob
            );
            assert!(o1 && on && ob, "a key's versions arrived out of order");
            one.push(r1);
            many.push(rn);
            batch.push(rb);
        }
        let (one, many, batch) = (median(one), median(many), median(batch));
        println!(
            "webhook feed, receiver answering in {answer_ms} ms: in_flight 1: {one:.0} records/s; in_flight {in_flight}: {many:.0} records/s ({:.1}x); batch form: {batch:.0} records/s ({:.1}x)",
            many / one,
            batch / one
        );
    });
}
