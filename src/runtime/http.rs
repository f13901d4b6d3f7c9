//! The hub's HTTP server: hyper's HTTP/1 connection settings and tower
//! layers around the routes, so that no sender can hold the hub's
//! resources for long.
//!
//! - A client must send a whole request head within `header_read_timeout`,
//!   counted from the moment the server waits for it: on a new connection
//!   and between requests on a kept-alive one. A half-sent head (slowloris)
//!   or an idle keep-alive connection is closed then (hyper runs the one
//!   timer for both cases).
//! - A request must be answered, body read included, within
//!   `request_timeout` (408 otherwise). Server-sent event streams answer at
//!   once and are not cut by it.
//! - At most `max_connections` connections are served at once; further
//!   ones wait in the listen backlog.
//! - Body limits are per route (webhooks: their `max_body_bytes`, bounded by
//!   the broker's message size; the desk: 16 KiB); everything else takes
//!   at most 64 KiB.

use crate::config::HttpConfig;
use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// The body limit of routes that set none of their own.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown`, then lets the open
/// connections finish their current request (graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &HttpConfig,
    shutdown: CancellationToken,
) {
    let app = app
        .layer(axum::extract::DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(RequestBodyTimeoutLayer::new(config.request_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ));
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let header_read_timeout = config.header_read_timeout;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, not spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Handlers that need the sender's address (the public window's
        // rate limit) read it as `ConnectInfo`.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(64 * 1024)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection closed");
            }
        });
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.request_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open at shutdown were closed");
    }
}

/// Binds `[http] listen` and serves `app` until `shutdown`; an address it
/// cannot bind is an error naming it.
pub(super) async fn start(
    http: &crate::config::HttpConfig,
    app: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> crate::error::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(&http.listen)
        .await
        .map_err(|e| {
            crate::error::Error::io(format!("listening on {} ([http] listen)", http.listen), e)
        })?;
    tracing::info!(listen = %http.listen, "HTTP server listening");
    let http = http.clone();
    Ok(tokio::spawn(async move {
        serve(listener, app, &http, shutdown).await;
    }))
}
