//! `GET /flow-runs/{id}/logs/follow`: a flow run's log lines as
//! Server-Sent Events while it runs, ending when it ends. Woken by the
//! store's commit broadcast (and, on PostgreSQL, other servers'
//! announcements of the runs they changed), with a slow tick as a safety
//! net; what it sends is read from the store through the caller's tenant.

use super::*;
use crate::server::wakeups::until_news;
use crate::service::{FollowedLine, LogsEnded};
use axum::response::sse::{Event as SseEvent, KeepAlive, KeepAliveStream, Sse};
use futures_util::Stream;
use std::collections::HashSet;
use std::convert::Infallible;
use tokio::sync::mpsc;

/// How often the stream looks again when nothing woke it.
const TICK: Duration = Duration::from_millis(500);
/// Log lines read at a time.
const BATCH: usize = 500;

/// Where the stream starts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct FollowQuery {
    /// Only lines after this sequence number (a `log` event's `seq`, also its event id); default: from the first.
    after: Option<i64>,
}

type LogStream = Sse<KeepAliveStream<std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>>>>;

/// A flow run's logs (its tasks' and subflows' included) as Server-Sent
/// Events, from the first line (or after `after`) until the run ends:
/// each line is a `log` event whose data is a JSON log line with its `seq`
/// (also the event id, so a client resumes with `Last-Event-ID`); the run's
/// end is an `end` event with its final state, after its last line.
#[utoipa::path(
    get,
    path = "/flow-runs/{id}/logs/follow",
    tag = "flow-runs",
    params(("id" = String, Path, description = "The run's id or name"), FollowQuery),
    responses(
        (status = 200, description = "`log` events (data: a FollowedLine), then one `end` event (data: a LogsEnded)",
         content_type = "text/event-stream", body = String),
        (status = 400, description = "A malformed or unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such flow run", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    )
)]
pub(super) async fn follow_logs(
    State(d): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<FollowQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult<LogStream> {
    let run = d.service.flow_run(&p.tenant, &id)?;
    let last_event: Option<i64> =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let after = last_event.max(q.after).unwrap_or(-1);
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(follow(d, p.tenant, run.id, after, tx));
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Ok(Sse::new(Box::pin(stream) as _).keep_alive(KeepAlive::default()))
}

async fn follow(d: AppState, tenant: String, run: String, mut after: i64, tx: mpsc::Sender<SseEvent>) {
    let mut committed = d.service.store.subscribe();
    let mut other_servers = d.service.store.subscribe_other_servers();
    let mut known: HashSet<String> = HashSet::from([run.clone()]);
    loop {
        // Read the state first: a run that ended has every line committed before its end.
        let ended = match d.service.flow_run(&tenant, &run) {
            Ok(row) => row.state.is_some_and(|s| s.is_terminal()).then_some(row),
            Err(err) => return failed(&tx, &err.to_string()).await,
        };
        loop {
            let lines = match d.service.logs_after(&tenant, &run, after, BATCH) {
                Ok(lines) => lines,
                Err(err) => return failed(&tx, &err.to_string()).await,
            };
            for line in &lines {
                if tx.send(log_event(line)).await.is_err() {
                    return;
                }
                after = line.seq;
            }
            if lines.len() < BATCH {
                break;
            }
        }
        if let Some(row) = ended {
            let end = LogsEnded { state: row.state, message: row.message };
            let _ = tx.send(SseEvent::default().event("end").data(json!(end).to_string())).await;
            return;
        }
        if !until_news(&mut committed, &mut other_servers, &mut known, concerns, TICK, tx.closed()).await {
            return;
        }
    }
}

fn log_event(line: &FollowedLine) -> SseEvent {
    SseEvent::default().event("log").id(line.seq.to_string()).data(json!(line).to_string())
}

/// Whether a committed record concerns the followed run; learns its subflows.
fn concerns(record: &Event, known: &mut HashSet<String>) -> bool {
    match record {
        Event::FlowRunCreated(run) => {
            let child = run.parent.is_some_and(|p| known.contains(&p.to_string()));
            if child {
                known.insert(run.id.to_string());
            }
            false
        }
        Event::State(state) => known.contains(&state.run.to_string()),
        Event::Log(log) => known.contains(&log.flow_run.to_string()),
        _ => false,
    }
}

/// Tells the client why the stream stopped.
async fn failed(tx: &mpsc::Sender<SseEvent>, message: &str) {
    let _ = tx.send(SseEvent::default().event("failure").data(message)).await;
}
