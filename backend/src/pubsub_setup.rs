//! `lms-bridge pubsub setup`: the topic, the dead-letter topic, the push subscription and the
//! dead letters' pull subscription, with the official `google-cloud-pubsub` crate, against the
//! emulator (`PUBSUB_EMULATOR_HOST`) or real GCP (application default credentials).
//!
//! Idempotent and reconciling: what is missing is created, and every setting of what exists is
//! brought back to the one below (push endpoint and OIDC token, ack deadline, retention, retry
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

/// Pub/Sub's defaults when a retry policy leaves a bound out.
const DEFAULT_MIN_BACKOFF: i64 = 10;
const DEFAULT_MAX_BACKOFF: i64 = 600;

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
        // A policy without a ttl: never deleted for inactivity (the default is 31 days).
        .set_expiration_policy(ExpirationPolicy::new())
}

/// The pull subscription that keeps dead letters: without one Pub/Sub drops them.
pub fn dead_letter_subscription(args: &PubsubSetupArgs) -> Subscription {
    let project = &args.gcp_project;
    Subscription::new()
        .set_name(format!("projects/{project}/subscriptions/{}", args.dead_letter_subscription))
        .set_topic(format!("projects/{project}/topics/{}", args.dead_letter_topic))
        .set_ack_deadline_seconds(args.ack_deadline_seconds)
        .set_message_retention_duration(seconds(args.message_retention_seconds))
        .set_expiration_policy(ExpirationPolicy::new())
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
        // The events topic keeps messages so a subscription can seek back.
        ensure_topic(&topics, &topic, Some(args.message_retention_seconds)).await?,
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
        let cases: Vec<(&str, Subscription)> = vec![
            ("push_config", want.clone().set_push_config(PushConfig::new().set_push_endpoint("https://old"))),
            ("ack_deadline_seconds", want.clone().set_ack_deadline_seconds(30)),
            ("message_retention_duration", want.clone().set_message_retention_duration(seconds(600))),
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

    #[test]
    fn the_default_audience_leaves_the_token_out() {
        let want = push_subscription(&args(&["--push-service-account", "sa@p.iam.gserviceaccount.com"]));
        let oidc = want.push_config.as_ref().unwrap().oidc_token().unwrap().clone();
        assert_eq!(oidc.audience, "https://b.example/pubsub/push");
        assert_eq!(want.expiration_policy, Some(ExpirationPolicy::new()));
    }
}
