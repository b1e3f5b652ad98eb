//! The append journal: a small file next to the candidates file, written (and synced) before
//! a frame is appended and removed after, which records the file's length before the append.
//! Its presence after a killed or crashed append proves that the bytes past that length are
//! ours, so that the next append (and [`super::Reader::open`]) can drop exactly them.
//!
//! The journal of `dir/name` is `dir/name.aceuq-journal`, where `dir/name` is the file's path
//! with symbolic links resolved (all paths to one file share one journal). Appenders read,
//! write and remove it only while holding the exclusive lock on the file; readers read it
//! without the lock (a journal that appears or goes away meanwhile only makes them stop at an
//! earlier whole frame, or see a torn tail as after any killed writer). Its text:
//!
//! ```text
//! aceuq append journal 1
//! device 2049 inode 1234567
//! length 1048576
//! bytes 2613
//! crc32 1a2b3c4d
//! end
//! ```
//!
//! `device`/`inode` identify the file (a journal left for a file since replaced is stale),
//! `length` is the file length before the append, `bytes` and `crc32` describe the appended
//! bytes (so that an append that reached its full length with garbage, after a power loss, is
//! still recognised as incomplete). A journal without its `end` line was itself cut off, before
//! the append started.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// What a journal records about one append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Device and inode of the file appended to (0, 0 where the platform has none).
    pub dev: u64,
    pub ino: u64,
    /// File length before the append.
    pub length: u64,
    /// Bytes appended, and their CRC-32.
    pub bytes: u64,
    pub crc32: u32,
}

const MAGIC: &str = "aceuq append journal 1";

/// Suffix of journal files.
pub(crate) const SUFFIX: &str = ".aceuq-journal";

/// The journal path of the file at `path` (which exists).
pub(crate) fn path_for(path: &Path) -> PathBuf {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut name = real.file_name().unwrap_or_default().to_os_string();
    name.push(SUFFIX);
    real.with_file_name(name)
}

/// Device and inode of an open file.
pub(crate) fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

impl Entry {
    fn to_text(self) -> String {
        format!(
            "{MAGIC}\ndevice {} inode {}\nlength {}\nbytes {}\ncrc32 {:08x}\nend\n",
            self.dev, self.ino, self.length, self.bytes, self.crc32
        )
    }

    /// `None` for anything but a complete journal.
    fn parse(text: &str) -> Option<Entry> {
        if !text.ends_with("\nend\n") {
            return None;
        }
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut id = lines.next()?.split(' ');
        let (dev, ino) = match (id.next()?, id.next()?, id.next()?, id.next()?, id.next()) {
            ("device", d, "inode", i, None) => (d.parse().ok()?, i.parse().ok()?),
            _ => return None,
        };
        let mut field = |key: &str| -> Option<String> {
            let (k, v) = lines.next()?.split_once(' ')?;
            (k == key).then(|| v.to_string())
        };
        let length = field("length")?.parse().ok()?;
        let bytes = field("bytes")?.parse().ok()?;
        let crc32 = u32::from_str_radix(&field("crc32")?, 16).ok()?;
        if lines.next()? != "end" || lines.next().is_some() {
            return None;
        }
        Some(Entry {
            dev,
            ino,
            length,
            bytes,
            crc32,
        })
    }

    /// Whether this entry was written for the file with metadata `meta`.
    /// Whether the file `f` (of length `len`, the one this entry was written for) ends with the
    /// incomplete frame the entry announced: longer than before the append, and not holding
    /// the whole frame. A file shorter than before, or longer than the frame, was changed by
    /// someone else since, and is left alone.
    pub(crate) fn incomplete_in(&self, f: &File, len: u64) -> io::Result<bool> {
        let end = self.length.saturating_add(self.bytes);
        if len <= self.length || len > end {
            return Ok(false);
        }
        if len < end {
            return Ok(true);
        }
        Ok(crc_of(f, self.length, self.bytes)? != Some(self.crc32))
    }

    pub(crate) fn is_for(&self, meta: &std::fs::Metadata) -> bool {
        identity(meta) == (self.dev, self.ino)
    }
}

/// A journal as found on disk.
pub(crate) enum Found {
    /// No journal.
    None,
    /// A journal that is not complete (or not ours): the append it announced never started.
    Unreadable,
    /// A complete journal.
    Entry(Entry),
}

/// Read the journal at `jpath`.
pub(crate) fn read(jpath: &Path) -> io::Result<Found> {
    match std::fs::read(jpath) {
        Ok(b) => Ok(std::str::from_utf8(&b)
            .ok()
            .and_then(Entry::parse)
            .map_or(Found::Unreadable, Found::Entry)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Found::None),
        Err(e) => Err(e),
    }
}

/// Write the journal at `jpath` and make it durable (the file, then its directory entry)
/// before the append it announces.
pub(crate) fn write(jpath: &Path, entry: &Entry) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(jpath)?;
    let done = f
        .write_all(entry.to_text().as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| sync_dir(jpath));
    if done.is_err() {
        let _ = std::fs::remove_file(jpath);
    }
    done
}

/// Remove the journal at `jpath` (absent is fine).
pub(crate) fn remove(jpath: &Path) -> io::Result<()> {
    match std::fs::remove_file(jpath) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Fsync the directory holding `path`, so that a file created or removed in it stays so after
/// a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// CRC-32 of `len` bytes of `f` from `offset`, or `None` if the file is shorter. Reads at the
/// offset without moving the file position (a reader may be using it).
pub(crate) fn crc_of(f: &File, offset: u64, len: u64) -> io::Result<Option<u32>> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while done < len {
        let want = buf
            .len()
            .min(usize::try_from(len - done).unwrap_or(usize::MAX));
        let n = match read_at(f, &mut buf[..want], offset + done) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(Some(h.finalize()))
}

/// Positional read (`pread`), leaving the file position alone.
pub(crate) fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(f, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(f, buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_text_round_trips_and_a_cut_journal_is_not_read() {
        let e = Entry {
            dev: 2049,
            ino: 77,
            length: 1 << 40,
            bytes: 2613,
            crc32: 0x0a2b_3c4d,
        };
        let text = e.to_text();
        assert_eq!(Entry::parse(&text), Some(e));
        for cut in 0..text.len() {
            assert_eq!(Entry::parse(&text[..cut]), None, "{:?}", &text[..cut]);
        }
        assert_eq!(Entry::parse(&format!("{text}x\n")), None);
    }
}
