//! `lms-bridge normalize`: the edge's verify + normalize step, offline.

use crate::cli::{NormalizeArgs, Secret};
use lms_bridge_shared::source::{self, hotmart, NormalizeError, VerifyError};
use lms_bridge_shared::Timestamp;
use std::io::Read;

/// Largest body accepted, as at the edge.
pub const MAX_BODY: u64 = 1024 * 1024;

/// Why `normalize` refused its input.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeCommandError {
    /// The source name is not one this build knows.
    #[error("unknown source {0:?} (known: hotmart)")]
    UnknownSource(String),
    /// Standard input could not be read.
    #[error("cannot read the body from stdin: {0}")]
    Stdin(#[from] std::io::Error),
    /// The body is over the limit.
    #[error("body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// A hottok given twice, or unreadable.
    #[error("{0}")]
    Hottok(String),
    /// The request is not genuine.
    #[error("refused: {0}")]
    Verify(#[from] VerifyError),
    /// The body cannot be normalized.
    #[error("cannot normalize: {0}")]
    Normalize(#[from] NormalizeError),
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
            Err(NormalizeCommandError::Hottok(format!("{env_name} and {flag} are both given; use one of them")))
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| NormalizeCommandError::Hottok(format!("cannot read {flag} {}: {e}", path.display())))?;
            let token = text.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                return Err(NormalizeCommandError::Hottok(format!("{flag} {} is empty", path.display())));
            }
            Ok(Some(token.to_owned()))
        }
        (None, Some(secret)) => Ok(Some(secret.expose().to_owned())),
        (None, None) => Ok(None),
    }
}

/// Reads the body, verifies it when a token is configured, and returns the event JSON line.
pub fn run(args: &NormalizeArgs, input: impl Read) -> Result<String, NormalizeCommandError> {
    let expected = hottok(args.hottok_file.as_deref(), args.hottok_env.as_ref(), "HOTMART_HOTTOK", "--hottok-file")?;
    let header = hottok(
        args.header_hottok_file.as_deref(),
        args.header_hottok_env.as_ref(),
        "HOTMART_HEADER_HOTTOK",
        "--header-hottok-file",
    )?;
    let secrets: Vec<String> = expected.iter().cloned().collect();
    let source = source::by_name(&args.source, &secrets)
        .ok_or_else(|| NormalizeCommandError::UnknownSource(args.source.clone()))?;
    let mut body = Vec::new();
    input.take(MAX_BODY + 1).read_to_end(&mut body)?;
    if body.len() as u64 > MAX_BODY {
        return Err(NormalizeCommandError::TooLarge);
    }
    let now = Timestamp::from_offset(time::OffsetDateTime::now_utc());
    if expected.is_some() {
        let headers: Vec<(&str, &str)> = header.iter().map(|v| (hotmart::HOTTOK_HEADER, v.as_str())).collect();
        source.verify(&headers, &body, now)?;
    }
    let event = source.normalize(&body, now)?;
    let mut line = String::from_utf8(event.to_json()).unwrap_or_default();
    line.push('\n');
    Ok(line)
}
