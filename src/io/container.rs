//! The container format of model files: a human-readable TOML header followed by named binary
//! arrays, each with its own CRC-32.
//!
//! ```text
//! ACEUQ-MODEL format=2
//! # aceuq model file: TOML metadata, then binary arrays. Inspect with `head`; do not edit.
//! ...TOML...
//! #--- binary arrays: 123456 bytes, metadata crc32 1a2b3c4d ---
//! <123456 bytes: the arrays, little-endian, at the offsets listed in [arrays.*]>
//! ```
//! Readers check the magic line, the format number, the declared length (truncation), the
//! CRC-32 of everything above the marker line (the metadata: cutoffs, energies per species,
//! calibrations live there) and every array's checksum (corruption), and name the file and what
//! is wrong. Format 1 (before 2026-12-07) had no metadata checksum and is still read.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format number written by this build; readers refuse newer formats. 2: the marker line
/// carries the metadata's CRC-32.
pub const FORMAT: u32 = 2;
const MAGIC: &str = "ACEUQ-MODEL";
const MARKER: &str = "#--- binary arrays: ";

/// An array of numbers with a shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    F64(Vec<f64>),
    U32(Vec<u32>),
}

impl Array {
    fn dtype(&self) -> &'static str {
        match self {
            Array::F64(_) => "f64",
            Array::U32(_) => "u32",
        }
    }
    fn len(&self) -> usize {
        match self {
            Array::F64(v) => v.len(),
            Array::U32(v) => v.len(),
        }
    }
    fn bytes(&self) -> Vec<u8> {
        match self {
            Array::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Array::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Where an array lives in the binary section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayMeta {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub nbytes: usize,
    pub crc32: u32,
}

/// Errors reading or writing a model file.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {context}: {source}")]
    Io {
        path: String,
        context: &'static str,
        source: std::io::Error,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> ContainerError {
    ContainerError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A decoded model file: its TOML header (without the `[arrays]` table) and its arrays.
#[derive(Clone, Debug, Default)]
pub struct Container {
    /// The TOML metadata.
    pub meta: toml::Table,
    /// Named arrays with their shapes.
    pub arrays: BTreeMap<String, (Vec<usize>, Array)>,
}

impl Container {
    /// Add an array; `shape` must multiply to its length.
    pub fn put(&mut self, name: &str, shape: Vec<usize>, data: Array) {
        debug_assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape of {name}"
        );
        self.arrays.insert(name.to_string(), (shape, data));
    }

    /// Take an f64 array, checking its length.
    pub fn f64(&self, path: &Path, name: &str, len: usize) -> Result<Vec<f64>, ContainerError> {
        match self.arrays.get(name) {
            Some((_, Array::F64(v))) if v.len() == len => Ok(v.clone()),
            Some((_, Array::F64(v))) => Err(invalid(
                path,
                format!("array '{name}' has {} numbers, expected {len}", v.len()),
            )),
            Some(_) => Err(invalid(
                path,
                format!("array '{name}' has the wrong type (expected f64)"),
            )),
            None => Err(invalid(path, format!("array '{name}' is missing"))),
        }
    }

    /// Take an f64 array of any length.
    pub fn f64_any(&self, path: &Path, name: &str) -> Result<Vec<f64>, ContainerError> {
        match self.arrays.get(name) {
            Some((_, Array::F64(v))) => Ok(v.clone()),
            Some(_) => Err(invalid(
                path,
                format!("array '{name}' has the wrong type (expected f64)"),
            )),
            None => Err(invalid(path, format!("array '{name}' is missing"))),
        }
    }

    /// Take a u32 array of any length.
    pub fn u32_any(&self, path: &Path, name: &str) -> Result<Vec<u32>, ContainerError> {
        match self.arrays.get(name) {
            Some((_, Array::U32(v))) => Ok(v.clone()),
            Some(_) => Err(invalid(
                path,
                format!("array '{name}' has the wrong type (expected u32)"),
            )),
            None => Err(invalid(path, format!("array '{name}' is missing"))),
        }
    }

    /// Serialize to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut blob = Vec::new();
        let mut index = toml::Table::new();
        for (name, (shape, data)) in &self.arrays {
            let bytes = data.bytes();
            let meta = ArrayMeta {
                dtype: data.dtype().to_string(),
                shape: shape.clone(),
                offset: blob.len(),
                nbytes: bytes.len(),
                crc32: crc32fast::hash(&bytes),
            };
            blob.extend_from_slice(&bytes);
            index.insert(
                name.clone(),
                toml::Value::try_from(meta).expect("array metadata serializes"),
            );
        }
        let mut meta = self.meta.clone();
        meta.insert("arrays".into(), toml::Value::Table(index));
        let text = toml::to_string(&meta).expect("model metadata serializes to TOML");
        let mut out = format!(
            "{MAGIC} format={FORMAT}\n# aceuq model file: TOML metadata, then binary arrays. Inspect with `head`; do not edit.\n"
        )
        .into_bytes();
        out.extend_from_slice(text.as_bytes());
        if !text.ends_with('\n') {
            out.push(b'\n');
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(
            format!(
                "{MARKER}{} bytes, metadata crc32 {crc:08x} ---\n",
                blob.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&blob);
        out
    }

    /// Parse bytes read from `path` (used in messages).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Container, ContainerError> {
        let first_nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(bytes.len());
        let first = std::str::from_utf8(&bytes[..first_nl]).unwrap_or("");
        let Some(rest) = first.strip_prefix(MAGIC) else {
            return Err(invalid(
                path,
                "not an aceuq model file (it does not start with ACEUQ-MODEL); was it written by `aceuq fit`?",
            ));
        };
        let format: u32 = rest
            .trim()
            .strip_prefix("format=")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(path, format!("line 1: bad header '{first}'")))?;
        if format == 0 {
            return Err(invalid(
                path,
                format!("line 1: bad header '{first}': there is no model format 0 (file corrupt)"),
            ));
        }
        if format > FORMAT {
            return Err(invalid(
                path,
                format!(
                    "written by a newer aceuq (model format {format}); this build reads format {FORMAT}: upgrade aceuq"
                ),
            ));
        }
        // Find the marker line.
        let mut pos = first_nl + 1;
        let mut line_no = 1;
        let (text_end, blob_len, blob_start) = loop {
            if pos >= bytes.len() {
                return Err(invalid(
                    path,
                    "truncated: the metadata never ends (no binary-array marker line)",
                ));
            }
            line_no += 1;
            let end = bytes[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|e| pos + e);
            let Some(end) = end else {
                return Err(invalid(
                    path,
                    format!("truncated at line {line_no}: the metadata never ends"),
                ));
            };
            let line = std::str::from_utf8(&bytes[pos..end]).map_err(|_| {
                invalid(
                    path,
                    format!("line {line_no}: metadata is not UTF-8 (file corrupt)"),
                )
            })?;
            if let Some(rest) = line.strip_prefix(MARKER) {
                let bad = || invalid(path, format!("line {line_no}: bad marker line '{line}'"));
                let rest = rest.strip_suffix(" ---").ok_or_else(bad)?;
                let (n, crc) = match rest.split_once(" bytes, metadata crc32 ") {
                    Some((n, crc)) => (n, Some(u32::from_str_radix(crc, 16).map_err(|_| bad())?)),
                    None => (rest.strip_suffix(" bytes").ok_or_else(bad)?, None),
                };
                let n: usize = n.trim().parse().map_err(|_| bad())?;
                match crc {
                    Some(c) if crc32fast::hash(&bytes[..pos]) != c => {
                        return Err(invalid(
                            path,
                            "the metadata is corrupt (checksum mismatch): the file changed after \
                             aceuq wrote it (damaged, or edited by hand); restore a copy or write it \
                             again with aceuq fit / calibrate",
                        ));
                    }
                    None if format >= 2 => {
                        return Err(invalid(
                            path,
                            format!(
                                "line {line_no}: the marker line lacks the metadata checksum \
                                     of format {format} (file corrupt)"
                            ),
                        ));
                    }
                    _ => {}
                }
                break (pos, n, end + 1);
            }
            pos = end + 1;
        };
        let text = std::str::from_utf8(&bytes[first_nl + 1..text_end])
            .map_err(|_| invalid(path, "metadata is not UTF-8 (file corrupt)"))?;
        let mut meta: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // Report the line in file terms (the TOML starts on line 2).
            let line = e.span().map(|s| 2 + text[..s.start].matches('\n').count());
            match line {
                Some(l) => invalid(path, format!("line {l}: bad metadata: {}", e.message())),
                None => invalid(path, format!("bad metadata: {}", e.message())),
            }
        })?;
        let have = bytes.len() - blob_start;
        if have < blob_len {
            return Err(invalid(
                path,
                format!(
                    "truncated: expected {blob_len} bytes of array data, found {have} (incomplete copy or interrupted write?)"
                ),
            ));
        }
        if have > blob_len {
            return Err(invalid(
                path,
                format!(
                    "{} unexpected bytes after the array data (file corrupt)",
                    have - blob_len
                ),
            ));
        }
        let blob = &bytes[blob_start..];
        let index = match meta.remove("arrays") {
            Some(toml::Value::Table(t)) => t,
            None => toml::Table::new(),
            Some(_) => return Err(invalid(path, "metadata 'arrays' is not a table")),
        };
        let mut arrays = BTreeMap::new();
        for (name, v) in index {
            let am: ArrayMeta = v.try_into().map_err(|e: toml::de::Error| {
                invalid(
                    path,
                    format!("array '{name}': bad index entry: {}", e.message()),
                )
            })?;
            let count = am.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
            let width = match am.dtype.as_str() {
                "f64" => 8,
                "u32" => 4,
                other => {
                    return Err(invalid(
                        path,
                        format!("array '{name}': unknown dtype '{other}'"),
                    ));
                }
            };
            let end = am.offset.checked_add(am.nbytes);
            match (count, end) {
                (Some(c), Some(e))
                    if c.checked_mul(width) == Some(am.nbytes) && e <= blob.len() => {}
                _ => {
                    return Err(invalid(
                        path,
                        format!("array '{name}': size or offset out of range (file corrupt)"),
                    ));
                }
            }
            let raw = &blob[am.offset..am.offset + am.nbytes];
            if crc32fast::hash(raw) != am.crc32 {
                return Err(invalid(
                    path,
                    format!("array '{name}' is corrupt (checksum mismatch)"),
                ));
            }
            let data = if width == 8 {
                Array::F64(
                    raw.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                )
            } else {
                Array::U32(
                    raw.chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect(),
                )
            };
            arrays.insert(name, (am.shape, data));
        }
        Ok(Container { meta, arrays })
    }

    /// Read a file.
    /// Only a regular file is read (a FIFO would block, `/dev/zero` never end), and only
    /// after its first bytes say it is a model file (a wrong path to a large file is refused
    /// at once, not after reading it whole on every MPI rank).
    pub fn read(path: &Path) -> Result<Container, ContainerError> {
        use std::io::Read;
        let io = |context: &'static str| {
            move |e: std::io::Error| ContainerError::Io {
                path: path.display().to_string(),
                context,
                source: e,
            }
        };
        // Before opening: opening a FIFO blocks until it has a writer.
        let kind = std::fs::metadata(path)
            .map_err(io("cannot read model file"))?
            .file_type();
        // A directory: reading it gives the OS's own error.
        if !kind.is_file() && !kind.is_dir() {
            return Err(invalid(
                path,
                "is not a regular file (a pipe or device): give the path of a model file",
            ));
        }
        let mut f = std::fs::File::open(path).map_err(io("cannot read model file"))?;
        let mut head = Vec::with_capacity(MAGIC.len());
        (&mut f)
            .take(MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(io("cannot read model file"))?;
        if head != MAGIC.as_bytes() {
            // The message of a wrong file type, from the bytes read.
            return Container::from_bytes(path, &head);
        }
        let mut bytes = head;
        f.read_to_end(&mut bytes)
            .map_err(io("cannot read model file"))?;
        Container::from_bytes(path, &bytes)
    }

    /// Write a file atomically: a temporary file in the same directory, synced, then renamed, so
    /// a reader never sees a half-written model.
    pub fn write_atomic(&self, path: &Path) -> Result<(), ContainerError> {
        write_atomic(path, &self.to_bytes())
    }
}

/// Write bytes to `path` atomically (temporary file in the same directory, fsync, rename). A
/// device or FIFO (`/dev/null`, `/dev/stdout`) is written in place instead.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ContainerError> {
    use std::io::Write;
    let io = |context: &'static str| {
        move |e: std::io::Error| ContainerError::Io {
            path: path.display().to_string(),
            context,
            source: e,
        }
    };
    if super::is_special_file(path) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io("cannot open"))?;
        return f.write_all(bytes).map_err(io("cannot write"));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("cannot create temporary file"))?;
        f.write_all(bytes).map_err(io("cannot write"))?;
        f.sync_all().map_err(io("cannot sync"))?;
        std::fs::rename(&tmp, path).map_err(io("cannot rename temporary file into place"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Replace the first occurrence of `from` in `bytes` (binary-safe).
    pub(crate) fn replace_bytes(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern present");
        [&bytes[..at], to, &bytes[at + from.len()..]].concat()
    }

    /// `bytes` with the metadata checksum recomputed: a model whose metadata was edited
    /// consistently (what a checksum cannot catch; the loaders' own checks must).
    pub(crate) fn reseal(bytes: &[u8]) -> Vec<u8> {
        let at = bytes
            .windows(MARKER.len())
            .position(|w| w == MARKER.as_bytes())
            .expect("marker present");
        let end = at
            + bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("marker line");
        let line = std::str::from_utf8(&bytes[at..end]).unwrap();
        let (head, _) = line.split_once(", metadata crc32 ").expect("format 2");
        let marker = format!(
            "{head}, metadata crc32 {:08x} ---",
            crc32fast::hash(&bytes[..at])
        );
        [&bytes[..at], marker.as_bytes(), &bytes[end..]].concat()
    }

    fn sample() -> Container {
        let mut c = Container::default();
        c.meta
            .insert("species".into(), toml::Value::Array(vec!["Li".into()]));
        c.put("coef", vec![3], Array::F64(vec![1.5, -2.0, 3.25]));
        c.put("idx", vec![2, 2], Array::U32(vec![1, 2, 3, 4]));
        c
    }

    #[test]
    fn round_trip_and_error_paths() {
        let p = Path::new("m.aceuq");
        let bytes = sample().to_bytes();
        let c = Container::from_bytes(p, &bytes).unwrap();
        assert_eq!(c.arrays, sample().arrays);
        assert_eq!(c.meta, sample().meta);
        // Truncation.
        let e = Container::from_bytes(p, &bytes[..bytes.len() - 3])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("truncated: expected 40 bytes of array data, found 37"),
            "{e}"
        );
        let e = Container::from_bytes(p, &bytes[..30])
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        // Corruption of one array byte.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x40;
        let e = Container::from_bytes(p, &bad).unwrap_err().to_string();
        assert!(
            e.contains("array 'idx' is corrupt (checksum mismatch)"),
            "{e}"
        );
        // Wrong file type and newer format.
        let e = Container::from_bytes(p, b"Li 0 0 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.aceuq: not an aceuq model file"), "{e}");
        let newer = replace_bytes(&bytes, b"format=2", b"format=7");
        let e = Container::from_bytes(p, &newer).unwrap_err().to_string();
        assert!(e.contains("newer aceuq (model format 7)"), "{e}");
        let zero = replace_bytes(&bytes, b"format=2", b"format=0");
        let e = Container::from_bytes(p, &zero).unwrap_err().to_string();
        assert!(e.contains("there is no model format 0"), "{e}");
        // Any changed bit of the metadata: a number the model runs on, a table's name.
        for (from, to) in [(&b"Li"[..], &b"Mi"[..]), (b"species", b"spebies")] {
            let e = Container::from_bytes(p, &replace_bytes(&bytes, from, to))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("the metadata is corrupt (checksum mismatch)"),
                "{e}"
            );
        }
        let e = Container::from_bytes(p, &replace_bytes(&bytes, b"metadata crc32 ", b"crc "))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad marker line"), "{e}");
        // Format 1 files (no metadata checksum) are still read; format 2 needs it.
        let at = bytes
            .windows(MARKER.len())
            .position(|w| w == MARKER.as_bytes())
            .unwrap();
        let end = at + bytes[at..].iter().position(|&c| c == b'\n').unwrap();
        let line = std::str::from_utf8(&bytes[at..end]).unwrap();
        let plain = format!("{} ---", line.split_once(", metadata").unwrap().0);
        let v1 = [&bytes[..at], plain.as_bytes(), &bytes[end..]].concat();
        let e = Container::from_bytes(p, &v1).unwrap_err().to_string();
        assert!(e.contains("lacks the metadata checksum of format 2"), "{e}");
        let v1 = replace_bytes(&v1, b"format=2", b"format=1");
        assert_eq!(
            Container::from_bytes(p, &v1).unwrap().arrays,
            sample().arrays
        );
        // Broken metadata names the line where parsing failed.
        let broken = reseal(&replace_bytes(&bytes, b"species = [", b"species = [["));
        let e = Container::from_bytes(p, &broken).unwrap_err().to_string();
        assert!(
            e.starts_with("m.aceuq: line ") && e.contains(": bad metadata"),
            "{e}"
        );
    }

    /// Directories, pipes and files that are no model are refused before reading them whole.
    #[test]
    fn only_regular_model_files_are_read() {
        let dir =
            std::env::temp_dir().join(format!("aceuq-container-kinds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Container::read(&dir).unwrap_err().to_string();
        assert!(e.contains("os error 21"), "{e}");
        let e = Container::read(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a regular file"), "{e}");
        // A FIFO would block the read until a writer comes.
        let fifo = dir.join("pipe.aceuq");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let e = Container::read(&fifo).unwrap_err().to_string();
            assert!(e.contains("is not a regular file"), "{e}");
        }
        let other = dir.join("data.xyz");
        std::fs::write(&other, "2\nLattice=\"1 0 0 0 1 0 0 0 1\"\n").unwrap();
        let e = Container::read(&other).unwrap_err().to_string();
        assert!(e.contains("not an aceuq model file"), "{e}");
        std::fs::write(&other, "ACE").unwrap();
        let e = Container::read(&other).unwrap_err().to_string();
        assert!(e.contains("not an aceuq model file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("aceuq-container-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.aceuq");
        sample().write_atomic(&p).unwrap();
        let c = Container::read(&p).unwrap();
        assert_eq!(c.arrays, sample().arrays);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
