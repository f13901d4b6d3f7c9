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

#[cfg(test)]
mod tests {
    use super::*;
    use duijie_crypto::Text;
    use duijie_crypto::sm2::{CipherForm, PrivateKey};

    fn profile(
        receiver: &PrivateKey,
        cipher: BodyCipher,
        key_form: CipherForm,
        text: Text,
    ) -> Envelope {
        Envelope::new(&BodyEncryption {
            cipher,
            public_key: receiver.public().to_pem(),
            key_form,
            text,
        })
        .expect("the key reads")
    }

    /// Every profile combination, opened by what the receiver holds: the
    /// fields in the declared text, the key in the declared layout, the
    /// cipher with its IV size and (GCM) the key as associated data.
    #[test]
    fn every_profile_opens_with_the_receivers_key_and_only_for_its_record() {
        let receiver = PrivateKey::generate(duijie_crypto::sm2::DEFAULT_DISTID);
        let plain = br#"{"id":"saf:1","grade":"MAJOR"}"#;
        for cipher in [BodyCipher::Sm4Gcm, BodyCipher::Sm4Cbc] {
            for form in [CipherForm::C1C3C2, CipherForm::C1C2C3, CipherForm::Der] {
                for text in [Text::Base64, Text::Hex] {
                    let e: serde_json::Value = serde_json::from_str(
                        &profile(&receiver, cipher, form, text).seal("saf:1:u1", plain),
                    )
                    .unwrap();
                    let field = |k: &str| text.decode(e[k].as_str().unwrap()).unwrap();
                    let data_key = receiver.decrypt(&field("key"), form).unwrap();
                    let (iv, data) = (field("iv"), field("data"));
                    let opened = match cipher {
                        BodyCipher::Sm4Gcm => {
                            assert_eq!(iv.len(), 12);
                            assert!(
                                duijie_crypto::sm4::gcm_open(&data_key, &iv, b"saf:2:u1", &data)
                                    .is_err(),
                                "moved to another record"
                            );
                            duijie_crypto::sm4::gcm_open(&data_key, &iv, b"saf:1:u1", &data)
                        }
                        BodyCipher::Sm4Cbc => {
                            assert_eq!(iv.len(), 16);
                            duijie_crypto::sm4::cbc_decrypt(&data_key, &iv, &data)
                        }
                    }
                    .unwrap();
                    assert_eq!(opened, plain, "{cipher:?} {form:?} {text:?}");
                    assert_eq!(e["cipher"], cipher.name());
                }
            }
        }
    }

    /// The RECEIVING.md recipe for OpenSSL's command line: `der` and
    /// `sm4-cbc`, opened with `pkeyutl` and `enc` alone.
    #[test]
    fn a_der_cbc_envelope_opens_with_openssls_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        run(&["genpkey", "-algorithm", "SM2", "-out", "key.pem"]);
        let pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
        let receiver = PrivateKey::from_pem(&pem, duijie_crypto::sm2::DEFAULT_DISTID).unwrap();
        let plain = "{\"id\":\"saf:1\",\"description\":\"储罐区\"}";
        let e: serde_json::Value = serde_json::from_str(
            &profile(&receiver, BodyCipher::Sm4Cbc, CipherForm::Der, Text::Hex)
                .seal("saf:1:u1", plain.as_bytes()),
        )
        .unwrap();
        let hex_field = |k: &str| e[k].as_str().unwrap().to_owned();
        std::fs::write(
            dir.path().join("wrapped"),
            hex::decode(hex_field("key")).unwrap(),
        )
        .unwrap();
        let data_key = run(&["pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "wrapped"]);
        std::fs::write(
            dir.path().join("data"),
            hex::decode(hex_field("data")).unwrap(),
        )
        .unwrap();
        let opened = run(&[
            "enc",
            "-d",
            "-sm4-cbc",
            "-K",
            &hex::encode(data_key),
            "-iv",
            &hex_field("iv"),
            "-in",
            "data",
        ]);
        assert_eq!(String::from_utf8(opened).unwrap(), plain);
    }
}
