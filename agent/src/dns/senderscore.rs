//! Validity Sender Score: the reputation (0–100) of a sending IPv4 address, published in DNS as
//! `<reversed-ip>.score.senderscore.com` A `127.0.4.<score>`.
//!
//! Why: many receivers weigh it when deciding between inbox, spam folder and rejection; a falling
//! score is an early warning before blocklistings.
//!
//! Invariants: NXDOMAIN is "no score" (too little mail seen), not a bad score; answers other than
//! 127.0.4.0–100 are errors, never scores. IPv6 addresses are not scored.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::dnsbl::query_name;
use super::finding::{Finding, Lookup, lookup};
use super::{RData, RecordType, Resolve};

/// The `check` of Sender Score findings.
pub const CHECK: &str = "senderscore";

/// The DNS zone of the scores.
pub const ZONE: &str = "score.senderscore.com";

/// Scores under this are a warning.
pub const WARNING_BELOW: u8 = 70;

/// Scores under this are an error.
pub const ERROR_BELOW: u8 = 50;

/// What the zone says about an IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SenderScore {
    Score {
        score: u8,
    },
    /// NXDOMAIN: the IP sends too little mail to be scored.
    NoScore,
    /// IPv6: not scored.
    NotApplicable,
    Error {
        reason: String,
    },
}

/// Reads the A records of a score answer (non-empty).
pub fn interpret_answer(addresses: &[Ipv4Addr]) -> SenderScore {
    match addresses {
        [] => SenderScore::NoScore,
        [address] => match address.octets() {
            [127, 0, 4, score] if score <= 100 => SenderScore::Score { score },
            _ => SenderScore::Error {
                reason: format!("{address} is not a score (127.0.4.0 to 127.0.4.100)"),
            },
        },
        several => SenderScore::Error {
            reason: format!("{} addresses instead of one score", several.len()),
        },
    }
}

/// Looks up the Sender Score of `ip`.
pub async fn check_sender_score<R: Resolve>(
    ip: IpAddr,
    resolver: &R,
) -> (SenderScore, Vec<Finding>) {
    if ip.is_ipv6() {
        return (SenderScore::NotApplicable, Vec::new());
    }
    let name = query_name(ip, ZONE);
    let score = match lookup(resolver, &name, RecordType::A).await {
        Lookup::Empty { .. } => SenderScore::NoScore,
        Lookup::Failed(reason) => SenderScore::Error { reason },
        Lookup::Found(answer) => {
            let addresses: Vec<Ipv4Addr> = answer
                .data()
                .filter_map(|d| match d {
                    RData::A(a) => Some(*a),
                    _ => None,
                })
                .collect();
            interpret_answer(&addresses)
        }
    };
    let fix = "Check the IP's complaint rate, bounces to unknown users and spam-trap hits \
               (stale lists, compromised accounts); the score recovers over 30 days of clean \
               sending";
    let finding = match &score {
        SenderScore::Score { score } if *score < ERROR_BELOW => Finding::error(
            CHECK,
            "senderscore-poor",
            format!(
                "Sender Score of {ip} is {score}/100: receivers likely reject or junk its mail"
            ),
        )
        .with_fix(fix),
        SenderScore::Score { score } if *score < WARNING_BELOW => Finding::warning(
            CHECK,
            "senderscore-low",
            format!("Sender Score of {ip} is {score}/100"),
        )
        .with_fix(fix),
        SenderScore::Score { score } => Finding::ok(
            CHECK,
            "senderscore-good",
            format!("Sender Score of {ip} is {score}/100"),
        ),
        SenderScore::NoScore => Finding::info(
            CHECK,
            "senderscore-none",
            format!("{ip} has no Sender Score (too little mail seen)"),
        ),
        SenderScore::NotApplicable => return (score, Vec::new()),
        SenderScore::Error { reason } => Finding::warning(
            CHECK,
            "senderscore-query-failed",
            format!("{name} gave no usable answer: {reason}"),
        )
        .with_fix("Retry through the host's own recursive resolver"),
    };
    (score, vec![finding])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_127_0_4_n_up_to_100_is_a_score() {
        assert_eq!(
            interpret_answer(&[Ipv4Addr::new(127, 0, 4, 87)]),
            SenderScore::Score { score: 87 }
        );
        assert!(matches!(
            interpret_answer(&[Ipv4Addr::new(127, 0, 4, 101)]),
            SenderScore::Error { .. }
        ));
        assert!(matches!(
            interpret_answer(&[Ipv4Addr::new(127, 0, 0, 2)]),
            SenderScore::Error { .. }
        ));
        assert_eq!(interpret_answer(&[]), SenderScore::NoScore);
    }
}
