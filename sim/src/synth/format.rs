//! Text shapes shared by the generator: syslog timestamps, Postfix delay numbers, IPv4 addresses.

use std::fmt::{self, Write as _};

use super::TimestampStyle;
use mailpulse_agent::parse::time::civil_from_days;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats line timestamps, caching the per-second part (most lines share a second with the
/// previous one).
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    style: TimestampStyle,
    cached_secs: i64,
    cached: String,
}

impl Clock {
    pub(crate) fn new(style: TimestampStyle) -> Self {
        Self {
            style,
            cached_secs: i64::MIN,
            cached: String::new(),
        }
    }

    /// Appends the timestamp of `unix_micros` in this clock's style.
    pub(crate) fn write(&mut self, out: &mut String, unix_micros: i64) {
        let secs = unix_micros.div_euclid(1_000_000);
        let micros = unix_micros.rem_euclid(1_000_000);
        if secs != self.cached_secs {
            self.cached_secs = secs;
            self.cached.clear();
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let day_secs = secs.rem_euclid(86_400);
            let (hh, mm, ss) = (day_secs / 3600, day_secs / 60 % 60, day_secs % 60);
            let mon = MONTHS[usize::from(m - 1)];
            let _ = match self.style {
                TimestampStyle::Bsd => write!(self.cached, "{mon} {d:>2} {hh:02}:{mm:02}:{ss:02}"),
                TimestampStyle::Maillog => {
                    write!(self.cached, "{mon} {d:02} {hh:02}:{mm:02}:{ss:02}")
                }
                TimestampStyle::Rfc3339 => {
                    write!(self.cached, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}")
                }
            };
        }
        out.push_str(&self.cached);
        let _ = match self.style {
            TimestampStyle::Bsd => Ok(()),
            TimestampStyle::Maillog => write!(out, ".{micros:06}"),
            TimestampStyle::Rfc3339 => write!(out, ".{micros:06}+00:00"),
        };
    }
}

/// `Oct 26 18:13:50` for the `at …` part of anvil statistics (always BSD style, as anvil logs it).
pub(crate) fn bsd_time(unix_micros: i64) -> String {
    let mut s = String::with_capacity(16);
    Clock::new(TimestampStyle::Bsd).write(&mut s, unix_micros);
    s
}

/// A duration as Postfix prints `delay=` and `delays=` values: two significant digits, 10 ms
/// resolution, whole seconds from 10 s up (`0`, `0.05`, `0.35`, `1.2`, `42`, `3600`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delay(pub(crate) i64);

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.max(0);
        if us >= 10_000_000 {
            write!(f, "{}", us / 1_000_000)
        } else if us >= 1_000_000 {
            let tenths = us / 100_000;
            match tenths % 10 {
                0 => write!(f, "{}", tenths / 10),
                t => write!(f, "{}.{t}", tenths / 10),
            }
        } else if us >= 100_000 {
            let hundredths = us / 10_000;
            match hundredths % 10 {
                0 => write!(f, "0.{}", hundredths / 10),
                h => write!(f, "0.{}{h}", hundredths / 10),
            }
        } else if us >= 10_000 {
            write!(f, "0.0{}", us / 10_000)
        } else {
            f.write_str("0")
        }
    }
}

/// An IPv4 address packed in a `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ip(pub(crate) u32);

impl Ip {
    pub(crate) const fn new(a: u8, b: u8, c: u8, d: u8) -> Self {
        Self(u32::from_be_bytes([a, b, c, d]))
    }

    pub(crate) fn octets(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.octets();
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_look_like_postfix() {
        let cases = [
            (0, "0"),
            (4_000, "0"),
            (52_000, "0.05"),
            (350_000, "0.35"),
            (300_000, "0.3"),
            (1_230_000, "1.2"),
            (2_000_000, "2"),
            (42_700_000, "42"),
            (3_600_000_000, "3600"),
        ];
        for (us, want) in cases {
            assert_eq!(Delay(us).to_string(), want, "{us} µs");
        }
    }

    #[test]
    fn timestamp_styles() {
        let at = 1_728_238_430_123_456; // 2024-10-06T18:13:50.123456Z
        let render = |style| {
            let mut s = String::new();
            Clock::new(style).write(&mut s, at);
            s
        };
        assert_eq!(render(TimestampStyle::Bsd), "Oct  6 18:13:50");
        assert_eq!(render(TimestampStyle::Maillog), "Oct 06 18:13:50.123456");
        assert_eq!(
            render(TimestampStyle::Rfc3339),
            "2024-10-06T18:13:50.123456+00:00"
        );
    }
}
