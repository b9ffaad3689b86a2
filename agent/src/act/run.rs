//! Running an action's commands: `tokio::process::Command` on argv (never a shell), in a
//! process group of its own that is killed at the timeout, with standard input written from
//! the plan and standard output and error kept up to `max_output_bytes` each.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::plan::{self, Command, From};
use super::request::{Checked, Request, Selector};
use super::{ActionsConfig, Report, Status};

/// One command as the answer reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommandReport {
    pub argv: Vec<String>,
    /// Lines given on standard input (queue ids).
    #[serde(skip_serializing_if = "is_zero")]
    pub stdin_lines: usize,
    /// Exit code; none when it did not run (dry run), could not start, or was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl CommandReport {
    /// The report of a command that did not run.
    pub fn planned(command: &Command) -> Self {
        CommandReport {
            argv: command.argv.clone(),
            stdin_lines: command.stdin.len(),
            ..CommandReport::default()
        }
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Runs `command` to its end or its timeout.
pub async fn run(command: &Command, timeout: Duration, max_output: usize) -> CommandReport {
    let mut report = CommandReport::planned(command);
    let Some((program, args)) = command.argv.split_first() else {
        report.stderr = "empty argv".into();
        return report;
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(if command.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            report.stderr = format!("could not start {program}: {e}");
            return report;
        }
    };
    let pid = child.id();
    let stdin = child.stdin.take();
    let lines = command.stdin.clone();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            for line in lines {
                if stdin.write_all(line.as_bytes()).await.is_err()
                    || stdin.write_all(b"\n").await.is_err()
                {
                    break;
                }
            }
            let _ = stdin.shutdown().await;
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let ((), out, err, status) = tokio::join!(
            feed,
            read_bounded(stdout, max_output),
            read_bounded(stderr, max_output),
            child.wait()
        );
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((out, err, status)) => {
            report.stdout = out;
            report.stderr = err;
            report.exit_code = status.ok().and_then(|s| s.code());
        }
        Err(_) => {
            if let Some(pid) = pid {
                crate::queue::command::kill_process_group(pid);
            }
            report.timed_out = true;
            report.stderr = format!("killed after {timeout:?}");
        }
    }
    report
}

/// Reads `stream` to its end, keeping the first `keep` bytes (lossy UTF-8, trailing space cut).
async fn read_bounded(stream: Option<impl AsyncRead + Unpin>, keep: usize) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).trim_end().to_owned()
}

/// Runs `commands` in order, stopping at the first failure; a dry run reports them only.
pub async fn run_all(
    cfg: &ActionsConfig,
    commands: &[Command],
    dry_run: bool,
    report: &mut Report,
) -> Status {
    for command in commands {
        if dry_run {
            report.commands.push(CommandReport::planned(command));
            continue;
        }
        let done = run(
            command,
            Duration::from_secs(cfg.timeout_secs),
            cfg.max_output_bytes,
        )
        .await;
        let ok = done.succeeded();
        report.commands.push(done);
        if !ok {
            report.error = format!("{} failed", command.argv[0]);
            return Status::Failed;
        }
    }
    if dry_run { Status::Planned } else { Status::Ok }
}

/// Checks done, runs (or plans) `checked` on its instance.
pub async fn execute(
    cfg: &ActionsConfig,
    state_dir: &Path,
    checked: &Checked,
    dry_run: bool,
) -> (Status, Report) {
    let mut report = Report {
        kind: Some(checked.kind),
        instance: checked.instance.clone(),
        ..Report::default()
    };
    let Some(dir) = cfg.config_dir(&checked.instance) else {
        report.error = format!("no instance {}", checked.instance);
        return (Status::Refused, report);
    };
    let status = match &checked.request {
        Request::Flush { site, queue_id } => {
            let command = plan::flush(cfg, dir, site.as_deref(), queue_id.as_deref());
            run_all(cfg, &[command], dry_run, &mut report).await
        }
        Request::Hold(selector) => {
            queue_action(
                cfg,
                dir,
                selector,
                From::NotHeld,
                "-h",
                dry_run,
                &mut report,
            )
            .await
        }
        Request::Release(selector) => {
            queue_action(cfg, dir, selector, From::Held, "-H", dry_run, &mut report).await
        }
        Request::Requeue(selector) => {
            queue_action(
                cfg,
                dir,
                selector,
                From::NotHeld,
                "-r",
                dry_run,
                &mut report,
            )
            .await
        }
        _ => super::postfix_config::apply(cfg, state_dir, dir, checked, dry_run, &mut report).await,
    };
    (status, report)
}

/// Selects the messages from `postqueue -j`, then hands their ids to `postsuper FLAG -`.
async fn queue_action(
    cfg: &ActionsConfig,
    dir: &Path,
    selector: &Selector,
    from: From,
    flag: &str,
    dry_run: bool,
    report: &mut Report,
) -> Status {
    let list = Command::postfix(cfg, "postqueue", dir, &["-j"]);
    let mut listed = CommandReport::planned(&list);
    let (program, args) = (
        std::path::PathBuf::from(&list.argv[0]),
        list.argv[1..].to_vec(),
    );
    let selector2 = selector.clone();
    let (max, timeout) = (cfg.max_selected, Duration::from_secs(cfg.timeout_secs));
    let selected = tokio::task::spawn_blocking(move || {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        crate::queue::command::run_command(&program, &args, timeout, |out| {
            Ok(plan::select(out, &selector2, from, max))
        })
    })
    .await;
    let selection = match selected {
        Ok(Ok(Ok(selection))) => {
            listed.exit_code = Some(0);
            selection
        }
        Ok(Ok(Err(too_many))) => {
            listed.exit_code = Some(0);
            report.commands.push(listed);
            report.error = too_many;
            return Status::Failed;
        }
        Ok(Err(e)) => {
            listed.stderr = e.to_string();
            report.commands.push(listed);
            report.error = "listing the queue failed".into();
            return Status::Failed;
        }
        Err(e) => {
            report.error = format!("listing the queue: {e}");
            return Status::Failed;
        }
    };
    report.commands.push(listed);
    report.selected = Some(selection.ids.len());
    if selection.ids.is_empty() {
        return if dry_run { Status::Planned } else { Status::Ok };
    }
    let command = plan::postsuper(cfg, dir, flag, selection.ids);
    run_all(cfg, &[command], dry_run, report).await
}
