//! Training and evaluation data that is physically absurd or mislabelled (issue 21, item 9),
//! through the real `aceuq` binary. Every case starts from real Li frames
//! (`tests/data/li/train.xyz`, labelled by a SNAP potential) copied into a temporary folder and
//! damaged in one place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The first `n` frames of `tests/data/li/train.xyz` (250 atoms each), as lines.
fn li_frames(n: usize) -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/li/train.xyz");
    let text = std::fs::read_to_string(p).unwrap();
    text.lines().take(252 * n).map(|l| l.to_string()).collect()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aceuq-data-checks-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn aceuq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .args(args)
        .output()
        .expect("run aceuq")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `aceuq calibrate --model MODEL --valid VALID --pool-size POOL` (extra arguments appended).
fn calibrate(model: &Path, valid: &Path, pool: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "calibrate",
        "--model",
        model.to_str().unwrap(),
        "--valid",
        valid.to_str().unwrap(),
        "--pool-size",
        pool,
    ];
    args.extend_from_slice(extra);
    aceuq(&args)
}

/// A small, fast fit of `train` (extra arguments appended).
fn fit(train: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "fit",
        "--train",
        train.to_str().unwrap(),
        "--species",
        "Li",
        "--nmax",
        "4,2",
        "--lmax",
        "0,1",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    aceuq(&args)
}

fn eval(model: &Path, data: &Path) -> Output {
    aceuq(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--threads",
        "1",
    ])
}

/// Replace column `col` (0-based, whitespace separated) of line `line` (0-based).
fn set_column(lines: &mut [String], line: usize, col: usize, value: &str) {
    let mut cols: Vec<String> = lines[line]
        .split_whitespace()
        .map(|s| s.to_string())
        .collect();
    cols[col] = value.to_string();
    lines[line] = cols.join(" ");
}

/// Issue 21.1: forces of 1e308 and an energy of 1e300 were accepted (a fitted E0 of 6e305 eV).
/// Both are errors in fit and eval, naming the file, line, frame (from 1), atom and value.
#[test]
fn absurd_forces_and_energies_are_errors_naming_frame_and_atom() {
    let dir = tmpdir("absurd");
    let good = write(&dir, "good.xyz", &li_frames(3));
    let model = dir.join("m.aceuq");
    let o = fit(&good, &model, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Frame 2, atom 5: its line is 252 + 2 + 4 (0-based), 259 counted from 1; fx is column 4.
    let mut lines = li_frames(3);
    set_column(&mut lines, 252 + 2 + 4, 4, "1e308");
    let bad = write(&dir, "bigforce.xyz", &lines);
    for o in [fit(&bad, &dir.join("x.aceuq"), &[]), eval(&model, &bad)] {
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("bigforce.xyz:259: frame 2: the reference force on atom 5")
                && e.contains("1e308")
                && e.contains("eV/Å"),
            "{e}"
        );
    }
    assert!(!dir.join("x.aceuq").exists());

    // Frame 2's energy (its comment line is line 254).
    let mut lines = li_frames(3);
    let with = lines[253].replace(" energy=", " energy=1e300 old_energy=");
    assert_ne!(with, lines[253]);
    lines[253] = with;
    let bad = write(&dir, "bigenergy.xyz", &lines);
    for o in [fit(&bad, &dir.join("x.aceuq"), &[]), eval(&model, &bad)] {
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("bigenergy.xyz:254: frame 2: the reference energy 1e300 eV of 250 atoms"),
            "{e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21.2: a file labelled `REF_energy=` read with the default key `energy` gave a
/// force-only fit without a word. Now the fit names the key it looked for and the energy-like
/// keys the frame has, and fits forces only when asked to.
#[test]
fn missing_energy_key_is_an_error_unless_the_fit_is_force_only() {
    let dir = tmpdir("energykey");
    let renamed: Vec<String> = li_frames(3)
        .into_iter()
        .map(|l| l.replace(" energy=", " REF_energy="))
        .collect();
    let f = write(&dir, "ref.xyz", &renamed);
    let out = dir.join("m.aceuq");
    let o = fit(&f, &out, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("ref.xyz:1: frame 1 has no energy key 'energy' (none of its 3 frames has it)")
            && e.contains("its comment line has REF_energy")
            && e.contains("use --energy-key REF_energy")
            && e.contains("--force-only"),
        "{e}"
    );
    assert!(!out.exists());

    // One frame of three without it (the second): named, with the count.
    let mut mixed = li_frames(3);
    mixed[253] = mixed[253].replace(" energy=", " free_energy=");
    let f2 = write(&dir, "mixed.xyz", &mixed);
    let o = fit(&f2, &out, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("mixed.xyz:253: frame 2 has no energy key 'energy' (1 of its 3 frames lack it)")
            && e.contains("use --energy-key free_energy"),
        "{e}"
    );

    // The validation set is held to the same rule.
    let good = write(&dir, "good.xyz", &li_frames(3));
    let o = fit(&good, &out, &["--valid", f.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ref.xyz:1: frame 1 has no energy key"));

    // With the right key the fit equals the fit of the original file.
    let o = fit(&f, &out, &["--energy-key", "REF_energy"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = fit(&good, &dir.join("good.aceuq"), &[]);
    assert!(want.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&want.stdout)
    );

    // Asked for explicitly, a force-only fit: no energy errors reported, E0 = 0.
    let o = fit(&f, &out, &["--force-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = table.lines().find(|l| l.starts_with("train")).unwrap();
    assert_eq!(row.split_whitespace().nth(3), Some("-"), "{table}");
    let info = aceuq(&["info", "--model", out.to_str().unwrap()]);
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("E0 = 0.000000 eV"), "{info}");

    // --force-only and an energy weight contradict each other.
    let o = fit(&f, &out, &["--force-only", "--energy-weight", "1"]);
    assert!(!o.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The forces property: a misnamed one is an error listing the per-atom properties present,
/// unless the fit is energy-only; calibrate, which fits cutoffs to force errors, refuses it too.
#[test]
fn missing_forces_property_is_an_error_listing_the_per_atom_properties() {
    let dir = tmpdir("forceskey");
    let renamed: Vec<String> = li_frames(3)
        .into_iter()
        .map(|l| l.replace(":forces:R:3", ":REF_forces:R:3"))
        .collect();
    let f = write(&dir, "reff.xyz", &renamed);
    let out = dir.join("m.aceuq");
    let o = fit(&f, &out, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("reff.xyz:1: frame 1 has no per-atom forces property 'forces'")
            && e.contains("are REF_forces:R:3")
            && e.contains("use --forces-key REF_forces")
            && e.contains("--energy-only"),
        "{e}"
    );
    let o = fit(&f, &out, &["--forces-key", "REF_forces", "--active-set"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = calibrate(&out, &f, "1000", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("use --forces-key REF_forces"),
        "{}",
        stderr(&o)
    );
    let o = fit(&f, &out, &["--energy-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21.3: 250 atoms in a 1 Å cube ran a fit to 2.9 GB and more (a neighbour list of
/// ~1.7e5 neighbours per atom). It is refused when the file is read, naming the frame and the
/// volume per atom. The fit and eval run under a 1 GiB address-space limit, which the old code
/// could not stay within.
#[test]
fn a_cell_denser_than_matter_is_refused_before_the_neighbour_list() {
    let dir = tmpdir("dense");
    let good = write(&dir, "good.xyz", &li_frames(2));
    let model = dir.join("m.aceuq");
    let o = fit(&good, &model, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut lines = li_frames(2);
    let (head, rest) = lines[253].split_once("Properties=").unwrap();
    assert!(head.starts_with("Lattice="));
    lines[253] = format!("Lattice=\"1.0 0.0 0.0 0.0 1.0 0.0 0.0 0.0 1.0\" Properties={rest}");
    let bad = write(&dir, "cube.xyz", &lines);
    let limited = |args: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 1048576 && exec '{}' {args}",
                env!("CARGO_BIN_EXE_aceuq")
            ))
            .output()
            .unwrap()
    };
    let t0 = std::time::Instant::now();
    for o in [
        limited(&format!(
            "fit --train '{}' --species Li --nmax 4,2 --lmax 0,1 --threads 1 --out '{}'",
            bad.display(),
            dir.join("x.aceuq").display()
        )),
        limited(&format!(
            "eval --model '{}' --data '{}' --threads 1",
            model.display(),
            bad.display()
        )),
    ] {
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("cube.xyz:254: frame 2: the periodic cell holds 250 atoms in 1.0000 Å^3")
                && e.contains("0.0040 Å^3 per atom"),
            "{e}"
        );
    }
    assert!(t0.elapsed().as_secs() < 60);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21.4: x = 1e300 was reported as "atoms 4 and 4 are at the same position". It is an
/// error of its own, naming the atom once, its line and its position.
#[test]
fn a_huge_coordinate_is_its_own_error_naming_the_atom_once() {
    let dir = tmpdir("farx");
    let good = write(&dir, "good.xyz", &li_frames(2));
    let model = dir.join("m.aceuq");
    let o = fit(&good, &model, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut lines = li_frames(2);
    // Frame 1, atom 4 (line 6): x.
    set_column(&mut lines, 5, 1, "1e300");
    let bad = write(&dir, "farx.xyz", &lines);
    for o in [eval(&model, &bad), fit(&bad, &dir.join("x.aceuq"), &[])] {
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("farx.xyz:6: frame 1: atom 4 is at (1e300,") && e.contains("beyond 1e7 Å"),
            "{e}"
        );
        assert!(!e.contains("atoms 4 and 4"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A NaN coordinate is named as such (it read as "beyond 1e7 Å from the origin"), and a frame
/// of 0 atoms that carries an energy is refused (its E / 0 ruined every energy error of `eval`
/// and `fit`); an empty frame without labels still reads.
#[test]
fn a_nan_position_and_an_empty_labelled_frame_are_named() {
    let dir = tmpdir("nan_empty");
    let good = write(&dir, "good.xyz", &li_frames(2));
    let model = dir.join("m.aceuq");
    let o = fit(&good, &model, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Structures built in memory (the Python calculator's path) are checked by the same limits.
    let mut s = aceuq::io::extxyz::read_file(&good, &Default::default()).unwrap()[0].clone();
    s.positions[3][1] = f64::NAN;
    let e = s
        .limits_problem()
        .expect("a NaN position is a problem")
        .message;
    assert!(
        e.contains("atom 4 is at (") && e.contains("must be a finite number"),
        "{e}"
    );
    assert!(!e.contains("beyond 1e7"), "{e}");
    let mut lines = li_frames(2);
    lines.extend(["0".to_string(), "energy=-428.86 pbc=\"F F F\"".to_string()]);
    let empty = write(&dir, "empty.xyz", &lines);
    for o in [eval(&model, &empty), fit(&empty, &dir.join("x.aceuq"), &[])] {
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("frame 3: the frame has 0 atoms but a reference energy"),
            "{e}"
        );
    }
    let lines = ["0", "pbc=\"F F F\""].map(String::from).to_vec();
    let unlabelled = write(&dir, "nolabel.xyz", &lines);
    let frames = aceuq::io::extxyz::read_file(&unlabelled, &Default::default()).unwrap();
    assert!(frames.len() == 1 && frames[0].is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sampling spread end to end: `calibrate` stores how many calibration values lie above each
/// cutoff and prints the spread line; `check-cutoffs` on the calibration frames themselves counts
/// exactly those exceedances (about 20 of the 1000 atoms at 1 in 50), which its sampling
/// probabilities must not call improbable (a stored count that disagreed with the data's would
/// be listed).
#[test]
fn calibrate_and_check_report_the_sampling_spread() {
    let dir = tmpdir("spread");
    let f = write(&dir, "li.xyz", &li_frames(4));
    let model = dir.join("m.aceuq");
    let o = fit(&f, &model, &["--active-set"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cal = dir.join("c.aceuq");
    let o = calibrate(&model, &f, "50", &["--out", cal.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Calibrated on its own training file: said.
    assert!(
        stderr(&o).contains("li.xyz: the model was fitted to this file"),
        "{}",
        stderr(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("sampling spread: ") && out.contains("over the 1 entries"),
        "{out}"
    );
    let o = aceuq(&[
        "check-cutoffs",
        "--model",
        cal.to_str().unwrap(),
        "--data",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("sampling P (u_c / e_c)"), "{out}");
    let listed: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Counts the calibration's sampling"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(listed.len(), 1, "{out}");
    assert!(
        listed[0].split_whitespace().all(|t| t == "-"),
        "a count of the calibration's own data called improbable:\n{out}"
    );
    // The frame probabilities against outcomes: gamma's frame rule over the 4 frames.
    let all: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Frame probabilities against outcomes"))
        .filter(|l| l.split_whitespace().take(2).eq(["gamma", "all"]))
        .collect();
    assert_eq!(all.len(), 1, "{out}");
    assert_eq!(all[0].split_whitespace().nth(2), Some("4"), "{out}");
    // Its observed count is the halts table's unstable frames for gamma.
    let halts_all = out
        .lines()
        .skip_while(|l| !l.starts_with("Upper cutoffs per frame"))
        .find(|l| l.split_whitespace().take(2).eq(["gamma", "all"]))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        all[0].split_whitespace().nth(4),
        halts_all.split_whitespace().nth(4),
        "{out}"
    );
    // Both use forces only: an energy they do not use cannot stop them (the same output as
    // with the energies intact), and they take no --energy-key.
    let bad_e: Vec<String> = li_frames(4)
        .into_iter()
        .map(|l| match l.find(" energy=") {
            Some(i) => {
                let end = l[i + 1..].find(' ').map_or(l.len(), |j| i + 1 + j);
                format!("{} energy=oops{}", &l[..i], &l[end..])
            }
            None => l,
        })
        .collect();
    assert!(bad_e.iter().any(|l| l.contains("energy=oops")));
    let g = write(&dir, "bad_energy.xyz", &bad_e);
    let o2 = aceuq(&[
        "check-cutoffs",
        "--model",
        cal.to_str().unwrap(),
        "--data",
        g.to_str().unwrap(),
    ]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(
        String::from_utf8_lossy(&o2.stdout),
        out.replace("li.xyz", "bad_energy.xyz")
    );
    let cal2 = dir.join("c2.aceuq");
    let o = calibrate(&model, &g, "50", &["--out", cal2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An --energy-key from older scripts is accepted, and said to be ignored.
    let o = aceuq(&[
        "check-cutoffs",
        "--model",
        cal.to_str().unwrap(),
        "--data",
        g.to_str().unwrap(),
        "--energy-key",
        "x",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stderr(&o)
            .matches("--energy-key x is ignored: this command uses only the reference forces")
            .count(),
        1,
        "{}",
        stderr(&o)
    );
    // Validation data too small for any entry (2 atoms): an error, and the calibrated model
    // is not rewritten (its cutoffs and halting rule stay as they were).
    let one = li_frames(1);
    let tiny = write(
        &dir,
        "tiny.xyz",
        &[
            "2".to_string(),
            one[1].clone(),
            one[2].clone(),
            one[3].clone(),
        ],
    );
    let before = std::fs::read(&cal).unwrap();
    let o = calibrate(&cal, &tiny, "50", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nothing was calibrated: no species has 10 or more validation atoms"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&cal).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A frame given twice under two file names passes the path checks; fit and calibrate warn,
/// naming the count and the first copy, and still run. Frames that differ (the rest of the
/// file, a frame moved by one bit) draw no warning.
#[test]
fn repeated_frames_are_named() {
    let dir = tmpdir("repeated");
    let frames = li_frames(4);
    let train = write(&dir, "train.xyz", &frames[..3 * 252]);
    // valid: frame 4 of the file, then a copy of training frame 2.
    let mut valid_lines = frames[3 * 252..].to_vec();
    valid_lines.extend_from_slice(&frames[252..2 * 252]);
    let valid = write(&dir, "valid.xyz", &valid_lines);
    let model = dir.join("m.aceuq");
    let o = fit(
        &train,
        &model,
        &["--valid", valid.to_str().unwrap(), "--active-set"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("1 copy of frames given earlier")
            && e.contains("valid.xyz, frame 2 (line 253) repeats --train")
            && e.contains("train.xyz, frame 2 (line 253)")
            && e.contains("validated on its own training data")
            && !e.contains("weighs twice"),
        "{e}"
    );
    // A frame twice in --valid alone: named as a validation frame, not a training frame.
    let mut twice = frames[3 * 252..].to_vec();
    twice.extend_from_slice(&frames[3 * 252..]);
    let twice = write(&dir, "twice.xyz", &twice);
    let o = fit(
        &train,
        &model,
        &["--valid", twice.to_str().unwrap(), "--active-set"],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let warning = e
        .lines()
        .find(|l| l.contains("given earlier"))
        .unwrap_or_default();
    assert!(
        warning.contains("1 copy of frames given earlier")
            && warning.contains("twice.xyz, frame 2 (line 253) repeats --valid ")
            && warning.contains("validation frame given twice")
            && !warning.contains("training"),
        "{e}"
    );
    // The same file's frames once each: no warning.
    let cal = dir.join("c.aceuq");
    let o = calibrate(&model, &train, "50", &["--out", cal.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("given earlier"), "{}", stderr(&o));
    // A copy whose one coordinate is one bit away is another frame.
    let mut moved = frames[..252].to_vec();
    let x: f64 = moved[2].split_whitespace().nth(1).unwrap().parse().unwrap();
    let next = f64::from_bits(x.to_bits() + 1);
    assert_ne!(next, x);
    set_column(&mut moved, 2, 1, &format!("{next:?}"));
    let moved = write(&dir, "moved.xyz", &moved);
    let o = calibrate(
        &model,
        &train,
        "50",
        &[
            "--valid",
            moved.to_str().unwrap(),
            "--out",
            cal.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("given earlier"), "{}", stderr(&o));
    // The training frames again in a second file, and once more as --high: every copy counted.
    let copy = write(&dir, "copy.xyz", &frames[..3 * 252]);
    let copy2 = write(&dir, "copy2.xyz", &frames[..3 * 252]);
    let o = calibrate(
        &model,
        &train,
        "50",
        &[
            "--valid",
            copy.to_str().unwrap(),
            "--high",
            copy2.to_str().unwrap(),
            "--out",
            cal.to_str().unwrap(),
        ],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("6 copies of frames given earlier")
            && e.contains("--valid ")
            && e.contains("copy.xyz, frame 1 (line 1) repeats --valid ")
            && e.contains("counts its atoms again"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `activeset` rebuilds the sets whose grades gamma's cutoffs were calibrated on: the stored
/// gamma cutoffs (which would halt and dump at the old grade's levels) are dropped with a note
/// saying to recalibrate, and `calibrate` then stores new ones.
#[test]
fn activeset_drops_the_gamma_cutoffs_of_the_sets_it_replaces() {
    let dir = tmpdir("activeset_drop");
    let f = write(&dir, "li.xyz", &li_frames(4));
    let model = dir.join("m.aceuq");
    let o = fit(&f, &model, &["--active-set"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = calibrate(&model, &f, "50", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let gamma_entries = |m: &Path| {
        let pot = aceuq::Potential::load(m).unwrap();
        pot.uq
            .calibration
            .iter()
            .filter(|c| c.method == "gamma")
            .count()
    };
    assert_eq!(gamma_entries(&model), 1);
    let novel = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/li/novel.xyz");
    let rebuilt = dir.join("r.aceuq");
    let o = aceuq(&[
        "activeset",
        "--model",
        model.to_str().unwrap(),
        "--data",
        f.to_str().unwrap(),
        novel.to_str().unwrap(),
        "--out",
        rebuilt.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("note: dropped 1 gamma and gamma_local cutoff entries")
            && e.contains("rerun `aceuq calibrate`"),
        "{e}"
    );
    assert_eq!(gamma_entries(&rebuilt), 0);
    let o = calibrate(&rebuilt, &f, "50", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(gamma_entries(&rebuilt), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Output folders are checked before any work, species lists are trimmed and checked, and a
/// species the training data lack is refused (it got E0 = 0 and untrained coefficients).
#[test]
fn outputs_and_species_lists_are_checked_before_the_work() {
    let dir = tmpdir("lists");
    let f = write(&dir, "li.xyz", &li_frames(2));
    let missing = dir.join("nodir/m.aceuq");
    let o = fit(&f, &missing, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("the folder") && e.contains("does not exist"),
        "{e}"
    );
    // A cutoff shorter than every distance: nothing to fit (it panicked building the active
    // set, and wrote a model of zero forces without one).
    let o = fit(
        &f,
        &dir.join("short.aceuq"),
        &["--cutoff", "1.0", "--active-set"],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("no Li atom of the training data has a neighbour within the cutoff (1 Å)")
            && !e.contains("panicked"),
        "{e}"
    );
    assert!(!dir.join("short.aceuq").exists());
    // More k-means clusters than the atoms support: before the fit, not after it.
    let o = fit(&f, &dir.join("k.aceuq"), &["--clusters", "500"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--clusters 500: K = 500 k-means clusters need at least K × min_cluster_atoms")
            && e.contains("use K <= "),
        "{e}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "fitted first"
    );
    // A folder that takes no file (Linux's /proc), before the work too.
    if Path::new("/proc/self").exists() {
        let o = fit(&f, Path::new("/proc/m.aceuq"), &[]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("--out /proc/m.aceuq: cannot create a file in the folder /proc"),
            "{e}"
        );
        assert!(!e.contains("fitting") && !e.contains("RMSE"), "{e}");
    }
    let model = dir.join("m.aceuq");
    let o = aceuq(&[
        "fit",
        "--train",
        f.to_str().unwrap(),
        "--species",
        "Li,Na",
        "--nmax",
        "4,2",
        "--lmax",
        "0,1",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("the training data hold no atom of Na"), "{e}");
    assert!(!model.exists());
    let data = dir.join("x.data");
    let o = aceuq(&[
        "to-lammps",
        "--data",
        f.to_str().unwrap(),
        "--species",
        "Li,li",
        "--out",
        data.to_str().unwrap(),
    ]);
    // Species lists read element symbols in any case as the data reader does ("li" is Li).
    assert!(!o.status.success() && stderr(&o).contains("--species names Li twice"));
    // Every element gets its standard mass (In had 1.0 for LAMMPS to integrate with).
    let inp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inp/test.xyz");
    let o = aceuq(&[
        "to-lammps",
        "--data",
        inp.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&data).unwrap();
    assert!(
        text.contains("1 114.82  # In") && text.contains("2 30.974  # P"),
        "{text}"
    );
    // So are a method and a figure format named twice (before any work: no model needed).
    let o = calibrate(
        &dir.join("none.aceuq"),
        &f,
        "50",
        &["--methods", "gamma,gp,gamma"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("--methods names gamma twice"),
        "{}",
        stderr(&o)
    );
    let o = aceuq(&[
        "report",
        "--model",
        "none.aceuq",
        "--data",
        f.to_str().unwrap(),
        "--out",
        dir.join("rep").to_str().unwrap(),
        "--formats",
        "png,png",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--formats names png twice"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("rep").exists());
    // " Li" (after a comma and a space) is Li.
    let o = aceuq(&[
        "to-lammps",
        "--data",
        f.to_str().unwrap(),
        "--species",
        " Li",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
