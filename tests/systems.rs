//! The six government systems, each through its connector, its mapping and
//! the real broker, with the faults it is known for.

use crate::common::*;
use duijie::bus::DeadLetter;
use duijie_connectors::webhook::sign;
use duijie_sandbox::{Faults, SandboxConfig, approval, referral, safety};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn letters(brokers: &str, topic: &str) -> Vec<DeadLetter> {
    read(brokers, topic, true)
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap())
        .collect()
}

/// Pages through a sandbox list API by keyset, as of now.
fn scan(url: &str, list: &str, id: &str, after_param: &str, token: Option<&str>) -> Vec<Value> {
    block_on(async {
        let client = reqwest::Client::new();
        let mut out: Vec<Value> = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let mut q = vec![("pageSize".to_owned(), "500".to_owned())];
            if let Some((t, i)) = &after {
                q.push(("updatedAfter".into(), t.clone()));
                q.push((after_param.into(), i.clone()));
            }
            let mut req = client.get(url).query(&q);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            let rows = body
                .pointer(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = rows.len();
            if let Some(last) = rows.last() {
                after = Some((
                    last["updateTime"].as_str().unwrap().to_owned(),
                    last[id].as_str().unwrap().to_owned(),
                ));
            }
            out.extend(rows);
            if n < 500 {
                return out;
            }
        }
    })
}

fn grid_token(sandbox: &str) -> String {
    let (_, body) = post(
        &format!("http://{sandbox}/grid/api/login"),
        &[("Content-Type", "application/json".into())],
        json!({"username": "duijie", "password": "Wg#2026-yc"})
            .to_string()
            .as_bytes(),
    );
    body["data"]["token"].as_str().unwrap().to_owned()
}

/// Waits until a simulated system has made all its changes (its
/// `change_limit`), as its counters say.
fn wait_for_changes(sandbox: &str, counter: &str, limit: u64) {
    wait_until(
        Duration::from_secs(60),
        &format!("the sandbox's {limit} {counter}"),
        || get_json(&format!("http://{sandbox}/sandbox/counters"))[counter].as_u64() == Some(limit),
    );
}

#[test]
fn grid_polling_relogs_in_and_keeps_up_with_shifting_pages() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        faults: Faults {
            duplicate_rate: 0.05,
            fail_next: 2,
            ..Faults::default()
        },
        grid: duijie_sandbox::grid::Settings {
            events: 300,
            changes_per_sec: 60,
            token_ttl: Duration::from_secs(2),
            ..Default::default()
        },
        change_limit: Some(240),
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let (topic, dlq) = (unique("canonical.grid"), unique("dlq.grid"));
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.grid_events]
system = "grid"
mapping = "grid_event"
topic = "{topic}"
dlq_topic = "{dlq}"
schedule = "* * * * * *"
retry = {{ initial = "50ms", max = "500ms", max_attempts = 0 }}

[pipelines.grid_events.source]
kind = "http_poll"
url = "http://{sandbox}/grid/api/events"
records_pointer = "/data/list"
paging = "keyset"
page_size = 25
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "eventId"
after_id_param = "afterId"
login = {{ url = "http://{sandbox}/grid/api/login", username = "duijie", password = "Wg#2026-yc" }}
"#
        ),
    );
    let hub = d.spawn();
    let status = |code: &str| {
        match code {
            "0" => "REPORTED",
            "1" => "ACCEPTED",
            "2" => "ASSIGNED",
            "3" => "HANDLING",
            "4" => "CLOSED",
            _ => "RETURNED",
        }
        .to_owned()
    };
    // Changes stop after 240; then the topic must hold every event in its
    // latest status: none skipped while pages shifted, none stale.
    wait_for_changes(&sandbox, "grid_changes", 240);
    wait_until(
        Duration::from_secs(90),
        "the topic to match the grid system",
        || {
            let token = grid_token(&sandbox);
            let expected: BTreeMap<String, String> = scan(
                &format!("http://{sandbox}/grid/api/events"),
                "/data/list",
                "eventId",
                "afterId",
                Some(&token),
            )
            .iter()
            .map(|e| {
                (
                    format!("grid:{}", e["eventId"].as_str().unwrap()),
                    status(e["status"].as_str().unwrap()),
                )
            })
            .collect();
            let got: BTreeMap<String, String> = latest(&brokers, &topic)
                .into_iter()
                .map(|(k, v)| (k, v["status"].as_str().unwrap().to_owned()))
                .collect();
            expected.len() >= 300 && got == expected
        },
    );
    // The hub may read everything within the first token's life; it keeps
    // polling, so it meets the expiry in the end. A second login is its
    // answer to the refusal, logged just before.
    wait_until(
        Duration::from_secs(30),
        "the hub to log in again after its token expired",
        || {
            get_json(&format!("http://{sandbox}/sandbox/counters"))["grid_logins"].as_u64()
                >= Some(2)
        },
    );
    let log = terminate(hub);
    assert!(
        log.contains("token refused; logging in again"),
        "no transparent re-login:\n{log}"
    );
    assert!(
        log.contains("transient source error; retrying"),
        "no retry of the 500s:\n{log}"
    );
    // Its own dead-letter topic: the demo's pipeline of the same name
    // writes `dlq.grid_events` on the same broker.
    assert!(read(&brokers, &dlq, true).is_empty());
}

#[test]
fn signed_urgent_events_are_taken_once_and_forged_ones_never_reach_the_bus() {
    let brokers = brokers();
    let port = free_port();
    let topic = unique("canonical.grid");
    let dlq = unique("dlq.urgent");
    let secret = "grid-urgent-secret-for-tests";
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[http]
listen = "127.0.0.1:{port}"

[pipelines.grid_urgent]
system = "grid"
mapping = "grid_event"
topic = "{topic}"
dlq_topic = "{dlq}"

[pipelines.grid_urgent.source]
kind = "webhook"
path = "/hooks/grid/urgent"
secret = "{secret}"
"#
        ),
    );
    let hub = d.spawn();
    wait_listening(&format!("127.0.0.1:{port}"));
    let url = format!("http://127.0.0.1:{port}/hooks/grid/urgent");
    let event = json!({
        "eventId": "WG20261128URGENT1", "gridCode": "420502000101", "eventType": "03", "eventTypeName": "安全生产隐患",
        "content": "储罐区可燃气体泄漏", "reportTime": "2026-11-28 09:15:00", "updateTime": "2026-11-28 09:15:00.000",
        "status": "0", "urgentFlag": "1", "urgentReason": "可能引发爆炸", "reporter": {"name": "李娜", "phone": "13871234567"}
    });
    let body = event.to_string();
    let now = chrono::Utc::now().timestamp();
    let signed = |ts: i64, secret: &str, body: &str| {
        vec![
            ("Content-Type", "application/json".to_owned()),
            ("X-Timestamp", ts.to_string()),
            ("X-Signature", sign(secret, ts, body.as_bytes())),
        ]
    };

    let (status, answer) = post(&url, &signed(now, secret, &body), body.as_bytes());
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    assert_eq!(answer["id"], "grid:WG20261128URGENT1");
    // The same delivery again is a replay.
    assert_eq!(
        post(&url, &signed(now, secret, &body), body.as_bytes()).0,
        409
    );
    // Unsigned, wrongly signed, stale, tampered.
    assert_eq!(
        post(&url, &[("X-Timestamp", now.to_string())], body.as_bytes()).0,
        401
    );
    assert_eq!(
        post(
            &url,
            &signed(now, "not-the-shared-secret", &body),
            body.as_bytes()
        )
        .0,
        401
    );
    let old = now - 400;
    assert_eq!(
        post(&url, &signed(old, secret, &body), body.as_bytes()).0,
        401
    );
    let tampered = body.replace("可能引发爆炸", "无");
    assert_eq!(
        post(&url, &signed(now, secret, &body), tampered.as_bytes()).0,
        401
    );
    // Signed but unmappable: dead-lettered, answered 202.
    let bad = body
        .replace("\"status\":\"0\"", "\"status\":\"9\"")
        .replace("URGENT1", "URGENT2");
    let (status, answer) = post(&url, &signed(now, secret, &bad), bad.as_bytes());
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("dead_lettered")),
        "{answer}"
    );

    let log = terminate(hub);
    let records = decoded(&brokers, &topic);
    assert_eq!(records.len(), 1, "only the one good delivery is on the bus");
    assert_eq!(records[0].1["urgent"], true);
    assert_eq!(records[0].1["reporter_phone"], "138****4567");
    let dead = letters(&brokers, &dlq);
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("code `9`"), "{dead:?}");
    assert!(log.contains("webhook message refused"), "{log}");
}

#[test]
fn urban_soap_updates_leave_each_case_in_its_latest_state() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        faults: Faults {
            duplicate_rate: 0.05,
            fail_next: 2,
            ..Faults::default()
        },
        urban: duijie_sandbox::urban::Settings {
            cases: 400,
            changes_per_sec: 60,
        },
        change_limit: Some(200),
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.urban");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.urban_soap]
system = "digital_urban"
mapping = "urban_case_soap"
topic = "{topic}"
compacted = true
schedule = "* * * * * *"
retry = {{ initial = "50ms", max = "500ms", max_attempts = 0 }}

[pipelines.urban_soap.source]
kind = "soap_poll"
url = "http://{sandbox}/dcm/soap/CaseService"
soap_action = "urn:dcm:case#QueryCaseUpdates"
record_element = "case"
watermark_element = "updateTime"
id_element = "taskNum"
page_size = 50
request_template = "<Envelope><Body><QueryCaseUpdates><updatedAfter>{{watermark}}</updatedAfter><afterTaskNum>{{after_id}}</afterTaskNum><pageSize>{{page_size}}</pageSize></QueryCaseUpdates></Body></Envelope>"
"#
        ),
    );
    let hub = d.spawn();
    // Changes stop after 200; then each case must be in its latest state.
    wait_for_changes(&sandbox, "urban_changes", 200);
    let state = |code: &str| {
        match code {
            "1" => "PENDING_ACCEPT",
            "3" => "DISPATCHED",
            "4" => "IN_PROGRESS",
            "5" => "VERIFYING",
            _ => "CLOSED",
        }
        .to_owned()
    };
    wait_until(
        Duration::from_secs(90),
        "the topic to match the urban system",
        || {
            let expected: BTreeMap<String, String> = scan(
                &format!("http://{sandbox}/dcm/api/cases"),
                "/data/rows",
                "taskNum",
                "afterTaskNum",
                None,
            )
            .iter()
            .map(|c| {
                (
                    format!("dcm:{}", c["taskNum"].as_str().unwrap()),
                    state(c["eventStateId"].as_str().unwrap()),
                )
            })
            .collect();
            let got: BTreeMap<String, String> = latest(&brokers, &topic)
                .into_iter()
                .map(|(k, v)| (k, v["status"].as_str().unwrap().to_owned()))
                .collect();
            got == expected
        },
    );
    let log = terminate(hub);
    assert!(log.contains("transient source error; retrying"), "{log}");
    // Stage deadlines came through from the GBK SOAP answer.
    let with_deadlines = latest(&brokers, &topic)
        .values()
        .filter(|v| v["register_due_at"].is_number() && v["stage"].is_string())
        .count();
    assert!(with_deadlines > 100, "{with_deadlines}");
}

#[test]
fn safety_hazards_flow_from_postgresql_and_mariadb_front_ends() {
    let brokers = brokers();
    let table = format!("hd_{}", unique("t").replace('-', "_"));
    let pg = "postgres://postgres@127.0.0.1:5432/test";
    let maria = "mysql://root@127.0.0.1:3306/test";
    block_on(async {
        for url in [pg, maria] {
            safety::prepare(url, &table).await.unwrap();
        }
        safety::seed(pg, &table, 1_000, 120, 1).await.unwrap();
        safety::seed(maria, &table, 5_000, 120, 2).await.unwrap();
    });
    let topic = unique("canonical.hazard");
    let pipeline = |name: &str, url: &str| {
        format!(
            r#"[pipelines.{name}]
system = "safety"
mapping = "safety_hazard"
topic = "{topic}"
compacted = true
schedule = "* * * * * *"

[pipelines.{name}.source]
kind = "sql_poll"
url = "{url}"
table = "v_{table}"
page_size = 25
"#
        )
    };
    let d = TestDeployment::new(
        &brokers,
        &format!(
            "{}\n{}",
            pipeline("hazard_pg", pg),
            pipeline("hazard_maria", maria)
        ),
    );
    let hub = d.spawn();
    // Rows change while the hub reads.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        block_on(async {
            safety::advance(pg, &table, 10).await.unwrap();
            safety::advance(maria, &table, 10).await.unwrap();
        });
    }
    let db_states = || -> BTreeMap<String, String> {
        block_on(async {
            let mut out = BTreeMap::new();
            for url in [pg, maria] {
                sqlx::any::install_default_drivers();
                let pool = sqlx::AnyPool::connect(url).await.unwrap();
                let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT id, CONCAT(state, '') FROM {table}"
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                for (id, state) in rows {
                    let name = [
                        "REPORTED",
                        "ORDERED",
                        "NOTIFIED",
                        "RECTIFIED_PENDING_REVIEW",
                        "ACCEPTED",
                        "REJECTED",
                    ][state.trim().parse::<usize>().unwrap()];
                    out.insert(format!("hazard:{id}"), name.to_owned());
                }
            }
            out
        })
    };
    let expected = db_states();
    assert_eq!(expected.len(), 240);
    wait_until(
        Duration::from_secs(90),
        "every hazard in its latest state",
        || {
            let got: BTreeMap<String, String> = latest(&brokers, &topic)
                .into_iter()
                .map(|(k, v)| (k, v["state"].as_str().unwrap().to_owned()))
                .collect();
            got == expected
        },
    );
    terminate(hub);
    let records = latest(&brokers, &topic);
    let leads: Vec<&Value> = records
        .values()
        .filter(|v| v["enforcement_lead"] == true)
        .collect();
    assert!(
        !leads.is_empty(),
        "some major hazards are overdue in the seed"
    );
    for lead in leads {
        assert_eq!(lead["grade"], "MAJOR");
        assert!(lead["rectify_deadline"].as_i64().unwrap() < chrono::Utc::now().timestamp_millis());
    }
    assert!(read(&brokers, "dlq.hazard_pg", true).is_empty());
}

#[test]
fn licences_from_the_api_and_the_2016_batch_land_in_one_topic() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        approval: duijie_sandbox::approval::Settings {
            licences: 120,
            ..Default::default()
        },
        bad_rate: 0.0,
        faults: Faults {
            fail_next: 1,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.licence");
    let dlq_batch = unique("dlq.batch");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.licence_api]
system = "approval"
mapping = "licence"
topic = "{topic}"
compacted = true
schedule = "* * * * * *"
retry = {{ initial = "50ms", max = "500ms", max_attempts = 0 }}

[pipelines.licence_api.source]
kind = "http_poll"
url = "http://{sandbox}/approval/api/licences"
records_pointer = "/result/records"
paging = "keyset"
page_size = 50
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "licenceId"
after_id_param = "afterId"

[pipelines.licence_batch]
system = "approval"
mapping = "licence_2016"
topic = "{topic}"
compacted = true
dlq_topic = "{dlq_batch}"
schedule = "* * * * * *"

[pipelines.licence_batch.source]
kind = "file_drop"
dir = "batch"
layout = "xml"
record_element = "XZXK"
encoding = "auto"
settle = "0s"
"#
        ),
    );
    let batch = approval::write_2016_batch(&d.path("batch"), 30, 77).unwrap();
    let name = batch.file_name().unwrap().to_string_lossy().into_owned();
    let hub = d.spawn();
    wait_until(
        Duration::from_secs(90),
        "every licence in the topic",
        || {
            let records = latest(&brokers, &topic);
            let current = records
                .values()
                .filter(|v| v["layout"] == "CURRENT")
                .count();
            let old = records
                .values()
                .filter(|v| v["layout"] == "LAYOUT_2016")
                .count();
            current >= 120 && old == 28 && d.path(&format!("batch/done/{name}")).exists()
        },
    );
    terminate(hub);
    let records = latest(&brokers, &topic);
    // The 2016 record whose credit code fails its check is kept and flagged.
    let flagged: Vec<&Value> = records
        .values()
        .filter(|v| v["layout"] == "LAYOUT_2016" && v["party"]["credit_code_valid"] == false)
        .collect();
    assert_eq!(flagged.len(), 1);
    assert!(
        flagged[0]["flags"][0]
            .as_str()
            .unwrap()
            .contains("check character 18")
    );
    // Decision numbers are normalised whatever brackets the clerk typed.
    assert!(
        records
            .keys()
            .all(|k| !k.contains('【') && !k.contains('[')),
        "{:?}",
        records.keys().take(3).collect::<Vec<_>>()
    );
    // Natural persons' ID numbers never travel in full on this topic.
    assert!(records.values().all(|v| v["party"]["id_number"].is_null()));
    assert!(
        records
            .values()
            .any(|v| v["commitment"] == true && v["commitment_due_at"].is_number())
    );
    let dead = letters(&brokers, &dlq_batch);
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(dead.iter().any(|l| l.reason.contains("待定")));
    assert!(dead.iter().any(|l| l.reason.contains("2016年02月30日")));
}

#[test]
fn police_exchange_files_are_each_read_once_whatever_their_state() {
    let brokers = brokers();
    let topic = unique("canonical.referral");
    let dlq = unique("dlq.police");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.police]
system = "public_security"
mapping = "referral_police"
topic = "{topic}"
dlq_topic = "{dlq}"
schedule = "* * * * * *"

[pipelines.police.source]
kind = "file_drop"
dir = "exchange"
layout = "xml"
record_element = "GAJS"
encoding = "auto"
settle = "2s"
max_record_bytes = 65536
"#
        ),
    );
    let dir = d.path("exchange");
    let events = referral::script(12, 5);
    let written = referral::write_police_files(&dir, &events, true).unwrap();
    let good = written.len() - 2;
    // A message still being written, under its final name: the stable-size
    // check must wait for it.
    let half_event = events
        .iter()
        .find(|e| e.teller == referral::Teller::Police)
        .unwrap()
        .clone();
    let mut late = half_event.clone();
    late.seq = 99;
    let full = referral::police_message(&late).replace("encoding=\"GBK\"", "encoding=\"UTF-8\"");
    let half_path = dir.join("GA_LATE.xml");
    std::fs::write(&half_path, &full.as_bytes()[..full.len() / 2]).unwrap();
    // An oversized message: dead-lettered, truncated, not loaded whole.
    let oversized = referral::police_message(&late)
        .replace("<XXBH>GA", "<XXBH>GABIG")
        .replace(
            "</GAJS>",
            &format!("<BZ>{}</BZ></GAJS>", "备注".repeat(40_000)),
        )
        .replace("encoding=\"GBK\"", "encoding=\"UTF-8\"");
    std::fs::write(dir.join("GA_BIG.xml"), oversized).unwrap();

    let hub = d.spawn();
    // A slow writer: it finishes within the 2 s settle window, so the
    // hub's first polls see the half file and must not take it.
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::write(&half_path, &full).unwrap(); // the writer finishes
    wait_until(
        Duration::from_secs(60),
        "the exchange directory to be emptied",
        || {
            std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .count()
                == 0
        },
    );
    terminate(hub);

    let records = decoded(&brokers, &topic);
    let ids: BTreeSet<String> = records
        .iter()
        .map(|(_, v)| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(records.len(), ids.len(), "no message read twice");
    assert_eq!(
        ids.len(),
        good + 1,
        "every good message, and the late one, once"
    );
    assert!(ids.contains(&format!("ga:GA{}99", late.referral_no.replace('-', ""))));
    for name in ["GA_BROKEN.xml", "GA_BOMB.xml"] {
        assert!(
            dir.join("rejected").join(name).exists(),
            "{name} not in rejected/"
        );
        assert!(
            dir.join("rejected")
                .join(format!("{name}.reason.txt"))
                .exists()
        );
    }
    let dead = letters(&brokers, &dlq);
    assert_eq!(dead.len(), 3, "{dead:#?}");
    assert!(dead.iter().any(|l| l.reason.contains("DOCTYPE")));
    assert!(
        dead.iter()
            .any(|l| l.reason.contains("truncated") || l.reason.contains("ended inside"))
    );
    let big = dead
        .iter()
        .find(|l| l.reason.contains("larger than max_record_bytes"))
        .unwrap();
    assert!(big.raw_truncated);
}

#[test]
fn two_law_events_arrive_through_connection_resets() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        referral: duijie_sandbox::referral::Settings {
            referrals: 20,
            ..Default::default()
        },
        ..SandboxConfig::default()
    });
    let proxy = flaky_proxy(sandbox.clone(), 3);
    let topic = unique("canonical.referral");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.two_law]
system = "two_law"
mapping = "referral_two_law"
topic = "{topic}"
schedule = "* * * * * *"
retry = {{ initial = "50ms", max = "500ms", max_attempts = 0 }}

[pipelines.two_law.source]
kind = "http_poll"
url = "http://{proxy}/twolaw/api/events"
records_pointer = "/data"
paging = "keyset"
page_size = 10
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "eventId"
after_id_param = "afterId"
"#
        ),
    );
    let expected: BTreeSet<String> = scan(
        &format!("http://{sandbox}/twolaw/api/events"),
        "/data",
        "eventId",
        "afterId",
        None,
    )
    .iter()
    .map(|e| format!("lf:{}", e["eventId"].as_str().unwrap()))
    .collect();
    assert!(expected.len() > 20);
    let hub = d.spawn();
    wait_until(Duration::from_secs(60), "every platform event", || {
        let ids: BTreeSet<String> = decoded(&brokers, &topic)
            .iter()
            .map(|(_, v)| v["id"].as_str().unwrap().to_owned())
            .collect();
        ids == expected
    });
    let log = terminate(hub);
    assert!(log.contains("transient source error; retrying"), "{log}");
    // Keyed by referral: one referral's events share a partition, in order.
    let records = read(&brokers, &topic, true);
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for r in &records {
        let p = *partition_of.entry(r.key_str()).or_insert(r.partition);
        assert_eq!(
            p,
            r.partition,
            "referral {} spread over partitions",
            r.key_str()
        );
    }
}
