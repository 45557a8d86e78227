//! The console's pages, rendered on the server (maud escapes every value). No script: a page
//! that shows a running job reloads itself with a meta refresh.

use super::gate::{Refusal, Role, Who};
use crate::store::docs::{AuditDoc, EnrollmentDoc, EventDoc, JobDoc, JobStatus, PendingAction, StudentDoc};
use lms_bridge_shared::rules::{ChargeFacts, Grant};
use lms_bridge_shared::{
    explain, Access, AccessPolicy, ChargebackPolicy, DisputePolicy, LmsAction, ProductMapping, Timestamp,
};
use maud::{html, Markup, DOCTYPE};
use std::collections::BTreeMap;

/// What every page needs: who is looking, their form token, and a message to show once.
pub struct Frame<'a> {
    /// The person.
    pub who: &'a Who,
    /// Their CSRF token.
    pub csrf: &'a str,
    /// A message after an action (`?done=`), already in words.
    pub flash: Option<String>,
}

/// Field errors of a refused form, by field name.
pub type Errors = BTreeMap<&'static str, String>;

fn time(t: Timestamp) -> String {
    let text = t.to_string();
    // `2026-11-25T10:00:00.000Z` → `2026-11-25 10:00:00 UTC`
    match text.split_once('T') {
        Some((day, rest)) => format!("{day} {} UTC", rest.get(..8).unwrap_or(rest)),
        None => text,
    }
}

fn opt_time(t: Option<Timestamp>) -> String {
    t.map(time).unwrap_or_else(|| "—".to_owned())
}

fn csrf_field(frame: &Frame<'_>) -> Markup {
    html! { input type="hidden" name="csrf" value=(frame.csrf); }
}

fn field_error(errors: &Errors, name: &str) -> Markup {
    html! {
        @if let Some(message) = errors.get(name) {
            span.error id={ (name) "-error" } role="alert" { (message) }
        }
    }
}

/// The page around every view.
pub fn layout(frame: &Frame<'_>, title: &str, body: Markup) -> Markup {
    layout_with(frame, title, false, body)
}

/// [`layout`], reloading itself every 5 s when `live`.
pub fn layout_with(frame: &Frame<'_>, title: &str, live: bool, body: Markup) -> Markup {
    let role = match frame.who.role {
        Role::Operator => "operator",
        Role::Viewer => "viewer",
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if live { meta http-equiv="refresh" content="5"; }
                title { (title) " · lms-bridge admin" }
                link rel="stylesheet" href="/static/admin.css";
            }
            body {
                header {
                    a href="/" { strong { "lms-bridge admin" } }
                    nav aria-label="Sections" {
                        a href="/" { "Overview" }
                        a href="/attention" { "Needs attention" }
                        a href="/mappings" { "Mappings" }
                        a href="/jobs" { "Jobs" }
                        a href="/audit" { "Audit" }
                    }
                    form method="post" action="/students/search" role="search" {
                        (csrf_field(frame))
                        label for="search-email" class="visually-hidden" { "Student email" }
                        input id="search-email" type="email" name="email" placeholder="student@example.com" required;
                        button type="submit" { "Find student" }
                    }
                    span.who { (frame.who.email) " · " (role) }
                }
                main {
                    @if let Some(flash) = &frame.flash { p.flash role="status" { (flash) } }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A refused request, as a page.
pub fn refusal(refusal: &Refusal) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; meta name="viewport" content="width=device-width, initial-scale=1";
                   title { "Refused · lms-bridge admin" } link rel="stylesheet" href="/static/admin.css"; }
            body { main { h1 { "Refused" } p.refused role="alert" { (refusal) } } }
        }
    }
}

/// A short refusal with no visitor known (an unknown page).
pub fn refusal_text(text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; meta name="viewport" content="width=device-width, initial-scale=1";
                   title { "lms-bridge admin" } link rel="stylesheet" href="/static/admin.css"; }
            body { main { h1 { (text) } p { a href="/" { "Back to the overview" } } } }
        }
    }
}

/// An error that is not the visitor's (the state store is unavailable, …).
pub fn failure(frame: &Frame<'_>, message: &str) -> Markup {
    layout(
        frame,
        "Something failed",
        html! { p.refused role="alert" { (message) } p { "Nothing was changed. Try again in a moment." } },
    )
}

/// The overview's figures.
pub struct Overview {
    /// Events by status, last 24 h.
    pub day: BTreeMap<&'static str, u64>,
    /// Events by status, last 7 days.
    pub week: BTreeMap<&'static str, u64>,
    /// Enrollments with LMS actions pending (capped).
    pub pending: usize,
    /// Enrollments with failed LMS actions (capped).
    pub failed_actions: usize,
    /// The cap of both counts.
    pub cap: usize,
    /// Quarantined events.
    pub quarantined: usize,
    /// Unmapped events.
    pub unmapped: usize,
    /// Failed events.
    pub failed_events: usize,
    /// Products seen without a mapping: (source, product, name, events waiting).
    pub unmapped_products: Vec<(String, String, Option<String>, usize)>,
    /// The latest runs of each job kind.
    pub jobs: Vec<JobDoc>,
    /// The latest sweep.
    pub last_sweep: Option<JobDoc>,
    /// The latest operator actions.
    pub audit: Vec<AuditDoc>,
}

fn capped(n: usize, cap: usize) -> String {
    if n >= cap {
        format!("{cap}+")
    } else {
        n.to_string()
    }
}

fn card(label: &str, value: String, href: Option<&str>) -> Markup {
    html! {
        div.card {
            span.n { (value) }
            @match href { Some(h) => a href=(h) { (label) }, None => span { (label) } }
        }
    }
}

/// `/`.
pub fn overview(frame: &Frame<'_>, o: &Overview) -> Markup {
    let statuses = ["applied", "ignored", "unmapped", "quarantined", "failed"];
    layout(
        frame,
        "Overview",
        html! {
            div.cards {
                (card("pending LMS actions", capped(o.pending, o.cap), Some("/attention#pending")))
                (card("failed LMS actions", capped(o.failed_actions, o.cap), Some("/attention#failed-actions")))
                (card("quarantined events", o.quarantined.to_string(), Some("/attention#quarantined")))
                (card("unmapped events", o.unmapped.to_string(), Some("/attention#unmapped")))
                (card("failed events", o.failed_events.to_string(), Some("/attention#failed-events")))
            }
            h2 { "Events" }
            div.scroll { table {
                thead { tr { th scope="col" { "Status" } th scope="col" { "Last 24 h" } th scope="col" { "Last 7 days" } } }
                tbody { @for s in statuses { tr { th scope="row" { (s) }
                    td { (o.day.get(s).copied().unwrap_or(0)) } td { (o.week.get(s).copied().unwrap_or(0)) } } } }
            } }
            h2 { "Products seen without a mapping" }
            @if o.unmapped_products.is_empty() { p.muted { "None: every product sold so far has a mapping." } }
            @else { div.scroll { table {
                thead { tr { th scope="col" { "Source" } th scope="col" { "Product" } th scope="col" { "Events waiting" } th scope="col" { "" } } }
                tbody { @for (source, product, name, n) in &o.unmapped_products { tr {
                    td { (source) } td { (product) @if let Some(name) = name { " · " (name) } } td { (n) }
                    td { a href={ "/mappings/edit?source=" (source) "&product=" (product) } { "Map it" } }
                } } }
            } } }
            h2 { "Last sweep" }
            @match &o.last_sweep {
                Some(s) => p { (time(s.started_at)) ": ended " (s.counts.facts) " access(es), retried " (s.counts.published)
                    " enrollment(s) with pending actions, " (s.counts.errors) " error(s)"
                    @for e in &s.errors { " · " (e) } },
                None => p.muted { "No sweep has run yet (Cloud Scheduler runs one every 5 minutes)." },
            }
            h2 { "Latest jobs" }
            (jobs_table(&o.jobs))
            h2 { "Latest operator actions" }
            (audit_table(&o.audit))
        },
    )
}

fn jobs_table(jobs: &[JobDoc]) -> Markup {
    html! {
        @if jobs.is_empty() { p.muted { "No backfill, reconcile or drift run yet." } }
        @else { div.scroll { table {
            thead { tr { th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "Status" } th scope="col" { "Started" }
                         th scope="col" { "Records" } th scope="col" { "Published" } th scope="col" { "Errors" } } }
            tbody { @for j in jobs { tr {
                td { a href={ "/jobs/" (j.id) } { code { (j.id) } } }
                td { (format!("{:?}", j.kind).to_lowercase()) }
                td { (job_status(j.status)) }
                td { (time(j.started_at)) }
                td { (j.counts.records) } td { (j.counts.published) } td { (j.counts.errors) }
            } } }
        } } }
    }
}

fn job_status(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Running => "running",
        JobStatus::Done => "done",
        JobStatus::Failed => "failed",
    }
}

fn audit_table(audit: &[AuditDoc]) -> Markup {
    html! {
        @if audit.is_empty() { p.muted { "Nothing yet." } }
        @else { div.scroll { table {
            thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Student" } th scope="col" { "Details" } } }
            tbody { @for a in audit { tr {
                td { (time(a.at)) } td { (a.by) } td { (a.action) }
                td { @if let Some(k) = &a.student_key { a href={ "/students/" (k) } { code { (k.as_str().get(..12).unwrap_or(k.as_str())) "…" } } } }
                td { (a.detail) }
            } } }
        } } }
    }
}

/// `/jobs` and `/jobs/{id}`.
pub fn jobs(frame: &Frame<'_>, jobs: &[JobDoc]) -> Markup {
    let live = jobs.iter().any(|j| j.status == JobStatus::Running);
    layout_with(
        frame,
        "Jobs",
        live,
        html! {
            p.muted { "Backfill, reconcile and drift runs, newest first. "
                @if live { "A run is going: this page reloads every 5 seconds." } }
            (jobs_table(jobs))
        },
    )
}

/// One job.
pub fn job(frame: &Frame<'_>, job: &JobDoc) -> Markup {
    let live = job.status == JobStatus::Running;
    let c = &job.counts;
    layout_with(
        frame,
        &format!("Job {}", job.id),
        live,
        html! {
            p { "Kind: " strong { (format!("{:?}", job.kind).to_lowercase()) } " · status: " strong { (job_status(job.status)) }
                " · started " (time(job.started_at)) " · last checkpoint " (time(job.updated_at))
                @if let Some(f) = job.finished_at { " · finished " (time(f)) } }
            div.cards {
                (card("pages", c.pages.to_string(), None)) (card("records", c.records.to_string(), None))
                (card("facts", c.facts.to_string(), None)) (card("already known", c.known.to_string(), None))
                (card("published", c.published.to_string(), None)) (card("skipped", c.skipped.to_string(), None))
                (card("errors", c.errors.to_string(), None))
            }
            h2 { "Asked" } p { code { (job.params) } }
            @if !job.errors.is_empty() { h2 { "Errors" } ul { @for e in &job.errors { li { (e) } } } }
        },
    )
}

/// `/audit`.
pub fn audit(frame: &Frame<'_>, audit: &[AuditDoc]) -> Markup {
    layout(frame, "Audit", html! { p.muted { "Everything done in this console, newest first." } (audit_table(audit)) })
}

/// The lists behind the overview's cards.
pub struct Attention {
    /// Enrollments with failed actions.
    pub failed_actions: Vec<EnrollmentDoc>,
    /// Enrollments with pending actions.
    pub pending: Vec<EnrollmentDoc>,
    /// Quarantined events.
    pub quarantined: Vec<EventDoc>,
    /// Unmapped events.
    pub unmapped: Vec<EventDoc>,
    /// Failed events.
    pub failed_events: Vec<EventDoc>,
}

fn student_link(key: &lms_bridge_shared::StudentKey) -> Markup {
    html! { a href={ "/students/" (key) } { code { (key.as_str().get(..12).unwrap_or(key.as_str())) "…" } } }
}

fn action_name(action: &LmsAction) -> String {
    match action {
        LmsAction::EnsureUser => "ensure user".to_owned(),
        LmsAction::Enroll { course } => format!("enroll in {course}"),
        LmsAction::Unenroll { course } => format!("unenroll from {course}"),
    }
}

fn replay_form(frame: &Frame<'_>, id: &str, label: &str) -> Markup {
    html! {
        form.act method="post" action="/events/replay" {
            (csrf_field(frame))
            input type="hidden" name="id" value=(id);
            button type="submit" { (label) }
        }
    }
}

fn events_table(frame: &Frame<'_>, events: &[EventDoc], replay: Option<&str>) -> Markup {
    html! {
        @if events.is_empty() { p.muted { "None." } }
        @else { div.scroll { table {
            thead { tr { th scope="col" { "Event" } th scope="col" { "Received" } th scope="col" { "Student" } th scope="col" { "Why" }
                         @if replay.is_some() { th scope="col" { "" } } } }
            tbody { @for e in events { tr {
                td { code { (e.id) } br; span.muted { (e.source_event) } }
                td { (time(e.received_at)) }
                td { @if let Some(k) = &e.student_key { (student_link(k)) } }
                td { (e.reason.clone().unwrap_or_default()) }
                @if let Some(label) = replay { td { @if frame.who.role == Role::Operator { (replay_form(frame, e.id.as_str(), label)) } } }
            } } }
        } } }
    }
}

/// `/attention`.
pub fn attention(frame: &Frame<'_>, a: &Attention) -> Markup {
    layout(
        frame,
        "Needs attention",
        html! {
            h2 id="failed-actions" { "Failed LMS actions" }
            @if a.failed_actions.is_empty() { p.muted { "None." } }
            @else { div.scroll { table {
                thead { tr { th scope="col" { "Student" } th scope="col" { "Course" } th scope="col" { "Action" } th scope="col" { "Last error" } th scope="col" { "" } } }
                tbody { @for e in &a.failed_actions { tr {
                    td { (student_link(&e.student_key)) } td { (e.course_id) }
                    td { @for f in &e.failed { (action_name(&f.action)) br; } }
                    td { @for f in &e.failed { (f.last_error.clone().unwrap_or_default()) br; } }
                    td { @if frame.who.role == Role::Operator {
                        form.act method="post" action={ "/students/" (e.student_key) "/retry" } {
                            (csrf_field(frame)) input type="hidden" name="course" value=(e.course_id);
                            button type="submit" { "Retry" } } } }
                } } }
            } } }
            h2 id="pending" { "LMS actions pending" }
            @if a.pending.is_empty() { p.muted { "None." } }
            @else { div.scroll { table {
                thead { tr { th scope="col" { "Student" } th scope="col" { "Course" } th scope="col" { "Since" } th scope="col" { "Actions" } } }
                tbody { @for e in &a.pending { tr {
                    td { (student_link(&e.student_key)) } td { (e.course_id) } td { (opt_time(e.pending_since)) }
                    td { @for p in &e.pending { (action_name(&p.action)) " (" (p.attempts) " attempts)" br; } }
                } } }
            } } }
            h2 id="quarantined" { "Quarantined events" }
            p.muted { "Webhooks the edge could not read, kept whole. Replay re-reads them with the current code." }
            (events_table(frame, &a.quarantined, Some("Replay")))
            h2 id="unmapped" { "Unmapped events" }
            p.muted { "Purchases of products with no mapping yet. Map the product (Mappings), then replay; saving a mapping replays its waiting events by itself." }
            (events_table(frame, &a.unmapped, Some("Replay")))
            h2 id="failed-events" { "Failed events" }
            (events_table(frame, &a.failed_events, None))
        },
    )
}

/// What the student page shows.
pub struct StudentView {
    /// The key.
    pub key: lms_bridge_shared::StudentKey,
    /// The record, if any.
    pub student: Option<StudentDoc>,
    /// Their enrollments.
    pub enrollments: Vec<EnrollmentDoc>,
    /// Their events, newest first.
    pub events: Vec<EventDoc>,
    /// What operators did about them.
    pub audit: Vec<AuditDoc>,
    /// Now.
    pub now: Timestamp,
}

/// The grant form's values and errors, to show again after a refusal.
#[derive(Default)]
pub struct GrantForm {
    /// Course id.
    pub course: String,
    /// `YYYY-MM-DD`, or empty.
    pub until: String,
    /// Why.
    pub reason: String,
    /// One random id per rendered form: posting it twice is one request.
    pub request: String,
    /// Errors by field.
    pub errors: Errors,
}

fn policy_text(policy: AccessPolicy) -> String {
    match policy {
        AccessPolicy::Lifetime => "lifetime".to_owned(),
        AccessPolicy::FixedDays { days } => format!("{days} days"),
        AccessPolicy::Subscription { grace_days } => format!("subscription, {grace_days} days grace"),
    }
}

fn dispute_text(policy: DisputePolicy) -> &'static str {
    match policy {
        DisputePolicy::Keep => "keeps access",
        DisputePolicy::Suspend => "suspends access",
    }
}

fn chargeback_text(policy: ChargebackPolicy) -> &'static str {
    match policy {
        ChargebackPolicy::RevokeGrant => "ends the grant",
        ChargebackPolicy::RevokeCharge => "revokes the charge",
    }
}

fn facts_row(id: &str, c: &ChargeFacts) -> Markup {
    html! { tr {
        td { code { (id) } } td { (opt_time(c.approval_time())) } td { (opt_time(c.coverage())) }
        td { (opt_time(c.refunded)) } td { (opt_time(c.charged_back)) } td { (opt_time(c.failed)) } td { (opt_time(c.disputed)) }
    } }
}

fn grant_block(key: &str, g: &Grant) -> Markup {
    html! {
        h3 { "Grant " code { (key) } }
        @if key.starts_with("admin__") { p.muted { "Granted by hand on course " (g.product_id) } }
        @else { p.muted { "Product " (g.product_id) " · " (policy_text(g.policy)) " · a dispute " (dispute_text(g.dispute))
            " · a chargeback " (chargeback_text(g.chargeback))
            @if let Some(p) = g.plan() { " · plan " (p) }
            @if let Some(c) = &g.cancellation { " · cancelled " (time(c.at)) }
            @if let Some(d) = &g.charge_date { " · next charge moved to " (time(d.value)) } } }
        div.scroll { table {
            thead { tr { th scope="col" { "Charge" } th scope="col" { "Approved" } th scope="col" { "Pays through" } th scope="col" { "Refunded" }
                         th scope="col" { "Charged back" } th scope="col" { "Failed" } th scope="col" { "Disputed" } } }
            tbody { @for (id, c) in &g.charges { (facts_row(id.as_str(), c)) } }
        } }
    }
}

fn actions_list(title: &str, actions: &[PendingAction]) -> Markup {
    html! {
        @if !actions.is_empty() {
            h3 { (title) }
            ul { @for p in actions { li { (action_name(&p.action)) " · " (p.attempts) " attempt(s) · since " (time(p.created_at))
                @if let Some(e) = &p.last_error { " · " span.error { (e) } } } } }
        }
    }
}

/// The form that grants a course by hand to the student with this email.
fn grant_form(frame: &Frame<'_>, email: &str, form: &GrantForm) -> Markup {
    html! {
        form.stack method="post" action="/students/grant" novalidate {
            (csrf_field(frame))
            input type="hidden" name="email" value=(email);
            input type="hidden" name="request" value=(form.request);
            label { "Course id (the LMS's)" input type="text" name="course" value=(form.course) aria-describedby="course-error"; (field_error(&form.errors, "course")) }
            label { "Until (optional, a day in UTC; empty: no end)" input type="date" name="until" value=(form.until) aria-describedby="until-error"; (field_error(&form.errors, "until")) }
            label { "Reason" input type="text" name="reason" value=(form.reason) maxlength="500" aria-describedby="reason-error"; (field_error(&form.errors, "reason")) }
            div { button type="submit" { "Grant" } }
        }
    }
}

/// `/students/{key}`.
pub fn student(frame: &Frame<'_>, v: &StudentView, form: &GrantForm) -> Markup {
    let email = v.student.as_ref().and_then(|s| s.email.clone());
    let title = email.clone().unwrap_or_else(|| format!("Student {}", v.key));
    let operator = frame.who.role == Role::Operator;
    layout(
        frame,
        &title,
        html! {
            p.muted { "Student key " code { (v.key) }
                @if let Some(s) = &v.student {
                    @if let Some(n) = &s.name { " · " (n) }
                    @for (lms, id) in &s.lms_user_ids { " · " (lms) " user " code { (id) } }
                } }
            @if v.enrollments.is_empty() { p { "No course yet." } }
            @for e in &v.enrollments {
                section.course aria-labelledby={ "course-" (e.course_id) } {
                    h2 id={ "course-" (e.course_id) } { "Course " (e.course_id) " "
                        @if e.access == Access::Active { span.badge.active { "active" } } @else { span.badge.inactive { "no access" } } }
                    p.why { (explain::why(&e.state, v.now)) }
                    @if e.preexisting { p.muted { "The student had this course in the LMS before the bridge: it never removes it." } }
                    (actions_list("LMS actions pending", &e.pending))
                    (actions_list("LMS actions failed", &e.failed))
                    @for (key, g) in &e.state.grants { (grant_block(key, g)) }
                    @if operator {
                        @if !e.failed.is_empty() {
                            form.act method="post" action={ "/students/" (v.key) "/retry" } {
                                (csrf_field(frame)) input type="hidden" name="course" value=(e.course_id);
                                button type="submit" { "Retry failed actions" } }
                        }
                        @if e.access == Access::Active {
                            form.act method="post" action={ "/students/" (v.key) "/block" } {
                                (csrf_field(frame)) input type="hidden" name="course" value=(e.course_id);
                                label { "Reason" input type="text" name="reason" required maxlength="500"; }
                                button.danger type="submit" { "Revoke by hand" } }
                        }
                    }
                }
            }
            @if operator { @if let Some(email) = &email {
                h2 { "Grant a course by hand" }
                (grant_form(frame, email, form))
            } }
            h2 { "Timeline" }
            (timeline(v))
        },
    )
}

fn timeline(v: &StudentView) -> Markup {
    enum Item<'a> {
        Event(&'a EventDoc),
        Audit(&'a AuditDoc),
    }
    let mut items: Vec<(Timestamp, Item<'_>)> = v.events.iter().map(|e| (e.processed_at, Item::Event(e))).collect();
    items.extend(v.audit.iter().map(|a| (a.at, Item::Audit(a))));
    items.sort_by_key(|item| std::cmp::Reverse(item.0));
    html! {
        @if items.is_empty() { p.muted { "No event yet." } }
        @else { div.scroll { table #timeline {
            thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Decision" } } }
            tbody { @for (at, item) in &items { tr {
                td { (time(*at)) }
                @match item {
                    Item::Event(e) => {
                        td { strong { (e.source_event) } " (" (e.change) ") " span.muted { code { (e.id) } }
                            @if let Some(a) = &e.admin { br; "by " (a.by) ": " (a.reason) } }
                        td { (e.status.as_str()) @if let Some(r) = &e.reason { ": " (r) }
                            @for d in &e.decisions { br; (d) } }
                    }
                    Item::Audit(a) => {
                        td { strong { "Console: " (a.action) } br; "by " (a.by) }
                        td { (a.detail) }
                    }
                }
            } } }
        } } }
    }
}

/// A search that found nobody.
pub fn no_student(frame: &Frame<'_>, email: &str, form: &GrantForm) -> Markup {
    let operator = frame.who.role == Role::Operator;
    layout(
        frame,
        "No such student",
        html! {
            p { "The bridge knows no student with the email " strong { (email) } ": no purchase or admin event has named it." }
            @if operator {
                h2 { "Grant a course by hand anyway" }
                (grant_form(frame, email, form))
            }
        },
    )
}

/// The mapping form's values (text, as typed) and errors.
#[derive(Default, Clone, serde::Deserialize)]
pub struct MappingForm {
    /// Payment platform.
    #[serde(default)]
    pub source: String,
    /// Its product id.
    #[serde(default)]
    pub product_id: String,
    /// Courses, comma-separated.
    #[serde(default)]
    pub courses: String,
    /// `lifetime`, `fixed_days` or `subscription`.
    #[serde(default)]
    pub policy: String,
    /// Days of a fixed term.
    #[serde(default)]
    pub days: String,
    /// Grace days of a subscription.
    #[serde(default)]
    pub grace_days: String,
    /// `keep` or `suspend`.
    #[serde(default)]
    pub dispute: String,
    /// `revoke_grant` or `revoke_charge`.
    #[serde(default)]
    pub chargeback: String,
    /// Lines `plan = course, course`.
    #[serde(default)]
    pub plans: String,
    /// The form token.
    #[serde(default)]
    pub csrf: String,
}

impl super::Posted for MappingForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn option(value: &str, label: &str, current: &str) -> Markup {
    html! { @if value == current { option value=(value) selected { (label) } } @else { option value=(value) { (label) } } }
}

/// `/mappings`.
pub fn mappings(frame: &Frame<'_>, mappings: &[ProductMapping]) -> Markup {
    layout(
        frame,
        "Mappings",
        html! {
            p.muted { "Which LMS courses each product gives, and for how long (docs/access-rules.md)." }
            @if frame.who.role == Role::Operator { p { a href="/mappings/edit" { "New mapping" } } }
            @if mappings.is_empty() { p { "No mapping yet." } }
            @else { div.scroll { table {
                thead { tr { th scope="col" { "Source" } th scope="col" { "Product" } th scope="col" { "Courses" } th scope="col" { "Policy" }
                             th scope="col" { "Dispute" } th scope="col" { "Chargeback" } th scope="col" { "Plans" } th scope="col" { "" } } }
                tbody { @for m in mappings { tr {
                    td { (m.source) } td { (m.product_id) }
                    td { (m.courses.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) }
                    td { (policy_text(m.policy)) } td { (dispute_text(m.dispute)) } td { (chargeback_text(m.chargeback)) }
                    td { @for (plan, courses) in &m.plans { (plan) " → " (courses.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) br; } }
                    td { a href={ "/mappings/edit?source=" (m.source) "&product=" (m.product_id) } { "Edit" } }
                } } }
            } } }
        },
    )
}

/// `/mappings/edit`.
pub fn mapping_form(frame: &Frame<'_>, form: &MappingForm, errors: &Errors, waiting: usize) -> Markup {
    layout(
        frame,
        if form.product_id.is_empty() { "New mapping" } else { "Mapping" },
        html! {
            @if waiting > 0 { p.flash { (waiting) " event(s) wait for this product's mapping: saving it applies them." } }
            form.stack method="post" action="/mappings" novalidate {
                (csrf_field(frame))
                label { "Source" input type="text" name="source" value=(form.source) aria-describedby="source-error"; (field_error(errors, "source")) }
                label { "Product id" input type="text" name="product_id" value=(form.product_id) aria-describedby="product_id-error"; (field_error(errors, "product_id")) }
                label { "Courses (LMS course ids, comma-separated)" input type="text" name="courses" value=(form.courses) aria-describedby="courses-error"; (field_error(errors, "courses")) }
                label { "Access" select name="policy" aria-describedby="policy-error" {
                    (option("lifetime", "lifetime", &form.policy)) (option("fixed_days", "a fixed number of days", &form.policy))
                    (option("subscription", "while the subscription is paid", &form.policy)) } (field_error(errors, "policy")) }
                label { "Days (fixed number of days)" input type="number" name="days" min="1" value=(form.days) aria-describedby="days-error"; (field_error(errors, "days")) }
                label { "Grace days (subscription)" input type="number" name="grace_days" min="0" value=(form.grace_days) aria-describedby="grace_days-error"; (field_error(errors, "grace_days")) }
                label { "A dispute" select name="dispute" { (option("keep", "keeps access", &form.dispute)) (option("suspend", "suspends access until settled", &form.dispute)) } (field_error(errors, "dispute")) }
                label { "A chargeback" select name="chargeback" { (option("revoke_grant", "ends the whole grant", &form.chargeback)) (option("revoke_charge", "revokes that charge only", &form.chargeback)) } (field_error(errors, "chargeback")) }
                label { "Plans with other courses (one per line: plan = course, course)" textarea name="plans" rows="3" aria-describedby="plans-error" { (form.plans) } (field_error(errors, "plans")) }
                div { button type="submit" { "Save mapping" } }
            }
        },
    )
}

/// The CSS, served at `/static/admin.css` (the CSP allows styles from the console only).
pub const CSS: &str = include_str!("admin.css");
