//! `mailpulse simulate --scenario FILE [--out-dir DIR] [--format bsd|rfc3339|maillog]`: writes a
//! simulated fleet into a directory: one Postfix log per host (`<host>.log`), the probe gauges
//! the log cannot carry (`<host>.gauges.csv`: queue sizes and spool filesystem every
//! `gauge_interval_secs`) and the incident labels (`labels.jsonl`); then prints a summary.
//!
//! Hosts are written one after the other, each as a stream, so memory does not depend on the
//! simulated period. The scenario format is documented in `mailpulse_agent::sim::scenario`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mailpulse_agent::parse::Timestamp;
use mailpulse_agent::sim::{HostGauges, HostSimulation, IncidentLabel, Scenario, write_labels};
use mailpulse_agent::synth::TimestampStyle;

/// What `mailpulse simulate` was asked.
pub struct SimulateArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Where to write; default: a directory named after the scenario, in the current directory.
    pub out_dir: Option<PathBuf>,
    /// Overrides the scenario's `timestamp_format`.
    pub format: Option<TimestampStyle>,
}

/// Counts of one written host.
struct HostReport {
    host: String,
    messages: u64,
    lines: u64,
    delivered: u64,
    deferred: u64,
    bounced: u64,
    bytes: u64,
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
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let labels = scenario.labels();
    let labels_path = out_dir.join("labels.jsonl");
    let file = File::create(&labels_path)
        .with_context(|| format!("creating {}", labels_path.display()))?;
    write_labels(BufWriter::new(file), &labels)
        .with_context(|| format!("writing {}", labels_path.display()))?;

    let mut reports = Vec::new();
    for sim in scenario.host_simulations() {
        reports.push(write_host(sim, &scenario, &out_dir)?);
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(summary(&scenario, &out_dir, &reports, &labels).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Streams one host's log and gauges into `out_dir`.
fn write_host(mut sim: HostSimulation, scenario: &Scenario, out_dir: &Path) -> Result<HostReport> {
    let host = sim.host().to_owned();
    let log_path = out_dir.join(format!("{host}.log"));
    let gauges_path = out_dir.join(format!("{host}.gauges.csv"));
    let mut log = BufWriter::with_capacity(
        1 << 16,
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?,
    );
    let mut gauges = BufWriter::new(
        File::create(&gauges_path)
            .with_context(|| format!("creating {}", gauges_path.display()))?,
    );
    gauges.write_all(GAUGES_HEADER.as_bytes())?;
    let interval = i64::from(scenario.gauge_interval_secs());
    let end = scenario.end_unix_secs();
    let mut next_row = scenario.start_unix_secs() + interval;
    let (mut lines, mut bytes) = (0u64, 0u64);
    let (mut delivered, mut deferred, mut bounced) = (0u64, 0u64, 0u64);
    while let Some(line) = sim.next() {
        // A row describes the state just before its time: write rows the stream has passed.
        while line.at_unix_micros >= next_row * 1_000_000 && next_row <= end {
            write_gauges(&mut gauges, next_row, &sim.gauges_at(next_row - 1))?;
            next_row += interval;
        }
        if line.text.contains("status=sent") {
            delivered += 1;
        } else if line.text.contains("status=deferred") {
            deferred += 1;
        } else if line.text.contains("status=bounced") {
            bounced += 1;
        }
        log.write_all(line.text.as_bytes())?;
        log.write_all(b"\n")?;
        lines += 1;
        bytes += line.text.len() as u64 + 1;
    }
    while next_row <= end {
        write_gauges(&mut gauges, next_row, &sim.gauges_at(next_row - 1))?;
        next_row += interval;
    }
    log.flush()
        .with_context(|| format!("writing {}", log_path.display()))?;
    gauges
        .flush()
        .with_context(|| format!("writing {}", gauges_path.display()))?;
    Ok(HostReport {
        host,
        messages: sim.truth().received,
        lines,
        delivered,
        deferred,
        bounced,
        bytes,
    })
}

const GAUGES_HEADER: &str = "timestamp,unix_secs,active_messages,deferred_messages,queue_bytes,spool_size_bytes,spool_free_bytes,spool_avail_bytes\n";

/// One gauges row (both Postfix instances' queues summed).
fn write_gauges(out: &mut impl Write, unix_secs: i64, g: &HostGauges) -> Result<()> {
    let active: u64 = g.queues.iter().map(|q| q.active_messages).sum();
    let deferred: u64 = g.queues.iter().map(|q| q.deferred_messages).sum();
    let queue_bytes: u64 = g
        .queues
        .iter()
        .map(|q| q.active_bytes + q.deferred_bytes)
        .sum();
    writeln!(
        out,
        "{},{unix_secs},{active},{deferred},{queue_bytes},{},{},{}",
        rfc3339(unix_secs),
        g.spool_size_bytes,
        g.spool_free_bytes,
        g.spool_avail_bytes
    )?;
    Ok(())
}

fn summary(
    scenario: &Scenario,
    out_dir: &Path,
    reports: &[HostReport],
    labels: &[IncidentLabel],
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let days = (scenario.end_unix_secs() - scenario.start_unix_secs()) as f64 / 86_400.0;
    let _ = writeln!(
        s,
        "scenario {}: {} hosts, {days:.1} days from {}, seed {} -> {}",
        scenario.name(),
        reports.len(),
        rfc3339(scenario.start_unix_secs()),
        scenario.seed(),
        out_dir.display()
    );
    let _ = writeln!(
        s,
        "\n{:<16} {:>10} {:>11} {:>10} {:>9} {:>8} {:>9}",
        "host", "messages", "lines", "delivered", "deferred", "bounced", "MiB"
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{:<16} {:>10} {:>11} {:>10} {:>9} {:>8} {:>9.1}",
            r.host,
            r.messages,
            r.lines,
            r.delivered,
            r.deferred,
            r.bounced,
            r.bytes as f64 / (1024.0 * 1024.0)
        );
    }
    // One row per incident: its labels share the id.
    let mut incidents: BTreeMap<&str, (usize, Vec<&str>)> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        incidents
            .entry(l.id.as_str())
            .or_insert_with(|| (i, Vec::new()))
            .1
            .push(l.host.as_str());
    }
    let mut rows: Vec<_> = incidents.into_values().collect();
    rows.sort();
    let _ = writeln!(
        s,
        "\n{} incidents ({} labels in labels.jsonl):",
        rows.len(),
        labels.len()
    );
    for (first, hosts) in rows {
        let l = &labels[first];
        let keys = serde_json::to_string(&l.keys).unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<24} {:<20} {} .. {}  {}  {keys}",
            l.id,
            l.kind.as_str(),
            l.start,
            l.end,
            hosts.join(",")
        );
    }
    s
}

/// The scenario's name as a directory name (anything but letters, digits, `.`, `-`, `_`
/// becomes `_`).
fn dir_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "simulation".to_owned(),
        rest => rest.to_owned(),
    }
}

/// `2024-10-07T00:05:00Z`.
fn rfc3339(unix_secs: i64) -> String {
    let mut s = Timestamp {
        unix_secs,
        nanos: 0,
    }
    .to_rfc3339();
    // `…:00.000000Z` → `…:00Z`
    if let Some(dot) = s.rfind('.') {
        s.truncate(dot);
        s.push('Z');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_logs_gauges_and_labels() {
        let dir = std::env::temp_dir().join(format!("mailpulse-simulate-{}", std::process::id()));
        let scenario = dir.join("tiny.toml");
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            &scenario,
            "seed = 1\nstart = 2024-10-07T00:00:00Z\ndays = 0.25\ngauge_interval_secs = 600\n\
             [traffic]\nmessages_per_day = 500\n[[hosts]]\nname = \"a\"\n[[hosts]]\nname = \"b\"\n\
             [[incidents]]\nkind = \"dns_failure\"\nhosts = [\"a\", \"b\"]\n\
             start = 2024-10-07T01:00:00Z\nend = 2024-10-07T02:00:00Z\ndomain = \"gmail.com\"\n",
        )
        .expect("scenario written");
        let out = dir.join("out");
        run(SimulateArgs {
            scenario,
            out_dir: Some(out.clone()),
            format: Some(TimestampStyle::Rfc3339),
        })
        .expect("simulate runs");
        let labels = std::fs::read_to_string(out.join("labels.jsonl")).expect("labels");
        assert_eq!(labels.lines().count(), 2, "one label per host: {labels}");
        for host in ["a", "b"] {
            let log = std::fs::read_to_string(out.join(format!("{host}.log"))).expect("log");
            assert!(log.lines().count() > 100, "{host}.log has traffic");
            assert!(
                log.starts_with("2024-10-07T00:00:"),
                "RFC 3339 lines: {log:.60}"
            );
            let gauges =
                std::fs::read_to_string(out.join(format!("{host}.gauges.csv"))).expect("gauges");
            // Six hours every ten minutes.
            assert_eq!(gauges.lines().count(), 1 + 36, "{gauges}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn directory_names_are_tame() {
        assert_eq!(dir_name("small"), "small");
        assert_eq!(dir_name("../etc/x y"), "_etc_x_y");
        assert_eq!(dir_name(""), "simulation");
    }
}
