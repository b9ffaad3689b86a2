//! `mailpulse alerts [--collector URL] [--json]`: the collector's alerts for a person, like
//! `amtool alert` — firing first, with what was observed, the evidence and the runbook.

use anyhow::Result;
use mailpulse_collector::alerting::AlertState;
use mailpulse_collector::alerting::content::rfc3339;

/// Fetches `/api/v1/alerts` from `collector` and prints it (`json`: as the API returns it).
pub fn run(collector: &str, json: bool, all: bool) -> Result<()> {
    let alerts: Vec<AlertState> = crate::cli_http::get_json(collector, "/api/v1/alerts")?;
    let shown: Vec<&AlertState> = alerts
        .iter()
        .filter(|a| all || a.state != mailpulse_collector::alerting::State::Resolved)
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &shown)?;
        use std::io::Write;
        writeln!(out)?;
        return Ok(());
    }
    print!("{}", render(&shown));
    Ok(())
}

/// The alerts as text: one block per alert.
fn render(alerts: &[&AlertState]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if alerts.is_empty() {
        out.push_str("no alerts\n");
        return out;
    }
    for a in alerts {
        let name = a.labels.get("alertname").map_or("?", String::as_str);
        let severity = a.labels.get("severity").map_or("?", String::as_str);
        let keys: Vec<String> = a
            .labels
            .iter()
            .filter(|(n, _)| *n != "alertname" && *n != "severity")
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let state = a.state.as_str();
        let _ = writeln!(
            out,
            "{state:<8} {severity:<8} {name} {{{}}} since {}",
            keys.join(", "),
            rfc3339(a.active_since_unix_ms)
        );
        for key in ["summary", "description", "recommendation", "runbook_url"] {
            if let Some(text) = a.annotations.get(key) {
                let _ = writeln!(out, "    {key}: {text}");
            }
        }
        let _ = writeln!(out, "    fingerprint: {}", a.fingerprint);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpulse_collector::alerting::State;

    #[test]
    fn alerts_render_as_blocks_with_their_evidence() {
        let alert = AlertState {
            fingerprint: "0123456789abcdef".into(),
            labels: [
                ("alertname", "bounce_ratio"),
                ("domain", "gmail.com"),
                ("host", "mx1"),
                ("severity", "warning"),
            ]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect(),
            annotations: [("summary", "bounce_ratio gmail.com on mx1: 40.0 % in 5 min")]
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            state: State::Firing,
            active_since_unix_ms: 0,
            firing_since_unix_ms: Some(0),
            resolved_unix_ms: None,
            last_window_unix_ms: 0,
            detectors: vec!["ratio".into()],
            windows: 1,
            peak_score: 0.99,
        };
        assert_eq!(
            render(&[&alert]),
            "firing   warning  bounce_ratio {domain=gmail.com, host=mx1} since 1970-01-01T00:00:00Z\n    \
             summary: bounce_ratio gmail.com on mx1: 40.0 % in 5 min\n    fingerprint: 0123456789abcdef\n"
        );
        assert_eq!(render(&[]), "no alerts\n");
    }
}
