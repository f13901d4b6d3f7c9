//! Secrets in deployment files: `"${env:NAME}"` and `"${file:PATH}"`.
//!
//! References are expanded in the file's text before it is parsed, inside
//! double-quoted TOML strings (the value is escaped, so a quote or a
//! backslash in a password cannot break the file, and lines keep their
//! numbers for error messages). `PATH` is relative to the deployment
//! file; a file's trailing newline is dropped.
//!
//! Every expanded value is remembered, and [`redact`] replaces it with
//! `***` wherever text leaves the process: log lines (the writer of
//! [`crate::telemetry`]), configuration errors and command errors. A
//! secret therefore appears neither in logs nor in `duijie check`; metric
//! labels carry names only. [`plaintext_credentials`] finds credentials
//! written in clear, for `duijie check` to warn about.

use std::path::Path;
use std::sync::RwLock;

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// A reference that could not be expanded: where, and why (never the
/// value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Byte offset of the `${` in the text.
    pub offset: usize,
    pub message: String,
}

fn remember(value: &str) {
    // Very short values would redact ordinary words; they are weak
    // secrets anyway, and `check` says so.
    if value.len() >= 4 {
        let mut known = KNOWN.write().expect("secrets lock");
        if !known.iter().any(|k| k == value) {
            known.push(value.to_owned());
            // Longest first, so a secret containing another is hidden whole.
            known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        }
    }
}

/// `text` with every known secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let known = KNOWN.read().expect("secrets lock");
    let mut out = text.to_owned();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), "***");
        }
    }
    out
}

/// `text` with the query string of every `http://` or `https://` URL
/// replaced by `?***`: a token in a URL's query is a secret even where the
/// deployment file did not mark it as one.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("http") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let is_url = from.starts_with("http://") || from.starts_with("https://");
        let end = from
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(from.len());
        let (url, after) = from.split_at(end);
        match url.find('?').filter(|_| is_url) {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?***");
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Whether a presented secret (token, password) equals the expected one,
/// in constant time: both are hashed to SHA-256 first, so neither their
/// contents nor their lengths change how long the comparison takes.
pub fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    !expected.is_empty() && bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// The entry of `candidates` whose secret matches `given`, looking at
/// every candidate (no early exit) with [`same_secret`].
pub fn find_by_secret<'a, T>(
    given: &str,
    candidates: impl IntoIterator<Item = (&'a str, T)>,
) -> Option<T> {
    let mut found = None;
    for (secret, value) in candidates {
        if same_secret(given, secret) && found.is_none() {
            found = Some(value);
        }
    }
    found
}

/// Escapes a value for a TOML basic (double-quoted) string.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Expands `${env:NAME}` and `${file:PATH}` in `text`; comment lines are
/// left alone. Returns the text and where each expanded value sits in it.
pub fn expand(
    text: &str,
    base: &Path,
) -> Result<(String, Vec<std::ops::Range<usize>>), Vec<Unresolved>> {
    let mut spans = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            line_start += line.len();
            continue;
        }
        let mut rest = line;
        let mut at = line_start;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[i..]);
                rest = "";
                break;
            };
            let reference = &after[..end];
            let offset = at + i;
            let value = match reference.split_once(':') {
                Some(("env", name)) => std::env::var(name).map_err(|_| {
                    format!("`${{env:{name}}}`: the environment variable {name} is not set")
                }),
                Some(("file", path)) => {
                    let full = base.join(path);
                    std::fs::read_to_string(&full)
                        .map(|v| {
                            v.strip_suffix('\n')
                                .map(|v| v.strip_suffix('\r').unwrap_or(v))
                                .unwrap_or(&v)
                                .to_owned()
                        })
                        .map_err(|e| {
                            format!("`${{file:{path}}}`: cannot read {}: {e}", full.display())
                        })
                }
                _ => Err(format!(
                    "`${{{reference}}}`: a secret is written `${{env:NAME}}` or `${{file:PATH}}`"
                )),
            };
            match value {
                Ok(v) => {
                    remember(&v);
                    let start = out.len();
                    out.push_str(&escape(&v));
                    spans.push(start..out.len());
                }
                Err(message) => errors.push(Unresolved { offset, message }),
            }
            let consumed = i + 2 + end + 1;
            at += consumed;
            rest = &rest[consumed..];
        }
        out.push_str(rest);
        line_start += line.len();
    }
    if errors.is_empty() {
        Ok((out, spans))
    } else {
        Err(errors)
    }
}

/// Keys that name a credential.
fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|c| k == *c || k.ends_with(&format!("_{c}")))
}

/// Credentials written in clear in a deployment file: (line, what).
/// A value is clear when it is not a `${env:…}` / `${file:…}` reference.
pub fn plaintext_credentials(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        // `key = "value"`, also inside inline tables.
        let mut rest = t;
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq]
                .trim()
                .rsplit([' ', '{', ',', '.'])
                .next()
                .unwrap_or("")
                .trim_matches('"');
            let value = rest[eq + 1..].trim_start();
            if is_credential_key(key) && value.starts_with('"') && !value.starts_with("\"${") {
                found.push((i + 1, format!("`{key}` holds a plaintext credential")));
            }
            rest = &rest[eq + 1..];
        }
        // Passwords inside connection URLs: scheme://user:password@host.
        if let Some(p) = t.find("://") {
            let after = &t[p + 3..];
            if let Some(at) = after.find('@') {
                let userinfo = &after[..at];
                if userinfo.contains(':') && !userinfo.contains("${") && !userinfo.contains('/') {
                    found.push((i + 1, "a connection URL holds a password".into()));
                }
            }
        }
        // Desk login tokens are table keys: [desk.users."token"].
        if let Some(h) = t.strip_prefix("[desk.users.\"")
            && !h.starts_with("${")
        {
            found.push((i + 1, "a desk login token is written in clear".into()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_queries_are_redacted_and_other_text_kept() {
        assert_eq!(
            redact_urls("GET https://credit.example/api?token=abc&x=1 failed: 500 (http status)"),
            "GET https://credit.example/api?*** failed: 500 (http status)"
        );
        assert_eq!(redact_urls("no url here"), "no url here");
        assert!(same_secret(
            "a-token-of-some-length",
            "a-token-of-some-length"
        ));
        assert!(!same_secret(
            "a-token-of-some-length",
            "a-token-of-some-lengtH"
        ));
        assert!(!same_secret("", ""));
    }

    #[test]
    fn env_and_file_references_expand_escaped_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cr\"et\\pw\n").unwrap();
        let name = "DUIJIE_TEST_SECRET_EXPAND"; // never set
        let text =
            format!("# ${{env:NOT_EXPANDED}}\na = \"${{file:pw}}\"\nb = \"${{env:{name}}}\"\n");
        let missing = expand(&text, dir.path()).unwrap_err();
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0]
                .message
                .contains("DUIJIE_TEST_SECRET_EXPAND is not set")
        );
        assert_eq!(&text[missing[0].offset..missing[0].offset + 6], "${env:");
        let with_env = text.replace(&format!("${{env:{name}}}"), "${file:pw}");
        let (out, spans) = expand(&with_env, dir.path()).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(&out[spans[0].clone()], "s3cr\\\"et\\\\pw");
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["a"].as_str(), Some("s3cr\"et\\pw"));
        assert!(out.starts_with("# ${env:NOT_EXPANDED}"));
        assert_eq!(out.lines().count(), text.lines().count());
        assert_eq!(
            redact("login failed for s3cr\"et\\pw!"),
            "login failed for ***!"
        );
    }

    #[test]
    fn unknown_references_are_errors() {
        let e = expand("a = \"${vault:x}\"", Path::new(".")).unwrap_err();
        assert!(e[0].message.contains("${env:NAME}"), "{:?}", e);
    }

    #[test]
    fn clear_credentials_are_found_and_references_are_not() {
        let text = r#"
login = { url = "http://x/login", username = "u", password = "Wg#2026" }
secret = "${file:secrets/hook}"
token = "plain-token"
url = "postgres://app:hunter2@db/x"
url2 = "postgres://app@db/x"
[desk.users."desk-officer-token"]
[desk.users."${env:DESK_TOKEN}"]
# password = "in a comment"
"#;
        let found: Vec<usize> = plaintext_credentials(text)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(found, [2, 4, 5, 7]);
    }
}
