//! The GCP deploy plan: shellcheck-clean scripts, and a `--dry-run` that names every resource
//! with the right flags and runs nothing.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::process::require;
use lms_bridge_tests::repo_root;
use std::process::Command;

#[test]
fn shell_scripts_are_shellcheck_clean() {
    let shellcheck = require("shellcheck", "run `make setup` (installs Debian's shellcheck)");
    let root = repo_root();
    let mut scripts = vec![root.join("deploy/gcp.sh"), root.join(".ci/run")];
    for entry in std::fs::read_dir(root.join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sh") {
            scripts.push(path);
        }
    }
    let output = Command::new(shellcheck).current_dir(&root).arg("-x").args(&scripts).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn the_dry_run_plans_every_resource_and_touches_nothing() {
    let root = repo_root();
    // A gcloud that records any call: a dry run must make none.
    let fake = std::env::temp_dir().join(format!("fake-gcloud-{}", std::process::id()));
    std::fs::create_dir_all(&fake).unwrap();
    let marker = fake.join("called");
    let script = format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", marker.display());
    std::fs::write(fake.join("gcloud"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("gcloud"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let output = Command::new(root.join("deploy/gcp.sh"))
        .arg("--dry-run")
        .current_dir(&root)
        .env("PATH", path)
        .env("PROJECT", "acme-courses")
        .env("REGION", "europe-west1")
        .env("TALENTLMS_URL", "https://acme.talentlms.com")
        .env("TALENTLMS_API_KEY", "key-must-not-be-printed")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!marker.exists(), "dry run called gcloud: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    let plan = String::from_utf8(output.stdout).unwrap();
    assert!(!plan.contains("key-must-not-be-printed"), "the API key leaked into the plan");
    let line = |needles: &[&str]| {
        assert!(
            plan.lines().any(|l| l.starts_with('+') && needles.iter().all(|n| l.contains(n))),
            "no planned command with {needles:?} in:\n{plan}"
        );
    };
    line(&[
        "services enable",
        "run.googleapis.com",
        "pubsub.googleapis.com",
        "firestore.googleapis.com",
        "secretmanager.googleapis.com",
        "cloudscheduler.googleapis.com",
    ]);
    for sa in ["lms-bridge-edge", "lms-bridge-push", "lms-bridge-run"] {
        line(&["iam service-accounts create", sa]);
    }
    line(&[
        "pubsub topics add-iam-policy-binding lms-bridge-events",
        "lms-bridge-edge@acme-courses",
        "roles/pubsub.publisher",
    ]);
    line(&["run services add-iam-policy-binding lms-bridge", "lms-bridge-push@", "roles/run.invoker"]);
    line(&["projects add-iam-policy-binding", "lms-bridge-run@", "roles/datastore.user"]);
    line(&[
        "secrets add-iam-policy-binding talentlms-api-key",
        "lms-bridge-run@",
        "roles/secretmanager.secretAccessor",
    ]);
    line(&["pubsub topics create lms-bridge-events"]);
    line(&["pubsub topics create lms-bridge-dead-letters"]);
    line(&["pubsub topics add-iam-policy-binding lms-bridge-dead-letters", "gcp-sa-pubsub", "roles/pubsub.publisher"]);
    line(&[
        "pubsub subscriptions create lms-bridge-push",
        "--topic=lms-bridge-events",
        "--enable-message-ordering",
        "--push-endpoint=https://",
        "/pubsub/push",
        "--push-auth-service-account=lms-bridge-push@",
        "--push-auth-token-audience=https://",
        "--ack-deadline=60",
        "--min-retry-delay=10s",
        "--max-retry-delay=600s",
        "--dead-letter-topic=lms-bridge-dead-letters",
        "--max-delivery-attempts=10",
    ]);
    line(&["firestore databases create", "--type=firestore-native", "--location=europe-west1"]);
    line(&[
        "firestore indexes composite create",
        "--collection-group=enrollments",
        "field-path=access",
        "field-path=access_until",
    ]);
    line(&["firestore fields ttls update expire_at", "--collection-group=events", "--enable-ttl"]);
    line(&["secrets create talentlms-api-key"]);
    line(&["builds submit", "--config=deploy/cloudbuild.yaml"]);
    line(&[
        "run deploy lms-bridge",
        "--no-allow-unauthenticated",
        "--service-account=lms-bridge-run@",
        "PUSH_AUTH=cloud-run",
        "--set-secrets=TALENTLMS_API_KEY=talentlms-api-key:latest",
        "--timeout=60s",
    ]);
    line(&["run services update lms-bridge", "PUSH_AUDIENCE=https://"]);
    line(&[
        "scheduler jobs create http lms-bridge-sweep",
        "/tasks/sweep",
        "--oidc-service-account-email=lms-bridge-push@",
        "--oidc-token-audience=https://",
    ]);
    assert!(
        plan.contains("wrangler queues create lms-bridge-events")
            && plan.contains("wrangler secret put HOTMART_HOTTOK")
    );
    assert!(plan.contains("wrangler secret put GCP_SERVICE_ACCOUNT_KEY"));
}

#[test]
fn the_index_file_covers_the_sweep_query_and_the_dockerfile_runs_as_non_root() {
    let root = repo_root();
    let indexes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/firestore.indexes.json")).unwrap()).unwrap();
    let sweep = indexes["indexes"].as_array().unwrap().iter().find(|i| i["collectionGroup"] == "enrollments").unwrap();
    let fields: Vec<&str> =
        sweep["fields"].as_array().unwrap().iter().map(|f| f["fieldPath"].as_str().unwrap()).collect();
    assert_eq!(fields, ["access", "access_until"]);
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    assert_eq!(dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")), 2, "multi-stage");
    assert!(dockerfile.contains("USER nonroot") && dockerfile.contains("ENV PORT=8080"));
}

#[test]
fn a_dry_run_without_a_project_stops_with_one_line() {
    let output =
        Command::new(repo_root().join("deploy/gcp.sh")).arg("--dry-run").env_remove("PROJECT").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("set PROJECT"));
}
