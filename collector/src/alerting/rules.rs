//! Alert rules: which of the analyzer's alerts page whom, how loudly and after how long.
//!
//! A rule matches an analyzer alert by view (`view`, required), by the detectors that fired
//! (`detectors`, any of them; empty: all) and by label values (`matchers`, all of them). The
//! first matching rule of the configuration decides; an alert no configured rule matches gets
//! its view's built-in rule ([`builtin_rule`]). A rule sets the severity, how long the alert
//! must stay active before it fires (`for_secs`), and can silence a view (`enabled = false`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analyze::Alert;

/// How loud an alert is (the `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: worth a look in working hours.
    Info,
    /// Mail is affected or soon will be.
    Warning,
    /// Mail is not flowing, or a disk or queue is about to stop it.
    Critical,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One `[[alerting.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The view whose alerts this rule takes (`bounce_ratio`, `messages_deferred`, …); its span
    /// in the file, for errors.
    pub view: toml::Spanned<String>,
    /// Detectors, any of which must have fired (`seasonal`, `level_shift`, `counts`, `ratio`,
    /// `fleet`, `forecast`); empty: any.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// Label values the alert must have, e.g. `{ domain = "gmail.com" }`.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// Default: the view's built-in severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Seconds the alert must stay active before it fires. Default: the view's built-in.
    #[serde(default)]
    pub for_secs: Option<u64>,
    /// `false`: alerts this rule matches are never sent (they stay in `/api/v1/alerts` as
    /// `silenced`).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// What a rule decided for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub severity: Severity,
    pub for_secs: u64,
    pub enabled: bool,
}

/// The built-in rule of a view: severity and `for` duration. Views not listed (custom ones)
/// are warnings that fire at once.
pub fn builtin_rule(view: &str) -> Decision {
    use Severity::{Critical, Info, Warning};
    let (severity, for_secs) = match view {
        // Mail stops: the spool or the queue reaches its limit, deliveries collapse.
        "spool_full" | "deferred_queue_limit" | "filesystem_avail_bytes" | "agent_down" => {
            (Critical, 0)
        }
        "messages_delivered" => (Critical, 300),
        // A blocklisted sending IP, an MX host failing, a destination's MX target failing.
        "dnsbl_listed" | "mx_host_failing" | "relay_failing" | "dns_propagation" => (Warning, 0),
        // Recipients call our mail spam: reputation is at stake.
        "complaints" | "complaint_ratio" => (Warning, 0),
        // Routing that works but could be better.
        "mx_unbalanced" | "mx_ttl_long" => (Info, 0),
        // Mail is refused or delayed at destinations, or an account is abused.
        "bounce_ratio"
        | "deferral_ratio"
        | "messages_bounced"
        | "messages_deferred"
        | "sasl_user_messages"
        | "sasl_user_failure_ratio"
        | "queue_messages" => (Warning, 0),
        // Inbound pressure: worth knowing, rarely an emergency.
        "messages_received"
        | "messages_rejected"
        | "smtpd_connections"
        | "postscreen_connections"
        | "sasl_auth_failures" => (Info, 0),
        _ => (Warning, 0),
    };
    Decision {
        severity,
        for_secs,
        enabled: true,
    }
}

/// The configured rules, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    rules: Vec<RuleSpec>,
}

impl Rules {
    pub fn new(rules: Vec<RuleSpec>) -> Self {
        Rules { rules }
    }

    /// The decision for `alert`: the first configured rule that matches it, else the view's
    /// built-in rule.
    pub fn decide(&self, alert: &Alert) -> Decision {
        let builtin = builtin_rule(&alert.name);
        self.rules
            .iter()
            .find(|r| matches(r, alert))
            .map_or(builtin, |r| Decision {
                severity: r.severity.unwrap_or(builtin.severity),
                for_secs: r.for_secs.unwrap_or(builtin.for_secs),
                enabled: r.enabled,
            })
    }
}

fn matches(rule: &RuleSpec, alert: &Alert) -> bool {
    rule.view.get_ref() == &alert.name
        && (rule.detectors.is_empty() || rule.detectors.iter().any(|d| alert.detectors.contains(d)))
        && rule
            .matchers
            .iter()
            .all(|(name, value)| alert.label(name) == Some(value.as_str()))
}

/// A rule naming a view that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert rule names view {view:?}, which does not exist (known: {known})")]
pub struct UnknownView {
    /// The name in the rule.
    pub view: String,
    /// Byte range of the name in the configuration text.
    pub span: std::ops::Range<usize>,
    /// The views that exist, comma-separated.
    pub known: String,
}

/// Checks that every rule names one of `views`.
pub fn check_views<'a>(
    rules: &[RuleSpec],
    views: impl IntoIterator<Item = &'a str> + Clone,
) -> Result<(), UnknownView> {
    for rule in rules {
        let name = rule.view.get_ref();
        if !views.clone().into_iter().any(|v| v == name) {
            let mut known: Vec<&str> = views.clone().into_iter().collect();
            known.sort_unstable();
            known.dedup();
            return Err(UnknownView {
                view: name.clone(),
                span: rule.view.span(),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::AlertFigures;

    fn alert(name: &str, labels: &[(&str, &str)], detectors: &[&str]) -> Alert {
        Alert {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            detectors: detectors.iter().map(|d| (*d).into()).collect(),
            first_window_unix_ms: 0,
            last_window_unix_ms: 0,
            resolved_unix_ms: None,
            windows: 1,
            peak_score: 1.0,
            peak_detail: String::new(),
            last: AlertFigures::default(),
            advice: None,
        }
    }

    #[derive(Deserialize)]
    struct File {
        rules: Vec<RuleSpec>,
    }

    fn rules(text: &str) -> Vec<RuleSpec> {
        toml::from_str::<File>(text).expect("rules parse").rules
    }

    #[test]
    fn the_first_matching_rule_decides_else_the_builtin() {
        let rules = Rules::new(rules(
            r#"
            [[rules]]
            view = "bounce_ratio"
            matchers = { domain = "gmail.com" }
            severity = "critical"
            for_secs = 600
            [[rules]]
            view = "bounce_ratio"
            detectors = ["fleet"]
            enabled = false
            "#,
        ));
        let gmail = alert("bounce_ratio", &[("domain", "gmail.com")], &["ratio"]);
        assert_eq!(
            rules.decide(&gmail),
            Decision {
                severity: Severity::Critical,
                for_secs: 600,
                enabled: true
            }
        );
        let fleet = alert(
            "bounce_ratio",
            &[("domain", "yahoo.com")],
            &["fleet", "ratio"],
        );
        assert!(!rules.decide(&fleet).enabled);
        let other = alert("bounce_ratio", &[("domain", "yahoo.com")], &["ratio"]);
        assert_eq!(rules.decide(&other), builtin_rule("bounce_ratio"));
        assert_eq!(
            rules
                .decide(&alert("spool_full", &[], &["forecast"]))
                .severity,
            Severity::Critical
        );
    }

    #[test]
    fn unknown_views_are_named_with_their_place() {
        let text = "[[rules]]\nview = \"bounce_ratio\"\n[[rules]]\nview = \"bounce_rato\"\n";
        let parsed = rules(text);
        let err = check_views(&parsed, ["bounce_ratio", "spool_full"]).unwrap_err();
        assert_eq!(err.view, "bounce_rato");
        assert_eq!(&text[err.span.clone()], "\"bounce_rato\"");
        assert!(
            err.to_string().contains("bounce_ratio, spool_full"),
            "{err}"
        );
        assert!(check_views(&parsed[..1], ["bounce_ratio"]).is_ok());
    }
}
