//! Peer rows: registration (with name allocation and mail hand-over), heartbeats, summaries,
//! liveness, listing and lookup.

use peers_core::identity;
use peers_core::wire::{Agent, RegisterRequest};
use peers_store::{PeerRecord, REVOKED, Registration};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::Error;

/// The columns of `peers` that make a [`PeerRecord`], each a field of the same name, handed
/// to `$m` with the prefix `$p`: one list for [`peer_columns!`] and [`peer_json!`].
macro_rules! peer_fields {
    ($m:ident, $p:literal) => {
        $crate::peers::$m!(
            $p; id, name, host, machine_id, claude_pid, mcp_pid, session_id, cwd, git_root,
            git_branch, tty, summary, token_hash, registered_ms, last_seen_ms, gone_ms,
            replaced_by, claude_start_time, agent
        )
    };
}

/// The column list (each column prefixed by `$p`, e.g. `"p."`), as a macro so queries stay
/// literal strings.
macro_rules! peer_columns {
    () => {
        peer_columns!("")
    };
    ($p:literal) => {
        $crate::peers::peer_fields!(peer_columns, $p)
    };
    ($p:literal; $first:ident $(, $f:ident)*) => {
        concat!($p, stringify!($first) $(, ", ", $p, stringify!($f))*)
    };
}
pub(crate) use peer_columns;

/// The same columns as one JSON object whose keys are [`PeerRecord`]'s fields (`serde`), for
/// reads of many peers as one row: sqlx hands each row from SQLite's thread to the caller
/// on its own, a wake-up per row (500 readers of a topic cost ~7 ms that way).
macro_rules! peer_json {
    ($p:literal) => {
        $crate::peers::peer_fields!(peer_json, $p)
    };
    ($p:literal; $first:ident $(, $f:ident)*) => {
        concat!(
            "json_object('", stringify!($first), "', ", $p, stringify!($first)
            $(, ", '", stringify!($f), "', ", $p, stringify!($f))*, ")"
        )
    };
}
pub(crate) use {peer_fields, peer_json};

/// A `peers` row read with [`peer_columns!`] as a [`PeerRecord`].
pub(crate) fn peer_record(r: SqliteRow) -> Result<PeerRecord, sqlx::Error> {
    Ok(PeerRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        host: r.try_get("host")?,
        machine_id: r.try_get("machine_id")?,
        claude_pid: r.try_get("claude_pid")?,
        claude_start_time: r.try_get("claude_start_time")?,
        mcp_pid: r.try_get("mcp_pid")?,
        session_id: r.try_get("session_id")?,
        cwd: r.try_get("cwd")?,
        git_root: r.try_get("git_root")?,
        git_branch: r.try_get("git_branch")?,
        tty: r.try_get("tty")?,
        summary: r.try_get("summary")?,
        token_hash: r.try_get("token_hash")?,
        registered_ms: r.try_get("registered_ms")?,
        last_seen_ms: r.try_get("last_seen_ms")?,
        gone_ms: r.try_get("gone_ms")?,
        replaced_by: r.try_get("replaced_by")?,
        agent: Agent::parse(r.try_get("agent")?).unwrap_or_default(),
    })
}

/// Registers a session (runs in the writer).
///
/// The same Claude Code process is the same `(machine_id, claude_pid)` with the same start
/// time; a registration with that pid but another start time comes from a new process that
/// was given the pid of an ended one: the old registration is marked gone, and the new one
/// is a new session (it inherits mail only by the hand-over rule below).
///
/// Name rules, in order: the same Claude Code process registering again keeps its name and
/// its waiting mail; else the name asked for (`previous_name`) if no live peer holds it; else
/// the name of an ended session on the same machine and directory whose base name matches
/// (so its mail finds the new session); else the base name, or `base-2`, `base-3`, … .
pub async fn register(
    conn: &mut SqliteConnection,
    req: RegisterRequest,
    peer_id: String,
    token_hash: String,
    now: i64,
) -> Result<Registration, Error> {
    let base = identity::base_name(
        std::path::Path::new(&req.cwd),
        req.git_root.as_deref().map(std::path::Path::new),
    );

    let same_pid: Option<PeerRecord> = sqlx::query(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE machine_id = ? AND claude_pid = ? \
         AND replaced_by IS NULL ORDER BY registered_ms DESC LIMIT 1"
    ))
    .bind(&req.machine_id)
    .bind(req.claude_pid as i64)
    .try_map(peer_record)
    .fetch_optional(&mut *conn)
    .await?;
    let mut pid_reused = Vec::new();
    let same_process = match same_pid {
        Some(old) if !old.same_process_as(req.claude_start_time) => {
            // That process is over: a pid names one live process at a time.
            if old.gone_ms.is_none() {
                mark_gone(conn, std::slice::from_ref(&old.id), now).await?;
                pid_reused.push(old.id);
            }
            None
        }
        other => other,
    };

    let mut name = None;
    if let Some(old) = &same_process
        && !name_taken(conn, &old.name, Some(&old.id)).await?
    {
        name = Some(old.name.clone());
    }
    if name.is_none()
        && let Some(prev) = req.previous_name.as_deref().map(str::to_lowercase)
        && identity::slug(&prev) == prev
        && !name_taken(conn, &prev, None).await?
    {
        name = Some(prev);
    }
    if name.is_none() {
        // An ended session here with mail waiting, whose name is in this base's family.
        let candidates: Vec<(String,)> = sqlx::query_as(
            "SELECT p.name FROM peers p WHERE p.machine_id = ? AND p.cwd = ? \
             AND p.gone_ms IS NOT NULL AND p.replaced_by IS NULL \
             AND (p.name = ? OR p.name LIKE ? || '-%') \
             ORDER BY EXISTS (SELECT 1 FROM deliveries d WHERE d.to_peer = p.id \
                              AND d.state IN ('queued','leased')) DESC, p.gone_ms DESC",
        )
        .bind(&req.machine_id)
        .bind(&req.cwd)
        .bind(&base)
        .bind(&base)
        .fetch_all(&mut *conn)
        .await?;
        for (candidate,) in candidates {
            if !name_taken(conn, &candidate, None).await? {
                name = Some(candidate);
                break;
            }
        }
    }
    let name = match name {
        Some(n) => n,
        None => fresh_name(conn, &base).await?,
    };

    // Earlier registrations whose mail this one takes over: the same process, and ended
    // sessions with this name on this machine and directory.
    let mut replaced: Vec<String> = Vec::new();
    if let Some(old) = &same_process {
        replaced.push(old.id.clone());
    }
    let ended: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM peers WHERE machine_id = ? AND name = ? AND cwd = ? \
         AND gone_ms IS NOT NULL AND replaced_by IS NULL",
    )
    .bind(&req.machine_id)
    .bind(&name)
    .bind(&req.cwd)
    .fetch_all(&mut *conn)
    .await?;
    for (id,) in ended {
        if !replaced.contains(&id) {
            replaced.push(id);
        }
    }

    let row = PeerRecord {
        id: peer_id,
        name,
        host: req.host,
        machine_id: req.machine_id,
        claude_pid: req.claude_pid as i64,
        claude_start_time: req.claude_start_time.map(|t| t as i64),
        mcp_pid: req.mcp_pid as i64,
        session_id: req.session_id,
        cwd: req.cwd,
        git_root: req.git_root,
        git_branch: req.git_branch,
        tty: req.tty,
        summary: req.summary,
        token_hash,
        registered_ms: now,
        last_seen_ms: now,
        gone_ms: None,
        replaced_by: None,
        agent: req.agent,
    };
    sqlx::query(concat!(
        "INSERT INTO peers (",
        peer_columns!(),
        ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL,?,?)"
    ))
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.host)
    .bind(&row.machine_id)
    .bind(row.claude_pid)
    .bind(row.mcp_pid)
    .bind(&row.session_id)
    .bind(&row.cwd)
    .bind(&row.git_root)
    .bind(&row.git_branch)
    .bind(&row.tty)
    .bind(&row.summary)
    .bind(&row.token_hash)
    .bind(row.registered_ms)
    .bind(row.last_seen_ms)
    .bind(row.claude_start_time)
    .bind(row.agent.as_str())
    .execute(&mut *conn)
    .await?;

    let mut inherited = 0u64;
    for old in &replaced {
        sqlx::query(
            "UPDATE peers SET replaced_by = ?, gone_ms = COALESCE(gone_ms, ?) WHERE id = ?",
        )
        .bind(&row.id)
        .bind(now)
        .bind(old)
        .execute(&mut *conn)
        .await?;
        inherited += sqlx::query(
            "UPDATE deliveries SET to_peer = ?, to_address = ? \
             WHERE to_peer = ? AND state IN ('queued','leased')",
        )
        .bind(&row.id)
        .bind(row.address())
        .bind(old)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(Registration {
        peer: row,
        replaced,
        ended: pid_reused,
        inherited_messages: inherited,
    })
}

/// Whether a live peer other than `except` holds `name`, or it is reserved
/// ([`identity::is_reserved_name`]).
async fn name_taken(
    conn: &mut SqliteConnection,
    name: &str,
    except: Option<&str>,
) -> Result<bool, Error> {
    if identity::is_reserved_name(name) {
        return Ok(true);
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM peers WHERE gone_ms IS NULL AND name = ? AND id != ?",
    )
    .bind(name)
    .bind(except.unwrap_or(""))
    .fetch_one(&mut *conn)
    .await?;
    Ok(n > 0)
}

/// `base` if no live peer holds it and it is not reserved, else the first free `base-N`
/// (N ≥ 2).
async fn fresh_name(conn: &mut SqliteConnection, base: &str) -> Result<String, Error> {
    let taken: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM peers WHERE gone_ms IS NULL AND (name = ? OR name LIKE ? || '-%')",
    )
    .bind(base)
    .bind(base)
    .fetch_all(&mut *conn)
    .await?;
    let taken: std::collections::HashSet<String> = taken.into_iter().map(|(n,)| n).collect();
    if !taken.contains(base) && !identity::is_reserved_name(base) {
        return Ok(base.to_string());
    }
    let mut n = 2u64;
    loop {
        let candidate = format!("{base}-{n}");
        if !taken.contains(&candidate) {
            return Ok(candidate);
        }
        n += 1;
    }
}

/// Records a heartbeat. A peer marked gone (a remote one whose heartbeats lapsed) comes back
/// under its name when no one else took it, else under a fresh one — if `may_revive`; the
/// broker refuses that for a local peer whose Claude Code process has ended (a ghost MCP
/// server). Returns the row after, `None` if the registration was replaced or revoked.
pub async fn heartbeat(
    conn: &mut SqliteConnection,
    peer_id: &str,
    now: i64,
    may_revive: bool,
) -> Result<Option<PeerRecord>, Error> {
    let Some(row) = by_id(&mut *conn, peer_id).await? else {
        return Ok(None);
    };
    if row.replaced_by.is_some() || row.token_hash == REVOKED {
        return Ok(None);
    }
    if row.gone_ms.is_some() && !may_revive {
        return Ok(None);
    }
    let name = if row.gone_ms.is_some() && name_taken(conn, &row.name, Some(&row.id)).await? {
        let base = identity::base_name(
            std::path::Path::new(&row.cwd),
            row.git_root.as_deref().map(std::path::Path::new),
        );
        fresh_name(conn, &base).await?
    } else {
        row.name.clone()
    };
    sqlx::query("UPDATE peers SET last_seen_ms = ?, gone_ms = NULL, name = ? WHERE id = ?")
        .bind(now)
        .bind(&name)
        .bind(peer_id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(PeerRecord {
        last_seen_ms: now,
        gone_ms: None,
        name,
        ..row
    }))
}

pub async fn set_summary(
    conn: &mut SqliteConnection,
    peer_id: &str,
    summary: &str,
) -> Result<(), Error> {
    sqlx::query("UPDATE peers SET summary = ? WHERE id = ?")
        .bind(summary)
        .bind(peer_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Unregisters a peer: gone, and its token no longer valid. Its mail stays queued for the
/// next session with its name.
pub async fn unregister(conn: &mut SqliteConnection, peer_id: &str, now: i64) -> Result<(), Error> {
    sqlx::query("UPDATE peers SET gone_ms = COALESCE(gone_ms, ?), token_hash = ? WHERE id = ?")
        .bind(now)
        .bind(REVOKED)
        .bind(peer_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Marks peers gone (their session ended). Their mail stays queued.
pub async fn mark_gone(
    conn: &mut SqliteConnection,
    ids: &[String],
    now: i64,
) -> Result<u64, Error> {
    let mut n = 0;
    for id in ids {
        n += sqlx::query("UPDATE peers SET gone_ms = ? WHERE id = ? AND gone_ms IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(n)
}

pub async fn by_id<'e, E>(exec: E, id: &str) -> Result<Option<PeerRecord>, Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    Ok(sqlx::query(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE id = ?"
    ))
    .bind(id)
    .try_map(peer_record)
    .fetch_optional(exec)
    .await?)
}

/// Live peers (all of them; the caller filters by scope).
pub async fn live(pool: &SqlitePool) -> Result<Vec<PeerRecord>, Error> {
    Ok(sqlx::query(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE gone_ms IS NULL ORDER BY name"
    ))
    .try_map(peer_record)
    .fetch_all(pool)
    .await?)
}

/// Live peers plus ended sessions not yet replaced (which may still have mail waiting).
pub async fn live_and_gone(pool: &SqlitePool) -> Result<Vec<PeerRecord>, Error> {
    Ok(sqlx::query(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE replaced_by IS NULL ORDER BY name, registered_ms DESC"
    ))
    .try_map(peer_record)
    .fetch_all(pool)
    .await?)
}

/// Finds the peer a name, `name@host` or id refers to: a live peer if one matches, else the
/// newest ended session of that name not yet replaced (mail to it waits for the next session).
/// An id of a replaced registration resolves to the registration that replaced it.
pub async fn resolve(pool: &SqlitePool, to: &str) -> Result<Option<PeerRecord>, Error> {
    let to = to.trim();
    if let Some(mut row) = by_id(pool, to).await? {
        for _ in 0..16 {
            match row.replaced_by.clone() {
                Some(next) => match by_id(pool, &next).await? {
                    Some(r) => row = r,
                    None => break,
                },
                None => break,
            }
        }
        return Ok(Some(row));
    }
    let lower = to.to_lowercase();
    let (name, host) = match lower.rsplit_once('@') {
        Some((n, h)) => (n.to_string(), Some(h.to_string())),
        None => (lower, None),
    };
    let row: Option<PeerRecord> = sqlx::query(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE name = ? AND (? IS NULL OR lower(host) = ?) \
         AND replaced_by IS NULL ORDER BY gone_ms IS NOT NULL, registered_ms DESC LIMIT 1"
    ))
    .bind(&name)
    .bind(&host)
    .bind(&host)
    .try_map(peer_record)
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

/// Per-peer count of waiting (queued or leased) mail, for the given peers.
pub async fn waiting_counts(
    pool: &SqlitePool,
) -> Result<std::collections::HashMap<String, u64>, Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT to_peer, COUNT(*) FROM deliveries WHERE state IN ('queued','leased') \
         GROUP BY to_peer",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(p, n)| (p, n as u64)).collect())
}

pub async fn count_live(pool: &SqlitePool) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM peers WHERE gone_ms IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}
