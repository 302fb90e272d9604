//! What a Messages API request showed the model, as plain text, and small parsers for the
//! facts a scripted model needs from it (a message id, a sender).

use serde_json::Value;

/// The text of one content value (a string, or an array of blocks).
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(block_text)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn block_text(b: &Value) -> String {
    match b.get("type").and_then(Value::as_str) {
        Some("text") => b
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        Some("tool_result") => {
            let inner = b.get("content").map(content_text).unwrap_or_default();
            let err = if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                " (error)"
            } else {
                ""
            };
            format!("[tool_result{err}] {inner}")
        }
        Some("tool_use") => format!(
            "[tool_use {}] {}",
            b.get("name").and_then(Value::as_str).unwrap_or("?"),
            b.get("input").cloned().unwrap_or(Value::Null)
        ),
        _ => String::new(),
    }
}

/// Everything in a request: system prompt and all messages, flattened.
pub fn all_text(body: &Value) -> String {
    let mut out = vec![];
    if let Some(sys) = body.get("system") {
        out.push(content_text(sys));
    }
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        for m in msgs {
            if let Some(c) = m.get("content") {
                out.push(content_text(c));
            }
        }
    }
    out.join("\n")
}

/// The messages only (no system prompt), flattened.
pub fn messages_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| m.get("content").map(content_text))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The text after the last assistant message: what was added for the model since it last
/// spoke (tool results, hook context, Stop feedback, the user's prompt).
pub fn latest_user_text(body: &Value) -> String {
    let Some(msgs) = body.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let start = msgs
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        .map(|i| i + 1)
        .unwrap_or(0);
    msgs[start..]
        .iter()
        .filter_map(|m| m.get("content").map(content_text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Cuts `s` to at most `max` bytes (on a char boundary), marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &s[..end], s.len() - end)
}

/// The integers that follow `key` in `text` (after optional quotes, `:`, `=`, `#` and
/// spaces), in order of appearance. `numbers_after("message_id: 12 … message_id=13",
/// "message_id")` is `[12, 13]`.
pub fn numbers_after(text: &str, key: &str) -> Vec<i64> {
    let lower = text.to_ascii_lowercase();
    let key = key.to_ascii_lowercase();
    let mut out = vec![];
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&key) {
        let after = from + pos + key.len();
        let rest = &lower[after..];
        let skipped = rest
            .char_indices()
            .find(|(_, c)| !matches!(c, '"' | '\'' | ':' | '=' | '#' | ' ' | '`' | '\\'))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let digits: String = rest[skipped..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
        from = after;
    }
    out
}

/// The last integer that follows any of `keys` in `text`.
pub fn last_number_after(text: &str, keys: &[&str]) -> Option<i64> {
    let lower = text.to_ascii_lowercase();
    keys.iter()
        .filter_map(|k| {
            let k = k.to_ascii_lowercase();
            let nums = numbers_after(text, &k);
            let pos = lower.rfind(&k)?;
            nums.last().map(|n| (pos, *n))
        })
        .max_by_key(|(pos, _)| *pos)
        .map(|(_, n)| n)
}

/// A reply the shown text asks for: a JSON object with `"to"` and `"reply_to"`, as the hook
/// writes after each message (`call mcp__peers__send_message with {"to": …, "reply_to": …}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHint {
    pub to: String,
    pub reply_to: i64,
    /// The tool the text names for the reply: the last `mcp__…__send_message` word before
    /// the object, else the last `mcp__…` word on its line.
    pub tool: Option<String>,
}

/// The words starting with `mcp__` in `text` (letters, digits, `_`, `-`), in order.
pub fn tool_names(text: &str) -> Vec<String> {
    text.match_indices("mcp__")
        .filter(|(i, _)| {
            // Not the tail of a longer word.
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect()
        })
        .collect()
}

fn reply_tool(before: &str) -> Option<String> {
    if let Some(t) = tool_names(before)
        .into_iter()
        .rev()
        .find(|t| t.ends_with("__send_message"))
    {
        return Some(t);
    }
    let line = &before[before.rfind('\n').map_or(0, |n| n + 1)..];
    tool_names(line).pop()
}

/// Every JSON object in `text` that has a string `"to"` and an integer `"reply_to"`, in
/// order, without repeats.
pub fn reply_hints(text: &str) -> Vec<ReplyHint> {
    let mut out: Vec<ReplyHint> = vec![];
    for (i, _) in text.match_indices('{') {
        let mut it = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(Value::Object(o))) = it.next()
            && let (Some(to), Some(reply_to)) = (
                o.get("to").and_then(Value::as_str),
                o.get("reply_to").and_then(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                }),
            )
        {
            let hint = ReplyHint {
                to: to.to_string(),
                reply_to,
                tool: reply_tool(&text[..i]),
            };
            if !out.contains(&hint) {
                out.push(hint);
            }
        }
    }
    out
}

/// The ids of the `<peer-message id="N" …>` elements in `text`.
pub fn peer_message_ids(text: &str) -> Vec<i64> {
    numbers_after(text, "<peer-message id=")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_blocks_and_finds_the_latest_turn() {
        let body = json!({
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "out"}]},
                    {"type": "text", "text": "PostToolUse:Bash hook additional context: X"}
                ]}
            ]
        });
        let all = all_text(&body);
        assert!(all.contains("sys") && all.contains("hello") && all.contains("[tool_use Bash]"));
        let latest = latest_user_text(&body);
        assert!(latest.contains("[tool_result] out"));
        assert!(latest.contains("hook additional context: X"));
        assert!(!latest.contains("hello"));
    }

    #[test]
    fn numbers_follow_keys() {
        assert_eq!(
            numbers_after(r#"{"message_id": 12} and message_id=13"#, "message_id"),
            vec![12, 13]
        );
        assert_eq!(
            last_number_after("reply_to: 4 ... message id #7", &["reply_to", "message id"]),
            Some(7)
        );
        assert_eq!(last_number_after("nothing here", &["id"]), None);
        assert_eq!(
            last_number_after("Message #17 sent to beta@h", &["message #"]),
            Some(17)
        );
    }

    #[test]
    fn reply_hints_come_from_json_objects() {
        let t = r#"<peer-message id="5" from="alpha@h">hi {not json}</peer-message>
To reply to message 5, call mcp__peers__send_message with {"to": "alpha@h", "reply_to": 5, "message": "<your reply>"}."#;
        assert_eq!(
            reply_hints(t),
            vec![ReplyHint {
                to: "alpha@h".into(),
                reply_to: 5,
                tool: Some("mcp__peers__send_message".into()),
            }]
        );
        let plugin =
            r#"reply with mcp__plugin_peers_peers__send_message: {"to": "a@h", "reply_to": 6}"#;
        assert_eq!(
            reply_hints(plugin)[0].tool.as_deref(),
            Some("mcp__plugin_peers_peers__send_message")
        );
        assert_eq!(reply_hints(r#"{"to": "a", "reply_to": 1}"#)[0].tool, None);
        let apart = "reply with mcp__x__send_message.\nlater: mcp__x__check_messages\n{\"to\": \"a\", \"reply_to\": 2}";
        assert_eq!(
            reply_hints(apart)[0].tool.as_deref(),
            Some("mcp__x__send_message")
        );
        assert_eq!(peer_message_ids(t), vec![5]);
    }
}
