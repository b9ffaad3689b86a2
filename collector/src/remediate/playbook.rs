//! Playbooks: a trigger (an alert name and label matchers) and ordered steps of typed actions
//! whose parameters are literals or the trigger alert's labels (`"$domain"`).
//!
//! ```toml
//! [[playbooks]]
//! name = "throttle-destination"
//! mode = "auto"                   # dry_run (default) | approve | auto
//! revert_after_secs = 3600        # throttles, holds, blocks, pool switches are undone then
//! revert_on_resolve = true        # … or when the alert resolves, whichever comes first
//! trigger = { alert = "messages_deferred", matchers = { reason_class = "rate-limit" } }
//! [[playbooks.steps]]
//! action = "throttle_destination"
//! params = { domain = "$domain", rate_delay_secs = "10" }
//! ```

use std::collections::BTreeMap;

use mailpulse_proto::actions::ActionKind;
use serde::{Deserialize, Serialize};

/// How a playbook's actions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The agent reports the exact commands it would run; nothing changes.
    #[default]
    DryRun,
    /// Waits for a person's approval (`mailpulse approve`), which expires.
    Approve,
    /// Runs at once (within the guards).
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry_run",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }
}

/// What fires a playbook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The alert's name (`alertname`); its span for errors.
    pub alert: toml::Spanned<String>,
    /// Label values the alert must have.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The action (`throttle_destination`, …); its span for errors.
    pub action: toml::Spanned<String>,
    /// Parameter → literal value, or `$label` for the trigger alert's label.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Spanned<String>>,
}

/// One `[[playbooks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    #[serde(default)]
    pub mode: Mode,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    /// Seconds after which reversible actions are undone (default 3600; 0: never by time).
    #[serde(default = "default_revert_after_secs")]
    pub revert_after_secs: u64,
    /// Undo reversible actions when the alert resolves (default true).
    #[serde(default = "default_true")]
    pub revert_on_resolve: bool,
    /// Seconds an approval may wait (approve mode; default: `[remediation]`'s).
    #[serde(default)]
    pub approval_expiry_secs: Option<u64>,
}

fn default_revert_after_secs() -> u64 {
    3600
}

fn default_true() -> bool {
    true
}

/// The playbooks file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookFile {
    #[serde(default)]
    pub playbooks: Vec<Playbook>,
}

/// A playbook problem and where it is (byte span in the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlaybookError {
    pub message: String,
    pub span: std::ops::Range<usize>,
}

/// The labels an alert named `alert` carries, given the detection views' key labels
/// (`views`: view name → `by` labels); None for an alert name that does not exist.
pub fn alert_labels(alert: &str, views: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    let fixed: &[&str] = match alert {
        "agent_down" => &["agent", "host"],
        "dnsbl_listed" => &["host", "ip", "list"],
        "mx_host_failing" => &["host", "domain", "mx"],
        "mx_unbalanced" => &["host", "domain", "preference"],
        "mx_ttl_long" => &["domain"],
        "dns_propagation" => &["host", "domain"],
        "relay_failing" => &["host", "domain", "relay"],
        _ => &[],
    };
    let mut labels: Vec<String> = if fixed.is_empty() {
        let by: Vec<&Vec<String>> = views
            .iter()
            .filter(|(name, _)| name == alert)
            .map(|(_, by)| by)
            .collect();
        if by.is_empty() {
            return None;
        }
        // A view name may have several keys (host alone, host + reason_class): a label is
        // available when every view of that name has it.
        let mut common: Vec<String> = by[0]
            .iter()
            .map(|l| {
                if l == "user" {
                    "sasl_user".into()
                } else {
                    l.clone()
                }
            })
            .collect();
        common.retain(|l| {
            by.iter().all(|b| {
                b.iter()
                    .any(|x| x == l || (x == "user" && l == "sasl_user"))
            })
        });
        common.push("host".into());
        common
    } else {
        fixed.iter().map(|l| (*l).to_owned()).collect()
    };
    labels.push("alertname".into());
    labels.push("severity".into());
    Some(labels)
}

/// Checks every playbook: a known trigger alert, known actions, every required parameter
/// given, none unknown, literals in their grammar, and `$label`s the trigger's alert carries
/// (or its matchers pin).
pub fn check(file: &PlaybookFile, views: &[(String, Vec<String>)]) -> Result<(), PlaybookError> {
    let mut names = std::collections::BTreeSet::new();
    for pb in &file.playbooks {
        let at = |span: std::ops::Range<usize>, message: String| PlaybookError {
            message: format!("playbook {:?}: {message}", pb.name),
            span,
        };
        if !names.insert(pb.name.as_str()) {
            return Err(at(
                pb.trigger.alert.span(),
                "a second playbook of that name".into(),
            ));
        }
        let Some(mut available) = alert_labels(pb.trigger.alert.get_ref(), views) else {
            return Err(at(
                pb.trigger.alert.span(),
                format!(
                    "trigger alert {:?} does not exist",
                    pb.trigger.alert.get_ref()
                ),
            ));
        };
        available.extend(pb.trigger.matchers.keys().cloned());
        if pb.steps.is_empty() {
            return Err(at(pb.trigger.alert.span(), "no steps".into()));
        }
        for step in &pb.steps {
            if step.action.get_ref() == NOTIFY {
                check_notify(step).map_err(|(span, message)| at(span, message))?;
                continue;
            }
            let Some(kind) = ActionKind::parse(step.action.get_ref()) else {
                let known: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(at(
                    step.action.span(),
                    format!(
                        "unknown action {:?} (known: {}, {NOTIFY})",
                        step.action.get_ref(),
                        known.join(", ")
                    ),
                ));
            };
            let (required, _) = kind.params();
            for need in required {
                if !step.params.contains_key(*need) {
                    return Err(at(
                        step.action.span(),
                        format!("{} needs parameter {need}", kind.as_str()),
                    ));
                }
            }
            for (name, value) in &step.params {
                match value.get_ref().strip_prefix('$') {
                    Some(label) => {
                        if !available.iter().any(|l| l == label) {
                            return Err(at(
                                value.span(),
                                format!(
                                    "parameter {name} takes label {label:?}, which alert {:?} \
                                     does not carry (it has: {})",
                                    pb.trigger.alert.get_ref(),
                                    available.join(", ")
                                ),
                            ));
                        }
                        kind.check_param(name, "example.com")
                            .or_else(|e| {
                                // Only the name matters here; the value comes at run time.
                                if e.why.starts_with("not a parameter") {
                                    Err(e)
                                } else {
                                    Ok(String::new())
                                }
                            })
                            .map_err(|e| at(value.span(), e.to_string()))?;
                    }
                    None => {
                        kind.check_param(name, value.get_ref())
                            .map_err(|e| at(value.span(), e.to_string()))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The step that tells people instead of acting: it posts a signed JSON message to every
/// `[alerting.webhooks]` receiver (`params = { message = "…" }`).
pub const NOTIFY: &str = "notify";

/// Longest `notify` message (bytes).
pub const MAX_MESSAGE_BYTES: usize = 1000;

fn check_notify(step: &Step) -> Result<(), (std::ops::Range<usize>, String)> {
    for (name, value) in &step.params {
        if name != "message" {
            return Err((
                value.span(),
                format!("notify takes only message, not {name}"),
            ));
        }
        let text = value.get_ref();
        if text.is_empty() || text.len() > MAX_MESSAGE_BYTES || text.chars().any(|c| c.is_control())
        {
            return Err((
                value.span(),
                format!(
                    "the message must be 1–{MAX_MESSAGE_BYTES} bytes without control characters"
                ),
            ));
        }
    }
    if !step.params.contains_key("message") {
        return Err((step.action.span(), "notify needs parameter message".into()));
    }
    Ok(())
}

/// A step made ready for one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolved {
    /// An action for an agent, its parameters checked.
    Action(ActionKind, BTreeMap<String, String>),
    /// A message to the webhook receivers.
    Notify(String),
}

/// A step for `labels`: `$label` replaced by the label's value, each value checked against its
/// grammar. An error names the parameter and why (nothing is sent).
pub fn resolve_step(step: &Step, labels: &BTreeMap<String, String>) -> Result<Resolved, String> {
    if step.action.get_ref() == NOTIFY {
        let message = step
            .params
            .get("message")
            .map(|m| m.get_ref().clone())
            .ok_or("notify needs a message")?;
        return Ok(Resolved::Notify(message));
    }
    resolve(step, labels).map(|(kind, params)| Resolved::Action(kind, params))
}

/// An action step's parameters for `labels`: `$label` replaced by the label's value, each value
/// checked against its grammar. An error names the parameter and why (the action is not sent).
pub fn resolve(
    step: &Step,
    labels: &BTreeMap<String, String>,
) -> Result<(ActionKind, BTreeMap<String, String>), String> {
    let kind = ActionKind::parse(step.action.get_ref())
        .ok_or_else(|| format!("unknown action {:?}", step.action.get_ref()))?;
    let mut out = BTreeMap::new();
    for (name, value) in &step.params {
        let raw = match value.get_ref().strip_prefix('$') {
            Some(label) => labels
                .get(label)
                .ok_or_else(|| format!("the alert has no label {label}"))?
                .as_str(),
            None => value.get_ref().as_str(),
        };
        let checked = kind.check_param(name, raw).map_err(|e| e.to_string())?;
        out.insert(name.clone(), checked);
    }
    Ok((kind, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views() -> Vec<(String, Vec<String>)> {
        vec![
            ("messages_deferred".into(), vec![]),
            ("messages_deferred".into(), vec!["reason_class".into()]),
            ("deferral_ratio".into(), vec!["domain".into()]),
            ("sasl_user_messages".into(), vec!["user".into()]),
        ]
    }

    fn parse(text: &str) -> PlaybookFile {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn playbooks_are_checked_against_alerts_actions_and_grammars() {
        let ok = parse(
            r#"
            [[playbooks]]
            name = "slow-down"
            mode = "auto"
            trigger = { alert = "deferral_ratio" }
            [[playbooks.steps]]
            action = "throttle_destination"
            params = { domain = "$domain", rate_delay_secs = "10" }
            [[playbooks]]
            name = "hold-user"
            mode = "approve"
            trigger = { alert = "sasl_user_messages" }
            [[playbooks.steps]]
            action = "hold_sender"
            params = { sender = "$sasl_user" }
            "#,
        );
        check(&ok, &views()).expect("valid");
        let bad = |text: &str| check(&parse(text), &views()).unwrap_err().message;
        let e = bad(r#"
            [[playbooks]]
            name = "x"
            trigger = { alert = "deferal_ratio" }
            [[playbooks.steps]]
            action = "flush"
            "#);
        assert!(e.contains("does not exist"), "{e}");
        let e = bad(r#"
            [[playbooks]]
            name = "x"
            trigger = { alert = "deferral_ratio" }
            [[playbooks.steps]]
            action = "rm_rf"
            "#);
        assert!(e.contains("unknown action"), "{e}");
        let e = bad(r#"
            [[playbooks]]
            name = "x"
            trigger = { alert = "messages_deferred" }
            [[playbooks.steps]]
            action = "throttle_destination"
            params = { domain = "$domain" }
            "#);
        assert!(e.contains("does not carry"), "{e}");
        let e = bad(r#"
            [[playbooks]]
            name = "x"
            trigger = { alert = "deferral_ratio" }
            [[playbooks.steps]]
            action = "throttle_destination"
            params = { domain = "$domain", rate_delay_secs = "9999999" }
            "#);
        assert!(e.contains("rate_delay_secs"), "{e}");
        let e = bad(r#"
            [[playbooks]]
            name = "x"
            trigger = { alert = "deferral_ratio" }
            [[playbooks.steps]]
            action = "hold_domain"
            "#);
        assert!(e.contains("needs parameter domain"), "{e}");
        let e = bad(r#"
            [[playbooks]]
            name = "x"
            trigger = { alert = "deferral_ratio" }
            [[playbooks.steps]]
            action = "notify"
            params = { message = "hello", url = "http://x/" }
            "#);
        assert!(e.contains("notify takes only message"), "{e}");
        let ok = parse(
            r#"
            [[playbooks]]
            name = "tell"
            trigger = { alert = "deferral_ratio" }
            [[playbooks.steps]]
            action = "notify"
            params = { message = "Mail to a destination is deferred" }
            "#,
        );
        check(&ok, &views()).expect("valid");
    }

    #[test]
    fn labels_are_checked_when_a_step_is_resolved() {
        let file = parse(
            r#"
            [[playbooks]]
            name = "slow-down"
            trigger = { alert = "deferral_ratio" }
            [[playbooks.steps]]
            action = "throttle_destination"
            params = { domain = "$domain" }
            "#,
        );
        let step = &file.playbooks[0].steps[0];
        let labels = |d: &str| BTreeMap::from([("domain".to_owned(), d.to_owned())]);
        let (kind, params) = resolve(step, &labels("Gmail.com")).unwrap();
        assert_eq!(kind, ActionKind::ThrottleDestination);
        assert_eq!(params["domain"], "gmail.com");
        for hostile in [
            "gmail.com; reboot",
            "$(reboot)",
            "`id`",
            "gmail.com\nx",
            "../x",
            "gmail.com\0",
            "gm ail.com",
        ] {
            assert!(resolve(step, &labels(hostile)).is_err(), "{hostile:?}");
        }
    }
}
