//! Pausing a flow for a person's input, and emitting events
//! (`sluice:flow@0.2.0`'s `suspend` and `emit-event`).

use crate::bindings::sluice::flow::host;
use crate::{Error, Result};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Pauses the flow run until a person sends input of type `T` (its JSON
/// Schema is generated from `T` and shown as a form), and returns it.
///
/// The run goes to `Paused` and holds no worker slot: this instance stops
/// here. When someone resumes the run (`sluice flow-run resume <id> --input
/// '{…}'`, the API or the run's page), the flow runs again from the start,
/// replaying the tasks it completed from its journal, and this call returns
/// the input. Code before it must therefore make the same calls on every
/// attempt, as on any retry. Only a top-level flow may pause.
///
/// ```ignore
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Approval { approve: bool }
/// let answer: Approval = sluice_sdk::pause("approve the deploy?")?;
/// ```
pub fn pause<T: JsonSchema + DeserializeOwned>(prompt: &str) -> Result<T> {
    suspend(prompt, None, None)
}

/// [`pause`] for at most `timeout`: then the run goes on with `default` as
/// its input or, without one, ends `Failed`. The default must fit `T`'s schema.
pub fn pause_with_timeout<T: JsonSchema + DeserializeOwned + Serialize>(
    prompt: &str,
    timeout: Duration,
    default: Option<T>,
) -> Result<T> {
    let default = default.map(|d| serde_json::to_string(&d)).transpose()?;
    suspend(prompt, Some(timeout), default)
}

fn suspend<T: JsonSchema + DeserializeOwned>(
    prompt: &str,
    timeout: Option<Duration>,
    default: Option<String>,
) -> Result<T> {
    let schema = crate::export::schema_json::<T>();
    let timeout_ms = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    let input = host::suspend(prompt, &schema, timeout_ms, default.as_deref()).map_err(Error::from_run_error)?;
    serde_json::from_str(&input).map_err(|e| Error::fatal(format!("the input of the pause does not fit its type: {e}")))
}

/// Records an event of this run that automations can react to: `name` is 1
/// to 128 characters of `A-Z a-z 0-9 . _ -`, not starting with `sluice.`
/// (kept for the events Sluice records itself), `payload` serialises to a JSON
/// object of at most 64 KiB.
pub fn emit_event<P: Serialize + ?Sized>(name: &str, payload: &P) -> Result<()> {
    let payload = serde_json::to_string(payload)?;
    host::emit_event(name, &payload).map_err(Error::msg)
}
