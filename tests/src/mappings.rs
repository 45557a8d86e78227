//! The test catalogue: which Hotmart product grants which courses, under which policy, as the
//! mappings TOML the backend imports. Tests pick a named catalogue, or build one.
//!
//! | catalogue | product | courses | policy |
//! | --- | --- | --- | --- |
//! | [`sample`] | 4774438 (the fixtures' product) | 101 | lifetime |
//! | [`backend`] | 4774438 | 101 | subscription, grace 0 |
//! | | 5000 | 101, 102 | lifetime |
//! | | 6000 | 102 | lifetime |
//! | | 7000 | 103 | 365 days |
//! | [`chain`] | 4774438 | 101 | lifetime |
//! | | 4774439 | 102 | subscription, grace 0 |
//! | | 4774440 | 103 | 365 days |
//!
//! Product 0 is Hotmart's test button and is never mapped.

use std::fmt;

/// The product of every Hotmart sample in `tests/fixtures/hotmart/`.
pub const SAMPLE_PRODUCT: u64 = 4774438;

/// How long a product's courses last.
#[derive(Clone, Copy, Debug)]
pub enum Policy {
    /// For good.
    Lifetime,
    /// While paid, plus `grace_days`.
    Subscription {
        /// Days of access after the paid-through date.
        grace_days: u32,
    },
    /// A fixed number of days from the approval.
    FixedDays(u32),
}

/// One `[[product]]` table.
#[derive(Clone, Debug)]
pub struct Product {
    id: u64,
    courses: Vec<String>,
    policy: Policy,
}

/// A mappings file under construction.
#[derive(Clone, Debug, Default)]
pub struct Mappings {
    products: Vec<Product>,
}

impl Mappings {
    /// No product.
    pub fn new() -> Self {
        Self::default()
    }

    /// A Hotmart product granting `courses` under `policy`.
    pub fn product(mut self, id: u64, courses: &[&str], policy: Policy) -> Self {
        self.products.push(Product { id, courses: courses.iter().map(|c| (*c).to_owned()).collect(), policy });
        self
    }

    /// A product granting `courses` for good.
    pub fn lifetime(self, id: u64, courses: &[&str]) -> Self {
        self.product(id, courses, Policy::Lifetime)
    }

    /// A subscription product.
    pub fn subscription(self, id: u64, courses: &[&str], grace_days: u32) -> Self {
        self.product(id, courses, Policy::Subscription { grace_days })
    }

    /// A product granting `courses` for `days` from the approval.
    pub fn fixed_days(self, id: u64, courses: &[&str], days: u32) -> Self {
        self.product(id, courses, Policy::FixedDays(days))
    }

    /// How many products.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Whether there is no product.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// The TOML text `lms-bridge mappings import` reads.
    pub fn toml(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Mappings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.products.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let courses: Vec<String> = p.courses.iter().map(|c| format!("{c:?}")).collect();
            let policy = match p.policy {
                Policy::Lifetime => "{ type = \"lifetime\" }".to_owned(),
                Policy::Subscription { grace_days } => {
                    format!("{{ type = \"subscription\", grace_days = {grace_days} }}")
                }
                Policy::FixedDays(days) => format!("{{ type = \"fixed_days\", days = {days} }}"),
            };
            writeln!(f, "[[product]]")?;
            writeln!(f, "source = \"hotmart\"")?;
            writeln!(f, "product_id = \"{}\"", p.id)?;
            writeln!(f, "courses = [{}]", courses.join(", "))?;
            writeln!(f, "policy = {policy}")?;
        }
        Ok(())
    }
}

/// The fixtures' product for life: course 101.
pub fn sample() -> Mappings {
    Mappings::new().lifetime(SAMPLE_PRODUCT, &["101"])
}

/// The backend tests' catalogue: the fixtures' product as a subscription (course 101), two
/// lifetime products sharing course 102 (5000: 101 and 102; 6000: 102), a 365-day product (7000:
/// 103).
pub fn backend() -> Mappings {
    Mappings::new()
        .subscription(SAMPLE_PRODUCT, &["101"], 0)
        .lifetime(5000, &["101", "102"])
        .lifetime(6000, &["102"])
        .fixed_days(7000, &["103"], 365)
}

/// The whole chain's catalogue: one product per policy (4774438 lifetime: 101; 4774439
/// subscription: 102; 4774440 365 days: 103).
pub fn chain() -> Mappings {
    Mappings::new().lifetime(SAMPLE_PRODUCT, &["101"]).subscription(4774439, &["102"], 0).fixed_days(
        4774440,
        &["103"],
        365,
    )
}
