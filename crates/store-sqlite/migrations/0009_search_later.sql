-- Search indexing leaves the send's commit (issue #16). Migration 0006's insert trigger wrote
-- three FTS5 pages per send (a new segment, its size record, the index entry) inside the
-- send's own fsync'd commit, and a new segment per commit made FTS5 merge often. Now the
-- writer indexes in batches (`search::index_batch`): in the background shortly after sends,
-- and before every text search, so a search still sees every send acknowledged before it.

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;

-- Every message with `id <= upto` is in `messages_fts`; none above it is. One row.
CREATE TABLE search_indexed (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    upto INTEGER NOT NULL
);
-- Until now the triggers kept everything indexed.
INSERT INTO search_indexed (one, upto) VALUES (1, (SELECT COALESCE(MAX(id), 0) FROM messages));

-- A deleted message leaves the index only if it was in it. Then `upto` comes down to the
-- largest id left: SQLite hands out `MAX(id) + 1` next, so once the newest message is
-- deleted its id can come back on a new message, which must not count as indexed. One
-- trigger, so the index entry goes before `upto` moves.
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, tags)
    SELECT 'delete', old.id, old.body, old.tags FROM search_indexed WHERE old.id <= upto;
    UPDATE search_indexed SET upto = (SELECT COALESCE(MAX(id), 0) FROM messages)
    WHERE upto > (SELECT COALESCE(MAX(id), 0) FROM messages);
END;

-- Nothing edits a stored body or tags today; should something, an indexed row is re-indexed.
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, tags ON messages
WHEN old.id <= (SELECT upto FROM search_indexed) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, tags)
    VALUES ('delete', old.id, old.body, old.tags);
    INSERT INTO messages_fts (rowid, body, tags) VALUES (new.id, new.body, new.tags);
END;
