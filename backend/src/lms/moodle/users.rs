//! Finding or creating a student's user: lookup by email, usernames, "already exists",
//! suspension.

use super::http::{Arg, Reply};
use super::{id_of, Moodle};
use crate::lms::{EnsuredUser, LmsError, LmsStudent, LmsUser, LmsUserId};
use serde_json::Value;

/// How many usernames a creation tries before giving up (see [`username_candidates`]).
const USERNAME_TRIES: usize = 4;
/// Moodle's `user.username` column.
const MAX_USERNAME: usize = 100;

/// The permanent failure when Moodle refuses a creation and nobody holds the email or the
/// username, as far as the service user can see.
const NOT_CREATED: &str = "core_user_create_users: Moodle refused to create the user (invalidparameter), yet no \
     user with this email or username can be seen: either a user holds the email but the service user cannot \
     see emails (give it moodle/site:viewuseridentity and show email in the site's user identity fields; on \
     PostgreSQL the lookup is also case-sensitive), or Moodle does not accept this email address";

/// A user as `core_user_get_users_by_field` gives it (fields depend on what the service user
/// may see).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    id: u64,
    email: Option<String>,
    idnumber: Option<String>,
    suspended: bool,
}

impl Found {
    fn parse(user: &Value) -> Option<Self> {
        let text = |key: &str| user.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: user.get("id").and_then(id_of)?,
            email: text("email"),
            idnumber: text("idnumber"),
            // Older sites send 0/1.
            suspended: match user.get("suspended") {
                Some(Value::Bool(b)) => *b,
                Some(v) => id_of(v).is_some_and(|n| n != 0),
                None => false,
            },
        })
    }

    fn has_email(&self, email: &str) -> bool {
        self.email.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
    }
}

/// A username Moodle accepts (`PARAM_USERNAME`: lower case, `a-z 0-9 - _ . @`), from the
/// email; `student` when nothing is left.
fn clean_username(email: &str) -> String {
    let clean: String = email
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '@'))
        .collect();
    if clean.is_empty() {
        "student".to_owned()
    } else {
        clean
    }
}

/// The usernames a creation tries, in order: the lower-case email, then the same with a
/// hyphen and 6, 12, 18 characters of the student key. Stable, so a retry walks the same list;
/// at most [`MAX_USERNAME`] characters each.
fn username_candidates(student: &LmsStudent) -> Vec<String> {
    let base = clean_username(&student.email);
    let mut names = vec![base.chars().take(MAX_USERNAME).collect::<String>()];
    for len in [6, 12, 18] {
        let suffix: String = student.key.as_str().chars().take(len).collect();
        let room = MAX_USERNAME - suffix.len() - 1;
        names.push(format!("{}-{suffix}", base.chars().take(room).collect::<String>()));
    }
    names.truncate(USERNAME_TRIES);
    names
}

/// `core_user_update_users` answers `{"warnings":[…]}`; a warning is that user's failure
/// (older sites answer `null` and throw instead).
fn update_warning(answer: &Value) -> Option<String> {
    let warning = answer.get("warnings")?.as_array()?.first()?;
    let code = warning.get("warningcode").and_then(Value::as_str).unwrap_or("unknown");
    Some(format!("core_user_update_users: Moodle did not update the user ({code})"))
}

impl Moodle {
    /// Finds the user by email or creates it, and unsuspends it when this call created it or
    /// it is one the bridge made for this student (its `idnumber` is the student key). Any
    /// other suspended user stays so: a purchase with a teacher's email must not reopen their
    /// account.
    pub(super) async fn find_or_create_active(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        let email = student.email.trim().to_lowercase();
        let (user, created) = match self.find_by_email(&email).await? {
            Some(user) => (user, false),
            None => self.create_user(student, &email).await?,
        };
        let learner = created || user.idnumber.as_deref() == Some(student.key.as_str());
        if user.suspended && learner {
            tracing::info!(student = %student.key, "unsuspending the student's Moodle user");
            self.set_suspended(user.id, false).await?;
        }
        Ok(EnsuredUser { id: LmsUserId(user.id.to_string()), created, learner })
    }

    async fn users_by(&self, field: &str, value: &str) -> Result<Vec<Found>, LmsError> {
        const FUNCTION: &str = "core_user_get_users_by_field";
        let args = [("field", Arg::value(field)), ("values", Arg::List(vec![Arg::value(value)]))];
        let users = match self.call(FUNCTION, &args).await? {
            Reply::Value(users) => users,
            Reply::Exception(e) if e.is("invalidparameter") => {
                return Err(LmsError::Permanent(format!(
                    "{FUNCTION}: Moodle does not accept this student's {field} (invalidparameter)"
                )))
            }
            Reply::Exception(e) => return Err(self.refused(e, FUNCTION)),
        };
        let users =
            users.as_array().ok_or_else(|| LmsError::Permanent(format!("{FUNCTION}: the answer is not a list")))?;
        users
            .iter()
            .map(|u| Found::parse(u).ok_or_else(|| LmsError::Permanent(format!("{FUNCTION}: a user without an id"))))
            .collect()
    }

    /// The user with this email; several (a site allowing shared emails) is a refusal.
    async fn find_by_email(&self, email: &str) -> Result<Option<Found>, LmsError> {
        let mut users = self.users_by("email", email).await?;
        if users.len() > 1 {
            return Err(LmsError::Permanent(format!(
                "{} Moodle users share this student's email: merge or change them, then retry",
                users.len()
            )));
        }
        Ok(users.pop())
    }

    /// One creation: the new user's id, or Moodle's refusal.
    async fn create(&self, student: &LmsStudent, email: &str, username: &str) -> Result<Reply, LmsError> {
        let name = |n: &str| if n.trim().is_empty() { "-".to_owned() } else { n.trim().to_owned() };
        let user = Arg::one(vec![
            ("username", Arg::value(username)),
            ("firstname", Arg::value(name(&student.first_name))),
            ("lastname", Arg::value(name(&student.last_name))),
            ("email", Arg::value(email)),
            ("auth", Arg::value("manual")),
            // Moodle mails the student a password and asks for a new one at first login; a
            // password sent here would have to meet the site's own policy.
            ("createpassword", Arg::value(1)),
            // Marks the user as the bridge's, for this student (`learner` on later calls).
            ("idnumber", Arg::value(student.key.as_str())),
        ]);
        self.call("core_user_create_users", &[("users", user)]).await
    }

    /// Creates the user (none has its email): the user and whether this call made it.
    ///
    /// Moodle refuses a taken username and a taken email alike (`invalidparameter`, the reason
    /// only with debugging on), so a refusal is read by looking again: a user with the email
    /// now (someone, or a concurrent delivery, made it) is that user; a user holding the
    /// username with another email means the next username.
    async fn create_user(&self, student: &LmsStudent, email: &str) -> Result<(Found, bool), LmsError> {
        const FUNCTION: &str = "core_user_create_users";
        for username in username_candidates(student) {
            let refusal = match self.create(student, email, &username).await? {
                Reply::Value(created) => {
                    let id = created
                        .get(0)
                        .and_then(|u| u.get("id"))
                        .and_then(id_of)
                        .ok_or_else(|| LmsError::Permanent(format!("{FUNCTION}: the answer holds no user id")))?;
                    tracing::info!(student = %student.key, "created the student's Moodle user");
                    let found = Found {
                        id,
                        email: Some(email.to_owned()),
                        idnumber: Some(student.key.as_str().to_owned()),
                        suspended: false,
                    };
                    return Ok((found, true));
                }
                Reply::Exception(e) if e.is("invalidparameter") => e,
                Reply::Exception(e) => return Err(self.refused(e, FUNCTION)),
            };
            if let Some(user) = self.find_by_email(email).await? {
                return Ok((user, false));
            }
            match self.users_by("username", &username).await?.into_iter().next() {
                Some(holder) if holder.has_email(email) => return Ok((holder, false)),
                Some(_) => {
                    tracing::warn!(student = %student.key, "Moodle username taken by another user; trying the next one");
                }
                None => {
                    return Err(LmsError::Permanent(format!("{NOT_CREATED}{}", refusal.reason(self.token.expose()))))
                }
            }
        }
        Err(LmsError::Permanent(format!(
            "every username tried for this student ({USERNAME_TRIES}) is taken by other Moodle users"
        )))
    }

    /// `core_user_update_users` with `suspended`: suspending blocks login and ends the user's
    /// sessions; nothing is deleted.
    pub(super) async fn set_suspended(&self, user: u64, suspended: bool) -> Result<(), LmsError> {
        let update = Arg::one(vec![("id", Arg::value(user)), ("suspended", Arg::value(u8::from(suspended)))]);
        let answer = self.call_ok("core_user_update_users", &[("users", update)]).await?;
        match update_warning(&answer) {
            Some(message) => Err(LmsError::Permanent(message)),
            None => Ok(()),
        }
    }

    /// The user with this email and the courses it is actively enrolled in.
    pub(super) async fn user_state(&self, email: &str) -> Result<Option<LmsUser>, LmsError> {
        let Some(user) = self.find_by_email(&email.trim().to_lowercase()).await? else { return Ok(None) };
        let courses = self.courses_of(user.id).await?;
        Ok(Some(LmsUser { id: LmsUserId(user.id.to_string()), active: !user.suspended, courses }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lms_bridge_shared::StudentKey;
    use serde_json::json;

    fn ana() -> LmsStudent {
        LmsStudent {
            email: "Ana.Souza+promo@Example.com".into(),
            first_name: "Ana".into(),
            last_name: "Souza".into(),
            key: StudentKey::parse("7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b").unwrap(),
        }
    }

    #[test]
    fn usernames_are_the_lower_case_email_then_suffixed_and_stay_valid() {
        let names = username_candidates(&ana());
        assert_eq!(
            names,
            [
                "ana.souzapromo@example.com",
                "ana.souzapromo@example.com-7fd726",
                "ana.souzapromo@example.com-7fd726011aa0",
                "ana.souzapromo@example.com-7fd726011aa08d90d1",
            ]
        );
        assert_eq!(names, username_candidates(&ana()), "a retry walks the same usernames");
        let long = LmsStudent { email: format!("{}@example.com", "x".repeat(200)), ..ana() };
        for name in username_candidates(&long) {
            assert!(name.chars().count() <= MAX_USERNAME, "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.@".contains(c)));
        }
        assert_eq!(username_candidates(&LmsStudent { email: "ÉÈ+".into(), ..ana() })[0], "student");
    }

    #[test]
    fn users_parse_as_moodle_4_5_sends_them() {
        let user = json!({"id":3,"username":"alice","fullname":"Alice Liddell","email":"alice@example.com",
            "idnumber":"ext-001","auth":"manual","suspended":false,"confirmed":true});
        let found = Found::parse(&user).unwrap();
        assert_eq!(found.id, 3);
        assert!(!found.suspended && found.has_email("ALICE@example.com"));
        assert!(Found::parse(&json!({"id":"5","suspended":1})).unwrap().suspended);
        // What a service user without the identity capabilities sees.
        let bare = Found::parse(&json!({"id":7,"fullname":"X"})).unwrap();
        assert!(!bare.suspended && !bare.has_email("x@y.z") && bare.idnumber.is_none());
        assert!(Found::parse(&json!({"username":"no-id"})).is_none());
    }

    #[test]
    fn update_warnings_are_failures() {
        assert_eq!(update_warning(&json!({"warnings":[]})), None);
        assert_eq!(update_warning(&Value::Null), None);
        let warned =
            json!({"warnings":[{"item":"user","itemid":9,"warningcode":"invaliduserid","message":"Invalid user id"}]});
        assert_eq!(
            update_warning(&warned).unwrap(),
            "core_user_update_users: Moodle did not update the user (invaliduserid)"
        );
    }
}
