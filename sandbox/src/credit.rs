//! The credit platform (信用平台) simulator: the 双公示 penalty publication
//! batch API, withdrawals, and the blacklist (黑名单) for joint restriction.
//!
//! - `POST /credit/api/penalties/batch` `{"records": [...]}`: each record in
//!   the `CF_*` layout with its `idempotency_key`; the answer accepts or
//!   rejects each record with a reason, and a rejected record does not stop
//!   the rest of the batch. The checks are the platform's: required fields,
//!   the credit code's check characters, a natural person's ID number
//!   masked, the fine a number in 万元.
//! - `POST /credit/api/penalties/withdraw`: withdraw (撤回) a publication.
//! - `POST /credit/api/blacklist`: add or remove an entity.
//! - `GET /credit/api/received`: what the platform holds.
//! - `GET /credit/api/repairs?updatedAfter=…&afterId=…&pageSize=…`: credit
//!   repair results (信用修复结果: 终止公示), keyset-paged like the case
//!   system, which the hub polls (信用中国 is the single window of repair
//!   since 2026-04-01, 《信用修复管理办法》). Every request is signed, as
//!   the platform's open interface asks: `appKey`, `timestamp` (ms, within
//!   five minutes), `nonce` (never twice) and `sign`, the SM3 (hex) of the
//!   other parameters sorted by name, `name=value` joined by `&`, then
//!   `&secret=` and the secret; anything else is refused with 401, and
//!   counted (`signatures_refused` in `/credit/api/received`).
//! - `POST /credit/api/repairs` `{"CF_WSH": "…"}`: a repair of a published
//!   decision is approved (what a party's application leads to); the
//!   publication ends at the platform at once.
//!
//! A key already taken is accepted again and not kept twice.

use super::receiver::Inbox;
use super::store::KeysetStore;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use duijie::ident::check_uscc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The app key the platform gave the hub, and its secret (the demo's
/// `pipelines/secrets/credit_api_secret`).
pub const CREDIT_APP_KEY: &str = "duijie-yichang-gxq";
pub const CREDIT_API_SECRET: &str = "xyzg-open-2026-Yc7q";

/// How far a signed request's timestamp may be from the platform's clock.
const SIGNED_WITHIN_MS: i64 = 5 * 60 * 1000;
/// Nonces remembered, at most (the oldest forgotten first).
const NONCES_KEPT: usize = 100_000;

#[derive(Debug)]
struct Platform {
    /// Repair results, as the hub pages them.
    repairs: KeysetStore,
    /// Nonces of signed requests taken, oldest first.
    nonces: std::collections::VecDeque<String>,
    /// Requests refused for their signature.
    signatures_refused: u64,
    /// Publications by idempotency key, refusals, batches, duplicates.
    published: crate::receiver::Batches,
    withdrawn: BTreeMap<String, Value>,
}

/// The simulated platform. `outage` is shared with the other receivers.
#[derive(Debug, Clone)]
pub struct CreditPlatform {
    state: Arc<Mutex<Platform>>,
    outage: Inbox,
    blacklist: Inbox,
}

impl Default for Platform {
    fn default() -> Self {
        // Repairs the platform approved earlier this year, for decisions of
        // 2025 (the hub polls them like any later one).
        let mut repairs = KeysetStore::new("updateTime", "xfbh");
        for (no, wsh, name, code, day) in [
            (
                "XF202603150001",
                "宜高综执罚决字〔2025〕第0412号",
                "宜昌高新区宏达机械制造有限公司",
                "91420506D7NT5G2W4K",
                "2026-03-15",
            ),
            (
                "XF202609020002",
                "宜高综执罚决字〔2025〕第0733号",
                "宜昌桃花岭食品有限公司",
                "91420503W5ECAQYG0F",
                "2026-09-02",
            ),
        ] {
            repairs.insert(json!({
                "xfbh": no, "xflx": "终止公示", "cfwsh": wsh, "xyztmc": name, "tyshxydm": code,
                "xfrq": day, "xfjg": "宜昌高新区综合行政执法局",
                "bz": "信用主体已履行处罚决定并作出信用承诺",
                "updateTime": format!("{day} 10:00:00.000"),
            }));
        }
        Self {
            repairs,
            nonces: Default::default(),
            signatures_refused: 0,
            published: crate::receiver::Batches::default(),
            withdrawn: BTreeMap::new(),
        }
    }
}

impl CreditPlatform {
    pub fn new(outage: Inbox) -> Self {
        Self {
            state: Arc::default(),
            blacklist: Inbox::default(),
            outage,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/credit/api/penalties/batch", axum::routing::post(batch))
            .route(
                "/credit/api/penalties/withdraw",
                axum::routing::post(withdraw),
            )
            .route("/credit/api/blacklist", axum::routing::post(blacklist))
            .route("/credit/api/received", axum::routing::get(received))
            .route(
                "/credit/api/repairs",
                axum::routing::get(repairs).post(repair),
            )
            .with_state(self.clone())
    }
}

fn down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"code": 503, "message": "平台维护中"})),
    )
        .into_response()
}

/// The platform's checks of one publication record.
fn check(r: &Value) -> Result<(), String> {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    for k in [
        "CF_WSH",
        "CF_XDR_MC",
        "CF_XDR_LB",
        "CF_CFLB",
        "CF_JDRQ",
        "CF_CFJG",
        "CF_CFJGDM",
        "CF_GSJZQ",
    ] {
        if s(k).trim().is_empty() {
            return Err(format!("{k} 不能为空"));
        }
    }
    let older = [
        "CF_XDR_GSZC",
        "CF_XDR_ZZJG",
        "CF_XDR_SWDJ",
        "CF_XDR_SYDW",
        "CF_XDR_SHZZ",
    ]
    .iter()
    .any(|k| !s(k).trim().is_empty());
    let masked_id = |k: &str| -> Result<(), String> {
        let id = s(k);
        if !id.is_empty() && !id.contains('*') {
            return Err(format!("{k} 身份证号码未按规定脱敏"));
        }
        Ok(())
    };
    masked_id("CF_FR_ZJHM")?;
    match s("CF_XDR_LB") {
        // An individual business without a credit code: the 双公示
        // layout's placeholder, with its operator (经营者) as legal
        // representative and the operator's ID, masked.
        "个体工商户" if s("CF_XDR_SHXYM") == "00000000000000000X" => {
            if s("CF_FRDB").is_empty() || s("CF_FR_ZJHM").is_empty() {
                return Err("使用占位代码的个体工商户须填写经营者姓名及证件号码".into());
            }
        }
        // Or, on a platform that wants it so, by its operator's ID, masked.
        "个体工商户" if s("CF_XDR_SHXYM").is_empty() && !older => {
            if s("CF_XDR_ZJHM").is_empty() || s("CF_XDR_ZJLX").is_empty() {
                return Err("无统一社会信用代码的个体工商户须填写经营者证件类型和号码".into());
            }
            masked_id("CF_XDR_ZJHM")?;
        }
        "法人及非法人组织" | "个体工商户" => {
            let code = s("CF_XDR_SHXYM");
            if code.is_empty() && !older {
                return Err("CF_XDR_SHXYM 与其他登记代码不能同时为空".into());
            }
            if !code.is_empty() && !check_uscc(code).is_valid() {
                return Err(format!("CF_XDR_SHXYM 统一社会信用代码校验不通过: {code}"));
            }
        }
        "自然人" => {
            let id = s("CF_XDR_ZJHM");
            if !id.contains('*') {
                return Err("自然人身份证号码未按规定脱敏".into());
            }
        }
        other => return Err(format!("CF_XDR_LB 取值无效: {other}")),
    }
    if let Some(fk) = r.get("CF_NR_FK").and_then(Value::as_str)
        && !fk.is_empty()
        && fk.parse::<f64>().is_err()
    {
        return Err(format!("CF_NR_FK 不是数字: {fk}"));
    }
    if chrono::NaiveDate::parse_from_str(s("CF_JDRQ"), "%Y-%m-%d").is_err() {
        return Err("CF_JDRQ 日期格式应为 yyyy-MM-dd".into());
    }
    Ok(())
}

/// The platform's SM2 key: it signs every answer it gives a publisher
/// (`X-Signature-SM2`, DER, base64, over the body), so the bureau can
/// prove what the platform acknowledged. Its public half is
/// pipelines/secrets/credit_platform_sm2_public.pem.
static PLATFORM_KEY: std::sync::LazyLock<duijie_crypto::sm2::PrivateKey> =
    std::sync::LazyLock::new(|| {
        duijie_crypto::sm2::PrivateKey::from_pem(
            include_str!("keys/credit_platform_sm2_key.pem"),
            duijie_crypto::sm2::DEFAULT_DISTID,
        )
        .expect("the sandbox platform's key reads")
    });

/// An answer with the platform's signature.
fn signed(body: &Value) -> Response {
    let bytes = body.to_string();
    let signature = duijie_crypto::Text::Base64
        .encode(&PLATFORM_KEY.sign(bytes.as_bytes(), duijie_crypto::sm2::SignatureForm::Der));
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_owned(),
            ),
            (
                axum::http::HeaderName::from_static("x-signature-sm2"),
                signature,
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn batch(State(p): State<CreditPlatform>, axum::Json(body): axum::Json<Value>) -> Response {
    if p.outage.is_down() {
        return down();
    }
    let mut state = p.state.lock().expect("credit lock");
    let results = state.published.take(&body, check, "HZ", Some("CF_WSH"));
    signed(&json!({"code": 0, "results": results}))
}

async fn withdraw(
    State(p): State<CreditPlatform>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if p.outage.is_down() {
        return down();
    }
    let key = body
        .get("idempotency_key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if key.is_empty()
        || body
            .get("CF_WSH")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"code": 422, "message": "CF_WSH 与 idempotency_key 必填"})),
        )
            .into_response();
    }
    p.state
        .lock()
        .expect("credit lock")
        .withdrawn
        .entry(key)
        .or_insert(body);
    signed(&json!({"code": 0, "status": "WITHDRAWN"}))
}

async fn blacklist(
    State(p): State<CreditPlatform>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if p.outage.is_down() {
        return down();
    }
    p.blacklist.receive("blacklist", &headers, &body)
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepairsQuery {
    updated_after: Option<String>,
    after_id: Option<String>,
    page_size: Option<usize>,
}

/// Why a request's signature is refused, if it is: checked here on the
/// platform's side, written apart from the hub's signing.
fn refused_signature(platform: &mut Platform, raw_query: &str) -> Option<&'static str> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(app_key), Some(ts), Some(nonce), Some(sign)) =
        (get("appKey"), get("timestamp"), get("nonce"), get("sign"))
    else {
        return Some("缺少签名参数");
    };
    if app_key != CREDIT_APP_KEY {
        return Some("appKey无效");
    }
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp_millis() - t).abs() <= SIGNED_WITHIN_MS);
    if !fresh {
        return Some("时间戳超出允许范围");
    }
    let mut signed: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "sign").collect();
    signed.sort();
    let text = signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
        + "&secret="
        + CREDIT_API_SECRET;
    let want = hex::encode(duijie_crypto::Suite::Gm.digest(&[text.as_bytes()]));
    if !duijie::secrets::same_secret(&sign.to_ascii_lowercase(), &want) {
        return Some("签名无效");
    }
    if platform.nonces.iter().any(|n| n == nonce) {
        return Some("nonce重复");
    }
    if platform.nonces.len() >= NONCES_KEPT {
        platform.nonces.pop_front();
    }
    platform.nonces.push_back(nonce.to_owned());
    None
}

async fn repairs(
    State(p): State<CreditPlatform>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    axum::extract::Query(q): axum::extract::Query<RepairsQuery>,
) -> Response {
    if p.outage.is_down() {
        return down();
    }
    {
        let mut state = p.state.lock().expect("credit lock");
        if let Some(why) = refused_signature(&mut state, raw.as_deref().unwrap_or_default()) {
            state.signatures_refused += 1;
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"code": 401, "message": why})),
            )
                .into_response();
        }
    }
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let rows = p.state.lock().expect("credit lock").repairs.after(
        q.updated_after.as_deref(),
        q.after_id.as_deref(),
        size,
    );
    axum::Json(json!({"code": 0, "data": {"records": rows}})).into_response()
}

/// A repair of a published decision approved: its publication ends here,
/// and the result is listed for the deciding authority's systems.
async fn repair(State(p): State<CreditPlatform>, axum::Json(body): axum::Json<Value>) -> Response {
    let wsh = body
        .get("CF_WSH")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut state = p.state.lock().expect("credit lock");
    let Some(record) = state
        .published
        .accepted
        .values()
        .find(|r| r.get("CF_WSH").and_then(Value::as_str) == Some(wsh.as_str()))
        .cloned()
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 404, "message": "未找到公示中的该处罚决定"})),
        )
            .into_response();
    };
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let no = format!("XF{}{:04}", now.format("%Y%m%d"), state.repairs.len() + 1);
    let s = |k: &str| record.get(k).cloned().unwrap_or(Value::Null);
    let result = json!({
        "xfbh": no,
        "xflx": "终止公示",
        "cfwsh": wsh,
        "xyztmc": s("CF_XDR_MC"),
        "tyshxydm": s("CF_XDR_SHXYM"),
        "xfrq": now.format("%Y-%m-%d").to_string(),
        "xfjg": s("CF_CFJG"),
        "bz": "信用主体已履行处罚决定并作出信用承诺",
        "updateTime": now.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    });
    state.repairs.insert(result.clone());
    state
        .published
        .accepted
        .retain(|_, r| r.get("CF_WSH").and_then(Value::as_str) != Some(wsh.as_str()));
    (StatusCode::CREATED, axum::Json(result)).into_response()
}

async fn received(State(p): State<CreditPlatform>) -> axum::Json<Value> {
    let state = p.state.lock().expect("credit lock");
    axum::Json(json!({
        "published": state.published.accepted,
        "withdrawn": state.withdrawn,
        "rejected": state.published.rejected,
        "batches": state.published.batches,
        "duplicates": state.published.duplicates,
        "blacklist": p.blacklist.view("blacklist"),
        "signatures_refused": state.signatures_refused,
        "repairs": state.repairs.len(),
    }))
}
