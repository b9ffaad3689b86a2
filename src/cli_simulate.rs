//! `mailpulse simulate --scenario FILE [--out-dir DIR] [--format bsd|rfc3339|maillog]`: writes a
//! simulated fleet into a directory ([`mailpulse_sim::fleet::write_fleet`]) and prints a
//! summary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use mailpulse_sim::fleet::{Scenario, dir_name, summary, write_fleet};
use mailpulse_sim::synth::TimestampStyle;

/// What `mailpulse simulate` was asked.
pub struct SimulateArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Where to write; default: a directory named after the scenario, in the current directory.
    pub out_dir: Option<PathBuf>,
    /// Overrides the scenario's `timestamp_format`.
    pub format: Option<TimestampStyle>,
}

/// Writes the logs, gauges and labels, and prints the summary to standard output.
pub fn run(args: SimulateArgs) -> Result<()> {
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(style) = args.format {
        scenario.set_timestamp_style(style);
    }
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| PathBuf::from(dir_name(scenario.name())));
    let output = write_fleet(&scenario, &out_dir)?;
    let mut out = std::io::stdout().lock();
    out.write_all(summary(&scenario, &output).as_bytes())?;
    out.flush()?;
    Ok(())
}
