//! What to do about an alert: one recommendation per alert from its view, its keys and the
//! reply class the agent read in the logs, naming the command that confirms it and the
//! remediation playbook that applies (playbooks run dry-run unless enabled).

use crate::analyze::Alert;

/// The recommendation for `alert` (empty when there is nothing specific to say).
pub fn recommendation(alert: &Alert) -> String {
    if let Some(advice) = &alert.advice {
        return advice.recommendation.clone();
    }
    let host = alert.label("host").unwrap_or("the host");
    let domain = alert.label("domain");
    let relay = alert.label("relay");
    let destination = domain.or(relay);
    let at = destination.map_or(String::new(), |d| format!(" at {d}"));
    let reason = alert.label("reason_class");
    match (alert.name.as_str(), reason) {
        (_, Some("rate-limit")) => format!(
            "Destinations{at} are rate-limiting {host} (4xx rate-limit replies): slow down to them \
             — a lower destination concurrency or a rate delay on their transport (playbook \
             throttle-destination); find them with `qshape -s deferred`."
        ),
        (_, Some("greylisting")) => format!(
            "Greylisting{at}: Postfix's retries get through on their own (first retry after \
             minimal_backoff_time); act only if the same messages stay deferred past an hour."
        ),
        (_, Some("policy-block")) => format!(
            "Destinations{at} refuse {host}'s sending IP by policy: check the IP on the DNS \
             blocklists (`mailpulse check <your domain>`), request removal at the listing \
             list's removal page, and move this IP's traffic to another pool meanwhile \
             (playbook switch-ip-pool)."
        ),
        (_, Some("dns")) => format!(
            "DNS lookups fail for destinations{at}: check the resolver {host} uses \
             (`dig MX <domain>` against it, /etc/resolv.conf) before the retries expire."
        ),
        (_, Some("connect")) => format!(
            "Connections to destinations{at} fail (refused or timed out): check routing and \
             firewalls from {host}; the mail waits in the deferred queue (`postqueue -p`) and \
             can be flushed once they answer (playbook flush-queue)."
        ),
        (_, Some("mailbox")) | (_, Some("user-unknown")) => format!(
            "Recipients{at} do not exist or are full: a list-hygiene problem of the sender, \
             not of {host}; find the sender with `grep 'status=bounced' /var/log/mail.log`."
        ),
        ("bounce_ratio", _)
        | ("deferral_ratio", _)
        | ("messages_bounced", None)
        | ("messages_deferred", None)
            if destination.is_some() =>
        {
            match (domain, relay) {
                (Some(d), _) => format!(
                    "Mail to {d} is failing more than usual: read the replies \
                 (`grep '{d}' /var/log/mail.log | grep -E 'status=(deferred|bounced)' | tail`); \
                 rate-limited → throttle the destination (playbook throttle-destination), \
                 blocked → check your IPs on the blocklists (`mailpulse check`)."
                ),
                (None, Some(r)) => format!(
                    "Relay {r} fails more than usual: if the domain has other MX targets that \
                 accept, the mail will go there on retry; otherwise check {r}'s reachability \
                 from {host} and hold bulk mail to it (playbook hold-queue)."
                ),
                _ => String::new(),
            }
        }
        ("sasl_user_messages", _) | ("sasl_user_failure_ratio", _) => {
            let user = alert
                .label("user")
                .map_or("the account".to_owned(), |u| format!("account {u}"));
            format!(
                "Possibly compromised {user}: hold its queued mail (playbook hold-queue, `postsuper \
                 -h`), reset its password and check the clients it logs in from \
                 (`grep 'sasl_username={}' /var/log/mail.log`).",
                alert.label("user").unwrap_or("<user>")
            )
        }
        ("spool_full", _) | ("filesystem_avail_bytes", _) => format!(
            "The spool filesystem of {host} fills up ({}): free space or grow it now; hold bulk \
             mail (playbook hold-queue) so the queue stops growing.",
            alert.peak_detail
        ),
        ("deferred_queue_limit", _) | ("queue_messages", _) => format!(
            "The deferred queue of {host} grows: find the destinations holding it with `qshape -s \
             deferred`; fix or throttle them (playbook throttle-destination), then flush \
             (playbook flush-queue)."
        ),
        ("messages_delivered", _) => format!(
            "Deliveries from {host} collapsed: check `postfix status`, the queue manager and the \
             log for `fatal`/`panic`, and whether the network path out is up."
        ),
        ("messages_deferred", _) | ("messages_bounced", _) => format!(
            "More failures than usual on {host}: see which destinations with `qshape -s \
             deferred` and the replies in the log; the reason_class alerts name the cause."
        ),
        ("sasl_auth_failures", _) => format!(
            "A password-guessing wave against {host}: find the clients (`grep 'SASL .* \
             authentication failed' /var/log/mail.log`) and block them (postscreen, fail2ban)."
        ),
        ("smtpd_connections", _) | ("postscreen_connections", _) | ("messages_rejected", _) => {
            format!(
                "Inbound pressure on {host}: find the busiest clients (`grep 'connect from' \
                 /var/log/mail.log | awk '{{print $NF}}' | sort | uniq -c | sort -rn | head`) \
                 and rate-limit them (anvil limits, postscreen)."
            )
        }
        ("agent_down", _) => format!(
            "{}: check the agent on {host} (`systemctl status mailpulse-agent`, its log), its \
             route to the collector and its token; its log positions are kept, so nothing is \
             lost once it is back.",
            alert.peak_detail
        ),
        ("complaints", _) | ("complaint_ratio", _) => {
            let who = alert
                .label("sender")
                .map_or("a sender".to_owned(), |s| format!("sender {s}"));
            format!(
                "Recipients mark mail from {who} on {host} as spam (feedback-loop reports): pause \
                 its bulk mail (playbook pause-on-complaints holds it for approval, `postsuper -h`), \
                 check what it sent and to whom (consent, list age, unsubscribe), and release it \
                 (`postsuper -H`) or delete it once fixed."
            )
        }
        ("messages_received", _) => format!(
            "Inbound volume on {host} is unusual: a bulk send or a loop if above, a broken \
             submitter or MX routing if below; compare with the other MX hosts."
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::AlertFigures;

    fn alert(name: &str, labels: &[(&str, &str)]) -> Alert {
        Alert {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            detectors: vec!["counts".into()],
            first_window_unix_ms: 0,
            last_window_unix_ms: 0,
            resolved_unix_ms: None,
            windows: 1,
            peak_score: 1.0,
            peak_detail: "full in 5 h 40 min".into(),
            last: AlertFigures::default(),
            advice: None,
        }
    }

    #[test]
    fn recommendations_follow_the_reply_class_and_the_keys() {
        let rate = recommendation(&alert(
            "messages_deferred",
            &[("host", "mx1"), ("reason_class", "rate-limit")],
        ));
        assert!(rate.contains("throttle-destination"), "{rate}");
        let block = recommendation(&alert(
            "messages_bounced",
            &[("host", "mx1"), ("reason_class", "policy-block")],
        ));
        assert!(
            block.contains("switch-ip-pool") && block.contains("removal"),
            "{block}"
        );
        let gmail = recommendation(&alert(
            "bounce_ratio",
            &[("domain", "gmail.com"), ("host", "mx1")],
        ));
        assert!(gmail.starts_with("Mail to gmail.com"), "{gmail}");
        let user = recommendation(&alert(
            "sasl_user_messages",
            &[("host", "mx1"), ("user", "bob")],
        ));
        assert!(
            user.contains("account bob") && user.contains("hold-queue"),
            "{user}"
        );
        let spool = recommendation(&alert("spool_full", &[("host", "mx1")]));
        assert!(spool.contains("full in 5 h 40 min"), "{spool}");
        assert_eq!(
            recommendation(&alert("custom_view", &[("host", "mx1")])),
            ""
        );
    }
}
