//! Domain identifiers: each one is built only through a parsing constructor.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Why a value could not become a domain identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value was empty (after trimming).
    #[error("{kind} is empty")]
    Empty {
        /// Which identifier.
        kind: &'static str,
    },
    /// The value is not well formed.
    #[error("{kind} is invalid: {reason}")]
    Invalid {
        /// Which identifier.
        kind: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Longest identifier we accept: ids end up in Firestore document ids (1500 bytes max).
const MAX_ID_LEN: usize = 256;

fn check_plain(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::Invalid { kind, reason: "longer than 256 bytes" });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::Invalid { kind, reason: "contains control characters" });
    }
    Ok(())
}

macro_rules! plain_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses a trimmed, non-empty identifier of at most 256 bytes.
            pub fn parse(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref().trim();
                check_plain($kind, value)?;
                Ok(Self(value.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For values built here from already-valid parts (no user text).
            #[allow(dead_code)]
            pub(crate) fn trusted(value: String) -> Self {
                Self(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

plain_id!(
    /// Dedupe key of an event: `source:source's own event id`.
    EventId,
    "event id"
);
plain_id!(
    /// A product id in the payment platform, as a string (Hotmart sends numbers and strings).
    ProductId,
    "product id"
);
plain_id!(
    /// A course id in the LMS.
    CourseId,
    "course id"
);
plain_id!(
    /// One grant of access: a transaction code, or a subscriber code for subscriptions.
    GrantId,
    "grant id"
);
plain_id!(
    /// One charge (payment): the platform's transaction id.
    ChargeId,
    "charge id"
);

/// The payment platform an event came from (`hotmart`, later `stripe`, …).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceName(String);

impl SourceName {
    /// Parses a source name: lowercase ASCII letters, digits, `_` and `-`.
    pub fn parse(value: impl AsRef<str>) -> Result<Self, IdError> {
        let value = value.as_ref();
        check_plain("source", value)?;
        let ok = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(IdError::Invalid {
                kind: "source",
                reason: "only lowercase letters, digits, '_' and '-' are allowed",
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For names that are constants of this crate.
    pub(crate) fn trusted(value: String) -> Self {
        Self(value)
    }
}

impl TryFrom<String> for SourceName {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<SourceName> for String {
    fn from(value: SourceName) -> String {
        value.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A student's email, trimmed and ASCII-lowercased.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Trims and lowercases ASCII letters only, then checks the shape `local@domain` without
    /// spaces. Non-ASCII letters are kept as sent: Unicode case rules (`İ` → `i̇`, final sigma,
    /// …) would change a mailbox name, and with it the student key.
    pub fn parse(value: impl AsRef<str>) -> Result<Self, IdError> {
        let value = value.as_ref().trim().to_ascii_lowercase();
        if value.is_empty() {
            return Err(IdError::Empty { kind: "email" });
        }
        if value.len() > 320 {
            return Err(IdError::Invalid { kind: "email", reason: "longer than 320 bytes" });
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IdError::Invalid { kind: "email", reason: "contains whitespace" });
        }
        match value.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
                Ok(Self(value))
            }
            _ => Err(IdError::Invalid { kind: "email", reason: "not of the form local@domain" }),
        }
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The student key derived from this address without a pepper: sha256 hex. Anyone with a
    /// list of emails can recompute it; deployments set a `Pepper`.
    pub fn student_key(&self) -> StudentKey {
        StudentKey(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The student key under `pepper`: HMAC-SHA256 hex of the address, so keys in logs and
    /// document ids cannot be matched against an email list without the secret.
    pub fn student_key_with(&self, pepper: Option<&Pepper>) -> StudentKey {
        let Some(pepper) = pepper else { return self.student_key() };
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&pepper.0).unwrap_or_else(|_| unreachable!());
        mac.update(self.0.as_bytes());
        StudentKey(hex::encode(mac.finalize().into_bytes()))
    }
}

/// The secret that keys student keys (`STUDENT_KEY_PEPPER`): the same at the edge and the
/// backend. Changing it changes every student's key, so it is set once, at installation.
#[derive(Clone, PartialEq, Eq)]
pub struct Pepper(Vec<u8>);

impl Pepper {
    /// A pepper from its secret text (trimmed); `None` when blank.
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Self(secret.as_bytes().to_vec()))
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

// PII: keep emails out of debug output (and so out of logs that format with `{:?}`).
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl TryFrom<String> for Email {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> String {
        value.0
    }
}

/// A student's pseudonymous key: sha256 hex of the normalized email. Safe to log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StudentKey(String);

impl StudentKey {
    /// Parses 64 lowercase hex digits.
    pub fn parse(value: impl AsRef<str>) -> Result<Self, IdError> {
        let value = value.as_ref();
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(IdError::Invalid { kind: "student key", reason: "not 64 lowercase hex digits" });
        }
        Ok(Self(value.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StudentKey {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<StudentKey> for String {
    fn from(value: StudentKey) -> String {
        value.0
    }
}

impl fmt::Display for StudentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peppered_student_key_is_the_hmac_of_the_email() {
        // Computed with Python's hmac module: an implementation other than ours.
        let email = Email::parse(" Ana.Souza@Example.com ").unwrap();
        let pepper = Pepper::new(" pepper-of-the-test\n").unwrap();
        assert_eq!(
            email.student_key_with(Some(&pepper)).as_str(),
            "8cd7792f0927cf0461ad6c293f4206100ab4ced857d7a3b30acb4c3d0c88c3cb"
        );
        assert_eq!(email.student_key_with(None), email.student_key());
        assert!(Pepper::new("  ").is_none());
        assert_eq!(format!("{pepper:?}"), "Pepper(<redacted>)");
    }

    #[test]
    fn email_is_trimmed_lowercased_and_keyed_by_sha256() {
        let email = Email::parse("  Ana.Souza@Example.com ").unwrap();
        assert_eq!(email.as_str(), "ana.souza@example.com");
        // sha256("ana.souza@example.com"), computed independently with `sha256sum`.
        assert_eq!(email.student_key().as_str(), "7fd726011aa08d90d14a923ea0e5e3edf63bfe14b51ee6f6429483118d197c9b");
    }

    #[test]
    fn email_lowercases_ascii_only() {
        // A Unicode local part is kept as sent; only ASCII letters are folded.
        let email = Email::parse("ÁNA.İlker.Σ@Exämple.COM").unwrap();
        assert_eq!(email.as_str(), "Ána.İlker.Σ@exämple.com");
        assert_eq!(Email::parse("ΣΊΣΥΦΟΣ@x.com").unwrap().as_str(), "ΣΊΣΥΦΟΣ@x.com");
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in ["", "   ", "ana", "@x.com", "ana@", "a b@x.com", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn email_debug_is_redacted() {
        let email = Email::parse("ana@example.com").unwrap();
        assert!(!format!("{email:?}").contains("ana"));
    }

    #[test]
    fn ids_refuse_empty_and_control_characters() {
        assert_eq!(GrantId::parse("  "), Err(IdError::Empty { kind: "grant id" }));
        assert!(ProductId::parse("a\nb").is_err());
        assert_eq!(ProductId::parse(" 4774438 ").unwrap().as_str(), "4774438");
        assert!(SourceName::parse("Hot Mart").is_err());
        assert!(StudentKey::parse("abc").is_err());
    }
}
