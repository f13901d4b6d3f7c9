//! Helpers shared by the integration tests.
//!
//! Tests of the bus run against a real Kafka-protocol broker named by
//! `DUIJIE_TEST_BROKERS` (the README's test command and `.ci/run` start a
//! Tansu broker and set it). Without it they fail loudly; they never skip.

#![allow(dead_code)]

use duijie::bus::Bus;
use duijie::bus::inspect::{ReadRecord, read_topic};
use duijie::schema::SchemaSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test broker.
pub fn brokers() -> String {
    std::env::var("DUIJIE_TEST_BROKERS").expect(
        "DUIJIE_TEST_BROKERS is not set: run the tests with scripts/test.sh, which starts Apache Kafka",
    )
}

/// The test schema registry: Apicurio Registry's Confluent-compatible API
/// (`scripts/apicurio.sh`, which `scripts/test.sh` starts).
pub fn registry() -> String {
    std::env::var("DUIJIE_TEST_REGISTRY").expect(
        "DUIJIE_TEST_REGISTRY is not set: run the tests with scripts/test.sh, which starts Apicurio Registry",
    )
}

/// Registers `schema` under `subject` at `registry` (a Confluent-compatible
/// API), as a downstream team's earlier version; panics unless accepted.
pub fn register_schema(registry: &str, subject: &str, schema: &str) {
    let (status, answer) = post(
        &format!("{registry}/subjects/{subject}/versions"),
        &[(
            "Content-Type",
            "application/vnd.schemaregistry.v1+json".to_owned(),
        )],
        serde_json::json!({ "schema": schema })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
}

pub fn bus(brokers: &str) -> Bus {
    Bus::new(brokers, format!("test-{}", unique("c")))
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:06x}",
        std::process::id(),
        fastrand::u32(..0xFFFFFF)
    )
}

pub fn schemas() -> SchemaSet {
    SchemaSet::load_dir(&root().join("schemas")).unwrap()
}

/// The shared workload generator's output for `n` records (the copy in
/// `benches/workload/`, identical to `../shared/bench/`).
pub fn generated_cases(n: usize, seed: u64) -> String {
    let out = Command::new("python3")
        .arg(root().join("benches/workload/gen_urban_cases.py"))
        .arg(n.to_string())
        .arg(seed.to_string())
        .output()
        .expect("python3 runs the shared generator");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A deployment file in a temp dir, with the repository's mappings and
/// schemas, and `pipelines` (TOML text) appended.
pub struct TestDeployment {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub cursor_topic: String,
    pub brokers: String,
    /// The hubs spawned on it: those still running when it is dropped (a
    /// test that failed before stopping them) are killed then, so that no
    /// hub outlives its test and loads the machine.
    hubs: std::sync::Mutex<Vec<u32>>,
}

impl Drop for TestDeployment {
    fn drop(&mut self) {
        let logs = HUB_LOGS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for pid in self
            .hubs
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            // Stopped hubs left the registry: only a running one is killed.
            if logs.contains_key(&pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

impl TestDeployment {
    pub fn new(brokers: &str, pipelines: &str) -> Self {
        Self::with_kafka(brokers, "", pipelines)
    }

    /// With extra lines in the `[kafka]` table.
    pub fn with_kafka(brokers: &str, kafka_extra: &str, pipelines: &str) -> Self {
        Self::with_tables(brokers, "", kafka_extra, pipelines)
    }

    /// With extra lines in the `[hub]` table.
    pub fn with_hub(brokers: &str, hub_extra: &str, pipelines: &str) -> Self {
        Self::with_tables(brokers, hub_extra, "", pipelines)
    }

    /// With extra lines in `[hub]` and `[kafka]`.
    pub fn with_tables(brokers: &str, hub_extra: &str, kafka_extra: &str, pipelines: &str) -> Self {
        let mut dir = tempfile::tempdir().unwrap();
        // `DUIJIE_TEST_KEEP=1`: the deployment, its files and the hubs'
        // logs stay after the test, to read why it failed.
        if std::env::var_os("DUIJIE_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("deployment kept in {}", dir.path().display());
        }
        let file = dir.path().join("deploy.toml");
        let cursor_topic = unique("cursors");
        let text = format!(
            "[hub]\nname = \"{}\"\nmappings = \"{}\"\nschemas = \"{}\"\n{hub_extra}\n\n[kafka]\nbrokers = \"{brokers}\"\ncursor_topic = \"{cursor_topic}\"\n{kafka_extra}\n\n{pipelines}",
            unique("hub"),
            root().join("mappings").display(),
            root().join("schemas").display(),
        );
        std::fs::write(&file, text).unwrap();
        Self {
            dir,
            file,
            cursor_topic,
            brokers: brokers.to_owned(),
            hubs: Default::default(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `duijie ARGS --config <this deployment>`: its standard output;
    /// panics with its standard error when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
            .args(args)
            .arg("--config")
            .arg(&self.file)
            .env("DUIJIE_KAFKA_BROKERS", &self.brokers)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "duijie {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `duijie check --registry URL` on this deployment: whether it
    /// passed, and what it said on standard error.
    pub fn check_registry(&self, registry: &str) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
            .args(["check", "--config"])
            .arg(&self.file)
            .args(["--registry", registry])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Whether the delivery `feed` has settled everything on its
    /// topic (`duijie feeds status`: nothing pending), so that nothing more
    /// will be delivered.
    pub fn feed_settled(&self, feed: &str) -> bool {
        self.cli(&["feeds", "status"])
            .lines()
            .any(|l| l.starts_with(&format!("{feed} ")) && l.split_whitespace().last() == Some("0"))
    }

    /// Starts `duijie run` on this deployment.
    pub fn spawn(&self) -> Child {
        self.spawn_with(&[])
    }

    /// Starts `duijie run` on this deployment with more arguments.
    pub fn spawn_with(&self, args: &[&str]) -> Child {
        // The log goes to a file, not a pipe: a hub that logs more than a
        // pipe holds (a broker outage makes every client log) would block
        // on its own log while nobody reads it.
        let n = NEXT_LOG.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("hub-{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_duijie"))
            .args(["run", "--config"])
            .arg(&self.file)
            .args(args)
            .env("DUIJIE_KAFKA_BROKERS", &self.brokers)
            .env(
                "RUST_LOG",
                std::env::var("DUIJIE_TEST_LOG")
                    .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&path).unwrap())
            .spawn()
            .unwrap();
        HUB_LOGS.lock().unwrap().insert(child.id(), path);
        self.hubs.lock().unwrap().push(child.id());
        child
    }
}

static NEXT_LOG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The log file of each hub spawned, by process id (read by [`terminate`]).
static HUB_LOGS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<u32, PathBuf>>> =
    std::sync::LazyLock::new(Default::default);

/// The status token the tests' `[http]` tables use.
pub const STATUS_TOKEN: &str = "broker-status-token-000001";

/// A hub's `/ready`, or null when it does not answer.
pub fn ready(addr: &str, token: &str) -> serde_json::Value {
    block_on(async {
        let r = reqwest::Client::new()
            .get(format!("http://{addr}/ready"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match r {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    })
}

/// One pipeline's report in a hub's `/ready` (null when absent).
pub fn pipeline_report(addr: &str, pipeline: &str) -> serde_json::Value {
    ready(addr, STATUS_TOKEN)["pipelines"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pipeline"] == pipeline).cloned())
        .unwrap_or_default()
}

/// What a running hub has logged so far.
pub fn log_so_far(child: &Child) -> String {
    HUB_LOGS
        .lock()
        .unwrap()
        .get(&child.id())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// Stops a hub with SIGTERM and waits for it; returns its log.
pub fn terminate(mut child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut log);
            }
            if let Some(path) = HUB_LOGS.lock().unwrap().remove(&child.id()) {
                log = std::fs::read_to_string(path).unwrap_or_default();
            }
            assert!(status.success(), "hub exited with {status}:\n{log}");
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "hub did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills a hub with SIGKILL, as a crash would.
pub fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
    HUB_LOGS.lock().unwrap().remove(&child.id());
}

/// Reads a topic with a fresh runtime (tests are synchronous).
pub fn read(brokers: &str, topic: &str, read_committed: bool) -> Vec<ReadRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(read_topic(&bus(brokers), topic, read_committed))
        .unwrap()
}

/// Polls `check` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Keys of the good records in a JSON-lines file, as the urban mapping
/// computes them (`dcm:` + taskNum).
pub fn urban_keys(lines: &str) -> Vec<String> {
    lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v.get("taskNum")
                .and_then(|t| t.as_str())
                .map(|t| format!("dcm:{t}"))
        })
        .collect()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Runs the sandbox on a free port in a background thread; returns its
/// address.
pub fn start_sandbox(config: duijie_sandbox::SandboxConfig) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            duijie_sandbox::serve(listener, config, tokio_util::sync::CancellationToken::new())
                .await
                .unwrap();
        });
    });
    addr
}

/// A GET returning JSON, from a synchronous test.
pub fn get_json(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `addr`.
pub fn wait_listening(addr: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("{addr} to listen"),
        || std::net::TcpStream::connect(addr).is_ok(),
    );
}

/// Runs a future to completion from a synchronous test.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A metric's value in Prometheus text: the first line of `name` whose
/// labels hold `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A metric's value as the hub at `addr` serves it on `/metrics` now.
pub fn metric_at(addr: &str, name: &str, labels: &str) -> Option<f64> {
    metric(
        &block_on(get_text(format!("http://{addr}/metrics"), "")),
        name,
        labels,
    )
}

/// A GET's text with an `Authorization` header (`Bearer …`).
pub async fn get_text(url: impl reqwest::IntoUrl, authorization: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .header("Authorization", authorization)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// POSTs `body` with `headers`; returns the status and the JSON answer.
pub fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, serde_json::Value) {
    block_on(async {
        let mut req = reqwest::Client::new().post(url).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    })
}

/// The records of a topic decoded with their schema, as JSON, in order.
pub fn decoded(brokers: &str, topic: &str) -> Vec<(String, serde_json::Value)> {
    let schemas = schemas();
    read(brokers, topic, true)
        .into_iter()
        .map(|r| {
            let schema = schemas.get(&r.headers["duijie-schema"]).unwrap();
            let value = schema
                .decode_single_object(r.payload.as_deref().unwrap())
                .unwrap();
            (r.key_str(), serde_json::Value::try_from(value).unwrap())
        })
        .collect()
}

/// The latest record per key, as a compacted topic would keep it.
pub fn latest(brokers: &str, topic: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    decoded(brokers, topic).into_iter().collect()
}

/// A TCP proxy to `upstream` that closes the first `drops` connections as
/// soon as they are accepted, before any answer, as a flaky network does.
pub fn flaky_proxy(upstream: String, drops: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut seen = 0usize;
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                seen += 1;
                if seen <= drops {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        })
    });
    addr
}

/// A grid pipeline `grid` polling the sandbox's events into `topic`
/// (login, keyset paging), as TOML.
pub fn grid_pipeline(sandbox: &str, topic: &str) -> String {
    format!(
        r#"[pipelines.grid]
system = "grid"
mapping = "grid_event"
topic = "{topic}"
schedule = "* * * * * *"

[pipelines.grid.source]
kind = "http_poll"
url = "http://{sandbox}/grid/api/events"
records_pointer = "/data/list"
paging = "keyset"
page_size = 200
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "eventId"
after_id_param = "afterId"
login = {{ url = "http://{sandbox}/grid/api/login", username = "duijie", password = "Wg#2026-yc" }}
"#
    )
}

/// What the independent reader (`scripts/registry_read.py`: confluent-kafka's
/// AvroDeserializer against the registry) decoded of `topic`: `count`
/// records (or `all`), one JSON object each (`key`, `id`, `party`).
pub fn registry_read(
    brokers: &str,
    registry: &str,
    topic: &str,
    count: &str,
) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .arg(root().join("scripts/registry_read.py"))
        .args([brokers, registry, topic, count, "60"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A grid pipeline polling the sandbox into `topic`, and the street
/// office's feed from it by webhook at `webhook`; `extra` is appended.
pub fn street_feed_config(
    sandbox: &str,
    source_topic: &str,
    dlq: &str,
    webhook: &str,
    extra: &str,
) -> String {
    let grid = grid_pipeline(sandbox, source_topic);
    format!(
        r#"{grid}
[deliveries.street]
topic = "{source_topic}"
department = "street"
dlq_topic = "{dlq}"
transform = {{ kind = "fields", fields = ["event_no", "category", "street", "status", "party.name"] }}
target = {{ kind = "webhook", url = "{webhook}", secret = "{secret}" }}
retry = {{ initial = "100ms", max = "1s", max_attempts = 100 }}
{extra}
"#,
        secret = duijie_sandbox::dept::DEPT_SECRET
    )
}

/// Drops `text` into the deployment's `inbox/` the way an SFTP job does:
/// write, then rename.
pub fn drop_file(d: &TestDeployment, name: &str, text: &str) {
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    let part = d.path(&format!("inbox/{name}.part"));
    std::fs::write(&part, text).unwrap();
    std::fs::rename(&part, d.path(&format!("inbox/{name}"))).unwrap();
}

/// An Apache Kafka cluster of its own (scripts/kafka.sh), for the
/// broker-failure tests; stopped when dropped.
pub struct KafkaCluster {
    pub dir: tempfile::TempDir,
    pub bootstrap: String,
}

impl KafkaCluster {
    fn script(args: &[&str]) -> std::process::Output {
        let out = Command::new(root().join("scripts/kafka.sh"))
            .args(args)
            .stderr(Stdio::piped())
            .output()
            .expect("scripts/kafka.sh runs");
        assert!(
            out.status.success(),
            "scripts/kafka.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn start(nodes: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Self::script(&["start", dir.path().to_str().unwrap(), &nodes.to_string()]);
        let bootstrap = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Self { dir, bootstrap }
    }

    pub fn kill_node(&self, i: usize) {
        Self::script(&[
            "kill-node",
            self.dir.path().to_str().unwrap(),
            &i.to_string(),
        ]);
    }

    pub fn start_node(&self, i: usize) {
        Self::script(&[
            "start-node",
            self.dir.path().to_str().unwrap(),
            &i.to_string(),
        ]);
    }

    pub fn stop(&self) {
        Self::script(&["stop", self.dir.path().to_str().unwrap()]);
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/kafka.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .output();
    }
}

// ---------------------------------------------------------------------------
// Headless Chromium (Debian's `chromium` and `chromium-driver`).

/// chromedriver on a free port; killed on drop.
pub struct ChromeDriver(std::process::Child, String);

impl ChromeDriver {
    pub fn start() -> Self {
        let port = free_port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed; .ci/run installs it");
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr);
        Self(child, format!("http://{addr}"))
    }
}

impl ChromeDriver {
    /// A headless Chromium session (Debian's binary), downloading into
    /// `downloads` when given.
    pub async fn browser(&self, downloads: Option<&Path>) -> fantoccini::Client {
        let mut options = serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1100", "--lang=zh-CN"],
        });
        if let Some(dir) = downloads {
            options["prefs"] = serde_json::json!({
                "download.default_directory": dir.display().to_string(),
                "download.prompt_for_download": false,
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        fantoccini::ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&self.1)
            .await
            .expect("headless Chromium starts")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python the interop checks run (`DUIJIE_TEST_PYTHON`, the venv
/// `scripts/test.sh` makes with `gmssl`, `cryptography` and
/// `confluent-kafka`), else `python3`.
pub fn python() -> String {
    std::env::var("DUIJIE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}
