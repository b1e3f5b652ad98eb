//! Atomic structures: the in-memory form of one frame of extended XYZ.
//!
//! Units are LAMMPS `metal` throughout: positions and cell in Å, energies in eV, forces in eV/Å,
//! virials in eV (the virial is `sum r ⊗ f`, i.e. `-stress * volume`, as in ASE and LAMMPS).
//!
//! Layer 1 (foundation): imports nothing of the crate.

use std::collections::BTreeMap;

/// Extra per-atom data carried through reading and writing (columns of `Properties=` other than
/// species, positions and the reference forces).
#[derive(Clone, Debug, PartialEq)]
pub enum PropData {
    /// Real numbers, `ncols` per atom, row-major (`data[atom * ncols + col]`).
    Real { ncols: usize, data: Vec<f64> },
    /// Integers, `ncols` per atom, row-major.
    Int { ncols: usize, data: Vec<i64> },
    /// Logicals, `ncols` per atom, row-major.
    Bool { ncols: usize, data: Vec<bool> },
    /// One string per atom.
    Str(Vec<String>),
}

impl PropData {
    /// Number of columns per atom.
    pub fn ncols(&self) -> usize {
        match self {
            PropData::Real { ncols, .. }
            | PropData::Int { ncols, .. }
            | PropData::Bool { ncols, .. } => *ncols,
            PropData::Str(_) => 1,
        }
    }
}

/// Value of a key in the extended XYZ comment line that the reader does not interpret itself.
#[derive(Clone, Debug, PartialEq)]
pub enum InfoValue {
    Int(i64),
    Real(f64),
    Bool(bool),
    Str(String),
    /// Several numbers (for example `"1 2 3"`), kept as reals.
    Reals(Vec<f64>),
}

/// Where a structure came from, for error messages ("train.xyz, frame 12 (line 3041)").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    /// File it was read from, if any.
    pub file: Option<String>,
    /// Zero-based frame index in that file.
    pub frame: usize,
    /// One-based line number of the frame's first line (the atom count).
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}, frame {} (line {})", file, self.frame, self.line),
            None => write!(f, "frame {}", self.frame),
        }
    }
}

/// One atomic configuration with optional reference labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Structure {
    /// Lattice vectors as rows (ASE convention: `cell[0]` is **a**), in Å. `None` for a
    /// non-periodic structure given without a `Lattice=`.
    pub cell: Option<[[f64; 3]; 3]>,
    /// Periodicity along each lattice vector.
    pub pbc: [bool; 3],
    /// Cartesian positions in Å.
    pub positions: Vec<[f64; 3]>,
    /// Chemical symbol (species name) of each atom.
    pub symbols: Vec<String>,
    /// Reference total energy in eV.
    pub energy: Option<f64>,
    /// Reference forces in eV/Å.
    pub forces: Option<Vec<[f64; 3]>>,
    /// Reference virial in eV (`sum r ⊗ f = -stress * volume`), if the file gave `virial=` or `stress=`.
    pub virial: Option<[[f64; 3]; 3]>,
    /// `config_type=` of the frame, used to group data (for example clusters by label).
    pub config_type: Option<String>,
    /// Other comment-line keys, preserved so that writing a read frame loses nothing.
    pub info: BTreeMap<String, InfoValue>,
    /// Other per-atom columns, in file order, preserved likewise.
    pub arrays: Vec<(String, PropData)>,
    /// Where the frame came from.
    pub origin: Origin,
}

impl Structure {
    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// True when the structure has no atoms.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Cell volume in Å^3 (absolute value of the triple product), if there is a cell.
    pub fn volume(&self) -> Option<f64> {
        self.cell.map(|c| {
            let [a, b, cc] = c;
            (a[0] * (b[1] * cc[2] - b[2] * cc[1]) - a[1] * (b[0] * cc[2] - b[2] * cc[0])
                + a[2] * (b[0] * cc[1] - b[1] * cc[0]))
                .abs()
        })
    }

    /// Find an extra per-atom array by name.
    pub fn array(&self, name: &str) -> Option<&PropData> {
        self.arrays.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// Set (or replace) an extra per-atom array of reals with `ncols` columns.
    pub fn set_real_array(&mut self, name: &str, ncols: usize, data: Vec<f64>) {
        debug_assert_eq!(data.len(), ncols * self.len());
        let value = PropData::Real { ncols, data };
        if let Some(slot) = self.arrays.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value;
        } else {
            self.arrays.push((name.to_string(), value));
        }
    }
}
