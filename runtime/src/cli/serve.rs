//! `sluice serve`: the one-process path for a single flow, as Prefect's
//! `flow.serve`: deploys it, then creates its scheduled runs and executes
//! every due run of it here until stopped. With a server configured it
//! deploys there and runs the deployment's runs here (`serve_remote.rs`).

use super::console::{Console, Stream};
use super::shared_args::{ParamArgs, ScheduleArgs};
use super::{CliError, context, read_component};
use crate::core::record::Recorder;
use crate::core::schedule::Schedule;
use crate::core::tenant::DEFAULT_TENANT;
use crate::service::Service;
use crate::store::Claim;
use chrono::Utc;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

/// The longest the loop sleeps: runs created by others are found this fast.
const MAX_IDLE: Duration = Duration::from_millis(250);

/// Arguments of `sluice serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The component (`.wasm`) to serve.
    file: PathBuf,
    /// The deployment's name.
    #[arg(long)]
    name: String,
    /// The flow to serve (default: the component's first flow).
    #[arg(long)]
    flow: Option<String>,
    /// Default parameters.
    #[command(flatten)]
    params: ParamArgs,
    /// Its schedule.
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// A tag. Repeatable.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Runs executed at once.
    #[arg(long, default_value_t = 4)]
    limit: usize,
    /// Deploy to this server and run its runs here (default: the `sluice login` profile's;
    /// with neither, this machine's store).
    #[arg(long, env = "SLUICE_API_URL")]
    api: Option<String>,
    /// The token sent to that server (the profile's only to the profile's server).
    #[arg(long, env = "SLUICE_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs `sluice serve` until Ctrl-C.
pub async fn run(args: ServeArgs) -> Result<ExitCode, CliError> {
    let bytes = read_component(&args.file)?;
    let schedule = args.schedule.schedule()?;
    let server = match args.api.filter(|url| !url.trim().is_empty()) {
        Some(api) => Some(super::server::worker_server(Some(api), args.token)?),
        None => super::backend::server()?,
    };
    let mut served = super::serve_remote::Served {
        bytes,
        name: args.name,
        flow: args.flow,
        parameters: args.params.collect()?,
        schedule,
        tags: args.tags,
        limit: args.limit,
    };
    if let Some((url, token)) = server {
        return super::serve_remote::run(served, url, token).await;
    }
    let service = Arc::new(context::service()?);
    let pushed = service.push(DEFAULT_TENANT, std::mem::take(&mut served.bytes), None).await?;
    let flow = pushed.artifact.description.flow(served.flow.as_deref()).map_err(CliError::usage)?.name.clone();
    let deployed = service.deploy(DEFAULT_TENANT, served.request(flow, &pushed.artifact.digest)).await?;
    let full_name = deployed.deployment.full_name();
    let words = served.schedule.as_ref().map_or_else(|| "no schedule".to_string(), Schedule::words);
    println!("Your deployment '{full_name}' is being served ({words}).");
    println!("Start a run from another shell with `sluice run {full_name}`; stop serving with Ctrl-C.");
    serve(&service, &full_name, served.schedule.as_ref(), served.limit.max(1)).await
}

/// How long a serving process's claim on its deployment lasts unrenewed
/// (it renews it every pass, at most `MAX_IDLE` apart).
const SERVING_TERM: chrono::Duration = chrono::Duration::seconds(5);

/// The store lease a `sluice serve` of `full_name` holds while it serves it.
pub fn serving_lease(full_name: &str) -> String {
    format!("serve:{full_name}")
}

/// Who serves `full_name` now, if a live `sluice serve` does.
pub fn served_by(service: &Service, full_name: &str) -> Option<String> {
    let now = crate::store::SqlValue::from(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    let rows = service
        .store
        .listing("SELECT holder FROM leases WHERE name = ?1 AND expires >= ?2", &[serving_lease(full_name).into(), now])
        .ok()?;
    rows.first().and_then(|row| row.first()).and_then(|holder| holder.text())
}

async fn serve(
    service: &Arc<Service>,
    full_name: &str,
    schedule: Option<&Schedule>,
    limit: usize,
) -> Result<ExitCode, CliError> {
    let console = Console::new(Stream::Stdout);
    let mut committed = service.store.subscribe();
    let mut running: JoinSet<()> = JoinSet::new();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let lease = serving_lease(full_name);
    loop {
        let now = Utc::now();
        // Says to `sluice run` in another shell that this process runs the deployment's runs.
        let _ = service.store.hold_lease(&lease, service.taker(), now, now + SERVING_TERM);
        let pass = service.schedule(now)?;
        for problem in pass.problems {
            eprintln!("scheduler: {problem}");
        }
        let free = limit.saturating_sub(running.len());
        if free > 0 {
            let claim = Claim {
                tenant: Some(DEFAULT_TENANT),
                now,
                pool: None,
                queues: &[],
                deployment: Some(full_name),
                limit: free,
                taker: service.taker(),
            };
            for run in service.claim_due(&claim)? {
                let service = service.clone();
                running.spawn(async move {
                    if let Err(err) = service.execute_run(&run, None).await {
                        eprintln!("flow run '{}' could not run: {err}", run.name);
                    }
                });
            }
        }
        let next = schedule.and_then(|s| s.next_after(now)).and_then(|t| (t - now).to_std().ok());
        let idle = tokio::time::sleep(next.map_or(MAX_IDLE, |n| n.min(MAX_IDLE)));
        tokio::pin!(idle);
        loop {
            tokio::select! {
                _ = &mut stop => {
                    println!("Stopping: waiting for {} running flow runs", running.len());
                    while running.join_next().await.is_some() {}
                    drain(&mut committed, &console);
                    // Nobody runs its runs now: its schedule must not keep making them.
                    let paused = service.set_paused(DEFAULT_TENANT, full_name, true).is_ok();
                    let now = Utc::now();
                    let _ = service.store.hold_lease(&lease, service.taker(), now, now);
                    if paused && schedule.is_some() {
                        println!("Paused '{full_name}': its schedule makes no runs until it is served again (or `sluice deployment resume {full_name}`).");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                event = committed.recv() => match event {
                    Ok(event) => console.record(&event),
                    Err(RecvError::Lagged(missed)) => eprintln!("({missed} events not shown)"),
                    Err(RecvError::Closed) => {}
                },
                Some(_) = running.join_next(), if !running.is_empty() => break,
                () = &mut idle => break,
            }
        }
    }
}

fn drain(committed: &mut tokio::sync::broadcast::Receiver<Arc<crate::core::record::Event>>, console: &Console) {
    while let Ok(event) = committed.try_recv() {
        console.record(&event);
    }
}
