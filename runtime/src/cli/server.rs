//! `sluice server` and `sluice worker`.

use super::{CliError, context, home};
use crate::observe::host_logs::LogFormat;
use crate::sandbox::compile_cache::CompileCache;
use crate::sandbox::engine::EngineSettings;
use crate::sandbox::program::Sandbox;
use crate::server::{ServerOptions, serve};
use crate::worker::{WorkerOptions, work};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `sluice server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the bound address is printed).
    #[arg(long, default_value_t = 4200)]
    port: u16,
    /// Flow runs the embedded worker executes at once (0: no embedded worker).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Seconds without a heartbeat after which a worker's runs are marked Crashed.
    #[arg(long, default_value_t = 30)]
    heartbeat_timeout: u64,
    /// Delete flow runs (with their tasks, subflows, states and logs) this long after they ended,
    /// for example 30d or 12h; unended runs are kept. Default: keep every run.
    #[arg(long, env = "SLUICE_KEEP_RUNS", value_parser = crate::core::duration::parse_duration)]
    keep_runs: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics, e.g. 127.0.0.1:9464 (not on the API's
    /// address: the metrics name every tenant; bind it where only your Prometheus reaches).
    #[arg(long, env = "SLUICE_METRICS_LISTEN", value_name = "ADDRESS")]
    metrics_listen: Option<SocketAddr>,
    /// How the server's own log lines are written on stderr (filter them with SLUICE_LOG, e.g. `info`).
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Arguments of `sluice worker`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The server's URL (default: the `sluice login` profile's).
    #[arg(long, env = "SLUICE_API_URL")]
    api: Option<String>,
    /// The token to send: a runner token of the tenant whose runs it takes (the operator's takes all).
    #[arg(long, env = "SLUICE_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// This worker's name (default: host and process id).
    #[arg(long)]
    name: Option<String>,
    /// The work pool to take runs from.
    #[arg(long, default_value = "default")]
    pool: String,
    /// Only these queues of the pool (default: all). Repeatable.
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Flow runs executed at once.
    #[arg(long, default_value_t = 4)]
    limit: usize,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5)]
    heartbeat: u64,
    /// Fetch artifacts from this shared store (s3://…, gs://…, az://…) instead of the server.
    #[arg(long, env = "SLUICE_STORE_URL")]
    store_url: Option<String>,
    /// Serve this worker's Prometheus metrics at http://METRICS_HOST:PORT/metrics.
    #[arg(long, env = "SLUICE_METRICS_PORT", value_name = "PORT")]
    metrics_port: Option<u16>,
    /// The address the metrics port is bound on.
    #[arg(long, default_value = "127.0.0.1")]
    metrics_host: IpAddr,
    /// How the worker's own log lines are written on stderr (filter them with SLUICE_LOG, e.g. `info`).
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Runs `sluice server` until stopped.
pub async fn server(args: ServerArgs) -> Result<ExitCode, CliError> {
    start_traces("sluice-server")?;
    let service = context::service()?;
    let options = ServerOptions {
        address: SocketAddr::new(args.host, args.port),
        workers: args.workers,
        heartbeat_timeout: Duration::from_secs(args.heartbeat_timeout.max(1)),
        admin_token_file: home::data_dir().join("admin-token"),
        keep_runs: args.keep_runs.filter(|keep| !keep.is_zero()),
        metrics_address: args.metrics_listen,
    };
    serve(service, options).await.map_err(|e| CliError::failure(format!("the server stopped: {e:#}")))?;
    Ok(ExitCode::SUCCESS)
}

/// The server a worker talks to and its token: the flags (or their
/// variables), else the saved `sluice login` profile. The profile's token goes
/// only to the profile's own server, never to another URL.
pub(super) fn worker_server(api: Option<String>, token: Option<String>) -> Result<(String, Option<String>), CliError> {
    let profile = super::profile::load()?.unwrap_or_default();
    let api = api.filter(|url| !url.trim().is_empty());
    let Some(api) = api.or_else(|| profile.api_url.clone()) else {
        return Err(CliError::usage(
            "no server to work for: pass --api http://HOST:4200, set SLUICE_API_URL, or run `sluice login` first",
        ));
    };
    let same_server =
        profile.api_url.as_deref().map(|url| url.trim_end_matches('/')) == Some(api.trim_end_matches('/'));
    let token = token.filter(|t| !t.trim().is_empty()).or(if same_server { profile.token } else { None });
    Ok((api, token))
}

/// Runs `sluice worker` until stopped.
pub async fn worker(args: WorkerArgs) -> Result<ExitCode, CliError> {
    start_traces("sluice-worker")?;
    let settings = EngineSettings::default();
    let sandbox = Arc::new(Sandbox::new(&settings, CompileCache::in_dir(home::compile_cache_dir()))?);
    if let Some(port) = args.metrics_port {
        let (engine, slots) = (sandbox.clone(), settings.pool_instances);
        let before: crate::observe::endpoint::BeforeScrape =
            Arc::new(move || crate::observe::pool::refresh(engine.engine(), slots));
        let bound = crate::observe::endpoint::serve(SocketAddr::new(args.metrics_host, port), Some(before)).await?;
        println!("Metrics at http://{bound}/metrics");
    }
    let hostname = crate::service::hostname();
    let (api, token) = worker_server(args.api, args.token)?;
    let options = WorkerOptions {
        api,
        token,
        name: args.name.unwrap_or_else(|| format!("{}-{}", hostname.trim(), std::process::id())),
        pool: args.pool,
        queues: args.queues,
        limit: args.limit.max(1),
        heartbeat: Duration::from_secs(args.heartbeat.max(1)),
        store_url: args.store_url.filter(|url| !url.is_empty()),
        deployment: None,
    };
    work(options, sandbox).await.map_err(|e| CliError::failure(format!("the worker stopped: {e:#}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Exports traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see `observe/traces.rs`).
fn start_traces(service: &'static str) -> Result<(), CliError> {
    match crate::observe::traces::init(service) {
        Ok(Some(endpoint)) => tracing::info!(%endpoint, "exporting traces by OTLP"),
        Ok(None) => {}
        Err(problem) => return Err(CliError::usage(problem)),
    }
    Ok(())
}
