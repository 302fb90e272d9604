-- History (issue #14; the SQLite store's migration 0006): tags, the sender's project, and
-- full-text search over bodies and tags.

-- The sender's project: its git repository's directory name, else its directory's; NULL for
-- the human.
ALTER TABLE messages ADD COLUMN project TEXT;
-- The tags, lowercase, space-separated in the order given (NULL: none). Filters use
-- `message_tags`.
ALTER TABLE messages ADD COLUMN tags TEXT;

CREATE TABLE message_tags (
    tag        TEXT NOT NULL,
    message_id BIGINT NOT NULL REFERENCES messages (id),
    PRIMARY KEY (tag, message_id)
);

CREATE INDEX messages_project ON messages (project, id) WHERE project IS NOT NULL;

-- Full-text search: a generated tsvector (the 'simple' configuration: no stemming, as
-- SQLite's unicode61) with a GIN index, written by the INSERT itself.
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', body || ' ' || coalesce(tags, ''))
) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);
