use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("HUBAUTH_LOG").unwrap_or_else(|_| EnvFilter::new("hubauth=info")))
        .with_writer(std::io::stderr)
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
