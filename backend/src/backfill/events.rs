//! Records → normalized events: the facts a sale or a subscription states, told as the edge
//! tells the same facts from webhooks (docs/access-rules.md), so the engine applies backfilled
//! and live facts alike. Pure: `seen_at` (when the backfill read the record) is passed in.
//!
//! `seen_at` is the event's `occurred_at` and `received_at`, and the business time of every
//! fact the API gives no date for (a refund, a chargeback, a dispute, a failed charge: the
//! sales history has no such dates). Stated times later than `seen_at` + 5 minutes are
//! clamped and `clamped` is set, as the edge does.
//!
//! `source_event` is `BACKFILL_SALE_{status}`, `BACKFILL_SUBSCRIPTION_CHARGE_{status}` or
//! `BACKFILL_SUBSCRIPTION_{status}`: names no webhook uses, which mark a fact as backfilled.
//!
//! | REST status | one-off sale (grant = charge = transaction) | subscription charge (grant = subscriber code) |
//! | --- | --- | --- |
//! | APPROVED | `approve` at `approved_date` | `approve`; the current paid charge covers to `date_next_charge` |
//! | COMPLETE | `complete` at `approved_date` | `complete`, covering as above |
//! | PARTIALLY_REFUNDED | `approve` only: a partial refund does not end access | the same, covering as above |
//! | PROTESTED | `approve` + `dispute` at `seen_at` | the same, covering as above |
//! | REFUNDED | `approve` (if `approved_date`) + `revoke{refunded}` at `seen_at` | the same |
//! | CHARGEBACK | `approve` (if `approved_date`) + `revoke{chargeback}` at `seen_at` | the same |
//! | CANCELLED, EXPIRED, BLOCKED, NO_FUNDS | `fail` at `seen_at` | the same |
//! | OVERDUE | nothing | `fail` when it has no `approved_date` (an unpaid attempt), else nothing |
//! | WAITING_PAYMENT, STARTED, PRINTED_BILLET, PROCESSING_TRANSACTION, UNDER_ANALISYS, PRE_ORDER | nothing | nothing |
//!
//! An approval without `approved_date` is stamped `seen_at` (the edge uses the envelope time).
//! A sale with `is_subscription = true` gives nothing: its grant is a subscriber code the sale
//! does not name, and a one-off grant for it would give access the subscription does not.
//! Subscriptions tell those charges (see [`backfill_events`]).
//!
//! | subscription status | beyond its charges |
//! | --- | --- |
//! | CANCELLED_BY_CUSTOMER, _SELLER, _ADMIN | `cancel{period_end: date_next_charge}` at `end_accession_date` (else `seen_at`) |
//! | DELAYED | nothing (`payment_late` changes nothing) |
//! | ACTIVE, INACTIVE, STARTED, OVERDUE | nothing: the charges decide |
//!
//! Ids are deterministic: `hotmart:backfill:{transaction}:{change}` for charge facts and
//! `hotmart:backfill:{subscriber code}:cancel:{effective_at ms}` for cancellations, so the same
//! record gives the same ids on every run, and a fact read from the CSV export and from the API
//! gets the same id (the engine keeps the first).

use super::records::{ChargeRecord, SaleRecord, SaleStatus, SubscriptionRecord};
use lms_bridge_shared::event::{Amount, Change, Charge, Event, Product, RevokeReason, Student, Subscription, SCHEMA};
use lms_bridge_shared::source::hotmart::{Hotmart, MAX_NAME_CHARS, MAX_TEXT_CHARS, NAME};
use lms_bridge_shared::source::Source;
use lms_bridge_shared::{ChargeId, Email, EventId, GrantId, SourceName, Timestamp};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// How far past `seen_at` a stated time may be before it is clamped (the edge's limit).
const CLOCK_SKEW_MILLIS: i64 = 5 * 60 * 1000;

/// The events a one-off sale states (module table). Empty for a subscription's charge.
pub fn sale_events(sale: &SaleRecord, seen_at: Timestamp) -> Vec<Event> {
    if sale.is_subscription == Some(true) {
        return Vec::new();
    }
    // A one-off purchase's grant is its transaction; both ids accept the same texts.
    let Ok(grant) = GrantId::parse(sale.transaction.as_str()) else { return Vec::new() };
    let base = Base {
        source: source(),
        seen_at,
        student: student(&sale.buyer_email, sale.buyer_name.as_deref()),
        product: Product {
            id: sale.product_id.clone(),
            name: clip(sale.product_name.as_deref(), MAX_NAME_CHARS),
            offer: clip(sale.offer_code.as_deref(), MAX_TEXT_CHARS),
            plan: None,
        },
        grant,
        subscription: None,
    };
    let source_event = format!("BACKFILL_SALE_{}", sale.status);
    let charge = ChargeFacts {
        transaction: &sale.transaction,
        status: sale.status,
        approved_at: sale.approved_at,
        covers: None,
        amount: sale.amount.as_ref(),
        in_subscription: false,
    };
    base.charge_events(&charge, &source_event)
}

/// The events a subscription and its charges state (module table).
pub fn subscription_events(sub: &SubscriptionRecord, seen_at: Timestamp) -> Vec<Event> {
    let base = Base {
        source: source(),
        seen_at,
        student: student(&sub.subscriber_email, sub.subscriber_name.as_deref()),
        product: Product {
            id: sub.product_id.clone(),
            name: clip(sub.product_name.as_deref(), MAX_NAME_CHARS),
            offer: None,
            // The subscription's current plan, on every event as the edge does; the rules read
            // it from approvals only. The API keeps no plan history, so a grant whose plan was
            // switched gets the current plan (open question in the report).
            plan: clip(sub.plan_id.as_deref(), MAX_TEXT_CHARS),
        },
        grant: sub.code.clone(),
        subscription: Some(Subscription {
            code: sub.code.clone(),
            status: Some(sub.status.as_str().to_owned()),
            next_charge_at: sub.next_charge_at,
        }),
    };
    let current = current_paid_charge(&sub.charges);
    let mut events = Vec::new();
    for (i, charge) in sub.charges.iter().enumerate() {
        // The paid period is taken from the latest approved charge that states one
        // (access-rules "subscription(grace_days)"), so only the current paid charge states
        // `date_next_charge`. Older paid charges state None, which is safe: the rules never
        // read an older charge's coverage while a newer valid one has one, and a newer charge
        // that is revoked cuts access itself. A computed `approved + recurrency_period` would
        // not be: a webhook of that charge states Hotmart's real date, coverage keeps the
        // *latest* date stated, so a guess later than the real one (31-day months, a charge
        // paid on a retry, a moved charge date) would stick for good; and were the current
        // charge to state no date, a guess for an older one would cut a paid subscriber short.
        let covers = if current == Some(i) { sub.next_charge_at } else { None };
        let facts = ChargeFacts {
            transaction: &charge.transaction,
            status: charge.status,
            approved_at: charge.approved_at,
            covers,
            amount: charge.amount.as_ref(),
            in_subscription: true,
        };
        events.extend(base.charge_events(&facts, &format!("BACKFILL_SUBSCRIPTION_CHARGE_{}", charge.status)));
    }
    if sub.status.is_cancelled() {
        let at = base.clamp(sub.cancelled_at.unwrap_or(seen_at));
        let id = event_id(&format!("{}:cancel:{}", sub.code, at.0.unix_millis()));
        let change = Change::Cancel { period_end: sub.next_charge_at };
        let source_event = format!("BACKFILL_SUBSCRIPTION_{}", sub.status);
        events.push(base.event(id, source_event, change, at, None, None));
    }
    // Rows of one transaction repeated (a page read twice) state the same facts once.
    let mut ids = BTreeSet::new();
    events.retain(|e| ids.insert(e.id.clone()));
    events
}

/// The events of a whole backfill: every subscription's, then every sale's except those whose
/// transaction is a subscription charge (the CSV export cannot always tell one; a one-off grant
/// for it would give access the subscription does not), each id once (the first kept).
pub fn backfill_events(sales: &[SaleRecord], subscriptions: &[SubscriptionRecord], seen_at: Timestamp) -> Vec<Event> {
    let subscription_charges: BTreeSet<&ChargeId> =
        subscriptions.iter().flat_map(|s| s.charges.iter().map(|c| &c.transaction)).collect();
    let from_subscriptions = subscriptions.iter().flat_map(|s| subscription_events(s, seen_at));
    let from_sales =
        sales.iter().filter(|s| !subscription_charges.contains(&s.transaction)).flat_map(|s| sale_events(s, seen_at));
    let mut seen = BTreeSet::new();
    from_subscriptions.chain(from_sales).filter(|e| seen.insert(e.id.clone())).collect()
}

/// The index of the paid charge with the highest recurrency number (ties: the latest approval):
/// the one whose period `date_next_charge` ends. Charges that still give access count as paid.
fn current_paid_charge(charges: &[ChargeRecord]) -> Option<usize> {
    let paid = charges.iter().enumerate().filter(|(_, c)| gives_access(c.status));
    paid.max_by_key(|(_, c)| (c.recurrency_number, c.approved_at)).map(|(i, _)| i)
}

/// Statuses of a charge that stays valid: paid, partially refunded (the purchase stands) or
/// disputed (the dispute policy decides). The brief named APPROVED and COMPLETE; the other two
/// count too, or a subscription whose current charge is disputed would state no paid period
/// and keep access without end.
fn gives_access(status: SaleStatus) -> bool {
    matches!(
        status,
        SaleStatus::Approved | SaleStatus::Complete | SaleStatus::PartiallyRefunded | SaleStatus::Protested
    )
}

/// The changes a charge's status states, in order (module table).
fn changes(status: SaleStatus, approved_at: Option<Timestamp>, in_subscription: bool) -> Vec<Change> {
    let approved = approved_at.is_some();
    let revoke = |reason| {
        let mut changes = if approved { vec![Change::Approve] } else { Vec::new() };
        changes.push(Change::Revoke { reason });
        changes
    };
    match status {
        SaleStatus::Approved | SaleStatus::PartiallyRefunded => vec![Change::Approve],
        SaleStatus::Complete => vec![Change::Complete],
        SaleStatus::Protested => vec![Change::Approve, Change::Dispute],
        SaleStatus::Refunded => revoke(RevokeReason::Refunded),
        SaleStatus::Chargeback => revoke(RevokeReason::Chargeback),
        SaleStatus::Cancelled | SaleStatus::Expired | SaleStatus::Blocked | SaleStatus::NoFunds => vec![Change::Fail],
        // A subscription's unpaid attempt: each retry is its own transaction, so this one
        // will not be paid. A one-off sale's overdue charge may still be (a fail is final).
        SaleStatus::Overdue if in_subscription && !approved => vec![Change::Fail],
        SaleStatus::Overdue
        | SaleStatus::WaitingPayment
        | SaleStatus::Started
        | SaleStatus::PrintedBillet
        | SaleStatus::ProcessingTransaction
        | SaleStatus::UnderAnalysis
        | SaleStatus::PreOrder => Vec::new(),
    }
}

/// One charge, as a sale or a subscription's purchases row states it.
struct ChargeFacts<'a> {
    transaction: &'a ChargeId,
    status: SaleStatus,
    approved_at: Option<Timestamp>,
    /// The end of the period it pays for, when it is the subscription's current paid charge.
    covers: Option<Timestamp>,
    amount: Option<&'a Amount>,
    in_subscription: bool,
}

/// What every event of one record shares.
struct Base {
    source: SourceName,
    seen_at: Timestamp,
    student: Student,
    product: Product,
    grant: GrantId,
    subscription: Option<Subscription>,
}

impl Base {
    /// `t`, or `seen_at` + 5 minutes when later; and whether it was clamped.
    fn clamp(&self, t: Timestamp) -> (Timestamp, bool) {
        let limit = Timestamp::from_unix_millis(self.seen_at.unix_millis().saturating_add(CLOCK_SKEW_MILLIS))
            .unwrap_or(self.seen_at);
        (t.min(limit), t > limit)
    }

    fn charge_events(&self, charge: &ChargeFacts<'_>, source_event: &str) -> Vec<Event> {
        changes(charge.status, charge.approved_at, charge.in_subscription)
            .into_iter()
            .map(|change| {
                let approval = matches!(change, Change::Approve | Change::Complete);
                let business = if approval { charge.approved_at.unwrap_or(self.seen_at) } else { self.seen_at };
                let (effective_at, mut clamped) = self.clamp(business);
                // As the edge: an approval states its (clamped) approval time; other facts
                // repeat the charge's stated approval time, clamped too.
                let approved_at = if approval {
                    Some(effective_at)
                } else {
                    charge.approved_at.map(|t| {
                        let (t, c) = self.clamp(t);
                        clamped |= c;
                        t
                    })
                };
                let id = event_id(&format!("{}:{}", charge.transaction, change.kind()));
                let facts = Charge {
                    id: charge.transaction.clone(),
                    approved_at,
                    next_charge_at: if approval { charge.covers } else { None },
                };
                self.event(
                    id,
                    source_event.to_owned(),
                    change,
                    (effective_at, clamped),
                    Some(facts),
                    charge.amount.cloned(),
                )
            })
            .collect()
    }

    /// One event of this record; `(effective_at, clamped)` as [`Base::clamp`] gives them.
    fn event(
        &self,
        id: EventId,
        source_event: String,
        change: Change,
        (effective_at, clamped): (Timestamp, bool),
        charge: Option<Charge>,
        amount: Option<Amount>,
    ) -> Event {
        Event {
            schema: Cow::Borrowed(SCHEMA),
            id,
            source: self.source.clone(),
            source_event,
            change,
            occurred_at: self.seen_at,
            received_at: self.seen_at,
            effective_at,
            clamped,
            student: Some(self.student.clone()),
            product: Some(self.product.clone()),
            grant_id: Some(self.grant.clone()),
            charge,
            subscription: self.subscription.clone(),
            amount,
            raw: None,
            raw_truncated: false,
            raw_sha256: None,
            admin: None,
        }
    }
}

/// `hotmart`, from the Hotmart source itself: its name is a constant of the shared crate, so
/// no parse (and no error path) is needed here.
fn source() -> SourceName {
    Hotmart::new(Vec::new()).name()
}

/// `hotmart:backfill:{fact}`. Transaction and subscriber codes are at most 256 bytes without
/// control characters, so only the length can fail; an over-long id becomes the sha256 of the
/// same text, still deterministic.
fn event_id(fact: &str) -> EventId {
    let text = format!("{NAME}:backfill:{fact}");
    EventId::parse(&text).unwrap_or_else(|_| {
        let hex: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        EventId::parse(format!("{NAME}:backfill:sha256:{hex}")).unwrap_or_else(|_| unreachable!("88 ASCII bytes"))
    })
}

/// A student keyed without pepper (the backend re-keys it), with the full name the API gives.
fn student(email: &Email, name: Option<&str>) -> Student {
    Student { name: clip(name, MAX_NAME_CHARS), ..Student::new(email.clone()) }
}

/// At most `max` characters, as the edge clips free text; blank is absent.
fn clip(text: Option<&str>, max: usize) -> Option<String> {
    text.map(str::trim).filter(|t| !t.is_empty()).map(|t| t.chars().take(max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::records::SubscriptionStatus;
    use lms_bridge_shared::ProductId;
    use proptest::prelude::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn seen() -> Timestamp {
        ts("2026-03-01T12:00:00Z")
    }

    fn sale(status: SaleStatus) -> SaleRecord {
        SaleRecord {
            transaction: ChargeId::parse("HP123").unwrap(),
            status,
            product_id: ProductId::parse("4774438").unwrap(),
            product_name: Some("Curso".into()),
            offer_code: Some("k2pasun0".into()),
            buyer_email: Email::parse("Ana@Example.com").unwrap(),
            buyer_name: Some("Ana Souza".into()),
            order_at: Some(ts("2026-01-10T09:59:00Z")),
            approved_at: Some(ts("2026-01-10T10:00:00Z")),
            is_subscription: Some(false),
            amount: Some(Amount { value: "1500.00".into(), currency: "BRL".into() }),
        }
    }

    /// (change kind, id, effective_at) of one event.
    type Fact = (String, String, Timestamp);

    fn summary(events: &[Event]) -> Vec<Fact> {
        events.iter().map(|e| (e.change.to_string(), e.id.to_string(), e.effective_at)).collect()
    }

    #[test]
    fn each_sale_status_gives_the_facts_of_the_table() {
        let approved = ts("2026-01-10T10:00:00Z");
        let ap = |kind: &str| (kind.to_owned(), format!("hotmart:backfill:HP123:{kind}"), approved);
        let at_seen = |kind: &str| (kind.to_owned(), format!("hotmart:backfill:HP123:{kind}"), seen());
        let cases: Vec<(SaleStatus, Vec<Fact>)> = vec![
            (SaleStatus::Approved, vec![ap("approve")]),
            (SaleStatus::Complete, vec![ap("complete")]),
            (SaleStatus::PartiallyRefunded, vec![ap("approve")]),
            (SaleStatus::Protested, vec![ap("approve"), at_seen("dispute")]),
            (SaleStatus::Refunded, vec![ap("approve"), at_seen("revoke")]),
            (SaleStatus::Chargeback, vec![ap("approve"), at_seen("revoke")]),
            (SaleStatus::Cancelled, vec![at_seen("fail")]),
            (SaleStatus::Expired, vec![at_seen("fail")]),
            (SaleStatus::Blocked, vec![at_seen("fail")]),
            (SaleStatus::NoFunds, vec![at_seen("fail")]),
            (SaleStatus::Overdue, vec![]),
            (SaleStatus::WaitingPayment, vec![]),
            (SaleStatus::Started, vec![]),
            (SaleStatus::PrintedBillet, vec![]),
            (SaleStatus::ProcessingTransaction, vec![]),
            (SaleStatus::UnderAnalysis, vec![]),
            (SaleStatus::PreOrder, vec![]),
        ];
        assert_eq!(cases.len(), SaleStatus::ALL.len(), "every status has a row");
        for (status, expected) in cases {
            let events = sale_events(&sale(status), seen());
            assert_eq!(summary(&events), expected, "{status}");
            for event in &events {
                assert_eq!(event.source_event, format!("BACKFILL_SALE_{status}"));
                assert_eq!(event.grant_id.as_ref().unwrap().as_str(), "HP123");
                let charge = event.charge.as_ref().unwrap();
                assert_eq!(
                    (charge.id.as_str(), charge.approved_at, charge.next_charge_at),
                    ("HP123", Some(approved), None)
                );
                assert_eq!(event.product.as_ref().unwrap().offer.as_deref(), Some("k2pasun0"));
                assert_eq!((event.occurred_at, event.received_at, event.clamped), (seen(), seen(), false));
            }
        }
        let reasons: Vec<Change> = [SaleStatus::Refunded, SaleStatus::Chargeback]
            .iter()
            .map(|s| sale_events(&sale(*s), seen())[1].change.clone())
            .collect();
        assert_eq!(
            reasons,
            [Change::Revoke { reason: RevokeReason::Refunded }, Change::Revoke { reason: RevokeReason::Chargeback }]
        );
    }

    #[test]
    fn a_refund_without_an_approval_date_is_only_a_revocation_and_an_approval_without_one_is_stamped_seen() {
        let mut refunded = sale(SaleStatus::Refunded);
        refunded.approved_at = None;
        assert_eq!(
            summary(&sale_events(&refunded, seen())),
            [("revoke".to_owned(), "hotmart:backfill:HP123:revoke".to_owned(), seen())]
        );
        let mut approved = sale(SaleStatus::Approved);
        approved.approved_at = None;
        let event = &sale_events(&approved, seen())[0];
        assert_eq!((event.effective_at, event.charge.as_ref().unwrap().approved_at), (seen(), Some(seen())));
    }

    #[test]
    fn a_future_approval_is_clamped_to_seen_plus_five_minutes() {
        let mut future = sale(SaleStatus::Refunded);
        future.approved_at = Some(ts("2026-03-02T00:00:00Z"));
        let events = sale_events(&future, seen());
        let limit = ts("2026-03-01T12:05:00Z");
        assert_eq!((events[0].effective_at, events[0].clamped), (limit, true));
        assert_eq!(events[0].charge.as_ref().unwrap().approved_at, Some(limit));
        // The revocation itself is at seen_at, but it repeats the clamped approval time.
        assert_eq!((events[1].effective_at, events[1].clamped), (seen(), true));
        assert_eq!(events[1].charge.as_ref().unwrap().approved_at, Some(limit));
    }

    #[test]
    fn a_subscription_sale_gives_nothing_on_its_own() {
        let mut charge = sale(SaleStatus::Approved);
        charge.is_subscription = Some(true);
        assert!(sale_events(&charge, seen()).is_empty());
    }

    #[test]
    fn over_long_ids_become_a_hash() {
        let long = "X".repeat(250);
        let id = event_id(&format!("{long}:approve"));
        assert!(id.as_str().starts_with("hotmart:backfill:sha256:"), "{id}");
        assert_eq!(id, event_id(&format!("{long}:approve")));
        assert_ne!(id, event_id(&format!("{long}:revoke")));
    }

    fn charge(tx: &str, status: SaleStatus, approved: Option<&str>, n: u32) -> ChargeRecord {
        ChargeRecord {
            transaction: ChargeId::parse(tx).unwrap(),
            status,
            approved_at: approved.map(ts),
            recurrency_number: Some(n),
            amount: None,
        }
    }

    fn subscription(status: SubscriptionStatus, charges: Vec<ChargeRecord>) -> SubscriptionRecord {
        SubscriptionRecord {
            code: GrantId::parse("SUB1").unwrap(),
            status,
            product_id: ProductId::parse("4774438").unwrap(),
            product_name: None,
            plan_id: Some("123".into()),
            recurrency_period_days: Some(30),
            subscriber_email: Email::parse("ana@example.com").unwrap(),
            subscriber_name: None,
            accession_at: Some(ts("2026-01-10T10:00:00Z")),
            cancelled_at: None,
            next_charge_at: Some(ts("2026-04-10T10:00:00Z")),
            charges,
        }
    }

    #[test]
    fn only_the_current_paid_charge_states_the_next_charge_date() {
        let sub = subscription(
            SubscriptionStatus::Active,
            vec![
                charge("T3", SaleStatus::Approved, Some("2026-03-10T10:00:00Z"), 3),
                charge("T1", SaleStatus::Complete, Some("2026-01-10T10:00:00Z"), 1),
                charge("T2", SaleStatus::Complete, Some("2026-02-10T10:00:00Z"), 2),
                // A refused retry of the fourth month, and one still waiting.
                charge("T4a", SaleStatus::NoFunds, None, 4),
                charge("T4b", SaleStatus::WaitingPayment, None, 4),
            ],
        );
        let events = subscription_events(&sub, seen());
        let covers: Vec<(&str, &str, Option<Timestamp>)> = events
            .iter()
            .map(|e| {
                let c = e.charge.as_ref().unwrap();
                (c.id.as_str(), e.change.kind(), c.next_charge_at)
            })
            .collect();
        assert_eq!(
            covers,
            [
                ("T3", "approve", Some(ts("2026-04-10T10:00:00Z"))),
                ("T1", "complete", None),
                ("T2", "complete", None),
                ("T4a", "fail", None),
            ]
        );
        for event in &events {
            assert_eq!(event.grant_id.as_ref().unwrap().as_str(), "SUB1");
            assert_eq!(event.product.as_ref().unwrap().plan.as_deref(), Some("123"));
            let s = event.subscription.as_ref().unwrap();
            assert_eq!((s.code.as_str(), s.status.as_deref()), ("SUB1", Some("ACTIVE")));
            assert!(event.source_event.starts_with("BACKFILL_SUBSCRIPTION_CHARGE_"), "{}", event.source_event);
        }
    }

    #[test]
    fn subscription_charge_rows_follow_the_table() {
        let paid = Some("2026-02-10T10:00:00Z");
        let kinds = |status, approved| {
            let sub = subscription(SubscriptionStatus::Active, vec![charge("T", status, approved, 2)]);
            subscription_events(&sub, seen()).iter().map(|e| e.change.kind()).collect::<Vec<_>>()
        };
        assert_eq!(kinds(SaleStatus::Approved, paid), ["approve"]);
        assert_eq!(kinds(SaleStatus::Complete, paid), ["complete"]);
        assert_eq!(kinds(SaleStatus::Refunded, paid), ["approve", "revoke"]);
        assert_eq!(kinds(SaleStatus::Chargeback, paid), ["approve", "revoke"]);
        assert_eq!(kinds(SaleStatus::Protested, paid), ["approve", "dispute"]);
        assert_eq!(kinds(SaleStatus::PartiallyRefunded, paid), ["approve"]);
        for unpaid in
            [SaleStatus::Cancelled, SaleStatus::Overdue, SaleStatus::NoFunds, SaleStatus::Expired, SaleStatus::Blocked]
        {
            assert_eq!(kinds(unpaid, None), ["fail"], "{unpaid}");
        }
        assert!(kinds(SaleStatus::Overdue, paid).is_empty());
        for waiting in
            [SaleStatus::WaitingPayment, SaleStatus::PrintedBillet, SaleStatus::UnderAnalysis, SaleStatus::Started]
        {
            assert!(kinds(waiting, None).is_empty(), "{waiting}");
        }
    }

    #[test]
    fn a_cancelled_subscription_states_its_cancellation_and_others_nothing_more() {
        let charges = vec![charge("T1", SaleStatus::Approved, Some("2026-01-10T10:00:00Z"), 1)];
        for status in SubscriptionStatus::ALL {
            let mut sub = subscription(*status, charges.clone());
            sub.cancelled_at = Some(ts("2026-01-20T08:00:00Z"));
            let events = subscription_events(&sub, seen());
            let cancels: Vec<&Event> = events.iter().filter(|e| matches!(e.change, Change::Cancel { .. })).collect();
            if !status.is_cancelled() {
                assert!(cancels.is_empty(), "{status}");
                assert_eq!(events.len(), 1, "{status}");
                continue;
            }
            let cancel = cancels[0];
            assert_eq!(cancel.change, Change::Cancel { period_end: Some(ts("2026-04-10T10:00:00Z")) });
            assert_eq!(cancel.effective_at, ts("2026-01-20T08:00:00Z"));
            assert_eq!(
                cancel.id.as_str(),
                format!("hotmart:backfill:SUB1:cancel:{}", ts("2026-01-20T08:00:00Z").unix_millis())
            );
            assert_eq!(cancel.source_event, format!("BACKFILL_SUBSCRIPTION_{status}"));
            assert!(cancel.charge.is_none());
        }
        let mut undated = subscription(SubscriptionStatus::CancelledBySeller, Vec::new());
        undated.cancelled_at = None;
        let events = subscription_events(&undated, seen());
        assert_eq!(
            summary(&events),
            [("cancel".to_owned(), format!("hotmart:backfill:SUB1:cancel:{}", seen().unix_millis()), seen())]
        );
    }

    #[test]
    fn backfill_events_leave_subscription_charges_to_their_subscription() {
        let sub = subscription(
            SubscriptionStatus::Active,
            vec![charge("HP123", SaleStatus::Approved, Some("2026-01-10T10:00:00Z"), 1)],
        );
        // The same charge from the sales history (or a CSV row that does not say it recurs).
        let mut as_sale = sale(SaleStatus::Approved);
        as_sale.is_subscription = None;
        let other = SaleRecord { transaction: ChargeId::parse("HP999").unwrap(), ..sale(SaleStatus::Approved) };
        let events = backfill_events(&[as_sale.clone(), other, as_sale], &[sub], seen());
        let ids: Vec<(&str, &str)> =
            events.iter().map(|e| (e.id.as_str(), e.grant_id.as_ref().unwrap().as_str())).collect();
        assert_eq!(ids, [("hotmart:backfill:HP123:approve", "SUB1"), ("hotmart:backfill:HP999:approve", "HP999")]);
    }

    // ---- Properties ----------------------------------------------------------------------

    fn any_time() -> impl Strategy<Value = Timestamp> {
        // 2020 to 2030, so some stated times land after `seen_at` and get clamped.
        (1_577_836_800_000i64..1_893_456_000_000).prop_map(|ms| Timestamp::from_unix_millis(ms).unwrap())
    }

    fn any_status() -> impl Strategy<Value = SaleStatus> {
        prop::sample::select(SaleStatus::ALL)
    }

    fn any_amount() -> impl Strategy<Value = Option<Amount>> {
        prop::option::of(
            ("[0-9]{1,5}\\.[0-9]{2}", "BRL|USD|EUR").prop_map(|(value, currency)| Amount { value, currency }),
        )
    }

    fn any_sale() -> impl Strategy<Value = SaleRecord> {
        (
            ("HP[0-9]{4,14}", any_status(), "[0-9]{6,7}", prop::option::of("\\PC{0,300}")),
            (prop::option::of("[a-z0-9]{8}"), "[a-z]{1,8}@(example\\.com|x\\.org)", prop::option::of("\\PC{0,30}")),
            (prop::option::of(any_time()), prop::option::of(any_time()), prop::option::of(any::<bool>()), any_amount()),
        )
            .prop_map(
                |((tx, status, product, name), (offer, email, buyer), (order, approved, recurring, amount))| {
                    SaleRecord {
                        transaction: ChargeId::parse(tx).unwrap(),
                        status,
                        product_id: ProductId::parse(product).unwrap(),
                        product_name: name,
                        offer_code: offer,
                        buyer_email: Email::parse(email).unwrap(),
                        buyer_name: buyer,
                        order_at: order,
                        approved_at: approved,
                        is_subscription: recurring,
                        amount,
                    }
                },
            )
    }

    fn any_charge() -> impl Strategy<Value = ChargeRecord> {
        ("TX[0-9]{4,10}", any_status(), prop::option::of(any_time()), prop::option::of(1u32..12), any_amount())
            .prop_map(|(tx, status, approved_at, recurrency_number, amount)| ChargeRecord {
                transaction: ChargeId::parse(tx).unwrap(),
                status,
                approved_at,
                recurrency_number,
                amount,
            })
    }

    fn any_subscription() -> impl Strategy<Value = SubscriptionRecord> {
        (
            ("[A-Z0-9]{8}", prop::sample::select(SubscriptionStatus::ALL), prop::option::of("[0-9]{3,6}")),
            (prop::option::of(any_time()), prop::option::of(any_time()), prop::option::of(any_time())),
            prop::collection::vec(any_charge(), 0..6),
        )
            .prop_map(|((code, status, plan), (accession, cancelled, next), charges)| SubscriptionRecord {
                code: GrantId::parse(code).unwrap(),
                status,
                product_id: ProductId::parse("4774438").unwrap(),
                product_name: Some("Curso".into()),
                plan_id: plan,
                recurrency_period_days: Some(30),
                subscriber_email: Email::parse("ana@example.com").unwrap(),
                subscriber_name: Some("Ana".into()),
                accession_at: accession,
                cancelled_at: cancelled,
                next_charge_at: next,
                charges,
            })
    }

    fn check_events(events: &[Event], seen_at: Timestamp) -> Result<(), TestCaseError> {
        let limit = Timestamp::from_unix_millis(seen_at.unix_millis() + CLOCK_SKEW_MILLIS).unwrap();
        let mut ids = BTreeSet::new();
        for event in events {
            prop_assert!(event.check_complete().is_ok(), "{event:?}");
            prop_assert_eq!(&Event::from_json(&event.to_json()).unwrap(), event);
            prop_assert!(event.effective_at <= limit);
            prop_assert!(event.id.as_str().starts_with("hotmart:backfill:"));
            prop_assert!(event.source_event.starts_with("BACKFILL_"));
            prop_assert!(ids.insert(event.id.clone()), "duplicate id {}", event.id);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn sale_events_are_deterministic_complete_and_round_trip(sale in any_sale(), seen_at in any_time()) {
            let events = sale_events(&sale, seen_at);
            prop_assert_eq!(&events, &sale_events(&sale, seen_at));
            check_events(&events, seen_at)?;
            // Ids name the fact, not when it was seen.
            let later = Timestamp::from_unix_millis(seen_at.unix_millis() + 86_400_000).unwrap();
            let ids = |events: &[Event]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
            prop_assert_eq!(ids(&events), ids(&sale_events(&sale, later)));
        }

        #[test]
        fn subscription_events_are_deterministic_complete_and_round_trip(sub in any_subscription(), seen_at in any_time()) {
            let events = subscription_events(&sub, seen_at);
            prop_assert_eq!(&events, &subscription_events(&sub, seen_at));
            check_events(&events, seen_at)?;
            let covering = events.iter().filter(|e| e.charge.as_ref().is_some_and(|c| c.next_charge_at.is_some())).count();
            prop_assert!(covering <= 1, "at most the current paid charge states the next charge date");
        }
    }
}
