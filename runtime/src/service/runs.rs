//! Runs from deployments: create a flow run (`Scheduled`, parameters
//! resolved and validated), and execute it in this process.

use super::{Service, ServiceError};
use crate::core::deployment::Limits;
use crate::core::grants::{HostPattern, ResolvedGrants};
use crate::core::ids::{RunId, run_name};
use crate::core::journal::{Journal, JournalRow};
use crate::core::pause::PAUSE_TASK;
use crate::core::record::{Event, Fanout, FlowRunRecord, Recorder, ResultCache, RunKind, StateRecord};
use crate::core::state::StateType;
use crate::params;
use crate::runner::{FlowOutcome, RunSettings, Runner};
use crate::sandbox::capabilities::InstanceGrants;
use crate::sandbox::program::Program;
use crate::store::{Claim, FlowRunRow, StateStore};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Service {
    /// Creates a flow run of `flow/deployment`, due at `start` (now when `None`).
    pub async fn create_run(
        &self,
        tenant: &str,
        full_name: &str,
        overrides: Map<String, Value>,
        start: Option<DateTime<Utc>>,
    ) -> Result<FlowRunRow, ServiceError> {
        Ok(self.create_run_claiming(tenant, full_name, overrides, start, None).await?.0)
    }

    /// [`Service::create_run`], and with `take`, due runs taken for a claim
    /// (at most as many as its count of free slots) in the transaction that
    /// commits the new run, when the store can do that at once: the new run,
    /// and the runs taken.
    pub async fn create_run_claiming(
        &self,
        tenant: &str,
        full_name: &str,
        overrides: Map<String, Value>,
        start: Option<DateTime<Utc>>,
        take: Option<(&Claim<'_>, &AtomicUsize)>,
    ) -> Result<(FlowRunRow, Vec<FlowRunRow>), ServiceError> {
        let (deployment, parameters) = self.check_run_parameters(tenant, full_name, overrides)?;
        let now = Utc::now();
        let scheduled = start.unwrap_or(now);
        let id = RunId::new();
        self.store.record(&Event::FlowRunCreated(FlowRunRecord {
            id,
            name: run_name(&mut rand::rng()),
            flow: deployment.flow.clone(),
            parent: None,
            deployment: Some(deployment.full_name()),
            parameters,
            artifact_digest: deployment.artifact.clone(),
            created: now,
            scheduled: Some(scheduled),
            tenant: Some(deployment.tenant.clone()),
            call: None,
        }));
        self.store.record(&Event::State(StateRecord {
            run: id,
            kind: RunKind::Flow,
            state: StateType::Scheduled,
            message: Some(format!("Scheduled for {}", scheduled.to_rfc3339())),
            attempt: 1,
            result: None,
            time: now,
        }));
        // Due as of its own creation: the claim was made before.
        let take = take.map(|(claim, free)| (Claim { now, ..*claim }, free));
        let taken = match take.and_then(|(claim, free)| self.store.try_flush_claiming(&claim, free)) {
            Some(taken) => taken?,
            None => {
                self.store.flush().await;
                Vec::new()
            }
        };
        let id = id.to_string();
        // Taken at once: its claim returned its row as committed.
        let run = match taken.iter().find(|run| run.id == id) {
            Some(run) => run.clone(),
            None => self
                .store
                .flow_run(Some(tenant), &id)?
                .ok_or_else(|| ServiceError::Other("the new flow run was not recorded".into()))?,
        };
        Ok((run, taken))
    }

    /// A deployment of `tenant` and the parameters a run of it with
    /// `overrides` would get, validated against its flow's schema; nothing recorded.
    pub fn check_run_parameters(
        &self,
        tenant: &str,
        full_name: &str,
        overrides: Map<String, Value>,
    ) -> Result<(crate::core::deployment::Deployment, Value), ServiceError> {
        let deployment = self.deployment(tenant, full_name)?;
        let meta = self.artifact_meta(Some(tenant), &deployment.artifact)?;
        let flow = meta.description.flow(Some(&deployment.flow)).map_err(ServiceError::Invalid)?;
        let mut merged = deployment.parameters.clone();
        merged.extend(overrides);
        let parameters = params::resolve(&flow.name, &flow.parameters_schema, merged).map_err(ServiceError::Invalid)?;
        Ok((deployment, parameters))
    }

    /// A tenant's flow run by id or name; another tenant's is not found.
    pub fn flow_run(&self, tenant: &str, id_or_name: &str) -> Result<FlowRunRow, ServiceError> {
        self.store.flow_run(Some(tenant), id_or_name)?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no flow run with id or name `{id_or_name}`; `sluice flow-run ls` lists them"
            ))
        })
    }

    /// A run with its state history, task runs (each with its history) and
    /// subflow runs, as `flow-run inspect` and the API show it.
    pub fn inspect_run(&self, tenant: &str, id_or_name: &str) -> Result<Value, ServiceError> {
        let store: &dyn StateStore = self.store.as_ref();
        let row = self.flow_run(tenant, id_or_name)?;
        let mut task_runs = Vec::new();
        for task in store.task_runs(&row.id)? {
            let states = store.states(&task.id)?;
            task_runs.push(json!({ "task_run": task, "states": states }));
        }
        let mut subflow_runs = Vec::new();
        for sub in store.subflow_runs(&row.id)? {
            let states = store.states(&sub.id)?;
            subflow_runs.push(json!({ "flow_run": sub, "states": states }));
        }
        let states = store.states(&row.id)?;
        Ok(json!({ "flow_run": row, "states": states, "task_runs": task_runs, "subflow_runs": subflow_runs }))
    }

    /// What earlier attempts of a run recorded, for its next attempt to replay
    /// (nothing for a first attempt).
    pub fn journal_of(&self, run: &FlowRunRow) -> Result<Vec<JournalRow>, ServiceError> {
        if run.attempt <= 1 {
            return Ok(Vec::new());
        }
        Ok(self.store.journal(&run.id)?)
    }

    /// Schedules a top-level run that ended `Failed`, `TimedOut` or `Crashed`
    /// again as its next attempt, when its deployment's flow retries allow
    /// one: the attempt replays what earlier ones completed. True when it did.
    pub fn retry_ended(&self, id: &str, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        let Some(run) = self.store.flow_run(None, id)? else { return Ok(false) };
        if run.parent.is_some()
            || !matches!(run.state, Some(StateType::Failed | StateType::TimedOut | StateType::Crashed))
        {
            return Ok(false);
        }
        let limits = match self.limits_of(&run) {
            Ok(limits) => limits,
            Err(ServiceError::NotFound(_)) => return Ok(false),
            Err(err) => return Err(err),
        };
        // An attempt that began by resuming a pause is not a retry: it does not use one up.
        let resumed = self
            .store
            .task_runs(&run.id)?
            .iter()
            .filter(|t| t.task == PAUSE_TASK && t.state == Some(StateType::Completed))
            .count() as u32;
        let used = run.attempt.saturating_sub(1 + resumed);
        if used >= limits.retries {
            return Ok(false);
        }
        let factor = limits.retry_backoff.unwrap_or(1.0).clamp(0.0, 1_000.0).powi(used as i32);
        let delay = (limits.retry_delay_seconds as f64 * factor).min(86_400.0);
        let at = now + chrono::Duration::milliseconds((delay * 1_000.0) as i64);
        let message = format!(
            "Flow retry {}/{} at {}: attempt {} resumes from the journal",
            used + 1,
            limits.retries,
            at.to_rfc3339(),
            run.attempt + 1
        );
        self.store.reschedule(id, at, &message)?;
        Ok(true)
    }

    /// Runs a tenant's ended, not completed, top-level run again now as its
    /// next attempt, by hand: it replays what earlier attempts completed.
    pub async fn retry_by_hand(&self, tenant: &str, id_or_name: &str) -> Result<FlowRunRow, ServiceError> {
        let run = self.flow_run(tenant, id_or_name)?;
        if run.parent.is_some() {
            return Err(ServiceError::Invalid(format!(
                "flow run '{}' is a subflow run; retry its top-level run{}",
                run.name,
                run.parent.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
            )));
        }
        match run.state {
            Some(StateType::Failed | StateType::TimedOut | StateType::Crashed | StateType::Cancelled) => {}
            Some(StateType::Completed | StateType::Cached) => {
                return Err(ServiceError::Invalid(format!(
                    "flow run '{}' completed; there is nothing to retry (start a new run with `sluice run`)",
                    run.name
                )));
            }
            state => {
                let state = state.map_or("no state", StateType::name);
                return Err(ServiceError::Invalid(format!(
                    "flow run '{}' is {state}, not ended; only a failed, timed-out, crashed or cancelled run can be \
                     retried",
                    run.name
                )));
            }
        }
        let now = Utc::now();
        let message = format!("Retried by hand: attempt {} resumes from the journal", run.attempt + 1);
        self.store.reschedule(&run.id, now, &message)?;
        self.store.flush().await;
        self.flow_run(tenant, &run.id)
    }

    /// Schedules a crashed run again if its deployment allows another
    /// attempt; true when it did.
    pub fn retry_crashed(&self, id: &str, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        let Some(run) = self.store.flow_run(None, id)? else { return Ok(false) };
        let limits = match self.limits_of(&run) {
            Ok(limits) => limits,
            Err(ServiceError::NotFound(_)) => return Ok(false),
            Err(err) => return Err(err),
        };
        let crashes = self.store.states(id)?.iter().filter(|s| s.state == StateType::Crashed).count() as u32;
        if crashes > limits.crash_retries {
            return Ok(false);
        }
        let at = now + chrono::Duration::seconds(limits.crash_retry_delay_seconds.min(86_400) as i64);
        let message = format!("Retry {crashes}/{} after a crash, at {}", limits.crash_retries, at.to_rfc3339());
        self.store.reschedule(id, at, &message)?;
        Ok(true)
    }

    /// Takes a run for this process, unless a scheduler pass already gave it
    /// to this process or someone else has it.
    fn take_run(&self, run: &FlowRunRow) -> Result<(), ServiceError> {
        if self.store.claim_run(&run.id, &self.taker)? {
            return Ok(());
        }
        let current = self.store.flow_run(None, &run.id)?;
        match current.and_then(|r| r.claimed_by) {
            Some(taker) if taker == self.taker => Ok(()),
            Some(taker) => Err(ServiceError::Invalid(format!("flow run '{}' is already taken by {taker}", run.name))),
            None => Err(ServiceError::Invalid(format!("flow run '{}' is not waiting to run", run.name))),
        }
    }

    /// Ends a run that could not start (its artifact is missing or corrupt),
    /// so its history says why.
    pub(crate) async fn fail_unstarted(&self, run: &FlowRunRow, reason: &str) {
        let pending = run.started() || run.state == Some(StateType::Pending);
        record_unstarted_failure(self.store.as_ref(), &run.id, reason, pending);
        self.store.flush().await;
    }

    /// Runs a created flow run here and now, recording to the state store
    /// (and to `extra`, when given).
    pub async fn execute_run(
        &self,
        run: &FlowRunRow,
        extra: Option<Arc<dyn Recorder>>,
    ) -> Result<FlowOutcome, ServiceError> {
        self.execute_run_with(run, extra, CancellationToken::new()).await
    }

    /// [`Service::execute_run`], stopped when `cancel` is cancelled.
    pub async fn execute_run_with(
        &self,
        run: &FlowRunRow,
        extra: Option<Arc<dyn Recorder>>,
        cancel: CancellationToken,
    ) -> Result<FlowOutcome, ServiceError> {
        self.take_run(run)?;
        self.execute_run_taken(run, extra, cancel).await
    }

    /// Runs a flow run that the caller has already taken (claimed).
    pub async fn execute_run_taken(
        &self,
        run: &FlowRunRow,
        extra: Option<Arc<dyn Recorder>>,
        cancel: CancellationToken,
    ) -> Result<FlowOutcome, ServiceError> {
        let limits = self.limits_of(run)?;
        let grants = match self.grants_of(run) {
            Ok(grants) => grants,
            Err(err) => {
                self.fail_unstarted(run, &err.to_string()).await;
                return Err(err);
            }
        };
        let journal = self.journal_of(run)?;
        self.execute_run_prepared(run, (limits, grants, journal), extra, cancel).await
    }

    /// Runs a taken flow run with the limits, grants and journal its claim
    /// already read (the embedded worker's claims do): reading them again
    /// cost three queries per run.
    pub async fn execute_run_prepared(
        &self,
        run: &FlowRunRow,
        (limits, grants, journal): (Limits, ResolvedGrants, Vec<JournalRow>),
        extra: Option<Arc<dyn Recorder>>,
        cancel: CancellationToken,
    ) -> Result<FlowOutcome, ServiceError> {
        let program = match self.load_program(&run.artifact).await {
            Ok(program) => program,
            Err(err) => {
                self.fail_unstarted(run, &err.to_string()).await;
                return Err(err);
            }
        };
        let store: Arc<dyn Recorder> = self.store.clone();
        let recorder: Arc<dyn Recorder> = match extra {
            Some(extra) => Arc::new(Fanout(vec![store, extra])),
            None => store,
        };
        let journal = Journal::from_rows(journal);
        let outcome = execute(program, run, (&limits, &grants), recorder, self.store.clone(), cancel, journal).await?;
        self.store.flush().await;
        // Only a run that ended badly may be retried: a completed one needs no look.
        if outcome.state != StateType::Completed && self.retry_ended(&run.id, Utc::now())? {
            self.store.announce_work();
        }
        Ok(outcome)
    }

    /// The limits a run's deployment sets (none for a run without one).
    /// The tenant's policy caps them: a deployment that sets no timeout or
    /// memory gets the policy's most, not unbounded.
    pub fn limits_of(&self, run: &FlowRunRow) -> Result<Limits, ServiceError> {
        let mut limits = match &run.deployment {
            Some(full_name) => self.deployment(&run.tenant, full_name)?.limits,
            None => Limits::default(),
        };
        let policy = self.tenant(&run.tenant)?.policy;
        if let Some(most) = policy.max_timeout_seconds {
            limits.timeout_seconds = Some(limits.timeout_seconds.map_or(most, |t| t.min(most)));
        }
        if let Some(most) = policy.max_memory_mib {
            limits.memory_mib = Some(limits.memory_mib.map_or(most, |m| m.min(most)));
        }
        Ok(limits)
    }
}

/// Runs a taken flow run of `program` with its deployment's limits and
/// grants: shared by this process's runs and remote workers'.
pub async fn execute(
    program: Arc<Program>,
    run: &FlowRunRow,
    (limits, grants): (&Limits, &ResolvedGrants),
    recorder: Arc<dyn Recorder>,
    cache: Arc<dyn ResultCache>,
    cancel: CancellationToken,
    journal: Journal,
) -> Result<FlowOutcome, ServiceError> {
    let settings = RunSettings {
        attempt: run.attempt,
        created: Some(run.created),
        journal: Arc::new(journal),
        tenant: run.tenant.clone(),
        memory_limit: limits.memory_mib.map(|mib| (mib as usize) << 20),
        deployment: run.deployment.clone(),
        scheduled_time: run.scheduled,
        flow_timeout: limits.timeout_seconds.map(Duration::from_secs),
        cancel,
        grants: InstanceGrants {
            // Checked at deploy time; an entry that no longer parses allows nothing.
            allow_hosts: grants.allow_hosts.iter().filter_map(|h| HostPattern::parse(h).ok()).collect(),
            env: grants.env.iter().cloned().collect(),
        },
        ..RunSettings::default()
    };
    let settings = RunSettings {
        task_cpu_limit: limits.task_cpu_ms.map(Duration::from_millis).or(settings.task_cpu_limit),
        run_cpu_limit: limits.run_cpu_ms.map(Duration::from_millis).or(settings.run_cpu_limit),
        max_log_bytes: limits.log_mib.map_or(settings.max_log_bytes, |mib| u64::from(mib) << 20),
        max_tasks_per_run: limits.max_tasks.unwrap_or(settings.max_tasks_per_run),
        max_payload_bytes: limits.payload_mib.map_or(settings.max_payload_bytes, |mib| (mib as usize) << 20),
        durability: limits.durability.unwrap_or_default(),
        started_by_claim: run.started(),
        ..settings
    };
    let runner = Runner::new(program, recorder, cache, settings);
    let id = RunId::parse(&run.id).ok_or_else(|| ServiceError::Invalid(format!("`{}` is not a run id", run.id)))?;
    Ok(runner.run(id, run.name.clone(), &run.flow, &run.parameters).await)
}

/// Records that a flow run could not start (`Pending`, unless it is past
/// it (`pending`), then `Failed` with the reason): its artifact was missing
/// or corrupt.
pub fn record_unstarted_failure(recorder: &dyn Recorder, run: &str, reason: &str, pending: bool) {
    let Some(run) = RunId::parse(run) else { return };
    let states = [(StateType::Pending, None), (StateType::Failed, Some(reason.to_string()))];
    for (state, message) in states.into_iter().skip(usize::from(pending)) {
        let time = Utc::now();
        recorder.record(&Event::State(StateRecord {
            run,
            kind: RunKind::Flow,
            state,
            message,
            attempt: 1,
            result: None,
            time,
        }));
    }
}
