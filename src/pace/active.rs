//! A pacemaker potential as aceuq uses it for uncertainty ([`PacePotential`]: C-tilde `.ace` /
//! `.yace`, or a B-basis `.yaml`), its per-atom projections, and active-set inverses
//! ([`ActiveSetInverse`], the `.asi` files of ML-PACE's `pace/extrapolation`).
//!
//! The grade of an atom with projection row `x` against the inverse `A⁻¹` of its species'
//! active-set matrix (rows = projections of the active atoms) is `gamma = max_i |(x A⁻¹)_i|`:
//! below 1 inside the set's hull (interpolation), above 1 outside (extrapolation).

use super::asi::{self, AsiMatrix};
use super::bbasis::BBasisPotential;
use super::{PaceError, PaceModel, PaceScratch};
use crate::structure::Structure;
use std::path::Path;

/// Name of the extra array that marks an `.asi` built on C-tilde projections (see
/// [`write_active_set`]); it holds the projection count of every element.
const CTILDE_MARKER: &str = "aceuq_ctilde_projections";

/// A pacemaker potential with what its extrapolation grades need.
#[derive(Clone, Debug)]
pub enum PacePotential {
    /// `.ace` or `.yace`: projections from the C-tilde basis ([`PaceModel::atom_projections`]).
    CTilde(PaceModel),
    /// A B-basis `.yaml`: ML-PACE's projections (`pace/extrapolation`).
    BBasis(Box<BBasisPotential>),
}

/// Whether `path` names a pacemaker potential (`.ace`, `.yace` or a B-basis `.yaml`), by its
/// extension.
pub fn is_pacemaker_potential(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("ace") | Some("yace") | Some("yaml")
    )
}

impl PacePotential {
    /// Read a pacemaker potential of any supported format.
    ///
    /// An element without a single basis function is refused: it is what a file cut short at a
    /// line end leaves (the YAML formats carry no counts to check against), and it would give
    /// such atoms no energy beyond E0 and the core repulsion. A list cut between two functions
    /// cannot be told from a smaller potential.
    pub fn load(path: &Path) -> Result<PacePotential, PaceError> {
        let pot = if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            PacePotential::BBasis(Box::new(BBasisPotential::load(path)?))
        } else {
            PacePotential::CTilde(PaceModel::load(path)?)
        };
        let m = pot.model();
        if let Some(k) = m
            .species
            .iter()
            .position(|b| b.rank1.is_empty() && b.funcs.is_empty())
        {
            return Err(PaceError::Incomplete(format!(
                "{}: element {} has no basis function: the file is incomplete (cut short?) or \
                 not a whole potential; copy it again from where pacemaker wrote it",
                path.display(),
                m.elements[k]
            )));
        }
        Ok(pot)
    }

    /// The evaluated model (energies and forces).
    pub fn model(&self) -> &PaceModel {
        match self {
            PacePotential::CTilde(m) => m,
            PacePotential::BBasis(b) => b.model(),
        }
    }

    /// What kind of file it was, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            PacePotential::CTilde(_) => "pacemaker C-tilde potential",
            PacePotential::BBasis(_) => "pacemaker B-basis potential",
        }
    }

    /// Projections per atom of species `si` (the non-linear grade's: functions × densities).
    pub fn nprojections(&self, si: usize) -> usize {
        match self {
            PacePotential::CTilde(m) => m.nprojections(si),
            PacePotential::BBasis(b) => b.nprojections(si),
        }
    }

    /// Projection row of one atom (see [`PaceModel::atom_projections`]).
    pub fn atom_projections(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        out: &mut [f64],
    ) -> Result<(), PaceError> {
        match self {
            PacePotential::CTilde(m) => m.atom_projections(ws, si, rij, sj, out),
            PacePotential::BBasis(b) => b.atom_projections(ws, si, rij, sj, out),
        }
    }

    /// Projection row of one atom for a grade of the kind of `asi` (linear or not).
    pub fn grade_projections(
        &self,
        asi: &ActiveSetInverse,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        out: &mut Vec<f64>,
    ) -> Result<(), PaceError> {
        out.resize(asi.species[si].0, 0.0);
        match (self, asi.linear) {
            (PacePotential::BBasis(b), true) => b.atom_projections_linear(ws, si, rij, sj, out),
            _ => self.atom_projections(ws, si, rij, sj, out),
        }
    }

    /// [`PacePotential::grade_projections`] from the atomic base already in `ws` (left by the
    /// energy of the same atom: [`PaceModel::atom_energy_grad`]).
    pub fn grade_projections_from_base(
        &self,
        asi: &ActiveSetInverse,
        ws: &mut PaceScratch,
        si: usize,
        out: &mut Vec<f64>,
    ) {
        out.resize(asi.species[si].0, 0.0);
        match (self, asi.linear) {
            (PacePotential::BBasis(b), true) => b.atom_projections_linear_from_base(ws, si, out),
            (PacePotential::BBasis(b), false) => b.atom_projections_from_base(ws, si, out),
            (PacePotential::CTilde(m), _) => m.atom_projections_from_base(ws, si, out),
        }
    }

    /// Per atom of `s`: species index and the projection row of the kind `asi` grades (linear or
    /// not), as the MD step computes it.
    pub fn grade_rows(
        &self,
        asi: &ActiveSetInverse,
        s: &Structure,
    ) -> Result<Vec<(usize, Vec<f64>)>, PaceError> {
        let mut buf = vec![];
        self.model().structure_rows(
            s,
            |si| asi.species[si].0,
            |ws, si, rij, sj, out| {
                self.grade_projections(asi, ws, si, rij, sj, &mut buf)?;
                out.copy_from_slice(&buf);
                Ok(())
            },
        )
    }

    /// Per-atom grade of the atoms of `s` with `asi`, as the MD step computes them (one matrix
    /// product per species and block of atoms).
    pub fn grades(&self, asi: &ActiveSetInverse, s: &Structure) -> Result<Vec<f64>, PaceError> {
        let rows = self.grade_rows(asi, s)?;
        let mut out = vec![0.0; rows.len()];
        let mut tmp = vec![];
        for sp in 0..asi.species.len() {
            let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].0 == sp).collect();
            let flat: Vec<f64> = idx
                .iter()
                .flat_map(|&i| rows[i].1.iter().copied())
                .collect();
            let mut g = vec![0.0; idx.len()];
            asi.gamma_rows(sp, &flat, &mut g, &mut tmp);
            for (&i, v) in idx.iter().zip(g) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Per atom of `s`: species index and projection row.
    pub fn structure_rows(&self, s: &Structure) -> Result<Vec<(usize, Vec<f64>)>, PaceError> {
        self.model().structure_rows(
            s,
            |si| self.nprojections(si),
            |ws, si, rij, sj, out| self.atom_projections(ws, si, rij, sj, out),
        )
    }
}

/// Per species the inverse of its active-set matrix (`m × m`, row-major), as in ML-PACE's
/// `.asi` files.
#[derive(Clone, Debug)]
pub struct ActiveSetInverse {
    /// Per species `(m, inverse)`.
    pub species: Vec<(usize, Vec<f64>)>,
    /// Linear grade (ML-PACE's projections `B_k` without the embedding derivative; only from a
    /// B-basis potential's `.asi`).
    pub linear: bool,
}

impl ActiveSetInverse {
    /// Grade of projection row `x` of species `s` (`acc` is scratch).
    pub fn gamma(&self, s: usize, x: &[f64], acc: &mut Vec<f64>) -> f64 {
        let (m, inv) = &self.species[s];
        let m = *m;
        debug_assert_eq!(x.len(), m);
        acc.clear();
        acc.resize(m, 0.0);
        for (k, &xk) in x.iter().enumerate() {
            if xk != 0.0 {
                for (a, v) in acc.iter_mut().zip(&inv[k * m..(k + 1) * m]) {
                    *a += xk * v;
                }
            }
        }
        max_abs(acc)
    }

    /// Grades of the projection rows `rows` (row-major, `out.len()` rows of species `s`'s size)
    /// into `out`, one matrix product per block of [`GRADE_BLOCK`] rows (`tmp` is scratch): the
    /// values of [`ActiveSetInverse::gamma`] up to rounding, several times faster for large
    /// projections.
    pub fn gamma_rows(&self, s: usize, rows: &[f64], out: &mut [f64], tmp: &mut Vec<f64>) {
        let (m, inv) = &self.species[s];
        let m = *m;
        assert_eq!(
            rows.len(),
            out.len() * m,
            "gamma_rows: rows and output differ"
        );
        if m == 0 {
            out.fill(0.0);
            return;
        }
        for (block, o) in rows
            .chunks(GRADE_BLOCK * m)
            .zip(out.chunks_mut(GRADE_BLOCK))
        {
            let k = o.len();
            tmp.resize(k * m, 0.0);
            crate::uq::maxvol::rows_times_rect(block, k, m, inv, m, &mut tmp[..k * m]);
            for (g, r) in o.iter_mut().zip(tmp.chunks_exact(m)) {
                *g = max_abs(r);
            }
        }
    }
}

/// Rows per matrix product of [`ActiveSetInverse::gamma_rows`].
pub const GRADE_BLOCK: usize = 64;

/// `max_i |v_i|`; NaN if any entry is NaN (as aceuq's own grades do), so that the watch flags
/// the atom instead of a max() silently dropping it.
fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |g: f64, x| {
        if g.is_nan() || x.is_nan() {
            f64::NAN
        } else {
            g.max(x.abs())
        }
    })
}

/// Write the active-set inverses of `pot` (per species `(m, inverse)`, non-linear grade) to
/// `path`, atomically. For a B-basis `.yaml` it is ML-PACE's format (`pace/extrapolation` reads
/// it). For a C-tilde potential the projections are aceuq's own (ML-PACE grades only B-basis
/// potentials), and an extra array marks the file as such, so that it is never used with the
/// projections of a `.yaml`.
pub fn write_active_set(
    path: &Path,
    pot: &PacePotential,
    inverses: &[(usize, Vec<f64>)],
) -> Result<(), PaceError> {
    let name = path.display().to_string();
    let elements = &pot.model().elements;
    for (s, (m, inv)) in inverses.iter().enumerate() {
        if *m != pot.nprojections(s) || inv.len() != m * m {
            return Err(PaceError::Data(format!(
                "{name}: element {}: a {m} x {m} inverse for {} projections",
                elements[s],
                pot.nprojections(s)
            )));
        }
    }
    let matrices: Vec<AsiMatrix> = inverses
        .iter()
        .map(|(m, inv)| AsiMatrix {
            n: *m,
            data: inv.clone(),
        })
        .collect();
    let bytes = match pot {
        PacePotential::BBasis(_) => asi::asi_bytes(elements, &matrices)?,
        PacePotential::CTilde(_) => {
            let mut entries: Vec<(String, Vec<u8>)> = elements
                .iter()
                .zip(&matrices)
                .map(|(e, m)| (format!("{e}.npy"), asi::npy_bytes(&[m.n, m.n], &m.data)))
                .collect();
            let sizes: Vec<f64> = matrices.iter().map(|m| m.n as f64).collect();
            entries.push((
                format!("{CTILDE_MARKER}.npy"),
                asi::npy_bytes(&[sizes.len()], &sizes),
            ));
            asi::zip_stored(&entries)?
        }
    };
    let tmp = path.with_extension("asi.tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PaceError::Io(format!("{name}: cannot write: {e}"))
        })
}

/// Read an active-set inverse for `pot`, checking elements, kind and sizes.
pub fn read_active_set(path: &Path, pot: &PacePotential) -> Result<ActiveSetInverse, PaceError> {
    let name = path.display().to_string();
    let elements = &pot.model().elements;
    let bytes =
        std::fs::read(path).map_err(|e| PaceError::Io(format!("{name}: cannot read: {e}")))?;
    let arrays = asi::read_npz(&name, &bytes)?;
    let marked = arrays.iter().any(|a| a.name == CTILDE_MARKER);
    match pot {
        PacePotential::BBasis(b) => {
            if marked {
                return Err(PaceError::Data(format!(
                    "{name}: built by aceuq on the projections of a C-tilde potential (.ace or \
                     .yace), not on this B-basis potential's: build one for it with `aceuq \
                     activeset --model <potential>.yaml --data ...`"
                )));
            }
            let a = asi::parse_asi(&name, &bytes, elements, &b.projection_sizes())?;
            Ok(ActiveSetInverse {
                species: a.matrices.into_iter().map(|m| (m.n, m.data)).collect(),
                linear: a.linear,
            })
        }
        PacePotential::CTilde(m) => {
            if !marked {
                return Err(PaceError::Data(format!(
                    "{name}: an active-set inverse of a B-basis potential (ML-PACE's \
                     projections); a C-tilde potential (.ace/.yace) is graded on its own \
                     projections: build its .asi with `aceuq activeset --model <potential> \
                     --data ...`, or use the B-basis .yaml with this file"
                )));
            }
            // The marker only says whose projections these are; the element arrays are read
            // with the usual checks, as a non-linear grade.
            let sizes: Vec<(usize, usize)> = (0..elements.len())
                .map(|s| (usize::MAX, m.nprojections(s)))
                .collect();
            let rest: Vec<(String, Vec<u8>)> = arrays
                .iter()
                .filter(|a| a.name != CTILDE_MARKER)
                .map(|a| (format!("{}.npy", a.name), asi::npy_bytes(&a.shape, &a.data)))
                .collect();
            let a = asi::parse_asi(&name, &asi::zip_stored(&rest)?, elements, &sizes)?;
            Ok(ActiveSetInverse {
                species: a.matrices.into_iter().map(|m| (m.n, m.data)).collect(),
                linear: false,
            })
        }
    }
}
