//! What a remote worker may report about runs, decided by the store alone.
//!
//! A worker's batch of events is checked as a whole before any of it is
//! written. Every run an event touches must, according to the store, belong
//! to the worker's tenant, not have ended, and sit under a root run that this
//! worker holds. A worker may create runs only under such runs, and only with
//! ids the store has never seen: parent links in the batch are believed only
//! for runs the same batch creates after passing those checks, so a batch
//! cannot adopt an existing run by "creating" it again. The one creation
//! of an existing run a worker sends is its echo of the root run it was
//! given (its runner records every run it starts): that is accepted when the
//! worker holds that root, and dropped, since the store already has it.
//! A batch sent again because its answer was lost is recorded once: states
//! the history already holds (same run, state and time) and task runs
//! already created under the same flow run are dropped as echoes.

use crate::core::ids::RunId;
use crate::core::record::{Event, RunKind};
use crate::store::{StateStore, StoreError};
use std::collections::{HashMap, HashSet};

/// Why a batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The worker may not write what it sent; nothing of the batch was written.
    #[error("{0}")]
    NotHeld(String),
    /// The store could not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks `events` reported by `worker` of `tenant` (`None`: an operator's
/// worker, which may hold any tenant's runs), dropping echoes of held root
/// runs. Clears the tenant of created runs: the store gives a subflow its
/// parent's tenant.
pub fn check_report<S: StateStore + ?Sized>(
    store: &S,
    worker: &str,
    tenant: Option<&str>,
    events: &mut Vec<Event>,
) -> Result<(), Refusal> {
    let mut check = Check { store, worker, tenant, live: HashSet::new(), tasks: HashMap::new(), ended: HashSet::new() };
    let mut echoes = Vec::new();
    for (position, event) in events.iter_mut().enumerate() {
        if check.event(event)? != Checked::New {
            echoes.push(position);
        }
    }
    for position in echoes.into_iter().rev() {
        events.remove(position);
    }
    Ok(())
}

/// What a checked event is.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// To be recorded.
    New,
    /// The creation of the root run the worker holds: already recorded.
    EchoOfHeldRoot,
    /// Part of a batch sent again after its answer was lost: already recorded.
    Resent,
}

struct Check<'a, S: ?Sized> {
    store: &'a S,
    worker: &'a str,
    tenant: Option<&'a str>,
    /// Flow runs this batch may write to: checked against the store, or created by the batch under one.
    live: HashSet<RunId>,
    /// Task runs this batch may write to, with their flow run.
    tasks: HashMap<RunId, RunId>,
    /// Runs that reached a terminal state earlier in this batch.
    ended: HashSet<RunId>,
}

fn refuse<T>(message: String) -> Result<T, Refusal> {
    Err(Refusal::NotHeld(message))
}

/// Longest run, flow or task name a worker may report.
const MAX_NAME_CHARS: usize = 256;

/// Names a worker reports are shown in terminals and pages: bounded, and
/// free of control characters.
fn check_names(run: RunId, names: &[(&str, &str)]) -> Result<(), Refusal> {
    for (what, name) in names {
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            let shown: String = name.chars().take(40).flat_map(char::escape_debug).collect();
            return refuse(format!(
                "run {run} has {what} \"{shown}\": names are 1 to {MAX_NAME_CHARS} characters without control characters"
            ));
        }
    }
    Ok(())
}

impl<S: StateStore + ?Sized> Check<'_, S> {
    fn event(&mut self, event: &mut Event) -> Result<Checked, Refusal> {
        match event {
            Event::FlowRunCreated(run) => {
                run.tenant = None;
                let Some(parent) = run.parent else {
                    if self.store.run_standing(RunKind::Flow, &run.id.to_string())?.is_some() {
                        // Of this tenant, held by this worker and not ended, or refused here.
                        self.flow_run(run.id)?;
                        return Ok(Checked::EchoOfHeldRoot);
                    }
                    return refuse(format!(
                        "flow run {} has no parent: a worker creates only subflow runs, under a run it holds",
                        run.id
                    ));
                };
                check_names(run.id, &[("name", &run.name), ("flow", &run.flow)])?;
                if run.call.is_some() && self.resumes_subflow(run.id, parent)? {
                    return Ok(Checked::New);
                }
                self.new_id(RunKind::Flow, run.id)?;
                self.flow_run(parent)?;
                self.live.insert(run.id);
            }
            Event::TaskRunCreated(run) => {
                check_names(run.id, &[("name", &run.name), ("task", &run.task)])?;
                if self.store.task_flow_run(&run.id.to_string())?.as_deref() == Some(run.flow_run.to_string().as_str())
                {
                    // Already recorded under the same flow run: this batch was sent before.
                    self.flow_run(run.flow_run)?;
                    self.tasks.insert(run.id, run.flow_run);
                    return Ok(Checked::Resent);
                }
                self.new_id(RunKind::Task, run.id)?;
                self.flow_run(run.flow_run)?;
                self.tasks.insert(run.id, run.flow_run);
            }
            Event::State(state) => {
                if self.store.has_state(&state.run.to_string(), state.state, state.time)? {
                    return Ok(Checked::Resent);
                }
                match state.kind {
                    RunKind::Flow => self.flow_run(state.run)?,
                    RunKind::Task => {
                        self.task_run(state.run)?;
                    }
                }
                if state.state.is_terminal() {
                    self.ended.insert(state.run);
                }
            }
            Event::Log(log) => {
                self.flow_run(log.flow_run)?;
                if let Some(task_run) = log.task_run
                    && self.task_run(task_run)? != log.flow_run
                {
                    return refuse(format!("task run {task_run} does not belong to flow run {}", log.flow_run));
                }
            }
            Event::Emitted(emitted) => {
                // Checked like a log line, and held to what the guest's call was held to.
                self.flow_run(emitted.flow_run)?;
                if let Some(task_run) = emitted.task_run
                    && self.task_run(task_run)? != emitted.flow_run
                {
                    return refuse(format!("task run {task_run} does not belong to flow run {}", emitted.flow_run));
                }
                crate::core::events::check_event_name(&emitted.name)
                    .and_then(|()| crate::core::events::check_event_payload(&emitted.payload))
                    .or_else(|why| refuse(format!("flow run {}: {why}", emitted.flow_run)))?;
            }
        }
        Ok(Checked::New)
    }

    /// Whether `id` is a subflow run the store already has under `parent`, which
    /// a later attempt of the root this worker holds resumes under its id
    /// (`core/journal.rs`). Its parent, not the batch, decides that it is held.
    fn resumes_subflow(&mut self, id: RunId, parent: RunId) -> Result<bool, Refusal> {
        let Some(existing) = self.store.flow_run(None, &id.to_string())? else { return Ok(false) };
        if existing.id != id.to_string() || existing.parent.as_deref() != Some(parent.to_string().as_str()) {
            return refuse(format!("flow run {id} already exists: a worker creates runs only with new ids"));
        }
        self.flow_run(parent)?;
        self.live.insert(id);
        self.ended.remove(&id);
        Ok(true)
    }

    /// Refuses an id that exists in the store or was created earlier in the batch.
    fn new_id(&self, kind: RunKind, id: RunId) -> Result<(), Refusal> {
        let in_batch = match kind {
            RunKind::Flow => self.live.contains(&id) || self.ended.contains(&id),
            RunKind::Task => self.tasks.contains_key(&id),
        };
        if in_batch || self.store.run_standing(kind, &id.to_string())?.is_some() {
            let what = if kind == RunKind::Flow { "flow run" } else { "task run" };
            return refuse(format!("{what} {id} already exists: a worker creates runs only with new ids"));
        }
        Ok(())
    }

    /// Allows writing to flow run `id` if it is live and held by this worker.
    fn flow_run(&mut self, id: RunId) -> Result<(), Refusal> {
        if self.ended.contains(&id) {
            return refuse(format!("flow run {id} has already ended"));
        }
        if self.live.contains(&id) {
            return Ok(());
        }
        let text = id.to_string();
        let standing = self.store.run_standing(RunKind::Flow, &text)?;
        let Some(standing) = standing.filter(|s| self.tenant.is_none_or(|tenant| s.tenant == tenant)) else {
            // Another tenant's run is reported exactly as a missing one.
            return refuse(format!("there is no flow run {id} held by worker `{}`", self.worker));
        };
        if let Some(reason) = self.store.lease_lost(self.worker, &text)? {
            return refuse(format!("lease lost: {reason}; stop running it"));
        }
        if standing.ended {
            return refuse(format!("flow run {id} has already ended"));
        }
        self.live.insert(id);
        Ok(())
    }

    /// Allows writing to task run `id`; returns its flow run.
    fn task_run(&mut self, id: RunId) -> Result<RunId, Refusal> {
        if self.ended.contains(&id) {
            return refuse(format!("task run {id} has already ended"));
        }
        let flow_run = match self.tasks.get(&id) {
            Some(flow_run) => *flow_run,
            None => {
                let standing = self.store.run_standing(RunKind::Task, &id.to_string())?;
                let Some(standing) = standing.filter(|s| self.tenant.is_none_or(|tenant| s.tenant == tenant)) else {
                    return refuse(format!("there is no task run {id}; report its creation first"));
                };
                if standing.ended {
                    return refuse(format!("task run {id} has already ended"));
                }
                let Some(flow_run) = RunId::parse(&standing.flow_run) else {
                    return Err(
                        StoreError::Corrupt(format!("task run {id} has flow run `{}`", standing.flow_run)).into()
                    );
                };
                flow_run
            }
        };
        self.flow_run(flow_run)?;
        self.tasks.insert(id, flow_run);
        Ok(flow_run)
    }
}
