//! Text an upstream (or a browser on its behalf) wrote — `error_description`, API error
//! messages — made safe to show and to log: control characters (a newline could start a forged
//! log line) and bidirectional overrides (which reorder what a reader sees) are replaced, and the
//! length is bounded. Log it as a quoted field (`?text`) as well.

/// `text` with line breaks and tabs as spaces, other control and bidi-formatting characters as
/// U+FFFD, cut to `max_chars` characters (an ellipsis marks the cut).
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        out.push(match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || is_bidi_format(c) => '\u{fffd}',
            c => c,
        });
    }
    out
}

/// Unicode's explicit directional formatting characters (and the zero-width ones next to them).
fn is_bidi_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn line_breaks_controls_and_bidi_overrides_do_not_survive() {
        assert_eq!(printable("a\nb\r\nc\td", 100), "a b  c d");
        assert_eq!(printable("esc\u{1b}[31mred", 100), "esc\u{fffd}[31mred");
        assert_eq!(printable("user\u{202e}nimda", 100), "user\u{fffd}nimda");
        assert_eq!(printable("Zürich – ok", 100), "Zürich – ok");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("abc", 3), "abc");
    }
}
