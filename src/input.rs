//! Reading whole log files (plain, gzip or standard input) line by line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;
use mailpulse_agent::parse::Timestamp;
use mailpulse_agent::pipeline::LineProcessor;

/// The current time as a [`Timestamp`].
pub fn now() -> Timestamp {
    system_time(SystemTime::now())
}

fn system_time(t: SystemTime) -> Timestamp {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => Timestamp {
            unix_secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(_) => Timestamp::default(),
    }
}

/// Calls `f` for every line of `path` (`-` = stdin; gzip detected by its magic bytes), after
/// pointing the processor's year reference at the file's modification time.
pub fn for_each_line(
    path: &Path,
    processor: &mut LineProcessor,
    mut f: impl FnMut(&mut LineProcessor, &str),
) -> io::Result<()> {
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        processor.set_reference(now());
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(path)?;
        let mtime = file
            .metadata()?
            .modified()
            .map(system_time)
            .unwrap_or_else(|_| now());
        processor.set_reference(mtime);
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let is_gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead> = if is_gzip {
        Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(reader),
        ))
    } else {
        Box::new(reader)
    };
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        match std::str::from_utf8(&buf) {
            Ok(line) => f(processor, line),
            Err(_) => f(processor, &String::from_utf8_lossy(&buf)),
        }
    }
}
