//! Calling tasks and subflows through the host, one by one or in parallel.

use crate::bindings::sluice::flow::host;
use crate::bindings::sluice::flow::types::{Failure, RunError, TaskCall};
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// Runs a task in a fresh instance through the host and waits for it.
pub fn call_task<I: Serialize, O: DeserializeOwned>(name: &str, input: &I) -> Result<O> {
    let output = host::run_task(name, &encode_call(name, input)?).map_err(Error::from_run_error)?;
    decode_result(name, &output)
}

/// Runs another flow of this component as a subflow and waits for it.
pub fn call_subflow<I: Serialize, O: DeserializeOwned>(name: &str, parameters: &I) -> Result<O> {
    let output = host::run_subflow(name, &encode_call(name, parameters)?).map_err(Error::from_run_error)?;
    decode_result(name, &output)
}

/// Starts tasks in parallel; one future per input, in order.
pub fn submit_task<I: Serialize, O: DeserializeOwned>(
    name: &'static str,
    inputs: impl IntoIterator<Item = I>,
) -> Vec<TaskFuture<O>> {
    let encoded: Vec<Result<String>> = inputs.into_iter().map(|input| encode_call(name, &input)).collect();
    let calls: Vec<TaskCall> = encoded
        .iter()
        .filter_map(|input| input.as_ref().ok())
        .map(|input| TaskCall { name: name.to_string(), input: input.clone() })
        .collect();
    let mut handles = host::submit(&calls).into_iter();
    encoded
        .into_iter()
        .map(|input| {
            let state = match input.map(|_| handles.next()) {
                Err(err) => FutureState::Failed(err),
                Ok(Some(handle)) => FutureState::Pending(handle),
                Ok(None) => FutureState::Failed(Error::fatal("the host returned fewer handles than calls")),
            };
            TaskFuture { task: name, state, output: PhantomData }
        })
        .collect()
}

/// A task started with `submit` or `map`; [`TaskFuture::result`] waits for it.
#[must_use = "a submitted task runs anyway, but its result is lost unless waited for"]
pub struct TaskFuture<T> {
    task: &'static str,
    state: FutureState,
    output: PhantomData<fn() -> T>,
}

enum FutureState {
    Pending(u64),
    Failed(Error),
}

impl<T: DeserializeOwned> TaskFuture<T> {
    /// Waits for this task and returns its result.
    pub fn result(self) -> Result<T> {
        wait_all([self]).pop().expect("one result per future")
    }
}

/// Waits for every future at once and returns their results in order.
pub fn wait_all<T: DeserializeOwned>(futures: impl IntoIterator<Item = TaskFuture<T>>) -> Vec<Result<T>> {
    let futures: Vec<TaskFuture<T>> = futures.into_iter().collect();
    let handles: Vec<u64> = futures
        .iter()
        .filter_map(|f| match f.state {
            FutureState::Pending(h) => Some(h),
            FutureState::Failed(_) => None,
        })
        .collect();
    let mut outputs = host::wait(&handles).into_iter();
    futures
        .into_iter()
        .map(|future| match future.state {
            FutureState::Pending(_) => match outputs.next() {
                Some(Ok(json)) => decode_result(future.task, &json),
                Some(Err(err)) => Err(Error::from_run_error(err)),
                None => Err(Error::fatal("the host returned fewer results than handles")),
            },
            FutureState::Failed(err) => Err(err),
        })
        .collect()
}

/// Reads a task's or flow's input object; a mismatch is `invalid-input`.
pub fn decode_input<I: DeserializeOwned>(json: &str) -> Result<I, RunError> {
    serde_json::from_str(json).map_err(|e| RunError::InvalidInput(e.to_string()))
}

/// Writes a task's or flow's result as JSON.
pub fn encode_output<O: Serialize>(value: &O) -> Result<String, RunError> {
    serde_json::to_string(value).map_err(|e| {
        RunError::Failed(Failure { message: format!("result could not be encoded as JSON: {e}"), retryable: false })
    })
}

fn encode_call<I: Serialize>(name: &str, input: &I) -> Result<String> {
    serde_json::to_string(input)
        .map_err(|e| Error::fatal(format!("input of `{name}` could not be encoded as JSON: {e}")))
}

fn decode_result<O: DeserializeOwned>(name: &str, json: &str) -> Result<O> {
    serde_json::from_str(json).map_err(|e| Error::fatal(format!("result of `{name}` does not match its type: {e}")))
}
