//! SM4 (GB/T 32907-2016): GCM for what the hub seals (authenticated, a
//! 12-byte nonce, the 16-byte tag after the ciphertext, optional associated
//! data), and CBC with PKCS#7 padding for counterparts that ask for it.

use crate::CryptoError;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, U12>;

/// Bytes of a key, a GCM nonce and a CBC IV.
pub const KEY_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
pub const IV_LEN: usize = 16;

fn key_check(key: &[u8]) -> Result<(), CryptoError> {
    if key.len() == KEY_LEN {
        Ok(())
    } else {
        Err(CryptoError::Key(format!(
            "an SM4 key has {KEY_LEN} bytes, this one {}",
            key.len()
        )))
    }
}

/// An SM4-GCM key made ready once (its round keys and GHASH key), for a
/// writer that seals record after record under the same key.
#[derive(Clone)]
pub struct GcmKey(Sm4Gcm);

impl GcmKey {
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        key_check(key)?;
        Sm4Gcm::new_from_slice(key)
            .map(Self)
            .map_err(|e| CryptoError::Key(e.to_string()))
    }

    /// A fresh random 12-byte nonce followed by the ciphertext and its
    /// tag. The nonce comes from the thread's CSPRNG (`rand`'s ChaCha,
    /// seeded and reseeded from the operating system), not a system call
    /// a record: random 96-bit nonces, as NIST SP 800-38D §8.2.2 allows.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
        let sealed = self
            .0
            .encrypt(&nonce.into(), Payload { msg: plain, aad })
            .expect("SM4-GCM seals any length this hub writes");
        [&nonce[..], &sealed].concat()
    }

    /// What [`GcmKey::seal`] made: the plain text, when the tag verifies.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, sealed) = sealed.split_at(NONCE_LEN);
        self.0
            .decrypt(
                nonce.try_into().expect("length checked"),
                Payload { msg: sealed, aad },
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

impl std::fmt::Debug for GcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcmKey(..)")
    }
}

/// SM4-GCM: the ciphertext with its tag.
pub fn gcm_seal(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    key_check(key)?;
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::Key(format!(
            "a GCM nonce has {NONCE_LEN} bytes"
        )));
    }
    let cipher = Sm4Gcm::new_from_slice(key).map_err(|e| CryptoError::Key(e.to_string()))?;
    cipher
        .encrypt(
            nonce.try_into().expect("length checked"),
            Payload { msg: plain, aad },
        )
        .map_err(|_| CryptoError::Decrypt)
}

/// SM4-GCM: the plain text, when the tag verifies.
pub fn gcm_open(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    key_check(key)?;
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::Key(format!(
            "a GCM nonce has {NONCE_LEN} bytes"
        )));
    }
    let cipher = Sm4Gcm::new_from_slice(key).map_err(|e| CryptoError::Key(e.to_string()))?;
    cipher
        .decrypt(
            nonce.try_into().expect("length checked"),
            Payload { msg: sealed, aad },
        )
        .map_err(|_| CryptoError::Decrypt)
}

/// SM4-CBC with PKCS#7 padding.
pub fn cbc_encrypt(key: &[u8], iv: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    key_check(key)?;
    let enc = cbc::Encryptor::<sm4::Sm4>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::Key(format!("a CBC IV has {IV_LEN} bytes")))?;
    Ok(enc.encrypt_padded_vec::<Pkcs7>(plain))
}

/// SM4-CBC with PKCS#7 padding: the plain text, when the padding is right.
pub fn cbc_decrypt(key: &[u8], iv: &[u8], cipher: &[u8]) -> Result<Vec<u8>, CryptoError> {
    key_check(key)?;
    let dec = cbc::Decryptor::<sm4::Sm4>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::Key(format!("a CBC IV has {IV_LEN} bytes")))?;
    dec.decrypt_padded_vec::<Pkcs7>(cipher)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prepared key seals what the one-shot open reads (the one-shot
    /// itself is checked against `cryptography` in the interop tests),
    /// never twice with the same nonce, and refuses a changed byte.
    #[test]
    fn a_prepared_key_seals_with_a_fresh_nonce_each_time() {
        let key = [7u8; KEY_LEN];
        let k = GcmKey::new(&key).unwrap();
        let (a, b) = (k.seal(b"aad", b"record"), k.seal(b"aad", b"record"));
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        let (nonce, body) = a.split_at(NONCE_LEN);
        assert_eq!(gcm_open(&key, nonce, b"aad", body).unwrap(), b"record");
        assert_eq!(k.open(b"aad", &b).unwrap(), b"record");
        let mut changed = a.clone();
        changed[NONCE_LEN] ^= 1;
        assert!(k.open(b"aad", &changed).is_err());
        assert!(k.open(b"other", &a).is_err());
        assert!(GcmKey::new(&[0u8; 15]).is_err());
    }

    /// GB/T 32907-2016, appendix A, example 1: one block under the key
    /// that is also the plain text (CBC with a zero IV over one block is
    /// the bare cipher; PKCS#7 adds a second block).
    #[test]
    fn sm4_gives_the_standards_example() {
        let key = hex::decode("0123456789abcdeffedcba9876543210").unwrap();
        let out = cbc_encrypt(&key, &[0u8; 16], &key).unwrap();
        assert_eq!(hex::encode(&out[..16]), "681edf34d206965e86b3e94f536e4246");
        assert_eq!(cbc_decrypt(&key, &[0u8; 16], &out).unwrap(), key);
    }

    #[test]
    fn gcm_refuses_a_changed_byte_a_wrong_key_and_other_associated_data() {
        let (key, nonce) = ([7u8; 16], [1u8; 12]);
        let sealed = gcm_seal(&key, &nonce, b"topic/0/42", b"420502199001011234").unwrap();
        assert_eq!(sealed.len(), 18 + 16);
        assert_eq!(
            gcm_open(&key, &nonce, b"topic/0/42", &sealed).unwrap(),
            b"420502199001011234"
        );
        let mut changed = sealed.clone();
        changed[3] ^= 1;
        assert_eq!(
            gcm_open(&key, &nonce, b"topic/0/42", &changed),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            gcm_open(&[8u8; 16], &nonce, b"topic/0/42", &sealed),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            gcm_open(&key, &nonce, b"topic/0/43", &sealed),
            Err(CryptoError::Decrypt)
        );
        assert!(matches!(
            gcm_seal(&[0u8; 15], &nonce, b"", b""),
            Err(CryptoError::Key(_))
        ));
    }
}
