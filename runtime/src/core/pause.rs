//! Pausing for input: what a flow's `suspend` call asks for, how it is kept
//! (as the flow run's "pause" task run), and how an input is checked.
//!
//! A `suspend` call is journaled like a task call: it takes a call position
//! and becomes a task run named [`PAUSE_TASK`], whose input is the
//! [`PauseRequest`] (so a replayed call is recognised by its digest) and
//! which waits in `Paused` holding the request and its deadline as its
//! result. Resuming completes it with the input as its result, so the next
//! attempt of the flow run replays the call and gets the input back.

use crate::core::describe_check::{check_input, compile_schema};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The task name of a pause's task run. No real task can have it: task
/// names cannot contain `:` (`core/describe_check.rs`).
pub const PAUSE_TASK: &str = "sluice:pause";

/// Most bytes of a prompt, a schema or a default.
pub const MAX_PAUSE_TEXT: usize = 64 << 10;

/// What a flow's `suspend` call asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PauseRequest {
    /// What the person is asked.
    pub prompt: String,
    /// JSON Schema the input must fit.
    pub input_schema: Value,
    /// How long to wait for input, in milliseconds; for ever when `None`.
    pub timeout_ms: Option<u64>,
    /// The input taken when the timeout passes; without one, the run fails then.
    pub default: Option<Value>,
}

impl PauseRequest {
    /// A request from the guest's strings, checked: the schema is JSON
    /// Schema and the default (if any) fits it.
    pub fn parse(
        prompt: String,
        input_schema: &str,
        timeout_ms: Option<u64>,
        default: Option<&str>,
    ) -> Result<Self, String> {
        for (what, text) in
            [("prompt", prompt.as_str()), ("input schema", input_schema), ("default", default.unwrap_or(""))]
        {
            if text.len() > MAX_PAUSE_TEXT {
                return Err(format!("the {what} of `suspend` is {} bytes; the limit is 64 KiB", text.len()));
            }
        }
        let input_schema: Value = serde_json::from_str(input_schema)
            .map_err(|e| format!("the input schema of `suspend` is not JSON: {e}"))?;
        let validator = compile_schema("input of `suspend`", &input_schema)?;
        let default = match default {
            Some(text) => {
                check_input(PAUSE_TASK, &validator, text).map_err(|e| format!("the default of `suspend`: {e}"))?;
                Some(serde_json::from_str(text).map_err(|e| format!("the default of `suspend` is not JSON: {e}"))?)
            }
            None => None,
        };
        Ok(Self { prompt, input_schema, timeout_ms, default })
    }

    /// The request as the pause task run's input: the same text on every
    /// attempt for the same call, so the journal recognises the call.
    pub fn journal_input(&self) -> String {
        serde_json::to_string(self).expect("a pause request serialises")
    }
}

/// What a waiting pause task run holds as its result: the request and its deadline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// What the flow asked for.
    #[serde(flatten)]
    pub request: PauseRequest,
    /// When the timeout passes, if it has one.
    pub deadline: Option<DateTime<Utc>>,
}

impl Waiting {
    /// The request waiting from `now`.
    pub fn from(request: PauseRequest, now: DateTime<Utc>) -> Self {
        let deadline =
            request.timeout_ms.map(|ms| now + chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64));
        Self { request, deadline }
    }

    /// Checks a person's input against the schema; the error names the field.
    pub fn check(&self, input: &Value) -> Result<(), String> {
        let validator = compile_schema("input of the pause", &self.request.input_schema)?;
        check_input(PAUSE_TASK, &validator, &input.to_string()).map_err(|e| {
            e.replace(
                "the input of task `sluice:pause` does not fit its schema",
                "the input does not fit the pause's schema",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"object","properties":{"approve":{"type":"boolean"}},"required":["approve"]}"#;

    #[test]
    fn a_default_must_fit_the_schema_and_the_schema_must_be_json_schema() {
        assert!(PauseRequest::parse("ok?".into(), SCHEMA, Some(5), Some(r#"{"approve":false}"#)).is_ok());
        let error = PauseRequest::parse("ok?".into(), SCHEMA, Some(5), Some(r#"{"approve":"no"}"#)).unwrap_err();
        assert!(error.contains("default") && error.contains("field `approve`"), "{error}");
        assert!(PauseRequest::parse("ok?".into(), r#"{"type":5}"#, None, None).unwrap_err().contains("JSON Schema"));
    }

    #[test]
    fn the_journal_input_is_the_same_for_the_same_call_and_input_errors_name_the_field() {
        let a = PauseRequest::parse("ok?".into(), SCHEMA, None, None).unwrap();
        let b = PauseRequest::parse("ok?".into(), SCHEMA, None, None).unwrap();
        assert_eq!(a.journal_input(), b.journal_input());
        let waiting = Waiting::from(a, Utc::now());
        assert!(waiting.check(&json!({"approve": true})).is_ok());
        let error = waiting.check(&json!({"approve": 3})).unwrap_err();
        assert!(
            error.starts_with("the input does not fit the pause's schema") && error.contains("field `approve`"),
            "{error}"
        );
    }
}
