//! `bench-queue`: CPU time and peak memory of one queue snapshot of a generated `postqueue -j`
//! output (100 000 entries by default: mostly deferred, 1–5 recipients, ~200 common domains plus
//! a long tail, realistic delay reasons).
//!
//! ```text
//! cargo run -p mailpulse-benches --release --bin bench-queue -- [--entries N] [--watcher]
//! ```
//! The bench writes the file, then runs itself as a child (`--child FILE`) so that the
//! generator's memory does not count. The child reads the file with `summarise_postqueue` (or,
//! with `--watcher`, through a `QueueWatcher` whose `postqueue` is a script that `cat`s the file,
//! samples included) and reports its CPU time (user + system ticks from `/proc/self/stat`) around
//! the snapshot and its peak RSS (`VmHWM` from `/proc/self/status`). Targets: < 1 s CPU, < 32 MB.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use mailpulse_agent::queue::{
    QueueConfig, QueueName, QueueWatcher, SnapshotConfig, summarise_postqueue,
};
use mailpulse_sim::postqueue::{SynthQueueConfig, write_synth_postqueue};

/// The time the generated queue is summarised at.
const NOW_UNIX_SECS: i64 = 1_700_000_000;
const TARGET_CPU_SECS: f64 = 1.0;
const TARGET_PEAK_RSS_MB: f64 = 32.0;

#[derive(Debug, Parser)]
#[command(
    name = "bench-queue",
    about = "CPU and peak RSS of one queue snapshot of a generated postqueue -j output"
)]
struct Args {
    /// Queue entries (lines of `postqueue -j`) to generate.
    #[arg(long, default_value_t = 100_000)]
    entries: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct deferred domains tracked by name.
    #[arg(long, default_value_t = 10_000)]
    max_domains: usize,
    /// Measure a `QueueWatcher` poll (fake `postqueue` that cats the file, samples built).
    #[arg(long)]
    watcher: bool,
    /// Keep the generated file at this path instead of a deleted temp file.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Internal: summarise this file and report (the measured child process).
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.child {
        return child(&args, path);
    }
    if args.entries == 0 {
        bail!("--entries must be positive");
    }
    let dir = tempfile::tempdir()?;
    let path = args
        .keep
        .clone()
        .unwrap_or_else(|| dir.path().join("postqueue.jsonl"));
    let started = Instant::now();
    let mut out = BufWriter::new(
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    let bytes = write_synth_postqueue(
        &SynthQueueConfig {
            seed: args.seed,
            entries: args.entries,
            now_unix_secs: NOW_UNIX_SECS,
            ..SynthQueueConfig::default()
        },
        &mut out,
    )?;
    out.flush()?;
    drop(out);
    println!(
        "generated: {} entries, {:.1} MB in {:.2} s -> {}",
        args.entries,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        path.display()
    );

    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--child")
        .arg(&path)
        .arg("--entries")
        .arg(args.entries.to_string())
        .arg("--max-domains")
        .arg(args.max_domains.to_string());
    if args.watcher {
        command.arg("--watcher");
    }
    let output = command.output().context("running the measured child")?;
    if !output.status.success() {
        bail!(
            "child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| -> Result<f64> {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("child report has no {key}: {report}"))
    };
    let cpu_secs = field("cpu_secs")?;
    let wall_secs = field("wall_secs")?;
    let peak_rss_mb = field("peak_rss_mb")?;
    println!("child: {}", report.trim());
    println!(
        "entries={} bytes={bytes} cpu_secs={cpu_secs:.3} wall_secs={wall_secs:.3} peak_rss_mb={peak_rss_mb:.1} entries_per_sec={:.0}",
        args.entries,
        args.entries as f64 / wall_secs.max(1e-9)
    );
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!(
        "targets: cpu < {TARGET_CPU_SECS} s {}, peak RSS < {TARGET_PEAK_RSS_MB} MB {}",
        verdict(cpu_secs < TARGET_CPU_SECS),
        verdict(peak_rss_mb < TARGET_PEAK_RSS_MB)
    );
    Ok(())
}

/// The measured process: one snapshot of `path`, then a `key=value` report on stdout.
fn child(args: &Args, path: &Path) -> Result<()> {
    let hz = clock_ticks_per_sec();
    let (cpu_before, wall) = (cpu_ticks()?, Instant::now());
    let (messages, domains, malformed, samples) = if args.watcher {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("postqueue");
        fs::write(
            &script,
            format!("#!/bin/sh\nexec cat '{}'\n", path.display()),
        )?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        let mut watcher = QueueWatcher::new(QueueConfig {
            postqueue: script,
            postmulti: dir.path().join("missing-postmulti"),
            postconf: dir.path().join("missing-postconf"),
            max_domains: args.max_domains,
            ..QueueConfig::default()
        });
        let samples = watcher.poll(NOW_UNIX_SECS * 1000, "bench", 60);
        let snap = watcher
            .last_snapshot("postfix")
            .context("the watcher produced no snapshot")?;
        (
            snap.total_messages(),
            snap.deferred_domains.len(),
            snap.malformed_lines,
            samples.len(),
        )
    } else {
        let reader = BufReader::with_capacity(64 * 1024, File::open(path)?);
        let snap = summarise_postqueue(
            reader,
            NOW_UNIX_SECS,
            &SnapshotConfig {
                max_domains: args.max_domains,
            },
        );
        (
            snap.total_messages(),
            snap.deferred_domains.len(),
            snap.malformed_lines,
            0,
        )
    };
    let wall_secs = wall.elapsed().as_secs_f64();
    let cpu_secs = (cpu_ticks()? - cpu_before) as f64 / hz;
    if messages != args.entries || malformed != 0 {
        bail!(
            "summarised {messages} messages ({malformed} malformed) of {}",
            args.entries
        );
    }
    let deferred_note = QueueName::Deferred.as_str();
    println!(
        "cpu_secs={cpu_secs:.3} wall_secs={wall_secs:.3} peak_rss_mb={:.1} messages={messages} {deferred_note}_domains={domains} samples={samples}",
        peak_rss_kib()? as f64 / 1024.0
    );
    Ok(())
}

/// User + system CPU ticks of this process (`/proc/self/stat` fields 14 and 15).
fn cpu_ticks() -> Result<u64> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .context("malformed /proc/self/stat")
    };
    Ok(tick(11)? + tick(12)?)
}

/// Peak resident set size (`VmHWM`) of this process.
fn peak_rss_kib() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
