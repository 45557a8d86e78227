//! Moodle web services over REST (what this adapter relies on: docs/moodle.md).
//!
//! Every call is a form-encoded POST of `wstoken`, `wsfunction`, `moodlewsrestformat=json` and
//! the function's arguments in PHP bracket syntax to `{MOODLE_URL}/webservice/rest/server.php`.
//! Enrolments carry their end date (`timeend`): Moodle ends access by itself when it comes.
//!
//! Error texts and log lines never carry the token or an email: transport errors are reduced
//! to fixed texts, Moodle's own messages are scrubbed; logs name the student key only.

mod http;
mod users;

#[cfg(test)]
mod tests;

use super::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUser, LmsUserId};
use crate::cli::Secret;
use crate::lms::pace::Pace;
use http::{Arg, Reply};
use lms_bridge_shared::{CourseId, Timestamp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// The student role's id on a standard Moodle install.
pub const DEFAULT_STUDENT_ROLE_ID: u32 = 5;
/// The default client-side pace.
pub const DEFAULT_MAX_CALLS_PER_SECOND: u32 = 20;
/// The fastest pace accepted: core Moodle has no rate limit, this only keeps one process from
/// flooding the site.
const MAX_CALLS_PER_SECOND: u32 = 100;
/// The default time one call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The path of the REST server under the site's wwwroot.
const ENDPOINT: &str = "/webservice/rest/server.php";

/// The functions the adapter calls; the external service of the token must hold them all
/// ([`Moodle::check`] says which are missing).
pub const REQUIRED_FUNCTIONS: [&str; 7] = [
    "core_webservice_get_site_info",
    "core_user_get_users_by_field",
    "core_user_create_users",
    "core_user_update_users",
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_enrol_get_users_courses",
];

/// How to reach a Moodle site.
#[derive(Debug, Clone)]
pub struct MoodleConfig {
    /// The site's exact wwwroot (`$CFG->wwwroot`, e.g. `https://school.example/moodle`): Moodle
    /// redirects any other host, port or scheme.
    pub url: String,
    /// The web service token (`MOODLE_TOKEN`).
    pub token: Secret,
    /// The role enrolments give (`MOODLE_STUDENT_ROLE_ID`; 5, *student*, on a standard site).
    pub student_role_id: u32,
    /// The client-side pace, for the whole process.
    pub max_calls_per_second: u32,
    /// How long one call may take.
    pub timeout: Duration,
}

impl MoodleConfig {
    /// The site and token, with the default role, pace and timeout.
    pub fn new(url: impl Into<String>, token: Secret) -> Self {
        Self {
            url: url.into(),
            token,
            student_role_id: DEFAULT_STUDENT_ROLE_ID,
            max_calls_per_second: DEFAULT_MAX_CALLS_PER_SECOND,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why the adapter cannot be built from its settings (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse, has no host, carries a query, or its scheme is not http(s).
    #[error("MOODLE_URL is not an https:// URL with a host (the site's wwwroot, without query)")]
    BadUrl,
    /// Plain http to a host that is not this machine would send the token in clear.
    #[error(
        "MOODLE_URL must use https:// (http:// is only accepted for a loopback host: 127.0.0.0/8, ::1, localhost)"
    )]
    Insecure,
    /// The token is empty once trimmed.
    #[error("MOODLE_TOKEN is empty")]
    EmptyToken,
    /// Role ids start at 1.
    #[error("MOODLE_STUDENT_ROLE_ID must be a Moodle role id (1 or more)")]
    BadRoleId,
    /// The HTTP client could not be built.
    #[error("building the HTTP client failed")]
    Http(#[source] reqwest::Error),
}

/// Why [`Moodle::check`] failed, in one line.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The call failed (token, service, URL, web services off, network).
    #[error("Moodle check failed: {0}")]
    Call(LmsError),
    /// The token's service lacks functions the adapter calls.
    #[error(
        "the Moodle service of MOODLE_TOKEN lacks {0}: add them under Site administration > Server > Web services > \
         External services > Functions"
    )]
    MissingFunctions(String),
    /// The answer is not site info.
    #[error("Moodle check failed: core_webservice_get_site_info answered something that is not site info")]
    BadAnswer,
}

/// What [`Moodle::check`] learnt about the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// The Moodle release, e.g. `4.5+ (Build: 20241205)`.
    pub release: String,
    /// The functions the token may call.
    pub functions: BTreeSet<String>,
}

/// The Moodle adapter.
pub struct Moodle {
    endpoint: String,
    token: Secret,
    student_role_id: u32,
    http: reqwest::Client,
    timeout: Duration,
    pacer: Pace,
}

/// Leaves the token and the site address out.
impl fmt::Debug for Moodle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Moodle")
            .field("student_role_id", &self.student_role_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The REST endpoint of a wwwroot: `https://…` (`http://` only for a loopback host), no query
/// or fragment; a URL already ending in the endpoint's path is taken as its wwwroot.
fn endpoint(url: &str) -> Result<String, ConfigError> {
    let root = url.trim().trim_end_matches('/');
    let root = root.strip_suffix(ENDPOINT).unwrap_or(root);
    let parsed = reqwest::Url::parse(root).map_err(|_| ConfigError::BadUrl)?;
    if parsed.host_str().is_none_or(str::is_empty) || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::BadUrl);
    }
    match parsed.scheme() {
        "https" => {}
        "http" if crate::lms::loopback_host(&parsed) => {}
        "http" => return Err(ConfigError::Insecure),
        _ => return Err(ConfigError::BadUrl),
    }
    Ok(format!("{root}{ENDPOINT}"))
}

/// A Moodle id (users, courses, roles are integers) from ours; anything else is refused.
fn numeric_id(value: &str, what: &str) -> Result<u64, LmsError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| LmsError::Permanent(format!("Moodle {what} ids are positive integers; this one is not")))
}

/// An id Moodle sent as a number (or a numeric string).
fn id_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `timeend` for an access end: Unix seconds, at least 1 (0 means "never" to Moodle).
fn end_seconds(until: Timestamp) -> i64 {
    until.unix_millis().div_euclid(1000).max(1)
}

impl Moodle {
    /// An adapter for the site at `config.url` (its exact wwwroot), with redirects off: a
    /// redirect means the URL is not the wwwroot, and following it would lose the POST.
    pub fn new(config: MoodleConfig) -> Result<Self, ConfigError> {
        let endpoint = endpoint(&config.url)?;
        let token = config.token.expose().trim().to_owned();
        if token.is_empty() {
            return Err(ConfigError::EmptyToken);
        }
        if config.student_role_id == 0 {
            return Err(ConfigError::BadRoleId);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Http(e.without_url()))?;
        Ok(Self {
            endpoint,
            token: Secret::new(token),
            student_role_id: config.student_role_id,
            http,
            timeout: config.timeout,
            pacer: Pace::new(config.max_calls_per_second, MAX_CALLS_PER_SECOND),
        })
    }

    /// The start-up probe: calls `core_webservice_get_site_info`, which fails on a bad token, a
    /// URL that is not the wwwroot or web services switched off, and checks that the token's
    /// service holds every function in [`REQUIRED_FUNCTIONS`].
    pub async fn check(&self) -> Result<SiteInfo, CheckError> {
        let info = self.call_ok("core_webservice_get_site_info", &[]).await.map_err(CheckError::Call)?;
        let release = info.get("release").and_then(Value::as_str).ok_or(CheckError::BadAnswer)?.to_owned();
        let functions: BTreeSet<String> = info
            .get("functions")
            .and_then(Value::as_array)
            .ok_or(CheckError::BadAnswer)?
            .iter()
            .filter_map(|f| f.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        let missing: Vec<&str> = REQUIRED_FUNCTIONS.into_iter().filter(|f| !functions.contains(*f)).collect();
        if !missing.is_empty() {
            return Err(CheckError::MissingFunctions(missing.join(", ")));
        }
        Ok(SiteInfo { release, functions })
    }

    /// The user's course ids, as `core_enrol_get_users_courses` lists them (active enrolments
    /// only: one past its end date is gone).
    async fn courses_of(&self, user: u64) -> Result<BTreeSet<CourseId>, LmsError> {
        const FUNCTION: &str = "core_enrol_get_users_courses";
        let courses = self.call_ok(FUNCTION, &[("userid", Arg::value(user))]).await?;
        let courses =
            courses.as_array().ok_or_else(|| LmsError::Permanent(format!("{FUNCTION}: the answer is not a list")))?;
        Ok(courses
            .iter()
            .filter_map(|c| c.get("id").and_then(id_of))
            .filter_map(|id| CourseId::parse(id.to_string()).ok())
            .collect())
    }
}

#[async_trait::async_trait]
impl Lms for Moodle {
    fn name(&self) -> &'static str {
        "moodle"
    }

    async fn startup_check(&self) -> anyhow::Result<()> {
        self.check().await.map(|_| ()).map_err(|e| anyhow::anyhow!("Moodle at MOODLE_URL: {e}"))
    }

    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        self.find_or_create_active(student).await
    }

    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
        self.enroll_until(user, course, None).await
    }

    /// Moodle ends access at `timeend` by itself.
    fn enforces_end_dates(&self) -> bool {
        true
    }

    /// `enrol_manual_enrol_users` with the whole intended state: an enrolment is an upsert,
    /// and a field left out is reset (`timeend` to 0, "never"; `suspend` to active).
    ///
    /// Moodle answers `null` whether or not the user was enrolled, so this is always
    /// [`Enrolled::Now`]: it never claims a pre-existing enrolment it cannot see.
    async fn enroll_until(
        &self,
        user: &LmsUserId,
        course: &CourseId,
        until: Option<Timestamp>,
    ) -> Result<Enrolled, LmsError> {
        const FUNCTION: &str = "enrol_manual_enrol_users";
        let enrolment = Arg::one(vec![
            ("roleid", Arg::value(self.student_role_id)),
            ("userid", Arg::value(numeric_id(&user.0, "user")?)),
            ("courseid", Arg::value(numeric_id(course.as_str(), "course")?)),
            ("timestart", Arg::value(0)),
            ("timeend", Arg::value(until.map_or(0, end_seconds))),
            ("suspend", Arg::value(0)),
        ]);
        match self.call(FUNCTION, &[("enrolments", enrolment)]).await? {
            Reply::Value(_) => Ok(Enrolled::Now),
            Reply::Exception(e) if e.is("invalidparameter") => Err(LmsError::Permanent(format!(
                "{FUNCTION}: Moodle refused the enrolment (invalidparameter): most likely no course has this id{}",
                e.reason(self.token.expose())
            ))),
            Reply::Exception(e) => Err(self.refused(e, FUNCTION)),
        }
    }

    /// `enrol_manual_unenrol_users`; Moodle answers `null` when the user was not enrolled.
    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        const FUNCTION: &str = "enrol_manual_unenrol_users";
        let enrolment = Arg::one(vec![
            ("userid", Arg::value(numeric_id(&user.0, "user")?)),
            ("courseid", Arg::value(numeric_id(course.as_str(), "course")?)),
        ]);
        match self.call(FUNCTION, &[("enrolments", enrolment)]).await? {
            Reply::Value(_) => Ok(()),
            Reply::Exception(e) if e.is("invalidparameter") => Err(LmsError::Permanent(format!(
                "{FUNCTION}: Moodle refused the unenrolment (invalidparameter): most likely no user has this id{}",
                e.reason(self.token.expose())
            ))),
            Reply::Exception(e) if e.is("invalidrecord") => {
                Err(LmsError::Permanent(format!("{FUNCTION}: no Moodle course has this id (invalidrecord)")))
            }
            Reply::Exception(e) => Err(self.refused(e, FUNCTION)),
        }
    }

    /// Suspends (never deletes) or unsuspends the account.
    async fn set_active(&self, user: &LmsUserId, active: bool) -> Result<(), LmsError> {
        self.set_suspended(numeric_id(&user.0, "user")?, !active).await
    }

    async fn lookup(&self, email: &str) -> Result<Option<LmsUser>, LmsError> {
        self.user_state(email).await
    }
}
