//! The `aceuq` command line.
//!
//! Top layer (feature `cli`): argument parsing, progress and tables for people. Nothing below
//! imports it.

pub mod activeset;
pub mod albench;
pub mod calibrate;
pub mod check;
pub mod closed_loop;
pub mod convert;
pub mod cutoff;
pub mod eval;
pub mod export;
pub mod fit;
pub mod info;
pub mod report;
pub mod select;
pub mod uqbench;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// aceuq: linear ACE potentials with per-atom uncertainty for LAMMPS.
#[derive(Parser, Debug)]
#[command(name = "aceuq", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit a linear ACE potential to energies and forces in extended XYZ files.
    Fit(fit::FitArgs),
    /// Evaluate a model on labelled data: error table, optional per-atom CSV.
    Eval(eval::EvalArgs),
    /// Show what a model file contains.
    Info(InfoArgs),
    /// Statistical cutoff (1 - 1/N quantile of the best-fitting distribution) for any column of
    /// numbers: uncertainties, DeePMD model deviations, ML-PACE gammas.
    Cutoff(cutoff::CutoffArgs),
    /// Statistical cutoffs (lower: worth labelling, upper: unstable) per species and
    /// uncertainty method, stored in the model for the LAMMPS fix (`lower auto upper auto`).
    Calibrate(calibrate::CalibrateArgs),
    /// Check stored cutoffs on labelled data: observed vs expected exceedances of the lower
    /// cutoffs on held-out data, and frames halted vs truly unstable at the upper cutoffs.
    CheckCutoffs(check::CheckArgs),
    /// Figures and a Markdown summary of each uncertainty method on labelled data: parity plots
    /// (predicted vs reference energy per atom and force components, RMSE and MAE), histograms
    /// with fits and cutoffs, F1/precision/recall maps, calibration curves, uncertainty vs
    /// error, QQ and exceedance plots against the cutoff models, error vs uncertainty with the
    /// upper cutoff.
    Report(report::ReportArgs),
    /// Write one frame of extended XYZ as a LAMMPS data file (rotated into LAMMPS's frame).
    ToLammps(convert::ToLammpsArgs),
    /// Export a model to pacemaker's .yace for ML-PACE's `pair_style pace` (radial functions
    /// fitted on a pacemaker base, fidelity measured and printed).
    Export(export::ExportArgs),
    /// (Re)build a model's MaxVol active sets (gamma, optionally clustered gamma_local) from
    /// data, streaming.
    Activeset(activeset::ActiveSetArgs),
    /// Choose candidate structures that extend the active set most, for DFT labelling.
    Select(select::SelectArgs),
    /// Closed-loop active learning with LAMMPS: fit, explore, select, label, refit, until the
    /// explorations stay below the lower cutoff (resumable).
    Loop(closed_loop::LoopArgs),
    /// Active-learning benchmark on a labelled pool in time order (Annevelink & Viswanathan).
    AlBench(albench::AlBenchArgs),
    /// Uncertainty benchmark: homogeneous vs heterogeneous data at several basis sizes.
    UqBench(uqbench::UqBenchArgs),
}

/// Arguments of `aceuq info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Model file: an aceuq model (*.aceuq), a pacemaker potential (.ace, .yace, B-basis
    /// .yaml), or the cutoffs file `aceuq calibrate` wrote for one (*.toml).
    #[arg(long, short)]
    pub model: PathBuf,
    /// With a pacemaker potential: its active-set inverse (.asi), described and checked.
    #[arg(long)]
    pub active_set: Option<PathBuf>,
    /// With a pacemaker potential: its clustered local active sets (.lasi; default: the active
    /// set's name with .lasi, if that file exists), listed per cluster.
    #[arg(long)]
    pub local_active_set: Option<PathBuf>,
    /// With a pacemaker potential: its calibrated cutoffs (.toml), shown and checked against
    /// the potential and --active-set.
    #[arg(long)]
    pub cutoffs: Option<PathBuf>,
}

/// Options for reading labelled extended XYZ, shared by commands.
///
/// The keys follow ASE: `energy=` on the comment line (eV) and the per-atom property
/// `forces:R:3` (eV/Å). Data labelled under other names (`REF_energy`, `dft_forces`, ...) are
/// read with `--energy-key` / `--forces-key`; a command that needs a label it does not find
/// says which keys the frame has instead.
#[derive(clap::Args, Debug, Clone)]
pub struct DataKeys {
    /// Comment-line key of the reference energy (eV).
    #[arg(long, default_value = "energy")]
    pub energy_key: String,
    /// Per-atom property (R:3) holding the reference forces (eV/Å).
    #[arg(long, default_value = "forces")]
    pub forces_key: String,
}

/// [`DataKeys`] for commands that use only the reference forces (`calibrate`,
/// `check-cutoffs`): no `--energy-key` to set in vain.
#[derive(clap::Args, Debug, Clone)]
pub struct ForceKey {
    /// Per-atom property (R:3) holding the reference forces (eV/Å).
    #[arg(long, default_value = "forces")]
    pub forces_key: String,
    /// Accepted for scripts written before these commands ignored energies; unused (a warning
    /// says so).
    #[arg(long, hide = true)]
    pub energy_key: Option<String>,
}

impl ForceKey {
    /// The keys to read with: no energy key (an empty one matches none), so that an energy
    /// these commands do not use cannot stop them. Warns about a given --energy-key: call once
    /// per command.
    pub fn keys(&self) -> DataKeys {
        if let Some(k) = &self.energy_key {
            crate::progress::warn(&format!(
                "--energy-key {k} is ignored: this command uses only the reference forces"
            ));
        }
        DataKeys {
            energy_key: String::new(),
            forces_key: self.forces_key.clone(),
        }
    }
}

impl DataKeys {
    /// Read every frame of the given files.
    pub fn read(&self, files: &[PathBuf]) -> Result<Vec<crate::Structure>> {
        let opts = crate::io::extxyz::ReadOptions {
            energy_key: self.energy_key.clone(),
            forces_key: self.forces_key.clone(),
            ..Default::default()
        };
        let mut out = Vec::new();
        for f in files {
            let frames = crate::io::extxyz::read_file(f, &opts)?;
            if frames.is_empty() {
                anyhow::bail!("{}: no frames", f.display());
            }
            out.extend(frames);
        }
        Ok(out)
    }

    /// An error when a frame of `frames` lacks `label`, naming the key, the frame and the keys
    /// it has instead; `otherwise` says what else the user can do (e.g. "or fit forces only
    /// with --force-only"), appended after the suggested option.
    pub fn require(
        &self,
        frames: &[crate::Structure],
        label: crate::io::extxyz::Label,
        otherwise: &str,
    ) -> Result<()> {
        use crate::io::extxyz::Label;
        let (key, option) = match label {
            Label::Energy => (&self.energy_key, "--energy-key"),
            Label::Forces => (&self.forces_key, "--forces-key"),
        };
        let Some(m) = crate::io::extxyz::missing_label(frames, label, key) else {
            return Ok(());
        };
        let hint = match m.suggestion() {
            Some(k) => format!("use {option} {k}"),
            None => format!("label the frames, or name the key with {option}"),
        };
        anyhow::bail!(
            "{m}: {hint}{}{otherwise}",
            if otherwise.is_empty() { "" } else { ", " }
        )
    }

    /// A warning on standard error when a frame of `frames` lacks `label` (`consequence`: what
    /// is then not reported), with the keys it has instead.
    pub fn warn_missing(
        &self,
        frames: &[crate::Structure],
        label: crate::io::extxyz::Label,
        consequence: &str,
    ) {
        use crate::io::extxyz::Label;
        let (key, option) = match label {
            Label::Energy => (&self.energy_key, "--energy-key"),
            Label::Forces => (&self.forces_key, "--forces-key"),
        };
        if let Some(m) = crate::io::extxyz::missing_label(frames, label, key) {
            let hint = m
                .suggestion()
                .map(|k| format!(" (use {option} {k})"))
                .unwrap_or_default();
            crate::progress::warn(&format!("{m}: {consequence}{hint}"));
        }
    }
}

/// The long names of `command`'s switches (options that take no value, such as
/// `active-set`), for callers that build a command line from keyword arguments: a switch set to
/// false is left out, while false for an option that takes a value must reach it. None for an
/// unknown command.
pub fn switches(command: &str) -> Option<Vec<String>> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let sub = cli.get_subcommands().find(|c| c.get_name() == command)?;
    Some(
        sub.get_arguments()
            .filter(|a| !a.get_action().takes_values())
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect(),
    )
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    main_from(std::env::args_os())
}

/// The command line run on `args` (the first is the program name), as [`main`] runs it on the
/// process's own; the Python package's `aceuq.cli()` calls this. Argument errors, `--help` and
/// `--version` print what clap prints and return its exit code instead of exiting the process.
pub fn main_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    run_from(args).0
}

/// [`main_from`], also returning the message of a failure (what it printed after "error: "),
/// so that a caller in another language can put it into its own exception.
pub fn run_from<I, T>(args: I) -> (i32, Option<String>)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            let code = e.exit_code();
            return (code, (code != 0).then(|| e.to_string().trim().to_string()));
        }
    };
    // Far more threads than cores only costs (100 000 threads took minutes to start): capped,
    // with a word.
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let cap = (4 * cores).max(64);
    let threads = cli.threads.map(|n| {
        if n > cap {
            eprintln!(
                "warning: --threads {n} is far more than the {cores} cores here: using {cap}"
            );
            cap
        } else {
            n
        }
    });
    // The command's own pool, not the process's global one: a process that has already used
    // the global pool (the Python package's calculator, then `aceuq.fit(threads=1)`) still gets
    // the threads asked for.
    let pool = threads.and_then(|n| {
        // The main thread's stack size: the command runs on a worker of this pool.
        match rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .stack_size(8 << 20)
            .build()
        {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!(
                    "warning: could not start {n} threads ({e}): using the process's {}",
                    rayon::current_num_threads()
                );
                None
            }
        }
    });
    if let Err(e) = check_paths(&cli.command) {
        let m = error_text(&e);
        eprintln!("error: {m}");
        return (1, Some(m));
    }
    let dispatch = || match &cli.command {
        Command::Fit(a) => fit::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Info(a) => info(a),
        Command::Cutoff(a) => cutoff::run(a),
        Command::ToLammps(a) => convert::run(a),
        Command::Export(a) => export::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::CheckCutoffs(a) => check::run(a),
        Command::Report(a) => report::run(a),
        Command::Activeset(a) => activeset::run(a),
        Command::Select(a) => select::run(a),
        Command::Loop(a) => closed_loop::run(a),
        Command::AlBench(a) => albench::run(a),
        Command::UqBench(a) => uqbench::run(a),
    };
    let result = match &pool {
        Some(p) => p.install(dispatch),
        None => dispatch(),
    };
    match result {
        Ok(()) => (0, None),
        Err(e) => {
            let m = error_text(&e);
            eprintln!("error: {m}");
            (1, Some(m))
        }
    }
}

/// A warning when the same frame (same species, positions, cell and periodicity, bit for bit) is
/// given more than once among `sets` (option name, frames): within one option, or in two (e.g.
/// `--train` and `--valid`). Different files pass the path checks, but a copied frame counts
/// twice: in a fit it is validated on its own training data, in a calibration its atoms count
/// twice in every tail and error fit and the stated sampling spread is too narrow. Says how many
/// copies and names the first; `consequence(copy's option, earlier frame's option)` says what
/// such a copy does to this command (each different consequence is said once).
pub(crate) fn warn_repeated_frames(
    sets: &[(&str, &[crate::Structure])],
    consequence: &dyn Fn(&str, &str) -> &'static str,
) {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    // Bit patterns, so that a frame equals itself (NaN) and -0 differs from 0.
    let cell = |s: &crate::Structure| s.cell.map(|c| c.map(|r| r.map(f64::to_bits)));
    fn positions(s: &crate::Structure) -> impl Iterator<Item = [u64; 3]> + '_ {
        s.positions.iter().map(|p| p.map(f64::to_bits))
    }
    let key = |s: &crate::Structure| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&s.symbols, s.pbc, cell(s)).hash(&mut h);
        positions(s).for_each(|p| p.hash(&mut h));
        h.finish()
    };
    let same = |a: &crate::Structure, b: &crate::Structure| {
        (&a.symbols, a.pbc, cell(a)) == (&b.symbols, b.pbc, cell(b))
            && positions(a).eq(positions(b))
    };
    let mut seen: HashMap<u64, Vec<(&str, &crate::Structure)>> = HashMap::new();
    let mut repeats = 0usize;
    let mut first: Option<String> = None;
    let mut consequences: Vec<&'static str> = Vec::new();
    for (option, frames) in sets {
        for s in frames.iter() {
            if s.positions.is_empty() {
                continue;
            }
            let bucket = seen.entry(key(s)).or_default();
            if let Some((o, earlier)) = bucket.iter().find(|(_, e)| same(e, s)) {
                repeats += 1;
                let c = consequence(option, o);
                if !consequences.contains(&c) {
                    consequences.push(c);
                }
                first.get_or_insert_with(|| {
                    format!("{option} {} repeats {o} {}", s.origin, earlier.origin)
                });
            } else {
                bucket.push((option, s));
            }
        }
    }
    if let Some(first) = first {
        crate::progress::warn(&format!(
            "{repeats} cop{} of frames given earlier ({first}): {}; remove the copies",
            if repeats == 1 { "y" } else { "ies" },
            consequences.join("; ")
        ));
    }
}

/// A file path as a file: the canonical path of an existing file, or of its folder joined with
/// its name for one not written yet (`None` if neither resolves).
fn file_identity(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = std::fs::canonicalize(p) {
        return Some(c);
    }
    let name = p.file_name()?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::canonicalize(dir).ok().map(|d| d.join(name))
}

/// Refuses, before any work, an output that would replace one of the command's inputs or
/// another of its outputs (a slip such as `check-cutoffs --out model.aceuq` replaced the model
/// with a table, `calibrate --out valid.xyz` the labelled data with a model), and an input
/// file given twice where its frames would count twice (`dup_groups`: groups of options whose
/// files must all differ, e.g. `--valid` and `--high`). Paths are compared as files, so
/// `./a.xyz` and `a.xyz` are the same.
pub(crate) fn refuse_clashing_paths(
    outputs: &[(&str, &Path)],
    inputs: &[(&str, &Path)],
    dup_groups: &[&[&str]],
) -> Result<()> {
    let outs: Vec<(&str, &Path, Option<PathBuf>)> = outputs
        .iter()
        .map(|&(o, p)| (o, p, file_identity(p)))
        .collect();
    let ins: Vec<(&str, &Path, Option<PathBuf>)> = inputs
        .iter()
        .map(|&(o, p)| (o, p, file_identity(p)))
        .collect();
    for (k, (o, p, id)) in outs.iter().enumerate() {
        let Some(id) = id else { continue };
        if let Some((io, ip, _)) = ins.iter().find(|(_, _, j)| j.as_ref() == Some(id)) {
            anyhow::bail!(
                "{o} {} is the file given as {io} {}: writing it would replace that input; \
                 choose another output file",
                p.display(),
                ip.display()
            );
        }
        if let Some((o2, p2, _)) = outs[..k].iter().find(|(_, _, j)| j.as_ref() == Some(id)) {
            anyhow::bail!(
                "{o} {} and {o2} {} are the same file: give them different names",
                p.display(),
                p2.display()
            );
        }
    }
    for group in dup_groups {
        let members: Vec<&(&str, &Path, Option<PathBuf>)> =
            ins.iter().filter(|(o, _, _)| group.contains(o)).collect();
        for (k, (o, p, id)) in members.iter().enumerate() {
            let Some(id) = id else { continue };
            if let Some((o2, p2, _)) = members[..k].iter().find(|(_, _, j)| j.as_ref() == Some(id))
            {
                let which = if o == o2 {
                    format!("{o} lists it twice ({} and {})", p2.display(), p.display())
                } else {
                    format!(
                        "it is given as {o2} {} and as {o} {}",
                        p2.display(),
                        p.display()
                    )
                };
                anyhow::bail!(
                    "{}: {which}, so its frames would count twice; give each file once",
                    p.display()
                );
            }
        }
    }
    Ok(())
}

/// The output/input path checks of [`refuse_clashing_paths`] for every command that writes
/// files next to inputs it reads.
fn check_paths(cmd: &Command) -> Result<()> {
    fn many<'a>(o: &'a str, v: &'a [PathBuf]) -> impl Iterator<Item = (&'a str, &'a Path)> {
        v.iter().map(move |p| (o, p.as_path()))
    }
    fn one<'a>(o: &'a str, v: &'a Option<PathBuf>) -> impl Iterator<Item = (&'a str, &'a Path)> {
        v.iter().map(move |p| (o, p.as_path()))
    }
    type Paths<'a> = Vec<(&'a str, &'a Path)>;
    let (outs, ins, groups): (Paths, Paths, &[&[&str]]) = match cmd {
        Command::Fit(a) => (
            vec![("--out", a.out.as_path())],
            many("--train", &a.train)
                .chain(many("--valid", &a.valid))
                .chain(one("--config", &a.config))
                .collect(),
            &[],
        ),
        Command::Eval(a) => (
            one("--per-atom", &a.per_atom).collect(),
            std::iter::once(("--model", a.model.as_path()))
                .chain(many("--data", &a.data))
                .collect(),
            &[],
        ),
        Command::Cutoff(a) => (
            one("--plot", &a.plot).collect(),
            vec![("--values", a.values.as_path())],
            &[],
        ),
        Command::ToLammps(a) => (
            vec![("--out", a.out.as_path())],
            vec![("--data", a.data.as_path())],
            &[],
        ),
        Command::Export(a) => (
            vec![("--output", a.output.as_path())],
            std::iter::once(("--model", a.model.as_path()))
                .chain(many("--data", &a.data))
                .collect(),
            &[],
        ),
        // The model itself is the default output (updated in place): not a clash.
        Command::Calibrate(a) => (
            one("--out", &a.out).collect(),
            one("--active-set", &a.active_set)
                .chain(one("--local-active-set", &a.local_active_set))
                .chain(many("--valid", &a.valid))
                .chain(one("--pool", &a.pool))
                .chain(many("--high", &a.high))
                .collect(),
            &[&["--valid", "--high"]],
        ),
        Command::CheckCutoffs(a) => (
            one("--out", &a.out)
                .chain(one("--frames", &a.frames))
                .collect(),
            std::iter::once(("--model", a.model.as_path()))
                .chain(one("--active-set", &a.active_set))
                .chain(one("--local-active-set", &a.local_active_set))
                .chain(one("--cutoffs", &a.cutoffs))
                .chain(many("--data", &a.data))
                .chain(many("--novel", &a.novel))
                .collect(),
            &[&["--data", "--novel"]],
        ),
        Command::Activeset(a) => (
            one("--out", &a.out).collect(),
            many("--data", &a.data).collect(),
            &[],
        ),
        Command::Select(a) => (
            vec![("--out", a.out.as_path())],
            std::iter::once(("--model", a.model.as_path()))
                .chain(one("--active-set", &a.active_set))
                .chain(many("--candidates", &a.candidates))
                .collect(),
            &[&["--candidates"]],
        ),
        _ => (vec![], vec![], &[]),
    };
    refuse_clashing_paths(&outs, &ins, groups)?;
    // An output whose folder is missing failed only when written, after all the work.
    for (flag, p) in &outs {
        if p.is_dir() {
            bail!("{flag} {} is a folder: give a file path", p.display());
        }
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            bail!(
                "{flag} {}: the folder {} does not exist (create it first)",
                p.display(),
                dir.display()
            );
        }
        // A folder that takes no new file (read-only, /proc, no permission) failed only when
        // the result was written too: outputs are written through a temporary file beside
        // them, so try one now. Devices (/dev/null) are written in place.
        if !crate::io::is_special_file(p) {
            let probe = dir.join(format!(".aceuq-probe{}", std::process::id()));
            // create_new: never opens (and so never empties) a file or link already there.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => bail!(
                    "{flag} {}: cannot create a file in the folder {} ({e}): choose a folder \
                     you can write to",
                    p.display(),
                    dir.display()
                ),
            }
        }
    }
    // Lists that name a thing twice (a species fitted twice, a method calibrated twice with
    // every warning printed twice, a figure written twice).
    let methods = |v: &[crate::uq::Method]| -> Vec<String> {
        v.iter().map(|m| m.name().to_string()).collect()
    };
    let lists: Vec<(&str, &str, Vec<String>)> = match cmd {
        Command::Fit(a) => vec![("--species", "species", a.species.clone())],
        Command::ToLammps(a) => vec![("--species", "species", a.species.clone())],
        Command::AlBench(a) => vec![
            ("--species", "species", a.species.clone()),
            ("--method", "selector", a.method.clone()),
        ],
        Command::Calibrate(a) => vec![("--methods", "method", methods(&a.methods))],
        Command::CheckCutoffs(a) => vec![("--methods", "method", methods(&a.methods))],
        Command::Report(a) => vec![
            ("--methods", "method", methods(&a.methods)),
            ("--formats", "format", a.formats.clone()),
        ],
        // select --elements gives each atom type's element: types may share one.
        _ => vec![],
    };
    for (flag, what, list) in lists {
        if let Some(k) = (1..list.len()).find(|&k| list[..k].contains(&list[k])) {
            bail!("{flag} names {} twice: give each {what} once", list[k]);
        }
    }
    Ok(())
}

/// The output folder of a benchmark (`--out`), created if missing; a file there is refused.
/// Dropped without [`OutFolder::keep`] (the run failed), a folder created here that is still
/// empty is removed again, so a failed run leaves nothing behind.
pub(crate) struct OutFolder {
    path: PathBuf,
    created: bool,
    keep: bool,
}

impl OutFolder {
    pub(crate) fn create(path: &Path) -> Result<Self> {
        if path.exists() && !path.is_dir() {
            bail!(
                "--out {}: a file is there; give a folder (it receives several files)",
                path.display()
            );
        }
        let created = !path.exists();
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the folder {}", path.display()))?;
        Ok(OutFolder {
            path: path.to_path_buf(),
            created,
            keep: false,
        })
    }

    /// The run succeeded: keep the folder.
    pub(crate) fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for OutFolder {
    fn drop(&mut self) {
        if self.created && !self.keep {
            // Only an empty folder goes (remove_dir fails otherwise).
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// A species name of a comma list (`--species "Al, Mg"`): trimmed, not empty, an element
/// symbol in its usual spelling ("li" -> "Li", as the data reader and ASE read it).
pub(crate) fn species_name(s: &str) -> std::result::Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        Err("an empty species name (a stray comma?)".into())
    } else {
        Ok(crate::elements::canonical_symbol(t).into_owned())
    }
}

/// An error and its causes, each said once: `context: error: cause`. The crate's errors
/// include their cause in their own message (so that the C ABI and library users, who see only
/// that message, get all of it), so a cause whose text is already in the message so far is left
/// out (anyhow's `{:#}` would repeat it: "Is a directory (os error 21): Is a directory (os
/// error 21)").
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

/// Check a number given on the command line: the error says which flag, what it must be and
/// what it got ("--cutoff must be a number of Å above 0.5 and at most 30, got -1").
pub(crate) fn check_number(flag: &str, v: f64, ok: bool, want: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        anyhow::bail!("{flag} must be {want}, got {v}")
    }
}

/// [`check_number`] for an optional flag.
pub(crate) fn check_given(
    flag: &str,
    v: Option<f64>,
    ok: impl Fn(f64) -> bool,
    want: &str,
) -> Result<()> {
    v.map_or(Ok(()), |v| check_number(flag, v, ok(v), want))
}

/// `--active-set` / `--cutoffs` name the files kept beside a pacemaker potential; an aceuq
/// model (`model`) keeps both inside, so either option with it is an error.
pub fn refuse_pacemaker_options(
    model: &Path,
    active_set: &Option<PathBuf>,
    cutoffs: &Option<PathBuf>,
) -> Result<()> {
    if active_set.is_some() || cutoffs.is_some() {
        anyhow::bail!(
            "--active-set and --cutoffs are for pacemaker potentials (.ace, .yace, .yaml); an \
             aceuq model ({}) keeps its active sets and cutoffs inside",
            model.display()
        );
    }
    Ok(())
}

/// Load a model with the path in the error context.
pub fn load_model(path: &Path) -> Result<crate::potential::Potential> {
    crate::potential::Potential::load(path).with_context(|| "cannot load the model".to_string())
}

fn info(args: &InfoArgs) -> Result<()> {
    if args.model.extension().and_then(|e| e.to_str()) == Some("toml") {
        if args.active_set.is_some() || args.cutoffs.is_some() || args.local_active_set.is_some() {
            anyhow::bail!(
                "--active-set, --local-active-set and --cutoffs go with a pacemaker potential as \
                 --model, not with a cutoffs file"
            );
        }
        print!("{}", info::pace_cutoffs_text(&args.model)?);
        return Ok(());
    }
    if crate::pace::is_pacemaker_potential(&args.model) {
        let local = match &args.active_set {
            Some(a) => pacemaker_local_active_set(a, args.local_active_set.as_deref())?,
            None => args.local_active_set.clone(),
        };
        print!(
            "{}",
            info::pace_text(
                &args.model,
                args.active_set.as_deref(),
                local.as_deref(),
                args.cutoffs.as_deref()
            )?
        );
        return Ok(());
    }
    if args.local_active_set.is_some() {
        anyhow::bail!(
            "--local-active-set is for pacemaker potentials (.ace, .yace, .yaml); an aceuq model \
             ({}) keeps its clustered active sets inside",
            args.model.display()
        );
    }
    refuse_pacemaker_options(&args.model, &args.active_set, &args.cutoffs)?;
    let pot = load_model(&args.model)?;
    let m = &pot.model;
    println!("model      {}", args.model.display());
    println!("species    {}", m.species.join(", "));
    let list = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let bc = &m.basis_config;
    println!(
        "basis      nmax {}, lmax {}{}",
        list(&bc.nmax),
        list(&bc.lmax),
        if bc.max_species.is_empty() {
            String::new()
        } else {
            format!(
                ", max_species {} (neighbour species per function)",
                list(&bc.max_species)
            )
        }
    );
    for s in 0..m.nspecies() {
        let b = &m.bases[s];
        let maxo = (0..b.len()).map(|f| b.order(f)).max().unwrap_or(0);
        let by: Vec<String> = (1..=maxo)
            .map(|o| {
                (0..b.len())
                    .filter(|&f| b.order(f) == o)
                    .count()
                    .to_string()
            })
            .collect();
        println!(
            "  {:<4} {} functions (by order {}), E0 = {:.6} eV",
            m.species[s],
            b.len(),
            by.join("/"),
            m.e0[s]
        );
    }
    let ns = m.nspecies();
    for s in 0..ns {
        for z in 0..ns {
            let r = &m.radial[s * ns + z];
            let c = &m.core[s * ns + z];
            println!(
                "  pair {}-{}: cutoff {:.3} Å, radial window from {:.3} Å, ZBL core below {:.3} Å",
                m.species[s], m.species[z], r.rc, r.r0, c.r_out
            );
        }
    }
    if !m.fit_info.metrics.is_empty() {
        println!(
            "\nfit on {} structures ({} atoms):",
            m.fit_info.n_train_structures, m.fit_info.n_train_atoms
        );
        let fs = &m.fit_info.settings;
        println!(
            "weights: energy {}, forces {}; ridge {}",
            fs.energy_weight, fs.force_weight, fs.ridge
        );
        if let Some(c) = &m.fit_info.basis_choice {
            print!("{}", crate::model::grow::basis_choice_text(c));
        }
        if let Some(c) = &m.fit_info.ridge_choice {
            print!("{}", crate::model::fit::ridge_choice_text(c));
        }
        print!("{}", crate::model::fit::metrics_table(&m.fit_info.metrics));
    }
    let methods: Vec<&str> = pot.uq.methods().iter().map(|x| x.name()).collect();
    println!(
        "\nuncertainty: {}",
        if methods.is_empty() {
            "none".to_string()
        } else {
            methods.join(", ")
        }
    );
    if let Some(c) = &pot.uq.contact {
        let sp = &pot.model.species;
        let mut pairs = vec![];
        for a in 0..sp.len() {
            for b in a..sp.len() {
                pairs.push(format!("{}-{} {:.4} Å", sp[a], sp[b], c.shortest(a, b)));
            }
        }
        println!(
            "contact: shortest training distances {} (u = this over an atom's closest \
             neighbour's distance)",
            pairs.join(", ")
        );
    }
    if let Some(l) = &pot.uq.local {
        println!(
            "\ngamma_local clusters ({}, k-means space {}); cutoffs from `aceuq calibrate` (the cluster's own, else its species'):",
            match l.partition {
                crate::uq::Partition::KMeans(k) =>
                    format!("k-means, K = {k} per neighbourhood chemistry"),
                crate::uq::Partition::ConfigType => "one per config_type".into(),
            },
            l.features.name()
        );
        print!(
            "{}",
            l.cluster_table(&|s, k| pot
                .stored_cluster_cutoffs(crate::uq::Method::GammaLocal, s, k)
                .map(|(lo, hi, _)| (lo, hi)))
        );
    }
    let cal = info::calibration_text(&pot);
    if cal.is_empty() {
        println!(
            "
calibrated cutoffs: none (run `aceuq calibrate` for `lower auto upper auto`)"
        );
    } else {
        print!("{cal}");
    }
    Ok(())
}

/// Read the clustered local active sets at `path` (if any) for `pot` (read from `model`). A
/// file the user `named` must load; one only found beside the `.asi` that does not (built for
/// an earlier version of the potential, say) is skipped with a warning, so that gamma alone
/// still works.
#[allow(clippy::type_complexity)]
pub(crate) fn load_pacemaker_local(
    pot: &crate::pace::PacePotential,
    model: &std::path::Path,
    path: Option<std::path::PathBuf>,
    named: bool,
) -> anyhow::Result<(
    Option<std::path::PathBuf>,
    Option<crate::uq::activeset::ClusteredActiveSets>,
)> {
    let Some(p) = path else {
        return Ok((None, None));
    };
    match crate::pace::read_local_active_set(&p, pot, model) {
        Ok(l) => Ok((Some(p), Some(l))),
        Err(e) if !named => {
            eprintln!(
                "warning: {} (found beside the active set) is not used: {e}",
                p.display()
            );
            Ok((None, None))
        }
        Err(e) => Err(anyhow::anyhow!(e).context(format!("cannot use {}", p.display()))),
    }
}

/// The clustered local active sets (`.lasi`) to use with a pacemaker potential: `given`, or
/// else the file beside the active-set inverse `asi` with its name and `.lasi`, if there is one.
pub(crate) fn pacemaker_local_active_set(
    asi: &std::path::Path,
    given: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    match given {
        Some(p) if !crate::pace::is_local_active_set(p) => anyhow::bail!(
            "--local-active-set {}: clustered active sets of a pacemaker potential are .lasi \
             files (written by `aceuq activeset --model pot --data train.xyz --clusters K`)",
            p.display()
        ),
        Some(p) if !p.is_file() => {
            anyhow::bail!("--local-active-set {}: no such file", p.display())
        }
        Some(p) => Ok(Some(p.to_path_buf())),
        None => {
            let beside = asi.with_extension("lasi");
            Ok(beside.is_file().then_some(beside))
        }
    }
}

/// The active-set inverse of the pacemaker potential `model`: `given`, else the potential's
/// name with `.asi`; an error naming how to get one if it does not exist.
pub(crate) fn pacemaker_active_set(
    model: &std::path::Path,
    given: Option<&std::path::Path>,
) -> anyhow::Result<std::path::PathBuf> {
    let asi = given.map_or_else(|| model.with_extension("asi"), |p| p.to_path_buf());
    if !asi.is_file() {
        anyhow::bail!(
            "{}: no such active-set inverse: give --active-set pot.asi (ML-PACE's, or built with \
             `aceuq activeset --model {} --data train.xyz --out pot.asi`)",
            asi.display(),
            model.display()
        );
    }
    Ok(asi)
}

#[cfg(test)]
mod tests {
    /// The switches of a command are its options without a value, by long name.
    #[test]
    fn switches_are_the_options_without_a_value() {
        let fit = super::switches("fit").unwrap();
        assert!(fit.iter().any(|s| s == "active-set") && fit.iter().any(|s| s == "contact"));
        assert!(
            !fit.iter().any(|s| s == "grow-basis" || s == "train"),
            "{fit:?}"
        );
        assert!(super::switches("no-such-command").is_none());
    }
}
