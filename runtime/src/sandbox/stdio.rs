//! Guest stdout and stderr as log lines: bytes are cut into lines and each
//! line goes to the run's log as it completes, up to a byte budget. Once the
//! log wants no more, further bytes are dropped unread, so a guest printing
//! gigabytes costs the host a copy, not a scan.

use bytes::Bytes;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Where finished lines go; it answers whether it wants more.
pub type LineSink = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Longest line kept; longer lines are cut with a marker.
const MAX_LINE_BYTES: usize = 16 << 10;

/// `line` as the log keeps it: a line longer than stdout's is cut (at a
/// character boundary) and says so.
pub fn cap_line(line: &str) -> Cow<'_, str> {
    if line.len() <= MAX_LINE_BYTES {
        return Cow::Borrowed(line);
    }
    let mut end = MAX_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{} [line cut at 16 KiB]", &line[..end]))
}

/// One guest output stream (stdout or stderr) of one instance.
#[derive(Clone)]
pub struct LogStream {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    pending: Vec<u8>,
    sink: LineSink,
    full: bool,
}

impl LogStream {
    /// A stream whose lines go to `sink`.
    pub fn new(sink: LineSink) -> Self {
        Self { inner: Arc::new(Mutex::new(LineBuffer { pending: Vec::new(), sink, full: false })) }
    }
}

impl LineBuffer {
    fn write(&mut self, mut bytes: &[u8]) {
        if self.full {
            return;
        }
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            self.push(&bytes[..newline]);
            self.emit();
            bytes = &bytes[newline + 1..];
        }
        self.push(bytes);
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
        self.pending.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if bytes.len() > room {
            self.emit();
            self.send("[line cut at 16 KiB]");
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end_matches('\r');
        // Blank lines carry nothing in a log.
        if !line.trim().is_empty() && !self.full && !(self.sink)(line) {
            self.full = true;
        }
        self.pending.clear();
    }

    fn send(&mut self, line: &str) {
        if !self.full && !(self.sink)(line) {
            self.full = true;
        }
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.inner.lock().expect("log stream lock").write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.inner.lock().expect("log stream lock").write(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collecting() -> (LogStream, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = lines.clone();
        let stream = LogStream::new(Arc::new(move |line: &str| {
            let mut lines = sink_lines.lock().unwrap();
            lines.push(line.to_string());
            lines.len() < 3
        }));
        (stream, lines)
    }

    #[test]
    fn bytes_become_lines_and_the_tail_is_flushed_on_drop() {
        let (mut stream, lines) = collecting();
        stream.write(Bytes::from_static(b"hel")).unwrap();
        stream.write(Bytes::from_static(b"lo\r\n\nworld\npartial")).unwrap();
        assert_eq!(*lines.lock().unwrap(), vec!["hello", "world"]);
        drop(stream);
        assert_eq!(*lines.lock().unwrap(), vec!["hello", "world", "partial"]);
    }

    #[test]
    fn once_the_sink_is_full_further_bytes_are_dropped() {
        let (mut stream, lines) = collecting();
        stream.write(Bytes::from_static(b"one\ntwo\nthree\nfour\nfive\n")).unwrap();
        assert_eq!(*lines.lock().unwrap(), vec!["one", "two", "three"]);
    }

    #[test]
    fn a_log_line_is_cut_like_an_output_line_at_a_character_boundary() {
        assert_eq!(cap_line("short"), "short");
        let long = format!("a{}", "é".repeat(MAX_LINE_BYTES));
        let cut = cap_line(&long);
        assert!(cut.ends_with("é [line cut at 16 KiB]"), "{}", &cut[cut.len() - 40..]);
        assert!(cut.len() <= MAX_LINE_BYTES + " [line cut at 16 KiB]".len());
    }

    #[test]
    fn overlong_lines_are_cut_with_a_marker() {
        let (mut stream, lines) = collecting();
        stream.write(Bytes::from(vec![b'x'; MAX_LINE_BYTES + 10])).unwrap();
        let lines = lines.lock().unwrap();
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "[line cut at 16 KiB]");
    }
}
