//! End-to-end runs of `aceuq al-bench` and `aceuq uq-bench` at their quick (CI) size on the
//! committed data: the files they promise exist and the numbers obey the protocol's invariants.
//! Run with `cargo test --release --test benchmarks` (each test takes well under a minute).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aceuq-bench-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn aceuq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(["--threads", "2"])
        .args(args)
        .output()
        .expect("run aceuq")
}

fn assert_png(p: &Path) {
    let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "{}: {len} bytes", p.display());
}

/// A CSV as (header, rows of cells).
fn read_csv(p: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
        .collect();
    (header, rows)
}

fn col(header: &[String], rows: &[Vec<String>], name: &str) -> Vec<f64> {
    let k = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    rows.iter()
        .map(|r| r[k].parse::<f64>().unwrap_or(f64::NAN))
        .collect()
}

/// `aceuq al-bench` on the quick pool, quick basis, one repeat: (stdout + stderr, exit status
/// checked).
fn quick_al_bench(methods: &str, seed: &str, out: &Path) -> String {
    let pool = repo().join("tests/data/li/pool_quick.xyz");
    let o = aceuq(&[
        "al-bench",
        "--pool",
        pool.to_str().unwrap(),
        "--method",
        methods,
        "--repeats",
        "1",
        "--seed",
        seed,
        "--quick",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "al-bench failed:\n{stderr}");
    format!("{}{stderr}", String::from_utf8_lossy(&o.stdout))
}

#[test]
fn al_bench_quick_end_to_end() {
    let out = out_dir("al");
    quick_al_bench("oracle,random,gamma,distance,ensemble", "3", &out);
    assert_png(&out.join("comparison.png"));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let n_pool = 30.0;
    for m in ["oracle", "random", "gamma", "distance", "ensemble"] {
        assert!(md.contains(&format!("| {m} ")), "summary lacks {m}:\n{md}");
        assert_png(&out.join(format!("{m}_figure4.png")));
        let (h, rows) = read_csv(&out.join(format!("{m}_seed3.csv")));
        assert_eq!(h.len(), 29, "{h:?}");
        assert!(!rows.is_empty());
        let size = col(&h, &rows, "dataset");
        let added = col(&h, &rows, "added");
        let ntr = col(&h, &rows, "n_train");
        let nva = col(&h, &rows, "n_valid");
        assert_eq!(size[0], 5.0, "{m}: the protocol starts from 5 frames");
        for i in 0..rows.len() {
            assert_eq!(size[i], ntr[i] + nva[i]);
            assert!(nva[i] >= 1.0, "{m}: every fit has validation frames");
            assert!(size[i] <= n_pool);
            if i + 1 < rows.len() {
                // Monotone, exactly what was added, at most doubling.
                assert_eq!(size[i + 1], size[i] + added[i], "{m} row {i}");
                assert!(added[i] >= 1.0 && added[i] <= size[i], "{m} row {i}");
            }
        }
        // Units in the column names: the cutoffs of gamma are dimensionless, the others' in eV/Å.
        let u = if m == "gamma" {
            "dimensionless"
        } else {
            "eV_per_A"
        };
        let e_c = col(&h, &rows, "e_c_eV_per_A");
        let u_c = col(&h, &rows, &format!("u_c_{u}"));
        let u_max = col(&h, &rows, &format!("u_max_{u}"));
        let mae = col(&h, &rows, "force_mae_pool_eV_per_A");
        assert!(mae.iter().all(|v| *v > 0.0 && *v < 1.0), "{m}: {mae:?}");
        let cov = col(&h, &rows, "coverage");
        for i in 0..rows.len() {
            assert!(e_c[i].is_finite() && e_c[i] > 0.0, "{m}: e_c {}", e_c[i]);
            assert!(u_c[i].is_finite() && u_c[i] > 0.0, "{m}: u_c {}", u_c[i]);
            // +inf: the method has no upper cutoff (it cannot reach e_max on these data).
            assert!(
                u_max[i] >= u_c[i],
                "{m}: u_max {} below u_c {}",
                u_max[i],
                u_c[i]
            );
            if m == "oracle" {
                assert!(u_max[i].is_finite(), "oracle: u_max = e_max");
            }
            assert!(cov[i] > 0.0 && cov[i] <= 1.0);
        }
        let f1 = col(&h, &rows, "f1");
        let hi = col(&h, &rows, "high_error_fraction");
        match m {
            "oracle" => {
                for i in 0..rows.len() {
                    // u = e with identical fits: u_c = e_c, u_max = e_max, so every high-error
                    // atom is flagged and nothing else.
                    assert!((u_c[i] - e_c[i]).abs() <= 1e-9 * e_c[i]);
                    assert!((u_max[i] - 1.0).abs() < 1e-9 || u_max[i] == u_c[i]);
                    if hi[i] > 0.0 {
                        assert_eq!(f1[i], 1.0, "oracle row {i}");
                    }
                }
            }
            "random" => assert!(f1.iter().all(|v| v.is_nan()), "random has no F1"),
            _ => {
                // Undefined (nan) exactly where nothing is flagged and nothing errs above e_c.
                let flagged = col(&h, &rows, "uncertain_fraction");
                for i in 0..rows.len() {
                    if hi[i] == 0.0 && flagged[i] == 0.0 {
                        assert!(f1[i].is_nan(), "{m} row {i}: F1 {} where undefined", f1[i]);
                    } else {
                        assert!((0.0..=1.0).contains(&f1[i]), "{m} row {i}: F1 {}", f1[i]);
                    }
                }
            }
        }
        // The last row adds nothing (converged) or the run hit the iteration limit.
        let last = rows.len() - 1;
        assert!(added[last] == 0.0);
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A run that ends halted before an unstable frame, with nothing left to label before it, has
/// not converged: it is reported as stalled (here distance with seed 1 on the quick pool, whose
/// upper cutoff from one validation frame sits just above its lower cutoff and halts at the
/// first pool frame), and the summary does not count it as converged; the calibration's
/// warning that says why is printed with the iteration.
#[test]
fn al_bench_reports_a_stalled_run_as_not_converged() {
    let out = out_dir("al-stall");
    let said = quick_al_bench("distance", "1", &out);
    let (h, rows) = read_csv(&out.join("distance_seed1.csv"));
    let last = rows.last().expect("a row");
    let stop = &last[h.iter().position(|c| c == "stop_frame").unwrap()];
    let added = &last[h.iter().position(|c| c == "added").unwrap()];
    assert_eq!(added, "0");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let row = md.lines().find(|l| l.starts_with("| distance")).unwrap();
    let converged: Vec<&str> = row.split('|').map(str::trim).collect();
    // (If the data or the fit change so that this run no longer halts, pick another stalled
    // case: the check below needs one.)
    assert_ne!(stop, "none", "the run did not halt: {row}");
    assert_eq!(
        converged[3], "0",
        "a stalled run counted as converged: {row}"
    );
    assert!(
        said.contains(&format!("stalled: halted at pool frame {stop}")),
        "{said}"
    );
    // The calibration's warnings are printed with the iteration: here the reason.
    assert!(
        said.contains("calibration warning: Li: upper cutoff extrapolated"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn al_bench_rejects_bad_input() {
    let out = out_dir("al-bad");
    let pool = repo().join("tests/data/li/pool_quick.xyz");
    let o = aceuq(&[
        "al-bench",
        "--pool",
        pool.to_str().unwrap(),
        "--method",
        "oracle,magic",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("magic"), "{e}");
    // A pool out of time order is named.
    let text = std::fs::read_to_string(&pool).unwrap();
    let mut frames: Vec<String> = vec![];
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let n: usize = lines[i].trim().parse().unwrap();
        frames.push(lines[i..i + n + 2].join("\n") + "\n");
        i += n + 2;
    }
    frames.reverse();
    std::fs::create_dir_all(&out).unwrap();
    let rev = out.join("reversed.xyz");
    std::fs::write(&rev, frames.concat()).unwrap();
    let o = aceuq(&[
        "al-bench",
        "--pool",
        rev.to_str().unwrap(),
        "--method",
        "oracle",
        "--quick",
        "--out",
        out.join("o").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("time order") && e.contains("reversed.xyz"),
        "{e}"
    );
    // A file as the output folder is named as such.
    let o = aceuq(&[
        "al-bench",
        "--pool",
        pool.to_str().unwrap(),
        "--out",
        rev.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("a file is there; give a folder"), "{e}");
    // A uq-bench that fails after creating its output folder (species the data lack) leaves
    // no empty folder behind.
    let li = repo().join("tests/data/li/valid.xyz");
    let li = li.to_str().unwrap();
    let cfg = out.join("species.toml");
    std::fs::write(
        &cfg,
        format!(
            "methods = [\"gamma\"]\nseed = 7\nensemble = 2\n\n[[basis]]\nname = \"tiny\"\n\
             nmax = [4, 2]\nlmax = [0, 2]\n\n[[dataset]]\nname = \"wrong\"\nspecies = [\"Al\"]\n\
             train = [\"{li}\"]\nvalid = [\"{li}\"]\ntest = [\"{li}\"]\n"
        ),
    )
    .unwrap();
    let uq_out = out.join("uq_never");
    let o = aceuq(&[
        "uq-bench",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        uq_out.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let e = String::from_utf8_lossy(&o.stderr);
    // The failure came from the fit, after the folder was made.
    assert!(e.contains("is not in the model"), "{e}");
    assert!(!uq_out.exists(), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn uq_bench_quick_end_to_end() {
    let out = out_dir("uq");
    let cfg = repo().join("examples/uq-bench/bench.toml");
    let o = aceuq(&[
        "uq-bench",
        "--config",
        cfg.to_str().unwrap(),
        "--quick",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "uq-bench failed:\n{stderr}");
    for f in [
        "calibration.png",
        "scores.png",
        "novelty.png",
        "accuracy.png",
    ] {
        assert_png(&out.join(f));
    }
    let text = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    // Units in the column names; both force errors in meV/Å.
    assert!(
        header.starts_with(
            "dataset,basis,nfuncs,n_train,force_mae_test_meV_per_A,force_rmse_test_meV_per_A,"
        ),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    // (2 Li data sets x 2 quick bases + Al-Mg x its 1 quick basis) x 3 methods.
    assert_eq!(rows.len(), 15, "{text}");
    let mut nfuncs = std::collections::BTreeSet::new();
    for r in &rows {
        // The dataset names are quoted and contain no commas; the subset list is last.
        let cells: Vec<&str> = r.split(',').collect();
        assert_eq!(cells.len(), 18, "{r}");
        nfuncs.insert((
            cells[0].contains("Al-Mg"),
            cells[2].parse::<usize>().unwrap(),
        ));
        let num = |k: usize| cells[k].parse::<f64>().unwrap();
        assert!(num(4) > 1.0 && num(4) < 1000.0, "test MAE (meV/Å) {r}");
        // The RMSE per component and the mean |ΔF| in one unit: sqrt(3) RMSE >= mean |ΔF|.
        assert!(3f64.sqrt() * num(5) >= num(4), "RMSE vs MAE {r}");
        assert!((-1.0..=1.0).contains(&num(7)), "rho {r}");
        assert!((0.0..=0.5).contains(&num(9)), "area {r}");
        assert!((0.0..=1.0).contains(&num(11)), "mean AUC {r}");
        // Means over the genuinely novel subsets: NaN when there are none.
        let n_novel = num(12);
        for k in 13..=16 {
            let v = num(k);
            if n_novel == 0.0 {
                assert!(v.is_nan(), "{r}");
            } else {
                assert!((-1.0..=1.0).contains(&v), "column {k}: {r}");
            }
        }
        let subsets = cells[17].trim_matches('"').split(';').count();
        // Homogeneous: the 6 novel subsets; Li heterogeneous: the 3 quick holdouts; Al-Mg: the
        // two quick holdout groups (each group's config_types held out together).
        let want = if cells[0].contains("homogeneous") {
            6
        } else if cells[0].contains("Al-Mg") {
            assert!(cells[17].contains("liquids_1100K="), "{r}");
            assert!(cells[17].contains("Mg90Al10_hcp="), "{r}");
            2
        } else {
            3
        };
        assert_eq!(subsets, want, "{r}");
        assert!(n_novel <= want as f64);
    }
    assert_eq!(nfuncs.len(), 3, "two Li basis sizes, one Al-Mg: {nfuncs:?}");
    // One row per (data set, basis, subset, method); the novelty flag follows the documented rule.
    let (h, rows) = read_csv(&out.join("subsets.csv"));
    assert_eq!(rows.len(), 3 * (2 * 6 + 2 * 3 + 2), "{h:?}");
    let ratio = col(&h, &rows, "error_ratio");
    let tail = col(&h, &rows, "frac_above_p95");
    let k_novel = h.iter().position(|c| c == "genuinely_novel").unwrap();
    for (i, r) in rows.iter().enumerate() {
        let rule = ratio[i] >= 1.2 && tail[i] >= 0.10;
        // Rounded to 4 decimals in the file: skip values on the boundary.
        if (ratio[i] - 1.2).abs() > 1e-3 && (tail[i] - 0.10).abs() > 1e-3 {
            assert_eq!(r[k_novel] == "true", rule, "{r:?}");
        }
    }
    for c in [
        "auc_structure_max",
        "auc_structure_matched",
        "auc_atom",
        "recall_top5_at_10",
    ] {
        assert!(
            col(&h, &rows, c).iter().all(|v| (0.0..=1.0).contains(v)),
            "{c}"
        );
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("Novelty ROC-AUC per subset") && md.contains("gamma_local"));
    // Undefined scores (no genuinely novel subset) are "-", not NaN.
    assert!(!md.contains("NaN"), "{md}");
    assert!(
        md.contains("genuinely novel") && md.contains("## Verdict"),
        "{md}"
    );
    for d in ["Li homogeneous", "Li heterogeneous", "Al-Mg phases"] {
        // Once in the data set list, once in the verdicts.
        let n = md.matches(&format!("- **{d}**")).count();
        assert_eq!(n, 2, "no verdict line for {d}:\n{md}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
