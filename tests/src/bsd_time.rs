//! BSD syslog timestamps (`Nov 25 13:21:23`, no year) for fixtures that must look recent: the
//! collector keeps windows for a limited time, so a recorded log is re-stamped to end near now.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mon DD HH:MM:SS` (day space-padded) of a Unix time, UTC.
pub fn bsd_stamp(unix_secs: i64) -> String {
    let secs = unix_secs.rem_euclid(86_400);
    let (_, month, day) = civil_from_days(unix_secs.div_euclid(86_400));
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// (year, month, day) of a number of days since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Seconds since the start of the (leap) year of a BSD stamp, or `None` when `line` does not
/// start with one. Enough to keep the distances between the lines of one log.
fn seconds_in_year(line: &str) -> Option<i64> {
    let stamp = line.get(..15)?;
    let month = MONTHS.iter().position(|m| stamp.starts_with(m))? as i64;
    let day: i64 = stamp.get(4..6)?.trim().parse().ok()?;
    let hms: Vec<i64> = stamp
        .get(7..15)?
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    const BEFORE: [i64; 12] = [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335];
    Some(((BEFORE[month as usize] + day - 1) * 24 + hms[0]) * 3600 + hms[1] * 60 + hms[2])
}

/// The lines of a BSD-stamped log with their timestamps moved so the first line is at
/// `start_unix_secs`, keeping the distances between lines. Lines without a stamp are kept.
pub fn restamp(lines: &[&str], start_unix_secs: i64) -> Vec<String> {
    let first = lines.iter().find_map(|l| seconds_in_year(l)).unwrap_or(0);
    lines
        .iter()
        .map(|l| match seconds_in_year(l) {
            Some(t) => format!("{}{}", bsd_stamp(start_unix_secs + t - first), &l[15..]),
            None => (*l).to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        assert_eq!(bsd_stamp(0), "Jan  1 00:00:00");
        assert_eq!(bsd_stamp(1_796_602_494), "Dec  7 00:14:54");
        let lines = ["Nov 25 13:21:23 mx a", "Nov 25 13:22:24 mx b", "no stamp"];
        let out = restamp(&lines, 1_796_602_494);
        assert_eq!(
            out,
            ["Dec  7 00:14:54 mx a", "Dec  7 00:15:55 mx b", "no stamp"]
        );
    }
}
