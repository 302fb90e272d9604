-- The start time of a peer's Claude Code process (peers_core::process::start_time): with the
-- pid it names the process, so a later process given the same pid is a new session. NULL for
-- registrations from clients that do not send it.
ALTER TABLE peers ADD COLUMN claude_start_time INTEGER;
