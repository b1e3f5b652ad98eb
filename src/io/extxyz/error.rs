//! Errors and warnings of the extended XYZ reader and writer: [`ExtxyzError`] (with the file and
//! line it refers to) and the non-fatal [`Warning`] passed to [`WarningCallback`].

use std::io;
use std::sync::Arc;

#[cfg(doc)]
use super::ReadOptions;
#[cfg(doc)]
use crate::structure::Origin;

/// Errors from reading or writing extended XYZ.
#[derive(Debug, thiserror::Error)]
pub enum ExtxyzError {
    /// Malformed or inconsistent content at a known line.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// File (or stream name) being read.
        file: String,
        /// 1-based line number of the offending line.
        line: usize,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// The input ended inside a frame (fewer atom lines than the count, or no comment line).
    /// The message says how to repair the file; a program can instead set
    /// [`ReadOptions::allow_truncated_tail`] to drop the incomplete frame.
    #[error(
        "{file}:{line}: the frame starting here declares {expected} atoms but the file ends \
         after {found} atom line(s); the file was cut off (for example by a killed run): {}",
        repair_hint(*line)
    )]
    Truncated {
        /// File (or stream name) being read.
        file: String,
        /// 1-based line of the incomplete frame's atom count.
        line: usize,
        /// Atom count the frame declared.
        expected: u64,
        /// Complete atom lines actually present.
        found: u64,
    },
    /// An operating-system error while reading or writing.
    #[error("{file}: {context}: {source}")]
    Io {
        /// File (or stream name) involved.
        file: String,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A structure that cannot be written as extended XYZ (or could not be read back unchanged).
    #[error("cannot write {origin}: {message}")]
    Write {
        /// Where the structure came from ([`Origin`] display).
        origin: String,
        /// What is wrong and what to do about it.
        message: String,
    },
}

/// What to do about a file whose last frame, starting at 1-based `line`, is incomplete: the
/// frames before it are whole and can be kept.
pub(crate) fn repair_hint(line: usize) -> String {
    if line > 1 {
        format!(
            "regenerate it, or delete the incomplete last frame (line {line} to the end of the \
             file) to keep the whole frames before it, for example with `head -n {} FILE > \
             FIXED.xyz`",
            line - 1
        )
    } else {
        "regenerate it (it holds no whole frame)".to_string()
    }
}

impl ExtxyzError {
    /// The 1-based line the error refers to, for errors raised while reading.
    pub fn line(&self) -> Option<usize> {
        match self {
            ExtxyzError::Parse { line, .. } | ExtxyzError::Truncated { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The file (or stream name) the error refers to, if any.
    pub fn file(&self) -> Option<&str> {
        match self {
            ExtxyzError::Parse { file, .. }
            | ExtxyzError::Truncated { file, .. }
            | ExtxyzError::Io { file, .. } => Some(file),
            ExtxyzError::Write { .. } => None,
        }
    }
}

/// A non-fatal problem found while reading (currently: a dropped truncated last frame).
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// File (or stream name) being read.
    pub file: String,
    /// 1-based line the warning refers to.
    pub line: usize,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: warning: {}", self.file, self.line, self.message)
    }
}

/// Callback receiving reader warnings; shared so that [`ReadOptions`] stays cheap to clone.
pub type WarningCallback = Arc<dyn Fn(&Warning) + Send + Sync>;
