//! Runs Debian's `pflogsumm` (1.1.5) on a log and reads its "Grand Totals" block.
//!
//! How pflogsumm 1.1.5 counts (read from /usr/sbin/pflogsumm):
//! - `received`: smtpd/postscreen `QID: client=` lines plus pickup `sender=`/`uid=` lines — messages
//!   that entered Postfix from outside, *including* ones later held, *excluding* bounce notices
//!   (the bounce daemon creates those without a `client=` line);
//! - `delivered`: `to=… status=sent` lines, except those with `forwarded as`;
//! - `forwarded`: `status=sent` lines with `forwarded as`;
//! - `deferred`: distinct queue ids with a `status=deferred` line; `(N deferrals)`: all such lines;
//! - `bounced`: `to=… status=bounced` lines (the qmgr `status=expired` line has no `to=`, so
//!   expired messages are not counted here);
//! - `rejected` / `reject warnings` / `held` / `discarded`: every smtpd/postscreen `reject:`,
//!   `reject_warning:`, `hold:`, `discard:` line — with `NOQUEUE` *or* a real queue id — plus the
//!   cleanup header/body checks of those kinds.

use std::path::Path;
use std::process::Command;

/// The message totals pflogsumm prints under "Grand Totals".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrandTotals {
    pub received: u64,
    pub delivered: u64,
    pub forwarded: u64,
    /// Distinct messages deferred at least once.
    pub deferred: u64,
    /// `status=deferred` lines (the number in parentheses; 0 when pflogsumm omits it).
    pub deferrals: u64,
    pub bounced: u64,
    pub rejected: u64,
    pub reject_warnings: u64,
    pub held: u64,
    pub discarded: u64,
}

/// pflogsumm could not be run or its output not read.
#[derive(Debug, thiserror::Error)]
pub enum PflogsummError {
    #[error("could not run pflogsumm")]
    Spawn(#[source] std::io::Error),
    #[error("pflogsumm failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("pflogsumm output has no usable `{field}` total:\n{output}")]
    MissingTotal { field: &'static str, output: String },
}

/// Runs `pflogsumm LOG` and parses its totals.
pub fn run(log: &Path) -> Result<GrandTotals, PflogsummError> {
    let output = Command::new("pflogsumm")
        .arg(log)
        .output()
        .map_err(PflogsummError::Spawn)?;
    if !output.status.success() {
        return Err(PflogsummError::Failed {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    parse_grand_totals(&String::from_utf8_lossy(&output.stdout))
}

/// Reads the "Grand Totals" block of pflogsumm's report.
pub fn parse_grand_totals(report: &str) -> Result<GrandTotals, PflogsummError> {
    let block: Vec<&str> = report
        .lines()
        .skip_while(|l| l.trim() != "Grand Totals")
        .take_while(|l| !l.contains("bytes received"))
        .collect();
    let total = |field: &'static str| -> Result<u64, PflogsummError> {
        block
            .iter()
            .find_map(|line| {
                let (count, label) = line.trim_start().split_once("  ")?;
                let label = label.trim_start();
                let matches = label == field
                    || label
                        .strip_prefix(field)
                        .is_some_and(|rest| rest.trim_start().starts_with('('));
                matches.then(|| parse_count(count)).flatten()
            })
            .ok_or_else(|| PflogsummError::MissingTotal {
                field,
                output: report.to_string(),
            })
    };
    let deferrals = block
        .iter()
        .find_map(|line| {
            let (_, rest) = line.split_once('(')?;
            let count = rest.strip_suffix(" deferrals)")?;
            parse_count(count.trim())
        })
        .unwrap_or(0);
    Ok(GrandTotals {
        received: total("received")?,
        delivered: total("delivered")?,
        forwarded: total("forwarded")?,
        deferred: total("deferred")?,
        deferrals,
        bounced: total("bounced")?,
        rejected: total("rejected")?,
        reject_warnings: total("reject warnings")?,
        held: total("held")?,
        discarded: total("discarded")?,
    })
}

/// `42`, or pflogsumm's scaled `600k` / `2m` (only above 512 Ki; tests never get there).
fn parse_count(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' => (&text[..text.len() - 1], 1024),
        b'm' => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    digits.trim().parse::<u64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grand_totals_are_read_from_the_report() {
        let report = "\nGrand Totals\n------------\nmessages\n\n\
                      \x20    47   received\n     57   delivered\n      0   forwarded\n\
                      \x20    10   deferred  (23  deferrals)\n      5   bounced\n\
                      \x20     3   rejected (5%)\n      0   reject warnings\n      2   held\n\
                      \x20     0   discarded (0%)\n\n  12345   bytes received\n";
        let totals = parse_grand_totals(report).unwrap();
        assert_eq!(
            totals,
            GrandTotals {
                received: 47,
                delivered: 57,
                forwarded: 0,
                deferred: 10,
                deferrals: 23,
                bounced: 5,
                rejected: 3,
                reject_warnings: 0,
                held: 2,
                discarded: 0,
            }
        );
    }
}
