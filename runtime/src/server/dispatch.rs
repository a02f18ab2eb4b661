//! Handing runs to workers: atomic claims with long-polling (a run created
//! through the API wakes a waiting worker at once: no polling sleep on the
//! hot path), heartbeats, crash detection and cancellation.

use crate::core::deployment::Limits;
use crate::core::grants::ResolvedGrants;
use crate::core::journal::JournalRow;
use crate::core::pool::DEFAULT_POOL;
use crate::service::{Service, ServiceError};
use crate::store::{Claim, FlowRunRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The longest a claim waits when nothing is due.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);

/// A run handed to a worker, with what it needs to run it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimedRun {
    /// The run.
    pub run: FlowRunRow,
    /// Its deployment's limits.
    pub limits: Limits,
    /// Its deployment's grants, secret values included: for the worker's sandbox only.
    #[serde(default)]
    pub grants: ResolvedGrants,
    /// What earlier attempts recorded, for a retried run to replay (empty on a first attempt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<JournalRow>,
    /// The W3C trace context the run's spans hang under, when it was created within a trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Shared by the API, the embedded workers and housekeeping.
pub struct Dispatch {
    /// The service underneath.
    pub service: Arc<Service>,
    available: Arc<Notify>,
    heartbeat_timeout: Duration,
    // Cancel handles of the runs executing in this process.
    local: Mutex<HashMap<String, CancellationToken>>,
    // Who asked this server for runs lately, and from where: `sluice run`
    // warns when nobody serves a new run's pool and queue.
    polling: Mutex<HashMap<String, PollingWorker>>,
    // The trace context of runs created within a trace, until a worker takes them (see `observe/traces.rs`).
    traces: Mutex<HashMap<String, String>>,
    // When a claim last wrote each worker's heartbeat: a busy worker claims
    // after every run, and a write per claim was a commit per run.
    claim_heartbeats: Mutex<HashMap<String, tokio::time::Instant>>,
    // This process's embedded worker, once it runs: runs created here are
    // handed to it straight from the commit that creates them.
    embedded: OnceLock<Embedded>,
}

/// What the API needs of the embedded worker to hand it runs directly.
struct Embedded {
    /// Its name, as it claims.
    name: String,
    /// Its free slots, taken from under the store's write lock by every claim for it.
    free: Arc<AtomicUsize>,
    /// Runs taken for it elsewhere (by a run's creation), to start.
    handoff: mpsc::UnboundedSender<ClaimedRun>,
}

impl Embedded {
    /// The claim it makes: every tenant's default pool, fairly.
    fn claim(&self, limit: usize) -> Claim<'_> {
        Claim {
            tenant: None,
            now: Utc::now(),
            pool: Some(DEFAULT_POOL),
            queues: &[],
            deployment: None,
            limit,
            taker: &self.name,
        }
    }
}

/// What a worker asks runs of.
#[derive(Clone, Copy, Debug)]
pub enum Asked<'a> {
    /// A pool's queues (all of them when empty).
    Pool {
        /// The pool.
        pool: &'a str,
        /// Only these queues.
        queues: &'a [String],
    },
    /// One served deployment (`flow/name`) of the worker's own tenant: the
    /// `sluice serve` process serving it.
    Deployment(&'a str),
}

/// A worker that asked this server for runs, and what it asked for.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PollingWorker {
    /// Its name.
    pub name: String,
    /// The pool it takes runs from.
    pub pool: String,
    /// The queues it takes runs from (all of the pool's when empty).
    pub queues: Vec<String>,
    /// The served deployment (`flow/name`) it takes runs of, when it is a `sluice serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// When it last asked.
    pub last_claim: DateTime<Utc>,
    #[serde(skip)]
    tenant: Option<String>,
}

/// How recently a worker must have asked for runs to count as serving its pool.
const POLLING_WITHIN: chrono::Duration = chrono::Duration::seconds(60);

/// Trace contexts remembered at once; past it the oldest are forgotten (their runs start new traces).
const TRACES_REMEMBERED: usize = 10_000;
/// Workers whose latest claim heartbeat is remembered.
const WORKERS_REMEMBERED: usize = 10_000;

impl Dispatch {
    /// Dispatch over `service`.
    pub fn new(service: Arc<Service>, heartbeat_timeout: Duration) -> Self {
        let available = Arc::new(Notify::new());
        // Work announced by another server on the same database wakes this one's claims too.
        service.store.on_work_announced(available.clone());
        Self {
            service,
            available,
            heartbeat_timeout,
            local: Mutex::default(),
            polling: Mutex::default(),
            traces: Mutex::default(),
            claim_heartbeats: Mutex::default(),
            embedded: OnceLock::new(),
        }
    }

    /// Creates a flow run (see [`Service::create_run`]). When this process's
    /// embedded worker has a free slot and the store can do it in the same
    /// commit, due runs are taken for it there (the fairest due runs, within
    /// every limit, as its own claims take them) and handed to it at once:
    /// no separate claim transaction, no wake-up in between. Else the run
    /// waits for a worker's claim, woken now. `traceparent`: the trace
    /// context the run was created in.
    ///
    /// [`Service::create_run`]: crate::service::Service::create_run
    pub async fn create_run(
        &self,
        tenant: &str,
        full_name: &str,
        overrides: serde_json::Map<String, serde_json::Value>,
        start: Option<DateTime<Utc>>,
        traceparent: Option<String>,
    ) -> Result<FlowRunRow, ServiceError> {
        let embedded = self.embedded.get().filter(|e| e.free.load(Ordering::SeqCst) > 0);
        let claim = embedded.map(|e| e.claim(e.free.load(Ordering::SeqCst)));
        let take = embedded.zip(claim.as_ref()).map(|(e, claim)| (claim, &*e.free));
        let (run, taken) = self.service.create_run_claiming(tenant, full_name, overrides, start, take).await?;
        if let Some(traceparent) = traceparent {
            self.remember_trace(&run.id, traceparent);
        }
        let took_it = taken.iter().any(|t| t.id == run.id);
        if let Some(embedded) = embedded
            && !taken.is_empty()
        {
            // The run is created whatever happens here (see `prepare`).
            for claimed in self.prepare(taken, Some(&embedded.free)).await {
                if let Err(unsent) = embedded.handoff.send(claimed) {
                    // The worker is gone (the process is stopping): the run waits for a claim.
                    tracing::warn!(run = %unsent.0.run.id, "the embedded worker stopped before taking a run");
                }
            }
        }
        if !took_it {
            self.work_available();
        }
        Ok(run)
    }

    /// Records that `worker` is alive, unless a claim of its did so lately:
    /// often enough that it is never taken for gone (a quarter of the
    /// heartbeat timeout, at most a second).
    fn claim_heartbeat(&self, worker: &str) -> Result<(), ServiceError> {
        let now = tokio::time::Instant::now();
        let every = (self.heartbeat_timeout / 4).min(Duration::from_secs(1));
        {
            let mut written = self.claim_heartbeats.lock().expect("heartbeats lock");
            if written.get(worker).is_some_and(|at| now.duration_since(*at) < every) {
                return Ok(());
            }
            if written.len() >= WORKERS_REMEMBERED {
                written.clear();
            }
            written.insert(worker.to_string(), now);
        }
        self.service.store.heartbeat(worker, Utc::now())?;
        Ok(())
    }

    /// Remembers that run `id`'s spans hang under `traceparent`.
    pub fn remember_trace(&self, id: &str, traceparent: String) {
        let mut traces = self.traces.lock().expect("traces lock");
        if traces.len() >= TRACES_REMEMBERED {
            traces.clear();
        }
        traces.insert(id.to_string(), traceparent);
    }

    /// The trace context run `id` was created in, if this server remembers one.
    fn trace_of(&self, id: &str) -> Option<String> {
        self.traces.lock().expect("traces lock").get(id).cloned()
    }

    /// Wakes every waiting claim, here and on other servers sharing the database.
    pub fn work_available(&self) {
        self.available.notify_waiters();
        self.service.store.announce_work();
    }

    /// Takes up to `limit` due runs that `asked` names for `worker`, waiting
    /// up to `wait` for one: of `tenant`'s pool, or of the pools of that name
    /// of every tenant, fairly, when `None`. A served deployment is always
    /// `tenant`'s own, so `tenant` must be given for one.
    pub async fn claim(
        &self,
        tenant: Option<&str>,
        worker: &str,
        asked: Asked<'_>,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<ClaimedRun>, ServiceError> {
        Ok(self.claim_armed(None, None, tenant, worker, asked, limit, wait).await?.0)
    }

    /// [`Self::claim`] for a worker that asks again as soon as it has taken
    /// runs: when a claim took fewer runs than asked, nothing else was due,
    /// so it also returns the wake-up it had armed before looking, and the
    /// next claim (given it as `armed`) waits for news on it before looking
    /// again. A run created in between still wakes it; an empty look after
    /// every claim was a write transaction on the way of each run.
    ///
    /// `free`: the claimer's count of free slots, when others take runs for
    /// it too (the embedded worker's): at most that many are taken.
    #[allow(clippy::too_many_arguments)] // the claim's, and the embedded worker's two
    async fn claim_armed(
        &self,
        mut armed: Option<Pin<Box<OwnedNotified>>>,
        free: Option<&AtomicUsize>,
        tenant: Option<&str>,
        worker: &str,
        asked: Asked<'_>,
        limit: usize,
        wait: Duration,
    ) -> Result<(Vec<ClaimedRun>, Option<Pin<Box<OwnedNotified>>>), ServiceError> {
        // `listed_pool`: where `sluice run` looks for someone serving a new run.
        let (pool, queues, deployment, listed_pool) = match asked {
            Asked::Pool { pool, queues } => {
                if let Some(tenant) = tenant {
                    self.service.check_pool(tenant, pool)?;
                }
                (Some(pool), queues, None, pool.to_string())
            }
            Asked::Deployment(full_name) => {
                let Some(tenant) = tenant else {
                    return Err(ServiceError::Invalid("a served deployment is claimed within a tenant".into()));
                };
                let deployment = self.service.deployment(tenant, full_name)?;
                if !deployment.served {
                    return Err(ServiceError::Invalid(format!(
                        "deployment `{full_name}` is not served: its pool's workers take its runs"
                    )));
                }
                (None, &[][..], Some(full_name), deployment.pool.unwrap_or_else(|| DEFAULT_POOL.to_string()))
            }
        };
        let seen = PollingWorker {
            name: worker.to_string(),
            pool: listed_pool,
            queues: queues.to_vec(),
            deployment: deployment.map(str::to_string),
            last_claim: Utc::now(),
            tenant: tenant.map(str::to_string),
        };
        self.polling.lock().expect("polling lock").insert(worker.to_string(), seen);
        let deadline = tokio::time::Instant::now() + wait.min(MAX_CLAIM_WAIT);
        loop {
            if let Some(notified) = armed.take()
                && tokio::time::timeout_at(self.wake_at(deadline)?, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Ok((Vec::new(), None));
            }
            // Registered before looking, so a run created meanwhile still wakes us.
            let mut notified = Box::pin(self.available.clone().notified_owned());
            notified.as_mut().enable();
            self.claim_heartbeat(worker)?;
            let claim = Claim { tenant, now: Utc::now(), pool, queues, deployment, limit: limit.max(1), taker: worker };
            let runs = match free {
                Some(free) => self.service.store.claim_due_within(&claim, free)?,
                None => self.service.claim_due(&claim)?,
            };
            let taken = runs.len();
            if !runs.is_empty() {
                let claimed = self.prepare(runs, free).await;
                let rest = (taken < limit.max(1)).then_some(notified);
                return Ok((claimed, rest));
            }
            armed = Some(notified);
        }
    }

    /// What the worker needs to run each taken run. A run whose secrets
    /// cannot be read ends here, saying why; so does one that its claim
    /// started, when what it needs cannot be read (else nobody would end
    /// it). Any other run that cannot be prepared stays taken, and the
    /// worker's heartbeat gives it back. The others go. The slots the runs
    /// took from `free` and that will not run are given back.
    async fn prepare(&self, runs: Vec<FlowRunRow>, free: Option<&AtomicUsize>) -> Vec<ClaimedRun> {
        let count = runs.len();
        let mut claimed = Vec::with_capacity(count);
        for run in runs {
            let grants = match self.service.grants_of(&run) {
                Ok(grants) => grants,
                Err(err) => {
                    self.service.fail_unstarted(&run, &err.to_string()).await;
                    continue;
                }
            };
            let read = self.service.limits_of(&run).and_then(|limits| Ok((limits, self.service.journal_of(&run)?)));
            match read {
                Ok((limits, journal)) => {
                    claimed.push(ClaimedRun { limits, grants, journal, traceparent: self.trace_of(&run.id), run })
                }
                Err(err) if run.started() => {
                    let reason = format!("what the run needs could not be read: {err}");
                    self.service.fail_unstarted(&run, &reason).await;
                }
                Err(err) => tracing::warn!(run = %run.id, "a taken run could not be prepared: {err}"),
            }
        }
        if let Some(free) = free {
            free.fetch_add(count - claimed.len(), Ordering::SeqCst);
        }
        claimed
    }

    /// When a claim that found nothing to take looks again, unless woken
    /// before: due runs that could not be taken (paused, or waiting for a
    /// concurrency slot) are retried when a run ends or something is
    /// resumed, which notifies; once a second at the latest.
    fn wake_at(&self, deadline: tokio::time::Instant) -> Result<tokio::time::Instant, ServiceError> {
        let soon = tokio::time::Instant::now() + Duration::from_secs(1);
        Ok(match self.next_due()? {
            Some(due) if due > tokio::time::Instant::now() => deadline.min(due),
            Some(_) => deadline.min(soon),
            None => deadline,
        })
    }

    /// When the earliest waiting run becomes due, as a tokio instant.
    fn next_due(&self) -> Result<Option<tokio::time::Instant>, ServiceError> {
        let next: Option<DateTime<Utc>> = self.service.store.next_due()?;
        Ok(next.map(|at| {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + wait
        }))
    }

    /// Records a heartbeat; returns which of `running` must stop.
    pub fn heartbeat(&self, worker: &str, running: &[String]) -> Result<Vec<String>, ServiceError> {
        let now = Utc::now();
        self.service.store.heartbeat(worker, now)?;
        // A worker busy with all its runs claims nothing, yet still serves its pool.
        if let Some(polling) = self.polling.lock().expect("polling lock").get_mut(worker) {
            polling.last_claim = now;
        }
        // A claim answer that never arrived: past the heartbeat timeout, the runs go back to the queue.
        let grace = chrono::Duration::from_std(self.heartbeat_timeout).unwrap_or(chrono::Duration::seconds(30));
        if !self.service.store.release_unheard(worker, running, now - grace)?.is_empty() {
            self.work_available();
        }
        Ok(self.service.store.to_stop(worker, running)?)
    }

    /// Ends as `Crashed` the runs of workers that went silent, and schedules
    /// them again where their deployment's retry policy says so.
    pub fn detect_crashes(&self, now: DateTime<Utc>) -> Result<Vec<String>, ServiceError> {
        let timeout = chrono::Duration::from_std(self.heartbeat_timeout).unwrap_or(chrono::Duration::seconds(30));
        let crashed = self.service.store.crash_orphans(now - timeout, now)?;
        for id in &crashed {
            if self.service.retry_crashed(id, now)? || self.service.retry_ended(id, now)? {
                self.work_available();
            }
        }
        Ok(crashed)
    }

    /// A worker started (again) under `worker`: the runs it held when it
    /// stopped end `Crashed` now, not after the heartbeat timeout, and are
    /// retried (resuming from their journals) where their deployments say so.
    pub fn worker_started(&self, worker: &str) -> Result<Vec<String>, ServiceError> {
        let now = Utc::now();
        let crashed = self.service.store.crash_held_by(worker, now)?;
        for id in &crashed {
            if self.service.retry_crashed(id, now)? || self.service.retry_ended(id, now)? {
                self.work_available();
            }
        }
        Ok(crashed)
    }

    /// Runs still held by the embedded worker of a server process on this
    /// host that has died (a server restarted, or killed) end `Crashed` at
    /// once and retry where their deployments say so, instead of waiting out
    /// the heartbeat timeout. A process that is still alive (another server
    /// sharing the database) keeps its runs. The ids of the runs crashed.
    pub fn crash_dead_embedded_runs(&self) -> Result<Vec<String>, ServiceError> {
        let suffix = format!(" on {}", self.service.taker().rsplit(" on ").next().unwrap_or_default());
        let holders = self.service.store.listing(
            "SELECT DISTINCT claimed_by FROM flow_runs WHERE ended IS NULL AND claimed_by LIKE ?1",
            &[format!("{EMBEDDED_PREFIX}%").into()],
        )?;
        let mut crashed = Vec::new();
        for holder in holders.into_iter().filter_map(|row| row.first().and_then(|v| v.text())) {
            let Some(process) = holder.strip_prefix(EMBEDDED_PREFIX) else { continue };
            let Some(pid) = process.strip_prefix("process ").and_then(|rest| rest.strip_suffix(suffix.as_str())) else {
                continue; // another host's server: its own restart or the heartbeat timeout handles it
            };
            let Ok(pid) = pid.parse::<u32>() else { continue };
            if pid != std::process::id() && !process_alive(pid) {
                crashed.extend(self.worker_started(&holder)?);
            }
        }
        Ok(crashed)
    }

    /// The workers that asked this server for runs of `tenant`'s pool `pool`
    /// in the last minute (a worker of the operator serves every tenant).
    pub fn polling_workers(&self, tenant: &str, pool: &str) -> Vec<PollingWorker> {
        let since = Utc::now() - POLLING_WITHIN;
        let polling = self.polling.lock().expect("polling lock");
        let mut workers: Vec<PollingWorker> = polling
            .values()
            .filter(|w| w.pool == pool && w.last_claim > since)
            .filter(|w| w.tenant.as_deref().is_none_or(|t| t == tenant))
            .cloned()
            .collect();
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        workers
    }

    /// A worker said goodbye: the runs it held end `Crashed` (and retry by
    /// policy) now, and it shows offline at once (its last heartbeat is put
    /// back before any online window).
    pub fn worker_stopped(&self, worker: &str) -> Result<Vec<String>, ServiceError> {
        let crashed = self.worker_started(worker)?;
        self.service.store.heartbeat(worker, DateTime::<Utc>::UNIX_EPOCH)?;
        self.polling.lock().expect("polling lock").remove(worker);
        self.claim_heartbeats.lock().expect("heartbeats lock").remove(worker);
        Ok(crashed)
    }

    /// Asks a run to stop; one running here stops at once.
    pub fn cancel(&self, id: &str) -> Result<crate::store::CancelOutcome, ServiceError> {
        let run = self
            .service
            .store
            .flow_run(None, id)?
            .ok_or_else(|| ServiceError::NotFound(format!("no flow run `{id}`")))?;
        let outcome = self.service.store.request_cancel(&run.id, Utc::now())?;
        if let Some(token) = self.local.lock().expect("local runs lock").get(&run.id) {
            token.cancel();
        }
        Ok(outcome)
    }

    fn track(&self, id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.local.lock().expect("local runs lock").insert(id.to_string(), token.clone());
        token
    }

    fn untrack(&self, id: &str) {
        self.local.lock().expect("local runs lock").remove(id);
    }
}

/// How an embedded worker's name starts; the rest is its server's process and host.
const EMBEDDED_PREFIX: &str = "embedded worker of ";

/// Whether process `pid` of this host is alive. Without `/proc` (not Linux)
/// every process counts as alive: its runs then wait for the heartbeat timeout.
fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Runs due runs in this process, `slots` at a time, until the process ends.
pub async fn embedded_worker(dispatch: Arc<Dispatch>, slots: usize) {
    let name = format!("{EMBEDDED_PREFIX}{}", dispatch.service.taker());
    let free = Arc::new(AtomicUsize::new(slots));
    let (handoff, mut handed) = mpsc::unbounded_channel();
    if dispatch.embedded.set(Embedded { name: name.clone(), free: free.clone(), handoff }).is_err() {
        tracing::warn!("a second embedded worker in one process does not take runs handed over at creation");
    }
    let mut running: JoinSet<()> = JoinSet::new();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
    crate::observe::metrics().worker_slots.add(slots as i64);
    // The wake-up a claim that took less than it asked left armed (see `claim_armed`).
    let mut armed = None;
    loop {
        let open = free.load(Ordering::SeqCst);
        let asked = Asked::Pool { pool: DEFAULT_POOL, queues: &[] };
        let claim = dispatch.claim_armed(armed.take(), Some(&free), None, &name, asked, open, MAX_CLAIM_WAIT);
        tokio::select! {
            claimed = claim, if open > 0 => match claimed {
                Ok((claimed, rest)) => {
                    armed = rest;
                    for run in claimed {
                        start_run(&dispatch, &free, &mut running, run);
                    }
                }
                Err(err) => {
                    tracing::warn!("embedded worker: {err}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            Some(run) = handed.recv() => start_run(&dispatch, &free, &mut running, run),
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = heartbeat.tick() => {
                // Cancels asked for through another process reach our runs here.
                let ids: Vec<String> = dispatch.local.lock().expect("local runs lock").keys().cloned().collect();
                if let Ok(stop) = dispatch.heartbeat(&name, &ids) {
                    let local = dispatch.local.lock().expect("local runs lock");
                    for id in stop {
                        if let Some(token) = local.get(&id) {
                            token.cancel();
                        }
                    }
                }
            }
        }
    }
}

/// Runs a taken run in one of the embedded worker's slots (taken from
/// `free` by its claim), given back when it ends.
fn start_run(dispatch: &Arc<Dispatch>, free: &Arc<AtomicUsize>, running: &mut JoinSet<()>, claimed: ClaimedRun) {
    let ClaimedRun { run, traceparent, limits, grants, journal } = claimed;
    let (dispatch, free) = (dispatch.clone(), free.clone());
    running.spawn(async move {
        let _busy = crate::observe::metrics::SlotBusy::new();
        let cancel = dispatch.track(&run.id);
        tracing::info!(run = %run.id, "flow run '{}' taken by the embedded worker", run.name);
        let prepared = (limits, grants, journal);
        let execution = dispatch.service.execute_run_prepared(&run, prepared, None, cancel);
        match crate::observe::traces::with_trace_parent(traceparent, execution).await {
            Ok(ended) => tracing::info!(run = %run.id, state = %ended.state.name(),
                "flow run '{}' ended {}", run.name, ended.state.name()),
            Err(err) => tracing::error!(run = %run.id, "flow run '{}' could not run: {err}", run.name),
        }
        dispatch.untrack(&run.id);
        // Its slot, and its concurrency slot, are free for a waiting run.
        free.fetch_add(1, Ordering::SeqCst);
        dispatch.work_available();
    });
}
