//! What can go wrong, in texts that name the problem and never a credential, URL or email.

/// Why a Hotmart call failed. One line each, naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum HotmartApiError {
    /// The settings cannot work (a start-up error).
    #[error("Hotmart API settings: {0}")]
    Config(&'static str),
    /// The query cannot be sent as it is (a caller's bug).
    #[error("{what}: {reason}")]
    BadQuery {
        /// The call.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token call refused the credentials.
    #[error("Hotmart rejected HOTMART_CLIENT_ID/HOTMART_CLIENT_SECRET (token call: HTTP {status}{})", error.as_deref().map(|e| format!(" {e}")).unwrap_or_default())]
    Credentials {
        /// 400, 401 or 403.
        status: u16,
        /// Hotmart's error code.
        error: Option<String>,
    },
    /// The token call answered 200 without a usable token.
    #[error("Hotmart's token answer is unusable ({error})")]
    TokenAnswer {
        /// What is missing or wrong.
        error: String,
    },
    /// A fresh token was refused too.
    #[error("Hotmart refused a freshly issued access token (HTTP 401 {error})")]
    Unauthorized {
        /// Hotmart's error code (`unauthorized`, `token_expired`, `invalid_token`).
        error: String,
    },
    /// The credential may not do this.
    #[error("Hotmart denied {what} (HTTP 403 {error}): the credential lacks the permission")]
    Forbidden {
        /// The call.
        what: &'static str,
        /// Hotmart's error code.
        error: String,
    },
    /// No such resource (an unknown subscriber code).
    #[error("Hotmart found nothing for {what} (HTTP 404)")]
    NotFound {
        /// The call.
        what: &'static str,
    },
    /// A 400: a bad parameter, or, when every call gets it, a Hotmart incident (seen live).
    #[error("Hotmart refused the parameters of {what} (HTTP 400 {error}): {description}")]
    InvalidParameter {
        /// The call.
        what: &'static str,
        /// Hotmart's error code.
        error: String,
        /// Hotmart's text, scrubbed.
        description: String,
    },
    /// The page token is not (or no longer) valid: restart the walk.
    #[error("Hotmart refused the page token of {what} (HTTP 400 invalid_token); restart from the first page")]
    InvalidPageToken {
        /// The call.
        what: &'static str,
    },
    /// Split the window and ask again.
    #[error("the window of {what} is too wide ({reason}); split it")]
    QueryTooWide {
        /// The call.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// 429 on every try.
    #[error("Hotmart rate-limited {what} on all {attempts} attempts")]
    RateLimited {
        /// The call.
        what: &'static str,
        /// Tries made.
        attempts: u32,
    },
    /// 5xx (or a 200 carrying an error) on every try.
    #[error("Hotmart failed {what} with HTTP {status} {error} on all {attempts} attempts")]
    Unavailable {
        /// The call.
        what: &'static str,
        /// The last status.
        status: u16,
        /// Hotmart's error code, if any.
        error: String,
        /// Tries made.
        attempts: u32,
    },
    /// The last answer was not the expected JSON (an HTML page, an empty body).
    #[error("Hotmart answered {what} with HTTP {status} and no usable JSON: {snippet}")]
    NotJson {
        /// The call.
        what: &'static str,
        /// Its status.
        status: u16,
        /// The start of the body, scrubbed.
        snippet: String,
    },
    /// A status this client has no rule for.
    #[error("Hotmart answered {what} with an unexpected HTTP {status} {error}")]
    Unexpected {
        /// The call.
        what: &'static str,
        /// Its status.
        status: u16,
        /// Hotmart's error code, if any.
        error: String,
    },
    /// No answer on any try.
    #[error("{what}: {cause}")]
    Transport {
        /// The call.
        what: &'static str,
        /// A fixed text.
        cause: String,
    },
    /// Hotmart handed back a page token already followed: the walk would never end.
    #[error("{what}: Hotmart repeated a page token; stopping the walk")]
    RepeatedPageToken {
        /// The call.
        what: &'static str,
    },
    /// More pages than any real query has.
    #[error("{what}: stopped after {pages} pages")]
    TooManyPages {
        /// The call.
        what: &'static str,
        /// Pages read.
        pages: u32,
    },
}
