//! A mapping's regular expressions (`regex:`, `matches:`, conditions'
//! `matches`), checked once or twice a record.
//!
//! The `regex` crate answers every question a pattern can be asked, and
//! pays for it on each call (its strategy chosen and its cache taken from
//! a pool): about 700 instructions a check of a short text (callgrind on
//! the mapping benchmark, docs/PERFORMANCE.md).
//! A mapping only asks "does it match?", of short texts, with patterns of a
//! few classes and counts, which a fully built DFA (`regex-automata`, the
//! `regex` crate's own engine) answers a byte a step. The DFA is built at
//! load, within a size limit; a pattern it cannot take (too large, Unicode
//! word boundaries, one that matches the empty text) keeps the `regex`
//! crate's answer, and so does any text the DFA gives up on.

use regex::Regex;
use regex_automata::Input;
use regex_automata::dfa::{Automaton, dense};

/// The largest DFA a pattern may build, in bytes (the shipped patterns
/// fit: the test below checks the credit code's).
const DFA_BYTES: usize = 256 << 10;

#[derive(Debug, Clone)]
pub(super) struct Pattern {
    regex: Regex,
    /// Boxed: a pattern sits in every rule and condition that has one.
    dfa: Option<Box<dense::DFA<Vec<u32>>>>,
}

impl Pattern {
    pub(super) fn new(text: &str) -> Result<Self, regex::Error> {
        let regex = Regex::new(text)?;
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .dfa_size_limit(Some(DFA_BYTES))
                    .determinize_size_limit(Some(4 * DFA_BYTES)),
            )
            .build(text)
            .ok()
            .filter(|dfa| !dfa.has_empty())
            .map(Box::new);
        Ok(Self { regex, dfa })
    }

    /// Whether the pattern matches somewhere in `text`, as
    /// `regex::Regex::is_match` says.
    pub(super) fn is_match(&self, text: &str) -> bool {
        if let Some(dfa) = &self.dfa
            && let Ok(found) = dfa.try_search_fwd(&Input::new(text).earliest(true))
        {
            return found.is_some();
        }
        self.regex.is_match(text)
    }

    /// The pattern as written.
    pub(super) fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DFA and the `regex` crate agree, on the patterns of the shipped
    /// mappings and on patterns the DFA must leave to the crate.
    #[test]
    fn the_dfa_answers_as_the_regex_crate_does() {
        let patterns = [
            r"^[0-9]{14}$",
            r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$",
            r"^\d{17}[\dXx]$",
            r"^(?:0[1-9]|1[0-2])$",
            r"违[法规]",
            r"\bYC\d+",
            r"^\p{Han}{2,}$",
            r"(?i)^yc",
            r"x*",
            r"$",
            r"^$",
            r"[[:alpha:]]+\s+\w",
        ];
        let texts = [
            "",
            "42050200019307",
            "4205020001930",
            "420502000193077",
            "42050200019307\n",
            "91420502R9BXCG5G1B",
            "91420502r9bxcg5g1b",
            "9142050IR9BXCG5G1B",
            "42050219900101123X",
            "12",
            "13",
            "违规停车",
            "违章",
            "YC00000001",
            "aYC1",
            "宜昌",
            "宜",
            "yC",
            "a  b",
            "é b",
            "\u{FFFD}",
        ];
        for p in patterns {
            let pattern = Pattern::new(p).unwrap();
            let regex = Regex::new(p).unwrap();
            for t in texts {
                assert_eq!(pattern.is_match(t), regex.is_match(t), "{p} on {t:?}");
            }
        }
        // The shipped formats are taken by the DFA; the empty-matching and
        // Unicode-boundary ones are not.
        assert!(Pattern::new(patterns[1]).unwrap().dfa.is_some());
        assert!(Pattern::new(r"x*").unwrap().dfa.is_none());
        assert!(Pattern::new(r"\bYC\d+").unwrap().dfa.is_none());
    }
}
