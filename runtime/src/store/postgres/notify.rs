//! Waking idle workers on every server: a commit that makes work available
//! sends `NOTIFY` on [`CHANNEL`] (in its own transaction, so it is delivered
//! only once the runs are visible), and each store keeps one connection
//! that `LISTEN`s and wakes the waiters registered with it. A listener
//! that loses its connection connects again, and wakes everyone when it
//! does, in case it missed a notification meanwhile.

use super::conn::Target;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// The channel work announcements travel on.
pub const CHANNEL: &str = "sluice_work";

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

/// Listens on [`CHANNEL`] until the store's runtime stops; skips
/// announcements that `origin` (this store) sent itself.
pub async fn listen(target: Target, origin: String, waiters: Arc<Waiters>) {
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        let (sender, mut notes) = mpsc::unbounded_channel();
        let client = match target.connect_listening(sender).await {
            Ok(client) => client,
            Err(err) => {
                eprintln!("warning: cannot listen for work announcements: {err}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if let Err(err) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            eprintln!("warning: cannot listen for work announcements: {err}; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(50);
        if !first {
            waiters.wake_all();
        }
        first = false;
        // Ends when the connection does; the client stays alive meanwhile.
        while let Some(note) = notes.recv().await {
            if note.payload() != origin {
                waiters.wake_all();
            }
        }
        drop(client);
    }
}
