//! Backfill and reconciliation (`lms-bridge backfill`): Hotmart's REST API sales and
//! subscriptions, and its CSV sales export, turned into the same normalized events the edge
//! publishes for the same facts, under deterministic ids. This is the pure part; fetching
//! pages is the API client's.
//!
//! - [`records`]: the neutral records both sources yield ([`SaleRecord`], [`SubscriptionRecord`]
//!   with its [`ChargeRecord`]s), and readers for the API's JSON items.
//! - [`events`]: records → events, with the status table of the access rules.
//! - [`csv`]: the "Modelo Detalhado de Vendas" export → [`SaleRecord`]s.

pub mod csv;
pub mod events;
pub mod records;

pub use self::csv::{read_sales_csv, CsvError, CsvRowError, CsvSales};
pub use events::{backfill_events, sale_events, subscription_events};
pub use records::{ChargeRecord, RecordError, SaleRecord, SaleStatus, SubscriptionRecord, SubscriptionStatus};

#[cfg(test)]
mod tests {
    //! Lifecycles through the access rules, and against what the webhooks of the same facts give.

    use super::*;
    use lms_bridge_shared::source::hotmart;
    use lms_bridge_shared::{
        AccessPolicy, ChargeId, ChargebackPolicy, CourseId, DisputePolicy, Email, Event, Grant, GrantId, ProductId,
        ProductMapping, SourceName, Timestamp,
    };
    use serde_json::{json, Value};

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn mapping(policy: AccessPolicy) -> ProductMapping {
        ProductMapping {
            source: SourceName::parse("hotmart").unwrap(),
            product_id: ProductId::parse("4774438").unwrap(),
            courses: vec![CourseId::parse("101").unwrap()],
            policy,
            dispute: DisputePolicy::Keep,
            chargeback: ChargebackPolicy::RevokeGrant,
            plans: Default::default(),
        }
    }

    const LIFETIME: AccessPolicy = AccessPolicy::Lifetime;
    const MONTHLY: AccessPolicy = AccessPolicy::Subscription { grace_days: 3 };

    fn grant<'a>(events: impl IntoIterator<Item = &'a Event>, mapping: &ProductMapping) -> Grant {
        let mut grant = Grant::new(mapping);
        for event in events {
            grant.record(event, mapping).unwrap();
        }
        grant
    }

    fn sale(tx: &str, status: SaleStatus, approved: &str) -> SaleRecord {
        SaleRecord {
            transaction: ChargeId::parse(tx).unwrap(),
            status,
            product_id: ProductId::parse("4774438").unwrap(),
            product_name: Some("Curso de Exemplo".into()),
            offer_code: None,
            buyer_email: Email::parse("ana.souza@example.com").unwrap(),
            buyer_name: Some("Ana Souza".into()),
            order_at: None,
            approved_at: Some(ts(approved)),
            is_subscription: Some(false),
            amount: None,
        }
    }

    fn charge(tx: &str, status: SaleStatus, approved: &str, n: u32) -> ChargeRecord {
        ChargeRecord {
            transaction: ChargeId::parse(tx).unwrap(),
            status,
            approved_at: Some(ts(approved)),
            recurrency_number: Some(n),
            amount: None,
        }
    }

    fn subscription(status: SubscriptionStatus, next: &str, charges: Vec<ChargeRecord>) -> SubscriptionRecord {
        SubscriptionRecord {
            code: GrantId::parse("I9OT62C3").unwrap(),
            status,
            product_id: ProductId::parse("4774438").unwrap(),
            product_name: Some("Curso de Exemplo".into()),
            plan_id: Some("123".into()),
            recurrency_period_days: Some(30),
            subscriber_email: Email::parse("ana.souza@example.com").unwrap(),
            subscriber_name: Some("Ana Souza".into()),
            accession_at: None,
            cancelled_at: None,
            next_charge_at: Some(ts(next)),
            charges,
        }
    }

    fn three_paid_months() -> Vec<ChargeRecord> {
        vec![
            charge("T1", SaleStatus::Complete, "2026-01-10T10:00:00Z", 1),
            charge("T2", SaleStatus::Complete, "2026-02-10T10:00:00Z", 2),
            charge("T3", SaleStatus::Approved, "2026-03-10T10:00:00Z", 3),
        ]
    }

    #[test]
    fn a_one_off_approval_gives_access_without_end_and_a_refund_ends_it_at_once() {
        let seen = ts("2026-03-01T12:00:00Z");
        let m = mapping(LIFETIME);
        let approved = grant(&sale_events(&sale("HP1", SaleStatus::Approved, "2026-01-10T10:00:00Z"), seen), &m);
        assert_eq!(approved.access_at(seen), Some(None), "active, no end");
        let refunded = grant(&sale_events(&sale("HP1", SaleStatus::Refunded, "2026-01-10T10:00:00Z"), seen), &m);
        assert_eq!(refunded.access_at(seen), None, "inactive");
        // A later reading of the same sale adds its refund to what the first reading said.
        let both: Vec<Event> = [SaleStatus::Approved, SaleStatus::Refunded]
            .iter()
            .flat_map(|s| sale_events(&sale("HP1", *s, "2026-01-10T10:00:00Z"), seen))
            .collect();
        assert_eq!(grant(&both, &m).access_at(seen), None);
        let fixed = grant(
            &sale_events(&sale("HP1", SaleStatus::Complete, "2026-01-10T10:00:00Z"), seen),
            &mapping(AccessPolicy::FixedDays { days: 365 }),
        );
        assert_eq!(fixed.access_at(seen), Some(Some(ts("2027-01-10T10:00:00Z"))));
    }

    #[test]
    fn three_paid_months_then_a_cancellation_keep_access_to_the_paid_date_without_grace() {
        let m = mapping(MONTHLY);
        let seen = ts("2026-03-25T12:00:00Z");
        let active = subscription(SubscriptionStatus::Active, "2026-04-10T10:00:00Z", three_paid_months());
        assert_eq!(
            grant(&subscription_events(&active, seen), &m).access_at(seen),
            Some(Some(ts("2026-04-13T10:00:00Z"))),
            "paid date + 3 grace days"
        );
        let cancelled = SubscriptionRecord {
            status: SubscriptionStatus::CancelledByCustomer,
            cancelled_at: Some(ts("2026-03-20T08:00:00Z")),
            ..active
        };
        let g = grant(&subscription_events(&cancelled, seen), &m);
        assert_eq!(g.access_at(seen), Some(Some(ts("2026-04-10T10:00:00Z"))), "until the paid date, no grace");
        assert_eq!(g.access_at(ts("2026-04-10T10:00:00Z")), None, "then removed");
    }

    #[test]
    fn a_refund_of_the_current_month_ends_access_at_once_and_of_an_older_month_changes_nothing() {
        let m = mapping(MONTHLY);
        let seen = ts("2026-03-25T12:00:00Z");
        let mut charges = three_paid_months();
        charges[2].status = SaleStatus::Refunded;
        let current = subscription(SubscriptionStatus::Active, "2026-04-10T10:00:00Z", charges);
        let g = grant(&subscription_events(&current, seen), &m);
        assert_eq!(g.end(), Some(Some(seen)), "ends at the refund, which the backfill saw now");
        assert_eq!(g.access_at(seen), None);

        let mut charges = three_paid_months();
        charges[1].status = SaleStatus::Refunded;
        let older = subscription(SubscriptionStatus::Active, "2026-04-10T10:00:00Z", charges);
        assert_eq!(
            grant(&subscription_events(&older, seen), &m).access_at(seen),
            Some(Some(ts("2026-04-13T10:00:00Z")))
        );

        // A chargeback of any month ends the whole subscription (mapping default).
        let mut charges = three_paid_months();
        charges[0].status = SaleStatus::Chargeback;
        let charged_back = subscription(SubscriptionStatus::Active, "2026-04-10T10:00:00Z", charges);
        assert_eq!(grant(&subscription_events(&charged_back, seen), &m).end(), None);
    }

    #[test]
    fn refused_retries_and_a_late_renewal_leave_the_paid_period_standing() {
        let m = mapping(MONTHLY);
        let seen = ts("2026-04-12T12:00:00Z");
        let mut charges = three_paid_months();
        charges
            .push(ChargeRecord { approved_at: None, ..charge("T4a", SaleStatus::NoFunds, "2026-04-10T10:00:00Z", 4) });
        charges
            .push(ChargeRecord { approved_at: None, ..charge("T4b", SaleStatus::Overdue, "2026-04-10T10:00:00Z", 4) });
        let delayed = subscription(SubscriptionStatus::Delayed, "2026-04-10T10:00:00Z", charges.clone());
        let g = grant(&subscription_events(&delayed, seen), &m);
        assert_eq!(g.access_at(seen), Some(Some(ts("2026-04-13T10:00:00Z"))), "grace running");
        // The retry is paid under a new transaction: access continues to the new date.
        charges.push(charge("T4c", SaleStatus::Approved, "2026-04-12T09:00:00Z", 4));
        let paid = subscription(SubscriptionStatus::Active, "2026-05-10T10:00:00Z", charges);
        let g = grant(&subscription_events(&paid, seen), &m);
        assert_eq!(g.access_at(seen), Some(Some(ts("2026-05-13T10:00:00Z"))));
    }

    // ---- Against the webhooks of the same facts ---------------------------------------------

    fn webhook(name: &str) -> Value {
        let path = format!("{}/../tests/fixtures/hotmart/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn normalized(body: &Value) -> Event {
        // Received after every fixture's envelope time, so none is clamped.
        hotmart::normalize(&serde_json::to_vec(body).unwrap(), ts("2025-11-26T00:00:00Z")).unwrap()
    }

    /// The export's first row is the sale of the `purchase_approved` webhook fixture.
    fn csv_sale() -> SaleRecord {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hotmart-sales-export.csv");
        let sales = read_sales_csv(&std::fs::read(path).unwrap()).unwrap();
        sales.rows.into_iter().find(|r| r.transaction.as_str() == "HP16015479281022").unwrap()
    }

    #[test]
    fn a_one_off_sale_reaches_the_grant_its_webhooks_reach() {
        let m = mapping(LIFETIME);
        let seen = ts("2026-03-01T12:00:00Z");
        let approved_webhook = normalized(&webhook("purchase_approved"));
        let approved_csv = csv_sale();
        // Approved: the very same grant, facts and owner included.
        let from_webhook = grant([&approved_webhook], &m);
        let from_backfill = grant(&sale_events(&approved_csv, seen), &m);
        assert_eq!(from_backfill, from_webhook);
        assert_eq!(from_backfill.access_at(seen), Some(None));

        // Refunded: the backfill knows no refund date, so it refunds at `seen`; access is the same.
        let refunded_webhook = normalized(&webhook("purchase_refunded"));
        let refunded_csv = SaleRecord { status: SaleStatus::Refunded, ..approved_csv.clone() };
        let from_webhooks = grant([&approved_webhook, &refunded_webhook], &m);
        let from_backfill = grant(&sale_events(&refunded_csv, seen), &m);
        for at in ["2025-11-24T14:23:12Z", "2026-03-01T12:00:00Z", "2027-01-01T00:00:00Z"] {
            assert_eq!(from_backfill.access_at(ts(at)), from_webhooks.access_at(ts(at)), "{at}");
            assert_eq!(from_backfill.access_at(ts(at)), None, "{at}");
        }
        // Mixed: the approval arrived live, the refund only through a reconciliation.
        let mixed: Vec<Event> = std::iter::once(approved_webhook).chain(sale_events(&refunded_csv, seen)).collect();
        assert_eq!(grant(&mixed, &m).access_at(seen), None);
    }

    #[test]
    fn the_export_fixture_gives_the_events_of_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hotmart-sales-export.csv");
        let sales = read_sales_csv(&std::fs::read(path).unwrap()).unwrap();
        let events = backfill_events(&sales.rows, &[], ts("2026-03-01T12:00:00Z"));
        let facts: Vec<String> =
            events.iter().map(|e| format!("{} {}", e.charge.as_ref().unwrap().id, e.change)).collect();
        assert_eq!(
            facts,
            [
                "HP16015479281022 approve",
                "HP22200000000001 complete",
                "HP22200000000002 approve",
                "HP22200000000002 revoke",
                "HP22200000000003 approve",
                "HP22200000000003 revoke",
                "HP22200000000004 fail",
                // Waiting for a billet: nothing. Refused card: failed. The two recurring
                // charges (Recuperador Inteligente, 2a cobrança) are their subscription's.
                "HP22200000000006 fail",
                "HP22200000000011 approve",
            ]
        );
        for event in &events {
            assert_eq!(Event::from_json(&event.to_json()).unwrap(), *event);
        }
    }

    #[test]
    fn the_same_sale_from_the_api_and_from_the_csv_gets_the_same_events() {
        let seen = ts("2026-03-01T12:00:00Z");
        let item = json!({
            "product": {"name": "Curso de Exemplo", "id": 4774438},
            "buyer": {"name": "Ana Souza", "email": "ana.souza@example.com"},
            "purchase": {"transaction": "HP16015479281022", "order_date": 1763994180000i64,
                         "approved_date": 1763994190000i64, "status": "APPROVED", "is_subscription": false,
                         "offer": {"code": "test"}, "price": {"value": 1500, "currency_code": "BRL"}}
        });
        let from_api = sale_events(&SaleRecord::from_api(&item).unwrap(), seen);
        let from_csv = sale_events(&csv_sale(), seen);
        let facts = |events: &[Event]| {
            events
                .iter()
                .map(|e| (e.id.clone(), e.change.clone(), e.effective_at, e.grant_id.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(facts(&from_api), facts(&from_csv));
        assert_eq!(from_api[0].id.as_str(), "hotmart:backfill:HP16015479281022:approve");
    }

    fn webhook_subscription(status: SubscriptionStatus) -> SubscriptionRecord {
        // The facts of the `subscription_purchase_approved` and `subscription_cancellation` fixtures.
        let mut sub = subscription(
            status,
            "2025-12-24T14:23:10Z",
            vec![charge("HP17715690036014", SaleStatus::Approved, "2025-11-24T14:23:10Z", 2)],
        );
        sub.cancelled_at = status.is_cancelled().then(|| Timestamp::from_unix_millis(1_764_080_590_000).unwrap());
        sub
    }

    #[test]
    fn a_subscription_reaches_the_grant_its_webhooks_reach() {
        let m = mapping(MONTHLY);
        let seen = ts("2025-11-30T12:00:00Z");
        let approved_webhook = normalized(&webhook("subscription_purchase_approved"));
        let from_webhook = grant([&approved_webhook], &m);
        let from_backfill = grant(&subscription_events(&webhook_subscription(SubscriptionStatus::Active), seen), &m);
        assert_eq!(from_backfill, from_webhook, "same charges, coverage, plan and owner");
        assert_eq!(from_backfill.access_at(seen), Some(Some(ts("2025-12-27T14:23:10Z"))));
        assert_eq!(from_backfill.placements(&m), from_webhook.placements(&m));

        let cancel_webhook = normalized(&webhook("subscription_cancellation"));
        let from_webhooks = grant([&approved_webhook, &cancel_webhook], &m);
        let cancelled = webhook_subscription(SubscriptionStatus::CancelledByCustomer);
        let from_backfill = grant(&subscription_events(&cancelled, seen), &m);
        assert_eq!(from_backfill, from_webhooks, "the cancellation too");
        assert_eq!(from_backfill.access_at(seen), Some(Some(ts("2025-12-24T14:23:10Z"))));
    }
}
