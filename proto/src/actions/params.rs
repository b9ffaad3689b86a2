//! Strict grammars for action parameters. A value either matches and is used as it is (domain
//! names are lower-cased), or it is refused with the reason: nothing is ever escaped, quoted or
//! cut to fit. The grammars are narrower than the RFCs on purpose — an action on a destination,
//! a sender or a network never needs the exotic forms, and every character outside them is one
//! less way to smuggle something into a command line, a lookup table or a log.

use std::net::IpAddr;

/// Longest parameter value looked at (bytes); longer ones are refused unread.
pub const MAX_PARAM_BYTES: usize = 320;

/// Why a parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {name}: {why}")]
pub struct Refusal {
    pub name: String,
    pub why: String,
}

/// A value as error messages show it: its first 64 characters, escaped (`{:?}`).
pub fn shown(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn refuse(name: &str, why: impl Into<String>) -> Refusal {
    Refusal {
        name: name.to_owned(),
        why: why.into(),
    }
}

fn bounded<'a>(name: &str, value: &'a str) -> Result<&'a str, Refusal> {
    if value.len() > MAX_PARAM_BYTES {
        return Err(refuse(
            name,
            format!("{} bytes, more than {MAX_PARAM_BYTES}", value.len()),
        ));
    }
    if value.is_empty() {
        return Err(refuse(name, "empty"));
    }
    Ok(value)
}

/// A DNS domain name: 2 to 127 labels of `[a-z0-9-]` (1–63 bytes, no `-` at either end),
/// at most 253 bytes, no trailing dot, lower-cased; no IP literal, no wildcard.
pub fn domain(name: &str, value: &str) -> Result<String, Refusal> {
    let value = bounded(name, value)?;
    if value.len() > 253 {
        return Err(refuse(name, "a domain name has at most 253 bytes"));
    }
    let labels: Vec<&str> = value.split('.').collect();
    if labels.len() < 2 {
        return Err(refuse(
            name,
            format!("{value:?} is not a domain name with a dot"),
        ));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(refuse(
                name,
                format!("{value:?}: label {label:?} is not letters, digits and inner hyphens"),
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(refuse(
            name,
            format!("{value:?} looks like an address, not a domain"),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// An envelope address `local@domain`: the local part is 1–64 bytes of
/// `[A-Za-z0-9._+=-]` (no leading, trailing or doubled dot), the domain as [`domain`].
pub fn address(name: &str, value: &str) -> Result<String, Refusal> {
    let value = bounded(name, value)?;
    let Some((local, dom)) = value.rsplit_once('@') else {
        return Err(refuse(name, format!("{value:?} has no @")));
    };
    let ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'=' | b'-'))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !ok {
        return Err(refuse(
            name,
            format!("{value:?}: the local part must be 1–64 of [A-Za-z0-9._+=-]"),
        ));
    }
    Ok(format!("{local}@{}", domain(name, dom)?))
}

/// A Postfix queue id: 6–32 ASCII letters and digits (short hex ids and long ids alike).
pub fn queue_id(name: &str, value: &str) -> Result<String, Refusal> {
    let value = bounded(name, value)?;
    if (6..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(value.to_owned())
    } else {
        Err(refuse(name, format!("{value:?} is not a queue id")))
    }
}

/// A network `address/prefix` (IPv4 or IPv6, the address with no host bits set) whose prefix
/// is at least `min_v4` / `min_v6` long: a block never covers more than that.
pub fn cidr(name: &str, value: &str, min_v4: u8, min_v6: u8) -> Result<(IpAddr, u8), Refusal> {
    let value = bounded(name, value)?;
    let (addr, prefix) = value
        .split_once('/')
        .ok_or_else(|| refuse(name, format!("{value:?} is not address/prefix")))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| refuse(name, format!("{addr:?} is not an IP address")))?;
    if !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.is_empty() || prefix.len() > 3 {
        return Err(refuse(name, format!("prefix {prefix:?} is not a number")));
    }
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| refuse(name, format!("prefix {prefix:?} is not a number")))?;
    let (bits, min) = match addr {
        IpAddr::V4(_) => (32, min_v4),
        IpAddr::V6(_) => (128, min_v6),
    };
    if prefix > bits || prefix < min {
        return Err(refuse(
            name,
            format!("prefix /{prefix} is outside /{min}../{bits} for this family"),
        ));
    }
    let host_bits_clear = match addr {
        IpAddr::V4(v4) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(v4) & !mask == 0
        }
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(v6) & !mask == 0
        }
    };
    if !host_bits_clear {
        return Err(refuse(name, format!("{value:?} has host bits set")));
    }
    Ok((addr, prefix))
}

/// A whole number of seconds in `range`.
pub fn seconds(
    name: &str,
    value: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Refusal> {
    let value = bounded(name, value)?;
    let n: u32 = (value.len() <= 6 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse().ok())
        .flatten()
        .ok_or_else(|| refuse(name, format!("{value:?} is not a whole number of seconds")))?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(refuse(
            name,
            format!("{n} s is outside {}..={} s", range.start(), range.end()),
        ))
    }
}

/// A name from the agent's own configuration (`pool`, `instance`): one of `known`, exactly.
pub fn one_of<'a>(
    name: &str,
    value: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Result<String, Refusal> {
    let value = bounded(name, value)?;
    let known: Vec<&str> = known.into_iter().collect();
    if known.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(refuse(
            name,
            format!(
                "{value:?} is not configured here (known: {})",
                known.join(", ")
            ),
        ))
    }
}

/// A name from a configuration (`pool`, `instance`): 1–32 of `[a-z0-9_-]`.
pub fn name(name: &str, value: &str) -> Result<String, Refusal> {
    let value = bounded(name, value)?;
    if value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Ok(value.to_owned())
    } else {
        Err(refuse(
            name,
            format!("{} is not 1–32 of [a-z0-9_-]", shown(value)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every injection attempt the tests and the note list.
    pub const HOSTILE: &[&str] = &[
        "example.com; rm -rf /",
        "$(reboot).example.com",
        "`id`.example.com",
        "example.com\nREJECT",
        "example.com\r\n",
        "../../etc/passwd",
        "example.com\0",
        "exa mple.com",
        "example.com ",
        "-f.example.com",
        "example.com|cat",
        "example.com&",
        "example.com>x",
        "*.example.com",
        "%2e%2e%2f",
        "example.com.",
        "",
    ];

    #[test]
    fn hostile_values_are_refused_everywhere() {
        for v in HOSTILE {
            assert!(domain("domain", v).is_err(), "domain {v:?}");
            assert!(
                address("sender", &format!("a@{v}")).is_err(),
                "address a@{v:?}"
            );
            assert!(queue_id("queue_id", v).is_err(), "queue id {v:?}");
            assert!(cidr("cidr", v, 16, 48).is_err(), "cidr {v:?}");
            assert!(seconds("s", v, 1..=3600).is_err(), "seconds {v:?}");
            assert!(one_of("pool", v, ["blue", "green"]).is_err(), "pool {v:?}");
            assert!(name("pool", v).is_err(), "name {v:?}");
        }
        let long = format!("{}.com", "a".repeat(400));
        assert!(domain("domain", &long).unwrap_err().why.contains("bytes"));
        assert!(address("sender", "a;b@example.com").is_err());
        assert!(address("sender", "$(x)@example.com").is_err());
        assert!(address("sender", "a..b@example.com").is_err());
    }

    #[test]
    fn ordinary_values_pass_and_domains_are_lower_cased() {
        assert_eq!(domain("d", "Gmail.COM").unwrap(), "gmail.com");
        assert_eq!(
            domain("d", "xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert!(domain("d", "192.0.2.1").is_err(), "an address is no domain");
        assert!(domain("d", "localhost").is_err(), "one label");
        assert_eq!(
            address("s", "news+list=x@Example.org").unwrap(),
            "news+list=x@example.org"
        );
        assert_eq!(queue_id("q", "4F9D21C3A").unwrap(), "4F9D21C3A");
        assert_eq!(queue_id("q", "4RnTzK2Zhnz1xN3").unwrap(), "4RnTzK2Zhnz1xN3");
        assert_eq!(
            cidr("c", "192.0.2.0/24", 16, 48).unwrap(),
            ("192.0.2.0".parse().unwrap(), 24)
        );
        assert!(
            cidr("c", "192.0.2.1/24", 16, 48)
                .unwrap_err()
                .why
                .contains("host bits")
        );
        assert!(cidr("c", "0.0.0.0/0", 16, 48).is_err(), "too wide");
        assert!(cidr("c", "2001:db8::/48", 16, 48).is_ok());
        assert_eq!(seconds("s", "30", 1..=3600).unwrap(), 30);
        assert!(seconds("s", "0", 1..=3600).is_err());
        assert!(seconds("s", "99999999999", 1..=3600).is_err());
        assert_eq!(one_of("pool", "blue", ["blue", "green"]).unwrap(), "blue");
    }

    proptest! {
        /// Whatever the input, a grammar answers (no panic), and what it accepts is made only of
        /// its own characters.
        #[test]
        fn grammars_accept_only_their_alphabet(value in ".{0,400}") {
            if let Ok(d) = domain("d", &value) {
                prop_assert!(d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
            }
            if let Ok(a) = address("a", &value) {
                prop_assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+=-@".contains(&b)));
            }
            if let Ok(q) = queue_id("q", &value) {
                prop_assert!(q.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
            let _ = cidr("c", &value, 16, 48);
            let _ = seconds("s", &value, 1..=3600);
        }
    }
}
