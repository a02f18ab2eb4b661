//! The host's own logs (the server's and the worker's, not the runs'):
//! `tracing` events written to stderr by `tracing-subscriber`, filtered by
//! `SLUICE_LOG` (an `EnvFilter`: `info`, `sluice=debug,tower=warn`, …;
//! `info` when unset), as text for people or one JSON object per line for
//! a log shipper (`--log-format json`).

use tracing_subscriber::EnvFilter;

/// The variable holding the log filter.
pub const LOG_VARIABLE: &str = "SLUICE_LOG";

/// How the host's log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields.message`, …
    Json,
}

/// Installs the process's log subscriber; an unreadable `SLUICE_LOG` is an
/// error that says why. A long-running process (`daemon`: server, worker)
/// stamps each line with its time and source; a one-shot command writes
/// just the level and message, as its other errors read.
pub fn init(format: LogFormat, daemon: bool) -> Result<(), String> {
    let filter = match std::env::var(LOG_VARIABLE) {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec.trim()).map_err(|e| {
            format!("{LOG_VARIABLE}={spec:?} is not a log filter ({e}); use a level such as `info` or `sluice=debug`")
        })?,
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match (format, daemon) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.with_ansi(false).try_init(),
        (LogFormat::Text, false) => builder.with_ansi(false).without_time().with_target(false).try_init(),
    };
    // Already installed (a test calling twice): the first one stays.
    let _ = installed;
    Ok(())
}
