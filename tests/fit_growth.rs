//! `aceuq fit --grow-basis on` end to end on the committed Li data (a deliberately small basis so
//! that every rung fits in about a second): every rung of the ladder is fitted and printed, the
//! kept one is the one the rule picks from the printed validation errors, the model file keeps
//! the record (`aceuq info` prints it again) and the kept model's own validation errors are
//! those of its row.

use std::process::Command;

fn aceuq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(args)
        .output()
        .expect("run aceuq");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The rows of the growth table: (cutoff, lmax, E RMSE, F RMSE, kept).
fn rows(text: &str) -> Vec<(f64, String, f64, f64, bool)> {
    let start = text
        .find("basis grown on the validation data")
        .unwrap_or_else(|| panic!("no growth table:\n{text}"));
    text[start..]
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with("     "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[2].to_string(),
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
                l.ends_with(" <"),
            )
        })
        .collect()
}

#[test]
fn a_grown_fit_keeps_the_rung_its_rule_picks_and_records_it() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fit_growth");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("g.aceuq");
    let m = model.to_str().unwrap();
    let (ok, _, err) = aceuq(&[
        "--threads",
        "2",
        "fit",
        "--train",
        "tests/data/li/train.xyz",
        "--valid",
        "tests/data/li/valid.xyz",
        "--nmax",
        "6,3",
        "--lmax",
        "0,2",
        "--grow-basis",
        "on",
        "--target-force",
        "0.01",
        "--out",
        m,
    ]);
    assert!(ok, "{err}");
    let r = rows(&err);
    assert_eq!(r.len(), 3, "{err}");
    assert_eq!((r[0].0, r[0].1.as_str()), (5.5, "0,2"));
    assert_eq!((r[1].0, r[1].1.as_str()), (5.5, "0,6"));
    assert_eq!((r[2].0, r[2].1.as_str()), (7.5, "0,6"));
    // The rule, from the printed errors (loss = E² + 0.01 F², the fit's default weights): the
    // cheapest rung within 1.1x the lowest loss (a 1 % force target is out of reach).
    let loss: Vec<f64> = r.iter().map(|x| x.2 * x.2 + 0.01 * x.3 * x.3).collect();
    let best = loss.iter().cloned().fold(f64::INFINITY, f64::min);
    let want = loss.iter().position(|&l| l <= 1.1 * best).unwrap();
    let kept: Vec<usize> = (0..3).filter(|&k| r[k].4).collect();
    assert_eq!(kept, vec![want], "{err}");
    // Measured: the second rung (degree 6) wins and the 7.5 Å one is worse with so few radial
    // functions, so the kept rung is neither the first nor the last.
    assert_eq!(want, 1, "{err}");
    assert!(err.contains("no basis meets the target"), "{err}");
    // The record is in the model file.
    let (ok, info, e) = aceuq(&["info", "--model", m]);
    assert!(ok, "{e}");
    assert_eq!(rows(&info), r, "{info}");
    // The kept model is that rung's: its validation force RMSE is the row's.
    let (ok, out, e) = aceuq(&["eval", "--model", m, "--data", "tests/data/li/valid.xyz"]);
    assert!(ok, "{e}");
    let f: f64 = out
        .lines()
        .find(|l| l.starts_with("valid.xyz"))
        .and_then(|l| l.split_whitespace().nth(5)?.parse().ok())
        .unwrap_or_else(|| panic!("no valid.xyz row:\n{out}"));
    assert!((f - r[want].3).abs() < 1.5e-3, "{f} vs {:?}", r[want]);
}
