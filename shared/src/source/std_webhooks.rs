//! Standard Webhooks senders (<https://www.standardwebhooks.com>, specification 1.0.0): any
//! shop system that signs its webhooks the Standard Webhooks way and sends the small JSON body
//! documented in docs/std-webhooks-senders.md.
//!
//! Each sender has a name (`acme`): its route is `POST /webhooks/std/acme`, its source name
//! `std-acme`, its secrets the setting `STD_WEBHOOK_SECRET_ACME` (`whsec_<base64>`,
//! comma-separated during a rotation).
//!
//! Verification: `webhook-id`, `webhook-timestamp` (seconds, within ±5 minutes of `now`,
//! inclusive) and `webhook-signature` (space-separated `v1,<base64>` entries; other versions
//! are skipped), HMAC-SHA256 under the base64-decoded secret over the exact bytes
//! `"{id}.{timestamp}.{body}"`, compared in constant time against every configured secret.

use super::loose::{Instant, Obj, Text};
use super::redact::Scrubber;
use super::{Headers, NormalizeError, Source, VerifyError};
use crate::event::{Change, Charge, Event, Product, RevokeReason, Student, Subscription, SCHEMA};
use crate::ids::{ChargeId, Email, EventId, GrantId, ProductId, SourceName};
use crate::timestamp::Timestamp;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use subtle::ConstantTimeEq;

/// The prefix of the source names of Standard Webhooks senders: `std-{sender}`.
pub const PREFIX: &str = "std-";
/// The header with the message id (the same on every retry: the dedupe key).
pub const ID_HEADER: &str = "webhook-id";
/// The header with the attempt's time, in seconds since the epoch.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header with the space-separated signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The settings holding each sender's secrets (`STD_WEBHOOK_SECRET_` and the sender's name
/// in capitals, `-` as `_`), as named in errors (which never carry user text).
pub const SECRET_SETTING: &str = "STD_WEBHOOK_SECRET_<NAME>";
/// How far the signed timestamp may be from `now`, either way, by default (what the
/// reference libraries use; the specification sets no number).
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;
/// Longest sender name.
pub const MAX_SENDER_CHARS: usize = 32;
/// Longest `webhook-id` accepted (it becomes part of the event id, at most 256 bytes).
pub const MAX_ID_BYTES: usize = 200;

/// Longest name kept (a student's name).
const MAX_NAME_CHARS: usize = 200;
/// Longest other free text kept (the event type).
const MAX_TEXT_CHARS: usize = 256;
/// How far past the edge's clock a stated time may be before it is clamped.
const CLOCK_SKEW_MILLIS: i64 = 5 * 60 * 1000;

/// Secrets are standard base64, padded or not (one library pads, another does not).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One Standard Webhooks sender, holding its accepted keys (several during a rotation).
#[derive(Clone)]
pub struct StdWebhooks {
    source: SourceName,
    /// The base64-decoded secrets: the HMAC keys.
    keys: Vec<Vec<u8>>,
    /// A configured secret could not be decoded: every request is refused.
    unusable_secret: bool,
    /// The secrets as configured, only to cut them out of kept bodies.
    scrubber: Scrubber,
    tolerance_secs: i64,
}

impl std::fmt::Debug for StdWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StdWebhooks {{ source: {}, keys: <{} redacted> }}", self.source, self.keys.len())
    }
}

/// Whether `sender` can name a sender: 1 to 32 lowercase ASCII letters, digits and `-`.
pub fn is_valid_sender(sender: &str) -> bool {
    !sender.is_empty()
        && sender.len() <= MAX_SENDER_CHARS
        && sender.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The setting holding a sender's secrets: `STD_WEBHOOK_SECRET_ACME` for `acme`.
pub fn secret_setting(sender: &str) -> String {
    format!("STD_WEBHOOK_SECRET_{}", sender.to_ascii_uppercase().replace('-', "_"))
}

/// The key a `whsec_<base64>` secret stands for (the prefix is optional, as in the reference
/// libraries); `None` when it is not base64 or is empty.
fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    SECRET_BASE64.decode(encoded).ok().filter(|key| !key.is_empty())
}

impl StdWebhooks {
    /// The sender `sender` (see [`is_valid_sender`]) accepting any of these secrets; blank ones
    /// are ignored. `None` for an invalid sender name.
    pub fn new(sender: &str, secrets: impl IntoIterator<Item = String>) -> Option<Self> {
        if !is_valid_sender(sender) {
            return None;
        }
        let plain: Vec<String> = secrets.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        let decoded: Vec<Option<Vec<u8>>> = plain.iter().map(|s| decode_secret(s)).collect();
        let unusable_secret = decoded.iter().any(Option::is_none);
        Some(Self {
            source: SourceName::trusted(format!("{PREFIX}{sender}")),
            keys: decoded.into_iter().flatten().collect(),
            unusable_secret,
            scrubber: Scrubber::new(&plain),
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        })
    }

    /// The sender of a source name `std-{sender}`, if the name is one.
    pub fn for_source(name: &str, secrets: &[String]) -> Option<Self> {
        Self::new(name.strip_prefix(PREFIX)?, secrets.iter().cloned())
    }

    /// The same sender with another timestamp tolerance (seconds, either way).
    pub fn with_tolerance(mut self, secs: u32) -> Self {
        self.tolerance_secs = i64::from(secs);
        self
    }

    /// The sender's name (`acme` for `std-acme`).
    pub fn sender(&self) -> &str {
        &self.source.as_str()[PREFIX.len()..]
    }

    /// The `v1,<base64>` signature of `body` under `secret` (a sender's side: tests and docs).
    pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        let key = decode_secret(secret)?;
        Some(format!("v1,{}", STANDARD.encode(mac(&key, id, &timestamp.to_string(), body))))
    }
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The three headers, checked for form.
struct Signed<'a> {
    id: &'a str,
    timestamp: &'a str,
    signatures: &'a str,
}

fn header<'a>(headers: &'a dyn Headers, name: &'static str) -> Result<&'a str, VerifyError> {
    headers.header(name).map(str::trim).ok_or(VerifyError::MissingHeader(name))
}

/// A message id: printable ASCII without spaces, at most [`MAX_ID_BYTES`].
fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

impl StdWebhooks {
    fn check_headers<'a>(&self, headers: &'a dyn Headers, now: Timestamp) -> Result<Signed<'a>, VerifyError> {
        if self.unusable_secret {
            return Err(VerifyError::InvalidSecret(SECRET_SETTING));
        }
        if self.keys.is_empty() {
            return Err(VerifyError::NotConfigured(SECRET_SETTING));
        }
        let id = header(headers, ID_HEADER)?;
        if !is_valid_id(id) {
            return Err(VerifyError::MalformedHeader(ID_HEADER));
        }
        let timestamp = header(headers, TIMESTAMP_HEADER)?;
        let signatures = header(headers, SIGNATURE_HEADER)?;
        // Seconds as plain digits (what the signature covers, byte for byte).
        let seconds = Some(timestamp)
            .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or(VerifyError::MalformedHeader(TIMESTAMP_HEADER))?;
        let now = now.unix_millis().div_euclid(1000);
        if now - seconds > self.tolerance_secs {
            return Err(VerifyError::TimestampTooOld);
        }
        if seconds - now > self.tolerance_secs {
            return Err(VerifyError::FutureTimestamp);
        }
        Ok(Signed { id, timestamp, signatures })
    }
}

impl Source for StdWebhooks {
    fn name(&self) -> SourceName {
        self.source.clone()
    }

    fn secret_setting(&self) -> String {
        secret_setting(self.sender())
    }

    fn verify_headers(&self, headers: &dyn Headers, now: Timestamp) -> Result<(), VerifyError> {
        self.check_headers(headers, now).map(|_| ())
    }

    fn verify(&self, headers: &dyn Headers, body: &[u8], now: Timestamp) -> Result<(), VerifyError> {
        let signed = self.check_headers(headers, now)?;
        let expected: Vec<[u8; 32]> = self.keys.iter().map(|key| mac(key, signed.id, signed.timestamp, body)).collect();
        let mut matched = subtle::Choice::from(0);
        for entry in signed.signatures.split(' ') {
            // `v1,<base64>`; entries of other versions (`v1a`, …) or without a comma are skipped.
            let Some(("v1", value)) = entry.split_once(',') else { continue };
            let Ok(sent) = STANDARD.decode(value) else { continue };
            // Every candidate is compared in full, whatever the earlier ones gave.
            for mac in &expected {
                matched |= mac.as_slice().ct_eq(&sent);
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(VerifyError::InvalidSignature)
        }
    }

    fn normalize(&self, body: &[u8], received_at: Timestamp) -> Result<Event, NormalizeError> {
        normalize(&self.source, None, body, received_at)
    }

    fn normalize_request(
        &self,
        headers: &dyn Headers,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<Event, NormalizeError> {
        let id = headers.header(ID_HEADER).map(str::trim).filter(|id| is_valid_id(id));
        normalize(&self.source, id, body, received_at)
    }

    fn sent_at(&self, body: &[u8]) -> Option<Timestamp> {
        let envelope = serde_json::from_slice::<Obj<Envelope>>(body).ok()?.0?;
        envelope.timestamp.0.or(envelope.data.get().and_then(|d| d.occurred_at.0))
    }

    fn redact(&self, body: &[u8]) -> Vec<u8> {
        // The body carries no credential by design; a secret pasted into one is cut out all
        // the same.
        self.scrubber.scrub(body)
    }
}

/// The body (docs/std-webhooks-senders.md): `type`, an optional `timestamp`, and `data`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Text,
    timestamp: Instant,
    data: Obj<Data>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Data {
    email: Text,
    name: Text,
    product: Text,
    grant: Text,
    charge: Text,
    occurred_at: Instant,
    paid_through: Instant,
    reason: Text,
    outcome: Text,
}

/// What a type states, before the fields are read.
enum Kind {
    /// A fact about one charge.
    Charge(Change),
    /// The subscription ends at `paid_through`.
    Ends,
    /// Anything else: recorded, no effect.
    Info,
}

fn kind(name: &str, data: &Data) -> Result<Kind, NormalizeError> {
    Ok(match name {
        "access.granted" => Kind::Charge(Change::Approve),
        "access.revoked" => {
            let reason = match required(data.reason.get(), "data.reason")? {
                "refunded" => RevokeReason::Refunded,
                "chargeback" => RevokeReason::Chargeback,
                _ => return Err(invalid("data.reason", "expected \"refunded\" or \"chargeback\"")),
            };
            Kind::Charge(Change::Revoke { reason })
        }
        "charge.failed" => Kind::Charge(Change::Fail),
        "subscription.ends" => Kind::Ends,
        "dispute.opened" => Kind::Charge(Change::Dispute),
        "dispute.closed" => match required(data.outcome.get(), "data.outcome")? {
            // Won: the charge stands again from the close time (settled).
            "won" => Kind::Charge(Change::Approve),
            "lost" => Kind::Charge(Change::Revoke { reason: RevokeReason::Chargeback }),
            _ => return Err(invalid("data.outcome", "expected \"won\" or \"lost\"")),
        },
        _ => Kind::Info,
    })
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, NormalizeError> {
    value.ok_or(NormalizeError::MissingField(field))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> NormalizeError {
    NormalizeError::InvalidField { field, reason: reason.into() }
}

/// At most `max` characters of `text`.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

fn student(data: &Data) -> Result<Student, NormalizeError> {
    let email =
        Email::parse(required(data.email.get(), "data.email")?).map_err(|e| invalid("data.email", e.to_string()))?;
    Ok(Student { name: data.name.get().map(|n| clip(n, MAX_NAME_CHARS)), ..Student::new(email) })
}

fn product(data: &Data) -> Result<Product, NormalizeError> {
    let id = ProductId::parse(required(data.product.get(), "data.product")?)
        .map_err(|e| invalid("data.product", e.to_string()))?;
    Ok(Product { id, name: None, offer: None, plan: None })
}

/// Normalizes a body of sender `source`; `webhook_id` is the request's, when known (without
/// it, as when a kept body is replayed, the id is the body's digest).
fn normalize(
    source: &SourceName,
    webhook_id: Option<&str>,
    body: &[u8],
    received_at: Timestamp,
) -> Result<Event, NormalizeError> {
    let Obj(envelope) =
        serde_json::from_slice::<Obj<Envelope>>(body).map_err(|e| NormalizeError::NotJson(e.to_string()))?;
    let envelope = envelope.ok_or_else(|| NormalizeError::NotJson("expected an object at the top level".into()))?;
    let id = match webhook_id {
        Some(id) => format!("{source}:{id}"),
        None => format!("{source}:body-{}", &hex::encode(Sha256::digest(body))[..32]),
    };
    let id = EventId::parse(id).map_err(|e| invalid("webhook-id", e.to_string()))?;
    let name = required(envelope.kind.get(), "type")?;
    let empty = Data::default();
    let data = envelope.data.get().unwrap_or(&empty);
    let kind = kind(name, data)?;

    // A platform clock ahead of ours must not push a fact into the future.
    let limit =
        Timestamp::from_unix_millis(received_at.unix_millis().saturating_add(CLOCK_SKEW_MILLIS)).unwrap_or(received_at);
    let business = data.occurred_at.0;
    let occurred_at = envelope.timestamp.0.or(business).unwrap_or(received_at);
    let mut event = Event {
        schema: Cow::Borrowed(SCHEMA),
        id,
        source: source.clone(),
        source_event: clip(name, MAX_TEXT_CHARS),
        change: Change::Info,
        occurred_at,
        received_at,
        effective_at: occurred_at.min(limit),
        clamped: occurred_at > limit,
        student: None,
        product: None,
        grant_id: None,
        charge: None,
        subscription: None,
        amount: None,
        raw: None,
        raw_truncated: false,
        raw_sha256: None,
        admin: None,
    };
    if let Kind::Info = kind {
        // Whatever identifies the student and product, never failing on it.
        event.student = student(data).ok();
        event.product = product(data).ok();
        return Ok(event);
    }
    // Ordering of access changes relies on the sender's business time: required for them.
    let business = required(business, "data.occurred_at")?;
    event.effective_at = business.min(limit);
    event.clamped = business > limit;
    event.student = Some(student(data)?);
    event.product = Some(product(data)?);
    let grant =
        GrantId::parse(required(data.grant.get(), "data.grant")?).map_err(|e| invalid("data.grant", e.to_string()))?;
    let paid_through = data.paid_through.0;
    match kind {
        Kind::Charge(change) => {
            let charge = ChargeId::parse(required(data.charge.get(), "data.charge")?)
                .map_err(|e| invalid("data.charge", e.to_string()))?;
            let approve = matches!(change, Change::Approve);
            event.charge = Some(Charge {
                id: charge,
                // An approval is stamped with its business time: a charge approved again
                // (a dispute won) at the close time is settled from then.
                approved_at: approve.then_some(event.effective_at),
                next_charge_at: paid_through.filter(|_| approve),
            });
            if approve {
                event.subscription =
                    paid_through.map(|at| Subscription { code: grant.clone(), status: None, next_charge_at: Some(at) });
            }
            event.change = change;
        }
        Kind::Ends => {
            event.change = Change::Cancel { period_end: paid_through };
            event.subscription = Some(Subscription { code: grant.clone(), status: None, next_charge_at: paid_through });
        }
        Kind::Info => unreachable!("handled above"),
    }
    event.grant_id = Some(grant);
    Ok(event)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The vector every Standard Webhooks reference library signs and verifies: from
    /// standard-webhooks/standard-webhooks `libraries/javascript/src/webhook.test.ts` ("sign
    /// function works"), also `libraries/python/tests/test_webhooks.py` (`test_sign_function`),
    /// `libraries/go/webhook_test.go`, `libraries/php/tests/WebhookTest.php`
    /// (`testSignFunctionWorks`). Note the space after the colon: the body is signed as sent.
    const TV1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const TV1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TV1_TIMESTAMP: i64 = 1_614_265_330;
    const TV1_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const TV1_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// The Rust reference library's own vector: standard-webhooks/standard-webhooks
    /// `libraries/rust/src/lib.rs`, `test_sign`.
    const TV2_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const TV2_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TV2_TIMESTAMP: i64 = 1_649_367_553;
    const TV2_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const TV2_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1000).unwrap()
    }

    fn sender(secrets: &[&str]) -> StdWebhooks {
        StdWebhooks::new("acme", secrets.iter().map(|s| (*s).to_owned())).unwrap()
    }

    fn headers(id: &str, timestamp: i64, signature: &str) -> Vec<(String, String)> {
        vec![
            (ID_HEADER.to_owned(), id.to_owned()),
            (TIMESTAMP_HEADER.to_owned(), timestamp.to_string()),
            (SIGNATURE_HEADER.to_owned(), signature.to_owned()),
        ]
    }

    #[test]
    fn the_reference_vectors_sign_and_verify() {
        assert_eq!(StdWebhooks::sign(TV1_SECRET, TV1_ID, TV1_TIMESTAMP, TV1_BODY).unwrap(), TV1_SIGNATURE);
        assert_eq!(StdWebhooks::sign(TV2_SECRET, TV2_ID, TV2_TIMESTAMP, TV2_BODY).unwrap(), TV2_SIGNATURE);
        let tv1 = headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE);
        assert_eq!(sender(&[TV1_SECRET]).verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP)), Ok(()));
        let tv2 = headers(TV2_ID, TV2_TIMESTAMP, TV2_SIGNATURE);
        assert_eq!(sender(&[TV2_SECRET]).verify(&tv2, TV2_BODY, at(TV2_TIMESTAMP + 300)), Ok(()));
        // Without the `whsec_` prefix the secret is the same key (the libraries' "with and
        // without signature prefix" tests).
        let bare = TV1_SECRET.strip_prefix("whsec_").unwrap();
        assert_eq!(sender(&[bare]).verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP)), Ok(()));
    }

    #[test]
    fn the_reference_negative_cases_are_refused() {
        // From the same libraries' tests: wrong signatures (Rust; Python, last character
        // changed; JavaScript; C#/Ruby), another version (Java), truncations (Rust, JavaScript).
        let refused = [
            "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            "v1,dawfeoifkpqwoekfpqoekf",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLawdd",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "invalid_signature",
            "v1,invalid_signature",
            "v1,",
            "v1,g0hM9S",
            "",
        ];
        let source = sender(&[TV1_SECRET]);
        for signature in refused {
            assert_eq!(
                source.verify(&headers(TV1_ID, TV1_TIMESTAMP, signature), TV1_BODY, at(TV1_TIMESTAMP)),
                Err(VerifyError::InvalidSignature),
                "{signature:?}"
            );
        }
    }

    #[test]
    fn one_valid_signature_among_several_is_enough() {
        // The multi-signature case of the JavaScript, Java and Python tests: decoys, then the
        // valid one, then a decoy again. Without the valid one, refused.
        let decoys = [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
        ];
        let source = sender(&[TV1_SECRET]);
        let with = format!("{} {} {TV1_SIGNATURE} {}", decoys[0], decoys[1], decoys[2]);
        assert_eq!(source.verify(&headers(TV1_ID, TV1_TIMESTAMP, &with), TV1_BODY, at(TV1_TIMESTAMP)), Ok(()));
        let without = decoys.join(" ");
        assert_eq!(
            source.verify(&headers(TV1_ID, TV1_TIMESTAMP, &without), TV1_BODY, at(TV1_TIMESTAMP)),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn two_secrets_during_a_rotation() {
        let source = sender(&[TV1_SECRET, TV2_SECRET]);
        for secret in [TV1_SECRET, TV2_SECRET] {
            let signature = StdWebhooks::sign(secret, "msg_1", TV1_TIMESTAMP, TV1_BODY).unwrap();
            let request = headers("msg_1", TV1_TIMESTAMP, &signature);
            assert_eq!(source.verify(&request, TV1_BODY, at(TV1_TIMESTAMP)), Ok(()), "{secret}");
        }
        // A sender signing with both keys at once is accepted by either side of the rotation.
        let both = format!(
            "{} {}",
            StdWebhooks::sign(TV1_SECRET, "msg_1", TV1_TIMESTAMP, TV1_BODY).unwrap(),
            StdWebhooks::sign(TV2_SECRET, "msg_1", TV1_TIMESTAMP, TV1_BODY).unwrap()
        );
        let request = headers("msg_1", TV1_TIMESTAMP, &both);
        assert_eq!(sender(&[TV2_SECRET]).verify(&request, TV1_BODY, at(TV1_TIMESTAMP)), Ok(()));
    }

    #[test]
    fn replayed_and_future_dated_requests_are_refused() {
        let source = sender(&[TV1_SECRET]);
        let tv1 = headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE);
        // ±300 s inclusive passes; 301 s either way fails, before the body is looked at.
        assert_eq!(source.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP + 300)), Ok(()));
        assert_eq!(source.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP - 300)), Ok(()));
        assert_eq!(source.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP + 301)), Err(VerifyError::TimestampTooOld));
        assert_eq!(source.verify_headers(&tv1, at(TV1_TIMESTAMP + 301)), Err(VerifyError::TimestampTooOld));
        assert_eq!(source.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP - 301)), Err(VerifyError::FutureTimestamp));
        assert_eq!(source.verify_headers(&tv1, at(TV1_TIMESTAMP - 301)), Err(VerifyError::FutureTimestamp));
        // A replay a day later, and a tolerance set by hand.
        assert_eq!(source.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP + 86_400)), Err(VerifyError::TimestampTooOld));
        let strict = sender(&[TV1_SECRET]).with_tolerance(10);
        assert_eq!(strict.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP + 11)), Err(VerifyError::TimestampTooOld));
        // The timestamp is signed: moving it forward to get past the check breaks the signature.
        let moved = headers(TV1_ID, TV1_TIMESTAMP + 1000, TV1_SIGNATURE);
        assert_eq!(source.verify(&moved, TV1_BODY, at(TV1_TIMESTAMP + 1000)), Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn a_re_serialized_body_is_refused() {
        let source = sender(&[TV1_SECRET]);
        let tv1 = headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE);
        // The same JSON value, serialized again (no space after the colon).
        let value: serde_json::Value = serde_json::from_slice(TV1_BODY).unwrap();
        let reserialized = serde_json::to_vec(&value).unwrap();
        assert_ne!(reserialized, TV1_BODY);
        assert_eq!(source.verify(&tv1, &reserialized, at(TV1_TIMESTAMP)), Err(VerifyError::InvalidSignature));
        // Another id for the same body: also refused (the id is signed).
        let other_id = headers("msg_other", TV1_TIMESTAMP, TV1_SIGNATURE);
        assert_eq!(source.verify(&other_id, TV1_BODY, at(TV1_TIMESTAMP)), Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let tv1 = headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE);
        assert_eq!(sender(&[TV2_SECRET]).verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP)), Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn missing_and_malformed_headers_are_refused_before_the_body() {
        let source = sender(&[TV1_SECRET]);
        for missing in [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER] {
            let request: Vec<_> =
                headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE).into_iter().filter(|(k, _)| k != missing).collect();
            assert_eq!(source.verify_headers(&request, at(TV1_TIMESTAMP)), Err(VerifyError::MissingHeader(missing)));
            assert_eq!(source.verify(&request, TV1_BODY, at(TV1_TIMESTAMP)), Err(VerifyError::MissingHeader(missing)));
        }
        let mut hello = headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE);
        hello[1].1 = "hello".to_owned();
        assert_eq!(
            source.verify_headers(&hello, at(TV1_TIMESTAMP)),
            Err(VerifyError::MalformedHeader(TIMESTAMP_HEADER))
        );
        let spaced = headers("msg 1", TV1_TIMESTAMP, TV1_SIGNATURE);
        assert_eq!(source.verify_headers(&spaced, at(TV1_TIMESTAMP)), Err(VerifyError::MalformedHeader(ID_HEADER)));
        // Header names in any case.
        let shouting: Vec<_> =
            headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE).into_iter().map(|(k, v)| (k.to_uppercase(), v)).collect();
        assert_eq!(source.verify(&shouting, TV1_BODY, at(TV1_TIMESTAMP)), Ok(()));
    }

    #[test]
    fn no_or_unusable_secret_refuses_everything_and_errors_quote_nothing() {
        let tv1 = headers(TV1_ID, TV1_TIMESTAMP, TV1_SIGNATURE);
        let none = sender(&[]);
        assert_eq!(none.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP)), Err(VerifyError::NotConfigured(SECRET_SETTING)));
        let blank = sender(&["  "]);
        assert_eq!(blank.verify_headers(&tv1, at(TV1_TIMESTAMP)), Err(VerifyError::NotConfigured(SECRET_SETTING)));
        // One good secret and one that is not base64: refused, not run on the good one alone.
        let bad = sender(&[TV1_SECRET, "whsec_not base64!"]);
        let error = bad.verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP)).unwrap_err();
        assert_eq!(error, VerifyError::InvalidSecret(SECRET_SETTING));
        assert_eq!(
            sender(&["whsec_"]).verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP)),
            Err(VerifyError::InvalidSecret(SECRET_SETTING))
        );
        // No error text carries a secret or a signature.
        let errors = [
            error,
            sender(&[TV2_SECRET]).verify(&tv1, TV1_BODY, at(TV1_TIMESTAMP)).unwrap_err(),
            sender(&[TV1_SECRET]).verify(&tv1, TV1_BODY, at(0)).unwrap_err(),
        ];
        for error in errors {
            let text = format!("{error} {error:?}");
            for secret in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "C2FVsBQIhrscChlQIMV", "g0hM9SsE", "not base64"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        assert!(!format!("{:?}", sender(&[TV1_SECRET])).contains("MfKQ9r8"));
    }

    #[test]
    fn sender_names_and_settings() {
        assert_eq!(sender(&[]).name().as_str(), "std-acme");
        assert_eq!(sender(&[]).secret_setting(), "STD_WEBHOOK_SECRET_ACME");
        assert_eq!(secret_setting("my-shop2"), "STD_WEBHOOK_SECRET_MY_SHOP2");
        for bad in ["", "Acme", "a_b", "a.b", "a/b", &"x".repeat(33)] {
            assert!(StdWebhooks::new(bad, Vec::new()).is_none(), "{bad:?}");
        }
        assert!(StdWebhooks::for_source("acme", &[]).is_none());
        assert_eq!(StdWebhooks::for_source("std-acme", &[]).unwrap().sender(), "acme");
        // The registry knows every valid sender, and nothing else under the prefix.
        assert!(crate::source::is_known("std-acme"));
        assert!(!crate::source::is_known("std-"));
        assert!(!crate::source::is_known("std-ACME"));
        assert!(!crate::source::is_known("stripes"));
        assert_eq!(crate::source::secret_setting("std-acme").as_deref(), Some("STD_WEBHOOK_SECRET_ACME"));
        assert_eq!(crate::source::secret_setting("hotmart").as_deref(), Some("HOTMART_HOTTOK"));
    }

    // ---- normalization ----

    const RECEIVED: i64 = 1_740_830_400; // 2025-03-01T12:00:00Z

    fn body(kind: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"type":"{kind}","timestamp":"2025-03-01T11:59:59Z","data":{{"email":" Ana@Example.com ","name":"Ana Souza","product":"course-101","grant":"sub_42","charge":"ch_7","occurred_at":"2025-03-01T11:59:00Z"{extra}}}}}"#
        )
        .into_bytes()
    }

    fn normalized(kind: &str, extra: &str) -> Result<Event, NormalizeError> {
        let request = headers("msg_abc", RECEIVED, "v1,unused");
        sender(&[]).normalize_request(&request, &body(kind, extra), at(RECEIVED))
    }

    fn rfc(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn access_granted_approves_the_charge_through_its_paid_period() {
        let event = normalized("access.granted", r#","paid_through":"2025-04-01T11:59:00Z""#).unwrap();
        assert_eq!(event.id.as_str(), "std-acme:msg_abc");
        assert_eq!(event.source.as_str(), "std-acme");
        assert_eq!(event.source_event, "access.granted");
        assert_eq!(event.change, Change::Approve);
        assert_eq!(event.occurred_at, rfc("2025-03-01T11:59:59Z"));
        assert_eq!(event.effective_at, rfc("2025-03-01T11:59:00Z"));
        assert_eq!(event.received_at, at(RECEIVED));
        let student = event.student.as_ref().unwrap();
        assert_eq!(student.email.as_str(), "ana@example.com");
        assert_eq!(student.name.as_deref(), Some("Ana Souza"));
        assert_eq!(event.product.as_ref().unwrap().id.as_str(), "course-101");
        assert_eq!(event.grant_id.as_ref().unwrap().as_str(), "sub_42");
        let charge = event.charge.as_ref().unwrap();
        assert_eq!(charge.id.as_str(), "ch_7");
        assert_eq!(charge.approved_at, Some(rfc("2025-03-01T11:59:00Z")));
        assert_eq!(charge.next_charge_at, Some(rfc("2025-04-01T11:59:00Z")));
        assert_eq!(event.subscription.as_ref().unwrap().next_charge_at, Some(rfc("2025-04-01T11:59:00Z")));
        // The event is a valid schema event.
        assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
        // A one-off: no paid period.
        let once = normalized("access.granted", "").unwrap();
        assert_eq!(once.charge.unwrap().next_charge_at, None);
        assert_eq!(once.subscription, None);
    }

    #[test]
    fn access_revoked_revokes_the_charge_for_its_reason() {
        for (reason, expected) in [("refunded", RevokeReason::Refunded), ("chargeback", RevokeReason::Chargeback)] {
            let event = normalized("access.revoked", &format!(r#","reason":"{reason}""#)).unwrap();
            assert_eq!(event.change, Change::Revoke { reason: expected });
            let charge = event.charge.unwrap();
            assert_eq!((charge.id.as_str(), charge.approved_at), ("ch_7", None));
            assert_eq!(event.effective_at, rfc("2025-03-01T11:59:00Z"));
        }
        assert_eq!(normalized("access.revoked", "").unwrap_err(), NormalizeError::MissingField("data.reason"));
        assert!(matches!(
            normalized("access.revoked", r#","reason":"bored""#),
            Err(NormalizeError::InvalidField { field: "data.reason", .. })
        ));
    }

    #[test]
    fn charge_failed_dispute_opened_and_subscription_ends() {
        let failed = normalized("charge.failed", "").unwrap();
        assert_eq!(failed.change, Change::Fail);
        assert_eq!(failed.charge.unwrap().id.as_str(), "ch_7");
        let opened = normalized("dispute.opened", "").unwrap();
        assert_eq!(opened.change, Change::Dispute);
        assert_eq!(opened.charge.unwrap().approved_at, None);
        let ends = normalized("subscription.ends", r#","paid_through":"2025-03-31T00:00:00Z""#).unwrap();
        assert_eq!(ends.change, Change::Cancel { period_end: Some(rfc("2025-03-31T00:00:00Z")) });
        assert_eq!(ends.effective_at, rfc("2025-03-01T11:59:00Z"));
        assert_eq!(ends.charge, None);
        assert_eq!(ends.subscription.unwrap().code.as_str(), "sub_42");
        let now = normalized("subscription.ends", "").unwrap();
        assert_eq!(now.change, Change::Cancel { period_end: None });
    }

    #[test]
    fn dispute_closed_won_settles_the_charge_and_lost_revokes_it() {
        let won = normalized("dispute.closed", r#","outcome":"won""#).unwrap();
        assert_eq!(won.change, Change::Approve);
        let charge = won.charge.unwrap();
        // Approved again, at the close time: later than the original approval, so settled.
        assert_eq!((charge.id.as_str(), charge.approved_at), ("ch_7", Some(rfc("2025-03-01T11:59:00Z"))));
        let lost = normalized("dispute.closed", r#","outcome":"lost""#).unwrap();
        assert_eq!(lost.change, Change::Revoke { reason: RevokeReason::Chargeback });
        assert_eq!(normalized("dispute.closed", "").unwrap_err(), NormalizeError::MissingField("data.outcome"));
        assert!(matches!(
            normalized("dispute.closed", r#","outcome":"draw""#),
            Err(NormalizeError::InvalidField { field: "data.outcome", .. })
        ));
    }

    #[test]
    fn unknown_types_are_info_and_never_fail_on_fields() {
        let event = normalized("invoice.created", "").unwrap();
        assert_eq!(event.change, Change::Info);
        assert_eq!(event.source_event, "invoice.created");
        assert!(event.student.is_some() && event.product.is_some());
        let bare = sender(&[]).normalize(br#"{"type":"ping"}"#, at(RECEIVED)).unwrap();
        assert_eq!(bare.change, Change::Info);
        assert_eq!(bare.occurred_at, at(RECEIVED));
        assert!(bare.student.is_none());
    }

    #[test]
    fn what_an_access_change_needs_is_required() {
        let request = headers("msg_abc", RECEIVED, "v1,unused");
        let source = sender(&[]);
        let cases: [(&[u8], NormalizeError); 6] = [
            (br#"{"data":{}}"#, NormalizeError::MissingField("type")),
            (
                br#"{"type":"charge.failed","data":{"email":"a@b.c","product":"p","grant":"g","charge":"c"}}"#,
                NormalizeError::MissingField("data.occurred_at"),
            ),
            (
                br#"{"type":"charge.failed","data":{"product":"p","grant":"g","charge":"c","occurred_at":1}}"#,
                NormalizeError::MissingField("data.email"),
            ),
            (
                br#"{"type":"charge.failed","data":{"email":"a@b.c","grant":"g","charge":"c","occurred_at":1}}"#,
                NormalizeError::MissingField("data.product"),
            ),
            (
                br#"{"type":"charge.failed","data":{"email":"a@b.c","product":"p","charge":"c","occurred_at":1}}"#,
                NormalizeError::MissingField("data.grant"),
            ),
            (
                br#"{"type":"charge.failed","data":{"email":"a@b.c","product":"p","grant":"g","occurred_at":1}}"#,
                NormalizeError::MissingField("data.charge"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(source.normalize_request(&request, body, at(RECEIVED)).unwrap_err(), expected);
        }
        assert!(matches!(source.normalize(b"[1]", at(RECEIVED)), Err(NormalizeError::NotJson(_))));
        assert!(matches!(source.normalize(b"not json", at(RECEIVED)), Err(NormalizeError::NotJson(_))));
    }

    #[test]
    fn ids_times_and_the_clock() {
        // Without the request (a kept body replayed), the id is the body's digest: stable.
        let source = sender(&[]);
        let a = source.normalize(&body("charge.failed", ""), at(RECEIVED)).unwrap();
        let b = source.normalize(&body("charge.failed", ""), at(RECEIVED + 60)).unwrap();
        assert_eq!(a.id, b.id);
        assert!(a.id.as_str().starts_with("std-acme:body-"), "{}", a.id);
        // A business time ahead of the clock by more than 5 minutes is clamped.
        let future = br#"{"type":"charge.failed","data":{"email":"a@b.c","product":"p","grant":"g","charge":"c","occurred_at":"2030-01-01T00:00:00Z"}}"#;
        let event = source.normalize(future, at(RECEIVED)).unwrap();
        assert!(event.clamped);
        assert_eq!(event.effective_at, at(RECEIVED + 300));
        // Epoch milliseconds are read too; the envelope time for `simulate`.
        assert_eq!(source.sent_at(&body("charge.failed", "")), Some(rfc("2025-03-01T11:59:59Z")));
        assert_eq!(
            source.sent_at(br#"{"type":"x","data":{"occurred_at":1000}}"#),
            Some(Timestamp::from_unix_millis(1000).unwrap())
        );
        // Secrets are cut out of a kept body.
        let leaky = sender(&[TV1_SECRET]).redact(format!(r#"{{"note":"{TV1_SECRET}"}}"#).as_bytes());
        assert!(!String::from_utf8_lossy(&leaky).contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    }
}
