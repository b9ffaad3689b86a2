//! Accepted TCP connections, bounded (shared by the gRPC and HTTP listeners): at most
//! `max_connections` open at once (the ones beyond are closed at once and counted), an optional
//! deadline for the first request (a peer that connects and sends nothing useful is closed), and
//! an optional limit on how long a write may stall (a peer that stops reading is closed).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::{debug, warn};

/// What a listener allows one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// A connection must have made its first request within this long after accept (the
    /// server marks it through [`ConnectionInfo::request_started`]); None = no deadline.
    pub first_request_timeout: Option<Duration>,
    /// A write that makes no progress for this long closes the connection; None = no limit.
    pub write_stall_timeout: Option<Duration>,
}

/// Counters of one listener (exposed per listener at `/metrics`).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_over_limit: AtomicU64,
    /// Connections closed because they made no request in time or stopped reading.
    pub timed_out: AtomicU64,
}

impl ListenerStats {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// (accepted, open, refused over the limit, timed out).
    pub fn read(&self) -> (u64, u64, u64, u64) {
        (
            Self::get(&self.accepted),
            Self::get(&self.open),
            Self::get(&self.refused_over_limit),
            Self::get(&self.timed_out),
        )
    }
}

/// A TCP listener that hands out [`GuardedStream`]s within [`ConnectionLimits`].
#[derive(Debug)]
pub struct GuardedListener {
    listener: TcpListener,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    stats: Arc<ListenerStats>,
    /// Pause after an accept error that is not about one connection (out of descriptors).
    backoff: Option<Pin<Box<Sleep>>>,
}

impl GuardedListener {
    /// Binds `addr`.
    pub fn bind(
        addr: SocketAddr,
        limits: ConnectionLimits,
        stats: Arc<ListenerStats>,
    ) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener: TcpListener::from_std(listener)?,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            stats,
            backoff: None,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection within the limits (refused ones are closed and counted on the way).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<GuardedStream> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            let (stream, peer) = match ready!(self.listener.poll_accept(cx)) {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE and the like: retrying at once would spin.
                    warn!(error = %e, "accept failed; pausing the listener briefly");
                    self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(100))));
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.stats
                    .refused_over_limit
                    .fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "connection refused: connection limit reached");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            self.stats.open.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(GuardedStream::new(
                stream,
                peer,
                permit,
                &self.limits,
                &self.stats,
            ));
        }
    }

    /// Waits for the next connection within the limits.
    pub async fn accept(&mut self) -> GuardedStream {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }
}

/// As a stream of connections (what tonic serves).
impl tokio_stream::Stream for GuardedListener {
    type Item = io::Result<GuardedStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_accept(cx)
            .map(|stream| Some(Ok(stream)))
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// What the server learns about a connection with each request.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer.
    pub remote_addr: SocketAddr,
    request_started: Arc<AtomicBool>,
}

impl ConnectionInfo {
    /// The connection has made a request: its first-request deadline no longer applies.
    pub fn request_started(&self) {
        self.request_started.store(true, Ordering::Relaxed);
    }
}

/// An accepted connection holding its slot under the connection limit until dropped.
#[derive(Debug)]
pub struct GuardedStream {
    inner: TcpStream,
    info: ConnectionInfo,
    _permit: OwnedSemaphorePermit,
    stats: Arc<ListenerStats>,
    first_request: Option<Pin<Box<Sleep>>>,
    write_stall_timeout: Option<Duration>,
    write_stall: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl GuardedStream {
    fn new(
        inner: TcpStream,
        remote_addr: SocketAddr,
        permit: OwnedSemaphorePermit,
        limits: &ConnectionLimits,
        stats: &Arc<ListenerStats>,
    ) -> Self {
        Self {
            inner,
            info: ConnectionInfo {
                remote_addr,
                request_started: Arc::new(AtomicBool::new(false)),
            },
            _permit: permit,
            stats: stats.clone(),
            first_request: limits
                .first_request_timeout
                .map(|timeout| Box::pin(tokio::time::sleep(timeout))),
            write_stall_timeout: limits.write_stall_timeout,
            write_stall: None,
            timed_out: false,
        }
    }

    /// What the server sees of this connection.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    fn timeout(&mut self, what: &str) -> io::Error {
        if !self.timed_out {
            self.timed_out = true;
            self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            debug!(peer = %self.info.remote_addr, "closing connection: {what}");
        }
        io::Error::new(io::ErrorKind::TimedOut, what.to_string())
    }

    /// Err once the first-request deadline passed without a request.
    fn check_first_request(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = self.first_request.as_mut() else {
            return Ok(());
        };
        if self.info.request_started.load(Ordering::Relaxed) {
            self.first_request = None;
            return Ok(());
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Err(self.timeout("no request within the handshake timeout"));
        }
        Ok(())
    }

    /// Tracks how long writes stay pending; Err past the stall timeout.
    fn check_write<T>(&mut self, cx: &mut Context<'_>, result: Poll<T>) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(value) => {
                self.write_stall = None;
                Poll::Ready(Ok(value))
            }
            Poll::Pending => {
                let Some(timeout) = self.write_stall_timeout else {
                    return Poll::Pending;
                };
                let stall = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stall.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.timeout("the peer stopped reading")));
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_first_request(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_first_request(cx)?;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        match this.check_write(cx, result) {
            Poll::Ready(Ok(written)) => Poll::Ready(written),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_first_request(cx)?;
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        match this.check_write(cx, result) {
            Poll::Ready(Ok(written)) => Poll::Ready(written),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        match this.check_write(cx, result) {
            Poll::Ready(Ok(flushed)) => Poll::Ready(flushed),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for GuardedStream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(max: usize, first_request_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            first_request_timeout: Some(Duration::from_millis(first_request_ms)),
            write_stall_timeout: None,
        }
    }

    #[tokio::test]
    async fn silent_peers_are_closed_and_the_cap_holds() {
        let stats = Arc::new(ListenerStats::default());
        let mut listener = GuardedListener::bind(
            "127.0.0.1:0".parse().expect("addr"),
            limits(2, 200),
            stats.clone(),
        )
        .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _a = TcpStream::connect(addr).await.expect("connect");
        let _b = TcpStream::connect(addr).await.expect("connect");
        let mut first = listener.accept().await;
        let second = listener.accept().await;
        // The third is over the cap: closed at once, the listener keeps waiting.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let accept = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(accept.is_err(), "no third connection is handed out");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert_eq!(stats.read(), (2, 2, 1, 0));

        // A peer that never makes a request: reads fail after the deadline.
        let started = std::time::Instant::now();
        let error = first.read(&mut byte).await.expect_err("timed out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        // One that did is left alone.
        second.info().request_started();
        let mut second = second;
        let mut client = _b;
        client.write_all(b"x").await.expect("write");
        assert_eq!(second.read(&mut byte).await.expect("read"), 1);
        drop(first);
        assert_eq!(stats.read(), (2, 1, 1, 1));
    }
}
