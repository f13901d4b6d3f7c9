//! The house's request signatures, one implementation for every side that
//! signs or checks one (the webhook receiver, the push targets, the
//! simulators), HMAC-SHA256 under a shared secret, sent as `sha256=<hex>`
//! (the bare hex is accepted too); checking compares in constant time.
//!
//! - Scheme 1 (`sign`, `verify`): over the timestamp header's text, a `.`,
//!   and the body. What the grid system's urgent-event webhook signs.
//! - Scheme 2 ([`SCHEME_V2`], `sign_v2`, `verify_v2`): over the timestamp,
//!   a `.`, the `Idempotency-Key`, a `.`, and the body, so that a captured
//!   request sent again under another key does not verify. What the hub's
//!   push targets send, with `X-Signature-Scheme: duijie-hmac-sha256/2`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Signature-Scheme` of scheme 2.
pub const SCHEME_V2: &str = "duijie-hmac-sha256/2";

fn mac_v2(secret: &str, timestamp: &str, key: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(key.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Scheme 2's signature of `body` sent at `timestamp` under the
/// idempotency key `key`.
pub fn sign_v2(secret: &str, timestamp: &str, key: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac_v2(secret, timestamp, key, body).finalize().into_bytes())
    )
}

/// Whether `signature` signs `body` at `timestamp` under `key` (scheme 2);
/// constant-time.
pub fn verify_v2(secret: &str, timestamp: &str, key: &str, body: &[u8], signature: &str) -> bool {
    let hex_sig = signature.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let Ok(claimed) = hex::decode(hex_sig) else {
        return false;
    };
    mac_v2(secret, timestamp, key, body)
        .verify_slice(&claimed)
        .is_ok()
}

/// The signature header's value for `body` sent at `timestamp` (the
/// timestamp header's text, Unix seconds).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `signature` (`sha256=<hex>` or hex) signs `body` at
/// `timestamp` under `secret`; constant-time.
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let hex_sig = signature.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let Ok(claimed) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&claimed).is_ok()
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
}
