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
use super::{days_from, sale_facts, subscription_facts, FactSink, JobError, JobRun};
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
    let mut pages = api.walk_sales(&sales);
    while let Some(page) = pages.next_page().await? {
        run.doc.counts.pages += 1;
        let (events, of_subscriptions) = sale_facts(&page, &mut run.doc, now);
        renewals.extend(
            of_subscriptions.iter().map(|r| (r.buyer_email.as_str().to_owned(), r.product_id.as_str().to_owned())),
        );
        sink.offer(&mut run.doc.counts, events).await?;
    }

    let mut queries: Vec<SubscriptionsQuery> = renewals
        .into_iter()
        .map(|(email, product)| SubscriptionsQuery {
            window: SubscriptionWindow::Accession { start: days_from(now, -SUBSCRIPTION_LOOKBACK_DAYS), end: now },
            statuses: SubscriptionStatus::ALL.to_vec(),
            product_id: Some(product),
            subscriber_code: None,
            subscriber_email: Some(email),
        })
        .collect();
    queries.push(SubscriptionsQuery {
        window: SubscriptionWindow::Cancelation { start, end: now },
        statuses: vec![
            SubscriptionStatus::CancelledByCustomer,
            SubscriptionStatus::CancelledBySeller,
            SubscriptionStatus::CancelledByAdmin,
        ],
        product_id: None,
        subscriber_code: None,
        subscriber_email: None,
    });
    // Each subscription once, however many queries find it.
    let mut seen: HashSet<String> = HashSet::new();
    let mut subscriptions: Vec<Subscription> = Vec::new();
    for query in &queries {
        let mut pages = api.walk_subscriptions(query);
        while let Some(page) = pages.next_page().await? {
            run.doc.counts.pages += 1;
            subscriptions.extend(page.into_iter().filter(|s| seen.insert(s.subscriber_code.clone())));
        }
    }
    let events = subscription_facts(api, &subscriptions, &mut run.doc, now).await?;
    sink.offer(&mut run.doc.counts, events).await?;
    run.finish(JobStatus::Done).await
}
