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
//! in other columns and keys they are kept. Physically absurd values are errors too: beyond the bounds
//! of [`crate::structure::limits`]: a coordinate or lattice component beyond 1e7 Å, a force
//! component beyond 1e8 eV/Å, an energy beyond 1e7 eV per atom, a fully periodic cell with less
//! than 0.5 Å^3 per atom. The error names the frame (counted from 1), the line (of the atom, or
//! the comment line) and the value.
//!
//! A frame without the energy key or the forces property is read without that label (the
//! reader does not guess other keys); [`missing_label`] finds such frames and lists the
//! energy-like keys and per-atom properties they have instead, for commands that need labels.
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
//! [`append_frame`] appends one frame ([`AppendFrame`]) to a file shared by concurrent writers:
//! one locked append and fsync, rolled back on a write error, with a journal that lets the next
//! append (and [`Reader::open`]) undo exactly the incomplete frame of a killed appender; an
//! incomplete last frame it did not write is an error, never cut.
//!
//! Reading what was written gives back the same structure, up to the written precision, with
//! three exceptions inherent to the format (ASE behaves the same): an [`InfoValue::Str`] whose
//! text reads as a number or logical comes back as that number or logical, an empty
//! [`InfoValue::Str`] comes back as an empty [`InfoValue::Reals`] (both are written `" "`,
//! because ASE misreads `key=""` followed by another key), and a one-element
//! [`InfoValue::Reals`] comes back as [`InfoValue::Real`].

mod append;
mod error;
mod journal;
mod labels;
mod options;
mod parse;
mod reader;
mod writer;

pub use append::{AppendError, AppendFrame, append_frame, append_text, check_appendable};
pub use error::{ExtxyzError, Warning, WarningCallback};
pub use labels::{Label, MissingLabel, missing_label};
pub use options::ReadOptions;
pub use reader::{Reader, read_file, read_str};
pub use writer::{RealFormat, WriteOptions, frame_to_string, write_file_atomic, write_frame};

// Names used by the links of the module documentation.
#[cfg(doc)]
use crate::structure::{InfoValue, Structure};
#[cfg(doc)]
use std::io::BufRead;

#[cfg(test)]
mod tests;
