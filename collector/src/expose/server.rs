//! Serving the HTTP router on a [`GuardedListener`]: HTTP/1.1 with a header-read timeout (which
//! also ends idle keep-alive connections), graceful shutdown of open connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::debug;

use super::config::HttpConfig;
use crate::net::{GuardedListener, ListenerStats};

/// Serves `router` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    mut listener: GuardedListener,
    router: Router,
    config: &HttpConfig,
    stats: Arc<ListenerStats>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_read_timeout_secs.max(1)))
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let (close_tx, close_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            stream = listener.accept() => {
                let service = TowerToHyperService::new(router.clone());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let mut close = close_rx.clone();
                let stats = stats.clone();
                connections.spawn(async move {
                    tokio::pin!(connection);
                    let result = tokio::select! {
                        result = connection.as_mut() => result,
                        _ = close.changed() => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(e) = result {
                        if e.is_timeout() {
                            stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        }
                        debug!(error = %e, "HTTP connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    while connections.join_next().await.is_some() {}
}
