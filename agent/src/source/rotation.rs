//! Rotated siblings of a live log file (`maillog.1`, `maillog.2.gz`, `maillog-20241026`, ...).
//!
//! logrotate and newsyslog name old generations after the live file; knowing them lets the tailer
//! backfill history, find a rotated file again after a restart, and find the copy made by
//! copytruncate.

use std::cmp::Ordering;
use std::io;
use std::path::{Path, PathBuf};

/// One rotated generation of a live file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sibling {
    pub path: PathBuf,
    pub gzip: bool,
    rank: Rank,
}

/// Position of a generation in the rotation order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rank {
    /// `-YYYYMMDD` style (logrotate `dateext`): a larger date is newer.
    Dated(String),
    /// `.N` style: a larger number is older.
    Numbered(u64),
}

/// Rotated siblings of `live` in its directory, oldest first. A missing directory yields none.
pub(crate) fn rotated_siblings(live: &Path) -> io::Result<Vec<Sibling>> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut siblings = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(candidate) = file_name.to_str() else {
            continue;
        };
        if let Some((gzip, rank)) = parse_sibling_name(name, candidate) {
            siblings.push(Sibling {
                path: live.with_file_name(candidate),
                gzip,
                rank,
            });
        }
    }
    siblings.sort_by(oldest_first);
    Ok(siblings)
}

/// Recognises `<live>.N`, `<live>.N.gz`, `<live>-DATE`, `<live>-DATE.gz`.
fn parse_sibling_name(live: &str, candidate: &str) -> Option<(bool, Rank)> {
    let rest = candidate.strip_prefix(live)?;
    let (rest, gzip) = match rest.strip_suffix(".gz") {
        Some(stripped) => (stripped, true),
        None => (rest, false),
    };
    if let Some(number) = rest.strip_prefix('.') {
        // Short digit runs are generation numbers; long ones are dates (`maillog.20241026`).
        if !number.is_empty() && number.len() <= 6 && number.bytes().all(|b| b.is_ascii_digit()) {
            return number.parse().ok().map(|n| (gzip, Rank::Numbered(n)));
        }
        return is_date(number).then(|| (gzip, Rank::Dated(number.to_owned())));
    }
    let date = rest.strip_prefix('-')?;
    is_date(date).then(|| (gzip, Rank::Dated(date.to_owned())))
}

fn is_date(s: &str) -> bool {
    s.len() >= 6
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn oldest_first(a: &Sibling, b: &Sibling) -> Ordering {
    let by_rank = match (&a.rank, &b.rank) {
        (Rank::Dated(x), Rank::Dated(y)) => x.cmp(y),
        (Rank::Numbered(x), Rank::Numbered(y)) => y.cmp(x),
        (Rank::Dated(_), Rank::Numbered(_)) => Ordering::Less,
        (Rank::Numbered(_), Rank::Dated(_)) => Ordering::Greater,
    };
    // Same generation both plain and compressed: the compressed one was rotated first.
    by_rank.then_with(|| b.gzip.cmp(&a.gzip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_rotation_names() {
        assert_eq!(
            parse_sibling_name("maillog", "maillog.1"),
            Some((false, Rank::Numbered(1)))
        );
        assert_eq!(
            parse_sibling_name("maillog", "maillog.12.gz"),
            Some((true, Rank::Numbered(12)))
        );
        assert_eq!(
            parse_sibling_name("maillog", "maillog-20241026"),
            Some((false, Rank::Dated("20241026".into())))
        );
        assert_eq!(
            parse_sibling_name("maillog", "maillog-20241026.gz"),
            Some((true, Rank::Dated("20241026".into())))
        );
        for other in [
            "maillog",
            "maillog.old",
            "maillog.1.bak",
            "maillog2",
            "mail.err",
            "maillog.gz",
        ] {
            assert_eq!(parse_sibling_name("maillog", other), None, "{other}");
        }
    }

    #[test]
    fn orders_siblings_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "maillog.1",
            "maillog.3.gz",
            "maillog.2.gz",
            "maillog",
            "other.1",
        ] {
            std::fs::write(dir.path().join(name), b"x\n").unwrap();
        }
        let names: Vec<String> = rotated_siblings(&dir.path().join("maillog"))
            .unwrap()
            .into_iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["maillog.3.gz", "maillog.2.gz", "maillog.1"]);
    }
}
