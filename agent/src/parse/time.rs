//! Log timestamps: what a line says (possibly without year or offset) and its resolution to UTC.

use serde::Serialize;

/// A point in time, UTC, with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Timestamp {
    pub unix_secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn from_unix_micros(micros: i64) -> Self {
        Self {
            unix_secs: micros.div_euclid(1_000_000),
            nanos: (micros.rem_euclid(1_000_000) * 1_000) as u32,
        }
    }

    /// RFC 3339 in UTC with microseconds, e.g. `2024-10-26T18:13:50.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let days = self.unix_secs.div_euclid(86_400);
        let secs = self.unix_secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            self.nanos / 1_000
        )
    }

    /// The calendar year (UTC) of this instant.
    pub fn year(self) -> i32 {
        civil_from_days(self.unix_secs.div_euclid(86_400)).0
    }
}

/// A timestamp as written in a log line; BSD syslog omits the year and the UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogTime {
    pub year: Option<i32>,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
    /// Offset from UTC in seconds when the line carries one (`Z` is 0).
    pub offset_secs: Option<i32>,
}

impl LogTime {
    /// Resolves to UTC. A missing offset means `default_offset_secs` (the host's zone, UTC unless
    /// configured). A missing year is taken from `reference` (normally "now" or the file's mtime):
    /// the year that puts the instant closest before `reference` plus one day, which handles the
    /// December→January rollover of year-less syslog files.
    pub fn resolve(&self, reference: Timestamp, default_offset_secs: i32) -> Timestamp {
        let offset = self.offset_secs.unwrap_or(default_offset_secs) as i64;
        let at_year = |year: i32| {
            let days = days_from_civil(year, self.month, self.day);
            let secs = days * 86_400
                + self.hour as i64 * 3600
                + self.minute as i64 * 60
                + self.second.min(59) as i64
                - offset;
            Timestamp {
                unix_secs: secs,
                nanos: self.nanos,
            }
        };
        match self.year {
            Some(year) => at_year(year),
            None => {
                let year = reference.year();
                let candidate = at_year(year);
                if candidate.unix_secs > reference.unix_secs + 86_400 {
                    at_year(year - 1)
                } else {
                    candidate
                }
            }
        }
    }
}

/// Resolves [`LogTime`]s like [`LogTime::resolve`], caching the calendar arithmetic of the last
/// date seen: consecutive log lines almost always share their date.
#[derive(Debug, Clone)]
pub struct TimeResolver {
    reference: Timestamp,
    reference_year: i32,
    default_offset_secs: i32,
    cached_date: Option<(Option<i32>, u8, u8)>,
    /// Day numbers of the cached date in its year and, for year-less dates, the year before.
    cached_days: (i64, i64),
}

impl TimeResolver {
    pub fn new(reference: Timestamp, default_offset_secs: i32) -> Self {
        Self {
            reference,
            reference_year: reference.year(),
            default_offset_secs,
            cached_date: None,
            cached_days: (0, 0),
        }
    }

    pub fn set_reference(&mut self, reference: Timestamp) {
        *self = Self::new(reference, self.default_offset_secs);
    }

    pub fn set_default_offset_secs(&mut self, offset: i32) {
        self.default_offset_secs = offset;
    }

    pub fn resolve(&mut self, t: &LogTime) -> Timestamp {
        let date = (t.year, t.month, t.day);
        if self.cached_date != Some(date) {
            let year = t.year.unwrap_or(self.reference_year);
            self.cached_days = (
                days_from_civil(year, t.month, t.day),
                days_from_civil(year - 1, t.month, t.day),
            );
            self.cached_date = Some(date);
        }
        let offset = t.offset_secs.unwrap_or(self.default_offset_secs) as i64;
        let second_of_day =
            t.hour as i64 * 3600 + t.minute as i64 * 60 + t.second.min(59) as i64 - offset;
        let mut secs = self.cached_days.0 * 86_400 + second_of_day;
        if t.year.is_none() && secs > self.reference.unix_secs + 86_400 {
            secs = self.cached_days.1 * 86_400 + second_of_day;
        }
        Timestamp {
            unix_secs: secs,
            nanos: t.nanos,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = year as i64 - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 11_016, 19_000, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn yearless_timestamp_rolls_back_over_new_year() {
        let t = LogTime {
            year: None,
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
            nanos: 0,
            offset_secs: None,
        };
        let reference = Timestamp {
            unix_secs: days_from_civil(2025, 1, 1) * 86_400 + 60,
            nanos: 0,
        };
        assert_eq!(
            t.resolve(reference, 0).to_rfc3339(),
            "2024-12-31T23:59:59.000000Z"
        );
    }

    #[test]
    fn cached_resolver_agrees_with_resolve() {
        let reference = Timestamp {
            unix_secs: days_from_civil(2025, 1, 1) * 86_400 + 3600,
            nanos: 0,
        };
        let mut r = TimeResolver::new(reference, 3600);
        for (year, month, day, hour) in [
            (None, 12, 31, 23),
            (None, 12, 31, 1),
            (None, 1, 1, 0),
            (None, 1, 1, 2),
            (None, 1, 2, 0),
            (Some(2020), 2, 29, 12),
            (None, 1, 1, 0),
        ] {
            let t = LogTime {
                year,
                month,
                day,
                hour,
                minute: 30,
                second: 15,
                nanos: 7,
                offset_secs: None,
            };
            assert_eq!(r.resolve(&t), t.resolve(reference, 3600), "{t:?}");
        }
    }

    #[test]
    fn offset_is_applied() {
        let t = LogTime {
            year: Some(2024),
            month: 10,
            day: 26,
            hour: 20,
            minute: 13,
            second: 50,
            nanos: 500_000_000,
            offset_secs: Some(7200),
        };
        assert_eq!(
            t.resolve(Timestamp::default(), 0).to_rfc3339(),
            "2024-10-26T18:13:50.500000Z"
        );
    }
}
