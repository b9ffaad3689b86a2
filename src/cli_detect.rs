//! `mailpulse detect --input FILE.csv [--output FILE.csv] [--kind auto|count|level]`: causal,
//! offline anomaly scoring of one series with the collector's [`VolumeDetector`] at its
//! defaults, the window length learned from the timestamps: `count` judges like the collector's
//! counters (the small-count test plus the band), `level` like its gauges (the band), `auto`
//! (the default) runs the count test for as long as every value is a whole number ≥ 0.
//!
//! Input: CSV with a header line and `timestamp,value` in the first two columns (the Numenta
//! Anomaly Benchmark layout; further columns are ignored). Timestamps are UTC, either
//! `YYYY-MM-DD HH:MM:SS` (also with `T`, fractional seconds, a trailing `Z`, without seconds, or
//! a date alone) or integer Unix seconds. Output: `timestamp,value,anomaly_score`, one row per
//! input row in input order, the timestamp and value copied verbatim, the score in [0, 1].
//!
//! The score of a row uses only that row and the rows before it, so appending rows never
//! changes earlier scores. Blank lines are skipped (they are not rows). A value that is empty or
//! `nan`/`NaN`/`null`/`NA` is a missing value: its row scores 0 and scoring carries on. Any other
//! unparsable timestamp or value is an error naming the line.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use mailpulse_collector::detect::{CountTestScope, SeriesKind, VolumeConfig, VolumeDetector};

/// What the values of the input are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Counts while every value is a whole number ≥ 0, levels from the first other value.
    Auto,
    /// Events per window.
    Count,
    /// Levels.
    Level,
}

impl Kind {
    /// The collector's volume detector configuration for this kind, at its defaults.
    fn config(self) -> VolumeConfig {
        let (kind, count_test) = match self {
            Kind::Auto => (SeriesKind::Gauge, CountTestScope::WhileWholeNumbers),
            Kind::Count => (SeriesKind::Count, CountTestScope::Counters),
            Kind::Level => (SeriesKind::Gauge, CountTestScope::Counters),
        };
        VolumeConfig {
            kind,
            count_test,
            // The units of the input are unknown: any deviation can be evidence.
            min_excess: 0.0,
            ..VolumeConfig::default()
        }
    }
}

/// Scores the series in `input` as `kind` and writes `timestamp,value,anomaly_score` to
/// `output` (standard output when `None`).
pub fn run(input: &Path, output: Option<&Path>, kind: Kind) -> Result<()> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let rows = score_csv(&text, kind).with_context(|| format!("{}", input.display()))?;
    match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write_rows(BufWriter::new(file), &rows)
                .with_context(|| format!("writing {}", path.display()))
        }
        None => write_rows(BufWriter::new(std::io::stdout().lock()), &rows)
            .context("writing to standard output"),
    }
}

/// One scored input row: the original text of its first two fields and the score.
#[derive(Debug, Clone, PartialEq)]
struct ScoredRow<'a> {
    timestamp: &'a str,
    value: &'a str,
    score: f64,
}

fn score_csv(text: &str, kind: Kind) -> Result<Vec<ScoredRow<'_>>> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        bail!("empty file: expected a `timestamp,value` header line");
    };
    if header.split(',').count() < 2 {
        bail!(
            "line 1: expected a header with at least two columns (timestamp,value), got {header:?}"
        );
    }
    let mut detector = VolumeDetector::new(kind.config());
    let mut rows = Vec::new();
    for (number, line) in lines {
        let mut fields = line.split(',').map(|f| unquote(f.trim()));
        let (Some(timestamp), Some(value)) = (fields.next(), fields.next()) else {
            bail!("line {number}: expected `timestamp,value`, got {line:?}");
        };
        let Some(secs) = parse_timestamp(timestamp) else {
            bail!(
                "line {number}: unreadable timestamp {timestamp:?} (expected `YYYY-MM-DD HH:MM:SS` or Unix seconds)"
            );
        };
        let Some(parsed) = parse_value(value) else {
            bail!(
                "line {number}: unreadable value {value:?} (expected a number, or empty/NaN for missing)"
            );
        };
        let assessed = detector.judge(secs, Some(parsed));
        rows.push(ScoredRow {
            timestamp,
            value,
            score: assessed.judgement.score,
        });
    }
    Ok(rows)
}

fn write_rows(mut out: impl Write, rows: &[ScoredRow<'_>]) -> std::io::Result<()> {
    writeln!(out, "timestamp,value,anomaly_score")?;
    for row in rows {
        writeln!(out, "{},{},{:.6}", row.timestamp, row.value, row.score)?;
    }
    out.flush()
}

fn unquote(field: &str) -> &str {
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

/// A number, or NaN for the missing-value spellings; `None` for anything else.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "" | "nan" | "NaN" | "NAN" | "null" | "NULL" | "NA" | "N/A" => Some(f64::NAN),
        _ => text.parse::<f64>().ok(),
    }
}

/// UTC timestamp to Unix seconds (see the module docs for the accepted forms).
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = match text.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t.trim())),
        None => (text, None),
    };
    let mut date_parts = date.split('-');
    let year: i64 = number(date_parts.next()?, 4)?;
    let month: i64 = number(date_parts.next()?, 2)?;
    let day: i64 = number(date_parts.next()?, 2)?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (hour, minute, second) = match time {
        None | Some("") => (0, 0, 0),
        Some(time) => {
            // Fractional seconds are dropped: windows are at least a second long.
            let time = time.split_once('.').map_or(time, |(whole, _)| whole);
            let mut parts = time.split(':');
            let hour = number(parts.next()?, 2)?;
            let minute = number(parts.next()?, 2)?;
            let second = match parts.next() {
                Some(s) => number(s, 2)?,
                None => 0,
            };
            if parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
                return None;
            }
            (hour, minute, second)
        }
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// A decimal field of 1..=`max_digits` ASCII digits.
fn number(text: &str, max_digits: usize) -> Option<i64> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpulse_collector::alerting::content::civil_from_days;

    #[test]
    fn parses_nab_and_other_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2014-04-01 00:05:00"), Some(1_396_310_700));
        assert_eq!(
            parse_timestamp("2014-04-01T00:05:00.250Z"),
            Some(1_396_310_700)
        );
        assert_eq!(parse_timestamp("2014-04-01 00:05"), Some(1_396_310_700));
        assert_eq!(parse_timestamp("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_timestamp("1396310700"), Some(1_396_310_700));
        for bad in [
            "2023-02-29",
            "2014-13-01 00:00:00",
            "2014-04-01 24:00:00",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_rows_name_their_line() {
        let err = score_csv(
            "timestamp,value\n2014-04-01 00:00:00,1\n\nnot a time,2\n",
            Kind::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 4"), "{err}");
        let err = score_csv("timestamp,value\n2014-04-01 00:00:00,abc\n", Kind::Auto)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(score_csv("", Kind::Auto).is_err());
        assert!(score_csv("timestamp,value\n2014-04-01 00:00:00\n", Kind::Auto).is_err());
    }

    fn nab_csv(rows: usize) -> String {
        let mut csv = String::from("timestamp,value\n");
        let start = 1_396_310_400; // 2014-04-01 00:00:00
        for i in 0..rows {
            let secs = start + 300 * i as i64;
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400);
            // Days since epoch back to a date (inverse of days_from_civil, for the test only).
            let (y, m, d) = civil_from_days(days);
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
            let mut value = 50.0 + 30.0 * phase.sin() + 4.0 * noise;
            if i == 1000 {
                value += 200.0;
            }
            let value = if i == 500 {
                "nan".to_string()
            } else {
                format!("{value:.3}")
            };
            csv.push_str(&format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{value}\n",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            ));
        }
        csv
    }

    #[test]
    fn run_writes_one_row_per_input_row_and_is_causal() {
        let dir = std::env::temp_dir().join(format!("mailpulse-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short_in = dir.join("short.csv");
        let long_in = dir.join("long.csv");
        let short_out = dir.join("short.out.csv");
        let long_out = dir.join("long.out.csv");
        let long = nab_csv(1200);
        let short: String = long
            .lines()
            .take(1 + 1100)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&short_in, &short).unwrap();
        std::fs::write(&long_in, &long).unwrap();
        run(&short_in, Some(&short_out), Kind::Auto).unwrap();
        run(&long_in, Some(&long_out), Kind::Auto).unwrap();
        let short_scores = std::fs::read_to_string(&short_out).unwrap();
        let long_scores = std::fs::read_to_string(&long_out).unwrap();
        std::fs::remove_dir_all(&dir).ok();

        let short_rows: Vec<&str> = short_scores.lines().collect();
        let long_rows: Vec<&str> = long_scores.lines().collect();
        assert_eq!(short_rows[0], "timestamp,value,anomaly_score");
        assert_eq!(short_rows.len(), 1 + 1100, "one output row per input row");
        assert_eq!(long_rows.len(), 1 + 1200, "one output row per input row");
        assert_eq!(
            &long_rows[..short_rows.len()],
            &short_rows[..],
            "scores of the first rows change when later rows are appended"
        );
        let score = |row: &str| -> f64 { row.rsplit(',').next().unwrap().parse().unwrap() };
        assert!(
            long_rows
                .iter()
                .skip(1)
                .all(|r| (0.0..=1.0).contains(&score(r)))
        );
        assert_eq!(score(long_rows[501]), 0.0, "a NaN value scores 0");
        assert!(
            score(long_rows[1001]) > 0.9,
            "the spike: {}",
            long_rows[1001]
        );
        assert!(long_rows[1].starts_with("2014-04-01 00:00:00,"));
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    /// Four days of about one event an hour (Unix-second timestamps), then `burst` events.
    fn sparse_counts(burst: &str) -> String {
        let mut csv = String::from("timestamp,value\n");
        let windows = 4 * 288;
        for i in 0..windows {
            let events = u8::from((i * 7919) % 12 == 0);
            csv.push_str(&format!("{},{events}\n", 1_700_000_000 + 300 * i));
        }
        csv.push_str(&format!("{},{burst}\n", 1_700_000_000 + 300 * windows));
        csv
    }

    fn last_score(text: &str, kind: Kind) -> f64 {
        score_csv(text, kind)
            .expect("scores")
            .last()
            .expect("rows")
            .score
    }

    #[test]
    fn auto_judges_whole_numbers_as_counts_and_fractions_as_levels() {
        let counts = sparse_counts("6");
        let as_count = last_score(&counts, Kind::Count);
        let as_auto = last_score(&counts, Kind::Auto);
        let as_level = last_score(&counts, Kind::Level);
        assert_eq!(as_auto, as_count, "whole numbers are counts");
        assert_ne!(
            as_level, as_count,
            "the count test adds evidence the band lacks"
        );
        assert!(
            as_count >= 0.95,
            "six events where one an hour is usual: {as_count}"
        );
        // A fractional last value is a level: auto drops the count test for it.
        let fraction = sparse_counts("6.5");
        assert_eq!(
            last_score(&fraction, Kind::Auto),
            last_score(&fraction, Kind::Level)
        );
    }
}
