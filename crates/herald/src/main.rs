//! `herald`: one binary, every role.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = herald::cli::Cli::parse();
    match herald::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "herald failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
