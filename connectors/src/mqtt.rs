//! MQTT subscription: records a broker pushes (the 平安宜昌 video platform's
//! AI-analysed camera alarms on `pingan/yichang/<area>/alarm`).
//!
//! The cursor-after-ack contract for a pushed source:
//! - the client subscribes with QoS 1 under a fixed client id and a
//!   persistent session (`clean_session = false`), so the broker keeps what
//!   was not acknowledged while the hub is away;
//! - acknowledgements are manual: a message is acknowledged (PUBACK) only
//!   once the runtime's [`Intake`] returned, that is once Kafka acknowledged
//!   its record or its dead letter. A crash before that means the broker
//!   delivers it again (with the DUP flag), never a loss; the copy lands
//!   under the same stable key.
//!
//! What cannot be a record is still handed over, as a reject (a dead
//! letter): a payload over `max_payload_bytes` (its head is kept). A packet
//! over `max_packet_bytes` cannot even be read: the connection is refused
//! with a permanent error naming both limits, instead of reconnecting to the
//! same message forever; keep the broker's `message_size_limit` at or below
//! it.
//!
//! A lost connection ends [`Subscription::run`] with a transient error once
//! the messages in flight are settled (none of them acknowledged unless
//! the bus took it); the runtime reconnects with backoff, and the broker
//! delivers again what was not acknowledged. Refused credentials or a
//! refused subscription are permanent.

use crate::{Intake, PayloadFormat, Pushed, RawRecord, RawReject, SourceError, Subscription};
use async_trait::async_trait;
use futures::stream::{FuturesOrdered, StreamExt};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
    Publish, QoS, SubscribeReasonCode,
};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Configuration of an MQTT subscription.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker, `host:port` (1883 plain, 8883 usually with TLS).
    pub broker: String,
    /// The client id: the persistent session is the broker's memory of it,
    /// so it must be stable and used by this pipeline alone.
    pub client_id: String,
    /// Topic filters subscribed with QoS 1, e.g. `pingan/yichang/+/alarm`.
    pub topics: Vec<String>,
    /// User name, if the broker asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (from secrets: `${file:secrets/…}`).
    #[serde(default)]
    pub password: Option<String>,
    /// TLS to the broker, when set.
    #[serde(default)]
    pub tls: Option<MqttTls>,
    /// Keep-alive interval.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Waiting for the broker's answer to connect, at most.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Larger payloads are dead-lettered (their head kept), not mapped.
    #[serde(default = "default_max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Larger packets cannot be read at all (a permanent error).
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
    /// Messages handed to the runtime and not yet acknowledged, at most.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Payload format (JSON).
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
}

/// TLS to the broker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// PEM file of the certificate authority that signed the broker's
    /// certificate.
    pub ca: PathBuf,
    /// PEM files of a client certificate and its key, when the broker asks
    /// for one.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("topics", &self.topics)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("keep_alive", &self.keep_alive)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .field("format", &self.format)
            .finish()
    }
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_payload_bytes() -> usize {
    1 << 20
}
fn default_max_packet_bytes() -> usize {
    16 << 20
}
fn default_max_in_flight() -> usize {
    64
}
fn default_format() -> PayloadFormat {
    PayloadFormat::Json
}

/// A payload head kept in the dead letter of an oversized message.
const REJECT_HEAD_BYTES: usize = 64 * 1024;

impl MqttConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.host_port()?;
        if self.client_id.is_empty() || self.client_id.len() > 23 * 4 {
            return Err("`client_id` must be 1 to 92 characters".into());
        }
        if self.topics.is_empty() {
            return Err("`topics` is empty".into());
        }
        for t in &self.topics {
            let levels: Vec<&str> = t.split('/').collect();
            let bad_hash = levels
                .iter()
                .enumerate()
                .any(|(i, l)| l.contains('#') && (*l != "#" || i + 1 != levels.len()));
            let bad_plus = levels.iter().any(|l| l.contains('+') && *l != "+");
            if t.is_empty() || bad_hash || bad_plus {
                return Err(format!("`{t}` is not an MQTT topic filter"));
            }
        }
        if self.username.is_none() != self.password.is_none() {
            return Err("`username` and `password` go together".into());
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > self.max_packet_bytes {
            return Err("`max_payload_bytes` must be between 1 and `max_packet_bytes`".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1024 {
            return Err("`max_in_flight` must be between 1 and 1024".into());
        }
        if self.keep_alive < Duration::from_secs(5) {
            return Err("`keep_alive` must be at least 5 s".into());
        }
        if let Some(tls) = &self.tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            return Err("`tls.client_cert` and `tls.client_key` go together".into());
        }
        Ok(())
    }

    fn host_port(&self) -> Result<(String, u16), String> {
        let (host, port) = self
            .broker
            .rsplit_once(':')
            .ok_or_else(|| format!("`broker` `{}` is not host:port", self.broker))?;
        let port = port
            .parse()
            .map_err(|_| format!("`broker` `{}` has no valid port", self.broker))?;
        if host.is_empty() {
            return Err(format!("`broker` `{}` has no host", self.broker));
        }
        Ok((host.to_owned(), port))
    }

    fn options(&self) -> Result<MqttOptions, SourceError> {
        let (host, port) = self.host_port().map_err(SourceError::permanent)?;
        let mut options = MqttOptions::new(&self.client_id, host, port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(self.keep_alive)
            .set_max_packet_size(self.max_packet_bytes, 64 * 1024)
            // Acks and subscriptions queue here; sized so that acks of
            // every message in flight always fit.
            .set_request_channel_capacity(self.max_in_flight + 16);
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            options.set_credentials(user, password);
        }
        if let Some(tls) = &self.tls {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| SourceError::io(format!("reading {}", p.display()), e))
            };
            let client_auth = match (&tls.client_cert, &tls.client_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            };
            options.set_transport(rumqttc::Transport::tls(read(&tls.ca)?, client_auth, None));
        }
        Ok(options)
    }
}

/// An MQTT subscription.
#[derive(Debug)]
pub struct Mqtt {
    config: MqttConfig,
}

impl Mqtt {
    pub fn new(config: MqttConfig) -> Self {
        Self { config }
    }

    /// A received message as the runtime takes it.
    fn message(&self, publish: &Publish) -> Pushed {
        let origin = format!(
            "mqtt://{}/{}{}",
            self.config.broker,
            publish.topic,
            if publish.dup { " (redelivered)" } else { "" }
        );
        let fetched_at_ms = chrono::Utc::now().timestamp_millis();
        let length = publish.payload.len();
        if length > self.config.max_payload_bytes {
            let head = publish.payload.slice(..length.min(REJECT_HEAD_BYTES));
            return Pushed::Reject(RawReject {
                truncated: head.len() < length,
                payload: head,
                length: Some(length as u64),
                fetched_at_ms,
                origin,
                reason: format!(
                    "the message is {length} bytes, more than max_payload_bytes ({})",
                    self.config.max_payload_bytes
                ),
            });
        }
        Pushed::Record(RawRecord {
            payload: publish.payload.clone(),
            format: self.config.format,
            fetched_at_ms,
            origin,
        })
    }
}

/// Why a connection ended, as the runtime classifies it.
fn connection_error(config: &MqttConfig, e: ConnectionError) -> SourceError {
    use rumqttc::StateError;
    let message = format!("MQTT broker {}: {e}", config.broker);
    match &e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::BadClientId
            | ConnectReturnCode::RefusedProtocolVersion,
        ) => SourceError::permanent(message),
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
        )) => SourceError::permanent(format!(
            "MQTT broker {}: a message of {size} bytes is larger than max_packet_bytes ({}); \
             raise it, or keep the broker's message_size_limit below it",
            config.broker, config.max_packet_bytes
        )),
        _ => SourceError::transient(message),
    }
}

/// Polls the event loop until the requests queued (acks, the disconnect)
/// are written, for at most `within`.
async fn flush(events: &mut EventLoop, within: Duration) {
    let _ = tokio::time::timeout(within, async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[async_trait]
impl Subscription for Mqtt {
    async fn run(
        &mut self,
        intake: &dyn Intake,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let (client, mut events) =
            AsyncClient::new(self.config.options()?, self.config.max_in_flight + 16);
        events
            .network_options
            .set_connection_timeout(self.config.connect_timeout.as_secs().max(1));
        let mut in_flight = FuturesOrdered::new();
        let ended: Result<(), SourceError> = loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break Ok(()),
                Some((taken, publish)) = in_flight.next(), if !in_flight.is_empty() => {
                    let taken: Result<crate::Taken, SourceError> = taken;
                    match taken {
                        Ok(_) => {
                            if let Err(e) = client.try_ack(&publish) {
                                break Err(SourceError::transient(format!("acknowledging to the MQTT broker: {e}")));
                            }
                        }
                        // Not acknowledged: the broker delivers it again
                        // after the reconnect.
                        Err(e) => break Err(e),
                    }
                }
                event = events.poll(), if in_flight.len() < self.config.max_in_flight => match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        tracing::info!(broker = %self.config.broker, session_present = ack.session_present, "MQTT connected");
                        let filters = self.config.topics.iter().map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                        if let Err(e) = client.try_subscribe_many(filters) {
                            break Err(SourceError::transient(format!("subscribing: {e}")));
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if let Some(i) = ack.return_codes.iter().position(|c| *c == SubscribeReasonCode::Failure) {
                            break Err(SourceError::permanent(format!(
                                "MQTT broker {} refused the subscription to `{}`",
                                self.config.broker,
                                self.config.topics.get(i).map_or("?", String::as_str)
                            )));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let message = self.message(&publish);
                        in_flight.push_back(async move { (intake.take(message).await, publish) });
                    }
                    Ok(_) => {}
                    Err(e) => break Err(connection_error(&self.config, e)),
                },
            }
        };
        // Settle what is in flight: what the bus took is acknowledged (on a
        // live connection), nothing else.
        while let Some((taken, publish)) = in_flight.next().await {
            if taken.is_ok() && ended.is_ok() {
                let _ = client.try_ack(&publish);
            }
        }
        if ended.is_ok() {
            let _ = client.try_disconnect();
            flush(&mut events, Duration::from_secs(5)).await;
        }
        ended
    }
}

impl crate::Transport for Mqtt {
    const KIND: &'static str = "mqtt";
    const DRIVE: crate::Drive = crate::Drive::Subscribed;
    type Config = MqttConfig;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn build(config: &Self::Config) -> Result<crate::BuiltSource, SourceError> {
        Ok(crate::BuiltSource::Subscribe(Box::new(Mqtt::new(
            config.clone(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<MqttConfig, String> {
        let mut value = serde_json::json!({
            "broker": "127.0.0.1:1883",
            "client_id": "duijie-video",
            "topics": ["pingan/yichang/+/alarm"],
        });
        let extra: serde_json::Value =
            serde_json::from_str(&format!("{{{}}}", extra.trim_start_matches(','))).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        let c: MqttConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn a_config_is_checked_before_anything_connects() {
        assert!(config("").is_ok());
        assert!(
            config(r#", "topics": ["a/#/b"]"#)
                .unwrap_err()
                .contains("topic filter")
        );
        assert!(
            config(r#", "topics": ["a/b+"]"#)
                .unwrap_err()
                .contains("topic filter")
        );
        assert!(config(r#", "topics": []"#).unwrap_err().contains("empty"));
        assert!(
            config(r#", "broker": "nohost""#)
                .unwrap_err()
                .contains("host:port")
        );
        assert!(
            config(r#", "username": "u""#)
                .unwrap_err()
                .contains("go together")
        );
        assert!(
            config(r#", "max_payload_bytes": 99999999"#)
                .unwrap_err()
                .contains("max_packet_bytes")
        );
        assert!(config(r#", "topics": ["a/+/b/#"]"#).is_ok());
    }

    #[test]
    fn an_oversized_message_is_a_reject_with_its_head_and_length() {
        let mqtt = Mqtt::new(config(r#", "max_payload_bytes": 100"#).unwrap());
        let big = Publish::new(
            "pingan/yichang/xiling/alarm",
            QoS::AtLeastOnce,
            vec![b'x'; 200_000],
        );
        let Pushed::Reject(r) = mqtt.message(&big) else {
            panic!("an oversized message must be a reject");
        };
        assert_eq!(r.length, Some(200_000));
        assert!(r.truncated);
        assert_eq!(r.payload.len(), REJECT_HEAD_BYTES);
        assert!(r.reason.contains("200000 bytes"), "{}", r.reason);
        assert!(r.origin.contains("pingan/yichang/xiling/alarm"));
        let small = Publish::new(
            "pingan/yichang/xiling/alarm",
            QoS::AtLeastOnce,
            b"{}".to_vec(),
        );
        assert!(matches!(mqtt.message(&small), Pushed::Record(_)));
    }

    #[test]
    fn refused_credentials_are_permanent_and_a_lost_connection_is_not() {
        let c = config("").unwrap();
        let refused = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert!(!connection_error(&c, refused).is_transient());
        let lost = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(connection_error(&c, lost).is_transient());
        let huge = ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(99),
        ));
        let e = connection_error(&c, huge);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("max_packet_bytes"));
    }
}
