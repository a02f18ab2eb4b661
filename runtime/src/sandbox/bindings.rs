//! The host-side `bindgen!`s of the two versions of the contract, and the
//! conversions between their types and the domain types in `core`.
//!
//! `sluice:flow@0.1.0` (`wit/flow.wit`) is generated at the top of this
//! module; `sluice:flow@0.2.0` (`wit/v0.2/flow.wit`) in [`v0_2`], with its
//! `types` interface mapped onto 0.1.0's Rust types (the two are the same
//! types), so one host implementation serves both versions and a loaded
//! program of either version calls the same exports.

#![allow(missing_docs)]

use crate::core::describe::{ComponentDescription, FlowDescription, TaskDescription};
use crate::core::failure::{Failure, FailureKind};
use crate::core::policy::TaskPolicy;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:flow/flow",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// `sluice:flow@0.2.0`: 0.1.0 plus the host imports `emit-event` and `suspend`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "sluice:flow/flow",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "sluice:flow/types@0.2.0": super::sluice::flow::types },
    });
}

/// The version of the contract a component was built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WitVersion {
    /// `sluice:flow@0.1.0`.
    V0_1,
    /// `sluice:flow@0.2.0`.
    V0_2,
}

impl WitVersion {
    /// The version a component imports the host interface of; 0.1.0 for one that imports none
    /// (its exports are the same in both versions).
    pub fn of_imports<'a>(imports: impl IntoIterator<Item = &'a str>) -> Self {
        match imports.into_iter().any(|name| name.starts_with("sluice:flow/") && name.ends_with("@0.2.0")) {
            true => WitVersion::V0_2,
            false => WitVersion::V0_1,
        }
    }

    /// `0.1.0` or `0.2.0`.
    pub fn number(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
        }
    }
}

pub use self::sluice::flow::types::{
    Failure as WitFailure, LogLevel, RunContext, TaskCall, TaskPolicy as WitTaskPolicy,
};

impl From<RunError> for Failure {
    fn from(error: RunError) -> Self {
        match error {
            RunError::Failed(f) => Failure { kind: FailureKind::Failed, message: f.message, retryable: f.retryable },
            RunError::Crashed(f) => Failure { kind: FailureKind::Crashed, message: f.message, retryable: f.retryable },
            RunError::InvalidInput(m) => Failure::new(FailureKind::InvalidInput, m),
            RunError::Unknown(m) => Failure::new(FailureKind::Unknown, m),
            RunError::TimedOut(m) => Failure::new(FailureKind::TimedOut, m),
            RunError::Cancelled(m) => Failure::new(FailureKind::Cancelled, m),
        }
    }
}

impl From<Failure> for RunError {
    fn from(failure: Failure) -> Self {
        let Failure { kind, message, retryable } = failure;
        match kind {
            FailureKind::Failed => RunError::Failed(WitFailure { message, retryable }),
            FailureKind::Crashed | FailureKind::HostFault => RunError::Crashed(WitFailure { message, retryable }),
            FailureKind::InvalidInput => RunError::InvalidInput(message),
            FailureKind::Unknown => RunError::Unknown(message),
            FailureKind::TimedOut => RunError::TimedOut(message),
            FailureKind::Cancelled => RunError::Cancelled(message),
        }
    }
}

impl From<WitTaskPolicy> for TaskPolicy {
    fn from(p: WitTaskPolicy) -> Self {
        TaskPolicy {
            retries: p.retries,
            retry_delay_ms: p.retry_delay_ms,
            backoff: p.backoff,
            jitter: p.jitter,
            timeout_ms: p.timeout_ms,
            cache: p.cache,
            cache_expiration_ms: p.cache_expiration_ms,
        }
    }
}

impl TryFrom<ComponentInfo> for ComponentDescription {
    type Error = String;

    fn try_from(info: ComponentInfo) -> Result<Self, String> {
        let size = description_size(&info);
        let limit = crate::core::describe_check::MAX_DESCRIPTION_BYTES;
        if size > limit {
            return Err(format!(
                "`describe` returned {} KiB of names, descriptions and schemas; the limit is {} KiB",
                size >> 10,
                limit >> 10
            ));
        }
        let schema = |what: &str, name: &str, text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("`describe` returned a schema for {what} `{name}` that is not JSON: {e}"))
        };
        let flows = info
            .flows
            .into_iter()
            .map(|f| {
                Ok(FlowDescription {
                    parameters_schema: schema("flow", &f.name, &f.parameters_schema)?,
                    name: f.name,
                    description: f.description,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let tasks = info
            .tasks
            .into_iter()
            .map(|t| {
                Ok(TaskDescription {
                    input_schema: schema("task", &t.name, &t.input_schema)?,
                    name: t.name,
                    description: t.description,
                    policy: t.policy.into(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(ComponentDescription { version: info.version, flows, tasks })
    }
}

/// Bytes of text in a description, each flow and task counted 64 bytes more.
fn description_size(info: &ComponentInfo) -> usize {
    let flows = info.flows.iter().map(|f| 64 + f.name.len() + f.description.len() + f.parameters_schema.len());
    let tasks = info.tasks.iter().map(|t| 64 + t.name.len() + t.description.len() + t.input_schema.len());
    info.version.len() + flows.chain(tasks).sum::<usize>()
}
