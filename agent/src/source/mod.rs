//! Log sources: following log files across rotation with crash-safe checkpoints.
//!
//! [`Tailer`] hands out complete [`Line`]s tagged with the [`FileKey`] of the file they came from
//! and the offset just after them. The consumer acknowledges a line in [`Checkpoints`] only after
//! it has durably handled it and then saves; a restarted tailer resumes every file at its
//! acknowledged offset, including files that were rotated (renamed, copied, compressed) meanwhile.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::path::Path;
//! use std::time::Duration;
//! use mailpulse_agent::source::{Checkpoints, TailConfig, Tailer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let state = Path::new("/var/lib/mailpulse/checkpoints.json");
//! let mut checkpoints = Checkpoints::load(state)?;
//! let mut tailer = Tailer::new(TailConfig::new(["/var/log/maillog"]), &checkpoints)?;
//! loop {
//!     let batch = tailer.next_batch(4096, Duration::from_millis(500))?;
//!     let mut last: HashMap<_, u64> = HashMap::new();
//!     for line in &batch {
//!         // ... handle line.text and make the result durable ...
//!         last.insert(line.file, line.end_offset);
//!     }
//!     for (file, end_offset) in last {
//!         checkpoints.ack(file, end_offset);
//!     }
//!     checkpoints.save(state)?;
//!     # break;
//! }
//! // Now and then (e.g. hourly): forget files rotated away long ago.
//! checkpoints.forget_missing(tailer.paths(), Duration::from_secs(7 * 86_400));
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariant: a line is never handed out before its newline has been written, and a
//! checkpoint never moves past a line the consumer has not acknowledged.

mod checkpoint;
mod fingerprint;
mod line;
mod line_buffer;
mod reader;
mod rotation;
mod tailer;

use std::io;
use std::path::PathBuf;

pub use checkpoint::{CHECKPOINT_VERSION, Checkpoint, Checkpoints, MAX_CHECKPOINTS};
pub use fingerprint::FileKey;
pub use line::{Line, StartPosition, TailStats};
pub use tailer::{TailConfig, Tailer};

/// Errors from tailing files and from the checkpoint state file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The tail configuration cannot work.
    #[error("invalid tail configuration: {0}")]
    InvalidConfig(String),
    /// A configured file exists but cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The checkpoint file exists but cannot be read.
    #[error("cannot read checkpoint file {path}: {source}")]
    CheckpointRead {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The checkpoint file is not valid JSON of the expected shape.
    #[error(
        "checkpoint file {path} is corrupt ({reason}); move it aside (Checkpoints::discard) to start over"
    )]
    CheckpointCorrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint file was written by a build with another layout.
    #[error(
        "checkpoint file {path} has version {found}, this build reads version {expected}; move it aside (Checkpoints::discard) to start over"
    )]
    CheckpointVersion {
        /// The state file.
        path: PathBuf,
        /// Version in the file.
        found: u64,
        /// Version this build reads.
        expected: u64,
    },
    /// Writing the checkpoint file failed; the previous state file is still intact.
    #[error("cannot write checkpoint file {path}: {source}")]
    CheckpointWrite {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}
