//! `lms-bridge`: the backend server and its operator commands.

use clap::Parser;
use lms_bridge_backend::cli::{Cli, Command};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Normalize(args) => lms_bridge_backend::normalize::run(&args, std::io::stdin().lock()),
    };
    match result {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lms-bridge: cannot write output: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(error) => {
            eprintln!("lms-bridge: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
