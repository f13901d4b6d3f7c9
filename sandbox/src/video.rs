//! The 平安宜昌 video surveillance platform (视频监控): AI-analysed camera
//! alarms published over MQTT, one JSON object a message, on
//! `pingan/yichang/<area>/alarm`, QoS 1.
//!
//! Realistic trouble, as the platform and its network make it:
//! - duplicates, as a QoS 1 redelivery sends them (the same alarm again);
//! - malformed JSON (a message cut short);
//! - oversized messages (a snapshot inlined as base64 instead of a link);
//! - a broker restart mid-stream, and a client that reconnects.
//!
//! [`Mosquitto`] supervises a broker of its own (the Debian package), with a
//! password file and persistence, so that a restart keeps the sessions: the
//! demo uses it when nothing listens where the pipeline subscribes, the
//! tests to restart the broker.

use super::{Faults, Feeder, Feeding};
use base64::Engine;
use duijie::config::PipelineConfig;
use duijie::error::{Context, Domain, Error, Result};
use duijie_connectors::registry::SourceConfig;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Areas (topic level, street, grid code prefix: 6 county + 3 street).
pub const AREAS: &[(&str, &str, &str)] = &[
    ("dongshan", "东山街道", "420502001"),
    ("baiyang", "白洋镇", "420502002"),
    ("dongyuan", "东苑街道", "420502003"),
    ("dianjun", "点军街道", "420506001"),
];

/// Event codes of the platform, with their names (`video_event_type`).
pub const EVENTS: &[(&str, &str)] = &[
    ("1001", "占道经营"),
    ("1002", "乱堆物料"),
    ("1003", "暴露垃圾"),
    ("1004", "渣土车未密闭"),
    ("1005", "违规广告"),
    ("2001", "人员聚集"),
    ("3001", "烟火"),
];

/// What a message is, for tests that account for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// An alarm the mapping takes.
    Alarm,
    /// The same alarm again.
    Duplicate,
    /// JSON cut short.
    Malformed,
    /// An alarm with its snapshot inlined, over the hub's size limit.
    Oversized,
}

/// One message as the platform publishes it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The alarm id, where the message is an alarm.
    pub alarm_id: String,
    pub kind: MessageKind,
    /// Event code and confidence (what decides a lead).
    pub event: &'static str,
    pub confidence: f64,
    /// The grid code (what routes a lead).
    pub grid_code: String,
}

/// Trouble per message.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFaults {
    pub duplicate_rate: f64,
    pub malformed_rate: f64,
    pub oversized_rate: f64,
    /// How large an oversized message is.
    pub oversized_bytes: usize,
}

impl VideoFaults {
    /// No trouble at all.
    pub fn none() -> Self {
        Self {
            duplicate_rate: 0.0,
            malformed_rate: 0.0,
            oversized_rate: 0.0,
            oversized_bytes: 0,
        }
    }
}

impl Default for VideoFaults {
    fn default() -> Self {
        Self {
            duplicate_rate: 0.05,
            malformed_rate: 0.02,
            oversized_rate: 0.01,
            oversized_bytes: 2 << 20,
        }
    }
}

/// `n` alarms numbered from `first`, with the faults, deterministic by
/// `seed`. Duplicates follow their alarm at once, as a redelivery does.
pub fn script(first: u64, n: u64, seed: u64, faults: &VideoFaults) -> Vec<Message> {
    let mut rng = fastrand::Rng::with_seed(seed ^ first);
    let mut out = Vec::new();
    for seq in first..first + n {
        let (area, street, grid_prefix) = AREAS[rng.usize(..AREAS.len())];
        let (event, name) = EVENTS[rng.usize(..EVENTS.len())];
        let alarm_id = format!("PA{}{seq:08}", chrono::Utc::now().format("%Y%m%d"));
        let grid_code = format!("{grid_prefix}{:03}{:02}", rng.u32(1..20), rng.u32(1..10));
        let confidence = (rng.f64() * 0.5 + 0.5).min(0.99);
        let confidence = (confidence * 100.0).round() / 100.0;
        let topic = format!("pingan/yichang/{area}/alarm");
        let mut alarm = json!({
            "alarmId": alarm_id,
            "deviceId": format!("420502000013200{:05}", rng.u32(1..99_999)),
            "channelNo": rng.u32(1..5),
            "channelName": format!("{street}{}号监控点", rng.u32(1..300)),
            "location": {
                "address": format!("宜昌市{street}{}号", rng.u32(1..400)),
                "longitude": 111.3 + rng.f64() * 0.2,
                "latitude": 30.6 + rng.f64() * 0.15,
                "gridCode": grid_code,
                "streetName": street,
            },
            "eventType": event,
            "eventName": name,
            "confidence": confidence,
            "alarmTime": chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
            "snapshotUrl": format!("https://video.pingan.yichang.gov.cn/snap/{alarm_id}.jpg"),
        });
        let message = |kind, payload| Message {
            topic: topic.clone(),
            payload,
            alarm_id: alarm_id.clone(),
            kind,
            event,
            confidence,
            grid_code: grid_code.clone(),
        };
        let roll = rng.f64();
        if roll < faults.malformed_rate {
            let text = alarm.to_string();
            let cut = text.len() / 2;
            out.push(message(
                MessageKind::Malformed,
                text.as_bytes()[..cut].to_vec(),
            ));
            continue;
        }
        if roll < faults.malformed_rate + faults.oversized_rate {
            let image = vec![0xFFu8; faults.oversized_bytes * 3 / 4];
            alarm["snapshot"] = json!(base64::engine::general_purpose::STANDARD.encode(image));
            out.push(message(
                MessageKind::Oversized,
                alarm.to_string().into_bytes(),
            ));
            continue;
        }
        let payload = alarm.to_string().into_bytes();
        out.push(message(MessageKind::Alarm, payload.clone()));
        if rng.f64() < faults.duplicate_rate {
            out.push(message(MessageKind::Duplicate, payload));
        }
    }
    out
}

/// What the publisher did.
#[derive(Debug, Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub acknowledged: AtomicU64,
    pub duplicates: AtomicU64,
    pub malformed: AtomicU64,
    pub oversized: AtomicU64,
    pub reconnects: AtomicU64,
    pub broker_restarts: AtomicU64,
}

/// Where to publish.
#[derive(Debug, Clone)]
pub struct Broker {
    pub address: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Broker {
    /// A client's options for this broker, with its credentials.
    fn options(&self, client_id: &str) -> Result<MqttOptions> {
        let (host, port) = self
            .address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                Error::permanent(
                    Domain::Config,
                    format!("`{}` is not host:port", self.address),
                )
            })?;
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(10));
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            options.set_credentials(u, p);
        }
        Ok(options)
    }
}

/// Publishes `messages` with QoS 1 under `client_id` (a persistent session:
/// what the broker did not acknowledge is sent again after a reconnect)
/// and returns once the broker acknowledged every one, or `within` passed.
pub async fn publish(
    broker: &Broker,
    client_id: &str,
    messages: &[Message],
    counters: &Counters,
    within: Duration,
) -> Result<()> {
    let mut options = broker.options(client_id)?;
    options
        .set_clean_session(false)
        .set_max_packet_size(64 << 20, 64 << 20);
    let (client, mut events) = AsyncClient::new(options, messages.len() + 10);
    for m in messages {
        client
            .try_publish(&m.topic, QoS::AtLeastOnce, false, m.payload.clone())
            .map_err(|e| Error::transient(Domain::Source, format!("queueing a message: {e}")))?;
        counters.published.fetch_add(1, Ordering::Relaxed);
        let counter = match m.kind {
            MessageKind::Alarm => None,
            MessageKind::Duplicate => Some(&counters.duplicates),
            MessageKind::Malformed => Some(&counters.malformed),
            MessageKind::Oversized => Some(&counters.oversized),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut acked = 0usize;
    let deadline = tokio::time::Instant::now() + within;
    while acked < messages.len() {
        let event = tokio::time::timeout_at(deadline, events.poll())
            .await
            .map_err(|_| {
                Error::transient(
                    Domain::Source,
                    format!(
                        "the broker acknowledged {acked} of {} messages in {within:?}",
                        messages.len()
                    ),
                )
            })?;
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked += 1;
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            // The broker went away: the event loop reconnects on the next
            // poll and sends again what was not acknowledged.
            Err(e) => {
                tracing::debug!(error = %e, "video platform lost the broker; reconnecting");
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(e) = events.poll().await {
            if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Waits until the broker holds at least `at_least` subscriptions besides
/// this waiter's own (Mosquitto's `$SYS/broker/subscriptions/count`, sent
/// every `sys_interval`): a persistent session exists to keep what is
/// published. MQTT keeps nothing for a subscriber that never subscribed.
pub async fn wait_for_subscriptions(
    broker: &Broker,
    at_least: u64,
    within: Duration,
) -> Result<()> {
    let options = broker.options(&format!("pingan-platform-probe-{}", fastrand::u32(..)))?;
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .try_subscribe("$SYS/broker/subscriptions/count", QoS::AtMostOnce)
        .map_err(|e| Error::transient(Domain::Source, format!("subscribing: {e}")))?;
    let waited = tokio::time::timeout(within, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let count: u64 = std::str::from_utf8(&p.payload)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(0);
                    if count > at_least {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    waited.map_err(|_| {
        Error::transient(
            Domain::Source,
            format!(
                "no {at_least} subscription(s) on {} within {within:?}",
                broker.address
            ),
        )
    })
}

/// A Mosquitto broker of our own, on loopback, with password
/// authentication and persistence (sessions and queued messages survive a
/// restart). Killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
}

impl Mosquitto {
    /// The broker binary of the Debian package.
    pub const BINARY: &'static str = "/usr/sbin/mosquitto";

    /// Starts one on `port`, keeping its files in `dir`, with one user.
    pub fn start(dir: &Path, port: u16, user: &str, password: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "").with_context(|| passwd.display().to_string())?;
        let made = std::process::Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .args([user, password])
            .status()
            .context("mosquitto_passwd (Debian package `mosquitto`)")?;
        if !made.success() {
            return Err(Error::permanent(
                Domain::Io,
                format!("mosquitto_passwd failed: {made}"),
            ));
        }
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 1000000\nsys_interval 1\nlog_dest file {}/mosquitto.log\n{}",
            passwd.display(),
            dir.display(),
            dir.display(),
            if root { "user root\n" } else { "" }
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).context("mosquitto.conf")?;
        let mut m = Self {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        m.up()?;
        Ok(m)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) -> Result<()> {
        let child = std::process::Command::new(Self::BINARY)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("{} (Debian package `mosquitto`)", Self::BINARY))?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.address()).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(Error::transient(
                    Domain::Io,
                    format!("mosquitto did not listen on {}", self.address()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the broker as its service would (SIGTERM: it saves its
    /// sessions), and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Stops and starts the broker again on the same port and files.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.up()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The platform as the demo runs it: it feeds a pipeline that subscribes
/// over MQTT with the `video_alarm` mapping.
#[derive(Debug)]
pub struct VideoPlatform;

/// Alarms a round, and the pause between rounds.
const ROUND: u64 = 20;
const PAUSE: Duration = Duration::from_secs(1);

struct Report {
    counters: Arc<Counters>,
    broker: String,
    note: Arc<std::sync::Mutex<Option<String>>>,
}

impl Feeding for Report {
    fn report(&self) -> String {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let note = self.note.lock().expect("note lock").clone();
        format!(
            "平安宜昌 video platform published {} alarm message(s) to mqtt://{} ({} duplicated, {} malformed, {} oversized; {} broker restart(s), {} reconnect(s)){}",
            n(&c.published),
            self.broker,
            n(&c.duplicates),
            n(&c.malformed),
            n(&c.oversized),
            n(&c.broker_restarts),
            n(&c.reconnects),
            note.map(|n| format!(": {n}")).unwrap_or_default()
        )
    }
}

impl Feeder for VideoPlatform {
    fn feed(
        &self,
        pipeline: &PipelineConfig,
        _faults: &Faults,
        shutdown: CancellationToken,
    ) -> Option<Box<dyn Feeding>> {
        let SourceConfig::Mqtt(config) = &pipeline.source else {
            return None;
        };
        if pipeline.mapping != "video_alarm" {
            return None;
        }
        let counters = Arc::new(Counters::default());
        let note = Arc::new(std::sync::Mutex::new(None));
        let broker = Broker {
            address: config.broker.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
        };
        let set_note = {
            let note = note.clone();
            move |text: String| *note.lock().expect("note lock") = Some(text)
        };
        let report = Report {
            counters: counters.clone(),
            broker: broker.address.clone(),
            note,
        };
        // A broker of our own when none listens where the pipeline looks.
        let mut own = None;
        if std::net::TcpStream::connect(&broker.address).is_err() {
            let port = broker
                .address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok());
            let dir =
                std::env::temp_dir().join(format!("duijie-demo-mosquitto-{}", std::process::id()));
            match (port, &broker.username, &broker.password) {
                (Some(port), Some(u), Some(p)) => match Mosquitto::start(&dir, port, u, p) {
                    Ok(m) => own = Some(m),
                    Err(e) => set_note(format!("no MQTT broker ({e})")),
                },
                _ => set_note("no MQTT broker, and none can be started without a user".into()),
            }
        }
        let name = pipeline.name.clone();
        let filters = config.topics.len() as u64;
        tokio::spawn(async move {
            // Publish once the hub's session is there to keep it.
            if let Err(e) = wait_for_subscriptions(&broker, filters, Duration::from_secs(60)).await
            {
                set_note(e.to_string());
            }
            let faults = VideoFaults::default();
            let mut first =
                u64::try_from(chrono::Utc::now().timestamp() % 1_000_000).unwrap_or(0) * 100;
            for round in 0u64.. {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(PAUSE) => {}
                }
                // Mid-stream, once: the broker restarts (sessions kept).
                if round == 6
                    && let Some(m) = own.as_mut()
                {
                    match m.restart() {
                        Ok(()) => {
                            counters.broker_restarts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => set_note(e.to_string()),
                    }
                }
                let messages = script(first, ROUND, round, &faults);
                first += ROUND;
                // Each round is a connection of its own: the client
                // reconnects, its session kept.
                if let Err(e) = publish(
                    &broker,
                    &format!("pingan-platform-{name}"),
                    &messages,
                    &counters,
                    Duration::from_secs(20),
                )
                .await
                {
                    tracing::warn!(error = %e, "video platform could not publish");
                }
                counters
                    .reconnects
                    .fetch_add(u64::from(round > 0), Ordering::Relaxed);
            }
            drop(own);
        });
        Some(Box::new(report))
    }
}
