//! Day one and every day after, every part real: the Hotmart API fake (a real HTTP server) →
//! `lms-bridge backfill`/`reconcile` → Pub/Sub emulator → push → backend → Firestore emulator
//! → LMS sandbox; and `lms-bridge drift` against the sandbox. Expectations come from the
//! scenario's own story of each buyer (what the access rules page says that story gives), not
//! from the code under test.

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use lms_bridge_tests::backend::{Backend, Firestore, Issuer, Sandbox, LMS_KEY};
use lms_bridge_tests::hotmart_fake::{Charge, HotmartData, HotmartFake, CLIENT_SECRET};
use lms_bridge_tests::mappings::Mappings;
use lms_bridge_tests::process::Service;
use lms_bridge_tests::pubsub_emulator::{Emulator, PROJECT};
use lms_bridge_tests::webhooks::{now_ms, DAY_MS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// One-off product, for life: course 501.
const LIFETIME: u64 = 9101;
/// Subscription product, 3 days of grace: course 502.
const MONTHLY: u64 = 9102;
const HOUR_MS: i64 = 3_600_000;

struct Chain {
    sandbox: Sandbox,
    backend: Backend,
    pubsub: Emulator,
    fake: HotmartFake,
    _firestore: Firestore,
    _issuer: Issuer,
}

/// One chain for the binary; tests take turns (the fake serves one data set at a time) and
/// use their own students.
fn chain() -> (MutexGuard<'static, ()>, &'static Chain) {
    static TURN: Mutex<()> = Mutex::new(());
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let chain = CHAIN.get_or_init(|| {
        let pubsub = Emulator::start();
        let firestore = Firestore::start();
        let issuer = Issuer::start();
        let sandbox = Sandbox::start(&["--courses", "501,502,777"]);
        let fake = HotmartFake::start(&[]);
        let mut env: Vec<(&str, String)> = fake.env();
        env.extend([
            ("PUSH_AUTH", "none".to_owned()),
            ("PUBSUB_EMULATOR_HOST", pubsub.host.clone()),
            ("TALENTLMS_MAX_CALLS_PER_SECOND", "500".to_owned()),
        ]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let backend = Backend::start(PROJECT, &firestore, &sandbox, &issuer, &env);
        backend.pubsub_setup(&pubsub.host, &[]);
        backend
            .import_mappings(&Mappings::new().lifetime(LIFETIME, &["501"]).subscription(MONTHLY, &["502"], 3).toml());
        Chain { sandbox, backend, pubsub, fake, _firestore: firestore, _issuer: issuer }
    });
    (turn, chain)
}

impl Chain {
    /// The environment of a job run against this chain.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.fake.env();
        env.extend([("PUBSUB_EMULATOR_HOST", self.pubsub.host.clone()), ("PUBLISH_PER_SECOND", "2000".to_owned())]);
        env
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.backend.cli_with(args, &env)
    }

    /// Runs a job that must succeed: its summary line.
    fn job(&self, args: &[&str]) -> Value {
        let output = self.run(args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}\n{}", self.pubsub.diagnose());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET), "the secret leaked");
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
    }

    /// Waits until every student of `expected` holds exactly its courses in the sandbox.
    fn settle(&self, expected: &BTreeMap<String, Vec<String>>, timeout: Duration) {
        let started = Instant::now();
        loop {
            // A few students are looked up one by one, as the adapter does; many at once
            // through the sandbox's whole state (heavy: it carries the call log).
            let actual = if expected.len() <= 20 {
                expected.keys().filter_map(|email| self.lookup(email).map(|c| (email.clone(), c))).collect()
            } else {
                courses_by_email(&self.sandbox.state())
            };
            let wrong: Vec<String> = expected
                .iter()
                .filter(|(email, courses)| actual.get(*email).cloned().unwrap_or_default() != **courses)
                .map(|(email, courses)| format!("{email}: {:?}, expected {courses:?}", actual.get(email)))
                .take(5)
                .collect();
            if wrong.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "after {timeout:?}, {} students differ, e.g. {wrong:?}\n{}\nthe backend's log ends:\n{}",
                expected.iter().filter(|(e, c)| actual.get(*e).cloned().unwrap_or_default() != **c).count(),
                self.pubsub.diagnose(),
                self.backend.log_tail()
            );
            std::thread::sleep(Duration::from_millis(if expected.len() <= 20 { 200 } else { 1_000 }));
        }
    }

    /// The courses of the LMS user with this email, through the TalentLMS API (None: no user).
    fn lookup(&self, email: &str) -> Option<Vec<String>> {
        let response = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/users/email:{email}", self.sandbox.url))
            .basic_auth(LMS_KEY, Some(""))
            .send()
            .unwrap();
        if !response.status().is_success() {
            return None;
        }
        let user: Value = response.json().unwrap();
        let mut courses: Vec<String> = user["courses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| c["id"].as_str().map_or_else(|| c["id"].to_string(), str::to_owned))
            .collect();
        courses.sort();
        Some(courses)
    }
}

fn courses_by_email(state: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for user in state["users"].as_array().cloned().unwrap_or_default() {
        let mut courses: Vec<String> = user["courses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        courses.sort();
        out.insert(user["email"].as_str().unwrap().to_owned(), courses);
    }
    out
}

/// Calls of `action` per email, from the sandbox's call log.
fn calls_by_email(state: &Value, action: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for call in state["calls"].as_array().cloned().unwrap_or_default() {
        if call["action"] == action && call["status"] == 200 {
            *out.entry(call["email"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// A shop's history: `sales` one-off buyers and `subscribers` subscribers, with `prefix` in
/// their emails, and what each ends with, per the access rules page.
fn shop(prefix: &str, sales: usize, subscribers: usize, now: i64) -> (HotmartData, BTreeMap<String, Vec<String>>) {
    let mut data = HotmartData::new();
    let mut expected = BTreeMap::new();
    for i in 0..sales {
        let email = format!("{prefix}-buyer-{i}@example.com");
        let approved = now - (i as i64 % 170 + 1) * DAY_MS;
        // 7 in 10 approved, 1 completed (the warranty ended), 1 refunded, 1 charged back.
        let (status, keeps) = match i % 10 {
            7 => ("COMPLETE", true),
            8 => ("REFUNDED", false),
            9 => ("CHARGEBACK", false),
            _ => ("APPROVED", true),
        };
        data = data.sale(&format!("HP{prefix}{i:05}"), &email, LIFETIME, status, approved);
        expected.insert(email, if keeps { vec!["501".to_owned()] } else { Vec::new() });
    }
    for j in 0..subscribers {
        let email = format!("{prefix}-sub-{j}@example.com");
        let code = format!("S{prefix}{j:05}");
        let months = 1 + j % 3;
        let tx = |m: usize| format!("TX{prefix}{j:05}M{m}");
        // The newest charge, and the ones before it a month apart.
        let (last, status, cancelled, keeps) = match j % 5 {
            // Active, paid through next month.
            0 | 1 => (now - (j as i64 % 25 + 1) * DAY_MS, "ACTIVE", None, true),
            // Cancelled, paid period still running: access until its end.
            2 => (now - (j as i64 % 25 + 2) * DAY_MS, "CANCELLED_BY_CUSTOMER", Some(1), true),
            // Cancelled, paid period over (30 days + 3 of grace ended).
            3 => (now - (40 + j as i64 % 20) * DAY_MS, "CANCELLED_BY_SELLER", Some(1), false),
            // The current month refunded: access ends at once.
            _ => (now - (j as i64 % 25 + 1) * DAY_MS, "ACTIVE", None, false),
        };
        let mut charges: Vec<Charge> = (0..months)
            .map(|m| Charge {
                transaction: tx(m),
                status: "APPROVED",
                approved_ms: Some(last - (months - 1 - m) as i64 * 30 * DAY_MS),
            })
            .collect();
        if j % 5 == 4 {
            charges.last_mut().unwrap().status = "REFUNDED";
        }
        let cancelled = cancelled.map(|_| last + HOUR_MS);
        data = data.subscription(&code, &email, MONTHLY, status, last + 30 * DAY_MS, cancelled, &charges);
        expected.insert(email, if keeps { vec!["502".to_owned()] } else { Vec::new() });
    }
    (data, expected)
}

fn date(ms: i64) -> String {
    lms_bridge_shared::Timestamp::from_unix_millis(ms).unwrap().to_string()
}

#[test]
fn a_backfill_of_2000_sales_and_subscriptions_gives_each_student_what_the_rules_say_and_a_rerun_publishes_nothing() {
    let (_turn, chain) = chain();
    let now = now_ms();
    let (data, expected) = shop("bf", 1_000, 330, now);
    assert!(data.records() >= 1_900, "{} records", data.records());
    chain.fake.serve(&data);
    let since = date(now - 200 * DAY_MS);
    let args = ["backfill", "--from", "hotmart-api", "--since", &since, "--window-days", "60"];

    let started = Instant::now();
    let first = chain.job(&args);
    let published = first["counts"]["published"].as_u64().unwrap();
    eprintln!("backfill: {} records → {published} facts published in {:?}", data.records(), started.elapsed());
    assert_eq!(first["status"], "done", "{first}");
    assert_eq!(first["counts"]["errors"], 0, "{first}");
    chain.settle(&expected, Duration::from_secs(420));
    eprintln!("backfill: every student in step after {:?}", started.elapsed());

    // One account per student, one enrollment per student who kept access at the end.
    let state = chain.sandbox.state();
    let signups = calls_by_email(&state, "usersignup");
    assert!(signups.iter().filter(|(e, _)| e.contains("bf-")).all(|(_, n)| *n == 1), "a student signed up twice");
    let enrolls = calls_by_email(&state, "addusertocourse");
    assert!(enrolls.iter().filter(|(e, _)| e.contains("bf-")).all(|(_, n)| *n <= 1), "a student enrolled twice");

    // The same backfill again: every fact is known; nothing is published.
    let again = chain.job(&args);
    assert_eq!(again["counts"]["published"], 0, "{again}");
    assert_eq!(again["counts"]["known"], again["counts"]["facts"], "{again}");
    assert_eq!(again["status"], "done", "{again}");
}

#[test]
fn a_backfill_killed_half_way_resumes_from_its_checkpoint_and_applies_nothing_twice() {
    let (_turn, chain) = chain();
    let now = now_ms();
    let (data, expected) = shop("kr", 600, 0, now);
    chain.fake.serve(&data);
    let since = date(now - 200 * DAY_MS);
    let until = date(now);
    let args = ["backfill", "--from", "hotmart-api", "--since", &since, "--until", &until, "--window-days", "20"];
    // Paced so the run takes seconds: it is killed in the middle.
    let slow = [("PUBLISH_PER_SECOND", "100"), ("HOTMART_API_PAGE_SIZE", "50")];
    let mut command = Command::new(lms_bridge_tests::backend::backend_bin());
    command.args(args);
    let mut env = chain.env();
    env.extend(slow.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env.extend(chain.backend_env());
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let history = "/payments/api/v1/sales/history";
    let calls = || chain.fake.state()["calls"][history].as_u64().unwrap_or(0);
    // How many sales pages the whole walk reads: a dry run walks it and touches nothing.
    let mappings = std::env::temp_dir().join("lms-bridge-kill-mappings.toml");
    std::fs::write(&mappings, Mappings::new().lifetime(LIFETIME, &["501"]).toml()).unwrap();
    let before = calls();
    let mut dry = args.to_vec();
    dry.extend(["--dry-run", "--mappings", mappings.to_str().unwrap()]);
    let output = chain.run(&dry, &slow);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let whole_walk = calls() - before;
    let before = calls();
    let mut first = Service::spawn("backfill-killed", command);
    let started = Instant::now();
    while calls() < before + 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "the backfill did not start: {}", first.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
    first.stop();

    let killed_at = calls();
    let output = chain.run(&args, &slow);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(stderr.contains("resuming job backfill-"), "{stderr}");
    // Resumed where it stopped: the pages read before the kill are not read again (but the one
    // in flight may be).
    let resumed = calls() - killed_at;
    assert!(resumed + (killed_at - before) <= whole_walk + 1, "{resumed} pages after the kill, {whole_walk} in all");
    let summary: Value = serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "done", "{summary}");
    chain.settle(&expected, Duration::from_secs(120));
    let state = chain.sandbox.state();
    for action in ["usersignup", "addusertocourse"] {
        let calls = calls_by_email(&state, action);
        let twice: Vec<_> = calls.iter().filter(|(e, n)| e.contains("kr-") && **n > 1).collect();
        assert!(twice.is_empty(), "{action} twice: {twice:?}");
    }
}

impl Chain {
    /// The state and LMS settings the backend's CLI gets.
    fn backend_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GCP_PROJECT", self.backend.project.clone()),
            ("FIRESTORE_EMULATOR_HOST", self.backend_firestore()),
            ("TALENTLMS_URL", self.sandbox.url.clone()),
            ("TALENTLMS_API_KEY", LMS_KEY.to_owned()),
        ]
    }

    fn backend_firestore(&self) -> String {
        self._firestore.host.clone()
    }
}

#[test]
fn one_reconcile_run_recovers_a_lost_purchase_and_then_a_lost_refund() {
    let (_turn, chain) = chain();
    let now = now_ms();
    let email = "rc-lost@example.com";
    // Hotmart knows the sale; the webhook never reached the edge.
    chain.fake.serve(&HotmartData::new().sale("HPRC0001", email, LIFETIME, "APPROVED", now - 2 * DAY_MS));
    let (status, report) = reconcile(chain);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["counts"]["published"], 1, "{report}");
    chain.settle(&BTreeMap::from([(email.to_owned(), vec!["501".to_owned()])]), Duration::from_secs(30));

    // Then refunded at Hotmart, and that webhook is lost too.
    chain.fake.add(&HotmartData::new().sale("HPRC0001", email, LIFETIME, "REFUNDED", now - 2 * DAY_MS));
    let (status, report) = reconcile(chain);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["counts"]["published"], 1, "only the refund is new: {report}");
    chain.settle(&BTreeMap::from([(email.to_owned(), Vec::new())]), Duration::from_secs(30));

    // A subscription's charge whose webhook was lost: found through the sale, then the
    // subscription by the buyer's email and product, with its charges.
    let subscriber = "rc-sub@example.com";
    let charges = [Charge { transaction: "TXRC0001".into(), status: "APPROVED", approved_ms: Some(now - 3 * DAY_MS) }];
    chain.fake.add(&HotmartData::new().subscription(
        "SRC0001",
        subscriber,
        MONTHLY,
        "ACTIVE",
        now + 27 * DAY_MS,
        None,
        &charges,
    ));
    let (status, report) = reconcile(chain);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["counts"]["published"], 1, "the subscription's approval: {report}");
    chain.settle(&BTreeMap::from([(subscriber.to_owned(), vec!["502".to_owned()])]), Duration::from_secs(30));

    // A run with nothing lost publishes nothing.
    let (_, report) = reconcile(chain);
    assert_eq!(report["counts"]["published"], 0, "{report}");
}

/// `POST /tasks/reconcile`, as Cloud Scheduler calls it.
fn reconcile(chain: &Chain) -> (u16, Value) {
    let response =
        reqwest::blocking::Client::new().post(format!("{}/tasks/reconcile", chain.backend.url)).send().unwrap();
    (response.status().as_u16(), response.json().unwrap_or(Value::Null))
}

#[test]
fn a_csv_export_backfills_its_students_and_names_each_bad_row_without_stopping() {
    let (_turn, chain) = chain();
    let header = "Código da transação;Status da transação;Data da transação;Confirmação do pagamento;\
                  Código do produto;Produto;Moeda de compra;Valor de compra com impostos;Comprador(a);\
                  Email do(a) Comprador(a);Tipo de cobrança";
    let rows = [
        "HPCSV001;Aprovado;10/03/2026 14:05:00;10/03/2026 14:06:10;9101;Curso;BRL;1.234,56;Ana;csv-ana@example.com;Único",
        "HPCSV002;Completo;11/03/2026 09:00:00;11/03/2026 09:00:30;9101;Curso;BRL;97,00;Bia;csv-bia@example.com;Único",
        "HPCSV003;Reembolsado;12/03/2026 10:00:00;12/03/2026 10:01:00;9101;Curso;BRL;97,00;Caio;csv-caio@example.com;Único",
        "HPCSV004;Pendurado;12/03/2026 11:00:00;12/03/2026 11:01:00;9101;Curso;BRL;97,00;Duda;csv-duda@example.com;Único",
    ];
    let path = std::env::temp_dir().join("lms-bridge-sales-export.csv");
    std::fs::write(&path, format!("\u{feff}{header}\n{}\n", rows.join("\n"))).unwrap();

    let summary = chain.job(&["backfill", "--from", "csv", path.to_str().unwrap()]);
    assert_eq!(summary["status"], "done", "{summary}");
    assert_eq!(summary["counts"]["errors"], 1, "{summary}");
    let error = summary["errors"][0].as_str().unwrap();
    assert!(error.contains("line 5") && error.contains("Pendurado"), "{error}");
    chain.settle(
        &BTreeMap::from([
            ("csv-ana@example.com".to_owned(), vec!["501".to_owned()]),
            ("csv-bia@example.com".to_owned(), vec!["501".to_owned()]),
            ("csv-caio@example.com".to_owned(), Vec::new()),
        ]),
        Duration::from_secs(30),
    );
    assert!(chain.sandbox.user_status("csv-duda@example.com").is_none(), "a bad row gives nothing");
}

#[test]
fn drift_finds_a_hand_removed_enrollment_fixes_it_and_never_touches_what_the_bridge_did_not_give() {
    let (_turn, chain) = chain();
    let now = now_ms();
    let email = "drift-ana@example.com";
    chain.fake.serve(&HotmartData::new().sale("HPDR0001", email, LIFETIME, "APPROVED", now - DAY_MS));
    let (status, report) = reconcile(chain);
    assert_eq!(status, 200, "{report}");
    chain.settle(&BTreeMap::from([(email.to_owned(), vec!["501".to_owned()])]), Duration::from_secs(30));

    // An admin removes the enrollment by hand, and gives the student another course.
    let user = chain.sandbox.state()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .map(|u| u["id"].as_str().map_or_else(|| u["id"].to_string(), str::to_owned))
        .unwrap();
    talentlms_call(chain, &format!("removeuserfromcourse/user_id:{user},course_id:501"));
    talentlms_form(chain, "addusertocourse", &[("user_id", &user), ("course_id", "777"), ("role", "learner")]);
    assert_eq!(chain.sandbox.courses_of(email), ["777"]);

    let key = String::from_utf8(chain.backend.cli(&["student", "key", email]).stdout).unwrap().trim().to_owned();
    // Every student of the chain, at a pace that keeps the walk short (the sandbox's rate
    // limit may refuse some lookups: those students are reported as errors, so walk again).
    let started = Instant::now();
    let found = loop {
        let found = drift(chain, &["drift"]);
        if found.iter().any(|d| d["student"] == key.as_str()) || started.elapsed() > Duration::from_secs(90) {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mine: Vec<&Value> = found.iter().filter(|d| d["student"] == key.as_str()).collect();
    assert_eq!(mine.len(), 1, "{found:?}");
    assert_eq!(
        (&mine[0]["difference"], &mine[0]["course"], &mine[0]["fixed"]),
        (&json!("missing_enrollment"), &json!("501"), &json!(false))
    );

    // The full walk may have used up the LMS's rate-limit window: a refused lookup is reported
    // for that student, not waited out, so the fix is tried again once the window resets.
    let started = Instant::now();
    let fixed = loop {
        let fixed = drift(chain, &["drift", "--fix", "--email", email]);
        if !fixed.is_empty() || started.elapsed() > Duration::from_secs(30) {
            break fixed;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mine: Vec<&Value> = fixed.iter().filter(|d| d["student"] == key.as_str()).collect();
    assert_eq!(mine.len(), 1, "{fixed:?}");
    assert_eq!(mine[0]["fixed"], true, "{fixed:?}");
    assert_eq!(chain.sandbox.courses_of(email), ["501", "777"], "restored; the hand-given course left alone");
    assert!(drift(chain, &["drift", "--email", email]).is_empty(), "in step now");
}

/// `lms-bridge drift ARGS`: its difference lines.
fn drift(chain: &Chain, args: &[&str]) -> Vec<Value> {
    let output = chain.backend.cli_with(args, &[("TALENTLMS_MAX_CALLS_PER_SECOND", "500")]);
    assert!(output.status.success(), "drift: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    eprintln!("drift {args:?}: {}", stdout.lines().last().unwrap_or_default());
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("difference").is_some())
        .collect()
}

fn talentlms_call(chain: &Chain, path: &str) {
    let response = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/{path}", chain.sandbox.url))
        .basic_auth(LMS_KEY, Some(""))
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
}

fn talentlms_form(chain: &Chain, path: &str, form: &[(&str, &str)]) {
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/{path}", chain.sandbox.url))
        .basic_auth(LMS_KEY, Some(""))
        .form(form)
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
}

#[test]
fn bad_credentials_a_bad_status_and_a_dry_run_each_say_what_they_are() {
    let (_turn, chain) = chain();
    let now = now_ms();
    let since = date(now - 30 * DAY_MS);

    // Wrong credentials: one line naming the settings, exit 2, the secret never shown.
    let output = chain.run(
        &["backfill", "--from", "hotmart-api", "--since", &since],
        &[("HOTMART_CLIENT_SECRET", "wrong-secret-value")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HOTMART_CLIENT_ID") && stderr.contains("HOTMART_CLIENT_SECRET"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-value"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // No --since: the walk never relies on Hotmart's own ranges.
    let output = chain.run(&["backfill", "--from", "hotmart-api"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--since"));

    // A charge in a status nobody knows: named, and the other facts still go through.
    let charges = [
        Charge { transaction: "TXBAD1".into(), status: "APPROVED", approved_ms: Some(now - 3 * DAY_MS) },
        Charge { transaction: "TXBAD2".into(), status: "WEIRD_STATUS", approved_ms: None },
    ];
    let data = HotmartData::new()
        .subscription("SBAD1", "bad-sub@example.com", MONTHLY, "ACTIVE", now + 27 * DAY_MS, None, &charges)
        .sale("HPBAD001", "bad-ok@example.com", LIFETIME, "APPROVED", now - 2 * DAY_MS);
    chain.fake.serve(&data);

    // A dry run first: the access those facts give, and nothing published.
    let mappings = std::env::temp_dir().join("lms-bridge-dry-run-mappings.toml");
    std::fs::write(&mappings, Mappings::new().lifetime(LIFETIME, &["501"]).subscription(MONTHLY, &["502"], 3).toml())
        .unwrap();
    let probe = "backfill-dry-run-probe";
    let client = chain.pubsub.client();
    client.create_subscription(probe, "lms-bridge-events");
    // The emulator hands a new subscription what the topic retained: drain it first.
    while !client.pull_once(probe, 1_000).is_empty() {}
    let output = chain.run(
        &[
            "backfill",
            "--from",
            "hotmart-api",
            "--since",
            &since,
            "--dry-run",
            "--mappings",
            mappings.to_str().unwrap(),
        ],
        &[],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let access = |email: &str| lines.iter().find(|l| l["email"] == email).map(|l| l["access"].clone());
    assert_eq!(access("bad-ok@example.com"), Some(json!("active")), "{lines:?}");
    assert_eq!(access("bad-sub@example.com"), Some(json!("active")), "{lines:?}");
    std::thread::sleep(Duration::from_secs(1));
    let pulled: Vec<Value> = client.pull_once(probe, 10).iter().map(|m| m.json()).collect();
    assert!(pulled.is_empty(), "a dry run published: {pulled:?}");

    let summary = chain.job(&["backfill", "--from", "hotmart-api", "--since", &since]);
    assert_eq!(summary["counts"]["errors"], 1, "{summary}");
    assert_eq!(summary["errors"].as_array().unwrap().len(), 1, "{summary}");
    let error = summary["errors"][0].as_str().unwrap();
    assert!(error.contains("SBAD1") && error.contains("WEIRD_STATUS"), "{error}");
    assert!(!error.contains("bad-sub@example.com"), "errors never carry an email: {error}");
    chain.settle(&BTreeMap::from([("bad-ok@example.com".to_owned(), vec!["501".to_owned()])]), Duration::from_secs(30));
}
