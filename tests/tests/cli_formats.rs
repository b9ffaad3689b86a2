//! `mailpulse parse` and `mailpulse events` as real processes: the same generated log written in
//! every supported envelope format (and gzip'd, and on stdin) must give the same summary, and that
//! summary must equal what the generator wrote.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use flate2::Compression;
use flate2::write::GzEncoder;
use mailpulse_agent::parse::Timestamp;
use mailpulse_agent::parse::syslog::{LogFormat, parse_as};
use mailpulse_sim::synth::{SynthConfig, SynthLog, SynthTruth, TimestampStyle};
use mailpulse_tests::mailpulse_bin;
use serde_json::Value;

fn synth(style: TimestampStyle) -> (Vec<String>, SynthTruth) {
    let mut log = SynthLog::new(SynthConfig {
        seed: 42,
        messages: 600,
        style,
        ..SynthConfig::default()
    });
    let lines: Vec<String> = log.by_ref().collect();
    (lines, log.into_truth())
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::fs::File::create(path).expect("create log");
    for l in lines {
        writeln!(f, "{l}").expect("write log");
    }
}

fn parse_summary(args: &[&str], stdin: Option<&[u8]>) -> Value {
    let mut cmd = Command::new(mailpulse_bin());
    cmd.arg("parse").arg("--summary").arg("json").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mailpulse parse");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("mailpulse parse runs");
    assert!(
        out.status.success(),
        "mailpulse parse {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("summary is JSON")
}

/// RFC 3339 lines (`TS host prog[pid]: msg`) → RFC 5424 and journald JSON renderings.
fn rerender(rfc3339: &[String]) -> (Vec<String>, Vec<String>) {
    let mut r5424 = Vec::new();
    let mut journal = Vec::new();
    for line in rfc3339 {
        let env = parse_as(LogFormat::Rfc3339, line).expect("generated line parses");
        let ts = line.split(' ').next().expect("timestamp");
        let pid = env.pid.map_or("-".to_owned(), |p| p.to_string());
        r5424.push(format!(
            "<22>1 {ts} {} {} {pid} - - {}",
            env.host, env.program, env.message
        ));
        let at = env.time.resolve(Timestamp::default(), 0);
        let micros = at.unix_secs * 1_000_000 + i64::from(at.nanos / 1_000);
        let mut obj = serde_json::json!({
            "__REALTIME_TIMESTAMP": micros.to_string(),
            "_HOSTNAME": env.host,
            "SYSLOG_IDENTIFIER": env.program,
            "MESSAGE": env.message,
            "PRIORITY": "6",
        });
        if let Some(p) = env.pid {
            obj["_PID"] = Value::String(p.to_string());
        }
        journal.push(obj.to_string());
    }
    (r5424, journal)
}

#[test]
fn summary_equals_generator_truth_in_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (bsd, truth) = synth(TimestampStyle::Bsd);
    let bsd_path = dir.path().join("bsd.log");
    write_lines(&bsd_path, &bsd);
    let reference = parse_summary(&[bsd_path.to_str().expect("utf-8 path")], None);

    // What the generator wrote, under the summary's definitions.
    let expect = |key: &str, value: u64| {
        assert_eq!(
            reference[key].as_u64(),
            Some(value),
            "summary `{key}` should be {value}; summary: {reference:#}"
        );
    };
    expect("lines", bsd.len() as u64);
    expect("unparsed", 0);
    expect(
        "received",
        truth.received + truth.notifications - truth.held - truth.discarded,
    );
    expect("delivered", truth.delivered);
    expect("deferred", truth.deferred);
    expect("deferred_messages", truth.deferred_messages);
    expect("bounced", truth.bounced);
    expect("expired", truth.expired);
    expect("rejected", truth.rejected + truth.postscreen_rejected);
    expect("held", truth.held);
    expect("discarded", truth.discarded);
    assert!(truth.delivered > 100 && truth.deferred > 0 && truth.bounced > 0);
    for (domain, counts) in &truth.by_recipient_domain {
        let got = &reference["by_recipient_domain"][domain];
        assert_eq!(
            (
                got["delivered"].as_u64(),
                got["deferred"].as_u64(),
                got["bounced"].as_u64()
            ),
            (
                Some(counts.sent),
                Some(counts.deferred),
                Some(counts.bounced)
            ),
            "per-domain counts of {domain}"
        );
    }

    // The same traffic in the other formats gives the same summary, field for field.
    let (rfc3339, _) = synth(TimestampStyle::Rfc3339);
    let (maillog, _) = synth(TimestampStyle::Maillog);
    let (r5424, journal) = rerender(&rfc3339);
    for (name, lines, format) in [
        ("rfc3339", &rfc3339, "auto"),
        ("maillog", &maillog, "auto"),
        ("rfc5424", &r5424, "auto"),
        ("journal", &journal, "auto"),
        ("journal-forced", &journal, "journal-json"),
        ("rfc5424-forced", &r5424, "rfc5424"),
    ] {
        let path = dir.path().join(format!("{name}.log"));
        write_lines(&path, lines);
        let got = parse_summary(
            &["--format", format, path.to_str().expect("utf-8 path")],
            None,
        );
        assert_eq!(got, reference, "{name} summary differs from the BSD one");
    }

    // gzip and standard input.
    let gz_path = dir.path().join("bsd.log.gz");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    for l in &bsd {
        writeln!(gz, "{l}").expect("gzip");
    }
    let gz_bytes = gz.finish().expect("gzip");
    std::fs::write(&gz_path, &gz_bytes).expect("write gz");
    assert_eq!(
        parse_summary(&[gz_path.to_str().expect("utf-8 path")], None),
        reference,
        ".gz input"
    );
    let plain = std::fs::read(&bsd_path).expect("read log");
    assert_eq!(
        parse_summary(&["-"], Some(&plain)),
        reference,
        "stdin input"
    );
    assert_eq!(
        parse_summary(&["-"], Some(&gz_bytes)),
        reference,
        "gzip on stdin"
    );

    // A forced format that does not match counts every line as unparsed (nothing is guessed).
    let forced = parse_summary(
        &[
            "--format",
            "rfc3339",
            bsd_path.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(forced["unparsed"].as_u64(), Some(bsd.len() as u64));
}

#[test]
fn events_are_json_lines_with_the_documented_fields() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (lines, truth) = synth(TimestampStyle::Bsd);
    let path = dir.path().join("mail.log");
    write_lines(&path, &lines);
    let out = Command::new(mailpulse_bin())
        .arg("events")
        .arg(&path)
        .output()
        .expect("mailpulse events runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    let mut delivered = 0;
    for line in text.lines() {
        let ev: Value = serde_json::from_str(line).expect("each line is one JSON object");
        let kind = ev["kind"].as_str().expect("kind");
        assert!(
            ev["queue_id"].as_str().is_some_and(|q| !q.is_empty()),
            "{line}"
        );
        assert!(
            ev["at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(
            ev["host"].as_str().is_some() && ev["instance"].as_str().is_some(),
            "{line}"
        );
        if kind == "delivered" {
            delivered += 1;
            assert!(
                ev["recipient"].as_str().is_some_and(|r| r.contains('@')),
                "{line}"
            );
            assert!(ev["relay"]["host"].as_str().is_some(), "{line}");
            assert!(
                ev["dsn"].as_str().is_some_and(|d| d.starts_with("2.")),
                "{line}"
            );
        }
    }
    assert_eq!(delivered, truth.delivered);
}

/// `mailpulse spf-suite` runs the RFC 7208 suite (all 203 cases pass) and reports a broken
/// expectation as a failure with exit status 1.
#[test]
fn spf_suite_command_runs_the_rfc7208_suite() {
    let suite =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures/spf/rfc7208-tests.yml");
    let run = |path: &Path| {
        Command::new(mailpulse_bin())
            .arg("spf-suite")
            .arg(path)
            .output()
            .expect("run mailpulse spf-suite")
    };
    let out = run(&suite);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("203 passed, 0 failed"),
        "{stdout}"
    );
    assert!(out.status.success());

    // One expectation flipped: the same code must count it as failed.
    let text = std::fs::read_to_string(&suite).expect("suite");
    let flipped = text.replacen(
        "    mailfrom: lyme.eater@A12345678901234567890123456789012345678901234567890123456789012.example.com\n    result: fail",
        "    mailfrom: lyme.eater@A12345678901234567890123456789012345678901234567890123456789012.example.com\n    result: pass",
        1,
    );
    assert_ne!(flipped, text, "the suite still has the longlabel case");
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, flipped).expect("write");
    let out = run(&broken);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("202 passed, 1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("longlabel"),
        "the failing case is named: {stdout}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// `mailpulse detect`: one output row per input row, scores in [0, 1], a spike in a seasonal
/// series scored near 1 while the quiet rows before it stay low.
#[test]
fn detect_command_scores_a_csv_causally() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("series.csv");
    let output = dir.path().join("scored.csv");
    let mut csv = String::from("timestamp,value\n");
    let start = 1_396_310_400i64; // 2014-04-01 00:00:00 UTC
    for i in 0..3000i64 {
        let t = start + i * 300;
        let (days, secs) = (t / 86_400, t % 86_400);
        // Civil date from days since 1970 (2014-04 .. 2014-04-11 here).
        let day_of_april = days - 16_161 + 1;
        let value = 50.0
            + 20.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin()
            + if i == 2500 { 300.0 } else { 0.0 };
        csv.push_str(&format!(
            "2014-04-{:02} {:02}:{:02}:00,{value:.2}\n",
            day_of_april,
            secs / 3600,
            secs % 3600 / 60
        ));
    }
    std::fs::write(&input, &csv).expect("write");
    let status = Command::new(mailpulse_bin())
        .args(["detect", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .expect("run mailpulse detect");
    assert!(status.success());
    let scored = std::fs::read_to_string(&output).expect("output");
    let rows: Vec<&str> = scored.lines().collect();
    assert_eq!(rows[0], "timestamp,value,anomaly_score");
    assert_eq!(rows.len(), 3001, "one row per input row");
    let score = |row: &str| -> f64 { row.rsplit(',').next().unwrap().parse().unwrap() };
    assert!(rows[1..].iter().all(|r| (0.0..=1.0).contains(&score(r))));
    assert!(score(rows[2501]) > 0.9, "spike: {}", rows[2501]);
    let quiet_high = rows[2000..2500].iter().filter(|r| score(r) > 0.5).count();
    assert!(quiet_high <= 10, "{quiet_high} quiet rows scored > 0.5");
}
