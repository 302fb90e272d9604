-- Topics and broadcast (issue #13): a message is stored once, and each reader has its own
-- copy in `deliveries` with its own state, lease and delivery. Direct mail has exactly one.

-- `#topic` for a topic post, `*` for a broadcast, NULL for direct mail.
ALTER TABLE messages ADD COLUMN channel TEXT;

-- One row per reader's copy: `state` is queued -> leased -> delivered, or expired. `to_peer`
-- follows the reader's session (re-registration moves waiting copies); `to_address` is the
-- reader's `name@host`. `wake`: whether the copy may wake an idle reader.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,   -- the order the copies were stored in
    message_id       INTEGER NOT NULL,
    to_peer          TEXT NOT NULL,
    to_address       TEXT NOT NULL,
    wake             INTEGER NOT NULL,
    state            TEXT NOT NULL,
    expires_ms       INTEGER NOT NULL,
    lease_id         TEXT,
    lease_expires_ms INTEGER,
    delivered_ms     INTEGER,
    delivered_via    TEXT
);

-- Every existing message becomes its one reader's copy, with its state as it was.
INSERT INTO deliveries (message_id, to_peer, to_address, wake, state, expires_ms, lease_id,
                        lease_expires_ms, delivered_ms, delivered_via)
SELECT id, to_peer, to_address, 1, state, expires_ms, lease_id, lease_expires_ms,
       delivered_ms, delivered_via
FROM messages ORDER BY id;

-- The claim's hot path: a reader's waiting copies in send order. Partial, so a million
-- delivered copies in history do not slow a claim.
CREATE INDEX deliveries_waiting ON deliveries (to_peer, message_id)
    WHERE state IN ('queued', 'leased');
CREATE INDEX deliveries_lease ON deliveries (lease_id) WHERE lease_id IS NOT NULL;
CREATE INDEX deliveries_message ON deliveries (message_id);
-- A reader's delivered history (delivered_to).
CREATE INDEX deliveries_to ON deliveries (to_peer, state, message_id);

-- The per-delivery columns now live in `deliveries` only: one source of truth. (`to_address`
-- stays: how the sender addressed the message.)
DROP INDEX messages_waiting;
DROP INDEX messages_lease;
DROP INDEX messages_to_sent;
ALTER TABLE messages DROP COLUMN to_peer;
ALTER TABLE messages DROP COLUMN state;
ALTER TABLE messages DROP COLUMN lease_id;
ALTER TABLE messages DROP COLUMN lease_expires_ms;
ALTER TABLE messages DROP COLUMN delivered_ms;
ALTER TABLE messages DROP COLUMN delivered_via;

-- A topic's posts, newest first (read_topic, topic lists).
CREATE INDEX messages_channel ON messages (channel, id) WHERE channel IS NOT NULL;

CREATE TABLE topics (
    name       TEXT PRIMARY KEY,   -- without `#`
    created_ms INTEGER NOT NULL
);

-- A subscription belongs to a session's name in its directory on its machine (the handover
-- rule): the next session with that name there has it.
CREATE TABLE subscriptions (
    topic      TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    cwd        TEXT NOT NULL,
    name       TEXT NOT NULL,
    wake       INTEGER NOT NULL,
    mute       INTEGER NOT NULL,
    since_ms   INTEGER NOT NULL,
    PRIMARY KEY (topic, machine_id, cwd, name)
);
CREATE INDEX subscriptions_subscriber ON subscriptions (machine_id, cwd, name);
