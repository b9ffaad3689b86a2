//! `mailpulse eval [--config FILE] [--alerts FILE.jsonl]`: the detection evaluation
//! ([`mailpulse_sim::eval`]); prints the report and fails (exit 1) when a target is missed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mailpulse_collector::analyze::Selector;
use mailpulse_sim::eval::{self, EvalFile};

/// What `mailpulse eval` was asked.
pub struct EvalArgs {
    /// The evaluation file.
    pub config: PathBuf,
    /// Where to write every label and false alert (JSON Lines).
    pub alerts: Option<PathBuf>,
    /// Where to write every anomaly (JSON Lines).
    pub anomalies: Option<PathBuf>,
    /// View series whose bands are traced (`view{label="value"}`).
    pub trace: Option<String>,
    /// Where to write the traced bands (CSV); default `trace.csv` when `trace` is set.
    pub trace_out: Option<PathBuf>,
}

/// Runs the evaluation file, writes the requested files and prints the report.
pub fn run(args: &EvalArgs) -> Result<()> {
    let config = args.config.as_path();
    let file = EvalFile::load(config)?;
    let trace = match &args.trace {
        Some(text) => Some(Selector::parse(text).map_err(|e| anyhow::anyhow!("--trace: {e}"))?),
        None => None,
    };
    let runs = file.runs(config.parent().unwrap_or(Path::new(".")))?;
    let started = Instant::now();
    let results = eval::run_all(&file, &runs, trace.as_ref())?;
    let report = eval::report::report(&file, &results, started.elapsed().as_secs_f64());
    if let Some(path) = &args.alerts {
        write_file(path, |out| eval::write_alerts(out, &results))?;
    }
    if let Some(path) = &args.anomalies {
        write_file(path, |out| eval::write_anomalies(out, &results))?;
    }
    if let Some(path) = &args.trace_out {
        write_file(path, |out| eval::write_trace(out, &results))?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(report.text.as_bytes())?;
    out.flush()?;
    if !report.missed.is_empty() {
        bail!("targets missed: {}", report.missed.join("; "));
    }
    Ok(())
}

/// Creates `path`, lets `write` fill it through a buffer, and flushes it; errors name the file.
fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    write(&mut out).with_context(|| format!("writing {}", path.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}
