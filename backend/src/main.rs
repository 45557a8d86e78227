//! `lms-bridge`: the backend server and its operator commands.

use clap::Parser;
use lms_bridge_backend::cli::{Cli, Command, PubsubCommand, Secret, SimulateArgs, StudentCommand};
use lms_bridge_backend::commands::normalize;
use lms_bridge_backend::commands::{self, CommandError};
use lms_bridge_backend::{admin, logging, pubsub_setup, service, simulate};
use std::io::Write;
use std::process::ExitCode;

fn print(output: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lms-bridge: cannot write output: {e}");
            ExitCode::from(1)
        }
    }
}

fn fail(message: impl std::fmt::Display, code: u8) -> ExitCode {
    let line = message.to_string().replace('\n', " ");
    eprintln!("lms-bridge: {line}");
    ExitCode::from(code)
}

/// `simulate` on the runtime the other commands use; its warnings go to stderr.
async fn simulate(args: &SimulateArgs) -> Result<String, CommandError> {
    let mappings = std::fs::read_to_string(&args.mappings).map_err(|e| {
        CommandError::BadInput(format!("cannot read the mappings file {}: {e}", args.mappings.display()))
    })?;
    let at = args.at.iter().map(|t| simulate::parse_at(t)).collect::<Result<Vec<_>, _>>()?;
    let request = simulate::Request { mappings, at, timeline: args.timeline, source: args.source.clone() };
    let report = simulate::run(&request, std::io::stdin().lock()).await?;
    for warning in &report.warnings {
        eprintln!("lms-bridge: {warning}");
    }
    Ok(report.stdout)
}

/// Clap's own errors (a bad value, a missing setting) as one line, like every other refusal.
fn arguments() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect();
            Err(fail(lines.join(" ").trim_start_matches("error: "), 2))
        }
    }
}

fn main() -> ExitCode {
    let cli = match arguments() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // `normalize` and `simulate` answer on stdout and log nothing: the engine's log lines
    // would mix with the answer.
    if !matches!(cli.command, Command::Normalize(_) | Command::Simulate(_)) {
        logging::init(matches!(cli.command, Command::Serve(_) | Command::Admin(_)));
    }
    service::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}"), 1),
    };
    let result: Result<String, CommandError> = runtime.block_on(async {
        match cli.command {
            Command::Normalize(args) => {
                normalize::run(&args, &Secret::from_env, std::io::stdin().lock()).map_err(|error| {
                    let code = error.exit_code();
                    let message = error.to_string();
                    if code == 2 {
                        CommandError::BadInput(message)
                    } else {
                        CommandError::Failed(anyhow::anyhow!(message))
                    }
                })
            }
            Command::Simulate(args) => simulate(&args).await,
            Command::Admin(args) => admin::serve(args).await.map(|()| String::new()).map_err(CommandError::Failed),
            Command::Serve(args) => service::serve(args).await.map(|()| String::new()).map_err(CommandError::Failed),
            Command::Mappings { command, service } => commands::mappings(&command, &service).await,
            Command::Sweep(args) => commands::sweep(&args).await,
            Command::Student { command: StudentCommand::Key { email, keys } } => commands::student_key(&email, &keys),
            Command::Student { command: StudentCommand::Show { email, store } } => {
                commands::student_show(&email, &store).await
            }
            Command::Replay { service, quarantined, unmapped, failed } => {
                let mut out = String::new();
                if quarantined {
                    out.push_str(&commands::replay_quarantined(&service).await?);
                }
                if unmapped {
                    out.push_str(&commands::replay_unmapped(&service).await?);
                }
                if failed {
                    out.push_str(&commands::replay_failed(&service).await?);
                }
                Ok(out)
            }
            Command::Backfill(args) => commands::jobs::backfill(&args).await,
            Command::Reconcile(args) => commands::jobs::reconcile(&args).await,
            Command::Drift(args) => commands::jobs::drift(&args).await,
            Command::Pubsub { command: PubsubCommand::Setup(args) } => {
                pubsub_setup::setup(&args).await.map_err(CommandError::Failed)
            }
        }
    });
    match result {
        Ok(output) => print(&output),
        Err(error) => fail(&error, error.exit_code()),
    }
}
