//! `bench-parse`: parse+track throughput on one core over a generated realistic Postfix log,
//! optionally against mtail running its Postfix example program on the same file.
//!
//! ```text
//! cargo run -p mailpulse-benches --release --bin bench-parse -- [--lines N] [--mtail]
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mailpulse_agent::parse::{LogFormat, Timestamp};
use mailpulse_agent::pipeline::{LineOutcome, LineProcessor};
use mailpulse_sim::synth::{SynthConfig, SynthLog};

#[derive(Debug, Parser)]
#[command(
    name = "bench-parse",
    about = "Parse+track throughput on one core, optionally vs mtail"
)]
struct Args {
    /// Lines of generated log to parse.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timed runs; the best one is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Also time mtail with its Postfix example program on the same file.
    #[arg(long)]
    mtail: bool,
    /// mtail binary (default: `mtail` from PATH).
    #[arg(long, default_value = "mtail")]
    mtail_bin: String,
    /// Directory of mtail programs (default: the copy of postfix.mtail in benches/mtail).
    #[arg(long)]
    mtail_progs: Option<PathBuf>,
    /// GOMAXPROCS for mtail; 1 compares like with like (mailpulse runs on one core).
    #[arg(long, default_value_t = 1)]
    mtail_cores: u32,
    /// Keep the generated log at this path instead of a deleted temp file.
    #[arg(long)]
    keep: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.lines == 0 || args.runs == 0 {
        bail!("--lines and --runs must be positive");
    }

    let config = SynthConfig {
        seed: args.seed,
        // ~12 lines per message; the generator is cut at exactly --lines lines.
        messages: args.lines / 8 + 100,
        // 1 M lines cover about 50 minutes of traffic; a short queue lifetime puts expiries
        // (and their notifications) into that window too.
        max_queue_lifetime_secs: 1800,
        ..SynthConfig::default()
    };
    let reference = Timestamp {
        unix_secs: config.start_unix_secs + 7 * 86_400,
        nanos: 0,
    };
    let started = Instant::now();
    let mut text = String::with_capacity(args.lines as usize * 190);
    let mut generated = 0u64;
    for line in SynthLog::new(config).take(args.lines as usize) {
        text.push_str(&line);
        text.push('\n');
        generated += 1;
    }
    if generated < args.lines {
        bail!("generator stopped after {generated} lines");
    }
    let gen_secs = started.elapsed().as_secs_f64();

    let (path, temporary) = match &args.keep {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("mailpulse-bench-parse-{}.log", std::process::id())),
            true,
        ),
    };
    fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    drop(text);
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let content =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = content.len() as u64;
    println!(
        "generated: {generated} lines, {:.1} MB in {gen_secs:.2} s ({:.2} M lines/s) -> {}",
        mb(bytes),
        generated as f64 / gen_secs / 1e6,
        path.display()
    );

    let result = run_benchmarks(&args, &content, &path, reference);
    if temporary {
        let _ = fs::remove_file(&path);
    }
    result?;
    println!("bench-parse: ok");
    Ok(())
}

fn run_benchmarks(args: &Args, content: &str, path: &Path, reference: Timestamp) -> Result<()> {
    let lines = content.lines().count() as u64;
    let bytes = content.len() as u64;
    let mut best = Duration::MAX;
    let mut report = ParseReport::default();
    for _ in 0..args.runs {
        let (elapsed, r) = parse_and_track(content, reference);
        best = best.min(elapsed);
        report = r;
    }
    let secs = best.as_secs_f64();
    let ours_lines_per_sec = lines as f64 / secs;
    println!(
        "parse+track: {lines} lines, {:.1} MB, {secs:.2} s, {:.2} M lines/s, {:.0} MB/s (1 core, best of {})",
        bytes as f64 / 1e6,
        ours_lines_per_sec / 1e6,
        bytes as f64 / 1e6 / secs,
        args.runs
    );
    println!(
        "parse+track: unparsed {} ({:.2}%), events {}",
        report.unparsed,
        report.unparsed as f64 * 100.0 / lines as f64,
        report.events
    );
    let mut reasons: Vec<_> = report.unparsed_reasons.into_iter().collect();
    reasons.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    for (reason, n) in reasons.iter().take(5) {
        println!("parse+track:   unparsed {n:>8}  {reason}");
    }

    if !args.mtail {
        return Ok(());
    }
    let progs = args
        .mtail_progs
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("mtail"));
    let Some(mtail) = find_in_path(&args.mtail_bin) else {
        println!(
            "mtail: mtail not found ({:?} is not on PATH; Debian: apt-get install mtail) - skipped",
            args.mtail_bin
        );
        return Ok(());
    };
    let started = Instant::now();
    let output = Command::new(&mtail)
        .env("GOMAXPROCS", args.mtail_cores.to_string())
        .arg("--one_shot")
        .arg("--one_shot_format=json")
        .arg("--logtostderr")
        // One-shot mode still opens an HTTP listener; keep it off shared ports.
        .args(["--address", "127.0.0.1", "--port", "0"])
        .arg("--logs")
        .arg(path)
        .arg("--progs")
        .arg(&progs)
        .output()
        .with_context(|| format!("running {}", mtail.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "mtail failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metrics = String::from_utf8_lossy(&output.stdout);
    // The example program only matches `postfix/...` programs, not `postfix-out/...`.
    let removed = metric_total(&metrics, "postfix_qmgr_messages_removed_total");
    let expected = content
        .lines()
        .filter(|l| l.contains(" postfix/qmgr[") && l.ends_with(": removed"))
        .count() as u64;
    let mtail_lines_per_sec = lines as f64 / secs;
    println!(
        "mtail: {lines} lines, {secs:.2} s wall, {:.3} M lines/s (GOMAXPROCS={}, {})",
        mtail_lines_per_sec / 1e6,
        args.mtail_cores,
        progs.join("postfix.mtail").display()
    );
    if removed == expected {
        println!("mtail: check ok, postfix_qmgr_messages_removed_total = {removed} as in the file");
    } else {
        println!(
            "mtail: WARNING postfix_qmgr_messages_removed_total = {removed}, the file has {expected}: mtail did not process the whole file"
        );
    }
    println!(
        "mtail: ratio {:.1}x (mailpulse parse+track / mtail, lines/s)",
        ours_lines_per_sec / mtail_lines_per_sec
    );
    Ok(())
}

#[derive(Debug, Default)]
struct ParseReport {
    unparsed: u64,
    events: u64,
    unparsed_reasons: BTreeMap<&'static str, u64>,
}

/// One timed pass of a fresh processor over every line, on the calling thread.
fn parse_and_track(content: &str, reference: Timestamp) -> (Duration, ParseReport) {
    let mut processor = LineProcessor::new(LogFormat::Auto, reference);
    let mut events = Vec::with_capacity(64);
    let mut report = ParseReport::default();
    let started = Instant::now();
    for line in content.lines() {
        if let LineOutcome::Unparsed(reason) = processor.process(line, &mut events) {
            *report.unparsed_reasons.entry(reason).or_default() += 1;
        }
        report.events += events.len() as u64;
        events.clear();
    }
    let elapsed = started.elapsed();
    report.unparsed = processor.stats().unparsed;
    (elapsed, report)
}

fn find_in_path(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
}

/// Sum of the values of a counter in mtail's `--one_shot_format=json` output (0 if absent).
/// A light scan instead of a JSON dependency: find the metric's block and add its `"Value":` numbers.
fn metric_total(json: &str, name: &str) -> u64 {
    let Some(start) = json.find(&format!("\"Name\": \"{name}\"")) else {
        return 0;
    };
    let block = &json[start..];
    let end = block[1..].find("\"Name\": ").map_or(block.len(), |i| i + 1);
    block[..end]
        .match_indices("\"Value\": ")
        .filter_map(|(i, m)| {
            let rest = &block[i + m.len()..end];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}
