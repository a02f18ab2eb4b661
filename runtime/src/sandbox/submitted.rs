//! Tasks an instance started with `submit` and has not collected with `wait`.
//!
//! A `submit` holds one small start per call (its task run's record, name and
//! input), not a running future: one driver per `submit` starts the calls in
//! order, a few at a time, so a batch of many calls costs the host a list,
//! not a task and an instance per call. Each started call runs on a tokio
//! task of its own, so the calls of one `submit` use every core (polled
//! inside the driver they would share one thread); the call is aborted when
//! its driver is. Results wait in a one-shot channel per call until
//! collected.

use crate::core::failure::{Failure, FailureKind};
use crate::sandbox::instance::{Ended, Outcome};
use futures_util::StreamExt as _;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Starts one submitted call when the driver gets to it.
pub type Start = Box<dyn FnOnce() -> Outcome + Send>;

/// The submitted calls of one instance.
#[derive(Default)]
pub struct Submitted {
    pending: HashMap<u64, oneshot::Receiver<Ended>>,
    drivers: Vec<JoinHandle<()>>,
    next_handle: u64,
    /// Made at the first `submit` (most instances never submit): the sender
    /// is held by every started call's task until it is gone, and the
    /// receiver then yields `None`. Nothing is ever sent.
    alive: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

/// A started call's task, aborted when dropped (with its driver).
struct Call(JoinHandle<Ended>);

impl Drop for Call {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Submitted {
    /// Queues `starts` to run, at most `concurrency` at once and in order,
    /// and returns one handle per call.
    pub fn start(&mut self, starts: Vec<Start>, concurrency: usize) -> Vec<u64> {
        self.drivers.retain(|driver| !driver.is_finished());
        let mut handles = Vec::with_capacity(starts.len());
        let mut jobs = Vec::with_capacity(starts.len());
        for start in starts {
            let (sender, receiver) = oneshot::channel();
            self.next_handle += 1;
            self.pending.insert(self.next_handle, receiver);
            handles.push(self.next_handle);
            jobs.push((start, sender));
        }
        let alive = self.alive.get_or_insert_with(|| mpsc::channel(1)).0.clone();
        let driver = futures_util::stream::iter(jobs)
            .map(move |(start, sender): (Start, oneshot::Sender<_>)| {
                let outcome = start();
                let alive = alive.clone();
                let mut call = Call(tokio::spawn(async move {
                    let _alive = alive;
                    outcome.await
                }));
                async move {
                    let ended = (&mut call.0).await.unwrap_or_else(|_| {
                        Ended::from(Err(Failure::new(
                            FailureKind::Crashed,
                            "the task stopped before it ended: its host task failed",
                        )))
                    });
                    // The caller may have stopped listening; the task run is recorded either way.
                    let _ = sender.send(ended);
                }
            })
            .buffer_unordered(concurrency.max(1))
            .for_each(|()| async {});
        self.drivers.push(tokio::spawn(driver));
        handles
    }

    /// How many calls are started or queued and not yet collected.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no call is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The outcome of the call behind `handle`, once it has ended; a handle
    /// is collected once.
    pub async fn collect(&mut self, handle: u64) -> Ended {
        match self.pending.remove(&handle) {
            Some(receiver) => receiver.await.unwrap_or_else(|_| {
                Ended::from(Err(Failure::new(
                    FailureKind::Crashed,
                    "the task stopped before it ended: its host task failed",
                )))
            }),
            None => {
                Ended::from(Err(Failure::new(FailureKind::Unknown, format!("no pending task with handle {handle}"))))
            }
        }
    }

    /// Stops every call still running or queued and waits until they are
    /// gone, so their task runs have ended before the caller's run ends.
    pub async fn stop(&mut self) {
        self.pending.clear();
        for driver in self.drivers.drain(..) {
            driver.abort();
            let _ = driver.await;
        }
        // Aborting a driver aborted its calls' tasks; they are gone once
        // every one has dropped its `alive`.
        if let Some((alive, mut gone)) = self.alive.take() {
            drop(alive);
            let _ = gone.recv().await;
        }
    }
}

impl Drop for Submitted {
    fn drop(&mut self) {
        // Calls of an instance that is gone must not run on unobserved.
        for driver in &self.drivers {
            driver.abort();
        }
    }
}
