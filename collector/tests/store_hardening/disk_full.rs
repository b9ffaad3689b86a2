//! A full disk: the store on a real 8 MiB tmpfs is filled up. Batches are refused with
//! `UNAVAILABLE` (they stay in the agent's outbox) and `/healthz` says 503; once space returns
//! the store is reopened, `/healthz` says 200 again, and every batch the agent sends — resends
//! of what was refused included — is applied exactly once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailpulse_proto::v1::Sample;

use crate::support::*;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `size` (as `mount -o size=` takes it); None when not root.
    fn mount(size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a store file still open (a failed test) does not keep the mount around.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem of `dir` with `filler` until it is full (bounded).
fn fill(filler: &Path) {
    let mut file = std::fs::File::create(filler).expect("filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    for _ in 0..1024 {
        if file.write_all(&chunk).is_err() {
            return;
        }
    }
    let _ = file.sync_all();
}

const SENT: &str = "mailpulse_messages_sent_total{domain=\"a.test\",host=\"mx1.example\"}";

/// Batch `seq`: +1 on one counter, plus new label sets that make the store grow.
fn growing(seq: u64) -> Vec<Sample> {
    let pad = "p".repeat(200);
    std::iter::once(counter("messages_sent", &[("domain", "a.test")], 1.0))
        .chain((0..500).map(|i| {
            let user = format!("{seq}-{i}-{pad}");
            counter("sasl_auth_failures_by_user", &[("user", &user)], 1.0)
        }))
        .collect()
}

async fn healthz(collector: &mailpulse_collector::RunningCollector) -> u16 {
    http_get(collector.http_addr(), "/healthz").await.0
}

#[tokio::test]
async fn a_full_disk_refuses_batches_until_space_returns_and_loses_nothing() {
    let Some(fs) = Tmpfs::mount("8m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let mut config = config(fs.path());
    config.store.fold_interval_secs = 0;
    config.store.reopen_interval_secs = 1;
    config.limits.max_agent_samples_per_sec = 10_000_000;
    config.limits.agent_burst_samples = 10_000_000;
    let collector = start(config).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    for seq in 1..=3 {
        assert_eq!(
            agent.batch(seq, growing(seq)).await.expect("ack"),
            (seq, false)
        );
    }

    let filler: PathBuf = fs.path().join("filler");
    fill(&filler);
    // Batches go on until the store cannot grow any more.
    let mut seq = 3;
    let mut refused = None;
    for _ in 0..200 {
        seq += 1;
        match agent.batch(seq, growing(seq)).await {
            Ok(ack) => assert_eq!(ack, (seq, false)),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("a batch is refused once the disk is full");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let acked = seq - 1;
    assert_eq!(
        healthz(&collector).await,
        503,
        "unhealthy while the disk is full"
    );
    // Reconnecting while still full: refused again, nothing applied.
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let again = agent.batch(seq, growing(seq)).await;
    assert!(
        again
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::Unavailable),
        "still full: {again:?}"
    );

    std::fs::remove_file(&filler).expect("free the space");
    let mut healthy = false;
    for _ in 0..100 {
        if healthz(&collector).await == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the store is reopened once space returns");

    // The agent resends what was not acknowledged, then goes on.
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;
    let last = seq + 5;
    for seq in acked + 1..=last {
        let (acked_seq, duplicate) = agent.batch(seq, growing(seq)).await.expect("ack");
        assert_eq!(acked_seq, seq);
        // Only a batch whose commit reached the disk despite its error can be a duplicate.
        assert!(!duplicate || seq == acked + 1, "seq {seq} duplicate");
    }
    let text = scrape(&collector).await;
    assert_eq!(
        value(&text, SENT),
        Some(last as f64),
        "each of the {last} batches applied exactly once"
    );
    assert!(
        value(&text, "mailpulse_collector_store_reopens_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    eprintln!("disk full at seq {seq}: {acked} acked before, all {last} applied once after");
    collector.shutdown().await.expect("clean shutdown");
    drop(fs);
}
