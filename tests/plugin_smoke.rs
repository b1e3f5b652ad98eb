//! Smoke test of the LAMMPS plugin: the real `lmp` loads `aceuqplugin.so` (by `plugin load` and
//! through `LAMMPS_PLUGIN_PATH`), the styles register and reach the Rust library, serially and
//! under `mpirun -np 2`, printing once per run rather than once per rank.

mod common;
use common::*;

const SUITE: &str = "plugin_smoke";

fn model_input(load: bool) -> String {
    format!(
        "{}units metal
lattice bcc 3.51
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 6.94
pair_style ace/uq
pair_coeff * * model.aceuq Li
run 0
",
        if load { "plugin load ${plugin}\n" } else { "" }
    )
}

/// The plugin's model line, naming the kernel family the CPU runs (LAMMPS runs without
/// ACEUQ_SIMD in these tests).
fn model_line() -> String {
    format!(
        "ace/uq: model model.aceuq (aceuq {}, {} kernels)",
        env!("CARGO_PKG_VERSION"),
        aceuq::simd::cpu_features().widest()
    )
}

/// The committed smoke input loads the plugin, lists both styles and exits 0.
#[test]
fn smoke_input_lists_both_styles_and_exits_zero() {
    let Some(s) = setup("smoke_input_lists_both_styles_and_exits_zero") else {
        return;
    };
    let input = std::fs::read_to_string(repo("tests/lammps/in.plugin_smoke")).expect("smoke input");
    let dir = workdir(SUITE, "smoke_input");
    let r = run_lammps_in(&s, &dir, &input, None, None);
    r.assert_ok("smoke_input");
    r.assert_contains("pair style plugin ace/uq", "plugin list");
    r.assert_contains("fix style plugin ace/uq/watch", "plugin list");
}

fn check_runs(np: Option<u32>, case: &str) {
    let Some(s) = (if np.is_some() {
        setup_mpi(case)
    } else {
        setup(case)
    }) else {
        return;
    };
    let dir = workdir(SUITE, case);
    save_model(
        &fit_model("tests/data/li/train.xyz", 3, &["Li"]),
        &dir,
        "model.aceuq",
    );
    let r = run_lammps_in(&s, &dir, &model_input(true), np, None);
    r.assert_ok(case);
    r.assert_contains("Loading plugin: ace/uq pair style", case);
    assert_eq!(
        r.count(&model_line()),
        1,
        "{case}: model line once\n{}",
        r.output
    );
}

#[test]
fn plugin_runs_serial() {
    check_runs(None, "plugin_runs_serial");
}

#[test]
fn plugin_runs_on_two_ranks() {
    check_runs(Some(2), "plugin_runs_on_two_ranks");
}

/// With `LAMMPS_PLUGIN_PATH` pointing at the plugin folder, LAMMPS loads `*plugin.so` at start,
/// so `pair_style ace/uq` works without `plugin load`.
#[test]
fn lammps_plugin_path_autoloads_the_plugin() {
    let Some(s) = setup("lammps_plugin_path_autoloads_the_plugin") else {
        return;
    };
    let dir = workdir(SUITE, "autoload");
    save_model(
        &fit_model("tests/data/li/train.xyz", 3, &["Li"]),
        &dir,
        "model.aceuq",
    );
    let r = run_lammps_in(&s, &dir, &model_input(false), None, Some(&s.plugin_dir));
    r.assert_ok("autoload");
    // LAMMPS 22 Jul 2025 reports auto-loading as "Loaded 1 plugins from <dir>".
    r.assert_contains(
        &format!("plugins from {}", s.plugin_dir.display()),
        "autoload",
    );
    r.assert_contains(&model_line(), "autoload");
}
