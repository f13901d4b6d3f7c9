//! The house's request signature, one implementation for every side that
//! signs or checks one (the webhook receiver, the push targets, the
//! simulators): HMAC-SHA256 under a shared secret over the timestamp
//! header's text, a `.`, and the body, sent as `sha256=<hex>` (the bare hex
//! is accepted too). Checking compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
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
