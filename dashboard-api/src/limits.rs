//! What one client may hold and send: the HTTP server with its connection limits, and the
//! layers that bound requests and live streams. Every figure comes from `[api.limits]`.
//!
//! | limit | where | what a client sees |
//! |---|---|---|
//! | `header_timeout_s` | connection (hyper) | the connection is closed |
//! | `max_connections` | accept loop ([`serve`]) | `503` with `Retry-After`, then closed |
//! | `request_timeout_s` | layer on every route but the live stream | `408` |
//! | `max_streams`, `max_streams_per_user` | layer on the live stream ([`live_slot`]) | `503` / `429` |
//! | body size (1 MiB) | layer on every route | `413` |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

use crate::auth::Session;
use crate::error::ApiError;
use crate::ApiState;

/// Live streams open now, in all and per user.
#[derive(Debug)]
pub struct StreamSlots {
    total: usize,
    per_user: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl StreamSlots {
    pub fn new(total: u32, per_user: u32) -> Self {
        Self {
            total: total.max(1) as usize,
            per_user: per_user.max(1) as usize,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Streams open now, in all.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// A slot for one more stream of `user`, held until the stream ends.
    pub fn take(self: &Arc<Self>, user: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let all: usize = open.values().sum();
        if all >= self.total {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "{all} live streams are open, the most this pantau serves \
                     (api.limits.max_streams); try again later"
                ),
            );
            e.retry_after = Some(5);
            return Err(e);
        }
        let mine = open.entry(user.to_string()).or_default();
        if *mine >= self.per_user {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "user \"{user}\" has {} live streams open, the most one user may \
                     (api.limits.max_streams_per_user); close a console tab or wall first",
                    *mine
                ),
            );
            e.retry_after = Some(5);
            return Err(e);
        }
        *mine += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            user: user.to_string(),
        })
    }
}

/// One open stream; given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    user: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// Layer of the live stream: a slot per stream, held by the response body, so it is given back
/// when the client goes or the stream ends.
pub async fn live_slot(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let session = match Session::from_request_parts(&mut parts, &s).await {
        Ok(session) => session,
        Err(e) => return e.into_response(),
    };
    let slot = match s.streams.take(&session.user) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &slot;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// Layer of every route but the live stream: a request (its body included) that takes longer
/// than `api.limits.request_timeout_s` is answered 408.
pub async fn request_timeout(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    let after = Duration::from_secs(s.settings.limits.request_timeout_s.into());
    match tokio::time::timeout(after, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            // The rest of a slow body is not worth waiting for.
            let mut response = timed_out(after).into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

fn timed_out(after: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request took longer than {} s (api.limits.request_timeout_s); send the body \
             at once, or narrow the query",
            after.as_secs()
        ),
    )
}

/// Serves `state`'s router on `listener` until `shutdown` completes, with the connection limits
/// of `[api.limits]`. Each request carries its client's address (`ConnectInfo`). Open
/// connections get 10 s to finish after `shutdown`; live streams end by themselves then.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.settings.limits.clone();
    let router = crate::app(state);
    let connections = Arc::new(tokio::sync::Semaphore::new(
        limits.max_connections.max(1) as usize
    ));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_s.into()));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Duration::from_secs(30));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.map(Body::new)
                });
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open 10 s after stopping; closing them");
    }
    Ok(())
}

/// Answers a connection over `api.limits.max_connections` with 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, max: u32) {
    let body = format!(
        "{{\"code\":\"too_many_connections\",\"message\":\"{max} connections are open, the \
         most this pantau accepts (api.limits.max_connections); try again in a moment\"}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
