//! `aceuq loop` end to end with the real LAMMPS, the plugin and the SNAP labeller
//! (examples/li-loop/quick.toml): iterations leave their files, the training set grows by exactly
//! the validated labels, a rerun resumes without redoing anything, a failing labeller never
//! corrupts the training set and a loop interrupted in labelling resumes there; every iteration
//! that labelled recalibrates with exactly the structures it labelled, and the cutoff summary
//! says how the cutoffs moved.

mod common;

use aceuq::io::extxyz;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The quick example configuration rewritten into `dir` with absolute paths, `iterations`
/// iterations and the given labeller command (None: the example's SNAP labeller).
fn config(dir: &Path, iterations: usize, labeller: Option<&str>) -> PathBuf {
    let ex = root().join("examples/li-loop");
    let mut text = std::fs::read_to_string(ex.join("quick.toml")).unwrap();
    for f in ["start.xyz", "in.explore", "../../tests/data/li/test.xyz"] {
        let abs = ex.join(f).canonicalize().unwrap();
        text = text.replace(&format!("\"{f}\""), &format!("\"{}\"", abs.display()));
    }
    text = text.replace("{dir}", &ex.display().to_string());
    let re_it = text
        .lines()
        .find(|l| l.starts_with("max_iterations"))
        .unwrap()
        .to_string();
    text = text.replace(&re_it, &format!("max_iterations = {iterations}"));
    if let Some(cmd) = labeller {
        let line = text
            .lines()
            .find(|l| l.starts_with("command ="))
            .unwrap()
            .to_string();
        text = text.replace(
            &line,
            &format!("command = {}", toml::Value::String(cmd.into())),
        );
    }
    let p = dir.join(format!("loop_{iterations}_{}.toml", labeller.is_some()));
    std::fs::write(&p, text).unwrap();
    p
}

fn run_loop(cfg: &Path, run_dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(["loop", "--config"])
        .arg(cfg)
        .arg("--run-dir")
        .arg(run_dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    common::note(&text);
    (out.status.success(), text)
}

fn frames(p: &Path) -> Vec<aceuq::Structure> {
    extxyz::read_file(p, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The species-level `gamma` calibration of Li stored in a model file.
fn li_gamma(model: &Path) -> aceuq::stats::cutoff::Calibration {
    let pot = aceuq::Potential::load(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    pot.uq
        .calibration
        .iter()
        .find(|c| c.species == "Li" && c.method == "gamma" && c.cluster.is_none())
        .unwrap_or_else(|| panic!("{}: no Li gamma cutoffs", model.display()))
        .clone()
}

/// Labelled high-uncertainty atoms in an upper cutoff's fit.
fn n_high(c: &aceuq::stats::cutoff::Calibration) -> usize {
    c.conditional.as_ref().map_or(0, |x| x.n_high)
}

/// A recalibration after labelling: used exactly the `labelled` structures of this iteration
/// (128 atoms each) besides `earlier_atoms` from the held-out labels of earlier iterations, and
/// says so.
fn check_recalibration(it: &Path, k: usize, labelled: usize, earlier_atoms: Option<usize>) {
    let after = li_gamma(&it.join("recalibrated.aceuq"));
    let n = n_high(&after);
    match earlier_atoms {
        Some(e) => assert_eq!(n, 128 * labelled + e, "iteration {k}: {after:?}"),
        None => assert!(n >= 128 * labelled, "iteration {k}: {n} high atoms"),
    }
    let p = after.provenance.clone().unwrap_or_default();
    assert!(
        p.contains(&format!("iteration {k} after labelling"))
            && p.contains(&format!("{labelled} labelled in this iteration")),
        "{p}"
    );
}

#[test]
fn quick_loop_runs_grows_the_data_and_resumes() {
    let Some(_s) = common::setup("quick_loop_runs_grows_the_data_and_resumes") else {
        return;
    };
    let dir = common::workdir("active_loop", "quick");
    let cfg = config(&dir, 2, None);
    let run_dir = dir.join("run");
    let (ok, text) = run_loop(&cfg, &run_dir);
    assert!(ok, "loop failed:\n{text}");

    let csv = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert!(!rows.is_empty() && rows.len() <= 2, "{csv}");
    assert!(run_dir.join("summary.png").is_file());

    let initial = frames(&root().join("examples/li-loop/start.xyz")).len();
    let mut expected = initial;
    for (k, row) in rows.iter().enumerate() {
        let it = run_dir.join(format!("iter_{:03}", k + 1));
        assert!(it.join("model.aceuq").is_file() && it.join("explorations.toml").is_file());
        // The data an iteration fitted on = the initial frames + all earlier labels.
        assert_eq!(
            row[1].parse::<usize>().unwrap(),
            expected,
            "iteration {}: {csv}",
            k + 1
        );
        let force_rmse: f64 = row[4].parse().unwrap();
        assert!(force_rmse.is_finite() && force_rmse > 0.0);
        let candidates: usize = row[5].parse().unwrap();
        // Converged exactly when no exploration halted and at most converged_candidates (3 by
        // default) frames were dumped.
        let halts: usize = row[9].parse().unwrap();
        assert_eq!(
            row[15] == "true",
            halts == 0 && candidates <= 3,
            "iteration {}: {csv}",
            k + 1
        );
        if candidates > 0 {
            // Exploration outputs on disk agree with the summary.
            let dumped: usize = ["heat", "compress"]
                .iter()
                .map(|e| it.join(format!("explore_{e}/candidates.xyz")))
                .filter(|p| p.is_file())
                .map(|p| frames(&p).len())
                .sum();
            assert_eq!(dumped, candidates);
            let labelled = frames(&it.join("labelled.xyz"));
            assert_eq!(labelled.len(), row[7].parse::<usize>().unwrap());
            assert!(labelled.len() <= 4, "max_new = 4");
            for f in &labelled {
                assert!(f.energy.is_some_and(f64::is_finite) && f.forces.is_some());
                assert_eq!(f.len(), 128);
            }
            expected += labelled.len();
        }
    }
    // dataset.xyz = initial + every label, nothing else.
    assert_eq!(frames(&run_dir.join("dataset.xyz")).len(), expected);
    assert!(expected > initial, "the loop labelled nothing:\n{text}");

    // Cutoffs: every iteration that labelled recalibrated its model with exactly those
    // structures as high-uncertainty data; a fit without an upper cutoff of its own took the
    // latest recalibration's; cutoffs.csv and the final table show the cutoffs per iteration
    // and how they moved.
    let cut = std::fs::read_to_string(run_dir.join("cutoffs.csv")).unwrap();
    let mut lines = cut.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let cut_rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(cut_rows.len(), rows.len(), "{cut}");
    type Cal = aceuq::stats::cutoff::Calibration;
    // The previous iteration's fit and recalibration.
    let mut previous: Option<(Cal, Option<Cal>)> = None;
    for (k, (row, cr)) in rows.iter().zip(&cut_rows).enumerate() {
        let k = k + 1;
        let it = run_dir.join(format!("iter_{k:03}"));
        let fit = li_gamma(&it.join("model.aceuq"));
        assert_eq!(cr[col("species")], "Li");
        assert_eq!(cr[col("lower_cutoff")], format!("{:.5}", fit.u_c), "{cut}");
        assert_eq!(cr[col("high_atoms")], n_high(&fit).to_string(), "{cut}");
        let labelled: usize = row[7].parse().unwrap();
        let after = if labelled > 0 {
            // Iteration 1 has no earlier labels: exactly its own.
            check_recalibration(&it, k, labelled, (k == 1).then_some(0));
            let a = li_gamma(&it.join("recalibrated.aceuq"));
            assert_eq!(
                cr[col("high_atoms_after_labelling")],
                n_high(&a).to_string(),
                "{cut}"
            );
            Some(a)
        } else {
            assert!(!it.join("recalibrated.aceuq").exists());
            assert_eq!(cr[col("upper_after_labelling")], "", "{cut}");
            None
        };
        match &previous {
            None => assert_eq!(cr[col("lower_moved")], "", "{cut}"),
            Some((before, before_after)) => {
                let moved = if before.u_c == fit.u_c {
                    "=".to_string()
                } else {
                    format!("{:+.1}%", 100.0 * (fit.u_c - before.u_c) / before.u_c)
                };
                assert_eq!(cr[col("lower_moved")], moved, "{cut}");
                if !before.u_max.is_finite() && fit.u_max.is_finite() {
                    assert_eq!(cr[col("upper_moved")], "from none", "{cut}");
                }
                // Carried over: the previous recalibration's upper cutoff.
                if cr[col("upper_from")] != "fit" {
                    assert_eq!(
                        cr[col("upper_from")],
                        format!("iteration {} after labelling", k - 1)
                    );
                    let from = before_after.as_ref().expect("a recalibration to carry");
                    assert_eq!(fit.u_max, from.u_max.max(fit.u_c));
                    assert_eq!(n_high(&fit), n_high(from));
                } else if before_after.as_ref().is_some_and(|a| a.u_max.is_finite()) {
                    assert!(
                        fit.u_max.is_finite(),
                        "iteration {k}: no upper cutoff\n{cut}"
                    );
                }
            }
        }
        previous = Some((fit, after));
    }
    assert!(
        text.contains("cutoffs of gamma per iteration and species")
            && text.contains("u_max after labelling")
            && text.contains("structures just labelled"),
        "{text}"
    );

    // The final model (on every label) and its check runs exist.
    assert!(run_dir.join("final.aceuq").is_file());
    let check: toml::Table =
        toml::from_str(&std::fs::read_to_string(run_dir.join("final_check/summary.toml")).unwrap())
            .unwrap();
    assert_eq!(check["steps"].as_integer(), Some(3000));
    assert_eq!(check["exploration"].as_array().map(|a| a.len()), Some(2));

    // A rerun resumes: every iteration is reported done and no file is rewritten.
    let model1 = std::fs::read(run_dir.join("iter_001/model.aceuq")).unwrap();
    let labelled1 = std::fs::read(run_dir.join("iter_001/labelled.xyz")).unwrap();
    let recal1 = std::fs::read(run_dir.join("iter_001/recalibrated.aceuq")).unwrap();
    let (ok, text2) = run_loop(&cfg, &run_dir);
    assert!(ok, "{text2}");
    assert_eq!(
        text2.matches("already done (resumed)").count(),
        rows.len(),
        "{text2}"
    );
    assert!(
        !text2.contains("fitted on") && !text2.contains("explored '"),
        "{text2}"
    );
    assert_eq!(
        std::fs::read(run_dir.join("iter_001/model.aceuq")).unwrap(),
        model1
    );
    assert_eq!(
        std::fs::read(run_dir.join("iter_001/labelled.xyz")).unwrap(),
        labelled1
    );
    assert_eq!(
        std::fs::read(run_dir.join("iter_001/recalibrated.aceuq")).unwrap(),
        recal1
    );
    assert!(!text2.contains("structures just labelled"), "{text2}");
    assert_eq!(
        std::fs::read_to_string(run_dir.join("cutoffs.csv")).unwrap(),
        cut
    );
}

#[test]
fn failing_labeller_never_corrupts_the_data_and_the_loop_resumes_at_labelling() {
    let Some(_s) = common::setup("failing_labeller_never_corrupts_the_data") else {
        return;
    };
    let dir = common::workdir("active_loop", "failing_labeller");
    let run_dir = dir.join("run");

    // 0. A labeller that hangs: stopped at [labeller] timeout_minutes, and the loop stops
    //    there, naming the limit, instead of giving each frame alone that time again.
    let hung = config(&dir, 1, Some("sleep 300 # {input} {output}"));
    let text = std::fs::read_to_string(&hung)
        .unwrap()
        .replace("timeout_minutes = 20", "timeout_minutes = 0.02");
    std::fs::write(&hung, text).unwrap();
    let (ok, text) = run_loop(&hung, &run_dir);
    assert!(!ok, "{text}");
    assert!(
        text.contains("labelling stopped: ") && text.contains("raise [labeller] timeout_minutes"),
        "{text}"
    );
    let labelling = run_dir.join("iter_001/labelling");
    assert!(labelling.join("batch.log").is_file());
    assert!(
        !labelling.join("frame_0000.log").exists(),
        "frames retried alone"
    );

    // 1. A labeller that always fails: the loop stops with the reason, nothing is labelled.
    let bad = config(
        &dir,
        1,
        Some("echo 'SCF did not converge for {input}' >&2; exit 3 # {output}"),
    );
    let (ok, text) = run_loop(&bad, &run_dir);
    assert!(!ok, "{text}");
    assert!(
        text.contains("warning: the labeller's command or settings changed"),
        "{text}"
    );
    assert!(
        text.contains("the labeller failed on every structure")
            && text.contains("labeller exited with exit code 3 (log ")
            && text.contains("SCF did not converge"),
        "{text}"
    );
    let it = run_dir.join("iter_001");
    assert!(it.join(".select.done").is_file() && !it.join(".label.done").is_file());
    assert!(!it.join("labelled.xyz").exists() && !it.join("recalibrated.aceuq").exists());
    let model = std::fs::read(it.join("model.aceuq")).unwrap();

    // 2. A labeller that fails the batch and then mangles the first single structure it sees
    //    (no forces): that structure is kept aside with its reason, the others are labelled, and
    //    the loop resumes at labelling (the fit and the explorations are not redone).
    let script = dir.join("flaky_label.sh");
    let label_py = root().join("scripts/label.py");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\nin=\"$1\"; out=\"$2\"\nn=$(grep -c 'Lattice=' \"$in\")\n\
             if [ \"$n\" -gt 1 ]; then echo 'batch too large' >&2; exit 1; fi\n\
             if [ ! -e \"{seen}\" ]; then touch \"{seen}\"; \
             sed 's/:forces:R:3//' \"$in\" > \"$out\"; exit 0; fi\n\
             python3 '{label}' --labeller li-snap \"$in\" \"$out\"\n",
            seen = dir.join("seen").display(),
            label = label_py.display()
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.join("seen"));
    let flaky = config(
        &dir,
        1,
        Some(&format!("sh '{}' {{input}} {{output}}", script.display())),
    );
    let (ok, text) = run_loop(&flaky, &run_dir);
    assert!(ok, "{text}");
    assert!(
        !text.contains("iteration 1: fitted") && !text.contains("iteration 1: explored"),
        "redid work:\n{text}"
    );
    assert_eq!(std::fs::read(it.join("model.aceuq")).unwrap(), model);
    // The settings that made the finished stages stay on record beside the new ones.
    let used = |name: &str| std::fs::read_to_string(run_dir.join(name)).unwrap();
    assert!(
        text.contains("differs from the one this run folder last used (kept as ")
            && used("config.used.1.toml").contains("sleep 300")
            && used("config.used.2.toml").contains("exit 3")
            && used("config.used.toml").contains("flaky_label.sh"),
        "{text}"
    );
    let chosen = frames(&it.join("to_label.xyz"));
    let good = frames(&it.join("labelled.xyz"));
    let failed = frames(&it.join("failed.xyz"));
    assert_eq!(failed.len(), 1);
    assert_eq!(good.len() + 1, chosen.len());
    assert!(
        failed[0]
            .info
            .get("aceuq_label_error")
            .is_some_and(|v| format!("{v:?}").contains("labeller output")),
        "{:?}",
        failed[0].info
    );
    // The recalibration after the resumed labelling used exactly the validated labels.
    check_recalibration(&it, 1, good.len(), Some(0));
    // The training data never contain the failed structure.
    let initial = frames(&root().join("examples/li-loop/start.xyz")).len();
    assert_eq!(
        frames(&run_dir.join("dataset.xyz")).len(),
        initial + good.len()
    );
}

/// A loop told to end by a signal sent to it alone (`kill`, a scheduler's limit) stops the
/// LAMMPS explorations it runs side by side before it ends, so nothing keeps writing into the
/// run folder; while it runs, a second loop on the same folder is refused.
#[test]
fn a_signalled_loop_stops_its_explorations_and_a_second_loop_is_refused() {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};
    let Some(_s) = common::setup("a_signalled_loop_stops_its_explorations") else {
        return;
    };
    let dir = common::workdir("active_loop", "signalled");
    let run_dir = dir.join("run");
    let cfg = config(&dir, 1, None);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("steps = 3000 }", "steps = 60000 }");
    std::fs::write(&cfg, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(["loop", "--config"])
        .arg(&cfg)
        .arg("--run-dir")
        .arg(&run_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let logs: Vec<PathBuf> = ["heat", "compress"]
        .iter()
        .map(|n| run_dir.join(format!("iter_001/explore_{n}/log.lammps")))
        .collect();
    let running = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .is_ok_and(|t| t.lines().filter(|l| l.contains("Step")).count() > 0)
    };
    let t = Instant::now();
    while !logs.iter().all(running) {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the explorations did not start"
        );
        assert!(child.try_wait().unwrap().is_none(), "the loop ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, text) = run_loop(&cfg, &run_dir);
    assert!(
        !ok && text.contains("is in use by another `aceuq loop`"),
        "{text}"
    );
    // What the explorations write grows while they run (so the check below can fail).
    let written: Vec<PathBuf> = ["heat", "compress"]
        .iter()
        .flat_map(|n| {
            ["log.lammps", "candidates.xyz"]
                .map(|f| run_dir.join(format!("iter_001/explore_{n}/{f}")))
        })
        .collect();
    let sizes = |ps: &[PathBuf]| -> Vec<u64> {
        ps.iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .collect()
    };
    let t0 = sizes(&written);
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(sizes(&written), t0, "the explorations are not running");
    // SIGTERM to the loop's process alone.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
    let before = sizes(&written);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sizes(&written),
        before,
        "LAMMPS kept running after the loop ended"
    );
}
