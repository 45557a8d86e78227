//! A Hotmart webhook body, as the edge handles it once the hottok is checked: normalized into
//! an event, or kept whole (credentials removed) as an `unparsed` one. Also the hottok check
//! and the envelope time `lms-bridge simulate` reads.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use lms_bridge_fuzz::{assert_round_trips, contains, received_at, HOTTOK};
use lms_bridge_backend::shared::source::hotmart::{self, Hotmart};
use lms_bridge_backend::shared::source::{Source, VerifyError};
use lms_bridge_backend::shared::Change;
use std::sync::OnceLock;

fuzz_target!(|body: &[u8]| {
    static SOURCE: OnceLock<Hotmart> = OnceLock::new();
    let source = SOURCE.get_or_init(|| Hotmart::new([HOTTOK.to_owned()]));
    let at = received_at();

    // The header value is outside input too: the body's first line stands in for it.
    let sent = String::from_utf8_lossy(body.split(|&b| b == b'\n').next().unwrap_or_default());
    let headers = vec![(hotmart::HOTTOK_HEADER, sent.as_ref())];
    let verdict = source.verify(&headers, body, at);
    assert_eq!(verdict.is_ok(), sent == HOTTOK, "{verdict:?}");
    if let Err(e) = verdict {
        assert_eq!(e, VerifyError::InvalidToken(hotmart::HOTTOK_HEADER));
    }

    let _ = source.sent_at(body);

    match source.normalize(body, at) {
        Ok(event) => {
            assert!(!event.id.as_str().is_empty());
            assert_eq!(event.source.as_str(), hotmart::NAME);
            assert_eq!(event.received_at, at);
            assert_round_trips(&event);
        }
        Err(reason) => {
            let kept = source.quarantine(body, &reason, at);
            // The kept body and the reason (which may quote it) never hold the token.
            let raw = kept.raw.as_deref().expect("an unparsed event keeps the body");
            let raw = base64::engine::general_purpose::STANDARD.decode(raw).expect("raw is base64");
            assert!(!contains(&raw, HOTTOK.as_bytes()), "the kept body holds the hottok");
            let Change::Unparsed { reason } = &kept.change else { panic!("not unparsed: {:?}", kept.change) };
            assert!(!reason.contains(HOTTOK), "the reason holds the hottok");
            assert_round_trips(&kept);
        }
    }
});
