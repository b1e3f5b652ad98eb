//! Extended XYZ reading and writing, following the conventions of ASE's `ase.io.extxyz`.
//!
//! # Format
//!
//! A file is a sequence of frames. Each frame is
//!
//! 1. a line holding only the atom count `N`,
//! 2. a comment line of `key=value` pairs,
//! 3. `N` atom lines whose columns are described by the `Properties` key.
//!
//! ```text
//! 2
//! Lattice="4.0 0.0 0.0 0.0 4.0 0.0 0.0 0.0 4.0" Properties=species:S:1:pos:R:3:forces:R:3 energy=-7.5 pbc="T T T" config_type=bulk
//! Al 0.0 0.0 0.0  0.1 0.0 0.0
//! Al 2.0 2.0 2.0 -0.1 0.0 0.0
//! ```
//!
//! ## Comment line
//!
//! Values are bare words, or delimited by `"..."`, `'...'`, `{...}` or `[...]` (delimiters may
//! hold spaces); a backslash takes the next character literally. Spaces around `=` are allowed.
//! A key without `=` means `true`. Keys are case-sensitive except `Lattice`, `Properties` and
//! `pbc`, which are recognised in any case. Values that are not interpreted by the reader are
//! kept in [`Structure::info`] with ASE's typing: one integer → [`InfoValue::Int`], one real →
//! [`InfoValue::Real`], one of `T F True False true false TRUE FALSE` → [`InfoValue::Bool`],
//! several numbers (separated by spaces or commas) or none (`key=""`) →
//! [`InfoValue::Reals`], anything else → [`InfoValue::Str`] (the text as written, without its
//! delimiters).
//!
//! Interpreted keys:
//!
//! - `Lattice="ax ay az bx by bz cx cy cz"`: the cell, rows **a**, **b**, **c** (Å).
//! - `pbc="T T F"` (or one logical for all three). Default: `T T T` when a `Lattice` is given,
//!   else `F F F`. A periodic direction without a `Lattice` is an error.
//! - `Properties=name:type:ncols:...` with types `S` (string), `R` (real), `I` (integer),
//!   `L` (logical). Default `species:S:1:pos:R:3`, so plain XYZ files read too. `species` (or
//!   `symbols`) `S:1` and `pos` (or `positions`) `R:3` are required; the property named by
//!   [`ReadOptions::forces_key`] (`R:3`) becomes [`Structure::forces`]; every other column goes
//!   to [`Structure::arrays`] in file order.
//! - The key named by [`ReadOptions::energy_key`] (default `energy`, exactly that key): the
//!   reference energy (eV).
//! - `virial=` (9 numbers, eV), or else `stress=` (9 numbers, or 6 in Voigt order
//!   `xx yy zz yz xz xy`, eV/Å³): the reference virial. Nine numbers are read in ASE's order,
//!   column-major (`v[i + 3 j] = M[i][j]`); for the symmetric tensors of physics the order does
//!   not matter. A stress is converted with ASE's sign convention, `virial = -stress * volume`
//!   (ASE's stress is positive under tension, and `stress = -virial / volume`). When both keys
//!   are given, `virial` wins and `stress` stays in `info`.
//! - `config_type=`: [`Structure::config_type`], the text written without surrounding blanks
//!   (an empty one means none).
//!
//! Non-finite numbers (NaN, Inf) in positions, forces, lattice, energy and virial are errors;
//! in other columns and keys they are kept.
//!
//! # Reading
//!
//! [`Reader`] streams frames from any [`BufRead`] with memory bounded by the largest frame and
//! [`ReadOptions::max_line_bytes`]: header counts (atoms, columns) are never trusted for
//! allocation, only checked against what is actually read. [`read_file`] and [`read_str`]
//! collect all frames. Errors ([`ExtxyzError`]) name the file and 1-based line, say what is
//! wrong and what to do. A final frame cut short (a killed run) is an error unless
//! [`ReadOptions::allow_truncated_tail`] is set, in which case it is dropped and reported
//! through [`ReadOptions::on_warning`] and [`Reader::dropped_tail`].
//!
//! # Writing
//!
//! [`write_frame`] and [`frame_to_string`] write one frame with the header
//! `Lattice Properties energy pbc config_type virial <info keys in key order>`; positions and
//! forces use [`WriteOptions::positions`] / [`WriteOptions::forces`] (default `%.8f`), extra
//! real columns [`WriteOptions::arrays`] (default `%.6g`); energy, lattice, virial and real
//! info values are written with full (round-trip) precision. [`write_file_atomic`] writes a
//! whole file through a temporary file and a rename, so a reader never sees a half file.
//!
//! Reading what was written gives back the same structure, up to the written precision, with
//! three exceptions inherent to the format (ASE behaves the same): an [`InfoValue::Str`] whose
//! text reads as a number or logical comes back as that number or logical, an empty
//! [`InfoValue::Str`] comes back as an empty [`InfoValue::Reals`] (both are written `" "`,
//! because ASE misreads `key=""` followed by another key), and a one-element
//! [`InfoValue::Reals`] comes back as [`InfoValue::Real`].

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::structure::{InfoValue, Origin, PropData, Structure};

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
    #[error(
        "{file}:{line}: the frame starting here declares {expected} atoms but the file ends \
         after {found} atom line(s); the file was cut off (for example by a killed run): \
         regenerate it, or set allow_truncated_tail to drop the incomplete last frame"
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

/// Options for reading extended XYZ.
#[derive(Clone)]
pub struct ReadOptions {
    /// Comment-line key holding the reference energy in eV (default `energy`). Only this exact
    /// key is used; other energy-like keys stay in `info`.
    pub energy_key: String,
    /// Per-atom property (`R:3`) holding the reference forces in eV/Å (default `forces`).
    pub forces_key: String,
    /// Drop an incomplete last frame (fewer atom lines than its count, or a last line cut off
    /// mid-way) instead of failing; it is reported through `on_warning` and
    /// [`Reader::dropped_tail`]. Candidate files written by a killed run may end this way.
    pub allow_truncated_tail: bool,
    /// Called for each warning (a dropped tail). `None`: warnings are only recorded.
    pub on_warning: Option<WarningCallback>,
    /// Longest accepted line in bytes (default 16 MiB); bounds memory on corrupt input such as
    /// a binary file with no newlines.
    pub max_line_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            energy_key: "energy".to_string(),
            forces_key: "forces".to_string(),
            allow_truncated_tail: false,
            on_warning: None,
            max_line_bytes: 16 << 20,
        }
    }
}

impl std::fmt::Debug for ReadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOptions")
            .field("energy_key", &self.energy_key)
            .field("forces_key", &self.forces_key)
            .field("allow_truncated_tail", &self.allow_truncated_tail)
            .field(
                "on_warning",
                &self.on_warning.as_ref().map(|_| "<callback>"),
            )
            .field("max_line_bytes", &self.max_line_bytes)
            .finish()
    }
}

/// How real numbers of a column are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealFormat {
    /// Fixed decimals, like C's `%.{n}f`.
    Fixed(usize),
    /// Significant digits, like C's `%.{n}g` (trailing zeros removed).
    Significant(usize),
    /// Shortest text that reads back to the identical `f64` (lossless).
    Shortest,
}

impl RealFormat {
    fn format(self, x: f64, out: &mut String) {
        match self {
            RealFormat::Fixed(d) => {
                let _ = write!(out, "{x:.d$}");
            }
            RealFormat::Significant(p) => push_g(x, p, out),
            RealFormat::Shortest => push_shortest(x, out),
        }
    }
}

/// Options for writing extended XYZ.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOptions {
    /// Positions (Å); default `%.8f`.
    pub positions: RealFormat,
    /// Forces (eV/Å); default `%.8f`.
    pub forces: RealFormat,
    /// Extra real per-atom columns ([`Structure::arrays`]); default `%.6g`.
    pub arrays: RealFormat,
    /// Key the energy is written under (default `energy`).
    pub energy_key: String,
    /// Property name the forces are written under (default `forces`).
    pub forces_key: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            positions: RealFormat::Fixed(8),
            forces: RealFormat::Fixed(8),
            arrays: RealFormat::Significant(6),
            energy_key: "energy".to_string(),
            forces_key: "forces".to_string(),
        }
    }
}

impl WriteOptions {
    /// Options that write every real number with full precision, so that reading gives back
    /// bit-identical values (larger files).
    pub fn lossless() -> Self {
        WriteOptions {
            positions: RealFormat::Shortest,
            forces: RealFormat::Shortest,
            arrays: RealFormat::Shortest,
            ..WriteOptions::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Read every frame of an extended XYZ file.
///
/// The file name in errors is `path` as given. See [`Reader`] for streaming.
pub fn read_file(
    path: impl AsRef<Path>,
    opts: &ReadOptions,
) -> Result<Vec<Structure>, ExtxyzError> {
    Reader::open(path, opts.clone())?.collect()
}

/// Read every frame of extended XYZ text; `name` stands for the file name in errors and
/// [`Origin::file`].
pub fn read_str(text: &str, name: &str, opts: &ReadOptions) -> Result<Vec<Structure>, ExtxyzError> {
    Reader::new(text.as_bytes(), name, opts.clone()).collect()
}

/// Streaming reader: an iterator over the frames of an extended XYZ input.
///
/// Memory is bounded by one frame plus one line, whatever the counts in the headers say. The
/// iterator ends after the first error (the position in the input is then unreliable).
///
/// ```no_run
/// use aceuq::io::extxyz::{ReadOptions, Reader};
/// for frame in Reader::open("train.xyz", ReadOptions::default())? {
///     let s = frame?;
///     println!("{}: {} atoms", s.origin, s.len());
/// }
/// # Ok::<(), aceuq::io::extxyz::ExtxyzError>(())
/// ```
pub struct Reader<R> {
    src: LineSource<R>,
    file: String,
    opts: ReadOptions,
    frame: usize,
    done: bool,
    dropped_tail: Option<Warning>,
}

impl Reader<BufReader<File>> {
    /// Open a file for streaming. The file name in errors is `path` as given.
    pub fn open(path: impl AsRef<Path>, opts: ReadOptions) -> Result<Self, ExtxyzError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| ExtxyzError::Io {
            file: name.clone(),
            context: "cannot open for reading".to_string(),
            source,
        })?;
        Ok(Reader::new(
            BufReader::with_capacity(1 << 16, f),
            &name,
            opts,
        ))
    }
}

impl<R: BufRead> Reader<R> {
    /// Wrap a buffered input; `name` stands for the file name in errors and origins.
    pub fn new(input: R, name: &str, opts: ReadOptions) -> Self {
        let max = opts.max_line_bytes.max(1);
        Reader {
            src: LineSource {
                input,
                buf: Vec::new(),
                line_no: 0,
                unterminated: false,
                max,
            },
            file: name.to_string(),
            opts,
            frame: 0,
            done: false,
            dropped_tail: None,
        }
    }

    /// The warning for an incomplete last frame dropped under
    /// [`ReadOptions::allow_truncated_tail`], once the iterator has reached it.
    pub fn dropped_tail(&self) -> Option<&Warning> {
        self.dropped_tail.as_ref()
    }

    /// Number of lines consumed so far.
    pub fn lines_read(&self) -> usize {
        self.src.line_no
    }

    fn perr(&self, line: usize, message: String) -> ExtxyzError {
        ExtxyzError::Parse {
            file: self.file.clone(),
            line,
            message,
        }
    }

    /// Read the next line, turning I/O and encoding errors into `ExtxyzError`.
    fn next_line(&mut self) -> Result<bool, ExtxyzError> {
        match self.src.read_line() {
            Ok(got) => Ok(got),
            Err(LineError::Io(source)) => Err(ExtxyzError::Io {
                file: self.file.clone(),
                context: format!("read error after line {}", self.src.line_no),
                source,
            }),
            Err(LineError::TooLong) => Err(self.perr(
                self.src.line_no + 1,
                format!(
                    "line is longer than {} bytes; this is not an extended XYZ file, or raise \
                     ReadOptions::max_line_bytes",
                    self.src.max
                ),
            )),
        }
    }

    fn line_str(&self) -> Result<&str, ExtxyzError> {
        std::str::from_utf8(&self.src.buf).map_err(|e| {
            self.perr(
                self.src.line_no,
                format!(
                    "line is not valid UTF-8 (byte {}); extended XYZ is text: check that this \
                     is the right file",
                    e.valid_up_to() + 1
                ),
            )
        })
    }

    /// Parse one frame; `Ok(None)` at a clean end of input.
    fn read_frame(&mut self) -> Result<Option<Structure>, ExtxyzError> {
        // Count line; blank lines between frames and at the end are skipped.
        loop {
            if !self.next_line()? {
                return Ok(None);
            }
            if !self.line_str()?.trim().is_empty() {
                break;
            }
        }
        let start = self.src.line_no;
        let natoms = {
            let t = self.line_str()?.trim();
            t.parse::<u64>().map_err(|_| {
                self.perr(
                    start,
                    format!(
                        "expected the atom count of a new frame, found '{}'; each frame starts \
                         with a line holding only its number of atoms (a wrong count in the \
                         previous frame also leads here)",
                        truncate_for_message(t)
                    ),
                )
            })?
        };

        if !self.next_line()? {
            return Err(ExtxyzError::Truncated {
                file: self.file.clone(),
                line: start,
                expected: natoms,
                found: 0,
            });
        }
        let header = {
            let text = self.line_str()?;
            parse_header(text, &self.opts).map_err(|m| self.perr(start + 1, m))?
        };

        let mut frame = FrameBuilder::new(&header, natoms);
        let mut found: u64 = 0;
        while found < natoms {
            if !self.next_line()? {
                return Err(ExtxyzError::Truncated {
                    file: self.file.clone(),
                    line: start,
                    expected: natoms,
                    found,
                });
            }
            let line_no = self.src.line_no;
            let text = self.line_str()?;
            frame
                .push_atom(text, found + 1, &header)
                .map_err(|m| self.perr(line_no, m))?;
            found += 1;
        }

        let origin = Origin {
            file: Some(self.file.clone()),
            frame: self.frame,
            line: start,
        };
        self.frame += 1;
        Ok(Some(frame.finish(header, origin)))
    }

    /// Whether `e` describes an incomplete last frame that `allow_truncated_tail` may drop.
    fn is_tail(&self, e: &ExtxyzError) -> bool {
        match e {
            ExtxyzError::Truncated { .. } => true,
            // A last line without its newline that does not parse was cut off mid-write.
            ExtxyzError::Parse { line, .. } => self.src.unterminated && *line == self.src.line_no,
            _ => false,
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Structure, ExtxyzError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_frame() {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                let tail = self.is_tail(&e);
                if tail && self.opts.allow_truncated_tail {
                    let line = e.line().unwrap_or(self.src.line_no);
                    let w = Warning {
                        file: self.file.clone(),
                        line,
                        message: format!(
                            "dropped the incomplete last frame (frame {}): {}",
                            self.frame,
                            strip_location(&e)
                        ),
                    };
                    if let Some(cb) = &self.opts.on_warning {
                        cb(&w);
                    }
                    self.dropped_tail = Some(w);
                    return None;
                }
                if tail
                    && let ExtxyzError::Parse {
                        file,
                        line,
                        message,
                    } = e
                {
                    // Say that the line looks cut off, which is the likely root cause.
                    return Some(Err(ExtxyzError::Parse {
                        file,
                        line,
                        message: format!(
                            "{message} (this last line has no newline: the file was probably \
                             cut off; set allow_truncated_tail to drop the incomplete last frame)"
                        ),
                    }));
                }
                Some(Err(e))
            }
        }
    }
}

fn strip_location(e: &ExtxyzError) -> String {
    match e {
        ExtxyzError::Parse { message, .. } => message.clone(),
        ExtxyzError::Truncated {
            expected,
            found,
            line,
            ..
        } => format!(
            "the frame at line {line} declares {expected} atoms but the file ends after {found} \
             atom line(s)"
        ),
        other => other.to_string(),
    }
}

fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}

enum LineError {
    Io(io::Error),
    TooLong,
}

/// Line reader with a length bound, reusing one buffer; strips `\n` and `\r\n`.
struct LineSource<R> {
    input: R,
    buf: Vec<u8>,
    line_no: usize,
    /// The last line read ended at end of input without a newline.
    unterminated: bool,
    max: usize,
}

impl<R: BufRead> LineSource<R> {
    fn read_line(&mut self) -> Result<bool, LineError> {
        self.buf.clear();
        // Keep the buffer from staying huge after one long line.
        if self.buf.capacity() > (1 << 20) {
            self.buf.shrink_to(1 << 12);
        }
        loop {
            let avail = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            };
            if avail.is_empty() {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                self.line_no += 1;
                self.unterminated = true;
                self.strip_cr();
                return Ok(true);
            }
            let (take, newline) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            if self.buf.len() + take > self.max {
                return Err(LineError::TooLong);
            }
            self.buf.extend_from_slice(&avail[..take]);
            self.input.consume(if newline { take + 1 } else { take });
            if newline {
                self.line_no += 1;
                self.unterminated = false;
                self.strip_cr();
                return Ok(true);
            }
        }
    }

    fn strip_cr(&mut self) {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
    }
}

/// Column type of a `Properties` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PropType {
    Str,
    Real,
    Int,
    Bool,
}

impl PropType {
    fn letter(self) -> char {
        match self {
            PropType::Str => 'S',
            PropType::Real => 'R',
            PropType::Int => 'I',
            PropType::Bool => 'L',
        }
    }

    fn describe(self) -> &'static str {
        match self {
            PropType::Str => "a string",
            PropType::Real => "a real number",
            PropType::Int => "an integer",
            PropType::Bool => "a logical (T, F, True or False)",
        }
    }
}

/// What a `Properties` entry is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Species,
    Positions,
    Forces,
    /// Index into the extra arrays.
    Extra(usize),
}

#[derive(Clone, Debug)]
struct PropSpec {
    name: String,
    ty: PropType,
    ncols: usize,
    role: Role,
}

/// Everything the comment line says.
struct Header {
    cell: Option<[[f64; 3]; 3]>,
    pbc: [bool; 3],
    props: Vec<PropSpec>,
    /// The `Properties` text as given, for messages.
    props_text: String,
    total_cols: usize,
    energy: Option<f64>,
    virial: Option<[[f64; 3]; 3]>,
    config_type: Option<String>,
    info: BTreeMap<String, InfoValue>,
}

const BOOL_WORDS: [(&str, bool); 8] = [
    ("T", true),
    ("F", false),
    ("True", true),
    ("False", false),
    ("true", true),
    ("false", false),
    ("TRUE", true),
    ("FALSE", false),
];

fn parse_bool_word(s: &str) -> Option<bool> {
    BOOL_WORDS.iter().find(|(w, _)| *w == s).map(|(_, b)| *b)
}

/// Items of a value, split on whitespace and commas as ASE does.
fn value_items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
}

fn parse_reals(raw: &str) -> Option<Vec<f64>> {
    value_items(raw).map(|t| t.parse::<f64>().ok()).collect()
}

/// ASE's typing of a comment-line value.
fn classify(raw: &str) -> InfoValue {
    let items: Vec<&str> = value_items(raw).collect();
    if items.is_empty() {
        return InfoValue::Reals(Vec::new());
    }
    if let Some(ints) = items
        .iter()
        .map(|t| t.parse::<i64>().ok())
        .collect::<Option<Vec<_>>>()
    {
        return if ints.len() == 1 {
            InfoValue::Int(ints[0])
        } else {
            InfoValue::Reals(ints.iter().map(|&i| i as f64).collect())
        };
    }
    if let Some(reals) = items
        .iter()
        .map(|t| t.parse::<f64>().ok())
        .collect::<Option<Vec<_>>>()
    {
        return if reals.len() == 1 {
            InfoValue::Real(reals[0])
        } else {
            InfoValue::Reals(reals)
        };
    }
    if items.len() == 1
        && let Some(b) = parse_bool_word(items[0])
    {
        return InfoValue::Bool(b);
    }
    InfoValue::Str(raw.to_string())
}

/// Split a comment line into `(key, value)` pairs with delimiters removed and escapes resolved;
/// `None` for a bare key.
fn split_comment(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let chars: Vec<char> = line.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < n && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= n {
            break;
        }
        if chars[i] == '=' {
            return Err(format!(
                "comment line has '=' without a key at column {}; write key=value pairs",
                i + 1
            ));
        }
        let key = read_word(&chars, &mut i, true)?;
        let after_key = i;
        skip_ws(&mut i);
        if i < n && chars[i] == '=' {
            i += 1;
            skip_ws(&mut i);
            let value = if i < n {
                read_word(&chars, &mut i, false)?
            } else {
                String::new()
            };
            out.push((key, Some(value)));
        } else {
            i = after_key;
            out.push((key, None));
        }
    }
    Ok(out)
}

/// Read one key or value: bare characters and delimited segments up to unquoted whitespace
/// (or `=` for a key).
fn read_word(chars: &[char], i: &mut usize, stop_at_eq: bool) -> Result<String, String> {
    let n = chars.len();
    let mut s = String::new();
    while *i < n {
        let c = chars[*i];
        if c.is_whitespace() || (stop_at_eq && c == '=') {
            break;
        }
        let close = match c {
            '"' => Some('"'),
            '\'' => Some('\''),
            '{' => Some('}'),
            '[' => Some(']'),
            _ => None,
        };
        if c == '\\' {
            // A backslash takes the next character literally (a trailing one is kept).
            if *i + 1 < n {
                s.push(chars[*i + 1]);
                *i += 2;
            } else {
                s.push('\\');
                *i += 1;
            }
        } else if let Some(close) = close {
            let open_at = *i;
            *i += 1;
            loop {
                if *i >= n {
                    return Err(format!(
                        "comment line has an unclosed {c} at column {}; add the closing {close}",
                        open_at + 1
                    ));
                }
                let d = chars[*i];
                if d == '\\' && *i + 1 < n {
                    s.push(chars[*i + 1]);
                    *i += 2;
                } else if d == close {
                    *i += 1;
                    break;
                } else {
                    s.push(d);
                    *i += 1;
                }
            }
        } else {
            s.push(c);
            *i += 1;
        }
    }
    Ok(s)
}

fn fmt_pbc(p: [bool; 3]) -> String {
    let b = |x: bool| if x { 'T' } else { 'F' };
    format!("{} {} {}", b(p[0]), b(p[1]), b(p[2]))
}

/// Parse the comment line. Errors are messages; the caller adds file and line.
fn parse_header(line: &str, opts: &ReadOptions) -> Result<Header, String> {
    let pairs = split_comment(line)?;

    let mut seen: HashSet<String> = HashSet::new();
    let mut lattice: Option<String> = None;
    let mut pbc_raw: Option<String> = None;
    let mut props_raw: Option<String> = None;
    let mut energy_raw: Option<String> = None;
    let mut virial_raw: Option<String> = None;
    let mut stress_raw: Option<String> = None;
    let mut config_type: Option<String> = None;
    let mut info = BTreeMap::new();

    for (key, value) in pairs {
        let lower = key.to_ascii_lowercase();
        // Special keys count as duplicates in any case ("Lattice" and "lattice").
        let canon = match lower.as_str() {
            "lattice" | "properties" | "pbc" => lower.clone(),
            _ => key.clone(),
        };
        if !seen.insert(canon) {
            return Err(format!(
                "key '{key}' appears twice in the comment line; keep only one (the reader does \
                 not guess which is meant)"
            ));
        }
        let needs_value = |what: &str| format!("key '{key}' has no value; write {key}={what}");
        match lower.as_str() {
            "lattice" => {
                lattice = Some(value.ok_or_else(|| needs_value("\"ax ay az bx by bz cx cy cz\""))?)
            }
            "pbc" => pbc_raw = Some(value.ok_or_else(|| needs_value("\"T T T\""))?),
            "properties" => {
                props_raw = Some(value.ok_or_else(|| needs_value("species:S:1:pos:R:3"))?)
            }
            _ if key == opts.energy_key => {
                energy_raw = Some(value.ok_or_else(|| needs_value("<energy in eV>"))?)
            }
            _ if key == "virial" => {
                virial_raw = Some(value.ok_or_else(|| needs_value("\"9 numbers\""))?)
            }
            _ if key == "stress" => {
                // A stress that is not used (virial given) is kept as info below.
                stress_raw = Some(value.ok_or_else(|| needs_value("\"9 or 6 numbers\""))?)
            }
            _ if key == "config_type" => {
                config_type = Some(value.ok_or_else(|| needs_value("<name>"))?)
            }
            _ => {
                let v = match value {
                    Some(v) => classify(&v),
                    None => InfoValue::Bool(true),
                };
                info.insert(key, v);
            }
        }
    }

    let cell = match &lattice {
        None => None,
        Some(raw) => {
            let v = parse_reals(raw).filter(|v| v.len() == 9).ok_or_else(|| {
                format!(
                    "Lattice=\"{}\" is not 9 numbers; give the three lattice vectors as \
                     Lattice=\"ax ay az bx by bz cx cy cz\" (Å)",
                    truncate_for_message(raw)
                )
            })?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!(
                    "Lattice=\"{raw}\" has a non-finite number; fix the cell"
                ));
            }
            Some([[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]])
        }
    };

    let pbc = match &pbc_raw {
        None => [cell.is_some(); 3],
        Some(raw) => {
            let items: Vec<&str> = value_items(raw).collect();
            let parse = |t: &str| match t {
                "1" => Some(true),
                "0" => Some(false),
                _ => parse_bool_word(t),
            };
            let vals: Option<Vec<bool>> = items.iter().map(|t| parse(t)).collect();
            match vals.as_deref() {
                Some([b]) => [*b; 3],
                Some([a, b, c]) => [*a, *b, *c],
                _ => {
                    return Err(format!(
                        "pbc=\"{}\" is not three logicals; write for example pbc=\"T T F\"",
                        truncate_for_message(raw)
                    ));
                }
            }
        }
    };
    match cell {
        None if pbc.iter().any(|&p| p) => {
            return Err(format!(
                "no Lattice and pbc=\"{}\"; a periodic frame needs Lattice=\"ax ay az bx by bz \
                 cx cy cz\", or set pbc=\"F F F\" for a non-periodic one",
                fmt_pbc(pbc)
            ));
        }
        Some(c) => {
            for (k, name) in ["a", "b", "c"].iter().enumerate() {
                if pbc[k] && c[k].iter().all(|&x| x == 0.0) {
                    return Err(format!(
                        "Lattice vector {name} is zero but pbc=\"{}\" makes it periodic; fix the \
                         Lattice or the pbc",
                        fmt_pbc(pbc)
                    ));
                }
            }
        }
        None => {}
    }

    let props_text = props_raw.unwrap_or_else(|| "species:S:1:pos:R:3".to_string());
    let (props, total_cols) = parse_properties(&props_text, &opts.forces_key)?;

    let energy = match energy_raw {
        None => None,
        Some(raw) => {
            let e = raw.trim().parse::<f64>().map_err(|_| {
                format!(
                    "{}=\"{}\" is not a number; the energy key must hold one number (eV)",
                    opts.energy_key,
                    truncate_for_message(&raw)
                )
            })?;
            if !e.is_finite() {
                return Err(format!(
                    "{}={raw} is not finite; remove this frame or fix its energy",
                    opts.energy_key
                ));
            }
            Some(e)
        }
    };

    let volume = cell.map(|c| {
        Structure {
            cell: Some(c),
            ..Default::default()
        }
        .volume()
        .unwrap_or(0.0)
    });
    let virial =
        match (virial_raw, stress_raw) {
            (Some(raw), stress) => {
                if let Some(s) = stress {
                    info.insert("stress".to_string(), classify(&s));
                }
                let v = parse_reals(&raw).filter(|v| v.len() == 9).ok_or_else(|| {
                    format!(
                        "virial=\"{}\" is not 9 numbers; give the 3x3 virial (eV) as 9 numbers",
                        truncate_for_message(&raw)
                    )
                })?;
                Some(matrix_from_column_major(&v))
            }
            (None, Some(raw)) => {
                let v = parse_reals(&raw).filter(|v| v.len() == 9 || v.len() == 6).ok_or_else(|| {
                format!(
                    "stress=\"{}\" is not 9 or 6 numbers; give the 3x3 stress (eV/Å^3) as 9 \
                     numbers or 6 in Voigt order xx yy zz yz xz xy",
                    truncate_for_message(&raw)
                )
            })?;
                let s = if v.len() == 9 {
                    matrix_from_column_major(&v)
                } else {
                    [[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]]
                };
                let vol = match volume {
                    Some(vol) if vol > 0.0 => vol,
                    _ => {
                        return Err(
                            "stress= needs a Lattice with non-zero volume to be converted to \
                                a virial (virial = -stress * volume); add the Lattice or give \
                                virial= instead"
                                .to_string(),
                        );
                    }
                };
                Some(s.map(|row| row.map(|x| -x * vol)))
            }
            (None, None) => None,
        };
    if let Some(v) = &virial
        && v.iter().flatten().any(|x| !x.is_finite())
    {
        return Err(
            "virial/stress has a non-finite number; remove this frame or fix it".to_string(),
        );
    }

    // A grouping label: surrounding blanks are never meant, and an empty label is no label.
    let config_type = config_type
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());

    Ok(Header {
        cell,
        pbc,
        props,
        props_text,
        total_cols,
        energy,
        virial,
        config_type,
        info,
    })
}

/// ASE (Fortran) order of 9 numbers: `v[i + 3 j] = M[i][j]`.
fn matrix_from_column_major(v: &[f64]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = v[i + 3 * j];
        }
    }
    m
}

fn parse_properties(text: &str, forces_key: &str) -> Result<(Vec<PropSpec>, usize), String> {
    let fields: Vec<&str> = text.split(':').collect();
    if !fields.len().is_multiple_of(3) {
        return Err(format!(
            "Properties={text} is not a list of name:type:ncols triples; write for example \
             Properties=species:S:1:pos:R:3"
        ));
    }
    let mut props: Vec<PropSpec> = Vec::with_capacity(fields.len() / 3);
    let mut total: usize = 0;
    for t in fields.chunks(3) {
        let (name, ty, ncols) = (t[0], t[1], t[2]);
        if name.is_empty() {
            return Err(format!("Properties={text} has an entry without a name"));
        }
        let ty = match ty {
            "S" => PropType::Str,
            "R" => PropType::Real,
            "I" => PropType::Int,
            "L" => PropType::Bool,
            _ => {
                return Err(format!(
                    "Properties={text}: property '{name}' has type '{ty}'; the types are S \
                     (string), R (real), I (integer) and L (logical)"
                ));
            }
        };
        let ncols: usize = ncols.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
            format!(
                "Properties={text}: property '{name}' has column count '{ncols}'; it must be a \
                 positive integer"
            )
        })?;
        if ty == PropType::Str && ncols != 1 {
            return Err(format!(
                "Properties={text}: string property '{name}' has {ncols} columns; only S:1 is \
                 supported, split it into separate properties"
            ));
        }
        if props.iter().any(|p| p.name == name) {
            return Err(format!(
                "Properties={text} names '{name}' twice; rename one"
            ));
        }
        // Overflow here means the header lies; the atom lines could never match it.
        total = total.checked_add(ncols).ok_or_else(|| {
            format!("Properties={text} declares more columns than any atom line can hold")
        })?;
        props.push(PropSpec {
            name: name.to_string(),
            ty,
            ncols,
            role: Role::Extra(0),
        });
    }

    // Preferred names win whatever their position, so that the writer's names are always
    // the ones picked up again.
    let pick = |names: &[&str]| -> Option<usize> {
        names
            .iter()
            .find_map(|n| props.iter().position(|p| p.name == *n))
    };
    let species = pick(&["species", "symbols"]).ok_or_else(|| {
        format!(
            "Properties={text} has no species (or symbols) column; the first property of an \
             extended XYZ frame is usually species:S:1"
        )
    })?;
    let pos = pick(&["pos", "positions"]).ok_or_else(|| {
        format!("Properties={text} has no pos (or positions) column; add pos:R:3")
    })?;
    let forces = props.iter().position(|p| p.name == forces_key);
    let expect = |idx: usize, ty: PropType, ncols: usize| -> Result<(), String> {
        let p = &props[idx];
        if p.ty != ty || p.ncols != ncols {
            return Err(format!(
                "Properties={text}: '{}' is {}:{} but must be {}:{}",
                p.name,
                p.ty.letter(),
                p.ncols,
                ty.letter(),
                ncols
            ));
        }
        Ok(())
    };
    expect(species, PropType::Str, 1)?;
    expect(pos, PropType::Real, 3)?;
    if let Some(f) = forces {
        expect(f, PropType::Real, 3)?;
    }
    let mut extra = 0;
    for (k, p) in props.iter_mut().enumerate() {
        p.role = if k == species {
            Role::Species
        } else if k == pos {
            Role::Positions
        } else if Some(k) == forces {
            Role::Forces
        } else {
            extra += 1;
            Role::Extra(extra - 1)
        };
    }
    Ok((props, total))
}

/// Accumulates the atom lines of one frame.
struct FrameBuilder {
    symbols: Vec<String>,
    positions: Vec<[f64; 3]>,
    forces: Option<Vec<[f64; 3]>>,
    extras: Vec<PropData>,
}

impl FrameBuilder {
    fn new(h: &Header, natoms: u64) -> Self {
        // Never trust the count for allocation beyond a modest amount; vectors grow as lines
        // actually arrive.
        let cap = natoms.min(4096) as usize;
        let extras = h
            .props
            .iter()
            .filter(|p| matches!(p.role, Role::Extra(_)))
            .map(|p| match p.ty {
                PropType::Str => PropData::Str(Vec::new()),
                PropType::Real => PropData::Real {
                    ncols: p.ncols,
                    data: Vec::new(),
                },
                PropType::Int => PropData::Int {
                    ncols: p.ncols,
                    data: Vec::new(),
                },
                PropType::Bool => PropData::Bool {
                    ncols: p.ncols,
                    data: Vec::new(),
                },
            })
            .collect();
        FrameBuilder {
            symbols: Vec::with_capacity(cap),
            positions: Vec::with_capacity(cap),
            forces: h
                .props
                .iter()
                .any(|p| p.role == Role::Forces)
                .then(|| Vec::with_capacity(cap)),
            extras,
        }
    }

    /// Parse one atom line; `atom` is the 1-based index in the frame.
    fn push_atom(&mut self, line: &str, atom: u64, h: &Header) -> Result<(), String> {
        let ncols = line.split_ascii_whitespace().count();
        if ncols != h.total_cols {
            return Err(format!(
                "atom line has {ncols} columns, Properties says {} ({}); check the Properties \
                 key and the atom count of this frame",
                h.total_cols, h.props_text
            ));
        }
        let mut tokens = line.split_ascii_whitespace();
        let mut col = 0usize;
        for p in &h.props {
            // Column count was checked above, so the tokens are there.
            let mut next = || {
                col += 1;
                (col, tokens.next().unwrap_or(""))
            };
            let bad = |col: usize, tok: &str, k: usize| {
                let which = if p.ncols > 1 {
                    format!("'{}' component {} of {}", p.name, k + 1, p.ncols)
                } else {
                    format!("'{}'", p.name)
                };
                format!(
                    "atom {atom}: column {col} ({which}) is '{}', not {}",
                    truncate_for_message(tok),
                    p.ty.describe()
                )
            };
            let real =
                |col: usize, tok: &str, k: usize| tok.parse::<f64>().map_err(|_| bad(col, tok, k));
            match p.role {
                Role::Species => {
                    let (_, tok) = next();
                    self.symbols.push(tok.to_string());
                }
                Role::Positions | Role::Forces => {
                    let mut v = [0.0; 3];
                    for (k, x) in v.iter_mut().enumerate() {
                        let (c, tok) = next();
                        *x = real(c, tok, k)?;
                    }
                    if v.iter().any(|x| !x.is_finite()) {
                        let what = if p.role == Role::Positions {
                            "position"
                        } else {
                            "force"
                        };
                        return Err(format!(
                            "atom {atom} has a non-finite {what} ({} {} {}); remove this frame \
                             or fix the atom",
                            v[0], v[1], v[2]
                        ));
                    }
                    if p.role == Role::Positions {
                        self.positions.push(v);
                    } else if let Some(f) = &mut self.forces {
                        f.push(v);
                    }
                }
                Role::Extra(i) => match &mut self.extras[i] {
                    PropData::Str(v) => {
                        let (_, tok) = next();
                        v.push(tok.to_string());
                    }
                    PropData::Real { data, .. } => {
                        for k in 0..p.ncols {
                            let (c, tok) = next();
                            data.push(real(c, tok, k)?);
                        }
                    }
                    PropData::Int { data, .. } => {
                        for k in 0..p.ncols {
                            let (c, tok) = next();
                            data.push(tok.parse::<i64>().map_err(|_| bad(c, tok, k))?);
                        }
                    }
                    PropData::Bool { data, .. } => {
                        for k in 0..p.ncols {
                            let (c, tok) = next();
                            let b = match tok {
                                "T" | "True" => true,
                                "F" | "False" => false,
                                _ => return Err(bad(c, tok, k)),
                            };
                            data.push(b);
                        }
                    }
                },
            }
        }
        Ok(())
    }

    fn finish(self, h: Header, origin: Origin) -> Structure {
        let arrays = h
            .props
            .iter()
            .filter(|p| matches!(p.role, Role::Extra(_)))
            .map(|p| p.name.clone())
            .zip(self.extras)
            .collect();
        Structure {
            cell: h.cell,
            pbc: h.pbc,
            positions: self.positions,
            symbols: self.symbols,
            energy: h.energy,
            forces: self.forces,
            virial: h.virial,
            config_type: h.config_type,
            info: h.info,
            arrays,
            origin,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Shortest text that reads back to the same `f64` and never reads as an integer
/// (`1.0`, `1e-7`, `NaN`, `inf`).
fn push_shortest(x: f64, out: &mut String) {
    let _ = write!(out, "{x:?}");
}

/// C's `%.{p}g`: `p` significant digits, scientific notation for exponents below -4 or at
/// least `p`, trailing zeros removed.
fn push_g(x: f64, p: usize, out: &mut String) {
    let p = p.max(1);
    if !x.is_finite() {
        let _ = write!(out, "{x}");
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Scientific formatting does the rounding, which fixes the exponent (9.9999996 -> 1e1).
    let sci = format!("{:.*e}", p - 1, x);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        out.push_str(trim_fraction(mant));
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        let fixed = format!("{x:.decimals$}");
        out.push_str(trim_fraction(&fixed));
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Characters that make a word need quoting on the comment line.
fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.chars().any(|c| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '{' | '}' | '[' | ']' | '=' | '\\')
        })
}

fn push_word(s: &str, out: &mut String) {
    if s.is_empty() {
        // ASE's parser runs an empty `""` into the next key; `" "` reads as empty everywhere.
        out.push_str("\" \"");
    } else if needs_quotes(s) {
        out.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn push_reals_quoted(v: &[f64], out: &mut String) {
    if v.is_empty() {
        // See push_word: an empty `""` confuses ASE.
        out.push_str("\" \"");
        return;
    }
    out.push('"');
    for (k, x) in v.iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        push_shortest(*x, out);
    }
    out.push('"');
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

/// A name usable in `Properties=` (no separators, no characters the comment line treats
/// specially).
fn valid_property_name(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    ':' | '"' | '\'' | '{' | '}' | '[' | ']' | '=' | '\\' | ','
                )
        })
}

/// A per-atom string usable as an atom-line column.
fn valid_column_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Format one frame as extended XYZ text (count line, comment line, atom lines).
///
/// The structure is checked first: inconsistent lengths, non-finite positions, forces, cell,
/// energy or virial, names that would break the format, and `info` keys that would be read
/// back as something else (for example an `info["energy"]`) are [`ExtxyzError::Write`] errors.
pub fn frame_to_string(s: &Structure, opts: &WriteOptions) -> Result<String, ExtxyzError> {
    let werr = |message: String| ExtxyzError::Write {
        origin: s.origin.to_string(),
        message,
    };
    check_writable(s, opts).map_err(werr)?;

    let n = s.len();
    let mut out = String::with_capacity(256 + n * 64);
    let _ = writeln!(out, "{n}");

    // Comment line.
    if let Some(c) = &s.cell {
        out.push_str("Lattice=");
        push_reals_quoted(c.as_flattened(), &mut out);
        out.push(' ');
    }
    out.push_str("Properties=species:S:1:pos:R:3");
    if s.forces.is_some() {
        let _ = write!(out, ":{}:R:3", opts.forces_key);
    }
    for (name, data) in &s.arrays {
        let ty = match data {
            PropData::Real { .. } => 'R',
            PropData::Int { .. } => 'I',
            PropData::Bool { .. } => 'L',
            PropData::Str(_) => 'S',
        };
        let _ = write!(out, ":{name}:{ty}:{}", data.ncols());
    }
    if let Some(e) = s.energy {
        out.push(' ');
        push_word(&opts.energy_key, &mut out);
        out.push('=');
        push_shortest(e, &mut out);
    }
    let _ = write!(out, " pbc=\"{}\"", fmt_pbc(s.pbc));
    if let Some(ct) = &s.config_type {
        out.push_str(" config_type=");
        push_word(ct, &mut out);
    }
    if let Some(v) = &s.virial {
        // ASE order: column-major.
        let mut flat = [0.0; 9];
        for (i, row) in v.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                flat[i + 3 * j] = *x;
            }
        }
        out.push_str(" virial=");
        push_reals_quoted(&flat, &mut out);
    }
    for (key, value) in &s.info {
        out.push(' ');
        push_word(key, &mut out);
        out.push('=');
        match value {
            InfoValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            InfoValue::Real(x) => push_shortest(*x, &mut out),
            InfoValue::Bool(b) => out.push(if *b { 'T' } else { 'F' }),
            InfoValue::Str(t) => push_word(t, &mut out),
            InfoValue::Reals(v) => push_reals_quoted(v, &mut out),
        }
    }
    out.push('\n');

    // Atom lines.
    let mut num = String::new();
    let mut push_real = |x: f64, f: RealFormat, width: usize, out: &mut String| {
        num.clear();
        f.format(x, &mut num);
        let _ = write!(out, " {num:>width$}");
    };
    for a in 0..n {
        let _ = write!(out, "{:<2}", s.symbols[a]);
        for &x in &s.positions[a] {
            push_real(x, opts.positions, 16, &mut out);
        }
        if let Some(f) = &s.forces {
            for &x in &f[a] {
                push_real(x, opts.forces, 16, &mut out);
            }
        }
        for (_, data) in &s.arrays {
            match data {
                PropData::Real { ncols, data } => {
                    for &x in &data[a * ncols..(a + 1) * ncols] {
                        push_real(x, opts.arrays, 12, &mut out);
                    }
                }
                PropData::Int { ncols, data } => {
                    for x in &data[a * ncols..(a + 1) * ncols] {
                        let _ = write!(out, " {x:>8}");
                    }
                }
                PropData::Bool { ncols, data } => {
                    for &x in &data[a * ncols..(a + 1) * ncols] {
                        out.push_str(if x { " T" } else { " F" });
                    }
                }
                PropData::Str(v) => {
                    out.push(' ');
                    out.push_str(&v[a]);
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Everything that would make the written frame invalid or read back differently.
fn check_writable(s: &Structure, opts: &WriteOptions) -> Result<(), String> {
    let n = s.len();
    if s.symbols.len() != n {
        return Err(format!(
            "{} symbols for {n} positions; give one symbol per atom",
            s.symbols.len()
        ));
    }
    if let Some((a, sym)) = s
        .symbols
        .iter()
        .enumerate()
        .find(|(_, t)| !valid_column_word(t))
    {
        return Err(format!(
            "atom {} has symbol '{sym}', which is empty or contains whitespace",
            a + 1
        ));
    }
    if let Some(a) = s
        .positions
        .iter()
        .position(|p| p.iter().any(|x| !x.is_finite()))
    {
        return Err(format!("atom {} has a non-finite position", a + 1));
    }
    if let Some(f) = &s.forces {
        if f.len() != n {
            return Err(format!(
                "{} forces for {n} atoms; give one force per atom",
                f.len()
            ));
        }
        if let Some(a) = f.iter().position(|p| p.iter().any(|x| !x.is_finite())) {
            return Err(format!("atom {} has a non-finite force", a + 1));
        }
    }
    match &s.cell {
        None if s.pbc.iter().any(|&p| p) => {
            return Err(format!(
                "pbc=\"{}\" without a cell; set the cell or make pbc all false",
                fmt_pbc(s.pbc)
            ));
        }
        Some(c) => {
            if c.iter().flatten().any(|x| !x.is_finite()) {
                return Err("the cell has a non-finite number".to_string());
            }
            for (k, name) in ["a", "b", "c"].iter().enumerate() {
                if s.pbc[k] && c[k].iter().all(|&x| x == 0.0) {
                    return Err(format!("lattice vector {name} is zero but periodic"));
                }
            }
        }
        None => {}
    }
    if s.energy.is_some_and(|e| !e.is_finite()) {
        return Err("the energy is not finite".to_string());
    }
    if s.virial
        .is_some_and(|v| v.iter().flatten().any(|x| !x.is_finite()))
    {
        return Err("the virial has a non-finite number".to_string());
    }
    if let Some(ct) = &s.config_type
        && (ct.is_empty() || ct.trim() != ct || has_line_break(ct))
    {
        return Err(format!(
            "config_type '{ct}' is empty, has leading or trailing blanks, or contains a line \
             break, which would not read back the same; trim it or set it to None"
        ));
    }
    if opts.energy_key.is_empty() || has_line_break(&opts.energy_key) {
        return Err("WriteOptions::energy_key is empty or contains a line break".to_string());
    }
    if !valid_property_name(&opts.forces_key)
        || ["species", "pos"].contains(&opts.forces_key.as_str())
    {
        return Err(format!(
            "WriteOptions::forces_key '{}' is not a usable property name",
            opts.forces_key
        ));
    }

    let mut names: HashSet<&str> = HashSet::new();
    for (name, data) in &s.arrays {
        if !valid_property_name(name) {
            return Err(format!(
                "array name '{name}' is empty or contains whitespace or one of : \" ' {{ }} [ ] \
                 = \\ ,; rename it"
            ));
        }
        if name == "species" || name == "pos" || *name == opts.forces_key {
            return Err(format!(
                "array '{name}' would be read back as the species, positions or forces; rename \
                 it (forces belong in Structure::forces)"
            ));
        }
        if !names.insert(name) {
            return Err(format!("array '{name}' appears twice"));
        }
        let (len, want) = match data {
            PropData::Real { ncols, data } => (data.len(), ncols * n),
            PropData::Int { ncols, data } => (data.len(), ncols * n),
            PropData::Bool { ncols, data } => (data.len(), ncols * n),
            PropData::Str(v) => (v.len(), n),
        };
        if data.ncols() == 0 {
            return Err(format!("array '{name}' has 0 columns"));
        }
        if len != want {
            return Err(format!(
                "array '{name}' has {len} values, expected {want} ({n} atoms x {} columns)",
                data.ncols()
            ));
        }
        if let PropData::Str(v) = data
            && let Some(a) = v.iter().position(|t| !valid_column_word(t))
        {
            return Err(format!(
                "array '{name}' of atom {} is '{}', which is empty or contains whitespace",
                a + 1,
                v[a]
            ));
        }
    }

    for (key, value) in &s.info {
        if key.is_empty() || has_line_break(key) {
            return Err(format!(
                "info key '{key}' is empty or contains a line break"
            ));
        }
        let lower = key.to_ascii_lowercase();
        let taken = matches!(lower.as_str(), "lattice" | "properties" | "pbc")
            || *key == opts.energy_key
            || key == "config_type"
            || key == "virial"
            || (key == "stress" && s.virial.is_none());
        if taken {
            return Err(format!(
                "info key '{key}' would be read back as the cell, properties, pbc, energy, \
                 config_type or virial; store it in the Structure field or rename it"
            ));
        }
        if let InfoValue::Str(t) = value
            && has_line_break(t)
        {
            return Err(format!("info '{key}' contains a line break"));
        }
    }
    Ok(())
}

/// Write one frame to `w`. The frame is formatted in full before anything is written, so an
/// invalid structure writes nothing.
pub fn write_frame<W: Write + ?Sized>(
    w: &mut W,
    s: &Structure,
    opts: &WriteOptions,
) -> Result<(), ExtxyzError> {
    let text = frame_to_string(s, opts)?;
    w.write_all(text.as_bytes())
        .map_err(|source| ExtxyzError::Io {
            file: "<output>".to_string(),
            context: format!("cannot write {}", s.origin),
            source,
        })
}

/// Write all `frames` to `path` atomically: they go to a temporary file in the same directory,
/// which is synced and then renamed over `path`. A reader sees either the old file or the whole
/// new one; on any error (including an unwritable structure) the temporary file is removed and
/// `path` is untouched. Returns the number of frames written.
pub fn write_file_atomic<'a, I>(
    path: impl AsRef<Path>,
    frames: I,
    opts: &WriteOptions,
) -> Result<usize, ExtxyzError>
where
    I: IntoIterator<Item = &'a Structure>,
{
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_err = |context: String| {
        let name = name.clone();
        move |source| ExtxyzError::Io {
            file: name,
            context,
            source,
        }
    };
    let file_name = path.file_name().ok_or_else(|| ExtxyzError::Io {
        file: name.clone(),
        context: "not a file path".to_string(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tmp, file) = create_temp(&dir, file_name).map_err(io_err(format!(
        "cannot create a temporary file in {}",
        dir.display()
    )))?;

    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 16, file);
        let mut count = 0;
        for s in frames {
            let text = frame_to_string(s, opts)?;
            w.write_all(text.as_bytes())
                .map_err(io_err(format!("cannot write {}", tmp.display())))?;
            count += 1;
        }
        let file = w
            .into_inner()
            .map_err(|e| io_err(format!("cannot write {}", tmp.display()))(e.into_error()))?;
        file.sync_all()
            .map_err(io_err(format!("cannot sync {}", tmp.display())))?;
        drop(file);
        std::fs::rename(&tmp, path)
            .map_err(io_err(format!("cannot rename {} to it", tmp.display())))?;
        Ok(count)
    })();
    match result {
        Ok(count) => {
            // Make the rename durable; failure here does not undo a completed write.
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(count)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Create a new, uniquely named hidden file next to the target.
fn create_temp(dir: &Path, file_name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..100 {
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp.{pid}.{k}"));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

#[cfg(test)]
mod tests;
