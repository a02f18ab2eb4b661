//! Which runs other servers sharing the database changed, for the web UI's
//! live updates. Each server gathers the flow runs its own commits touched
//! and tells the others at most every [`GATHER_GAP`], in a few short
//! payloads (PostgreSQL's `NOTIFY`, see `postgres/notify.rs`). A payload
//! only names runs: a stream woken by one reads what it shows from the
//! database, through its session's tenant, as it does for local commits.
//! Too many runs to name, or notifications that may have been missed,
//! become [`RunsChanged::Anything`].

use crate::core::ids::RunId;
use crate::core::record::{Event, RunKind};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The shortest time between two announcements of one server: the changes
/// of a busy server are coalesced into one announcement per gap.
pub const GATHER_GAP: Duration = Duration::from_millis(100);

/// The most bytes of one payload (PostgreSQL refuses 8000 and more).
const PAYLOAD_LIMIT: usize = 7_000;

/// The most payloads of one announcement; more runs than fit become "anything".
const PAYLOADS_PER_GAP: usize = 8;

/// Task runs whose flow run is remembered; beyond it a task run is named by its own id.
const PARENTS_REMEMBERED: usize = 100_000;

/// Runs that changed through another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsChanged {
    /// These runs changed: flow runs, or task runs whose flow run the announcing server did not know.
    Runs(Vec<String>),
    /// Anything may have changed.
    Anything,
}

impl RunsChanged {
    /// Whether the change may concern one of the `known` runs.
    pub fn concerns(&self, known: &HashSet<String>) -> bool {
        match self {
            RunsChanged::Runs(runs) => runs.iter().any(|run| known.contains(run)),
            RunsChanged::Anything => true,
        }
    }

    /// Reads a payload; `None` for one `origin` sent itself or one that is not an announcement.
    pub fn decode(payload: &str, origin: &str) -> Option<RunsChanged> {
        let mut words = payload.split_ascii_whitespace();
        let from = words.next()?;
        if from == origin {
            return None;
        }
        let runs: Vec<String> = words.map(str::to_string).collect();
        match runs.as_slice() {
            [] => None,
            [all] if all == "*" => Some(RunsChanged::Anything),
            _ => Some(RunsChanged::Runs(runs)),
        }
    }
}

/// The runs committed events touched since the last announcement.
#[derive(Default)]
pub struct Gatherer {
    runs: HashSet<RunId>,
    anything: bool,
    /// The flow run of each task run not yet ended, so a task's states name its flow run.
    parents: HashMap<RunId, RunId>,
}

impl Gatherer {
    /// Notes the runs a committed event touched.
    pub fn add(&mut self, event: &Event) {
        match event {
            Event::FlowRunCreated(run) => {
                self.name(run.id);
                if let Some(parent) = run.parent {
                    self.name(parent);
                }
            }
            Event::TaskRunCreated(task) => {
                if self.parents.len() >= PARENTS_REMEMBERED {
                    self.parents.clear();
                }
                self.parents.insert(task.id, task.flow_run);
                self.name(task.flow_run);
            }
            Event::State(state) => {
                let run = match state.kind {
                    RunKind::Flow => state.run,
                    RunKind::Task => self.parents.get(&state.run).copied().unwrap_or(state.run),
                };
                if state.kind == RunKind::Task && state.state.is_terminal() {
                    self.parents.remove(&state.run);
                }
                self.name(run);
            }
            Event::Log(log) => self.name(log.flow_run),
            Event::Emitted(emitted) => self.name(emitted.flow_run),
        }
    }

    /// Events were missed: anything may have changed.
    pub fn missed(&mut self) {
        self.anything = true;
    }

    fn name(&mut self, run: RunId) {
        if !self.anything {
            self.runs.insert(run);
        }
    }

    /// The payloads announcing what was gathered (none when nothing was), and starts over.
    pub fn payloads(&mut self, origin: &str) -> Vec<String> {
        let runs = std::mem::take(&mut self.runs);
        if std::mem::take(&mut self.anything) {
            return vec![format!("{origin} *")];
        }
        let mut runs: Vec<String> = runs.iter().map(RunId::to_string).collect();
        runs.sort_unstable();
        let mut payloads: Vec<String> = Vec::new();
        for run in runs {
            if let Some(payload) = payloads.last_mut().filter(|p| p.len() + 1 + run.len() <= PAYLOAD_LIMIT) {
                payload.push(' ');
                payload.push_str(&run);
            } else if payloads.len() == PAYLOADS_PER_GAP {
                return vec![format!("{origin} *")];
            } else {
                payloads.push(format!("{origin} {run}"));
            }
        }
        payloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{FlowRunRecord, LogLevel, LogRecord, StateRecord, TaskRunRecord};
    use crate::core::state::StateType;
    use chrono::Utc;

    fn flow_run(parent: Option<RunId>) -> FlowRunRecord {
        FlowRunRecord {
            id: RunId::new(),
            name: "a-run".into(),
            flow: "hello".into(),
            parent,
            deployment: None,
            parameters: serde_json::json!({}),
            artifact_digest: "sha256:0".into(),
            created: Utc::now(),
            scheduled: None,
            tenant: None,
            call: None,
        }
    }

    fn state(run: RunId, kind: RunKind, state: StateType) -> Event {
        Event::State(StateRecord { run, kind, state, message: None, attempt: 1, result: None, time: Utc::now() })
    }

    fn decoded(payloads: &[String]) -> Vec<RunsChanged> {
        payloads.iter().map(|p| RunsChanged::decode(p, "here").expect("an announcement")).collect()
    }

    #[test]
    fn task_states_and_logs_name_their_flow_run_and_subflows_their_parent() {
        let mut gatherer = Gatherer::default();
        let root = flow_run(None);
        let sub = flow_run(Some(root.id));
        let task = TaskRunRecord {
            id: RunId::new(),
            flow_run: root.id,
            task: "t".into(),
            name: "t-0".into(),
            input: "{}".into(),
            created: Utc::now(),
            call: None,
        };
        for event in [
            Event::FlowRunCreated(root.clone()),
            Event::TaskRunCreated(task.clone()),
            state(task.id, RunKind::Task, StateType::Completed),
            Event::Log(LogRecord {
                flow_run: root.id,
                task_run: Some(task.id),
                level: LogLevel::Info,
                message: "hi".into(),
                time: Utc::now(),
            }),
        ] {
            gatherer.add(&event);
        }
        assert_eq!(decoded(&gatherer.payloads("there")), vec![RunsChanged::Runs(vec![root.id.to_string()])]);
        assert!(gatherer.payloads("there").is_empty(), "nothing new: nothing to announce");

        // The task ended: a late state of it names the task itself.
        gatherer.add(&state(task.id, RunKind::Task, StateType::Failed));
        gatherer.add(&Event::FlowRunCreated(sub.clone()));
        let mut expected = vec![task.id.to_string(), root.id.to_string(), sub.id.to_string()];
        expected.sort();
        assert_eq!(decoded(&gatherer.payloads("there")), vec![RunsChanged::Runs(expected)]);
    }

    #[test]
    fn many_runs_fill_several_short_payloads_then_become_anything() {
        let mut gatherer = Gatherer::default();
        let runs: Vec<FlowRunRecord> = (0..400).map(|_| flow_run(None)).collect();
        for run in &runs {
            gatherer.add(&Event::FlowRunCreated(run.clone()));
        }
        let payloads = gatherer.payloads("there");
        assert!(payloads.len() > 1 && payloads.iter().all(|p| p.len() <= PAYLOAD_LIMIT), "{}", payloads.len());
        let named: HashSet<String> = decoded(&payloads)
            .into_iter()
            .flat_map(|change| match change {
                RunsChanged::Runs(runs) => runs,
                RunsChanged::Anything => panic!("400 runs fit"),
            })
            .collect();
        assert_eq!(named, runs.iter().map(|r| r.id.to_string()).collect::<HashSet<_>>());

        for _ in 0..2_000 {
            gatherer.add(&Event::FlowRunCreated(flow_run(None)));
        }
        assert_eq!(decoded(&gatherer.payloads("there")), vec![RunsChanged::Anything]);
        gatherer.add(&Event::FlowRunCreated(flow_run(None)));
        gatherer.missed();
        assert_eq!(decoded(&gatherer.payloads("there")), vec![RunsChanged::Anything]);
    }

    #[test]
    fn a_servers_own_announcements_and_empty_ones_are_ignored() {
        assert_eq!(RunsChanged::decode("here a b", "here"), None);
        assert_eq!(RunsChanged::decode("there", "here"), None);
        assert_eq!(RunsChanged::decode("", "here"), None);
        let change = RunsChanged::decode("there a b", "here").unwrap();
        assert!(change.concerns(&HashSet::from(["b".to_string()])));
        assert!(!change.concerns(&HashSet::from(["c".to_string()])));
        assert!(RunsChanged::Anything.concerns(&HashSet::new()));
    }
}
