//! Bounding a guest call by its timeout and the run's cancellation, and
//! containing a panic in the host while it serves the call. Guests yield at
//! every epoch tick and every host call they block in is asynchronous, so
//! dropping the call stops a tight loop and a request that never returns
//! alike.

use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a call was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupt {
    /// It ran past this limit.
    TimedOut(Duration),
    /// The run was cancelled.
    Cancelled,
    /// The host panicked while serving it (with the panic's message), for
    /// instance in a task it spawned for a guest's request, whose panic the
    /// guest's call resumes.
    Panicked(String),
}

/// Awaits `call` unless the timeout passes or the run is cancelled first.
///
/// The call is taken pinned where its caller holds it: a guest call's future
/// is kilobytes, and one taken by value would be held twice (as the argument
/// and as the pinned call) and copied on every move of the futures around it.
pub async fn guard<T>(
    call: Pin<&mut impl Future<Output = T>>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<T, Interrupt> {
    let call =
        async { AssertUnwindSafe(call).catch_unwind().await.map_err(|panic| Interrupt::Panicked(message_of(&*panic))) };
    let bounded = async {
        match timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or(Err(Interrupt::TimedOut(limit))),
            None => call.await,
        }
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Interrupt::Cancelled),
        outcome = bounded => outcome,
    }
}

/// What a panic said, when it said it with text.
pub fn message_of(panic: &(dyn Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => text.to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_times_out() {
        let cancel = CancellationToken::new();
        let slow = std::pin::pin!(tokio::time::sleep(Duration::from_secs(10)));
        assert_eq!(
            guard(slow, Some(Duration::from_secs(1)), &cancel).await,
            Err(Interrupt::TimedOut(Duration::from_secs(1)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_run_stops_the_call() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(guard(std::pin::pin!(std::future::pending::<()>()), None, &cancel).await, Err(Interrupt::Cancelled));
    }

    #[tokio::test]
    async fn a_panic_in_the_call_is_reported_not_resumed() {
        let cancel = CancellationToken::new();
        let panics = async { panic!("the host broke") };
        assert_eq!(
            guard::<()>(std::pin::pin!(panics), None, &cancel).await,
            Err(Interrupt::Panicked("the host broke".into()))
        );
        let formatted = async { panic!("request {} failed", 7) };
        let outcome = guard::<()>(std::pin::pin!(formatted), Some(Duration::from_secs(5)), &cancel).await;
        assert_eq!(outcome, Err(Interrupt::Panicked("request 7 failed".into())));
    }

    #[tokio::test]
    async fn a_quick_call_returns_its_value() {
        let cancel = CancellationToken::new();
        assert_eq!(guard(std::pin::pin!(async { 7 }), Some(Duration::from_secs(1)), &cancel).await, Ok(7));
    }
}
