//! The admin console in a real browser (headless Chromium through ChromeDriver), behind the IAP
//! stand-in, over the real chain: console → Pub/Sub emulator → push → backend → Firestore
//! emulator → LMS sandbox. What an operator does in the page must reach the LMS; what a viewer
//! or a stranger tries must not. Screenshots of each page land in `target/screenshots/`.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::admin_console::AdminConsole;
use lms_bridge_tests::backend::{Backend, Firestore, Issuer, Sandbox};
use lms_bridge_tests::browser::Browser;
use lms_bridge_tests::iap::TestIap;
use lms_bridge_tests::iap_proxy::IapProxy;
use lms_bridge_tests::mappings::Mappings;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::{now_ms, Webhook};
use serde_json::Value;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const TOPIC: &str = "lms-bridge-events";
const AUDIENCE: &str = "/projects/123456/locations/local/services/lms-bridge-admin";
const OPERATOR: &str = "ops@example.com";
const VIEWER: &str = "viewer@example.com";
/// Lifetime: course 201.
const LIFETIME: u64 = 9101;
/// Subscription with 3 days of grace: course 203.
const MONTHLY: u64 = 9103;
/// Lifetime, on course 299, which the LMS does not have until a test creates it.
const MISSING_COURSE: u64 = 9105;
/// 2030-01-30T12:00:00Z: a subscription paid through then ends 3 days later, on 2 Feb 2030.
const PAID_THROUGH_MS: i64 = 1_896_004_800_000;
const WAIT: Duration = Duration::from_secs(60);

struct Chain {
    sandbox: Sandbox,
    pubsub: Emulator,
    iap: TestIap,
    proxy: IapProxy,
    console: AdminConsole,
    backend: Backend,
    _firestore: Firestore,
    _issuer: Issuer,
}

/// One chain for the binary; the tests take turns (one browser at a time on 2 cores) and use
/// their own students.
fn chain() -> (MutexGuard<'static, ()>, &'static Chain) {
    static TURN: Mutex<()> = Mutex::new(());
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let chain = CHAIN.get_or_init(|| {
        let pubsub = Emulator::start();
        let firestore = Firestore::start();
        let issuer = Issuer::start();
        let sandbox = Sandbox::start(&["--courses", "201,202,203"]);
        let env = [("PUSH_AUTH", "none"), ("PUBSUB_EMULATOR_HOST", pubsub.host.as_str())];
        let backend = Backend::start(PROJECT, &firestore, &sandbox, &issuer, &env);
        backend.pubsub_setup(&pubsub.host, &[]);
        backend.import_mappings(
            &Mappings::new()
                .lifetime(LIFETIME, &["201"])
                .subscription(MONTHLY, &["203"], 3)
                .lifetime(MISSING_COURSE, &["299"])
                .toml(),
        );
        let iap = TestIap::start(AUDIENCE);
        let console = AdminConsole::start(
            PROJECT,
            &firestore,
            &pubsub.host,
            &[
                ("ADMIN_AUTH", "iap"),
                ("ADMIN_IAP_AUDIENCE", AUDIENCE),
                ("ADMIN_IAP_JWKS_URL", iap.jwks_url()),
                ("ADMIN_OPERATORS", OPERATOR),
                ("ADMIN_VIEWERS", VIEWER),
                ("ADMIN_CSRF_KEY", "test-csrf-key"),
            ],
        );
        let proxy = IapProxy::start(&console.url, || None);
        Chain { sandbox, pubsub, iap, proxy, console, backend, _firestore: firestore, _issuer: issuer }
    });
    // Every test starts as the operator.
    chain.proxy.set_assertion(Some(chain.iap.token(OPERATOR)));
    (turn, chain)
}

fn unique(name: &str) -> String {
    format!("{name}-{}@example.com", now_ms())
}

/// Publishes the webhook's event under a delivery id of its own (the samples share theirs).
fn publish(chain: &Chain, webhook: &Webhook) -> Value {
    let event = webhook.clone().id(&format!("console-{}", now_ms())).event();
    chain.pubsub.client().publish_events(TOPIC, std::slice::from_ref(&event));
    event
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {WAIT:?}");
}

fn find_student(browser: &Browser, chain: &Chain, email: &str) {
    browser.goto(chain.proxy.url());
    browser.fill("#search-email", email);
    browser.submit("form[role=search]");
}

/// A GET through the IAP stand-in as whoever it now signs for: (status, body).
fn get(chain: &Chain, path: &str) -> (u16, String) {
    let response = reqwest::blocking::get(format!("{}{path}", chain.proxy.url())).unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// A form POST through the IAP stand-in: (status, body).
fn post(chain: &Chain, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.post(format!("{}{path}", chain.proxy.url())).form(form).send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// The CSRF token of the page's forms, for whoever it now signs for.
fn csrf(chain: &Chain) -> String {
    let (_, page) = get(chain, "/");
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_owned()
}

#[test]
fn an_operator_finds_a_student_reads_why_grants_a_course_by_hand_and_revokes_it() {
    let (_turn, chain) = chain();
    let email = unique("ana");
    let code = format!("SUB{}", now_ms());
    let purchase = Webhook::subscription_charge()
        .buyer(&email)
        .product(MONTHLY)
        .subscriber_code(&code)
        .now()
        .next_charge(PAID_THROUGH_MS);
    publish(chain, &purchase);
    wait_for("the purchase enrolls the student in 203", || chain.sandbox.courses_of(&email) == ["203"]);

    let browser = Browser::start();
    browser.goto(chain.proxy.url());
    browser.wait_for_text("h1", "Overview", WAIT);
    find_student(&browser, chain, &email);
    let why = browser.wait_for_text(
        "#course-203 + p.why",
        &format!("active until 2 Feb 2030 by subscription {code}: paid through 30 Jan 2030 + 3 days grace"),
        WAIT,
    );
    assert!(!why.is_empty());
    let student_url = browser.current_url();
    assert!(!student_url.contains(&email), "the email must never be in a URL (request logs): {student_url}");

    // Bad input: each field says what is wrong, and nothing is sent.
    browser.fill("form[action='/students/grant'] input[name=course]", "two hundred");
    browser.fill("form[action='/students/grant'] input[name=until]", "01/01/2020");
    browser.submit("form[action='/students/grant']");
    browser.wait_for_text("#course-error", "course id", WAIT);
    assert!(browser.text("#reason-error").contains("Say why"), "{}", browser.source());
    browser.screenshot("admin-grant-refused");

    // A grant by hand: published as an admin event, applied by the backend, in the LMS.
    browser.fill("form[action='/students/grant'] input[name=course]", "201");
    browser.fill("form[action='/students/grant'] input[name=until]", "");
    browser.fill("form[action='/students/grant'] input[name=reason]", "support ticket 12");
    browser.submit("form[action='/students/grant']");
    browser.wait_for_text("p.flash", "Grant sent", WAIT);
    wait_for("the grant by hand enrolls the student in 201", || chain.sandbox.courses_of(&email) == ["201", "203"]);
    browser.goto(&student_url);
    browser.wait_for_text("#course-201 + p.why", "active with no end by hand", WAIT);
    let timeline = browser.text("#timeline");
    assert!(timeline.contains(&format!("by {OPERATOR}: support ticket 12")), "{timeline}");
    assert!(timeline.contains("course 201: inactive → active with no end (ensure user, enroll)"), "{timeline}");
    browser.screenshot("admin-student");

    // Revoked by hand: the LMS unenrolls, the page says why, the subscription is untouched.
    browser.fill("form[action$='/block'] input[name=reason]", "granted to the wrong person");
    // The first block form on the page is course 201's (courses are listed in id order).
    browser.submit("form[action$='/block']");
    browser.wait_for_text("p.flash", "Revocation sent", WAIT);
    wait_for("the revocation unenrolls the student from 201", || chain.sandbox.courses_of(&email) == ["203"]);
    browser.goto(&student_url);
    browser.wait_for_text("#course-201 + p.why", "no access: ended by hand on", WAIT);

    // On a phone: the page fits the screen's width.
    browser.mobile();
    browser.goto(&student_url);
    browser.wait_for_text("h1", &email, WAIT);
    let fits = browser.execute("return document.documentElement.scrollWidth <= window.innerWidth;");
    assert_eq!(fits, Value::Bool(true), "the student page scrolls sideways on a phone");
    browser.screenshot("admin-student-phone");

    let (_, audit) = get(chain, "/audit");
    assert!(audit.contains("support ticket 12") && audit.contains("granted to the wrong person"), "{audit}");
    browser.desktop();
    for page in ["audit", "jobs"] {
        browser.goto(&format!("{}/{page}", chain.proxy.url()));
        browser.wait_for_text("h1", &page[..1].to_uppercase(), WAIT);
        browser.screenshot(&format!("admin-{page}"));
    }
    // The overview: the latest actions, and what the last sweep did.
    chain.backend.sweep_at(now_ms());
    browser.goto(chain.proxy.url());
    browser.wait_for_text("h1", "Overview", WAIT);
    let overview = browser.text("main");
    assert!(overview.contains("granted to the wrong person"), "the overview lists the latest actions: {overview}");
    assert!(overview.contains("access(es), retried"), "the overview shows the last sweep: {overview}");
    browser.screenshot("admin-overview");
}

#[test]
fn a_purchase_for_an_unmapped_product_is_mapped_in_the_console_and_the_student_enrolled() {
    let (_turn, chain) = chain();
    let email = unique("bob");
    let product = 9_000_000 + (now_ms() % 1_000_000) as u64;
    let event = publish(chain, &Webhook::purchase_approved().buyer(&email).product(product).now());
    let id = event["id"].as_str().unwrap().to_owned();
    wait_for("the purchase waits as unmapped", || get(chain, "/attention").1.contains(&id));
    assert!(chain.sandbox.courses_of(&email).is_empty());

    let browser = Browser::start();
    browser.goto(chain.proxy.url());
    browser.click(&format!("a[href='/mappings/edit?source=hotmart&product={product}']"));
    browser.wait_for_text("p.flash", "1 event(s) wait for this product's mapping", WAIT);

    // Bad input first: the messages sit next to their fields.
    browser.fill("input[name=courses]", "202, two hundred");
    browser.select("select[name=policy]", "fixed_days");
    browser.fill("input[name=days]", "0");
    browser.submit("form[action='/mappings']");
    browser.wait_for_text("#courses-error", "'two hundred' is not a course id", WAIT);
    assert!(browser.text("#days-error").contains("whole number"), "{}", browser.source());
    browser.screenshot("admin-mapping-refused");

    browser.fill("input[name=courses]", "202");
    browser.fill("input[name=days]", "365");
    browser.submit("form[action='/mappings']");
    browser.wait_for_text("p.flash", "Mapping saved", WAIT);
    wait_for("the waiting purchase enrolls the student in 202", || chain.sandbox.courses_of(&email) == ["202"]);
    let (_, mappings) = get(chain, "/mappings");
    assert!(mappings.contains(&product.to_string()) && mappings.contains("365 days"), "{mappings}");
    browser.screenshot("admin-mappings");
}

#[test]
fn a_failed_lms_action_is_retried_from_the_console_and_done() {
    let (_turn, chain) = chain();
    let email = unique("carol");
    publish(
        chain,
        &Webhook::purchase_approved()
            .buyer(&email)
            .product(MISSING_COURSE)
            .transaction(&format!("HP{}", now_ms()))
            .now(),
    );
    // The LMS has no course 299: the enrollment fails for good and waits for an operator.
    wait_for("the enrollment fails for good", || get(chain, "/attention").1.contains("enroll in 299"));
    chain.sandbox.add_course("299");

    let browser = Browser::start();
    browser.goto(&format!("{}/attention", chain.proxy.url()));
    browser.wait_for_text("#failed-actions", "Failed LMS actions", WAIT);
    browser.screenshot("admin-attention");
    browser.submit("form[action$='/retry']");
    browser.wait_for_text("p.flash", "Retry sent", WAIT);
    wait_for("the retried enrollment reaches the LMS", || chain.sandbox.courses_of(&email) == ["299"]);
    wait_for("nothing is left failed", || !get(chain, "/attention").1.contains("enroll in 299"));
}

#[test]
fn a_viewer_sees_but_cannot_act_and_strangers_and_forgeries_are_refused() {
    let (_turn, chain) = chain();
    let email = unique("dan");
    publish(
        chain,
        &Webhook::purchase_approved().buyer(&email).product(LIFETIME).transaction(&format!("HP{}", now_ms())).now(),
    );
    wait_for("the purchase enrolls the student", || chain.sandbox.courses_of(&email) == ["201"]);

    chain.proxy.set_assertion(Some(chain.iap.token(VIEWER)));
    let browser = Browser::start();
    find_student(&browser, chain, &email);
    browser.wait_for_text("#course-201 + p.why", "active with no end by purchase", WAIT);
    assert!(!browser.exists("form[action='/students/grant']"), "a viewer is offered the grant form");
    assert!(!browser.exists("form[action$='/block']"), "a viewer is offered the revoke form");
    let key = browser.current_url().rsplit('/').next().unwrap().to_owned();

    // Even with a valid token of their own, a viewer's form is refused and nothing changes.
    let token = csrf(chain);
    let (status, page) =
        post(chain, &format!("/students/{key}/block"), &[("course", "201"), ("reason", "x"), ("csrf", &token)]);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("viewers can look but not act"), "{page}");

    // An operator without the form's token (another site's form) is refused too.
    chain.proxy.set_assertion(Some(chain.iap.token(OPERATOR)));
    let (status, _) = post(chain, &format!("/students/{key}/block"), &[("course", "201"), ("reason", "x")]);
    assert_eq!(status, 403);
    let (status, _) =
        post(chain, &format!("/students/{key}/block"), &[("course", "201"), ("reason", "x"), ("csrf", &token)]);
    assert_eq!(status, 403, "a viewer's token must not work for an operator");

    // Signed in but on no list; no assertion; a forged one; one for another audience.
    chain.proxy.set_assertion(Some(chain.iap.token("stranger@example.com")));
    let (status, page) = get(chain, "/");
    assert_eq!(status, 403);
    assert!(page.contains("not allowed to use this console"), "{page}");
    chain.proxy.set_assertion(None);
    assert_eq!(get(chain, "/").0, 401);
    let other = TestIap::start(AUDIENCE);
    chain.proxy.set_assertion(Some(other.token(OPERATOR)));
    assert_eq!(get(chain, "/").0, 401, "a token signed by another key");
    let mut claims = chain.iap.claims(OPERATOR);
    claims["aud"] = "/projects/1/global/backendServices/2".into();
    let header = serde_json::json!({ "alg": "ES256", "kid": lms_bridge_tests::iap::KID, "typ": "JWT" });
    chain.proxy.set_assertion(Some(chain.iap.sign(&header, &claims)));
    assert_eq!(get(chain, "/").0, 401, "a token for another audience");
    // Straight to the service, around IAP: no assertion, refused.
    assert_eq!(reqwest::blocking::get(&chain.console.url).unwrap().status().as_u16(), 401);

    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(chain.sandbox.courses_of(&email), ["201"], "a refused request changed the LMS");
    chain.proxy.set_assertion(Some(chain.iap.token(OPERATOR)));
    let (_, audit) = get(chain, "/audit");
    assert!(!audit.contains(&key[..12]), "a refused request was recorded as done: {audit}");
}
