//! Text from peers (bodies, summaries, names, notices) made safe to print on the human's
//! terminal: no escape sequence, carriage return or direction override reaches it.

/// `s` with every control character except newline and tab, and every bidirectional
/// control, written as a visible `\u{…}` escape.
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// [`safe`] on one line: newlines and tabs become spaces too.
pub fn safe_line(s: &str) -> String {
    safe(s).replace(['\n', '\t'], " ")
}

/// `s` made [`safe`], each line indented by `indent`.
pub fn indented(s: &str, indent: &str) -> String {
    let s = safe(s);
    let body = s.strip_suffix('\n').unwrap_or(&s);
    body.split('\n')
        .map(|l| format!("{indent}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_made_visible() {
        assert_eq!(
            safe("a\u{1b}[2Jb\r\nc\td\u{7}\u{9b}e\u{202e}f"),
            "a\\u{1b}[2Jb\\u{d}\nc\td\\u{7}\\u{9b}e\\u{202e}f"
        );
        assert_eq!(safe_line("one\ntwo\tthree"), "one two three");
        assert_eq!(indented("x\ny\n", "  "), "  x\n  y");
        assert_eq!(safe("grüß dich ✓"), "grüß dich ✓");
    }
}
