//! The Moodle sandbox (`tools/src/bin/moodle-sandbox/`) as tests start it: a real process on
//! a free port, its control API, and calls to its REST endpoint.

use crate::backend::built_binary;
use crate::process::{free_port, http_ok, Service};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The web-service token the sandbox accepts in tests.
pub const MOODLE_TOKEN: &str = "sandbox-moodle-token-0123456789abcdef";
/// The REST endpoint under the wwwroot.
pub const ENDPOINT: &str = "/webservice/rest/server.php";

/// The `moodle-sandbox` binary (crate `lms-bridge-tools`), built once per test process
/// (`MOODLE_SANDBOX_BIN` overrides it; `scripts/test.sh` builds it first and sets it).
pub fn moodle_sandbox_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("MOODLE_SANDBOX_BIN", "lms-bridge-tools", "moodle-sandbox")).clone()
}

/// A running Moodle sandbox.
pub struct MoodleSandbox {
    _service: Service,
    /// The wwwroot: `http://127.0.0.1:port`.
    pub url: String,
    /// Its port.
    pub port: u16,
}

impl MoodleSandbox {
    /// Starts one with the test token and these extra arguments.
    pub fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let mut command = Command::new(moodle_sandbox_bin());
        command.args(["--port", &port.to_string(), "--token", MOODLE_TOKEN]).args(extra);
        let mut service = Service::spawn("moodle-sandbox", command);
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}/_sandbox/state");
        service.wait_until(Duration::from_secs(20), || http_ok(&probe));
        Self { _service: service, url, port }
    }

    /// The environment a backend needs to use it: `LMS=moodle`, `MOODLE_URL` (its wwwroot),
    /// `MOODLE_TOKEN`.
    pub fn backend_env(&self) -> Vec<(String, String)> {
        [("LMS", "moodle"), ("MOODLE_URL", self.url.as_str()), ("MOODLE_TOKEN", MOODLE_TOKEN)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The REST endpoint's URL.
    pub fn endpoint(&self) -> String {
        format!("{}{ENDPOINT}", self.url)
    }

    /// POSTs a form to the endpoint as given (no token or format added): status and body.
    pub fn post_raw(&self, form: &[(&str, &str)]) -> (u16, String) {
        let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let response = client.post(self.endpoint()).form(form).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }

    /// Calls a function with the test token in JSON, expecting HTTP 200: the parsed body
    /// (an error object is a body like any other).
    pub fn call(&self, function: &str, params: &[(&str, &str)]) -> Value {
        let mut form = vec![("wstoken", MOODLE_TOKEN), ("wsfunction", function), ("moodlewsrestformat", "json")];
        form.extend_from_slice(params);
        let (status, body) = self.post_raw(&form);
        assert_eq!(status, 200, "{function}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{function}: {e}: {body}"))
    }

    fn control(&self, path: &str, body: &Value) -> Value {
        let response =
            reqwest::blocking::Client::new().post(format!("{}/_sandbox/{path}", self.url)).json(body).send().unwrap();
        assert!(response.status().is_success(), "sandbox {path}: {}", response.status());
        response.json().unwrap()
    }

    /// Users, courses, enrolments (with `active` and `listed`), call log, counts, site.
    pub fn state(&self) -> Value {
        reqwest::blocking::get(format!("{}/_sandbox/state", self.url)).unwrap().json().unwrap()
    }

    /// Replaces the fault switches (see the sandbox's doc).
    pub fn faults(&self, faults: Value) {
        self.control("faults", &faults);
    }

    /// Changes site settings (`debug`, `hide_emails`, `rest_enabled`, `not_in_service`,
    /// `assignable_roles`).
    pub fn site(&self, settings: Value) {
        self.control("site", &settings);
    }

    /// Sets the sandbox clock (`{"now":T}` freezes it; `{"advance_secs":n}`; `{}` resets):
    /// the clock as it then is.
    pub fn clock(&self, clock: Value) -> Value {
        self.control("clock", &clock)
    }

    /// Creates a course; `manual`: "enabled", "disabled" or "none".
    pub fn add_course(&self, id: u64, manual: &str) {
        self.control("courses", &json!({ "id": id, "manual": manual }));
    }

    /// Adds a user as an admin would (see the sandbox's doc for the fields): the user.
    pub fn add_user(&self, user: Value) -> Value {
        self.control("users", &user)
    }

    /// How many calls of a function the sandbox received.
    pub fn count(&self, function: &str) -> u64 {
        self.state()["counts"][function].as_u64().unwrap_or(0)
    }

    fn enrolments_of(&self, email: &str) -> Vec<Value> {
        let state = self.state();
        let enrolments = state["enrolments"].as_array().cloned().unwrap_or_default();
        enrolments.into_iter().filter(|e| e["email"] == email).collect()
    }

    /// The courses where the user with this e-mail has an enrolment active at the sandbox
    /// clock (exactly, without the listing functions' rounding), sorted.
    pub fn courses_of(&self, email: &str) -> Vec<u64> {
        let mut courses: Vec<u64> = self
            .enrolments_of(email)
            .iter()
            .filter(|e| e["active"] == true)
            .map(|e| e["courseid"].as_u64().unwrap())
            .collect();
        courses.sort_unstable();
        courses
    }

    /// The stored `timeend` of the user's enrolment in a course (0: never ends), if enrolled.
    pub fn timeend_of(&self, email: &str, course: u64) -> Option<i64> {
        self.enrolments_of(email).iter().find(|e| e["courseid"] == course).map(|e| e["timeend"].as_i64().unwrap())
    }

    /// The logged calls of `function` that named this e-mail (any outcome), oldest first.
    pub fn calls_of(&self, function: &str, email: &str) -> Vec<Value> {
        let state = self.state();
        let calls = state["calls"].as_array().cloned().unwrap_or_default();
        calls
            .into_iter()
            .filter(|c| c["function"] == function)
            .filter(|c| {
                let emails = c["emails"].as_array().cloned().unwrap_or_default();
                emails.iter().any(|e| e.as_str().is_some_and(|e| e.eq_ignore_ascii_case(email)))
            })
            .collect()
    }

    /// The successful calls of `function` that named this e-mail.
    pub fn ok_calls_of(&self, function: &str, email: &str) -> Vec<Value> {
        let mut calls = self.calls_of(function, email);
        calls.retain(|c| c["http"] == 200 && c["error"].is_null());
        calls
    }

    /// The `timeend` each successful `enrol_manual_enrol_users` for this user and course
    /// carried, oldest first: exactly what the bridge sent.
    pub fn enrol_timeends(&self, email: &str, course: u64) -> Vec<i64> {
        self.ok_calls_of("enrol_manual_enrol_users", email)
            .iter()
            .map(|c| &c["params"]["enrolments"]["0"])
            .filter(|e| e["courseid"].as_str() == Some(course.to_string().as_str()))
            .map(|e| e["timeend"].as_str().and_then(|t| t.parse().ok()).unwrap())
            .collect()
    }

    /// The id of the user with this e-mail.
    pub fn user_id(&self, email: &str) -> Option<u64> {
        let state = self.state();
        state["users"].as_array()?.iter().find(|u| u["email"] == email).map(|u| u["id"].as_u64().unwrap())
    }
}
