//! Correctness of evaluation: finite differences, invariances, periodic images, species order.

use super::*;
use crate::structure::Structure;
use nalgebra::{Matrix3, Rotation3, Unit, Vector3};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::testing::{random_model, random_structure, small_cfg, tiny_cfg};

fn energy(model: &Model, s: &Structure) -> f64 {
    let mut ws = Workspace::new(model);
    model.predict(s, &mut ws).unwrap().energy
}

#[test]
fn forces_match_finite_differences() {
    for species in [&["Li"][..], &["Al", "Mg"][..]] {
        let model = random_model(species, &small_cfg(), 7);
        let mut s = random_structure(species, 2, 11, true);
        // Put one pair inside the core switching region.
        s.positions[1] = [
            s.positions[0][0] + 1.9,
            s.positions[0][1],
            s.positions[0][2],
        ];
        let mut ws = Workspace::new(&model);
        let p = model.predict(&s, &mut ws).unwrap();
        let h = 1e-5;
        let mut max_rel = 0.0f64;
        for a in 0..s.len() {
            for d in 0..3 {
                let mut sp = s.clone();
                sp.positions[a][d] += h;
                let mut sm = s.clone();
                sm.positions[a][d] -= h;
                let fd = -(energy(&model, &sp) - energy(&model, &sm)) / (2.0 * h);
                let f = p.forces[a][d];
                let rel = (fd - f).abs() / f.abs().max(1e-2);
                max_rel = max_rel.max(rel);
            }
        }
        assert!(
            max_rel < 1e-6,
            "{species:?}: max relative force error {max_rel:e}"
        );
    }
}

#[test]
fn virial_matches_strain_derivative() {
    let model = random_model(&["Al", "Mg"], &small_cfg(), 3);
    let s = random_structure(&["Al", "Mg"], 2, 5, true);
    let mut ws = Workspace::new(&model);
    let p = model.predict(&s, &mut ws).unwrap();
    // virial = -dE/dε (symmetric strain applied to cell and positions).
    let h = 1e-6;
    for a in 0..3 {
        for b in a..3 {
            let strained = |e: f64| {
                let mut eps = Matrix3::<f64>::identity();
                eps[(a, b)] += e / 2.0;
                eps[(b, a)] += e / 2.0;
                let mut t = s.clone();
                let c = t.cell.unwrap();
                let mut nc = c;
                for r in 0..3 {
                    let v = eps * Vector3::new(c[r][0], c[r][1], c[r][2]);
                    nc[r] = [v.x, v.y, v.z];
                }
                t.cell = Some(nc);
                for q in t.positions.iter_mut() {
                    let v = eps * Vector3::new(q[0], q[1], q[2]);
                    *q = [v.x, v.y, v.z];
                }
                energy(&model, &t)
            };
            let fd = -(strained(h) - strained(-h)) / (2.0 * h);
            let v = 0.5 * (p.virial[a][b] + p.virial[b][a]);
            assert!(
                (fd - v).abs() < 1e-6 * v.abs().max(1.0),
                "virial[{a}][{b}]: fd {fd} vs {v}"
            );
        }
    }
}

#[test]
fn invariant_under_rotation_translation_and_permutation() {
    let model = random_model(&["Al", "Mg"], &small_cfg(), 9);
    let s = random_structure(&["Al", "Mg"], 2, 13, true);
    let mut ws = Workspace::new(&model);
    let p0 = model.predict(&s, &mut ws).unwrap();
    let rot = Rotation3::from_axis_angle(&Unit::new_normalize(Vector3::new(0.3, -0.8, 0.5)), 1.234);
    let shift = Vector3::new(0.37, -1.9, 12.3);
    let mut t = s.clone();
    let c = t.cell.unwrap();
    let rv = |v: [f64; 3]| {
        let w = rot * Vector3::new(v[0], v[1], v[2]);
        [w.x, w.y, w.z]
    };
    t.cell = Some([rv(c[0]), rv(c[1]), rv(c[2])]);
    for q in t.positions.iter_mut() {
        let w = rot * Vector3::new(q[0], q[1], q[2]) + shift;
        *q = [w.x, w.y, w.z];
    }
    // Reverse the atom order.
    t.positions.reverse();
    t.symbols.reverse();
    let p1 = model.predict(&t, &mut ws).unwrap();
    assert!((p0.energy - p1.energy).abs() < 1e-10 * p0.energy.abs().max(1.0));
    let n = s.len();
    for i in 0..n {
        let j = n - 1 - i;
        assert!((p0.atom_energies[i] - p1.atom_energies[j]).abs() < 1e-10);
        let fr = rv(p0.forces[i]);
        for d in 0..3 {
            assert!(
                (fr[d] - p1.forces[j][d]).abs() < 1e-9,
                "force rotates with the frame"
            );
        }
    }
}

#[test]
fn neighbour_order_does_not_matter() {
    let model = random_model(&["Al", "Mg"], &small_cfg(), 4);
    let s = random_structure(&["Al", "Mg"], 2, 8, false);
    let sp = model.map_species(&s).unwrap();
    let nl = crate::neighbors::build(&s, model.max_cutoff()).unwrap();
    let mut ws = Workspace::new(&model);
    let i = 3;
    let r = nl.range(i);
    let mut rij: Vec<[f64; 3]> = nl.rij[r.clone()].to_vec();
    let mut sj: Vec<u16> = nl.j[r].iter().map(|&j| sp[j as usize]).collect();
    let mut g1 = vec![[0.0; 3]; rij.len()];
    let e1 = model.atom_energy_grad(&mut ws, sp[i] as usize, &rij, &sj, &mut g1, None);
    rij.reverse();
    sj.reverse();
    let mut g2 = vec![[0.0; 3]; rij.len()];
    let e2 = model.atom_energy_grad(&mut ws, sp[i] as usize, &rij, &sj, &mut g2, None);
    assert!((e1 - e2).abs() < 1e-12);
    g2.reverse();
    for (a, b) in g1.iter().zip(&g2) {
        for d in 0..3 {
            assert!((a[d] - b[d]).abs() < 1e-12);
        }
    }
}

#[test]
fn small_cell_equals_supercell_per_atom() {
    let model = random_model(&["Li"], &small_cfg(), 21);
    // Two-atom cell smaller than the cutoff: atoms see their own images.
    let small = random_structure(&["Li"], 1, 2, true);
    let mut big = small.clone();
    let c = small.cell.unwrap();
    big.positions.clear();
    big.symbols.clear();
    for a in 0..3 {
        for b in 0..3 {
            for cc in 0..3 {
                for p in &small.positions {
                    let mut q = *p;
                    for d in 0..3 {
                        q[d] += a as f64 * c[0][d] + b as f64 * c[1][d] + cc as f64 * c[2][d];
                    }
                    big.positions.push(q);
                    big.symbols.push("Li".into());
                }
            }
        }
    }
    big.cell = Some([
        [3.0 * c[0][0], 3.0 * c[0][1], 3.0 * c[0][2]],
        [3.0 * c[1][0], 3.0 * c[1][1], 3.0 * c[1][2]],
        [3.0 * c[2][0], 3.0 * c[2][1], 3.0 * c[2][2]],
    ]);
    let mut ws = Workspace::new(&model);
    let ps = model.predict(&small, &mut ws).unwrap();
    let pb = model.predict(&big, &mut ws).unwrap();
    for (k, e) in pb.atom_energies.iter().enumerate() {
        assert!((e - ps.atom_energies[k % 2]).abs() < 1e-10, "atom {k}");
    }
    assert!((pb.energy - 27.0 * ps.energy).abs() < 1e-8 * pb.energy.abs());
}

/// Labels from a "teacher" model with random coefficients in the same function space.
fn teacher_data(species: &[&str], n: usize) -> (Model, Vec<Structure>) {
    let names: Vec<String> = species.iter().map(|s| s.to_string()).collect();
    let mut data: Vec<Structure> = (0..n)
        .map(|k| random_structure(species, 2, 100 + k as u64, k % 2 == 0))
        .collect();
    let cfg = fit::FitConfig::default();
    let mut teacher = fit::build_skeleton(&names, &tiny_cfg(), &cfg, &data).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for c in teacher.coefs.iter_mut() {
        for v in c.iter_mut() {
            *v = rng.random_range(-0.05..0.05);
        }
    }
    teacher.e0 = (0..names.len()).map(|s| -2.0 + s as f64).collect();
    teacher.rebuild_derived();
    let mut ws = Workspace::new(&teacher);
    for s in data.iter_mut() {
        let p = teacher.predict(s, &mut ws).unwrap();
        s.energy = Some(p.energy);
        s.forces = Some(p.forces);
    }
    (teacher, data)
}

#[test]
fn fit_recovers_a_model_from_its_own_function_space_in_any_species_order() {
    let (teacher, data) = teacher_data(&["Al", "Mg"], 30);
    let cfg = fit::FitConfig {
        ridge: fit::Ridge::Value(1e-12),
        ..Default::default()
    };
    let test = random_structure(&["Al", "Mg"], 2, 999, true);
    let mut ws = Workspace::new(&teacher);
    let want = teacher.predict(&test, &mut ws).unwrap();
    for order in [["Al", "Mg"], ["Mg", "Al"]] {
        let names: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        let student = fit::fit(&names, &tiny_cfg(), &cfg, &data, &[], false).unwrap();
        let mut ws = Workspace::new(&student);
        let got = student.predict(&test, &mut ws).unwrap();
        let n = test.len() as f64;
        assert!(
            (got.energy - want.energy).abs() / n < 1e-6,
            "{order:?}: {} vs {}",
            got.energy,
            want.energy
        );
        let mut maxf = 0.0f64;
        for (a, b) in got.forces.iter().zip(&want.forces) {
            for d in 0..3 {
                maxf = maxf.max((a[d] - b[d]).abs());
            }
        }
        assert!(maxf < 1e-5, "{order:?}: max force difference {maxf:e} eV/Å");
        let train = &student.fit_info.metrics[0];
        assert!(
            train.force_rmse < 1e-2 && train.energy_rmse < 1e-2,
            "{train:?}"
        );
    }
}

#[test]
fn collapsed_energy_equals_coefficients_dot_basis_and_descriptor_gradient_is_exact() {
    let model = random_model(&["Al", "Mg"], &small_cfg(), 17);
    let s = random_structure(&["Al", "Mg"], 2, 19, true);
    let sp = model.map_species(&s).unwrap();
    let nl = crate::neighbors::build(&s, model.max_cutoff()).unwrap();
    let mut ws = Workspace::new(&model);
    let i = 2;
    let si = sp[i] as usize;
    let r = nl.range(i);
    let rij: Vec<[f64; 3]> = nl.rij[r.clone()].to_vec();
    let sj: Vec<u16> = nl.j[r].iter().map(|&j| sp[j as usize]).collect();
    let m = model.nfuncs(si);
    let mut b = vec![0.0; m];
    let mut g = vec![[0.0; 3]; rij.len()];
    let e = model.atom_energy_grad(&mut ws, si, &rij, &sj, &mut g, Some(&mut b));
    let mut core_g = vec![[0.0; 3]; rij.len()];
    let ecore = model.atom_core(si, &rij, &sj, &mut core_g);
    let dot: f64 = b.iter().zip(&model.coefs[si]).map(|(x, c)| x * c).sum();
    assert!((e - (model.e0[si] + dot + ecore)).abs() < 1e-10 * e.abs().max(1.0));
    // dB/dr against finite differences, and c·dB/dr against the energy gradient.
    let mut b0 = vec![0.0; m];
    let mut db = vec![];
    model.atom_descriptor_grad(&mut ws, si, &rij, &sj, &mut b0, &mut db);
    let nn = rij.len();
    let h = 1e-6;
    let (mut bp, mut bm) = (vec![0.0; m], vec![0.0; m]);
    for k in [0, nn / 2, nn - 1] {
        for d in 0..3 {
            let mut rp = rij.clone();
            rp[k][d] += h;
            let mut rm = rij.clone();
            rm[k][d] -= h;
            model.atom_descriptor(&mut ws, si, &rp, &sj, &mut bp);
            model.atom_descriptor(&mut ws, si, &rm, &sj, &mut bm);
            let mut cg = 0.0;
            for f in 0..m {
                let fd = (bp[f] - bm[f]) / (2.0 * h);
                let an = db[(f * nn + k) * 3 + d];
                assert!(
                    (fd - an).abs() < 1e-6 * an.abs().max(1.0),
                    "f={f} k={k} d={d}: {fd} vs {an}"
                );
                cg += model.coefs[si][f] * an;
            }
            assert!((cg + core_g[k][d] - g[k][d]).abs() < 1e-9 * g[k][d].abs().max(1.0));
        }
    }
}

#[test]
fn isolated_atom_has_reference_energy_and_no_force() {
    let model = random_model(&["Li"], &small_cfg(), 1);
    let s = Structure {
        positions: vec![[0.0; 3]],
        symbols: vec!["Li".into()],
        ..Default::default()
    };
    let mut ws = Workspace::new(&model);
    let p = model.predict(&s, &mut ws).unwrap();
    // With no neighbours A = 0, so only E0 (and the constant part of order-1 functions, none) remain.
    assert!((p.energy - model.e0[0]).abs() < 1e-12);
    assert_eq!(p.forces[0], [0.0; 3]);
}

/// The lane kernel against the scalar path: a lane with the model's own coefficients gives its
/// energy, gradients and basis vector (up to rounding; the basis vector exactly, from the same
/// node values); a lane with other coefficients gives that model's; a lane without core
/// repulsion differs by exactly the core term; the portable and the AVX2+FMA builds agree to
/// rounding; five lanes (two groups) work like one.
#[test]
fn lane_kernel_equals_the_scalar_path_per_lane() {
    let species = ["Al", "Mg"];
    let m = random_model(&species, &small_cfg(), 41);
    // Compressed so that some pairs lie inside the core-repulsion range (< 2.1 Å).
    let mut s = random_structure(&species, 2, 43, true);
    for p in s.positions.iter_mut() {
        for v in p.iter_mut() {
            *v *= 0.8;
        }
    }
    if let Some(c) = s.cell.as_mut() {
        for row in c.iter_mut() {
            for v in row.iter_mut() {
                *v *= 0.8;
            }
        }
    }
    let sp = m.map_species(&s).unwrap();
    let nl = crate::neighbors::build(&s, m.max_cutoff()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(44);
    // Lanes: 0 the model, 1 other coefficients, 2 the model without core, 3 and 4 more others.
    let others: Vec<Vec<Vec<f64>>> = (0..3)
        .map(|_| {
            (0..2)
                .map(|z| {
                    (0..m.nfuncs(z))
                        .map(|_| rng.random_range(-0.1..0.1))
                        .collect()
                })
                .collect()
        })
        .collect();
    let lane_coefs = |z: usize| -> Vec<&[f64]> {
        vec![
            &m.coefs[z],
            &others[0][z],
            &m.coefs[z],
            &others[1][z],
            &others[2][z],
        ]
    };
    let tables: Vec<_> = (0..2)
        .map(|z| {
            let e0 = [m.e0[z], 0.5, 0.0, m.e0[z], -0.25];
            m.lane_tables(z, &lane_coefs(z), &e0, &[1.0, 1.0, 0.0, 1.0, 1.0])
                .unwrap()
        })
        .collect();
    let other_model = |k: usize, e0: [f64; 2]| {
        let mut o = m.clone();
        o.coefs = others[k].clone();
        o.e0 = e0.to_vec();
        o.rebuild_derived();
        o
    };
    let refs = [
        (1, other_model(0, [0.5, 0.5])),
        (3, other_model(1, m.e0.clone().try_into().unwrap())),
        (4, other_model(2, [-0.25, -0.25])),
    ];
    let mut ws = Workspace::new(&m);
    let mut ws2 = Workspace::new(&m);
    let (mut core_pairs, mut max_rel, mut fscale) = (0, 0.0f64, 0.0f64);
    let mut sj = vec![];
    for i in 0..s.len() {
        let r = nl.range(i);
        let rij = &nl.rij[r.clone()];
        sj.clear();
        sj.extend(nl.j[r.clone()].iter().map(|&j| sp[j as usize]));
        let si = sp[i] as usize;
        let nn = rij.len();
        core_pairs += rij
            .iter()
            .filter(|v| crate::neighbors::norm(**v) < 2.1)
            .count();
        let mut grad = vec![[0.0; 3]; nn];
        let mut b = vec![0.0; m.nfuncs(si)];
        let e = m.atom_energy_grad(&mut ws, si, rij, &sj, &mut grad, Some(&mut b));
        let (mut le, mut lg) = (vec![0.0; 5], vec![[0.0; 3]; nn * 5]);
        let mut lb = vec![0.0; m.nfuncs(si)];
        m.atom_energy_grad_lanes(
            &mut ws,
            si,
            rij,
            &sj,
            &tables[si],
            &mut le,
            &mut lg,
            Some(&mut lb),
        );
        assert_eq!(lb, b, "atom {i}: basis vector from the lane pass");
        assert!(
            (le[0] - e).abs() < 1e-12 * e.abs().max(1.0),
            "{} vs {e}",
            le[0]
        );
        let mut core_grad = vec![[0.0; 3]; nn];
        let ecore = m.atom_core(si, rij, &sj, &mut core_grad);
        assert!((le[2] - (le[0] - m.e0[si] - ecore)).abs() < 1e-12 * e.abs().max(1.0));
        for k in 0..nn {
            for d in 0..3 {
                let (a, b) = (lg[k * 5][d], grad[k][d]);
                fscale = fscale.max(b.abs());
                max_rel = max_rel.max((a - b).abs());
                assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} vs {b}");
                let nocore = lg[k * 5 + 2][d] + core_grad[k][d];
                assert!(
                    (nocore - a).abs() < 1e-12 * a.abs().max(1.0),
                    "{nocore} vs {a}"
                );
            }
        }
        for (lane, o) in &refs {
            let mut og = vec![[0.0; 3]; nn];
            let oe = o.atom_energy_grad(&mut ws2, si, rij, &sj, &mut og, None);
            assert!(
                (le[*lane] - oe).abs() < 1e-12 * oe.abs().max(1.0),
                "lane {lane}"
            );
            for k in 0..nn {
                for d in 0..3 {
                    let (a, b) = (lg[k * 5 + lane][d], og[k][d]);
                    assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "lane {lane}");
                }
            }
        }
        // The portable build agrees with the one the CPU runs.
        let (mut pe, mut pg) = (vec![0.0; 5], vec![[0.0; 3]; nn * 5]);
        m.members_portable(&mut ws2, si, rij, &sj, &tables[si], &mut pe, &mut pg);
        for (a, b) in pe.iter().zip(&le) {
            assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
        for (a, b) in pg.iter().zip(&lg) {
            for d in 0..3 {
                assert!((a[d] - b[d]).abs() < 1e-12 * b[d].abs().max(1.0));
            }
        }
    }
    assert!(core_pairs > 0, "the test needs pairs inside the core range");
    eprintln!(
        "lane 0 vs atom_energy_grad: max |dfij| {max_rel:.3e} (max |fij| {fscale:.3e}), {core_pairs} core pairs"
    );
}

/// The basis vector from the blocked term tables (AVX2 where the CPU has it, and the portable
/// kernel) is bitwise the same on both paths and equals the one from the full monomial DAG, for
/// species whose function count is not a multiple of the block width, with steps read in place
/// and from the staging row, and blocks whose functions are not consecutive.
#[test]
fn blocked_basis_terms_equal_the_dag_basis_on_every_cpu_path() {
    let model = random_model(&["Al", "Mg"], &small_cfg(), 23);
    for (s, d) in model.derived.iter().enumerate() {
        let nv = d.dag.n_a + d.internal.len() + d.leaves.len();
        let in_place = d.term_base.iter().filter(|&&b| (b as usize) < nv).count();
        let staged = d.term_base.len() - in_place;
        let unused = d.term_stage.iter().filter(|&&i| i < 0).count();
        let permuted = d
            .term_out
            .iter()
            .any(|o| o.windows(2).any(|w| w[1] != u32::MAX && w[1] != w[0] + 1));
        assert!(
            in_place > 0 && staged > 0 && unused > 0 && permuted,
            "species {s}: {in_place} steps in place, {staged} staged ({unused} unused lanes), blocks permuted: {permuted}"
        );
    }
    let s = random_structure(&["Al", "Mg"], 2, 29, true);
    let sp = model.map_species(&s).unwrap();
    let nl = crate::neighbors::build(&s, model.max_cutoff()).unwrap();
    let mut ws = Workspace::new(&model);
    let mut partial_block = false;
    for i in 0..s.len() {
        let si = sp[i] as usize;
        let r = nl.range(i);
        let rij: Vec<[f64; 3]> = nl.rij[r.clone()].to_vec();
        let sj: Vec<u16> = nl.j[r].iter().map(|&j| sp[j as usize]).collect();
        let m = model.nfuncs(si);
        partial_block |= !m.is_multiple_of(4);
        let mut b = vec![f64::NAN; m];
        let mut g = vec![[0.0; 3]; rij.len()];
        model.atom_energy_grad(&mut ws, si, &rij, &sj, &mut g, Some(&mut b));
        let mut bp = vec![f64::NAN; m];
        model.basis_from_fused_portable(&mut ws, si, &mut bp);
        let diff = b
            .iter()
            .zip(&bp)
            .position(|(x, y)| x.to_bits() != y.to_bits());
        assert!(
            diff.is_none(),
            "atom {i}: dispatched and portable kernels differ at function {diff:?}"
        );
        let mut bd = vec![f64::NAN; m];
        model.atom_descriptor(&mut ws, si, &rij, &sj, &mut bd);
        let scale = bd.iter().fold(0.0f64, |a, x| a.max(x.abs()));
        for (f, (x, y)) in b.iter().zip(&bd).enumerate() {
            assert!(
                (x - y).abs() <= 1e-12 * scale,
                "atom {i} function {f}: {x} from the term tables, {y} from the DAG"
            );
        }
    }
    assert!(
        partial_block,
        "the test basis should have a partial block of functions"
    );
}

/// The two-atom lane pass (one 512-bit register for both atoms where the CPU has AVX-512) gives
/// bitwise the energies, gradients and basis vectors of two single lane passes, with two lane
/// groups (five lanes), with and without basis vectors, for atoms with different neighbour
/// counts, and with the same workspace reused across pairs.
#[test]
fn lane_pair_equals_two_single_lane_passes_bitwise() {
    /// Energies, gradients and basis vector of one atom.
    type LaneOut = (Vec<f64>, Vec<[f64; 3]>, Vec<f64>);
    use crate::model::eval::LaneAtom;
    let species = ["Al", "Mg"];
    let m = random_model(&species, &small_cfg(), 51);
    let s = random_structure(&species, 2, 53, true);
    let sp = m.map_species(&s).unwrap();
    let nl = crate::neighbors::build(&s, m.max_cutoff()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(55);
    let tables: Vec<_> = (0..2)
        .map(|z| {
            let coefs: Vec<Vec<f64>> = (0..5)
                .map(|_| {
                    (0..m.nfuncs(z))
                        .map(|_| rng.random_range(-0.1..0.1))
                        .collect()
                })
                .collect();
            let refs: Vec<&[f64]> = coefs.iter().map(|c| c.as_slice()).collect();
            m.lane_tables(
                z,
                &refs,
                &[0.1, 0.0, 0.2, 0.0, 0.3],
                &[1.0, 0.0, 1.0, 0.0, 1.0],
            )
            .unwrap()
        })
        .collect();
    let atom = |i: usize| {
        let r = nl.range(i);
        let sj: Vec<u16> = nl.j[r.clone()].iter().map(|&j| sp[j as usize]).collect();
        (nl.rij[r].to_vec(), sj)
    };
    let (mut ws, mut wa, mut wb) = (Workspace::new(&m), Workspace::new(&m), Workspace::new(&m));
    let mut pairs = 0;
    for z in 0..2 {
        let ids: Vec<usize> = (0..s.len()).filter(|&i| sp[i] as usize == z).collect();
        for (q, w) in ids.windows(2).enumerate() {
            let (x, y) = (atom(w[0]), atom(w[1]));
            let nf = m.nfuncs(z);
            // Single passes.
            let mut single = vec![];
            for (rij, sj) in [&x, &y] {
                let (mut e, mut g, mut b) =
                    (vec![0.0; 5], vec![[0.0; 3]; rij.len() * 5], vec![0.0; nf]);
                m.atom_energy_grad_lanes(
                    &mut ws,
                    z,
                    rij,
                    sj,
                    &tables[z],
                    &mut e,
                    &mut g,
                    Some(&mut b),
                );
                single.push((e, g, b));
            }
            // The pair, asking for the basis vector of both, one, or neither atom.
            let want = [q % 3 != 2, q % 3 == 0];
            let mut out: Vec<LaneOut> = [&x, &y]
                .iter()
                .map(|(rij, _)| {
                    (
                        vec![f64::NAN; 5],
                        vec![[f64::NAN; 3]; rij.len() * 5],
                        vec![f64::NAN; nf],
                    )
                })
                .collect();
            let (o0, o1) = out.split_at_mut(1);
            let (o0, o1) = (&mut o0[0], &mut o1[0]);
            m.atom_energy_grad_lanes_pair(
                z,
                &tables[z],
                [
                    LaneAtom {
                        ws: &mut wa,
                        rij: &x.0,
                        sj: &x.1,
                        energies: &mut o0.0,
                        grads: &mut o0.1,
                        b: want[0].then_some(&mut o0.2[..]),
                    },
                    LaneAtom {
                        ws: &mut wb,
                        rij: &y.0,
                        sj: &y.1,
                        energies: &mut o1.0,
                        grads: &mut o1.1,
                        b: want[1].then_some(&mut o1.2[..]),
                    },
                ],
            );
            for (k, ((e, g, b), (pe, pg, pb))) in single.iter().zip(&out).enumerate() {
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(pe), bits(e), "species {z} pair {q} atom {k}: energies");
                let flat =
                    |v: &[[f64; 3]]| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    flat(pg),
                    flat(g),
                    "species {z} pair {q} atom {k}: gradients"
                );
                if want[k] {
                    assert_eq!(
                        bits(pb),
                        bits(b),
                        "species {z} pair {q} atom {k}: basis vector"
                    );
                } else {
                    assert!(
                        pb.iter().all(|v| v.is_nan()),
                        "basis vector written unasked"
                    );
                }
            }
            assert_ne!(x.0.len(), 0);
            pairs += 1;
        }
    }
    assert!(pairs >= 4, "only {pairs} pairs");
}

/// Teacher data with Gaussian noise of `sigma` eV/Å on the forces of the first `n_noisy`
/// structures (so that a small ridge overfits them).
fn noisy_teacher_data(n: usize, n_noisy: usize, sigma: f64) -> Vec<Structure> {
    let (_, mut data) = teacher_data(&["Al", "Mg"], n);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for s in data.iter_mut().take(n_noisy) {
        for f in s.forces.as_mut().unwrap().iter_mut() {
            for v in f.iter_mut() {
                // Sum of uniforms: close enough to Gaussian for a noise floor.
                let u: f64 = (0..12).map(|_| rng.random_range(0.0..1.0)).sum::<f64>() - 6.0;
                *v += sigma * u;
            }
        }
    }
    data
}

#[test]
fn auto_ridge_keeps_the_lowest_validation_loss_and_records_the_scan() {
    let data = noisy_teacher_data(24, 16, 0.3);
    let (train, valid) = data.split_at(16);
    let names: Vec<String> = ["Al", "Mg"].iter().map(|s| s.to_string()).collect();
    let cfg = fit::FitConfig::default();
    assert_eq!(cfg.ridge, fit::Ridge::Auto);
    let model = fit::fit(&names, &small_cfg(), &cfg, train, valid, false).unwrap();
    let ch = model
        .fit_info
        .ridge_choice
        .clone()
        .expect("auto ridge records its choice");
    assert_eq!(ch.how, "the validation data");
    assert!(ch.scan.len() >= fit::Ridge::SCAN.len(), "{ch:?}");
    let best = ch
        .scan
        .iter()
        .min_by(|a, b| a.loss.total_cmp(&b.loss))
        .unwrap();
    assert_eq!(best.ridge, ch.chosen);
    assert_eq!(model.fit_info.settings.ridge, fit::Ridge::Value(ch.chosen));
    // The noise makes the smallest ridge overfit: the choice is not at the bottom of the scan.
    let smallest = &ch.scan[0];
    assert!(
        ch.chosen > smallest.ridge && best.loss < smallest.loss,
        "chose {:e} (loss {}), smallest {:e} (loss {})",
        ch.chosen,
        best.loss,
        smallest.ridge,
        smallest.loss
    );
    // The stored validation errors are those of the kept solution.
    let v = &model.fit_info.metrics[1];
    assert!(
        (v.force_rmse - best.force_rmse).abs() < 1e-9 * best.force_rmse.max(1.0),
        "{v:?} vs {best:?}"
    );
    // A fit with the chosen ridge as a number gives the same model.
    let fixed = fit::FitConfig {
        ridge: fit::Ridge::Value(ch.chosen),
        ..Default::default()
    };
    let again = fit::fit(&names, &small_cfg(), &fixed, train, valid, false).unwrap();
    assert!(again.fit_info.ridge_choice.is_none());
    for (a, b) in model
        .coefs
        .iter()
        .flatten()
        .zip(again.coefs.iter().flatten())
    {
        assert!((a - b).abs() <= 1e-9 * (1.0 + a.abs()), "{a} vs {b}");
    }
    // The choice survives the model file.
    let c = crate::io::modelfile::to_container(&model);
    let back = crate::io::modelfile::from_container(std::path::Path::new("m.aceuq"), &c).unwrap();
    assert_eq!(back.fit_info.ridge_choice, Some(ch));
    // Without validation data every fifth training structure is held out for the scan and the
    // model is refitted on all of them with the chosen ridge.
    let none = fit::fit(&names, &small_cfg(), &cfg, train, &[], false).unwrap();
    let ch = none.fit_info.ridge_choice.clone().unwrap();
    assert!(
        ch.how.contains("3 of the 16 training structures held out"),
        "{ch:?}"
    );
    assert!(ch.scan.len() >= fit::Ridge::SCAN.len());
    let refit = fit::FitConfig {
        ridge: fit::Ridge::Value(ch.chosen),
        ..Default::default()
    };
    let all = fit::fit(&names, &small_cfg(), &refit, train, &[], false).unwrap();
    for (a, b) in none.coefs.iter().flatten().zip(all.coefs.iter().flatten()) {
        assert!((a - b).abs() <= 1e-9 * (1.0 + a.abs()), "{a} vs {b}");
    }
    // With fewer than five structures the default is used and said.
    let few = fit::fit(&names, &small_cfg(), &cfg, &train[..4], &[], false).unwrap();
    let ch = few.fit_info.ridge_choice.unwrap();
    assert_eq!(ch.chosen, fit::Ridge::FALLBACK);
    assert!(
        ch.scan.is_empty() && ch.how.contains("fewer than 5"),
        "{ch:?}"
    );
}

#[test]
fn ridge_reads_auto_or_a_number_and_refuses_anything_else() {
    #[derive(serde::Deserialize)]
    struct T {
        fit: fit::FitConfig,
    }
    let read = |t: &str| toml::from_str::<T>(t).map(|t| t.fit.ridge);
    assert_eq!(read("[fit]\nridge = \"auto\"").unwrap(), fit::Ridge::Auto);
    assert_eq!(
        read("[fit]\nridge = 1e-3").unwrap(),
        fit::Ridge::Value(1e-3)
    );
    assert_eq!(read("[fit]\nridge = 0").unwrap(), fit::Ridge::Value(0.0));
    assert_eq!(read("[fit]").unwrap(), fit::Ridge::Auto);
    let e = read("[fit]\nridge = \"small\"").unwrap_err().to_string();
    assert!(e.contains("ridge must be \"auto\" or a number"), "{e}");
    let bad = fit::FitConfig {
        ridge: fit::Ridge::Value(-1.0),
        ..Default::default()
    };
    assert!(bad.validate().is_err());
    // Stored settings are plain numbers, as in older model files.
    let stored = fit::FitConfig {
        ridge: fit::Ridge::Value(1e-3),
        ..Default::default()
    };
    let text = toml::to_string(&stored).unwrap();
    assert!(text.contains("ridge = 0.001"), "{text}");
}

/// The AVX2 + FMA build of the per-atom evaluation (`atom_energy_grad_avx2`, which AVX-512 hosts
/// run too) and the portable one (`atom_energy_grad_body`) give the same energy, gradients and
/// basis vector bit for bit,
/// for a basis with every angular degree up to 4 (the default's) and a small one: what makes
/// the kernel families of the LAMMPS bench interchangeable. It fails if the builds ever
/// round differently (code that differs by target feature, or a reordered sum).
#[test]
fn vector_build_equals_portable_build_bit_for_bit() {
    #[cfg(target_arch = "x86_64")]
    {
        if !crate::simd::cpu_features().avx2_fma() {
            eprintln!("no AVX2 + FMA on this CPU: nothing to compare");
            return;
        }
        for cfg in [crate::basis::BasisConfig::default(), small_cfg()] {
            let model = random_model(&["Al", "Mg"], &cfg, 5);
            let s = random_structure(&["Al", "Mg"], 2, 17, true);
            let sp = model.map_species(&s).unwrap();
            let nl = crate::neighbors::build(&s, model.max_cutoff()).unwrap();
            let mut ws = Workspace::new(&model);
            for i in 0..s.len() {
                let si = sp[i] as usize;
                let r = nl.range(i);
                let rij: Vec<[f64; 3]> = nl.rij[r.clone()].to_vec();
                let sj: Vec<u16> = nl.j[r].iter().map(|&j| sp[j as usize]).collect();
                let m = model.nfuncs(si);
                let (mut b1, mut b2) = (vec![f64::NAN; m], vec![f64::NAN; m]);
                let mut g1 = vec![[0.0; 3]; rij.len()];
                let mut g2 = g1.clone();
                let e1 =
                    model.atom_energy_grad_body(&mut ws, si, &rij, &sj, &mut g1, Some(&mut b1));
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                let e2 = unsafe {
                    model.atom_energy_grad_avx2(&mut ws, si, &rij, &sj, &mut g2, Some(&mut b2))
                };
                assert_eq!(e1.to_bits(), e2.to_bits(), "atom {i}");
                let bits = |g: &[[f64; 3]]| -> Vec<[u64; 3]> {
                    g.iter().map(|v| v.map(f64::to_bits)).collect()
                };
                assert_eq!(bits(&g1), bits(&g2), "atom {i}");
                let same = b1.iter().zip(&b2).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "atom {i}: basis vectors differ");
            }
        }
    }
}
