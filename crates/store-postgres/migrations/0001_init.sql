-- The schema of the SQLite store's migrations 0001-0003, in one PostgreSQL migration.

-- Peers: one row per registration. A row is never deleted while mail may refer to it; an ended
-- session gets `gone_ms`, a re-registration of the same Claude Code process gets `replaced_by`.
CREATE TABLE peers (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,      -- lowercase, unique among live peers
    host              TEXT NOT NULL,
    machine_id        TEXT NOT NULL,
    claude_pid        BIGINT NOT NULL,
    -- The start time of the Claude Code process (peers_core::process::start_time): with the
    -- pid it names the process. NULL for clients that do not send it.
    claude_start_time BIGINT,
    mcp_pid           BIGINT NOT NULL,
    session_id        TEXT,
    cwd               TEXT NOT NULL,
    git_root          TEXT,
    git_branch        TEXT,
    tty               TEXT,
    summary           TEXT,
    token_hash        TEXT NOT NULL,      -- sha256 of the peer token, hex
    registered_ms     BIGINT NOT NULL,
    last_seen_ms      BIGINT NOT NULL,
    gone_ms           BIGINT,             -- NULL while the session runs
    replaced_by       TEXT                -- the registration that took over this one
);
CREATE INDEX peers_live_name ON peers (name) WHERE gone_ms IS NULL;
CREATE INDEX peers_machine_pid ON peers (machine_id, claude_pid);
CREATE INDEX peers_machine_name ON peers (machine_id, name);
CREATE INDEX peers_replaced_by ON peers (replaced_by) WHERE replaced_by IS NOT NULL;

-- Messages. `state` is queued -> leased -> delivered, or expired. Sender and recipient
-- addresses are kept as sent so history reads well after sessions end.
CREATE TABLE messages (
    id               BIGSERIAL PRIMARY KEY,
    from_peer        TEXT,                -- NULL when the human sent it
    from_kind        TEXT NOT NULL,       -- peer | human
    from_address     TEXT NOT NULL,
    from_cwd         TEXT,
    to_peer          TEXT NOT NULL,
    to_address       TEXT NOT NULL,
    body             TEXT NOT NULL,
    reply_to         BIGINT,
    state            TEXT NOT NULL,
    sent_ms          BIGINT NOT NULL,
    expires_ms       BIGINT NOT NULL,
    lease_id         TEXT,
    lease_expires_ms BIGINT,
    delivered_ms     BIGINT,
    delivered_via    TEXT
);
-- The hot path: a peer's waiting mail in send order. Partial, so a million delivered rows
-- in history do not slow a claim.
CREATE INDEX messages_waiting ON messages (to_peer, id) WHERE state IN ('queued', 'leased');
CREATE INDEX messages_lease ON messages (lease_id) WHERE lease_id IS NOT NULL;
CREATE INDEX messages_reply ON messages (reply_to) WHERE reply_to IS NOT NULL;
CREATE INDEX messages_to_sent ON messages (to_peer, sent_ms);
CREATE INDEX messages_from_sent ON messages (from_peer, sent_ms);
CREATE INDEX messages_sent ON messages (sent_ms);

-- Automatic turn extensions and wakes, for the loop budget (per Claude Code process).
CREATE TABLE budget_spend (
    machine_id TEXT NOT NULL,
    claude_pid BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL
);
CREATE INDEX budget_spend_key ON budget_spend (machine_id, claude_pid, at_ms);

-- Events for the human: loop budget exhausted, mail waiting too long, storage faults.
CREATE TABLE notices (
    id      BIGSERIAL PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    peer_id TEXT,
    text    TEXT NOT NULL,
    -- Who raised it: `broker`, a peer's `name@host`, or `you`.
    author  TEXT NOT NULL DEFAULT ''
);
