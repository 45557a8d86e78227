//! The adapter against a scripted local HTTP server answering as a real Moodle 4.5 does: each
//! test says what every function answers, and reads back the form fields each call sent.

use super::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lms_bridge_shared::StudentKey;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "tok3n-CANARY-do-not-leak";
const KEY: &str = "7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b";
const INVALID_PARAMETER: &str = r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#;

/// One request as the server got it.
#[derive(Debug, Clone)]
struct Call {
    function: String,
    fields: BTreeMap<String, String>,
    content_type: String,
}

impl Call {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

type Script = dyn Fn(&Call, usize) -> (u16, String) + Send + Sync;

#[derive(Clone)]
struct Server {
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Script>,
}

async fn server_php(State(server): State<Server>, headers: HeaderMap, body: Bytes) -> Response {
    let fields: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let call = Call {
        function: fields.get("wsfunction").cloned().unwrap_or_default(),
        content_type: headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        fields,
    };
    let nth = {
        let mut calls = server.calls.lock().unwrap();
        let nth = calls.iter().filter(|c| c.function == call.function).count();
        calls.push(call.clone());
        nth
    };
    if call.field("wstoken") != TOKEN || call.field("moodlewsrestformat") != "json" {
        let body = r#"{"exception":"core\\exception\\moodle_exception","errorcode":"invalidtoken","message":"Invalid token - token not found"}"#;
        return (StatusCode::OK, body).into_response();
    }
    let (status, body) = (server.script)(&call, nth);
    let status = StatusCode::from_u16(status).unwrap();
    if status.is_redirection() {
        return (status, [("location", "/elsewhere")], body).into_response();
    }
    (status, [("content-type", "application/json")], body).into_response()
}

/// A Moodle on a free local port; `script(call, n)` answers the `n`-th call (from 0) of
/// `call.function`.
struct Fake {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Fake {
    async fn start(script: impl Fn(&Call, usize) -> (u16, String) + Send + Sync + 'static) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = Server { calls: Arc::clone(&calls), script: Arc::new(script) };
        let app = axum::Router::new()
            .route("/moodle/webservice/rest/server.php", axum::routing::post(server_php))
            .route("/elsewhere", axum::routing::any(|| async { "null" }))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/moodle", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, calls }
    }

    fn moodle(&self) -> Moodle {
        Moodle::new(MoodleConfig::new(&self.url, Secret::new(TOKEN))).unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn functions(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.function).collect()
    }

    fn only(&self, function: &str) -> Call {
        let calls: Vec<Call> = self.calls().into_iter().filter(|c| c.function == function).collect();
        assert_eq!(calls.len(), 1, "{function}: {calls:?}");
        calls.into_iter().next().unwrap()
    }
}

fn ok(body: impl ToString) -> (u16, String) {
    (200, body.to_string())
}

fn ana() -> LmsStudent {
    LmsStudent {
        email: "ana.souza@example.com".into(),
        first_name: "Ana".into(),
        last_name: "Souza".into(),
        key: StudentKey::parse(KEY).unwrap(),
    }
}

fn moodle_user(id: u64, email: &str, idnumber: &str, suspended: bool) -> Value {
    json!({"id": id, "username": "someone", "fullname": "Some One", "email": email, "idnumber": idnumber,
        "auth": "manual", "suspended": suspended, "confirmed": true})
}

fn permanent(result: Result<impl fmt::Debug, LmsError>) -> String {
    match result {
        Err(LmsError::Permanent(message)) => message,
        other => panic!("not a permanent failure: {other:?}"),
    }
}

fn transient(result: Result<impl fmt::Debug, LmsError>) -> String {
    match result {
        Err(LmsError::Transient { message, .. }) => message,
        other => panic!("not a transient failure: {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_user_is_created_with_a_lower_case_username_and_a_mailed_password() {
    let fake = Fake::start(|call, _| match call.function.as_str() {
        "core_user_get_users_by_field" => ok("[]"),
        "core_user_create_users" => ok(r#"[{"id":42,"username":"ana.souza@example.com"}]"#),
        other => panic!("{other}"),
    })
    .await;
    let student = LmsStudent { email: "Ana.Souza@Example.com".into(), ..ana() };
    let user = fake.moodle().ensure_user(&student).await.unwrap();
    assert_eq!(user, EnsuredUser { id: LmsUserId("42".into()), created: true, learner: true });
    let lookup = fake.only("core_user_get_users_by_field");
    assert_eq!(lookup.content_type, "application/x-www-form-urlencoded");
    assert_eq!((lookup.field("field"), lookup.field("values[0]")), ("email", "ana.souza@example.com"));
    let create = fake.only("core_user_create_users");
    for (name, value) in [
        ("users[0][username]", "ana.souza@example.com"),
        ("users[0][email]", "ana.souza@example.com"),
        ("users[0][firstname]", "Ana"),
        ("users[0][lastname]", "Souza"),
        ("users[0][auth]", "manual"),
        ("users[0][createpassword]", "1"),
        ("users[0][idnumber]", KEY),
    ] {
        assert_eq!(create.field(name), value, "{name}");
    }
    assert!(!create.fields.contains_key("users[0][password]"));
}

#[tokio::test]
async fn an_existing_user_is_used_as_is() {
    let fake = Fake::start(|_, _| ok(json!([moodle_user(7, "ana.souza@example.com", "", false)]))).await;
    let user = fake.moodle().ensure_user(&ana()).await.unwrap();
    assert_eq!(user, EnsuredUser { id: LmsUserId("7".into()), created: false, learner: false });
    assert_eq!(fake.functions(), ["core_user_get_users_by_field"]);
}

#[tokio::test]
async fn a_suspended_user_the_bridge_made_is_unsuspended() {
    let fake = Fake::start(|call, _| match call.function.as_str() {
        "core_user_get_users_by_field" => ok(json!([moodle_user(7, "ana.souza@example.com", KEY, true)])),
        "core_user_update_users" => ok(r#"{"warnings":[]}"#),
        other => panic!("{other}"),
    })
    .await;
    let user = fake.moodle().ensure_user(&ana()).await.unwrap();
    assert_eq!(user, EnsuredUser { id: LmsUserId("7".into()), created: false, learner: true });
    let update = fake.only("core_user_update_users");
    assert_eq!((update.field("users[0][id]"), update.field("users[0][suspended]")), ("7", "0"));
}

#[tokio::test]
async fn someone_elses_suspended_user_stays_suspended() {
    let fake = Fake::start(|_, _| ok(json!([moodle_user(8, "ana.souza@example.com", "T-1", true)]))).await;
    let user = fake.moodle().ensure_user(&ana()).await.unwrap();
    assert_eq!(user, EnsuredUser { id: LmsUserId("8".into()), created: false, learner: false });
    assert_eq!(fake.functions(), ["core_user_get_users_by_field"]);
}

#[tokio::test]
async fn already_exists_resolves_to_the_user_found_on_a_second_look() {
    let fake = Fake::start(|call, n| match (call.function.as_str(), n) {
        ("core_user_get_users_by_field", 0) => ok("[]"),
        ("core_user_get_users_by_field", _) => ok(json!([moodle_user(9, "ana.souza@example.com", KEY, false)])),
        ("core_user_create_users", _) => ok(INVALID_PARAMETER),
        other => panic!("{other:?}"),
    })
    .await;
    let user = fake.moodle().ensure_user(&ana()).await.unwrap();
    assert_eq!(user, EnsuredUser { id: LmsUserId("9".into()), created: false, learner: true });
    assert_eq!(
        fake.functions(),
        ["core_user_get_users_by_field", "core_user_create_users", "core_user_get_users_by_field"]
    );
}

#[tokio::test]
async fn a_username_held_by_another_user_moves_on_to_a_suffixed_one() {
    let fake = Fake::start(|call, n| match (call.function.as_str(), n) {
        ("core_user_get_users_by_field", _) if call.field("field") == "email" => ok("[]"),
        ("core_user_get_users_by_field", _) => ok(json!([moodle_user(3, "other@example.com", "", false)])),
        ("core_user_create_users", 0) => ok(INVALID_PARAMETER),
        ("core_user_create_users", _) => ok(r#"[{"id":43,"username":"x"}]"#),
        other => panic!("{other:?}"),
    })
    .await;
    let user = fake.moodle().ensure_user(&ana()).await.unwrap();
    assert_eq!(user, EnsuredUser { id: LmsUserId("43".into()), created: true, learner: true });
    let usernames: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.function == "core_user_create_users")
        .map(|c| c.field("users[0][username]").to_owned())
        .collect();
    assert_eq!(usernames, ["ana.souza@example.com", "ana.souza@example.com-7fd726"]);
    let holder = &fake.calls()[3];
    assert_eq!((holder.field("field"), holder.field("values[0]")), ("username", "ana.souza@example.com"));
}

#[tokio::test]
async fn a_refusal_with_nobody_to_find_explains_the_visibility_trap() {
    let fake = Fake::start(|call, _| match call.function.as_str() {
        "core_user_get_users_by_field" => ok("[]"),
        _ => ok(INVALID_PARAMETER),
    })
    .await;
    let message = permanent(fake.moodle().ensure_user(&ana()).await);
    assert!(message.contains("moodle/site:viewuseridentity"), "{message}");
    assert!(!message.contains("ana.souza"), "{message}");
}

#[tokio::test]
async fn several_users_with_the_email_are_refused() {
    let fake = Fake::start(|_, _| {
        ok(json!([
            moodle_user(1, "ana.souza@example.com", "", false),
            moodle_user(2, "ana.souza@example.com", "", false)
        ]))
    })
    .await;
    assert!(permanent(fake.moodle().ensure_user(&ana()).await).contains("2 Moodle users share"));
}

#[tokio::test]
async fn a_password_policy_refusal_is_permanent_and_readable() {
    let fake = Fake::start(|call, _| match call.function.as_str() {
        "core_user_get_users_by_field" => ok("[]"),
        _ => ok(r#"{"exception":"core\\exception\\moodle_exception","errorcode":"<div>Passwords must be at least 8 characters long.</div>","message":"error/<div>Passwords must be at least 8 characters long.</div>"}"#),
    })
    .await;
    let message = permanent(fake.moodle().ensure_user(&ana()).await);
    assert_eq!(message, "core_user_create_users: Moodle refused: Passwords must be at least 8 characters long.");
}

#[tokio::test]
async fn enrolments_carry_the_student_role_and_the_end_date_every_time() {
    let fake = Fake::start(|_, _| ok("null")).await;
    let mut config = MoodleConfig::new(&fake.url, Secret::new(TOKEN));
    config.student_role_id = 9;
    let moodle = Moodle::new(config).unwrap();
    assert!(moodle.enforces_end_dates());
    let until = Timestamp::from_unix_millis(1_767_225_600_999).unwrap();
    let course = CourseId::parse("12").unwrap();
    let user = LmsUserId("42".into());
    assert_eq!(moodle.enroll_until(&user, &course, Some(until)).await.unwrap(), Enrolled::Now);
    assert_eq!(moodle.enroll(&user, &course).await.unwrap(), Enrolled::Now);
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    for (call, timeend) in calls.iter().zip(["1767225600", "0"]) {
        assert_eq!(call.function, "enrol_manual_enrol_users");
        for (name, value) in [
            ("enrolments[0][roleid]", "9"),
            ("enrolments[0][userid]", "42"),
            ("enrolments[0][courseid]", "12"),
            ("enrolments[0][timestart]", "0"),
            ("enrolments[0][timeend]", timeend),
            ("enrolments[0][suspend]", "0"),
        ] {
            assert_eq!(call.field(name), value, "{name}");
        }
    }
}

#[test]
fn an_end_date_at_or_before_the_epoch_is_never_0_which_moodle_reads_as_never() {
    assert_eq!(end_seconds(Timestamp::from_unix_millis(1_700_000_000_500).unwrap()), 1_700_000_000);
    assert_eq!(end_seconds(Timestamp::epoch()), 1);
    assert_eq!(end_seconds(Timestamp::from_unix_millis(-5_000).unwrap()), 1);
}

#[tokio::test]
async fn enrolment_refusals_say_what_is_wrong() {
    let fake = Fake::start(|call, _| match call.field("enrolments[0][courseid]") {
        "9999" => ok(INVALID_PARAMETER),
        "2" => ok(r#"{"exception":"TypeError","message":"core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in /srv/moodle/lib/enrollib.php on line 3677"}"#),
        _ => ok(r#"{"exception":"core\\exception\\moodle_exception","errorcode":"wsusercannotassign","message":"You don't have the permission to assign this role (999) to this user (3) in this course (3)."}"#),
    })
    .await;
    let moodle = fake.moodle();
    let user = LmsUserId("3".into());
    let enroll = |course: &'static str| moodle.enroll(&user, Box::leak(Box::new(CourseId::parse(course).unwrap())));
    assert!(permanent(enroll("9999").await).contains("no course has this id"));
    assert!(permanent(enroll("2").await).contains("no user with this id"));
    assert!(permanent(enroll("3").await).contains("MOODLE_STUDENT_ROLE_ID"));
    assert!(permanent(enroll("not-a-number").await).contains("positive integers"));
    assert_eq!(fake.calls().len(), 3, "a course id Moodle cannot have is never sent");
}

#[tokio::test]
async fn unenrolment_is_idempotent_and_refusals_are_permanent() {
    let fake = Fake::start(|call, _| match call.field("enrolments[0][courseid]") {
        "9999" => ok(r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course."}"#),
        _ if call.field("enrolments[0][userid]") == "9999" => ok(r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"User id not exist: 9999"}"#),
        _ => ok("null"),
    })
    .await;
    let moodle = fake.moodle();
    let course = CourseId::parse("2").unwrap();
    moodle.unenroll(&LmsUserId("3".into()), &course).await.unwrap();
    moodle.unenroll(&LmsUserId("3".into()), &course).await.unwrap();
    let unknown_course = CourseId::parse("9999").unwrap();
    assert!(permanent(moodle.unenroll(&LmsUserId("3".into()), &unknown_course).await).contains("no Moodle course"));
    let message = permanent(moodle.unenroll(&LmsUserId("9999".into()), &course).await);
    assert!(message.contains("User id not exist: 9999"), "{message}");
    let first = &fake.calls()[0];
    assert_eq!((first.field("enrolments[0][userid]"), first.field("enrolments[0][courseid]")), ("3", "2"));
}

#[tokio::test]
async fn deactivation_suspends_and_activation_unsuspends() {
    let fake = Fake::start(|call, _| match call.field("users[0][id]") {
        "404" => ok(
            r#"{"warnings":[{"item":"user","itemid":404,"warningcode":"invaliduserid","message":"Invalid user id"}]}"#,
        ),
        _ => ok(r#"{"warnings":[]}"#),
    })
    .await;
    let moodle = fake.moodle();
    moodle.set_active(&LmsUserId("5".into()), false).await.unwrap();
    moodle.set_active(&LmsUserId("5".into()), true).await.unwrap();
    let suspended: Vec<String> = fake.calls().iter().map(|c| c.field("users[0][suspended]").to_owned()).collect();
    assert_eq!(suspended, ["1", "0"]);
    assert!(fake.functions().iter().all(|f| f == "core_user_update_users"), "never deleted");
    assert!(permanent(moodle.set_active(&LmsUserId("404".into()), false).await).contains("invaliduserid"));
}

#[tokio::test]
async fn lookup_reads_the_user_and_its_active_courses() {
    let fake = Fake::start(|call, _| match (call.function.as_str(), call.field("values[0]")) {
        ("core_user_get_users_by_field", "ana.souza@example.com") => {
            ok(json!([moodle_user(3, "ana.souza@example.com", "", true)]))
        }
        ("core_user_get_users_by_field", _) => ok("[]"),
        ("core_enrol_get_users_courses", _) => {
            assert_eq!(call.field("userid"), "3");
            ok(r#"[{"id":2,"shortname":"TC1","fullname":"Test Course 1","enrolledusercount":1,"idnumber":"TC1","visible":1,"startdate":0,"enddate":0},{"id":5,"shortname":"TC5"}]"#)
        }
        other => panic!("{other:?}"),
    })
    .await;
    let moodle = fake.moodle();
    let user = moodle.lookup("Ana.Souza@example.com").await.unwrap().unwrap();
    assert_eq!(user.id, LmsUserId("3".into()));
    assert!(!user.active);
    let courses: Vec<&str> = user.courses.iter().map(CourseId::as_str).collect();
    assert_eq!(courses, ["2", "5"]);
    assert_eq!(moodle.lookup("nobody@example.com").await.unwrap(), None);
}

fn site_info(functions: &[&str]) -> String {
    let functions: Vec<Value> = functions.iter().map(|f| json!({"name": f, "version": "2024100700.09"})).collect();
    json!({"sitename":"Moodle Test Site","username":"svc","userid":2,"siteurl":"http://127.0.0.1:8765",
        "functions": functions, "release":"4.5+ (Build: 20241205)","version":"2024100700.09"})
    .to_string()
}

#[tokio::test]
async fn the_check_returns_the_release_or_names_missing_functions() {
    let fake = Fake::start(|_, _| ok(site_info(&REQUIRED_FUNCTIONS))).await;
    let info = fake.moodle().check().await.unwrap();
    assert_eq!(info.release, "4.5+ (Build: 20241205)");
    let fake = Fake::start(|_, _| ok(site_info(&REQUIRED_FUNCTIONS[..5]))).await;
    let error = fake.moodle().check().await.unwrap_err();
    assert!(matches!(error, CheckError::MissingFunctions(_)));
    assert!(
        error.to_string().starts_with(
            "the Moodle service of MOODLE_TOKEN lacks enrol_manual_unenrol_users, core_enrol_get_users_courses:"
        ),
        "{error}"
    );
    let fake = Fake::start(|_, _| ok("[]")).await;
    assert!(matches!(fake.moodle().check().await, Err(CheckError::BadAnswer)));
}

#[tokio::test]
async fn the_check_fails_in_one_line_on_a_bad_token_a_redirect_or_web_services_off() {
    let fake = Fake::start(|_, _| ok("never")).await;
    let bad = Moodle::new(MoodleConfig::new(&fake.url, Secret::new("wrong-token"))).unwrap();
    let bad_token = bad.check().await.unwrap_err().to_string();
    assert!(bad_token.contains("MOODLE_TOKEN is wrong"), "{bad_token}");
    // The redirect is not followed (its target would answer `null`).
    let fake = Fake::start(|_, _| (303, "<html>Redirect</html>".into())).await;
    let redirect = fake.moodle().check().await.unwrap_err().to_string();
    assert!(redirect.contains("MOODLE_URL is not the site's exact wwwroot"), "{redirect}");
    let fake = Fake::start(|_, _| (403, String::new())).await;
    let off = fake.moodle().check().await.unwrap_err().to_string();
    assert!(off.contains("web services or the REST protocol are disabled"), "{off}");
    for error in [bad_token, redirect, off] {
        assert!(!error.contains('\n') && !error.contains(TOKEN), "{error}");
    }
}

#[tokio::test]
async fn server_errors_timeouts_and_no_connection_are_transient() {
    let fake = Fake::start(|_, _| (502, "<html>Bad gateway</html>".into())).await;
    assert!(transient(fake.moodle().set_active(&LmsUserId("1".into()), true).await).contains("HTTP 502"));

    let slow = Fake::start(|_, _| {
        std::thread::sleep(std::time::Duration::from_millis(400));
        ok("null")
    })
    .await;
    let mut config = MoodleConfig::new(&slow.url, Secret::new(TOKEN));
    config.timeout = Duration::from_millis(100);
    let message =
        transient(Moodle::new(config).unwrap().unenroll(&LmsUserId("1".into()), &CourseId::parse("2").unwrap()).await);
    assert_eq!(message, "enrol_manual_unenrol_users: timed out");

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let moodle = Moodle::new(MoodleConfig::new(closed, Secret::new(TOKEN))).unwrap();
    let message = transient(moodle.lookup("ana.souza@example.com").await);
    assert!(message.starts_with("core_user_get_users_by_field: cannot connect to Moodle"), "{message}");
    assert!(!message.contains("ana.souza") && !message.contains("127.0.0.1"), "{message}");
}

#[test]
fn the_url_must_be_a_wwwroot_over_https_or_loopback_http() {
    let token = || Secret::new(TOKEN);
    for (url, endpoint) in [
        ("https://school.example/moodle", "https://school.example/moodle/webservice/rest/server.php"),
        (" https://school.example/moodle/\n", "https://school.example/moodle/webservice/rest/server.php"),
        ("https://school.example/webservice/rest/server.php", "https://school.example/webservice/rest/server.php"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/webservice/rest/server.php"),
        ("http://localhost", "http://localhost/webservice/rest/server.php"),
    ] {
        assert_eq!(Moodle::new(MoodleConfig::new(url, token())).unwrap().endpoint, endpoint, "{url}");
    }
    for url in ["http://school.example", "http://10.0.0.1/moodle"] {
        assert!(matches!(Moodle::new(MoodleConfig::new(url, token())), Err(ConfigError::Insecure)), "{url}");
    }
    for url in ["", "school.example", "ftp://school.example", "https://school.example/?x=1", "https://"] {
        assert!(matches!(Moodle::new(MoodleConfig::new(url, token())), Err(ConfigError::BadUrl)), "{url}");
    }
}

#[test]
fn the_token_is_trimmed_never_blank_and_never_shown() {
    let url = "https://school.example";
    let moodle = Moodle::new(MoodleConfig::new(url, Secret::new(format!(" {TOKEN}\r\n")))).unwrap();
    assert_eq!(moodle.token.expose(), TOKEN);
    assert!(!format!("{moodle:?}").contains(TOKEN));
    assert!(!format!("{:?}", MoodleConfig::new(url, Secret::new(TOKEN))).contains(TOKEN));
    assert!(matches!(Moodle::new(MoodleConfig::new(url, Secret::new(" \n"))), Err(ConfigError::EmptyToken)));
    let mut config = MoodleConfig::new(url, Secret::new(TOKEN));
    config.student_role_id = 0;
    assert!(matches!(Moodle::new(config), Err(ConfigError::BadRoleId)));
}
