//! The house's request signatures, one implementation for every side that
//! signs or checks one (the webhook receiver, the push targets, the
//! simulators): an HMAC under a shared secret from the crypto room
//! (`duijie_crypto`), HMAC-SHA256 sent as `sha256=<hex>` or HMAC-SM3 (the
//! `gm` suite, GB/T 32905) sent as `sm3=<hex>` (the bare hex is accepted
//! too); checking compares in constant time.
//!
//! - Scheme 1 (`sign`, `verify`): over the timestamp header's text, a `.`,
//!   and the body. What the grid system's urgent-event webhook signs
//!   (HMAC-SHA256).
//! - Scheme 2 (`sign_v2_with`, `verify_v2_with`): over the timestamp, a
//!   `.`, the `Idempotency-Key`, a `.`, and the body, so that a captured
//!   request sent again under another key does not verify. What the hub's
//!   push targets send, with `X-Signature-Scheme` naming the HMAC:
//!   [`SCHEME_V2`] (`duijie-hmac-sha256/2`) or [`SCHEME_V2_SM3`]
//!   (`duijie-hmac-sm3/2`).

pub use duijie_crypto::Suite;

/// The HMAC a signature uses, as a configuration names it: `hmac-sm3`
/// (the `gm` suite) or `hmac-sha256` (the default, for counterparts that
/// have no SM3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum HmacScheme {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sm3")]
    HmacSm3,
}

impl HmacScheme {
    pub fn suite(self) -> Suite {
        match self {
            HmacScheme::HmacSha256 => Suite::Intl,
            HmacScheme::HmacSm3 => Suite::Gm,
        }
    }
}

/// The `X-Signature-Scheme` of scheme 2 with HMAC-SHA256.
pub const SCHEME_V2: &str = "duijie-hmac-sha256/2";
/// The `X-Signature-Scheme` of scheme 2 with HMAC-SM3.
pub const SCHEME_V2_SM3: &str = "duijie-hmac-sm3/2";

/// Scheme 2's `X-Signature-Scheme` for a suite.
pub fn scheme_v2(suite: Suite) -> &'static str {
    match suite {
        Suite::Gm => SCHEME_V2_SM3,
        Suite::Intl => SCHEME_V2,
    }
}

/// The suite a scheme-2 `X-Signature-Scheme` names.
pub fn suite_of_scheme_v2(scheme: &str) -> Option<Suite> {
    match scheme.trim() {
        SCHEME_V2 => Some(Suite::Intl),
        SCHEME_V2_SM3 => Some(Suite::Gm),
        _ => None,
    }
}

fn tagged(suite: Suite, mac: &[u8]) -> String {
    format!("{}={}", suite.digest_name(), hex::encode(mac))
}

fn claimed(suite: Suite, signature: &str) -> Option<Vec<u8>> {
    let s = signature.trim();
    let s = s
        .strip_prefix(&format!("{}=", suite.digest_name()))
        .unwrap_or(s);
    hex::decode(s).ok()
}

/// What scheme 2 signs: `<timestamp>.<key>.<body>`; also what the hub's
/// SM2 signature covers.
pub fn base_v2(timestamp: &str, key: &str, body: &[u8]) -> Vec<u8> {
    [timestamp.as_bytes(), b".", key.as_bytes(), b".", body].concat()
}

/// Scheme 2's signature of `body` sent at `timestamp` under the
/// idempotency key `key`.
pub fn sign_v2_with(suite: Suite, secret: &str, timestamp: &str, key: &str, body: &[u8]) -> String {
    tagged(
        suite,
        &suite.hmac(secret.as_bytes(), &[&base_v2(timestamp, key, body)]),
    )
}

/// Whether `signature` signs `body` at `timestamp` under `key` (scheme 2);
/// constant-time.
pub fn verify_v2_with(
    suite: Suite,
    secret: &str,
    timestamp: &str,
    key: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    claimed(suite, signature).is_some_and(|tag| {
        suite.verify_hmac(secret.as_bytes(), &[&base_v2(timestamp, key, body)], &tag)
    })
}

/// Scheme 2 with HMAC-SHA256.
pub fn sign_v2(secret: &str, timestamp: &str, key: &str, body: &[u8]) -> String {
    sign_v2_with(Suite::Intl, secret, timestamp, key, body)
}

/// Scheme 2 with HMAC-SHA256; constant-time.
pub fn verify_v2(secret: &str, timestamp: &str, key: &str, body: &[u8], signature: &str) -> bool {
    verify_v2_with(Suite::Intl, secret, timestamp, key, body, signature)
}

/// The signature header's value for `body` sent at `timestamp` (the
/// timestamp header's text, Unix seconds), scheme 1 with `suite`'s HMAC.
pub fn sign_with(suite: Suite, secret: &str, timestamp: &str, body: &[u8]) -> String {
    tagged(
        suite,
        &suite.hmac(secret.as_bytes(), &[timestamp.as_bytes(), b".", body]),
    )
}

/// Whether `signature` (`sha256=<hex>`, `sm3=<hex>` or hex) signs `body`
/// at `timestamp` under `secret` (scheme 1); constant-time.
pub fn verify_with(
    suite: Suite,
    secret: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    claimed(suite, signature).is_some_and(|tag| {
        suite.verify_hmac(secret.as_bytes(), &[timestamp.as_bytes(), b".", body], &tag)
    })
}

/// The hex of a signature header's value, without its `sha256=`/`sm3=`.
pub fn bare(suite: Suite, signature: &str) -> &str {
    let s = signature.trim();
    s.strip_prefix(suite.digest_name())
        .and_then(|r| r.strip_prefix('='))
        .unwrap_or(s)
}

/// Scheme 1 with HMAC-SHA256.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    sign_with(Suite::Intl, secret, timestamp, body)
}

/// Scheme 1 with HMAC-SHA256; constant-time.
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    verify_with(Suite::Intl, secret, timestamp, body, signature)
}

#[cfg(test)]
mod tests {
    /// The test vector of the receiver contract (docs/RECEIVING.md),
    /// checked against Python's `hmac` there.
    #[test]
    fn scheme_2_covers_the_key_and_matches_its_vector() {
        let (secret, ts, key, body) = (
            "dept-feed-secret-0123456789",
            "1796601600",
            "saf:HZ2026000123:u1796601599000",
            br#"{"hazard_no":"HZ2026000123","grade":"MAJOR"}"#,
        );
        let s = super::sign_v2(secret, ts, key, body);
        assert_eq!(
            s, "sha256=e30b2412c45ce860aae736167617e567c53ee12aa23b2e745e183207d119b755",
            "update the contract's vector if this changes"
        );
        assert!(super::verify_v2(secret, ts, key, body, &s));
        // The same request under another key: refused.
        assert!(!super::verify_v2(
            secret,
            ts,
            "saf:HZ2026000123:u9999999999999",
            body,
            &s
        ));
        // Scheme 1's signature of the same request does not pass as 2.
        assert!(!super::verify_v2(
            secret,
            ts,
            key,
            body,
            &super::sign(secret, ts, body)
        ));
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let s = super::sign("k3y", "1764581234", b"{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert!(super::verify("k3y", "1764581234", b"{\"a\":1}", &s));
        assert!(super::verify("k3y", "1764581234", b"{\"a\":1}", &s[7..]));
        assert!(!super::verify("k3y", "1764581235", b"{\"a\":1}", &s));
        assert!(!super::verify("k3y", "1764581234", b"{\"a\":2}", &s));
        assert!(!super::verify("other", "1764581234", b"{\"a\":1}", &s));
        assert!(!super::verify(
            "k3y",
            "1764581234",
            b"{\"a\":1}",
            "sha256=zz"
        ));
    }

    /// Scheme 2 with HMAC-SM3, on the contract's vector: the value
    /// Python's `hmac.new(secret, base, 'sm3')` gives (docs/RECEIVING.md).
    #[test]
    fn scheme_2_with_sm3_matches_its_vector_and_names_its_scheme() {
        use super::Suite;
        let (secret, ts, key, body) = (
            "dept-feed-secret-0123456789",
            "1796601600",
            "saf:HZ2026000123:u1796601599000",
            br#"{"hazard_no":"HZ2026000123","grade":"MAJOR"}"#,
        );
        let s = super::sign_v2_with(Suite::Gm, secret, ts, key, body);
        assert_eq!(
            s,
            "sm3=2f71a3addc79125dcf83f98c1407c4ead755fb3f1baa4ef55f801ae7c9599429"
        );
        assert!(super::verify_v2_with(Suite::Gm, secret, ts, key, body, &s));
        // Not as HMAC-SHA256, not under another key.
        assert!(!super::verify_v2(secret, ts, key, body, &s));
        assert!(!super::verify_v2_with(
            Suite::Gm,
            secret,
            ts,
            "other",
            body,
            &s
        ));
        assert_eq!(
            super::suite_of_scheme_v2("duijie-hmac-sm3/2"),
            Some(Suite::Gm)
        );
        assert_eq!(super::scheme_v2(Suite::Intl), super::SCHEME_V2);
    }
}
