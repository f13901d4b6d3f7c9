//! Turning bytes from government systems into UTF-8 text.
//!
//! Files and responses arrive as UTF-8 (with or without a BOM), UTF-16 with a
//! BOM, or GBK/GB18030, sometimes declared in an XML declaration and
//! sometimes only known from the exchange agreement. Decoding is strict: a
//! byte sequence that is not valid in the chosen encoding is an error with a
//! reason, never a silent replacement character.

use encoding_rs::{Encoding, GB18030, UTF_8, UTF_16BE, UTF_16LE};
use std::borrow::Cow;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown character encoding `{0}`")]
    UnknownEncoding(String),
    #[error("bytes are not valid {encoding} (first bad byte near offset {offset})")]
    Malformed {
        encoding: &'static str,
        offset: usize,
    },
}

/// Looks up an encoding by a label such as `utf-8`, `gbk`, `GB18030`.
///
/// GBK and GB2312 are decoded with the GB18030 decoder, a strict superset, so
/// a file labelled GBK that uses a GB18030 character still decodes.
pub fn encoding_for_label(label: &str) -> Result<&'static Encoding, DecodeError> {
    let enc = Encoding::for_label(label.trim().as_bytes())
        .ok_or_else(|| DecodeError::UnknownEncoding(label.to_owned()))?;
    Ok(if enc == encoding_rs::GBK {
        GB18030
    } else {
        enc
    })
}

/// The encoding agreed for an exchange: one encoding, or `auto` for
/// exchanges that mix them (a BOM or XML declaration wins, then UTF-8 if the
/// bytes are valid UTF-8, then GB18030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Fixed(&'static Encoding),
    Auto,
}

impl Charset {
    pub fn parse(label: &str) -> Result<Self, DecodeError> {
        if label.trim().eq_ignore_ascii_case("auto") {
            Ok(Charset::Auto)
        } else {
            encoding_for_label(label).map(Charset::Fixed)
        }
    }

    /// Decodes a text (JSON line, JSON document).
    pub fn decode<'a>(self, bytes: &'a [u8]) -> Result<Cow<'a, str>, DecodeError> {
        match self {
            Charset::Fixed(enc) => decode(bytes, enc),
            Charset::Auto => match decode(bytes, UTF_8) {
                Ok(t) => Ok(t),
                Err(_) => decode(bytes, GB18030),
            },
        }
    }

    /// Decodes an XML document.
    pub fn decode_xml<'a>(self, bytes: &'a [u8]) -> Result<Cow<'a, str>, DecodeError> {
        match self {
            Charset::Fixed(enc) => decode_xml(bytes, enc),
            Charset::Auto => match decode_xml(bytes, UTF_8) {
                Ok(t) => Ok(t),
                Err(DecodeError::UnknownEncoding(e)) => Err(DecodeError::UnknownEncoding(e)),
                Err(first) => {
                    // A declaration that names an encoding is trusted; only
                    // undeclared documents fall back to GB18030.
                    if declared_xml_encoding(bytes).is_some() && Encoding::for_bom(bytes).is_none()
                    {
                        Err(first)
                    } else {
                        decode_xml(bytes, GB18030)
                    }
                }
            },
        }
    }
}

/// Decodes bytes whose encoding is given by a BOM if present, else by
/// `fallback` (the exchange agreement's encoding, UTF-8 by default).
pub fn decode<'a>(
    bytes: &'a [u8],
    fallback: &'static Encoding,
) -> Result<Cow<'a, str>, DecodeError> {
    let (enc, body) = match Encoding::for_bom(bytes) {
        Some((enc, bom_len)) => (enc, &bytes[bom_len..]),
        None => (fallback, bytes),
    };
    decode_strict(body, enc)
}

/// Decodes an XML document: a BOM wins, then the encoding named in the XML
/// declaration, then `fallback`. The returned text no longer carries an
/// encoding pseudo-attribute that would contradict it: a declaration of
/// `encoding="GBK"` is rewritten to `encoding="UTF-8"`.
pub fn decode_xml<'a>(
    bytes: &'a [u8],
    fallback: &'static Encoding,
) -> Result<Cow<'a, str>, DecodeError> {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let text = decode_strict(&bytes[bom_len..], enc)?;
        return Ok(rewrite_declared_encoding(text));
    }
    let enc = match declared_xml_encoding(bytes) {
        Some(label) => encoding_for_label(&label)?,
        None => fallback,
    };
    let text = decode_strict(bytes, enc)?;
    Ok(rewrite_declared_encoding(text))
}

fn decode_strict<'a>(bytes: &'a [u8], enc: &'static Encoding) -> Result<Cow<'a, str>, DecodeError> {
    if enc == UTF_8 {
        return match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => Err(DecodeError::Malformed {
                encoding: "UTF-8",
                offset: e.valid_up_to(),
            }),
        };
    }
    match enc.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => Ok(text),
        None => {
            // Find roughly where it broke, for the reason text.
            let mut decoder = enc.new_decoder_without_bom_handling();
            let mut out = String::with_capacity(bytes.len() * 2);
            let (_, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
            let name = if enc == UTF_16LE {
                "UTF-16LE"
            } else if enc == UTF_16BE {
                "UTF-16BE"
            } else {
                enc.name()
            };
            Err(DecodeError::Malformed {
                encoding: name,
                offset: read,
            })
        }
    }
}

/// The `encoding="..."` of an XML declaration at the very start of `bytes`,
/// read as ASCII (every encoding a declaration may name here is
/// ASCII-compatible).
pub fn declared_xml_encoding(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(256)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let value = &rest[1..];
    let close = value.find(quote)?;
    Some(value[..close].to_owned())
}

fn rewrite_declared_encoding(text: Cow<'_, str>) -> Cow<'_, str> {
    let Some(label) = declared_xml_encoding(text.as_bytes()) else {
        return text;
    };
    if label.eq_ignore_ascii_case("utf-8") {
        return text;
    }
    let decl_end = text.find("?>").unwrap_or(0);
    let decl = &text[..decl_end];
    let replaced = decl.replacen(&label, "UTF-8", 1);
    Cow::Owned(format!("{replaced}{}", &text[decl_end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_xml_declared_in_prolog_is_decoded_and_relabelled() {
        let (bytes, _, _) =
            GB18030.encode("<?xml version=\"1.0\" encoding=\"GBK\"?><a>占道经营</a>");
        let text = decode_xml(&bytes, UTF_8).unwrap();
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>占道经营</a>"
        );
    }

    #[test]
    fn utf8_bom_is_stripped() {
        let mut bytes = vec![0xEF, 0xBB, 0xBF];
        bytes.extend_from_slice("{\"a\":\"宜昌\"}".as_bytes());
        assert_eq!(decode(&bytes, UTF_8).unwrap(), "{\"a\":\"宜昌\"}");
    }

    #[test]
    fn gbk_bytes_read_as_utf8_fail_with_offset() {
        let (bytes, _, _) = GB18030.encode("ab宜昌");
        let err = decode(&bytes, UTF_8).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Malformed {
                encoding: "UTF-8",
                offset: 2
            }
        );
    }

    #[test]
    fn auto_takes_utf8_then_gb18030_but_trusts_declarations() {
        let (gbk, _, _) = GB18030.encode("<a>宜昌</a>");
        assert_eq!(Charset::Auto.decode_xml(&gbk).unwrap(), "<a>宜昌</a>");
        assert_eq!(
            Charset::Auto.decode_xml("<a>宜昌</a>".as_bytes()).unwrap(),
            "<a>宜昌</a>"
        );
        let (lying, _, _) = GB18030.encode("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>宜昌</a>");
        assert!(Charset::Auto.decode_xml(&lying).is_err());
        assert_eq!(Charset::parse("AUTO").unwrap(), Charset::Auto);
    }

    #[test]
    fn gbk_label_uses_the_gb18030_superset() {
        assert_eq!(encoding_for_label("GBK").unwrap(), GB18030);
        assert!(encoding_for_label("klingon").is_err());
    }
}
