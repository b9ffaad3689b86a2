//! What an alert says: labels people route on and annotations an on-call person can act on.

use std::collections::BTreeMap;

use super::rules::Severity;
use crate::analyze::Alert;

/// The alert's labels: `alertname` (the view), `severity`, and the view's key labels (`host`,
/// `instance`, `domain`, `relay`, `reason_class`, `path`, …; a SASL user key is `sasl_user`).
pub fn labels(alert: &Alert, severity: Severity) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = alert
        .labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| {
            let name = if n == "user" { "sasl_user" } else { n.as_str() };
            (name.to_owned(), v.clone())
        })
        .collect();
    labels.insert("alertname".into(), alert.name.clone());
    labels.insert("severity".into(), severity.as_str().into());
    labels
}

/// The annotations: `summary` (one line: what, where, observed against expected), `description`
/// (the evidence: detectors, score, windows, the detector's own account), `recommendation`
/// (what to do, see [`super::recommend`]) and `runbook_url`.
pub fn annotations(alert: &Alert, runbook_base_url: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("summary".into(), summary(alert));
    out.insert(
        "description".into(),
        format!(
            "Detectors: {}. Peak score {:.3} over {} anomalous window{} since {}. {}",
            alert.detectors.join(", "),
            alert.peak_score,
            alert.windows,
            if alert.windows == 1 { "" } else { "s" },
            rfc3339(alert.first_window_unix_ms),
            alert.peak_detail
        ),
    );
    let recommendation = super::recommend::recommendation(alert);
    if !recommendation.is_empty() {
        out.insert("recommendation".into(), recommendation);
    }
    out.insert(
        "runbook_url".into(),
        format!(
            "{}/{}.md",
            runbook_base_url.trim_end_matches('/'),
            alert.name
        ),
    );
    out
}

/// "bounce_ratio gmail.com on mx1: 40.0 % in 5 min, expected 0.0–3.0 % (above)".
fn summary(alert: &Alert) -> String {
    let keys: Vec<&str> = alert
        .labels
        .iter()
        .filter(|(n, v)| n != "host" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    let host = alert.label("host").unwrap_or("the fleet");
    let subject = if keys.is_empty() {
        format!("{} on {host}", alert.name)
    } else {
        format!("{} {} on {host}", alert.name, keys.join(" "))
    };
    if let Some(advice) = &alert.advice {
        return format!("{subject}: {}", advice.summary);
    }
    let f = &alert.last;
    if f.direction.is_empty() {
        return subject;
    }
    let value = |v: f64| format_value(&alert.name, v);
    let window = if f.window_secs.is_multiple_of(60) {
        format!("{} min", f.window_secs / 60)
    } else {
        format!("{} s", f.window_secs)
    };
    let band = if f.lower.is_finite() && f.upper.is_finite() {
        format!("expected {}–{}", value(f.lower.max(0.0)), value(f.upper))
    } else {
        format!("expected {}", value(f.expected))
    };
    format!(
        "{subject}: {} in {window}, {band} ({})",
        value(f.observed),
        f.direction
    )
}

/// A value in the units of its view: ratios as percentages, bytes in binary units, counts
/// as numbers.
fn format_value(view: &str, v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if view.ends_with("_ratio") {
        return format!("{:.1} %", v * 100.0);
    }
    if view.ends_with("_bytes") || view == "spool_full" {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = v;
        let mut unit = 0;
        while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        return format!("{value:.1} {}", UNITS[unit]);
    }
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Unix ms as RFC 3339 UTC (`2024-10-07T09:05:00Z`).
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::AlertFigures;

    fn storm() -> Alert {
        Alert {
            name: "messages_bounced".into(),
            labels: vec![
                ("host".into(), "mx1".into()),
                ("reason_class".into(), "policy-block".into()),
            ],
            detectors: vec!["counts".into(), "seasonal".into()],
            first_window_unix_ms: 1_728_292_800_000,
            last_window_unix_ms: 1_728_293_100_000,
            resolved_unix_ms: None,
            windows: 2,
            peak_score: 0.999,
            peak_detail: "212 events in 1 window, 4.1 expected".into(),
            last: AlertFigures {
                window_secs: 300,
                observed: 212.0,
                expected: 6.0,
                lower: 3.0,
                upper: 11.0,
                direction: "above".into(),
                score: 0.999,
            },
            advice: None,
        }
    }

    #[test]
    fn summaries_say_what_where_and_against_what() {
        let a = storm();
        let notes = annotations(&a, "http://mp.test:9470/runbooks/");
        assert_eq!(
            notes["summary"],
            "messages_bounced policy-block on mx1: 212 in 5 min, expected 3–11 (above)"
        );
        assert_eq!(
            notes["description"],
            "Detectors: counts, seasonal. Peak score 0.999 over 2 anomalous windows since \
             2024-10-07T09:20:00Z. 212 events in 1 window, 4.1 expected"
        );
        assert_eq!(
            notes["runbook_url"],
            "http://mp.test:9470/runbooks/messages_bounced.md"
        );
        let l = labels(&a, Severity::Warning);
        let expected: Vec<(&str, &str)> = vec![
            ("alertname", "messages_bounced"),
            ("host", "mx1"),
            ("reason_class", "policy-block"),
            ("severity", "warning"),
        ];
        assert_eq!(
            l.iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            expected
        );
    }

    #[test]
    fn values_are_in_their_views_units() {
        assert_eq!(format_value("bounce_ratio", 0.4), "40.0 %");
        assert_eq!(
            format_value("filesystem_avail_bytes", 3.5 * 1024.0 * 1024.0 * 1024.0),
            "3.5 GiB"
        );
        assert_eq!(format_value("messages_deferred", 12.0), "12");
        assert_eq!(format_value("queue_messages", f64::NAN), "n/a");
        let mut user = storm();
        user.labels = vec![("host".into(), "mx1".into()), ("user".into(), "bob".into())];
        assert_eq!(labels(&user, Severity::Info)["sasl_user"], "bob");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
