//! Running a Postfix command: argv only (never a shell), stdout streamed into a consumer, stderr
//! kept up to [`STDERR_KEEP_BYTES`] for the error message, and the whole process group killed at
//! the deadline.
//!
//! The child leads its own process group because `postqueue` may run `showq` as a child of its
//! own (when the mail system is down); killing only `postqueue` would leave `showq` writing into
//! the pipe and the reader waiting for it.

use std::ffi::OsStr;
use std::io::{self, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::QueueError;

/// Bytes of a command's stderr kept for the error message; the rest is read and dropped.
pub const STDERR_KEEP_BYTES: usize = 4096;

/// How long after the deadline the runner still waits for a killed child to go away.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Runs `program args…` and hands its stdout to `consume`; succeeds when the command exits with
/// status 0 within `timeout` and `consume` read its output without an I/O error. On timeout the
/// command's process group is killed and the (partial) result of `consume` is dropped.
pub(crate) fn run_command<T>(
    program: &Path,
    args: &[&OsStr],
    timeout: Duration,
    consume: impl FnOnce(&mut BufReader<ChildStdout>) -> io::Result<T>,
) -> Result<T, QueueError> {
    let command = describe(program, args);
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| QueueError::Spawn {
            command: command.clone(),
            source,
        })?;
    let pid = child.id();
    // Both were requested as pipes, so both are there.
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_process_group(pid);
        let _ = child.wait();
        return Err(QueueError::Spawn {
            command,
            source: io::Error::other("child has no stdout or stderr pipe"),
        });
    };

    // Set (under the lock) once the child is reaped: from then on its pid, and so its process
    // group id, may belong to someone else and must not be signalled.
    let reaped = Arc::new(Mutex::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (stop_killer, stop_rx) = mpsc::channel::<()>();
    let killer = {
        let reaped = Arc::clone(&reaped);
        let timed_out = Arc::clone(&timed_out);
        thread::Builder::new()
            .name("queue-command-timeout".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(timeout) {
                    let reaped = lock(&reaped);
                    if !*reaped {
                        timed_out.store(true, Ordering::SeqCst);
                        kill_process_group(pid);
                    }
                }
            })
    };
    let killer = match killer {
        Ok(handle) => handle,
        Err(source) => {
            kill_process_group(pid);
            let _ = child.wait();
            return Err(QueueError::Spawn { command, source });
        }
    };
    let (stderr_tx, stderr_rx) = mpsc::channel();
    let stderr_reader = thread::Builder::new()
        .name("queue-command-stderr".into())
        .spawn(move || {
            let _ = stderr_tx.send(read_bounded(stderr, STDERR_KEEP_BYTES));
        });

    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let consumed = consume(&mut reader);
    drop(reader);

    let give_up_at = started + timeout + KILL_GRACE;
    let status = reap(&mut child, &reaped, give_up_at);
    drop(stop_killer);
    let _ = killer.join();
    let stderr = match stderr_reader {
        Ok(handle) => {
            let wait = give_up_at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            let text = stderr_rx.recv_timeout(wait).unwrap_or_default();
            // Joined only when it finished; one stuck on a pipe inherited by a stray process is
            // left behind rather than blocking the agent.
            if handle.is_finished() {
                let _ = handle.join();
            }
            text
        }
        Err(_) => String::new(),
    };

    if timed_out.load(Ordering::SeqCst) {
        return Err(QueueError::Timeout { command, timeout });
    }
    let Some(status) = status else {
        return Err(QueueError::Timeout { command, timeout });
    };
    let value = consumed.map_err(|source| QueueError::Read {
        command: command.clone(),
        source,
    })?;
    if !status.success() {
        return Err(QueueError::Exit {
            command,
            status: status.to_string(),
            stderr,
        });
    }
    Ok(value)
}

/// Waits for the child to exit (polling, so that the timeout thread can still kill it) until
/// `give_up_at`; `None` when it did not go away.
fn reap(
    child: &mut std::process::Child,
    reaped: &Mutex<bool>,
    give_up_at: Instant,
) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        {
            let mut reaped = lock(reaped);
            match child.try_wait() {
                Ok(Some(status)) => {
                    *reaped = true;
                    return Some(status);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
        }
        if Instant::now() >= give_up_at {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Reads `stream` to its end, keeping the first `keep` bytes as (lossy) text.
fn read_bounded(mut stream: impl Read, keep: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&kept).trim_end().to_owned()
}

/// Sends SIGKILL to the process group led by `pid`. The group is the one the child leads
/// (spawned with `process_group(0)`), and the child is not reaped yet, so the id cannot have been
/// reused.
pub(crate) fn kill_process_group(pid: u32) {
    let Some(pgid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // Never signal "every process" (-1) or our own group (0, excluded by `Pid`).
    if pgid.as_raw_nonzero().get() <= 1 {
        return;
    }
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `program arg…` for messages.
pub(crate) fn describe(program: &Path, args: &[&OsStr]) -> String {
    let mut out = program.display().to_string();
    for arg in args {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_kept_bounded() {
        let input = vec![b'e'; 10_000];
        assert_eq!(read_bounded(&input[..], 4096).len(), 4096);
        assert_eq!(read_bounded(&b"warning: x\n"[..], 4096), "warning: x");
    }

    #[test]
    fn output_and_exit_status_are_reported() {
        let sh = Path::new("/bin/sh");
        let out = run_command(
            sh,
            &[OsStr::new("-c"), OsStr::new("echo one; echo two")],
            Duration::from_secs(10),
            |r| {
                let mut s = String::new();
                r.read_to_string(&mut s).map(|_| s)
            },
        );
        assert_eq!(out.unwrap(), "one\ntwo\n");
        let err = run_command(
            sh,
            &[
                OsStr::new("-c"),
                OsStr::new("echo partial; echo broken >&2; exit 3"),
            ],
            Duration::from_secs(10),
            |r| io::copy(r, &mut io::sink()),
        )
        .unwrap_err();
        match err {
            QueueError::Exit { status, stderr, .. } => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, "broken");
            }
            other => panic!("expected an exit error, got {other:?}"),
        }
    }

    #[test]
    fn a_hanging_command_and_its_children_are_killed() {
        let started = Instant::now();
        // The shell forks `sleep`, which holds the pipe open: only a group kill ends the read.
        let err = run_command(
            Path::new("/bin/sh"),
            &[
                OsStr::new("-c"),
                OsStr::new("echo start; sleep 30; echo never"),
            ],
            Duration::from_millis(300),
            |r| io::copy(r, &mut io::sink()),
        )
        .unwrap_err();
        assert!(matches!(err, QueueError::Timeout { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run_command(
            Path::new("/nonexistent/postqueue"),
            &[],
            Duration::from_secs(1),
            |r| io::copy(r, &mut io::sink()),
        )
        .unwrap_err();
        assert!(matches!(err, QueueError::Spawn { .. }), "{err:?}");
    }
}
