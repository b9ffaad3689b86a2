//! Syslog envelope parsing: timestamp, host, program, pid and message of one log line.
//!
//! Supported: BSD syslog (RFC 3164, space-padded day, optional year, optional `<PRI>`), RFC 3339
//! timestamps as written by rsyslog, RFC 5424, Postfix's own `maillog_file` format and journald's
//! `journalctl -o json` export. Parsing is zero-copy except where journald JSON escapes force a copy.

use std::borrow::Cow;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while_m_n, take_while1},
    character::complete::{char, digit1},
    combinator::opt,
};
use serde::{Deserialize, Serialize};

use super::time::{LogTime, civil_from_days};

/// Log line format of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Detect from the first parseable line of each file.
    #[default]
    Auto,
    Bsd,
    Rfc3339,
    Rfc5424,
    /// Postfix `maillog_file` (BSD-like, zero-padded day, microseconds).
    Maillog,
    JournalJson,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Self::Auto,
            "bsd" => Self::Bsd,
            "rfc3339" => Self::Rfc3339,
            "rfc5424" => Self::Rfc5424,
            "maillog" => Self::Maillog,
            "journal-json" => Self::JournalJson,
            other => {
                return Err(format!(
                    "unknown log format {other:?} (expected auto, bsd, rfc3339, rfc5424, maillog or journal-json)"
                ));
            }
        })
    }
}

/// The envelope of one log line.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogLine<'a> {
    pub time: LogTime,
    pub host: Cow<'a, str>,
    /// Program as logged, e.g. `postfix/smtpd`, `postfix-out/smtp`, `postfix/submission/smtpd`.
    pub program: Cow<'a, str>,
    pub pid: Option<u32>,
    pub message: Cow<'a, str>,
}

/// Why an envelope could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("empty line")]
    Empty,
    #[error("line does not match the {0:?} format")]
    Format(LogFormat),
    #[error("no known log format matches the line")]
    Unknown,
    #[error("journal entry: {0}")]
    Journal(String),
}

/// Parses lines of one file; with [`LogFormat::Auto`] the format is detected on the first line
/// that parses and reused, falling back to detection again for lines that do not match it.
#[derive(Debug, Clone)]
pub struct EnvelopeParser {
    configured: LogFormat,
    detected: Option<LogFormat>,
    last_time: TimeCache,
}

impl EnvelopeParser {
    pub fn new(format: LogFormat) -> Self {
        Self {
            configured: format,
            detected: None,
            last_time: TimeCache::default(),
        }
    }

    /// The format in use: the configured one, or what auto-detection found so far.
    pub fn format(&self) -> LogFormat {
        match self.configured {
            LogFormat::Auto => self.detected.unwrap_or(LogFormat::Auto),
            f => f,
        }
    }

    pub fn parse<'a>(&mut self, line: &'a str) -> Result<SyslogLine<'a>, EnvelopeError> {
        let line = trim_line_end(line);
        if is_blank(line) {
            return Err(EnvelopeError::Empty);
        }
        if self.configured != LogFormat::Auto {
            return self.parse_trimmed(self.configured, line);
        }
        if let Some(f) = self.detected
            && let Ok(l) = self.parse_trimmed(f, line)
        {
            return Ok(l);
        }
        for f in detection_order(line) {
            if let Ok(l) = self.parse_trimmed(f, line) {
                self.detected = Some(f);
                return Ok(l);
            }
        }
        Err(EnvelopeError::Unknown)
    }

    /// [`parse_as`] on a line without its line end, reusing the timestamp of the previous line
    /// when this one starts with the same text.
    #[inline]
    fn parse_trimmed<'a>(
        &mut self,
        format: LogFormat,
        line: &'a str,
    ) -> Result<SyslogLine<'a>, EnvelopeError> {
        let (family, i) = match format {
            LogFormat::Bsd | LogFormat::Maillog => (TimeFamily::Bsd, after_pri(line)),
            LogFormat::Rfc3339 => (TimeFamily::Rfc3339, after_pri(line)),
            _ => return parse_as(format, line),
        };
        let err = |_| EnvelopeError::Format(format);
        let (rest, time) = match self.last_time.lookup(family, i) {
            Some(hit) => hit,
            None => {
                let (rest, time) = family.parse(i).map_err(err)?;
                self.last_time.store(family, i, rest, time);
                (rest, time)
            }
        };
        tag_and_message(rest, time).map(|(_, l)| l).map_err(err)
    }
}

/// The timestamp grammars of the formats that start with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFamily {
    /// BSD syslog and Postfix `maillog_file`.
    Bsd,
    Rfc3339,
}

impl TimeFamily {
    fn parse(self, i: &str) -> IResult<&str, LogTime> {
        match self {
            Self::Bsd => bsd_time(i),
            Self::Rfc3339 => rfc3339_time(i),
        }
    }
}

/// The timestamp text of the last line and what it parsed to. A busy log has hundreds of lines
/// per second, all starting with the same text: they skip the timestamp grammar.
#[derive(Debug, Clone)]
struct TimeCache {
    entry: Option<(TimeFamily, LogTime)>,
    len: usize,
    text: [u8; TimeCache::MAX_LEN],
}

impl Default for TimeCache {
    fn default() -> Self {
        Self {
            entry: None,
            len: 0,
            text: [0; Self::MAX_LEN],
        }
    }
}

impl TimeCache {
    /// Longest timestamp text kept (RFC 3339 with nanoseconds and an offset has 35 bytes).
    const MAX_LEN: usize = 40;

    /// The rest of `i` and its timestamp, when `i` starts with the cached timestamp text and what
    /// follows cannot change how that text parses. The grammars look past the text only for
    /// more fraction digits, an offset, or (BSD) a year after the time: a space followed by
    /// anything but a digit rules all of these out; other lines are parsed in full.
    fn lookup<'a>(&self, family: TimeFamily, i: &'a str) -> Option<(&'a str, LogTime)> {
        let (cached, time) = self.entry?;
        let (b, n) = (i.as_bytes(), self.len);
        if cached != family || b.get(..n)? != self.text.get(..n)? {
            return None;
        }
        match b.get(n..n + 2)? {
            // The text and the space after it are ASCII: `n` is a char boundary.
            [b' ', c] if !c.is_ascii_digit() => Some((i.get(n..)?, time)),
            _ => None,
        }
    }

    /// Remembers that `i` up to `rest` parsed to `time`.
    fn store(&mut self, family: TimeFamily, i: &str, rest: &str, time: LogTime) {
        let n = i.len() - rest.len();
        match (self.text.get_mut(..n), i.as_bytes().get(..n)) {
            (Some(slot), Some(text)) => {
                slot.copy_from_slice(text);
                self.len = n;
                self.entry = Some((family, time));
            }
            _ => self.entry = None,
        }
    }
}

/// `line` without its trailing line end (`\n`, `\r\n`, any run of both).
fn trim_line_end(line: &str) -> &str {
    let b = line.as_bytes();
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    // Only ASCII bytes were dropped.
    line.get(..end).unwrap_or(line)
}

/// `line.trim().is_empty()`, deciding on the first byte when it is ASCII and not whitespace.
fn is_blank(line: &str) -> bool {
    match line.as_bytes().first() {
        None => true,
        Some(&b) if b.is_ascii() && !matches!(b, b'\t'..=b'\r' | b' ') => false,
        _ => line.trim().is_empty(),
    }
}

fn detection_order(line: &str) -> [LogFormat; 4] {
    let b = line.as_bytes();
    if b.first() == Some(&b'{') {
        [
            LogFormat::JournalJson,
            LogFormat::Rfc5424,
            LogFormat::Rfc3339,
            LogFormat::Bsd,
        ]
    } else if b.first().is_some_and(u8::is_ascii_digit) {
        [
            LogFormat::Rfc3339,
            LogFormat::Bsd,
            LogFormat::Rfc5424,
            LogFormat::JournalJson,
        ]
    } else if b.first() == Some(&b'<') && after_pri(line).starts_with("1 ") {
        [
            LogFormat::Rfc5424,
            LogFormat::Rfc3339,
            LogFormat::Bsd,
            LogFormat::JournalJson,
        ]
    } else {
        [
            LogFormat::Bsd,
            LogFormat::Rfc3339,
            LogFormat::Rfc5424,
            LogFormat::JournalJson,
        ]
    }
}

/// Parses one line in the given format (`Auto` detects for this line only).
pub fn parse_as(format: LogFormat, line: &str) -> Result<SyslogLine<'_>, EnvelopeError> {
    let line = trim_line_end(line);
    let res = match format {
        LogFormat::Auto => return EnvelopeParser::new(LogFormat::Auto).parse(line),
        LogFormat::Bsd | LogFormat::Maillog => bsd_line(after_pri(line)),
        LogFormat::Rfc3339 => rfc3339_line(after_pri(line)),
        LogFormat::Rfc5424 => rfc5424_line(line),
        LogFormat::JournalJson => return journal_line(line),
    };
    res.map(|(_, l)| l)
        .map_err(|_| EnvelopeError::Format(format))
}

#[inline]
fn after_pri(line: &str) -> &str {
    let Some(rest) = line.strip_prefix('<') else {
        return line;
    };
    match rest.find('>') {
        Some(i) if (1..=3).contains(&i) && rest[..i].bytes().all(|b| b.is_ascii_digit()) => {
            &rest[i + 1..]
        }
        _ => line,
    }
}

fn verify_error(i: &str) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Verify))
}

/// Exactly `n` (≤ 9) ASCII digits as a number. Hand-rolled: this runs several times per line.
fn uint<T: TryFrom<u32>>(n: usize) -> impl Fn(&str) -> IResult<&str, T> {
    move |i: &str| {
        let b = i.as_bytes();
        if b.len() < n || n > 9 {
            return Err(verify_error(i));
        }
        let mut v: u32 = 0;
        for &c in &b[..n] {
            if !c.is_ascii_digit() {
                return Err(verify_error(i));
            }
            v = v * 10 + u32::from(c - b'0');
        }
        // The first `n` bytes are ASCII digits, so `n` is a char boundary.
        T::try_from(v)
            .map(|v| (&i[n..], v))
            .map_err(|_| verify_error(i))
    }
}

fn month(i: &str) -> IResult<&str, u8> {
    let b = i.as_bytes();
    if b.len() < 3 {
        return Err(verify_error(i));
    }
    let m = match [b[0] | 0x20, b[1] | 0x20, b[2] | 0x20] {
        [b'j', b'a', b'n'] => 1,
        [b'f', b'e', b'b'] => 2,
        [b'm', b'a', b'r'] => 3,
        [b'a', b'p', b'r'] => 4,
        [b'm', b'a', b'y'] => 5,
        [b'j', b'u', b'n'] => 6,
        [b'j', b'u', b'l'] => 7,
        [b'a', b'u', b'g'] => 8,
        [b's', b'e', b'p'] => 9,
        [b'o', b'c', b't'] => 10,
        [b'n', b'o', b'v'] => 11,
        [b'd', b'e', b'c'] => 12,
        _ => return Err(verify_error(i)),
    };
    // Three ASCII letters matched, so 3 is a char boundary.
    Ok((&i[3..], m))
}

/// `hh:mm:ss[.fraction]`
fn clock(i: &str) -> IResult<&str, (u8, u8, u8, u32)> {
    let b = i.as_bytes();
    let two = |p: usize| match (b.get(p), b.get(p + 1)) {
        (Some(&x), Some(&y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
            Some((x - b'0') * 10 + (y - b'0'))
        }
        _ => None,
    };
    let (Some(h), Some(b':'), Some(m), Some(b':'), Some(s)) =
        (two(0), b.get(2), two(3), b.get(5), two(6))
    else {
        return Err(verify_error(i));
    };
    if h > 23 || m > 59 || s > 60 {
        return Err(verify_error(i));
    }
    // Eight ASCII bytes matched: 8 is a char boundary.
    let rest = &i[8..];
    let (rest, nanos) = match rest.as_bytes().first() {
        Some(b'.' | b',') => {
            let (r, d) = digit1(&rest[1..])?;
            (r, fraction_nanos(d))
        }
        _ => (rest, 0),
    };
    Ok((rest, (h, m, s, nanos)))
}

fn fraction_nanos(digits: &str) -> u32 {
    let mut n: u32 = 0;
    for b in digits.bytes().take(9) {
        n = n * 10 + u32::from(b - b'0');
    }
    let len = digits.len().min(9) as u32;
    n * 10u32.pow(9 - len)
}

/// BSD timestamp: `Oct  6 18:13:50`, `Oct 06 18:13:50.123456`, `Oct  6 2024 18:13:50`.
fn bsd_time(i: &str) -> IResult<&str, LogTime> {
    let (rest, month) = month(i)?;
    let b = rest.as_bytes();
    // One or more spaces, a 1- or 2-digit day, a space ("Oct  6", "Oct 06", "Oct 6").
    let spaces = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    let digits = b[spaces..]
        .iter()
        .take(3)
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(0);
    if spaces == 0 || !(1..=2).contains(&digits) || b.get(spaces + digits) != Some(&b' ') {
        return Err(verify_error(i));
    }
    let day = b[spaces..spaces + digits]
        .iter()
        .fold(0u8, |d, c| d * 10 + (c - b'0'));
    if !(1..=31).contains(&day) {
        return Err(verify_error(i));
    }
    // Everything consumed so far is ASCII.
    let rest = &rest[spaces + digits + 1..];
    let (rest, year) = match uint::<i32>(4)(rest) {
        Ok((r, y)) if r.starts_with(' ') => (&r[1..], Some(y)),
        _ => (rest, None),
    };
    let (rest, (hour, minute, second, nanos)) = clock(rest)?;
    let (rest, year) = match rest.strip_prefix(' ').map(uint::<i32>(4)) {
        Some(Ok((r, y))) if year.is_none() && !r.starts_with(|c: char| c.is_ascii_digit()) => {
            (r, Some(y))
        }
        _ => (rest, year),
    };
    Ok((
        rest,
        LogTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos,
            offset_secs: None,
        },
    ))
}

/// RFC 3339: `2024-10-26T18:13:50.123456+02:00` (also `Z`, and a space instead of `T`).
fn rfc3339_time(i: &str) -> IResult<&str, LogTime> {
    let (i, (year, _, month, _, day)) = (
        uint::<i32>(4),
        char('-'),
        uint::<u8>(2),
        char('-'),
        uint::<u8>(2),
    )
        .parse(i)?;
    let (i, _) = alt((char('T'), char('t'), char(' '))).parse(i)?;
    let (i, (hour, minute, second, nanos)) = clock(i)?;
    let (i, offset) = opt(alt((
        |i| char('Z')(i).map(|(i, _)| (i, 0i32)),
        |i| char('z')(i).map(|(i, _)| (i, 0i32)),
        |i| {
            let (i, (sign, h, _, m)) = (
                alt((char('+'), char('-'))),
                uint::<i32>(2),
                opt(char(':')),
                uint::<i32>(2),
            )
                .parse(i)?;
            let secs = h * 3600 + m * 60;
            Ok((i, if sign == '-' { -secs } else { secs }))
        },
    )))
    .parse(i)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    Ok((
        i,
        LogTime {
            year: Some(year),
            month,
            day,
            hour,
            minute,
            second,
            nanos,
            offset_secs: offset,
        },
    ))
}

fn is_token(c: char) -> bool {
    !c.is_whitespace()
}

/// `host program[pid]: message` (pid optional, `program:` alone accepted).
#[inline(always)]
fn tag_and_message<'a>(i: &'a str, time: LogTime) -> IResult<&'a str, SyslogLine<'a>> {
    let b = i.as_bytes();
    // All positions below stop at ASCII bytes (or the end), so they are char boundaries.
    let host_start = skip_spaces(b, 0);
    if host_start == 0 {
        return Err(verify_error(i));
    }
    let host_end = scan_until(b, host_start, ENDS_HOST);
    let prog_start = skip_spaces(b, host_end);
    if host_end == host_start || prog_start == host_end {
        return Err(verify_error(i));
    }
    let prog_end = scan_until(b, prog_start, ENDS_PROGRAM);
    if prog_end == prog_start {
        return Err(verify_error(i));
    }
    let mut p = prog_end;
    let mut pid = None;
    if b.get(p) == Some(&b'[') {
        let (digits, value) = pid_digits(b.get(p + 1..).unwrap_or_default());
        p += 1 + digits;
        match value {
            Some(v) if digits > 0 && b.get(p) == Some(&b']') => pid = Some(v),
            _ => return Err(verify_error(i)),
        }
        p += 1;
    }
    if b.get(p) != Some(&b':') {
        return Err(verify_error(i));
    }
    let (Some(host), Some(program), Some(rest)) = (
        i.get(host_start..host_end),
        i.get(prog_start..prog_end),
        i.get(p + 1..),
    ) else {
        return Err(verify_error(i));
    };
    let message = rest.strip_prefix(' ').unwrap_or(rest);
    Ok((
        "",
        SyslogLine {
            time,
            host: Cow::Borrowed(host),
            program: Cow::Borrowed(program),
            pid,
            message: Cow::Borrowed(message),
        },
    ))
}

/// Byte classes of [`scan_until`]: the ASCII whitespace that ends a host name, and what else ends
/// a program name.
const ENDS_HOST: u8 = 1;
const ENDS_PROGRAM: u8 = 2;

const TAG_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_whitespace() {
            ENDS_HOST | ENDS_PROGRAM
        } else if b == b'[' || b == b':' {
            ENDS_PROGRAM
        } else {
            0
        };
        c += 1;
    }
    t
};

/// The position of the first byte from `p` on whose class has a bit of `ends` (or the end).
///
/// Eight bytes at a time: every byte that ends a host or program is below `!` or is `:` or `[`,
/// so a word without such a byte is skipped whole, and the first candidate is checked against
/// the table.
#[inline(always)]
fn scan_until(b: &[u8], mut p: usize, ends: u8) -> usize {
    const LANES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = LANES * 0x80;
    // `0x80` in the lanes below `n` (ASCII only: `!v` drops bytes with the high bit set); the
    // lowest flagged lane is always a real one, borrows only run upwards.
    let below = |v: u64, n: u8| v.wrapping_sub(LANES * u64::from(n)) & !v & HIGH;
    while let Some(chunk) = b.get(p..p + 8) {
        let w = chunk.try_into().map_or(0, u64::from_le_bytes);
        // Whitespace is below `!`; `:` and `[` are the lanes that XOR to zero.
        let colon = w ^ (LANES * u64::from(b':'));
        let bracket = w ^ (LANES * u64::from(b'['));
        let hits = below(w, b'!') | below(colon, 1) | below(bracket, 1);
        if hits == 0 {
            p += 8;
            continue;
        }
        let q = p + (hits.trailing_zeros() / 8) as usize;
        if TAG_CLASS[usize::from(b[q])] & ends != 0 {
            return q;
        }
        p = q + 1;
    }
    while let Some(&c) = b.get(p) {
        if TAG_CLASS[usize::from(c)] & ends != 0 {
            break;
        }
        p += 1;
    }
    p
}

/// The position of the first byte from `p` on that is not a space (or the end).
#[inline(always)]
fn skip_spaces(b: &[u8], mut p: usize) -> usize {
    while b.get(p) == Some(&b' ') {
        p += 1;
    }
    p
}

/// The leading ASCII digits of `b`: their count, and their value when it fits a pid (`u32`).
fn pid_digits(b: &[u8]) -> (usize, Option<u32>) {
    let mut v: u64 = 0;
    let mut n = 0;
    while let Some(&c) = b.get(n) {
        if !c.is_ascii_digit() {
            break;
        }
        // Past `u32::MAX` the value stays there: it is no pid, however many digits follow.
        if v <= u64::from(u32::MAX) {
            v = v * 10 + u64::from(c - b'0');
        }
        n += 1;
    }
    (n, u32::try_from(v).ok())
}

fn bsd_line(i: &str) -> IResult<&str, SyslogLine<'_>> {
    let (i, time) = bsd_time(i)?;
    tag_and_message(i, time)
}

fn rfc3339_line(i: &str) -> IResult<&str, SyslogLine<'_>> {
    let (i, time) = rfc3339_time(i)?;
    tag_and_message(i, time)
}

/// `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`
fn rfc5424_line(line: &str) -> IResult<&str, SyslogLine<'_>> {
    let (i, _) = (
        char('<'),
        take_while_m_n(1, 3, |c: char| c.is_ascii_digit()),
        char('>'),
    )
        .parse(line)?;
    let (i, _) = tag("1 ")(i)?;
    let (i, time) = rfc3339_time(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, host) = take_while1(is_token).parse(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, app) = take_while1(is_token).parse(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, procid) = take_while1(is_token).parse(i)?;
    let (i, _) = char(' ')(i)?;
    let (i, _msgid) = take_while1(is_token).parse(i)?;
    let (i, _) = char(' ')(i)?;
    let i = skip_structured_data(i)?;
    let message = i.strip_prefix(' ').unwrap_or(i);
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    Ok((
        "",
        SyslogLine {
            time,
            host: Cow::Borrowed(host),
            program: Cow::Borrowed(if app == "-" { "" } else { app }),
            pid: procid.parse().ok(),
            message: Cow::Borrowed(message),
        },
    ))
}

/// Skips `-` or one or more `[id k="v" ...]` elements, honouring `\]` and `\"` escapes.
fn skip_structured_data(i: &str) -> Result<&str, nom::Err<nom::error::Error<&str>>> {
    if let Some(rest) = i.strip_prefix('-') {
        return Ok(rest);
    }
    let err = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Verify));
    let bytes = i.as_bytes();
    let mut pos = 0;
    if bytes.first() != Some(&b'[') {
        return Err(err());
    }
    while bytes.get(pos) == Some(&b'[') {
        let mut in_quotes = false;
        pos += 1;
        loop {
            match bytes.get(pos) {
                None => return Err(err()),
                Some(b'\\') if in_quotes => pos += 2,
                Some(b'"') => {
                    in_quotes = !in_quotes;
                    pos += 1;
                }
                Some(b']') if !in_quotes => {
                    pos += 1;
                    break;
                }
                Some(_) => pos += 1,
            }
        }
    }
    // `pos` always lands on a char boundary: it only stops right after an ASCII `]`.
    i.get(pos..).ok_or_else(err)
}

#[derive(Deserialize)]
struct JournalEntry<'a> {
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow)]
    realtime_usecs: Option<Cow<'a, str>>,
    #[serde(rename = "_HOSTNAME", borrow)]
    hostname: Option<Cow<'a, str>>,
    #[serde(rename = "SYSLOG_IDENTIFIER", borrow)]
    identifier: Option<Cow<'a, str>>,
    #[serde(rename = "_PID", borrow)]
    pid: Option<Cow<'a, str>>,
    #[serde(rename = "SYSLOG_PID", borrow)]
    syslog_pid: Option<Cow<'a, str>>,
    #[serde(rename = "MESSAGE", borrow)]
    message: Option<JournalMessage<'a>>,
}

/// journald writes MESSAGE as an array of bytes when it is not valid UTF-8.
#[derive(Deserialize)]
#[serde(untagged)]
enum JournalMessage<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Bytes(Vec<u8>),
}

fn journal_line(line: &str) -> Result<SyslogLine<'_>, EnvelopeError> {
    let entry: JournalEntry<'_> =
        serde_json::from_str(line).map_err(|e| EnvelopeError::Journal(e.to_string()))?;
    let micros: i64 = entry
        .realtime_usecs
        .as_deref()
        .ok_or_else(|| EnvelopeError::Journal("no __REALTIME_TIMESTAMP".into()))?
        .parse()
        .map_err(|_| EnvelopeError::Journal("__REALTIME_TIMESTAMP is not a number".into()))?;
    let message = match entry
        .message
        .ok_or_else(|| EnvelopeError::Journal("no MESSAGE".into()))?
    {
        JournalMessage::Text(t) => t,
        JournalMessage::Bytes(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    };
    let secs = micros.div_euclid(1_000_000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let day_secs = secs.rem_euclid(86_400);
    Ok(SyslogLine {
        time: LogTime {
            year: Some(year),
            month,
            day,
            hour: (day_secs / 3600) as u8,
            minute: (day_secs / 60 % 60) as u8,
            second: (day_secs % 60) as u8,
            nanos: (micros.rem_euclid(1_000_000) * 1000) as u32,
            offset_secs: Some(0),
        },
        host: entry.hostname.unwrap_or(Cow::Borrowed("")),
        program: entry.identifier.unwrap_or(Cow::Borrowed("")),
        pid: entry.syslog_pid.or(entry.pid).and_then(|p| p.parse().ok()),
        message,
    })
}

/// How a syslog program name splits into Postfix instance and service.
///
/// `postfix/smtpd` → instance `postfix`, service `smtpd`; `postfix-out/smtp` → `postfix-out`,
/// `smtp`; `postfix/submission/smtpd` → instance `postfix`, sub-service `submission`, service `smtpd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramName<'a> {
    /// Everything before the last `/` (Postfix's `syslog_name`), e.g. `postfix/submission`.
    pub syslog_name: &'a str,
    /// The first path component: the Postfix instance the queue belongs to.
    pub instance: &'a str,
    /// The last path component: the daemon (`smtpd`, `qmgr`, ...).
    pub service: &'a str,
}

impl<'a> ProgramName<'a> {
    pub fn split(program: &'a str) -> Self {
        // One byte scan for the first and the last `/`: program names are short, and this runs
        // on every line.
        let (mut first, mut last) = (None, None);
        for (i, &c) in program.as_bytes().iter().enumerate() {
            if c == b'/' {
                first = first.or(Some(i));
                last = Some(i);
            }
        }
        match first.zip(last) {
            Some((first, slash)) => {
                // `/` is ASCII: both sides of it are char boundaries.
                Self {
                    syslog_name: program.get(..slash).unwrap_or_default(),
                    instance: program.get(..first).unwrap_or_default(),
                    service: program.get(slash + 1..).unwrap_or_default(),
                }
            }
            None => Self {
                syslog_name: "",
                instance: program,
                service: program,
            },
        }
    }
}

#[cfg(test)]
mod tests;
