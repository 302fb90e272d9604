//! The JSON an agent CLI writes to a hook's stdin, reduced to what the hook needs, and which
//! client wrote it.
//!
//! Claude Code and Codex CLI share the event names (SessionStart, UserPromptSubmit,
//! PostToolUse, Stop); Codex adds `turn_id` (every event but SessionStart) and writes its
//! transcripts as `rollout-….jsonl`. Gemini CLI has its own names (BeforeAgent, AfterTool,
//! AfterAgent; SessionStart too) and gives hooks `GEMINI_SESSION_ID`. It also sets
//! `CLAUDE_PROJECT_DIR`, so that variable tells nothing. Where the input alone cannot tell
//! (a SessionStart without those marks), the agent `peers-mcp` recorded in the session file
//! decides ([`HookInput::client`]).

use peers_core::wire::Agent;
use serde::{Deserialize, Serialize};

/// The hook events this binary acts on, by what they mean (named as Claude Code names them);
/// everything else is ignored (exit 0, no output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SessionStart (every client).
    SessionStart,
    /// A prompt is submitted: UserPromptSubmit, Gemini's BeforeAgent.
    UserPromptSubmit,
    /// A tool just ran: PostToolUse, Gemini's AfterTool.
    PostToolUse,
    /// The turn is ending: Stop, Gemini's AfterAgent.
    Stop,
}

impl Event {
    /// The event of hook event `name` as sent by `client`; `None` for events it does not act
    /// on or that the client does not have.
    pub fn parse_for(client: Agent, name: &str) -> Option<Event> {
        match (client, name) {
            (_, "SessionStart") => Some(Event::SessionStart),
            (Agent::Claude | Agent::Codex, "UserPromptSubmit") => Some(Event::UserPromptSubmit),
            (Agent::Claude | Agent::Codex, "PostToolUse") => Some(Event::PostToolUse),
            (Agent::Claude | Agent::Codex, "Stop") => Some(Event::Stop),
            (Agent::Gemini, "BeforeAgent") => Some(Event::UserPromptSubmit),
            (Agent::Gemini, "AfterTool") => Some(Event::PostToolUse),
            (Agent::Gemini, "AfterAgent") => Some(Event::Stop),
            _ => None,
        }
    }

    /// The Claude Code and Codex event name.
    pub fn parse(name: &str) -> Option<Event> {
        Event::parse_for(Agent::Claude, name)
    }

    /// The `hook_event_name` of this event in `client`, also sent to the broker as the ack's
    /// `via`.
    pub fn name_for(self, client: Agent) -> &'static str {
        match (client, self) {
            (_, Event::SessionStart) => "SessionStart",
            (Agent::Gemini, Event::UserPromptSubmit) => "BeforeAgent",
            (Agent::Gemini, Event::PostToolUse) => "AfterTool",
            (Agent::Gemini, Event::Stop) => "AfterAgent",
            (_, Event::UserPromptSubmit) => "UserPromptSubmit",
            (_, Event::PostToolUse) => "PostToolUse",
            (_, Event::Stop) => "Stop",
        }
    }

    /// The Claude Code name.
    pub fn as_str(self) -> &'static str {
        self.name_for(Agent::Claude)
    }
}

/// Gemini CLI's event names (no other client has them).
const GEMINI_ONLY: [&str; 6] = [
    "BeforeAgent",
    "AfterAgent",
    "AfterTool",
    "BeforeTool",
    "BeforeModel",
    "AfterModel",
];

/// One hook invocation's input. Unknown fields are ignored, so newer clients that add fields
/// keep working.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
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
    /// Codex: the turn, on every event but SessionStart.
    #[serde(default)]
    pub turn_id: Option<String>,
    #[serde(default)]
    pub transcript_path: Option<String>,
}

impl HookInput {
    /// Parses stdin; `None` for anything that is not a JSON object with `hook_event_name`.
    pub fn parse(bytes: &[u8]) -> Option<HookInput> {
        serde_json::from_slice(bytes).ok()
    }

    /// The event, read as Claude Code's.
    pub fn event(&self) -> Option<Event> {
        Event::parse(&self.hook_event_name)
    }

    /// Which client wrote this input, when the input (and `GEMINI_SESSION_ID`, the value of
    /// that variable) shows it: Gemini's own event names or its variable, Codex's `turn_id`
    /// or its `rollout-*.jsonl` transcript. `None`: Claude Code or a Codex SessionStart
    /// outside the usual transcript place; the session file's agent decides.
    pub fn marked_client(&self, gemini_session_id: Option<&str>) -> Option<Agent> {
        if GEMINI_ONLY.contains(&self.hook_event_name.as_str())
            || gemini_session_id.is_some_and(|v| !v.trim().is_empty())
        {
            return Some(Agent::Gemini);
        }
        let rollout = self
            .transcript_path
            .as_deref()
            .and_then(|p| std::path::Path::new(p).file_name())
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("rollout-") && n.ends_with(".jsonl"));
        (self.turn_id.is_some() || rollout).then_some(Agent::Codex)
    }

    /// The client: the one the input shows ([`HookInput::marked_client`]), else `recorded`
    /// (the session file's agent).
    pub fn client(&self, gemini_session_id: Option<&str>, recorded: Agent) -> Agent {
        self.marked_client(gemini_session_id).unwrap_or(recorded)
    }

    /// The event as `client` names it.
    pub fn event_for(&self, client: Agent) -> Option<Event> {
        Event::parse_for(client, &self.hook_event_name)
    }
}

/// The value of `GEMINI_SESSION_ID` for this hook.
pub fn gemini_session_env() -> Option<String> {
    std::env::var("GEMINI_SESSION_ID").ok()
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

    // Recorded from Codex CLI 0.171.0 (`codex exec`, ../shared/AGENT_CLIS_FACTS.md).
    pub const CODEX_SESSION_START: &str = r#"{"session_id":"01a2","transcript_path":"/h/.codex/sessions/2026/12/01/rollout-2026-12-01T15-06-32-01a2.jsonl","cwd":"/p","hook_event_name":"SessionStart","model":"mock-model","permission_mode":"bypassPermissions","source":"startup"}"#;
    pub const CODEX_POST_TOOL_USE: &str = r#"{"session_id":"01a2","turn_id":"01a3","transcript_path":"/h/.codex/sessions/rollout-x.jsonl","cwd":"/p","hook_event_name":"PostToolUse","model":"mock-model","permission_mode":"bypassPermissions","tool_name":"Bash","tool_input":{"command":"echo hi"},"tool_response":"hi\n","tool_use_id":"call_1"}"#;
    pub const CODEX_STOP: &str = r#"{"session_id":"01a2","turn_id":"01a3","transcript_path":null,"cwd":"/p","hook_event_name":"Stop","model":"mock-model","permission_mode":"bypassPermissions","stop_hook_active":false,"last_assistant_message":"done"}"#;
    // Recorded from Gemini CLI 0.61.0 (`-p`).
    pub const GEMINI_SESSION_START: &str = r#"{"session_id":"cf4f","transcript_path":"/h/.gemini/tmp/proj/chats/session-2026-12-01T15-06-cf4fa8ec.jsonl","cwd":"/p","hook_event_name":"SessionStart","timestamp":"2026-12-01T15:06:48.040Z","source":"startup"}"#;
    pub const GEMINI_AFTER_TOOL: &str = r#"{"session_id":"cf4f","transcript_path":"/t.jsonl","cwd":"/p","hook_event_name":"AfterTool","timestamp":"2026-12-01T15:06:48.638Z","tool_name":"run_shell_command","tool_input":{"command":"echo hi"},"tool_response":{"llmContent":"<untrusted_context>\nOutput: hi\n</untrusted_context>","returnDisplay":"hi"}}"#;
    pub const GEMINI_AFTER_AGENT: &str = r#"{"session_id":"cf4f","transcript_path":"/t.jsonl","cwd":"/p","hook_event_name":"AfterAgent","timestamp":"2026-12-01T15:06:48.828Z","prompt":"say hi","prompt_response":"done","stop_hook_active":false}"#;

    #[test]
    fn each_client_is_recognised() {
        let parse = |s: &str| HookInput::parse(s.as_bytes()).unwrap();
        let cases = [
            (
                SESSION_START,
                None,
                Agent::Claude,
                Some(Event::SessionStart),
            ),
            (POST_TOOL_USE, None, Agent::Claude, Some(Event::PostToolUse)),
            (STOP, None, Agent::Claude, Some(Event::Stop)),
            (
                CODEX_SESSION_START,
                None,
                Agent::Codex,
                Some(Event::SessionStart),
            ),
            (
                CODEX_POST_TOOL_USE,
                None,
                Agent::Codex,
                Some(Event::PostToolUse),
            ),
            (CODEX_STOP, None, Agent::Codex, Some(Event::Stop)),
            (
                GEMINI_SESSION_START,
                Some("cf4f"),
                Agent::Gemini,
                Some(Event::SessionStart),
            ),
            (
                GEMINI_AFTER_TOOL,
                Some("cf4f"),
                Agent::Gemini,
                Some(Event::PostToolUse),
            ),
            (
                GEMINI_AFTER_TOOL,
                None,
                Agent::Gemini,
                Some(Event::PostToolUse),
            ),
            (
                GEMINI_AFTER_AGENT,
                Some("cf4f"),
                Agent::Gemini,
                Some(Event::Stop),
            ),
        ];
        for (input, env, client, event) in cases {
            let i = parse(input);
            // The session file says Claude Code: the input's marks win.
            assert_eq!(i.client(env, Agent::Claude), client, "{input}");
            assert_eq!(i.event_for(client), event, "{input}");
        }
        // A SessionStart with no mark: the session file decides (CLAUDE_PROJECT_DIR, which
        // Gemini sets too, plays no part).
        let plain = parse(SESSION_START);
        assert_eq!(plain.client(None, Agent::Codex), Agent::Codex);
        assert_eq!(plain.client(Some(""), Agent::Claude), Agent::Claude);
        // Events a client does not have are not ours.
        assert_eq!(parse(GEMINI_AFTER_TOOL).event_for(Agent::Claude), None);
        assert_eq!(parse(POST_TOOL_USE).event_for(Agent::Gemini), None);
        let before_model = parse(r#"{"hook_event_name":"BeforeModel","session_id":"x"}"#);
        assert_eq!(before_model.client(None, Agent::Claude), Agent::Gemini);
        assert_eq!(before_model.event_for(Agent::Gemini), None);
        let pre = parse(r#"{"hook_event_name":"PreToolUse","turn_id":"t"}"#);
        assert_eq!(pre.event_for(pre.client(None, Agent::Claude)), None);
        for e in [
            Event::SessionStart,
            Event::UserPromptSubmit,
            Event::PostToolUse,
            Event::Stop,
        ] {
            for a in Agent::ALL {
                assert_eq!(Event::parse_for(a, e.name_for(a)), Some(e));
            }
        }
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
