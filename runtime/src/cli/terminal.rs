//! Guest text on the operator's terminal. Log lines, messages and results
//! come from guests; a control character in them (an escape sequence, a
//! carriage return, a NUL, a newline forging another line) or a bidi
//! override reaches the terminal escaped, never raw.

use std::borrow::Cow;

/// `text` with every control character and bidi control shown as an escape
/// (`\u{1b}`, `\r`, `\n`), so it prints as itself on one line.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

fn needs_escape(c: char) -> bool {
    // C0, DEL and C1 controls, and the bidi embeddings, overrides and isolates.
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_kept() {
        assert!(matches!(printable("Hello Leo! é ✓"), Cow::Borrowed(_)));
        assert_eq!(printable("a\x1b[2J\x1b]0;pwned\x07b"), "a\\u{1b}[2J\\u{1b}]0;pwned\\u{7}b");
        assert_eq!(printable("fake\r\n12:00 | INFO | ok\0"), "fake\\r\\n12:00 | INFO | ok\\u{0}");
        assert_eq!(printable("\u{9b}31m \u{202e}txt"), "\\u{9b}31m \\u{202e}txt");
        assert_eq!(printable("tab\there"), "tab\\there");
    }
}
