//! The push side against the real broker and the sandbox receivers, which
//! check signatures and keep what they got.

use crate::common::*;
use duijie::bus::DeadLetter;
use duijie_sandbox::SandboxConfig;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn penalty_pipeline(sandbox: &str, topic: &str) -> String {
    format!(
        r#"[pipelines.penalties]
system = "enforcement"
mapping = "penalty_decision"
topic = "{topic}"
schedule = "* * * * * *"

[pipelines.penalties.source]
kind = "http_poll"
url = "http://{sandbox}/enforcement/api/decisions"
records_pointer = "/data/records"
paging = "keyset"
page_size = 100
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "recordId"
after_id_param = "afterId"
"#
    )
}

fn topic_json(brokers: &str, topic: &str) -> Vec<(String, Value)> {
    read(brokers, topic, true)
        .into_iter()
        .map(|r| {
            (
                r.key_str(),
                serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn penalties_reach_the_credit_platform_exactly_and_the_clock_follows() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        enforcement: duijie_sandbox::enforcement::Settings {
            decisions: 40,
            ..Default::default()
        },
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.penalty");
    let alerts = unique("alerts");
    let receipts = unique("receipts");
    let secrets = root().join("pipelines/secrets");
    let d = TestDeployment::with_hub(
        &brokers,
        &format!(
            "pseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\nsigning = {{ key = \"${{file:{}}}\" }}",
            secrets.join("hub_sm2_key.pem").display()
        ),
        &format!(
            r#"{pipeline}
[deliveries.credit]
topic = "{topic}"
department = "信用平台"
transform = {{ kind = "credit_penalty" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/credit/api/penalties", receipt_key = "${{file:{platform_key}}}" }}
batch_size = 7

[credit]
decisions_topic = "{topic}"
delivery = "credit"
"#,
            pipeline = penalty_pipeline(&sandbox, &topic),
            platform_key = secrets.join("credit_platform_sm2_public.pem").display(),
        ),
    );
    // Shared topics of this deployment, made unique.
    let text = std::fs::read_to_string(&d.file)
        .unwrap()
        .replacen(
            "[kafka]",
            &format!("receipts_topic = \"{receipts}\"\nalerts_topic = \"{alerts}\"\n\n[kafka]"),
            1,
        )
        .replacen(
            "\n\n[kafka]",
            &format!(
                "\ncalendar = \"{}\"\n\n[kafka]",
                root().join("calendar").display()
            ),
            1,
        );
    std::fs::write(&d.file, text).unwrap();
    let hub = d.spawn();

    let decisions = scan_decisions(&sandbox);
    // What 《信用修复管理办法》 (NDRC order 36) makes of each, read from the
    // source: the case system's class (sxcd) where it gives one, else what
    // the measure itself classes; a fine it leaves unclassed is held.
    let class = |d: &Value| -> Option<&'static str> {
        let cats: Vec<&str> = d["cflb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        match d["sxcd"].as_str() {
            Some("轻微" | "1") => Some("LIGHT"),
            Some("一般" | "2") => Some("GENERAL"),
            Some("严重" | "3") => Some("SERIOUS"),
            Some(other) => panic!("unexpected class {other}"),
            None if d["cfcx"] == "简易" => Some("LIGHT"),
            None if cats.iter().all(|c| ["警告", "通报批评"].contains(c)) => Some("LIGHT"),
            None if cats
                .iter()
                .any(|c| ["吊销许可证件", "责令关闭", "限制从业"].contains(c)) =>
            {
                Some("SERIOUS")
            }
            None => None,
        }
    };
    let ids = |want: &dyn Fn(Option<&str>) -> bool| -> BTreeSet<String> {
        decisions
            .iter()
            .filter(|d| want(class(d)))
            .map(|d| d["decisionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let light = ids(&|c| c == Some("LIGHT"));
    let held = ids(&|c| c.is_none());
    let publishable = ids(&|c| matches!(c, Some("GENERAL" | "SERIOUS")));
    assert!(
        !light.is_empty() && !held.is_empty() && !publishable.is_empty(),
        "the sandbox sends every kind: {light:?} {held:?} {publishable:?}"
    );
    let at_platform = || -> BTreeSet<String> {
        get_json(&format!("http://{sandbox}/credit/api/received"))["published"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| {
                k.trim_start_matches("pen:")
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while at_platform() != publishable && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        at_platform(),
        publishable,
        "every publishable decision at the platform"
    );
    // An officer revokes one decision: it must be withdrawn.
    let revoked = decisions
        .iter()
        .find(|d| publishable.contains(d["decisionId"].as_str().unwrap()))
        .unwrap();
    let revoked_id = revoked["decisionId"].as_str().unwrap();
    post(
        &format!("http://{sandbox}/enforcement/api/decisions/{revoked_id}/revoke"),
        &[],
        b"",
    );
    wait_until(Duration::from_secs(60), "the withdrawal", || {
        get_json(&format!("http://{sandbox}/credit/api/received"))["withdrawn"]
            .as_object()
            .unwrap()
            .len()
            == 1
    });
    let received = get_json(&format!("http://{sandbox}/credit/api/received"));
    // Late decisions raise alerts; held ones ask for their class.
    wait_until(Duration::from_secs(30), "late and class alerts", || {
        let alerts = topic_json(&brokers, &alerts);
        alerts
            .iter()
            .filter(|(_, a)| a["kind"] == "CREDIT_PUBLICATION_LATE")
            .count()
            >= 2
            && alerts
                .iter()
                .filter(|(_, a)| a["kind"] == "CREDIT_CLASS_NEEDED")
                .count()
                == held.len()
    });
    terminate(hub);
    // Each alert of the clock continues the trace of the decision it is
    // about (the decision record's `traceparent`, a `keep` span under it).
    let trace_id = |h: &BTreeMap<String, String>| {
        h.get("traceparent")
            .and_then(|t| t.split('-').nth(1))
            .map(str::to_owned)
    };
    let mut decision_traces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in read(&brokers, &topic, false) {
        let t = trace_id(&r.headers).expect("every decision record carries its trace");
        decision_traces.entry(r.key_str()).or_default().insert(t);
    }
    let clock_alerts: Vec<_> = read(&brokers, &alerts, false)
        .into_iter()
        .filter(|r| {
            r.key_str().starts_with("credit:") && !r.key_str().starts_with("credit:calendar")
        })
        .collect();
    assert!(!clock_alerts.is_empty());
    for r in clock_alerts {
        let key = r.key_str();
        let id = key["credit:".len()..]
            .rsplitn(3, ':')
            .nth(2)
            .unwrap()
            .to_owned();
        let t = trace_id(&r.headers).unwrap_or_else(|| panic!("{key}: no trace"));
        assert!(
            decision_traces.get(&id).is_some_and(|ts| ts.contains(&t)),
            "{key}: not in a trace of decision {id}"
        );
    }

    let published = received["published"].as_object().unwrap();
    for (key, r) in published {
        let id = key.trim_start_matches("pen:").split(':').next().unwrap();
        let source = decisions.iter().find(|d| d["decisionId"] == id).unwrap();
        // Public until the class maximum from the decision date.
        let decided =
            chrono::NaiveDate::parse_from_str(source["jdrq"].as_str().unwrap(), "%Y-%m-%d")
                .unwrap();
        let years = if class(source) == Some("SERIOUS") {
            3
        } else {
            1
        };
        assert_eq!(
            r["CF_GSJZQ"],
            decided
                .checked_add_months(chrono::Months::new(12 * years))
                .unwrap()
                .to_string(),
            "{key}"
        );
        // Money: exact 万元.
        if let Some(fine) = source["fkje"].as_str() {
            let expected = match fine {
                "2000" => "0.2",
                "0.01" => "0.000001",
                "1234567.89" => "123.456789",
                "50" => "0.005",
                "100000000" => "10000",
                "3000.5" => "0.30005",
                "19999.99" => "1.999999",
                "200" => "0.02",
                other => panic!("unexpected fine {other}"),
            };
            assert_eq!(r["CF_NR_FK"], expected, "{key}");
        }
        // Masking: persons masked, companies untouched.
        match source["dsr"]["lb"].as_str().unwrap() {
            "3" => {
                let masked = r["CF_XDR_ZJHM"].as_str().unwrap();
                assert_eq!(&masked[6..14], "********", "{masked}");
                assert_eq!(r["CF_XDR_SHXYM"], "");
            }
            // An individual business without a credit code: the
            // layout's placeholder, its operator as legal representative
            // with the ID masked.
            "2" if source["dsr"]["tyshxydm"].is_null() => {
                assert_eq!(r["CF_XDR_SHXYM"], "00000000000000000X");
                assert_eq!(r["CF_FRDB"], source["dsr"]["fddbr"]);
                let masked = r["CF_FR_ZJHM"].as_str().unwrap();
                assert_eq!(&masked[6..14], "********", "{masked}");
                assert_eq!(r["CF_FR_ZJLX"], "001");
                assert_eq!(r["CF_XDR_ZJHM"], "");
            }
            _ => {
                assert_eq!(r["CF_XDR_SHXYM"], source["dsr"]["tyshxydm"]);
                assert_eq!(r["CF_XDR_ZJHM"], "");
            }
        }
        // A legal representative's ID leaves masked, never in full.
        if let Some(full) = source["dsr"]["fddbrzjhm"].as_str() {
            let masked = r["CF_FR_ZJHM"].as_str().unwrap();
            assert_eq!(&masked[6..14], "********", "{masked}");
            assert!(!r.to_string().contains(full), "{r}");
        }
        assert!(
            !r["CF_WSH"].as_str().unwrap().contains('【')
                && !r["CF_WSH"].as_str().unwrap().contains('[')
        );
    }
    assert!(
        received["withdrawn"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .ends_with(":v2")
    );
    // 轻微 decisions: receipts say not sent; unclassed fines: held;
    // nothing of either at the platform.
    let outcome = |o: &str| -> BTreeSet<String> {
        topic_json(&brokers, &receipts)
            .into_iter()
            .filter(|(_, r)| r["outcome"] == o)
            .map(|(_, r)| {
                r["record_id"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("pen:")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(outcome("not_sent"), light);
    assert_eq!(outcome("held"), held);

    // Non-repudiation: every delivered receipt carries the platform's
    // signed answer and the hub's signature; with the canonical records,
    // the body sent is the one the delivery makes of each.
    let schemas = schemas();
    let records: String = read(&brokers, &topic, true)
        .iter()
        .map(|r| {
            let v =
                duijie::schema::decode_payload(&schemas, &r.headers, r.payload.as_deref().unwrap())
                    .unwrap();
            format!("{v}\n")
        })
        .collect();
    std::fs::write(d.path("records.jsonl"), records).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["receipts", "verify", "--delivery", "credit", "--config"];
        let file = d.file.display().to_string();
        args.push(&file);
        args.extend_from_slice(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_duijie"))
            .args(&args)
            .env("DUIJIE_KAFKA_BROKERS", &brokers)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let input = d.path("records.jsonl").display().to_string();
    let (code, stdout) = verify(&["--input", &input]);
    assert_eq!(code, Some(0), "{stdout}");
    let proven = stdout
        .lines()
        .filter(|l| l.contains("hub signature: ok; receiver's signature: ok; body: ok"))
        .count();
    assert!(proven >= publishable.len(), "{stdout}");
    // A receipt changed afterwards (a rejection made to look delivered)
    // is found at its offset.
    let delivered = read(&brokers, &receipts, true)
        .into_iter()
        .find(|r| {
            serde_json::from_slice::<Value>(r.payload.as_deref().unwrap()).unwrap()["proof"]
                .is_object()
        })
        .unwrap();
    let mut forged: Value = serde_json::from_slice(delivered.payload.as_deref().unwrap()).unwrap();
    forged["record_id"] = json!("pen:FORGED");
    let producer = bus(&brokers).producer().unwrap();
    let at = block_on(
        producer.send(
            rdkafka::producer::FutureRecord::to(&receipts)
                .key("forged")
                .payload(&forged.to_string()),
            Duration::from_secs(10),
        ),
    )
    .unwrap();
    let (code, stdout) = verify(&["--record", "pen:FORGED"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "[{}:{}] hub signature: FAILS",
            at.partition, at.offset
        )),
        "{stdout}"
    );
}

/// 待定级: a fine the case system did not class is held (not at the
/// platform, its clock running); an officer sets its class on the desk with
/// a reason, audited; the same version goes to the platform, public until
/// the class maximum, and leaves the desk's list.
#[test]
fn a_held_decision_is_classed_by_an_officer_and_then_published() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        enforcement: duijie_sandbox::enforcement::Settings {
            decisions: 40,
            ..Default::default()
        },
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let tag = unique("held");
    let topic = format!("canonical.penalty.{tag}");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = TestDeployment::with_hub(
        &brokers,
        &format!(
            "pseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\ncalendar = \"{}\"\nalerts_topic = \"alerts.{tag}\"\nreceipts_topic = \"receipts.{tag}\"",
            root().join("calendar").display()
        ),
        &format!(
            r#"{pipeline}
[http]
listen = "{addr}"

[deliveries.credit]
topic = "{topic}"
transform = {{ kind = "credit_penalty" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/credit/api/penalties" }}

[credit]
decisions_topic = "{topic}"
delivery = "credit"

[desk]
events_topic = "referrals.{tag}"
state_topic = "state.{tag}"
alerts_topic = "desk-alerts.{tag}"
audit_topic = "audit.{tag}"
[desk.users."{OFFICER}"]
name = "张伟"
role = "officer"
"#,
            pipeline = penalty_pipeline(&sandbox, &topic)
        ),
    );
    let hub = d.spawn();
    wait_listening(&addr);
    let held = || {
        let (status, list) = desk_call(&addr, "/desk/api/credit", None);
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().clone()
    };
    wait_until(
        Duration::from_secs(60),
        "a held decision on the desk",
        || !held().is_empty(),
    );
    let first = held()[0].clone();
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(
        first["reason"].as_str().unwrap().contains("待定级"),
        "{first}"
    );
    assert!(
        first["due_at"].is_i64(),
        "the publication deadline: {first}"
    );
    let published = || {
        get_json(&format!("http://{sandbox}/credit/api/received"))["published"]
            .as_object()
            .unwrap()
            .clone()
    };
    assert!(
        !published().keys().any(|k| k.starts_with(&format!("{id}:"))),
        "a held decision is not at the platform"
    );
    let path = format!(
        "/desk/api/credit/{}/class",
        percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
    );
    // A class without its reason, or one that is not a class: refused.
    let (status, _) = desk_call(
        &addr,
        &path,
        Some(json!({"severity": "GENERAL", "reason": " "})),
    );
    assert_eq!(status, 400);
    let (status, _) = desk_call(
        &addr,
        &path,
        Some(json!({"severity": "HEAVY", "reason": "x"})),
    );
    assert_eq!(status, 400);
    let reason = "罚款数额属本行业认定标准的较大数额（测试）";
    // 503 is the desk saying it has not read the decisions and receipts
    // to their end yet: it asks to try again.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (status, answer) = loop {
        let answer = desk_call(
            &addr,
            &path,
            Some(json!({"severity": "GENERAL", "reason": reason})),
        );
        if answer.0 != 503 || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 202, "{answer}");
    wait_until(
        Duration::from_secs(60),
        "the classed decision at the platform",
        || published().keys().any(|k| k.starts_with(&format!("{id}:"))),
    );
    let record = published()
        .into_iter()
        .find(|(k, _)| k.starts_with(&format!("{id}:")))
        .unwrap()
        .1;
    let decided =
        chrono::NaiveDate::parse_from_str(record["CF_JDRQ"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    assert_eq!(
        record["CF_GSJZQ"],
        decided
            .checked_add_months(chrono::Months::new(12))
            .unwrap()
            .to_string(),
        "一般: one year from the decision"
    );
    wait_until(
        Duration::from_secs(30),
        "the desk's list without it",
        || !held().iter().any(|h| h["id"] == id.as_str()),
    );
    terminate(hub);
    // The act is audited with its reason; the decision on the topic says
    // who classed it and why.
    let audit = topic_json(&brokers, &format!("audit.{tag}"));
    assert!(
        audit
            .iter()
            .any(|(_, a)| a.to_string().contains(reason) && a["entry"]["user"] == "张伟"),
        "{audit:?}"
    );
    let classed = decoded(&brokers, &topic)
        .into_iter()
        .rev()
        .find(|(k, _)| k == &id)
        .unwrap()
        .1;
    assert_eq!(classed["credit_severity"], "GENERAL");
    assert_eq!(classed["credit_severity_by"], "张伟");
    assert_eq!(classed["credit_severity_reason"], reason);
}

/// 信用修复 reaches the hub: the credit platform's repair result is polled
/// as a source, and a later version of the repaired decision (a change at
/// the case system) is never pushed again: its receipt says why.
#[test]
fn a_repaired_decision_is_never_pushed_again() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        enforcement: duijie_sandbox::enforcement::Settings {
            decisions: 20,
            ..Default::default()
        },
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let tag = unique("repair");
    let topic = format!("canonical.penalty.{tag}");
    let repairs = format!("canonical.repair.{tag}");
    let receipts = format!("receipts.{tag}");
    let d = TestDeployment::with_hub(
        &brokers,
        &format!(
            "pseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\nreceipts_topic = \"{receipts}\"\nalerts_topic = \"alerts.{tag}\""
        ),
        &format!(
            r#"{pipeline}
[pipelines.repairs]
system = "credit"
mapping = "credit_repair"
topic = "{repairs}"
schedule = "* * * * * *"

[pipelines.repairs.source]
kind = "http_poll"
url = "http://{sandbox}/credit/api/repairs"
auth = {{ scheme = "signed_query", app_key = "duijie-yichang-gxq", secret = "xyzg-open-2026-Yc7q", digest = "sm3" }}
records_pointer = "/data/records"
paging = "keyset"
page_size = 100
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "xfbh"
after_id_param = "afterId"

[deliveries.credit]
topic = "{topic}"
transform = {{ kind = "credit_penalty", repairs_topic = "{repairs}" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/credit/api/penalties" }}
"#,
            pipeline = penalty_pipeline(&sandbox, &topic)
        ),
    );
    let hub = d.spawn();
    let published = || {
        get_json(&format!("http://{sandbox}/credit/api/received"))["published"]
            .as_object()
            .unwrap()
            .clone()
    };
    wait_until(Duration::from_secs(60), "a publication", || {
        !published().is_empty()
    });
    let (key, record) = published().into_iter().next().unwrap();
    let wsh = record["CF_WSH"].as_str().unwrap().to_owned();
    let id = key
        .trim_start_matches("pen:")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    // The party's repair is approved on the credit platform.
    let (status, result) = post(
        &format!("http://{sandbox}/credit/api/repairs"),
        &[("content-type", "application/json".into())],
        json!({"CF_WSH": wsh}).to_string().as_bytes(),
    );
    assert_eq!(status, 201, "{result}");
    wait_until(
        Duration::from_secs(60),
        "the repair result on the bus",
        || {
            decoded(&brokers, &repairs)
                .iter()
                .any(|(_, r)| r["decision_no"] == wsh.as_str() && r["kind"] == "PUBLICATION_ENDED")
        },
    );
    // The case system changes the decision afterwards: version 2.
    post(
        &format!("http://{sandbox}/enforcement/api/decisions/{id}/change"),
        &[],
        b"",
    );
    let v2 = || {
        topic_json(&brokers, &receipts)
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| {
                r["record_id"] == format!("pen:{id}").as_str()
                    && r["idempotency_key"].as_str().unwrap().ends_with(":v2")
            })
    };
    wait_until(Duration::from_secs(60), "the receipt of version 2", || {
        v2().is_some()
    });
    terminate(hub);
    let receipt = v2().unwrap();
    assert_eq!(receipt["outcome"], "not_sent", "{receipt}");
    assert!(
        receipt["reason"].as_str().unwrap().contains("信用修复"),
        "{receipt}"
    );
    assert!(
        !published().values().any(|r| r["CF_WSH"] == wsh.as_str()),
        "the repaired decision is not at the platform again"
    );
}

const OFFICER: &str = "officer-token-0000000001";

/// A desk API call with the officer's token.
fn desk_call(addr: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://{addr}{path}");
        let req = match &body {
            Some(b) => client.post(url).json(b),
            None => client.get(url),
        };
        let resp = req
            .header("Authorization", format!("Bearer {OFFICER}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

fn local_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// 国办发〔2020〕49号 through the real broker: the hub proposes, an officer
/// serves notice, an objection is received and rejected, the window has
/// passed, the decision is made, the listing is pushed to both platforms,
/// then a credit repair removes it and the removal is pushed. Nothing is
/// pushed before the decision.
#[test]
fn a_blacklist_listing_is_pushed_only_once_decided_after_notice_and_objection_and_repair_removes_it()
 {
    let brokers = brokers();
    // The natural person's licence was revoked 30 days ago: a criterion is
    // met, and a notice served 20 days ago has seen its window pass.
    let sandbox = start_sandbox(SandboxConfig {
        enforcement: duijie_sandbox::enforcement::Settings {
            decisions: 6,
            revocation_age: Duration::from_secs(30 * 86_400),
            ..Default::default()
        },
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let tag = unique("blk");
    let topic = format!("canonical.penalty.{tag}");
    let (list, events) = (format!("list.{tag}"), format!("list-events.{tag}"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = TestDeployment::with_hub(
        &brokers,
        &format!(
            "pseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\ncalendar = \"{}\"\nalerts_topic = \"alerts.{tag}\"\nreceipts_topic = \"receipts.{tag}\"",
            root().join("calendar").display()
        ),
        &format!(
            r#"{pipeline}
[http]
listen = "{addr}"

[deliveries.credit]
topic = "{topic}"
transform = {{ kind = "credit_penalty" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/credit/api/penalties" }}

[credit]
decisions_topic = "{topic}"
delivery = "credit"

[credit.blacklist]
topic = "{list}"
events_topic = "{events}"
objection_window = {{ limit = "5 working days", basis = "异议期依据（测试）" }}
listing_term = {{ limit = "3 years", basis = "列入期限依据（测试）" }}
repair_after = {{ limit = "0 days", basis = "信用修复依据（测试）" }}
criteria = [
  {{ name = "licence_revoked", label = "受到吊销许可证件的行政处罚", instrument = "《测试规章》", article = "第一条", fields = ["MARKET", "FOOD_SAFETY", "SAFETY_PRODUCTION", "SPECIAL_EQUIPMENT", "URBAN", "ENVIRONMENT", "FIRE_SAFETY", "OTHER"], basis = "认定依据（测试）", categories_any = ["吊销许可证件"] }},
]

[deliveries.blacklist_credit]
topic = "{list}"
transform = {{ kind = "blacklist" }}
target = {{ kind = "webhook", url = "http://{sandbox}/credit/api/blacklist", secret = "blacklist-secret-0123" }}

[deliveries.blacklist_approval]
topic = "{list}"
transform = {{ kind = "blacklist" }}
target = {{ kind = "webhook", url = "http://{sandbox}/approval/api/blacklist", secret = "blacklist-secret-0123" }}

[desk]
events_topic = "referrals.{tag}"
state_topic = "state.{tag}"
alerts_topic = "desk-alerts.{tag}"
audit_topic = "audit.{tag}"
[desk.users."{OFFICER}"]
name = "张伟"
role = "officer"
"#,
            pipeline = penalty_pipeline(&sandbox, &topic)
        ),
    );
    let hub = d.spawn();
    wait_listening(&addr);
    let person = scan_decisions(&sandbox)
        .into_iter()
        .find(|d| d["dsr"]["lb"] == "3" && d["cflb"].to_string().contains("吊销许可证件"))
        .expect("the sandbox's revoked licence");
    let name = person["dsr"]["mc"].as_str().unwrap().to_owned();
    let id_number = person["dsr"]["zjhm"].as_str().unwrap().to_owned();
    let case_of = || {
        let (status, cases) = desk_call(&addr, "/desk/api/blacklist", None);
        assert_eq!(status, 200, "{cases}");
        cases
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["proposal"]["name"] == name.as_str())
            .cloned()
    };
    wait_until(Duration::from_secs(60), "the proposal (拟列入)", || {
        case_of().is_some()
    });
    let case = case_of().unwrap();
    assert_eq!(case["state"], "PROPOSED");
    assert!(
        case["entity"].as_str().unwrap().starts_with("pid:"),
        "{case}"
    );
    let case_id = case["case_id"].as_str().unwrap().to_owned();
    let act = |action: &str, date: Option<chrono::DateTime<chrono::Utc>>| {
        // 503 is the desk saying it has not read the whole procedure topic
        // yet (the case can show before that): it refuses acts until then,
        // and asks to try again.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = desk_call(
                &addr,
                &format!(
                    "/desk/api/blacklist/{}/actions",
                    percent_encoding::utf8_percent_encode(
                        &case_id,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ),
                Some(
                    json!({"action": action, "date": date.map(local_text), "text": format!("{action}（测试）")}),
                ),
            );
            if answer.0 != 503 || std::time::Instant::now() > deadline {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let now = chrono::Utc::now();
    let day = chrono::Duration::days(1);
    // No decision before the party is told.
    let (status, why) = act("LISTING_DECIDED", Some(now));
    assert_eq!(status, 409, "{why}");
    assert!(
        why["message"].as_str().unwrap().contains("尚未告知"),
        "{why}"
    );
    assert_eq!(act("NOTICE_SERVED", Some(now - day * 20)).0, 202);
    assert_eq!(act("OBJECTION_FILED", Some(now - day * 19)).0, 202);
    // Not while the objection is being checked.
    let (status, why) = act("LISTING_DECIDED", Some(now));
    assert_eq!(status, 409, "{why}");
    assert!(why["message"].as_str().unwrap().contains("异议"), "{why}");
    assert_eq!(act("OBJECTION_REJECTED", None).0, 202);
    assert_eq!(case_of().unwrap()["state"], "AWAITING_DECISION");
    // The listing decision's own date, from which its term runs.
    let decided_on = chrono::Utc::now() - day * 2;
    let decided_at = decided_on.timestamp_millis() / 60_000 * 60_000;
    assert_eq!(act("LISTING_DECIDED", Some(decided_on)).0, 202);

    let approval = || {
        get_json(&format!("http://{sandbox}/approval/api/blacklist"))["records"]
            .as_array()
            .unwrap()
            .clone()
    };
    wait_until(
        Duration::from_secs(60),
        "the listing at the approval system",
        || !approval().is_empty(),
    );
    // The desk's page shows the listing with its basis, escaped.
    let page = block_on(get_text(
        format!(
            "http://{addr}/desk/blacklist/{}",
            percent_encoding::utf8_percent_encode(&case_id, percent_encoding::NON_ALPHANUMERIC)
        ),
        &format!("Bearer {OFFICER}"),
    ));
    for expected in [
        "已列入",
        "认定依据（测试）",
        "列入期限依据（测试）",
        "告知书送达",
        "异议不成立",
    ] {
        assert!(
            page.contains(expected),
            "{expected} not on the page:\n{page}"
        );
    }
    assert_eq!(act("REPAIR_APPROVED", None).0, 202);
    wait_until(
        Duration::from_secs(60),
        "the removal at both platforms",
        || {
            approval().len() >= 2
            && get_json(&format!("http://{sandbox}/credit/api/received"))["blacklist"]["records"]
                .as_array()
                .is_some_and(|r| r.len() >= 2)
        },
    );
    terminate(hub);

    // Exactly the listing, then the removal; the listing after the decision.
    for received in [
        approval(),
        get_json(&format!("http://{sandbox}/credit/api/received"))["blacklist"]["records"]
            .as_array()
            .unwrap()
            .clone(),
    ] {
        let ours: Vec<&Value> = received
            .iter()
            .map(|r| &r["record"])
            .filter(|r| r["case_id"] == case_id.as_str())
            .collect();
        assert_eq!(
            received.len(),
            ours.len(),
            "only the decided case is pushed: {received:?}"
        );
        assert_eq!(ours.len(), 2, "{ours:?}");
        assert_eq!(ours[0]["action"], "ADD");
        assert!(
            ours[0]["decided_at"].as_i64().unwrap() >= decided_at,
            "{}",
            ours[0]
        );
        assert!(
            ours[0]["updated_at"].as_i64().unwrap() >= decided_at,
            "{}",
            ours[0]
        );
        assert_eq!(ours[0]["criteria"][0]["basis"], "《测试规章》第一条");
        assert_eq!(ours[1]["action"], "REMOVE");
        assert!(
            ours[1]["removal_reason"]
                .as_str()
                .unwrap()
                .contains("信用修复"),
            "{}",
            ours[1]
        );
        let text = serde_json::to_string(&ours).unwrap();
        assert!(
            !text.contains(&id_number),
            "the ID number left the hub: {text}"
        );
    }
    // The list topic holds nothing from before the decision.
    let entries = topic_json(&brokers, &list);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|(_, e)| e["updated_at"].as_i64().unwrap() >= decided_at)
    );
    // Every step is on the procedure topic, in order.
    let steps: Vec<String> = topic_json(&brokers, &events)
        .into_iter()
        .filter(|(_, e)| e["case_id"] == case_id.as_str())
        .map(|(_, e)| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        steps,
        [
            "PROPOSED",
            "NOTICE_SERVED",
            "OBJECTION_FILED",
            "OBJECTION_REJECTED",
            "LISTING_DECIDED",
            "REPAIR_APPROVED"
        ]
    );
}

fn scan_decisions(sandbox: &str) -> Vec<Value> {
    get_json(&format!(
        "http://{sandbox}/enforcement/api/decisions?pageSize=1000"
    ))["data"]["records"]
        .as_array()
        .unwrap()
        .clone()
}

fn feed_deployment(
    brokers: &str,
    sandbox: &str,
    source_topic: &str,
    dlq: &str,
    extra: &str,
) -> TestDeployment {
    TestDeployment::new(
        brokers,
        &street_feed_config(
            sandbox,
            source_topic,
            dlq,
            &format!("http://{sandbox}/dept/street/webhook"),
            extra,
        ),
    )
}

/// Patience through a maintenance window: a receiver down far longer than
/// `retry.max_attempts` take is waited for (within `patience`), holding
/// the records in order; nothing is dead-lettered, everything arrives once
/// it is back, and the department's feed raised one `DELIVERY_WAITING`.
#[test]
fn a_receiver_down_for_its_maintenance_loses_nothing_and_dead_letters_nothing() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 40,
            ..Default::default()
        },
        change_limit: Some(0),
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.grid");
    let dlq = unique("dlq.street");
    let alerts = unique("alerts");
    let d = TestDeployment::with_hub(
        &brokers,
        &format!("alerts_topic = \"{alerts}\""),
        &street_feed_config(
            &sandbox,
            &topic,
            &dlq,
            &format!("http://{sandbox}/dept/street/webhook"),
            "patience = \"10m\"\nalert_after = \"2s\"",
        )
        // Three attempts, then (before) a dead letter.
        .replace("max_attempts = 100", "max_attempts = 3"),
    );
    post(
        &format!("http://{sandbox}/sandbox/receivers"),
        &[("Content-Type", "application/json".into())],
        json!({"down": true}).to_string().as_bytes(),
    );
    let hub = d.spawn();
    let view = || get_json(&format!("http://{sandbox}/dept/street/received"));
    // Far more attempts turned away than max_attempts allow, and a waiting
    // alert: the old limit would have dead-lettered by now.
    wait_until(
        Duration::from_secs(90),
        "the hub's attempts turned away and its waiting alert",
        || {
            view()["turned_away"].as_u64().unwrap_or(0) >= 12
                && topic_json(&brokers, &alerts)
                    .iter()
                    .any(|(_, a)| a["kind"] == "DELIVERY_WAITING")
        },
    );
    assert!(
        read(&brokers, &dlq, true).is_empty(),
        "nothing dead-lettered while waiting"
    );
    post(
        &format!("http://{sandbox}/sandbox/receivers"),
        &[("Content-Type", "application/json".into())],
        json!({"down": false}).to_string().as_bytes(),
    );
    let expected: BTreeSet<String> = decoded(&brokers, &topic)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(!expected.is_empty());
    wait_until(
        Duration::from_secs(90),
        "every record once it is back",
        || {
            let ids: BTreeSet<String> = view()["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["record"]["id"].as_str().unwrap().to_owned())
                .collect();
            ids == expected
        },
    );
    terminate(hub);
    assert!(
        read(&brokers, &dlq, true).is_empty(),
        "nothing dead-lettered"
    );
    assert_eq!(
        topic_json(&brokers, &alerts)
            .iter()
            .filter(|(_, a)| a["kind"] == "DELIVERY_WAITING")
            .count(),
        1,
        "one waiting alert for the outage"
    );
}

/// A department reads its own feed at `/feeds/{department}/status` with its
/// token: `waiting` (and since when) while its receiver is down, then its
/// dead letters — each refusal's idempotency key, reason and origin, never
/// the payload; a wrong token and an unknown department get the same 401.
#[test]
fn a_department_reads_its_own_feeds_state_and_dead_letters_with_its_token() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 60,
            ..Default::default()
        },
        change_limit: Some(0),
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let (topic, dlq) = (unique("canonical.grid"), unique("dlq.street"));
    let addr = format!("127.0.0.1:{}", free_port());
    let token = "street-status-token-0123456789";
    let d = TestDeployment::new(
        &brokers,
        &format!(
            "[http]\nlisten = \"{addr}\"\n\n{}",
            street_feed_config(
                &sandbox,
                &topic,
                &dlq,
                &format!("http://{sandbox}/dept/street/webhook"),
                &format!("status_token = \"{token}\""),
            )
        ),
    );
    let receivers = |body: Value| {
        post(
            &format!("http://{sandbox}/sandbox/receivers"),
            &[("Content-Type", "application/json".into())],
            body.to_string().as_bytes(),
        )
    };
    receivers(json!({"down": true}));
    let hub = d.spawn();
    wait_listening(&addr);
    let status = |auth: &str, department: &str| -> (u16, Value) {
        block_on(async {
            let r = reqwest::Client::new()
                .get(format!("http://{addr}/feeds/{department}/status"))
                .header("Authorization", auth)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json().await.unwrap_or_default())
        })
    };
    let mut seen = Value::Null;
    wait_until(
        Duration::from_secs(60),
        "the feed waiting for its receiver",
        || {
            let (code, body) = status(&format!("Bearer {token}"), "street");
            seen = body;
            code == 200 && seen["feeds"][0]["state"] == "waiting"
        },
    );
    assert!(seen["feeds"][0]["waiting_since"].is_string(), "{seen}");
    assert_eq!(seen["feeds"][0]["delivery"], "street");
    assert_eq!(seen["feeds"][0]["kind"], "webhook");
    // Every event on the topic first (the delivery waits from its first
    // record on, while the poll may still be bringing the rest): the
    // disputes counted are all there will be.
    wait_until(
        Duration::from_secs(60),
        "the 60 events on the topic",
        || latest(&brokers, &topic).len() == 60,
    );
    // Back, refusing one category for good: its records are dead letters.
    receivers(
        json!({"down": false, "reject": {"field": "/category", "equals": "DISPUTE", "reason": "矛盾纠纷请转司法所"}}),
    );
    let refused = decoded(&brokers, &topic)
        .iter()
        .filter(|(_, v)| v["category"] == "DISPUTE")
        .count();
    assert!(refused > 0, "the sandbox has disputes");
    wait_until(
        Duration::from_secs(90),
        "the refusals in the department's status",
        || {
            let (code, body) = status(&format!("bearer {token}"), "street");
            seen = body;
            code == 200
                && seen["feeds"][0]["state"] == "running"
                && seen["feeds"][0]["dead_letters"]["total"].as_i64() == Some(refused as i64)
        },
    );
    let latest = seen["feeds"][0]["dead_letters"]["latest"]
        .as_array()
        .unwrap();
    assert_eq!(latest.len(), refused.min(20));
    for letter in latest {
        assert!(
            letter["idempotency_key"]
                .as_str()
                .unwrap()
                .starts_with("grid:"),
            "{letter}"
        );
        assert!(
            letter["reason"]
                .as_str()
                .unwrap()
                .contains("矛盾纠纷请转司法所"),
            "{letter}"
        );
        assert!(
            letter["origin"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{topic}[")),
            "{letter}"
        );
        assert!(
            letter.get("payload").is_none() && letter.get("raw").is_none(),
            "{letter}"
        );
    }
    assert!(
        seen["feeds"][0]["refused"].as_u64().unwrap() >= refused as u64,
        "{seen}"
    );
    // Strangers: a wrong token, another department, no token.
    assert_eq!(
        status("Bearer street-status-token-wrong00000", "street").0,
        401
    );
    assert_eq!(status(&format!("Bearer {token}"), "emergency").0, 401);
    assert_eq!(status("", "street").0, 401);
    terminate(hub);
}

#[test]
fn a_department_feed_survives_an_outage_and_a_crash_with_each_key_once_and_only_its_fields() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 250,
            ..Default::default()
        },
        change_limit: Some(0),
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.grid");
    let dlq = unique("dlq.street");
    let d = feed_deployment(&brokers, &sandbox, &topic, &dlq, "rate_per_sec = 40");
    // The street office refuses disputes (its own validation); it is down
    // when the hub starts.
    post(
        &format!("http://{sandbox}/sandbox/receivers"),
        &[("Content-Type", "application/json".into())],
        json!({"down": true, "reject": {"field": "/category", "equals": "DISPUTE", "reason": "矛盾纠纷请转司法所"}}).to_string().as_bytes(),
    );
    let hub = d.spawn();
    wait_until(
        Duration::from_secs(60),
        "the grid events on the bus",
        || read(&brokers, &topic, true).len() >= 250,
    );
    let view = || get_json(&format!("http://{sandbox}/dept/street/received"));
    // The hub tried, was turned away, and tried again: nothing got through.
    wait_until(
        Duration::from_secs(60),
        "the hub's attempts turned away while the office is down",
        || view()["turned_away"].as_u64().unwrap_or(0) >= 3,
    );
    assert_eq!(
        view()["records"].as_array().unwrap().len(),
        0,
        "nothing while down"
    );
    post(
        &format!("http://{sandbox}/sandbox/receivers"),
        &[("Content-Type", "application/json".into())],
        json!({"down": false}).to_string().as_bytes(),
    );
    // Crash mid-delivery (40 a second: 250 take six seconds), once the
    // first have arrived, then restart.
    wait_until(Duration::from_secs(30), "the first deliveries", || {
        !view()["records"].as_array().unwrap().is_empty()
    });
    kill(hub);
    let delivered_before_crash = view()["records"].as_array().unwrap().len();
    let hub = d.spawn();
    let events = decoded(&brokers, &topic);
    let disputes: BTreeSet<String> = events
        .iter()
        .filter(|(_, v)| v["category"] == "DISPUTE")
        .map(|(k, _)| k.clone())
        .collect();
    let others: BTreeSet<String> = events
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !disputes.contains(k))
        .collect();
    wait_until(
        Duration::from_secs(90),
        "every non-dispute event at the street office",
        || {
            let ids: BTreeSet<String> = view()["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["record"]["id"].as_str().unwrap().to_owned())
                .collect();
            ids == others
        },
    );
    let dead_ids = || -> BTreeSet<String> {
        read(&brokers, &dlq, true)
            .iter()
            .filter_map(|r| serde_json::from_slice::<DeadLetter>(r.payload.as_deref()?).ok())
            .filter_map(|l| {
                Some(
                    serde_json::from_str::<Value>(&l.raw).ok()?["id"]
                        .as_str()?
                        .to_owned(),
                )
            })
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "every dispute dead-lettered",
        || dead_ids() == disputes,
    );
    // Each dead letter keeps the key the receiver would have had.
    for r in read(&brokers, &dlq, true) {
        let letter: DeadLetter = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
        let key = letter.idempotency_key.expect("the idempotency key");
        assert!(key.starts_with("grid:"), "{key}");
    }
    terminate(hub);

    let got = view();
    let records = got["records"].as_array().unwrap();
    let keys: BTreeSet<&str> = records.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys.len(),
        records.len(),
        "each idempotency key once at the receiver"
    );
    eprintln!(
        "feed: {} records, {} deliveries, {} duplicates absorbed, {} before the crash",
        records.len(),
        got["deliveries"],
        got["duplicates"],
        delivered_before_crash
    );
    assert!(
        delivered_before_crash > 0 && delivered_before_crash < others.len(),
        "the crash came mid-delivery"
    );
    // Only the whitelisted fields (and the id) travelled.
    for r in records {
        let fields: BTreeSet<&str> = r["record"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            fields.is_subset(
                &[
                    "id",
                    "event_no",
                    "category",
                    "street",
                    "status",
                    "party",
                    "_delivery"
                ]
                .into()
            ),
            "{fields:?}"
        );
        assert!(r["record"].get("reporter_phone").is_none());
        // The body names its key and version; the signature covered the key.
        assert_eq!(r["record"]["_delivery"]["idempotency_key"], r["key"], "{r}");
        if let Some(p) = r["record"].get("party").filter(|p| !p.is_null()) {
            assert_eq!(p.as_object().unwrap().keys().collect::<Vec<_>>(), ["name"]);
        }
    }
    // The refused ones are in the DLQ with the receiver's reason.
    let dead: Vec<DeadLetter> = read(&brokers, &dlq, true)
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap())
        .collect();
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(&l.raw).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(dead_ids, disputes);
    assert!(dead.iter().all(|l| l.reason.contains("矛盾纠纷请转司法所")));
}

#[test]
fn licence_notices_go_to_the_team_of_their_jurisdiction_and_unmet_commitments_become_leads() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        approval: duijie_sandbox::approval::Settings {
            licences: 60,
            ..Default::default()
        },
        bad_rate: 0.0,
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.licence");
    let dlq = unique("dlq.notices");
    let leads = unique("leads");
    let alerts = unique("alerts");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.licences]
system = "approval"
mapping = "licence"
topic = "{topic}"
schedule = "* * * * * *"

[pipelines.licences.source]
kind = "http_poll"
url = "http://{sandbox}/approval/api/licences"
records_pointer = "/result/records"
paging = "keyset"
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "licenceId"
after_id_param = "afterId"

[deliveries.notices]
topic = "{topic}"
dlq_topic = "{dlq}"
transform = {{ kind = "licence_notice", routes = {{ "420502001" = "东山中队", "420502002" = "白洋中队", "420502003" = "东苑中队" }} }}
target = {{ kind = "webhook", url = "http://{sandbox}/enforcement/api/queues/{{team}}/licences", secret = "queue-secret-0123456" }}

[commitments]
licence_topic = "{topic}"
warn_before = "7 days"
leads_topic = "{leads}"
"#
        ),
    );
    let text = std::fs::read_to_string(&d.file).unwrap().replacen(
        "\n\n[kafka]",
        &format!(
            "\nalerts_topic = \"{alerts}\"\ncalendar = \"{}\"\n\n[kafka]",
            root().join("calendar").display()
        ),
        1,
    );
    std::fs::write(&d.file, text).unwrap();
    let licences = get_json(&format!(
        "http://{sandbox}/approval/api/licences?pageSize=1000"
    ))["result"]["records"]
        .as_array()
        .unwrap()
        .clone();
    let team_of = |area: &str| match area {
        "420502001" => Some("东山中队"),
        "420502002" => Some("白洋中队"),
        "420502003" => Some("东苑中队"),
        _ => None,
    };
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unrouted = 0;
    for l in &licences {
        match team_of(l["areaCode"].as_str().unwrap()) {
            Some(t) => *expected.entry(t).or_default() += 1,
            None => unrouted += 1,
        }
    }
    let overdue: BTreeSet<String> = licences
        .iter()
        .filter(|l| {
            l.get("commitment").is_some_and(|c| {
                chrono::NaiveDate::parse_from_str(c["dueDate"].as_str().unwrap(), "%Y-%m-%d")
                    .unwrap()
                    < chrono::Utc::now()
                        .with_timezone(&chrono_tz::Asia::Shanghai)
                        .date_naive()
            })
        })
        .map(|l| l["licenceId"].as_str().unwrap().to_owned())
        .collect();
    assert!(unrouted > 0 && !overdue.is_empty());
    let hub = d.spawn();
    let queue = |team: &str| {
        get_json(&format!(
            "http://{sandbox}/enforcement/api/queues/{}/licences",
            urlencode(team)
        ))["records"]
            .as_array()
            .unwrap()
            .len()
    };
    wait_until(
        Duration::from_secs(60),
        "every routed notice in its team's queue",
        || {
            expected.iter().all(|(team, n)| queue(team) == *n)
                && read(&brokers, &dlq, true).len() == unrouted
        },
    );
    wait_until(
        Duration::from_secs(30),
        "a lead per overdue commitment",
        || topic_json(&brokers, &leads).len() == overdue.len(),
    );
    terminate(hub);
    for (_, lead) in topic_json(&brokers, &leads) {
        assert_eq!(lead["kind"], "COMMITMENT_UNMET");
        assert!(lead["message"].as_str().unwrap().contains("到期未履行"));
    }
    let alerts = topic_json(&brokers, &alerts);
    assert!(alerts.iter().any(|(_, a)| a["kind"] == "COMMITMENT_UNMET"));
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn a_pull_feed_pages_by_cursor_and_requires_its_token() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 120,
            ..Default::default()
        },
        change_limit: Some(0),
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.grid");
    let port = free_port();
    let token = "street-pull-token-0123456789";
    // Receipts of its own: `feeds status` counts a feed's receipts by its
    // name, and the tests share one broker.
    let d = TestDeployment::with_hub(
        &brokers,
        &format!("receipts_topic = \"{}\"", unique("receipts")),
        &format!(
            r#"[http]
listen = "127.0.0.1:{port}"

[pipelines.grid]
system = "grid"
mapping = "grid_event"
topic = "{topic}"
schedule = "* * * * * *"

[pipelines.grid.source]
kind = "http_poll"
url = "http://{sandbox}/grid/api/events"
records_pointer = "/data/list"
paging = "keyset"
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "eventId"
after_id_param = "afterId"
login = {{ url = "http://{sandbox}/grid/api/login", username = "duijie", password = "Wg#2026-yc" }}

[deliveries.street_pull]
topic = "{topic}"
department = "street"
select = {{ field = "category", in = ["DISPUTE", "LIVELIHOOD"] }}
transform = {{ kind = "fields", fields = ["event_no", "category", "status"] }}
target = {{ kind = "pull", token = "{token}" }}
"#
        ),
    );
    let hub = d.spawn();
    wait_until(Duration::from_secs(60), "the events on the bus", || {
        read(&brokers, &topic, true).len() >= 120
    });
    let expected: BTreeSet<String> = decoded(&brokers, &topic)
        .into_iter()
        .filter(|(_, v)| v["category"] == "DISPUTE" || v["category"] == "LIVELIHOOD")
        .map(|(k, _)| k)
        .collect();
    let url = format!("http://127.0.0.1:{port}/feeds/street");
    let get = |query: &str, token: Option<&str>| -> (u16, Value) {
        block_on(async {
            let mut req = reqwest::Client::new().get(format!("{url}{query}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
        })
    };
    assert_eq!(get("", None).0, 401);
    assert_eq!(get("", Some("wrong-token-wrong-token")).0, 401);
    // A department that has no feed gets the same answer as a wrong token,
    // even with a valid token: the API does not tell who has a feed.
    let probe = |path: &str, t: Option<&str>| {
        block_on(async {
            let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
            if let Some(t) = t {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let unknown = probe("/feeds/no-such-department", Some(token));
    let wrong = probe("/feeds/street", Some("wrong-token-wrong-token"));
    assert_eq!(unknown, wrong);
    assert_eq!(unknown.0, 401);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let (status, page) = get(&format!("?limit=7{cursor}"), Some(token));
        assert_eq!(status, 200, "{page}");
        eprintln!(
            "page: {} records, more {}, next {}",
            page["records"].as_array().unwrap().len(),
            page["more"],
            page["next"]
        );
        for r in page["records"].as_array().unwrap() {
            let fields: BTreeSet<&str> = r["record"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert!(
                fields.is_subset(&["id", "event_no", "category", "status", "_delivery"].into())
            );
            seen.push(r["record"]["id"].as_str().unwrap().to_owned());
        }
        cursor = format!("&after={}", page["next"].as_str().unwrap());
        if page["records"].as_array().unwrap().is_empty() && page["more"] == false {
            break;
        }
    }
    terminate(hub);
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "no record twice across pages");
    assert_eq!(distinct, expected);
    // What was pulled is receipted: `feeds status` counts it by key.
    let status = d.cli(&["deliveries", "status"]);
    let row: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("street_pull "))
        .unwrap_or_else(|| panic!("{status}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[3], expected.len().to_string(), "{status}");
    assert_eq!(row.last(), Some(&"pulled"), "{status}");
}

#[test]
fn feeds_status_counts_outcomes_and_replay_is_absorbed_by_idempotency_keys() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 60,
            ..Default::default()
        },
        change_limit: Some(0),
        bad_rate: 0.0,
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.grid");
    let dlq = unique("dlq.street");
    let receipts = unique("receipts");
    let d = feed_deployment(&brokers, &sandbox, &topic, &dlq, "");
    let text = std::fs::read_to_string(&d.file).unwrap().replacen(
        "\n\n[kafka]",
        &format!("\nreceipts_topic = \"{receipts}\"\n\n[kafka]"),
        1,
    );
    std::fs::write(&d.file, text).unwrap();
    let hub = d.spawn();
    let view = || get_json(&format!("http://{sandbox}/dept/street/received"));
    wait_until(
        Duration::from_secs(60),
        "all 60 events at the street office",
        || view()["records"].as_array().unwrap().len() == 60,
    );
    // Each delivered record's receipt is on the bus before the hub stops.
    wait_until(Duration::from_secs(60), "60 receipts", || {
        read(&brokers, &receipts, false).len() >= 60
    });
    terminate(hub);
    let cli = |args: &[&str]| d.cli(args);
    let status = cli(&["deliveries", "status"]);
    let line = status
        .lines()
        .find(|l| l.starts_with("street "))
        .unwrap_or_else(|| panic!("{status}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cols[..8],
        &["street", "street", "webhook", "60", "0", "0", "0", "0"],
        "{status}"
    );
    let before = view()["duplicates"].as_u64().unwrap();
    let replay = cli(&["replay", "--feed", "street", "--from", "offset:0"]);
    assert!(
        replay.contains("read 60 record(s); delivered 60"),
        "{replay}"
    );
    let after = view();
    assert_eq!(
        after["records"].as_array().unwrap().len(),
        60,
        "nothing new at the receiver"
    );
    assert_eq!(
        after["duplicates"].as_u64().unwrap(),
        before + 60,
        "every redelivery absorbed by its key"
    );
}

/// `duijie replay --from TIME` on Apache Kafka replays exactly the records
/// written from that time on; `--from P:O` (a dead letter's origin) one
/// partition from one offset; the summary accounts for every record read.
#[test]
fn a_replay_by_time_or_by_partition_and_offset_replays_exactly_those_records() {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    use rdkafka::producer::FutureRecord;
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.grid");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[deliveries.street]
topic = "{topic}"
department = "street"
select = {{ field = "category", in = ["DISPUTE"] }}
transform = {{ kind = "fields", fields = ["event_no", "category"] }}
target = {{ kind = "webhook", url = "http://{sandbox}/dept/street/webhook", secret = "{secret}" }}
"#,
            secret = duijie_sandbox::dept::DEPT_SECRET
        ),
    );
    let b = bus(&brokers);
    let now = chrono::Utc::now().timestamp_millis();
    block_on(async {
        let admin = b.admin().unwrap();
        for r in admin
            .create_topics(
                [&NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap()
        {
            r.unwrap();
        }
        let producer = b.producer().unwrap();
        // Ten written two hours ago, ten now; one in five not selected.
        for i in 0..20 {
            let at = if i < 10 { now - 7_200_000 } else { now };
            let category = if i % 5 == 4 { "LIVELIHOOD" } else { "DISPUTE" };
            let body = json!({"id": format!("grid:E{i}"), "event_no": format!("E{i}"), "category": category, "updated_at": at}).to_string();
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&format!("grid:E{i}"))
                        .partition(i % 2)
                        .timestamp(at)
                        .payload(&body),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    let view = || get_json(&format!("http://{sandbox}/dept/street/received"));
    let ids = || -> BTreeSet<String> {
        view()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["record"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let an_hour_ago = chrono::DateTime::from_timestamp_millis(now - 3_600_000)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let out = d.cli(&["replay", "--feed", "street", "--from", &an_hour_ago]);
    assert!(
        out.contains("read 10 record(s); delivered 8, refused 0, failed 0, not sent 0, held 0, not selected 2"),
        "{out}"
    );
    let recent: BTreeSet<String> = (10..20)
        .filter(|i| i % 5 != 4)
        .map(|i| format!("grid:E{i}"))
        .collect();
    assert_eq!(ids(), recent, "exactly the records written since then");
    // One partition from one offset, as a dead letter's origin names it:
    // partition 0 holds E0, E2 … E18; from its offset 3, E6 … E18.
    let out = d.cli(&[
        "replay",
        "--feed",
        "street",
        "--from",
        &format!("{topic}@0:3"),
    ]);
    assert!(out.contains("read 7 record(s)"), "{out}");
    assert!(
        ids().contains("grid:E6") && !ids().contains("grid:E4"),
        "{:?}",
        ids()
    );
    // Each replay is in the operator audit — started, then done with its
    // summary — and the audit's chains verify.
    let ops: Vec<Value> = topic_json(&brokers, "duijie.ops.audit")
        .into_iter()
        .map(|(_, v)| v["entry"].clone())
        .filter(|e| e["command"] == format!("replay --feed street --from {topic}@0:3"))
        .collect();
    let outcomes: Vec<&str> = ops.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["started", "done"], "{ops:?}");
    assert!(
        ops[1]["detail"]
            .as_str()
            .unwrap()
            .contains("read 7 record(s)")
    );
    assert!(!ops[1]["operator"].as_str().unwrap().is_empty());
    let verified = d.cli(&["audit", "verify", "--topic", "duijie.ops.audit"]);
    assert!(verified.contains("ok: nothing changed"), "{verified}");
}

/// `duijie feeds test --feed NAME`: one signed test delivery to the
/// department's receiver, which checks it as any other (scheme 2); its
/// answer is printed, and a receiver that is down is said to be.
#[test]
fn feeds_test_sends_one_signed_delivery_and_reports_the_answer() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[deliveries.street]
topic = "canonical.grid_event"
department = "street"
transform = {{ kind = "fields", fields = ["event_no"] }}
target = {{ kind = "webhook", url = "http://{sandbox}/dept/street/webhook", secret = "{secret}" }}
"#,
            secret = duijie_sandbox::dept::DEPT_SECRET
        ),
    );
    let out = d.cli(&["deliveries", "test", "--delivery", "street"]);
    assert!(out.contains("→ accepted"), "{out}");
    let got = get_json(&format!("http://{sandbox}/dept/street/received"));
    let record = &got["records"][0]["record"];
    assert_eq!(record["test"], true, "{got}");
    assert_eq!(
        record["_delivery"]["idempotency_key"],
        got["records"][0]["key"]
    );
    // Down: not reached, and the command fails.
    post(
        &format!("http://{sandbox}/sandbox/receivers"),
        &[("Content-Type", "application/json".into())],
        json!({"down": true}).to_string().as_bytes(),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duijie"))
        // The older names (`feeds`, `--feed`) still work.
        .args(["feeds", "test", "--feed", "street", "--config"])
        .arg(&d.file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not reached"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The supervision feed (行政执法监督, 国务院令第825号 art. 6) on Apache
/// Kafka: every decision reaches the sandbox's supervision platform as an
/// act with its item and two certified officers; the rates per month and
/// power-list item reach it too, each count as the source's decisions make
/// it, publication read from the credit push's receipts; every batch has
/// its receipts; and the desk shows the month's items in headless
/// Chromium.
#[test]
fn the_supervision_feed_sends_acts_and_rates_with_receipts_and_the_desk_shows_them() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        enforcement: duijie_sandbox::enforcement::Settings {
            decisions: 30,
            ..Default::default()
        },
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    let topic = unique("canonical.penalty");
    let receipts = unique("receipts");
    let rates = unique("supervision.rates");
    let tag = unique("sup");
    let port = free_port();
    let d = TestDeployment::with_hub(
        &brokers,
        &format!(
            "pseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\nreceipts_topic = \"{receipts}\"\ncalendar = \"{}\"",
            root().join("calendar").display()
        ),
        &format!(
            r#"[http]
listen = "127.0.0.1:{port}"

{pipeline}
[deliveries.credit]
topic = "{topic}"
department = "信用平台"
transform = {{ kind = "credit_penalty" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/credit/api/penalties" }}

[deliveries.acts]
topic = "{topic}"
department = "司法行政部门"
transform = {{ kind = "supervision_act" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/supervision/api/acts" }}
batch_size = 8

[deliveries.rates]
topic = "{rates}"
department = "司法行政部门"
transform = {{ kind = "supervision_rates" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/supervision/api/rates" }}
batch_size = 5

[supervision]
decisions_topic = "{topic}"
leads_topic = "leads.{tag}"
publication_delivery = "credit"
rates_topic = "{rates}"

[desk]
events_topic = "events.{tag}"
state_topic = "state.{tag}"
alerts_topic = "alerts.{tag}"
audit_topic = "audit.{tag}"
[desk.users."officer-token-0000000001"]
name = "张伟"
role = "officer"
"#,
            pipeline = penalty_pipeline(&sandbox, &topic),
        ),
    );
    let hub = d.spawn();
    // What the source says, counted here: decisions per month and item.
    let decisions = scan_decisions(&sandbox);
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for d in &decisions {
        let month = d["jdrq"].as_str().unwrap()[..7].to_owned();
        let item = d["qlsxbm"].as_str().unwrap().to_owned();
        *expected.entry((month, item)).or_default() += 1;
    }
    let received = || get_json(&format!("http://{sandbox}/supervision/api/received"));
    // Every decision as an act; rates whose counts are the source's and
    // whose publication is settled (the credit push answered them all).
    let settled = |r: &Value| -> bool {
        let rates = r["rates"].as_object().unwrap();
        expected.iter().all(|((month, item), n)| {
            rates.get(&format!("{month}:{item}")).is_some_and(|x| {
                let c = &x["counts"];
                c["acts"].as_u64() == Some(*n) && c["publication_unknown"].as_u64() == Some(0)
            })
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let r = received();
        if r["acts"].as_object().unwrap().len() == decisions.len() && settled(&r) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acts and settled rates: expected {expected:?}, the platform has {} acts, rates {:?}, refused {}",
            r["acts"].as_object().unwrap().len(),
            r["rates"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k} {}", v["counts"]))
                .collect::<Vec<_>>(),
            r["rejected"]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = received();
    assert_eq!(r["rejected"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["rates_rejected"].as_array().unwrap().len(), 0, "{r}");
    for act in r["acts"].as_object().unwrap().values() {
        assert!(
            act["power_item"].as_str().unwrap().starts_with("XZCF-"),
            "{act}"
        );
        assert_eq!(act["officers"].as_array().unwrap().len(), 2, "{act}");
    }
    for x in r["rates"].as_object().unwrap().values() {
        let c = &x["counts"];
        let n = |k: &str| c[k].as_u64().unwrap();
        assert_eq!(
            n("published_in_time")
                + n("published_late")
                + n("not_published")
                + n("publication_held"),
            n("acts"),
            "{x}"
        );
        // Legal review: the sandbox passes it the day before, except for
        // a decision whose review has no conclusion yet.
        assert!(n("review_passed_before") <= n("review_required"), "{x}");
        assert_eq!(
            n("served_in_time") + n("served_late") + n("service_unknown"),
            n("acts")
        );
    }
    // The receipts: each act and each rates row the platform took.
    wait_until(Duration::from_secs(30), "the receipts", || {
        let rs = topic_json(&brokers, &receipts);
        let delivered = |delivery: &str| {
            rs.iter()
                .filter(|(_, x)| x["delivery"] == delivery && x["outcome"] == "delivered")
                .count()
        };
        delivered("acts") == decisions.len()
            && delivered("rates") >= r["rates"].as_object().unwrap().len()
    });

    // The desk's page: the busiest month, each item's acts as counted.
    let ((month, item), acts) = expected
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| (k.clone(), *n))
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_listening(&format!("127.0.0.1:{port}"));
    let driver = ChromeDriver::start();
    block_on(async {
        let browser = driver.browser(None).await;
        let result = async {
            use fantoccini::Locator;
            browser.goto(&format!("{base}/desk/login")).await?;
            browser
                .find(Locator::Id("token"))
                .await?
                .send_keys("officer-token-0000000001")
                .await?;
            browser.find(Locator::Id("login")).await?.click().await?;
            browser.wait().for_element(Locator::Css("p#who")).await?;
            browser
                .goto(&format!("{base}/desk/powers?month={month}"))
                .await?;
            let title = browser.find(Locator::Css("h2")).await?.text().await?;
            assert!(
                title.contains("权责清单与执法监督") && title.contains(&month),
                "{title}"
            );
            let row = browser
                .find(Locator::Css(&format!("tr[data-item='{item}']")))
                .await?;
            let cell = row.find(Locator::Css("td.acts")).await?.text().await?;
            assert_eq!(cell, acts.to_string());
            // The case system's items are not on the demo list: shown
            // apart, never dropped.
            assert_eq!(row.attr("class").await?.as_deref(), Some("outside"));
            // The items of the list in force are there, with their team.
            let listed = browser
                .find(Locator::Css("tr[data-item='XZCF-SR-0001']"))
                .await?
                .text()
                .await?;
            assert!(listed.contains("市容环境执法大队"), "{listed}");
            let note = browser.find(Locator::Css("p.prov")).await?.text().await?;
            assert!(
                note.contains("不构成认定") && note.contains("国务院令第825号"),
                "{note}"
            );
            // A month that is not one is refused with a reason.
            browser
                .goto(&format!("{base}/desk/powers?month=2026-13"))
                .await?;
            let body = browser.find(Locator::Css("body")).await?.text().await?;
            assert!(body.contains("YYYY-MM"), "{body}");
            Ok::<_, fantoccini::error::CmdError>(())
        }
        .await;
        browser.close().await.unwrap();
        result.unwrap();
    });
    terminate(hub);
}

/// A department feed with many requests in flight (the default) and one in
/// the batch form, to a receiver that takes 5 ms a request: every case's
/// versions arrive in the order they were on the bus (a closed case never
/// before its earlier version), every record once.
#[test]
fn requests_in_flight_across_keys_and_the_batch_form_keep_each_keys_versions_in_order() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 0,
            ..Default::default()
        },
        urban: duijie_sandbox::urban::Settings {
            cases: 0,
            ..Default::default()
        },
        change_limit: Some(0),
        ..SandboxConfig::default()
    });
    post(
        &format!("http://{sandbox}/sandbox/receivers"),
        &[("Content-Type", "application/json".into())],
        json!({"answer_ms": 5}).to_string().as_bytes(),
    );
    let topic = unique("canonical.urban");
    let feed = |name: &str, batch: bool| {
        format!(
            r#"
[deliveries.{name}]
topic = "{topic}"
department = "{name}"
dlq_topic = "{dlq}"
transform = {{ kind = "fields", fields = ["case_no", "status"] }}
target = {{ kind = "webhook", url = "http://{sandbox}/dept/{name}/webhook", secret = "{secret}", batch = {batch} }}
retry = {{ initial = "100ms", max = "1s", max_attempts = 100 }}
"#,
            dlq = unique("dlq.feed"),
            secret = duijie_sandbox::dept::DEPT_SECRET
        )
    };
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.urban_files]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
dlq_topic = "{dlq}"
partitions = 3
schedule = "* * * * * *"

[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
{many}{batch}"#,
            dlq = unique("dlq.urban"),
            many = feed("street", false),
            batch = feed("street_batch", true),
        ),
    );
    // 400 cases, then a later version (closed) of each third case not
    // closed already, in the same file: both versions on one partition.
    let cases = generated_cases(400, 11);
    let mut lines: Vec<String> = cases.lines().map(str::to_owned).collect();
    let mut closed_later = BTreeSet::new();
    for line in cases.lines().step_by(3) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["eventStateId"] != "6" {
            closed_later.insert(v["taskNum"].as_str().unwrap().to_owned());
            v["eventStateId"] = json!("6");
            lines.push(v.to_string());
        }
    }
    assert!(closed_later.len() > 50);
    drop_file(&d, "cases.jsonl", &(lines.join("\n") + "\n"));
    let hub = d.spawn();
    let on_bus = || decoded(&brokers, &topic).len();
    wait_until(Duration::from_secs(90), "the cases on the bus", || {
        on_bus() >= 400
    });
    let expected = on_bus();
    let view = |name: &str| get_json(&format!("http://{sandbox}/dept/{name}/received"));
    for name in ["street", "street_batch"] {
        wait_until(
            Duration::from_secs(120),
            &format!("every version at {name}"),
            || view(name)["records"].as_array().unwrap().len() >= expected,
        );
    }
    terminate(hub);
    for name in ["street", "street_batch"] {
        let got = view(name);
        let records = got["records"].as_array().unwrap();
        assert_eq!(records.len(), expected, "{name}: each record once");
        let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in records {
            versions
                .entry(r["record"]["case_no"].as_str().unwrap())
                .or_default()
                .push(r["record"]["status"].as_str().unwrap());
        }
        let twice: Vec<_> = versions.iter().filter(|(_, v)| v.len() > 1).collect();
        assert!(
            twice.len() >= closed_later.len() / 2,
            "{name}: the later versions arrived ({} of {})",
            twice.len(),
            closed_later.len()
        );
        for (case, v) in twice {
            assert!(
                closed_later.contains(*case),
                "{name}: {case} came twice: {v:?}"
            );
            assert_eq!(v.len(), 2, "{name}: {case}: {v:?}");
            assert!(
                v[0] != "CLOSED" && v[1] == "CLOSED",
                "{name}: {case}'s versions out of order: {v:?}"
            );
        }
    }
}
