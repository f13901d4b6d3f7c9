//! The command line as an integration engineer uses it.

use crate::common::root;
use std::process::Command;

fn duijie(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn map_writes_every_field_and_numbered_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rej) = (dir.path().join("out.jsonl"), dir.path().join("rej.jsonl"));
    let (code, _, stderr) = duijie(&[
        "map",
        "--mapping",
        "urban_case",
        "--input",
        "mappings/tests/urban_case/02_edge_cases.input.jsonl",
        "--output",
        out.to_str().unwrap(),
        "--rejects",
        rej.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("3 record(s), 7 reject(s)"), "{stderr}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    // Every schema field is present, null where empty.
    let fields = crate::common::schemas()
        .get("UrbanCase")
        .unwrap()
        .tree
        .len();
    assert_eq!(records[1].as_object().unwrap().len(), fields);
    assert_eq!(records[1]["party_name"], serde_json::Value::Null);
    let rejects: Vec<serde_json::Value> = std::fs::read_to_string(&rej)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects[0]["line"], 2);
    assert_eq!(rejects[0]["rule"], "codes");
    assert!(
        rejects[0]["raw"]
            .as_str()
            .unwrap()
            .contains(r#""eventSrcId": "9""#)
    );
    assert_eq!(rejects[6]["line"], 10);
    assert_eq!(rejects[6]["raw"], "not json at all");
}

#[test]
fn validate_reports_each_value_and_exits_nonzero_on_any_invalid() {
    let (code, stdout, _) = duijie(&[
        "validate",
        "uscc",
        "９１３５０１００ｍ０００１００ｙ４３",
        "91350100M000100Y44",
    ]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "９１３５０１００ｍ０００１００ｙ４３\tvalid\t91350100M000100Y43"
    );
    assert_eq!(
        lines[1],
        "91350100M000100Y44\tinvalid\t91350100M000100Y44\tcheck character 18 is `4`, expected `3`"
    );
    let (code, stdout, _) = duijie(&["validate", "id", "11010519491231002x"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "11010519491231002x\tvalid\t11010519491231002X\n");
    let (code, stdout, _) = duijie(&["validate", "id", "1101051949123100"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("length is 16, expected 18"), "{stdout}");
}

#[test]
fn mapping_test_passes_on_the_shipped_mappings() {
    let (code, stdout, stderr) = duijie(&["mapping", "test"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 failed"), "{stdout}");
}

/// `mapping test --bless NAME` rewrites that mapping's expected files and
/// only compares the others; `--mapping NAME` runs one mapping alone.
#[test]
fn mapping_test_blesses_one_mapping_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |rel: &str| {
        let (from, to) = (root().join("mappings").join(rel), dir.path().join(rel));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    for code in std::fs::read_dir(root().join("mappings/codes")).unwrap() {
        copy(&format!(
            "codes/{}",
            code.unwrap().file_name().to_string_lossy()
        ));
    }
    for name in ["urban_case", "video_alarm"] {
        copy(&format!("{name}.yaml"));
        for f in std::fs::read_dir(root().join("mappings/tests").join(name)).unwrap() {
            copy(&format!(
                "tests/{name}/{}",
                f.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    let expected = |name: &str| {
        let d = dir.path().join("tests").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".expected.jsonl"))
            .collect();
        files.sort();
        files[0].clone()
    };
    // Both mappings' first expected file spoiled.
    for name in ["urban_case", "video_alarm"] {
        let f = expected(name);
        let text = std::fs::read_to_string(&f).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        let mut record: serde_json::Value = serde_json::from_str(first).unwrap();
        record["id"] = "spoiled".into();
        std::fs::write(&f, format!("{record}\n{rest}")).unwrap();
    }
    let original = std::fs::read_to_string(
        root()
            .join("mappings/tests/urban_case")
            .join(expected("urban_case").file_name().unwrap()),
    )
    .unwrap();
    let mappings = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = duijie(&[
        "mapping",
        "test",
        "--mappings",
        mappings,
        "--bless",
        "urban_case",
    ]);
    assert_eq!(
        code, 1,
        "the unblessed mapping still fails: {stdout}{stderr}"
    );
    assert!(stdout.contains("FAIL video_alarm"), "{stdout}");
    assert!(!stdout.contains("FAIL urban_case"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(expected("urban_case")).unwrap(),
        original
    );
    // One mapping alone passes now.
    let (code, stdout, _) = duijie(&[
        "mapping",
        "test",
        "--mappings",
        mappings,
        "--mapping",
        "urban_case",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(!stdout.contains("video_alarm"), "{stdout}");
    // A name that is not a mapping is an error, not a silent no-op.
    let (code, _, stderr) = duijie(&[
        "mapping",
        "test",
        "--mappings",
        mappings,
        "--bless",
        "urban",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no mapping `urban`"), "{stderr}");
}

#[test]
fn check_passes_on_the_shipped_deployment() {
    let (code, stdout, stderr) = duijie(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("pipelines/yichang.toml: ok"), "{stdout}");
}

/// `duijie referrals replay`: canonical events through the tracker's own
/// fold, without Kafka, judged at `--now`: a holiday-rolled approval
/// deadline, an approved review extension that must not read as late, an
/// upheld refusal with its 3 日 to propose supervision, and an event out of
/// order, flagged.
#[test]
fn referrals_replay_judges_a_realistic_sequence_at_the_given_time() {
    let at = |t: &str| duijie::calendar::parse_time(t).unwrap().timestamp_millis();
    let event = |id: &str, no: &str, kind: &str, t: &str| {
        serde_json::json!({"id": id, "referral_no": no, "source_system": "two_law", "event_type": kind,
            "occurred_at": at(t), "case_no": null, "actor_org": null, "actor_org_code": null,
            "document_no": null, "police_case_no": null, "reason": null, "suspect": null,
            "offence": null, "notes": null})
        .to_string()
    };
    let lines = [
        event("1", "YS-R1", "SUBMITTED", "2026-09-30 10:00"),
        event("2", "YS-R2", "REFERRED", "2026-11-02 09:00"),
        event("3", "YS-R2", "RECEIPTED", "2026-11-02 10:00"),
        event("4", "YS-R2", "REVIEW_EXTENDED_10D", "2026-11-04 16:00"),
        event("5", "YS-R3", "REFERRED", "2026-11-02 09:00"),
        event("6", "YS-R3", "RECEIPTED", "2026-11-02 10:00"),
        event("7", "YS-R3", "NOT_OPENED", "2026-11-03 10:00"),
        event(
            "8",
            "YS-R3",
            "RECONSIDERATION_REQUESTED",
            "2026-11-04 10:00",
        ),
        event("9", "YS-R3", "RECONSIDERATION_UPHELD", "2026-11-05 10:00"),
        event("10", "YS-R4", "CASE_OPENED", "2026-11-03 10:00"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (code, stdout, stderr) = duijie(&[
        "referrals",
        "replay",
        "--input",
        input.to_str().unwrap(),
        "--now",
        "2026-11-09 09:00",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let rows: std::collections::BTreeMap<String, serde_json::Value> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["referral_no"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let r1 = &rows["YS-R1"];
    assert_eq!(r1["state"], "AWAITING_APPROVAL");
    assert_eq!(r1["step"], "approval");
    assert_eq!(
        r1["due_at"], "2026-10-09T00:00:00+08:00",
        "10-03 is in the holiday: 10-08 24:00"
    );
    assert_eq!(r1["late"], true);
    // The police extended their review: still 3 日 from receipt
    // (310号令 art. 8), late; the notice shown beside it, and the next step
    // the bureau may take (检察规则 art. 562).
    let r2 = &rows["YS-R2"];
    assert_eq!(r2["step"], "police_review");
    assert_eq!(r2["due_at"], "2026-11-06T00:00:00+08:00");
    assert_eq!(
        r2["late"], true,
        "an extension notice made a late review look on time"
    );
    assert!(
        r2["police_extension"]["note"]
            .as_str()
            .unwrap()
            .contains("不改变"),
        "{r2}"
    );
    assert!(
        r2["late_review_remedy"]
            .as_str()
            .unwrap()
            .contains("第五百六十二条"),
        "{r2}"
    );
    let r3 = &rows["YS-R3"];
    assert_eq!(r3["state"], "RECONSIDERATION_UPHELD");
    assert_eq!(r3["next_actor"], "执法局");
    assert_eq!(r3["step"], "supervision_proposal");
    assert_eq!(
        r3["due_at"], "2026-11-10T00:00:00+08:00",
        "11-08 is a Sunday: Monday 24:00"
    );
    assert!(r3["basis"].as_str().unwrap().contains("第九条第二款"));
    // No receipt time recorded for the police's decision: counted from its
    // time, and said so.
    assert!(
        r3["counted_from"]
            .as_str()
            .unwrap()
            .contains("未记录收到时间"),
        "{r3}"
    );
    let r4 = &rows["YS-R4"];
    assert_eq!(r4["state"], serde_json::Value::Null);
    assert_eq!(r4["flagged"].as_array().unwrap().len(), 1);

    // A line that is no ReferralEvent is refused with its line number.
    std::fs::write(&input, format!("{}\n{{\"x\":1}}\n", lines[0])).unwrap();
    let (code, _, stderr) = duijie(&["referrals", "replay", "--input", input.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("events.jsonl:2"), "{stderr}");

    // The rules, each with its article.
    let (code, stdout, _) = duijie(&["referrals", "rules", "--format", "json"]);
    assert_eq!(code, 0);
    let rules: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approval = rules.iter().find(|r| r["step"] == "approval").unwrap();
    assert_eq!(
        (approval["amount"].as_u64(), approval["unit"].as_str()),
        (Some(3), Some("calendar_days"))
    );
    assert!(
        rules
            .iter()
            .all(|r| r["basis"].as_str().is_some_and(|b| b.contains('《'))),
        "{stdout}"
    );
    // The articles as the texts number them; no extended review step.
    let basis = |step: &str| {
        rules
            .iter()
            .find(|r| r["step"] == step)
            .unwrap_or_else(|| panic!("{step}: {stdout}"))["basis"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(basis("reasons_answer").contains("第五百六十条"));
    assert!(basis("reasons_answer").contains("第一百八十二条第一款"));
    assert!(basis("opening_after_order").contains("第五百六十三条"));
    assert!(basis("procuratorate_reply").contains("第五百六十一条第二款"));
    assert!(
        !rules
            .iter()
            .any(|r| r["step"].as_str().unwrap().contains("extended"))
    );
}

/// The shipped deployment writes every step out with its article; it says
/// what the code's defaults say.
#[test]
fn the_shipped_desk_limits_are_the_defaults_written_out() {
    let d = duijie::config::Deployment::load(&root().join("pipelines/yichang.toml")).unwrap();
    assert_eq!(
        d.sections.desk.unwrap().limits,
        duijie::keepers::referral::StepLimits::default()
    );
}

/// `duijie push preview`: what the credit platform and a webhook receiver
/// would get, without Kafka or network, for each rule of the credit
/// publication.
#[test]
fn push_preview_shows_exactly_what_each_receiver_would_get() {
    let expected = std::fs::read_to_string(
        root().join("mappings/tests/penalty_decision/01_decisions.expected.jsonl"),
    )
    .unwrap();
    let base: serde_json::Value = serde_json::from_str(expected.lines().next().unwrap()).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        f(&mut v);
        v.to_string()
    };
    // Decided 2026-11-11, under 《信用修复管理办法》 (NDRC order 36) but for
    // the last line (2026-03-31, before it applied).
    let lines = [
        with(&|v| {
            v["categories"] = serde_json::json!(["罚款"]);
            v["credit_severity"] = "SERIOUS".into();
        }),
        with(&|v| {
            v["id"] = "pen:P1".into();
            v["party"] = serde_json::json!({"name": "李娜", "type": "NATURAL_PERSON", "id_type": "身份证",
                "id_number": "11010519491231002X", "credit_code": null, "legal_rep": null});
            v["categories"] = serde_json::json!(["罚款"]);
            v["credit_severity"] = "GENERAL".into();
        }),
        with(&|v| v["categories"] = serde_json::json!(["警告"])),
        with(&|v| {
            v["action"] = "CONFIRMED_VOID".into();
            v["version"] = 2.into();
        }),
        with(&|v| {
            v["categories"] = serde_json::json!(["罚款"]);
            v["authority_code"] = "11420500MB150779XX".into();
        }),
        // An individual business without a credit code: the placeholder,
        // and its operator as legal representative.
        with(&|v| {
            v["id"] = "pen:P2".into();
            v["categories"] = serde_json::json!(["罚款"]);
            v["credit_severity"] = "GENERAL".into();
            v["party"] = serde_json::json!({"name": "宜昌高新区李娜经营部", "type": "INDIVIDUAL_BUSINESS",
                "legal_rep": "李娜", "legal_rep_id_type": "RESIDENT_ID", "legal_rep_id_number": "11010519491231002X"});
        }),
        // A fine the case system did not class: held for an officer.
        with(&|v| v["categories"] = serde_json::json!(["罚款"])),
        // 50 yuan on the spot (简易程序): 轻微, not published.
        with(&|v| {
            v["categories"] = serde_json::json!(["罚款"]);
            v["fine_yuan"] = "50".into();
            v["procedure"] = "SIMPLE".into();
        }),
        // Decided 2026-03-31 (order 58), classed 一般: cut to one year.
        with(&|v| {
            v["categories"] = serde_json::json!(["罚款"]);
            v["credit_severity"] = "GENERAL".into();
            v["decided_at"] = 1_774_886_400_000_i64.into();
        }),
        // Classed, but not yet served (行政处罚法 art. 61): held.
        with(&|v| {
            v["categories"] = serde_json::json!(["罚款"]);
            v["credit_severity"] = "GENERAL".into();
            v["served_at"] = serde_json::Value::Null;
        }),
        // Needed legal review (art. 58), and it was returned: held.
        with(&|v| {
            v["categories"] = serde_json::json!(["罚款"]);
            v["credit_severity"] = "SERIOUS".into();
            v["legal_review_required"] = true.into();
            v["legal_review_outcome"] = "RETURNED".into();
        }),
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("decisions.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (code, stdout, stderr) = duijie(&[
        "push",
        "preview",
        "--delivery",
        "credit_penalties",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // `push preview` is the older name of `deliveries preview`: it works,
    // and says so.
    assert!(
        stderr.contains("`duijie push` is now `duijie deliveries`"),
        "{stderr}"
    );
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 11, "{stdout}");
    // A serious decision: one batch request, CF_GSJZQ the 3-year maximum;
    // the preview says the class, where it came from and the basis.
    let published = &rows[0];
    assert_eq!(published["sent"], true);
    assert!(
        published["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/batch")
    );
    assert_eq!(published["record"]["CF_JDRQ"], "2026-11-11");
    assert_eq!(published["record"]["CF_GSJZQ"], "2029-11-11");
    assert_eq!(published["record"]["CF_YXQ"], "2099-12-31");
    assert_eq!(published["record"]["CF_NR_FK"], "0.2");
    assert_eq!(published["credit"]["class"]["severity"], "SERIOUS");
    assert_eq!(published["credit"]["repair_from"], "2027-11-11");
    assert!(
        published["credit"]["period_basis"]
            .as_str()
            .unwrap()
            .contains("第36号"),
        "{published}"
    );
    // A natural person, 一般: one year, masked and nowhere in full.
    assert_eq!(rows[1]["record"]["CF_GSJZQ"], "2027-11-11");
    assert_eq!(rows[1]["record"]["CF_XDR_ZJHM"], "110105********002X");
    assert!(
        !rows[1].to_string().contains("11010519491231002X"),
        "{}",
        rows[1]
    );
    // A warning only: 轻微, not sent, with the reason.
    assert_eq!(rows[2]["sent"], false);
    assert!(rows[2]["reason"].as_str().unwrap().contains("轻微"));
    // Confirmed void: withdrawn, the reason public.
    assert!(
        rows[3]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/withdraw")
    );
    assert!(
        rows[3]["request"]["body"]
            .as_str()
            .unwrap()
            .contains("确认无效")
    );
    // A deciding authority whose code is no credit code: refused by the hub.
    assert_eq!(rows[4]["sent"], false);
    assert!(
        rows[4]["reason"].as_str().unwrap().contains("CF_CFJGDM"),
        "{}",
        rows[4]
    );
    // The individual business: the placeholder code, its operator as legal
    // representative with the ID masked.
    let business = &rows[5]["record"];
    assert_eq!(business["CF_XDR_LB"], "个体工商户");
    assert_eq!(business["CF_XDR_SHXYM"], "00000000000000000X");
    assert_eq!(business["CF_FRDB"], "李娜");
    assert_eq!(business["CF_FR_ZJLX"], "001");
    assert_eq!(business["CF_FR_ZJHM"], "110105********002X");
    assert!(
        !rows[5].to_string().contains("11010519491231002X"),
        "{}",
        rows[5]
    );
    // Unclassed: held, not sent, the reason for the desk.
    assert_eq!(
        (&rows[6]["sent"], &rows[6]["held"]),
        (&false.into(), &true.into())
    );
    assert!(
        rows[6]["reason"].as_str().unwrap().contains("待定级"),
        "{}",
        rows[6]
    );
    // The simplified procedure: 轻微 by the rule of order 36.
    assert_eq!(rows[7]["sent"], false);
    assert!(
        rows[7]["credit"]["class"]["from"]
            .as_str()
            .unwrap()
            .contains("simple_procedure"),
        "{}",
        rows[7]
    );
    // Before 2026-04-01: order 58's 3 years cut to order 36's 1 year.
    assert_eq!(rows[8]["record"]["CF_JDRQ"], "2026-03-31");
    assert_eq!(rows[8]["record"]["CF_GSJZQ"], "2027-03-31");
    // Not served, or its legal review returned: held, each with its reason.
    for (row, why) in [(&rows[9], "送达"), (&rows[10], "法制审核")] {
        assert_eq!(
            (&row["sent"], &row["held"]),
            (&false.into(), &true.into()),
            "{row}"
        );
        assert!(row["reason"].as_str().unwrap().contains(why), "{row}");
    }

    // A webhook receiver: signed, with its idempotency key in a header.
    let entry = serde_json::json!({"id": "blk:pid:0123456789abcdef0123456789abcdef", "entity": "pid:0123456789abcdef0123456789abcdef",
        "name": "李娜", "credit_code": null, "action": "ADD", "reasons": ["x"], "version": 1, "updated_at": 0, "message": "m"});
    std::fs::write(&input, entry.to_string() + "\n").unwrap();
    let (code, stdout, stderr) = duijie(&[
        "deliveries",
        "preview",
        "--delivery",
        "blacklist_to_approval",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let row: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let headers: std::collections::BTreeMap<String, String> = row["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_owned(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        headers["Idempotency-Key"],
        row["idempotency_key"].as_str().unwrap()
    );
    // Scheme 2 with HMAC-SM3 (the shipped deployment's `gm` suite), and
    // the hub's SM2 signature over the same bytes, which OpenSSL's command
    // line verifies with the hub's public key and identifier.
    assert_eq!(headers["X-Signature-Scheme"], "duijie-hmac-sm3/2");
    let body = row["request"]["body"].as_str().unwrap();
    let secret =
        std::fs::read_to_string(root().join("pipelines/secrets/approval_blacklist_secret"))
            .unwrap();
    assert!(duijie_connectors::signature::verify_v2_with(
        duijie_connectors::signature::Suite::Gm,
        secret.trim_end(),
        &headers["X-Timestamp"],
        &headers["Idempotency-Key"],
        body.as_bytes(),
        &headers["X-Signature"],
    ));
    assert_eq!(headers["X-Signature-SM2-Id"], "1234567812345678");
    assert_eq!(headers["X-Signature-SM2-Form"], "der+base64");
    let signed = duijie_connectors::signature::base_v2(
        &headers["X-Timestamp"],
        &headers["Idempotency-Key"],
        body.as_bytes(),
    );
    let sig = duijie_crypto::Text::Base64
        .decode(&headers["X-Signature-SM2"])
        .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::write(dir2.path().join("signed"), &signed).unwrap();
    std::fs::write(dir2.path().join("sig"), &sig).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sm3", "-verify"])
        .arg(root().join("pipelines/secrets/hub_sm2_public.pem"))
        .args([
            "-sigopt",
            "distid:1234567812345678",
            "-signature",
            "sig",
            "signed",
        ])
        .current_dir(dir2.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    assert!(
        row["request"]["url"]
            .as_str()
            .unwrap()
            .contains("/approval/api/blacklist")
    );
    // An unknown delivery is named with the ones there are.
    let (code, _, stderr) = duijie(&[
        "deliveries",
        "preview",
        "--delivery",
        "nope",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("credit_penalties"), "{stderr}");
}

/// A SOAP receiver gets the key in the envelope and in `Idempotency-Key`,
/// and the hub's SM2 signature over `<X-Timestamp>.<key>.<body>`, which
/// the hub's public key verifies.
#[test]
fn push_preview_shows_the_soap_envelope_signed_with_the_hubs_sm2_key() {
    let (code, stdout, stderr) = duijie(&[
        "deliveries",
        "preview",
        "--delivery",
        "feed_market",
        "--input",
        "mappings/tests/licence/01_api.expected.jsonl",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let public = duijie_crypto::sm2::PublicKey::from_pem(
        &std::fs::read_to_string(root().join("pipelines/secrets/hub_sm2_public.pem")).unwrap(),
        "1234567812345678",
    )
    .unwrap();
    let mut sent = 0;
    for line in stdout.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["request"].is_null() {
            continue;
        }
        sent += 1;
        let headers: std::collections::BTreeMap<String, String> = row["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let body = row["request"]["body"].as_str().unwrap();
        let key = &headers["Idempotency-Key"];
        assert!(
            body.contains(&format!("<IdempotencyKey>{key}</IdempotencyKey>")),
            "{body}"
        );
        let signed =
            duijie_connectors::signature::base_v2(&headers["X-Timestamp"], key, body.as_bytes());
        let sig = duijie_crypto::Text::Base64
            .decode(&headers["X-Signature-SM2"])
            .unwrap();
        public
            .verify(&signed, &sig, duijie_crypto::sm2::SignatureForm::Der)
            .unwrap();
        // Not over another body.
        assert!(
            public
                .verify(b"other", &sig, duijie_crypto::sm2::SignatureForm::Der)
                .is_err()
        );
    }
    assert_eq!(sent, 6, "the GENERAL and FRANCHISE licences: {stdout}");
}

/// The emergency bureau's feed is encrypted to its SM2 key: each body
/// `push preview` shows is the envelope `duijie-sm4/1`, which Python opens
/// with implementations nobody here wrote — `gmssl` unwraps the data key
/// (C1C3C2) with the bureau's private key, `cryptography` opens SM4-GCM
/// with the Idempotency-Key as associated data — and finds the record; the
/// HMAC-SM3 covers the envelope as sent; the same envelope under another
/// key does not open.
#[test]
fn the_emergency_feed_is_an_sm4_envelope_that_gmssl_and_cryptography_open() {
    let (code, stdout, stderr) = duijie(&[
        "deliveries",
        "preview",
        "--delivery",
        "feed_emergency",
        "--input",
        "mappings/tests/safety_hazard/01_rows.expected.jsonl",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // The bureau's private key as gmssl takes it: hex, and its public
    // point without 04.
    let pem = root().join("sandbox/src/keys/dept_emergency_sm2_key.pem");
    let text = std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let hex_of =
        |block: &str| -> String { block.chars().filter(char::is_ascii_hexdigit).collect() };
    let after_priv = text.split("priv:").nth(1).unwrap();
    let (priv_block, pub_block) = after_priv.split_once("pub:").unwrap();
    let secret = format!("{:0>64}", hex_of(priv_block).trim_start_matches("00"));
    let public = hex_of(pub_block.split("ASN1").next().unwrap());
    let public = &public[public.len() - 128..];
    let python = crate::common::python();
    let open = |envelope: &serde_json::Value, aad: &str| -> std::process::Output {
        let script = format!(
            r#"import base64, sys
from gmssl import sm2
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
e = {e}
wrapped = base64.b64decode(e["key"])
c = sm2.CryptSM2(private_key="{secret}", public_key="{public}", mode=1)
dk = c.decrypt(wrapped[1:])
iv, data = base64.b64decode(e["iv"]), base64.b64decode(e["data"])
d = Cipher(algorithms.SM4(dk), modes.GCM(iv, data[-16:])).decryptor()
d.authenticate_additional_data({aad:?}.encode())
sys.stdout.write((d.update(data[:-16]) + d.finalize()).decode())
"#,
            e = envelope,
        );
        std::process::Command::new(&python)
            .args(["-c", &script])
            .output()
            .unwrap()
    };
    let mut sent = 0;
    for line in stdout.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["request"].is_null() {
            continue;
        }
        sent += 1;
        let headers: std::collections::BTreeMap<String, String> = row["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(headers["X-Body-Encryption"], "sm4-gcm");
        let body = row["request"]["body"].as_str().unwrap();
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["envelope"], "duijie-sm4/1");
        assert!(
            !body.contains("YH20"),
            "the hazard number shows through: {body}"
        );
        let key = &headers["Idempotency-Key"];
        // The HMAC-SM3 covers the envelope as sent.
        use duijie_connectors::signature::{Suite, verify_v2_with};
        let secret_file =
            std::fs::read_to_string(root().join("pipelines/secrets/dept_feed_secret")).unwrap();
        assert!(verify_v2_with(
            Suite::Gm,
            secret_file.trim(),
            &headers["X-Timestamp"],
            key,
            body.as_bytes(),
            &headers["X-Signature"],
        ));
        let out = open(&envelope, key);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["grade"], "MAJOR", "{record}");
        assert!(
            record["hazard_no"].as_str().unwrap().starts_with("YH"),
            "{record}"
        );
        // Moved to another record, the envelope does not open.
        assert!(!open(&envelope, "saf:another:u1").status.success());
    }
    assert_eq!(sent, 6, "the six major hazards: {stdout}");
}

/// The receiver contract (docs/RECEIVING.md) is enough to verify a webhook:
/// its Python check, run as written, accepts the test vector the hub's own
/// signature gives and refuses the same request under another key.
#[test]
fn the_receiver_contracts_python_check_verifies_the_hubs_signature() {
    let doc = std::fs::read_to_string(root().join("docs/RECEIVING.md")).unwrap();
    let code = doc
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a Python block in the contract");
    let (secret, ts, key, body) = (
        "dept-feed-secret-0123456789",
        "1796601600",
        "saf:HZ2026000123:u1796601599000",
        r#"{"hazard_no":"HZ2026000123","grade":"MAJOR"}"#,
    );
    use duijie_connectors::signature::{Suite, scheme_v2, sign_v2_with};
    let mut script = format!("{code}\ntime.time = lambda: {ts}\nb = b'{body}'\n");
    for suite in [Suite::Intl, Suite::Gm] {
        let signature = sign_v2_with(suite, secret, ts, key, body.as_bytes());
        assert!(
            doc.contains(&signature),
            "the contract's vector is the hub's: {signature}"
        );
        let scheme = scheme_v2(suite);
        script.push_str(&format!(
            r#"h = {{"X-Signature-Scheme": "{scheme}", "X-Timestamp": "{ts}", "Idempotency-Key": "{key}", "X-Signature": "{signature}"}}
print(verify(b"{secret}", h, b))
h["Idempotency-Key"] = "saf:HZ2026000123:u9999999999999"
print(verify(b"{secret}", h, b))
"#
        ));
    }
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "True\nFalse\nTrue\nFalse\n"
    );
}

/// `duijie supervision rates`: a dry run on mapped decisions, per month and
/// power-list item; a line that is not JSON names its file and line.
#[test]
fn supervision_rates_count_a_file_of_decisions_by_month_and_item() {
    let dir = tempfile::tempdir().unwrap();
    let mapped = dir.path().join("decisions.jsonl");
    let input = root().join("mappings/tests/penalty_decision/03_supervision.input.jsonl");
    let (code, _, stderr) = duijie(&[
        "map",
        "--mapping",
        "penalty_decision",
        "--mappings",
        root().join("mappings").to_str().unwrap(),
        "--schemas",
        root().join("schemas").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        mapped.to_str().unwrap(),
        "--rejects",
        dir.path().join("rejects.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let calendar = root().join("calendar");
    let (code, stdout, stderr) = duijie(&[
        "supervision",
        "rates",
        "--input",
        mapped.to_str().unwrap(),
        "--calendar",
        calendar.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The item the case system named: reviewed the day before the
    // decision, served the day after. The others name none: one review
    // returned, one not needed.
    let item = rows.iter().find(|r| r["item"] == "XZCF-AQ-0012").unwrap();
    assert_eq!(
        (
            &item["acts"],
            &item["review_passed_before"],
            &item["served_in_time"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{stdout}"
    );
    let none = rows.iter().find(|r| r["item"] == "(未载明)").unwrap();
    assert_eq!(
        (
            &none["acts"],
            &none["review_required"],
            &none["review_passed_before"]
        ),
        (&2.into(), &1.into(), &0.into()),
        "{stdout}"
    );
    std::fs::write(&mapped, "{}\nnot json\n").unwrap();
    let (code, _, stderr) = duijie(&[
        "supervision",
        "rates",
        "--input",
        mapped.to_str().unwrap(),
        "--calendar",
        calendar.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("decisions.jsonl:2:"), "{stderr}");
}
