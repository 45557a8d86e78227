//! A Stripe webhook request, as the edge handles it: the `Stripe-Signature` check on the
//! headers alone and over the body, then the body normalized into an event, or kept whole
//! (secrets removed) as an `unparsed` one. Also the envelope time `lms-bridge simulate` reads.
//!
//! Input: the first line is the `Stripe-Signature` value, the rest the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_bridge_backend::shared::source::stripe::{self, Stripe};
use lms_bridge_backend::shared::source::{Source, VerifyError};
use lms_bridge_fuzz::{
    assert_quarantined, assert_round_trips, flip_one_byte, received_at, received_at_secs, sign_check, STRIPE_SECRET,
};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static SOURCE: OnceLock<Stripe> = OnceLock::new();
    let source = SOURCE.get_or_init(|| Stripe::new([STRIPE_SECRET.to_owned()]));
    let at = received_at();

    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &data[data.len()..]),
    };
    let sent = String::from_utf8_lossy(line);
    let headers = vec![(stripe::SIGNATURE_HEADER, sent.as_ref())];

    // `verify` refuses everything `verify_headers` refuses, for the same reason; past the
    // headers, the only refusal left is the signature.
    let early = source.verify_headers(&headers, at);
    let verdict = source.verify(&headers, body, at);
    match &early {
        Err(e) => assert_eq!(verdict.as_ref(), Err(e), "verify and verify_headers disagree"),
        Ok(()) => assert!(matches!(verdict, Ok(()) | Err(VerifyError::InvalidSignature)), "{verdict:?}"),
    }

    // What Stripe sends for this body now verifies now; one byte more or less of it does not.
    if sign_check(data) {
        let t = received_at_secs();
        let signed = Stripe::sign(STRIPE_SECRET, t, body);
        let signed = vec![(stripe::SIGNATURE_HEADER, signed.as_str())];
        assert_eq!(source.verify_headers(&signed, at), Ok(()));
        assert_eq!(source.verify(&signed, body, at), Ok(()), "a body signed with the secret is refused");
        assert_eq!(source.verify(&signed, &flip_one_byte(body), at), Err(VerifyError::InvalidSignature));
    }

    let sent_at = source.sent_at(body);

    match source.normalize_request(&headers, body, at) {
        Ok(event) => {
            assert!(event.id.as_str().starts_with("stripe:"), "{}", event.id);
            assert!(event.id.as_str().len() > "stripe:".len());
            assert_eq!(event.source.as_str(), stripe::NAME);
            assert_eq!(event.received_at, at);
            // The envelope time `simulate` replays at is the time the event says it happened.
            assert_eq!(event.occurred_at, sent_at.unwrap_or(at));
            assert_round_trips(&event);
        }
        Err(reason) => {
            let kept = source.quarantine(body, &reason, at);
            assert_quarantined(&kept, stripe::NAME, at, STRIPE_SECRET);
        }
    }
});
