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

/// Where a structure came from, for error messages: displayed with the frame counted from 1,
/// like lines ("train.xyz, frame 12 (line 3041)" is the twelfth frame).
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
            Some(file) => write!(f, "{}, frame {} (line {})", file, self.frame + 1, self.line),
            None => write!(f, "frame {}", self.frame + 1),
        }
    }
}

/// Bounds beyond which input is not physics but corrupt or mislabelled data.
///
/// They are deliberately generous: each lies beyond anything a real training set, electronic
/// structure label or MD run can hold, so a value past one is an error (overflowed or garbage
/// numbers, wrong units by many orders of magnitude, a cell given in the wrong units), never a
/// judgement call. They do not catch subtle mistakes (forces in eV/nm, a cell 10 % too small).
/// The extended XYZ reader applies them to every frame it reads, the neighbour list to every
/// structure it is built for, the fit to the structures it is given.
pub mod limits {
    /// Largest accepted |Cartesian coordinate| and |lattice vector component| (Å), 1 mm. No
    /// atomistic cell comes near it (a billion-atom box is ~3e3 Å on a side), and at 1e7 Å a
    /// double still resolves 2e-9 Å, so a structure shifted far from the origin still evaluates
    /// exactly; above ~1e16 Å it cannot even tell an atom from its periodic image (x = 1e300 made
    /// an atom "coincide" with itself).
    pub const MAX_COORDINATE: f64 = 1e7;

    /// Largest accepted |force component| (eV/Å) of a reference label: the bare Coulomb repulsion of
    /// two of the heaviest nuclei (Z = 118) 0.1 Å apart is 14.4 eV Å × 118² / (0.1 Å)² =
    /// 2.0e7 eV/Å, and screening (ZBL) brings it to 1.3e7 eV/Å; electronic-structure labels stop
    /// long before (pseudopotential cores overlap near 1 Å, where ZBL gives at most 3.5e3 eV/Å).
    /// Rounded up to 1e8 so that no close-contact frame of any element is refused.
    pub const MAX_FORCE: f64 = 1e8;

    /// Largest accepted |energy| per atom (eV) of a reference label. All-electron total energies
    /// are the largest in use: about -5e5 eV for a gold atom (-19,000 Hartree); the Thomas-Fermi
    /// estimate 0.77 Z^(7/3) Hartree gives 1.4e6 eV for Z = 118. Rounded up to 1e7.
    pub const MAX_ENERGY_PER_ATOM: f64 = 1e7;

    /// Smallest accepted cell volume per atom (Å^3) of a fully periodic frame. The densest matter
    /// in atomistic data sets is hydrogen in the TPa range, around 1 Å^3/atom (diamond: 5.7,
    /// lithium: 21.6). A cell below this is a cell in the wrong units or a wrong atom count, and its
    /// neighbour lists would hold thousands of neighbours per atom (250 atoms in a 1 Å cube:
    /// 1.7e5 each, gigabytes).
    pub const MIN_VOLUME_PER_ATOM: f64 = 0.5;

    /// Most neighbours per atom a neighbour list accepts (a memory guard: ~100 kB of list and
    /// ~30 MB of descriptor derivatives per atom at this size). Matter at 0.1 atoms/Å^3 reaches
    /// it only with a 21 Å cutoff, hydrogen at 1 atom/Å^3 with 9.8 Å.
    pub const MAX_NEIGHBORS: usize = 4000;

    /// A reference force (|F|, eV/Å) above which a label is accepted but warned about: training
    /// data's forces are tens of eV/Å at most, so more is a unit mistake (Ry/bohr, Hartree/bohr,
    /// kcal/mol/Å) or atoms nearly on top of each other.
    pub const SUSPECT_FORCE: f64 = 100.0;
}

/// A value beyond the bounds of [`limits`], found by [`Structure::limits_problem`].
#[derive(Clone, Debug, PartialEq)]
pub struct LimitProblem {
    /// Zero-based index of the offending atom, when it is about one atom.
    pub atom: Option<usize>,
    /// What is wrong (naming the atom, 1-based unless named otherwise, and the value) and what
    /// to do.
    pub message: String,
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

    /// The first value beyond the bounds of [`limits`] (cell, positions, reference forces and
    /// energy, volume per atom of a fully periodic cell), in that order; `None` when all are
    /// within them. Non-finite values are beyond every bound.
    pub fn limits_problem(&self) -> Option<LimitProblem> {
        self.limits_problem_naming(&|i| format!("atom {}", i + 1))
    }

    /// [`Structure::limits_problem`] with atoms named by `name` (zero-based index in; the
    /// Python package names them `atoms[i]`, as ASE counts them).
    pub fn limits_problem_naming(&self, name: &dyn Fn(usize) -> String) -> Option<LimitProblem> {
        use limits::*;
        let big = |v: &[f64; 3], max: f64| !v.iter().all(|x| x.abs() <= max);
        let fmt3 = |v: &[f64; 3]| format!("({:?}, {:?}, {:?})", v[0], v[1], v[2]);
        if let Some(c) = &self.cell
            && let Some(k) = c.iter().position(|v| big(v, MAX_COORDINATE))
        {
            return Some(LimitProblem {
                atom: None,
                message: format!(
                    "lattice vector {} is {} Å, beyond {MAX_COORDINATE:e} Å: no atomistic cell \
                     is this large; give the Lattice in Å",
                    ["a", "b", "c"][k],
                    fmt3(&c[k])
                ),
            });
        }
        if let Some(i) = self
            .positions
            .iter()
            .position(|p| p.iter().any(|x| !x.is_finite()))
        {
            return Some(LimitProblem {
                atom: Some(i),
                message: format!(
                    "{} is at {}: a position must be a finite number (fix the atom or \
                     remove the frame)",
                    name(i),
                    fmt3(&self.positions[i])
                ),
            });
        }
        if let Some(i) = self.positions.iter().position(|p| big(p, MAX_COORDINATE)) {
            return Some(LimitProblem {
                atom: Some(i),
                message: format!(
                    "{} is at {} Å, beyond {MAX_COORDINATE:e} Å from the origin: no \
                     atomistic structure is this large; positions must be Cartesian coordinates \
                     in Å (fix the atom or remove the frame)",
                    name(i),
                    fmt3(&self.positions[i])
                ),
            });
        }
        if let Some(f) = &self.forces
            && let Some(i) = f.iter().position(|v| big(v, MAX_FORCE))
        {
            return Some(LimitProblem {
                atom: Some(i),
                message: format!(
                    "the reference force on {} is {} eV/Å, beyond {MAX_FORCE:e} eV/Å: more \
                     than the bare repulsion of any two nuclei 0.1 Å apart, so not a physical \
                     force; forces must be in eV/Å (fix the label or remove the frame)",
                    name(i),
                    fmt3(&f[i])
                ),
            });
        }
        if self.is_empty() && (self.energy.is_some() || self.virial.is_some()) {
            // E / 0 atoms: one such frame ruins every per-atom energy error and fit.
            return Some(LimitProblem {
                atom: None,
                message: "the frame has 0 atoms but a reference energy or stress: a labelled \
                          frame needs at least one atom (remove the frame)"
                    .to_string(),
            });
        }
        if let Some(e) = self.energy
            && (!e.is_finite() || e.abs() > MAX_ENERGY_PER_ATOM * self.len().max(1) as f64)
        {
            return Some(LimitProblem {
                atom: None,
                message: format!(
                    "the reference energy {e:e} eV of {} atoms is beyond {MAX_ENERGY_PER_ATOM:e} \
                     eV per atom, more than the all-electron total energy of any atom; energies \
                     must be total energies in eV (fix the label or remove the frame)",
                    self.len()
                ),
            });
        }
        if self.pbc.iter().all(|&p| p)
            && !self.is_empty()
            && let Some(v) = self.volume()
            && (v.is_nan() || v / (self.len() as f64) < MIN_VOLUME_PER_ATOM)
        {
            return Some(LimitProblem {
                atom: None,
                message: format!(
                    "the periodic cell holds {} atoms in {v:.4} Å^3, {:.4} Å^3 per atom, below \
                     {MIN_VOLUME_PER_ATOM} Å^3 per atom: denser than any matter (its neighbour \
                     lists would hold thousands of atoms each); check the Lattice (Å) and the \
                     atom count",
                    self.len(),
                    v / self.len() as f64
                ),
            });
        }
        None
    }

    /// The atom with the largest reference force and that force's magnitude (eV/Å); None
    /// without forces or atoms.
    pub fn largest_force(&self) -> Option<(usize, f64)> {
        let f = self.forces.as_ref().filter(|f| !f.is_empty())?;
        Some(
            f.iter()
                .map(|v| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt())
                .enumerate()
                .fold((0, 0.0f64), |m, (a, x)| if x > m.1 { (a, x) } else { m }),
        )
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
