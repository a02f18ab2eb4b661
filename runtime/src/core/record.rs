//! What the host records about runs, and the trait every recorder (memory,
//! console, SQLite) implements. Records are plain data.

use crate::core::ids::RunId;
use crate::core::journal::CallPosition;
use crate::core::state::StateType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Whether a record is about a flow run or a task run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum RunKind {
    /// A flow run (also a subflow run).
    Flow,
    /// A task run.
    Task,
}

/// A flow run as created.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlowRunRecord {
    /// Its id.
    #[schema(value_type = String, format = "uuid")]
    pub id: RunId,
    /// Its generated name.
    pub name: String,
    /// The flow it runs.
    pub flow: String,
    /// The flow run that started it as a subflow.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub parent: Option<RunId>,
    /// `flow/deployment`, when started from a deployment.
    pub deployment: Option<String>,
    /// Its parameters object.
    pub parameters: serde_json::Value,
    /// sha256 of the component it runs.
    pub artifact_digest: String,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it is due to start, for scheduled runs.
    pub scheduled: Option<DateTime<Utc>>,
    /// The tenant that owns it; a subflow run belongs to its parent's
    /// tenant whatever this says, so a worker cannot move a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where a subflow's call stands in its parent's calls (the journal's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallPosition>,
}

/// A task run as created.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskRunRecord {
    /// Its id.
    #[schema(value_type = String, format = "uuid")]
    pub id: RunId,
    /// The flow run it belongs to.
    #[schema(value_type = String, format = "uuid")]
    pub flow_run: RunId,
    /// The task it runs.
    pub task: String,
    /// Its display name, such as `say_hello-0`.
    pub name: String,
    /// Its input object as JSON.
    pub input: String,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Where its call stands in its flow run's calls (the journal's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallPosition>,
}

/// A move of a run to a new state.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateRecord {
    /// The run that moved.
    #[schema(value_type = String, format = "uuid")]
    pub run: RunId,
    /// Flow run or task run.
    pub kind: RunKind,
    /// Its new state.
    pub state: StateType,
    /// Why, for people (an error, a retry delay, a limit hit).
    pub message: Option<String>,
    /// The attempt this state belongs to, from 1.
    pub attempt: u32,
    /// The result as JSON, for `Completed` and `Cached`.
    #[schema(value_type = Option<String>)]
    pub result: Option<Arc<str>>,
    /// When.
    pub time: DateTime<Utc>,
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum LogLevel {
    /// Very fine detail.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the run survived.
    Warning,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// Parses a level name as [`LogLevel::name`] writes it.
    pub fn parse(name: &str) -> Option<Self> {
        [LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warning, LogLevel::Error]
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(name))
    }

    /// The level as Prefect prints it.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }
}

/// One line of a run's log.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogRecord {
    /// The flow run it belongs to.
    #[schema(value_type = String, format = "uuid")]
    pub flow_run: RunId,
    /// The task run that wrote it, if a task did.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub task_run: Option<RunId>,
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// When.
    pub time: DateTime<Utc>,
}

/// An event a flow emitted itself (`emit-event(name, payload)` in the WIT):
/// stored in its tenant's event log, where automations can match it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmittedRecord {
    /// The flow run that emitted it.
    #[schema(value_type = String, format = "uuid")]
    pub flow_run: RunId,
    /// The task run that emitted it, if a task did.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub task_run: Option<RunId>,
    /// Its name: 1 to 128 characters of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Its payload, a JSON object of at most 64 KiB.
    pub payload: serde_json::Value,
    /// When.
    pub time: DateTime<Utc>,
}

/// Something that happened to a run.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Event {
    /// A flow run was created.
    FlowRunCreated(FlowRunRecord),
    /// A task run was created.
    TaskRunCreated(TaskRunRecord),
    /// A run changed state.
    State(StateRecord),
    /// A log line was written.
    Log(LogRecord),
    /// The flow emitted an event of its own.
    Emitted(EmittedRecord),
}

/// Resolves once everything recorded before it was asked for is durable.
pub type Barrier = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Takes every event, in order, before the host acts on it.
pub trait Recorder: Send + Sync {
    /// Records one event.
    fn record(&self, event: &Event);

    /// Records one event the caller gives up: a recorder that keeps events
    /// takes it as it is instead of copying its strings (the runner records
    /// three or four per task, one with the task's whole input).
    fn record_owned(&self, event: Event) {
        self.record(&event);
    }

    /// A wait until every event recorded so far is durable, for recorders
    /// that write in the background; `None` when there is nothing to wait for.
    fn barrier(&self) -> Option<Barrier> {
        None
    }

    /// Why events recorded lately could not be made durable, while that
    /// lasts: a runner stops its run rather than go on unrecorded.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// Sends every event to several recorders in turn.
pub struct Fanout(pub Vec<Arc<dyn Recorder>>);

impl Recorder for Fanout {
    fn record(&self, event: &Event) {
        for recorder in &self.0 {
            recorder.record(event);
        }
    }

    fn record_owned(&self, event: Event) {
        if let Some((last, others)) = self.0.split_last() {
            for recorder in others {
                recorder.record(&event);
            }
            last.record_owned(event);
        }
    }

    fn barrier(&self) -> Option<Barrier> {
        let barriers: Vec<Barrier> = self.0.iter().filter_map(|r| r.barrier()).collect();
        if barriers.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            for barrier in barriers {
                barrier.await;
            }
        }))
    }

    fn failure(&self) -> Option<String> {
        self.0.iter().find_map(|recorder| recorder.failure())
    }
}

/// Results of cached tasks of each tenant, keyed by artifact, task and
/// input: two tenants may run the same bytes, and neither ever reads a
/// result the other computed.
pub trait ResultCache: Send + Sync {
    /// A result `tenant` cached that is still valid at `now`.
    fn get(&self, tenant: &str, key: &str, now: DateTime<Utc>) -> Option<Arc<str>>;
    /// Keeps a result of `tenant` until `expires` (for ever when `None`).
    fn put(&self, tenant: &str, key: &str, result: Arc<str>, expires: Option<DateTime<Utc>>);
}
