//! Live updates over Server-Sent Events. A run's stream sends its panels
//! (state, history, timeline, tasks) when they change and its new log lines
//! as they are committed, woken by the store's commit broadcast and, on
//! PostgreSQL, by other servers' announcements of the runs they changed
//! (`store/changes.rs`), with a slow tick as a safety net for changes made
//! outside both (cancels, the scheduler). Log events carry their sequence
//! number as the event id, so a reconnecting browser resumes where it
//! stopped. The `changes` stream tells list pages when to refresh.
//!
//! Whatever wakes a stream, what it sends is read from the store through
//! the session's tenant: a wake-up names runs at most, and never reaches
//! the page.

use super::Ui;
use super::data::{self, RunDetail};
use super::error::UiError;
use super::pages::run::{log_rows, panels};
use super::session::Session;
use crate::core::record::Event as Record;
use crate::server::wakeups::{other_servers_change, until_news};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures_util::Stream;
use serde::Deserialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// How often a stream looks again when nothing woke it.
const TICK: Duration = Duration::from_millis(500);
/// Log lines per event.
const LOG_BATCH: usize = 200;
/// List pages refresh at most this often.
const CHANGE_GAP: Duration = Duration::from_millis(300);
/// List pages refresh at least this often (the scheduler's runs are not broadcast).
const CHANGE_TICK: Duration = Duration::from_secs(5);

type EventStream = Sse<KeepAliveStream<std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>>;

fn stream_of(mut rx: mpsc::Receiver<Event>) -> EventStream {
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Sse::new(Box::pin(stream) as _).keep_alive(KeepAlive::default())
}

/// Where a run's stream starts.
#[derive(Deserialize)]
pub struct Resume {
    /// The last log line the page has.
    after: Option<i64>,
}

/// `GET /runs/{id}/events`.
pub async fn run_events(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    Query(resume): Query<Resume>,
    headers: HeaderMap,
    session: Session,
) -> Result<EventStream, UiError> {
    let last_event: Option<i64> =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let after = last_event.max(resume.after).unwrap_or(-1);
    // Fails with a 404 before the stream starts when there is no such run.
    let detail = data::run(&ui.dispatch, &session.principal, &id)?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(follow(ui, session, detail, after, tx));
    Ok(stream_of(rx))
}

fn ids_of(detail: &RunDetail, into: &mut HashSet<String>) {
    into.insert(detail.run.id.clone());
    into.extend(detail.tasks.iter().map(|t| t.task.id.clone()));
    for sub in &detail.subflows {
        ids_of(sub, into);
    }
}

/// Whether a committed record concerns the followed run; learns its new task runs and subflows.
fn concerns(record: &Record, known: &mut HashSet<String>) -> bool {
    match record {
        Record::FlowRunCreated(run) => {
            let child = run.parent.is_some_and(|p| known.contains(&p.to_string()));
            if child {
                known.insert(run.id.to_string());
            }
            child
        }
        Record::TaskRunCreated(task) => {
            let ours = known.contains(&task.flow_run.to_string());
            if ours {
                known.insert(task.id.to_string());
            }
            ours
        }
        Record::State(state) => known.contains(&state.run.to_string()),
        Record::Log(log) => known.contains(&log.flow_run.to_string()),
        Record::Emitted(emitted) => known.contains(&emitted.flow_run.to_string()),
    }
}

async fn follow(ui: Ui, session: Session, first: RunDetail, mut after: i64, tx: mpsc::Sender<Event>) {
    let mut records = data::subscribe(&ui.dispatch);
    let mut other_servers = data::subscribe_other_servers(&ui.dispatch);
    let mut known = HashSet::new();
    ids_of(&first, &mut known);
    let run_id = first.run.id.clone();
    let mut detail = Some(first);
    let mut sent_panels = String::new();
    loop {
        let current = match detail.take() {
            Some(d) => d,
            None => match data::run(&ui.dispatch, &session.principal, &run_id) {
                Ok(d) => d,
                Err(err) => return failed(&tx, err).await,
            },
        };
        ids_of(&current, &mut known);
        let html = panels(&session, &current).into_string();
        if html != sent_panels {
            if tx.send(Event::default().event("panels").data(&html)).await.is_err() {
                return;
            }
            sent_panels = html;
        }
        loop {
            let lines = match data::logs_after(&ui.dispatch, &session.principal, &run_id, after, LOG_BATCH) {
                Ok(lines) => lines,
                Err(err) => return failed(&tx, err).await,
            };
            let Some(last) = lines.last().map(|l| l.seq) else { break };
            let event = Event::default().event("logs").id(last.to_string()).data(log_rows(&lines).into_string());
            if tx.send(event).await.is_err() {
                return;
            }
            after = last;
            if lines.len() < LOG_BATCH {
                break;
            }
        }
        if current.run.state.is_some_and(|s| s.is_terminal()) {
            // An event with no data is never dispatched by browsers.
            let _ = tx.send(Event::default().event("end").data("end")).await;
            return;
        }
        // Sleep until a record about this run is committed (here or by another server), or the tick.
        if !until_news(&mut records, &mut other_servers, &mut known, concerns, TICK, tx.closed()).await {
            return;
        }
    }
}

/// Tells the page why its stream stopped (the page shows it), and stops.
async fn failed(tx: &mpsc::Sender<Event>, err: UiError) {
    let _ = tx.send(Event::default().event("failure").data(err.message())).await;
}

/// `GET /ui/events`: a `change` event whenever runs change, through this
/// server or another (at most every 300 ms). It carries nothing else: the
/// page reloads its list through its session.
pub async fn changes(State(ui): State<Ui>, _session: Session) -> EventStream {
    let (tx, rx) = mpsc::channel(4);
    let mut records = data::subscribe(&ui.dispatch);
    let mut other_servers = data::subscribe_other_servers(&ui.dispatch);
    tokio::spawn(async move {
        loop {
            let tick = tokio::time::sleep(CHANGE_TICK);
            tokio::select! {
                received = records.recv() => if let Err(RecvError::Closed) = received { return },
                _ = other_servers_change(&mut other_servers) => {},
                _ = tick => {},
                _ = tx.closed() => return,
            }
            // Let a burst of records settle into one refresh.
            tokio::time::sleep(CHANGE_GAP).await;
            while records.try_recv().is_ok() {}
            if let Some(other_servers) = other_servers.as_mut() {
                while other_servers.try_recv().is_ok() {}
            }
            if tx.send(Event::default().event("change").data("change")).await.is_err() {
                return;
            }
        }
    });
    stream_of(rx)
}
