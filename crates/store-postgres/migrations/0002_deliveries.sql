-- Topics and broadcast (the SQLite store's migration 0004): a message is stored once, and each
-- reader gets a row of `deliveries` — its own copy, with its own state, lease and delivery.
-- Direct mail has exactly one. Every existing message's state moves into its one copy, and
-- the per-copy columns leave `messages`, so each fact has one home.

-- `#topic` for a topic post, `*` for a broadcast, NULL for direct mail.
ALTER TABLE messages ADD COLUMN channel TEXT;

-- One row per reader copy. `state` is queued -> leased -> delivered, or expired.
-- No foreign key to `messages`: a checked key costs a lookup per copy (a 500-reader post
-- would pay 500), and copies are only ever inserted with their message, which is never
-- deleted.
CREATE TABLE deliveries (
    message_id       BIGINT NOT NULL,
    to_peer          TEXT NOT NULL,       -- the registration it waits for (moves on hand-over)
    -- Where it sits among the message's readers: status lists readers in this order.
    pos              INTEGER NOT NULL,
    to_address       TEXT NOT NULL,       -- the reader's name@host
    -- Whether this copy may wake the reader when idle (topic subscriptions choose).
    wake             BOOLEAN NOT NULL,
    state            TEXT NOT NULL,
    expires_ms       BIGINT NOT NULL,
    lease_id         TEXT,
    lease_expires_ms BIGINT,
    delivered_ms     BIGINT,
    delivered_via    TEXT,
    PRIMARY KEY (message_id, to_peer)
);

INSERT INTO deliveries (message_id, to_peer, pos, to_address, wake, state, expires_ms,
                        lease_id, lease_expires_ms, delivered_ms, delivered_via)
SELECT id, to_peer, 0, to_address, true, state, expires_ms, lease_id, lease_expires_ms,
       delivered_ms, delivered_via
FROM messages;

-- Their indexes (messages_waiting, messages_lease, messages_to_sent) go with the columns.
ALTER TABLE messages
    DROP COLUMN to_peer,
    DROP COLUMN state,
    DROP COLUMN lease_id,
    DROP COLUMN lease_expires_ms,
    DROP COLUMN delivered_ms,
    DROP COLUMN delivered_via;

-- The hot path: a reader's waiting copies in send order. Partial, so a million delivered
-- copies in history do not slow a claim.
CREATE INDEX deliveries_waiting ON deliveries (to_peer, message_id)
    WHERE state IN ('queued', 'leased');
CREATE INDEX deliveries_lease ON deliveries (lease_id) WHERE lease_id IS NOT NULL;
-- History by reader (delivered_to, the log's `to` filter).
CREATE INDEX deliveries_to ON deliveries (to_peer, message_id);
-- A topic's posts, newest first.
CREATE INDEX messages_channel ON messages (channel, id) WHERE channel IS NOT NULL;

-- Topics, created by their first post or subscription. `name` is without `#`.
CREATE TABLE topics (
    name       TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

-- A subscription belongs to a session's name in its directory on its machine (the hand-over
-- rule), so the next session with that name there has it too.
CREATE TABLE subscriptions (
    topic      TEXT NOT NULL REFERENCES topics (name),
    machine_id TEXT NOT NULL,
    cwd        TEXT NOT NULL,
    name       TEXT NOT NULL,
    wake       BOOLEAN NOT NULL,
    mute       BOOLEAN NOT NULL,
    since_ms   BIGINT NOT NULL,
    PRIMARY KEY (topic, machine_id, cwd, name)
);
CREATE INDEX subscriptions_owner ON subscriptions (machine_id, cwd, name);
