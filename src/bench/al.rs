//! The active-learning benchmark of Annevelink & Viswanathan.
//!
//! A fully labelled pool of frames in time order stands in for an MD run. Starting from 5 random
//! frames, each iteration
//! 1. fits the potential (and the method's uncertainty estimator) on the current data set,
//! 2. fits the error and uncertainty distributions on the validation atoms and computes the
//!    cutoffs of docs/methods.md §3–4 (`stats::calibrate`, N = atoms of that species in the pool),
//! 3. scans the pool in time order and stops at the first frame whose max-atom uncertainty
//!    exceeds u_max (the MD would have gone unstable there),
//! 4. adds the frames before it with u_c < u <= u_max, most uncertain first, at most as many as
//!    the data set holds (at most doubling), split ~90/10 into training and validation,
//!
//! and the run stops when no uncertain frame remains. Baselines: `oracle` (u = the true force
//! error, so its cutoffs are the error cutoffs) and `random` (the oracle's stop rule and count,
//! but the frames drawn uniformly from the unlabelled frames before the stop).
//!
//! Design choices the paper leaves open, stated here:
//! - The first validation set is one of the 5 start frames (the cutoffs need validation
//!   errors); later batches put round(10 %) of their frames into validation.
//! - With several species a frame's score is the max over its atoms of u / u_c(species), so
//!   frames rank on a common scale; a frame's zone is the worst zone of its atoms.
//! - "Tracking the oracle" is measured per frame: a frame is high-error if any atom has
//!   e > e_c, flagged if any atom has u > u_c; frame precision/recall/F1 compare the two.

use super::{BenchError, mean, shuffle};
use crate::basis::BasisConfig;
use crate::model::fit::{self, FitConfig};
use crate::stats::cutoff::{Calibration, CalibrationOptions, Zone, calibrate};
use crate::stats::dist::Family;
use crate::stats::metrics::Confusion;
use crate::structure::{InfoValue, Structure};
use crate::uq::{self, Method, Partition, UqConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What chooses the frames to label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Selector {
    /// u = the true per-atom force error (the best any estimator could do).
    Oracle,
    /// Frames drawn at random (the oracle's stop rule and batch size).
    Random,
    /// An uncertainty estimator.
    Uq(Method),
}

impl Selector {
    /// Name used in files, columns and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Selector::Oracle => "oracle",
            Selector::Random => "random",
            Selector::Uq(m) => m.name(),
        }
    }

    /// Parse a name (`oracle`, `random`, or a [`Method`] name).
    pub fn from_name(s: &str) -> Option<Selector> {
        match s {
            "oracle" => Some(Selector::Oracle),
            "random" => Some(Selector::Random),
            _ => Method::from_name(s).map(Selector::Uq),
        }
    }
}

/// Settings of one benchmark run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlSettings {
    /// Species of the model (e.g. `["Li"]`).
    pub species: Vec<String>,
    /// Basis of every fit.
    pub basis: BasisConfig,
    /// Fit weights.
    pub fit: FitConfig,
    /// Estimator settings; only the one being benchmarked is built.
    pub uq: UqConfig,
    /// Number of random start frames (Annevelink & Viswanathan: 5).
    pub n_start: usize,
    /// Fraction of each new batch put into validation (Annevelink & Viswanathan: ~0.1).
    pub valid_fraction: f64,
    /// Force error (eV/Å) at which the MD counts as unstable; sets u_max (docs/methods.md §4).
    pub e_max: f64,
    /// Safety limit on iterations (a run that reaches it is reported as not converged).
    pub max_iterations: usize,
    /// Model of the 1 - 1/N quantiles (default: the body family if it passes KS and AD and no
    /// more validation values lie above its cutoff than N allows, else a generalized Pareto
    /// tail; `body` is the seeds' rule).
    pub tail: crate::stats::tail::TailPolicy,
    /// Upper cutoff rule for the uncertainty methods (oracle and random always use the ratio
    /// rule, which puts their u_max at e_max exactly).
    pub upper_rule: crate::stats::cutoff::UpperRule,
}

impl AlSettings {
    /// The protocol's defaults for one species with the default basis.
    pub fn new(species: Vec<String>) -> Self {
        AlSettings {
            species,
            basis: BasisConfig::default(),
            fit: FitConfig::default(),
            uq: UqConfig {
                clusters: Some(Partition::KMeans(4)),
                ensemble: 5,
                ..Default::default()
            },
            n_start: 5,
            valid_fraction: 0.1,
            e_max: crate::stats::cutoff::DEFAULT_E_MAX,
            max_iterations: 30,
            tail: Default::default(),
            upper_rule: crate::stats::cutoff::UpperRule::Conditional,
        }
    }

    /// A small basis (~1 s per fit) for CI-sized runs.
    pub fn quick(species: Vec<String>) -> Self {
        let mut s = Self::new(species);
        s.basis.nmax = vec![6, 3, 2];
        s.basis.lmax = vec![0, 2, 1];
        s.uq.clusters = Some(Partition::KMeans(2));
        s.uq.ensemble = 4;
        s.max_iterations = 12;
        s
    }

    /// The `[uq]` table that builds only `method`.
    fn uq_for(&self, method: Method, seed: u64) -> UqConfig {
        let mut c = self.uq.clone();
        c.active_set = method == Method::Gamma;
        c.clusters = if method == Method::GammaLocal {
            Some(self.uq.clusters.clone().unwrap_or(Partition::KMeans(4)))
        } else {
            None
        };
        c.ensemble = if method == Method::Ensemble {
            self.uq.ensemble.max(2)
        } else {
            0
        };
        c.distance = method == Method::Distance;
        c.gp = method == Method::Gp;
        c.contact = method == Method::Contact;
        c.seed = seed;
        c
    }
}

/// Metrics of one iteration (one fit). Errors are force-error magnitudes |ΔF| in eV/Å;
/// uncertainties in the method's units. Pool metrics are over every atom of the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Iteration {
    /// 0-based iteration.
    pub iteration: usize,
    /// Training frames of this fit.
    pub n_train: usize,
    /// Validation frames of this fit.
    pub n_valid: usize,
    /// Mean |ΔF| on the training atoms.
    pub mae_train: f64,
    /// Mean |ΔF| on the validation atoms.
    pub mae_valid: f64,
    /// Mean |ΔF| on every pool atom.
    pub mae_pool: f64,
    /// Error cutoff e_c (first species).
    pub e_c: f64,
    /// Lower uncertainty cutoff u_c (first species).
    pub u_c: f64,
    /// Upper uncertainty cutoff u_max (first species).
    pub u_max: f64,
    /// Distribution family chosen for the uncertainties (first species).
    pub u_family: String,
    /// Pool frames with max-atom u in (u_c, u_max].
    pub frames_between: usize,
    /// Pool frames with max-atom u > u_max.
    pub frames_above: usize,
    /// Pool atoms with u in (u_c, u_max].
    pub atoms_between: usize,
    /// Pool atoms with u > u_max.
    pub atoms_above: usize,
    /// Atom confusion counts on the pool (e > e_c vs u > u_c).
    pub atoms: Confusion,
    /// Frame confusion counts on the pool (max-atom: any e > e_c vs any u > u_c).
    pub frames: Confusion,
    /// Index of the first pool frame above u_max (None: the scan reached the end).
    pub stop_frame: Option<usize>,
    /// Frames reached before the stop, as a fraction of the pool.
    pub coverage: f64,
    /// `time_ps` of the last frame reached (NaN if the pool has no `time_ps` key).
    pub coverage_ps: f64,
    /// Uncertain unlabelled frames before the stop.
    pub candidates: usize,
    /// Frames added after this iteration (0 on the last).
    pub added: usize,
    /// Wall time of the fit and estimator build, seconds.
    pub fit_seconds: f64,
    /// The calibration's warnings of this fit, per species ("Li: ..."; not in the CSV).
    pub warnings: Vec<String>,
}

impl Iteration {
    /// Frames in the data set (training + validation).
    pub fn dataset(&self) -> usize {
        self.n_train + self.n_valid
    }

    /// CSV header of [`Iteration::csv_row`]; `{u}` in a name stands for the selector's
    /// uncertainty unit ([`Iteration::csv_header`]). Force errors and e_c are in eV/Å (the units
    /// of the cutoffs); the unmarked columns are counts, fractions or names.
    pub const CSV_HEADER: [&'static str; 29] = [
        "iteration",
        "dataset",
        "n_train",
        "n_valid",
        "force_mae_train_eV_per_A",
        "force_mae_valid_eV_per_A",
        "force_mae_pool_eV_per_A",
        "e_c_eV_per_A",
        "u_c_{u}",
        "u_max_{u}",
        "u_family",
        "frames_between",
        "frames_above",
        "atoms_between",
        "atoms_above",
        "tp_fraction",
        "uncertain_fraction",
        "high_error_fraction",
        "precision",
        "recall",
        "f1",
        "frame_precision",
        "frame_recall",
        "frame_f1",
        "stop_frame",
        "coverage",
        "coverage_ps",
        "added",
        "fit_seconds",
    ];

    /// The CSV header of a selector's runs: [`Iteration::CSV_HEADER`] with the unit of its
    /// uncertainty in the u_c and u_max columns (`dimensionless` for gamma and gamma_local,
    /// `eV_per_A` for the others, the oracle's and random sampling's u being the error itself).
    pub fn csv_header(selector: Selector) -> Vec<String> {
        let u = match selector {
            Selector::Uq(Method::Gamma | Method::GammaLocal) => "dimensionless",
            _ => "eV_per_A",
        };
        Self::CSV_HEADER
            .iter()
            .map(|h| h.replace("{u}", u))
            .collect()
    }

    /// Values of the named metric used by the figures and the aggregation (NaN if unknown).
    pub fn metric(&self, name: &str) -> f64 {
        let n = self.atoms.total().max(1) as f64;
        match name {
            "dataset" => self.dataset() as f64,
            "mae_train" => self.mae_train,
            "mae_valid" => self.mae_valid,
            "mae_pool" => self.mae_pool,
            "e_c" => self.e_c,
            "u_c" => self.u_c,
            "u_max" => self.u_max,
            "frames_between" => self.frames_between as f64,
            "frames_above" => self.frames_above as f64,
            "tp_fraction" => self.atoms.tp as f64 / n,
            "uncertain_fraction" => (self.atoms.tp + self.atoms.fp) as f64 / n,
            "high_error_fraction" => (self.atoms.tp + self.atoms.fn_) as f64 / n,
            "precision" => defined(self.atoms, |c| c.tp + c.fp, Confusion::precision),
            "recall" => defined(self.atoms, |c| c.tp + c.fn_, Confusion::recall),
            "f1" => defined(self.atoms, |c| c.tp + c.fp + c.fn_, Confusion::f1),
            "frame_precision" => defined(self.frames, |c| c.tp + c.fp, Confusion::precision),
            "frame_recall" => defined(self.frames, |c| c.tp + c.fn_, Confusion::recall),
            "frame_f1" => defined(self.frames, |c| c.tp + c.fp + c.fn_, Confusion::f1),
            "coverage" => self.coverage,
            "coverage_ps" => self.coverage_ps,
            "candidates" => self.candidates as f64,
            "added" => self.added as f64,
            "fit_seconds" => self.fit_seconds,
            _ => f64::NAN,
        }
    }

    /// One CSV row (see [`Iteration::CSV_HEADER`]). `classification` false (random sampling)
    /// writes `nan` for the columns that grade an uncertainty.
    pub fn csv_row(&self, classification: bool) -> Vec<String> {
        let f = |v: f64| format!("{v:.6}");
        let g = |name: &str| {
            let v = self.metric(name);
            if classification && !v.is_nan() {
                f(v)
            } else {
                "nan".into()
            }
        };
        vec![
            self.iteration.to_string(),
            self.dataset().to_string(),
            self.n_train.to_string(),
            self.n_valid.to_string(),
            f(self.mae_train),
            f(self.mae_valid),
            f(self.mae_pool),
            f(self.e_c),
            f(self.u_c),
            f(self.u_max),
            self.u_family.clone(),
            self.frames_between.to_string(),
            self.frames_above.to_string(),
            self.atoms_between.to_string(),
            self.atoms_above.to_string(),
            g("tp_fraction"),
            g("uncertain_fraction"),
            g("high_error_fraction"),
            g("precision"),
            g("recall"),
            g("f1"),
            g("frame_precision"),
            g("frame_recall"),
            g("frame_f1"),
            self.stop_frame.map_or("none".into(), |k| k.to_string()),
            f(self.coverage),
            f(self.coverage_ps),
            self.added.to_string(),
            format!("{:.3}", self.fit_seconds),
        ]
    }
}

/// `score(c)`, or NaN where it is undefined: `count(c)`, its denominator's atoms or frames, is 0
/// (nothing flagged for precision; nothing above e_c for recall; neither for F1, where no
/// flag and no high error is no evidence either way, not an F1 of 0).
fn defined(c: Confusion, count: fn(&Confusion) -> u64, score: fn(&Confusion) -> f64) -> f64 {
    if count(&c) == 0 { f64::NAN } else { score(&c) }
}

/// One run of the protocol (one selector, one seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlRun {
    /// The selector.
    pub selector: Selector,
    /// Seed of the start frames, splits and estimator randomness.
    pub seed: u64,
    /// Every iteration, in order; the last one is the final model.
    pub iterations: Vec<Iteration>,
    /// Pool indices of the final training frames.
    pub train: Vec<usize>,
    /// Pool indices of the final validation frames.
    pub valid: Vec<usize>,
    /// True if the run stopped because no uncertain frame remained and none is unstable (not
    /// the iteration limit, and not stalled before an unstable frame it cannot label: its last
    /// iteration's `stop_frame` tells).
    pub converged: bool,
    /// The pool frame the run stopped halted at, with nothing left to label before it (not
    /// converged, and not the iteration limit); None otherwise.
    pub stalled_at: Option<usize>,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

impl AlRun {
    /// Frames in the final data set.
    pub fn final_size(&self) -> usize {
        self.train.len() + self.valid.len()
    }
}

fn ctx_model(it: usize, what: &str) -> impl FnOnce(crate::model::ModelError) -> BenchError {
    let context = format!("iteration {it}: {what}");
    move |source| BenchError::Model { context, source }
}

fn ctx_uq(it: usize, what: &str) -> impl FnOnce(uq::UqError) -> BenchError {
    let context = format!("iteration {it}: {what}");
    move |source| BenchError::Uq { context, source }
}

/// Check the pool: labelled, in time order where it says so, enough frames to start.
pub fn check_pool(pool: &[Structure], settings: &AlSettings) -> Result<(), BenchError> {
    if pool.len() < settings.n_start + 1 {
        return Err(BenchError::Data(format!(
            "the pool has {} frames; the benchmark starts from {} and needs more to choose from",
            pool.len(),
            settings.n_start
        )));
    }
    if settings.n_start < 2 {
        return Err(BenchError::Data(
            "n_start must be at least 2 (one training and one validation frame)".into(),
        ));
    }
    for s in pool {
        if s.forces.is_none() {
            return Err(BenchError::Data(format!(
                "{}: no reference forces; the benchmark needs a fully labelled pool",
                s.origin
            )));
        }
    }
    let times: Vec<f64> = pool.iter().filter_map(time_ps).collect();
    if times.len() == pool.len()
        && let Some(k) = times.windows(2).position(|w| w[1] < w[0])
    {
        return Err(BenchError::Data(format!(
            "{}: time_ps = {} is earlier than the previous frame's {}; the pool must be in time order",
            pool[k + 1].origin,
            times[k + 1],
            times[k]
        )));
    }
    Ok(())
}

/// `time_ps` of a frame, if it has one.
pub fn time_ps(s: &Structure) -> Option<f64> {
    match s.info.get("time_ps") {
        Some(InfoValue::Real(t)) => Some(*t),
        Some(InfoValue::Int(t)) => Some(*t as f64),
        _ => None,
    }
}

/// Run the protocol once; `on_iteration` is called after each fit (progress reporting).
pub fn run(
    pool: &[Structure],
    selector: Selector,
    settings: &AlSettings,
    seed: u64,
    on_iteration: &mut dyn FnMut(&Iteration),
) -> Result<AlRun, BenchError> {
    check_pool(pool, settings)?;
    let t_run = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_a1be);
    let ns = settings.species.len();
    // Species index of every pool atom, and atoms per species (the N of the cutoffs).
    let species_of: Vec<Vec<usize>> = pool
        .iter()
        .map(|s| {
            s.symbols
                .iter()
                .enumerate()
                .map(|(i, sym)| {
                    settings
                        .species
                        .iter()
                        .position(|x| x == sym)
                        .ok_or_else(|| {
                            BenchError::Data(format!(
                                "{}: atom {i} is '{sym}', not one of the species {:?}",
                                s.origin, settings.species
                            ))
                        })
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let mut n_pool = vec![0u64; ns];
    for sp in &species_of {
        for &z in sp {
            n_pool[z] += 1;
        }
    }
    // Start: n_start random frames, one of them (10 %, at least one) for validation.
    let mut order: Vec<usize> = (0..pool.len()).collect();
    shuffle(&mut order, &mut rng);
    let start = &order[..settings.n_start];
    let n_v0 = ((settings.n_start as f64 * settings.valid_fraction).round() as usize).max(1);
    let mut valid: Vec<usize> = start[..n_v0].to_vec();
    let mut train: Vec<usize> = start[n_v0..].to_vec();
    let mut labelled = vec![false; pool.len()];
    for &k in start {
        labelled[k] = true;
    }
    let mut iterations = vec![];
    let mut converged = false;
    let mut stalled_at = None;
    for it in 0..settings.max_iterations {
        let t_fit = Instant::now();
        let tr: Vec<Structure> = train.iter().map(|&k| pool[k].clone()).collect();
        let va: Vec<Structure> = valid.iter().map(|&k| pool[k].clone()).collect();
        let model = fit::fit(
            &settings.species,
            &settings.basis,
            &settings.fit,
            &tr,
            &va,
            false,
        )
        .map_err(ctx_model(it, "fit"))?;
        let mut pot = crate::potential::Potential::new(model);
        let model = &pot.model;
        if let Selector::Uq(m) = selector {
            let cfg = settings.uq_for(m, seed.wrapping_add(it as u64));
            uq::build(model, &mut pot.uq, &tr, &va, &cfg, false)
                .map_err(ctx_uq(it, &format!("building the {} estimator", m.name())))?;
        }
        let fit_seconds = t_fit.elapsed().as_secs_f64();
        let errors = uq::force_errors(model, pool).map_err(ctx_model(it, "pool errors"))?;
        let unc: Vec<Vec<f64>> = match selector {
            Selector::Uq(m) => pot
                .per_atom(pool, m)
                .map_err(ctx_uq(it, &format!("{} on the pool", m.name())))?,
            _ => errors.clone(),
        };
        // Cutoffs per species from the validation atoms.
        let mut cals: Vec<Calibration> = Vec::with_capacity(ns);
        for z in 0..ns {
            let (mut es, mut us) = (vec![], vec![]);
            for &k in &valid {
                for (i, &sz) in species_of[k].iter().enumerate() {
                    if sz == z {
                        es.push(errors[k][i]);
                        us.push(unc[k][i]);
                    }
                }
            }
            if es.len() < 10 {
                return Err(BenchError::Data(format!(
                    "iteration {it}: species {} has {} validation atoms; the cutoffs need at least 10 \
                     (use a pool whose frames hold every species)",
                    settings.species[z],
                    es.len()
                )));
            }
            let mut opts = CalibrationOptions::new(n_pool[z].max(2));
            opts.e_max = settings.e_max;
            opts.tail = settings.tail;
            opts.upper_rule = settings.upper_rule;
            if matches!(selector, Selector::Oracle | Selector::Random) {
                // u = e: the same (Maxwell) fit and tail model make u_c = e_c, and the ratio
                // rule u_max = e_max exactly.
                opts.uncertainty_families = vec![Family::Maxwell];
                opts.upper_rule = crate::stats::cutoff::UpperRule::Ratio;
            }
            let cal = calibrate(&settings.species[z], selector.name(), &es, &us, &opts).map_err(
                |source| BenchError::Stats {
                    context: format!("iteration {it}: cutoffs"),
                    source,
                },
            )?;
            cals.push(cal);
        }
        // Classify every pool atom and frame.
        let mut atoms = Confusion::default();
        let mut frames = Confusion::default();
        let (mut ab, mut aa) = (0usize, 0usize);
        let mut zone = vec![Zone::Trusted; pool.len()];
        let mut score = vec![0.0f64; pool.len()];
        for k in 0..pool.len() {
            let (mut hi_e, mut hi_u) = (false, false);
            for (i, &z) in species_of[k].iter().enumerate() {
                let c = &cals[z];
                let (e, u) = (errors[k][i], unc[k][i]);
                let he = e > c.e_c;
                let hu = u > c.u_c;
                match (he, hu) {
                    (true, true) => atoms.tp += 1,
                    (false, true) => atoms.fp += 1,
                    (true, false) => atoms.fn_ += 1,
                    (false, false) => atoms.tn += 1,
                }
                hi_e |= he;
                hi_u |= hu;
                let zn = c.zone(u);
                match zn {
                    Zone::Uncertain => ab += 1,
                    Zone::Unstable => aa += 1,
                    Zone::Trusted => {}
                }
                zone[k] = zone[k].max_zone(zn);
                score[k] = score[k].max(u / c.u_c);
            }
            match (hi_e, hi_u) {
                (true, true) => frames.tp += 1,
                (false, true) => frames.fp += 1,
                (true, false) => frames.fn_ += 1,
                (false, false) => frames.tn += 1,
            }
        }
        let frames_between = zone.iter().filter(|&&z| z == Zone::Uncertain).count();
        let frames_above = zone.iter().filter(|&&z| z == Zone::Unstable).count();
        // Scan in time order up to the first unstable frame.
        let stop = zone.iter().position(|&z| z == Zone::Unstable);
        let reached = stop.unwrap_or(pool.len());
        let mut cand: Vec<usize> = (0..reached)
            .filter(|&k| !labelled[k] && zone[k] == Zone::Uncertain)
            .collect();
        let budget = train.len() + valid.len();
        let n_add = cand.len().min(budget);
        let chosen: Vec<usize> = if selector == Selector::Random {
            // The oracle's count, drawn from every unlabelled frame the run reached.
            let mut all: Vec<usize> = (0..reached).filter(|&k| !labelled[k]).collect();
            shuffle(&mut all, &mut rng);
            all.truncate(n_add);
            all
        } else {
            cand.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
            cand.truncate(n_add);
            cand.clone()
        };
        let mean_over = |idx: &[usize]| -> f64 {
            let v: Vec<f64> = idx
                .iter()
                .flat_map(|&k| errors[k].iter().copied())
                .collect();
            mean(&v)
        };
        let all_idx: Vec<usize> = (0..pool.len()).collect();
        let coverage_ps = if reached == 0 {
            f64::NAN
        } else {
            time_ps(&pool[reached - 1]).unwrap_or(f64::NAN)
        };
        let record = Iteration {
            iteration: it,
            n_train: train.len(),
            n_valid: valid.len(),
            mae_train: mean_over(&train),
            mae_valid: mean_over(&valid),
            mae_pool: mean_over(&all_idx),
            e_c: cals[0].e_c,
            u_c: cals[0].u_c,
            u_max: cals[0].u_max,
            u_family: cals[0].uncertainty.dist().family().to_string(),
            frames_between,
            frames_above,
            atoms_between: ab,
            atoms_above: aa,
            atoms,
            frames,
            stop_frame: stop,
            coverage: reached as f64 / pool.len() as f64,
            coverage_ps,
            candidates: cand.len().max(n_add),
            added: chosen.len(),
            fit_seconds,
            warnings: cals
                .iter()
                .flat_map(|c| c.warnings.iter().map(|w| format!("{}: {w}", c.species)))
                .collect(),
        };
        on_iteration(&record);
        iterations.push(record);
        if chosen.is_empty() {
            // Nothing left to label before the first unstable frame: converged only if there
            // is none (a run still halted has stalled short of the pool's end).
            converged = stop.is_none();
            stalled_at = stop;
            break;
        }
        // New frames: ~10 % to validation, the rest to training.
        let mut new = chosen;
        shuffle(&mut new, &mut rng);
        let n_v = (new.len() as f64 * settings.valid_fraction).round() as usize;
        for (j, &k) in new.iter().enumerate() {
            labelled[k] = true;
            if j < n_v {
                valid.push(k);
            } else {
                train.push(k);
            }
        }
    }
    if !converged && let Some(last) = iterations.last_mut() {
        // The frames chosen after the last allowed fit were never fitted: leave them out of the
        // final data set (they were appended, so truncating restores it).
        last.added = 0;
        train.truncate(last.n_train);
        valid.truncate(last.n_valid);
    }
    train.sort_unstable();
    valid.sort_unstable();
    Ok(AlRun {
        selector,
        seed,
        iterations,
        train,
        valid,
        converged,
        stalled_at,
        seconds: t_run.elapsed().as_secs_f64(),
    })
}

trait MaxZone {
    fn max_zone(self, other: Zone) -> Zone;
}

impl MaxZone for Zone {
    fn max_zone(self, other: Zone) -> Zone {
        let rank = |z: Zone| match z {
            Zone::Trusted => 0,
            Zone::Uncertain => 1,
            Zone::Unstable => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// Mean and spread of one metric over repeats at one iteration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Iteration (x).
    pub iteration: usize,
    /// Mean over repeats.
    pub mean: f64,
    /// Sample standard deviation over repeats (0 for one repeat).
    pub std: f64,
    /// Minimum over repeats.
    pub min: f64,
    /// Maximum over repeats.
    pub max: f64,
}

/// Mean ± spread of `metric` over runs, per iteration. A run that converged earlier keeps its
/// final value (it stays at its final data set), so every iteration averages all repeats.
/// NaN values (e.g. no time stamps) are left out of the statistics.
pub fn aggregate(runs: &[AlRun], metric: &str) -> Vec<Band> {
    let n_it = runs.iter().map(|r| r.iterations.len()).max().unwrap_or(0);
    (0..n_it)
        .map(|it| {
            let v: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    r.iterations
                        .get(it)
                        .or(r.iterations.last())
                        .map(|x| x.metric(metric))
                })
                .filter(|v| v.is_finite())
                .collect();
            let m = mean(&v);
            let std = if v.len() > 1 {
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
            } else {
                0.0
            };
            Band {
                iteration: it,
                mean: m,
                std,
                min: v.iter().cloned().fold(f64::INFINITY, f64::min),
                max: v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            }
        })
        .collect()
}

/// Summary of the runs of one selector: final data-set size etc. as (mean, std, min, max).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectorSummary {
    /// The selector.
    pub selector: Selector,
    /// Number of repeats.
    pub repeats: usize,
    /// Repeats that converged (no uncertain frame left, none unstable).
    pub converged: usize,
    /// Final data-set size (frames).
    pub final_size: [f64; 4],
    /// Iterations (fits).
    pub iterations: [f64; 4],
    /// Final mean |ΔF| on the pool (eV/Å).
    pub final_mae_pool: [f64; 4],
    /// Final coverage (fraction of the pool reached).
    pub final_coverage: [f64; 4],
    /// Atom F1 at the cutoffs, mean over all iterations of all repeats where it is defined
    /// (NaN if nowhere).
    pub mean_f1: f64,
    /// Frame F1 (tracking the oracle), mean over all iterations of all repeats where it is
    /// defined.
    pub mean_frame_f1: f64,
    /// Mean wall time of one run, seconds.
    pub seconds: f64,
}

fn stats4(v: &[f64]) -> [f64; 4] {
    let m = mean(v);
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    [
        m,
        sd,
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    ]
}

/// Summarize the runs of one selector (all runs must share it).
pub fn summarize(runs: &[AlRun]) -> Option<SelectorSummary> {
    let first = runs.first()?;
    let last =
        |f: &dyn Fn(&AlRun) -> f64| -> [f64; 4] { stats4(&runs.iter().map(f).collect::<Vec<_>>()) };
    let all_it: Vec<&Iteration> = runs.iter().flat_map(|r| r.iterations.iter()).collect();
    // Over the iterations where the metric is defined (NaN when none is).
    let mf = |name: &str| {
        let v: Vec<f64> = all_it
            .iter()
            .map(|i| i.metric(name))
            .filter(|v| !v.is_nan())
            .collect();
        if v.is_empty() { f64::NAN } else { mean(&v) }
    };
    let classify = first.selector != Selector::Random;
    Some(SelectorSummary {
        selector: first.selector,
        repeats: runs.len(),
        converged: runs.iter().filter(|r| r.converged).count(),
        final_size: last(&|r| r.final_size() as f64),
        iterations: last(&|r| r.iterations.len() as f64),
        final_mae_pool: last(&|r| r.iterations.last().map_or(f64::NAN, |i| i.mae_pool)),
        final_coverage: last(&|r| r.iterations.last().map_or(f64::NAN, |i| i.coverage)),
        mean_f1: if classify { mf("f1") } else { f64::NAN },
        mean_frame_f1: if classify { mf("frame_f1") } else { f64::NAN },
        seconds: mean(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iteration(atoms: Confusion, frames: Confusion) -> Iteration {
        Iteration {
            iteration: 0,
            n_train: 1,
            n_valid: 1,
            mae_train: 0.1,
            mae_valid: 0.1,
            mae_pool: 0.1,
            e_c: 0.5,
            u_c: 1.0,
            u_max: 2.0,
            u_family: "gamma".into(),
            frames_between: 0,
            frames_above: 0,
            atoms_between: 0,
            atoms_above: 0,
            atoms,
            frames,
            stop_frame: None,
            coverage: 1.0,
            coverage_ps: f64::NAN,
            candidates: 0,
            added: 0,
            fit_seconds: 1.0,
            warnings: vec![],
        }
    }

    /// Nothing flagged and nothing above e_c is no F1 of 0: undefined, left out of the means,
    /// `nan` in the CSV; nothing flagged with errors above e_c is an F1 of 0.
    #[test]
    fn scores_without_a_denominator_are_undefined_not_zero() {
        let none = Confusion {
            tn: 100,
            ..Default::default()
        };
        let missed = Confusion {
            fn_: 2,
            tn: 98,
            ..Default::default()
        };
        let hit = Confusion {
            tp: 1,
            fp: 1,
            tn: 98,
            ..Default::default()
        };
        let quiet = iteration(none, none);
        for m in ["precision", "recall", "f1"]
            .map(|m| [m.to_string(), format!("frame_{m}")])
            .concat()
        {
            assert!(quiet.metric(&m).is_nan(), "{m}");
        }
        let blind = iteration(missed, missed);
        assert!(blind.metric("precision").is_nan());
        assert_eq!((blind.metric("recall"), blind.metric("f1")), (0.0, 0.0));
        let row = quiet.csv_row(true);
        let col = |name: &str| {
            Iteration::CSV_HEADER
                .iter()
                .position(|h| *h == name)
                .unwrap()
        };
        assert_eq!(row[col("f1")], "nan");
        assert_eq!(row[col("frame_f1")], "nan");

        let run = |its: Vec<Iteration>| AlRun {
            selector: Selector::Uq(Method::Gamma),
            seed: 1,
            iterations: its,
            train: vec![0],
            valid: vec![1],
            converged: true,
            stalled_at: None,
            seconds: 1.0,
        };
        let s = summarize(&[run(vec![quiet.clone(), iteration(hit, hit)])]).unwrap();
        // P 1/2, R 1: F1 2/3, the mean over the one iteration where it is defined.
        assert_eq!((s.mean_f1, s.mean_frame_f1), (2.0 / 3.0, 2.0 / 3.0));
        let s = summarize(&[run(vec![quiet.clone(), quiet])]).unwrap();
        assert!(s.mean_f1.is_nan() && s.mean_frame_f1.is_nan());
    }
}
