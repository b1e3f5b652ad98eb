//! Tail-aware quantiles for the 1 - 1/N cutoffs: a body family (the model choice of
//! [`super::family_choice`]) and, above a high threshold t, a generalized Pareto tail fitted to
//! the excesses (peaks over threshold).
//!
//! Why: a cutoff at 1 - 1/N with N much larger than the sample is an extrapolation into the
//! tail. The body families are fitted to the whole sample, so their tail follows the bulk of the
//! data, not its largest values; real force errors and uncertainties are heavier-tailed than
//! Maxwell, and the 1 - 1/N quantile of a body fit is then exceeded far more often than 1/N. The
//! generalized Pareto distribution is the limit law of excesses over a high threshold for almost
//! any distribution (Pickands–Balkema–de Haan), so it is the right model for that extrapolation.
//!
//! The spliced model: P(X > x) = p_t GPD.sf(x - t) above t (p_t the fraction of the sample
//! above t), and below t the body rescaled to the remaining 1 - p_t. Continuous at t.
//!
//! Threshold choice (in the spirit of Bader, Yan & Zhang, Ann. Appl. Stat. 12, 310 (2018): the
//! lowest threshold whose fit is not rejected): t runs over the empirical quantiles
//! [`TAIL_QUANTILES`] that leave at least [`MIN_EXCESSES`] excesses; the lowest one whose GPD
//! passes both the KS and the Anderson–Darling test (p > alpha) is taken, else the one with the
//! highest AD p-value (marked as failed).
//!
//! Rule choice ([`TailPolicy`]): `Auto` keeps the body alone when it passes both KS and AD on
//! the whole sample (AD weighs the tails, so a body that passes it usually has an acceptable
//! tail), and uses the GPD tail otherwise; the calibration (`super::cutoff`) still takes the tail
//! when more of the sample lies above the body's 1 - 1/N cutoff than N allows, or when the
//! counts above its 1 - k/N quantiles (k = 3, 10, 30) are off on either side; `Tail` always
//! uses the tail when it can be fitted; `Body` never.
//! When the rule's own check fails the fit is kept but marked, and the caller warns.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::ad::{AdResult, ad_test};
use super::dist::ContinuousDistribution;
use super::family_choice::ModelChoice;
use super::gpd::{Gpd, fit_gpd};
use super::ks::{KsResult, ks_test};

/// Candidate thresholds, as empirical quantiles of the sample.
pub const TAIL_QUANTILES: [f64; 5] = [0.80, 0.85, 0.90, 0.95, 0.975];
/// Fewest excesses a tail fit uses.
pub const MIN_EXCESSES: usize = 30;

/// Which model gives the cutoffs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TailPolicy {
    /// The body if it passes KS and AD (and, in a calibration, its own values do not contradict
    /// its tail: not more of them above its cutoff than N allows, nor counts off on either side
    /// above its 1 - k/N quantiles deeper in), else the GPD tail (default).
    #[default]
    Auto,
    /// The GPD tail whenever there are enough excesses.
    Tail,
    /// The body family alone (Annevelink & Viswanathan's rule).
    Body,
}

impl TailPolicy {
    /// Name as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            TailPolicy::Auto => "auto",
            TailPolicy::Tail => "tail",
            TailPolicy::Body => "body",
        }
    }
}

impl std::str::FromStr for TailPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(TailPolicy::Auto),
            "tail" => Ok(TailPolicy::Tail),
            "body" => Ok(TailPolicy::Body),
            _ => Err(format!("unknown tail rule '{s}' (auto, tail or body)")),
        }
    }
}

/// A generalized Pareto tail above a threshold, with its goodness of fit on the excesses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TailFit {
    /// Threshold t (same units as the sample).
    pub threshold: f64,
    /// The empirical quantile level t was taken at.
    pub quantile: f64,
    /// Number of sample values above t.
    pub n_exceed: usize,
    /// Their fraction p_t.
    pub p_exceed: f64,
    /// The GPD of the excesses x - t.
    pub gpd: Gpd,
    /// KS test of the excesses against the GPD.
    pub ks: KsResult,
    /// Anderson–Darling test of the excesses against the GPD.
    pub ad: AdResult,
}

impl TailFit {
    /// Both tests pass at level `alpha`.
    pub fn passed(&self, alpha: f64) -> bool {
        self.ks.p_value > alpha && self.ad.p_value > alpha
    }
}

/// Which model the cutoffs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoffRule {
    /// The body family's quantile.
    Body,
    /// The spliced body + GPD tail.
    Tail,
}

/// The model behind a 1 - 1/N cutoff: the rule, the tail (if fitted) and the checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CutoffFit {
    /// Body or tail.
    pub rule: CutoffRule,
    /// Anderson–Darling test of the whole sample against the chosen body family.
    pub body_ad: AdResult,
    /// The GPD tail, if one could be fitted (enough excesses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<TailFit>,
    /// The chosen rule's own check passed (body: KS and AD; tail: KS and AD of the excesses).
    pub passed: bool,
    /// Largest sample value.
    pub max_seen: f64,
    /// Sample size.
    pub n: usize,
    /// Why this rule (and why no tail, if none).
    pub note: String,
    /// How many of the `n` sample values lie above the cutoff finally taken from this fit (set
    /// by the calibration; absent in files written before it was stored). With `n`, it gives
    /// the spread of exceedance counts to expect on new data
    /// ([`crate::stats::cutoff::predictive_exceedances`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<usize>,
}

impl CutoffFit {
    /// P(X > x) of the model (body: the body's sf; tail: the spliced model).
    pub fn sf(&self, body: &ModelChoice, x: f64) -> f64 {
        match (&self.rule, &self.tail) {
            (CutoffRule::Tail, Some(t)) => {
                if x > t.threshold {
                    t.p_exceed * t.gpd.sf(x - t.threshold)
                } else {
                    let d = body.dist();
                    let ft = d.cdf(t.threshold);
                    if ft > 0.0 {
                        1.0 - (1.0 - t.p_exceed) * (d.cdf(x) / ft).min(1.0)
                    } else {
                        1.0
                    }
                }
            }
            _ => body.dist().sf(x),
        }
    }

    /// The x with P(X > x) = q.
    pub fn isf(&self, body: &ModelChoice, q: f64) -> f64 {
        match (&self.rule, &self.tail) {
            (CutoffRule::Tail, Some(t)) => {
                if q < t.p_exceed {
                    t.threshold + t.gpd.isf(q / t.p_exceed)
                } else {
                    let d = body.dist();
                    d.ppf(d.cdf(t.threshold) * ((1.0 - q) / (1.0 - t.p_exceed)).min(1.0))
                }
            }
            _ => body.dist().isf(q),
        }
    }

    /// Compact label for tables: "body ok", "gpd q0.90 xi=0.12 ok", "... FAILED".
    pub fn short(&self) -> String {
        let verdict = if self.passed { "ok" } else { "FAILED" };
        match (&self.rule, &self.tail) {
            (CutoffRule::Tail, Some(t)) => {
                format!("gpd q{} xi={:.2} {verdict}", t.quantile, t.gpd.xi())
            }
            _ => format!("body {verdict}"),
        }
    }

    /// Short description for tables: "gpd xi=0.12 above q0.90" or "body".
    pub fn describe(&self) -> String {
        match (&self.rule, &self.tail) {
            (CutoffRule::Tail, Some(t)) => format!(
                "+ gpd tail above q{:.3} (t={:.4}, {} excesses, xi={:.3}, AD p {:.2e})",
                t.quantile,
                t.threshold,
                t.n_exceed,
                t.gpd.xi(),
                t.ad.p_value
            ),
            _ => format!("(body quantile, AD p {:.2e})", self.body_ad.p_value),
        }
    }
}

/// The sample's empirical quantile at level q (linear interpolation; `sorted` ascending).
pub fn empirical_quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let i = h.floor() as usize;
    let f = h - i as f64;
    if i + 1 < sorted.len() {
        sorted[i] + f * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

/// The best generalized Pareto tail of `x` (see the module documentation), or `None` if the
/// sample is too small for [`MIN_EXCESSES`] excesses above the lowest candidate threshold.
pub fn fit_tail(x: &[f64], alpha: f64) -> Option<TailFit> {
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = sorted.len();
    let mut best: Option<TailFit> = None;
    for &q in &TAIL_QUANTILES {
        let t = empirical_quantile(&sorted, q);
        let y: Vec<f64> = sorted.iter().filter(|&&v| v > t).map(|&v| v - t).collect();
        if y.len() < MIN_EXCESSES {
            break;
        }
        let Ok(gpd) = fit_gpd(&y) else { continue };
        let (Ok(ks), Ok(ad)) = (ks_test(&y, &gpd), ad_test(&y, |v| gpd.cdf(v))) else {
            continue;
        };
        let fit = TailFit {
            threshold: t,
            quantile: q,
            n_exceed: y.len(),
            p_exceed: y.len() as f64 / n as f64,
            gpd,
            ks,
            ad,
        };
        if fit.passed(alpha) {
            return Some(fit);
        }
        if best.as_ref().is_none_or(|b| fit.ad.p_value > b.ad.p_value) {
            best = Some(fit);
        }
    }
    best
}

/// The cutoff model of a sample whose body is `body` (fitted on the same `x`).
pub fn fit_cutoff(
    x: &[f64],
    body: &ModelChoice,
    policy: TailPolicy,
) -> Result<CutoffFit, StatsError> {
    let alpha = body.alpha;
    let d = body.dist();
    let body_ad = ad_test(x, |v| d.cdf(v))?;
    let body_ok = body.passed() && body_ad.p_value > alpha;
    let max_seen = x.iter().fold(0.0_f64, |m, &v| m.max(v));
    let tail = if policy == TailPolicy::Body {
        None
    } else {
        fit_tail(x, alpha)
    };
    let tail_ok = tail.as_ref().is_some_and(|t| t.passed(alpha));
    let (rule, passed, note) = match (policy, &tail) {
        (TailPolicy::Body, _) => (CutoffRule::Body, body_ok, "body family (rule: body)".into()),
        (_, None) => (
            CutoffRule::Body,
            body_ok,
            format!(
                "body family: {} values are too few for a tail fit (need {} above the {} \
                 quantile)",
                x.len(),
                MIN_EXCESSES,
                TAIL_QUANTILES[0]
            ),
        ),
        (TailPolicy::Auto, Some(_)) if body_ok => (
            CutoffRule::Body,
            true,
            "body family: it passes KS and AD".into(),
        ),
        (_, Some(_)) if tail_ok => (
            CutoffRule::Tail,
            true,
            if policy == TailPolicy::Tail {
                "gpd tail (rule: tail)".into()
            } else {
                "gpd tail: the body fails KS or AD".into()
            },
        ),
        (_, Some(t)) => {
            // Neither passes: the better tail-sensitive AD decides.
            if policy == TailPolicy::Auto && body_ad.p_value >= t.ad.p_value {
                (
                    CutoffRule::Body,
                    false,
                    "no acceptable model: body and tail both fail; body has the higher AD p".into(),
                )
            } else {
                (
                    CutoffRule::Tail,
                    false,
                    "no acceptable model: body and tail both fail; tail has the higher AD p".into(),
                )
            }
        }
    };
    Ok(CutoffFit {
        rule,
        body_ad,
        tail,
        passed,
        max_seen,
        n: x.len(),
        note,
        above: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::dist::Family;
    use crate::stats::family_choice::{DEFAULT_ALPHA, choose_model_from};
    use crate::stats::tests::{draw_gpd, draw_maxwell, rng};

    /// A Maxwell body with a heavier power-law tail in its top 5 %: the Maxwell fit is rejected
    /// and its 1 - 1/N quantile is exceeded far more often than 1/N on fresh draws; the spliced
    /// GPD tail's is not.
    #[test]
    fn stats_tail_keeps_its_exceedance_promise_where_the_body_does_not() {
        let mut r = rng(11);
        let mut draw = |n: usize| -> Vec<f64> {
            let mut x = draw_maxwell(&mut r, 0.05, n);
            let k = n / 20;
            let t = 0.05 * 3.0;
            let y = draw_gpd(&mut r, 0.25, 0.05, k);
            for (i, v) in y.into_iter().enumerate() {
                x[i * 20] = t + v;
            }
            x
        };
        let x = draw(4000);
        let body = choose_model_from(&x, &[Family::Maxwell], DEFAULT_ALPHA).unwrap();
        let auto = fit_cutoff(&x, &body, TailPolicy::Auto).unwrap();
        assert_eq!(auto.rule, CutoffRule::Tail, "{}", auto.note);
        assert!(auto.passed);
        let plain = fit_cutoff(&x, &body, TailPolicy::Body).unwrap();
        assert!(!plain.passed);
        let n_apply = 2000.0;
        let (cb, ct) = (
            plain.isf(&body, 1.0 / n_apply),
            auto.isf(&body, 1.0 / n_apply),
        );
        let test = draw(200_000);
        let count = |c: f64| test.iter().filter(|&&v| v > c).count() as f64;
        let expected = test.len() as f64 / n_apply;
        assert!(
            count(cb) > 5.0 * expected,
            "body {} vs {expected}",
            count(cb)
        );
        let ratio = count(ct) / expected;
        assert!(
            (1.0 / 3.0..3.0).contains(&ratio),
            "tail {} vs {expected}",
            count(ct)
        );
        // The spliced sf and isf are inverse to each other on both sides of the threshold.
        for q in [0.5, 0.1, 1e-3, 1e-6] {
            let v = auto.isf(&body, q);
            assert!((auto.sf(&body, v) / q - 1.0).abs() < 1e-8, "{q}");
        }
    }

    #[test]
    fn stats_tail_keeps_a_body_that_fits_and_needs_enough_excesses() {
        let mut r = rng(12);
        let x = draw_maxwell(&mut r, 0.1, 3000);
        let body = choose_model_from(&x, &[Family::Maxwell], DEFAULT_ALPHA).unwrap();
        let f = fit_cutoff(&x, &body, TailPolicy::Auto).unwrap();
        assert_eq!(f.rule, CutoffRule::Body, "{}", f.note);
        assert!(f.passed && f.tail.is_some());
        assert_eq!(f.isf(&body, 1e-4), body.dist().isf(1e-4));
        // 100 values: 20 above the 0.8 quantile, too few for a tail.
        let small = &x[..100];
        let body = choose_model_from(small, &[Family::Maxwell], DEFAULT_ALPHA).unwrap();
        let f = fit_cutoff(small, &body, TailPolicy::Tail).unwrap();
        assert_eq!(f.rule, CutoffRule::Body);
        assert!(f.tail.is_none() && f.note.contains("too few"), "{}", f.note);
    }
}
