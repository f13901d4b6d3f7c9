//! Splitting an XML document that holds many records into one fragment per
//! record.
//!
//! A batch export (`<Export><Case>…</Case><Case>…</Case></Export>`) becomes
//! one self-contained fragment per record element, so that each record can
//! be mapped, keyed and dead-lettered on its own. Namespace declarations in
//! scope on the ancestors are copied onto the fragment's root element, so a
//! prefixed fragment still means what it meant in the document.
//!
//! Documents with a DOCTYPE are refused: entity declarations are how XML
//! bombs and external-entity fetches work, and no exchange format here needs
//! them. quick-xml itself never expands custom entities nor fetches
//! anything.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Why a document could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("malformed XML at byte {offset}: {message}")]
    Malformed { offset: u64, message: String },
    #[error("DOCTYPE declarations are not accepted (entity expansion is disabled)")]
    Doctype,
    #[error("document ended inside <{0}> (truncated file?)")]
    Truncated(String),
}

/// One record element cut out of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Self-contained XML text of the record element.
    pub xml: String,
    /// 1-based line of the record's start tag in the document.
    pub line: usize,
}

/// The record being cut: its start offset, its depth, and the namespace
/// declarations it inherits.
type OpenRecord = (usize, usize, Vec<(String, String)>);

/// Cuts every element whose local name is `record_element` out of `doc`.
/// Record elements nested inside another record element stay inside it.
pub fn split(doc: &str, record_element: &str) -> Result<Vec<Fragment>, SplitError> {
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;
    // Namespace declarations per open element, innermost last.
    let mut ns_stack: Vec<Vec<(String, String)>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut open: Option<OpenRecord> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| SplitError::Malformed {
            offset: reader.error_position(),
            message: e.to_string(),
        })?;
        match event {
            Event::DocType(_) => return Err(SplitError::Doctype),
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_empty = matches!(event, Event::Empty(_));
                let decls = namespace_declarations(start);
                let local = start.local_name().as_ref().to_owned();
                let start_at = doc[before..]
                    .find('<')
                    .map(|i| before + i)
                    .unwrap_or(before);
                if open.is_none() && local == record_element {
                    let inherited = inherited_declarations(&ns_stack, &decls);
                    if is_empty {
                        let end = reader.buffer_position() as usize;
                        out.push(Fragment {
                            xml: with_declarations(&doc[start_at..end], &inherited),
                            line: line_of(doc, start_at),
                        });
                    } else {
                        open = Some((start_at, names.len(), inherited));
                    }
                }
                if !is_empty {
                    ns_stack.push(decls);
                    names.push(local);
                }
            }
            Event::End(_) => {
                ns_stack.pop();
                names.pop();
                if let Some((start_at, depth, inherited)) = &open
                    && names.len() == *depth
                {
                    let end = reader.buffer_position() as usize;
                    out.push(Fragment {
                        xml: with_declarations(&doc[*start_at..end], inherited),
                        line: line_of(doc, *start_at),
                    });
                    open = None;
                }
            }
            Event::Eof => {
                if let Some(name) = names.last() {
                    return Err(SplitError::Truncated(name.clone()));
                }
                return Ok(out);
            }
            _ => {}
        }
    }
}

/// The text of the first element named `local` (any namespace) in `xml`,
/// with the predefined entities and character references resolved.
pub fn element_text(xml: &str, local: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut inside = 0usize;
    let mut text = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                if inside > 0 {
                    inside += 1;
                } else if e.local_name().as_ref() == local {
                    inside = 1;
                }
            }
            Event::Empty(e) if inside == 0 && e.local_name().as_ref() == local => {
                return Some(String::new());
            }
            Event::End(_) if inside > 0 => {
                inside -= 1;
                if inside == 0 {
                    return Some(text);
                }
            }
            Event::Text(t) if inside > 0 => text.push_str(&t.xml10_content()),
            Event::CData(c) if inside > 0 => text.push_str(&c.xml10_content()),
            Event::GeneralRef(r) if inside > 0 => {
                if let Ok(Some(ch)) = r.resolve_char_ref() {
                    text.push(ch);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                    text.push_str(s);
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

fn namespace_declarations(start: &quick_xml::events::BytesStart<'_>) -> Vec<(String, String)> {
    start
        .attributes()
        .flatten()
        .filter_map(|a| {
            let key = a.key.as_ref().to_owned();
            if key == "xmlns" || key.starts_with("xmlns:") {
                let value = a.value.to_string();
                Some((key, value))
            } else {
                None
            }
        })
        .collect()
}

/// Declarations in scope from ancestors that the record element does not
/// redeclare itself; the innermost declaration of a prefix wins.
fn inherited_declarations(
    stack: &[Vec<(String, String)>],
    own: &[(String, String)],
) -> Vec<(String, String)> {
    let mut result: Vec<(String, String)> = Vec::new();
    for level in stack.iter().rev() {
        for (k, v) in level {
            if own.iter().any(|(o, _)| o == k) || result.iter().any(|(r, _)| r == k) {
                continue;
            }
            result.push((k.clone(), v.clone()));
        }
    }
    result.sort();
    result
}

fn with_declarations(fragment: &str, decls: &[(String, String)]) -> String {
    if decls.is_empty() {
        return fragment.to_owned();
    }
    // Insert right after the element name of the root start tag.
    let name_end = fragment[1..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .map(|i| i + 1)
        .unwrap_or(fragment.len());
    let mut out = String::with_capacity(fragment.len() + 64);
    out.push_str(&fragment[..name_end]);
    for (k, v) in decls {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(v); // raw attribute text, already escaped in the source
        out.push('"');
    }
    out.push_str(&fragment[name_end..]);
    out
}

fn line_of(doc: &str, offset: usize) -> usize {
    1 + memchr_count(b'\n', &doc.as_bytes()[..offset])
}

fn memchr_count(needle: u8, hay: &[u8]) -> usize {
    hay.iter().filter(|&&b| b == needle).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_repeated_records_and_carries_namespaces() {
        let doc = r#"<?xml version="1.0"?>
<ex:Export xmlns:ex="urn:yc:export" xmlns:c="urn:yc:case">
  <c:Case id="1"><c:No>YC1</c:No></c:Case>
  <c:Case id="2"><c:No>YC2</c:No><c:Case id="nested"/></c:Case>
  <c:Case id="3"/>
</ex:Export>"#;
        let parts = split(doc, "Case").unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0].xml,
            r#"<c:Case xmlns:c="urn:yc:case" xmlns:ex="urn:yc:export" id="1"><c:No>YC1</c:No></c:Case>"#
        );
        assert_eq!(parts[0].line, 3);
        assert!(parts[1].xml.contains(r#"<c:Case id="nested"/>"#));
        assert_eq!(
            parts[2].xml,
            r#"<c:Case xmlns:c="urn:yc:case" xmlns:ex="urn:yc:export" id="3"/>"#
        );
    }

    #[test]
    fn element_text_finds_the_first_element_by_local_name() {
        let xml = "<c:Case xmlns:c=\"u\"><c:No>YC&amp;1</c:No><c:No>2</c:No><Empty/></c:Case>";
        assert_eq!(element_text(xml, "No").as_deref(), Some("YC&1"));
        assert_eq!(element_text(xml, "Empty").as_deref(), Some(""));
        assert_eq!(element_text(xml, "Missing"), None);
    }

    #[test]
    fn doctype_is_refused() {
        let doc =
            r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x><Case>&a;</Case></x>"#;
        assert_eq!(split(doc, "Case"), Err(SplitError::Doctype));
    }

    #[test]
    fn truncated_document_is_an_error() {
        let doc = "<Export><Case><No>1</No></Case><Case><No>2</No>";
        assert!(matches!(split(doc, "Case"), Err(SplitError::Truncated(_))));
    }

    #[test]
    fn mismatched_tags_are_malformed() {
        let doc = "<Export><Case><No>1</Case></Export>";
        assert!(matches!(
            split(doc, "Case"),
            Err(SplitError::Malformed { .. })
        ));
    }
}
