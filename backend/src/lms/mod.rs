//! LMS ports: one trait, one module per LMS, chosen by the `LMS` setting.

pub mod talentlms;

use lms_bridge_shared::CourseId;
use std::fmt;
use std::time::Duration;

/// Who to create or find in the LMS.
#[derive(Clone)]
pub struct LmsStudent {
    /// Normalized email (never logged).
    pub email: String,
    /// First name, or a fallback from the email.
    pub first_name: String,
    /// Last name, or a fallback.
    pub last_name: String,
    /// The student key, for logs and for a stable login suffix.
    pub key: String,
}

/// Shows the student key only: names and email are personal data and stay out of logs.
impl fmt::Debug for LmsStudent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmsStudent").field("key", &self.key).finish_non_exhaustive()
    }
}

/// The LMS's own id of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmsUserId(pub String);

/// The user `ensure_user` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredUser {
    /// Its LMS id.
    pub id: LmsUserId,
    /// This call created it.
    pub created: bool,
    /// Its LMS role is a plain learner (so the bridge may deactivate it if it created it).
    pub learner: bool,
}

/// What `enroll` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolled {
    /// Enrolled by this call.
    Now,
    /// It already was.
    Already,
}

/// Why an LMS call failed. The texts never hold URLs, emails or credentials.
#[derive(Debug, thiserror::Error)]
pub enum LmsError {
    /// Worth retrying later (5xx, 429, timeouts, bad credentials while being fixed).
    #[error("LMS unavailable: {message}")]
    Transient {
        /// What happened.
        message: String,
        /// When the LMS said to come back, if it did.
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (validation error, unknown course).
    #[error("LMS refused: {0}")]
    Permanent(String),
}

/// What lms-bridge needs from an LMS. Every call is idempotent.
#[async_trait::async_trait]
pub trait Lms: Send + Sync {
    /// The adapter's name, as in the `LMS` setting (`talentlms`).
    fn name(&self) -> &'static str;
    /// Finds the user by email or creates it, and makes sure it is active.
    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError>;
    /// Enrolls as a learner; "already enrolled" is success ([`Enrolled::Already`]).
    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError>;
    /// Unenrolls; "not enrolled" is success.
    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError>;
    /// Activates or deactivates the user.
    async fn set_active(&self, user: &LmsUserId, active: bool) -> Result<(), LmsError>;
}
