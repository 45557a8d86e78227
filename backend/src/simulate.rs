//! `lms-bridge simulate`: an offline what-if over a history of raw webhooks.
//!
//! Each body is normalized as the edge does (received at its own envelope time) and applied
//! through the backend's own [`Engine`] over a [`MemoryStore`], with an LMS that only records
//! what it is asked. Time is read like production: before answering a probe *T*, the lines
//! sent at or before *T* that are not applied yet are applied in file order, then the sweep
//! runs at *T*.

use crate::clock::{Clock, ManualClock};
use crate::commands::{parse_mappings, source_arg, CommandError};
use crate::engine::{Engine, Outcome};
use crate::lms::{Enrolled, EnsuredUser, Lms, LmsError, LmsStudent, LmsUserId};
use crate::store::memory::MemoryStore;
use crate::store::StateStore;
use lms_bridge_shared::source::{self, Source};
use lms_bridge_shared::{CourseId, Event, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::{Arc, Mutex, PoisonError};

/// What `simulate` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The mappings file's text (the TOML of `mappings import`).
    pub mappings: String,
    /// Probe times; empty means the latest envelope time in the input.
    pub at: Vec<Timestamp>,
    /// Print one line per input line first.
    pub timeline: bool,
    /// The platform that sent the bodies, as `--source` takes it (`hotmart`, `std:acme`, …).
    pub source: String,
}

/// What `simulate` answers: standard output, and one report per input line that could not be
/// used (for standard error).
#[derive(Debug, Default)]
pub struct Report {
    /// JSON lines.
    pub stdout: String,
    /// `line N: …` messages.
    pub warnings: Vec<String>,
}

/// One LMS call the engine made, by email (the simulated LMS knows its users by email).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    kind: &'static str,
    email: String,
    course: Option<CourseId>,
}

/// An LMS that does what it is asked and remembers it: users by email, enrollments.
#[derive(Default)]
struct RecordingLms {
    state: Mutex<LmsState>,
}

#[derive(Default)]
struct LmsState {
    users: BTreeMap<String, String>,
    enrolled: BTreeSet<(String, CourseId)>,
    calls: Vec<Call>,
}

impl RecordingLms {
    fn lock(&self) -> std::sync::MutexGuard<'_, LmsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The calls since the last take. The engine runs an enrollment's `ensure_user` right
    /// before its `enroll`, so each `ensure_user` is reported for that enroll's course.
    fn take_calls(&self) -> Vec<Call> {
        let mut calls = std::mem::take(&mut self.lock().calls);
        for i in 1..calls.len() {
            let (before, after) = calls.split_at_mut(i);
            let (ensure, next) = (&mut before[i - 1], &after[0]);
            if ensure.kind == "ensure_user" && next.kind == "enroll" && ensure.email == next.email {
                ensure.course = next.course.clone();
            }
        }
        calls
    }

    fn is_enrolled(&self, email: &str, course: &CourseId) -> bool {
        self.lock().enrolled.contains(&(email.to_owned(), course.clone()))
    }

    fn email_of(state: &LmsState, user: &LmsUserId) -> String {
        state.users.iter().find(|(_, id)| **id == user.0).map(|(email, _)| email.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Lms for RecordingLms {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn ensure_user(&self, student: &LmsStudent) -> Result<EnsuredUser, LmsError> {
        let mut state = self.lock();
        let next = format!("u{}", state.users.len() + 1);
        let created = !state.users.contains_key(&student.email);
        let id = state.users.entry(student.email.clone()).or_insert(next).clone();
        state.calls.push(Call { kind: "ensure_user", email: student.email.clone(), course: None });
        Ok(EnsuredUser { id: LmsUserId(id), created, learner: true })
    }

    async fn enroll(&self, user: &LmsUserId, course: &CourseId) -> Result<Enrolled, LmsError> {
        let mut state = self.lock();
        let email = Self::email_of(&state, user);
        let now = state.enrolled.insert((email.clone(), course.clone()));
        state.calls.push(Call { kind: "enroll", email, course: Some(course.clone()) });
        Ok(if now { Enrolled::Now } else { Enrolled::Already })
    }

    async fn unenroll(&self, user: &LmsUserId, course: &CourseId) -> Result<(), LmsError> {
        let mut state = self.lock();
        let email = Self::email_of(&state, user);
        state.enrolled.remove(&(email.clone(), course.clone()));
        state.calls.push(Call { kind: "unenroll", email, course: Some(course.clone()) });
        Ok(())
    }

    async fn set_active(&self, _user: &LmsUserId, _active: bool) -> Result<(), LmsError> {
        Ok(())
    }
}

/// One input line, normalized.
struct Line {
    number: usize,
    sent_at: Option<Timestamp>,
    event: Event,
    /// What became of it, once applied.
    applied: Option<(&'static str, Vec<Call>)>,
}

/// A `--timeline` line (field order is the output's).
#[derive(Serialize)]
struct TimelineLine<'a> {
    line: usize,
    event_id: &'a str,
    source_event: &'a str,
    change: &'static str,
    status: &'static str,
    actions: Vec<ActionOut<'a>>,
}

#[derive(Serialize)]
struct ActionOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    course: Option<&'a str>,
}

/// A probe line.
#[derive(Serialize)]
struct ProbeLine {
    at: Timestamp,
    email: String,
    course: CourseId,
    access: &'static str,
    until: Option<Timestamp>,
    lms: &'static str,
}

fn json_line<T: Serialize>(out: &mut String, value: &T) {
    // Plain structs of strings and numbers always serialize.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
    out.push('\n');
}

fn status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Ignored(_) => "ignored",
        Outcome::Unmapped(_) => "unmapped",
        Outcome::Quarantined => "quarantined",
        Outcome::Failed(_) => "failed",
    }
}

/// Parses a `--at` value.
pub fn parse_at(text: &str) -> Result<Timestamp, CommandError> {
    Timestamp::parse_rfc3339(text).map_err(|e| CommandError::BadInput(format!("invalid --at {text:?}: {e}")))
}

/// Runs a simulation over `input` (one raw webhook body per line).
pub async fn run(request: &Request, input: impl BufRead) -> Result<Report, CommandError> {
    let name = source_arg::resolve(&request.source).map_err(CommandError::BadInput)?;
    let source = source::by_name(&name, &[])
        .ok_or_else(|| CommandError::BadInput(format!("unknown source {:?}", request.source)))?;
    let mut warnings = Vec::new();
    let lines = read_lines(source.as_ref(), input, &mut warnings)?;
    let mut report = replay(request, lines).await?;
    report.warnings = warnings;
    Ok(report)
}

/// Runs a simulation over normalized events, each applied at its `received_at` (what
/// `backfill --dry-run` shows); the timeline numbers them from 1 in the given order.
pub async fn run_events(request: &Request, events: Vec<Event>) -> Result<Report, CommandError> {
    let lines = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Line { number: i + 1, sent_at: Some(event.received_at), event, applied: None })
        .collect();
    replay(request, lines).await
}

async fn replay(request: &Request, mut lines: Vec<Line>) -> Result<Report, CommandError> {
    let mappings = parse_mappings(&request.mappings)?;
    let mut report = Report::default();

    let mut probes = request.at.clone();
    if probes.is_empty() {
        probes.extend(lines.iter().filter_map(|l| l.sent_at).max());
    }
    probes.sort();
    probes.dedup();

    let clock = Arc::new(ManualClock::new(Timestamp::epoch()));
    let lms = Arc::new(RecordingLms::default());
    let store = MemoryStore::default();
    let engine = Engine::new(store, Arc::clone(&lms) as Arc<dyn Lms>, Arc::clone(&clock) as Arc<dyn Clock>);
    for mapping in &mappings {
        engine.store.put_mapping(mapping, clock.now()).await?;
    }

    let mut probe_lines = Vec::new();
    for probe in &probes {
        for line in lines.iter_mut().filter(|l| l.applied.is_none() && l.sent_at.is_none_or(|t| t <= *probe)) {
            // Production applies a webhook when it arrives; time never runs backwards.
            clock.set(clock.now().max(line.sent_at.unwrap_or(clock.now())));
            let outcome = engine.apply(&line.event).await.map_err(|e| CommandError::Failed(e.into()))?;
            line.applied = Some((status(&outcome), lms.take_calls()));
        }
        clock.set(clock.now().max(*probe));
        engine.sweep().await.map_err(|e| CommandError::Failed(e.into()))?;
        lms.take_calls();
        probe_lines.extend(snapshot(&engine, &lms, *probe).await?);
    }

    if request.timeline {
        for line in &lines {
            let (status, calls) = line.applied.as_ref().map_or(("not_applied", &[][..]), |(s, c)| (*s, &c[..]));
            let actions = calls
                .iter()
                .map(|c| ActionOut { kind: c.kind, email: &c.email, course: c.course.as_ref().map(CourseId::as_str) })
                .collect();
            let entry = TimelineLine {
                line: line.number,
                event_id: line.event.id.as_str(),
                source_event: &line.event.source_event,
                change: line.event.change.kind(),
                status,
                actions,
            };
            json_line(&mut report.stdout, &entry);
        }
    }
    for line in &probe_lines {
        json_line(&mut report.stdout, line);
    }
    Ok(report)
}

/// Reads and normalizes every non-blank line; unusable ones are kept as quarantined events.
fn read_lines(source: &dyn Source, input: impl BufRead, warnings: &mut Vec<String>) -> Result<Vec<Line>, CommandError> {
    let mut lines = Vec::new();
    let mut last_sent: Option<Timestamp> = None;
    for (index, text) in input.lines().enumerate() {
        let number = index + 1;
        let text = text.map_err(|e| CommandError::BadInput(format!("cannot read line {number} of the input: {e}")))?;
        if text.trim().is_empty() {
            continue;
        }
        let body = text.as_bytes();
        let sent_at = source.sent_at(body);
        // A body without an envelope time arrives with the line before it.
        let received_at = sent_at.or(last_sent).unwrap_or_else(Timestamp::epoch);
        last_sent = sent_at.or(last_sent);
        let event = match source.normalize(body, received_at) {
            Ok(event) => event,
            Err(reason) => {
                warnings.push(format!("line {number}: quarantined: {reason}"));
                source.quarantine(body, &reason, received_at)
            }
        };
        lines.push(Line { number, sent_at: sent_at.or(last_sent), event, applied: None });
    }
    Ok(lines)
}

/// What the system shows at `at`: one line per enrollment, sorted by email then course.
async fn snapshot(
    engine: &Engine<MemoryStore>,
    lms: &RecordingLms,
    at: Timestamp,
) -> Result<Vec<ProbeLine>, CommandError> {
    let mut rows = Vec::new();
    for doc in engine.store.all_enrollments().await {
        let email = engine.store.student(&doc.student_key).await?.and_then(|s| s.email).unwrap_or_default();
        let course = doc.course_id.clone();
        let active = doc.access == lms_bridge_shared::Access::Active;
        rows.push((email, course, active, doc.access_until));
    }
    rows.sort();
    Ok(rows
        .into_iter()
        .map(|(email, course, active, until)| ProbeLine {
            at,
            lms: if lms.is_enrolled(&email, &course) { "enrolled" } else { "not_enrolled" },
            email,
            course,
            access: if active { "active" } else { "inactive" },
            until: if active { until } else { None },
        })
        .collect())
}
