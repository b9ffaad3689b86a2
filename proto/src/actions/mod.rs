//! The action contract between collector and agent: the kinds of remediation action, the
//! parameters each takes, and the grammar every parameter value must match
//! ([`params`]). The collector checks a playbook's actions against it before it sends one;
//! the agent checks again before it runs one (it does not trust the collector blindly).

pub mod params;

/// The actions an agent can run on Postfix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Flush,
    HoldDomain,
    ReleaseDomain,
    HoldSender,
    ReleaseSender,
    RequeueDomain,
    ThrottleDestination,
    UnthrottleDestination,
    SwitchIpPool,
    RestoreIpPool,
    BlockClientNet,
    UnblockClientNet,
}

impl ActionKind {
    pub const ALL: [ActionKind; 12] = [
        ActionKind::Flush,
        ActionKind::HoldDomain,
        ActionKind::ReleaseDomain,
        ActionKind::HoldSender,
        ActionKind::ReleaseSender,
        ActionKind::RequeueDomain,
        ActionKind::ThrottleDestination,
        ActionKind::UnthrottleDestination,
        ActionKind::SwitchIpPool,
        ActionKind::RestoreIpPool,
        ActionKind::BlockClientNet,
        ActionKind::UnblockClientNet,
    ];

    /// The wire name (`hold_domain`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Flush => "flush",
            ActionKind::HoldDomain => "hold_domain",
            ActionKind::ReleaseDomain => "release_domain",
            ActionKind::HoldSender => "hold_sender",
            ActionKind::ReleaseSender => "release_sender",
            ActionKind::RequeueDomain => "requeue_domain",
            ActionKind::ThrottleDestination => "throttle_destination",
            ActionKind::UnthrottleDestination => "unthrottle_destination",
            ActionKind::SwitchIpPool => "switch_ip_pool",
            ActionKind::RestoreIpPool => "restore_ip_pool",
            ActionKind::BlockClientNet => "block_client_net",
            ActionKind::UnblockClientNet => "unblock_client_net",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<ActionKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The parameters it requires, and those it may take (`instance` is always optional).
    pub fn params(self) -> (&'static [&'static str], &'static [&'static str]) {
        use ActionKind::*;
        match self {
            Flush => (&[], &["site", "queue_id"]),
            HoldDomain | ReleaseDomain | RequeueDomain => (&["domain"], &[]),
            HoldSender | ReleaseSender => (&["sender"], &[]),
            ThrottleDestination => (&["domain"], &["rate_delay_secs"]),
            UnthrottleDestination => (&["domain"], &[]),
            SwitchIpPool => (&["sender_domain", "pool"], &[]),
            RestoreIpPool => (&["sender_domain"], &[]),
            BlockClientNet | UnblockClientNet => (&["client_net"], &[]),
        }
    }
}

impl ActionKind {
    /// The action that undoes this one, for those a playbook reverts after a while.
    pub fn reverse(self) -> Option<ActionKind> {
        use ActionKind::*;
        match self {
            HoldDomain => Some(ReleaseDomain),
            HoldSender => Some(ReleaseSender),
            ThrottleDestination => Some(UnthrottleDestination),
            SwitchIpPool => Some(RestoreIpPool),
            BlockClientNet => Some(UnblockClientNet),
            _ => None,
        }
    }

    /// Checks one parameter value against its grammar (names from the agent's own configuration
    /// — `instance`, `pool` — only for their shape; the agent checks them against its list).
    pub fn check_param(self, name: &str, value: &str) -> Result<String, params::Refusal> {
        let (required, optional) = self.params();
        if name != "instance" && !required.contains(&name) && !optional.contains(&name) {
            return Err(params::Refusal {
                name: params::shown(name),
                why: format!("not a parameter of {}", self.as_str()),
            });
        }
        match name {
            "domain" | "site" | "sender_domain" => params::domain(name, value),
            "sender" => params::address(name, value),
            "queue_id" => params::queue_id(name, value),
            "client_net" => params::cidr(name, value, 0, 0).map(|(a, p)| format!("{a}/{p}")),
            "rate_delay_secs" => params::seconds(name, value, 1..=3600).map(|s| s.to_string()),
            _ => params::name(name, value),
        }
    }
}
