//! An `Action` from the collector as a typed request: its kind one of [`ActionKind`], every
//! parameter it needs checked by its grammar ([`super::params`]), nothing it does not know.

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use mailpulse_proto::actions::ActionKind;
use mailpulse_proto::actions::params::{self, Refusal};

use super::ActionsConfig;

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
