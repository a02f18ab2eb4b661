//! Evaluating automations, inline after commit, by the server that
//! committed the event: each server watches its own commits (state changes
//! and emitted events its runs and workers report, webhook deliveries it
//! answered). Every event is committed by exactly one server, so with
//! several servers on one PostgreSQL database an event fires its
//! automations once; counts over a window are kept in the store, so they
//! add up across servers. A server that dies between commit and evaluation
//! loses those firings (at most once, never twice).

use super::dispatch::Dispatch;
use crate::core::events::{EventFilter, EventRow, STATE_EVENT_PREFIX};
use crate::core::record::{Event, RunKind};
use crate::service::Performed;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Watches what this server commits and fires the automations it matches.
pub async fn watch(dispatch: Arc<Dispatch>) {
    let mut committed = dispatch.service.store.subscribe();
    loop {
        let event = match committed.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!("automations: {missed} events went by unevaluated (the server is overloaded)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let (run, name, time) = match &*event {
            Event::State(state) if state.kind == RunKind::Flow => {
                (state.run, format!("{STATE_EVENT_PREFIX}{}", state.state.name()), state.time)
            }
            Event::Emitted(emitted) => (emitted.flow_run, emitted.name.clone(), emitted.time),
            _ => continue,
        };
        let dispatch = dispatch.clone();
        // Off the watch loop: a firing that starts a run waits for a commit.
        tokio::spawn(async move {
            match stored_event(&dispatch, &run.to_string(), &name, time) {
                Ok(Some(row)) => react(&dispatch, &row).await,
                Ok(None) => {}
                Err(err) => tracing::warn!("automations: cannot read the event {name} of run {run}: {err}"),
            }
        });
    }
}

/// The stored event of run `run` named `name` at `time`, if its tenant has
/// automations at all (most events cost two indexed reads and no more).
fn stored_event(
    dispatch: &Dispatch,
    run: &str,
    name: &str,
    time: DateTime<Utc>,
) -> Result<Option<EventRow>, crate::store::StoreError> {
    let store = &dispatch.service.store;
    let Some(standing) = store.run_standing(RunKind::Flow, run)? else { return Ok(None) };
    if store.automations(&standing.tenant)?.is_empty() {
        return Ok(None);
    }
    let rows = store.events(&EventFilter {
        tenant: standing.tenant,
        name_prefix: Some(name.to_string()),
        flow_run: Some(run.to_string()),
        limit: 10,
        ..EventFilter::default()
    })?;
    // Stored times keep microseconds.
    Ok(rows.into_iter().find(|row| row.name == name && row.time.timestamp_micros() == time.timestamp_micros()))
}

/// Fires the automations `event` matches, and records each firing as an event.
pub async fn react(dispatch: &Dispatch, event: &EventRow) {
    let service = &dispatch.service;
    let firing = match service.firing(event) {
        Ok(firing) => firing,
        Err(err) => {
            tracing::warn!("automations: cannot evaluate event {} of tenant {}: {err}", event.seq, event.tenant);
            return;
        }
    };
    for automation in firing {
        let outcome = service.perform(&automation, event).await;
        let mut payload = json!({"automation": automation.name, "event": event.seq});
        let name = match &outcome {
            Ok(Performed::Started(run)) => {
                dispatch.work_available();
                payload["run"] = json!(run.id);
                "sluice.automation.fired"
            }
            Ok(Performed::Cancel(run)) => {
                if let Err(err) = dispatch.cancel(run) {
                    payload["error"] = json!(err.to_string());
                }
                payload["run"] = json!(run);
                "sluice.automation.fired"
            }
            Ok(Performed::Scheduling | Performed::Nothing) => "sluice.automation.fired",
            Err(err) => {
                payload["error"] = json!(err.to_string());
                "sluice.automation.failed"
            }
        };
        // Recorded directly, not through the watched commits: an automation
        // never fires on another's firing, so automations cannot loop this way.
        let record = crate::core::events::NewEvent {
            tenant: automation.tenant.clone(),
            name: name.into(),
            time: Utc::now(),
            flow_run: event.flow_run.clone(),
            deployment: event.deployment.clone(),
            payload,
        };
        if let Err(err) = service.store.insert_event(&record) {
            tracing::warn!("automations: cannot record the firing of {}: {err}", automation.name);
        }
    }
}
