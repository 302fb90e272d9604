//! Peer rows: registration (name allocation and mail hand-over, serialised over every broker
//! by an advisory lock), heartbeats, summaries, liveness, listing and lookup.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use peers_core::identity;
use peers_core::wire::Agent;
use peers_store::{NewRegistration, PeerRecord, REVOKED, Registration};
use sqlx::{PgConnection, PgPool};

use crate::events::{notify_mail, notify_peers};

/// The advisory lock key (one-key space) that serialises name allocation: registrations and
/// revivals of gone peers, whichever broker runs them.
const NAMES_LOCK: i64 = 0x7065_6572_735f_6e6d; // "peers_nm"

/// A row of `peers`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PeerRow {
    id: String,
    name: String,
    host: String,
    machine_id: String,
    claude_pid: i64,
    claude_start_time: Option<i64>,
    mcp_pid: i64,
    session_id: Option<String>,
    cwd: String,
    git_root: Option<String>,
    git_branch: Option<String>,
    tty: Option<String>,
    summary: Option<String>,
    token_hash: String,
    registered_ms: i64,
    last_seen_ms: i64,
    gone_ms: Option<i64>,
    replaced_by: Option<String>,
    agent: String,
}

impl From<PeerRow> for PeerRecord {
    fn from(r: PeerRow) -> PeerRecord {
        PeerRecord {
            id: r.id,
            name: r.name,
            host: r.host,
            machine_id: r.machine_id,
            claude_pid: r.claude_pid,
            claude_start_time: r.claude_start_time,
            mcp_pid: r.mcp_pid,
            session_id: r.session_id,
            cwd: r.cwd,
            git_root: r.git_root,
            git_branch: r.git_branch,
            tty: r.tty,
            summary: r.summary,
            token_hash: r.token_hash,
            registered_ms: r.registered_ms,
            last_seen_ms: r.last_seen_ms,
            gone_ms: r.gone_ms,
            replaced_by: r.replaced_by,
            agent: Agent::parse(&r.agent).unwrap_or_default(),
        }
    }
}

/// The column list, as a macro so queries stay literal strings.
macro_rules! peer_columns {
    () => {
        "id, name, host, machine_id, claude_pid, claude_start_time, mcp_pid, session_id, cwd, \
         git_root, git_branch, tty, summary, token_hash, registered_ms, last_seen_ms, gone_ms, \
         replaced_by, agent"
    };
}

async fn lock_names(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(NAMES_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// Registers a session, inside the caller's transaction (see [`NewRegistration`] for the
/// rules). Takes the names lock first, so allocations never interleave.
pub(crate) async fn register(
    conn: &mut PgConnection,
    r: NewRegistration,
) -> Result<Registration, sqlx::Error> {
    lock_names(conn).await?;
    let NewRegistration {
        request: req,
        peer_id,
        token_hash,
        now,
    } = r;
    let base = identity::base_name(Path::new(&req.cwd), req.git_root.as_deref().map(Path::new));

    let same_pid: Option<PeerRecord> = sqlx::query_as::<_, PeerRow>(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE machine_id = $1 AND claude_pid = $2 \
         AND replaced_by IS NULL ORDER BY registered_ms DESC LIMIT 1"
    ))
    .bind(&req.machine_id)
    .bind(req.claude_pid as i64)
    .fetch_optional(&mut *conn)
    .await?
    .map(PeerRecord::from);
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
        // An ended session here, whose name is in this base's family; one with mail first.
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT p.name FROM peers p WHERE p.machine_id = $1 AND p.cwd = $2 \
             AND p.gone_ms IS NOT NULL AND p.replaced_by IS NULL \
             AND (p.name = $3 OR p.name LIKE $3 || '-%') \
             ORDER BY EXISTS (SELECT 1 FROM deliveries d WHERE d.to_peer = p.id \
                              AND d.state IN ('queued','leased')) DESC, p.gone_ms DESC",
        )
        .bind(&req.machine_id)
        .bind(&req.cwd)
        .bind(&base)
        .fetch_all(&mut *conn)
        .await?;
        for candidate in candidates {
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
    let ended: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM peers WHERE machine_id = $1 AND name = $2 AND cwd = $3 \
         AND gone_ms IS NOT NULL AND replaced_by IS NULL",
    )
    .bind(&req.machine_id)
    .bind(&name)
    .bind(&req.cwd)
    .fetch_all(&mut *conn)
    .await?;
    for id in ended {
        if !replaced.contains(&id) {
            replaced.push(id);
        }
    }

    let peer = PeerRecord {
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
        ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,NULL,NULL,$17)"
    ))
    .bind(&peer.id)
    .bind(&peer.name)
    .bind(&peer.host)
    .bind(&peer.machine_id)
    .bind(peer.claude_pid)
    .bind(peer.claude_start_time)
    .bind(peer.mcp_pid)
    .bind(&peer.session_id)
    .bind(&peer.cwd)
    .bind(&peer.git_root)
    .bind(&peer.git_branch)
    .bind(&peer.tty)
    .bind(&peer.summary)
    .bind(&peer.token_hash)
    .bind(peer.registered_ms)
    .bind(peer.last_seen_ms)
    .bind(peer.agent.as_str())
    .execute(&mut *conn)
    .await?;

    // The old rows first, then their waiting copies: a concurrent send holds the old row
    // (FOR SHARE) until it commits, so the move below sees whatever it stored.
    let mut inherited = 0u64;
    for old in &replaced {
        sqlx::query(
            "UPDATE peers SET replaced_by = $1, gone_ms = COALESCE(gone_ms, $2) WHERE id = $3",
        )
        .bind(&peer.id)
        .bind(now)
        .bind(old)
        .execute(&mut *conn)
        .await?;
        // A copy of a message the new registration already has (two old registrations
        // both got it) stays behind: one copy per reader.
        inherited += sqlx::query(
            "UPDATE deliveries d SET to_peer = $1, to_address = $2 \
             WHERE d.to_peer = $3 AND d.state IN ('queued','leased') \
             AND NOT EXISTS (SELECT 1 FROM deliveries n \
                             WHERE n.message_id = d.message_id AND n.to_peer = $1)",
        )
        .bind(&peer.id)
        .bind(peer.address())
        .bind(old)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    notify_peers(conn).await?;
    if inherited > 0 {
        notify_mail(conn, std::slice::from_ref(&peer.id)).await?;
    }
    Ok(Registration {
        peer,
        replaced,
        ended: pid_reused,
        inherited_messages: inherited,
    })
}

/// Whether a live peer other than `except` holds `name`, or it is reserved.
async fn name_taken(
    conn: &mut PgConnection,
    name: &str,
    except: Option<&str>,
) -> Result<bool, sqlx::Error> {
    if identity::is_reserved_name(name) {
        return Ok(true);
    }
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM peers WHERE gone_ms IS NULL AND name = $1 AND id <> $2)",
    )
    .bind(name)
    .bind(except.unwrap_or(""))
    .fetch_one(&mut *conn)
    .await
}

/// `base` if no live peer holds it and it is not reserved, else the first free `base-N`
/// (N ≥ 2).
async fn fresh_name(conn: &mut PgConnection, base: &str) -> Result<String, sqlx::Error> {
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM peers WHERE gone_ms IS NULL AND (name = $1 OR name LIKE $1 || '-%')",
    )
    .bind(base)
    .fetch_all(&mut *conn)
    .await?;
    let taken: HashSet<String> = taken.into_iter().collect();
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

/// Records a heartbeat (see [`peers_store::Store::heartbeat`]). The common case is one
/// statement; a revival takes the names lock in a transaction of the caller's.
pub(crate) async fn heartbeat_live(
    pool: &PgPool,
    peer_id: &str,
    now: i64,
) -> Result<Option<PeerRecord>, sqlx::Error> {
    let row: Option<PeerRow> = sqlx::query_as(concat!(
        "UPDATE peers SET last_seen_ms = $2 WHERE id = $1 AND gone_ms IS NULL \
         AND replaced_by IS NULL AND token_hash <> $3 RETURNING ",
        peer_columns!()
    ))
    .bind(peer_id)
    .bind(now)
    .bind(REVOKED)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(PeerRecord::from))
}

/// The heartbeat of a peer that the one-statement path did not find live: revives it when
/// `may_revive` (under its name if free, else a fresh one). Runs in a transaction.
pub(crate) async fn heartbeat_revive(
    conn: &mut PgConnection,
    peer_id: &str,
    now: i64,
    may_revive: bool,
) -> Result<Option<PeerRecord>, sqlx::Error> {
    lock_names(conn).await?;
    let Some(row) = by_id_for_update(conn, peer_id).await? else {
        return Ok(None);
    };
    if !row.token_valid() || (row.gone_ms.is_some() && !may_revive) {
        return Ok(None);
    }
    let revived = row.gone_ms.is_some();
    let name = if revived && name_taken(conn, &row.name, Some(&row.id)).await? {
        let base = identity::base_name(Path::new(&row.cwd), row.git_root.as_deref().map(Path::new));
        fresh_name(conn, &base).await?
    } else {
        row.name.clone()
    };
    sqlx::query("UPDATE peers SET last_seen_ms = $1, gone_ms = NULL, name = $2 WHERE id = $3")
        .bind(now)
        .bind(&name)
        .bind(peer_id)
        .execute(&mut *conn)
        .await?;
    if revived {
        notify_peers(conn).await?;
    }
    Ok(Some(PeerRecord {
        last_seen_ms: now,
        gone_ms: None,
        name,
        ..row
    }))
}

pub(crate) async fn set_summary(
    conn: &mut PgConnection,
    peer_id: &str,
    summary: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE peers SET summary = $1 WHERE id = $2")
        .bind(summary)
        .bind(peer_id)
        .execute(&mut *conn)
        .await?;
    notify_peers(conn).await
}

pub(crate) async fn unregister(
    conn: &mut PgConnection,
    peer_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE peers SET gone_ms = COALESCE(gone_ms, $1), token_hash = $2 WHERE id = $3")
        .bind(now)
        .bind(REVOKED)
        .bind(peer_id)
        .execute(&mut *conn)
        .await?;
    notify_peers(conn).await
}

/// Marks peers gone (their session ended); their mail stays queued.
pub(crate) async fn mark_gone(
    conn: &mut PgConnection,
    ids: &[String],
    now: i64,
) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let n = sqlx::query("UPDATE peers SET gone_ms = $1 WHERE id = ANY($2) AND gone_ms IS NULL")
        .bind(now)
        .bind(ids)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if n > 0 {
        notify_peers(conn).await?;
    }
    Ok(n)
}

async fn by_id_for_update(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<PeerRecord>, sqlx::Error> {
    let row: Option<PeerRow> = sqlx::query_as(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(PeerRecord::from))
}

pub(crate) async fn by_id(pool: &PgPool, id: &str) -> Result<Option<PeerRecord>, sqlx::Error> {
    let row: Option<PeerRow> = sqlx::query_as(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(PeerRecord::from))
}

pub(crate) async fn live(pool: &PgPool) -> Result<Vec<PeerRecord>, sqlx::Error> {
    let rows: Vec<PeerRow> = sqlx::query_as(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE gone_ms IS NULL ORDER BY name"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(PeerRecord::from).collect())
}

pub(crate) async fn unreplaced(pool: &PgPool) -> Result<Vec<PeerRecord>, sqlx::Error> {
    let rows: Vec<PeerRow> = sqlx::query_as(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE replaced_by IS NULL ORDER BY name, registered_ms DESC"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(PeerRecord::from).collect())
}

/// See [`peers_store::Store::resolve`].
pub(crate) async fn resolve(pool: &PgPool, who: &str) -> Result<Option<PeerRecord>, sqlx::Error> {
    let who = who.trim();
    if let Some(mut row) = by_id(pool, who).await? {
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
    let lower = who.to_lowercase();
    let (name, host) = match lower.rsplit_once('@') {
        Some((n, h)) => (n.to_string(), Some(h.to_string())),
        None => (lower, None),
    };
    let row: Option<PeerRow> = sqlx::query_as(concat!(
        "SELECT ",
        peer_columns!(),
        " FROM peers WHERE name = $1 AND ($2::text IS NULL OR lower(host) = $2) \
         AND replaced_by IS NULL ORDER BY gone_ms IS NOT NULL, registered_ms DESC LIMIT 1"
    ))
    .bind(&name)
    .bind(&host)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(PeerRecord::from))
}

/// `peer_id` and the registrations it replaced, transitively (at most 256).
pub(crate) async fn lineage(pool: &PgPool, peer_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let older: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE l(id) AS (SELECT $1::text UNION SELECT p.id FROM peers p \
         JOIN l ON p.replaced_by = l.id) SELECT id FROM l WHERE id <> $1 LIMIT 255",
    )
    .bind(peer_id)
    .fetch_all(pool)
    .await?;
    let mut ids = vec![peer_id.to_string()];
    ids.extend(older);
    Ok(ids)
}

pub(crate) async fn count_live(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM peers WHERE gone_ms IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// For each of `ids`, the registration its mail goes to now: itself, or the end of its
/// `replaced_by` chain. Every row on the way is locked `FOR SHARE` until the caller's
/// transaction ends, so a registration replacing one of them waits for the mail stored
/// meanwhile and moves it too.
pub(crate) async fn current_registrations(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let mut hops: HashMap<String, String> = HashMap::new();
    let mut frontier: Vec<String> = {
        let set: HashSet<&String> = ids.iter().collect();
        set.into_iter().cloned().collect()
    };
    for _ in 0..64 {
        if frontier.is_empty() {
            break;
        }
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, replaced_by FROM peers WHERE id = ANY($1) FOR SHARE")
                .bind(&frontier)
                .fetch_all(&mut *conn)
                .await?;
        frontier.clear();
        for (id, next) in rows {
            if let Some(next) = next
                && !hops.contains_key(&next)
                && next != id
            {
                frontier.push(next.clone());
                hops.insert(id, next);
            }
        }
    }
    let mut out = HashMap::new();
    for id in ids {
        let mut cur = id;
        for _ in 0..64 {
            match hops.get(cur) {
                Some(n) => cur = n,
                None => break,
            }
        }
        out.insert(id.clone(), cur.clone());
    }
    Ok(out)
}
