//! `lms-bridge normalize`: the edge's verify + normalize step, offline.
//!
//! As at the edge: the source is picked by name from the registry, its secrets are its own
//! setting (`Source::secret_setting`, comma-separated during a rotation), the request's headers
//! are checked before the body is read, then the whole request over the exact body bytes, and
//! the event is made with what the headers say (a Standard Webhooks sender's `webhook-id`).
//! The clock is `--now` (default the system clock), both for timestamp tolerance and as
//! `received_at`.

use crate::cli::{NormalizeArgs, Secret};
use crate::clock::{Clock, SystemClock};
use crate::commands::source_arg;
use lms_bridge_shared::source::{self, hotmart, Headers, NormalizeError, VerifyError};
use lms_bridge_shared::Timestamp;
use std::io::Read;

/// Largest body accepted, as at the edge.
pub const MAX_BODY: u64 = 1024 * 1024;

/// The setting holding the X-HOTMART-HOTTOK value that came with a Hotmart body.
const HEADER_HOTTOK_SETTING: &str = "HOTMART_HEADER_HOTTOK";

/// Why `normalize` refused its input. No variant carries a secret or a header value.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeCommandError {
    /// The source name is not one this build knows (the message lists the known forms).
    #[error("{0}")]
    UnknownSource(String),
    /// Standard input could not be read.
    #[error("cannot read the body from stdin: {0}")]
    Stdin(#[from] std::io::Error),
    /// The body is over the limit.
    #[error("body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// An argument or a hottok file is unusable, or a value is given twice.
    #[error("{0}")]
    Usage(String),
    /// A signed source with no secret configured: its signature cannot be checked.
    #[error("refused: {0} is not set, so the signature cannot be checked (set it to the secret, comma-separated during a rotation)")]
    NoSecret(String),
    /// A configured secret is not of the form the source needs.
    #[error("refused: a secret in {0} is not usable")]
    UnusableSecret(String),
    /// The request is not genuine.
    #[error("refused: {0}")]
    Verify(VerifyError),
    /// The body cannot be normalized (the reason scrubbed of the source's secrets).
    #[error("cannot normalize: {0}")]
    Normalize(String),
}

impl NormalizeCommandError {
    /// 2 for bad input, 1 for the environment failing us.
    pub fn exit_code(&self) -> u8 {
        match self {
            NormalizeCommandError::Stdin(_) => 1,
            _ => 2,
        }
    }
}

/// The value parser of `--header`: kept whole and redacted, since a header value may be a
/// token; [`parse_headers`] splits it, with errors that never quote it.
pub fn header_arg(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

/// The `--header 'Name: value'` arguments as (name, value) pairs, both trimmed.
fn parse_headers(args: &[Secret]) -> Result<Vec<(String, String)>, NormalizeCommandError> {
    let malformed = |n: usize, why: &str| NormalizeCommandError::Usage(format!("--header #{n} {why}"));
    let mut headers = Vec::with_capacity(args.len());
    for (index, arg) in args.iter().enumerate() {
        let n = index + 1;
        let (name, value) =
            arg.expose().split_once(':').ok_or_else(|| malformed(n, "is not 'Name: value' (no colon)"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(malformed(n, "has an empty name"));
        }
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(malformed(n, "has a name with spaces or characters a header name cannot have"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(headers)
}

/// A setting's comma-separated secrets, trimmed, blanks dropped (as the edge reads them).
fn split_secrets(value: &Secret) -> Vec<String> {
    value.expose().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A hottok from its file or its environment variable (one of them; a blank variable counts as
/// unset). A file's trailing line break is not part of the token.
fn hottok(
    file: Option<&std::path::Path>,
    env: Option<&Secret>,
    env_name: &str,
    flag: &str,
) -> Result<Option<String>, NormalizeCommandError> {
    let env = env.filter(|s| !s.is_blank());
    match (file, env) {
        (Some(_), Some(_)) => {
            Err(NormalizeCommandError::Usage(format!("{env_name} and {flag} are both given; use one of them")))
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| NormalizeCommandError::Usage(format!("cannot read {flag} {}: {e}", path.display())))?;
            let token = text.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                return Err(NormalizeCommandError::Usage(format!("{flag} {} is empty", path.display())));
            }
            Ok(Some(token.to_owned()))
        }
        (None, Some(secret)) => Ok(Some(secret.expose().to_owned())),
        (None, None) => Ok(None),
    }
}

/// The secrets to verify with, and the headers with Hotmart's legacy inputs added: the expected
/// hottok from `--hottok-file` (else the setting), the header value from `--header-hottok-file`
/// or `HOTMART_HEADER_HOTTOK`.
fn credentials(
    args: &NormalizeArgs,
    name: &str,
    setting: &str,
    env: &dyn Fn(&str) -> Option<Secret>,
    headers: &mut Vec<(String, String)>,
) -> Result<Vec<String>, NormalizeCommandError> {
    if name != hotmart::NAME {
        if args.hottok_file.is_some() || args.header_hottok_file.is_some() {
            return Err(NormalizeCommandError::Usage(
                "--hottok-file and --header-hottok-file are for --source hotmart; use the source's setting and --header"
                    .to_owned(),
            ));
        }
        return Ok(env(setting).map(|value| split_secrets(&value)).unwrap_or_default());
    }
    let setting_value = env(setting);
    let secrets = match args.hottok_file.as_deref() {
        Some(file) => hottok(Some(file), setting_value.as_ref(), setting, "--hottok-file")?.into_iter().collect(),
        None => setting_value.map(|value| split_secrets(&value)).unwrap_or_default(),
    };
    let header_env = env(HEADER_HOTTOK_SETTING);
    let header =
        hottok(args.header_hottok_file.as_deref(), header_env.as_ref(), HEADER_HOTTOK_SETTING, "--header-hottok-file")?;
    if let Some(value) = header {
        if headers.header(hotmart::HOTTOK_HEADER).is_some() {
            return Err(NormalizeCommandError::Usage(format!(
                "{} is given by --header and by {HEADER_HOTTOK_SETTING} or --header-hottok-file; use one of them",
                hotmart::HOTTOK_HEADER
            )));
        }
        headers.push((hotmart::HOTTOK_HEADER.to_owned(), value));
    }
    Ok(secrets)
}

/// Reads the body, verifies it as the edge does, and returns the event JSON line. `env` reads
/// a setting from the environment (the secrets never come from the arguments).
pub fn run(
    args: &NormalizeArgs,
    env: &dyn Fn(&str) -> Option<Secret>,
    input: impl Read,
) -> Result<String, NormalizeCommandError> {
    let name = source_arg::resolve(&args.source).map_err(NormalizeCommandError::UnknownSource)?;
    let setting = source::secret_setting(&name)
        .ok_or_else(|| NormalizeCommandError::UnknownSource(format!("unknown source {name:?}")))?;
    let now = match &args.now {
        Some(text) => Timestamp::parse_rfc3339(text)
            .map_err(|e| NormalizeCommandError::Usage(format!("invalid --now {text:?}: {e}")))?,
        None => SystemClock.now(),
    };
    let mut headers = parse_headers(&args.headers)?;
    let secrets = credentials(args, &name, &setting, env, &mut headers)?;
    // Hotmart was normalized unchecked when no hottok is configured (a sample body, offline);
    // a signed source without its secret cannot be checked, so it is refused rather than
    // printed as if it had been.
    let verifying = !secrets.is_empty();
    if !verifying && name != hotmart::NAME {
        return Err(NormalizeCommandError::NoSecret(setting));
    }
    let source = source::by_name(&name, &secrets)
        .ok_or_else(|| NormalizeCommandError::UnknownSource(format!("unknown source {name:?}")))?;
    drop(secrets);
    let refused = |error: VerifyError| match error {
        VerifyError::NotConfigured(_) => NormalizeCommandError::NoSecret(setting.clone()),
        VerifyError::InvalidSecret(_) => NormalizeCommandError::UnusableSecret(setting.clone()),
        other => NormalizeCommandError::Verify(other),
    };
    // As at the edge: what the headers alone refuse is refused before the body is read.
    if verifying {
        source.verify_headers(&headers, now).map_err(refused)?;
    }
    let mut body = Vec::new();
    input.take(MAX_BODY + 1).read_to_end(&mut body)?;
    if body.len() as u64 > MAX_BODY {
        return Err(NormalizeCommandError::TooLarge);
    }
    if verifying {
        source.verify(&headers, &body, now).map_err(refused)?;
    }
    let event = source.normalize_request(&headers, &body, now).map_err(|e: NormalizeError| {
        // A parser's message may quote the body, which may carry a token (Hotmart's does).
        NormalizeCommandError::Normalize(String::from_utf8_lossy(&source.redact(e.to_string().as_bytes())).into_owned())
    })?;
    let mut line = String::from_utf8(event.to_json()).unwrap_or_default();
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]
    use super::*;

    fn headers(args: &[&str]) -> Result<Vec<(String, String)>, String> {
        let args: Vec<Secret> = args.iter().map(|a| Secret::new(*a)).collect();
        parse_headers(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn headers_are_name_colon_value_and_errors_never_quote_them() {
        assert_eq!(
            headers(&["webhook-id: msg_1", "Stripe-Signature:t=1,v1=ab", " X : a: b "]).unwrap(),
            [("webhook-id", "msg_1"), ("Stripe-Signature", "t=1,v1=ab"), ("X", "a: b")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(headers(&["a: 1", "SECRET"]).unwrap_err(), "--header #2 is not 'Name: value' (no colon)");
        assert_eq!(headers(&[" : SECRET"]).unwrap_err(), "--header #1 has an empty name");
        assert!(headers(&["two words: SECRET"]).unwrap_err().starts_with("--header #1 has a name with spaces"));
    }

    #[test]
    fn secrets_split_on_commas_trimmed_without_blanks() {
        assert_eq!(split_secrets(&Secret::new(" old , ,new,")), ["old", "new"]);
        assert!(split_secrets(&Secret::new(" , ")).is_empty());
    }
}
