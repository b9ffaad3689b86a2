//! `mailpulse events`: message events as JSON Lines, optionally following files with checkpoints.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use mailpulse_agent::parse::LogFormat;
use mailpulse_agent::pipeline::LineProcessor;

use crate::input;

pub struct EventsArgs {
    pub follow: bool,
    pub state_dir: Option<PathBuf>,
    pub format: LogFormat,
    pub utc_offset_secs: i32,
    pub files: Vec<PathBuf>,
}

pub fn run(args: EventsArgs) -> Result<()> {
    if args.follow || args.state_dir.is_some() {
        anyhow::bail!("--follow and --state-dir are not available yet");
    }
    let mut processor = LineProcessor::new(args.format, input::now());
    processor.set_default_offset_secs(args.utc_offset_secs);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut events = Vec::new();
    let mut write_err = None;
    for path in &args.files {
        input::for_each_line(path, &mut processor, |processor, line| {
            processor.process(line, &mut events);
            for ev in events.drain(..) {
                if write_err.is_none()
                    && let Err(e) = serde_json::to_writer(&mut out, &ev).and_then(|()| {
                        out.write_all(b"\n").map_err(serde_json::Error::io)
                    })
                {
                    write_err = Some(e);
                }
            }
        })
        .with_context(|| format!("reading {}", path.display()))?;
        if let Some(e) = write_err.take() {
            return Err(e).context("writing events");
        }
    }
    out.flush()?;
    Ok(())
}
