//! Every request goes through `call`: paced, authenticated, its answer parsed, and its failure
//! classified in a text free of URLs, emails and the key.

use super::TalentLms;
use crate::lms::LmsError;
use reqwest::StatusCode;
use serde_json::Value;

/// The longest piece of a TalentLMS error message an error text carries.
const MAX_MESSAGE: usize = 160;

/// One parsed answer: status and JSON body (`Null` when an error answer is not JSON).
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

impl Answer {
    fn error_message(&self) -> Option<&str> {
        self.body.get("error").and_then(|e| e.get("message")).and_then(Value::as_str)
    }

    pub(super) fn is_error(&self) -> bool {
        !self.status.is_success() || self.body.get("error").is_some()
    }

    pub(super) fn says(&self, needle: &str) -> bool {
        self.error_message().is_some_and(|m| m.to_ascii_lowercase().contains(needle))
    }

    /// Turns an unexpected error answer into a transient or permanent failure.
    fn into_error(self, what: &str, api_key: &str) -> LmsError {
        let said = self.error_message().map_or_else(|| "(no message)".to_owned(), |m| scrub(m, api_key));
        let message = format!("{what}: HTTP {} {said}", self.status.as_u16());
        match self.status.as_u16() {
            // Bad or disabled API key: an operator must fix it; keep the work until then.
            401 | 403 | 408 | 429 => LmsError::Transient { message, retry_after: None },
            s if s >= 500 => LmsError::Transient { message, retry_after: None },
            _ => LmsError::Permanent(message),
        }
    }
}

/// A TalentLMS message made safe for errors and logs: no emails, URLs or the key, bounded.
fn scrub(message: &str, api_key: &str) -> String {
    crate::scrub::words(message, api_key, MAX_MESSAGE)
}

/// A transport failure as a fixed text: reqwest's own text names the URL, which holds emails.
fn transport_error(what: &str, error: &reqwest::Error) -> LmsError {
    let message = format!("{what}: {}", crate::scrub::transport_failure("TalentLMS", error));
    LmsError::Transient { message, retry_after: None }
}

/// An id sent as a string or a number.
pub(super) fn lenient_id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-encodes a path-argument value (`,` and `:` are syntax there; `@` stays literal).
pub(super) fn path_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'@' | b'.' | b'_' | b'-') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl TalentLms {
    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Answer, LmsError> {
        self.pacer.ready().await?;
        let response = request
            .timeout(self.timeout)
            .basic_auth(&self.api_key, Some(""))
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(what, &e))?;
        let status = response.status();
        let retry_after = self.pacer.note(status, response.headers());
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(LmsError::Transient { message: format!("{what}: rate limited by TalentLMS"), retry_after });
        }
        let text = response.text().await.map_err(|e| transport_error(what, &e))?;
        let body = match serde_json::from_str(&text) {
            Ok(body) => body,
            // A proxy's or maintenance page, most likely: try again later.
            Err(_) if status.is_success() => {
                return Err(LmsError::Transient {
                    message: format!("{what}: HTTP {} with an answer that is not JSON", status.as_u16()),
                    retry_after: None,
                })
            }
            // Error answers may be HTML (a 401 page): the status says enough.
            Err(_) => Value::Null,
        };
        Ok(Answer { status, body })
    }

    pub(super) fn refused(&self, answer: Answer, what: &str) -> LmsError {
        answer.into_error(what, &self.api_key)
    }

    pub(super) async fn get(&self, path: &str, what: &str) -> Result<Answer, LmsError> {
        self.call(self.http.get(format!("{}/{path}", self.base)), what).await
    }

    pub(super) async fn post(&self, path: &str, form: &[(&str, &str)], what: &str) -> Result<Answer, LmsError> {
        self.call(self.http.post(format!("{}/{path}", self.base)).form(form), what).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_values_escape_argument_syntax() {
        assert_eq!(path_value("ana+x@example.com"), "ana%2Bx@example.com");
        assert_eq!(path_value("a,b:c"), "a%2Cb%3Ac");
    }

    #[test]
    fn talentlms_messages_lose_emails_urls_and_the_key() {
        let said = scrub("User ana@example.com not found at https://acme.talentlms.com/x with KEY123abc!", "KEY123abc");
        assert_eq!(said, "User [email] not found at [url] with [key]");
        assert!(scrub(&"x".repeat(1000), "k").chars().count() <= MAX_MESSAGE + 1);
    }
}
