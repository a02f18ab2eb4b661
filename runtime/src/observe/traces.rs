//! OpenTelemetry traces, exported by OTLP (HTTP/protobuf) only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set: one span per flow run attempt, subflow run and task attempt (see
//! `runner/trace.rs`). Off, nothing is set up and every call site checks
//! [`enabled`] (one atomic load) before doing anything else.
//!
//! A run's spans hang under a W3C trace context: the `traceparent` header a
//! caller sent with `POST …/runs` (the server's own span for the request is
//! its child), handed to whichever worker claims the run in the claim's
//! answer (`ClaimedRun::traceparent`) and set for the run's execution with
//! [`with_trace_parent`]. The server keeps it in memory, so a run claimed
//! after its server restarted, or through another server, starts a new trace.

use crate::core::state::StateType;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub use opentelemetry::trace::SpanContext;

/// The variables that turn export on (either names where spans go).
const ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"];

static TRACING: OnceLock<(SdkTracerProvider, Tracer)> = OnceLock::new();

/// Whether spans are made: set when export starts (benchmarks turn it off and on again).
static ENABLED: AtomicBool = AtomicBool::new(false);

tokio::task_local! {
    /// The trace context (a `traceparent` value) of the run executing in this task.
    static TRACE_PARENT: Option<String>;
}

/// Whether spans are made and exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Stops (or starts again) making spans once export was started: for
/// benchmarks comparing both in one process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on && TRACING.get().is_some(), Ordering::Relaxed);
}

fn tracer() -> Option<&'static Tracer> {
    TRACING.get().filter(|_| enabled()).map(|(_, tracer)| tracer)
}

/// Starts exporting spans as `service` (`sluice-server`, `sluice-worker`)
/// when an OTLP endpoint is set (the SDK reads the standard `OTEL_…`
/// variables); says where, or why it cannot.
pub fn init(service: &'static str) -> Result<Option<String>, String> {
    let Some(endpoint) =
        ENDPOINT_VARIABLES.iter().find_map(|name| std::env::var(name).ok().filter(|value| !value.trim().is_empty()))
    else {
        return Ok(None);
    };
    if endpoint.trim().starts_with("https://") {
        // The exporter is built without TLS (one TLS stack is enough in this binary).
        return Err(format!(
            "cannot export traces to {endpoint}: only http:// endpoints are supported; \
             send them to a collector or sidecar on a trusted network (e.g. http://127.0.0.1:4318)"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build();
    start(service, exporter.map_err(|e| format!("cannot export traces to {endpoint}: {e}"))?);
    Ok(Some(endpoint))
}

/// Starts exporting spans as `service` to the OTLP/HTTP receiver at `endpoint` (`http://host:4318`).
pub fn start_exporting_to(service: &'static str, endpoint: &str) -> Result<(), String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| format!("cannot export traces to {endpoint}: {e}"))?;
    start(service, exporter);
    Ok(())
}

fn start(service: &'static str, exporter: opentelemetry_otlp::SpanExporter) {
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("sluice");
    let _ = TRACING.set((provider, tracer));
    ENABLED.store(true, Ordering::Relaxed);
}

/// Exports what is buffered (before the process exits).
pub fn flush() {
    if let Some((provider, _)) = TRACING.get() {
        let _ = provider.force_flush();
    }
}

/// Runs `work` (a run's execution) with `traceparent` as its runs' parent context.
pub async fn with_trace_parent<F: Future>(traceparent: Option<String>, work: F) -> F::Output {
    TRACE_PARENT.scope(traceparent, work).await
}

/// The parent context set by [`with_trace_parent`] for this task, if any.
pub fn current_trace_parent() -> Option<SpanContext> {
    TRACE_PARENT.try_with(|parent| parent.as_deref().and_then(parse_traceparent)).ok().flatten()
}

/// Reads a W3C `traceparent` value; `None` when it is not a valid one.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    use opentelemetry::propagation::TextMapPropagator as _;
    let carrier = HashMap::from([("traceparent".to_string(), value.trim().to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// Writes `span` as a W3C `traceparent` value.
pub fn traceparent(span: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", span.trace_id(), span.span_id(), span.trace_flags().to_u8())
}

/// One span: of a flow run attempt, a subflow run, a task attempt or a request.
pub struct RunSpan(opentelemetry_sdk::trace::Span);

impl RunSpan {
    /// Starts a span named `name` under `parent` (a new trace when `None`); `None` when tracing is off.
    pub fn start(name: String, parent: Option<&SpanContext>, attributes: Vec<KeyValue>) -> Option<RunSpan> {
        let tracer = tracer()?;
        let context = match parent {
            Some(parent) => Context::new().with_remote_span_context(parent.clone()),
            None => Context::new(),
        };
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(tracer, &context);
        Some(RunSpan(span))
    }

    /// Adds an attribute.
    pub fn set_attribute(&mut self, attribute: KeyValue) {
        self.0.set_attribute(attribute);
    }

    /// Its context, for children and for `traceparent`.
    pub fn context(&self) -> SpanContext {
        self.0.span_context().clone()
    }

    /// Ends it in `state`: an error status (with `message`) unless the state is a success.
    pub fn end(mut self, state: StateType, message: Option<&str>) {
        self.0.set_attribute(KeyValue::new("sluice.state", state.name()));
        if matches!(state, StateType::Completed | StateType::Cached) {
            self.0.set_status(Status::Ok);
        } else {
            self.0.set_status(Status::error(message.unwrap_or(state.name()).to_string()));
        }
        self.0.end();
    }
}

/// An attribute.
pub fn attribute(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_refused() {
        let value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let span = parse_traceparent(value).expect("a valid traceparent");
        assert_eq!(traceparent(&span), value);
        assert!(span.is_remote());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "zz",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
