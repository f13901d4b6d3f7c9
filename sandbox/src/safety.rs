//! Safety production (安全生产) simulator: the front-end database (前置机)
//! that the safety-production system keeps filled, PostgreSQL or MariaDB.
//!
//! A table `<name>` of hidden-danger records and a view `v_<name>` over it
//! are created; rows are seeded, then change state over time (ordered,
//! notified, rectified, accepted), each change stamping `updated_at`.

use super::people;
use sqlx::AssertSqlSafe;
use std::time::Duration;

/// The safety front ends' settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Front-end databases (PostgreSQL, MariaDB URLs) to fill and keep
    /// changing.
    pub dbs: Vec<String>,
    /// The hazard table in them (the view reads `v_<table>`).
    pub table: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dbs: Vec::new(),
            table: "hidden_danger".into(),
        }
    }
}

const PLACES: &[&str] = &[
    "原料仓库",
    "二号生产车间",
    "危化品储罐区",
    "配电房",
    "锅炉房",
    "装卸平台",
];
const FINDINGS: &[(&str, &str)] = &[
    ("消防通道被货物堵塞", "立即清理通道，设置禁止堆放标识"),
    (
        "储罐区可燃气体报警器失效",
        "更换报警器并联网监控，停用储罐至整改完成",
    ),
    ("配电柜接地线脱落", "重新接地并检测"),
    ("特种作业人员无证上岗", "立即停止作业，组织培训取证"),
    ("锅炉安全阀超期未检", "停炉送检，检验合格后方可使用"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    MySql,
}

fn backend(url: &str) -> Backend {
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Backend::MySql
    } else {
        Backend::Postgres
    }
}

async fn connect(url: &str) -> Result<sqlx::AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url.replacen("mariadb://", "mysql://", 1))
        .await
}

/// Creates the table and its view if they do not exist.
pub async fn prepare(url: &str, table: &str) -> Result<(), sqlx::Error> {
    let ts = match backend(url) {
        Backend::Postgres => "TIMESTAMP(6)",
        Backend::MySql => "DATETIME(6)",
    };
    let pool = connect(url).await?;
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id BIGINT PRIMARY KEY,
            hazard_no VARCHAR(32) NOT NULL,
            ent_name VARCHAR(128) NOT NULL,
            ent_credit_code VARCHAR(40),
            ent_legal_person VARCHAR(32),
            check_time {ts} NULL,
            checker VARCHAR(32),
            place VARCHAR(64),
            description VARCHAR(256),
            grade CHAR(1) NOT NULL,
            measures VARCHAR(256),
            rectify_deadline DATE,
            responsible VARCHAR(32),
            funds DECIMAL(12,2),
            state CHAR(1) NOT NULL,
            accept_time {ts} NULL,
            updated_at {ts} NOT NULL
        )"
    );
    sqlx::query(AssertSqlSafe(ddl)).execute(&pool).await?;
    let view = format!("CREATE OR REPLACE VIEW v_{table} AS SELECT * FROM {table}");
    sqlx::query(AssertSqlSafe(view)).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

fn now_local() -> chrono::NaiveDateTime {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local()
}

/// Inserts `n` hidden-danger rows with ids from `first_id`. Some major
/// hazards are already past their deadline: enforcement leads.
pub async fn seed(
    url: &str,
    table: &str,
    first_id: i64,
    n: usize,
    seed: u64,
) -> Result<(), sqlx::Error> {
    let pool = connect(url).await?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let placeholders = match backend(url) {
        Backend::Postgres => "$1,$2,$3,$4,$5,CAST($6 AS TIMESTAMP),$7,$8,$9,$10,$11,CAST($12 AS DATE),$13,CAST($14 AS NUMERIC),$15,CAST($16 AS TIMESTAMP),CAST($17 AS TIMESTAMP)".to_owned(),
        Backend::MySql => vec!["?"; 17].join(","),
    };
    let sql = format!(
        "INSERT INTO {table} (id, hazard_no, ent_name, ent_credit_code, ent_legal_person, check_time, checker, place, description, grade, measures, rectify_deadline, responsible, funds, state, accept_time, updated_at) VALUES ({placeholders})"
    );
    let now = now_local();
    for i in 0..n {
        let id = first_id + i as i64;
        let checked = now - chrono::Duration::hours(1 + rng.i64(0..24 * 40));
        let (finding, measure) = FINDINGS[rng.usize(..FINDINGS.len())];
        let major = rng.f64() < 0.3;
        let deadline = (checked + chrono::Duration::days(if major { 15 } else { 3 })).date();
        let state = ["0", "1", "2", "3", "4"][rng.usize(..5)];
        let accepted = (state == "4").then(|| checked + chrono::Duration::days(2));
        let updated = now - chrono::Duration::seconds((n - i) as i64);
        let (company, code) = people::company(&mut rng);
        let code = if rng.f64() < 0.1 {
            people::fullwidth(&code)
        } else {
            code
        };
        sqlx::query(AssertSqlSafe(sql.clone()))
            .bind(id)
            .bind(format!("YH{}{:05}", checked.format("%Y%m"), id))
            .bind(company)
            .bind(code)
            .bind(people::person(&mut rng))
            .bind(checked.format("%Y-%m-%d %H:%M:%S").to_string())
            .bind(people::person(&mut rng))
            .bind(PLACES[rng.usize(..PLACES.len())])
            .bind(finding)
            .bind(if major { "2" } else { "1" })
            .bind(measure)
            .bind(deadline.format("%Y-%m-%d").to_string())
            .bind(people::person(&mut rng))
            .bind(format!("{}.{:02}", rng.u32(500..200_000), rng.u32(..100)))
            .bind(state)
            .bind(accepted.map(|a| a.format("%Y-%m-%d %H:%M:%S").to_string()))
            .bind(updated.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(())
}

/// Moves `k` open hazards one state on, stamping `updated_at`.
pub async fn advance(url: &str, table: &str, k: usize) -> Result<u64, sqlx::Error> {
    let pool = connect(url).await?;
    let now = now_local().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let (p1, p2) = match backend(url) {
        Backend::Postgres => ("$1", "$2"),
        Backend::MySql => ("?", "?"),
    };
    let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE state <> '4' ORDER BY updated_at LIMIT {k}"
    )))
    .fetch_all(&pool)
    .await?;
    let mut changed = 0;
    for id in ids {
        let sql = match backend(url) {
            Backend::Postgres => format!(
                "UPDATE {table} SET state = CAST(CAST(state AS INTEGER) + 1 AS CHAR(1)), updated_at = CAST({p1} AS TIMESTAMP) WHERE id = {p2}"
            ),
            Backend::MySql => format!(
                "UPDATE {table} SET state = CAST(CAST(state AS UNSIGNED) + 1 AS CHAR(1)), updated_at = {p1} WHERE id = {p2}"
            ),
        };
        changed += sqlx::query(AssertSqlSafe(sql))
            .bind(&now)
            .bind(id)
            .execute(&pool)
            .await?
            .rows_affected();
    }
    pool.close().await;
    Ok(changed)
}

/// The safety production front-end databases (PostgreSQL, MariaDB): no
/// routes; rows seeded and kept changing.
#[derive(Debug, Clone, Copy)]
pub struct FrontEnds;

impl crate::Simulator for FrontEnds {
    fn routes(&self) -> axum::Router {
        axum::Router::new()
    }

    fn background(
        &self,
        config: &crate::SandboxConfig,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        for url in config.safety.dbs.clone() {
            let table = config.safety.table.clone();
            let seed = config.seed;
            let stop = shutdown.clone();
            tokio::spawn(async move {
                // New ids at every start, so rows from an earlier run stay.
                let first = (chrono::Utc::now().timestamp() % 100_000_000) * 1000;
                let ready = async {
                    prepare(&url, &table).await?;
                    self::seed(&url, &table, first, 200, seed).await
                }
                .await;
                if let Err(e) = ready {
                    tracing::error!(%url, error = %e, "safety front-end database not ready");
                    return;
                }
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    if let Err(e) = advance(&url, &table, 3).await {
                        tracing::warn!(%url, error = %e, "safety simulator could not update");
                    }
                }
            });
        }
    }
}
