//! The personal-data rule (个人信息保护), in one place.
//!
//! A natural person's full resident ID number (居民身份证号码) leaves the
//! hub only where the destination's policy says `personal_data = "full"`.
//! Everywhere else — every other push body, every idempotency key and
//! header, receipts, alerts, dead letters of push pipelines, blacklist and
//! entity keys — the hub uses one of two forms instead:
//!
//! - a **pseudonym** where a stable identity is needed (keys): `pid:` and
//!   the first 32 hex digits of HMAC-SHA256 under the deployment's secret
//!   `[hub] pseudonym_key`, over the normalised 18-character number. The
//!   same person gets the same key on every instance and after every
//!   restart; without the key the number cannot be recovered from it (the
//!   space of ID numbers is small enough to try exhaustively, which is why
//!   the hash is keyed);
//! - a **mask** where a person reads it (`110105********002X`, the
//!   destination's mask policy, birth date hidden by default).
//!
//! [`scrub`] applies the mask to any valid full ID number anywhere in a
//! JSON value, whatever the field is called; it is what outbound paths
//! call last, so that a new field carrying a number cannot slip through.
//! Basis: 《个人信息保护法》 arts. 6 and 28 (minimum necessary; ID numbers are
//! sensitive personal information), 《居民身份证法》 art. 19.

use crate::ident::{MaskPolicy, check_resident_id};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// What a destination may receive of a natural person's ID number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonalDataPolicy {
    /// Masked everywhere (the default).
    #[default]
    Masked,
    /// The full number, where the law gives the destination the right to it
    /// (e.g. the police for a referral); say so in the deployment file.
    Full,
}

/// The deployment's pseudonym key.
#[derive(Clone)]
pub struct Pseudonyms {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(***)")
    }
}

impl Pseudonyms {
    pub fn new(key: &str) -> Result<Self, String> {
        if key.len() < 32 {
            return Err(
                "`pseudonym_key` must be at least 32 characters (a secret: use ${file:…})".into(),
            );
        }
        Ok(Self {
            key: key.as_bytes().to_vec(),
        })
    }

    /// `pid:<32 hex>`: the person's stable pseudonym.
    pub fn of(&self, id_number: &str) -> String {
        let normalized = check_resident_id(id_number).normalized;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(normalized.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("pid:{}", &hex::encode(digest)[..32])
    }
}

/// Every valid full 18-character resident ID number in `text` (a run of
/// 17 digits and a digit or `X`, not inside a longer run of digits, whose
/// birth date and check character are right).
pub fn full_ids(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 18 <= b.len() {
        let starts_run = i == 0 || !b[i - 1].is_ascii_digit();
        if starts_run
            && b[i..i + 17].iter().all(u8::is_ascii_digit)
            && (b[i + 17].is_ascii_digit() || b[i + 17] == b'X' || b[i + 17] == b'x')
            && b.get(i + 18).is_none_or(|c| !c.is_ascii_digit())
        {
            let candidate = &text[i..i + 18];
            if check_resident_id(candidate).is_valid() {
                found.push(candidate.to_ascii_uppercase());
                i += 18;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Masks every valid full ID number inside the strings of `v` (values,
/// not keys), with `mask`. Returns how many were masked.
pub fn scrub(v: &mut Value, mask: &MaskPolicy) -> usize {
    match v {
        Value::String(s) => {
            let ids = full_ids(s);
            for id in &ids {
                *s = s
                    .replace(id, &mask.apply(id))
                    .replace(&id.to_ascii_lowercase(), &mask.apply(id));
            }
            ids.len()
        }
        Value::Array(a) => a.iter_mut().map(|x| scrub(x, mask)).sum(),
        Value::Object(o) => o.values_mut().map(|x| scrub(x, mask)).sum(),
        _ => 0,
    }
}

/// `text` with every valid full ID number masked (for headers, keys and
/// other flat text).
pub fn scrub_text(text: &str, mask: &MaskPolicy) -> String {
    let mut out = text.to_owned();
    for id in full_ids(text) {
        out = out.replace(&id, &mask.apply(&id));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "11010519491231002X";

    #[test]
    fn a_pseudonym_is_stable_keyed_and_hides_the_number() {
        let a = Pseudonyms::new("a-secret-pseudonym-key-of-32-chars!!").unwrap();
        let b = Pseudonyms::new("another-secret-pseudonym-key-32-chars").unwrap();
        assert_eq!(a.of(ID), a.of("11010519491231002x"));
        assert_ne!(a.of(ID), b.of(ID));
        assert!(a.of(ID).starts_with("pid:"));
        assert!(!a.of(ID).contains("19491231"));
        assert!(Pseudonyms::new("short").is_err());
    }

    #[test]
    fn full_ids_are_found_anywhere_and_masked_but_other_numbers_are_kept() {
        let text = format!(
            "id:{ID}; phone 13800000000; order 123456789012345678901; bad 110105194912310021"
        );
        assert_eq!(full_ids(&text), vec![ID.to_owned()]);
        let mut v = json!({"entity": format!("id:{ID}"), "n": [ID], "keep": "110105********002X", "order": "123456789012345678"});
        assert_eq!(scrub(&mut v, &MaskPolicy::birth_date()), 2);
        assert_eq!(v["entity"], "id:110105********002X");
        assert_eq!(v["n"][0], "110105********002X");
        assert_eq!(v["order"], "123456789012345678");
        assert_eq!(
            scrub_text(&format!("key {ID}"), &MaskPolicy::birth_date()),
            "key 110105********002X"
        );
    }
}
