//! `lms-bridge pubsub setup`: the topic, the dead-letter topic, the push subscription and the
//! dead letters' pull subscription, with the official `google-cloud-pubsub` crate, against the
//! emulator (`PUBSUB_EMULATOR_HOST`) or real GCP (application default credentials).
//!
//! The names and settings are the plan of `deploy/pubsub.env`, the file `deploy/gcp.sh` sources
//! too: compiled in here ([`PLAN`]), so the two cannot drift apart.
//!
//! Idempotent and reconciling: what is missing is created, and every setting of what exists is
//! brought back to the plan (push endpoint and OIDC token, ack deadline, retention, retry
//! policy, dead-letter policy, expiration policy; the events topic's retention). Settings
//! Pub/Sub cannot change in place (a subscription's topic, message ordering, filter) stop the
//! command with an error naming them, never silently kept.

use crate::cli::PubsubSetupArgs;
use anyhow::{bail, Context};
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::push_config::OidcToken;
use google_cloud_pubsub::model::{DeadLetterPolicy, ExpirationPolicy, PushConfig, RetryPolicy, Subscription, Topic};
use google_cloud_wkt::{Duration, FieldMask};

/// What Pub/Sub assumes when a retry policy it returns leaves a bound out: the API's rule for
/// reading a subscription, not a setting of ours (those are in [`PLAN`]).
const DEFAULT_MIN_BACKOFF: i64 = 10;
const DEFAULT_MAX_BACKOFF: i64 = 600;

/// `deploy/pubsub.env`, as it was when the backend was built.
pub const PLAN_FILE: &str = include_str!("../../deploy/pubsub.env");

/// The plan of `deploy/pubsub.env`, read while the backend compiles: a line it cannot read is a
/// build error naming the line, never a failure of a deployed binary.
pub const PLAN: Plan = match Plan::parse(PLAN_FILE) {
    Ok(plan) => plan,
    Err(error) => error.stop_the_build(),
};

/// When Pub/Sub deletes an idle subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// Never.
    Never,
    /// After this many seconds without activity.
    IdleSeconds(i64),
}

impl Expiration {
    /// `never`, or seconds (at least a day, Pub/Sub's minimum).
    pub const fn parse(value: &str) -> Result<Self, &'static str> {
        if eq(value.as_bytes(), b"never") {
            return Ok(Self::Never);
        }
        match number(value.as_bytes(), 86_400, i64::MAX) {
            Ok(seconds) => Ok(Self::IdleSeconds(seconds)),
            Err(()) => Err("the expiration is `never`, or at least 86400 seconds (a day) idle"),
        }
    }

    /// As the API takes it: a policy without a ttl never expires.
    pub fn policy(self) -> ExpirationPolicy {
        match self {
            Self::Never => ExpirationPolicy::new(),
            Self::IdleSeconds(ttl) => ExpirationPolicy::new().set_ttl(seconds(ttl)),
        }
    }
}

impl std::fmt::Display for Expiration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Never => f.write_str("never"),
            Self::IdleSeconds(ttl) => write!(f, "{ttl}"),
        }
    }
}

impl std::str::FromStr for Expiration {
    type Err = &'static str;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

/// The Pub/Sub plan; `deploy/pubsub.env` says why each value is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `PUBSUB_TOPIC`: where the edge publishes normalized events.
    pub topic: &'static str,
    /// `PUBSUB_SUBSCRIPTION`: the push subscription.
    pub subscription: &'static str,
    /// `PUBSUB_DEAD_LETTER_TOPIC`.
    pub dead_letter_topic: &'static str,
    /// `PUBSUB_DEAD_LETTER_SUBSCRIPTION`: the pull subscription that keeps dead letters.
    pub dead_letter_subscription: &'static str,
    /// `PUBSUB_ACK_DEADLINE_SECONDS`, both subscriptions.
    pub ack_deadline_seconds: i32,
    /// `PUBSUB_MIN_RETRY_DELAY_SECONDS`.
    pub min_retry_delay_seconds: i64,
    /// `PUBSUB_MAX_RETRY_DELAY_SECONDS`.
    pub max_retry_delay_seconds: i64,
    /// `PUBSUB_MAX_DELIVERY_ATTEMPTS`.
    pub max_delivery_attempts: i32,
    /// `PUBSUB_MESSAGE_RETENTION_SECONDS`, both subscriptions.
    pub message_retention_seconds: i64,
    /// `PUBSUB_TOPIC_RETENTION_SECONDS`, the events topic.
    pub topic_retention_seconds: i64,
    /// `PUBSUB_SUBSCRIPTION_EXPIRATION`, both subscriptions.
    pub expiration: Expiration,
}

/// Why a plan cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanError {
    /// The line, from 1; 0 when a key is missing.
    pub line: usize,
    /// That line, or the missing key.
    pub text: &'static str,
    /// What is wrong.
    pub why: &'static str,
}

/// Every key of the plan.
const KEYS: [&str; 11] = [
    "PUBSUB_TOPIC",
    "PUBSUB_SUBSCRIPTION",
    "PUBSUB_DEAD_LETTER_TOPIC",
    "PUBSUB_DEAD_LETTER_SUBSCRIPTION",
    "PUBSUB_ACK_DEADLINE_SECONDS",
    "PUBSUB_MIN_RETRY_DELAY_SECONDS",
    "PUBSUB_MAX_RETRY_DELAY_SECONDS",
    "PUBSUB_MAX_DELIVERY_ATTEMPTS",
    "PUBSUB_MESSAGE_RETENTION_SECONDS",
    "PUBSUB_TOPIC_RETENTION_SECONDS",
    "PUBSUB_SUBSCRIPTION_EXPIRATION",
];

/// One `KEY=value` line; line 0: not in the file.
#[derive(Clone, Copy)]
struct Entry {
    line: usize,
    text: &'static str,
    value: &'static str,
}

const ABSENT: Entry = Entry { line: 0, text: "", value: "" };

// The parser is `const` so that the compiler reads `PLAN`: no `?`, closures, iterators or `==`
// on strings there, hence the loops below.

/// `Ok` or return the error (`?` is not available in `const fn`).
macro_rules! tri {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(error) => return Err(error),
        }
    };
}

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The text of bytes cut from a `&'static str` at ASCII characters (always UTF-8).
const fn text(bytes: &'static [u8]) -> &'static str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => "(not UTF-8)",
    }
}

/// Plain decimal digits within `min..=max`: no sign, no spaces, no unit.
const fn number(digits: &[u8], min: i64, max: i64) -> Result<i64, ()> {
    if digits.is_empty() {
        return Err(());
    }
    let mut value: i64 = 0;
    let mut i = 0;
    while i < digits.len() {
        let digit = digits[i];
        if !digit.is_ascii_digit() {
            return Err(());
        }
        value = match value.checked_mul(10) {
            Some(tens) => match tens.checked_add((digit - b'0') as i64) {
                Some(value) => value,
                None => return Err(()),
            },
            None => return Err(()),
        };
        i += 1;
    }
    if value < min || value > max {
        return Err(());
    }
    Ok(value)
}

const fn position(bytes: &[u8], byte: u8) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == byte {
            return Some(i);
        }
        i += 1;
    }
    None
}

const fn key_index(key: &[u8]) -> Option<usize> {
    let mut k = 0;
    while k < KEYS.len() {
        if eq(KEYS[k].as_bytes(), key) {
            return Some(k);
        }
        k += 1;
    }
    None
}

const fn entry(entries: &[Entry; KEYS.len()], key: &'static str) -> Result<Entry, PlanError> {
    match key_index(key.as_bytes()) {
        Some(k) if entries[k].line > 0 => Ok(entries[k]),
        _ => Err(PlanError { line: 0, text: key, why: "key missing" }),
    }
}

/// A Pub/Sub resource id: a letter first, 3 to 255 characters, not `goog…`.
const fn name(entries: &[Entry; KEYS.len()], key: &'static str) -> Result<&'static str, PlanError> {
    let entry = tri!(entry(entries, key));
    let bytes = entry.value.as_bytes();
    let goog = bytes.len() >= 4 && eq(bytes.split_at(4).0, b"goog");
    if bytes.len() < 3 || bytes.len() > 255 || !bytes[0].is_ascii_alphabetic() || goog {
        let why = "a Pub/Sub name has a letter first, 3 to 255 characters, and does not start with `goog`";
        return Err(PlanError { line: entry.line, text: entry.text, why });
    }
    Ok(entry.value)
}

/// A count (of seconds or attempts) within `min..=max`, Pub/Sub's bounds, said in `why`.
const fn count(
    entries: &[Entry; KEYS.len()],
    key: &'static str,
    min: i64,
    max: i64,
    why: &'static str,
) -> Result<i64, PlanError> {
    let entry = tri!(entry(entries, key));
    match number(entry.value.as_bytes(), min, max) {
        Ok(value) => Ok(value),
        Err(()) => Err(PlanError { line: entry.line, text: entry.text, why }),
    }
}

impl Plan {
    /// Reads a plan (the grammar is in `deploy/pubsub.env`'s header).
    pub const fn parse(file: &'static str) -> Result<Self, PlanError> {
        let mut entries = [ABSENT; KEYS.len()];
        let mut rest = file.as_bytes();
        let mut line = 0;
        while !rest.is_empty() {
            line += 1;
            let (bytes, after) = match position(rest, b'\n') {
                Some(end) => {
                    let (bytes, after) = rest.split_at(end);
                    (bytes, after.split_at(1).1)
                }
                None => (rest, rest.split_at(rest.len()).1),
            };
            rest = after;
            if bytes.is_empty() || bytes[0] == b'#' {
                continue;
            }
            let problem = match position(bytes, b'=') {
                None => Some("not KEY=value"),
                Some(equals) => {
                    let (key, value) = bytes.split_at(equals);
                    let value = value.split_at(1).1;
                    match key_index(key) {
                        None => Some("unknown key (or spaces, quotes, `export`)"),
                        Some(k) if entries[k].line > 0 => Some("key given twice"),
                        Some(_) if value.is_empty() => Some("empty value"),
                        Some(k) => {
                            let mut i = 0;
                            while i < value.len() {
                                let c = value[i];
                                if !(c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-') {
                                    break;
                                }
                                i += 1;
                            }
                            if i < value.len() {
                                Some("a value has letters, digits, '.', '_' and '-' only (bash could read others otherwise)")
                            } else {
                                entries[k] = Entry { line, text: text(bytes), value: text(value) };
                                None
                            }
                        }
                    }
                }
            };
            if let Some(why) = problem {
                return Err(PlanError { line, text: text(bytes), why });
            }
        }
        let mut k = 0;
        while k < KEYS.len() {
            tri!(entry(&entries, KEYS[k]));
            k += 1;
        }
        let plan = Self {
            topic: tri!(name(&entries, "PUBSUB_TOPIC")),
            subscription: tri!(name(&entries, "PUBSUB_SUBSCRIPTION")),
            dead_letter_topic: tri!(name(&entries, "PUBSUB_DEAD_LETTER_TOPIC")),
            dead_letter_subscription: tri!(name(&entries, "PUBSUB_DEAD_LETTER_SUBSCRIPTION")),
            ack_deadline_seconds: tri!(count(
                &entries,
                "PUBSUB_ACK_DEADLINE_SECONDS",
                10,
                600,
                "the ack deadline is whole seconds, 10 to 600"
            )) as i32,
            min_retry_delay_seconds: tri!(count(
                &entries,
                "PUBSUB_MIN_RETRY_DELAY_SECONDS",
                0,
                600,
                "a retry delay is whole seconds, 0 to 600"
            )),
            max_retry_delay_seconds: tri!(count(
                &entries,
                "PUBSUB_MAX_RETRY_DELAY_SECONDS",
                0,
                600,
                "a retry delay is whole seconds, 0 to 600"
            )),
            max_delivery_attempts: tri!(count(
                &entries,
                "PUBSUB_MAX_DELIVERY_ATTEMPTS",
                5,
                100,
                "delivery attempts are 5 to 100"
            )) as i32,
            message_retention_seconds: tri!(count(
                &entries,
                "PUBSUB_MESSAGE_RETENTION_SECONDS",
                600,
                7 * 86_400,
                "a subscription keeps messages 600 to 604800 seconds (7 days)"
            )),
            topic_retention_seconds: tri!(count(
                &entries,
                "PUBSUB_TOPIC_RETENTION_SECONDS",
                600,
                31 * 86_400,
                "a topic keeps messages 600 to 2678400 seconds (31 days)"
            )),
            expiration: {
                let entry = tri!(entry(&entries, "PUBSUB_SUBSCRIPTION_EXPIRATION"));
                match Expiration::parse(entry.value) {
                    Ok(expiration) => expiration,
                    Err(why) => return Err(PlanError { line: entry.line, text: entry.text, why }),
                }
            },
        };
        if plan.min_retry_delay_seconds > plan.max_retry_delay_seconds {
            let max = tri!(entry(&entries, "PUBSUB_MAX_RETRY_DELAY_SECONDS"));
            return Err(PlanError {
                line: max.line,
                text: max.text,
                why: "the maximum retry delay is under the minimum",
            });
        }
        Ok(plan)
    }
}

impl PlanError {
    /// Fails the constant evaluation with `deploy/pubsub.env:LINE: WHY: TEXT` (no formatting
    /// machinery in `const fn`: the message is assembled by hand).
    const fn stop_the_build(self) -> ! {
        let mut message = [0u8; 512];
        let mut n = append(&mut message, 0, b"deploy/pubsub.env:");
        if self.line > 0 {
            let mut digits = [0u8; 20];
            let mut d = digits.len();
            let mut line = self.line;
            while line > 0 {
                d -= 1;
                digits[d] = b'0' + (line % 10) as u8;
                line /= 10;
            }
            n = append(&mut message, n, digits.split_at(d).1);
        }
        n = append(&mut message, n, b": ");
        n = append(&mut message, n, self.why.as_bytes());
        n = append(&mut message, n, b": ");
        n = append(&mut message, n, self.text.as_bytes());
        match std::str::from_utf8(message.split_at(n).0) {
            Ok(message) => panic!("{}", message),
            Err(_) => panic!("deploy/pubsub.env cannot be read"),
        }
    }
}

/// Copies `bytes` after `n` bytes of `buffer` (cut at its end); the new length.
const fn append(buffer: &mut [u8; 512], mut n: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() && n < buffer.len() {
        buffer[n] = bytes[i];
        n += 1;
        i += 1;
    }
    n
}

fn exists(error: &google_cloud_pubsub::Error) -> bool {
    error.status().is_some_and(|s| s.code == Code::AlreadyExists)
}

async fn clients(args: &PubsubSetupArgs) -> anyhow::Result<(TopicAdmin, SubscriptionAdmin)> {
    match args.pubsub_emulator_host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => {
            let endpoint = format!("http://{host}");
            let anonymous = || google_cloud_auth::credentials::anonymous::Builder::new().build();
            let topics = TopicAdmin::builder().with_endpoint(&endpoint).with_credentials(anonymous()).build().await?;
            let subscriptions =
                SubscriptionAdmin::builder().with_endpoint(&endpoint).with_credentials(anonymous()).build().await?;
            Ok((topics, subscriptions))
        }
        None => Ok((TopicAdmin::builder().build().await?, SubscriptionAdmin::builder().build().await?)),
    }
}

fn seconds(value: i64) -> Duration {
    Duration::clamp(value, 0)
}

/// The push subscription as it must be.
pub fn push_subscription(args: &PubsubSetupArgs) -> Subscription {
    let project = &args.gcp_project;
    let mut push = PushConfig::new().set_push_endpoint(args.push_endpoint.clone());
    if let Some(account) = args.push_service_account.as_deref().filter(|a| !a.is_empty()) {
        // The default audience is the endpoint without its query: a `?token=` must not end up
        // in the token's `aud`.
        let audience = args.push_audience.clone().unwrap_or_else(|| {
            args.push_endpoint.split_once('?').map_or(args.push_endpoint.as_str(), |(base, _)| base).to_owned()
        });
        push = push.set_oidc_token(OidcToken::new().set_service_account_email(account).set_audience(audience));
    }
    Subscription::new()
        .set_name(format!("projects/{project}/subscriptions/{}", args.subscription))
        .set_topic(format!("projects/{project}/topics/{}", args.topic))
        .set_push_config(push)
        .set_ack_deadline_seconds(args.ack_deadline_seconds)
        .set_message_retention_duration(seconds(args.message_retention_seconds))
        .set_enable_message_ordering(true)
        .set_retry_policy(
            RetryPolicy::new()
                .set_minimum_backoff(seconds(args.min_backoff_seconds))
                .set_maximum_backoff(seconds(args.max_backoff_seconds)),
        )
        .set_dead_letter_policy(
            DeadLetterPolicy::new()
                .set_dead_letter_topic(format!("projects/{project}/topics/{}", args.dead_letter_topic))
                .set_max_delivery_attempts(args.max_delivery_attempts),
        )
        .set_expiration_policy(args.expiration.policy())
}

/// The pull subscription that keeps dead letters: without one Pub/Sub drops them.
pub fn dead_letter_subscription(args: &PubsubSetupArgs) -> Subscription {
    let project = &args.gcp_project;
    Subscription::new()
        .set_name(format!("projects/{project}/subscriptions/{}", args.dead_letter_subscription))
        .set_topic(format!("projects/{project}/topics/{}", args.dead_letter_topic))
        .set_ack_deadline_seconds(args.ack_deadline_seconds)
        .set_message_retention_duration(seconds(args.message_retention_seconds))
        .set_expiration_policy(args.expiration.policy())
}

/// The settings `setup` owns, in a comparable and printable form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    push_endpoint: String,
    /// (service account, audience)
    oidc: Option<(String, String)>,
    unwrapped: bool,
    ack_deadline_seconds: i32,
    message_retention_seconds: Option<i64>,
    retain_acked_messages: bool,
    /// (minimum, maximum) backoff seconds
    retry: Option<(i64, i64)>,
    /// (topic, maximum delivery attempts)
    dead_letter: Option<(String, i32)>,
    /// None: no policy (Pub/Sub's default, 31 days); Some(None): never expires.
    expiration_ttl_seconds: Option<Option<i64>>,
}

impl Settings {
    fn of(s: &Subscription) -> Self {
        let push = s.push_config.clone().unwrap_or_default();
        Self {
            push_endpoint: push.push_endpoint.clone(),
            oidc: push.oidc_token().map(|t| (t.service_account_email.clone(), t.audience.clone())),
            unwrapped: push.no_wrapper().is_some(),
            // 0 means 10 (the API's minimum).
            ack_deadline_seconds: if s.ack_deadline_seconds == 0 { 10 } else { s.ack_deadline_seconds },
            message_retention_seconds: s.message_retention_duration.as_ref().map(Duration::seconds),
            retain_acked_messages: s.retain_acked_messages,
            retry: s.retry_policy.as_ref().map(|r| {
                (
                    r.minimum_backoff.as_ref().map_or(DEFAULT_MIN_BACKOFF, Duration::seconds),
                    r.maximum_backoff.as_ref().map_or(DEFAULT_MAX_BACKOFF, Duration::seconds),
                )
            }),
            dead_letter: s.dead_letter_policy.as_ref().map(|d| (d.dead_letter_topic.clone(), d.max_delivery_attempts)),
            expiration_ttl_seconds: s.expiration_policy.as_ref().map(|e| e.ttl.as_ref().map(Duration::seconds)),
        }
    }
}

/// One setting that differs: the field-mask path to update and both values, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The field (its update-mask path).
    pub field: &'static str,
    /// What the subscription has.
    pub have: String,
    /// What it must have.
    pub want: String,
}

/// The mutable settings of `have` that differ from `want`.
pub fn drift(have: &Subscription, want: &Subscription) -> Vec<Drift> {
    let (h, w) = (Settings::of(have), Settings::of(want));
    let mut out = Vec::new();
    let mut check = |field: &'static str, differs: bool, have: String, want: String| {
        if differs {
            out.push(Drift { field, have, want });
        }
    };
    let push = |s: &Settings| format!("{:?} oidc={:?} unwrapped={}", s.push_endpoint, s.oidc, s.unwrapped);
    check(
        "push_config",
        (&h.push_endpoint, &h.oidc, h.unwrapped) != (&w.push_endpoint, &w.oidc, w.unwrapped),
        push(&h),
        push(&w),
    );
    check(
        "ack_deadline_seconds",
        h.ack_deadline_seconds != w.ack_deadline_seconds,
        h.ack_deadline_seconds.to_string(),
        w.ack_deadline_seconds.to_string(),
    );
    check(
        "message_retention_duration",
        h.message_retention_seconds != w.message_retention_seconds,
        format!("{:?}", h.message_retention_seconds),
        format!("{:?}", w.message_retention_seconds),
    );
    check(
        "retain_acked_messages",
        h.retain_acked_messages != w.retain_acked_messages,
        h.retain_acked_messages.to_string(),
        w.retain_acked_messages.to_string(),
    );
    check("retry_policy", h.retry != w.retry, format!("{:?}", h.retry), format!("{:?}", w.retry));
    check(
        "dead_letter_policy",
        h.dead_letter != w.dead_letter,
        format!("{:?}", h.dead_letter),
        format!("{:?}", w.dead_letter),
    );
    let expiration = |e: Option<Option<i64>>| match e {
        None => "unset (Pub/Sub's default: deleted after 31 days idle)".to_owned(),
        Some(None) => "never".to_owned(),
        Some(Some(ttl)) => format!("after {ttl} s idle"),
    };
    check(
        "expiration_policy",
        h.expiration_ttl_seconds != w.expiration_ttl_seconds,
        expiration(h.expiration_ttl_seconds),
        expiration(w.expiration_ttl_seconds),
    );
    out
}

/// The settings Pub/Sub cannot change in place that differ.
pub fn fixed_drift(have: &Subscription, want: &Subscription) -> Vec<Drift> {
    let mut out = Vec::new();
    if have.topic != want.topic {
        out.push(Drift { field: "topic", have: have.topic.clone(), want: want.topic.clone() });
    }
    if have.enable_message_ordering != want.enable_message_ordering {
        out.push(Drift {
            field: "enable_message_ordering",
            have: have.enable_message_ordering.to_string(),
            want: want.enable_message_ordering.to_string(),
        });
    }
    if have.filter != want.filter {
        out.push(Drift { field: "filter", have: format!("{:?}", have.filter), want: format!("{:?}", want.filter) });
    }
    if have.detached {
        out.push(Drift { field: "detached", have: "true".into(), want: "false".into() });
    }
    out
}

fn describe(drifts: &[Drift]) -> String {
    drifts.iter().map(|d| format!("{}: {} -> {}", d.field, d.have, d.want)).collect::<Vec<_>>().join("; ")
}

/// Creates `want`, or brings the existing subscription to it.
async fn ensure_subscription(admin: &SubscriptionAdmin, want: Subscription) -> anyhow::Result<String> {
    let name = want.name.clone();
    match admin.create_subscription().with_request(want.clone()).send().await {
        Ok(_) => return Ok(format!("created {name}")),
        Err(e) if exists(&e) => {}
        Err(e) => return Err(e).with_context(|| format!("creating {name}")),
    }
    let have = admin
        .get_subscription()
        .set_subscription(name.clone())
        .send()
        .await
        .with_context(|| format!("reading {name}"))?;
    let fixed = fixed_drift(&have, &want);
    if !fixed.is_empty() {
        bail!(
            "{name} differs in what Pub/Sub cannot change in place ({}). Drain it (or seek a new \
             subscription to the same point), delete it (`gcloud pubsub subscriptions delete {name}`) \
             and run this again",
            describe(&fixed)
        );
    }
    let drifts = drift(&have, &want);
    if drifts.is_empty() {
        return Ok(format!("exists  {name} (as set)"));
    }
    let mask = FieldMask::default().set_paths(drifts.iter().map(|d| d.field));
    admin
        .update_subscription()
        .set_subscription(want)
        .set_update_mask(mask)
        .send()
        .await
        .with_context(|| format!("updating {name} ({})", describe(&drifts)))?;
    Ok(format!("updated {name}: {}", describe(&drifts)))
}

/// Creates the topic, or brings an existing one's retention to `retention_seconds`.
async fn ensure_topic(admin: &TopicAdmin, name: &str, retention_seconds: Option<i64>) -> anyhow::Result<String> {
    let mut want = Topic::new().set_name(name);
    if let Some(retention) = retention_seconds {
        want = want.set_message_retention_duration(seconds(retention));
    }
    match admin.create_topic().with_request(want.clone()).send().await {
        Ok(_) => return Ok(format!("created {name}")),
        Err(e) if exists(&e) => {}
        Err(e) => return Err(e).with_context(|| format!("creating {name}")),
    }
    let Some(retention) = retention_seconds else { return Ok(format!("exists  {name}")) };
    let have = admin.get_topic().set_topic(name).send().await.with_context(|| format!("reading {name}"))?;
    let current = have.message_retention_duration.as_ref().map(Duration::seconds);
    if current == Some(retention) {
        return Ok(format!("exists  {name} (as set)"));
    }
    admin
        .update_topic()
        .set_topic(want)
        .set_update_mask(FieldMask::default().set_paths(["message_retention_duration"]))
        .send()
        .await
        .with_context(|| format!("updating the message retention of {name}"))?;
    Ok(format!("updated {name}: message_retention_duration: {current:?} -> Some({retention})"))
}

/// Creates what is missing and reconciles what exists; one report line per resource.
pub async fn setup(args: &PubsubSetupArgs) -> anyhow::Result<String> {
    let (topics, subscriptions) = clients(args).await.context("building the Pub/Sub clients")?;
    let project = &args.gcp_project;
    let topic = format!("projects/{project}/topics/{}", args.topic);
    let dead_letter = format!("projects/{project}/topics/{}", args.dead_letter_topic);
    let report = [
        ensure_topic(&topics, &topic, Some(args.topic_retention_seconds)).await?,
        ensure_topic(&topics, &dead_letter, None).await?,
        ensure_subscription(&subscriptions, dead_letter_subscription(args)).await?,
        ensure_subscription(&subscriptions, push_subscription(args)).await?,
    ];
    Ok(report.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: PubsubSetupArgs,
    }

    fn args(extra: &[&str]) -> PubsubSetupArgs {
        let mut argv = vec!["x", "--gcp-project", "p", "--push-endpoint", "https://b.example/pubsub/push?token=t"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn a_subscription_as_set_has_no_drift() {
        let a = args(&["--push-service-account", "sa@p.iam.gserviceaccount.com"]);
        assert!(drift(&push_subscription(&a), &push_subscription(&a)).is_empty());
        assert!(fixed_drift(&push_subscription(&a), &push_subscription(&a)).is_empty());
        assert!(drift(&dead_letter_subscription(&a), &dead_letter_subscription(&a)).is_empty());
    }

    #[test]
    fn every_owned_setting_is_compared() {
        let want = push_subscription(&args(&["--push-service-account", "sa@p.iam.gserviceaccount.com"]));
        // Values under Pub/Sub's minimums, which no plan can have: they differ from any.
        let cases: Vec<(&str, Subscription)> = vec![
            ("push_config", want.clone().set_push_config(PushConfig::new().set_push_endpoint("https://old"))),
            ("ack_deadline_seconds", want.clone().set_ack_deadline_seconds(9)),
            ("message_retention_duration", want.clone().set_message_retention_duration(seconds(599))),
            ("retain_acked_messages", want.clone().set_retain_acked_messages(true)),
            ("retry_policy", want.clone().set_or_clear_retry_policy(None::<RetryPolicy>)),
            ("dead_letter_policy", want.clone().set_or_clear_dead_letter_policy(None::<DeadLetterPolicy>)),
            ("expiration_policy", want.clone().set_or_clear_expiration_policy(None::<ExpirationPolicy>)),
            ("expiration_policy", want.clone().set_expiration_policy(ExpirationPolicy::new().set_ttl(seconds(86_400)))),
        ];
        for (field, have) in cases {
            let fields: Vec<&str> = drift(&have, &want).iter().map(|d| d.field).collect();
            assert_eq!(fields, [field]);
        }
        let fixed = want.clone().set_enable_message_ordering(false).set_topic("projects/p/topics/other");
        let fields: Vec<&str> = fixed_drift(&fixed, &want).iter().map(|d| d.field).collect();
        assert_eq!(fields, ["topic", "enable_message_ordering"]);
    }

    /// The plan file's line of `key` (`KEY=value`) and its number, from 1.
    fn line_of(key: &str) -> (usize, &'static str) {
        let prefix = format!("{key}=");
        PLAN_FILE.lines().enumerate().find(|(_, l)| l.starts_with(&prefix)).map(|(i, l)| (i + 1, l)).unwrap()
    }

    /// The plan file with the line of each key replaced.
    fn edited(edits: &[(&str, &str)]) -> Result<Plan, PlanError> {
        let mut lines: Vec<&str> = PLAN_FILE.lines().collect();
        for (key, to) in edits {
            lines[line_of(key).0 - 1] = to;
        }
        Plan::parse(String::leak(lines.join("\n") + "\n"))
    }

    #[test]
    fn each_key_sets_its_own_field() {
        assert_eq!(Plan::parse(PLAN_FILE), Ok(PLAN));
        // A missing last newline is fine (bash agrees).
        assert_eq!(Plan::parse(String::leak(PLAN_FILE.trim_end().to_owned())), Ok(PLAN));
        // Values all different from each other, in another order, with comments and blank lines.
        let other = "# another plan\n\nPUBSUB_SUBSCRIPTION_EXPIRATION=90000\nPUBSUB_TOPIC=t-1\n\
            PUBSUB_SUBSCRIPTION=s-2\nPUBSUB_DEAD_LETTER_TOPIC=t-3\nPUBSUB_DEAD_LETTER_SUBSCRIPTION=s-4\n\
            PUBSUB_ACK_DEADLINE_SECONDS=31\nPUBSUB_MIN_RETRY_DELAY_SECONDS=12\nPUBSUB_MAX_RETRY_DELAY_SECONDS=599\n\
            # attempts\nPUBSUB_MAX_DELIVERY_ATTEMPTS=7\nPUBSUB_MESSAGE_RETENTION_SECONDS=3601\n\
            PUBSUB_TOPIC_RETENTION_SECONDS=86401\n";
        let want = Plan {
            topic: "t-1",
            subscription: "s-2",
            dead_letter_topic: "t-3",
            dead_letter_subscription: "s-4",
            ack_deadline_seconds: 31,
            min_retry_delay_seconds: 12,
            max_retry_delay_seconds: 599,
            max_delivery_attempts: 7,
            message_retention_seconds: 3601,
            topic_retention_seconds: 86_401,
            expiration: Expiration::IdleSeconds(90_000),
        };
        assert_eq!(Plan::parse(other), Ok(want));
    }

    #[test]
    fn every_default_of_pubsub_setup_is_the_plan() {
        let a = args(&[]);
        assert_eq!(
            (
                a.topic.as_str(),
                a.subscription.as_str(),
                a.dead_letter_topic.as_str(),
                a.dead_letter_subscription.as_str()
            ),
            (PLAN.topic, PLAN.subscription, PLAN.dead_letter_topic, PLAN.dead_letter_subscription)
        );
        assert_eq!(
            (a.ack_deadline_seconds, a.max_delivery_attempts, a.min_backoff_seconds, a.max_backoff_seconds),
            (
                PLAN.ack_deadline_seconds,
                PLAN.max_delivery_attempts,
                PLAN.min_retry_delay_seconds,
                PLAN.max_retry_delay_seconds
            )
        );
        assert_eq!(
            (a.message_retention_seconds, a.topic_retention_seconds, a.expiration),
            (PLAN.message_retention_seconds, PLAN.topic_retention_seconds, PLAN.expiration)
        );
        assert_eq!(args(&["--expiration", "86400"]).expiration, Expiration::IdleSeconds(86_400));
    }

    #[test]
    fn every_default_of_pubsub_setup_is_written_as_the_plans() {
        // A literal default would agree with the plan today and drift from it at its next
        // change, unseen by every_default_of_pubsub_setup_is_the_plan: read the source.
        let cli = include_str!("cli.rs");
        let start = cli.find("pub struct PubsubSetupArgs {").unwrap();
        let body = &cli[start..start + cli[start..].find("\n}\n").unwrap()];
        let defaults: Vec<&str> = body.lines().filter(|l| l.contains("default_value")).collect();
        assert_eq!(defaults.len(), KEYS.len(), "one flag per key of the plan: {defaults:#?}");
        for line in defaults {
            assert!(line.contains("default_value = PLAN.") || line.contains("default_value_t = PLAN."), "{line}");
        }
    }

    #[test]
    fn a_bad_line_is_named_with_its_reason() {
        let ack = "PUBSUB_ACK_DEADLINE_SECONDS";
        let (line, text) = line_of(ack);
        for (to, why) in [
            ("PUBSUB_ACK_DEADLINE_SECONDS", "not KEY=value"),
            ("PUBSUB_ACK_DEADLINE_SECOND=60", "unknown key"),
            ("export PUBSUB_ACK_DEADLINE_SECONDS=60", "unknown key"),
            ("PUBSUB_ACK_DEADLINE_SECONDS =60", "unknown key"),
            (" PUBSUB_ACK_DEADLINE_SECONDS=60", "unknown key"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=", "empty value"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=\"60\"", "letters, digits"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=60 # seconds", "letters, digits"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=$((30*2))", "letters, digits"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=60\r", "letters, digits"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=60s", "whole seconds"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=-60", "whole seconds"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=601", "10 to 600"),
            ("PUBSUB_ACK_DEADLINE_SECONDS=99999999999999999999", "10 to 600"),
        ] {
            let error = edited(&[(ack, to)]).unwrap_err();
            assert_eq!((error.line, error.text), (line, to), "{to:?}");
            assert!(error.why.contains(why), "{to:?}: {}", error.why);
        }
        // Given twice: the second is named.
        let twice = edited(&[(ack, &format!("{text}\n{text}"))]).unwrap_err();
        assert_eq!((twice.line, twice.text, twice.why), (line + 1, text, "key given twice"));
        // Left out: the key is named.
        let missing = edited(&[(ack, "# gone")]).unwrap_err();
        assert_eq!((missing.line, missing.text, missing.why), (0, ack, "key missing"));

        for (key, to, why) in [
            ("PUBSUB_TOPIC", "PUBSUB_TOPIC=1-events", "a letter first"),
            ("PUBSUB_TOPIC", "PUBSUB_TOPIC=ab", "3 to 255"),
            ("PUBSUB_TOPIC", "PUBSUB_TOPIC=google-events", "goog"),
            ("PUBSUB_MAX_DELIVERY_ATTEMPTS", "PUBSUB_MAX_DELIVERY_ATTEMPTS=4", "5 to 100"),
            ("PUBSUB_MESSAGE_RETENTION_SECONDS", "PUBSUB_MESSAGE_RETENTION_SECONDS=7", "600 to 604800"),
            ("PUBSUB_TOPIC_RETENTION_SECONDS", "PUBSUB_TOPIC_RETENTION_SECONDS=2678401", "600 to 2678400"),
            ("PUBSUB_SUBSCRIPTION_EXPIRATION", "PUBSUB_SUBSCRIPTION_EXPIRATION=3600", "at least 86400"),
            ("PUBSUB_SUBSCRIPTION_EXPIRATION", "PUBSUB_SUBSCRIPTION_EXPIRATION=Never", "`never`"),
        ] {
            let error = edited(&[(key, to)]).unwrap_err();
            assert_eq!((error.line, error.text), (line_of(key).0, to), "{to:?}");
            assert!(error.why.contains(why), "{to:?}: {}", error.why);
        }
        let (min, max) = ("PUBSUB_MIN_RETRY_DELAY_SECONDS", "PUBSUB_MAX_RETRY_DELAY_SECONDS");
        let inverted =
            edited(&[(min, "PUBSUB_MIN_RETRY_DELAY_SECONDS=20"), (max, "PUBSUB_MAX_RETRY_DELAY_SECONDS=19")]);
        let error = inverted.unwrap_err();
        assert_eq!((error.line, error.text), (line_of(max).0, "PUBSUB_MAX_RETRY_DELAY_SECONDS=19"));
        assert!(error.why.contains("under the minimum"), "{}", error.why);

        let key = "PUBSUB_SUBSCRIPTION_EXPIRATION";
        let expiring = edited(&[(key, "PUBSUB_SUBSCRIPTION_EXPIRATION=2678400")]).unwrap();
        assert_eq!(expiring.expiration, Expiration::IdleSeconds(2_678_400));
        assert_eq!(expiring.expiration.policy().ttl, Some(seconds(2_678_400)));
        let never = edited(&[(key, "PUBSUB_SUBSCRIPTION_EXPIRATION=never")]).unwrap();
        // A policy without a ttl: never deleted for inactivity.
        assert_eq!(never.expiration.policy(), ExpirationPolicy::new());
    }

    #[test]
    fn the_default_audience_leaves_the_token_out() {
        let want = push_subscription(&args(&["--push-service-account", "sa@p.iam.gserviceaccount.com"]));
        let oidc = want.push_config.as_ref().unwrap().oidc_token().unwrap().clone();
        assert_eq!(oidc.audience, "https://b.example/pubsub/push");
        assert_eq!(want.expiration_policy, Some(PLAN.expiration.policy()));
    }
}
