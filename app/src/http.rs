//! The HTTP server loop: axum's application on hyper (HTTP/1.1 and HTTP/2), with the
//! head limits of `cloudsync_api::hygiene` and a graceful shutdown.
//!
//! Why not `axum::serve`: it does not expose hyper's limits. Requests heads up to
//! [`hygiene::SERVER_HEAD_BYTES`] and [`hygiene::SERVER_HEADERS`] fields are parsed here,
//! so the API answers anything over its own, smaller limits with a JSON error and a
//! code; a head that is still being sent after [`HEAD_TIMEOUT`] closes the connection.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use cloudsync_api::hygiene;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Longest a client may take to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(hygiene::SERVER_HEAD_BYTES)
        .max_headers(hygiene::SERVER_HEADERS);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // A failed accept (out of file descriptors, a reset before accept) must
                // not stop the server; back off briefly and go on.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer's address reaches handlers as axum's `ConnectInfo` (failed
        // authentications are counted per client address).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<_>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after the drain period; closing them");
    }
    Ok(())
}
