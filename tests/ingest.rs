//! File drop → mapping → Avro → Kafka, through the `duijie` binary and a
//! real broker.

use crate::common::*;
use duijie::bus::DeadLetter;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn file_pipeline(
    topic: &str,
    dlq: &str,
    batch_size: usize,
    in_flight: usize,
    max_record_bytes: usize,
) -> String {
    format!(
        r#"[pipelines.urban_files]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
dlq_topic = "{dlq}"
partitions = 3
schedule = "* * * * * *"
batch_size = {batch_size}
max_in_flight_batches = {in_flight}

[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
max_record_bytes = {max_record_bytes}
"#
    )
}

/// Drops `text` as `inbox/few.jsonl`, runs the hub until the file is
/// done, and stops it.
fn ingest_few(d: &TestDeployment, text: &str) {
    drop_file(d, "few.jsonl", text);
    let hub = d.spawn();
    wait_until(Duration::from_secs(60), "the file to be finished", || {
        d.path("inbox/done/few.jsonl").exists()
    });
    terminate(hub);
}

#[test]
fn good_records_land_once_and_bad_ones_in_the_dlq_with_reasons() {
    let brokers = brokers();
    let topic = unique("canonical.urban");
    let dlq = unique("dlq.urban");
    let d = TestDeployment::new(&brokers, &file_pipeline(&topic, &dlq, 200, 4, 2048));
    let good = generated_cases(1000, 7);
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let bad = [
        (r#"{"taskNum":"BAD1","eventSrcId":"9","eventTypeId":"2","mainTypeId":"05","subTypeId":"01","cellId":"42050200012301","createTime":"2026-11-20 09:15:00","eventStateId":"3"}"#.to_string(), "code `9` is not in code table `urban_event_source`"),
        (r#"{"taskNum":"BAD2","eventSrcId":"1","eventTypeId":"2","mainTypeId":"05","subTypeId":"01","cellId":"4205020001230","createTime":"2026-11-20 09:15:00","eventStateId":"3"}"#.to_string(), "does not match `^[0-9]{14}$`"),
        (r#"{"taskNum":"BAD3","eventSrcId":"1","eventTypeId":"2","mainTypeId":"05","subTypeId":"01","cellId":"42050200012301","createTime":"2026-02-30 09:15:00","eventStateId":"3"}"#.to_string(), "matches none of the formats"),
        (r#"{"taskNum":"BAD4","eventSrcId":"1", oops"#.to_string(), "not valid JSON"),
        (format!(r#"{{"taskNum":"BAD5","eventDesc":"{}"}}"#, "很长".repeat(1000)), "larger than max_record_bytes"),
    ];
    for (i, (line, _)) in bad.iter().enumerate() {
        lines.insert(100 + i * 211, line.clone());
    }
    drop_file(&d, "cases-20261120.jsonl", &(lines.join("\n") + "\n"));

    let hub = d.spawn();
    wait_until(
        Duration::from_secs(90),
        "the file to be committed and moved to done/",
        || d.path("inbox/done/cases-20261120.jsonl").exists(),
    );
    terminate(hub);

    // A read_committed consumer sees exactly the good records, each once.
    let records = read(&brokers, &topic, true);
    let expected: BTreeSet<String> = urban_keys(&good).into_iter().collect();
    let keys: Vec<String> = records.iter().map(|r| r.key_str()).collect();
    let distinct: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), 1000, "each good record exactly once");
    assert_eq!(distinct, expected);

    // Every record decodes with its schema and carries its provenance.
    let schema = schemas().get("duijie.canonical.UrbanCase").unwrap();
    let by_key: BTreeMap<String, &str> = good
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (format!("dcm:{}", v["taskNum"].as_str().unwrap()), l)
        })
        .collect();
    for r in &records {
        let value = schema
            .decode_single_object(r.payload.as_deref().unwrap())
            .unwrap();
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("a record")
        };
        assert_eq!(fields[0].1, apache_avro::types::Value::String(r.key_str()));
        let raw = by_key[&r.key_str()];
        assert_eq!(
            r.headers["duijie-payload-sha256"],
            hex::encode(Sha256::digest(raw.as_bytes()))
        );
        assert_eq!(r.headers["duijie-source-system"], "digital_urban");
        assert_eq!(
            r.headers["duijie-source-id"],
            r.key_str().trim_start_matches("dcm:")
        );
        assert_eq!(r.headers["duijie-mapping"], "urban_case");
        assert_eq!(r.headers["duijie-mapping-version"], "1");
        assert_eq!(r.headers["duijie-connector"], "file_drop");
        assert!(r.headers["duijie-origin"].starts_with("cases-20261120.jsonl:"));
        assert!(r.headers["duijie-fetched-at"].ends_with('Z'));
    }

    // The bad ones are in the DLQ with their raw payload and a reason.
    let letters: Vec<DeadLetter> = read(&brokers, &dlq, true)
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    for (line, reason) in &bad {
        let letter = letters
            .iter()
            .find(|l| l.reason.contains(reason))
            .unwrap_or_else(|| panic!("no dead letter says `{reason}`: {letters:#?}"));
        if letter.raw_truncated {
            assert_eq!(letter.raw_bytes(), line.as_bytes()[..2048].to_vec());
        } else {
            assert_eq!(letter.raw, *line);
        }
        assert_eq!(letter.provenance.pipeline, "urban_files");
        assert!(
            letter
                .provenance
                .origin
                .starts_with("cases-20261120.jsonl:")
        );
    }
}

#[test]
fn sigkill_mid_ingest_loses_nothing_and_duplicates_at_most_the_unacknowledged_batch() {
    const BATCH: usize = 500;
    const IN_FLIGHT: usize = 1;
    let brokers = brokers();
    let topic = unique("canonical.urban");
    let dlq = unique("dlq.urban");
    let d = TestDeployment::new(
        &brokers,
        &file_pipeline(&topic, &dlq, BATCH, IN_FLIGHT, 1 << 20),
    );
    // 60,000 in the suite; `DUIJIE_CRASH_RECORDS=300000` for the figures in docs/OPERATING.md.
    let n: usize = std::env::var("DUIJIE_CRASH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let good = generated_cases(n, 11);
    drop_file(&d, "big.jsonl", &good);

    let mut kills = 0;
    for pause_ms in [1200, 900, 1500, 700, 1100, 1300] {
        let hub = d.spawn();
        std::thread::sleep(Duration::from_millis(pause_ms));
        if d.path("inbox/done/big.jsonl").exists() {
            kill(hub);
            break;
        }
        kill(hub);
        kills += 1;
    }
    let hub = d.spawn();
    wait_until(
        Duration::from_secs(180),
        "the file to be finished after restarts",
        || d.path("inbox/done/big.jsonl").exists(),
    );
    terminate(hub);

    let records = read(&brokers, &topic, true);
    let expected: BTreeSet<String> = urban_keys(&good).into_iter().collect();
    let distinct: BTreeSet<String> = records.iter().map(|r| r.key_str()).collect();
    assert_eq!(distinct, expected, "no record lost, no stranger");
    let duplicates = records.len() - distinct.len();
    eprintln!(
        "SIGKILL test: {kills} kill(s), {} records in topic, {} distinct, {duplicates} duplicate(s) (bound {})",
        records.len(),
        distinct.len(),
        kills * BATCH * IN_FLIGHT
    );
    assert!(
        kills >= 2,
        "the hub finished before it could be killed twice ({kills}); the test proves little"
    );
    assert!(
        duplicates <= kills * BATCH * IN_FLIGHT,
        "{duplicates} duplicates exceed {kills} kill(s) × {BATCH} records × {IN_FLIGHT} batch in flight"
    );
    assert!(read(&brokers, &dlq, true).is_empty());
}

#[test]
fn sigterm_mid_ingest_commits_in_flight_batches_so_a_restart_duplicates_nothing() {
    let brokers = brokers();
    let topic = unique("canonical.urban");
    let dlq = unique("dlq.urban");
    let d = TestDeployment::new(&brokers, &file_pipeline(&topic, &dlq, 500, 4, 1 << 20));
    let good = generated_cases(60_000, 17);
    drop_file(&d, "big.jsonl", &good);
    let mut stops = 0;
    for pause_ms in [1500, 1200, 1000] {
        let hub = d.spawn();
        std::thread::sleep(Duration::from_millis(pause_ms));
        let finished = d.path("inbox/done/big.jsonl").exists();
        let started = std::time::Instant::now();
        terminate(hub); // asserts a clean exit
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "shutdown took {:?}",
            started.elapsed()
        );
        if finished {
            break;
        }
        stops += 1;
    }
    let hub = d.spawn();
    wait_until(Duration::from_secs(180), "the file to be finished", || {
        d.path("inbox/done/big.jsonl").exists()
    });
    terminate(hub);
    let records = read(&brokers, &topic, true);
    let distinct: BTreeSet<String> = records.iter().map(|r| r.key_str()).collect();
    assert!(stops >= 1, "the hub finished before it could be stopped");
    assert_eq!(
        distinct,
        urban_keys(&good).into_iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        records.len(),
        distinct.len(),
        "after {stops} SIGTERM(s), not one duplicate"
    );
}

/// With `schema_registry` set to Apicurio Registry's Confluent-compatible
/// API, the hub registers the canonical schema under `<topic>-value` and
/// writes the Confluent wire format with the registry's id, which a reader
/// resolves at the registry — this test's own, and confluent-kafka's
/// Python consumer (`scripts/registry_read.py`).
#[test]
fn with_a_schema_registry_records_use_the_confluent_wire_format() {
    let brokers = brokers();
    let registry = registry();
    let topic = unique("canonical.urban");
    let dlq = unique("dlq.urban");
    let d = TestDeployment::with_kafka(
        &brokers,
        &format!("schema_registry = \"{registry}\""),
        &file_pipeline(&topic, &dlq, 100, 2, 1 << 20),
    );
    let good = generated_cases(50, 23);
    ingest_few(&d, &good);

    let subjects = get_json(&format!("{registry}/subjects"));
    let subject = format!("{topic}-value");
    assert!(
        subjects
            .as_array()
            .unwrap()
            .iter()
            .any(|s| *s == subject.as_str()),
        "{subject} registered: {subjects}"
    );
    let latest = get_json(&format!("{registry}/subjects/{subject}/versions/latest"));
    let records = read(&brokers, &topic, true);
    assert_eq!(records.len(), 50);
    for r in records {
        let payload = r.payload.clone().unwrap();
        assert_eq!(payload[0], 0, "magic byte");
        let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());
        assert_eq!(latest["id"], id, "the registry's id for the subject");
        let registered = get_json(&format!("{registry}/schemas/ids/{id}"));
        let schema =
            apache_avro::Schema::parse_str(registered["schema"].as_str().unwrap()).unwrap();
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut &payload[5..])
            .unwrap();
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("a record")
        };
        assert_eq!(fields[0].1, apache_avro::types::Value::String(r.key_str()));
        assert_eq!(r.headers["content-type"], "application/vnd.confluent.avro");
    }
    // An independent consumer — confluent-kafka's AvroDeserializer, the
    // schema fetched from Apicurio by the id in each record — reads them
    // all, and each record's id is its key.
    let decoded = registry_read(&brokers, &registry, &topic, "50");
    assert_eq!(decoded.len(), 50);
    assert!(
        decoded
            .iter()
            .all(|r| r["id"] == r["key"] && r["id"].is_string()),
        "{decoded:?}"
    );
}

/// The shared `Party` record is one subject of its own in Apicurio
/// Registry, which the grid events' schema references instead of inlining;
/// an independent reader (confluent-kafka's AvroDeserializer) resolves the
/// reference and reads every record with its party, and `duijie check
/// --registry` judges the referencing subject (resolved) and `Party`'s.
#[test]
fn the_shared_party_record_is_one_subject_that_schemas_reference() {
    let brokers = brokers();
    let registry = registry();
    let sandbox = start_sandbox(duijie_sandbox::SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 40,
            changes_per_sec: 0,
            ..Default::default()
        },
        bad_rate: 0.0,
        ..duijie_sandbox::SandboxConfig::default()
    });
    let topic = unique("canonical.grid");
    let d = TestDeployment::with_kafka(
        &brokers,
        &format!("schema_registry = \"{registry}\""),
        &grid_pipeline(&sandbox, &topic),
    );
    let hub = d.spawn();
    wait_until(Duration::from_secs(60), "the 40 grid events", || {
        read(&brokers, &topic, true).len() >= 40
    });
    terminate(hub);
    let party = "duijie.canonical.Party";
    let subjects = get_json(&format!("{registry}/subjects"));
    assert!(
        subjects.as_array().unwrap().iter().any(|s| *s == party),
        "{party} is a subject of its own: {subjects}"
    );
    let held = get_json(&format!(
        "{registry}/subjects/{topic}-value/versions/latest"
    ));
    let references = held["references"].as_array().expect("references kept");
    assert_eq!(references.len(), 1, "{held}");
    assert_eq!(references[0]["name"], party);
    assert_eq!(references[0]["subject"], party);
    let party_version = get_json(&format!(
        "{registry}/subjects/{party}/versions/{}",
        references[0]["version"]
    ));
    assert!(
        party_version["schema"]
            .as_str()
            .unwrap()
            .contains("credit_code"),
        "the referenced version is Party's: {party_version}"
    );
    let written = held["schema"].as_str().unwrap();
    assert!(
        written.contains(party) && !written.contains("credit_code"),
        "the grid schema names Party, not a copy of it: {written}"
    );
    // The independent reader resolves the reference through Apicurio.
    let decoded = registry_read(&brokers, &registry, &topic, "40");
    assert_eq!(decoded.len(), 40);
    assert!(decoded.iter().all(|r| r["id"] == r["key"]), "{decoded:?}");
    assert!(
        decoded.iter().any(|r| r["party"].is_string()),
        "parties read through the reference: {decoded:?}"
    );
    // The deployment as it is is compatible with what it registered.
    let check = || d.check_registry(&registry);
    let (passed, said) = check();
    assert!(passed, "{said}");
    // A Party version ours cannot read (a flag written as text) is found
    // on Party's own subject, however many schemas reference it.
    let changed = std::fs::read_to_string(root().join("schemas/party.avsc"))
        .unwrap()
        .replace(
            r#""name": "credit_code_valid", "type": ["null", "boolean"]"#,
            r#""name": "credit_code_valid", "type": ["null", "string"]"#,
        );
    assert!(changed.contains(r#"["null", "string"], "default": null, "doc": "Null without"#));
    register_schema(&registry, party, &changed);
    let bad = get_json(&format!("{registry}/subjects/{party}/versions/latest"))["version"].clone();
    let (passed, said) = check();
    // Party's subject is shared by every test that registers it: the
    // version ours cannot read goes again before anything is asserted.
    block_on(async {
        let client = reqwest::Client::new();
        for permanent in ["false", "true"] {
            let answer = client
                .delete(format!(
                    "{registry}/subjects/{party}/versions/{bad}?permanent={permanent}"
                ))
                .send()
                .await
                .unwrap();
            assert!(
                answer.status().is_success(),
                "{}",
                answer.text().await.unwrap()
            );
        }
    });
    assert!(!passed, "a Party the deployment cannot read passed: {said}");
    assert!(
        said.contains(&format!("subject `{party}`")) && said.contains("credit_code_valid"),
        "{said}"
    );
}

/// `subject_strategy = "topic_record_name"`: the schema is registered
/// under `<topic>-<record full name>` (not `<topic>-value`), and the
/// records carry that subject's id; `duijie check --registry` judges the
/// same subject.
#[test]
fn the_topic_record_name_strategy_registers_under_topic_and_record() {
    let brokers = brokers();
    let registry = registry();
    let topic = unique("canonical.urban");
    let d = TestDeployment::with_kafka(
        &brokers,
        &format!("schema_registry = \"{registry}\"\nsubject_strategy = \"topic_record_name\""),
        &file_pipeline(&topic, &unique("dlq.urban"), 100, 2, 1 << 20),
    );
    ingest_few(&d, &generated_cases(5, 41));
    let subjects = get_json(&format!("{registry}/subjects"));
    let subject = format!("{topic}-duijie.canonical.UrbanCase");
    let named = |s: &str| subjects.as_array().unwrap().iter().any(|v| v == s);
    assert!(named(&subject), "{subject} in {subjects}");
    assert!(!named(&format!("{topic}-value")), "{subjects}");
    let latest = get_json(&format!("{registry}/subjects/{subject}/versions/latest"));
    let records = read(&brokers, &topic, true);
    assert_eq!(records.len(), 5);
    for r in records {
        let payload = r.payload.unwrap();
        assert_eq!(
            u64::from(u32::from_be_bytes(payload[1..5].try_into().unwrap())),
            latest["id"].as_u64().unwrap()
        );
    }
    let (passed, said) = d.check_registry(&registry);
    assert!(passed, "{said}");
}

/// `duijie check --registry`, against Apicurio Registry: a subject whose
/// latest version lacks fields the deployment's schema requires (no
/// default) is refused before deploy under BACKWARD, naming the pipeline,
/// the subject, the version and the field; a subject whose version lacks
/// only an optional field passes, the hub registers its schema as the next
/// version, and a reader holding the old version still reads the records.
#[test]
fn check_registry_gates_an_incompatible_schema_and_a_compatible_one_is_a_new_version_old_readers_read()
 {
    let brokers = brokers();
    let registry = registry();
    let urban = schemas().get("duijie.canonical.UrbanCase").unwrap();
    let current: serde_json::Value = serde_json::from_str(&urban.json).unwrap();
    // A version with one field less: `without` drops the named field.
    let without = |field: &str| {
        let mut v = current.clone();
        v["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != field);
        v.to_string()
    };
    let check = |d: &TestDeployment| d.check_registry(&registry);

    // Incompatible: the registry's version has no `source_system`, which
    // the deployment's schema requires without a default.
    let topic = unique("canonical.urban");
    register_schema(
        &registry,
        &format!("{topic}-value"),
        &without("source_system"),
    );
    let d = TestDeployment::with_kafka(
        &brokers,
        &format!("schema_registry = \"{registry}\""),
        &file_pipeline(&topic, &unique("dlq.urban"), 100, 2, 1 << 20),
    );
    let (ok, stderr) = check(&d);
    assert!(!ok, "check refuses it");
    assert!(
        stderr.contains("pipelines.urban_files")
            && stderr.contains(&format!("{topic}-value"))
            && stderr.contains("BACKWARD")
            && stderr.contains("version 1")
            && stderr.contains("source_system"),
        "{stderr}"
    );

    // Compatible: the registry's version lacks an optional field.
    let topic = unique("canonical.urban");
    let subject = format!("{topic}-value");
    let old = without("category_name");
    register_schema(&registry, &subject, &old);
    let d = TestDeployment::with_kafka(
        &brokers,
        &format!("schema_registry = \"{registry}\""),
        &file_pipeline(&topic, &unique("dlq.urban"), 100, 2, 1 << 20),
    );
    let (ok, stderr) = check(&d);
    assert!(ok, "a new optional field passes: {stderr}");
    ingest_few(&d, &generated_cases(20, 31));
    let versions = get_json(&format!("{registry}/subjects/{subject}/versions"));
    assert_eq!(
        versions,
        serde_json::json!([1, 2]),
        "registered as version 2"
    );
    let old = apache_avro::Schema::parse_str(&old).unwrap();
    let latest = get_json(&format!("{registry}/subjects/{subject}/versions/2"));
    let new = apache_avro::Schema::parse_str(latest["schema"].as_str().unwrap()).unwrap();
    let records = read(&brokers, &topic, true);
    assert_eq!(records.len(), 20);
    for r in records {
        let payload = r.payload.unwrap();
        assert_eq!(
            u32::from_be_bytes(payload[1..5].try_into().unwrap()),
            latest["id"].as_u64().unwrap() as u32
        );
        // The reader that holds version 1 reads what version 2 wrote.
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&new)
            .reader_schema(&old)
            .build()
            .unwrap()
            .read_value(&mut &payload[5..])
            .unwrap();
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("a record")
        };
        assert!(fields.iter().all(|(name, _)| name != "category_name"));
        assert_eq!(
            fields[0].1,
            apache_avro::types::Value::String(
                r.key.map(|k| String::from_utf8(k).unwrap()).unwrap()
            )
        );
    }
}

/// A 21 MB line with `max_record_bytes = 1048576`: its dead letter must fit
/// the broker's message size (a truncated 1 MiB payload plus the letter
/// did not, and the pipeline failed on it forever). It lands cut to fit,
/// with its full length, and the records behind it land too.
#[test]
fn an_oversize_record_is_dead_lettered_cut_to_fit_and_the_pipeline_moves_on() {
    let brokers = brokers();
    let topic = unique("canonical.urban");
    let dlq = unique("dlq.urban");
    let d = TestDeployment::new(&brokers, &file_pipeline(&topic, &dlq, 200, 4, 1_048_576));
    let good = generated_cases(300, 21);
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let huge = format!(
        r#"{{"taskNum":"HUGE","eventDesc":"{}"}}"#,
        "x".repeat(21_000_000)
    );
    lines.insert(150, huge);
    drop_file(&d, "cases.jsonl", &(lines.join("\n") + "\n"));
    let hub = d.spawn();
    wait_until(Duration::from_secs(90), "the file to be finished", || {
        d.path("inbox/done/cases.jsonl").exists()
    });
    terminate(hub);
    assert_eq!(
        read(&brokers, &topic, false).len(),
        300,
        "the records behind the huge one"
    );
    let letters: Vec<DeadLetter> = read(&brokers, &dlq, false)
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert!(l.raw_truncated, "{}", l.reason);
    assert!(
        l.reason.contains("larger than max_record_bytes"),
        "{}",
        l.reason
    );
    assert!(l.raw.starts_with(r#"{"taskNum":"HUGE""#));
    assert!(
        l.raw.len() < 1_000_000,
        "the dead letter's payload is {} bytes",
        l.raw.len()
    );
    assert_eq!(
        l.raw_length,
        Some(21_000_000 + r#"{"taskNum":"HUGE","eventDesc":""}"#.len() as u64)
    );
}
