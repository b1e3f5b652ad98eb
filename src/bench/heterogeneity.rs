//! Heterogeneity and model accuracy (Shuang et al., arXiv:2508.03405): how the training data's
//! heterogeneity and the model's accuracy (basis size) shape uncertainty quantification.
//!
//! For each data set (homogeneous or heterogeneous) and each basis size, a model is fitted with
//! the requested estimators (global D-optimality `gamma`, clustered local D-optimality
//! `gamma_local`, the ensemble) and scored on held-out in-distribution frames:
//! - Spearman rho between uncertainty and force error, per atom and per structure (max over atoms);
//! - the calibration curve and miscalibration area of the Maxwell predictive distribution
//!   (sigma = the ensemble's calibrated spread; for the dimensionless grades, grade × a scale
//!   fitted by the Maxwell likelihood on the *validation* atoms, then applied to the test atoms),
//!   and its signed mean (observed - expected; > 0: conservative, < 0: under-predicts errors);
//! - novelty detection: ROC-AUC of the structure grade (max-atom uncertainty), novel structures
//!   against the in-distribution test structures. Novel subsets are either files of frames the
//!   model never saw (`novel`) or, with `holdout`, each `config_type` of the `mixed` files held
//!   out of the training data in turn (one extra fit per subset).

use super::{BenchError, mean};
use crate::basis::BasisConfig;
use crate::model::fit::{self, FitConfig};
use crate::potential::Potential;
use crate::stats::metrics::{CalibrationCurve, calibration_curve, pit_maxwell, roc_auc, spearman};
use crate::structure::Structure;
use crate::uq::{self, Method, Partition, UqConfig};
use serde::{Deserialize, Serialize};

/// A named basis size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedBasis {
    /// Label in tables and figures.
    pub name: String,
    /// Radial functions per body order.
    pub nmax: Vec<usize>,
    /// Maximum angular degree per body order.
    pub lmax: Vec<usize>,
    /// Cutoff radius in Å (default: the basis default).
    #[serde(default)]
    pub cutoff: Option<f64>,
}

impl NamedBasis {
    /// The basis configuration.
    pub fn config(&self) -> BasisConfig {
        let mut b = BasisConfig {
            nmax: self.nmax.clone(),
            lmax: self.lmax.clone(),
            ..Default::default()
        };
        if let Some(c) = self.cutoff {
            b.cutoff = c;
        }
        b
    }
}

/// One training data set as given in the config (paths relative to the config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Label in tables and figures.
    pub name: String,
    /// Species of the model.
    pub species: Vec<String>,
    /// Training frames.
    pub train: Vec<String>,
    /// Validation frames (calibrate the estimators).
    pub valid: Vec<String>,
    /// In-distribution test frames.
    pub test: Vec<String>,
    /// Frames split by `config_type` into train / valid / test (in frame order) with
    /// `mixed_split` fractions: the heterogeneous subsets.
    #[serde(default)]
    pub mixed: Vec<String>,
    /// Fractions (train, valid, test) of each `config_type` of `mixed`.
    #[serde(default = "default_split")]
    pub mixed_split: [f64; 3],
    /// Out-of-distribution frames, scored per `config_type` against the test frames.
    #[serde(default)]
    pub novel: Vec<String>,
    /// Hold each `config_type` of `mixed` out in turn to score its novelty.
    #[serde(default)]
    pub holdout: bool,
}

fn default_split() -> [f64; 3] {
    [0.5, 0.17, 0.33]
}

/// Settings of the quick (CI) size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuickConfig {
    /// Names of the bases to use (default: the first two).
    pub bases: Vec<String>,
    /// At most this many training frames from the `train` files (evenly spaced).
    pub max_train: usize,
    /// At most this many held-out subsets per data set.
    pub max_holdouts: usize,
    /// Ensemble members.
    pub ensemble: usize,
}

impl Default for QuickConfig {
    fn default() -> Self {
        QuickConfig {
            bases: vec![],
            max_train: 20,
            max_holdouts: 2,
            ensemble: 3,
        }
    }
}

/// The benchmark configuration (`bench.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// Methods to score (of gamma, gamma_local, ensemble, distance, gp).
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Ensemble members.
    #[serde(default = "default_members")]
    pub ensemble: usize,
    /// k-means clusters of gamma_local (0: one cluster per config_type).
    #[serde(default = "default_clusters")]
    pub clusters: usize,
    /// Fit weights.
    #[serde(default)]
    pub fit: FitConfig,
    /// Basis sizes (model accuracy).
    pub basis: Vec<NamedBasis>,
    /// Training data sets.
    pub dataset: Vec<DatasetConfig>,
    /// The quick size.
    #[serde(default)]
    pub quick: QuickConfig,
}

fn default_methods() -> Vec<Method> {
    vec![Method::Gamma, Method::GammaLocal, Method::Ensemble]
}
fn default_members() -> usize {
    5
}
fn default_clusters() -> usize {
    4
}

impl BenchConfig {
    /// Check the settings; messages name the entry at fault.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Data(m));
        if self.basis.is_empty() {
            return bad("give at least one [[basis]]".into());
        }
        if self.dataset.is_empty() {
            return bad("give at least one [[dataset]]".into());
        }
        if self.methods.is_empty() {
            return bad("methods is empty".into());
        }
        if self.methods.contains(&Method::Ensemble) && self.ensemble < 2 {
            return bad("ensemble needs at least 2 members".into());
        }
        for b in &self.basis {
            b.config()
                .validate()
                .map_err(|e| BenchError::Data(format!("basis '{}': {e}", b.name)))?;
        }
        for d in &self.dataset {
            if d.train.is_empty() && d.mixed.is_empty() {
                return bad(format!("dataset '{}': no train or mixed files", d.name));
            }
            let s: f64 = d.mixed_split.iter().sum();
            if d.mixed_split.iter().any(|f| !(f.is_finite() && *f >= 0.0)) || (s - 1.0).abs() > 1e-6
            {
                return bad(format!(
                    "dataset '{}': mixed_split must be three non-negative fractions summing to 1",
                    d.name
                ));
            }
            if d.holdout && d.mixed.is_empty() {
                return bad(format!(
                    "dataset '{}': holdout needs mixed files (the subsets to hold out)",
                    d.name
                ));
            }
        }
        for n in &self.quick.bases {
            if !self.basis.iter().any(|b| &b.name == n) {
                return bad(format!("quick.bases names an unknown basis '{n}'"));
            }
        }
        Ok(())
    }
}

/// A data set with its frames loaded and split.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Label.
    pub name: String,
    /// Species of the model.
    pub species: Vec<String>,
    /// Training frames (train files + the train part of each mixed subset).
    pub train: Vec<Structure>,
    /// Validation frames.
    pub valid: Vec<Structure>,
    /// In-distribution test frames.
    pub test: Vec<Structure>,
    /// Novel subsets (name, frames) scored against `test` with the main model.
    pub novel: Vec<(String, Vec<Structure>)>,
    /// Subsets held out in turn: (name, all its frames). Each needs its own fit.
    pub holdout: Vec<(String, Vec<Structure>)>,
}

/// Group frames by `config_type` in order of first appearance ("unlabelled" for none).
pub fn group_by_type(frames: Vec<Structure>) -> Vec<(String, Vec<Structure>)> {
    let mut out: Vec<(String, Vec<Structure>)> = vec![];
    for f in frames {
        let key = f.config_type.clone().unwrap_or_else(|| "unlabelled".into());
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(f),
            None => out.push((key, vec![f])),
        }
    }
    out
}

/// Split frames (in order) by fractions into three parts; at least one test frame and one
/// training frame when there are two or more frames.
pub fn split3(frames: Vec<Structure>, f: [f64; 3]) -> [Vec<Structure>; 3] {
    let n = frames.len();
    let mut n_tr = ((n as f64) * f[0]).round() as usize;
    let mut n_va = ((n as f64) * f[1]).round() as usize;
    if n >= 2 {
        n_tr = n_tr.clamp(1, n - 1);
        n_va = n_va.min(n - 1 - n_tr);
    } else {
        n_tr = n;
        n_va = 0;
    }
    let mut it = frames.into_iter();
    let tr: Vec<Structure> = it.by_ref().take(n_tr).collect();
    let va: Vec<Structure> = it.by_ref().take(n_va).collect();
    let te: Vec<Structure> = it.collect();
    [tr, va, te]
}

/// Every `k`-th frame so that at most `max` remain (evenly spread).
pub fn thin(frames: Vec<Structure>, max: usize) -> Vec<Structure> {
    if max == 0 || frames.len() <= max {
        return frames;
    }
    let n = frames.len();
    (0..max)
        .map(|i| frames[i * n / max].clone())
        .collect::<Vec<_>>()
}

/// Scores of one method on one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    /// The method.
    pub method: Method,
    /// Spearman rho, uncertainty vs force error, per test atom.
    pub rho_atom: f64,
    /// Spearman rho per test structure (max over atoms).
    pub rho_struct: f64,
    /// Miscalibration area on the test atoms.
    pub area: f64,
    /// Mean of observed - expected over the calibration grid (> 0 conservative, < 0 the
    /// uncertainty under-predicts the error).
    pub signed: f64,
    /// Scale from the method's value to a Maxwell sigma (1 for eV/Å methods).
    pub scale: f64,
    /// The calibration curve.
    pub curve: CalibrationCurve,
    /// ROC-AUC per novel subset (name, AUC).
    pub auc: Vec<(String, f64)>,
}

impl MethodScores {
    /// Mean ROC-AUC over the novel subsets (NaN if none).
    pub fn mean_auc(&self) -> f64 {
        mean(&self.auc.iter().map(|a| a.1).collect::<Vec<_>>())
    }
}

/// Result of one (data set, basis).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Data set label.
    pub dataset: String,
    /// Basis label.
    pub basis: String,
    /// Basis functions (first species).
    pub nfuncs: usize,
    /// Training frames.
    pub n_train: usize,
    /// Mean |ΔF| on the in-distribution test atoms (eV/Å).
    pub mae_test: f64,
    /// Force RMSE per component on the test frames (eV/Å).
    pub rmse_test: f64,
    /// Per-method scores.
    pub methods: Vec<MethodScores>,
    /// Wall time (fits and scoring), seconds.
    pub seconds: f64,
}

fn uq_config(cfg: &BenchConfig, members: usize) -> UqConfig {
    UqConfig {
        active_set: cfg.methods.contains(&Method::Gamma),
        clusters: cfg
            .methods
            .contains(&Method::GammaLocal)
            .then_some(if cfg.clusters == 0 {
                Partition::ConfigType
            } else {
                Partition::KMeans(cfg.clusters)
            }),
        ensemble: if cfg.methods.contains(&Method::Ensemble) {
            members
        } else {
            0
        },
        distance: cfg.methods.contains(&Method::Distance),
        gp: cfg.methods.contains(&Method::Gp),
        seed: cfg.seed,
        ..Default::default()
    }
}

fn fit_with_uq(
    species: &[String],
    basis: &BasisConfig,
    cfg: &BenchConfig,
    members: usize,
    train: &[Structure],
    valid: &[Structure],
    what: &str,
) -> Result<Potential, BenchError> {
    let model = fit::fit(species, basis, &cfg.fit, train, valid, false).map_err(|source| {
        BenchError::Model {
            context: format!("{what}: fit"),
            source,
        }
    })?;
    let mut pot = Potential::new(model);
    uq::build(
        &pot.model,
        &mut pot.uq,
        train,
        valid,
        &uq_config(cfg, members),
        false,
    )
    .map_err(|source| BenchError::Uq {
        context: format!("{what}: uncertainty estimators"),
        source,
    })?;
    Ok(pot)
}

/// Per-atom errors and uncertainties of `method` on `data` (flattened over labelled structures),
/// plus the per-structure maxima.
struct Paired {
    e: Vec<f64>,
    u: Vec<f64>,
    se: Vec<f64>,
    su: Vec<f64>,
}

fn paired(
    pot: &Potential,
    data: &[Structure],
    method: Method,
    what: &str,
) -> Result<Paired, BenchError> {
    let errors = uq::force_errors(&pot.model, data).map_err(|source| BenchError::Model {
        context: format!("{what}: force errors"),
        source,
    })?;
    let unc = pot
        .per_atom(data, method)
        .map_err(|source| BenchError::Uq {
            context: format!("{what}: {}", method.name()),
            source,
        })?;
    let mut p = Paired {
        e: vec![],
        u: vec![],
        se: vec![],
        su: vec![],
    };
    for (e, u) in errors.iter().zip(&unc) {
        if e.is_empty() {
            continue;
        }
        p.e.extend_from_slice(e);
        p.u.extend_from_slice(u);
        p.se.push(e.iter().cloned().fold(0.0, f64::max));
        p.su.push(u.iter().cloned().fold(0.0, f64::max));
    }
    Ok(p)
}

/// Structure grades (max-atom uncertainty) of `method`.
fn grades(
    pot: &Potential,
    data: &[Structure],
    method: Method,
    what: &str,
) -> Result<Vec<f64>, BenchError> {
    let u = pot
        .per_atom(data, method)
        .map_err(|source| BenchError::Uq {
            context: format!("{what}: {}", method.name()),
            source,
        })?;
    Ok(u.iter()
        .map(|v| v.iter().cloned().fold(0.0, f64::max))
        .collect())
}

fn stats_err(what: String) -> impl FnOnce(crate::stats::StatsError) -> BenchError {
    move |source| BenchError::Stats {
        context: what,
        source,
    }
}

/// Score one model: Spearman and calibration on `test`, novelty of each `novel` subset.
fn score(
    pot: &Potential,
    method: Method,
    valid: &[Structure],
    test: &[Structure],
    novel: &[(String, Vec<Structure>)],
    what: &str,
) -> Result<MethodScores, BenchError> {
    let t = paired(pot, test, method, what)?;
    let ctx = |s: &str| format!("{what}, {}: {s}", method.name());
    // Maxwell sigma per unit of the method: 1 for the eV/Å methods; for the grades the Maxwell
    // NLL optimum sqrt(sum (e/u)^2 / 3n) on the validation atoms.
    let scale = if matches!(method, Method::Gamma | Method::GammaLocal) {
        let v = paired(pot, valid, method, what)?;
        let s: f64 =
            v.e.iter()
                .zip(&v.u)
                .map(|(e, u)| (e / u.max(1e-12)).powi(2))
                .sum();
        (s / (3.0 * v.e.len().max(1) as f64)).sqrt()
    } else {
        1.0
    };
    let sig: Vec<f64> = t.u.iter().map(|u| (u * scale).max(1e-12)).collect();
    let pit = pit_maxwell(&t.e, &sig).map_err(stats_err(ctx("PIT")))?;
    let curve = calibration_curve(&pit, 101).map_err(stats_err(ctx("calibration")))?;
    let signed = mean(
        &curve
            .expected
            .iter()
            .zip(&curve.observed)
            .map(|(p, o)| o - p)
            .collect::<Vec<_>>(),
    );
    let rho_atom = spearman(&t.e, &t.u).unwrap_or(f64::NAN);
    let rho_struct = spearman(&t.se, &t.su).unwrap_or(f64::NAN);
    let mut auc = vec![];
    if !novel.is_empty() {
        let g_in = grades(pot, test, method, what)?;
        for (name, frames) in novel {
            let g_out = grades(pot, frames, method, what)?;
            let scores: Vec<f64> = g_in.iter().chain(&g_out).copied().collect();
            let labels: Vec<bool> = g_in
                .iter()
                .map(|_| false)
                .chain(g_out.iter().map(|_| true))
                .collect();
            let a =
                roc_auc(&scores, &labels).map_err(stats_err(ctx(&format!("ROC-AUC of {name}"))))?;
            auc.push((name.clone(), a));
        }
    }
    Ok(MethodScores {
        method,
        rho_atom,
        rho_struct,
        area: curve.area,
        signed,
        scale,
        curve,
        auc,
    })
}

/// Run one (data set, basis) case: the main fit scored on the test frames and the novel files;
/// with holdouts, one extra fit per held-out subset scored for that subset's novelty.
/// `members` overrides the config's ensemble size (quick mode); `on_step` reports progress.
pub fn run_case(
    cfg: &BenchConfig,
    data: &Dataset,
    basis: &NamedBasis,
    members: usize,
    on_step: &mut dyn FnMut(&str),
) -> Result<CaseResult, BenchError> {
    let t0 = std::time::Instant::now();
    let b = basis.config();
    let what = format!("{} / {}", data.name, basis.name);
    on_step(&format!("{what}: fit on {} frames", data.train.len()));
    let pot = fit_with_uq(
        &data.species,
        &b,
        cfg,
        members,
        &data.train,
        &data.valid,
        &what,
    )?;
    let m = fit::evaluate(&pot.model, &data.test, "test").map_err(|source| BenchError::Model {
        context: format!("{what}: test errors"),
        source,
    })?;
    let errs = uq::force_errors(&pot.model, &data.test).map_err(|source| BenchError::Model {
        context: format!("{what}: test errors"),
        source,
    })?;
    let mut methods = vec![];
    for &meth in &cfg.methods {
        methods.push(score(
            &pot,
            meth,
            &data.valid,
            &data.test,
            &data.novel,
            &what,
        )?);
    }
    for (name, frames) in &data.holdout {
        on_step(&format!("{what}: fit without '{name}'"));
        let keep = |v: &[Structure]| -> Vec<Structure> {
            v.iter()
                .filter(|s| s.config_type.as_deref() != Some(name.as_str()))
                .cloned()
                .collect()
        };
        let (tr, va, te) = (keep(&data.train), keep(&data.valid), keep(&data.test));
        let w = format!("{what} without '{name}'");
        let hm = fit_with_uq(&data.species, &b, cfg, members, &tr, &va, &w)?;
        let novel = [(name.clone(), frames.clone())];
        for ms in methods.iter_mut() {
            let g_in = grades(&hm, &te, ms.method, &w)?;
            let g_out = grades(&hm, &novel[0].1, ms.method, &w)?;
            let scores: Vec<f64> = g_in.iter().chain(&g_out).copied().collect();
            let labels: Vec<bool> = g_in
                .iter()
                .map(|_| false)
                .chain(g_out.iter().map(|_| true))
                .collect();
            let a = roc_auc(&scores, &labels)
                .map_err(stats_err(format!("{w}, {}: ROC-AUC", ms.method.name())))?;
            ms.auc.push((name.clone(), a));
        }
    }
    Ok(CaseResult {
        dataset: data.name.clone(),
        basis: basis.name.clone(),
        nfuncs: pot.model.nfuncs(0),
        n_train: data.train.len(),
        mae_test: mean(&errs.concat()),
        rmse_test: m.force_rmse,
        methods,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ct: &str) -> Structure {
        Structure {
            config_type: Some(ct.into()),
            ..Default::default()
        }
    }

    #[test]
    fn bench_split_and_group() {
        let frames: Vec<Structure> = ["a", "b", "a", "a", "b", "a"]
            .iter()
            .map(|c| frame(c))
            .collect();
        let g = group_by_type(frames);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].0.as_str(), g[0].1.len()), ("a", 4));
        let [tr, va, te] = split3(g[0].1.clone(), [0.5, 0.17, 0.33]);
        assert_eq!((tr.len(), va.len(), te.len()), (2, 1, 1));
        // Two frames: one train, one test, none for validation.
        let [tr, va, te] = split3(g[1].1.clone(), [0.5, 0.17, 0.33]);
        assert_eq!((tr.len(), va.len(), te.len()), (1, 0, 1));
        let t = thin((0..10).map(|_| frame("x")).collect(), 4);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn bench_config_rejects_bad_split() {
        let text = r#"
            [[basis]]
            name = "s"
            nmax = [4, 2]
            lmax = [0, 1]
            [[dataset]]
            name = "d"
            species = ["Li"]
            train = ["t.xyz"]
            valid = ["v.xyz"]
            test = ["x.xyz"]
            mixed = ["m.xyz"]
            mixed_split = [0.5, 0.5, 0.5]
        "#;
        let c: BenchConfig = toml::from_str(text).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("mixed_split") && e.contains("'d'"), "{e}");
        assert!(toml::from_str::<BenchConfig>(&text.replace("nmax", "nmx")).is_err());
    }
}
