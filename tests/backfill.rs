//! `duijie backfill`: a time range of a front-end database's history,
//! re-read at a bounded rate, interrupted, and resumed by running the same
//! command again — every row of the range once, nothing before it.

use crate::common::*;
use duijie_sandbox::safety;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_backfill_reads_its_range_and_resumes_after_an_interruption() {
    let table = format!("bf_{}", unique("t").replace('-', "_"));
    let pg = "postgres://postgres@127.0.0.1:5432/test";
    let rows = 3_000i64;
    block_on(async {
        safety::prepare(pg, &table).await.unwrap();
        safety::seed(pg, &table, 1, rows as usize, 7).await.unwrap();
        // One row a minute from New Year's Day 2026, 00:00 on.
        let pool = sqlx::PgPool::connect(pg).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET updated_at = TIMESTAMP '2026-01-01 00:00:00' + (id - 1) * INTERVAL '1 minute'"
        )))
        .execute(&pool)
        .await
        .unwrap();
    });
    let topic = unique("canonical.hazard");
    let d = TestDeployment::new(
        &brokers(),
        &format!(
            r#"[pipelines.hazard_pg]
system = "safety"
mapping = "safety_hazard"
topic = "{topic}"
schedule = "*/5 * * * * *"
batch_size = 100

[pipelines.hazard_pg.source]
kind = "sql_poll"
url = "{pg}"
table = "v_{table}"
page_size = 50
"#
        ),
    );
    let backfill = |rate: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_duijie"));
        c.args(["backfill", "--config"])
            .arg(&d.file)
            .args([
                "--pipeline",
                "hazard_pg",
                "--from",
                "2026-01-01 12:00",
                "--to",
                "2026-01-02 12:00",
            ])
            .env("DUIJIE_KAFKA_BROKERS", &d.brokers)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(r) = rate {
            c.args(["--rate", r]);
        }
        c.spawn().unwrap()
    };

    // Slowly (100 rows a second: the 1,441 take 14 s), then interrupted
    // (Ctrl-C) once under way.
    let child = backfill(Some("100"));
    wait_until(Duration::from_secs(30), "the backfill under way", || {
        !read(&d.brokers, &topic, false).is_empty()
    });
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("interrupted"), "{printed}");
    let first = read(&d.brokers, &topic, false).len();
    assert!(
        first > 0 && first < 1441,
        "{first} rows before the interruption"
    );

    // The same command resumes and finishes.
    let out = backfill(None).wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("done"), "{printed}");
    assert!(
        printed.contains("at 2026-01-02 12:"),
        "the backfill does not say where it stopped: {printed}"
    );

    // Rows 721..=2161 are 12:00 on the 1st to 12:00 on the 2nd.
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for r in read(&d.brokers, &topic, false) {
        let id: i64 = r.key_str().trim_start_matches("hazard:").parse().unwrap();
        *seen.entry(id).or_default() += 1;
    }
    let missing: Vec<i64> = (721..=2161).filter(|id| !seen.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "missing rows: {:?}…",
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        seen.keys().next(),
        Some(&721),
        "a row before --from was read"
    );
    let past = seen.keys().filter(|id| **id > 2161).count();
    assert!(past < 50, "{past} rows past --to (at most the last page's)");
    let twice: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(twice, 0, "the resumed backfill read rows again");
}
