//! The crypto room against implementations nobody here wrote, both ways:
//! the Debian OpenSSL 3 command line (`openssl dgst -sm3 -sigopt distid:`,
//! `openssl mac … HMAC` with SM3, `openssl enc -sm4-cbc`, `openssl pkeyutl`
//! for SM2 encryption), Python's `hashlib`/`hmac` (SM3 through OpenSSL),
//! the `cryptography` package (SM4-GCM) and the pure-Python `gmssl` (SM2
//! signatures as raw `r‖s`, SM2 encryption without C1's `04`).
//!
//! Python is `DUIJIE_TEST_PYTHON` (scripts/test.sh makes a virtualenv with
//! `gmssl` and `cryptography` in /var/tmp/duijie-pyenv), else `python3`.

use duijie_crypto::sm2::{CipherForm, DEFAULT_DISTID, PrivateKey, PublicKey, SignatureForm};
use duijie_crypto::{Suite, sm4};
use std::path::Path;
use std::process::Command;

fn openssl(args: &[&str], dir: &Path) -> (bool, Vec<u8>, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line (Debian package openssl) is installed");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn python(script: &str) -> String {
    let py = std::env::var("DUIJIE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&py)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{py}: {e}"));
    assert!(
        out.status.success(),
        "{py}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A key made by OpenSSL, its PEM files in `dir`.
fn openssl_key(dir: &Path) -> (PrivateKey, PublicKey) {
    assert!(openssl(&["genpkey", "-algorithm", "SM2", "-out", "key.pem"], dir).0);
    assert!(
        openssl(
            &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
            dir
        )
        .0
    );
    let pem = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    let public = std::fs::read_to_string(dir.join("pub.pem")).unwrap();
    (
        PrivateKey::from_pem(&pem, DEFAULT_DISTID).unwrap(),
        PublicKey::from_pem(&public, DEFAULT_DISTID).unwrap(),
    )
}

#[test]
fn sm2_signatures_verify_across_openssl_both_ways_with_the_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = openssl_key(d);
    assert_eq!(key.public(), public, "the same key read from both files");
    let msg = "1796601600.saf:HZ2026000123:u1796601599000.{\"hazard_no\":\"HZ2026000123\"}";
    std::fs::write(d.join("msg"), msg).unwrap();
    for distid in [DEFAULT_DISTID, "duijie@yichang.gov.cn"] {
        let key =
            PrivateKey::from_pem(&std::fs::read_to_string(d.join("key.pem")).unwrap(), distid)
                .unwrap();
        let sigopt = format!("distid:{distid}");
        // The hub signs, OpenSSL verifies.
        std::fs::write(
            d.join("hub.sig"),
            key.sign(msg.as_bytes(), SignatureForm::Der),
        )
        .unwrap();
        let (ok, out, err) = openssl(
            &[
                "dgst",
                "-sm3",
                "-verify",
                "pub.pem",
                "-sigopt",
                &sigopt,
                "-signature",
                "hub.sig",
                "msg",
            ],
            d,
        );
        assert!(ok, "{err}");
        assert_eq!(String::from_utf8_lossy(&out).trim(), "Verified OK");
        // OpenSSL signs, the hub verifies; not under another identifier.
        let (ok, _, err) = openssl(
            &[
                "dgst",
                "-sm3",
                "-sign",
                "key.pem",
                "-sigopt",
                &sigopt,
                "-out",
                "openssl.sig",
                "msg",
            ],
            d,
        );
        assert!(ok, "{err}");
        let sig = std::fs::read(d.join("openssl.sig")).unwrap();
        let public =
            PublicKey::from_pem(&std::fs::read_to_string(d.join("pub.pem")).unwrap(), distid)
                .unwrap();
        public
            .verify(msg.as_bytes(), &sig, SignatureForm::Der)
            .unwrap();
        let other =
            PublicKey::from_pem(&std::fs::read_to_string(d.join("pub.pem")).unwrap(), "x").unwrap();
        assert!(
            other
                .verify(msg.as_bytes(), &sig, SignatureForm::Der)
                .is_err()
        );
    }
    // A signature OpenSSL refuses: one byte of the message changed.
    std::fs::write(d.join("hub.sig"), key.sign(b"other", SignatureForm::Der)).unwrap();
    let (ok, _, _) = openssl(
        &[
            "dgst",
            "-sm3",
            "-verify",
            "pub.pem",
            "-sigopt",
            "distid:1234567812345678",
            "-signature",
            "hub.sig",
            "msg",
        ],
        d,
    );
    assert!(!ok);
}

#[test]
fn sm3_and_hmac_sm3_match_openssl_and_python() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let msg = "1796601600.key.{\"a\":1}";
    std::fs::write(d.join("msg"), msg).unwrap();
    let (_, out, _) = openssl(&["dgst", "-sm3", "-r", "msg"], d);
    let openssl_digest = String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        hex::encode(Suite::Gm.digest(&[msg.as_bytes()])),
        openssl_digest
    );

    let key = "dept-feed-secret-0123456789";
    let ours = hex::encode(Suite::Gm.hmac(key.as_bytes(), &[msg.as_bytes()]));
    let (ok, out, err) = openssl(
        &[
            "mac",
            "-digest",
            "SM3",
            "-macopt",
            &format!("key:{key}"),
            "-in",
            "msg",
            "HMAC",
        ],
        d,
    );
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim().to_lowercase(), ours);
    let py = python(&format!(
        "import hmac; print(hmac.new({key:?}.encode(), {msg:?}.encode(), 'sm3').hexdigest())"
    ));
    assert_eq!(py, ours);
}

#[test]
fn sm4_gcm_and_cbc_interoperate_with_python_cryptography_and_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, nonce, iv) = (
        duijie_crypto::random(16),
        duijie_crypto::random(12),
        duijie_crypto::random(16),
    );
    let (k, n, i) = (hex::encode(&key), hex::encode(&nonce), hex::encode(&iv));
    let plain = "420502199001011234 张三";
    // GCM: the hub seals, Python opens; Python seals, the hub opens.
    let sealed = sm4::gcm_seal(&key, &nonce, b"aad", plain.as_bytes()).unwrap();
    let opened = python(&format!(
        "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n\
         from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes\n\
         b = bytes.fromhex('{}')\n\
         dec = Cipher(algorithms.SM4(bytes.fromhex('{k}')), modes.GCM(bytes.fromhex('{n}'), b[-16:])).decryptor()\n\
         dec.authenticate_additional_data(b'aad')\n\
         print((dec.update(b[:-16]) + dec.finalize()).decode())",
        hex::encode(&sealed)
    ));
    assert_eq!(opened, plain);
    let from_python = python(&format!(
        "from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes\n\
         enc = Cipher(algorithms.SM4(bytes.fromhex('{k}')), modes.GCM(bytes.fromhex('{n}'))).encryptor()\n\
         enc.authenticate_additional_data(b'aad')\n\
         c = enc.update({plain:?}.encode()) + enc.finalize()\n\
         print((c + enc.tag).hex())"
    ));
    let opened = sm4::gcm_open(&key, &nonce, b"aad", &hex::decode(from_python).unwrap()).unwrap();
    assert_eq!(String::from_utf8(opened).unwrap(), plain);
    // CBC with PKCS#7: OpenSSL's `enc` both ways.
    std::fs::write(d.join("plain"), plain).unwrap();
    let (ok, out, err) = openssl(&["enc", "-sm4-cbc", "-K", &k, "-iv", &i, "-in", "plain"], d);
    assert!(ok, "{err}");
    assert_eq!(out, sm4::cbc_encrypt(&key, &iv, plain.as_bytes()).unwrap());
    std::fs::write(d.join("cipher"), &out).unwrap();
    let (ok, back, err) = openssl(
        &[
            "enc", "-d", "-sm4-cbc", "-K", &k, "-iv", &i, "-in", "cipher",
        ],
        d,
    );
    assert!(ok, "{err}");
    assert_eq!(back, sm4::cbc_decrypt(&key, &iv, &out).unwrap());
}

#[test]
fn sm2_data_keys_and_raw_signatures_interoperate_with_openssl_and_gmssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = openssl_key(d);
    let data_key = duijie_crypto::random(16);
    // DER (GM/T 0009) with OpenSSL, both ways.
    std::fs::write(
        d.join("wrapped"),
        public.encrypt(&data_key, CipherForm::Der).unwrap(),
    )
    .unwrap();
    let (ok, out, err) = openssl(
        &["pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "wrapped"],
        d,
    );
    assert!(ok, "{err}");
    assert_eq!(out, data_key);
    std::fs::write(d.join("dk"), &data_key).unwrap();
    let (ok, out, err) = openssl(
        &[
            "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "dk",
        ],
        d,
    );
    assert!(ok, "{err}");
    assert_eq!(key.decrypt(&out, CipherForm::Der).unwrap(), data_key);

    // gmssl: its keys are hex, the public one without 04; mode 1 is
    // C1C3C2, mode 0 C1C2C3, and its ciphertexts have no 04 either.
    let secret_hex = {
        let (_, out, _) = openssl(&["pkey", "-in", "key.pem", "-text", "-noout"], d);
        let text = String::from_utf8_lossy(&out).into_owned();
        let priv_block: String = text
            .split("pub:")
            .next()
            .unwrap()
            .split("priv:")
            .nth(1)
            .unwrap()
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        priv_block.trim_start_matches("00").to_owned()
    };
    let pub_hex = hex::encode(&public.to_sec1()[1..]);
    let prelude = format!(
        "from gmssl import sm2, func\n\
         c = sm2.CryptSM2(private_key='{secret_hex:0>64}', public_key='{pub_hex}', mode=MODE)\n"
    );
    for (form, mode) in [(CipherForm::C1C3C2, 1), (CipherForm::C1C2C3, 0)] {
        let prelude = prelude.replace("MODE", &mode.to_string());
        let wrapped = public.encrypt(&data_key, form).unwrap();
        let out = python(&format!(
            "{prelude}print(c.decrypt(bytes.fromhex('{}')).hex())",
            hex::encode(&wrapped[1..])
        ));
        assert_eq!(out, hex::encode(&data_key), "{form:?}");
        let out = python(&format!(
            "{prelude}print(c.encrypt(bytes.fromhex('{}')).hex())",
            hex::encode(&data_key)
        ));
        assert_eq!(
            key.decrypt(&hex::decode(out).unwrap(), form).unwrap(),
            data_key,
            "{form:?}"
        );
    }
    // Raw r‖s signatures under the default identifier.
    let prelude = prelude.replace("MODE", "1");
    let msg = "1796601600.key.{}";
    let ours = hex::encode(key.sign(msg.as_bytes(), SignatureForm::Raw));
    let verdict = python(&format!(
        "{prelude}print(c.verify_with_sm3('{ours}', {msg:?}.encode()))"
    ));
    assert_eq!(verdict, "True");
    let theirs = python(&format!(
        "{prelude}print(c.sign_with_sm3({msg:?}.encode(), func.random_hex(c.para_len)))"
    ));
    public
        .verify(
            msg.as_bytes(),
            &hex::decode(theirs).unwrap(),
            SignatureForm::Raw,
        )
        .unwrap();
}
