//! Flags several commands share: parameters and schedules.

use super::CliError;
use crate::core::schedule::Schedule;
use crate::params;
use serde_json::{Map, Value};

/// `--param k=v`… and `--params JSON|@FILE`.
#[derive(clap::Args, Debug)]
pub struct ParamArgs {
    /// A parameter as key=value; the value is read as JSON, else as a string. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Parameters as a JSON object, or @FILE holding one; --param entries override it.
    #[arg(long = "params", value_name = "JSON|@FILE")]
    params_object: Option<String>,
}

impl ParamArgs {
    /// The parameters given, merged.
    pub fn collect(&self) -> Result<Map<String, Value>, CliError> {
        params::collect(self.params_object.as_deref(), &self.params).map_err(CliError::usage)
    }
}

/// `--interval S` or `--cron EXPR [--timezone TZ]`.
#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// Run every N seconds.
    #[arg(long, value_name = "SECONDS", conflicts_with = "cron")]
    interval: Option<u64>,
    /// Run on a cron schedule, e.g. "0 * * * *".
    #[arg(long)]
    cron: Option<String>,
    /// Time zone of the cron schedule, e.g. Europe/Paris (default UTC).
    #[arg(long, requires = "cron")]
    timezone: Option<String>,
}

impl ScheduleArgs {
    /// The schedule given, checked; `None` when there is none.
    pub fn schedule(&self) -> Result<Option<Schedule>, CliError> {
        match (&self.interval, &self.cron) {
            (Some(seconds), _) => Ok(Some(Schedule::interval(*seconds).map_err(CliError::usage)?)),
            (None, Some(cron)) => Ok(Some(Schedule::cron(cron, self.timezone.as_deref()).map_err(CliError::usage)?)),
            (None, None) => Ok(None),
        }
    }
}
