//! Text normalisation shared by the mapping engine and the validators.

use std::borrow::Cow;
use unicode_width::UnicodeWidthStr;

/// Characters trimmed from both ends: Unicode white space (which includes
/// the ideographic space U+3000 of Chinese input methods), and the zero-width
/// space and BOM that copy-paste leaves behind.
fn is_trimmed(c: char) -> bool {
    c.is_whitespace() || c == '\u{FEFF}' || c == '\u{200B}'
}

/// Pads to a display width (a Chinese character takes two columns).
pub fn pad(text: &str, width: usize) -> String {
    let w = UnicodeWidthStr::width(text);
    format!("{text}{}", " ".repeat(width.saturating_sub(w)))
}

pub fn trim(s: &str) -> &str {
    s.trim_matches(is_trimmed)
}

/// Full-width ASCII variants (U+FF01..U+FF5E) to ASCII, and the ideographic
/// space to a plain space. Borrows when there is nothing to change.
pub fn to_halfwidth(s: &str) -> Cow<'_, str> {
    if s.is_ascii() || !s.chars().any(is_fullwidth) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(halfwidth_char).collect())
}

fn is_fullwidth(c: char) -> bool {
    matches!(c, '\u{FF01}'..='\u{FF5E}' | '\u{3000}')
}

fn halfwidth_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        other => other,
    }
}

/// Removes every white-space character, anywhere in the text.
pub fn remove_spaces(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_trimmed) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().filter(|c| !is_trimmed(*c)).collect())
}

/// The form identifiers are compared in: half-width, no spaces, upper case.
pub fn normalize_identifier(s: &str) -> Cow<'_, str> {
    let half = to_halfwidth(s);
    let no_space = match remove_spaces(&half) {
        Cow::Borrowed(_) => half,
        Cow::Owned(o) => Cow::Owned(o),
    };
    if no_space.chars().any(|c| c.is_ascii_lowercase()) {
        Cow::Owned(no_space.to_ascii_uppercase())
    } else {
        no_space
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_ideographic_space() {
        assert_eq!(trim("\u{3000} 发展大道 \u{3000}"), "发展大道");
    }

    #[test]
    fn fullwidth_digits_and_letters_become_ascii() {
        assert_eq!(to_halfwidth("９１４２ＡＢｃ　１"), "9142ABc 1");
        assert!(matches!(to_halfwidth("宜昌"), Cow::Borrowed(_)));
    }

    #[test]
    fn identifier_normal_form() {
        assert_eq!(
            normalize_identifier(" ９１３５ ０１００ｍ０００１００ｙ４３ "),
            "91350100M000100Y43"
        );
    }
}
