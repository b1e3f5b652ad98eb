//! Writing a structure as a LAMMPS data file (`atom_style atomic`).
//!
//! LAMMPS wants a restricted triclinic cell (`a` along x, `b` in the xy plane, right-handed), so a
//! general cell is rotated into that frame; the rotation is returned so that vectors (forces)
//! can be compared in either frame. A left-handed cell is made right-handed by using `-c` (the
//! same lattice). Non-periodic directions get a padded box with `f` boundaries.

use crate::structure::Structure;
use std::fmt::Write as _;

/// A structure in LAMMPS's frame.
#[derive(Clone, Debug)]
pub struct LammpsBox {
    /// `xlo xhi ylo yhi zlo zhi`.
    pub bounds: [f64; 6],
    /// Tilt factors `xy xz yz`.
    pub tilt: [f64; 3],
    /// Rotation applied to every position and vector: `v_lammps = rot · v`.
    pub rot: [[f64; 3]; 3],
    /// Positions in the LAMMPS frame, wrapped into the box along periodic directions.
    pub positions: Vec<[f64; 3]>,
    /// `boundary` command arguments, e.g. `p p f`.
    pub boundary: String,
}

/// Errors converting a structure.
#[derive(Debug, thiserror::Error)]
pub enum LammpsDataError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn matvec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [dot(m[0], v), dot(m[1], v), dot(m[2], v)]
}

/// Rotate a structure into LAMMPS's frame.
pub fn to_lammps_box(s: &Structure) -> Result<LammpsBox, LammpsDataError> {
    let bad = |m: &str| LammpsDataError::Invalid {
        origin: s.origin.to_string(),
        message: m.to_string(),
    };
    if s.positions.iter().any(|p| !p.iter().all(|v| v.is_finite())) {
        return Err(bad("a position is not finite"));
    }
    let boundary: String = (0..3)
        .map(|k| if s.pbc[k] { "p" } else { "f" })
        .collect::<Vec<_>>()
        .join(" ");
    let Some(cell) = s.cell else {
        if s.pbc.iter().any(|&p| p) {
            return Err(bad("periodic structure without a Lattice"));
        }
        // Cluster: padded orthogonal box around the atoms.
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for p in &s.positions {
            for d in 0..3 {
                lo[d] = lo[d].min(p[d]);
                hi[d] = hi[d].max(p[d]);
            }
        }
        if s.positions.is_empty() {
            lo = [0.0; 3];
            hi = [0.0; 3];
        }
        let pad = 10.0;
        return Ok(LammpsBox {
            bounds: [
                lo[0] - pad,
                hi[0] + pad,
                lo[1] - pad,
                hi[1] + pad,
                lo[2] - pad,
                hi[2] + pad,
            ],
            tilt: [0.0; 3],
            rot: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            positions: s.positions.clone(),
            boundary: "f f f".into(),
        });
    };
    // Non-periodic vectors without volume (a slab written without vacuum): unit normals, as for
    // the neighbour list; the box is widened around the atoms along them below.
    let [a, b, mut c] = crate::neighbors::complete_cell(cell, s.pbc, false);
    if dot(a, cross(b, c)) < 0.0 {
        c = [-c[0], -c[1], -c[2]];
    }
    let na = dot(a, a).sqrt();
    let ab = cross(a, b);
    let nab = dot(ab, ab).sqrt();
    if na < 1e-8 || nab < 1e-8 * na || dot(ab, c).abs() < 1e-8 {
        return Err(bad("the cell is degenerate"));
    }
    // Orthonormal frame: e1 along a, e3 along a×b, e2 = e3×e1. rot has these as rows.
    let e1 = [a[0] / na, a[1] / na, a[2] / na];
    let e3 = [ab[0] / nab, ab[1] / nab, ab[2] / nab];
    let e2 = cross(e3, e1);
    let rot = [e1, e2, e3];
    let (ra, mut rb, mut rc) = (matvec(&rot, a), matvec(&rot, b), matvec(&rot, c));
    // The same lattice with the smallest tilts (|xy|, |xz| <= lx/2, |yz| <= ly/2), as LAMMPS
    // wants them: with larger ones it warns that the skew is large and bins neighbours in a box
    // that wide. A tilt changes by whole cell vectors, so only between periodic directions.
    let shift = |v: &mut [f64; 3], by: [f64; 3], k: f64| {
        for d in 0..3 {
            v[d] -= k * by[d];
        }
    };
    if s.pbc[1] && s.pbc[2] {
        let k = (rc[1] / rb[1]).round();
        shift(&mut rc, rb, k);
    }
    if s.pbc[0] && s.pbc[2] {
        let k = (rc[0] / ra[0]).round();
        shift(&mut rc, ra, k);
    }
    if s.pbc[0] && s.pbc[1] {
        let k = (rb[0] / ra[0]).round();
        shift(&mut rb, ra, k);
    }
    // Fractional coordinates via the rotated cell (upper-triangular in LAMMPS form).
    let mut positions = Vec::with_capacity(s.len());
    for p in &s.positions {
        let q = matvec(&rot, *p);
        // Solve q = f0 ra + f1 rb + f2 rc with ra=(ax,0,0), rb=(bx,by,0), rc=(cx,cy,cz).
        let f2 = q[2] / rc[2];
        let f1 = (q[1] - f2 * rc[1]) / rb[1];
        let f0 = (q[0] - f1 * rb[0] - f2 * rc[0]) / ra[0];
        let mut f = [f0, f1, f2];
        for k in 0..3 {
            if s.pbc[k] {
                f[k] -= f[k].floor();
                if f[k] >= 1.0 {
                    f[k] = 0.0;
                }
            }
        }
        positions.push([
            f[0] * ra[0] + f[1] * rb[0] + f[2] * rc[0],
            f[1] * rb[1] + f[2] * rc[1],
            f[2] * rc[2],
        ]);
    }
    let mut bounds = [0.0, ra[0], 0.0, rb[1], 0.0, rc[2]];
    // Non-periodic directions: widen the box to hold every atom with padding.
    for k in 0..3 {
        if !s.pbc[k] {
            let lo = positions
                .iter()
                .map(|p| p[k])
                .fold(f64::INFINITY, f64::min)
                .min(bounds[2 * k]);
            let hi = positions
                .iter()
                .map(|p| p[k])
                .fold(f64::NEG_INFINITY, f64::max)
                .max(bounds[2 * k + 1]);
            bounds[2 * k] = lo - 10.0;
            bounds[2 * k + 1] = hi + 10.0;
        }
    }
    Ok(LammpsBox {
        bounds,
        tilt: [rb[0], rc[0], rc[1]],
        rot,
        positions,
        boundary,
    })
}

/// Text of a LAMMPS data file for `s`, with atom types numbered by `species` (order = type).
pub fn data_file(
    s: &Structure,
    species: &[String],
    masses: &[f64],
) -> Result<(String, LammpsBox), LammpsDataError> {
    let lb = to_lammps_box(s)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} (written by aceuq; boundary {})\n",
        s.origin, lb.boundary
    );
    let _ = writeln!(out, "{} atoms\n{} atom types\n", s.len(), species.len());
    let b = lb.bounds;
    let _ = writeln!(out, "{:.16e} {:.16e} xlo xhi", b[0], b[1]);
    let _ = writeln!(out, "{:.16e} {:.16e} ylo yhi", b[2], b[3]);
    let _ = writeln!(out, "{:.16e} {:.16e} zlo zhi", b[4], b[5]);
    if lb.tilt != [0.0; 3] {
        let _ = writeln!(
            out,
            "{:.16e} {:.16e} {:.16e} xy xz yz",
            lb.tilt[0], lb.tilt[1], lb.tilt[2]
        );
    }
    let _ = writeln!(out, "\nMasses\n");
    for (k, m) in masses.iter().enumerate() {
        let _ = writeln!(out, "{} {m}  # {}", k + 1, species[k]);
    }
    let _ = writeln!(out, "\nAtoms # atomic\n");
    for (i, (p, sym)) in lb.positions.iter().zip(&s.symbols).enumerate() {
        let Some(t) = species.iter().position(|x| x == sym) else {
            return Err(LammpsDataError::Invalid {
                origin: s.origin.to_string(),
                message: format!(
                    "atom {} has species {sym}, not among {}",
                    i + 1,
                    species.join(",")
                ),
            });
        };
        let _ = writeln!(
            out,
            "{} {} {:.16e} {:.16e} {:.16e}",
            i + 1,
            t + 1,
            p[0],
            p[1],
            p[2]
        );
    }
    Ok((out, lb))
}

/// The standard atomic masses (g/mol) of `species` for a data file's Masses section; an error
/// naming a species that is not a chemical element (LAMMPS would integrate it with whatever
/// mass the file says, so none is made up).
pub fn species_masses(species: &[String]) -> Result<Vec<f64>, String> {
    species
        .iter()
        .map(|x| {
            crate::elements::atomic_mass(x).ok_or_else(|| {
                format!(
                    "species '{x}' is not a chemical element (symbols as in the periodic table, \
                     e.g. Li, In), so it has no standard mass for the data file's Masses section"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Workspace;
    use crate::testing::{random_model, random_structure, small_cfg};

    #[test]
    fn masses_are_standard_or_refused() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(species_masses(&v(&["In", "P"])), Ok(vec![114.82, 30.974]));
        let e = species_masses(&v(&["Li", "Xx"])).unwrap_err();
        assert!(e.contains("species 'Xx' is not a chemical element"), "{e}");
    }

    #[test]
    fn rotated_frame_preserves_the_physics() {
        let m = random_model(&["Al", "Mg"], &small_cfg(), 2);
        let mut s = random_structure(&["Al", "Mg"], 2, 4, true);
        // A general (rotated, left-handed) cell.
        let c = s.cell.unwrap();
        s.cell = Some([c[1], c[0], c[2]]);
        let lb = to_lammps_box(&s).unwrap();
        let mut t = s.clone();
        let b = lb.bounds;
        t.cell = Some([
            [b[1] - b[0], 0.0, 0.0],
            [lb.tilt[0], b[3] - b[2], 0.0],
            [lb.tilt[1], lb.tilt[2], b[5] - b[4]],
        ]);
        t.positions = lb.positions.clone();
        let mut ws = Workspace::new(&m);
        let p0 = m.predict(&s, &mut ws).unwrap();
        let p1 = m.predict(&t, &mut ws).unwrap();
        assert!((p0.energy - p1.energy).abs() < 1e-9 * p0.energy.abs());
        for (f0, f1) in p0.forces.iter().zip(&p1.forces) {
            let r = matvec(&lb.rot, *f0);
            for d in 0..3 {
                assert!((r[d] - f1[d]).abs() < 1e-9);
            }
        }
        let (text, _) = data_file(&s, &["Al".into(), "Mg".into()], &[26.98, 24.305]).unwrap();
        assert!(text.contains("xy xz yz") && text.contains("16 atoms"));
    }

    /// A slab whose non-periodic vector is zero (ASE without vacuum) gets the box of the same
    /// slab with vacuum: the periodic vectors as they are, no tilt out of the plane, the
    /// non-periodic bounds around the atoms.
    #[test]
    fn a_slab_without_a_vacuum_vector_gets_a_box() {
        let mut slab = random_structure(&["Al", "Mg"], 2, 4, true);
        slab.pbc = [true, true, false];
        let mut with = slab.clone();
        with.cell.as_mut().unwrap()[2] = [0.0, 0.0, 30.0];
        slab.cell.as_mut().unwrap()[2] = [0.0; 3];
        let (a, b) = (to_lammps_box(&slab).unwrap(), to_lammps_box(&with).unwrap());
        assert_eq!(a.boundary, "p p f");
        assert_eq!(a.bounds[..4], b.bounds[..4]);
        assert_eq!(a.tilt, b.tilt);
        assert_eq!(a.rot, b.rot);
        for (p, q) in a.positions.iter().zip(&b.positions) {
            for d in 0..3 {
                assert!((p[d] - q[d]).abs() < 1e-12, "{p:?} {q:?}");
            }
        }
        // Periodic vectors in a line stay an error.
        slab.cell.as_mut().unwrap()[1] = slab.cell.unwrap()[0];
        assert!(to_lammps_box(&slab).is_err());
    }

    /// A cell with large tilts (b and c leaning over by more than half a cell) is written as the
    /// same lattice with tilts of at most half a cell, and the physics is unchanged; along a
    /// non-periodic direction the tilt is left alone.
    #[test]
    fn large_tilts_are_reduced_to_the_same_lattice() {
        let m = random_model(&["Al", "Mg"], &small_cfg(), 2);
        let mut s = random_structure(&["Al", "Mg"], 2, 4, true);
        let [a, b, c] = s.cell.unwrap();
        let add =
            |u: [f64; 3], v: [f64; 3], k: f64| [u[0] + k * v[0], u[1] + k * v[1], u[2] + k * v[2]];
        s.cell = Some([a, add(b, a, 2.0), add(add(c, a, -3.0), b, 1.0)]);
        let lb = to_lammps_box(&s).unwrap();
        let (lx, ly) = (lb.bounds[1] - lb.bounds[0], lb.bounds[3] - lb.bounds[2]);
        let [xy, xz, yz] = lb.tilt;
        assert!(xy.abs() <= 0.5 * lx && xz.abs() <= 0.5 * lx && yz.abs() <= 0.5 * ly);
        let mut t = s.clone();
        t.cell = Some([
            [lx, 0.0, 0.0],
            [xy, ly, 0.0],
            [xz, yz, lb.bounds[5] - lb.bounds[4]],
        ]);
        t.positions = lb.positions.clone();
        let mut ws = Workspace::new(&m);
        let (p0, p1) = (
            m.predict(&s, &mut ws).unwrap(),
            m.predict(&t, &mut ws).unwrap(),
        );
        assert!((p0.energy - p1.energy).abs() < 1e-9 * p0.energy.abs());
        for (f0, f1) in p0.forces.iter().zip(&p1.forces) {
            let r = matvec(&lb.rot, *f0);
            for d in 0..3 {
                assert!((r[d] - f1[d]).abs() < 1e-9);
            }
        }
        // c not periodic: its tilts stay as given (b's, between periodic a and b, is reduced).
        s.pbc = [true, true, false];
        let lb = to_lammps_box(&s).unwrap();
        let rc = matvec(&lb.rot, s.cell.unwrap()[2]);
        assert!((lb.tilt[1] - rc[0]).abs() < 1e-9 && (lb.tilt[2] - rc[1]).abs() < 1e-9);
        assert!(lb.tilt[0].abs() <= 0.5 * (lb.bounds[1] - lb.bounds[0]));
    }
}
