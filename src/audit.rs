//! The tamper-evident audit trail (审计记录的完整性, GB/T 39786-2021
//! level 3; 网络安全法 art. 21(3): logs kept at least six months [check:
//! the number in the law as amended in 2025, in force 2026-01-01]).
//!
//! Each audit entry is written sealed ([`Sealed`]): the writer (this hub
//! process's chain), its sequence number, the previous entry's hash and its
//! own hash, SM3 over `prev ‖ writer ‖ seq ‖ entry` — and, with
//! `[hub.signing]`, the hub's SM2 signature of that hash. One writer's
//! entries go under one key, so they stay in order on one partition. A
//! chain starts (sequence 0) from the latest hash on the topic when its
//! process starts, so a chain removed whole is missed by the next one.
//!
//! [`verify`] (`duijie audit verify`) reads a topic and names the first
//! entry that was changed (its hash or signature no longer holds), removed
//! (a sequence number skipped, or the next entry's `prev` is not its hash)
//! or reordered (a sequence number going back), by partition and offset.
//! Audit topics are kept whole (`Cleanup::Keep`), never less than the six
//! months the law asks.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The `prev` of the first chain on an empty topic.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit entry as it is written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sealed {
    /// The chain: `<hub>/<start time>-<random>`, one a process.
    pub writer: String,
    pub seq: u64,
    /// The hash of the writer's previous entry; for its first, the latest
    /// hash on the topic when it started (or [`GENESIS`]).
    pub prev: String,
    /// SM3 (hex) over `prev`, `writer`, `seq` and `entry`, each followed by
    /// a newline.
    pub hash: String,
    pub entry: serde_json::Value,
    /// The hub's SM2 signature of the hash's 32 bytes (DER, base64), when
    /// the hub has a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2: Option<String>,
    /// Which key signed (see `delivery::Signing::key_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// SM3 over what an entry's hash covers.
pub fn entry_hash(prev: &str, writer: &str, seq: u64, entry: &serde_json::Value) -> String {
    let body = serde_json::to_vec(entry).expect("JSON serializes");
    hex::encode(duijie_crypto::Suite::Gm.digest(&[
        prev.as_bytes(),
        b"\n",
        writer.as_bytes(),
        b"\n",
        seq.to_string().as_bytes(),
        b"\n",
        &body,
    ]))
}

/// The hub's signing key, read.
#[derive(Debug)]
pub struct Signer {
    key: duijie_crypto::sm2::PrivateKey,
    key_id: String,
}

impl Signer {
    pub fn new(signing: &crate::delivery::Signing) -> Result<Self, String> {
        Ok(Self {
            key: signing.private_key()?,
            key_id: signing.key_id()?,
        })
    }
}

#[derive(Debug)]
struct Link {
    seq: u64,
    prev: String,
}

/// One process's chain.
#[derive(Debug)]
pub struct Chain {
    writer: String,
    link: tokio::sync::Mutex<Link>,
    signer: Option<Signer>,
}

impl Chain {
    /// A new chain of `hub`, starting from `anchor` (the latest hash on the
    /// topic; see [`latest_hash`]).
    pub fn new(hub: &str, anchor: Option<String>, signer: Option<Signer>) -> Self {
        let run = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            hex::encode(duijie_crypto::random(4))
        );
        Self {
            writer: format!("{hub}/{run}"),
            link: tokio::sync::Mutex::new(Link {
                seq: 0,
                prev: anchor.unwrap_or_else(|| GENESIS.to_owned()),
            }),
            signer,
        }
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// Seals `entry` as the chain's next and hands it to `send` (key and
    /// payload); the chain moves on only when `send` succeeded, and entries
    /// are sent one at a time, in order.
    pub async fn append<T, F, Fut, E>(&self, entry: &T, send: F) -> Result<Sealed, E>
    where
        T: Serialize,
        F: FnOnce(String, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        let entry = serde_json::to_value(entry).expect("an audit entry serializes");
        let mut link = self.link.lock().await;
        let hash = entry_hash(&link.prev, &self.writer, link.seq, &entry);
        let (sm2, key_id) = match &self.signer {
            Some(s) => {
                let digest = hex::decode(&hash).expect("our own hex");
                let sig = s.key.sign(&digest, duijie_crypto::sm2::SignatureForm::Der);
                (
                    Some(duijie_crypto::Text::Base64.encode(&sig)),
                    Some(s.key_id.clone()),
                )
            }
            None => (None, None),
        };
        let sealed = Sealed {
            writer: self.writer.clone(),
            seq: link.seq,
            prev: link.prev.clone(),
            hash: hash.clone(),
            entry,
            sm2,
            key_id,
        };
        let body = serde_json::to_vec(&sealed).expect("a sealed entry serializes");
        send(self.writer.clone(), body).await?;
        link.seq += 1;
        link.prev = hash;
        Ok(sealed)
    }
}

/// The hash of the last sealed entry read (in the order given), to anchor
/// a new chain.
pub fn latest_hash<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
    payloads
        .into_iter()
        .filter_map(|p| serde_json::from_slice::<Sealed>(p).ok())
        .last()
        .map(|s| s.hash)
}

/// Reads `topic` whole and verifies it (`duijie audit verify`).
pub async fn verify_topic(
    bus: &crate::bus::Bus,
    topic: &str,
    public: Option<&duijie_crypto::sm2::PublicKey>,
) -> Result<Report, crate::bus::BusError> {
    let records = crate::bus::inspect::read_topic(bus, topic, true).await?;
    Ok(verify(
        records
            .iter()
            .filter_map(|r| Some((r.partition, r.offset, r.payload.as_deref()?))),
        public,
    ))
}

impl Report {
    /// The report as the command prints it.
    pub fn text(&self, topic: &str) -> String {
        let mut out = format!(
            "{topic}: {} entries in {} chain(s), {} SM2 signature(s) verified",
            self.entries, self.chains, self.signed
        );
        if self.unsealed > 0 {
            out.push_str(&format!(
                ", {} written before the trail was sealed (not verifiable)",
                self.unsealed
            ));
        }
        if self.findings.is_empty() {
            out.push_str("\nok: nothing changed, removed or reordered");
        }
        for f in &self.findings {
            out.push_str(&format!(
                "\n{topic}[{}]@{}: chain {}: {}",
                f.partition, f.offset, f.writer, f.problem
            ));
        }
        out
    }
}

/// One operator action outside the desk (`duijie remap`, `replay`,
/// `backfill`): who, where, what, and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Operation {
    pub at_ms: i64,
    /// `DUIJIE_OPERATOR`, else the login name.
    pub operator: String,
    pub host: String,
    pub command: String,
    /// `started`, `done` or `failed`.
    pub outcome: String,
    pub detail: String,
}

impl Operation {
    pub fn new(command: &str, outcome: &str, detail: &str) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            at_ms: chrono::Utc::now().timestamp_millis(),
            operator: var("DUIJIE_OPERATOR")
                .or_else(|| var("USER"))
                .unwrap_or_else(|| "unknown".into()),
            host: var("HOSTNAME")
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".into()),
            command: command.to_owned(),
            outcome: outcome.to_owned(),
            detail: crate::secrets::redact(detail),
        }
    }
}

/// The operator audit's command for the keys in use.
pub const KEYS: &str = "keys";

/// A chain on the operator audit topic for this process: the topic made
/// (kept whole) if it is not there, the chain anchored on its latest hash.
pub struct OpsAudit {
    producer: rdkafka::producer::FutureProducer,
    topic: String,
    chain: Chain,
    /// The keys this hub last recorded using (the latest `keys` entry of
    /// its name), to see a rotation.
    last_keys: Option<String>,
}

impl OpsAudit {
    pub async fn open(
        bus: &crate::bus::Bus,
        topic: &str,
        hub: &str,
        signing: Option<&crate::delivery::Signing>,
    ) -> Result<Self, String> {
        use crate::bus::{Cleanup, TopicSpec};
        bus.ensure_topics(&[TopicSpec::single(topic.to_owned(), Cleanup::Keep)])
            .await
            .map_err(|e| e.to_string())?;
        let records = crate::bus::inspect::read_topic(bus, topic, true)
            .await
            .map_err(|e| e.to_string())?;
        let anchor = latest_hash(records.iter().filter_map(|r| r.payload.as_deref()));
        let signer = signing.map(Signer::new).transpose()?;
        let last_keys = records
            .iter()
            .rev()
            .filter_map(|r| serde_json::from_slice::<Sealed>(r.payload.as_deref()?).ok())
            .filter(|s| s.writer.split('/').next() == Some(hub))
            .filter_map(|s| serde_json::from_value::<Operation>(s.entry).ok())
            .find(|op| op.command == KEYS)
            .map(|op| op.detail);
        Ok(Self {
            producer: bus.producer().map_err(|e| e.to_string())?,
            topic: topic.to_owned(),
            chain: Chain::new(hub, anchor, signer),
            last_keys,
        })
    }

    /// Records the keys the hub runs with (`in use` the first time,
    /// `rotated` when they differ from the last recorded): a key rotation
    /// — a new sealing key made current, a key retired, a new SM2 key —
    /// is in the operator audit with who and when. Key ids only, never a
    /// key. Returns whether an entry was written.
    pub async fn record_keys(&mut self, keys: &str) -> Result<bool, String> {
        let outcome = match &self.last_keys {
            Some(last) if last == keys => return Ok(false),
            Some(last) => format!("rotated (was: {last})"),
            None => "in use".to_owned(),
        };
        self.record(&Operation::new(KEYS, &outcome, keys)).await?;
        self.last_keys = Some(keys.to_owned());
        Ok(true)
    }

    /// Appends `op` and waits for the broker's acknowledgement.
    pub async fn record(&self, op: &Operation) -> Result<(), String> {
        self.chain
            .append(op, |key, body| async move {
                self.producer
                    .send(
                        rdkafka::producer::FutureRecord::to(&self.topic)
                            .key(&key)
                            .payload(&body),
                        std::time::Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| format!("writing to {}: {e}", self.topic))
            })
            .await
            .map(|_| ())
    }
}

impl std::fmt::Debug for OpsAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsAudit")
            .field("topic", &self.topic)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub partition: i32,
    pub offset: i64,
    pub writer: String,
    pub problem: String,
}

/// What a verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: u64,
    pub chains: usize,
    pub signed: u64,
    /// Entries written before the trail was sealed (plain JSON): counted,
    /// not verifiable.
    pub unsealed: u64,
    pub findings: Vec<Finding>,
}

/// Verifies the entries of a topic, given in offset order per partition
/// (`(partition, offset, payload)`), with the hub's public key when it
/// signs. Each chain is followed in its own order; the first problem of
/// each chain is reported (what follows it cannot be judged).
///
/// Long because each chain's checks in order (hash, link, order,
/// signature), the first problem of each chain reported.
pub fn verify<'a>(
    records: impl IntoIterator<Item = (i32, i64, &'a [u8])>,
    public: Option<&duijie_crypto::sm2::PublicKey>,
) -> Report {
    let records: Vec<(i32, i64, &[u8])> = records.into_iter().collect();
    // Which entries the topic holds at all: a skipped entry that comes
    // later was reordered, one that never comes was removed.
    let present: BTreeSet<(String, u64)> = records
        .iter()
        .filter_map(|(_, _, p)| serde_json::from_slice::<Sealed>(p).ok())
        .map(|s| (s.writer, s.seq))
        .collect();
    let mut report = Report::default();
    // Per writer: the next sequence number and the hash it must link to.
    let mut heads: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut broken: BTreeSet<String> = BTreeSet::new();
    // Every hash on the topic: a chain's first entry links to one of them
    // (the latest when its process started, wherever it is).
    let mut all_hashes: BTreeSet<String> = records
        .iter()
        .filter_map(|(_, _, p)| serde_json::from_slice::<Sealed>(p).ok())
        .map(|s| s.hash)
        .collect();
    all_hashes.insert(GENESIS.to_owned());
    for (partition, offset, payload) in records {
        report.entries += 1;
        let Ok(s) = serde_json::from_slice::<Sealed>(payload) else {
            report.unsealed += 1;
            continue;
        };
        if broken.contains(&s.writer) {
            continue;
        }
        let mut problem = None;
        if entry_hash(&s.prev, &s.writer, s.seq, &s.entry) != s.hash {
            problem = Some("changed: its content does not give its hash".to_owned());
        }
        match (problem.is_none(), heads.get(&s.writer)) {
            (false, _) => {}
            (true, None) if s.seq != 0 => {
                problem = Some(format!(
                    "the chain starts at entry {}: the ones before it were removed",
                    s.seq
                ));
            }
            (true, None) if !all_hashes.contains(&s.prev) => {
                problem = Some(
                    "the chain's first entry links to a hash not on the topic: entries were removed"
                        .to_owned(),
                );
            }
            (true, Some((next, _))) if s.seq > *next => {
                problem = Some(if present.contains(&(s.writer.clone(), *next)) {
                    format!("entry {} comes before entry {next}: reordered", s.seq)
                } else {
                    format!(
                        "entries {next}–{} of the chain are missing: removed",
                        s.seq - 1
                    )
                });
            }
            (true, Some((next, _))) if s.seq < *next => {
                problem = Some(format!(
                    "entry {} comes after entry {}: reordered",
                    s.seq,
                    next - 1
                ));
            }
            (true, Some((_, prev))) if *prev != s.prev => {
                problem = Some(
                    "it does not link to the entry before it: that entry was changed or replaced"
                        .to_owned(),
                );
            }
            _ => {}
        }
        if problem.is_none()
            && let Some(public) = public
        {
            match &s.sm2 {
                None => problem = Some("not signed, though the hub signs its audit".to_owned()),
                Some(sig) => {
                    let ok = duijie_crypto::Text::Base64
                        .decode(sig)
                        .ok()
                        .zip(hex::decode(&s.hash).ok())
                        .is_some_and(|(sig, digest)| {
                            public
                                .verify(&digest, &sig, duijie_crypto::sm2::SignatureForm::Der)
                                .is_ok()
                        });
                    if ok {
                        report.signed += 1;
                    } else {
                        problem = Some("its SM2 signature does not verify".to_owned());
                    }
                }
            }
        }
        match problem {
            Some(problem) => {
                broken.insert(s.writer.clone());
                report.findings.push(Finding {
                    partition,
                    offset,
                    writer: s.writer,
                    problem,
                });
            }
            None => {
                heads.insert(s.writer, (s.seq + 1, s.hash));
            }
        }
    }
    report.chains = heads.len() + broken.len();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(n: usize, signer: Option<Signer>) -> Vec<Vec<u8>> {
        let chain = Chain::new("t", None, signer);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            rt.block_on(
                chain.append(&serde_json::json!({"i": i, "user": "王芳"}), |_, body| {
                    out.push(body);
                    async { Ok::<(), String>(()) }
                }),
            )
            .unwrap();
        }
        out
    }

    fn check(payloads: &[Vec<u8>], public: Option<&duijie_crypto::sm2::PublicKey>) -> Report {
        verify(
            payloads
                .iter()
                .enumerate()
                .map(|(i, p)| (0, i as i64, p.as_slice())),
            public,
        )
    }

    #[test]
    fn a_whole_chain_verifies_and_each_kind_of_tampering_is_named_at_its_offset() {
        let entries = chain_of(6, None);
        let r = check(&entries, None);
        assert_eq!((r.entries, r.chains, r.findings.len()), (6, 1, 0));

        let mut changed = entries.clone();
        changed[3] = String::from_utf8(changed[3].clone())
            .unwrap()
            .replace("王芳", "李娜")
            .into_bytes();
        let f = &check(&changed, None).findings[0];
        assert_eq!(f.offset, 3);
        assert!(f.problem.starts_with("changed"), "{f:?}");

        let mut removed = entries.clone();
        removed.remove(2);
        let f = &check(&removed, None).findings[0];
        assert_eq!(f.offset, 2);
        assert!(f.problem.contains("missing"), "{f:?}");

        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        let f = &check(&reordered, None).findings[0];
        assert_eq!(f.offset, 1);
        assert!(f.problem.contains("reordered"), "{f:?}");

        let mut head_removed = entries.clone();
        head_removed.remove(0);
        let f = &check(&head_removed, None).findings[0];
        assert_eq!(f.offset, 0);
    }

    #[test]
    fn a_signed_chain_needs_the_hubs_key_and_a_forged_rehash_does_not_pass() {
        let key = duijie_crypto::sm2::PrivateKey::generate(duijie_crypto::sm2::DEFAULT_DISTID);
        let signer = Signer {
            key: key.clone(),
            key_id: "k".into(),
        };
        let entries = chain_of(3, Some(signer));
        let public = key.public();
        let r = check(&entries, Some(&public));
        assert_eq!((r.signed, r.findings.len()), (3, 0));
        // Someone changes the last entry and computes its hash again: the
        // chain holds, the signature does not.
        let mut s: Sealed = serde_json::from_slice(&entries[2]).unwrap();
        s.entry["user"] = "李娜".into();
        s.hash = entry_hash(&s.prev, &s.writer, s.seq, &s.entry);
        let mut forged = entries.clone();
        forged[2] = serde_json::to_vec(&s).unwrap();
        let f = &check(&forged, Some(&public)).findings[0];
        assert_eq!(f.offset, 2);
        assert!(f.problem.contains("SM2"), "{f:?}");
    }
}
