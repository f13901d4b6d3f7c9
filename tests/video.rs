//! The 平安宜昌 video alarms, over MQTT through Mosquitto and into Apache
//! Kafka: every alarm ends on its topic or in the DLQ, a broker restart and
//! a SIGKILL of the hub lose nothing, and duplicates collapse on their key.

use crate::common::*;
use duijie::bus::DeadLetter;
use duijie_sandbox::video::{
    self, Broker, Counters, MessageKind, Mosquitto, VideoFaults, wait_for_subscriptions,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const USER: &str = "duijie-video";
const PASSWORD: &str = "video-test-password-2026";

/// A Mosquitto of this test's own (so that it can restart it), and the
/// deployment of the video pipeline subscribing to it.
fn setup(brokers: &str) -> (Mosquitto, tempfile::TempDir, TestDeployment, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path(), free_port(), USER, PASSWORD).unwrap();
    let topic = unique("canonical.video_alarm");
    let leads = unique("leads.enforcement");
    let pipelines = format!(
        r#"
[pipelines.video_alarms]
system = "pingan_video"
mapping = "video_alarm"
topic = "{topic}"
partitions = 3
dlq_topic = "{topic}.dlq"
retry = {{ initial = "200ms", max = "2s" }}

[pipelines.video_alarms.source]
kind = "mqtt"
broker = "{broker}"
client_id = "{client}"
topics = ["pingan/yichang/+/alarm"]
username = "{USER}"
password = "{PASSWORD}"
max_payload_bytes = 262144

[pipelines.video_alarms.lead]
topic = "{leads}"
kind = "VIDEO_ALARM"
select = {{ field = "confidence", at_least = 0.8 }}
power = {{ item = "power_item", name = "power_item_name", team = "power_team" }}
jurisdiction = "grid_code"
routes = {{ "420502" = "高新区执法大队", "420502001" = "东山中队", "420502002" = "白洋中队", "420502003" = "东苑中队", "420506" = "点军中队" }}
fields = ["alarm_id", "event_type", "confidence", "grid_code"]
"#,
        broker = mosquitto.address(),
        client = unique("duijie-video"),
    );
    let deployment = TestDeployment::new(brokers, &pipelines);
    (mosquitto, dir, deployment, topic, leads)
}

fn broker(m: &Mosquitto) -> Broker {
    Broker {
        address: m.address(),
        username: Some(USER.into()),
        password: Some(PASSWORD.into()),
    }
}

/// Starts the hub and returns once its persistent session is subscribed
/// (MQTT keeps nothing for a subscriber that never subscribed).
fn spawn_subscribed(d: &TestDeployment, m: &Mosquitto) -> std::process::Child {
    let hub = d.spawn();
    block_on(wait_for_subscriptions(
        &broker(m),
        1,
        Duration::from_secs(60),
    ))
    .unwrap();
    hub
}

/// Alarm numbers no other run used.
fn first_number() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros() % 1_000_000_000_000).unwrap() * 10
}

fn publish(m: &Mosquitto, messages: &[video::Message], counters: &Counters) {
    block_on(video::publish(
        &broker(m),
        &unique("platform"),
        messages,
        counters,
        Duration::from_secs(60),
    ))
    .unwrap();
}

#[test]
fn every_alarm_lands_on_its_topic_or_in_the_dlq_through_a_broker_restart_and_copies_share_a_key() {
    let brokers = brokers();
    let (mut mosquitto, _dir, d, topic, leads_topic) = setup(&brokers);
    let hub = spawn_subscribed(&d, &mosquitto);
    let faults = VideoFaults {
        duplicate_rate: 0.1,
        malformed_rate: 0.04,
        oversized_rate: 0.03,
        oversized_bytes: 400_000,
    };
    let messages = video::script(first_number(), 300, 7, &faults);
    let kinds = |k: MessageKind| messages.iter().filter(|m| m.kind == k).count();
    assert!(
        kinds(MessageKind::Duplicate) > 5
            && kinds(MessageKind::Malformed) > 2
            && kinds(MessageKind::Oversized) > 2,
        "the script must hold every fault to prove anything"
    );
    let counters = Counters::default();
    let (before, after) = messages.split_at(messages.len() / 2);
    publish(&mosquitto, before, &counters);
    // Mid-stream, the broker restarts; the hub's session survives it.
    mosquitto.restart().unwrap();
    publish(&mosquitto, after, &counters);

    let alarms: BTreeSet<String> = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Alarm)
        .map(|m| format!("video:{}", m.alarm_id))
        .collect();
    let mut on_topic = Vec::new();
    wait_until(Duration::from_secs(120), "every alarm on its topic", || {
        on_topic = decoded(&brokers, &topic);
        on_topic
            .iter()
            .map(|(k, _)| k)
            .collect::<BTreeSet<_>>()
            .len()
            >= alarms.len()
    });
    let keys: BTreeSet<String> = on_topic.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, alarms, "exactly the alarms, each under its own key");
    // Copies collapse: a duplicated alarm's records share its key and its
    // content.
    let mut by_key: BTreeMap<&str, Vec<&serde_json::Value>> = BTreeMap::new();
    for (k, v) in &on_topic {
        by_key.entry(k).or_default().push(v);
    }
    for m in messages.iter().filter(|m| m.kind == MessageKind::Duplicate) {
        let copies = &by_key[format!("video:{}", m.alarm_id).as_str()];
        assert!(copies.len() >= 2, "{}: a copy went missing", m.alarm_id);
        assert!(copies.windows(2).all(|w| w[0] == w[1]), "{}", m.alarm_id);
    }

    // Every message that is not an alarm is a dead letter, with its raw
    // payload (the head of an oversized one) and its reason.
    let letters: Vec<DeadLetter> = read(&brokers, &format!("{topic}.dlq"), false)
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap())
        .collect();
    for m in messages.iter().filter(|m| m.kind == MessageKind::Malformed) {
        let text = String::from_utf8(m.payload.clone()).unwrap();
        assert!(
            letters.iter().any(|l| l.rule == "parse" && l.raw == text),
            "a malformed message is not in the DLQ: {text}"
        );
    }
    let oversized: Vec<&DeadLetter> = letters.iter().filter(|l| l.rule == "connector").collect();
    for m in messages.iter().filter(|m| m.kind == MessageKind::Oversized) {
        assert!(
            oversized.iter().any(|l| l.raw_truncated
                && l.raw_length == Some(m.payload.len() as u64)
                && l.raw.contains(&m.alarm_id)
                && l.reason.contains("max_payload_bytes")),
            "an oversized message is not in the DLQ: {}",
            m.alarm_id
        );
    }
    assert!(
        letters
            .iter()
            .all(|l| l.rule == "parse" || l.rule == "connector"),
        "only the broken messages are dead letters: {:?}",
        letters.iter().map(|l| &l.reason).collect::<Vec<_>>()
    );

    // Every confident alarm is a lead. Those of a type on the bureau's power
    // list (权责清单) go to the team that exercises its item, with the squad
    // of their grid beside it; the others (a crowd, smoke) are written as
    // outside the bureau's powers, with no team: shown, not dispatched.
    let expected: BTreeMap<String, (Option<&str>, &str, bool)> = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Alarm && m.confidence >= 0.8)
        .map(|m| {
            let area = match &m.grid_code[..9] {
                "420502001" => "东山中队",
                "420502002" => "白洋中队",
                "420502003" => "东苑中队",
                _ => "点军中队",
            };
            // The alarms are of today: the muck-truck item (taken on on
            // 2026-07-01) is in force.
            let team = match m.event {
                "1004" => Some("渣土运输执法中队"),
                e if e.starts_with("100") => Some("市容环境执法大队"),
                _ => None,
            };
            let key = format!("lead:video_alarms:video:{}", m.alarm_id);
            (key, (team, area, team.is_none()))
        })
        .collect();
    assert!(expected.values().any(|(t, _, _)| t.is_some()));
    assert!(expected.values().any(|(_, _, outside)| *outside));
    let leads: BTreeMap<String, serde_json::Value> = read(&brokers, &leads_topic, false)
        .iter()
        .map(|r| {
            (
                r.key_str(),
                serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap(),
            )
        })
        .collect();
    let found: BTreeMap<String, (Option<&str>, &str, bool)> = leads
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (
                    v["team"].as_str(),
                    v["area_team"].as_str().unwrap(),
                    v["outside_powers"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(found, expected);
    terminate(hub);
}

#[test]
fn a_hub_killed_mid_stream_loses_no_alarm_its_session_keeps_them() {
    let brokers = brokers();
    let (mosquitto, _dir, d, topic, _) = setup(&brokers);
    let hub = spawn_subscribed(&d, &mosquitto);
    let b = broker(&mosquitto);
    let messages = video::script(first_number(), 600, 11, &VideoFaults::none());
    let alarms: BTreeSet<String> = messages
        .iter()
        .map(|m| format!("video:{}", m.alarm_id))
        .collect();
    // The platform keeps publishing while the hub dies and comes back: a
    // third of the alarms before the kill, the rest once the hub is dead,
    // so that the kill always lands mid-stream however slow the machine.
    let (killed_tx, killed) = std::sync::mpsc::channel::<()>();
    let publisher = {
        let messages = messages.clone();
        let b = b.clone();
        std::thread::spawn(move || {
            let counters = Counters::default();
            // About 50 alarms a second.
            for (i, chunk) in messages.chunks(10).enumerate() {
                if i == 20 {
                    killed.recv().unwrap();
                }
                block_on(video::publish(
                    &b,
                    "platform-kill-test",
                    chunk,
                    &counters,
                    Duration::from_secs(60),
                ))
                .unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    wait_until(Duration::from_secs(60), "a first part on the topic", || {
        read(&brokers, &topic, false).len() >= 100
    });
    kill(hub);
    killed_tx.send(()).unwrap();
    let on_topic_at_kill = read(&brokers, &topic, false).len();
    assert!(
        on_topic_at_kill < alarms.len(),
        "the hub must die mid-stream for this to prove anything"
    );
    let hub = d.spawn();
    publisher.join().unwrap();
    wait_until(Duration::from_secs(120), "every alarm on the topic", || {
        read(&brokers, &topic, false)
            .iter()
            .map(|r| r.key_str())
            .collect::<BTreeSet<_>>()
            == alarms
    });
    terminate(hub);
}
