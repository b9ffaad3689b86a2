//! The collector's own `agent_down` alert: an agent that stops talking is an alert at
//! `/api/v1/alerts` once it has been silent for `agent_down_after_secs`, with a runbook and a
//! recommendation; it resolves when the agent is back.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

async fn agent_down(collector: &mailpulse_collector::RunningCollector) -> Option<Value> {
    let (status, body) = http_get(collector.http_addr(), "/api/v1/alerts").await;
    assert_eq!(status, 200, "{body}");
    let alerts: Vec<Value> = serde_json::from_str(&body).expect("JSON");
    alerts
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "agent_down")
}

/// Polls until `agent_down`'s state is `state` (bounded: 15 s).
async fn wait_state(collector: &mailpulse_collector::RunningCollector, state: &str) -> Value {
    for _ in 0..75 {
        if let Some(alert) = agent_down(collector).await
            && alert["state"] == state
        {
            return alert;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "agent_down never {state}: {:?}",
        agent_down(collector).await
    );
}

/// An agent that sends an empty batch every 300 ms until the returned sender is dropped.
fn talking(mut agent: AgentStream) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // Bounded: at most a minute of talking.
        for seq in 1..=200 {
            // Stopped: a message, or the sender dropped.
            if !matches!(
                stopped.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
            ) {
                break;
            }
            let _ = agent.batch(seq, Vec::new()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    stop
}

#[tokio::test]
async fn a_silent_agent_is_an_alert_until_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.agent_down_after_secs = 2;
    cfg.detect.interval_secs = 1;
    let collector = start(cfg).await;
    let first = talking(AgentStream::mx1(collector.grpc_addr()).await);
    // Past the start-up grace, talking: up.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        agent_down(&collector).await.is_none(),
        "a talking agent is up"
    );
    drop(first);
    let alert = wait_state(&collector, "firing").await;
    assert_eq!(alert["labels"]["agent"], "mx1", "{alert}");
    assert_eq!(alert["labels"]["host"], "mx1.example", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/runbooks/agent_down.md")),
        "{alert}"
    );
    assert!(
        alert["annotations"]["recommendation"]
            .as_str()
            .is_some_and(|r| r.contains("has sent nothing")),
        "{alert}"
    );
    let back = talking(AgentStream::mx1(collector.grpc_addr()).await);
    wait_state(&collector, "resolved").await;
    drop(back);
    collector.shutdown().await.expect("clean shutdown");
}
