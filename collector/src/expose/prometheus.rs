//! Prometheus text exposition (format 0.0.4) of the fleet totals and the collector's own
//! counters. Hand-written because fleet label sets are only known at run time.
//!
//! Naming: agent metric `m` becomes `mailpulse_m_total` (counter), `mailpulse_m` (gauge) or
//! `mailpulse_m_bucket{le}` / `_sum` / `_count` (histogram, cumulative buckets). Every family
//! has HELP and TYPE, as `promtool check metrics` wants.

use std::fmt::Write;

use std::sync::Arc;

use crate::ingest::refusal::SampleRefusal;
use crate::model::{MetricKind, SeriesDef};
use crate::net::ListenerStats;
use crate::stats::{CollectorStats, RejectReason};
use crate::store::{Aggregate, Snapshot};

/// Per-agent liveness for `mailpulse_agent_up`.
#[derive(Debug, Clone)]
pub struct AgentLine {
    /// Agent id.
    pub agent_id: String,
    /// Host from its latest Hello.
    pub host: String,
    /// A stream is open.
    pub connected: bool,
    /// Connected and not silent for too long.
    pub up: bool,
    /// Latest Hello or batch (Unix ms).
    pub last_seen_unix_ms: i64,
}

/// Connection counters of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLine {
    /// `grpc` or `http`.
    pub listener: &'static str,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open.
    pub open: u64,
    /// Connections closed at once over the connection limit.
    pub refused_over_limit: u64,
    /// Connections closed for a handshake, header or write timeout.
    pub timed_out: u64,
}

impl ListenerLine {
    /// The current counters of `stats`.
    pub fn of(listener: &'static str, stats: &ListenerStats) -> Self {
        let (accepted, open, refused_over_limit, timed_out) = stats.read();
        Self {
            listener,
            accepted,
            open,
            refused_over_limit,
            timed_out,
        }
    }
}

/// Everything one scrape shows.
pub struct Exposition<'a> {
    /// Fleet totals.
    pub snapshot: &'a Snapshot,
    /// Agent liveness.
    pub agents: &'a [AgentLine],
    /// Collector counters.
    pub stats: &'a CollectorStats,
    /// Store file size.
    pub store_bytes: u64,
    /// Latest detector judgements, sorted by metric then labels.
    pub bands: &'a [crate::analyze::Band],
    /// Samples refused per agent and reason.
    pub refused: &'a [(Arc<str>, SampleRefusal, u64)],
    /// Connection counters per listener.
    pub listeners: &'a [ListenerLine],
    /// Scrapes answered 503 for want of a render slot.
    pub metrics_busy: u64,
    /// Active alerts: ((alertname, severity, state), count).
    pub alerts: &'a [Counted],
    /// Remediation outcomes ((kind, mode, result), count) and the kill switch, when it runs.
    pub remediation: Option<(&'a [Counted], bool)>,
}

/// A count under three label values.
pub type Counted = ((String, String, String), u64);

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the whole exposition.
pub fn render(exposition: &Exposition<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    render_fleet(exposition.snapshot, &mut out);
    render_bands(exposition.bands, &mut out);
    render_agents(exposition.agents, &mut out);
    render_alerts(exposition, &mut out);
    render_self(exposition, &mut out);
    render_store(exposition, &mut out);
    out
}

/// `mailpulse_alerts{alertname,severity,state}` and the remediation families.
fn render_alerts(exposition: &Exposition<'_>, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP mailpulse_alerts Active alerts (pending, firing, silenced) by name, severity and state.\n# TYPE mailpulse_alerts gauge"
    );
    for ((name, severity, state), n) in exposition.alerts {
        let _ = writeln!(
            out,
            "mailpulse_alerts{{alertname=\"{}\",severity=\"{}\",state=\"{}\"}} {n}",
            escape(name),
            escape(severity),
            escape(state)
        );
    }
    let Some((counts, killed)) = exposition.remediation else {
        return;
    };
    let _ = writeln!(
        out,
        "# HELP mailpulse_remediation_actions_total Remediation outcomes since start: agent results (ok, planned, failed, refused) and guard decisions (cooldown, rate_limited, killed, expired, …), by action kind and playbook mode.\n# TYPE mailpulse_remediation_actions_total counter"
    );
    for ((kind, mode, result), n) in counts {
        let _ = writeln!(
            out,
            "mailpulse_remediation_actions_total{{kind=\"{}\",mode=\"{}\",result=\"{}\"}} {n}",
            escape(kind),
            escape(mode),
            escape(result)
        );
    }
    let _ = writeln!(
        out,
        "# HELP mailpulse_remediation_kill_switch 1 while the kill switch stops every playbook.\n# TYPE mailpulse_remediation_kill_switch gauge\nmailpulse_remediation_kill_switch {}",
        u8::from(killed)
    );
}

fn render_fleet(snapshot: &Snapshot, out: &mut String) {
    let mut ids: Vec<usize> = (0..snapshot.totals.len().min(snapshot.series.len()))
        .filter(|&i| snapshot.totals[i] != Aggregate::Empty)
        .collect();
    ids.sort_by(|&a, &b| {
        let (a, b) = (&snapshot.series[a], &snapshot.series[b]);
        a.metric
            .cmp(&b.metric)
            .then_with(|| a.labels.cmp(&b.labels))
    });
    let mut i = 0;
    while i < ids.len() {
        let first = &snapshot.series[ids[i]];
        let mut j = i;
        while j < ids.len() && snapshot.series[ids[j]].metric == first.metric {
            j += 1;
        }
        let family = &ids[i..j];
        let metric = &first.metric;
        match first.kind {
            MetricKind::Counter => {
                let name = format!("mailpulse_{metric}_total");
                header(
                    out,
                    &name,
                    "counter",
                    &format!("Agent counter {metric}: sum of all reported increases."),
                );
                for &id in family {
                    if let Aggregate::Counter(v) = snapshot.totals[id] {
                        line(out, &name, &snapshot.series[id], None, v);
                    }
                }
            }
            MetricKind::Gauge => {
                let name = format!("mailpulse_{metric}");
                header(
                    out,
                    &name,
                    "gauge",
                    &format!("Agent gauge {metric}: value of the latest reported window."),
                );
                for &id in family {
                    if let Aggregate::Gauge { value, .. } = snapshot.totals[id] {
                        line(out, &name, &snapshot.series[id], None, value);
                    }
                }
            }
            MetricKind::Histogram => {
                let name = format!("mailpulse_{metric}");
                header(
                    out,
                    &name,
                    "histogram",
                    &format!("Agent histogram {metric}: all reported observations."),
                );
                let bucket = format!("{name}_bucket");
                let (sum_name, count_name) = (format!("{name}_sum"), format!("{name}_count"));
                for &id in family {
                    let def = &snapshot.series[id];
                    if let Aggregate::Histogram { sum, counts } = &snapshot.totals[id] {
                        let mut cumulative = 0u64;
                        for (k, count) in counts.iter().enumerate() {
                            cumulative += count;
                            let le = match def.bounds.get(k) {
                                Some(bound) => format_float(*bound),
                                None => "+Inf".to_string(),
                            };
                            line(out, &bucket, def, Some(&le), cumulative as f64);
                        }
                        line(out, &sum_name, def, None, *sum);
                        line(out, &count_name, def, None, cumulative as f64);
                    }
                }
            }
        }
        i = j;
    }
}

fn render_agents(agents: &[AgentLine], out: &mut String) {
    header(
        out,
        "mailpulse_agent_up",
        "gauge",
        "1 when the agent has an open stream and sent something within agent_down_after_secs.",
    );
    for agent in agents {
        let _ = writeln!(
            out,
            "mailpulse_agent_up{{agent=\"{}\",host=\"{}\"}} {}",
            escape(&agent.agent_id),
            escape(&agent.host),
            u8::from(agent.up)
        );
    }
    header(
        out,
        "mailpulse_collector_agent_last_seen_timestamp_seconds",
        "gauge",
        "When the agent last said Hello or sent a batch (Unix seconds).",
    );
    for agent in agents {
        let _ = writeln!(
            out,
            "mailpulse_collector_agent_last_seen_timestamp_seconds{{agent=\"{}\",host=\"{}\"}} {}",
            escape(&agent.agent_id),
            escape(&agent.host),
            format_float(agent.last_seen_unix_ms as f64 / 1000.0)
        );
    }
    let connected = agents.iter().filter(|a| a.connected).count();
    let up = agents.iter().filter(|a| a.up).count();
    header(
        out,
        "mailpulse_collector_agents_connected",
        "gauge",
        "Agents with at least one open stream.",
    );
    let _ = writeln!(out, "mailpulse_collector_agents_connected {connected}");
    header(
        out,
        "mailpulse_collector_agents_up",
        "gauge",
        "Agents counted as up (see mailpulse_agent_up).",
    );
    let _ = writeln!(out, "mailpulse_collector_agents_up {up}");
    header(
        out,
        "mailpulse_collector_agents_known",
        "gauge",
        "Agents in the registry.",
    );
    let _ = writeln!(out, "mailpulse_collector_agents_known {}", agents.len());
}

fn render_self(exposition: &Exposition<'_>, out: &mut String) {
    let stats = exposition.stats;
    let counters = [
        (
            "mailpulse_collector_batches_received_total",
            "Batches received from agents, before dedupe.",
            &stats.batches_received,
        ),
        (
            "mailpulse_collector_batches_applied_total",
            "Batches applied to the store.",
            &stats.batches_applied,
        ),
        (
            "mailpulse_collector_batches_duplicate_total",
            "Batches acknowledged as duplicates (seq at or below the agent's high-water mark), not applied.",
            &stats.batches_duplicate,
        ),
        (
            "mailpulse_collector_batches_missing_total",
            "Seq numbers skipped between applied batches (lost in an agent outbox).",
            &stats.batches_missing,
        ),
        (
            "mailpulse_collector_samples_applied_total",
            "Samples applied to the store.",
            &stats.samples_applied,
        ),
        (
            "mailpulse_collector_store_commits_total",
            "Store write transactions committed.",
            &stats.store_commits,
        ),
        (
            "mailpulse_collector_store_commit_errors_total",
            "Store write transactions that failed (batches not acknowledged).",
            &stats.store_commit_errors,
        ),
        (
            "mailpulse_collector_alertmanager_pushes_total",
            "Pushes of the alerts that an Alertmanager accepted.",
            &stats.alertmanager_pushes,
        ),
        (
            "mailpulse_collector_alertmanager_push_errors_total",
            "Pushes of the alerts to an Alertmanager that failed (retried at the next push).",
            &stats.alertmanager_push_errors,
        ),
        (
            "mailpulse_collector_webhook_deliveries_total",
            "Webhook notifications the receiver accepted.",
            &stats.webhook_deliveries,
        ),
        (
            "mailpulse_collector_webhook_delivery_failures_total",
            "Webhook delivery attempts that failed (retried with backoff).",
            &stats.webhook_delivery_failures,
        ),
        (
            "mailpulse_collector_webhook_dead_letters_total",
            "Webhook notifications given up after their last attempt.",
            &stats.webhook_dead_letters,
        ),
        (
            "mailpulse_collector_remote_write_requests_total",
            "Remote-write requests the receiver accepted.",
            &stats.remote_write_requests,
        ),
        (
            "mailpulse_collector_remote_write_failures_total",
            "Remote-write requests that failed or were refused (not retried: the next one sends the current values).",
            &stats.remote_write_failures,
        ),
    ];
    for (name, help, counter) in counters {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", CollectorStats::get(counter));
    }
    let name = "mailpulse_collector_rejections_total";
    header(
        out,
        name,
        "counter",
        "Agent requests refused, by reason; the stream ends with a gRPC status.",
    );
    for reason in RejectReason::ALL {
        let _ = writeln!(
            out,
            "{name}{{reason=\"{}\"}} {}",
            reason.as_str(),
            stats.rejections(reason)
        );
    }
    let name = "mailpulse_collector_refused_samples_total";
    header(
        out,
        name,
        "counter",
        "Samples and probes refused one by one (not applied; the rest of their batch was), by agent and reason.",
    );
    for (agent, reason, count) in exposition.refused {
        let _ = writeln!(
            out,
            "{name}{{agent=\"{}\",reason=\"{}\"}} {count}",
            escape(agent),
            reason.as_str()
        );
    }
    /// A listener family: name, type, help, and the value it takes from a listener.
    type ListenerFamily = (
        &'static str,
        &'static str,
        &'static str,
        fn(&ListenerLine) -> u64,
    );
    let listener_families: [ListenerFamily; 4] = [
        (
            "mailpulse_collector_connections_accepted_total",
            "counter",
            "Connections accepted, by listener.",
            |l| l.accepted,
        ),
        (
            "mailpulse_collector_connections_open",
            "gauge",
            "Connections open, by listener.",
            |l| l.open,
        ),
        (
            "mailpulse_collector_connections_refused_total",
            "counter",
            "Connections closed at once because the listener's max_connections were open.",
            |l| l.refused_over_limit,
        ),
        (
            "mailpulse_collector_connections_timed_out_total",
            "counter",
            "Connections closed for sending no request in time (handshake, headers) or not reading.",
            |l| l.timed_out,
        ),
    ];
    for (name, kind, help, value) in listener_families {
        header(out, name, kind, help);
        for listener in exposition.listeners {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{}\"}} {}",
                listener.listener,
                value(listener)
            );
        }
    }
    let name = "mailpulse_collector_metrics_busy_total";
    header(
        out,
        name,
        "counter",
        "Scrapes answered 503 because max_concurrent_metrics_renders were busy.",
    );
    let _ = writeln!(out, "{name} {}", exposition.metrics_busy);
    let name = "mailpulse_collector_otlp_exports_total";
    header(out, name, "counter", "OTLP metric exports, by result.");
    let _ = writeln!(
        out,
        "{name}{{result=\"ok\"}} {}",
        CollectorStats::get(&stats.otlp_exports_ok)
    );
    let _ = writeln!(
        out,
        "{name}{{result=\"error\"}} {}",
        CollectorStats::get(&stats.otlp_exports_failed)
    );
    header(
        out,
        "mailpulse_collector_series",
        "gauge",
        "Distinct series in the store.",
    );
    let live: usize = exposition
        .snapshot
        .owners
        .iter()
        .map(|o| o.series + o.other_series)
        .sum();
    let _ = writeln!(out, "mailpulse_collector_series {live}");
    header(
        out,
        "mailpulse_collector_store_size_bytes",
        "gauge",
        "Size of the store file.",
    );
    let _ = writeln!(
        out,
        "mailpulse_collector_store_size_bytes {}",
        exposition.store_bytes
    );
}

/// What the store's limits and retention did: series per agent (quota), folded label sets,
/// expiry and pruning, refused DNS probes, reopens after I/O errors.
fn render_store(exposition: &Exposition<'_>, out: &mut String) {
    let owners = &exposition.snapshot.owners;
    let name = "mailpulse_collector_agent_series";
    header(
        out,
        name,
        "gauge",
        "Live series an agent created (by the host it says Hello as), own and other.",
    );
    for owner in owners {
        let host = escape(&owner.owner);
        let _ = writeln!(
            out,
            "{name}{{host=\"{host}\",kind=\"own\"}} {}",
            owner.series
        );
        let _ = writeln!(
            out,
            "{name}{{host=\"{host}\",kind=\"other\"}} {}",
            owner.other_series
        );
    }
    let name = "mailpulse_collector_agent_series_folded_total";
    header(
        out,
        name,
        "counter",
        "New label sets folded into an other series past the agent's series quota.",
    );
    for owner in owners {
        let _ = writeln!(
            out,
            "{name}{{host=\"{}\"}} {}",
            escape(&owner.owner),
            owner.folded
        );
    }
    let stats = exposition.stats;
    let counters = [
        (
            "mailpulse_collector_series_expired_total",
            "Series forgotten because nothing was written to them within the retention.",
            &stats.series_expired,
        ),
        (
            "mailpulse_collector_dns_probes_refused_total",
            "DNS probes of a new record refused past the agent's record cap.",
            &stats.dns_probes_refused,
        ),
        (
            "mailpulse_collector_dns_records_pruned_total",
            "DNS records pruned (not probed within the retention).",
            &stats.dns_records_pruned,
        ),
        (
            "mailpulse_collector_dns_changes_pruned_total",
            "DNS changes pruned (recorded before the retention).",
            &stats.dns_changes_pruned,
        ),
        (
            "mailpulse_collector_anomalies_pruned_total",
            "Stored anomalies pruned (windows before the retention).",
            &stats.anomalies_pruned,
        ),
        (
            "mailpulse_collector_store_reopens_total",
            "Times the store was reopened after an I/O error.",
            &stats.store_reopens,
        ),
    ];
    for (name, help, counter) in counters {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", CollectorStats::get(counter));
    }
}

/// `mailpulse_<view>_{observed,expected,lower,upper,anomaly_score}` per view series (counters
/// per stored window: the increase in one window; ratios as rates in [0, 1]; forecasts: the
/// values at the horizon, plus `_eta_seconds` when the limit is reached within it). Values not
/// known yet (no model, an open band side) are left out.
fn render_bands(bands: &[crate::analyze::Band], out: &mut String) {
    /// A band family: name suffix, help text, and the value it takes from a band.
    type BandPart = (&'static str, &'static str, fn(&crate::analyze::Band) -> f64);
    let parts: [BandPart; 6] = [
        ("observed", "Value of the latest judged window", |b| {
            b.judgement.observed
        }),
        (
            "expected",
            "Expected value of the latest judged window",
            |b| b.judgement.expected,
        ),
        ("lower", "Lower edge of the band", |b| b.judgement.lower),
        ("upper", "Upper edge of the band", |b| b.judgement.upper),
        (
            "anomaly_score",
            "Anomaly score in [0, 1] of the latest window",
            |b| b.judgement.score,
        ),
        (
            "eta_seconds",
            "Seconds until the forecast reaches the limit (pessimistic bound)",
            |b| b.judgement.eta_secs.unwrap_or(f64::NAN),
        ),
    ];
    let mut i = 0;
    while i < bands.len() {
        let metric = &bands[i].series.metric;
        let mut j = i;
        while j < bands.len() && bands[j].series.metric == *metric {
            j += 1;
        }
        let group = &bands[i..j];
        for (suffix, help, value) in parts {
            let name = format!("mailpulse_{metric}_{suffix}");
            let mut wrote_header = false;
            for band in group {
                let v = value(band);
                if !v.is_finite() {
                    continue;
                }
                if !wrote_header {
                    header(out, &name, "gauge", &format!("{help} of {metric}."));
                    wrote_header = true;
                }
                line(out, &name, &band.series, None, v);
            }
        }
        i = j;
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, def: &SeriesDef, le: Option<&str>, value: f64) {
    out.push_str(name);
    let mut first = true;
    let mut label = |out: &mut String, n: &str, v: &str| {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        out.push_str(&escape(v));
        out.push('"');
    };
    for (n, v) in def.labels.iter() {
        label(out, n, v);
    }
    if let Some(le) = le {
        label(out, "le", le);
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_float(value));
}

/// Label value escaping of the text format: backslash, double quote, newline.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// Shortest float text Prometheus parses back to the same value.
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_cumulative_buckets() {
        let series = vec![
            Arc::new(SeriesDef {
                metric: "messages_delivered".into(),
                labels: vec![
                    ("domain".into(), "a\"b".into()),
                    ("host".into(), "mx1".into()),
                ]
                .into(),
                kind: MetricKind::Counter,
                bounds: Box::new([]),
            }),
            Arc::new(SeriesDef {
                metric: "delivery_delay_seconds".into(),
                labels: vec![("host".into(), "mx1".into())].into(),
                kind: MetricKind::Histogram,
                bounds: vec![0.5, 2.0].into(),
            }),
        ];
        let snapshot = Snapshot {
            series,
            totals: vec![
                Aggregate::Counter(12.0),
                Aggregate::Histogram {
                    sum: 7.5,
                    counts: vec![1, 2, 3].into(),
                },
            ],
            agents: Vec::new(),
            owners: Vec::new(),
        };
        let stats = CollectorStats::default();
        let text = render(&Exposition {
            snapshot: &snapshot,
            agents: &[],
            stats: &stats,
            store_bytes: 1,
            bands: &[],
            alerts: &[],
            remediation: None,
            refused: &[("mx\"1".into(), SampleRefusal::LabelTooLong, 3)],
            listeners: &[ListenerLine::of("grpc", &ListenerStats::default())],
            metrics_busy: 2,
        });
        for expected in [
            "# TYPE mailpulse_messages_delivered_total counter\n",
            "mailpulse_messages_delivered_total{domain=\"a\\\"b\",host=\"mx1\"} 12\n",
            "# TYPE mailpulse_delivery_delay_seconds histogram\n",
            "mailpulse_delivery_delay_seconds_bucket{host=\"mx1\",le=\"0.5\"} 1\n",
            "mailpulse_delivery_delay_seconds_bucket{host=\"mx1\",le=\"2\"} 3\n",
            "mailpulse_delivery_delay_seconds_bucket{host=\"mx1\",le=\"+Inf\"} 6\n",
            "mailpulse_delivery_delay_seconds_sum{host=\"mx1\"} 7.5\n",
            "mailpulse_delivery_delay_seconds_count{host=\"mx1\"} 6\n",
            "mailpulse_collector_rejections_total{reason=\"rate_limited\"} 0\n",
            "mailpulse_collector_refused_samples_total{agent=\"mx\\\"1\",reason=\"label_too_long\"} 3\n",
            "mailpulse_collector_connections_refused_total{listener=\"grpc\"} 0\n",
            "mailpulse_collector_metrics_busy_total 2\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
