//! `fix ace/uq/watch` as users drive it beyond a single `run`: what a halt means for the rest of
//! the input, rerun, minimize, r-RESPA, units, group watches and hybrid `NULL` types (the frame
//! is the whole structure), a dump path that cannot be written, lone atoms, cutoffs given in
//! the wrong order, thermo output at any interval. Each case runs the real `lmp`, on 1 and 2
//! MPI ranks where ranks matter.

mod common;
use common::*;
use std::sync::OnceLock;

const SUITE: &str = "lammps_watch_use";

/// A Li model with a global active set (gamma) and calibrated gamma cutoffs.
fn model() -> &'static aceuq::Potential {
    static M: OnceLock<aceuq::Potential> = OnceLock::new();
    M.get_or_init(|| {
        let train = frames("tests/data/li/train.xyz");
        let valid = frames("tests/data/li/valid.xyz");
        let mut m = aceuq::Potential::new(fit_model("tests/data/li/train.xyz", 12, &["Li"]));
        let cfg = aceuq::uq::UqConfig {
            active_set: true,
            ..Default::default()
        };
        aceuq::uq::build(&m.model, &mut m.uq, &train[..12], &valid, &cfg, false)
            .expect("active set");
        let e: Vec<f64> = aceuq::uq::force_errors(&m.model, &valid).unwrap().concat();
        let u: Vec<f64> = m
            .per_atom(&valid, aceuq::uq::Method::Gamma)
            .unwrap()
            .concat();
        let opts = aceuq::stats::cutoff::CalibrationOptions::new(100_000);
        m.uq.calibration
            .push(aceuq::stats::cutoff::calibrate("Li", "gamma", &e, &u, &opts).unwrap());
        m
    })
}

/// Largest gamma of the first test frame (what the watch sees at step 0).
fn gamma0() -> f64 {
    let frame = &frames("tests/data/li/test.xyz")[0];
    let g = model()
        .per_atom(std::slice::from_ref(frame), aceuq::uq::Method::Gamma)
        .unwrap();
    g[0].iter().cloned().fold(0.0, f64::max)
}

/// A folder with the model and the first Li test frame as `data.lmp`.
fn case(name: &str) -> std::path::PathBuf {
    let dir = workdir(SUITE, name);
    save_model(model(), &dir, "model.aceuq");
    write_data(
        &frames("tests/data/li/test.xyz")[0],
        &["Li"],
        &dir,
        "data.lmp",
    );
    dir
}

const HEAD: &str = "plugin load ${plugin}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq Li
";

/// `PRINTED <key> <value>` lines written by `print` in an input.
fn printed(r: &Run, key: &str) -> Vec<f64> {
    printed_rows(r, key)
        .into_iter()
        .filter_map(|row| row.first().copied())
        .collect()
}

/// The numbers of every `PRINTED <key> <v1> <v2> ...` line, one row per line.
fn printed_rows(r: &Run, key: &str) -> Vec<Vec<f64>> {
    r.output
        .lines()
        .filter_map(|l| l.strip_prefix("PRINTED "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.filter_map(|v| v.parse().ok()).collect())
        })
        .collect()
}

/// The numbers of the first `PRINTED <key> ...` line.
fn printed_row(r: &Run, key: &str) -> Vec<f64> {
    printed_rows(r, key).into_iter().next().unwrap_or_default()
}

fn candidates(dir: &std::path::Path) -> Vec<aceuq::Structure> {
    aceuq::io::extxyz::read_file(dir.join("candidates.xyz"), &Default::default())
        .expect("candidates parse")
}

fn real_column<'a>(s: &'a aceuq::Structure, name: &str) -> &'a [f64] {
    match s.array(name) {
        Some(aceuq::structure::PropData::Real { data, .. }) => data,
        other => panic!("{name}: {other:?}"),
    }
}

fn np_arg(np: u32) -> Option<u32> {
    (np > 1).then_some(np)
}

/// A soft halt ends its run only: the input goes on (exit 0), f_watch[5] says it halted, a run
/// from the halted configuration stops again at its first step, and after `unfix` runs proceed.
#[test]
fn a_soft_halt_ends_its_run_and_later_runs_proceed() {
    let Some(s) = setup("a_soft_halt_ends_its_run_and_later_runs_proceed") else {
        return;
    };
    let upper = 1.3 * gamma0();
    for np in [1, 2] {
        let dir = case(&format!("soft_halt_np{np}"));
        let input = format!(
            "{HEAD}velocity all create 3000 4928459 mom yes rot yes dist gaussian loop geom
timestep 0.001
fix nve all nve
fix watch all ace/uq/watch 5 quantity gamma dump candidates.xyz lower 0 upper {upper} halt yes
thermo 1000
run 5000
print \"PRINTED halted $(f_watch[5])\"
print \"PRINTED halt_step $(f_watch[6])\"
print \"PRINTED step $(step)\"
run 100
print \"PRINTED step $(step)\"
run 10 pre no
print \"PRINTED pre_no_step $(step)\"
print \"PRINTED pre_no_halted $(f_watch[5])\"
reset_timestep $(step+2)
run 100
print \"PRINTED reset_step $(step)\"
unfix watch
run 20
print \"PRINTED step $(step)\"
minimize 0 0 5 50
print \"PRINTED step $(step)\"
"
        );
        let r = run_lammps_in(&s, &dir, &input, np_arg(np), None);
        r.assert_ok(&format!("soft halt np {np}"));
        assert_eq!(printed(&r, "halted"), vec![1.0], "np {np}: {}", r.output);
        let halt = printed(&r, "halt_step")[0];
        let steps = printed(&r, "step");
        assert!(halt > 0.0 && halt < 5000.0, "np {np}: halted at {halt}");
        assert_eq!(halt % 5.0, 0.0);
        // run 5000 stopped at the halt; run 100 from the same configuration did not move;
        // without the watch, run 20 and minimize (5 iterations at most) did.
        assert_eq!(steps[0], halt, "np {np}");
        assert_eq!(steps[1], halt, "np {np}: {}", r.output);
        // `run ... pre no` has no setup: it goes on to the next check (5 steps on), which
        // halts again; its thermo output needs the energies of the halted step (tallied).
        let pre_no = printed(&r, "pre_no_step")[0];
        assert!(pre_no > halt && pre_no <= halt + 10.0, "np {np}: {pre_no}");
        assert_eq!(printed(&r, "pre_no_halted"), vec![1.0], "np {np}");
        // A run from that halted configuration whose first step is no checked step
        // (reset_timestep to 2 steps on) stops too.
        assert_eq!(
            printed(&r, "reset_step"),
            vec![pre_no + 2.0],
            "np {np}: {}",
            r.output
        );
        assert_eq!(steps[2], pre_no + 22.0, "np {np}");
        assert!(
            steps[3] > steps[2],
            "np {np}: minimize did nothing: {steps:?}"
        );
        // Said once per halted configuration (run 100, the reset run), also on 2 ranks.
        assert_eq!(
            r.count("is the configuration that halted"),
            2,
            "np {np}: {}",
            r.output
        );
        assert_eq!(r.count("halting at step"), 2, "np {np}: {}", r.output);
        // Two halts (the run, and the `pre no` run's next check), each written once.
        let c = candidates(&dir);
        let halts = c
            .iter()
            .filter(|f| f.config_type.as_deref() == Some("halt"))
            .count();
        assert_eq!(halts, 2, "np {np}");
    }
}

/// rerun with halt yes reports the first frame above upper once and stops judging (a rerun
/// cannot be cut short); halt no judges every frame. Both finish.
#[test]
fn rerun_halts_once_and_halt_no_checks_every_frame() {
    let Some(s) = setup("rerun_halts_once_and_halt_no_checks_every_frame") else {
        return;
    };
    let upper = 1.3 * gamma0();
    let dir = case("rerun");
    let input = format!(
        "{HEAD}velocity all create 3000 4928459 mom yes rot yes dist gaussian loop geom
timestep 0.001
fix nve all nve
dump traj all custom 100 traj.dump id type x y z
run 3000
undump traj
unfix nve
fix scan all ace/uq/watch 100 quantity gamma upper none halt no
fix watch all ace/uq/watch 100 quantity gamma dump candidates.xyz lower {upper} upper {upper} halt yes
rerun traj.dump dump x y z box yes
print \"PRINTED scanned $(f_scan[4])\"
print \"PRINTED watched $(f_watch[4])\"
print \"PRINTED halted $(f_watch[5])\"
"
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("rerun");
    assert_eq!(printed(&r, "scanned"), vec![31.0], "{}", r.output);
    let watched = printed(&r, "watched")[0];
    assert!((1.0..31.0).contains(&watched), "{watched}: {}", r.output);
    assert_eq!(r.count("halting at step"), 1, "{}", r.output);
    assert_eq!(r.count("a rerun cannot be cut short"), 1);
    assert_eq!(printed(&r, "halted"), vec![1.0]);
    // Two watches: their log lines name the fix ID.
    assert_eq!(
        r.count("fix ace/uq/watch watch: halting at step"),
        1,
        "{}",
        r.output
    );
    assert!(
        r.output
            .contains("fix ace/uq/watch scan: 31 checks of gamma"),
        "{}",
        r.output
    );
    assert_eq!(candidates(&dir).len(), 1);

    // The LAMMPS dump reads as structures: its first frame is the data file's structure, so
    // its gamma is the watch's at step 0 (to the dump's 6 significant digits).
    let d = aceuq::io::lammps_dump::read_dump(&dir.join("traj.dump"), Some(&["Li".to_string()]))
        .expect("traj.dump");
    assert_eq!(d.frames.len(), 31);
    let g = model()
        .per_atom(&d.frames[..1], aceuq::uq::Method::Gamma)
        .unwrap();
    let g0 = g[0].iter().cloned().fold(0.0, f64::max);
    assert!((g0 / gamma0() - 1.0).abs() < 1e-3, "{g0} vs {}", gamma0());
    // `aceuq select` takes the dump as it is (types -> the model's species), and leaves the
    // watch's halt frame out unless asked.
    let select = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"))
            .current_dir(&dir)
            .args([
                "select",
                "--model",
                "model.aceuq",
                "--max",
                "2",
                "--out",
                "chosen.xyz",
            ])
            .args(args)
            .output()
            .expect("aceuq select")
    };
    let o = select(&["--candidates", "traj.dump"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("atom types read as Li"), "{err}");
    let chosen = aceuq::io::extxyz::read_file(dir.join("chosen.xyz"), &Default::default()).unwrap();
    assert!(!chosen.is_empty() && chosen.len() <= 2);
    assert!(chosen.iter().all(|c| c.info.contains_key("timestep")));
    let o = select(&["--candidates", "candidates.xyz"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("left out 1 frame(s) with config_type=halt"),
        "{err}"
    );
    let o = select(&["--candidates", "candidates.xyz", "--include-halted"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The watch works in minimize (checks every N iterations, halts it) and under r-RESPA.
#[test]
fn minimize_and_respa_are_watched() {
    let Some(s) = setup("minimize_and_respa_are_watched") else {
        return;
    };
    let g0 = gamma0();
    for np in [1, 2] {
        let dir = case(&format!("min_np{np}"));
        let input = format!(
            "{HEAD}displace_atoms all random 0.1 0.1 0.1 4711 units box
fix watch all ace/uq/watch 2 quantity gamma upper none halt no
minimize 0 0 20 200
print \"PRINTED checks $(f_watch[4])\"
print \"PRINTED max $(f_watch[1])\"
unfix watch
fix stop all ace/uq/watch 1 quantity gamma lower 0 upper {} halt yes
minimize 0 0 20 200
print \"PRINTED halted $(f_stop[5])\"
print \"PRINTED step $(step)\"
unfix stop
reset_timestep 0
run_style respa 2 2
fix nve all nve
fix resp all ace/uq/watch 5 quantity gamma upper none halt no
run 20
print \"PRINTED respa_checks $(f_resp[4])\"
",
            0.5 * g0
        );
        let r = run_lammps_in(&s, &dir, &input, np_arg(np), None);
        r.assert_ok(&format!("minimize np {np}"));
        // At least the setup and one checked iteration; the value is the gamma of a real
        // configuration (positive).
        let checks = printed(&r, "checks")[0];
        assert!(checks >= 2.0, "np {np}: {checks} checks\n{}", r.output);
        assert!(printed(&r, "max")[0] > 0.0);
        // The second minimize halts at its first evaluation: no iteration is taken.
        assert_eq!(printed(&r, "halted"), vec![1.0], "np {np}");
        let steps = printed(&r, "step");
        assert!(r.output.contains("halting at step"), "np {np}");
        // r-RESPA: steps 0, 5, 10, 15, 20.
        assert_eq!(
            printed(&r, "respa_checks"),
            vec![5.0],
            "np {np}: {}",
            r.output
        );
        let first_min_end = r
            .output
            .lines()
            .filter(|l| l.contains("Stopping criterion"))
            .count();
        assert!(first_min_end >= 1, "{steps:?}");
    }
}

/// The watch judges the structure the forces were computed on, and judges it again for another
/// model: a watch defined after `fix deform ... remap x` (which changes the box and the
/// positions at the end of the step) writes the same frames and values as one defined before
/// it (the box of the forces, not the deformed one, which it then judges in a later `run 0`);
/// after a halt, `pair_coeff` loading a model again makes the same configuration a new check
/// instead of the configuration that halted.
#[test]
fn the_watch_judges_the_forces_structure_and_each_model() {
    let Some(s) = setup("the_watch_judges_the_forces_structure_and_each_model") else {
        return;
    };
    let g0 = gamma0();
    for np in [1, 2] {
        let dir = case(&format!("deform_np{np}"));
        let input = format!(
            "{HEAD}velocity all create 600 1
fix nve all nve
fix before all ace/uq/watch 10 quantity gamma lower 0 upper none halt no dump before.xyz
fix d all deform 10 x final 0 25 remap x
fix after all ace/uq/watch 10 quantity gamma lower 0 upper none halt no dump after.xyz
run 10
unfix d
run 0
print \"PRINTED checks $(f_before[4]) $(f_after[4])\"
print \"PRINTED max $(f_before[1]) $(f_after[1])\"
unfix before
unfix after
fix stop all ace/uq/watch 1 quantity gamma lower 0 upper {} halt yes
run 10
run 10
pair_coeff * * model.aceuq Li
run 10
print \"PRINTED stop $(f_stop[4]) $(f_stop[5]) $(step)\"
",
            0.5 * g0
        );
        let r = run_lammps_in(&s, &dir, &input, np_arg(np), None);
        let what = format!("deform np {np}");
        r.assert_ok(&what);
        let read = |f: &str| {
            aceuq::io::extxyz::read_file(dir.join(f), &Default::default()).expect("frames")
        };
        let (before, after) = (read("before.xyz"), read("after.xyz"));
        // Steps 0 and 10 in the run, and the deformed box in `run 0`.
        assert_eq!(before.len(), 3, "{what}");
        assert_eq!(after.len(), 3, "{what}");
        let lx = |f: &aceuq::Structure| f.cell.unwrap()[0][0];
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(lx(b), lx(a), "{what}");
            assert_eq!(b.positions, a.positions, "{what}");
            assert_eq!(real_column(b, "gamma"), real_column(a, "gamma"), "{what}");
        }
        assert!(
            (lx(&after[1]) - 18.59).abs() < 0.01,
            "{what}: {}",
            lx(&after[1])
        );
        assert!(
            (lx(&after[2]) - 25.0).abs() < 1e-9,
            "{what}: {}",
            lx(&after[2])
        );
        let checks = printed_row(&r, "checks");
        assert_eq!(checks, vec![3.0, 3.0], "{what}");
        let max = printed_row(&r, "max");
        assert_eq!(max[0], max[1], "{what}");
        // The halt at step 10 stops the next run at once, and the run after pair_coeff checks
        // the same configuration again (and halts again: the same model).
        assert_eq!(printed_row(&r, "stop"), vec![2.0, 1.0, 10.0], "{what}");
        assert_eq!(r.count("is the configuration that halted"), 1, "{what}");
        assert_eq!(r.count("halting at step 10"), 2, "{what}: {}", r.output);
    }
    // A watch with nothing to watch, and an empty dump name, are refused before any step.
    for (name, line, needle) in [
        (
            "compute_no",
            "pair_modify compute no\nfix w all ace/uq/watch 1",
            "pair ace/uq computes nothing (pair_modify [pair ace/uq] compute no)",
        ),
        (
            "empty_dump",
            "fix w all ace/uq/watch 1 dump \"\"",
            "dump needs a file name, got an empty one",
        ),
    ] {
        let dir = case(name);
        let r = run_lammps_in(&s, &dir, &format!("{HEAD}{line}\nrun 1\n"), None, None);
        r.assert_error(needle, name);
    }
}

/// Units other than metal are refused (the model is in eV and Å).
#[test]
fn units_other_than_metal_are_refused() {
    let Some(s) = setup("units_other_than_metal_are_refused") else {
        return;
    };
    let dir = case("units_real");
    let input = HEAD.replace("units metal", "units real") + "run 0\n";
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error("pair ace/uq needs 'units metal'", "units real");
    r.assert_contains("got 'units real'", "units real");
}

/// A watch on a group, with hybrid NULL-type atoms, writes the whole structure: every atom, the
/// elements of NULL types from their masses (or `elements`), and a per-atom `watched` flag.
#[test]
fn group_and_null_type_frames_hold_the_whole_structure() {
    let Some(s) = setup("group_and_null_type_frames_hold_the_whole_structure") else {
        return;
    };
    for np in [1, 2] {
        let dir = case(&format!("group_null_np{np}"));
        // Atoms 1-10 become type 2 (helium by mass), handled by lj/cut only.
        let input = "plugin load ${plugin}
units metal
boundary p p p
atom_style atomic
read_data data.lmp extra/atom/types 1
mass 2 4.0026
set atom 1*10 type 2
group low id 11:100
pair_style hybrid/overlay ace/uq lj/cut 3.0
pair_coeff * * ace/uq model.aceuq Li NULL
pair_coeff * * lj/cut 0.001 1.5
fix watch low ace/uq/watch 1 quantity gamma dump candidates.xyz lower 0 upper none halt no
run 0
unfix watch
fix named low ace/uq/watch 1 quantity gamma dump named.xyz lower 0 upper none halt no elements Li Ne
run 0
";
        let r = run_lammps_in(&s, &dir, input, np_arg(np), None);
        r.assert_ok(&format!("group/NULL np {np}"));
        let c = candidates(&dir);
        assert_eq!(c.len(), 1, "np {np}");
        let f = &c[0];
        assert_eq!(f.len(), 250, "np {np}: the frame must hold every atom");
        let ids = match f.array("id") {
            Some(aceuq::structure::PropData::Int { data, .. }) => data.clone(),
            other => panic!("id: {other:?}"),
        };
        let watched = real_column(f, "watched");
        for (k, &id) in ids.iter().enumerate() {
            let sym = f.symbols[k].as_str();
            assert_eq!(sym, if id <= 10 { "He" } else { "Li" }, "np {np} atom {id}");
            let want = if (11..=100).contains(&id) { 1.0 } else { 0.0 };
            assert_eq!(watched[k], want, "np {np} atom {id}");
        }
        let named = aceuq::io::extxyz::read_file(dir.join("named.xyz"), &Default::default())
            .expect("named.xyz");
        assert_eq!(named[0].symbols.iter().filter(|x| *x == "Ne").count(), 10);
    }
    // A NULL type whose mass is no element, with a dump, is an error naming the type.
    let dir = case("null_unknown_mass");
    let input = "plugin load ${plugin}
units metal
boundary p p p
atom_style atomic
read_data data.lmp extra/atom/types 1
mass 2 5.5
set atom 1*10 type 2
pair_style hybrid/overlay ace/uq lj/cut 3.0
pair_coeff * * ace/uq model.aceuq Li NULL
pair_coeff * * lj/cut 0.001 1.5
fix watch all ace/uq/watch 1 quantity gamma dump candidates.xyz lower 0 upper none halt no
run 0
";
    let r = run_lammps_in(&s, &dir, input, None, None);
    r.assert_error("type 2 (mass 5.5 matches no element)", "unknown element");
    r.assert_contains("elements E1 ... E2", "unknown element");
    // A mass within 0.1 u of two elements is not guessed.
    let r = run_lammps_in(
        &s,
        &dir,
        &input.replace("mass 2 5.5", "mass 2 40.0"),
        None,
        None,
    );
    r.assert_error("type 2 (mass 40 could be Ar or Ca)", "ambiguous mass");
    // One element per type, not more.
    let r = run_lammps_in(
        &s,
        &dir,
        &input.replace("halt no\n", "halt no elements Li Ca Mg\n"),
        None,
        None,
    );
    r.assert_error(
        "needs one element per atom type (2 types), got more ('Mg')",
        "elements",
    );
}

/// fix halt ... error soft keeps its meaning (later runs do nothing) when it is defined before
/// the watch; defined after, the watch says that its own halt wins.
#[test]
fn fix_halt_soft_defined_first_keeps_its_meaning() {
    let Some(s) = setup("fix_halt_soft_defined_first_keeps_its_meaning") else {
        return;
    };
    let upper = 1.3 * gamma0();
    let watch = format!("fix watch all ace/uq/watch 5 lower 0 upper {upper} halt yes");
    let halt = "variable s equal step\nfix h all halt 1 v_s == 10 error soft";
    for (first, second, after) in [(halt, watch.as_str(), 10.0), (watch.as_str(), halt, 110.0)] {
        let dir = case(if after == 10.0 {
            "fix_halt_first"
        } else {
            "fix_halt_after"
        });
        let input = format!(
            "{HEAD}velocity all create 3000 4928459 mom yes rot yes dist gaussian loop geom
fix nve all nve
{first}
{second}
run 3000
print \"PRINTED step $(step)\"
unfix watch
run 100
print \"PRINTED step $(step)\"
"
        );
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok("fix halt");
        assert_eq!(printed(&r, "step"), vec![10.0, after], "{}", r.output);
        assert_eq!(
            r.count("is defined after this watch"),
            usize::from(after != 10.0)
        );
    }
}

/// A dump path that cannot be written (or a file whose last frame is incomplete, not by an aceuq
/// append) fails before the first step, on every rank.
#[test]
fn an_unwritable_dump_path_fails_at_init() {
    let Some(s) = setup("an_unwritable_dump_path_fails_at_init") else {
        return;
    };
    for (name, path, needle) in [
        (
            "missing_folder",
            "no/such/folder/c.xyz",
            "folder no/such/folder/ does not exist",
        ),
        ("folder", ".", "it is a folder"),
        // A last frame cut short by someone else: the first candidate would be refused.
        (
            "incomplete",
            "part.xyz",
            "part.xyz:1: the last frame (from line 1 to the end of the file) is incomplete",
        ),
        // No XYZ at all: candidates appended to it could not be read back.
        (
            "notes",
            "notes.xyz",
            "notes.xyz: not an extended XYZ file (its first line is 'hello world'",
        ),
    ] {
        for np in [1, 2] {
            let dir = case(&format!("dump_{name}_np{np}"));
            if name == "incomplete" {
                std::fs::write(
                    dir.join(path),
                    "3\nProperties=species:S:1:pos:R:3\nLi 0.0 0.0 0.0\n",
                )
                .unwrap();
            }
            if name == "notes" {
                std::fs::write(dir.join(path), "hello world\n").unwrap();
            }
            let input = format!(
                "{HEAD}fix watch all ace/uq/watch 10 quantity gamma dump {path} lower 0 upper none
velocity all create 600 1
fix nve all nve
run 100
"
            );
            let r = run_lammps_in(&s, &dir, &input, np_arg(np), None);
            r.assert_error(needle, &format!("{name} np {np}"));
            // Before any step: no thermo row.
            assert!(
                thermo_rows(&r.output).is_empty(),
                "{name} np {np}: {}",
                r.output
            );
        }
    }
}

/// Item by item: a given lower cutoff above the calibrated upper one is refused; thermo every
/// step with a watch every 10 reports the last check; an atom without neighbours is flagged as a
/// candidate (and counted), unless `lone ignore`; the frame's time is a real number at step 0.
#[test]
fn cutoff_order_thermo_interval_lone_atoms_and_time() {
    let Some(s) = setup("cutoff_order_thermo_interval_lone_atoms_and_time") else {
        return;
    };
    let dir = case("lower_above_upper");
    let r = run_lammps_in(
        &s,
        &dir,
        &format!("{HEAD}fix watch all ace/uq/watch 1 quantity gamma lower 1e6 upper auto\nrun 0\n"),
        None,
        None,
    );
    r.assert_error(
        "the lower cutoff 1e+06 is above the upper cutoff",
        "lower > upper",
    );
    // The other way round (a given upper below the calibrated lower) lowers the lower cutoff.
    let r = run_lammps_in(
        &s,
        &dir,
        &format!(
            "{HEAD}fix watch all ace/uq/watch 1 quantity gamma lower auto upper 1e-3 halt no\nrun 0\n"
        ),
        None,
        None,
    );
    r.assert_ok("upper below calibrated lower");
    r.assert_contains("their lower cutoff is set to 0.001", "clamped");

    let dir = case("thermo_every_step");
    let r = run_lammps_in(
        &s,
        &dir,
        &format!(
            "{HEAD}fix watch all ace/uq/watch 10 quantity gamma upper none halt no
velocity all create 600 1
fix nve all nve
thermo_style custom step f_watch[1] f_watch[4]
thermo 1
run 12
"
        ),
        None,
        None,
    );
    r.assert_ok("thermo 1");
    let rows = thermo_rows(&r.output);
    assert_eq!(rows.len(), 13, "{}", r.output);
    // Checks at steps 0 and 10; rows in between repeat the last check.
    assert_eq!(rows[5][2], 1.0);
    assert_eq!(rows[12][2], 2.0);
    assert_eq!(rows[3][1], rows[0][1]);

    for (mode, want_frame) in [("candidate", true), ("ignore", false)] {
        for np in [1, 2] {
            let dir = case(&format!("lone_{mode}_np{np}"));
            // One more atom 10 Å above the periodic liquid, in a box made taller.
            let input = format!(
                "{HEAD}change_box all z final 0 40 boundary p p f units box
create_atoms 1 single 9.0 9.0 33.0 units box
fix watch all ace/uq/watch 1 quantity gamma dump candidates.xyz lower 1e5 upper none halt no lone {mode}
run 0
print \"PRINTED lone $(f_watch[7])\"
"
            );
            let r = run_lammps_in(&s, &dir, &input, np_arg(np), None);
            r.assert_ok(&format!("lone {mode} np {np}"));
            assert_eq!(printed(&r, "lone"), vec![1.0], "lone {mode} np {np}");
            r.assert_contains(
                "1 atoms have no neighbour of a model species inside the model cutoff",
                "lone",
            );
            let exists = dir.join("candidates.xyz").exists();
            assert_eq!(exists, want_frame, "lone {mode} np {np}");
            if want_frame {
                let c = candidates(&dir);
                let f = &c[0];
                assert_eq!(f.len(), 251);
                let lone = real_column(f, "lone");
                assert_eq!(lone.iter().sum::<f64>(), 1.0);
                assert_eq!(real_column(f, "above_lower").iter().sum::<f64>(), 1.0);
                assert_eq!(
                    f.info.get("time"),
                    Some(&aceuq::structure::InfoValue::Real(0.0)),
                    "time at step 0 must read as a real"
                );
            }
        }
    }
}

/// `upper none` with the calibrated lower cutoff (`lower auto`, the default) keeps the lower
/// cutoff: no clamping to an upper cutoff that does not exist (it once made every atom a
/// candidate, with a warning about "upper 0").
#[test]
fn upper_none_keeps_the_calibrated_lower_cutoff() {
    let Some(s) = setup("upper_none_keeps_the_calibrated_lower_cutoff") else {
        return;
    };
    let (lower, _) = model()
        .stored_cutoffs(aceuq::uq::Method::Gamma, 0)
        .expect("calibrated gamma");
    let g0 = gamma0();
    assert!(lower > 0.0);
    let dir = case("upper_none");
    let input = format!(
        "{HEAD}fix w all ace/uq/watch 1 quantity gamma dump c.xyz upper none halt no
run 0
print \"PRINTED written $(f_w[3])\"
"
    );
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("upper_none");
    assert!(
        !r.output.contains("below the calibrated lower cutoff"),
        "{}",
        r.output
    );
    let want = if g0 > lower { 1.0 } else { 0.0 };
    assert_eq!(
        printed(&r, "written"),
        vec![want],
        "gamma {g0} vs lower {lower}: {}",
        r.output
    );
}

/// Atoms that leave a non-periodic box (`thermo_modify lost ignore`) are not in the frames: each
/// frame written after that says how many are missing (`n_lost`), and the log says so too, on
/// 1 and 2 ranks.
#[test]
fn frames_say_how_many_atoms_are_lost_from_the_box() {
    let Some(s) = setup("frames_say_how_many_atoms_are_lost_from_the_box") else {
        return;
    };
    for np in [1, 2] {
        let dir = case(&format!("lost_np{np}"));
        let input = format!(
            "{}velocity all create 3000 4928459 mom yes rot yes dist gaussian loop geom
thermo_modify lost ignore
timestep 0.001
fix nve all nve
fix watch all ace/uq/watch 100 quantity gamma dump candidates.xyz lower 0 upper none halt no
run 400
",
            HEAD.replace("boundary p p p", "boundary f f f")
        );
        let r = run_lammps_in(&s, &dir, &input, np_arg(np), None);
        r.assert_ok(&format!("lost atoms np {np}"));
        let c = candidates(&dir);
        assert_eq!(c.len(), 5, "np {np}: one frame per check");
        // Step 0 has every atom; a 3000 K liquid loses atoms through its open faces by step 400.
        assert!(!c[0].info.contains_key("n_lost"), "np {np}");
        let last = c.last().unwrap();
        let lost = match last.info.get("n_lost") {
            Some(aceuq::structure::InfoValue::Int(n)) => *n as usize,
            other => panic!("np {np}: n_lost of the last frame: {other:?}"),
        };
        assert!(lost > 0, "np {np}");
        assert_eq!(last.len() + lost, 250, "np {np}");
        assert!(
            r.output.contains(&format!(
                "({lost} atoms of the system are lost from the box and not in the frame)"
            )),
            "np {np}: {}",
            r.output
        );
    }
}
