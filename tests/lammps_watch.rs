//! `fix ace/uq/watch` and per-atom uncertainty in the real LAMMPS: a heated liquid is dumped
//! and halted; the dumped uncertainties equal the library's on the same frames; 2 MPI ranks give
//! the same halting step and the same frames, written once, also with non-contiguous atom IDs;
//! ML-PACE style `fix pair` scripts work.

mod common;
use common::*;

const SUITE: &str = "lammps_watch";

/// A Li model with global and clustered active sets, fitted on 12 frames, with calibrated
/// cutoffs for both (so that `lower auto upper auto` works).
fn uq_model() -> aceuq::Potential {
    let train = frames("tests/data/li/train.xyz");
    let valid = frames("tests/data/li/valid.xyz");
    let mut m = aceuq::Potential::new(fit_model("tests/data/li/train.xyz", 12, &["Li"]));
    let cfg = aceuq::uq::UqConfig {
        active_set: true,
        clusters: Some(aceuq::uq::Partition::KMeans(2)),
        ..Default::default()
    };
    aceuq::uq::build(&m.model, &mut m.uq, &train[..12], &valid, &cfg, false).expect("active sets");
    let errors = aceuq::uq::force_errors(&m.model, &valid).unwrap();
    let e: Vec<f64> = errors.concat();
    for method in [aceuq::uq::Method::Gamma, aceuq::uq::Method::GammaLocal] {
        let u: Vec<f64> = m.per_atom(&valid, method).unwrap().concat();
        let opts = aceuq::stats::cutoff::CalibrationOptions::new(100_000);
        m.uq.calibration
            .push(aceuq::stats::cutoff::calibrate("Li", method.name(), &e, &u, &opts).unwrap());
    }
    m
}

/// `run 0` on `data.lmp` (boundary `boundary`) with `fix watch all ace/uq/watch 1 dump
/// candidates.xyz <args>`.
fn run0_input(boundary: &str, args: &str) -> String {
    format!(
        "plugin load ${{plugin}}
units metal
boundary {boundary}
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq Li
fix watch all ace/uq/watch 1 dump candidates.xyz {args}
run 0
"
    )
}

fn heat_input(watch: &str, extra: &str) -> String {
    format!(
        "plugin load ${{plugin}}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
{extra}
pair_style ace/uq
pair_coeff * * model.aceuq Li
velocity all create 600 4928459 mom yes rot yes dist gaussian loop geom
timestep 0.001
fix heat all nvt temp 600 5000 0.1
{watch}
thermo_style custom step temp pe f_watch[1] f_watch[2] f_watch[3]
thermo_modify format float %.12g
thermo 1000
run 30000
"
    )
}

/// Frames of a candidates file, with a check that every frame is whole.
fn candidates(dir: &std::path::Path) -> Vec<aceuq::Structure> {
    aceuq::io::extxyz::read_file(dir.join("candidates.xyz"), &Default::default())
        .expect("candidates parse")
}

fn info_int(s: &aceuq::Structure, key: &str) -> i64 {
    match s.info.get(key) {
        Some(aceuq::structure::InfoValue::Int(v)) => *v,
        other => panic!("{key}: {other:?}"),
    }
}

fn real_column<'a>(s: &'a aceuq::Structure, name: &str) -> &'a [f64] {
    match s.array(name) {
        Some(aceuq::structure::PropData::Real { data, .. }) => data,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn heated_liquid_is_dumped_and_halted_identically_on_one_and_two_ranks() {
    let Some(s) = setup_mpi("heated_liquid_is_dumped_and_halted_identically_on_one_and_two_ranks")
    else {
        return;
    };
    let model = uq_model();
    let (lo, _) = model.stored_cutoffs(aceuq::uq::Method::Gamma, 0).unwrap();
    let frame = &frames("tests/data/li/test.xyz")[0];
    // Delete a few atoms so that IDs are not contiguous.
    let extra = "group gone id 7 33 101 102 240\ndelete_atoms group gone compress no";
    // MD is chaotic: serial and parallel runs sum forces in different orders, and that round-off
    // grows until, thousands of steps later, they are different trajectories. The halt must come
    // within the predictable horizon, so a serial probe picks an upper cutoff crossed early: the
    // middle of the first clear jump of the running maximum after step 200.
    let dir = workdir(SUITE, "watch_probe");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let probe_watch = "fix watch all ace/uq/watch 20 lower auto upper none halt no";
    let probe = heat_input(probe_watch, extra)
        .replace("thermo 1000", "thermo 20")
        .replace("run 30000", "run 1000");
    let r = run_lammps_in(&s, &dir, &probe, None, None);
    r.assert_ok("watch_probe");
    let rows = thermo_rows(&r.output);
    let mut upper = None;
    let mut best = 0.0f64;
    for row in &rows {
        let (step, now) = (row[0], row[3]);
        if step >= 200.0 && now > best * 1.03 && best > 0.0 {
            upper = Some(0.5 * (best + now));
            break;
        }
        best = best.max(now);
    }
    let upper = upper.expect("the running max of gamma rises while heating");
    let watch = format!(
        "fix watch all ace/uq/watch 20 dump candidates.xyz lower auto upper {upper} halt yes"
    );
    let mut results = vec![];
    for (case, np) in [("watch_serial", None), ("watch_mpi2", Some(2))] {
        let dir = workdir(SUITE, case);
        save_model(&model, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let r = run_lammps_in(&s, &dir, &heat_input(&watch, extra), np, None);
        r.assert_ok(case);
        r.assert_contains("fix ace/uq/watch: halting at step", case);
        assert_eq!(
            r.count("fix ace/uq/watch: halting at step"),
            1,
            "{case}: halt message once\n{}",
            r.output
        );
        let frames = candidates(&dir);
        assert!(!frames.is_empty());
        results.push((r, frames));
    }
    let (serial, mpi) = (&results[0], &results[1]);
    let steps = |f: &[aceuq::Structure]| f.iter().map(|x| info_int(x, "step")).collect::<Vec<_>>();
    assert_eq!(
        steps(&serial.1),
        steps(&mpi.1),
        "same dumped steps on 1 and 2 ranks (written once each)"
    );
    let halt_line = |r: &Run| {
        r.output
            .lines()
            .find(|l| l.contains("halting at step"))
            .unwrap()
            .to_string()
    };
    // The same message on 1 and 2 ranks; the printed gamma may differ in its last digit, as the
    // ranks sum forces in another order (the dumped values are compared to 1e-5 below).
    let split_gamma = |l: String| -> (String, f64) {
        let (head, tail) = l.split_once("gamma = ").expect("gamma in the halt line");
        let (g, rest) = tail.split_once(' ').unwrap();
        (format!("{head}gamma = * {rest}"), g.parse().unwrap())
    };
    let ((ls, gs), (lm, gm)) = (
        split_gamma(halt_line(&serial.0)),
        split_gamma(halt_line(&mpi.0)),
    );
    assert_eq!(ls, lm);
    assert!(
        (gs - gm).abs() < 1e-5 * gs.abs().max(1.0),
        "halt gamma {gs} vs {gm}"
    );
    for (a, b) in serial.1.iter().zip(&mpi.1) {
        assert_eq!(a.len(), 245);
        let ids = |s: &aceuq::Structure| match s.array("id") {
            Some(aceuq::structure::PropData::Int { data, .. }) => data.clone(),
            other => panic!("id column: {other:?}"),
        };
        let (ia, ib) = (ids(a), ids(b));
        assert_eq!(ia, ib, "atoms sorted by ID");
        assert!(!ia.contains(&7) && ia.contains(&8) && ia.windows(2).all(|w| w[0] < w[1]));
        let (ga, gb) = (real_column(a, "gamma"), real_column(b, "gamma"));
        for (x, y) in ga.iter().zip(gb) {
            assert!((x - y).abs() < 1e-5 * x.abs().max(1.0), "gamma {x} vs {y}");
        }
    }
    // The frames are what the fix says: above the lower cutoff, the last one above the upper.
    let last = serial.1.last().unwrap();
    assert_eq!(last.config_type.as_deref(), Some("halt"));
    let g_last = real_column(last, "gamma");
    assert!(g_last.iter().any(|&g| g > upper));
    for f in &serial.1 {
        assert!(real_column(f, "gamma").iter().any(|&g| g > lo));
        let flags = real_column(f, "above_lower");
        for (g, fl) in real_column(f, "gamma").iter().zip(flags) {
            assert_eq!(*fl == 1.0, *g > lo);
        }
    }
    // The dumped uncertainty equals the library's on the same configuration.
    let lib = model
        .per_atom(std::slice::from_ref(last), aceuq::uq::Method::Gamma)
        .unwrap();
    for (x, y) in g_last.iter().zip(&lib[0]) {
        assert!(
            (x - y).abs() < 1e-4 * y.abs().max(1.0),
            "LAMMPS gamma {x} vs library {y}"
        );
    }
    note(&format!(
        "watch: {} frames, halted at step {}; lower {lo:.3} (auto), upper {upper:.3}",
        serial.1.len(),
        info_int(last, "step")
    ));
}

/// With the calibrated cutoffs (`lower auto upper auto`) the heated liquid is stopped: by an
/// atom above its upper cutoff or by the frame rule (the default when the calibration has a
/// fitted error scale, as this one has; the settings line says so).
#[test]
fn calibrated_cutoffs_stop_a_heated_liquid() {
    let Some(s) = setup("calibrated_cutoffs_stop_a_heated_liquid") else {
        return;
    };
    let model = uq_model();
    let (_, hi) = model.stored_cutoffs(aceuq::uq::Method::Gamma, 0).unwrap();
    let frame = &frames("tests/data/li/test.xyz")[0];
    let dir = workdir(SUITE, "watch_auto");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let watch = "fix watch all ace/uq/watch 20 dump candidates.xyz lower auto upper auto halt yes";
    let r = run_lammps_in(&s, &dir, &heat_input(watch, ""), None, None);
    r.assert_ok("watch_auto");
    r.assert_contains("halting at step", "watch_auto");
    r.assert_contains("(upper frame)", "upper auto uses the frame rule");
    let frames = candidates(&dir);
    let last = frames.last().unwrap();
    assert_eq!(last.config_type.as_deref(), Some("halt"));
    let p_halt = model
        .uq
        .calibration
        .iter()
        .find(|c| c.method == "gamma")
        .and_then(|c| c.conditional.as_ref())
        .expect("a fitted error scale")
        .p_halt;
    let p_frame = match last.info.get("p_frame") {
        Some(aceuq::structure::InfoValue::Real(v)) => *v,
        other => panic!("p_frame: {other:?}"),
    };
    assert!(
        real_column(last, "gamma").iter().any(|&g| g > hi) || p_frame >= p_halt,
        "halted with no atom above {hi} and p_frame {p_frame} < {p_halt}"
    );
    note(&format!(
        "auto cutoffs: {} frames, halted at step {} (upper {hi:.3})",
        frames.len(),
        info_int(last, "step")
    ));
}

#[test]
fn ml_pace_style_fix_pair_scripts_work() {
    let Some(s) = setup("ml_pace_style_fix_pair_scripts_work") else {
        return;
    };
    let model = uq_model();
    let frame = &frames("tests/data/li/test.xyz")[2];
    let dir = workdir(SUITE, "fix_pair");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let input = "plugin load ${plugin}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq Li
fix g all pair 10 ace/uq gamma 1
compute max_gamma all reduce max f_g
variable dump_skip equal \"c_max_gamma < 1.5\"
dump d all custom 10 extrapolative.dump id type x y z f_g
dump_modify d skip v_dump_skip format float %.12g
variable max_gamma equal c_max_gamma
fix stop all halt 10 v_max_gamma > 1000
velocity all create 900 1234 mom yes rot yes
timestep 0.001
fix nve all nve
thermo_style custom step temp c_max_gamma
thermo_modify format float %.12g
thermo 10
run 100
";
    let r = run_lammps_in(&s, &dir, input, None, None);
    r.assert_ok("fix_pair");
    let rows = thermo_rows(&r.output);
    assert!(rows.len() >= 10);
    for row in &rows {
        assert!(
            row[2] > 0.1,
            "step {}: max gamma {} (was it computed?)",
            row[0],
            row[2]
        );
    }
    // The gamma values LAMMPS dumped for step 0 equal the library's for the same frame.
    let dumps = read_dump(&dir.join("extrapolative.dump"));
    if let Some((cols, rows0)) = dumps.first() {
        assert_eq!(cols.last().unwrap(), "f_g");
        let lib = model
            .per_atom(std::slice::from_ref(frame), aceuq::uq::Method::Gamma)
            .unwrap();
        let maxlib = lib[0].iter().cloned().fold(0.0, f64::max);
        let maxlmp = rows0.iter().map(|r| *r.last().unwrap()).fold(0.0, f64::max);
        if rows[0][2] >= 1.5 {
            assert!(
                (maxlib - maxlmp).abs() < 1e-6 * maxlib,
                "{maxlib} vs {maxlmp}"
            );
        }
    }
    // Step 0: thermo max equals the library's max.
    let lib = model
        .per_atom(std::slice::from_ref(frame), aceuq::uq::Method::Gamma)
        .unwrap();
    let maxlib = lib[0].iter().cloned().fold(0.0, f64::max);
    assert!(
        (rows[0][2] - maxlib).abs() < 1e-8 * maxlib,
        "step 0: {} vs library {maxlib}",
        rows[0][2]
    );
}

#[test]
fn watch_gamma_local_with_numbers_and_no_halt() {
    let Some(s) = setup("watch_gamma_local_with_numbers_and_no_halt") else {
        return;
    };
    let model = uq_model();
    let frame = &frames("tests/data/li/test.xyz")[0];
    let dir = workdir(SUITE, "local_numbers");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let watch = "fix watch all ace/uq/watch 50 quantity gamma_local dump candidates.xyz lower 0.5 upper 2.0 halt no";
    let input = heat_input(watch, "").replace("run 30000", "run 500");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("local_numbers");
    assert!(!r.output.contains("halting at step"));
    let frames = candidates(&dir);
    // lower 0.5 is far below the values in a liquid: every check dumps a frame (steps 0..500).
    assert_eq!(frames.len(), 11, "{}", r.output);
    for f in &frames {
        assert!(real_column(f, "gamma_local").iter().any(|&g| g > 0.5));
    }
    r.assert_contains("11 checks of gamma_local", "summary");
    r.assert_contains("11 frames written to candidates.xyz", "summary");
}

/// The `uq_model` with hand-made gamma_local cutoffs: the species-level entry far above any value
/// (never fires), and for cluster `target` an entry of its own with lower cutoff 0 (every atom of
/// that cluster is above it) and upper cutoff `target_upper`; the other clusters have none and
/// fall back to the species.
fn model_with_cluster_cutoffs(target: usize, target_upper: f64) -> aceuq::Potential {
    let mut m = uq_model();
    let gl = aceuq::uq::Method::GammaLocal.name();
    let mut species =
        m.uq.calibration
            .iter()
            .find(|c| c.method == gl)
            .expect("gamma_local calibrated")
            .clone();
    m.uq.calibration.retain(|c| c.method != gl);
    (species.u_c, species.u_max) = (1e6, 1e7);
    let mut own = species.clone();
    (own.cluster, own.u_c, own.u_max) = (Some(target), 0.0, target_upper);
    m.uq.calibration.push(species);
    m.uq.calibration.push(own);
    m
}

fn cluster_column(s: &aceuq::Structure) -> Vec<i64> {
    real_column(s, "cluster")
        .iter()
        .map(|&c| {
            assert_eq!(c, c.round(), "cluster index {c}");
            c as i64
        })
        .collect()
}

fn info_str(s: &aceuq::Structure, key: &str) -> String {
    match s.info.get(key) {
        Some(aceuq::structure::InfoValue::Str(v)) => v.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

/// `quantity gamma_local lower auto upper auto`: each atom is judged by the cutoffs of its own
/// (species, cluster). Only the atoms of the cluster with a low cutoff of its own are flagged;
/// the frame's cluster column is the library's cluster of each atom and its header names the
/// cluster that fired; 1 and 2 MPI ranks write the same frames. With that cluster's upper cutoff
/// low as well, the run halts at its first check and the message names the cluster.
#[test]
fn gamma_local_cutoffs_per_cluster_fire_for_their_cluster_only_on_one_and_two_ranks() {
    let Some(s) = setup_mpi(
        "gamma_local_cutoffs_per_cluster_fire_for_their_cluster_only_on_one_and_two_ranks",
    ) else {
        return;
    };
    let frame = &frames("tests/data/li/test.xyz")[0];
    let probe = uq_model();
    let (_, lib_clusters) = probe
        .gamma_local_per_atom(std::slice::from_ref(frame))
        .unwrap();
    let target = lib_clusters[0][0] as usize;
    let n_clusters = probe.uq.gamma_local_clusters(0).unwrap();
    assert!(
        lib_clusters[0].iter().any(|&c| c as usize != target),
        "the frame has atoms of one cluster only: {:?}",
        lib_clusters[0]
    );
    let model = model_with_cluster_cutoffs(target, 1e6);
    let watch = "fix watch all ace/uq/watch 20 quantity gamma_local dump candidates.xyz lower auto upper auto halt yes";
    let input = heat_input(watch, "").replace("run 30000", "run 40");
    let mut results = vec![];
    for (case, np) in [("clusters_serial", None), ("clusters_mpi2", Some(2))] {
        let dir = workdir(SUITE, case);
        save_model(&model, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let r = run_lammps_in(&s, &dir, &input, np, None);
        r.assert_ok(case);
        assert!(!r.output.contains("halting at step"), "{}", r.output);
        r.assert_contains("gamma_local lower/upper per species and cluster", case);
        for c in 0..n_clusters {
            let mark = if c == target {
                format!("[Li:{c}: 0 / 1e+06]")
            } else {
                format!("[Li:{c}: 1e+06 / 1e+07 (species cutoffs)]")
            };
            r.assert_contains(&mark, case);
        }
        let frames = candidates(&dir);
        assert_eq!(frames.len(), 3, "{case}: checks at steps 0, 20, 40");
        results.push(frames);
    }
    for (a, b) in results[0].iter().zip(&results[1]) {
        assert_eq!(info_int(a, "step"), info_int(b, "step"));
        assert_eq!(a.len(), b.len());
        assert_eq!(
            cluster_column(a),
            cluster_column(b),
            "same clusters on 1 and 2 ranks"
        );
        assert_eq!(real_column(a, "above_lower"), real_column(b, "above_lower"));
        assert_eq!(
            info_str(a, "clusters_above_lower"),
            info_str(b, "clusters_above_lower")
        );
        for (x, y) in real_column(a, "gamma_local")
            .iter()
            .zip(real_column(b, "gamma_local"))
        {
            assert!((x - y).abs() < 1e-5 * x.abs().max(1.0), "{x} vs {y}");
        }
    }
    for f in &results[0] {
        let cl = cluster_column(f);
        // The cluster column is the library's cluster of each atom on this configuration.
        let (_, lib) = model.gamma_local_per_atom(std::slice::from_ref(f)).unwrap();
        let lib: Vec<i64> = lib[0].iter().map(|&c| c as i64).collect();
        assert_eq!(cl, lib, "step {}", info_int(f, "step"));
        // Above the lower cutoff: exactly the atoms of the target cluster.
        for (fl, c) in real_column(f, "above_lower").iter().zip(&cl) {
            assert_eq!(*fl == 1.0, *c == target as i64, "cluster {c}, flag {fl}");
        }
        assert!(real_column(f, "above_upper").iter().all(|&x| x == 0.0));
        assert_eq!(info_str(f, "clusters_above_lower"), format!("Li:{target}"));
        assert_eq!(info_str(f, "clusters_above_upper"), "none");
        assert_eq!(f.config_type.as_deref(), Some("candidate"));
    }

    // The target cluster's upper cutoff at 0: the first check halts, naming the cluster.
    let dir = workdir(SUITE, "clusters_halt");
    save_model(
        &model_with_cluster_cutoffs(target, 0.0),
        &dir,
        "model.aceuq",
    );
    write_data(frame, &["Li"], &dir, "data.lmp");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("clusters_halt");
    r.assert_contains("fix ace/uq/watch: halting at step 0: atom", "clusters_halt");
    r.assert_contains(
        &format!("(Li cluster {target}) has gamma_local"),
        "clusters_halt",
    );
    r.assert_contains(
        &format!("clusters above upper: Li:{target};"),
        "clusters_halt",
    );
    let frames = candidates(&dir);
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.config_type.as_deref(), Some("halt"));
    for (fl, c) in real_column(f, "above_upper").iter().zip(cluster_column(f)) {
        assert_eq!(*fl == 1.0, c == target as i64);
    }
    assert_eq!(info_str(f, "clusters_above_upper"), format!("Li:{target}"));
}

/// Issue 21, item 1: a configuration changed at the same timestep (`displace_atoms` between
/// `run 0` commands) is checked again; an unchanged one is not (no duplicate frame at a run
/// boundary). On 1 and 2 ranks.
#[test]
fn a_configuration_changed_at_the_same_step_is_checked_again() {
    let Some(s) = setup("a_configuration_changed_at_the_same_step_is_checked_again") else {
        return;
    };
    let model = uq_model();
    let frame = &frames("tests/data/li/test.xyz")[0];
    for np in [1, 2] {
        let dir = workdir(SUITE, &format!("same_step_np{np}"));
        save_model(&model, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let input = "plugin load ${plugin}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq Li
fix watch all ace/uq/watch 1 quantity gamma dump candidates.xyz lower 1e6 upper 1e7 halt no
thermo_style custom step pe f_watch[1] f_watch[2]
run 0
run 0
displace_atoms all random 0.5 0.5 0.5 4711 units box
run 0
";
        let r = run_lammps_in(&s, &dir, input, if np == 2 { Some(2) } else { None }, None);
        r.assert_ok(&format!("same_step np {np}"));
        // Three `run 0`, two distinct configurations: the summaries after each run count 1, 1
        // and 2 checks, and the displaced configuration raises the running maximum.
        let summaries: Vec<(u64, f64)> = r
            .output
            .lines()
            .filter_map(|l| l.strip_prefix("fix ace/uq/watch: "))
            .filter_map(|l| {
                let (n, rest) = l.split_once(" checks of gamma, max ")?;
                let max = rest.split(',').next()?.trim().parse().ok()?;
                Some((n.parse().ok()?, max))
            })
            .collect();
        assert_eq!(summaries.len(), 3, "np {np}: {}", r.output);
        let counts: Vec<u64> = summaries.iter().map(|x| x.0).collect();
        assert_eq!(counts, vec![1, 1, 2], "np {np}: {}", r.output);
        assert_eq!(summaries[0].1, summaries[1].1);
        assert!(summaries[2].1 > summaries[1].1, "np {np}: {summaries:?}");
    }
}

/// write_data and write_restart initialise every fix (LAMMPS's `System init for write_data`):
/// the watch's settings line belongs to the runs, printed before each run's set-up, not at
/// those commands (it was printed there, and then missing before the next run).
#[test]
fn the_settings_line_is_printed_for_each_run_not_for_write_data() {
    let Some(s) = setup("the_settings_line_is_printed_for_each_run_not_for_write_data") else {
        return;
    };
    let model = uq_model();
    let frame = &frames("tests/data/li/test.xyz")[0];
    let dir = workdir(SUITE, "settings_line");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let input = run0_input("p p p", "lower 1e6 upper 1e7 halt no")
        + "write_data out.data\nwrite_restart out.restart\nrun 0\n";
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("settings_line");
    let marks: Vec<&str> = r
        .output
        .lines()
        .filter_map(|l| {
            if l.starts_with("fix ace/uq/watch: every 1 steps") {
                Some("settings")
            } else if l.starts_with("Setting up Verlet run") {
                Some("run")
            } else if l.starts_with("System init for write_") {
                Some("write")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        marks,
        ["settings", "run", "write", "write", "settings", "run"],
        "{}",
        r.output
    );
}

/// The stored reason and caveat of [`without_upper`] entries.
const NO_UPPER_REASON: &str = "it saturates at 1.5000e0, where s(u) = 0.120 eV/Å is below the \
                               0.650 eV/Å needed to expect errors of 1 eV/Å";
const CAVEAT: &str = "only 150 validation atoms: the 1 - 1/N tails are poorly determined";

/// The `uq_model` with the calibration entries of `methods` made as `aceuq calibrate` stores a
/// method that cannot reach the error limit (no upper cutoff: +inf, the reason, a caveat), and
/// the others given an upper cutoff far above any value (never fires) and no caveats.
fn without_upper(methods: &[&str]) -> aceuq::Potential {
    use aceuq::stats::cutoff::UpperRule;
    let mut model = uq_model();
    for c in &mut model.uq.calibration {
        if !methods.contains(&c.method.as_str()) {
            (c.u_max, c.upper_rule, c.conditional) = (1e6, UpperRule::Ratio, None);
            c.warnings.clear();
            continue;
        }
        c.u_max = f64::INFINITY;
        c.upper_rule = UpperRule::Conditional;
        c.warnings = vec![CAVEAT.into(), format!("no upper cutoff: {NO_UPPER_REASON}")];
        c.conditional = Some(relation(0.02, None, Some(NO_UPPER_REASON)));
    }
    model
}

/// A stored error relation s(u) = a + 0.1 u saturating at u = 1.5 (150 validation atoms, e_max
/// 1 eV/Å, p_halt 0.5), with the upper cutoff `u_max` (`None`: none, for `reason`).
fn relation(
    a: f64,
    u_max: Option<f64>,
    reason: Option<&str>,
) -> aceuq::stats::upper::ConditionalUpper {
    aceuq::stats::upper::ConditionalUpper {
        scale: aceuq::stats::upper::ErrorScale { a, b: 0.1, k: 1.0 },
        n_fit: 150,
        n_high: 0,
        u_seen_max: 1.4,
        e_seen_max: 0.1,
        e_max: 1.0,
        p_halt: 0.5,
        s_halt: 0.65,
        u_sup: Some(1.5),
        u_max,
        reason: reason.map(String::from),
    }
}

/// Issue 20: a watched quantity without an upper cutoff (the calibration stores +inf when the
/// method cannot reach the error limit, e.g. a saturating GP) would never halt, silently. The fix
/// says so once at init, with the stored reason and a method whose upper cutoffs are finite to
/// halt on instead, and prints the stored caveats once; with no such method it says that, and a
/// `halt error` watch still runs. On 2 ranks the warnings are printed once. That is with `upper
/// atom` (single atoms only). With `upper auto` and a fitted error scale the frame rule can still
/// halt, so there is no warning and the settings line names the rule; with `upper auto` and a
/// calibration without a fitted error scale (the seeds' ratio rule) the watch halts on single
/// atoms and says why.
#[test]
fn a_quantity_without_an_upper_cutoff_is_reported_with_a_method_that_halts() {
    let Some(s) = setup("a_quantity_without_an_upper_cutoff_is_reported_with_a_method_that_halts")
    else {
        return;
    };
    let (reason, caveat) = (NO_UPPER_REASON, CAVEAT);
    // gamma_local without an upper cutoff; gamma with one.
    let model = without_upper(&["gamma_local"]);
    let frame = &frames("tests/data/li/test.xyz")[0];
    let dir = workdir(SUITE, "no_upper_local");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let watch = "fix watch all ace/uq/watch 10 quantity gamma_local dump candidates.xyz lower auto upper atom halt yes";
    // Two runs: init twice, the notes once.
    let input = heat_input(watch, "").replace("run 30000", "run 20\nrun 20");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("no_upper_local");
    r.assert_contains(
        &format!(
            "WARNING: fix ace/uq/watch: gamma_local has no upper cutoff for Li ({reason}): this \
             watch will dump but never halt (halt yes); to halt, add a watch on quantity gamma \
             (its upper cutoffs are finite for every species), e.g. fix watch_halt all \
             ace/uq/watch 10 quantity gamma upper auto halt yes"
        ),
        "no_upper_local",
    );
    r.assert_contains(
        &format!("WARNING: fix ace/uq/watch: calibration of gamma_local for Li: {caveat}"),
        "no_upper_local",
    );
    assert_eq!(r.count("has no upper cutoff"), 1, "{}", r.output);
    assert_eq!(r.count(caveat), 1, "{}", r.output);
    // The reason once (in the warning), not again among the caveats.
    assert_eq!(r.count("it saturates at 1.5000e0"), 1, "{}", r.output);
    assert!(!r.output.contains("halting at step"));

    // `upper auto` uses the frame rule where the calibration has a fitted error scale. gamma_local
    // has one, but it saturates at s(1.5) = 0.17 eV/Å: P(e > 1 eV/Å) per atom is so small that
    // the frame rule would need millions of atoms, so the warning is still due and says so (a
    // frame-capable entry the frame rule can halt is not reported: `upper_frame_halts_...`).
    // gamma was calibrated with the ratio rule (no error scale): single atoms only, said in the
    // settings line; with its finite upper cutoff no warning, with an infinite one the warning.
    let mut ratio_inf = model.clone();
    for c in ratio_inf
        .uq
        .calibration
        .iter_mut()
        .filter(|c| c.method == "gamma")
    {
        c.u_max = f64::INFINITY;
    }
    let fallback = "halts above upper (single atoms only: the calibration of 'gamma' for Li has \
                    no fitted error scale s(u)";
    for (case, m, quantity, expect, warned) in [
        ("local", &model, "gamma_local", "(upper frame)", true),
        ("ratio", &model, "gamma", fallback, false),
        ("ratio_inf", &ratio_inf, "gamma", fallback, true),
    ] {
        let dir = workdir(SUITE, &format!("no_upper_auto_{case}"));
        save_model(m, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let watch = format!(
            "fix watch all ace/uq/watch 10 quantity {quantity} lower auto upper auto halt yes"
        );
        let input = heat_input(&watch, "").replace("run 30000", "run 0");
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(case);
        r.assert_contains(expect, case);
        let warning = format!("WARNING: fix ace/uq/watch: {quantity} has no upper cutoff for Li");
        assert_eq!(r.output.contains(&warning), warned, "{case}: {}", r.output);
        if case == "local" {
            r.assert_contains(
                "; the frame rule would need 4.69e+06 Li atoms at its largest uncertainty to \
                 halt, the watch sees 250)",
                "the warning says how many atoms the frame rule would need",
            );
        }
    }
    // `upper frame` insists on the error scale: an error naming the method, species and way out.
    let dir = workdir(SUITE, "no_upper_frame_ratio");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let watch = "fix watch all ace/uq/watch 10 quantity gamma upper frame halt yes";
    let input = heat_input(watch, "").replace("run 30000", "run 0");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "upper frame: the calibration of 'gamma' for Li has no fitted error scale s(u)",
        "upper frame without s(u)",
    );
    r.assert_contains(
        "or watch with upper atom (single atoms only)",
        "the way out",
    );

    // No method with an upper cutoff at all, `halt error`, 2 ranks: it says so and runs.
    let model = without_upper(&["gamma", "gamma_local"]);
    let dir = workdir(SUITE, "no_upper_any");
    save_model(&model, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let watch = "fix watch all ace/uq/watch 10 quantity gamma lower auto upper atom halt error";
    let input = heat_input(watch, "").replace("run 30000", "run 20");
    let np = s.mpirun.as_ref().map(|_| 2);
    let r = run_lammps_in(&s, &dir, &input, np, None);
    r.assert_ok("no_upper_any");
    r.assert_contains(
        &format!(
            "WARNING: fix ace/uq/watch: gamma has no upper cutoff for Li ({reason}): this watch \
             will never halt (halt error); no other method of the model has finite upper \
             cutoffs for every species either"
        ),
        "no_upper_any",
    );
    assert_eq!(
        r.count("has no upper cutoff"),
        1,
        "{np:?} ranks: {}",
        r.output
    );
    assert_eq!(r.count(caveat), 1, "{np:?} ranks: {}", r.output);
    r.assert_contains("3 checks of gamma", "no_upper_any");
}

/// `aceuq info` lists every stored cutoff entry per method: "none" for a method without an
/// upper cutoff with the stored reason (once), its upper rule, its caveat; the finite upper
/// cutoff and the rule of the other. Needs no LAMMPS.
#[test]
fn info_shows_every_cutoff_entry_and_why_one_has_no_upper_cutoff() {
    let model = without_upper(&["gamma_local"]);
    let dir = workdir(SUITE, "info");
    let path = save_model(&model, &dir, "model.aceuq");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aceuq"))
        .arg("info")
        .arg("--model")
        .arg(&path)
        .output()
        .expect("run aceuq info");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (g, l) = (
        text.find("\ngamma:\n").expect("a gamma block"),
        text.find("\ngamma_local:\n").expect("a gamma_local block"),
    );
    let (gamma, local) = (&text[g..l], &text[l..]);
    let row = |block: &str| -> Vec<String> {
        block
            .lines()
            .find(|l| l.trim_start().starts_with("Li "))
            .unwrap_or_else(|| panic!("no Li row in\n{block}"))
            .split("  ")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let (lo, _) = model
        .stored_cutoffs(aceuq::uq::Method::GammaLocal, 0)
        .unwrap();
    let r = row(local);
    assert_eq!(r.last().map(String::as_str), Some("none"), "{local}");
    let entry = model
        .uq
        .calibration
        .iter()
        .find(|c| c.method == "gamma_local")
        .unwrap();
    let (n, n_fit) = (entry.n_apply.to_string(), entry.n_fit.to_string());
    assert_eq!(r[..4], ["Li", "-", n.as_str(), n_fit.as_str()], "{local}");
    assert!(
        (r[4].parse::<f64>().unwrap() / lo - 1.0).abs() < 1e-4,
        "u_c {} vs {lo}",
        r[4]
    );
    assert!(
        local.contains(&format!("Li: no upper cutoff: {NO_UPPER_REASON}")),
        "{local}"
    );
    assert_eq!(
        local.matches("it saturates at 1.5000e0").count(),
        1,
        "{local}"
    );
    assert!(local.contains(&format!("Li: warning: {CAVEAT}")), "{local}");
    assert!(
        local.contains("Li: upper rule conditional: e | u ~ Maxwell(s(u))"),
        "{local}"
    );
    assert_eq!(
        row(gamma).last().map(String::as_str),
        Some("1.0000e6"),
        "{gamma}"
    );
    assert!(gamma.contains("Li: upper rule ratio"), "{gamma}");
    assert!(
        !gamma.contains("warning") && !gamma.contains("no upper cutoff"),
        "{gamma}"
    );
}

/// `upper frame` (and `upper auto`, its default form when the calibration has a fitted error
/// scale): the watch also halts when the probability that some atom errs above e_max,
/// `1 - prod_i (1 - P(e > e_max | u_i))` under the calibrated s(u), reaches p_halt. On the heated
/// liquid (deterministic serial trajectory) it halts no later than `upper atom` (single atoms
/// only), and `auto` at the same step as `frame`; every frame it
/// writes carries `p_frame`, equal to the same sum recomputed from the frame's own per-atom
/// values and the model's stored relation, below p_halt for candidates and at or above it (or
/// with an atom above its upper cutoff) for the halt.
#[test]
fn upper_frame_halts_on_the_frame_probability() {
    let Some(s) = setup("upper_frame_halts_on_the_frame_probability") else {
        return;
    };
    let model = uq_model();
    let cal = model
        .uq
        .calibration
        .iter()
        .find(|c| c.method == "gamma" && c.cluster.is_none())
        .unwrap();
    let cond = cal.conditional.as_ref().expect("a fitted error scale");
    let frame = &frames("tests/data/li/test.xyz")[0];
    let mut steps = vec![];
    let mut halt_frame = None;
    for rule in ["atom", "auto", "frame"] {
        let dir = workdir(SUITE, &format!("upper_{rule}"));
        save_model(&model, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let watch = format!(
            "fix watch all ace/uq/watch 20 dump candidates.xyz lower auto upper {rule} halt yes"
        );
        let r = run_lammps_in(&s, &dir, &heat_input(&watch, ""), None, None);
        r.assert_ok(rule);
        r.assert_contains("halting at step", rule);
        let frames = candidates(&dir);
        let last = frames.last().unwrap();
        assert_eq!(last.config_type.as_deref(), Some("halt"));
        steps.push(info_int(last, "step"));
        if rule == "atom" {
            assert!(!r.output.contains("(upper frame)"), "{}", r.output);
            continue;
        }
        r.assert_contains("(upper frame)", "the settings line names the rule");
        halt_frame = Some(last.clone());
        for f in &frames {
            let p_file = match f.info.get("p_frame") {
                Some(aceuq::structure::InfoValue::Real(v)) => *v,
                other => panic!("p_frame: {other:?}"),
            };
            // A probability: never negative, and a calm frame's 0 is written as 0, not -0.
            assert!(
                !p_file.is_sign_negative(),
                "step {}: p_frame {p_file}",
                info_int(f, "step")
            );
            // The frame holds each value to 6 digits, and P(e > e_max | u) is steep in u: the
            // recomputed probability is bracketed by the values rounded down and up.
            let u = real_column(f, "gamma");
            let lone = real_column(f, "lone");
            let p_at = |scale: f64| {
                let sum: f64 = u
                    .iter()
                    .zip(lone)
                    .filter(|(_, l)| **l == 0.0)
                    .map(|(&v, _)| cond.log_calm(v * scale))
                    .sum();
                -sum.exp_m1()
            };
            let (p_lo, p, p_hi) = (p_at(1.0 - 1e-5), p_at(1.0), p_at(1.0 + 1e-5));
            assert!(
                p_file >= p_lo * (1.0 - 1e-9) && p_file <= p_hi * (1.0 + 1e-9),
                "step {}: p_frame {p_file} outside [{p_lo}, {p_hi}] recomputed",
                info_int(f, "step")
            );
            let above = real_column(f, "above_upper").iter().any(|&x| x > 0.0);
            if f.config_type.as_deref() == Some("halt") {
                assert!(
                    p >= cond.p_halt || above,
                    "halt with p {p} and no atom above upper"
                );
            } else {
                assert!(p < cond.p_halt && !above, "candidate with p {p} >= p_halt");
            }
        }
        note(&format!(
            "upper {rule}: halted at step {} with p_frame {:?} (upper atom: step {}); {} frames",
            steps.last().unwrap(),
            last.info.get("p_frame"),
            steps[0],
            frames.len()
        ));
    }
    assert!(
        steps[2] <= steps[0] && steps[1] == steps[2],
        "upper atom / auto / frame halted at {steps:?}"
    );
    // The halt frame again with `run 0`, on 1 and 2 ranks: the ranks' sums add to the same
    // probability.
    if s.mpirun.is_none() {
        note(
            "upper_frame_halts_on_the_frame_probability: 2-rank part SKIPPED (ACEUQ_MPIRUN is not set)",
        );
        return;
    }
    let halt = halt_frame.expect("the frame rule's halt frame");
    let mut p = vec![];
    for np in [None, Some(2)] {
        let dir = workdir(SUITE, &format!("upper_frame_np{}", np.unwrap_or(1)));
        save_model(&model, &dir, "model.aceuq");
        let lb = write_data(&halt, &["Li"], &dir, "data.lmp");
        let input = run0_input(&lb.boundary, "lower 0 upper frame halt no");
        let r = run_lammps_in(&s, &dir, &input, np, None);
        r.assert_ok("run 0 with upper frame");
        match candidates(&dir)[0].info.get("p_frame") {
            Some(aceuq::structure::InfoValue::Real(v)) => p.push(*v),
            other => panic!("p_frame: {other:?}"),
        }
    }
    assert!(
        (p[0] - p[1]).abs() <= 1e-9 * p[0].abs() && p[0] >= cond.p_halt,
        "p_frame 1 rank {} vs 2 ranks {}",
        p[0],
        p[1]
    );
}

/// Issue 20, two species: with the frame rule (`upper auto`, a fitted error scale for every
/// species) an entry without an upper cutoff is reported only when its species would need more
/// atoms to halt by the frame rule than the watch sees *of that species* (summed over ranks).
/// In–P model (8 training frames), gamma: In saturating (no upper cutoff), P with one. A
/// saturating In entry is reported, P is not, and "the others still can" halt; an In entry that
/// 7 atoms can halt is not reported when the watch sees all 32 In atoms, and is when the group
/// holds only 4 of them (with all 32 P atoms, so the total of 36 would hide it).
#[test]
fn two_species_report_only_the_species_the_frame_rule_cannot_halt() {
    let Some(s) = setup("two_species_report_only_the_species_the_frame_rule_cannot_halt") else {
        return;
    };
    let train = frames("tests/data/inp/train.xyz");
    let valid = frames("tests/data/inp/valid.xyz");
    let mut pot = aceuq::Potential::new(fit_model("tests/data/inp/train.xyz", 8, &["In", "P"]));
    let cfg = aceuq::uq::UqConfig {
        active_set: true,
        ..Default::default()
    };
    aceuq::uq::build(&pot.model, &mut pot.uq, &train[..8], &valid, &cfg, false)
        .expect("active sets");
    let errors = aceuq::uq::force_errors(&pot.model, &valid).unwrap();
    let u = pot.per_atom(&valid, aceuq::uq::Method::Gamma).unwrap();
    for sp in ["In", "P"] {
        let (mut e, mut g) = (vec![], vec![]);
        for (f, st) in valid.iter().enumerate() {
            for (a, sym) in st.symbols.iter().enumerate() {
                if sym == sp {
                    e.push(errors[f][a]);
                    g.push(u[f][a]);
                }
            }
        }
        // A small N: the 8-frame fit grades validation atoms up to about 1e3, and the tail
        // fitted there must not be extrapolated to 1 in 1e5 (the calibration refuses that).
        let opts = aceuq::stats::cutoff::CalibrationOptions::new(1000);
        pot.uq
            .calibration
            .push(aceuq::stats::cutoff::calibrate(sp, "gamma", &e, &g, &opts).unwrap());
    }
    // In without an upper cutoff, with `a` setting how many atoms the frame rule needs; P with a
    // finite one.
    let with_in_scale = |a: f64| {
        let mut m = pot.clone();
        for c in &mut m.uq.calibration {
            c.upper_rule = aceuq::stats::cutoff::UpperRule::Conditional;
            c.warnings.clear();
            if c.species == "In" {
                c.u_max = f64::INFINITY;
                c.conditional = Some(relation(a, None, Some(NO_UPPER_REASON)));
            } else {
                c.u_max = 1e3;
                c.conditional = Some(relation(0.02, Some(1e3), None));
            }
        }
        m
    };
    // Atoms at the saturation the frame rule needs, from the library (the fix asks the same).
    let need = |m: &aceuq::Potential| {
        let c = m.uq.calibration.iter().find(|c| c.species == "In").unwrap();
        c.conditional.as_ref().unwrap().atoms_to_halt(0.5)
    };
    let (saturating, haltable) = (with_in_scale(0.02), with_in_scale(0.25));
    assert!(need(&saturating) > 1e6, "{}", need(&saturating));
    let few = need(&haltable);
    assert!(
        few > 4.0 && few < 32.0,
        "an In entry 4 atoms cannot halt, 32 can: {few}"
    );

    let frame = &frames("tests/data/inp/test.xyz")[0];
    let in_ids: Vec<usize> = (0..frame.len())
        .filter(|&a| frame.symbols[a] == "In")
        .collect();
    assert_eq!(in_ids.len(), 32);
    let four_in: Vec<String> = in_ids[..4].iter().map(|a| (a + 1).to_string()).collect();
    let np = s.mpirun.as_ref().map(|_| 2);
    let warning = "WARNING: fix ace/uq/watch: gamma has no upper cutoff for In";
    for (case, m, group, warned) in [
        ("saturating", &saturating, "all", true),
        ("haltable", &haltable, "all", false),
        ("haltable_4_in", &haltable, "w", true),
    ] {
        let dir = workdir(SUITE, &format!("two_species_{case}"));
        save_model(m, &dir, "model.aceuq");
        write_data(frame, &["In", "P"], &dir, "data.lmp");
        let input = format!(
            "plugin load ${{plugin}}
units metal
boundary p p p
atom_style atomic
read_data data.lmp
pair_style ace/uq
pair_coeff * * model.aceuq In P
group p type 2
group w4 id {}
group w union p w4
fix watch {group} ace/uq/watch 10 quantity gamma lower auto upper auto halt yes
run 0
",
            four_in.join(" ")
        );
        let r = run_lammps_in(&s, &dir, &input, np, None);
        r.assert_ok(case);
        r.assert_contains("(upper frame)", case);
        assert_eq!(r.output.contains(warning), warned, "{case}: {}", r.output);
        assert!(
            !r.output.contains("no upper cutoff for P"),
            "{case}: P has one: {}",
            r.output
        );
        if warned {
            let sees = if group == "w" { 4 } else { 32 };
            r.assert_contains(
                &format!(
                    "to halt, the watch sees {sees}): atoms there never make this watch halt \
                     (the others still can)"
                ),
                case,
            );
            assert_eq!(r.count("has no upper cutoff"), 1, "{case}: {}", r.output);
        }
    }
}

/// A Li model with `gamma`, `gamma_local` and `distance` (fitted on 12 frames), calibrated as
/// `aceuq calibrate` does on the validation frames: gamma and distance get a fitted error scale,
/// so both sit on the jury of `upper vote` (gamma_local never sits). The calibration scores the two halting rules on its labelled frames and
/// stores its choice; these frames hold no unstable one (a tie: the frame rule), so the test
/// sets the stored rule to `vote` or keeps `frame`.
fn jury_model(vote: bool) -> aceuq::Potential {
    jury_model_with(vote, false)
}

/// [`jury_model`], with the sparse GP as a third juror when `gp`.
fn jury_model_with(vote: bool, gp: bool) -> aceuq::Potential {
    use aceuq::uq::Method;
    let train = frames("tests/data/li/train.xyz");
    let valid = frames("tests/data/li/valid.xyz");
    let mut m = aceuq::Potential::new(fit_model("tests/data/li/train.xyz", 12, &["Li"]));
    let cfg = aceuq::uq::UqConfig {
        active_set: true,
        clusters: Some(aceuq::uq::Partition::KMeans(2)),
        distance: true,
        gp,
        ..Default::default()
    };
    aceuq::uq::build(&m.model, &mut m.uq, &train[..12], &valid, &cfg, false).expect("estimators");
    let mut methods = vec![Method::Gamma, Method::GammaLocal, Method::Distance];
    if gp {
        methods.push(Method::Gp);
    }
    let r = aceuq::calibration::calibrate_potential(
        &m,
        &valid,
        &[],
        &[100_000],
        &Default::default(),
        &methods,
    )
    .expect("calibration");
    m.uq.calibration = r.calibration;
    let mut rule = r.halt_rule.expect("gamma and distance sit on the jury");
    let jury: &[&str] = if gp {
        &["gamma", "distance", "gp"]
    } else {
        &["gamma", "distance"]
    };
    assert_eq!(rule.jury, jury);
    rule.rule = if vote { "vote" } else { "frame" }.into();
    m.uq.halt_rule = Some(rule);
    m
}

/// "gamma:0.5 distance:1e-3" (a frame's `vote_p_frame`) as numbers in that order.
fn juror_values(f: &aceuq::Structure, key: &str) -> Vec<f64> {
    match f.info.get(key) {
        Some(aceuq::structure::InfoValue::Str(v)) => v
            .split(' ')
            .map(|kv| kv.split_once(':').expect("method:value").1.parse().unwrap())
            .collect(),
        other => panic!("{key}: {other:?}"),
    }
}

/// Issue 20: `upper vote` halts when an atom is above the upper cutoff of any juror or when the
/// frame rules of at least two jurors reach p_halt; `upper auto` votes when the calibration
/// chose the vote and applies the frame rule when it did not. On the heated liquid (serial,
/// deterministic) `upper vote` and `upper auto` with a stored vote halt at the same step; every
/// frame written carries each juror's frame probability, equal to the one recomputed by the
/// library from the frame's atoms and the stored error scales, and its verdict agrees with the
/// rule. On 1 and 2 ranks the halt frame gets the same probabilities. A model with one juror
/// only is refused with the reason.
#[test]
fn upper_vote_halts_by_the_jury_and_upper_auto_follows_the_calibration() {
    use aceuq::uq::Method;
    let Some(s) = setup("upper_vote_halts_by_the_jury_and_upper_auto_follows_the_calibration")
    else {
        return;
    };
    let voting = jury_model(true);
    let frame = &frames("tests/data/li/test.xyz")[0];
    let rel = |m: Method| {
        let c = voting
            .uq
            .calibration
            .iter()
            .find(|c| c.method == m.name() && c.cluster.is_none())
            .unwrap();
        (
            c.conditional.clone().expect("a fitted error scale"),
            c.u_max,
        )
    };
    let jury = [rel(Method::Gamma), rel(Method::Distance)];
    let mut steps = vec![];
    let mut halt = None;
    for (case, upper) in [("vote", "vote"), ("auto_votes", "auto")] {
        let dir = workdir(SUITE, &format!("upper_{case}"));
        save_model(&voting, &dir, "model.aceuq");
        write_data(frame, &["Li"], &dir, "data.lmp");
        let watch = format!(
            "fix watch all ace/uq/watch 20 dump candidates.xyz lower auto upper {upper} halt yes"
        );
        let r = run_lammps_in(&s, &dir, &heat_input(&watch, ""), None, None);
        r.assert_ok(case);
        r.assert_contains("halts by upper vote of gamma, distance", case);
        r.assert_contains("halting at step", case);
        r.assert_contains("by upper vote:", case);
        if upper == "auto" {
            r.assert_contains(
                "fix ace/uq/watch: upper auto votes: on the calibration's",
                case,
            );
        }
        let written = candidates(&dir);
        let last = written.last().unwrap();
        assert_eq!(last.config_type.as_deref(), Some("halt"), "{case}");
        steps.push(info_int(last, "step"));
        let mut checked = 0;
        for f in &written {
            let p_file = juror_values(f, "vote_p_frame");
            // Probabilities: never negative, a calm juror's 0 written as 0, not -0.
            assert!(
                p_file.iter().all(|p| !p.is_sign_negative()),
                "{case}: vote_p_frame {p_file:?}"
            );
            let lone = real_column(f, "lone");
            let mut p = vec![];
            let mut above = false;
            for ((c, u_max), m) in jury.iter().zip([Method::Gamma, Method::Distance]) {
                let u = &voting.per_atom(std::slice::from_ref(f), m).unwrap()[0];
                let sum: f64 = u
                    .iter()
                    .zip(lone)
                    .filter(|(_, l)| **l == 0.0)
                    .map(|(&v, _)| c.log_calm(v))
                    .sum();
                p.push(-sum.exp_m1());
                above |= u.iter().any(|&v| v > *u_max);
            }
            for (a, b) in p_file.iter().zip(&p) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs() + 1e-9,
                    "{case} step {}: vote_p_frame {p_file:?} vs library {p:?}",
                    info_int(f, "step")
                );
            }
            let votes = p.iter().filter(|&&x| x >= 0.5).count() as i64;
            // Decisions on a probability within 1e-3 of p_halt are not compared (the frame
            // holds positions to finite precision).
            if p.iter().any(|x| (x - 0.5).abs() < 1e-3) {
                continue;
            }
            assert_eq!(info_int(f, "votes"), votes, "{case}");
            let halts = above || votes >= 2;
            assert_eq!(
                f.config_type.as_deref() == Some("halt"),
                halts,
                "{case} step {}: p {p:?}, an atom above: {above}",
                info_int(f, "step")
            );
            checked += 1;
        }
        assert!(checked > 0, "{case}: no frame compared");
        halt = Some(last.clone());
        note(&format!(
            "upper {upper}: halted at step {} with votes {} and p {:?}; {} frames",
            steps.last().unwrap(),
            info_int(last, "votes"),
            juror_values(last, "vote_p_frame"),
            written.len()
        ));
    }
    assert_eq!(
        steps[0], steps[1],
        "upper vote and upper auto (vote stored)"
    );

    // Where the stored vote does not apply, upper auto keeps the frame rule and says why; given
    // numbers or none are never replaced by the vote. `run 0` on the configuration the vote
    // halted, or on the in-distribution start (what each case needs).
    let halt_frame = halt.clone().expect("a halt frame");
    let mut other_jury = voting.clone();
    if let Some(r) = other_jury.uq.halt_rule.as_mut() {
        r.jury = vec!["gamma".into(), "ensemble".into(), "distance".into()];
    }
    let cases: [(&str, &aceuq::Potential, &aceuq::Structure, &str, &str, bool); 6] = [
        // Watching gamma_local and voting: its own per-cluster upper cutoffs are not used.
        (
            "vote_gamma_local",
            &voting,
            frame,
            "quantity gamma_local lower auto upper vote halt yes",
            "halts by upper vote of gamma, distance",
            false,
        ),
        (
            "auto_gamma_local",
            &voting,
            frame,
            "quantity gamma_local lower auto upper auto halt yes",
            "this watch is on gamma_local: its own frame rule",
            false,
        ),
        (
            "auto_other_jury",
            &other_jury,
            &halt_frame,
            "lower auto upper auto halt yes",
            "not the one the calibration scored: the frame rule",
            true,
        ),
        (
            "auto_halt_no",
            &voting,
            &halt_frame,
            "lower 0 upper auto halt no",
            "",
            false,
        ),
        (
            "none",
            &voting,
            &halt_frame,
            "lower auto upper none halt yes",
            "",
            false,
        ),
        (
            "number",
            &voting,
            &halt_frame,
            "lower auto upper 1e9 halt yes",
            "",
            false,
        ),
    ];
    for (case, model, start, args, says, halts) in cases {
        let dir = workdir(SUITE, &format!("upper_{case}"));
        save_model(model, &dir, "model.aceuq");
        let lb = write_data(start, &["Li"], &dir, "data.lmp");
        let input = run0_input(&lb.boundary, args);
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(case);
        r.assert_contains(says, case);
        assert_eq!(
            r.output.contains("halting at step"),
            halts,
            "{case}: {}",
            r.output
        );
        if case != "vote_gamma_local" {
            assert!(!r.output.contains("upper vote of"), "{case}: {}", r.output);
            let written = if dir.join("candidates.xyz").exists() {
                candidates(&dir)
            } else {
                vec![]
            };
            assert!(
                written.iter().all(|f| !f.info.contains_key("votes")),
                "{case}"
            );
        }
    }

    // The calibration chose the frame rule: upper auto applies it, and says why.
    let dir = workdir(SUITE, "upper_auto_frame");
    save_model(&jury_model(false), &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let watch = "fix watch all ace/uq/watch 20 lower auto upper auto halt yes";
    let input = heat_input(watch, "").replace("run 30000", "run 0");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("upper_auto_frame");
    r.assert_contains("(upper frame)", "upper auto without a stored vote");
    r.assert_contains("upper auto uses the frame rule", "the reason");
    assert!(!r.output.contains("upper vote of"), "{}", r.output);

    // One juror only (gamma and gamma_local: gamma_local does not sit): refused with the reason.
    let dir = workdir(SUITE, "upper_vote_one_juror");
    save_model(&uq_model(), &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let watch = "fix watch all ace/uq/watch 20 upper vote halt yes";
    let input = heat_input(watch, "").replace("run 30000", "run 0");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "upper vote needs at least two of gamma, ensemble, distance and gp",
        "one juror",
    );
    r.assert_contains(
        "the model has 1 (gamma); ensemble: not in the model",
        "the reason",
    );

    // Distance recalibrated for another question (P(e > 2 eV/Å), as `aceuq calibrate --methods
    // distance --max-error 2` stores it) does not sit beside gamma's P(e > 1 eV/Å): one juror
    // is left, refused with the reason.
    let valid = frames("tests/data/li/valid.xyz");
    // `pot` with `method` recalibrated for P(e > 2 eV/Å), as `aceuq calibrate --methods M
    // --max-error 2` stores it: the result holds the model's other entries as they were.
    let recalibrated = |mut pot: aceuq::Potential, method: Method| {
        let settings = aceuq::calibration::CalibrateSettings {
            max_error: 2.0,
            ..Default::default()
        };
        let r = aceuq::calibration::calibrate_potential(
            &pot,
            &valid,
            &[],
            &[100_000],
            &settings,
            &[method],
        )
        .expect("recalibrated");
        pot.uq.calibration = r.calibration;
        pot
    };
    let mixed = recalibrated(jury_model(false), Method::Distance);
    assert!(
        mixed
            .uq
            .calibration
            .iter()
            .filter(|c| c.cluster.is_none())
            .all(|c| c.e_max == if c.method == "distance" { 2.0 } else { 1.0 })
    );
    let dir = workdir(SUITE, "upper_vote_other_question");
    save_model(&mixed, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let input = heat_input(watch, "").replace("run 30000", "run 0");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_error(
        "upper vote needs at least two of gamma, ensemble, distance and gp",
        "another question",
    );
    r.assert_contains(
        "distance: its Li relation gives P(e > 2 eV/Å) at p_halt 0.5, the jury's (gamma) P(e > 1 \
         eV/Å) at p_halt 0.5",
        "the reason",
    );

    // Gamma recalibrated instead, with distance and gp still answering P(e > 1 eV/Å): the larger
    // group that agrees votes without gamma.
    let regamma = recalibrated(jury_model_with(false, true), Method::Gamma);
    let dir = workdir(SUITE, "upper_vote_larger_group");
    save_model(&regamma, &dir, "model.aceuq");
    write_data(frame, &["Li"], &dir, "data.lmp");
    let input = heat_input(watch, "").replace("run 30000", "run 0");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("upper vote of the larger group");
    r.assert_contains("upper vote of distance, gp", "the jury");
    r.assert_contains(
        "gamma: its Li relation gives P(e > 2 eV/Å) at p_halt 0.5, the jury's (distance) P(e > 1 \
         eV/Å) at p_halt 0.5",
        "gamma left out",
    );

    // Each juror's largest u / u_max in a frame: distance's as the library computes it; the GP,
    // which saturates below the error scale 1 eV/Å needs, has no upper cutoff and is written
    // as nan (a 0 would read as far below one).
    let dir = workdir(SUITE, "upper_vote_ratio");
    save_model(&regamma, &dir, "model.aceuq");
    let lb = write_data(frame, &["Li"], &dir, "data.lmp");
    let input = run0_input(&lb.boundary, "lower 0 upper vote halt no");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("run 0 with upper vote of distance and gp");
    let f = &candidates(&dir)[0];
    let ratios = juror_values(f, "vote_u_over_u_max");
    assert_eq!(ratios.len(), 2, "{ratios:?}");
    for (m, got) in [Method::Distance, Method::Gp].into_iter().zip(ratios) {
        let u_max = regamma
            .uq
            .calibration
            .iter()
            .find(|c| c.method == m.name() && c.cluster.is_none())
            .unwrap()
            .u_max;
        let u = &regamma.per_atom(std::slice::from_ref(f), m).unwrap()[0];
        if m == Method::Gp {
            assert!(
                u_max.is_infinite(),
                "the GP has no upper cutoff here: {u_max}"
            );
            assert!(got.is_nan(), "gp: vote_u_over_u_max {got}");
        } else {
            assert!(u_max.is_finite(), "{u_max}");
            let want = u.iter().fold(0.0f64, |a, &v| a.max(v / u_max));
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "distance: vote_u_over_u_max {got}, library {want}"
            );
        }
    }

    // The halt frame on 1 and 2 ranks: the same probabilities (the ranks' sums add up).
    if s.mpirun.is_none() {
        note("upper vote: 2-rank part SKIPPED (ACEUQ_MPIRUN is not set)");
        return;
    }
    let halt = halt.expect("a halt frame");
    let mut got = vec![];
    for np in [None, Some(2)] {
        let dir = workdir(SUITE, &format!("upper_vote_np{}", np.unwrap_or(1)));
        save_model(&voting, &dir, "model.aceuq");
        let lb = write_data(&halt, &["Li"], &dir, "data.lmp");
        let input = run0_input(&lb.boundary, "lower 0 upper vote halt no");
        let r = run_lammps_in(&s, &dir, &input, np, None);
        r.assert_ok("run 0 with upper vote");
        let f = &candidates(&dir)[0];
        got.push((
            juror_values(f, "vote_p_frame"),
            info_int(f, "votes"),
            juror_values(f, "vote_u_over_u_max"),
        ));
    }
    assert_eq!(got[0].1, got[1].1, "votes on 1 and 2 ranks");
    for (a, b) in got[0].0.iter().zip(&got[1].0) {
        assert!((a - b).abs() <= 1e-9 * a.abs().max(1e-300), "p {a} vs {b}");
    }
    // The largest u / u_max: the ranks' maxima reduce to the one of all atoms.
    assert_eq!(got[0].2.len(), 2);
    for (a, b) in got[0].2.iter().zip(&got[1].2) {
        assert!(
            a.is_finite() && (a - b).abs() <= 1e-9 * a.abs(),
            "u / u_max {a} vs {b}"
        );
    }
}

/// Issue 20: where the calibration finds one juror's own frame rule better than gamma's frame
/// rule and the vote (contact, with labelled unstable Li frames), `upper auto` halts by that
/// juror alone: a compressed frame (closer contacts than any training pair) halts, the
/// uncompressed one does not, and the log says which rule halts.
#[test]
fn upper_auto_halts_by_the_juror_the_calibration_chose() {
    use aceuq::uq::Method;
    let Some(s) = setup("upper_auto_halts_by_the_juror_the_calibration_chose") else {
        return;
    };
    let mut pot = li_potential(&aceuq::uq::UqConfig {
        active_set: true,
        contact: true,
        ..Default::default()
    });
    let valid = frames("tests/data/li/valid.xyz");
    let high: Vec<_> = frames("tests/data/li/unstable.xyz")
        .into_iter()
        .step_by(2)
        .collect();
    let r = aceuq::calibration::calibrate_potential(
        &pot,
        &valid,
        &high,
        &[5000],
        &Default::default(),
        &[Method::Gamma, Method::Contact],
    )
    .expect("calibration");
    pot.uq.calibration = r.calibration;
    let rule = r.halt_rule.expect("a halting rule");
    assert_eq!(
        (rule.rule.as_str(), rule.juror.as_deref()),
        ("juror", Some("contact")),
        "{}",
        rule.note()
    );
    pot.uq.halt_rule = Some(rule);
    let u_max = pot
        .uq
        .stored_cutoffs(&pot.model, Method::Contact, 0)
        .unwrap()
        .1;
    let relation = pot
        .uq
        .stored_calibration(&pot.model, Method::Contact, 0, None)
        .and_then(|c| c.conditional.clone())
        .expect("contact's error relation");
    let calm = frames("tests/data/li/test.xyz")[1].clone();
    let squeeze = |f: f64| {
        let mut s = calm.clone();
        for p in s.positions.iter_mut() {
            p.iter_mut().for_each(|x| *x *= f);
        }
        for row in s.cell.as_mut().unwrap().iter_mut() {
            row.iter_mut().for_each(|x| *x *= f);
        }
        s
    };
    // (largest u, P(some atom errs above e_max)) of a frame.
    let judge = |f: &aceuq::Structure| {
        let u = pot
            .per_atom(std::slice::from_ref(f), Method::Contact)
            .unwrap()
            .remove(0);
        let log_calm: f64 = u.iter().map(|&v| relation.log_calm(v)).sum();
        (u.iter().copied().fold(0.0, f64::max), -log_calm.exp_m1())
    };
    // A frame squeezed until an atom is above u_max, and one squeezed less: every atom below
    // u_max, but the frame probability at p_halt (one frame rule suffices for a jury of one).
    let above = squeeze(0.85);
    let f_prob = (0..80)
        .map(|k| 1.0 - 0.0025 * k as f64)
        .find(|&f| {
            let (top, p) = judge(&squeeze(f));
            top < u_max && p >= 0.6
        })
        .expect("a squeeze where the frame rule alone halts");
    let by_probability = squeeze(f_prob);
    let (top, p) = judge(&calm);
    assert!(top < u_max && p < 0.5, "calm: {top} {p} (u_max {u_max})");
    assert!(judge(&above).0 > u_max, "{u_max}");
    for (case, frame, halts) in [
        ("juror_calm", &calm, false),
        ("juror_above", &above, true),
        ("juror_probability", &by_probability, true),
    ] {
        let dir = workdir(SUITE, case);
        save_model(&pot, &dir, "model.aceuq");
        let lb = write_data(frame, &["Li"], &dir, "data.lmp");
        let input = run0_input(&lb.boundary, "lower auto upper auto halt yes");
        let r = run_lammps_in(&s, &dir, &input, None, None);
        r.assert_ok(case);
        r.assert_contains("halts by contact's frame rule", case);
        assert_eq!(
            r.output
                .contains("fix ace/uq/watch: halting at step 0 by contact's frame rule"),
            halts,
            "{case}: {}",
            r.output
        );
        if case == "juror_probability" {
            r.assert_contains(
                "0 of 1 jurors have an atom above their upper cutoff, 1 frame",
                case,
            );
        }
    }
}
