//! One sentence saying why a student has or lacks a course, from the same facts the rules
//! decide with (the console's student page): "active until 3 Dec 2026 by subscription
//! I9OT62C3: paid through 30 Nov 2026 + 3 days grace".

use crate::admin;
use crate::policy::{AccessPolicy, ChargebackPolicy, DisputePolicy};
use crate::rules::{Enrollment, Grant};
use crate::timestamp::Timestamp;

/// Why the enrollment gives access at `now`, or why not.
pub fn why(enrollment: &Enrollment, now: Timestamp) -> String {
    let grants: Vec<(&str, &Grant)> = enrollment.grants.iter().map(|(k, g)| (k.as_str(), g)).collect();
    let counted: Vec<&(&str, &Grant)> = grants.iter().filter(|(_, g)| enrollment.unblocked(g)).collect();
    // The grant that gives the longest access explains an active course.
    let best =
        counted.iter().filter_map(|entry| Some((entry.1.access_at(now)?, entry))).max_by(|(a, _), (b, _)| {
            match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, _) => std::cmp::Ordering::Greater,
                (_, None) => std::cmp::Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            }
        });
    if let Some((end, (key, grant))) = best {
        let until = match end {
            Some(end) => format!("active until {}", end.day()),
            None => "active with no end".to_owned(),
        };
        return format!("{until} {}: {}", name(key, grant), active_reason(key, grant));
    }
    if grants.is_empty() {
        return "no access: nothing the bridge knows gives this course".to_owned();
    }
    if let Some(blocked) = enrollment.blocked {
        if counted.len() < grants.len() && grants.iter().any(|(_, g)| g.access_at(now).is_some()) {
            return format!("no access: ended by hand on {}", blocked.day());
        }
    }
    let reasons: Vec<String> = grants
        .iter()
        .map(|(key, grant)| {
            let reason = if enrollment.unblocked(grant) {
                inactive_reason(key, grant, now)
            } else {
                format!("ended by hand on {}", enrollment.blocked.map(Timestamp::day).unwrap_or_default())
            };
            format!("{} {reason}", name(key, grant))
        })
        .collect();
    format!("no access: {}", reasons.join("; "))
}

/// `subscription I9OT62C3`, `purchase HP123`, `grant by hand`.
fn name(key: &str, grant: &Grant) -> String {
    let (source, id) = key.split_once("__").unwrap_or(("", key));
    if source == admin::SOURCE {
        return "by hand".to_owned();
    }
    let kind = if matches!(grant.policy, AccessPolicy::Subscription { .. }) { "subscription" } else { "purchase" };
    format!("by {kind} {id}")
}

fn approved(grant: &Grant) -> String {
    grant.latest_approval().map(|t| t.day()).unwrap_or_else(|| "an unknown day".to_owned())
}

fn active_reason(key: &str, grant: &Grant) -> String {
    if key.starts_with(&format!("{}__", admin::SOURCE)) {
        return format!("granted on {}", approved(grant));
    }
    match grant.policy {
        AccessPolicy::Lifetime => format!("lifetime access, approved {}", approved(grant)),
        AccessPolicy::FixedDays { days } => format!("{days} days from its approval on {}", approved(grant)),
        AccessPolicy::Subscription { grace_days } => match (&grant.cancellation, grant.paid_through()) {
            (Some(cancel), Some(paid)) => {
                format!("cancelled on {}, runs to the end of the period paid ({})", cancel.at.day(), paid.day())
            }
            (None, Some(paid)) => format!("paid through {} + {grace_days} days grace", paid.day()),
            (_, None) => format!("approved {}, no next charge date known", approved(grant)),
        },
    }
}

fn inactive_reason(key: &str, grant: &Grant, now: Timestamp) -> String {
    let charges = || grant.charges.values();
    if let Some(at) = grant.revoked {
        return format!("revoked on {}", at.day());
    }
    if grant.chargeback == ChargebackPolicy::RevokeGrant {
        if let Some(at) = charges().filter_map(|c| c.charged_back).min() {
            return format!("charged back on {}", at.day());
        }
    }
    if grant.dispute == DisputePolicy::Suspend {
        if let Some(at) = charges().filter(|c| c.is_disputed()).filter_map(|c| c.disputed).max() {
            return format!("suspended by a dispute opened on {}", at.day());
        }
    }
    if !charges().any(|c| c.is_valid()) {
        if let Some(at) = charges().filter_map(|c| c.refunded).min() {
            return format!("refunded on {}", at.day());
        }
        if let Some(at) = charges().filter_map(|c| c.charged_back).min() {
            return format!("charged back on {}", at.day());
        }
        if let Some(at) = charges().filter_map(|c| c.failed).min() {
            return format!("payment did not go through ({})", at.day());
        }
        return "not approved (yet)".to_owned();
    }
    let ended = match grant.end() {
        Some(Some(end)) if end <= now => end,
        // Active by itself: only a block by hand leaves it out, and the caller says so.
        _ => return "gives no access now".to_owned(),
    };
    let ago = format!("ended on {}", ended.day());
    if key.starts_with(&format!("{}__", admin::SOURCE)) {
        return format!("granted on {}, {ago}", approved(grant));
    }
    match grant.policy {
        AccessPolicy::Lifetime => ago,
        AccessPolicy::FixedDays { days } => format!("{days} days from its approval on {}, {ago}", approved(grant)),
        AccessPolicy::Subscription { grace_days } => {
            let revoked_latest = charges().filter(|c| c.revoked_at().is_some()).count() > 0;
            match (&grant.cancellation, grant.paid_through()) {
                (Some(cancel), _) => format!("cancelled on {}, {ago}", cancel.at.day()),
                (None, Some(paid)) if !revoked_latest || paid.plus_days(grace_days) == ended => {
                    format!("paid through {} + {grace_days} days grace, {ago}", paid.day())
                }
                _ => format!("its latest charge was refunded, {ago}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, Charge, Event, Product, Student};
    use crate::ids::{ChargeId, CourseId, Email, EventId, GrantId, ProductId, SourceName};
    use crate::policy::ProductMapping;
    use crate::rules::grant_key;
    use crate::RevokeReason;
    use std::collections::BTreeMap;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn mapping(policy: AccessPolicy) -> ProductMapping {
        ProductMapping {
            source: SourceName::parse("hotmart").unwrap(),
            product_id: ProductId::parse("9").unwrap(),
            courses: vec![CourseId::parse("201").unwrap()],
            policy,
            dispute: DisputePolicy::Suspend,
            chargeback: ChargebackPolicy::RevokeGrant,
            plans: BTreeMap::new(),
        }
    }

    fn event(change: Change, charge: &str, when: &str, next: Option<&str>) -> Event {
        Event {
            schema: crate::SCHEMA.into(),
            id: EventId::parse(format!("hotmart:{charge}-{when}-{}", change.kind())).unwrap(),
            source: SourceName::parse("hotmart").unwrap(),
            source_event: "X".into(),
            change,
            occurred_at: at(when),
            received_at: at(when),
            effective_at: at(when),
            clamped: false,
            student: Some(Student::new(Email::parse("ana@example.com").unwrap())),
            product: Some(Product { id: ProductId::parse("9").unwrap(), name: None, offer: None, plan: None }),
            grant_id: Some(GrantId::parse("I9OT62C3").unwrap()),
            charge: Some(Charge {
                id: ChargeId::parse(charge).unwrap(),
                approved_at: None,
                next_charge_at: next.map(at),
            }),
            subscription: None,
            amount: None,
            raw: None,
            raw_truncated: false,
            raw_sha256: None,
            admin: None,
        }
    }

    fn enrollment(policy: AccessPolicy, events: &[Event], now: &str) -> Enrollment {
        let mapping = mapping(policy);
        let mut grant = Grant::new(&mapping);
        for e in events {
            grant.record(e, &mapping).unwrap();
        }
        let key = grant_key(&SourceName::parse("hotmart").unwrap(), &GrantId::parse("I9OT62C3").unwrap());
        Enrollment::default().place(&CourseId::parse("201").unwrap(), &key, Some(&grant), at(now)).enrollment
    }

    #[test]
    fn an_active_subscription_names_its_paid_date_and_grace() {
        let sub = AccessPolicy::Subscription { grace_days: 3 };
        let paid = event(Change::Approve, "T1", "2026-10-31T00:00:00Z", Some("2026-11-30T00:00:00Z"));
        let e = enrollment(sub, std::slice::from_ref(&paid), "2026-11-25T00:00:00Z");
        assert_eq!(
            why(&e, at("2026-11-25T00:00:00Z")),
            "active until 3 Dec 2026 by subscription I9OT62C3: paid through 30 Nov 2026 + 3 days grace"
        );
        assert_eq!(
            why(&e, at("2026-12-04T00:00:00Z")),
            "no access: by subscription I9OT62C3 paid through 30 Nov 2026 + 3 days grace, ended on 3 Dec 2026"
        );
    }

    #[test]
    fn refunds_chargebacks_disputes_and_blocks_are_named_with_their_day() {
        let life = AccessPolicy::Lifetime;
        let paid = event(Change::Approve, "T1", "2026-11-01T00:00:00Z", None);
        let now = "2026-11-25T00:00:00Z";
        let refund = event(Change::Revoke { reason: RevokeReason::Refunded }, "T1", "2026-11-02T00:00:00Z", None);
        let e = enrollment(life, &[paid.clone(), refund], now);
        assert_eq!(why(&e, at(now)), "no access: by purchase I9OT62C3 refunded on 2 Nov 2026");
        let chargeback = event(Change::Revoke { reason: RevokeReason::Chargeback }, "T1", "2026-11-03T00:00:00Z", None);
        let e = enrollment(life, &[paid.clone(), chargeback], now);
        assert_eq!(why(&e, at(now)), "no access: by purchase I9OT62C3 charged back on 3 Nov 2026");
        let dispute = event(Change::Dispute, "T1", "2026-11-04T00:00:00Z", None);
        let e = enrollment(life, &[paid.clone(), dispute], now);
        assert_eq!(why(&e, at(now)), "no access: by purchase I9OT62C3 suspended by a dispute opened on 4 Nov 2026");
        let e = enrollment(life, &[paid], now);
        assert_eq!(why(&e, at(now)), "active with no end by purchase I9OT62C3: lifetime access, approved 1 Nov 2026");
        let course = CourseId::parse("201").unwrap();
        let blocked = e.block(&course, at("2026-11-20T00:00:00Z"), at(now)).enrollment;
        assert_eq!(why(&blocked, at(now)), "no access: ended by hand on 20 Nov 2026");
        assert_eq!(why(&Enrollment::default(), at(now)), "no access: nothing the bridge knows gives this course");
    }
}
