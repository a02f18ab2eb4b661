//! What one instance is granted at run time: the hosts it may reach through
//! outbound HTTP (`wasi:http`) and the environment variables it sees (its
//! deployment's secrets). A call outside the grant fails inside the guest
//! with the error WASI defines for it, never in the host.

use crate::core::grants::HostPattern;
use crate::sandbox::stdio::LineSink;
use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The capabilities of every instance of one run.
#[derive(Clone, Default)]
pub struct InstanceGrants {
    /// Hosts outbound HTTP may reach; none when empty.
    pub allow_hosts: Arc<[HostPattern]>,
    /// Environment variables the guest sees (its granted secrets).
    pub env: Arc<[(String, String)]>,
}

impl std::fmt::Debug for InstanceGrants {
    // Never print secret values, even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("InstanceGrants").field("allow_hosts", &self.allow_hosts).field("env", &names).finish()
    }
}

/// Sends an outbound request only to an allowed host; any other request
/// ends with `HTTP-request-denied` for the guest and a warning in the log.
pub struct HttpPolicy {
    allow_hosts: Arc<[HostPattern]>,
    warn: LineSink,
}

impl HttpPolicy {
    /// A policy allowing `allow_hosts`, warning through `warn`.
    pub fn new(allow_hosts: Arc<[HostPattern]>, warn: LineSink) -> Self {
        Self { allow_hosts, warn }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
        self.allow_hosts.iter().any(|pattern| pattern.allows(host, port))
    }
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        if !self.allows(request.uri()) {
            let authority = request.uri().authority().map_or_else(String::new, |a| a.to_string());
            (self.warn)(&format!(
                "outbound HTTP to `{authority}` denied: it is not in this deployment's allow_hosts grant"
            ));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}
