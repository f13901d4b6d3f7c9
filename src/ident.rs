//! Identifier checks: the Unified Social Credit Code (统一社会信用代码,
//! GB 32100-2015) and the resident identity number (居民身份证号码,
//! GB 11643-1999), and masking of identity numbers for publication.
//!
//! Both checks run on the normalised form (half-width, no spaces, upper
//! case) and report which rule failed, so a desk officer can see whether a
//! code was mistyped or merely written in full-width characters.

use crate::text::normalize_identifier;
use std::fmt;

/// Which identifier a value claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// Unified Social Credit Code.
    Uscc,
    /// Resident identity number.
    ResidentId,
}

impl IdKind {
    pub fn label(self) -> &'static str {
        match self {
            IdKind::Uscc => "Unified Social Credit Code",
            IdKind::ResidentId => "resident ID number",
        }
    }

    pub fn check(self, raw: &str) -> Checked {
        match self {
            IdKind::Uscc => check_uscc(raw),
            IdKind::ResidentId => check_resident_id(raw),
        }
    }
}

/// Why an identifier is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    Length {
        expected: usize,
        found: usize,
    },
    BadCharacter {
        position: usize,
        character: char,
    },
    BadBirthDate(String),
    CheckCharacter {
        position: usize,
        expected: char,
        found: char,
    },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Length { expected, found } => {
                write!(f, "length is {found}, expected {expected}")
            }
            Invalid::BadCharacter {
                position,
                character,
            } => write!(f, "character {position} `{character}` is not allowed there"),
            Invalid::BadBirthDate(d) => write!(f, "birth date {d} is not a real date"),
            Invalid::CheckCharacter {
                position,
                expected,
                found,
            } => write!(
                f,
                "check character {position} is `{found}`, expected `{expected}`"
            ),
        }
    }
}

/// The outcome of a check: the normalised form, and why it fails if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub normalized: String,
    pub invalid: Option<Invalid>,
}

impl Checked {
    pub fn is_valid(&self) -> bool {
        self.invalid.is_none()
    }
}

const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Checks a Unified Social Credit Code: 18 characters of the 31-character
/// alphabet, the organisation-code check (character 17, GB 11714 over
/// characters 9-16) and the code's own check (character 18).
pub fn check_uscc(raw: &str) -> Checked {
    let normalized = normalize_identifier(raw).into_owned();
    let invalid = uscc_problem(&normalized);
    Checked {
        normalized,
        invalid,
    }
}

fn uscc_problem(code: &str) -> Option<Invalid> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Some(Invalid::Length {
            expected: 18,
            found: chars.len(),
        });
    }
    let bytes = code.as_bytes();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii() || uscc_value(c as u8).is_none() {
            return Some(Invalid::BadCharacter {
                position: i + 1,
                character: c,
            });
        }
    }
    // Character 17: GB 11714 check over characters 9-16 (digits and A-Z as
    // 10-35; the USCC alphabet already excludes I, O, S, V, Z).
    let org_sum: u32 = bytes[8..16]
        .iter()
        .zip(ORG_WEIGHTS)
        .map(|(&b, w)| (b as char).to_digit(36).unwrap_or(0) * w)
        .sum();
    let org_expected = match 11 - org_sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10).unwrap_or('?'),
    };
    if bytes[16] as char != org_expected {
        return Some(Invalid::CheckCharacter {
            position: 17,
            expected: org_expected,
            found: bytes[16] as char,
        });
    }
    let sum: u32 = bytes[..17]
        .iter()
        .zip(USCC_WEIGHTS)
        .map(|(&b, w)| uscc_value(b).unwrap_or(0) * w)
        .sum();
    let expected = USCC_ALPHABET[((31 - sum % 31) % 31) as usize] as char;
    if bytes[17] as char != expected {
        return Some(Invalid::CheckCharacter {
            position: 18,
            expected,
            found: bytes[17] as char,
        });
    }
    None
}

/// Completes the first 16 characters of a credit code with both check
/// characters (for simulators and fixtures). `None` when a character is
/// outside the code's alphabet.
pub fn with_uscc_checks(first16: &str) -> Option<String> {
    let bytes = first16.as_bytes();
    if bytes.len() != 16 || bytes.iter().any(|&b| uscc_value(b).is_none()) {
        return None;
    }
    let org_sum: u32 = bytes[8..16]
        .iter()
        .zip(ORG_WEIGHTS)
        .map(|(&b, w)| (b as char).to_digit(36).unwrap_or(0) * w)
        .sum();
    let org = match 11 - org_sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10)?,
    };
    let mut code = format!("{first16}{org}");
    let sum: u32 = code
        .bytes()
        .zip(USCC_WEIGHTS)
        .map(|(b, w)| uscc_value(b).unwrap_or(0) * w)
        .sum();
    code.push(USCC_ALPHABET[((31 - sum % 31) % 31) as usize] as char);
    Some(code)
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// Checks an 18-character resident identity number: digits, a real birth
/// date, and the ISO 7064 MOD 11-2 check character.
pub fn check_resident_id(raw: &str) -> Checked {
    let normalized = normalize_identifier(raw).into_owned();
    let invalid = resident_id_problem(&normalized);
    Checked {
        normalized,
        invalid,
    }
}

fn resident_id_problem(id: &str) -> Option<Invalid> {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() != 18 {
        return Some(Invalid::Length {
            expected: 18,
            found: chars.len(),
        });
    }
    for (i, &c) in chars.iter().enumerate() {
        let ok = c.is_ascii_digit() || (i == 17 && c == 'X');
        if !ok {
            return Some(Invalid::BadCharacter {
                position: i + 1,
                character: c,
            });
        }
    }
    let birth = &id[6..14];
    if chrono::NaiveDate::parse_from_str(birth, "%Y%m%d").is_err() {
        return Some(Invalid::BadBirthDate(birth.to_owned()));
    }
    let sum: u32 = id.as_bytes()[..17]
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    let expected = ID_CHECK[(sum % 11) as usize] as char;
    let found = chars[17];
    if found != expected {
        return Some(Invalid::CheckCharacter {
            position: 18,
            expected,
            found,
        });
    }
    None
}

/// How much of an identity number a destination may see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskPolicy {
    /// Characters kept at the start (`110105` keeps the address code).
    pub keep_start: usize,
    /// Characters kept at the end (`002X` keeps sequence and check).
    pub keep_end: usize,
    /// The masking character.
    #[serde(default = "default_mask_char")]
    pub with: char,
}

fn default_mask_char() -> char {
    '*'
}

impl MaskPolicy {
    /// Masks the birth date of an 18-character resident ID:
    /// `110105********002X`.
    pub fn birth_date() -> Self {
        Self {
            keep_start: 6,
            keep_end: 4,
            with: '*',
        }
    }

    /// Masks `value`. A value too short to keep both ends is masked whole,
    /// never shown.
    pub fn apply(&self, value: &str) -> String {
        let chars: Vec<char> = value.chars().collect();
        if chars.len() <= self.keep_start + self.keep_end {
            return std::iter::repeat_n(self.with, chars.len()).collect();
        }
        let mut out = String::with_capacity(value.len());
        out.extend(&chars[..self.keep_start]);
        out.extend(std::iter::repeat_n(
            self.with,
            chars.len() - self.keep_start - self.keep_end,
        ));
        out.extend(&chars[chars.len() - self.keep_end..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_credit_codes_from_the_standard_and_the_field() {
        for code in [
            "91350100M000100Y43",
            "91350200776049653A",
            "91440101MA5CJQ4N59",
            "11230500001755309F",
        ] {
            assert!(
                check_uscc(code).is_valid(),
                "{code}: {:?}",
                check_uscc(code)
            );
        }
    }

    #[test]
    fn fullwidth_lowercase_and_spaces_are_normalised_first() {
        let c = check_uscc(" ９１３５０１００ｍ０００１００ｙ４３\u{3000}");
        assert!(c.is_valid());
        assert_eq!(c.normalized, "91350100M000100Y43");
    }

    #[test]
    fn each_check_character_is_reported() {
        assert_eq!(
            check_uscc("91350100M000100Y44").invalid,
            Some(Invalid::CheckCharacter {
                position: 18,
                expected: '3',
                found: '4'
            })
        );
        // Break character 17 (organisation-code check).
        assert!(matches!(
            check_uscc("91350100M000100X43").invalid,
            Some(Invalid::CheckCharacter { position: 17, .. })
        ));
        assert!(matches!(
            check_uscc("00000000000000000X").invalid,
            Some(Invalid::CheckCharacter { .. })
        ));
        assert!(matches!(
            check_uscc("91350100I000100Y43").invalid,
            Some(Invalid::BadCharacter {
                position: 9,
                character: 'I'
            })
        ));
        assert!(matches!(
            check_uscc("9135").invalid,
            Some(Invalid::Length { .. })
        ));
    }

    #[test]
    fn completed_codes_check() {
        let code = with_uscc_checks("9142050212345678").unwrap();
        assert!(check_uscc(&code).is_valid(), "{code}");
        assert_eq!(
            with_uscc_checks("91350100M000100Y").unwrap(),
            "91350100M000100Y43"
        );
    }

    #[test]
    fn resident_ids() {
        assert!(check_resident_id("11010519491231002X").is_valid());
        assert!(check_resident_id("11010519491231002x").is_valid());
        assert!(check_resident_id("440524188001010014").is_valid());
        assert_eq!(
            check_resident_id("110105194912310021").invalid,
            Some(Invalid::CheckCharacter {
                position: 18,
                expected: 'X',
                found: '1'
            })
        );
        assert!(matches!(
            check_resident_id("110105194902300021").invalid,
            Some(Invalid::BadBirthDate(_))
        ));
    }

    #[test]
    fn masking_hides_the_birth_date() {
        assert_eq!(
            MaskPolicy::birth_date().apply("11010519491231002X"),
            "110105********002X"
        );
        assert_eq!(MaskPolicy::birth_date().apply("1234"), "****");
    }
}
