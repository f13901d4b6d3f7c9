//! Hot reload: a bad configuration is refused and the running one keeps
//! working; a good one swaps only the pipelines that changed, starts the
//! added ones, and loses nothing in flight.

use crate::common::*;
use std::time::Duration;

fn pipeline(name: &str, topic: &str, batch_size: &str) -> String {
    format!(
        r#"
[pipelines.{name}]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
schedule = "* * * * * *"
batch_size = {batch_size}

[pipelines.{name}.source]
kind = "file_drop"
dir = "{name}"
layout = "jsonl"
settle = "0s"
"#
    )
}

fn drop_file(d: &TestDeployment, dir: &str, name: &str, n: usize, seed: u64) -> Vec<String> {
    let text = generated_cases(n, seed)
        .replace("\"taskNum\":\"YC", &format!("\"taskNum\":\"{dir}{seed}-"));
    std::fs::create_dir_all(d.path(dir)).unwrap();
    let part = d.path(&format!("{dir}/{name}.part"));
    std::fs::write(&part, &text).unwrap();
    std::fs::rename(&part, d.path(&format!("{dir}/{name}.jsonl"))).unwrap();
    urban_keys(&text)
}

#[test]
fn a_reload_swaps_what_changed_and_refuses_what_is_broken() {
    let port = free_port();
    let (ta, tb, tb2, tc) = (unique("t.a"), unique("t.b"), unique("t.b2"), unique("t.c"));
    let http = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n");
    let d = TestDeployment::new(
        &brokers(),
        &format!(
            "{http}{}{}",
            pipeline("a", &ta, "100"),
            pipeline("b", &tb, "100")
        ),
    );
    let original = std::fs::read_to_string(&d.file).unwrap();
    let hub = d.spawn();
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr);
    let mut a_keys = drop_file(&d, "a", "one", 300, 1);
    drop_file(&d, "b", "one", 300, 2);
    wait_until(Duration::from_secs(60), "the first files", || {
        read(&d.brokers, &ta, false).len() == 300 && read(&d.brokers, &tb, false).len() == 300
    });

    // Broken: refused, and the running pipelines go on.
    std::fs::write(
        &d.file,
        original.replace(
            "batch_size = 100\n\n[pipelines.b.source]",
            "batch_size = \"many\"\n\n[pipelines.b.source]",
        ),
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "the broken file refused", || {
        metric_at(&addr, "duijie_reloads_total", "outcome=\"refused\"") == Some(1.0)
    });
    a_keys.extend(drop_file(&d, "a", "two", 200, 3));
    wait_until(Duration::from_secs(30), "pipeline a still running", || {
        read(&d.brokers, &ta, false).len() == 500
    });

    // Good: b moves to another topic, c is added, a is untouched; a file
    // arriving in a meanwhile is not lost.
    let good = format!(
        "{http}{}{}{}",
        pipeline("a", &ta, "100"),
        pipeline("b", &tb2, "100"),
        pipeline("c", &tc, "50")
    );
    let text = original.split("[http]").next().unwrap().to_owned() + &good;
    a_keys.extend(drop_file(&d, "a", "three", 2_000, 4));
    std::fs::write(&d.file, text).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &hub.id().to_string()])
        .status();
    wait_until(Duration::from_secs(30), "pipeline c running", || {
        get_json(&format!("http://{addr}/ready"))["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pipeline"] == "c" && p["state"] == "running")
    });
    // The file watcher and the SIGHUP may each reload the same good file
    // (the second finds it already applied); the broken one stays refused
    // once.
    let applied = metric_at(&addr, "duijie_reloads_total", "outcome=\"applied\"");
    assert!(
        matches!(applied, Some(n) if (1.0..=2.0).contains(&n)),
        "the good file is the one reload applied: {applied:?}"
    );
    assert_eq!(
        metric_at(&addr, "duijie_reloads_total", "outcome=\"refused\""),
        Some(1.0),
        "only the broken file refused"
    );
    let b_keys = drop_file(&d, "b", "two", 100, 5);
    let c_keys = drop_file(&d, "c", "one", 100, 6);
    wait_until(
        Duration::from_secs(60),
        "b on its new topic and c on its own",
        || read(&d.brokers, &tb2, false).len() == 100 && read(&d.brokers, &tc, false).len() == 100,
    );
    assert_eq!(
        read(&d.brokers, &tb, false).len(),
        300,
        "b wrote to its old topic after the swap"
    );
    let mut got_b: Vec<String> = read(&d.brokers, &tb2, false)
        .iter()
        .map(|r| r.key_str())
        .collect();
    let mut want_b = b_keys.clone();
    got_b.sort();
    want_b.sort();
    assert_eq!(got_b, want_b);
    assert_eq!(read(&d.brokers, &tc, false).len(), c_keys.len());
    wait_until(Duration::from_secs(60), "all of a", || {
        read(&d.brokers, &ta, false).len() >= a_keys.len()
    });
    let a_records = read(&d.brokers, &ta, false);
    assert_eq!(
        a_records.len(),
        a_keys.len(),
        "pipeline a lost or repeated records across the reloads"
    );

    let log = terminate(hub);
    assert!(log.contains("the new configuration is refused"), "{log}");
    assert!(
        log.contains("batch_size"),
        "the refusal does not say what is wrong: {log}"
    );
    assert!(
        log.contains("configuration reloaded")
            && log.contains("kept=1")
            && log.contains("swapped=1")
            && log.contains("added=1"),
        "{log}"
    );
    // Both reloads are in the operator audit, this hub's chain.
    let hub_name = std::fs::read_to_string(&d.file)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("name = \"")
                .map(|n| n.trim_end_matches('"').to_owned())
        })
        .unwrap();
    let reloads: Vec<(String, String)> = read(&d.brokers, "duijie.ops.audit", false)
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(r.payload.as_deref()?).ok())
        .filter(|v| {
            v["writer"]
                .as_str()
                .is_some_and(|w| w.starts_with(&format!("{hub_name}/")))
                && v["entry"]["command"] == "reload"
        })
        .map(|v| {
            (
                v["entry"]["outcome"].as_str().unwrap().to_owned(),
                v["entry"]["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        reloads
            .iter()
            .any(|(o, d)| o == "refused" && d.contains("batch_size")),
        "{reloads:?}"
    );
    assert!(reloads.iter().any(|(o, _)| o == "applied"), "{reloads:?}");
}

#[test]
fn a_push_pipeline_swapped_on_reload_delivers_what_the_old_one_could_not() {
    let brokers = brokers();
    let sandbox = start_sandbox(duijie_sandbox::SandboxConfig {
        grid: duijie_sandbox::grid::Settings {
            events: 60,
            ..Default::default()
        },
        change_limit: Some(0),
        bad_rate: 0.0,
        ..duijie_sandbox::SandboxConfig::default()
    });
    let (topic, dlq) = (unique("canonical.grid"), unique("dlq.street"));
    // The street office's address is wrong at first: nothing answers there.
    let wrong = format!("http://127.0.0.1:{}/dept/street/webhook", free_port());
    let addr = format!("127.0.0.1:{}", free_port());
    let right = format!("http://{sandbox}/dept/street/webhook");
    let d = TestDeployment::new(
        &brokers,
        &street_feed_config(
            &sandbox,
            &topic,
            &dlq,
            &wrong,
            &format!("[http]\nlisten = \"{addr}\"\n"),
        ),
    );
    let hub = d.spawn();
    wait_listening(&addr);
    wait_until(
        Duration::from_secs(60),
        "the grid events on the bus",
        || read(&brokers, &topic, true).len() >= 60,
    );
    let received = || {
        get_json(&format!("http://{sandbox}/dept/street/received"))["records"]
            .as_array()
            .unwrap()
            .clone()
    };
    // The hub has tried the wrong address, and failed, a few times.
    wait_until(
        Duration::from_secs(30),
        "attempts at the wrong address",
        || {
            metric_at(
                &addr,
                "duijie_delivery_retries_total",
                "delivery=\"street\"",
            )
            .is_some_and(|n| n >= 3.0)
        },
    );
    assert!(received().is_empty(), "delivered to a wrong address?");

    // The address corrected: the delivery is swapped mid-retry and the
    // new one delivers every event, each once; the grid pipeline is kept.
    let original = std::fs::read_to_string(&d.file).unwrap();
    std::fs::write(&d.file, original.replace(&wrong, &right)).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &hub.id().to_string()])
        .status();
    let events: std::collections::BTreeSet<String> = read(&brokers, &topic, true)
        .iter()
        .map(|r| r.key_str())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let ids: std::collections::BTreeSet<String> = received()
            .iter()
            .map(|r| r["record"]["id"].as_str().unwrap().to_owned())
            .collect();
        if ids == events {
            break;
        }
        if std::time::Instant::now() > deadline {
            let log = terminate(hub);
            panic!(
                "{} of {} events at the street office after the reload; hub log:\n{log}",
                ids.len(),
                events.len()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Settled: the group committed past every event, so what arrived is
    // all that will.
    wait_until(Duration::from_secs(60), "the street feed settled", || {
        d.feed_settled("street")
    });
    let log = terminate(hub);
    let records = received();
    let keys: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), records.len(), "an event delivered twice");
    assert_eq!(records.len(), events.len());
    assert!(
        read(&brokers, &dlq, true).is_empty(),
        "the old pipeline gave events up"
    );
    assert!(
        log.contains("delivery changed; swapping")
            && log.contains("kept=1")
            && log.contains("feeds_swapped=1"),
        "{log}"
    );
    assert!(
        !log.contains("take effect at the next restart"),
        "a delivery change reported as needing a restart: {log}"
    );
}
