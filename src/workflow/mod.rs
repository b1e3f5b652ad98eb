//! Closed-loop on-the-fly active learning: fit → explore with LAMMPS (`ace/uq` + `ace/uq/watch`)
//! → D-optimal selection of the dumped candidates → labelling by a user command → refit, until the
//! explorations run their full length without a halt and dump no more candidate frames than
//! in-distribution runs would (`[loop] converged_candidates`), or a limit is reached.
//!
//! Everything lives in a run folder: `iter_NNN/` per iteration with its inputs and outputs, and a
//! `summary.csv`. Each stage of an iteration leaves a marker file when it is complete, so an
//! interrupted loop resumes at the first unfinished stage. The training data are never edited in
//! place: they are the initial structures plus the validated labels of every finished iteration
//! (`dataset.xyz` is a copy for people), so an interruption can neither lose nor duplicate labelled
//! data, and a failed labelling is kept aside in `failed.xyz` with its reason.
//!
//! Cutoffs (see [`Split`] for why): every fit's lower cutoffs come from the held-out initial
//! structures, its upper cutoff from those plus the labelled structures it was not trained on;
//! after labelling, the iteration's model is recalibrated with the structures it has just
//! labelled (`recalibrated.aceuq`), and a fit without an upper cutoff of its own takes the latest
//! recalibration's. `cutoffs.csv` lists per iteration and species the lower and upper cutoffs,
//! where the upper one came from, the labelled high-uncertainty atoms behind it and how both
//! moved.
//!
//! Top layer (feature `cli`, not in the plugin's library): imports potential, uq, io, model,
//! basis, stats, structure;
//! only the CLI imports it.

pub mod config;
mod process;

use crate::io::extxyz::{self, ReadOptions, WriteOptions};
use crate::potential::Potential;
use crate::structure::{InfoValue, Structure};
use crate::uq::activeset::{Settings as SelectSettings, StructureSource, select};
use config::LoopConfig;
use process::run_with_timeout;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// An error that stops the loop, with what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoopError(pub String);

fn err(m: impl Into<String>) -> LoopError {
    LoopError(m.into())
}

/// External programs the loop runs.
#[derive(Clone, Debug)]
pub struct Tools {
    pub lmp: PathBuf,
    pub plugin: PathBuf,
    pub mpirun: Option<PathBuf>,
}

impl Tools {
    /// Resolve from the configuration, then the environment (`ACEUQ_LMP`, `ACEUQ_PLUGIN_DIR`,
    /// `ACEUQ_MPIRUN`), then the repository layout (`.venv/bin/lmp`, `build/aceuqplugin.so`).
    pub fn resolve(cfg: &LoopConfig) -> Result<Tools, LoopError> {
        let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
        let lmp = cfg
            .lammps
            .lmp
            .clone()
            .or_else(|| env("ACEUQ_LMP"))
            .unwrap_or_else(|| PathBuf::from(".venv/bin/lmp"));
        let plugin = cfg
            .lammps
            .plugin
            .clone()
            .or_else(|| env("ACEUQ_PLUGIN_DIR").map(|d| d.join("aceuqplugin.so")))
            .unwrap_or_else(|| PathBuf::from("build/aceuqplugin.so"));
        if !lmp.is_file() {
            return Err(err(format!(
                "LAMMPS not found at {}: set [lammps] lmp or ACEUQ_LMP (make builds .venv/bin/lmp)",
                lmp.display()
            )));
        }
        if !plugin.is_file() {
            return Err(err(format!(
                "plugin not found at {}: set [lammps] plugin or ACEUQ_PLUGIN_DIR (make build)",
                plugin.display()
            )));
        }
        let mpirun = if cfg.lammps.ranks > 1 {
            let m = cfg.lammps.mpirun.clone().or_else(|| env("ACEUQ_MPIRUN"));
            match m {
                Some(m) if m.is_file() => Some(m),
                _ => {
                    return Err(err(
                        "[lammps] ranks > 1 needs mpirun: set [lammps] mpirun or ACEUQ_MPIRUN",
                    ));
                }
            }
        } else {
            None
        };
        // The explorations run in their own folders: a relative path (the repository default
        // `.venv/bin/lmp`, or one given relative to the working directory) must not change
        // meaning there.
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        Ok(Tools {
            lmp: absolute(lmp),
            plugin: absolute(plugin),
            mpirun: mpirun.map(absolute),
        })
    }
}

/// What one exploration did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ExplorationOutcome {
    pub name: String,
    pub steps_run: u64,
    pub halted_at: Option<u64>,
    pub frames_dumped: usize,
    pub max_value: f64,
    pub seconds: f64,
}

/// One line of `summary.csv`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct IterationSummary {
    pub iteration: usize,
    pub structures: usize,
    pub atoms: usize,
    pub test_energy_rmse: f64,
    pub test_force_rmse: f64,
    pub candidates: usize,
    pub selected: usize,
    pub labelled: usize,
    pub failed: usize,
    pub halts: usize,
    pub explorations: usize,
    pub longest_stable_steps: u64,
    pub lower_cutoff: f64,
    pub upper_cutoff: f64,
    pub seconds: f64,
    pub converged: bool,
    pub explored: Vec<ExplorationOutcome>,
    /// Per species: the cutoffs of the watched quantity (absent in run folders of older
    /// versions).
    #[serde(default)]
    pub cutoffs: Vec<SpeciesCutoffs>,
}

/// The cutoffs of one species in one iteration (a line of `cutoffs.csv`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpeciesCutoffs {
    pub species: String,
    /// Lower cutoff u_c the explorations used.
    pub lower: f64,
    /// Upper cutoff u_max the explorations used; +inf: none (the fit found no uncertainty at
    /// which the force error reaches `max_error`).
    pub upper: f64,
    /// Validation atoms behind the lower cutoffs.
    pub valid_atoms: usize,
    /// Atoms of labelled high-uncertainty structures in the upper cutoff's fit.
    pub high_atoms: usize,
    /// The iteration whose recalibration the upper cutoff was carried over from (none: the
    /// fit's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_from: Option<usize>,
    /// The upper cutoff after recalibrating with this iteration's labels (none: nothing
    /// labelled, or the recalibration failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_after_labelling: Option<f64>,
    /// High-uncertainty atoms of that recalibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_atoms_after_labelling: Option<usize>,
    /// The sanity gates' caveats about these cutoffs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
}

/// The cutoffs of `method` per species stored in `pot` (species-level entries), with the
/// labelled high-uncertainty atoms of the upper fit. Species without an entry are left out.
fn species_cutoffs(pot: &Potential, method: crate::uq::Method) -> Vec<SpeciesCutoffs> {
    pot.model
        .species
        .iter()
        .filter_map(|name| {
            let c =
                pot.uq.calibration.iter().find(|c| {
                    &c.species == name && c.method == method.name() && c.cluster.is_none()
                })?;
            Some(SpeciesCutoffs {
                species: name.clone(),
                lower: c.u_c,
                upper: c.u_max,
                valid_atoms: c.n_fit,
                high_atoms: c.conditional.as_ref().map_or(0, |x| x.n_high),
                upper_from: carried_from(c),
                upper_after_labelling: None,
                high_atoms_after_labelling: None,
                caveats: c.warnings.clone(),
            })
        })
        .collect()
}

/// Adds the recalibration after labelling (`after`) to the cutoffs of the explorations.
fn add_recalibration(cutoffs: &mut [SpeciesCutoffs], after: &[SpeciesCutoffs]) {
    for c in cutoffs.iter_mut() {
        if let Some(a) = after.iter().find(|a| a.species == c.species) {
            c.upper_after_labelling = Some(a.upper);
            c.high_atoms_after_labelling = Some(a.high_atoms);
        }
    }
}

/// A cutoff for tables (5 decimals, as `aceuq calibrate` prints them), or "none" for the missing
/// upper cutoff (+inf).
fn cutoff_text(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.5}")
    } else {
        "none".into()
    }
}

/// How a cutoff moved from the previous iteration: the relative change ("+12.3%"), "from none"
/// or "to none" when the upper cutoff appeared or vanished, "=" when unchanged, empty without a
/// previous value.
fn movement(before: Option<f64>, now: f64) -> String {
    match before {
        None => String::new(),
        Some(b) if !b.is_finite() && !now.is_finite() => "=".into(),
        Some(b) if !b.is_finite() => "from none".into(),
        Some(_) if !now.is_finite() => "to none".into(),
        Some(b) if b == now => "=".into(),
        Some(b) if b != 0.0 => format!("{:+.1}%", 100.0 * (now - b) / b.abs()),
        Some(b) => format!("{:+.4e}", now - b),
    }
}

/// Columns of [`cutoff_rows`].
pub fn cutoff_header() -> Vec<String> {
    [
        "iteration",
        "species",
        "lower_cutoff",
        "lower_moved",
        "upper_cutoff",
        "upper_moved",
        "upper_from",
        "valid_atoms",
        "high_atoms",
        "upper_after_labelling",
        "high_atoms_after_labelling",
        "caveats",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One row per iteration and species: the cutoffs the explorations used, how they moved from
/// the previous iteration, where the upper one came from (the fit, or carried over from an
/// earlier recalibration), the atoms behind them and the upper cutoff after recalibrating with
/// the iteration's labels (`cutoffs.csv` and the final table).
pub fn cutoff_rows(s: &[IterationSummary]) -> Vec<Vec<String>> {
    let mut rows = vec![];
    let mut before: Vec<&SpeciesCutoffs> = vec![];
    for r in s {
        for c in &r.cutoffs {
            let prev = before.iter().find(|b| b.species == c.species);
            rows.push(vec![
                r.iteration.to_string(),
                c.species.clone(),
                cutoff_text(c.lower),
                movement(prev.map(|p| p.lower), c.lower),
                cutoff_text(c.upper),
                movement(prev.map(|p| p.upper), c.upper),
                c.upper_from
                    .map_or("fit".into(), |j| format!("iteration {j} after labelling")),
                c.valid_atoms.to_string(),
                c.high_atoms.to_string(),
                c.upper_after_labelling.map_or(String::new(), cutoff_text),
                c.high_atoms_after_labelling
                    .map_or(String::new(), |n| n.to_string()),
                c.caveats.len().to_string(),
            ]);
        }
        if !r.cutoffs.is_empty() {
            before = r.cutoffs.iter().collect();
        }
    }
    rows
}

/// Why the loop stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// Every exploration finished without an atom above the lower cutoff.
    Converged,
    MaxIterations,
    WallTime,
    /// Candidates were found but none extends the active set (nothing more to learn from them).
    NothingToSelect,
}

fn marker(dir: &Path, stage: &str) -> PathBuf {
    dir.join(format!(".{stage}.done"))
}

fn done(dir: &Path, stage: &str) -> bool {
    marker(dir, stage).is_file()
}

fn mark(dir: &Path, stage: &str) -> Result<(), LoopError> {
    std::fs::write(marker(dir, stage), b"")
        .map_err(|e| err(format!("cannot write in {}: {e}", dir.display())))
}

fn write_text(path: &Path, text: &str) -> Result<(), LoopError> {
    crate::io::container::write_atomic(path, text.as_bytes()).map_err(|e| err(e.to_string()))
}

fn read_frames(path: &Path, cfg: &LoopConfig, tolerant: bool) -> Result<Vec<Structure>, LoopError> {
    let opts = ReadOptions {
        energy_key: cfg.run.energy_key.clone(),
        forces_key: cfg.run.forces_key.clone(),
        allow_truncated_tail: tolerant,
        ..Default::default()
    };
    extxyz::read_file(path, &opts).map_err(|e| err(e.to_string()))
}

/// [`read_frames`] for the user's labelled data (`initial`, `test`): a label the fit weighs
/// (energies unless `[fit] energy_weight = 0`, forces unless `force_weight = 0`) must be in every
/// frame, so that a misnamed key is an error, not a fit without that label.
fn read_labelled(path: &Path, cfg: &LoopConfig) -> Result<Vec<Structure>, LoopError> {
    use crate::io::extxyz::{Label, missing_label};
    let frames = read_frames(path, cfg, false)?;
    for (label, key, weight, name, weight_name) in [
        (
            Label::Energy,
            &cfg.run.energy_key,
            cfg.fit.energy_weight,
            "energy",
            "energy_weight",
        ),
        (
            Label::Forces,
            &cfg.run.forces_key,
            cfg.fit.force_weight,
            "forces",
            "force_weight",
        ),
    ] {
        if weight > 0.0
            && let Some(m) = missing_label(&frames, label, key)
        {
            return Err(err(match m.suggestion() {
                Some(k) => format!("{m}: set {name}_key = \"{k}\" in [loop]"),
                None => format!(
                    "{m}: label the frames, or name the key with {name}_key in [loop] (or set \
                     [fit] {weight_name} = 0 to fit without {name})"
                ),
            }));
        }
    }
    Ok(frames)
}

fn iter_dir(run_dir: &Path, k: usize) -> PathBuf {
    run_dir.join(format!("iter_{k:03}"))
}

/// Deterministic train/validation split: structure `k` is held out when a seeded hash of its
/// index falls below the fraction (stable as the data set grows).
fn is_valid(seed: u64, k: usize, fraction: f64) -> bool {
    let mut z = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z as f64 / u64::MAX as f64) < fraction
}

/// What the first iteration would find wrong only after its fit: every species of `[loop]
/// species` among the initial structures, and each exploration's frame in its file.
fn check_inputs(cfg: &LoopConfig) -> Result<(), LoopError> {
    let mut present: Vec<&str> = vec![];
    let initial = dataset_initial(cfg)?;
    for st in &initial {
        for sym in &st.symbols {
            if !present.contains(&sym.as_str()) {
                present.push(sym);
            }
        }
    }
    let absent: Vec<&str> = cfg
        .run
        .species
        .iter()
        .map(|x| x.as_str())
        .filter(|x| !present.contains(x))
        .collect();
    if !absent.is_empty() {
        return Err(err(format!(
            "[loop] initial holds no atom of {} (it holds {}): the first fit has nothing to \
             learn {} from; add labelled structures with it, or drop it from [loop] species",
            absent.join(", "),
            present.join(", "),
            if absent.len() == 1 { "it" } else { "them" }
        )));
    }
    if let Some(missing) = missing_program(&cfg.labeller.command) {
        return Err(err(format!(
            "[labeller] command names {missing}, which does not exist (the command: {}); fix \
             the path ({{dir}} is the folder of the configuration file)",
            cfg.labeller.command
        )));
    }
    for e in &cfg.exploration {
        let n = crate::io::extxyz::read_file(&e.structure, &Default::default())
            .map_err(|x| err(x.to_string()))?
            .len();
        if e.frame >= n {
            return Err(err(format!(
                "[[exploration]] {}: {} has {n} frame(s), so there is no frame = {} (0-based)",
                e.name,
                e.structure.display(),
                e.frame
            )));
        }
    }
    Ok(())
}

/// The structures of `[loop] initial`.
fn dataset_initial(cfg: &LoopConfig) -> Result<Vec<Structure>, LoopError> {
    let mut frames = Vec::new();
    for p in &cfg.run.initial {
        frames.extend(read_labelled(p, cfg)?);
    }
    Ok(frames)
}

/// The labelled structures of a fit and where each came from.
struct Data {
    frames: Vec<Structure>,
    /// 0: one of `[loop] initial`; k > 0: labelled by the loop in iteration k.
    origin: Vec<usize>,
}

/// The training data of iteration `k`: the initial structures plus the labels of iterations < k.
fn dataset(cfg: &LoopConfig, run_dir: &Path, k: usize) -> Result<Data, LoopError> {
    let mut frames = dataset_initial(cfg)?;
    let mut origin = vec![0; frames.len()];
    for j in 1..k {
        if let Some(f) = labelled_file(&iter_dir(run_dir, j)) {
            let got = read_frames(&f, cfg, false)?;
            origin.extend(std::iter::repeat_n(j, got.len()));
            frames.extend(got);
        }
    }
    Ok(Data { frames, origin })
}

/// The validated labels of an iteration, once its labelling is complete.
fn labelled_file(dir: &Path) -> Option<PathBuf> {
    let f = dir.join("labelled.xyz");
    (done(dir, "label") && f.is_file()).then_some(f)
}

/// How the labelled structures of a fit are used (indices into [`Data`]).
///
/// Lower cutoffs. They are 1 - 1/N quantiles of the uncertainty of in-distribution atoms, so
/// they need a sample of the distribution the training data describe: the held-out initial
/// structures. The structures the loop labelled are no such sample: each was dumped because an
/// atom exceeded the lower cutoff and then chosen by D-optimality for being the most novel, so in
/// the lower fit they would raise u_c by an amount set by the selection (`max_new`, how far the
/// explorations strayed), not by the MD. They are kept out of it even when the split holds them
/// out.
///
/// Upper cutoff. It fits the force error given the uncertainty, e | u ~ Maxwell(s(u)). A fit
/// conditional on u is not biased by selecting structures on u, so labelled candidates and halt
/// frames are exactly the data it needs, but only while their errors are true prediction errors:
/// once a structure is in the training set its error is a fit residual, and its uncertainty is
/// that of a training structure. In the Li example (`quick.toml`) the four structures labelled in
/// iteration 1 have grades up to 157 and force errors up to 0.85 eV/Å under the model that
/// dumped them, but grades up to 1 and errors of 0.08 eV/Å (rms) under the model of iteration 2,
/// which is trained on them. As its high-uncertainty data they put its u_max at a grade of 1.37
/// and its explorations halted within 100 steps, while its errors on structures it had not seen
/// stayed below 0.27 eV/Å up to a grade of 10 and first exceeded 1 eV/Å above it (rms 2.7 eV/Å
/// above 100; the recalibration of iteration 1 had put u_max at 224).
///
/// So a fit's upper cutoff uses the held-out initial structures plus the labelled structures
/// the split holds out ([`Split::high`]); after labelling, the iteration's model is recalibrated
/// with the structures just labelled, which it has not been trained on ([`recalibrate`]); and a
/// fit that finds no upper cutoff (no such data beyond its validation atoms) takes the latest
/// recalibration's ([`carry_upper`]). Without one, the model of iteration 2 in the example
/// explored with no upper cutoff and LAMMPS stopped on a neighbour-list overflow as the grade
/// ran past 10^4.
#[derive(Debug, PartialEq)]
struct Split {
    /// Fitted on (the active set and the other estimators are built from them too).
    train: Vec<usize>,
    /// Held out: validation errors of the fit and the estimators.
    valid: Vec<usize>,
    /// In-distribution data of the lower cutoffs: the held-out initial structures (the initial
    /// training structures when none is held out, see [`Split::lower_in_training`]).
    lower: Vec<usize>,
    /// Labelled high-uncertainty data of the upper cutoff: the held-out structures the loop
    /// labelled.
    high: Vec<usize>,
    /// `lower` had to fall back to training structures (`valid_fraction = 0`, or a single initial
    /// structure): the lower cutoffs are then too low.
    lower_in_training: bool,
}

/// The deterministic split of structures with these origins (see [`Data::origin`]). Structure
/// `i` is held out when [`is_valid`]; when that holds out no initial structure and there are at
/// least two, the last initial structure is held out, so that every iteration's lower cutoffs
/// come from the same in-distribution structures.
fn split(seed: u64, fraction: f64, origin: &[usize]) -> Split {
    let mut held: Vec<bool> = (0..origin.len())
        .map(|i| is_valid(seed, i, fraction))
        .collect();
    let initial: Vec<usize> = (0..origin.len()).filter(|&i| origin[i] == 0).collect();
    if fraction > 0.0 && initial.len() > 1 && !initial.iter().any(|&i| held[i]) {
        held[*initial.last().expect("two or more")] = true;
    }
    let (valid, train): (Vec<usize>, Vec<usize>) = (0..origin.len()).partition(|&i| held[i]);
    let (mut lower, high): (Vec<usize>, Vec<usize>) = valid.iter().partition(|&&i| origin[i] == 0);
    let lower_in_training = lower.is_empty();
    if lower_in_training {
        lower = train.iter().copied().filter(|&i| origin[i] == 0).collect();
    }
    Split {
        train,
        valid,
        lower,
        high,
        lower_in_training,
    }
}

/// A path the labeller command runs that does not exist: its first word, or a script
/// (`.py`, `.sh`, `.pl`) it passes to an interpreter, where written as an absolute path (no
/// placeholder or variable; `{dir}` is replaced by then). Found before any fit, instead of
/// after the explorations.
fn missing_program(command: &str) -> Option<String> {
    // Words as the shell splits them, for the simple commands a labeller line holds: quotes
    // group, nothing else is interpreted.
    let mut words: Vec<String> = vec![];
    let (mut cur, mut quote, mut started) = (String::new(), None, false);
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                started = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if started || !cur.is_empty() {
        words.push(cur);
    }
    // Absolute only: the command runs in the iteration's labelling folder, not here.
    let checkable = |w: &str| w.starts_with('/') && !w.contains(['{', '$', '*', '?', '`']);
    let script = |w: &str| [".py", ".sh", ".pl"].iter().any(|x| w.ends_with(x));
    words
        .iter()
        .take_while(|w| !matches!(w.as_str(), ";" | "&&" | "||" | "|"))
        .enumerate()
        .filter(|(i, w)| checkable(w) && (*i == 0 || script(w)))
        .map(|(_, w)| w)
        .find(|w| !Path::new(w.as_str()).exists())
        .cloned()
}

/// Whether the labelling changed between two configurations: the command, or a setting other
/// than a time limit.
fn labeller_changed(old: &config::LabellerConfig, new: &config::LabellerConfig) -> bool {
    let physics = |c: &config::LabellerConfig| {
        c.settings.clone().map(|mut t| {
            t.remove("timeout_minutes");
            t
        })
    };
    old.command != new.command || physics(old) != physics(new)
}

/// Run (or resume) the loop in `run_dir`. `say` receives progress messages.
pub fn run(
    cfg: &LoopConfig,
    run_dir: &Path,
    tools: &Tools,
    say: &dyn Fn(&str),
) -> Result<(Vec<IterationSummary>, Stop), LoopError> {
    // Before anything is created: a refused configuration leaves no run folder behind.
    check_inputs(cfg)?;
    if run_dir.exists() && !run_dir.is_dir() {
        return Err(err(format!(
            "{} is a file: the run folder must be a folder (created if missing)",
            run_dir.display()
        )));
    }
    std::fs::create_dir_all(run_dir)
        .map_err(|e| err(format!("cannot create {}: {e}", run_dir.display())))?;
    // Absolute, because LAMMPS and the labeller run in subfolders.
    let run_dir = &run_dir
        .canonicalize()
        .map_err(|e| err(format!("{}: {e}", run_dir.display())))?;
    // One loop per run folder: a second would label the same structures again.
    let _lock = process::lock_run_dir(run_dir)?;
    let cfg_text = toml::to_string(cfg).map_err(|e| err(e.to_string()))?;
    let used = run_dir.join("config.used.toml");
    if let Ok(before) = std::fs::read_to_string(&used)
        && before != cfg_text
    {
        // The earlier settings stay on record (they made the finished stages).
        let kept = (1..)
            .map(|n| run_dir.join(format!("config.used.{n}.toml")))
            .find(|p| !p.exists())
            .expect("a free name");
        std::fs::rename(&used, &kept)
            .map_err(|e| err(format!("cannot rename {}: {e}", used.display())))?;
        say(&format!(
            "note: the configuration differs from the one this run folder last used (kept as {}); \
             finished stages are kept, later ones use the new settings",
            kept.display()
        ));
        if toml::from_str::<LoopConfig>(&before)
            .is_ok_and(|old| labeller_changed(&old.labeller, &cfg.labeller))
        {
            say(
                "warning: the labeller's command or settings changed: structures labelled from \
                 now on are computed with the new ones, those already in dataset.xyz with the \
                 old, and the fits mix both. If the change alters the numbers (another cutoff \
                 energy, k-points, functional), start a new run folder instead",
            );
        }
    }
    write_text(&used, &cfg_text)?;
    let start = Instant::now();
    let mut summaries: Vec<IterationSummary> = Vec::new();
    let test = {
        let mut t = Vec::new();
        for p in &cfg.run.test {
            t.extend(read_labelled(p, cfg)?);
        }
        t
    };
    let mut stop = Stop::MaxIterations;
    for k in 1..=cfg.run.max_iterations {
        let dir = iter_dir(run_dir, k);
        let summary_path = dir.join("summary.toml");
        if done(&dir, "iteration") {
            let mut s: IterationSummary = std::fs::read_to_string(&summary_path)
                .ok()
                .and_then(|t| toml::from_str(&t).ok())
                .ok_or_else(|| {
                    err(format!(
                        "{}: unreadable; delete the folder to redo it",
                        summary_path.display()
                    ))
                })?;
            say(&format!("iteration {k}: already done (resumed)"));
            if s.cutoffs.is_empty() {
                // Finished by a version that did not record them: read them from its models.
                s.cutoffs = cutoffs_on_disk(cfg, &dir);
            }
            let done_with = stop_after(&s);
            summaries.push(s);
            write_summary(run_dir, &summaries)?;
            if let Some(why) = done_with {
                stop = why;
                break;
            }
            continue;
        }
        if let Some(limit) = cfg.run.wall_time_minutes
            && start.elapsed().as_secs_f64() > 60.0 * limit
        {
            stop = Stop::WallTime;
            break;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let t_iter = Instant::now();
        let data = dataset(cfg, run_dir, k)?;
        let s = iteration(cfg, run_dir, &dir, k, &data, &test, tools, say)?;
        let mut s = s;
        s.seconds = t_iter.elapsed().as_secs_f64();
        write_text(
            &summary_path,
            &toml::to_string(&s).map_err(|e| err(e.to_string()))?,
        )?;
        mark(&dir, "iteration")?;
        let done_with = stop_after(&s);
        summaries.push(s);
        write_summary(run_dir, &summaries)?;
        // A copy of the current training data for people (the loop itself never reads it).
        let all = dataset(cfg, run_dir, k + 1)?;
        extxyz::write_file_atomic(
            run_dir.join("dataset.xyz"),
            &all.frames,
            &WriteOptions::lossless(),
        )
        .map_err(|e| err(e.to_string()))?;
        if let Some(why) = done_with {
            stop = why;
            break;
        }
    }
    if let Some(last) = summaries.last() {
        final_model(cfg, run_dir, last, &test, say)?;
        if cfg.run.final_check_steps > 0 {
            final_check(cfg, run_dir, last.iteration + 1, tools, say)?;
        }
    }
    Ok((summaries, stop))
}

/// Whether the loop ends after an iteration with this summary.
fn stop_after(s: &IterationSummary) -> Option<Stop> {
    if s.converged {
        Some(Stop::Converged)
    } else if s.candidates > 0 && s.selected == 0 {
        Some(Stop::NothingToSelect)
    } else {
        None
    }
}

/// `x` with `prec` decimals, or `missing` when it is not a number (the loop has no test set).
pub fn number_or(x: f64, prec: usize, missing: &str) -> String {
    if x.is_finite() {
        format!("{x:.prec$}")
    } else {
        missing.into()
    }
}

fn write_summary(run_dir: &Path, s: &[IterationSummary]) -> Result<(), LoopError> {
    let mut text = String::from(
        "iteration,structures,atoms,test_energy_rmse_mev_atom,test_force_rmse_mev_a,candidates,selected,labelled,failed,halts,explorations,longest_stable_steps,lower_cutoff,upper_cutoff,seconds,converged\n",
    );
    for r in s {
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{:.6},{:.6},{:.1},{}\n",
            r.iteration,
            r.structures,
            r.atoms,
            number_or(r.test_energy_rmse, 4, ""),
            number_or(r.test_force_rmse, 4, ""),
            r.candidates,
            r.selected,
            r.labelled,
            r.failed,
            r.halts,
            r.explorations,
            r.longest_stable_steps,
            r.lower_cutoff,
            r.upper_cutoff,
            r.seconds,
            r.converged
        ));
    }
    write_text(&run_dir.join("summary.csv"), &text)?;
    let mut csv = cutoff_header().join(",");
    csv.push('\n');
    for row in cutoff_rows(s) {
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    write_text(&run_dir.join("cutoffs.csv"), &csv)
}

/// The cutoffs of iteration folder `dir` from its model files (for summaries written before
/// they were recorded); empty if the model cannot be read.
fn cutoffs_on_disk(cfg: &LoopConfig, dir: &Path) -> Vec<SpeciesCutoffs> {
    let Ok(pot) = Potential::load(&dir.join("model.aceuq")) else {
        return vec![];
    };
    let mut c = species_cutoffs(&pot, cfg.run.quantity);
    if let Ok(after) = Potential::load(&dir.join("recalibrated.aceuq")) {
        add_recalibration(&mut c, &species_cutoffs(&after, cfg.run.quantity));
    }
    c
}

#[allow(clippy::too_many_arguments)]
fn iteration(
    cfg: &LoopConfig,
    run_dir: &Path,
    dir: &Path,
    k: usize,
    data: &Data,
    test: &[Structure],
    tools: &Tools,
    say: &dyn Fn(&str),
) -> Result<IterationSummary, LoopError> {
    let mut s = IterationSummary {
        iteration: k,
        structures: data.frames.len(),
        atoms: data.frames.iter().map(|x| x.len()).sum(),
        explorations: cfg.exploration.len(),
        ..Default::default()
    };
    // 1. Fit and calibrate.
    let model_path = dir.join("model.aceuq");
    let pot = if done(dir, "fit") {
        Potential::load(&model_path).map_err(|e| err(e.to_string()))?
    } else {
        let t = Instant::now();
        let carry = latest_recalibration(run_dir, k);
        let (m, ntrain, natoms) =
            fit_and_calibrate(cfg, data, &format!("iteration {k}"), carry.as_ref(), say)?;
        m.save(&model_path).map_err(|e| err(e.to_string()))?;
        mark(dir, "fit")?;
        say(&format!(
            "iteration {k}: fitted on {ntrain} structures ({natoms} atoms) in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        m
    };
    let model = &pot.model;
    if let Some((lo, hi)) = pot.stored_cutoffs(cfg.run.quantity, 0) {
        s.lower_cutoff = lo;
        s.upper_cutoff = hi;
    }
    s.cutoffs = species_cutoffs(&pot, cfg.run.quantity);
    // No candidates would mean convergence only if the watched method can flag a structure
    // unlike the data.
    if let Some(c) = s.cutoffs.iter().find_map(|c| {
        c.caveats
            .iter()
            .find(|w| w.starts_with(crate::stats::cutoff::LOWER_ABOVE_PLATEAU))
            .map(|w| format!("{} {}", c.species, w))
    }) {
        return Err(err(format!(
            "iteration {k}: the watched {} cannot flag structures unlike its data ({c}), so \
             explorations without candidates would be no sign of convergence: watch gamma \
             ([loop] quantity)",
            cfg.run.quantity.name()
        )));
    }
    if !test.is_empty() {
        let m = crate::model::fit::evaluate(model, test, "test").map_err(|e| err(e.to_string()))?;
        s.test_energy_rmse = m.energy_rmse;
        s.test_force_rmse = m.force_rmse;
    } else {
        // No [loop] test set: no number (tables print "-", summary.csv an empty field).
        s.test_energy_rmse = f64::NAN;
        s.test_force_rmse = f64::NAN;
    }
    // 2. Explore.
    let outcomes_path = dir.join("explorations.toml");
    let outcomes: Vec<ExplorationOutcome> = if done(dir, "explore") {
        let t: toml::Table = std::fs::read_to_string(&outcomes_path)
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .ok_or_else(|| err(format!("{}: unreadable", outcomes_path.display())))?;
        t.get("exploration")
            .cloned()
            .and_then(|v| v.try_into().ok())
            .unwrap_or_default()
    } else {
        let o = explore(
            cfg,
            dir,
            k,
            &format!("iteration {k}"),
            &model_path,
            None,
            tools,
            say,
        )?;
        let mut t = toml::Table::new();
        t.insert(
            "exploration".into(),
            toml::Value::try_from(&o).map_err(|e| err(e.to_string()))?,
        );
        write_text(
            &outcomes_path,
            &toml::to_string(&t).map_err(|e| err(e.to_string()))?,
        )?;
        mark(dir, "explore")?;
        o
    };
    s.halts = outcomes.iter().filter(|o| o.halted_at.is_some()).count();
    s.longest_stable_steps = outcomes
        .iter()
        .map(|o| o.halted_at.unwrap_or(o.steps_run))
        .max()
        .unwrap_or(0);
    let mut candidates = Vec::new();
    for e in &cfg.exploration {
        let f = dir
            .join(format!("explore_{}", e.name))
            .join("candidates.xyz");
        if f.is_file() {
            candidates.extend(read_frames(&f, cfg, true)?);
        }
    }
    s.candidates = candidates.len();
    s.explored = outcomes;
    let limit = cfg.run.converged_candidates;
    if candidates.is_empty() {
        say(&format!(
            "iteration {k}: no atom went above the lower cutoff in any exploration: converged"
        ));
        s.converged = true;
        return Ok(s);
    }
    if s.halts == 0 && candidates.len() <= limit {
        say(&format!(
            "iteration {k}: no halt and {} candidate frame(s), within the {limit} that \
             in-distribution explorations give by the lower cutoff's own rate (one atom in N \
             atom-checks above it; [loop] converged_candidates): converged",
            candidates.len()
        ));
        s.converged = true;
        return Ok(s);
    }
    // 3. Select.
    let to_label = dir.join("to_label.xyz");
    if !done(dir, "select") {
        let sets = pot
            .uq
            .active_set
            .as_ref()
            .ok_or_else(|| err("the model has no active set"))?;
        let mut src = StructureSource {
            model,
            data: &candidates,
            chunk: 64,
        };
        let rep = select(
            &model.species,
            sets,
            &mut src,
            cfg.run.max_new,
            &SelectSettings::default(),
            false,
        )
        .map_err(|e| err(format!("iteration {k}: selection: {e}")))?;
        let chosen: Vec<Structure> = rep
            .chosen
            .iter()
            .map(|c| {
                let mut x = candidates[c.structure].clone();
                x.arrays.retain(|(n, _)| n == "id");
                x.info
                    .insert("aceuq_iteration".into(), InfoValue::Int(k as i64));
                x
            })
            .collect();
        extxyz::write_file_atomic(&to_label, &chosen, &WriteOptions::lossless())
            .map_err(|e| err(e.to_string()))?;
        mark(dir, "select")?;
        say(&format!(
            "iteration {k}: {} candidate frames, {} chosen for labelling ({} extend the active set)",
            candidates.len(),
            chosen.len(),
            rep.contributing
        ));
    }
    let chosen = read_frames(&to_label, cfg, false)?;
    s.selected = chosen.len();
    if chosen.is_empty() {
        say(&format!(
            "iteration {k}: no candidate extends the active set: nothing more to learn from these explorations"
        ));
        return Ok(s);
    }
    // 4. Label.
    if !done(dir, "label") {
        let t = Instant::now();
        let (good, bad) = label(cfg, dir, &chosen)?;
        if let Some(w) = large_forces(&good) {
            say(&format!("iteration {k}: warning: {w}"));
        }
        extxyz::write_file_atomic(dir.join("labelled.xyz"), &good, &WriteOptions::lossless())
            .map_err(|e| err(e.to_string()))?;
        if !bad.is_empty() {
            extxyz::write_file_atomic(dir.join("failed.xyz"), &bad, &WriteOptions::lossless())
                .map_err(|e| err(e.to_string()))?;
        }
        mark(dir, "label")?;
        say(&format!(
            "iteration {k}: labelled {} structures in {:.1} s{}",
            good.len(),
            t.elapsed().as_secs_f64(),
            if bad.is_empty() {
                String::new()
            } else {
                format!(", {} failed (kept aside in failed.xyz)", bad.len())
            }
        ));
    }
    s.labelled = read_frames(&dir.join("labelled.xyz"), cfg, false)
        .map(|v| v.len())
        .unwrap_or(0);
    let failed = dir.join("failed.xyz");
    s.failed = if failed.is_file() {
        read_frames(&failed, cfg, false)
            .map(|v| v.len())
            .unwrap_or(0)
    } else {
        0
    };
    // 5. Recalibrate with the structures just labelled.
    let recalibrated = dir.join("recalibrated.aceuq");
    if !done(dir, "recalibrate") {
        recalibrate(cfg, dir, k, &pot, data, &recalibrated, say)?;
        mark(dir, "recalibrate")?;
    }
    if let Ok(after) = Potential::load(&recalibrated) {
        add_recalibration(&mut s.cutoffs, &species_cutoffs(&after, cfg.run.quantity));
    }
    Ok(s)
}

/// Recalibrates the iteration's model (trained on `data`) with the structures it has just
/// labelled as high-uncertainty data, besides those of [`Split::high`]: the model has not been
/// trained on them, so their errors are the true errors at the uncertainties that made the
/// explorations dump them. Writes the model with the new calibration to `out`. A failure is
/// reported as a warning (the explorations are done; the next iteration calibrates its own fit).
fn recalibrate(
    cfg: &LoopConfig,
    dir: &Path,
    k: usize,
    pot: &Potential,
    data: &Data,
    out: &Path,
    say: &dyn Fn(&str),
) -> Result<(), LoopError> {
    let Some(f) = labelled_file(dir) else {
        return Ok(());
    };
    let new = read_frames(&f, cfg, false)?;
    if new.is_empty() {
        return Ok(());
    }
    let sp = split(cfg.run.seed, cfg.run.valid_fraction, &data.origin);
    let lower: Vec<Structure> = sp.lower.iter().map(|&i| data.frames[i].clone()).collect();
    let mut high: Vec<Structure> = sp.high.iter().map(|&i| data.frames[i].clone()).collect();
    high.extend(new.iter().cloned());
    let what = format!("iteration {k} after labelling");
    let provenance = provenance(&what, &lower, &sp, &high, new.len());
    let mut m = pot.clone();
    match calibrate(cfg, &mut m, &lower, &high, provenance) {
        Ok(caveats) => {
            for c in caveats {
                say(&format!("iteration {k}: warning: recalibration: {c}"));
            }
            m.save(out).map_err(|e| err(e.to_string()))?;
            let moved: Vec<String> = species_cutoffs(pot, cfg.run.quantity)
                .iter()
                .zip(species_cutoffs(&m, cfg.run.quantity))
                .map(|(a, b)| {
                    format!(
                        "{} u_max {} -> {} ({} high-uncertainty atoms)",
                        a.species,
                        cutoff_text(a.upper),
                        cutoff_text(b.upper),
                        b.high_atoms
                    )
                })
                .collect();
            say(&format!(
                "iteration {k}: recalibrated with the {} structures just labelled: {}",
                new.len(),
                moved.join("; ")
            ));
        }
        Err(e) => say(&format!(
            "iteration {k}: warning: the recalibration with the structures just labelled failed, \
             the summary shows the cutoffs of the fit only: {e}"
        )),
    }
    Ok(())
}

/// What a calibration was derived from (stored with the cutoffs).
fn provenance(
    what: &str,
    lower: &[Structure],
    sp: &Split,
    high: &[Structure],
    new: usize,
) -> String {
    let atoms = |v: &[Structure]| v.iter().map(|x| x.len()).sum::<usize>();
    let halts = high
        .iter()
        .filter(|x| matches!(x.info.get("config_type"), Some(InfoValue::Str(t)) if t == "halt"))
        .count();
    format!(
        "aceuq loop, {what}: lower cutoffs from {} initial structures ({} atoms, {}); upper \
         cutoff from those and {} structures the loop labelled and the model was not trained on \
         ({} atoms, {halts} halt frames; {} held out, {new} labelled in this iteration)",
        lower.len(),
        atoms(lower),
        if sp.lower_in_training {
            "training data: none is held out"
        } else {
            "held out"
        },
        high.len(),
        atoms(high),
        high.len().saturating_sub(new),
    )
}

/// When `m` has no upper cutoff of `method` for a species (its fit had no labelled data at high
/// uncertainty that the model was not trained on, see [`Split`]), it takes the one the latest
/// recalibration `from` (of iteration `j`, with that iteration's labels) found: the fitted
/// relation s(u), and u_max (at least the species' or cluster's own u_c). This assumes that the
/// relation between force error and uncertainty carries over from one refit to the next, as
/// fixed extrapolation-grade thresholds do; the entry says so in its caveats. Returns the species
/// and what was carried over, for the log.
fn carry_upper(
    m: &mut Potential,
    method: crate::uq::Method,
    from: &Potential,
    j: usize,
) -> Vec<(String, String)> {
    let name = method.name();
    let mut notes = vec![];
    for sp in m.model.species.clone() {
        let entry = |p: &Potential| {
            p.uq.calibration
                .iter()
                .find(|c| c.species == sp && c.method == name && c.cluster.is_none())
                .cloned()
        };
        let (Some(own), Some(src)) = (entry(m), entry(from)) else {
            continue;
        };
        if own.u_max.is_finite() || !src.u_max.is_finite() {
            continue;
        }
        let n_high = src.conditional.as_ref().map_or(0, |c| c.n_high);
        let note = format!(
            "{CARRIED} {j} ({n_high} labelled high-uncertainty atoms): this fit has no labelled \
             data at high uncertainty that it was not trained on; assumes the relation between \
             force error and {name} carries over between refits"
        );
        for c in
            m.uq.calibration
                .iter_mut()
                .filter(|c| c.species == sp && c.method == name)
        {
            c.u_max = src.u_max.max(c.u_c);
            c.upper_rule = src.upper_rule;
            c.conditional = src.conditional.clone();
            c.warnings.retain(|w| !w.starts_with("no upper cutoff"));
            c.warnings.push(note.clone());
            c.provenance = Some(format!(
                "{}; upper cutoff carried over from the recalibration of iteration {j}",
                c.provenance.as_deref().unwrap_or("aceuq loop")
            ));
        }
        let text = format!(
            "{sp} {name}: u_max = {}, {note}",
            cutoff_text(src.u_max.max(own.u_c))
        );
        notes.push((sp, text));
    }
    notes
}

/// Start of the caveat [`carry_upper`] stores (followed by the iteration).
const CARRIED: &str = "upper cutoff carried over from the recalibration of iteration";

/// The iteration whose recalibration an entry's upper cutoff was carried over from.
fn carried_from(c: &crate::stats::cutoff::Calibration) -> Option<usize> {
    c.warnings.iter().find_map(|w| {
        w.strip_prefix(CARRIED)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The latest recalibration before iteration `k` (its iteration and model), if any.
fn latest_recalibration(run_dir: &Path, k: usize) -> Option<(usize, Potential)> {
    (1..k).rev().find_map(|j| {
        let f = iter_dir(run_dir, j).join("recalibrated.aceuq");
        Some((j, Potential::load(&f).ok()?))
    })
}

/// Fit on the training part of `data` ([`split`]), build the uncertainty and calibrate the
/// watched quantity: lower cutoffs on the held-out initial structures, upper cutoff on those and
/// the held-out structures the loop labelled, or `carry`'s (the latest recalibration) when that
/// finds none ([`Split`] says why). Returns the model and the training size.
fn fit_and_calibrate(
    cfg: &LoopConfig,
    data: &Data,
    what: &str,
    carry: Option<&(usize, Potential)>,
    say: &dyn Fn(&str),
) -> Result<(Potential, usize, usize), LoopError> {
    let sp = split(cfg.run.seed, cfg.run.valid_fraction, &data.origin);
    let pick =
        |idx: &[usize]| -> Vec<Structure> { idx.iter().map(|&i| data.frames[i].clone()).collect() };
    let (train, valid) = (pick(&sp.train), pick(&sp.valid));
    let model = crate::model::fit::fit(
        &cfg.run.species,
        &cfg.basis,
        &cfg.fit,
        &train,
        &valid,
        false,
    )
    .map_err(|e| err(format!("{what}: fit: {e}")))?;
    let mut uq = cfg.uq.clone();
    uq.active_set = true; // selection needs the global active set
    if cfg.run.quantity == crate::uq::Method::GammaLocal && uq.clusters.is_none() {
        uq.clusters = Some(crate::uq::Partition::KMeans(4));
    }
    let mut m = Potential::new(model);
    crate::uq::build(&m.model, &mut m.uq, &train, &valid, &uq, false)
        .map_err(|e| err(format!("{what}: uncertainty: {e}")))?;
    if sp.lower_in_training {
        say(&format!(
            "{what}: warning: no initial structure is held out, so the lower cutoffs come from \
             training structures and are too low: set [loop] valid_fraction above 0 and start \
             from at least two structures"
        ));
    }
    let (lower, high) = (pick(&sp.lower), pick(&sp.high));
    let provenance = provenance(what, &lower, &sp, &high, 0);
    let mut caveats = calibrate(cfg, &mut m, &lower, &high, provenance)?;
    if let Some((j, from)) = carry {
        let name = cfg.run.quantity.name();
        for (sp, note) in carry_upper(&mut m, cfg.run.quantity, from, *j) {
            // The fit's own "no upper cutoff" is replaced by the carried one.
            caveats.retain(|c| !c.starts_with(&format!("{sp} {name}: no upper cutoff")));
            say(&format!("{what}: {note}"));
        }
    }
    for c in caveats {
        say(&format!("{what}: warning: {c}"));
    }
    let natoms = train.iter().map(|x| x.len()).sum();
    Ok((m, train.len(), natoms))
}

/// The model to use after the loop (`final.aceuq` in the run folder): the last iteration's model
/// when the loop converged (its data are final), otherwise a fit on every labelled structure,
/// including the labels of the last iteration.
fn final_model(
    cfg: &LoopConfig,
    run_dir: &Path,
    last: &IterationSummary,
    test: &[Structure],
    say: &dyn Fn(&str),
) -> Result<(), LoopError> {
    let path = run_dir.join("final.aceuq");
    let k = last.iteration;
    let stamp = format!(
        "after iteration {k}, {} structures",
        last.structures + last.labelled
    );
    let marker = run_dir.join(".final.done");
    if path.is_file() && std::fs::read_to_string(&marker).is_ok_and(|t| t == stamp) {
        return Ok(());
    }
    if last.labelled == 0 {
        std::fs::copy(iter_dir(run_dir, k).join("model.aceuq"), &path)
            .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    } else {
        let data = dataset(cfg, run_dir, k + 1)?;
        let t = Instant::now();
        let carry = latest_recalibration(run_dir, k + 1);
        let (m, ntrain, natoms) =
            fit_and_calibrate(cfg, &data, "final model", carry.as_ref(), say)?;
        m.save(&path).map_err(|e| err(e.to_string()))?;
        say(&format!(
            "final model: fitted on {ntrain} structures ({natoms} atoms) in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
    }
    write_text(&marker, &stamp)?;
    let mut line = format!("final model: {}", path.display());
    if !test.is_empty() {
        let m = Potential::load(&path).map_err(|e| err(e.to_string()))?;
        let a =
            crate::model::fit::evaluate(&m.model, test, "test").map_err(|e| err(e.to_string()))?;
        line += &format!(
            " (test: force RMSE {:.1} meV/Å, energy RMSE {:.2} meV/atom)",
            a.force_rmse, a.energy_rmse
        );
    }
    say(&line);
    Ok(())
}

/// Run every exploration once more with `final.aceuq` for `final_check_steps` steps (halting
/// allowed) and record in `final_check/summary.toml` whether any halted.
fn final_check(
    cfg: &LoopConfig,
    run_dir: &Path,
    k: usize,
    tools: &Tools,
    say: &dyn Fn(&str),
) -> Result<(), LoopError> {
    let dir = run_dir.join("final_check");
    let stamp = std::fs::read_to_string(run_dir.join(".final.done")).unwrap_or_default();
    if done(&dir, "check")
        && std::fs::read_to_string(dir.join("model.stamp")).is_ok_and(|t| t == stamp)
    {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    let steps = cfg.run.final_check_steps;
    let o = explore(
        cfg,
        &dir,
        k,
        "final check",
        &run_dir.join("final.aceuq"),
        Some(steps),
        tools,
        say,
    )?;
    let halts = o.iter().filter(|x| x.halted_at.is_some()).count();
    let mut t = toml::Table::new();
    t.insert("steps".into(), toml::Value::Integer(steps as i64));
    t.insert("halts".into(), toml::Value::Integer(halts as i64));
    t.insert(
        "exploration".into(),
        toml::Value::try_from(&o).map_err(|e| err(e.to_string()))?,
    );
    write_text(
        &dir.join("summary.toml"),
        &toml::to_string(&t).map_err(|e| err(e.to_string()))?,
    )?;
    write_text(&dir.join("model.stamp"), &stamp)?;
    mark(&dir, "check")?;
    // Without an upper cutoff nothing could halt: say so rather than report a calm run.
    let no_upper: Vec<String> = Potential::load(&run_dir.join("final.aceuq"))
        .map(|p| {
            species_cutoffs(&p, cfg.run.quantity)
                .into_iter()
                .filter(|c| !c.upper.is_finite())
                .map(|c| c.species)
                .collect()
        })
        .unwrap_or_default();
    let max_seen = o.iter().map(|x| x.max_value).fold(f64::NAN, f64::max);
    say(&format!(
        "final check ({steps} steps per exploration with final.aceuq): {}",
        if halts > 0 {
            format!("{halts} of {} explorations halted", o.len())
        } else if !no_upper.is_empty() {
            format!(
                "no exploration halted, but final.aceuq has no upper cutoff of {} for {} (it \
                 cannot halt there; highest value seen {max_seen:.4}): this is no evidence of \
                 stability; label more high-uncertainty structures (more iterations)",
                cfg.run.quantity.name(),
                no_upper.join(", ")
            )
        } else {
            "no exploration halted".to_string()
        }
    ));
    Ok(())
}

/// Calibrate the watched quantity of `m`: lower cutoffs on `lower`, the upper cutoff's fit on
/// `lower` and the labelled high-uncertainty structures `high`, with N = atoms × checks of the
/// explorations for every species; for `gamma_local` also per (species, cluster). Stores
/// `provenance` with the cutoffs and returns the sanity gates' caveats (for the caller to print:
/// they qualify the cutoffs but do not stop the loop).
fn calibrate(
    cfg: &LoopConfig,
    m: &mut Potential,
    lower: &[Structure],
    high: &[Structure],
    provenance: String,
) -> Result<Vec<String>, LoopError> {
    let method = cfg.run.quantity;
    let n_apply = cfg
        .run
        .pool_size
        .unwrap_or_else(|| estimate_pool(cfg))
        .max(2);
    let napply = vec![n_apply; m.model.nspecies()];
    let settings = crate::calibration::CalibrateSettings {
        max_error: cfg.run.max_error,
        provenance: Some(provenance),
        ..Default::default()
    };
    let result =
        crate::calibration::calibrate_potential(m, lower, high, &napply, &settings, &[method])
            .map_err(|e| err(format!("calibrating the cutoffs of {}: {e}", method.name())))?;
    // `warnings` lists species without cutoffs: the explorations could not watch them.
    if let Some(w) = result.warnings.first() {
        return Err(err(format!(
            "too few labelled atoms to calibrate the cutoffs ({w}): start from more structures, \
             or hold out more of them ([loop] valid_fraction)"
        )));
    }
    m.uq.calibration = result.calibration;
    m.uq.halt_rule = result.halt_rule;
    Ok(result.caveats)
}

/// Atoms × checks of all explorations (when they give a `steps` variable), else 1e5.
fn estimate_pool(cfg: &LoopConfig) -> u64 {
    let mut n = 0u64;
    for e in &cfg.exploration {
        let atoms = extxyz::read_file(&e.structure, &Default::default())
            .ok()
            .and_then(|f| f.get(e.frame).map(|s| s.len() as u64))
            .unwrap_or(0);
        let steps = e.variables.get("steps").and_then(|v| {
            v.as_integer()
                .map(|x| x as u64)
                .or(v.as_float().map(|x| x as u64))
        });
        let reps = e
            .variables
            .get("replicate")
            .and_then(|v| v.as_integer())
            .map(|r| (r * r * r) as u64)
            .unwrap_or(1);
        if let Some(st) = steps {
            n += atoms * reps * (st / cfg.run.check_every).max(1);
        }
    }
    if n == 0 { 100_000 } else { n }
}

/// Run every exploration of the iteration (up to `[lammps] parallel` at a time).
#[allow(clippy::too_many_arguments)]
fn explore(
    cfg: &LoopConfig,
    dir: &Path,
    k: usize,
    what: &str,
    model: &Path,
    steps: Option<u64>,
    tools: &Tools,
    say: &dyn Fn(&str),
) -> Result<Vec<ExplorationOutcome>, LoopError> {
    let jobs: Vec<(usize, PathBuf)> = cfg
        .exploration
        .iter()
        .enumerate()
        .map(|(i, e)| (i, dir.join(format!("explore_{}", e.name))))
        .collect();
    for (i, d) in &jobs {
        let e = &cfg.exploration[*i];
        std::fs::create_dir_all(d)
            .map_err(|x| err(format!("cannot create {}: {x}", d.display())))?;
        let _ = std::fs::remove_file(d.join("candidates.xyz"));
        let frames =
            extxyz::read_file(&e.structure, &Default::default()).map_err(|x| err(x.to_string()))?;
        let s = frames
            .get(e.frame)
            .ok_or_else(|| err(format!("{}: no frame {}", e.structure.display(), e.frame)))?;
        let masses = crate::io::lammps_data::species_masses(&cfg.run.species).map_err(err)?;
        let (text, _) = crate::io::lammps_data::data_file(s, &cfg.run.species, &masses)
            .map_err(|x| err(x.to_string()))?;
        write_text(&d.join("data.lmp"), &text)?;
        std::fs::copy(&e.input, d.join("in.lmp"))
            .map_err(|x| err(format!("cannot copy {}: {x}", e.input.display())))?;
    }
    let parallel = cfg.lammps.parallel.max(1);
    say(&format!(
        "{what}: running {} LAMMPS exploration(s), {} at a time (logs in {}/explore_*/)",
        jobs.len(),
        parallel.min(jobs.len()),
        dir.display()
    ));
    let timeout = Duration::from_secs_f64(60.0 * cfg.lammps.timeout_minutes.unwrap_or(120.0));
    let mut outcomes: Vec<Option<Result<ExplorationOutcome, LoopError>>> =
        (0..jobs.len()).map(|_| None).collect();
    for chunk in jobs.chunks(parallel) {
        // Told to end: the explorations not started yet are not started.
        if let Some(e) = outcomes
            .iter()
            .flatten()
            .find_map(|r| r.as_ref().err().filter(|e| process::is_interrupted(e)))
        {
            let msg = e.0.clone();
            for (i, _) in chunk {
                outcomes[*i] = Some(Err(err(msg.clone())));
            }
            continue;
        }
        let results: Vec<(usize, Result<ExplorationOutcome, LoopError>)> =
            std::thread::scope(|sc| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(i, d)| {
                        let e = &cfg.exploration[*i];
                        let seed = cfg
                            .run
                            .seed
                            .wrapping_mul(1000)
                            .wrapping_add((k * 100 + i) as u64)
                            % 900_000_000
                            + 1;
                        sc.spawn(move || {
                            (
                                *i,
                                run_lammps(cfg, e, d, model, steps, tools, seed, timeout),
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    // A run that unwound (a stop request, a bug) unwinds the loop the same way.
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
        for (i, r) in results {
            if let Ok(o) = &r {
                say(&format!(
                    "{what}: explored '{}': {} steps{}, {} frames above the lower cutoff, max {} = {:.3} ({:.0} s)",
                    o.name,
                    o.steps_run,
                    o.halted_at
                        .map_or(String::new(), |h| format!(", halted at step {h}")),
                    o.frames_dumped,
                    cfg.run.quantity.name(),
                    o.max_value,
                    o.seconds
                ));
            }
            outcomes[i] = Some(r);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every exploration ran"))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_lammps(
    cfg: &LoopConfig,
    e: &config::Exploration,
    dir: &Path,
    model: &Path,
    steps: Option<u64>,
    tools: &Tools,
    seed: u64,
    timeout: Duration,
) -> Result<ExplorationOutcome, LoopError> {
    let t = Instant::now();
    let model_abs = model.canonicalize().unwrap_or(model.to_path_buf());
    // LAMMPS splits `pair_coeff * * ${model} Li` at white space: the model as seen from the
    // exploration's folder, which holds no run-folder name that could contain a space.
    let model_arg = dir
        .canonicalize()
        .ok()
        .and_then(|d| relative_path(&d, &model_abs))
        .unwrap_or(model_abs);
    let mut vars: Vec<(String, String)> = vec![
        (
            "plugin".into(),
            tools
                .plugin
                .canonicalize()
                .unwrap_or(tools.plugin.clone())
                .display()
                .to_string(),
        ),
        ("model".into(), model_arg.display().to_string()),
        ("data".into(), "data.lmp".into()),
        ("candidates".into(), "candidates.xyz".into()),
        ("quantity".into(), cfg.run.quantity.name().into()),
        ("every".into(), cfg.run.check_every.to_string()),
        ("seed".into(), seed.to_string()),
    ];
    for (k, v) in &e.variables {
        if k == "steps"
            && let Some(n) = steps
        {
            vars.push((k.clone(), n.to_string()));
            continue;
        }
        let s = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        vars.push((k.clone(), s));
    }
    let mut cmd = match &tools.mpirun {
        Some(m) => {
            let mut c = Command::new(m);
            c.arg("-np")
                .arg(cfg.lammps.ranks.to_string())
                .arg(&tools.lmp);
            c
        }
        None => Command::new(&tools.lmp),
    };
    cmd.args(["-nocite", "-log", "log.lammps", "-in", "in.lmp"]);
    for (k, v) in &vars {
        cmd.arg("-var").arg(k).arg(v);
    }
    let out = dir.join("lammps.out");
    let (status, text) = run_with_timeout(cmd, dir, &out, timeout)?;
    if !status.success() {
        let tail = last_lines(&text, 15);
        return Err(err(format!(
            "exploration '{}' failed (see {}):\n{}",
            e.name,
            out.display(),
            tail.join("\n")
        )));
    }
    let mut o = ExplorationOutcome {
        name: e.name.clone(),
        seconds: t.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let (watches, max_value) = watch_summaries(&text);
    o.max_value = max_value;
    for l in text.lines() {
        if let Some(rest) = l.split("halting at step ").nth(1) {
            o.halted_at = rest.split(':').next().and_then(|v| v.trim().parse().ok());
        }
        if let Some(rest) = l.strip_prefix("Loop time of ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if let Some(n) = w.get(5).and_then(|v| v.parse::<u64>().ok()) {
                o.steps_run += n;
            }
        }
    }
    check_watched(cfg, e, dir, &out, &o, &watches)?;
    let cand = dir.join("candidates.xyz");
    if cand.is_file() {
        o.frames_dumped = read_frames(&cand, cfg, true)?.len();
    }
    Ok(o)
}

/// `target` as a path relative to the folder `base` (both absolute and canonical): `..` for
/// each of `base`'s components past their common part. None when they share no root.
fn relative_path(base: &Path, target: &Path) -> Option<PathBuf> {
    let (b, t): (Vec<_>, Vec<_>) = (base.components().collect(), target.components().collect());
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return None;
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    Some(rel)
}

/// Each watch's closing line in LAMMPS's output (`fix ace/uq/watch[ ID]: N checks of gamma, max
/// 1.2, 3 frames written to candidates.xyz[, halted at step S]`): its checks and the file it
/// dumped to ("" for none); and the largest value any watch saw (0 without one).
fn watch_summaries(text: &str) -> (Vec<(u64, String)>, f64) {
    // A watch prints its line after every run (its checks counted over all of them): the last
    // line of each watch counts. Lines may carry a launcher's prefix (`mpirun --tag-output`).
    let mut watches: Vec<(String, (u64, String))> = vec![];
    let mut max = 0.0f64;
    for l in text.lines() {
        let Some(at) = l.find("fix ace/uq/watch") else {
            continue;
        };
        let l = &l[at..];
        if let Some((head, rest)) = l.split_once(" checks of ")
            && let Some((label, n)) = head.rsplit_once(": ")
            && let Ok(n) = n.trim().parse::<u64>()
        {
            // "gamma, max 1.25, 2 frames written to ...": a watch's running maximum.
            if let Some(m) = rest
                .split(", max ")
                .nth(1)
                .and_then(|m| m.split(',').next()?.trim().parse::<f64>().ok())
            {
                max = max.max(m);
            }
            let to = rest
                .split(" frames written to ")
                .nth(1)
                .map(|t| t.split(", halted at step ").next().unwrap_or(t).to_string())
                .unwrap_or_default();
            match watches.iter_mut().find(|w| w.0 == label) {
                Some(w) => w.1 = (n, to),
                None => watches.push((label.to_string(), (n, to))),
            }
        }
    }
    (watches.into_iter().map(|w| w.1).collect(), max)
}

/// An exploration counts as evidence only if a watch checked it and dumped where the loop reads
/// candidates (`candidates.xyz` in `dir`), at least twice unless it halted: otherwise "nothing
/// above the lower cutoff" would declare convergence without a look. `watches`: each watch's
/// checks and dump file, from the closing lines of LAMMPS's output `out`.
fn check_watched(
    cfg: &LoopConfig,
    e: &config::Exploration,
    dir: &Path,
    out: &Path,
    o: &ExplorationOutcome,
    watches: &[(u64, String)],
) -> Result<(), LoopError> {
    let fix = "fix ID all ace/uq/watch ${every} quantity ${quantity} dump ${candidates} lower \
               auto upper auto halt yes";
    if watches.is_empty() {
        return Err(err(format!(
            "exploration '{}' ran without fix ace/uq/watch (its output {} has no \
             'checks of' line), so the loop cannot tell whether it left the training data: add \
             `{fix}` to {}",
            e.name,
            out.display(),
            e.input.display()
        )));
    }
    let ours = |to: &str| {
        std::path::absolute(dir.join(to)).ok()
            == std::path::absolute(dir.join("candidates.xyz")).ok()
    };
    let Some(&(checks, _)) = watches.iter().find(|w| ours(&w.1)) else {
        return Err(err(format!(
            "exploration '{}': its watch dumps to {}, not to ${{candidates}} (candidates.xyz), \
             where the loop reads the candidates: use `{fix}` in {}",
            e.name,
            watches
                .iter()
                .map(|w| if w.1.is_empty() {
                    "no file".to_string()
                } else {
                    w.1.clone()
                })
                .collect::<Vec<_>>()
                .join(", "),
            e.input.display()
        )));
    };
    if o.halted_at.is_none() && checks < 2 {
        return Err(err(format!(
            "exploration '{}' was checked {checks} time(s) in {} steps ([loop] check_every = \
             {}): too few checks to say that it stayed in the training data; lower check_every \
             or run more steps",
            e.name, o.steps_run, cfg.run.check_every
        )));
    }
    Ok(())
}

/// Label `frames` with the user's command. Returns the validated labelled frames and the frames
/// that failed (with the reason in `aceuq_label_error`). If the command fails on the batch, each
/// frame is labelled alone so that one bad structure does not cost the others. A batch stopped
/// at `[labeller] timeout_minutes` is an error instead: each frame alone would get that time
/// again (a hung labeller would hold the loop for (frames + 1) timeouts), and the loop resumes
/// at labelling once the limit is raised (a labeller with a cache, as `label_gpaw.py`, keeps
/// what it finished).
fn label(
    cfg: &LoopConfig,
    dir: &Path,
    frames: &[Structure],
) -> Result<(Vec<Structure>, Vec<Structure>), LoopError> {
    let work = dir.join("labelling");
    std::fs::create_dir_all(&work)
        .map_err(|e| err(format!("cannot create {}: {e}", work.display())))?;
    match label_batch(cfg, &work, "batch", frames) {
        Ok(good) => Ok((good, vec![])),
        // Told to end: no frame-by-frame retry.
        Err(e) if process::is_interrupted(&e) => Err(e),
        Err(e) if process::is_timeout(&e) => Err(err(format!(
            "labelling stopped: {}; raise [labeller] timeout_minutes (the whole batch's limit, \
             {} frames) and run the loop again: it resumes at labelling",
            e.0,
            frames.len()
        ))),
        Err(batch_err) => {
            let mut good = vec![];
            let mut bad = vec![];
            for (i, f) in frames.iter().enumerate() {
                match label_batch(
                    cfg,
                    &work,
                    &format!("frame_{i:04}"),
                    std::slice::from_ref(f),
                ) {
                    Ok(mut g) => good.append(&mut g),
                    Err(e) if process::is_interrupted(&e) => return Err(e),
                    Err(e) => {
                        let mut x = f.clone();
                        x.info.insert(
                            "aceuq_label_error".into(),
                            InfoValue::Str(e.0.replace('\n', " ")),
                        );
                        bad.push(x);
                    }
                }
            }
            if good.is_empty() && !bad.is_empty() {
                return Err(err(format!(
                    "the labeller failed on every structure: {}",
                    batch_err.0
                )));
            }
            Ok((good, bad))
        }
    }
}

fn label_batch(
    cfg: &LoopConfig,
    work: &Path,
    tag: &str,
    frames: &[Structure],
) -> Result<Vec<Structure>, LoopError> {
    let input = work.join(format!("{tag}.in.xyz"));
    let output = work.join(format!("{tag}.out.xyz"));
    let _ = std::fs::remove_file(&output);
    extxyz::write_file_atomic(&input, frames, &WriteOptions::lossless())
        .map_err(|e| err(e.to_string()))?;
    let mut command = cfg
        .labeller
        .command
        .replace("{input}", &shell_quote(&input))
        .replace("{output}", &shell_quote(&output));
    if let Some(settings) = &cfg.labeller.settings {
        let path = work.join("labeller_settings.toml");
        write_labeller_settings(&path, settings, cfg)?;
        command = command.replace("{settings}", &shell_quote(&path));
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&command);
    let log = work.join(format!("{tag}.log"));
    let timeout = Duration::from_secs_f64(60.0 * cfg.labeller.timeout_minutes);
    let (status, text) = run_with_timeout(cmd, work, &log, timeout)?;
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let tail = last_lines(&text, 5);
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "failure".to_string(),
        };
        return Err(err(format!(
            "labeller exited with {how} (log {}){}",
            log.display(),
            if tail.is_empty() {
                ": it printed nothing".to_string()
            } else {
                format!(": {}", tail.join(" | "))
            }
        )));
    }
    let got =
        read_frames(&output, cfg, false).map_err(|e| err(format!("labeller output: {}", e.0)))?;
    if got.len() != frames.len() {
        return Err(err(format!(
            "labeller returned {} frames for {}",
            got.len(),
            frames.len()
        )));
    }
    for (i, (a, b)) in frames.iter().zip(&got).enumerate() {
        if a.len() != b.len() || a.symbols != b.symbols {
            return Err(err(format!(
                "labeller output frame {i} has different atoms than its input"
            )));
        }
        let moved = a
            .positions
            .iter()
            .zip(&b.positions)
            .any(|(p, q)| (0..3).any(|d| (p[d] - q[d]).abs() > 1e-3));
        if moved {
            return Err(err(format!(
                "labeller output frame {i} has different positions than its input"
            )));
        }
        // Another cell is another structure (other images, another density).
        let same_cell = a.pbc == b.pbc
            && match (a.cell, b.cell) {
                (Some(x), Some(y)) => {
                    (0..3).all(|r| (0..3).all(|d| (x[r][d] - y[r][d]).abs() <= 1e-3))
                }
                (None, None) => true,
                _ => false,
            };
        if !same_cell {
            return Err(err(format!(
                "labeller output frame {i} has a different cell or periodicity than its input: \
                 the labeller must label the structure as given"
            )));
        }
        match (b.energy, &b.forces) {
            (Some(e), Some(f))
                if e.is_finite() && f.iter().all(|v| v.iter().all(|x| x.is_finite())) => {}
            _ => {
                return Err(err(format!(
                    "labeller output frame {i} lacks a finite energy ('{}') or forces ('{}'); \
                     the labeller must write both under the keys [loop] energy_key and forces_key",
                    cfg.run.energy_key, cfg.run.forces_key
                )));
            }
        }
    }
    Ok(got)
}

// Labelled forces above this: a unit mistake or atoms on top of each other (they are kept:
// they may be right, with a warning).
use crate::structure::limits::SUSPECT_FORCE as LARGE_FORCE;

/// A warning naming the labelled frames with a force above [`LARGE_FORCE`], the largest first.
fn large_forces(frames: &[Structure]) -> Option<String> {
    let mut big: Vec<(usize, usize, f64)> = frames
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let (a, m) = s.largest_force()?;
            (m > LARGE_FORCE).then_some((i, a, m))
        })
        .collect();
    big.sort_by(|x, y| y.2.total_cmp(&x.2));
    let &(i, a, m) = big.first()?;
    Some(format!(
        "{} of the labelled structures have forces above {LARGE_FORCE} eV/Å (the largest {m:.3e} \
         eV/Å, on atom {} of frame {} of labelled.xyz): check the labeller's units (eV/Å) and \
         whether these structures are physical (atoms nearly on top of each other); they are \
         added to the training data as labelled",
        big.len(),
        a + 1,
        i + 1
    ))
}

/// Write the `[labeller.settings]` table for the labeller, with the data keys of `[loop]` added
/// when the table does not set them (written atomically).
fn write_labeller_settings(
    path: &Path,
    settings: &toml::Table,
    cfg: &LoopConfig,
) -> Result<(), LoopError> {
    let mut t = settings.clone();
    t.entry("energy_key")
        .or_insert_with(|| toml::Value::String(cfg.run.energy_key.clone()));
    t.entry("forces_key")
        .or_insert_with(|| toml::Value::String(cfg.run.forces_key.clone()));
    let text =
        toml::to_string(&t).map_err(|e| err(format!("cannot write the labeller settings: {e}")))?;
    write_text(path, &text)
}

/// The last `n` lines of a log, for error messages.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Append a line to a log file (best effort).
pub fn log_line(run_dir: &Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join("loop.log"))
    {
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: the loop's own data (`initial`, `test`) must carry the labels its fits weigh,
    /// read under `[loop] energy_key` / `forces_key`, like `aceuq fit`.
    #[test]
    fn initial_data_without_the_energy_key_is_an_error_naming_the_key_to_set() {
        let dir = std::env::temp_dir().join(format!("aceuq-loop-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/li-loop/start.xyz");
        let text = std::fs::read_to_string(src)
            .unwrap()
            .replace(" energy=", " REF_energy=");
        let f = dir.join("start.xyz");
        std::fs::write(&f, text).unwrap();
        let mut cfg: LoopConfig = toml::from_str(
            "[loop]\nspecies = [\"Li\"]\ninitial = [\"start.xyz\"]\n[labeller]\ncommand = \"true\"\n",
        )
        .unwrap();
        let e = read_labelled(&f, &cfg).unwrap_err().0;
        assert!(
            e.contains("frame 1 has no energy key 'energy'")
                && e.contains("set energy_key = \"REF_energy\" in [loop]"),
            "{e}"
        );
        cfg.run.energy_key = "REF_energy".into();
        assert_eq!(read_labelled(&f, &cfg).unwrap().len(), 5);
        cfg.run.energy_key = "energy".into();
        cfg.fit.energy_weight = 0.0;
        assert_eq!(read_labelled(&f, &cfg).unwrap().len(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What the first iteration found only after its fit is refused at the start: a species
    /// the initial structures lack, an exploration frame beyond its file, a run folder that is
    /// a file; a species with no standard mass (the explorations' data files need one) when
    /// the configuration is read.
    #[test]
    fn inputs_are_checked_before_the_first_fit() {
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/li-loop");
        let cfg_with = |species: &str, frame: usize| -> LoopConfig {
            toml::from_str(&format!(
                "[loop]\nspecies = {species}\ninitial = [{start:?}]\n\
                 [[exploration]]\nname = \"x\"\ninput = {:?}\nstructure = {start:?}\n\
                 frame = {frame}\n[labeller]\ncommand = \"label {{input}} {{output}}\"\n",
                ex.join("in.explore").display().to_string(),
                start = ex.join("start.xyz").display().to_string()
            ))
            .unwrap()
        };
        check_inputs(&cfg_with("[\"Li\"]", 4)).unwrap();
        let e = check_inputs(&cfg_with("[\"Li\"]", 5)).unwrap_err().0;
        assert!(
            e.contains("start.xyz has 5 frame(s), so there is no frame = 5"),
            "{e}"
        );
        let e = check_inputs(&cfg_with("[\"Li\", \"Na\"]", 0))
            .unwrap_err()
            .0;
        assert!(
            e.contains("[loop] initial holds no atom of Na (it holds Li)"),
            "{e}"
        );
        let e = cfg_with("[\"Li\", \"Q\"]", 0).validate().unwrap_err();
        assert!(
            e.contains("[loop] species 'Q' is not a chemical element"),
            "{e}"
        );
        let file = std::env::temp_dir().join(format!("aceuq-loop-file-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let tools = Tools {
            lmp: PathBuf::from("lmp"),
            plugin: PathBuf::new(),
            mpirun: None,
        };
        let e = run(&cfg_with("[\"Li\"]", 0), &file, &tools, &|_| {})
            .unwrap_err()
            .0;
        assert!(
            e.contains("is a file: the run folder must be a folder"),
            "{e}"
        );
        let _ = std::fs::remove_file(&file);
    }

    /// Labelled forces far above any training force (a unit mistake) are warned about.
    #[test]
    fn labelled_forces_far_beyond_training_are_named() {
        let frame = |f: f64| Structure {
            symbols: vec!["Li".into(); 2],
            positions: vec![[0.0; 3], [2.0, 0.0, 0.0]],
            forces: Some(vec![[0.5, 0.0, 0.0], [0.0, f, 0.0]]),
            ..Default::default()
        };
        assert_eq!(large_forces(&[frame(3.0), frame(99.0)]), None);
        let w = large_forces(&[frame(3.0), frame(250.0), frame(1e7)]).unwrap();
        assert!(
            w.starts_with(
                "2 of the labelled structures have forces above 100 eV/Å (the largest 1.000e7 \
                 eV/Å, on atom 2 of frame 3 of labelled.xyz)"
            ),
            "{w}"
        );
    }

    /// Issue 24: `[labeller.settings]` reaches the labeller as a TOML file named by `{settings}`,
    /// with the data keys of `[loop]` added; a settings table without `{settings}` (or the
    /// reverse) is refused.
    /// A labeller command naming a program or script path that does not exist is found before
    /// any work; commands it cannot judge pass.
    #[test]
    fn a_labeller_path_that_does_not_exist_is_named() {
        let here = env!("CARGO_MANIFEST_DIR");
        let ok = format!("python3 {here}/scripts/label.py --labeller li-snap {{input}} {{output}}");
        assert_eq!(missing_program(&ok), None);
        let typo = format!("python3 {here}/scripts/labell.py {{input}} {{output}}");
        assert_eq!(
            missing_program(&typo),
            Some(format!("{here}/scripts/labell.py"))
        );
        assert_eq!(
            missing_program("/no/such/labeller --x {input} {output}"),
            Some("/no/such/labeller".into())
        );
        // Quoted paths (a folder with a space), placeholders, variables, plain names and
        // arguments that are no scripts are not judged.
        assert_eq!(
            missing_program("sh '/no such/x.sh' {input} {output}"),
            Some("/no such/x.sh".into())
        );
        for cmd in [
            "python3 {dir}/x.py {input} {output}",
            "$HOME/bin/label {input} {output}",
            "label --out /no/such/file {input} {output}",
            "sleep 300 # {input} {output}",
            "cd /tmp && ./label.py {input} {output}",
            "./no_such.py {input} {output}",
        ] {
            assert_eq!(missing_program(cmd), None, "{cmd}");
        }
    }

    /// A resume warns that levels of theory mix when the labelling changed; a time limit is no
    /// such change.
    #[test]
    fn a_changed_labelling_is_told_from_a_changed_time_limit() {
        let lab = |command: &str, settings: &str| -> config::LabellerConfig {
            toml::from_str(&format!("command = {command:?}\nsettings = {settings}\n")).unwrap()
        };
        let a = lab(
            "label {input} {output}",
            "{ ecut = 300, timeout_minutes = 20 }",
        );
        assert!(!labeller_changed(&a, &a.clone()));
        let longer = lab(
            "label {input} {output}",
            "{ ecut = 300, timeout_minutes = 60 }",
        );
        assert!(!labeller_changed(&a, &longer));
        let ecut = lab(
            "label {input} {output}",
            "{ ecut = 400, timeout_minutes = 20 }",
        );
        assert!(labeller_changed(&a, &ecut));
        let other = lab(
            "label2 {input} {output}",
            "{ ecut = 300, timeout_minutes = 20 }",
        );
        assert!(labeller_changed(&a, &other));
    }

    #[test]
    fn labeller_settings_are_written_for_the_command_with_the_data_keys() {
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/li-loop");
        let base = format!(
            "[loop]\nspecies = [\"Li\"]\ninitial = [{start:?}]\nenergy_key = \"dft_energy\"\n\
             [[exploration]]\nname = \"x\"\ninput = {:?}\nstructure = {start:?}\n",
            ex.join("in.explore").display().to_string(),
            start = ex.join("start.xyz").display().to_string()
        );
        let with = |labeller: &str| -> LoopConfig {
            toml::from_str(&format!("{base}[labeller]\n{labeller}")).unwrap()
        };
        let cfg = with(
            "command = \"label --settings {settings} {input} {output}\"\n\
             settings = { mode = \"pw\", ecut = 300, kpoint_density = 2.5 }\n",
        );
        cfg.validate().unwrap();
        let dir = std::env::temp_dir().join(format!("aceuq-lset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("labeller_settings.toml");
        write_labeller_settings(&path, cfg.labeller.settings.as_ref().unwrap(), &cfg).unwrap();
        let back: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back["mode"].as_str(), Some("pw"));
        assert_eq!(back["ecut"].as_integer(), Some(300));
        assert_eq!(back["energy_key"].as_str(), Some("dft_energy"));
        assert_eq!(back["forces_key"].as_str(), Some("forces"));
        let _ = std::fs::remove_dir_all(&dir);

        let e = with("command = \"label --settings {settings} {input} {output}\"\n")
            .validate()
            .unwrap_err();
        assert!(e.contains("no [labeller.settings] table"), "{e}");
        let e = with("command = \"label {input} {output}\"\nsettings = { ecut = 300 }\n")
            .validate()
            .unwrap_err();
        assert!(e.contains("does not pass them"), "{e}");
    }

    /// A watched quantity the loop would not build is refused before any work, naming the
    /// `[uq]` key that builds it; gamma and gamma_local need none.
    #[test]
    fn a_watched_quantity_the_config_does_not_build_is_refused_up_front() {
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/li-loop");
        let cfg = |quantity: &str, uq: &str| -> Result<(), String> {
            let text = format!(
                "[loop]\nspecies = [\"Li\"]\ninitial = [{start:?}]\nquantity = \"{quantity}\"\n\
                 [labeller]\ncommand = \"label {{input}} {{output}}\"\n\
                 [[exploration]]\nname = \"x\"\ninput = {:?}\nstructure = {start:?}\n{uq}",
                ex.join("in.explore").display().to_string(),
                start = ex.join("start.xyz").display().to_string()
            );
            toml::from_str::<LoopConfig>(&text).unwrap().validate()
        };
        for (q, key) in [
            ("contact", "contact = true"),
            ("distance", "distance = true"),
            ("gp", "gp = true"),
            ("ensemble", "ensemble = 8"),
        ] {
            let e = cfg(q, "").unwrap_err();
            assert!(e.contains(&format!("add `{key}` to the [uq] table")), "{e}");
            cfg(q, &format!("[uq]\n{key}\n")).unwrap();
        }
        cfg("gamma", "").unwrap();
        cfg("gamma_local", "").unwrap();
    }

    /// An exploration is evidence only when a watch checked it at least twice (or halted it)
    /// and dumped to the loop's candidates file; the watch's closing lines say so.
    #[test]
    fn explorations_without_a_proper_watch_are_refused() {
        let text = "fix ace/uq/watch: 1 checks of gamma, max 0.5, 0 frames written to \
                    candidates.xyz\n\
                    Loop time of 1.2 on 1 procs for 100 steps with 250 atoms\n\
                    [1,0]<stdout>:fix ace/uq/watch: 5 checks of gamma, max 1.25, 2 frames \
                    written to candidates.xyz\n\
                    fix ace/uq/watch w2: 1 checks of gp, max 0.01, 0 frames written to ./other.xyz, \
                    halted at step 0\n";
        let (w, max) = watch_summaries(text);
        assert_eq!(max, 1.25);
        assert_eq!(
            w,
            [
                (5, "candidates.xyz".to_string()),
                (1, "./other.xyz".to_string())
            ]
        );
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/li-loop");
        let cfg: LoopConfig = toml::from_str(&format!(
            "[loop]\nspecies = [\"Li\"]\ninitial = [\"start.xyz\"]\n[labeller]\n\
             command = \"true\"\n[[exploration]]\nname = \"x\"\ninput = {:?}\n\
             structure = \"start.xyz\"\n",
            ex.join("in.explore").display().to_string()
        ))
        .unwrap();
        let e = &cfg.exploration[0];
        let (dir, out) = (Path::new("/tmp/run"), Path::new("/tmp/run/lammps.out"));
        let mut o = ExplorationOutcome {
            steps_run: 100,
            ..Default::default()
        };
        check_watched(&cfg, e, dir, out, &o, &w).unwrap();
        check_watched(&cfg, e, dir, out, &o, &[(2, "./candidates.xyz".into())]).unwrap();
        let msg = |w: &[(u64, String)], o: &ExplorationOutcome| {
            check_watched(&cfg, e, dir, out, o, w).unwrap_err().0
        };
        let m = msg(&[], &o);
        assert!(
            m.contains("ran without fix ace/uq/watch") && m.contains("in.explore"),
            "{m}"
        );
        let m = msg(&w[1..], &o);
        assert!(
            m.contains("its watch dumps to ./other.xyz, not to ${candidates}"),
            "{m}"
        );
        let m = msg(&[(1, "candidates.xyz".into())], &o);
        assert!(
            m.contains("was checked 1 time(s) in 100 steps ([loop] check_every = 20)"),
            "{m}"
        );
        // A halt at the first check is evidence enough.
        o.halted_at = Some(0);
        check_watched(&cfg, e, dir, out, &o, &[(1, "candidates.xyz".into())]).unwrap();
    }

    /// The labeller's output must be the input structure: a changed cell is refused (a copy
    /// of the labelled input is taken).
    #[test]
    fn a_labeller_that_changes_the_cell_is_refused() {
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/li-loop");
        let frames = extxyz::read_file(ex.join("start.xyz"), &Default::default()).unwrap();
        let work = std::env::temp_dir().join(format!("aceuq-lcell-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let cfg = |command: &str| -> LoopConfig {
            toml::from_str(&format!(
                "[loop]\nspecies = [\"Li\"]\ninitial = [\"start.xyz\"]\n[labeller]\n\
                 command = {command:?}\n"
            ))
            .unwrap()
        };
        let got = label_batch(&cfg("cp {input} {output}"), &work, "same", &frames[..2]).unwrap();
        assert_eq!(got.len(), 2);
        let sed = "sed 's/Lattice=\"[^\"]*\"/Lattice=\"30 0 0 0 30 0 0 0 30\"/' {input} > {output}";
        let e = label_batch(&cfg(sed), &work, "cell", &frames[..2])
            .unwrap_err()
            .0;
        assert!(e.contains("frame 0 has a different cell"), "{e}");
        let _ = std::fs::remove_dir_all(&work);
    }

    #[test]
    fn paths_relative_to_a_folder() {
        let r = |b: &str, t: &str| relative_path(Path::new(b), Path::new(t));
        assert_eq!(
            r("/r sp/iter_001/explore_x", "/r sp/iter_001/model.aceuq"),
            Some(PathBuf::from("../model.aceuq"))
        );
        assert_eq!(
            r("/r sp/final_check/explore_x", "/r sp/final.aceuq"),
            Some(PathBuf::from("../../final.aceuq"))
        );
        assert_eq!(r("/a/b", "/a/b/m.aceuq"), Some(PathBuf::from("m.aceuq")));
    }

    /// Time limits, e_max and N that would panic or mislead later (a negative or infinite
    /// timeout once the first exploration or labelling starts, N = 2 for pool_size 0) are
    /// refused when the configuration is read, naming the key.
    #[test]
    fn limits_and_sizes_are_checked_when_the_config_is_read() {
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/li-loop");
        let cfg = |run: &str, labeller: &str, lammps: &str| -> Result<(), String> {
            let text = format!(
                "[loop]\nspecies = [\"Li\"]\ninitial = [{start:?}]\n{run}\n\
                 [labeller]\ncommand = \"label {{input}} {{output}}\"\n{labeller}\n\
                 [lammps]\n{lammps}\n\
                 [[exploration]]\nname = \"x\"\ninput = {:?}\nstructure = {start:?}\n",
                ex.join("in.explore").display().to_string(),
                start = ex.join("start.xyz").display().to_string()
            );
            toml::from_str::<LoopConfig>(&text).unwrap().validate()
        };
        cfg("", "", "").unwrap();
        cfg(
            "wall_time_minutes = 30\nmax_error = 0.5\npool_size = 2",
            "timeout_minutes = 5",
            "timeout_minutes = 10",
        )
        .unwrap();
        for v in ["-1", "0", "nan", "inf", "1e300"] {
            let e = cfg("", "", &format!("timeout_minutes = {v}")).unwrap_err();
            assert!(e.starts_with("[lammps] timeout_minutes = "), "{e}");
            let e = cfg("", &format!("timeout_minutes = {v}"), "").unwrap_err();
            assert!(e.starts_with("[labeller] timeout_minutes = "), "{e}");
            let e = cfg(&format!("wall_time_minutes = {v}"), "", "").unwrap_err();
            assert!(
                e.starts_with("[loop] wall_time_minutes = ") && e.contains("for no limit"),
                "{e}"
            );
        }
        for v in ["-1", "0", "nan"] {
            let e = cfg(&format!("max_error = {v}"), "", "").unwrap_err();
            assert!(e.starts_with("[loop] max_error = "), "{e}");
        }
        for v in ["0", "1"] {
            let e = cfg(&format!("pool_size = {v}"), "", "").unwrap_err();
            assert!(
                e.starts_with(&format!("[loop] pool_size = {v} is too small")),
                "{e}"
            );
        }
    }

    /// The explorations run in their own folders, so a relative LAMMPS or plugin path (the
    /// repository default `.venv/bin/lmp` is one) is made absolute when the tools are resolved.
    #[test]
    fn relative_tool_paths_are_made_absolute() {
        let cfg: LoopConfig = toml::from_str(
            "[loop]\nspecies = [\"Li\"]\ninitial = [\"start.xyz\"]\n[labeller]\ncommand = \"true\"\n\
             [lammps]\nlmp = \"Cargo.toml\"\nplugin = \"./Cargo.lock\"\n",
        )
        .unwrap();
        // cargo runs unit tests in the package root, where both files exist.
        let t = Tools::resolve(&cfg).unwrap();
        assert!(
            t.lmp.is_absolute() && t.lmp.is_file(),
            "{}",
            t.lmp.display()
        );
        assert!(
            t.plugin.is_absolute() && t.plugin.is_file(),
            "{}",
            t.plugin.display()
        );
    }

    #[test]
    fn split_is_stable_and_close_to_the_fraction() {
        let v: Vec<bool> = (0..10_000).map(|k| is_valid(7, k, 0.1)).collect();
        let frac = v.iter().filter(|x| **x).count() as f64 / v.len() as f64;
        assert!((frac - 0.1).abs() < 0.01, "{frac}");
        // Adding structures never changes earlier assignments.
        assert_eq!(
            v[..100],
            (0..100).map(|k| is_valid(7, k, 0.1)).collect::<Vec<_>>()[..]
        );
        assert!(!(0..100).any(|k| is_valid(7, k, 0.0)));
    }

    /// The lower cutoffs see only held-out initial structures, the upper fit those and the
    /// held-out structures the loop labelled (never one the model is trained on), and the
    /// held-out initial structures stay the same as the labels accumulate.
    #[test]
    fn split_keeps_labelled_structures_out_of_the_lower_cutoffs_and_trained_ones_out_of_the_upper()
    {
        // Five initial structures (the quick example: the hash holds none of them out), then
        // three iterations of labels.
        let mut origin = vec![0; 5];
        let first = split(1, 0.15, &origin);
        assert_eq!(
            first.valid,
            vec![4],
            "the last initial structure is held out"
        );
        assert_eq!(first.lower, vec![4]);
        assert!(first.high.is_empty() && !first.lower_in_training);
        for it in 1..=3 {
            origin.extend(std::iter::repeat_n(it, 6));
            let sp = split(1, 0.15, &origin);
            assert_eq!(sp.lower, first.lower, "iteration {it}: {sp:?}");
            // The held-out labelled structures (11, 13, 19 and 22 with seed 1) are the upper
            // fit's high-uncertainty data, not the lower cutoffs'.
            let expected: Vec<usize> = (5..origin.len())
                .filter(|&i| is_valid(1, i, 0.15))
                .collect();
            assert_eq!(sp.high, expected, "iteration {it}");
            assert!(it < 2 || !expected.is_empty());
            assert!(sp.high.iter().all(|i| sp.valid.contains(i)));
            assert!(sp.high.iter().all(|i| !sp.train.contains(i)));
            // Every structure is either trained on or held out.
            let mut all: Vec<usize> = sp.train.iter().chain(&sp.valid).copied().collect();
            all.sort();
            assert_eq!(all, (0..origin.len()).collect::<Vec<_>>());
        }
        // Nothing held out: the lower cutoffs fall back to the initial training structures.
        let none = split(1, 0.0, &[0, 0, 1, 1]);
        assert!(none.valid.is_empty() && none.high.is_empty() && none.lower_in_training);
        assert_eq!(none.lower, vec![0, 1]);
    }

    /// A fit without an upper cutoff takes the latest recalibration's (at least its own lower
    /// cutoff, per cluster too), says so, and the summary records where it came from; a fit
    /// with an upper cutoff of its own keeps it.
    #[test]
    fn a_fit_without_an_upper_cutoff_takes_the_latest_recalibrations() {
        use crate::stats::cutoff::{CalibrationOptions, calibrate};
        use crate::uq::Method;
        let model = crate::testing::random_model(&["Al", "Mg"], &crate::testing::tiny_cfg(), 1);
        let u: Vec<f64> = (0..400)
            .map(|i| 0.5 + (i as f64 * 0.37).sin().abs())
            .collect();
        let e: Vec<f64> = u
            .iter()
            .enumerate()
            .map(|(i, x)| 0.02 * x * (1.2 + (i as f64 * 1.3).cos()))
            .collect();
        let entry = |sp: &str, u_max: f64| {
            let mut c = calibrate(sp, "gamma", &e, &u, &CalibrationOptions::new(1000)).unwrap();
            c.u_max = u_max;
            c
        };
        let mut m = Potential::new(model.clone());
        let mut al = entry("Al", f64::INFINITY);
        al.warnings = vec!["no upper cutoff: the trend does not reach it".into()];
        let mut al_cluster = al.clone();
        al_cluster.cluster = Some(0);
        al_cluster.u_c = 8.0;
        m.uq.calibration = vec![al, al_cluster, entry("Mg", 5.0)];
        let mut from = Potential::new(model);
        let mut src = entry("Al", 7.0);
        if let Some(c) = src.conditional.as_mut() {
            c.n_high = 512;
        }
        from.uq.calibration = vec![src.clone(), entry("Mg", 9.0)];

        let notes = carry_upper(&mut m, Method::Gamma, &from, 3);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].0, "Al");
        assert!(notes[0].1.contains("iteration 3"), "{notes:?}");
        let c = &m.uq.calibration;
        assert_eq!(c[0].u_max, 7.0);
        assert_eq!(c[0].conditional, src.conditional);
        assert_eq!(
            c[1].u_max, 8.0,
            "never below the cluster's own lower cutoff"
        );
        assert!(
            !c[0]
                .warnings
                .iter()
                .any(|w| w.starts_with("no upper cutoff"))
        );
        assert_eq!(carried_from(&c[0]), Some(3));
        assert_eq!(c[2].u_max, 5.0, "Mg has an upper cutoff of its own");
        assert_eq!(carried_from(&c[2]), None);
        let rows = species_cutoffs(&m, Method::Gamma);
        assert_eq!((rows[0].upper_from, rows[0].high_atoms), (Some(3), 512));
        assert_eq!(rows[1].upper_from, None);
    }

    /// The cutoff rows say how each species' cutoffs moved, with "none" for a missing upper
    /// cutoff and the recalibration after labelling.
    #[test]
    fn cutoff_rows_show_how_the_cutoffs_moved() {
        let c = |sp: &str, lower: f64, upper: f64, high: usize| SpeciesCutoffs {
            species: sp.into(),
            lower,
            upper,
            valid_atoms: 128,
            high_atoms: high,
            ..Default::default()
        };
        let mut it1 = IterationSummary {
            iteration: 1,
            cutoffs: vec![c("Li", 1.25, f64::INFINITY, 0), c("Mg", 2.0, 9.0, 0)],
            ..Default::default()
        };
        add_recalibration(
            &mut it1.cutoffs,
            &[c("Li", 1.25, 200.0, 512), c("Mg", 2.0, f64::INFINITY, 64)],
        );
        let it2 = IterationSummary {
            iteration: 2,
            cutoffs: vec![c("Li", 1.5, 4.0, 512), c("Mg", 2.0, f64::INFINITY, 64)],
            ..Default::default()
        };
        // An iteration without recorded cutoffs does not reset the comparison.
        let it3 = IterationSummary {
            iteration: 3,
            ..Default::default()
        };
        let it4 = IterationSummary {
            iteration: 4,
            cutoffs: vec![c("Li", 1.5, 2.0, 900)],
            ..Default::default()
        };
        let rows = cutoff_rows(&[it1, it2, it3, it4]);
        let h = cutoff_header();
        let get = |r: &Vec<String>, col: &str| r[h.iter().position(|x| x == col).unwrap()].clone();
        assert_eq!(rows.len(), 5);
        assert_eq!(get(&rows[0], "upper_cutoff"), "none");
        assert_eq!(get(&rows[0], "lower_moved"), "");
        assert_eq!(get(&rows[0], "upper_after_labelling"), "200.00000");
        assert_eq!(get(&rows[0], "high_atoms_after_labelling"), "512");
        assert_eq!(get(&rows[1], "upper_after_labelling"), "none");
        assert_eq!(get(&rows[2], "lower_moved"), "+20.0%");
        assert_eq!(get(&rows[2], "upper_cutoff"), "4.00000");
        assert_eq!(get(&rows[2], "upper_moved"), "from none");
        assert_eq!(get(&rows[2], "upper_from"), "fit");
        assert_eq!(get(&rows[2], "high_atoms"), "512");
        assert_eq!(get(&rows[2], "upper_after_labelling"), "");
        assert_eq!(get(&rows[3], "lower_moved"), "=");
        assert_eq!(get(&rows[3], "upper_moved"), "to none");
        assert_eq!(get(&rows[4], "iteration"), "4");
        assert_eq!(get(&rows[4], "upper_moved"), "-50.0%");
    }
}
