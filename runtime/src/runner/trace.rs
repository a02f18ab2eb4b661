//! The spans of a run (`observe/traces.rs`), made from the states its
//! tracker records: a flow or subflow run's span lasts from `Running` to
//! its end; each task attempt's from `Running`/`Retrying` to its end or
//! `AwaitingRetry`. A flow run's span is the parent of its tasks' and
//! subflows'; a top-level run's parent is the trace context it was handed
//! (`traceparent`), if any. Nothing here runs when tracing is off.

use crate::core::ids::RunId;
use crate::core::record::RunKind;
use crate::core::state::StateType;
use crate::observe::traces::{RunSpan, SpanContext, attribute};
use opentelemetry::KeyValue;
use std::collections::HashMap;
use std::sync::Mutex;

/// The open spans of the flow runs (and subflow runs) of one runner, for their children.
pub type FlowSpans = Mutex<HashMap<RunId, SpanContext>>;

/// What a tracked run's spans need.
pub struct Traced {
    /// The span its spans hang under.
    parent: Option<SpanContext>,
    /// `flow NAME` or `task NAME`.
    span_name: String,
    /// Its id, name and flow or task.
    attributes: Vec<KeyValue>,
    /// The span of its current attempt.
    open: Option<RunSpan>,
}

impl Traced {
    /// A flow (or subflow) run's.
    pub fn flow(parent: Option<SpanContext>, id: RunId, name: &str, flow: &str, subflow: bool) -> Self {
        let attributes = vec![
            attribute("sluice.run.id", id.to_string()),
            attribute("sluice.run.name", name.to_string()),
            attribute("sluice.flow", flow.to_string()),
            attribute("sluice.run.kind", if subflow { "subflow" } else { "flow" }),
        ];
        Self { parent, span_name: format!("flow {flow}"), attributes, open: None }
    }

    /// A task run's.
    pub fn task(parent: Option<SpanContext>, id: RunId, name: &str, task: &str, flow_run: RunId) -> Self {
        let attributes = vec![
            attribute("sluice.run.id", id.to_string()),
            attribute("sluice.run.name", name.to_string()),
            attribute("sluice.task", task.to_string()),
            attribute("sluice.run.kind", "task"),
            attribute("sluice.flow_run.id", flow_run.to_string()),
        ];
        Self { parent, span_name: format!("task {task}"), attributes, open: None }
    }

    /// Opens or ends spans as the run moves to `state`; a flow run's open span is kept in `flows`.
    pub fn on_state(
        &mut self,
        flows: &FlowSpans,
        (run, kind): (RunId, RunKind),
        state: StateType,
        attempt: u32,
        message: Option<&str>,
    ) {
        match state {
            StateType::Running | StateType::Retrying => {
                if let Some(open) = self.open.take() {
                    open.end(state, Some("superseded by a new attempt"));
                }
                let mut attributes = self.attributes.clone();
                attributes.push(attribute("sluice.attempt", i64::from(attempt)));
                self.open = RunSpan::start(self.span_name.clone(), self.parent.as_ref(), attributes);
                if let (Some(open), RunKind::Flow) = (&self.open, kind) {
                    flows.lock().expect("flow spans lock").insert(run, open.context());
                }
            }
            StateType::AwaitingRetry => {
                if let Some(open) = self.open.take() {
                    open.end(state, message);
                }
            }
            state if state.is_terminal() => {
                if let Some(open) = self.open.take() {
                    open.end(state, message);
                }
                if kind == RunKind::Flow {
                    flows.lock().expect("flow spans lock").remove(&run);
                }
            }
            _ => {}
        }
    }
}
