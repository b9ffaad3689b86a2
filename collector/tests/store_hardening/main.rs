//! Store hardening against one agent, one batch or one full disk: incarnations, series quotas
//! and expiry, DNS record caps and pruning, indexed DNS change queries, I/O errors. In-process
//! collector on 127.0.0.1, real gRPC clients built from the proto.

mod disk_full;
mod dns_limits;
mod incarnation;
mod quotas;
#[allow(dead_code)]
#[path = "../collector/support.rs"]
mod support;

use std::net::SocketAddr;

use mailpulse_proto::v1::{AgentMessage, Hello, agent_message};

use support::{AgentStream, client};

/// Hello of agent `agent_id` on `host` with `incarnation`.
pub fn hello_with(agent_id: &str, host: &str, incarnation: &str) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            agent_id: agent_id.into(),
            host: host.into(),
            version: "0.1.0".into(),
            capabilities: vec!["postfix-logs".into()],
            incarnation: incarnation.into(),
        })),
    }
}

/// Opens a stream with `token` and says `hello`.
pub async fn open_with(addr: SocketAddr, token: &str, hello: AgentMessage) -> AgentStream {
    let mut client = client(addr).await;
    let mut stream = AgentStream::open(&mut client, Some(token))
        .await
        .expect("stream opens");
    stream.send(hello).await;
    stream
}

/// Now, Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// `GET path` as JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = support::http_get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}
