//! `lms-bridge`: the backend server and its operator commands.

use clap::Parser;
use lms_bridge_backend::cli::{Cli, Command, PubsubCommand, SimulateArgs, StudentCommand};
use lms_bridge_backend::commands::{self, CommandError};
use lms_bridge_backend::{logging, normalize, pubsub_setup, service, simulate};
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

fn simulate(args: &SimulateArgs) -> Result<simulate::Report, CommandError> {
    let mappings = std::fs::read_to_string(&args.mappings).map_err(|e| {
        CommandError::BadInput(format!("cannot read the mappings file {}: {e}", args.mappings.display()))
    })?;
    let at = args.at.iter().map(|t| simulate::parse_at(t)).collect::<Result<Vec<_>, _>>()?;
    let request = simulate::Request { mappings, at, timeline: args.timeline, source: args.source.clone() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime.block_on(simulate::run(&request, std::io::stdin().lock()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Normalize(args) = &cli.command {
        return match normalize::run(args, std::io::stdin().lock()) {
            Ok(output) => print(&output),
            Err(error) => fail(&error, error.exit_code()),
        };
    }
    if let Command::Simulate(args) = &cli.command {
        // No logging: stdout is the answer, stderr the report of unusable lines.
        return match simulate(args) {
            Ok(report) => {
                for warning in &report.warnings {
                    eprintln!("lms-bridge: {warning}");
                }
                print(&report.stdout)
            }
            Err(error) => fail(&error, error.exit_code()),
        };
    }
    logging::init(matches!(cli.command, Command::Serve(_)));
    service::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}"), 1),
    };
    let result: Result<String, CommandError> = runtime.block_on(async {
        match cli.command {
            Command::Normalize(_) | Command::Simulate(_) => Ok(String::new()),
            Command::Serve(args) => service::serve(args).await.map(|()| String::new()).map_err(CommandError::Failed),
            Command::Mappings { command, service } => commands::mappings(&command, &service).await,
            Command::Sweep(args) => commands::sweep(&args).await,
            Command::Student { command: StudentCommand::Key { email, keys } } => commands::student_key(&email, &keys),
            Command::Student { command: StudentCommand::Show { email, store } } => {
                commands::student_show(&email, &store).await
            }
            Command::Replay { service, quarantined, unmapped } => {
                let mut out = String::new();
                if quarantined {
                    out.push_str(&commands::replay_quarantined(&service).await?);
                }
                if unmapped {
                    out.push_str(&commands::replay_unmapped(&service).await?);
                }
                Ok(out)
            }
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
