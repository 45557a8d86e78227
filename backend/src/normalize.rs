//! `lms-bridge normalize`: the edge's verify + normalize step, offline.

use crate::cli::NormalizeArgs;
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

/// Reads the body, verifies it when a token is configured, and returns the event JSON line.
pub fn run(args: &NormalizeArgs, input: impl Read) -> Result<String, NormalizeCommandError> {
    let secrets: Vec<String> = args.hottok.iter().cloned().collect();
    let source = source::by_name(&args.source, &secrets)
        .ok_or_else(|| NormalizeCommandError::UnknownSource(args.source.clone()))?;
    let mut body = Vec::new();
    input.take(MAX_BODY + 1).read_to_end(&mut body)?;
    if body.len() as u64 > MAX_BODY {
        return Err(NormalizeCommandError::TooLarge);
    }
    let now = Timestamp::from_offset(time::OffsetDateTime::now_utc());
    if args.hottok.is_some() {
        let headers: Vec<(&str, &str)> =
            args.header_hottok.iter().map(|v| (hotmart::HOTTOK_HEADER, v.as_str())).collect();
        source.verify(&headers, &body, now)?;
    }
    let event = source.normalize(&body, now)?;
    let mut line = String::from_utf8(event.to_json()).unwrap_or_default();
    line.push('\n');
    Ok(line)
}
