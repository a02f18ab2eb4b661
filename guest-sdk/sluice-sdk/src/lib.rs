//! Write Sluice flows and tasks in plain Rust.
//!
//! ```ignore
//! use sluice_sdk::{flow, task, log};
//!
//! /// Says hello.
//! #[flow]
//! fn hello(name: String) -> sluice_sdk::Result<()> {
//!     say_hello(name)?;
//!     Ok(())
//! }
//!
//! #[task(retries = 2, retry_delay = "1s")]
//! fn say_hello(name: String) {
//!     log::info!("Hello {name}!");
//! }
//!
//! sluice_sdk::export_flows! { flows: [hello], tasks: [say_hello] }
//! ```
//!
//! A `#[flow]` or `#[task]` function keeps its body, but calling it from a
//! flow goes through the host: a task runs in a fresh, isolated instance with
//! the host's retries, timeout and cache; a flow called from a flow becomes a
//! subflow run. Each call returns [`Result`] so a failure can be handled or
//! passed on with `?`.

pub mod bindings;
mod error;
mod export;
mod input;
pub mod log;
mod task;

pub use error::{Error, Result};
pub use export::{FlowDef, TaskDef};
pub use input::{emit_event, pause, pause_with_timeout};
pub use sluice_sdk_macros::{flow, task};
pub use task::{TaskFuture, wait_all};

pub use bindings::sluice::flow::types::RunContext;

/// What the host says about the run this instance serves.
pub fn context() -> RunContext {
    bindings::sluice::flow::host::context()
}

/// Items the macros expand to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::sluice::flow::types::{RunError, TaskPolicy};
    pub use crate::export::{component_info, dispatch_flow, dispatch_task, schema_json};
    pub use crate::task::{call_subflow, call_task, decode_input, encode_output, submit_task};
    pub use schemars;
    pub use serde;
    pub use serde_json;
}
