//! `sluice serve` with a server configured (`SLUICE_API_URL` or `sluice
//! login`), as Prefect's `flow.serve` against an API server: it pushes the
//! component, deploys it there as a *served* deployment, and runs that
//! deployment's runs in this process with the worker's own code, claiming
//! them by the deployment's name (no pool's worker takes a served
//! deployment's runs). Stopped, it says goodbye and pauses the deployment.

use super::console::{Console, Stream};
use super::{CliError, home};
use crate::client::ApiClient;
use crate::core::pool::DEFAULT_POOL;
use crate::core::record::{Event, Recorder, RunKind};
use crate::core::schedule::Schedule;
use crate::sandbox::compile_cache::CompileCache;
use crate::sandbox::engine::EngineSettings;
use crate::sandbox::program::Sandbox;
use crate::service::{ArtifactSource, DeployRequest};
use crate::worker::{WorkerOptions, stop_signal, work_until};
use serde_json::{Map, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// What `sluice serve` was asked to serve.
pub struct Served {
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// The deployment's name.
    pub name: String,
    /// The flow (the component's only one when `None`).
    pub flow: Option<String>,
    /// Default parameters.
    pub parameters: Map<String, Value>,
    /// Its schedule.
    pub schedule: Option<Schedule>,
    /// Tags.
    pub tags: Vec<String>,
    /// Runs executed at once.
    pub limit: usize,
}

impl Served {
    /// The deployment `sluice serve` makes of `flow` in artifact `digest`,
    /// on the server or in the embedded store alike: served, unpaused.
    pub fn request(&self, flow: String, digest: &str) -> DeployRequest {
        DeployRequest {
            artifact: ArtifactSource::Digest(digest.to_string()),
            flow: Some(flow),
            name: self.name.clone(),
            parameters: self.parameters.clone(),
            description: None,
            version: None,
            tags: self.tags.clone(),
            schedule: self.schedule.clone(),
            paused: false,
            pool: None,
            queue: None,
            limits: Default::default(),
            grants: Default::default(),
            served: true,
        }
    }
}

/// How often the serving process heartbeats, as a worker does by default.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Serves `served` through the server at `url` until SIGTERM or Ctrl-C.
pub async fn run(mut served: Served, url: String, token: Option<String>) -> Result<ExitCode, CliError> {
    let api = ApiClient::new(&url, token.as_deref())?;
    let pushed = api.push(std::mem::take(&mut served.bytes)).await?;
    let flow = pushed.artifact.description.flow(served.flow.as_deref()).map_err(CliError::usage)?.name.clone();
    let request = served.request(flow, &pushed.artifact.digest);
    let deployed = api.deploy(&super::backend::deploy_body(&request, &pushed.artifact.digest)).await?;
    let full_name = deployed.deployment.full_name();
    let words = served.schedule.as_ref().map_or_else(|| "no schedule".to_string(), Schedule::words);
    println!("Your deployment '{full_name}' is being served ({words}) by this process, through {}.", api.url());
    println!("Start a run from another shell with `sluice run {full_name}`; stop serving with Ctrl-C.");

    let sandbox = Arc::new(Sandbox::new(&EngineSettings::default(), CompileCache::in_dir(home::compile_cache_dir()))?);
    let options = WorkerOptions {
        api: url,
        token,
        name: format!("serve-{}-{}", crate::service::hostname().trim(), std::process::id()),
        pool: DEFAULT_POOL.to_string(),
        queues: Vec::new(),
        limit: served.limit.max(1),
        heartbeat: HEARTBEAT,
        store_url: None,
        deployment: Some(full_name.clone()),
    };
    // Its runs' states and logs, printed here once the server has them, as a local `serve` does.
    let echo: Arc<dyn Recorder> = Arc::new(Echo(Console::new(Stream::Stdout)));
    work_until(options, sandbox, stop_signal(), Some(echo))
        .await
        .map_err(|e| CliError::failure(format!("serving stopped: {e:#}")))?;

    // Nobody runs its runs now: its schedule must not keep making them.
    match api.set_paused(&full_name, true).await {
        Ok(_) if served.schedule.is_some() => println!(
            "Paused '{full_name}': its schedule makes no runs until it is served again (or `sluice deployment resume {full_name}`)."
        ),
        Ok(_) => println!("Paused '{full_name}': a run started now waits until it is served again."),
        Err(err) => {
            return Err(CliError::failure(format!(
                "could not pause '{full_name}' on the server ({err}); its schedule goes on making runs nobody serves: \
                 `sluice deployment pause {full_name}`"
            )));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The serving process's console: a run it took was created by the server,
/// so the worker's record of it names the run rather than announcing it.
struct Echo(Console);

impl Recorder for Echo {
    fn record(&self, event: &Event) {
        match event {
            Event::FlowRunCreated(run) if run.parent.is_none() => self.0.name(run.id, RunKind::Flow, &run.name),
            other => self.0.record(other),
        }
    }
}
