//! What the caller asks for. Statuses are enums so that only values Hotmart accepts are sent
//! (an unknown one is a 400); the rows keep Hotmart's text, which the caller maps.

use lms_bridge_shared::Timestamp;
use std::fmt;

macro_rules! statuses {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs, reason = "Hotmart's own names")]
        pub enum $name { $($variant,)* }

        impl $name {
            /// Every value.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The API's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// From the API's spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

statuses! {
    /// A `transaction_status` Hotmart accepts (REST spellings: not the webhook's).
    SaleStatus {
        Approved = "APPROVED",
        Blocked = "BLOCKED",
        Cancelled = "CANCELLED",
        Chargeback = "CHARGEBACK",
        Complete = "COMPLETE",
        Expired = "EXPIRED",
        NoFunds = "NO_FUNDS",
        Overdue = "OVERDUE",
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        PreOrder = "PRE_ORDER",
        PrintedBillet = "PRINTED_BILLET",
        ProcessingTransaction = "PROCESSING_TRANSACTION",
        Protested = "PROTESTED",
        Refunded = "REFUNDED",
        Started = "STARTED",
        UnderAnalisys = "UNDER_ANALISYS",
        WaitingPayment = "WAITING_PAYMENT",
    }
}

statuses! {
    /// A subscription `status` Hotmart accepts (an unknown one is a 400).
    SubscriptionStatus {
        Active = "ACTIVE",
        Inactive = "INACTIVE",
        Delayed = "DELAYED",
        CancelledByCustomer = "CANCELLED_BY_CUSTOMER",
        CancelledBySeller = "CANCELLED_BY_SELLER",
        CancelledByAdmin = "CANCELLED_BY_ADMIN",
        Started = "STARTED",
        Overdue = "OVERDUE",
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
