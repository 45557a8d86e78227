//! Who is asking and what they may do: IAP's signed header checked here too (a request that
//! reached the service some other way must not pass), the email looked up in the allowlists,
//! and the forms' CSRF tokens.

use super::iap::{IapError, IapVerifier, HEADER};
use crate::settings::AdminGate;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeSet;
use subtle::ConstantTimeEq;

/// What someone may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Looks only.
    Viewer,
    /// Looks and acts.
    Operator,
}

/// The person behind a request.
#[derive(Clone)]
pub struct Who {
    /// Their email (`local` when the console runs open).
    pub email: String,
    /// What they may do.
    pub role: Role,
}

/// Why a request is refused: each a page with its own status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No or a bad IAP assertion (401).
    #[error("sign-in required: {0}")]
    Unauthenticated(String),
    /// Signed in, but on neither allowlist (403).
    #[error("your account is not allowed to use this console; ask an administrator to add it to ADMIN_OPERATORS or ADMIN_VIEWERS")]
    NotListed,
    /// A viewer tried to act (403).
    #[error("viewers can look but not act; ask an administrator to make you an operator")]
    ViewerCannotAct,
    /// A form without a valid token, or posted from another site (403).
    #[error("this form has expired or did not come from this console; reload the page and try again")]
    Csrf,
    /// IAP's keys cannot be fetched now (503).
    #[error("cannot check your sign-in now ({0}); try again in a minute")]
    Unavailable(String),
}

enum Mode {
    Open,
    Iap { verifier: Box<IapVerifier>, operators: BTreeSet<String>, viewers: BTreeSet<String> },
}

/// The console's gate.
pub struct Gate {
    mode: Mode,
    csrf_key: Vec<u8>,
}

/// A CSRF token lasts the day it was made and the next.
const DAY_MILLIS: i64 = 86_400_000;

impl Gate {
    /// From the settings; `csrf_key` `None` draws a random key for this process.
    pub fn new(gate: &AdminGate, csrf_key: Option<&str>) -> Self {
        let mode = match gate {
            AdminGate::Open => Mode::Open,
            AdminGate::Iap { audience, jwks_url, operators, viewers } => Mode::Iap {
                verifier: Box::new(IapVerifier::new(audience.clone(), jwks_url.clone())),
                operators: operators.clone(),
                viewers: viewers.clone(),
            },
        };
        let csrf_key = match csrf_key {
            Some(key) => key.as_bytes().to_vec(),
            None => {
                use rand::RngCore;
                let mut key = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                key
            }
        };
        Self { mode, csrf_key }
    }

    /// Whether anyone may use the console unasked.
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// Who sent these headers.
    pub async fn who(&self, headers: &HeaderMap) -> Result<Who, Refusal> {
        let Mode::Iap { verifier, operators, viewers } = &self.mode else {
            return Ok(Who { email: "local".to_owned(), role: Role::Operator });
        };
        let header = headers.get(HEADER).and_then(|v| v.to_str().ok());
        let identity = verifier.verify(header).await.map_err(|e| match e {
            IapError::Keys(reason) => Refusal::Unavailable(reason),
            other => Refusal::Unauthenticated(other.to_string()),
        })?;
        let role = if operators.contains(&identity.email) {
            Role::Operator
        } else if viewers.contains(&identity.email) {
            Role::Viewer
        } else {
            return Err(Refusal::NotListed);
        };
        Ok(Who { email: identity.email, role })
    }

    fn token_for(&self, email: &str, day: i64) -> String {
        // A fixed key length is accepted by HMAC whatever it is.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.csrf_key) else { return String::new() };
        mac.update(format!("lms-bridge-admin-csrf|{email}|{day}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The token this person's forms carry today.
    pub fn csrf_token(&self, who: &Who, now_millis: i64) -> String {
        self.token_for(&who.email, now_millis.div_euclid(DAY_MILLIS))
    }

    /// Checks a posted form: an operator, a token made for them today or yesterday, and no
    /// browser saying it came from another site.
    pub fn check_form(&self, who: &Who, token: &str, headers: &HeaderMap, now_millis: i64) -> Result<(), Refusal> {
        if who.role != Role::Operator {
            return Err(Refusal::ViewerCannotAct);
        }
        self.check_token(who, token, headers, now_millis)
    }

    /// Checks a posted form anyone signed in may send (the search).
    pub fn check_token(&self, who: &Who, token: &str, headers: &HeaderMap, now_millis: i64) -> Result<(), Refusal> {
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if site.is_some_and(|s| s != "same-origin" && s != "none") {
            return Err(Refusal::Csrf);
        }
        let today = now_millis.div_euclid(DAY_MILLIS);
        let valid = [today, today - 1].iter().any(|day| {
            let expected = self.token_for(&who.email, *day);
            !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
        });
        if valid {
            Ok(())
        } else {
            Err(Refusal::Csrf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(&AdminGate::Open, Some("key"))
    }

    #[test]
    fn a_token_is_good_for_its_person_today_and_tomorrow_only() {
        let gate = gate();
        let ana = Who { email: "ana@example.com".into(), role: Role::Operator };
        let bob = Who { email: "bob@example.com".into(), role: Role::Operator };
        let now = 1_780_000_000_000;
        let token = gate.csrf_token(&ana, now);
        let headers = HeaderMap::new();
        assert!(gate.check_form(&ana, &token, &headers, now).is_ok());
        assert!(gate.check_form(&ana, &token, &headers, now + DAY_MILLIS).is_ok());
        assert_eq!(gate.check_form(&ana, &token, &headers, now + 2 * DAY_MILLIS), Err(Refusal::Csrf));
        assert_eq!(gate.check_form(&bob, &token, &headers, now), Err(Refusal::Csrf));
        assert_eq!(gate.check_form(&ana, "", &headers, now), Err(Refusal::Csrf));
        let other_key = Gate::new(&AdminGate::Open, Some("another key"));
        assert_eq!(other_key.check_form(&ana, &token, &headers, now), Err(Refusal::Csrf));
    }

    #[test]
    fn viewers_and_other_sites_cannot_post() {
        let gate = gate();
        let viewer = Who { email: "v@example.com".into(), role: Role::Viewer };
        let now = 1_780_000_000_000;
        let token = gate.csrf_token(&viewer, now);
        assert_eq!(gate.check_form(&viewer, &token, &HeaderMap::new(), now), Err(Refusal::ViewerCannotAct));
        assert!(gate.check_token(&viewer, &token, &HeaderMap::new(), now).is_ok());
        let mut cross = HeaderMap::new();
        cross.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert_eq!(gate.check_token(&viewer, &token, &cross, now), Err(Refusal::Csrf));
    }
}
