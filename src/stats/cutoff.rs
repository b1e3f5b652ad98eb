//! Statistical cutoffs of Annevelink & Viswanathan and the per-(species, method) calibration record.
//!
//! - Lower cutoff: x_c with CDF(x_c) = 1 - 1/N, N the number of samples the cutoff will be
//!   applied to (atoms of the sampling set, per species); computed as `isf(1/N)` so that
//!   N = 1e7 and beyond keep full precision. Same rule for errors (e_c) and uncertainties (u_c).
//!   The quantile comes from the body family or, when the body's tail is rejected, from a
//!   generalized Pareto tail over a high threshold ([`super::tail`]); the chosen model and its
//!   checks are stored.
//! - Upper (stability) cutoff, two rules ([`UpperRule`]): `conditional` (default) fits
//!   e | u ~ Maxwell(s(u)) and halts where P(e > e_max | u) reaches p_halt ([`super::upper`]);
//!   a method that cannot reach e_max gets none (u_max = +inf, with the reason). `ratio` (the
//!   seeds' mapping, kept for comparison): ratio = max(1, (e_max - mean_e) / (e_c - mean_e)) and
//!   u_max = mean_u + ratio (u_c - mean_u). e_max ~ 1 eV/Å by default.
//! - Sanity gates: a lower cutoff more than [`MAX_CUTOFF_OVER_SEEN`] times the largest value
//!   seen is refused (the other rule is tried; if it fails too, an error names the cause and the
//!   fix); a fit with no acceptable model, few atoms or an extrapolated upper cutoff is stored
//!   with a warning ([`Calibration::warnings`]) that `aceuq calibrate`, `aceuq info` and the fix
//!   print.
//! - Between u_c and u_max an atom is "uncertain, worth labelling" (dump); above u_max the run is
//!   "unstable" (halt).
//! - Per cluster ([`calibrate_clusters`]): the same fits and cutoffs on the atoms of each cluster of
//!   a species (the clusters of clustered local D-optimality), N split over the clusters in
//!   proportion to their atoms; a cluster with fewer than [`MIN_CLUSTER_ATOMS`] atoms, or whose
//!   fit fails, keeps the species-level cutoffs.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::dist::{ContinuousDistribution, Family};
use super::family_choice::{DEFAULT_ALPHA, ModelChoice, choose_model_from};
use super::tail::{CutoffFit, CutoffRule, TailPolicy, fit_cutoff};
use super::upper::{ConditionalUpper, DEFAULT_P_HALT, conditional_upper};

/// Default stability limit of the force error, eV/Å (Annevelink & Viswanathan).
pub const DEFAULT_E_MAX: f64 = 1.0;

/// The x with CDF(x) = 1 - 1/n: the largest value expected once among n samples.
///
/// Errors if n < 2 (the cutoff would be the bottom of the support) or if the quantile is not
/// finite.
pub fn cutoff_for_n<D: ContinuousDistribution + ?Sized>(
    dist: &D,
    n: u64,
) -> Result<f64, StatsError> {
    if n < 2 {
        return Err(StatsError::InvalidParameter {
            name: "N (samples the cutoff applies to)",
            value: n as f64,
        });
    }
    let x = dist.isf(1.0 / n as f64);
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(StatsError::Degenerate {
            what: "cutoff",
            reason: format!("the 1 - 1/{n} quantile is {x}; the fitted distribution is unusable"),
        })
    }
}

/// The stability ratio and upper cutoff of docs/methods.md §4.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpperCutoff {
    /// max(1, (e_max - mean_e) / (e_c - mean_e)); 1 when e_c <= mean_e (no meaningful scale).
    pub ratio: f64,
    /// mean_u + ratio (u_c - mean_u).
    pub u_max: f64,
}

/// How a ratio-rule warning about a cutoff beyond the data begins.
pub(crate) const RATIO_EXTRAPOLATED: &str = "upper cutoff extrapolated: the ratio rule";

/// How the warning about a lower cutoff above a saturating method's far-field value begins.
pub(crate) const LOWER_ABOVE_PLATEAU: &str = "lower cutoff unreachable far from the data: u_c";

/// Maps the error stability limit `e_max` onto the uncertainty scale (docs/methods.md §4, ratio rule).
///
/// If e_c <= mean_e the ratio is undefined; it is then taken as 1 (u_max = u_c), the same
/// value the max(1, .) clamp gives whenever e_max is not beyond e_c.
pub fn upper_cutoff(e_max: f64, mean_e: f64, e_c: f64, mean_u: f64, u_c: f64) -> UpperCutoff {
    let denom = e_c - mean_e;
    let raw = if denom > 0.0 {
        (e_max - mean_e) / denom
    } else {
        1.0
    };
    let ratio = if raw.is_finite() { raw.max(1.0) } else { 1.0 };
    // Never below the lower cutoff (u_c below the mean with a small N would map below it).
    UpperCutoff {
        ratio,
        u_max: (mean_u + ratio * (u_c - mean_u)).max(u_c),
    }
}

/// Where an uncertainty value falls relative to the two cutoffs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    /// u <= u_c: trusted.
    Trusted,
    /// u_c < u <= u_max: uncertain, worth labelling (dump).
    Uncertain,
    /// u > u_max: the dynamics is likely unphysical (halt).
    Unstable,
}

/// Options of [`calibrate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationOptions {
    /// N: number of samples (atoms of this species in the sampling set) the cutoffs apply to.
    pub n_apply: u64,
    /// Stability limit of the force error, eV/Å.
    pub e_max: f64,
    /// Families tried for the errors; docs/methods.md §3: force errors of a well-trained model are Maxwell.
    pub error_families: Vec<Family>,
    /// Families tried for the uncertainties, in order (docs/methods.md §3: Maxwell, Gamma, generalized Gamma).
    pub uncertainty_families: Vec<Family>,
    /// KS level of the model choice.
    pub alpha: f64,
    /// Which model gives the 1 - 1/N quantiles.
    #[serde(default)]
    pub tail: TailPolicy,
    /// How the upper cutoff is derived.
    #[serde(default)]
    pub upper_rule: UpperRule,
    /// Conditional rule: halt where P(e > e_max | u) reaches this.
    #[serde(default = "default_p_halt")]
    pub p_halt: f64,
    /// The method's far-field value, if it saturates (the sparse GP's plateau): no upper cutoff
    /// beyond it and beyond the largest value in the data.
    #[serde(default)]
    pub u_sup: Option<f64>,
}

fn default_p_halt() -> f64 {
    DEFAULT_P_HALT
}

/// A lower cutoff above this many times the largest value seen is refused: the 1 - 1/N
/// extrapolation has left the data (MEAM Al–Mg: gamma cutoffs of 95 215 and 834 881 for values
/// that never exceed 46).
pub const MAX_CUTOFF_OVER_SEEN: f64 = 10.0;
/// Fewer validation atoms than this give a warning (the tail is poorly determined).
pub const FEW_ATOMS: usize = 200;

/// How the upper (stability) cutoff is derived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpperRule {
    /// The seeds' linear mapping of e_max onto the uncertainty scale (what model files written
    /// before the conditional rule hold).
    #[default]
    Ratio,
    /// e | u ~ Maxwell(s(u)); u_max where P(e > e_max | u) = p_halt.
    Conditional,
}

impl std::str::FromStr for UpperRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ratio" => Ok(UpperRule::Ratio),
            "conditional" => Ok(UpperRule::Conditional),
            _ => Err(format!("unknown upper rule '{s}' (conditional or ratio)")),
        }
    }
}

impl UpperRule {
    /// Name as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            UpperRule::Ratio => "ratio",
            UpperRule::Conditional => "conditional",
        }
    }
}

impl CalibrationOptions {
    /// Defaults for a given N: e_max = 1 eV/Å, Maxwell body for the errors, all three families
    /// for the uncertainty (Annevelink & Viswanathan), alpha = 0.05, a GPD tail where the body's
    /// is rejected, the conditional upper rule with p_halt = 0.5.
    pub fn new(n_apply: u64) -> Self {
        Self {
            n_apply,
            e_max: DEFAULT_E_MAX,
            error_families: vec![Family::Maxwell],
            uncertainty_families: Family::ALL.to_vec(),
            alpha: DEFAULT_ALPHA,
            tail: TailPolicy::Auto,
            upper_rule: UpperRule::Conditional,
            p_halt: DEFAULT_P_HALT,
            u_sup: None,
        }
    }
}

/// Calibration result for one (species, uncertainty method), or for one cluster of a species
/// (`gamma_local`, [`Calibration::cluster`]): the fitted distributions, their goodness of fit and
/// the cutoffs. Stored in the model file (serde) and printed as a table.
///
/// Units: errors and e_* in eV/Å; uncertainties and u_* in the method's own units (eV/Å for
/// ensembles, dimensionless for the extrapolation grade).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Chemical species (element symbol).
    pub species: String,
    /// Uncertainty method (e.g. "gamma", "gamma_local", "ensemble", "distance", "gp").
    pub method: String,
    /// For per-cluster cutoffs (`gamma_local` only): the index of the cluster among the species'
    /// clusters, the calibration fitted on the validation atoms the estimator assigned to it.
    /// `None` (the default, and what model files written before per-cluster cutoffs hold) is the
    /// species-level entry, which every method has and clusters without their own entry fall
    /// back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<usize>,
    /// Number of (error, uncertainty) pairs the fits used.
    pub n_fit: usize,
    /// N the cutoffs are computed for.
    pub n_apply: u64,
    /// Model choice for the force errors.
    pub error: ModelChoice,
    /// Model choice for the uncertainties.
    pub uncertainty: ModelChoice,
    /// Mean of the chosen error distribution (sample mean if infinite), eV/Å.
    pub mean_e: f64,
    /// Mean of the chosen uncertainty distribution (sample mean if infinite).
    pub mean_u: f64,
    /// Error cutoff e_c (1 - 1/N quantile), eV/Å.
    pub e_c: f64,
    /// Uncertainty cutoff u_c (1 - 1/N quantile).
    pub u_c: f64,
    /// Error stability limit e_max, eV/Å.
    pub e_max: f64,
    /// Stability ratio max(1, (e_max - mean_e)/(e_c - mean_e)).
    pub ratio: f64,
    /// Upper (stability) uncertainty cutoff; +inf: none (the method cannot reach e_max, see
    /// [`Calibration::conditional`]).
    pub u_max: f64,
    /// The model behind e_c (absent in files written before tail-aware cutoffs: body quantile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_fit: Option<CutoffFit>,
    /// The model behind u_c.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_fit: Option<CutoffFit>,
    /// How u_max was derived.
    #[serde(default)]
    pub upper_rule: UpperRule,
    /// The conditional fit behind u_max (rule `conditional`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditional: Option<ConditionalUpper>,
    /// Caveats found by the sanity gates (printed by `aceuq calibrate`, `aceuq info`, the fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the cutoffs were derived from (command, data, date), set by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

fn mean_of(choice: &ModelChoice, x: &[f64]) -> f64 {
    let m = choice.dist().mean();
    if m.is_finite() {
        m
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

/// Fits errors and uncertainties and computes all cutoffs for one (species, method).
///
/// `errors` and `uncertainties` are per-atom values on validation data (same length, paired).
/// Errors name the offending input and index.
pub fn calibrate(
    species: &str,
    method: &str,
    errors: &[f64],
    uncertainties: &[f64],
    opts: &CalibrationOptions,
) -> Result<Calibration, StatsError> {
    calibrate_with_high(species, method, errors, uncertainties, &[], &[], opts)
}

/// A usable cutoff: finite, positive, and not more than [`MAX_CUTOFF_OVER_SEEN`] times the
/// largest value seen.
fn within_gate(c: f64, max_seen: f64) -> bool {
    c.is_finite() && c > 0.0 && c <= MAX_CUTOFF_OVER_SEEN * max_seen
}

/// The 1 - 1/N cutoff of a sample under `fit`, with the gate against cutoffs far beyond the
/// data: if the chosen rule's cutoff is more than [`MAX_CUTOFF_OVER_SEEN`] times the largest
/// value, the other rule is tried (and a warning says so); if neither is within, an error.
fn gated_cutoff(
    what: &str,
    body: &ModelChoice,
    mut fit: CutoffFit,
    n: u64,
    warnings: &mut Vec<String>,
) -> Result<(f64, CutoffFit), StatsError> {
    if n < 2 {
        return Err(StatsError::InvalidParameter {
            name: "N (samples the cutoff applies to)",
            value: n as f64,
        });
    }
    let q = 1.0 / n as f64;
    let ok = |c: f64| within_gate(c, fit.max_seen);
    let c = fit.isf(body, q);
    if ok(c) {
        return Ok((c, fit));
    }
    let other = match fit.rule {
        CutoffRule::Body if fit.tail.is_some() => Some(CutoffRule::Tail),
        CutoffRule::Tail => Some(CutoffRule::Body),
        _ => None,
    };
    if let Some(rule) = other {
        let first = fit.rule;
        fit.rule = rule;
        let c2 = fit.isf(body, q);
        if ok(c2) {
            // The fallback's own check decides whether it is acceptable.
            fit.passed = match rule {
                CutoffRule::Tail => fit.tail.as_ref().is_some_and(|t| t.passed(body.alpha)),
                CutoffRule::Body => body.passed() && fit.body_ad.p_value > body.alpha,
            };
            warnings.push(format!(
                "{what}: the {first:?} model's quantile 1 - 1/{n} is {c:.4e}, more than {MAX_CUTOFF_OVER_SEEN}x the largest value seen ({:.4e}); the {rule:?} model's {c2:.4e} is used instead",
                fit.max_seen
            ));
            fit.note = format!(
                "{} model: the {} cutoff {c:.4e} was refused as far beyond the data",
                match rule {
                    CutoffRule::Tail => "gpd tail",
                    CutoffRule::Body => "body family",
                },
                match first {
                    CutoffRule::Tail => "gpd tail",
                    CutoffRule::Body => "body family",
                }
            );
            return Ok((c2, fit));
        }
    }
    Err(StatsError::Degenerate {
        what: "cutoff",
        reason: format!(
            "{what}: the 1 - 1/{n} quantile is {c:.4e}, more than {MAX_CUTOFF_OVER_SEEN}x the largest of the {} values seen ({:.4e}); the fitted tail is too heavy to extrapolate that far. Calibrate on more validation atoms, apply the cutoffs to fewer atoms (a smaller --pool-size), or give the fix explicit cutoffs (lower X upper Y)",
            fit.n, fit.max_seen
        ),
    })
}

/// P(X >= k) for X ~ Poisson(lambda): the regularized lower incomplete gamma P(k, lambda) for
/// k >= 1 (its series keeps tiny tail probabilities accurate).
pub fn poisson_sf(k: usize, lambda: f64) -> f64 {
    if k == 0 {
        1.0
    } else {
        super::special::gamma_p(k as f64, lambda)
    }
}

/// How far a count of exceedances on new data may stray from its expectation by the
/// calibration's sampling alone: the probabilities of a count at least and at most as far out
/// as the one observed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// P(X >= observed): small when new data exceed the cutoff more often than a cutoff fitted
    /// on this few calibration values would by chance.
    pub at_least: f64,
    /// P(X <= observed): small when they exceed it less often (1 when no calibration value lies
    /// above the cutoff: then nothing bounds the rate from below).
    pub at_most: f64,
}

impl Spread {
    /// The tail probability on the side the observation lies (at least: more than the mean).
    pub fn p(&self) -> f64 {
        self.at_least.min(self.at_most)
    }
}

/// The exceedance count to expect on `atoms` new values, drawn like the `n` calibration values
/// a cutoff was fitted on (exchangeable), when `m` of those lie above it: the probability mass
/// above the (n - m)-th smallest of n values is Beta(m + 1, n - m) distributed whatever the
/// distribution, and above the (n - m + 1)-th Beta(m, n - m + 1); the cutoff lies between the
/// two, so the count X on new data lies between BetaBinomial(atoms, m, n - m + 1) and
/// BetaBinomial(atoms, m + 1, n - m) in distribution. Returns P(X >= observed) under the
/// larger and P(X <= observed) under the smaller: a count improbable under both is not the
/// calibration's sampling spread, so the new data are not drawn like the calibration data. With
/// n near N the spread is wide: a cutoff with one calibration value above it leaves 4 or more
/// exceedances at about 1 expected with probability near 0.2. Approximations: m is treated as
/// fixed (it comes from the same sample as the cutoff), and the values as exchangeable one by
/// one, while atoms of one frame or run are correlated, which widens the real spread: a count
/// from one run can look more improbable than it is.
/// `None` when m > n or n = 0.
pub fn predictive_exceedances(n: usize, m: usize, atoms: usize, observed: usize) -> Option<Spread> {
    if n == 0 || m > n {
        return None;
    }
    let at_least = if observed == 0 || m == n {
        // m = n: every calibration value lies above the cutoff; nothing bounds the count.
        1.0
    } else {
        beta_binomial_sf(atoms, (m + 1) as f64, (n - m) as f64, observed)
    };
    let at_most = if m == 0 {
        1.0
    } else {
        beta_binomial_cdf(atoms, m as f64, (n - m + 1) as f64, observed)
    };
    Some(Spread { at_least, at_most })
}

/// ln P(X = j) for X ~ BetaBinomial(trials, a, b).
fn beta_binomial_ln_pmf(trials: usize, a: f64, b: f64, j: usize) -> f64 {
    use super::special::ln_gamma;
    let (nn, jf) = (trials as f64, j as f64);
    let ln_beta = |x: f64, y: f64| ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y);
    ln_gamma(nn + 1.0) - ln_gamma(jf + 1.0) - ln_gamma(nn - jf + 1.0) + ln_beta(jf + a, nn - jf + b)
        - ln_beta(a, b)
}

/// P(X >= k) for X ~ BetaBinomial(trials, a, b) (a, b >= 1). The tail on the far side of the
/// mean is summed term by term from its largest term, by the ratio of successive terms, so tiny
/// tails stay accurate and no term underflows to zero before the bulk.
fn beta_binomial_sf(trials: usize, a: f64, b: f64, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > trials {
        return 0.0;
    }
    let mean = trials as f64 * a / (a + b);
    if (k as f64) <= mean {
        return (1.0 - beta_binomial_cdf(trials, a, b, k - 1)).clamp(0.0, 1.0);
    }
    let nn = trials as f64;
    let mut term = beta_binomial_ln_pmf(trials, a, b, k).exp();
    let mut sum = 0.0;
    for j in k..=trials {
        sum += term;
        if term <= 1e-17 * sum || j == trials {
            break;
        }
        let jf = j as f64;
        term *= (nn - jf) * (jf + a) / ((jf + 1.0) * (nn - jf - 1.0 + b));
    }
    sum.min(1.0)
}

/// P(X <= k) for X ~ BetaBinomial(trials, a, b) (a, b >= 1): below the mean summed downwards
/// from k (its largest term), above it 1 - P(X >= k + 1).
fn beta_binomial_cdf(trials: usize, a: f64, b: f64, k: usize) -> f64 {
    if k >= trials {
        return 1.0;
    }
    let mean = trials as f64 * a / (a + b);
    if (k as f64) > mean {
        return (1.0 - beta_binomial_sf(trials, a, b, k + 1)).clamp(0.0, 1.0);
    }
    let nn = trials as f64;
    let mut term = beta_binomial_ln_pmf(trials, a, b, k).exp();
    let mut sum = 0.0;
    for j in (0..=k).rev() {
        sum += term;
        if term <= 1e-17 * sum || j == 0 {
            break;
        }
        let jf = j as f64;
        term *= jf * (nn - jf + b) / ((nn - jf + 1.0) * (jf - 1.0 + a));
    }
    sum.min(1.0)
}

/// The words that mark the warning of [`own_exceedances`] (callers pick it out of a
/// calibration's warnings).
pub const OWN_EXCEEDANCES: &str = "calibration values lie above their own cutoff";

/// A warning when more of the calibration values `x` lie above their own 1 - 1/N cutoff `c`
/// than N allows: about n / N are expected, and a count whose Poisson probability is below
/// `alpha` says the fitted tail is lighter than the data's, so new data will exceed `c` more
/// often than 1 in N.
fn own_exceedances(what: &str, x: &[f64], c: f64, n_apply: u64, alpha: f64) -> Option<String> {
    let (k, p) = own_count(x, c, n_apply);
    let lambda = x.len() as f64 / n_apply as f64;
    (k > 0 && p < alpha).then(|| {
        format!(
            "{what}: {k} of the {} {OWN_EXCEEDANCES} {c:.4e}, where \
             {lambda:.2} are expected at 1 in N = {n_apply} (Poisson probability {p:.1e} < \
             {alpha}): the fitted tail is lighter than the data's, so new data will exceed it \
             more often than 1 in N; check it on held-out data with `aceuq check-cutoffs`",
            x.len()
        )
    })
}

/// Number of values of `x` above `c` and its Poisson upper-tail probability when about
/// n / N are expected.
fn own_count(x: &[f64], c: f64, n_apply: u64) -> (usize, f64) {
    let k = x.iter().filter(|&&v| v > c).count();
    (k, poisson_sf(k, x.len() as f64 / n_apply as f64))
}

/// P(X <= k) for X ~ Poisson(lambda).
fn poisson_cdf(k: usize, lambda: f64) -> f64 {
    super::special::gamma_q(k as f64 + 1.0, lambda)
}

/// Where the tail check of [`tail_shape_contradiction`] looks: k n / N expected calibration
/// values above the model's 1 - k/N quantile, for these k.
const TAIL_CHECK_LEVELS: [f64; 3] = [3.0, 10.0, 30.0];

/// A level of the tail check needs at least this many expected values (fewer cannot show a
/// tail too heavy: even 0 would not be improbable).
const TAIL_CHECK_MIN_EXPECTED: f64 = 10.0;

/// The worst level of [`tail_shape_contradiction`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct TailMiss {
    /// Smallest two-sided Poisson probability over the levels checked, times their number
    /// (Bonferroni), at most 1.
    p: f64,
    /// Number of levels checked.
    levels: usize,
    /// The level k (quantile 1 - k/N) of the smallest probability, its observed and expected
    /// counts.
    k: f64,
    observed: usize,
    expected: f64,
}

impl TailMiss {
    /// What the count says, for notes and warnings.
    fn describe(&self, n: usize, alpha: f64) -> String {
        let side = if (self.observed as f64) < self.expected {
            "fewer"
        } else {
            "more"
        };
        format!(
            "{} of the {n} calibration values lie above its 1 - {}/N quantile where {:.1} are \
             expected: {side} than expected, two-sided Poisson probability {:.1e} \
             (Bonferroni over {} level{}) < {alpha}",
            self.observed,
            self.k,
            self.expected,
            self.p,
            self.levels,
            if self.levels == 1 { "" } else { "s" }
        )
    }
}

/// The tail of a model checked against its own values between the 1 - 1/N cutoff and the bulk:
/// at each level k of [`TAIL_CHECK_LEVELS`] whose quantile 1 - k/N lies inside the GPD's range
/// (`max_q`: its exceedance fraction) and where at least [`TAIL_CHECK_MIN_EXPECTED`] values
/// are expected, the count of values above the model's 1 - k/N quantile against its Poisson
/// law, both sides (a tail too light or too heavy). Returns the worst level with its
/// probability times the number of levels checked (Bonferroni), or None when no level is
/// checked (fewer than N/3 values). Counts near 1/N cannot tell a tail that is too heavy (0 has
/// probability e^-n/N); the deeper levels can, and a body that misses them is not trusted
/// further out either.
fn tail_shape_contradiction(
    x: &[f64],
    max_q: f64,
    n_apply: u64,
    isf: impl Fn(f64) -> f64,
) -> Option<TailMiss> {
    let n = x.len() as f64;
    let mut worst: Option<TailMiss> = None;
    let mut levels = 0usize;
    for k in TAIL_CHECK_LEVELS {
        let q = k / n_apply as f64;
        let lambda = n * q;
        if q > max_q || lambda < TAIL_CHECK_MIN_EXPECTED {
            continue;
        }
        let c = isf(q);
        if !c.is_finite() {
            continue;
        }
        levels += 1;
        let observed = x.iter().filter(|&&v| v > c).count();
        let p = (2.0 * poisson_sf(observed, lambda).min(poisson_cdf(observed, lambda))).min(1.0);
        if worst.is_none_or(|w| p < w.p) {
            worst = Some(TailMiss {
                p,
                levels: 0,
                k,
                observed,
                expected: lambda,
            });
        }
    }
    worst.map(|w| TailMiss {
        p: (w.p * levels as f64).min(1.0),
        levels,
        ..w
    })
}

/// "1 value" or "3 values".
fn values(k: usize) -> String {
    format!("{k} value{}", if k == 1 { "" } else { "s" })
}

/// Under [`TailPolicy::Auto`] the body gives way to the fitted GPD tail when its own values
/// contradict it: more of them above its 1 - 1/N cutoff than N allows (Poisson probability
/// below alpha: a tail too light), or a count off on either side deeper in
/// ([`tail_shape_contradiction`]: a tail too light or too heavy there). The tail takes over if
/// it passes its own KS and AD tests, the gate against cutoffs far beyond the data accepts its
/// cutoff, and its values contradict it in neither test; otherwise `fit` and `c` are returned
/// unchanged (a count at 1/N is then warned about by the caller, one deeper in here).
fn tail_if_body_contradicted(
    what: &str,
    x: &[f64],
    body: &ModelChoice,
    fit: CutoffFit,
    c: f64,
    opts: &CalibrationOptions,
    warnings: &mut Vec<String>,
) -> (f64, CutoffFit) {
    if opts.tail != TailPolicy::Auto || fit.rule != CutoffRule::Body {
        return (c, fit);
    }
    let n = x.len();
    let (k, p) = own_count(x, c, opts.n_apply);
    let at_n = k > 0 && p < opts.alpha;
    // The levels checked lie where a GPD is fitted: above its threshold, or above the lowest
    // threshold tried when there is none.
    let max_q = fit
        .tail
        .as_ref()
        .map_or(1.0 - super::tail::TAIL_QUANTILES[0], |t| t.p_exceed);
    let shape = tail_shape_contradiction(x, max_q, opts.n_apply, |q| fit.isf(body, q))
        .filter(|s| s.p < opts.alpha);
    let expected = n as f64 / opts.n_apply as f64;
    let why = match shape {
        _ if at_n => format!(
            "{k} of the {n} calibration values lie above its cutoff {c:.4e} where {expected:.2} \
             are expected: Poisson probability {p:.1e} < {}",
            opts.alpha
        ),
        Some(s) => s.describe(n, opts.alpha),
        None => return (c, fit),
    };
    let refuse = |reason: String, warnings: &mut Vec<String>| {
        // A count at 1/N is warned about by the caller (own_exceedances); one deeper in only
        // here.
        if !at_n {
            warnings.push(format!(
                "{what}: the body family's tail does not match the calibration values ({why}), \
                 and the GPD tail cannot take over ({reason}): the 1 - 1/N rate is not \
                 guaranteed; check it on held-out data with `aceuq check-cutoffs`"
            ));
        }
    };
    if !fit.tail.as_ref().is_some_and(|t| t.passed(opts.alpha)) {
        refuse("no GPD tail passes its KS and AD tests".into(), warnings);
        return (c, fit);
    }
    let mut alt = fit.clone();
    alt.rule = CutoffRule::Tail;
    let ct = alt.isf(body, 1.0 / opts.n_apply as f64);
    let (kt, pt) = own_count(x, ct, opts.n_apply);
    if !within_gate(ct, fit.max_seen) {
        refuse(
            format!("its cutoff {ct:.4e} lies far beyond the largest value"),
            warnings,
        );
        return (c, fit);
    }
    if pt < opts.alpha {
        refuse(
            format!(
                "{} above its cutoff {ct:.4e} where {expected:.2} are expected",
                values(kt)
            ),
            warnings,
        );
        return (c, fit);
    }
    if let Some(s) = tail_shape_contradiction(x, max_q, opts.n_apply, |q| alt.isf(body, q))
        .filter(|s| s.p < opts.alpha)
    {
        refuse(
            format!("its own tail misses too: {}", s.describe(n, opts.alpha)),
            warnings,
        );
        return (c, fit);
    }
    alt.passed = true;
    alt.note = format!(
        "gpd tail: the body passes KS and AD, but {why}; {} above the tail's",
        values(kt)
    );
    warnings.push(format!(
        "{what}: the body family's tail does not match the calibration values ({why}); the GPD \
         tail's cutoff {ct:.4e} is used instead of the body's {c:.4e} ({} above it, \
         {expected:.2} expected at 1 in N = {})",
        values(kt),
        opts.n_apply
    ));
    (ct, alt)
}

/// [`calibrate`] with extra labelled pairs `high_errors`/`high_uncertainties` from
/// high-uncertainty structures: they enter the conditional upper fit only (the lower cutoffs
/// describe in-distribution data).
pub fn calibrate_with_high(
    species: &str,
    method: &str,
    errors: &[f64],
    uncertainties: &[f64],
    high_errors: &[f64],
    high_uncertainties: &[f64],
    opts: &CalibrationOptions,
) -> Result<Calibration, StatsError> {
    if errors.len() != uncertainties.len() {
        return Err(StatsError::LengthMismatch {
            what: "errors and uncertainties",
            left: errors.len(),
            right: uncertainties.len(),
        });
    }
    if high_errors.len() != high_uncertainties.len() {
        return Err(StatsError::LengthMismatch {
            what: "errors and uncertainties of the high-uncertainty structures",
            left: high_errors.len(),
            right: high_uncertainties.len(),
        });
    }
    let ctx = |what: &'static str| {
        move |e: StatsError| StatsError::Context {
            context: format!("species {species}, method {method}, {what}"),
            source: Box::new(e),
        }
    };
    let mut warnings = Vec::new();
    if errors.len() < FEW_ATOMS {
        warnings.push(format!(
            "only {} validation atoms: the 1 - 1/N tails are poorly determined (use at least {FEW_ATOMS})",
            errors.len()
        ));
    }
    let error =
        choose_model_from(errors, &opts.error_families, opts.alpha).map_err(ctx("errors"))?;
    let uncertainty = choose_model_from(uncertainties, &opts.uncertainty_families, opts.alpha)
        .map_err(ctx("uncertainties"))?;
    let efit = fit_cutoff(errors, &error, opts.tail).map_err(ctx("errors"))?;
    let ufit = fit_cutoff(uncertainties, &uncertainty, opts.tail).map_err(ctx("uncertainties"))?;
    let (e_c, efit) = gated_cutoff("force errors", &error, efit, opts.n_apply, &mut warnings)
        .map_err(ctx("error cutoff"))?;
    let (u_c, ufit) = gated_cutoff(
        "uncertainties",
        &uncertainty,
        ufit,
        opts.n_apply,
        &mut warnings,
    )
    .map_err(ctx("uncertainty cutoff"))?;
    // The cutoffs against their own data: about n / N values are expected above each, k n / N
    // above the 1 - k/N quantiles deeper in. Under the auto rule a body whose tail its own
    // values contradict (it passed KS and AD on the bulk, but its tail is lighter or heavier
    // than the data's largest values) gives way to the GPD tail when the tail is not
    // contradicted.
    let (e_c, efit) = tail_if_body_contradicted(
        "force errors",
        errors,
        &error,
        efit,
        e_c,
        opts,
        &mut warnings,
    );
    let (u_c, ufit) = tail_if_body_contradicted(
        "uncertainties",
        uncertainties,
        &uncertainty,
        ufit,
        u_c,
        opts,
        &mut warnings,
    );
    for (what, x, c) in [
        ("force errors", errors, e_c),
        ("uncertainties", uncertainties, u_c),
    ] {
        if let Some(w) = own_exceedances(what, x, c, opts.n_apply, opts.alpha) {
            warnings.push(w);
        }
    }
    let (mut efit, mut ufit) = (efit, ufit);
    efit.above = Some(own_count(errors, e_c, opts.n_apply).0);
    ufit.above = Some(own_count(uncertainties, u_c, opts.n_apply).0);
    for (what, f) in [("force errors", &efit), ("uncertainties", &ufit)] {
        if !f.passed {
            warnings.push(format!(
                "{what}: no acceptable model ({}); the 1 - 1/N rate is not guaranteed: check it on held-out data with `aceuq check-cutoffs`",
                f.note
            ));
        }
    }
    if let Some(sup) = opts.u_sup.filter(|&sup| u_c > sup) {
        // A method that saturates (the GP: exp(mean + 2 s_f) far from its data) at a value
        // below u_c never flags a structure unlike its data: only atoms where its mean rises
        // near the data pass u_c.
        warnings.push(format!(
            "{LOWER_ABOVE_PLATEAU} ({u_c:.4e}) is above {sup:.4e}, the value it tends to far from \
             its data: structures unlike the training data get values below the cutoff and are \
             never flagged; watch another method (gamma) to find novel structures"
        ));
    }
    let mean_e = mean_of(&error, errors);
    let mean_u = mean_of(&uncertainty, uncertainties);
    let up = upper_cutoff(opts.e_max, mean_e, e_c, mean_u, u_c);
    let (u_max, ratio, conditional) = match opts.upper_rule {
        UpperRule::Ratio => {
            // The ratio rule has no error model of its own to say where it stops holding:
            // say when its cutoff lies beyond every value it was calibrated on.
            let seen = uncertainties
                .iter()
                .chain(high_uncertainties)
                .copied()
                .filter(|x| x.is_finite())
                .fold(f64::NEG_INFINITY, f64::max);
            if up.u_max > seen && seen > 0.0 {
                warnings.push(format!(
                    "{RATIO_EXTRAPOLATED} maps e_max = {} eV/Å to u_max = {:.4e}, {:.3}x the largest value in the data ({seen:.4e}), assuming errors \
                     grow in proportion to the uncertainty beyond it; label high-uncertainty \
                     structures and recalibrate with --high, or use the default rule \
                     (--upper-rule conditional), which says where its fit stops holding",
                    opts.e_max,
                    up.u_max,
                    up.u_max / seen
                ));
            }
            (up.u_max, up.ratio, None)
        }
        UpperRule::Conditional => {
            let mut e = errors.to_vec();
            e.extend_from_slice(high_errors);
            let mut u = uncertainties.to_vec();
            u.extend_from_slice(high_uncertainties);
            let c = conditional_upper(
                &e,
                &u,
                high_errors.len(),
                opts.e_max,
                opts.p_halt,
                opts.u_sup,
            )
            .map_err(ctx("upper cutoff"))?;
            if let Some(r) = &c.reason {
                warnings.push(match c.u_max {
                    Some(_) => format!("upper cutoff {r}"),
                    None => format!("no upper cutoff: {r}"),
                });
            }
            let u_max = match c.u_max {
                // Never below the lower cutoff: between them lies "worth labelling".
                Some(x) => x.max(u_c),
                None => f64::INFINITY,
            };
            if let Some(x) = c.u_max.filter(|&x| x < u_c) {
                // The two models disagree: in-distribution atoms are expected to pass the level
                // where errors above e_max become likely. The watch then has no band in which it
                // dumps before it halts; say so and why.
                warnings.push(format!(
                    "the upper cutoff from the error model ({x:.4e}) lies below the lower cutoff \
                     {u_c:.4e} and was raised to it: the watch halts where it would first dump, \
                     with no candidates before{}. Either the model is too inaccurate for runs of \
                     N = {} atom-checks (label more data, or a richer basis), or the tail is \
                     extrapolated far beyond the validation data (calibrate on more atoms, or \
                     a smaller --pool-size)",
                    if e_c >= opts.e_max {
                        format!(
                            " (the force-error cutoff e_c = {e_c:.3} eV/Å is already above e_max = {} eV/Å: \
                             errors that large are expected in-distribution)",
                            opts.e_max
                        )
                    } else {
                        String::new()
                    },
                    opts.n_apply
                ));
            }
            (u_max, up.ratio, Some(c))
        }
    };
    Ok(Calibration {
        species: species.to_string(),
        method: method.to_string(),
        cluster: None,
        n_fit: errors.len(),
        n_apply: opts.n_apply,
        error,
        uncertainty,
        mean_e,
        mean_u,
        e_c,
        u_c,
        e_max: opts.e_max,
        ratio,
        u_max,
        error_fit: Some(efit),
        uncertainty_fit: Some(ufit),
        upper_rule: opts.upper_rule,
        conditional,
        warnings,
        provenance: None,
    })
}

/// Fewest (error, uncertainty) pairs a cluster needs for cutoffs of its own: below it the
/// 1 - 1/N tail of a fit is too poorly determined, and the cluster keeps its species' cutoffs.
pub const MIN_CLUSTER_ATOMS: usize = 30;

/// What [`calibrate_clusters`] decided for one cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterCalibration {
    /// Cutoffs of its own ([`Calibration::cluster`] set).
    Fitted(Box<Calibration>),
    /// The cluster keeps the species-level cutoffs.
    Fallback {
        cluster: usize,
        /// Pairs the cluster had.
        n_fit: usize,
        /// N its cutoffs would have been computed for.
        n_apply: u64,
        /// Why (too few atoms, or the fit's error).
        reason: String,
    },
}

impl ClusterCalibration {
    /// Index of the cluster.
    pub fn cluster(&self) -> usize {
        match self {
            ClusterCalibration::Fitted(c) => c.cluster.unwrap_or(0),
            ClusterCalibration::Fallback { cluster, .. } => *cluster,
        }
    }
}

/// Cutoffs per cluster of one species: `groups[k]` holds the paired (errors, uncertainties) of
/// the atoms of cluster `k`. `opts.n_apply` is the species' N; each cluster's N is its share in
/// proportion to its atoms (at least 2). Clusters with fewer than [`MIN_CLUSTER_ATOMS`] pairs, or
/// whose fit fails, fall back to the species-level cutoffs (never an error). With the
/// conditional upper rule every cluster takes the species-level s(u) and u_max of `species_cal`
/// (at least its own u_c): a cluster has too few high-uncertainty atoms to fit the relation
/// between error and uncertainty on its own.
pub fn calibrate_clusters(
    species: &str,
    method: &str,
    groups: &[(Vec<f64>, Vec<f64>)],
    opts: &CalibrationOptions,
    species_cal: &Calibration,
) -> Vec<ClusterCalibration> {
    let total: usize = groups.iter().map(|g| g.0.len()).sum();
    groups
        .iter()
        .enumerate()
        .map(|(k, (es, us))| {
            let n_fit = es.len();
            let share = if total == 0 {
                0.0
            } else {
                n_fit as f64 / total as f64
            };
            let n_apply = ((opts.n_apply as f64 * share).round() as u64).max(2);
            let fallback = |reason: String| ClusterCalibration::Fallback {
                cluster: k,
                n_fit,
                n_apply,
                reason,
            };
            if n_fit < MIN_CLUSTER_ATOMS {
                return fallback(format!(
                    "only {n_fit} validation atoms (need at least {MIN_CLUSTER_ATOMS})"
                ));
            }
            let o = CalibrationOptions {
                n_apply,
                upper_rule: UpperRule::Ratio,
                ..opts.clone()
            };
            match calibrate(species, method, es, us, &o) {
                Ok(mut c) => {
                    c.cluster = Some(k);
                    if opts.upper_rule == UpperRule::Conditional {
                        // The cluster's own ratio cutoff is replaced, and so is what was said
                        // about it.
                        c.warnings.retain(|w| !w.starts_with(RATIO_EXTRAPOLATED));
                        c.upper_rule = UpperRule::Conditional;
                        c.conditional = species_cal.conditional.clone();
                        c.u_max = species_cal.u_max.max(c.u_c);
                    }
                    ClusterCalibration::Fitted(Box::new(c))
                }
                Err(e) => fallback(format!("the fit failed: {e}")),
            }
        })
        .collect()
}

impl Calibration {
    /// Checks the numbers a reader of a stored entry relies on (a hand-edited or damaged file;
    /// `aceuq calibrate` writes none of these): finite cutoffs that are not negative, an upper
    /// cutoff that may be +inf (none) but not NaN, e_max above 0 and N at least 2. The error
    /// names the entry and the field.
    pub fn check_stored(&self) -> Result<(), String> {
        let entry = format!(
            "the calibration entry of {} for {}{}",
            self.method,
            self.species,
            self.cluster
                .map(|k| format!(" cluster {k}"))
                .unwrap_or_default()
        );
        let bad = |field: &str, v: String, want: &str| {
            Err(format!(
                "{entry}: {field} = {v}, which must be {want} (the file was edited or damaged): \
                 rerun `aceuq calibrate`"
            ))
        };
        if !(self.u_c.is_finite() && self.u_c >= 0.0) {
            return bad("u_c", self.u_c.to_string(), "a finite number >= 0");
        }
        if self.u_max.is_nan() || self.u_max < 0.0 {
            return bad(
                "u_max",
                self.u_max.to_string(),
                "a number >= 0 or inf (none)",
            );
        }
        if !(self.e_c.is_finite() && self.e_c >= 0.0) {
            return bad("e_c", self.e_c.to_string(), "a finite number >= 0");
        }
        if !(self.e_max.is_finite() && self.e_max > 0.0) {
            return bad("e_max", self.e_max.to_string(), "a finite number > 0");
        }
        if self.n_apply < 2 {
            return bad("n_apply", self.n_apply.to_string(), "at least 2");
        }
        if let Some(c) = &self.conditional
            && !(c.e_max.is_finite() && c.e_max > 0.0 && c.p_halt > 0.0 && c.p_halt < 1.0)
        {
            return bad(
                "the conditional relation's e_max / p_halt",
                format!("{} / {}", c.e_max, c.p_halt),
                "above 0 / strictly between 0 and 1",
            );
        }
        Ok(())
    }

    /// The uncertainty u with P(U > u) = q under the stored model (tail or body).
    pub fn uncertainty_quantile(&self, q: f64) -> f64 {
        match &self.uncertainty_fit {
            Some(f) => f.isf(&self.uncertainty, q),
            None => self.uncertainty.dist().isf(q),
        }
    }

    /// The force error e with P(E > e) = q under the stored model (tail or body).
    pub fn error_quantile(&self, q: f64) -> f64 {
        match &self.error_fit {
            Some(f) => f.isf(&self.error, q),
            None => self.error.dist().isf(q),
        }
    }

    /// Zone of an uncertainty value (trusted / uncertain / unstable).
    pub fn zone(&self, u: f64) -> Zone {
        if u > self.u_max {
            Zone::Unstable
        } else if u > self.u_c {
            Zone::Uncertain
        } else {
            Zone::Trusted
        }
    }

    /// Column headers of [`Calibration::table_row`].
    pub fn table_header() -> Vec<String> {
        [
            "species",
            "method",
            "cluster",
            "n_fit",
            "N",
            "error fit",
            "KS p (err)",
            "e_c (eV/Å)",
            "e_c model",
            "uncertainty fit",
            "KS p (unc)",
            "u_c",
            "u_c model",
            "upper rule",
            "u_max",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// One table row summarizing this calibration (for a Markdown table of results).
    pub fn table_row(&self) -> Vec<String> {
        let fit = |c: &ModelChoice| {
            let d = c.dist();
            let mark = if c.passed() { "" } else { " (best p, failed)" };
            format!("{} {}{}", d.family(), d.params_string(), mark)
        };
        vec![
            self.species.clone(),
            self.method.clone(),
            self.cluster.map_or("-".into(), |c| c.to_string()),
            self.n_fit.to_string(),
            self.n_apply.to_string(),
            fit(&self.error),
            format!("{:.3e}", self.error.chosen().ks.p_value),
            format!("{:.5}", self.e_c),
            self.error_fit.as_ref().map_or("body".into(), |f| f.short()),
            fit(&self.uncertainty),
            format!("{:.3e}", self.uncertainty.chosen().ks.p_value),
            format!("{:.5}", self.u_c),
            self.uncertainty_fit
                .as_ref()
                .map_or("body".into(), |f| f.short()),
            match self.upper_rule {
                UpperRule::Ratio => format!("ratio {:.3}", self.ratio),
                UpperRule::Conditional => match &self.conditional {
                    Some(c) => format!(
                        "s(u)={}+{}u^{}{}",
                        super::sig_digits(c.scale.a, 4),
                        super::sig_digits(c.scale.b, 4),
                        super::sig_digits(c.scale.k, 4),
                        if c.n_high > 0 {
                            format!(" ({} high)", c.n_high)
                        } else {
                            String::new()
                        }
                    ),
                    None => "conditional".into(),
                },
            },
            if self.u_max.is_finite() {
                format!("{:.5}", self.u_max)
            } else {
                "none".into()
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::dist::Maxwell;
    use crate::stats::tests::{draw_gamma, draw_maxwell, rng};

    #[test]
    fn predictive_exceedances_closed_forms_and_edges() {
        // m = 0: the cutoff lies above all n values; X >= 1 with P = atoms / (atoms + n)
        // (BetaBinomial(atoms, 1, n) puts n / (atoms + n) on 0).
        let s = predictive_exceedances(100, 0, 50, 1).unwrap();
        assert!((s.at_least - 50.0 / 150.0).abs() < 1e-12, "{s:?}");
        assert_eq!(s.at_most, 1.0);
        // Nothing observed is never improbable from above; m = n bounds nothing from above.
        assert_eq!(predictive_exceedances(100, 3, 50, 0).unwrap().at_least, 1.0);
        assert_eq!(
            predictive_exceedances(10, 10, 50, 40).unwrap().at_least,
            1.0
        );
        assert!(predictive_exceedances(0, 0, 5, 1).is_none());
        assert!(predictive_exceedances(5, 6, 5, 1).is_none());
        // Large n and m with atoms = n / m: close to Poisson(1) on both sides.
        let s = predictive_exceedances(4_000_000, 4000, 1000, 4).unwrap();
        assert!((s.at_least - poisson_sf(4, 1.0)).abs() < 2e-3, "{s:?}");
        let s = predictive_exceedances(4_000_000, 4000, 1000, 0).unwrap();
        assert!((s.at_most - (-1.0f64).exp()).abs() < 2e-3, "{s:?}");
        // n = 2 N with two values above (about Li's gamma_local cluster 2 in
        // docs/benchmarks/cutoffs): 4 or more at about 1 expected is not rare.
        let s = predictive_exceedances(1763, 2, 881, 4).unwrap();
        assert!(s.at_least > 0.05 && s.at_least < 0.2, "{s:?}");
        // Many exceedances expected (n = 1000, m = 500, atoms 5000: mean about 2500): a count
        // far below the mean is certain to be reached from above and improbable from below,
        // and the far tails are accurate on both sides (reference: the sum of
        // scipy.stats.betabinom.logpmf over the tail; its sf is off by 1e-3 there; by symmetry
        // the two tails below are equal). P(X >= 4999) is about 1e-444: 0 in f64.
        let s = predictive_exceedances(1000, 500, 5000, 1).unwrap();
        assert!(s.at_least > 1.0 - 1e-12 && s.at_most < 1e-100, "{s:?}");
        let rel = |x: f64| (x / 3.5359419389126165e-09 - 1.0).abs();
        let s = predictive_exceedances(1000, 500, 5000, 2000).unwrap();
        assert!(rel(s.at_most) < 1e-8, "{s:?}");
        let s = predictive_exceedances(1000, 500, 5000, 3000).unwrap();
        assert!(rel(s.at_least) < 1e-8, "{s:?}");
        let s = predictive_exceedances(1000, 500, 5000, 4999).unwrap();
        assert!(s.at_least < 1e-300 && s.at_most > 1.0 - 1e-12, "{s:?}");
        // The tails sum with the point mass to 1: P(X >= k) + P(X <= k - 1) = 1 (same a, b
        // when m is shifted by one between the two bounds).
        let hi = predictive_exceedances(300, 2, 120, 3).unwrap().at_least;
        let lo = predictive_exceedances(300, 3, 120, 2).unwrap().at_most;
        assert!((hi + lo - 1.0).abs() < 1e-12, "{hi} + {lo}");
    }

    /// Distribution-free: cutoffs at the (n - m)-th order statistic of n draws, counted on
    /// `atoms` fresh draws, give exceedance counts whose frequencies match the predictive
    /// distribution (here the upper bound is exact: the cutoff is that order statistic).
    #[test]
    fn predictive_exceedances_match_simulated_counts() {
        let (n, m, atoms, trials) = (400usize, 1usize, 200usize, 20_000usize);
        let mut r = rng(17);
        let mut hits = [0usize; 6];
        for _ in 0..trials {
            let mut cal = draw_maxwell(&mut r, 0.1, n);
            cal.sort_by(f64::total_cmp);
            let c = cal[n - m - 1];
            let k = draw_maxwell(&mut r, 0.1, atoms)
                .iter()
                .filter(|&&v| v > c)
                .count();
            for (j, h) in hits.iter_mut().enumerate() {
                *h += usize::from(k >= j);
            }
        }
        for (j, &h) in hits.iter().enumerate().skip(1) {
            let p = predictive_exceedances(n, m, atoms, j).unwrap().at_least;
            let f = h as f64 / trials as f64;
            let se = (p * (1.0 - p) / trials as f64).sqrt();
            assert!(
                (f - p).abs() < 5.0 * se + 1e-4,
                "k >= {j}: simulated {f}, predicted {p}"
            );
        }
        // About 1 expected (atoms / n * (m + 1)), yet 4 or more more than twice as often as
        // a Poisson(1) count would give them (0.045 against 0.019).
        assert!(hits[4] as f64 / trials as f64 > 2.0 * poisson_sf(4, 1.0));
    }

    #[test]
    fn stats_upper_cutoff_cases() {
        // (e_max - mean_e)/(e_c - mean_e) = (1 - 0.1)/(0.4 - 0.1) = 3.
        let up = upper_cutoff(1.0, 0.1, 0.4, 2.0, 5.0);
        assert!((up.ratio - 3.0).abs() < 1e-12);
        assert!((up.u_max - (2.0 + 3.0 * 3.0)).abs() < 1e-12);
        // e_max below e_c: clamped to 1, u_max = u_c.
        let up = upper_cutoff(0.3, 0.1, 0.4, 2.0, 5.0);
        assert_eq!(up.ratio, 1.0);
        assert_eq!(up.u_max, 5.0);
        // e_c not above the mean: ratio 1 instead of a division by <= 0.
        let up = upper_cutoff(1.0, 0.5, 0.5, 2.0, 5.0);
        assert_eq!((up.ratio, up.u_max), (1.0, 5.0));
    }

    /// A bulk that a body family fits (it passes KS and AD) with a rare heavier component, as
    /// gamma_local's largest values on held-out liquid Li: where the body's cutoff is exceeded
    /// by more of its own values than N allows, the auto rule takes the GPD tail, and on fresh
    /// draws of the same mixture the tail's cutoff keeps the 1-in-N promise (within a factor 3)
    /// that the body's breaks; where the own count does not contradict the body, nothing changes.
    /// The same values (as errors and as uncertainties) calibrated under `--tail auto` and
    /// `--tail body`, with the ratio upper rule.
    fn auto_and_body(x: &[f64], n_apply: u64) -> (Calibration, Calibration) {
        let mut o = CalibrationOptions::new(n_apply);
        o.upper_rule = UpperRule::Ratio;
        let auto = calibrate("Li", "gamma", x, x, &o).unwrap();
        o.tail = TailPolicy::Body;
        (auto, calibrate("Li", "gamma", x, x, &o).unwrap())
    }

    #[test]
    fn stats_auto_takes_the_tail_when_the_body_is_exceeded_by_its_own_values() {
        use crate::stats::tests::draw_gpd;
        let mix = |r: &mut rand_chacha::ChaCha8Rng, n: usize| {
            let k = n / 100;
            let mut x = draw_gamma(r, 20.0, 0.026, n - k);
            x.extend(draw_gpd(r, 0.3, 0.15, k).into_iter().map(|v| 0.8 + v));
            x
        };
        let n_apply = 1000;
        let (mut switched, mut kept) = (0, 0);
        for seed in 0..6 {
            let mut r = rng(seed);
            let x = mix(&mut r, 500);
            let (auto, body) = auto_and_body(&x, n_apply);
            let fit = auto.uncertainty_fit.as_ref().unwrap();
            // The body's own exceedances and their Poisson probability, counted here.
            let k_body = x.iter().filter(|&&v| v > body.u_c).count();
            let lambda = x.len() as f64 / n_apply as f64;
            let mut term = (-lambda).exp();
            let mut below = 0.0;
            for i in 0..k_body {
                below += term;
                term *= lambda / (i + 1) as f64;
            }
            let p_body = 1.0 - below;
            let fresh = mix(&mut r, 200_000);
            // Observed over expected exceedances of a cutoff on the fresh draws.
            let ratio = |c: f64| {
                fresh.iter().filter(|&&v| v > c).count() as f64 * n_apply as f64
                    / fresh.len() as f64
            };
            if !body.uncertainty_fit.as_ref().unwrap().passed {
                // The body fails KS or AD: the tail was taken before any count (seed 5).
                continue;
            }
            if p_body < DEFAULT_ALPHA {
                switched += 1;
                assert_eq!(fit.rule, CutoffRule::Tail, "seed {seed}: {}", fit.note);
                assert!(
                    fit.note
                        .contains(&format!("{k_body} of the 500 calibration values")),
                    "{}",
                    fit.note
                );
                assert!(auto.u_c > body.u_c);
                assert!(
                    auto.warnings.iter().any(|w| w.contains("the GPD tail's")),
                    "{:?}",
                    auto.warnings
                );
                assert!(!auto.warnings.iter().any(|w| w.contains(OWN_EXCEEDANCES)));
                let (ra, rb) = (ratio(auto.u_c), ratio(body.u_c));
                assert!(
                    rb > 2.0,
                    "seed {seed}: the body's cutoff is exceeded {rb}x 1/N"
                );
                assert!(
                    (1.0 / 3.0..=3.0).contains(&ra),
                    "seed {seed}: the tail's {ra}x 1/N"
                );
            } else {
                kept += 1;
                assert_eq!(fit.rule, CutoffRule::Body, "seed {seed}: {}", fit.note);
                assert_eq!(auto.u_c, body.u_c);
            }
        }
        assert!(
            switched >= 2 && kept >= 2,
            "switched {switched}, kept {kept}"
        );
    }

    #[test]
    fn stats_auto_takes_the_tail_when_the_body_tail_is_too_heavy() {
        // A Gamma bulk whose values above t are pulled in (t + f (v - t)): the body families
        // pass KS and AD on 5000 values but keep the Gamma's tail, so their 1 - 1/N cutoff
        // lies beyond nearly every value; deeper in, at 1 - 3/N or 1 - 10/N, their own values
        // show it (far fewer above than expected).
        let squash = |r: &mut rand_chacha::ChaCha8Rng, n: usize, t: f64, f: f64| {
            draw_gamma(r, 20.0, 0.026, n)
                .into_iter()
                .map(|v| if v > t { t + f * (v - t) } else { v })
                .collect::<Vec<f64>>()
        };
        let n_apply = 500;
        let mut switched = 0;
        for (t, f) in [(0.71, 0.5), (0.75, 0.2)] {
            for seed in 0..3 {
                let mut r = rng(seed);
                let x = squash(&mut r, 5000, t, f);
                let (auto, body) = auto_and_body(&x, n_apply);
                if !body.uncertainty_fit.as_ref().unwrap().passed {
                    continue; // the tail was taken before any count
                }
                switched += 1;
                let fit = auto.uncertainty_fit.as_ref().unwrap();
                assert_eq!(
                    fit.rule,
                    CutoffRule::Tail,
                    "t {t} seed {seed}: {}",
                    fit.note
                );
                assert!(
                    fit.note.contains("where 30.0 are expected")
                        || fit.note.contains("where 100.0 are expected"),
                    "{}",
                    fit.note
                );
                assert!(
                    auto.warnings
                        .iter()
                        .any(|w| w.contains("tail does not match")),
                    "{:?}",
                    auto.warnings
                );
                let fresh = squash(&mut r, 200_000, t, f);
                let ratio = |c: f64| {
                    fresh.iter().filter(|&&v| v > c).count() as f64 * n_apply as f64
                        / fresh.len() as f64
                };
                let (ra, rb) = (ratio(auto.u_c), ratio(body.u_c));
                assert!(rb < 0.2, "t {t} seed {seed}: the body's cutoff {rb}x 1/N");
                assert!(
                    (1.0 / 3.0..=3.0).contains(&ra),
                    "t {t} seed {seed}: the tail's {ra}x 1/N"
                );
            }
        }
        assert!(switched >= 3, "only {switched} bodies passed KS and AD");
        // Without an acceptable tail the body stays, and the count deeper in is not silent.
        let x = squash(&mut rng(1), 5000, 0.75, 0.2);
        let o = CalibrationOptions::new(n_apply);
        let model = choose_model_from(&x, &o.uncertainty_families, o.alpha).unwrap();
        let mut fit = fit_cutoff(&x, &model, o.tail).unwrap();
        assert_eq!(fit.rule, CutoffRule::Body, "{}", fit.note);
        fit.tail = None;
        let c = fit.isf(&model, 1.0 / n_apply as f64);
        let mut w = vec![];
        let (c2, fit2) = tail_if_body_contradicted("uncertainties", &x, &model, fit, c, &o, &mut w);
        assert_eq!((c2, fit2.rule), (c, CutoffRule::Body));
        assert!(
            w.len() == 1
                && w[0].contains("fewer than expected")
                && w[0].contains("the GPD tail cannot take over (no GPD tail passes"),
            "{w:?}"
        );
        // Where the body is right (plain Gamma draws), the check rarely fires: at most one of
        // eight calibrations (each level at alpha = 0.05 / levels, both sides).
        let mut fired = 0;
        for seed in 10..18 {
            let mut r = rng(seed);
            let x = draw_gamma(&mut r, 20.0, 0.026, 5000);
            let (auto, body) = auto_and_body(&x, n_apply);
            if body.uncertainty_fit.as_ref().unwrap().passed && auto.u_c != body.u_c {
                fired += 1;
            }
        }
        assert!(
            fired <= 1,
            "the tail check fired on {fired} of 8 Gamma samples"
        );
    }

    #[test]
    fn stats_poisson_tail_and_own_exceedance_warning() {
        // P(X >= k) against the closed forms.
        let l: f64 = 0.5;
        assert_eq!(poisson_sf(0, l), 1.0);
        assert!((poisson_sf(1, l) - (1.0 - (-l).exp())).abs() < 1e-15);
        let p3 = 1.0 - (-l).exp() * (1.0 + l + l * l / 2.0);
        assert!((poisson_sf(3, l) - p3).abs() < 1e-15);
        // Far tails keep their accuracy: P(X >= 20) at 0.5 is 0.5^20 e^-0.5 / 20! (1 + ...).
        let far = 0.5f64.powi(20) * (-0.5f64).exp() / (2..=20).map(|i| i as f64).product::<f64>();
        assert!(
            (poisson_sf(20, 0.5) / far - 1.0).abs() < 0.03,
            "{}",
            poisson_sf(20, 0.5)
        );
        assert!((poisson_sf(1000, 1000.0) - 0.5).abs() < 0.02);
        // 3 of 500 values above a 1-in-1000 cutoff (0.5 expected): p = 0.014, warned at 0.05,
        // not at 0.01; two values above it (p = 0.09) are not enough.
        let mut x = vec![1.0; 497];
        x.extend([5.0, 6.0, 7.0]);
        let w = own_exceedances("uncertainties", &x, 2.0, 1000, 0.05).expect("a warning");
        assert!(
            w.contains("3 of the 500 calibration values") && w.contains("0.50 are expected"),
            "{w}"
        );
        assert!(own_exceedances("uncertainties", &x, 2.0, 1000, 0.01).is_none());
        assert!(own_exceedances("uncertainties", &x, 5.5, 1000, 0.05).is_none());
        // In calibrate: a body fitted to the bulk, a few values far above it, N = 2n.
        let mut r = rng(5);
        let mut e = draw_maxwell(&mut r, 0.05, 1000);
        e.extend([2.0, 2.5, 3.0, 3.5]);
        let u = e.clone();
        let mut o = CalibrationOptions::new(2008);
        o.tail = TailPolicy::Body;
        let cal = calibrate("Li", "gamma", &e, &u, &o).unwrap();
        assert!(
            cal.warnings
                .iter()
                .any(|w| w.starts_with("uncertainties: 4 of the 1004")),
            "{:?}",
            cal.warnings
        );
    }

    #[test]
    fn stats_cutoff_needs_n_of_at_least_two() {
        let m = Maxwell::new(1.0).unwrap();
        assert!(cutoff_for_n(&m, 1).is_err());
        assert!(cutoff_for_n(&m, 0).is_err());
        // N = 1e7 and 1e12 stay finite and ordered.
        let a = cutoff_for_n(&m, 10_000_000).unwrap();
        let b = cutoff_for_n(&m, 1_000_000_000_000).unwrap();
        assert!(a > 4.59 && b > a && b.is_finite());
    }

    #[test]
    fn stats_calibrate_end_to_end() {
        let mut r = rng(31);
        let errors = draw_maxwell(&mut r, 0.05, 4000);
        // An uncertainty that tracks the error with multiplicative noise.
        let noise = draw_gamma(&mut r, 8.0, 1.0 / 8.0, 4000);
        let unc: Vec<f64> = errors
            .iter()
            .zip(&noise)
            .map(|(e, z)| 0.8 * e * z + 0.01)
            .collect();
        let cal = calibrate(
            "Li",
            "ensemble",
            &errors,
            &unc,
            &CalibrationOptions::new(10_000),
        )
        .unwrap();
        assert_eq!(cal.error.dist().family(), Family::Maxwell);
        let sigma = match cal.error.dist() {
            crate::stats::Distribution::Maxwell(m) => m.sigma(),
            d => panic!("{d:?}"),
        };
        // The Maxwell test vector: x_c / sigma = 4.59429 at N = 1e4.
        assert!((cal.e_c / sigma - 4.59429).abs() < 1e-5);
        assert!((cal.u_c - cal.uncertainty.dist().isf(1e-4)).abs() < 1e-12);
        // Maxwell errors with u ~ 0.8 e: the body passes and gives the cutoffs.
        assert_eq!(cal.error_fit.as_ref().unwrap().rule, CutoffRule::Body);
        // Conditional upper rule: s(u) ~ (u - 0.01) / 0.8 sqrt(3/8 pi)-ish; u_max is where
        // P(e > 1 | u) = 1/2.
        let c = cal.conditional.as_ref().unwrap();
        assert_eq!(cal.upper_rule, UpperRule::Conditional);
        assert_eq!(cal.u_max, c.u_max.unwrap());
        assert!((c.scale.p_exceed(cal.u_max, 1.0) - 0.5).abs() < 1e-9);
        // The seeds' ratio rule, kept for comparison.
        let mut o = CalibrationOptions::new(10_000);
        o.upper_rule = UpperRule::Ratio;
        let ratio = calibrate("Li", "ensemble", &errors, &unc, &o).unwrap();
        let up = upper_cutoff(1.0, cal.mean_e, cal.e_c, cal.mean_u, cal.u_c);
        assert_eq!((ratio.ratio, ratio.u_max), (up.ratio, up.u_max));
        assert!(ratio.conditional.is_none() && ratio.u_c == cal.u_c);
        assert!(cal.ratio > 1.0 && cal.u_max > cal.u_c);
        assert_eq!(cal.zone(cal.u_c * 0.5), Zone::Trusted);
        assert_eq!(cal.zone(0.5 * (cal.u_c + cal.u_max)), Zone::Uncertain);
        assert_eq!(cal.zone(cal.u_max * 1.01), Zone::Unstable);
        assert_eq!(cal.table_row().len(), Calibration::table_header().len());
        // Round trip through TOML (the model file format).
        let text = toml::to_string(&cal).unwrap();
        let back: Calibration = toml::from_str(&text).unwrap();
        assert_eq!(back, cal);
        // No upper cutoff (+inf) survives the round trip too.
        let mut none = cal.clone();
        none.u_max = f64::INFINITY;
        let back: Calibration = toml::from_str(&toml::to_string(&none).unwrap()).unwrap();
        assert_eq!(back, none);
    }

    /// A method that saturates (the GP) below its lower cutoff can never flag a structure far
    /// from its data: the calibration says so; a far-field value above u_c draws no warning.
    #[test]
    fn stats_a_lower_cutoff_above_the_far_field_value_is_named() {
        let mut r = rng(33);
        let errors = draw_maxwell(&mut r, 0.05, 2000);
        let unc = draw_gamma(&mut r, 8.0, 1.0 / 8.0, 2000);
        let with_sup = |sup: f64| {
            let mut o = CalibrationOptions::new(10_000);
            o.u_sup = Some(sup);
            calibrate("Li", "gp", &errors, &unc, &o).unwrap()
        };
        let low = with_sup(1.0);
        assert!(low.u_c > 1.0, "{}", low.u_c);
        let w = low.warnings.join("\n");
        assert!(
            w.contains(LOWER_ABOVE_PLATEAU) && w.contains("never flagged"),
            "{w}"
        );
        let high = with_sup(2.0 * low.u_c);
        assert!(
            high.warnings
                .iter()
                .all(|w| !w.starts_with(LOWER_ABOVE_PLATEAU)),
            "{:?}",
            high.warnings
        );
    }

    /// A model whose in-distribution error tail already passes e_max: the error model's upper
    /// cutoff lies below the lower cutoff, is raised to it, and the calibration says why.
    #[test]
    fn stats_an_upper_cutoff_below_the_lower_one_is_raised_with_a_warning() {
        let mut r = rng(32);
        let errors = draw_maxwell(&mut r, 0.3, 4000);
        let noise = draw_gamma(&mut r, 8.0, 1.0 / 8.0, 4000);
        let unc: Vec<f64> = errors
            .iter()
            .zip(&noise)
            .map(|(e, z)| 0.8 * e * z + 0.01)
            .collect();
        let cal = calibrate(
            "In",
            "gamma",
            &errors,
            &unc,
            &CalibrationOptions::new(1_000_000),
        )
        .unwrap();
        let below = cal.conditional.as_ref().unwrap().u_max.unwrap();
        assert!(
            below < cal.u_c && cal.u_max == cal.u_c,
            "{below} {} {}",
            cal.u_c,
            cal.u_max
        );
        assert!(cal.e_c > 1.0, "{}", cal.e_c);
        let w = cal.warnings.join("\n");
        assert!(
            w.contains("raised to it") && w.contains("no candidates before") && w.contains("e_c ="),
            "{w}"
        );
        // Well-behaved data (the end-to-end test's) get no such warning.
        let small: Vec<f64> = errors.iter().map(|e| e / 6.0).collect();
        let u2: Vec<f64> = small
            .iter()
            .zip(&noise)
            .map(|(e, z)| 0.8 * e * z + 0.01)
            .collect();
        let ok = calibrate("In", "gamma", &small, &u2, &CalibrationOptions::new(10_000)).unwrap();
        assert!(
            ok.warnings.iter().all(|w| !w.contains("raised to it")),
            "{:?}",
            ok.warnings
        );
    }

    #[test]
    fn stats_cluster_cutoffs_fit_each_cluster_and_fall_back_when_small() {
        let mut r = rng(7);
        let groups: Vec<(Vec<f64>, Vec<f64>)> =
            [(600, 0.5), (MIN_CLUSTER_ATOMS - 1, 0.5), (400, 2.0)]
                .into_iter()
                .map(|(n, scale)| {
                    let e = draw_maxwell(&mut r, 0.05, n);
                    (e, draw_gamma(&mut r, 4.0, scale, n))
                })
                .collect();
        let mut opts = CalibrationOptions::new(10_000);
        opts.upper_rule = UpperRule::Ratio;
        let (all_e, all_u): (Vec<f64>, Vec<f64>) = groups
            .iter()
            .flat_map(|(e, u)| e.iter().copied().zip(u.iter().copied()))
            .unzip();
        let species = calibrate("Li", "gamma_local", &all_e, &all_u, &opts).unwrap();
        let out = calibrate_clusters("Li", "gamma_local", &groups, &opts, &species);
        assert_eq!(out.len(), 3);
        let total = (600 + 400 + MIN_CLUSTER_ATOMS - 1) as f64;
        let ClusterCalibration::Fitted(a) = &out[0] else {
            panic!("{:?}", out[0])
        };
        assert_eq!((a.cluster, a.n_fit), (Some(0), 600));
        assert_eq!(a.n_apply, (10_000.0 * 600.0 / total).round() as u64);
        // The same as calibrating that cluster's atoms alone with its share of N.
        let mut direct = calibrate(
            "Li",
            "gamma_local",
            &groups[0].0,
            &groups[0].1,
            &CalibrationOptions {
                n_apply: a.n_apply,
                ..opts.clone()
            },
        )
        .unwrap();
        direct.cluster = Some(0);
        assert_eq!(&direct, a.as_ref());
        // With the conditional upper rule every cluster takes the species' s(u) and u_max (at
        // least its own u_c), not a fit on its few atoms.
        let cond = CalibrationOptions::new(10_000);
        let species = calibrate("Li", "gamma_local", &all_e, &all_u, &cond).unwrap();
        for o in calibrate_clusters("Li", "gamma_local", &groups, &cond, &species) {
            if let ClusterCalibration::Fitted(c) = o {
                assert_eq!(c.conditional, species.conditional);
                assert_eq!(c.u_max, species.u_max.max(c.u_c));
            }
        }
        match &out[1] {
            ClusterCalibration::Fallback {
                cluster: 1,
                n_fit,
                reason,
                ..
            } => {
                assert_eq!(*n_fit, MIN_CLUSTER_ATOMS - 1);
                assert!(reason.contains("need at least 30"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let ClusterCalibration::Fitted(c) = &out[2] else {
            panic!("{:?}", out[2])
        };
        let c: &Calibration = c;
        assert_eq!(c.cluster, Some(2));
        // Four times the scale: a higher cutoff than the first cluster's.
        assert!(c.u_c > 2.0 * a.u_c, "{} vs {}", c.u_c, a.u_c);
        assert_eq!(
            out.iter().map(|o| o.cluster()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        // The cluster index is stored; a species-level entry writes none (old files read back).
        let text = toml::to_string(c).unwrap();
        assert!(text.contains("cluster = 2"), "{text}");
        assert_eq!(&toml::from_str::<Calibration>(&text).unwrap(), c);
        let mut species = c.clone();
        species.cluster = None;
        let text = toml::to_string(&species).unwrap();
        assert!(!text.contains("cluster"), "{text}");
        assert_eq!(toml::from_str::<Calibration>(&text).unwrap(), species);
    }

    /// The ratio rule warns when its upper cutoff lies beyond every calibration value (an error
    /// model it does not have would be needed there), not when it lies inside them; clusters
    /// calibrated under the conditional rule do not inherit the warning of their internal ratio
    /// fit.
    #[test]
    fn stats_the_ratio_rule_says_when_its_cutoff_is_beyond_the_data() {
        let mut r = rng(5);
        let errors = draw_maxwell(&mut r, 0.05, 2000);
        let noise = draw_gamma(&mut r, 8.0, 1.0 / 8.0, 2000);
        let unc: Vec<f64> = errors
            .iter()
            .zip(&noise)
            .map(|(e, z)| 0.8 * e * z + 0.01)
            .collect();
        let seen = unc.iter().cloned().fold(0.0, f64::max);
        let warned = |c: &Calibration| c.warnings.iter().any(|w| w.starts_with(RATIO_EXTRAPOLATED));
        let mut o = CalibrationOptions::new(10_000);
        o.upper_rule = UpperRule::Ratio;
        // e_max = 1 eV/Å is about 12 times the mean error: far beyond the data.
        let far = calibrate("Li", "ensemble", &errors, &unc, &o).unwrap();
        assert!(far.u_max > 2.0 * seen, "{} vs {seen}", far.u_max);
        assert!(warned(&far), "{:?}", far.warnings);
        // Few atoms to apply to and a low e_max: u_max = u_c, inside the data.
        o.n_apply = 100;
        o.e_max = 0.1;
        let near = calibrate("Li", "ensemble", &errors, &unc, &o).unwrap();
        assert!(near.u_max < seen, "{} vs {seen}", near.u_max);
        assert!(!warned(&near), "{:?}", near.warnings);
        // Clusters: under the conditional rule their internal ratio fit says nothing.
        let groups = vec![(errors.clone(), unc.clone())];
        for (rule, expect) in [(UpperRule::Ratio, true), (UpperRule::Conditional, false)] {
            let mut o = CalibrationOptions::new(10_000);
            o.upper_rule = rule;
            let species = calibrate("Li", "gamma_local", &errors, &unc, &o).unwrap();
            let out = calibrate_clusters("Li", "gamma_local", &groups, &o, &species);
            let ClusterCalibration::Fitted(c) = &out[0] else {
                panic!("{:?}", out[0])
            };
            assert_eq!(warned(c), expect, "{rule:?}: {:?}", c.warnings);
        }
    }

    #[test]
    fn stats_calibrate_names_the_bad_input() {
        let e = calibrate(
            "Al",
            "gp",
            &[0.1, 0.2, -1.0],
            &[1.0, 2.0, 3.0],
            &CalibrationOptions::new(100),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("Al") && e.contains("gp") && e.contains("errors") && e.contains("index 2"),
            "{e}"
        );
        assert!(
            calibrate(
                "Al",
                "gp",
                &[0.1],
                &[1.0, 2.0],
                &CalibrationOptions::new(100)
            )
            .is_err()
        );
    }
}
