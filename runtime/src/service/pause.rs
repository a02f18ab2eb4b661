//! Runs paused for input: resuming one with a person's input (checked
//! against the pause's schema), and ending or resuming, with the flow's
//! default, those whose timeout passed.
//!
//! A paused run holds no instance and no claim; resuming completes its pause
//! task run with the input and schedules the run's next attempt, which
//! replays the flow from its journal up to the `suspend` call and gets the
//! input there (`core/pause.rs`).

use super::{Service, ServiceError};
use crate::core::ids::RunId;
use crate::core::pause::{PAUSE_TASK, Waiting};
use crate::core::record::{Event, RunKind, StateRecord};
use crate::core::state::StateType;
use crate::store::{FlowRunRow, RunFilter, TaskRunRow};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;

/// Paused runs looked at per scheduler pass for a passed timeout.
const PAUSED_RUNS_PER_PASS: usize = 1_000;

/// A paused run's open pause.
pub struct OpenPause {
    /// The pause's task run.
    pub task_run: TaskRunRow,
    /// What it waits for.
    pub waiting: Waiting,
}

impl Service {
    /// The open pause of a tenant's paused run: its prompt, schema and deadline.
    pub fn pause_of(&self, tenant: &str, id_or_name: &str) -> Result<(FlowRunRow, OpenPause), ServiceError> {
        let run = self.flow_run(tenant, id_or_name)?;
        if run.state != Some(StateType::Paused) {
            let state = run.state.map_or("no state", StateType::name);
            return Err(ServiceError::Invalid(format!(
                "flow run '{}' is {state}, not Paused; only a run paused for input can be resumed",
                run.name
            )));
        }
        let pause = self.open_pause(&run.id)?.ok_or_else(|| {
            ServiceError::Other(format!("flow run '{}' is Paused but has no open pause task run", run.name))
        })?;
        Ok((run, pause))
    }

    fn open_pause(&self, run: &str) -> Result<Option<OpenPause>, ServiceError> {
        let task_run = self
            .store
            .task_runs(run)?
            .into_iter()
            .rev()
            .find(|t| t.task == PAUSE_TASK && t.state == Some(StateType::Paused));
        let Some(task_run) = task_run else { return Ok(None) };
        let waiting = task_run
            .result
            .clone()
            .and_then(|held| serde_json::from_value::<Waiting>(held).ok())
            .ok_or_else(|| ServiceError::Other(format!("pause task run {} holds no request", task_run.id)))?;
        Ok(Some(OpenPause { task_run, waiting }))
    }

    /// Resumes a tenant's paused run with `input`, which must fit the
    /// pause's schema (else `Invalid`, naming the field, and the run stays
    /// paused). Its next attempt is due now.
    pub async fn resume(&self, tenant: &str, id_or_name: &str, input: Value) -> Result<FlowRunRow, ServiceError> {
        let (run, pause) = self.pause_of(tenant, id_or_name)?;
        pause.waiting.check(&input).map_err(ServiceError::Invalid)?;
        self.complete_pause(&run, &pause, &input, "Resumed with input")?;
        self.store.flush().await;
        self.store.announce_work();
        self.flow_run(tenant, &run.id)
    }

    /// Completes the pause with `input` and schedules the run's next attempt now.
    fn complete_pause(
        &self,
        run: &FlowRunRow,
        pause: &OpenPause,
        input: &Value,
        why: &str,
    ) -> Result<(), ServiceError> {
        let task_run = RunId::parse(&pause.task_run.id)
            .ok_or_else(|| ServiceError::Other(format!("`{}` is not a run id", pause.task_run.id)))?;
        self.store.record(&Event::State(StateRecord {
            run: task_run,
            kind: RunKind::Task,
            state: StateType::Completed,
            message: Some(why.to_string()),
            attempt: 1,
            result: Some(Arc::from(input.to_string().as_str())),
            time: Utc::now(),
        }));
        let message = format!("{why}: attempt {} replays the flow from its journal", run.attempt + 1);
        self.store.reschedule(&run.id, Utc::now(), &message)?;
        Ok(())
    }

    /// Ends or resumes every paused run whose timeout passed before `now`:
    /// with the flow's default as its input when it gave one, else `Failed`.
    /// Returns how many it resumed.
    pub fn expire_pauses(&self, now: DateTime<Utc>) -> Result<usize, ServiceError> {
        let filter = RunFilter { state: Some(StateType::Paused), limit: PAUSED_RUNS_PER_PASS, ..RunFilter::default() };
        let mut resumed = 0;
        for run in self.store.flow_runs(&filter)? {
            let Some(pause) = self.open_pause(&run.id)? else { continue };
            let Some(deadline) = pause.waiting.deadline.filter(|d| *d <= now) else { continue };
            let waited = format!("no input came within the timeout ({})", deadline.to_rfc3339());
            match &pause.waiting.request.default {
                Some(default) => {
                    self.complete_pause(&run, &pause, default, &format!("Resumed with the flow's default: {waited}"))?;
                    resumed += 1;
                }
                None => self.fail_pause(&run, &pause, &waited)?,
            }
        }
        Ok(resumed)
    }

    fn fail_pause(&self, run: &FlowRunRow, pause: &OpenPause, why: &str) -> Result<(), ServiceError> {
        let ids = (RunId::parse(&pause.task_run.id), RunId::parse(&run.id));
        let (Some(task_run), Some(flow_run)) = ids else { return Ok(()) };
        let time = Utc::now();
        for (id, kind, state) in
            [(task_run, RunKind::Task, StateType::TimedOut), (flow_run, RunKind::Flow, StateType::Failed)]
        {
            self.store.record(&Event::State(StateRecord {
                run: id,
                kind,
                state,
                message: Some(format!("Paused for input, and {why}")),
                attempt: if kind == RunKind::Flow { run.attempt } else { 1 },
                result: None,
                time,
            }));
        }
        Ok(())
    }
}
