//! SQL poll: a table or view on a front-end database (前置机), PostgreSQL or
//! MariaDB/MySQL, read by keyset on `(updated_at, id)`.
//!
//! Each row becomes one JSON object (column name → value) and is handed on
//! as a JSON record; timestamps without a zone are written as the database
//! holds them (`2026-11-28 09:30:00`, with microseconds when there are any),
//! decimals as exact text. The cursor is the `(updated, id)` of the last row
//! taken, so rows updated while the hub reads are taken again, in order,
//! and none is skipped. Rows need a non-null update time.

use crate::record::now_ms;
use crate::{Batch, Cursor, PayloadFormat, RawRecord, RawReject, Source, SourceError};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{Column, Row, TypeInfo};
use std::time::Duration;

/// Configuration of a SQL poll source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqlPollConfig {
    /// `postgres://user@host/db` or `mysql://user@host/db`.
    pub url: String,
    /// Table or view to read.
    pub table: String,
    /// Column holding each row's last-update time.
    #[serde(default = "default_updated_column")]
    pub updated_column: String,
    /// Column holding each row's id (unique).
    #[serde(default = "default_id_column")]
    pub id_column: String,
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// A row larger than this (as JSON) goes to the dead-letter topic.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// How long to wait for a connection.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_updated_column() -> String {
    "updated_at".into()
}
fn default_id_column() -> String {
    "id".into()
}
fn default_page_size() -> usize {
    500
}
fn default_max_record_bytes() -> usize {
    1 << 20
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl SqlPollConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("postgres://")
            || self.url.starts_with("postgresql://")
            || self.url.starts_with("mysql://")
            || self.url.starts_with("mariadb://"))
        {
            return Err("`url` must start with postgres:// or mysql://".into());
        }
        for (field, value) in [
            ("table", &self.table),
            ("updated_column", &self.updated_column),
            ("id_column", &self.id_column),
        ] {
            if !is_identifier(value) {
                return Err(format!(
                    "`{field}` = `{value}` is not a plain SQL identifier"
                ));
            }
        }
        if self.page_size == 0 {
            return Err("`page_size` must be greater than 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SqlCursor {
    /// Update time of the last row taken, as text.
    watermark: Option<String>,
    /// Id of the last row taken.
    after_id: Option<Value>,
    /// Database type names of the two columns (PostgreSQL casts to them).
    #[serde(default)]
    watermark_type: Option<String>,
    #[serde(default)]
    id_type: Option<String>,
}

#[derive(Debug)]
enum Pool {
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

/// A table polled by keyset.
#[derive(Debug)]
pub struct SqlPoll {
    config: SqlPollConfig,
    pool: Option<Pool>,
    position: SqlCursor,
    caught_up: bool,
}

impl SqlPoll {
    pub fn new(config: SqlPollConfig) -> Result<Self, SourceError> {
        config.validate().map_err(SourceError::permanent)?;
        Ok(Self {
            config,
            pool: None,
            position: SqlCursor::default(),
            caught_up: false,
        })
    }

    async fn pool(&mut self) -> Result<&Pool, SourceError> {
        if self.pool.is_none() {
            let url = self.config.url.replacen("mariadb://", "mysql://", 1);
            let timeout = self.config.timeout;
            let pool = if url.starts_with("mysql://") {
                Pool::MySql(
                    sqlx::mysql::MySqlPoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(timeout)
                        .connect(&url)
                        .await
                        .map_err(|e| db_error("connecting", e))?,
                )
            } else {
                Pool::Postgres(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(timeout)
                        .connect(&url)
                        .await
                        .map_err(|e| db_error("connecting", e))?,
                )
            };
            self.pool = Some(pool);
        }
        Ok(self.pool.as_ref().expect("just set"))
    }

    async fn fetch_rows(&mut self) -> Result<Vec<Map<String, Value>>, SourceError> {
        let c = self.config.clone();
        let position = self.position.clone();
        let (upd, id, table, n) = (&c.updated_column, &c.id_column, &c.table, c.page_size);
        let pool = self.pool().await?;
        match pool {
            Pool::Postgres(pool) => {
                let rows = match (&position.watermark, &position.after_id) {
                    (Some(w), Some(after)) => {
                        let wt = sql_type(position.watermark_type.as_deref(), "timestamp");
                        let it = sql_type(position.id_type.as_deref(), "bigint");
                        let sql = format!(
                            "SELECT * FROM {table} WHERE ({upd}, {id}) > (CAST($1 AS {wt}), CAST($2 AS {it})) ORDER BY {upd}, {id} LIMIT {n}"
                        );
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(w).bind(id_text(after)).fetch_all(pool).await
                    }
                    (Some(w), None) => {
                        // A backfill's start: from this time on, inclusive.
                        let wt = sql_type(position.watermark_type.as_deref(), "timestamp");
                        let sql = format!(
                            "SELECT * FROM {table} WHERE {upd} >= CAST($1 AS {wt}) ORDER BY {upd}, {id} LIMIT {n}"
                        );
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(w).fetch_all(pool).await
                    }
                    _ => {
                        let sql = format!("SELECT * FROM {table} WHERE {upd} IS NOT NULL ORDER BY {upd}, {id} LIMIT {n}");
                        sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await
                    }
                }
                .map_err(|e| db_error("querying", e))?;
                rows.iter().map(pg_row_json).collect()
            }
            Pool::MySql(pool) => {
                let rows = match (&position.watermark, &position.after_id) {
                    (Some(w), Some(after)) => {
                        let sql = format!(
                            "SELECT * FROM {table} WHERE ({upd}, {id}) > (?, ?) ORDER BY {upd}, {id} LIMIT {n}"
                        );
                        let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(w);
                        match after {
                            Value::Number(num) if num.is_i64() => q.bind(num.as_i64()),
                            other => q.bind(id_text(other).to_owned()),
                        }
                        .fetch_all(pool)
                        .await
                    }
                    (Some(w), None) => {
                        let sql = format!("SELECT * FROM {table} WHERE {upd} >= ? ORDER BY {upd}, {id} LIMIT {n}");
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(w).fetch_all(pool).await
                    }
                    _ => {
                        let sql = format!("SELECT * FROM {table} WHERE {upd} IS NOT NULL ORDER BY {upd}, {id} LIMIT {n}");
                        sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await
                    }
                }
                .map_err(|e| db_error("querying", e))?;
                rows.iter().map(mysql_row_json).collect()
            }
        }
    }
}

fn sql_type<'a>(name: Option<&'a str>, fallback: &'a str) -> &'a str {
    match name {
        Some(n)
            if n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ') =>
        {
            n
        }
        _ => fallback,
    }
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Connection trouble and timeouts are transient; a wrong query (unknown
/// table or column) is permanent.
fn db_error(doing: &str, e: sqlx::Error) -> SourceError {
    let message = format!("{doing} the front-end database: {e}");
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => SourceError::transient(message).with_source(e),
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("08") || c == "57P01") =>
        {
            SourceError::transient(message).with_source(e)
        }
        _ => SourceError::permanent(message).with_source(e),
    }
}

fn format_naive(t: chrono::NaiveDateTime) -> String {
    if t.and_utc().timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }
}

fn unsupported(column: &str, ty: &str) -> SourceError {
    SourceError::permanent(format!(
        "column `{column}` has type {ty}, which the SQL source does not read"
    ))
}

fn pg_row_json(row: &sqlx::postgres::PgRow) -> Result<Map<String, Value>, SourceError> {
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_info().name().to_ascii_uppercase();
        let get_err = |e: sqlx::Error| {
            SourceError::permanent(format!("reading column `{}`: {e}", col.name()))
        };
        let v = match ty.as_str() {
            "BOOL" => row
                .try_get::<Option<bool>, _>(i)
                .map_err(get_err)?
                .map(Value::Bool),
            "INT2" => row
                .try_get::<Option<i16>, _>(i)
                .map_err(get_err)?
                .map(|v| Value::from(v as i64)),
            "INT4" => row
                .try_get::<Option<i32>, _>(i)
                .map_err(get_err)?
                .map(|v| Value::from(v as i64)),
            "INT8" => row
                .try_get::<Option<i64>, _>(i)
                .map_err(get_err)?
                .map(Value::from),
            "FLOAT4" => row
                .try_get::<Option<f32>, _>(i)
                .map_err(get_err)?
                .map(|v| Value::from(v as f64)),
            "FLOAT8" => row
                .try_get::<Option<f64>, _>(i)
                .map_err(get_err)?
                .map(Value::from),
            "NUMERIC" => row
                .try_get::<Option<rust_decimal::Decimal>, _>(i)
                .map_err(get_err)?
                .map(|d| Value::String(d.to_string())),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => row
                .try_get::<Option<String>, _>(i)
                .map_err(get_err)?
                .map(Value::String),
            "TIMESTAMP" => row
                .try_get::<Option<chrono::NaiveDateTime>, _>(i)
                .map_err(get_err)?
                .map(|t| Value::String(format_naive(t))),
            "TIMESTAMPTZ" => row
                .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i)
                .map_err(get_err)?
                .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
            "DATE" => row
                .try_get::<Option<chrono::NaiveDate>, _>(i)
                .map_err(get_err)?
                .map(|d| Value::String(d.to_string())),
            "JSON" | "JSONB" => row.try_get::<Option<Value>, _>(i).map_err(get_err)?,
            other => return Err(unsupported(col.name(), other)),
        };
        out.insert(col.name().to_owned(), v.unwrap_or(Value::Null));
    }
    Ok(out)
}

fn mysql_row_json(row: &sqlx::mysql::MySqlRow) -> Result<Map<String, Value>, SourceError> {
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_info().name().to_ascii_uppercase();
        let get_err = |e: sqlx::Error| {
            SourceError::permanent(format!("reading column `{}`: {e}", col.name()))
        };
        let v = match ty.as_str() {
            "BOOLEAN" => row
                .try_get::<Option<bool>, _>(i)
                .map_err(get_err)?
                .map(Value::Bool),
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => row
                .try_get::<Option<i64>, _>(i)
                .map_err(get_err)?
                .map(Value::from),
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => row
                .try_get::<Option<u64>, _>(i)
                .map_err(get_err)?
                .map(Value::from),
            "FLOAT" => row
                .try_get::<Option<f32>, _>(i)
                .map_err(get_err)?
                .map(|v| Value::from(v as f64)),
            "DOUBLE" => row
                .try_get::<Option<f64>, _>(i)
                .map_err(get_err)?
                .map(Value::from),
            "DECIMAL" => row
                .try_get::<Option<rust_decimal::Decimal>, _>(i)
                .map_err(get_err)?
                .map(|d| Value::String(d.to_string())),
            "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" => row
                .try_get::<Option<String>, _>(i)
                .map_err(get_err)?
                .map(Value::String),
            "DATETIME" | "TIMESTAMP" => row
                .try_get::<Option<chrono::NaiveDateTime>, _>(i)
                .map_err(get_err)?
                .map(|t| Value::String(format_naive(t))),
            "DATE" => row
                .try_get::<Option<chrono::NaiveDate>, _>(i)
                .map_err(get_err)?
                .map(|d| Value::String(d.to_string())),
            "JSON" => row.try_get::<Option<Value>, _>(i).map_err(get_err)?,
            other => return Err(unsupported(col.name(), other)),
        };
        out.insert(col.name().to_owned(), v.unwrap_or(Value::Null));
    }
    Ok(out)
}

#[async_trait]
impl Source for SqlPoll {
    fn cursor_at(&self, watermark: &str) -> Option<Cursor> {
        Some(Cursor::new(
            serde_json::to_value(SqlCursor {
                watermark: Some(watermark.to_owned()),
                ..SqlCursor::default()
            })
            .ok()?,
        ))
    }

    async fn open(&mut self, committed: Option<Cursor>) -> Result<(), SourceError> {
        self.caught_up = false;
        self.position = match committed {
            Some(c) => c.decode().map_err(|e| {
                SourceError::permanent(format!("stored SQL cursor is unreadable: {e}"))
            })?,
            None => SqlCursor::default(),
        };
        Ok(())
    }

    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Batch>, SourceError> {
        if self.caught_up {
            self.caught_up = false;
            return Ok(None);
        }
        let rows = self.fetch_rows().await?;
        let fetched_at_ms = now_ms();
        let short_page = rows.len() < self.config.page_size;
        let mut records = Vec::with_capacity(rows.len());
        let mut rejects = Vec::new();
        let (upd, id) = (
            self.config.updated_column.clone(),
            self.config.id_column.clone(),
        );
        for row in rows {
            let watermark = match row.get(upd.as_str()) {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            let row_id = row.get(id.as_str()).cloned().filter(|v| !v.is_null());
            let origin = format!(
                "{} {}={}",
                self.config.table,
                id,
                row_id.as_ref().map(id_text).unwrap_or_else(|| "?".into())
            );
            if let (Some(w), Some(i)) = (&watermark, &row_id) {
                self.position.watermark = Some(w.clone());
                self.position.after_id = Some(i.clone());
            }
            let payload = serde_json::to_vec(&Value::Object(row)).expect("rows serialize");
            if payload.len() > self.config.max_record_bytes {
                rejects.push(RawReject {
                    payload: Bytes::copy_from_slice(&payload[..self.config.max_record_bytes]),
                    truncated: true,
                    length: Some(payload.len() as u64),
                    fetched_at_ms,
                    origin,
                    reason: format!(
                        "row is larger than max_record_bytes ({} bytes)",
                        self.config.max_record_bytes
                    ),
                });
            } else {
                records.push(RawRecord {
                    payload: Bytes::from(payload),
                    format: PayloadFormat::Json,
                    fetched_at_ms,
                    origin,
                });
            }
        }
        if self.position.watermark_type.is_none() && self.position.watermark.is_some() {
            self.position.watermark_type = self.column_type(&upd).await;
            self.position.id_type = self.column_type(&id).await;
        }
        self.caught_up = short_page;
        Ok(Some(Batch {
            records,
            rejects,
            cursor: Cursor::encode(&self.position),
        }))
    }
}

impl SqlPoll {
    /// PostgreSQL type of a column, for casting the keyset parameters.
    async fn column_type(&mut self, column: &str) -> Option<String> {
        let table = self.config.table.clone();
        match self.pool().await.ok()? {
            Pool::Postgres(pool) => {
                let sql = format!("SELECT pg_typeof({column})::text FROM {table} LIMIT 1");
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                    .fetch_optional(pool)
                    .await
                    .ok()
                    .flatten()
            }
            Pool::MySql(_) => None,
        }
    }
}

impl crate::Transport for SqlPoll {
    const KIND: &'static str = "sql_poll";
    const DRIVE: crate::Drive = crate::Drive::Polled;
    type Config = SqlPollConfig;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn build(config: &Self::Config) -> Result<crate::BuiltSource, crate::SourceError> {
        use crate::BuiltSource;
        Ok(BuiltSource::Poll(Box::new(SqlPoll::new(config.clone())?)))
    }
}
