//! `GET /v1/export`: every message on the broker as JSON lines, for backups and audits (the
//! human only). The answer streams: the store is read [`PAGE`] messages at a time in id
//! order, so a million messages never sit in memory at once.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use peers_core::wire::{ExportQuery, ExportedMessage};

use super::extract::ApiQuery;
use crate::SharedState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Messages read from the store per page.
const PAGE: u32 = 500;

/// What the stream has left to do.
struct Cursor {
    state: SharedState,
    since_ms: i64,
    /// The page to write next (the first one is read before the answer starts, so a store
    /// that cannot be read gets its error status).
    page: Vec<ExportedMessage>,
}

pub async fn export(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    caller.require_user()?;
    let since_ms = q.since_ms.unwrap_or(0);
    let page = state.store.export_page(0, since_ms, PAGE).await?;
    let cursor = Cursor {
        state,
        since_ms,
        page,
    };
    let lines = futures_util::stream::unfold(Some(cursor), |cursor| async move {
        let mut c = cursor?;
        let last = c.page.last()?.message.message_id;
        let mut chunk = Vec::with_capacity(c.page.len() * 512);
        for m in &c.page {
            serde_json::to_writer(&mut chunk, m).expect("an exported message serialises");
            chunk.push(b'\n');
        }
        let full = c.page.len() == PAGE as usize;
        c.page = Vec::new();
        if full {
            match c.state.store.export_page(last, c.since_ms, PAGE).await {
                Ok(next) => c.page = next,
                Err(e) => {
                    // The status line is sent: breaking the stream is how the client learns
                    // the export is incomplete.
                    tracing::warn!(error = %e, after = last, "export stopped");
                    return Some((Err(std::io::Error::other("export stopped")), None));
                }
            }
        }
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), Some(c)))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
