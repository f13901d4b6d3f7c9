//! The rooms of the hub stay apart, as the README's architecture section
//! draws them: read from the sources, so that an import that crosses a
//! wall fails here with the file and line that crossed it.
//!
//! - No cycle among the top-level modules of `duijie`.
//! - The rooms (delivery, the keepers, the desk, the entity library,
//!   leads, quality) know neither the deployment file (`config`) nor the
//!   runtime: the config composes the rooms' own configs, the runtime runs
//!   them.
//! - The mapping engine knows no transport and no bus.
//! - A connector knows nothing of Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `crate::<module>` references per top-level module, each with where it
/// is (comment lines skipped: a doc link is no dependency).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the source directory reads") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file reads");
        let edges = graph.entry(module.clone()).or_default();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let target: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    edges
                        .entry(target)
                        .or_default()
                        .push(format!("{}:{}", file.display(), n + 1));
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if any: the modules in order.
fn cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_modules_of_the_hub_form_no_cycle() {
    let graph = graph(&root().join("src"));
    assert!(
        graph.len() > 15,
        "the modules were read: {:?}",
        graph.keys()
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            let first = &graph[&cycle[0]][cycle.get(1).unwrap_or(&cycle[0])];
            panic!(
                "an import cycle: {} -> {}; the first step at {}",
                cycle.join(" -> "),
                cycle[0],
                first[0]
            );
        }
    }
}

#[test]
fn the_rooms_know_neither_the_deployment_file_nor_the_runtime() {
    let graph = graph(&root().join("src"));
    for room in ["delivery", "desk", "entity", "keepers", "lead", "quality"] {
        let edges = graph
            .get(room)
            .unwrap_or_else(|| panic!("no module `{room}`"));
        for wall in ["config", "runtime", "check"] {
            if let Some(at) = edges.get(wall) {
                panic!("`{room}` reaches into `{wall}` at {}", at.join(", "));
            }
        }
    }
    let mapping = &graph["mapping"];
    for wall in ["bus", "runtime", "config", "delivery"] {
        if let Some(at) = mapping.get(wall) {
            panic!(
                "the mapping engine reaches into `{wall}` at {}",
                at.join(", ")
            );
        }
    }
}

#[test]
fn a_connector_knows_nothing_of_kafka() {
    let connectors = root().join("connectors");
    let manifest = std::fs::read_to_string(connectors.join("Cargo.toml")).expect("the manifest");
    assert!(
        !manifest.contains("rdkafka"),
        "connectors/Cargo.toml depends on rdkafka"
    );
    for file in rust_files(&connectors.join("src")) {
        let text = std::fs::read_to_string(&file).expect("a source file reads");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && (code.contains("rdkafka") || code.contains("duijie::")) {
                panic!("{}:{} knows the bus: {line}", file.display(), n + 1);
            }
        }
    }
}
