//! The `[http]` section of the collector configuration: what the HTTP listener (`/metrics`,
//! `/healthz`, `/api/v1/*`) allows one client.

use serde::Deserialize;

/// Connections, timeouts and response sizes of the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Open connections at most; the ones beyond are closed at once.
    pub max_connections: usize,
    /// A request's headers must arrive within this many seconds (also bounds an idle
    /// keep-alive connection).
    pub header_read_timeout_secs: u64,
    /// A request not answered within this many seconds gets 503.
    pub request_timeout_secs: u64,
    /// A response write that makes no progress for this many seconds closes the connection.
    pub write_stall_timeout_secs: u64,
    /// `/metrics` renders at once; further scrapes wait for a slot.
    pub max_concurrent_metrics_renders: usize,
    /// How long a scrape waits for a render slot before it gets 503.
    pub metrics_queue_timeout_secs: u64,
    /// Most entries one `/api/v1/*` list returns, whatever `limit` asks.
    pub max_list_items: usize,
    /// Most DNS changes one `/api/v1/dns/changes` returns (each holds two answers of up to
    /// 64 KiB).
    pub max_dns_changes: usize,
    /// Most bytes of one `/api/v1/*` JSON body; a longer list is cut and the response says so
    /// (`X-Mailpulse-Truncated: true`).
    pub max_response_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            write_stall_timeout_secs: 30,
            max_concurrent_metrics_renders: 2,
            metrics_queue_timeout_secs: 5,
            max_list_items: 1_000,
            max_dns_changes: 200,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}
