//! The list of seriously dishonest entities (严重失信主体名单): who meets a
//! criterion, and the procedure that turns that into a published listing.
//!
//! 国办发〔2020〕49号 (六)–(八) require, for a listing:
//! - a criterion with a basis in law, regulation or central policy (each
//!   criterion in config states its `basis`);
//! - notice to the party before listing, with the reasons, the basis and the
//!   right to object (告知);
//! - a check of the objections (异议核查);
//! - a decision (列入决定);
//! - removal conditions, including credit repair (移出、信用修复).
//!
//! The hub proposes (拟列入) when an entity meets a criterion; everything
//! after that is an officer's act on the desk, except what the calendar or
//! a revoked penalty decides. Every step is a [`ProcedureEvent`] on the
//! procedure topic, keyed by entity, so one entity's steps stay in order;
//! [`fold`] turns one case's events into its state, and the same fold
//! serves the keeper (which writes the published list), the desk (which
//! checks an officer's act before recording it) and the tests. An event
//! the procedure does not allow at its time is kept on the timeline, marked
//! refused, and changes nothing.
//!
//! Only a decided listing reaches the list topic, which is what deliveries
//! push for joint restriction; a removal is pushed the same way.

mod keeper;
pub use keeper::run_blacklist;

use crate::calendar::{Calendar, LegalLimit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// `[credit.blacklist]` in the deployment file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlacklistConfig {
    /// Decided listings and removals (compacted, keyed by entity): the
    /// topic deliveries push to the credit platform and departments.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The procedure's events, keyed by entity.
    #[serde(default = "default_events_topic")]
    pub events_topic: String,
    /// What puts an entity on the list, each with its legal basis.
    pub criteria: Vec<Criterion>,
    /// How long the party has to object after the notice is served
    /// (e.g. `{ limit = "5 working days", basis = "…" }`).
    pub objection_window: LegalLimit,
    /// How long a listing lasts; it is removed when this lapses.
    pub listing_term: LegalLimit,
    /// How long after the decision a credit repair may end a listing early.
    pub repair_after: LegalLimit,
    /// What a listing means for others' decisions, each measure with its
    /// own basis, effect and scope (国办发〔2020〕49号（四）): the listing
    /// notice names them, and the restrictions API answers them per permit.
    /// None: a listing is published, and bars or weighs nothing.
    #[serde(default)]
    pub measures: Vec<crate::credit::Measure>,
}

fn default_topic() -> String {
    "credit.blacklist".into()
}
fn default_events_topic() -> String {
    "credit.blacklist.events".into()
}

impl BlacklistConfig {
    /// The list (compacted, keyed by entity) and the procedure's record
    /// (never deleted).
    pub fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        use crate::bus::{Cleanup, TopicSpec};
        vec![
            TopicSpec {
                name: self.topic.clone(),
                partitions: 3,
                cleanup: Cleanup::Compact,
            },
            TopicSpec {
                name: self.events_topic.clone(),
                partitions: 3,
                cleanup: Cleanup::Keep,
            },
        ]
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.criteria.is_empty() {
            return Err("`criteria`: at least one criterion, each with its `basis`".into());
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.criteria.iter().enumerate() {
            let at = format!("`criteria[{i}]` (`{}`)", c.name);
            if !names.insert(c.name.as_str()) {
                return Err(format!("{at}: the name is used twice"));
            }
            // 国办发〔2020〕49号 (七): a criterion comes from a law, an
            // administrative regulation, a central policy document or the
            // field's department rule, for that field only.
            if c.instrument.trim().is_empty() {
                return Err(format!(
                    "{at}: `instrument` must name the law, administrative regulation, central policy document or department rule that sets the criterion (国办发〔2020〕49号（七）)"
                ));
            }
            if c.article.trim().is_empty() {
                return Err(format!(
                    "{at}: `article` must name the article(s) of `{}` that set the criterion",
                    c.instrument
                ));
            }
            if c.fields.is_empty() {
                return Err(format!(
                    "{at}: `fields` must name the field(s) the instrument governs (industry codes such as MARKET): a criterion applies to its own field only"
                ));
            }
            match (c.serious_count, c.categories_any.is_empty()) {
                (Some(0), _) => return Err(format!("{at}: `serious_count` must be at least 1")),
                (Some(_), false) | (None, true) => {
                    return Err(format!(
                        "{at}: give either `serious_count` (serious violations in `window_months`) or `categories_any`"
                    ));
                }
                _ => {}
            }
            if c.window_months == 0 {
                return Err(format!("{at}: `window_months` must be at least 1"));
            }
        }
        for (name, rule) in [
            ("objection_window", &self.objection_window),
            ("listing_term", &self.listing_term),
            ("repair_after", &self.repair_after),
        ] {
            if rule.basis.trim().is_empty() {
                return Err(format!("`{name}`: `basis` must name its source"));
            }
        }
        // A sanction's term ends on the corresponding day (民法典 art. 202):
        // a term in months, years or calendar days, never working days.
        for (name, rule) in [
            ("listing_term", &self.listing_term),
            ("repair_after", &self.repair_after),
        ] {
            if !matches!(
                rule.limit.unit,
                crate::calendar::Unit::Months | crate::calendar::Unit::CalendarDays
            ) {
                return Err(format!(
                    "`{name}`: a term in months, years or days (it ends on the corresponding day, 民法典第二百零二条), not `{}`",
                    rule.limit
                ));
            }
        }
        for m in &self.measures {
            m.validate().map_err(|why| format!("`measures`: {why}"))?;
        }
        for (name, topic) in [("topic", &self.topic), ("events_topic", &self.events_topic)] {
            crate::bus::check_topic_name(topic).map_err(|why| format!("`{name}`: {why}"))?;
        }
        Ok(())
    }
}

/// One listing criterion.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// A key: `repeat_serious`.
    pub name: String,
    /// What it says, in Chinese, for the notice and the desk.
    pub label: String,
    /// The law, administrative regulation, central policy document or
    /// department rule that sets the criterion (国办发〔2020〕49号（七）).
    #[serde(default)]
    pub instrument: String,
    /// Its article(s).
    #[serde(default)]
    pub article: String,
    /// The field(s) it governs, as industry codes (`MARKET`): decisions of
    /// other fields never meet it.
    #[serde(default)]
    pub fields: Vec<String>,
    /// What else the bureau's legal office notes (optional).
    #[serde(default)]
    pub basis: String,
    /// Met by this many serious violations (情节严重) within the window.
    #[serde(default)]
    pub serious_count: Option<usize>,
    /// The window, in months back from now.
    #[serde(default = "default_window_months")]
    pub window_months: u32,
    /// Met by one decision with any of these penalty categories.
    #[serde(default)]
    pub categories_any: Vec<String>,
}

fn default_window_months() -> u32 {
    12
}

/// A penalty decision, as the criteria look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ground {
    pub id: String,
    pub decision_no: String,
    pub decided: DateTime<Utc>,
    pub serious: bool,
    pub categories: Vec<String>,
    /// The decision's industry (field).
    pub industry: String,
    /// Revoked, confirmed unlawful or void (行政处罚法 art. 48): it no
    /// longer counts.
    pub revoked: bool,
}

impl Criterion {
    /// The grounds that meet this criterion as of `now`, with the reason
    /// in Chinese; `None` when it is not met.
    pub fn met<'a>(
        &self,
        grounds: impl IntoIterator<Item = &'a Ground>,
        now: DateTime<Utc>,
    ) -> Option<(Vec<&'a Ground>, String)> {
        let since = now
            .checked_sub_months(chrono::Months::new(self.window_months))
            .unwrap_or(now);
        let live: Vec<&Ground> = grounds
            .into_iter()
            .filter(|g| !g.revoked && g.decided >= since && g.decided <= now)
            // A proposal recorded before criteria named their fields keeps
            // the criterion it was made on (`check` refuses a configured
            // criterion without fields).
            .filter(|g| self.fields.is_empty() || self.fields.contains(&g.industry))
            .collect();
        let numbers = |gs: &[&Ground]| {
            gs.iter()
                .map(|g| g.decision_no.as_str())
                .collect::<Vec<_>>()
                .join("、")
        };
        if let Some(n) = self.serious_count {
            let serious: Vec<&Ground> = live.into_iter().filter(|g| g.serious).collect();
            return (serious.len() >= n).then(|| {
                let reason = format!(
                    "{}：{}个月内情节严重的违法行为{}次（{}）；{}",
                    self.label,
                    self.window_months,
                    serious.len(),
                    numbers(&serious),
                    self.cited()
                );
                (serious, reason)
            });
        }
        let hit: Vec<&Ground> = live
            .into_iter()
            .filter(|g| g.categories.iter().any(|c| self.categories_any.contains(c)))
            .collect();
        (!hit.is_empty()).then(|| {
            let reason = format!("{}：{}；{}", self.label, numbers(&hit), self.cited());
            (hit, reason)
        })
    }
}

impl Criterion {
    /// Its instrument and article, with the legal office's note if any:
    /// as the desk shows it.
    pub fn basis_text(&self) -> String {
        let note = if self.basis.trim().is_empty() {
            String::new()
        } else {
            format!("（{}）", self.basis)
        };
        format!("{}{}{note}", self.instrument, self.article)
    }

    /// As a proposal cites it: a suggestion that names its basis, never a
    /// finding (the deciding authority decides, 国办发〔2020〕49号（八）).
    pub fn cited(&self) -> String {
        format!(
            "拟列入建议，依据{}{}，须由认定机关依法认定",
            self.instrument, self.article
        )
    }
}

/// A new case's id: `blc:<entity>:<proposed at, epoch ms>`.
pub fn case_id(entity: &str, proposed_at_ms: i64) -> String {
    format!("blc:{entity}:{proposed_at_ms}")
}

/// The entity a case id names (see [`case_id`]).
pub fn entity_of_case(case_id: &str) -> Option<&str> {
    let rest = case_id.strip_prefix("blc:")?;
    rest.rsplit_once(':').map(|(entity, _)| entity)
}

/// What happened in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// The hub found a criterion met (拟列入). By the hub.
    Proposed,
    /// An officer confirmed the proposal and served the notice (告知),
    /// on the date given.
    NoticeServed,
    /// The party objected (提出异议/陈述申辩), received on the date given.
    ObjectionFiled,
    /// The objection was checked and holds: not listed.
    ObjectionUpheld,
    /// The objection was checked and does not hold.
    ObjectionRejected,
    /// The listing decision (列入决定).
    ListingDecided,
    /// A decision not to list.
    NotListed,
    /// The listing decision was revoked (撤销列入决定).
    DecisionRevoked,
    /// A credit repair was approved (信用修复): removed.
    RepairApproved,
    /// Every decision the case rests on was revoked, or confirmed
    /// unlawful or void, so no criterion is met any more. By the hub.
    GroundsRevoked,
    /// The listing term lapsed (期满移出). By the hub.
    TermExpired,
}

impl EventKind {
    pub const OFFICER_ACTS: [EventKind; 8] = [
        EventKind::NoticeServed,
        EventKind::ObjectionFiled,
        EventKind::ObjectionUpheld,
        EventKind::ObjectionRejected,
        EventKind::ListingDecided,
        EventKind::NotListed,
        EventKind::DecisionRevoked,
        EventKind::RepairApproved,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EventKind::Proposed => "PROPOSED",
            EventKind::NoticeServed => "NOTICE_SERVED",
            EventKind::ObjectionFiled => "OBJECTION_FILED",
            EventKind::ObjectionUpheld => "OBJECTION_UPHELD",
            EventKind::ObjectionRejected => "OBJECTION_REJECTED",
            EventKind::ListingDecided => "LISTING_DECIDED",
            EventKind::NotListed => "NOT_LISTED",
            EventKind::DecisionRevoked => "DECISION_REVOKED",
            EventKind::RepairApproved => "REPAIR_APPROVED",
            EventKind::GroundsRevoked => "GROUNDS_REVOKED",
            EventKind::TermExpired => "TERM_EXPIRED",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            EventKind::Proposed,
            EventKind::GroundsRevoked,
            EventKind::TermExpired,
        ]
        .into_iter()
        .chain(Self::OFFICER_ACTS)
        .find(|k| k.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            EventKind::Proposed => "拟列入严重失信主体名单",
            EventKind::NoticeServed => "确认拟列入，告知书已送达",
            EventKind::ObjectionFiled => "当事人提出异议",
            EventKind::ObjectionUpheld => "异议成立，不予列入",
            EventKind::ObjectionRejected => "异议不成立",
            EventKind::ListingDecided => "作出列入决定",
            EventKind::NotListed => "决定不予列入",
            EventKind::DecisionRevoked => "列入决定撤销，移出名单",
            EventKind::RepairApproved => "信用修复通过，移出名单",
            EventKind::GroundsRevoked => "所依据的处罚决定已撤销或被确认违法、无效",
            EventKind::TermExpired => "列入期限届满，移出名单",
        }
    }

    /// Acts that take a date the officer gives (the date on the proof of
    /// service, or of receipt), not the time they are recorded.
    pub fn takes_date(self) -> bool {
        matches!(
            self,
            EventKind::NoticeServed | EventKind::ObjectionFiled | EventKind::ListingDecided
        )
    }
}

/// One step of a case, as it is on the procedure topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcedureEvent {
    /// Unique: a step recorded twice counts once.
    pub id: String,
    pub case_id: String,
    /// The entity key (`uscc:…`, or a natural person's `pid:…`).
    pub entity: String,
    pub event: EventKind,
    /// When it was recorded.
    pub at_ms: i64,
    /// `duijie` for the hub's own steps, else the officer's name.
    pub by: String,
    /// The date the step took effect, where the officer gives one (served,
    /// received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For a proposal: what the case rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Proposal>,
}

/// What a proposal rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub name: String,
    #[serde(default)]
    pub credit_code: Option<String>,
    pub criteria: Vec<Criterion>,
    pub reasons: Vec<String>,
    /// The penalty decisions (canonical ids) it rests on.
    pub grounds: Vec<String>,
    /// Their decision numbers, as the notice cites them.
    pub decision_nos: Vec<String>,
    /// The latest decision date among them: a notice cannot be served
    /// before it.
    pub latest_decided_ms: i64,
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseState {
    /// Proposed; the notice is not served yet.
    Proposed,
    /// Notice served; the objection window runs.
    NoticePeriod,
    /// An objection is being checked.
    ObjectionReview,
    /// The window has passed with no objection pending: to be decided.
    AwaitingDecision,
    /// Listed, published and pushed.
    Listed,
    /// Closed without a listing.
    NotListed,
    /// Was listed, removed.
    Removed,
}

impl CaseState {
    pub fn label(self) -> &'static str {
        match self {
            CaseState::Proposed => "拟列入（待告知）",
            CaseState::NoticePeriod => "已告知（异议期内）",
            CaseState::ObjectionReview => "异议核查中",
            CaseState::AwaitingDecision => "待作出决定",
            CaseState::Listed => "已列入",
            CaseState::NotListed => "不予列入",
            CaseState::Removed => "已移出",
        }
    }

    pub fn open(self) -> bool {
        !matches!(self, CaseState::NotListed | CaseState::Removed)
    }
}

/// A case as of some time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseView {
    pub case_id: String,
    pub entity: String,
    pub proposal: Option<Proposal>,
    pub state: CaseState,
    pub state_label: &'static str,
    /// Who acts next and what, in Chinese.
    pub next_step: String,
    /// The running clock: its end, what ends then, and its basis.
    pub due_at: Option<i64>,
    pub due_label: Option<String>,
    pub due_basis: Option<String>,
    pub proposed_at: Option<i64>,
    pub served_at: Option<i64>,
    pub objection_window_ends: Option<i64>,
    pub pending_objections: u32,
    pub decided_at: Option<i64>,
    pub listed_until: Option<i64>,
    /// From when a credit repair may end the listing.
    pub repair_from: Option<i64>,
    pub closed_at: Option<i64>,
    /// Why the case closed (the closing event's label and note).
    pub closed_because: Option<String>,
    pub closed_by: Option<EventKind>,
    pub events: Vec<ProcedureEvent>,
    /// Events the procedure did not allow at their time, with why.
    pub refused: BTreeMap<String, String>,
    /// A clock that cannot be computed (a calendar year is missing).
    pub clock_error: Option<String>,
}

impl CaseView {
    pub fn listed(&self) -> bool {
        self.state == CaseState::Listed
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Whether `e` may happen to a case in `view`'s state, at its own time;
/// `Err` says why not, in Chinese.
fn allowed(view: &CaseView, e: &ProcedureEvent) -> Result<(), String> {
    use CaseState as S;
    use EventKind as K;
    if e.event == K::Proposed {
        return Err("同一案件不能重复拟列入".into());
    }
    if !view.state.open() {
        return Err(format!("案件已结束（{}）", view.state.label()));
    }
    let effective = e.effective_ms.unwrap_or(e.at_ms);
    if e.event.takes_date() && effective > e.at_ms {
        return Err("日期不能晚于登记时间".into());
    }
    let window_passed = view.objection_window_ends.is_some_and(|end| e.at_ms >= end);
    match (e.event, view.state) {
        (K::NoticeServed, S::Proposed) => {
            let earliest = view.proposal.as_ref().map_or(0, |p| p.latest_decided_ms);
            if effective < earliest {
                return Err("送达日期早于所依据的处罚决定".into());
            }
            Ok(())
        }
        // Judged by the date received, not recorded: an objection received
        // in time and entered after the window still counts, until the
        // decision.
        (K::ObjectionFiled, S::NoticePeriod | S::ObjectionReview | S::AwaitingDecision) => {
            if view.served_at.is_some_and(|s| effective < s) {
                return Err("收到异议的日期早于告知书送达".into());
            }
            if view
                .objection_window_ends
                .is_some_and(|end| effective >= end)
            {
                return Err("异议期已届满，逾期提出的异议不再登记为异议".into());
            }
            Ok(())
        }
        (K::ObjectionUpheld | K::ObjectionRejected, S::ObjectionReview) => Ok(()),
        (K::ListingDecided, S::NoticePeriod) if view.clock_error.is_some() => {
            Err("异议期无法计算（缺少节假日安排），不能作出决定".into())
        }
        (K::ListingDecided, S::NoticePeriod) if !window_passed => Err(format!(
            "异议期至{}届满，届满前不能作出列入决定",
            view.objection_window_ends
                .map(|t| crate::calendar::local_text(time(t)))
                .unwrap_or_default()
        )),
        (K::ListingDecided, S::NoticePeriod | S::AwaitingDecision)
            if view
                .objection_window_ends
                .is_some_and(|end| effective < end) =>
        {
            Err("列入决定的日期早于异议期届满".into())
        }
        (K::ListingDecided, S::NoticePeriod | S::AwaitingDecision) => Ok(()),
        (K::ListingDecided, S::ObjectionReview) => Err("异议尚未核查完毕，不能作出列入决定".into()),
        (K::ListingDecided, S::Proposed) => Err("尚未告知当事人，不能作出列入决定".into()),
        (
            K::NotListed,
            S::Proposed | S::NoticePeriod | S::ObjectionReview | S::AwaitingDecision,
        ) => Ok(()),
        (K::DecisionRevoked, S::Listed) => Ok(()),
        (K::RepairApproved, S::Listed) => match view.repair_from {
            Some(from) if e.at_ms < from => Err(format!(
                "列入满期限后方可信用修复（{}起）",
                crate::calendar::local_text(time(from))
            )),
            Some(_) => Ok(()),
            None => Err("可申请信用修复的日期无法计算（缺少节假日安排），暂不能登记".into()),
        },
        (K::GroundsRevoked, _) => Ok(()),
        (K::TermExpired, S::Listed) => match view.listed_until {
            Some(until) if e.at_ms >= until => Ok(()),
            _ => Err("列入期限尚未届满".into()),
        },
        (kind, state) => Err(format!("「{}」时不能「{}」", state.label(), kind.label())),
    }
}

/// One case's events (in topic order) folded into its state as of `now`.
///
/// Long because the listing procedure (国办发〔2020〕49号) as one state machine:
/// one arm per event, each with its article.
pub fn fold(
    case_id: &str,
    events: &[ProcedureEvent],
    config: &BlacklistConfig,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> CaseView {
    let mut view = CaseView {
        case_id: case_id.to_owned(),
        entity: events.first().map(|e| e.entity.clone()).unwrap_or_default(),
        proposal: None,
        state: CaseState::Proposed,
        state_label: "",
        next_step: String::new(),
        due_at: None,
        due_label: None,
        due_basis: None,
        proposed_at: None,
        served_at: None,
        objection_window_ends: None,
        pending_objections: 0,
        decided_at: None,
        listed_until: None,
        repair_from: None,
        closed_at: None,
        closed_because: None,
        closed_by: None,
        events: Vec::new(),
        refused: BTreeMap::new(),
        clock_error: None,
    };
    let mut seen = BTreeSet::new();
    for e in events {
        if !seen.insert(e.id.as_str()) {
            continue;
        }
        view.events.push(e.clone());
        if view.proposal.is_none() {
            match (&e.event, &e.proposal) {
                (EventKind::Proposed, Some(p)) => {
                    view.proposal = Some(p.clone());
                    view.proposed_at = Some(e.at_ms);
                }
                _ => {
                    view.refused.insert(e.id.clone(), "案件尚未拟列入".into());
                }
            }
            continue;
        }
        // Before judging an act, let the window's end move the state on.
        settle(&mut view, e.at_ms);
        if let Err(why) = allowed(&view, e) {
            view.refused.insert(e.id.clone(), why);
            continue;
        }
        let effective = e.effective_ms.unwrap_or(e.at_ms);
        let close = |view: &mut CaseView, state: CaseState| {
            view.state = state;
            view.closed_at = Some(e.at_ms);
            view.closed_by = Some(e.event);
            view.closed_because = Some(match &e.text {
                Some(t) if !t.is_empty() => format!("{}：{t}", e.event.label()),
                _ => e.event.label().to_owned(),
            });
        };
        match e.event {
            EventKind::NoticeServed => {
                view.served_at = Some(effective);
                match calendar.due(time(effective), config.objection_window.limit) {
                    Ok(end) => view.objection_window_ends = Some(ms(end)),
                    Err(err) => view.clock_error = Some(err.to_string()),
                }
                view.state = CaseState::NoticePeriod;
            }
            EventKind::ObjectionFiled => {
                view.pending_objections += 1;
                view.state = CaseState::ObjectionReview;
            }
            EventKind::ObjectionRejected => {
                view.pending_objections -= 1;
                if view.pending_objections == 0 {
                    view.state = CaseState::NoticePeriod;
                }
            }
            EventKind::ObjectionUpheld | EventKind::NotListed => {
                close(&mut view, CaseState::NotListed);
            }
            EventKind::ListingDecided => {
                // The term and the repair date run from the date of the
                // listing decision (not when it was recorded) and end on
                // the corresponding day, never rolled over a rest day
                // (民法典 arts. 201-203; see calendar::term_end).
                view.decided_at = Some(effective);
                view.state = CaseState::Listed;
                let decided = time(effective);
                view.listed_until =
                    crate::calendar::term_end(decided, config.listing_term.limit).map(ms);
                view.repair_from =
                    crate::calendar::term_end(decided, config.repair_after.limit).map(ms);
            }
            EventKind::GroundsRevoked => {
                let state = if view.state == CaseState::Listed {
                    CaseState::Removed
                } else {
                    CaseState::NotListed
                };
                close(&mut view, state);
            }
            EventKind::DecisionRevoked | EventKind::RepairApproved | EventKind::TermExpired => {
                close(&mut view, CaseState::Removed);
            }
            EventKind::Proposed => unreachable!("refused above"),
        }
    }
    settle(&mut view, ms(now));
    describe(&mut view, config);
    view
}

/// A window that has passed with no objection pending leaves the case to
/// be decided.
fn settle(view: &mut CaseView, at_ms: i64) {
    if view.state == CaseState::NoticePeriod
        && view.objection_window_ends.is_some_and(|end| at_ms >= end)
    {
        view.state = CaseState::AwaitingDecision;
    }
}

fn describe(view: &mut CaseView, config: &BlacklistConfig) {
    view.state_label = view.state.label();
    let (next, due, due_label, basis): (String, Option<i64>, Option<String>, Option<&str>) =
        match view.state {
            CaseState::Proposed => (
                "执法人员核实后确认拟列入，向当事人送达告知书（列入的事实、理由、依据及异议权利）"
                    .into(),
                None,
                None,
                None,
            ),
            CaseState::NoticePeriod => (
                format!(
                    "当事人可在{}内提出异议；期满后作出决定",
                    config.objection_window.limit.label()
                ),
                view.objection_window_ends,
                Some("异议期届满".into()),
                Some(&config.objection_window.basis),
            ),
            CaseState::ObjectionReview => {
                ("核查当事人异议，并反馈核查结果".into(), None, None, None)
            }
            CaseState::AwaitingDecision => (
                "异议期已届满，作出列入或不予列入的决定".into(),
                None,
                None,
                None,
            ),
            CaseState::Listed => (
                format!(
                    "期满自动移出；列入{}后可申请信用修复",
                    config.repair_after.limit.label()
                ),
                view.listed_until,
                Some("列入期限届满".into()),
                Some(&config.listing_term.basis),
            ),
            CaseState::NotListed | CaseState::Removed => ("已结束".into(), None, None, None),
        };
    view.next_step = next;
    view.due_at = due;
    view.due_label = due_label;
    view.due_basis = basis.map(str::to_owned);
}

/// Every case of a set of events (one entity's, or all), folded, newest
/// proposal first within an entity.
pub fn cases(
    events: &[ProcedureEvent],
    config: &BlacklistConfig,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> Vec<CaseView> {
    let mut by_case: BTreeMap<&str, Vec<ProcedureEvent>> = BTreeMap::new();
    for e in events {
        by_case
            .entry(e.case_id.as_str())
            .or_default()
            .push(e.clone());
    }
    let mut out: Vec<CaseView> = by_case
        .into_iter()
        .map(|(id, list)| fold(id, &list, config, calendar, now))
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.proposed_at));
    out
}

/// An officer's act on a case, checked as the fold will judge it: the
/// event to record, or why not (in Chinese).
pub fn officer_act(
    case: &CaseView,
    kind: EventKind,
    officer: &str,
    effective: Option<DateTime<Utc>>,
    text: Option<String>,
    now: DateTime<Utc>,
) -> Result<ProcedureEvent, String> {
    if !EventKind::OFFICER_ACTS.contains(&kind) {
        return Err("该事项由系统办理，不能人工登记".into());
    }
    if kind.takes_date() && effective.is_none() {
        return Err("请填写日期（送达、收到异议或列入决定的日期）".into());
    }
    let at = ms(now);
    let event = ProcedureEvent {
        id: format!(
            "{}:{}:{at}:{:04x}",
            case.case_id,
            kind.code(),
            fastrand::u16(..)
        ),
        case_id: case.case_id.clone(),
        entity: case.entity.clone(),
        event: kind,
        at_ms: at,
        by: officer.to_owned(),
        effective_ms: kind.takes_date().then(|| effective.map(ms)).flatten(),
        text,
        proposal: None,
    };
    let mut now_view = case.clone();
    settle(&mut now_view, at);
    allowed(&now_view, &event)?;
    Ok(event)
}

/// The hub's step on a case, as its keeper writes it.
pub fn hub_event(
    case: &CaseView,
    kind: EventKind,
    now: DateTime<Utc>,
    text: String,
) -> ProcedureEvent {
    ProcedureEvent {
        id: format!("{}:{}", case.case_id, kind.code()),
        case_id: case.case_id.clone(),
        entity: case.entity.clone(),
        event: kind,
        at_ms: ms(now),
        by: "duijie".into(),
        effective_ms: None,
        text: Some(text),
        proposal: None,
    }
}

/// The entry the list topic carries for a listing or a removal: what the
/// credit platform and departments receive.
pub fn list_entry(
    case: &CaseView,
    measures: &[crate::credit::Measure],
    version: i64,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let p = case.proposal.clone().unwrap_or_else(|| Proposal {
        name: String::new(),
        credit_code: None,
        criteria: Vec::new(),
        reasons: Vec::new(),
        grounds: Vec::new(),
        decision_nos: Vec::new(),
        latest_decided_ms: 0,
    });
    let listed = case.listed();
    serde_json::json!({
        "id": format!("blk:{}", case.entity),
        "entity": case.entity,
        "name": p.name,
        "credit_code": p.credit_code,
        "action": if listed { "ADD" } else { "REMOVE" },
        "case_id": case.case_id,
        "criteria": p.criteria.iter().map(|c| serde_json::json!({"name": c.name, "label": c.label,
            "instrument": c.instrument, "article": c.article, "fields": c.fields,
            "basis": format!("{}{}", c.instrument, c.article)})).collect::<Vec<_>>(),
        "reasons": p.reasons,
        "measures": measures,
        "decision_nos": p.decision_nos,
        "notice_served_at": case.served_at,
        "decided_at": case.decided_at,
        "listed_until": case.listed_until,
        "removed_at": if listed { None } else { case.closed_at },
        "removal_reason": if listed { None } else { case.closed_because.clone() },
        "version": version,
        "updated_at": ms(now),
        // What follows from a listing is each measure's own basis (the
        // restrictions API answers per permit), not a blanket 联合惩戒.
        "message": if listed {
            format!(
                "{}列入严重失信主体名单（{}）。{}",
                p.name,
                p.criteria
                    .iter()
                    .map(|c| format!("{}{}", c.instrument, c.article))
                    .collect::<Vec<_>>()
                    .join("；"),
                if measures.is_empty() {
                    "未配置与名单相关的管理措施".to_owned()
                } else {
                    format!(
                        "管理措施：{}",
                        measures
                            .iter()
                            .map(|m| format!("{}（{}，依据{}）", m.label, m.effect.label(), m.basis))
                            .collect::<Vec<_>>()
                            .join("；")
                    )
                }
            )
        } else {
            format!("{}移出严重失信主体名单（{}）", p.name, case.closed_because.clone().unwrap_or_default())
        },
    })
}

/// The configuration the unit tests share: two criteria, a 5-working-day
/// window, a 6-month term, repair after 3 months.
#[cfg(test)]
pub(crate) fn test_config() -> BlacklistConfig {
    toml::from_str(
        r#"
criteria = [
  { name = "repeat_serious", label = "一年内两次以上情节严重的违法行为", instrument = "《测试规章甲》", article = "第一条", fields = ["MARKET"], serious_count = 2 },
  { name = "licence_revoked", label = "被吊销许可证件", instrument = "《测试规章乙》", article = "第二条", fields = ["MARKET"], categories_any = ["吊销许可证件"] },
]
objection_window = { limit = "5 working days", basis = "异议期依据" }
listing_term = { limit = "6 months", basis = "期限依据" }
repair_after = { limit = "3 months", basis = "修复依据" }
measures = [
  { label = "审批时作为重要考量因素", effect = "consider", permits = ["*"], basis = "措施依据" },
]
"#,
    )
    .expect("config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn calendar() -> Calendar {
        Calendar::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calendar"))
            .expect("calendar")
    }

    fn config() -> BlacklistConfig {
        super::test_config()
    }

    fn local(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn proposed(at: DateTime<Utc>, decided: DateTime<Utc>) -> ProcedureEvent {
        ProcedureEvent {
            id: "c1:PROPOSED".into(),
            case_id: "c1".into(),
            entity: "uscc:X".into(),
            event: EventKind::Proposed,
            at_ms: ms(at),
            by: "duijie".into(),
            effective_ms: None,
            text: None,
            proposal: Some(Proposal {
                name: "某公司".into(),
                credit_code: None,
                criteria: config().criteria[..1].to_vec(),
                reasons: vec!["r".into()],
                grounds: vec!["pen:1".into()],
                decision_nos: vec!["宜高综执罚〔2026〕1号".into()],
                latest_decided_ms: ms(decided),
            }),
        }
    }

    fn act(
        view: &CaseView,
        kind: EventKind,
        at: DateTime<Utc>,
        date: Option<DateTime<Utc>>,
    ) -> Result<ProcedureEvent, String> {
        officer_act(view, kind, "张三", date, None, at)
    }

    #[test]
    fn a_case_id_names_its_entity_whatever_colons_the_key_holds() {
        for entity in [
            "uscc:91420500MA4F0XYZ1B",
            "pid:0123456789abcdef0123456789abcdef",
        ] {
            let id = case_id(entity, 1_796_124_417_335);
            assert_eq!(entity_of_case(&id), Some(entity));
        }
        assert_eq!(entity_of_case("blk:uscc:X"), None);
    }

    #[test]
    fn criteria_count_serious_violations_in_the_window_and_listing_categories() {
        let c = config();
        let now = local(2026, 12, 1, 10);
        let g = |id: &str, months_ago: u32, serious: bool, cat: &str| Ground {
            id: id.into(),
            decision_no: format!("第{id}号"),
            decided: now
                .checked_sub_months(chrono::Months::new(months_ago))
                .unwrap(),
            serious,
            categories: vec![cat.into()],
            industry: "MARKET".into(),
            revoked: false,
        };
        let two = [g("1", 2, true, "罚款"), g("2", 11, true, "罚款")];
        assert!(c.criteria[0].met(&two, now).is_some());
        // One of them out of the 12-month window.
        let old = [g("1", 2, true, "罚款"), g("2", 13, true, "罚款")];
        assert!(c.criteria[0].met(&old, now).is_none());
        // Revoked decisions do not count.
        let mut revoked = two.clone();
        revoked[1].revoked = true;
        assert!(c.criteria[0].met(&revoked, now).is_none());
        let revoking = [g("3", 1, false, "吊销许可证件")];
        let (hit, reason) = c.criteria[1]
            .met(&revoking, now)
            .expect("a listing category");
        assert_eq!(hit.len(), 1);
        assert!(reason.contains("第3号"), "{reason}");
        // The proposal names its basis and is a suggestion, not a finding.
        assert!(
            reason.contains("《测试规章乙》第二条") && reason.contains("拟列入建议"),
            "{reason}"
        );
        // A criterion governs its own field only: the same revocation in
        // urban management does not meet a market-supervision criterion.
        let mut urban = revoking.clone();
        urban[0].industry = "URBAN".into();
        assert!(c.criteria[1].met(&urban, now).is_none());
    }

    #[test]
    fn a_criterion_without_instrument_article_or_field_is_refused() {
        for (field, why) in [
            ("instrument", "`instrument`"),
            ("article", "`article`"),
            ("fields", "`fields`"),
        ] {
            let mut c = config();
            match field {
                "instrument" => c.criteria[0].instrument.clear(),
                "article" => c.criteria[0].article.clear(),
                _ => c.criteria[0].fields.clear(),
            }
            let err = c.validate().unwrap_err();
            assert!(err.contains(why), "{field}: {err}");
        }
        // A term in working days is not a sanction's term.
        let mut c = config();
        c.listing_term.limit = "20 working days".parse().unwrap();
        assert!(c.validate().unwrap_err().contains("listing_term"));
    }

    #[test]
    fn a_listing_needs_notice_then_the_objection_window_on_working_days() {
        let (c, cal) = (config(), calendar());
        // Decided Monday 2026-09-28; proposed the next day.
        let decided = local(2026, 9, 28, 0);
        let mut events = vec![proposed(local(2026, 9, 29, 9), decided)];
        let view = fold("c1", &events, &c, &cal, local(2026, 9, 29, 10));
        assert_eq!(view.state, CaseState::Proposed);
        // No decision before notice.
        assert!(
            act(
                &view,
                EventKind::ListingDecided,
                local(2026, 9, 29, 11),
                None
            )
            .is_err()
        );
        // A notice cannot predate the decision it rests on, nor be dated
        // after it is recorded.
        let at = local(2026, 9, 29, 16);
        assert!(
            act(
                &view,
                EventKind::NoticeServed,
                at,
                Some(local(2026, 9, 27, 9))
            )
            .is_err()
        );
        assert!(
            act(
                &view,
                EventKind::NoticeServed,
                at,
                Some(local(2026, 9, 30, 9))
            )
            .is_err()
        );
        // Served Tuesday 2026-09-29. Five working days across National Day
        // (10-01..10-07 off) and the make-up Saturday 10-10: 09-30, 10-08,
        // 10-09, 10-10, 10-12.
        let served = act(
            &view,
            EventKind::NoticeServed,
            at,
            Some(local(2026, 9, 29, 10)),
        )
        .expect("notice");
        events.push(served);
        let view = fold("c1", &events, &c, &cal, local(2026, 9, 30, 9));
        assert_eq!(view.state, CaseState::NoticePeriod);
        assert_eq!(
            view.objection_window_ends
                .map(|t| crate::calendar::local_text(time(t))),
            Some("2026-10-12 24:00".into())
        );
        assert_eq!(view.due_basis.as_deref(), Some("异议期依据"));
        // On the window's last day, no decision yet.
        let early = act(
            &view,
            EventKind::ListingDecided,
            local(2026, 10, 12, 20),
            Some(local(2026, 10, 12, 20)),
        )
        .expect_err("the window still runs");
        assert!(early.contains("届满前"), "{early}");
        // An objection received on the last day is in time; after it, not.
        let late = act(
            &view,
            EventKind::ObjectionFiled,
            local(2026, 10, 13, 9),
            Some(local(2026, 10, 13, 8)),
        );
        assert!(late.is_err(), "{late:?}");
        // Received in time and entered after the window: it counts.
        let entered_later = act(
            &view,
            EventKind::ObjectionFiled,
            local(2026, 10, 14, 9),
            Some(local(2026, 10, 12, 16)),
        );
        assert!(entered_later.is_ok(), "{entered_later:?}");
        let objection = act(
            &view,
            EventKind::ObjectionFiled,
            local(2026, 10, 12, 17),
            Some(local(2026, 10, 12, 16)),
        )
        .expect("in time");
        events.push(objection);
        let view = fold("c1", &events, &c, &cal, local(2026, 10, 13, 9));
        assert_eq!(view.state, CaseState::ObjectionReview);
        assert!(
            act(
                &view,
                EventKind::ListingDecided,
                local(2026, 10, 13, 9),
                None
            )
            .is_err()
        );
        events.push(
            act(
                &view,
                EventKind::ObjectionRejected,
                local(2026, 10, 13, 9),
                None,
            )
            .unwrap(),
        );
        let view = fold("c1", &events, &c, &cal, local(2026, 10, 13, 10));
        assert_eq!(view.state, CaseState::AwaitingDecision);
        events.push(
            act(
                &view,
                EventKind::ListingDecided,
                local(2026, 10, 13, 11),
                Some(local(2026, 10, 13, 11)),
            )
            .unwrap(),
        );
        let view = fold("c1", &events, &c, &cal, local(2026, 10, 14, 10));
        assert!(view.listed());
        assert_eq!(view.decided_at, Some(ms(local(2026, 10, 13, 11))));
        assert_eq!(view.due_basis.as_deref(), Some("期限依据"));
    }

    #[test]
    fn an_upheld_objection_closes_the_case_unlisted() {
        let (c, cal) = (config(), calendar());
        let mut events = vec![proposed(local(2026, 3, 2, 12), local(2026, 3, 2, 0))];
        let v = fold("c1", &events, &c, &cal, local(2026, 3, 2, 13));
        events.push(
            act(
                &v,
                EventKind::NoticeServed,
                local(2026, 3, 3, 9),
                Some(local(2026, 3, 3, 9)),
            )
            .unwrap(),
        );
        let v = fold("c1", &events, &c, &cal, local(2026, 3, 4, 9));
        events.push(
            act(
                &v,
                EventKind::ObjectionFiled,
                local(2026, 3, 4, 9),
                Some(local(2026, 3, 4, 9)),
            )
            .unwrap(),
        );
        let v = fold("c1", &events, &c, &cal, local(2026, 3, 5, 9));
        events.push(act(&v, EventKind::ObjectionUpheld, local(2026, 3, 5, 9), None).unwrap());
        let v = fold("c1", &events, &c, &cal, local(2026, 4, 1, 9));
        assert_eq!((v.state, v.listed()), (CaseState::NotListed, false));
        assert!(act(&v, EventKind::ListingDecided, local(2026, 4, 1, 9), None).is_err());
    }

    #[test]
    fn removal_by_repair_after_its_period_by_term_and_by_revocation_at_once() {
        let (c, cal) = (config(), calendar());
        let decided = local(2026, 3, 2, 0);
        let mut events = vec![proposed(local(2026, 3, 2, 12), decided)];
        let v = fold("c1", &events, &c, &cal, local(2026, 3, 2, 13));
        events.push(
            act(
                &v,
                EventKind::NoticeServed,
                local(2026, 3, 3, 9),
                Some(local(2026, 3, 3, 9)),
            )
            .unwrap(),
        );
        let v = fold("c1", &events, &c, &cal, local(2026, 3, 20, 9));
        assert_eq!(v.state, CaseState::AwaitingDecision);
        // Decided on 2026-03-19 (the date on the decision), recorded on
        // the desk the next day: the terms run from the decision's date.
        events.push(
            act(
                &v,
                EventKind::ListingDecided,
                local(2026, 3, 20, 9),
                Some(local(2026, 3, 19, 15)),
            )
            .unwrap(),
        );
        let v = fold("c1", &events, &c, &cal, local(2026, 3, 21, 9));
        assert!(v.listed());
        assert_eq!(v.decided_at, Some(ms(local(2026, 3, 19, 15))));
        // Three months from 2026-03-19 end on the corresponding day,
        // 06-19, a day of the Dragon Boat holiday (06-19..06-21): a
        // sanction's term is not rolled over rest days (民法典 art. 203 is
        // for deadlines to act), so repair may be approved from 06-20.
        assert_eq!(
            v.repair_from.map(|t| crate::calendar::local_text(time(t))),
            Some("2026-06-19 24:00".into())
        );
        // Six months: 09-19, a Saturday; no roll either.
        assert_eq!(
            v.listed_until.map(|t| crate::calendar::local_text(time(t))),
            Some("2026-09-19 24:00".into())
        );
        assert!(act(&v, EventKind::RepairApproved, local(2026, 6, 19, 20), None).is_err());
        let mut repaired = events.clone();
        repaired.push(act(&v, EventKind::RepairApproved, local(2026, 6, 20, 9), None).unwrap());
        let r = fold("c1", &repaired, &c, &cal, local(2026, 6, 24, 9));
        assert_eq!(
            (r.state, r.closed_by),
            (CaseState::Removed, Some(EventKind::RepairApproved))
        );
        // The term: the hub's step is refused before it lapses.
        let mut expired = events.clone();
        expired.push(hub_event(
            &v,
            EventKind::TermExpired,
            local(2026, 9, 19, 23),
            String::new(),
        ));
        assert!(fold("c1", &expired, &c, &cal, local(2026, 9, 21, 9)).listed());
        expired.pop();
        expired.push(hub_event(
            &v,
            EventKind::TermExpired,
            local(2026, 9, 20, 0),
            String::new(),
        ));
        assert_eq!(
            fold("c1", &expired, &c, &cal, local(2026, 9, 21, 9)).state,
            CaseState::Removed
        );
        // A revoked decision removes at once; nothing happens after.
        events.push(act(&v, EventKind::DecisionRevoked, local(2026, 4, 1, 9), None).unwrap());
        let v = fold("c1", &events, &c, &cal, local(2026, 4, 2, 9));
        assert_eq!(v.state, CaseState::Removed);
        assert!(act(&v, EventKind::ListingDecided, local(2026, 4, 2, 9), None).is_err());
    }

    #[test]
    fn an_event_out_of_order_on_the_topic_is_kept_refused_and_changes_nothing() {
        let (c, cal) = (config(), calendar());
        let decided = local(2026, 3, 2, 0);
        let mut events = vec![proposed(local(2026, 3, 2, 12), decided)];
        // A decision recorded without a notice (another instance's stale
        // check, or a hand-written record).
        let mut bad = hub_event(
            &fold("c1", &events, &c, &cal, local(2026, 3, 2, 13)),
            EventKind::ListingDecided,
            local(2026, 3, 3, 9),
            String::new(),
        );
        bad.by = "李四".into();
        events.push(bad.clone());
        let v = fold("c1", &events, &c, &cal, local(2026, 3, 4, 9));
        assert_eq!(v.state, CaseState::Proposed);
        assert!(v.refused[&bad.id].contains("尚未告知"), "{:?}", v.refused);
        assert!(!v.listed());
    }
}
