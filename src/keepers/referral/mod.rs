//! The referral tracker (移送案件跟踪): a state machine per referral that
//! follows State Council order 310 (2020) and the police procedure rules,
//! with the statutory clock of each state.
//!
//! A referral's state is the fold of its events in time order, whichever
//! system told them and in whatever order they arrived: an event that makes
//! no sense where it falls (a police 立案 before the referral was received)
//! is kept on the timeline, flagged, and changes nothing.

pub mod tracker;

use crate::calendar::{Calendar, Limit, Unit};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a referral stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefState {
    Drafted,
    AwaitingApproval,
    Refused,
    Approved,
    Referred,
    UnderReview,
    Forwarded,
    Supplementing,
    CaseOpened,
    ItemsHandedOver,
    NotOpened,
    Reconsideration,
    ReconsiderationUpheld,
    Supervision,
    ReasonsRequested,
    ReasonsAnswered,
    OpeningOrdered,
    SentBack,
}

/// Order 310: 《行政执法机关移送涉嫌犯罪案件的规定》(国务院令第310号，2020年修订).
const ORDER_310: &str = "《行政执法机关移送涉嫌犯罪案件的规定》";
/// 《公安机关办理刑事案件程序规定》(公安部令第159号，2020年修正).
const POLICE_RULES: &str = "《公安机关办理刑事案件程序规定》";
/// 《人民检察院刑事诉讼规则》(2019).
const PROCURATORATE_RULES: &str = "《人民检察院刑事诉讼规则》";
/// How the periods the police and the procuratorate keep are counted.
const CPL_105: &str = "；期间依《刑事诉讼法》第一百零五条计算";

/// The statutory steps, each written once: its `[desk.limits]` key, its
/// default limit and the article it comes from. "日" in these texts is a
/// calendar day (counted from the day after, ending 24:00, a last day on a
/// rest day rolling to the next working day: 《民法典》第二百零一条至第二百零三条);
/// hours never roll.
macro_rules! steps {
    ($( $(#[$doc:meta])* $field:ident => $variant:ident, $amount:expr, $unit:ident, $basis:expr; )*) => {
        /// The statutory steps whose limits are configurable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Step { $( $(#[$doc])* $variant ),* }

        impl Step {
            /// Every step, in the order of the procedure.
            pub const ALL: &'static [Step] = &[$( Step::$variant ),*];

            /// Its key in `[desk.limits]`.
            pub fn key(self) -> &'static str {
                match self { $( Step::$variant => stringify!($field) ),* }
            }

            fn default_rule(self) -> StepRule {
                match self {
                    $( Step::$variant => StepRule {
                        limit: Limit { amount: $amount, unit: Unit::$unit },
                        basis: $basis.concat(),
                    } ),*
                }
            }
        }

        /// `[desk.limits]`: each step as `"3 days"` (the default basis
        /// kept) or `{ limit = "3 days", basis = "…" }`.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawStepLimits { $( #[serde(default)] $field: Option<RawRule>, )* }

        /// The limit and legal basis of each statutory step.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(from = "RawStepLimits")]
        pub struct StepLimits { $( pub $field: StepRule, )* }

        impl From<RawStepLimits> for StepLimits {
            fn from(raw: RawStepLimits) -> Self {
                Self { $( $field: raw.$field.map_or_else(
                    || Step::$variant.default_rule(),
                    |r| r.into_rule(Step::$variant),
                ), )* }
            }
        }

        impl StepLimits {
            /// A step's limit and basis.
            pub fn rule(&self, step: Step) -> &StepRule {
                match step { $( Step::$variant => &self.$field ),* }
            }
        }
    };
}

steps! {
    /// Agency head approves or refuses the referral report.
    approval => Approval, 3, CalendarDays, [ORDER_310, "第五条（3日）"];
    /// Referral delivered to the police after approval.
    delivery => Delivery, 24, Hours, [ORDER_310, "第五条（24小时）"];
    /// Police review and decide 立案 / 不予立案: 3 days, whatever the
    /// police extend (a police extension notice is shown beside it as
    /// information, never a new deadline: no text extends a referral's
    /// review, and a police document cannot extend a State Council
    /// regulation against the transferring agency).
    police_review => PoliceReview, 3, CalendarDays, [ORDER_310, "第八条、", POLICE_RULES, "第一百八十条（3日）", CPL_105];
    /// Agency supplements the materials the police asked for.
    supplement => Supplement, 3, CalendarDays, [POLICE_RULES, "第一百八十条（3日内补正）"];
    /// After 立案, agency hands over items and files.
    items_handover => ItemsHandover, 3, CalendarDays, [ORDER_310, "第十二条（3日）"];
    /// Agency asks the police to reconsider a refusal.
    reconsideration_request => ReconsiderationRequest, 3, CalendarDays, [ORDER_310, "第九条第一款（3日）"];
    /// Police decide the reconsideration.
    reconsideration_decision => ReconsiderationDecision, 3, CalendarDays, [ORDER_310, "第九条第一款（3日）"];
    /// After the police uphold the refusal, agency proposes procuratorate
    /// supervision (建议人民检察院立案监督).
    supervision_proposal => SupervisionProposal, 3, CalendarDays, [ORDER_310, "第九条第二款（3日）"];
    /// Police answer the procuratorate's request for reasons.
    reasons_answer => ReasonsAnswer, 7, CalendarDays, [PROCURATORATE_RULES, "第五百六十条、", POLICE_RULES, "第一百八十二条第一款（7日）", CPL_105];
    /// Procuratorate tells the agency, where the police's reasons stand.
    procuratorate_reply => ProcuratorateReply, 10, CalendarDays, [PROCURATORATE_RULES, "第五百六十一条第二款（理由成立的，10日内告知移送机关）", CPL_105];
    /// Police open the case the procuratorate ordered opened.
    opening_after_order => OpeningAfterOrder, 15, CalendarDays, [PROCURATORATE_RULES, "第五百六十三条、", POLICE_RULES, "第一百八十二条第二款（15日）", CPL_105];
    /// Police notify the agency that materials are incomplete (checked
    /// when the notice arrives, counted from receipt).
    materials_notice => MaterialsNotice, 24, Hours, [POLICE_RULES, "第一百八十条（24小时内书面告知）"];
    /// Police forward a case outside their jurisdiction.
    forward => Forward, 24, Hours, [ORDER_310, "第七条（24小时）"];
}

/// One step's limit and the article it comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRule {
    pub limit: Limit,
    pub basis: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawRule {
    Limit(Limit),
    Rule {
        limit: Limit,
        #[serde(default)]
        basis: Option<String>,
    },
}

impl RawRule {
    fn into_rule(self, step: Step) -> StepRule {
        let default = step.default_rule();
        match self {
            RawRule::Limit(limit) => StepRule {
                limit,
                basis: default.basis,
            },
            RawRule::Rule { limit, basis } => StepRule {
                limit,
                basis: basis.unwrap_or(default.basis),
            },
        }
    }
}

impl Default for StepLimits {
    fn default() -> Self {
        RawStepLimits::default().into()
    }
}

impl StepLimits {
    pub fn of(&self, step: Step) -> Limit {
        self.rule(step).limit
    }

    pub fn basis(&self, step: Step) -> &str {
        &self.rule(step).basis
    }
}

/// Who acts next, what they must do, under which article, within which step.
#[derive(Debug)]
pub struct NextAction {
    pub actor: &'static str,
    pub action: &'static str,
    pub basis: &'static str,
    pub step: Option<Step>,
}

impl RefState {
    /// The state's code, as on the state topic and in filters (`UNDER_REVIEW`).
    pub fn code(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn label(self) -> &'static str {
        match self {
            RefState::Drafted => "草拟移送",
            RefState::AwaitingApproval => "待负责人审批",
            RefState::Refused => "不批准移送（结案）",
            RefState::Approved => "已批准待移送",
            RefState::Referred => "已移送待公安受理",
            RefState::UnderReview => "公安审查中",
            RefState::Forwarded => "已转交管辖",
            RefState::Supplementing => "补充材料中",
            RefState::CaseOpened => "公安已立案",
            RefState::ItemsHandedOver => "已移交涉案物品（办结）",
            RefState::NotOpened => "公安不予立案",
            RefState::Reconsideration => "复议中",
            RefState::ReconsiderationUpheld => "复议维持不予立案",
            RefState::Supervision => "检察院立案监督中",
            RefState::ReasonsRequested => "检察院要求说明理由",
            RefState::ReasonsAnswered => "公安已说明理由",
            RefState::OpeningOrdered => "检察院通知立案",
            RefState::SentBack => "公安退回移送",
        }
    }

    pub fn next(self) -> NextAction {
        let n = |actor, action, basis, step| NextAction {
            actor,
            action,
            basis,
            step,
        };
        match self {
            RefState::Drafted => n("执法局", "呈请负责人审批", "", None),
            RefState::AwaitingApproval => n(
                "执法局负责人",
                "审批是否移送",
                "《规定》第五条",
                Some(Step::Approval),
            ),
            RefState::Approved => n(
                "执法局",
                "向公安机关移送",
                "《规定》第五条",
                Some(Step::Delivery),
            ),
            RefState::Referred => n(
                "公安机关",
                "受理并审查",
                "《规定》第八条",
                Some(Step::PoliceReview),
            ),
            RefState::UnderReview => n(
                "公安机关",
                "作出立案或不予立案决定",
                "《规定》第八条",
                Some(Step::PoliceReview),
            ),
            RefState::Forwarded => n(
                "公安机关",
                "受移送管辖机关审查",
                "《规定》第七条、第八条",
                Some(Step::PoliceReview),
            ),
            RefState::Supplementing => n(
                "执法局",
                "补充移送材料",
                "《公安机关办理刑事案件程序规定》",
                Some(Step::Supplement),
            ),
            RefState::CaseOpened => n(
                "执法局",
                "移交涉案物品及有关材料",
                "《规定》第十二条",
                Some(Step::ItemsHandover),
            ),
            RefState::NotOpened => n(
                "执法局",
                "决定是否提请复议",
                "《规定》第九条",
                Some(Step::ReconsiderationRequest),
            ),
            RefState::Reconsideration => n(
                "公安机关",
                "作出复议决定",
                "《规定》第九条",
                Some(Step::ReconsiderationDecision),
            ),
            RefState::ReconsiderationUpheld => n(
                "执法局",
                "决定是否建议检察院立案监督",
                "《规定》第九条",
                Some(Step::SupervisionProposal),
            ),
            RefState::Supervision => n("检察院", "审查是否要求说明理由", "", None),
            RefState::ReasonsRequested => n(
                "公安机关",
                "向检察院说明不立案理由",
                "《人民检察院刑事诉讼规则》第五百六十条、《公安机关办理刑事案件程序规定》第一百八十二条第一款",
                Some(Step::ReasonsAnswer),
            ),
            RefState::ReasonsAnswered => n(
                "检察院",
                "审查不立案理由；理由成立的，告知执法局",
                "《人民检察院刑事诉讼规则》第五百六十一条第二款",
                Some(Step::ProcuratorateReply),
            ),
            RefState::OpeningOrdered => n(
                "公安机关",
                "依检察院通知立案",
                "《人民检察院刑事诉讼规则》第五百六十三条、《公安机关办理刑事案件程序规定》第一百八十二条第二款",
                Some(Step::OpeningAfterOrder),
            ),
            RefState::Refused | RefState::ItemsHandedOver => n("—", "已办结", "", None),
            RefState::SentBack => n("执法局", "处理退回案件", "", None),
        }
    }

    pub fn closed(self) -> bool {
        matches!(
            self,
            RefState::Refused | RefState::ItemsHandedOver | RefState::SentBack
        )
    }
}

/// Whether an event ends a referral: it moves it to a closed state.
pub fn closes(event_type: &str) -> bool {
    transition(event_type).is_some_and(|(_, s)| s.closed())
}

/// The state an event moves a referral to, and the states it may come
/// from (`None`: no event yet). `None` for events that change no state.
fn transition(event_type: &str) -> Option<(&'static [Option<RefState>], RefState)> {
    use RefState::*;
    Some(match event_type {
        "DRAFTED" => (&[None], Drafted),
        "SUBMITTED" => (&[None, Some(Drafted)], AwaitingApproval),
        "APPROVED" => (&[Some(AwaitingApproval)], Approved),
        "REFUSED" => (&[Some(AwaitingApproval)], Refused),
        "REFERRED" => (&[None, Some(Approved)], Referred),
        "RECEIPTED" => (&[Some(Referred), Some(Forwarded)], UnderReview),
        "FORWARDED" => (&[Some(Referred), Some(UnderReview)], Forwarded),
        "MATERIALS_REQUESTED" => (
            &[Some(Referred), Some(UnderReview), Some(Forwarded)],
            Supplementing,
        ),
        "MATERIALS_SUPPLIED" => (&[Some(Supplementing)], UnderReview),
        "CASE_OPENED" => (
            &[
                Some(UnderReview),
                Some(Forwarded),
                Some(Reconsideration),
                Some(Supervision),
                Some(ReasonsRequested),
                Some(ReasonsAnswered),
                Some(OpeningOrdered),
            ],
            CaseOpened,
        ),
        "RECONSIDERATION_OPENED" => (&[Some(Reconsideration)], CaseOpened),
        "NOT_OPENED" => (&[Some(UnderReview), Some(Forwarded)], NotOpened),
        "RECONSIDERATION_REQUESTED" => (&[Some(NotOpened)], Reconsideration),
        "RECONSIDERATION_UPHELD" => (&[Some(Reconsideration)], ReconsiderationUpheld),
        "SUPERVISION_REQUESTED" => (&[Some(NotOpened), Some(ReconsiderationUpheld)], Supervision),
        "REASONS_REQUESTED" => (
            &[
                Some(Supervision),
                Some(NotOpened),
                Some(ReconsiderationUpheld),
            ],
            ReasonsRequested,
        ),
        "REASONS_ANSWERED" => (&[Some(ReasonsRequested)], ReasonsAnswered),
        "OPENING_ORDERED" => (
            &[
                Some(ReasonsAnswered),
                Some(ReasonsRequested),
                Some(Supervision),
            ],
            OpeningOrdered,
        ),
        "ITEMS_HANDED_OVER" => (&[Some(CaseOpened)], ItemsHandedOver),
        "SENT_BACK" => (
            &[
                Some(Referred),
                Some(UnderReview),
                Some(Forwarded),
                Some(Supplementing),
            ],
            SentBack,
        ),
        _ => return None,
    })
}

/// How an event is called on the timeline.
pub fn event_label(event_type: &str) -> &'static str {
    match event_type {
        "DRAFTED" => "草拟移送书",
        "SUBMITTED" => "呈请审批",
        "APPROVED" => "负责人批准移送",
        "REFUSED" => "负责人不批准移送",
        "REFERRED" => "移送公安机关",
        "RECEIPTED" => "公安受理回执",
        "FORWARDED" => "公安转交管辖",
        "MATERIALS_REQUESTED" => "公安通知补充材料",
        "MATERIALS_SUPPLIED" => "补充移送材料",
        "CASE_OPENED" => "公安立案",
        "RECONSIDERATION_OPENED" => "复议后立案",
        "NOT_OPENED" => "公安不予立案",
        "RECONSIDERATION_REQUESTED" => "提请复议",
        "RECONSIDERATION_UPHELD" => "复议维持不予立案",
        "SUPERVISION_REQUESTED" => "建议检察院立案监督",
        "REASONS_REQUESTED" => "检察院要求说明不立案理由",
        "REASONS_ANSWERED" => "公安说明不立案理由",
        "OPENING_ORDERED" => "检察院通知立案",
        "ITEMS_HANDED_OVER" => "移交涉案物品及材料",
        "SENT_BACK" => "公安退回移送",
        "REVIEW_EXTENDED_10D" | "REVIEW_EXTENDED_30D" => {
            "公安机关延长审查期限通知（仅供参考，不改变法定审查期限）"
        }
        "NOTE" => "工作台备注",
        "REMINDER_SENT" => "已向公安机关催办",
        "ALERT_ACKNOWLEDGED" => "已确认预警",
        _ => "其他事件",
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventSource {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub connector: String,
    pub pipeline: String,
    pub origin: String,
    pub payload_sha256: String,
    pub fetched_at: String,
    /// The event record's `traceparent`: what the tracker writes about its
    /// referral continues the latest event's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl EventSource {
    /// Where an event was read, with the provenance its headers carry.
    pub fn of(
        topic: &str,
        partition: i32,
        offset: i64,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        let p = crate::bus::Provenance::from_headers(headers);
        Self {
            topic: topic.to_owned(),
            partition,
            offset,
            fetched_at: p.fetched_at_text(),
            connector: p.connector,
            pipeline: p.pipeline,
            origin: p.origin,
            payload_sha256: p.payload_sha256,
            traceparent: headers.get(crate::telemetry::trace::HEADER).cloned(),
        }
    }
}

/// One event on a referral's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub id: String,
    pub event_type: String,
    pub label: String,
    pub occurred_at: i64,
    pub source_system: String,
    pub actor_org: Option<String>,
    pub document_no: Option<String>,
    pub reason: Option<String>,
    pub notes: Option<String>,
    pub case_no: Option<String>,
    pub suspect: Option<String>,
    pub offence: Option<String>,
    /// The date a police extension notice names (kept as information).
    #[serde(default)]
    pub named_until: Option<i64>,
    /// When the bureau received it: the exchange's receipt time where the
    /// record gives one, else when the hub fetched it from an outside
    /// system (the file's pickup from the exchange directory, the poll);
    /// `None` for the bureau's own events. The bureau's steps count from
    /// it (310号令 art. 9: 自接到/收到…之日起; art. 12).
    #[serde(default)]
    pub received_at: Option<i64>,
    pub source: EventSource,
    /// Why it does not fit where it falls, if it does not.
    pub flagged: Option<String>,
}

impl TimelineEvent {
    /// From a canonical ReferralEvent (as JSON) and where it was read.
    pub fn from_record(r: &Value, source: EventSource) -> Option<Self> {
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let event_type = s("event_type")?;
        Some(Self {
            id: s("id")?,
            label: event_label(&event_type).to_owned(),
            event_type,
            occurred_at: r.get("occurred_at").and_then(Value::as_i64)?,
            source_system: s("source_system").unwrap_or_default(),
            actor_org: s("actor_org"),
            document_no: s("document_no"),
            reason: s("reason"),
            notes: s("notes"),
            case_no: s("case_no"),
            suspect: r
                .pointer("/suspect/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            offence: s("offence"),
            named_until: r.get("named_until").and_then(Value::as_i64),
            received_at: r.get("received_at").and_then(Value::as_i64).or_else(|| {
                // What another system tells the bureau reaches it when the
                // hub fetched it.
                (s("source_system").as_deref() != Some("enforcement")
                    && s("source_system").as_deref() != Some("desk"))
                .then(|| DateTime::parse_from_rfc3339(&source.fetched_at).ok())
                .flatten()
                .map(|t| t.timestamp_millis())
            }),
            source,
            flagged: None,
        })
    }
}

/// What the desk shows of a referral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralView {
    pub referral_no: String,
    pub case_no: Option<String>,
    pub suspect: Option<String>,
    pub offence: Option<String>,
    pub state: Option<RefState>,
    pub state_label: String,
    pub state_since: Option<i64>,
    pub next_actor: String,
    pub next_action: String,
    /// The running step's `[desk.limits]` key (`approval`…).
    #[serde(default)]
    pub step: Option<String>,
    pub legal_basis: String,
    /// The limit of the running step, as configured (`3 working days`).
    pub limit: Option<String>,
    pub due_at: Option<i64>,
    pub remaining_ms: Option<i64>,
    pub late: bool,
    pub at_risk: bool,
    /// Why the clock could not be computed (a missing calendar year).
    pub clock_error: Option<String>,
    /// Events that did not fit, described.
    pub flags: Vec<String>,
    /// Steps that were done, but after their statutory limit.
    #[serde(default)]
    pub late_steps: Vec<String>,
    /// A police notice extending its review, kept as information beside
    /// the 3-day deadline of 310号令 art. 8, which it does not change.
    #[serde(default)]
    pub police_extension: Option<PoliceExtension>,
    /// What the bureau may do when the police review is late (检察规则
    /// art. 562: ask the procuratorate, which asks the police for reasons
    /// within 7 days).
    #[serde(default)]
    pub late_review_remedy: Option<String>,
    /// Where the running step counts from, in Chinese: the bureau's
    /// receipt, or (no receipt time recorded) the other side's decision
    /// time, or the event's own time.
    #[serde(default)]
    pub counted_from: Option<String>,
    pub events: Vec<TimelineEvent>,
}

/// A police extension notice, as the notice itself says it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoliceExtension {
    /// The notice's own date.
    pub notice_at: i64,
    /// Who approved it (the notice's issuing office, or its stated level).
    pub approved_by: Option<String>,
    /// The date the notice names, where it names one.
    pub named_until: Option<i64>,
    /// What the desk says of it.
    pub note: String,
}

/// The next step after a late police review (人民检察院刑事诉讼规则 art. 562;
/// 310号令 arts. 9, 14).
const LATE_REVIEW_REMEDY: &str = "公安机关未在《行政执法机关移送涉嫌犯罪案件的规定》第八条规定的3日内作出立案或不予立案决定：执法局可以建议人民检察院依法监督，人民检察院可以要求公安机关在7日内说明理由（《人民检察院刑事诉讼规则》第五百六十二条；《规定》第十四条）";

/// Folds a referral's events, in time order, into its view as of `now`.
///
/// Long because the referral procedure (order 310, the police rules) as one
/// state machine: one arm per event type with the clock of the state it
/// leads to, read as one table.
pub fn fold(
    referral_no: &str,
    mut events: Vec<TimelineEvent>,
    limits: &StepLimits,
    at_risk_share: f64,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> ReferralView {
    events.sort_by(|a, b| {
        a.occurred_at
            .cmp(&b.occurred_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    events.dedup_by(|a, b| a.id == b.id);
    let mut state: Option<RefState> = None;
    let mut since: Option<i64> = None;
    let mut flags = Vec::new();
    let mut late_steps = Vec::new();
    // A police extension notice: information beside the 3-day deadline,
    // never a new one.
    let mut police_extension: Option<PoliceExtension> = None;
    let step_of = |s: RefState| s.next().step;
    // Where the running step counts from (see `counted_from`).
    let mut counted_from: Option<String> = None;
    // The police's 3 days run from the first receipt: supplementing
    // materials does not restart them (no text found says it does).
    let mut review_started: Option<i64> = None;
    for e in events.iter_mut() {
        e.flagged = None;
        if matches!(
            e.event_type.as_str(),
            "REVIEW_EXTENDED_10D" | "REVIEW_EXTENDED_30D"
        ) {
            if matches!(state, Some(RefState::UnderReview | RefState::Forwarded)) {
                police_extension = Some(PoliceExtension {
                    notice_at: e.occurred_at,
                    approved_by: e.actor_org.clone(),
                    named_until: e.named_until,
                    note: "公安机关延长审查期限的通知不改变《行政执法机关移送涉嫌犯罪案件的规定》第八条规定的3日审查期限；逾期仍按逾期计".into(),
                });
            } else {
                let why = format!("「{}」只能在公安审查期间，已记录", e.label);
                flags.push(format!(
                    "{}：{why}",
                    crate::calendar::local_text(ms(e.occurred_at))
                ));
                e.flagged = Some(why);
            }
            continue;
        }
        let Some((from, to)) = transition(&e.event_type) else {
            continue; // desk actions and the like: timeline only
        };
        if from.contains(&state) {
            if let (Some(s), Some(started)) = (state, since) {
                // Steps done late stay on the record.
                let step = match e.event_type.as_str() {
                    "MATERIALS_REQUESTED"
                        if matches!(s, RefState::Referred | RefState::UnderReview) =>
                    {
                        Some(Step::MaterialsNotice)
                    }
                    "FORWARDED" => Some(Step::Forward),
                    _ => step_of(s),
                };
                if let Some(step) = step
                    && let Ok(due) = calendar.due(ms(started), limits.of(step))
                    && e.occurred_at > due.timestamp_millis()
                {
                    late_steps.push(format!(
                        "「{}」超过法定期限（{}，期限至{}，实际{}）",
                        e.label,
                        limits.of(step).label(),
                        crate::calendar::local_text(due),
                        crate::calendar::local_text(ms(e.occurred_at))
                    ));
                }
            }
            // The review clock runs from receipt: a forward keeps it, a
            // decision ends it (and what an extension notice said).
            if !matches!(to, RefState::UnderReview | RefState::Forwarded) {
                police_extension = None;
            }
            state = Some(to);
            // A step the bureau must take counts from when it received
            // the other side's document; the others from the event.
            let bureau_acts = to.next().actor.starts_with("执法局");
            let (start, from) = match (bureau_acts, e.received_at) {
                (true, Some(received)) => (received, "自执法局收到之日起算"),
                (true, None) if e.source_system != "enforcement" && e.source_system != "desk" => {
                    (e.occurred_at, "自对方决定时间起算（未记录收到时间）")
                }
                _ => (e.occurred_at, "自事件发生时起算"),
            };
            since = Some(start);
            counted_from = Some(from.to_owned());
            match (e.event_type.as_str(), to) {
                ("RECEIPTED", _) if review_started.is_none() => {
                    review_started = Some(e.occurred_at)
                }
                ("MATERIALS_SUPPLIED", RefState::UnderReview) => {
                    if let Some(first) = review_started {
                        since = Some(first);
                        counted_from = Some("自公安受理之日起算（补充材料不重新计算）".to_owned());
                    }
                }
                _ => {}
            }
        } else {
            let why = format!(
                "「{}」不应发生在「{}」之后，已记录但未改变状态",
                e.label,
                state.map_or("尚无移送记录", RefState::label)
            );
            flags.push(format!(
                "{}：{why}",
                crate::calendar::local_text(ms(e.occurred_at))
            ));
            e.flagged = Some(why);
        }
    }
    let first = |f: fn(&TimelineEvent) -> Option<String>| events.iter().rev().find_map(f);
    let next = state.map(RefState::next);
    let mut view = ReferralView {
        referral_no: referral_no.to_owned(),
        case_no: first(|e| e.case_no.clone()),
        suspect: first(|e| e.suspect.clone()),
        offence: first(|e| e.offence.clone()),
        state,
        state_label: state.map_or("仅有外部事件".into(), |s| s.label().to_owned()),
        state_since: since,
        next_actor: next.as_ref().map_or("—", |n| n.actor).to_owned(),
        next_action: next
            .as_ref()
            .map_or("核实移送记录", |n| n.action)
            .to_owned(),
        step: None,
        legal_basis: String::new(),
        limit: None,
        due_at: None,
        remaining_ms: None,
        late: false,
        at_risk: false,
        clock_error: None,
        flags,
        late_steps,
        police_extension,
        late_review_remedy: None,
        counted_from,
        events,
    };
    let step = state.and_then(step_of);
    view.step = step.map(|s| s.key().to_owned());
    view.legal_basis = match step {
        Some(step) => limits.basis(step).to_owned(),
        None => next.as_ref().map_or("", |n| n.basis).to_owned(),
    };
    if let (Some(step), Some(since)) = (step, since) {
        let limit = limits.of(step);
        view.limit = Some(limit.label());
        let started = ms(since);
        match calendar.due(started, limit) {
            Ok(due) => {
                let total = (due - started).num_milliseconds().max(1);
                let left = (due - now).num_milliseconds();
                view.due_at = Some(due.timestamp_millis());
                view.remaining_ms = Some(left);
                view.late = left < 0;
                view.at_risk = !view.late && (left as f64) < at_risk_share * total as f64;
                if view.late && step == Step::PoliceReview {
                    view.late_review_remedy = Some(LATE_REVIEW_REMEDY.into());
                }
            }
            Err(e) => view.clock_error = Some(e.to_string()),
        }
    }
    view
}

fn ms(t: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t).single().unwrap_or_default()
}

/// Time left as the desk writes it: `剩余 1天3小时` or `逾期 2天5小时`.
pub fn remaining_label(ms: i64) -> String {
    let (word, ms) = if ms < 0 {
        ("逾期", -ms)
    } else {
        ("剩余", ms)
    };
    let hours = ms / 3_600_000;
    let (d, h, m) = (hours / 24, hours % 24, (ms / 60_000) % 60);
    if d > 0 {
        format!("{word} {d}天{h}小时")
    } else if h > 0 {
        format!("{word} {h}小时{m}分")
    } else {
        format!("{word} {m}分")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{parse_time, test_calendar};

    fn ev(id: &str, event_type: &str, at: &str) -> TimelineEvent {
        TimelineEvent {
            id: id.into(),
            event_type: event_type.into(),
            label: event_label(event_type).into(),
            occurred_at: parse_time(at).unwrap().timestamp_millis(),
            source_system: "test".into(),
            actor_org: None,
            document_no: None,
            reason: None,
            notes: None,
            case_no: None,
            suspect: None,
            offence: None,
            named_until: None,
            received_at: None,
            source: EventSource::default(),
            flagged: None,
        }
    }

    fn view(events: Vec<TimelineEvent>, now: &str) -> ReferralView {
        fold(
            "YS-1",
            events,
            &StepLimits::default(),
            0.3,
            &test_calendar(),
            parse_time(now).unwrap(),
        )
    }

    #[test]
    fn received_on_the_friday_before_national_day() {
        // Received Friday 2026-09-25 16:00, the first day of 中秋; 3 days of
        // police review end on 09-28, a working Monday.
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-09-24 09:00"),
                ev("2", "RECEIPTED", "2026-09-25 16:00"),
            ],
            "2026-09-28 12:00",
        );
        assert_eq!(v.state, Some(RefState::UnderReview));
        assert_eq!(v.next_actor, "公安机关");
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-09-28 24:00"
        );
        assert!(!v.late && v.at_risk);
        // Received Wednesday 09-30: the last day 10-03 is a holiday, the
        // period runs to the first working day, 10-08.
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-09-29 09:00"),
                ev("2", "RECEIPTED", "2026-09-30 10:00"),
            ],
            "2026-10-08 23:00",
        );
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-10-08 24:00"
        );
        assert!(!v.late);
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-09-29 09:00"),
                ev("2", "RECEIPTED", "2026-09-30 10:00"),
            ],
            "2026-10-09 00:01",
        );
        assert!(v.late);
    }

    #[test]
    fn approval_deadline_in_national_day_rolls_to_the_next_working_day() {
        // Submitted Wednesday 2026-09-30: 3 日 (order 310 art. 5) are 10-01,
        // 10-02 and 10-03, the last in the holiday (10-01 to 10-07): the
        // period ends on the day after the holiday (Civil Code art. 203).
        let v = view(
            vec![
                ev("1", "DRAFTED", "2026-09-29 09:00"),
                ev("2", "SUBMITTED", "2026-09-30 10:00"),
            ],
            "2026-10-08 20:00",
        );
        assert_eq!(v.state, Some(RefState::AwaitingApproval));
        assert_eq!(v.next_actor, "执法局负责人");
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-10-08 24:00"
        );
        assert!(v.legal_basis.contains("第五条"), "{}", v.legal_basis);
        assert!(v.at_risk && !v.late);
    }

    #[test]
    fn three_day_limits_at_the_holidays_and_make_up_days_of_2026() {
        // (submitted, due): the starting day does not count; a last day on
        // a rest day rolls to the next working day; a make-up working
        // Saturday is a working day.
        for (submitted, due) in [
            // Spring Festival 02-15..02-23; 02-14 is a make-up Saturday.
            ("2026-02-13 10:00", "2026-02-24 24:00"),
            // Qingming 04-04..04-06.
            ("2026-04-01 10:00", "2026-04-07 24:00"),
            // Ends on the make-up Saturday 05-09: it stays there.
            ("2026-05-06 10:00", "2026-05-09 24:00"),
            // Dragon Boat 06-19..06-21.
            ("2026-06-16 10:00", "2026-06-22 24:00"),
            // An ordinary Sunday rolls to Monday.
            ("2026-11-12 10:00", "2026-11-16 24:00"),
            // An ordinary Thursday stays.
            ("2026-11-09 10:00", "2026-11-12 24:00"),
        ] {
            let v = view(vec![ev("1", "SUBMITTED", submitted)], "2026-01-01 00:00");
            assert_eq!(
                crate::calendar::local_text(ms(v.due_at.unwrap())),
                due,
                "submitted {submitted}"
            );
        }
        // Hours never roll: 24 hours from an approval on the eve of
        // National Day end inside the holiday.
        let v = view(
            vec![
                ev("1", "SUBMITTED", "2026-09-29 10:00"),
                ev("2", "APPROVED", "2026-09-30 20:00"),
            ],
            "2026-09-30 21:00",
        );
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-10-01 20:00"
        );
    }

    #[test]
    fn a_police_extension_leaves_a_late_review_late() {
        let events = |ext: Option<&str>| {
            let mut e = vec![
                ev("1", "REFERRED", "2026-11-02 09:00"),
                ev("2", "RECEIPTED", "2026-11-02 10:00"),
            ];
            if let Some(ext) = ext {
                let mut notice = ev("3", ext, "2026-11-04 16:00");
                notice.actor_org = Some("宜昌市公安局（县级以上公安机关负责人批准）".into());
                notice.named_until =
                    Some(parse_time("2026-11-13 00:00").unwrap().timestamp_millis());
                e.push(notice);
            }
            e
        };
        // 3 日 from receipt (310号令 art. 8): 11-05 24:00; late on 11-09.
        let plain = view(events(None), "2026-11-09 09:00");
        assert!(plain.late);
        assert!(
            plain
                .late_review_remedy
                .as_deref()
                .unwrap()
                .contains("第五百六十二条"),
            "{plain:?}"
        );
        // The police extend to 10 or 30 日: still late, the deadline still
        // 11-05; the notice is kept beside it, with its own date, approval
        // and the date it names.
        for code in ["REVIEW_EXTENDED_10D", "REVIEW_EXTENDED_30D"] {
            let v = view(events(Some(code)), "2026-11-09 09:00");
            assert!(
                v.late,
                "{code}: an extension made a late review look on time"
            );
            assert_eq!(
                crate::calendar::local_text(ms(v.due_at.unwrap())),
                "2026-11-05 24:00"
            );
            assert!(v.legal_basis.contains("第八条"), "{}", v.legal_basis);
            let ext = v
                .police_extension
                .as_ref()
                .expect("the notice, as information");
            assert_eq!(
                crate::calendar::local_text(ms(ext.notice_at)),
                "2026-11-04 16:00"
            );
            assert!(ext.approved_by.as_deref().unwrap().contains("负责人批准"));
            assert_eq!(
                crate::calendar::local_text(ms(ext.named_until.unwrap())),
                "2026-11-12 24:00"
            );
            assert!(ext.note.contains("不改变"), "{}", ext.note);
        }
        // On time, the notice changes nothing either.
        let v = view(events(Some("REVIEW_EXTENDED_10D")), "2026-11-05 09:00");
        assert!(!v.late && v.late_review_remedy.is_none());
        // An extension outside the review is kept, flagged, and moves nothing.
        let stray = view(
            vec![
                ev("1", "SUBMITTED", "2026-11-02 09:00"),
                ev("2", "REVIEW_EXTENDED_10D", "2026-11-03 09:00"),
            ],
            "2026-11-03 10:00",
        );
        assert!(stray.police_extension.is_none());
        assert!(!stray.flags.is_empty());
    }

    #[test]
    fn the_bureaus_steps_count_from_when_it_received_the_document() {
        // The police refuse on Friday 2026-09-25; the bureau receives the
        // decision on Wednesday 09-30 10:00. Its 3 日 to ask for
        // reconsideration (310号令 art. 9) count from receipt: 10-01..10-03
        // fall in the National Day holiday, so the period ends 10-08 24:00.
        let mut refusal = ev("3", "NOT_OPENED", "2026-09-25 16:00");
        refusal.source_system = "public_security".into();
        refusal.received_at = Some(parse_time("2026-09-30 10:00").unwrap().timestamp_millis());
        let events = |refusal: TimelineEvent| {
            vec![
                ev("1", "REFERRED", "2026-09-21 09:00"),
                ev("2", "RECEIPTED", "2026-09-21 10:00"),
                refusal,
            ]
        };
        let v = view(events(refusal.clone()), "2026-10-08 20:00");
        assert_eq!(v.state, Some(RefState::NotOpened));
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-10-08 24:00"
        );
        assert!(!v.late, "counted from the decision time it would look late");
        assert!(v.counted_from.as_deref().unwrap().contains("收到"), "{v:?}");
        // Without a receipt time it counts from the decision, and says so:
        // Friday 09-25 + 3 日 ends on Monday 09-28.
        refusal.received_at = None;
        let v = view(events(refusal), "2026-10-08 20:00");
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-09-28 24:00"
        );
        assert!(
            v.counted_from
                .as_deref()
                .unwrap()
                .contains("未记录收到时间"),
            "{v:?}"
        );
    }

    #[test]
    fn supplementing_materials_does_not_restart_the_police_review() {
        let mut request = ev("3", "MATERIALS_REQUESTED", "2026-11-02 16:00");
        request.source_system = "public_security".into();
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-11-02 09:00"),
                ev("2", "RECEIPTED", "2026-11-02 10:00"),
                request,
                ev("4", "MATERIALS_SUPPLIED", "2026-11-04 09:00"),
            ],
            "2026-11-06 09:00",
        );
        assert_eq!(v.state, Some(RefState::UnderReview));
        // 3 日 from the first receipt (11-02): 11-05 24:00, late on 11-06.
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-11-05 24:00"
        );
        assert!(v.late);
        assert!(v.counted_from.as_deref().unwrap().contains("不重新计算"));
    }

    #[test]
    fn the_articles_cited_are_the_texts_own() {
        let l = StepLimits::default();
        assert!(l.basis(Step::ReasonsAnswer).contains("第五百六十条"));
        assert!(
            l.basis(Step::ReasonsAnswer)
                .contains("第一百八十二条第一款")
        );
        assert!(l.basis(Step::OpeningAfterOrder).contains("第五百六十三条"));
        assert!(
            l.basis(Step::OpeningAfterOrder)
                .contains("第一百八十二条第二款")
        );
        assert!(
            l.basis(Step::ProcuratorateReply)
                .contains("第五百六十一条第二款")
        );
        for step in [
            Step::ReasonsAnswer,
            Step::ProcuratorateReply,
            Step::OpeningAfterOrder,
            Step::PoliceReview,
        ] {
            assert!(
                l.basis(step).contains("刑事诉讼法》第一百零五条"),
                "{step:?}"
            );
        }
        for step in Step::ALL {
            let b = l.basis(*step);
            assert!(
                !b.contains("第五百五十九条") && !b.contains("第一百八十一条"),
                "{step:?}: {b}"
            );
        }
    }

    #[test]
    fn after_an_upheld_refusal_the_agency_has_3_days_to_propose_supervision() {
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-11-02 09:00"),
                ev("2", "RECEIPTED", "2026-11-02 10:00"),
                ev("3", "NOT_OPENED", "2026-11-03 10:00"),
                ev("4", "RECONSIDERATION_REQUESTED", "2026-11-04 10:00"),
                ev("5", "RECONSIDERATION_UPHELD", "2026-11-05 10:00"),
            ],
            "2026-11-07 10:00",
        );
        assert_eq!(v.state, Some(RefState::ReconsiderationUpheld));
        assert_eq!(v.next_actor, "执法局");
        // 11-06, 11-07, 11-08 (Sunday) -> Monday 11-09.
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-11-09 24:00"
        );
        assert!(v.legal_basis.contains("第九条第二款"), "{}", v.legal_basis);
    }

    #[test]
    fn the_procuratorate_has_10_days_to_reply_once_the_police_answered() {
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-11-02 09:00"),
                ev("2", "RECEIPTED", "2026-11-02 10:00"),
                ev("3", "NOT_OPENED", "2026-11-03 10:00"),
                ev("4", "REASONS_REQUESTED", "2026-11-04 10:00"),
                ev("5", "REASONS_ANSWERED", "2026-11-06 10:00"),
            ],
            "2026-11-17 10:00",
        );
        assert_eq!(v.state, Some(RefState::ReasonsAnswered));
        assert_eq!(v.next_actor, "检察院");
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-11-16 24:00"
        );
        assert!(v.late);
        assert!(
            v.legal_basis.contains("第五百六十一条"),
            "{}",
            v.legal_basis
        );
    }

    #[test]
    fn twenty_four_hours_to_deliver_across_midnight() {
        let v = view(
            vec![
                ev("1", "SUBMITTED", "2026-11-02 09:00"),
                ev("2", "APPROVED", "2026-11-02 22:30"),
            ],
            "2026-11-03 22:29",
        );
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-11-03 22:30"
        );
        assert!(!v.late && v.at_risk);
        let v = view(
            vec![
                ev("1", "SUBMITTED", "2026-11-02 09:00"),
                ev("2", "APPROVED", "2026-11-02 22:30"),
            ],
            "2026-11-03 22:31",
        );
        assert!(v.late);
    }

    #[test]
    fn a_year_boundary_without_the_next_calendar_is_said_loudly() {
        let v = view(
            vec![ev("1", "SUBMITTED", "2026-12-30 10:00")],
            "2026-12-30 11:00",
        );
        assert!(v.due_at.is_none());
        assert!(
            v.clock_error.as_deref().unwrap().contains("2027"),
            "{:?}",
            v.clock_error
        );
        // Calendar days over New Year need the calendar too (rest days).
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-12-27 10:00"),
                ev("2", "RECEIPTED", "2026-12-29 10:00"),
            ],
            "2026-12-30 11:00",
        );
        assert!(v.clock_error.is_some());
    }

    #[test]
    fn an_event_out_of_order_is_kept_flagged_and_changes_nothing() {
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-11-02 09:00"),
                ev("2", "CASE_OPENED", "2026-11-02 10:00"),
                ev("3", "RECEIPTED", "2026-11-02 11:00"),
            ],
            "2026-11-03 09:00",
        );
        assert_eq!(v.state, Some(RefState::UnderReview));
        assert_eq!(v.events.len(), 3);
        assert!(v.events[1].flagged.as_deref().unwrap().contains("公安立案"));
        assert_eq!(v.flags.len(), 1);
    }

    #[test]
    fn events_arriving_late_are_placed_in_time_order() {
        // The police receipt was ingested before the platform's referral.
        let v = view(
            vec![
                ev("2", "RECEIPTED", "2026-11-03 09:00"),
                ev("1", "REFERRED", "2026-11-02 09:00"),
                ev("2", "RECEIPTED", "2026-11-03 09:00"),
            ],
            "2026-11-04 09:00",
        );
        assert_eq!(v.state, Some(RefState::UnderReview));
        assert!(v.flags.is_empty());
        assert_eq!(v.events.len(), 2, "the duplicate is kept once");
    }

    #[test]
    fn the_supervision_path_ends_with_a_15_day_order() {
        let v = view(
            vec![
                ev("1", "REFERRED", "2026-11-02 09:00"),
                ev("2", "RECEIPTED", "2026-11-02 15:00"),
                ev("3", "NOT_OPENED", "2026-11-04 10:00"),
                ev("4", "RECONSIDERATION_REQUESTED", "2026-11-05 10:00"),
                ev("5", "RECONSIDERATION_UPHELD", "2026-11-06 10:00"),
                ev("6", "SUPERVISION_REQUESTED", "2026-11-09 10:00"),
                ev("7", "REASONS_REQUESTED", "2026-11-10 10:00"),
                ev("8", "REASONS_ANSWERED", "2026-11-16 10:00"),
                ev("9", "OPENING_ORDERED", "2026-11-18 10:00"),
                ev("10", "NOTE", "2026-11-18 11:00"),
            ],
            "2026-11-20 09:00",
        );
        assert_eq!(v.state, Some(RefState::OpeningOrdered));
        assert_eq!(v.limit.as_deref(), Some("15日"));
        assert_eq!(
            crate::calendar::local_text(ms(v.due_at.unwrap())),
            "2026-12-03 24:00"
        );
        assert!(v.flags.is_empty());
    }
}
