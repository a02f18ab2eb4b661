//! Group commit for PostgreSQL: `record` queues in memory; a task on the
//! store's runtime commits everything queued in one transaction, at once
//! when someone waits (`barrier`), else within a few milliseconds. A batch
//! is sent pipelined (prepared statements, no wait between them), so a
//! commit costs one or two round trips whatever its size. Only committed
//! events are broadcast to watchers, and a wake-up for workers on other
//! servers (`NOTIFY`) rides in the same transaction, so it cannot arrive
//! before the runs it announces.

use super::conn::{IoRuntime, Target};
use super::notify::CHANNEL;
use super::rows::describe;
use crate::core::record::{Event, RunKind, StateRecord};
use crate::store::fold::{History, fold};
use crate::store::writer::{Write, timestamp};
use futures_util::future::{join, join_all, join3};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// How long a write nobody waits for may stay uncommitted.
const BACKGROUND_PERIOD: Duration = Duration::from_millis(5);

/// Writes per transaction: a backlog is committed in transactions of this
/// size, as PostgreSQL slows down on one huge transaction that updates rows
/// it inserted itself.
const MAX_WRITES_PER_TRANSACTION: usize = 500;

/// The longest pause between two attempts to reach a database that went away.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Shared {
    queue: Mutex<Vec<Write>>,
    submitted: AtomicU64,
    committed: watch::Sender<u64>,
    /// Something was queued into an empty queue.
    queued: Notify,
    /// Someone waits for the queue to be durable.
    urgent: Notify,
    /// Wake workers on other servers with the next commit.
    announce: AtomicBool,
    stopping: AtomicBool,
    events: broadcast::Sender<Arc<Event>>,
    /// Sequence ranges of the latest batches given up on, and why.
    lost: Mutex<Vec<(std::ops::Range<u64>, String)>>,
    /// Why the latest commit failed; cleared by the next that succeeds.
    failing: Mutex<Option<String>>,
}

/// Lost batches remembered for callers still to ask about them.
const LOST_REMEMBERED: usize = 64;

/// The write side of the PostgreSQL store.
pub struct PgWriter {
    shared: Arc<Shared>,
    stopped: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl PgWriter {
    /// Starts the committer on `runtime` with a connection of its own.
    pub fn start(target: &Target, runtime: &IoRuntime, origin: String) -> Result<Self, crate::store::StoreError> {
        let client = target.connect(runtime)?;
        let (events, _) = broadcast::channel(16_384);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            submitted: AtomicU64::new(0),
            committed: watch::channel(0).0,
            queued: Notify::new(),
            urgent: Notify::new(),
            announce: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            events,
            lost: Mutex::default(),
            failing: Mutex::default(),
        });
        let statements = {
            let client_ref = &client;
            super::conn::wait(Statements::prepare(client_ref))?
        };
        let (done, stopped) = tokio::sync::oneshot::channel();
        let committer = Committer { shared: shared.clone(), client, statements, target: target.clone(), origin };
        runtime.handle().spawn(async move {
            committer.run().await;
            let _ = done.send(());
        });
        Ok(Self { shared, stopped: Mutex::new(Some(stopped)) })
    }

    /// Queues a write.
    pub fn send(&self, write: Write) {
        let was_empty = {
            let mut queue = self.shared.queue.lock().expect("queue lock");
            queue.push(write);
            self.shared.submitted.fetch_add(1, Ordering::SeqCst);
            queue.len() == 1
        };
        if was_empty {
            self.shared.queued.notify_one();
        }
    }

    /// Queues writes next to each other, so one transaction commits them all
    /// or none; returns their sequence numbers.
    pub fn send_all(&self, writes: impl IntoIterator<Item = Write>) -> Vec<u64> {
        let numbers: Vec<u64> = {
            let mut queue = self.shared.queue.lock().expect("queue lock");
            writes
                .into_iter()
                .map(|write| {
                    queue.push(write);
                    self.shared.submitted.fetch_add(1, Ordering::SeqCst)
                })
                .collect()
        };
        self.shared.queued.notify_one();
        numbers
    }

    /// Resolves once the writes numbered `writes` are committed, or with why they were lost.
    pub fn commit_writes(&self, writes: Vec<u64>) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let target = writes.iter().max().map_or(0, |last| last + 1);
        let mut committed = self.shared.committed.subscribe();
        self.shared.urgent.notify_one();
        let shared = self.shared.clone();
        async move {
            let _ = committed.wait_for(|count| *count >= target).await;
            let lost = shared.lost.lock().expect("lost lock");
            match lost.iter().find(|(range, _)| writes.iter().any(|write| range.contains(write))) {
                Some((_, why)) => Err(why.clone()),
                None => Ok(()),
            }
        }
    }

    /// Why the latest commit failed, while the store is failing.
    pub fn failure(&self) -> Option<String> {
        self.shared.failing.lock().expect("failing lock").clone()
    }

    /// Wakes idle workers of every server with the next commit.
    pub fn announce_work(&self) {
        self.shared.announce.store(true, Ordering::SeqCst);
        self.shared.urgent.notify_one();
    }

    /// Resolves once every write queued so far is committed (or given up on, with an error printed).
    pub fn barrier(&self) -> impl Future<Output = ()> + Send + 'static {
        let target = self.shared.submitted.load(Ordering::SeqCst);
        let mut committed = self.shared.committed.subscribe();
        let done = *committed.borrow() >= target;
        if !done {
            self.shared.urgent.notify_one();
        }
        async move {
            if !done {
                let _ = committed.wait_for(|count| *count >= target).await;
            }
        }
    }

    /// Committed events, as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events.subscribe()
    }

    /// Commits what is queued and stops the committer.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.urgent.notify_one();
        if let Some(stopped) = self.stopped.lock().expect("stop lock").take() {
            let _ = super::conn::wait(stopped);
        }
    }
}

/// The writer's prepared statements.
struct Statements {
    flow_run: Statement,
    task_run: Statement,
    folded_task_run: Statement,
    flow_state: Statement,
    task_state: Statement,
    history: Statement,
    log: Statement,
    cache_put: Statement,
    notify: Statement,
    emitted: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        client.batch_execute("SET plan_cache_mode = force_custom_plan").await?;
        Ok(Self {
            // An emitted event joins its flow run's tenant's log, with the
            // run's flow, deployment and the deployment's tags.
            emitted: client
                .prepare(
                    "INSERT INTO events (tenant, name, time, flow_run, task_run, flow, deployment, tags, payload)
                     SELECT f.tenant, $3, $4, f.id, $2, f.flow, f.deployment,
                         COALESCE((SELECT (d.body::json -> 'tags')::text FROM deployments d
                                   WHERE d.tenant = f.tenant AND d.flow = split_part(f.deployment, '/', 1)
                                   AND d.name = substr(f.deployment, strpos(f.deployment, '/') + 1)), '[]'), $5
                     FROM flow_runs f WHERE f.id = $1",
                )
                .await?,
            flow_run: client
                .prepare(
                    "INSERT INTO flow_runs (id, name, flow, deployment, parent, artifact, parameters, created, scheduled,
                     tenant, call_position, call_batch, call_attempt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                     COALESCE((SELECT tenant FROM flow_runs WHERE id = $5), $10, 'default'), $11, $12, $13)
                     ON CONFLICT (id) DO UPDATE SET ended = NULL, call_attempt = excluded.call_attempt
                     WHERE flow_runs.parent = excluded.parent AND excluded.call_attempt > flow_runs.call_attempt",
                )
                .await?,
            task_run: client
                .prepare(
                    "INSERT INTO task_runs (id, flow_run, task, name, input, created, call_position, call_batch,
                     call_attempt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                )
                .await?,
            folded_task_run: client
                .prepare(
                    "INSERT INTO task_runs (id, flow_run, task, name, input, created, state, message, result, attempts,
                     ended, call_position, call_batch, call_attempt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                     $11, $12, $13, $14) ON CONFLICT DO NOTHING",
                )
                .await?,
            // A run that has ended keeps its end: late reports of a lost worker are dropped,
            // and only a state that moved the run enters its history. A run paused for
            // input is taken by nobody until it is resumed.
            flow_state: client
                .prepare(
                    "WITH moved AS (UPDATE flow_runs SET state = $2, message = $3, result = COALESCE($4, result),
                         started = COALESCE(started, $5), ended = $6,
                         claimed_by = CASE WHEN $2 = 'Paused' THEN NULL ELSE claimed_by END,
                         queue = CASE WHEN $2 = 'Paused' THEN NULL ELSE queue END
                         WHERE id = $1 AND ended IS NULL RETURNING id)
                     INSERT INTO states (run, kind, state, message, attempt, time)
                     SELECT id, 'flow', $2, $3, $7, $8 FROM moved",
                )
                .await?,
            task_state: client
                .prepare(
                    "WITH moved AS (UPDATE task_runs SET state = $2, message = $3, result = COALESCE($4, result),
                         attempts = GREATEST(attempts, $5), ended = $6 WHERE id = $1 AND ended IS NULL RETURNING id)
                     INSERT INTO states (run, kind, state, message, attempt, time)
                     SELECT id, 'task', $2, $3, $5, $7 FROM moved",
                )
                .await?,
            history: client
                .prepare("INSERT INTO states (run, kind, state, message, attempt, time) VALUES ($1, $2, $3, $4, $5, $6)")
                .await?,
            log: client
                .prepare("INSERT INTO logs (flow_run, task_run, level, message, time) VALUES ($1, $2, $3, $4, $5)")
                .await?,
            cache_put: client
                .prepare(
                    "INSERT INTO task_cache (tenant, key, result, expires) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, key) DO UPDATE SET result = excluded.result, expires = excluded.expires",
                )
                .await?,
            notify: client.prepare(&format!("SELECT pg_notify('{CHANNEL}', $1)")).await?,
        })
    }
}

struct Committer {
    shared: Arc<Shared>,
    client: Client,
    statements: Statements,
    target: Target,
    /// This store's id, sent with `NOTIFY` so its own listener can skip it.
    origin: String,
}

/// One statement of a batch with its parameters, owned so the batch can be pipelined.
type Param = Box<dyn ToSql + Sync + Send>;

impl Committer {
    async fn run(mut self) {
        loop {
            if self.shared.stopping.load(Ordering::SeqCst) {
                self.commit_queued().await;
                return;
            }
            tokio::select! {
                () = self.shared.urgent.notified() => {}
                () = self.shared.queued.notified() => {
                    tokio::select! {
                        () = tokio::time::sleep(BACKGROUND_PERIOD) => {}
                        () = self.shared.urgent.notified() => {}
                    }
                }
            }
            self.commit_queued().await;
        }
    }

    /// Commits what is queued, retrying while the database cannot be reached.
    async fn commit_queued(&mut self) {
        let mut batch = std::mem::take(&mut *self.shared.queue.lock().expect("queue lock"));
        let announce = self.shared.announce.swap(false, Ordering::SeqCst);
        if batch.is_empty() && !announce {
            return;
        }
        loop {
            let tail = batch.split_off(batch.len().min(MAX_WRITES_PER_TRANSACTION));
            let chunk = std::mem::replace(&mut batch, tail);
            let last = batch.is_empty();
            let first = *self.shared.committed.borrow();
            // The wake-up rides with the last writes, so it never arrives before them.
            let started = std::time::Instant::now();
            let outcome = self.commit_with_retries(&chunk, announce && last).await;
            let metrics = crate::observe::metrics();
            metrics.postgres_commit_seconds.observe(started.elapsed().as_secs_f64());
            metrics.postgres_commit_writes.observe(chunk.len() as f64);
            match outcome {
                Ok(()) => {
                    *self.shared.failing.lock().expect("failing lock") = None;
                    for write in &chunk {
                        if let Write::Event(event) = write {
                            let _ = self.shared.events.send(Arc::new(event.clone()));
                        }
                    }
                }
                Err(why) => {
                    let mut lost = self.shared.lost.lock().expect("lost lock");
                    if lost.len() == LOST_REMEMBERED {
                        lost.remove(0);
                    }
                    lost.push((first..first + chunk.len() as u64, why.clone()));
                    *self.shared.failing.lock().expect("failing lock") = Some(why);
                }
            }
            self.shared.committed.send_modify(|total| *total += chunk.len() as u64);
            if last {
                return;
            }
        }
    }

    /// Commits `batch`, retrying while the database cannot be reached; an
    /// error says why it was given up on.
    async fn commit_with_retries(&mut self, batch: &[Write], announce: bool) -> Result<(), String> {
        let count = batch.len();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.commit(batch, announce).await {
                Ok(()) => return Ok(()),
                Err(err) if self.client.is_closed() => {
                    tracing::warn!(
                        "lost the PostgreSQL server at {} while committing {count} writes ({}); retrying",
                        self.target.name,
                        describe(&err)
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if let Ok(client) = self.reconnect().await {
                        self.client = client.0;
                        self.statements = client.1;
                    }
                }
                Err(err) => {
                    let why = format!("the state store could not record {count} writes: {}", describe(&err));
                    tracing::error!("{why}");
                    return Err(why);
                }
            }
        }
    }

    async fn reconnect(&self) -> Result<(Client, Statements), crate::store::StoreError> {
        let client = self.target.connect_here().await?;
        let statements = Statements::prepare(&client).await?;
        Ok((client, statements))
    }

    /// Sends one batch: the new task runs first (their inserts say which
    /// states are history only), then everything else in order, pipelined.
    async fn commit(&mut self, batch: &[Write], announce: bool) -> Result<(), tokio_postgres::Error> {
        let folded = fold(batch, History::Apart);
        let s = &self.statements;
        let client = &self.client;
        let mut first: Vec<(&Statement, Vec<Param>)> = Vec::new();
        let mut new_runs = Vec::new();
        for write in batch {
            if let Write::Event(Event::TaskRunCreated(run)) = write
                && let Some(row) = folded.rows.get(&run.id)
            {
                new_runs.push(run.id);
                first.push((
                    &s.folded_task_run,
                    vec![
                        Box::new(run.id.to_string()),
                        Box::new(run.flow_run.to_string()),
                        Box::new(run.task.clone()),
                        Box::new(run.name.clone()),
                        Box::new(run.input.clone()),
                        Box::new(timestamp(run.created)),
                        Box::new(row.state.map(str::to_string)),
                        Box::new(row.message.clone()),
                        Box::new(row.result.as_deref().map(str::to_string)),
                        Box::new(row.attempts as i32),
                        Box::new(row.ended.map(timestamp)),
                        Box::new(run.call.map(|c| c.position as i64)),
                        Box::new(run.call.map(|c| c.batch as i64)),
                        Box::new(run.call.map(|c| c.flow_attempt as i32)),
                    ],
                ));
            }
        }
        // BEGIN and COMMIT ride in the pipeline too: a statement that fails
        // aborts the transaction, and the COMMIT after it then rolls back.
        let mut written = HashSet::new();
        let began = !first.is_empty();
        if began {
            let (begin, inserted) = join(client.batch_execute("BEGIN"), send_all(client, &first)).await;
            begin?;
            for (id, result) in new_runs.iter().zip(inserted) {
                match result {
                    Ok(1) => {
                        written.insert(*id);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        return Err(err);
                    }
                }
            }
        }
        let mut rest: Vec<(&Statement, Vec<Param>)> = Vec::new();
        for (position, write) in batch.iter().enumerate() {
            match write {
                Write::Event(Event::TaskRunCreated(run)) if folded.rows.contains_key(&run.id) => {}
                Write::Event(Event::State(state)) if state.kind == RunKind::Task && written.contains(&state.run) => {
                    if !folded.dropped.contains(&position) {
                        rest.push((&s.history, history(state)));
                    }
                }
                write => rest.push(statement(s, write)),
            }
        }
        if announce {
            rest.push((&s.notify, vec![Box::new(self.origin.clone())]));
        }
        let (results, commit) = if began {
            join(send_all(client, &rest), client.batch_execute("COMMIT")).await
        } else {
            let (begin, results, commit) =
                join3(client.batch_execute("BEGIN"), send_all(client, &rest), client.batch_execute("COMMIT")).await;
            begin?;
            (results, commit)
        };
        if let Some(Err(err)) = results.into_iter().find(Result::is_err) {
            return Err(err);
        }
        commit
    }
}

/// Sends every statement before waiting for the first answer.
async fn send_all(client: &Client, statements: &[(&Statement, Vec<Param>)]) -> Vec<Result<u64, tokio_postgres::Error>> {
    let futures = statements.iter().map(|(statement, params)| {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        async move { client.execute(*statement, &params).await }
    });
    join_all(futures).await
}

fn kind(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Flow => "flow",
        RunKind::Task => "task",
    }
}

fn history(state: &StateRecord) -> Vec<Param> {
    vec![
        Box::new(state.run.to_string()),
        Box::new(kind(state.kind)),
        Box::new(state.state.name()),
        Box::new(state.message.clone()),
        Box::new(state.attempt as i32),
        Box::new(timestamp(state.time)),
    ]
}

fn statement<'s>(s: &'s Statements, write: &Write) -> (&'s Statement, Vec<Param>) {
    match write {
        Write::Event(Event::FlowRunCreated(run)) => (
            &s.flow_run,
            vec![
                Box::new(run.id.to_string()),
                Box::new(run.name.clone()),
                Box::new(run.flow.clone()),
                Box::new(run.deployment.clone()),
                Box::new(run.parent.map(|p| p.to_string())),
                Box::new(run.artifact_digest.clone()),
                Box::new(run.parameters.to_string()),
                Box::new(timestamp(run.created)),
                Box::new(run.scheduled.map(timestamp)),
                Box::new(run.tenant.clone()),
                Box::new(run.call.map(|c| c.position as i64)),
                Box::new(run.call.map(|c| c.batch as i64)),
                Box::new(run.call.map(|c| c.flow_attempt as i32)),
            ],
        ),
        Write::Event(Event::TaskRunCreated(run)) => (
            &s.task_run,
            vec![
                Box::new(run.id.to_string()),
                Box::new(run.flow_run.to_string()),
                Box::new(run.task.clone()),
                Box::new(run.name.clone()),
                Box::new(run.input.clone()),
                Box::new(timestamp(run.created)),
                Box::new(run.call.map(|c| c.position as i64)),
                Box::new(run.call.map(|c| c.batch as i64)),
                Box::new(run.call.map(|c| c.flow_attempt as i32)),
            ],
        ),
        Write::Event(Event::State(state)) => {
            let time = timestamp(state.time);
            let ended = state.state.is_terminal().then(|| time.clone());
            let result = state.result.as_deref().map(str::to_string);
            match state.kind {
                RunKind::Flow => {
                    let started = state.state.is_running().then(|| time.clone());
                    (
                        &s.flow_state,
                        vec![
                            Box::new(state.run.to_string()),
                            Box::new(state.state.name()),
                            Box::new(state.message.clone()),
                            Box::new(result),
                            Box::new(started),
                            Box::new(ended),
                            Box::new(state.attempt as i32),
                            Box::new(time),
                        ],
                    )
                }
                RunKind::Task => (
                    &s.task_state,
                    vec![
                        Box::new(state.run.to_string()),
                        Box::new(state.state.name()),
                        Box::new(state.message.clone()),
                        Box::new(result),
                        Box::new(state.attempt as i32),
                        Box::new(ended),
                        Box::new(time),
                    ],
                ),
            }
        }
        Write::Event(Event::Log(log)) => (
            &s.log,
            vec![
                Box::new(log.flow_run.to_string()),
                Box::new(log.task_run.map(|t| t.to_string())),
                Box::new(log.level.name()),
                Box::new(log.message.clone()),
                Box::new(timestamp(log.time)),
            ],
        ),
        Write::Event(Event::Emitted(emitted)) => (
            &s.emitted,
            vec![
                Box::new(emitted.flow_run.to_string()),
                Box::new(emitted.task_run.map(|t| t.to_string())),
                Box::new(emitted.name.clone()),
                Box::new(timestamp(emitted.time)),
                Box::new(emitted.payload.to_string()),
            ],
        ),
        Write::CachePut { tenant, key, result, expires } => (
            &s.cache_put,
            vec![
                Box::new(tenant.clone()),
                Box::new(key.clone()),
                Box::new(result.to_string()),
                Box::new(expires.map(timestamp)),
            ],
        ),
    }
}
