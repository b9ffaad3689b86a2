//! A simulated fleet written into a directory (`mailpulse simulate`): one Postfix log per host
//! (`<host>.log`), the probe gauges the log cannot carry (`<host>.gauges.csv`: queue sizes and
//! spool filesystem every `gauge_interval_secs`) and the incident labels (`labels.jsonl`).
//!
//! Hosts are written one after the other, each as a stream, so memory does not depend on the
//! simulated period. The scenario format is documented in [`super::scenario`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use mailpulse_agent::parse::Timestamp;

use super::{HostGauges, HostSimulation, IncidentLabel, Scenario, write_labels};

/// Why the fleet could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteError {
    /// The file or directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct FleetOutput {
    /// The directory.
    pub out_dir: PathBuf,
    /// Per host, in the scenario's order.
    pub hosts: Vec<HostReport>,
    /// The labels written to `labels.jsonl`.
    pub labels: Vec<IncidentLabel>,
}

/// Writes every host's log and gauges and the labels of `scenario` into `out_dir` (created
/// when missing).
pub fn write_fleet(scenario: &Scenario, out_dir: &Path) -> Result<FleetOutput, WriteError> {
    let at = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(at(out_dir))?;
    let labels = scenario.labels();
    let labels_path = out_dir.join("labels.jsonl");
    let file = File::create(&labels_path).map_err(at(&labels_path))?;
    write_labels(BufWriter::new(file), &labels).map_err(at(&labels_path))?;
    let mut hosts = Vec::new();
    for sim in scenario.host_simulations() {
        hosts.push(write_host(sim, scenario, out_dir)?);
    }
    Ok(FleetOutput {
        out_dir: out_dir.to_owned(),
        hosts,
        labels,
    })
}

/// Counts of one written host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// The host's name.
    pub host: String,
    /// Messages received (the generator's truth).
    pub messages: u64,
    /// Log lines written.
    pub lines: u64,
    /// `status=sent` lines.
    pub delivered: u64,
    /// `status=deferred` lines.
    pub deferred: u64,
    /// `status=bounced` lines.
    pub bounced: u64,
    /// Bytes of the log.
    pub bytes: u64,
}

/// Streams one host's log and gauges into `out_dir`.
fn write_host(
    mut sim: HostSimulation,
    scenario: &Scenario,
    out_dir: &Path,
) -> Result<HostReport, WriteError> {
    let host = sim.host().to_owned();
    let log_path = out_dir.join(format!("{host}.log"));
    let gauges_path = out_dir.join(format!("{host}.gauges.csv"));
    let log_error = |source| WriteError {
        path: log_path.clone(),
        source,
    };
    let gauges_error = |source| WriteError {
        path: gauges_path.clone(),
        source,
    };
    let mut log = BufWriter::with_capacity(1 << 16, File::create(&log_path).map_err(log_error)?);
    let mut gauges = BufWriter::new(File::create(&gauges_path).map_err(gauges_error)?);
    gauges
        .write_all(GAUGES_HEADER.as_bytes())
        .map_err(gauges_error)?;
    let interval = i64::from(scenario.gauge_interval_secs());
    let end = scenario.end_unix_secs();
    let mut next_row = scenario.start_unix_secs() + interval;
    let (mut lines, mut bytes) = (0u64, 0u64);
    let (mut delivered, mut deferred, mut bounced) = (0u64, 0u64, 0u64);
    while let Some(line) = sim.next() {
        // A row describes the state just before its time: write rows the stream has passed.
        while line.at_unix_micros >= next_row * 1_000_000 && next_row <= end {
            write_gauges(&mut gauges, next_row, &sim.gauges_at(next_row - 1))
                .map_err(gauges_error)?;
            next_row += interval;
        }
        if line.text.contains("status=sent") {
            delivered += 1;
        } else if line.text.contains("status=deferred") {
            deferred += 1;
        } else if line.text.contains("status=bounced") {
            bounced += 1;
        }
        log.write_all(line.text.as_bytes())
            .and_then(|()| log.write_all(b"\n"))
            .map_err(log_error)?;
        lines += 1;
        bytes += line.text.len() as u64 + 1;
    }
    while next_row <= end {
        write_gauges(&mut gauges, next_row, &sim.gauges_at(next_row - 1)).map_err(gauges_error)?;
        next_row += interval;
    }
    log.flush().map_err(log_error)?;
    gauges.flush().map_err(gauges_error)?;
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
fn write_gauges(out: &mut impl Write, unix_secs: i64, g: &HostGauges) -> io::Result<()> {
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
    )
}

/// The printed summary of a written fleet: hosts with their counts, incidents with their keys.
pub fn summary(scenario: &Scenario, output: &FleetOutput) -> String {
    use std::fmt::Write as _;
    let (out_dir, reports, labels) = (&output.out_dir, &output.hosts, &output.labels);
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
pub fn dir_name(name: &str) -> String {
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
    use crate::synth::TimestampStyle;

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
        let mut scenario = Scenario::load(&scenario).expect("scenario loads");
        scenario.set_timestamp_style(TimestampStyle::Rfc3339);
        let output = write_fleet(&scenario, &out).expect("fleet written");
        assert_eq!(output.hosts.len(), 2);
        assert!(summary(&scenario, &output).contains("dns_failure"));
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
