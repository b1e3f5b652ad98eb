//! The `aceuq loop` configuration file (TOML).
//!
//! ```toml
//! [loop]
//! species = ["Li"]
//! initial = ["start.xyz"]      # labelled structures to start from
//! test = ["test.xyz"]          # independent labelled test set, reported every iteration
//! max_iterations = 8
//! max_new = 16                 # structures labelled per iteration
//! converged_candidates = 3     # no halt and at most this many candidate frames: converged
//!
//! [labeller]
//! command = "python3 label.py {input} {output}"
//! # or DFT with GPAW: the settings table is written to a file whose path replaces {settings}
//! # command = "/usr/bin/python3 -s {dir}/label_gpaw.py --settings {settings} {input} {output}"
//! # settings = { mode = "pw", ecut = 300, kpoint_density = 2.5, xc = "PBE", smearing = 0.1 }
//!
//! [[exploration]]
//! name = "heat"
//! input = "in.explore"         # LAMMPS input template
//! structure = "start.xyz"
//! variables = { tfinal = 900, steps = 20000 }
//! ```
//! Paths are relative to the configuration file. `[basis]`, `[fit]` and `[uq]` are the tables of
//! `aceuq fit --config`.

use crate::basis::BasisConfig;
use crate::model::fit::FitConfig;
use crate::uq::{Method, UqConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    #[serde(rename = "loop")]
    pub run: RunConfig,
    #[serde(default)]
    pub basis: BasisConfig,
    #[serde(default)]
    pub fit: FitConfig,
    #[serde(default)]
    pub uq: UqConfig,
    pub labeller: LabellerConfig,
    #[serde(default)]
    pub lammps: LammpsConfig,
    #[serde(default)]
    pub exploration: Vec<Exploration>,
}

/// `[loop]`: data, limits and the watched uncertainty.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Species of the model, in order.
    pub species: Vec<String>,
    /// Labelled extended XYZ files to start from.
    pub initial: Vec<PathBuf>,
    /// Independent labelled test set (never trained on), reported every iteration.
    #[serde(default)]
    pub test: Vec<PathBuf>,
    /// Upper limit of iterations.
    #[serde(default = "d_iterations")]
    pub max_iterations: usize,
    /// Structures chosen for labelling per iteration (D-optimal selection).
    #[serde(default = "d_max_new")]
    pub max_new: usize,
    /// Fraction of the labelled structures held out for validation and calibration.
    #[serde(default = "d_valid_fraction")]
    pub valid_fraction: f64,
    /// Stop starting new iterations after this many minutes.
    #[serde(default)]
    pub wall_time_minutes: Option<f64>,
    /// Uncertainty watched in the explorations.
    #[serde(default = "d_quantity")]
    pub quantity: Method,
    /// Check the uncertainty every this many MD steps.
    #[serde(default = "d_check_every")]
    pub check_every: u64,
    /// Force error (eV/Å) at which MD is considered unstable (the upper cutoff).
    #[serde(default = "d_max_error")]
    pub max_error: f64,
    /// Atoms × checks the cutoffs are applied to (N of the 1 - 1/N rule); default: estimated
    /// from the explorations (atoms × steps / check_every).
    #[serde(default)]
    pub pool_size: Option<u64>,
    /// An iteration whose explorations all ran their full length (no halt) and dumped at most
    /// this many candidate frames in all ends the loop as converged. The lower cutoff is set so
    /// that one in N atom-checks of in-distribution data lies above it, and N is the atom-checks
    /// of all explorations, so converged explorations still dump about one frame; 3 is what
    /// such runs stay within 98 % of the time (Poisson with mean 1). 0: only a run without any
    /// candidate converges.
    #[serde(default = "d_converged_candidates")]
    pub converged_candidates: usize,
    /// After the loop, run every exploration with the final model for this many steps (0: no
    /// check) and report whether any halted.
    #[serde(default)]
    pub final_check_steps: u64,
    /// Seed for the train/validation split.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Extended XYZ keys of the reference labels (ASE's `energy=` and `forces:R:3` by default).
    /// Every frame of `initial` and `test` needs both, unless `[fit] energy_weight = 0` (forces
    /// only) or `force_weight = 0` (energies only); the labeller's output always needs both.
    #[serde(default = "d_energy_key")]
    pub energy_key: String,
    #[serde(default = "d_forces_key")]
    pub forces_key: String,
}

fn d_iterations() -> usize {
    10
}
fn d_max_new() -> usize {
    16
}
fn d_converged_candidates() -> usize {
    3
}
fn d_valid_fraction() -> f64 {
    0.1
}
fn d_quantity() -> Method {
    Method::Gamma
}
fn d_check_every() -> u64 {
    20
}
fn d_max_error() -> f64 {
    1.0
}
fn d_seed() -> u64 {
    1
}
fn d_energy_key() -> String {
    "energy".into()
}
fn d_forces_key() -> String {
    "forces".into()
}

/// The largest time limit a configuration may give: a year, in minutes.
const MAX_MINUTES: f64 = 525_600.0;

/// `[labeller]`: a command that labels an extended XYZ file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabellerConfig {
    /// Shell command; `{input}` and `{output}` are replaced by file paths, `{dir}` by the folder
    /// of the configuration file (quoted for the shell if it holds a space or the like). It must
    /// write every input frame, labelled (energy and forces), in the same order, with the same
    /// species, positions (to 1e-3 Å), cell and periodicity, to `{output}` and exit 0.
    pub command: String,
    /// Kill a labelling that takes longer (minutes).
    #[serde(default = "d_label_timeout")]
    pub timeout_minutes: f64,
    /// Settings handed to the labeller: written as a TOML file (with `energy_key` and
    /// `forces_key` of `[loop]` added unless given) whose path replaces `{settings}` in the
    /// command. For `scripts/label_gpaw.py`: mode, ecut, kpoint_density, xc, smearing, spin,
    /// timeout_minutes, ... (see that script's `--help`).
    #[serde(default)]
    pub settings: Option<toml::Table>,
}

fn d_label_timeout() -> f64 {
    60.0
}

/// `[lammps]`: how explorations run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LammpsConfig {
    /// LAMMPS executable (default: $ACEUQ_LMP, then .venv/bin/lmp of the repository).
    pub lmp: Option<PathBuf>,
    /// The plugin (default: $ACEUQ_PLUGIN_DIR/aceuqplugin.so, then build/aceuqplugin.so).
    pub plugin: Option<PathBuf>,
    /// `mpirun` and ranks per exploration (default: serial).
    pub mpirun: Option<PathBuf>,
    #[serde(default)]
    pub ranks: u32,
    /// Explorations run at the same time (default: 1).
    #[serde(default)]
    pub parallel: usize,
    /// Kill an exploration that takes longer (minutes; default 120).
    pub timeout_minutes: Option<f64>,
}

/// One `[[exploration]]`: a LAMMPS input template run from a structure.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exploration {
    /// Short name (folder name).
    pub name: String,
    /// LAMMPS input template. Variables it gets: `plugin`, `model`, `data`, `candidates`,
    /// `quantity`, `every`, `seed`, and those of `variables`. It should use `pair_style ace/uq`
    /// with `pair_coeff * * ${model} ...` and `fix ... ace/uq/watch ${every} quantity ${quantity}
    /// dump ${candidates} lower auto upper auto halt yes`.
    pub input: PathBuf,
    /// Starting structure (extended XYZ) and its frame.
    pub structure: PathBuf,
    #[serde(default)]
    pub frame: usize,
    /// Extra LAMMPS variables (`-var name value`).
    #[serde(default)]
    pub variables: BTreeMap<String, toml::Value>,
}

impl LoopConfig {
    /// Read a configuration file; relative paths become relative to its folder.
    pub fn read(path: &Path) -> Result<LoopConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut cfg: LoopConfig = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| 1 + text[..s.start].matches('\n').count());
            match line {
                Some(l) => format!("{}:{l}: {}", path.display(), e.message()),
                None => format!("{}: {}", path.display(), e.message()),
            }
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        cfg.run.initial.iter_mut().for_each(abs);
        cfg.run.test.iter_mut().for_each(abs);
        for e in cfg.exploration.iter_mut() {
            abs(&mut e.input);
            abs(&mut e.structure);
        }
        if let Some(p) = cfg.lammps.lmp.as_mut() {
            abs(p);
        }
        if let Some(p) = cfg.lammps.plugin.as_mut() {
            abs(p);
        }
        let dir_s = dir
            .canonicalize()
            .unwrap_or(dir.to_path_buf())
            .display()
            .to_string();
        // Quoted for the shell when it holds anything but plain path characters (a space).
        let plain = dir_s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-,:@=".contains(c));
        // A command that quotes {dir} itself keeps it as it is.
        let quoted = ["\"{dir}", "'{dir}"]
            .iter()
            .any(|q| cfg.labeller.command.contains(q));
        let dir_s = if plain || quoted {
            dir_s
        } else {
            super::shell_quote(Path::new(&dir_s))
        };
        cfg.labeller.command = cfg.labeller.command.replace("{dir}", &dir_s);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the settings; messages say which to change.
    pub fn validate(&self) -> Result<(), String> {
        let r = &self.run;
        if r.species.is_empty() {
            return Err("[loop] species is empty".into());
        }
        // The explorations' data files carry each species' standard mass.
        crate::io::lammps_data::species_masses(&r.species).map_err(|e| format!("[loop] {e}"))?;
        if r.initial.is_empty() {
            return Err("[loop] initial lists no labelled structures to start from".into());
        }
        if r.max_new == 0 || r.max_iterations == 0 {
            return Err("[loop] max_new and max_iterations must be at least 1".into());
        }
        if !(0.0..0.9).contains(&r.valid_fraction) {
            return Err("[loop] valid_fraction must be in [0, 0.9)".into());
        }
        if r.check_every == 0 {
            return Err("[loop] check_every must be at least 1".into());
        }
        // gamma and gamma_local are built whatever [uq] says; the others only when asked for.
        let missing = match r.quantity {
            crate::uq::Method::Ensemble if self.uq.ensemble == 0 => Some("ensemble = 8"),
            crate::uq::Method::Distance if !self.uq.distance => Some("distance = true"),
            crate::uq::Method::Gp if !self.uq.gp => Some("gp = true"),
            crate::uq::Method::Contact if !self.uq.contact => Some("contact = true"),
            _ => None,
        };
        if let Some(key) = missing {
            return Err(format!(
                "[loop] quantity = \"{q}\" is watched, but [uq] does not build it: add `{key}` \
                 to the [uq] table (or watch gamma or gamma_local, which the loop always builds)",
                q = r.quantity.name()
            ));
        }
        self.fit.refuse_growth("aceuq loop")?;
        if !self.labeller.command.contains("{input}") || !self.labeller.command.contains("{output}")
        {
            return Err("[labeller] command must contain {input} and {output}".into());
        }
        match (
            self.labeller.command.contains("{settings}"),
            self.labeller.settings.is_some(),
        ) {
            (true, false) => {
                return Err(
                    "[labeller] command passes {settings} but there is no [labeller.settings] \
                     table; add one (e.g. settings = { mode = \"pw\", ecut = 300 }) or drop \
                     {settings} from the command"
                        .into(),
                );
            }
            (false, true) => {
                return Err(
                    "[labeller] settings are given but the command does not pass them; add \
                     --settings {settings} (or wherever your labeller takes them) to the command"
                        .into(),
                );
            }
            _ => {}
        }
        // Minutes become a Duration, which holds at most about 5e11 years: a limit of a year
        // is far beyond any run (and larger values are a slip).
        let minutes = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= MAX_MINUTES {
                Ok(())
            } else {
                Err(format!(
                    "{key} = {v} must be a positive number of minutes, at most {MAX_MINUTES} \
                     (a year; leave the key out for {})",
                    if key.starts_with("[loop]") {
                        "no limit"
                    } else {
                        "the default"
                    }
                ))
            }
        };
        minutes("[labeller] timeout_minutes", self.labeller.timeout_minutes)?;
        if let Some(v) = self.lammps.timeout_minutes {
            minutes("[lammps] timeout_minutes", v)?;
        }
        if let Some(v) = r.wall_time_minutes {
            minutes("[loop] wall_time_minutes", v)?;
        }
        if !(r.max_error.is_finite() && r.max_error > 0.0) {
            return Err(format!(
                "[loop] max_error = {} must be a positive force error in eV/Å (the error at \
                 which MD counts as unstable; default 1)",
                r.max_error
            ));
        }
        if let Some(n) = r.pool_size.filter(|&n| n < 2) {
            return Err(format!(
                "[loop] pool_size = {n} is too small: give the atom-checks the cutoffs apply to \
                 (at least 2), or leave it out to estimate it from the explorations"
            ));
        }
        if self.exploration.is_empty() {
            return Err(
                "no [[exploration]]: give at least one LAMMPS input to explore with".into(),
            );
        }
        let mut names: Vec<&str> = self.exploration.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("[[exploration]] names must be unique".into());
        }
        for e in &self.exploration {
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "exploration name '{}': use letters, digits, _ and -",
                    e.name
                ));
            }
            for must in [&e.input, &e.structure] {
                if !must.is_file() {
                    return Err(format!(
                        "exploration '{}': {} does not exist",
                        e.name,
                        must.display()
                    ));
                }
            }
        }
        for p in r.initial.iter().chain(&r.test) {
            if !p.is_file() {
                return Err(format!("[loop]: {} does not exist", p.display()));
            }
        }
        self.basis.validate().map_err(|e| e.to_string())?;
        Ok(())
    }
}
