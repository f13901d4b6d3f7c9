//! Reading the paths of a [`Trie`] out of an XML record.
//!
//! The payload may arrive in GBK/GB18030 (declared in its prolog or agreed
//! per exchange) or UTF-8 with a BOM; it is decoded strictly first. Paths
//! start below the root element. Only the predefined entities and character
//! references are resolved: a DOCTYPE is refused and any other entity
//! reference is an error, so nothing is ever expanded or fetched.

use super::paths::{Trie, TrieNode};
use crate::value::Val;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use std::borrow::Cow;

/// One open element and the trie nodes it stands for.
struct Frame<'t> {
    /// Trie nodes this element matches, and whether captures collect.
    targets: Vec<(&'t TrieNode, bool)>,
    /// Per (trie node, key index): occurrences of that child seen so far.
    seen: Vec<(usize, usize, usize)>,
    /// Text collected for capturing targets.
    text: Option<String>,
}

pub(crate) fn read(
    trie: &Trie,
    payload: &[u8],
    fallback: &'static encoding_rs::Encoding,
    out: &mut [Val<'_>],
) -> Result<(), String> {
    let text = duijie_connectors::text::decode_xml(payload, fallback).map_err(|e| e.to_string())?;
    let mut reader = NsReader::from_str(&text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut saw_root = false;
    loop {
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(r) => r,
            Err(e) => {
                let at = reader.error_position();
                return Err(format!("malformed XML at byte {at}: {e}"));
            }
        };
        let element_ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.0.to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => {
                return Err(format!(
                    "malformed XML: namespace prefix `{prefix}` is not declared"
                ));
            }
        };
        match event {
            Event::DocType(_) => {
                return Err(
                    "DOCTYPE declarations are not accepted (entity expansion is disabled)".into(),
                );
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let targets = if !saw_root {
                    saw_root = true;
                    vec![(&trie.root, false)]
                } else if let Some(parent) = stack.last_mut() {
                    child_targets(parent, element_ns.as_deref(), e.local_name().as_ref())
                } else {
                    return Err("malformed XML: more than one root element".into());
                };
                for (node, collect) in &targets {
                    read_attributes(&reader, e, node, *collect, out)?;
                }
                let captures = targets.iter().any(|(n, _)| n.capture.is_some());
                let frame = Frame {
                    targets,
                    seen: Vec::new(),
                    text: captures.then(String::new),
                };
                if is_empty {
                    close(frame, out);
                } else {
                    stack.push(frame);
                }
            }
            Event::End(_) => {
                let frame = stack.pop().ok_or("malformed XML: unexpected end tag")?;
                close(frame, out);
            }
            Event::Text(t) => append_text(&mut stack, &t.xml10_content()),
            Event::CData(c) => append_text(&mut stack, &c.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved: Cow<'_, str> = match r.resolve_char_ref() {
                    Ok(Some(ch)) => Cow::Owned(ch.to_string()),
                    Ok(None) => match quick_xml::escape::resolve_predefined_entity(&r) {
                        Some(s) => Cow::Borrowed(s),
                        None => {
                            return Err(format!(
                                "undefined entity `&{};` (only the predefined XML entities are accepted)",
                                &*r
                            ));
                        }
                    },
                    Err(e) => return Err(format!("bad character reference `&{};`: {e}", &*r)),
                };
                append_text(&mut stack, &resolved);
            }
            Event::Eof => {
                if !stack.is_empty() {
                    return Err("document ended before its root element closed (truncated?)".into());
                }
                if !saw_root {
                    return Err("document has no root element".into());
                }
                return Ok(());
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
}

/// The trie nodes a child element `name` of `parent` stands for.
fn child_targets<'t>(
    parent: &mut Frame<'t>,
    ns: Option<&str>,
    name: &str,
) -> Vec<(&'t TrieNode, bool)> {
    let mut result = Vec::new();
    for (t, (node, collect)) in parent.targets.iter().enumerate() {
        for (k, (key_ns, key, child)) in node.keys.iter().enumerate() {
            if key != name || (key_ns.is_some() && key_ns.as_deref() != ns) {
                continue;
            }
            let occurrence = match parent.seen.iter_mut().find(|(a, b, _)| *a == t && *b == k) {
                Some(entry) => {
                    entry.2 += 1;
                    entry.2 - 1
                }
                None => {
                    parent.seen.push((t, k, 1));
                    0
                }
            };
            // `Item.x` reads the first <Item>; `Item[n].x` the n-th;
            // `Item[*].x` every one.
            if occurrence == 0
                && (child.capture.is_some() || !child.keys.is_empty() || !child.attrs.is_empty())
            {
                result.push((child, *collect));
            }
            if let Some((_, indexed)) = child.items.iter().find(|(n, _)| *n == occurrence) {
                result.push((indexed, *collect));
            }
            if let Some(all) = &child.all {
                result.push((all.as_ref(), true));
            }
        }
    }
    result
}

fn read_attributes(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
    node: &TrieNode,
    collect: bool,
    out: &mut [Val<'_>],
) -> Result<(), String> {
    if node.attrs.is_empty() {
        return Ok(());
    }
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("malformed XML attribute: {e}"))?;
        let (resolved, local) = reader.resolver().resolve_attribute(attr.key);
        let attr_ns = match resolved {
            ResolveResult::Bound(ns) => Some(ns.0),
            _ => None,
        };
        for (want_ns, want, slot) in &node.attrs {
            if want.as_str() == local.as_ref()
                && (want_ns.is_none() || want_ns.as_deref() == attr_ns)
            {
                let value = attr
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| format!("attribute `{want}`: {e}"))?
                    .into_owned();
                put(out, *slot, Val::Str(Cow::Owned(value)), collect);
            }
        }
    }
    Ok(())
}

fn append_text(stack: &mut [Frame<'_>], text: &str) {
    for frame in stack.iter_mut() {
        if let Some(buf) = &mut frame.text {
            buf.push_str(text);
        }
    }
}

fn close(frame: Frame<'_>, out: &mut [Val<'_>]) {
    let text = frame.text.unwrap_or_default();
    for (node, collect) in frame.targets {
        if let Some(slot) = node.capture {
            put(out, slot, Val::Str(Cow::Owned(text.clone())), collect);
        }
    }
}

fn put(out: &mut [Val<'_>], slot: usize, value: Val<'static>, collect: bool) {
    if collect {
        match &mut out[slot] {
            Val::List(items) => items.push(value),
            other => *other = Val::List(vec![value]),
        }
    } else if out[slot].is_null() {
        out[slot] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::paths::parse_path;
    use std::collections::BTreeMap;

    fn read_paths(
        paths: &[&str],
        ns: &[(&str, &str)],
        xml: &[u8],
    ) -> Result<Vec<Val<'static>>, String> {
        let ns: BTreeMap<String, String> = ns
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let mut t = Trie::default();
        for p in paths {
            t.add(parse_path(p, &ns).unwrap()).unwrap();
        }
        let mut out = vec![Val::Null; t.paths.len()];
        read(&t, xml, encoding_rs::UTF_8, &mut out)?;
        Ok(out.into_iter().map(Val::into_owned).collect())
    }

    #[test]
    fn attributes_namespaces_and_repeated_elements() {
        let xml = r#"<c:Case xmlns:c="urn:case" xmlns:o="urn:other" no="YC1">
            <c:Name>A &amp; B &#x5B9C;</c:Name><o:Name>other</o:Name>
            <Item>first</Item><Item>second</Item><Item><![CDATA[<third>]]></Item>
        </c:Case>"#;
        let out = read_paths(
            &["@no", "c:Name", "o:Name", "Item", "Item[1]", "Item[*]"],
            &[("c", "urn:case"), ("o", "urn:other")],
            xml.as_bytes(),
        )
        .unwrap();
        assert_eq!(out[0], Val::Str("YC1".into()));
        assert_eq!(out[1], Val::Str("A & B 宜".into()));
        assert_eq!(out[2], Val::Str("other".into()));
        assert_eq!(out[3], Val::Str("first".into()));
        assert_eq!(out[4], Val::Str("second".into()));
        assert_eq!(
            out[5],
            Val::List(vec![
                Val::Str("first".into()),
                Val::Str("second".into()),
                Val::Str("<third>".into())
            ])
        );
    }

    #[test]
    fn gbk_payload_is_decoded() {
        let (bytes, _, _) = encoding_rs::GB18030.encode(
            "<?xml version=\"1.0\" encoding=\"GB18030\"?><Case><Name>占道经营</Name></Case>",
        );
        let out = read_paths(&["Name"], &[], &bytes).unwrap();
        assert_eq!(out[0], Val::Str("占道经营".into()));
    }

    #[test]
    fn entity_tricks_are_refused() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><Case><N>&b;</N></Case>"#;
        assert!(
            read_paths(&["N"], &[], bomb)
                .unwrap_err()
                .contains("DOCTYPE")
        );
        let undefined = br#"<Case><N>&xxe;</N></Case>"#;
        assert!(
            read_paths(&["N"], &[], undefined)
                .unwrap_err()
                .contains("undefined entity")
        );
    }

    #[test]
    fn truncated_record_is_an_error() {
        assert!(read_paths(&["N"], &[], b"<Case><N>1</N>").is_err());
    }
}
