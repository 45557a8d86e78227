//! Finding or creating a student's user: sign-up, taken emails and logins, reactivation.

use super::http::{lenient_id, path_value};
use super::TalentLms;
use crate::lms::{EnsuredUser, Lms, LmsError, LmsStudent, LmsUser, LmsUserId};
use lms_bridge_shared::CourseId;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;

/// How many logins a sign-up tries before giving up (see [`login_candidates`]).
const LOGIN_TRIES: usize = 4;
/// TalentLMS's built-in user type of a plain learner (the others: `SuperAdmin`,
/// `Admin-Type`, `Trainer-Type`, and any custom type a portal defines).
const LEARNER_TYPE: &str = "Learner-Type";

/// The permanent failure when TalentLMS keeps an email for a user nobody can look up.
const RESERVED_EMAIL: &str = "TalentLMS says a user with this student's email exists, but no user with it can be \
     found (likely deleted in TalentLMS while its email stays reserved): restore or permanently delete that \
     user in TalentLMS, then retry";

/// What a sign-up attempt found.
enum SignUp {
    Created(Value),
    EmailTaken,
    LoginTaken,
}

/// Whether a TalentLMS user object is a plain learner; an unknown or missing type is not.
fn is_learner(user: &Value) -> bool {
    user.get("user_type").and_then(Value::as_str).is_some_and(|t| t.trim().eq_ignore_ascii_case(LEARNER_TYPE))
}

fn same_email(user: &Value, email: &str) -> bool {
    user.get("email").and_then(Value::as_str).is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
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
        let login = format!("{base}-{}", student.key.as_str().chars().take(len).collect::<String>());
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

impl TalentLms {
    pub(super) async fn find_or_create_active(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
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

    /// The user and its `courses[]`, as the by-email read gives them.
    pub(super) async fn user_state(&self, email: &str) -> Result<Option<LmsUser>, LmsError> {
        let Some(user) = self.find_user(email).await? else { return Ok(None) };
        let id = user.get("id").and_then(lenient_id).ok_or_else(|| LmsError::Permanent("user without an id".into()))?;
        let courses = user
            .get("courses")
            .and_then(Value::as_array)
            .map(|courses| {
                courses
                    .iter()
                    .filter_map(|c| c.get("id").and_then(lenient_id))
                    .filter_map(|c| CourseId::parse(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        let active = user.get("status").and_then(Value::as_str) != Some("inactive");
        Ok(Some(LmsUser { id: LmsUserId(id), active, courses }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use lms_bridge_shared::StudentKey;

    fn ana() -> LmsStudent {
        LmsStudent {
            email: "ana.souza+promo@example.com".into(),
            first_name: "Ana".into(),
            last_name: "Souza".into(),
            key: StudentKey::parse("7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b").unwrap(),
        }
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
        let nameless = LmsStudent { email: "@x".into(), ..ana() };
        let logins = login_candidates(&nameless);
        assert_eq!(
            logins,
            [
                "student-7fd726",
                "student-7fd726011aa0",
                "student-7fd726011aa08d90d1",
                "student-7fd726011aa08d90d14a923e"
            ]
        );
    }

    #[test]
    fn only_learner_type_users_are_learners() {
        assert!(is_learner(&serde_json::json!({ "user_type": "Learner-Type" })));
        for other in ["SuperAdmin", "Admin-Type", "Trainer-Type", "Custom Learner", ""] {
            assert!(!is_learner(&serde_json::json!({ "user_type": other })), "{other}");
        }
        assert!(!is_learner(&serde_json::json!({})));
    }
}
