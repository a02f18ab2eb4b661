//! One HTTP/1.1 exchange over a connection already made and checked: the
//! request goes out, the response comes back with the guest's timeouts
//! (first byte, between bytes) applied. Mirrors wasmtime-wasi-http's
//! default client, minus its own connecting.

use super::Sent;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::rt::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// wasmtime-wasi-http's default for a response's first byte and the gaps between later ones.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends `request` over `io` and returns the response as it starts to arrive.
pub async fn exchange<T>(
    io: T,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    handshake_limit: Duration,
) -> Result<Sent, HttpError>
where
    T: Read + Write + Send + Unpin + 'static,
{
    let first_byte = options.and_then(|o| o.first_byte_timeout).unwrap_or(DEFAULT_READ_TIMEOUT);
    // Tokio panics on a zero interval; a nanosecond is as good as zero.
    let between_bytes =
        options.and_then(|o| o.between_bytes_timeout).unwrap_or(DEFAULT_READ_TIMEOUT).max(Duration::from_nanos(1));
    let (mut sender, connection) =
        tokio::time::timeout(handshake_limit, hyper::client::conn::http1::Builder::new().handshake(io))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
    // The request line carries the path only: scheme and authority are for proxies.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() =
        http::Uri::builder().path_and_query(path).build().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let mut connection = Some(connection);
    let mut sending = Box::pin(tokio::time::timeout(first_byte, sender.send_request(request)));
    // Drive the connection while waiting for the response, as hyper needs.
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = sending.as_mut().poll(cx) {
            return Poll::Ready(outcome.map_err(|_| HttpError::ConnectionReadTimeout)?.map_err(HttpError::from));
        }
        let Some(driving) = connection.as_mut() else { return Poll::Pending };
        let ended = ready!(Pin::new(driving).poll(cx));
        connection = None;
        match ended {
            Ok(()) => match sending.as_mut().poll(cx) {
                Poll::Ready(outcome) => {
                    Poll::Ready(outcome.map_err(|_| HttpError::ConnectionReadTimeout)?.map_err(HttpError::from))
                }
                Poll::Pending => Poll::Pending,
            },
            Err(err) => Poll::Ready(Err(HttpError::from(err))),
        }
    })
    .await?;
    let mut gap = tokio::time::interval(between_bytes);
    gap.reset();
    let response = response.map(|incoming| TimedBody { incoming, gap }.boxed_unsync());
    let rest = async move {
        match connection {
            None => Ok(()),
            Some(connection) => connection
                .await
                .map_err(|err| if err.is_timeout() { HttpError::HttpResponseTimeout } else { HttpError::from(err) }),
        }
    };
    Ok((response, Box::new(rest)))
}

/// A response body that fails when no frame arrives for longer than the gap allowed.
struct TimedBody {
    incoming: hyper::body::Incoming,
    gap: tokio::time::Interval,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => {
                Poll::Ready(Some(Err(if err.is_timeout() { HttpError::HttpResponseTimeout } else { err.into() })))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.gap.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.gap.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
