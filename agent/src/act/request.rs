//! An `Action` from the collector as a typed request: its kind one of [`ActionKind`], every
//! parameter it needs checked by its grammar ([`super::params`]), nothing it does not know.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ActionsConfig;
use super::params::{self, Refusal};

/// The actions the agent can run on Postfix.
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

/// Which messages a queue action selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A recipient in this domain.
    RecipientDomain(String),
    /// This envelope sender.
    Sender(String),
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `postqueue -f`, `-s site`, `-i queue_id`.
    Flush {
        site: Option<String>,
        queue_id: Option<String>,
    },
    /// `postsuper -h -` with the selected queue ids on stdin.
    Hold(Selector),
    /// `postsuper -H -`.
    Release(Selector),
    /// `postsuper -r -`.
    Requeue(Selector),
    Throttle {
        domain: String,
        rate_delay_secs: u32,
    },
    Unthrottle {
        domain: String,
    },
    SwitchPool {
        sender_domain: String,
        pool: String,
    },
    RestorePool {
        sender_domain: String,
    },
    Block {
        net: (IpAddr, u8),
    },
    Unblock {
        net: (IpAddr, u8),
    },
}

/// A request for one Postfix instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub kind: ActionKind,
    /// The instance's name in the agent's configuration.
    pub instance: String,
    pub request: Request,
}

/// Checks `kind` and `params` against the grammar and the agent's configuration. Unknown kinds,
/// unknown or missing parameters and values outside their grammar are refused.
pub fn check(
    kind: &str,
    params: &BTreeMap<String, String>,
    cfg: &ActionsConfig,
) -> Result<Checked, Refusal> {
    let Some(kind) = ActionKind::parse(kind) else {
        return Err(Refusal {
            name: "kind".into(),
            why: format!("{} is not an action this agent knows", params::shown(kind)),
        });
    };
    let (required, optional) = kind.params();
    for name in params.keys() {
        if name != "instance"
            && !required.contains(&name.as_str())
            && !optional.contains(&name.as_str())
        {
            return Err(Refusal {
                name: params::shown(name),
                why: format!("not a parameter of {}", kind.as_str()),
            });
        }
    }
    let need = |name: &str| {
        params.get(name).map(String::as_str).ok_or_else(|| Refusal {
            name: name.into(),
            why: format!("{} needs it", kind.as_str()),
        })
    };
    let instance = match params.get("instance") {
        Some(v) => params::one_of("instance", v, cfg.instances.keys().map(String::as_str))?,
        None => cfg
            .default_instance()
            .ok_or_else(|| Refusal {
                name: "instance".into(),
                why: "this agent has several instances; name one".into(),
            })?
            .to_owned(),
    };
    let domain = |name: &str| params::domain(name, need(name)?);
    use ActionKind::*;
    let request = match kind {
        Flush => {
            let site = params
                .get("site")
                .map(|v| params::domain("site", v))
                .transpose()?;
            let queue_id = params
                .get("queue_id")
                .map(|v| params::queue_id("queue_id", v))
                .transpose()?;
            if site.is_some() && queue_id.is_some() {
                return Err(Refusal {
                    name: "site".into(),
                    why: "flush takes a site or a queue id, not both".into(),
                });
            }
            Request::Flush { site, queue_id }
        }
        HoldDomain => Request::Hold(Selector::RecipientDomain(domain("domain")?)),
        ReleaseDomain => Request::Release(Selector::RecipientDomain(domain("domain")?)),
        RequeueDomain => Request::Requeue(Selector::RecipientDomain(domain("domain")?)),
        HoldSender => Request::Hold(Selector::Sender(params::address(
            "sender",
            need("sender")?,
        )?)),
        ReleaseSender => Request::Release(Selector::Sender(params::address(
            "sender",
            need("sender")?,
        )?)),
        ThrottleDestination => Request::Throttle {
            domain: domain("domain")?,
            rate_delay_secs: match params.get("rate_delay_secs") {
                Some(v) => params::seconds("rate_delay_secs", v, 1..=3600)?,
                None => cfg.default_rate_delay_secs,
            },
        },
        UnthrottleDestination => Request::Unthrottle {
            domain: domain("domain")?,
        },
        SwitchIpPool => Request::SwitchPool {
            sender_domain: domain("sender_domain")?,
            pool: params::one_of("pool", need("pool")?, cfg.pools.keys().map(String::as_str))?,
        },
        RestoreIpPool => Request::RestorePool {
            sender_domain: domain("sender_domain")?,
        },
        BlockClientNet | UnblockClientNet => {
            let net = params::cidr(
                "client_net",
                need("client_net")?,
                cfg.min_block_prefix_v4,
                cfg.min_block_prefix_v6,
            )?;
            if kind == BlockClientNet {
                Request::Block { net }
            } else {
                Request::Unblock { net }
            }
        }
    };
    Ok(Checked {
        kind,
        instance,
        request,
    })
}
