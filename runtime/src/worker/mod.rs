//! `sluice worker`: runs flow runs handed out by a server, on any host. It
//! claims runs (long-poll), fetches each artifact by digest from the server
//! and checks the digest, compiles it once into its local cache, runs it,
//! streams states and logs back, and heartbeats; a cancel reaches it in the
//! heartbeat's answer.

mod client;
mod recorder;

pub use client::Client;
pub use recorder::HttpRecorder;

use crate::artifact::{ArtifactStore, Digest};
use crate::core::journal::Journal;
use crate::core::record::Recorder;
use crate::runner::MemoryCache;
use crate::sandbox::program::{ProgramCache, Sandbox};
use crate::server::ClaimedRun;
use crate::service::{execute, record_unstarted_failure};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The server, e.g. `http://127.0.0.1:4200`.
    pub api: String,
    /// The token it sends: a runner's (or better) of the tenant whose runs
    /// it takes; the operator's takes every tenant's.
    pub token: Option<String>,
    /// This worker's name (unique per worker).
    pub name: String,
    /// The work pool it takes runs from.
    pub pool: String,
    /// Only these queues of the pool (all when empty).
    pub queues: Vec<String>,
    /// Runs executed at once.
    pub limit: usize,
    /// How often it heartbeats.
    pub heartbeat: Duration,
    /// The shared artifact store to fetch from; the server's artifact
    /// endpoint when `None`.
    pub store_url: Option<String>,
    /// Instead of the pool: only the runs of this served deployment
    /// (`flow/name`): the worker inside `sluice serve`.
    pub deployment: Option<String>,
}

type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// Works until the process is stopped (SIGTERM or Ctrl-C).
pub async fn work(options: WorkerOptions, sandbox: Arc<Sandbox>) -> anyhow::Result<()> {
    work_until(options, sandbox, stop_signal(), None).await
}

/// Works until `stop` names why it must stop, then says goodbye; every
/// event the server commits is also given to `echo`.
pub async fn work_until(
    options: WorkerOptions,
    sandbox: Arc<Sandbox>,
    stop: impl std::future::Future<Output = &'static str>,
    echo: Option<Arc<dyn Recorder>>,
) -> anyhow::Result<()> {
    let client = Client::new(&options.api, options.token.as_deref())?;
    let loaded: Arc<ProgramCache> = Arc::default();
    let shared = options.store_url.as_deref().map(ArtifactStore::open).transpose()?.map(Arc::new);
    let cache = Arc::new(MemoryCache::bounded(10_000));
    let running: Running = Arc::default();
    // Runs this name held before a restart resume now, not after the heartbeat timeout.
    loop {
        match client.started(&options.name).await {
            Ok(crashed) => {
                for id in crashed {
                    println!("Worker '{}': flow run {id} was running here before a restart; it resumes", options.name);
                }
                break;
            }
            Err(err) => {
                tracing::warn!("worker: cannot reach the server: {err:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tokio::spawn(heartbeats(client.clone(), options.name.clone(), options.heartbeat, running.clone()));
    println!("{}", banner(&client, &options).await);
    let mut tasks: JoinSet<()> = JoinSet::new();
    crate::observe::metrics().worker_slots.add(options.limit as i64);
    tokio::pin!(stop);
    let asked = (options.pool.as_str(), options.queues.as_slice(), options.deployment.as_deref());
    let signal = loop {
        while tasks.try_join_next().is_some() {}
        let free = options.limit.saturating_sub(tasks.len());
        if free == 0 {
            tokio::select! { _ = tasks.join_next() => {}, signal = &mut stop => break signal }
            continue;
        }
        // Raced only against stopping: a claim dropped in flight would leave
        // its runs taken by this worker but never run, and the goodbye that
        // follows gives back every run the server says it holds.
        let wait = if tasks.is_empty() { Duration::from_secs(10) } else { Duration::from_millis(500) };
        let claimed = tokio::select! {
            claimed = client.claim(&options.name, asked, free, wait) => claimed,
            signal = &mut stop => break signal,
        };
        match claimed {
            Ok(claimed) => {
                for run in claimed {
                    let token = CancellationToken::new();
                    running.lock().expect("running lock").insert(run.run.id.clone(), token.clone());
                    // One recorder per run: a batch the server refuses (a lost
                    // lease) then holds no other run's events.
                    let recorder = Arc::new(HttpRecorder::new(client.clone(), &options.name, echo.clone()));
                    let (client, shared, loaded, sandbox, cache, running) = (
                        client.clone(),
                        shared.clone(),
                        loaded.clone(),
                        sandbox.clone(),
                        cache.clone(),
                        running.clone(),
                    );
                    println!("{}", taken_line(&run.run));
                    if let (Some(echo), Some(created)) = (&echo, created_record(&run.run)) {
                        // The server created it: the echo learns its name before its events.
                        echo.record(&crate::core::record::Event::FlowRunCreated(created));
                    }
                    tasks.spawn(async move {
                        let _busy = crate::observe::metrics::SlotBusy::new();
                        let id = run.run.id.clone();
                        let source = Source { client: &client, shared: shared.as_deref(), loaded: &loaded };
                        run_one(source, &sandbox, run, recorder, cache, token).await;
                        running.lock().expect("running lock").remove(&id);
                    });
                }
            }
            Err(err) => {
                tracing::warn!("worker: cannot claim runs: {err:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // The runs in flight stop here, before the goodbye gives them back.
    drop(tasks);
    println!("Worker '{}' stopping ({signal}): saying goodbye to the server", options.name);
    match client.stopped(&options.name).await {
        Ok(crashed) => {
            for id in crashed {
                println!(
                    "Worker '{}': flow run {id} it was running ended Crashed (retried where its deployment says so)",
                    options.name
                );
            }
        }
        Err(err) => {
            tracing::warn!("worker: could not say goodbye ({err:#}); it shows offline after the heartbeat timeout")
        }
    }
    println!("Worker '{}' stopped", options.name);
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C (SIGINT) and names it.
pub async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Where a worker gets artifact bytes.
struct Source<'a> {
    client: &'a Client,
    shared: Option<&'a ArtifactStore>,
    loaded: &'a ProgramCache,
}

impl Source<'_> {
    /// The artifact's bytes, their digest checked.
    async fn fetch(&self, digest: &Digest) -> anyhow::Result<bytes::Bytes> {
        if let Some(store) = self.shared {
            return Ok(store.get(digest).await?);
        }
        let bytes = self.client.artifact(digest).await?;
        let actual = Digest::of(&bytes);
        anyhow::ensure!(actual == *digest, "artifact {digest} arrived corrupt (its bytes hash to {actual}); not run");
        Ok(bytes)
    }
}

async fn run_one(
    source: Source<'_>,
    sandbox: &Sandbox,
    claimed: ClaimedRun,
    recorder: Arc<HttpRecorder>,
    cache: Arc<MemoryCache>,
    cancel: CancellationToken,
) {
    let ClaimedRun { run, limits, grants, journal, traceparent } = claimed;
    let started = std::time::Instant::now();
    let program = async {
        let digest = Digest::parse(&run.artifact).map_err(anyhow::Error::msg)?;
        if let Some(program) = source.loaded.get(&digest) {
            return Ok(program);
        }
        let bytes = source.fetch(&digest).await?;
        let program = Arc::new(sandbox.load(&bytes).await?);
        source.loaded.insert(program.clone());
        Ok(program)
    };
    tracing::info!(run = %run.id, "flow run '{}' taken", run.name);
    let outcome = match program.await {
        Ok(program) => {
            let execution = execute(
                program,
                &run,
                (&limits, &grants),
                recorder.clone(),
                cache,
                cancel,
                Journal::from_rows(journal),
            );
            crate::observe::traces::with_trace_parent(traceparent, execution).await.map_err(anyhow::Error::from)
        }
        Err(err) => Err(err),
    };
    let ended = match &outcome {
        Ok(outcome) => outcome.state.to_string(),
        Err(err) => format!("Failed (it could not start: {err:#})"),
    };
    match outcome {
        Ok(ended) => {
            tracing::info!(run = %run.id, state = %ended.state.name(), "flow run '{}' ended {}", run.name, ended.state.name())
        }
        Err(err) => {
            tracing::error!(run = %run.id, "flow run '{}' could not run: {err:#}", run.name);
            record_unstarted_failure(recorder.as_ref(), &run.id, &format!("{err:#}"), false);
        }
    }
    if let Some(barrier) = recorder.barrier() {
        barrier.await;
    }
    println!("Flow run '{}' ({}) ended {ended} after {:.2} s", run.name, run.id, started.elapsed().as_secs_f64());
}

/// The creation record of a claimed run, as its echo needs it to name the run.
fn created_record(run: &crate::store::FlowRunRow) -> Option<crate::core::record::FlowRunRecord> {
    Some(crate::core::record::FlowRunRecord {
        id: crate::core::ids::RunId::parse(&run.id)?,
        name: run.name.clone(),
        flow: run.flow.clone(),
        parent: None,
        deployment: run.deployment.clone(),
        parameters: run.parameters.clone(),
        artifact_digest: run.artifact.clone(),
        created: run.created,
        scheduled: run.scheduled,
        tenant: Some(run.tenant.clone()),
        call: None,
    })
}

/// "Took flow run 'name' (id) of flow/deployment, attempt N".
fn taken_line(run: &crate::store::FlowRunRow) -> String {
    let of = run.deployment.clone().unwrap_or_else(|| format!("flow {}", run.flow));
    let attempt = if run.attempt > 1 { format!(", attempt {}", run.attempt) } else { String::new() };
    format!("Took flow run '{}' ({}) of {of}{attempt}", run.name, run.id)
}

/// What the worker serves: its pool, the queues it takes runs from and the
/// tags those queues route by (asked of the server; left out if it cannot say).
async fn banner(client: &Client, options: &WorkerOptions) -> String {
    if let Some(deployment) = &options.deployment {
        return format!("Worker '{}' taking the runs of {deployment} from {}", options.name, options.api);
    }
    let mut line = format!("Worker '{}' taking runs from pool '{}' of {}", options.name, options.pool, options.api);
    let queues = client.queues(&options.pool).await.unwrap_or_default();
    let served: Vec<String> = queues
        .iter()
        .filter(|q| options.queues.is_empty() || options.queues.contains(&q.name))
        .map(|q| {
            let tags = if q.tags.is_empty() { "any tags".to_string() } else { format!("tags {}", q.tags.join(", ")) };
            format!("'{}' ({tags}{})", q.name, if q.paused { ", paused" } else { "" })
        })
        .collect();
    if !served.is_empty() {
        line.push_str(&format!(", queues {}", served.join(", ")));
    } else if !options.queues.is_empty() {
        line.push_str(&format!(", queues {}", options.queues.join(", ")));
    } else {
        line.push_str(", all queues");
    }
    line
}

async fn heartbeats(client: Client, name: String, every: Duration, running: Running) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let ids: Vec<String> = running.lock().expect("running lock").keys().cloned().collect();
        match client.heartbeat(&name, &ids).await {
            Ok(cancel) => {
                let running = running.lock().expect("running lock");
                for id in cancel {
                    if let Some(token) = running.get(&id) {
                        token.cancel();
                    }
                }
            }
            Err(err) => tracing::warn!("worker: heartbeat failed: {err:#}"),
        }
    }
}
