//! Fitting: weighted, ridge-regularized linear least squares over per-atom energies and force
//! components, accumulated as normal equations structure by structure (memory does not grow with
//! the data), in parallel over structures.
//!
//! Loss = `energy_weight * mean_s ((E_s - Ê_s)/N_s)^2 + force_weight * mean_{a,α} (F - F̂)^2
//!        + ridge * sum_j d_j c_j^2`, with `d_j` the diagonal of the normal matrix (a ridge relative
//! to each column's scale, so it does not depend on how the basis functions are normalized). The
//! one-body energies `E0_s` are fitted unregularized.
//!
//! The ridge is chosen on the validation data by default ([`Ridge::Auto`]): the training normal
//! equations are accumulated once and solved for a scan of ridge values, each solution is
//! evaluated on the validation structures, and the one with the lowest validation loss (the same
//! weighted energy and force terms as the training loss) is kept. The scan is stored in
//! [`FitInfo::ridge_choice`].

use super::core::{CorePair, atomic_number};
use super::env::Environments;
use super::{FitInfo, Model, ModelError, Prediction, Workspace};
use crate::basis::radial::RadialBasis;
use crate::basis::{BasisConfig, SpeciesBasis};
use crate::neighbors;
use crate::structure::Structure;
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, Par, Side};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Fit settings (the `[fit]` table of a config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// Weight of the mean squared per-atom energy error (eV²).
    pub energy_weight: f64,
    /// Weight of the mean squared force-component error (eV²/Å²).
    pub force_weight: f64,
    /// Ridge strength relative to each column's scale, or `"auto"` (the default): chosen on the
    /// validation data.
    pub ridge: Ridge,
    /// Add the ZBL core below the shortest training distance.
    pub core: bool,
    /// Width in Å over which the core is switched on below the shortest training distance.
    pub core_width: f64,
    /// Grow the basis on the validation data (`aceuq fit`; [`super::grow`]): `"auto"` (the
    /// default: grow the default basis only), `"on"` or `"off"`. The growth settings are
    /// never written to model files (a grown fit's record holds its targets), so that readers
    /// from before them, which refuse unknown settings, still read the files.
    #[serde(skip_serializing)]
    pub grow_basis: Growth,
    /// Growth target: validation force RMSE at most this fraction of the standard deviation of
    /// the validation force components.
    #[serde(skip_serializing)]
    pub target_force: f64,
    /// Growth target: validation energy RMSE at most this many meV/atom.
    #[serde(skip_serializing)]
    pub target_energy: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            energy_weight: 1.0,
            force_weight: 0.01,
            ridge: Ridge::Auto,
            core: true,
            core_width: 0.5,
            grow_basis: Growth::Auto,
            target_force: 0.1,
            target_energy: 3.0,
        }
    }
}

impl FitConfig {
    /// Refuse `grow_basis = "on"` where the basis is not grown (`what`: the command).
    pub fn refuse_growth(&self, what: &str) -> Result<(), String> {
        if self.grow_basis == Growth::On {
            return Err(format!(
                "[fit] grow_basis = \"on\": {what} fits the basis of its [basis] table and does \
                 not grow it (only aceuq fit does); remove the line or give the basis you want"
            ));
        }
        Ok(())
    }

    /// Check the settings.
    pub fn validate(&self) -> Result<(), ModelError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.energy_weight)
            || !ok(self.force_weight)
            || self.energy_weight + self.force_weight == 0.0
        {
            return Err(ModelError::Data(
                "fit: energy_weight and force_weight must be non-negative, finite and not both zero".into(),
            ));
        }
        if let Ridge::Value(r) = self.ridge
            && !ok(r)
        {
            return Err(ModelError::Data(format!(
                "fit: ridge must be \"auto\" or a non-negative finite number, got {r}"
            )));
        }
        if !(self.core_width.is_finite() && self.core_width > 0.0) {
            return Err(ModelError::Data(
                "fit: core_width must be a positive number of Å".into(),
            ));
        }
        if !(self.target_force.is_finite() && self.target_force > 0.0) {
            return Err(ModelError::Data(format!(
                "fit: target_force must be a positive fraction of the force spread (e.g. 0.1), got {}",
                self.target_force
            )));
        }
        if !(self.target_energy.is_finite() && self.target_energy > 0.0) {
            return Err(ModelError::Data(format!(
                "fit: target_energy must be a positive number of meV/atom, got {}",
                self.target_energy
            )));
        }
        Ok(())
    }
}

/// Whether `aceuq fit` grows the basis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Growth {
    /// Grow the default basis; a basis given by the user is used as it is.
    #[default]
    Auto,
    /// Grow whatever basis is given.
    On,
    /// Never grow.
    Off,
}

impl Growth {
    /// Parse `auto`, `on` or `off`.
    pub fn parse(text: &str) -> Result<Growth, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Growth::Auto),
            "on" => Ok(Growth::On),
            "off" => Ok(Growth::Off),
            t => Err(format!("must be auto, on or off, got {t}")),
        }
    }
}

impl std::fmt::Display for Growth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Growth::Auto => "auto",
            Growth::On => "on",
            Growth::Off => "off",
        })
    }
}

/// The ridge strength of a fit: a number (relative to each column's scale) or chosen on the
/// validation data. In a config file: `ridge = 1e-3` or `ridge = "auto"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ridge {
    /// Chosen on the validation data; without it, on every fifth training structure held out
    /// (then refitted on all); [`Ridge::FALLBACK`] for fewer than five training structures.
    Auto,
    /// This value.
    Value(f64),
}

impl Ridge {
    /// The ridge used by [`Ridge::Auto`] when a fit has neither validation data nor enough
    /// training structures to hold some out.
    pub const FALLBACK: f64 = 1e-3;
    /// The scanned values: decades from 1e-9 to 1, refined by half decades around the best.
    pub const SCAN: [f64; 10] = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];

    /// The number to solve with when no scan is made.
    pub fn value_or_fallback(self) -> f64 {
        match self {
            Ridge::Auto => Ridge::FALLBACK,
            Ridge::Value(v) => v,
        }
    }

    /// Parse `auto` or a number (command line and config files).
    pub fn parse(text: &str) -> Result<Ridge, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Ridge::Auto);
        }
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Ridge::Value(v)),
            _ => Err(format!("must be \"auto\" or a number ≥ 0, got {t}")),
        }
    }
}

impl std::fmt::Display for Ridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ridge::Auto => write!(f, "auto"),
            Ridge::Value(v) => write!(f, "{v:e}"),
        }
    }
}

impl Serialize for Ridge {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ridge::Auto => s.serialize_str("auto"),
            Ridge::Value(v) => s.serialize_f64(*v),
        }
    }
}

impl<'de> Deserialize<'de> for Ridge {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ridge, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(v) => Ok(Ridge::Value(v)),
            Raw::Int(v) => Ok(Ridge::Value(v as f64)),
            Raw::Text(t) => {
                Ridge::parse(&t).map_err(|e| serde::de::Error::custom(format!("ridge {e}")))
            }
        }
    }
}

/// How [`Ridge::Auto`] chose the ridge of a fit (stored in the model file).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RidgeChoice {
    /// The ridge used.
    pub chosen: f64,
    /// What the scan was evaluated on (`"the validation data"`, held-out training structures),
    /// or why no scan was made.
    pub how: String,
    /// The scan in increasing ridge: validation energy RMSE (meV/atom), force RMSE (meV/Å) and
    /// loss (the weighted sum of the squares, meV²); solves that failed are left out.
    pub scan: Vec<RidgeTrial>,
}

/// One solve of the ridge scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RidgeTrial {
    pub ridge: f64,
    pub energy_rmse: f64,
    pub force_rmse: f64,
    pub loss: f64,
}

/// Error statistics on one data set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Name of the set ("train", "valid", a file name).
    pub set: String,
    pub n_structures: usize,
    pub n_atoms: usize,
    /// Energy per atom, meV/atom.
    pub energy_rmse: f64,
    pub energy_mae: f64,
    /// Force components, meV/Å.
    pub force_rmse: f64,
    pub force_mae: f64,
    /// Number of structures that had reference energies / forces.
    pub n_energies: usize,
    pub n_forces: usize,
}

/// Per-thread accumulator of the normal equations.
#[derive(Clone)]
struct Normal {
    xtx: Mat<f64>,
    xty: Vec<f64>,
}

impl Normal {
    fn new(m: usize) -> Self {
        Normal {
            xtx: Mat::zeros(m, m),
            xty: vec![0.0; m],
        }
    }
    fn add(mut self, other: Normal) -> Normal {
        self.xtx += &other.xtx;
        for (a, b) in self.xty.iter_mut().zip(&other.xty) {
            *a += b;
        }
        self
    }
    /// Reset to zero (reused per structure by the weighted multi-member accumulation).
    fn clear(&mut self) {
        self.xtx.fill(0.0);
        self.xty.fill(0.0);
    }
    /// `self += w * other`.
    fn add_scaled(&mut self, other: &Normal, w: f64) {
        for j in 0..self.xtx.ncols() {
            for (a, b) in self
                .xtx
                .col_as_slice_mut(j)
                .iter_mut()
                .zip(other.xtx.col_as_slice(j))
            {
                *a += w * b;
            }
        }
        for (a, b) in self.xty.iter_mut().zip(&other.xty) {
            *a += w * b;
        }
    }
}

/// Shortest distance seen for each species pair (index `s * ns + z`), infinite if never seen.
pub fn min_pair_distances(
    structures: &[Structure],
    species_of: &[Vec<u16>],
    ns: usize,
    cutoff: f64,
) -> Result<Vec<f64>, ModelError> {
    structures
        .par_iter()
        .zip(species_of)
        .map(|(s, sp)| -> Result<Vec<f64>, ModelError> {
            let nl = neighbors::build(s, cutoff)?;
            let mut out = vec![f64::INFINITY; ns * ns];
            for i in 0..sp.len() {
                for k in nl.range(i) {
                    let r = neighbors::norm(nl.rij[k]);
                    let idx = sp[i] as usize * ns + sp[nl.j[k] as usize] as usize;
                    out[idx] = out[idx].min(r);
                }
            }
            Ok(out)
        })
        .try_reduce(
            || vec![f64::INFINITY; ns * ns],
            |a, b| Ok(a.iter().zip(&b).map(|(x, y)| x.min(*y)).collect()),
        )
}

/// Map the species of every structure, with a clear error for unknown ones.
fn map_all(structures: &[Structure], species: &[String]) -> Result<Vec<Vec<u16>>, ModelError> {
    structures
        .iter()
        .map(|s| {
            s.symbols
                .iter()
                .enumerate()
                .map(|(i, sym)| {
                    species
                        .iter()
                        .position(|x| x == sym)
                        .map(|x| x as u16)
                        .ok_or_else(|| ModelError::UnknownSpecies {
                            origin: s.origin.to_string(),
                            species: sym.clone(),
                            atom: i + 1,
                            known: species.join(", "),
                        })
                })
                .collect()
        })
        .collect()
}

/// Check that every structure is labelled well enough to fit on, and map its species.
fn prepare(
    structures: &[Structure],
    species: &[String],
    what: &str,
) -> Result<Vec<Vec<u16>>, ModelError> {
    for s in structures {
        {
            if s.energy.is_none() && s.forces.is_none() {
                return Err(ModelError::Data(format!(
                    "{}: {what} structure has neither an energy nor forces; label it, or check --energy-key/--forces-key",
                    s.origin
                )));
            }
            if let Some(e) = s.energy
                && !e.is_finite()
            {
                return Err(ModelError::Data(format!(
                    "{}: energy is not finite ({e})",
                    s.origin
                )));
            }
            if let Some(f) = &s.forces {
                if f.len() != s.len() {
                    return Err(ModelError::Data(format!(
                        "{}: {} force rows for {} atoms",
                        s.origin,
                        f.len(),
                        s.len()
                    )));
                }
                if let Some(i) = f.iter().position(|v| !v.iter().all(|x| x.is_finite())) {
                    return Err(ModelError::Data(format!(
                        "{}: force on atom {} is not finite",
                        s.origin,
                        i + 1
                    )));
                }
            }
            // Structures made in code bypass the reader's checks of the same bounds.
            if let Some(p) = s.limits_problem() {
                return Err(ModelError::Data(format!("{}: {}", s.origin, p.message)));
            }
        }
    }
    map_all(structures, species)
}

/// Build an unfitted model (zero coefficients) whose radial windows and core come from the data.
pub fn build_skeleton(
    species: &[String],
    basis: &BasisConfig,
    cfg: &FitConfig,
    train: &[Structure],
) -> Result<Model, ModelError> {
    basis.validate()?;
    cfg.validate()?;
    if species.is_empty() {
        return Err(ModelError::Data(
            "no species given (use --species Li or --species Al,Mg)".into(),
        ));
    }
    for (k, s) in species.iter().enumerate() {
        if species[..k].contains(s) {
            return Err(ModelError::Data(format!("species '{s}' is listed twice")));
        }
    }
    basis.check_pair_species(species)?;
    let ns = species.len();
    let species_of = map_all(train, species)?;
    let mut rc = vec![0.0; ns * ns];
    for s in 0..ns {
        for z in 0..ns {
            rc[s * ns + z] = basis.pair_cutoff(&species[s], &species[z]);
        }
    }
    let rc_max = rc.iter().cloned().fold(0.0, f64::max);
    let dmin = min_pair_distances(train, &species_of, ns, rc_max)?;
    let overall_min = dmin.iter().cloned().fold(f64::INFINITY, f64::min);
    let sb = SpeciesBasis::generate(basis, ns)?;
    let nmax = sb.layout.nmax();
    let mut radial = Vec::with_capacity(ns * ns);
    let mut core = Vec::with_capacity(ns * ns);
    for s in 0..ns {
        for z in 0..ns {
            let rcut = rc[s * ns + z];
            // A pair never seen in training gets the overall shortest distance.
            let d = if dmin[s * ns + z].is_finite() {
                dmin[s * ns + z]
            } else {
                overall_min
            };
            let d = if d.is_finite() {
                d.min(rcut)
            } else {
                0.5 * rcut
            };
            let r0 = basis.radial_inner.unwrap_or(0.75 * d).min(0.9 * rcut);
            radial.push(RadialBasis { rc: rcut, r0, nmax });
            let (z1, z2) = (atomic_number(&species[s]), atomic_number(&species[z]));
            let r_out = if cfg.core { d } else { 0.0 };
            core.push(CorePair {
                z1,
                z2,
                r_in: (r_out - cfg.core_width).max(0.0),
                r_out,
            });
        }
    }
    let bases = vec![sb; ns];
    let coefs = bases.iter().map(|b| vec![0.0; b.len()]).collect();
    // Trailing zeros of max_species (no limit) say nothing: stored without them.
    let mut basis = basis.clone();
    while basis.max_species.last() == Some(&0) {
        basis.max_species.pop();
    }
    Model::new(
        species.to_vec(),
        basis,
        radial,
        core,
        bases,
        coefs,
        vec![0.0; ns],
        FitInfo::default(),
    )
}

/// Fit a model. `progress` shows a progress bar on a terminal.
pub fn fit(
    species: &[String],
    basis: &BasisConfig,
    cfg: &FitConfig,
    train: &[Structure],
    valid: &[Structure],
    progress: bool,
) -> Result<Model, ModelError> {
    if train.is_empty() {
        return Err(ModelError::Data("no training structures".into()));
    }
    let mut model = build_skeleton(species, basis, cfg, train)?;
    let species_of = prepare(train, species, "training")?;
    let _ = prepare(valid, species, "validation")?;
    let ns = model.nspecies();
    let offsets: Vec<usize> = (0..=ns)
        .map(|s| (0..s).map(|k| model.nfuncs(k)).sum())
        .collect();
    let m = offsets[ns] + ns; // + one-body columns
    let n_e = train.iter().filter(|s| s.energy.is_some()).count().max(1) as f64;
    let n_f = train
        .iter()
        .filter_map(|s| s.forces.as_ref().map(|f| 3 * f.len()))
        .sum::<usize>()
        .max(1) as f64;
    let we2 = cfg.energy_weight / n_e;
    let wf2 = cfg.force_weight / n_f;
    let bar = crate::progress::Bar::structures(train.len() as u64, "fitting", progress);
    let rc = model.max_cutoff();
    // Ridge::Auto without validation data holds every HOLD_OUT-th training structure out of the
    // scan, then refits on all of them with the chosen ridge.
    let hold_out = cfg.ridge == Ridge::Auto && valid.is_empty() && train.len() >= HOLD_OUT;
    let is_held = |t: usize| hold_out && t % HOLD_OUT == HOLD_OUT - 1;
    let normal_of = |held: bool| -> Result<Normal, ModelError> {
        let idx: Vec<usize> = (0..train.len()).filter(|&t| is_held(t) == held).collect();
        idx.par_iter()
            .try_fold(
                || (Normal::new(m), Workspace::new(&model)),
                |(mut acc, mut ws), &t| -> Result<(Normal, Workspace), ModelError> {
                    let (s, sp) = (&train[t], &species_of[t]);
                    accumulate(&model, s, sp, rc, &offsets, we2, wf2, &mut acc, &mut ws)?;
                    bar.inc(1);
                    Ok((acc, ws))
                },
            )
            .map(|r| r.map(|(n, _)| n))
            .try_reduce(|| Normal::new(m), |a, b| Ok(a.add(b)))
    };
    let normal = normal_of(false)?;
    let held_normal = if hold_out {
        Some(normal_of(true)?)
    } else {
        None
    };
    bar.finish_and_clear();
    let (ridge, ridge_choice) = match cfg.ridge {
        Ridge::Value(r) => {
            let c = solve(normal, m, offsets[ns], r)?;
            set_coefficients(&mut model, &c, &offsets);
            (r, None)
        }
        Ridge::Auto if hold_out => {
            let held: Vec<Structure> = (0..train.len())
                .filter(|&t| is_held(t))
                .map(|t| train[t].clone())
                .collect();
            let (mut choice, normal) =
                scan_ridge(&mut model, normal, &offsets, cfg, &held, progress)?;
            let full = normal.add(held_normal.expect("accumulated above"));
            let c = solve(full, m, offsets[ns], choice.chosen)?;
            set_coefficients(&mut model, &c, &offsets);
            choice.how = format!(
                "{} of the {} training structures held out (every {HOLD_OUT}th; no \
                 validation data), then refitted on all",
                held.len(),
                train.len()
            );
            (choice.chosen, Some(choice))
        }
        Ridge::Auto if valid.is_empty() => {
            let c = solve(normal, m, offsets[ns], Ridge::FALLBACK)?;
            set_coefficients(&mut model, &c, &offsets);
            let how = format!(
                "no validation data and fewer than {HOLD_OUT} training structures: the default"
            );
            (
                Ridge::FALLBACK,
                Some(RidgeChoice {
                    chosen: Ridge::FALLBACK,
                    how,
                    scan: vec![],
                }),
            )
        }
        Ridge::Auto => {
            let (choice, _) = scan_ridge(&mut model, normal, &offsets, cfg, valid, progress)?;
            (choice.chosen, Some(choice))
        }
    };
    let mut settings = cfg.clone();
    settings.ridge = Ridge::Value(ridge);
    let mut metrics = vec![evaluate(&model, train, "train")?];
    if !valid.is_empty() {
        metrics.push(evaluate(&model, valid, "valid")?);
    }
    model.fit_info = FitInfo {
        aceuq_version: env!("CARGO_PKG_VERSION").to_string(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        train_files: files_of(train),
        valid_files: files_of(valid),
        n_train_structures: train.len(),
        n_train_atoms: train.iter().map(|s| s.len()).sum(),
        settings,
        metrics,
        ridge_choice,
        basis_choice: None,
    };
    Ok(model)
}

/// [`Ridge::Auto`] without validation data holds out every `HOLD_OUT`-th training structure.
const HOLD_OUT: usize = 5;

fn set_coefficients(model: &mut Model, c: &[f64], offsets: &[usize]) {
    let ns = model.nspecies();
    for s in 0..ns {
        model.coefs[s] = c[offsets[s]..offsets[s + 1]].to_vec();
        model.e0[s] = c[offsets[ns] + s];
    }
    model.rebuild_derived();
}

/// [`Ridge::Auto`] with validation data: solve the training normal equations for each ridge of
/// [`Ridge::SCAN`] (then half decades either side of the best), evaluate each solution on `valid`
/// and leave `model` with the solution of the lowest validation loss. Gives the normal equations
/// back (unscaled again) so that a caller can add more rows without holding a second copy.
fn scan_ridge(
    model: &mut Model,
    normal: Normal,
    offsets: &[usize],
    cfg: &FitConfig,
    valid: &[Structure],
    progress: bool,
) -> Result<(RidgeChoice, Normal), ModelError> {
    let ns = model.nspecies();
    let m = offsets[ns] + ns;
    let scaled = Scaled::new(normal, m, offsets[ns])?;
    let bar = crate::progress::Bar::steps(
        Ridge::SCAN.len() as u64 + 2,
        "solves",
        "choosing the ridge on validation data",
        progress,
    );
    type Trials = Vec<(RidgeTrial, Vec<f64>)>;
    let mut trials: Trials = vec![];
    let try_one = |model: &mut Model, trials: &mut Trials, lambda: f64| -> Result<(), ModelError> {
        if let Some(c) = scaled.solve(lambda) {
            set_coefficients(model, &c, offsets);
            let mt = evaluate(model, valid, "valid")?;
            let loss = validation_loss(cfg, &mt);
            if loss.is_finite() {
                trials.push((
                    RidgeTrial {
                        ridge: lambda,
                        energy_rmse: mt.energy_rmse,
                        force_rmse: mt.force_rmse,
                        loss,
                    },
                    c,
                ));
            }
        }
        bar.inc(1);
        Ok(())
    };
    for lambda in Ridge::SCAN {
        try_one(model, &mut trials, lambda)?;
    }
    let best = |t: &[(RidgeTrial, Vec<f64>)]| {
        t.iter()
            .enumerate()
            .min_by(|a, b| a.1.0.loss.total_cmp(&b.1.0.loss))
            .map(|(k, _)| k)
    };
    let Some(k) = best(&trials) else {
        bar.finish_and_clear();
        return Err(ModelError::Numerical(
            "no ridge from 1e-9 to 1 gave a finite validation error; check the data for duplicates or NaN".into(),
        ));
    };
    let centre = trials[k].0.ridge;
    for f in [10f64.powf(-0.5), 10f64.powf(0.5)] {
        try_one(model, &mut trials, centre * f)?;
    }
    bar.finish_and_clear();
    let k = best(&trials).expect("at least one trial");
    let (chosen, c) = (trials[k].0.ridge, trials[k].1.clone());
    set_coefficients(model, &c, offsets);
    let mut scan: Vec<RidgeTrial> = trials.into_iter().map(|(t, _)| t).collect();
    scan.sort_by(|a, b| a.ridge.total_cmp(&b.ridge));
    Ok((
        RidgeChoice {
            chosen,
            how: "the validation data".into(),
            scan,
        },
        scaled.into_normal(),
    ))
}

/// The training loss's own energy and force terms on held-out errors (meV²): what the ridge
/// scan and basis growth minimize.
pub fn validation_loss(cfg: &FitConfig, v: &Metrics) -> f64 {
    cfg.energy_weight * v.energy_rmse.powi(2) * (v.n_energies > 0) as u8 as f64
        + cfg.force_weight * v.force_rmse.powi(2) * (v.n_forces > 0) as u8 as f64
}

/// The normal equations scaled to unit diagonal once, solved for any ridge.
struct Scaled {
    xtx: Mat<f64>,
    rhs: Mat<f64>,
    scale: Vec<f64>,
    nreg: usize,
}

impl Scaled {
    fn new(normal: Normal, m: usize, nreg: usize) -> Result<Scaled, ModelError> {
        let Normal { mut xtx, xty } = normal;
        let scale = column_scale(&xtx, m)?;
        for j in 0..m {
            for k in 0..m {
                xtx[(j, k)] *= scale[j] * scale[k];
            }
        }
        let rhs = Mat::from_fn(m, 1, |j, _| xty[j] * scale[j]);
        Ok(Scaled {
            xtx,
            rhs,
            scale,
            nreg,
        })
    }

    /// The normal equations before scaling (up to rounding).
    fn into_normal(self) -> Normal {
        let Scaled {
            mut xtx,
            rhs,
            scale,
            ..
        } = self;
        let m = scale.len();
        for j in 0..m {
            for k in 0..m {
                xtx[(j, k)] /= scale[j] * scale[k];
            }
        }
        let xty = (0..m).map(|j| rhs[(j, 0)] / scale[j]).collect();
        Normal { xtx, xty }
    }

    /// Coefficients for ridge `lambda`, `None` if the system cannot be factored or the solution
    /// is not finite.
    fn solve(&self, lambda: f64) -> Option<Vec<f64>> {
        let m = self.scale.len();
        let mut a = self.xtx.clone();
        for j in 0..self.nreg {
            a[(j, j)] += lambda;
        }
        for j in self.nreg..m {
            a[(j, j)] += 1e-12;
        }
        let llt = a.llt(Side::Lower).ok()?;
        let x = llt.solve(&self.rhs);
        let c: Vec<f64> = (0..m).map(|j| x[(j, 0)] * self.scale[j]).collect();
        c.iter().all(|v| v.is_finite()).then_some(c)
    }
}

/// Column scaling to unit diagonal (guarding near-empty columns).
fn column_scale(xtx: &Mat<f64>, m: usize) -> Result<Vec<f64>, ModelError> {
    let dmax = (0..m).map(|j| xtx[(j, j)]).fold(0.0, f64::max);
    if dmax.is_nan() || dmax <= 0.0 || !dmax.is_finite() {
        return Err(ModelError::Numerical(
            "the design matrix is zero or not finite: no usable data".into(),
        ));
    }
    Ok((0..m)
        .map(|j| 1.0 / xtx[(j, j)].max(1e-14 * dmax).sqrt())
        .collect())
}

fn files_of(s: &[Structure]) -> Vec<String> {
    let mut v: Vec<String> = s.iter().filter_map(|x| x.origin.file.clone()).collect();
    v.dedup();
    v.sort();
    v.dedup();
    v
}

/// Add one structure's rows to the normal equations.
#[allow(clippy::too_many_arguments)]
fn accumulate(
    model: &Model,
    s: &Structure,
    sp: &[u16],
    rc: f64,
    offsets: &[usize],
    we2: f64,
    wf2: f64,
    acc: &mut Normal,
    ws: &mut Workspace,
) -> Result<(), ModelError> {
    let ns = model.nspecies();
    let m = acc.xty.len();
    let n = s.len();
    let envs = Environments::from_parts(sp.to_vec(), neighbors::build(s, rc)?);
    let mut xe = vec![0.0; m];
    let want_f = s.forces.is_some() && wf2 > 0.0;
    let mut xf = if want_f {
        Mat::<f64>::zeros(3 * n, m)
    } else {
        Mat::<f64>::zeros(0, 0)
    };
    let mut core_e = 0.0;
    let mut core_f = vec![[0.0; 3]; n];
    let mut b = vec![0.0; model.bases.iter().map(|b| b.len()).max().unwrap_or(0)];
    let mut db = Vec::new();
    let mut grad = Vec::new();
    for i in 0..n {
        let env = envs.get(i);
        let (si, rij, js, sj) = (env.si, env.rij, env.j, env.sj);
        let nf = model.nfuncs(si);
        let off = offsets[si];
        xe[offsets[ns] + si] += 1.0;
        // Core contribution, subtracted from the targets.
        grad.clear();
        grad.resize(rij.len(), [0.0; 3]);
        core_e += model.atom_core(si, rij, sj, &mut grad);
        for (k, &j) in js.iter().enumerate() {
            for d in 0..3 {
                core_f[i][d] += grad[k][d];
                core_f[j as usize][d] -= grad[k][d];
            }
        }
        if want_f {
            model.atom_descriptor_grad(ws, si, rij, sj, &mut b[..nf], &mut db);
            let nn3 = rij.len() * 3;
            for f in 0..nf {
                xe[off + f] += b[f];
                let col = xf
                    .col_mut(off + f)
                    .try_as_col_major_mut()
                    .expect("owned matrix columns are contiguous");
                let col = col.as_slice_mut();
                let dbf = &db[f * nn3..(f + 1) * nn3];
                // Force on atom a is -dE/dr_a; dr_ij/dr_j = +1, dr_ij/dr_i = -1.
                for (k, &j) in js.iter().enumerate() {
                    for d in 0..3 {
                        let v = dbf[k * 3 + d];
                        col[3 * j as usize + d] -= v;
                        col[3 * i + d] += v;
                    }
                }
            }
        } else {
            model.atom_descriptor(ws, si, rij, sj, &mut b[..nf]);
            for f in 0..nf {
                xe[off + f] += b[f];
            }
        }
    }
    if let Some(e) = s.energy {
        let w = we2 / (n.max(1) as f64 * n.max(1) as f64);
        let ye = e - core_e;
        for (j, xj) in xe.iter().enumerate() {
            if *xj == 0.0 {
                continue;
            }
            acc.xty[j] += w * xj * ye;
            for (k, xk) in xe.iter().enumerate() {
                acc.xtx[(j, k)] += w * xj * xk;
            }
        }
    }
    if want_f {
        let f = s.forces.as_ref().expect("checked above");
        let yf: Vec<f64> = (0..3 * n)
            .map(|r| f[r / 3][r % 3] - core_f[r / 3][r % 3])
            .collect();
        matmul(
            acc.xtx.as_mut(),
            Accum::Add,
            xf.transpose(),
            xf.as_ref(),
            wf2,
            Par::Seq,
        );
        for j in 0..m {
            let col = xf.col(j);
            let mut dotv = 0.0;
            for (r, y) in yf.iter().enumerate() {
                dotv += col[r] * y;
            }
            acc.xty[j] += wf2 * dotv;
        }
    }
    Ok(())
}

/// Solve the ridge-regularized normal equations; the last `m - nreg` columns (one-body energies)
/// are not regularized.
fn solve(normal: Normal, m: usize, nreg: usize, ridge: f64) -> Result<Vec<f64>, ModelError> {
    solve_factored(normal, m, nreg, ridge).map(|s| s.c)
}

/// A solved ridge system with what the posterior needs: in column-scaled variables
/// `c = scale ∘ x`, `H x = scale ∘ X^T W y` with `H = L L^T` (ridge included).
struct Solved {
    c: Vec<f64>,
    x: Vec<f64>,
    scale: Vec<f64>,
    llt: faer::linalg::solvers::Llt<f64>,
}

/// [`solve`], keeping the Cholesky factor and the column scaling.
fn solve_factored(normal: Normal, m: usize, nreg: usize, ridge: f64) -> Result<Solved, ModelError> {
    let Normal { mut xtx, xty } = normal;
    let scale = column_scale(&xtx, m)?;
    for j in 0..m {
        for k in 0..m {
            xtx[(j, k)] *= scale[j] * scale[k];
        }
    }
    let mut lambda = ridge;
    for attempt in 0..8 {
        let mut a = xtx.clone();
        for j in 0..nreg {
            a[(j, j)] += lambda;
        }
        // The one-body columns get a tiny jitter so a species with constant count stays solvable.
        for j in nreg..m {
            a[(j, j)] += 1e-12;
        }
        if let Ok(llt) = a.llt(Side::Lower) {
            let rhs = Mat::from_fn(m, 1, |j, _| xty[j] * scale[j]);
            let x = llt.solve(&rhs);
            let c: Vec<f64> = (0..m).map(|j| x[(j, 0)] * scale[j]).collect();
            if c.iter().all(|v| v.is_finite()) {
                if attempt > 0 {
                    crate::progress::warn(&format!(
                        "normal equations were ill-conditioned; used ridge {lambda:.1e}"
                    ));
                }
                let x = (0..m).map(|j| x[(j, 0)]).collect();
                return Ok(Solved { c, x, scale, llt });
            }
        }
        lambda = if lambda == 0.0 { 1e-10 } else { lambda * 100.0 };
    }
    Err(ModelError::Numerical(
        "could not solve the normal equations even with a strong ridge; check the data for duplicates or NaN".into(),
    ))
}

/// Coefficients of one member of a family of fits sharing a model's basis (an ensemble member).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberFit {
    /// Linear coefficients per species (same lengths as `Model::coefs`).
    pub coefs: Vec<Vec<f64>>,
    /// One-body reference energy per species (eV).
    pub e0: Vec<f64>,
}

impl MemberFit {
    fn from_solution(c: &[f64], offsets: &[usize]) -> MemberFit {
        let ns = offsets.len() - 1;
        MemberFit {
            coefs: (0..ns)
                .map(|s| c[offsets[s]..offsets[s + 1]].to_vec())
                .collect(),
            e0: (0..ns).map(|s| c[offsets[ns] + s]).collect(),
        }
    }
}

/// Column layout and row weights of the normal equations, exactly as [`fit`] sets them up.
struct Design {
    species_of: Vec<Vec<u16>>,
    offsets: Vec<usize>,
    m: usize,
    we2: f64,
    wf2: f64,
}

fn design(model: &Model, cfg: &FitConfig, train: &[Structure]) -> Result<Design, ModelError> {
    cfg.validate()?;
    if train.is_empty() {
        return Err(ModelError::Data("no training structures".into()));
    }
    let species_of = prepare(train, &model.species, "training")?;
    let ns = model.nspecies();
    let offsets: Vec<usize> = (0..=ns)
        .map(|s| (0..s).map(|k| model.nfuncs(k)).sum())
        .collect();
    let m = offsets[ns] + ns;
    let n_e = train.iter().filter(|s| s.energy.is_some()).count().max(1) as f64;
    let n_f = train
        .iter()
        .filter_map(|s| s.forces.as_ref().map(|f| 3 * f.len()))
        .sum::<usize>()
        .max(1) as f64;
    Ok(Design {
        species_of,
        offsets,
        m,
        we2: cfg.energy_weight / n_e,
        wf2: cfg.force_weight / n_f,
    })
}

/// Normal equations of several weightings of the same rows, in one pass: each structure's block
/// is built once and added to member `k` with weight `weights[k][t]`.
fn accumulate_weighted(
    model: &Model,
    d: &Design,
    train: &[Structure],
    weights: &[Vec<f64>],
    progress: bool,
) -> Result<Vec<Normal>, ModelError> {
    let nm = weights.len();
    let m = d.m;
    let rc = model.max_cutoff();
    let bar = crate::progress::Bar::structures(train.len() as u64, "members", progress);
    let zeros = || (0..nm).map(|_| Normal::new(m)).collect::<Vec<_>>();
    // Every fold holds `nm + 1` dense m × m matrices: keep the number of folds near the thread
    // count so memory stays at about (nm + 1) m² doubles per thread.
    let min_len = train
        .len()
        .div_ceil(2 * rayon::current_num_threads())
        .max(1);
    let normals = train
        .par_iter()
        .enumerate()
        .zip(&d.species_of)
        .with_min_len(min_len)
        .try_fold(
            || (zeros(), Normal::new(m), Workspace::new(model)),
            |(mut accs, mut block, mut ws), ((t, s), sp)| -> Result<_, ModelError> {
                if weights.iter().any(|w| w[t] != 0.0) {
                    block.clear();
                    accumulate(
                        model, s, sp, rc, &d.offsets, d.we2, d.wf2, &mut block, &mut ws,
                    )?;
                    for (acc, w) in accs.iter_mut().zip(weights) {
                        if w[t] != 0.0 {
                            acc.add_scaled(&block, w[t]);
                        }
                    }
                }
                bar.inc(1);
                Ok((accs, block, ws))
            },
        )
        .map(|r| r.map(|(a, _, _)| a))
        .try_reduce(zeros, |a, b| {
            Ok(a.into_iter().zip(b).map(|(x, y)| x.add(y)).collect())
        })?;
    bar.finish_and_clear();
    Ok(normals)
}

/// Fit `weights.len()` models in ONE streaming pass over `train`: member `k` weights structure `t`
/// by `weights[k][t]` (e.g. bootstrap counts). Each structure's design block (the expensive part)
/// is computed once and added to every member's normal equations with that member's weight.
/// `model` supplies the basis, radial windows and core (the fitted model itself, or a skeleton);
/// the row weights and ridge are those of [`fit`] with `cfg`. All weights `1` reproduce [`fit`].
pub fn fit_weighted_members(
    model: &Model,
    cfg: &FitConfig,
    train: &[Structure],
    weights: &[Vec<f64>],
    progress: bool,
) -> Result<Vec<MemberFit>, ModelError> {
    let d = design(model, cfg, train)?;
    for (k, w) in weights.iter().enumerate() {
        if w.len() != train.len() {
            return Err(ModelError::Data(format!(
                "member {k}: {} weights for {} training structures",
                w.len(),
                train.len()
            )));
        }
        if w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || w.iter().sum::<f64>() <= 0.0 {
            return Err(ModelError::Data(format!(
                "member {k}: weights must be finite, non-negative and not all zero"
            )));
        }
    }
    let normals = accumulate_weighted(model, &d, train, weights, progress)?;
    let ns = model.nspecies();
    normals
        .into_par_iter()
        .map(|n| {
            solve(n, d.m, d.offsets[ns], cfg.ridge.value_or_fallback())
                .map(|c| MemberFit::from_solution(&c, &d.offsets))
        })
        .collect()
}

/// The Gaussian posterior of the ridge fit and draws from it.
#[derive(Clone, Debug, PartialEq)]
pub struct PosteriorDraws {
    /// The posterior mean (the ridge solution; equals [`fit`]'s coefficients for the same data).
    pub mean: MemberFit,
    /// Independent draws.
    pub draws: Vec<MemberFit>,
    /// Noise scale `σ²` of the weighted likelihood, `sum_o w_o r_o² / (N_obs - m)`.
    pub sigma2: f64,
    /// Number of observations (energies + force components) and of unknowns.
    pub n_obs: usize,
    pub n_params: usize,
}

/// Draws from the Bayesian posterior of the ridge fit (one pass over `train` for the normal
/// equations, one for the residuals). Model: observation `o` (a per-atom energy or a force
/// component) has Gaussian noise of variance `σ²/w_o` with the row weights of [`fit`]; the ridge
/// is a Gaussian prior. In [`fit`]'s column-scaled variables the posterior is
/// `N(x̂, σ² H⁻¹)`, `H = L Lᵀ` the regularized normal matrix, so a draw is `x̂ + σ L⁻ᵀ z`,
/// `z ~ N(0, I)`. `σ²` is estimated from the weighted residuals of the posterior mean.
pub fn fit_posterior_draws(
    model: &Model,
    cfg: &FitConfig,
    train: &[Structure],
    n_draws: usize,
    seed: u64,
    progress: bool,
) -> Result<PosteriorDraws, ModelError> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let d = design(model, cfg, train)?;
    let ns = model.nspecies();
    let ones = vec![vec![1.0; train.len()]];
    let normal = accumulate_weighted(model, &d, train, &ones, progress)?
        .pop()
        .expect("one member");
    let sol = solve_factored(normal, d.m, d.offsets[ns], cfg.ridge.value_or_fallback())?;
    let mean = MemberFit::from_solution(&sol.c, &d.offsets);
    // Weighted residuals of the posterior mean.
    let mut fitted = model.clone();
    fitted.coefs = mean.coefs.clone();
    fitted.e0 = mean.e0.clone();
    fitted.rebuild_derived();
    let (rss, n_obs) = train
        .par_iter()
        .map_init(
            || Workspace::new(&fitted),
            |ws, s| -> Result<(f64, usize), ModelError> {
                let p = fitted.predict(s, ws)?;
                let n = s.len().max(1) as f64;
                let mut rss = 0.0;
                let mut n_obs = 0;
                if let Some(e) = s.energy {
                    rss += d.we2 * ((e - p.energy) / n).powi(2);
                    n_obs += 1;
                }
                if let Some(f) = &s.forces
                    && d.wf2 > 0.0
                {
                    for (a, b) in f.iter().zip(&p.forces) {
                        for k in 0..3 {
                            rss += d.wf2 * (a[k] - b[k]).powi(2);
                        }
                    }
                    n_obs += 3 * f.len();
                }
                Ok((rss, n_obs))
            },
        )
        .try_reduce(|| (0.0, 0), |a, b| Ok((a.0 + b.0, a.1 + b.1)))?;
    let dof = n_obs.saturating_sub(d.m).max(1);
    let sigma2 = rss / dof as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal01 = rand_distr::StandardNormal;
    let lt = sol.llt.L();
    let draws = (0..n_draws)
        .map(|_| {
            let mut z = Mat::from_fn(d.m, 1, |_, _| {
                let v: f64 = normal01.sample(&mut rng);
                v
            });
            // L^T v = z  =>  v ~ N(0, H^-1).
            faer::linalg::triangular_solve::solve_upper_triangular_in_place(
                lt.transpose(),
                z.as_mut(),
                Par::Seq,
            );
            let c: Vec<f64> = (0..d.m)
                .map(|j| (sol.x[j] + sigma2.sqrt() * z[(j, 0)]) * sol.scale[j])
                .collect();
            MemberFit::from_solution(&c, &d.offsets)
        })
        .collect();
    Ok(PosteriorDraws {
        mean,
        draws,
        sigma2,
        n_obs,
        n_params: d.m,
    })
}

/// Evaluate a model on a set of structures and summarize its errors.
pub fn evaluate(model: &Model, data: &[Structure], name: &str) -> Result<Metrics, ModelError> {
    let preds: Vec<Prediction> = data
        .par_iter()
        .map_init(|| Workspace::new(model), |ws, s| model.predict(s, ws))
        .collect::<Result<_, _>>()?;
    Ok(metrics_of(data, &preds, name))
}

/// Error metrics of predictions `preds` (one per structure of `data`, any potential) against
/// the labels of `data`.
pub fn metrics_of(data: &[Structure], preds: &[Prediction], name: &str) -> Metrics {
    let per: Vec<(f64, usize, Vec<f64>)> = data
        .iter()
        .zip(preds)
        .map(|(s, p)| {
            let de = s
                .energy
                .map(|e| (p.energy - e) / s.len().max(1) as f64)
                .unwrap_or(f64::NAN);
            let df = match &s.forces {
                Some(f) => f
                    .iter()
                    .zip(&p.forces)
                    .flat_map(|(a, b)| (0..3).map(move |d| b[d] - a[d]))
                    .collect(),
                None => vec![],
            };
            (de, s.len(), df)
        })
        .collect();
    let mut mt = Metrics {
        set: name.to_string(),
        n_structures: data.len(),
        ..Default::default()
    };
    let (mut se, mut ae, mut sf, mut af, mut nfc) = (0.0, 0.0, 0.0, 0.0, 0usize);
    for (de, n, df) in &per {
        mt.n_atoms += n;
        if de.is_finite() {
            mt.n_energies += 1;
            se += de * de;
            ae += de.abs();
        }
        if !df.is_empty() {
            mt.n_forces += 1;
        }
        for v in df {
            sf += v * v;
            af += v.abs();
            nfc += 1;
        }
    }
    let ne = mt.n_energies.max(1) as f64;
    let nf = nfc.max(1) as f64;
    mt.energy_rmse = 1e3 * (se / ne).sqrt();
    mt.energy_mae = 1e3 * ae / ne;
    mt.force_rmse = 1e3 * (sf / nf).sqrt();
    mt.force_mae = 1e3 * af / nf;
    mt
}

/// What [`Ridge::Auto`] did, for the terminal: the chosen value and the scan around it.
pub fn ridge_choice_text(c: &RidgeChoice) -> String {
    if c.scan.is_empty() {
        return format!("ridge {:.1e} ({})\n", c.chosen, c.how);
    }
    let mut out = format!(
        "ridge {:.1e}, chosen on {} (lowest loss of {} solves):\n",
        c.chosen,
        c.how,
        c.scan.len()
    );
    out.push_str("     ridge  held-out E RMSE  held-out F RMSE\n");
    out.push_str("                  (meV/atom)          (meV/Å)\n");
    for t in &c.scan {
        let mark = if t.ridge == c.chosen { " <" } else { "" };
        out.push_str(&format!(
            "{:>10.1e} {:>16.3} {:>16.3}{mark}\n",
            t.ridge, t.energy_rmse, t.force_rmse
        ));
    }
    out
}

/// Format a table of metrics for the terminal.
pub fn metrics_table(rows: &[Metrics]) -> String {
    // The first column is as wide as the longest set name, so the columns stay aligned.
    let w = rows
        .iter()
        .map(|r| r.set.chars().count())
        .chain([10])
        .max()
        .unwrap_or(10);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<w$} {:>10} {:>8} {:>14} {:>12} {:>13} {:>11}\n",
        "set", "structures", "atoms", "E RMSE", "E MAE", "F RMSE", "F MAE"
    ));
    out.push_str(&format!(
        "{:<w$} {:>10} {:>8} {:>14} {:>12} {:>13} {:>11}\n",
        "", "", "", "(meV/atom)", "(meV/atom)", "(meV/Å)", "(meV/Å)"
    ));
    for r in rows {
        let e = |v: f64, n: usize| if n > 0 { format!("{v:.3}") } else { "-".into() };
        out.push_str(&format!(
            "{:<w$} {:>10} {:>8} {:>14} {:>12} {:>13} {:>11}\n",
            r.set,
            r.n_structures,
            r.n_atoms,
            e(r.energy_rmse, r.n_energies),
            e(r.energy_mae, r.n_energies),
            e(r.force_rmse, r.n_forces),
            e(r.force_mae, r.n_forces)
        ));
    }
    out
}
