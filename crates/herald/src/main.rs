//! `herald`: one binary, every role.

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of glibc's malloc: under real-time load (many small buffers made on one
/// thread and freed on another) glibc's allocator spent a sixth of the server's time in its free
/// lists; see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
