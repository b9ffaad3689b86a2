//! A full disk under the agent's state directory (a small tmpfs): the agent stays up, its host
//! probes fail and are retried, and once space returns their gauges come back with the new
//! values, together with `agent_task_failures_total{task}` and `agent_task_up{task} 1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailpulse_tests::net::poll_until;
use mailpulse_tests::stack::{Proc, metric_sum, metric_value, write_configs};

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs (the test runs as root)");
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x55u8; 64 * 1024];
    let mut written = 0u64;
    // Bounded: the tmpfs is a few MiB.
    for _ in 0..10_000 {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = f.sync_all();
    written
}

#[test]
fn host_probes_recover_after_the_state_disk_was_full() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let state = d.join("state");
    let _tmpfs = Tmpfs::mount(&state, "4m");
    let log = d.join("mail.log");
    let http = write_configs(
        d,
        &log,
        "[queue]\nenabled = false\ninterval_secs = 1\n\
         [capacity]\nenabled = true\nprocesses = false\n\
         [outbox]\nmax_bytes = 1048576\n",
    );
    let c_conf = d.join("collector.toml");
    let a_conf = d.join("agent.toml");
    let _collector = Proc::start(
        &["collector", "--config", c_conf.to_str().expect("utf-8")],
        &d.join("collector.out"),
    );
    let mut agent = Proc::start(
        &["agent", "--config", a_conf.to_str().expect("utf-8")],
        &d.join("agent.out"),
    );
    // A steady trickle of log lines keeps the agent cutting batches (with its self-metrics).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log");
            for i in 0..1_000u32 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _ = writeln!(
                    f,
                    "Oct 26 18:13:{:02} mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]",
                    i % 60
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let path = state.to_str().expect("utf-8").to_owned();
    let avail = || metric_value(http, "mailpulse_filesystem_avail_bytes", &[("path", &path)]);
    let before = poll_until(Duration::from_secs(30), Duration::from_millis(300), avail)
        .unwrap_or_else(|_| panic!("no filesystem gauge for {path}; logs in {}", d.display()));

    let filler = state.join("filler");
    let filled = fill(&filler);
    assert!(filled > 1 << 20, "filled {filled} bytes");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        agent.0.try_wait().expect("wait").is_none(),
        "the agent exited on a full disk; logs in {}",
        d.display()
    );
    // Space returns, minus 1 MiB of ballast: a new poll reports less space than before.
    std::fs::remove_file(&filler).expect("remove filler");
    std::fs::write(state.join("ballast"), vec![1u8; 1 << 20]).expect("ballast");
    let recovered = poll_until(Duration::from_secs(30), Duration::from_millis(300), || {
        let now = avail()?;
        let failures = metric_value(
            http,
            "mailpulse_agent_task_failures_total",
            &[("task", "host_probes")],
        )?;
        let up = metric_value(http, "mailpulse_agent_task_up", &[("task", "host_probes")])?;
        (now <= before - 512.0 * 1024.0 && failures >= 1.0 && up == 1.0).then_some((now, failures))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
    let status = agent.0.try_wait().expect("wait");
    let (now, failures) = recovered.unwrap_or_else(|_| {
        panic!(
            "host probes did not recover: avail {:?} (before {before}), failures {:?}, up {:?}, \
             agent exited: {status:?}, lines {:?}; logs in {}",
            avail(),
            metric_value(
                http,
                "mailpulse_agent_task_failures_total",
                &[("task", "host_probes")]
            ),
            metric_value(http, "mailpulse_agent_task_up", &[("task", "host_probes")]),
            metric_sum(http, "mailpulse_agent_lines_read_total"),
            d.display()
        )
    });
    println!(
        "agent_disk_full: avail {before} → full → {now} after recovery, {failures} task failures"
    );
    agent.kill9();
}
