//! Reading the paths of a [`Trie`] out of a JSON payload in one pass.
//!
//! Members no rule reads are skipped without being built; strings that
//! need no unescaping are borrowed from the payload.

use super::paths::{Trie, TrieNode};
use crate::value::Val;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Fills `out[slot]` for every path of `trie` present in `input`.
///
/// Read with `sonic-rs` (SIMD scanning: skipping and string checks a
/// block of bytes at a time, UTF-8 checked as it goes); a payload it
/// refuses is read again with `serde_json`, whose error (line, column, what
/// was expected) is the one a reject carries, as it always has.
pub(crate) fn read<'a>(trie: &Trie, input: &'a [u8], out: &mut [Val<'a>]) -> Result<(), String> {
    let mut de = sonic_rs::Deserializer::from_slice(input);
    let fast = NodeSeed {
        node: &trie.root,
        out: &mut *out,
        collect: false,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if fast.is_ok() {
        return Ok(());
    }
    out.fill(Val::Null);
    // One UTF-8 check of the whole payload rather than one a string: the
    // text reader does not check again. Bytes that are not UTF-8 go to the
    // byte reader, whose error says where.
    match std::str::from_utf8(input) {
        Ok(text) => read_from(trie, serde_json::Deserializer::from_str(text), out),
        Err(_) => read_from(trie, serde_json::Deserializer::from_slice(input), out),
    }?;
    // serde_json took what sonic-rs refused: say so rather than guess.
    Err(format!(
        "not valid JSON: {}",
        fast.err().map(|e| e.to_string()).unwrap_or_default()
    ))
}

fn read_from<'a, R: serde_json::de::Read<'a>>(
    trie: &Trie,
    mut de: serde_json::Deserializer<R>,
    out: &mut [Val<'a>],
) -> Result<(), String> {
    NodeSeed {
        node: &trie.root,
        out,
        collect: false,
    }
    .deserialize(&mut de)
    .map_err(|e| format!("not valid JSON: {e}"))?;
    de.end().map_err(|e| format!("not valid JSON: {e}"))?;
    Ok(())
}

struct NodeSeed<'t, 'o, 'a> {
    node: &'t TrieNode,
    out: &'o mut [Val<'a>],
    /// Inside `[*]`: captures append to a list.
    collect: bool,
}

impl<'t, 'o, 'a> NodeSeed<'t, 'o, 'a> {
    fn store(self, value: Val<'a>) {
        if let Some(slot) = self.node.capture {
            put(self.out, slot, value, self.collect);
        }
    }
}

fn put<'a>(out: &mut [Val<'a>], slot: usize, value: Val<'a>, collect: bool) {
    if collect {
        match &mut out[slot] {
            Val::List(items) => items.push(value),
            other => *other = Val::List(vec![value]),
        }
    } else {
        Val::put(&mut out[slot], value);
    }
}

impl<'de, 't, 'o> DeserializeSeed<'de> for NodeSeed<'t, 'o, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 't, 'o> Visitor<'de> for NodeSeed<'t, 'o, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.store(Val::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.store(Val::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.store(Val::Str(Cow::Owned(v)));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.store(Val::Int(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.store(match i64::try_from(v) {
            Ok(i) => Val::Int(i),
            Err(_) => Val::Str(Cow::Owned(v.to_string())),
        });
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.store(Val::Double(v));
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.store(Val::Bool(v));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let NodeSeed { node, out, collect } = self;
        if node.keys.is_empty() {
            // A whole object captured: keep it as JSON text.
            let value: serde_json::Value =
                serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            if let Some(slot) = node.capture {
                put(out, slot, Val::Str(Cow::Owned(value.to_string())), collect);
            }
            return Ok(());
        }
        // Members mostly come in the order the mapping reads them (an
        // export writes every record alike): the search for a name starts
        // after the last one found.
        let mut from = 0;
        while let Some(child) = map.next_key_seed(KeySeed { node, from })? {
            match child {
                Some(i) => {
                    from = i + 1;
                    map.next_value_seed(NodeSeed {
                        node: &node.keys[i].2,
                        out: &mut *out,
                        collect,
                    })?
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let NodeSeed { node, out, collect } = self;
        if node.items.is_empty() && node.all.is_none() {
            // An array read as a whole: a list of its scalars.
            if let Some(slot) = node.capture {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<serde_json::Value>()? {
                    items.push(json_scalar(v));
                }
                put(out, slot, Val::List(items), collect);
            } else {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
            }
            return Ok(());
        }
        if let Some(all) = &node.all
            && let Some(slot) = all.capture
            && !collect
        {
            // `[*]` over an empty array still yields an (empty) list.
            out[slot] = Val::List(Vec::new());
        }
        let mut index = 0usize;
        loop {
            let indexed = node.items.iter().find(|(n, _)| *n == index).map(|(_, c)| c);
            let more = match (indexed, &node.all) {
                (Some(child), None) => seq.next_element_seed(NodeSeed {
                    node: child,
                    out: &mut *out,
                    collect,
                })?,
                (None, Some(all)) => seq.next_element_seed(NodeSeed {
                    node: all,
                    out: &mut *out,
                    collect: true,
                })?,
                (Some(child), Some(_)) => {
                    // Both `a[1]` and `a[*]` read: take the element as JSON
                    // once and feed both.
                    match seq.next_element::<serde_json::Value>()? {
                        Some(v) => {
                            let text = v.to_string();
                            let _ = read_owned(child, &text, out, collect);
                            if let Some(all) = &node.all {
                                let _ = read_owned(all, &text, out, true);
                            }
                            Some(())
                        }
                        None => None,
                    }
                }
                (None, None) => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if more.is_none() {
                break;
            }
            index += 1;
        }
        Ok(())
    }
}

/// Reads a detached JSON text into `out`, owning what it keeps.
fn read_owned(
    node: &TrieNode,
    text: &str,
    out: &mut [Val<'_>],
    collect: bool,
) -> Result<(), String> {
    let mut scratch: Vec<Val<'_>> = vec![Val::Null; out.len()];
    let mut de = serde_json::Deserializer::from_str(text);
    NodeSeed {
        node,
        out: &mut scratch,
        collect,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    for (slot, v) in scratch.into_iter().enumerate() {
        if !v.is_null() {
            let v = v.into_owned();
            match (&mut out[slot], v) {
                (Val::List(existing), Val::List(new)) if collect => existing.extend(new),
                (target, v) => *target = v,
            }
        }
    }
    Ok(())
}

fn json_scalar(v: serde_json::Value) -> Val<'static> {
    match v {
        serde_json::Value::Null => Val::Null,
        serde_json::Value::Bool(b) => Val::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Val::Str(Cow::Owned(s)),
        other => Val::Str(Cow::Owned(other.to_string())),
    }
}

/// Matches a member name against the node's keys without allocating,
/// trying the keys from `from` on (wrapping round).
struct KeySeed<'t> {
    node: &'t TrieNode,
    from: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        let keys = &self.node.keys;
        let from = self.from.min(keys.len());
        Ok((from..keys.len()).chain(0..from).find(|&i| keys[i].1 == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::paths::parse_path;
    use std::collections::BTreeMap;

    fn trie(paths: &[&str]) -> Trie {
        let mut t = Trie::default();
        for p in paths {
            t.add(parse_path(p, &BTreeMap::new()).unwrap()).unwrap();
        }
        t
    }

    #[test]
    fn reads_nested_indexed_and_all_paths() {
        let t = trie(&[
            "a",
            "b.c",
            "list[1].n",
            "list[*].n",
            "tags",
            "missing",
            "obj",
        ]);
        let input = r#"{"a":"x\u00e9","skip":{"deep":[1,2,{"z":1}]},"b":{"c":12},
            "list":[{"n":"one"},{"n":"two"}],"tags":["p",3],"obj":{"k":true}}"#;
        let mut out = vec![Val::Null; t.paths.len()];
        read(&t, input.as_bytes(), &mut out).unwrap();
        assert_eq!(out[0], Val::Str("xé".into()));
        assert_eq!(out[1], Val::Int(12));
        assert_eq!(out[2], Val::Str("two".into()));
        assert_eq!(
            out[3],
            Val::List(vec![Val::Str("one".into()), Val::Str("two".into())])
        );
        assert_eq!(out[4], Val::List(vec![Val::Str("p".into()), Val::Int(3)]));
        assert_eq!(out[5], Val::Null);
        assert_eq!(out[6], Val::Str(r#"{"k":true}"#.into()));
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let t = trie(&["a"]);
        let mut out = vec![Val::Null];
        read(&t, r#"{"a":"宜昌"}"#.as_bytes(), &mut out).unwrap();
        assert!(matches!(out[0], Val::Str(Cow::Borrowed(_))));
    }

    #[test]
    fn broken_json_is_an_error_with_position() {
        let t = trie(&["a"]);
        let mut out = vec![Val::Null];
        let err = read(&t, br#"{"a":"x","b":}"#, &mut out).unwrap_err();
        assert!(err.contains("column"), "{err}");
        assert!(read(&t, br#"{"a":1} trailing"#, &mut out).is_err());
    }

    #[test]
    fn members_in_any_order_are_found() {
        let t = trie(&["a", "b", "c"]);
        // The mapping's order, another order, repeats and unread members.
        for input in [
            r#"{"a":"1","b":"2","c":"3"}"#,
            r#"{"c":"3","x":0,"b":"2","a":"1"}"#,
            r#"{"b":"2","c":"3","y":[1],"a":"1"}"#,
            r#"{"a":"0","c":"3","b":"2","a":"1"}"#,
        ] {
            let mut out = vec![Val::Null; 3];
            read(&t, input.as_bytes(), &mut out).unwrap();
            assert_eq!(
                out,
                vec![
                    Val::Str("1".into()),
                    Val::Str("2".into()),
                    Val::Str("3".into())
                ],
                "{input}"
            );
        }
    }

    /// sonic-rs and serde_json read the same values, and refuse the same
    /// payloads (with serde_json's words).
    #[test]
    fn the_two_readers_agree() {
        let t = trie(&["s", "e", "i", "big", "f", "b", "n", "o"]);
        fn general<'a>(t: &Trie, input: &'a str) -> Result<Vec<Val<'a>>, String> {
            let mut out = vec![Val::Null; t.paths.len()];
            read_from(t, serde_json::Deserializer::from_str(input), &mut out).map(|()| out)
        }
        for input in [
            r#"{"s":"宜昌","e":"a\"b\u00e9","i":-42,"big":18446744073709551615,"f":1.5e3,"b":true,"n":null,"skip":{"x":[1,{"y":2}]}}"#,
            r#" { "s" : "x" , "s" : "y" , "n" : 1 , "n" : null } "#,
            r#"{"o":{"k":[1,2]},"s":"z"}"#,
            r#"{}"#,
            r#"{"i":1e5,"f":-0}"#,
            r#"{"f":0.1234567890123456789,"i":1.7976931348623157e308,"big":123456789012345678901234567890}"#,
            r#"{"f":5e-324,"i":-9223372036854775808,"big":9223372036854775808,"e":"\ud83d\ude00\t"}"#,
        ] {
            let mut out = vec![Val::Null; t.paths.len()];
            read(&t, input.as_bytes(), &mut out).unwrap();
            assert_eq!(Ok(out), general(&t, input), "{input}");
        }
        for refused in [
            r#"{"s":"x"} trailing"#,
            r#"{"s":"x"}{"s":"y"}"#,
            r#"{"s":"x",}"#,
            r#"{"s":"x""#,
        ] {
            let mut out = vec![Val::Null; t.paths.len()];
            let Err(err) = read(&t, refused.as_bytes(), &mut out) else {
                panic!("{refused}: accepted");
            };
            assert!(err.starts_with("not valid JSON"), "{refused}: {err}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error() {
        let t = trie(&["a"]);
        let mut out = vec![Val::Null];
        let err = read(&t, b"{\"a\":\"\xff\xfe\"}", &mut out).unwrap_err();
        assert!(err.starts_with("not valid JSON"), "{err}");
        assert!(err.contains("unicode") || err.contains("UTF-8"), "{err}");
    }
}
