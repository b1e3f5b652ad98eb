//! Numerical edge cases with a defined behaviour: close and coincident atoms, non-finite
//! positions, empty structures, unknown species, huge and strongly skewed cells.

use super::*;
use crate::neighbors::NeighborError;
use crate::structure::Structure;
use crate::testing::{random_model, random_structure, small_cfg};

fn molecule(species: &[&str], positions: Vec<[f64; 3]>) -> Structure {
    Structure {
        symbols: species.iter().map(|s| s.to_string()).collect(),
        positions,
        ..Default::default()
    }
}

fn predict(model: &Model, s: &Structure) -> Result<Prediction, ModelError> {
    let mut ws = Workspace::new(model);
    model.predict(s, &mut ws)
}

fn all_finite(p: &Prediction) -> bool {
    p.energy.is_finite()
        && p.atom_energies.iter().all(|e| e.is_finite())
        && p.forces.iter().flatten().all(|f| f.is_finite())
        && p.virial.iter().flatten().all(|v| v.is_finite())
}

/// Far inside the inner cutoff (the random model's core is full ZBL below 1.6 Å, the radial
/// window starts at 1.4 Å) energies and forces stay finite, the pair is pushed apart, the energy
/// rises as the atoms approach, and the forces are still the exact gradient.
#[test]
fn close_pairs_are_repulsive_finite_and_exact_down_to_0_05_angstrom() {
    let model = random_model(&["Li", "Mg"], &small_cfg(), 3);
    let mut last_e = f64::NEG_INFINITY;
    // Decreasing distances: energy must increase monotonically.
    for r in [1.5, 1.2, 1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05] {
        // A third atom at a normal distance gives the angular functions something to do.
        let s = molecule(
            &["Li", "Mg", "Li"],
            vec![[0.0, 0.0, 0.0], [r, 0.0, 0.0], [0.3, 2.6, 0.4]],
        );
        let p = predict(&model, &s).unwrap();
        assert!(all_finite(&p), "r = {r}: {p:?}");
        // Repulsive: the force on atom 2 points away from atom 1 (+x), on atom 1 towards -x.
        assert!(
            p.forces[1][0] > 0.0 && p.forces[0][0] < 0.0,
            "r = {r}: {:?}",
            p.forces
        );
        assert!(p.energy > last_e, "r = {r}: {} after {last_e}", p.energy);
        last_e = p.energy;
        // Exact gradient even where the core is steep (central differences, step relative to r).
        let h = 1e-6 * r;
        let mut sp = s.clone();
        sp.positions[1][0] += h;
        let mut sm = s.clone();
        sm.positions[1][0] -= h;
        let fd = -(predict(&model, &sp).unwrap().energy - predict(&model, &sm).unwrap().energy)
            / (2.0 * h);
        assert!(
            (fd - p.forces[1][0]).abs() < 1e-6 * p.forces[1][0].abs().max(1.0),
            "r = {r}: finite difference {fd} vs force {}",
            p.forces[1][0]
        );
    }
    // At 0.05 Å the Li–Mg ZBL is thousands of eV: the core, not the fitted part, dominates.
    assert!(last_e > 1000.0, "{last_e}");
}

/// Two atoms at exactly the same place (or one on a periodic image of the other) have no
/// direction between them: a clear error naming both atoms instead of NaN.
#[test]
fn coincident_atoms_are_an_error_naming_both() {
    let model = random_model(&["Li"], &small_cfg(), 4);
    let s = molecule(
        &["Li", "Li", "Li"],
        vec![[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [2.5, 0.0, 0.0]],
    );
    let err = predict(&model, &s).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::Neighbors(NeighborError::CoincidentAtoms {
                atom: 2,
                other: 3,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("atoms 2 and 3 are at the same position")
    );
    // Periodic: atom 2 sits exactly one lattice vector away from atom 1.
    let mut p = molecule(&["Li", "Li"], vec![[0.1, 0.2, 0.3], [5.1, 0.2, 0.3]]);
    p.cell = Some([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]);
    p.pbc = [true; 3];
    let err = predict(&model, &p).unwrap_err();
    assert!(
        err.to_string()
            .contains("atoms 1 and 2 are at the same position"),
        "{err}"
    );
    // Just above the threshold is a (very repulsive) finite result.
    let s = molecule(&["Li", "Li"], vec![[0.0, 0.0, 0.0], [1e-6, 0.0, 0.0]]);
    let p = predict(&model, &s).unwrap();
    assert!(all_finite(&p) && p.energy > 1e6, "{p:?}");
}

#[test]
fn non_finite_positions_are_an_error_naming_the_atom() {
    let model = random_model(&["Li"], &small_cfg(), 5);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut s = random_structure(&["Li"], 2, 6, true);
        s.positions[6][2] = bad;
        let err = predict(&model, &s).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::Neighbors(NeighborError::NonFinitePosition { atom: 7, .. })
            ),
            "{bad}: {err:?}"
        );
        assert!(
            err.to_string().contains("atom 7 has a non-finite position"),
            "{err}"
        );
    }
    // A non-finite cell is rejected too (as degenerate), not turned into NaN energies.
    let mut s = random_structure(&["Li"], 2, 6, false);
    s.cell.as_mut().unwrap()[1][1] = f64::NAN;
    let err = predict(&model, &s).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::Neighbors(NeighborError::DegenerateCell { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn empty_structures_have_zero_energy() {
    let model = random_model(&["Li", "Mg"], &small_cfg(), 7);
    let mut s = Structure::default();
    for periodic in [false, true] {
        if periodic {
            s.cell = Some([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]);
            s.pbc = [true; 3];
        }
        let p = predict(&model, &s).unwrap();
        assert_eq!(p.energy, 0.0);
        assert!(p.atom_energies.is_empty() && p.forces.is_empty());
        assert_eq!(p.virial, [[0.0; 3]; 3]);
    }
}

#[test]
fn species_not_in_the_model_is_an_error_naming_atom_and_species() {
    let model = random_model(&["Li", "Mg"], &small_cfg(), 8);
    let mut s = random_structure(&["Li", "Na", "Mg"], 1, 9, false);
    s.origin.file = Some("train.xyz".into());
    s.origin.frame = 4;
    s.origin.line = 77;
    let err = predict(&model, &s).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("train.xyz, frame 5 (line 77)")
            && msg.contains("species 'Na' of atom 2 is not in the model (model species: Li, Mg)"),
        "{msg}"
    );
}

/// The same periodic crystal written with a huge vacuum cell, or shifted far from the origin,
/// gives the same result as the isolated cluster.
#[test]
fn huge_cells_and_far_coordinates_equal_the_isolated_cluster() {
    let model = random_model(&["Li", "Mg"], &small_cfg(), 10);
    let cluster = molecule(
        &["Li", "Mg", "Li", "Mg"],
        vec![
            [0.0, 0.0, 0.0],
            [2.4, 0.3, -0.2],
            [0.5, 2.7, 0.9],
            [-1.9, 1.1, 2.2],
        ],
    );
    let want = predict(&model, &cluster).unwrap();
    assert!(want.forces.iter().flatten().any(|f| f.abs() > 1e-3));
    let mut boxed = cluster.clone();
    boxed.cell = Some([[1e5, 0.0, 0.0], [0.0, 1e5, 0.0], [3e4, -2e4, 1e5]]);
    boxed.pbc = [true; 3];
    let mut far = cluster.clone();
    for p in far.positions.iter_mut() {
        p[0] += 1e6;
        p[2] -= 3e6;
    }
    for (what, s, tol) in [("vacuum cell", &boxed, 1e-10), ("far away", &far, 1e-6)] {
        let got = predict(&model, s).unwrap();
        for (a, b) in got.atom_energies.iter().zip(&want.atom_energies) {
            assert!((a - b).abs() < tol, "{what}: {a} vs {b}");
        }
        for (a, b) in got
            .forces
            .iter()
            .flatten()
            .zip(want.forces.iter().flatten())
        {
            assert!((a - b).abs() < tol * 100.0, "{what}: {a} vs {b}");
        }
    }
}

/// A lattice described by strongly tilted cell vectors (b = b0 + 40 a, c = c0 - 25 a + 33 b0) is
/// the same crystal as the compact description: identical per-atom energies and forces, instead
/// of a "cell too thin" error from the thin interplanar spacings of the tilted vectors.
#[test]
fn strongly_skewed_cell_equals_the_reduced_cell() {
    let model = random_model(&["Li", "Mg"], &small_cfg(), 11);
    let s = random_structure(&["Li", "Mg"], 1, 12, true);
    let want = predict(&model, &s).unwrap();
    let c = s.cell.unwrap();
    let comb =
        |x: [f64; 3], y: [f64; 3], k: f64| [x[0] + k * y[0], x[1] + k * y[1], x[2] + k * y[2]];
    let b = comb(c[1], c[0], 40.0);
    let cc = comb(comb(c[2], c[0], -25.0), c[1], 33.0);
    let mut skewed = s.clone();
    skewed.cell = Some([c[0], b, cc]);
    // Put the atoms somewhere far along the tilted vectors too.
    for (k, p) in skewed.positions.iter_mut().enumerate() {
        *p = comb(*p, cc, 3.0 - k as f64);
    }
    let got = predict(&model, &skewed).unwrap();
    for (a, b) in got.atom_energies.iter().zip(&want.atom_energies) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    for (a, b) in got
        .forces
        .iter()
        .flatten()
        .zip(want.forces.iter().flatten())
    {
        assert!((a - b).abs() < 1e-8, "{a} vs {b}");
    }
    // A genuinely thin cell (a 0.001 Å period: ~10^4 images along it) is still refused with a
    // clear message.
    let mut thin = s.clone();
    thin.cell = Some([c[0], c[1], [0.0, 0.0, 0.001]]);
    thin.positions.truncate(1);
    thin.symbols.truncate(1);
    let err = predict(&model, &thin).unwrap_err();
    assert!(err.to_string().contains("too thin for the cutoff"), "{err}");
}

/// Mixed periodicity: the tilt of a periodic vector along a non-periodic one must not be
/// "reduced" away (that would change the lattice): a slab periodic in x, y only.
#[test]
fn slab_with_tilted_non_periodic_vector_is_unchanged() {
    let model = random_model(&["Li"], &small_cfg(), 13);
    let mut s = random_structure(&["Li"], 2, 14, false);
    s.pbc = [true, true, false];
    let want = predict(&model, &s).unwrap();
    let mut t = s.clone();
    let c = t.cell.unwrap();
    // Tilt the non-periodic vector: it only sets the (unused) wrapping frame along z.
    t.cell = Some([c[0], c[1], [c[0][0] * 3.0, 1.0, c[2][2]]]);
    let got = predict(&model, &t).unwrap();
    for (a, b) in got.atom_energies.iter().zip(&want.atom_energies) {
        assert!((a - b).abs() < 1e-10, "{a} vs {b}");
    }
}

/// Issue 21: a coordinate of 1e300 was reported as "atoms 4 and 4 are at the same position"
/// (wrapping into the cell lost every digit, so the atom met its own image). It is its own error,
/// naming the atom once; so is any coordinate beyond `limits::MAX_COORDINATE`.
#[test]
fn huge_coordinates_are_an_error_naming_the_atom_once() {
    let model = random_model(&["Li"], &small_cfg(), 11);
    for periodic in [true, false] {
        let mut s = random_structure(&["Li"], 2, 12, true);
        if !periodic {
            s.cell = None;
            s.pbc = [false; 3];
        }
        s.positions[3][0] = 1e300;
        let err = predict(&model, &s).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::Neighbors(NeighborError::PositionOutOfRange { atom: 4, .. })
            ),
            "periodic {periodic}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("atom 4 is at") && !msg.contains("atoms 4 and 4"),
            "{msg}"
        );
    }
}

/// Issue 21: 250 atoms in a 1 Å cube ran the neighbour list to gigabytes. A fully periodic cell
/// denser than matter is refused before anything is allocated, and an atom with more than
/// `limits::MAX_NEIGHBORS` neighbours (here a non-periodic clump, which has no cell to check)
/// stops the list as soon as it is found.
#[test]
fn impossible_densities_are_refused_before_the_neighbour_list_grows() {
    use crate::structure::limits::MAX_NEIGHBORS;
    let model = random_model(&["Li"], &small_cfg(), 13);
    let rc = model.max_cutoff();
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut cube = Structure {
        cell: Some([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        pbc: [true; 3],
        ..Default::default()
    };
    for _ in 0..250 {
        cube.positions.push([next(), next(), next()]);
        cube.symbols.push("Li".into());
    }
    let err = crate::neighbors::build(&cube, rc).unwrap_err();
    assert!(
        matches!(err, NeighborError::TooDense { atoms: 250, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("0.0040 Å^3 per atom"), "{err}");
    let err = predict(&model, &cube).unwrap_err();
    assert!(
        matches!(err, ModelError::Neighbors(NeighborError::TooDense { .. })),
        "{err:?}"
    );
    // A cluster of MAX_NEIGHBORS + 2 atoms in a 2 Å cube: every atom sees all the others.
    let n = MAX_NEIGHBORS + 2;
    let clump = molecule(
        &vec!["Li"; n],
        (0..n)
            .map(|_| [2.0 * next(), 2.0 * next(), 2.0 * next()])
            .collect(),
    );
    let err = crate::neighbors::build(&clump, rc).unwrap_err();
    assert!(
        matches!(err, NeighborError::TooManyNeighbors { atom: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("atom 1 has more than {MAX_NEIGHBORS} neighbours")),
        "{err}"
    );
    // Just below the limit is fine.
    let ok = molecule(
        &vec!["Li"; MAX_NEIGHBORS + 1],
        clump.positions[..MAX_NEIGHBORS + 1].to_vec(),
    );
    let nl = crate::neighbors::build(&ok, rc).unwrap();
    assert_eq!(nl.range(0).len(), MAX_NEIGHBORS);
}

/// Structures made in code (not read from a file) meet the same bounds in the fit: absurd labels
/// are an error naming the structure and atom.
#[test]
fn fit_refuses_absurd_labels_of_structures_made_in_code() {
    let cfg = crate::testing::tiny_cfg();
    let mut s = random_structure(&["Li"], 2, 14, true);
    let n = s.len();
    s.energy = Some(-1.7 * n as f64);
    s.forces = Some(vec![[0.1, -0.2, 0.05]; n]);
    s.origin.file = Some("made.xyz".into());
    let fitcfg = super::fit::FitConfig::default();
    let species = vec!["Li".to_string()];
    let mut bad_f = s.clone();
    bad_f.forces.as_mut().unwrap()[2][1] = 1e308;
    let err = super::fit::fit(&species, &cfg, &fitcfg, &[bad_f], &[], false).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("made.xyz, frame 1") && msg.contains("force on atom 3"),
        "{msg}"
    );
    let mut bad_e = s.clone();
    bad_e.energy = Some(1e300);
    let err = super::fit::fit(&species, &cfg, &fitcfg, &[bad_e], &[], false).unwrap_err();
    assert!(err.to_string().contains("energy 1e300"), "{err}");
    assert!(super::fit::fit(&species, &cfg, &fitcfg, &[s], &[], false).is_ok());
}
