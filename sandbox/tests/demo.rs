//! The demo as the README runs it (`duijie-sandbox demo`).

use duijie_connectors::registry::Drive;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// One demo at a time: they share the exchange folders and the log file.
static ONE_DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sandbox(args: &[&str]) -> (i32, String, String) {
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_duijie-sandbox"))
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

/// The README's main job: `duijie-sandbox demo` on the embedded broker. Every
/// system delivers, every record fetched is on its topic or dead-lettered,
/// and the desk tracks the twenty sandbox referrals. And what left the hub
/// — every request the receivers got (headers and body), the pull feed,
/// receipts, alerts and push dead letters — holds no natural person's full
/// resident ID number: no destination of the demo is allowed one.
#[test]
fn the_demo_runs_every_system_and_accounts_for_every_record() {
    let capture = tempfile::NamedTempFile::new().unwrap();
    let capture_path = capture.path().display().to_string();
    let deployment =
        duijie::config::Deployment::load(&root().join("pipelines/yichang.toml")).unwrap();
    // 24 s: the approval batch lands in its exchange directory just after
    // the hub starts, is seen at one five-second poll and read at the next
    // (the file drop's stable-size check); a hub slow to start after the
    // rest of the suite once left it unread at 18 s.
    let (code, stdout, stderr) = sandbox(&["demo", "--seconds", "24", "--capture", &capture_path]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The report is the terminal's: the hub's log went to the file the
    // report names, not between the report's lines.
    let log = root().join("var/duijie-demo.log");
    assert!(stdout.contains("log:      var/duijie-demo.log"), "{stdout}");
    assert!(
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0),
        "no log in {}",
        log.display()
    );
    assert!(
        !stderr.contains(" INFO "),
        "log lines on the terminal: {stderr}"
    );
    // "Where to look next" runs as printed from the repository's root.
    let next = stdout
        .split("Where to look next")
        .nth(1)
        .expect("where to look next");
    let check = next
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(" check"))
        .expect("the check command");
    let out = Command::new("sh")
        .args(["-c", check])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{check}` as printed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let captured = std::fs::read_to_string(capture.path()).unwrap();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut people_masked = 0;
    for line in captured.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *kinds
            .entry(v["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
        people_masked += line.matches("********").count();
        // Any 18-character run that is a valid resident ID number.
        let b = line.as_bytes();
        for i in 0..b.len().saturating_sub(17) {
            let run = &b[i..i + 18];
            if (i == 0 || !b[i - 1].is_ascii_digit())
                && run[..17].iter().all(u8::is_ascii_digit)
                && (run[17].is_ascii_digit() || run[17] == b'X')
                && b.get(i + 18).is_none_or(|c| !c.is_ascii_digit())
            {
                let id = std::str::from_utf8(run).unwrap();
                assert!(
                    !duijie::ident::check_resident_id(id).is_valid(),
                    "a full resident ID number left the hub: {id} in {line}"
                );
            }
        }
    }
    assert!(kinds.get("request").is_some_and(|n| *n > 100), "{kinds:?}");
    assert!(
        kinds.contains_key("receipt") && kinds.contains_key("pull"),
        "{kinds:?}"
    );
    assert!(
        people_masked > 0,
        "no masked natural person in the capture: the scan proves nothing"
    );
    // The shipped deployment runs the gm suite: what left the hub carries
    // HMAC-SM3 and the hub's SM2 signature.
    assert!(
        captured.contains("duijie-hmac-sm3/2"),
        "no HMAC-SM3 in the capture"
    );
    assert!(
        captured.to_lowercase().contains("x-signature-sm2"),
        "no SM2 signature in the capture"
    );
    assert!(
        captured.to_lowercase().contains("x-body-encryption"),
        "no encrypted body in the capture"
    );
    let mut pipelines = 0;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 13
            && words[1] == "fetched"
            && words[3] == "delivered"
            && words[5] == "dead-lettered"
        {
            pipelines += 1;
            let n = |i: usize| words[i].parse::<u64>().unwrap();
            assert_eq!(
                n(2),
                n(4) + n(6),
                "{line}: a fetched record is neither on its topic nor dead-lettered"
            );
            // Read back from the bus, not only counted by the hub.
            assert_eq!(words[7..9], ["on", "topic"], "{line}");
            assert_eq!(words[10..12], ["in", "DLQ"], "{line}");
            assert_eq!(
                (n(9), n(12)),
                (n(4), n(6)),
                "{line}: the topics hold other counts than the broker acknowledged"
            );
            // A webhook is pushed to only now and then (urgent events):
            // it may see none in a short run. Every other source flows.
            let served = deployment
                .pipeline(words[0])
                .is_some_and(|p| p.source.drive() == Drive::Served);
            if !served {
                assert!(n(2) > 0, "{line}: nothing flowed");
            }
        }
    }
    assert_eq!(pipelines, deployment.pipelines.len(), "{stdout}");
    // The systems listed are the deployment's.
    let systems: std::collections::BTreeSet<&str> = deployment
        .pipelines
        .iter()
        .map(|p| p.system.as_str())
        .collect();
    assert!(
        stdout.contains(&format!(
            "systems:  {} docked by the deployment",
            systems.len()
        )),
        "{stdout}"
    );
    // Every push settled has one receipt on the bus; every refusal or
    // failure a dead letter.
    let mut pushes = 0;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // Held decisions (待定级) have their receipt too.
        if words.len() >= 19 && words[1] == "delivered" && words[12] == "receipts" {
            pushes += 1;
            let n = |i: usize| words[i].parse::<u64>().unwrap();
            if words[0] == "feed_emergency" {
                // Encrypted to the bureau's key, opened by its receiver.
                assert!(n(2) > 0, "{line}: nothing delivered encrypted");
            }
            if words[0] == "supervision_acts" {
                // Every decision reaches the 司法行政部门's platform, which
                // refuses an act without two certified officers or with a
                // full ID number: none refused.
                assert!(n(2) > 0, "{line}: no act reached the supervision platform");
                assert_eq!(n(4), 0, "{line}: the supervision platform refused acts");
            }
            if words[0] == "supervision_rates" {
                // The month's rates per power-list item (行政执法监督).
                assert!(
                    n(2) > 0,
                    "{line}: no rates reached the supervision platform"
                );
                assert_eq!(n(4), 0, "{line}: the supervision platform refused rates");
            }
            assert_eq!(n(13), n(2) + n(4) + n(6) + n(9) + n(11), "{line}: receipts");
            assert_eq!(n(15), 0, "{line}: a record receipted twice");
            assert_eq!(n(18), n(4) + n(6), "{line}: dead letters");
        }
    }
    assert!(pushes >= 8, "{stdout}");
    assert!(stdout.contains("supervision_acts"), "{stdout}");
    assert!(stdout.contains("supervision_rates"), "{stdout}");
    assert!(
        stdout.contains("Two-law desk (canonical.referral_event): 20 referral(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("feed_emergency") && stdout.contains("credit_penalties"),
        "{stdout}"
    );
    // The entity library's line: the sandbox's companies are seen by
    // several systems under one credit code each.
    let library = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("entity library:"))
        .unwrap_or_else(|| panic!("no entity library line: {stdout}"));
    let words: Vec<&str> = library.split_whitespace().collect();
    let n = |i: usize| words[i].parse::<u64>().unwrap();
    assert_eq!((words[3], words[4]), ("entities", "indexed"), "{library}");
    assert!(n(2) > 0 && n(8) > 0 && n(8) <= n(2), "{library}");
}

/// The demo on Apache Kafka with Apicurio Registry (`--brokers`,
/// `--registry`, what `scripts/test.sh` started): every canonical topic it
/// writes is read whole by an independent consumer — confluent-kafka's
/// AvroDeserializer, each record's schema fetched from Apicurio by the id
/// in the record, `Party` through its reference — except the topics sealed
/// at rest (`[hub.encryption]`), which no reader without the data key can
/// read, by design.
#[test]
fn every_canonical_topic_of_a_demo_on_kafka_and_apicurio_is_read_by_an_independent_consumer() {
    let env = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the tests with scripts/test.sh, which starts Apache Kafka and Apicurio Registry")
        })
    };
    let (brokers, registry) = (env("DUIJIE_TEST_BROKERS"), env("DUIJIE_TEST_REGISTRY"));
    let python = std::env::var("DUIJIE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let deployment =
        duijie::config::Deployment::load(&root().join("pipelines/yichang.toml")).unwrap();
    let (code, stdout, stderr) = sandbox(&[
        "demo",
        "--brokers",
        &brokers,
        "--registry",
        &registry,
        "--seconds",
        "24",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let sealed: std::collections::BTreeSet<String> = deployment
        .hub
        .encryption
        .as_ref()
        .map(|e| e.topics.iter().cloned().collect())
        .unwrap_or_default();
    let topics: std::collections::BTreeSet<&str> = deployment
        .pipelines
        .iter()
        .map(|p| p.topic.as_str())
        .filter(|t| t.starts_with("canonical.") && !sealed.contains(*t))
        .collect();
    assert!(topics.len() >= 6, "{topics:?}");
    let mut parties = 0;
    for topic in topics {
        let out = Command::new(&python)
            .arg(root().join("scripts/registry_read.py"))
            .args([brokers.as_str(), registry.as_str(), topic, "all", "120"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decoded: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!decoded.is_empty(), "{topic}: nothing written in the demo");
        assert!(
            decoded.iter().all(|r| r["id"] == r["key"]),
            "{topic}: {decoded:?}"
        );
        parties += decoded.iter().filter(|r| r["party"].is_string()).count();
    }
    assert!(parties > 0, "no party read through the Party reference");
}
