//! Issue 24: the GPAW labeller (scripts/label_gpaw.py) on a tiny Li cell, checked against a
//! direct GPAW call with the same settings, read back by our extended XYZ reader; its cache
//! answers a rerun; an SCF that cannot converge is a failure (exit 1, no output file).
//!
//! GPAW comes from Debian's packages (`make gpaw`, run by `make test`). `make test` passes
//! ACEUQ_GPAW=ok when GPAW is usable and the reason otherwise; then these tests print a loud
//! SKIPPED line and `make test` repeats it at the end. Run by hand without ACEUQ_GPAW, they check
//! for GPAW themselves.

mod common;

use common::{note, workdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PY: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    common::repo("scripts/label_gpaw.py")
}

/// GPAW usable? `None` means skip (after saying so loudly).
fn gpaw(test: &str) -> Option<()> {
    let status = match std::env::var("ACEUQ_GPAW") {
        Ok(s) => s,
        Err(_) => {
            let ok = Path::new(PY).is_file()
                && Command::new(PY)
                    .args(["-s"])
                    .arg(script())
                    .arg("--check")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
            if ok {
                "ok".into()
            } else {
                "GPAW is not installed".into()
            }
        }
    };
    if status.trim() == "ok" {
        return Some(());
    }
    note(&format!(
        "SKIPPED {test}: {}. THE DFT LABELLER IS NOT TESTED; install GPAW with `make gpaw` \
         (apt-get install gpaw gpaw-data)",
        status.trim()
    ));
    None
}

fn py(dir: &Path, args: &[&str]) -> Output {
    Command::new(PY)
        .arg("-s")
        .args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run /usr/bin/python3")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Two frames: a rattled 2-atom bcc cell (periodic) and a Li2 dimer in a box (not periodic).
const INPUT: &str = "2
Lattice=\"3.44 0.0 0.0 0.0 3.44 0.0 0.0 0.0 3.44\" Properties=species:S:1:pos:R:3 config_type=bcc pbc=\"T T T\"
Li 0.08121727 -0.03058782 -0.02640859
Li 1.66635157 1.76327038 1.60492307
2
Lattice=\"6.0 0.0 0.0 0.0 6.0 0.0 0.0 0.0 6.0\" Properties=species:S:1:pos:R:3 config_type=dimer pbc=\"F F F\"
Li 1.65 3.0 3.0
Li 4.35 3.0 3.0
";

/// The same calculations done directly with GPAW: free energy, forces, -stress*V (periodic).
const DIRECT: &str = r#"
import sys, json
from ase.io import read
from gpaw import GPAW, PW, FermiDirac
out = []
for a in read(sys.argv[1], index=":"):
    k = [2, 2, 2] if all(a.pbc) else [1, 1, 1]
    a.calc = GPAW(mode=PW(200.0), xc="PBE", kpts={"size": k, "gamma": True},
                  occupations=FermiDirac(0.1), txt=None)
    r = {"e": a.get_potential_energy(force_consistent=True), "f": a.get_forces().tolist()}
    if all(a.pbc):
        r["w"] = (-a.get_stress(voigt=False) * a.get_volume()).reshape(-1).tolist()
    out.append(r)
json.dump(out, open(sys.argv[2], "w"))
"#;

#[test]
fn gpaw_labels_equal_a_direct_gpaw_call_and_a_rerun_is_answered_from_the_cache() {
    let test = "gpaw_labels_equal_a_direct_gpaw_call";
    if gpaw(test).is_none() {
        return;
    }
    let dir = workdir("gpaw_label", "direct");
    std::fs::write(dir.join("in.xyz"), INPUT).unwrap();
    // kpoint_density 1.0: ceil(2 pi / 3.44 * 1.0) = 2 for the cell, 1 for the dimer.
    std::fs::write(
        dir.join("s.toml"),
        "mode = \"pw\"\necut = 200\nkpoint_density = 1.0\nsmearing = 0.1\n",
    )
    .unwrap();
    let s = script();
    let args = [
        s.to_str().unwrap(),
        "--settings",
        "s.toml",
        "in.xyz",
        "out.xyz",
    ];
    let first = py(&dir, &args);
    let t = text(&first);
    assert!(first.status.success(), "label_gpaw failed:\n{t}");
    assert!(
        t.contains("k 2x2x2") && t.contains("k 1x1x1") && t.matches("(computed)").count() == 2,
        "{t}"
    );

    let direct = py(&dir, &["-c", DIRECT, "in.xyz", "direct.json"]);
    assert!(
        direct.status.success(),
        "direct GPAW failed:\n{}",
        text(&direct)
    );
    let want = std::fs::read_to_string(dir.join("direct.json")).unwrap();

    let got = aceuq::io::extxyz::read_file(dir.join("out.xyz"), &Default::default())
        .expect("our reader reads the labeller's output");
    assert_eq!(got.len(), 2);
    // Tiny JSON: numbers in order; compare frame by frame.
    let nums = |s: &str| -> Vec<f64> {
        s.split(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
            .filter(|t| !t.is_empty() && t.parse::<f64>().is_ok())
            .map(|t| t.parse().unwrap())
            .collect()
    };
    let w = nums(&want);
    // Frame 0: e, 6 forces, 9 virial; frame 1: e, 6 forces.
    assert_eq!(w.len(), 1 + 6 + 9 + 1 + 6, "{want}");
    let f0 = &got[0];
    // The input's keys are kept; the labeller's own are added.
    assert_eq!(f0.config_type.as_deref(), Some("bcc"));
    assert!(f0.info.contains_key("dft_kpts") && f0.info.contains_key("energy_zero_width"));
    let close = |a: f64, b: f64, tol: f64, what: &str| {
        assert!(
            (a - b).abs() <= tol,
            "{what}: labeller {a} vs direct GPAW {b}"
        )
    };
    close(f0.energy.unwrap(), w[0], 1e-6, "energy of the bcc cell");
    let forces0 = f0.forces.as_ref().unwrap();
    for (i, f) in forces0.iter().enumerate() {
        for d in 0..3 {
            close(f[d], w[1 + 3 * i + d], 1e-6, "force");
        }
    }
    let vir = f0.virial.expect("virial for the periodic cell");
    for r in 0..3 {
        for c in 0..3 {
            close(vir[r][c], w[7 + 3 * r + c], 1e-6, "virial");
        }
    }
    assert!(
        forces0[0].iter().map(|x| x.abs()).sum::<f64>() > 0.05,
        "the rattled cell has forces: {forces0:?}"
    );
    let f1 = &got[1];
    close(f1.energy.unwrap(), w[16], 1e-6, "energy of the dimer");
    let forces1 = f1.forces.as_ref().unwrap();
    close(forces1[0][0], w[17], 1e-6, "dimer force");
    close(
        forces1[0][0],
        -forces1[1][0],
        1e-4,
        "dimer forces are opposite",
    );
    assert!(f1.virial.is_none(), "no virial for a non-periodic frame");

    // A rerun is answered from the cache, with the same output.
    let before = std::fs::read(dir.join("out.xyz")).unwrap();
    let again = py(&dir, &args);
    let t = text(&again);
    assert!(again.status.success(), "{t}");
    assert_eq!(t.matches("(cached)").count(), 2, "{t}");
    assert_eq!(std::fs::read(dir.join("out.xyz")).unwrap(), before);
}

#[test]
fn an_scf_that_cannot_converge_is_a_failure_with_no_output_file() {
    let test = "gpaw_an_scf_that_cannot_converge_is_a_failure";
    if gpaw(test).is_none() {
        return;
    }
    let dir = workdir("gpaw_label", "noconv");
    let one: String = INPUT.lines().skip(4).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(dir.join("in.xyz"), one).unwrap();
    let s = script();
    let args = [
        s.to_str().unwrap(),
        "--ecut",
        "200",
        "--maxiter",
        "2",
        "in.xyz",
        "out.xyz",
    ];
    let o = py(&dir, &args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("SCF did not converge in 2 iterations"), "{t}");
    assert!(t.contains("out.xyz not written"), "{t}");
    assert!(!dir.join("out.xyz").exists());
    // The failure is recorded: a rerun does not compute again, unless asked to.
    let o = py(&dir, &args);
    assert!(text(&o).contains("FAILED (cached)"), "{}", text(&o));
    let mut retry = args.to_vec();
    retry.insert(1, "--retry-failed");
    let o = py(&dir, &retry);
    assert!(text(&o).contains("FAILED (computed)"), "{}", text(&o));
    // A recorded timeout is computed again when timeout_minutes is now larger (the message
    // says to raise it), and answered from the cache when it is not.
    let record = std::fs::read_dir(dir.join("label_cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a cache record");
    for (limit, how) in [(0.5, "FAILED (computed)"), (1e6, "FAILED (cached)")] {
        std::fs::write(
            &record,
            format!(
                "{{\"ok\": false, \"timeout_minutes\": {limit}, \"error\": \"timeout after \
                 {limit} min\", \"kpts\": [1, 1, 1], \"seconds\": 30.0}}"
            ),
        )
        .unwrap();
        let o = py(&dir, &args);
        assert!(text(&o).contains(how), "limit {limit}: {}", text(&o));
    }
    // Settings of the wrong type are refused before anything runs, naming the key: "no" is
    // true in Python, and true is 1 (eV).
    for (bad, says) in [
        ("spin = \"no\"", "spin = 'no': give true or false"),
        ("ecut = true", "ecut = True: must be a positive number"),
        (
            "smearing = \"0.1\"",
            "smearing = '0.1': must be a number >= 0",
        ),
        ("kpts = 4", "kpts = 4: give three positive integers"),
    ] {
        std::fs::write(dir.join("typed.toml"), bad).unwrap();
        let o = py(
            &dir,
            &[
                s.to_str().unwrap(),
                "--settings",
                "typed.toml",
                "in.xyz",
                "o.xyz",
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains(says), "{bad}: {}", text(&o));
    }
    // Bad settings are named.
    std::fs::write(dir.join("bad.toml"), "ecut = 200\nkpoint_dens = 2\n").unwrap();
    let o = py(
        &dir,
        &[
            s.to_str().unwrap(),
            "--settings",
            "bad.toml",
            "in.xyz",
            "o.xyz",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("unknown key(s) kpoint_dens"),
        "{}",
        text(&o)
    );
}

/// The quick DFT loop (examples/li-dft-loop/quick.toml): two iterations from five GPAW-labelled
/// cold BCC frames, LAMMPS explorations watched by fix ace/uq/watch, GPAW labels through
/// `[labeller.settings]`; about two minutes.
#[test]
fn quick_dft_loop_labels_its_candidates_with_gpaw() {
    let test = "quick_dft_loop_labels_its_candidates_with_gpaw";
    if gpaw(test).is_none() {
        return;
    }
    let Some(_s) = common::setup(test) else {
        return;
    };
    let dir = workdir("gpaw_label", "quick_loop");
    let run = dir.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(["loop", "--config"])
        .arg(common::repo("examples/li-dft-loop/quick.toml"))
        .arg("--run-dir")
        .arg(&run)
        .output()
        .expect("run aceuq loop");
    let t = text(&out);
    note(&t);
    assert!(out.status.success(), "{t}");
    // Two iterations, each labelling what it selected, nothing failed.
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for r in &rows {
        let (selected, labelled, failed) = (r[6], r[7], r[8]);
        assert!(
            labelled != "0" && labelled == selected && failed == "0",
            "{csv}"
        );
        assert_eq!(r[3], "", "no test set: no test RMSE ({csv})");
    }
    // The labels are GPAW's at the settings of the configuration.
    let settings =
        std::fs::read_to_string(run.join("iter_001/labelling/labeller_settings.toml")).unwrap();
    assert!(
        settings.contains("ecut = 300.0") && settings.contains("energy_key = \"energy\""),
        "{settings}"
    );
    let labelled =
        aceuq::io::extxyz::read_file(run.join("iter_001/labelled.xyz"), &Default::default())
            .unwrap();
    assert!(!labelled.is_empty());
    for f in &labelled {
        let code = f.info.get("dft_code").map(|v| format!("{v:?}"));
        assert!(
            code.as_deref().is_some_and(|c| c.contains("gpaw")),
            "{code:?}"
        );
        assert!(f.energy.is_some_and(f64::is_finite) && f.virial.is_some());
        assert_eq!(f.len(), 16);
    }
    let data = aceuq::io::extxyz::read_file(run.join("dataset.xyz"), &Default::default()).unwrap();
    let n_labelled: usize = rows.iter().map(|r| r[7].parse::<usize>().unwrap()).sum();
    assert_eq!(data.len(), 5 + n_labelled);
    assert!(run.join("final.aceuq").is_file());
}
