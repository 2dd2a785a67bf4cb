use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

// Every request allocates and frees many small buffers on two or more worker threads; glibc's
// malloc spent ~15 % of the server's CPU on that under load (bench/NOTES.md), mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("HUBAUTH_LOG").unwrap_or_else(|_| EnvFilter::new("hubauth=info")))
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: journald, files and log collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = hubauth::cli::Cli::parse();
    match hubauth::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
