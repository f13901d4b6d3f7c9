use super::index::{Change, EntityIndex, LinkDecision, fingerprint};
use super::*;
use crate::personal::Pseudonyms;
use chrono::TimeZone;
use serde_json::json;

fn pseudonyms() -> Pseudonyms {
    Pseudonyms::new("a-test-pseudonym-key-of-32-characters").unwrap()
}

/// A valid credit code and the one with its last check character wrong.
fn code(i: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(i);
    let body: String = (0..8)
        .map(|_| b"0123456789ABCDEFGHJKLMNPQRTUWXY"[rng.usize(..31)] as char)
        .collect();
    crate::ident::with_uscc_checks(&format!("91420502{body}")).unwrap()
}

const PERSON_ID: &str = "11010519491231002X";

fn at(topic: &str, offset: i64) -> Position {
    Position {
        topic: topic.into(),
        partition: 0,
        offset,
        pipeline: "p".into(),
        connector: "http_poll".into(),
        origin: "test".into(),
        mapping: "m".into(),
        mapping_version: "1".into(),
        fetched_at: String::new(),
    }
}

fn ms(y: i32, m: u32, d: u32) -> i64 {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, m, d, 10, 0, 0)
        .unwrap()
        .timestamp_millis()
}

fn penalty(id: &str, party: Value, action: &str, categories: &[&str], decided: i64) -> Value {
    json!({
        "id": id, "source_system": "enforcement", "decision_id": id, "version": 1, "action": action,
        "decision_no": format!("宜高综执罚决字〔2026〕第{id}号"), "party": party,
        "violation": "占道经营", "facts": "经查，当事人占道经营。", "legal_basis": "《城市市容和环境卫生管理条例》",
        "categories": categories, "content": "罚款2000元", "fine_yuan": "2000", "decided_at": decided,
        "authority": "宜昌高新区综合行政执法局", "authority_code": crate::credit::sample_decision()["authority_code"],
        "industry": "URBAN", "credit_severity": "SERIOUS",
    })
}

struct Fixture {
    calendar: Calendar,
    policy: CreditPolicy,
    pseudonyms: Pseudonyms,
}

impl Fixture {
    fn new() -> Self {
        Self {
            calendar: Calendar::load_dir(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calendar"),
            )
            .unwrap(),
            policy: CreditPolicy::default(),
            pseudonyms: pseudonyms(),
        }
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            pseudonyms: &self.pseudonyms,
            policy: &self.policy,
            calendar: &self.calendar,
        }
    }

    fn read(&self, kind: Kind, topic: &str, key: &str, v: Value, offset: i64) -> IndexedRecord {
        let reading = repository_readings()
            .into_values()
            .find(|r| r.kind == kind)
            .expect("a schema of that kind");
        self.reader()
            .read(&reading, key, &v, at(topic, offset))
            .expect("names a party")
    }
}

fn repository_schemas() -> crate::schema::SchemaSet {
    crate::schema::SchemaSet::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"),
    )
    .unwrap()
}

fn repository_readings() -> BTreeMap<String, Reading> {
    readings(&repository_schemas())
}

/// Which records name a party, and where, is learnt from the schemas: the
/// repository's schemas give exactly these, and the video alarm (no party)
/// is not among them.
#[test]
fn the_schemas_say_which_records_name_a_party_and_where() {
    let found: Vec<(String, Kind, PartyAt)> = repository_readings()
        .into_iter()
        .map(|(name, r)| (name, r.kind, r.party))
        .collect();
    let record = |p: &str| PartyAt::Record(p.to_owned());
    assert_eq!(
        found,
        vec![
            (
                "duijie.canonical.CreditRepair".into(),
                Kind::Repair,
                record("/party")
            ),
            (
                "duijie.canonical.GridEvent".into(),
                Kind::GridEvent,
                record("/party")
            ),
            (
                "duijie.canonical.Licence".into(),
                Kind::Licence,
                record("/party")
            ),
            (
                "duijie.canonical.PenaltyDecision".into(),
                Kind::Penalty,
                record("/party")
            ),
            (
                "duijie.canonical.ReferralEvent".into(),
                Kind::Referral,
                record("/suspect")
            ),
            (
                "duijie.canonical.SafetyHazard".into(),
                Kind::Hazard,
                record("/enterprise")
            ),
            (
                "duijie.canonical.UrbanCase".into(),
                Kind::UrbanCase,
                PartyAt::Flat
            ),
        ]
    );
}

/// A new system's schema that names its party with the shared `Party`
/// record, nested and nullable, is read into the entity's profile with no
/// change to the library: linked by credit code, under its key.
#[test]
fn a_new_systems_schema_that_names_a_party_is_linked_without_a_change_here() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    std::fs::copy(repo.join("party.avsc"), dir.path().join("party.avsc")).unwrap();
    std::fs::write(
        dir.path().join("hotline_order.avsc"),
        r#"{"type": "record", "name": "HotlineOrder", "namespace": "duijie.canonical", "fields": [
            {"name": "id", "type": "string"},
            {"name": "source_system", "type": "string"},
            {"name": "complaint", "type": {"type": "record", "name": "Complaint", "fields": [
                {"name": "text", "type": "string"},
                {"name": "respondent", "type": ["null", "Party"], "default": null}
            ]}}
        ]}"#,
    )
    .unwrap();
    let schemas = crate::schema::SchemaSet::load_dir(dir.path()).unwrap();
    let readings = readings(&schemas);
    let reading = &readings["duijie.canonical.HotlineOrder"];
    assert_eq!(reading.kind, Kind::Other);
    assert_eq!(
        reading.party,
        PartyAt::Record("/complaint/respondent".into())
    );
    let c = code(77);
    let f = Fixture::new();
    let order = json!({"id": "12345:1", "source_system": "hotline",
        "complaint": {"text": "噪音扰民", "respondent": company(&c)}});
    let r = f
        .reader()
        .read(reading, "12345:1", &order, at("canonical.hotline_order", 3))
        .expect("names a party");
    assert_eq!(r.link, Link::Code(format!("uscc:{c}")));
    assert_eq!(
        (r.kind, r.title.as_str(), r.facts.clone()),
        (Kind::Other, "12345:1", Facts::Record)
    );
    assert_eq!(r.kind.label(), "其他记录");
    // Without a respondent the order is about no entity.
    let anonymous = json!({"id": "12345:2", "source_system": "hotline", "complaint": {"text": "路灯不亮", "respondent": null}});
    assert!(
        f.reader()
            .read(
                reading,
                "12345:2",
                &anonymous,
                at("canonical.hotline_order", 4)
            )
            .is_none()
    );
}

fn company(c: &str) -> Value {
    json!({"name": "宜昌华强建材有限公司", "type": "LEGAL_PERSON", "credit_code": c})
}

/// One company in four systems, a name-only urban case, a person.
fn four_systems(f: &Fixture, c: &str) -> Vec<IndexedRecord> {
    vec![
        f.read(Kind::Penalty, "canonical.penalty_decision", "pen:1", penalty("1", company(c), "ISSUED", &["罚款"], ms(2026, 11, 2)), 0),
        f.read(Kind::Licence, "canonical.licence", "lic:1", json!({
            "id": "lic:1", "source_system": "approval", "party": company(&c.to_lowercase()), "decision_no": "宜高审批许字〔2026〕第1号",
            "licence_name": "城市建筑垃圾处置核准", "decided_at": ms(2026, 10, 1), "status": "VALID",
            "commitment": true, "commitment_met": false, "commitment_due_at": ms(2026, 12, 20),
        }), 0),
        f.read(Kind::Hazard, "canonical.safety_hazard", "hazard:1", json!({
            "id": "hazard:1", "source_system": "safety", "hazard_no": "YH202611001", "enterprise": company(c),
            "grade": "MAJOR", "state": "ORDERED", "rectify_deadline": ms(2026, 11, 20), "inspected_at": ms(2026, 11, 5),
            "description": "消防通道堵塞", "location": "二号车间",
        }), 0),
        f.read(Kind::UrbanCase, "canonical.urban_case", "dcm:1", json!({
            "id": "dcm:1", "source_system": "digital_urban", "case_no": "1", "category_name": "占道经营",
            "address": "发展大道18号", "reported_at": ms(2026, 11, 1), "status": "CLOSED",
            "party_name": "宜昌华强建材有限公司", "party_credit_code": c,
        }), 0),
    ]
}

#[test]
fn names_normalise_and_their_cores_drop_place_and_legal_form() {
    assert_eq!(
        normalise_name("宜昌华强建材有限公司（东山分公司）"),
        normalise_name("宜昌华强建材有限公司(东山分公司)")
    );
    assert_eq!(normalise_name("ａｂｃ 公司"), "ABC公司");
    assert_eq!(name_core("宜昌华强建材有限公司"), "华强建材");
    assert_eq!(name_core("华强建材公司"), "华强建材");
    assert_eq!(name_core("湖北峡州精细化工股份有限公司"), "峡州精细化工");
    // Never down to nothing.
    assert_eq!(name_core("宜昌公司"), "宜昌");
}

#[test]
fn a_party_is_linked_by_a_valid_code_else_by_pseudonym_never_by_its_id_number() {
    let p = pseudonyms();
    let c = code(1);
    assert_eq!(
        link_of(&company(&c), &p).0,
        Some(Link::Code(format!("uscc:{c}")))
    );
    // Full-width and lower case: the same entity.
    let wide: String = c
        .to_lowercase()
        .chars()
        .map(|ch| char::from_u32(ch as u32 + 0xFEE0).unwrap())
        .collect();
    assert_eq!(
        link_of(&company(&wide), &p).0,
        Some(Link::Code(format!("uscc:{c}")))
    );
    // A wrong check character links nothing by itself.
    let mut bad = c.clone();
    bad.replace_range(17.., if c.ends_with('0') { "1" } else { "0" });
    assert_eq!(link_of(&company(&bad), &p).0, Some(Link::NameOnly));
    let (person, _) = link_of(
        &json!({"name": "李娜", "type": "NATURAL_PERSON", "id_number": PERSON_ID}),
        &p,
    );
    let Some(Link::Person(key)) = person else {
        panic!("{person:?}")
    };
    assert!(key.starts_with("pid:") && !key.contains("1949"), "{key}");
    // An individual business without a code: its operator's ID.
    let (shop, _) = link_of(
        &json!({"name": "宜昌高新区李娜经营部", "type": "INDIVIDUAL_BUSINESS", "legal_rep_id_number": PERSON_ID}),
        &p,
    );
    assert_eq!(shop, Some(Link::Person(key)));
    assert_eq!(link_of(&json!({"credit_code": null}), &p).0, None);
}

#[test]
fn one_entity_gathers_its_records_from_four_systems_and_a_name_only_record_is_only_proposed() {
    let f = Fixture::new();
    let c = code(2);
    let index = EntityIndex::in_memory(0.6).unwrap();
    let mut changes: Vec<Change> = four_systems(&f, &c)
        .into_iter()
        .map(|r| Change::Record(Box::new(r)))
        .collect();
    let shop_sign = f.read(Kind::UrbanCase, "canonical.urban_case", "dcm:2", json!({
        "id": "dcm:2", "source_system": "digital_urban", "case_no": "2", "address": "发展大道18号",
        "reported_at": ms(2026, 11, 3), "status": "IN_PROGRESS", "party_name": "华强建材公司",
    }), 1);
    changes.push(Change::Record(Box::new(shop_sign.clone())));
    index.apply(&changes, &[], true).unwrap();
    let key = format!("uscc:{c}");
    let (e, records) = index.profile(&key).unwrap().unwrap();
    assert_eq!(e.records, 4);
    assert_eq!(
        e.systems.keys().cloned().collect::<Vec<_>>(),
        ["approval", "digital_urban", "enforcement", "safety"]
    );
    assert_eq!(records.len(), 4);
    let order: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        order,
        ["hazard:1", "pen:1", "dcm:1", "lic:1"],
        "newest first"
    );
    // The shop sign is not linked: it is proposed, with a confidence.
    let (total, proposals) = index.proposals(10).unwrap();
    assert_eq!(total, 1);
    assert_eq!(proposals[0].record.id, "dcm:2");
    assert_eq!(proposals[0].candidates.len(), 1);
    let candidate = &proposals[0].candidates[0];
    assert_eq!(candidate.entity, key);
    assert!((0.6..0.95).contains(&candidate.confidence), "{candidate:?}");
    // Rejected: no longer proposed for that entity, still unlinked.
    let decision = |confirmed: bool, at_ms: i64| LinkDecision {
        id: format!("d{at_ms}"),
        reference: shop_sign.reference.clone(),
        entity: key.clone(),
        confirmed,
        confidence: candidate.confidence,
        by: "张伟".into(),
        at_ms,
        note: None,
    };
    index
        .apply(&[Change::Decision(decision(false, 1))], &[], true)
        .unwrap();
    let (_, proposals) = index.proposals(10).unwrap();
    assert!(proposals[0].candidates.is_empty());
    assert_eq!(proposals[0].rejected, std::slice::from_ref(&key));
    // An officer corrects it: confirmed, the record joins the entity.
    index
        .apply(&[Change::Decision(decision(true, 2))], &[], true)
        .unwrap();
    assert_eq!(index.proposals(10).unwrap().0, 0);
    assert_eq!(index.profile(&key).unwrap().unwrap().1.len(), 5);
    // A decision read before its record (two topics, any order) holds too.
    let other = EntityIndex::in_memory(0.6).unwrap();
    other
        .apply(&[Change::Decision(decision(true, 2))], &[], true)
        .unwrap();
    other.apply(&changes, &[], true).unwrap();
    assert_eq!(other.profile(&key).unwrap().unwrap().1.len(), 5);
    assert_eq!(other.counts().unwrap(), (1, 1, 5));
}

#[test]
fn a_persons_repaired_penalty_leaves_the_public_window_though_the_repair_names_no_id() {
    let f = Fixture::new();
    let index = EntityIndex::in_memory(0.6).unwrap();
    let now = Utc::now();
    let person = json!({"name": "李娜", "type": "NATURAL_PERSON", "id_type": "RESIDENT_ID", "id_number": PERSON_ID});
    let decided = (now - chrono::Duration::days(10)).timestamp_millis();
    let penalty = f.read(
        Kind::Penalty,
        "t",
        "pen:12",
        penalty("12", person, "ISSUED", &["罚款"], decided),
        0,
    );
    index
        .apply(&[Change::Record(Box::new(penalty))], &[], true)
        .unwrap();
    let public = |index: &EntityIndex| {
        index
            .public_records()
            .unwrap()
            .iter()
            .filter_map(|r| public_item(r, now))
            .count()
    };
    assert_eq!(public(&index), 1);
    // The platform's repair result names her by name only: not linked to
    // her profile, and still it ends the publication by its number.
    let repair = f.read(
        Kind::Repair,
        "r",
        "rep:2",
        json!({"id": "rep:2", "source_system": "credit", "repair_no": "2", "kind": "PUBLICATION_ENDED",
            "decision_no": "宜高综执罚决字〔2026〕第12号", "party": {"name": "李娜"}, "repaired_at": now.timestamp_millis()}),
        0,
    );
    index
        .apply(&[Change::Record(Box::new(repair))], &[], true)
        .unwrap();
    assert_eq!(public(&index), 0, "the repaired penalty left the window");
}

#[test]
fn a_record_that_changes_its_party_moves_and_a_tombstone_removes_it() {
    let f = Fixture::new();
    let (a, b) = (code(3), code(4));
    let index = EntityIndex::in_memory(0.6).unwrap();
    let first = f.read(Kind::Hazard, "t", "hazard:9", json!({"source_system": "safety", "enterprise": company(&a), "state": "ORDERED", "grade": "GENERAL"}), 0);
    index
        .apply(&[Change::Record(Box::new(first))], &[], true)
        .unwrap();
    assert!(index.entity(&format!("uscc:{a}")).unwrap().is_some());
    // The source corrected the code.
    let fixed = f.read(Kind::Hazard, "t", "hazard:9", json!({"source_system": "safety", "enterprise": company(&b), "state": "ACCEPTED", "grade": "GENERAL"}), 1);
    index
        .apply(&[Change::Record(Box::new(fixed.clone()))], &[], true)
        .unwrap();
    assert!(
        index.entity(&format!("uscc:{a}")).unwrap().is_none(),
        "an entity with no record left is gone"
    );
    assert_eq!(
        index.entity(&format!("uscc:{b}")).unwrap().unwrap().records,
        1
    );
    index
        .apply(&[Change::Removed(fixed.reference)], &[], true)
        .unwrap();
    assert_eq!(index.counts().unwrap(), (0, 0, 0));
}

#[test]
fn a_referral_keeps_its_suspect_and_takes_its_state_from_the_latest_event() {
    let f = Fixture::new();
    let c = code(5);
    let index = EntityIndex::in_memory(0.6).unwrap();
    let event = |t: &str, when: i64, suspect: Value, offset: i64| {
        f.read(Kind::Referral, "canonical.referral_event", "YS-1", json!({
            "id": format!("e{offset}"), "referral_no": "YS-1", "source_system": "enforcement", "event_type": t,
            "occurred_at": when, "suspect": suspect, "offence": "非法经营罪",
        }), offset)
    };
    let referred = event("REFERRED", ms(2026, 11, 1), company(&c), 0);
    let handed = event("ITEMS_HANDED_OVER", ms(2026, 11, 9), Value::Null, 2);
    let receipted = event("RECEIPTED", ms(2026, 11, 2), Value::Null, 1);
    index
        .apply(
            &[
                Change::Record(Box::new(referred)),
                Change::Record(Box::new(handed)),
                Change::Record(Box::new(receipted)),
            ],
            &[],
            true,
        )
        .unwrap();
    let (_, records) = index.profile(&format!("uscc:{c}")).unwrap().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].status, "ITEMS_HANDED_OVER",
        "the latest event, whatever the reading order"
    );
    assert_eq!(records[0].facts, Facts::Referral { open: false });
    assert_eq!(
        index.proposals(10).unwrap().0,
        0,
        "an event naming nobody proposes nothing"
    );
}

#[test]
fn open_items_restrictions_and_the_public_window_follow_the_time_of_asking() {
    let f = Fixture::new();
    let c = code(6);
    let now = chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let records = four_systems(&f, &c);
    let labels: Vec<String> = records
        .iter()
        .filter_map(|r| r.open_item(now))
        .map(|i| i.label)
        .collect();
    assert_eq!(
        labels,
        [
            "公示期内的行政处罚",
            "告知承诺待核查",
            "未销号的重大事故隐患"
        ]
    );
    let hazard = records[2].open_item(now).unwrap();
    assert!(hazard.overdue, "its rectification deadline passed");
    // Publicity ends with CF_GSJZQ's day (3 years): then the item goes.
    let later = now + chrono::Duration::days(3 * 366);
    assert!(records[0].open_item(later).is_none());
    let item = public_item(&records[0], now).unwrap();
    assert_eq!(item.code, c);
    assert_eq!(item.until, "2029-11-02");
    assert!(public_item(&records[0], later).is_none());

    // Restrictions: a food-safety revocation bars a food licence for five
    // years (食品安全法 art. 135(1)), in its trade and for that permit only.
    let rules: RestrictionsConfig = toml::from_str(
        r#"tokens = { approval = "approval-token-0123456789" }
[[penalties]]
label = "被吊销食品生产经营许可证"
categories_any = ["吊销许可证件"]
industries_any = ["FOOD_SAFETY"]
permits = ["FOOD_PRODUCTION_OPERATION"]
within = { limit = "5 years", basis = "《食品安全法》第一百三十五条" }
lifted_by_repair = false
"#,
    )
    .unwrap();
    let food = Some("FOOD_PRODUCTION_OPERATION");
    let mut revoked = penalty(
        "7",
        company(&c),
        "ISSUED",
        &["吊销许可证件"],
        ms(2026, 6, 1),
    );
    assert!(
        restrictions(
            &[f.read(Kind::Penalty, "t", "pen:7", revoked.clone(), 0)],
            &rules,
            &f.calendar,
            now,
            None
        )
        .is_empty(),
        "not in its trade"
    );
    revoked["industry"] = json!("FOOD_SAFETY");
    let read = f.read(Kind::Penalty, "t", "pen:7", revoked.clone(), 0);
    let r = restrictions(std::slice::from_ref(&read), &rules, &f.calendar, now, food);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].basis, "《食品安全法》第一百三十五条");
    assert_eq!(r[0].effect, crate::credit::Effect::Bar);
    assert_eq!(r[0].scope, ["FOOD_PRODUCTION_OPERATION"]);
    // Another permit: the bar is not its concern.
    assert!(
        restrictions(
            std::slice::from_ref(&read),
            &rules,
            &f.calendar,
            now,
            Some("OUTDOOR_ADVERTISING")
        )
        .is_empty()
    );
    // 2031 has no calendar file: the end is unknown, and not guessed.
    assert_eq!(r[0].until, None);
    assert!(
        r[0].until_note.as_deref().unwrap().contains("期限无法计算"),
        "{r:?}"
    );
    // A credit repair ends the publication, not the law's own bar.
    let repair = f
        .read(
            Kind::Repair,
            "t",
            "rep:1",
            json!({"id": "rep:1", "source_system": "credit", "repair_no": "1", "kind": "PUBLICATION_ENDED",
                "decision_no": "宜高综执罚决字〔2026〕第7号", "party": company(&c), "repaired_at": ms(2026, 12, 1)}),
            2,
        );
    let mut both = vec![read.clone(), repair];
    super::mark_repairs(&mut both);
    assert!(
        public_item(&both[0], now).is_none(),
        "repaired: off the window"
    );
    assert!(both[0].open_item(now).is_none(), "repaired: no open item");
    assert_eq!(
        restrictions(&both, &rules, &f.calendar, now, food).len(),
        1,
        "a statutory bar stays"
    );
    // The case system revokes it under a record of its own: the same
    // decision number ends the original (行政处罚法 art. 48).
    let mut own = revoked.clone();
    own["id"] = json!("pen:7-r");
    own["action"] = json!("REVOKED");
    let mut pair = vec![
        f.read(
            Kind::Penalty,
            "t",
            "pen:7",
            {
                let mut u = revoked.clone();
                u["industry"] = json!("URBAN");
                u
            },
            0,
        ),
        f.read(Kind::Penalty, "t", "pen:7-r", own, 3),
    ];
    assert!(public_item(&pair[0], now).is_some());
    super::mark_repairs(&mut pair);
    assert!(
        public_item(&pair[0], now).is_none(),
        "withdrawn by its number"
    );
    // Revoked (art. 48): no longer restricts, no longer public.
    revoked["action"] = json!("REVOKED");
    let withdrawn = f.read(Kind::Penalty, "t", "pen:7", revoked, 1);
    assert!(
        restrictions(
            std::slice::from_ref(&withdrawn),
            &rules,
            &f.calendar,
            now,
            None
        )
        .is_empty()
    );
    assert!(public_item(&withdrawn, now).is_none());

    // A decided listing carries its measures until its term, then not; a
    // removal ends them at once. Without measures it weighs nothing.
    let listing = |action: &str, offset: i64, measures: Value| {
        f.reader().read_listing(&format!("uscc:{c}"), &json!({
            "entity": format!("uscc:{c}"), "name": "宜昌华强建材有限公司", "credit_code": c, "action": action,
            "reasons": ["受到吊销许可证件的行政处罚"], "criteria": [{"name": "x", "label": "l", "basis": "市场监管总局令第44号"}],
            "decided_at": "2026-11-20T02:00:00Z", "listed_until": "2029-11-20T16:00:00Z", "measures": measures,
        }), at("credit.blacklist", offset)).unwrap()
    };
    let consider = json!([{"label": "审批时作为重要考量因素", "effect": "consider", "permits": ["*"], "basis": "市场监管总局令第44号第二十条"}]);
    let added = listing("ADD", 0, consider.clone());
    let r = restrictions(std::slice::from_ref(&added), &rules, &f.calendar, now, food);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, "blacklist");
    assert_eq!(r[0].effect, crate::credit::Effect::Consider);
    assert!(
        r[0].basis.starts_with("市场监管总局令第44号第二十条"),
        "{r:?}"
    );
    assert_eq!(r[0].until.as_deref(), Some("2029-11-21T00:00:00+08:00"));
    assert!(
        restrictions(
            std::slice::from_ref(&added),
            &rules,
            &f.calendar,
            now + chrono::Duration::days(1100),
            None
        )
        .is_empty()
    );
    assert!(
        restrictions(
            std::slice::from_ref(&listing("ADD", 0, json!([]))),
            &rules,
            &f.calendar,
            now,
            None
        )
        .is_empty(),
        "no measure configured: nothing barred or weighed"
    );
    assert_eq!(public_item(&added, now).unwrap().kind, "blacklist");
    let removed = listing("REMOVE", 1, consider);
    assert!(
        restrictions(
            std::slice::from_ref(&removed),
            &rules,
            &f.calendar,
            now,
            None
        )
        .is_empty()
    );
    assert!(public_item(&removed, now).is_none());
}

#[test]
fn a_natural_persons_penalty_is_public_with_the_id_number_masked() {
    let f = Fixture::new();
    let now = Utc::now();
    let person = json!({"name": "李娜", "type": "NATURAL_PERSON", "id_type": "RESIDENT_ID", "id_number": PERSON_ID});
    let decided = (now - chrono::Duration::days(10)).timestamp_millis();
    let r = f.read(
        Kind::Penalty,
        "t",
        "pen:8",
        penalty("8", person, "ISSUED", &["罚款"], decided),
        0,
    );
    let item = public_item(&r, now).unwrap();
    assert_eq!(item.name, "李娜");
    assert!(
        !item.code.contains("19491231") && item.code.contains('*'),
        "{item:?}"
    );
    let text = serde_json::to_string(&r).unwrap();
    assert!(
        !text.contains(PERSON_ID),
        "the index keeps no full ID number: {text}"
    );
}

#[test]
fn the_cache_is_kept_when_it_matches_and_started_afresh_when_it_does_not() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache/entities.redb");
    let c = code(7);
    let fp = fingerprint("probe", "policy", &["a".into()]);
    {
        let (index, kept) = EntityIndex::open(&file, &fp, 0.6).unwrap();
        assert!(!kept);
        let changes: Vec<Change> = four_systems(&f, &c)
            .into_iter()
            .map(|r| Change::Record(Box::new(r)))
            .collect();
        let read = super::index::Read {
            topic: "canonical.licence".into(),
            partition: 0,
            next: 1,
            last_digest: vec![1, 2, 3],
        };
        index.apply(&changes, &[read], false).unwrap();
        // A durable commit after a non-durable one makes both durable.
        index.apply(&[], &[], true).unwrap();
    }
    let (index, kept) = EntityIndex::open(&file, &fp, 0.6).unwrap();
    assert!(kept);
    assert_eq!(
        index
            .profile(&format!("uscc:{c}"))
            .unwrap()
            .unwrap()
            .1
            .len(),
        4
    );
    assert_eq!(
        index
            .positions()
            .unwrap()
            .get(&("canonical.licence".into(), 0)),
        Some(&(1, vec![1, 2, 3]))
    );
    drop(index);
    // Another pseudonym key, policy or set of topics: rebuilt from the bus.
    let (index, kept) =
        EntityIndex::open(&file, &fingerprint("other", "policy", &["a".into()]), 0.6).unwrap();
    assert!(!kept);
    assert_eq!(index.counts().unwrap(), (0, 0, 0));
    assert!(index.offsets().unwrap().is_empty());
}

#[test]
fn a_person_with_the_same_masked_id_is_a_likelier_match_than_a_namesake() {
    let names = ["李娜"];
    let same = confidence(
        "李娜",
        None,
        Some("110105********002X"),
        Clues {
            names: &names,
            addresses: &[],
            ids_masked: &["110105********002X"],
        },
    );
    let other = confidence(
        "李娜",
        None,
        Some("420502********1234"),
        Clues {
            names: &names,
            addresses: &[],
            ids_masked: &["110105********002X"],
        },
    );
    let unknown = confidence(
        "李娜",
        None,
        None,
        Clues {
            names: &names,
            addresses: &[],
            ids_masked: &["110105********002X"],
        },
    );
    assert!(
        same > unknown && unknown > other,
        "{same} {unknown} {other}"
    );
    assert!(other < 0.6, "a namesake with another ID is not proposed");
}

/// The library's local store keeps no full ID number: one typed into an
/// urban case's address, name or description is masked before it is kept.
#[test]
fn the_local_store_keeps_no_full_id_number_typed_into_free_text() {
    let f = Fixture::new();
    let id = "11010519491231002X";
    let r = f.read(Kind::UrbanCase, "canonical.urban_case", "dcm:9", json!({
        "id": "dcm:9", "source_system": "digital_urban", "case_no": "9", "category_name": format!("占道经营 举报人{id}"),
        "address": format!("发展大道18号（身份证{id}）"), "reported_at": ms(2026, 11, 1), "status": "CLOSED",
        "party_name": format!("李娜{id}"), "party_credit_code": code(1),
    }), 0);
    let before = serde_json::to_string(&r).unwrap();
    assert!(
        before.contains(id),
        "the reading keeps the text as written: {before}"
    );
    let kept = serde_json::to_string(&r.kept()).unwrap();
    assert!(crate::personal::full_ids(&kept).is_empty(), "{kept}");
    assert!(kept.contains("110105********002X"), "{kept}");
}
