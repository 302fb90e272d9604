//! Script tokens (`script_tokens`): stored by hash, looked up on every request.

use peers_store::{NewScriptToken, ScriptToken};
use sqlx::{FromRow, PgConnection, PgPool};

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

/// Stores a token unless an unrevoked one has its name (inside the caller's transaction).
pub(crate) async fn create(
    conn: &mut PgConnection,
    t: NewScriptToken,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO script_tokens (name, token_hash, post_to, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5) \
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

pub(crate) async fn list(pool: &PgPool) -> Result<Vec<ScriptToken>, sqlx::Error> {
    let rows: Vec<TokenRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM script_tokens ORDER BY name"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn by_hash(pool: &PgPool, hash: &str) -> Result<Option<ScriptToken>, sqlx::Error> {
    let row: Option<TokenRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM script_tokens WHERE token_hash = $1"
    ))
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// Revokes the named token if it is not revoked yet (inside the caller's transaction).
pub(crate) async fn revoke(
    conn: &mut PgConnection,
    name: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE script_tokens SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL",
    )
    .bind(now)
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a use (inside the caller's transaction).
pub(crate) async fn touch(
    conn: &mut PgConnection,
    hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE script_tokens SET last_used_ms = $1 WHERE token_hash = $2")
        .bind(now)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
