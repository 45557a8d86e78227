//! The Moodle sandbox matches the wire facts recorded from a real Moodle 4.5 over REST: each
//! test names the behaviour it pins ("observed": the table of REST responses recorded on the
//! real site; "expiry subtlety": the ±50 s rounding note after it; "provisioning functions":
//! the function-by-function notes). Every test runs its own sandbox over real HTTP.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::moodle_sandbox::{MoodleSandbox, ENDPOINT, MOODLE_TOKEN};
use serde_json::{json, Value};

const PASSWORD: &str = "Passw0rd!";

/// Creates a user (username, e-mail, strong password): the new id.
fn create(sb: &MoodleSandbox, username: &str, email: &str) -> u64 {
    let body = sb.call(
        "core_user_create_users",
        &[
            ("users[0][username]", username),
            ("users[0][password]", PASSWORD),
            ("users[0][firstname]", "Alice"),
            ("users[0][lastname]", "Liddell"),
            ("users[0][email]", email),
            ("users[0][idnumber]", "ext-001"),
            ("users[0][auth]", "manual"),
        ],
    );
    assert_eq!(body[0]["username"], username, "{body}");
    body[0]["id"].as_u64().unwrap()
}

fn enrol(sb: &MoodleSandbox, user: u64, course: u64, extra: &[(&str, &str)]) -> Value {
    let (user, course) = (user.to_string(), course.to_string());
    let mut params =
        vec![("enrolments[0][roleid]", "5"), ("enrolments[0][userid]", &*user), ("enrolments[0][courseid]", &*course)];
    params.extend_from_slice(extra);
    sb.call("enrol_manual_enrol_users", &params)
}

fn users_courses(sb: &MoodleSandbox, user: u64) -> Vec<u64> {
    let body = sb.call("core_enrol_get_users_courses", &[("userid", &user.to_string())]);
    body.as_array().unwrap_or_else(|| panic!("{body}")).iter().map(|c| c["id"].as_u64().unwrap()).collect()
}

fn assert_error(body: &Value, errorcode: &str, debuginfo: &str) {
    assert_eq!(body["errorcode"], errorcode, "{body}");
    assert_eq!(body["debuginfo"], debuginfo, "{body}");
}

// Observed: the credential probe, and the bad-token error (exact body).
#[test]
fn site_info_and_bad_token() {
    let sb = MoodleSandbox::start(&[]);
    let info = sb.call("core_webservice_get_site_info", &[]);
    assert_eq!(info["userid"], 2);
    assert_eq!(info["username"], "admin");
    assert_eq!(info["siteurl"], sb.url);
    assert_eq!(info["release"], "4.5+ (Build: 20241205)");
    let functions: Vec<&str> =
        info["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(functions.contains(&"enrol_manual_enrol_users"), "{functions:?}");

    let form = [("wstoken", "wrong"), ("wsfunction", "core_webservice_get_site_info"), ("moodlewsrestformat", "json")];
    let (status, body) = sb.post_raw(&form);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"exception":"core\\exception\\moodle_exception","errorcode":"invalidtoken","message":"Invalid token - token not found"}"#
    );
}

// Observed: a function outside the service, an unknown function.
#[test]
fn service_and_unknown_functions() {
    let sb = MoodleSandbox::start(&[]);
    let body = sb.call("core_user_delete_users", &[("userids[0]", "3")]);
    assert_eq!(
        body,
        json!({"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"})
    );
    sb.site(json!({ "not_in_service": ["enrol_manual_unenrol_users"] }));
    assert_eq!(sb.call("enrol_manual_unenrol_users", &[])["errorcode"], "accessexception");
    let body = sb.call("local_nothing_here", &[]);
    assert_eq!(body["exception"], "dml_missing_record_exception");
    assert_eq!(body["errorcode"], "invalidrecord");
    assert!(body["message"].as_str().unwrap().contains("table external_functions."), "{body}");
}

// Observed: no `moodlewsrestformat` → XML; GET with a query string works like POST; a JSON
// request body is not parsed; the REST protocol off → 403 with an empty body.
#[test]
fn formats_methods_and_protocol_off() {
    let sb = MoodleSandbox::start(&[]);
    let form = [
        ("wstoken", MOODLE_TOKEN),
        ("wsfunction", "core_user_get_users_by_field"),
        ("field", "username"),
        ("values[0]", "nobody"),
    ];
    let (status, xml) = sb.post_raw(&form);
    assert_eq!(status, 200);
    assert!(xml.contains("<RESPONSE>\n<MULTIPLE>\n</MULTIPLE>\n</RESPONSE>"), "{xml}");
    let (_, xml) = sb.post_raw(&[("wstoken", "wrong"), ("wsfunction", "core_webservice_get_site_info")]);
    assert!(xml.contains("<EXCEPTION class=\"core\\exception\\moodle_exception\">"), "{xml}");
    assert!(xml.contains("<ERRORCODE>invalidtoken</ERRORCODE>"), "{xml}");

    let client = reqwest::blocking::Client::new();
    let url = format!(
        "{}?wstoken={MOODLE_TOKEN}&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json",
        sb.endpoint()
    );
    let info: Value = client.get(&url).send().unwrap().json().unwrap();
    assert_eq!(info["userid"], 2);

    let url = format!(
        "{}?wstoken={MOODLE_TOKEN}&wsfunction=core_user_get_users_by_field&moodlewsrestformat=json",
        sb.endpoint()
    );
    let body: Value = client
        .post(&url)
        .json(&json!({ "field": "email", "values": ["a@example.com"] }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_error(&body, "invalidparameter", "Missing required key in single structure: field");

    sb.site(json!({ "rest_enabled": false }));
    let (status, body) = sb.post_raw(&[("wstoken", MOODLE_TOKEN), ("wsfunction", "core_webservice_get_site_info")]);
    assert_eq!((status, body.as_str()), (403, ""));
}

// Observed: a host other than the wwwroot's gets a 303 HTML "Redirect" page.
#[test]
fn other_host_is_redirected_to_the_wwwroot() {
    let sb = MoodleSandbox::start(&[]);
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form =
        [("wstoken", MOODLE_TOKEN), ("wsfunction", "core_webservice_get_site_info"), ("moodlewsrestformat", "json")];
    let response = client.post(format!("http://localhost:{}{ENDPOINT}", sb.port)).form(&form).send().unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], sb.url.as_str());
    assert!(response.text().unwrap().contains("<title>Redirect</title>"));
    // A wwwroot naming another host redirects even requests to 127.0.0.1.
    let other = MoodleSandbox::start(&["--wwwroot", "http://moodle.test"]);
    let response = client.post(other.endpoint()).form(&form).send().unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "http://moodle.test");
    assert_eq!(other.count("core_webservice_get_site_info"), 0);
}

// Observed: create, duplicate username, duplicate e-mail (any case), upper-case username,
// the HTML errorcode of the password policy, createpassword, missing password.
#[test]
fn create_users_checks() {
    let sb = MoodleSandbox::start(&[]);
    assert_eq!(create(&sb, "alice", "alice@example.com"), 3);
    let user = |username: &str, email: &str, password: &str| {
        vec![
            ("users[0][username]".to_owned(), username.to_owned()),
            ("users[0][password]".to_owned(), password.to_owned()),
            ("users[0][firstname]".to_owned(), "F".to_owned()),
            ("users[0][lastname]".to_owned(), "L".to_owned()),
            ("users[0][email]".to_owned(), email.to_owned()),
        ]
    };
    let call = |params: Vec<(String, String)>| {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sb.call("core_user_create_users", &params)
    };
    let body = call(user("alice", "other@example.com", PASSWORD));
    assert_eq!(body["exception"], "core\\exception\\invalid_parameter_exception");
    assert_eq!(body["message"], "Invalid parameter value detected");
    assert_error(&body, "invalidparameter", "Username already exists: alice");
    let body = call(user("bob", "ALICE@example.com", PASSWORD));
    assert_error(&body, "invalidparameter", "Email address already exists: ALICE@example.com");
    let body = call(user("Dave", "dave@example.com", PASSWORD));
    assert_error(
        &body,
        "invalidparameter",
        "users => Invalid parameter value detected: username => Invalid parameter value detected: \
         Invalid external api parameter: the value is \"Dave\", the server was expecting \"username\" type",
    );
    let body = call(user("dave", "dave@example.com", "weak"));
    assert_eq!(body["exception"], "core\\exception\\moodle_exception");
    let code = body["errorcode"].as_str().unwrap();
    assert!(code.starts_with("<div>Passwords must be at least 8 characters long.</div><div>"), "{body}");
    assert_eq!(body["message"], format!("error/{code}"));

    let mut params = user("dave", "dave@example.com", "weak");
    params.retain(|(k, _)| !k.ends_with("[password]"));
    let body = call(params.clone());
    assert_error(&body, "invalidparameter", "Invalid password: you must provide a password, or set createpassword.");
    params.push(("users[0][createpassword]".to_owned(), "1".to_owned()));
    assert_eq!(call(params)[0]["username"], "dave");

    // The call log: no token anywhere, passwords redacted.
    let state = sb.state();
    let log = state["calls"].to_string();
    assert!(!log.contains(MOODLE_TOKEN) && !log.contains(PASSWORD), "{log}");
    assert_eq!(state["counts"]["core_user_create_users"], 7);
    assert_eq!(state["users"].as_array().unwrap().len(), 4, "guest, admin, alice, dave");
}

// Observed: two users in one call; a batch with one bad entry creates nothing.
#[test]
fn create_users_batch_is_all_or_nothing() {
    let sb = MoodleSandbox::start(&[]);
    let batch = |second: &str| {
        sb.call(
            "core_user_create_users",
            &[
                ("users[0][username]", "erin"),
                ("users[0][password]", PASSWORD),
                ("users[0][firstname]", "Erin"),
                ("users[0][lastname]", "E"),
                ("users[0][email]", "erin@example.com"),
                ("users[1][username]", second),
                ("users[1][password]", PASSWORD),
                ("users[1][firstname]", "Frank"),
                ("users[1][lastname]", "F"),
                ("users[1][email]", "frank@example.com"),
            ],
        )
    };
    assert_eq!(batch("erin")["errorcode"], "invalidparameter");
    assert_eq!(sb.user_id("erin@example.com"), None);
    let body = batch("frank");
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert_eq!(body[1]["username"], "frank");
}

// Observed: lookups by username (several values), e-mail, id; `field=foo`; missing `values`;
// suspension through update_users and `{"warnings":[]}`; the visibility trap (provisioning
// functions, get_users_by_field) and debugging off.
#[test]
fn lookups_updates_and_visibility() {
    let sb = MoodleSandbox::start(&[]);
    let id = create(&sb, "alice", "alice@example.com");
    let body = sb.call(
        "core_user_get_users_by_field",
        &[("field", "username"), ("values[0]", "alice"), ("values[1]", "nobody")],
    );
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["fullname"], "Alice Liddell");
    assert_eq!(body[0]["idnumber"], "ext-001");
    assert_eq!(body[0]["suspended"], false);
    let by_email = sb.call("core_user_get_users_by_field", &[("field", "email"), ("values[0]", "alice@example.com")]);
    assert_eq!(by_email[0]["id"], id);
    assert_eq!(
        sb.call("core_user_get_users_by_field", &[("field", "id"), ("values[0]", &id.to_string())])[0]["username"],
        "alice"
    );
    assert_eq!(
        sb.call("core_user_get_users_by_field", &[("field", "email"), ("values[0]", "x@example.com")]),
        json!([])
    );
    let body = sb.call("core_user_get_users_by_field", &[("field", "foo"), ("values[0]", "x")]);
    assert_eq!(body["exception"], "core\\exception\\coding_exception");
    assert_eq!(body["message"], "Coding error detected, it must be fixed by a programmer: invalid field parameter");
    let body = sb.call("core_user_get_users_by_field", &[("field", "email")]);
    assert_error(&body, "invalidparameter", "Missing required key in single structure: values");

    let body = sb.call("core_user_update_users", &[("users[0][id]", &id.to_string()), ("users[0][suspended]", "1")]);
    assert_eq!(body, json!({ "warnings": [] }));
    assert_eq!(
        sb.call("core_user_get_users_by_field", &[("field", "email"), ("values[0]", "alice@example.com")])[0]
            ["suspended"],
        true
    );
    let body = sb.call("core_user_update_users", &[("users[0][id]", "9999"), ("users[0][suspended]", "0")]);
    assert_eq!(body["warnings"][0]["warningcode"], "invaliduserid");

    sb.site(json!({ "hide_emails": true, "debug": false }));
    assert_eq!(
        sb.call("core_user_get_users_by_field", &[("field", "email"), ("values[0]", "alice@example.com")]),
        json!([])
    );
    let body = sb.call("core_user_get_users_by_field", &[("field", "username"), ("values[0]", "alice")]);
    assert!(body[0].get("email").is_none(), "{body}");
    let body = sb.call("core_user_get_users_by_field", &[("field", "email")]);
    assert_eq!(
        body,
        json!({"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"})
    );
}

// Observed: enrol answers `null`, stores timeend; re-enrol without timeend resets it to 0;
// unknown course, unknown user (a TypeError without errorcode, batch rolled back), a role
// that may not be assigned; no enabled manual instance; suspend=1 and its omission.
#[test]
fn enrol_upserts_and_its_errors() {
    let sb = MoodleSandbox::start(&[]);
    let id = create(&sb, "alice", "alice@example.com");
    let end = (sb.clock(json!({}))["now"].as_i64().unwrap() + 3600).to_string();
    assert_eq!(enrol(&sb, id, 2, &[("enrolments[0][timeend]", &end)]), Value::Null);
    assert_eq!(sb.timeend_of("alice@example.com", 2), Some(end.parse().unwrap()));
    assert_eq!(sb.courses_of("alice@example.com"), vec![2]);
    assert_eq!(enrol(&sb, id, 2, &[]), Value::Null);
    assert_eq!(sb.timeend_of("alice@example.com", 2), Some(0), "an enrol without timeend means never");

    assert_error(&enrol(&sb, id, 9999, &[]), "invalidparameter", "Context does not exist");
    let body = sb.call(
        "enrol_manual_enrol_users",
        &[
            ("enrolments[0][roleid]", "5"),
            ("enrolments[0][userid]", &id.to_string()),
            ("enrolments[0][courseid]", "3"),
            ("enrolments[1][roleid]", "5"),
            ("enrolments[1][userid]", "9999"),
            ("enrolments[1][courseid]", "3"),
        ],
    );
    assert_eq!(body["exception"], "TypeError");
    assert!(body.get("errorcode").is_none(), "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("core\\user::get_name_placeholders(): Argument #1 ($user)"));
    assert_eq!(sb.courses_of("alice@example.com"), vec![2], "the batch was rolled back");

    let body = sb.call(
        "enrol_manual_enrol_users",
        &[
            ("enrolments[0][roleid]", "999"),
            ("enrolments[0][userid]", &id.to_string()),
            ("enrolments[0][courseid]", "2"),
        ],
    );
    assert_eq!(body["errorcode"], "wsusercannotassign");
    assert_eq!(
        body["message"],
        format!("You don't have the permission to assign this role (999) to this user ({id}) in this course (2).")
    );

    sb.add_course(20, "none");
    sb.add_course(21, "disabled");
    assert_eq!(enrol(&sb, id, 20, &[])["errorcode"], "wsnoinstance");
    assert_eq!(enrol(&sb, id, 21, &[])["errorcode"], "wsnoinstance");

    assert_eq!(enrol(&sb, id, 2, &[("enrolments[0][suspend]", "1")]), Value::Null);
    assert_eq!(sb.courses_of("alice@example.com"), Vec::<u64>::new());
    assert_eq!(users_courses(&sb, id), Vec::<u64>::new());
    enrol(&sb, id, 2, &[]);
    assert_eq!(sb.courses_of("alice@example.com"), vec![2], "omitting suspend reactivates");

    let enrolled = sb.call("core_enrol_get_enrolled_users", &[("courseid", "2")]);
    assert_eq!(enrolled[0]["roles"][0]["roleid"], 5);
    assert_eq!(enrolled[0]["roles"][0]["shortname"], "student");
    assert_eq!(enrolled[0]["enrolledcourses"][0]["id"], 2);
}

// Observed: an end in the past means the listing omits the course; the expiry subtlety:
// "now" rounded to the nearest 100 s, both directions.
#[test]
fn expiry_and_its_rounding() {
    let sb = MoodleSandbox::start(&[]);
    let id = create(&sb, "alice", "alice@example.com");
    let past = (sb.clock(json!({}))["now"].as_i64().unwrap() - 120).to_string();
    assert_eq!(enrol(&sb, id, 2, &[("enrolments[0][timeend]", &past)]), Value::Null);
    assert_eq!(users_courses(&sb, id), Vec::<u64>::new());
    assert_eq!(sb.courses_of("alice@example.com"), Vec::<u64>::new());
    assert!(sb.timeend_of("alice@example.com", 2).is_some(), "an expired enrolment stays");

    let t0: i64 = 1_800_000_000; // a multiple of 100
    let end = (t0 + 40).to_string();
    enrol(&sb, id, 3, &[("enrolments[0][timeend]", &end)]);
    sb.clock(json!({ "now": t0 + 45 })); // 5 s past the end, rounds down to t0
    assert_eq!(users_courses(&sb, id), vec![3], "still listed after its end");
    assert_eq!(sb.courses_of("alice@example.com"), Vec::<u64>::new(), "yet not active");
    let end = (t0 + 60).to_string();
    enrol(&sb, id, 3, &[("enrolments[0][timeend]", &end)]);
    sb.clock(json!({ "now": t0 + 55 })); // 5 s before the end, rounds up to t0 + 100
    assert_eq!(users_courses(&sb, id), Vec::<u64>::new(), "already not listed before its end");
    assert_eq!(sb.courses_of("alice@example.com"), vec![3], "yet active");
    let state = sb.state();
    let e = state["enrolments"].as_array().unwrap().iter().find(|e| e["courseid"] == 3).unwrap().clone();
    assert_eq!((e["active"].clone(), e["listed"].clone()), (json!(true), json!(false)));
    sb.clock(json!({ "advance_secs": 100 }));
    assert_eq!(sb.courses_of("alice@example.com"), Vec::<u64>::new());
}

// Observed: unenrol answers `null`, again `null` when not enrolled; unknown course and user.
#[test]
fn unenrol_is_idempotent() {
    let sb = MoodleSandbox::start(&[]);
    let id = create(&sb, "alice", "alice@example.com");
    enrol(&sb, id, 2, &[]);
    let unenrol = |user: &str, course: &str| {
        sb.call("enrol_manual_unenrol_users", &[("enrolments[0][userid]", user), ("enrolments[0][courseid]", course)])
    };
    assert_eq!(unenrol(&id.to_string(), "2"), Value::Null);
    assert_eq!(sb.timeend_of("alice@example.com", 2), None);
    assert_eq!(unenrol(&id.to_string(), "2"), Value::Null);
    assert_eq!(
        unenrol(&id.to_string(), "9999"),
        json!({"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course."})
    );
    assert_error(&unenrol("9999", "2"), "invalidparameter", "User id not exist: 9999");
}

// The transport faults: a web server's 503/502, a proxy's 429 with Retry-After, slow
// answers, HTML in a 200, lookups that find nobody; the call log says which met what.
#[test]
fn faults() {
    let sb = MoodleSandbox::start(&[]);
    let probe =
        [("wstoken", MOODLE_TOKEN), ("wsfunction", "core_webservice_get_site_info"), ("moodlewsrestformat", "json")];
    sb.faults(json!({ "fail_next": 1, "fail_status": 502 }));
    let (status, body) = sb.post_raw(&probe);
    assert_eq!(status, 502);
    assert!(body.contains("Bad Gateway"));
    assert_eq!(sb.post_raw(&probe).0, 200);

    sb.faults(json!({ "fail_next": 1 }));
    assert_eq!(sb.post_raw(&probe).0, 503);

    sb.faults(json!({ "rate_limit_next": 1, "retry_after_secs": 7 }));
    let response = reqwest::blocking::Client::new().post(sb.endpoint()).form(&probe).send().unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");

    sb.faults(json!({ "delay_next": 1, "delay_ms": 300 }));
    let started = std::time::Instant::now();
    assert_eq!(sb.post_raw(&probe).0, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    sb.faults(json!({ "html_next": 1 }));
    let (status, body) = sb.post_raw(&probe);
    assert_eq!(status, 200);
    assert!(body.starts_with("<!DOCTYPE html>"));

    create(&sb, "alice", "alice@example.com");
    sb.faults(json!({ "hide_next_lookups": 1 }));
    let lookup = [("field", "email"), ("values[0]", "alice@example.com")];
    assert_eq!(sb.call("core_user_get_users_by_field", &lookup), json!([]));
    assert_eq!(sb.call("core_user_get_users_by_field", &lookup).as_array().unwrap().len(), 1);

    sb.faults(json!({ "fail_ratio": 1.0, "seed": 3 }));
    assert_eq!(sb.post_raw(&probe).0, 503);
    sb.faults(json!({}));

    let state = sb.state();
    let faults: Vec<Value> = state["calls"].as_array().unwrap().iter().map(|c| c["fault"].clone()).collect();
    assert_eq!(
        faults,
        vec![
            json!("fail"),
            Value::Null,
            json!("fail"),
            json!("rate_limit"),
            Value::Null,
            json!("html"),
            Value::Null,
            json!("hide_lookup"),
            Value::Null,
            json!("fail"),
        ]
    );
    let lookup_call = &state["calls"][7];
    assert_eq!(lookup_call["emails"], json!(["alice@example.com"]));
    assert_eq!(state["counts"]["core_user_get_users_by_field"], 2);
}
