//! `dnsbl_listed`: a sending IP an agent found on a DNS blocklist (`dnsbl_listed{ip,list}` = 1).

use super::{Facts, alert};
use crate::analyze::Alert;

pub const NAME: &str = "dnsbl_listed";

/// One alert per (host, ip, list) listed now.
pub fn listings(facts: &Facts) -> Vec<Alert> {
    facts
        .gauges
        .iter()
        .filter(|(def, value)| &*def.metric == NAME && *value >= 1.0)
        .filter_map(|(def, _)| {
            let host = def.label("host")?.to_owned();
            let ip = def.label("ip")?.to_owned();
            let list = def.label("list")?.to_owned();
            let removal = def
                .label("removal_url")
                .map_or_else(|| format!("the removal page of {list}"), |u| u.to_owned());
            Some(alert(
                NAME,
                vec![
                    ("host", host.clone()),
                    ("ip", ip.clone()),
                    ("list", list.clone()),
                ],
                facts,
                format!("{ip} is listed on {list}"),
                format!(
                    "{host}'s sending IP {ip} is on the {list} blocklist: destinations that use \
                     it refuse or junk its mail. Find why first — a compromised account \
                     (`mailpulse alerts` for sasl_user_messages), a form or list sending to \
                     bad addresses, an open relay — and stop it; then request removal at \
                     {removal}. Meanwhile move this IP's traffic to another pool (playbook \
                     switch-ip-pool) and confirm with `mailpulse check <your domain>`."
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::def;
    use super::*;

    #[test]
    fn a_listing_names_the_list_and_its_removal_page() {
        let facts = Facts {
            gauges: vec![
                (
                    def(
                        NAME,
                        &[
                            ("host", "mx1"),
                            ("ip", "192.0.2.7"),
                            ("list", "bl.spamcop.net"),
                            ("removal_url", "https://www.spamcop.net/bl.shtml"),
                        ],
                    ),
                    1.0,
                ),
                (
                    def(
                        NAME,
                        &[
                            ("host", "mx1"),
                            ("ip", "192.0.2.7"),
                            ("list", "zen.spamhaus.org"),
                        ],
                    ),
                    0.0,
                ),
                (
                    def(
                        NAME,
                        &[
                            ("host", "mx2"),
                            ("ip", "192.0.2.8"),
                            ("list", "custom.example"),
                        ],
                    ),
                    1.0,
                ),
            ],
            ..Facts::default()
        };
        let alerts = listings(&facts);
        assert_eq!(alerts.len(), 2);
        let spamcop = &alerts[0];
        assert_eq!(spamcop.label("list"), Some("bl.spamcop.net"));
        assert_eq!(spamcop.label("removal_url"), None, "not a label");
        let advice = spamcop.advice.as_ref().unwrap();
        assert!(
            advice
                .recommendation
                .contains("https://www.spamcop.net/bl.shtml")
                && advice.recommendation.contains("switch-ip-pool"),
            "{}",
            advice.recommendation
        );
        let custom = alerts[1].advice.as_ref().unwrap();
        assert!(
            custom
                .recommendation
                .contains("the removal page of custom.example")
        );
    }
}
