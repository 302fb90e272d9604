//! The JSON Claude Code writes to a hook's stdin, reduced to what the hook needs.

use serde::Deserialize;

/// The hook events this binary acts on; everything else is ignored (exit 0, no output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    SessionStart,
    UserPromptSubmit,
    PostToolUse,
    Stop,
}

impl Event {
    pub fn parse(name: &str) -> Option<Event> {
        match name {
            "SessionStart" => Some(Event::SessionStart),
            "UserPromptSubmit" => Some(Event::UserPromptSubmit),
            "PostToolUse" => Some(Event::PostToolUse),
            "Stop" => Some(Event::Stop),
            _ => None,
        }
    }

    /// The `hook_event_name`, also sent to the broker as the ack's `via`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::SessionStart => "SessionStart",
            Event::UserPromptSubmit => "UserPromptSubmit",
            Event::PostToolUse => "PostToolUse",
            Event::Stop => "Stop",
        }
    }
}

/// One hook invocation's input. Unknown fields are ignored, so newer clients that add fields
/// keep working.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct HookInput {
    pub hook_event_name: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// SessionStart: `startup`, `resume`, `clear` or `compact`.
    #[serde(default)]
    pub source: Option<String>,
    /// PostToolUse: the tool that just ran.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// Stop: the turn already continues because a Stop hook blocked.
    #[serde(default)]
    pub stop_hook_active: bool,
}

impl HookInput {
    /// Parses stdin; `None` for anything that is not a JSON object with `hook_event_name`.
    pub fn parse(bytes: &[u8]) -> Option<HookInput> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn event(&self) -> Option<Event> {
        Event::parse(&self.hook_event_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The recorded inputs of Claude Code 2.1.328 (../shared/CLAUDE_CODE_FACTS.md).
    pub const SESSION_START: &str = r#"{"session_id":"b00e","transcript_path":"/t/b00e.jsonl","cwd":"/home/me/proj","hook_event_name":"SessionStart","source":"startup"}"#;
    pub const POST_TOOL_USE: &str = r#"{"session_id":"s","cwd":"/c","prompt_id":"p","permission_mode":"default","effort":{"level":"medium"},"hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"echo hi","description":"say hi"},"tool_response":{"stdout":"hi","stderr":"","interrupted":false,"isImage":false,"noOutputExpected":false},"tool_use_id":"toolu_1","duration_ms":60}"#;
    pub const STOP: &str = r#"{"session_id":"s","cwd":"/c","hook_event_name":"Stop","stop_hook_active":true,"last_assistant_message":"done one","background_tasks":[],"session_crons":[]}"#;

    #[test]
    fn recorded_inputs_parse() {
        let s = HookInput::parse(SESSION_START.as_bytes()).unwrap();
        assert_eq!(s.event(), Some(Event::SessionStart));
        assert_eq!(s.source.as_deref(), Some("startup"));
        let p = HookInput::parse(POST_TOOL_USE.as_bytes()).unwrap();
        assert_eq!(p.event(), Some(Event::PostToolUse));
        assert_eq!(p.tool_name.as_deref(), Some("Bash"));
        assert!(!p.stop_hook_active);
        let st = HookInput::parse(STOP.as_bytes()).unwrap();
        assert_eq!(st.event(), Some(Event::Stop));
        assert!(st.stop_hook_active);
        let u = HookInput::parse(
            br#"{"session_id":"s","cwd":"c","prompt_id":"p","permission_mode":"default","hook_event_name":"UserPromptSubmit","prompt":"hello there"}"#,
        )
        .unwrap();
        assert_eq!(u.event(), Some(Event::UserPromptSubmit));
    }

    #[test]
    fn garbage_and_other_events_are_not_ours() {
        assert_eq!(HookInput::parse(b""), None);
        assert_eq!(HookInput::parse(b"not json"), None);
        assert_eq!(HookInput::parse(b"[1,2]"), None);
        assert_eq!(HookInput::parse(br#"{"cwd":"/x"}"#), None);
        assert_eq!(HookInput::parse(br#"{"hook_event_name":7}"#), None);
        let pre = HookInput::parse(br#"{"hook_event_name":"PreToolUse"}"#).unwrap();
        assert_eq!(pre.event(), None);
    }
}
