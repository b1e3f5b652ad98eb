//! `pair_style ace/uq` in the real LAMMPS: energies, forces and virial equal the library's on the
//! same frames (periodic liquid, general triclinic, slab, cluster, two species in a different type
//! order), serial and 2-rank MPI runs agree, NVE conserves energy, and bad input gives LAMMPS errors.

mod common;
use common::*;

const SUITE: &str = "lammps_pair";
/// eV/Å³ to bar (LAMMPS metal units' nktv2p).
const EV_A3_TO_BAR: f64 = 1.6021765e6;

fn matvec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

/// Run `run 0` on `frame` and compare with `model.predict`.
fn compare_frame(
    s: &Setup,
    case: &str,
    model: &aceuq::model::Model,
    frame: &aceuq::Structure,
    types: &[&str],
) {
    let dir = workdir(SUITE, case);
    save_model(model, &dir, "model.aceuq");
    let lb = write_data(frame, types, &dir, "data.lmp");
    let input = format!(
        "plugin load ${{plugin}}
units metal
boundary {}
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq {}
compute pe all pe/atom
thermo_style custom step pe pxx pyy pzz pxy pxz pyz vol
thermo_modify format float %.15g
dump d all custom 1 forces.dump id fx fy fz c_pe
dump_modify d format float %.16e sort id
run 0
",
        lb.boundary,
        types.join(" ")
    );
    let r = run_lammps_in(s, &dir, &input, None, None);
    r.assert_ok(case);
    let mut ws = aceuq::model::Workspace::new(model);
    let p = model.predict(frame, &mut ws).expect("predict");
    let dump = read_dump(&dir.join("forces.dump"));
    let (cols, rows) = &dump[0];
    assert_eq!(cols, &["id", "fx", "fy", "fz", "c_pe"]);
    assert_eq!(rows.len(), frame.len());
    let scale = p
        .forces
        .iter()
        .flat_map(|f| f.iter())
        .fold(0.0f64, |a, b| a.max(b.abs()))
        .max(1.0);
    let mut max_df = 0.0f64;
    for (row, (fa, ea)) in rows.iter().zip(p.forces.iter().zip(&p.atom_energies)) {
        let fr = matvec(&lb.rot, *fa);
        for d in 0..3 {
            max_df = max_df.max((row[1 + d] - fr[d]).abs());
        }
        assert!(
            (row[4] - ea).abs() < 1e-8 * ea.abs().max(1.0),
            "{case}: atom {} energy {} vs {}",
            row[0],
            row[4],
            ea
        );
    }
    assert!(
        max_df < 1e-8 * scale,
        "{case}: max force difference {max_df:e} eV/Å"
    );
    let th = thermo_rows(&r.output);
    let t = &th[0];
    assert!(
        (t[1] - p.energy).abs() < 1e-8 * p.energy.abs(),
        "{case}: energy {} vs {}",
        t[1],
        p.energy
    );
    if frame.pbc.iter().all(|&x| x) {
        // Virial in LAMMPS's frame: R W Rᵀ, over the volume, in bar.
        let w = p.virial;
        let rot = lb.rot;
        let mut wr = [[0.0; 3]; 3];
        for a in 0..3 {
            for b in 0..3 {
                for c in 0..3 {
                    for d in 0..3 {
                        wr[a][b] += rot[a][c] * w[c][d] * rot[b][d];
                    }
                }
            }
        }
        let vol = t[8];
        let want = [wr[0][0], wr[1][1], wr[2][2], wr[0][1], wr[0][2], wr[1][2]]
            .map(|x| x / vol * EV_A3_TO_BAR);
        let pscale = want.iter().fold(1.0f64, |a, b| a.max(b.abs()));
        for k in 0..6 {
            assert!(
                (t[2 + k] - want[k]).abs() < 1e-6 * pscale,
                "{case}: pressure component {k}: {} vs {}",
                t[2 + k],
                want[k]
            );
        }
    }
}

#[test]
fn forces_energies_and_virial_equal_the_library() {
    let Some(s) = setup("forces_energies_and_virial_equal_the_library") else {
        return;
    };
    let li = fit_model("tests/data/li/train.xyz", 10, &["Li"]);
    let test = frames("tests/data/li/test.xyz");
    compare_frame(&s, "li_liquid", &li, &test[3], &["Li"]);
    let novel = frames("tests/data/li/novel.xyz");
    let pick = |ct: &str| {
        novel
            .iter()
            .find(|f| f.config_type.as_deref() == Some(ct))
            .expect(ct)
            .clone()
    };
    // General triclinic cell in a random orientation; a slab (p p f); a cluster (no cell).
    compare_frame(
        &s,
        "li_strained_triclinic",
        &li,
        &pick("bcc_strained_300K"),
        &["Li"],
    );
    compare_frame(&s, "li_slab", &li, &pick("surface_100_300K"), &["Li"]);
    compare_frame(&s, "li_cluster", &li, &pick("cluster_300K"), &["Li"]);
    // Two species, LAMMPS types in the other order than the model's species.
    let almg = fit_model("tests/data/almg/train.xyz", 20, &["Mg", "Al"]);
    let alm = frames("tests/data/almg/test.xyz");
    let mixed = alm
        .iter()
        .find(|f| {
            f.config_type
                .as_deref()
                .is_some_and(|c| c.contains("liquid"))
        })
        .expect("liquid");
    compare_frame(&s, "almg_liquid", &almg, mixed, &["Al", "Mg"]);
}

fn md_input(extra: &str, steps: u32, dt: f64) -> String {
    format!(
        "plugin load ${{plugin}}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq Li
{extra}
velocity all create 600 4928459 mom yes rot yes dist gaussian
timestep {dt}
fix nve all nve
thermo_style custom step pe ke etotal press
thermo_modify format float %.15g
thermo 100
run {steps}
"
    )
}

#[test]
fn two_mpi_ranks_equal_the_serial_run() {
    let Some(s) = setup_mpi("two_mpi_ranks_equal_the_serial_run") else {
        return;
    };
    let li = fit_model("tests/data/li/train.xyz", 10, &["Li"]);
    let frame = &frames("tests/data/li/test.xyz")[0];
    let mut energies = vec![];
    for (case, np) in [("md_serial", None), ("md_mpi2", Some(2))] {
        let dir = workdir(SUITE, case);
        save_model(&li, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let input = md_input(
            "dump d all custom 1000 final.dump id x y z fx fy fz\ndump_modify d format float %.16e sort id",
            1000,
            0.001,
        );
        let r = run_lammps_in(&s, &dir, &input, np, None);
        r.assert_ok(case);
        energies.push((thermo_rows(&r.output), read_dump(&dir.join("final.dump"))));
    }
    let (a, b) = (&energies[0], &energies[1]);
    assert_eq!(a.0.len(), b.0.len());
    for (ra, rb) in a.0.iter().zip(&b.0) {
        for k in 1..4 {
            assert!(
                (ra[k] - rb[k]).abs() <= 1e-10 * ra[k].abs().max(1.0),
                "step {}: column {k}: {} vs {}",
                ra[0],
                ra[k],
                rb[k]
            );
        }
    }
    // Same trajectory after 1000 steps (chaotic dynamics amplifies round-off; it stays tiny).
    let (da, db) = (&a.1.last().unwrap().1, &b.1.last().unwrap().1);
    let mut max_dx = 0.0f64;
    for (x, y) in da.iter().zip(db) {
        for k in 1..4 {
            max_dx = max_dx.max((x[k] - y[k]).abs());
        }
    }
    note(&format!(
        "serial vs 2 ranks after 1000 steps: max |dx| = {max_dx:.3e} Å"
    ));
    assert!(
        max_dx < 1e-6,
        "positions differ by {max_dx:e} Å after 1000 steps"
    );
}

#[test]
fn nve_energy_drift_is_small_over_10_ps() {
    let Some(s) = setup("nve_energy_drift_is_small_over_10_ps") else {
        return;
    };
    let li = fit_model("tests/data/li/train.xyz", 20, &["Li"]);
    let frame = &frames("tests/data/li/test.xyz")[0];
    let dir = workdir(SUITE, "nve");
    save_model(&li, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let r = run_lammps_in(&s, &dir, &md_input("", 10000, 0.001), None, None);
    r.assert_ok("nve");
    let rows = thermo_rows(&r.output);
    let n = frame.len() as f64;
    let e0 = rows[0][3];
    // Linear drift fitted over the whole run (robust to fluctuations), and the largest excursion.
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for r in &rows {
        let (x, y) = (r[0], (r[3] - e0) / n);
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let m = rows.len() as f64;
    let slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
    let drift = slope * 10000.0;
    let max_dev = rows
        .iter()
        .map(|r| ((r[3] - e0) / n).abs())
        .fold(0.0, f64::max);
    note(&format!(
        "NVE 10 ps: drift {drift:.3e} eV/atom, max |E - E0| {max_dev:.3e} eV/atom"
    ));
    assert!(
        drift.abs() < 1e-4,
        "energy drift {drift:e} eV/atom over 10 ps"
    );
    assert!(max_dev < 1e-3, "energy excursion {max_dev:e} eV/atom");
}

#[test]
fn bad_input_gives_lammps_errors() {
    let Some(s) = setup("bad_input_gives_lammps_errors") else {
        return;
    };
    let li = fit_model("tests/data/li/train.xyz", 5, &["Li"]);
    let base = |types: u32, pair: &str, extra: &str| {
        format!(
            "plugin load ${{plugin}}
units metal
{extra}
lattice bcc 3.51
region box block 0 3 0 3 0 3
create_box {types} box
create_atoms 1 box
mass * 6.94
{pair}
run 0
"
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown_species",
            base(1, "pair_style ace/uq\npair_coeff * * model.aceuq Na", ""),
            "species 'Na' is not in the model (model species: Li)",
        ),
        (
            "wrong_type_count",
            base(2, "pair_style ace/uq\npair_coeff * * model.aceuq Li", ""),
            "one element name (or NULL) per atom type: 2 types, got 1 names",
        ),
        (
            "missing_model",
            base(1, "pair_style ace/uq\npair_coeff * * nothere.aceuq Li", ""),
            "cannot load model",
        ),
        (
            "corrupt_model",
            base(1, "pair_style ace/uq\npair_coeff * * corrupt.aceuq Li", ""),
            "corrupt (checksum mismatch)",
        ),
        (
            "truncated_model",
            base(
                1,
                "pair_style ace/uq\npair_coeff * * truncated.aceuq Li",
                "",
            ),
            "truncated",
        ),
        (
            // pair_style changed after pair_coeff (which keeps the model): the selection is
            // checked again when the run starts, not left as it was.
            "restyled_after_coeff",
            base(
                1,
                "pair_style ace/uq\npair_coeff * * model.aceuq Li\npair_style ace/uq uq_every 1 uq gp",
                "",
            ),
            "has no 'gp' uncertainty (pair_style ... uq gp)",
        ),
        (
            "newton_off",
            base(
                1,
                "pair_style ace/uq\npair_coeff * * model.aceuq Li",
                "newton off",
            ),
            "requires newton pair on",
        ),
        (
            "uq_missing",
            base(
                1,
                "pair_style ace/uq uq gamma\npair_coeff * * model.aceuq Li",
                "",
            ),
            "has no 'gamma' uncertainty",
        ),
        (
            "uq_unknown",
            base(
                1,
                "pair_style ace/uq uq variance\npair_coeff * * model.aceuq Li",
                "",
            ),
            "unknown uncertainty method 'variance'",
        ),
        (
            "bad_keyword",
            base(
                1,
                "pair_style ace/uq every 3\npair_coeff * * model.aceuq Li",
                "",
            ),
            "unknown keyword 'every'",
        ),
        (
            "not_star",
            base(1, "pair_style ace/uq\npair_coeff 1 1 model.aceuq Li", ""),
            "must start with * *",
        ),
        (
            "fix_without_pair",
            base(
                1,
                "pair_style zero 5.0\npair_coeff * *\nfix w all ace/uq/watch 1",
                "",
            ),
            "requires pair_style ace/uq",
        ),
        (
            "fix_with_two_ace_uq",
            base(
                2,
                "pair_style hybrid/overlay ace/uq ace/uq\npair_coeff * * ace/uq 1 model.aceuq Li Li\npair_coeff * * ace/uq 2 model.aceuq Li Li\nfix w all ace/uq/watch 1",
                "",
            ),
            "the pair style holds ace/uq more than once (hybrid)",
        ),
        (
            "fix_model_without_uq",
            base(
                1,
                "pair_style ace/uq\npair_coeff * * model.aceuq Li\nfix w all ace/uq/watch 1",
                "",
            ),
            "the model has no uncertainty",
        ),
    ];
    for (case, input, needle) in cases {
        let dir = workdir(SUITE, case);
        let p = save_model(&li, &dir, "model.aceuq");
        let bytes = std::fs::read(&p).unwrap();
        let mut corrupt = bytes.clone();
        let n = corrupt.len();
        corrupt[n - 5] ^= 0x55;
        std::fs::write(dir.join("corrupt.aceuq"), corrupt).unwrap();
        std::fs::write(dir.join("truncated.aceuq"), &bytes[..n - 100]).unwrap();
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_error(needle, case);
    }
}

#[test]
fn hybrid_overlay_adds_the_other_style() {
    let Some(s) = setup("hybrid_overlay_adds_the_other_style") else {
        return;
    };
    let li = fit_model("tests/data/li/train.xyz", 5, &["Li"]);
    let frame = &frames("tests/data/li/test.xyz")[1];
    let mut pe = vec![];
    for (case, pair) in [
        (
            "hybrid_ace",
            "pair_style ace/uq\npair_coeff * * model.aceuq Li",
        ),
        ("hybrid_zbl", "pair_style zbl 1.0 1.5\npair_coeff * * 3 3"),
        (
            "hybrid_both",
            "pair_style hybrid/overlay ace/uq zbl 1.0 1.5\npair_coeff * * ace/uq model.aceuq Li\npair_coeff * * zbl 3 3",
        ),
    ] {
        let dir = workdir(SUITE, case);
        save_model(&li, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let input = format!(
            "plugin load ${{plugin}}\nunits metal\nboundary p p p\natom_style atomic\nread_data data.lmp\n{pair}\nthermo_style custom step pe\nthermo_modify format float %.15g\nrun 0\n"
        );
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(case);
        pe.push(thermo_rows(&r.output)[0][1]);
    }
    assert!((pe[2] - pe[0] - pe[1]).abs() < 1e-8 * pe[0].abs(), "{pe:?}");
}

/// The ensemble uncertainty computed inside LAMMPS (force columns summed over ghosts by reverse
/// communication) equals the library's member-force spread on the same frame, serially and on 2
/// MPI ranks, and asking for it leaves the trajectory's energy unchanged.
#[test]
fn ensemble_uncertainty_equals_the_library_on_one_and_two_ranks() {
    let Some(s) = setup_mpi("ensemble_uncertainty_equals_the_library_on_one_and_two_ranks") else {
        return;
    };
    let model = li_potential(&aceuq::uq::UqConfig {
        ensemble: 4,
        ..Default::default()
    });
    let frame = &frames("tests/data/li/test.xyz")[2];
    let lib = model
        .per_atom(std::slice::from_ref(frame), aceuq::uq::Method::Ensemble)
        .unwrap()
        .remove(0);
    let dir = workdir(SUITE, "ensemble");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    assert!(lib.iter().all(|&u| u > 0.0));
    let pes = per_atom_equals_the_library_on_one_and_two_ranks(&s, &dir, "ensemble", &lib, 1e-9);
    // The same inside pair_style hybrid/overlay (with a second style that adds nothing), on 2
    // ranks: the hybrid style sizes the reverse-communication buffers, which must hold the
    // ensemble's force columns (they were sized for none, and the run corrupted its heap).
    let hybrid = "pair_style hybrid/overlay ace/uq lj/cut 2.0\npair_coeff * * ace/uq model.aceuq Li\npair_coeff * * lj/cut 0.0 1.0";
    let r = run_lammps_in(&s, &dir, &fix_pair_input(hybrid, "ensemble"), Some(2), None);
    r.assert_ok("ensemble_hybrid_mpi2");
    assert_dump_equals_the_library(&dir, "ensemble_hybrid_mpi2", &lib, 1e-9);
    let pe = thermo_rows(&r.output)[0][1];
    assert!((pe - pes[0]).abs() < 1e-8 * pe.abs(), "{pe} vs {}", pes[0]);
    // The energy with the ensemble equals the library's prediction.
    let p = model
        .model
        .predict(frame, &mut aceuq::model::Workspace::new(&model.model))
        .unwrap();
    for pe in pes {
        assert!(
            (pe - p.energy).abs() < 1e-8 * p.energy.abs(),
            "{pe} vs {}",
            p.energy
        );
    }
}

/// The contact measure computed inside LAMMPS equals the library's on the same frame, serially
/// and on 2 MPI ranks (where an atom's closest neighbour may be a ghost), on a frame compressed
/// so that some atoms come closer than any training pair (u > 1).
#[test]
fn contact_equals_the_library_on_one_and_two_ranks() {
    let Some(s) = setup_mpi("contact_equals_the_library_on_one_and_two_ranks") else {
        return;
    };
    let model = li_potential(&aceuq::uq::UqConfig {
        contact: true,
        ..Default::default()
    });
    let mut frame = frames("tests/data/li/test.xyz")[2].clone();
    let f = 0.93;
    for p in frame.positions.iter_mut() {
        p.iter_mut().for_each(|x| *x *= f);
    }
    for row in frame.cell.as_mut().unwrap().iter_mut() {
        row.iter_mut().for_each(|x| *x *= f);
    }
    let lib = model
        .per_atom(std::slice::from_ref(&frame), aceuq::uq::Method::Contact)
        .unwrap()
        .remove(0);
    assert!(lib.iter().any(|&u| u > 1.0) && lib.iter().all(|&u| u > 0.5));
    let dir = workdir(SUITE, "contact");
    save_model(&model, &dir, "model.aceuq");
    write_data(&frame, &["Li"], &dir, "data.lmp");
    per_atom_equals_the_library_on_one_and_two_ranks(&s, &dir, "contact", &lib, 1e-12);
}

/// Runs `fix pair` of `method` with `run 0` on the model and data in `dir`, serially and on 2
/// MPI ranks, and checks every atom's value against `lib` (relative `tol`); returns the
/// potential energy of each run.
fn per_atom_equals_the_library_on_one_and_two_ranks(
    s: &Setup,
    dir: &std::path::Path,
    method: &str,
    lib: &[f64],
    tol: f64,
) -> Vec<f64> {
    let input = fix_pair_input("pair_style ace/uq\npair_coeff * * model.aceuq Li", method);
    let mut pes = vec![];
    for (case, np) in [("serial", None), ("mpi2", Some(2))] {
        let case = format!("{method}_{case}");
        let r = run_lammps_in(s, dir, &input, np, None);
        r.assert_ok(&case);
        pes.push(thermo_rows(&r.output)[0][1]);
        assert_dump_equals_the_library(dir, &case, lib, tol);
    }
    pes
}

/// A `run 0` on `data.lmp` with `pair` (pair_style and pair_coeff lines) that dumps `method`'s
/// per-atom values (`fix pair`) to `uq.dump`.
fn fix_pair_input(pair: &str, method: &str) -> String {
    format!(
        "plugin load ${{plugin}}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
{pair}
fix u all pair 1 ace/uq {method} 1
dump d all custom 1 uq.dump id f_u
dump_modify d sort id format float %.17g
thermo_style custom step pe
thermo_modify format float %.15g
run 0
"
    )
}

/// Every atom's value in `dir/uq.dump` (written by [`fix_pair_input`]) equals `lib`'s
/// (relative `tol`).
fn assert_dump_equals_the_library(dir: &std::path::Path, case: &str, lib: &[f64], tol: f64) {
    let dumps = read_dump(&dir.join("uq.dump"));
    let (cols, rows) = &dumps[0];
    assert_eq!(cols, &["id", "f_u"], "{case}");
    assert_eq!(rows.len(), lib.len(), "{case}");
    for row in rows {
        let i = row[0] as usize - 1;
        assert!(
            (row[1] - lib[i]).abs() <= tol * lib[i].abs(),
            "{case}: atom {}: LAMMPS {} vs library {}",
            i + 1,
            row[1],
            lib[i]
        );
    }
}

/// Every vector-kernel family this CPU can run (`ACEUQ_SIMD=portable`, `avx2`, and what the CPU
/// has), with every uncertainty estimator computed every step, gives the same energies, forces
/// and per-atom uncertainties in LAMMPS; the log names the family that ran.
#[test]
fn every_kernel_family_gives_the_same_results() {
    let Some(s) = setup("every_kernel_family_gives_the_same_results") else {
        return;
    };
    let model = li_potential(&aceuq::uq::UqConfig {
        active_set: true,
        clusters: Some(aceuq::uq::Partition::KMeans(2)),
        ensemble: 3,
        distance: true,
        gp: true,
        contact: true,
        ..Default::default()
    });
    let methods: Vec<&str> = model.uq.methods().iter().map(|m| m.name()).collect();
    assert_eq!(methods.len(), 6, "{methods:?}");
    let dir = workdir(SUITE, "kernel_families");
    save_model(&model, &dir, "model.aceuq");
    write_data(
        &frames("tests/data/li/test.xyz")[1],
        &["Li"],
        &dir,
        "data.lmp",
    );
    let fixes: String = methods
        .iter()
        .map(|m| format!("fix u_{m} all pair 1 ace/uq {m} 1\n"))
        .collect();
    let cols: String = methods.iter().map(|m| format!(" f_u_{m}")).collect();
    let input = format!(
        "plugin load ${{plugin}}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
pair_style ace/uq uq_every 1 uq {}
pair_coeff * * model.aceuq Li
{fixes}compute pe all pe/atom
dump d all custom 1 out.dump id fx fy fz c_pe{cols}
dump_modify d sort id format float %.17g
velocity all create 600 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.001
run 3
",
        methods.join(",")
    );
    let cpu = aceuq::simd::features().widest();
    let families: &[&'static str] = match cpu {
        "avx512" => &["native", "avx2", "portable"],
        "avx2+fma" => &["native", "portable"],
        _ => &["native"],
    };
    let expect_name = |f: &'static str| match f {
        "native" => cpu,
        "avx2" => "avx2+fma",
        other => other,
    };
    let mut dumps = vec![];
    for fam in families {
        let r = run_lammps_env(&s, &dir, &input, None, None, &[("ACEUQ_SIMD", fam)]);
        r.assert_ok(fam);
        r.assert_contains(&format!("{} kernels)", expect_name(fam)), fam);
        dumps.push(read_dump(&dir.join("out.dump")));
    }
    note(&format!("kernel families compared: {families:?}"));
    let base = &dumps[0];
    for (fam, d) in families.iter().zip(&dumps).skip(1) {
        assert_eq!(d.len(), base.len());
        let mut worst = 0.0f64;
        for ((cols, rows), (_, rows0)) in d.iter().zip(base) {
            for (row, row0) in rows.iter().zip(rows0) {
                for k in 1..cols.len() {
                    let rel = (row[k] - row0[k]).abs() / row0[k].abs().max(1e-3);
                    worst = worst.max(rel);
                    assert!(
                        rel < 1e-9,
                        "{fam} vs native: atom {} column {}: {} vs {}",
                        row[0],
                        cols[k],
                        row[k],
                        row0[k]
                    );
                }
            }
        }
        note(&format!(
            "{fam} vs native: max relative difference {worst:.2e}"
        ));
    }
}
