//! `mailpulse spf-suite FILE.yml`: runs an SPF test-suite file (the RFC 7208 suite's YAML
//! format) against the SPF evaluator and prints the failures.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use mailpulse_agent::dns::spf::run_suite;

/// Runs the suite in `path`; prints each failure (name, expected, got) and, last,
/// `N passed, M failed`. Returns whether every test passed.
pub fn run(path: &Path) -> Result<bool> {
    let yaml =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime
        .block_on(run_suite(&yaml))
        .with_context(|| format!("{}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report.render().as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the report")?;
    Ok(report.failed().next().is_none())
}
