//! Reads Server-Sent Events from a streamed HTTP response, as the API's
//! followed logs send them: `event:` and `data:` lines, an event per blank
//! line (comments and keep-alives ignored).

/// One event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` name (`message` when it had none).
    pub name: String,
    /// Its `data:` lines, joined by newlines.
    pub data: String,
}

/// Longest event accepted: a server sending more without a blank line is not speaking SSE.
const MAX_EVENT_BYTES: usize = 16 << 20;

/// Events of one response, in order.
pub struct EventReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventReader {
    /// Reads events from `response`'s body.
    pub fn new(response: reqwest::Response) -> Self {
        Self { response, buffer: Vec::new() }
    }

    /// The next event; `None` when the body ended.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(event) = take_event(&mut self.buffer) {
                if let Some(event) = event {
                    return Ok(Some(event));
                }
                continue;
            }
            if self.buffer.len() > MAX_EVENT_BYTES {
                return Err("an event larger than 16 MiB".into());
            }
            match self.response.chunk().await.map_err(|e| e.to_string())? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// Takes one blank-line-terminated block from `buffer`: `None` when none is
/// complete yet, `Some(None)` for a block with no data (a comment, a keep-alive).
fn take_event(buffer: &mut Vec<u8>) -> Option<Option<SseEvent>> {
    // A chunk may end inside a character: look only at the whole ones.
    let text = match std::str::from_utf8(buffer) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&buffer[..err.valid_up_to()]).unwrap_or_default(),
    };
    let text_end = text.find("\n\n").or_else(|| text.find("\r\n\r\n"))?;
    let separator = if text[text_end..].starts_with("\r\n\r\n") { 4 } else { 2 };
    let block = text[..text_end].to_string();
    buffer.drain(..text_end + separator);
    let mut event = SseEvent { name: "message".into(), data: String::new() };
    let mut has_data = false;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.name = value.to_string(),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    Some(has_data.then_some(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_become_events_and_comments_are_skipped() {
        let mut buffer =
            b": keep-alive\n\nevent: log\nid: 3\ndata: {\"a\":1}\n\nevent: end\ndata: x\ndata: y\n\nevent: pa".to_vec();
        assert_eq!(take_event(&mut buffer), Some(None));
        assert_eq!(take_event(&mut buffer), Some(Some(SseEvent { name: "log".into(), data: "{\"a\":1}".into() })));
        assert_eq!(take_event(&mut buffer), Some(Some(SseEvent { name: "end".into(), data: "x\ny".into() })));
        assert_eq!(take_event(&mut buffer), None, "an unfinished block waits for more");
        assert_eq!(buffer, b"event: pa");
    }
}
