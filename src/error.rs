//! The crate's error kinds: what went wrong, in the terms a caller acts on (fix an argument, fix
//! a file, fix the data, refit the model). The C ABI maps each kind to its status code in one
//! place (`From<Error>` in `ffi`); its own checks of raw arguments (NULL pointers, negative
//! sizes) name their status directly.
//!
//! Layer 5. Owns: [`Error`] and [`ErrorKind`]. Imports only the error types of the layers below it that
//! it classifies (including `stats`).

use crate::io::container::ContainerError;
use crate::io::extxyz::AppendError;
use crate::model::ModelError;
use crate::stats::StatsError;
use crate::uq::UqError;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A caller passed something inconsistent: sizes, indices, a missing output.
    InvalidArgument,
    /// A file could not be read or written.
    Io,
    /// A file is not a valid model (wrong format, truncated, corrupt).
    Format,
    /// The input data are unusable (non-finite positions, overlapping atoms, unknown species).
    Data,
    /// The model lacks what was asked for (an uncertainty method it was not built with, a
    /// calibration it does not carry).
    Missing,
}

/// An error with its kind and a message that names what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
}

impl From<ContainerError> for Error {
    fn from(e: ContainerError) -> Self {
        let kind = match e {
            ContainerError::Io { .. } => ErrorKind::Io,
            _ => ErrorKind::Format,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<AppendError> for Error {
    fn from(e: AppendError) -> Self {
        let kind = match e {
            AppendError::Frame(_) => ErrorKind::Data,
            AppendError::Io { .. }
            | AppendError::Write { .. }
            | AppendError::IncompleteTail { .. }
            | AppendError::NotXyz { .. } => ErrorKind::Io,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Self {
        Error::new(ErrorKind::Data, e.to_string())
    }
}

impl From<StatsError> for Error {
    fn from(e: StatsError) -> Self {
        Error::new(ErrorKind::Data, e.to_string())
    }
}

impl From<UqError> for Error {
    fn from(e: UqError) -> Self {
        let kind = match e {
            UqError::Missing { .. } => ErrorKind::Missing,
            UqError::Data(_) | UqError::Numerical(_) | UqError::Model(_) => ErrorKind::Data,
        };
        Error::new(kind, e.to_string())
    }
}
