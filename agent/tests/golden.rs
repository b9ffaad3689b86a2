//! Golden fixtures: `tests/fixtures/<service>/NNN.log` holds raw syslog lines, `NNN.json` the
//! records they must parse into (a JSON array, one element per line; `#` lines and blank lines in
//! the .log are skipped). `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the .json files from
//! what the parser does now: review every change by eye before committing it.

mod common;

use std::path::Path;

use common::{golden_logs, log_lines};

use mailpulse_agent::parse::postfix;
use mailpulse_agent::parse::record::Record;
use mailpulse_agent::parse::{EnvelopeParser, LogFormat, ProgramName};
use serde_json::Value;

#[test]
fn golden_fixtures_parse_into_the_expected_records() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let logs = golden_logs();
    assert!(!logs.is_empty(), "no golden fixtures found");
    let mut failures = Vec::new();
    let mut total = 0;
    for log in &logs {
        let bodies = parse_envelopes(log);
        let records: Vec<Record<'_>> = bodies.iter().map(|(s, m)| postfix::parse(s, m)).collect();
        total += records.len();
        let json_path = log.with_extension("json");
        if update {
            // Serialised from the records, not from `Value`, to keep the fields in declaration order.
            let mut text = serde_json::to_string_pretty(&records).unwrap();
            text.push('\n');
            std::fs::write(&json_path, text).unwrap();
            continue;
        }
        let actual: Vec<Value> = records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        let expected: Vec<Value> = match std::fs::read_to_string(&json_path) {
            Ok(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", json_path.display())),
            Err(e) => {
                failures.push(format!(
                    "{}: expected file missing ({e}); run with UPDATE_GOLDEN=1 and review it",
                    json_path.display()
                ));
                continue;
            }
        };
        let lines = log_lines(log);
        if expected.len() != actual.len() {
            failures.push(format!(
                "{}: expected {} records, the .log has {} lines",
                json_path.display(),
                expected.len(),
                actual.len()
            ));
        }
        for (i, (exp, act)) in expected.iter().zip(&actual).enumerate() {
            if exp != act {
                failures.push(format!(
                    "{} line {}: {}\n  expected: {}\n  actual:   {}",
                    log.display(),
                    i + 1,
                    lines.get(i).map_or("", String::as_str),
                    exp,
                    act
                ));
            }
        }
    }
    println!("golden: {total} lines in {} files", logs.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every record of a golden fixture is typed unless the fixture is about unparsed lines.
#[test]
fn golden_lines_outside_unparsed_are_typed() {
    for log in golden_logs() {
        let dir = log.parent().and_then(Path::file_name).unwrap();
        if dir == "unparsed" {
            continue;
        }
        for (line, (service, message)) in log_lines(&log).iter().zip(parse_envelopes(&log)) {
            assert!(
                !matches!(postfix::parse(&service, &message), Record::Unparsed(_)),
                "{}: expected a typed record for {line}",
                log.display()
            );
        }
    }
}

/// (service, message body) of every line of a .log file.
fn parse_envelopes(log: &Path) -> Vec<(String, String)> {
    let mut envelope = EnvelopeParser::new(LogFormat::Auto);
    log_lines(log)
        .iter()
        .map(|line| {
            let l = envelope
                .parse(line)
                .unwrap_or_else(|e| panic!("{}: envelope of {line:?}: {e}", log.display()));
            let service = ProgramName::split(&l.program).service.to_string();
            (service, l.message.into_owned())
        })
        .collect()
}
