use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

// Every request allocates and frees many small buffers on two or more worker threads; glibc's
// malloc spent ~15 % of the server's CPU on that under load (bench/NOTES.md), mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(e) = init_logging() {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    let cli = hubauth::cli::Cli::parse();
    match hubauth::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: `HUBAUTH_LOG` filters them (tracing's `EnvFilter` syntax), and
/// `HUBAUTH_LOG_FORMAT=json` writes one JSON object per line for log collectors.
fn init_logging() -> Result<(), String> {
    let filter = match std::env::var("HUBAUTH_LOG") {
        Ok(spec) => {
            EnvFilter::try_new(&spec).map_err(|e| format!("HUBAUTH_LOG={spec:?} is not a valid filter: {e}"))?
        }
        Err(_) => EnvFilter::new("hubauth=info"),
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match std::env::var("HUBAUTH_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().with_current_span(false).with_span_list(true).init(),
        // Colour only for a person at a terminal: journald, files and log collectors get plain text.
        // Line breaks in field values are escaped: a value cannot forge a log line.
        Ok("text") | Err(_) => logs
            .fmt_fields(hubauth::logging::LineSafeFields::default())
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        Ok(other) => return Err(format!("HUBAUTH_LOG_FORMAT must be `text` or `json`, not {other:?}")),
    }
    Ok(())
}
