//! The `duijie` command: its arguments and each command are in `cli`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: the hub allocates and frees across threads (mapping threads,
/// tokio workers, librdkafka's callbacks), where glibc's allocator spends a
/// quarter of the time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    duijie::telemetry::init(&cli.log_format);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", duijie::secrets::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
