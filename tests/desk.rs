//! The two-law linkage desk (两法衔接工作台): twenty referrals' events, as the
//! three systems and the desk write them, replayed through the real broker;
//! the tracker's state, next actor, due time and late flag per referral;
//! a crash and restart; access control over HTTP; and the page in headless
//! Chromium.

use crate::common::{
    self, TestDeployment, brokers, bus, get_text, read, root, terminate, unique, wait_listening,
    wait_until,
};
use chrono::{DateTime, Utc};
use duijie::calendar::{Calendar, local_text, parse_time};
use duijie::desk::{Desk, DeskConfig};
use duijie::intake::{Origin, publish_mapped};
use duijie::keepers::referral::ReferralView;
use duijie::mapping::MappingSet;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Which system tells of an event.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Teller {
    /// The bureau's case system (JSON API): CG drafted, TJ submitted,
    /// PZ approved, BPZ refused.
    Enforcement,
    /// The two-law platform (JSON API): YS referred, FY_SQ reconsideration
    /// requested, JD_* procuratorate, YJ_WP items handed over.
    TwoLaw,
    /// The police exchange (XML files): SLHZ receipt, LA opened, BYLA not
    /// opened, BCCL materials, ZJ forwarded, TH sent back, FYJD_WC upheld,
    /// SMLY reasons answered.
    Police,
    /// A desk officer's note.
    Desk,
}

/// One event: referral, teller, code, local time.
type Ev = (&'static str, Teller, &'static str, &'static str);

use Teller::{Desk as D, Enforcement as E, Police as P, TwoLaw as L};

/// The desk's "now" for the replay: Monday after the 2026 National Day
/// holiday (1–7 October; Saturday 10 October a make-up working day).
const NOW: &str = "2026-10-12 10:00";

/// Twenty referrals, in the order the events reach the bus (not always
/// the order they happened).
const EVENTS: &[Ev] = &[
    // T01 submitted the day before the holiday: 3 日 (order 310 art. 5)
    // end in National Day, so on the first working day after it, 10-08.
    ("YS-2026-T01", E, "CG", "2026-09-30 09:00"),
    ("YS-2026-T01", E, "TJ", "2026-09-30 16:00"),
    // T02 submitted on Friday: 3 日 end on Monday 10-12.
    ("YS-2026-T02", E, "CG", "2026-10-09 08:30"),
    ("YS-2026-T02", E, "TJ", "2026-10-09 09:00"),
    // T03 approved late (the holiday does not count), 24 hours to deliver.
    ("YS-2026-T03", E, "CG", "2026-09-28 09:00"),
    ("YS-2026-T03", E, "TJ", "2026-09-28 10:00"),
    ("YS-2026-T03", E, "PZ", "2026-10-11 16:00"),
    // T04 the whole way, on time.
    ("YS-2026-T04", E, "CG", "2026-09-01 09:00"),
    ("YS-2026-T04", E, "TJ", "2026-09-01 10:00"),
    ("YS-2026-T04", E, "PZ", "2026-09-02 09:00"),
    ("YS-2026-T04", L, "YS", "2026-09-02 15:00"),
    ("YS-2026-T04", P, "SLHZ", "2026-09-03 10:00"),
    ("YS-2026-T04", P, "LA", "2026-09-05 10:00"),
    ("YS-2026-T04", L, "YJ_WP", "2026-09-07 10:00"),
    // T05 received on the last working day before National Day: 3 days end
    // in the holiday, so on the first working day after it.
    ("YS-2026-T05", L, "YS", "2026-09-29 10:00"),
    ("YS-2026-T05", P, "SLHZ", "2026-09-30 15:00"),
    // T06 referred Friday, not yet receipted.
    ("YS-2026-T06", E, "CG", "2026-10-08 09:00"),
    ("YS-2026-T06", E, "TJ", "2026-10-08 09:30"),
    ("YS-2026-T06", E, "PZ", "2026-10-08 16:00"),
    ("YS-2026-T06", L, "YS", "2026-10-09 10:00"),
    // T07 "opened" before it was received: kept, flagged, state untouched.
    ("YS-2026-T07", L, "YS", "2026-10-08 09:00"),
    ("YS-2026-T07", P, "LA", "2026-10-09 10:00"),
    ("YS-2026-T07", P, "SLHZ", "2026-10-10 09:00"),
    // T08 not opened on the last holiday evening: 3 日 to ask for
    // reconsideration (art. 9) end on the make-up Saturday, a working day.
    ("YS-2026-T08", L, "YS", "2026-10-05 10:00"),
    ("YS-2026-T08", P, "SLHZ", "2026-10-06 09:00"),
    ("YS-2026-T08", P, "BYLA", "2026-10-07 18:00"),
    // T09 materials asked for 32 hours after receipt (24 allowed).
    ("YS-2026-T09", L, "YS", "2026-10-07 15:00"),
    ("YS-2026-T09", P, "SLHZ", "2026-10-08 09:00"),
    ("YS-2026-T09", P, "BCCL", "2026-10-09 17:00"),
    // T10 reconsideration requested before the holiday.
    ("YS-2026-T10", L, "YS", "2026-09-24 10:00"),
    ("YS-2026-T10", P, "SLHZ", "2026-09-24 15:00"),
    ("YS-2026-T10", P, "BYLA", "2026-09-28 09:00"),
    ("YS-2026-T10", L, "FY_SQ", "2026-09-30 10:00"),
    // T11 sent back by the police.
    ("YS-2026-T11", L, "YS", "2026-10-08 09:00"),
    ("YS-2026-T11", P, "SLHZ", "2026-10-08 14:00"),
    ("YS-2026-T11", P, "TH", "2026-10-09 10:00"),
    // T12 refused by the head of the bureau.
    ("YS-2026-T12", E, "CG", "2026-10-08 09:00"),
    ("YS-2026-T12", E, "TJ", "2026-10-08 10:00"),
    ("YS-2026-T12", E, "BPZ", "2026-10-09 11:00"),
    // T13 the procuratorate ordered the case opened: 15 days.
    ("YS-2026-T13", L, "YS", "2026-09-01 09:00"),
    ("YS-2026-T13", P, "SLHZ", "2026-09-01 15:00"),
    ("YS-2026-T13", P, "BYLA", "2026-09-03 10:00"),
    ("YS-2026-T13", L, "JD_TQ", "2026-09-05 10:00"),
    ("YS-2026-T13", L, "JD_YQSM", "2026-09-14 10:00"),
    ("YS-2026-T13", P, "SMLY", "2026-09-20 10:00"),
    ("YS-2026-T13", L, "JD_TZLA", "2026-09-28 10:00"),
    // T14 reasons requested before the holiday: 7 days end in it.
    ("YS-2026-T14", L, "YS", "2026-09-15 09:00"),
    ("YS-2026-T14", P, "SLHZ", "2026-09-15 14:00"),
    ("YS-2026-T14", P, "BYLA", "2026-09-17 10:00"),
    ("YS-2026-T14", L, "JD_TQ", "2026-09-20 10:00"),
    ("YS-2026-T14", L, "JD_YQSM", "2026-09-29 09:00"),
    // T15 opened Friday: items and files within 3 日 (art. 12), by Monday.
    ("YS-2026-T15", L, "YS", "2026-10-08 09:00"),
    ("YS-2026-T15", P, "SLHZ", "2026-10-08 14:00"),
    ("YS-2026-T15", P, "LA", "2026-10-09 15:00"),
    // T16 forwarded 27 hours after receipt (24 allowed).
    ("YS-2026-T16", L, "YS", "2026-10-09 09:00"),
    ("YS-2026-T16", P, "SLHZ", "2026-10-10 09:00"),
    ("YS-2026-T16", P, "ZJ", "2026-10-11 12:00"),
    // T17 the same referral event delivered twice (a re-poll).
    ("YS-2026-T17", L, "YS", "2026-10-11 09:00"),
    ("YS-2026-T17", L, "YS", "2026-10-11 09:00"),
    // T18 only drafted.
    ("YS-2026-T18", E, "CG", "2026-10-10 11:00"),
    // T19 reconsideration upheld, and a desk note: 3 日 to propose
    // procuratorate supervision (art. 9 ¶2) end in the Mid-Autumn holiday,
    // so on Monday 09-28; long past.
    ("YS-2026-T19", L, "YS", "2026-09-16 09:00"),
    ("YS-2026-T19", P, "SLHZ", "2026-09-16 14:00"),
    ("YS-2026-T19", P, "BYLA", "2026-09-18 10:00"),
    ("YS-2026-T19", L, "FY_SQ", "2026-09-21 10:00"),
    ("YS-2026-T19", P, "FYJD_WC", "2026-09-23 10:00"),
    ("YS-2026-T19", D, "note", "2026-10-12 09:00"),
    // T20 the receipt reaches the bus before the referral it answers.
    ("YS-2026-T20", P, "SLHZ", "2026-10-11 08:00"),
    ("YS-2026-T20", L, "YS", "2026-10-10 20:00"),
];

/// What the desk must show at [`NOW`]: referral, state, who acts next, due
/// (Asia/Shanghai, `24:00` = end of that day), late, at risk, flagged
/// events, steps done late, events on the timeline.
type Expect = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
    bool,
    usize,
    usize,
    usize,
);

const EXPECTED: &[Expect] = &[
    (
        "YS-2026-T01",
        "AWAITING_APPROVAL",
        "执法局负责人",
        Some("2026-10-08 24:00"),
        true,
        false,
        0,
        0,
        2,
    ),
    (
        "YS-2026-T02",
        "AWAITING_APPROVAL",
        "执法局负责人",
        Some("2026-10-12 24:00"),
        false,
        true,
        0,
        0,
        2,
    ),
    (
        "YS-2026-T03",
        "APPROVED",
        "执法局",
        Some("2026-10-12 16:00"),
        false,
        true,
        0,
        1,
        3,
    ),
    (
        "YS-2026-T04",
        "ITEMS_HANDED_OVER",
        "—",
        None,
        false,
        false,
        0,
        0,
        7,
    ),
    (
        "YS-2026-T05",
        "UNDER_REVIEW",
        "公安机关",
        Some("2026-10-08 24:00"),
        true,
        false,
        0,
        0,
        2,
    ),
    (
        "YS-2026-T06",
        "REFERRED",
        "公安机关",
        Some("2026-10-12 24:00"),
        false,
        true,
        0,
        0,
        4,
    ),
    (
        "YS-2026-T07",
        "UNDER_REVIEW",
        "公安机关",
        Some("2026-10-13 24:00"),
        false,
        false,
        1,
        0,
        3,
    ),
    (
        "YS-2026-T08",
        "NOT_OPENED",
        "执法局",
        Some("2026-10-10 24:00"),
        true,
        false,
        0,
        0,
        3,
    ),
    (
        "YS-2026-T09",
        "SUPPLEMENTING",
        "执法局",
        Some("2026-10-12 24:00"),
        false,
        true,
        0,
        1,
        3,
    ),
    (
        "YS-2026-T10",
        "RECONSIDERATION",
        "公安机关",
        Some("2026-10-08 24:00"),
        true,
        false,
        0,
        0,
        4,
    ),
    (
        "YS-2026-T11",
        "SENT_BACK",
        "执法局",
        None,
        false,
        false,
        0,
        0,
        3,
    ),
    ("YS-2026-T12", "REFUSED", "—", None, false, false, 0, 0, 3),
    (
        "YS-2026-T13",
        "OPENING_ORDERED",
        "公安机关",
        Some("2026-10-13 24:00"),
        false,
        true,
        0,
        0,
        7,
    ),
    (
        "YS-2026-T14",
        "REASONS_REQUESTED",
        "公安机关",
        Some("2026-10-08 24:00"),
        true,
        false,
        0,
        0,
        5,
    ),
    (
        "YS-2026-T15",
        "CASE_OPENED",
        "执法局",
        Some("2026-10-12 24:00"),
        false,
        true,
        0,
        0,
        3,
    ),
    (
        "YS-2026-T16",
        "FORWARDED",
        "公安机关",
        Some("2026-10-14 24:00"),
        false,
        false,
        0,
        1,
        3,
    ),
    (
        "YS-2026-T17",
        "REFERRED",
        "公安机关",
        Some("2026-10-14 24:00"),
        false,
        false,
        0,
        0,
        1,
    ),
    (
        "YS-2026-T18",
        "DRAFTED",
        "执法局",
        None,
        false,
        false,
        0,
        0,
        1,
    ),
    (
        "YS-2026-T19",
        "RECONSIDERATION_UPHELD",
        "执法局",
        Some("2026-09-28 24:00"),
        true,
        false,
        0,
        0,
        6,
    ),
    (
        "YS-2026-T20",
        "UNDER_REVIEW",
        "公安机关",
        Some("2026-10-14 24:00"),
        false,
        false,
        0,
        0,
        2,
    ),
];

/// A suspect per referral: companies by credit code, people by ID number.
fn suspect(no: &str) -> (bool, &'static str, &'static str) {
    match no.as_bytes().last().copied().unwrap_or(b'0') % 3 {
        0 => (true, "宜昌桃花岭食品有限公司", "91420500MA4F0N5Q8W"),
        1 => (false, "周静", "420502199802177668"),
        _ => (true, "湖北三峡渣土运输有限公司", "91420506DJHGX2937D"),
    }
}

/// The event id as the teller numbers it: the referral and the event's
/// place in the referral's own sequence (so a repeated event repeats its
/// id).
fn event_id(ev: &Ev) -> String {
    let (no, from, code, at) = *ev;
    format!(
        "{}{}{}",
        no.replace('-', ""),
        code,
        at.replace([' ', ':', '-'], "")
    ) + match from {
        E => "E",
        L => "L",
        P => "P",
        D => "D",
    }
}

/// The payload as the teller sends it.
fn payload(ev: &Ev) -> String {
    let (no, from, code, at) = *ev;
    let (company, name, id) = suspect(no);
    let suspect_json = if company {
        serde_json::json!({ "name": name, "type": "1", "creditCode": id })
    } else {
        serde_json::json!({ "name": name, "type": "3", "idNo": id })
    };
    let case_no = format!("宜高综执罚〔2026〕{}号", &no[8..]);
    match from {
        E => serde_json::json!({
            "eventId": event_id(ev), "transferNo": no, "eventType": code, "eventTime": format!("{at}:00"),
            "orgName": "宜昌高新区综合行政执法局", "orgCode": "11420500MB15077941", "caseNo": case_no,
            "crime": "重大责任事故罪", "content": "移送流程", "suspect": suspect_json,
            "updateTime": format!("{at}:00.000"),
        })
        .to_string(),
        L => serde_json::json!({
            "eventId": event_id(ev), "transferNo": no, "eventCode": code, "eventTime": format!("{at}:00"),
            "orgName": if code.starts_with("JD") { "宜昌高新区人民检察院" } else { "宜昌高新区综合行政执法局" },
            "orgCode": "11420500MB15077941", "caseNo": case_no, "docNo": "宜高检【2026】1号",
            "content": "两法衔接平台事件", "crime": "重大责任事故罪", "suspect": suspect_json,
            "updateTime": format!("{at}:00.000"),
        })
        .to_string(),
        P => {
            let person = if company {
                format!("<XYR lx=\"1\"><XM>{name}</XM><TYSHXYDM>{id}</TYSHXYDM></XYR>")
            } else {
                format!("<XYR lx=\"3\"><XM>{name}</XM><ZJHM>{id}</ZJHM></XYR>")
            };
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GAJS xmlns=\"urn:gov:police:exchange:2019\" bbh=\"1.0\"><XXBH>{}</XXBH><XXLX>{code}</XXLX><YSBH>{no}</YSBH><AJBH>{case_no}</AJBH><GAAJBH>A{}</GAAJBH><BLDW dm=\"420502000000\">宜昌市公安局高新区分局</BLDW><SJ>{at}:00</SJ><WSH>宜公高(刑)字〔2026〕1号</WSH><LY>经审查，现有证据不足以证明有犯罪事实。</LY><SXZM>重大责任事故罪</SXZM>{person}</GAJS>\n",
                event_id(ev),
                no.replace('-', "")
            )
        }
        D => serde_json::json!({
            "actionId": event_id(ev), "referralNo": no, "action": code,
            "at": parse_time(at).unwrap().timestamp_millis(), "officer": "张伟", "text": "已电话联系高新分局承办民警",
        })
        .to_string(),
    }
}

fn mapping_of(from: Teller) -> &'static str {
    match from {
        E => "referral_enforcement",
        L => "referral_two_law",
        P => "referral_police",
        D => "referral_desk",
    }
}

fn calendar() -> Arc<Calendar> {
    Arc::new(Calendar::load_dir(&root().join("calendar")).unwrap())
}

fn desk_config(events: &str, tag: &str) -> DeskConfig {
    toml::from_str(&format!(
        r#"
events_topic = "{events}"
state_topic = "referrals.state.{tag}"
alerts_topic = "referrals.alerts.{tag}"
audit_topic = "desk.audit.{tag}"
[users."officer-token-0000000001"]
name = "张伟"
role = "officer"
[users."supervisor-token-000000001"]
name = "王芳"
role = "supervisor"
"#
    ))
    .unwrap()
}

/// Publishes events as their pipelines would: through their mappings,
/// with provenance.
async fn publish(bus: &duijie::bus::Bus, topic: &str, mappings: &MappingSet, events: &[Ev]) {
    publish_about(bus, topic, mappings, events, |_| None).await;
}

/// [`publish`], each event continuing the trace `about` gives it.
async fn publish_about(
    bus: &duijie::bus::Bus,
    topic: &str,
    mappings: &MappingSet,
    events: &[Ev],
    about: impl Fn(usize) -> Option<String>,
) {
    let producer = bus.producer().unwrap();
    for (i, ev) in events.iter().enumerate() {
        let about = about(i);
        let mapping = mappings.get(mapping_of(ev.1)).unwrap();
        let origin = format!("test replay {}", event_id(ev));
        publish_mapped(
            &producer,
            topic,
            &mapping,
            payload(ev).as_bytes(),
            &Origin {
                connector: "test",
                pipeline: mapping_of(ev.1),
                origin: &origin,
                fetched_at_ms: parse_time(ev.3).unwrap().timestamp_millis(),
                about: about.as_deref(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{ev:?} does not map: {e}"));
    }
}

fn assert_expected(views: &BTreeMap<String, ReferralView>) {
    let mut problems = Vec::new();
    for &(no, state, actor, due, late, at_risk, flags, late_steps, events) in EXPECTED {
        let Some(v) = views.get(no) else {
            problems.push(format!("{no}: missing"));
            continue;
        };
        let got = (
            v.state.map(|s| s.code()).unwrap_or_default(),
            v.next_actor.as_str(),
            v.due_at
                .and_then(DateTime::from_timestamp_millis)
                .map(local_text),
            v.late,
            v.at_risk,
            v.flags.len(),
            v.late_steps.len(),
            v.events.len(),
        );
        let want = (
            state.to_owned(),
            actor,
            due.map(str::to_owned),
            late,
            at_risk,
            flags,
            late_steps,
            events,
        );
        if got != want {
            problems.push(format!(
                "{no}: got {got:?}, want {want:?}; flags {:?}; late steps {:?}",
                v.flags, v.late_steps
            ));
        }
    }
    assert_eq!(
        views.len(),
        EXPECTED.len(),
        "referrals tracked: {:?}",
        views.keys().collect::<Vec<_>>()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn now() -> DateTime<Utc> {
    parse_time(NOW).unwrap()
}

async fn wait_views(
    desk: &Desk,
    what: &str,
    check: impl Fn(&BTreeMap<String, ReferralView>) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if check(&desk.tracker.views.read().unwrap()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the tracker completed `n` more alert rounds than now (each
/// recomputes every clock and writes its alerts): what "nothing happened"
/// is judged after, instead of a fixed sleep.
async fn wait_rounds(desk: &Desk, n: u64, what: &str) {
    use std::sync::atomic::Ordering::Acquire;
    let target = desk.tracker.alert_rounds.load(Acquire) + n;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while desk.tracker.alert_rounds.load(Acquire) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Topics of a tracker under test (events on three partitions), and
/// trackers on them with the fixed clock.
struct TrackerFixture {
    bus: duijie::bus::Bus,
    config: DeskConfig,
    events_topic: String,
    schemas: Arc<duijie::schema::SchemaSet>,
    mappings: MappingSet,
}

impl TrackerFixture {
    async fn new(tag: &str) -> Self {
        let bus = common::bus(&brokers());
        let tag = unique(tag);
        let events_topic = format!("referral-events-{tag}");
        let config = desk_config(&events_topic, &tag);
        let mut topics = vec![duijie::bus::TopicSpec {
            name: events_topic.clone(),
            partitions: 3,
            cleanup: duijie::bus::Cleanup::Delete,
        }];
        for (name, cleanup) in [
            (&config.state_topic, duijie::bus::Cleanup::Compact),
            (&config.alerts_topic, duijie::bus::Cleanup::Delete),
            (&config.audit_topic, duijie::bus::Cleanup::Keep),
        ] {
            topics.push(duijie::bus::TopicSpec {
                name: name.clone(),
                partitions: 1,
                cleanup,
            });
        }
        bus.ensure_topics(&topics).await.unwrap();
        let schemas = Arc::new(common::schemas());
        let mappings = MappingSet::load_dir(&root().join("mappings"), &schemas).unwrap();
        Self {
            bus,
            config,
            events_topic,
            schemas,
            mappings,
        }
    }

    fn desk(&self) -> Desk {
        Desk::new(
            self.config.clone(),
            self.bus.clone(),
            self.bus.producer().unwrap(),
            self.schemas.clone(),
            calendar(),
            self.mappings.get("referral_desk").unwrap(),
        )
        .with_clock(now)
    }
}

/// The trace id of a `traceparent`.
fn trace_id(headers: &BTreeMap<String, String>) -> Option<String> {
    Some(headers.get("traceparent")?.split('-').nth(1)?.to_owned())
}

/// What the tracker writes about a referral continues the referral's
/// trace: its state and its alerts carry the trace of an event of that
/// referral, the state last written that of its latest event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_tracker_writes_about_a_referral_continues_its_events_trace() {
    let _traces = duijie::telemetry::trace::Traces::install(None, "desk-test").unwrap();
    let fixture = TrackerFixture::new("desk-trace").await;
    // Each event as fetched in a trace of its own.
    publish_about(
        &fixture.bus,
        &fixture.events_topic,
        &fixture.mappings,
        EVENTS,
        |i| Some(format!("00-{:032x}-{:016x}-01", i + 1, i + 1)),
    )
    .await;
    let desk = fixture.desk();
    let stop = CancellationToken::new();
    let running = tokio::spawn(desk.tracker.clone().run(stop.clone()));
    let events_total = EXPECTED.iter().map(|e| e.8).sum::<usize>();
    wait_views(&desk, "all twenty referrals", |v| {
        v.len() == EXPECTED.len()
            && v.values().map(|r| r.events.len()).sum::<usize>() == events_total
    })
    .await;
    wait_rounds(&desk, 2, "the alerts of every referral").await;
    stop.cancel();
    let _ = running.await;
    let read = |topic: String| {
        let bus = fixture.bus.clone();
        async move {
            duijie::bus::inspect::read_topic(&bus, &topic, false)
                .await
                .unwrap()
        }
    };
    // Each referral's events' traces, in order.
    let mut traces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in read(fixture.events_topic.clone()).await {
        let no = String::from_utf8(r.key.clone().unwrap()).unwrap();
        traces
            .entry(no)
            .or_default()
            .push(trace_id(&r.headers).expect("every event carries its trace"));
    }
    let mut last_state: BTreeMap<String, String> = BTreeMap::new();
    for r in read(fixture.config.state_topic.clone()).await {
        let no = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let t =
            trace_id(&r.headers).unwrap_or_else(|| panic!("the state of {no} carries no trace"));
        assert!(
            traces[&no].contains(&t),
            "{no}: state in a trace none of its events is in"
        );
        last_state.insert(no, t);
    }
    assert_eq!(last_state.len(), EXPECTED.len());
    // The latest event each referral took (a redelivered event changes
    // nothing, its trace included).
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (i, ev) in EVENTS.iter().enumerate() {
        if seen.insert(event_id(ev)) {
            latest.insert(ev.0.to_owned(), format!("{:032x}", i + 1));
        }
    }
    assert_eq!(
        last_state, latest,
        "the last state continues the latest event"
    );
    let alerts = read(fixture.config.alerts_topic.clone()).await;
    assert!(!alerts.is_empty(), "the story has late referrals");
    for r in alerts {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let no = key.split(':').nth(1).unwrap();
        let t = trace_id(&r.headers).unwrap_or_else(|| panic!("the alert {key} carries no trace"));
        assert!(
            traces[no].contains(&t),
            "{key}: an alert in a trace none of its events is in"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_referrals_replayed_through_the_broker_survive_a_crash() {
    let fixture = TrackerFixture::new("desk").await;
    let (bus, config, events_topic) = (
        fixture.bus.clone(),
        fixture.config.clone(),
        fixture.events_topic.clone(),
    );
    let mappings = &fixture.mappings;
    let new_desk = || fixture.desk();

    // The first two thirds of the events, then a tracker that crashes.
    let split = EVENTS.len() * 2 / 3;
    publish(&bus, &events_topic, mappings, &EVENTS[..split]).await;
    let first = new_desk();
    let crashed = tokio::spawn(first.tracker.clone().run(CancellationToken::new()));
    let seen: usize = EVENTS[..split]
        .iter()
        .map(|e| e.0)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    wait_views(&first, "the first tracker to see the first events", |v| {
        v.len() == seen
    })
    .await;
    crashed.abort();
    let _ = crashed.await;

    // The rest arrives while no tracker runs; a new one picks up from the
    // state topic and its group's offsets.
    publish(&bus, &events_topic, mappings, &EVENTS[split..]).await;
    let second = new_desk();
    let stop = CancellationToken::new();
    let running = tokio::spawn(second.tracker.clone().run(stop.clone()));
    let events_total = EXPECTED.iter().map(|e| e.8).sum::<usize>();
    wait_views(&second, "all twenty referrals", |v| {
        v.len() == EXPECTED.len()
            && v.values().map(|r| r.events.len()).sum::<usize>() == events_total
    })
    .await;
    assert_expected(&second.tracker.views.read().unwrap());

    // Each event once on its referral's timeline, with where it came from.
    let t09 = second.tracker.views.read().unwrap()["YS-2026-T09"].clone();
    let receipt = t09
        .events
        .iter()
        .find(|e| e.event_type == "RECEIPTED")
        .unwrap();
    assert_eq!(receipt.source_system, "public_security");
    assert_eq!(receipt.source.pipeline, "referral_police");
    assert_eq!(receipt.source.topic, events_topic);
    assert_eq!(receipt.source.payload_sha256.len(), 64);
    assert!(t09.late_steps[0].contains("24小时"), "{:?}", t09.late_steps);
    let t07 = second.tracker.views.read().unwrap()["YS-2026-T07"].clone();
    let flagged: Vec<_> = t07
        .events
        .iter()
        .filter(|e| e.flagged.is_some())
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(flagged, ["CASE_OPENED"]);
    let t19 = second.tracker.views.read().unwrap()["YS-2026-T19"].clone();
    assert_eq!(t19.events.last().unwrap().event_type, "NOTE");
    assert_eq!(t19.events.last().unwrap().source_system, "desk");

    // Late and at-risk referrals are alerts, once each, crash or not.
    let alerts_topic = config.alerts_topic.clone();
    let late_now: Vec<&str> = EXPECTED.iter().filter(|e| e.4).map(|e| e.0).collect();
    let brokers = brokers();
    let alerts = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "late alerts", || {
            let a = common::read(&brokers, &alerts_topic, false);
            late_now.iter().all(|no| {
                a.iter().any(|r| {
                    r.key_str().starts_with(&format!("referral:{no}:"))
                        && r.key_str().ends_with(":late")
                })
            })
        });
        common::read(&brokers, &alerts_topic, false)
    })
    .await
    .unwrap();
    let mut keys: Vec<String> = alerts.iter().map(|r| r.key_str()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "an alert raised twice: {keys:?}");
    let t01 = alerts
        .iter()
        .find(|r| {
            r.key_str()
                .starts_with("referral:YS-2026-T01:AWAITING_APPROVAL:")
                && r.key_str().ends_with(":late")
        })
        .expect("T01's late alert");
    let body: serde_json::Value = serde_json::from_slice(t01.payload.as_deref().unwrap()).unwrap();
    assert_eq!(body["kind"], "REFERRAL_LATE");
    assert!(
        body["message"].as_str().unwrap().contains("YS-2026-T01"),
        "{body}"
    );

    // Stopped and started again: the same state, rebuilt from the topic.
    let before = second.tracker.views.read().unwrap().clone();
    stop.cancel();
    running.await.unwrap();
    let third = new_desk();
    let stop = CancellationToken::new();
    let running = tokio::spawn(third.tracker.clone().run(stop.clone()));
    wait_views(&third, "the restarted tracker", |v| {
        v.len() == EXPECTED.len()
    })
    .await;
    wait_rounds(&third, 2, "two rounds of the restarted tracker").await;
    assert_eq!(
        *third.tracker.views.read().unwrap(),
        before,
        "the restarted tracker rebuilt a different state"
    );
    stop.cancel();
    running.await.unwrap();
    let after = duijie::bus::inspect::read_topic(&bus, &config.alerts_topic, false)
        .await
        .unwrap();
    assert_eq!(after.len(), n, "the restart raised alerts again");
}

/// Two instances' trackers split the referrals by partition of the events
/// topic: each tracks and alerts only its own, every alert is raised once,
/// and when one stops the other takes its referrals over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trackers_split_the_referrals_by_partition_and_one_takes_over() {
    let fixture = TrackerFixture::new("desk-split").await;
    let (bus, config, events_topic) = (
        fixture.bus.clone(),
        fixture.config.clone(),
        fixture.events_topic.clone(),
    );
    let mappings = &fixture.mappings;
    let new_desk = || fixture.desk();
    let (a, b) = (new_desk(), new_desk());
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let running_a = tokio::spawn(a.tracker.clone().run(stop_a.clone()));
    let running_b = tokio::spawn(b.tracker.clone().run(stop_b.clone()));
    let partitions = |d: &Desk| d.tracker.tracked_partitions.read().unwrap().clone();
    let all: std::collections::BTreeSet<i32> = [0, 1, 2].into();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (pa, pb) = (partitions(&a), partitions(&b));
        if !pa.is_empty() && !pb.is_empty() && pa.is_disjoint(&pb) && &pa | &pb == all {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trackers did not split the partitions: {pa:?} / {pb:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    publish(&bus, &events_topic, mappings, EVENTS).await;
    let events_total = EXPECTED.iter().map(|e| e.8).sum::<usize>();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (va, vb) = (
            a.tracker.views.read().unwrap().clone(),
            b.tracker.views.read().unwrap().clone(),
        );
        let tracked: usize = va.values().chain(vb.values()).map(|v| v.events.len()).sum();
        if va.len() + vb.len() == EXPECTED.len() && tracked == events_total {
            assert!(
                va.keys().all(|k| !vb.contains_key(k)),
                "a referral tracked twice"
            );
            assert!(
                !va.is_empty() && !vb.is_empty(),
                "one tracker took everything"
            );
            let mut union = va.clone();
            union.extend(vb);
            assert_expected(&union);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {} + {} referrals tracked",
            va.len(),
            vb.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each late referral alerted once, by whichever tracker holds it.
    let late_now: Vec<&str> = EXPECTED.iter().filter(|e| e.4).map(|e| e.0).collect();
    let alerts_topic = config.alerts_topic.clone();
    let brokers = brokers();
    let read_alerts = {
        let (brokers, alerts_topic) = (brokers.clone(), alerts_topic.clone());
        move || {
            let (brokers, alerts_topic) = (brokers.clone(), alerts_topic.clone());
            let late_now = late_now.clone();
            tokio::task::spawn_blocking(move || {
                wait_until(Duration::from_secs(30), "late alerts", || {
                    let a = common::read(&brokers, &alerts_topic, false);
                    late_now.iter().all(|no| {
                        a.iter().any(|r| {
                            r.key_str().starts_with(&format!("referral:{no}:"))
                                && r.key_str().ends_with(":late")
                        })
                    })
                });
                common::read(&brokers, &alerts_topic, false)
            })
        }
    };
    let once = |alerts: &[duijie::bus::inspect::ReadRecord]| {
        let mut keys: Vec<String> = alerts.iter().map(|r| r.key_str()).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "an alert raised twice: {keys:?}");
        n
    };
    let raised = once(&read_alerts().await.unwrap());

    // One instance stops: the other takes its partitions and referrals
    // over, as they were, and raises nothing again.
    stop_a.cancel();
    running_a.await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while partitions(&b) != all {
        assert!(
            std::time::Instant::now() < deadline,
            "the survivor did not take the partitions over: {:?}",
            partitions(&b)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_views(&b, "every referral on the survivor", |v| {
        v.len() == EXPECTED.len()
            && v.values().map(|r| r.events.len()).sum::<usize>() == events_total
    })
    .await;
    assert_expected(&b.tracker.views.read().unwrap());
    // Two rounds of alerts on the survivor with every partition: whatever
    // the takeover would raise is written by then.
    wait_rounds(&b, 2, "two alert rounds on the survivor").await;
    assert_eq!(
        once(&read_alerts().await.unwrap()),
        raised,
        "the takeover raised alerts again"
    );
    stop_b.cancel();
    running_b.await.unwrap();
}

// ---------------------------------------------------------------------------
// Over HTTP, with the hub binary: the deployment's [desk] and [http].

/// A hub whose three referral pipelines read exchange folders (with every
/// event of [`EVENTS`] but the desk's), and the desk on a free port.
struct DeskHub {
    deployment: TestDeployment,
    /// `127.0.0.1:port`.
    addr: String,
    events_topic: String,
}

fn desk_hub() -> DeskHub {
    desk_hub_with("")
}

/// The desk hub with more of `[desk]` (its sub-tables) appended.
fn desk_hub_with(desk_more: &str) -> DeskHub {
    let port = common::free_port();
    let tag = unique("deskhub");
    let pipelines = format!(
        r#"
[http]
listen = "127.0.0.1:{port}"

[pipelines.police]
system = "public_security"
mapping = "referral_police"
topic = "events.{tag}"
schedule = "*/1 * * * * *"
[pipelines.police.source]
kind = "file_drop"
dir = "police"
layout = "xml"
record_element = "GAJS"
encoding = "auto"
settle = "0s"

[pipelines.two_law]
system = "two_law"
mapping = "referral_two_law"
topic = "events.{tag}"
schedule = "*/1 * * * * *"
[pipelines.two_law.source]
kind = "file_drop"
dir = "two_law"
layout = "jsonl"
settle = "0s"

[pipelines.enforcement]
system = "enforcement"
mapping = "referral_enforcement"
topic = "events.{tag}"
schedule = "*/1 * * * * *"
[pipelines.enforcement.source]
kind = "file_drop"
dir = "enforcement"
layout = "jsonl"
settle = "0s"

[desk]
events_topic = "events.{tag}"
state_topic = "state.{tag}"
alerts_topic = "alerts.{tag}"
audit_topic = "audit.{tag}"
[desk.users."officer-token-0000000001"]
name = "张伟"
role = "officer"
[desk.users."supervisor-token-000000001"]
name = "王芳"
role = "supervisor"
{desk_more}
"#
    );
    let d = TestDeployment::with_hub(
        &brokers(),
        &format!("calendar = \"{}\"", root().join("calendar").display()),
        &pipelines,
    );
    let dirs = d.dir.path().to_path_buf();
    for sub in ["police", "two_law", "enforcement"] {
        std::fs::create_dir_all(dirs.join(sub)).unwrap();
    }
    // The events drop into the exchange folders as the systems write them.
    let mut enforcement = String::new();
    let mut two_law = String::new();
    for ev in EVENTS.iter().filter(|e| e.1 != D) {
        match ev.1 {
            E => enforcement.push_str(&(payload(ev) + "\n")),
            L => two_law.push_str(&(payload(ev) + "\n")),
            P => std::fs::write(
                dirs.join("police").join(format!("GA_{}.xml", event_id(ev))),
                payload(ev),
            )
            .unwrap(),
            D => {}
        }
    }
    write_atomically(&dirs.join("enforcement").join("events.jsonl"), &enforcement);
    write_atomically(&dirs.join("two_law").join("events.jsonl"), &two_law);
    DeskHub {
        deployment: d,
        addr: format!("127.0.0.1:{port}"),
        events_topic: format!("events.{tag}"),
    }
}

fn write_atomically(path: &Path, text: &str) {
    let part = path.with_extension("part");
    std::fs::write(&part, text).unwrap();
    std::fs::rename(part, path).unwrap();
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Behind a TLCP gateway (GB/T 39786-2021 level 3, user authentication):
/// the identity the gateway asserts opens the desk as that officer, and
/// what the officer does is audited under their name; the same header
/// from any other address opens nothing; an identity not listed opens
/// nothing; the token login is closed.
#[test]
fn the_desk_believes_the_gateways_asserted_identity_and_only_from_the_gateway() {
    let h = desk_hub_with(
        r#"
[desk.gateway]
addresses = ["127.0.0.2"]
header = "x-client-identity"
[desk.gateway.users."sn:4A2F00C3B19D7E51"]
name = "李娜"
role = "officer"
"#,
    );
    let hub = h.deployment.spawn();
    wait_listening(&h.addr);
    let base = format!("http://{}", h.addr);
    let via_gateway = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let elsewhere = http();
    common::block_on(async {
        let asserted = ("x-client-identity", "sn:4A2F00C3B19D7E51");
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let r = via_gateway
                .get(format!("{base}/desk/api/referrals"))
                .header(asserted.0, asserted.1)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "the gateway's officer");
            let rows: Vec<serde_json::Value> = r.json().await.unwrap();
            if rows.len() == EXPECTED.len() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} referrals",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The officer acts; the audit names them.
        let r = via_gateway
            .post(format!("{base}/desk/api/referrals/YS-2026-T01/actions"))
            .header(asserted.0, asserted.1)
            .json(&serde_json::json!({"action": "note", "text": "经网关登录的记录"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let audit = via_gateway
            .get(format!("{base}/desk/audit"))
            .header(asserted.0, asserted.1)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            audit.contains("李娜"),
            "the audit does not name the gateway's officer"
        );

        // The same header from an address that is not the gateway.
        for path in ["/desk", "/desk/api/referrals"] {
            let r = elsewhere
                .get(format!("{base}{path}"))
                .header(asserted.0, asserted.1)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                401,
                "{path}: header from outside the gateway"
            );
        }
        // An identity the desk does not know, from the gateway.
        let r = via_gateway
            .get(format!("{base}/desk/api/referrals"))
            .header(asserted.0, "sn:0000000000000001")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "an unlisted identity");
        // The token login is closed behind the gateway (`tokens` not set).
        let r = elsewhere
            .get(format!("{base}/desk/api/referrals"))
            .header("Authorization", "Bearer officer-token-0000000001")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "a token behind the gateway");
        let r = elsewhere
            .post(format!("{base}/desk/login"))
            .form(&[("token", "officer-token-0000000001")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            401,
            "the token login behind the gateway"
        );
    });
    drop(hub);
}

/// The audit trail on Apache Kafka: what the desk audited verifies (SM3
/// chain, the hub's SM2 signatures), and copies of the topic with one entry
/// changed, one removed and two swapped are each named at the right offset
/// by `duijie audit verify`.
#[test]
fn audit_verify_finds_a_changed_a_removed_and_a_reordered_entry_at_its_offset() {
    let h = desk_hub();
    let d = &h.deployment;
    // The hub signs with the demo key.
    let key = root().join("pipelines/secrets/hub_sm2_key.pem");
    let text = std::fs::read_to_string(&d.file).unwrap().replacen(
        "\n\n[kafka]",
        &format!(
            "\n\n[hub.signing]\nkey = \"${{file:{}}}\"\n\n[kafka]",
            key.display()
        ),
        1,
    );
    std::fs::write(&d.file, text).unwrap();
    let audit_topic = std::fs::read_to_string(&d.file)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("audit_topic = \"")
                .map(|t| t.trim_end_matches('"').to_owned())
        })
        .unwrap();
    let hub = d.spawn();
    wait_listening(&h.addr);
    let base = format!("http://{}", h.addr);
    common::block_on(async {
        for _ in 0..6 {
            let r = http()
                .get(format!("{base}/desk/api/referrals"))
                .header("Authorization", "Bearer officer-token-0000000001")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    });
    let brokers = brokers();
    wait_until(Duration::from_secs(30), "six audit entries", || {
        read(&brokers, &audit_topic, true).len() >= 6
    });
    terminate(hub);
    let verify = |topic: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_duijie"))
            .args(["audit", "verify", "--topic", topic, "--config"])
            .arg(&d.file)
            .env("DUIJIE_KAFKA_BROKERS", &brokers)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = verify(&audit_topic);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("ok: nothing changed, removed or reordered"),
        "{stdout}"
    );
    let records = read(&brokers, &audit_topic, true);
    let n = records.len();
    assert!(
        stdout.contains(&format!("{n} SM2 signature(s) verified")),
        "{stdout}"
    );
    // One writer: one key, one partition, in order.
    assert_eq!(
        records
            .iter()
            .map(|r| r.key_str())
            .collect::<BTreeSet<_>>()
            .len(),
        1
    );

    let copy = |what: &str, edit: &dyn Fn(&mut Vec<Vec<u8>>)| -> (Option<i32>, String) {
        let mut payloads: Vec<Vec<u8>> =
            records.iter().map(|r| r.payload.clone().unwrap()).collect();
        edit(&mut payloads);
        let topic = unique(&format!("audit-{what}"));
        common::block_on(async {
            use rdkafka::producer::FutureRecord;
            let producer = bus(&brokers).producer().unwrap();
            for p in &payloads {
                producer
                    .send(
                        FutureRecord::to(&topic).key("w").partition(0).payload(p),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap();
            }
        });
        let (code, stdout, _) = verify(&topic);
        (code, stdout.replace(&topic, "COPY"))
    };
    let (code, out) = copy("changed", &|p| {
        let mut v: serde_json::Value = serde_json::from_slice(&p[3]).unwrap();
        v["entry"]["user"] = "李娜".into();
        p[3] = serde_json::to_vec(&v).unwrap();
    });
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("COPY[0]@3: chain") && out.contains("changed"),
        "{out}"
    );
    let (code, out) = copy("removed", &|p| {
        p.remove(2);
    });
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("COPY[0]@2: chain") && out.contains("removed"),
        "{out}"
    );
    let (code, out) = copy("reordered", &|p| p.swap(1, 2));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("COPY[0]@1: chain") && out.contains("reordered"),
        "{out}"
    );
}

#[test]
fn the_desk_refuses_strangers_and_lets_supervisors_only_read() {
    let h = desk_hub();
    let hub = h.deployment.spawn();
    wait_listening(&h.addr);
    let base = format!("http://{}", h.addr);
    common::block_on(async {
        let officer = "Bearer officer-token-0000000001";
        let supervisor = "Bearer supervisor-token-000000001";
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let r = http()
                .get(format!("{base}/desk/api/referrals"))
                .header("Authorization", officer)
                .send()
                .await
                .unwrap();
            let rows: Vec<serde_json::Value> = r.json().await.unwrap();
            if rows.len() == EXPECTED.len() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the desk shows {} referrals, not 20",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Without a token: 401 everywhere, pages and API alike.
        for path in [
            "/desk",
            "/desk/api/referrals",
            "/desk/referrals/YS-2026-T01",
            "/desk/export.csv",
            "/desk/audit",
        ] {
            let r = http().get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path} without a token");
        }
        let r = http()
            .get(format!("{base}/desk/api/referrals"))
            .header("Authorization", "Bearer not-a-token-at-all")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let action = serde_json::json!({"action": "note", "text": "监督人员试图办理"});
        let r = http()
            .post(format!("{base}/desk/api/referrals/YS-2026-T01/actions"))
            .json(&action)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);

        // A supervisor reads, but changes nothing.
        let r = http()
            .get(format!("{base}/desk/api/referrals/YS-2026-T01"))
            .header("Authorization", supervisor)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let before: serde_json::Value = r.json().await.unwrap();
        let r = http()
            .post(format!("{base}/desk/api/referrals/YS-2026-T01/actions"))
            .header("Authorization", supervisor)
            .json(&action)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
        let page = get_text(format!("{base}/desk/referrals/YS-2026-T01"), supervisor).await;
        assert!(
            !page.contains("action-form"),
            "a supervisor's page offers actions"
        );

        // An officer's reminder becomes an event on the bus and the timeline.
        let reminder = serde_json::json!({"action": "reminder", "text": "已电话催办高新分局"});
        let r = http()
            .post(format!("{base}/desk/api/referrals/YS-2026-T05/actions"))
            .header("Authorization", officer)
            .json(&reminder)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let v: serde_json::Value = http()
                .get(format!("{base}/desk/api/referrals/YS-2026-T05"))
                .header("Authorization", officer)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let events = v["events"].as_array().unwrap();
            if let Some(e) = events.iter().find(|e| e["event_type"] == "REMINDER_SENT") {
                assert_eq!(e["actor_org"], "张伟");
                assert_eq!(e["source_system"], "desk");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the reminder is not on the timeline: {v}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let after: serde_json::Value = http()
            .get(format!("{base}/desk/api/referrals/YS-2026-T01"))
            .header("Authorization", officer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            after["events"], before["events"],
            "the supervisor's refused action changed T01"
        );

        // Every view is in the audit log, by name.
        let audit = get_text(format!("{base}/desk/audit"), officer).await;
        assert!(
            audit.contains("王芳") && audit.contains("YS-2026-T01"),
            "the supervisor's view is not audited"
        );
    });
    let events = common::decoded(&h.deployment.brokers, &h.events_topic);
    let desk_events: Vec<_> = events
        .iter()
        .filter(|(_, v)| v["source_system"] == "desk")
        .collect();
    assert_eq!(
        desk_events.len(),
        1,
        "exactly the officer's reminder: {desk_events:?}"
    );
    common::terminate(hub);
}

// ---------------------------------------------------------------------------
// In headless Chromium (Debian's `chromium` and `chromium-driver`).

use common::ChromeDriver;

#[test]
fn a_desk_officer_logs_in_sees_the_late_referral_opens_its_timeline_and_exports_csv() {
    let h = desk_hub();
    let hub = h.deployment.spawn();
    wait_listening(&h.addr);
    let base = format!("http://{}", h.addr);
    let artifacts = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("desk-browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let driver = ChromeDriver::start();
    common::block_on(async {
        // The hub has taken all twenty referrals in.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let rows: Vec<serde_json::Value> = http()
                .get(format!("{base}/desk/api/referrals"))
                .header("Authorization", "Bearer officer-token-0000000001")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if rows.len() == EXPECTED.len() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hub shows {} referrals",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let browser = driver.browser(Some(downloads.path())).await;
        let result = async {
            use fantoccini::Locator;
            // Not logged in: the page says so.
            browser.goto(&format!("{base}/desk")).await?;
            let body = browser.find(Locator::Css("main")).await?.text().await?;
            assert!(body.contains("请先"), "{body}");

            // Log in with the officer's token.
            browser.goto(&format!("{base}/desk/login")).await?;
            browser.find(Locator::Id("token")).await?.send_keys("officer-token-0000000001").await?;
            browser.find(Locator::Id("login")).await?.click().await?;
            browser.wait().for_element(Locator::Css("table#referrals")).await?;
            let who = browser.find(Locator::Css("main > p")).await?.text().await?;
            assert!(who.contains("张伟"), "{who}");

            // T01 waited for approval past its deadline: its row is red.
            // (The hub runs on today's clock, so every open referral of
            // the replay is late by now; closed ones are not.)
            let late_row = browser.find(Locator::Css("tr[data-referral='YS-2026-T01']")).await?;
            assert_eq!(late_row.attr("class").await?.as_deref(), Some("late"));
            assert!(late_row.text().await?.contains("已逾期"));
            let red = browser
                .execute(
                    "return getComputedStyle(document.querySelector(\"tr[data-referral='YS-2026-T01'] td\")).backgroundColor",
                    vec![],
                )
                .await?;
            assert_eq!(red, "rgb(253, 226, 225)", "the late row is not highlighted");
            let closed = browser.find(Locator::Css("tr[data-referral='YS-2026-T04']")).await?;
            assert_eq!(closed.attr("class").await?.as_deref(), Some("closed"));
            std::fs::write(artifacts.join("desk-list.png"), browser.screenshot().await?).unwrap();

            // Events arriving refresh the list by themselves: T02 approved.
            let approval = ("YS-2026-T02", E, "PZ", "2026-10-10 11:00");
            write_atomically(
                &h.deployment.path("enforcement").join("approval.jsonl"),
                &(payload(&approval) + "\n"),
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                // The live refresh swaps the table in: an element found just
                // before a swap is stale, and read again.
                let row = match browser.find(Locator::Css("tr[data-referral='YS-2026-T02']")).await {
                    Ok(e) => match e.text().await {
                        Ok(t) => t,
                        Err(e) if e.is_stale_element_reference() => String::new(),
                        Err(e) => return Err(e),
                    },
                    Err(e) => return Err(e),
                };
                if row.contains("已批准待移送") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the list did not refresh: {row}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }

            // Its timeline: every event, with its source and provenance.
            let mut tries = 0;
            loop {
                match browser.find(Locator::Css("tr[data-referral='YS-2026-T09'] a")).await?.click().await {
                    Err(e) if e.is_stale_element_reference() && tries < 10 => tries += 1,
                    other => break other?,
                }
            }
            browser.wait().for_element(Locator::Css("ol#timeline")).await?;
            let items = browser.find_all(Locator::Css("ol#timeline li")).await?;
            assert_eq!(items.len(), 3);
            let timeline = browser.find(Locator::Css("ol#timeline")).await?.text().await?;
            for expected in ["移送公安机关", "公安受理回执", "公安通知补充材料", "来源：公安机关 public_security", "来源：两法衔接平台 two_law", "出处：", "file_drop/police"] {
                assert!(timeline.contains(expected), "{expected} is not on the timeline:\n{timeline}");
            }
            let late_steps = browser.find(Locator::Id("late-steps")).await?.text().await?;
            assert!(late_steps.contains("24小时"), "{late_steps}");
            std::fs::write(artifacts.join("desk-timeline.png"), browser.screenshot().await?).unwrap();

            // Export: a CSV the desk can open in a spreadsheet.
            browser.goto(&format!("{base}/desk")).await?;
            browser.find(Locator::Id("export")).await?.click().await?;
            let file = downloads.path().join("referrals.csv");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !file.exists() {
                assert!(std::time::Instant::now() < deadline, "no CSV downloaded");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let csv = std::fs::read_to_string(&file).unwrap();
            assert!(csv.starts_with("\u{FEFF}移送编号,"), "{csv}");
            assert_eq!(csv.lines().count(), 1 + EXPECTED.len());
            let t01 = csv.lines().find(|l| l.starts_with("YS-2026-T01,")).expect("T01 in the CSV");
            assert!(t01.contains("待负责人审批") && t01.contains(",是,"), "{t01}");

            // The view and the export are in the audit log.
            browser.goto(&format!("{base}/desk/audit")).await?;
            let audit = browser.find(Locator::Css("table#audit")).await?.text().await?;
            assert!(audit.contains("export") && audit.contains("YS-2026-T09"), "{audit}");
            Ok::<_, fantoccini::error::CmdError>(())
        }
        .await;
        if result.is_err() {
            if let Ok(png) = browser.screenshot().await {
                std::fs::write(artifacts.join("desk-failure.png"), png).unwrap();
            }
        }
        browser.close().await.unwrap();
        result.unwrap();
    });
    eprintln!("screenshots in {}", artifacts.display());
    common::terminate(hub);
}

// ---------------------------------------------------------------------------
// Hostile input (issue: stored XSS, CSV injection, audit of views).

/// Strings an attacker could put into any free-text field a source system
/// sends: title and quote breakers, event handlers, `javascript:` links,
/// RTL override, NUL and CR, formulas. Each would set `window.__pwned`
/// if it ran.
const HOSTILE: &[&str] = &[
    "</title><script>window.__pwned=1</script>",
    "\"><img src=x onerror=\"window.__pwned=2\">",
    "');window.__pwned=3;//",
    "<a href=\"javascript:window.__pwned=4\">点我</a>",
    "<svg onload=window.__pwned=5>",
    "\u{202e}反转文字\u{0000}空字符",
    "=1+1\r=HYPERLINK(\"http://evil.example\")",
];

fn hostile_enforcement_events() -> String {
    let mut out = String::new();
    for (i, text) in HOSTILE.iter().enumerate() {
        out.push_str(
            &(serde_json::json!({
                "eventId": format!("ZFH{i:02}"), "transferNo": format!("YS-2026-H{i:02}"), "eventType": "CG",
                "eventTime": "2026-11-20 09:00:00", "orgName": format!("执法局{text}"), "orgCode": "11420500MB15077941",
                "caseNo": format!("宜高综执罚〔2026〕{i}号"), "crime": text, "content": text,
                "suspect": {"name": text, "type": "1", "creditCode": "91420500MA4F0N5Q8W"},
                "updateTime": "2026-11-20 09:00:00.000",
            })
            .to_string()
                + "\n"),
        );
    }
    // A referral number that is itself hostile: refused at ingest by the
    // mapping's pattern, so it never becomes a referral.
    out.push_str(
        &(serde_json::json!({
            "eventId": "ZFHX", "transferNo": "YS-X</title><script>window.__pwned=9</script>", "eventType": "CG",
            "eventTime": "2026-11-20 09:00:00", "orgName": "执法局", "orgCode": "11420500MB15077941",
            "crime": "x", "content": "x", "suspect": {"name": "x", "type": "1", "creditCode": "91420500MA4F0N5Q8W"},
            "updateTime": "2026-11-20 09:00:00.000",
        })
        .to_string()
            + "\n"),
    );
    out
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn hostile_text_from_every_referral_source_runs_no_script_on_any_desk_page() {
    let h = desk_hub();
    write_atomically(
        &h.deployment.path("enforcement").join("hostile.jsonl"),
        &hostile_enforcement_events(),
    );
    // The same strings through the two other sources: the two-law
    // platform's JSON and the police exchange's XML (escaped as XML, as a
    // file would carry them; XML 1.0 cannot carry the NUL one).
    let mut two_law = String::new();
    for (i, text) in HOSTILE.iter().enumerate() {
        two_law.push_str(
            &(serde_json::json!({
                "eventId": format!("LH{i:02}"), "transferNo": format!("YS-2026-H{i:02}"), "eventCode": "YS",
                "eventTime": "2026-11-21 09:00:00", "orgName": text, "orgCode": "11420500MB15077941",
                "docNo": "宜高检〔2026〕1号", "content": text, "crime": text,
                "suspect": {"name": text, "type": "1", "creditCode": "91420500MA4F0N5Q8W"},
                "updateTime": "2026-11-21 09:00:00.000",
            })
            .to_string()
                + "\n"),
        );
    }
    write_atomically(
        &h.deployment.path("two_law").join("hostile.jsonl"),
        &two_law,
    );
    let xml = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\r', "&#13;")
    };
    for (i, text) in HOSTILE
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.contains('\u{0000}'))
    {
        std::fs::write(
            h.deployment.path("police").join(format!("GA_H{i:02}.xml")),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GAJS xmlns=\"urn:gov:police:exchange:2019\" bbh=\"1.0\"><XXBH>GAH{i:02}</XXBH><XXLX>SLHZ</XXLX><YSBH>YS-2026-H{i:02}</YSBH><AJBH>宜高综执罚〔2026〕{i}号</AJBH><BLDW dm=\"420502000000\">{t}</BLDW><SJ>2026-11-22 09:00:00</SJ><WSH>宜公高(刑)字〔2026〕1号</WSH><LY>{t}</LY><SXZM>{t}</SXZM><XYR lx=\"1\"><XM>{t}</XM><TYSHXYDM>91420500MA4F0N5Q8W</TYSHXYDM></XYR></GAJS>\n",
                t = xml(text)
            ),
        )
        .unwrap();
    }
    let hub = h.deployment.spawn();
    wait_listening(&h.addr);
    let base = format!("http://{}", h.addr);
    let artifacts = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("desk-hostile");
    std::fs::create_dir_all(&artifacts).unwrap();
    let driver = ChromeDriver::start();
    common::block_on(async {
        let officer = "Bearer officer-token-0000000001";
        let expected = EXPECTED.len() + HOSTILE.len();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let rows = loop {
            let rows: Vec<serde_json::Value> = http()
                .get(format!("{base}/desk/api/referrals"))
                .header("Authorization", officer)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if rows.len() >= expected {
                break rows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hub shows {} referrals",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(
            rows.len(),
            expected,
            "the hostile referral number became a referral"
        );
        // Each hostile referral has its events from all three sources.
        wait_until_async(Duration::from_secs(60), "three sources on H01", || async {
            let v: serde_json::Value = http()
                .get(format!("{base}/desk/api/referrals/YS-2026-H01"))
                .header("Authorization", officer)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let systems: std::collections::BTreeSet<String> = v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["source_system"].as_str().unwrap().to_owned())
                .collect();
            systems.len() == 3
        })
        .await;
        assert!(
            rows.iter()
                .all(|r| !r["referral_no"].as_str().unwrap().contains('<')),
            "a referral number with markup reached the desk"
        );

        // Every page carries a strict Content-Security-Policy.
        let page = http()
            .get(format!("{base}/desk/referrals/YS-2026-H00"))
            .header("Authorization", officer)
            .send()
            .await
            .unwrap();
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.headers()["x-content-type-options"], "nosniff");
        let html = page.text().await.unwrap();
        assert!(
            !html.contains("<script>window"),
            "unescaped markup in the page"
        );

        // The CSV export opens as the same rows, formulas neutralised.
        let csv = http()
            .get(format!("{base}/desk/export.csv"))
            .header("Authorization", officer)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut reader = csv::ReaderBuilder::new().from_reader(&csv[3..]);
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), expected, "CR or quotes broke the rows");
        let formula = records
            .iter()
            .find(|r| &r[0] == "YS-2026-H06")
            .expect("H06 in the CSV");
        assert_eq!(&formula[3], "'=1+1\r=HYPERLINK(\"http://evil.example\")");
        assert!(
            records
                .iter()
                .all(|r| r.iter().all(|c| !c.starts_with(['=', '+', '@'])))
        );

        // A supervisor's list view is in the audit log.
        http()
            .get(format!("{base}/desk/api/referrals"))
            .header("Authorization", "Bearer supervisor-token-000000001")
            .send()
            .await
            .unwrap();
        let audit = get_text(format!("{base}/desk/audit"), officer).await;
        assert!(
            audit.contains("王芳") && audit.contains("接口读取移送案件列表"),
            "the supervisor's list view is not audited"
        );

        // In the browser: log in, every page that shows the hostile text.
        let browser = driver.browser(None).await;
        let result = async {
            use fantoccini::Locator;
            browser.goto(&format!("{base}/desk/login")).await?;
            browser.find(Locator::Id("token")).await?.send_keys("officer-token-0000000001").await?;
            browser.find(Locator::Id("login")).await?.click().await?;
            browser.wait().for_element(Locator::Css("tr[data-referral='YS-2026-H01']")).await?;
            let mut pages = vec![format!("{base}/desk"), format!("{base}/desk/audit")];
            for i in 0..HOSTILE.len() {
                pages.push(format!("{base}/desk/referrals/YS-2026-H{i:02}"));
            }
            for url in &pages {
                browser.goto(url).await?;
                browser.wait().for_element(Locator::Css("main")).await?;
                let pwned = browser.execute("return window.__pwned === undefined ? null : window.__pwned", vec![]).await?;
                assert_eq!(pwned, serde_json::Value::Null, "script ran on {url}");
                let links = browser
                    .execute("return document.querySelectorAll('a[href^=\"javascript:\"], img, svg, [onerror], [onload]').length", vec![])
                    .await?;
                assert_eq!(links, serde_json::json!(0), "injected elements on {url}");
            }
            // The hostile text is shown as text.
            browser.goto(&format!("{base}/desk/referrals/YS-2026-H01")).await?;
            let main = browser.find(Locator::Css("main")).await?.text().await?;
            assert!(main.contains("<img src=x onerror="), "{main}");
            std::fs::write(artifacts.join("desk-hostile-detail.png"), browser.screenshot().await?).unwrap();
            Ok::<_, fantoccini::error::CmdError>(())
        }
        .await;
        if result.is_err()
            && let Ok(png) = browser.screenshot().await
        {
            std::fs::write(artifacts.join("desk-hostile-failure.png"), png).unwrap();
        }
        browser.close().await.unwrap();
        result.unwrap();
    });
    common::terminate(hub);
}

#[test]
fn a_login_session_is_opaque_ends_at_logout_and_when_its_token_is_revoked() {
    let h = desk_hub();
    let hub = h.deployment.spawn();
    wait_listening(&h.addr);
    let base = format!("http://{}", h.addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    common::block_on(async {
        let login = |token: &'static str| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let r = client
                    .post(format!("{base}/desk/login"))
                    .form(&[("token", token)])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 303, "login refused");
                let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
                assert!(
                    cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                    "{cookie}"
                );
                assert!(
                    !cookie.contains(token),
                    "the cookie carries the token: {cookie}"
                );
                cookie.split(';').next().unwrap().to_owned()
            }
        };
        let status = |cookie: String| {
            let client = client.clone();
            let base = base.clone();
            async move {
                client
                    .get(format!("{base}/desk"))
                    .header("Cookie", cookie)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        let a = login("officer-token-0000000001").await;
        assert_eq!(status(a.clone()).await, 200);
        // Logout revokes the session: the same cookie no longer opens the desk.
        let r = client
            .post(format!("{base}/desk/logout"))
            .header("Cookie", a.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(status(a).await, 401, "the session outlived its logout");

        // A reload that removes a token ends its sessions at once.
        let b = login("supervisor-token-000000001").await;
        assert_eq!(status(b.clone()).await, 200);
        let text = std::fs::read_to_string(&h.deployment.file).unwrap().replace(
            "[desk.users.\"supervisor-token-000000001\"]\nname = \"王芳\"\nrole = \"supervisor\"\n",
            "",
        );
        std::fs::write(&h.deployment.file, text).unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &hub.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while status(b.clone()).await != 401 {
            assert!(
                std::time::Instant::now() < deadline,
                "the revoked token's session still opens the desk"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            client
                .get(format!("{base}/desk/api/referrals"))
                .header("Authorization", "Bearer supervisor-token-000000001")
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    });
    common::terminate(hub);
}

// ---------------------------------------------------------------------------
// On a real log cleaner.

/// Sets a topic's configs (the test's way to make the log cleaner run now).
async fn alter_topic(bus: &duijie::bus::Bus, topic: &str, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
    let admin = bus.admin().unwrap();
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    for r in admin
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// The referral state topic is compacted by the hub's own topic creation;
/// once Kafka's log cleaner has kept only each referral's latest state, a
/// new tracker rebuilds exactly the same desk from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tracker_rebuilds_the_same_desk_from_the_compacted_state_topic() {
    let fixture = TrackerFixture::new("compact").await;
    let state_topic = fixture.config.state_topic.clone();
    let first = fixture.desk();
    let stop = CancellationToken::new();
    let running = tokio::spawn(first.tracker.clone().run(stop.clone()));
    // Events in three slices, so that most referrals' states are written
    // more than once.
    // Each referral's events one at a time: its first event of all, then
    // its second, and so on, so that each state is written several times.
    let mut by_referral: BTreeMap<&str, Vec<Ev>> = BTreeMap::new();
    for ev in EVENTS {
        by_referral.entry(ev.0).or_default().push(*ev);
    }
    let rounds = by_referral.values().map(Vec::len).max().unwrap_or(0);
    for round in 0..rounds {
        let part: Vec<Ev> = by_referral
            .values()
            .filter_map(|evs| evs.get(round).copied())
            .collect();
        publish(
            &fixture.bus,
            &fixture.events_topic,
            &fixture.mappings,
            &part,
        )
        .await;
        // The tracker writes a referral's state before its view shows the
        // new event: once every view holds this round, its states are on
        // the topic, and the next round writes them again.
        wait_views(&first, "this round's events tracked", |v| {
            by_referral.iter().all(|(no, evs)| {
                // A copy of an event (T17's re-poll) is one event.
                let so_far: BTreeSet<String> = evs.iter().take(round + 1).map(event_id).collect();
                v.get(*no).is_some_and(|r| r.events.len() >= so_far.len())
            })
        })
        .await;
    }
    let events_total = EXPECTED.iter().map(|e| e.8).sum::<usize>();
    wait_views(&first, "all twenty referrals", |v| {
        v.values().map(|r| r.events.len()).sum::<usize>() == events_total
    })
    .await;
    stop.cancel();
    let _ = running.await;
    let before = first.tracker.views.read().unwrap().clone();

    let bus = fixture.bus.clone();
    let states = || {
        let (bus, topic) = (bus.clone(), state_topic.clone());
        async move {
            duijie::bus::inspect::read_topic(&bus, &topic, false)
                .await
                .unwrap()
        }
    };
    let written = states().await;
    let keys: std::collections::BTreeSet<String> = written.iter().map(|r| r.key_str()).collect();
    assert!(
        written.len() > keys.len(),
        "each referral's state was written once: nothing to compact"
    );
    // Make the cleaner run now, roll the segment with a tombstone for a key
    // that holds nothing, and wait until each referral has one state left.
    alter_topic(
        &fixture.bus,
        &state_topic,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.001"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "100"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let producer = fixture.bus.producer().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        producer
            .send(
                rdkafka::producer::FutureRecord::<str, [u8]>::to(&state_topic)
                    .key("compaction-probe"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let left: Vec<_> = states()
            .await
            .into_iter()
            .filter(|r| r.payload.is_some())
            .collect();
        let distinct: std::collections::BTreeSet<String> =
            left.iter().map(|r| r.key_str()).collect();
        if left.len() == distinct.len() && distinct == keys {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log cleaner left {} states for {} referrals",
            left.len(),
            distinct.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "compaction: {} states written for {} referrals, one each left",
        written.len(),
        keys.len()
    );

    // A new tracker in the same group: its offsets are past every event,
    // so the compacted state topic is all it has to go by.
    let second = fixture.desk();
    let stop = CancellationToken::new();
    let running = tokio::spawn(second.tracker.clone().run(stop.clone()));
    wait_views(&second, "all twenty referrals again", |v| {
        v.len() == EXPECTED.len()
            && v.values().map(|r| r.events.len()).sum::<usize>() == events_total
    })
    .await;
    let after = second.tracker.views.read().unwrap().clone();
    stop.cancel();
    let _ = running.await;
    assert_expected(&after);
    for (no, v) in &before {
        let w = &after[no];
        assert_eq!(
            (&v.state, &v.due_at, v.late, &v.events),
            (&w.state, &w.due_at, w.late, &w.events),
            "{no} differs after compaction"
        );
    }
}
