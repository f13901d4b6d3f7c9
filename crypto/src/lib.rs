//! duijie's cryptography room (密码): one small interface over well-kept
//! RustCrypto crates, nothing hand-written below it.
//!
//! Two suites ([`Suite`]): `gm`, the national algorithms a government
//! system is assessed on (商用密码应用安全性评估, GB/T 39786-2021) — SM3
//! (GB/T 32905-2016) for digests and HMAC, SM4 (GB/T 32907-2016) for
//! symmetric encryption, SM2 (GB/T 32918-2016) for signatures and key
//! wrapping — and `intl` (SHA-256, HMAC-SHA256) for counterparts that ask
//! for it. A deployment chooses its suite; a counterpart may require its
//! own.
//!
//! - [`Suite::digest`], [`Suite::hmac`], [`Suite::verify_hmac`] (constant
//!   time);
//! - [`sm4`]: SM4-GCM (authenticated; a 12-byte nonce, a 16-byte tag after
//!   the ciphertext) and SM4-CBC with PKCS#7 padding;
//! - [`sm2`]: signatures with a distinguishing identifier (default
//!   `1234567812345678`), encoded DER or raw `r‖s`; encryption of a data
//!   key to a counterpart's public key, `C1C3C2` or `C1C2C3`;
//! - [`Text`]: hex or base64, the encodings that break interoperability
//!   when left implicit.
//!
//! Everything here is checked against implementations nobody here wrote:
//! the standards' vectors in the unit tests, and OpenSSL's command line and
//! Python's `gmssl` and `cryptography` in the hub's tests.

pub mod sm2;
pub mod sm4;

use hmac_13::{KeyInit, Mac};
use serde::Deserialize;

/// What went wrong, for a message; never the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("key: {0}")]
    Key(String),
    #[error("cannot decrypt: the data, its tag or the key is wrong")]
    Decrypt,
    #[error("encoding: {0}")]
    Encoding(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// A suite of algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// SM2 / SM3 / SM4 (商用密码).
    #[default]
    Gm,
    /// SHA-256 / HMAC-SHA256.
    Intl,
}

impl Suite {
    /// The digest's name as it appears on the wire (`sm3`, `sha256`).
    pub fn digest_name(self) -> &'static str {
        match self {
            Suite::Gm => "sm3",
            Suite::Intl => "sha256",
        }
    }

    /// SM3 or SHA-256 of the parts, concatenated.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        use sha2_11::Digest;
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Suite::Gm => run::<sm3::Sm3>(parts),
            Suite::Intl => run::<sha2_11::Sha256>(parts),
        }
    }

    /// HMAC-SM3 or HMAC-SHA256 of the parts, concatenated.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Suite::Gm => {
                let mut m = hmac_13::Hmac::<sm3::Sm3>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            Suite::Intl => {
                let mut m = hmac_13::Hmac::<sha2_11::Sha256>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Whether `tag` is the HMAC of the parts; compared in constant time.
    pub fn verify_hmac(self, key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let want = self.hmac(key, parts);
        want.len() == tag.len() && bool::from(want.ct_eq(tag))
    }
}

/// MD5 of the parts, concatenated. Not a protection the hub relies on
/// (MD5 is broken for collisions): only to meet a counterpart's request
/// signature that names no other digest, beside its secret and timestamp.
pub fn md5(parts: &[&[u8]]) -> Vec<u8> {
    use md5::Digest;
    let mut d = md5::Md5::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().to_vec()
}

/// How bytes travel as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Text {
    #[default]
    Base64,
    Hex,
}

impl Text {
    pub fn encode(self, bytes: &[u8]) -> String {
        use base64::Engine;
        match self {
            Text::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
            Text::Hex => hex::encode(bytes),
        }
    }

    pub fn decode(self, text: &str) -> Result<Vec<u8>, CryptoError> {
        use base64::Engine;
        let text = text.trim();
        match self {
            Text::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| CryptoError::Encoding(format!("not base64: {e}"))),
            Text::Hex => {
                hex::decode(text).map_err(|e| CryptoError::Encoding(format!("not hex: {e}")))
            }
        }
    }
}

/// `n` random bytes from the operating system.
pub fn random(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    getrandom::fill(&mut out).expect("the operating system gives random bytes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GB/T 32905-2016, appendix A: the two examples.
    #[test]
    fn sm3_gives_the_standards_examples() {
        assert_eq!(
            hex::encode(Suite::Gm.digest(&[b"abc"])),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        let sixty_four = b"abcd".repeat(16);
        assert_eq!(
            hex::encode(Suite::Gm.digest(&[&sixty_four])),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
    }

    #[test]
    fn an_hmac_verifies_only_its_own_parts() {
        for suite in [Suite::Gm, Suite::Intl] {
            let tag = suite.hmac(b"k", &[b"a", b".", b"b"]);
            assert!(suite.verify_hmac(b"k", &[b"a.b"], &tag));
            assert!(!suite.verify_hmac(b"k", &[b"a.c"], &tag));
            assert!(!suite.verify_hmac(b"l", &[b"a.b"], &tag));
            assert!(!suite.verify_hmac(b"k", &[b"a.b"], &tag[..tag.len() - 1]));
        }
        // RFC 4231 test case 2 for the international suite.
        assert_eq!(
            hex::encode(Suite::Intl.hmac(b"Jefe", &[b"what do ya want for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// RFC 1321, appendix A.5.
    #[test]
    fn md5_gives_the_rfcs_examples() {
        assert_eq!(hex::encode(md5(&[b""])), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex::encode(md5(&[b"a", b"bc"])),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hex::encode(md5(&[b"message digest"])),
            "f96b697d7cb7938d525a2f31aaf161d0"
        );
    }
}
