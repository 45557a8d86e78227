//! `lms-bridge pubsub setup` against the real Pub/Sub emulator: every setting of the topic and
//! both subscriptions read back (through the emulator's REST API, a reader independent of the
//! client the command uses), a setting changed by hand restored by the next run, and what
//! Pub/Sub cannot change in place refused loudly. The values expected are those of
//! `deploy/pubsub.env` (the plan the command is built with); that `deploy/gcp.sh` makes the same
//! resources is tests/tests/deploy.rs's the_deploy_and_pubsub_setup_make_the_same_pubsub_resources.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_backend::pubsub_setup::{Expiration, PLAN};
use lms_bridge_tests::backend::backend_bin;
use lms_bridge_tests::pubsub_emulator::Emulator;
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::sync::OnceLock;

const ENDPOINT: &str = "http://127.0.0.1:9/pubsub/push?token=verification-token";
const ACCOUNT: &str = "lms-bridge-push@acme.iam.gserviceaccount.com";

fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(Emulator::start)
}

fn setup(project: &str) -> Output {
    Command::new(backend_bin())
        .args(["pubsub", "setup", "--gcp-project", project, "--push-endpoint", ENDPOINT])
        .args(["--push-service-account", ACCOUNT, "--pubsub-emulator-host", &emulator().host])
        .env_remove("PUSH_AUDIENCE")
        .env_remove("PUBSUB_SUBSCRIPTION")
        .env_remove("PUBSUB_TOPIC")
        .env_remove("PUBSUB_DEAD_LETTER_TOPIC")
        .env_remove("PUBSUB_DEAD_LETTER_SUBSCRIPTION")
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "pubsub setup failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn url(project: &str, path: &str) -> String {
    format!("http://{}/v1/projects/{project}/{path}", emulator().host)
}

fn get(project: &str, path: &str) -> Value {
    reqwest::blocking::get(url(project, path)).unwrap().json().unwrap()
}

fn topic(name: &str) -> String {
    format!("topics/{name}")
}

fn subscription(name: &str) -> String {
    format!("subscriptions/{name}")
}

fn seconds(value: i64) -> String {
    format!("{value}s")
}

/// How the plan's expiration reads back: a policy without a ttl never expires.
fn expiration() -> Value {
    match PLAN.expiration {
        Expiration::Never => json!({}),
        Expiration::IdleSeconds(ttl) => json!({ "ttl": seconds(ttl) }),
    }
}

fn send(method: reqwest::Method, project: &str, path: &str, body: Value) {
    let response = reqwest::blocking::Client::new().request(method, url(project, path)).json(&body).send().unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.text().unwrap());
}

/// The push subscription as `setup` must leave it, every setting.
fn push_subscription(project: &str) -> Value {
    json!({
        "name": format!("projects/{project}/{}", subscription(PLAN.subscription)),
        "topic": format!("projects/{project}/{}", topic(PLAN.topic)),
        "pushConfig": {
            "pushEndpoint": ENDPOINT,
            // The audience leaves the token out.
            "oidcToken": { "serviceAccountEmail": ACCOUNT, "audience": "http://127.0.0.1:9/pubsub/push" },
        },
        "ackDeadlineSeconds": PLAN.ack_deadline_seconds,
        "messageRetentionDuration": seconds(PLAN.message_retention_seconds),
        "enableMessageOrdering": true,
        "expirationPolicy": expiration(),
        "deadLetterPolicy": {
            "deadLetterTopic": format!("projects/{project}/{}", topic(PLAN.dead_letter_topic)),
            "maxDeliveryAttempts": PLAN.max_delivery_attempts,
        },
        "retryPolicy": {
            "minimumBackoff": seconds(PLAN.min_retry_delay_seconds),
            "maximumBackoff": seconds(PLAN.max_retry_delay_seconds),
        },
    })
}

fn dead_letter_subscription(project: &str) -> Value {
    json!({
        "name": format!("projects/{project}/{}", subscription(PLAN.dead_letter_subscription)),
        "topic": format!("projects/{project}/{}", topic(PLAN.dead_letter_topic)),
        "pushConfig": {},
        "ackDeadlineSeconds": PLAN.ack_deadline_seconds,
        "messageRetentionDuration": seconds(PLAN.message_retention_seconds),
        "expirationPolicy": expiration(),
    })
}

#[test]
fn setup_sets_every_setting_and_a_second_run_restores_what_was_changed_by_hand() {
    let project = "setup-reconcile";
    let (events, dead_letters) = (topic(PLAN.topic), topic(PLAN.dead_letter_topic));
    let (push, pull) = (subscription(PLAN.subscription), subscription(PLAN.dead_letter_subscription));
    let first = ok(&setup(project));
    assert_eq!(first.matches("created").count(), 4, "{first}");

    assert_eq!(
        get(project, &events),
        json!({
            "name": format!("projects/{project}/{events}"),
            "messageRetentionDuration": seconds(PLAN.topic_retention_seconds),
        })
    );
    assert_eq!(get(project, &dead_letters), json!({ "name": format!("projects/{project}/{dead_letters}") }));
    assert_eq!(get(project, &push), push_subscription(project));
    assert_eq!(get(project, &pull), dead_letter_subscription(project));

    // By hand: every mutable setting the emulator lets us change, each to another value than
    // the plan's.
    let (ack, attempts, retention, pull_ack) = (30, 5, 3600, 10);
    assert!(ack != PLAN.ack_deadline_seconds && pull_ack != PLAN.ack_deadline_seconds);
    assert!(attempts != PLAN.max_delivery_attempts && PLAN.min_retry_delay_seconds != 5);
    assert!(retention != PLAN.message_retention_seconds && retention != PLAN.topic_retention_seconds);
    let patch = |path: &str, body: Value| send(reqwest::Method::PATCH, project, path, body);
    patch(
        &push,
        json!({
            "subscription": {
                "ackDeadlineSeconds": ack,
                "pushConfig": { "pushEndpoint": "http://127.0.0.1:9/elsewhere" },
                "retryPolicy": { "minimumBackoff": "5s", "maximumBackoff": "60s" },
                "deadLetterPolicy": {
                    "deadLetterTopic": format!("projects/{project}/{dead_letters}"),
                    "maxDeliveryAttempts": attempts,
                },
                "messageRetentionDuration": seconds(retention),
            },
            "updateMask": "ackDeadlineSeconds,pushConfig,retryPolicy,deadLetterPolicy,messageRetentionDuration",
        }),
    );
    patch(&pull, json!({ "subscription": { "ackDeadlineSeconds": pull_ack }, "updateMask": "ackDeadlineSeconds" }));
    patch(
        &events,
        json!({ "topic": { "messageRetentionDuration": seconds(retention) }, "updateMask": "messageRetentionDuration" }),
    );
    assert_eq!(get(project, &push)["ackDeadlineSeconds"], ack);

    let second = ok(&setup(project));
    for field in [
        &format!("ack_deadline_seconds: {ack} -> {}", PLAN.ack_deadline_seconds),
        "push_config",
        "retry_policy",
        "dead_letter_policy",
        "message_retention_duration",
    ] {
        assert!(second.contains(field), "the report does not name {field}:\n{second}");
    }
    assert_eq!(get(project, &push), push_subscription(project));
    assert_eq!(get(project, &pull), dead_letter_subscription(project));
    assert_eq!(get(project, &events)["messageRetentionDuration"], seconds(PLAN.topic_retention_seconds));

    // Nothing left to do.
    let third = ok(&setup(project));
    assert!(!third.contains("created") && !third.contains("updated"), "{third}");
}

#[test]
fn setup_refuses_a_subscription_whose_ordering_or_topic_cannot_be_changed() {
    let project = "setup-fixed";
    let push = subscription(PLAN.subscription);
    send(reqwest::Method::PUT, project, &topic(PLAN.topic), json!({}));
    send(reqwest::Method::PUT, project, "topics/other", json!({}));
    send(
        reqwest::Method::PUT,
        project,
        &push,
        json!({ "topic": format!("projects/{project}/topics/other"), "enableMessageOrdering": false }),
    );
    let output = setup(project);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "setup kept a subscription without ordering: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("enable_message_ordering: false -> true"), "{stderr}");
    assert!(
        stderr.contains(&format!("topic: projects/{project}/topics/other -> projects/{project}/topics/{}", PLAN.topic)),
        "{stderr}"
    );
    assert!(stderr.contains("cannot change"), "{stderr}");
    // Left as it was (Pub/Sub's default deadline, not the plan's).
    assert_eq!(get(project, &push)["ackDeadlineSeconds"], 10);
}

#[test]
fn setup_notices_a_subscription_that_would_expire() {
    // The emulator cannot update an expiration policy (real Pub/Sub can): the attempt shows
    // the drift was seen, and the command fails rather than keep a 1-day expiry.
    let project = "setup-expiry";
    assert_ne!(PLAN.expiration, Expiration::IdleSeconds(86_400));
    ok(&setup(project));
    let mut expiring = push_subscription(project);
    expiring["name"] = json!(format!("projects/{project}/subscriptions/expiring"));
    expiring["expirationPolicy"] = json!({ "ttl": "86400s" });
    send(reqwest::Method::PUT, project, "subscriptions/expiring", expiring);
    let output = Command::new(backend_bin())
        .args(["pubsub", "setup", "--gcp-project", project, "--push-endpoint", ENDPOINT, "--subscription", "expiring"])
        .args(["--push-service-account", ACCOUNT, "--pubsub-emulator-host", &emulator().host])
        .env_remove("PUSH_AUDIENCE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let want = match PLAN.expiration {
        Expiration::Never => "never".to_owned(),
        Expiration::IdleSeconds(ttl) => format!("after {ttl} s idle"),
    };
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("expiration_policy: after 86400 s idle -> {want}")), "{stderr}");
}
