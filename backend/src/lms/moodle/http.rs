//! One call: the form-encoded POST to `server.php`, paced, and its answer decoded.
//!
//! Moodle answers HTTP 200 to failed calls too: a failure is a JSON object with an `exception`
//! key (`{"exception","errorcode","message"[,"debuginfo"]}`), keyed on `errorcode` when there
//! is one. Some have none (a PHP `TypeError`), and some carry HTML in it (a password-policy
//! refusal). Statuses other than 200 come from the web server or a proxy in front of Moodle.

use super::Moodle;
use crate::lms::LmsError;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use std::time::Duration;

/// The longest piece of a Moodle message an error text carries.
const MAX_MESSAGE: usize = 160;
/// The longest `Retry-After` a proxy's 429/503 may ask for that we pass on.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A function argument in PHP's bracket syntax: `users[0][username]=ana`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    /// A scalar (numbers and booleans as text: Moodle reads `1`/`0` as booleans).
    Value(String),
    /// A list, indexed from 0.
    List(Vec<Arg>),
    /// A structure of named fields.
    Struct(Vec<(&'static str, Arg)>),
}

impl Arg {
    pub(super) fn value(value: impl ToString) -> Self {
        Self::Value(value.to_string())
    }

    /// A list of one structure: every batch function here is called with one item, so that a
    /// failure is that item's (Moodle runs a batch in one transaction, all or nothing).
    pub(super) fn one(fields: Vec<(&'static str, Arg)>) -> Self {
        Self::List(vec![Self::Struct(fields)])
    }
}

fn flatten(name: String, arg: &Arg, out: &mut Vec<(String, String)>) {
    match arg {
        Arg::Value(value) => out.push((name, value.clone())),
        Arg::List(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(format!("{name}[{i}]"), item, out);
            }
        }
        Arg::Struct(fields) => {
            for (field, item) in fields {
                flatten(format!("{name}[{field}]"), item, out);
            }
        }
    }
}

/// The form fields of named arguments, in order: `[("users[0][username]", "ana"), …]`.
pub(super) fn fields(args: &[(&str, Arg)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, arg) in args {
        flatten((*name).to_owned(), arg, &mut out);
    }
    out
}

/// The whole request body: token, function, JSON format, then the arguments.
pub(super) fn form_body(token: &str, function: &str, args: &[(&str, Arg)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("wstoken", token).append_pair("wsfunction", function).append_pair("moodlewsrestformat", "json");
    for (name, value) in fields(args) {
        form.append_pair(&name, &value);
    }
    form.finish()
}

/// A failure Moodle reported in an HTTP 200 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exception {
    /// The PHP class, namespaced or not (`core\exception\moodle_exception`, `TypeError`).
    pub(super) class: String,
    /// Moodle's string id, when the exception has one.
    pub(super) code: Option<String>,
    /// The message, in the site's language.
    pub(super) message: String,
    /// The reason, only when the site has debugging on.
    pub(super) debuginfo: Option<String>,
}

/// A decoded answer: the function's value, or the failure Moodle reported.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reply {
    Value(Value),
    Exception(Exception),
}

impl Exception {
    fn from_body(body: &Value) -> Option<Self> {
        let object = body.as_object()?;
        let class = object.get("exception")?;
        let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            class: class.as_str().unwrap_or("unknown").to_owned(),
            code: text("errorcode").filter(|c| !c.is_empty()),
            message: text("message").unwrap_or_default(),
            debuginfo: text("debuginfo").filter(|d| !d.is_empty()),
        })
    }

    /// Its error code is `code`.
    pub(super) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The class without its namespace.
    fn short_class(&self) -> &str {
        self.class.rsplit('\\').next().unwrap_or(&self.class)
    }

    /// The shape Moodle 4.5 gives an enrolment of a user id it does not have: a PHP
    /// `TypeError` from `get_name_placeholders()` (a `bool` where a user record was expected),
    /// without an error code.
    pub(super) fn is_missing_user(&self) -> bool {
        self.code.is_none()
            && self.short_class() == "TypeError"
            && (self.message.contains("get_name_placeholders") || self.message.contains("bool given"))
    }

    /// The reason behind an `invalidparameter`, scrubbed, when the site shows it. Quoted values
    /// (`the value is "…"`) may be a name or an email: they are cut out.
    pub(super) fn reason(&self, token: &str) -> String {
        self.debuginfo.as_deref().map(|d| format!(": {}", scrub(&unquote(d), token))).unwrap_or_default()
    }

    /// What it means for an action, as a real Moodle 4.5 answers it (docs/moodle.md, "Errors").
    ///
    /// Refusals that come from the site's set-up (the token, the service's functions, the
    /// service user's capabilities) are transient, as a bad TalentLMS key is: nothing is wrong
    /// with the action, it stays pending until an operator fixes the site, and `check` stops
    /// a start-up on them.
    pub(super) fn into_error(self, function: &str, token: &str) -> LmsError {
        let said = scrub(&self.message, token);
        let setup = |message: String| LmsError::Transient { message, retry_after: None };
        match self.code.as_deref() {
            Some("invalidtoken") => setup(format!(
                "{function}: Moodle refused the token (invalidtoken): MOODLE_TOKEN is wrong, expired, or restricted \
                 to other IP addresses"
            )),
            Some("accessexception") => setup(format!(
                "{function}: Moodle refused access (accessexception): add {function} to the external service of \
                 MOODLE_TOKEN, authorise the service user for that service, and give it webservice/rest:use"
            )),
            Some("nopermissions") => setup(format!(
                "{function}: the Moodle service user lacks a capability (nopermissions: {said}); see the service's \
                 function list for the capabilities {function} requires"
            )),
            Some("sitemaintenance" | "dbconnectionfailed" | "dmlreadexception" | "dmlwriteexception") => {
                LmsError::Transient { message: format!("{function}: Moodle failed ({said})"), retry_after: None }
            }
            Some("wsusercannotassign") => LmsError::Permanent(format!(
                "{function}: the Moodle service user may not assign the student role (MOODLE_STUDENT_ROLE_ID) in \
                 this course (wsusercannotassign): check the role id, and allow the service user's role to \
                 assign it (Define roles > Allow role assignments)"
            )),
            Some("wsnoinstance") => LmsError::Permanent(format!(
                "{function}: the course has no enabled \"Manual enrolments\" method (wsnoinstance): enable it in \
                 the course's enrolment methods"
            )),
            Some("invalidparameter") => LmsError::Permanent(format!(
                "{function}: Moodle refused the arguments (invalidparameter){}",
                self.reason(token)
            )),
            Some("invalidrecord") => {
                LmsError::Permanent(format!("{function}: Moodle has no such record (invalidrecord: {said})"))
            }
            // A password-policy refusal puts the policy's HTML text in `errorcode`.
            Some(code) if code.contains('<') => {
                LmsError::Permanent(format!("{function}: Moodle refused: {}", scrub(code, token)))
            }
            Some(code) => LmsError::Permanent(format!("{function}: Moodle refused ({code}: {said})")),
            None if self.is_missing_user() => {
                LmsError::Permanent(format!("{function}: Moodle has no user with this id (TypeError)"))
            }
            None => LmsError::Permanent(format!("{function}: Moodle failed ({}: {said})", self.short_class())),
        }
    }
}

/// The text with every `"…"` replaced by `"[value]"`.
fn unquote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 { "[value]" } else { part });
    }
    out
}

/// A Moodle message made safe for errors and logs: no HTML, emails, URLs or the token, bounded.
pub(super) fn scrub(message: &str, token: &str) -> String {
    let mut plain = String::with_capacity(message.len());
    let mut in_tag = false;
    for c in message.chars() {
        match c {
            '<' => {
                in_tag = true;
                plain.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    crate::scrub::words(&plain, token, MAX_MESSAGE)
}

/// Reads one answer. `Err` is a failure of the call as such (status, not JSON); a failure
/// Moodle reported is `Ok(Reply::Exception)`, for the caller to read in its context.
pub(super) fn decode(
    function: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<Reply, LmsError> {
    let transient = |message: String, retry_after| Err(LmsError::Transient { message, retry_after });
    match status {
        200..=299 => {}
        // Moodle redirects any request whose host, port or scheme is not its wwwroot.
        300..=399 => {
            return transient(
                format!(
                    "{function}: Moodle answered a redirect (HTTP {status}): MOODLE_URL is not the site's exact \
                     wwwroot (scheme, host, port and path as in Moodle's config.php)"
                ),
                None,
            )
        }
        403 if body.trim().is_empty() => {
            return transient(
                format!(
                    "{function}: HTTP 403 with an empty body: web services or the REST protocol are disabled on the \
                     Moodle site (Advanced features > Enable web services; Web services > Manage protocols > REST)"
                ),
                None,
            )
        }
        404 => {
            return transient(
                format!("{function}: HTTP 404: no Moodle web service under MOODLE_URL (is it the site's wwwroot?)"),
                None,
            )
        }
        429 | 503 => {
            return transient(format!("{function}: HTTP {status}, Moodle or its proxy asks to wait"), retry_after)
        }
        408 | 500..=599 => return transient(format!("{function}: HTTP {status}"), None),
        _ => return Err(LmsError::Permanent(format!("{function}: HTTP {status}"))),
    }
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        // A maintenance or proxy page, most likely: try again later.
        return transient(format!("{function}: HTTP {status} with an answer that is not JSON"), None);
    };
    Ok(match Exception::from_body(&value) {
        Some(exception) => Reply::Exception(exception),
        None => Reply::Value(value),
    })
}

/// `Retry-After` in seconds (what proxies send), bounded.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs = headers.get("retry-after")?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// A transport failure as a fixed text: reqwest's own text names the URL.
fn transport_error(function: &str, error: &reqwest::Error) -> LmsError {
    let message = format!("{function}: {}", crate::scrub::transport_failure("Moodle", error));
    LmsError::Transient { message, retry_after: None }
}

impl Moodle {
    /// Calls `function` with `args`: the value, or the exception Moodle answered.
    pub(super) async fn call(&self, function: &'static str, args: &[(&str, Arg)]) -> Result<Reply, LmsError> {
        self.pacer.ready().await?;
        let body = form_body(self.token.expose(), function, args);
        let response = self
            .http
            .post(&self.endpoint)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(function, &e))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let text = response.text().await.map_err(|e| transport_error(function, &e))?;
        decode(function, status, wait, &text)
    }

    /// Calls `function`; any exception is a failure, classified by [`Exception::into_error`].
    pub(super) async fn call_ok(&self, function: &'static str, args: &[(&str, Arg)]) -> Result<Value, LmsError> {
        match self.call(function, args).await? {
            Reply::Value(value) => Ok(value),
            Reply::Exception(exception) => Err(self.refused(exception, function)),
        }
    }

    pub(super) fn refused(&self, exception: Exception, function: &str) -> LmsError {
        exception.into_error(function, self.token.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "tok3n-CANARY";

    fn exception(body: &str) -> Exception {
        match decode("f", 200, None, body).unwrap() {
            Reply::Exception(exception) => exception,
            Reply::Value(value) => panic!("not an exception: {value}"),
        }
    }

    fn classify(function: &str, body: &str) -> LmsError {
        exception(body).into_error(function, TOKEN)
    }

    fn permanent(error: &LmsError) -> &str {
        match error {
            LmsError::Permanent(message) => message,
            other => panic!("not permanent: {other:?}"),
        }
    }

    fn transient(error: &LmsError) -> &str {
        match error {
            LmsError::Transient { message, .. } => message,
            other => panic!("not transient: {other:?}"),
        }
    }

    #[test]
    fn arguments_flatten_to_php_brackets() {
        let args = [
            (
                "users",
                Arg::one(vec![
                    ("username", Arg::value("ana@example.com")),
                    ("createpassword", Arg::value(1)),
                    ("customfields", Arg::List(vec![Arg::Struct(vec![("type", Arg::value("x"))])])),
                ]),
            ),
            ("field", Arg::value("email")),
            ("values", Arg::List(vec![Arg::value("a"), Arg::value("b")])),
        ];
        let fields: Vec<(String, String)> = fields(&args);
        let expected = [
            ("users[0][username]", "ana@example.com"),
            ("users[0][createpassword]", "1"),
            ("users[0][customfields][0][type]", "x"),
            ("field", "email"),
            ("values[0]", "a"),
            ("values[1]", "b"),
        ];
        assert_eq!(fields, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn the_body_is_form_encoded_with_token_function_and_json_format_first() {
        let body =
            form_body(TOKEN, "core_user_get_users_by_field", &[("values", Arg::List(vec![Arg::value("a+b@x.y")]))]);
        assert_eq!(
            body,
            "wstoken=tok3n-CANARY&wsfunction=core_user_get_users_by_field&moodlewsrestformat=json\
             &values%5B0%5D=a%2Bb%40x.y"
        );
        let decoded: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        assert_eq!(decoded[3], ("values[0]".to_owned(), "a+b@x.y".to_owned()));
    }

    // Success shapes, as Moodle 4.5 answers them.

    #[test]
    fn success_bodies_are_values() {
        for body in [
            r#"[{"id":3,"username":"alice"}]"#,
            "[]",
            "null",
            r#"{"warnings":[]}"#,
            r#"{"sitename":"Moodle Test Site","userid":2,"release":"4.5+ (Build: 20241205)","functions":[]}"#,
        ] {
            assert!(matches!(decode("f", 200, None, body), Ok(Reply::Value(_))), "{body}");
        }
        assert_eq!(decode("f", 200, None, "null").unwrap(), Reply::Value(Value::Null));
    }

    // Error shapes, as Moodle 4.5 answers them.

    #[test]
    fn a_bad_token_names_moodle_token() {
        let body = r#"{"exception":"core\\exception\\moodle_exception","errorcode":"invalidtoken","message":"Invalid token - token not found"}"#;
        let error = classify("core_webservice_get_site_info", body);
        assert!(transient(&error).contains("MOODLE_TOKEN"), "{error}");
        assert!(!error.to_string().contains(TOKEN));
    }

    #[test]
    fn a_function_missing_from_the_service_names_it() {
        let body = r#"{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}"#;
        let error = classify("enrol_manual_enrol_users", body);
        let message = transient(&error);
        assert!(message.contains("add enrol_manual_enrol_users to the external service"), "{message}");
        let body = r#"{"exception":"core\\exception\\required_capability_exception","errorcode":"nopermissions","message":"Sorry, but you do not currently have permissions to do that (Create users)."}"#;
        let message = transient(&classify("core_user_create_users", body)).to_owned();
        assert!(message.contains("lacks a capability") && message.contains("(Create users)"), "{message}");
    }

    #[test]
    fn invalid_parameters_are_permanent_with_the_reason_when_debugging_shows_it() {
        let plain = r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#;
        let e = exception(plain);
        assert!(e.is("invalidparameter") && e.debuginfo.is_none());
        assert!(permanent(&e.into_error("f", TOKEN)).ends_with("(invalidparameter)"));
        let debug = r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"Email address already exists: alice@example.com"}"#;
        let error = classify("core_user_create_users", debug);
        assert_eq!(
            permanent(&error),
            "core_user_create_users: Moodle refused the arguments (invalidparameter): Email address already exists: [email]"
        );
        let context = r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"Context does not exist"}"#;
        assert!(permanent(&classify("enrol_manual_enrol_users", context)).contains("Context does not exist"));
    }

    #[test]
    fn values_quoted_in_debuginfo_are_cut_out() {
        let body = r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"users => Invalid parameter value detected (username => Invalid parameter value detected: the value is \"Dave Souza\", the server was expecting \"username\" type)"}"#;
        let error = classify("core_user_create_users", body);
        let message = permanent(&error);
        assert!(!message.contains("Dave"), "{message}");
        assert!(message.ends_with(r#"the value is "[value]", the server was expecting "[value]" type)"#), "{message}");
    }

    #[test]
    fn a_password_policy_refusal_loses_its_html() {
        let body = r#"{"exception":"core\\exception\\moodle_exception","errorcode":"<div>Passwords must be at least 8 characters long.</div><div>Passwords must have at least 1 digit(s).</div>","message":"error/<div>Passwords must be at least 8 characters long.</div>"}"#;
        let error = classify("core_user_create_users", body);
        assert_eq!(
            permanent(&error),
            "core_user_create_users: Moodle refused: Passwords must be at least 8 characters long. Passwords must \
             have at least 1 digit(s)."
        );
    }

    #[test]
    fn an_unknown_user_on_enrol_is_a_type_error_without_a_code() {
        let body = r#"{"exception":"TypeError","message":"core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in /var/www/moodle/lib/enrollib.php on line 3677"}"#;
        let e = exception(body);
        assert!(e.code.is_none() && e.is_missing_user());
        assert_eq!(
            permanent(&e.into_error("enrol_manual_enrol_users", TOKEN)),
            "enrol_manual_enrol_users: Moodle has no user with this id (TypeError)"
        );
        let other = r#"{"exception":"TypeError","message":"something else"}"#;
        assert!(!exception(other).is_missing_user());
        assert!(permanent(&classify("f", other)).contains("TypeError: something else"));
    }

    #[test]
    fn role_instance_record_and_coding_errors_are_permanent() {
        let role = r#"{"exception":"core\\exception\\moodle_exception","errorcode":"wsusercannotassign","message":"You don't have the permission to assign this role (999) to this user (3) in this course (2)."}"#;
        assert!(permanent(&classify("enrol_manual_enrol_users", role)).contains("MOODLE_STUDENT_ROLE_ID"));
        let instance = r#"{"exception":"moodle_exception","errorcode":"wsnoinstance","message":"Manual enrolment plugin instance doesn't exist or is disabled for the course (id = 2)"}"#;
        assert!(permanent(&classify("enrol_manual_enrol_users", instance)).contains("Manual enrolments"));
        let record = r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course."}"#;
        assert!(permanent(&classify("enrol_manual_unenrol_users", record)).contains("table course"));
        let coding = r#"{"exception":"core\\exception\\coding_exception","errorcode":"codingerror","message":"Coding error detected, it must be fixed by a programmer: invalid field parameter"}"#;
        assert!(permanent(&classify("core_user_get_users_by_field", coding)).contains("codingerror"));
    }

    #[test]
    fn maintenance_and_database_failures_are_transient() {
        let body = r#"{"exception":"moodle_exception","errorcode":"sitemaintenance","message":"The site is undergoing maintenance"}"#;
        transient(&classify("f", body));
    }

    #[test]
    fn any_object_with_an_exception_key_is_a_failure() {
        let e = exception(r#"{"exception":"whatever"}"#);
        assert_eq!(e.class, "whatever");
        assert!(e.code.is_none());
        assert!(matches!(
            decode("f", 200, None, &json!({"users": [], "warnings": []}).to_string()),
            Ok(Reply::Value(_))
        ));
    }

    #[test]
    fn a_redirect_means_the_url_is_not_the_wwwroot() {
        let error = decode("f", 303, None, "<html>Redirect</html>").unwrap_err();
        assert!(transient(&error).contains("MOODLE_URL is not the site's exact wwwroot"), "{error}");
    }

    #[test]
    fn an_empty_403_means_web_services_are_off() {
        let error = decode("f", 403, None, "").unwrap_err();
        assert!(transient(&error).contains("web services or the REST protocol are disabled"), "{error}");
        // A 403 with a body is someone else's (a firewall's page): permanent like any 4xx.
        permanent(&decode("f", 403, None, "<html>Forbidden</html>").unwrap_err());
    }

    #[test]
    fn server_errors_limits_and_pages_that_are_not_json_are_transient() {
        for status in [500, 502, 504, 408] {
            transient(&decode("f", status, None, "oops").unwrap_err());
        }
        let wait = Some(Duration::from_secs(7));
        for status in [429, 503] {
            let error = decode("f", status, wait, "").unwrap_err();
            assert!(matches!(error, LmsError::Transient { retry_after, .. } if retry_after == wait));
        }
        transient(&decode("f", 200, None, "<html>Site maintenance</html>").unwrap_err());
        // What Moodle answers when the JSON format is not asked for.
        transient(&decode("f", 200, None, "<RESPONSE><MULTIPLE></MULTIPLE></RESPONSE>").unwrap_err());
        permanent(&decode("f", 400, None, "").unwrap_err());
    }

    #[test]
    fn messages_lose_html_emails_urls_and_the_token() {
        let said = scrub("<b>User</b> ana@example.com at https://moodle.example/x with tok3n-CANARY!", TOKEN);
        assert_eq!(said, "User [email] at [url] with [key]");
        assert!(scrub(&"x".repeat(1000), TOKEN).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "12".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(12)));
        headers.insert("retry-after", "999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
