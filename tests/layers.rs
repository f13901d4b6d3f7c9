//! The rooms of the hub stay apart, as docs/EXTENDING.md ("The rooms and their walls")
//! draws them: read from the sources, so that an import that crosses a
//! wall fails here with the file and line that crossed it.
//!
//! - No cycle among the top-level modules of `duijie`, nor among the
//!   files of one folder (of `src/` and of `connectors/src/`).
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
    for room in [
        "delivery",
        "desk",
        "entity",
        "keepers",
        "lead",
        "quality",
        "supervision",
    ] {
        let edges = graph
            .get(room)
            .unwrap_or_else(|| panic!("no module `{room}`"));
        for wall in ["config", "runtime", "check"] {
            if let Some(at) = edges.get(wall) {
                panic!("`{room}` reaches into `{wall}` at {}", at.join(", "));
            }
        }
    }
    // The bus carries records; what a record means is the mapping's. What
    // arrives outside a pipeline is mapped by `intake`, above both.
    if let Some(at) = graph["bus"].get("mapping") {
        panic!(
            "the bus reaches into the mapping engine at {}",
            at.join(", ")
        );
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

/// Every field name the canonical schemas (`schemas/*.avsc`) declare, at
/// any depth.
fn schema_fields(dir: &Path) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let (Some(serde_json::Value::String(name)), Some(_)) =
                    (o.get("name"), o.get("type"))
                {
                    out.insert(name.clone());
                }
                o.values().for_each(|x| walk(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("schemas/ reads") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "avsc") {
            let text = std::fs::read_to_string(&path).expect("a schema reads");
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            walk(&v, &mut out);
        }
    }
    out
}

/// The rooms that read canonical records by JSON pointer (the entity
/// library, the credit rules, the keepers) read fields the schemas have:
/// a schema that renames a field fails here, with the file and line that
/// still reads the old name, not at run time. A pointer is a string
/// literal of lower-case segments (`"/party/credit_code"`) given to a
/// reader; each segment must be a field some schema declares, or such a
/// field with the `_masked` suffix the personal-data rule adds.
#[test]
fn the_canonical_fields_the_rooms_read_are_in_the_schemas() {
    let root = root();
    let mut fields = schema_fields(&root.join("schemas"));
    // The hub's own records a room reads back: the blacklist entry the
    // keeper writes (`"field": …` in its `json!`) and the entity library
    // indexes.
    fields.extend(json_keys_written(
        &root.join("src/keepers/blacklist/mod.rs"),
    ));
    let pointer = pointers_in();
    let mut unknown = Vec::new();
    let mut seen = 0;
    for dir in ["src/entity", "src/keepers", "src/credit.rs"] {
        let path = root.join(dir);
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a source file reads");
            // A unit test may read the fields of a schema it writes itself
            // (`{"name": "respondent", "type": …}` in the same file).
            let own = declared_in(&text);
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                // Routes (`.route("/public/credit", …)`) are no fields.
                if code.starts_with("//") || code.starts_with("#[") || code.contains(".route(") {
                    continue;
                }
                for p in pointer(line) {
                    seen += 1;
                    for segment in p.split('/').skip(1) {
                        let base = segment.strip_suffix("_masked").unwrap_or(segment);
                        if !fields.contains(segment)
                            && !fields.contains(base)
                            && !own.contains(segment)
                        {
                            unknown.push(format!(
                                "{}:{}: `{p}` reads `{segment}`, which no schema in schemas/ declares",
                                file.strip_prefix(&root).unwrap_or(&file).display(),
                                n + 1
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        seen > 50,
        "the readers' pointers were not found ({seen}): has the way they read changed?"
    );
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
}

/// The field names the Avro schemas written in a source file declare:
/// `"name": "X", "type"` (a record's own name has no `type` beside it).
fn declared_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for piece in text.split("{\"name\": \"").skip(1) {
        if let Some((name, rest)) = piece.split_once('"')
            && rest.trim_start().starts_with(", \"type\"")
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            out.insert(name.to_owned());
        }
    }
    out
}

/// The JSON pointers in a line: string literals `"/a/b"` of lower-case
/// ASCII, digits and `_`, given to a reader (`s(`, `i(`, `pointer(`,
/// `get_str(`… — any call whose argument list holds the literal).
fn pointers_in() -> impl Fn(&str) -> Vec<String> {
    |line: &str| {
        let mut out = Vec::new();
        let mut rest = line;
        while let Some(at) = rest.find("\"/") {
            let after = &rest[at + 1..];
            let Some(end) = after[1..].find('"') else {
                break;
            };
            let literal = &after[..end + 1];
            let before = rest[..at].trim_end();
            let is_argument = before.ends_with('(') || before.ends_with(',');
            if is_argument
                && literal.len() > 1
                && literal[1..].split('/').all(|s| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                })
            {
                out.push(literal.to_owned());
            }
            rest = &after[end + 2..];
        }
        out
    }
}

/// The keys a source file writes in its `json!` objects: `"key": …`.
fn json_keys_written(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).expect("a source file reads");
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find('"') {
            let after = &rest[at + 1..];
            let Some(end) = after.find('"') else { break };
            let (key, tail) = (&after[..end], &after[end + 1..]);
            if tail.trim_start().starts_with(':')
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                out.insert(key.to_owned());
            }
            rest = tail;
        }
    }
    out
}

/// Within one folder, the files that import each other (`super::<file>`
/// or `crate::<folder>::<file>`, the folder's `mod.rs` left out: a parent
/// and its children are one room), each edge with where it is.
fn folder_graph(dir: &Path, crate_path: &str) -> Graph {
    let mut graph = Graph::new();
    let siblings: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("the folder reads")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs") || p.is_dir())
        .map(|p| {
            p.file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != "mod" && n != "lib" && n != "main")
        .collect();
    for name in &siblings {
        let file = dir.join(format!("{name}.rs"));
        let files = if file.exists() {
            vec![file]
        } else {
            rust_files(&dir.join(name))
        };
        let edges = graph.entry(name.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a source file reads");
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for prefix in ["super::".to_owned(), format!("{crate_path}::")] {
                    for (at, _) in line.match_indices(prefix.as_str()) {
                        let target: String = line[at + prefix.len()..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if siblings.contains(&target) && &target != name {
                            edges.entry(target).or_default().push(format!(
                                "{}:{}",
                                file.display(),
                                n + 1
                            ));
                        }
                    }
                }
            }
        }
    }
    graph
}

/// No two files of one folder import each other, however far round: a
/// folder's rooms are layered too (the desk's pages over its helpers, the
/// transports over the connector kit).
#[test]
fn the_files_of_a_folder_form_no_cycle() {
    let mut folders = vec![(root().join("connectors/src"), "crate".to_owned())];
    for entry in std::fs::read_dir(root().join("src"))
        .expect("src reads")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            folders.push((path, format!("crate::{name}")));
        }
    }
    let mut cycles = Vec::new();
    for (dir, crate_path) in &folders {
        let graph = folder_graph(dir, crate_path);
        for module in graph.keys() {
            if let Some(cycle) = cycle_through(&graph, module) {
                let first = &graph[&cycle[0]][cycle.get(1).unwrap_or(&cycle[0])];
                cycles.push(format!(
                    "{}: {} -> {}; the first step at {}",
                    dir.display(),
                    cycle.join(" -> "),
                    cycle[0],
                    first[0]
                ));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles inside a folder:\n{}",
        cycles.join("\n")
    );
}

/// The longest a function of the house may be without a reason written
/// beside it.
const LONGEST: usize = 100;

/// Each function's name, first line and length in lines, in `text`: from
/// its `fn` line to the brace that closes its body (braces in string and
/// character literals and in comments not counted).
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let after = [
            "pub ",
            "pub(crate) ",
            "pub(super) ",
            "async ",
            "const ",
            "unsafe ",
        ]
        .iter()
        .fold(code, |c, p| c.strip_prefix(p).unwrap_or(c));
        let after = after.strip_prefix("async ").unwrap_or(after);
        let Some(rest) = after.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            let mut in_string = false;
            let mut chars = l.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if in_string => {
                        chars.next();
                    }
                    '"' => in_string = !in_string,
                    '/' if !in_string && chars.peek() == Some(&'/') => break,
                    '\'' if !in_string => {
                        // A character literal: skip it whole ('{', '\'').
                        let mut probe = chars.clone();
                        let first = probe.next();
                        let second = probe.next();
                        if first == Some('\\') || second == Some('\'') {
                            while let Some(x) = chars.next() {
                                if x == '\\' {
                                    chars.next();
                                } else if x == '\'' {
                                    break;
                                }
                            }
                        }
                    }
                    '{' if !in_string => {
                        depth += 1;
                        opened = true;
                    }
                    '}' if !in_string => depth -= 1,
                    ';' if !in_string && !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if !opened && l.trim_end().ends_with(';') {
                break;
            }
            if opened && depth == 0 {
                out.push((name.clone(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

/// No function of the house (the crates' sources, the sandbox, the
/// benchmarks; not the tests) is over [`LONGEST`] lines without a reason
/// written beside it: a doc line `Long because …` just above it. Tests
/// (`#[test]` functions, `tests/`) are scripts and may be long.
#[test]
fn no_function_is_long_without_a_reason_beside_it() {
    let root = root();
    let mut unexplained = Vec::new();
    let mut seen = 0;
    for dir in [
        "src",
        "connectors/src",
        "crypto/src",
        "sandbox/src",
        "benches",
    ] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).expect("a source file reads");
            let lines: Vec<&str> = text.lines().collect();
            for (name, at, length) in functions(&text) {
                seen += 1;
                if length <= LONGEST {
                    continue;
                }
                let above = &lines[at.saturating_sub(16)..at - 1];
                let is_test = above
                    .iter()
                    .rev()
                    .take_while(|l| {
                        let t = l.trim_start();
                        t.starts_with("#[") || t.starts_with("///")
                    })
                    .any(|l| l.contains("test]"));
                let explained = above
                    .iter()
                    .rev()
                    .take_while(|l| {
                        let t = l.trim_start();
                        t.starts_with("#[") || t.starts_with("//")
                    })
                    .any(|l| l.contains("Long because"));
                if !is_test && !explained {
                    unexplained.push(format!(
                        "{}:{at}: `{name}` is {length} lines, with no `Long because …` above it: split it, or say why it is one",
                        file.strip_prefix(&root).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(seen > 500, "the functions were not found ({seen})");
    assert!(unexplained.is_empty(), "{}", unexplained.join("\n"));
}
