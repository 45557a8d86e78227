//! The admin console (`lms-bridge admin`): server-rendered pages over the state, its own Cloud
//! Run service behind Identity-Aware Proxy (docs/admin-console.md).
//!
//! It never calls the LMS or Hotmart. It acts by publishing admin events to the events topic
//! (grants and revocations by hand, retries, replays: the backend applies them with the same
//! engine and rules as any webhook) and by writing mappings; every action is recorded in
//! `audit` with who and when. Rooms: `gate` (who asks, roles, CSRF), `iap` (the signed
//! header), `views` (the pages).

pub mod gate;
pub mod iap;
pub mod views;

use crate::cli::AdminArgs;
use crate::clock::{Clock, SystemClock};
use crate::publish::EventPublisher;
use crate::settings::{AdminGate, AdminSettings};
use crate::store::docs::{AuditDoc, EventDoc, EventStatus, JobDoc, JobKind};
use crate::store::{FirestoreStore, StateStore, StoreError};
use anyhow::Context;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gate::{Gate, Refusal, Who};
use lms_bridge_shared::admin::{HandAction, HandChange};
use lms_bridge_shared::event::Student;
use lms_bridge_shared::{
    AccessPolicy, AdminNote, ChargebackPolicy, CourseId, DisputePolicy, Email, Event, Pepper, ProductId,
    ProductMapping, SourceName, StudentKey, Timestamp,
};
use maud::Markup;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use views::{Errors, Frame, GrantForm, MappingForm};

/// The console's state.
pub struct Console {
    store: FirestoreStore,
    publisher: EventPublisher,
    pepper: Option<Pepper>,
    gate: Gate,
    clock: Arc<dyn Clock>,
}

/// The most rows the overview counts of a kind before it says "N+".
const COUNT_CAP: usize = 500;
/// The longest reason an operator may give.
const MAX_REASON: usize = 500;

/// What a handler answers: a page, or a redirect after an action.
enum Answer {
    Page(StatusCode, Markup),
    SeeOther(String),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Page(status, markup) => (status, markup).into_response(),
            Answer::SeeOther(to) => Redirect::to(&to).into_response(),
        }
    }
}

/// A refused request, as its page.
struct Refused(Refusal);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match self.0 {
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::NotListed | Refusal::ViewerCannotAct | Refusal::Csrf => StatusCode::FORBIDDEN,
        };
        (status, views::refusal(&self.0)).into_response()
    }
}

/// The person behind a request, checked by the gate before any handler runs.
struct Visitor(Who);

impl FromRequestParts<Arc<Console>> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, Self::Rejection> {
        console.gate.who(&parts.headers).await.map(Visitor).map_err(|r| Refused(r).into_response())
    }
}

/// `?done=`: which message to show after an action (a code, never text from the URL).
#[derive(Deserialize, Default)]
struct Done {
    done: Option<String>,
}

fn flash(done: &Done) -> Option<String> {
    let text = match done.done.as_deref()? {
        "grant" => "Grant sent: the backend applies it and the LMS enrolls the student within seconds.",
        "block" => "Revocation sent: the backend applies it and the LMS unenrolls the student within seconds.",
        "retry" => "Retry sent: the backend runs the failed actions again within seconds.",
        "replay" => "Replay sent: the backend applies the event within seconds.",
        "mapping" => "Mapping saved; the events that waited for it were sent to the backend.",
        _ => return None,
    };
    Some(text.to_owned())
}

impl Console {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn frame<'a>(&self, who: &'a Who, csrf: &'a str, done: &Done) -> Frame<'a> {
        Frame { who, csrf, flash: flash(done) }
    }

    fn csrf(&self, who: &Who) -> String {
        self.gate.csrf_token(who, self.now().unix_millis())
    }

    fn failure(&self, who: &Who, error: impl std::fmt::Display) -> Answer {
        // The reason is logged without the visitor's identity; the page tells them.
        tracing::warn!(error = %error, "admin console: a request failed");
        let csrf = self.csrf(who);
        let frame = self.frame(who, &csrf, &Done::default());
        Answer::Page(StatusCode::SERVICE_UNAVAILABLE, views::failure(&frame, &error.to_string()))
    }

    fn key_of(&self, email: &Email) -> StudentKey {
        email.student_key_with(self.pepper.as_ref())
    }

    async fn audit(
        &self,
        who: &Who,
        action: &str,
        student: Option<&StudentKey>,
        detail: String,
    ) -> Result<(), StoreError> {
        self.store
            .put_audit(&AuditDoc {
                id: random_id(),
                at: self.now(),
                by: who.email.clone(),
                action: action.to_owned(),
                student_key: student.cloned(),
                detail,
            })
            .await
    }

    async fn publish(&self, events: &[Event]) -> Result<(), String> {
        self.publisher.publish(events).await.map_err(|e| format!("cannot publish to the events topic: {e}"))
    }
}

fn random_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Security headers on every answer: no script at all, styles from the console only, never
/// framed, never cached (pages show personal data).
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/static/admin.css", get(css))
        .route("/", get(overview))
        .route("/attention", get(attention))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/audit", get(audit))
        .route("/mappings", get(mappings).post(save_mapping))
        .route("/mappings/edit", get(edit_mapping))
        .route("/students/search", post(search))
        .route("/students/grant", post(grant))
        .route("/students/{key}", get(student))
        .route("/students/{key}/block", post(block))
        .route("/students/{key}/retry", post(retry))
        .route("/events/replay", post(replay))
        .fallback(|| async { (StatusCode::NOT_FOUND, views::refusal_text("No such page.")) })
        .layer(axum::middleware::map_response(harden))
        .with_state(console)
}

async fn css() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], views::CSS).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

async fn overview(State(c): State<Arc<Console>>, Visitor(who): Visitor, Query(done): Query<Done>) -> Answer {
    match overview_data(&c).await {
        Ok(data) => {
            let csrf = c.csrf(&who);
            Answer::Page(StatusCode::OK, views::overview(&c.frame(&who, &csrf, &done), &data))
        }
        Err(e) => c.failure(&who, e),
    }
}

fn days_ago(now: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_unix_millis(now.unix_millis() - days * 86_400_000).unwrap_or(now)
}

/// The product an unmapped event waits for: (source, product id, name).
fn waiting_product(doc: &EventDoc) -> Option<(String, String, Option<String>)> {
    let event = Event::from_json(doc.event_json.as_deref()?.as_bytes()).ok()?;
    let product = event.product?;
    Some((event.source.to_string(), product.id.to_string(), product.name))
}

async fn recent_jobs(store: &FirestoreStore, limit: u32) -> Result<Vec<JobDoc>, StoreError> {
    let mut jobs = Vec::new();
    for kind in [JobKind::Backfill, JobKind::Reconcile, JobKind::Drift] {
        jobs.extend(store.recent_jobs(kind, limit).await?);
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.started_at));
    Ok(jobs)
}

async fn overview_data(c: &Console) -> Result<views::Overview, StoreError> {
    let now = c.now();
    let store = &c.store;
    let unmapped = store.events_with_status(EventStatus::Unmapped).await?;
    let mut products: BTreeMap<(String, String), (Option<String>, usize)> = BTreeMap::new();
    for (source, product, name) in unmapped.iter().filter_map(waiting_product) {
        let entry = products.entry((source, product)).or_insert((None, 0));
        entry.0 = entry.0.take().or(name);
        entry.1 += 1;
    }
    Ok(views::Overview {
        day: store.event_counts_since(days_ago(now, 1)).await?,
        week: store.event_counts_since(days_ago(now, 7)).await?,
        pending: store.stale_pending(now, None, COUNT_CAP as u32).await?.len(),
        failed_actions: store.enrollments_with_failed(now, COUNT_CAP as u32).await?.len(),
        cap: COUNT_CAP,
        quarantined: store.events_with_status(EventStatus::Quarantined).await?.len(),
        unmapped: unmapped.len(),
        failed_events: store.events_with_status(EventStatus::Failed).await?.len(),
        unmapped_products: products.into_iter().map(|((s, p), (name, n))| (s, p, name, n)).collect(),
        jobs: recent_jobs(store, 3).await?,
        last_sweep: store.job(crate::engine::SWEEP_JOB_ID).await?,
        audit: store.recent_audit(10).await?,
    })
}

async fn attention(State(c): State<Arc<Console>>, Visitor(who): Visitor, Query(done): Query<Done>) -> Answer {
    let now = c.now();
    let data = async {
        Ok::<_, StoreError>(views::Attention {
            failed_actions: c.store.enrollments_with_failed(now, COUNT_CAP as u32).await?,
            pending: c.store.stale_pending(now, None, COUNT_CAP as u32).await?,
            quarantined: c.store.events_with_status(EventStatus::Quarantined).await?,
            unmapped: c.store.events_with_status(EventStatus::Unmapped).await?,
            failed_events: c.store.events_with_status(EventStatus::Failed).await?,
        })
    };
    match data.await {
        Ok(data) => {
            let csrf = c.csrf(&who);
            Answer::Page(StatusCode::OK, views::attention(&c.frame(&who, &csrf, &done), &data))
        }
        Err(e) => c.failure(&who, e),
    }
}

async fn jobs(State(c): State<Arc<Console>>, Visitor(who): Visitor) -> Answer {
    match recent_jobs(&c.store, 20).await {
        Ok(jobs) => {
            let csrf = c.csrf(&who);
            Answer::Page(StatusCode::OK, views::jobs(&c.frame(&who, &csrf, &Done::default()), &jobs))
        }
        Err(e) => c.failure(&who, e),
    }
}

async fn job(State(c): State<Arc<Console>>, Visitor(who): Visitor, Path(id): Path<String>) -> Answer {
    let csrf = c.csrf(&who);
    let frame = c.frame(&who, &csrf, &Done::default());
    match c.store.job(&id).await {
        Ok(Some(job)) => Answer::Page(StatusCode::OK, views::job(&frame, &job)),
        Ok(None) => Answer::Page(StatusCode::NOT_FOUND, views::failure(&frame, "No such job.")),
        Err(e) => c.failure(&who, e),
    }
}

async fn audit(State(c): State<Arc<Console>>, Visitor(who): Visitor) -> Answer {
    match c.store.recent_audit(200).await {
        Ok(audit) => {
            let csrf = c.csrf(&who);
            Answer::Page(StatusCode::OK, views::audit(&c.frame(&who, &csrf, &Done::default()), &audit))
        }
        Err(e) => c.failure(&who, e),
    }
}

/// A posted form: its CSRF token.
trait Posted {
    fn csrf(&self) -> &str;
}

/// Whom a form is for: anyone signed in (the search), or operators only (every action).
#[derive(Clone, Copy, PartialEq, Eq)]
enum For {
    Anyone,
    Operators,
}

/// A posted form, read and let through the gate; else what to answer instead (a page saying
/// the body could not be read, or the refusal).
fn posted<T: Posted>(
    c: &Console,
    who: &Who,
    headers: &HeaderMap,
    body: Result<Form<T>, FormRejection>,
    whom: For,
) -> Result<T, Result<Answer, Refused>> {
    let input = body.map(|Form(t)| t).map_err(|e| {
        let csrf = c.csrf(who);
        let frame = c.frame(who, &csrf, &Done::default());
        Ok(Answer::Page(StatusCode::BAD_REQUEST, views::failure(&frame, &format!("The form could not be read: {e}"))))
    })?;
    let now = c.now().unix_millis();
    let checked = match whom {
        For::Anyone => c.gate.check_token(who, input.csrf(), headers, now),
        For::Operators => c.gate.check_form(who, input.csrf(), headers, now),
    };
    checked.map_err(|r| Err(Refused(r)))?;
    Ok(input)
}

#[derive(Deserialize)]
struct SearchForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    csrf: String,
}

impl Posted for SearchForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Searches post the email (never in a URL: URLs reach request logs) and land on the key.
async fn search(
    State(c): State<Arc<Console>>,
    Visitor(who): Visitor,
    headers: HeaderMap,
    body: Result<Form<SearchForm>, FormRejection>,
) -> Result<Answer, Refused> {
    let input = match posted(&c, &who, &headers, body, For::Anyone) {
        Ok(input) => input,
        Err(answer) => return answer,
    };
    let csrf = c.csrf(&who);
    let frame = c.frame(&who, &csrf, &Done::default());
    let Ok(email) = Email::parse(&input.email) else {
        let page =
            views::failure(&frame, "That is not an email address: type the student's email, e.g. ana@example.com.");
        return Ok(Answer::Page(StatusCode::BAD_REQUEST, page));
    };
    let key = c.key_of(&email);
    let known = async {
        Ok::<_, StoreError>(c.store.student(&key).await?.is_some() || !c.store.enrollments_of(&key).await?.is_empty())
    };
    match known.await {
        Ok(true) => Ok(Answer::SeeOther(format!("/students/{key}"))),
        Ok(false) => {
            let form = GrantForm { request: random_id(), ..GrantForm::default() };
            Ok(Answer::Page(StatusCode::NOT_FOUND, views::no_student(&frame, email.as_str(), &form)))
        }
        Err(e) => Ok(c.failure(&who, e)),
    }
}

async fn student_view(c: &Console, key: &StudentKey) -> Result<views::StudentView, StoreError> {
    Ok(views::StudentView {
        key: key.clone(),
        student: c.store.student(key).await?,
        enrollments: c.store.enrollments_of(key).await?,
        events: c.store.events_of(key, 200).await?,
        audit: c.store.audit_of(key).await?,
        now: c.now(),
    })
}

async fn student(
    State(c): State<Arc<Console>>,
    Visitor(who): Visitor,
    Path(key): Path<String>,
    Query(done): Query<Done>,
) -> Answer {
    let csrf = c.csrf(&who);
    let frame = c.frame(&who, &csrf, &done);
    let Ok(key) = StudentKey::parse(&key) else {
        return Answer::Page(StatusCode::NOT_FOUND, views::failure(&frame, "That is not a student key."));
    };
    match student_view(&c, &key).await {
        Ok(view) if view.student.is_none() && view.enrollments.is_empty() => {
            Answer::Page(StatusCode::NOT_FOUND, views::failure(&frame, "The bridge knows no student with that key."))
        }
        Ok(view) => {
            let form = GrantForm { request: random_id(), ..GrantForm::default() };
            Answer::Page(StatusCode::OK, views::student(&frame, &view, &form))
        }
        Err(e) => c.failure(&who, e),
    }
}

#[derive(Deserialize)]
struct GrantInput {
    #[serde(default)]
    email: String,
    #[serde(default)]
    course: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    request: String,
    #[serde(default)]
    csrf: String,
}

impl Posted for GrantInput {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A course id as an operator types it: what LMSs use as ids.
fn course_field(text: &str, errors: &mut Errors) -> Option<CourseId> {
    let text = text.trim();
    let plain = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match plain.then(|| CourseId::parse(text).ok()).flatten() {
        Some(course) => Some(course),
        None => {
            errors.insert("course", "Enter the LMS's course id: letters, digits, '-' or '_' (e.g. 201).".to_owned());
            None
        }
    }
}

fn reason_field(text: &str, errors: &mut Errors) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        errors.insert("reason", "Say why: it is kept on the student's timeline.".to_owned());
        None
    } else if text.chars().count() > MAX_REASON || text.chars().any(char::is_control) {
        errors.insert("reason", format!("Keep the reason to one line of at most {MAX_REASON} characters."));
        None
    } else {
        Some(text.to_owned())
    }
}

/// `YYYY-MM-DD`: access runs to the end of that day (UTC), which must be after `now`.
fn until_field(text: &str, now: Timestamp, errors: &mut Errors) -> Option<Option<Timestamp>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    match Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z")) {
        Ok(day) if day.plus_days(1) > now => Some(Some(day.plus_days(1))),
        Ok(_) => {
            errors.insert("until", "Pick a day from today on: access would end before it starts.".to_owned());
            None
        }
        Err(_) => {
            errors.insert("until", "Pick a day (YYYY-MM-DD), or leave it empty for no end.".to_owned());
            None
        }
    }
}

fn request_id(text: &str) -> String {
    let text = text.trim();
    if !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        text.to_owned()
    } else {
        random_id()
    }
}

async fn grant(
    State(c): State<Arc<Console>>,
    Visitor(who): Visitor,
    headers: HeaderMap,
    body: Result<Form<GrantInput>, FormRejection>,
) -> Result<Answer, Refused> {
    let input = match posted(&c, &who, &headers, body, For::Operators) {
        Ok(input) => input,
        Err(answer) => return answer,
    };
    let now = c.now();
    let csrf = c.csrf(&who);
    let frame = c.frame(&who, &csrf, &Done::default());
    let Ok(email) = Email::parse(&input.email) else {
        return Ok(Answer::Page(
            StatusCode::BAD_REQUEST,
            views::failure(&frame, "The form names no valid student email."),
        ));
    };
    let mut errors = Errors::new();
    let course = course_field(&input.course, &mut errors);
    let until = until_field(&input.until, now, &mut errors);
    let reason = reason_field(&input.reason, &mut errors);
    let key = c.key_of(&email);
    let (Some(course), Some(until), Some(reason)) = (course, until, reason) else {
        let form = GrantForm {
            course: input.course,
            until: input.until,
            reason: input.reason,
            request: request_id(&input.request),
            errors,
        };
        return Ok(match student_view(&c, &key).await {
            Ok(view) if view.student.is_some() => {
                Answer::Page(StatusCode::UNPROCESSABLE_ENTITY, views::student(&frame, &view, &form))
            }
            Ok(_) => Answer::Page(StatusCode::UNPROCESSABLE_ENTITY, views::no_student(&frame, email.as_str(), &form)),
            Err(e) => c.failure(&who, e),
        });
    };
    let known = c.store.student(&key).await;
    let mut student = Student::new(email);
    if let Ok(Some(doc)) = &known {
        student.name = doc.name.clone();
        student.first_name = doc.first_name.clone();
        student.last_name = doc.last_name.clone();
    }
    let detail = match until {
        Some(end) => format!("course {course} until {end} ({reason})"),
        None => format!("course {course}, no end ({reason})"),
    };
    let action = HandAction {
        id: request_id(&input.request),
        student,
        course,
        note: AdminNote { by: who.email.clone(), reason },
        at: now,
        change: HandChange::Grant { until },
    };
    Ok(act(&c, &who, &key, action, "grant", detail).await)
}

/// Publishes a request by hand and records it; then back to the student.
async fn act(c: &Console, who: &Who, key: &StudentKey, action: HandAction, name: &str, detail: String) -> Answer {
    let event = match action.event(c.pepper.as_ref()) {
        Ok(event) => event,
        Err(e) => return c.failure(who, format!("cannot make the admin event: {e}")),
    };
    if let Err(e) = c.publish(std::slice::from_ref(&event)).await {
        return c.failure(who, e);
    }
    if let Err(e) = c.audit(who, name, Some(key), format!("{detail}; event {}", event.id)).await {
        return c.failure(who, format!("the {name} was sent, but recording it in the audit failed: {e}"));
    }
    Answer::SeeOther(format!("/students/{key}?done={name}"))
}

#[derive(Deserialize)]
struct CourseInput {
    #[serde(default)]
    course: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

impl Posted for CourseInput {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn by_hand(
    c: Arc<Console>,
    who: Who,
    headers: HeaderMap,
    key: String,
    body: Result<Form<CourseInput>, FormRejection>,
    change: HandChange,
) -> Result<Answer, Refused> {
    let input = match posted(&c, &who, &headers, body, For::Operators) {
        Ok(input) => input,
        Err(answer) => return answer,
    };
    let now = c.now();
    let csrf = c.csrf(&who);
    let frame = c.frame(&who, &csrf, &Done::default());
    let name = if change == HandChange::Block { "block" } else { "retry" };
    let mut errors = Errors::new();
    let course = course_field(&input.course, &mut errors);
    let reason = match change {
        HandChange::Block => reason_field(&input.reason, &mut errors),
        _ => Some("retry the failed LMS actions".to_owned()),
    };
    let (Some(course), Some(reason)) = (course, reason) else {
        let message = errors.values().cloned().collect::<Vec<_>>().join(" ");
        return Ok(Answer::Page(StatusCode::UNPROCESSABLE_ENTITY, views::failure(&frame, &message)));
    };
    let Ok(key) = StudentKey::parse(&key) else {
        return Ok(Answer::Page(StatusCode::NOT_FOUND, views::failure(&frame, "That is not a student key.")));
    };
    let email = match c.store.student(&key).await {
        Ok(doc) => doc.and_then(|d| d.email).and_then(|e| Email::parse(e).ok()),
        Err(e) => return Ok(c.failure(&who, e)),
    };
    let Some(email) = email else {
        return Ok(Answer::Page(
            StatusCode::NOT_FOUND,
            views::failure(&frame, "The bridge has no email for this student."),
        ));
    };
    let detail = format!("course {course} ({reason})");
    let action = HandAction {
        id: random_id(),
        student: Student::new(email),
        course,
        note: AdminNote { by: who.email.clone(), reason },
        at: now,
        change,
    };
    Ok(act(&c, &who, &key, action, name, detail).await)
}

async fn block(
    State(c): State<Arc<Console>>,
    Visitor(who): Visitor,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Form<CourseInput>, FormRejection>,
) -> Result<Answer, Refused> {
    by_hand(c, who, headers, key, body, HandChange::Block).await
}

async fn retry(
    State(c): State<Arc<Console>>,
    Visitor(who): Visitor,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Form<CourseInput>, FormRejection>,
) -> Result<Answer, Refused> {
    by_hand(c, who, headers, key, body, HandChange::Retry).await
}

#[derive(Deserialize)]
struct ReplayInput {
    #[serde(default)]
    id: String,
    #[serde(default)]
    csrf: String,
}

impl Posted for ReplayInput {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn replay(
    State(c): State<Arc<Console>>,
    Visitor(who): Visitor,
    headers: HeaderMap,
    body: Result<Form<ReplayInput>, FormRejection>,
) -> Result<Answer, Refused> {
    let input = match posted(&c, &who, &headers, body, For::Operators) {
        Ok(input) => input,
        Err(answer) => return answer,
    };
    let csrf = c.csrf(&who);
    let frame = c.frame(&who, &csrf, &Done::default());
    let refuse = |status, text: String| Ok(Answer::Page(status, views::failure(&frame, &text)));
    let mut doc = match c.store.event(input.id.trim()).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "No such event.".to_owned()),
        Err(e) => return Ok(c.failure(&who, e)),
    };
    let kept = doc.event_json.as_deref().and_then(|j| Event::from_json(j.as_bytes()).ok());
    let Some(kept) = kept else {
        return refuse(StatusCode::CONFLICT, "This event was not kept whole: nothing to replay.".to_owned());
    };
    let event = match doc.status {
        EventStatus::Unmapped => {
            let product = kept.product.as_ref().map(|p| p.id.to_string()).unwrap_or_default();
            match c.store.mapping(kept.source.as_str(), &product).await {
                Ok(Some(_)) => kept,
                Ok(None) => {
                    return refuse(
                        StatusCode::CONFLICT,
                        format!("Product {product} still has no mapping: map it first (Mappings)."),
                    )
                }
                Err(e) => return Ok(c.failure(&who, e)),
            }
        }
        EventStatus::Quarantined => {
            use base64::Engine as _;
            let raw = kept.raw.as_deref().and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok());
            let source = lms_bridge_shared::source::by_name(kept.source.as_str(), &[]);
            let (Some(raw), Some(source)) = (raw, source) else {
                return refuse(
                    StatusCode::CONFLICT,
                    "No raw body kept, or an unknown source: nothing to replay.".to_owned(),
                );
            };
            match source.normalize(&raw, kept.received_at) {
                Ok(mut event) => {
                    event.key_student(c.pepper.as_ref());
                    event
                }
                Err(e) => {
                    return refuse(StatusCode::UNPROCESSABLE_ENTITY, format!("This webhook still cannot be read: {e}"))
                }
            }
        }
        _ => return refuse(StatusCode::CONFLICT, "This event is not waiting for a replay.".to_owned()),
    };
    if let Err(e) = c.publish(std::slice::from_ref(&event)).await {
        return Ok(c.failure(&who, e));
    }
    if doc.status == EventStatus::Quarantined {
        doc.status = EventStatus::Ignored;
        doc.reason = Some(format!("replayed as {}", event.id));
        if let Err(e) = c.store.put_event(&doc).await {
            return Ok(c.failure(&who, e));
        }
    }
    let detail = format!("event {} published again as {}", doc.id, event.id);
    if let Err(e) = c.audit(&who, "replay", event.student_key(), detail).await {
        return Ok(c.failure(&who, e));
    }
    Ok(Answer::SeeOther("/attention?done=replay".to_owned()))
}

async fn mappings(State(c): State<Arc<Console>>, Visitor(who): Visitor, Query(done): Query<Done>) -> Answer {
    match c.store.list_mappings().await {
        Ok(list) => {
            let csrf = c.csrf(&who);
            Answer::Page(StatusCode::OK, views::mappings(&c.frame(&who, &csrf, &done), &list))
        }
        Err(e) => c.failure(&who, e),
    }
}

#[derive(Deserialize)]
struct MappingQuery {
    source: Option<String>,
    product: Option<String>,
}

fn form_of(m: &ProductMapping) -> MappingForm {
    let join = |courses: &[CourseId]| courses.iter().map(CourseId::as_str).collect::<Vec<_>>().join(", ");
    let (policy, days, grace) = match m.policy {
        AccessPolicy::Lifetime => ("lifetime", String::new(), String::new()),
        AccessPolicy::FixedDays { days } => ("fixed_days", days.to_string(), String::new()),
        AccessPolicy::Subscription { grace_days } => ("subscription", String::new(), grace_days.to_string()),
    };
    MappingForm {
        source: m.source.to_string(),
        product_id: m.product_id.to_string(),
        courses: join(&m.courses),
        policy: policy.to_owned(),
        days,
        grace_days: grace,
        dispute: if m.dispute == DisputePolicy::Suspend { "suspend" } else { "keep" }.to_owned(),
        chargeback: if m.chargeback == ChargebackPolicy::RevokeCharge { "revoke_charge" } else { "revoke_grant" }
            .to_owned(),
        plans: m.plans.iter().map(|(p, c)| format!("{p} = {}", join(c))).collect::<Vec<_>>().join("\n"),
        csrf: String::new(),
    }
}

async fn waiting_for(c: &Console, source: &str, product: &str) -> Result<Vec<Event>, StoreError> {
    let docs = c.store.events_with_status(EventStatus::Unmapped).await?;
    let mut events: Vec<Event> = docs
        .iter()
        .filter_map(|d| Event::from_json(d.event_json.as_deref()?.as_bytes()).ok())
        .filter(|e| e.source.as_str() == source && e.product.as_ref().is_some_and(|p| p.id.as_str() == product))
        .collect();
    events.sort_by_key(|e| e.received_at);
    Ok(events)
}

async fn edit_mapping(State(c): State<Arc<Console>>, Visitor(who): Visitor, Query(q): Query<MappingQuery>) -> Answer {
    let source = q.source.unwrap_or_else(|| "hotmart".to_owned());
    let product = q.product.unwrap_or_default();
    let current = if product.is_empty() { Ok(None) } else { c.store.mapping(&source, &product).await };
    let form = match current {
        Ok(Some(m)) => form_of(&m),
        Ok(None) => MappingForm {
            source: source.clone(),
            product_id: product.clone(),
            policy: "lifetime".into(),
            ..MappingForm::default()
        },
        Err(e) => return c.failure(&who, e),
    };
    let waiting = match waiting_for(&c, &source, &product).await {
        Ok(events) => events.len(),
        Err(e) => return c.failure(&who, e),
    };
    let csrf = c.csrf(&who);
    Answer::Page(
        StatusCode::OK,
        views::mapping_form(&c.frame(&who, &csrf, &Done::default()), &form, &Errors::new(), waiting),
    )
}

fn courses_of(text: &str) -> Result<Vec<CourseId>, String> {
    let mut courses = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut errors = Errors::new();
        courses.push(
            course_field(item, &mut errors)
                .ok_or_else(|| format!("'{item}' is not a course id (letters, digits, '-' or '_').",))?,
        );
    }
    Ok(courses)
}

fn number(text: &str, min: u32, field: &'static str, what: &str, errors: &mut Errors) -> Option<u32> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= min && n <= 36_500 => Some(n),
        _ => {
            errors.insert(field, format!("Enter {what}: a whole number from {min} to 36500."));
            None
        }
    }
}

/// Checks every field of the mapping form; the mapping, or the errors next to their fields.
fn parse_mapping(form: &MappingForm) -> Result<ProductMapping, Errors> {
    let mut errors = Errors::new();
    let source = match SourceName::parse(form.source.trim()) {
        Ok(s) if lms_bridge_shared::source::by_name(s.as_str(), &[]).is_some() => Some(s),
        _ => {
            errors.insert(
                "source",
                "Enter a payment platform the bridge reads: hotmart, or std-NAME for a Standard Webhooks sender."
                    .to_owned(),
            );
            None
        }
    };
    let product = ProductId::parse(form.product_id.trim()).ok().filter(|p| p.as_str().len() <= 128);
    if product.is_none() {
        errors.insert("product_id", "Enter the platform's product id (e.g. 4774438).".to_owned());
    }
    let courses = match courses_of(&form.courses) {
        Ok(c) if c.is_empty() => {
            errors.insert("courses", "Enter at least one LMS course id.".to_owned());
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            errors.insert("courses", e);
            None
        }
    };
    let policy = match form.policy.as_str() {
        "lifetime" => Some(AccessPolicy::Lifetime),
        "fixed_days" => number(&form.days, 1, "days", "the number of days", &mut errors)
            .map(|days| AccessPolicy::FixedDays { days }),
        "subscription" => number(&form.grace_days, 0, "grace_days", "the grace days", &mut errors)
            .map(|grace_days| AccessPolicy::Subscription { grace_days }),
        _ => {
            errors.insert("policy", "Choose how long access lasts.".to_owned());
            None
        }
    };
    let dispute = match form.dispute.as_str() {
        "keep" | "" => Some(DisputePolicy::Keep),
        "suspend" => Some(DisputePolicy::Suspend),
        _ => {
            errors.insert("dispute", "Choose what a dispute does.".to_owned());
            None
        }
    };
    let chargeback = match form.chargeback.as_str() {
        "revoke_grant" | "" => Some(ChargebackPolicy::RevokeGrant),
        "revoke_charge" => Some(ChargebackPolicy::RevokeCharge),
        _ => {
            errors.insert("chargeback", "Choose what a chargeback does.".to_owned());
            None
        }
    };
    let mut plans = BTreeMap::new();
    for (n, line) in form.plans.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty()) {
        let parsed = line.split_once('=').and_then(|(plan, courses)| {
            let plan = plan.trim();
            let valid = !plan.is_empty() && plan.len() <= 64 && !plan.chars().any(char::is_control);
            Some((plan.to_owned(), courses_of(courses).ok().filter(|c| !c.is_empty())?)).filter(|_| valid)
        });
        match parsed {
            Some((plan, courses)) => {
                plans.insert(plan, courses);
            }
            None => {
                errors.insert("plans", format!("Line {} is not 'plan = course, course'.", n + 1));
            }
        }
    }
    match (source, product, courses, policy, dispute, chargeback) {
        (Some(source), Some(product_id), Some(courses), Some(policy), Some(dispute), Some(chargeback))
            if errors.is_empty() =>
        {
            Ok(ProductMapping { source, product_id, courses, policy, dispute, chargeback, plans })
        }
        _ => Err(errors),
    }
}

async fn save_mapping(
    State(c): State<Arc<Console>>,
    Visitor(who): Visitor,
    headers: HeaderMap,
    body: Result<Form<MappingForm>, FormRejection>,
) -> Result<Answer, Refused> {
    let input = match posted(&c, &who, &headers, body, For::Operators) {
        Ok(input) => input,
        Err(answer) => return answer,
    };
    let now = c.now();
    let csrf = c.csrf(&who);
    let frame = c.frame(&who, &csrf, &Done::default());
    let mapping = match parse_mapping(&input) {
        Ok(mapping) => mapping,
        Err(errors) => {
            return Ok(Answer::Page(StatusCode::UNPROCESSABLE_ENTITY, views::mapping_form(&frame, &input, &errors, 0)));
        }
    };
    if let Err(e) = c.store.put_mapping(&mapping, now).await {
        return Ok(c.failure(&who, e));
    }
    let waiting = match waiting_for(&c, mapping.source.as_str(), mapping.product_id.as_str()).await {
        Ok(events) => events,
        Err(e) => {
            return Ok(c.failure(&who, format!("the mapping was saved, but its waiting events could not be read: {e}")))
        }
    };
    if !waiting.is_empty() {
        if let Err(e) = c.publish(&waiting).await {
            return Ok(c.failure(&who, format!("the mapping was saved, but its waiting events were not sent ({e}): replay them from Needs attention")));
        }
    }
    let detail = format!(
        "{} product {}: courses {}, {:?}; {} waiting event(s) sent",
        mapping.source,
        mapping.product_id,
        input.courses.trim(),
        mapping.policy,
        waiting.len()
    );
    if let Err(e) = c.audit(&who, "mapping", None, detail).await {
        return Ok(c.failure(&who, e));
    }
    Ok(Answer::SeeOther("/mappings?done=mapping".to_owned()))
}

/// `lms-bridge admin`: validates the settings, then serves until SIGTERM or Ctrl-C.
pub async fn serve(args: AdminArgs) -> anyhow::Result<()> {
    let settings = AdminSettings::from_args(&args)?;
    if matches!(settings.gate, AdminGate::Open) {
        tracing::warn!("ADMIN_AUTH=none: the console asks nobody who they are and lets everyone act; local runs only");
    }
    if settings.csrf_key.is_none() {
        tracing::warn!(
            "ADMIN_CSRF_KEY is not set: a random key for this process; forms posted to another instance are refused"
        );
    }
    let publish = &settings.publish;
    let publisher = EventPublisher::connect(
        &settings.project,
        &publish.topic,
        publish.emulator_host.as_deref(),
        publish.per_second,
    )
    .await?;
    let store = FirestoreStore::connect(&settings.project)
        .await
        .with_context(|| format!("connecting to Firestore for project {}", settings.project))?;
    let gate = Gate::new(&settings.gate, settings.csrf_key.as_ref().map(|k| k.expose()));
    let console =
        Arc::new(Console { store, publisher, pepper: settings.pepper.clone(), gate, clock: Arc::new(SystemClock) });
    let listener = tokio::net::TcpListener::bind((settings.listen.as_str(), settings.port))
        .await
        .with_context(|| format!("listening on {}:{}", settings.listen, settings.port))?;
    tracing::info!(port = settings.port, open = console.gate.is_open(), "lms-bridge admin console serving");
    axum::serve(listener, router(console))
        .with_graceful_shutdown(crate::service::shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping_form(policy: &str) -> MappingForm {
        MappingForm {
            source: "hotmart".into(),
            product_id: "9101".into(),
            courses: "201, 202".into(),
            policy: policy.into(),
            days: "30".into(),
            grace_days: "3".into(),
            dispute: "suspend".into(),
            chargeback: "revoke_charge".into(),
            plans: "124 = 203, 204\n".into(),
            csrf: String::new(),
        }
    }

    #[test]
    fn a_mapping_form_reads_into_the_mapping_and_back() {
        let m = parse_mapping(&mapping_form("subscription")).unwrap();
        assert_eq!(m.policy, AccessPolicy::Subscription { grace_days: 3 });
        assert_eq!(m.courses_for(Some("124")).len(), 2);
        assert_eq!(parse_mapping(&form_of(&m)).unwrap(), m);
        assert_eq!(parse_mapping(&mapping_form("fixed_days")).unwrap().policy, AccessPolicy::FixedDays { days: 30 });
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        let mut form = mapping_form("fixed_days");
        form.source = "paypal".into();
        form.courses = "201, two hundred".into();
        form.days = "0".into();
        form.plans = "124 203".into();
        let errors = parse_mapping(&form).unwrap_err();
        assert_eq!(errors.keys().copied().collect::<Vec<_>>(), ["courses", "days", "plans", "source"]);
        let mut errors = Errors::new();
        let now = Timestamp::parse_rfc3339("2026-11-25T10:00:00Z").unwrap();
        assert_eq!(until_field("2026-11-24", now, &mut errors), None);
        assert_eq!(until_field("", now, &mut errors), Some(None));
        assert_eq!(
            until_field("2026-11-25", now, &mut errors),
            Some(Some(Timestamp::parse_rfc3339("2026-11-26T00:00:00Z").unwrap()))
        );
        assert_eq!(until_field("25/11/2026", now, &mut errors), None);
        assert!(reason_field("  ", &mut errors).is_none() && errors.contains_key("reason"));
    }
}
