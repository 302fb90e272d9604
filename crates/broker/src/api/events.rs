//! `GET /v1/events`: the live feed as Server-Sent Events, for the human (user secret, hub
//! token or a dashboard session; a peer token is refused: the feed shows everyone's mail).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use futures_util::Stream;
use peers_core::wire::ResyncReason;
use tokio::sync::broadcast::error::RecvError;

use crate::SharedState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::events::{self, Opened};

/// How long a client waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(2);

pub async fn stream(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ApiError> {
    caller.require_user()?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let Opened { rx, replay, missed } = state.feed.open(last_id);
    let mut first = vec![sse::Event::default().retry(RETRY).comment("peers events")];
    if missed {
        first.push(sse::Event::default().data(events::resync_json(ResyncReason::Missed)));
    }
    first.extend(replay.into_iter().map(|s| {
        sse::Event::default()
            .id(state.feed.id(s.seq))
            .data(&*s.json)
    }));
    let stop = state.shutdown.subscribe();
    let live =
        futures_util::stream::unfold((state, rx, stop), |(state, mut rx, mut stop)| async move {
            let event = tokio::select! {
                got = rx.recv() => match got {
                    Ok(s) => sse::Event::default().id(state.feed.id(s.seq)).data(&*s.json),
                    Err(RecvError::Lagged(_)) => {
                        sse::Event::default().data(events::resync_json(ResyncReason::Missed))
                    }
                    Err(RecvError::Closed) => return None,
                },
                // Ends with the broker, so a graceful shutdown does not wait for streams.
                _ = stop.wait_for(|v| *v) => return None,
            };
            Some((Ok(event), (state, rx, stop)))
        });
    let head = futures_util::stream::iter(first.into_iter().map(Ok));
    Ok(Sse::new(futures_util::StreamExt::chain(head, live)).keep_alive(KeepAlive::default()))
}
