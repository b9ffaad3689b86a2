//! The exact commands of an action: argv vectors of absolute paths and fixed flags; the only
//! values in them come from the agent's configuration (the instance's directory) or passed a
//! grammar ([`super::params`]). Queue ids go on standard input.

use std::io::{BufRead, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ActionsConfig;
use super::request::Selector;

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub argv: Vec<String>,
    /// Lines written to its standard input (queue ids), then closed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stdin: Vec<String>,
}

impl Command {
    /// `program -c DIR args…` for the Postfix command `program`.
    pub fn postfix(cfg: &ActionsConfig, program: &str, dir: &Path, args: &[&str]) -> Command {
        let mut argv = vec![
            cfg.command(program).display().to_string(),
            "-c".to_owned(),
            dir.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        Command {
            argv,
            stdin: Vec::new(),
        }
    }
}

/// `postqueue -c DIR -f`, `-s SITE` or `-i QUEUE_ID`.
pub fn flush(
    cfg: &ActionsConfig,
    dir: &Path,
    site: Option<&str>,
    queue_id: Option<&str>,
) -> Command {
    match (site, queue_id) {
        (Some(site), _) => Command::postfix(cfg, "postqueue", dir, &["-s", site]),
        (None, Some(id)) => Command::postfix(cfg, "postqueue", dir, &["-i", id]),
        (None, None) => Command::postfix(cfg, "postqueue", dir, &["-f"]),
    }
}

/// Which queues a queue action takes its messages from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Every queue but `hold` (to hold, to requeue).
    NotHeld,
    /// `hold` only (to release).
    Held,
}

/// `postsuper -c DIR FLAG -` with `ids` on stdin (`-h` hold, `-H` release, `-r` requeue).
pub fn postsuper(cfg: &ActionsConfig, dir: &Path, flag: &str, ids: Vec<String>) -> Command {
    let mut command = Command::postfix(cfg, "postsuper", dir, &[flag, "-"]);
    command.stdin = ids;
    command
}

#[derive(Debug, Deserialize)]
struct Entry {
    queue_name: String,
    queue_id: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    recipients: Vec<Recipient>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    address: String,
}

/// Longest `postqueue -j` line read (a message with thousands of recipients); longer lines are
/// skipped and counted.
pub const MAX_QUEUE_LINE_BYTES: usize = 4 * 1024 * 1024;

/// What [`select`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub ids: Vec<String>,
    /// Lines that were not a queue entry (or too long).
    pub skipped_lines: usize,
}

/// The queue ids in `postqueue -j` output that `selector` picks from `from`, at most `max`
/// (more is an error: an action never works on a part it did not choose).
pub fn select(
    output: impl BufRead,
    selector: &Selector,
    from: From,
    max: usize,
) -> Result<Selection, String> {
    let mut out = Selection::default();
    let mut reader = output;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = Read::take(&mut reader, MAX_QUEUE_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading postqueue -j: {e}"))?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_QUEUE_LINE_BYTES && !line.ends_with(b"\n") {
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = Read::take(&mut reader, 64 * 1024)
                    .read_until(b'\n', &mut rest)
                    .map_err(|e| format!("reading postqueue -j: {e}"))?;
                if m == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            out.skipped_lines += 1;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(&line) else {
            out.skipped_lines += 1;
            continue;
        };
        let held = entry.queue_name == "hold";
        if held != (from == From::Held) {
            continue;
        }
        let picked = match selector {
            Selector::Sender(sender) => entry.sender.eq_ignore_ascii_case(sender),
            Selector::RecipientDomain(domain) => entry.recipients.iter().any(|r| {
                r.address
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.trim_end_matches('.').eq_ignore_ascii_case(domain))
            }),
        };
        if !picked {
            continue;
        }
        // Only an id that passes the grammar is ever handed to postsuper.
        if super::params::queue_id("queue_id", &entry.queue_id).is_err() {
            out.skipped_lines += 1;
            continue;
        }
        if out.ids.len() == max {
            return Err(format!("more than {max} messages match; nothing was done"));
        }
        out.ids.push(entry.queue_id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: &str = r#"{"queue_name": "deferred", "queue_id": "4F9D21C3A", "arrival_time": 1, "message_size": 10, "forced_expire": false, "sender": "news@shop.example", "recipients": [{"address": "a@gmail.com", "delay_reason": "4.7.28 rate limited"}]}
{"queue_name": "active", "queue_id": "5A1B2C3D4", "arrival_time": 1, "message_size": 10, "forced_expire": false, "sender": "bob@corp.example", "recipients": [{"address": "x@yahoo.com"}, {"address": "y@GMAIL.com"}]}
{"queue_name": "hold", "queue_id": "6C7D8E9F0", "arrival_time": 1, "message_size": 10, "forced_expire": false, "sender": "news@shop.example", "recipients": [{"address": "b@gmail.com"}]}
not json
{"queue_name": "deferred", "queue_id": "$(reboot)", "sender": "news@shop.example", "recipients": [{"address": "c@gmail.com"}]}
{"queue_name": "deferred", "queue_id": "7E8F9A0B1", "sender": "other@shop.example", "recipients": [{"address": "c@hotmail.com"}]}
"#;

    fn cfg() -> ActionsConfig {
        ActionsConfig::default()
    }

    #[test]
    fn selection_by_recipient_domain_and_sender() {
        let gmail = Selector::RecipientDomain("gmail.com".into());
        let s = select(QUEUE.as_bytes(), &gmail, From::NotHeld, 10).unwrap();
        assert_eq!(s.ids, ["4F9D21C3A", "5A1B2C3D4"]);
        assert_eq!(s.skipped_lines, 2, "the garbage line and the hostile id");
        let held = select(QUEUE.as_bytes(), &gmail, From::Held, 10).unwrap();
        assert_eq!(held.ids, ["6C7D8E9F0"]);
        let news = Selector::Sender("news@shop.example".into());
        assert_eq!(
            select(QUEUE.as_bytes(), &news, From::NotHeld, 10)
                .unwrap()
                .ids,
            ["4F9D21C3A"]
        );
        let err = select(QUEUE.as_bytes(), &gmail, From::NotHeld, 1).unwrap_err();
        assert!(err.contains("nothing was done"), "{err}");
    }

    #[test]
    fn commands_are_fixed_argv() {
        let dir = Path::new("/etc/postfix-out");
        assert_eq!(
            flush(&cfg(), dir, None, None).argv,
            ["/usr/sbin/postqueue", "-c", "/etc/postfix-out", "-f"]
        );
        assert_eq!(
            flush(&cfg(), dir, Some("gmail.com"), None).argv,
            [
                "/usr/sbin/postqueue",
                "-c",
                "/etc/postfix-out",
                "-s",
                "gmail.com"
            ]
        );
        let hold = postsuper(&cfg(), dir, "-h", vec!["4F9D21C3A".into()]);
        assert_eq!(
            hold.argv,
            ["/usr/sbin/postsuper", "-c", "/etc/postfix-out", "-h", "-"]
        );
        assert_eq!(hold.stdin, ["4F9D21C3A"]);
    }
}
