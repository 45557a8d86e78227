//! TalentLMS REST API v1 (what this adapter relies on: docs/talentlms.md).
//!
//! Basic auth with the API key as user name; form-encoded POST bodies; `name:value` path
//! arguments for GETs; errors as `{"error":{"type","message"}}`, classified by message text
//! as well as by status, because "already enrolled" and "not enrolled" only differ there.
//!
//! Error texts and log lines never carry a URL (paths hold emails), an email or the API key:
//! transport errors are reduced to fixed texts, TalentLMS's own messages are scrubbed.

use super::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUserId};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lms_bridge_shared::CourseId;
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest pause after a rate-limit answer, whatever its headers say (a reset in the
/// past, from clock skew, must not turn into a tight retry loop).
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The pause after a rate-limit answer that names no time.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);
/// The longest pause: TalentLMS's quota window is an hour.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// An `X-RateLimit-Reset` below this is seconds to go, not an epoch (10^9 s is Sept. 2001).
const EPOCH_THRESHOLD: f64 = 1e9;
/// How many logins a sign-up tries before giving up (see [`login_candidates`]).
const LOGIN_TRIES: usize = 4;
/// TalentLMS's built-in user type of a plain learner (the others: `SuperAdmin`,
/// `Admin-Type`, `Trainer-Type`, and any custom type a portal defines).
const LEARNER_TYPE: &str = "Learner-Type";
/// The longest piece of a TalentLMS error message an error text carries.
const MAX_MESSAGE: usize = 160;

/// Why the adapter cannot be built from its settings (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse, has no host, or its scheme is not http(s).
    #[error("TALENTLMS_URL is not an https:// URL with a host")]
    BadUrl,
    /// Plain http to a host that is not this machine would send the API key in clear.
    #[error(
        "TALENTLMS_URL must use https:// (http:// is only accepted for a loopback host: 127.0.0.0/8, ::1, localhost)"
    )]
    Insecure,
    /// The key is empty once trimmed.
    #[error("TALENTLMS_API_KEY is empty")]
    EmptyKey,
    /// The HTTP client could not be built.
    #[error("building the HTTP client failed")]
    Http(#[source] reqwest::Error),
}

/// The TalentLMS adapter.
pub struct TalentLms {
    base: String,
    api_key: String,
    http: reqwest::Client,
    timeout: Duration,
    limiter: DefaultDirectRateLimiter,
    /// Set when TalentLMS said the quota is spent: calls fail fast until then.
    blocked_until: Mutex<Option<Instant>>,
}

/// Leaves the key and the portal address out.
impl fmt::Debug for TalentLms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalentLms").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// One parsed answer: status and JSON body (`Null` when an error answer is not JSON).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn error_message(&self) -> Option<&str> {
        self.body.get("error").and_then(|e| e.get("message")).and_then(Value::as_str)
    }

    fn is_error(&self) -> bool {
        !self.status.is_success() || self.body.get("error").is_some()
    }

    fn says(&self, needle: &str) -> bool {
        self.error_message().is_some_and(|m| m.to_ascii_lowercase().contains(needle))
    }

    /// Turns an unexpected error answer into a transient or permanent failure.
    fn into_error(self, what: &str, api_key: &str) -> LmsError {
        let said = self.error_message().map_or_else(|| "(no message)".to_owned(), |m| scrub(m, api_key));
        let message = format!("{what}: HTTP {} {said}", self.status.as_u16());
        match self.status.as_u16() {
            // Bad or disabled API key: an operator must fix it; keep the work until then.
            401 | 403 | 408 | 429 => LmsError::Transient { message, retry_after: None },
            s if s >= 500 => LmsError::Transient { message, retry_after: None },
            _ => LmsError::Permanent(message),
        }
    }
}

/// What a sign-up attempt found.
enum SignUp {
    Created(Value),
    EmailTaken,
    LoginTaken,
}

/// A TalentLMS message made safe for errors and logs: no emails, URLs or the key, bounded.
fn scrub(message: &str, api_key: &str) -> String {
    let words: Vec<&str> = message
        .split_whitespace()
        .map(|word| {
            if word.contains('@') {
                "[email]"
            } else if word.contains("://") || word.to_ascii_lowercase().starts_with("www.") {
                "[url]"
            } else if !api_key.is_empty() && word.contains(api_key) {
                "[key]"
            } else {
                word
            }
        })
        .collect();
    let text = words.join(" ");
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A transport failure as a fixed text: reqwest's own text names the URL, which holds emails.
fn transport_error(what: &str, error: &reqwest::Error) -> LmsError {
    let cause = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect to TalentLMS"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    // The I/O error kind, when there is one, is a fixed text too ("connection refused").
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut kind = None;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            kind = Some(io.kind());
            break;
        }
        source = e.source();
    }
    let message = match kind {
        Some(kind) if !error.is_timeout() => format!("{what}: {cause} ({kind})"),
        _ => format!("{what}: {cause}"),
    };
    LmsError::Transient { message, retry_after: None }
}

/// An id sent as a string or a number.
fn lenient_id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether a TalentLMS user object is a plain learner; an unknown or missing type is not.
fn is_learner(user: &Value) -> bool {
    user.get("user_type").and_then(Value::as_str).is_some_and(|t| t.trim().eq_ignore_ascii_case(LEARNER_TYPE))
}

fn same_email(user: &Value, email: &str) -> bool {
    user.get("email").and_then(Value::as_str).is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
}

/// Percent-encodes a path-argument value (`,` and `:` are syntax there; `@` stays literal).
fn path_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'@' | b'.' | b'_' | b'-') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A password TalentLMS accepts under every policy: 16 chars, upper, lower and digits.
fn strong_password() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    let mut rng = rand::thread_rng();
    let mut pick = |set: &[u8]| set[rng.gen_range(0..set.len())] as char;
    let mut password: Vec<char> = (0..5).flat_map(|_| [pick(UPPER), pick(LOWER), pick(DIGIT)]).collect();
    password.push(pick(LOWER));
    password.into_iter().collect()
}

/// The logins a sign-up tries, in order: the email's local part plus 6 characters of the
/// student key (what every earlier version used), then longer slices of the key. Stable, so
/// a retry walks the same list; bounded by [`LOGIN_TRIES`].
fn login_candidates(student: &LmsStudent) -> Vec<String> {
    let local = student.email.split('@').next().unwrap_or_default();
    let clean: String =
        local.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).take(40).collect();
    let base = if clean.is_empty() { "student" } else { &clean };
    let mut logins: Vec<String> = Vec::with_capacity(LOGIN_TRIES);
    for len in [6, 12, 18, 24] {
        let login = format!("{base}-{}", student.key.chars().take(len).collect::<String>());
        if !logins.contains(&login) {
            logins.push(login);
        }
    }
    let mut n = 2;
    while logins.len() < LOGIN_TRIES {
        logins.push(format!("{}-{n}", logins[0]));
        n += 1;
    }
    logins.truncate(LOGIN_TRIES);
    logins
}

/// Whether plain http to this URL's host stays on this machine.
fn loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Accepts `https://host…`, and `http://` only for a loopback host (the sandbox, a tunnel).
fn check_url(url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| ConfigError::BadUrl)?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::BadUrl);
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback_host(&parsed) => Ok(()),
        "http" => Err(ConfigError::Insecure),
        _ => Err(ConfigError::BadUrl),
    }
}

fn number_header(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(MAX_BACKOFF)
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return secs.is_finite().then(|| seconds(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "seconds since 1970 fit an f64 exactly")]
    let at = date.timestamp() as f64;
    Some(seconds(at - now))
}

/// `X-RateLimit-Reset`: an epoch (UTC seconds), or, below [`EPOCH_THRESHOLD`], seconds to go.
fn reset_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let reset = number_header(headers, "x-ratelimit-reset")?;
    if reset < EPOCH_THRESHOLD {
        return Some(seconds(reset));
    }
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(seconds(reset - now))
}

/// How long to stop calling after a rate-limit answer: the longest the headers ask for,
/// never less than [`MIN_BACKOFF`] (a reset already past means "soon", not "now").
fn backoff(headers: &HeaderMap, now: SystemTime) -> Duration {
    let asked = [retry_after(headers, now), reset_wait(headers, now)].into_iter().flatten().max();
    asked.unwrap_or(DEFAULT_BACKOFF).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// The permanent failure when TalentLMS keeps an email for a user nobody can look up.
const RESERVED_EMAIL: &str = "TalentLMS says a user with this student's email exists, but no user with it can be \
     found (likely deleted in TalentLMS while its email stays reserved): restore or permanently delete that \
     user in TalentLMS, then retry";

impl TalentLms {
    /// An adapter for `https://{portal}.talentlms.com` (or the sandbox on a loopback
    /// `http://` address) and an API key (trimmed: a key pasted with a newline works), pacing
    /// its calls to `calls_per_second` (TalentLMS allows 200 per 5 s per portal; capped at 35/s).
    pub fn new(base_url: &str, api_key: String, calls_per_second: u32) -> Result<Self, ConfigError> {
        let base_url = base_url.trim();
        check_url(base_url)?;
        let api_key = api_key.trim().to_owned();
        if api_key.is_empty() {
            return Err(ConfigError::EmptyKey);
        }
        let http = reqwest::Client::builder().build().map_err(|e| ConfigError::Http(e.without_url()))?;
        let quota = Quota::per_second(NonZeroU32::new(calls_per_second.min(35)).unwrap_or(NonZeroU32::MIN));
        Ok(Self {
            base: format!("{}/api/v1", base_url.trim_end_matches('/')),
            api_key,
            http,
            timeout: REQUEST_TIMEOUT,
            limiter: RateLimiter::direct(quota),
            blocked_until: Mutex::new(None),
        })
    }

    /// The same adapter with another per-call timeout (10 s by default).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn check_quota(&self) -> Result<(), LmsError> {
        let blocked = self.blocked_until.lock().map(|b| *b).unwrap_or(None);
        match blocked {
            Some(until) if until > Instant::now() => Err(LmsError::Transient {
                message: "TalentLMS rate limit reached; waiting for the window to reset".into(),
                retry_after: Some(until - Instant::now()),
            }),
            _ => Ok(()),
        }
    }

    /// Remembers when TalentLMS lets us back in, from `Retry-After` or `X-RateLimit-*`.
    fn note_limits(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        let remaining = number_header(headers, "x-ratelimit-remaining");
        if status != StatusCode::TOO_MANY_REQUESTS && remaining != Some(0.0) {
            return None;
        }
        let wait = backoff(headers, SystemTime::now());
        tracing::warn!(wait_secs = wait.as_secs_f64(), "TalentLMS rate limit reached; pausing calls");
        if let Ok(mut blocked) = self.blocked_until.lock() {
            *blocked = Some(Instant::now() + wait);
        }
        Some(wait)
    }

    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Answer, LmsError> {
        self.check_quota()?;
        self.limiter.until_ready().await;
        let response = request
            .timeout(self.timeout)
            .basic_auth(&self.api_key, Some(""))
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(what, &e))?;
        let status = response.status();
        let retry_after = self.note_limits(status, response.headers());
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(LmsError::Transient { message: format!("{what}: rate limited by TalentLMS"), retry_after });
        }
        let text = response.text().await.map_err(|e| transport_error(what, &e))?;
        let body = match serde_json::from_str(&text) {
            Ok(body) => body,
            // A proxy's or maintenance page, most likely: try again later.
            Err(_) if status.is_success() => {
                return Err(LmsError::Transient {
                    message: format!("{what}: HTTP {} with an answer that is not JSON", status.as_u16()),
                    retry_after: None,
                })
            }
            // Error answers may be HTML (a 401 page): the status says enough.
            Err(_) => Value::Null,
        };
        Ok(Answer { status, body })
    }

    fn refused(&self, answer: Answer, what: &str) -> LmsError {
        answer.into_error(what, &self.api_key)
    }

    async fn get(&self, path: &str, what: &str) -> Result<Answer, LmsError> {
        self.call(self.http.get(format!("{}/{path}", self.base)), what).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], what: &str) -> Result<Answer, LmsError> {
        self.call(self.http.post(format!("{}/{path}", self.base)).form(form), what).await
    }

    /// A user by `email:` or `username:`; `None` when TalentLMS has nobody (or only a
    /// deleted user) there.
    async fn find_user_by(&self, field: &str, value: &str, what: &str) -> Result<Option<Value>, LmsError> {
        let answer = self.get(&format!("users/{field}:{}", path_value(value)), what).await?;
        if answer.status == StatusCode::NOT_FOUND || answer.says("does not exist") || answer.says("no longer available")
        {
            return Ok(None);
        }
        if answer.is_error() {
            return Err(self.refused(answer, what));
        }
        Ok(Some(answer.body))
    }

    async fn find_user(&self, email: &str) -> Result<Option<Value>, LmsError> {
        self.find_user_by("email", email, "find user").await
    }

    async fn sign_up(&self, student: &LmsStudent, login: &str) -> Result<SignUp, LmsError> {
        let password = strong_password();
        let form = [
            ("first_name", student.first_name.as_str()),
            ("last_name", student.last_name.as_str()),
            ("email", student.email.as_str()),
            ("login", login),
            ("password", password.as_str()),
        ];
        let answer = self.post("usersignup", &form, "sign up").await?;
        if answer.says("same email address already exists") {
            return Ok(SignUp::EmailTaken);
        }
        if answer.says("same login already exists") {
            return Ok(SignUp::LoginTaken);
        }
        if answer.is_error() {
            return Err(self.refused(answer, "sign up"));
        }
        Ok(SignUp::Created(answer.body))
    }

    /// Creates the user (no user has its email): the user and whether this call made it.
    ///
    /// A login held by another user (someone changed the student's email in TalentLMS, and
    /// the student came back with the old one) moves on to the next candidate login; a login
    /// held by a user with this very email (a concurrent sign-up) is that user.
    async fn create_user(&self, student: &LmsStudent) -> Result<(Value, bool), LmsError> {
        for login in login_candidates(student) {
            match self.sign_up(student, &login).await? {
                SignUp::Created(user) => return Ok((user, true)),
                // Someone (or a concurrent delivery) created it first: look it up instead.
                SignUp::EmailTaken => {
                    return match self.find_user(&student.email).await? {
                        Some(user) => Ok((user, false)),
                        None => Err(LmsError::Permanent(RESERVED_EMAIL.to_owned())),
                    };
                }
                SignUp::LoginTaken => {
                    if let Some(holder) = self.find_user_by("username", &login, "find login holder").await? {
                        if same_email(&holder, &student.email) {
                            return Ok((holder, false));
                        }
                    }
                    tracing::warn!(student = %student.key, "TalentLMS login taken by another user; trying the next one");
                }
            }
        }
        Err(LmsError::Permanent(format!(
            "every login tried for this student ({LOGIN_TRIES}) is taken by other TalentLMS users"
        )))
    }
}

#[async_trait::async_trait]
impl Lms for TalentLms {
    fn name(&self) -> &'static str {
        "talentlms"
    }

    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        let (user, created) = match self.find_user(&student.email).await? {
            Some(user) => (user, false),
            None => self.create_user(student).await?,
        };
        let id = user
            .get("id")
            .and_then(lenient_id)
            .map(LmsUserId)
            .ok_or_else(|| LmsError::Permanent("TalentLMS user without an id".into()))?;
        // Portals whose sign-up leaves users inactive, and learners deactivated earlier (by the
        // bridge when idle). An instructor or admin someone deactivated stays so: a purchase
        // with their email must not reopen their account.
        let learner = is_learner(&user);
        if user.get("status").and_then(Value::as_str) == Some("inactive") && (created || learner) {
            self.set_active(&id, true).await?;
        }
        Ok(EnsuredUser { id, created, learner })
    }

    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
        let form = [("user_id", user.0.as_str()), ("course_id", course.as_str()), ("role", "learner")];
        let answer = self.post("addusertocourse", &form, "enroll").await?;
        if answer.says("already enrolled") {
            return Ok(Enrolled::Already);
        }
        if answer.is_error() {
            return Err(self.refused(answer, "enroll"));
        }
        Ok(Enrolled::Now)
    }

    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        let path =
            format!("removeuserfromcourse/user_id:{},course_id:{}", path_value(&user.0), path_value(course.as_str()));
        let answer = self.get(&path, "unenroll").await?;
        if answer.is_error() && !answer.says("not enrolled") {
            return Err(self.refused(answer, "unenroll"));
        }
        Ok(())
    }

    async fn set_active(&self, user: &LmsUserId, active: bool) -> Result<(), LmsError> {
        let status = if active { "active" } else { "inactive" };
        let answer =
            self.get(&format!("usersetstatus/user_id:{},status:{status}", path_value(&user.0)), "set status").await?;
        if answer.is_error() {
            return Err(self.refused(answer, "set status"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn ana() -> LmsStudent {
        LmsStudent {
            email: "ana.souza+promo@example.com".into(),
            first_name: "Ana".into(),
            last_name: "Souza".into(),
            key: "7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b".into(),
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn epoch(at: SystemTime) -> u64 {
        at.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn passwords_meet_every_talentlms_policy() {
        for _ in 0..100 {
            let p = strong_password();
            assert!(p.len() >= 12 && p.len() <= 20);
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn path_values_escape_argument_syntax() {
        assert_eq!(path_value("ana+x@example.com"), "ana%2Bx@example.com");
        assert_eq!(path_value("a,b:c"), "a%2Cb%3Ac");
    }

    #[test]
    fn logins_are_safe_stable_and_bounded() {
        let logins = login_candidates(&ana());
        // The first is what every earlier version signed up with.
        assert_eq!(logins[0], "ana.souzapromo-7fd726");
        assert_eq!(logins[1], "ana.souzapromo-7fd726011aa0");
        assert_eq!(logins.len(), LOGIN_TRIES);
        assert_eq!(logins, login_candidates(&ana()), "a retry walks the same logins");
        for (i, login) in logins.iter().enumerate() {
            assert!(login.len() <= 70, "{login}");
            assert!(login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')), "{login}");
            assert!(!logins[..i].contains(login), "{login} twice");
        }
        let short = LmsStudent { email: "@x".into(), key: "k1".into(), ..ana() };
        let logins = login_candidates(&short);
        assert_eq!(logins, ["student-k1", "student-k1-2", "student-k1-3", "student-k1-4"]);
    }

    #[test]
    fn a_reset_in_seconds_to_go_is_read_as_such() {
        let now = SystemTime::now();
        let wait = backoff(&headers(&[("x-ratelimit-reset", "30".into())]), now);
        assert_eq!(wait, Duration::from_secs(30));
    }

    #[test]
    fn a_reset_epoch_in_the_future_is_waited_for() {
        let now = SystemTime::now();
        let wait = backoff(&headers(&[("x-ratelimit-reset", (epoch(now) + 40).to_string())]), now);
        assert!(wait > Duration::from_secs(38) && wait <= Duration::from_secs(40), "{wait:?}");
    }

    #[test]
    fn a_reset_epoch_in_the_past_backs_off_the_floor() {
        let now = SystemTime::now();
        let wait = backoff(&headers(&[("x-ratelimit-reset", (epoch(now) - 120).to_string())]), now);
        assert_eq!(wait, MIN_BACKOFF);
        let wait = backoff(&headers(&[("x-ratelimit-reset", "0".into()), ("retry-after", "0".into())]), now);
        assert_eq!(wait, MIN_BACKOFF);
    }

    #[test]
    fn retry_after_is_honoured_and_the_longer_hint_wins() {
        let now = SystemTime::now();
        let past = (epoch(now) - 120).to_string();
        assert_eq!(backoff(&headers(&[("retry-after", "7".into())]), now), Duration::from_secs(7));
        let both = headers(&[("retry-after", "7".into()), ("x-ratelimit-reset", past)]);
        assert_eq!(backoff(&both, now), Duration::from_secs(7));
        let both = headers(&[("retry-after", "2".into()), ("x-ratelimit-reset", "9".into())]);
        assert_eq!(backoff(&both, now), Duration::from_secs(9));
        let date = chrono::DateTime::from_timestamp(i64::try_from(epoch(now)).unwrap() + 20, 0).unwrap();
        let http_date = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = backoff(&headers(&[("retry-after", http_date)]), now);
        assert!(wait > Duration::from_secs(18) && wait <= Duration::from_secs(20), "{wait:?}");
    }

    #[test]
    fn a_rate_limit_without_hints_waits_the_default_and_nothing_waits_over_an_hour() {
        let now = SystemTime::now();
        assert_eq!(backoff(&HeaderMap::new(), now), DEFAULT_BACKOFF);
        assert_eq!(backoff(&headers(&[("retry-after", "nonsense".into())]), now), DEFAULT_BACKOFF);
        assert_eq!(backoff(&headers(&[("retry-after", "86400".into())]), now), MAX_BACKOFF);
    }

    #[test]
    fn talentlms_messages_lose_emails_urls_and_the_key() {
        let said = scrub("User ana@example.com not found at https://acme.talentlms.com/x with KEY123abc!", "KEY123abc");
        assert_eq!(said, "User [email] not found at [url] with [key]");
        assert!(scrub(&"x".repeat(1000), "k").chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn only_learner_type_users_are_learners() {
        assert!(is_learner(&serde_json::json!({ "user_type": "Learner-Type" })));
        for other in ["SuperAdmin", "Admin-Type", "Trainer-Type", "Custom Learner", ""] {
            assert!(!is_learner(&serde_json::json!({ "user_type": other })), "{other}");
        }
        assert!(!is_learner(&serde_json::json!({})));
    }

    #[test]
    fn https_urls_and_loopback_http_urls_are_accepted() {
        for url in [
            "https://acme.talentlms.com",
            "https://acme.talentlms.com/",
            "  https://acme.talentlms.com\n",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:9000/",
            "http://localhost:3000",
            "http://LOCALHOST",
        ] {
            assert!(TalentLms::new(url, "key".into(), 5).is_ok(), "{url}");
        }
    }

    #[test]
    fn plain_http_to_another_host_and_other_schemes_are_refused() {
        for url in ["http://acme.talentlms.com", "http://10.0.0.1", "http://[::2]", "http://localhost.evil.com"] {
            let error = TalentLms::new(url, "key".into(), 5).unwrap_err();
            assert!(matches!(error, ConfigError::Insecure), "{url}: {error}");
            assert!(error.to_string().contains("https://"), "{error}");
        }
        for url in ["ftp://acme.talentlms.com", "acme.talentlms.com", "", "https://"] {
            assert!(matches!(TalentLms::new(url, "key".into(), 5), Err(ConfigError::BadUrl)), "{url}");
        }
    }

    #[test]
    fn the_api_key_is_trimmed_and_must_not_be_blank() {
        let lms = TalentLms::new("https://acme.talentlms.com", " key-from-a-paste\r\n".into(), 5).unwrap();
        assert_eq!(lms.api_key, "key-from-a-paste");
        assert!(!format!("{lms:?}").contains("key-from-a-paste"));
        assert!(matches!(TalentLms::new("https://acme.talentlms.com", " \n".into(), 5), Err(ConfigError::EmptyKey)));
    }
}
