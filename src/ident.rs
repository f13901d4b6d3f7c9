//! Identifier checks: the Unified Social Credit Code (统一社会信用代码,
//! GB 32100-2015) and the resident identity number (居民身份证号码,
//! GB 11643-1999), and masking of identity numbers for publication.
//!
//! Both checks run on the normalised form (half-width, no spaces, upper
//! case) and report which rule failed, so a desk officer can see whether a
//! code was mistyped or merely written in full-width characters.

use crate::text::normalize_identifier;
use chrono::Datelike;
use std::fmt;

/// Which identifier a value claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// Unified Social Credit Code.
    Uscc,
    /// Resident identity number.
    ResidentId,
    /// A city-management component's id (部件标识码, GB/T 30428.2-2013):
    /// 16 digits, a county of GB/T 2260 (6), the class (2) and subclass
    /// (2), a serial number (6).
    ComponentId,
}

impl IdKind {
    pub fn label(self) -> &'static str {
        match self {
            IdKind::Uscc => "Unified Social Credit Code",
            IdKind::ResidentId => "resident ID number",
            IdKind::ComponentId => "component id (部件标识码)",
        }
    }

    pub fn check(self, raw: &str) -> Checked {
        match self {
            IdKind::Uscc => check_uscc(raw),
            IdKind::ResidentId => check_resident_id(raw),
            IdKind::ComponentId => check_component_id(raw),
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
    /// A birth date in the future, or before 1850.
    BirthDateOutOfRange(String),
    CheckCharacter {
        position: usize,
        expected: char,
        found: char,
    },
    /// Character 1 of a credit code names no registration authority.
    Authority(char),
    /// Character 2 is not a type that authority registers.
    OrgType {
        authority: char,
        kind: char,
        allowed: &'static str,
    },
    /// The administrative-division code (credit code characters 3-8, ID
    /// number digits 1-6) names no province.
    Division(String),
    /// A serial number of zeros (a component id's last 6 digits).
    ZeroSerial,
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
            Invalid::BirthDateOutOfRange(d) => {
                write!(f, "birth date {d} is in the future or before 1850")
            }
            Invalid::Authority(c) => write!(
                f,
                "character 1 `{c}` is no registration authority of GB 32100 (1-9, A, N, Y)"
            ),
            Invalid::OrgType {
                authority,
                kind,
                allowed,
            } => write!(
                f,
                "character 2 `{kind}` is not a type authority `{authority}` registers ({allowed})"
            ),
            Invalid::Division(d) => write!(
                f,
                "administrative division `{d}` names no province (GB/T 2260)"
            ),
            Invalid::ZeroSerial => write!(f, "the serial number is 000000"),
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
    /// A 15-digit first-generation ID number (一代身份证), normalised to 18.
    pub first_generation: bool,
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
        first_generation: false,
    }
}

/// The registration authorities of GB 32100-2015 (table 1, 登记管理部门代码)
/// and the organisation types each registers (机构类别代码).
const AUTHORITIES: &[(char, &str)] = &[
    ('1', "1239"),   // 机构编制: 机关, 事业单位, 编办直接管理的群众团体, 其他
    ('2', "19"),     // 外交
    ('3', "123459"), // 司法行政: 律师执业机构, 公证处, 基层法律服务所, 司法鉴定机构, 仲裁委员会, 其他
    ('4', "19"),     // 文化
    ('5', "1239"),   // 民政: 社会团体, 民办非企业单位, 基金会, 其他
    ('6', "129"),    // 旅游
    ('7', "129"),    // 宗教
    ('8', "19"),     // 工会
    ('9', "123"),    // 工商: 企业, 个体工商户, 农民专业合作社
    ('A', "19"),     // 中央军委改革和编制办公室
    ('N', "1239"),   // 农业: 组级, 村级, 乡镇级集体经济组织, 其他
    ('Y', "1"),      // 其他
];

/// Province-level codes of GB/T 2260 (and 83, 台湾 residence permits).
const PROVINCES: &[&str] = &[
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82", "83",
];

/// A division code's province is real (`100000`, national level, is
/// allowed for credit codes).
fn division_ok(division: &str, national_allowed: bool) -> bool {
    (national_allowed && division == "100000") || PROVINCES.contains(&&division[..2])
}

/// A component id (GB/T 30428.2-2013): 16 digits; 1-6 a county whose
/// province is in GB/T 2260 (`duijie check` holds the full division table
/// for configuration; a record is only checked to its province); 7-10 the
/// class and subclass (compared with the record's category by the mapping's
/// `carries`); 11-16 a serial number, not all zeros.
fn check_component_id(raw: &str) -> Checked {
    let id = normalize_identifier(raw);
    let invalid = (|| {
        let n = id.chars().count();
        if n != 16 {
            return Some(Invalid::Length {
                expected: 16,
                found: n,
            });
        }
        if let Some((i, c)) = id.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
            return Some(Invalid::BadCharacter {
                position: i + 1,
                character: c,
            });
        }
        if !division_ok(&id[..6], false) {
            return Some(Invalid::Division(id[..6].to_owned()));
        }
        (&id[10..] == "000000").then_some(Invalid::ZeroSerial)
    })();
    Checked {
        normalized: id.into_owned(),
        invalid,
        first_generation: false,
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
    // Characters 1-2: a registration authority and a type it registers
    // (GB 32100-2015 §4.1, table 1); 3-8: a division of GB/T 2260.
    let (authority, kind) = (chars[0], chars[1]);
    match AUTHORITIES.iter().find(|(a, _)| *a == authority) {
        None => return Some(Invalid::Authority(authority)),
        Some((_, allowed)) if !allowed.contains(kind) => {
            return Some(Invalid::OrgType {
                authority,
                kind,
                allowed,
            });
        }
        Some(_) => {}
    }
    if !division_ok(&code[2..8], true) {
        return Some(Invalid::Division(code[2..8].to_owned()));
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

/// The ISO 7064 MOD 11-2 check character of 17 digits.
fn resident_id_check(first17: &[u8]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    ID_CHECK[(sum % 11) as usize] as char
}

/// Completes 17 digits with the check character (for simulators,
/// fixtures and first-generation numbers). `None` unless 17 digits.
pub fn with_resident_id_check(first17: &str) -> Option<String> {
    (first17.len() == 17 && first17.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{first17}{}", resident_id_check(first17.as_bytes())))
}

/// Checks a resident identity number (GB 11643-1999): 18 characters,
/// a province in the region code, a real birth date neither in the future
/// nor before 1850, and the ISO 7064 MOD 11-2 check character. A 15-digit
/// first-generation number (GB 11643-1989), as old records carry, is
/// normalised to 18 — `19` before its two-digit birth year and the check
/// character computed — and flagged `first_generation`.
pub fn check_resident_id(raw: &str) -> Checked {
    let mut normalized = normalize_identifier(raw).into_owned();
    let first_generation = normalized.len() == 15 && normalized.bytes().all(|b| b.is_ascii_digit());
    if first_generation {
        normalized = with_resident_id_check(&format!("{}19{}", &normalized[..6], &normalized[6..]))
            .expect("17 digits");
    }
    let invalid = resident_id_problem(&normalized);
    Checked {
        normalized,
        invalid,
        first_generation,
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
    if !division_ok(&id[..6], false) {
        return Some(Invalid::Division(id[..6].to_owned()));
    }
    let birth = &id[6..14];
    let Ok(date) = chrono::NaiveDate::parse_from_str(birth, "%Y%m%d") else {
        return Some(Invalid::BadBirthDate(birth.to_owned()));
    };
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    if date > today || date.year() < 1850 {
        return Some(Invalid::BirthDateOutOfRange(birth.to_owned()));
    }
    let expected = resident_id_check(&id.as_bytes()[..17]);
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
    fn authority_type_and_division_of_a_credit_code_are_checked() {
        // Completed with both check characters, so only the rule under test
        // can fail.
        let code = |first16: &str| check_uscc(&with_uscc_checks(first16).unwrap());
        assert!(code("9142050077604965").is_valid(), "工商 9, enterprise 1");
        assert!(code("5342050077604965").is_valid(), "民政 5, 基金会 3");
        assert!(code("5942050077604965").is_valid(), "民政 5, 其他 9");
        assert!(code("Y142050077604965").is_valid(), "其他 Y, 1");
        assert!(code("1110000077604965").is_valid(), "national level 100000");
        assert_eq!(
            code("0142050077604965").invalid,
            Some(Invalid::Authority('0'))
        );
        assert!(matches!(
            code("9442050077604965").invalid,
            Some(Invalid::OrgType {
                authority: '9',
                kind: '4',
                ..
            })
        ));
        assert!(matches!(
            code("Y942050077604965").invalid,
            Some(Invalid::OrgType {
                authority: 'Y',
                kind: '9',
                ..
            })
        ));
        assert_eq!(
            code("9100000077604965").invalid,
            Some(Invalid::Division("000000".into()))
        );
        assert_eq!(
            code("9199050077604965").invalid,
            Some(Invalid::Division("990500".into()))
        );
    }

    #[test]
    fn region_birth_date_range_and_first_generation_numbers() {
        let with_check = |first17: &str| with_resident_id_check(first17).unwrap();
        assert_eq!(
            check_resident_id(&with_check("00000019900101001")).invalid,
            Some(Invalid::Division("000000".into()))
        );
        assert_eq!(
            check_resident_id(&with_check("42050220990101001")).invalid,
            Some(Invalid::BirthDateOutOfRange("20990101".into()))
        );
        assert_eq!(
            check_resident_id(&with_check("42050218000101001")).invalid,
            Some(Invalid::BirthDateOutOfRange("18000101".into()))
        );
        // The domain brief's 1880 example stays valid.
        assert!(check_resident_id("440524188001010014").is_valid());
        // 15 digits: 19 inserted, the check character computed, flagged.
        let old = check_resident_id("110105491231002");
        assert!(old.is_valid(), "{:?}", old.invalid);
        assert!(old.first_generation);
        assert_eq!(old.normalized, "11010519491231002X");
        assert!(!check_resident_id("11010519491231002X").first_generation);
        assert!(
            check_resident_id("110105491331002").invalid.is_some(),
            "month 13"
        );
    }

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
        // The placeholder for parties without a code names no authority.
        assert_eq!(
            check_uscc("00000000000000000X").invalid,
            Some(Invalid::Authority('0'))
        );
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
