//! Command-line arguments. Every setting also reads from its DESIGN §4.5 environment name.

use clap::{Args, Parser, Subcommand};

/// Keeps Hotmart and the LMS in step.
#[derive(Debug, Parser)]
#[command(name = "lms-bridge", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a raw webhook body on stdin and print the normalized event JSON.
    Normalize(NormalizeArgs),
}

/// Arguments of `lms-bridge normalize`.
#[derive(Debug, Args)]
pub struct NormalizeArgs {
    /// The platform that sent the body.
    #[arg(long, default_value = "hotmart")]
    pub source: String,
    /// When given, the body is only accepted with this token in --header-hottok.
    #[arg(long, env = "HOTMART_HOTTOK", hide_env_values = true)]
    pub hottok: Option<String>,
    /// The X-HOTMART-HOTTOK header value that came with the body.
    #[arg(long)]
    pub header_hottok: Option<String>,
}
