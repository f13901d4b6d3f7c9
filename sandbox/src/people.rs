//! Realistic Chinese data for the simulators: names, companies, places,
//! valid (and sometimes deliberately invalid) credit codes and ID numbers.

use duijie::ident::with_uscc_checks;

pub(crate) const SURNAMES: &[&str] = &[
    "张", "王", "李", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "胡", "朱", "高",
];
pub(crate) const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "洋", "静", "敏", "磊", "军", "勇", "艳", "杰", "涛", "明", "超", "霞", "平",
    "刚", "桂英",
];
pub(crate) const COMPANIES: &[&str] = &[
    "宜昌华强建材有限公司",
    "湖北三峡渣土运输有限公司",
    "宜昌新城广告传媒有限公司",
    "白洋港物流有限公司",
    "宜昌东山化工有限责任公司",
    "湖北峡州精细化工股份有限公司",
    "宜昌高新区宏达机械制造有限公司",
    "宜昌市点军区安泰燃气有限公司",
    "宜昌桃花岭食品有限公司",
    "湖北长江船舶修造有限公司",
];
pub(crate) const STREETS: &[(&str, &str)] = &[
    ("东山街道", "桃花岭社区"),
    ("东山街道", "东湖社区"),
    ("白洋镇", "白洋社区"),
    ("东苑街道", "峡州社区"),
    ("东苑街道", "发展社区"),
];
pub(crate) const ROADS: &[&str] = &[
    "发展大道",
    "东湖大道",
    "峡州路",
    "港窑路",
    "城东大道",
    "兰台路",
    "沿江大道",
];

const USCC_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const AREAS: &[&str] = &["420502", "420503", "420506", "420500"];

pub(crate) fn person(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}{}",
        SURNAMES[rng.usize(..SURNAMES.len())],
        GIVEN[rng.usize(..GIVEN.len())]
    )
}

pub(crate) fn phone(rng: &mut fastrand::Rng) -> String {
    format!(
        "1{}{:08}",
        ["38", "39", "58", "86", "87"][rng.usize(..5)],
        rng.u32(..100_000_000)
    )
}

/// A company of the area and its one credit code: every system that names
/// it writes the same code, so the entity library sees one entity.
pub(crate) fn company(rng: &mut fastrand::Rng) -> (&'static str, String) {
    let i = rng.usize(..COMPANIES.len());
    (COMPANIES[i], company_code(i))
}

/// The credit code of `COMPANIES[i]`.
pub(crate) fn company_code(i: usize) -> String {
    credit_code(&mut fastrand::Rng::with_seed(0x4205_0000 + i as u64), "91")
}

/// A valid Unified Social Credit Code of organisation type `kind`
/// (`91` enterprise, `92` individual business, `11` government organ).
pub(crate) fn credit_code(rng: &mut fastrand::Rng, kind: &str) -> String {
    let body: String = (0..8)
        .map(|_| USCC_ALPHABET[rng.usize(..USCC_ALPHABET.len())] as char)
        .collect();
    let area = AREAS[rng.usize(..AREAS.len())];
    with_uscc_checks(&format!("{kind}{area}{body}")).expect("alphabet characters only")
}

/// A valid 18-character resident ID number.
pub(crate) fn resident_id(rng: &mut fastrand::Rng) -> String {
    let first17 = format!(
        "{}{:04}{:02}{:02}{:03}",
        AREAS[rng.usize(..AREAS.len())],
        1955 + rng.u32(..50),
        1 + rng.u32(..12),
        1 + rng.u32(..28),
        rng.u32(1..999)
    );
    duijie::ident::with_resident_id_check(&first17).expect("17 digits")
}

/// Writes the value with full-width digits and letters, as some input
/// methods leave it.
pub(crate) fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// Local time in Asia/Shanghai, as the vendors write it.
pub(crate) fn local(t: chrono::DateTime<chrono::Utc>, with_millis: bool) -> String {
    let t = t.with_timezone(&chrono_tz::Asia::Shanghai);
    if with_millis {
        t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duijie::ident::{check_resident_id, check_uscc};

    #[test]
    fn generated_identifiers_are_valid() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..200 {
            assert!(check_uscc(&credit_code(&mut rng, "91")).is_valid());
            assert!(check_resident_id(&resident_id(&mut rng)).is_valid());
        }
        assert!(check_uscc(&fullwidth(&credit_code(&mut rng, "92"))).is_valid());
    }
}
