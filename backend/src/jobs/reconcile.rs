//! `POST /tasks/reconcile` (Cloud Scheduler, hourly) and `lms-bridge reconcile`: webhooks lost
//! before they reached the edge, found again. Hotmart has no "changed since" query, so a run
//! re-reads a recent window (default 7 days):
//! - sales ordered in the window, in every status that touches access (a refund lands on the
//!   sale's own order date, so refunds of older sales need a longer window: `--days`);
//! - for each sale that belongs to a subscription, that subscription (found by the buyer's
//!   email and the product) with its charges: renewals, refused renewals, refunds;
//! - subscriptions cancelled in the window.
//!
//! Facts the state already holds are left out; the rest is published like a webhook. A run
//! is short, so it is not resumed: the next run reads the same window again.

use super::backfill::SALE_STATUSES;
use super::{days_from, row_error, subscription_record, FactSink, JobError, JobRun};
use crate::backfill::{sale_events, subscription_events, SaleRecord};
use crate::hotmart_api::{
    HotmartApi, SalesQuery, Subscription, SubscriptionStatus, SubscriptionWindow, SubscriptionsQuery,
};
use crate::store::docs::JobStatus;
use crate::store::StateStore;
use lms_bridge_shared::Timestamp;
use std::collections::{BTreeSet, HashSet};

/// The default window.
pub const DEFAULT_DAYS: u32 = 7;
/// How far back a renewal's subscription may have begun (Hotmart needs a window; subscriptions
/// have no documented limit on it).
const SUBSCRIPTION_LOOKBACK_DAYS: i64 = 3_660;

/// Re-reads the `days` before `now` and publishes what the state lacks.
pub async fn run<S: StateStore>(
    api: &HotmartApi,
    days: u32,
    run: &mut JobRun<'_, S>,
    sink: &mut FactSink<'_, S>,
    now: Timestamp,
) -> Result<(), JobError> {
    if !(1..=super::backfill::MAX_WINDOW_DAYS).contains(&days) {
        return Err(JobError::BadInput(format!("--days must be 1 to {}", super::backfill::MAX_WINDOW_DAYS)));
    }
    let start = days_from(now, -i64::from(days));
    let sales = SalesQuery { start, end: now, statuses: SALE_STATUSES.to_vec(), product_id: None, transaction: None };
    // (email, product) of subscription sales: their subscription is read whole below.
    let mut renewals: BTreeSet<(String, String)> = BTreeSet::new();
    let mut page_token: Option<String> = None;
    loop {
        let page = api.sales_page(&sales, page_token.as_deref()).await?;
        run.doc.counts.pages += 1;
        run.doc.counts.records += page.items.len() as u64;
        let mut events = Vec::new();
        for sale in &page.items {
            match SaleRecord::from_api(&sale.item.0) {
                Ok(record) if record.is_subscription == Some(true) => {
                    renewals.insert((record.buyer_email.as_str().to_owned(), record.product_id.as_str().to_owned()));
                }
                Ok(record) => events.extend(sale_events(&record, now)),
                Err(e) => run.doc.error(row_error(&format!("sale {}", sale.transaction), &e)),
            }
        }
        sink.offer(&mut run.doc.counts, events).await?;
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }

    let mut subscriptions: Vec<Subscription> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (email, product) in &renewals {
        let query = SubscriptionsQuery {
            window: SubscriptionWindow::Accession { start: days_from(now, -SUBSCRIPTION_LOOKBACK_DAYS), end: now },
            statuses: SubscriptionStatus::ALL.to_vec(),
            product_id: Some(product.clone()),
            subscriber_code: None,
            subscriber_email: Some(email.clone()),
        };
        collect(api, &query, &mut subscriptions, &mut seen, run).await?;
    }
    let cancelled = SubscriptionsQuery {
        window: SubscriptionWindow::Cancelation { start, end: now },
        statuses: vec![
            SubscriptionStatus::CancelledByCustomer,
            SubscriptionStatus::CancelledBySeller,
            SubscriptionStatus::CancelledByAdmin,
        ],
        product_id: None,
        subscriber_code: None,
        subscriber_email: None,
    };
    collect(api, &cancelled, &mut subscriptions, &mut seen, run).await?;

    for subscription in &subscriptions {
        let mut errors = Vec::new();
        if let Some(record) = subscription_record(api, subscription, &mut errors).await? {
            sink.offer(&mut run.doc.counts, subscription_events(&record, now)).await?;
        }
        errors.into_iter().for_each(|e| run.doc.error(e));
    }
    run.finish(JobStatus::Done).await
}

/// Every subscription a query finds, each once.
async fn collect<S: StateStore>(
    api: &HotmartApi,
    query: &SubscriptionsQuery,
    into: &mut Vec<Subscription>,
    seen: &mut HashSet<String>,
    run: &mut JobRun<'_, S>,
) -> Result<(), JobError> {
    let mut page_token: Option<String> = None;
    loop {
        let page = api.subscriptions_page(query, page_token.as_deref()).await?;
        run.doc.counts.pages += 1;
        for subscription in page.items {
            if seen.insert(subscription.subscriber_code.clone()) {
                run.doc.counts.records += 1;
                into.push(subscription);
            }
        }
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => return Ok(()),
        }
    }
}
