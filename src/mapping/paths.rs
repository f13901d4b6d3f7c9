//! Paths into payloads, and the trie of every path one mapping reads.
//!
//! Syntax, the same for JSON and XML:
//! - `a.b.c` walks object members (JSON) or child elements (XML);
//! - `a[2]` takes the third element of an array, or the third `<a>` among
//!   its siblings; `a[*]` takes all of them, and the value becomes a list;
//! - `@id` (XML) is an attribute of the element;
//! - `c:No` (XML) matches element `No` in the namespace the mapping binds to
//!   prefix `c`; an unprefixed segment matches the local name in any
//!   namespace. XML paths start below the record's root element.
//! - Without an index, a repeated XML element gives its first occurrence.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Object member or child element (optionally namespace-qualified).
    Key {
        ns: Option<String>,
        name: String,
    },
    /// XML attribute.
    Attr {
        ns: Option<String>,
        name: String,
    },
    Index(usize),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub text: String,
    pub steps: Vec<Step>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a path; `namespaces` resolves prefixes (XML only).
pub(crate) fn parse_path(
    text: &str,
    namespaces: &std::collections::BTreeMap<String, String>,
) -> Result<Path, String> {
    if text.trim().is_empty() {
        return Err("empty path".into());
    }
    let mut steps = Vec::new();
    for (i, segment) in text.split('.').enumerate() {
        let (name, mut rest) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if name.is_empty() {
            if i == 0 && !rest.is_empty() {
                // `[0].a` on a top-level array
            } else {
                return Err(format!("empty segment in path `{text}`"));
            }
        } else {
            let (attr, name) = match name.strip_prefix('@') {
                Some(n) => (true, n),
                None => (false, name),
            };
            let (ns, local) = match name.split_once(':') {
                Some((prefix, local)) => {
                    let uri = namespaces.get(prefix).ok_or_else(|| {
                        format!("prefix `{prefix}` in path `{text}` is not bound in `namespaces`")
                    })?;
                    (Some(uri.clone()), local)
                }
                None => (None, name),
            };
            if local.is_empty() {
                return Err(format!("empty name in path `{text}`"));
            }
            let name = local.to_owned();
            steps.push(if attr {
                Step::Attr { ns, name }
            } else {
                Step::Key { ns, name }
            });
        }
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("unclosed `[` in path `{text}`"))?;
            let inner = &rest[1..close];
            steps.push(if inner == "*" {
                Step::All
            } else {
                Step::Index(
                    inner
                        .parse()
                        .map_err(|_| format!("`[{inner}]` in path `{text}` is not an index"))?,
                )
            });
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("unexpected `{rest}` in path `{text}`"));
            }
        }
    }
    if let Some(pos) = steps.iter().position(|s| matches!(s, Step::Attr { .. }))
        && pos != steps.len() - 1
    {
        return Err(format!("an attribute must end the path `{text}`"));
    }
    if steps.iter().filter(|s| matches!(s, Step::All)).count() > 1 {
        return Err(format!("path `{text}` may hold at most one `[*]`"));
    }
    Ok(Path {
        text: text.to_owned(),
        steps,
    })
}

/// Every path a mapping reads, merged into one tree so a payload is walked
/// once and only into the branches some rule needs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trie {
    pub root: TrieNode,
    pub paths: Vec<Path>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct TrieNode {
    /// Input slot that receives the value at this node.
    pub capture: Option<usize>,
    pub keys: Vec<(Option<String>, String, TrieNode)>,
    pub attrs: Vec<(Option<String>, String, usize)>,
    pub items: Vec<(usize, TrieNode)>,
    pub all: Option<Box<TrieNode>>,
}

impl Trie {
    /// Adds a path and returns its input slot; the same path read by two
    /// rules shares one slot.
    pub(super) fn add(&mut self, path: Path) -> Result<usize, String> {
        if let Some(i) = self.paths.iter().position(|p| p.steps == path.steps) {
            return Ok(i);
        }
        let slot = self.paths.len();
        let mut node = &mut self.root;
        for (i, step) in path.steps.iter().enumerate() {
            let last = i == path.steps.len() - 1;
            match step {
                Step::Key { ns, name } => {
                    let at = match node.keys.iter().position(|(n, k, _)| n == ns && k == name) {
                        Some(at) => at,
                        None => {
                            node.keys
                                .push((ns.clone(), name.clone(), TrieNode::default()));
                            node.keys.len() - 1
                        }
                    };
                    node = &mut node.keys[at].2;
                }
                Step::Attr { ns, name } => {
                    node.attrs.push((ns.clone(), name.clone(), slot));
                    self.paths.push(path);
                    return Ok(slot);
                }
                Step::Index(n) => {
                    let at = match node.items.iter().position(|(k, _)| k == n) {
                        Some(at) => at,
                        None => {
                            node.items.push((*n, TrieNode::default()));
                            node.items.len() - 1
                        }
                    };
                    node = &mut node.items[at].1;
                }
                Step::All => {
                    node = node.all.get_or_insert_with(Default::default);
                }
            }
            if last {
                if node.capture.is_some() {
                    return Err(format!("path `{path}` is read twice"));
                }
                node.capture = Some(slot);
            }
        }
        self.paths.push(path);
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn parses_indexes_attributes_and_prefixes() {
        let mut ns = BTreeMap::new();
        ns.insert("c".to_string(), "urn:case".to_string());
        let p = parse_path("c:Case.items[2].@id", &ns).unwrap();
        assert_eq!(
            p.steps,
            vec![
                Step::Key {
                    ns: Some("urn:case".into()),
                    name: "Case".into()
                },
                Step::Key {
                    ns: None,
                    name: "items".into()
                },
                Step::Index(2),
                Step::Attr {
                    ns: None,
                    name: "id".into()
                },
            ]
        );
        assert!(parse_path("x:Case", &ns).unwrap_err().contains("not bound"));
        assert!(parse_path("a.@id.b", &ns).is_err());
        assert!(parse_path("a[x]", &ns).is_err());
    }
}
