//! A Standard Webhooks request from sender `acme`, as the edge handles it: the signature check
//! on the headers alone and over the body, then the body normalized into an event (its id from
//! `webhook-id`, or from the body's digest when replayed without the request), or kept whole
//! (secrets removed) as an `unparsed` one. Also the envelope time `lms-bridge simulate` reads.
//!
//! Input: the first three lines are the `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` values, the rest the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_bridge_backend::shared::source::std_webhooks::{self, StdWebhooks};
use lms_bridge_backend::shared::source::{Source, VerifyError};
use lms_bridge_fuzz::{
    assert_quarantined, assert_round_trips, flip_one_byte, received_at, received_at_secs, sign_check, STD_SECRET,
    STD_SENDER,
};
use std::sync::OnceLock;

const SOURCE_NAME: &str = "std-acme";

/// What the source accepts as a `webhook-id` (and so uses as the event id).
fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= std_webhooks::MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

fuzz_target!(|data: &[u8]| {
    static SOURCE: OnceLock<StdWebhooks> = OnceLock::new();
    let source =
        SOURCE.get_or_init(|| StdWebhooks::new(STD_SENDER, [STD_SECRET.to_owned()]).expect("a valid sender name"));
    let at = received_at();

    let mut parts = data.splitn(4, |&b| b == b'\n');
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (id, timestamp, signature) = (next(), next(), next());
    let body = parts.next().unwrap_or_default();
    let headers = vec![
        (std_webhooks::ID_HEADER, id.as_str()),
        (std_webhooks::TIMESTAMP_HEADER, timestamp.as_str()),
        (std_webhooks::SIGNATURE_HEADER, signature.as_str()),
    ];

    // `verify` refuses everything `verify_headers` refuses, for the same reason; past the
    // headers, the only refusal left is the signature.
    let early = source.verify_headers(&headers, at);
    let verdict = source.verify(&headers, body, at);
    match &early {
        Err(e) => assert_eq!(verdict.as_ref(), Err(e), "verify and verify_headers disagree"),
        Ok(()) => assert!(matches!(verdict, Ok(()) | Err(VerifyError::InvalidSignature)), "{verdict:?}"),
    }

    // What a sender signs for this body now verifies now, also among the fuzzed signatures as
    // decoys; one byte more or less of it does not.
    if sign_check(data) {
        let id = Some(id.trim()).filter(|id| is_valid_id(id)).unwrap_or("msg_fuzz");
        let t = received_at_secs();
        let signed = StdWebhooks::sign(STD_SECRET, id, t, body).expect("the configured secret is base64");
        let t = t.to_string();
        let decoys = format!("{} {signed}", signature.replace(['\r', '\n'], ""));
        for signature in [signed.as_str(), decoys.as_str()] {
            let request = vec![
                (std_webhooks::ID_HEADER, id),
                (std_webhooks::TIMESTAMP_HEADER, t.as_str()),
                (std_webhooks::SIGNATURE_HEADER, signature),
            ];
            assert_eq!(source.verify_headers(&request, at), Ok(()));
            assert_eq!(source.verify(&request, body, at), Ok(()), "a body signed with the secret is refused");
            assert_eq!(source.verify(&request, &flip_one_byte(body), at), Err(VerifyError::InvalidSignature));
        }
    }

    let sent_at = source.sent_at(body);

    // Without the request (a kept body replayed) the id is the body's digest.
    let replayed = source.normalize(body, at);
    if let Ok(event) = &replayed {
        assert!(event.id.as_str().starts_with("std-acme:body-"), "{}", event.id);
        assert_eq!(event.source.as_str(), SOURCE_NAME);
        assert_eq!(event.received_at, at);
        assert_eq!(event.occurred_at, sent_at.unwrap_or(at));
        assert_round_trips(event);
    }

    match source.normalize_request(&headers, body, at) {
        Ok(event) => {
            let webhook_id = Some(id.trim()).filter(|id| is_valid_id(id));
            match webhook_id {
                Some(webhook_id) => assert_eq!(event.id.as_str(), format!("{SOURCE_NAME}:{webhook_id}")),
                None => assert!(event.id.as_str().starts_with("std-acme:body-"), "{}", event.id),
            }
            assert_eq!(event.source.as_str(), SOURCE_NAME);
            assert_eq!(event.received_at, at);
            assert_round_trips(&event);
            // The same fact as without the request: only the id differs.
            let mut replayed = replayed.expect("normalized with the request, not without");
            replayed.id = event.id.clone();
            assert_eq!(replayed, event, "the request's headers changed more than the id");
        }
        Err(reason) => {
            let kept = source.quarantine(body, &reason, at);
            assert_quarantined(&kept, SOURCE_NAME, at, STD_SECRET);
        }
    }
});
