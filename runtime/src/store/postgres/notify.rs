//! What servers sharing one database tell each other, on one connection
//! per store that `LISTEN`s:
//! - on [`CHANNEL`], that work is available: a commit that makes work
//!   available sends `NOTIFY` (in its own transaction, so it is delivered
//!   only once the runs are visible), and the listener wakes the idle
//!   workers registered with it;
//! - on [`CHANGES_CHANNEL`], which runs changed, for the web UI's live
//!   updates: [`gather`] coalesces the runs this store committed into an
//!   announcement at most every `GATHER_GAP` (`store/changes.rs`), sent
//!   after the commits, on the listening connection; what other servers
//!   announce is broadcast to this server's streams.
//!
//! A listener that loses its connection connects again, then wakes
//! everyone and tells its streams (and the other servers) that anything
//! may have changed, in case a notification was missed meanwhile.

use super::conn::Target;
use crate::core::record::Event;
use crate::store::changes::{GATHER_GAP, Gatherer, RunsChanged};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Notify, broadcast, mpsc};

/// The channel work announcements travel on.
pub const CHANNEL: &str = "sluice_work";

/// The channel announcements of changed runs travel on.
pub const CHANGES_CHANNEL: &str = "sluice_changes";

/// Announcements waiting for the listener to send them; the gatherer waits when it is full.
pub const OUTGOING: usize = 16;

/// The waiters a store's listener wakes.
#[derive(Default)]
pub struct Waiters(Mutex<Vec<Arc<Notify>>>);

impl Waiters {
    /// Adds a waiter.
    pub fn add(&self, waiter: Arc<Notify>) {
        self.0.lock().expect("waiters lock").push(waiter);
    }

    fn wake_all(&self) {
        for waiter in self.0.lock().expect("waiters lock").iter() {
            waiter.notify_waiters();
        }
    }
}

/// What a store's listener serves.
pub struct Listening {
    /// Woken when another server announces work.
    pub waiters: Arc<Waiters>,
    /// Where other servers' changes are broadcast.
    pub changes: broadcast::Sender<Arc<RunsChanged>>,
    /// This store's announcements of its own changes, to send.
    pub outgoing: mpsc::Receiver<String>,
}

/// Listens on both channels until the store's runtime stops, and sends
/// this store's change announcements; skips what `origin` (this store) sent.
pub async fn listen(target: Target, origin: String, mut listening: Listening) {
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    let mut gathering = true;
    loop {
        let (sender, mut notes) = mpsc::unbounded_channel();
        let client = match target.connect_listening(sender).await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!("cannot listen for other servers' announcements: {err}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if let Err(err) = client.batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {CHANGES_CHANNEL}")).await {
            tracing::warn!("cannot listen for other servers' announcements: {err}; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(50);
        if !first {
            listening.waiters.wake_all();
            let _ = listening.changes.send(Arc::new(RunsChanged::Anything));
            // Announcements of ours may have been lost with the connection.
            let _ = client.execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &format!("{origin} *")]).await;
        }
        first = false;
        // Ends when the connection does; the client stays alive meanwhile.
        loop {
            tokio::select! {
                note = notes.recv() => {
                    let Some(note) = note else { break };
                    if note.channel() == CHANGES_CHANNEL {
                        if let Some(change) = RunsChanged::decode(note.payload(), &origin) {
                            let _ = listening.changes.send(Arc::new(change));
                        }
                    } else if note.payload() != origin {
                        listening.waiters.wake_all();
                    }
                }
                payload = listening.outgoing.recv(), if gathering => {
                    let Some(payload) = payload else { gathering = false; continue };
                    if let Err(err) = client.execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &payload]).await {
                        tracing::warn!("cannot tell other servers which runs changed: {err}; reconnecting");
                        break;
                    }
                }
            }
        }
        drop(client);
    }
}

/// Gathers the runs of this store's committed events and hands an
/// announcement to the listener at most every `GATHER_GAP`, until the
/// store's writer stops.
pub async fn gather(mut committed: broadcast::Receiver<Arc<Event>>, origin: String, outgoing: mpsc::Sender<String>) {
    let mut gatherer = Gatherer::default();
    loop {
        match committed.recv().await {
            Ok(event) => gatherer.add(&event),
            Err(RecvError::Lagged(_)) => gatherer.missed(),
            Err(RecvError::Closed) => return,
        }
        loop {
            match committed.try_recv() {
                Ok(event) => gatherer.add(&event),
                Err(TryRecvError::Lagged(_)) => gatherer.missed(),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        for payload in gatherer.payloads(&origin) {
            if outgoing.send(payload).await.is_err() {
                return;
            }
        }
        // Later commits wait in the broadcast's buffer (a lag becomes "anything").
        tokio::time::sleep(GATHER_GAP).await;
    }
}
