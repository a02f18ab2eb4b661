//! Sluice: a WebAssembly-sandboxed flow runtime.
//!
//! - [`core`]: ids, states and their transition table, policies, records (pure).
//! - [`sandbox`]: the wasmtime engine, the WIT boundary, instances and their limits.
//! - [`runner`]: runs a flow run with every task in its own instance.
//! - [`artifact`]: components named by their sha256.
//! - [`params`]: flow parameters, resolved and validated against the schema.
//! - [`store`]: the durable state store (SQLite).
//! - [`service`]: push, deploy, run: what the CLI (and a server) call.
//! - [`server`]: the HTTP API, scheduler, crash detection and embedded workers.
//! - [`worker`]: a worker on any host, taking runs from a server.
//! - [`observe`]: Prometheus metrics, and the host's own logs through `tracing`.
//! - [`client`]: the server API's client, for the CLI.
//! - [`cli`]: the `sluice` command.

pub mod artifact;
pub mod cli;
pub mod client;
mod client_sse;
pub mod core;
pub mod observe;
pub mod params;
pub mod project;
pub mod runner;
pub mod sandbox;
pub mod secret_file;
pub mod server;
pub mod service;
pub mod store;
pub mod worker;
