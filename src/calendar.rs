//! Statutory deadline clocks on the official working-day calendar.
//!
//! How periods are counted (Civil Code arts. 200-204, which the procedure
//! rules follow):
//! - a period in hours runs from the exact time;
//! - a period in days starts the day after the triggering event and ends at
//!   24:00 of its last day; when that last day is a rest day (a holiday, or
//!   a weekend that is not a make-up working day), it ends at 24:00 of the
//!   next working day;
//! - a period in working days counts only working days: weekdays that are
//!   not holidays, and make-up working weekends (调休);
//! - a period in months (or years, counted as 12 months) ends on the day of
//!   the last month that corresponds to the starting day, or on that
//!   month's last day when it has no such day (Civil Code art. 202), at
//!   24:00, rolled to the next working day like a period in days (art. 203).
//!
//! The calendar is data, one file a year (`calendar/cn-<year>.toml`). A
//! clock that would count through a year with no file says so and refuses:
//! it never treats that year's holidays as working days.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Asia::Shanghai;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error(
        "no official holiday calendar for {year}: add calendar/cn-{year}.toml from the State Council's notice before counting working days in {year}"
    )]
    MissingYear { year: i32 },
    #[error("{file}: {message}")]
    BadFile { file: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    working_weekends: Vec<NaiveDate>,
    #[serde(default)]
    off: Vec<OffRange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffRange {
    name: String,
    from: NaiveDate,
    to: NaiveDate,
}

/// One year's days off and make-up working days.
#[derive(Debug, Clone, Default)]
struct Year {
    off: BTreeMap<NaiveDate, String>,
    working_weekends: BTreeSet<NaiveDate>,
}

impl From<CalendarError> for crate::error::Error {
    fn from(e: CalendarError) -> Self {
        Self::new(
            crate::error::Domain::Config,
            crate::error::ErrorClass::Permanent,
            e,
        )
    }
}

/// The official calendar, for the years it has files for.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    years: BTreeMap<i32, Year>,
}

impl Calendar {
    /// Loads every `cn-<year>.toml` in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, CalendarError> {
        let mut calendar = Calendar::default();
        let entries = std::fs::read_dir(dir).map_err(|e| CalendarError::BadFile {
            file: dir.to_path_buf(),
            message: format!("cannot read the calendar folder: {e}"),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| CalendarError::BadFile {
                file: file.clone(),
                message: e.to_string(),
            })?;
            calendar
                .add_year(&text)
                .map_err(|message| CalendarError::BadFile { file, message })?;
        }
        Ok(calendar)
    }

    /// Adds one year from its TOML text.
    pub fn add_year(&mut self, text: &str) -> Result<(), String> {
        let f: YearFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut year = Year::default();
        for range in f.off {
            if range.from.year() != f.year && range.to.year() != f.year {
                return Err(format!("`{}` lies outside {}", range.name, f.year));
            }
            let mut d = range.from;
            while d <= range.to {
                year.off.insert(d, range.name.clone());
                d = d.succ_opt().ok_or("date overflow")?;
            }
        }
        for d in f.working_weekends {
            if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
                return Err(format!("make-up working day {d} is not a weekend"));
            }
            year.working_weekends.insert(d);
        }
        self.years.insert(f.year, year);
        Ok(())
    }

    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// Whether `date` is a working day: a weekday that is not a holiday, or a
    /// make-up working weekend.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        let year = self
            .years
            .get(&date.year())
            .ok_or(CalendarError::MissingYear { year: date.year() })?;
        if year.working_weekends.contains(&date) {
            return Ok(true);
        }
        // A holiday range may spill into the next year's first days (元旦).
        let off = year.off.contains_key(&date)
            || self
                .years
                .get(&(date.year() - 1))
                .is_some_and(|prev| prev.off.contains_key(&date));
        Ok(!off && !matches!(date.weekday(), Weekday::Sat | Weekday::Sun))
    }

    /// The holiday a date belongs to, if any.
    pub fn holiday(&self, date: NaiveDate) -> Option<&str> {
        self.years
            .get(&date.year())?
            .off
            .get(&date)
            .map(String::as_str)
    }

    /// When a period of `limit` started at `start` ends.
    pub fn due(&self, start: DateTime<Utc>, limit: Limit) -> Result<DateTime<Utc>, CalendarError> {
        let local_day = start.with_timezone(&Shanghai).date_naive();
        match limit.unit {
            Unit::Hours => Ok(start + chrono::Duration::hours(i64::from(limit.amount))),
            Unit::CalendarDays => {
                let mut last = local_day + chrono::Duration::days(i64::from(limit.amount));
                while !self.is_working_day(last)? {
                    last = last.succ_opt().expect("date in range");
                }
                Ok(end_of_day(last))
            }
            Unit::Months => {
                // checked_add_months clamps to the month's last day (art. 202).
                let mut last = local_day
                    .checked_add_months(chrono::Months::new(limit.amount))
                    .expect("date in range");
                while !self.is_working_day(last)? {
                    last = last.succ_opt().expect("date in range");
                }
                Ok(end_of_day(last))
            }
            Unit::WorkingDays => {
                let mut day = local_day;
                let mut counted = 0;
                while counted < limit.amount {
                    day = day.succ_opt().expect("date in range");
                    if self.is_working_day(day)? {
                        counted += 1;
                    }
                }
                Ok(end_of_day(day))
            }
        }
    }

    /// Working days from `from` (exclusive) to `to` (inclusive), local dates.
    pub fn working_days_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<u32, CalendarError> {
        let mut n = 0;
        let mut d = from;
        while d < to {
            d = d.succ_opt().expect("date in range");
            if self.is_working_day(d)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// 24:00 of a local date: the next day's 00:00 in Asia/Shanghai.
pub fn end_of_day(date: NaiveDate) -> DateTime<Utc> {
    let next = date
        .succ_opt()
        .expect("date in range")
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    Shanghai
        .from_local_datetime(&next)
        .single()
        .expect("Shanghai midnight is unambiguous since 1992")
        .with_timezone(&Utc)
}

/// How a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Hours,
    CalendarDays,
    WorkingDays,
    /// Calendar months (a year is 12).
    Months,
}

impl Unit {
    /// As reports name it: `calendar days`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Hours => "hours",
            Unit::CalendarDays => "calendar days",
            Unit::WorkingDays => "working days",
            Unit::Months => "months",
        }
    }

    /// As JSON reports key it: `calendar_days`.
    pub fn key(self) -> &'static str {
        match self {
            Unit::Hours => "hours",
            Unit::CalendarDays => "calendar_days",
            Unit::WorkingDays => "working_days",
            Unit::Months => "months",
        }
    }
}

/// A statutory time limit: `3 working days`, `24 hours`, `15 days`,
/// `3 years` (kept as 36 months).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub amount: u32,
    pub unit: Unit,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Hours => "hours",
            Unit::CalendarDays => "days",
            Unit::WorkingDays => "working days",
            Unit::Months => "months",
        };
        write!(f, "{} {unit}", self.amount)
    }
}

impl Limit {
    /// As bureau staff read it: `3个工作日`, `24小时`, `15日`, `36个月`.
    pub fn label(self) -> String {
        match self.unit {
            Unit::Hours => format!("{}小时", self.amount),
            Unit::CalendarDays => format!("{}日", self.amount),
            Unit::WorkingDays => format!("{}个工作日", self.amount),
            Unit::Months => format!("{}个月", self.amount),
        }
    }
}

/// A limit with the article it comes from, both stated in config:
/// `{ limit = "5 working days", basis = "…第十四条" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LegalLimit {
    pub limit: Limit,
    pub basis: String,
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (number, rest) = s.split_once(char::is_whitespace).ok_or_else(|| {
            format!("`{s}` is not a limit such as `3 working days`, `24 hours` or `15 days`")
        })?;
        let mut amount: u32 = number
            .parse()
            .map_err(|_| format!("`{number}` in `{s}` is not a whole number"))?;
        let unit = match rest.trim().to_ascii_lowercase().as_str() {
            "month" | "months" | "个月" => Unit::Months,
            "year" | "years" | "年" => {
                amount = amount
                    .checked_mul(12)
                    .ok_or_else(|| format!("`{s}` is too long"))?;
                Unit::Months
            }
            "hour" | "hours" | "小时" => Unit::Hours,
            "day" | "days" | "calendar day" | "calendar days" | "日" | "天" => Unit::CalendarDays,
            "working day" | "working days" | "workday" | "workdays" | "工作日" => {
                Unit::WorkingDays
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{s}`: use hours, days, working days, months or years"
                ));
            }
        };
        Ok(Limit { amount, unit })
    }
}

impl serde::Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A time given as RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in Asia/Shanghai.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(s.trim(), fmt) {
            return Shanghai
                .from_local_datetime(&naive)
                .single()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| format!("`{s}` does not exist or is ambiguous in Asia/Shanghai"));
        }
    }
    Err(format!(
        "`{s}` is neither RFC 3339 nor `YYYY-MM-DD HH:MM` (Asia/Shanghai)"
    ))
}

/// A UTC time as Shanghai local time, `2026-10-10 24:00` style for
/// midnights that end a day.
/// A moment as RFC 3339 in Asia/Shanghai (`2027-03-01T00:00:00+08:00`).
pub fn local_rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&Shanghai)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// The end of a local day written `YYYY-MM-DD` (its 24:00, Asia/Shanghai),
/// epoch milliseconds: a period "until" that day includes all of it.
/// The end of a sanction's term of `limit` from `start` (a listing, the
/// wait before a repair): the starting day is not counted, the term ends at
/// 24:00 (local) of the corresponding day (民法典 arts. 201, 202: of the
/// last month, or its last day where it has none). It is never rolled over
/// a rest day: art. 203 extends deadlines to act, and rolling a sanction's
/// end would lengthen it against the party. `None` for a term in working
/// days, which a sanction does not have.
pub fn term_end(start: DateTime<Utc>, limit: Limit) -> Option<DateTime<Utc>> {
    let day = start.with_timezone(&Shanghai).date_naive();
    let last = match limit.unit {
        Unit::Hours => {
            return start.checked_add_signed(chrono::Duration::hours(limit.amount.into()));
        }
        Unit::CalendarDays => day.checked_add_days(chrono::Days::new(limit.amount.into()))?,
        Unit::Months => day.checked_add_months(chrono::Months::new(limit.amount))?,
        Unit::WorkingDays => return None,
    };
    last.succ_opt()?
        .and_time(chrono::NaiveTime::MIN)
        .and_local_timezone(Shanghai)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

pub fn end_of_local_day_ms(day: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let next = d.succ_opt()?.and_time(chrono::NaiveTime::MIN);
    next.and_local_timezone(Shanghai)
        .earliest()
        .map(|t| t.timestamp_millis())
}

/// The local date (Asia/Shanghai) of an epoch-millisecond time.
pub fn local_date(ms: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&Shanghai).date_naive())
}

pub fn local_text(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&Shanghai);
    if local.time() == chrono::NaiveTime::MIN {
        let day = local.date_naive().pred_opt().expect("date in range");
        format!("{} 24:00", day.format("%Y-%m-%d"))
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    }
}

#[cfg(test)]
pub(crate) fn test_calendar() -> Calendar {
    Calendar::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("calendar")).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn due(cal: &Calendar, from: &str, limit: &str) -> String {
        local_text(cal.due(at(from), limit.parse().unwrap()).unwrap())
    }

    #[test]
    fn the_domain_brief_example() {
        // 3 working days from Wednesday 2026-09-30 10:00 end at 24:00 on the
        // make-up working Saturday 2026-10-10.
        assert_eq!(
            due(&test_calendar(), "2026-09-30 10:00", "3 working days"),
            "2026-10-10 24:00"
        );
    }

    #[test]
    fn friday_before_national_day() {
        let cal = test_calendar();
        // Received Friday 2026-09-25 (中秋 starts that day), 3 days of police review.
        assert_eq!(due(&cal, "2026-09-24 16:30", "3 days"), "2026-09-28 24:00");
        // 3 calendar days from Friday 2026-09-25 end on 09-28, a Monday.
        assert_eq!(due(&cal, "2026-09-25 09:00", "3 days"), "2026-09-28 24:00");
        // From Wednesday 09-30: the last day 10-03 is a holiday; it moves to
        // the next working day, 10-08.
        assert_eq!(due(&cal, "2026-09-30 09:00", "3 days"), "2026-10-08 24:00");
        // 3 working days from Friday 09-25 skip the weekend, the
        // make-up Sunday 09-20 is past: 09-28, 09-29, 09-30.
        assert_eq!(
            due(&cal, "2026-09-25 09:00", "3 working days"),
            "2026-09-30 24:00"
        );
    }

    #[test]
    fn deadline_on_a_make_up_saturday_stays_there() {
        let cal = test_calendar();
        // 7 calendar days from 10-03 end on Saturday 10-10, a working day.
        assert_eq!(due(&cal, "2026-10-03 12:00", "7 days"), "2026-10-10 24:00");
        // An ordinary Saturday is a rest day: 2026-10-17 moves to Monday.
        assert_eq!(due(&cal, "2026-10-14 12:00", "3 days"), "2026-10-19 24:00");
    }

    #[test]
    fn hours_run_across_midnight_from_the_exact_time() {
        let cal = test_calendar();
        assert_eq!(
            due(&cal, "2026-10-01 22:15", "24 hours"),
            "2026-10-02 22:15"
        );
        assert_eq!(
            due(&cal, "2026-12-31 23:30", "24 hours"),
            "2027-01-01 23:30"
        );
    }

    #[test]
    fn spring_festival_and_its_make_up_saturdays() {
        let cal = test_calendar();
        // Decided Friday 2026-02-13; 7 working days: 02-14 (make-up Sat),
        // then 02-15..23 off, 02-24, 25, 26, 27, 28 (make-up Sat), 03-02.
        assert_eq!(
            due(&cal, "2026-02-13 15:00", "7 working days"),
            "2026-03-02 24:00"
        );
    }

    #[test]
    fn a_year_without_a_calendar_file_is_refused_loudly() {
        let cal = test_calendar();
        let err = cal
            .due(at("2026-12-24 10:00"), "7 working days".parse().unwrap())
            .unwrap_err();
        assert_eq!(err, CalendarError::MissingYear { year: 2027 });
        assert!(err.to_string().contains("calendar/cn-2027.toml"));
        // Hours need no calendar.
        assert!(
            cal.due(at("2026-12-31 10:00"), "48 hours".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn year_boundary_with_both_years_known() {
        let mut cal = test_calendar();
        cal.add_year("year = 2027\nworking_weekends = []\n[[off]]\nname = \"元旦\"\nfrom = \"2027-01-01\"\nto = \"2027-01-03\"\n")
            .unwrap();
        // From Wednesday 2026-12-30: 12-31, 01-04, 01-05.
        assert_eq!(
            due(&cal, "2026-12-30 10:00", "3 working days"),
            "2027-01-05 24:00"
        );
    }

    #[test]
    fn limits_parse_in_english_and_chinese() {
        assert_eq!(
            "3 working days".parse::<Limit>().unwrap(),
            Limit {
                amount: 3,
                unit: Unit::WorkingDays
            }
        );
        assert_eq!(
            "24 hours".parse::<Limit>().unwrap(),
            Limit {
                amount: 24,
                unit: Unit::Hours
            }
        );
        assert_eq!(
            "15 days".parse::<Limit>().unwrap(),
            Limit {
                amount: 15,
                unit: Unit::CalendarDays
            }
        );
        assert_eq!(
            "7 工作日".parse::<Limit>().unwrap(),
            Limit {
                amount: 7,
                unit: Unit::WorkingDays
            }
        );
        assert!("three days".parse::<Limit>().is_err());
        assert!("3 fortnights".parse::<Limit>().is_err());
    }
}

/// What time it is, for everything that judges a deadline: the system clock
/// in the hub, a fixed or test-driven time in tests. Schedulers, keepers,
/// the desk and the entity library take one instead of reading the system
/// time themselves.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(std::sync::Arc::new(Utc::now))
    }

    /// Always `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(std::sync::Arc::new(move || at))
    }

    /// Whatever `now` says (a test that moves time on).
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now().to_rfc3339())
    }
}
