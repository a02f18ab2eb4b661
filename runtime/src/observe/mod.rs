//! What an operator watches Sluice with: Prometheus metrics (`metrics`,
//! served by `endpoint` on a listen address of its own), the counts of
//! committed run events (`run_events`), HTTP request metrics (`http`),
//! the host's own logs through `tracing` (`host_logs`), and OpenTelemetry
//! traces of runs exported by OTLP (`traces`).

pub mod endpoint;
pub mod host_logs;
pub mod http;
pub mod labels;
pub mod metrics;
pub mod pool;
pub mod queue_depth;
pub mod run_events;
pub mod traces;

pub use metrics::metrics;
