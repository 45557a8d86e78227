//! Shared by the `lms-bridge simulate` tests: real-shaped Hotmart bodies (built from the fixtures in
//! `tests/fixtures/hotmart`, so every noisy real field stays), times, and a runner for the command.
//!
//! Nothing here calls lms-bridge code: the binary is run as a user runs it.

#![allow(dead_code, reason = "each test file uses its own part of this module")]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// 2026-01-01T00:00:00Z: every test history starts here.
pub const T0: i64 = 1_767_225_600_000;
/// One second in milliseconds.
pub const SECOND: i64 = 1_000;
/// One minute in milliseconds.
pub const MINUTE: i64 = 60 * SECOND;
/// One hour in milliseconds.
pub const HOUR: i64 = 60 * MINUTE;
/// One day in milliseconds (UTC has no daylight saving: grace days add whole days).
pub const DAY: i64 = 24 * HOUR;

/// Midnight of day `n` after [`T0`].
pub fn day(n: i64) -> i64 {
    T0 + n * DAY
}

/// `ms` as RFC 3339 UTC with exactly 3 fractional digits, e.g. `2026-01-01T00:00:00.000Z`.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("a time in range");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses a timestamp of the output contract: RFC 3339 UTC, exactly 3 fractional digits, `Z`.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bytes = text.as_bytes();
    if bytes.len() != 24 || bytes[10] != b'T' || bytes[19] != b'.' || bytes[23] != b'Z' {
        return Err(format!("{text:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ"));
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?}: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Hotmart bodies
// ---------------------------------------------------------------------------------------------

fn fixture(name: &str) -> Value {
    static FIXTURES: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    let all = FIXTURES.get_or_init(|| {
        let dir = format!("{}/../tests/fixtures/hotmart", env!("CARGO_MANIFEST_DIR"));
        let mut all = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {dir}: {e}")) {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
            let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let stem = path.file_stem().expect("a file name").to_string_lossy().into_owned();
            all.insert(stem, body);
        }
        all
    });
    all.get(name).unwrap_or_else(|| panic!("no fixture {name}.json")).clone()
}

/// A fresh envelope id (unique within the test process).
pub fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("5e1f0000-0000-4000-8000-{n:012x}")
}

/// Where a body keeps its fields: one shape per Hotmart event family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Purchase,
    Cancellation,
    SwitchPlan,
    ChargeDate,
    Club,
    Cart,
}

/// A Hotmart 2.0.0 webhook body, started from a fixture and changed field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct Hotmart {
    /// The JSON body.
    pub body: Value,
    shape: Shape,
}

/// Sets `object[key]` to `value`, or removes the key when `value` is `None`.
fn set_or_remove(object: &mut Value, key: &str, value: Option<Value>) {
    match value {
        Some(value) => object[key] = value,
        None => {
            if let Some(map) = object.as_object_mut() {
                map.remove(key);
            }
        }
    }
}

/// A product id as Hotmart sends it: a number when it is one.
fn product_id(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

fn purchase_status(event: &str) -> &'static str {
    match event {
        "PURCHASE_COMPLETE" => "COMPLETED",
        "PURCHASE_CANCELED" => "CANCELED",
        "PURCHASE_REFUNDED" => "REFUNDED",
        "PURCHASE_CHARGEBACK" => "CHARGEBACK",
        "PURCHASE_PROTEST" => "DISPUTE",
        "PURCHASE_DELAYED" => "DELAYED",
        "PURCHASE_BILLET_PRINTED" => "BILLET_PRINTED",
        "PURCHASE_EXPIRED" => "EXPIRED",
        _ => "APPROVED",
    }
}

impl Hotmart {
    fn from_fixture(name: &str, event: &str, shape: Shape) -> Self {
        let mut body = fixture(name);
        body["id"] = json!(fresh_id());
        body["event"] = json!(event);
        Self { body, shape }
    }

    /// A one-off purchase event (no `data.subscription`): the fixture of that event when there is
    /// one, else `purchase_approved.json` renamed (e.g. an event name not known yet).
    pub fn purchase(event: &str) -> Self {
        let name = match event {
            "PURCHASE_COMPLETE" => "purchase_complete",
            "PURCHASE_CANCELED" => "purchase_canceled",
            "PURCHASE_REFUNDED" => "purchase_refunded",
            "PURCHASE_CHARGEBACK" => "purchase_chargeback",
            "PURCHASE_PROTEST" => "purchase_protest",
            "PURCHASE_BILLET_PRINTED" => "purchase_billet_printed",
            "PURCHASE_EXPIRED" => "purchase_expired",
            _ => "purchase_approved",
        };
        let mut made = Self::from_fixture(name, event, Shape::Purchase);
        made.body["data"]["purchase"]["status"] = json!(purchase_status(event));
        made
    }

    /// A subscription charge event: `subscription_purchase_approved.json` (or the delayed one),
    /// with `event` and the purchase status set.
    pub fn subscription(event: &str) -> Self {
        let name = if event == "PURCHASE_DELAYED" {
            "subscription_purchase_delayed"
        } else {
            "subscription_purchase_approved"
        };
        let mut made = Self::from_fixture(name, event, Shape::Purchase);
        made.body["data"]["purchase"]["status"] = json!(purchase_status(event));
        made
    }

    /// A SUBSCRIPTION_CANCELLATION.
    pub fn cancellation() -> Self {
        Self::from_fixture("subscription_cancellation", "SUBSCRIPTION_CANCELLATION", Shape::Cancellation)
    }

    /// A SWITCH_PLAN.
    pub fn switch_plan() -> Self {
        Self::from_fixture("switch_plan", "SWITCH_PLAN", Shape::SwitchPlan)
    }

    /// An UPDATE_SUBSCRIPTION_CHARGE_DATE.
    pub fn charge_date_update() -> Self {
        Self::from_fixture("update_subscription_charge_date", "UPDATE_SUBSCRIPTION_CHARGE_DATE", Shape::ChargeDate)
    }

    /// A CLUB_FIRST_ACCESS.
    pub fn club_first_access() -> Self {
        Self::from_fixture("club_first_access", "CLUB_FIRST_ACCESS", Shape::Club)
    }

    /// A PURCHASE_OUT_OF_SHOPPING_CART.
    pub fn cart_abandoned() -> Self {
        Self::from_fixture("purchase_out_of_shopping_cart", "PURCHASE_OUT_OF_SHOPPING_CART", Shape::Cart)
    }

    /// The same content under a new envelope id (Hotmart's resends).
    pub fn resend(&self) -> Self {
        let mut again = self.clone();
        again.body["id"] = json!(fresh_id());
        again
    }

    /// The envelope id.
    pub fn id(mut self, id: &str) -> Self {
        self.body["id"] = json!(id);
        self
    }

    /// The envelope `creation_date` (epoch ms): when Hotmart sent it.
    pub fn created(mut self, ms: i64) -> Self {
        self.body["creation_date"] = json!(ms);
        self
    }

    /// The event name.
    pub fn event(mut self, event: &str) -> Self {
        self.body["event"] = json!(event);
        self
    }

    /// The student's email, wherever this event family carries it.
    pub fn email(mut self, email: &str) -> Self {
        let data = &mut self.body["data"];
        match self.shape {
            Shape::Purchase | Shape::Cart => data["buyer"]["email"] = json!(email),
            Shape::Cancellation | Shape::ChargeDate => data["subscriber"]["email"] = json!(email),
            Shape::SwitchPlan => data["subscription"]["user"]["email"] = json!(email),
            Shape::Club => data["user"]["email"] = json!(email),
        }
        self
    }

    /// Drops the buyer's email (a body the normalizer must quarantine).
    pub fn without_buyer_email(mut self) -> Self {
        set_or_remove(&mut self.body["data"]["buyer"], "email", None);
        self
    }

    /// The product id.
    pub fn product(mut self, id: &str) -> Self {
        let data = &mut self.body["data"];
        match self.shape {
            Shape::SwitchPlan | Shape::ChargeDate => data["subscription"]["product"]["id"] = product_id(id),
            _ => data["product"]["id"] = product_id(id),
        }
        self
    }

    /// `data.purchase.transaction`: the charge.
    pub fn transaction(mut self, transaction: &str) -> Self {
        self.body["data"]["purchase"]["transaction"] = json!(transaction);
        self
    }

    /// `data.purchase.approved_date` (removed when `None`).
    pub fn approved(mut self, ms: Option<i64>) -> Self {
        set_or_remove(&mut self.body["data"]["purchase"], "approved_date", ms.map(|ms| json!(ms)));
        self
    }

    /// The next charge date, wherever this family carries it (epoch ms; an ISO-8601 string on a
    /// charge-date update, as Hotmart documents it). Removed when `None`.
    pub fn next_charge(mut self, ms: Option<i64>) -> Self {
        let data = &mut self.body["data"];
        match self.shape {
            Shape::Purchase => set_or_remove(&mut data["purchase"], "date_next_charge", ms.map(|ms| json!(ms))),
            Shape::Cancellation => set_or_remove(data, "date_next_charge", ms.map(|ms| json!(ms))),
            Shape::SwitchPlan => set_or_remove(&mut data["subscription"], "date_next_charge", ms.map(|ms| json!(ms))),
            Shape::ChargeDate => {
                set_or_remove(&mut data["subscription"], "date_next_charge", ms.map(|ms| json!(rfc3339(ms))));
            }
            Shape::Club | Shape::Cart => panic!("no next charge date on {:?}", self.shape),
        }
        self
    }

    /// The subscriber code (the subscription's grant id).
    pub fn subscriber(mut self, code: &str) -> Self {
        let data = &mut self.body["data"];
        match self.shape {
            Shape::Purchase => data["subscription"]["subscriber"]["code"] = json!(code),
            Shape::Cancellation | Shape::ChargeDate => data["subscriber"]["code"] = json!(code),
            Shape::SwitchPlan => data["subscription"]["subscriber_code"] = json!(code),
            Shape::Club | Shape::Cart => panic!("no subscriber on {:?}", self.shape),
        }
        self
    }

    /// The plan id the event names.
    pub fn plan(mut self, id: i64) -> Self {
        let data = &mut self.body["data"];
        match self.shape {
            Shape::Purchase | Shape::Cancellation => data["subscription"]["plan"]["id"] = json!(id),
            Shape::ChargeDate => data["plan"]["id"] = json!(id),
            Shape::SwitchPlan => return self.switch_to(id, 0),
            Shape::Club | Shape::Cart => panic!("no plan on {:?}", self.shape),
        }
        self
    }

    /// A SWITCH_PLAN's plans: `new` is `current`, `old` is not.
    pub fn switch_to(mut self, new: i64, old: i64) -> Self {
        let plans = &mut self.body["data"]["plans"];
        plans[0]["id"] = json!(new);
        plans[0]["current"] = json!(true);
        plans[1]["id"] = json!(old);
        plans[1]["current"] = json!(false);
        self
    }

    /// The subscription status (`ACTIVE`, `CANCELLED_BY_CUSTOMER`, …).
    pub fn status(mut self, status: &str) -> Self {
        self.body["data"]["subscription"]["status"] = json!(status);
        self
    }

    /// `data.purchase.recurrence_number`.
    pub fn recurrence(mut self, n: u32) -> Self {
        self.body["data"]["purchase"]["recurrence_number"] = json!(n);
        self
    }

    /// `data.cancellation_date` (removed when `None`).
    pub fn cancelled_at(mut self, ms: Option<i64>) -> Self {
        set_or_remove(&mut self.body["data"], "cancellation_date", ms.map(|ms| json!(ms)));
        self
    }

    /// `data.switch_plan_date` (removed when `None`).
    pub fn switched_at(mut self, ms: Option<i64>) -> Self {
        set_or_remove(&mut self.body["data"], "switch_plan_date", ms.map(|ms| json!(ms)));
        self
    }

    /// The body as one line of JSON.
    pub fn line(&self) -> String {
        serde_json::to_string(&self.body).expect("a JSON value serializes")
    }

    /// The envelope `creation_date`.
    pub fn creation(&self) -> i64 {
        self.body["creation_date"].as_i64().expect("creation_date is set")
    }

    /// The envelope id.
    pub fn envelope_id(&self) -> &str {
        self.body["id"].as_str().expect("id is a string")
    }

    /// The event name.
    pub fn event_name(&self) -> &str {
        self.body["event"].as_str().expect("event is a string")
    }
}

// ---------------------------------------------------------------------------------------------
// Mappings
// ---------------------------------------------------------------------------------------------

/// One `[[product]]` table: `policy` is the inline table (`{ type = "lifetime" }`), `extra` any
/// further lines (`dispute = "suspend"`, `plans = {…}`).
pub fn product_toml(product_id: &str, courses: &[&str], policy: &str, extra: &str) -> String {
    let courses = courses.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "[[product]]\nsource = \"hotmart\"\nproduct_id = \"{product_id}\"\ncourses = [{courses}]\npolicy = {policy}\n{extra}\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Running `lms-bridge simulate`
// ---------------------------------------------------------------------------------------------

/// A file removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A new file holding `text`.
    pub fn new(extension: &str, text: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("lms-bridge-simulate-{}-{n}.{extension}", std::process::id()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
        Self(path)
    }

    /// The path as an argument.
    pub fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `lms-bridge ARGS` with `stdin`, to the end.
pub fn run(args: &[String], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lms-bridge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lms-bridge binary runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    let text = stdin.to_owned();
    // A writer thread: the program may answer (or fail) before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let output = child.wait_with_output().expect("lms-bridge exits");
    let _ = writer.join();
    output
}

/// `lms-bridge simulate --mappings FILE [--at T]... [--timeline] < lines`.
pub fn simulate(mappings: &str, lines: &[String], probes: &[i64], timeline: bool) -> Output {
    let file = TempFile::new("toml", mappings);
    let mut args = vec!["simulate".to_owned(), "--mappings".to_owned(), file.arg()];
    for probe in probes {
        args.push("--at".to_owned());
        args.push(rfc3339(*probe));
    }
    if timeline {
        args.push("--timeline".to_owned());
    }
    let mut stdin = lines.join("\n");
    stdin.push('\n');
    run(&args, &stdin)
}

/// What a probe line says about one (student, course).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// `access == "active"`.
    pub active: bool,
    /// The access end (`None`: no end, or inactive).
    pub until: Option<i64>,
    /// `lms == "enrolled"`.
    pub enrolled: bool,
}

impl Access {
    /// Inactive, not enrolled: also what a pair missing from the output means.
    pub const NONE: Self = Self { active: false, until: None, enrolled: false };

    /// Active until `until` (`None`: no end), enrolled.
    pub fn active(until: Option<i64>) -> Self {
        Self { active: true, until, enrolled: true }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let access = if self.active { "active" } else { "inactive" };
        let until = self.until.map_or_else(|| "-".to_owned(), rfc3339);
        let lms = if self.enrolled { "enrolled" } else { "not_enrolled" };
        write!(f, "{access} until {until} {lms}")
    }
}

/// The parsed stdout of `simulate`.
#[derive(Debug, Default)]
pub struct Answer {
    /// The `--timeline` lines, in order.
    pub timeline: Vec<Value>,
    /// Probe time → (email, course) → access.
    pub probes: BTreeMap<i64, BTreeMap<(String, String), Access>>,
}

impl Answer {
    /// The access of (`email`, `course`) at probe `at` (a pair not listed: inactive, not enrolled).
    pub fn at(&self, at: i64, email: &str, course: &str) -> Access {
        let probe = self.probes.get(&at).unwrap_or_else(|| {
            panic!("{} was not probed; probes: {:?}", rfc3339(at), self.probes.keys().map(|t| rfc3339(*t)))
        });
        probe.get(&(email.to_owned(), course.to_owned())).copied().unwrap_or(Access::NONE)
    }

    /// The active pairs at probe `at`, as (email, course, until).
    pub fn active_at(&self, at: i64) -> Vec<(String, String, Option<i64>)> {
        self.probes
            .get(&at)
            .map(|pairs| {
                pairs.iter().filter(|(_, a)| a.active).map(|((e, c), a)| (e.clone(), c.clone(), a.until)).collect()
            })
            .unwrap_or_default()
    }

    /// The timeline entry of input line `n` (1-based).
    pub fn line(&self, n: u64) -> &Value {
        self.timeline
            .iter()
            .find(|entry| entry["line"].as_u64() == Some(n))
            .unwrap_or_else(|| panic!("no timeline entry for line {n}: {:?}", self.timeline))
    }
}

/// Parses and checks `simulate`'s stdout against the output contract. `probes` are the `--at`
/// times asked (empty: the default probe, whatever its time).
pub fn parse_answer(output: &Output, probes: &[i64]) -> Result<Answer, String> {
    let stdout = String::from_utf8(output.stdout.clone()).map_err(|e| format!("stdout is not UTF-8: {e}"))?;
    let mut answer = Answer::default();
    for probe in probes {
        // A probe with no enrollment at all prints no line.
        answer.probes.insert(*probe, BTreeMap::new());
    }
    let mut last_at: Option<i64> = None;
    let mut last_pair: Option<(String, String)> = None;
    for (n, text) in stdout.lines().enumerate() {
        let line: Value =
            serde_json::from_str(text).map_err(|e| format!("stdout line {} is not JSON ({e}): {text}", n + 1))?;
        if line.get("line").is_some() {
            if last_at.is_some() {
                return Err(format!("timeline line after probe lines: {text}"));
            }
            answer.timeline.push(line);
            continue;
        }
        let field = |name: &str| line.get(name).ok_or_else(|| format!("no {name:?} in {text}"));
        let string = |name: &str| field(name)?.as_str().ok_or_else(|| format!("{name:?} is not a string in {text}"));
        let at = parse_time(string("at")?)?;
        if !probes.is_empty() && !probes.contains(&at) {
            return Err(format!("an answer for a time not probed: {text}"));
        }
        let email = string("email")?.to_owned();
        let course = string("course")?.to_owned();
        if email != email.trim().to_lowercase() {
            return Err(format!("email not trimmed and lowercased: {text}"));
        }
        let active = match string("access")? {
            "active" => true,
            "inactive" => false,
            other => return Err(format!("access {other:?} in {text}")),
        };
        let enrolled = match string("lms")? {
            "enrolled" => true,
            "not_enrolled" => false,
            other => return Err(format!("lms {other:?} in {text}")),
        };
        let until = match field("until")? {
            Value::Null => None,
            Value::String(s) => Some(parse_time(s)?),
            other => return Err(format!("until {other} in {text}")),
        };
        if !active && until.is_some() {
            return Err(format!("an inactive pair has an until: {text}"));
        }
        if last_at.is_some_and(|previous| at < previous) {
            return Err(format!("probes not in ascending order at {text}"));
        }
        let pair = (email.clone(), course.clone());
        if last_at == Some(at) && last_pair.as_ref().is_some_and(|previous| *previous >= pair) {
            return Err(format!("pairs not sorted by email then course (or repeated) at {text}"));
        }
        last_at = Some(at);
        last_pair = Some(pair);
        answer.probes.entry(at).or_default().insert((email, course), Access { active, until, enrolled });
    }
    Ok(answer)
}

/// The answer of a run that must succeed, checked against the output contract.
pub fn answer(output: &Output, probes: &[i64]) -> Answer {
    assert!(
        output.status.success(),
        "simulate failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_answer(output, probes).unwrap_or_else(|e| panic!("{e}\nstdout:\n{}", String::from_utf8_lossy(&output.stdout)))
}

/// A charge event of ana@example.com's subscription SUB1 to product 2002 (plan 123).
pub fn ana_sub_charge(event: &str, tx: &str, approved: Option<i64>, next: Option<i64>, sent: i64) -> Hotmart {
    Hotmart::subscription(event)
        .product("2002")
        .subscriber("SUB1")
        .transaction(tx)
        .email("ana@example.com")
        .plan(123)
        .approved(approved)
        .next_charge(next)
        .created(sent)
}
