//! Appending one frame to an extended XYZ file shared by concurrent writers (the candidate files
//! of the LAMMPS plugin, through `aceuq_append_frame`): [`AppendFrame`] describes the frame,
//! [`append_frame`] formats it and appends it whole under an exclusive advisory lock, after
//! cutting off an incomplete last frame left by a killed writer (torn-tail repair).

use std::io;
use std::path::{Path, PathBuf};

use super::error::ExtxyzError;
use super::options::ReadOptions;
use super::reader::Reader;
use super::writer::frame_to_string;
use crate::structure::{InfoValue, PropData, Structure};

/// One frame to append with [`append_frame`]. Every per-atom slice holds one entry per atom
/// (`symbols.len()` atoms).
#[derive(Clone, Copy, Debug)]
pub struct AppendFrame<'a> {
    /// Lattice vectors as rows (Å).
    pub cell: [[f64; 3]; 3],
    /// Periodicity along each lattice vector.
    pub pbc: [bool; 3],
    /// Species name of every atom.
    pub symbols: &'a [&'a str],
    /// Positions (Å).
    pub positions: &'a [[f64; 3]],
    /// Atom IDs, written as the integer column `id`.
    pub ids: Option<&'a [i64]>,
    /// Extra real per-atom columns: name and one value per atom, in this order.
    pub columns: &'a [(&'a str, &'a [f64])],
    /// Comment-line entries as text: a value that parses as an integer is written as one, else
    /// one that parses as a real number as one, else as a string; `config_type` becomes
    /// [`Structure::config_type`].
    pub info: &'a [(&'a str, &'a str)],
}

impl AppendFrame<'_> {
    /// The frame as a [`Structure`] (what [`append_frame`] writes with the default
    /// [`super::WriteOptions`]).
    pub fn to_structure(&self) -> Structure {
        let mut s = Structure {
            cell: Some(self.cell),
            pbc: self.pbc,
            positions: self.positions.to_vec(),
            ..Default::default()
        };
        s.symbols = self.symbols.iter().map(|name| name.to_string()).collect();
        if let Some(ids) = self.ids {
            s.arrays.push((
                "id".into(),
                PropData::Int {
                    ncols: 1,
                    data: ids.to_vec(),
                },
            ));
        }
        for &(nm, v) in self.columns {
            s.set_real_array(nm, 1, v.to_vec());
        }
        for &(k, v) in self.info {
            let val = if let Ok(i) = v.parse::<i64>() {
                InfoValue::Int(i)
            } else if let Ok(f) = v.parse::<f64>() {
                InfoValue::Real(f)
            } else {
                InfoValue::Str(v.to_string())
            };
            if k == "config_type" {
                s.config_type = Some(v.to_string());
            } else {
                s.info.insert(k.to_string(), val);
            }
        }
        s
    }
}

/// Errors from [`append_frame`].
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The frame cannot be written as extended XYZ (see [`frame_to_string`]); nothing was
    /// written.
    #[error(transparent)]
    Frame(ExtxyzError),
    /// The file could not be opened, locked, repaired, written or synced.
    #[error("cannot append to {}: {source}", path.display())]
    Io {
        /// The file appended to, as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Append one frame to the extended XYZ file `path` (created if missing). The frame is formatted
/// in memory (default [`super::WriteOptions`]) and written with a single append and an fsync,
/// so readers see whole frames; a reader of a file whose writer was killed mid-write drops an
/// incomplete last frame, and the first append of a process to a file cuts such an incomplete
/// frame off before appending (so that it never ends up in the middle of the file). Appenders
/// hold an exclusive advisory lock on the file (`flock`), so several processes may append to
/// one file.
pub fn append_frame(path: &Path, frame: &AppendFrame<'_>) -> Result<(), AppendError> {
    let text =
        frame_to_string(&frame.to_structure(), &Default::default()).map_err(AppendError::Frame)?;
    append_whole(path, text.as_bytes()).map_err(|source| AppendError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Append bytes with one write on an O_APPEND descriptor, then fsync, holding an exclusive
/// advisory lock (so that appenders in other processes never interleave with the repair below).
///
/// The first append of a process to a file first repairs it: a writer killed mid-append leaves
/// an incomplete last frame, and appending after it would bury it mid-file, where every reader
/// fails. It is cut back to the last whole frame (what a reader drops anyway).
fn append_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    static CHECKED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    lock_exclusive(&f)?;
    let first = {
        let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
        let key = path.to_path_buf();
        let first = !checked.contains(&key);
        if first {
            checked.push(key);
        }
        first
    };
    if first {
        drop_incomplete_tail(path, &f)?;
    }
    f.write_all(bytes)?;
    f.sync_data()
    // The lock is released when `f` closes.
}

/// Exclusive advisory lock (`flock(LOCK_EX)`), released when the file is closed. Called
/// directly: `File::lock` needs Rust 1.89, above this crate's minimum.
#[cfg(unix)]
fn lock_exclusive(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn flock(fd: std::ffi::c_int, operation: std::ffi::c_int) -> std::ffi::c_int;
    }
    const LOCK_EX: std::ffi::c_int = 2;
    loop {
        // SAFETY: a valid open descriptor; flock has no other preconditions.
        if unsafe { flock(f.as_raw_fd(), LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(not(unix))]
fn lock_exclusive(_f: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// Truncate `path` (open as `f`) to its whole frames if its last frame is incomplete. Anything
/// that does not read as extended XYZ up to that tail is left alone.
pub(crate) fn drop_incomplete_tail(path: &Path, f: &std::fs::File) -> std::io::Result<()> {
    use std::io::BufRead;
    if f.metadata()?.len() == 0 {
        return Ok(());
    }
    let opts = ReadOptions {
        allow_truncated_tail: true,
        ..Default::default()
    };
    let Ok(mut reader) = Reader::open(path, opts) else {
        return Ok(());
    };
    // The incomplete frame starts right after the last whole one (the warning's line is where
    // the damage was found, which may be inside the frame).
    let mut line = 1;
    for frame in &mut reader {
        match frame {
            Ok(s) => line = s.origin.line + s.len() + 2,
            Err(_) => return Ok(()),
        }
    }
    match reader.dropped_tail() {
        Some(w) if w.line >= line => {}
        _ => return Ok(()),
    }
    // Byte offset of the start of 1-based line `line` (the incomplete frame's atom count).
    let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
    let (mut offset, mut buf) = (0u64, Vec::new());
    for _ in 1..line {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(());
        }
        offset += n as u64;
    }
    f.set_len(offset)?;
    f.sync_data()
}

#[cfg(test)]
mod tests;
