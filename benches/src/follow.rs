//! `bench-follow`: CPU and RSS of `mailpulse events --follow --state-dir` (or, with `--agent`, of
//! `mailpulse agent` streaming to a local `mailpulse collector`) while idle and while a generated
//! Postfix log grows at a fixed rate (default 1 000 lines/s).
//!
//! ```text
//! cargo build --release --bin mailpulse
//! cargo run -p mailpulse-benches --release --bin bench-follow -- [--rate 1000] [--secs 30]
//! ```
//! The figures come from `/proc/<pid>/stat` (user + system CPU ticks) and `/proc/<pid>/status`
//! (`VmRSS`, `VmHWM`) of the real process.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mailpulse_sim::synth::{SynthConfig, SynthLog};

#[derive(Debug, Parser)]
#[command(
    name = "bench-follow",
    about = "CPU and RSS of `mailpulse events --follow`"
)]
struct Args {
    /// Lines per second appended to the followed log.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Seconds of load (and of the idle phase before it).
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// The mailpulse binary (default: target/release/mailpulse beside this bench).
    #[arg(long)]
    mailpulse: Option<PathBuf>,
    /// Measure `mailpulse agent` (shipping to a collector on loopback) instead of `events`.
    #[arg(long)]
    agent: bool,
}

/// CPU ticks (user + system) and RSS of a process.
struct ProcSample {
    cpu_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

fn sample(pid: u32) -> Result<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_ticks: ticks(11) + ticks(12),
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
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

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.secs == 0 {
        bail!("--rate and --secs must be positive");
    }
    let bin = match args.mailpulse {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("bench binary has no directory")?
            .join("mailpulse"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release --bin mailpulse` first",
            bin.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("mailpulse-bench-follow-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let log = dir.join("mail.log");
    File::create(&log)?;
    let total = u64::from(args.rate) * args.secs;
    let lines: Vec<String> = SynthLog::new(SynthConfig {
        seed: 7,
        messages: total / 10 + 100,
        ..SynthConfig::default()
    })
    .take(total as usize)
    .collect();

    let mut _collector = None;
    let child = if args.agent {
        let token = "0123456789abcdef0123456789";
        fs::write(dir.join("token"), token)?;
        let grpc = free_port()?;
        let http = free_port()?;
        fs::write(
            dir.join("collector.toml"),
            format!(
                "grpc_listen_addr = \"127.0.0.1:{grpc}\"\nhttp_listen_addr = \"127.0.0.1:{http}\"\n\
                 [auth]\ntokens = {{ mx1 = \"{token}\" }}\n[store]\npath = \"{}\"\n",
                dir.join("collector.redb").display()
            ),
        )?;
        fs::write(
            dir.join("agent.toml"),
            format!(
                "[agent]\nid = \"mx1\"\nhost = \"mx1\"\nstate_dir = \"{}\"\n[logs]\nfiles = [\"{}\"]\n\
                 [ship]\ncollector_url = \"http://127.0.0.1:{grpc}\"\ntoken_file = \"{}\"\n",
                dir.join("state").display(),
                log.display(),
                dir.join("token").display()
            ),
        )?;
        _collector = Some(Guard(
            Command::new(&bin)
                .arg("collector")
                .arg("--config")
                .arg(dir.join("collector.toml"))
                .stdout(Stdio::null())
                .spawn()
                .context("starting the collector")?,
        ));
        sleep(Duration::from_millis(500));
        Command::new(&bin)
            .arg("agent")
            .arg("--config")
            .arg(dir.join("agent.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} agent", bin.display()))?
    } else {
        Command::new(&bin)
            .args(["events", "--follow", "--state-dir"])
            .arg(dir.join("state"))
            .arg(&log)
            .stdout(File::create(dir.join("events.jsonl"))?)
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?
    };
    let guard = Guard(child);
    let pid = guard.0.id();
    let hz = clock_ticks_per_sec();

    sleep(Duration::from_secs(1));
    let idle_start = sample(pid)?;
    sleep(Duration::from_secs(args.secs));
    let idle_end = sample(pid)?;
    let idle_cpu = (idle_end.cpu_ticks - idle_start.cpu_ticks) as f64 / hz / args.secs as f64;
    let what = if args.agent {
        "agent"
    } else {
        "events --follow"
    };
    println!("{what}:");
    println!(
        "idle: {:.2} % of a core, RSS {:.1} MB",
        idle_cpu * 100.0,
        idle_end.rss_kib as f64 / 1024.0
    );

    let mut out = OpenOptions::new().append(true).open(&log)?;
    let load_start = sample(pid)?;
    let started = Instant::now();
    let tick = Duration::from_millis(10);
    let mut max_rss = 0;
    let mut written = 0usize;
    let mut next_sample = Instant::now();
    while written < lines.len() && started.elapsed() < Duration::from_secs(args.secs * 3) {
        let due =
            ((started.elapsed().as_secs_f64() * f64::from(args.rate)) as usize).min(lines.len());
        if due > written {
            let mut buf = String::with_capacity((due - written) * 200);
            for l in &lines[written..due] {
                buf.push_str(l);
                buf.push('\n');
            }
            out.write_all(buf.as_bytes())?;
            written = due;
        }
        if Instant::now() >= next_sample {
            max_rss = max_rss.max(sample(pid)?.rss_kib);
            next_sample += Duration::from_secs(1);
        }
        sleep(tick);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the follower catch up before the final sample.
    if args.agent {
        sleep(Duration::from_secs(2));
    } else {
        wait_for_events(&dir.join("events.jsonl"), Duration::from_secs(5));
    }
    let load_end = sample(pid)?;
    let load_cpu = (load_end.cpu_ticks - load_start.cpu_ticks) as f64 / hz / elapsed;
    println!(
        "load: {written} lines in {elapsed:.1} s ({:.0} lines/s): {:.2} % of a core, RSS max {:.1} MB, peak (VmHWM) {:.1} MB",
        written as f64 / elapsed,
        load_cpu * 100.0,
        max_rss.max(load_end.rss_kib) as f64 / 1024.0,
        load_end.hwm_kib as f64 / 1024.0
    );
    drop(guard);
    if !args.agent {
        let events = fs::read_to_string(dir.join("events.jsonl"))?
            .lines()
            .count();
        println!("events written: {events}");
    }
    drop(_collector);
    // Best effort: a process that just died may still be renaming a state file.
    let _ = fs::remove_dir_all(&dir);
    println!("bench-follow: ok");
    Ok(())
}

/// Waits until the events file stops growing (bounded by `max`).
fn wait_for_events(path: &Path, max: Duration) {
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < max {
        sleep(Duration::from_millis(500));
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len == last && len > 0 {
            return;
        }
        last = len;
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
