//! What one instance is granted at run time: the hosts it may reach through
//! outbound HTTP (`wasi:http`) and the environment variables it sees (its
//! deployment's secrets). A call outside the grant fails inside the guest
//! with the error WASI defines for it, never in the host. Requests the grant
//! allows are sent by `sandbox::egress`, which checks the addresses too.

use crate::core::egress::check_request;
use crate::core::grants::HostPattern;
use crate::sandbox::egress::{Destination, Egress, Outbound, Sent};
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

/// Sends an outbound request only to an allowed host, and only to the
/// addresses its grant reaches; any other request ends with
/// `HTTP-request-denied` (or `destination-IP-prohibited`) for the guest and
/// a warning in the log.
pub struct HttpPolicy {
    allow_hosts: Arc<[HostPattern]>,
    egress: Egress,
    warn: LineSink,
}

impl HttpPolicy {
    /// A policy allowing `allow_hosts`, sending through `egress`, warning through `warn`.
    pub fn new(allow_hosts: Arc<[HostPattern]>, egress: Egress, warn: LineSink) -> Self {
        Self { allow_hosts, egress, warn }
    }
}

type Sending = Box<dyn Future<Output = Result<Sent, HttpError>> + Send>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_body_errors: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sending {
        let Some(destination) = Destination::of(request.uri()) else {
            return Box::new(async { Err(HttpError::HttpRequestUriInvalid) });
        };
        if let Err(warning) = check_request(&self.allow_hosts, &destination.host, destination.port) {
            (self.warn)(&warning);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let outbound =
            Outbound { request, options, destination, grants: self.allow_hosts.clone(), warn: self.warn.clone() };
        let egress = self.egress.clone();
        Box::new(async move { egress.send(outbound).await })
    }
}
