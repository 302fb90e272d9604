-- Script tokens (issue #17): a named token that may only post (to `post_to`, if given) and
-- read the status of its own posts. Only its SHA-256 is kept. `post_to`: the allowed
-- recipients, one a line (empty: any). A revoked token keeps its row (for `token list`) until
-- a new token takes its name.
CREATE TABLE script_tokens (
    name         TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    post_to      TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT,
    last_used_ms BIGINT,
    revoked_ms   BIGINT
);
