//! The access rules every LMS adapter must honour, as one suite run against each: the backend
//! as a process (`lms-bridge serve`, OIDC pushes, the Firestore emulator) in front of an LMS
//! sandbox, seen only through [`LmsUnderTest`]. A test binary calls [`run_all`] once per
//! adapter (`tests/tests/access_rules.rs`).
//!
//! The catalogue is [`mappings::backend`] (courses 101, 102, 103): the Moodle sandbox must be
//! started with those course ids.

use crate::backend::{Backend, Sandbox};
use crate::mappings;
use crate::moodle_sandbox::MoodleSandbox;
use crate::stack;
use crate::webhooks::{now_ms, Webhook};
use serde_json::Value;

/// What the suite needs to know of an LMS: how a backend reaches it, and what it did.
pub trait LmsUnderTest {
    /// The adapter's name (`LMS`), for failure messages and the project's name.
    fn name(&self) -> &'static str;
    /// The backend's environment for it.
    fn backend_env(&self) -> Vec<(String, String)>;
    /// The courses the user with this e-mail can use now, as the mappings name them, sorted.
    fn courses_of(&self, email: &str) -> Vec<String>;
    /// How many LMS users have this e-mail.
    fn users_with_email(&self, email: &str) -> usize;
    /// How many enrol calls for this e-mail succeeded.
    fn enrol_calls(&self, email: &str) -> usize;
    /// How many unenrol calls for this e-mail succeeded.
    fn unenrol_calls(&self, email: &str) -> usize;
}

/// The TalentLMS sandbox's calls of `action` that succeeded for `email`.
fn talentlms_ok_calls(sandbox: &Sandbox, action: &str, email: &str) -> usize {
    let state = sandbox.state();
    let calls = state["calls"].as_array().cloned().unwrap_or_default();
    calls
        .iter()
        .filter(|c| c["action"] == action && c["status"] == 200)
        .filter(|c| c["user"].as_str().is_some_and(|u| u.eq_ignore_ascii_case(email)))
        .count()
}

impl LmsUnderTest for Sandbox {
    fn name(&self) -> &'static str {
        "talentlms"
    }

    fn backend_env(&self) -> Vec<(String, String)> {
        Sandbox::backend_env(self)
    }

    fn courses_of(&self, email: &str) -> Vec<String> {
        Sandbox::courses_of(self, email)
    }

    fn users_with_email(&self, email: &str) -> usize {
        let state = self.state();
        state["users"].as_array().map_or(0, |users| users.iter().filter(|u| u["email"] == email).count())
    }

    fn enrol_calls(&self, email: &str) -> usize {
        talentlms_ok_calls(self, "addusertocourse", email)
    }

    fn unenrol_calls(&self, email: &str) -> usize {
        talentlms_ok_calls(self, "removeuserfromcourse", email)
    }
}

impl LmsUnderTest for MoodleSandbox {
    fn name(&self) -> &'static str {
        "moodle"
    }

    fn backend_env(&self) -> Vec<(String, String)> {
        MoodleSandbox::backend_env(self)
    }

    fn courses_of(&self, email: &str) -> Vec<String> {
        MoodleSandbox::courses_of(self, email).iter().map(u64::to_string).collect()
    }

    fn users_with_email(&self, email: &str) -> usize {
        let state = self.state();
        state["users"].as_array().map_or(0, |users| users.iter().filter(|u| u["email"] == email).count())
    }

    fn enrol_calls(&self, email: &str) -> usize {
        self.ok_calls_of("enrol_manual_enrol_users", email).len()
    }

    fn unenrol_calls(&self, email: &str) -> usize {
        self.ok_calls_of("enrol_manual_unenrol_users", email).len()
    }
}

/// A backend in front of one LMS, with the backend tests' catalogue.
pub struct World<'a> {
    /// The LMS.
    pub lms: &'a dyn LmsUnderTest,
    /// The backend.
    pub backend: Backend,
    token: String,
}

impl<'a> World<'a> {
    /// Starts a backend (project `rules-{adapter}`) in front of `lms` and imports the catalogue.
    pub fn start(lms: &'a dyn LmsUnderTest) -> Self {
        let (firestore, issuer) = (stack::firestore(), stack::issuer());
        let project = format!("rules-{}", lms.name());
        let backend = Backend::start_with_lms(&project, firestore, &lms.backend_env(), issuer, &[]);
        backend.import_mappings(&mappings::backend().toml());
        let token = issuer.token(&backend.url);
        Self { lms, backend, token }
    }

    /// Pushes `event` (message id `m-{its id}`): status and answer.
    pub fn push(&self, event: &Value) -> (u16, Value) {
        self.backend.push_with(event, &format!("m-{}", event["id"]), Some(&self.token))
    }

    /// The same, which must answer 200: its `status`.
    pub fn push_ok(&self, event: &Value) -> String {
        let (status, body) = self.push(event);
        assert_eq!(status, 200, "{}: {body}", self.lms.name());
        body["status"].as_str().unwrap_or_default().to_owned()
    }

    fn courses(&self, email: &str) -> Vec<String> {
        self.lms.courses_of(email)
    }
}

/// `email`'s purchase of `product` under `transaction`, approved now (webhook `id`).
fn approved(id: &str, email: &str, product: u64, transaction: &str) -> Value {
    Webhook::purchase_approved().now().id(id).buyer(email).product(product).transaction(transaction).event()
}

/// The refund of that purchase (webhook `id`).
fn refunded(id: &str, email: &str, product: u64, transaction: &str) -> Value {
    Webhook::purchase_refunded().now().id(id).buyer(email).product(product).transaction(transaction).event()
}

/// A purchase creates one user and enrolls each course once; the same course bought again
/// under another transaction calls nothing more.
pub fn purchase_enrolls_once(w: &World) {
    let email = "rules-purchase@example.com";
    assert_eq!(w.push_ok(&approved("p1", email, 5000, "HPR1")), "applied");
    assert_eq!(w.courses(email), ["101", "102"]);
    assert_eq!(w.lms.users_with_email(email), 1, "one LMS user");
    assert_eq!(w.lms.enrol_calls(email), 2, "one enrol per course");
    assert_eq!(w.push_ok(&approved("p2", email, 6000, "HPR2")), "applied");
    assert_eq!(w.courses(email), ["101", "102"]);
    assert_eq!(w.lms.enrol_calls(email), 2, "course 102 held already: no second enrol");
    assert_eq!(w.lms.users_with_email(email), 1);
}

/// The same delivery three times is one effect.
pub fn a_duplicate_webhook_has_one_effect(w: &World) {
    let email = "rules-duplicate@example.com";
    let event = approved("d1", email, 6000, "HPR10");
    assert_eq!(w.push_ok(&event), "applied");
    for _ in 0..2 {
        assert_eq!(w.push_ok(&event), "duplicate");
    }
    assert_eq!(w.courses(email), ["102"]);
    assert_eq!(w.lms.enrol_calls(email), 1);
    assert_eq!(w.lms.users_with_email(email), 1);
}

/// A refund unenrolls.
pub fn a_refund_unenrolls(w: &World) {
    let email = "rules-refund@example.com";
    w.push_ok(&approved("r-a", email, 6000, "HPR20"));
    assert_eq!(w.courses(email), ["102"]);
    w.push_ok(&refunded("r-r", email, 6000, "HPR20"));
    assert!(w.courses(email).is_empty(), "{}: refunded, still in {:?}", w.lms.name(), w.courses(email));
    assert_eq!(w.lms.unenrol_calls(email), 1);
}

/// A refund that arrives before its approval: the approval gives nothing, and the LMS is
/// never asked to enroll.
pub fn a_refund_before_its_approval_never_enrolls(w: &World) {
    let email = "rules-early-refund@example.com";
    w.push_ok(&refunded("e-r", email, 7000, "HPR30"));
    let late = Webhook::purchase_approved()
        .now()
        .id("e-a")
        .at(now_ms() - 60_000)
        .buyer(email)
        .product(7000)
        .transaction("HPR30")
        .event();
    w.push_ok(&late);
    assert!(w.courses(email).is_empty());
    assert_eq!(w.lms.enrol_calls(email), 0, "never enrolled");
    assert_eq!(w.lms.unenrol_calls(email), 0, "nothing to take away");
}

/// Two products grant one course: refunding one keeps it, refunding both ends it.
pub fn a_course_granted_twice_stays_until_both_are_refunded(w: &World) {
    let email = "rules-two-products@example.com";
    w.push_ok(&approved("t-a1", email, 5000, "HPR40"));
    w.push_ok(&approved("t-a2", email, 6000, "HPR41"));
    w.push_ok(&refunded("t-r1", email, 6000, "HPR41"));
    assert_eq!(w.courses(email), ["101", "102"], "102 still granted by product 5000");
    assert_eq!(w.lms.unenrol_calls(email), 0);
    w.push_ok(&refunded("t-r2", email, 5000, "HPR40"));
    assert!(w.courses(email).is_empty());
    assert_eq!(w.lms.unenrol_calls(email), 2);
}

/// A scenario of the suite.
pub type Scenario = fn(&World);

/// Every scenario, in turn, against one LMS (each with its own student).
pub fn run_all(lms: &dyn LmsUnderTest) {
    let world = World::start(lms);
    let scenarios: [(&str, Scenario); 5] = [
        ("purchase_enrolls_once", purchase_enrolls_once),
        ("a_duplicate_webhook_has_one_effect", a_duplicate_webhook_has_one_effect),
        ("a_refund_unenrolls", a_refund_unenrolls),
        ("a_refund_before_its_approval_never_enrolls", a_refund_before_its_approval_never_enrolls),
        ("a_course_granted_twice_stays_until_both_are_refunded", a_course_granted_twice_stays_until_both_are_refunded),
    ];
    for (name, scenario) in scenarios {
        eprintln!("{}: {name}", lms.name());
        scenario(&world);
    }
}
