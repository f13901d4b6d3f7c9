//! The market-entity credit library (市场主体信用信息库) through Apache Kafka
//! with the sandbox: one profile per entity across systems, the
//! restrictions API, and the public window in headless Chromium.

use crate::common::{self, *};
use duijie_sandbox::SandboxConfig;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const OFFICER: &str = "officer-token-entities-0001";
const CALLER: &str = "approval-restrictions-token-0001";

/// The hub's settings shared by the tests: pseudonym key, calendar, topics.
fn hub_extra(tag: &str) -> String {
    format!(
        "pseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\ncalendar = \"{}\"\nalerts_topic = \"alerts.{tag}\"\nreceipts_topic = \"receipts.{tag}\"",
        root().join("calendar").display()
    )
}

fn desk_and_library(tag: &str, addr: &str, public_per_minute: u32) -> String {
    format!(
        r#"
[http]
listen = "{addr}"

[desk]
events_topic = "referrals.{tag}"
state_topic = "state.{tag}"
alerts_topic = "desk-alerts.{tag}"
audit_topic = "audit.{tag}"
[desk.users."{OFFICER}"]
name = "张伟"
role = "officer"

[entities]
cache = "cache/entities.redb"
links_topic = "links.{tag}"

[entities.restrictions]
tokens = {{ approval = "{CALLER}" }}

[[entities.restrictions.penalties]]
label = "被吊销食品生产经营许可证"
categories_any = ["吊销许可证件"]
industries_any = ["FOOD_SAFETY"]
permits = ["FOOD_PRODUCTION_OPERATION"]
within = {{ limit = "5 years", basis = "《中华人民共和国食品安全法》第一百三十五条第一款" }}

[entities.public]
per_minute = {public_per_minute}
max_age = "30s"
page_size = 20
"#
    )
}

/// Five pipelines from four systems of the sandbox.
fn four_systems(sandbox: &str, tag: &str) -> String {
    let poll = |name: &str, system: &str, mapping: &str, topic: &str, source: &str| {
        format!(
            "[pipelines.{name}]\nsystem = \"{system}\"\nmapping = \"{mapping}\"\ntopic = \"{topic}.{tag}\"\npartitions = 3\nschedule = \"* * * * * *\"\n\n[pipelines.{name}.source]\nkind = \"http_poll\"\n{source}\n\n"
        )
    };
    let keyset = |url: &str, records: &str, id: &str, after: &str| {
        format!(
            "url = \"http://{sandbox}{url}\"\nrecords_pointer = \"{records}\"\npaging = \"keyset\"\npage_size = 200\nwatermark_field = \"updateTime\"\nwatermark_param = \"updatedAfter\"\nid_field = \"{id}\"\nafter_id_param = \"{after}\""
        )
    };
    [
        poll("penalties", "enforcement", "penalty_decision", "canonical.penalty", &keyset("/enforcement/api/decisions", "/data/records", "recordId", "afterId")),
        poll("licences", "approval", "licence", "canonical.licence", &keyset("/approval/api/licences", "/result/records", "licenceId", "afterId")),
        poll("urban", "digital_urban", "urban_case", "canonical.urban", &keyset("/dcm/api/cases", "/data/rows", "taskNum", "afterTaskNum")),
        poll("referrals", "enforcement", "referral_enforcement", "canonical.referral", &keyset("/enforcement/api/referral-events", "/data/records", "eventId", "afterId")),
        poll("grid", "grid", "grid_event", "canonical.grid", &format!(
            "{}\nlogin = {{ url = \"http://{sandbox}/grid/api/login\", username = \"duijie\", password = \"Wg#2026-yc\", token_pointer = \"/data/token\", expires_in_pointer = \"/data/expiresIn\" }}",
            keyset("/grid/api/events", "/data/list", "eventId", "afterId")
        )),
    ]
    .concat()
}

fn call(addr: &str, path: &str, token: Option<&str>) -> (u16, Value, reqwest::header::HeaderMap) {
    block_on(async {
        let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.json().await.unwrap_or(Value::Null), headers)
    })
}

fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("http://{addr}{path}"))
            .bearer_auth(OFFICER)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

/// Every entity the hub's desk lists, once its index has read the topics.
fn hub_entities(addr: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let (status, body, _) = call(
            addr,
            &format!("/desk/api/entities?page={page}"),
            Some(OFFICER),
        );
        assert_eq!(status, 200, "{body}");
        let rows = body["entities"].as_array().unwrap().clone();
        let done = rows.len() < body["page_size"].as_u64().unwrap() as usize;
        all.extend(rows);
        if done {
            break;
        }
    }
    all
}

fn hub_ready(addr: &str) -> bool {
    let (status, body, _) = call(addr, "/desk/api/entities?page=1", Some(OFFICER));
    status == 200 && body["ready"] == true
}

/// `duijie entity …` on the deployment: JSON lines.
fn cli(d: &TestDeployment, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
        .arg("entity")
        .args(args)
        .arg("--config")
        .arg(&d.file)
        .env("DUIJIE_KAFKA_BROKERS", &d.brokers)
        .env("RUST_LOG", "warn,librdkafka=off,rdkafka=off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The entity a canonical record names by a valid credit code, read
/// straight off its topic (independently of the library).
fn code_named(record: &Value) -> Option<String> {
    let code = [
        "/party/credit_code",
        "/enterprise/credit_code",
        "/suspect/credit_code",
        "/party_credit_code",
    ]
    .iter()
    .find_map(|p| record.pointer(p).and_then(Value::as_str))?;
    let checked = duijie::ident::check_uscc(code);
    checked
        .invalid
        .is_none()
        .then(|| format!("uscc:{}", checked.normalized))
}

fn summary(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["key"], r["name"], r["systems"], r["records"], r["restricted"]
            )
        })
        .collect()
}

#[test]
fn an_entity_seen_by_four_systems_shows_all_its_records_a_name_only_record_is_proposed_and_a_restart_rebuilds_the_same_index()
 {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        change_limit: Some(0),
        urban: duijie_sandbox::urban::Settings {
            cases: 400,
            ..Default::default()
        },
        grid: duijie_sandbox::grid::Settings {
            events: 300,
            ..Default::default()
        },
        approval: duijie_sandbox::approval::Settings {
            licences: 150,
            ..Default::default()
        },
        enforcement: duijie_sandbox::enforcement::Settings {
            decisions: 40,
            ..Default::default()
        },
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let tag = unique("ent");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = TestDeployment::with_hub(
        &brokers,
        &hub_extra(&tag),
        &format!(
            "{}{}",
            four_systems(&sandbox, &tag),
            desk_and_library(&tag, &addr, 1000)
        ),
    );
    let hub = d.spawn();
    wait_listening(&addr);
    wait_until(
        Duration::from_secs(120),
        "an entity seen by four systems",
        || {
            hub_ready(&addr)
                && hub_entities(&addr)
                    .iter()
                    .any(|e| e["systems"].as_array().unwrap().len() >= 4)
        },
    );
    // Every source has been read to its end (the sandbox no longer
    // changes) and all it gave is on the bus: each pipeline's source was
    // drained at least once (`duijie_source_lag_seconds` is not -1) and
    // every record fetched is acknowledged, as a record or a dead letter.
    wait_until(
        Duration::from_secs(60),
        "the sources read to their end",
        || {
            let m = block_on(get_text(format!("http://{addr}/metrics"), ""));
            ["penalties", "licences", "urban", "referrals", "grid"]
                .iter()
                .all(|p| {
                    let at = |name: &str| metric(&m, name, &format!("pipeline=\"{p}\""));
                    at("duijie_source_lag_seconds").is_some_and(|lag| lag >= 0.0)
                        && at("duijie_records_fetched_total")
                            == Some(
                                at("duijie_records_delivered_total").unwrap_or(0.0)
                                    + at("duijie_records_dead_lettered_total").unwrap_or(0.0),
                            )
                })
        },
    );
    let log = terminate(hub);
    assert!(
        log.contains("entity cache opened") && log.contains("kept=false"),
        "{log}"
    );

    // Rebuilt from the bus by the CLI.
    let listed = cli(&d, &["list", "--format", "json"]);
    let entity = listed
        .iter()
        .filter(|e| e["systems"].as_array().unwrap().len() >= 4)
        .max_by_key(|e| e["records"].as_u64())
        .expect("an entity seen by four systems")
        .clone();
    let key = entity["key"].as_str().unwrap().to_owned();
    let code = entity["code"].as_str().unwrap().to_owned();
    let profile = &cli(&d, &["show", &code, "--format", "json"])[0];
    let shown: BTreeSet<(String, String)> = profile["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source_system"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // What the topics hold naming that code (latest state per key; a
    // referral's events are one record).
    let mut expected = BTreeSet::new();
    for t in [
        "canonical.penalty",
        "canonical.licence",
        "canonical.urban",
        "canonical.referral",
        "canonical.grid",
    ] {
        for v in common::latest(&brokers, &format!("{t}.{tag}")).into_values() {
            if code_named(&v).as_deref() == Some(key.as_str()) {
                let id = v
                    .get("referral_no")
                    .or_else(|| v.get("id"))
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_owned();
                expected.insert((v["source_system"].as_str().unwrap().to_owned(), id));
            }
        }
    }
    // Referral events of one referral: keyed by referral number on their
    // topic, so `latest` already gave one each.
    assert_eq!(
        shown, expected,
        "entity show lists every record naming {code}, and no other"
    );
    let systems: BTreeSet<&str> = shown.iter().map(|(s, _)| s.as_str()).collect();
    assert!(systems.len() >= 4, "{systems:?}");
    for r in profile["records"].as_array().unwrap() {
        assert!(
            r["provenance"]["topic"].as_str().unwrap().ends_with(&tag),
            "{r}"
        );
        assert!(r["provenance"]["offset"].as_i64().is_some(), "{r}");
    }
    assert_eq!(profile["code"], code.as_str());

    // Restarted on the same cache, with the only pipeline whose source is
    // read to its end: the same index, resumed (not rebuilt).
    let hub = d.spawn_with(&["--pipeline", "penalties"]);
    wait_listening(&addr);
    wait_until(Duration::from_secs(60), "the restarted index", || {
        hub_ready(&addr)
    });
    assert_eq!(
        summary(&hub_entities(&addr)),
        summary(&listed),
        "the restarted hub and a rebuild from the bus agree"
    );

    // The profile page (主体画像): names, every system, the charts, the
    // timeline with provenance; found by searching its name.
    let name = entity["name"].as_str().unwrap().to_owned();
    let page = block_on(get_text(
        format!(
            "http://{addr}/desk/entities/{}",
            percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC)
        ),
        &format!("Bearer {OFFICER}"),
    ));
    assert!(page.contains(&name) && page.contains(&code), "{page}");
    for system in &systems {
        assert!(
            page.contains(&format!("data-system=\"{system}\"")),
            "{system} missing on the profile"
        );
    }
    assert!(
        page.contains("id=\"chart-monthly\"") && page.contains("id=\"chart-open\""),
        "{page}"
    );
    assert!(
        page.contains(&format!("{}.{tag}[", "canonical.penalty"))
            || page.contains(&format!("{}.{tag}[", "canonical.licence")),
        "provenance on the timeline"
    );
    assert!(
        duijie::personal::full_ids(&page).is_empty(),
        "a full ID number on the profile"
    );
    let found = block_on(get_text(
        format!(
            "http://{addr}/desk/entities?q={}",
            percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
        ),
        &format!("Bearer {OFFICER}"),
    ));
    assert!(found.contains(&format!("data-key=\"{key}\"")), "{found}");

    // Name-only records are proposed, never linked silently.
    let (status, proposals, _) = call(&addr, "/desk/api/entities/proposals", Some(OFFICER));
    assert_eq!(status, 200, "{proposals}");
    let proposal = proposals["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["record"]["kind"] == "urban_case" && !p["candidates"].as_array().unwrap().is_empty()
        })
        .expect("a shop sign's name proposed for a company")
        .clone();
    let candidate = proposal["candidates"][0].clone();
    let candidate_key = candidate["entity"].as_str().unwrap().to_owned();
    let before = &cli(&d, &["show", &candidate_key, "--format", "json"])[0];
    let record_id = proposal["record"]["id"].as_str().unwrap().to_owned();
    assert!(
        !before["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == record_id.as_str()),
        "{record_id} was linked without an officer"
    );
    assert!(
        candidate["confidence"].as_f64().unwrap() >= 0.6,
        "{candidate}"
    );
    // An officer confirms: the decision is an event, and the record joins.
    let (status, body) = post(
        &addr,
        "/desk/api/entities/links",
        json!({"reference": proposal["record"]["reference"], "entity": candidate_key, "action": "confirm"}),
    );
    assert_eq!(status, 202, "{body}");
    let after = &cli(&d, &["show", &candidate_key, "--format", "json"])[0];
    let joined = after["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == record_id.as_str())
        .unwrap_or_else(|| panic!("{after}"));
    assert_eq!(joined["linked_by"], "officer");
    let decisions = common::read(&brokers, &format!("links.{tag}"), false);
    assert_eq!(decisions.len(), 1);
    let decision: Value = serde_json::from_slice(decisions[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(
        (decision["confirmed"].clone(), decision["by"].clone()),
        (json!(true), json!("张伟"))
    );
    // Every view was audited.
    let audit: Vec<String> = common::read(&brokers, &format!("audit.{tag}"), false)
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap()).into_owned())
        .collect();
    assert!(
        audit.iter().any(|a| a.contains("待确认的主体关联")),
        "{audit:?}"
    );
    assert!(audit.iter().any(|a| a.contains("确认记录")), "{audit:?}");
    let log = terminate(hub);
    assert!(
        log.contains("kept=true"),
        "the restart resumed from its cache: {log}"
    );
}

/// Publishes canonical records as JSON (the decoder reads them by their
/// content type), with the provenance headers a pipeline writes.
fn publish(brokers: &str, topic: &str, schema: &str, records: &[(String, Value)]) {
    block_on(publish_async(brokers, topic, schema, records));
}

async fn publish_async(brokers: &str, topic: &str, schema: &str, records: &[(String, Value)]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let producer = common::bus(brokers).producer().unwrap();
    {
        for (key, v) in records {
            let payload = v.to_string();
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                })
                .insert(Header {
                    key: "duijie-source-system",
                    value: Some("enforcement"),
                })
                .insert(Header {
                    key: "duijie-pipeline",
                    value: Some("test"),
                });
            if !schema.is_empty() {
                headers = headers.insert(Header {
                    key: "duijie-schema",
                    value: Some(schema),
                });
            }
            producer
                .send(
                    FutureRecord::to(topic)
                        .key(key)
                        .payload(&payload)
                        .headers(headers),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }
}

fn decision(
    id: &str,
    version: i32,
    action: &str,
    party: Value,
    categories: &[&str],
    industry: &str,
) -> (String, Value) {
    let mut d = duijie::credit::sample_decision();
    d["id"] = json!(format!("pen:{id}"));
    d["decision_id"] = json!(id);
    d["version"] = json!(version);
    d["action"] = json!(action);
    d["decision_no"] = json!(format!("宜高综执罚决字〔2026〕第{id}号"));
    d["party"] = party;
    d["categories"] = json!(categories);
    d["industry"] = json!(industry);
    d["decided_at"] = json!((chrono::Utc::now() - chrono::Duration::days(20)).timestamp_millis());
    (format!("pen:{id}"), d)
}

fn company_code(seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let body: String = (0..8)
        .map(|_| b"0123456789ABCDEFGHJKLMNPQRTUWXY"[rng.usize(..31)] as char)
        .collect();
    duijie::ident::with_uscc_checks(&format!("91420502{body}")).unwrap()
}

const PERSON_ID: &str = "11010519491231002X";

/// A deployment whose penalty topic the test writes itself (the pipeline's
/// source is a folder nobody drops into), with a blacklist topic.
fn written_deployment(tag: &str, addr: &str, per_minute: u32) -> TestDeployment {
    TestDeployment::with_hub(
        &brokers(),
        &hub_extra(tag),
        &format!(
            r#"[pipelines.penalties]
system = "enforcement"
mapping = "penalty_decision"
topic = "canonical.penalty.{tag}"
schedule = "*/5 * * * * *"

[pipelines.penalties.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"

[pipelines.repairs]
system = "credit"
mapping = "credit_repair"
topic = "canonical.repair.{tag}"
schedule = "*/5 * * * * *"

[pipelines.repairs.source]
kind = "file_drop"
dir = "repairs"
layout = "jsonl"

[deliveries.credit]
topic = "canonical.penalty.{tag}"
transform = {{ kind = "credit_penalty" }}
# Nobody listens there: the deliveries wait and retry, the library reads on.
target = {{ kind = "credit_batch", url = "http://127.0.0.1:9/credit/api/penalties" }}

[credit]
decisions_topic = "canonical.penalty.{tag}"
delivery = "credit"

[credit.blacklist]
topic = "list.{tag}"
events_topic = "list-events.{tag}"
objection_window = {{ limit = "5 working days", basis = "异议期依据（测试）" }}
listing_term = {{ limit = "3 years", basis = "列入期限依据（测试）" }}
repair_after = {{ limit = "1 year", basis = "信用修复依据（测试）" }}
criteria = [
  {{ name = "closed", label = "受到责令关闭的行政处罚", instrument = "《测试规章》", article = "第一条", fields = ["MARKET", "FOOD_SAFETY", "SAFETY_PRODUCTION", "SPECIAL_EQUIPMENT", "URBAN", "ENVIRONMENT", "FIRE_SAFETY", "OTHER"], basis = "认定依据（测试）", categories_any = ["责令关闭"] }},
]
{}"#,
            desk_and_library(tag, addr, per_minute)
        ),
    )
}

#[test]
fn the_restrictions_api_says_why_an_entity_is_restricted_until_it_is_removed_and_refuses_without_a_token()
 {
    let tag = unique("restrict");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = written_deployment(&tag, &addr, 1000);
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    let hub = d.spawn();
    wait_listening(&addr);
    let (listed, food, clean) = (company_code(11), company_code(12), company_code(13));
    let company =
        |name: &str, code: &str| json!({"name": name, "type": "LEGAL_PERSON", "credit_code": code});
    publish(
        &brokers(),
        &format!("canonical.penalty.{tag}"),
        "duijie.canonical.PenaltyDecision",
        &[
            decision(
                "R1",
                1,
                "ISSUED",
                company("宜昌桃花岭食品有限公司", &food),
                &["吊销许可证件"],
                "FOOD_SAFETY",
            ),
            decision(
                "R2",
                1,
                "ISSUED",
                company("宜昌新城广告传媒有限公司", &clean),
                &["吊销许可证件"],
                "URBAN",
            ),
        ],
    );
    let entry = |action: &str| {
        json!({
            "id": format!("blk:uscc:{listed}"), "entity": format!("uscc:{listed}"), "name": "湖北三峡渣土运输有限公司",
            "credit_code": listed, "action": action, "case_id": format!("uscc:{listed}#1"),
            "criteria": [{"name": "closed", "label": "受到责令关闭的行政处罚", "basis": "认定依据（测试）"}],
            "reasons": ["受到责令关闭的行政处罚"], "decision_nos": ["宜高综执罚决字〔2026〕第9号"],
            "measures": [{"label": "审批时作为重要考量因素", "effect": "consider", "permits": ["*"], "basis": "措施依据（测试）"}],
            "decided_at": (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339(),
            "listed_until": (chrono::Utc::now() + chrono::Duration::days(1000)).to_rfc3339(),
            "removal_reason": if action == "REMOVE" { json!("信用修复") } else { Value::Null },
        })
    };
    publish(
        &brokers(),
        &format!("list.{tag}"),
        "",
        &[(format!("uscc:{listed}"), entry("ADD"))],
    );
    let ask = |code: &str, token: Option<&str>| {
        call(&addr, &format!("/api/entities/{code}/restrictions"), token)
    };
    let ask_for = |code: &str, permit: &str| {
        call(
            &addr,
            &format!("/api/entities/{code}/restrictions?permit={permit}"),
            Some(CALLER),
        )
        .1
    };

    // Without a token, or with another's: 401, before anything else.
    assert_eq!(ask(&listed, None).0, 401);
    assert_eq!(ask(&listed, Some("officer-token-entities-0001")).0, 401);
    wait_until(Duration::from_secs(60), "the listing read", || {
        let (s, b, _) = ask(&listed, Some(CALLER));
        s == 200 && b["listed"] == true
    });
    let (_, b, h) = ask(&listed.to_lowercase(), Some(CALLER));
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(b["entity"], format!("uscc:{listed}"));
    // The listing's measure is a consideration, with its own basis: the
    // entity is not barred from anything.
    let measure = &b["measures"][0];
    assert_eq!(measure["kind"], "blacklist", "{b}");
    assert_eq!(measure["effect"], "consider", "{b}");
    assert_eq!(measure["scope"], json!(["*"]));
    assert!(
        measure["basis"]
            .as_str()
            .unwrap()
            .starts_with("措施依据（测试）"),
        "{b}"
    );
    assert_eq!(b["restricted"], false, "a consideration bars nothing: {b}");
    assert!(
        measure["until"].as_str().unwrap().ends_with("+08:00"),
        "{measure}"
    );
    // A food-safety revocation bars a food licence (食品安全法 art. 135(1));
    // the same penalty in another trade does not, nor does it concern
    // another permit.
    wait_until(Duration::from_secs(60), "the penalties read", || {
        ask_for(&food, "FOOD_PRODUCTION_OPERATION")["restricted"] == true
    });
    let b = ask_for(&food, "FOOD_PRODUCTION_OPERATION");
    assert_eq!(b["measures"][0]["kind"], "penalty");
    assert_eq!(b["measures"][0]["effect"], "bar");
    assert!(
        b["measures"][0]["basis"]
            .as_str()
            .unwrap()
            .contains("第一百三十五条"),
        "{b}"
    );
    let other = ask_for(&food, "OUTDOOR_ADVERTISING");
    assert_eq!(
        (other["restricted"].clone(), other["measures"].clone()),
        (json!(false), json!([])),
        "{other}"
    );
    // Without a permit: every measure, with its scope.
    let (_, all, _) = ask(&food, Some(CALLER));
    assert_eq!(
        all["measures"][0]["scope"],
        json!(["FOOD_PRODUCTION_OPERATION"]),
        "{all}"
    );
    let (_, b, _) = ask(&clean, Some(CALLER));
    assert_eq!(
        (b["known"].clone(), b["restricted"].clone()),
        (json!(true), json!(false)),
        "{b}"
    );
    // An entity nobody knows: not restricted, and said to be unknown.
    let (_, b, _) = ask(&company_code(14), Some(CALLER));
    assert_eq!(
        (b["known"].clone(), b["restricted"].clone()),
        (json!(false), json!(false))
    );

    // Removed (a credit repair): no longer restricted.
    publish(
        &brokers(),
        &format!("list.{tag}"),
        "",
        &[(format!("uscc:{listed}"), entry("REMOVE"))],
    );
    wait_until(Duration::from_secs(60), "the removal read", || {
        let b = ask(&listed, Some(CALLER)).1;
        b["listed"] == false && b["measures"] == json!([])
    });
    // Revoked (行政处罚法 art. 48): the penalty restricts no more.
    publish(
        &brokers(),
        &format!("canonical.penalty.{tag}"),
        "duijie.canonical.PenaltyDecision",
        &[decision(
            "R1",
            2,
            "REVOKED",
            company("宜昌桃花岭食品有限公司", &food),
            &["吊销许可证件"],
            "FOOD_SAFETY",
        )],
    );
    wait_until(Duration::from_secs(60), "the revocation read", || {
        ask_for(&food, "FOOD_PRODUCTION_OPERATION")["restricted"] == false
    });
    terminate(hub);
}

#[test]
fn the_public_window_shows_a_published_penalty_drops_a_withdrawn_one_and_never_a_full_id_number() {
    let tag = unique("public");
    let addr = format!("127.0.0.1:{}", free_port());
    let per_minute = 40;
    let d = written_deployment(&tag, &addr, per_minute);
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    let hub = d.spawn();
    wait_listening(&addr);
    let (kept, withdrawn, repaired) = (company_code(21), company_code(22), company_code(23));
    let topic = format!("canonical.penalty.{tag}");
    let person = json!({"name": "李娜", "type": "NATURAL_PERSON", "id_type": "RESIDENT_ID", "id_number": PERSON_ID});
    publish(
        &brokers(),
        &topic,
        "duijie.canonical.PenaltyDecision",
        &[
            decision(
                "P1",
                1,
                "ISSUED",
                json!({"name": "宜昌东山化工有限责任公司", "type": "LEGAL_PERSON", "credit_code": kept}),
                &["罚款"],
                "URBAN",
            ),
            decision(
                "P2",
                1,
                "ISSUED",
                json!({"name": "白洋港物流有限公司", "type": "LEGAL_PERSON", "credit_code": withdrawn}),
                &["罚款"],
                "URBAN",
            ),
            decision("P3", 1, "ISSUED", person, &["罚款"], "URBAN"),
        ],
    );
    let base = format!("http://{addr}");
    let artifacts = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("public-window");
    std::fs::create_dir_all(&artifacts).unwrap();
    let driver = ChromeDriver::start();
    block_on(async {
        use fantoccini::Locator;
        let browser = driver.browser(None).await;
        let result = async {
            // The page is public: no login.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                browser.goto(&format!("{base}/public/credit")).await?;
                let text = browser.find(Locator::Css("table#items")).await?.text().await?;
                if text.contains("第P1号") && text.contains("第P2号") && text.contains("李娜") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the published penalties never appeared: {text}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let html = browser.source().await?;
            assert!(duijie::personal::full_ids(&html).is_empty(), "a full ID number on the public page");
            assert!(html.contains("110105********002X") || html.contains("110105"), "the person's number, masked");
            std::fs::write(artifacts.join("public-window.png"), browser.screenshot().await?).unwrap();
            // Search by name.
            browser.goto(&format!("{base}/public/credit?q=东山化工")).await?;
            let text = browser.find(Locator::Css("table#items")).await?.text().await?;
            assert!(text.contains("第P1号") && !text.contains("第P2号"), "{text}");
            // Revoked (行政处罚法 art. 48): gone from the window.
            publish_async(
                &brokers(),
                &topic,
                "duijie.canonical.PenaltyDecision",
                &[decision("P2", 2, "REVOKED", json!({"name": "白洋港物流有限公司", "type": "LEGAL_PERSON", "credit_code": withdrawn}), &["罚款"], "URBAN")],
            ).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                browser.goto(&format!("{base}/public/credit")).await?;
                let text = browser.find(Locator::Css("table#items")).await?.text().await?;
                if !text.contains("第P2号") {
                    assert!(text.contains("第P1号"), "{text}");
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the withdrawn penalty stayed: {text}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            for page in ["/public/credit", "/public/credit?q=李娜", "/public/api/credit", "/public/api/credit?page=2"] {
                browser.goto(&format!("{base}{page}")).await?;
                let html = browser.source().await?;
                assert!(duijie::personal::full_ids(&html).is_empty(), "a full ID number on {page}");
            }
            std::fs::write(artifacts.join("public-window-after-withdrawal.png"), browser.screenshot().await?).unwrap();
            // A credit repair (终止公示) from the credit platform: the
            // decision leaves the window at once (《信用修复管理办法》 art. 3).
            publish_async(
                &brokers(),
                &topic,
                "duijie.canonical.PenaltyDecision",
                &[decision("P4", 1, "ISSUED", json!({"name": "东苑建材有限公司", "type": "LEGAL_PERSON", "credit_code": repaired}), &["罚款"], "URBAN")],
            ).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                browser.goto(&format!("{base}/public/credit")).await?;
                let text = browser.find(Locator::Css("table#items")).await?.text().await?;
                if text.contains("第P4号") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "P4 never appeared: {text}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let now = chrono::Utc::now().timestamp_millis();
            publish_async(
                &brokers(),
                &format!("canonical.repair.{tag}"),
                "duijie.canonical.CreditRepair",
                &[(
                    "rep:XF1".to_owned(),
                    json!({"id": "rep:XF1", "source_system": "credit", "repair_no": "XF1", "kind": "PUBLICATION_ENDED",
                        "decision_no": "宜高综执罚决字〔2026〕第P4号",
                        "party": {"name": "东苑建材有限公司", "credit_code": repaired},
                        "repaired_at": now, "authority": "宜昌高新区综合行政执法局", "remarks": null, "flags": [], "updated_at": now}),
                )],
            ).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                browser.goto(&format!("{base}/public/credit")).await?;
                let text = browser.find(Locator::Css("table#items")).await?.text().await?;
                if !text.contains("第P4号") {
                    assert!(text.contains("第P1号"), "{text}");
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the repaired penalty stayed: {text}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            std::fs::write(artifacts.join("public-window-after-repair.png"), browser.screenshot().await?).unwrap();
            Ok::<_, fantoccini::error::CmdError>(())
        }
        .await;
        if result.is_err()
            && let Ok(png) = browser.screenshot().await
        {
            std::fs::write(artifacts.join("public-window-failure.png"), png).unwrap();
        }
        browser.close().await.unwrap();
        result.unwrap();
    });
    eprintln!("screenshots in {}", artifacts.display());

    // The API: caching headers, a conditional GET, and the rate limit.
    let client = reqwest::Client::new();
    block_on(async {
        let r = client
            .get(format!("{base}/public/api/credit?q=东山化工"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["cache-control"], "public, max-age=30");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["total"], 1, "{body}");
        assert_eq!(body["items"][0]["code"], kept.as_str());
        let again = client
            .get(format!("{base}/public/api/credit?q=东山化工"))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
        let mut limited = None;
        for _ in 0..per_minute + 5 {
            let r = client
                .get(format!("{base}/public/api/credit"))
                .send()
                .await
                .unwrap();
            if r.status() == 429 {
                limited = Some(r.headers()["retry-after"].to_str().unwrap().to_owned());
                break;
            }
        }
        let wait: u64 = limited
            .expect("one address is limited to its quota")
            .parse()
            .unwrap();
        assert!(wait >= 1, "{wait}");
    });
    terminate(hub);
}

/// History is kept as long as what is rebuilt from it: the hub makes the
/// decisions topic whole, and refuses to start on one that keeps its
/// records a week (the cluster's default), naming the topic, who reads it
/// and the retention it needs.
#[test]
fn the_decisions_topic_is_kept_whole_and_a_short_retention_is_refused() {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let tag = unique("retention");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = written_deployment(&tag, &addr, 1000);
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    // Made whole by the hub.
    let hub = d.spawn();
    wait_listening(&addr);
    let b = bus(&brokers());
    let topic = format!("canonical.penalty.{tag}");
    let kept = block_on(b.retention_each(&[&topic])).unwrap();
    assert_eq!(
        kept.get(&topic),
        Some(&duijie::bus::Kept::Whole),
        "kept whole: {kept:?}"
    );
    terminate(hub);

    // A topic someone made with a week's retention: refused at the start.
    let tag = unique("retention");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = written_deployment(&tag, &addr, 1000);
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    let topic = format!("canonical.penalty.{tag}");
    block_on(async {
        let admin = b.admin().unwrap();
        let new =
            NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("retention.ms", "604800000");
        for r in admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .unwrap()
        {
            r.unwrap();
        }
    });
    let mut hub = d.spawn();
    let status = {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = hub.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hub did not refuse to start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(
        std::fs::read_dir(d.path(""))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("hub-"))
            })
            .unwrap(),
    )
    .unwrap();
    for expected in [
        topic.as_str(),
        "7 days",
        "公示时钟",
        "严重失信主体名单",
        "months",
    ] {
        assert!(log.contains(expected), "{expected} not in:\n{log}");
    }
}
