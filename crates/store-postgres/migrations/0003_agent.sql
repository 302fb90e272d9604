-- The agent CLI of a peer's session (peers_core::wire::Agent: claude, codex or gemini). Rows
-- from before, and clients that do not send it, are Claude Code sessions.
ALTER TABLE peers ADD COLUMN agent TEXT NOT NULL DEFAULT 'claude';
