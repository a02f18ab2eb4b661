//! Bounding a guest call by its timeout and the run's cancellation. Guests
//! yield at every epoch tick, so dropping the call stops even a tight loop.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a call was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// It ran past this limit.
    TimedOut(Duration),
    /// The run was cancelled.
    Cancelled,
}

/// Awaits `call` unless the timeout passes or the run is cancelled first.
pub async fn guard<T>(
    call: impl Future<Output = T>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<T, Interrupt> {
    let bounded = async {
        match timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| Interrupt::TimedOut(limit)),
            None => Ok(call.await),
        }
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Interrupt::Cancelled),
        outcome = bounded => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_times_out() {
        let cancel = CancellationToken::new();
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert_eq!(
            guard(slow, Some(Duration::from_secs(1)), &cancel).await,
            Err(Interrupt::TimedOut(Duration::from_secs(1)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_run_stops_the_call() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(guard(std::future::pending::<()>(), None, &cancel).await, Err(Interrupt::Cancelled));
    }

    #[tokio::test]
    async fn a_quick_call_returns_its_value() {
        let cancel = CancellationToken::new();
        assert_eq!(guard(async { 7 }, Some(Duration::from_secs(1)), &cancel).await, Ok(7));
    }
}
