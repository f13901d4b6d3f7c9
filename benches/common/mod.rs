//! What the benchmarks share: the workload and the statistics.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// `records` lines of the shared workload (`../shared/bench/gen_urban_cases.py
/// N`, default seed), cached in the target folder.
pub fn workload(records: usize) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(format!("urban_cases_{records}.jsonl"));
    if let Ok(bytes) = std::fs::read(&cache) {
        return bytes;
    }
    // The shared workload; the repository keeps a verbatim copy for clones
    // without `../shared`.
    let shared = root.join("../shared/bench/gen_urban_cases.py");
    let generator = if shared.exists() {
        shared
    } else {
        root.join("benches/workload/gen_urban_cases.py")
    };
    eprintln!("workload generator: {}", generator.display());
    let out = std::process::Command::new("python3")
        .arg(&generator)
        .arg(records.to_string())
        .output()
        .expect("python3 runs the shared generator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::write(&cache, &out.stdout);
    out.stdout
}

/// A name part unique to this run (topics, groups, departments).
pub fn tag() -> String {
    format!("{}-{:06x}", std::process::id(), fastrand::u32(..0xFFFFFF))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The workload's lines.
pub fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

/// A positive integer from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
