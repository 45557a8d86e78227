//! The LMS sandbox: an HTTP server speaking the TalentLMS v1 wire format (what the adapter
//! relies on: docs/talentlms.md) with in-memory users and enrollments, for tests and local runs.
//!
//! Usage: `lms-sandbox --port N [--api-key K] [--courses 101,102] [--signup-inactive]
//! [--signup-type TYPE] [--exit-with-stdin]` (port 0: any free port, printed on stderr as
//! `lms-sandbox listening on 127.0.0.1:PORT`; `--exit-with-stdin`: stop when stdin closes,
//! so a test's sandbox dies with the test).
//!
//! Control API for tests:
//! * `GET /_sandbox/state`: users; the call log, each call with the email of the user it
//!   concerned; per-action call counts.
//! * `POST /_sandbox/faults` with any of
//!   `{"fail_next":n,"fail_message":"…","rate_limit_next":n,"retry_after_secs":s,
//!   "reset_form":"epoch"|"seconds"|"past","omit_retry_after":true,"delay_next":n,"delay_ms":ms,
//!   "bad_json_next":n,"hide_next_lookups":n,"fail_ratio":r,"late_ratio":r,"late_ms":ms,"seed":s}`:
//!   the next `n` API calls answer 500 (with `fail_message`), or 429 (`X-RateLimit-Reset` as a
//!   future epoch, as seconds to go, or as an epoch an hour past; `Retry-After: s` unless
//!   omitted), or wait `delay_ms` first, or answer 200 with an HTML page; the next `n` user
//!   lookups find nobody (as if the user were created just after the lookup). The ratios hold
//!   until the next faults call: that share of API calls (drawn from `seed`) answers 500 without
//!   acting, or acts and then answers only after `late_ms` (a client that gave up first cannot
//!   know it acted: the ambiguous timeout). Each logged call says which fault it met (`fault`),
//!   when it was answered (`at_ms`, Unix ms) and the course it named.
//! * `POST /_sandbox/users` with `{"email","login"?,"first_name"?,"last_name"?,"user_type"?,
//!   "status"?,"deleted"?,"courses"?}`: adds a user as a portal admin would (any user type; a
//!   login of its own; already enrolled in `courses`, a list of course ids). A `deleted` user
//!   is found by no lookup, yet its email and login stay taken for sign-ups, as TalentLMS
//!   does with a deleted user's email.
//! * `POST /_sandbox/courses` with `{"id"}`: creates a course, as a portal admin would.

#![allow(clippy::unwrap_used, reason = "a test fixture: a poisoned lock or bad header is a bug to surface")]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tiny_http::{Header, Method, Request, Response};

#[derive(Clone)]
struct User {
    id: u64,
    email: String,
    login: String,
    first_name: String,
    last_name: String,
    status: String,
    user_type: String,
    deleted: bool,
    courses: BTreeSet<String>,
}

#[derive(Default)]
struct Faults {
    fail_next: u32,
    fail_message: Option<String>,
    rate_limit_next: u32,
    retry_after_secs: u64,
    reset_form: String,
    omit_retry_after: bool,
    delay_next: u32,
    delay_ms: u64,
    bad_json_next: u32,
    hide_next_lookups: u32,
    fail_ratio: f64,
    late_ratio: f64,
    late_ms: u64,
    /// The state of the draws for the ratios (xorshift64; never 0).
    draw: u64,
}

impl Faults {
    /// A uniform draw in [0, 1).
    fn draw(&mut self) -> f64 {
        let mut x = self.draw.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.draw = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct State {
    api_key: String,
    courses: BTreeSet<String>,
    signup_inactive: bool,
    signup_type: String,
    users: BTreeMap<u64, User>,
    next_id: u64,
    calls: Vec<Value>,
    faults: Faults,
    burst: VecDeque<Instant>,
}

type Reply = (u16, Value, Vec<(String, String)>);

fn error(status: u16, message: &str) -> Reply {
    (status, json!({ "error": { "type": "invalid_request_error", "message": message } }), Vec::new())
}

fn ok(body: Value) -> Reply {
    (200, body, Vec::new())
}

fn user_json(u: &User, with_courses: bool) -> Value {
    let mut v = json!({
        "id": u.id.to_string(), "login": u.login, "first_name": u.first_name, "last_name": u.last_name,
        "email": u.email, "user_type": u.user_type, "status": u.status, "restrict_email": "0",
    });
    if with_courses {
        v["courses"] = u.courses.iter().map(|c| json!({ "id": c, "role": "learner" })).collect();
    }
    v
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k:v,k:v` path arguments.
fn path_args(segment: &str) -> BTreeMap<String, String> {
    segment
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn form_args(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " "))))
        .collect()
}

fn strong(password: &str) -> bool {
    password.len() >= 8
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_digit())
}

impl State {
    fn find_user(&self, args: &BTreeMap<String, String>) -> Option<u64> {
        if let Some(id) = args.get("user_id").or_else(|| args.get("id")) {
            return id.parse().ok().filter(|id| self.users.get(id).is_some_and(|u| !u.deleted));
        }
        if let Some(login) = args.get("username") {
            return self.users.values().find(|u| !u.deleted && u.login == *login).map(|u| u.id);
        }
        let email = args.get("user_email").or_else(|| args.get("email"))?;
        self.users.values().find(|u| !u.deleted && u.email.eq_ignore_ascii_case(email)).map(|u| u.id)
    }

    /// Adds a user as a portal admin would (`POST /_sandbox/users`).
    fn add_user(&mut self, spec: &Value) -> Reply {
        let text = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(email) = text("email") else { return error(400, "email is required") };
        self.next_id += 1;
        let user = User {
            id: self.next_id,
            login: text("login").unwrap_or_else(|| format!("user{}", self.next_id)),
            first_name: text("first_name").unwrap_or_else(|| "First".into()),
            last_name: text("last_name").unwrap_or_else(|| "Last".into()),
            status: text("status").unwrap_or_else(|| "active".into()),
            user_type: text("user_type").unwrap_or_else(|| "Learner-Type".into()),
            deleted: spec.get("deleted").and_then(Value::as_bool).unwrap_or(false),
            courses: spec
                .get("courses")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            email,
        };
        let body = user_json(&user, false);
        self.users.insert(user.id, user);
        ok(body)
    }

    fn api(&mut self, method: &Method, action: &str, args: &BTreeMap<String, String>) -> Reply {
        match (method, action) {
            (Method::Get, "users") if self.faults.hide_next_lookups > 0 => {
                self.faults.hide_next_lookups -= 1;
                error(404, "The requested user does not exist")
            }
            (Method::Get, "users") => match self.find_user(args) {
                Some(id) => ok(user_json(&self.users[&id], true)),
                None => error(404, "The requested user does not exist"),
            },
            (Method::Post, "usersignup") => {
                for field in ["first_name", "last_name", "email", "login", "password"] {
                    if args.get(field).is_none_or(|v| v.is_empty()) {
                        return error(400, "Invalid arguments provided");
                    }
                }
                if self.users.values().any(|u| u.login == args["login"]) {
                    return error(400, "A user with the same login already exists");
                }
                if self.users.values().any(|u| u.email.eq_ignore_ascii_case(&args["email"])) {
                    return error(400, "A user with the same email address already exists");
                }
                if !strong(&args["password"]) {
                    return error(400, "Password is not strong enough (should have at least (1) upper case letter, at least (1) lower case letter, at least (1) number, at least (8) characters in length)");
                }
                self.next_id += 1;
                let user = User {
                    id: self.next_id,
                    email: args["email"].clone(),
                    login: args["login"].clone(),
                    first_name: args["first_name"].clone(),
                    last_name: args["last_name"].clone(),
                    status: if self.signup_inactive { "inactive".into() } else { "active".into() },
                    user_type: args.get("user_type").cloned().unwrap_or_else(|| self.signup_type.clone()),
                    deleted: false,
                    courses: BTreeSet::new(),
                };
                let body = user_json(&user, false);
                self.users.insert(user.id, user);
                ok(body)
            }
            (Method::Post, "addusertocourse") => {
                let Some(id) = self.find_user(args) else { return error(404, "The requested user does not exist") };
                let Some(course) = args.get("course_id").filter(|c| self.courses.contains(*c)).cloned() else {
                    return error(404, "The requested course does not exist");
                };
                let user = self.users.get_mut(&id).unwrap();
                if !user.courses.insert(course.clone()) {
                    return error(400, "The requested user is already enrolled in this course");
                }
                ok(json!([{ "user_id": id.to_string(), "course_id": course, "role": "learner" }]))
            }
            (Method::Get, "removeuserfromcourse") => {
                let Some(id) = self.find_user(args) else { return error(404, "The requested user does not exist") };
                let Some(course) = args.get("course_id").filter(|c| self.courses.contains(*c)).cloned() else {
                    return error(404, "The requested course does not exist");
                };
                let user = self.users.get_mut(&id).unwrap();
                if !user.courses.remove(&course) {
                    return error(400, "The requested user is not enrolled in this course");
                }
                ok(json!({ "user_id": id.to_string(), "course_id": course, "course_name": format!("Course {course}") }))
            }
            (Method::Get, "usersetstatus") => {
                let Some(id) = self.find_user(args) else { return error(404, "The requested user does not exist") };
                let Some(status) = args.get("status").filter(|s| *s == "active" || *s == "inactive").cloned() else {
                    return error(400, "Invalid arguments provided");
                };
                self.users.get_mut(&id).unwrap().status = status.clone();
                ok(json!({ "user_id": id.to_string(), "status": status }))
            }
            _ => error(400, "The requested API action does not exist"),
        }
    }

    fn snapshot(&self) -> Value {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for call in &self.calls {
            *counts.entry(call["action"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        }
        json!({
            "users": self.users.values().map(|u| user_json(u, true)).collect::<Vec<_>>(),
            "calls": self.calls,
            "counts": counts,
        })
    }
}

/// The page the `bad_json_next` fault answers with (a proxy's page, as JSON is expected).
const BAD_JSON: &str = "<html><body>Maintenance. Contact support@talentlms.example</body></html>";

fn respond(request: Request, (status, body, headers): Reply) {
    let (text, kind) = match body {
        Value::String(page) => (page, "text/html"),
        body => (body.to_string(), "application/json"),
    };
    let mut response = Response::from_string(text).with_status_code(status);
    response.add_header(Header::from_bytes("content-type", kind).unwrap());
    for (k, v) in headers {
        response.add_header(Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
    }
    let _ = request.respond(response);
}

fn handle(state: &Mutex<State>, mut request: Request) {
    let url = request.url().to_owned();
    let method = request.method().clone();
    let mut body = String::new();
    let _ = request.as_reader().take(1 << 20).read_to_string(&mut body);

    if let Some(control) = url.strip_prefix("/_sandbox/") {
        let mut s = state.lock().unwrap();
        let reply = match (method, control) {
            (Method::Get, "state") => ok(s.snapshot()),
            (Method::Post, "users") => {
                let spec: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                s.add_user(&spec)
            }
            (Method::Post, "courses") => {
                let spec: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                match spec.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
                    Some(id) => {
                        s.courses.insert(id.to_owned());
                        ok(json!({ "id": id }))
                    }
                    None => error(400, "a course needs an id"),
                }
            }
            (Method::Post, "faults") => {
                let f: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
                let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_owned);
                s.faults = Faults {
                    fail_next: n("fail_next") as u32,
                    fail_message: text("fail_message"),
                    rate_limit_next: n("rate_limit_next") as u32,
                    retry_after_secs: n("retry_after_secs"),
                    reset_form: text("reset_form").unwrap_or_default(),
                    omit_retry_after: f.get("omit_retry_after").and_then(Value::as_bool).unwrap_or(false),
                    delay_next: n("delay_next") as u32,
                    delay_ms: n("delay_ms"),
                    bad_json_next: n("bad_json_next") as u32,
                    hide_next_lookups: n("hide_next_lookups") as u32,
                    fail_ratio: f.get("fail_ratio").and_then(Value::as_f64).unwrap_or(0.0),
                    late_ratio: f.get("late_ratio").and_then(Value::as_f64).unwrap_or(0.0),
                    late_ms: n("late_ms"),
                    draw: n("seed").max(1),
                };
                ok(json!({ "faults": f }))
            }
            _ => error(404, "unknown sandbox control"),
        };
        return respond(request, reply);
    }

    let Some(rest) = url.strip_prefix("/api/v1/") else {
        return respond(request, error(404, "The requested API action does not exist"));
    };
    let (action, segment) = rest.split_once('/').unwrap_or((rest, ""));
    let action = action.to_owned();
    let authorized = {
        let key = state.lock().unwrap().api_key.clone();
        let expected = format!("Basic {}", base64_encode(&format!("{key}:")));
        request.headers().iter().any(|h| h.field.equiv("authorization") && h.value.as_str() == expected)
    };
    if !authorized {
        return respond(request, error(401, "Invalid API key provided"));
    }
    if action == "ratelimit" {
        let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
        return respond(request, ok(json!({ "limit": "10000", "remaining": "9999", "reset": reset.to_string() })));
    }
    let (delay, fault, late) = {
        let mut s = state.lock().unwrap();
        let delay = if s.faults.delay_next > 0 {
            s.faults.delay_next -= 1;
            Some(Duration::from_millis(s.faults.delay_ms))
        } else {
            None
        };
        // TalentLMS's burst cap: 200 calls per 5 s.
        let now = Instant::now();
        while s.burst.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(5)) {
            s.burst.pop_front();
        }
        s.burst.push_back(now);
        let fault = if s.faults.fail_next > 0 {
            s.faults.fail_next -= 1;
            let message = s.faults.fail_message.clone().unwrap_or_else(|| "Internal error".into());
            Some((500, json!({ "error": { "type": "api_error", "message": message } }), Vec::new()))
        } else if s.faults.rate_limit_next > 0 || s.burst.len() > 200 {
            s.faults.rate_limit_next = s.faults.rate_limit_next.saturating_sub(1);
            let wait = s.faults.retry_after_secs.max(1);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            let reset = match s.faults.reset_form.as_str() {
                "seconds" => wait,
                "past" => now - 3600,
                _ => now + wait,
            };
            let mut headers = vec![
                ("X-RateLimit-Limit".to_owned(), "200".to_owned()),
                ("X-RateLimit-Remaining".to_owned(), "0".to_owned()),
                ("X-RateLimit-Reset".to_owned(), reset.to_string()),
            ];
            if !s.faults.omit_retry_after {
                headers.push(("Retry-After".to_owned(), wait.to_string()));
            }
            Some((429, json!({ "error": { "type": "api_error", "message": "Rate limit exceeded" } }), headers))
        } else if s.faults.bad_json_next > 0 {
            s.faults.bad_json_next -= 1;
            Some((200, Value::String(BAD_JSON.to_owned()), Vec::new()))
        } else if s.faults.fail_ratio > 0.0 && s.faults.draw() < s.faults.fail_ratio {
            Some((500, json!({ "error": { "type": "api_error", "message": "Internal error" } }), Vec::new()))
        } else {
            None
        };
        let late = (fault.is_none() && s.faults.late_ratio > 0.0 && s.faults.draw() < s.faults.late_ratio)
            .then(|| Duration::from_millis(s.faults.late_ms));
        (delay, fault, late)
    };
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    let args = if method == Method::Post { form_args(&body) } else { path_args(segment) };
    let fault_name = match (&fault, late) {
        (Some((500, ..)), _) => Some("fail"),
        (Some((429, ..)), _) => Some("rate_limit"),
        (Some(_), _) => Some("bad_json"),
        (None, Some(_)) => Some("late"),
        (None, None) => None,
    };
    let reply = match fault {
        Some(reply) => reply,
        None => state.lock().unwrap().api(&method, &action, &args),
    };
    {
        let mut s = state.lock().unwrap();
        // Whom the call concerned, by email (null when it named no known user).
        let user = s.find_user(&args).map(|id| s.users[&id].email.clone());
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        s.calls.push(json!({
            "method": method.to_string(), "action": action, "status": reply.0, "user": user,
            "course": args.get("course_id"), "fault": fault_name, "at_ms": at_ms,
        }));
    }
    if let Some(late) = late {
        std::thread::sleep(late);
    }
    respond(request, reply);
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn main() {
    let mut port = 0u16;
    let mut api_key = "sandbox-api-key-0123456789abcdef".to_owned();
    let mut courses: BTreeSet<String> = (101..=110).map(|c| c.to_string()).collect();
    let mut signup_inactive = false;
    let mut signup_type = "Learner-Type".to_owned();
    let mut exit_with_stdin = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            "--api-key" => api_key = args.next().unwrap_or_default(),
            "--courses" => courses = args.next().unwrap_or_default().split(',').map(str::to_owned).collect(),
            "--signup-inactive" => signup_inactive = true,
            "--signup-type" => signup_type = args.next().unwrap_or_default(),
            "--exit-with-stdin" => exit_with_stdin = true,
            other => {
                eprintln!("lms-sandbox: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let server = lms_bridge_tools::listen("lms-sandbox", port);
    let state = Arc::new(Mutex::new(State {
        api_key,
        courses,
        signup_inactive,
        signup_type,
        users: BTreeMap::new(),
        next_id: 0,
        calls: Vec::new(),
        faults: Faults::default(),
        burst: VecDeque::new(),
    }));
    lms_bridge_tools::serve("lms-sandbox", server, state, 32, exit_with_stdin, handle);
}
