//! The Moodle sandbox: an HTTP server speaking the REST web-service protocol of Moodle 4.5 as
//! observed on a real site, with in-memory users, courses and manual enrolments, for tests
//! and local runs.
//!
//! Usage: `moodle-sandbox --port N [--token T] [--wwwroot URL] [--courses 2,3,4]
//! [--roles 1,3,4,5] [--no-debug] [--hide-emails] [--exit-with-stdin]` (port 0: any free
//! port, printed on stderr as `moodle-sandbox listening on 127.0.0.1:PORT`; `--wwwroot`
//! defaults to `http://127.0.0.1:PORT`; `--roles`: the role ids the service user may assign
//! in a course; `--no-debug`: errors without `debuginfo`, as on a production site;
//! `--hide-emails`: the service user cannot see e-mails).
//!
//! What it serves, as Moodle does:
//! * `{wwwroot}/webservice/rest/server.php`, GET or POST (`application/x-www-form-urlencoded`;
//!   a JSON body is not read), arguments in PHP bracket syntax (`users[0][username]=…`),
//!   `wstoken`, `wsfunction`, `moodlewsrestformat=json` (anything else, or nothing: XML).
//!   Every function error is an HTTP 200 with `{"exception","errorcode","message"
//!   [,"debuginfo"]}` (no `errorcode` for a PHP `TypeError`). Functions:
//!   `core_webservice_get_site_info`, `core_user_get_users_by_field`,
//!   `core_user_create_users`, `core_user_update_users`, `enrol_manual_enrol_users`,
//!   `enrol_manual_unenrol_users`, `core_enrol_get_users_courses`,
//!   `core_enrol_get_enrolled_users` (see `functions.rs` for each check).
//! * A request whose `Host` is not the wwwroot's host:port gets a 303 HTML redirect page to
//!   the wwwroot (whose front page is an HTML 200), as Moodle's setup does.
//! * With the REST protocol disabled (`POST /_sandbox/site`), the endpoint is an HTTP 403
//!   with an empty body.
//!
//! Control API for tests (JSON; no host check):
//! * `GET /_sandbox/state`: `now` (the sandbox clock), users (`id, username, email,
//!   firstname, lastname, idnumber, auth, suspended`), courses (`id, shortname, fullname,
//!   manual`: enabled/disabled/none), enrolments (`userid, courseid, email, roleid, roleids,
//!   status, timestart, timeend, active` at the clock exactly, `listed`: whether the listing
//!   functions show it now, with their ±50 s rounding), the call log and per-function counts,
//!   the site settings. Each logged call has `function`, `params` (the token is never logged,
//!   passwords are redacted), `http` status, `error` (errorcode, else exception class, null
//!   on success), `fault`, `format`, `at_ms` (Unix ms), `emails` and `courses` it named.
//! * `POST /_sandbox/faults` replaces every switch with any of `{"fail_next":n,
//!   "fail_status":503|502|500,"rate_limit_next":n,"rate_limit_status":429|503,
//!   "retry_after_secs":s,"omit_retry_after":bool,"delay_next":n,"delay_ms":ms,"html_next":n,
//!   "hide_next_lookups":n,"fail_ratio":r,"late_ratio":r,"late_ms":ms,"seed":s}`: the next `n`
//!   API calls answer `fail_status` (default 503) with a web server's HTML page, without
//!   acting; or `rate_limit_status` (default 429, as a proxy in front would: Moodle itself
//!   has no rate limit) with `Retry-After: s` unless omitted; or wait `delay_ms` first; or
//!   answer 200 with an HTML page; the next `n` user lookups find nobody. The ratios hold
//!   until the next faults call: that share of API calls (drawn from `seed`) answers 503
//!   without acting, or acts and only answers after `late_ms` (the ambiguous timeout).
//! * `POST /_sandbox/site` changes only the given settings: `{"debug":bool,
//!   "hide_emails":bool,"rest_enabled":bool,"not_in_service":["fn",…],
//!   "assignable_roles":[5,…]}`.
//! * `POST /_sandbox/courses` with `{"id":n,"shortname"?,"fullname"?,"manual"?:
//!   "enabled"|"disabled"|"none"}`: creates (or changes) a course as an admin would.
//! * `POST /_sandbox/users` with `{"email","username"?,"firstname"?,"lastname"?,"idnumber"?,
//!   "auth"?,"suspended"?,"courses"?:[ids]}`: adds a user as an admin would (enrolled as a
//!   student, without end, in `courses`).
//! * `GET|POST /_sandbox/clock`: `{"now":T}` freezes the clock at Unix time T,
//!   `{"offset_secs":n}` runs it n seconds off the system clock, `{"advance_secs":n}` moves
//!   it, `{}` resets it; answers `{"now","offset_secs","frozen"}`.

mod functions;
mod params;
mod wire;

use functions::{Course, Enrolment, Manual, Moodle, Site, User};
use params::{decode_pairs, parse, Param};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tiny_http::{Header, Method, Request, Response};
use wire::MoodleError;

const ENDPOINT: &str = "/webservice/rest/server.php";

#[derive(Default)]
struct Faults {
    fail_next: u32,
    fail_status: u16,
    rate_limit_next: u32,
    rate_limit_status: u16,
    retry_after_secs: u64,
    omit_retry_after: bool,
    delay_next: u32,
    delay_ms: u64,
    html_next: u32,
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

#[derive(Default)]
struct Clock {
    offset_secs: i64,
    frozen: Option<i64>,
}

impl Clock {
    fn now(&self) -> i64 {
        self.frozen.unwrap_or_else(|| system_secs() + self.offset_secs)
    }
}

struct State {
    token: String,
    moodle: Moodle,
    clock: Clock,
    faults: Faults,
    calls: Vec<Value>,
}

fn system_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn system_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer: status, content type, body, extra headers.
struct Reply {
    status: u16,
    kind: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Self { status, kind: "application/json", body: body.to_string(), headers: Vec::new() }
    }

    fn html(status: u16, body: String) -> Self {
        Self { status, kind: "text/html; charset=utf-8", body, headers: Vec::new() }
    }
}

fn respond(request: Request, reply: Reply) {
    let mut response = Response::from_string(reply.body).with_status_code(reply.status);
    let headers = std::iter::once(("Content-Type", reply.kind.to_owned())).chain(reply.headers);
    for (k, v) in headers {
        if let Ok(header) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
}

/// A web server's own error page (the request never reached Moodle).
fn server_page(status: u16) -> Reply {
    let reason = match status {
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Time-out",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    Reply::html(
        status,
        format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        ),
    )
}

fn user_state(u: &User) -> Value {
    json!({
        "id": u.id, "username": u.username, "email": u.email, "firstname": u.firstname, "lastname": u.lastname,
        "idnumber": u.idnumber, "auth": u.auth, "suspended": u.suspended, "password_mailed": u.password_mailed,
    })
}

impl State {
    fn snapshot(&self) -> Value {
        let now = self.clock.now();
        let m = &self.moodle;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for call in &self.calls {
            *counts.entry(call["function"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        let enrolments: Vec<Value> = m
            .enrolments
            .iter()
            .map(|((userid, courseid), e)| {
                json!({
                    "userid": userid, "courseid": courseid,
                    "email": m.users.get(userid).map(|u| u.email.clone()),
                    "roleid": e.roles.iter().next(), "roleids": e.roles,
                    "status": if e.suspended { "suspended" } else { "active" },
                    "timestart": e.timestart, "timeend": e.timeend,
                    "active": e.active(now), "listed": e.listed(now),
                })
            })
            .collect();
        json!({
            "now": now,
            "wwwroot": m.wwwroot,
            "users": m.users.values().map(user_state).collect::<Vec<_>>(),
            "courses": m.courses.values().map(|c| json!({
                "id": c.id, "shortname": c.shortname, "fullname": c.fullname, "manual": c.manual.name(),
            })).collect::<Vec<_>>(),
            "enrolments": enrolments,
            "calls": self.calls,
            "counts": counts,
            "site": {
                "debug": m.site.debug, "hide_emails": m.site.hide_emails, "rest_enabled": m.site.rest_enabled,
                "not_in_service": m.site.not_in_service, "assignable_roles": m.site.assignable_roles,
            },
        })
    }

    fn clock_json(&self) -> Value {
        json!({ "now": self.clock.now(), "offset_secs": self.clock.offset_secs, "frozen": self.clock.frozen.is_some() })
    }

    /// `POST /_sandbox/courses`.
    fn add_course(&mut self, spec: &Value) -> Reply {
        let id = spec.get("id").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
        let Some(id) = id.filter(|id| *id > 1) else {
            return Reply::json(400, &json!({ "error": "a course needs a numeric id above 1 (1 is the site)" }));
        };
        let manual = match spec.get("manual").and_then(Value::as_str).unwrap_or("enabled") {
            "enabled" => Manual::Enabled,
            "disabled" => Manual::Disabled,
            "none" => Manual::Missing,
            other => return Reply::json(400, &json!({ "error": format!("manual: {other}?") })),
        };
        let text = |k: &str, default: String| spec.get(k).and_then(Value::as_str).map_or(default, str::to_owned);
        let course = Course {
            id,
            shortname: text("shortname", format!("C{id}")),
            fullname: text("fullname", format!("Course {id}")),
            manual,
        };
        let body = json!({ "id": id, "shortname": course.shortname, "manual": manual.name() });
        self.moodle.courses.insert(id, course);
        Reply::json(200, &body)
    }

    /// `POST /_sandbox/users`.
    fn add_user(&mut self, spec: &Value) -> Reply {
        let text = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(email) = text("email") else { return Reply::json(400, &json!({ "error": "email is required" })) };
        let m = &mut self.moodle;
        m.next_user_id += 1;
        let user = User {
            id: m.next_user_id,
            username: text("username").unwrap_or_else(|| email.to_lowercase()),
            firstname: text("firstname").unwrap_or_else(|| "First".into()),
            lastname: text("lastname").unwrap_or_else(|| "Last".into()),
            idnumber: text("idnumber").unwrap_or_default(),
            auth: text("auth").unwrap_or_else(|| "manual".into()),
            suspended: spec.get("suspended").and_then(Value::as_bool).unwrap_or(false),
            password_mailed: false,
            email,
        };
        for course in spec.get("courses").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_u64) {
            let enrolment = Enrolment { roles: BTreeSet::from([5]), timestart: 0, timeend: 0, suspended: false };
            m.enrolments.insert((user.id, course), enrolment);
        }
        let body = user_state(&user);
        m.users.insert(user.id, user);
        Reply::json(200, &body)
    }

    /// `POST /_sandbox/site`.
    fn set_site(&mut self, spec: &Value) -> Reply {
        let site = &mut self.moodle.site;
        let flag = |k: &str| spec.get(k).and_then(Value::as_bool);
        if let Some(v) = flag("debug") {
            site.debug = v;
        }
        if let Some(v) = flag("hide_emails") {
            site.hide_emails = v;
        }
        if let Some(v) = flag("rest_enabled") {
            site.rest_enabled = v;
        }
        if let Some(list) = spec.get("not_in_service").and_then(Value::as_array) {
            site.not_in_service = list.iter().filter_map(Value::as_str).map(str::to_owned).collect();
        }
        if let Some(list) = spec.get("assignable_roles").and_then(Value::as_array) {
            site.assignable_roles = list.iter().filter_map(Value::as_u64).collect();
        }
        Reply::json(200, &self.snapshot()["site"])
    }

    /// `GET|POST /_sandbox/clock`.
    fn set_clock(&mut self, spec: &Value) -> Reply {
        let n = |k: &str| spec.get(k).and_then(Value::as_i64);
        if spec.as_object().is_some_and(serde_json::Map::is_empty) {
            self.clock = Clock::default();
        }
        if let Some(now) = n("now") {
            self.clock.frozen = Some(now);
        }
        if let Some(offset) = n("offset_secs") {
            self.clock = Clock { offset_secs: offset, frozen: None };
        }
        if let Some(advance) = n("advance_secs") {
            match &mut self.clock.frozen {
                Some(now) => *now += advance,
                None => self.clock.offset_secs += advance,
            }
        }
        Reply::json(200, &self.clock_json())
    }

    fn set_faults(&mut self, f: &Value) -> Reply {
        let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
        let ratio = |k: &str| f.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let status = |k: &str, default: u16| {
            f.get(k).and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()).unwrap_or(default)
        };
        self.faults = Faults {
            fail_next: n("fail_next") as u32,
            fail_status: status("fail_status", 503),
            rate_limit_next: n("rate_limit_next") as u32,
            rate_limit_status: status("rate_limit_status", 429),
            retry_after_secs: n("retry_after_secs").max(1),
            omit_retry_after: f.get("omit_retry_after").and_then(Value::as_bool).unwrap_or(false),
            delay_next: n("delay_next") as u32,
            delay_ms: n("delay_ms"),
            html_next: n("html_next") as u32,
            hide_next_lookups: n("hide_next_lookups") as u32,
            fail_ratio: ratio("fail_ratio"),
            late_ratio: ratio("late_ratio"),
            late_ms: n("late_ms"),
            draw: n("seed").max(1),
        };
        Reply::json(200, &json!({ "faults": f }))
    }

    fn control(&mut self, method: &Method, path: &str, body: &str) -> Reply {
        let spec: Value = serde_json::from_str(body).unwrap_or_else(|_| json!({}));
        match (method, path) {
            (Method::Get, "state") => Reply::json(200, &self.snapshot()),
            (Method::Get, "clock") => Reply::json(200, &self.clock_json()),
            (Method::Post, "clock") => self.set_clock(&spec),
            (Method::Post, "faults") => self.set_faults(&spec),
            (Method::Post, "site") => self.set_site(&spec),
            (Method::Post, "courses") => self.add_course(&spec),
            (Method::Post, "users") => self.add_user(&spec),
            _ => Reply::json(404, &json!({ "error": "unknown sandbox control" })),
        }
    }

    /// The transport-level fault this call meets, if any (counted down here).
    fn transport_fault(&mut self) -> Option<(&'static str, Reply)> {
        let f = &mut self.faults;
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return Some(("fail", server_page(f.fail_status)));
        }
        if f.rate_limit_next > 0 {
            f.rate_limit_next -= 1;
            let mut reply = server_page(f.rate_limit_status);
            if !f.omit_retry_after {
                reply.headers.push(("Retry-After", f.retry_after_secs.to_string()));
            }
            return Some(("rate_limit", reply));
        }
        if f.html_next > 0 {
            f.html_next -= 1;
            let page = "<!DOCTYPE html><html><head><title>Site maintenance</title></head><body>\
                        <h1>This site is undergoing maintenance</h1></body></html>";
            return Some(("html", Reply::html(200, page.to_owned())));
        }
        if f.fail_ratio > 0.0 && f.draw() < f.fail_ratio {
            return Some(("fail", server_page(503)));
        }
        None
    }
}

/// Who and what a call named: e-mails (given, or of the user ids named) and course ids.
fn named(moodle: &Moodle, function: &str, params: &Param) -> (Vec<String>, Vec<u64>) {
    let mut emails = BTreeSet::new();
    let mut courses = BTreeSet::new();
    fn walk(p: &Param, key: &str, parent: &str, out: &mut Vec<(String, String, String)>) {
        match p {
            Param::Text(t) => out.push((parent.to_owned(), key.to_owned(), t.clone())),
            Param::Array(items) => items.iter().for_each(|(k, v)| walk(v, k, key, out)),
        }
    }
    let mut leaves = Vec::new();
    walk(params, "", "", &mut leaves);
    let field = params.get("field").and_then(|f| if let Param::Text(t) = f { Some(t.clone()) } else { None });
    let email_of = |id: &str| id.parse::<u64>().ok().and_then(|id| moodle.users.get(&id)).map(|u| u.email.clone());
    for (parent, key, value) in leaves {
        let user_id = key == "userid" || (key == "id" && function == "core_user_update_users");
        if user_id || (parent == "values" && field.as_deref() == Some("id")) {
            emails.extend(email_of(&value));
        } else if key == "email" || (parent == "values" && field.as_deref() == Some("email")) {
            emails.insert(value);
        } else if key == "courseid" {
            courses.extend(value.parse::<u64>().ok());
        }
    }
    (emails.into_iter().collect(), courses.into_iter().collect())
}

fn split_top(param: Param) -> Vec<(String, Param)> {
    match param {
        Param::Array(items) => items,
        Param::Text(_) => Vec::new(),
    }
}

fn header(request: &Request, name: &'static str) -> Option<String> {
    request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_owned())
}

fn api(state: &Mutex<State>, method: &Method, query: &str, content_type: &str, body: &str) -> Reply {
    let (rest_enabled, delay, fault, late) = {
        let mut s = lock(state);
        let delay = (s.faults.delay_next > 0).then(|| {
            s.faults.delay_next -= 1;
            Duration::from_millis(s.faults.delay_ms)
        });
        let fault = s.transport_fault();
        let late = (fault.is_none() && s.faults.late_ratio > 0.0 && s.faults.draw() < s.faults.late_ratio)
            .then(|| Duration::from_millis(s.faults.late_ms));
        (s.moodle.site.rest_enabled, delay, fault, late)
    };
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    // PHP: `$_GET` and `$_POST` (only for a form body) merged, `$_POST` winning per top key.
    let mut args = split_top(parse(&decode_pairs(query)));
    if *method == Method::Post && content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in split_top(parse(&decode_pairs(body))) {
            args.retain(|(key, _)| *key != k);
            args.push((k, v));
        }
    }
    let mut take = |name: &str| {
        let position = args.iter().position(|(k, _)| k == name)?;
        match args.remove(position).1 {
            Param::Text(t) => Some(t),
            Param::Array(_) => None,
        }
    };
    let token = take("wstoken").unwrap_or_default();
    let function = take("wsfunction").unwrap_or_default();
    let json_format = take("moodlewsrestformat").as_deref() == Some("json");
    let params = Param::Array(args);

    let mut s = lock(state);
    let now = s.clock.now();
    let debug = s.moodle.site.debug;
    let (fault_name, reply, error) = if let Some((name, reply)) = fault {
        (Some(name), reply, None)
    } else if !rest_enabled {
        (None, Reply { status: 403, kind: "text/html; charset=utf-8", body: String::new(), headers: Vec::new() }, None)
    } else {
        let hide_lookup = function == "core_user_get_users_by_field" && s.faults.hide_next_lookups > 0;
        if hide_lookup {
            s.faults.hide_next_lookups -= 1;
        }
        let result = if token != s.token {
            Err(MoodleError::moodle("invalidtoken", "Invalid token - token not found"))
        } else {
            s.moodle.call(&function, &params, now, hide_lookup)
        };
        let error = result.as_ref().err().map(|e| e.errorcode.clone().unwrap_or_else(|| e.exception.to_owned()));
        let reply = match (result, json_format) {
            (Ok(v), true) => Reply { status: 200, kind: "application/json", body: wire::json(&v), headers: Vec::new() },
            (Err(e), true) => {
                Reply { status: 200, kind: "application/json", body: wire::error_json(&e, debug), headers: Vec::new() }
            }
            (Ok(v), false) => {
                Reply { status: 200, kind: "application/xml; charset=utf-8", body: wire::xml(&v), headers: Vec::new() }
            }
            (Err(e), false) => Reply {
                status: 200,
                kind: "application/xml; charset=utf-8",
                body: wire::error_xml(&e, debug),
                headers: Vec::new(),
            },
        };
        (hide_lookup.then_some("hide_lookup"), reply, error)
    };
    let (emails, courses) = named(&s.moodle, &function, &params);
    let fault_name = fault_name.or(late.map(|_| "late"));
    s.calls.push(json!({
        "function": function, "params": params.redacted(), "http": reply.status, "error": error,
        "fault": fault_name, "format": if json_format { "json" } else { "xml" }, "at_ms": system_ms(),
        "emails": emails, "courses": courses,
    }));
    drop(s);
    if let Some(late) = late {
        std::thread::sleep(late);
    }
    reply
}

fn handle(state: &Mutex<State>, mut request: Request) {
    let url = request.url().to_owned();
    let method = request.method().clone();
    let mut body = String::new();
    let _ = request.as_reader().take(8 << 20).read_to_string(&mut body);
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));

    if let Some(control) = path.strip_prefix("/_sandbox/") {
        let reply = lock(state).control(&method, control, &body);
        return respond(request, reply);
    }

    let wwwroot = lock(state).moodle.wwwroot.clone();
    let after_scheme = wwwroot.split_once("://").map_or(wwwroot.as_str(), |(_, rest)| rest);
    let (authority, root_path) = after_scheme.split_once('/').unwrap_or((after_scheme, ""));
    let host = header(&request, "host");
    if host.is_some_and(|h| !h.eq_ignore_ascii_case(authority)) {
        // Moodle's setup: any other host or port than the wwwroot's is sent to the wwwroot.
        let page = format!(
            "<!DOCTYPE html><html><head><title>Redirect</title></head><body><div>Incorrect access detected, \
             this server may be accessed only through \"{wwwroot}\" address, sorry.</div>\
             <a href=\"{wwwroot}\">Continue</a></body></html>"
        );
        let mut reply = Reply::html(303, page);
        reply.headers.push(("Location", wwwroot.clone()));
        return respond(request, reply);
    }
    let root_path = format!("/{}", root_path.trim_end_matches('/'));
    let local = path.strip_prefix(root_path.trim_end_matches('/')).unwrap_or("");
    let reply = match local {
        ENDPOINT => {
            let content_type = header(&request, "content-type").unwrap_or_default();
            api(state, &method, query, &content_type, &body)
        }
        "" | "/" | "/index.php" => Reply::html(
            200,
            "<!DOCTYPE html><html><head><title>Moodle Test Site</title></head><body>\
             <h1>Moodle Test Site</h1><p>You are not logged in.</p></body></html>"
                .to_owned(),
        ),
        _ => Reply::html(404, "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>".to_owned()),
    };
    respond(request, reply);
}

fn ids(list: &str, flag: &str) -> BTreeSet<u64> {
    let parsed: Result<BTreeSet<u64>, _> = list.split(',').filter(|s| !s.is_empty()).map(str::parse).collect();
    parsed.unwrap_or_else(|e| {
        eprintln!("moodle-sandbox: {flag} takes numeric ids separated by commas: {e}");
        std::process::exit(2);
    })
}

fn main() {
    let mut port = 0u16;
    let mut token = "sandbox-moodle-token-0123456789abcdef".to_owned();
    let mut wwwroot: Option<String> = None;
    let mut courses: BTreeSet<u64> = (2..=11).collect();
    let mut roles: BTreeSet<u64> = BTreeSet::from([1, 3, 4, 5]);
    let (mut debug, mut hide_emails, mut exit_with_stdin) = (true, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            "--token" => token = args.next().unwrap_or_default(),
            "--wwwroot" => wwwroot = args.next().map(|w| w.trim_end_matches('/').to_owned()),
            "--courses" => courses = ids(&args.next().unwrap_or_default(), "--courses"),
            "--roles" => roles = ids(&args.next().unwrap_or_default(), "--roles"),
            "--no-debug" => debug = false,
            "--hide-emails" => hide_emails = true,
            "--exit-with-stdin" => exit_with_stdin = true,
            other => {
                eprintln!("moodle-sandbox: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let server = lms_bridge_tools::listen("moodle-sandbox", port);
    let bound = server.server_addr().to_ip().map_or(port, |a| a.port());
    let wwwroot = wwwroot.unwrap_or_else(|| format!("http://127.0.0.1:{bound}"));
    let site_user = |id: u64, username: &str, email: &str, first: &str, last: &str| User {
        id,
        username: username.to_owned(),
        email: email.to_owned(),
        firstname: first.to_owned(),
        lastname: last.to_owned(),
        idnumber: String::new(),
        auth: "manual".to_owned(),
        suspended: false,
        password_mailed: false,
    };
    let moodle = Moodle {
        wwwroot,
        site: Site { debug, hide_emails, rest_enabled: true, not_in_service: BTreeSet::new(), assignable_roles: roles },
        // Every site has the guest (1) and the admin (2); new users start at 3.
        users: BTreeMap::from([
            (1, site_user(1, "guest", "root@localhost", "Guest user", " ")),
            (2, site_user(2, "admin", "admin@moodle.test", "Admin", "User")),
        ]),
        next_user_id: 2,
        courses: courses
            .into_iter()
            .map(|id| {
                let course = Course {
                    id,
                    shortname: format!("C{id}"),
                    fullname: format!("Course {id}"),
                    manual: Manual::Enabled,
                };
                (id, course)
            })
            .collect(),
        enrolments: BTreeMap::new(),
    };
    let state = Arc::new(Mutex::new(State {
        token,
        moodle,
        clock: Clock::default(),
        faults: Faults::default(),
        calls: Vec::new(),
    }));
    lms_bridge_tools::serve("moodle-sandbox", server, state, 16, exit_with_stdin, handle);
}
