//! What the caller asks for, and Hotmart's status vocabularies. Statuses are enums so that
//! only values Hotmart accepts are sent (an unknown one is a 400); the rows keep Hotmart's
//! text, which the backfill's readers map with [`SaleStatus::parse`], naming what they do not
//! know.

use lms_bridge_shared::Timestamp;
use std::fmt;

/// A status text that is none of the known spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(pub String);

/// At most 64 characters of `value`, control characters replaced: for error messages.
fn printable(value: &str) -> String {
    value.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect()
}

macro_rules! statuses {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant,)*];

            /// The REST API's spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Reads the REST API's spelling (trimmed, any ASCII case).
            pub fn parse(text: &str) -> Result<Self, UnknownStatus> {
                let text = text.trim();
                $(if text.eq_ignore_ascii_case($text) {
                    return Ok($name::$variant);
                })*
                Err(UnknownStatus(printable(text)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

statuses!(
    /// A sale's (or one subscription charge's) status: the 17 values of `transaction_status`.
    SaleStatus {
        /// Paid, within the warranty period.
        Approved = "APPROVED",
        /// Paid, warranty period over.
        Complete = "COMPLETE",
        /// Money returned.
        Refunded = "REFUNDED",
        /// Part of the money returned; the purchase stands.
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        /// The card holder disputed the charge with the bank, and won.
        Chargeback = "CHARGEBACK",
        /// A complaint (dispute) is open.
        Protested = "PROTESTED",
        /// The payment did not go through.
        Cancelled = "CANCELLED",
        /// The payment window ran out (billet, PIX).
        Expired = "EXPIRED",
        /// Blocked by the platform.
        Blocked = "BLOCKED",
        /// Refused for lack of funds.
        NoFunds = "NO_FUNDS",
        /// A charge past due.
        Overdue = "OVERDUE",
        /// Waiting for the payment.
        WaitingPayment = "WAITING_PAYMENT",
        /// Checkout started.
        Started = "STARTED",
        /// Billet printed, not paid yet.
        PrintedBillet = "PRINTED_BILLET",
        /// Being processed.
        ProcessingTransaction = "PROCESSING_TRANSACTION",
        /// Under analysis; the API's own misspelling.
        UnderAnalysis = "UNDER_ANALISYS",
        /// A pre-order.
        PreOrder = "PRE_ORDER",
    }
);

statuses!(
    /// A subscription's status (`/subscriptions` `status`).
    SubscriptionStatus {
        /// Last charge paid, in period.
        Active = "ACTIVE",
        /// First charge never paid.
        Inactive = "INACTIVE",
        /// Last charge overdue, still in period (displayed "Overdue").
        Delayed = "DELAYED",
        /// Cancelled by the subscriber.
        CancelledByCustomer = "CANCELLED_BY_CUSTOMER",
        /// Cancelled by the producer.
        CancelledBySeller = "CANCELLED_BY_SELLER",
        /// Cancelled by Hotmart.
        CancelledByAdmin = "CANCELLED_BY_ADMIN",
        /// First charge issued, unpaid (displayed "Initiated").
        Started = "STARTED",
        /// The subscription's duration ended (displayed "Expired").
        Overdue = "OVERDUE",
    }
);

impl SubscriptionStatus {
    /// One of the three cancellations.
    pub fn is_cancelled(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::CancelledByCustomer
                | SubscriptionStatus::CancelledBySeller
                | SubscriptionStatus::CancelledByAdmin
        )
    }
}

/// A `sales/history` query. Dates match `order_date` as far as anyone knows (undocumented).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesQuery {
    /// Window start, inclusive.
    pub start: Timestamp,
    /// Window end, inclusive; at most [`super::MAX_SALES_WINDOW_DAYS`] after `start`.
    pub end: Timestamp,
    /// At least one. Each is walked as its own query (see [`super::HotmartApi::sales_page`]).
    pub statuses: Vec<SaleStatus>,
    /// Hotmart's numeric product id.
    pub product_id: Option<String>,
    /// One transaction.
    pub transaction: Option<String>,
}

/// Which dates a subscriptions query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionWindow {
    /// `accession_date` … `end_accession_date`: subscriptions begun then.
    Accession {
        /// Start, inclusive.
        start: Timestamp,
        /// End, inclusive.
        end: Timestamp,
    },
    /// `cancelation_date` … `end_cancelation_date`: subscriptions cancelled then.
    Cancelation {
        /// Start, inclusive.
        start: Timestamp,
        /// End, inclusive.
        end: Timestamp,
    },
}

/// A `/subscriptions` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionsQuery {
    /// Always explicit: the documented defaults (30 days back) hide older subscriptions.
    pub window: SubscriptionWindow,
    /// At least one; sent as repeated `status` keys, the documented form.
    pub statuses: Vec<SubscriptionStatus>,
    /// Hotmart's numeric product id.
    pub product_id: Option<String>,
    /// One subscriber.
    pub subscriber_code: Option<String>,
    /// One subscriber, by email (what a renewal sale names).
    pub subscriber_email: Option<String>,
}
