//! SM2 (GB/T 32918-2016): signatures over SM3 with a distinguishing
//! identifier (用户身份标识, default `1234567812345678`, GB/T 35276-2017),
//! and public-key encryption of a data key.
//!
//! The encodings that break interoperability in practice are explicit: a
//! signature is DER (`SEQUENCE { r, s }`, what OpenSSL writes) or raw
//! `r‖s` (64 bytes); a ciphertext is `C1C3C2` (GB/T 32918.4-2016's order),
//! `C1C2C3` (the 2010 draft's, still common) or DER (GM/T 0009, what
//! OpenSSL writes); C1 is an uncompressed point with its `04`.

use crate::CryptoError;
use serde::Deserialize;
use sm2::dsa::signature::{Signer, Verifier};
use sm2::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};

/// The identifier both sides use when none was agreed (GB/T 35276-2017).
pub const DEFAULT_DISTID: &str = "1234567812345678";

/// How a signature travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureForm {
    #[default]
    Der,
    /// `r‖s`, 32 bytes each.
    Raw,
}

/// How an SM2 ciphertext is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum CipherForm {
    #[default]
    #[serde(rename = "c1c3c2")]
    C1C3C2,
    #[serde(rename = "c1c2c3")]
    C1C2C3,
    #[serde(rename = "der")]
    Der,
}

/// A private key: the hub's own, to sign what leaves it and to unwrap keys
/// sent to it.
#[derive(Clone)]
pub struct PrivateKey {
    secret: sm2::SecretKey,
    distid: String,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("distid", &self.distid)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// From a PKCS#8 PEM (`openssl genpkey -algorithm SM2`).
    pub fn from_pem(pem: &str, distid: &str) -> Result<Self, CryptoError> {
        let secret = sm2::SecretKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| CryptoError::Key(format!("not an SM2 PKCS#8 PEM private key: {e}")))?;
        Ok(Self {
            secret,
            distid: distid.to_owned(),
        })
    }

    /// A new random key (tests, key generation).
    pub fn generate(distid: &str) -> Self {
        use sm2::elliptic_curve::Generate;
        Self {
            secret: sm2::SecretKey::generate(),
            distid: distid.to_owned(),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.secret.public_key(),
            distid: self.distid.clone(),
        }
    }

    /// The SM2 signature of `msg` (SM3 over Z‖msg; deterministic nonce,
    /// RFC 6979).
    pub fn sign(&self, msg: &[u8], form: SignatureForm) -> Vec<u8> {
        let key = sm2::dsa::SigningKey::new(&self.distid, &self.secret)
            .expect("a valid key and identifier sign");
        let sig: sm2::dsa::Signature = key.sign(msg);
        match form {
            SignatureForm::Der => sig.to_der().to_vec(),
            SignatureForm::Raw => sig.to_bytes().to_vec(),
        }
    }

    /// A data key sent to this key.
    pub fn decrypt(&self, ciphertext: &[u8], form: CipherForm) -> Result<Vec<u8>, CryptoError> {
        use sm2::pke::{DecryptingKey, Mode};
        let key = |mode| DecryptingKey::new_with_mode(self.secret.to_nonzero_scalar(), mode);
        // Some implementations (Python's gmssl among them) leave out C1's
        // `04`: a 64-byte point is 97 bytes or more with the digest, and an
        // uncompressed point always starts with 04.
        let prefixed;
        let ciphertext = if form != CipherForm::Der && ciphertext.first() != Some(&0x04) {
            prefixed = [&[0x04u8][..], ciphertext].concat();
            &prefixed[..]
        } else {
            ciphertext
        };
        match form {
            CipherForm::C1C3C2 => key(Mode::C1C3C2).decrypt(ciphertext),
            CipherForm::C1C2C3 => key(Mode::C1C2C3).decrypt(ciphertext),
            CipherForm::Der => key(Mode::C1C3C2).decrypt_der(ciphertext),
        }
        .map_err(|_| CryptoError::Decrypt)
    }
}

/// A counterpart's public key (or the hub's, to check its own signatures).
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey {
    key: sm2::PublicKey,
    distid: String,
}

impl PublicKey {
    /// From a SubjectPublicKeyInfo PEM (`openssl pkey -pubout`).
    pub fn from_pem(pem: &str, distid: &str) -> Result<Self, CryptoError> {
        let key = sm2::PublicKey::from_public_key_pem(pem.trim())
            .map_err(|e| CryptoError::Key(format!("not an SM2 public key PEM: {e}")))?;
        Ok(Self {
            key,
            distid: distid.to_owned(),
        })
    }

    /// From an uncompressed point (`04‖x‖y`), as many platforms publish
    /// their key, in hex.
    pub fn from_sec1(bytes: &[u8], distid: &str) -> Result<Self, CryptoError> {
        let key = sm2::PublicKey::from_sec1_bytes(bytes)
            .map_err(|_| CryptoError::Key("not an SM2 point".into()))?;
        Ok(Self {
            key,
            distid: distid.to_owned(),
        })
    }

    /// The uncompressed point `04‖x‖y`.
    pub fn to_sec1(&self) -> Vec<u8> {
        self.key.to_sec1_bytes().to_vec()
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a public key encodes")
    }

    /// Whether `signature` is this key's over `msg`.
    pub fn verify(
        &self,
        msg: &[u8],
        signature: &[u8],
        form: SignatureForm,
    ) -> Result<(), CryptoError> {
        let sig = match form {
            SignatureForm::Der => sm2::dsa::Signature::from_der(signature),
            SignatureForm::Raw => sm2::dsa::Signature::from_slice(signature),
        }
        .map_err(|_| CryptoError::BadSignature)?;
        let key = sm2::dsa::VerifyingKey::new(&self.distid, self.key)
            .map_err(|e| CryptoError::Key(e.to_string()))?;
        key.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
    }

    /// `data` (a data key) encrypted to this key.
    pub fn encrypt(&self, data: &[u8], form: CipherForm) -> Result<Vec<u8>, CryptoError> {
        use sm2::elliptic_curve::common::getrandom::SysRng;
        use sm2::pke::{EncryptingKey, Mode};
        let key = |mode| EncryptingKey::new_with_mode(self.key, mode);
        match form {
            CipherForm::C1C3C2 => key(Mode::C1C3C2).encrypt(&mut SysRng, data),
            CipherForm::C1C2C3 => key(Mode::C1C2C3).encrypt(&mut SysRng, data),
            CipherForm::Der => key(Mode::C1C3C2).encrypt_der(&mut SysRng, data),
        }
        .map_err(|e| CryptoError::Key(format!("SM2 encryption failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_in_both_forms_and_only_for_its_message_and_identifier() {
        let key = PrivateKey::generate(DEFAULT_DISTID);
        let public = PublicKey::from_pem(&key.public().to_pem(), DEFAULT_DISTID).unwrap();
        for form in [SignatureForm::Der, SignatureForm::Raw] {
            let sig = key.sign(b"1796601600.key.{}", form);
            if form == SignatureForm::Raw {
                assert_eq!(sig.len(), 64);
            }
            public.verify(b"1796601600.key.{}", &sig, form).unwrap();
            assert_eq!(
                public.verify(b"1796601600.key.{ }", &sig, form),
                Err(CryptoError::BadSignature)
            );
        }
        let other_id = PublicKey::from_pem(&key.public().to_pem(), "other@bureau").unwrap();
        let sig = key.sign(b"m", SignatureForm::Der);
        assert_eq!(
            other_id.verify(b"m", &sig, SignatureForm::Der),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn a_data_key_round_trips_in_each_layout_and_only_in_its_own() {
        let key = PrivateKey::generate(DEFAULT_DISTID);
        let data = [9u8; 16];
        for form in [CipherForm::C1C3C2, CipherForm::C1C2C3, CipherForm::Der] {
            let c = key.public().encrypt(&data, form).unwrap();
            assert_eq!(key.decrypt(&c, form).unwrap(), data);
        }
        let c = key.public().encrypt(&data, CipherForm::C1C3C2).unwrap();
        assert_eq!(c.len(), 65 + 32 + 16);
        assert!(key.decrypt(&c, CipherForm::C1C2C3).is_err());
    }
}
