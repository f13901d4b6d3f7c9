//! Referral simulators: the public-security exchange directory (公安) and
//! the judicial two-law linkage platform (两法衔接平台), telling one story.
//!
//! Each simulated referral (移送) follows a path the regulation allows:
//! received and opened; refused, reconsidered, supervised by the
//! procuratorate and finally opened; materials supplemented; sent back; or
//! still waiting for the police. Police messages are written as XML files
//! into the exchange directory (mixed encodings; some half-written, some
//! broken, one an entity bomb); platform events are served by
//! `GET /twolaw/api/events?updatedAfter=&afterId=&pageSize=`.

use super::people;
use super::store::KeysetStore;
use super::{FaultPlan, SandboxConfig};
use axum::Router;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The referral story's settings (the two-law platform and the police;
/// the case system tells its own steps of the same story).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Referrals in the story.
    pub referrals: usize,
    /// The exchange directory the police messages are dropped into at
    /// start.
    pub police_dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            referrals: 20,
            police_dir: None,
        }
    }
}

const POLICE: (&str, &str) = ("宜昌市公安局高新区分局", "420502000000");
const PROCURATORATE: (&str, &str) = ("宜昌高新区人民检察院", "420502000001");
const BUREAU: (&str, &str) = ("宜昌高新区综合行政执法局", "11420500MB15077941");
const OFFENCES: &[&str] = &[
    "非法经营罪",
    "生产、销售伪劣产品罪",
    "污染环境罪",
    "重大责任事故罪",
    "非法占用农用地罪",
];

/// Who tells of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teller {
    /// The bureau's own case system: drafting, approval, referral.
    Enforcement,
    Police,
    TwoLaw,
}

/// One event of a simulated referral.
#[derive(Debug, Clone)]
pub struct ScriptedEvent {
    pub referral_no: String,
    pub teller: Teller,
    /// Police message type or platform event code.
    pub code: &'static str,
    pub at: chrono::DateTime<chrono::Utc>,
    pub seq: usize,
}

/// The paths referrals take, as (teller, code, days after the previous).
/// Each starts in the bureau: drafted (草拟), submitted for the head's
/// approval (呈批), approved (批准), then referred through the platform.
const PATHS: &[&[(Teller, &str, i64)]] = &[
    &[
        (Teller::Enforcement, "CG", 0),
        (Teller::Enforcement, "TJ", 0),
        (Teller::Enforcement, "PZ", 1),
        (Teller::TwoLaw, "YS", 0),
        (Teller::Police, "SLHZ", 1),
        (Teller::Police, "LA", 2),
        (Teller::TwoLaw, "YJ_WP", 2),
    ],
    &[
        (Teller::Enforcement, "CG", 0),
        (Teller::Enforcement, "TJ", 0),
        (Teller::Enforcement, "PZ", 1),
        (Teller::TwoLaw, "YS", 0),
        (Teller::Police, "SLHZ", 1),
        (Teller::Police, "BYLA", 3),
        (Teller::TwoLaw, "FY_SQ", 2),
        (Teller::Police, "FYJD_WC", 3),
        (Teller::TwoLaw, "JD_TQ", 1),
        (Teller::TwoLaw, "JD_YQSM", 2),
        (Teller::Police, "SMLY", 6),
        (Teller::TwoLaw, "JD_TZLA", 3),
        (Teller::Police, "LA", 10),
    ],
    &[
        (Teller::Enforcement, "CG", 0),
        (Teller::Enforcement, "TJ", 0),
        (Teller::Enforcement, "PZ", 1),
        (Teller::TwoLaw, "YS", 0),
        (Teller::Police, "SLHZ", 1),
        (Teller::Police, "BCCL", 1),
        (Teller::TwoLaw, "BC_CL", 2),
        (Teller::Police, "LA", 2),
    ],
    &[
        (Teller::Enforcement, "CG", 0),
        (Teller::Enforcement, "TJ", 0),
        (Teller::Enforcement, "PZ", 2),
        (Teller::TwoLaw, "YS", 0),
        (Teller::Police, "TH", 2),
    ],
    &[
        (Teller::Enforcement, "CG", 0),
        (Teller::Enforcement, "TJ", 0),
        (Teller::Enforcement, "PZ", 1),
        (Teller::TwoLaw, "YS", 0),
        (Teller::Police, "SLHZ", 1),
    ],
    &[
        (Teller::Enforcement, "CG", 0),
        (Teller::Enforcement, "TJ", 1),
    ],
    &[
        (Teller::Enforcement, "CG", 0),
        (Teller::Enforcement, "TJ", 0),
        (Teller::Enforcement, "BPZ", 2),
    ],
];

/// The events of `n` referrals whose time has come by now.
pub fn script(n: usize, seed: u64) -> Vec<ScriptedEvent> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let now = chrono::Utc::now();
    let year = now
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y")
        .to_string();
    let mut events = Vec::new();
    for i in 0..n {
        let path = PATHS[i % PATHS.len()];
        let referral_no = format!("YS-{year}-{:04}", 1 + i + (seed as usize % 100) * 1000);
        let mut at = now
            - chrono::Duration::days(1 + rng.i64(0..45))
            - chrono::Duration::minutes(rng.i64(0..600));
        for (seq, (teller, code, days)) in path.iter().enumerate() {
            at += chrono::Duration::days(*days) + chrono::Duration::minutes(rng.i64(0..300));
            if at > now {
                break;
            }
            events.push(ScriptedEvent {
                referral_no: referral_no.clone(),
                teller: *teller,
                code,
                at,
                seq,
            });
        }
    }
    events
}

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The suspect of a referral, the same every time it is told.
fn suspect(referral_no: &str) -> (bool, String, String) {
    let mut rng = fastrand::Rng::with_seed(referral_no.bytes().map(u64::from).sum());
    if rng.bool() {
        let (name, code) = people::company(&mut rng);
        (true, name.to_owned(), code)
    } else {
        (
            false,
            people::person(&mut rng),
            people::resident_id(&mut rng),
        )
    }
}

/// A police exchange message, as UTF-8 text with a GBK declaration.
pub fn police_message(e: &ScriptedEvent) -> String {
    let local = people::local(e.at, false);
    let (company, name, code) = suspect(&e.referral_no);
    let reason = match e.code {
        "BYLA" => "<LY>经审查，现有证据不足以证明有犯罪事实，不予立案。</LY>",
        "TH" => "<LY>移送材料不全，缺少涉案物品清单及检验报告，退回移送机关。</LY>",
        "SMLY" => "<LY>涉案金额未达立案追诉标准。</LY>",
        _ => "",
    };
    let suspect_xml = if company {
        format!(
            "<XYR lx=\"1\"><XM>{}</XM><TYSHXYDM>{code}</TYSHXYDM></XYR>",
            esc(&name)
        )
    } else {
        format!(
            "<XYR lx=\"3\"><XM>{}</XM><ZJHM>{code}</ZJHM></XYR>",
            esc(&name)
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"GBK\"?>\n<GAJS xmlns=\"urn:gov:police:exchange:2019\" bbh=\"1.0\">\n  <XXBH>GA{}{:02}</XXBH>\n  <XXLX>{}</XXLX>\n  <YSBH>{}</YSBH>\n  <AJBH>宜高综执罚〔{}〕{}号</AJBH>\n  <GAAJBH>A{}</GAAJBH>\n  <BLDW dm=\"{}\">{}</BLDW>\n  <SJ>{local}</SJ>\n  <WSH>宜公高(刑)字[{}]{}号</WSH>\n  {reason}\n  <SXZM>{}</SXZM>\n  {suspect_xml}\n</GAJS>\n",
        e.referral_no.replace('-', ""),
        e.seq,
        e.code,
        e.referral_no,
        &local[..4],
        e.referral_no.rsplit('-').next().unwrap_or_default(),
        e.referral_no.replace('-', ""),
        POLICE.1,
        POLICE.0,
        &local[..4],
        e.seq + 10,
        OFFENCES[e.referral_no.len() % OFFENCES.len()],
    )
}

/// Writes the police events of `events` into the exchange directory, as an
/// SFTP drop leaves them: GBK with its declaration, UTF-8 with a BOM, or
/// GB18030 with no declaration at all, each written to `.part` and renamed.
/// With `troubles`, also a broken file and an entity bomb, which must end
/// in `rejected/`. Returns the files written.
pub fn write_police_files(
    dir: &Path,
    events: &[ScriptedEvent],
    troubles: bool,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (i, e) in events
        .iter()
        .filter(|e| e.teller == Teller::Police)
        .enumerate()
    {
        let text = police_message(e);
        let bytes: Vec<u8> = match i % 3 {
            0 => encoding_rs::GBK.encode(&text).0.into_owned(),
            1 => {
                let mut b = vec![0xEF, 0xBB, 0xBF];
                b.extend_from_slice(
                    text.replace("encoding=\"GBK\"", "encoding=\"UTF-8\"")
                        .as_bytes(),
                );
                b
            }
            _ => {
                let undeclared = text.replacen("<?xml version=\"1.0\" encoding=\"GBK\"?>\n", "", 1);
                encoding_rs::GB18030.encode(&undeclared).0.into_owned()
            }
        };
        let name = format!("GA_{}_{}_{:02}.xml", e.code, e.referral_no, e.seq);
        written.push(drop_file(dir, &name, &bytes)?);
    }
    if troubles {
        let broken = "<?xml version=\"1.0\" encoding=\"GBK\"?>\n<GAJS xmlns=\"urn:gov:police:exchange:2019\"><XXBH>GA-BROKEN</XXBH><XXLX>LA</XXLX><YSBH>YS-";
        written.push(drop_file(
            dir,
            "GA_BROKEN.xml",
            &encoding_rs::GBK.encode(broken).0,
        )?);
        let bomb = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\n<GAJS xmlns=\"urn:gov:police:exchange:2019\"><XXBH>&lol2;</XXBH></GAJS>";
        written.push(drop_file(dir, "GA_BOMB.xml", bomb.as_bytes())?);
    }
    Ok(written)
}

fn drop_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let part = dir.join(format!("{name}.part"));
    std::fs::write(&part, bytes)?;
    let path = dir.join(name);
    std::fs::rename(&part, &path)?;
    Ok(path)
}

/// A case-system referral event as its API returns it.
pub fn enforcement_event(e: &ScriptedEvent) -> Value {
    let (company, name, code) = suspect(&e.referral_no);
    let content = match e.code {
        "CG" => "经调查，当事人涉嫌犯罪，拟移送公安机关。",
        "TJ" => "呈请局负责人审批移送涉嫌犯罪案件。",
        "PZ" => "同意移送。",
        "BPZ" => "证据不足以认定涉嫌犯罪，不予批准移送，作结案处理。",
        _ => "",
    };
    json!({
        "eventId": format!("ZF{}{:02}", e.referral_no.replace('-', ""), e.seq),
        "transferNo": e.referral_no,
        "eventType": e.code,
        "eventTime": people::local(e.at, false),
        "updateTime": people::local(e.at, true),
        "orgName": BUREAU.0,
        "orgCode": BUREAU.1,
        "caseNo": format!("宜高综执罚〔{}〕{}号", &people::local(e.at, false)[..4], e.referral_no.rsplit('-').next().unwrap_or_default()),
        "crime": OFFENCES[e.referral_no.len() % OFFENCES.len()],
        "content": content,
        "suspect": if company {
            json!({ "name": name, "type": "1", "creditCode": code })
        } else {
            json!({ "name": name, "type": "3", "idNo": code })
        },
    })
}

/// A platform event as the REST API returns it.
pub fn two_law_event(e: &ScriptedEvent) -> Value {
    let (company, name, code) = suspect(&e.referral_no);
    let (org, org_code) = match e.code {
        "YS" | "FY_SQ" | "YJ_WP" | "BC_CL" => BUREAU,
        _ => PROCURATORATE,
    };
    let content = match e.code {
        "YS" => "涉嫌犯罪，依法移送公安机关。",
        "FY_SQ" => "对不予立案决定不服，提请复议。",
        "JD_TQ" => "建议人民检察院依法进行立案监督。",
        "JD_YQSM" => "要求公安机关说明不立案理由。",
        "JD_TZLA" => "通知公安机关立案。",
        "YJ_WP" => "移交涉案物品及有关材料。",
        "BC_CL" => "按公安机关通知补充移送材料。",
        _ => "",
    };
    json!({
        "eventId": format!("LF{}{:02}", e.referral_no.replace('-', ""), e.seq),
        "transferNo": e.referral_no,
        "eventCode": e.code,
        "eventTime": people::local(e.at, false),
        "updateTime": people::local(e.at, true),
        "orgName": org,
        "orgCode": org_code,
        "docNo": format!("宜高检【{}】{}号", &people::local(e.at, false)[..4], e.seq + 1),
        "content": content,
        "caseNo": format!("宜高综执罚〔{}〕{}号", &people::local(e.at, false)[..4], e.referral_no.rsplit('-').next().unwrap_or_default()),
        "crime": OFFENCES[e.referral_no.len() % OFFENCES.len()],
        "suspect": if company {
            json!({ "name": name, "type": "1", "creditCode": code })
        } else {
            json!({ "name": name, "type": "3", "idNo": code })
        },
    })
}

/// The two-law platform's event API.
#[derive(Debug, Clone)]
pub struct TwoLawSystem {
    events: Arc<Mutex<KeysetStore>>,
    faults: FaultPlan,
}

impl TwoLawSystem {
    pub fn new(config: &SandboxConfig, faults: FaultPlan) -> Self {
        let mut store = KeysetStore::new("updateTime", "eventId");
        for e in script(config.referral.referrals, config.seed)
            .iter()
            .filter(|e| e.teller == Teller::TwoLaw)
        {
            store.insert(two_law_event(e));
        }
        Self {
            events: Arc::new(Mutex::new(store)),
            faults,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/twolaw/api/events", axum::routing::get(list))
            .with_state(self.clone())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    updated_after: Option<String>,
    after_id: Option<String>,
    page_size: Option<usize>,
}

async fn list(State(system): State<TwoLawSystem>, Query(q): Query<ListQuery>) -> axum::Json<Value> {
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let rows = system.events.lock().expect("two-law lock").after(
        q.updated_after.as_deref(),
        q.after_id.as_deref(),
        size,
    );
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if system.faults.duplicate() {
            out.push(row.clone());
        }
        out.push(row);
    }
    axum::Json(json!({ "success": true, "data": out }))
}

impl crate::Simulator for TwoLawSystem {
    fn routes(&self) -> Router {
        self.router()
    }

    /// The police's messages dropped into the exchange directory.
    fn background(&self, config: &SandboxConfig, _: tokio_util::sync::CancellationToken) {
        let Some(dir) = &config.referral.police_dir else {
            return;
        };
        let events = script(config.referral.referrals, config.seed);
        match write_police_files(dir, &events, true) {
            Ok(files) => {
                tracing::info!(dir = %dir.display(), files = files.len(), "police messages dropped")
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot drop police messages")
            }
        }
    }
}
