//! The runbooks that ship with the collector (`docs/runbooks/`), served at
//! `/runbooks/<alertname>.md`: every alert's `runbook_url` points at one by default.

/// (alert name or `README`, Markdown text).
pub const RUNBOOKS: &[(&str, &str)] = &[
    ("README", include_str!("../../../docs/runbooks/README.md")),
    (
        "agent_down",
        include_str!("../../../docs/runbooks/agent_down.md"),
    ),
    (
        "bounce_ratio",
        include_str!("../../../docs/runbooks/bounce_ratio.md"),
    ),
    (
        "deferral_ratio",
        include_str!("../../../docs/runbooks/deferral_ratio.md"),
    ),
    (
        "deferred_queue_limit",
        include_str!("../../../docs/runbooks/deferred_queue_limit.md"),
    ),
    (
        "filesystem_avail_bytes",
        include_str!("../../../docs/runbooks/filesystem_avail_bytes.md"),
    ),
    (
        "messages_bounced",
        include_str!("../../../docs/runbooks/messages_bounced.md"),
    ),
    (
        "messages_deferred",
        include_str!("../../../docs/runbooks/messages_deferred.md"),
    ),
    (
        "messages_delivered",
        include_str!("../../../docs/runbooks/messages_delivered.md"),
    ),
    (
        "messages_received",
        include_str!("../../../docs/runbooks/messages_received.md"),
    ),
    (
        "messages_rejected",
        include_str!("../../../docs/runbooks/messages_rejected.md"),
    ),
    (
        "postscreen_connections",
        include_str!("../../../docs/runbooks/postscreen_connections.md"),
    ),
    (
        "queue_messages",
        include_str!("../../../docs/runbooks/queue_messages.md"),
    ),
    (
        "sasl_auth_failures",
        include_str!("../../../docs/runbooks/sasl_auth_failures.md"),
    ),
    (
        "sasl_user_failure_ratio",
        include_str!("../../../docs/runbooks/sasl_user_failure_ratio.md"),
    ),
    (
        "sasl_user_messages",
        include_str!("../../../docs/runbooks/sasl_user_messages.md"),
    ),
    (
        "smtpd_connections",
        include_str!("../../../docs/runbooks/smtpd_connections.md"),
    ),
    (
        "spool_full",
        include_str!("../../../docs/runbooks/spool_full.md"),
    ),
    (
        "dnsbl_listed",
        include_str!("../../../docs/runbooks/dnsbl_listed.md"),
    ),
    (
        "mx_host_failing",
        include_str!("../../../docs/runbooks/mx_host_failing.md"),
    ),
    (
        "mx_ttl_long",
        include_str!("../../../docs/runbooks/mx_ttl_long.md"),
    ),
    (
        "mx_unbalanced",
        include_str!("../../../docs/runbooks/mx_unbalanced.md"),
    ),
    (
        "dns_propagation",
        include_str!("../../../docs/runbooks/dns_propagation.md"),
    ),
    (
        "relay_failing",
        include_str!("../../../docs/runbooks/relay_failing.md"),
    ),
    (
        "complaints",
        include_str!("../../../docs/runbooks/complaints.md"),
    ),
    (
        "complaint_ratio",
        include_str!("../../../docs/runbooks/complaint_ratio.md"),
    ),
];

/// The runbook of `name` (`bounce_ratio`, `README`, …).
pub fn runbook(name: &str) -> Option<&'static str> {
    RUNBOOKS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_view_has_a_runbook() {
        for view in crate::analyze::default_views() {
            let text =
                runbook(&view.name).unwrap_or_else(|| panic!("no runbook for {}", view.name));
            assert!(
                text.starts_with(&format!("# {}", view.name)),
                "{}",
                view.name
            );
        }
        assert!(runbook("README").is_some());
        assert!(runbook("agent_down").is_some());
        for name in crate::analyze::advice::NAMES {
            let text = runbook(name).unwrap_or_else(|| panic!("no runbook for {name}"));
            assert!(text.starts_with(&format!("# {name}\n")), "{name}");
        }
    }

    #[test]
    fn the_index_states_the_builtin_severities() {
        let index = runbook("README").expect("index");
        let mut rows = 0;
        for line in index.lines().filter(|l| l.starts_with("| [")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1]
                .trim_start_matches('[')
                .split(']')
                .next()
                .expect("a link");
            let severity = cells[3];
            assert_eq!(
                severity,
                super::super::builtin_rule(name).severity.as_str(),
                "{name}"
            );
            rows += 1;
        }
        assert_eq!(rows, RUNBOOKS.len() - 1, "one row per runbook");
        assert!(runbook("../secrets").is_none());
    }
}
