//! Every text the tools show the model that is not mail (mail and peer lists are rendered by
//! `peers_core::render`): the tool descriptions, the server instructions and the result
//! texts. Descriptions (and the parameter docs in `args.rs`) are written with `{tool}`
//! placeholders that [`ToolNames::fill`] replaces when the server starts; result texts take
//! the [`ToolNames`] they name.

use std::fmt::Display;

use peers_core::render::{self, ToolNames, ago};
use peers_core::wire::{HANDOVER_CHANNEL, MessageState, MessageStatus, SendResponse};
use peers_core::{ClientError, format_ms};

use crate::peer::{Facts, Registration};

pub const WHOAMI: &str = "peers: who am I? Returns this Claude Code session's own peer name \
        (name@host), peer id, and how other Claude Code sessions on this machine or your other \
        machines address it. Use it before telling another session how to reach you.";

pub const LIST_PEERS: &str = "peers: list the other running Claude Code sessions (peers) on this \
        machine or on your other machines, with name@host, working directory, repository, \
        summary, last seen and mail waiting for them. Use it to find whom to message with \
        {send_message}. Not the built-in ListAgents (that lists subagents/teammates).";

pub const SEND_MESSAGE: &str = "peers: send a message to another Claude Code session (a peer) on this \
        machine or on your other machines, by its name, name@host or peer id; to every \
        subscriber of a \"#topic\"; or to \"*\", every running session in a scope. The text is \
        injected into each recipient's context at its next hook event (tool call, prompt, turn \
        end) or wakes it when idle, if it can be woken (the result says). Returns the message \
        id for {message_status}. Not the built-in SendMessage (that is for subagents/teammates).";

pub const SUBSCRIBE: &str = "peers: subscribe this Claude Code session to a topic (e.g. \"myproj:events\"), \
        created if new: posts to it then reach your context like direct mail. wake: true lets a \
        post wake you when idle; mute: true keeps the subscription but pushes nothing. The next \
        session with your name in this directory keeps it.";

pub const HANDOVER: &str = "peers: leave a note for the NEXT Claude Code session (not a running \
        one): by default the next session with your name (the next one in this directory), or `to` \
        (a name, or name@host for one machine). It is shown once, first, when that session \
        starts.";

pub const UNSUBSCRIBE: &str = "peers: take this Claude Code session off a topic; its posts stop \
        reaching you ({read_topic} still reads them).";

pub const LIST_TOPICS: &str = "peers: list the topics the user's Claude Code sessions post to, with \
        subscriber and post counts, the last post, and whether this session is subscribed.";

pub const READ_TOPIC: &str = "peers: read the posts Claude Code sessions made to a topic, including those from before you \
        subscribed, oldest first; since_id pages forward. Reading does not change what is \
        pushed to you.";

pub const READ_THREAD: &str = "peers: read a whole conversation between Claude Code sessions: \
        the message message_id belongs to, what it answers and every reply (topic posts \
        included), in order, each with its text, sender, recipients, time and delivery state.";

pub const SEARCH_MESSAGES: &str = "peers: search the mail of this Claude Code session — what \
        you sent, got, and posts to topics you are subscribed to — by words in bodies and tags, \
        or without a query list its newest history; filters from, to, topic, tag, project, \
        since, until, status. Each match has a snippet, its id and its thread ({read_thread} \
        reads it whole).";

pub const MESSAGE_STATUS: &str = "peers: delivery status of a message you sent to another Claude Code \
        session: queued (waiting; is the recipient running?), delivered (when, by which hook \
        event) or expired, plus the ids of replies. Pass the message_id {send_message} returned.";

pub const SET_SUMMARY: &str = "peers: set the one-line summary other Claude Code sessions see for this \
        session in {list_peers} (what you are working on). Update it when your task changes.";

pub const CHECK_MESSAGES: &str = "peers: fetch messages other Claude Code sessions sent you that have not \
        reached your context yet. Rarely needed: peer mail is normally injected into your \
        context by itself (hooks); use this only if told mail is waiting or to check by hand.";

/// Who this session is and how peer mail works, for the model; `reg` is `None` while the
/// session is not registered yet.
pub fn instructions(reg: Option<&Registration>, tools: &ToolNames) -> String {
    let who = match reg {
        Some(r) => {
            let mut w = format!(
                "You are `{}` (`{}` on this machine; id {}).",
                r.address, r.name, r.peer_id
            );
            if r.inherited_messages > 0 {
                w.push_str(&format!(
                    " {} message(s) sent to this name before this session started wait for you \
                     and arrive shortly.",
                    r.inherited_messages
                ));
            }
            w
        }
        None => tools.fill(
            "This session is not registered with the peers broker yet (it keeps trying); \
             {whoami} shows your name once it is.",
        ),
    };
    instructions_text(&who, tools)
}

/// The instructions around `who`.
pub fn instructions_text(who: &str, tools: &ToolNames) -> String {
    let rest = tools.fill(
        "Peer mail reaches your context by itself (after a tool call, at turn end, or by waking \
         you) as data from other agents: don't poll. {list_peers}: find sessions. \
         {send_message}: write to one, a #topic or * (reply_to answers). {message_status}: \
         delivered? {subscribe}/{list_topics}/{read_topic}: topics. {set_summary}: what you work \
         on. {whoami}: your address. {check_messages}: manual fallback. Not the built-in \
         SendMessage/ListAgents (subagents, teammates).",
    );
    format!(
        "peers: mail between this Claude Code session and the user's other sessions (peers), on \
         this and their other machines. {who} {rest}"
    )
}

/// `what` failed for a reason that says it all.
pub fn failed(what: &str, reason: impl Display) -> String {
    format!("{what} failed: {reason}")
}

/// A failure of the broker itself (unreachable, not registered).
pub fn broker_trouble(what: &str, detail: &str, remote: bool) -> String {
    let hint = if remote {
        "This session uses a remote peers hub; it may be down or unreachable from here. \
         Tell the human, and try again later."
    } else {
        "peers-mcp tried to start the local broker and it did not come up. Tell the human \
         to run `peers doctor` (or `peers broker start`), then try again."
    };
    format!("{what} failed: the peers broker is not available ({detail}). {hint}")
}

/// The session's token is no longer accepted and registering again failed.
pub fn registration_lost(what: &str, reason: &str) -> String {
    format!(
        "{what} failed: this session lost its registration with the peers broker and \
         could not register again ({reason}). Tell the human; restarting Claude Code's \
         MCP servers (/mcp) usually fixes it."
    )
}

pub const WHOAMI_NOT_REGISTERED: &str =
    "whoami failed: not registered with the peers broker; try again.";

/// `whoami`'s answer; `queued` is the mail waiting, when the heartbeat went through.
pub fn whoami(reg: &Registration, f: &Facts, queued: Option<u64>) -> String {
    let mut text = format!(
        "You are `{addr}` (peer id {id}), a Claude Code session registered with peers.\n\
         Other sessions address you as `{name}` from this machine ({host}), as `{addr}` from \
         any machine, or by the id {id}.\n\
         Working directory: {cwd}",
        addr = reg.address,
        id = reg.peer_id,
        name = reg.name,
        host = f.host,
        cwd = f.cwd.display()
    );
    if let Some(root) = &f.git_root {
        text.push_str(&format!("\nGit repository: {}", root.display()));
    }
    if let Some(b) = &f.git_branch {
        text.push_str(&format!(" (branch {b})"));
    }
    text.push_str(&format!(
        "\nClaude Code pid: {}\nBroker: {}",
        f.claude_pid,
        reg.client.base_url()
    ));
    if let Some(queued) = queued {
        text.push_str(&format!(
            "\nMail waiting for you: {queued} (it is delivered into your context by itself)."
        ));
    }
    text
}

pub fn empty_recipient(tools: &ToolNames) -> String {
    format!(
        "send_message failed: `to` is empty. Pass a peer name (see {}).",
        tools.list()
    )
}

pub const EMPTY_MESSAGE: &str =
    "send_message failed: the message is empty. Write the text to send.";

pub fn oversize_text(len: usize, max: usize) -> String {
    format!(
        "send_message failed: the message is {len} bytes, over the limit of {max} bytes; \
         nothing was sent. Shorten it, split it into several messages, or write the content to \
         a file the other session can read and send the path."
    )
}

/// The broker refused the message as too large.
pub fn too_large(e: &ClientError) -> String {
    format!(
        "send_message failed: the message is too large ({e}). Shorten it, split it \
         into several messages, or write the content to a file the other session \
         can read and send the path."
    )
}

/// No peer is called `to`; `names` are the addresses of the peers there are.
pub fn unknown_peer(to: &str, names: &[String], tools: &ToolNames) -> String {
    let list = if names.is_empty() {
        "No other peers are running right now; the session you mean may not have started \
         (or lacks peers)."
            .to_string()
    } else {
        format!("Known peers: {}.", names.join(", "))
    };
    format!(
        "send_message failed: there is no peer named {to:?}; nothing was sent. {list} Use one \
         of these names (or name@host, or a peer id from {}) and send again.",
        tools.list()
    )
}

/// `message_status` of an id this session cannot see.
pub fn no_such_message(tool: &str, id: i64, e: &ClientError, tools: &ToolNames) -> String {
    format!(
        "{tool} failed: no message #{id} that you can see ({e}). Use the id \
         {} returned.",
        tools.send()
    )
}

/// `subscribe`'s answer.
pub fn subscribed(sub: &peers_core::wire::Subscription, tools: &ToolNames) -> String {
    let how = if sub.mute {
        "muted: nothing is pushed to you; read posts with {read_topic}".to_string()
    } else if sub.wake {
        "posts reach your context at your next hook event, and wake you when idle".to_string()
    } else {
        "posts reach your context at your next hook event (tool call, prompt, turn end); they \
         do not wake you when idle"
            .to_string()
    };
    tools.fill(&format!(
        "Subscribed to #{}: {how}. Post with {{send_message}} {{\"to\": \"#{}\", ...}}; the \
         next session with your name in this directory keeps the subscription.",
        sub.topic, sub.topic
    ))
}

pub fn summary_set(summary: &str) -> String {
    format!("Summary set: {summary}")
}

pub fn format_sent(r: &SendResponse, now: i64, tools: &ToolNames) -> String {
    if let Some(channel) = &r.channel {
        return format_posted(r, &render::one_line(channel), tools);
    }
    let to = render::one_line(&r.to);
    let mut s = format!(
        "Message #{} sent to {to} (status: {}). ",
        r.message_id,
        public_state(r.status),
    );
    if !r.recipient_alive {
        s.push_str(&format!(
            "Warning: {to}'s session is not running (last seen {}). The message waits for the \
             next session with that name on that machine.",
            ago(r.recipient_last_seen_ms, now)
        ));
    } else if r.recipient_can_wake {
        s.push_str(
            "It is put into the recipient's context at its next hook event (tool call, prompt, \
             turn end), or wakes it if it is idle.",
        );
    } else {
        s.push_str(
            "It is put into the recipient's context at its next hook event (tool call, prompt, \
             turn end). It cannot wake that session now: while it is idle, the message waits.",
        );
    }
    s.push_str(&format!(
        " Check delivery with {} {{\"message_id\": {}}}.",
        tools.status(),
        r.message_id
    ));
    s
}

/// A topic post's or broadcast's result: how many readers got a copy, which may be woken.
fn format_posted(r: &SendResponse, channel: &str, tools: &ToolNames) -> String {
    let n = r.readers.len();
    let mut s = if n == 0 {
        format!(
            "Message #{} posted to {channel}; nobody is subscribed right now, so it reached \
             no one yet (it stays readable with {}).",
            r.message_id,
            tools.of("read_topic")
        )
    } else {
        let names: Vec<String> = r.readers.iter().map(|x| render::one_line(&x.to)).collect();
        let waking = r.readers.iter().filter(|x| x.can_wake).count();
        format!(
            "Message #{} posted to {channel}: {n} reader(s) got a copy ({}). Each gets it at its \
             next hook event (tool call, prompt, turn end); {waking} of them can be woken by it \
             if idle.",
            r.message_id,
            names.join(", ")
        )
    };
    s.push_str(&format!(
        " Check delivery with {} {{\"message_id\": {}}}.",
        tools.status(),
        r.message_id
    ));
    s
}

fn public_state(s: MessageState) -> &'static str {
    match s {
        MessageState::Leased => "queued",
        other => other.as_str(),
    }
}

pub fn format_status(m: &MessageStatus, now: i64) -> String {
    if m.channel.as_deref() == Some(HANDOVER_CHANNEL) {
        return format_handover_status(m);
    }
    if m.channel.is_some() {
        return format_post_status(m, now);
    }
    let mut s = format!("Message #{} from {} to {}: ", m.message_id, m.from, m.to);
    match m.status {
        MessageState::Queued | MessageState::Leased => {
            s.push_str(&format!(
                "queued since {} ({}); the recipient's session {}.",
                format_ms(m.sent_at_ms),
                ago(m.sent_at_ms, now),
                match (m.recipient_alive, m.recipient_can_wake) {
                    (false, _) => "is not running; the message waits for its next session",
                    (true, true) => {
                        "is running: it gets the message at its next hook event (tool call, \
                         prompt, turn end), or is woken by it if idle"
                    }
                    (true, false) => {
                        "is running: it gets the message at its next hook event (tool call, \
                         prompt, turn end); it cannot be woken now, so while it is idle the \
                         message waits"
                    }
                }
            ));
            s.push_str(&format!(" Expires at {}.", format_ms(m.expires_at_ms)));
        }
        MessageState::Delivered => {
            let at = m
                .delivered_at_ms
                .map(|t| format!("{} ({})", format_ms(t), ago(t, now)))
                .unwrap_or_else(|| "an unknown time".into());
            s.push_str(&format!("delivered at {at}"));
            if let Some(via) = &m.delivered_via {
                s.push_str(&format!(" via {via}"));
            }
            s.push('.');
        }
        MessageState::Expired => {
            s.push_str(&format!(
                "expired at {} without being delivered.",
                format_ms(m.expires_at_ms)
            ));
        }
    }
    if let Some(r) = m.reply_to {
        s.push_str(&format!(" It replies to #{r}."));
    }
    if m.replies.is_empty() {
        s.push_str(" No replies yet.");
    } else {
        let ids: Vec<String> = m.replies.iter().map(|r| format!("#{r}")).collect();
        s.push_str(&format!(" Replies: {}.", ids.join(", ")));
    }
    s
}

/// A post's status: delivered to N of M readers, and each reader's copy.
/// A handover's status: waiting for the next session of its name, or who got it.
fn format_handover_status(m: &MessageStatus) -> String {
    let head = format!("Handover #{} from {} to {}: ", m.message_id, m.from, m.to);
    match m.readers.first() {
        Some(r) if r.peer_id.is_empty() && r.status != MessageState::Expired => format!(
            "{head}waiting for the next session named {} (left {}).",
            m.to,
            format_ms(m.sent_at_ms)
        ),
        Some(r) if r.status == MessageState::Delivered => format!(
            "{head}delivered to {} at {}{}.",
            r.to,
            r.delivered_at_ms.map(format_ms).unwrap_or_default(),
            r.delivered_via
                .as_deref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default()
        ),
        Some(r) if r.status == MessageState::Expired => {
            format!("{head}expired before a session named {} started.", m.to)
        }
        Some(r) => format!("{head}taken by {}, which has not shown it yet.", r.to),
        None => format!("{head}no copy."),
    }
}

fn format_post_status(m: &MessageStatus, now: i64) -> String {
    let (done, all) = m.delivered_of();
    let mut s = format!(
        "Message #{} from {} to {}, sent {}: delivered to {done} of {all} reader(s).",
        m.message_id,
        render::one_line(&m.from),
        render::one_line(&m.to),
        ago(m.sent_at_ms, now)
    );
    for r in &m.readers {
        let state = match r.status {
            MessageState::Delivered => format!(
                "delivered {}{}",
                r.delivered_at_ms.map(|t| ago(t, now)).unwrap_or_default(),
                r.delivered_via
                    .as_deref()
                    .map(|v| format!(" via {}", render::one_line(v)))
                    .unwrap_or_default()
            ),
            MessageState::Expired => "expired undelivered".into(),
            MessageState::Queued | MessageState::Leased if !r.alive => {
                "waiting; its session is not running".into()
            }
            MessageState::Queued | MessageState::Leased if r.can_wake => {
                "waiting for its next hook event, or a wake if idle".into()
            }
            MessageState::Queued | MessageState::Leased => {
                "waiting for its next hook event (it cannot be woken by this post)".into()
            }
        };
        s.push_str(&format!("\n- {}: {state}", render::one_line(&r.to)));
    }
    if !m.replies.is_empty() {
        let ids: Vec<String> = m.replies.iter().map(|r| format!("#{r}")).collect();
        s.push_str(&format!("\nReplies: {}.", ids.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use peers_core::wire::SenderKind;

    #[test]
    fn ago_words() {
        assert_eq!(ago(0, 5_000), "5 s ago");
        assert_eq!(ago(0, 120_000), "2 min ago");
        assert_eq!(ago(0, 7_200_000), "2 h ago");
        assert_eq!(ago(10, 0), "0 s ago");
    }

    fn status(state: MessageState, alive: bool, can_wake: bool) -> MessageStatus {
        MessageStatus {
            tags: vec![],
            project: None,
            message_id: 5,
            from: "a@h".into(),
            from_kind: SenderKind::Peer,
            to: "b@h".into(),
            to_peer_id: "p".into(),
            status: state,
            sent_at_ms: 0,
            delivered_at_ms: None,
            delivered_via: None,
            expires_at_ms: 1000,
            reply_to: None,
            replies: vec![],
            recipient_alive: alive,
            recipient_can_wake: can_wake,
            bytes: 2,
            body: None,
            channel: None,
            readers: vec![],
        }
    }

    #[test]
    fn status_texts() {
        let mut texts = vec![];
        for (alive, can_wake) in [(false, false), (true, false), (true, true)] {
            texts.push(format_status(
                &status(MessageState::Queued, alive, can_wake),
                1000,
            ));
        }
        let mut m = status(MessageState::Delivered, true, true);
        m.delivered_at_ms = Some(500);
        m.delivered_via = Some("PostToolUse".into());
        m.reply_to = Some(4);
        m.replies = vec![6];
        texts.push(format_status(&m, 1000));
        m.status = MessageState::Expired;
        texts.push(format_status(&m, 1000));
        expect![[r#"
            Message #5 from a@h to b@h: queued since 1970-01-01T00:00:00Z (1 s ago); the recipient's session is not running; the message waits for its next session. Expires at 1970-01-01T00:00:01Z. No replies yet.
            Message #5 from a@h to b@h: queued since 1970-01-01T00:00:00Z (1 s ago); the recipient's session is running: it gets the message at its next hook event (tool call, prompt, turn end); it cannot be woken now, so while it is idle the message waits. Expires at 1970-01-01T00:00:01Z. No replies yet.
            Message #5 from a@h to b@h: queued since 1970-01-01T00:00:00Z (1 s ago); the recipient's session is running: it gets the message at its next hook event (tool call, prompt, turn end), or is woken by it if idle. Expires at 1970-01-01T00:00:01Z. No replies yet.
            Message #5 from a@h to b@h: delivered at 1970-01-01T00:00:00Z (0 s ago) via PostToolUse. It replies to #4. Replies: #6.
            Message #5 from a@h to b@h: expired at 1970-01-01T00:00:01Z without being delivered. It replies to #4. Replies: #6."#]]
        .assert_eq(&texts.join("\n"));
    }

    #[test]
    fn sent_texts_promise_a_wake_only_when_one_can_happen() {
        let plugin = ToolNames::new("mcp__plugin_peers_peers__").unwrap();
        let mut texts = vec![];
        for (alive, can_wake) in [(false, false), (true, false), (true, true)] {
            let r = SendResponse {
                message_id: 12,
                to: "web@h".into(),
                to_peer_id: "p".into(),
                status: MessageState::Queued,
                recipient_alive: alive,
                recipient_last_seen_ms: 0,
                recipient_can_wake: can_wake,
                channel: None,
                readers: vec![],
            };
            texts.push(format_sent(&r, 120_000, &plugin));
        }
        expect![[r#"
            Message #12 sent to web@h (status: queued). Warning: web@h's session is not running (last seen 2 min ago). The message waits for the next session with that name on that machine. Check delivery with mcp__plugin_peers_peers__message_status {"message_id": 12}.
            Message #12 sent to web@h (status: queued). It is put into the recipient's context at its next hook event (tool call, prompt, turn end). It cannot wake that session now: while it is idle, the message waits. Check delivery with mcp__plugin_peers_peers__message_status {"message_id": 12}.
            Message #12 sent to web@h (status: queued). It is put into the recipient's context at its next hook event (tool call, prompt, turn end), or wakes it if it is idle. Check delivery with mcp__plugin_peers_peers__message_status {"message_id": 12}."#]]
        .assert_eq(&texts.join("\n"));
    }

    #[test]
    fn instructions_name_the_clients_tools() {
        let plugin = ToolNames::new("mcp__plugin_peers_peers__").unwrap();
        let who = "You are `api@h` (`api` on this machine; id p1).";
        expect!["peers: mail between this Claude Code session and the user's other sessions (peers), on this and their other machines. You are `api@h` (`api` on this machine; id p1). Peer mail reaches your context by itself (after a tool call, at turn end, or by waking you) as data from other agents: don't poll. mcp__peers__list_peers: find sessions. mcp__peers__send_message: write to one, a #topic or * (reply_to answers). mcp__peers__message_status: delivered? mcp__peers__subscribe/mcp__peers__list_topics/mcp__peers__read_topic: topics. mcp__peers__set_summary: what you work on. mcp__peers__whoami: your address. mcp__peers__check_messages: manual fallback. Not the built-in SendMessage/ListAgents (subagents, teammates)."]
        .assert_eq(&instructions_text(who, &ToolNames::default()));
        let t = instructions_text(who, &plugin);
        assert!(!t.contains("mcp__peers__") && !t.contains('{'), "{t}");
        assert_eq!(t.matches("mcp__plugin_peers_peers__").count(), 9, "{t}");
    }

    fn reader(to: &str, status: MessageState, wake: bool) -> peers_core::wire::ReaderStatus {
        peers_core::wire::ReaderStatus {
            peer_id: format!("p-{to}"),
            to: to.into(),
            status,
            delivered_at_ms: (status == MessageState::Delivered).then_some(500),
            delivered_via: (status == MessageState::Delivered).then(|| "PostToolUse".into()),
            alive: true,
            wake,
            can_wake: wake,
        }
    }

    #[test]
    fn post_texts_count_readers_and_say_who_can_be_woken() {
        let tools = ToolNames::default();
        let mut r = SendResponse {
            message_id: 30,
            to: "#ci".into(),
            to_peer_id: String::new(),
            status: MessageState::Queued,
            recipient_alive: true,
            recipient_last_seen_ms: 0,
            recipient_can_wake: true,
            channel: Some("#ci".into()),
            readers: vec![
                reader("b@h", MessageState::Queued, false),
                reader("c@h", MessageState::Queued, true),
            ],
        };
        let mut texts = vec![format_sent(&r, 0, &tools)];
        r.readers.clear();
        texts.push(format_sent(&r, 0, &tools));
        let mut st = status(MessageState::Queued, true, true);
        st.to = "#ci".into();
        st.channel = Some("#ci".into());
        st.readers = vec![
            reader("b@h", MessageState::Delivered, false),
            reader("c@h", MessageState::Queued, true),
            reader("d@h", MessageState::Queued, false),
        ];
        texts.push(format_status(&st, 1000));
        expect![[r##"
            Message #30 posted to #ci: 2 reader(s) got a copy (b@h, c@h). Each gets it at its next hook event (tool call, prompt, turn end); 1 of them can be woken by it if idle. Check delivery with mcp__peers__message_status {"message_id": 30}.
            Message #30 posted to #ci; nobody is subscribed right now, so it reached no one yet (it stays readable with mcp__peers__read_topic). Check delivery with mcp__peers__message_status {"message_id": 30}.
            Message #5 from a@h to #ci, sent 1 s ago: delivered to 1 of 3 reader(s).
            - b@h: delivered 0 s ago via PostToolUse
            - c@h: waiting for its next hook event, or a wake if idle
            - d@h: waiting for its next hook event (it cannot be woken by this post)"##]]
        .assert_eq(&texts.join("\n"));
    }

    #[test]
    fn oversize_text_says_what_to_do() {
        let t = oversize_text(70_000, 65_536);
        assert!(
            t.contains("70000") && t.contains("65536") && t.contains("split"),
            "{t}"
        );
    }
}
