//! The reason classifier against real reply texts of the major receivers and Postfix's own
//! errors (`fixtures/classify/replies.tsv`), plus properties: it never panics, and the names of
//! parties (hosts, addresses) never decide a class.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use mailpulse_agent::classify::{ReasonClass, classify};
use proptest::prelude::*;

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    line: usize,
    provider: String,
    dsn: Option<String>,
    text: String,
    expected: ReasonClass,
    source: String,
}

/// Receivers the table must cover.
const PROVIDERS: &[&str] = &[
    "gmail",
    "microsoft",
    "yahoo",
    "aol",
    "icloud",
    "orange",
    "free",
    "mimecast",
    "proofpoint",
    "postfix",
    "trap",
];

/// Rows per class the table must keep (every class has real texts enough).
const MIN_ROWS_PER_CLASS: usize = 8;

fn rows() -> &'static [Row] {
    static ROWS: OnceLock<Vec<Row>> = OnceLock::new();
    ROWS.get_or_init(load_rows)
}

fn load_rows() -> Vec<Row> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify/replies.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [provider, dsn, reply, expected, source] = fields[..] else {
            panic!(
                "{}:{line_no}: expected 5 tab-separated fields, found {}",
                path.display(),
                fields.len()
            );
        };
        let expected = ReasonClass::ALL
            .into_iter()
            .find(|c| c.as_str() == expected)
            .unwrap_or_else(|| panic!("{}:{line_no}: unknown class {expected:?}", path.display()));
        rows.push(Row {
            line: line_no,
            provider: provider.to_owned(),
            dsn: (!dsn.is_empty()).then(|| dsn.to_owned()),
            text: reply.to_owned(),
            expected,
            source: source.to_owned(),
        });
    }
    rows
}

#[test]
fn every_reply_in_the_table_gets_its_class() {
    let rows = rows();
    let mut per_class: BTreeMap<ReasonClass, usize> = BTreeMap::new();
    let mut mismatches = Vec::new();
    for row in rows {
        *per_class.entry(row.expected).or_insert(0) += 1;
        let got = classify(row.dsn.as_deref(), &row.text);
        if got != row.expected {
            mismatches.push(format!(
                "  line {} [{}] expected {}, got {}: {:?} ({})",
                row.line, row.provider, row.expected, got, row.text, row.source
            ));
        }
    }
    let counts: Vec<String> = ReasonClass::ALL
        .iter()
        .map(|c| format!("{c}={}", per_class.get(c).copied().unwrap_or(0)))
        .collect();
    println!("classify table: {} rows; {}", rows.len(), counts.join(" "));
    assert!(
        mismatches.is_empty(),
        "{} of {} rows misclassified:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n")
    );
}

#[test]
fn the_table_covers_every_class_and_receiver() {
    let rows = rows();
    for class in ReasonClass::ALL {
        let n = rows.iter().filter(|r| r.expected == class).count();
        assert!(
            n >= MIN_ROWS_PER_CLASS,
            "expected at least {MIN_ROWS_PER_CLASS} rows of class {class}, found {n}"
        );
    }
    for provider in PROVIDERS {
        assert!(
            rows.iter().any(|r| r.provider == *provider),
            "expected rows from provider {provider:?}"
        );
    }
    let mut texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    texts.sort_unstable();
    let before = texts.len();
    texts.dedup();
    assert_eq!(
        texts.len(),
        before,
        "expected no duplicate texts in the table"
    );
}

#[test]
fn the_dsn_alone_classifies_when_there_is_no_text() {
    let cases = [
        ("5.1.1", ReasonClass::UserUnknown),
        ("4.2.2", ReasonClass::Mailbox),
        ("5.7.1", ReasonClass::PolicyBlock),
        ("4.7.28", ReasonClass::RateLimit),
        ("4.4.1", ReasonClass::Connect),
        ("5.4.4", ReasonClass::Dns),
        ("4.7.5", ReasonClass::Tls),
        ("4.0.0", ReasonClass::Other),
        ("not-a-code", ReasonClass::Other),
    ];
    for (dsn, want) in cases {
        assert_eq!(classify(Some(dsn), ""), want, "dsn {dsn} without text");
    }
    assert_eq!(classify(None, ""), ReasonClass::Other, "nothing at all");
}

/// Words that would decide a class if the classifier read them in a host name or address.
const LOADED_WORDS: &[&str] = &[
    "block", "blocked", "spam", "spamhaus", "quota", "full", "tls", "starttls", "greylist",
    "refused", "unknown", "throttle", "rate", "policy", "dmarc", "denied", "timeout", "dns",
    "notfound", "loops", "mailbox", "user", "relay", "listed",
];

/// Replaces every host name in front of `[` and every chunk holding an address with the given
/// names, keeping everything else.
fn rename_parties(text: &str, host: &str, address: &str) -> String {
    text.split(' ')
        .map(|chunk| {
            if chunk.contains('@') {
                format!("<{address}>:")
            } else if let Some(at) = chunk.find('[')
                && at > 0
            {
                format!("{host}{}", &chunk[at..])
            } else {
                chunk.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn loaded_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LOADED_WORDS), 1..4)
        .prop_map(|words| format!("{}.example", words.join("-")))
}

/// Postfix- and reply-shaped fragments to splice together.
const FRAGMENTS: &[&str] = &[
    "host mx.example.com[192.0.2.1] said: ",
    "refused to talk to me: ",
    "550-5.1.1 ",
    "4.7.28 ",
    "[TSS04] ",
    "421",
    "said",
    "said:",
    "5.",
    "4.7.",
    ".1",
    "<",
    ">",
    "[",
    "]",
    "@",
    "://",
    "’",
    "'",
    "é",
    "greylisted",
    "user unknown",
    "connect to ",
    "Connection refused",
    "TLS is required",
    "(in reply to RCPT TO command)",
    " ",
    "\t",
    "\n",
    "\0",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_text_never_panics_and_is_deterministic(
        dsn in prop::option::of(".{0,12}"),
        text in ".{0,600}",
    ) {
        let first = classify(dsn.as_deref(), &text);
        prop_assert_eq!(first, classify(dsn.as_deref(), &text));
    }

    #[test]
    fn fragment_soup_never_panics(
        parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40),
        dsn in prop::option::of(prop::sample::select(&["5.1.1", "4.7.1", "4.4.1", "x", ""][..])),
    ) {
        let text: String = parts.concat();
        let _ = classify(dsn, &text);
    }

    #[test]
    fn every_prefix_and_byte_cut_of_a_real_reply_is_safe(
        row in prop::sample::select(rows()),
        cut in 0usize..2048,
        repeat in 1usize..6,
    ) {
        let end = (0..=cut.min(row.text.len())).rev().find(|&i| row.text.is_char_boundary(i)).unwrap_or(0);
        let _ = classify(row.dsn.as_deref(), &row.text[..end]);
        // Longer than the normalisation buffer: read up to it, never past it.
        let long = row.text.repeat(repeat * 8);
        let _ = classify(row.dsn.as_deref(), &long);
    }

    #[test]
    fn host_and_address_names_never_decide_the_class(
        row in prop::sample::select(rows()),
        host in loaded_name(),
        user in prop::sample::select(LOADED_WORDS),
    ) {
        let address = format!("{user}@{host}");
        let renamed = rename_parties(&row.text, &host, &address);
        prop_assert_eq!(
            classify(row.dsn.as_deref(), &renamed),
            row.expected,
            "line {} renamed to {:?}", row.line, renamed
        );
    }
}
