//! Extrapolation grades of pacemaker B-basis potentials (`.yaml` + active-set inverse `.asi`)
//! against ML-PACE's `pair_style pace/extrapolation` (see tests/data/pace/README.md):
//!
//! - `bbasis_alcu`: a B-basis potential written for these tests (two elements, two densities,
//!   rank 1 to 6, every radial family but one, core repulsion), with a linear and a non-linear
//!   active-set inverse written by aceuq's `.npz` writer; energies, forces and per-atom gamma of
//!   ML-PACE for 5 structures are committed. Always run.
//! - pacemaker's Cu-I example potential (academic licence, not in this repository) when
//!   `ACEUQ_PACE_CUI_DIR` names a folder with `Cu-I.yaml` and `Cu-I.asi`: ML-PACE's gammas,
//!   energies and forces of 13 structures are in `tests/data/pace/cu_i_extrapolation_mlpace.xyz`.

#![allow(clippy::needless_range_loop)] // index loops over xyz components read like the formulas

mod common;

use aceuq::pace::asi::{self, ActiveSet};
use aceuq::pace::bbasis::BBasisPotential;
use aceuq::structure::PropData;
use std::path::Path;

/// Largest differences of one comparison.
#[derive(Default, Debug)]
struct Diff {
    energy_abs: f64,
    energy_rel: f64,
    atom_energy_abs: f64,
    force_abs: f64,
    /// Relative to the frame's largest force component.
    force_rel: f64,
    gamma_rel: f64,
    gamma_abs: f64,
}

fn real_column<'a>(f: &'a aceuq::Structure, name: &str) -> &'a [f64] {
    match f.array(name) {
        Some(PropData::Real { data, .. }) => data,
        _ => panic!("{:?}: no per-atom '{name}'", f.config_type),
    }
}

/// Compare energies, forces and the gamma columns `cols[c]` (computed with `sets[c]`).
fn compare(
    pot: &BBasisPotential,
    frames: &[aceuq::Structure],
    sets: &[(&str, &ActiveSet)],
) -> Diff {
    let mut d = Diff::default();
    for f in frames {
        let name = f.config_type.clone().unwrap_or_default();
        let p = pot
            .model()
            .predict(f)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let e_ref = f.energy.expect("energy");
        d.energy_abs = d.energy_abs.max((p.energy - e_ref).abs());
        d.energy_rel = d
            .energy_rel
            .max((p.energy - e_ref).abs() / e_ref.abs().max(1.0));
        let ea = real_column(f, "energies");
        let fr = f.forces.as_ref().expect("forces");
        let fscale = fr
            .iter()
            .flatten()
            .fold(0.0f64, |a, b| a.max(b.abs()))
            .max(1e-3);
        for i in 0..f.len() {
            d.atom_energy_abs = d.atom_energy_abs.max((p.atom_energies[i] - ea[i]).abs());
            for c in 0..3 {
                let x = (p.forces[i][c] - fr[i][c]).abs();
                d.force_abs = d.force_abs.max(x);
                d.force_rel = d.force_rel.max(x / fscale);
            }
        }
        let mut worst = (0.0f64, 0usize, 0.0, 0.0, "");
        for (col, set) in sets {
            let g = pot
                .extrapolation_grades(f, set)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let g_ref = real_column(f, col);
            for i in 0..f.len() {
                let abs = (g[i] - g_ref[i]).abs();
                let rel = abs / g_ref[i].abs().max(1e-300);
                d.gamma_abs = d.gamma_abs.max(abs);
                d.gamma_rel = d.gamma_rel.max(rel);
                if rel > worst.0 {
                    worst = (rel, i, g[i], g_ref[i], col);
                }
            }
        }
        common::note(&format!(
            "{name:>24}: E {:.12} ref {:.12}; worst gamma ({}) atom {} {:.10e} ref {:.10e} \
             (rel {:.1e})",
            p.energy, e_ref, worst.4, worst.1, worst.2, worst.3, worst.0
        ));
    }
    common::note(&format!("{d:?}"));
    d
}

#[test]
fn bbasis_alcu_matches_ml_pace() {
    let pot = BBasisPotential::load(&common::repo("tests/data/pace/bbasis_alcu.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pot.elements(), ["Al", "Cu"]);
    let lin = pot
        .read_active_set(&common::repo("tests/data/pace/bbasis_alcu_linear.asi"))
        .unwrap_or_else(|e| panic!("{e}"));
    let nonlin = pot
        .read_active_set(&common::repo("tests/data/pace/bbasis_alcu_nonlinear.asi"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(lin.linear && !nonlin.linear);
    let frames = common::frames("tests/data/pace/bbasis_alcu_mlpace.xyz");
    assert_eq!(frames.len(), 6);
    let d = compare(
        &pot,
        &frames,
        &[("gamma_linear", &lin), ("gamma_nonlinear", &nonlin)],
    );
    assert!(d.energy_rel < 1e-10, "energy: {d:?}");
    assert!(d.atom_energy_abs < 1e-9, "per-atom energy: {d:?}");
    assert!(d.force_rel < 1e-9, "forces: {d:?}");
    assert!(d.gamma_rel < 1e-8, "gamma: {d:?}");
}

/// One element with the ZBL and with the distance inner cutoff, structures with atoms inside them.
#[test]
fn bbasis_inner_cutoffs_match_ml_pace() {
    for name in ["cu_zbl", "cu_distance"] {
        common::note(&format!("bbasis_{name}:"));
        let file = |ext: &str| common::repo(&format!("tests/data/pace/bbasis_{name}{ext}"));
        let pot = BBasisPotential::load(&file(".yaml")).unwrap_or_else(|e| panic!("{e}"));
        let lin = pot
            .read_active_set(&file("_linear.asi"))
            .unwrap_or_else(|e| panic!("{e}"));
        let nonlin = pot
            .read_active_set(&file("_nonlinear.asi"))
            .unwrap_or_else(|e| panic!("{e}"));
        let frames = common::frames(&format!("tests/data/pace/bbasis_{name}_mlpace.xyz"));
        assert_eq!(frames.len(), 5);
        let d = compare(
            &pot,
            &frames,
            &[("gamma_linear", &lin), ("gamma_nonlinear", &nonlin)],
        );
        assert!(d.energy_rel < 1e-10, "{name} energy: {d:?}");
        assert!(d.atom_energy_abs < 1e-9, "{name} per-atom energy: {d:?}");
        assert!(d.force_rel < 1e-9, "{name} forces: {d:?}");
        assert!(d.gamma_rel < 1e-8, "{name} gamma: {d:?}");
    }
}

#[test]
fn cu_i_matches_ml_pace_when_available() {
    let Some(dir) = std::env::var_os("ACEUQ_PACE_CUI_DIR") else {
        common::note(
            "SKIPPED cu_i_matches_ml_pace_when_available: ACEUQ_PACE_CUI_DIR is not set (a \
             folder with pacemaker's Cu-I.yaml and Cu-I.asi, which are not in this repository)",
        );
        return;
    };
    let dir = Path::new(&dir);
    let pot = BBasisPotential::load(&dir.join("Cu-I.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pot.elements(), ["Cu"]);
    let set = pot
        .read_active_set(&dir.join("Cu-I.asi"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        set.linear,
        "Cu-I.asi is a linear active set (82 x 82: 82 functions)"
    );
    let frames = common::frames("tests/data/pace/cu_i_extrapolation_mlpace.xyz");
    assert_eq!(frames.len(), 13);
    let d = compare(&pot, &frames, &[("gamma", &set)]);
    assert!(d.energy_rel < 1e-10, "energy: {d:?}");
    assert!(d.atom_energy_abs < 1e-8, "per-atom energy: {d:?}");
    assert!(d.force_rel < 1e-8, "forces: {d:?}");
    assert!(d.gamma_rel < 1e-6, "gamma: {d:?}");
}

#[test]
fn asi_reads_back_what_it_writes() {
    let m = asi::AsiMatrix {
        n: 3,
        data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5, -7.0, 8.0, 9.0],
    };
    let els = vec!["Cu".to_string()];
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pace_extrapolation");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rt.asi");
    asi::write_asi(&path, &els, std::slice::from_ref(&m)).unwrap();
    let back = asi::read_asi(&path, &els, &[(3, 6)]).unwrap();
    assert!(back.linear);
    assert_eq!(back.matrices, vec![m]);
}

/// splitmix64 uniform numbers in [-1, 1).
struct Rng(u64);

impl Rng {
    fn sym(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// A 32-atom fcc crystal of `elements` (random occupation), rattled: where the active sets'
/// row scales are measured.
fn alloy(seed: u64, elements: &[String], a: f64) -> aceuq::Structure {
    let mut rng = Rng(seed);
    let basis = [
        [0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.5, 0.5],
    ];
    let mut s = aceuq::Structure {
        cell: Some([
            [2.0 * a, 0.0, 0.0],
            [0.0, 2.0 * a, 0.0],
            [0.0, 0.0, 2.0 * a],
        ]),
        pbc: [true; 3],
        ..Default::default()
    };
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..2 {
                for b in basis {
                    let e = (((rng.sym() + 1.0) / 2.0) * elements.len() as f64) as usize;
                    s.symbols.push(elements[e.min(elements.len() - 1)].clone());
                    s.positions.push([
                        (i as f64 + b[0]) * a + 0.1 * rng.sym(),
                        (j as f64 + b[1]) * a + 0.1 * rng.sym(),
                        (k as f64 + b[2]) * a + 0.1 * rng.sym(),
                    ]);
                }
            }
        }
    }
    s
}

/// Writes `tests/data/pace/bbasis_*_{linear,nonlinear}.asi`: random matrices whose rows are
/// scaled by the typical size of their projection in a crystal, so that every B function
/// contributes to gamma. Run by hand (see tests/data/pace/README.md).
#[test]
#[ignore]
fn write_bbasis_active_sets() {
    for (name, a) in [("alcu", 3.85), ("cu_zbl", 3.3), ("cu_distance", 3.3)] {
        write_active_sets(name, a);
    }
}

fn write_active_sets(name: &str, a: f64) {
    let pot = BBasisPotential::load(&common::repo(&format!(
        "tests/data/pace/bbasis_{name}.yaml"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let s = alloy(11, pot.elements(), a);
    let species: Vec<i32> = s
        .symbols
        .iter()
        .map(|x| pot.model().species_index(x).unwrap() as i32)
        .collect();
    let nl = aceuq::neighbors::build(&s, pot.model().max_cutoff()).unwrap();
    let mut ws = aceuq::pace::PaceScratch::default();
    for (kind, linear) in [("linear", true), ("nonlinear", false)] {
        let mut matrices = vec![];
        for si in 0..pot.elements().len() {
            let n = if linear {
                pot.nprojections_linear(si)
            } else {
                pot.nprojections(si)
            };
            let mut scale = vec![0.0f64; n];
            let mut count = 0;
            for i in 0..s.len() {
                if species[i] as usize != si {
                    continue;
                }
                let r = nl.range(i);
                let sj: Vec<i32> = nl.j[r.clone()]
                    .iter()
                    .map(|&j| species[j as usize])
                    .collect();
                let mut x = vec![0.0; n];
                if linear {
                    pot.atom_projections_linear(&mut ws, si, &nl.rij[r], &sj, &mut x)
                        .unwrap();
                } else {
                    pot.atom_projections(&mut ws, si, &nl.rij[r], &sj, &mut x)
                        .unwrap();
                }
                for k in 0..n {
                    scale[k] += x[k] * x[k];
                }
                count += 1;
            }
            assert!(count > 0);
            let mut rng = Rng(1000 + si as u64 + 10 * linear as u64);
            let mut data = vec![0.0; n * n];
            for k in 0..n {
                let sk = (scale[k] / count as f64).sqrt().max(1e-8) * (n as f64).sqrt();
                for i in 0..n {
                    data[k * n + i] = rng.sym() / sk;
                }
            }
            matrices.push(asi::AsiMatrix { n, data });
        }
        let path = common::repo(&format!("tests/data/pace/bbasis_{name}_{kind}.asi"));
        asi::write_asi(&path, pot.elements(), &matrices).unwrap();
        common::note(&format!(
            "wrote {} ({})",
            path.display(),
            matrices
                .iter()
                .map(|m| format!("{0}x{0}", m.n))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

/// python-ace's own test potentials (academic licence, not in this repository) when
/// `ACEUQ_PACE_PYACE_TESTS` names python-ace's `tests/` folder: every B-basis potential there
/// reads, and `DFT10B-AgCu.yaml` + `.asi` give the energy and gammas python-ace's
/// `test_PyACECalculator_active_set` asserts (np.allclose, relative 1e-5).
#[test]
fn python_ace_test_potentials_when_available() {
    let Some(dir) = std::env::var_os("ACEUQ_PACE_PYACE_TESTS") else {
        common::note(
            "SKIPPED python_ace_test_potentials_when_available: ACEUQ_PACE_PYACE_TESTS is not \
             set (python-ace's tests/ folder, not in this repository)",
        );
        return;
    };
    let dir = Path::new(&dir);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("yaml"))
        .collect();
    names.sort();
    let mut read = 0;
    for p in &names {
        match BBasisPotential::load(p) {
            Ok(_) => read += 1,
            // ML-PACE's stub radial basis for its own tests (`TEST_*` other than TEST_SBessel).
            Err(e) if e.to_string().contains("'TEST_") => {}
            Err(e) => panic!("{e}"),
        }
    }
    common::note(&format!("{read} of {} potentials read", names.len()));
    let alni = BBasisPotential::load(&dir.join("multispecies_AlNi.yaml")).unwrap();
    let set = alni
        .read_active_set(&dir.join("multispecies_AlNi.asi"))
        .unwrap();
    assert!(set.linear);
    let pot = BBasisPotential::load(&dir.join("DFT10B-AgCu.yaml")).unwrap();
    let set = pot.read_active_set(&dir.join("DFT10B-AgCu.asi")).unwrap();
    // ase.build.bulk("Ag", cubic=True), symbols Ag Cu Ag Cu, positions + np.random.randn
    // (seed 42), as in the python-ace test.
    let s = aceuq::Structure {
        cell: Some([[4.09, 0.0, 0.0], [0.0, 4.09, 0.0], [0.0, 0.0, 4.09]]),
        pbc: [true; 3],
        positions: vec![
            [0.4967141530112327, -0.13826430117118466, 0.6476885381006925],
            [1.5230298564080254, 1.810846625276664, 1.8108630430508195],
            [3.6242128155073914, 0.7674347291529088, 1.5755256140650478],
            [2.5875600435859645, 1.5815823071875377, -0.46572975357025687],
        ],
        symbols: ["Ag", "Cu", "Ag", "Cu"].map(String::from).to_vec(),
        ..Default::default()
    };
    let e = pot.model().predict(&s).unwrap().energy;
    let g = pot.extrapolation_grades(&s, &set).unwrap();
    let e_ref = -778.3043076364492;
    let g_ref = [
        5691014.320236206,
        1711.20627784729,
        5691197.948196411,
        1647.2230472564697,
    ];
    common::note(&format!(
        "DFT10B-AgCu: E {e} (python-ace {e_ref}), gamma {g:?} ({g_ref:?})"
    ));
    assert!(
        (e - e_ref).abs() <= 1e-8 * e_ref.abs(),
        "energy {e} vs {e_ref}"
    );
    for (a, b) in g.iter().zip(g_ref) {
        assert!((a - b).abs() <= 1e-5 * b, "gamma {a} vs {b}");
    }
}

/// Per-atom grades of `frames` with `asi` (projections of the kind the file holds).
fn grades(
    pot: &aceuq::pace::PacePotential,
    asi: &aceuq::pace::ActiveSetInverse,
    frames: &[aceuq::Structure],
) -> Vec<f64> {
    let mut acc = vec![];
    let mut out = vec![];
    for f in frames {
        for (si, row) in pot.structure_rows(f).expect("projections") {
            out.push(asi.gamma(si, &row, &mut acc));
        }
    }
    out
}

/// `aceuq activeset` on a pacemaker B-basis potential writes an `.asi` that the ML-PACE-format
/// reader accepts as a non-linear active set of the right sizes; every atom it was built from
/// then has gamma <= the MaxVol tolerance and the selected atoms gamma 1; a compressed crystal
/// extrapolates. The file is refused by a C-tilde potential (whose projections differ), and a
/// C-tilde potential's own `.asi` is refused by the B-basis potential.
#[test]
fn activeset_command_builds_an_asi_for_a_pacemaker_potential() {
    use aceuq::io::extxyz::{WriteOptions, write_file_atomic};
    use aceuq::pace::{PacePotential, read_active_set};
    let dir = common::workdir("pace_extrapolation", "activeset_cli");
    let yaml = common::repo("tests/data/pace/bbasis_alcu.yaml");
    let els = ["Al".to_string(), "Cu".to_string()];
    let train: Vec<_> = (0..12).map(|k| alloy(1000 + k, &els, 3.85)).collect();
    let data = dir.join("train.xyz");
    write_file_atomic(&data, &train, &WriteOptions::lossless()).unwrap();
    let asi_path = dir.join("alcu.asi");
    let run = |model: &Path, out: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"))
            .args(["activeset", "--model"])
            .arg(model)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .output()
            .expect("run aceuq")
    };
    let o = run(&yaml, &asi_path);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "aceuq activeset failed:\n{err}");
    assert!(err.contains("pair_coeff"), "no usage hint:\n{err}");

    let pot = PacePotential::load(&yaml).unwrap();
    let sizes: Vec<(usize, usize)> = (0..2).map(|s| (usize::MAX, pot.nprojections(s))).collect();
    let raw = asi::read_asi(&asi_path, &els, &sizes).expect("ML-PACE-format reader");
    assert!(!raw.linear);
    let set = read_active_set(&asi_path, &pot).unwrap();
    for s in 0..2 {
        assert_eq!(set.species[s].0, pot.nprojections(s));
    }
    let g = grades(&pot, &set, &train);
    let gmax = g.iter().cloned().fold(0.0, f64::max);
    let at_one = g.iter().filter(|&&x| (x - 1.0).abs() < 1e-6).count();
    common::note(&format!(
        "{} training atoms: max gamma {gmax:.4}, {at_one} at 1 (active); projections Al {} Cu {}",
        g.len(),
        pot.nprojections(0),
        pot.nprojections(1)
    ));
    assert!(gmax <= 1.01 + 1e-6, "a training atom has gamma {gmax}");
    // 184 Al and 200 Cu atoms for 100 and 98 projections: fewer than three atoms per
    // dimension, so each species is graded in its row space (its active atoms have gamma 1).
    assert!(at_one >= 2, "only {at_one} atoms at gamma 1");
    let held_out = grades(&pot, &set, &[alloy(77, &els, 3.85)]);
    let squeezed = grades(&pot, &set, &[alloy(77, &els, 3.2)]);
    let (h, q) = (
        held_out.iter().cloned().fold(0.0, f64::max),
        squeezed.iter().cloned().fold(0.0, f64::max),
    );
    common::note(&format!(
        "held-out rattled crystal max gamma {h:.3}; compressed by 17%: {q:.3}"
    ));
    assert!(
        q > 2.0 && q > 2.0 * h,
        "compression does not extrapolate: {q} vs {h}"
    );

    // The same potential as C-tilde (.yace): its projections are not the B-basis ones.
    let yace = dir.join("alcu.yace");
    std::fs::write(&yace, aceuq::pace::to_yace(pot.model())).unwrap();
    let ct = PacePotential::load(&yace).unwrap();
    let e = read_active_set(&asi_path, &ct).unwrap_err().to_string();
    assert!(
        e.contains("active-set inverse of a B-basis potential"),
        "{e}"
    );
    let ct_asi = dir.join("alcu_ctilde.asi");
    let o = run(&yace, &ct_asi);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ct_set = read_active_set(&ct_asi, &ct).unwrap();
    let g = grades(&ct, &ct_set, &train);
    let gmax = g.iter().cloned().fold(0.0, f64::max);
    assert!(
        gmax <= 1.01 + 1e-6,
        "C-tilde: a training atom has gamma {gmax}"
    );
    let e = read_active_set(&ct_asi, &pot).unwrap_err().to_string();
    assert!(e.contains("C-tilde"), "{e}");
    // --out must name an .asi file; the potential is never overwritten.
    let o = run(&yaml, &dir.join("alcu.yaml"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("give a name ending in .asi"));
}

/// `aceuq calibrate` on a pacemaker potential: what it cannot do is refused before any work,
/// naming the fix.
#[test]
fn calibrate_on_a_pacemaker_potential_refuses_what_it_cannot_do() {
    let dir = common::workdir("pace_extrapolation", "calibrate_errors");
    let yaml = common::repo("tests/data/pace/bbasis_alcu.yaml");
    let asi = common::repo("tests/data/pace/bbasis_alcu_nonlinear.asi");
    let run = |extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"))
            .current_dir(&dir)
            .arg("calibrate")
            .arg("--model")
            .arg(&yaml)
            .args(["--valid", "valid.xyz", "--pool-size", "1000"])
            .args(extra)
            .output()
            .expect("run aceuq");
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let asi = asi.to_str().unwrap();
    let e = run(&["--active-set", asi, "--methods", "ensemble"]);
    assert!(e.contains("only the 'gamma' grade"), "{e}");
    let e = run(&["--active-set", asi, "--methods", "gamma_local"]);
    assert!(
        e.contains("--methods gamma_local: no clustered active sets"),
        "{e}"
    );
    let e = run(&[]);
    assert!(
        e.contains("bbasis_alcu.asi: no such active-set inverse"),
        "{e}"
    );
    let e = run(&["--active-set", asi, "--out", "x.aceuq"]);
    assert!(e.contains("give a name ending in .toml"), "{e}");
    let e = run(&["--active-set", asi]);
    assert!(e.contains("valid.xyz"), "{e}");
    assert!(!dir.join("x.aceuq").exists());
    assert!(!common::repo("tests/data/pace/bbasis_alcu.cutoffs.toml").exists());
}
