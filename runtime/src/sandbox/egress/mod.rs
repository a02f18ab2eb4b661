//! Outbound HTTP for guests, sent by the host itself rather than by
//! wasmtime's default client, so that the address checked is the address
//! connected to: the host name is resolved once, each address is checked
//! against the run's grants (a name reaches public addresses only; special
//! ones need a grant naming them, see `core::egress`), a TCP connection is
//! made to a permitted address and checked again, and TLS and HTTP/1.1 run
//! over that very connection. A name that resolves elsewhere a moment later
//! (DNS rebinding) is never looked up again.

mod response;
mod tls;

pub use tls::{EXTRA_CA_ENV, TlsConfigError, client_config, install_crypto_provider};

use crate::core::egress::{address_refusal, check_address};
use crate::core::grants::HostPattern;
use crate::sandbox::stdio::LineSink;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// How long resolving and connecting may take when the guest sets no connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A response, and the future that drives its connection to the end.
pub type Sent = (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>);

/// What every outbound request of this process shares: the TLS client
/// configuration (providers and trusted certificates).
#[derive(Clone)]
pub struct Egress {
    tls: tokio_rustls::TlsConnector,
}

impl Egress {
    /// Outbound HTTP trusting the built-in roots and the CAs of
    /// `SLUICE_EXTRA_CA_CERTS`; an unusable file is an error here, at start.
    pub fn from_env() -> Result<Self, TlsConfigError> {
        Ok(Self::with_tls(tls::client_config_from_env()?))
    }

    /// Outbound HTTP with this TLS client configuration.
    pub fn with_tls(config: rustls::ClientConfig) -> Self {
        Self { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) }
    }
}

impl Default for Egress {
    /// Trusting the built-in roots only.
    fn default() -> Self {
        Self::with_tls(client_config(None).expect("the built-in roots make a valid TLS configuration"))
    }
}

/// Where a request goes, from its URL.
pub struct Destination {
    /// The host as the URL writes it (`[…]` around an IPv6 address).
    pub host: String,
    /// The port, the scheme's default when the URL has none.
    pub port: u16,
    /// Whether it is https.
    pub tls: bool,
}

impl Destination {
    /// The destination of `uri`; `None` without a host.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let host = uri.host()?.to_string();
        let tls = uri.scheme() != Some(&http::uri::Scheme::HTTP);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Some(Self { host, port, tls })
    }

    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// One request already allowed by its URL; the grants still decide where it may connect.
pub struct Outbound {
    /// The request.
    pub request: http::Request<WasiBody>,
    /// The guest's timeouts, if it set any.
    pub options: Option<RequestOptions>,
    /// Where it goes.
    pub destination: Destination,
    /// The run's grants.
    pub grants: Arc<[HostPattern]>,
    /// Warnings for the run's log.
    pub warn: LineSink,
}

impl Egress {
    /// Resolves, checks, connects and sends `outbound`.
    pub async fn send(&self, outbound: Outbound) -> Result<Sent, HttpError> {
        #[cfg(debug_assertions)]
        if std::env::var_os("SLUICE_TEST_PANIC_IN_OUTBOUND_HTTP").is_some() {
            // Lets the tests prove that a host task panicking ends its run `Crashed`.
            panic!("test hook: outbound HTTP panics (SLUICE_TEST_PANIC_IN_OUTBOUND_HTTP is set)");
        }
        let Outbound { request, options, destination, grants, warn } = outbound;
        let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let resolved = resolve(&destination, connect_timeout).await?;
        let mut permitted = Vec::new();
        let mut refused = None;
        for address in resolved {
            match check_address(&grants, address) {
                Ok(()) => permitted.push(address),
                Err(kind) => _ = refused.get_or_insert((address.ip(), kind)),
            }
        }
        if permitted.is_empty() {
            let Some((ip, kind)) = refused else { return Err(HttpError::DestinationNotFound) };
            warn(&address_refusal(&destination.host, destination.port, ip, kind));
            return Err(HttpError::DestinationIpProhibited);
        }
        let stream = connect(&permitted, connect_timeout, |peer| check_address(&grants, peer).is_ok()).await?;
        let authority = format!("{}:{}", destination.host, destination.port);
        if destination.tls {
            let name = server_name(destination.bare_host())?;
            let handshake = tokio::time::timeout(connect_timeout, self.tls.connect(name, stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => return Err(tls_failure(err, &authority, &warn)),
                Err(_) => return Err(HttpError::ConnectionTimeout),
            };
            response::exchange(TokioIo::new(stream), request, options, connect_timeout).await
        } else {
            response::exchange(TokioIo::new(stream), request, options, connect_timeout).await
        }
    }
}

/// Every address of the destination: the address itself, or what its name resolves to (once).
async fn resolve(destination: &Destination, limit: Duration) -> Result<Vec<SocketAddr>, HttpError> {
    let host = destination.bare_host();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, destination.port)]);
    }
    match tokio::time::timeout(limit, tokio::net::lookup_host((host, destination.port))).await {
        Ok(Ok(addresses)) => Ok(addresses.collect()),
        Ok(Err(err)) => Err(HttpError::DnsError { rcode: Some(err.to_string()), info_code: None }),
        Err(_) => Err(HttpError::DnsTimeout),
    }
}

/// Connects to the first of `addresses` that answers. The peer of the
/// connection made is checked again with `permits`: what is connected to is
/// what was allowed.
async fn connect(
    addresses: &[SocketAddr],
    limit: Duration,
    permits: impl Fn(SocketAddr) -> bool,
) -> Result<TcpStream, HttpError> {
    let mut failure = HttpError::DestinationNotFound;
    for &address in addresses {
        match tokio::time::timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let peer = stream.peer_addr().map_err(HttpError::Connect)?;
                return if permits(peer) { Ok(stream) } else { Err(HttpError::DestinationIpProhibited) };
            }
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                failure = HttpError::ConnectionRefused;
            }
            Ok(Err(err)) => failure = HttpError::Connect(err),
            Err(_) => failure = HttpError::ConnectionTimeout,
        }
    }
    Err(failure)
}

fn server_name(host: &str) -> Result<ServerName<'static>, HttpError> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => Ok(ServerName::try_from(host.to_string())?),
    }
}

/// The guest's error for a failed handshake; an untrusted certificate is
/// also explained in the run's log, since only the operator can fix it.
fn tls_failure(err: std::io::Error, authority: &str, warn: &LineSink) -> HttpError {
    match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(why)) => {
            warn(&format!(
                "https to `{authority}` refused: its certificate is not trusted ({why:?}); an operator can trust a \
                 private CA with {EXTRA_CA_ENV}=/path/ca.pem"
            ));
            HttpError::TlsCertificateError
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            HttpError::TlsAlertReceived { alert_id: Some(u8::from(*alert)), alert_message: Some(format!("{alert:?}")) }
        }
        _ => HttpError::Tls(err),
    }
}
