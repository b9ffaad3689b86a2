//! A real agent in process, shipping to a collector on loopback: what the end-to-end tests of
//! alerting, remediation and complaints start the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailpulse_agent::runtime::{AgentError, AgentRunOptions, run_agent};
use mailpulse_agent::secret::Secret;

/// A running agent; [`InProcessAgent::stop`] ends it.
pub struct InProcessAgent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), AgentError>>>,
}

impl InProcessAgent {
    /// Starts agent `agent_id` of `host` with `token`, tailing `files`, its state under `dir`,
    /// shipping every second to `grpc`; `configure` sets the rest.
    pub fn spawn(
        grpc: SocketAddr,
        (agent_id, host, token): (&str, &str, &str),
        files: Vec<PathBuf>,
        dir: &Path,
        configure: impl FnOnce(&mut AgentRunOptions),
    ) -> Self {
        let mut opts = AgentRunOptions::new(
            agent_id,
            host,
            files,
            dir.join("agent"),
            format!("http://{grpc}"),
        );
        opts.token = Some(Secret::new(token));
        opts.flush_interval_secs = 1;
        configure(&mut opts);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_agent(opts, async {
            let _ = stopped.await;
        }));
        InProcessAgent {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops it and waits for it (bounded: 30 s).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

/// An empty log file under `dir` for an agent that needs one to tail.
pub fn empty_log(dir: &Path) -> PathBuf {
    let log = dir.join("empty.log");
    std::fs::write(&log, "").expect("log");
    log
}
