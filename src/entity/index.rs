//! The entity index: a cache of the bus in redb.
//!
//! Why a store and not memory: at production scale (hundreds of thousands
//! of entities, millions of records) one record's summary with its
//! provenance is ~0.5 KB, so the index is gigabytes — too much to hold in
//! the hub's heap and to rebuild from Kafka at every start. redb is an
//! embedded, pure-Rust, ACID key-value store (copy-on-write B-trees, MVCC
//! readers that never block the writer), with a stable file format and an
//! active maintainer; it needs no C toolchain (RocksDB does) and no server
//! (PostgreSQL does), and sled is unmaintained. The desk reads while the
//! keeper writes.
//!
//! Kafka stays the source of truth. The file records, in the same
//! transaction as the records, the next offset of every partition it has
//! read, so a restart resumes where it stopped; it is thrown away and
//! rebuilt from the beginning of the topics when its format, the
//! pseudonym key, the publication policy or the topics change
//! ([`fingerprint`]), or when the bus no longer holds what it read (an
//! offset beyond a partition's end). Without a file (`duijie entity`, tests)
//! the same index lives in memory.

use super::{EntitySummary, IndexedRecord, Link, name_core};
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Record reference (`topic|key`) → [`Stored`] (JSON).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Entity key → [`EntitySummary`] (JSON).
const ENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entities");
/// Entity key → its records' references.
const LINKS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("links");
/// Name core → entity keys: the candidates of a name-only record.
const CORES: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("cores");
/// Name-only records without a confirmed link.
const UNLINKED: TableDefinition<&str, ()> = TableDefinition::new("unlinked");
/// Record reference → officers' decisions, by entity (JSON).
const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
/// Records the public window may show (published penalties, listings),
/// so that it reads only those.
const PUBLIC: TableDefinition<&str, ()> = TableDefinition::new("public");
/// `topic` NUL `partition` → the next offset to read.
const OFFSETS: TableDefinition<&str, i64> = TableDefinition::new("offsets");
/// `topic` NUL `partition` → the digest of the last record read there
/// ([`record_digest`]): a bus that holds another record at that offset is
/// another bus (a topic recreated, the demo's fresh broker).
const LAST: TableDefinition<&str, &[u8]> = TableDefinition::new("last");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Counters kept with the data, so that counting never scans.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");
const MULTI_SYSTEM: &str = "entities_multi_system";

/// Bumped whenever what the index stores changes shape.
const FORMAT: &str = "entity-index-1";

/// What identifies the index's content: the format, the pseudonym key (by
/// the pseudonym of a fixed number, not the key itself), the publication
/// policy and the topics read.
pub fn fingerprint(pseudonym_probe: &str, policy: &str, topics: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [FORMAT, pseudonym_probe, policy] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for t in topics {
        h.update(t.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// An officer's decision on a proposed link (an event on the links topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkDecision {
    /// Unique per decision.
    pub id: String,
    /// The name-only record (`topic|key`).
    pub reference: String,
    pub entity: String,
    /// Confirmed (the record is the entity's) or rejected (it is not).
    pub confirmed: bool,
    pub confidence: f64,
    pub by: String,
    pub at_ms: i64,
    #[serde(default)]
    pub note: Option<String>,
}

/// A record as stored: its latest reading and the entity it is linked to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    record: IndexedRecord,
    entity: Option<String>,
}

/// Per partition read: the next offset, and the digest of the last record.
pub type Positions = BTreeMap<(String, i32), (i64, Vec<u8>)>;

/// How far a partition has been read.
#[derive(Debug, Clone)]
pub struct Read {
    pub topic: String,
    pub partition: i32,
    pub next: i64,
    /// [`record_digest`] of the record at `next - 1`.
    pub last_digest: Vec<u8>,
}

/// What identifies a record at its offset: SHA-256 of key NUL payload.
pub fn record_digest(key: &[u8], payload: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(key);
    h.update([0]);
    h.update(payload);
    h.finalize().to_vec()
}

/// One change to the index.
#[derive(Debug, Clone)]
pub enum Change {
    Record(Box<IndexedRecord>),
    /// A tombstone on a compacted topic: the record is gone.
    Removed(String),
    Decision(LinkDecision),
}

/// A proposed link of a name-only record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub entity: String,
    pub name: String,
    pub credit_code: Option<String>,
    pub confidence: f64,
}

/// A name-only record and its candidates, best first.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    pub record: IndexedRecord,
    pub candidates: Vec<Candidate>,
    /// Entities an officer said it is not.
    pub rejected: Vec<String>,
}

/// The index (see the module's documentation).
#[derive(Debug)]
pub struct EntityIndex {
    db: Database,
    propose_from: f64,
}

type R<T> = Result<T, redb::Error>;

/// The index file failed: an I/O error is worth retrying (by its kind),
/// a corrupted or mismatched file is not (the keeper then rebuilds it from
/// the bus).
impl From<redb::Error> for crate::error::Error {
    fn from(e: redb::Error) -> Self {
        use crate::error::{Domain, Error, ErrorClass};
        let class = match &e {
            redb::Error::Io(io) => Error::from(std::io::Error::from(io.kind())).class(),
            redb::Error::DatabaseAlreadyOpen | redb::Error::PreviousIo => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        };
        Error::new(Domain::Entity, class, e).context("the entity index")
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("index values serialize")
}

fn parse<T: for<'de> Deserialize<'de>>(b: &[u8]) -> R<T> {
    serde_json::from_slice(b)
        .map_err(|e| redb::Error::Corrupted(format!("entity index value: {e}")))
}

fn offset_key(topic: &str, partition: i32) -> String {
    format!("{topic}\0{partition}")
}

impl EntityIndex {
    /// The index in memory.
    pub fn in_memory(propose_from: f64) -> R<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let index = Self { db, propose_from };
        index.init("")?;
        Ok(index)
    }

    /// The index in `file`: kept when its fingerprint matches, else started
    /// afresh. Says whether it was kept.
    pub fn open(file: &Path, fingerprint: &str, propose_from: f64) -> R<(Self, bool)> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                redb::Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", dir.display()),
                ))
            })?;
        }
        let kept = match Database::create(file) {
            Ok(db) => {
                let index = Self { db, propose_from };
                if index.fingerprint()?.as_deref() == Some(fingerprint) {
                    return Ok((index, true));
                }
                drop(index);
                false
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "the entity cache cannot be opened; rebuilding it");
                false
            }
        };
        let _ = std::fs::remove_file(file);
        let index = Self {
            db: Database::create(file)?,
            propose_from,
        };
        index.init(fingerprint)?;
        Ok((index, kept))
    }

    fn fingerprint(&self) -> R<Option<String>> {
        let r = self.db.begin_read()?;
        let meta = match r.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(meta.get("fingerprint")?.map(|v| v.value().to_owned()))
    }

    fn init(&self, fingerprint: &str) -> R<()> {
        let w = self.db.begin_write()?;
        {
            w.open_table(RECORDS)?;
            w.open_table(ENTITIES)?;
            w.open_multimap_table(LINKS)?;
            w.open_multimap_table(CORES)?;
            w.open_table(UNLINKED)?;
            w.open_table(DECISIONS)?;
            w.open_table(PUBLIC)?;
            w.open_table(OFFSETS)?;
            w.open_table(LAST)?;
            w.open_table(COUNTS)?;
            w.open_table(META)?.insert("fingerprint", fingerprint)?;
        }
        w.commit()?;
        Ok(())
    }

    /// Empties the index (the bus no longer holds what it read).
    pub fn clear(&self) -> R<()> {
        let fp = self.fingerprint()?.unwrap_or_default();
        let w = self.db.begin_write()?;
        w.delete_table(RECORDS)?;
        w.delete_table(ENTITIES)?;
        w.delete_multimap_table(LINKS)?;
        w.delete_multimap_table(CORES)?;
        w.delete_table(UNLINKED)?;
        w.delete_table(DECISIONS)?;
        w.delete_table(PUBLIC)?;
        w.delete_table(OFFSETS)?;
        w.delete_table(LAST)?;
        w.delete_table(COUNTS)?;
        w.commit()?;
        self.init(&fp)
    }

    /// The next offset of every partition read.
    pub fn offsets(&self) -> R<BTreeMap<(String, i32), i64>> {
        Ok(self
            .positions()?
            .into_iter()
            .map(|(k, (next, _))| (k, next))
            .collect())
    }

    /// The next offset of every partition read, and the digest of the last
    /// record read there.
    pub fn positions(&self) -> R<Positions> {
        let r = self.db.begin_read()?;
        let t = r.open_table(OFFSETS)?;
        let last = r.open_table(LAST)?;
        let mut out = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let digest = last
                .get(k.value())?
                .map(|d| d.value().to_vec())
                .unwrap_or_default();
            if let Some((topic, p)) = k.value().split_once('\0')
                && let Ok(p) = p.parse()
            {
                out.insert((topic.to_owned(), p), (v.value(), digest));
            }
        }
        Ok(out)
    }

    /// Applies changes and the offsets they bring the index to, in one
    /// transaction. `durable` waits for the disk; otherwise a crash goes
    /// back to the last durable state, offsets included, and reads again.
    pub fn apply(&self, changes: &[Change], offsets: &[Read], durable: bool) -> R<()> {
        let mut w = self.db.begin_write()?;
        if !durable {
            w.set_durability(redb::Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        }
        {
            let mut t = Tables {
                records: w.open_table(RECORDS)?,
                entities: w.open_table(ENTITIES)?,
                links: w.open_multimap_table(LINKS)?,
                cores: w.open_multimap_table(CORES)?,
                unlinked: w.open_table(UNLINKED)?,
                decisions: w.open_table(DECISIONS)?,
                public: w.open_table(PUBLIC)?,
                multi_system_delta: 0,
            };
            for c in changes {
                match c {
                    Change::Record(r) => t.put((**r).clone())?,
                    Change::Removed(reference) => {
                        t.take(reference)?;
                    }
                    Change::Decision(d) => t.decide(d)?,
                }
            }
            let delta = t.multi_system_delta;
            drop(t);
            if delta != 0 {
                let mut counts = w.open_table(COUNTS)?;
                let now = counts.get(MULTI_SYSTEM)?.map_or(0, |v| v.value());
                counts.insert(MULTI_SYSTEM, now.saturating_add_signed(delta))?;
            }
            let mut o = w.open_table(OFFSETS)?;
            let mut last = w.open_table(LAST)?;
            for read in offsets {
                let key = offset_key(&read.topic, read.partition);
                o.insert(key.as_str(), read.next)?;
                last.insert(key.as_str(), read.last_digest.as_slice())?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Entities, optionally only those whose name, code or key contains
    /// `query` (normalised), ordered by key; with the total count.
    pub fn entities(
        &self,
        query: Option<&str>,
        skip: usize,
        take: usize,
    ) -> R<(usize, Vec<EntitySummary>)> {
        let q = query.map(super::normalise_name).filter(|q| !q.is_empty());
        let r = self.db.begin_read()?;
        let t = r.open_table(ENTITIES)?;
        let mut total = 0;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            let e: EntitySummary = parse(v.value())?;
            if let Some(q) = &q {
                let hit = e.key.to_uppercase().contains(q)
                    || e.names
                        .keys()
                        .any(|n| super::normalise_name(n).contains(q.as_str()));
                if !hit {
                    continue;
                }
            }
            if total >= skip && out.len() < take {
                out.push(e);
            }
            total += 1;
        }
        Ok((total, out))
    }

    pub fn entity(&self, key: &str) -> R<Option<EntitySummary>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(ENTITIES)?;
        t.get(key)?.map(|v| parse(v.value())).transpose()
    }

    /// An entity and its records, newest first.
    pub fn profile(&self, key: &str) -> R<Option<(EntitySummary, Vec<IndexedRecord>)>> {
        let r = self.db.begin_read()?;
        let entities = r.open_table(ENTITIES)?;
        let Some(e) = entities.get(key)? else {
            return Ok(None);
        };
        let e: EntitySummary = parse(e.value())?;
        let links = r.open_multimap_table(LINKS)?;
        let records = r.open_table(RECORDS)?;
        let mut out = Vec::new();
        for reference in links.get(key)? {
            let reference = reference?;
            if let Some(s) = records.get(reference.value())? {
                out.push(parse::<Stored>(s.value())?.record);
            }
        }
        out.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.reference.cmp(&b.reference)));
        super::mark_repairs(&mut out);
        Ok(Some((e, out)))
    }

    /// The records the public window may show (whether they do depends
    /// on the time: [`super::public_item`]).
    pub fn public_records(&self) -> R<Vec<IndexedRecord>> {
        let r = self.db.begin_read()?;
        let public = r.open_table(PUBLIC)?;
        let records = r.open_table(RECORDS)?;
        let mut out = Vec::new();
        for row in public.iter()? {
            let (reference, _) = row?;
            if let Some(v) = records.get(reference.value())? {
                out.push(parse::<Stored>(v.value())?.record);
            }
        }
        super::mark_repairs(&mut out);
        Ok(out)
    }

    pub fn record(&self, reference: &str) -> R<Option<(IndexedRecord, Option<String>)>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(RECORDS)?;
        t.get(reference)?
            .map(|v| parse::<Stored>(v.value()).map(|s| (s.record, s.entity)))
            .transpose()
    }

    /// Name-only records not linked yet, with their candidates.
    pub fn proposals(&self, take: usize) -> R<(usize, Vec<Proposal>)> {
        let r = self.db.begin_read()?;
        let unlinked = r.open_table(UNLINKED)?;
        let records = r.open_table(RECORDS)?;
        let decisions = r.open_table(DECISIONS)?;
        let cores = r.open_multimap_table(CORES)?;
        let entities = r.open_table(ENTITIES)?;
        let total = unlinked.len()? as usize;
        let mut out = Vec::new();
        for row in unlinked.iter()? {
            if out.len() >= take {
                break;
            }
            let (reference, _) = row?;
            let Some(s) = records.get(reference.value())? else {
                continue;
            };
            let record = parse::<Stored>(s.value())?.record;
            let decided: BTreeMap<String, LinkDecision> = match decisions.get(reference.value())? {
                Some(d) => parse(d.value())?,
                None => BTreeMap::new(),
            };
            let rejected: Vec<String> = decided
                .values()
                .filter(|d| !d.confirmed)
                .map(|d| d.entity.clone())
                .collect();
            let name = record.party_name.clone().unwrap_or_default();
            let mut candidates = Vec::new();
            for key in cores.get(name_core(&name).as_str())? {
                let key = key?;
                if rejected.iter().any(|r| r == key.value()) {
                    continue;
                }
                let Some(e) = entities.get(key.value())? else {
                    continue;
                };
                let e: EntitySummary = parse(e.value())?;
                let confidence = super::confidence_with(&record, &e);
                if confidence >= self.propose_from {
                    candidates.push(Candidate {
                        entity: e.key.clone(),
                        name: e.name(),
                        credit_code: e.credit_code.clone(),
                        confidence: (confidence * 100.0).round() / 100.0,
                    });
                }
            }
            candidates.sort_by(|a, b| {
                b.confidence
                    .total_cmp(&a.confidence)
                    .then(a.entity.cmp(&b.entity))
            });
            out.push(Proposal {
                record,
                candidates,
                rejected,
            });
        }
        Ok((total, out))
    }

    /// How many entities, how many are seen by more than one system, and
    /// how many records.
    pub fn counts(&self) -> R<(u64, u64, u64)> {
        let r = self.db.begin_read()?;
        let records = r.open_table(RECORDS)?.len()?;
        let entities = r.open_table(ENTITIES)?.len()?;
        let multi = r
            .open_table(COUNTS)?
            .get(MULTI_SYSTEM)?
            .map_or(0, |v| v.value());
        Ok((entities, multi, records))
    }
}

/// The tables of one write transaction.
struct Tables<'txn> {
    records: redb::Table<'txn, &'static str, &'static [u8]>,
    entities: redb::Table<'txn, &'static str, &'static [u8]>,
    links: redb::MultimapTable<'txn, &'static str, &'static str>,
    cores: redb::MultimapTable<'txn, &'static str, &'static str>,
    unlinked: redb::Table<'txn, &'static str, ()>,
    decisions: redb::Table<'txn, &'static str, &'static [u8]>,
    public: redb::Table<'txn, &'static str, ()>,
    /// Entities that came to be seen by several systems, minus those no
    /// longer.
    multi_system_delta: i64,
}

impl Tables<'_> {
    /// Removes a record and its link; returns what it was.
    fn take(&mut self, reference: &str) -> R<Option<Stored>> {
        let old: Stored = match self.records.remove(reference)? {
            Some(v) => parse(v.value())?,
            None => return Ok(None),
        };
        self.public.remove(reference)?;
        match &old.entity {
            Some(e) => self.unlink(e, &old.record)?,
            None => {
                self.unlinked.remove(reference)?;
            }
        }
        Ok(Some(old))
    }

    fn unlink(&mut self, entity: &str, r: &IndexedRecord) -> R<()> {
        self.links.remove(entity, r.reference.as_str())?;
        let Some(e) = self
            .entities
            .get(entity)?
            .map(|v| parse::<EntitySummary>(v.value()))
        else {
            return Ok(());
        };
        let mut e = e?;
        let was = e.systems.len() > 1;
        e.add(r, -1);
        self.multi_system_delta += i64::from(e.systems.len() > 1) - i64::from(was);
        // Cores no remaining name has any more.
        if let Some(n) = &r.party_name {
            let core = name_core(n);
            if !e.names.keys().any(|m| name_core(m) == core) {
                self.cores.remove(core.as_str(), entity)?;
            }
        }
        if e.records == 0 {
            self.entities.remove(entity)?;
        } else {
            self.entities.insert(entity, json(&e).as_slice())?;
        }
        Ok(())
    }

    fn link(&mut self, entity: &str, r: &IndexedRecord) -> R<()> {
        let mut e = match self.entities.get(entity)? {
            Some(v) => parse::<EntitySummary>(v.value())?,
            None => EntitySummary {
                key: entity.to_owned(),
                ..EntitySummary::default()
            },
        };
        let was = e.systems.len() > 1;
        e.add(r, 1);
        self.multi_system_delta += i64::from(e.systems.len() > 1) - i64::from(was);
        self.entities.insert(entity, json(&e).as_slice())?;
        self.links.insert(entity, r.reference.as_str())?;
        if let Some(n) = &r.party_name {
            self.cores.insert(name_core(n).as_str(), entity)?;
        }
        Ok(())
    }

    /// The entity an officer confirmed for a name-only record.
    fn confirmed(&self, reference: &str) -> R<Option<String>> {
        let Some(d) = self.decisions.get(reference)? else {
            return Ok(None);
        };
        let d: BTreeMap<String, LinkDecision> = parse(d.value())?;
        Ok(d.values()
            .filter(|d| d.confirmed)
            .max_by_key(|d| d.at_ms)
            .map(|d| d.entity.clone()))
    }

    fn put(&mut self, record: IndexedRecord) -> R<()> {
        let old = self.take(&record.reference)?;
        let record = match old {
            Some(old) => merge(&old.record, record),
            None => record,
        };
        let entity = match record.own_key() {
            Some(k) => Some(k.to_owned()),
            None => self.confirmed(&record.reference)?,
        };
        match &entity {
            Some(e) => self.link(e, &record)?,
            // A record naming nobody yet (a referral event without its
            // suspect) waits for one that does; it proposes nothing.
            None if record.party_name.is_some() => {
                self.unlinked.insert(record.reference.as_str(), ())?;
            }
            None => {}
        }
        // A repair result or a withdrawal takes its decision off the window
        // by number whether or not it names a party the index can link (a
        // repair names a person by name only).
        let ends_others = matches!(
            record.facts,
            super::Facts::Repair { .. }
                | super::Facts::Penalty {
                    withdrawn: Some(_),
                    ..
                }
        );
        if (entity.is_some() || ends_others) && super::may_be_public(&record) {
            self.public.insert(record.reference.as_str(), ())?;
        }
        let stored = Stored { record, entity };
        let reference = stored.record.reference.clone();
        self.records
            .insert(reference.as_str(), json(&stored).as_slice())?;
        Ok(())
    }

    fn decide(&mut self, d: &LinkDecision) -> R<()> {
        let mut all: BTreeMap<String, LinkDecision> =
            match self.decisions.get(d.reference.as_str())? {
                Some(v) => parse(v.value())?,
                None => BTreeMap::new(),
            };
        // The latest decision per entity counts (an officer may correct one).
        if all.get(&d.entity).is_some_and(|x| x.at_ms > d.at_ms) {
            return Ok(());
        }
        all.insert(d.entity.clone(), d.clone());
        self.decisions
            .insert(d.reference.as_str(), json(&all).as_slice())?;
        // Link or unlink a record already read.
        let stored: Stored = match self.records.get(d.reference.as_str())? {
            Some(v) => parse(v.value())?,
            None => return Ok(()),
        };
        if stored.record.link == Link::NameOnly {
            self.put(stored.record)?;
        }
        Ok(())
    }
}

/// A referral's events share one record: it keeps the suspect its first
/// event named and takes its state from the latest event.
fn merge(old: &IndexedRecord, new: IndexedRecord) -> IndexedRecord {
    if new.kind != super::Kind::Referral {
        return new;
    }
    let (mut latest, earlier) = if new.at_ms >= old.at_ms {
        (new, old.clone())
    } else {
        (old.clone(), new)
    };
    if latest.party_name.is_none() && latest.link == Link::NameOnly {
        latest.party_name = earlier.party_name;
        latest.party_type = earlier.party_type;
        latest.credit_code = earlier.credit_code;
        latest.link = earlier.link;
    }
    latest
}
