//! TalentLMS REST API v1 (what this adapter relies on: docs/talentlms.md).
//!
//! Basic auth with the API key as user name; form-encoded POST bodies; `name:value` path
//! arguments for GETs; errors as `{"error":{"type","message"}}`, classified by message text
//! as well as by status, because "already enrolled" and "not enrolled" only differ there.
//!
//! Error texts and log lines never carry a URL (paths hold emails), an email or the API key:
//! transport errors are reduced to fixed texts, TalentLMS's own messages are scrubbed.

mod http;
mod rate_limit;
mod users;

use super::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUser, LmsUserId};
use http::path_value;
use lms_bridge_shared::CourseId;
use rate_limit::Pacer;
use std::fmt;
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    pacer: Pacer,
}

/// Leaves the key and the portal address out.
impl fmt::Debug for TalentLms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalentLms").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Accepts `https://host…`, and `http://` only for a loopback host (the sandbox, a tunnel).
fn check_url(url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| ConfigError::BadUrl)?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::BadUrl);
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if crate::lms::loopback_host(&parsed) => Ok(()),
        "http" => Err(ConfigError::Insecure),
        _ => Err(ConfigError::BadUrl),
    }
}

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
        Ok(Self {
            base: format!("{}/api/v1", base_url.trim_end_matches('/')),
            api_key,
            http,
            timeout: REQUEST_TIMEOUT,
            pacer: Pacer::new(calls_per_second),
        })
    }

    /// The same adapter with another per-call timeout (10 s by default).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait::async_trait]
impl Lms for TalentLms {
    fn name(&self) -> &'static str {
        "talentlms"
    }

    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        self.find_or_create_active(student).await
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

    async fn lookup(&self, email: &str) -> Result<Option<LmsUser>, LmsError> {
        self.user_state(email).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
