//! The backend as a real process (`lms-bridge serve`), the Firestore emulator, the LMS
//! sandbox, and a test JWKS that signs real RS256 tokens.

use crate::process::{free_port, http_ok, require, Service};
use base64::Engine as _;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The API key the sandbox and the backend share in tests.
pub const LMS_KEY: &str = "sandbox-api-key-0123456789abcdef";
/// The push service account the test tokens name.
pub const PUSH_ACCOUNT: &str = "pubsub-push@lms-bridge-test.iam.gserviceaccount.com";
/// The `PUSH_VERIFICATION_TOKEN` backends get unless they run with `PUSH_AUTH=none`.
pub const VERIFICATION_TOKEN: &str = "vt-3c9e1f0a7b5d-push-verification";
/// The `PUBSUB_SUBSCRIPTION` backends get unless they run with `PUSH_AUTH=none` (a name: the
/// backend expects `projects/{its project}/subscriptions/push`).
pub const SUBSCRIPTION: &str = "push";

/// The `lms-bridge` binary, built once per test process (`LMS_BRIDGE_BIN` overrides it, e.g.
/// with a release build for load runs).
pub fn backend_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("LMS_BRIDGE_BIN", "lms-bridge-backend", "lms-bridge")).clone()
}

/// The `lms-sandbox` binary (crate `lms-bridge-tools`), built once per test process
/// (`LMS_SANDBOX_BIN` overrides it; `scripts/test.sh` builds it first and sets it).
pub fn sandbox_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("LMS_SANDBOX_BIN", "lms-bridge-tools", "lms-sandbox")).clone()
}

/// The path in `overridden_by`, else `bin` of `package` built with a nested `cargo build`.
pub fn built_binary(overridden_by: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(overridden_by) {
        return PathBuf::from(path);
    }
    let root = crate::repo_root();
    let mut build = Command::new(env!("CARGO"));
    build.current_dir(&root).args(["build", "-q", "-p", package, "--bin", bin]);
    // What `cargo test` sets for this test (package variables, the library path) would make
    // build scripts rerun, and the next `cargo test` rebuild them all over again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR")
            || name == "LD_LIBRARY_PATH"
            || name == "RUST_RECURSION_COUNT"
        {
            build.env_remove(&*name);
        }
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building {bin} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug").join(bin)
}

/// A running Firestore emulator.
pub struct Firestore {
    _service: Service,
    /// `127.0.0.1:port`.
    pub host: String,
}

impl Firestore {
    /// Starts the emulator on a free port.
    pub fn start() -> Self {
        let gcloud = require("gcloud", "install Debian's google-cloud-cli and google-cloud-cli-firestore-emulator");
        let host = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(gcloud);
        command
            .args(["emulators", "firestore", "start", "--quiet"])
            .arg(format!("--host-port={host}"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1");
        let mut service = Service::spawn("firestore-emulator", command);
        let url = format!("http://{host}/");
        service.wait_until(Duration::from_secs(90), || http_ok(&url));
        Self { _service: service, host }
    }

    /// Every document of a top-level collection (typed Firestore values), page by page, with
    /// only the fields in `mask` (all of them when it is empty).
    pub fn collection(&self, project: &str, collection: &str, mask: &[&str]) -> Vec<Value> {
        let base = format!("http://{}/v1/projects/{project}/databases/(default)/documents/{collection}", self.host);
        let client = reqwest::blocking::Client::new();
        let mut documents = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = client.get(&base).query(&[("pageSize", "1000")]);
            for field in mask {
                request = request.query(&[("mask.fieldPaths", field)]);
            }
            if let Some(token) = &token {
                request = request.query(&[("pageToken", token)]);
            }
            let page: Value = request.send().unwrap().json().unwrap();
            documents.extend(page["documents"].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return documents,
            }
        }
    }

    /// A document as the emulator's REST API returns it (typed Firestore values).
    pub fn document(&self, project: &str, path: &str) -> Value {
        let url = format!("http://{}/v1/projects/{project}/databases/(default)/documents/{path}", self.host);
        reqwest::blocking::get(url).unwrap().json().unwrap()
    }
}

/// A running LMS sandbox.
pub struct Sandbox {
    _service: Service,
    /// `http://127.0.0.1:port`.
    pub url: String,
}

impl Sandbox {
    /// Starts `lms-sandbox` ([`sandbox_bin`]) with these extra arguments.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_bin(&sandbox_bin(), extra)
    }

    /// Starts this `lms-sandbox` binary (e.g. a release build for load runs).
    pub fn start_bin(bin: &std::path::Path, extra: &[&str]) -> Self {
        let port = free_port();
        let mut command = Command::new(bin);
        command.args(["--port", &port.to_string(), "--api-key", LMS_KEY]).args(extra);
        let mut service = Service::spawn("lms-sandbox", command);
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}/_sandbox/state");
        service.wait_until(Duration::from_secs(20), || http_ok(&probe));
        Self { _service: service, url }
    }

    /// The environment a backend needs to use it (`TALENTLMS_URL`, `TALENTLMS_API_KEY`).
    pub fn backend_env(&self) -> Vec<(String, String)> {
        vec![("TALENTLMS_URL".to_owned(), self.url.clone()), ("TALENTLMS_API_KEY".to_owned(), LMS_KEY.to_owned())]
    }

    /// Users, enrollments, call log and per-action call counts.
    pub fn state(&self) -> Value {
        reqwest::blocking::get(format!("{}/_sandbox/state", self.url)).unwrap().json().unwrap()
    }

    /// Sets faults (see the sandbox's doc).
    pub fn faults(&self, faults: Value) {
        let response =
            reqwest::blocking::Client::new().post(format!("{}/_sandbox/faults", self.url)).json(&faults).send();
        assert!(response.unwrap().status().is_success());
    }

    /// Adds a user as a portal admin would, before the bridge ever saw them (see the
    /// sandbox's doc for the fields).
    pub fn add_user(&self, user: Value) {
        let response = reqwest::blocking::Client::new().post(format!("{}/_sandbox/users", self.url)).json(&user).send();
        assert!(response.unwrap().status().is_success());
    }

    /// Creates a course, as a portal admin would.
    pub fn add_course(&self, id: &str) {
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/_sandbox/courses", self.url))
            .json(&serde_json::json!({ "id": id }))
            .send();
        assert!(response.unwrap().status().is_success());
    }

    /// How many calls of an action the sandbox received.
    pub fn count(&self, action: &str) -> u64 {
        self.state()["counts"][action].as_u64().unwrap_or(0)
    }

    /// How many calls of an action succeeded (HTTP 200).
    pub fn count_ok(&self, action: &str) -> usize {
        let state = self.state();
        let calls = state["calls"].as_array().cloned().unwrap_or_default();
        calls.iter().filter(|c| c["action"] == action && c["status"] == 200).count()
    }

    /// The courses the user with this email is enrolled in.
    pub fn courses_of(&self, email: &str) -> Vec<String> {
        let state = self.state();
        let users = state["users"].as_array().cloned().unwrap_or_default();
        let mut courses: Vec<String> = users
            .iter()
            .filter(|u| u["email"] == email)
            .flat_map(|u| u["courses"].as_array().cloned().unwrap_or_default())
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        courses.sort();
        courses
    }

    /// The status of the user with this email.
    pub fn user_status(&self, email: &str) -> Option<String> {
        let state = self.state();
        state["users"]
            .as_array()?
            .iter()
            .find(|u| u["email"] == email)
            .map(|u| u["status"].as_str().unwrap().to_owned())
    }
}

/// A test issuer: an RSA key, served as a JWKS, that signs push tokens.
pub struct Issuer {
    key: RsaPrivateKey,
    /// The JWKS URL.
    pub jwks_url: String,
}

/// The `kid` of the test key.
pub const KID: &str = "test-key-1";

impl Issuer {
    /// Generates a key and serves its JWKS on a free port.
    pub fn start() -> Self {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let public = key.to_public_key();
        let jwks = json!({ "keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
            "n": b64.encode(public.n().to_bytes_be()), "e": b64.encode(public.e().to_bytes_be()),
        }]})
        .to_string();
        let port = free_port();
        let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let _ = request.respond(tiny_http::Response::from_string(jwks.clone()));
            }
        });
        Self { key, jwks_url: format!("http://127.0.0.1:{port}/certs") }
    }

    /// A token with these claims over this header, signed RS256 with the test key.
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
        let signature = SigningKey::<Sha256>::new(self.key.clone()).sign(input.as_bytes());
        format!("{input}.{}", b64.encode(signature.to_bytes()))
    }

    /// The claims Pub/Sub puts in a push token for `audience`.
    pub fn claims(audience: &str) -> Value {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        json!({
            "iss": "https://accounts.google.com", "aud": audience, "iat": now, "exp": now + 3600,
            "email": PUSH_ACCOUNT, "email_verified": true, "sub": "1234567890",
        })
    }

    /// A valid push token.
    pub fn token(&self, audience: &str) -> String {
        self.sign(json!({ "alg": "RS256", "kid": KID, "typ": "JWT" }), Self::claims(audience))
    }
}

/// A running backend.
pub struct Backend {
    service: Service,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// Its GCP project (one per test: isolation in the shared emulator).
    pub project: String,
    firestore_host: String,
    /// The LMS's environment (`TALENTLMS_*`, or `LMS=moodle` and `MOODLE_*`).
    lms_env: Vec<(String, String)>,
    /// The `?token=` its pushes and sweeps carry (None: the backend has none).
    pub verification_token: Option<String>,
}

impl Backend {
    /// The environment of every backend process in tests: its project and Firestore, then
    /// its LMS's.
    fn env(project: &str, firestore: &str, lms_env: &[(String, String)]) -> Vec<(String, String)> {
        [("GCP_PROJECT", project), ("FIRESTORE_EMULATOR_HOST", firestore)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain(lms_env.iter().cloned())
            .collect()
    }

    /// Starts `lms-bridge serve` with OIDC verification against `issuer`.
    pub fn start(
        project: &str,
        firestore: &Firestore,
        sandbox: &Sandbox,
        issuer: &Issuer,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_on(free_port(), project, firestore, sandbox, issuer, extra)
    }

    /// The same on a given port (a restart keeps the push endpoint). Unless `extra` says
    /// `PUSH_AUTH=none` (the emulator's pushes: no token, and the subscription of the test's
    /// choosing), the backend also gets `PUBSUB_SUBSCRIPTION` = [`SUBSCRIPTION`] and
    /// `PUSH_VERIFICATION_TOKEN` = [`VERIFICATION_TOKEN`]; `extra` overrides either.
    pub fn start_on(
        port: u16,
        project: &str,
        firestore: &Firestore,
        sandbox: &Sandbox,
        issuer: &Issuer,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_with_lms_on(port, project, firestore, &sandbox.backend_env(), issuer, extra)
    }

    /// [`Backend::start`] against another LMS: `lms_env` is its environment (e.g.
    /// [`MoodleSandbox::backend_env`](crate::moodle_sandbox::MoodleSandbox::backend_env)), which
    /// the CLI runs of [`Backend::cli`] get too.
    pub fn start_with_lms(
        project: &str,
        firestore: &Firestore,
        lms_env: &[(String, String)],
        issuer: &Issuer,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_with_lms_on(free_port(), project, firestore, lms_env, issuer, extra)
    }

    /// The same on a given port.
    pub fn start_with_lms_on(
        port: u16,
        project: &str,
        firestore: &Firestore,
        lms_env: &[(String, String)],
        issuer: &Issuer,
        extra: &[(&str, &str)],
    ) -> Self {
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(backend_bin());
        command.arg("serve").envs(Self::env(project, &firestore.host, lms_env));
        command
            .env("PORT", port.to_string())
            .env("LISTEN_ADDR", "127.0.0.1")
            .env("PUSH_AUTH", "oidc")
            .env("PUSH_AUDIENCE", &url)
            .env("PUSH_SERVICE_ACCOUNT", PUSH_ACCOUNT)
            .env("OIDC_JWKS_URL", &issuer.jwks_url);
        let unauthenticated = extra.iter().any(|(k, v)| *k == "PUSH_AUTH" && *v == "none");
        let mut verification_token = None;
        if !unauthenticated {
            command.env("PUBSUB_SUBSCRIPTION", SUBSCRIPTION).env("PUSH_VERIFICATION_TOKEN", VERIFICATION_TOKEN);
            verification_token = Some(VERIFICATION_TOKEN.to_owned());
        }
        for (k, v) in extra {
            command.env(k, v);
            if *k == "PUSH_VERIFICATION_TOKEN" {
                verification_token = Some((*v).to_owned()).filter(|t| !t.is_empty());
            }
        }
        let mut service = Service::spawn(&format!("backend-{project}"), command);
        let health = format!("{url}/healthz");
        service.wait_until(Duration::from_secs(60), || http_ok(&health));
        Self {
            service,
            url,
            project: project.to_owned(),
            firestore_host: firestore.host.clone(),
            lms_env: lms_env.to_vec(),
            verification_token,
        }
    }

    /// The subscription name its pushes must carry (with [`SUBSCRIPTION`]).
    pub fn subscription(&self) -> String {
        format!("projects/{}/subscriptions/{SUBSCRIPTION}", self.project)
    }

    /// `path` on this backend, with `?token=` when it has a verification token.
    fn endpoint(&self, path: &str) -> String {
        match &self.verification_token {
            Some(token) => format!("{}{path}?token={token}", self.url),
            None => format!("{}{path}", self.url),
        }
    }

    /// The push endpoint to give Pub/Sub (with the verification token).
    pub fn push_endpoint(&self) -> String {
        self.endpoint("/pubsub/push")
    }

    /// The sweep endpoint to give the scheduler (with the verification token).
    pub fn sweep_endpoint(&self) -> String {
        self.endpoint("/tasks/sweep")
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.service.log_tail()
    }

    /// Everything this run wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.service.output()
    }

    /// Kills the whole process group at once (a crash, not a shutdown).
    pub fn kill(&mut self) {
        self.service.stop();
    }

    /// SIGKILL at once: the instance vanishes mid-request, as a crashed or evicted one does.
    pub fn crash(&mut self) {
        self.service.crash();
    }

    /// SIGTERM, then how it exited (None: still running after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.service.terminate(timeout)
    }

    /// Runs an `lms-bridge` command against this backend's state and LMS.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, &[])
    }

    /// Runs the CLI against its state and LMS with more environment.
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(backend_bin())
            .args(args)
            .envs(Self::env(&self.project, &self.firestore_host, &self.lms_env))
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// `lms-bridge pubsub setup` against the emulator at `host`, pushing to this backend (1 s
    /// first retry), as `make dev` runs it; `extra` adds flags (another subscription, project).
    pub fn pubsub_setup(&self, host: &str, extra: &[&str]) {
        let endpoint = format!("{}/pubsub/push", self.url);
        let mut args = vec![
            "pubsub",
            "setup",
            "--push-endpoint",
            &endpoint,
            "--min-backoff-seconds",
            "1",
            "--pubsub-emulator-host",
            host,
        ];
        args.extend_from_slice(extra);
        let setup = self.cli(&args);
        assert!(setup.status.success(), "pubsub setup: {}", String::from_utf8_lossy(&setup.stderr));
    }

    /// Imports mappings from TOML text through the CLI.
    pub fn import_mappings(&self, toml: &str) {
        let path = std::env::temp_dir().join(format!("mappings-{}.toml", self.project));
        std::fs::write(&path, toml).unwrap();
        let output = self.cli(&["mappings", "import", path.to_str().unwrap()]);
        assert!(output.status.success(), "import failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Posts a push envelope carrying `event` with `token` (None: no header), from its
    /// subscription, to its push endpoint.
    pub fn push_with(&self, event: &Value, message_id: &str, token: Option<&str>) -> (u16, Value) {
        post_push(&self.push_endpoint(), &envelope(event, message_id, &self.subscription()), token)
    }
    /// Runs `lms-bridge sweep --at` (a time in Unix milliseconds) and returns its report: time
    /// moves forward without waiting.
    pub fn sweep_at(&self, at_ms: i64) -> Value {
        let at = lms_bridge_shared::Timestamp::from_unix_millis(at_ms).unwrap().to_string();
        let output = self.cli(&["sweep", "--at", &at]);
        assert!(output.status.success(), "sweep --at {at}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Posts to the sweep endpoint.
    pub fn sweep(&self, token: &str) -> (u16, Value) {
        let response = reqwest::blocking::Client::new().post(self.sweep_endpoint()).bearer_auth(token).send().unwrap();
        (response.status().as_u16(), response.json().unwrap_or(Value::Null))
    }
}

/// A Pub/Sub push envelope carrying `event`, as delivered from `subscription`.
pub fn envelope(event: &Value, message_id: &str, subscription: &str) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    json!({
        "message": { "data": data, "messageId": message_id, "attributes": { "event_id": event["id"] },
                     "publishTime": "2026-11-25T00:00:00Z" },
        "subscription": subscription,
        "deliveryAttempt": 1,
    })
}

/// Posts a push envelope to `endpoint` (the whole URL) with `token` as bearer (None: no header).
pub fn post_push(endpoint: &str, envelope: &Value, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::blocking::Client::new().post(endpoint).json(envelope).timeout(Duration::from_secs(60));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Posts a Pub/Sub push envelope carrying `event` to the backend at `url` (no verification
/// token; subscription `projects/lms-bridge-test/subscriptions/push`): for `PUSH_AUTH=none`.
pub fn push_to(url: &str, event: &Value, message_id: &str, token: Option<&str>) -> (u16, Value) {
    post_push(
        &format!("{url}/pubsub/push"),
        &envelope(event, message_id, "projects/lms-bridge-test/subscriptions/push"),
        token,
    )
}
