//! Appending one frame to an extended XYZ file shared by concurrent writers (the candidate files
//! of the LAMMPS fix `ace/uq/watch`, through `aceuq_append_frame`): [`AppendFrame`] describes the
//! frame, [`append_frame`] formats it and appends it.
//!
//! # What an append guarantees
//!
//! - **Whole frames or nothing.** The frame is formatted in memory and written with one append
//!   and an fsync, holding an exclusive advisory lock on the file (`flock`), so appenders in
//!   several processes never interleave. If the write or the fsync fails (a full disk, a file
//!   size limit, an I/O error), the file is cut back to its length before the append and synced
//!   again, and the error says the file is unchanged (and what to do: free space, or choose
//!   another file).
//! - **A killed append is undone, and only ours.** Before writing, the appender records the
//!   file's length (and the identity, size and CRC-32 of what it is about to append) in a
//!   journal next to the file, `FILE.aceuq-journal`, synced to disk, and removes it after the
//!   frame is synced. A process killed mid-append (SIGKILL, a crash, a power loss) leaves the
//!   journal behind; the next append to the file cuts exactly the recorded incomplete frame off
//!   before appending (a frame that reached its full length with the right CRC is kept), and
//!   [`Reader::open`] stops before it in the meantime. A journal that no longer matches the file
//!   (the file was replaced or shortened since) is discarded without touching the file.
//! - **Other data is never cut.** A file whose last frame is incomplete without a journal to
//!   prove that aceuq left it so (a file the user wrote, a copy in progress) is not appended
//!   to: the error names the file and the line where the incomplete frame starts, and says how
//!   to repair it. Nothing before the appended frame is ever modified, except that a missing
//!   newline at the very end of the file is added before the frame, so that the two do not
//!   merge into one line, and blank lines at the very end are removed (a reader such as ASE's
//!   stops at a blank line, and would not see the frame behind them). A file that is no XYZ at all (its first line is not an atom count)
//!   is not appended to ([`AppendError::NotXyz`]); XYZ this reader cannot parse (another
//!   writer's) is appended to as it is.
//!
//! The journal costs two more fsyncs (the journal and its directory) per append: negligible
//! for candidate frames, which are rare by design. If the journal cannot be created because
//! the directory is not writable (while the file is), the append goes ahead without it: a
//! write error is still rolled back, but a killed append is then left for the user to repair
//! (as a foreign incomplete frame).

use std::io;
use std::path::{Path, PathBuf};

use super::error::ExtxyzError;
use super::journal;
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
    /// What would be lost in the written frame: a column named `id` beside the atom IDs, a
    /// column or info key given twice (one would replace the other). Species may be labels
    /// that are no element (`Li1`), as models may have them.
    fn check(&self) -> Result<(), String> {
        for (k, &(name, _)) in self.columns.iter().enumerate() {
            if name == "id" && self.ids.is_some() {
                return Err(
                    "a column named 'id' beside the atom IDs (written as the column \
                            'id'): name it otherwise"
                        .into(),
                );
            }
            if self.columns[..k].iter().any(|&(other, _)| other == name) {
                return Err(format!("the column '{name}' is given twice"));
            }
        }
        for (k, &(key, _)) in self.info.iter().enumerate() {
            if self.info[..k].iter().any(|&(other, _)| other == key) {
                return Err(format!("the info key '{key}' is given twice"));
            }
        }
        Ok(())
    }

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

/// Errors from [`append_frame`]. In every case but [`AppendError::Write`] with a failed
/// rollback, the file is as it was before the call.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The frame cannot be written as extended XYZ (see [`frame_to_string`]); nothing was
    /// written.
    #[error(transparent)]
    Frame(ExtxyzError),
    /// The file could not be opened, locked or prepared (its journal, an interrupted earlier
    /// append); nothing was written.
    #[error("cannot append to {}: {what}: {source} (nothing was written)", path.display())]
    Io {
        /// The file appended to, as given.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing or syncing the frame failed. The partial frame was removed (the file is
    /// unchanged) unless `rollback` holds the error that prevented it.
    #[error("{}", write_message(path, source, *length, rollback.as_ref(), journal.as_deref()))]
    Write {
        /// The file appended to, as given.
        path: PathBuf,
        /// The write or sync error.
        #[source]
        source: io::Error,
        /// The file's length before the append.
        length: u64,
        /// Why the partial frame could not be cut off, if it could not.
        rollback: Option<io::Error>,
        /// The journal recording the partial frame (`None` when it could not be created).
        journal: Option<PathBuf>,
    },
    /// The file's last frame is incomplete and no journal shows that an aceuq append left it
    /// so: it is somebody else's data, which is never cut off. Nothing was written.
    #[error("{}", tail_message(path, *line, detail))]
    IncompleteTail {
        /// The file appended to, as given.
        path: PathBuf,
        /// 1-based line where the incomplete frame starts.
        line: usize,
        /// What is incomplete.
        detail: String,
    },
    /// The file does not start as an XYZ file (its first line is not an atom count): frames
    /// appended to it would make a file no reader takes. Nothing was written.
    #[error(
        "{}: not an extended XYZ file (its first line is '{first}', not an atom count), so no \
         frames are appended to it: give another file name, or remove the file",
        path.display()
    )]
    NotXyz {
        /// The file appended to, as given.
        path: PathBuf,
        /// Its first line (shortened).
        first: String,
    },
}

fn tail_message(path: &Path, line: usize, detail: &str) -> String {
    let repair = if line > 1 {
        format!(
            "complete that frame or delete those lines (for example `head -n {} FILE > \
             FIXED.xyz`)",
            line - 1
        )
    } else {
        "complete that frame or remove the file".to_string()
    };
    format!(
        "{}:{line}: the last frame (from line {line} to the end of the file) is incomplete \
         ({detail}), and it was not left by an interrupted aceuq append, so it is not cut off and \
         nothing was appended: {repair}, or write the frames to another file",
        path.display()
    )
}

fn write_message(
    path: &Path,
    source: &io::Error,
    length: u64,
    rollback: Option<&io::Error>,
    journal: Option<&Path>,
) -> String {
    let full = matches!(
        source.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded
    );
    let todo = if full {
        "free space on its file system (or raise the file size limit), or choose another file"
    } else {
        "check the file system, or choose another file"
    };
    match (rollback, journal) {
        (None, _) => format!(
            "cannot append to {}: writing the frame failed: {source}; the file is unchanged (the \
             partial frame was removed): {todo}",
            path.display()
        ),
        (Some(e), Some(j)) => format!(
            "cannot append to {}: writing the frame failed: {source}, and cutting the partial \
             frame off failed too ({e}); it starts at byte {length} and is recorded in {}: the \
             next append removes it and aceuq readers skip it, or truncate the file yourself \
             (`truncate -s {length} FILE`); then {todo}",
            path.display(),
            j.display()
        ),
        (Some(e), None) => format!(
            "cannot append to {}: writing the frame failed: {source}, and cutting the partial \
             frame off failed too ({e}); truncate the file to its {length} bytes before the \
             append (`truncate -s {length} FILE`); then {todo}",
            path.display()
        ),
    }
}

/// Append one frame to the extended XYZ file `path` (created if missing), formatted with the
/// default [`super::WriteOptions`]:
///
/// - one append and an fsync under an exclusive advisory lock (`flock`), so concurrent
///   appenders never interleave;
/// - on a write or fsync error (a full disk) the file is cut back to its previous length:
///   [`AppendError::Write`] says it is unchanged;
/// - a journal, `FILE.aceuq-journal`, exists while the append is in progress; if the process
///   is killed mid-append, [`Reader::open`] stops before the incomplete frame and the next
///   append cuts exactly it off;
/// - an incomplete last frame without such a journal is not ours and is never cut:
///   [`AppendError::IncompleteTail`], and the file is left as it is;
/// - nothing before the frame is changed, except that a newline is added if the file's last
///   line lacks one and blank lines at its end are removed.
///
/// `docs/candidates.md` describes this for users of the LAMMPS fix.
pub fn append_frame(path: &Path, frame: &AppendFrame<'_>) -> Result<(), AppendError> {
    frame.check().map_err(|message| {
        AppendError::Frame(ExtxyzError::Write {
            origin: "the frame to append".into(),
            message,
        })
    })?;
    let text =
        frame_to_string(&frame.to_structure(), &Default::default()).map_err(AppendError::Frame)?;
    append_whole(path, text.as_bytes())
}

/// Append `text`, whole extended XYZ frames formatted by another writer (the Python watch
/// formats its frames with ASE), with every guarantee of [`append_frame`]. Text that is not
/// whole frames this reader reads ([`AppendError::Frame`]) is refused before the file is
/// touched: a frame cut short would make the file unreadable for the next reader.
pub fn append_text(path: &Path, text: &str) -> Result<(), AppendError> {
    super::read_str(text, "the frame to append", &ReadOptions::default())
        .map_err(AppendError::Frame)?;
    append_whole(path, text.as_bytes())
}

/// Paths whose tail this process has checked (an incomplete last frame left by someone else
/// would be buried mid-file by an append). Our own appends never leave one behind.
static CHECKED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn was_checked(path: &Path) -> bool {
    let c = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    c.iter().any(|p| p == path)
}

fn mark_checked(path: &Path) {
    let mut c = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if !c.iter().any(|p| p == path) {
        c.push(path.to_path_buf());
    }
}

/// The content checks of [`append_frame`], read-only and ahead of time, for a writer that
/// should fail before hours of work rather than at its first frame: an error
/// ([`AppendError::IncompleteTail`]) for a file whose last frame is incomplete for a reason
/// other than a killed aceuq append (which leaves its journal behind, and which the next append
/// undoes), [`AppendError::NotXyz`] for a file whose first line is not an atom count; fine for
/// a missing or empty file, whole frames, or XYZ this reader cannot parse. Whether the file and
/// its folder can be written is the caller's to check. A file this process has already appended to is not read again, nor one unchanged (length and
/// modification time) since this check last passed on it (a LAMMPS script runs it at every
/// `run`); the first append checks again (the file may change in between).
pub fn check_appendable(path: &Path) -> Result<(), AppendError> {
    static PASSED: std::sync::Mutex<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>> =
        std::sync::Mutex::new(Vec::new());
    if !path.exists() || journal::path_for(path).exists() || was_checked(path) {
        return Ok(());
    }
    let stamp = std::fs::metadata(path)
        .ok()
        .map(|m| (path.to_path_buf(), m.len(), m.modified().ok()));
    let mut passed = PASSED.lock().unwrap_or_else(|e| e.into_inner());
    if stamp.as_ref().is_some_and(|s| passed.contains(s)) {
        return Ok(());
    }
    check_tail(path)?;
    if let Some(s) = stamp {
        passed.retain(|p| p.0 != s.0);
        passed.push(s);
    }
    Ok(())
}

/// Append `bytes` (whole frames) to `path` under the lock, with the journal (see the module
/// documentation).
fn append_whole(path: &Path, bytes: &[u8]) -> Result<(), AppendError> {
    use std::io::Write;
    let io_err = |what: &str| {
        let what = what.to_string();
        move |source| AppendError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err("cannot open it"))?;
    lock_exclusive(&f).map_err(io_err("cannot lock it"))?;
    let jpath = journal::path_for(path);
    let found = recover(&f, &jpath).map_err(io_err(&format!(
        "cannot undo the interrupted append recorded in {}",
        jpath.display()
    )))?;
    if found || !was_checked(path) {
        check_tail(path)?;
        mark_checked(path);
    }

    let mut meta = f.metadata().map_err(io_err("cannot stat it"))?;
    // Blank lines at the end (`echo > file` makes one): ASE stops reading at a blank line, so
    // a frame behind them would be invisible to it. They hold nothing: cut off before appending.
    let text_end = end_of_text(&f, meta.len()).map_err(io_err("cannot read it"))?;
    if text_end < meta.len() {
        f.set_len(text_end)
            .and_then(|()| f.sync_data())
            .map_err(io_err("cannot remove the blank lines at its end"))?;
        meta = f.metadata().map_err(io_err("cannot stat it"))?;
    }
    let length = meta.len();
    // A last line without its newline would merge with the frame's count line.
    let newline = length > 0 && last_byte(&f, length).map_err(io_err("cannot read it"))? != b'\n';
    let mut data = Vec::with_capacity(bytes.len() + 1);
    if newline {
        data.push(b'\n');
    }
    data.extend_from_slice(bytes);
    let (dev, ino) = journal::identity(&meta);
    let entry = journal::Entry {
        dev,
        ino,
        length,
        bytes: data.len() as u64,
        crc32: crc32fast::hash(&data),
    };
    let journal = match journal::write(&jpath, &entry) {
        Ok(()) => Some(jpath),
        // A directory we may not write in: append without the journal (see the module docs).
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => None,
        Err(e) => {
            return Err(io_err(&format!(
                "cannot write the journal {}",
                jpath.display()
            ))(e));
        }
    };

    if let Err(source) = f.write_all(&data).and_then(|()| f.sync_data()) {
        let rollback = f.set_len(length).and_then(|()| f.sync_data()).err();
        if rollback.is_none()
            && let Some(j) = &journal
        {
            let _ = journal::remove(j);
        }
        return Err(AppendError::Write {
            path: path.to_path_buf(),
            source,
            length,
            rollback,
            journal,
        });
    }
    if let Some(j) = &journal {
        // If this fails, the next append finds the frame whole (length and CRC) and keeps it.
        let _ = journal::remove(j);
    }
    Ok(())
    // The lock is released when `f` closes.
}

/// The length of `f` (`len` bytes) without the blank lines (whitespace only) at its end: the
/// end of the last line with text, its newline included; 0 for a file of blank lines; `len`
/// when the last line has text.
fn end_of_text(f: &std::fs::File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 4096;
    let mut end = len; // the blank run found so far is [end, len)
    // The first and second newlines after the last byte with text: where that line and the
    // next one end.
    let (mut first_newline, mut second_newline) = (None, None);
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (end - start) as usize];
        let mut got = 0;
        while got < buf.len() {
            match journal::read_at(f, &mut buf[got..], start + got as u64)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        for (k, &b) in buf.iter().enumerate().rev() {
            let at = start + k as u64;
            if b == b'\n' {
                (first_newline, second_newline) = (Some(at), first_newline);
            } else if !b.is_ascii_whitespace() {
                let Some(n) = first_newline else {
                    return Ok(len);
                };
                // A last line that is a count of 0 atoms: the blank line after it is that
                // frame's comment line, not padding.
                if b == b'0' && zero_count_line(f, at)? {
                    return Ok(second_newline.map_or(len, |m| m + 1));
                }
                return Ok(n + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// Whether the line ending with the byte at `at` (a '0') is an atom count of 0: only
/// whitespace and zeros back to its start.
fn zero_count_line(f: &std::fs::File, at: u64) -> io::Result<bool> {
    let start = at.saturating_sub(63);
    let mut buf = vec![0u8; (at + 1 - start) as usize];
    let got = journal::read_at(f, &mut buf, start)?;
    buf.truncate(got);
    let line = match buf.iter().rposition(|&b| b == b'\n') {
        Some(p) => &buf[p + 1..],
        None if start == 0 => &buf[..],
        None => return Ok(false), // a long line: no count
    };
    let t = String::from_utf8_lossy(line);
    let t = t.trim();
    Ok(!t.is_empty() && t.bytes().all(|b| b == b'0'))
}

/// The last byte of `f`, which holds `len > 0` bytes.
fn last_byte(f: &std::fs::File, len: u64) -> io::Result<u8> {
    let mut b = [0u8; 1];
    match journal::read_at(f, &mut b, len - 1)? {
        1 => Ok(b[0]),
        _ => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Undo an interrupted append recorded in the journal `jpath`, if there is one (called with the
/// lock held). Returns whether a journal was found.
fn recover(f: &std::fs::File, jpath: &Path) -> io::Result<bool> {
    let entry = match journal::read(jpath)? {
        journal::Found::None => return Ok(false),
        // Cut off while being written: the append it announced never started.
        journal::Found::Unreadable => {
            journal::remove(jpath)?;
            return Ok(true);
        }
        journal::Found::Entry(e) => e,
    };
    let meta = f.metadata()?;
    if entry.is_for(&meta) && entry.incomplete_in(f, meta.len())? {
        f.set_len(entry.length)?;
        f.sync_data()?;
    }
    journal::remove(jpath)?;
    Ok(true)
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

/// Fail if the last frame of `path` is incomplete (the journal, if any, has been dealt with).
/// Content that does not read as extended XYZ before its tail is left to the user.
/// A read error of `path` while checking it.
fn read_error(path: &Path) -> impl Fn(io::Error) -> AppendError + Copy + '_ {
    move |source| AppendError::Io {
        path: path.to_path_buf(),
        what: "cannot read it".to_string(),
        source,
    }
}

fn check_tail(path: &Path) -> Result<(), AppendError> {
    let io_err = read_error(path);
    if std::fs::metadata(path).map_err(io_err)?.len() == 0 {
        return Ok(());
    }
    let opts = ReadOptions {
        allow_truncated_tail: true,
        ..Default::default()
    };
    let mut reader = match Reader::open(path, opts) {
        Ok(r) => r,
        Err(ExtxyzError::Io { source, .. }) => return Err(io_err(source)),
        Err(_) => return first_line_is_a_count(path),
    };
    // The incomplete frame starts after the last whole one (the warning's line is where the
    // damage was found, which may be inside the frame).
    let mut line = 1;
    for frame in &mut reader {
        match frame {
            Ok(s) => line = s.origin.line + s.len() + 2,
            Err(_) => return first_line_is_a_count(path),
        }
    }
    match reader.dropped_tail() {
        Some(w) if w.line >= line => Err(AppendError::IncompleteTail {
            path: path.to_path_buf(),
            line,
            detail: w
                .message
                .split_once(": ")
                .map_or(w.message.as_str(), |(_, d)| d)
                .to_string(),
        }),
        _ => Ok(()),
    }
}

/// A file this reader cannot parse may still be another writer's extended XYZ (appending to it
/// is the user's choice); one whose first line is not an atom count is no XYZ at all.
fn first_line_is_a_count(path: &Path) -> Result<(), AppendError> {
    use std::io::{BufRead, Read};
    let io_err = read_error(path);
    // The first line with text, as the reader finds it: blank lines and a UTF-8 byte-order
    // mark before it are skipped.
    let f = std::fs::File::open(path).map_err(io_err)?;
    let mut input = std::io::BufReader::new(f).take(1 << 16);
    let mut first = Vec::new();
    let text = loop {
        first.clear();
        if input.read_until(b'\n', &mut first).map_err(io_err)? == 0 {
            return Ok(()); // only blank lines
        }
        let t = String::from_utf8_lossy(&first)
            .trim_start_matches('\u{feff}')
            .trim()
            .to_string();
        if !t.is_empty() {
            break t;
        }
    };
    let line = text.as_str();
    if line.parse::<u64>().is_ok() {
        return Ok(());
    }
    let mut short: String = line.chars().take(40).collect();
    if line.chars().count() > 40 {
        short.push_str("...");
    }
    Err(AppendError::NotXyz {
        path: path.to_path_buf(),
        first: short,
    })
}

#[cfg(test)]
mod tests;
