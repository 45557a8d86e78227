//! Product mappings: which LMS courses a product gives, and for how long.

use crate::ids::{CourseId, ProductId, SourceName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long a grant gives access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AccessPolicy {
    /// No end.
    Lifetime,
    /// A fixed number of days from the first approval.
    FixedDays {
        /// Length of the access, in days.
        days: u32,
    },
    /// While paid: through the paid-through date plus a grace period for late payments.
    Subscription {
        /// Days of access kept after a missed charge.
        grace_days: u32,
    },
}

/// What an open dispute (e.g. PURCHASE_PROTEST) does to access until it is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputePolicy {
    /// Keep access (the default: most disputes end without a refund).
    #[default]
    Keep,
    /// Suspend access until a later approval or a revocation settles it.
    Suspend,
}

/// What a chargeback of one charge does to its grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargebackPolicy {
    /// The whole grant ends for good (the default: a chargeback is a fraud signal).
    #[default]
    RevokeGrant,
    /// Only that charge is revoked, exactly like a refund.
    RevokeCharge,
}

/// One product's mapping to LMS courses (`products/{source}__{product id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductMapping {
    /// The platform selling the product.
    pub source: SourceName,
    /// The platform's product id.
    pub product_id: ProductId,
    /// Courses every plan of the product gives.
    pub courses: Vec<CourseId>,
    /// How long access lasts.
    pub policy: AccessPolicy,
    /// What a dispute does.
    #[serde(default)]
    pub dispute: DisputePolicy,
    /// What a chargeback does.
    #[serde(default)]
    pub chargeback: ChargebackPolicy,
    /// Plans whose courses differ from `courses`, by plan id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<String, Vec<CourseId>>,
}

impl ProductMapping {
    /// The courses a grant on this plan (or on no particular plan) gives.
    pub fn courses_for(&self, plan: Option<&str>) -> &[CourseId] {
        plan.and_then(|p| self.plans.get(p)).unwrap_or(&self.courses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course(id: &str) -> CourseId {
        CourseId::parse(id).unwrap()
    }

    #[test]
    fn plans_override_the_default_courses() {
        let mapping = ProductMapping {
            source: SourceName::parse("hotmart").unwrap(),
            product_id: ProductId::parse("1").unwrap(),
            courses: vec![course("10")],
            policy: AccessPolicy::Subscription { grace_days: 3 },
            dispute: DisputePolicy::Keep,
            chargeback: ChargebackPolicy::RevokeGrant,
            plans: BTreeMap::from([("124".to_owned(), vec![course("10"), course("11")])]),
        };
        assert_eq!(mapping.courses_for(None), &[course("10")]);
        assert_eq!(mapping.courses_for(Some("123")), &[course("10")]);
        assert_eq!(mapping.courses_for(Some("124")), &[course("10"), course("11")]);
    }

    #[test]
    fn policies_read_from_json() {
        let p: AccessPolicy = serde_json::from_str(r#"{"type":"fixed_days","days":365}"#).unwrap();
        assert_eq!(p, AccessPolicy::FixedDays { days: 365 });
    }
}
