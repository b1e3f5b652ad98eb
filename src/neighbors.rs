//! Neighbour lists for structures: every atom `j` (or periodic image of it) within a cutoff of
//! atom `i`, with the displacement `r_ij = r_j + shift - r_i` in Å.
//!
//! Periodic images are generated from the interplanar spacings of the cell, so skewed triclinic
//! cells and cells smaller than the cutoff (an atom seeing its own images) are handled exactly.
//! Candidates are binned on a Cartesian grid of cutoff-sized bins, so the cost is linear in the
//! number of atoms.
//!
//! Layer 1 (foundation): imports only `structure` and `progress` (every per-structure computation
//! starts here, so a build is a stop point: see `progress::request_stop`).

use crate::structure::{Structure, limits};
use std::collections::HashMap;

/// Neighbour list in compressed-row form.
#[derive(Clone, Debug, Default)]
pub struct NeighborList {
    /// Neighbours of atom `i` are entries `offsets[i]..offsets[i+1]`.
    pub offsets: Vec<usize>,
    /// Index of the neighbour atom in the structure.
    pub j: Vec<u32>,
    /// Displacement from `i` to the neighbour (image), Å.
    pub rij: Vec<[f64; 3]>,
}

impl NeighborList {
    /// Range of entries of atom `i`.
    #[inline]
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i + 1]
    }

    /// Number of atoms.
    pub fn natoms(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Shortest distance in the list, if any.
    pub fn min_distance(&self) -> Option<f64> {
        self.rij
            .iter()
            .map(|r| norm(*r))
            .min_by(|a, b| a.total_cmp(b))
    }
}

/// Why a neighbour list could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NeighborError {
    #[error("{origin}: atom {atom} has a non-finite position {pos:?}")]
    NonFinitePosition {
        origin: String,
        atom: usize,
        pos: [f64; 3],
    },
    /// A coordinate beyond [`limits::MAX_COORDINATE`].
    #[error(
        "{origin}: atom {atom} is at {pos:?} Å, beyond {max:e} Å from the origin: no atomistic \
         structure is this large; positions must be Cartesian coordinates in Å",
        max = limits::MAX_COORDINATE
    )]
    PositionOutOfRange {
        origin: String,
        /// One-based atom number.
        atom: usize,
        pos: [f64; 3],
    },
    /// A fully periodic cell denser than matter, or whose neighbour lists would be huge: refused
    /// before anything is allocated.
    #[error(
        "{origin}: {atoms} atoms in a periodic cell of {volume:.4} Å^3 ({per_atom:.4} Å^3 per \
         atom) would give about {estimate:.0} neighbours per atom within the cutoff {cutoff} Å; \
         no matter is this dense (limits: {min_vol} Å^3 per atom, {max_nb} neighbours): check the \
         Lattice (Å) and the atom count",
        per_atom = volume / *atoms as f64,
        min_vol = limits::MIN_VOLUME_PER_ATOM,
        max_nb = limits::MAX_NEIGHBORS
    )]
    TooDense {
        origin: String,
        atoms: usize,
        volume: f64,
        cutoff: f64,
        estimate: f64,
    },
    /// An atom with more than [`limits::MAX_NEIGHBORS`] neighbours (found while building, so the
    /// list never grows past that many per atom).
    #[error(
        "{origin}: atom {atom} has more than {max} neighbours within the cutoff {cutoff} Å (at \
         least {count}); no matter is this dense: check the positions and Lattice (Å), or the \
         cutoff",
        max = limits::MAX_NEIGHBORS
    )]
    TooManyNeighbors {
        origin: String,
        /// One-based atom number.
        atom: usize,
        cutoff: f64,
        count: usize,
    },
    #[error(
        "{origin}: pbc is {pbc:?} but there is no Lattice (cell); give Lattice= or set pbc=\"F F F\""
    )]
    MissingCell { origin: String, pbc: [bool; 3] },
    #[error("{origin}: the cell is degenerate (volume {volume:.3e} Å^3); check Lattice=")]
    DegenerateCell { origin: String, volume: f64 },
    #[error(
        "{origin}: the cell is too thin for the cutoff {cutoff} Å ({images} periodic images per atom); \
         check Lattice= and pbc"
    )]
    TooManyImages {
        origin: String,
        cutoff: f64,
        images: usize,
    },
    /// Two atoms (or an atom and a periodic image of another) at the same place: the direction
    /// between them, and so every angular function, is undefined.
    #[error(
        "{origin}: atoms {atom} and {other} are at the same position (distance {distance:.3e} Å); \
         remove the duplicate atom"
    )]
    CoincidentAtoms {
        origin: String,
        /// One-based atom numbers.
        atom: usize,
        other: usize,
        distance: f64,
    },
    /// An atom at the place of one of its own periodic images: a periodic lattice vector (after
    /// reduction) shorter than [`MIN_DISTANCE`].
    #[error(
        "{origin}: atom {atom} is at the same position as its own periodic image (distance \
         {distance:.3e} Å): a periodic lattice vector is shorter than {min:e} Å; check Lattice= \
         and pbc",
        min = MIN_DISTANCE
    )]
    CoincidentImage {
        origin: String,
        /// One-based atom number.
        atom: usize,
        distance: f64,
    },
}

/// Pairs closer than this (Å) are rejected as coincident: below it the direction `r_ij / r`
/// loses all precision (and at 0 it is NaN). The repulsive core keeps every physical distance
/// far above it.
pub const MIN_DISTANCE: f64 = 1e-8;

#[inline]
pub(crate) fn norm(r: [f64; 3]) -> f64 {
    (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt()
}

#[inline]
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[inline]
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Most images per atom we accept before calling the cell unreasonable.
const MAX_IMAGES: usize = 200_000;

/// Build the neighbour list of `s` for `cutoff` (Å). Self-interaction at zero shift is excluded;
/// an atom's own periodic images are included when closer than the cutoff.
pub fn build(s: &Structure, cutoff: f64) -> Result<NeighborList, NeighborError> {
    crate::progress::checkpoint();
    let origin = s.origin.to_string();
    let n = s.len();
    for (i, p) in s.positions.iter().enumerate() {
        if !p.iter().all(|x| x.is_finite()) {
            return Err(NeighborError::NonFinitePosition {
                origin,
                atom: i + 1,
                pos: *p,
            });
        }
        if !p.iter().all(|x| x.abs() <= limits::MAX_COORDINATE) {
            return Err(NeighborError::PositionOutOfRange {
                origin,
                atom: i + 1,
                pos: *p,
            });
        }
    }
    let periodic = s.pbc.iter().any(|&p| p);
    let (cell, pbc) = match s.cell {
        Some(c) => (reduce_cell(complete_cell(c, s.pbc, true), s.pbc), s.pbc),
        None if periodic => return Err(NeighborError::MissingCell { origin, pbc: s.pbc }),
        None => ([[0.0; 3]; 3], [false; 3]),
    };
    // Wrap periodic directions into the cell and count the images needed per direction.
    let mut pos = s.positions.clone();
    let mut nimg = [0i64; 3];
    if pbc.iter().any(|&p| p) {
        let vol = dot(cell[0], cross(cell[1], cell[2]));
        if vol.is_nan() || vol.abs() <= 1e-10 || !vol.is_finite() {
            return Err(NeighborError::DegenerateCell {
                origin,
                volume: vol,
            });
        }
        // Reciprocal vectors (rows): recip[k] · cell[l] = δ_kl.
        let recip = [
            scale(cross(cell[1], cell[2]), 1.0 / vol),
            scale(cross(cell[2], cell[0]), 1.0 / vol),
            scale(cross(cell[0], cell[1]), 1.0 / vol),
        ];
        let mut total = 1usize;
        for k in 0..3 {
            if pbc[k] {
                // Interplanar spacing along k is 1/|recip[k]|.
                let spacing = 1.0 / norm(recip[k]);
                nimg[k] = (cutoff / spacing).ceil() as i64;
                total = total.saturating_mul((2 * nimg[k] + 1) as usize);
            }
        }
        if total > MAX_IMAGES {
            return Err(NeighborError::TooManyImages {
                origin,
                cutoff,
                images: total,
            });
        }
        // Refuse a cell denser than matter before allocating images or lists (n atoms, each
        // with ~n/V * 4/3 pi rc^3 neighbours).
        if pbc.iter().all(|&p| p) && n > 0 {
            let estimate = n as f64 / vol.abs() * 4.0 / 3.0 * std::f64::consts::PI * cutoff.powi(3);
            if vol.abs() / (n as f64) < limits::MIN_VOLUME_PER_ATOM
                || estimate > limits::MAX_NEIGHBORS as f64
            {
                return Err(NeighborError::TooDense {
                    origin,
                    atoms: n,
                    volume: vol.abs(),
                    cutoff,
                    estimate,
                });
            }
        }
        for p in pos.iter_mut() {
            for k in 0..3 {
                if pbc[k] {
                    let f = dot(recip[k], *p);
                    let shift = f.floor();
                    if shift != 0.0 {
                        for d in 0..3 {
                            p[d] -= shift * cell[k][d];
                        }
                    }
                }
            }
        }
    }
    // Wrapping moved atom i by a lattice vector; displacements between images are unchanged,
    // so r_ij computed from wrapped positions is the physical displacement.
    let mut shifts = Vec::new();
    for a in -nimg[0]..=nimg[0] {
        for b in -nimg[1]..=nimg[1] {
            for c in -nimg[2]..=nimg[2] {
                let v = [
                    a as f64 * cell[0][0] + b as f64 * cell[1][0] + c as f64 * cell[2][0],
                    a as f64 * cell[0][1] + b as f64 * cell[1][1] + c as f64 * cell[2][1],
                    a as f64 * cell[0][2] + b as f64 * cell[1][2] + c as f64 * cell[2][2],
                ];
                shifts.push((a == 0 && b == 0 && c == 0, v));
            }
        }
    }
    let rc2 = cutoff * cutoff;
    let mut nl = NeighborList {
        offsets: Vec::with_capacity(n + 1),
        ..Default::default()
    };
    nl.offsets.push(0);
    if n == 0 {
        return Ok(nl);
    }
    // Bin all image points on a Cartesian grid of cutoff-sized bins.
    let bin = cutoff.max(1e-3);
    let key = |p: [f64; 3]| -> (i64, i64, i64) {
        (
            (p[0] / bin).floor() as i64,
            (p[1] / bin).floor() as i64,
            (p[2] / bin).floor() as i64,
        )
    };
    // Only images that can be within the cutoff of some atom matter: bounding box of atoms ± cutoff.
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for p in &pos {
        for d in 0..3 {
            lo[d] = lo[d].min(p[d]);
            hi[d] = hi[d].max(p[d]);
        }
    }
    let mut bins: HashMap<(i64, i64, i64), Vec<(u32, u32)>> = HashMap::new();
    for (si, (_, sv)) in shifts.iter().enumerate() {
        for (j, p) in pos.iter().enumerate() {
            let q = [p[0] + sv[0], p[1] + sv[1], p[2] + sv[2]];
            if (0..3).any(|d| q[d] < lo[d] - cutoff || q[d] > hi[d] + cutoff) {
                continue;
            }
            bins.entry(key(q)).or_default().push((j as u32, si as u32));
        }
    }
    for (i, p) in pos.iter().enumerate() {
        let (bx, by, bz) = key(*p);
        for dx in -1..=1 {
            for dy in -1..=1 {
                for dz in -1..=1 {
                    let Some(list) = bins.get(&(bx + dx, by + dy, bz + dz)) else {
                        continue;
                    };
                    for &(j, si) in list {
                        let (zero, sv) = shifts[si as usize];
                        if zero && j as usize == i {
                            continue;
                        }
                        let q = pos[j as usize];
                        let r = [
                            q[0] + sv[0] - p[0],
                            q[1] + sv[1] - p[1],
                            q[2] + sv[2] - p[2],
                        ];
                        let r2 = dot(r, r);
                        if r2 < MIN_DISTANCE * MIN_DISTANCE {
                            if j as usize == i {
                                return Err(NeighborError::CoincidentImage {
                                    origin,
                                    atom: i + 1,
                                    distance: r2.sqrt(),
                                });
                            }
                            return Err(NeighborError::CoincidentAtoms {
                                origin,
                                atom: i + 1,
                                other: j as usize + 1,
                                distance: r2.sqrt(),
                            });
                        }
                        if r2 < rc2 {
                            if nl.j.len() - nl.offsets[i] >= limits::MAX_NEIGHBORS {
                                return Err(NeighborError::TooManyNeighbors {
                                    origin,
                                    atom: i + 1,
                                    cutoff,
                                    count: nl.j.len() - nl.offsets[i] + 1,
                                });
                            }
                            nl.j.push(j);
                            nl.rij.push(r);
                        }
                    }
                }
            }
        }
        nl.offsets.push(nl.j.len());
    }
    Ok(nl)
}

/// The cell with its non-periodic vectors replaced by unit vectors orthogonal to the periodic
/// ones: `always`, or when, as given, it has no volume (a zero vector along a non-periodic
/// direction, as ASE's slab builders without vacuum write, or one in the plane of the others).
/// Those vectors matter for nothing in a neighbour list (no images along them), but the periodic
/// directions' reciprocal vectors are computed from all three: one nearly in the plane of the
/// others (c = (3, 0, 1e-6) on a slab) made the in-plane spacing look tiny and the cell "too
/// thin", so the neighbour lists always replace them (`always`). The LAMMPS box of `to-lammps`
/// keeps a given vacuum vector (only one without volume is replaced). "No volume": at most
/// 1e-6 Å^3, or not finite. Periodic vectors are never changed: a degenerate periodic cell
/// stays an error, as does a cell with every direction periodic.
pub(crate) fn complete_cell(cell: [[f64; 3]; 3], pbc: [bool; 3], always: bool) -> [[f64; 3]; 3] {
    // The common case first, without allocating: every build of a neighbour list asks.
    let np = pbc.iter().filter(|&&p| p).count();
    let vol = dot(cell[0], cross(cell[1], cell[2]));
    if np == 3 || np == 0 || (!always && vol.is_finite() && vol.abs() > 1e-6) {
        return cell;
    }
    let periodic: Vec<usize> = (0..3).filter(|&k| pbc[k]).collect();
    let normals = if let [a, b] = periodic[..] {
        vec![cross(cell[a], cell[b])]
    } else {
        let a = cell[periodic[0]];
        // The axis least aligned with a.
        let mut e = [0.0; 3];
        let k = (0..3)
            .min_by(|&i, &j| a[i].abs().total_cmp(&a[j].abs()))
            .unwrap_or(0);
        e[k] = 1.0;
        let n1 = cross(a, e);
        vec![n1, cross(a, n1)]
    };
    let mut out = cell;
    let free = (0..3).filter(|&k| !pbc[k]);
    for (k, n) in free.zip(normals) {
        let len = norm(n);
        if !(len.is_finite() && len > 0.0) {
            // A periodic vector is zero (or not finite): reported as a degenerate cell.
            return cell;
        }
        out[k] = scale(n, 1.0 / len);
    }
    out
}

/// An equivalent, less skewed basis of the same lattice: periodic vectors are shortened by
/// integer multiples of the other periodic vectors (pairwise Gauss reduction) until none gets
/// shorter. Images are counted from the interplanar spacings, which a strongly tilted but valid
/// cell (e.g. `b = (100 a_x, a, 0)`) makes tiny; the reduced basis spans the same lattice, so
/// displacements between images are unchanged. Non-periodic vectors are left alone (mixing them
/// in would change the lattice).
fn reduce_cell(mut cell: [[f64; 3]; 3], pbc: [bool; 3]) -> [[f64; 3]; 3] {
    // Each accepted step strictly shortens a vector, so this terminates; the cap guards against
    // pathological floating-point input (NaN/Inf cells are rejected later as degenerate).
    for _ in 0..1000 {
        let mut changed = false;
        for i in 0..3 {
            for j in 0..3 {
                if i == j || !pbc[i] || !pbc[j] {
                    continue;
                }
                let bb = dot(cell[j], cell[j]);
                if !(bb > 0.0 && bb.is_finite()) {
                    continue;
                }
                let mu = (dot(cell[i], cell[j]) / bb).round();
                if mu == 0.0 || !mu.is_finite() {
                    continue;
                }
                let cand = [
                    cell[i][0] - mu * cell[j][0],
                    cell[i][1] - mu * cell[j][1],
                    cell[i][2] - mu * cell[j][2],
                ];
                if dot(cand, cand) < dot(cell[i], cell[i]) * (1.0 - 1e-12) {
                    cell[i] = cand;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    cell
}

#[inline]
fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bcc(a: f64, reps: usize) -> Structure {
        let mut s = Structure {
            cell: Some([
                [a * reps as f64, 0.0, 0.0],
                [0.0, a * reps as f64, 0.0],
                [0.0, 0.0, a * reps as f64],
            ]),
            pbc: [true; 3],
            ..Default::default()
        };
        for i in 0..reps {
            for j in 0..reps {
                for k in 0..reps {
                    let o = [i as f64 * a, j as f64 * a, k as f64 * a];
                    s.positions.push(o);
                    s.positions
                        .push([o[0] + a / 2.0, o[1] + a / 2.0, o[2] + a / 2.0]);
                    s.symbols.push("Li".into());
                    s.symbols.push("Li".into());
                }
            }
        }
        s
    }

    /// Every (i, j, r_ij) of the list, rounded, sorted.
    fn pairs(s: &Structure, rc: f64) -> Vec<(usize, u32, [i64; 3])> {
        let nl = build(s, rc).unwrap();
        let mut v: Vec<_> = (0..s.len())
            .flat_map(|i| nl.range(i).map(move |k| (i, k)).collect::<Vec<_>>())
            .map(|(i, k)| (i, nl.j[k], nl.rij[k].map(|x| (x * 1e9).round() as i64)))
            .collect();
        v.sort();
        v
    }

    /// A slab or a wire whose non-periodic vectors are zero (as ASE writes a slab built without
    /// vacuum) or lie in the plane of the periodic ones has the neighbours it has with vacuum
    /// along them; periodic vectors that span nothing stay an error.
    #[test]
    fn non_periodic_vectors_without_volume_are_completed() {
        let mut with_vacuum = bcc(3.44, 3);
        let l = 3.0 * 3.44;
        with_vacuum.cell = Some([[l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, 40.0]]);
        with_vacuum.pbc = [true, true, false];
        let reference = pairs(&with_vacuum, 5.0);
        // Zero, in the plane, nearly in the plane (it made the cell "too thin" for the cutoff),
        // tilted: the same neighbours.
        for c in [
            [0.0; 3],
            [1.0, 2.0, 0.0],
            [3.0, 0.0, 1e-6],
            [30.0, 0.0, 5.0],
        ] {
            let mut slab = with_vacuum.clone();
            slab.cell.as_mut().unwrap()[2] = c;
            assert_eq!(pairs(&slab, 5.0), reference, "c = {c:?}");
        }
        // A wire along y, periodic there only.
        let mut wire = with_vacuum.clone();
        wire.cell = Some([[40.0, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, 40.0]]);
        wire.pbc = [false, true, false];
        let reference = pairs(&wire, 5.0);
        wire.cell = Some([[0.0; 3], [0.0, l, 0.0], [0.0; 3]]);
        assert_eq!(pairs(&wire, 5.0), reference);
        // Periodic vectors in a line: still degenerate.
        let mut flat = with_vacuum.clone();
        flat.cell = Some([[l, 0.0, 0.0], [2.0 * l, 0.0, 0.0], [0.0; 3]]);
        assert!(matches!(
            build(&flat, 5.0),
            Err(NeighborError::DegenerateCell { .. })
        ));
    }

    fn brute(s: &Structure, rc: f64) -> Vec<Vec<f64>> {
        // Brute force over a generous image range, distances only (sorted per atom).
        let c = s.cell.unwrap();
        let r = 6;
        let mut out = vec![vec![]; s.len()];
        for i in 0..s.len() {
            for j in 0..s.len() {
                for a in -r..=r {
                    for b in -r..=r {
                        for cc in -r..=r {
                            if i == j && a == 0 && b == 0 && cc == 0 {
                                continue;
                            }
                            let mut d = [0.0; 3];
                            for k in 0..3 {
                                d[k] = s.positions[j][k] - s.positions[i][k]
                                    + a as f64 * c[0][k]
                                    + b as f64 * c[1][k]
                                    + cc as f64 * c[2][k];
                            }
                            let dn = norm(d);
                            if dn < rc {
                                out[i].push(dn);
                            }
                        }
                    }
                }
            }
            out[i].sort_by(|a, b| a.total_cmp(b));
        }
        out
    }

    #[test]
    fn bcc_coordination_shells() {
        let a = 3.51;
        let s = bcc(a, 3);
        let nl = build(&s, 3.76).unwrap();
        // 8 nearest (a√3/2 = 3.04) + 6 second (a = 3.51) within 3.76 Å.
        for i in 0..s.len() {
            assert_eq!(nl.range(i).len(), 14);
        }
    }

    #[test]
    fn small_skewed_cell_matches_brute_force() {
        // One- and two-atom cells much smaller than the cutoff, strongly skewed.
        let mut s = Structure {
            cell: Some([[2.1, 0.0, 0.0], [1.7, 1.9, 0.0], [-0.9, 0.6, 2.3]]),
            pbc: [true; 3],
            positions: vec![[0.1, 0.2, 0.3], [1.9, 1.1, 0.7]],
            symbols: vec!["Li".into(), "Li".into()],
            ..Default::default()
        };
        s.positions[1][2] += 7.0; // outside the cell: must be wrapped
        let rc = 5.3;
        let nl = build(&s, rc).unwrap();
        let bf = brute(&s, rc);
        for i in 0..s.len() {
            let mut d: Vec<f64> = nl.range(i).map(|k| norm(nl.rij[k])).collect();
            d.sort_by(|a, b| a.total_cmp(b));
            assert_eq!(d.len(), bf[i].len(), "atom {i}");
            for (x, y) in d.iter().zip(&bf[i]) {
                assert!((x - y).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn non_periodic_and_errors() {
        let mut s = Structure {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [10.0, 0.0, 0.0]],
            symbols: vec!["Li".into(); 3],
            ..Default::default()
        };
        let nl = build(&s, 2.0).unwrap();
        assert_eq!(nl.range(0).len(), 1);
        assert_eq!(nl.range(2).len(), 0);
        s.positions[1][1] = f64::NAN;
        assert!(matches!(
            build(&s, 2.0),
            Err(NeighborError::NonFinitePosition { atom: 2, .. })
        ));
        s.positions[1][1] = 0.0;
        s.pbc = [true; 3];
        assert!(matches!(
            build(&s, 2.0),
            Err(NeighborError::MissingCell { .. })
        ));
        s.cell = Some([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(matches!(
            build(&s, 2.0),
            Err(NeighborError::DegenerateCell { .. })
        ));
    }
}
