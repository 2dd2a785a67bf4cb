//! `hubauth report`: what the operators of a hub want to know about its people.

use std::path::PathBuf;

use clap::Subcommand;

use crate::admin::report::{self, Format};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per user: connectors, groups, created, last sign-in, last token use, live sessions, and
    /// (with [report] prometheus_url) home-directory size and last change.
    Activity {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        /// Only users with no sign-in and no token use for this long, e.g. 90d.
        #[arg(long, value_parser = report::parse_age)]
        inactive_since: Option<i64>,
        /// table, csv or json.
        #[arg(long, default_value = "table", value_parser = Format::parse)]
        format: Format,
    },
}

pub async fn run(command: ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Activity { config, inactive_since, format } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let report = report::build(store.as_ref(), &config.report, SystemClock.now(), inactive_since).await?;
            // JSON carries its notes; the other formats keep stdout to the data.
            if format != Format::Json {
                for note in &report.notes {
                    eprintln!("note: {note}");
                }
            }
            print!("{}", report::render(&report, format));
            Ok(())
        }
    }
}
