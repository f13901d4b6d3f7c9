//! `duijie receipts verify`: what a receipt proves (non-repudiation,
//! GB/T 39786-2021 level 3). For each receipt of a delivery that carries a
//! [`Proof`]: the hub's SM2 signature over the receipt's statement (the
//! hub recorded this outcome, this body digest and this answer, and nobody
//! changed the receipt since); the receiver's SM2 signature over its
//! answer (the receiver acknowledged it); and, given the canonical records
//! (`--input`), that the body digest is the body the delivery makes of the
//! record today (what was sent).

use super::{Proof, Receipt, ReceiptKey};
use duijie_crypto::sm2::{PublicKey, SignatureForm};
use std::collections::BTreeMap;

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    Fails(String),
    /// Not checked, and why (no key given, no record given, the answer
    /// kept masked).
    Unchecked(String),
}

impl Verdict {
    fn label(&self) -> String {
        match self {
            Verdict::Holds => "ok".into(),
            Verdict::Fails(why) => format!("FAILS ({why})"),
            Verdict::Unchecked(why) => format!("not checked ({why})"),
        }
    }
}

/// The verdicts on one receipt.
#[derive(Debug, Clone)]
pub struct Checked {
    pub receipt: Receipt,
    /// Where the receipt is on the receipts topic.
    pub at: (i32, i64),
    pub hub: Verdict,
    pub answer: Verdict,
    pub body: Verdict,
}

impl Checked {
    pub fn holds(&self) -> bool {
        ![&self.hub, &self.answer, &self.body]
            .iter()
            .any(|v| matches!(v, Verdict::Fails(_)))
    }

    pub fn line(&self) -> String {
        let r = &self.receipt;
        format!(
            "{} {} {} [{}:{}] hub signature: {}; receiver's signature: {}; body: {}",
            r.delivery,
            r.record_id,
            r.idempotency_key,
            self.at.0,
            self.at.1,
            self.hub.label(),
            self.answer.label(),
            self.body.label()
        )
    }
}

/// What the checks take.
#[derive(Debug, Default)]
pub struct Keys<'a> {
    /// The hub's public key.
    pub hub: Option<&'a PublicKey>,
    /// The receiver's key for its answers.
    pub receiver: Option<&'a ReceiptKey>,
    /// Idempotency key → SM3 of the body the delivery makes of the record.
    pub bodies: Option<&'a BTreeMap<String, String>>,
}

/// The checks of one receipt (`None` when it carries no proof: nothing
/// was answered, or it predates proofs).
pub fn check(receipt: &Receipt, at: (i32, i64), keys: &Keys<'_>) -> Option<Checked> {
    let proof: &Proof = receipt.proof.as_ref()?;
    let hub = match (keys.hub, &proof.hub_signature, receipt.statement()) {
        (_, None, _) => Verdict::Unchecked("the hub had no [hub.signing] key".into()),
        (None, Some(_), _) => Verdict::Unchecked("no hub key given".into()),
        (Some(key), Some(sig), Some(statement)) => match duijie_crypto::Text::Base64.decode(sig) {
            Ok(sig) if key.verify(&statement, &sig, SignatureForm::Der).is_ok() => Verdict::Holds,
            _ => Verdict::Fails("the receipt is not what the hub signed".into()),
        },
        (Some(_), Some(_), None) => Verdict::Fails("no statement".into()),
    };
    let answer = match (&proof.answer, &proof.answer_signature, keys.receiver) {
        (_, None, _) => Verdict::Unchecked("the receiver did not sign its answer".into()),
        (_, Some(_), None) => Verdict::Unchecked("no receiver key configured".into()),
        _ if proof.answer_masked => Verdict::Unchecked(format!(
            "the answer held a full ID number and is kept masked; verified when it came: {}",
            proof.answer_verified
        )),
        (Some(answer), Some(sig), Some(key)) => {
            if key.verifies(answer.as_bytes(), sig) {
                Verdict::Holds
            } else if answer.len() >= super::sink::ANSWER_KEPT {
                Verdict::Unchecked(format!(
                    "the answer was longer than the part kept; verified when it came: {}",
                    proof.answer_verified
                ))
            } else {
                Verdict::Fails("the answer is not what the receiver signed".into())
            }
        }
        (None, Some(_), Some(_)) => Verdict::Fails("a signature without its answer".into()),
    };
    let body = match keys.bodies {
        None => Verdict::Unchecked("no --input".into()),
        Some(bodies) => match bodies.get(&receipt.idempotency_key) {
            None => Verdict::Unchecked("the record is not in the input".into()),
            Some(sm3) if *sm3 == proof.body_sm3 => Verdict::Holds,
            Some(_) => Verdict::Fails("the record's body is not the one sent".into()),
        },
    };
    Some(Checked {
        receipt: receipt.clone(),
        at,
        hub,
        answer,
        body,
    })
}

/// Every receipt of `delivery` on the receipts topic (of `record`, when
/// given) that carries a proof, checked.
pub async fn verify(
    feeds: &super::ops::Feeds<'_>,
    delivery: &str,
    record: Option<&str>,
    keys: &Keys<'_>,
) -> crate::error::Result<Vec<Checked>> {
    let records = crate::bus::inspect::read_topic(&feeds.bus, &feeds.topics.receipts, true).await?;
    Ok(records
        .iter()
        .filter_map(|m| {
            let r: Receipt = serde_json::from_slice(m.payload.as_deref()?).ok()?;
            (r.delivery == delivery && record.is_none_or(|id| r.record_id == id))
                .then(|| check(&r, (m.partition, m.offset), keys))
                .flatten()
        })
        .collect())
}

/// Idempotency key (as receipts write it) → body SM3, from `deliveries preview`
/// rows of the canonical records in `input`.
pub fn bodies_of_preview(rows: &[serde_json::Value]) -> BTreeMap<String, String> {
    let mask = crate::ident::MaskPolicy::birth_date();
    rows.iter()
        .filter_map(|row| {
            let key = row.get("idempotency_key")?.as_str()?;
            let body = row.get("record")?;
            (row.get("sent") == Some(&serde_json::Value::Bool(true))).then(|| {
                (
                    crate::personal::scrub_text(key, &mask),
                    hex::encode(duijie_crypto::Suite::Gm.digest(&[body.to_string().as_bytes()])),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Outcome;

    fn receipt() -> Receipt {
        Receipt {
            delivery: "credit_penalties".into(),
            department: "信用平台".into(),
            record_id: "pen:CF1".into(),
            idempotency_key: "pen:CF1:v1".into(),
            outcome: Outcome::Delivered,
            attempts: 1,
            reason: None,
            at_ms: 1_796_601_600_000,
            topic: "canonical.penalty_decision".into(),
            partition: 0,
            offset: 7,
            proof: Some(Proof {
                body_sm3: "ab".repeat(32),
                answer: Some(r#"{"code":0}"#.into()),
                answer_signature: None,
                answer_verified: true,
                answer_masked: false,
                hub_signature: None,
                hub_key: None,
            }),
        }
    }

    /// A receipt signed by the hub and by the receiver holds; each field
    /// changed afterwards is found, by the check that covers it.
    #[test]
    fn a_changed_receipt_or_answer_or_body_is_found() {
        let hub = duijie_crypto::sm2::PrivateKey::generate(duijie_crypto::sm2::DEFAULT_DISTID);
        let platform = duijie_crypto::sm2::PrivateKey::generate(duijie_crypto::sm2::DEFAULT_DISTID);
        let platform_key = ReceiptKey::new(&platform.public().to_pem()).unwrap();
        let hub_public = hub.public();
        let sign = |k: &duijie_crypto::sm2::PrivateKey, m: &[u8]| {
            duijie_crypto::Text::Base64.encode(&k.sign(m, SignatureForm::Der))
        };
        let mut r = receipt();
        let answer = r.proof.as_ref().unwrap().answer.clone().unwrap();
        r.proof.as_mut().unwrap().answer_signature = Some(sign(&platform, answer.as_bytes()));
        let statement = r.statement().unwrap();
        r.proof.as_mut().unwrap().hub_signature = Some(sign(&hub, &statement));
        let bodies = BTreeMap::from([("pen:CF1:v1".to_owned(), "ab".repeat(32))]);
        let keys = Keys {
            hub: Some(&hub_public),
            receiver: Some(&platform_key),
            bodies: Some(&bodies),
        };
        let c = check(&r, (0, 1), &keys).unwrap();
        assert!(c.holds(), "{}", c.line());
        assert_eq!(
            (c.hub.clone(), c.answer.clone(), c.body.clone()),
            (Verdict::Holds, Verdict::Holds, Verdict::Holds)
        );

        let mut outcome = r.clone();
        outcome.outcome = Outcome::Rejected;
        assert!(matches!(
            check(&outcome, (0, 1), &keys).unwrap().hub,
            Verdict::Fails(_)
        ));
        let mut answered = r.clone();
        answered.proof.as_mut().unwrap().answer = Some(r#"{"code":1}"#.into());
        let c = check(&answered, (0, 1), &keys).unwrap();
        assert!(matches!(c.answer, Verdict::Fails(_)), "{}", c.line());
        assert!(
            matches!(c.hub, Verdict::Fails(_)),
            "the statement covers the answer"
        );
        let other = BTreeMap::from([("pen:CF1:v1".to_owned(), "cd".repeat(32))]);
        let c = check(
            &r,
            (0, 1),
            &Keys {
                bodies: Some(&other),
                ..keys
            },
        )
        .unwrap();
        assert!(matches!(c.body, Verdict::Fails(_)) && !c.holds());
        // Without keys nothing is claimed.
        let c = check(&r, (0, 1), &Keys::default()).unwrap();
        assert!(c.holds() && matches!(c.hub, Verdict::Unchecked(_)));
    }
}
