//! The chaos run: a generated history fired at the edge in workerd at a launch-day rate,
//! through the Pub/Sub emulator to two backend instances behind a balancer, while one instance
//! is killed and restarted three times, Pub/Sub is cut off from the edge for a while (the edge
//! parks webhooks in its queue), and the LMS sandbox fails a fifth of its calls, answers some
//! only after the client gave up, and rate-limits in bursts. Once the system is quiet and a
//! sweep has run at a fixed later time, the LMS and the Firestore state are compared with
//! `lms-bridge simulate` over the same history at the same time.

use super::balancer::Balancer;
use super::history::{self, History, Sent, COURSES, MAPPINGS};
use super::proxy::ChaosProxy;
use crate::backend::{backend_bin, Backend, Firestore, Issuer, Sandbox};
use crate::edge::{Edge, HOTTOK};
use crate::process::free_port;
use crate::pubsub_emulator::Emulator;
use crate::webhooks::now_ms;
use lms_bridge_shared::{Email, Timestamp};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Webhooks in the history.
    pub webhooks: usize,
    /// The history's and the faults' seed.
    pub seed: u64,
    /// Webhooks per second offered to the edge.
    pub rate: f64,
    /// Concurrent senders (each owns a share of the students and sends their webhooks in order).
    pub senders: usize,
    /// How long to wait for the system to be quiet after the last webhook.
    pub quiet_timeout: Duration,
}

impl Config {
    /// `webhooks` with the defaults: seed 1, 100 webhooks a second from 8 senders, and time to
    /// drain at a tenth of the LMS pace.
    pub fn new(webhooks: usize) -> Self {
        let quiet_timeout = Duration::from_secs(120 + webhooks as u64 / 4);
        Self { webhooks, seed: 1, rate: 100.0, senders: 8, quiet_timeout }
    }
}

/// What the run saw, and what it found wrong.
#[derive(Debug, Default)]
pub struct Report {
    /// Webhooks sent.
    pub webhooks: usize,
    /// Students in the history.
    pub students: usize,
    /// Answered 2xx by the edge.
    pub accepted: usize,
    /// Of those, answered from the edge's queue fallback (Pub/Sub cut off).
    pub via_queue: usize,
    /// Not answered 2xx (each one is also in `lost`: the sender never gets it through).
    pub refused: usize,
    /// Exact duplicates and resends under new ids in the history.
    pub duplicates_sent: usize,
    /// Resends under a new id.
    pub resends_sent: usize,
    /// Events recorded in Firestore, and how many of them changed something.
    pub events: usize,
    /// Events with status `applied`.
    pub applied: usize,
    /// LMS API calls, all answers.
    pub lms_calls: usize,
    /// LMS calls that changed the LMS, by action.
    pub lms_effects: BTreeMap<String, usize>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, usize>,
    /// Pushes the balancer answered 502 because their instance was killed under them.
    pub pushes_cut_off: usize,
    /// Where the LMS or Firestore disagree with `simulate`.
    pub mismatches: Vec<String>,
    /// Webhooks answered 2xx that never became an event.
    pub lost: Vec<String>,
    /// Side effects beyond what the timeline allows.
    pub duplicate_effects: Vec<String>,
    /// From the first webhook until quiet.
    pub wall: Duration,
    /// Sending alone.
    pub send_wall: Duration,
    /// Webhook answered → enrolled in the LMS, per first enrollment (ms).
    pub latencies_ms: Vec<i64>,
}

impl Report {
    /// Whether the promise held: nothing mismatched, lost or done twice.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.lost.is_empty() && self.duplicate_effects.is_empty() && self.webhooks > 0
    }

    fn percentile(&self, p: f64) -> Option<i64> {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        sorted.get(((last as f64) * p).round() as usize).copied()
    }

    /// The printed report, ending with the one-line verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let ms = |v: Option<i64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
        line(format!("webhooks           {} ({} students)", self.webhooks, self.students));
        line(format!(
            "accepted (2xx)     {} ({} via the edge's queue while Pub/Sub was cut off), refused {}",
            self.accepted, self.via_queue, self.refused
        ));
        line(format!(
            "duplicates sent    {} (of which {} resends under new ids)",
            self.duplicates_sent, self.resends_sent
        ));
        line(format!("events recorded    {} ({} applied)", self.events, self.applied));
        line(format!("LMS calls          {} (effects: {:?})", self.lms_calls, self.lms_effects));
        line(format!("faults injected    {:?}; pushes cut off by kills: {}", self.faults, self.pushes_cut_off));
        line(format!(
            "wall time          {:.1} s (sending {:.1} s)",
            self.wall.as_secs_f64(),
            self.send_wall.as_secs_f64()
        ));
        line(format!("events/s           {:.1}", self.accepted as f64 / self.wall.as_secs_f64().max(0.001)));
        line(format!(
            "webhook→LMS        p50 {}, p99 {} ({} first enrollments)",
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            self.latencies_ms.len()
        ));
        for (what, list) in
            [("mismatch", &self.mismatches), ("lost", &self.lost), ("duplicate side effect", &self.duplicate_effects)]
        {
            for item in list.iter().take(20) {
                line(format!("{what}: {item}"));
            }
            if list.len() > 20 {
                line(format!("… and {} more of {what}", list.len() - 20));
            }
        }
        line(format!(
            "chaos: {} webhooks, {} mismatches, {} lost, {} duplicate side effects",
            self.webhooks,
            self.mismatches.len(),
            self.lost.len(),
            self.duplicate_effects.len()
        ));
        out
    }
}

/// What one send got: status, whether via the queue, when it was answered (Unix ms).
type Answer = Option<(u16, bool, i64)>;

/// Runs the whole thing; panics only when a part cannot start.
pub fn run(config: &Config) -> Report {
    let history = history::generate(config.webhooks, config.seed, now_ms());
    let project = format!("chaos-{}", history.start_ms);
    eprintln!("chaos: {} webhooks, {} students, project {project}", history.webhooks.len(), history.students);

    let pubsub = Emulator::start();
    let firestore = Firestore::start();
    let issuer = Issuer::start();
    let sandbox = Sandbox::start(&["--courses", COURSES]);
    // Two instances share the TalentLMS pace (40 calls/s per portal) as a deployment must.
    let env = [("PUSH_AUTH", "none"), ("TALENTLMS_TIMEOUT_SECONDS", "2"), ("TALENTLMS_MAX_CALLS_PER_SECOND", "18")];
    let ports = [free_port(), free_port()];
    let start = |port: u16| Backend::start_on(port, &project, &firestore, &sandbox, &issuer, &env);
    let steady = start(ports[0]);
    let mut killable = Some(start(ports[1]));
    steady.import_mappings(MAPPINGS);
    let balancer = Balancer::start(ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect());
    let push = format!("{}/pubsub/push", balancer.url);
    // The emulator redelivers at once where Pub/Sub backs off for up to ten minutes, so ten
    // deliveries (the deployment's dead-letter threshold) pass in seconds here, and its
    // dead-lettering stops its push loop for good (a NullPointerException in PushLoop): allow
    // Pub/Sub's maximum, 100.
    let setup = steady.cli(&[
        "pubsub",
        "setup",
        "--push-endpoint",
        &push,
        "--min-backoff-seconds",
        "1",
        "--max-delivery-attempts",
        "100",
        "--pubsub-emulator-host",
        &pubsub.host,
    ]);
    assert!(setup.status.success(), "pubsub setup: {}", String::from_utf8_lossy(&setup.stderr));
    let proxy = ChaosProxy::start(&pubsub.host);
    let edge = Edge::start(
        "chaos",
        &[
            ("HOTMART_HOTTOK", HOTTOK),
            ("PUBSUB_EMULATOR_HOST", &proxy.host),
            ("GCP_PROJECT", &project),
            ("PUBSUB_TOPIC", "lms-bridge-events"),
        ],
    );
    let lms_faults = |extra: Value| {
        let mut faults = json!({ "fail_ratio": 0.2, "late_ratio": 0.03, "late_ms": 2_500, "seed": config.seed });
        if let (Some(f), Some(e)) = (faults.as_object_mut(), extra.as_object()) {
            f.extend(e.clone());
        }
        sandbox.faults(faults);
    };
    lms_faults(json!({}));

    // Send, while the controller injects the faults as the history goes by.
    let started = Instant::now();
    let answers: Arc<Vec<Mutex<Answer>>> = Arc::new((0..history.webhooks.len()).map(|_| Mutex::new(None)).collect());
    let sent = Arc::new(AtomicUsize::new(0));
    let senders = send_all(&history, config, &edge.url, &answers, &sent);
    let total = history.webhooks.len();
    let mut steps: Vec<(f64, &str)> = vec![
        (0.10, "burst"),
        (0.15, "kill"),
        (0.25, "restart"),
        (0.30, "cut"),
        (0.35, "burst"),
        (0.40, "restore"),
        (0.45, "kill"),
        (0.55, "restart"),
        (0.65, "burst"),
        (0.75, "kill"),
        (0.85, "restart"),
        (0.90, "burst"),
    ];
    steps.reverse();
    let mut kills = 0;
    while let Some(&(at, what)) = steps.last() {
        let done = sent.load(Ordering::Relaxed) as f64 / total as f64;
        if done < at && !senders.iter().all(std::thread::JoinHandle::is_finished) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        steps.pop();
        eprintln!("chaos: {:>5.1} s, {:>3.0} % sent: {what}", started.elapsed().as_secs_f64(), done * 100.0);
        match what {
            "kill" => {
                if let Some(mut backend) = killable.take() {
                    backend.crash();
                    kills += 1;
                }
            }
            "restart" => killable = Some(start(ports[1])),
            "cut" => proxy.cut(),
            "restore" => proxy.restore(),
            _ => lms_faults(json!({ "rate_limit_next": 25, "retry_after_secs": 2, "seed": config.seed + 1 })),
        }
    }
    for sender in senders {
        sender.join().unwrap();
    }
    let send_wall = started.elapsed();
    eprintln!("chaos: sent in {:.1} s; waiting for quiet", send_wall.as_secs_f64());

    let answers: Vec<Answer> = answers.iter().map(|a| *a.lock().unwrap()).collect();
    let mut report = Report {
        webhooks: total,
        students: history.students,
        duplicates_sent: history.count("duplicate") + history.count("resend"),
        resends_sent: history.count("resend"),
        send_wall,
        pushes_cut_off: 0,
        ..Report::default()
    };
    let accepted: BTreeSet<String> = history
        .webhooks
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_some_and(|(status, ..)| (200..300).contains(&status)))
        .map(|(w, _)| w.id.clone())
        .collect();
    report.accepted = answers.iter().filter(|a| a.is_some_and(|(s, ..)| (200..300).contains(&s))).count();
    report.via_queue = answers.iter().filter(|a| a.is_some_and(|(_, queue, _)| queue)).count();
    report.refused = total - report.accepted;
    for (w, a) in history.webhooks.iter().zip(&answers) {
        if !a.is_some_and(|(s, ..)| (200..300).contains(&s)) {
            report.lost.push(format!("{} ({}) answered {:?}", w.id, w.kind, a.map(|(s, ..)| s)));
        }
    }

    let quiet = wait_quiet(&firestore, &project, &accepted, config.quiet_timeout);
    report.wall = started.elapsed();
    report.pushes_cut_off = balancer.cut_off.load(Ordering::Relaxed);
    if let Err(why) = quiet {
        report.mismatches.push(format!("not quiet within {:?}: {why}", config.quiet_timeout));
    }

    // The faults stop for the sweep, so that one sweep ends what is over (the run is about the
    // chain under faults, the sweep's own retries are tested elsewhere).
    sandbox.faults(json!({}));
    let probe = Timestamp::from_unix_millis(history.probe_ms()).unwrap();
    for _ in 0..5 {
        let output = steady.cli(&["sweep", "--at", &probe.to_string()]);
        let swept: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        eprintln!("chaos: sweep at {probe}: {swept}");
        if output.status.success() && swept["complete"] == true && swept["errors"].as_u64() == Some(0) {
            break;
        }
    }

    let state = sandbox.state();
    count_lms(&state, &mut report);
    report.faults.insert("backend kills".into(), kills);
    let events = firestore.collection(&project, "events", &["status", "processed_at"]);
    report.events = events.len();
    // When the backend applied each webhook (RFC 3339 in milliseconds: sorts as text).
    let mut processed: BTreeMap<String, String> = BTreeMap::new();
    for doc in &events {
        let at = &doc["fields"]["processed_at"];
        let at = at["stringValue"].as_str().or_else(|| at["timestampValue"].as_str()).unwrap_or_default();
        if at.is_empty() {
            report.mismatches.push(format!("event {} has no processed_at: {doc}", doc_id(doc)));
        }
        processed.insert(doc_id(doc).trim_start_matches("hotmart:").to_owned(), at.to_owned());
        if doc["fields"]["status"]["stringValue"] == "applied" {
            report.applied += 1;
        }
    }
    for id in &accepted {
        if !processed.contains_key(id) {
            report.lost.push(format!("{id}: answered 2xx by the edge, no event"));
        }
    }

    // The oracle over the history as sent, and over the webhooks in the order the backend
    // applied them (each once): Pub/Sub may deliver a student's webhooks in another order than
    // they were sent, and the transitions — so the LMS calls — follow the order applied.
    let simulated = simulate(&history.webhooks.iter().collect::<Vec<_>>(), probe, "history");
    let mut seen = BTreeSet::new();
    let mut applied_order: Vec<(&String, usize, &Sent)> = history
        .webhooks
        .iter()
        .enumerate()
        .filter(|(_, w)| seen.insert(w.id.clone()))
        .filter_map(|(i, w)| processed.get(&w.id).map(|at| (at, i, w)))
        .collect();
    applied_order.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let as_applied = simulate(&applied_order.iter().map(|(_, _, w)| *w).collect::<Vec<_>>(), probe, "applied");
    let enrollments = firestore.collection(&project, "enrollments", &[]);
    compare(&history, &answers, (&simulated, &as_applied), &state, &enrollments, &mut report);
    drop((edge, killable, steady));
    report
}

/// Starts the senders: each owns the students whose number falls to it and sends their
/// webhooks in history order, all paced together at `config.rate`.
fn send_all(
    history: &History,
    config: &Config,
    edge: &str,
    answers: &Arc<Vec<Mutex<Answer>>>,
    sent: &Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let started = Instant::now();
    let owner = |email: &str| email.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    (0..config.senders)
        .map(|n| {
            let mine: Vec<(usize, Vec<u8>)> = history
                .webhooks
                .iter()
                .enumerate()
                .filter(|(_, w)| owner(&w.email) % config.senders == n)
                .map(|(i, w)| (i, w.body.clone()))
                .collect();
            let (client, answers, sent, url, rate) = (
                client.clone(),
                Arc::clone(answers),
                Arc::clone(sent),
                format!("{edge}/webhooks/hotmart"),
                config.rate,
            );
            std::thread::spawn(move || {
                for (i, body) in mine {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    // A webhook the edge could not take is sent again, as Hotmart retries.
                    let mut answer = None;
                    for _ in 0..5 {
                        let response = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("X-HOTMART-HOTTOK", HOTTOK)
                            .body(body.clone())
                            .send();
                        if let Ok(response) = response {
                            let status = response.status().as_u16();
                            let via: Value = response.json().unwrap_or(Value::Null);
                            answer = Some((status, via["via"] == "queue", now_ms()));
                            if status == 200 {
                                break;
                            }
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    *answers[i].lock().unwrap() = answer;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// A Firestore document's id (the last part of its name).
fn doc_id(doc: &Value) -> String {
    doc["name"].as_str().and_then(|n| n.rsplit('/').next()).unwrap_or_default().to_owned()
}

/// Waits until every accepted webhook is an event and no LMS action is pending.
fn wait_quiet(
    firestore: &Firestore,
    project: &str,
    accepted: &BTreeSet<String>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut quiet_polls = 0;
    loop {
        let recorded: BTreeSet<String> = firestore
            .collection(project, "events", &["status"])
            .iter()
            .map(|d| doc_id(d).trim_start_matches("hotmart:").to_owned())
            .collect();
        let missing = accepted.iter().filter(|id| !recorded.contains(*id)).count();
        let enrollments = firestore.collection(project, "enrollments", &["pending"]);
        let pending = enrollments
            .iter()
            .filter(|d| d["fields"]["pending"]["arrayValue"]["values"].as_array().is_some_and(|v| !v.is_empty()))
            .count();
        let why = format!("{missing} accepted webhooks not yet events, {pending} enrollments with pending LMS actions");
        quiet_polls = if missing == 0 && pending == 0 { quiet_polls + 1 } else { 0 };
        if quiet_polls >= 3 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(why);
        }
        eprintln!("chaos: {why}");
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Calls and effects in the sandbox's log.
fn count_lms(state: &Value, report: &mut Report) {
    let calls = state["calls"].as_array().cloned().unwrap_or_default();
    report.lms_calls = calls.len();
    for call in &calls {
        if let Some(fault) = call["fault"].as_str() {
            *report.faults.entry(format!("lms {fault}")).or_default() += 1;
        }
        let action = call["action"].as_str().unwrap_or("?");
        if call["status"] == 200 && ["usersignup", "addusertocourse", "removeuserfromcourse"].contains(&action) {
            *report.lms_effects.entry(action.to_owned()).or_default() += 1;
        }
    }
}

/// `simulate`'s view: its timeline and its probe at `probe`.
struct Simulated {
    /// Per (email, course): the history lines (0-based) whose actions enrolled it, in order.
    enrolls: BTreeMap<(String, String), Vec<usize>>,
    /// Per (email, course): access and LMS state at the probe.
    probe: BTreeMap<(String, String), (String, bool)>,
}

/// `lms-bridge simulate --timeline` over `webhooks` in that order (kept in
/// `target/chaos/{name}.ndjson`), probed at `probe`.
fn simulate(webhooks: &[&Sent], probe: Timestamp, name: &str) -> Simulated {
    let dir = crate::repo_root().join("target/chaos");
    std::fs::create_dir_all(&dir).unwrap();
    let mappings = dir.join("mappings.toml");
    std::fs::write(&mappings, MAPPINGS).unwrap();
    let mut child = Command::new(backend_bin())
        .args(["simulate", "--timeline", "--mappings", mappings.to_str().unwrap(), "--at", &probe.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = Vec::new();
    for w in webhooks {
        input.extend_from_slice(&w.body);
        input.push(b'\n');
    }
    std::fs::write(dir.join(format!("{name}.ndjson")), &input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "simulate: {}", String::from_utf8_lossy(&output.stderr));
    let mut simulated = Simulated { enrolls: BTreeMap::new(), probe: BTreeMap::new() };
    for text in String::from_utf8_lossy(&output.stdout).lines() {
        let line: Value = serde_json::from_str(text).unwrap();
        if let Some(number) = line["line"].as_u64() {
            for action in line["actions"].as_array().into_iter().flatten() {
                if action["type"] == "enroll" {
                    let key =
                        (action["email"].as_str().unwrap().to_owned(), action["course"].as_str().unwrap().to_owned());
                    simulated.enrolls.entry(key).or_default().push(number as usize - 1);
                }
            }
        } else {
            let key = (line["email"].as_str().unwrap().to_owned(), line["course"].as_str().unwrap().to_owned());
            simulated.probe.insert(key, (line["access"].as_str().unwrap().to_owned(), line["lms"] == "enrolled"));
        }
    }
    simulated
}

/// Compares the LMS and the state with the simulation of the history as sent, and that with the
/// simulation in the order applied (the rules are order-free: both must end alike); counts side
/// effects against the timeline of the order applied; measures webhook → enrollment latency.
fn compare(
    history: &History,
    answers: &[Answer],
    (simulated, as_applied): (&Simulated, &Simulated),
    lms: &Value,
    enrollments: &[Value],
    report: &mut Report,
) {
    // The LMS: who is enrolled where.
    let mut in_lms: BTreeSet<(String, String)> = BTreeSet::new();
    for user in lms["users"].as_array().into_iter().flatten() {
        let email = user["email"].as_str().unwrap_or_default().to_lowercase();
        for course in user["courses"].as_array().into_iter().flatten() {
            in_lms.insert((email.clone(), course["id"].as_str().unwrap_or_default().to_owned()));
        }
    }
    // The state: access per (student key, course).
    let mut in_state: BTreeMap<(String, String), String> = BTreeMap::new();
    for doc in enrollments {
        let f = &doc["fields"];
        let key = (
            f["student_key"]["stringValue"].as_str().unwrap_or_default().to_owned(),
            f["course_id"]["stringValue"].as_str().unwrap_or_default().to_owned(),
        );
        in_state.insert(key, f["access"]["stringValue"].as_str().unwrap_or_default().to_lowercase());
    }
    let key_of = |email: &str| Email::parse(email).map(|e| e.student_key().to_string()).unwrap_or_default();

    let mut pairs: BTreeSet<(String, String)> = simulated.probe.keys().cloned().collect();
    pairs.extend(in_lms.iter().cloned());
    for (email, course) in &pairs {
        let pair = (email.clone(), course.clone());
        let (access, enrolled) = simulated.probe.get(&pair).cloned().unwrap_or(("none".into(), false));
        if in_lms.contains(&pair) != enrolled {
            report.mismatches.push(format!(
                "{email} course {course}: LMS {}, simulate {} (access {access})",
                if in_lms.contains(&pair) { "enrolled" } else { "not enrolled" },
                if enrolled { "enrolled" } else { "not enrolled" }
            ));
        }
        let state = in_state.get(&(key_of(email), course.clone())).cloned().unwrap_or_else(|| "none".into());
        if state != access {
            report.mismatches.push(format!("{email} course {course}: state access {state}, simulate {access}"));
        }
    }
    for (pair, seen) in &as_applied.probe {
        if simulated.probe.get(pair) != Some(seen) {
            report.mismatches.push(format!(
                "{} course {}: simulate ends {:?} over the history as sent, {seen:?} in the order applied",
                pair.0,
                pair.1,
                simulated.probe.get(pair)
            ));
        }
    }
    let known_keys: BTreeSet<(String, String)> = pairs.iter().map(|(e, c)| (key_of(e), c.clone())).collect();
    for (key, access) in &in_state {
        if !known_keys.contains(key) && access == "active" {
            report
                .mismatches
                .push(format!("student {} course {}: active in the state, unknown to simulate", key.0, key.1));
        }
    }

    // Side effects: one sign-up per student; enrollments only on the timeline's transitions.
    let calls = lms["calls"].as_array().cloned().unwrap_or_default();
    let effective = |action: &str| -> Vec<(String, String, i64)> {
        calls
            .iter()
            .filter(|c| c["status"] == 200 && c["action"] == action)
            .map(|c| {
                (
                    c["user"].as_str().unwrap_or_default().to_lowercase(),
                    c["course"].as_str().unwrap_or_default().to_owned(),
                    c["at_ms"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let mut signups: BTreeMap<String, usize> = BTreeMap::new();
    for (email, ..) in effective("usersignup") {
        *signups.entry(email).or_default() += 1;
    }
    for (email, n) in signups.iter().filter(|(_, n)| **n > 1) {
        report.duplicate_effects.push(format!("{email}: {n} sign-ups"));
    }
    let mut enrolls: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for (email, course, at) in effective("addusertocourse") {
        enrolls.entry((email, course)).or_default().push(at);
    }
    for (pair, times) in &enrolls {
        let allowed = as_applied.enrolls.get(pair).map_or(0, Vec::len);
        if times.len() > allowed {
            report.duplicate_effects.push(format!(
                "{} course {}: enrolled {} times, the timeline in the order applied has {allowed}",
                pair.0,
                pair.1,
                times.len()
            ));
        }
        // Latency: the webhook whose line first enrolled it in the timeline → the first enroll.
        let first_line = simulated.enrolls.get(pair).and_then(|lines| lines.first());
        if let (Some(&line), Some(&enrolled_at)) = (first_line, times.iter().min()) {
            if let Some((_, _, answered)) = answers.get(line).copied().flatten() {
                if enrolled_at >= answered - 1_000 && history.webhooks[line].email == pair.0 {
                    report.latencies_ms.push((enrolled_at - answered).max(0));
                }
            }
        }
    }
}
