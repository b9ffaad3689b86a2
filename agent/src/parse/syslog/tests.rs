//! Tests of the envelope parser: every syslog flavour, auto-detection, program names and pids, and
//! that cached timestamps never change a parse.

use super::*;
use crate::parse::time::Timestamp;

fn utc(l: &SyslogLine<'_>) -> String {
    let reference = Timestamp {
        unix_secs: 1_735_000_000, // 2024-12-24
        nanos: 0,
    };
    l.time.resolve(reference, 0).to_rfc3339()
}

#[test]
fn bsd_space_padded_day() {
    let l = parse_as(
        LogFormat::Bsd,
        "Oct  6 18:13:50 mx1 postfix/smtpd[1234]: connect from a[1.2.3.4]",
    )
    .unwrap();
    assert_eq!(l.host, "mx1");
    assert_eq!(l.program, "postfix/smtpd");
    assert_eq!(l.pid, Some(1234));
    assert_eq!(l.message, "connect from a[1.2.3.4]");
    assert_eq!(utc(&l), "2024-10-06T18:13:50.000000Z");
}

#[test]
fn bsd_with_pri_and_year() {
    let l = parse_as(
        LogFormat::Bsd,
        "<22>Oct 26 2023 18:13:50 mx1 postfix-out/smtp[9]: x",
    )
    .unwrap();
    assert_eq!(l.program, "postfix-out/smtp");
    assert_eq!(utc(&l), "2023-10-26T18:13:50.000000Z");
}

#[test]
fn maillog_file_format() {
    let l = parse_as(
        LogFormat::Maillog,
        "Nov 05 10:00:01.123456 mail postfix/qmgr[77]: ABC: removed",
    )
    .unwrap();
    assert_eq!(utc(&l), "2024-11-05T10:00:01.123456Z");
    assert_eq!(l.message, "ABC: removed");
}

#[test]
fn rfc3339_with_offset() {
    let l = parse_as(
        LogFormat::Rfc3339,
        "2024-10-26T20:13:50.250+02:00 mx postfix/submission/smtpd[5]: hi",
    )
    .unwrap();
    assert_eq!(utc(&l), "2024-10-26T18:13:50.250000Z");
    let p = ProgramName::split(&l.program);
    assert_eq!(
        (p.instance, p.syslog_name, p.service),
        ("postfix", "postfix/submission", "smtpd")
    );
}

#[test]
fn rfc5424_with_structured_data() {
    let l = parse_as(
        LogFormat::Rfc5424,
        r#"<22>1 2024-10-26T18:13:50.1Z mx postfix/qmgr 77 - [meta a="x\]y"] ABC: removed"#,
    )
    .unwrap();
    assert_eq!(l.program, "postfix/qmgr");
    assert_eq!(l.pid, Some(77));
    assert_eq!(l.message, "ABC: removed");
    assert_eq!(utc(&l), "2024-10-26T18:13:50.100000Z");
}

#[test]
fn journal_json() {
    let line = r#"{"__REALTIME_TIMESTAMP":"1729966430123456","_HOSTNAME":"mx","SYSLOG_IDENTIFIER":"postfix/smtp","_PID":"42","MESSAGE":"ABC: to=<a@b>, status=sent (ok \"q\")"}"#;
    let l = parse_as(LogFormat::JournalJson, line).unwrap();
    assert_eq!(l.program, "postfix/smtp");
    assert_eq!(l.pid, Some(42));
    assert_eq!(l.message, "ABC: to=<a@b>, status=sent (ok \"q\")");
    assert_eq!(utc(&l), "2024-10-26T18:13:50.123456Z");
}

#[test]
fn auto_detection_sticks_and_recovers() {
    let mut p = EnvelopeParser::new(LogFormat::Auto);
    assert!(
        p.parse("2024-10-26T18:13:50Z mx postfix/smtp[1]: a")
            .is_ok()
    );
    assert_eq!(p.format(), LogFormat::Rfc3339);
    assert!(p.parse("Oct 26 18:13:50 mx postfix/smtp[1]: a").is_ok());
    assert_eq!(p.parse("garbage"), Err(EnvelopeError::Unknown));
    assert_eq!(p.parse("   "), Err(EnvelopeError::Empty));
}

#[test]
fn pids_and_program_names() {
    let pid = |line: &str| parse_as(LogFormat::Bsd, line).map(|l| l.pid);
    assert_eq!(
        pid("Oct 26 18:13:50 mx smtpd[0000000000000042]: a"),
        Ok(Some(42))
    );
    assert_eq!(
        pid("Oct 26 18:13:50 mx smtpd[4294967295]: a"),
        Ok(Some(u32::MAX))
    );
    for bad in [
        "Oct 26 18:13:50 mx smtpd[4294967296]: a",
        "Oct 26 18:13:50 mx smtpd[99999999999999999999999]: a",
        "Oct 26 18:13:50 mx smtpd[]: a",
        "Oct 26 18:13:50 mx smtpd[12: a",
    ] {
        assert_eq!(
            pid(bad),
            Err(EnvelopeError::Format(LogFormat::Bsd)),
            "{bad}"
        );
    }
    assert_eq!(pid("Oct 26 18:13:50 mx smtpd: a"), Ok(None));
    let split = |p| {
        let n = ProgramName::split(p);
        (n.syslog_name, n.instance, n.service)
    };
    assert_eq!(split("smtpd"), ("", "smtpd", "smtpd"));
    assert_eq!(split("postfix/smtpd"), ("postfix", "postfix", "smtpd"));
    assert_eq!(split("a/b/c/smtpd"), ("a/b/c", "a", "smtpd"));
    assert_eq!(split("/smtpd"), ("", "", "smtpd"));
    assert_eq!(split("postfix/"), ("postfix", "postfix", ""));
}

/// A line parsed right after another: by a parser that has just cached the other's timestamp,
/// and by a fresh one.
fn after(format: LogFormat, first: &str, second: &str) -> [String; 2] {
    let mut warm = EnvelopeParser::new(format);
    let _ = warm.parse(first);
    let mut cold = EnvelopeParser::new(format);
    [
        format!("{:?}", warm.parse(second)),
        format!("{:?}", cold.parse(second)),
    ]
}

#[test]
fn cached_timestamps_never_change_a_parse() {
    let first = "Oct 26 18:13:50 mx postfix/smtp[1]: a";
    for second in [
        "Oct 26 18:13:50 mx postfix/smtp[2]: b",
        "Oct 26 18:13:50 2024 mx postfix/smtp[2]: b",
        "Oct 26 18:13:50 2024mx postfix/smtp[2]: b",
        "Oct 26 18:13:50.25 mx postfix/smtp[2]: b",
        "Oct 26 18:13:50. mx postfix/smtp[2]: b",
        "Oct 26 18:13:50  mx postfix/smtp[2]: b",
        "Oct 26 18:13:50 1mx postfix/smtp[2]: b",
        "Oct 26 18:13:50",
        "Oct 26 18:13:50 ",
        "Oct 26 18:13:5",
    ] {
        for format in [LogFormat::Auto, LogFormat::Bsd, LogFormat::Maillog] {
            let [warm, cold] = after(format, first, second);
            assert_eq!(warm, cold, "{second:?} after {first:?} ({format:?})");
        }
    }
    let first = "2024-10-26T18:13:50.123+02:00 mx postfix/smtp[1]: a";
    for second in [
        "2024-10-26T18:13:50.123+02:00 mx postfix/smtp[2]: b",
        "2024-10-26T18:13:50.1234+02:00 mx postfix/smtp[2]: b",
        "2024-10-26T18:13:50.123+02:00x mx postfix/smtp[2]: b",
        "2024-10-26T18:13:50.123+02:00 2024 postfix/smtp[2]: b",
    ] {
        let [warm, cold] = after(LogFormat::Rfc3339, first, second);
        assert_eq!(warm, cold, "{second:?} after {first:?}");
    }
}

proptest::proptest! {
    /// Whatever follows a shared timestamp, the cache gives what a full parse gives.
    #[test]
    fn cached_timestamps_agree_with_full_parses(
        first in "(Oct 26 18:13:50|Nov 05 10:00:01\\.123456|Oct  6 18:13:50 2024)[ 0-9.:a-z]{0,12}",
        tail in "[ 0-9.:a-z\\[\\]]{0,24}",
    ) {
        let stamp = first.get(..15).unwrap_or(&first);
        let second = format!("{stamp}{tail}");
        for format in [LogFormat::Auto, LogFormat::Bsd, LogFormat::Rfc3339] {
            let [warm, cold] = after(format, &format!("{first} x[1]: a"), &second);
            proptest::prop_assert_eq!(warm, cold);
        }
    }
}
