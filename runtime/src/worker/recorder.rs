//! Recording on a remote worker: events are buffered and sent to the server
//! in order, in batches; a barrier sends everything buffered and waits for
//! the server to have committed it. Committed events may be echoed (shown
//! by the process that runs them).

use super::client::{Client, EventsError};
use crate::core::record::{Barrier, Event, Recorder};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often buffered events are sent when nobody waits for them.
const FLUSH_PERIOD: Duration = Duration::from_millis(20);

/// The longest wait between two attempts to send a batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

struct Inner {
    client: Client,
    worker: String,
    // Shown each event once the server has committed it (`sluice serve` prints its runs).
    echo: Option<Arc<dyn Recorder>>,
    buffer: Mutex<Vec<Event>>,
    // One batch in flight at a time keeps the server's order the worker's.
    sending: tokio::sync::Mutex<()>,
}

/// A recorder that sends to the server.
#[derive(Clone)]
pub struct HttpRecorder {
    inner: Arc<Inner>,
}

impl HttpRecorder {
    /// Records to the server behind `client`, flushing in the background;
    /// `echo` is given every event the server has committed, in order.
    pub fn new(client: Client, worker: &str, echo: Option<Arc<dyn Recorder>>) -> Self {
        let inner = Arc::new(Inner {
            client,
            worker: worker.to_string(),
            echo,
            buffer: Mutex::default(),
            sending: tokio::sync::Mutex::new(()),
        });
        let background = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_PERIOD);
            loop {
                tick.tick().await;
                let Some(inner) = background.upgrade() else { return };
                flush(&inner).await;
            }
        });
        Self { inner }
    }
}

async fn flush(inner: &Inner) {
    let _in_order = inner.sending.lock().await;
    let batch = std::mem::take(&mut *inner.buffer.lock().expect("buffer lock"));
    if batch.is_empty() {
        return;
    }
    // Sent until the server answers: a batch given up while the server is
    // away would leave its run unended for ever, held by a worker that is
    // alive (so never `Crashed`) and no longer runs it. If the run was
    // declared crashed meanwhile, the server refuses the batch when it is back.
    let mut delay = Duration::from_millis(100);
    let mut said = false;
    loop {
        match inner.client.events(&inner.worker, &batch).await {
            Ok(()) => {
                if let Some(echo) = &inner.echo {
                    batch.iter().for_each(|event| echo.record(event));
                }
                return;
            }
            Err(EventsError::Refused(reason)) => {
                // The heartbeat's answer tells the run to stop.
                tracing::error!("worker: the server refused {} events: {reason}", batch.len());
                return;
            }
            Err(EventsError::Transient(err)) => {
                if delay == MAX_RETRY_DELAY && !said {
                    tracing::warn!("worker: {} events not sent yet, still trying: {err:#}", batch.len());
                    said = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

impl Recorder for HttpRecorder {
    fn record(&self, event: &Event) {
        self.record_owned(event.clone());
    }

    fn record_owned(&self, event: Event) {
        self.inner.buffer.lock().expect("buffer lock").push(event);
    }

    fn barrier(&self) -> Option<Barrier> {
        let inner = self.inner.clone();
        Some(Box::pin(async move { flush(&inner).await }))
    }
}
