//! The tools' arguments as the model sends them. Their doc comments are the parameter docs
//! the model reads (JSON Schema descriptions), written with `{tool}` placeholders like the
//! descriptions in `texts.rs`.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::Deserialize;

/// A message id as the model may write it: `42`, `"42"` or `"#42"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct IdArg(pub serde_json::Value);

impl IdArg {
    pub fn parse(&self) -> Result<i64, String> {
        let bad = || {
            format!(
                "{} is not a message id: pass the number a sent message got, e.g. 42",
                self.0
            )
        };
        match &self.0 {
            serde_json::Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(bad),
            serde_json::Value::String(s) => s
                .trim()
                .trim_start_matches('#')
                .trim()
                .parse()
                .map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl JsonSchema for IdArg {
    fn schema_name() -> Cow<'static, str> {
        "MessageId".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["integer", "string"],
            "description": "A message id as returned by {send_message}, e.g. 42 (a number or a numeric string)."
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListPeersArgs {
    /// Which peers to list: "machine" (sessions on this computer), "directory" (same working
    /// directory), "repo" (same git repository) or "all" (default: also your other machines).
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendArgs {
    /// The recipient: a peer's name (e.g. "api"), "name@host" for a session on another
    /// machine, or its peer id (see {list_peers}); "#topic" for every subscriber of a topic
    /// (see {list_topics}); or "*" for every running session in `scope`.
    pub to: String,
    /// The message text; it is shown to the other session's model as it is.
    pub message: String,
    /// The id of the message this one answers, if it is a reply.
    #[serde(default)]
    pub reply_to: Option<IdArg>,
    /// Only with to "*": "repo" (default: sessions in your git repository), "directory",
    /// "machine" or "all".
    #[serde(default)]
    pub scope: Option<String>,
    /// Up to 8 labels to find it by later (each of a-z, 0-9, - _ . :), e.g. ["deploy"].
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SubscribeArgs {
    /// The topic, e.g. "myproj:events" or "#deploys" (a-z, 0-9, - _ : .).
    pub topic: String,
    /// Whether a post may wake this session when idle (default false: posts arrive at your
    /// next tool call, prompt or turn end).
    #[serde(default)]
    pub wake: Option<bool>,
    /// Stay subscribed but have nothing pushed (read it with {read_topic}).
    #[serde(default)]
    pub mute: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct HandoverArgs {
    /// The note: what you did, what is left, where to look. The next session reads it first.
    pub note: String,
    /// Whose next session gets it: a session name (on any of the user's machines) or
    /// name@host (on that machine only). Default: your own name, i.e. the next session here.
    #[serde(default)]
    pub to: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TopicArgs {
    /// The topic, e.g. "deploys" or "#deploys".
    pub topic: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadTopicArgs {
    /// The topic, e.g. "deploys" or "#deploys".
    pub topic: String,
    /// Only posts after this message id (the cursor the last read gave).
    #[serde(default)]
    pub since_id: Option<IdArg>,
    /// At most this many posts, the newest ones (default 20, at most 200).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusArgs {
    /// The id {send_message} returned.
    pub message_id: IdArg,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ThreadArgs {
    /// Any message of the thread: one you sent or got, or a topic post.
    pub message_id: IdArg,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// Words to find in message bodies and tags (all must match); "a phrase", OR, NOT,
    /// prefix*. Leave it out to list your newest history that passes the other filters.
    #[serde(default)]
    pub query: Option<String>,
    /// Only mail from this sender (a peer's name or name@host; "you" for your user).
    #[serde(default)]
    pub from: Option<String>,
    /// Only mail to this recipient (a peer's name or name@host).
    #[serde(default)]
    pub to: Option<String>,
    /// Only posts to this topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Only messages with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only mail sent from this project (a repository or directory name).
    #[serde(default)]
    pub project: Option<String>,
    /// Only messages sent within this long, e.g. "2h" or "7d".
    #[serde(default)]
    pub since: Option<String>,
    /// Only messages sent longer ago than this, e.g. "1h".
    #[serde(default)]
    pub until: Option<String>,
    /// Only messages in this state: "queued" (some copy still waits), "delivered" (every
    /// copy was) or "expired".
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many matches (default 20, at most 200).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SummaryArgs {
    /// One line on what this session is working on, shown to other peers in {list_peers}.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_from_numbers_and_strings() {
        let p = |v: serde_json::Value| IdArg(v).parse();
        assert_eq!(p(serde_json::json!(42)), Ok(42));
        assert_eq!(p(serde_json::json!("42")), Ok(42));
        assert_eq!(p(serde_json::json!(" #7 ")), Ok(7));
        assert_eq!(p(serde_json::json!(3.0)), Ok(3));
        assert!(
            p(serde_json::json!("abc"))
                .unwrap_err()
                .contains("not a message id")
        );
        assert!(p(serde_json::json!(1.5)).is_err());
        assert!(p(serde_json::json!(null)).is_err());
    }

    #[test]
    fn id_schema_allows_number_and_string() {
        let schema = schemars::schema_for!(StatusArgs);
        let v = serde_json::to_value(&schema).unwrap();
        assert_eq!(
            v["properties"]["message_id"]["type"],
            serde_json::json!(["integer", "string"])
        );
    }
}
