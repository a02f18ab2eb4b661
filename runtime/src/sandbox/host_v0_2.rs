//! The `sluice:flow/host@0.2.0` imports of an instance: 0.1.0's functions
//! (served by the same code, since both versions share their Rust types)
//! plus `emit-event` and `suspend`.

use crate::core::events::{
    MAX_EMITTED_PAYLOAD_BYTES, MAX_EVENT_NAME_CHARS, is_well_formed_event_name, refuse_reserved_name,
};
use crate::core::failure::{Failure, FailureKind};
use crate::core::pause::PauseRequest;
use crate::sandbox::bindings::sluice::flow::host::Host as HostV0_1;
use crate::sandbox::bindings::{self, RunContext, RunError, TaskCall, v0_2};
use crate::sandbox::instance::{Ended, InstanceState, Suspension};

/// Checks an emitted event as the guest sent it: its name by the rules a
/// worker's report is held to (`core::events`), and its payload, still
/// text, a JSON object of at most 64 KiB. Messages name what to change.
pub fn check_event(name: &str, payload: &str) -> Result<serde_json::Value, String> {
    if !is_well_formed_event_name(name) {
        let shown: String = name.chars().take(40).flat_map(char::escape_debug).collect();
        return Err(format!(
            "event name \"{shown}\" is not valid: use 1 to {MAX_EVENT_NAME_CHARS} characters of A-Z, a-z, 0-9, `.`, `_` \
             and `-`"
        ));
    }
    refuse_reserved_name(name)?;
    if payload.len() > MAX_EMITTED_PAYLOAD_BYTES {
        return Err(format!(
            "the payload of event `{name}` is {} bytes; the limit is {} KiB",
            payload.len(),
            MAX_EMITTED_PAYLOAD_BYTES >> 10
        ));
    }
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(format!("the payload of event `{name}` must be a JSON object")),
        Err(err) => Err(format!("the payload of event `{name}` is not JSON: {err}")),
    }
}

impl v0_2::sluice::flow::host::Host for InstanceState {
    async fn run_task(&mut self, name: String, input: String) -> wasmtime::Result<Result<String, RunError>> {
        HostV0_1::run_task(self, name, input).await
    }

    async fn submit(&mut self, calls: Vec<TaskCall>) -> wasmtime::Result<Vec<u64>> {
        HostV0_1::submit(self, calls).await
    }

    async fn wait(&mut self, handles: Vec<u64>) -> wasmtime::Result<Vec<Result<String, RunError>>> {
        HostV0_1::wait(self, handles).await
    }

    async fn run_subflow(&mut self, name: String, parameters: String) -> wasmtime::Result<Result<String, RunError>> {
        HostV0_1::run_subflow(self, name, parameters).await
    }

    async fn log(&mut self, level: bindings::LogLevel, message: String) -> wasmtime::Result<()> {
        HostV0_1::log(self, level, message).await
    }

    async fn context(&mut self) -> wasmtime::Result<RunContext> {
        HostV0_1::context(self).await
    }

    async fn emit_event(&mut self, name: String, payload: String) -> wasmtime::Result<Result<(), String>> {
        let payload = match check_event(&name, &payload) {
            Ok(payload) => payload,
            Err(problem) => return Ok(Err(problem)),
        };
        Ok(self.host.emit_event(&self.scope, name, payload))
    }

    async fn suspend(
        &mut self,
        prompt: String,
        input_schema: String,
        timeout_ms: Option<u64>,
        default: Option<String>,
    ) -> wasmtime::Result<Result<String, RunError>> {
        let request = match PauseRequest::parse(prompt, &input_schema, timeout_ms, default.as_deref()) {
            Ok(request) => request,
            Err(problem) => return Ok(self.deliver(Ended::from(Err(Failure::new(FailureKind::InvalidInput, problem))))),
        };
        match self.host.clone().suspend(self.scope.clone(), request) {
            Suspension::Returns(ended) => Ok(self.deliver(ended)),
            // The instance is dropped: its run waits for input, holding nothing.
            Suspension::Paused(message) => Err(wasmtime::Error::msg(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_and_payloads_are_checked() {
        assert!(check_event("deploy.approved_v-2", r#"{"by":"ann"}"#).is_ok());
        for name in ["", "two words", "a/b", &"x".repeat(129), "é"] {
            assert!(check_event(name, "{}").unwrap_err().contains("is not valid"), "{name}");
        }
        assert!(check_event("sluice.flow-run.Completed", "{}").unwrap_err().contains("is kept for"));
        assert!(check_event("e", "[1]").unwrap_err().contains("JSON object"));
        assert!(check_event("e", "{").unwrap_err().contains("not JSON"));
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_EMITTED_PAYLOAD_BYTES));
        assert!(check_event("e", &big).unwrap_err().contains("64 KiB"));
    }
}
