//! The body encrypted to its receiver: the envelope `duijie-sm4/1`.
//!
//! A fresh 16-byte SM4 data key per request encrypts the JSON body —
//! SM4-GCM (GB/T 32907; 12-byte IV, the 16-byte tag after the ciphertext,
//! the request's `Idempotency-Key` as associated data, so an envelope cannot
//! be moved to another record) or SM4-CBC (16-byte IV, PKCS#7). The data key
//! is wrapped with the receiver's SM2 public key (GB/T 32918.4) in the
//! layout the receiver reads (`c1c3c2`, `c1c2c3` or `der`). The body sent
//! is
//!
//! ```json
//! {"envelope":"duijie-sm4/1","cipher":"sm4-gcm","key_form":"c1c3c2",
//!  "text":"base64","key":"…","iv":"…","data":"…"}
//! ```
//!
//! and the HMAC and SM2 signatures cover it as sent (encrypt, then sign),
//! so a receiver checks who sent it before it decrypts anything.

use crate::delivery::{BodyCipher, BodyEncryption};
use duijie_crypto::sm2::PublicKey;

#[derive(Debug)]
pub(super) struct Envelope {
    receiver: PublicKey,
    config: BodyEncryption,
}

impl Envelope {
    /// `None` when the key does not read (checked when the deployment was
    /// read).
    pub(super) fn new(config: &BodyEncryption) -> Option<Self> {
        Some(Self {
            receiver: config.receiver_key().ok()?,
            config: config.clone(),
        })
    }

    pub(super) fn name(&self) -> &'static str {
        self.config.cipher.name()
    }

    /// The envelope of `plain` for the record whose idempotency key is
    /// `key`.
    pub(super) fn seal(&self, key: &str, plain: &[u8]) -> String {
        let data_key = duijie_crypto::random(16);
        let (iv, data) = match self.config.cipher {
            BodyCipher::Sm4Gcm => {
                let iv = duijie_crypto::random(12);
                let data = duijie_crypto::sm4::gcm_seal(&data_key, &iv, key.as_bytes(), plain)
                    .expect("a 16-byte key and a 12-byte IV");
                (iv, data)
            }
            BodyCipher::Sm4Cbc => {
                let iv = duijie_crypto::random(16);
                let data = duijie_crypto::sm4::cbc_encrypt(&data_key, &iv, plain)
                    .expect("a 16-byte key and a 16-byte IV");
                (iv, data)
            }
        };
        let wrapped = self
            .receiver
            .encrypt(&data_key, self.config.key_form)
            .expect("SM2 encrypts 16 bytes to any valid key");
        let text = self.config.text;
        serde_json::json!({
            "envelope": "duijie-sm4/1",
            "cipher": self.config.cipher.name(),
            "key_form": form_name(self.config.key_form),
            "text": match text { duijie_crypto::Text::Base64 => "base64", duijie_crypto::Text::Hex => "hex" },
            "key": text.encode(&wrapped),
            "iv": text.encode(&iv),
            "data": text.encode(&data),
        })
        .to_string()
    }
}

fn form_name(form: duijie_crypto::sm2::CipherForm) -> &'static str {
    use duijie_crypto::sm2::CipherForm;
    match form {
        CipherForm::C1C3C2 => "c1c3c2",
        CipherForm::C1C2C3 => "c1c2c3",
        CipherForm::Der => "der",
    }
}
