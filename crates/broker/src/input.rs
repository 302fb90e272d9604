//! What the broker accepts from callers, beyond the JSON shape: one-line fields without
//! control characters, notice kinds only the broker raises. (The names no session may take
//! are `peers_core::identity::is_reserved_name`'s.)

use peers_core::wire::RegisterRequest;

/// A peer-controlled one-line field (summary, host, cwd, branch, tty, notice text) as the
/// broker stores it: newlines and tabs become spaces; other control characters (C0, DEL,
/// C1 — so no terminal escape sequence survives) and bidirectional overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C) are dropped; the ends are trimmed.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                out.push(' ')
            }
            c if c.is_control() => {}
            '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{061c}' => {}
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// Refuses a field holding NUL (U+0000). Bodies and names are stored as they are (not
/// cleaned like one-line fields), and no backend stores NUL the same way: PostgreSQL's text
/// cannot hold it at all. A clear 400 naming the field beats a changed body or a 500.
pub fn no_nul(field: &str, value: &str) -> Result<(), crate::error::ApiError> {
    match value.find('\0') {
        None => Ok(()),
        Some(at) => Err(crate::error::ApiError::bad_request(format!(
            "`{field}` holds a NUL character (U+0000) at byte {at}; remove it and send again"
        ))),
    }
}

/// [`one_line`] over an optional field; an empty result is no value.
pub fn one_line_opt(s: Option<String>) -> Option<String> {
    s.map(|s| one_line(&s)).filter(|s| !s.is_empty())
}

/// A registration with every one-line field cleaned.
pub fn registration(req: RegisterRequest) -> RegisterRequest {
    RegisterRequest {
        session_id: one_line_opt(req.session_id),
        machine_id: one_line(&req.machine_id),
        host: one_line(&req.host),
        cwd: one_line(&req.cwd),
        git_root: one_line_opt(req.git_root),
        git_branch: one_line_opt(req.git_branch),
        tty: one_line_opt(req.tty),
        summary: one_line_opt(req.summary).map(|s| s.chars().take(500).collect()),
        previous_name: one_line_opt(req.previous_name),
        ..req
    }
}

/// Notice kinds the broker raises itself; nobody may post them.
pub const BROKER_NOTICE_KINDS: [&str; 6] = [
    "loop_budget",
    "storage_lost",
    "storage_full",
    "storage_unavailable",
    "storage_recovered",
    "storage_new",
];

pub use peers_store::BROKER_AUTHOR;

/// The tags of a send, checked and lowercase: at most `MAX_TAGS`, each 1–`MAX_TAG_LEN` of
/// `a-z 0-9 - _ . :` (after lowercasing); duplicates are dropped. A bad one is a clear 400.
pub fn tags(raw: &[String]) -> Result<Vec<String>, crate::error::ApiError> {
    use peers_core::wire::{MAX_TAG_LEN, MAX_TAGS};
    let bad = crate::error::ApiError::bad_request;
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for t in raw {
        let tag = t.trim().to_lowercase();
        let len = tag.chars().count();
        if len == 0 || len > MAX_TAG_LEN {
            return Err(bad(format!(
                "tag {:?} must be 1 to {MAX_TAG_LEN} characters",
                one_line(t)
            )));
        }
        if let Some(c) = tag
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.' | ':'))
        {
            return Err(bad(format!(
                "tag {:?} holds {c:?}: tags use only a-z, 0-9 and - _ . :",
                one_line(t)
            )));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(bad(format!(
            "{} tags; a message carries at most {MAX_TAGS}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bidi_overrides_go_newlines_become_spaces() {
        assert_eq!(
            one_line("\u{1b}[31mred\u{1b}[0m\nnext\r\tline\u{7}\u{7f}\u{9b}2J"),
            "[31mred[0m next  line2J"
        );
        assert_eq!(one_line("abc\u{202e}fed\u{2066}x\u{2069}"), "abcfedx");
        assert_eq!(
            one_line("  plain text, ünïcode ✓  "),
            "plain text, ünïcode ✓"
        );
        assert_eq!(one_line_opt(Some("\u{1b}\n".into())), None);
    }
}
