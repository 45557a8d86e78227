//! TalentLMS REST API v1 (see `talentlms-api.md` in the design folder).
//!
//! Basic auth with the API key as user name; form-encoded POST bodies; `name:value` path
//! arguments for GETs; errors as `{"error":{"type","message"}}`, classified by message text
//! as well as by status, because "already enrolled" and "not enrolled" only differ there.

use super::{Lms, LmsError, LmsStudent, LmsUserId};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lms_bridge_shared::CourseId;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The TalentLMS adapter.
pub struct TalentLms {
    base: String,
    api_key: String,
    http: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    /// Set when TalentLMS said the quota is spent: calls fail fast until then.
    blocked_until: Mutex<Option<Instant>>,
}

/// One parsed answer: status and JSON body (`Null` when the body is not JSON).
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
    fn into_error(self, what: &str) -> LmsError {
        let message =
            format!("{what}: HTTP {} {}", self.status.as_u16(), self.error_message().unwrap_or("(no message)"));
        match self.status.as_u16() {
            // Bad or disabled API key: an operator must fix it; keep the work until then.
            401 | 403 | 408 | 429 => LmsError::Transient { message, retry_after: None },
            s if s >= 500 => LmsError::Transient { message, retry_after: None },
            _ => LmsError::Permanent(message),
        }
    }
}

/// An id sent as a string or a number.
fn lenient_id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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

/// A login from the email's local part plus a stable suffix from the student key.
fn login_for(student: &LmsStudent) -> String {
    let local = student.email.split('@').next().unwrap_or_default();
    let clean: String =
        local.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).take(40).collect();
    let suffix: String = student.key.chars().take(6).collect();
    format!("{}-{suffix}", if clean.is_empty() { "student" } else { &clean })
}

fn seconds_header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl TalentLms {
    /// An adapter for `https://{portal}.talentlms.com` (or the sandbox) and an API key, pacing
    /// its calls to `calls_per_second` (TalentLMS allows 200 per 5 s per portal; capped at 35/s).
    pub fn new(base_url: &str, api_key: String, calls_per_second: u32) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        let quota = Quota::per_second(NonZeroU32::new(calls_per_second.min(35)).unwrap_or(NonZeroU32::MIN));
        Ok(Self {
            base: format!("{}/api/v1", base_url.trim_end_matches('/')),
            api_key,
            http,
            limiter: RateLimiter::direct(quota),
            blocked_until: Mutex::new(None),
        })
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
    fn note_limits(&self, status: StatusCode, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
        let remaining = seconds_header(headers, "x-ratelimit-remaining");
        if status != StatusCode::TOO_MANY_REQUESTS && remaining != Some(0) {
            return None;
        }
        let wait = seconds_header(headers, "retry-after").map(Duration::from_secs).or_else(|| {
            let reset = seconds_header(headers, "x-ratelimit-reset")?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
            Some(Duration::from_secs(reset.saturating_sub(now)))
        });
        let wait = wait.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(3600));
        if let Ok(mut blocked) = self.blocked_until.lock() {
            *blocked = Some(Instant::now() + wait);
        }
        Some(wait)
    }

    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Answer, LmsError> {
        self.check_quota()?;
        self.limiter.until_ready().await;
        let response = request
            .basic_auth(&self.api_key, Some(""))
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| LmsError::Transient { message: format!("{what}: {e}"), retry_after: None })?;
        let status = response.status();
        let retry_after = self.note_limits(status, response.headers());
        let text = response.text().await.unwrap_or_default();
        let answer = Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) };
        if let Some(retry_after) = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
            return Err(LmsError::Transient {
                message: format!("{what}: rate limited"),
                retry_after: Some(retry_after),
            });
        }
        Ok(answer)
    }

    async fn get(&self, path: &str, what: &str) -> Result<Answer, LmsError> {
        self.call(self.http.get(format!("{}/{path}", self.base)), what).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], what: &str) -> Result<Answer, LmsError> {
        self.call(self.http.post(format!("{}/{path}", self.base)).form(form), what).await
    }

    async fn find_user(&self, email: &str) -> Result<Option<Value>, LmsError> {
        let answer = self.get(&format!("users/email:{}", path_value(email)), "find user").await?;
        if answer.status == StatusCode::NOT_FOUND || answer.says("does not exist") {
            return Ok(None);
        }
        if answer.is_error() {
            return Err(answer.into_error("find user"));
        }
        Ok(Some(answer.body))
    }

    async fn sign_up(&self, student: &LmsStudent) -> Result<Option<Value>, LmsError> {
        let password = strong_password();
        let login = login_for(student);
        let form = [
            ("first_name", student.first_name.as_str()),
            ("last_name", student.last_name.as_str()),
            ("email", student.email.as_str()),
            ("login", login.as_str()),
            ("password", password.as_str()),
        ];
        let answer = self.post("usersignup", &form, "sign up").await?;
        // Someone (or a concurrent delivery) created it first: look it up instead.
        if answer.says("same email address already exists") {
            return Ok(None);
        }
        if answer.is_error() {
            return Err(answer.into_error("sign up"));
        }
        Ok(Some(answer.body))
    }
}

#[async_trait::async_trait]
impl Lms for TalentLms {
    fn name(&self) -> &'static str {
        "talentlms"
    }

    async fn ensure_user(&self, student: &LmsStudent) -> Result<LmsUserId, LmsError> {
        let user = match self.find_user(&student.email).await? {
            Some(user) => user,
            None => match self.sign_up(student).await? {
                Some(user) => user,
                None => self.find_user(&student.email).await?.ok_or_else(|| LmsError::Transient {
                    message: "user vanished after signup".into(),
                    retry_after: None,
                })?,
            },
        };
        let id = user
            .get("id")
            .and_then(lenient_id)
            .map(LmsUserId)
            .ok_or_else(|| LmsError::Permanent("TalentLMS user without an id".into()))?;
        // Portals whose sign-up leaves users inactive (and users we deactivated earlier).
        if user.get("status").and_then(Value::as_str) == Some("inactive") {
            self.set_active(&id, true).await?;
        }
        Ok(id)
    }

    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        let form = [("user_id", user.0.as_str()), ("course_id", course.as_str()), ("role", "learner")];
        let answer = self.post("addusertocourse", &form, "enroll").await?;
        if answer.is_error() && !answer.says("already enrolled") {
            return Err(answer.into_error("enroll"));
        }
        Ok(())
    }

    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        let path =
            format!("removeuserfromcourse/user_id:{},course_id:{}", path_value(&user.0), path_value(course.as_str()));
        let answer = self.get(&path, "unenroll").await?;
        if answer.is_error() && !answer.says("not enrolled") {
            return Err(answer.into_error("unenroll"));
        }
        Ok(())
    }

    async fn set_active(&self, user: &LmsUserId, active: bool) -> Result<(), LmsError> {
        let status = if active { "active" } else { "inactive" };
        let answer =
            self.get(&format!("usersetstatus/user_id:{},status:{status}", path_value(&user.0)), "set status").await?;
        if answer.is_error() {
            return Err(answer.into_error("set status"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn logins_are_safe_and_stable() {
        let student = LmsStudent {
            email: "ana.souza+promo@example.com".into(),
            first_name: "Ana".into(),
            last_name: "Souza".into(),
            key: "7fd726011aa0".into(),
        };
        assert_eq!(login_for(&student), "ana.souzapromo-7fd726");
    }
}
