//! What wakes a run's live stream (the web UI's run page, `flow-run logs
//! --follow`): a record committed by this server that concerns the run,
//! another server's announcement of a change to one of its runs (on
//! PostgreSQL, `store/changes.rs`), or a slow tick for changes made outside
//! both (cancels, the scheduler). A wake-up only says "look again": what a
//! stream sends is read from the store through its caller's tenant.

use crate::core::record::Event as Record;
use crate::store::RunsChanged;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Waits until the run may have changed: a committed record that
/// `concerns` it (which may add its new task runs and subflows to `known`),
/// another server's announcement touching `known`, or `tick`. False when
/// `gone` finished first (the stream's reader left), so the stream should stop.
pub async fn until_news(
    records: &mut broadcast::Receiver<Arc<Record>>,
    other_servers: &mut Option<broadcast::Receiver<Arc<RunsChanged>>>,
    known: &mut HashSet<String>,
    concerns: impl Fn(&Record, &mut HashSet<String>) -> bool,
    tick: Duration,
    gone: impl Future<Output = ()>,
) -> bool {
    tokio::pin!(gone);
    let deadline = tokio::time::Instant::now() + tick;
    loop {
        tokio::select! {
            received = records.recv() => match received {
                Ok(record) if concerns(&record, known) => return true,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => {
                    tokio::time::sleep_until(deadline).await;
                    return true;
                }
            },
            change = other_servers_change(other_servers) => if change.concerns(known) { return true },
            _ = tokio::time::sleep_until(deadline) => return true,
            () = &mut gone => return false,
        }
    }
}

/// The next change another server announced; never, when this store has no
/// other servers (SQLite) or their feed has closed.
pub async fn other_servers_change(
    other_servers: &mut Option<broadcast::Receiver<Arc<RunsChanged>>>,
) -> Arc<RunsChanged> {
    let Some(receiver) = other_servers.as_mut() else { return std::future::pending().await };
    match receiver.recv().await {
        Ok(change) => change,
        Err(RecvError::Lagged(_)) => Arc::new(RunsChanged::Anything),
        Err(RecvError::Closed) => {
            *other_servers = None;
            std::future::pending().await
        }
    }
}
