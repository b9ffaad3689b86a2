//! The parsers never panic: arbitrary text and bytes, Postfix-shaped fragment soup, mutated real
//! lines and every truncation of every real line go through the envelope parser and every service
//! parser. What is not understood must come back as `Unparsed` carrying the whole message.

mod common;

use std::sync::OnceLock;

use mailpulse_agent::parse::postfix;
use mailpulse_agent::parse::record::Record;
use mailpulse_agent::parse::{EnvelopeParser, LogFormat, ProgramName};
use proptest::prelude::*;

/// Every service name the dispatcher knows, plus one it does not.
const SERVICES: &[&str] = &[
    "smtpd",
    "postscreen",
    "cleanup",
    "qmgr",
    "nqmgr",
    "oqmgr",
    "smtp",
    "lmtp",
    "local",
    "virtual",
    "pipe",
    "error",
    "retry",
    "discard",
    "bounce",
    "defer",
    "trace",
    "pickup",
    "anvil",
    "postsuper",
    "master",
    "scache",
    "dnsblog",
    "verify",
    "tlsproxy",
    "tlsmgr",
    "trivial-rewrite",
    "postmap",
    "postdrop",
    "sendmail",
    "postfix-script",
    "no-such-daemon",
    "",
];

/// Pieces of Postfix messages, glued at random to reach deep parser paths.
const FRAGMENTS: &[&str] = &[
    "NOQUEUE: ",
    "reject: ",
    "milter-reject: ",
    "milter-header-redirect: ",
    "hold: ",
    "warning: ",
    "fatal: ",
    "RCPT from ",
    "END-OF-MESSAGE",
    " from ",
    "unknown[",
    "mx.example.com[",
    "[",
    "]",
    "1.2.3.4",
    "2001:db8::1",
    ":25",
    ":",
    ": ",
    "; from=<",
    "> to=<",
    "> proto=ESMTP helo=<",
    ">",
    "<",
    "a@b.example",
    "550 5.1.1 ",
    "450-4.7.1 ",
    "5.7.1 ",
    "4KJd2L6vmtz9sQ6",
    "7EE668039",
    "to=<",
    ", orig_to=<",
    ", relay=",
    "none",
    "private/dovecot-lmtp",
    ", conn_use=",
    ", delay=",
    "0.2",
    ", delays=",
    "0.1/0/0.2/0.3",
    "/",
    ", dsn=",
    ", tls=",
    "dane/!requiretls?:none",
    ", status=",
    "sent ",
    "(",
    ")",
    "client=",
    ", sasl_method=",
    ", sasl_username=",
    ", orig_client=",
    "disconnect from ",
    "ehlo=1 ",
    "rcpt=0/1 ",
    "commands=",
    "lost connection after ",
    " (",
    " bytes)",
    "message-id=",
    "from=<",
    ", size=",
    ", nrcpt=",
    " (queue active)",
    ", status=expired, ",
    "statistics: max ",
    "connection rate ",
    "cache size ",
    "12/60s",
    " for (",
    "smtpd:",
    ") at ",
    "CONNECT from ",
    " to ",
    "PASS NEW ",
    "PREGREET ",
    " after ",
    "HANGUP after ",
    " in ",
    "DNSBL rank ",
    "cache ",
    " cleanup: ",
    "retained=",
    " dropped=",
    " entries",
    "Trusted TLS connection established ",
    " with cipher ",
    " bits)",
    "host ",
    " said: ",
    " (in reply to ",
    " command)",
    "connect to ",
    "SASL ",
    " authentication failed",
    "daemon started -- version ",
    ", configuration ",
    "addr ",
    " listed by domain ",
    " as ",
    "Deleted: ",
    " messages",
    "uid=",
    " notification: ",
    "é",
    "\u{feff}",
    "\\r\\n",
    "\t",
    " ",
];

/// Real lines: golden syslog lines (service `None`: the envelope names it) and corpus bodies
/// with their service.
fn real_lines() -> &'static [(Option<&'static str>, String)] {
    static LINES: OnceLock<Vec<(Option<&'static str>, String)>> = OnceLock::new();
    LINES.get_or_init(|| {
        let mut lines: Vec<_> = common::golden_logs()
            .iter()
            .flat_map(|log| common::log_lines(log))
            .map(|l| (None, l))
            .collect();
        lines.extend(
            common::load_cases()
                .into_iter()
                .map(|c| (Some(c.service), c.message)),
        );
        lines
    })
}

/// Runs `message` through every service parser and checks what comes back.
fn parse_everywhere(message: &str) {
    for service in SERVICES {
        check(service, message);
    }
}

fn check(service: &str, message: &str) {
    let record = postfix::parse(service, message);
    if let Record::Unparsed(u) = &record {
        assert_eq!(u.text, message, "Unparsed must keep the whole message");
    }
    // Serialising must not fail either (e.g. on NaN delays).
    serde_json::to_string(&record).expect("record serialises");
}

/// Envelope first, then the service the line names and every other service on its body.
fn parse_line(line: &str) {
    let mut envelope = EnvelopeParser::new(LogFormat::Auto);
    if let Ok(l) = envelope.parse(line) {
        check(ProgramName::split(&l.program).service, &l.message);
        parse_everywhere(&l.message);
    }
    parse_everywhere(line);
}

/// One edit of a mutated line.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![
        prop::sample::select(vec![
            ' ', ':', '[', ']', '<', '>', '(', ')', ',', ';', '=', '/', '.', '-', 'z', '0', '\n',
            'é', '\u{0}',
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(line: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    for e in edits {
        let len = chars.len();
        match *e {
            Edit::Insert(i, c) => chars.insert(i % (len + 1), c),
            Edit::Delete(i) if len > 0 => {
                chars.remove(i % len);
            }
            Edit::Replace(i, c) if len > 0 => chars[i % len] = c,
            Edit::Truncate(i) => chars.truncate(i % (len + 1)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        parse_line(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        parse_line(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn postfix_shaped_fragments_never_panic(
        parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24)
    ) {
        parse_everywhere(&parts.concat());
    }

    #[test]
    fn mutated_real_lines_never_panic(
        index in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let lines = real_lines();
        let (service, line) = &lines[index.index(lines.len())];
        let mutated = apply(line, &edits);
        if let Some(service) = service {
            check(service, &mutated);
        }
        parse_line(&mutated);
    }
}

/// Services whose parsers go deepest; every truncation is also tried under them.
const BUSY: [&str; 5] = ["smtpd", "cleanup", "smtp", "qmgr", "postscreen"];

#[test]
fn every_truncation_of_every_real_line_is_handled() {
    let lines = real_lines();
    assert!(lines.len() > 300, "fixtures not found: {}", lines.len());
    let mut envelope = EnvelopeParser::new(LogFormat::Auto);
    for (service, line) in lines {
        for (i, _) in line.char_indices().chain([(line.len(), ' ')]) {
            let cut = &line[..i];
            match service {
                Some(service) => check(service, cut),
                None => {
                    if let Ok(l) = envelope.parse(cut) {
                        check(ProgramName::split(&l.program).service, &l.message);
                    }
                }
            }
            for busy in BUSY {
                check(busy, cut);
            }
        }
    }
}
