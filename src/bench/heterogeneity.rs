//! Heterogeneity and model accuracy (Shuang et al., arXiv:2508.03405): how the training data's
//! heterogeneity and the model's accuracy (basis size) shape uncertainty quantification, and
//! whether clustered local D-optimality (`gamma_local`) restores the novelty sensitivity that
//! global D-optimality (`gamma`) loses on heterogeneous training data.
//!
//! For each data set (homogeneous or heterogeneous) and each basis size, a model is fitted with
//! the requested estimators (global D-optimality `gamma`, clustered local D-optimality
//! `gamma_local`, the ensemble) and scored on held-out in-distribution frames:
//! - Spearman rho between uncertainty and force error, per atom and per structure (max over atoms);
//! - the calibration curve and miscalibration area of the Maxwell predictive distribution
//!   (sigma = the ensemble's calibrated spread; for the dimensionless grades, grade × a scale
//!   fitted by the Maxwell likelihood on the *validation* atoms, then applied to the test atoms),
//!   and its signed mean (observed - expected; > 0: conservative, < 0: under-predicts errors).
//!
//! Novel subsets are either files of frames the model never saw (`novel`) or, with `holdout`,
//! each `config_type` (or each `holdout_group` of config_types) of the `mixed` files held out of
//! the training, validation and test data in turn (one extra fit per subset). Each subset is
//! scored against the in-distribution test frames of the model that did not see it
//! ([`SubsetScores`]):
//! - structure ROC-AUC of the max-atom grade (`auc_struct`, the original metric);
//! - structure ROC-AUC, **size-matched** (`auc_struct_matched`, [`size_matched_maxima`] +
//!   [`stratified_auc`]). The maximum of n atoms' uncertainties grows with n, and the Li novel
//!   frames have 13–128 atoms against 250 in the liquid test frames, so the plain AUC penalises
//!   small novel frames for their size alone (and would reward large ones). Each novel frame of n
//!   atoms is therefore compared only with maxima over n atoms drawn at random without
//!   replacement from each in-distribution frame ([`MATCHED_DRAWS`] draws per frame). Chosen over
//!   equal-size frames because it needs no new data and keeps every novel frame; over a
//!   per-atom-normalised score because the max is what an MD watch thresholds. Frames of equal
//!   size (Al–Mg: all 144 atoms) give exactly the plain AUC. The draws depend only on the seed,
//!   so every method is compared on the same atom subsets;
//! - atom ROC-AUC (`auc_atom`): novel atoms against in-distribution test atoms;
//! - on the pool of in-distribution test atoms + subset atoms: Spearman rho between uncertainty
//!   and force error (`rho_pool`), and the recall of the top-5 % error atoms when the 10 % most
//!   uncertain are labelled (`recall`, [`recall_at_budget`]; a constant uncertainty scores 0.10).
//!
//! **Genuinely novel** ([`SubsetNovelty`]): a subset counts only if the model that scored it
//! actually errs more on it: with e the per-atom force error |ΔF| of that model, mean(e over the
//! subset) / mean(e over the in-distribution test atoms) >= [`NOVEL_MIN_ERROR_RATIO`] (1.2) **and**
//! the fraction of subset atoms with e above the in-distribution 95th percentile (the smallest
//! test error with >= 95 % of test errors at or below it) is >= [`NOVEL_MIN_FRACTION_ABOVE_P95`]
//! (0.10, twice the in-distribution 0.05). Both are needed: the ratio alone can come from a few
//! extreme atoms, the tail fraction alone from a subset with a low mean. Subsets that fail are
//! flagged "not novel" and excluded from the `(novel)` means and the [`verdict`], since no
//! uncertainty can be blamed for not flagging frames the model predicts well. The rule is per
//! (data set, basis, subset): it depends on the fitted model. Caveat: the reference is the whole
//! in-distribution test, which for the Li sets is dominated by 600 K liquid atoms with larger
//! forces and errors than cold solids, so a held-out solid phase whose errors rose without
//! reaching the liquid's counts as not novel (the rule asks "is this subset predicted worse than
//! what the model was validated on", not "did holding it out hurt").
//!
//! **Verdict** per data set ([`verdict`]), over every (basis, genuinely novel subset) pair:
//! gamma_local's size-matched structure AUC >= gamma's − [`VERDICT_AUC_TOLERANCE`] (0.02) on
//! every pair and higher on average; and gamma_local's mean recall >= gamma's. The thresholds
//! were fixed before any run and are not tuned.

use super::{BenchError, mean};
use crate::basis::BasisConfig;
use crate::model::fit::{self, FitConfig};
use crate::potential::Potential;
use crate::stats::metrics::{
    CalibrationCurve, calibration_curve, pit_maxwell, recall_at_budget, roc_auc, spearman_or_nan,
    stratified_auc,
};
use crate::structure::Structure;
use crate::uq::{self, Method, Partition, UqConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
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
    /// Hold each `config_type` of `mixed` out in turn to score its novelty (or, with
    /// `holdout_group`, each group of config_types).
    #[serde(default)]
    pub holdout: bool,
    /// Groups of `config_type`s of `mixed` held out together, in turn (`[[dataset.holdout_group]]`
    /// with `name` and `types`); needs `holdout = true`. Empty: each config_type alone.
    #[serde(default)]
    pub holdout_group: Vec<HoldoutGroup>,
    /// Include this data set in the quick (CI) size.
    #[serde(default = "default_true")]
    pub in_quick: bool,
    /// At most this many held-out subsets in the quick size (default: `quick.max_holdouts`).
    #[serde(default)]
    pub quick_holdouts: Option<usize>,
    /// Names of the bases to fit on this data set (default: every `[[basis]]`), e.g. to leave
    /// out a basis with more functions than the data can determine.
    #[serde(default)]
    pub bases: Vec<String>,
    /// Names of the bases in the quick size (default: `quick.bases`).
    #[serde(default)]
    pub quick_bases: Vec<String>,
}

/// Config types of `mixed` held out of the training data together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldoutGroup {
    /// Label of the subset in tables.
    pub name: String,
    /// Its config_types.
    pub types: Vec<String>,
}

fn default_true() -> bool {
    true
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
    /// Methods to score (of gamma, gamma_local, ensemble, distance, gp, contact).
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
        self.fit
            .refuse_growth("aceuq uq-bench")
            .map_err(BenchError::Data)?;
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
            if !d.holdout_group.is_empty() && !d.holdout {
                return bad(format!(
                    "dataset '{}': holdout_group needs holdout = true",
                    d.name
                ));
            }
            if d.holdout_group.iter().any(|g| g.types.is_empty()) {
                return bad(format!(
                    "dataset '{}': every holdout_group needs at least one type",
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
        for d in &self.dataset {
            for n in d.bases.iter().chain(&d.quick_bases) {
                if !self.basis.iter().any(|b| &b.name == n) {
                    return bad(format!(
                        "dataset '{}': bases or quick_bases names an unknown basis '{n}'",
                        d.name
                    ));
                }
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
    /// ROC-AUC per novel subset (name, AUC) of the plain structure grade (max over atoms).
    pub auc: Vec<(String, f64)>,
    /// The novelty and error-ranking scores per subset (same order as `auc`).
    pub subsets: Vec<SubsetScores>,
}

/// Fraction of the highest-error atoms whose recall is scored ([`SubsetScores::recall`]).
pub const TOP_ERROR_FRACTION: f64 = 0.05;
/// Labelling budget (fraction of the pool) of [`SubsetScores::recall`].
pub const LABEL_BUDGET: f64 = 0.10;
/// Random same-size atom subsets drawn per in-distribution frame for the size-matched AUC.
pub const MATCHED_DRAWS: usize = 8;
/// A subset is genuinely novel if its mean per-atom force error is at least this many times the
/// in-distribution test atoms' ...
pub const NOVEL_MIN_ERROR_RATIO: f64 = 1.2;
/// ... and at least this fraction of its atoms exceed the in-distribution 95th percentile
/// (0.05 for in-distribution atoms by construction).
pub const NOVEL_MIN_FRACTION_ABOVE_P95: f64 = 0.10;
/// The verdict allows gamma_local this much below gamma's AUC on a single subset.
pub const VERDICT_AUC_TOLERANCE: f64 = 0.02;

/// Novelty detection and error ranking of one method on one novel or held-out subset, scored
/// against the in-distribution test frames of the same model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubsetScores {
    /// Subset name (`config_type`, or the held-out group).
    pub name: String,
    /// Structure ROC-AUC of the max-atom grade (biased by frame size, kept for comparison).
    pub auc_struct: f64,
    /// Structure ROC-AUC, size-matched: each novel frame's max-atom grade against the maxima of
    /// random same-size atom subsets of the in-distribution frames ([`size_matched_maxima`]).
    pub auc_struct_matched: f64,
    /// Atom ROC-AUC: novel atoms against in-distribution test atoms.
    pub auc_atom: f64,
    /// Spearman rho per atom, uncertainty vs force error, on the pool (test atoms + subset atoms).
    pub rho_pool: f64,
    /// Recall of the top-5 % error atoms of the pool when the 10 % most uncertain are labelled.
    pub recall: f64,
}

/// Whether a subset is genuinely novel for the model that scored it: its force errors must be
/// elevated relative to the in-distribution test atoms (rule in the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubsetNovelty {
    /// Subset name.
    pub name: String,
    /// Labelled frames.
    pub frames: usize,
    /// Labelled atoms.
    pub atoms: usize,
    /// Mean per-atom force error of the subset / that of the in-distribution test atoms.
    pub error_ratio: f64,
    /// Fraction of subset atoms whose error exceeds the in-distribution 95th percentile.
    pub frac_above_p95: f64,
    /// `error_ratio >= NOVEL_MIN_ERROR_RATIO && frac_above_p95 >= NOVEL_MIN_FRACTION_ABOVE_P95`.
    pub novel: bool,
}

impl SubsetNovelty {
    /// Apply the rule to per-atom force errors of the in-distribution test and of the subset.
    pub fn new(name: &str, frames: usize, test_err: &[f64], sub_err: &[f64]) -> SubsetNovelty {
        let p95 = quantile_upper(test_err, 0.95);
        let error_ratio = mean(sub_err) / mean(test_err);
        let frac_above_p95 = if sub_err.is_empty() {
            f64::NAN
        } else {
            sub_err.iter().filter(|&&e| e > p95).count() as f64 / sub_err.len() as f64
        };
        SubsetNovelty {
            name: name.to_string(),
            frames,
            atoms: sub_err.len(),
            error_ratio,
            frac_above_p95,
            novel: error_ratio >= NOVEL_MIN_ERROR_RATIO
                && frac_above_p95 >= NOVEL_MIN_FRACTION_ABOVE_P95,
        }
    }
}

/// The empirical q-quantile as the smallest value with at least a fraction q of the values at
/// or below it (NaN if empty).
pub fn quantile_upper(x: &[f64], q: f64) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let k = crate::stats::count_of_fraction(q, s.len());
    s[k - 1]
}

/// Size-matched in-distribution maxima for novel frames of `n` atoms: for each in-distribution
/// frame j, `draws` times the maximum of `n` atoms drawn without replacement from frame j
/// (extended by frames j+1, j+2, ... cyclically while it has fewer than `n` atoms; a single
/// maximum over everything when all frames together have at most `n`). With frames of exactly
/// `n` atoms each draw is the frame's own maximum.
pub fn size_matched_maxima(
    frames: &[Vec<f64>],
    n: usize,
    draws: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    use rand::RngExt;
    let total: usize = frames.iter().map(Vec::len).sum();
    let max_of = |v: &[f64]| v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if n == 0 || frames.is_empty() {
        return vec![];
    }
    if n >= total {
        return vec![max_of(&frames.concat())];
    }
    let mut out = Vec::with_capacity(frames.len() * draws);
    for j in 0..frames.len() {
        let mut pool: Vec<f64> = vec![];
        let mut k = j;
        while pool.len() < n {
            pool.extend_from_slice(&frames[k % frames.len()]);
            k += 1;
        }
        if pool.len() == n {
            out.extend(std::iter::repeat_n(max_of(&pool), draws));
            continue;
        }
        for _ in 0..draws {
            // Partial Fisher-Yates: the first n entries become a uniform random n-subset.
            for i in 0..n {
                let r = rng.random_range(i..pool.len());
                pool.swap(i, r);
            }
            out.push(max_of(&pool[..n]));
        }
    }
    out
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
    /// Force RMSE per component on the test frames (meV/Å, as the fit's metrics).
    pub rmse_test: f64,
    /// Per-method scores.
    pub methods: Vec<MethodScores>,
    /// Genuine novelty of each subset for this basis (same order as each method's `subsets`).
    pub subsets: Vec<SubsetNovelty>,
    /// Wall time (fits and scoring), seconds.
    pub seconds: f64,
}

impl CaseResult {
    /// Mean of `f` over the genuinely novel subsets of method `ms` (NaN if none).
    pub fn novel_mean(&self, ms: &MethodScores, f: impl Fn(&SubsetScores) -> f64) -> f64 {
        mean(
            &ms.subsets
                .iter()
                .zip(&self.subsets)
                .filter(|(_, n)| n.novel)
                .map(|(s, _)| f(s))
                .collect::<Vec<_>>(),
        )
    }
    /// Number of genuinely novel subsets.
    pub fn n_novel(&self) -> usize {
        self.subsets.iter().filter(|n| n.novel).count()
    }
}

/// Does clustered local D-optimality restore the novelty sensitivity that global D-optimality
/// loses? Judged per data set over every (basis, genuinely novel subset) pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Data set.
    pub dataset: String,
    /// (basis, subset) pairs judged (genuinely novel).
    pub n_pairs: usize,
    /// Pairs excluded as not novel.
    pub n_excluded: usize,
    /// Smallest gamma_local - gamma size-matched structure AUC over the pairs.
    pub worst_auc_diff: f64,
    /// Mean size-matched structure AUC of gamma_local and gamma.
    pub mean_auc: (f64, f64),
    /// Mean atom AUC of gamma_local and gamma (reported, not judged).
    pub mean_auc_atom: (f64, f64),
    /// Mean top-5 % recall at the 10 % budget of gamma_local and gamma.
    pub mean_recall: (f64, f64),
    /// gamma_local AUC >= gamma AUC - 0.02 on every pair and higher on average.
    pub auc_pass: bool,
    /// gamma_local mean recall >= gamma's.
    pub recall_pass: bool,
}

impl Verdict {
    /// One line for the summary.
    pub fn line(&self) -> String {
        if self.n_pairs == 0 {
            return format!(
                "**{}**: no verdict: no genuinely novel subset ({} excluded as not novel).",
                self.dataset, self.n_excluded
            );
        }
        let yes = |b: bool| if b { "yes" } else { "no" };
        let ceiling = if self.mean_auc.1 >= 0.99 {
            " (gamma is already at the AUC ceiling on these subsets: they cannot show a restored \
             sensitivity)"
        } else {
            ""
        };
        format!(
            "**{}** ({} basis × subset pairs genuinely novel, {} excluded): gamma_local \
             size-matched structure AUC >= gamma - {VERDICT_AUC_TOLERANCE} on every pair and \
             higher on average? **{}** (worst difference {:+.3}; mean {:.3} vs {:.3}){}. Top-5 % \
             recall at a 10 % budget >= gamma's? **{}** (mean {:.3} vs {:.3}). Atom AUC (not \
             judged): {:.3} vs {:.3}. Claim supported: **{}**.",
            self.dataset,
            self.n_pairs,
            self.n_excluded,
            yes(self.auc_pass),
            self.worst_auc_diff,
            self.mean_auc.0,
            self.mean_auc.1,
            ceiling,
            yes(self.recall_pass),
            self.mean_recall.0,
            self.mean_recall.1,
            self.mean_auc_atom.0,
            self.mean_auc_atom.1,
            yes(self.auc_pass && self.recall_pass)
        )
    }
}

/// The verdict on `dataset` from its results; None unless both gamma and gamma_local were scored.
pub fn verdict(results: &[CaseResult], dataset: &str) -> Option<Verdict> {
    let (mut d_auc, mut auc, mut atom, mut rec) =
        (vec![], (vec![], vec![]), (vec![], vec![]), (vec![], vec![]));
    let mut excluded = 0;
    let mut any = false;
    for r in results.iter().filter(|r| r.dataset == dataset) {
        let find = |m: Method| r.methods.iter().find(|x| x.method == m);
        let (Some(gl), Some(g)) = (find(Method::GammaLocal), find(Method::Gamma)) else {
            continue;
        };
        any = true;
        for (k, nov) in r.subsets.iter().enumerate() {
            if !nov.novel {
                excluded += 1;
                continue;
            }
            let (a, b) = (&gl.subsets[k], &g.subsets[k]);
            d_auc.push(a.auc_struct_matched - b.auc_struct_matched);
            auc.0.push(a.auc_struct_matched);
            auc.1.push(b.auc_struct_matched);
            atom.0.push(a.auc_atom);
            atom.1.push(b.auc_atom);
            rec.0.push(a.recall);
            rec.1.push(b.recall);
        }
    }
    if !any {
        return None;
    }
    let worst = d_auc.iter().cloned().fold(f64::INFINITY, f64::min);
    let mean_auc = (mean(&auc.0), mean(&auc.1));
    let mean_recall = (mean(&rec.0), mean(&rec.1));
    let n = d_auc.len();
    Some(Verdict {
        dataset: dataset.to_string(),
        n_pairs: n,
        n_excluded: excluded,
        worst_auc_diff: if n == 0 { f64::NAN } else { worst },
        mean_auc,
        mean_auc_atom: (mean(&atom.0), mean(&atom.1)),
        mean_recall,
        auc_pass: n > 0 && worst >= -VERDICT_AUC_TOLERANCE - 1e-12 && mean_auc.0 > mean_auc.1,
        recall_pass: n > 0 && mean_recall.0 >= mean_recall.1,
    })
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
        contact: cfg.methods.contains(&Method::Contact),
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

fn stats_err(what: String) -> impl FnOnce(crate::stats::StatsError) -> BenchError {
    move |source| BenchError::Stats {
        context: what,
        source,
    }
}

/// Score one model: Spearman and calibration on `test` (novelty is scored by [`subset_scores`]).
fn score(
    pot: &Potential,
    method: Method,
    valid: &[Structure],
    test: &[Structure],
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
    let rho_atom = spearman_or_nan(&t.e, &t.u);
    let rho_struct = spearman_or_nan(&t.se, &t.su);
    Ok(MethodScores {
        method,
        rho_atom,
        rho_struct,
        area: curve.area,
        signed,
        scale,
        curve,
        auc: vec![],
        subsets: vec![],
    })
}

/// Per-atom uncertainties and force errors of labelled frames (unlabelled frames dropped).
struct Atoms {
    u: Vec<Vec<f64>>,
    e: Vec<Vec<f64>>,
}

fn atoms_of(
    pot: &Potential,
    frames: &[Structure],
    err: &[Vec<f64>],
    method: Method,
    what: &str,
) -> Result<Atoms, BenchError> {
    let u = pot
        .per_atom(frames, method)
        .map_err(|source| BenchError::Uq {
            context: format!("{what}: {}", method.name()),
            source,
        })?;
    let (mut a, mut b) = (vec![], vec![]);
    for (u, e) in u.into_iter().zip(err) {
        if !e.is_empty() {
            a.push(u);
            b.push(e.clone());
        }
    }
    Ok(Atoms { u: a, e: b })
}

/// Novelty and error-ranking scores of `method` on one subset against the in-distribution test
/// frames (`test_err`, `sub_err`: per-atom force errors of the same model). The random atom
/// subsets of the size-matched AUC come from `seed` alone, so every method sees the same ones.
#[allow(clippy::too_many_arguments)]
fn subset_scores(
    pot: &Potential,
    method: Method,
    t: &Atoms,
    name: &str,
    frames: &[Structure],
    sub_err: &[Vec<f64>],
    seed: u64,
    what: &str,
) -> Result<SubsetScores, BenchError> {
    let ctx = |s: &str| format!("{what}, {}, {name}: {s}", method.name());
    let n = atoms_of(pot, frames, sub_err, method, what)?;
    let max_of = |v: &Vec<f64>| v.iter().cloned().fold(0.0, f64::max);
    let (g_in, g_out): (Vec<f64>, Vec<f64>) = (
        t.u.iter().map(max_of).collect(),
        n.u.iter().map(max_of).collect(),
    );
    let labels = |a: usize, b: usize| -> Vec<bool> {
        std::iter::repeat_n(false, a)
            .chain(std::iter::repeat_n(true, b))
            .collect()
    };
    let auc_struct = roc_auc(
        &[g_in.clone(), g_out.clone()].concat(),
        &labels(g_in.len(), g_out.len()),
    )
    .map_err(stats_err(ctx("structure ROC-AUC")))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cache: Vec<(usize, Vec<f64>)> = vec![];
    let mut negatives = vec![];
    for u in &n.u {
        let size = u.len();
        if !cache.iter().any(|(k, _)| *k == size) {
            let m = size_matched_maxima(&t.u, size, MATCHED_DRAWS, &mut rng);
            cache.push((size, m));
        }
        negatives.push(cache.iter().find(|(k, _)| *k == size).unwrap().1.clone());
    }
    let auc_struct_matched =
        stratified_auc(&g_out, &negatives).map_err(stats_err(ctx("size-matched ROC-AUC")))?;
    let (u_in, u_out) = (t.u.concat(), n.u.concat());
    let auc_atom = roc_auc(
        &[u_in.clone(), u_out.clone()].concat(),
        &labels(u_in.len(), u_out.len()),
    )
    .map_err(stats_err(ctx("atom ROC-AUC")))?;
    let pool_u = [u_in, u_out].concat();
    let pool_e = [t.e.concat(), n.e.concat()].concat();
    let rho_pool = spearman_or_nan(&pool_e, &pool_u);
    let recall = recall_at_budget(&pool_e, &pool_u, TOP_ERROR_FRACTION, LABEL_BUDGET)
        .map_err(stats_err(ctx("recall at budget")))?;
    Ok(SubsetScores {
        name: name.to_string(),
        auc_struct,
        auc_struct_matched,
        auc_atom,
        rho_pool,
        recall,
    })
}

fn force_errors(
    pot: &Potential,
    data: &[Structure],
    what: &str,
) -> Result<Vec<Vec<f64>>, BenchError> {
    uq::force_errors(&pot.model, data).map_err(|source| BenchError::Model {
        context: format!("{what}: force errors"),
        source,
    })
}

/// The in-distribution side of every subset score: per method, the test atoms' uncertainties
/// and errors.
struct InDist<'a> {
    test_err: &'a [Vec<f64>],
    atoms: Vec<Atoms>,
}

fn in_dist<'a>(
    pot: &Potential,
    methods: &[MethodScores],
    test: &[Structure],
    test_err: &'a [Vec<f64>],
    what: &str,
) -> Result<InDist<'a>, BenchError> {
    let atoms = methods
        .iter()
        .map(|m| atoms_of(pot, test, test_err, m.method, what))
        .collect::<Result<_, _>>()?;
    Ok(InDist { test_err, atoms })
}

/// Score every method of `pot` on one subset; returns the subset's novelty and pushes each
/// method's scores.
fn score_subset(
    pot: &Potential,
    methods: &mut [MethodScores],
    ind: &InDist,
    name: &str,
    frames: &[Structure],
    seed: u64,
    what: &str,
) -> Result<SubsetNovelty, BenchError> {
    let test_err = ind.test_err;
    let sub_err = force_errors(pot, frames, what)?;
    let labelled = sub_err.iter().filter(|e| !e.is_empty()).count();
    if labelled == 0 || test_err.iter().all(Vec::is_empty) {
        return Err(BenchError::Data(format!(
            "{what}: subset '{name}' and the test frames need reference forces"
        )));
    }
    let nov = SubsetNovelty::new(name, labelled, &test_err.concat(), &sub_err.concat());
    for (ms, t) in methods.iter_mut().zip(&ind.atoms) {
        let sc = subset_scores(pot, ms.method, t, name, frames, &sub_err, seed, what)?;
        ms.auc.push((name.to_string(), sc.auc_struct));
        ms.subsets.push(sc);
    }
    Ok(nov)
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
    let errs = force_errors(&pot, &data.test, &format!("{what}: test"))?;
    let mut methods = vec![];
    for &meth in &cfg.methods {
        methods.push(score(&pot, meth, &data.valid, &data.test, &what)?);
    }
    let seed = cfg.seed.wrapping_add(0x5eed);
    let mut subsets = vec![];
    if !data.novel.is_empty() {
        let ind = in_dist(&pot, &methods, &data.test, &errs, &what)?;
        for (name, frames) in &data.novel {
            subsets.push(score_subset(
                &pot,
                &mut methods,
                &ind,
                name,
                frames,
                seed,
                &what,
            )?);
        }
    }
    for (name, frames) in &data.holdout {
        on_step(&format!("{what}: fit without '{name}'"));
        // Every config_type of the held-out frames leaves the training, validation and test data.
        let types: Vec<Option<&str>> = frames.iter().map(|f| f.config_type.as_deref()).collect();
        let keep = |v: &[Structure]| -> Vec<Structure> {
            v.iter()
                .filter(|s| !types.contains(&s.config_type.as_deref()))
                .cloned()
                .collect()
        };
        let (tr, va, te) = (keep(&data.train), keep(&data.valid), keep(&data.test));
        let w = format!("{what} without '{name}'");
        let hm = fit_with_uq(&data.species, &b, cfg, members, &tr, &va, &w)?;
        let te_err = force_errors(&hm, &te, &format!("{w}: test"))?;
        let ind = in_dist(&hm, &methods, &te, &te_err, &w)?;
        subsets.push(score_subset(
            &hm,
            &mut methods,
            &ind,
            name,
            frames,
            seed,
            &w,
        )?);
    }
    Ok(CaseResult {
        dataset: data.name.clone(),
        basis: basis.name.clone(),
        nfuncs: pot.model.nfuncs(0),
        n_train: data.train.len(),
        mae_test: mean(&errs.concat()),
        rmse_test: m.force_rmse,
        methods,
        subsets,
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

    #[test]
    fn bench_size_matched_maxima() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let frames = vec![vec![1.0, 5.0, 2.0], vec![4.0, 3.0, 0.5]];
        // Same size as the frames: each draw is the frame's maximum.
        assert_eq!(
            size_matched_maxima(&frames, 3, 2, &mut rng),
            vec![5.0, 5.0, 4.0, 4.0]
        );
        // Larger than one frame: 4 of the six atoms of frame j and the next (cyclically). The
        // max is at least the 4th smallest value (3) and is 5 with probability 4/6.
        let m = size_matched_maxima(&frames, 4, 500, &mut rng);
        assert_eq!(m.len(), 1000);
        assert!(m.iter().all(|&v| v == 3.0 || v == 4.0 || v == 5.0));
        let p5 = m.iter().filter(|&&v| v == 5.0).count() as f64 / 1000.0;
        assert!((p5 - 2.0 / 3.0).abs() < 0.06, "{p5}");
        // All atoms or more: one maximum over everything.
        assert_eq!(size_matched_maxima(&frames, 6, 3, &mut rng), vec![5.0]);
        // One atom: a uniform draw from the frame, mean over many draws ~ the frame mean.
        let m = size_matched_maxima(&frames[..1], 1, 30_000, &mut rng);
        let avg = mean(&m);
        assert!((avg - 8.0 / 3.0).abs() < 0.05, "{avg}");
    }

    #[test]
    fn bench_size_matched_auc_removes_size_bias() {
        // Every atom from the same distribution: in-distribution frames of 250 atoms, "novel"
        // frames of 20. The plain max-atom AUC calls the small frames in-distribution (AUC far
        // below 0.5); the size-matched AUC is 0.5 within noise.
        use rand::RngExt;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut frame = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random::<f64>()).collect() };
        let big: Vec<Vec<f64>> = (0..30).map(|_| frame(250)).collect();
        let small: Vec<Vec<f64>> = (0..30).map(|_| frame(20)).collect();
        let mx = |v: &Vec<f64>| v.iter().cloned().fold(0.0, f64::max);
        let g_in: Vec<f64> = big.iter().map(mx).collect();
        let g_out: Vec<f64> = small.iter().map(mx).collect();
        let labels: Vec<bool> = (0..60).map(|i| i >= 30).collect();
        let plain = roc_auc(&[g_in, g_out.clone()].concat(), &labels).unwrap();
        assert!(plain < 0.2, "plain {plain}");
        let mut r2 = ChaCha8Rng::seed_from_u64(6);
        let neg = size_matched_maxima(&big, 20, MATCHED_DRAWS, &mut r2);
        let matched = stratified_auc(&g_out, &vec![neg; 30]).unwrap();
        assert!((matched - 0.5).abs() < 0.12, "matched {matched}");
        // A genuinely shifted subset is still detected.
        let shifted: Vec<f64> = g_out.iter().map(|v| v + 0.2).collect();
        let neg = size_matched_maxima(&big, 20, MATCHED_DRAWS, &mut r2);
        assert!(stratified_auc(&shifted, &vec![neg; 30]).unwrap() > 0.9);
    }

    #[test]
    fn bench_genuine_novelty_rule() {
        // In-distribution errors 1..=100: mean 50.5, 95th percentile 95.
        let test: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile_upper(&test, 0.95), 95.0);
        assert_eq!(quantile_upper(&[3.0, 1.0, 2.0], 0.5), 2.0);
        // The in-distribution data itself: ratio 1, 5 % above: not novel.
        let n = SubsetNovelty::new("same", 1, &test, &test);
        assert_eq!(
            (n.error_ratio, n.frac_above_p95, n.novel),
            (1.0, 0.05, false)
        );
        // Mean doubled but nothing above the 95th percentile: not novel.
        let n = SubsetNovelty::new("mid", 1, &test, &[90.0, 95.0, 95.0, 80.0]);
        assert!(n.error_ratio > 1.2 && n.frac_above_p95 == 0.0 && !n.novel);
        // Ratio 2 and half the atoms above 95: novel.
        let n = SubsetNovelty::new("hot", 2, &test, &[5.0, 96.0, 150.0, 53.0]);
        assert!((n.error_ratio - 304.0 / 4.0 / 50.5).abs() < 1e-12);
        assert_eq!(n.frac_above_p95, 0.5);
        assert!(n.novel);
        // Many atoms above the 95th percentile but a low mean: not novel.
        let n = SubsetNovelty::new("tail", 1, &test, &[96.0, 1.0, 1.0, 1.0, 1.0]);
        assert!(n.frac_above_p95 == 0.2 && n.error_ratio < 1.2 && !n.novel);
    }

    fn scores(method: Method, auc: &[f64], recall: &[f64]) -> MethodScores {
        MethodScores {
            method,
            rho_atom: 0.0,
            rho_struct: 0.0,
            area: 0.0,
            signed: 0.0,
            scale: 1.0,
            curve: CalibrationCurve {
                expected: vec![],
                observed: vec![],
                area: 0.0,
            },
            auc: vec![],
            subsets: auc
                .iter()
                .zip(recall)
                .enumerate()
                .map(|(k, (&a, &r))| SubsetScores {
                    name: format!("s{k}"),
                    auc_struct: a,
                    auc_struct_matched: a,
                    auc_atom: a,
                    rho_pool: 0.0,
                    recall: r,
                })
                .collect(),
        }
    }

    fn case(gl: &[f64], g: &[f64], rec: (&[f64], &[f64]), novel: &[bool]) -> CaseResult {
        CaseResult {
            dataset: "d".into(),
            basis: "b".into(),
            nfuncs: 1,
            n_train: 1,
            mae_test: 0.0,
            rmse_test: 0.0,
            methods: vec![
                scores(Method::Gamma, g, rec.1),
                scores(Method::GammaLocal, gl, rec.0),
            ],
            subsets: novel
                .iter()
                .enumerate()
                .map(|(k, &nv)| SubsetNovelty {
                    name: format!("s{k}"),
                    frames: 1,
                    atoms: 1,
                    error_ratio: 2.0,
                    frac_above_p95: 0.5,
                    novel: nv,
                })
                .collect(),
            seconds: 0.0,
        }
    }

    #[test]
    fn bench_verdict_rules() {
        // gamma_local within 0.02 on s0, better on s1, higher on average; the excluded subset
        // s2 (far worse) does not count.
        let r = case(
            &[0.79, 0.9, 0.1],
            &[0.8, 0.7, 0.9],
            (&[0.5, 0.5, 0.0], &[0.4, 0.5, 1.0]),
            &[true, true, false],
        );
        let v = verdict(std::slice::from_ref(&r), "d").unwrap();
        assert_eq!((v.n_pairs, v.n_excluded), (2, 1));
        assert!((v.worst_auc_diff + 0.01).abs() < 1e-12);
        assert!(v.auc_pass && v.recall_pass, "{v:?}");
        assert!(v.line().contains("Claim supported: **yes**"));
        assert!((r.novel_mean(&r.methods[1], |s| s.recall) - 0.5).abs() < 1e-12);
        // 0.03 below gamma on one subset fails, even with a higher mean.
        let r = case(
            &[0.77, 0.99],
            &[0.8, 0.7],
            (&[0.5, 0.5], &[0.5, 0.5]),
            &[true, true],
        );
        let v = verdict(&[r], "d").unwrap();
        assert!(!v.auc_pass && v.recall_pass);
        // Lower recall fails the second criterion.
        let r = case(&[0.9], &[0.8], (&[0.2], &[0.3]), &[true]);
        let v = verdict(&[r], "d").unwrap();
        assert!(v.auc_pass && !v.recall_pass);
        assert!(v.line().contains("Claim supported: **no**"));
        // Nothing novel: no verdict; unknown data set: None.
        let r = case(&[0.9], &[0.8], (&[0.2], &[0.3]), &[false]);
        let v = verdict(std::slice::from_ref(&r), "d").unwrap();
        assert!(!v.auc_pass && v.line().contains("no verdict"));
        assert!(verdict(&[r], "other").is_none());
    }
}
