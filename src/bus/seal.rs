//! Sealing at rest (静态数据机密性, GB/T 39786-2021 level 3): the topics that
//! can hold a full resident ID number — every pipeline's raw topic and
//! dead-letter topic, and the canonical topics `[hub.encryption]` names
//! (those whose mapping keeps full numbers: `duijie check` refuses a
//! deployment that leaves one out) — store their payloads encrypted with
//! SM4-GCM under a data key named in the record's `duijie-seal` header
//! (`sm4-gcm/<key id>`). Keys come from the secret store; rotation adds a
//! key id for new records and keeps the old keys to read the old ones.
//!
//! Writers seal through [`seal`] (the pipelines' producer, the desk's
//! publishing); every reader in the hub opens through [`open`] (a payload
//! without the header is taken as it is), so remap, replay, mapping diff,
//! quality, the desk, the keepers and the tools work as before. The
//! keyring is the process's, installed when a deployment with
//! `[hub.encryption]` is read; a new key takes a restart.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// The header naming how a payload is sealed.
pub const HEADER: &str = "duijie-seal";

/// Data keys by id, the one new records use, and the topics sealed.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, duijie_crypto::sm4::GcmKey>,
    topics: BTreeSet<String>,
}

impl Keyring {
    /// Keys as 32 hex digits (16 bytes, SM4).
    pub fn new(
        current: &str,
        keys: &BTreeMap<String, String>,
        topics: BTreeSet<String>,
    ) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for (id, hex_key) in keys {
            let key = hex::decode(hex_key.trim())
                .ok()
                .and_then(|k| duijie_crypto::sm4::GcmKey::new(&k).ok())
                .ok_or_else(|| format!("key `{id}` is not 32 hex digits (a 16-byte SM4 key)"))?;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!("key id `{id}`: letters, digits, `_` and `-` only"));
            }
            out.insert(id.clone(), key);
        }
        if !out.contains_key(current) {
            return Err(format!(
                "`current` names `{current}`, which is not among `keys`"
            ));
        }
        Ok(Self {
            current: current.to_owned(),
            keys: out,
            topics,
        })
    }
}

static KEYRING: OnceLock<Keyring> = OnceLock::new();

/// Makes `keyring` this process's (the first installed stays).
pub fn install(keyring: Keyring) {
    let _ = KEYRING.set(keyring);
}

/// Whether this process seals what it writes to `topic`.
pub fn sealed(topic: &str) -> bool {
    KEYRING.get().is_some_and(|k| k.topics.contains(topic))
}

/// The sealed payload and its header value, when `topic` is sealed.
pub fn seal(topic: &str, payload: &[u8]) -> Option<(Vec<u8>, String)> {
    let k = KEYRING.get().filter(|k| k.topics.contains(topic))?;
    let header = format!("sm4-gcm/{}", k.current);
    let sealed = k.keys[&k.current].seal(header.as_bytes(), payload);
    Some((sealed, header))
}

/// What a writer sends to `topic`: the payload sealed and the header
/// added when the topic is sealed, both as given otherwise.
pub fn sealed_record<'a>(
    topic: &str,
    payload: &'a [u8],
    headers: rdkafka::message::OwnedHeaders,
) -> (Cow<'a, [u8]>, rdkafka::message::OwnedHeaders) {
    match seal(topic, payload) {
        Some((sealed, how)) => (
            Cow::Owned(sealed),
            headers.insert(rdkafka::message::Header {
                key: HEADER,
                value: Some(how.as_str()),
            }),
        ),
        None => (Cow::Borrowed(payload), headers),
    }
}

/// The payload as written: opened when its `duijie-seal` header says it is
/// sealed, as it is otherwise.
pub fn open<'a>(header: Option<&str>, payload: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
    let Some(header) = header else {
        return Ok(Cow::Borrowed(payload));
    };
    let id = header
        .strip_prefix("sm4-gcm/")
        .ok_or_else(|| format!("sealed as `{header}`, which this hub does not know"))?;
    let key = KEYRING
        .get()
        .and_then(|k| k.keys.get(id))
        .ok_or_else(|| format!("sealed under key `{id}`, which [hub.encryption] does not hold"))?;
    key.open(header.as_bytes(), payload)
        .map(Cow::Owned)
        .map_err(|_| {
            format!("the payload sealed under key `{id}` does not open: changed, or another key")
        })
}

/// [`open`] on a consumed message's payload (empty when it has none).
pub fn open_message<'a, M: rdkafka::Message>(m: &'a M) -> Result<Cow<'a, [u8]>, String> {
    use rdkafka::message::Headers;
    let header = m.headers().and_then(|hs| {
        hs.iter()
            .find(|h| h.key == HEADER)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    });
    open(header, m.payload().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_only_whole_and_under_its_key() {
        let keys = BTreeMap::from([
            (
                "k1".to_owned(),
                "00112233445566778899aabbccddeeff".to_owned(),
            ),
            (
                "k2".to_owned(),
                "ffeeddccbbaa99887766554433221100".to_owned(),
            ),
        ]);
        install(Keyring::new("k2", &keys, BTreeSet::from(["raw.x".to_owned()])).unwrap());
        assert!(seal("canonical.x", b"p").is_none());
        let (sealed, header) = seal("raw.x", b"420502199001011234").unwrap();
        assert_eq!(header, "sm4-gcm/k2");
        assert!(!sealed.windows(18).any(|w| w == b"420502199001011234"));
        assert_eq!(
            &*open(Some(&header), &sealed).unwrap(),
            b"420502199001011234"
        );
        assert_eq!(&*open(None, b"plain").unwrap(), b"plain");
        let mut changed = sealed.clone();
        changed[20] ^= 1;
        assert!(open(Some(&header), &changed).is_err());
        // Another key id in the header: refused (the header is bound).
        assert!(open(Some("sm4-gcm/k1"), &sealed).is_err());
        assert!(
            open(Some("sm4-gcm/k9"), &sealed)
                .unwrap_err()
                .contains("k9")
        );
        assert!(Keyring::new("k3", &keys, BTreeSet::new()).is_err());
        let short = BTreeMap::from([("k".to_owned(), "0011".to_owned())]);
        assert!(Keyring::new("k", &short, BTreeSet::new()).is_err());
    }
}
