//! Serving a router on a listener with the connection-level limits of
//! [`ServerLimits`]: HTTP/1.1 only (hyper), a header read timeout (a client
//! that sends its headers a byte a second is cut off, and so is an idle
//! kept-alive connection), a request head of at most [`HEAD_LIMIT_BYTES`]
//! and [`HEADERS_MAX`] headers (`431` beyond), at most `connections_max` connections at once
//! (further ones wait in the kernel's queue until one closes), each
//! request handed the client's address (`ConnectInfo`), and a graceful
//! shutdown that ends within `shutdown_timeout`: on the signal the listener
//! stops accepting, open connections finish their request and close, and
//! whatever is still open when the time is up is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::limits::{HEAD_LIMIT_BYTES, HEADERS_MAX, ServerLimits};

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Serves `router` on `listener` until `stop` turns true, then shuts down
/// within `limits.shutdown_timeout`.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: &ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HEAD_LIMIT_BYTES)
        .max_headers(HEADERS_MAX)
        .keep_alive(true);
    let mut open = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        while open.try_join_next().is_some() {}
        let router = router.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        open.spawn(async move {
            let _permit = permit;
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(remote));
                    let router = router.clone();
                    async move {
                        let response = router.oneshot(request.map(Body::new)).await;
                        Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                    }
                });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        debug!(%remote, %error, "connection ended");
                    }
                }
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while open.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = open.len(),
            timeout_secs = limits.shutdown_timeout.as_secs(),
            "shutdown timeout: closing the connections still open"
        );
        open.abort_all();
        while open.join_next().await.is_some() {}
    }
}
