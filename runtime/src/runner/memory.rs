//! In-memory recording and caching, for `sluice exec` and tests.

use crate::core::ids::RunId;
use crate::core::record::{Event, Recorder, ResultCache, RunKind};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Keeps every event in order.
#[derive(Default)]
pub struct MemoryRecorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder for MemoryRecorder {
    fn record(&self, event: &Event) {
        self.record_owned(event.clone());
    }

    fn record_owned(&self, event: Event) {
        self.events.lock().expect("events lock").push(event);
    }
}

impl MemoryRecorder {
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events lock").clone()
    }

    /// The flow runs, task runs (each with its state history) and logs, as JSON.
    pub fn report(&self) -> Value {
        let events = self.events.lock().expect("events lock");
        let mut flow_runs: Vec<Value> = Vec::new();
        let mut task_runs: Vec<Value> = Vec::new();
        let mut index: HashMap<RunId, (RunKind, usize)> = HashMap::new();
        let mut names: HashMap<RunId, String> = HashMap::new();
        let mut logs = Vec::new();
        for event in events.iter() {
            match event {
                Event::FlowRunCreated(run) => {
                    index.insert(run.id, (RunKind::Flow, flow_runs.len()));
                    names.insert(run.id, run.name.clone());
                    flow_runs.push(json!({
                        "id": run.id, "name": run.name, "flow": run.flow, "parent": run.parent,
                        "deployment": run.deployment, "parameters": run.parameters,
                        "artifact": run.artifact_digest, "state": null, "result": null, "states": [],
                    }));
                }
                Event::TaskRunCreated(run) => {
                    index.insert(run.id, (RunKind::Task, task_runs.len()));
                    names.insert(run.id, run.name.clone());
                    task_runs.push(json!({
                        "id": run.id, "name": run.name, "task": run.task, "flow_run": run.flow_run,
                        "input": serde_json::from_str::<Value>(&run.input).unwrap_or(Value::Null),
                        "state": null, "result": null, "attempts": 0, "states": [],
                    }));
                }
                Event::State(state) => {
                    let Some((kind, at)) = index.get(&state.run) else { continue };
                    let run = match kind {
                        RunKind::Flow => &mut flow_runs[*at],
                        RunKind::Task => &mut task_runs[*at],
                    };
                    run["state"] = json!(state.state);
                    if let Some(result) = &state.result {
                        run["result"] = serde_json::from_str(result).unwrap_or(Value::Null);
                    }
                    if state.state.is_terminal() {
                        run["message"] = json!(state.message);
                    }
                    if *kind == RunKind::Task {
                        run["attempts"] = json!(state.attempt);
                    }
                    run["states"].as_array_mut().expect("states is a list").push(json!({
                        "state": state.state, "time": state.time, "message": state.message, "attempt": state.attempt,
                    }));
                }
                Event::Log(log) => {
                    let run = log.task_run.unwrap_or(log.flow_run);
                    logs.push(json!({
                        "time": log.time, "level": log.level, "flow_run": log.flow_run, "task_run": log.task_run,
                        "run_name": names.get(&run), "message": log.message,
                    }));
                }
                // Emitted events belong to the event log, which a memory recorder does not keep.
                Event::Emitted(_) => {}
            }
        }
        json!({ "flow_runs": flow_runs, "task_runs": task_runs, "logs": logs })
    }
}

/// Cached task results in memory: shared by the tasks of one process.
#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<(String, String), CacheEntry>>,
    // Forget everything past this many entries (none when 0): a front for a
    // durable cache only needs to hold what is not committed yet.
    capacity: usize,
}

/// A result and when it stops being valid.
type CacheEntry = (Arc<str>, Option<DateTime<Utc>>);

impl MemoryCache {
    /// A cache that empties itself when it holds more than `capacity` entries.
    pub fn bounded(capacity: usize) -> Self {
        Self { entries: Mutex::default(), capacity }
    }
}

impl ResultCache for MemoryCache {
    fn get(&self, tenant: &str, key: &str, now: DateTime<Utc>) -> Option<Arc<str>> {
        let entries = self.entries.lock().expect("cache lock");
        let (result, expires) = entries.get(&(tenant.to_string(), key.to_string()))?;
        expires.is_none_or(|at| at > now).then(|| result.clone())
    }

    fn put(&self, tenant: &str, key: &str, result: Arc<str>, expires: Option<DateTime<Utc>>) {
        let mut entries = self.entries.lock().expect("cache lock");
        if self.capacity > 0 && entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert((tenant.to_string(), key.to_string()), (result, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_results_expire() {
        let cache = MemoryCache::default();
        let now = Utc::now();
        cache.put("t", "a", Arc::from("1"), Some(now + chrono::Duration::seconds(5)));
        cache.put("t", "b", Arc::from("2"), None);
        assert_eq!(cache.get("t", "a", now).as_deref(), Some("1"));
        assert_eq!(cache.get("t", "a", now + chrono::Duration::seconds(6)), None);
        assert_eq!(cache.get("t", "b", now + chrono::Duration::days(365)).as_deref(), Some("2"));
        assert_eq!(cache.get("t", "c", now), None);
    }

    #[test]
    fn a_result_is_found_only_by_the_tenant_that_cached_it() {
        let cache = MemoryCache::default();
        let now = Utc::now();
        cache.put("acme", "k", Arc::from("1"), None);
        assert_eq!(cache.get("acme", "k", now).as_deref(), Some("1"));
        assert_eq!(cache.get("globex", "k", now), None);
    }
}
