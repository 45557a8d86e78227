//! The GCP deploy: shellcheck-clean scripts; a `--dry-run` that names every resource with the
//! right flags and runs nothing; a plan whose Cloud Run settings start the real backend and
//! whose every gcloud command passes the real gcloud's argument parser; and real runs of
//! `deploy/gcp.sh` against a fake gcloud (first on PATH) for what only a real run does: the
//! public-service check, the edge key's temporary file, never printing a secret. And the one
//! Pub/Sub plan: every Pub/Sub value of the script comes from `deploy/pubsub.env`, and the script
//! and `lms-bridge pubsub setup` (built from the same file) make the same resources. And the admin
//! console: its own Cloud Run service (`lms-bridge admin`, the same image) behind IAP, an account
//! with exactly its four roles, IAP access for the emails of ADMIN_OPERATORS and ADMIN_VIEWERS and
//! nobody else, refused without an operator, a CSRF key generated once and never shown.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use base64::Engine as _;
use lms_bridge_backend::pubsub_setup::{Expiration, Plan, PLAN, PLAN_FILE};
use lms_bridge_tests::backend::{backend_bin, Firestore};
use lms_bridge_tests::process::{free_port, http_ok, require, Service};
use lms_bridge_tests::pubsub_emulator::Emulator;
use lms_bridge_tests::repo_root;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROJECT: &str = "acme-courses";
const REGION: &str = "europe-west1";
const NUMBER: &str = "123456789012";
const URL: &str = "https://lms-bridge-123456789012.europe-west1.run.app";
const API_KEY: &str = "key-must-not-be-printed";
/// The push verification token the fake Secret Manager holds.
const TOKEN: &str = "token-must-not-be-printed-0123456789abcdef";
/// Who may act in the admin console, and who may only look (the script's ADMIN_OPERATORS and
/// ADMIN_VIEWERS, unless a test sets others).
const OPERATORS: &str = "ops@acme-courses.example";
const VIEWERS: &str = "viewer@acme-courses.example";
const ADMIN_SA: &str = "lms-bridge-admin@acme-courses.iam.gserviceaccount.com";
const IAP_ACCESS: &str = "roles/iap.httpsResourceAccessor";
/// TalentLMS allows 200 calls per 5 s per portal.
const PORTAL_CALLS_PER_SECOND: u32 = 200 / 5;

fn write_program(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lms-bridge-deploy-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the caller's environment could set for the script; each test sets what it means to.
const SCRIPT_SETTINGS: [&str; 22] = [
    "LMS",
    "MOODLE_URL",
    "MOODLE_TOKEN",
    "MOODLE_CALLS_PER_SECOND",
    "MOODLE_SECRET",
    "STRIPE_API_KEY",
    "ADMIN_OPERATORS",
    "ADMIN_VIEWERS",
    "ADMIN_SERVICE",
    "ADMIN_CSRF_SECRET",
    "HOTMART_CLIENT_ID",
    "HOTMART_CLIENT_SECRET",
    "RECONCILE_SCHEDULE",
    "PROJECT_NUMBER",
    "PLAN_EXISTING",
    "MAX_INSTANCES",
    "TALENTLMS_CALLS_PER_SECOND",
    "WRANGLER",
    "TOPIC",
    "SUBSCRIPTION",
    "DEAD_LETTER_TOPIC",
    "DEAD_LETTER_SUBSCRIPTION",
];

/// `deploy/gcp.sh --dry-run ARGS` with a gcloud first on PATH that fails the test if called.
fn dry_run(args: &[&str], env: &[(&str, &str)]) -> Output {
    dry_run_of(&repo_root().join("deploy/gcp.sh"), args, env)
}

/// `SCRIPT --dry-run ARGS`: the repository's `deploy/gcp.sh` or a copy beside another plan.
fn dry_run_of(script: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let fake = scratch("dry");
    let marker = fake.join("called");
    write_program(&fake.join("gcloud"), &format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", marker.display()));
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let mut command = Command::new(script);
    command
        .arg("--dry-run")
        .args(args)
        .current_dir(repo_root())
        .env("PATH", path)
        .env("PROJECT", PROJECT)
        .env("REGION", REGION)
        .env("TALENTLMS_URL", "https://acme.talentlms.com")
        .env("TALENTLMS_API_KEY", API_KEY);
    for name in SCRIPT_SETTINGS {
        command.env_remove(name);
    }
    command.env("ADMIN_OPERATORS", OPERATORS).env("ADMIN_VIEWERS", VIEWERS);
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    assert!(!marker.exists(), "a dry run called gcloud: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    let _ = std::fs::remove_dir_all(&fake);
    output
}

fn plan(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = dry_run(args, env);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Shell-quoted command lines (`printf %q`, as the plan and the fake gcloud's log write them)
/// split into words by bash itself; comments dropped.
fn words(lines: &[String]) -> Vec<Vec<String>> {
    let mut script = String::new();
    for line in lines {
        script.push_str(&format!("a=( {line}\n)\nprintf '%s\\037' \"${{a[@]}}\"; printf '\\036'\n"));
    }
    let output = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let commands: Vec<Vec<String>> = text
        .split('\u{1e}')
        .filter(|c| !c.is_empty())
        .map(|c| c.split('\u{1f}').filter(|w| !w.is_empty()).map(str::to_owned).collect())
        .collect();
    assert_eq!(commands.len(), lines.len());
    commands
}

/// The planned commands (lines starting with `+ `), as words.
fn planned(plan: &str) -> Vec<Vec<String>> {
    words(&plan.lines().filter_map(|l| l.strip_prefix("+ ")).map(str::to_owned).collect::<Vec<_>>())
}

/// The one planned gcloud command containing all these words in order of appearance.
fn command<'a>(commands: &'a [Vec<String>], needles: &[&str]) -> &'a Vec<String> {
    let found: Vec<&Vec<String>> = commands
        .iter()
        .filter(|c| c.first().is_some_and(|p| p == "gcloud") && needles.iter().all(|n| c.iter().any(|w| w == n)))
        .collect();
    assert_eq!(found.len(), 1, "not exactly one command with {needles:?}: {found:?}");
    found[0]
}

/// The value of `--flag=value` in a command.
fn flag<'a>(command: &'a [String], name: &str) -> &'a str {
    let prefix = format!("{name}=");
    command.iter().find_map(|w| w.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {name} in {command:?}"))
}

/// `KEY=VALUE,KEY=VALUE` (gcloud's list-of-pairs flags).
fn pairs(value: &str) -> BTreeMap<String, String> {
    value.split(',').map(|p| p.split_once('=').unwrap()).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

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
    let plan = plan(&[], &[]);
    assert!(!plan.contains(API_KEY), "the API key leaked into the plan");
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
    for secret in ["talentlms-api-key", "push-verification-token"] {
        line(&["secrets create", secret]);
        line(&[
            &format!("secrets add-iam-policy-binding {secret}"),
            "lms-bridge-run@",
            "roles/secretmanager.secretAccessor",
        ]);
    }
    // The Pub/Sub values themselves: every_pubsub_value_of_the_deploy_comes_from_deploy_pubsub_env.
    line(&["pubsub topics create lms-bridge-events", "--message-retention-duration="]);
    line(&["pubsub topics create lms-bridge-dead-letters"]);
    line(&[
        "pubsub topics add-iam-policy-binding lms-bridge-dead-letters",
        "service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com",
        "roles/pubsub.publisher",
    ]);
    line(&[
        "pubsub subscriptions add-iam-policy-binding lms-bridge-push",
        "service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com",
        "roles/pubsub.subscriber",
    ]);
    line(&[
        "pubsub subscriptions create lms-bridge-push",
        "--topic=lms-bridge-events",
        "--enable-message-ordering",
        "--push-endpoint=https://lms-bridge-PROJECT_NUMBER.europe-west1.run.app/pubsub/push\\?token=\\<secret\\>",
        "--push-auth-service-account=lms-bridge-push@",
        "--push-auth-token-audience=https://lms-bridge-PROJECT_NUMBER.europe-west1.run.app ",
        "--dead-letter-topic=lms-bridge-dead-letters",
    ]);
    line(&["pubsub subscriptions create lms-bridge-dead-letters", "--topic=lms-bridge-dead-letters"]);
    line(&["firestore databases create", "--type=firestore-native", "--location=europe-west1"]);
    line(&[
        "firestore indexes composite create",
        "--collection-group=enrollments",
        "field-path=access",
        "field-path=access_until",
    ]);
    line(&["firestore fields ttls update expire_at", "--collection-group=events", "--enable-ttl"]);
    line(&["builds submit", "--config=deploy/cloudbuild.yaml"]);
    line(&[
        "run deploy lms-bridge",
        "--no-allow-unauthenticated",
        "--invoker-iam-check",
        "--service-account=lms-bridge-run@",
        "PUSH_AUTH=cloud-run",
        "PUSH_AUDIENCE=https://lms-bridge-PROJECT_NUMBER.europe-west1.run.app",
        "PUBSUB_SUBSCRIPTION=lms-bridge-push",
        "--set-secrets=TALENTLMS_API_KEY=talentlms-api-key:latest\\,PUSH_VERIFICATION_TOKEN=push-verification-token:latest\\,STUDENT_KEY_PEPPER=student-key-pepper:latest",
        &format!("--timeout={}s", PLAN.ack_deadline_seconds),
        "--max-instances=2",
    ]);
    line(&["run services get-iam-policy lms-bridge"]);
    // Complete settings at the first deploy: no second step patches the service.
    assert!(!plan.contains("run services update"), "{plan}");
    line(&[
        "scheduler jobs create http lms-bridge-sweep",
        "/tasks/sweep\\?token=\\<secret\\>",
        "--oidc-service-account-email=lms-bridge-push@",
        "--oidc-token-audience=https://lms-bridge-PROJECT_NUMBER.europe-west1.run.app ",
    ]);
    assert!(
        plan.contains("wrangler queues create lms-bridge-events")
            && plan.contains("wrangler secret put HOTMART_HOTTOK")
            && plan.contains("wrangler secret put STUDENT_KEY_PEPPER")
            && plan.contains("deploy/gcp.sh --edge-key")
    );

    // A re-run updates what exists (with the same settings: the_deploy_and_pubsub_setup_make_
    // the_same_pubsub_resources).
    let again = self::plan(&[], &[("PLAN_EXISTING", "true"), ("PROJECT_NUMBER", NUMBER)]);
    let commands = planned(&again);
    let push = command(&commands, &["subscriptions", "update", "lms-bridge-push"]);
    assert_eq!(flag(push, "--push-endpoint"), format!("{URL}/pubsub/push?token=<secret>"));
    command(&commands, &["subscriptions", "update", "lms-bridge-dead-letters"]);
    command(&commands, &["topics", "update", "lms-bridge-events"]);
    command(&commands, &["jobs", "update", "http", "lms-bridge-sweep"]);
}

/// The token Cloud Run hands the container after its IAM check: claims intact, signature
/// replaced.
fn cloud_run_token(audience: &str, email: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = json!({ "alg": "RS256", "kid": "k", "typ": "JWT" });
    let claims = json!({
        "iss": "https://accounts.google.com", "aud": audience, "email": email, "email_verified": true,
        "iat": now, "exp": now + 3600, "sub": "1",
    });
    format!("{}.{}.SIGNATURE_REMOVED_BY_GOOGLE", b64.encode(header.to_string()), b64.encode(claims.to_string()))
}

#[test]
fn the_cloud_run_settings_of_the_plan_start_the_backend_and_accept_its_own_tokens() {
    let commands = planned(&plan(&[], &[("PROJECT_NUMBER", NUMBER)]));
    let deploy = command(&commands, &["run", "deploy", "lms-bridge"]);
    let env = pairs(flag(deploy, "--set-env-vars"));
    let secrets = pairs(flag(deploy, "--set-secrets"));
    let values = BTreeMap::from([
        ("TALENTLMS_API_KEY", "test-talentlms-key"),
        ("PUSH_VERIFICATION_TOKEN", "test-verification-token"),
        ("STUDENT_KEY_PEPPER", "test-pepper"),
    ]);
    assert_eq!(secrets.keys().map(String::as_str).collect::<BTreeSet<_>>(), values.keys().copied().collect());

    // Exactly the service's environment; what Cloud Run adds (PORT) and the emulator.
    let firestore = Firestore::start();
    let port = free_port();
    let mut serve = Command::new(backend_bin());
    serve
        .arg("serve")
        .env_clear()
        .envs(&env)
        .envs(values.iter().map(|(k, v)| (*k, *v)))
        .env("PORT", port.to_string())
        .env("FIRESTORE_EMULATOR_HOST", &firestore.host);
    let mut service = Service::spawn("deploy-plan-backend", serve);
    let base = format!("http://127.0.0.1:{port}");
    let health = format!("{base}/healthz");
    service.wait_until(Duration::from_secs(60), || http_ok(&health));

    // Pub/Sub's token (the subscription's audience and account) and the scheduler's pass the
    // service's checks; another audience does not.
    let push = command(&commands, &["subscriptions", "create", "lms-bridge-push"]);
    let sweep = command(&commands, &["jobs", "create", "http"]);
    let client = reqwest::blocking::Client::new();
    let post = |path: &str, token: &str| {
        client
            .post(format!("{base}{path}?token={}", values["PUSH_VERIFICATION_TOKEN"]))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let push_token =
        cloud_run_token(flag(push, "--push-auth-token-audience"), flag(push, "--push-auth-service-account"));
    let status = post("/pubsub/push", &push_token);
    assert!(status != 401 && status != 403, "the push token was refused ({status}):\n{}", service.log_tail());
    let stranger = cloud_run_token("https://elsewhere.example", flag(push, "--push-auth-service-account"));
    assert_eq!(post("/pubsub/push", &stranger), 401);
    let sweep_token =
        cloud_run_token(flag(sweep, "--oidc-token-audience"), flag(sweep, "--oidc-service-account-email"));
    assert_eq!(post("/tasks/sweep", &sweep_token), 200, "{}", service.log_tail());
}

/// Runs each command through the real gcloud's command line: its own Python and modules,
/// `CreateCLI` + `Execute` as `gcloud.py` does, all commands in one process (a process per
/// command costs about a second of CPU each). Prints one JSON outcome per command.
const GCLOUD_BATCH: &str = r#"
import json, os, sys, tempfile
lib = os.path.join(sys.argv[1], 'lib')
sys.path.insert(0, lib)
sys.path.insert(0, os.path.join(lib, 'third_party'))
if 'google' in sys.modules:
    import google, importlib
    importlib.reload(google)
from googlecloudsdk import gcloud_main
cli = gcloud_main.CreateCLI([])
commands = json.load(sys.stdin)
out, err = os.dup(1), os.dup(2)
results = []
for argv in commands:
    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(capture.fileno(), 1); os.dup2(capture.fileno(), 2)
        code = 0
        try:
            cli.Execute(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:
            code = -1
            print('driver: ' + repr(e), file=sys.stderr)
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(out, 1); os.dup2(err, 2)
        capture.seek(0)
        results.append({'code': code, 'text': capture.read().decode('utf-8', 'replace')})
print(json.dumps(results))
"#;

/// gcloud's environment for the checks: a throw-away config (no account, no project), no
/// prompts, and no network (a proxy that is not there).
fn offline(command: &mut Command, config: &Path) {
    command
        .current_dir(repo_root())
        .env("CLOUDSDK_CONFIG", config)
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env_remove("CLOUDSDK_CORE_PROJECT")
        .env_remove("CLOUDSDK_CORE_ACCOUNT")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
}

/// (exit code, output) of the real gcloud on each command: batched in one process, or, if
/// this gcloud's internals do not allow that, one process per command.
fn gcloud_outcomes(commands: &[Vec<String>]) -> Vec<(i64, String)> {
    let gcloud = require("gcloud", "install Debian's google-cloud-cli");
    let config = scratch("gcloud-config");
    let mut info = Command::new(&gcloud);
    info.args(["info", "--format=value(basic.python_location,installation.sdk_root)"]);
    offline(&mut info, &config);
    let info = String::from_utf8(info.output().unwrap().stdout).unwrap();
    if let Some((python, root)) = info.trim().split_once('\t') {
        let mut batch = Command::new(python);
        batch.args(["-c", GCLOUD_BATCH, root]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        offline(&mut batch, &config);
        let mut child = batch.spawn().unwrap();
        let argv: Vec<&[String]> = commands.iter().map(|c| &c[1..]).collect();
        serde_json::to_writer(child.stdin.take().unwrap(), &argv).unwrap();
        let output = child.wait_with_output().unwrap();
        let results: Option<Vec<serde_json::Value>> = serde_json::from_slice(&output.stdout).ok();
        if let Some(results) = results.filter(|r| output.status.success() && r.len() == commands.len()) {
            let _ = std::fs::remove_dir_all(&config);
            return results
                .iter()
                .map(|r| (r["code"].as_i64().unwrap(), r["text"].as_str().unwrap().to_owned()))
                .collect();
        }
        eprintln!("batched gcloud failed, one process per command: {}", String::from_utf8_lossy(&output.stderr));
    }
    let _ = std::fs::remove_dir_all(&config);
    let queue = Mutex::new(commands.iter().enumerate().collect::<Vec<_>>());
    let outcomes = Mutex::new(vec![(0, String::new()); commands.len()]);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some((i, command)) = queue.lock().unwrap().pop() else { break };
                let config = scratch("gcloud-config");
                let mut run = Command::new(&gcloud);
                run.args(&command[1..]).stdin(Stdio::null());
                offline(&mut run, &config);
                let output = run.output().unwrap();
                let _ = std::fs::remove_dir_all(&config);
                let text =
                    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
                outcomes.lock().unwrap()[i] = (i64::from(output.status.code().unwrap_or(-1)), text);
            });
        }
    });
    outcomes.into_inner().unwrap()
}

/// The commands gcloud did not parse: anything but a stop for want of credentials.
fn parse_errors(commands: &[Vec<String>]) -> Vec<String> {
    commands
        .iter()
        .zip(gcloud_outcomes(commands))
        .filter(|(_, (code, text))| {
            let parsed = *code != 0
                && (text.contains("You do not currently have an active account selected")
                    || text.contains("gcloud auth login"));
            !parsed
        })
        .map(|(command, (code, text))| format!("{}\n  -> exit {code}: {}", command.join(" "), text.trim()))
        .collect()
}

#[test]
fn every_gcloud_command_passes_the_real_gcloud_parser() {
    let started = Instant::now();
    // A first run (with the edge key), a re-run, and what a real run calls (read commands
    // included), logged by a fake gcloud.
    let mut commands = planned(&plan(&["--edge-key"], &[("PROJECT_NUMBER", NUMBER)]));
    commands.extend(planned(&plan(&["--edge-key", "--max-instances", "3"], &[("PLAN_EXISTING", "true")])));
    let fake = FakeDeploy::new();
    let output = fake.run(&["--edge-key"], &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    commands.extend(fake.calls());
    // The Pub/Sub commands of another plan too: its values in every form the script writes.
    let copy = scratch("other-plan");
    let other = script_beside(&copy, &other_plan_text());
    for existing in ["false", "true"] {
        let output = dry_run_of(&other, &[], &[("PLAN_EXISTING", existing), ("PROJECT_NUMBER", NUMBER)]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let planned = planned(&String::from_utf8(output.stdout).unwrap());
        commands.extend(planned.into_iter().filter(|c| pubsub_resource(c).is_some()));
    }
    let _ = std::fs::remove_dir_all(&copy);
    let mut skipped = BTreeSet::new();
    let mut unique = BTreeSet::new();
    for command in commands {
        if command[0] == "gcloud" {
            unique.insert(command);
        } else {
            // wrangler: Cloudflare's CLI, no gcloud parser to ask (its flags are checked by
            // the edge tests' `wrangler deploy --dry-run`).
            skipped.insert(command[0].clone());
        }
    }
    assert_eq!(skipped, BTreeSet::from(["wrangler".to_owned()]), "unexpected non-gcloud commands");
    let unique: Vec<Vec<String>> = unique.into_iter().collect();
    assert!(unique.len() > 30, "only {} commands", unique.len());
    let errors = parse_errors(&unique);
    assert!(errors.is_empty(), "gcloud refused {} of {} commands:\n{}", errors.len(), unique.len(), errors.join("\n"));
    eprintln!("{} gcloud commands parsed in {:?}", unique.len(), started.elapsed());
}

#[test]
fn the_parser_check_catches_a_bad_flag_and_a_bad_value() {
    let commands = words(&[
        "gcloud --project=p --quiet pubsub subscriptions create s --topic=t --expiration-perod=never".to_owned(),
        "gcloud --project=p --quiet run deploy s --image=i --region=r --max-instances=two".to_owned(),
        "gcloud --project=p --quiet run deploy s --image=i --region=r --ingress=everyone".to_owned(),
        "gcloud --project=p --quiet pubsub topics create t --message-retention-duration=7d".to_owned(),
    ]);
    let errors = parse_errors(&commands);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors.iter().all(|e| !e.contains("topics create")));
}

#[test]
fn instances_times_the_pace_stay_within_the_portal_budget() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], u32);
    let cases: [Case; 5] = [
        (&[], &[], 2),
        (&["--max-instances", "3"], &[], 3),
        (&["--max-instances=7"], &[], 7),
        (&["--max-instances", "1"], &[("TALENTLMS_CALLS_PER_SECOND", "40")], 1),
        (&["--max-instances", "3"], &[("TALENTLMS_CALLS_PER_SECOND", "40")], 3),
    ];
    for (args, env, instances) in cases {
        let commands = planned(&plan(args, env));
        let deploy = command(&commands, &["run", "deploy", "lms-bridge"]);
        let max: u32 = flag(deploy, "--max-instances").parse().unwrap();
        let pace: u32 = pairs(flag(deploy, "--set-env-vars"))["TALENTLMS_MAX_CALLS_PER_SECOND"].parse().unwrap();
        assert_eq!(max, instances, "{args:?}");
        assert!((1..=35).contains(&pace), "{args:?}: pace {pace}");
        assert!(max * pace <= PORTAL_CALLS_PER_SECOND, "{args:?} {env:?}: {max} instances x {pace} calls/s");
    }
    // What cannot be shared is refused.
    for (args, env) in [
        (&["--max-instances", "0"][..], &[][..]),
        (&["--max-instances", "31"][..], &[][..]),
        (&["--max-instances", "many"][..], &[][..]),
        (&[][..], &[("TALENTLMS_CALLS_PER_SECOND", "50")][..]),
    ] {
        let output = dry_run(args, env);
        assert!(!output.status.success(), "{args:?} {env:?} was accepted");
        assert!(output.stdout.is_empty(), "{args:?}: planned before refusing");
    }
}

/// `deploy/gcp.sh` for real, against a fake gcloud and a fake wrangler: the fake logs every
/// call (bash-quoted) and answers what the script reads.
struct FakeDeploy {
    dir: PathBuf,
    /// The TMPDIR the script gets: empty before, must be empty after.
    tmp: PathBuf,
}

const FAKE_GCLOUD: &str = r#"#!/usr/bin/env bash
{ printf '%q ' gcloud "$@"; printf '\n'; } >> "$FAKE_DIR/calls"
args="$*"
if [ -n "${FAKE_FAIL_ON:-}" ] && [[ "$args" == *"$FAKE_FAIL_ON"* ]]; then echo "fake gcloud: failing on purpose" >&2; exit 1; fi
case "$args" in
  *"projects describe"*) echo "$FAKE_NUMBER" ;;
  *"run services describe"*) echo "$FAKE_RUN_URL" ;;
  *"run services get-iam-policy lms-bridge-admin "*) for m in ${FAKE_ADMIN_MEMBERS:-}; do echo "$m"; done ;;
  *"run services get-iam-policy"*) for m in ${FAKE_MEMBERS:-}; do echo "$m"; done ;;
  *"iap web get-iam-policy"*) for m in ${FAKE_IAP_MEMBERS:-}; do echo "$m"; done ;;
  *"secrets versions list"*) [ -n "${FAKE_NO_VERSIONS:-}" ] || echo "projects/p/secrets/s/versions/1" ;;
  *"secrets versions access"*push-verification-token*) printf %s "$FAKE_TOKEN" ;;
  *"secrets versions access"*) printf %s "an-older-api-key" ;;
  *"secrets versions add admin-csrf-key "*) cat >> "$FAKE_DIR/csrf-key" ;;
  *"secrets versions add"*) cat >/dev/null ;;
  *"keys create"*)
    prev=
    for a in "$@"; do
      if [ "$prev" = create ]; then
        printf '{"type":"service_account","private_key_id":"newkey1","private_key":"-----BEGIN PRIVATE KEY-----\\nfake\\n-----END PRIVATE KEY-----\\n"}' >"$a"
      fi
      prev=$a
    done ;;
  *"keys list"*) printf 'oldkey1\nnewkey1\n' ;;
  *" describe "*)
    # FAKE_EXISTING: everything exists already (a second run), as the first run left it.
    [ -n "${FAKE_EXISTING:-}" ] || exit 1
    case "$args" in
      *"value(topic)"*) echo "projects/$PROJECT/topics/lms-bridge-events" ;;
      *"value(enableMessageOrdering)"*) echo True ;;
    esac ;;
esac
exit 0
"#;

const FAKE_WRANGLER: &str = r#"#!/usr/bin/env bash
{ printf '%q ' wrangler "$@"; printf '\n'; } >> "$FAKE_DIR/calls"
grep -q '"private_key_id":"newkey1"' && echo stored >> "$FAKE_DIR/wrangler-got-key"
case "${FAKE_WRANGLER:-ok}" in
  fail) echo "wrangler: not logged in" >&2; exit 1 ;;
  term) kill -TERM "$PPID"; exit 0 ;;
esac
"#;

impl FakeDeploy {
    fn new() -> Self {
        let dir = scratch("fake");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        write_program(&dir.join("bin/gcloud"), FAKE_GCLOUD);
        write_program(&dir.join("bin/wrangler"), FAKE_WRANGLER);
        Self { dir, tmp }
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let _ = std::fs::remove_file(self.dir.join("calls"));
        let path = format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap());
        let mut command = Command::new(repo_root().join("deploy/gcp.sh"));
        command
            .args(args)
            .current_dir(repo_root())
            .env("PATH", path)
            .env("TMPDIR", &self.tmp)
            .env("WRANGLER", self.dir.join("bin/wrangler"))
            .env("FAKE_DIR", &self.dir)
            .env("FAKE_NUMBER", NUMBER)
            .env("FAKE_RUN_URL", URL)
            .env("FAKE_TOKEN", TOKEN)
            .env("FAKE_MEMBERS", format!("serviceAccount:lms-bridge-push@{PROJECT}.iam.gserviceaccount.com"))
            .env("PROJECT", PROJECT)
            .env("REGION", REGION)
            .env("TALENTLMS_URL", "https://acme.talentlms.com")
            .env("TALENTLMS_API_KEY", API_KEY)
            .stdin(Stdio::null());
        for name in SCRIPT_SETTINGS.iter().filter(|n| **n != "WRANGLER").chain(&[
            "FAKE_FAIL_ON",
            "FAKE_ADMIN_MEMBERS",
            "FAKE_IAP_MEMBERS",
            "FAKE_NO_VERSIONS",
            "FAKE_EXISTING",
        ]) {
            command.env_remove(name);
        }
        command.env("ADMIN_OPERATORS", OPERATORS).env("ADMIN_VIEWERS", VIEWERS);
        command.envs(env.iter().copied());
        command.output().unwrap()
    }

    /// The calls of the last run, as words.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.dir.join("calls")).unwrap_or_default();
        words(&text.lines().map(str::to_owned).collect::<Vec<_>>())
    }

    fn called(&self, needles: &[&str]) -> bool {
        self.calls().iter().any(|c| needles.iter().all(|n| c.iter().any(|w| w.contains(n))))
    }

    /// What is left in the script's TMPDIR.
    fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.tmp).unwrap().map(|e| e.unwrap().path()).collect()
    }
}

impl Drop for FakeDeploy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn a_real_run_deploys_complete_settings_once_and_checks_the_url() {
    let fake = FakeDeploy::new();
    let output = fake.run(&[], &[]);
    assert!(output.status.success(), "{}", text(&output));
    let calls = fake.calls();
    let deploys: Vec<&Vec<String>> =
        calls.iter().filter(|c| c.get(3..5) == Some(&["run".into(), "deploy".into()])).collect();
    assert_eq!(deploys.len(), 1, "{calls:?}");
    let env = pairs(flag(deploys[0], "--set-env-vars"));
    assert_eq!(env["PUSH_AUDIENCE"], URL);
    assert_eq!(env["PUBSUB_SUBSCRIPTION"], "lms-bridge-push");
    assert!(!fake.called(&["run", "services", "update"]));
    // The token reaches the push endpoint and the sweep URL (and only gcloud sees it).
    let push = command(&calls, &["subscriptions", "create", "lms-bridge-push"]);
    assert_eq!(flag(push, "--push-endpoint"), format!("{URL}/pubsub/push?token={TOKEN}"));
    assert_eq!(flag(push, "--push-auth-token-audience"), URL);
    assert_eq!(flag(command(&calls, &["jobs", "create", "http"]), "--uri"), format!("{URL}/tasks/sweep?token={TOKEN}"));

    // A service whose URL is not the computed one stops the run before Pub/Sub is pointed at it.
    let output = fake.run(&[], &[("FAKE_RUN_URL", "https://lms-bridge-abcdef-ew.a.run.app")]);
    assert!(!output.status.success());
    assert!(text(&output).contains("not https://lms-bridge-123456789012.europe-west1.run.app"), "{}", text(&output));
    assert!(!fake.called(&["pubsub", "subscriptions", "create"]));
}

#[test]
fn a_public_service_stops_the_deploy() {
    let fake = FakeDeploy::new();
    for public in ["allUsers", "allAuthenticatedUsers"] {
        let members = format!("serviceAccount:lms-bridge-push@{PROJECT}.iam.gserviceaccount.com {public}");
        let output = fake.run(&[], &[("FAKE_MEMBERS", &members)]);
        assert!(!output.status.success(), "a public service was accepted");
        let said = text(&output);
        assert!(said.contains("DANGER") && said.contains("is public"), "{said}");
        assert!(fake.called(&["run", "services", "get-iam-policy"]));
        assert!(!fake.called(&["pubsub", "subscriptions", "create"]), "Pub/Sub was pointed at a public service");
    }
}

#[test]
fn no_secret_is_ever_printed() {
    // The plan shows where the secrets go, never what they are.
    for args in [&[][..], &["--edge-key"][..]] {
        for existing in ["false", "true"] {
            let plan = plan(args, &[("PLAN_EXISTING", existing)]);
            assert!(!plan.contains(API_KEY), "the API key leaked into the plan");
            assert!(plan.contains("/pubsub/push\\?token=\\<secret\\>"), "{plan}");
            assert!(plan.contains("/tasks/sweep\\?token=\\<secret\\>"), "{plan}");
        }
    }
    // Nor does a real run, failing or not.
    let fake = FakeDeploy::new();
    for env in [&[][..], &[("FAKE_FAIL_ON", "scheduler jobs")][..], &[("FAKE_WRANGLER", "fail")][..]] {
        let output = fake.run(&["--edge-key"], env);
        let said = text(&output);
        for secret in [API_KEY, TOKEN, "PRIVATE KEY"] {
            assert!(!said.contains(secret), "{env:?}: {secret} printed:\n{said}");
        }
    }
}

#[test]
fn the_edge_key_file_is_removed_on_every_exit_path() {
    let fake = FakeDeploy::new();

    // Success: the key reaches the Worker, the older key goes, the file goes.
    let output = fake.run(&["--edge-key"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(fake.dir.join("wrangler-got-key").exists(), "wrangler did not get the key");
    assert!(fake.called(&["keys", "delete", "oldkey1"]));
    assert!(!fake.called(&["keys", "delete", "newkey1"]));
    assert_eq!(fake.leftovers(), Vec::<PathBuf>::new());

    // wrangler fails; interrupted (TERM) while storing; gcloud fails after the key was stored.
    for (env, deletes_new_key) in [
        (&[("FAKE_WRANGLER", "fail")][..], true),
        (&[("FAKE_WRANGLER", "term")][..], true),
        (&[("FAKE_FAIL_ON", "keys list")][..], false),
    ] {
        let output = fake.run(&["--edge-key"], env);
        assert!(!output.status.success(), "{env:?}: {}", text(&output));
        assert!(fake.called(&["keys", "create"]), "{env:?}: no key was made");
        assert_eq!(fake.leftovers(), Vec::<PathBuf>::new(), "{env:?}: the key file was left behind");
        // A key the Worker never got is deleted again; one it holds is kept.
        assert_eq!(fake.called(&["keys", "delete", "newkey1"]), deletes_new_key, "{env:?}");
    }
}

#[test]
fn the_index_file_covers_the_sweep_query_and_the_dockerfile_runs_pinned_and_as_non_root() {
    let root = repo_root();
    let indexes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/firestore.indexes.json")).unwrap()).unwrap();
    let sweep = indexes["indexes"].as_array().unwrap().iter().find(|i| i["collectionGroup"] == "enrollments").unwrap();
    let fields: Vec<&str> =
        sweep["fields"].as_array().unwrap().iter().map(|f| f["fieldPath"].as_str().unwrap()).collect();
    assert_eq!(fields, ["access", "access_until"]);
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage");
    for from in froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let (tag, digest) = image.split_once("@sha256:").unwrap_or_else(|| panic!("{image} is not pinned by digest"));
        assert!(tag.contains(':') && !tag.ends_with(":latest"), "{image}: name the tag too");
        assert!(digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{image}");
    }
    assert!(dockerfile.contains("USER nonroot") && dockerfile.contains("ENV PORT=8080"));
}

#[test]
fn keys_and_build_output_stay_out_of_git_images_and_uploads() {
    let root = repo_root();
    // A copy of the ignore files over a tree with every kind of file.
    let tree = scratch("ignore");
    for file in [".gitignore", ".dockerignore", ".gcloudignore"] {
        std::fs::copy(root.join(file), tree.join(file)).unwrap();
    }
    let secret = ["edge-key.json", "deploy/sa_key.json", "key.json", ".dev.vars", "deploy/tls.pem", "a.p12", ".env"];
    let built = ["target/debug/lms-bridge", "node_modules/wrangler/package.json", "edge/build/worker/shim.mjs"];
    let kept = [
        "package.json",
        "deploy/firestore.indexes.json",
        // The backend compiles it in (include_str!): Cloud Build and docker build need it.
        "deploy/pubsub.env",
        "tests/fixtures/hotmart/purchase_approved.json",
        "backend/src/main.rs",
        "Cargo.lock",
    ];
    for file in secret.iter().chain(&built).chain(&kept) {
        let path = tree.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    // git
    assert!(Command::new("git").args(["init", "-q"]).current_dir(&tree).status().unwrap().success());
    let ignored = |file: &str| {
        Command::new("git").args(["check-ignore", "-q", file]).current_dir(&tree).status().unwrap().success()
    };
    for file in secret.iter().chain(&built) {
        assert!(ignored(file), "git would take {file}");
    }
    for file in kept {
        assert!(!ignored(file), "git would leave out {file}");
    }
    // gcloud builds submit's upload
    let gcloud = require("gcloud", "install Debian's google-cloud-cli");
    let config = scratch("gcloud-config");
    let upload = Command::new(gcloud)
        .args(["meta", "list-files-for-upload", "."])
        .current_dir(&tree)
        .env("CLOUDSDK_CONFIG", &config)
        .output()
        .unwrap();
    assert!(upload.status.success(), "{}", String::from_utf8_lossy(&upload.stderr));
    let uploaded: BTreeSet<String> = String::from_utf8(upload.stdout).unwrap().lines().map(str::to_owned).collect();
    for file in secret.iter().chain(&built) {
        assert!(!uploaded.contains(*file), "gcloud would upload {file}");
    }
    for file in kept.iter().chain(&[".dockerignore"]) {
        assert!(uploaded.contains(*file), "gcloud would not upload {file}: {uploaded:?}");
    }
    // docker build's context (no docker here: the patterns themselves)
    let dockerignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    let patterns: BTreeSet<&str> = dockerignore.lines().filter(|l| !l.starts_with('#')).collect();
    for pattern in
        ["target", "node_modules", "edge/build", ".git", "**/*.pem", "**/.dev.vars", "**/*-key.json", "**/key.json"]
    {
        assert!(patterns.contains(pattern), ".dockerignore lacks {pattern}");
    }
    let _ = std::fs::remove_dir_all(&tree);
    let _ = std::fs::remove_dir_all(&config);
}

#[test]
fn a_dry_run_without_a_project_stops_with_one_line() {
    let output =
        Command::new(repo_root().join("deploy/gcp.sh")).arg("--dry-run").env_remove("PROJECT").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("set PROJECT"));
}

/// A gcloud duration (`600s`, `7d`) as the REST API writes it (`600s`).
fn rest_duration(value: &str) -> String {
    let (number, unit) = value.split_at(value.len() - 1);
    let number: i64 = number.parse().unwrap_or_else(|_| panic!("not a duration: {value}"));
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => panic!("not a duration: {value}"),
    };
    format!("{seconds}s")
}

/// Sets `path` (nested field names) of a JSON object.
fn put(resource: &mut serde_json::Value, path: &[&str], value: serde_json::Value) {
    let (last, parents) = path.split_last().unwrap();
    let mut at = resource;
    for name in parents {
        at = at.as_object_mut().unwrap().entry(*name).or_insert_with(|| json!({}));
    }
    at.as_object_mut().unwrap().insert((*last).to_owned(), value);
}

/// What a `gcloud … pubsub topics|subscriptions create|update NAME FLAGS` asks for: the resource
/// path (`topics/NAME`), the verb, and the REST resource its flags set, as Pub/Sub reads it back.
/// A flag without a translation fails: a new Pub/Sub flag of the script must say what it sets.
fn pubsub_resource(command: &[String]) -> Option<(String, String, serde_json::Value)> {
    let at = command.iter().position(|w| w == "pubsub")?;
    let [kind, verb, name] = [&command[at + 1], &command[at + 2], &command[at + 3]];
    if !["topics", "subscriptions"].contains(&kind.as_str()) || !["create", "update"].contains(&verb.as_str()) {
        return None;
    }
    let topic = |name: &str| json!(format!("projects/{PROJECT}/topics/{name}"));
    let mut resource = json!({ "name": format!("projects/{PROJECT}/{kind}/{name}") });
    for word in &command[at + 4..] {
        let (flag, value) = word.split_once('=').unwrap_or((word, ""));
        let (path, value): (&[&str], _) = match (kind.as_str(), flag) {
            (_, "--message-retention-duration") => (&["messageRetentionDuration"], json!(rest_duration(value))),
            (_, "--format") => continue,
            ("subscriptions", "--topic") => (&["topic"], topic(value)),
            ("subscriptions", "--enable-message-ordering") => (&["enableMessageOrdering"], json!(true)),
            ("subscriptions", "--push-endpoint") => (&["pushConfig", "pushEndpoint"], json!(value)),
            ("subscriptions", "--push-auth-service-account") => {
                (&["pushConfig", "oidcToken", "serviceAccountEmail"], json!(value))
            }
            ("subscriptions", "--push-auth-token-audience") => (&["pushConfig", "oidcToken", "audience"], json!(value)),
            ("subscriptions", "--ack-deadline") => (&["ackDeadlineSeconds"], json!(value.parse::<i64>().unwrap())),
            ("subscriptions", "--min-retry-delay") => (&["retryPolicy", "minimumBackoff"], json!(rest_duration(value))),
            ("subscriptions", "--max-retry-delay") => (&["retryPolicy", "maximumBackoff"], json!(rest_duration(value))),
            ("subscriptions", "--dead-letter-topic") => (&["deadLetterPolicy", "deadLetterTopic"], topic(value)),
            ("subscriptions", "--max-delivery-attempts") => {
                (&["deadLetterPolicy", "maxDeliveryAttempts"], json!(value.parse::<i64>().unwrap()))
            }
            // A policy without a ttl never expires.
            ("subscriptions", "--expiration-period") if value == "never" => (&["expirationPolicy"], json!({})),
            ("subscriptions", "--expiration-period") => (&["expirationPolicy"], json!({ "ttl": rest_duration(value) })),
            _ => panic!("{word}: what does it set? (pubsub_resource has no translation): {command:?}"),
        };
        put(&mut resource, path, value);
    }
    Some((format!("{kind}/{name}"), verb.clone(), resource))
}

/// The Pub/Sub resources a list of commands creates (or updates: `verb`), by path.
fn resources(commands: &[Vec<String>], verb: &str) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (path, v, resource) in commands.iter().filter_map(|c| pubsub_resource(c)) {
        if v == verb {
            assert!(out.insert(path.clone(), resource).is_none(), "{path}: {verb} twice");
        }
    }
    out
}

fn created(commands: &[Vec<String>]) -> BTreeMap<String, serde_json::Value> {
    resources(commands, "create")
}

/// What a re-run must bring existing resources to: all but what Pub/Sub fixes at creation
/// (a subscription's topic and ordering); the dead-letter topic has nothing to update.
fn as_updated(mut created: BTreeMap<String, serde_json::Value>, plan: &Plan) -> BTreeMap<String, serde_json::Value> {
    created.remove(&format!("topics/{}", plan.dead_letter_topic));
    for resource in created.values_mut() {
        for fixed in ["topic", "enableMessageOrdering"] {
            resource.as_object_mut().unwrap().remove(fixed);
        }
    }
    created
}

/// The resources a plan stands for, push endpoint and token aside (not part of it).
fn resources_of(plan: &Plan) -> BTreeMap<String, serde_json::Value> {
    let topic = |name: &str| format!("projects/{PROJECT}/topics/{name}");
    let expiration = match plan.expiration {
        Expiration::Never => json!({}),
        Expiration::IdleSeconds(ttl) => json!({ "ttl": format!("{ttl}s") }),
    };
    BTreeMap::from([
        (
            format!("topics/{}", plan.topic),
            json!({ "name": topic(plan.topic), "messageRetentionDuration": format!("{}s", plan.topic_retention_seconds) }),
        ),
        (format!("topics/{}", plan.dead_letter_topic), json!({ "name": topic(plan.dead_letter_topic) })),
        (
            format!("subscriptions/{}", plan.subscription),
            json!({
                "name": format!("projects/{PROJECT}/subscriptions/{}", plan.subscription),
                "topic": topic(plan.topic),
                // Not a setting: the backend's per-student order depends on it.
                "enableMessageOrdering": true,
                "ackDeadlineSeconds": plan.ack_deadline_seconds,
                "messageRetentionDuration": format!("{}s", plan.message_retention_seconds),
                "retryPolicy": {
                    "minimumBackoff": format!("{}s", plan.min_retry_delay_seconds),
                    "maximumBackoff": format!("{}s", plan.max_retry_delay_seconds),
                },
                "deadLetterPolicy": {
                    "deadLetterTopic": topic(plan.dead_letter_topic),
                    "maxDeliveryAttempts": plan.max_delivery_attempts,
                },
                "expirationPolicy": expiration,
            }),
        ),
        (
            format!("subscriptions/{}", plan.dead_letter_subscription),
            json!({
                "name": format!("projects/{PROJECT}/subscriptions/{}", plan.dead_letter_subscription),
                "topic": topic(plan.dead_letter_topic),
                "ackDeadlineSeconds": plan.ack_deadline_seconds,
                "messageRetentionDuration": format!("{}s", plan.message_retention_seconds),
                "expirationPolicy": expiration,
            }),
        ),
    ])
}

/// Without the push endpoint and token (the deploy's, not the plan's).
fn without_push_config(mut resources: BTreeMap<String, serde_json::Value>) -> BTreeMap<String, serde_json::Value> {
    for resource in resources.values_mut() {
        resource.as_object_mut().unwrap().remove("pushConfig");
    }
    resources
}

/// Another plan: every value of `deploy/pubsub.env` changed, valid for Pub/Sub.
const OTHER_PLAN: [(&str, &str); 11] = [
    ("PUBSUB_TOPIC", "other-events"),
    ("PUBSUB_SUBSCRIPTION", "other-push"),
    ("PUBSUB_DEAD_LETTER_TOPIC", "other-dead-letters"),
    ("PUBSUB_DEAD_LETTER_SUBSCRIPTION", "other-dead-letter-pull"),
    ("PUBSUB_ACK_DEADLINE_SECONDS", "37"),
    ("PUBSUB_MIN_RETRY_DELAY_SECONDS", "13"),
    ("PUBSUB_MAX_RETRY_DELAY_SECONDS", "599"),
    ("PUBSUB_MAX_DELIVERY_ATTEMPTS", "7"),
    ("PUBSUB_MESSAGE_RETENTION_SECONDS", "3601"),
    ("PUBSUB_TOPIC_RETENTION_SECONDS", "1209601"),
    ("PUBSUB_SUBSCRIPTION_EXPIRATION", "2678401"),
];

/// `deploy/pubsub.env` with `OTHER_PLAN`'s values (comments kept), checked to change every key.
fn other_plan_text() -> String {
    let other = BTreeMap::from(OTHER_PLAN);
    let mut text = String::new();
    let mut keys = BTreeSet::new();
    for line in PLAN_FILE.lines() {
        match line.split_once('=') {
            Some((key, value)) if !line.starts_with('#') => {
                let new = other.get(key).unwrap_or_else(|| panic!("{key}: give it another value in OTHER_PLAN"));
                assert_ne!(value, *new, "{key}: OTHER_PLAN's value must differ from the plan's");
                keys.insert(key);
                text.push_str(&format!("{key}={new}\n"));
            }
            _ => text.push_str(&format!("{line}\n")),
        }
    }
    assert_eq!(keys, other.keys().copied().collect());
    text
}

/// A copy of `deploy/gcp.sh` beside a `pubsub.env` of `text`: the script (in DIR/deploy).
fn script_beside(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("deploy")).unwrap();
    std::fs::copy(repo_root().join("deploy/gcp.sh"), dir.join("deploy/gcp.sh")).unwrap();
    std::fs::write(dir.join("deploy/pubsub.env"), text).unwrap();
    dir.join("deploy/gcp.sh")
}

#[test]
fn every_pubsub_value_of_the_deploy_comes_from_deploy_pubsub_env() {
    // The script beside another plan: a value the script wrote itself (hard-coded, or a default
    // of its own) would still show the old one.
    let other = BTreeMap::from(OTHER_PLAN);
    let text = other_plan_text();
    let other_plan = Plan::parse(String::leak(text.clone())).unwrap();
    let copy = scratch("other-plan");
    let script = script_beside(&copy, &text);
    for existing in ["false", "true"] {
        let output = dry_run_of(&script, &[], &[("PLAN_EXISTING", existing), ("PROJECT_NUMBER", NUMBER)]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let commands = planned(&String::from_utf8(output.stdout).unwrap());
        if existing == "false" {
            let (made, want) = (without_push_config(created(&commands)), resources_of(&other_plan));
            assert_eq!(made, want, "gcp.sh does not take every value from deploy/pubsub.env");
        } else {
            let want = as_updated(resources_of(&other_plan), &other_plan);
            let made = without_push_config(resources(&commands, "update"));
            assert_eq!(made, want, "gcp.sh does not take every value from deploy/pubsub.env (re-run)");
        }
        // What the plan names elsewhere: the service's subscription, the edge's topic, the
        // Pub/Sub agent's bindings, and Cloud Run's timeout (the ack deadline).
        let deploy = command(&commands, &["run", "deploy", "lms-bridge"]);
        assert_eq!(pairs(flag(deploy, "--set-env-vars"))["PUBSUB_SUBSCRIPTION"], other["PUBSUB_SUBSCRIPTION"]);
        assert_eq!(flag(deploy, "--timeout"), format!("{}s", other["PUBSUB_ACK_DEADLINE_SECONDS"]));
        for account in [format!("lms-bridge-edge@{PROJECT}"), format!("lms-bridge-admin@{PROJECT}")] {
            let member = format!("--member=serviceAccount:{account}.iam.gserviceaccount.com");
            command(&commands, &["topics", "add-iam-policy-binding", other["PUBSUB_TOPIC"], &member]);
        }
        command(&commands, &["topics", "add-iam-policy-binding", other["PUBSUB_DEAD_LETTER_TOPIC"]]);
        command(&commands, &["subscriptions", "add-iam-policy-binding", other["PUBSUB_SUBSCRIPTION"]]);
        // Updates too (the push endpoint names the service, not the plan).
        for (path, _, mut resource) in commands.iter().filter_map(|c| pubsub_resource(c)) {
            resource.as_object_mut().unwrap().remove("pushConfig");
            assert!(!format!("{path} {resource}").contains("lms-bridge"), "{path}: not from the plan: {resource}");
        }
    }

    // A line bash would run as a command stops the script before anything is planned.
    std::fs::write(copy.join("deploy/pubsub.env"), format!("{text}PUBSUB_TOPIC=$(false)\n")).unwrap();
    let output = dry_run_of(&script, &[], &[]);
    assert!(!output.status.success() && output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not KEY=value"));
    let _ = std::fs::remove_dir_all(&copy);
}

#[test]
fn the_deploy_and_pubsub_setup_make_the_same_pubsub_resources() {
    // What deploy/gcp.sh runs (a real run, against the fake gcloud: the push endpoint with its
    // real token), resource by resource.
    let fake = FakeDeploy::new();
    let output = fake.run(&[], &[]);
    assert!(output.status.success(), "{}", text(&output));
    let deploy = created(&fake.calls());
    assert_eq!(without_push_config(deploy.clone()), resources_of(&PLAN), "the deploy is not the plan");

    // A re-run brings what exists to the same settings, all but those fixed at creation.
    let first = created(&planned(&plan(&[], &[("PROJECT_NUMBER", NUMBER)])));
    let rerun = planned(&plan(&[], &[("PLAN_EXISTING", "true"), ("PROJECT_NUMBER", NUMBER)]));
    assert_eq!(
        resources(&rerun, "update"),
        as_updated(first, &PLAN),
        "the re-run sets other values than the first run"
    );

    // `lms-bridge pubsub setup` with the deploy's endpoint and token settings and nothing else:
    // its defaults are the plan.
    let push = &deploy[&format!("subscriptions/{}", PLAN.subscription)]["pushConfig"];
    let emulator = Emulator::start();
    let mut setup = Command::new(backend_bin());
    setup
        .args(["pubsub", "setup", "--gcp-project", PROJECT, "--pubsub-emulator-host", &emulator.host])
        .args(["--push-endpoint", push["pushEndpoint"].as_str().unwrap()])
        .args(["--push-service-account", push["oidcToken"]["serviceAccountEmail"].as_str().unwrap()])
        .args(["--push-audience", push["oidcToken"]["audience"].as_str().unwrap()]);
    for name in [
        "PUBSUB_TOPIC",
        "PUBSUB_SUBSCRIPTION",
        "PUBSUB_DEAD_LETTER_TOPIC",
        "PUBSUB_DEAD_LETTER_SUBSCRIPTION",
        "PUSH_ENDPOINT",
        "PUSH_SERVICE_ACCOUNT",
        "PUSH_AUDIENCE",
        "GCP_PROJECT",
    ] {
        setup.env_remove(name);
    }
    let output = setup.output().unwrap();
    assert!(output.status.success(), "pubsub setup failed: {}", String::from_utf8_lossy(&output.stderr));

    // Everything the emulator holds, read back over REST (not the client the command uses).
    let mut made = BTreeMap::new();
    for kind in ["topics", "subscriptions"] {
        let url = format!("http://{}/v1/projects/{PROJECT}/{kind}", emulator.host);
        let list: serde_json::Value = reqwest::blocking::get(url).unwrap().json().unwrap();
        for resource in list[kind].as_array().unwrap() {
            let mut resource = resource.clone();
            // A pull subscription reads back with an empty push config.
            if resource.get("pushConfig") == Some(&json!({})) {
                resource.as_object_mut().unwrap().remove("pushConfig");
            }
            let name = resource["name"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            made.insert(format!("{kind}/{name}"), resource);
        }
    }
    assert_eq!(made, deploy, "pubsub setup and deploy/gcp.sh made different resources");
}

#[test]
fn the_operations_guide_lists_the_pubsub_plan_as_it_is() {
    let guide = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let rows: Vec<&str> = guide.lines().filter(|l| l.starts_with("| `PUBSUB_")).collect();
    let mut keys = 0;
    for line in PLAN_FILE.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (key, value) = line.split_once('=').unwrap();
        let row = format!("| `{key}` | `{value}` |");
        assert!(rows.iter().any(|r| r.starts_with(&row)), "docs/operations.md has no row {row}: {rows:#?}");
        keys += 1;
    }
    assert_eq!(rows.len(), keys, "a row for a key deploy/pubsub.env does not have: {rows:#?}");
}

#[test]
fn hotmart_api_credentials_turn_on_the_hourly_reconcile_and_never_show() {
    const CLIENT_SECRET: &str = "hotmart-secret-DO-NOT-SHOW";
    let hotmart = [("HOTMART_CLIENT_ID", "hotmart-client-1"), ("HOTMART_CLIENT_SECRET", CLIENT_SECRET)];
    // Without them: no reconcile, no Hotmart secret.
    let plain = plan(&[], &[]);
    assert!(!plain.contains("lms-bridge-reconcile") && !plain.contains("hotmart-client"), "{plain}");

    let with = plan(&[], &hotmart);
    assert!(!with.contains(CLIENT_SECRET) && !with.contains("hotmart-client-1"), "a credential leaked:\n{with}");
    let commands = planned(&with);
    for secret in ["hotmart-client-id", "hotmart-client-secret"] {
        command(&commands, &["secrets", "create", secret]);
        command(&commands, &["secrets", "add-iam-policy-binding", secret]);
    }
    let deploy = command(&commands, &["run", "deploy", "lms-bridge"]);
    let secrets = pairs(flag(deploy, "--set-secrets"));
    assert_eq!(secrets["HOTMART_CLIENT_ID"], "hotmart-client-id:latest");
    assert_eq!(secrets["HOTMART_CLIENT_SECRET"], "hotmart-client-secret:latest");
    assert_eq!(pairs(flag(deploy, "--set-env-vars"))["PUBSUB_TOPIC"], PLAN.topic);
    let publishers: Vec<&Vec<String>> = commands
        .iter()
        .filter(|c| c.iter().any(|w| w == "lms-bridge-events") && c.iter().any(|w| w == "add-iam-policy-binding"))
        .collect();
    assert!(
        publishers
            .iter()
            .any(|c| flag(c, "--member").contains("lms-bridge-run@") && flag(c, "--role") == "roles/pubsub.publisher"),
        "the backend may not publish: {publishers:?}"
    );
    let job = command(&commands, &["scheduler", "jobs", "create", "http", "lms-bridge-reconcile"]);
    assert_eq!(flag(job, "--uri"), format!("{}/tasks/reconcile?token=<secret>", dry_run_url()));
    assert_eq!(flag(job, "--schedule"), "0 * * * *");

    // One without the other is refused, naming both.
    let output = dry_run(&[], &hotmart[..1]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("HOTMART_CLIENT_ID and HOTMART_CLIENT_SECRET"), "{said}");

    // A real run stores them through stdin only, and schedules the reconcile with the token.
    let fake = FakeDeploy::new();
    let output = fake.run(&[], &hotmart);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(CLIENT_SECRET));
    let calls = fake.calls();
    assert!(calls.iter().all(|c| !c.iter().any(|w| w.contains(CLIENT_SECRET))), "a credential in an argument");
    let job = command(&calls, &["jobs", "create", "http", "lms-bridge-reconcile"]);
    assert_eq!(flag(job, "--uri"), format!("{URL}/tasks/reconcile?token={TOKEN}"));
}

#[test]
fn a_stripe_key_becomes_a_backend_secret_and_never_shows() {
    const KEY: &str = "rk_live_stripe-key-DO-NOT-SHOW";
    let plain = plan(&[], &[]);
    assert!(!plain.contains("stripe-api-key") && !plain.contains("STRIPE_API_KEY="), "{plain}");

    let with = plan(&[], &[("STRIPE_API_KEY", KEY)]);
    assert!(!with.contains(KEY), "the key leaked:\n{with}");
    let commands = planned(&with);
    command(&commands, &["secrets", "create", "stripe-api-key"]);
    let binding = command(&commands, &["secrets", "add-iam-policy-binding", "stripe-api-key"]);
    assert!(flag(binding, "--member").contains("lms-bridge-run@"), "{binding:?}");
    let deploy = command(&commands, &["run", "deploy", "lms-bridge"]);
    assert_eq!(pairs(flag(deploy, "--set-secrets"))["STRIPE_API_KEY"], "stripe-api-key:latest");

    // A real run hands it to Secret Manager on stdin, never in an argument.
    let fake = FakeDeploy::new();
    let output = fake.run(&[], &[("STRIPE_API_KEY", KEY)]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(KEY));
    assert!(fake.calls().iter().all(|c| !c.iter().any(|w| w.contains(KEY))), "the key in an argument");
}

#[test]
fn lms_moodle_deploys_the_moodle_settings_and_keeps_its_token_secret() {
    const TOKEN: &str = "moodle-token-DO-NOT-SHOW";
    let moodle = [("LMS", "moodle"), ("MOODLE_URL", "https://school.example/moodle"), ("MOODLE_TOKEN", TOKEN)];
    let plan_text = plan(&[], &moodle);
    assert!(!plan_text.contains(TOKEN), "the token leaked:\n{plan_text}");
    let commands = planned(&plan_text);
    command(&commands, &["secrets", "create", "moodle-token"]);
    let binding = command(&commands, &["secrets", "add-iam-policy-binding", "moodle-token"]);
    assert!(flag(binding, "--member").contains("lms-bridge-run@"), "{binding:?}");
    let deploy = command(&commands, &["run", "deploy", "lms-bridge"]);
    let env = pairs(flag(deploy, "--set-env-vars"));
    assert_eq!(env["LMS"], "moodle");
    assert_eq!(env["MOODLE_URL"], "https://school.example/moodle");
    // 20 calls/s in all, shared by the default 2 instances.
    assert_eq!(env["MOODLE_MAX_CALLS_PER_SECOND"], "10");
    assert!(!env.contains_key("TALENTLMS_URL"), "{env:?}");
    let secrets = pairs(flag(deploy, "--set-secrets"));
    assert_eq!(secrets["MOODLE_TOKEN"], "moodle-token:latest");
    assert!(!secrets.contains_key("TALENTLMS_API_KEY"), "{secrets:?}");
    assert!(
        !commands.iter().any(|c| c.iter().any(|w| w == "talentlms-api-key")),
        "a Moodle deploy touches the TalentLMS secret"
    );

    // Without the site, or with another LMS, it stops and says what to set.
    let output = dry_run(&[], &[("LMS", "moodle")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("MOODLE_URL"));
    let output = dry_run(&[], &[("LMS", "canvas")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("LMS must be talentlms or moodle"));

    // A real run hands the token to Secret Manager on stdin only.
    let fake = FakeDeploy::new();
    let output = fake.run(&[], &moodle);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(TOKEN));
    assert!(fake.calls().iter().all(|c| !c.iter().any(|w| w.contains(TOKEN))), "the token in an argument");
}

/// The service URL a dry run computes (the project number is a placeholder there).
fn dry_run_url() -> String {
    format!("https://lms-bridge-PROJECT_NUMBER.{REGION}.run.app")
}

/// A gcloud dictionary flag's value: `K=V,K=V`, or with another delimiter, `^;^K=V;K=V` (what
/// values holding commas need; `gcloud topic escaping`).
fn gcloud_dict(value: &str) -> BTreeMap<String, String> {
    let (delimiter, items) = match value.strip_prefix('^').and_then(|v| v.split_once('^')) {
        Some((delimiter, items)) => (delimiter, items),
        None => (",", value),
    };
    items.split(delimiter).map(|p| p.split_once('=').unwrap()).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// The admin console's deploy in a list of commands (exactly one).
fn admin_deploy(commands: &[Vec<String>]) -> &Vec<String> {
    command(commands, &["beta", "run", "deploy", "lms-bridge-admin"])
}

/// Every grant to the admin console's account: (what, on which resource, which role); and
/// every other command that names the account, which must be only its creation and the deploy.
fn admin_grants(commands: &[Vec<String>]) -> BTreeSet<(String, String, String)> {
    let mut grants = BTreeSet::new();
    for c in commands.iter().filter(|c| c.iter().any(|w| w.contains("lms-bridge-admin@"))) {
        let at = c.iter().position(|w| w == "add-iam-policy-binding");
        match at {
            Some(at) => {
                assert_eq!(flag(c, "--member"), format!("serviceAccount:{ADMIN_SA}"), "{c:?}");
                let what = c[3..at].join(" ");
                grants.insert((what, c[at + 1].clone(), flag(c, "--role").to_owned()));
            }
            // What a real run reads (`iam service-accounts describe`) grants nothing.
            None if c.iter().any(|w| w == "describe") => {}
            None => assert!(
                c.get(3..6) == Some(&["beta".into(), "run".into(), "deploy".into()])
                    && c[6] == "lms-bridge-admin"
                    && flag(c, "--service-account") == ADMIN_SA,
                "a command names the admin account and is neither a grant nor its deploy: {c:?}"
            ),
        }
    }
    grants
}

/// The roles of the admin console's account, all of them.
fn admin_roles() -> BTreeSet<(String, String, String)> {
    [
        ("projects", PROJECT, "roles/datastore.user"),
        ("pubsub topics", PLAN.topic, "roles/pubsub.publisher"),
        ("secrets", "student-key-pepper", "roles/secretmanager.secretAccessor"),
        ("secrets", "admin-csrf-key", "roles/secretmanager.secretAccessor"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect()
}

/// The IAP grants on the console: (member, role), each checked to be on the admin service.
fn iap_grants(commands: &[Vec<String>], verb: &str) -> Vec<(String, String)> {
    commands
        .iter()
        .filter(|c| c.windows(3).any(|w| w[0] == "iap" && w[1] == "web" && w[2] == verb))
        .map(|c| {
            assert_eq!(c.get(3), Some(&"beta".to_owned()), "IAP on Cloud Run needs gcloud beta in gcloud 528: {c:?}");
            assert_eq!(flag(c, "--resource-type"), "cloud-run", "{c:?}");
            assert_eq!(flag(c, "--service"), "lms-bridge-admin", "{c:?}");
            assert_eq!(flag(c, "--region"), REGION, "{c:?}");
            (flag(c, "--member").to_owned(), flag(c, "--role").to_owned())
        })
        .collect()
}

#[test]
fn the_admin_console_is_its_own_service_of_the_same_image_behind_iap() {
    let plan = plan(&[], &[("PROJECT_NUMBER", NUMBER)]);
    let commands = planned(&plan);
    let backend = command(&commands, &["run", "deploy", "lms-bridge"]);
    let admin = admin_deploy(&commands);
    assert_eq!(flag(admin, "--image"), flag(backend, "--image"), "not the backend's image");
    assert_eq!(flag(admin, "--args"), "admin");
    assert_eq!(flag(admin, "--service-account"), ADMIN_SA);
    assert_eq!(flag(admin, "--ingress"), "all");
    assert_eq!(flag(admin, "--region"), REGION);
    for word in ["--iap", "--no-allow-unauthenticated", "--invoker-iam-check"] {
        assert!(admin.iter().any(|w| w == word), "the admin deploy lacks {word}: {admin:?}");
    }
    // Exactly this environment: the console's settings, its allowlists, its audience.
    let env = gcloud_dict(flag(admin, "--set-env-vars"));
    let audience = format!("/projects/{NUMBER}/locations/{REGION}/services/lms-bridge-admin");
    let want = BTreeMap::from([
        ("GCP_PROJECT", PROJECT),
        ("PUBSUB_TOPIC", PLAN.topic),
        ("ADMIN_AUTH", "iap"),
        ("ADMIN_IAP_AUDIENCE", audience.as_str()),
        ("ADMIN_OPERATORS", OPERATORS),
        ("ADMIN_VIEWERS", VIEWERS),
    ]);
    assert_eq!(env, want.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
    let secrets = pairs(flag(admin, "--set-secrets"));
    let want_secrets = BTreeMap::from([
        ("STUDENT_KEY_PEPPER".to_owned(), "student-key-pepper:latest".to_owned()),
        ("ADMIN_CSRF_KEY".to_owned(), "admin-csrf-key:latest".to_owned()),
    ]);
    assert_eq!(secrets, want_secrets);
    // Every variable is one `lms-bridge admin` reads (the secrets are read from the environment
    // only, so the help does not list them), and `iap` is one of ADMIN_AUTH's values.
    let help = Command::new(backend_bin()).args(["admin", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for key in env.keys() {
        assert!(help.contains(&format!("[env: {key}=")), "`lms-bridge admin` reads no {key}:\n{help}");
    }
    assert!(help.contains("Possible values:") && help.contains("- iap:"), "{help}");

    // Nobody unauthenticated: no public binding anywhere, and the only invoker of the console is
    // IAP's service agent.
    for word in commands.iter().flatten() {
        assert!(!word.contains("allUsers") && !word.contains("allAuthenticatedUsers"), "{word}");
        assert!(word != "--allow-unauthenticated" && word != "--no-invoker-iam-check", "{word}");
    }
    let invokers: Vec<&Vec<String>> = commands
        .iter()
        .filter(|c| c.iter().any(|w| w == "add-iam-policy-binding") && c.iter().any(|w| w == "lms-bridge-admin"))
        .collect();
    assert_eq!(invokers.len(), 1, "{invokers:?}");
    assert_eq!(
        flag(invokers[0], "--member"),
        format!("serviceAccount:service-{NUMBER}@gcp-sa-iap.iam.gserviceaccount.com")
    );
    assert_eq!(flag(invokers[0], "--role"), "roles/run.invoker");
    command(&commands, &["services", "identity", "create", "--service=iap.googleapis.com"]);
    command(&commands, &["run", "services", "get-iam-policy", "lms-bridge-admin"]);
    assert!(command(&commands, &["services", "enable"]).iter().any(|w| w == "iap.googleapis.com"));
    // The console's URL at the end.
    let url = format!("https://lms-bridge-admin-{NUMBER}.{REGION}.run.app");
    assert!(plan.lines().any(|l| l.starts_with("Admin console: ") && l.contains(&url)), "{plan}");

    // ADMIN_SERVICE renames it, and the audience follows.
    let commands = planned(&self::plan(&[], &[("PROJECT_NUMBER", NUMBER), ("ADMIN_SERVICE", "console")]));
    let admin = command(&commands, &["beta", "run", "deploy", "console"]);
    assert_eq!(
        gcloud_dict(flag(admin, "--set-env-vars"))["ADMIN_IAP_AUDIENCE"],
        format!("/projects/{NUMBER}/locations/{REGION}/services/console")
    );
}

#[test]
fn the_admin_account_gets_exactly_its_roles() {
    let hotmart = [("HOTMART_CLIENT_ID", "hotmart-client-1"), ("HOTMART_CLIENT_SECRET", "hotmart-secret")];
    let mut runs = vec![
        planned(&plan(&[], &[])),
        planned(&plan(&[], &[("PLAN_EXISTING", "true")])),
        planned(&plan(&["--edge-key"], &hotmart)),
    ];
    let fake = FakeDeploy::new();
    for env in [&[][..], &hotmart[..], &[("FAKE_EXISTING", "1")][..]] {
        let output = fake.run(&[], env);
        assert!(output.status.success(), "{env:?}: {}", text(&output));
        runs.push(fake.calls());
    }
    for commands in &runs {
        let grants = admin_grants(commands);
        assert_eq!(grants, admin_roles(), "the admin account's roles");
        // Said once more, as the absences that matter: no LMS key, no Hotmart credential, no
        // push token, no way into the backend.
        for (_, resource, role) in &grants {
            assert!(
                !["talentlms-api-key", "hotmart-client-id", "hotmart-client-secret", "push-verification-token"]
                    .contains(&resource.as_str()),
                "the admin account may read {resource}"
            );
            assert!(role != "roles/run.invoker" && resource != "lms-bridge", "{resource}: {role}");
        }
        // And the other accounts get nothing of the console's.
        for c in commands.iter().filter(|c| c.iter().any(|w| w == "admin-csrf-key" || w == "lms-bridge-admin")) {
            if let Some(member) = c.iter().find_map(|w| w.strip_prefix("--member=")) {
                assert!(
                    member == format!("serviceAccount:{ADMIN_SA}") || member.contains("@gcp-sa-iap."),
                    "{member} gets something of the console: {c:?}"
                );
            }
        }
    }
}

#[test]
fn operators_and_viewers_pass_iap_and_nobody_else() {
    let env = [
        ("ADMIN_OPERATORS", " Ops@Acme-Courses.example, lead@acme-courses.example,"),
        (
            "ADMIN_VIEWERS",
            "viewer@acme-courses.example,ops@acme-courses.example, robot@acme-courses.iam.gserviceaccount.com",
        ),
    ];
    let want: Vec<(String, String)> = [
        "user:ops@acme-courses.example",
        "user:lead@acme-courses.example",
        "user:viewer@acme-courses.example",
        "serviceAccount:robot@acme-courses.iam.gserviceaccount.com",
    ]
    .iter()
    .map(|m| ((*m).to_owned(), IAP_ACCESS.to_owned()))
    .collect();
    let commands = planned(&plan(&[], &env));
    assert_eq!(iap_grants(&commands, "add-iam-policy-binding"), want, "each email once, as given, lowercased");
    // The console's allowlists are the same emails.
    let admin_env = gcloud_dict(flag(admin_deploy(&commands), "--set-env-vars"));
    assert_eq!(admin_env["ADMIN_OPERATORS"], "ops@acme-courses.example,lead@acme-courses.example");
    assert_eq!(
        admin_env["ADMIN_VIEWERS"],
        "viewer@acme-courses.example,ops@acme-courses.example,robot@acme-courses.iam.gserviceaccount.com"
    );
    // Without viewers the console gets no ADMIN_VIEWERS at all, and IAP only the operators.
    let commands = planned(&plan(&[], &[("ADMIN_VIEWERS", "")]));
    assert!(!gcloud_dict(flag(admin_deploy(&commands), "--set-env-vars")).contains_key("ADMIN_VIEWERS"));
    assert_eq!(iap_grants(&commands, "add-iam-policy-binding"), [(format!("user:{OPERATORS}"), IAP_ACCESS.to_owned())]);

    // A real run takes IAP access from everyone else who holds it (an email taken out of the
    // lists); those in the lists keep it, whatever the case IAM spells them in.
    let fake = FakeDeploy::new();
    let holders = "user:Ops@acme-courses.example user:gone@acme-courses.example group:old-team@acme-courses.example user:viewer@acme-courses.example";
    let output = fake.run(&[], &[env[0], env[1], ("FAKE_IAP_MEMBERS", holders)]);
    assert!(output.status.success(), "{}", text(&output));
    let calls = fake.calls();
    assert_eq!(iap_grants(&calls, "add-iam-policy-binding"), want);
    let removed = iap_grants(&calls, "remove-iam-policy-binding");
    assert_eq!(
        removed,
        [
            ("user:gone@acme-courses.example".to_owned(), IAP_ACCESS.to_owned()),
            ("group:old-team@acme-courses.example".to_owned(), IAP_ACCESS.to_owned()),
        ]
    );
    let url = format!("https://lms-bridge-admin-{NUMBER}.{REGION}.run.app");
    assert!(text(&output).contains(&format!("Admin console: {url}")), "{}", text(&output));
}

#[test]
fn the_admin_console_needs_an_operator() {
    let refused = |output: Output, naming: &[&str]| {
        assert!(!output.status.success(), "accepted");
        assert!(output.stdout.is_empty(), "planned before refusing: {}", String::from_utf8_lossy(&output.stdout));
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(said.lines().count(), 1, "{said}");
        for word in naming {
            assert!(said.contains(word), "{said} does not name {word}");
        }
    };
    // Unset, empty, or no email in it.
    let unset = Command::new(repo_root().join("deploy/gcp.sh"))
        .arg("--dry-run")
        .env("PROJECT", PROJECT)
        .env("TALENTLMS_URL", "https://acme.talentlms.com")
        .env_remove("ADMIN_OPERATORS")
        .env_remove("ADMIN_VIEWERS")
        .output()
        .unwrap();
    refused(unset, &["set ADMIN_OPERATORS", "at least one"]);
    for operators in ["", " ", ",", " , "] {
        refused(dry_run(&[], &[("ADMIN_OPERATORS", operators)]), &["set ADMIN_OPERATORS", "at least one"]);
    }
    // Viewers alone are not enough.
    refused(dry_run(&[], &[("ADMIN_OPERATORS", ""), ("ADMIN_VIEWERS", VIEWERS)]), &["set ADMIN_OPERATORS"]);
    // What is not an email is named (it would be a broken allowlist, or an IAM error halfway).
    for (name, value, bad) in [
        ("ADMIN_OPERATORS", "ops@acme-courses.example,lead", "'lead'"),
        (
            "ADMIN_OPERATORS",
            "ops@acme-courses.example;lead@acme-courses.example",
            "'ops@acme-courses.example;lead@acme-courses.example'",
        ),
        ("ADMIN_OPERATORS", "group:ops@acme-courses.example", "'group:ops@acme-courses.example'"),
        ("ADMIN_VIEWERS", "a b@acme-courses.example", "'a b@acme-courses.example'"),
        ("ADMIN_VIEWERS", "viewer@localhost", "'viewer@localhost'"),
    ] {
        refused(dry_run(&[], &[(name, value)]), &[name, bad, "not an email"]);
    }
    // A real run without an operator calls nothing.
    let fake = FakeDeploy::new();
    let output = fake.run(&[], &[("ADMIN_OPERATORS", "")]);
    assert!(!output.status.success());
    assert!(fake.calls().is_empty(), "gcloud was called: {:?}", fake.calls());
}

#[test]
fn the_csrf_key_is_made_once_and_never_shown_and_a_second_run_changes_nothing() {
    // The plan names the key, never a value.
    for existing in ["false", "true"] {
        let plan = plan(&[], &[("PLAN_EXISTING", existing)]);
        let line = plan.lines().find(|l| l.contains("secrets versions add admin-csrf-key")).unwrap();
        assert!(
            line.ends_with(
                "--data-file=- # stdin: a new key, openssl rand -hex 32, only when the secret has no version"
            ),
            "{line}"
        );
        let creates = plan.contains("secrets create admin-csrf-key");
        assert_eq!(creates, existing == "false", "{plan}");
        assert_eq!(plan.contains("iam service-accounts create lms-bridge-admin"), existing == "false");
    }

    // A first run on a fresh project: the secret, and one key through stdin only.
    let fake = FakeDeploy::new();
    let output = fake.run(&[], &[("FAKE_NO_VERSIONS", "1")]);
    assert!(output.status.success(), "{}", text(&output));
    let key = std::fs::read_to_string(fake.dir.join("csrf-key")).unwrap();
    assert!(key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()), "not 32 random bytes in hex: {key:?}");
    let first = fake.calls();
    assert!(!text(&output).contains(&key), "the CSRF key was printed");
    assert!(first.iter().flatten().all(|w| !w.contains(&key)), "the CSRF key in an argument");
    command(&first, &["secrets", "create", "admin-csrf-key"]);
    command(&first, &["secrets", "versions", "add", "admin-csrf-key", "--data-file=-"]);

    // The second run finds everything: it creates nothing of the console, adds no key, and
    // brings the service, the grants and the IAP access to the same settings.
    std::fs::remove_file(fake.dir.join("csrf-key")).unwrap();
    let output = fake.run(&[], &[("FAKE_EXISTING", "1")]);
    assert!(output.status.success(), "{}", text(&output));
    let second = fake.calls();
    assert!(!fake.dir.join("csrf-key").exists(), "a second key was made");
    for c in &second {
        let created =
            c.iter().any(|w| w == "create") && c.iter().any(|w| w == "admin-csrf-key" || w == "lms-bridge-admin");
        assert!(!created, "a second run created {c:?}");
    }
    let new_keys = second.iter().filter(|c| c.windows(3).any(|w| w == ["versions", "add", "admin-csrf-key"]));
    assert_eq!(new_keys.count(), 0, "a second run added a version to admin-csrf-key");
    assert_eq!(admin_deploy(&second), admin_deploy(&first), "the second run deploys other settings");
    assert_eq!(admin_grants(&second), admin_grants(&first));
    assert_eq!(iap_grants(&second, "add-iam-policy-binding"), iap_grants(&first, "add-iam-policy-binding"));
    assert!(iap_grants(&second, "remove-iam-policy-binding").is_empty());
}

#[test]
fn a_public_admin_console_stops_the_deploy_before_anyone_is_let_in() {
    let fake = FakeDeploy::new();
    for public in ["allUsers", "allAuthenticatedUsers"] {
        let members = format!("serviceAccount:service-{NUMBER}@gcp-sa-iap.iam.gserviceaccount.com {public}");
        let output = fake.run(&[], &[("FAKE_ADMIN_MEMBERS", &members)]);
        assert!(!output.status.success(), "a public console was accepted");
        let said = text(&output);
        assert!(said.contains("DANGER: Cloud Run service lms-bridge-admin is public"), "{said}");
        assert!(fake.called(&["run", "services", "get-iam-policy", "lms-bridge-admin"]));
        assert!(!fake.called(&["iap", "web", "add-iam-policy-binding"]), "IAP access granted on a public console");
    }
}
