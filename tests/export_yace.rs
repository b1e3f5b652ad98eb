//! `aceuq export`: aceuq models as pacemaker `.yace` files. The exported file, read back with
//! `PaceModel::load`, gives the native model's energies and forces on rattled structures inside
//! the fitted region (one and two species, per-pair cutoffs, both placements of the core switch,
//! no core); the tolerance comes from the measured radial fit error, and a deliberately coarse
//! export shows the comparison sees radial errors. The command prints its fidelity and refuses a
//! bad export. When `ACEUQ_PEER_LMP` names a LAMMPS with ML-PACE, the exported file also runs
//! there (`pair_style pace`, product and recursive evaluators) and gives what aceuq's evaluator
//! gives for the same file.

mod common;
use aceuq::model::Model;
use aceuq::pace::PaceModel;
use aceuq::pace::export::{self, CoreExport, ExportOptions, Exported, Fidelity};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SUITE: &str = "export_yace";

fn fit_with(
    rel: &str,
    n: usize,
    species: &[&str],
    basis: aceuq::basis::BasisConfig,
    core: bool,
) -> Model {
    let data = frames(rel);
    let names: Vec<String> = species.iter().map(|s| s.to_string()).collect();
    let cfg = aceuq::model::fit::FitConfig {
        core,
        ..Default::default()
    };
    aceuq::model::fit::fit(&names, &basis, &cfg, &data[..n], &[], false).expect("fit")
}

/// Li, default basis (197 functions), 8 frames of liquid Li.
fn li() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| fit_model("tests/data/li/train.xyz", 8, &["Li"]))
}

/// Mg-Al, default basis (958 functions per species), the Mg-Al pair with its own cutoff.
fn mgal() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let basis = aceuq::basis::BasisConfig {
            pair_cutoffs: BTreeMap::from([("Mg-Al".to_string(), 5.0)]),
            ..Default::default()
        };
        fit_with("tests/data/almg/train.xyz", 12, &["Mg", "Al"], basis, true)
    })
}

/// Export with `opts`, write the file into `dir` and read it back with `PaceModel::load`.
fn export_to(model: &Model, opts: &ExportOptions, dir: &Path, name: &str) -> (Exported, PaceModel) {
    let ex = export::export(model, opts).expect("export");
    let path = dir.join(name);
    std::fs::write(&path, &ex.text).expect("write .yace");
    let pace = PaceModel::load(&path).expect("load the exported .yace");
    // What was written is what the export measured (the writer and reader round-trip bitwise).
    assert_eq!(aceuq::pace::to_yace(&pace), ex.text, "{name}: round trip");
    (ex, pace)
}

/// Rattled generated structures and the first frames of a held-out file, those with every pair
/// beyond its core's `r_out` (inside it the short range differs by design; see
/// `core_region_differs_by_design`).
fn structures(model: &Model, rel: &str, n: usize) -> Vec<aceuq::Structure> {
    let mut v = export::probe_structures(model, 17);
    let held = frames(rel);
    let mut kept = 0;
    for s in held {
        if kept == n {
            break;
        }
        if !export::inside_core(model, &s).unwrap() {
            v.push(s);
            kept += 1;
        }
    }
    assert!(kept > 0, "{rel}: no frame outside the core region");
    v
}

fn show(what: &str, ex: &Exported, f: &Fidelity) {
    let fit: Vec<String> = ex
        .pairs
        .iter()
        .map(|p| {
            format!(
                "{}-{} |Δg| {:.1e} |Δg'| {:.1e} (fit from {:.3} Å, r0 {:.3})",
                p.centre, p.neighbour, p.max_err_window, p.max_derr, p.r_lo, p.r0
            )
        })
        .collect();
    note(&format!(
        "{what}: radial fit {}; {} structures, {} atoms: max |ΔE| {:.1e} eV/atom, max |ΔF| {:.1e} \
         eV/Å (RMS {:.1e}), max |Δvirial| {:.1e} eV/atom",
        fit.join(", "),
        f.structures,
        f.atoms,
        f.max_de_per_atom,
        f.max_df,
        f.rms_df,
        f.max_dvirial_per_atom
    ));
}

fn worst_fit(ex: &Exported) -> (f64, f64) {
    let g = ex
        .pairs
        .iter()
        .map(|p| p.max_err_window)
        .fold(0.0, f64::max);
    let d = ex.pairs.iter().map(|p| p.max_derr).fold(0.0, f64::max);
    (g, d)
}

/// ML-PACE's own floor: its cubic Hermite radial tables (1 mÅ) interpolate to ~1e-10 in value,
/// ~1e-8 in slope; both codes use them, but the native model evaluates its functions exactly.
const SPLINE_FLOOR_E: f64 = 1e-9;
const SPLINE_FLOOR_F: f64 = 1e-7;

/// The default export agrees with the native model to within what its radial fit error allows,
/// and a coarse export (few base functions), whose radial error is far larger, is seen by the
/// same comparison. The tolerance scales the coarse export's differences by the ratio of the
/// radial errors (energies and forces are linear in the radial functions), times 10.
fn check_fidelity(what: &str, model: &Model, held: &str, dir: &Path) -> Exported {
    let sts = structures(model, held, 3);
    let (ex, pace) = export_to(
        model,
        &ExportOptions::default(),
        dir,
        &format!("{what}.yace"),
    );
    let fid = export::compare(model, &pace, &sts).unwrap();
    show(what, &ex, &fid);
    let coarse_opts = ExportOptions {
        nradbase: 14,
        ..Default::default()
    };
    let (cx, cpace) = export_to(model, &coarse_opts, dir, &format!("{what}_coarse.yace"));
    let cfid = export::compare(model, &cpace, &sts).unwrap();
    show(&format!("{what} (14 base functions)"), &cx, &cfid);
    let (g, d) = worst_fit(&ex);
    let (cg, cd) = worst_fit(&cx);
    // The fit itself: ChebExpCos carries our envelope, so 32 functions fit to ~1e-9.
    assert!(
        g < 1e-7 && d < 1e-5,
        "{what}: radial fit errors {g:e}, {d:e}"
    );
    assert!(
        cg > 1e3 * g,
        "{what}: the coarse fit ({cg:e}) is not coarser ({g:e})"
    );
    let tol_e = 10.0 * cfid.max_de_per_atom * (g / cg) + SPLINE_FLOOR_E;
    let tol_f = 10.0 * cfid.max_df * (d / cd) + SPLINE_FLOOR_F;
    assert!(
        fid.max_de_per_atom <= tol_e && fid.max_de_atom <= 10.0 * tol_e,
        "{what}: energies differ by {:e} eV/atom (one atom {:e} eV), tolerance {tol_e:e}",
        fid.max_de_per_atom,
        fid.max_de_atom
    );
    assert!(
        fid.max_df <= tol_f,
        "{what}: forces differ by {:e} eV/Å, tolerance {tol_f:e}",
        fid.max_df
    );
    // Far below a fit's own error (~15 meV/Å, ~0.3 meV/atom): the export is the same potential.
    assert!(fid.max_df < 1e-5 && fid.max_de_per_atom < 1e-7, "{what}");
    // The comparison sees radial errors: the coarse export is visibly different.
    assert!(
        cfid.max_df > 100.0 * fid.max_df && cfid.max_df > 1e-5,
        "{what}: coarse export {:e} vs {:e} eV/Å",
        cfid.max_df,
        fid.max_df
    );
    assert!(ex.max_imag_rel < 1e-12 && ex.max_nonzero_msum_rel < 1e-12);
    ex
}

#[test]
fn single_species_export_matches_the_model() {
    let dir = workdir(SUITE, "li");
    let ex = check_fidelity("Li", li(), "tests/data/li/test.xyz", &dir);
    assert_eq!(ex.counts.len(), 1);
    // The core maps to ML-PACE's ZBL inner cutoff at the model's r_out.
    let CoreExport::Zbl(sw) = &ex.core else {
        panic!("no ZBL core exported: {:?}", ex.core)
    };
    assert_eq!(sw[0].0, li().core[0].r_out);
}

#[test]
fn two_species_export_with_pair_cutoffs_matches_the_model() {
    let dir = workdir(SUITE, "mgal");
    let m = mgal();
    assert_eq!(m.cutoff(0, 1), 5.0);
    assert_eq!(m.cutoff(0, 0), 5.5);
    let ex = check_fidelity("Mg-Al", m, "tests/data/almg/test.xyz", &dir);
    assert_eq!(ex.counts.len(), 2);
    assert!(ex.pairs.iter().any(|p| p.rc == 5.0) && ex.pairs.iter().any(|p| p.rc == 5.5));
    // Species in another order in the structure file changes nothing: ML-PACE maps by name.
    let s = &export::probe_structures(m, 3)[0];
    let pace = PaceModel::load(&dir.join("Mg-Al.yace")).unwrap();
    let e = pace.predict(s).unwrap().energy;
    let mut ws = aceuq::model::Workspace::new(m);
    let native = m.predict(s, &mut ws).unwrap().energy;
    assert!((e - native).abs() < 1e-6, "{e} vs {native}");
}

/// With `r0` above the core's `r_in` (here `radial_inner` 1.9 Å, r_out 2.13 Å), ML-PACE's ACE
/// energy is switched off below `r0`, so the fit never crosses our kink at `r0`: as exact as
/// the default. Without a core the fit must reach below `r0` (weighted down): less exact, still
/// within the command's default limits.
#[test]
fn core_switch_placement_and_no_core() {
    let dir = workdir(SUITE, "core_variants");
    let inner = aceuq::basis::BasisConfig {
        radial_inner: Some(1.9),
        ..Default::default()
    };
    let m = fit_with("tests/data/li/train.xyz", 8, &["Li"], inner, true);
    let ex = check_fidelity("Li r0 1.9", &m, "tests/data/li/test.xyz", &dir);
    let CoreExport::Zbl(sw) = &ex.core else {
        panic!("{:?}", ex.core)
    };
    let c = &m.core[0];
    assert!(c.r_in < 1.9 && c.r_out > 1.95, "{c:?}");
    assert!(
        (sw[0].0 - c.r_out).abs() < 1e-12 && (sw[0].0 - sw[0].1 - 1.9).abs() < 1e-12,
        "{sw:?}"
    );
    assert!((ex.pairs[0].r_lo - 1.9).abs() < 1e-12);

    let nocore = fit_with(
        "tests/data/li/train.xyz",
        8,
        &["Li"],
        Default::default(),
        false,
    );
    let sts = structures(&nocore, "tests/data/li/test.xyz", 3);
    let (ex, pace) = export_to(&nocore, &ExportOptions::default(), &dir, "nocore.yace");
    assert_eq!(ex.core, CoreExport::None);
    let fid = export::compare(&nocore, &pace, &sts).unwrap();
    show("Li without core", &ex, &fid);
    assert!(ex.pairs[0].r_lo < ex.pairs[0].r0);
    assert!(
        fid.max_df < 1e-3 && fid.max_de_per_atom < 1e-4,
        "no core: {fid:?}"
    );
    // Dropping the core of a model that has one is the same as a model without one.
    let (ex, _) = export_to(
        li(),
        &ExportOptions {
            core: false,
            ..Default::default()
        },
        &dir,
        "dropped.yace",
    );
    assert_eq!(ex.core, CoreExport::None);
    assert!(!ex.text.contains("zbl"));
}

/// Inside the core region the two short-range treatments differ (ML-PACE blends the atom's
/// energy to ZBL, aceuq adds ZBL to ACE); at the shortest training distance they agree.
#[test]
fn core_region_differs_by_design() {
    let dir = workdir(SUITE, "core_region");
    let (_, pace) = export_to(li(), &ExportOptions::default(), &dir, "li.yace");
    let probes = export::core_probe(li(), &pace).unwrap();
    assert_eq!(probes.len(), 4);
    for p in &probes {
        note(&format!(
            "Li dimer at {:.3} Å: aceuq {:.6} eV, export {:.6} eV",
            p.r, p.native, p.exported
        ));
    }
    assert!((probes[0].native - probes[0].exported).abs() < 1e-8);
    assert!(
        probes[1..]
            .iter()
            .all(|p| (p.native - p.exported).abs() > 1e-3)
    );
}

fn aceuq(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(args)
        .output()
        .expect("run aceuq");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command prints its fidelity, writes a file ML-PACE's format reader accepts, and refuses
/// an export outside its limits unless told otherwise.
#[test]
fn command_prints_fidelity_and_refuses_bad_exports() {
    let dir = workdir(SUITE, "cli");
    let model = save_model(li(), &dir, "li.aceuq");
    let m = model.to_str().unwrap();
    let out: PathBuf = dir.join("li.yace");
    let o = out.to_str().unwrap();
    let test = repo("tests/data/li/test.xyz");
    let (code, stdout, stderr) = aceuq(&[
        "export",
        "--model",
        m,
        "--output",
        o,
        "--data",
        test.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for needle in [
        "radial functions: least-squares fit",
        "Li-Li",
        "generated structures",
        "--data, ",
        "max |ΔE|",
        "max |ΔF|",
        "short range, isolated dimers",
        "within the limits: wrote",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}`:\n{stdout}");
    }
    let pace = PaceModel::load(&out).expect("the written file loads");
    assert_eq!(pace.elements, ["Li"]);

    // Too few base functions: refused, nothing written.
    let bad = dir.join("coarse.yace");
    let b = bad.to_str().unwrap();
    let (code, stdout, stderr) =
        aceuq(&["export", "--model", m, "--output", b, "--radial-base", "6"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("not written") && stderr.contains("--allow-inexact"),
        "{stderr}"
    );
    assert!(!bad.exists());
    let (code, stdout, stderr) = aceuq(&[
        "export",
        "--model",
        m,
        "--output",
        b,
        "--radial-base",
        "6",
        "--allow-inexact",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("OUTSIDE the limits"), "{stdout}");
    assert!(bad.exists());

    // Wrong output kind, unknown family.
    let (code, _, stderr) = aceuq(&["export", "--model", m, "--output", "x.ace"]);
    assert!(code == 1 && stderr.contains(".yace"), "{stderr}");
    let (code, _, stderr) = aceuq(&[
        "export",
        "--model",
        m,
        "--output",
        o,
        "--radial-family",
        "Gauss",
    ]);
    assert!(code == 1 && stderr.contains("Gauss"), "{stderr}");
}

/// The exported files in ML-PACE (`pair_style pace`, product and recursive, `run 0`): the same
/// energies, per-atom energies and forces as aceuq's evaluator of the same file.
#[test]
fn exported_files_run_in_ml_pace() {
    let Some(peer) = std::env::var_os("ACEUQ_PEER_LMP").map(PathBuf::from) else {
        note(
            "SKIPPED exported_files_run_in_ml_pace: ACEUQ_PEER_LMP does not name a LAMMPS with \
             ML-PACE",
        );
        return;
    };
    assert!(
        peer.is_file(),
        "ACEUQ_PEER_LMP={} is not a file",
        peer.display()
    );
    let cases: [(&str, &Model, &[&str], &str); 2] = [
        ("li", li(), &["Li"], "tests/data/li/test.xyz"),
        ("mgal", mgal(), &["Mg", "Al"], "tests/data/almg/test.xyz"),
    ];
    for (name, model, species, held) in cases {
        let dir = workdir(SUITE, &format!("ml_pace_{name}"));
        let (_, pace) = export_to(model, &ExportOptions::default(), &dir, "pot.yace");
        let mut sts = export::probe_structures(model, 5);
        sts.truncate(2);
        sts.push(frames(held).swap_remove(0));
        // Inside the core region: one pair in ML-PACE's ACE-to-ZBL switch, one below it (the
        // ZBL inner cutoff of both evaluators, compared here to ML-PACE itself).
        let ns = model.nspecies();
        for frac in [0.5, -0.3] {
            let mut s = sts[0].clone();
            let (a, b) = (0, 1);
            let (sa, sb) = (
                model.species_index(&s.symbols[a]).unwrap(),
                model.species_index(&s.symbols[b]).unwrap(),
            );
            let c = &model.core[sa * ns + sb];
            let r = c.r_in + frac * (c.r_out - c.r_in);
            let u = [0.6f64, 0.48, 0.64];
            let pa = s.positions[a];
            s.positions[b] = [pa[0] + r * u[0], pa[1] + r * u[1], pa[2] + r * u[2]];
            assert!(export::inside_core(model, &s).unwrap());
            sts.push(s);
        }
        for (k, s) in sts.iter().enumerate() {
            let case = format!("{name} structure {k}");
            let lb = write_data(s, species, &dir, "data.lmp");
            let want = pace.predict(s).unwrap();
            for style in ["product", "recursive"] {
                let input = format!(
                    "units metal\nboundary {}\natom_style atomic\nread_data data.lmp\n\
                     pair_style pace {style}\npair_coeff * * pot.yace {}\n\
                     compute pe all pe/atom\nthermo_style custom step pe\n\
                     thermo_modify format float %.15g\n\
                     dump d all custom 1 forces.dump id fx fy fz c_pe\n\
                     dump_modify d format float %.16e sort id\nrun 0\n",
                    lb.boundary,
                    species.join(" ")
                );
                std::fs::write(dir.join("in.lmp"), &input).unwrap();
                let _ = std::fs::remove_file(dir.join("forces.dump"));
                let mut cmd = std::process::Command::new(&peer);
                cmd.args(["-nocite", "-log", "log.lammps", "-in", "in.lmp"]);
                let r = run(cmd, &dir, &case);
                r.assert_ok(&case);
                let th = thermo_rows(&r.output);
                let e = th[0][1];
                let dump = read_dump(&dir.join("forces.dump"));
                let rows = &dump[0].1;
                let (mut df, mut dea) = (0.0f64, 0.0f64);
                for (i, row) in rows.iter().enumerate() {
                    let fr = want.forces[i];
                    for a in 0..3 {
                        let rot = lb.rot;
                        let w = rot[a][0] * fr[0] + rot[a][1] * fr[1] + rot[a][2] * fr[2];
                        df = df.max((row[1 + a] - w).abs());
                    }
                    dea = dea.max((row[4] - want.atom_energies[i]).abs());
                }
                let de = (e - want.energy).abs();
                note(&format!(
                    "{case} ({} atoms), ML-PACE pace {style}: |ΔE| {de:.1e} eV, per atom \
                     {dea:.1e} eV, forces {df:.1e} eV/Å",
                    s.len()
                ));
                // ML-PACE's own two evaluators differ by ~1e-10 eV on a few hundred atoms.
                assert!(
                    de < 1e-12 * s.len() as f64 * want.energy.abs().max(1.0) + 1e-9,
                    "{case} {style}: {e} vs {}",
                    want.energy
                );
                assert!(dea < 1e-9 && df < 1e-9, "{case} {style}: {dea:e} {df:e}");
            }
        }
    }
}
