//! Counts flow runs created, started and ended from the events the state
//! store commits: one place that sees every run whoever executes it (an
//! embedded worker, a remote worker reporting through the API, the
//! scheduler creating it), and nothing on a runner's path. It reads the
//! store's commit broadcast in a task of its own; if it falls so far behind
//! that events are dropped, it counts them in
//! `sluice_metrics_events_missed_total` rather than guess. Each server
//! counts the commits it made: with several servers on one database, sum
//! over them.

use super::labels::run_labels;
use super::metrics;
use crate::core::ids::RunId;
use crate::core::record::{Event, RunKind};
use crate::core::state::StateType;
use crate::store::Backend;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Runs remembered at once; past it the memory is cleared and the store asked again.
const RUNS_REMEMBERED: usize = 100_000;

/// What the counter remembers of a flow run until it ends.
struct Tracked {
    /// Its label values; `None` for a subflow run, which the run counters leave out.
    labels: Option<[String; 2]>,
    /// When it was due, until it starts.
    due: Option<DateTime<Utc>>,
    /// When its current attempt started.
    started: Option<DateTime<Utc>>,
}

/// Turns committed events into the run counters.
pub struct RunCounter {
    store: Arc<dyn Backend>,
    runs: HashMap<RunId, Tracked>,
}

/// Counts `count` runs the scheduler created for `deployment` of `tenant`
/// (it inserts them in the store directly: no event tells of them).
pub fn count_scheduled(tenant: &str, deployment: &str, count: u64) {
    if count > 0 {
        metrics().runs_created.with_label_values(&run_labels(tenant, Some(deployment))).inc_by(count);
    }
}

impl RunCounter {
    /// A counter reading unknown runs from `store`.
    pub fn new(store: Arc<dyn Backend>) -> Self {
        Self { store, runs: HashMap::new() }
    }

    /// Counts committed events until the store closes.
    pub async fn run(mut self) {
        let mut committed = self.store.subscribe();
        loop {
            match committed.recv().await {
                Ok(event) => self.count(&event),
                Err(RecvError::Lagged(missed)) => metrics().events_missed.inc_by(missed),
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Counts one committed event.
    pub fn count(&mut self, event: &Event) {
        match event {
            Event::FlowRunCreated(run) => {
                self.forget_if_full();
                if run.parent.is_some() {
                    metrics().subflow_runs_created.inc();
                    self.runs.insert(run.id, Tracked { labels: None, due: None, started: None });
                    return;
                }
                // Created through the service (the API, the CLI), which names the
                // tenant; a runner about to execute a run records it again, without.
                let Some(tenant) = run.tenant.as_deref() else {
                    if !self.runs.contains_key(&run.id) {
                        self.look_up(run.id);
                    }
                    return;
                };
                let labels = run_labels(tenant, run.deployment.as_deref());
                metrics().runs_created.with_label_values(&labels).inc();
                let due = Some(run.scheduled.unwrap_or(run.created));
                self.runs.insert(run.id, Tracked { labels: Some(labels), due, started: None });
            }
            Event::State(state) if state.kind == RunKind::Flow => {
                if !self.runs.contains_key(&state.run) && !self.look_up(state.run) {
                    return;
                }
                let tracked = self.runs.get_mut(&state.run).expect("tracked above");
                let Some(labels) = tracked.labels.clone() else {
                    if state.state.is_terminal() {
                        self.runs.remove(&state.run);
                    }
                    return;
                };
                if state.state == StateType::Running {
                    metrics().runs_started.with_label_values(&labels).inc();
                    if let Some(due) = tracked.due.take() {
                        metrics().dispatch_lag.observe(seconds(state.time - due));
                    }
                    tracked.started = Some(state.time);
                } else if state.state.is_terminal() {
                    metrics()
                        .runs_ended
                        .with_label_values(&[labels[0].as_str(), labels[1].as_str(), state.state.name()])
                        .inc();
                    if let Some(started) = tracked.started.take() {
                        metrics().run_duration.observe(seconds(state.time - started));
                    }
                    self.runs.remove(&state.run);
                }
            }
            _ => {}
        }
    }

    /// Learns a run the counter has not seen created (before a restart, or
    /// while memory was cleared) from the store; false when it is not there.
    fn look_up(&mut self, id: RunId) -> bool {
        let Ok(Some(row)) = self.store.flow_run(None, &id.to_string()) else { return false };
        self.forget_if_full();
        let labels = row.parent.is_none().then(|| run_labels(&row.tenant, row.deployment.as_deref()));
        self.runs.insert(id, Tracked { labels, due: row.scheduled, started: row.started });
        true
    }

    fn forget_if_full(&mut self) {
        if self.runs.len() >= RUNS_REMEMBERED {
            self.runs.clear();
        }
    }
}

fn seconds(duration: chrono::Duration) -> f64 {
    duration.to_std().map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
