-- History (issue #14): tags, the sender's project, and full-text search over bodies and tags.

-- The sender's project: its git repository's directory name, else its directory's; NULL for
-- the human.
ALTER TABLE messages ADD COLUMN project TEXT;
-- The tags, lowercase, space-separated in the order given (NULL: none); what search and
-- status read. Filters use `message_tags`.
ALTER TABLE messages ADD COLUMN tags TEXT;

CREATE TABLE message_tags (
    tag        TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (tag, message_id)
) WITHOUT ROWID;

CREATE INDEX messages_project ON messages (project, id) WHERE project IS NOT NULL;

-- Full-text search: an external-content FTS5 index over `messages`, kept by triggers, so it
-- commits in the same transaction as the send that stores the row (a crash leaves both or
-- neither).
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, tags, content = 'messages', content_rowid = 'id', tokenize = 'unicode61'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body, tags) VALUES (new.id, new.body, new.tags);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, tags)
    VALUES ('delete', old.id, old.body, old.tags);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, tags ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, tags)
    VALUES ('delete', old.id, old.body, old.tags);
    INSERT INTO messages_fts (rowid, body, tags) VALUES (new.id, new.body, new.tags);
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
