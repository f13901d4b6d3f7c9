//! Brokers the hub can bring up by itself, for the demo and for trying
//! things out. Production points at a real Kafka cluster instead.
//!
//! - [`EmbeddedBroker`]: librdkafka's in-process mock cluster. Nothing to
//!   install; it speaks the Kafka protocol on loopback ports, keeps
//!   everything in memory, and accepts transactions (without isolating
//!   uncommitted records from `read_committed` readers).
//! - [`TansuBroker`]: a supervised `tansu` process (crates.io `tansu`,
//!   memory storage), when the binary is installed.

use duijie::error::{Context, Domain, Error, Result};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// librdkafka's mock cluster, alive as long as this value.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap_servers())
            .finish()
    }
}

impl EmbeddedBroker {
    pub fn start(brokers: i32) -> Result<Self> {
        let cluster = MockCluster::new(brokers).context("starting the embedded broker")?;
        Ok(Self { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The mock cluster does not implement the CreateTopics admin request;
    /// topics are created on it directly.
    pub fn create_topics(&self, topics: &[duijie::bus::TopicSpec]) -> Result<()> {
        for t in topics {
            self.cluster
                .create_topic(&t.name, t.partitions, 1)
                .with_context(|| format!("creating `{}` on the embedded broker", t.name))?;
        }
        Ok(())
    }
}

/// A `tansu broker` child process, stopped when dropped.
#[derive(Debug)]
pub struct TansuBroker {
    child: Child,
    pub bootstrap: String,
}

impl TansuBroker {
    /// Whether a `tansu` binary is on the PATH (or in `~/.cargo/bin`).
    pub fn binary() -> Option<std::path::PathBuf> {
        let mut candidates: Vec<std::path::PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).collect())
            .unwrap_or_default();
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(std::path::Path::new(&home).join(".cargo/bin/tansu"));
        }
        candidates.into_iter().find(|p| p.is_file())
    }

    /// Starts Tansu with memory storage on `port` and waits until it
    /// accepts connections.
    pub fn start(port: u16) -> Result<Self> {
        let binary = Self::binary().ok_or_else(|| {
            Error::permanent(
                Domain::Io,
                "no `tansu` binary: install it with `cargo install tansu --locked --features dynostore`",
            )
        })?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("starting tansu", e))?;
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            if Instant::now() > deadline {
                return Err(Error::transient(
                    Domain::Bus,
                    format!("tansu did not listen on {bootstrap} within 15 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, bootstrap })
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
