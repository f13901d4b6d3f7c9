//! Legal rules as dry runs: `supervision rates`, `calendar due`.

use super::*;

pub(super) fn supervision_rates(a: SupervisionRatesArgs) -> Result<ExitCode> {
    let SupervisionRatesArgs {
        input,
        receipts,
        delivery,
        leads,
        calendar,
        format,
    } = a;
    let cal = duijie::calendar::Calendar::load_dir(&calendar)?;
    let files = duijie::supervision::Files {
        decisions: &input,
        receipts: receipts.as_deref(),
        delivery: &delivery,
        leads: leads.as_deref(),
    };
    let rates = files.rates(&cal).map_err(anyhow::Error::msg)?;
    match format {
        OutputFormat::Table => print!("{}", duijie::supervision::table(&rates)),
        OutputFormat::Json => {
            for r in &rates {
                println!("{}", serde_json::to_string(r)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn calendar_due(a: CalendarDueArgs) -> Result<ExitCode> {
    let CalendarDueArgs {
        from,
        limit,
        calendar,
    } = a;
    let cal = duijie::calendar::Calendar::load_dir(&calendar)?;
    let start = duijie::calendar::parse_time(&from).map_err(anyhow::Error::msg)?;
    let limit: duijie::calendar::Limit = limit.parse().map_err(anyhow::Error::msg)?;
    let due = cal.due(start, limit)?;
    println!(
        "{} + {limit} = {} (Asia/Shanghai), {}",
        duijie::calendar::local_text(start),
        duijie::calendar::local_text(due),
        due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    Ok(ExitCode::SUCCESS)
}
