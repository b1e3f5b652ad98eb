//! Error messages of the real `aceuq` binary: each cause said once, negative numbers rejected
//! with the flag's name and range (not taken for unknown flags), and hints for truncated files
//! that a command-line user can follow.

use std::path::{Path, PathBuf};
use std::process::Command;

fn aceuq(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(args)
        .output()
        .expect("run aceuq");
    assert!(
        out.stdout.len() < 100_000,
        "{args:?}: unexpected output volume"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn workdir(case: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_errors")
        .join(case);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const TRAIN: &str = "tests/data/li/valid.xyz";

/// A directory given as a file: the OS error appears once, not once per level of the error
/// chain ("Is a directory (os error 21): Is a directory (os error 21)").
#[test]
fn os_errors_are_printed_once() {
    let dir = workdir("directory");
    let d = dir.to_str().unwrap();
    let small = ["--nmax", "4,2", "--lmax", "0,2"];
    let cases: Vec<Vec<&str>> = vec![
        vec!["info", "--model", d],
        vec!["eval", "--model", d, "--data", TRAIN],
        vec!["fit", "--train", d, "--out", "never.aceuq", "--dry-run"],
        vec!["cutoff", "--values", d],
    ];
    for args in cases {
        let (code, err) = aceuq(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{args:?}: {err}");
        assert_eq!(
            err.matches("os error 21").count(),
            1,
            "{args:?}: each cause once: {err}"
        );
        assert!(err.contains(d), "{args:?}: names the path: {err}");
    }
    // A folder as an output is refused before the fit, in words of its own.
    let (code, err) = aceuq(&[&["fit", "--train", TRAIN, "--out", d][..], &small[..]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("--out {d} is a folder: give a file path")),
        "{err}"
    );
    assert!(
        !err.contains("training on"),
        "refused after the work began: {err}"
    );
}

/// Negative values of numeric flags reach the command, which says what the flag must be;
/// clap used to take `-1` for an unknown flag.
#[test]
fn negative_numbers_are_rejected_with_the_flag_and_its_range() {
    let fit = ["fit", "--train", TRAIN, "--out", "never.aceuq", "--dry-run"];
    for (flag, value, want) in [
        (
            "--cutoff",
            "-1",
            "--cutoff must be a number of Å above 0.5 and at most 30, got -1",
        ),
        (
            "--cutoff",
            "1e9",
            "--cutoff must be a number of Å above 0.5 and at most 30, got 1000000000",
        ),
        (
            "--cutoff",
            "-2.5e-1",
            "--cutoff must be a number of Å above 0.5 and at most 30, got -0.25",
        ),
        (
            "--radial-inner",
            "-0.5",
            "--radial-inner must be a number of Å ≥ 0 (and below the cutoff), got -0.5",
        ),
        (
            "--ridge",
            "-1e-3",
            "--ridge must be \"auto\" or a number ≥ 0, got -1e-3",
        ),
        (
            "--energy-weight",
            "-1",
            "--energy-weight must be a number ≥ 0, got -1",
        ),
        (
            "--force-weight",
            "-.5",
            "--force-weight must be a number ≥ 0, got -0.5",
        ),
        (
            "--target-force",
            "-0.1",
            "--target-force must be a positive fraction of the force spread, e.g. 0.1, got -0.1",
        ),
        (
            "--target-energy",
            "0",
            "--target-energy must be a positive number of meV/atom, got 0",
        ),
        (
            "--grow-basis",
            "yes",
            "--grow-basis must be auto, on or off, got yes",
        ),
    ] {
        let args = [&fit[..], &[flag, value][..]].concat();
        let (code, err) = aceuq(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim_end(), format!("error: {want}"), "{args:?}");
    }
    let dir = workdir("negative");
    let values = dir.join("values.txt");
    std::fs::write(&values, "0.1\n0.2\n0.3\n0.25\n0.15\n").unwrap();
    let v = values.to_str().unwrap();
    for (args, want) in [
        (
            vec!["cutoff", "--values", v, "--max-error", "-1"],
            "--max-error must be a positive number (in the units of the values), got -1",
        ),
        (
            vec![
                "calibrate",
                "--model",
                "m.aceuq",
                "--valid",
                TRAIN,
                "--max-error",
                "-1",
            ],
            "--max-error must be a positive number of eV/Å, got -1",
        ),
        (
            vec![
                "calibrate",
                "--model",
                "m.aceuq",
                "--valid",
                TRAIN,
                "--p-halt",
                "-0.5",
            ],
            "--p-halt must be strictly between 0 and 1, got -0.5",
        ),
        (
            vec![
                "report",
                "--model",
                "m.aceuq",
                "--data",
                TRAIN,
                "--out",
                "r",
                "--max-error",
                "-1",
            ],
            "--max-error must be a positive number of eV/Å, got -1",
        ),
        (
            vec![
                "select",
                "--model",
                "m.aceuq",
                "--candidates",
                TRAIN,
                "--max",
                "2",
                "--out",
                "o.xyz",
                "--tol",
                "-1",
            ],
            "--tol must be a number above 1 (1.01 is the usual value), got -1",
        ),
        (
            vec![
                "activeset",
                "--model",
                "m.aceuq",
                "--data",
                TRAIN,
                "--tol",
                "-1",
            ],
            "--tol must be a number above 1 (1.01 is the usual value), got -1",
        ),
        (
            vec![
                "export",
                "--model",
                "m.aceuq",
                "--output",
                "o.yace",
                "--max-energy-error",
                "-1",
            ],
            "--max-energy-error must be a positive number of eV/atom, got -1",
        ),
    ] {
        let (code, err) = aceuq(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim_end(), format!("error: {want}"), "{args:?}");
    }
    // Counts: clap says the value is invalid for the flag (not that the flag is unknown).
    for args in [
        &[
            "select",
            "--model",
            "m",
            "--candidates",
            "c",
            "--out",
            "o",
            "--max",
            "-1",
        ][..],
        &["--threads", "-2", "info", "--model", "m"][..],
        &["fit", "--train", TRAIN, "--out", "x", "--ensemble", "-3"][..],
        &["cutoff", "--values", "v", "--n", "-10"][..],
        &[
            "export",
            "--model",
            "m",
            "--output",
            "o",
            "--radial-base",
            "-3",
        ][..],
        &["al-bench", "--pool", "p", "--out", "o", "--clusters", "-1"][..],
    ] {
        let (code, err) = aceuq(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.starts_with("error: invalid value '-"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
    }
}

/// Basis growth: the ladder is announced for the default basis with validation data, a given
/// basis is used as it is, and growth without validation data is refused or said.
#[test]
fn basis_growth_is_announced_and_needs_validation_data() {
    let fit = ["fit", "--train", TRAIN, "--out", "never.aceuq", "--dry-run"];
    let with_valid = [&fit[..], &["--valid", "tests/data/li/test.xyz"][..]].concat();
    let (code, err) = aceuq(&with_valid);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("basis grown while the validation errors miss the target"),
        "{err}"
    );
    for (k, want) in [
        (1, "197 functions"),
        (2, "345 functions"),
        (3, "cutoff 7.5 Å"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("  {k}. ")) && l.contains(want)),
            "rung {k} ({want}): {err}"
        );
    }
    // A basis flag, even one repeating the default, means: this basis.
    let (code, err) = aceuq(&[&with_valid[..], &["--cutoff", "5.5"][..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with("basis: ") && !err.contains("grown"),
        "{err}"
    );
    let given = [&with_valid[..], &["--lmax", "0,3,3"][..]].concat();
    let (code, err) = aceuq(&given);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with("basis: ") && !err.contains("grown"),
        "{err}"
    );
    let (code, err) = aceuq(&[&given[..], &["--grow-basis", "on"][..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("  2. ") && l.contains("345 functions")),
        "a given basis grows when asked: {err}"
    );
    let (code, err) = aceuq(&fit);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("basis not grown: no --valid"), "{err}");
    let (code, err) = aceuq(&[&fit[..], &["--grow-basis", "on"][..]].concat());
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        "error: --grow-basis on (or grow_basis = \"on\" in [fit]) chooses the basis on validation \
         data: give --valid"
    );
}

/// A training file cut off mid-frame: the error says how to repair the file with ordinary
/// tools, and names no library option.
#[test]
fn truncated_data_hint_is_for_the_command_line() {
    let dir = workdir("truncated");
    let text = std::fs::read_to_string(TRAIN).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let n: usize = lines[0].trim().parse().unwrap();
    // The first frame whole, then the second frame's count, comment and one atom line.
    let keep = n + 2 + 3;
    let cut = dir.join("cut.xyz");
    std::fs::write(&cut, lines[..keep].join("\n") + "\n").unwrap();
    let c = cut.to_str().unwrap();
    let (code, err) = aceuq(&["fit", "--train", c, "--out", "never.aceuq", "--dry-run"]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("allow_truncated_tail"), "{err}");
    let start = n + 3;
    assert!(
        err.contains(&format!(
            "{c}:{start}: the frame starting here declares {n} atoms but the file ends after 1 \
             atom line(s)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("`head -n {} FILE > FIXED.xyz`", start - 1)),
        "{err}"
    );
    // Following the hint gives a file that reads.
    std::fs::write(&cut, lines[..start - 1].join("\n") + "\n").unwrap();
    let (code, err) = aceuq(&["fit", "--train", c, "--out", "never.aceuq", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
}

/// An output that would replace an input of the same command, two outputs on one file, and an
/// input whose frames would count twice are refused before any work, and nothing is written.
/// These paths need no model: the check comes first.
#[test]
fn outputs_never_replace_inputs() {
    let dir = workdir("clashing_paths");
    let data = dir.join("held_out.xyz");
    std::fs::copy("tests/data/li/test.xyz", &data).unwrap();
    let model = dir.join("m.aceuq");
    std::fs::write(&model, b"not read: the paths are checked first").unwrap();
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    // The same file under another name counts as the same file.
    let d_alias = format!("{}/./held_out.xyz", dir.display());
    let md = format!("{}/x.md", dir.display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["check-cutoffs", "-m", m, "--data", d, "--out", m],
            "--out",
        ),
        (
            vec!["check-cutoffs", "-m", m, "--data", d, "--frames", &d_alias],
            "--frames",
        ),
        (
            vec![
                "calibrate",
                "-m",
                m,
                "--valid",
                d,
                "--pool-size",
                "100",
                "--out",
                d,
            ],
            "--out",
        ),
        (
            vec!["fit", "--train", d, "--out", &d_alias, "--dry-run"],
            "--out",
        ),
        (
            vec!["eval", "-m", m, "--data", d, "--per-atom", d],
            "--per-atom",
        ),
    ];
    for (args, flag) in cases {
        let before = std::fs::read(&data).unwrap();
        let (code, err) = aceuq(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!("{flag} ")) && err.contains("would replace that input"),
            "{args:?}: {err}"
        );
        assert_eq!(
            std::fs::read(&data).unwrap(),
            before,
            "{args:?}: data changed"
        );
    }
    let (code, err) = aceuq(&[
        "check-cutoffs",
        "-m",
        m,
        "--data",
        d,
        "--out",
        &md,
        "--frames",
        &md,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("are the same file"), "{err}");
    assert!(!Path::new(&md).exists());
    for args in [
        vec![
            "calibrate",
            "-m",
            m,
            "--valid",
            d,
            &d_alias,
            "--pool-size",
            "100",
        ],
        vec![
            "calibrate",
            "-m",
            m,
            "--valid",
            d,
            "--high",
            &d_alias,
            "--pool-size",
            "100",
        ],
        vec!["check-cutoffs", "-m", m, "--data", d, "--novel", d],
    ] {
        let (code, err) = aceuq(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("its frames would count twice"),
            "{args:?}: {err}"
        );
    }
    // A pool size no run reaches (beyond what the stored table can hold at 2^63) is refused.
    let (code, err) = aceuq(&[
        "calibrate",
        "-m",
        m,
        "--valid",
        d,
        "--pool-size",
        "9223372036854775808",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--pool-size 9223372036854775808 is too large"),
        "{err}"
    );
}

/// `check-cutoffs` on a model it cannot check says what the model lacks and how to get it:
/// no estimators at all (not "run calibrate", which would fail the same way), or not the
/// estimator `--methods` names.
#[test]
fn check_cutoffs_names_what_the_model_lacks() {
    let dir = workdir("check_lacks");
    let small = ["--nmax", "4,2", "--lmax", "0,2", "--threads", "1"];
    let bare = dir.join("bare.aceuq");
    let gamma = dir.join("gamma.aceuq");
    for (m, extra) in [(&bare, &[][..]), (&gamma, &["--active-set"][..])] {
        let (code, err) = aceuq(
            &[
                &["fit", "--train", TRAIN, "--out", m.to_str().unwrap()][..],
                &small[..],
                extra,
            ]
            .concat(),
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, err) = aceuq(&[
        "check-cutoffs",
        "-m",
        bare.to_str().unwrap(),
        "--data",
        TRAIN,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("has no uncertainty estimators") && err.contains("--active-set"),
        "{err}"
    );
    let (code, err) = aceuq(&[
        "calibrate",
        "-m",
        gamma.to_str().unwrap(),
        "--valid",
        TRAIN,
        "--pool-size",
        "100",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = aceuq(&[
        "check-cutoffs",
        "-m",
        gamma.to_str().unwrap(),
        "--data",
        TRAIN,
        "--methods",
        "gp",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has no gp estimator (it has gamma)"), "{err}");
}
