//! Group commit: one thread owns the write connection, takes every queued
//! write at once into one transaction, and then tells waiters (barriers) and
//! watchers (committed events) that it is durable. A run of 1,000 tasks thus
//! pays one commit per batch, not one per transition.

use crate::core::record::{Event, RunKind};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Transaction, params};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use tokio::sync::{broadcast, watch};

/// Most writes taken into one transaction.
const MAX_BATCH: usize = 4096;

/// One queued write.
pub enum Write {
    /// A recorded event.
    Event(Event),
    /// A cached task result.
    CachePut { key: String, result: Arc<str>, expires: Option<DateTime<Utc>> },
}

/// The sending side, held by the store.
pub struct WriterHandle {
    sender: Option<Sender<Write>>,
    submitted: AtomicU64,
    committed: watch::Receiver<u64>,
    events: broadcast::Sender<Arc<Event>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Timestamps as stored: RFC 3339 in UTC with microseconds, so text order is time order.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl WriterHandle {
    /// Starts the writer thread on `connection`.
    pub fn start(connection: Connection) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        let (committed_tx, committed) = watch::channel(0);
        let (events, _) = broadcast::channel(16_384);
        let events_tx = events.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-store-writer".into())
            .spawn(move || run(connection, receiver, committed_tx, events_tx))
            .expect("spawning the store writer");
        Self { sender: Some(sender), submitted: AtomicU64::new(0), committed, events, thread: Some(thread) }
    }

    /// Queues a write.
    pub fn send(&self, write: Write) {
        self.submitted.fetch_add(1, Ordering::SeqCst);
        if let Some(sender) = &self.sender {
            // The writer only stops when the store is dropped.
            let _ = sender.send(write);
        }
    }

    /// Resolves once every write queued so far is committed.
    pub fn barrier(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let target = self.submitted.load(Ordering::SeqCst);
        let mut committed = self.committed.clone();
        async move {
            let _ = committed.wait_for(|done| *done >= target).await;
        }
    }

    /// Committed events, as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    mut connection: Connection,
    receiver: Receiver<Write>,
    committed: watch::Sender<u64>,
    events: broadcast::Sender<Arc<Event>>,
) {
    let mut done: u64 = 0;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(write) => batch.push(write),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if let Err(err) = commit(&mut connection, &batch) {
            // Waiters must not hang on a broken database; say what was lost.
            eprintln!("error: the state store could not record {} writes: {err}", batch.len());
        }
        done += batch.len() as u64;
        // Watchers get the events before barriers open, so whoever waited
        // on a barrier finds every event it covers already in its channel.
        for write in batch {
            if let Write::Event(event) = write {
                let _ = events.send(Arc::new(event));
            }
        }
        committed.send_replace(done);
    }
}

fn commit(connection: &mut Connection, batch: &[Write]) -> rusqlite::Result<()> {
    let tx = connection.transaction()?;
    for write in batch {
        apply(&tx, write)?;
    }
    tx.commit()
}

fn apply(tx: &Transaction<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Event(Event::FlowRunCreated(run)) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO flow_runs (id, name, flow, deployment, parent, artifact, parameters, created, scheduled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                run.id.to_string(),
                run.name,
                run.flow,
                run.deployment,
                run.parent.map(|p| p.to_string()),
                run.artifact_digest,
                run.parameters.to_string(),
                timestamp(run.created),
                run.scheduled.map(timestamp),
            ])?;
        }
        Write::Event(Event::TaskRunCreated(run)) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO task_runs (id, flow_run, task, name, input, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                run.id.to_string(),
                run.flow_run.to_string(),
                run.task,
                run.name,
                run.input,
                timestamp(run.created)
            ])?;
        }
        Write::Event(Event::State(state)) => {
            let run = state.run.to_string();
            let time = timestamp(state.time);
            let kind = match state.kind {
                RunKind::Flow => "flow",
                RunKind::Task => "task",
            };
            tx.prepare_cached(
                "INSERT INTO states (run, kind, state, message, attempt, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![run, kind, state.state.name(), state.message, state.attempt, time])?;
            let ended = state.state.is_terminal().then_some(time.as_str());
            let result = state.result.as_deref();
            match state.kind {
                RunKind::Flow => {
                    let started = state.state.is_running().then_some(time.as_str());
                    tx.prepare_cached(
                        "UPDATE flow_runs SET state = ?2, message = ?3, result = COALESCE(?4, result),
                         started = COALESCE(started, ?5), ended = COALESCE(?6, ended) WHERE id = ?1",
                    )?
                    .execute(params![
                        run,
                        state.state.name(),
                        state.message,
                        result,
                        started,
                        ended
                    ])?;
                }
                RunKind::Task => {
                    tx.prepare_cached(
                        "UPDATE task_runs SET state = ?2, message = ?3, result = COALESCE(?4, result),
                         attempts = MAX(attempts, ?5), ended = COALESCE(?6, ended) WHERE id = ?1",
                    )?
                    .execute(params![
                        run,
                        state.state.name(),
                        state.message,
                        result,
                        state.attempt,
                        ended
                    ])?;
                }
            }
        }
        Write::Event(Event::Log(log)) => {
            tx.prepare_cached(
                "INSERT INTO logs (flow_run, task_run, level, message, time) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                log.flow_run.to_string(),
                log.task_run.map(|t| t.to_string()),
                log.level.name(),
                log.message,
                timestamp(log.time)
            ])?;
        }
        Write::CachePut { key, result, expires } => {
            tx.prepare_cached("INSERT OR REPLACE INTO task_cache (key, result, expires) VALUES (?1, ?2, ?3)")?
                .execute(params![key, result.as_ref(), expires.map(timestamp)])?;
        }
    }
    Ok(())
}
