//! Reading: [`ReadOptions`], the streaming [`Reader`] (bounded line source, frame boundaries,
//! truncated-tail handling) and the collecting [`read_file`] / [`read_str`]. The text of a frame
//! is parsed by [`super::parse`].

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::error::{ExtxyzError, Warning, repair_hint};
use super::options::ReadOptions;
use super::parse::{FrameBuilder, parse_header, truncate_for_message};
use crate::structure::{Origin, Structure};

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
    /// 1-based line of the count of the frame being read.
    frame_start: usize,
    done: bool,
    dropped_tail: Option<Warning>,
    /// Warning for the end of the input, when it stops before an interrupted append.
    journal_tail: Option<Warning>,
}

impl Reader<BufReader<File>> {
    /// Open a file for streaming. The file name in errors is `path` as given.
    ///
    /// A file that ends with the incomplete frame of an interrupted [`super::append_frame`]
    /// (in progress in another process, or killed; its journal proves it) is read up to the
    /// end of its whole frames, whatever [`ReadOptions::allow_truncated_tail`] says, and the
    /// incomplete frame is reported as a dropped tail.
    pub fn open(path: impl AsRef<Path>, opts: ReadOptions) -> Result<Self, ExtxyzError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| ExtxyzError::Io {
            file: name.clone(),
            context: "cannot open for reading".to_string(),
            source,
        })?;
        let stop = interrupted_append(path, &f);
        let mut r = Reader::new(BufReader::with_capacity(1 << 16, f), &name, opts);
        if let Some((length, journal)) = stop {
            r.src.remaining = length;
            r.journal_tail = Some(Warning {
                file: name,
                line: 0,
                message: format!(
                    "stopped at byte {length}, before the incomplete frame of an interrupted \
                     append recorded in {} (the next append removes it)",
                    journal.display()
                ),
            });
        }
        Ok(r)
    }
}

/// Where an interrupted append to `path` (open as `f`) starts, and its journal, if the file
/// ends with one.
fn interrupted_append(path: &Path, f: &File) -> Option<(u64, std::path::PathBuf)> {
    use super::journal;
    let jpath = journal::path_for(path);
    let journal::Found::Entry(entry) = journal::read(&jpath).ok()? else {
        return None;
    };
    let meta = f.metadata().ok()?;
    let incomplete = entry.is_for(&meta) && entry.incomplete_in(f, meta.len()).ok()?;
    incomplete.then_some((entry.length, jpath))
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
                remaining: u64::MAX,
            },
            file: name.to_string(),
            opts,
            frame: 0,
            frame_start: 1,
            done: false,
            dropped_tail: None,
            journal_tail: None,
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
            // gzip's magic number at the start of the file.
            let what = if self.src.line_no == 1 && self.src.buf.starts_with(&[0x1f, 0x8b]) {
                "this is a gzip-compressed file: decompress it first (`gunzip -k FILE`)"
            } else {
                "extended XYZ is text: check that this is the right file"
            };
            self.perr(
                self.src.line_no,
                format!(
                    "line is not valid UTF-8 (byte {}); {what}",
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
        self.frame_start = start;
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
        let s = frame.finish(header, origin);
        // Physically absurd values (crate::structure::limits) are errors at the atom's line, or
        // at the comment line for the cell and energy.
        if let Some(p) = s.limits_problem() {
            let line = p.atom.map_or(start + 1, |i| start + 2 + i);
            return Err(self.perr(line, format!("frame {}: {}", self.frame + 1, p.message)));
        }
        self.frame += 1;
        Ok(Some(s))
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
                if let Some(mut w) = self.journal_tail.take() {
                    w.line = self.src.line_no + 1;
                    if let Some(cb) = &self.opts.on_warning {
                        cb(&w);
                    }
                    self.dropped_tail = Some(w);
                }
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
                            self.frame + 1,
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
                             cut off mid-write: {})",
                            repair_hint(self.frame_start)
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
    /// Bytes left to read (the input is cut there).
    remaining: u64,
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
            let avail = &avail[..avail
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX))];
            if avail.is_empty() {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                self.line_no += 1;
                self.unterminated = true;
                self.strip_cr();
                self.strip_bom();
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
            let used = if newline { take + 1 } else { take };
            self.input.consume(used);
            self.remaining -= used as u64;
            if newline {
                self.line_no += 1;
                self.unterminated = false;
                self.strip_cr();
                self.strip_bom();
                return Ok(true);
            }
        }
    }

    fn strip_cr(&mut self) {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
    }

    /// A UTF-8 byte-order mark before the first line (some Windows editors write one) is not
    /// part of the atom count.
    fn strip_bom(&mut self) {
        if self.line_no == 1 && self.buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.buf.drain(..3);
        }
    }
}
