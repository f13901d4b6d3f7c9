//! The whole-process baseline of `scripts/bench-map.sh`: the shared
//! workload (../shared/bench/WORKLOAD.md) written by hand with serde, as a
//! team without a mapping engine would write it. One thread, streaming:
//! read a line, parse it into borrowed fields, apply the rules, write a
//! JSON line; rejects counted with their reason on standard error.
//!
//! Usage: `cargo run --release --example urban_serde -- INPUT > OUTPUT`

use chrono::TimeZone;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::{BufRead, BufWriter, Write};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case<'a> {
    #[serde(borrow)]
    task_num: Cow<'a, str>,
    #[serde(borrow)]
    event_src_id: Cow<'a, str>,
    #[serde(borrow)]
    main_type_id: Cow<'a, str>,
    #[serde(borrow)]
    sub_type_id: Cow<'a, str>,
    #[serde(borrow)]
    sub_type_name: Cow<'a, str>,
    #[serde(borrow)]
    cell_id: Cow<'a, str>,
    #[serde(borrow)]
    address: Cow<'a, str>,
    #[serde(borrow)]
    coord_x: Cow<'a, str>,
    #[serde(borrow)]
    coord_y: Cow<'a, str>,
    #[serde(borrow)]
    event_desc: Cow<'a, str>,
    #[serde(borrow)]
    create_time: Cow<'a, str>,
    #[serde(borrow)]
    event_state_id: Cow<'a, str>,
    #[serde(borrow)]
    reporter: Cow<'a, str>,
    #[serde(default, borrow)]
    party_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    party_credit_code: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Canonical<'a> {
    id: String,
    source_system: &'static str,
    case_no: &'a str,
    channel: &'static str,
    category_code: String,
    category_name: &'a str,
    grid_code: &'a str,
    address: &'a str,
    lon: f64,
    lat: f64,
    description: &'a str,
    reported_at: i64,
    status: &'static str,
    reporter: &'a str,
    party_name: Option<&'a str>,
    party_credit_code: Option<&'a str>,
    party_credit_code_valid: Option<bool>,
    enforcement_candidate: bool,
}

fn uscc_shape(code: &str) -> bool {
    const OK: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let b = code.as_bytes();
    b.len() == 18
        && b[..2].iter().all(|c| OK.contains(c))
        && b[2..8].iter().all(u8::is_ascii_digit)
        && b[8..].iter().all(|c| OK.contains(c))
}

fn map<'a>(c: &'a Case<'a>) -> Result<Canonical<'a>, String> {
    let channel = match &*c.event_src_id {
        "1" => "INSPECTOR",
        "2" => "HOTLINE",
        "3" => "VIDEO",
        "4" => "GRID_WORKER",
        other => return Err(format!("eventSrcId: unknown code {other}")),
    };
    let status = match &*c.event_state_id {
        "1" => "PENDING_ACCEPT",
        "3" => "DISPATCHED",
        "4" => "IN_PROGRESS",
        "5" => "VERIFYING",
        "6" => "CLOSED",
        "7" => "VOIDED",
        "8" => "SUSPENDED",
        "9" => "SUPERVISED",
        other => return Err(format!("eventStateId: unknown code {other}")),
    };
    if c.cell_id.len() != 14 || !c.cell_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("cellId: not 14 digits: {}", c.cell_id));
    }
    let local = chrono::NaiveDateTime::parse_from_str(&c.create_time, "%Y-%m-%d %H:%M:%S")
        .map_err(|e| format!("createTime: {e}"))?;
    let reported_at = chrono_tz::Asia::Shanghai
        .from_local_datetime(&local)
        .single()
        .ok_or("createTime: not a Shanghai time")?
        .timestamp_millis();
    let category_code = format!("{}{}", c.main_type_id, c.sub_type_id);
    let enforcement_candidate = matches!(
        category_code.as_str(),
        "0103" | "0202" | "0301" | "0303" | "0501" | "0502" | "0503"
    );
    let code = c.party_credit_code.as_deref().filter(|s| !s.is_empty());
    Ok(Canonical {
        id: format!("dcm:{}", c.task_num),
        source_system: "digital_urban",
        case_no: &c.task_num,
        channel,
        category_code,
        category_name: c.sub_type_name.trim(),
        grid_code: &c.cell_id,
        address: c.address.trim(),
        lon: c.coord_x.parse().map_err(|e| format!("coordX: {e}"))?,
        lat: c.coord_y.parse().map_err(|e| format!("coordY: {e}"))?,
        description: &c.event_desc,
        reported_at,
        status,
        reporter: &c.reporter,
        party_name: c.party_name.as_deref().filter(|s| !s.is_empty()),
        party_credit_code: code,
        party_credit_code_valid: code.map(uscc_shape),
        enforcement_candidate,
    })
}

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).expect("usage: urban_serde INPUT");
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut err = BufWriter::new(std::io::stderr().lock());
    let (mut records, mut rejects, mut line) = (0u64, 0u64, Vec::new());
    let mut n = 0usize;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        n += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        let mapped = serde_json::from_slice::<Case<'_>>(text)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                map(&c).and_then(|m| serde_json::to_writer(&mut out, &m).map_err(|e| e.to_string()))
            });
        match mapped {
            Ok(()) => {
                out.write_all(b"\n")?;
                records += 1;
            }
            Err(why) => {
                writeln!(err, "{{\"line\":{n},\"reason\":{why:?}}}")?;
                rejects += 1;
            }
        }
    }
    out.flush()?;
    writeln!(err, "{records} record(s), {rejects} reject(s)")?;
    Ok(())
}
