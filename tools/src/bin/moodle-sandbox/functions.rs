//! The site's data and the web-service functions the adapter uses, with Moodle 4.5's checks,
//! their order, their messages, and its all-or-nothing batches.

use crate::params::{username_clean, validate, Desc, Invalid, Need, Param, Ty};
use crate::wire::MoodleError;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The functions in the token's service (the ones the adapter may call).
pub const SERVICE: [&str; 8] = [
    "core_webservice_get_site_info",
    "core_user_get_users_by_field",
    "core_user_create_users",
    "core_user_update_users",
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_enrol_get_users_courses",
    "core_enrol_get_enrolled_users",
];

/// Functions the site has but the service does not include: calling them is an
/// `accessexception`; any other name is unknown to the site.
const ELSEWHERE: [&str; 7] = [
    "core_user_delete_users",
    "core_user_get_users",
    "core_course_get_courses",
    "core_course_get_courses_by_field",
    "core_course_create_courses",
    "core_role_assign_roles",
    "enrol_self_enrol_user",
];

/// The standard roles (id, shortname).
const ROLES: [(u64, &str); 8] = [
    (1, "manager"),
    (2, "coursecreator"),
    (3, "editingteacher"),
    (4, "teacher"),
    (5, "student"),
    (6, "guest"),
    (7, "user"),
    (8, "frontpage"),
];

const AUTHS: [&str; 10] = ["cas", "db", "email", "ldap", "lti", "manual", "nologin", "none", "oauth2", "shibboleth"];
const INTERNAL_AUTHS: [&str; 3] = ["manual", "email", "nologin"];
const THEMES: [&str; 2] = ["boost", "classic"];
const VERSION: &str = "2024100700.09";

#[derive(Clone)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    pub idnumber: String,
    pub auth: String,
    pub suspended: bool,
    /// Whether the account was created with `createpassword=1` (Moodle mails a password).
    pub password_mailed: bool,
}

/// Whether a course has a manual-enrolment instance, and whether it is enabled.
#[derive(Clone, Copy, PartialEq)]
pub enum Manual {
    Enabled,
    Disabled,
    Missing,
}

impl Manual {
    pub fn name(self) -> &'static str {
        match self {
            Manual::Enabled => "enabled",
            Manual::Disabled => "disabled",
            Manual::Missing => "none",
        }
    }
}

pub struct Course {
    pub id: u64,
    pub shortname: String,
    pub fullname: String,
    pub manual: Manual,
}

#[derive(Clone)]
pub struct Enrolment {
    pub roles: BTreeSet<u64>,
    pub timestart: i64,
    pub timeend: i64,
    pub suspended: bool,
}

impl Enrolment {
    /// Active at exactly `now`: not suspended, started, not ended (`timeend` 0: never ends).
    pub fn active(&self, now: i64) -> bool {
        !self.suspended && self.timestart <= now && (self.timeend == 0 || now < self.timeend)
    }

    /// Active as the enrolment-listing functions see it: they compare against PHP's
    /// `round(time(), -2)` ("improves db caching"), so an end is only honoured to ±50 s.
    pub fn listed(&self, now: i64) -> bool {
        let rounded = (now + 50).div_euclid(100) * 100;
        !self.suspended && self.timestart < rounded && (self.timeend == 0 || self.timeend > rounded)
    }
}

/// The site administration settings a test may change.
pub struct Site {
    /// Debugging on: errors carry `debuginfo`.
    pub debug: bool,
    /// The service user lacks `moodle/site:viewuseridentity`: lookups by e-mail find nobody
    /// and users come back without `email`.
    pub hide_emails: bool,
    /// The REST protocol enabled (off: HTTP 403, empty body).
    pub rest_enabled: bool,
    /// Functions removed from the service.
    pub not_in_service: BTreeSet<String>,
    /// Roles the service user may assign in courses.
    pub assignable_roles: BTreeSet<u64>,
}

pub struct Moodle {
    pub wwwroot: String,
    pub site: Site,
    pub users: BTreeMap<u64, User>,
    pub next_user_id: u64,
    pub courses: BTreeMap<u64, Course>,
    /// By (userid, courseid).
    pub enrolments: BTreeMap<(u64, u64), Enrolment>,
}

fn args(desc: Desc, params: &Param) -> Result<Value, MoodleError> {
    validate(&desc, params).map_err(|Invalid(info)| MoodleError::invalid_parameter(info))
}

fn value(ty: Ty) -> Desc {
    Desc::Value(ty)
}

fn opt(key: &'static str, ty: Ty) -> (&'static str, Desc, Need) {
    (key, Desc::Value(ty), Need::Optional)
}

fn type_value_list() -> Desc {
    Desc::Multiple(Box::new(Desc::Single(vec![
        ("type", value(Ty::AlphaNumExt), Need::Required),
        ("value", value(Ty::Raw), Need::Required),
    ])))
}

/// The profile fields both create and update accept (optional in both).
fn profile_keys() -> Vec<(&'static str, Desc, Need)> {
    let mut keys = vec![
        opt("idnumber", Ty::Raw),
        opt("lang", Ty::SafeDir),
        opt("calendartype", Ty::Plugin),
        opt("theme", Ty::Plugin),
        opt("timezone", Ty::Raw),
        opt("mailformat", Ty::Int),
        opt("maildisplay", Ty::Int),
        opt("description", Ty::Text),
        opt("city", Ty::NoTags),
        opt("country", Ty::Alpha),
        opt("firstnamephonetic", Ty::NoTags),
        opt("lastnamephonetic", Ty::NoTags),
        opt("middlename", Ty::NoTags),
        opt("alternatename", Ty::NoTags),
        opt("interests", Ty::Text),
        opt("institution", Ty::Text),
        opt("department", Ty::Text),
        opt("phone1", Ty::NoTags),
        opt("phone2", Ty::NoTags),
        opt("address", Ty::Text),
    ];
    keys.push(("customfields", type_value_list(), Need::Optional));
    keys.push(("preferences", type_value_list(), Need::Optional));
    keys
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn id(v: &Value, key: &str) -> u64 {
    int(v, key).and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// `validate_email`, roughly: one `@`, a dotted domain, no spaces.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '>')
}

/// `check_password_policy` with the defaults (8 long, a digit, a lower- and an upper-case
/// letter, a non-alphanumeric): the failures as Moodle concatenates them, in `<div>`s.
fn password_policy(password: &str) -> Option<String> {
    let mut failures = String::new();
    let mut fail = |text: &str| failures.push_str(&format!("<div>{text}</div>"));
    if password.chars().count() < 8 {
        fail("Passwords must be at least 8 characters long.");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        fail("Passwords must have at least 1 digit(s).");
    }
    if !password.chars().any(char::is_lowercase) {
        fail("Passwords must have at least 1 lower case letter(s).");
    }
    if !password.chars().any(char::is_uppercase) {
        fail("Passwords must have at least 1 upper case letter(s).");
    }
    if password.chars().all(char::is_alphanumeric) {
        fail("Passwords must have at least 1 special character(s) such as as *, -, or #.");
    }
    (!failures.is_empty()).then_some(failures)
}

impl Moodle {
    /// Whether `function` is in the service: `Ok(false)` when the site has it elsewhere.
    fn in_service(&self, function: &str) -> Result<bool, MoodleError> {
        if SERVICE.contains(&function) {
            return Ok(!self.site.not_in_service.contains(function));
        }
        if ELSEWHERE.contains(&function) {
            return Ok(false);
        }
        Err(MoodleError::missing_record("external_functions"))
    }

    /// Runs a web-service function (after the token check). `hide_lookup`: a fault making
    /// this lookup find nobody.
    pub fn call(&mut self, function: &str, params: &Param, now: i64, hide_lookup: bool) -> Result<Value, MoodleError> {
        if !self.in_service(function)? {
            return Err(MoodleError::access());
        }
        match function {
            "core_webservice_get_site_info" => self.site_info(params),
            "core_user_get_users_by_field" => self.users_by_field(params, hide_lookup),
            "core_user_create_users" => self.create_users(params),
            "core_user_update_users" => self.update_users(params),
            "enrol_manual_enrol_users" => self.enrol_users(params),
            "enrol_manual_unenrol_users" => self.unenrol_users(params),
            "core_enrol_get_users_courses" => self.users_courses(params, now),
            _ => self.enrolled_users(params, now),
        }
    }

    fn site_info(&self, params: &Param) -> Result<Value, MoodleError> {
        args(
            Desc::Single(vec![("serviceshortnames", Desc::Multiple(Box::new(value(Ty::Alpha))), Need::Optional)]),
            params,
        )?;
        let functions: Vec<Value> = SERVICE
            .iter()
            .filter(|f| !self.site.not_in_service.contains(**f))
            .map(|f| json!({ "name": f, "version": VERSION }))
            .collect();
        Ok(json!({
            "sitename": "Moodle Test Site", "username": "admin", "firstname": "Admin", "lastname": "User",
            "fullname": "Admin User", "lang": "en", "userid": 2, "siteurl": self.wwwroot,
            "userpictureurl": format!("{}/theme/image.php/boost/core/1733400000/u/f1", self.wwwroot),
            "functions": functions, "downloadfiles": 0, "uploadfiles": 0,
            "release": "4.5+ (Build: 20241205)", "version": VERSION, "mobilecssurl": "",
            "advancedfeatures": [{ "name": "usecomments", "value": 1 }],
            "usercanmanageownfiles": true, "userquota": 0, "usermaxuploadfilesize": -1, "userhomepage": 1,
            "siteid": 1, "sitecalendartype": "gregorian", "usercalendartype": "gregorian",
            "userissiteadmin": true, "theme": "boost", "limitconcurrentlogins": 0, "policyagreed": 1,
        }))
    }

    /// A user as `user_get_user_details` shows them to the service user.
    fn user_json(&self, u: &User) -> Value {
        let picture = format!("{}/theme/image.php/boost/core/1733400000/u/", self.wwwroot);
        let mut v = json!({
            "id": u.id, "username": u.username, "firstname": u.firstname, "lastname": u.lastname,
            "fullname": format!("{} {}", u.firstname, u.lastname), "email": u.email, "department": "",
            "idnumber": u.idnumber, "firstaccess": 0, "lastaccess": 0, "auth": u.auth, "suspended": u.suspended,
            "confirmed": true, "lang": "en", "theme": "", "timezone": "99", "mailformat": 1, "trackforums": 0,
            "profileimageurlsmall": format!("{picture}f2"), "profileimageurl": format!("{picture}f1"),
        });
        if self.site.hide_emails {
            if let Some(map) = v.as_object_mut() {
                map.remove("email");
            }
        }
        v
    }

    fn users_by_field(&self, params: &Param, hide_lookup: bool) -> Result<Value, MoodleError> {
        let a = args(
            Desc::Single(vec![
                ("field", value(Ty::Alpha), Need::Required),
                ("values", Desc::Multiple(Box::new(value(Ty::Raw))), Need::Required),
            ]),
            params,
        )?;
        let field = text(&a, "field");
        let clean: fn(&str) -> String = match field.as_str() {
            "id" => |v| v.trim().parse::<i64>().map_or_else(|_| "0".to_owned(), |n| n.to_string()),
            "username" => username_clean,
            "idnumber" => str::to_owned,
            "email" => |v| v.trim().to_owned(),
            _ => {
                return Err(MoodleError::coding(
                    "invalid field parameter",
                    format!("The search field '{field}' is not supported, look at the web service documentation"),
                ))
            }
        };
        let mut values = Vec::new();
        for v in a["values"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let cleaned = clean(v);
            if cleaned != v {
                return Err(MoodleError::invalid_parameter(format!(
                    "The field '{field}' value is invalid: {v}(cleaned value: {cleaned})"
                )));
            }
            values.push(cleaned);
        }
        if hide_lookup || (field == "email" && self.site.hide_emails) {
            return Ok(json!([]));
        }
        // A plain equality, as PostgreSQL compares: case-sensitive.
        let found: Vec<Value> = self
            .users
            .values()
            .filter(|u| {
                let key = match field.as_str() {
                    "id" => u.id.to_string(),
                    "username" => u.username.clone(),
                    "idnumber" => u.idnumber.clone(),
                    _ => u.email.clone(),
                };
                values.contains(&key)
            })
            .map(|u| self.user_json(u))
            .collect();
        Ok(Value::Array(found))
    }

    fn create_users(&mut self, params: &Param) -> Result<Value, MoodleError> {
        let mut keys = vec![
            ("createpassword", value(Ty::Bool), Need::Optional),
            ("username", value(Ty::Username), Need::Required),
            ("auth", value(Ty::Plugin), Need::Default(json!("manual"))),
            ("password", value(Ty::Raw), Need::Optional),
            ("firstname", value(Ty::NoTags), Need::Required),
            ("lastname", value(Ty::NoTags), Need::Required),
            ("email", value(Ty::RawTrimmed), Need::Required),
        ];
        keys.extend(profile_keys().into_iter().map(|(k, d, need)| match k {
            "idnumber" => (k, d, Need::Default(json!(""))),
            "lang" => (k, d, Need::Default(json!("en"))),
            _ => (k, d, need),
        }));
        let a =
            args(Desc::Single(vec![("users", Desc::Multiple(Box::new(Desc::Single(keys))), Need::Required)]), params)?;
        // One transaction: on any error nothing stays, though ids drawn from the sequence
        // stay used (PostgreSQL does not give them back).
        let saved = self.users.clone();
        let result = self.create_each(a["users"].as_array().map(Vec::as_slice).unwrap_or_default());
        if result.is_err() {
            self.users = saved;
        }
        result
    }

    fn create_each(&mut self, users: &[Value]) -> Result<Value, MoodleError> {
        let mut created = Vec::new();
        for u in users {
            let username = text(u, "username");
            let auth = text(u, "auth");
            let email = text(u, "email");
            let invalid = MoodleError::invalid_parameter;
            if self.users.values().any(|x| x.username == username) {
                return Err(invalid(format!("Username already exists: {username}")));
            }
            if !AUTHS.contains(&auth.as_str()) {
                return Err(invalid(format!("Invalid authentication type: {auth}")));
            }
            if text(u, "lang") != "en" {
                return Err(invalid(format!("Invalid language code: {}", text(u, "lang"))));
            }
            let theme = text(u, "theme");
            if !theme.is_empty() && !THEMES.contains(&theme.as_str()) {
                return Err(invalid(format!("Invalid theme: {theme}")));
            }
            let createpassword = u.get("createpassword").and_then(Value::as_bool).unwrap_or(false);
            let password = text(u, "password");
            let internal = INTERNAL_AUTHS.contains(&auth.as_str());
            if internal && password.is_empty() && !createpassword {
                return Err(invalid(
                    "Invalid password: you must provide a password, or set createpassword.".to_owned(),
                ));
            }
            if !valid_email(&email) {
                return Err(invalid(format!("Email address is invalid: {email}")));
            }
            if self.users.values().any(|x| x.email.eq_ignore_ascii_case(&email)) {
                return Err(invalid(format!("Email address already exists: {email}")));
            }
            if username.is_empty() {
                return Err(MoodleError::moodle("invalidusernameblank", "The username cannot be blank"));
            }
            if internal && !createpassword {
                if let Some(failures) = password_policy(&password) {
                    // The policy text itself becomes the errorcode; its "string" is missing.
                    return Err(MoodleError::moodle(&failures, format!("error/{failures}")));
                }
            }
            self.next_user_id += 1;
            let user = User {
                id: self.next_user_id,
                username: username.clone(),
                email,
                firstname: text(u, "firstname"),
                lastname: text(u, "lastname"),
                idnumber: text(u, "idnumber"),
                auth,
                suspended: false,
                password_mailed: createpassword,
            };
            created.push(json!({ "id": user.id, "username": username }));
            self.users.insert(user.id, user);
        }
        Ok(Value::Array(created))
    }

    fn update_users(&mut self, params: &Param) -> Result<Value, MoodleError> {
        let mut keys = vec![
            ("id", value(Ty::Int), Need::Required),
            opt("username", Ty::Username),
            opt("auth", Ty::Plugin),
            opt("suspended", Ty::Bool),
            opt("password", Ty::Raw),
            opt("firstname", Ty::NoTags),
            opt("lastname", Ty::NoTags),
            opt("email", Ty::RawTrimmed),
            opt("userpicture", Ty::Int),
        ];
        keys.extend(profile_keys());
        let a =
            args(Desc::Single(vec![("users", Desc::Multiple(Box::new(Desc::Single(keys))), Need::Required)]), params)?;
        let mut warnings = Vec::new();
        // Each user in its own transaction: a per-user failure is a warning.
        for u in a["users"].as_array().into_iter().flatten() {
            let uid = id(u, "id");
            let warn = |code: &str, message: &str| json!({ "item": "user", "itemid": uid, "warningcode": code, "message": message });
            if !self.users.contains_key(&uid) {
                warnings.push(warn("invaliduserid", "Invalid user ID"));
                continue;
            }
            if let Some(email) = u.get("email").and_then(Value::as_str) {
                if !valid_email(email) {
                    warnings.push(warn("useremailinvalid", "Invalid email address"));
                    continue;
                }
                if self.users.values().any(|x| x.id != uid && x.email.eq_ignore_ascii_case(email)) {
                    warnings.push(warn("useremailduplicate", "Duplicate email address"));
                    continue;
                }
            }
            let Some(user) = self.users.get_mut(&uid) else { continue };
            if let Some(suspended) = u.get("suspended").and_then(Value::as_bool) {
                user.suspended = suspended;
            }
            for (key, field) in [
                ("username", &mut user.username),
                ("auth", &mut user.auth),
                ("firstname", &mut user.firstname),
                ("lastname", &mut user.lastname),
                ("email", &mut user.email),
                ("idnumber", &mut user.idnumber),
            ] {
                if let Some(v) = u.get(key).and_then(Value::as_str) {
                    *field = v.to_owned();
                }
            }
        }
        Ok(json!({ "warnings": warnings }))
    }

    fn enrol_users(&mut self, params: &Param) -> Result<Value, MoodleError> {
        let entry = Desc::Single(vec![
            ("roleid", value(Ty::Int), Need::Required),
            ("userid", value(Ty::Int), Need::Required),
            ("courseid", value(Ty::Int), Need::Required),
            opt("timestart", Ty::Int),
            opt("timeend", Ty::Int),
            opt("suspend", Ty::Int),
        ]);
        let a = args(Desc::Single(vec![("enrolments", Desc::Multiple(Box::new(entry)), Need::Required)]), params)?;
        // One transaction: the first error rolls back the entries before it.
        let mut enrolments = self.enrolments.clone();
        for e in a["enrolments"].as_array().into_iter().flatten() {
            let (roleid, userid, courseid) = (id(e, "roleid"), id(e, "userid"), id(e, "courseid"));
            let Some(course) = self.courses.get(&courseid) else {
                return Err(MoodleError::invalid_parameter("Context does not exist"));
            };
            if !self.site.assignable_roles.contains(&roleid) {
                return Err(MoodleError::moodle(
                    "wsusercannotassign",
                    format!(
                        "You don't have the permission to assign this role ({roleid}) to this user ({userid}) in this course ({courseid})."
                    ),
                ));
            }
            if course.manual != Manual::Enabled {
                return Err(no_instance(courseid));
            }
            if !self.users.contains_key(&userid) {
                return Err(MoodleError::php(
                    "TypeError",
                    "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, \
                     called in /var/www/html/lib/enrollib.php on line 3677"
                        .to_owned(),
                ));
            }
            // The web-service layer's defaults: 0 for an omitted start or end, active for an
            // omitted suspend; an existing enrolment takes all three (an upsert).
            let timestart = int(e, "timestart").unwrap_or(0);
            let timeend = int(e, "timeend").unwrap_or(0);
            let suspended = int(e, "suspend").unwrap_or(0) != 0;
            let entry = enrolments.entry((userid, courseid)).or_insert_with(|| Enrolment {
                roles: BTreeSet::new(),
                timestart,
                timeend,
                suspended,
            });
            entry.timestart = timestart;
            entry.timeend = timeend;
            entry.suspended = suspended;
            entry.roles.insert(roleid);
        }
        self.enrolments = enrolments;
        Ok(Value::Null)
    }

    fn unenrol_users(&mut self, params: &Param) -> Result<Value, MoodleError> {
        let entry = Desc::Single(vec![
            ("userid", value(Ty::Int), Need::Required),
            ("courseid", value(Ty::Int), Need::Required),
            opt("roleid", Ty::Int),
        ]);
        let a = args(Desc::Single(vec![("enrolments", Desc::Multiple(Box::new(entry)), Need::Required)]), params)?;
        let mut enrolments = self.enrolments.clone();
        for e in a["enrolments"].as_array().into_iter().flatten() {
            let (userid, courseid) = (id(e, "userid"), id(e, "courseid"));
            let Some(course) = self.courses.get(&courseid) else {
                return Err(MoodleError::missing_record("course"));
            };
            // Any manual instance will do here, even a disabled one.
            if course.manual == Manual::Missing {
                return Err(no_instance(courseid));
            }
            if !self.users.contains_key(&userid) {
                return Err(MoodleError::invalid_parameter(format!("User id not exist: {userid}")));
            }
            // Not enrolled: nothing to do, no error.
            enrolments.remove(&(userid, courseid));
        }
        self.enrolments = enrolments;
        Ok(Value::Null)
    }

    fn course_json(&self, c: &Course, now: i64, with_count: bool) -> Value {
        let mut v = json!({
            "id": c.id, "shortname": c.shortname, "fullname": c.fullname, "displayname": c.fullname,
            "idnumber": c.shortname, "visible": 1, "summary": "", "summaryformat": 1, "format": "topics",
            "showgrades": true, "lang": "", "enablecompletion": true, "completionhasinfo": false,
            "completionusertracked": true, "category": 1, "progress": null, "completed": false,
            "startdate": 0, "enddate": 0, "marker": 0, "lastaccess": null, "isfavourite": false,
            "hidden": false, "overviewfiles": [], "showactivitydates": true, "showcompletionconditions": true,
            "timemodified": 1733400000,
        });
        if with_count {
            let count = self.enrolments.iter().filter(|((_, cid), e)| *cid == c.id && e.listed(now)).count();
            v["enrolledusercount"] = json!(count);
        }
        v
    }

    fn users_courses(&self, params: &Param, now: i64) -> Result<Value, MoodleError> {
        let a = args(
            Desc::Single(vec![
                ("userid", value(Ty::Int), Need::Required),
                ("returnusercount", value(Ty::Bool), Need::Default(json!(true))),
            ]),
            params,
        )?;
        let userid = id(&a, "userid");
        let with_count = a["returnusercount"].as_bool().unwrap_or(true);
        let courses = self
            .enrolments
            .iter()
            .filter(|((uid, _), e)| *uid == userid && e.listed(now))
            .filter_map(|((_, cid), _)| self.courses.get(cid))
            .map(|c| self.course_json(c, now, with_count))
            .collect();
        Ok(Value::Array(courses))
    }

    fn enrolled_users(&self, params: &Param, now: i64) -> Result<Value, MoodleError> {
        let option = Desc::Single(vec![
            ("name", value(Ty::AlphaNumExt), Need::Required),
            ("value", value(Ty::Raw), Need::Required),
        ]);
        let a = args(
            Desc::Single(vec![
                ("courseid", value(Ty::Int), Need::Required),
                ("options", Desc::Multiple(Box::new(option)), Need::Default(json!([]))),
            ]),
            params,
        )?;
        let courseid = id(&a, "courseid");
        if !self.courses.contains_key(&courseid) {
            return Err(MoodleError::missing_record("course"));
        }
        let onlyactive = a["options"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["name"] == "onlyactive" && (o["value"] == "1" || o["value"] == "true"));
        let users = self
            .enrolments
            .iter()
            .filter(|((_, cid), e)| *cid == courseid && (!onlyactive || e.listed(now)))
            .filter_map(|((uid, _), e)| Some((self.users.get(uid)?, e)))
            .map(|(u, e)| {
                let mut v = self.user_json(u);
                v["roles"] = e
                    .roles
                    .iter()
                    .map(|r| {
                        let shortname = ROLES.iter().find(|(id, _)| id == r).map_or("", |(_, name)| *name);
                        json!({ "roleid": r, "name": "", "shortname": shortname, "sortorder": 0 })
                    })
                    .collect();
                v["enrolledcourses"] = self
                    .enrolments
                    .iter()
                    .filter(|((uid, _), e)| *uid == u.id && e.listed(now))
                    .filter_map(|((_, cid), _)| self.courses.get(cid))
                    .map(|c| json!({ "id": c.id, "fullname": c.fullname, "shortname": c.shortname }))
                    .collect();
                v
            })
            .collect();
        Ok(Value::Array(users))
    }
}

fn no_instance(courseid: u64) -> MoodleError {
    MoodleError::moodle(
        "wsnoinstance",
        format!("Manual enrolment plugin instance doesn't exist or is disabled for the course (id = {courseid})"),
    )
}
