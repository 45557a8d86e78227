//! `lms-bridge backfill`: the buyers and subscribers who existed before the bridge.
//!
//! From the API, the walk is explicit, never Hotmart's default ranges: the period is cut into
//! windows of at most 360 days (Hotmart refuses a year), and for each window (and product, when
//! given) the job walks `sales/history` in every status that touches access, one status at a
//! time (Hotmart's default hides refunds and chargebacks), then `/subscriptions` begun in that
//! window with each one's charges. A sale that belongs to a subscription is left to its
//! subscription, which names the grant. After each page the position is saved in `jobs/{id}`:
//! an interrupted run started again with the same arguments resumes there.
//!
//! From the CSV export, the rows are read in pages of [`CSV_PAGE`], with the same checkpoints.

use super::progress::Progress;
use super::{days_from, sale_facts, subscription_facts, FactSink, JobError, JobRun};
use crate::backfill::{read_sales_csv, sale_events};
use crate::hotmart_api::{
    HotmartApi, SaleStatus, SalesQuery, SubscriptionStatus, SubscriptionWindow, SubscriptionsQuery, Walk, Walkable,
};
use crate::store::docs::{JobKind, JobStatus};
use crate::store::StateStore;
use lms_bridge_shared::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Rows of an export handled between two checkpoints.
pub const CSV_PAGE: usize = 500;
/// The longest window Hotmart serves.
pub const MAX_WINDOW_DAYS: u32 = 360;

/// The sale statuses a backfill asks for: those that give, keep or take access. Waiting and
/// failed payments never gave access, so they are not worth the calls.
pub const SALE_STATUSES: [SaleStatus; 6] = [
    SaleStatus::Approved,
    SaleStatus::Complete,
    SaleStatus::Refunded,
    SaleStatus::PartiallyRefunded,
    SaleStatus::Chargeback,
    SaleStatus::Protested,
];

/// What a backfill walks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum Plan {
    /// Hotmart's REST API.
    HotmartApi {
        /// Start of the period (sales by order date, subscriptions by start).
        since: Timestamp,
        /// End of the period.
        until: Timestamp,
        /// Only these products (all when empty).
        products: Vec<String>,
        /// Window length in days.
        window_days: u32,
    },
    /// An export file, named by its content.
    Csv {
        /// sha256 hex of the file.
        sha256: String,
    },
}

impl Plan {
    /// The job id: the same arguments name the same job, so running the command again resumes
    /// it while it is unfinished.
    pub fn job_id(&self) -> String {
        let digest = Sha256::digest(self.params().as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("backfill-{hex}")
    }

    /// The plan as the job record keeps it.
    pub fn params(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The plan of an export.
    pub fn csv(bytes: &[u8]) -> Self {
        Self::Csv { sha256: Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect() }
    }
}

/// Where a walk is: everything before it is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// Index in the walk's steps.
    step: usize,
    /// The page token within the step.
    page: Option<String>,
}

/// One query of the walk.
#[derive(Debug, Clone)]
enum Step {
    Sales(SalesQuery),
    Subscriptions(SubscriptionsQuery),
}

fn steps(since: Timestamp, until: Timestamp, products: &[String], window_days: u32) -> Vec<Step> {
    let products: Vec<Option<String>> =
        if products.is_empty() { vec![None] } else { products.iter().cloned().map(Some).collect() };
    let mut windows = Vec::new();
    let mut start = since;
    while start <= until {
        let end = days_from(start, i64::from(window_days)).min(until);
        windows.push((start, end));
        if end >= until {
            break;
        }
        start = Timestamp::from_unix_millis(end.unix_millis() + 1).unwrap_or(until);
    }
    let mut steps = Vec::new();
    for (start, end) in &windows {
        for product in &products {
            steps.push(Step::Sales(SalesQuery {
                start: *start,
                end: *end,
                statuses: SALE_STATUSES.to_vec(),
                product_id: product.clone(),
                transaction: None,
            }));
        }
    }
    for (start, end) in &windows {
        for product in &products {
            steps.push(Step::Subscriptions(SubscriptionsQuery {
                window: SubscriptionWindow::Accession { start: *start, end: *end },
                statuses: SubscriptionStatus::ALL.to_vec(),
                product_id: product.clone(),
                subscriber_code: None,
                subscriber_email: None,
            }));
        }
    }
    steps
}

/// Walks the API for `plan`, from the run's checkpoint.
pub async fn from_api<S: StateStore>(
    api: &HotmartApi,
    plan: &Plan,
    run: &mut JobRun<'_, S>,
    sink: &mut FactSink<'_, S>,
    now: Timestamp,
) -> Result<(), JobError> {
    let Plan::HotmartApi { since, until, products, window_days } = plan else {
        return Err(JobError::BadInput("not an API plan".into()));
    };
    if !(1..=MAX_WINDOW_DAYS).contains(window_days) {
        return Err(JobError::BadInput(format!("--window-days must be 1 to {MAX_WINDOW_DAYS}")));
    }
    if since > until {
        return Err(JobError::BadInput("--since is after --until".into()));
    }
    let steps = steps(*since, *until, products, *window_days);
    let total = steps.len() as u64;
    let mut cursor: Cursor = run.doc.cursor.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
    let mut progress = Progress::new("backfill", total);
    while let Some(step) = steps.get(cursor.step) {
        let from = cursor.page.take();
        // The walk guards against a repeated page token and a runaway page count, and drops
        // rows a shifted page repeats.
        match step {
            Step::Sales(query) => {
                let mut pages = walk(api, query, from);
                while let Some(sales) = pages.next_page().await? {
                    run.doc.counts.pages += 1;
                    let (events, of_subscriptions) = sale_facts(&sales, &mut run.doc, now);
                    run.doc.counts.skipped += of_subscriptions.len() as u64;
                    sink.offer(&mut run.doc.counts, events).await?;
                    if let Some(token) = pages.page_token() {
                        let at = Cursor { step: cursor.step, page: Some(token.to_owned()) };
                        save(run, &mut progress, total, &at).await?;
                    }
                }
            }
            Step::Subscriptions(query) => {
                let mut pages = walk(api, query, from);
                while let Some(subscriptions) = pages.next_page().await? {
                    run.doc.counts.pages += 1;
                    let events = subscription_facts(api, &subscriptions, &mut run.doc, now).await?;
                    sink.offer(&mut run.doc.counts, events).await?;
                    if let Some(token) = pages.page_token() {
                        let at = Cursor { step: cursor.step, page: Some(token.to_owned()) };
                        save(run, &mut progress, total, &at).await?;
                    }
                }
            }
        }
        cursor = Cursor { step: cursor.step + 1, page: None };
        save(run, &mut progress, total, &cursor).await?;
    }
    progress.finish();
    run.finish(JobStatus::Done).await
}

/// A walk of `query` from the start, or from a checkpointed page token.
fn walk<'a, Q: Walkable>(api: &'a HotmartApi, query: &Q, from: Option<String>) -> Walk<'a, Q> {
    match from {
        Some(token) => Walk::resume(api, query.clone(), token),
        None => Walk::new(api, query.clone()),
    }
}

/// Checkpoints `cursor` (what is before it is done) and shows the progress.
async fn save<S: StateStore>(
    run: &mut JobRun<'_, S>,
    progress: &mut Progress,
    total: u64,
    cursor: &Cursor,
) -> Result<(), JobError> {
    run.checkpoint(serde_json::to_string(cursor).unwrap_or_default()).await?;
    progress.update(cursor.step as u64, total, &run.doc.counts);
    Ok(())
}

/// Reads an export, from the run's checkpoint.
pub async fn from_csv<S: StateStore>(
    bytes: &[u8],
    run: &mut JobRun<'_, S>,
    sink: &mut FactSink<'_, S>,
    now: Timestamp,
) -> Result<(), JobError> {
    let sales = read_sales_csv(bytes)?;
    let total = sales.rows.len() as u64;
    let mut cursor: Cursor = run.doc.cursor.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
    if cursor.step == 0 {
        // Bad rows are reported once, at the start; they never stop the run.
        for error in &sales.errors {
            run.doc.error(error.to_string());
        }
    }
    let mut progress = Progress::new("backfill", total);
    while cursor.step < sales.rows.len() {
        let end = (cursor.step + CSV_PAGE).min(sales.rows.len());
        let mut events = Vec::new();
        for record in &sales.rows[cursor.step..end] {
            let found = sale_events(record, now);
            if found.is_empty() {
                run.doc.counts.skipped += 1;
            }
            events.extend(found);
        }
        run.doc.counts.pages += 1;
        run.doc.counts.records += (end - cursor.step) as u64;
        sink.offer(&mut run.doc.counts, events).await?;
        cursor = Cursor { step: end, page: None };
        run.checkpoint(serde_json::to_string(&cursor).unwrap_or_default()).await?;
        progress.update(end as u64, total, &run.doc.counts);
    }
    progress.finish();
    run.finish(JobStatus::Done).await
}

/// The kind of job this module runs.
pub const KIND: JobKind = JobKind::Backfill;
