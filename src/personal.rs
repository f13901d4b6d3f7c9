//! The personal-data rule (个人信息保护), in one place.
//!
//! A natural person's full resident ID number (居民身份证号码) leaves the
//! hub only where the destination's policy says `personal_data = "full"`.
//! Everywhere else — every other push body, every idempotency key and
//! header, receipts, alerts, dead letters of deliveries, blacklist and
//! entity keys — the hub uses one of two forms instead:
//!
//! - a **pseudonym** where a stable identity is needed (keys): the first
//!   32 hex digits of an HMAC under the deployment's secret
//!   `[hub] pseudonym_key`, over the normalised 18-character number —
//!   HMAC-SM3 written `pid-sm3:…` in the `gm` suite (GB/T 39786-2021, the
//!   national algorithms), HMAC-SHA256 written `pid:…` in `intl`. The
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

/// The deployment's pseudonyms: its key, the suite that makes them
/// (`[hub] suite`) and, while a deployment changes suite, the suite its
/// earlier pseudonyms were made in (`[hub] previous_suite`), so that what
/// is kept under them is carried over (see the blacklist keeper).
#[derive(Clone)]
pub struct Pseudonyms {
    key: Vec<u8>,
    suite: duijie_crypto::Suite,
    previous: Option<duijie_crypto::Suite>,
}

/// How a suite's pseudonyms begin.
fn prefix(suite: duijie_crypto::Suite) -> &'static str {
    match suite {
        duijie_crypto::Suite::Gm => "pid-sm3:",
        duijie_crypto::Suite::Intl => "pid:",
    }
}

/// All the forms a person's key can take.
const PREFIXES: [&str; 2] = ["pid-sm3:", "pid:"];

/// Whether `key` is a natural person's key (a pseudonym of any suite).
pub fn is_person_key(key: &str) -> bool {
    PREFIXES.iter().any(|p| key.starts_with(p))
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
            suite: duijie_crypto::Suite::Intl,
            previous: None,
        })
    }

    /// The same key, pseudonyms made in `suite`; `previous` is the suite
    /// of the pseudonyms still to carry over, if any.
    pub fn in_suite(
        mut self,
        suite: duijie_crypto::Suite,
        previous: Option<duijie_crypto::Suite>,
    ) -> Self {
        self.suite = suite;
        self.previous = previous.filter(|p| *p != suite);
        self
    }

    /// The person's stable pseudonym: `pid-sm3:<32 hex>` (gm) or
    /// `pid:<32 hex>` (intl).
    pub fn of(&self, id_number: &str) -> String {
        self.made_in(self.suite, id_number)
    }

    /// The pseudonym the person had under the previous suite, while the
    /// deployment carries keys over.
    pub fn earlier(&self, id_number: &str) -> Option<String> {
        self.previous.map(|p| self.made_in(p, id_number))
    }

    /// Whether `key` is a person's key in a form this deployment no longer
    /// makes (history under the previous suite).
    pub fn is_earlier_form(&self, key: &str) -> bool {
        let current = prefix(self.suite);
        PREFIXES.iter().any(|p| *p != current && key.starts_with(p))
    }

    /// Whether earlier pseudonyms are being carried over.
    pub fn carrying_over(&self) -> bool {
        self.previous.is_some()
    }

    fn made_in(&self, suite: duijie_crypto::Suite, id_number: &str) -> String {
        let normalized = check_resident_id(id_number).normalized;
        let digest = match suite {
            duijie_crypto::Suite::Gm => suite.hmac(&self.key, &[normalized.as_bytes()]),
            duijie_crypto::Suite::Intl => {
                // As before the suites: kept bit for bit, keys on the
                // compacted topics depend on it.
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
                mac.update(normalized.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
        };
        format!("{}{}", prefix(suite), &hex::encode(digest)[..32])
    }
}

/// A digit as the normaliser reads it: ASCII or full-width.
fn digit_of(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + u32::from(b'0')),
        _ => None,
    }
}

/// The check character `X` in any case or width.
fn is_x(c: char) -> bool {
    matches!(c, 'X' | 'x' | '\u{FF38}' | '\u{FF58}')
}

/// What may stand between the groups of a number someone typed: spaces
/// (also ideographic and no-break) and hyphens (also full-width).
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{3000}' | '\u{00A0}' | '-' | '\u{FF0D}')
}

/// At most this many separators inside one number (6-8-4, 6-4-4-4 …).
const MAX_SEPARATORS: usize = 4;

/// Every full resident ID number in `text`, in every form the hub's own
/// normaliser accepts: 18 characters (the last a digit or `X`, either
/// case) or a 15-digit first-generation number (GB 11643-1989); ASCII or
/// full-width; with spaces or hyphens between its groups. A number counts
/// when its birth date and check character are right (a 15-digit one is
/// checked as normalised to 18) and it is not part of a longer run of
/// digits. Each is given as its byte range in `text` and its normalised
/// 18-character form.
pub fn find_ids(text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    // Whether the number ending before char `i` ends there: no digit
    // follows, directly or after one separator.
    let ends_at = |i: usize| match chars.get(i) {
        None => true,
        Some((_, c)) if digit_of(*c).is_some() || is_x(*c) => false,
        Some((_, c)) if is_separator(*c) => {
            chars.get(i + 1).is_none_or(|(_, n)| digit_of(*n).is_none())
        }
        _ => true,
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = digit_of(chars[i].1).is_some()
            && (i == 0 || {
                let p = chars[i - 1].1;
                digit_of(p).is_none()
                    && !is_x(p)
                    && !(is_separator(p) && i >= 2 && digit_of(chars[i - 2].1).is_some())
            });
        if !starts {
            i += 1;
            continue;
        }
        // (end char index, normalised digits so far) at 15 and 18.
        let mut candidates: Vec<(usize, String)> = Vec::new();
        let mut digits = String::new();
        let (mut j, mut separators) = (i, 0);
        while j < chars.len() && digits.len() < 18 {
            let c = chars[j].1;
            if let Some(d) = digit_of(c) {
                digits.push(d);
                j += 1;
                if digits.len() == 15 || digits.len() == 18 {
                    candidates.push((j, digits.clone()));
                }
            } else if is_x(c) && digits.len() == 17 {
                digits.push('X');
                j += 1;
                candidates.push((j, digits.clone()));
            } else if is_separator(c)
                && separators < MAX_SEPARATORS
                && chars.get(j + 1).is_some_and(|(_, n)| {
                    digit_of(*n).is_some() || (is_x(*n) && digits.len() == 17)
                })
            {
                separators += 1;
                j += 1;
            } else {
                break;
            }
        }
        let hit = candidates.into_iter().rev().find_map(|(end, id)| {
            let checked = crate::ident::check_resident_id(&id);
            (ends_at(end) && checked.is_valid()).then_some((end, checked.normalized))
        });
        match hit {
            Some((end, id)) => {
                found.push((byte_at(i)..byte_at(end), id));
                i = end;
            }
            None => i += 1,
        }
    }
    found
}

/// Every full resident ID number in `text`, normalised (see [`find_ids`]).
pub fn full_ids(text: &str) -> Vec<String> {
    find_ids(text).into_iter().map(|(_, id)| id).collect()
}

/// Masks every full ID number inside the strings of `v` (values, not
/// keys), in whatever form it is written, with `mask` applied to its
/// normalised form. Returns how many were masked.
pub fn scrub(v: &mut Value, mask: &MaskPolicy) -> usize {
    match v {
        Value::String(s) => {
            let ids = find_ids(s);
            if !ids.is_empty() {
                *s = masked(s, &ids, mask);
            }
            ids.len()
        }
        Value::Array(a) => a.iter_mut().map(|x| scrub(x, mask)).sum(),
        Value::Object(o) => o.values_mut().map(|x| scrub(x, mask)).sum(),
        _ => 0,
    }
}

fn masked(text: &str, ids: &[(std::ops::Range<usize>, String)], mask: &MaskPolicy) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, id) in ids {
        out.push_str(&text[at..range.start]);
        out.push_str(&mask.apply(id));
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` with every full ID number masked, in whatever form (for
/// headers, keys and other flat text).
pub fn scrub_text(text: &str, mask: &MaskPolicy) -> String {
    let ids = find_ids(text);
    if ids.is_empty() {
        text.to_owned()
    } else {
        masked(text, &ids, mask)
    }
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

    /// The vectors are Python's `hmac` with `sm3` and `sha256` (OpenSSL's
    /// implementations): `hmac.new(key, b"11010519491231002X", "sm3")`.
    #[test]
    fn each_suite_makes_its_own_form_and_knows_the_other_as_earlier() {
        let key = "a-secret-pseudonym-key-of-32-chars!!";
        let intl = Pseudonyms::new(key).unwrap();
        let gm = Pseudonyms::new(key)
            .unwrap()
            .in_suite(duijie_crypto::Suite::Gm, Some(duijie_crypto::Suite::Intl));
        assert_eq!(intl.of(ID), "pid:46479c47afb37e29d1ec67c470fee9f3");
        assert_eq!(gm.of(ID), "pid-sm3:37a826ada907bccac2b3118668a49cb8");
        assert_eq!(gm.earlier(ID), Some(intl.of(ID)));
        assert_eq!(intl.earlier(ID), None);
        assert!(gm.is_earlier_form(&intl.of(ID)));
        assert!(!gm.is_earlier_form(&gm.of(ID)));
        assert!(intl.is_earlier_form(&gm.of(ID)));
        assert!(!gm.is_earlier_form("uscc:91350100M000100Y43"));
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

    /// Every form the normaliser accepts, generated inside free text: each
    /// is found and masked; numbers that are not ID numbers are kept.
    #[test]
    fn every_form_of_a_full_id_number_is_found_in_free_text() {
        use crate::ident::{check_resident_id, with_resident_id_check};
        let full_width = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '0'..='9' => char::from_u32(c as u32 - u32::from(b'0') + 0xFF10).unwrap(),
                    'X' => '\u{FF38}',
                    other => other,
                })
                .collect()
        };
        let grouped = |s: &str, sep: &str| {
            let c: Vec<char> = s.chars().collect();
            if c.len() == 18 {
                format!(
                    "{}{sep}{}{sep}{}",
                    c[..6].iter().collect::<String>(),
                    c[6..14].iter().collect::<String>(),
                    c[14..].iter().collect::<String>()
                )
            } else {
                format!(
                    "{}{sep}{}{sep}{}",
                    c[..6].iter().collect::<String>(),
                    c[6..12].iter().collect::<String>(),
                    c[12..].iter().collect::<String>()
                )
            }
        };
        let mut rng = fastrand::Rng::with_seed(0x1d);
        let mask = MaskPolicy::birth_date();
        for _ in 0..500 {
            // A valid number: a Hubei division, a real birth date, a sequence.
            let division = ["420502", "420503", "110105", "440524"][rng.usize(..4)];
            let (y, m, d) = (rng.u32(1930..2005), rng.u32(1..13), rng.u32(1..29));
            let seq = rng.u32(0..1000);
            let full =
                with_resident_id_check(&format!("{division}{y:04}{m:02}{d:02}{seq:03}")).unwrap();
            let first_generation = format!("{division}{:02}{m:02}{d:02}{seq:03}", y % 100);
            let base = if y < 2000 && rng.bool() {
                first_generation
            } else {
                full.clone()
            };
            let normal = check_resident_id(&base).normalized;
            let mut form = match rng.usize(..5) {
                0 => base.clone(),
                1 => full_width(&base),
                2 => grouped(&base, " "),
                3 => grouped(&base, "-"),
                _ => grouped(&full_width(&base), "\u{3000}"),
            };
            if rng.bool() {
                form = form.replace('X', "x");
            }
            let text =
                format!("隐患描述：负责人身份证{form}，电话13800000000，编号20261207000001。");
            let found = full_ids(&text);
            assert_eq!(found, vec![normal.clone()], "{text}");
            let scrubbed = scrub_text(&text, &mask);
            assert!(full_ids(&scrubbed).is_empty(), "{scrubbed}");
            assert!(scrubbed.contains(&mask.apply(&normal)), "{scrubbed}");
            assert!(
                scrubbed.contains("13800000000") && scrubbed.contains("20261207000001"),
                "{scrubbed}"
            );
        }
        // Not an ID number: a longer run of digits, a wrong check character.
        assert!(full_ids("order 1101051949123100201 and 110105194912310021").is_empty());
    }
}
