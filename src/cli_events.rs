//! `mailpulse events`: message events as JSON Lines, optionally following files with checkpoints.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mailpulse_agent::parse::LogFormat;
use mailpulse_agent::pipeline::LineProcessor;
use mailpulse_agent::source::{Checkpoints, TailConfig, Tailer};
use mailpulse_agent::track::MessageEvent;

use crate::input;

/// Name of the checkpoint file inside `--state-dir`.
const STATE_FILE: &str = "checkpoints.json";
/// Most lines handled between two checkpoints.
const BATCH_LINES: usize = 4096;
/// Pause after catching up with the files when following (bounds wake-ups, adds this latency).
const FOLLOW_PACE: Duration = Duration::from_millis(200);
/// How often checkpoints of files gone for good are pruned, and how long they are kept.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const KEEP_MISSING_FOR: Duration = Duration::from_secs(7 * 86_400);

pub struct EventsArgs {
    pub follow: bool,
    pub state_dir: Option<PathBuf>,
    pub format: LogFormat,
    pub utc_offset_secs: i32,
    pub checkpoint_interval: Duration,
    pub files: Vec<PathBuf>,
}

pub fn run(args: EventsArgs) -> Result<()> {
    let mut processor = LineProcessor::new(args.format, input::now());
    processor.set_default_offset_secs(args.utc_offset_secs);
    // Events name the host and instance of every line as logged.
    processor.set_origin_limits(None);
    if args.follow || args.state_dir.is_some() {
        tail(&args, processor)
    } else {
        read_whole(&args, processor)
    }
}

/// Writes events as JSON Lines.
struct EventWriter<W: Write> {
    out: W,
}

impl<W: Write> EventWriter<W> {
    fn write_all(&mut self, events: &mut Vec<MessageEvent>) -> Result<()> {
        for ev in events.drain(..) {
            serde_json::to_writer(&mut self.out, &ev).context("writing events")?;
            self.out.write_all(b"\n").context("writing events")?;
        }
        Ok(())
    }
}

fn read_whole(args: &EventsArgs, mut processor: LineProcessor) -> Result<()> {
    let stdout = std::io::stdout();
    let mut w = EventWriter {
        out: std::io::BufWriter::with_capacity(1 << 16, stdout.lock()),
    };
    let mut events = Vec::new();
    for path in &args.files {
        let mut result = Ok(());
        input::for_each_line(path, &mut processor, |processor, line| {
            processor.process(line, &mut events);
            if result.is_ok() {
                result = w.write_all(&mut events);
            }
            events.clear();
        })
        .with_context(|| format!("reading {}", path.display()))?;
        result?;
    }
    w.out.flush()?;
    Ok(())
}

/// Tails the files; after each batch: flush stdout, then acknowledge and save the checkpoint.
/// Without `--follow` it stops at the first moment no file has a complete new line.
fn tail(args: &EventsArgs, mut processor: LineProcessor) -> Result<()> {
    if args.files.iter().any(|f| f.as_os_str() == "-") {
        bail!("`-` (standard input) cannot be followed or checkpointed");
    }
    let state_path = args.state_dir.as_ref().map(|d| d.join(STATE_FILE));
    if let Some(dir) = &args.state_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut checkpoints = match &state_path {
        Some(p) => Checkpoints::load(p).with_context(|| format!("loading {}", p.display()))?,
        None => Checkpoints::default(),
    };
    let config = TailConfig {
        paths: args.files.clone(),
        ..TailConfig::default()
    };
    let mut tailer = Tailer::new(config, &checkpoints).context("opening log files")?;
    if let Some(p) = &state_path
        && checkpoints.register_start(tailer.start_positions()) > 0
    {
        // Before reading: a crash before the first save must still find these files again.
        checkpoints
            .save(p)
            .with_context(|| format!("saving {}", p.display()))?;
    }
    let stdout = std::io::stdout();
    let mut w = EventWriter {
        out: std::io::BufWriter::with_capacity(1 << 16, stdout.lock()),
    };
    let mut events = Vec::new();
    let timeout = if args.follow {
        Duration::from_millis(500)
    } else {
        Duration::from_millis(100)
    };
    let mut last_prune = Instant::now();
    let mut last_save = Instant::now();
    let mut unsaved = false;
    let mut last_batch_len = BATCH_LINES;
    loop {
        // A short batch means we caught up with the writer: pause so that the next read
        // collects many lines at once instead of waking for every line syslog appends.
        if last_batch_len < BATCH_LINES && args.follow {
            std::thread::sleep(FOLLOW_PACE);
        }
        let batch = tailer.next_batch(BATCH_LINES, timeout)?;
        last_batch_len = batch.len();
        if batch.is_empty() {
            if let Some(p) = state_path.as_ref().filter(|_| unsaved) {
                checkpoints
                    .save(p)
                    .with_context(|| format!("saving {}", p.display()))?;
                unsaved = false;
                last_save = Instant::now();
            }
            if args.follow {
                processor.set_reference(input::now());
                continue;
            }
            return Ok(());
        }
        // The last line read of each file: acknowledging it covers the lines before it.
        let mut acks = HashMap::new();
        for line in &batch {
            processor.process(&line.text, &mut events);
            w.write_all(&mut events)?;
            acks.insert(line.file, line);
        }
        // Durable output first, checkpoint second: a crash in between repeats, never loses.
        w.out.flush().context("flushing events")?;
        if let Some(p) = &state_path {
            for line in acks.into_values() {
                checkpoints.ack_line(line);
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                checkpoints.forget_missing(tailer.paths(), KEEP_MISSING_FOR);
                last_prune = Instant::now();
            }
            // A save costs two fsyncs: under a steady trickle of lines, save at most once per
            // interval (a crash then repeats at most that much output; it never loses any).
            unsaved = true;
            if last_save.elapsed() >= args.checkpoint_interval {
                checkpoints
                    .save(p)
                    .with_context(|| format!("saving {}", p.display()))?;
                unsaved = false;
                last_save = Instant::now();
            }
        }
    }
}
