//! Supervision of the agent's background tasks: a task that fails (an outbox error on a full
//! disk, a panic) is restarted after a backoff instead of vanishing, and its state is reported
//! as self-metrics: `agent_task_up{task}` (1 while it runs, 0 while it waits to be restarted)
//! and `agent_task_failures{task}` (failures since the start), and logged.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::AgentError;
use crate::ship::lock;

/// Task names as they appear in the `task` label.
pub(crate) mod task {
    /// The log reader thread (tailer → aggregator → outbox).
    pub const LOG_READER: &str = "log_reader";
    /// The queue and capacity probes.
    pub const HOST_PROBES: &str = "host_probes";
    /// The DNS prober and its batcher.
    pub const DNS_PROBER: &str = "dns_prober";
    /// Committing acknowledgements (checkpoint file, batch deletion) in the shipper.
    pub const CHECKPOINTS: &str = "checkpoints";
}

/// First delay before a failed task is restarted; it doubles per failure in a row.
const RESTART_BASE: Duration = Duration::from_secs(1);
/// Longest delay before a restart.
const RESTART_MAX: Duration = Duration::from_secs(60);
/// How often a waiting thread looks at its cancellation token.
const STOP_TICK: Duration = Duration::from_millis(100);

/// Up/down and failure counts of the background tasks, shared with the log reader, which
/// reports them.
#[derive(Debug, Default)]
pub(crate) struct TaskHealth {
    tasks: Mutex<BTreeMap<&'static str, TaskState>>,
}

#[derive(Debug, Clone, Copy)]
struct TaskState {
    up: bool,
    failures: u64,
}

impl TaskHealth {
    /// Marks `task` as running (registering it on first use).
    pub fn up(&self, task: &'static str) {
        lock(&self.tasks)
            .entry(task)
            .or_insert(TaskState {
                up: true,
                failures: 0,
            })
            .up = true;
    }

    /// Counts a failure of `task` and marks it down until it runs again.
    pub fn failed(&self, task: &'static str, error: &dyn std::fmt::Display) {
        let failures = {
            let mut tasks = lock(&self.tasks);
            let state = tasks.entry(task).or_insert(TaskState {
                up: false,
                failures: 0,
            });
            state.up = false;
            state.failures += 1;
            state.failures
        };
        tracing::error!(task, failures, error = %error, "agent task failed; restarting it after a pause");
    }

    /// Sets `task`'s state as another component keeps it (the shipper's commit health).
    pub fn set(&self, task: &'static str, up: bool, failures: u64) {
        lock(&self.tasks).insert(task, TaskState { up, failures });
    }

    /// Failures and up state per task.
    pub fn snapshot(&self) -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, bool>) {
        let tasks = lock(&self.tasks);
        (
            tasks.iter().map(|(k, s)| (*k, s.failures)).collect(),
            tasks.iter().map(|(k, s)| (*k, s.up)).collect(),
        )
    }
}

/// Doubling delays between restarts, reset once a run lasted a while.
#[derive(Debug)]
pub(crate) struct RestartBackoff {
    next: Duration,
}

impl RestartBackoff {
    pub fn new() -> Self {
        Self { next: RESTART_BASE }
    }

    /// The delay before the next restart.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(RESTART_MAX);
        delay
    }

    /// After a success: the next failure waits the base delay again.
    pub fn reset(&mut self) {
        self.next = RESTART_BASE;
    }
}

/// Sleeps `delay` on the calling thread, waking early when `stop` is cancelled; returns whether
/// it was.
pub(crate) fn sleep_unless_stopped(delay: Duration, stop: &CancellationToken) -> bool {
    let until = std::time::Instant::now() + delay;
    while !stop.is_cancelled() {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(STOP_TICK));
    }
    true
}

/// Runs `run` on the calling thread until it returns `Ok` (it stopped because `stop` was
/// cancelled) or `stop` is cancelled; a failure is reported and `run` is called again after a
/// backoff. The task counts as up when first started; after a failure `run` marks it up itself
/// once it works again.
pub(crate) fn supervise_blocking(
    task: &'static str,
    health: &TaskHealth,
    stop: &CancellationToken,
    mut run: impl FnMut(&mut RestartBackoff) -> Result<(), AgentError>,
) {
    let mut backoff = RestartBackoff::new();
    health.up(task);
    loop {
        match run(&mut backoff) {
            Ok(()) => return,
            Err(e) => health.failed(task, &e),
        }
        if sleep_unless_stopped(backoff.next_delay(), stop) {
            return;
        }
    }
}

/// The async counterpart of [`supervise_blocking`]: `start` spawns one run of the task (an
/// error from `start` itself is a configuration error and ends the supervision with it).
pub(crate) async fn supervise<F>(
    task: &'static str,
    health: &TaskHealth,
    stop: &CancellationToken,
    mut start: F,
) -> Result<(), AgentError>
where
    F: FnMut() -> Result<tokio::task::JoinHandle<Result<(), AgentError>>, AgentError>,
{
    let mut backoff = RestartBackoff::new();
    health.up(task);
    loop {
        let handle = start()?;
        let started = tokio::time::Instant::now();
        let outcome = match handle.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(e) => AgentError::Task(e.to_string()),
        };
        if stop.is_cancelled() {
            return Ok(());
        }
        health.failed(task, &outcome);
        if started.elapsed() >= RESTART_MAX {
            backoff.reset();
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_and_restarted_until_success() {
        let health = TaskHealth::default();
        let stop = CancellationToken::new();
        let mut runs = 0;
        let started = std::time::Instant::now();
        supervise_blocking("t", &health, &stop, |_| {
            runs += 1;
            if runs < 3 {
                Err(AgentError::Task(format!("run {runs} failed")))
            } else {
                health.up("t");
                Ok(())
            }
        });
        assert_eq!(runs, 3);
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "1 s + 2 s of backoff"
        );
        let (failures, up) = health.snapshot();
        assert_eq!(failures["t"], 2);
        assert!(up["t"]);
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let mut b = RestartBackoff::new();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), RESTART_BASE);
    }
}
