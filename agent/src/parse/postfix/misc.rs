//! The smaller daemons: bounce/defer/trace notifications, pickup, anvil, postsuper, master,
//! scache, dnsblog, verify/postscreen cache cleanup, tlsproxy and postfix-script.

use std::net::IpAddr;

use super::{FindLit, angle_value, is_queue_id, parse_uint, split_queue_id, whole_endpoint};
use crate::parse::record::{
    Anvil, CacheCleanup, DnsblListing, Master, Notification, Pickup, Postsuper, Record, Scache,
    ServiceNote,
};

/// `QID: sender non-delivery notification: QID2` (also `sender delay notification`,
/// `sender delivery status notification`, `postmaster non-delivery notification`).
pub(super) fn notification(m: &str) -> Option<Record<'_>> {
    let (queue_id, rest) = split_queue_id(m)?;
    let (kind, notice_queue_id) = rest.rsplit_lit(": ")?;
    if !kind.ends_with(" notification") || !is_queue_id(notice_queue_id) {
        return None;
    }
    Some(Record::Notification(Notification {
        queue_id,
        kind,
        notice_queue_id,
    }))
}

/// `QID: uid=0 from=<root>` (later versions may append `orig_id=…`).
pub(super) fn pickup(m: &str) -> Option<Record<'_>> {
    let (queue_id, rest) = split_queue_id(m)?;
    let rest = rest.strip_prefix("uid=")?;
    let (uid, rest) = rest.split_byte(b' ').unwrap_or((rest, ""));
    let from = match rest.strip_prefix("from=") {
        Some(f) => Some(angle_value(f)?.0),
        None if rest.is_empty() => None,
        None => return None,
    };
    Some(Record::Pickup(Pickup {
        queue_id,
        uid: Some(parse_uint(uid)?),
        from,
    }))
}

/// `statistics: max connection rate 1/60s for (smtpd:1.2.3.4) at Oct 26 18:13:50` and the
/// other `max …` lines.
pub(super) fn anvil(m: &str) -> Option<Record<'_>> {
    let r = m.strip_prefix("statistics: max ")?;
    if let Some(r) = r.strip_prefix("cache size ") {
        let (value, at) = r.split_lit(" at ")?;
        return Some(Record::Anvil(Anvil::CacheSize {
            value: value.parse().ok()?,
            at,
        }));
    }
    let (measure, r) = r.split_lit(" for (")?;
    let (ident, at) = r.split_lit(") at ")?;
    let (metric, value) = measure.rsplit_once(' ')?;
    let (service, client) = match anvil_ident(ident) {
        Some((s, c)) => (Some(s), Some(c)),
        None => (None, None),
    };
    let record = match value.split_once('/') {
        Some((value, period)) => Anvil::MaxRate {
            metric,
            value: value.parse().ok()?,
            per_secs: Some(period_secs(period)?),
            service,
            client,
            at,
        },
        None => Anvil::MaxCount {
            metric,
            value: value.parse().ok()?,
            service,
            client,
            at,
        },
    };
    Some(Record::Anvil(record))
}

/// `smtpd:1.2.3.4`, `smtpd:2604:8d00::3`, `127.0.0.1:2525:127.0.0.1`, `smtp:unknown`: the
/// service itself may contain colons, so split at the first colon whose right side is an address.
fn anvil_ident(ident: &str) -> Option<(&str, &str)> {
    ident
        .match_indices(':')
        .filter_map(|(i, _)| Some((ident.get(..i)?, ident.get(i + 1..)?)))
        .find(|(_, client)| *client == "unknown" || client.parse::<IpAddr>().is_ok())
}

/// Anvil rate periods: `60s`, `5m`, `2h`, `7d`.
fn period_secs(p: &str) -> Option<u32> {
    let unit = p.chars().last()?;
    let n: u32 = p.strip_suffix(unit)?.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `QID: removed|requeued|placed on hold|released from hold`, `Deleted: 115 messages`, ...
pub(super) fn postsuper(m: &str) -> Option<Record<'_>> {
    if let Some((queue_id, action)) = split_queue_id(m) {
        let p = match action {
            "removed" => Postsuper::Removed { queue_id },
            "requeued" => Postsuper::Requeued { queue_id },
            "placed on hold" => Postsuper::Held { queue_id },
            "released from hold" => Postsuper::Released { queue_id },
            _ => return None,
        };
        return Some(Record::Postsuper(p));
    }
    let (action, count) = m.split_lit(": ")?;
    if !matches!(
        action,
        "Deleted" | "Requeued" | "Placed on hold" | "Released from hold"
    ) {
        return None;
    }
    let count = count
        .strip_suffix(" messages")
        .or_else(|| count.strip_suffix(" message"))?;
    Some(Record::Postsuper(Postsuper::Summary {
        action,
        count: count.parse().ok()?,
    }))
}

/// `daemon started -- version 3.8.6, configuration /etc/postfix`, `reload -- …`,
/// `terminating on signal 15`.
pub(super) fn master(m: &str) -> Option<Record<'_>> {
    if let Some(signal) = m.strip_prefix("terminating on signal ") {
        return Some(Record::Master(Master::Terminating {
            signal: signal.parse().ok()?,
        }));
    }
    let (event, rest) = m.split_lit(" -- version ")?;
    let (version, config_dir) = rest.split_lit(", configuration ")?;
    let record = match event {
        "daemon started" => Master::Started {
            version,
            config_dir,
        },
        "reload" => Master::Reloaded {
            version,
            config_dir,
        },
        _ => return None,
    };
    Some(Record::Master(record))
}

/// scache `statistics:` lines.
pub(super) fn scache(m: &str) -> Option<Record<'_>> {
    let r = m.strip_prefix("statistics: ")?;
    if let Some(at) = r.strip_prefix("start interval ") {
        return Some(Record::Scache(Scache::StartInterval { at }));
    }
    if let Some(r) = r.strip_prefix("max simultaneous ") {
        let mut it = r.split(' ');
        let domains = key_value(it.next()?, "domains")?;
        let addresses = key_value(it.next()?, "addresses")?;
        let connections = key_value(it.next()?, "connection")?;
        return it
            .next()
            .is_none()
            .then_some(Record::Scache(Scache::MaxSimultaneous {
                domains,
                addresses,
                connections,
            }));
    }
    let (kind, r) = r.split_lit(" lookup ")?;
    let mut it = r.split(' ');
    let hits = key_value(it.next()?, "hits")?;
    let misses = key_value(it.next()?, "miss")?;
    let success = it.next()?.strip_prefix("success=")?.strip_suffix('%')?;
    Some(Record::Scache(Scache::Lookups {
        kind,
        hits,
        misses,
        success_pct: success.parse().ok()?,
    }))
}

/// `key=N` with the expected key.
fn key_value(item: &str, key: &str) -> Option<u64> {
    let (k, v) = item.split_once('=')?;
    if k == key { v.parse().ok() } else { None }
}

/// `addr 1.2.3.4 listed by domain zen.spamhaus.org as 127.0.0.2`
pub(super) fn dnsblog(m: &str) -> Option<Record<'_>> {
    let r = m.strip_prefix("addr ")?;
    let (addr, r) = r.split_lit(" listed by domain ")?;
    let (domain, reply) = r.split_lit(" as ")?;
    Some(Record::Dnsbl(DnsblListing {
        addr,
        domain,
        reply,
    }))
}

/// `cache btree:/var/lib/postfix/verify_cache full cleanup: retained=724 dropped=6 entries`
pub(super) fn cache_cleanup(m: &str) -> Option<Record<'_>> {
    let r = m.strip_prefix("cache ")?;
    let (table_scope, counts) = r.rsplit_lit(" cleanup: ")?;
    let (table, scope) = table_scope.rsplit_once(' ')?;
    let counts = counts.strip_suffix(" entries")?;
    let (retained, dropped) = counts.split_once(' ')?;
    Some(Record::CacheCleanup(CacheCleanup {
        table,
        scope,
        retained: key_value(retained, "retained")?,
        dropped: key_value(dropped, "dropped")?,
    }))
}

/// tlsproxy `CONNECT from [ip]:port` and `DISCONNECT [ip]:port`.
pub(super) fn tlsproxy(m: &str) -> Option<Record<'_>> {
    let (kind, peer) = if let Some(r) = m.strip_prefix("CONNECT from ") {
        ("tlsproxy_connect", r)
    } else {
        ("tlsproxy_disconnect", m.strip_prefix("DISCONNECT ")?)
    };
    Some(Record::Service(ServiceNote {
        kind,
        queue_id: None,
        peer: Some(whole_endpoint(peer)?),
        text: m,
    }))
}

/// `postfix-script`: `starting the Postfix mail system`, `stopping …`, `refreshing …`, ...
pub(super) fn postfix_script(m: &str) -> Option<Record<'_>> {
    let known = m.ends_with("the Postfix mail system")
        || m.starts_with("the Postfix mail system is ")
        || m.starts_with("waiting for the Postfix mail system");
    known.then_some(Record::Service(ServiceNote {
        kind: "postfix_script",
        queue_id: None,
        peer: None,
        text: m,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anvil_ident_split() {
        assert_eq!(
            anvil_ident("127.0.0.1:2525:127.0.0.1"),
            Some(("127.0.0.1:2525", "127.0.0.1"))
        );
        assert_eq!(
            anvil_ident("smtpd:2604:8d00:0:1::3"),
            Some(("smtpd", "2604:8d00:0:1::3"))
        );
        assert_eq!(anvil_ident("smtp:unknown"), Some(("smtp", "unknown")));
        assert_eq!(anvil_ident("garbage"), None);
    }

    #[test]
    fn anvil_rate_periods() {
        assert_eq!(
            anvil(
                "statistics: max connection rate 12/5m for (submission:2001:db8::9) at Oct 26 17:46:59"
            ),
            Some(Record::Anvil(Anvil::MaxRate {
                metric: "connection rate",
                value: 12,
                per_secs: Some(300),
                service: Some("submission"),
                client: Some("2001:db8::9"),
                at: "Oct 26 17:46:59"
            }))
        );
        assert_eq!(period_secs("7d"), Some(604_800));
        assert_eq!(period_secs("s"), None);
        assert_eq!(period_secs("99999999999d"), None);
        assert_eq!(period_secs("é"), None);
    }

    #[test]
    fn postsuper_lines() {
        assert_eq!(
            postsuper("Requeued: 1 message"),
            Some(Record::Postsuper(Postsuper::Summary {
                action: "Requeued",
                count: 1
            }))
        );
        assert_eq!(
            postsuper("4KJd2L6vmtz9sQ6: placed on hold"),
            Some(Record::Postsuper(Postsuper::Held {
                queue_id: "4KJd2L6vmtz9sQ6"
            }))
        );
        assert_eq!(postsuper("Deleted: lots messages"), None);
        assert_eq!(postsuper("Exploded: 3 messages"), None);
    }

    #[test]
    fn scache_and_cleanup() {
        assert_eq!(
            scache("statistics: domain lookup hits=3 miss=1 success=75%"),
            Some(Record::Scache(Scache::Lookups {
                kind: "domain",
                hits: 3,
                misses: 1,
                success_pct: 75
            }))
        );
        assert_eq!(
            cache_cleanup(
                "cache btree:/var/lib/postfix/verify_cache partial cleanup: retained=1 dropped=0 entries"
            ),
            Some(Record::CacheCleanup(CacheCleanup {
                table: "btree:/var/lib/postfix/verify_cache",
                scope: "partial",
                retained: 1,
                dropped: 0
            }))
        );
    }

    #[test]
    fn pickup_and_notification() {
        assert_eq!(
            pickup("D2FAE20586: uid=0 from=<fail2ban>"),
            Some(Record::Pickup(Pickup {
                queue_id: "D2FAE20586",
                uid: Some(0),
                from: Some("fail2ban")
            }))
        );
        assert_eq!(pickup("D2FAE20586: uid=x from=<a>"), None);
        assert_eq!(
            notification("17CCA8044: sender non-delivery notification: ADD2F8052"),
            Some(Record::Notification(Notification {
                queue_id: "17CCA8044",
                kind: "sender non-delivery notification",
                notice_queue_id: "ADD2F8052"
            }))
        );
        assert_eq!(
            notification("17CCA8044: sender non-delivery notification: "),
            None
        );
    }
}
