//! Script tokens (`script_tokens`): stored by hash, looked up on every request.

use peers_store::{NewScriptToken, ScriptToken};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

use super::Error;

#[derive(Debug, FromRow)]
struct TokenRow {
    name: String,
    token_hash: String,
    post_to: String,
    created_ms: i64,
    expires_ms: Option<i64>,
    last_used_ms: Option<i64>,
    revoked_ms: Option<i64>,
}

impl From<TokenRow> for ScriptToken {
    fn from(r: TokenRow) -> ScriptToken {
        ScriptToken {
            name: r.name,
            token_hash: r.token_hash,
            post_to: r.post_to.lines().map(str::to_string).collect(),
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
            last_used_ms: r.last_used_ms,
            revoked_ms: r.revoked_ms,
        }
    }
}

/// The columns of [`TokenRow`].
macro_rules! columns {
    () => {
        "name, token_hash, post_to, created_ms, expires_ms, last_used_ms, revoked_ms"
    };
}

/// Stores a token unless an unrevoked one has its name (runs in the writer).
pub async fn create(conn: &mut SqliteConnection, t: NewScriptToken) -> Result<bool, Error> {
    let done = sqlx::query(
        "INSERT INTO script_tokens (name, token_hash, post_to, created_ms, expires_ms) \
         VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, \
           post_to = excluded.post_to, created_ms = excluded.created_ms, \
           expires_ms = excluded.expires_ms, last_used_ms = NULL, revoked_ms = NULL \
         WHERE script_tokens.revoked_ms IS NOT NULL",
    )
    .bind(&t.name)
    .bind(&t.token_hash)
    .bind(t.post_to.join("\n"))
    .bind(t.created_ms)
    .bind(t.expires_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list(pool: &SqlitePool) -> Result<Vec<ScriptToken>, Error> {
    let rows: Vec<TokenRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM script_tokens ORDER BY name"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn by_hash(pool: &SqlitePool, hash: &str) -> Result<Option<ScriptToken>, Error> {
    let row: Option<TokenRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM script_tokens WHERE token_hash = ?"
    ))
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// Revokes the named token if it is not revoked yet (runs in the writer).
pub async fn revoke(conn: &mut SqliteConnection, name: &str, now: i64) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE script_tokens SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL",
    )
    .bind(now)
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a use (runs in the writer).
pub async fn touch(conn: &mut SqliteConnection, hash: &str, now: i64) -> Result<(), Error> {
    sqlx::query("UPDATE script_tokens SET last_used_ms = ? WHERE token_hash = ?")
        .bind(now)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
