//! `lms-bridge pubsub setup` against the real Pub/Sub emulator: every setting of the topic and
//! both subscriptions read back (through the emulator's REST API, a reader independent of the
//! client the command uses), a setting changed by hand restored by the next run, and what
//! Pub/Sub cannot change in place refused loudly.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::backend::backend_bin;
use lms_bridge_tests::pubsub::Emulator;
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

fn send(method: reqwest::Method, project: &str, path: &str, body: Value) {
    let response = reqwest::blocking::Client::new().request(method, url(project, path)).json(&body).send().unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.text().unwrap());
}

/// The push subscription as `setup` must leave it, every setting.
fn push_subscription(project: &str) -> Value {
    json!({
        "name": format!("projects/{project}/subscriptions/lms-bridge-push"),
        "topic": format!("projects/{project}/topics/lms-bridge-events"),
        "pushConfig": {
            "pushEndpoint": ENDPOINT,
            // The audience leaves the token out.
            "oidcToken": { "serviceAccountEmail": ACCOUNT, "audience": "http://127.0.0.1:9/pubsub/push" },
        },
        "ackDeadlineSeconds": 60,
        "messageRetentionDuration": "604800s",
        "enableMessageOrdering": true,
        // Present without a ttl: never expires.
        "expirationPolicy": {},
        "deadLetterPolicy": {
            "deadLetterTopic": format!("projects/{project}/topics/lms-bridge-dead-letters"),
            "maxDeliveryAttempts": 10,
        },
        "retryPolicy": { "minimumBackoff": "10s", "maximumBackoff": "600s" },
    })
}

fn dead_letter_subscription(project: &str) -> Value {
    json!({
        "name": format!("projects/{project}/subscriptions/lms-bridge-dead-letters"),
        "topic": format!("projects/{project}/topics/lms-bridge-dead-letters"),
        "pushConfig": {},
        "ackDeadlineSeconds": 60,
        "messageRetentionDuration": "604800s",
        "expirationPolicy": {},
    })
}

#[test]
fn setup_sets_every_setting_and_a_second_run_restores_what_was_changed_by_hand() {
    let project = "setup-reconcile";
    let first = ok(&setup(project));
    assert_eq!(first.matches("created").count(), 4, "{first}");

    assert_eq!(
        get(project, "topics/lms-bridge-events"),
        json!({ "name": format!("projects/{project}/topics/lms-bridge-events"), "messageRetentionDuration": "604800s" })
    );
    assert_eq!(
        get(project, "topics/lms-bridge-dead-letters")["name"],
        format!("projects/{project}/topics/lms-bridge-dead-letters")
    );
    assert_eq!(get(project, "subscriptions/lms-bridge-push"), push_subscription(project));
    assert_eq!(get(project, "subscriptions/lms-bridge-dead-letters"), dead_letter_subscription(project));

    // By hand: every mutable setting the emulator lets us change.
    let patch = |path: &str, body: Value| send(reqwest::Method::PATCH, project, path, body);
    patch(
        "subscriptions/lms-bridge-push",
        json!({
            "subscription": {
                "ackDeadlineSeconds": 30,
                "pushConfig": { "pushEndpoint": "http://127.0.0.1:9/elsewhere" },
                "retryPolicy": { "minimumBackoff": "5s", "maximumBackoff": "60s" },
                "deadLetterPolicy": {
                    "deadLetterTopic": format!("projects/{project}/topics/lms-bridge-dead-letters"),
                    "maxDeliveryAttempts": 5,
                },
                "messageRetentionDuration": "3600s",
            },
            "updateMask": "ackDeadlineSeconds,pushConfig,retryPolicy,deadLetterPolicy,messageRetentionDuration",
        }),
    );
    patch(
        "subscriptions/lms-bridge-dead-letters",
        json!({ "subscription": { "ackDeadlineSeconds": 10 }, "updateMask": "ackDeadlineSeconds" }),
    );
    patch(
        "topics/lms-bridge-events",
        json!({ "topic": { "messageRetentionDuration": "3600s" }, "updateMask": "messageRetentionDuration" }),
    );
    assert_eq!(get(project, "subscriptions/lms-bridge-push")["ackDeadlineSeconds"], 30);

    let second = ok(&setup(project));
    for field in [
        "ack_deadline_seconds: 30 -> 60",
        "push_config",
        "retry_policy",
        "dead_letter_policy",
        "message_retention_duration",
    ] {
        assert!(second.contains(field), "the report does not name {field}:\n{second}");
    }
    assert_eq!(get(project, "subscriptions/lms-bridge-push"), push_subscription(project));
    assert_eq!(get(project, "subscriptions/lms-bridge-dead-letters"), dead_letter_subscription(project));
    assert_eq!(get(project, "topics/lms-bridge-events")["messageRetentionDuration"], "604800s");

    // Nothing left to do.
    let third = ok(&setup(project));
    assert!(!third.contains("created") && !third.contains("updated"), "{third}");
}

#[test]
fn setup_refuses_a_subscription_whose_ordering_or_topic_cannot_be_changed() {
    let project = "setup-fixed";
    send(reqwest::Method::PUT, project, "topics/lms-bridge-events", json!({}));
    send(reqwest::Method::PUT, project, "topics/other", json!({}));
    send(
        reqwest::Method::PUT,
        project,
        "subscriptions/lms-bridge-push",
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
        stderr.contains(&format!(
            "topic: projects/{project}/topics/other -> projects/{project}/topics/lms-bridge-events"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("cannot change"), "{stderr}");
    // Left as it was.
    assert_eq!(get(project, "subscriptions/lms-bridge-push")["ackDeadlineSeconds"], 10);
}

#[test]
fn setup_notices_a_subscription_that_would_expire() {
    // The emulator cannot update an expiration policy (real Pub/Sub can): the attempt shows
    // the drift was seen, and the command fails rather than keep a 1-day expiry.
    let project = "setup-expiry";
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
    assert!(!output.status.success());
    assert!(stderr.contains("expiration_policy: after 86400 s idle -> never"), "{stderr}");
}
