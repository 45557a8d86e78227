//! LMS ports: one trait, one module per LMS, chosen by the `LMS` setting.

pub mod moodle;
mod pace;
pub mod talentlms;

use lms_bridge_shared::{CourseId, StudentKey, Timestamp};
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
    pub key: StudentKey,
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
    /// This very call created it. The bridge records it once and never unsets it, so say
    /// `false` when a concurrent call (or someone) created the user first.
    pub created: bool,
    /// Its LMS role is a plain learner; `false` for any other or unknown role. The bridge
    /// deactivates an idle user only when it created it and it is a learner.
    pub learner: bool,
}

/// What `enroll` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolled {
    /// Enrolled by this call.
    Now,
    /// It already was. On the first attempt of an enroll the engine takes this to mean the
    /// student had the course before the bridge, and never removes it: report it only when
    /// the LMS said so.
    Already,
}

/// Why an LMS call failed. The texts never hold URLs, emails or credentials.
#[derive(Debug, thiserror::Error)]
pub enum LmsError {
    /// Worth retrying later (5xx, 429, timeouts, bad credentials while being fixed): the
    /// action stays pending and is retried.
    #[error("LMS unavailable: {message}")]
    Transient {
        /// What happened.
        message: String,
        /// When the LMS said to come back, if it did (a hint: the engine retries on its own
        /// schedule).
        retry_after: Option<Duration>,
    },
    /// Too many calls already wait for their turn under this process's pace: the delivery
    /// is refused at once (503) so Pub/Sub backs off, instead of holding requests until they
    /// time out. Like a rate-limit pause, it does not count as one of the action's attempts.
    #[error("LMS busy: {queued} calls already wait for their turn under the pace")]
    Saturated {
        /// Calls waiting.
        queued: usize,
    },
    /// Retrying will not help (validation error, unknown course): the action moves to the
    /// enrollment's `failed` list at once.
    #[error("LMS refused: {0}")]
    Permanent(String),
}

impl LmsError {
    /// A pause the LMS or our pace asked for (a rate limit, a full queue), not a failure of the
    /// action: it does not use up one of the action's attempts.
    pub fn is_pause(&self) -> bool {
        matches!(self, Self::Saturated { .. } | Self::Transient { retry_after: Some(_), .. })
    }
}

/// What lms-bridge needs from an LMS (one adapter per LMS; docs/talentlms.md and docs/moodle.md
/// describe them). Every call is idempotent: an action whose answer was lost is run again, so a
/// repeat must succeed and change nothing.
#[async_trait::async_trait]
pub trait Lms: Send + Sync {
    /// The adapter's name, as in the `LMS` setting (`talentlms`); also the key of the
    /// student's LMS user ids in the store.
    fn name(&self) -> &'static str;
    /// Finds the user by email or creates it, and makes sure it is active, except that a
    /// deactivated user who is not a learner and was not created by this call stays
    /// inactive (a purchase with an instructor's email must not reopen their account).
    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError>;
    /// Enrolls as a learner; "already enrolled" is success ([`Enrolled::Already`]).
    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError>;
    /// Whether the LMS ends access by itself at the end date given at enrolment
    /// ([`Lms::enroll_until`]), with no call from the bridge when it comes. `false` (the
    /// default): the LMS ignores end dates and the bridge must unenroll.
    fn enforces_end_dates(&self) -> bool {
        false
    }
    /// Enrolls as a learner until `until` (`None`: no end). Each call sets the end date anew,
    /// so a renewal is another call with the later date. Adapters that do not
    /// [enforce end dates](Lms::enforces_end_dates) ignore `until` and just [`Lms::enroll`].
    async fn enroll_until(
        &self,
        user: &LmsUserId,
        course: &CourseId,
        until: Option<Timestamp>,
    ) -> Result<Enrolled, LmsError> {
        let _ = until;
        self.enroll(user, course).await
    }
    /// Unenrolls; "not enrolled" is success.
    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError>;
    /// Activates or deactivates the user; already so is success.
    async fn set_active(&self, user: &LmsUserId, active: bool) -> Result<(), LmsError>;
    /// Before a server takes work: the LMS answers with these credentials and allows every call
    /// the adapter makes, or the one-line reason it does not. By default nothing is checked
    /// (an adapter whose calls say clearly what is wrong needs no check of its own).
    async fn startup_check(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The user with this email as the LMS has it now, or `None`: what `lms-bridge drift`
    /// compares with the state. Adapters that cannot read it say so.
    async fn lookup(&self, email: &str) -> Result<Option<LmsUser>, LmsError> {
        let _ = email;
        Err(LmsError::Permanent(format!("the {} adapter cannot read users", self.name())))
    }
}

/// A user as the LMS has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmsUser {
    /// Its id.
    pub id: LmsUserId,
    /// Whether it can log in.
    pub active: bool,
    /// The courses it is enrolled in.
    pub courses: std::collections::BTreeSet<CourseId>,
}

/// Whether plain http to this URL's host stays on this machine: the only case where a client
/// that sends a credential may use `http://` (a sandbox, a fake, a tunnel).
pub(crate) fn loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Enrolls and records it; says nothing about end dates.
    #[derive(Default)]
    struct Plain(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl Lms for Plain {
        fn name(&self) -> &'static str {
            "plain"
        }
        async fn ensure_user(&self, _: &LmsStudent) -> Result<EnsuredUser, LmsError> {
            Err(LmsError::Permanent("unused".into()))
        }
        async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
            self.0.lock().map_err(|_| LmsError::Permanent("poisoned".into()))?.push(format!(
                "{}:{}",
                user.0,
                course.as_str()
            ));
            Ok(Enrolled::Already)
        }
        async fn unenroll(&self, _: &LmsUserId, _: &CourseId) -> Result<(), LmsError> {
            Ok(())
        }
        async fn set_active(&self, _: &LmsUserId, _: bool) -> Result<(), LmsError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn adapters_without_end_dates_enroll_as_before_and_ignore_the_date() {
        let lms = Plain::default();
        assert!(!lms.enforces_end_dates());
        let until = Timestamp::from_unix_millis(1_767_225_600_000).ok();
        let course = CourseId::parse("c1").map_err(|e| e.to_string());
        let found =
            lms.enroll_until(&LmsUserId("u1".into()), &course.clone().unwrap_or_else(|e| panic!("{e}")), until).await;
        assert!(matches!(found, Ok(Enrolled::Already)));
        assert_eq!(*lms.0.lock().unwrap_or_else(|e| panic!("{e}")), ["u1:c1"]);
        let talentlms = talentlms::TalentLms::new("https://acme.talentlms.com", "key".into(), 5);
        assert!(talentlms.is_ok_and(|t| !t.enforces_end_dates()));
    }
}
