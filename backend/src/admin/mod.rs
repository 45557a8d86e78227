//! The admin console (`lms-bridge admin`): server-rendered pages over the state, behind
//! Identity-Aware Proxy, that act only by publishing admin events and writing mappings.

pub mod iap;

use crate::cli::AdminArgs;

/// Serves the console until SIGTERM.
pub async fn serve(_args: AdminArgs) -> anyhow::Result<()> {
    anyhow::bail!("the admin console is being built")
}
