//! Date-time parsing for mappings: several formats per field, local time in
//! a source time zone (Asia/Shanghai by default), result in UTC epoch
//! milliseconds.
//!
//! Formats are written the way the vendors' documents write them
//! (`yyyy-MM-dd HH:mm:ss`, `yyyy年MM月dd日`, `yyyyMMdd`) and compiled once
//! into a token list. A local time that does not exist (the spring-forward
//! gap of Shanghai's 1986-1991 daylight saving time) or is ambiguous (the
//! autumn overlap) is rejected with a reason; it is never shifted silently.

use chrono::{LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    Year4,
    Month2,
    Month1,
    Day2,
    Day1,
    Hour2,
    Hour1,
    Minute2,
    Second2,
    Millis3,
    Micros6,
    Literal(String),
}

/// One compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    Pattern {
        text: String,
        tokens: Vec<Token>,
    },
    EpochMillis,
    EpochSeconds,
    /// RFC 3339 / ISO 8601 with an offset (`2026-11-01T08:00:00+08:00`).
    Rfc3339,
}

impl Format {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        match text {
            "epoch_millis" => return Ok(Format::EpochMillis),
            "epoch_seconds" => return Ok(Format::EpochSeconds),
            "rfc3339" | "iso8601" => return Ok(Format::Rfc3339),
            _ => {}
        }
        let mut tokens = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let mut literal = String::new();
        let flush = |literal: &mut String, tokens: &mut Vec<Token>| {
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(literal)));
            }
        };
        while i < chars.len() {
            let c = chars[i];
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            let token = match (c, run) {
                ('y', 4) => Some(Token::Year4),
                ('M', 2) => Some(Token::Month2),
                ('M', 1) => Some(Token::Month1),
                ('d', 2) => Some(Token::Day2),
                ('d', 1) => Some(Token::Day1),
                ('H', 2) => Some(Token::Hour2),
                ('H', 1) => Some(Token::Hour1),
                ('m', 2) => Some(Token::Minute2),
                ('s', 2) => Some(Token::Second2),
                ('S', 3) => Some(Token::Millis3),
                ('S', 6) => Some(Token::Micros6),
                ('\'', _) => {
                    // Quoted literal: 'T'
                    let end = chars[i + 1..]
                        .iter()
                        .position(|&x| x == '\'')
                        .ok_or_else(|| format!("unclosed quote in format `{text}`"))?;
                    literal.extend(&chars[i + 1..i + 1 + end]);
                    i += end + 2;
                    continue;
                }
                (c, _) if c.is_ascii_alphabetic() => {
                    return Err(format!(
                        "format `{text}`: `{}` is not a supported field (use yyyy MM M dd d HH H mm ss SSS SSSSSS)",
                        chars[i..i + run].iter().collect::<String>()
                    ));
                }
                _ => None,
            };
            match token {
                Some(t) => {
                    flush(&mut literal, &mut tokens);
                    tokens.push(t);
                }
                None => literal.extend(&chars[i..i + run]),
            }
            i += run;
        }
        flush(&mut literal, &mut tokens);
        let has = |t: &Token| tokens.contains(t);
        if !has(&Token::Year4)
            || !(has(&Token::Month2) || has(&Token::Month1))
            || !(has(&Token::Day2) || has(&Token::Day1))
        {
            return Err(format!(
                "format `{text}` needs a year (yyyy), month (MM) and day (dd)"
            ));
        }
        Ok(Format::Pattern {
            text: text.to_owned(),
            tokens,
        })
    }

    fn describe(&self) -> &str {
        match self {
            Format::Pattern { text, .. } => text,
            Format::EpochMillis => "epoch_millis",
            Format::EpochSeconds => "epoch_seconds",
            Format::Rfc3339 => "rfc3339",
        }
    }
}

/// Why a value is not a usable time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeError {
    NoFormat,
    Nonexistent(String),
    Ambiguous(String),
}

/// The formats of one field, tried in order, and its source zone.
#[derive(Debug, Clone)]
pub(crate) struct DateTimeRule {
    pub formats: Vec<Format>,
    pub zone: Tz,
    /// Date-only values mean 24:00 of that day.
    pub end_of_day: bool,
}

impl DateTimeRule {
    /// Parses `text` to UTC epoch milliseconds.
    pub(super) fn parse_text(&self, text: &str) -> Result<i64, String> {
        let mut failure = None;
        for format in &self.formats {
            match self.parse_with(format, text) {
                Ok(ms) => return Ok(ms),
                Err(TimeError::NoFormat) => {}
                Err(TimeError::Nonexistent(t)) => {
                    failure = Some(format!(
                        "local time {t} does not exist in {} (daylight-saving gap)",
                        self.zone
                    ))
                }
                Err(TimeError::Ambiguous(t)) => {
                    failure = Some(format!(
                        "local time {t} is ambiguous in {} (daylight-saving overlap)",
                        self.zone
                    ))
                }
            }
        }
        Err(failure.unwrap_or_else(|| {
            let tried: Vec<&str> = self.formats.iter().map(Format::describe).collect();
            format!(
                "`{text}` matches none of the formats [{}]",
                tried.join(", ")
            )
        }))
    }

    /// An integer read from JSON: epoch milliseconds or seconds when a
    /// format says so, else a pattern applied to its digits (`20261101`).
    pub(super) fn parse_int(&self, value: i64) -> Result<i64, String> {
        for format in &self.formats {
            match format {
                Format::EpochMillis => return Ok(value),
                Format::EpochSeconds => {
                    return value
                        .checked_mul(1000)
                        .ok_or_else(|| format!("{value} seconds is out of range"));
                }
                _ => {}
            }
        }
        self.parse_text(&value.to_string())
    }

    fn parse_with(&self, format: &Format, text: &str) -> Result<i64, TimeError> {
        match format {
            Format::EpochMillis => text.parse::<i64>().map_err(|_| TimeError::NoFormat),
            Format::EpochSeconds => text
                .parse::<i64>()
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .ok_or(TimeError::NoFormat),
            Format::Rfc3339 => chrono::DateTime::parse_from_rfc3339(text)
                .map(|d| d.timestamp_millis())
                .map_err(|_| TimeError::NoFormat),
            Format::Pattern { tokens, .. } => {
                let mut local = parse_tokens(tokens, text).ok_or(TimeError::NoFormat)?;
                let date_only = !tokens
                    .iter()
                    .any(|t| matches!(t, Token::Hour1 | Token::Hour2));
                if self.end_of_day && date_only {
                    local += chrono::Duration::days(1);
                }
                match self.zone.from_local_datetime(&local) {
                    LocalResult::Single(t) => Ok(t.timestamp_millis()),
                    LocalResult::None => Err(TimeError::Nonexistent(local.to_string())),
                    LocalResult::Ambiguous(_, _) => Err(TimeError::Ambiguous(local.to_string())),
                }
            }
        }
    }
}

fn parse_tokens(tokens: &[Token], text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    let mut pos = 0;
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut ms) =
        (0i32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
    let digits = |pos: &mut usize, min: usize, max: usize| -> Option<u32> {
        let start = *pos;
        let mut v = 0u32;
        while *pos < b.len() && *pos - start < max && b[*pos].is_ascii_digit() {
            v = v * 10 + u32::from(b[*pos] - b'0');
            *pos += 1;
        }
        (*pos - start >= min).then_some(v)
    };
    for t in tokens {
        match t {
            Token::Year4 => y = digits(&mut pos, 4, 4)? as i32,
            Token::Month2 => mo = digits(&mut pos, 2, 2)?,
            Token::Month1 => mo = digits(&mut pos, 1, 2)?,
            Token::Day2 => d = digits(&mut pos, 2, 2)?,
            Token::Day1 => d = digits(&mut pos, 1, 2)?,
            Token::Hour2 => h = digits(&mut pos, 2, 2)?,
            Token::Hour1 => h = digits(&mut pos, 1, 2)?,
            Token::Minute2 => mi = digits(&mut pos, 2, 2)?,
            Token::Second2 => s = digits(&mut pos, 2, 2)?,
            Token::Millis3 => ms = digits(&mut pos, 3, 3)?,
            Token::Micros6 => ms = digits(&mut pos, 6, 6)? / 1000,
            Token::Literal(l) => {
                if !text[pos..].starts_with(l.as_str()) {
                    return None;
                }
                pos += l.len();
            }
        }
    }
    if pos != b.len() {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(y, mo, d)?;
    let time = NaiveTime::from_hms_milli_opt(h, mi, s, ms)?;
    Some(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(formats: &[&str]) -> DateTimeRule {
        DateTimeRule {
            formats: formats.iter().map(|f| Format::parse(f).unwrap()).collect(),
            zone: chrono_tz::Asia::Shanghai,
            end_of_day: false,
        }
    }

    #[test]
    fn shanghai_local_time_becomes_utc_millis() {
        let r = rule(&["yyyy-MM-dd HH:mm:ss"]);
        // 2026-11-01 08:00:00 +08:00 = 2026-11-01T00:00:00Z
        assert_eq!(r.parse_text("2026-11-01 08:00:00"), Ok(1_793_491_200_000));
    }

    #[test]
    fn several_formats_are_tried_in_order() {
        let r = rule(&[
            "yyyy-MM-dd HH:mm:ss",
            "yyyy年MM月dd日",
            "yyyyMMdd",
            "epoch_millis",
        ]);
        // Midnight local = 16:00 UTC the day before.
        assert_eq!(r.parse_text("2026年11月01日"), Ok(1_793_462_400_000));
        assert_eq!(r.parse_text("20261101"), Ok(1_793_462_400_000));
        assert_eq!(r.parse_text("1793462400000"), Ok(1_793_462_400_000));
        assert_eq!(r.parse_int(1_793_462_400_000), Ok(1_793_462_400_000));
        let err = r.parse_text("2026/11/01").unwrap_err();
        assert!(err.contains("matches none"), "{err}");
        assert!(r.parse_text("2026-02-30 08:00:00").is_err());
    }

    #[test]
    fn daylight_saving_gap_and_overlap_are_rejected() {
        let r = rule(&["yyyy-MM-dd HH:mm:ss"]);
        // 1988-04-17 02:00 local jumped to 03:00 (PRC rule: April, Sunday >= 11).
        let gap = r.parse_text("1988-04-17 02:30:00").unwrap_err();
        assert!(gap.contains("does not exist"), "{gap}");
        // 1988-09-11 02:00 local fell back to 01:00.
        let overlap = r.parse_text("1988-09-11 01:30:00").unwrap_err();
        assert!(overlap.contains("ambiguous"), "{overlap}");
        // The hour before the gap is fine.
        assert!(r.parse_text("1988-04-17 01:30:00").is_ok());
        assert!(r.parse_text("1988-04-17 03:00:00").is_ok());
    }

    #[test]
    fn a_date_deadline_ends_at_midnight_after_it() {
        let mut r = rule(&["yyyy-MM-dd", "yyyy-MM-dd HH:mm:ss"]);
        r.end_of_day = true;
        // 2026-11-20 as a deadline: 2026-11-21 00:00 +08:00.
        assert_eq!(
            r.parse_text("2026-11-20"),
            r.parse_text("2026-11-21 00:00:00")
        );
        assert_eq!(r.parse_text("2026-11-20 10:00:00"), Ok(1_795_140_000_000));
    }

    #[test]
    fn bad_format_text_is_a_load_error() {
        assert!(Format::parse("yyyy-MM-dd hh:mm").is_err());
        assert!(Format::parse("HH:mm").is_err());
        assert!(Format::parse("yyyy-MM-dd'T'HH:mm:ss").is_ok());
        assert!(Format::parse("yyyy-MM-dd HH:mm:ss.SSSSSS").is_ok());
    }
}
