//! Loopback ports and bounded waiting.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A loopback TCP port that was free a moment ago.
///
/// The kernel picks it; the listener is closed before returning, so the port is only very likely to
/// stay free until the caller binds it (the same race every "free port" helper has).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 works on every test machine")
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Polls `check` every `interval` until it returns `Some`, for at most `timeout`.
///
/// Returns the last value seen as `Err` when time runs out, so the caller can say what it waited for
/// and what it saw instead.
pub fn poll_until<T, F>(timeout: Duration, interval: Duration, mut check: F) -> Result<T, Elapsed>
where
    F: FnMut() -> Option<T>,
{
    let start = Instant::now();
    let max_rounds = (timeout.as_millis() / interval.as_millis().max(1)) as usize + 1;
    for _ in 0..max_rounds {
        if let Some(value) = check() {
            return Ok(value);
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(interval);
    }
    Err(Elapsed {
        after: start.elapsed(),
    })
}

/// A bounded wait ran out.
#[derive(Debug, Clone, Copy)]
pub struct Elapsed {
    pub after: Duration,
}

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gave up after {:.1}s", self.after.as_secs_f64())
    }
}

impl std::error::Error for Elapsed {}
