//! Choosing a distribution family (Annevelink & Viswanathan; not to be confused with choosing structures,
//! `uq::activeset::select`): fit Maxwell, Gamma and generalized Gamma (in that order) by
//! maximum likelihood, test each with a one-sample KS test, and choose the first with
//! p > 0.05, else the one with the highest p. All candidates are kept for reporting.
//!
//! Note (also in docs/methods.md §3): the parameters are fitted on the same data the KS test uses, so the
//! p-values are optimistic (the test is not calibrated for estimated parameters); they rank
//! the candidates, they are not exact significance levels.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::dist::{ContinuousDistribution, Distribution, Family};
use super::fit::{fit_gamma, fit_gengamma, fit_maxwell};
use super::ks::{KsResult, ks_test};

/// The significance level of the model choice: the first family with p above it is chosen.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// One fitted candidate family with its goodness of fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The maximum-likelihood fit.
    pub dist: Distribution,
    /// Kolmogorov–Smirnov test of the sample against `dist`.
    pub ks: KsResult,
    /// Log-likelihood of the sample at the fit.
    pub log_likelihood: f64,
    /// Any caveat about the fit (e.g. the generalized Gamma optimum on a search bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A family that could not be fitted (kept so that reports show why it is missing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedFit {
    /// The family.
    pub family: Family,
    /// Why the fit failed.
    pub reason: String,
}

/// Outcome of the model choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelChoice {
    /// Successfully fitted candidates, in fit order (Maxwell, Gamma, generalized Gamma).
    pub candidates: Vec<Candidate>,
    /// Families whose fit failed (normally empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedFit>,
    /// Index into `candidates` of the chosen distribution.
    pub chosen: usize,
    /// The significance level used.
    pub alpha: f64,
}

impl ModelChoice {
    /// The chosen candidate.
    pub fn chosen(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    /// The chosen distribution.
    pub fn dist(&self) -> &Distribution {
        &self.chosen().dist
    }

    /// The candidate of a given family, if it was fitted.
    pub fn candidate(&self, family: Family) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.dist.family() == family)
    }

    /// True if the chosen candidate passed the KS test (p > alpha); false means the
    /// highest-p fallback was used.
    pub fn passed(&self) -> bool {
        self.chosen().ks.p_value > self.alpha
    }
}

/// Fits one family by maximum likelihood (location 0) and KS-tests it.
pub fn fit_candidate(x: &[f64], family: Family) -> Result<Candidate, StatsError> {
    let (dist, note): (Distribution, Option<String>) = match family {
        Family::Maxwell => (fit_maxwell(x)?.into(), None),
        Family::Gamma => (fit_gamma(x)?.into(), None),
        Family::GenGamma => {
            let f = fit_gengamma(x)?;
            let note = f.at_bound.then(|| {
                "likelihood flat toward the search bound (near log-normal or extreme c); \
                 parameters are a boundary point"
                    .to_string()
            });
            (f.dist.into(), note)
        }
    };
    let ks = ks_test(x, &dist)?;
    let log_likelihood = dist.log_likelihood(x);
    Ok(Candidate {
        dist,
        ks,
        log_likelihood,
        note,
    })
}

/// Model choice with the default level 0.05: see the module documentation.
pub fn choose_model(x: &[f64]) -> Result<ModelChoice, StatsError> {
    choose_model_from(x, &Family::ALL, DEFAULT_ALPHA)
}

/// Model choice over the given families (tried in the given order) at level `alpha`.
///
/// A family whose fit fails (e.g. Gamma on a sample of identical values) is recorded in
/// `failed`; the call errors only if the sample is invalid or no family could be fitted.
pub fn choose_model_from(
    x: &[f64],
    families: &[Family],
    alpha: f64,
) -> Result<ModelChoice, StatsError> {
    super::fit::check_sample(x)?;
    let mut candidates = Vec::new();
    let mut failed = Vec::new();
    for &family in families {
        match fit_candidate(x, family) {
            Ok(c) => candidates.push(c),
            Err(e) => failed.push(FailedFit {
                family,
                reason: e.to_string(),
            }),
        }
    }
    if candidates.is_empty() {
        let reasons: Vec<String> = failed
            .iter()
            .map(|f| format!("{}: {}", f.family, f.reason))
            .collect();
        return Err(StatsError::Degenerate {
            what: "model choice",
            reason: format!("no family could be fitted ({})", reasons.join("; ")),
        });
    }
    let chosen = candidates
        .iter()
        .position(|c| c.ks.p_value > alpha)
        .unwrap_or_else(|| {
            // Highest p; the earlier (simpler) family wins ties.
            let mut best = 0;
            for (i, c) in candidates.iter().enumerate() {
                if c.ks.p_value > candidates[best].ks.p_value {
                    best = i;
                }
            }
            best
        });
    Ok(ModelChoice {
        candidates,
        failed,
        chosen,
        alpha,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{draw_gamma, draw_gengamma, draw_maxwell, rng};

    #[test]
    fn stats_choice_picks_the_first_family_that_fits() {
        let mut r = rng(21);
        let x = draw_maxwell(&mut r, 0.1, 2000);
        let m = choose_model(&x).unwrap();
        assert_eq!(m.dist().family(), Family::Maxwell);
        assert!(m.passed());
        assert_eq!(m.candidates.len(), 3);
        // Gamma with shape 0.7 is far from Maxwell: Maxwell must be rejected.
        let x = draw_gamma(&mut r, 0.7, 2.0, 2000);
        let m = choose_model(&x).unwrap();
        assert!(m.candidate(Family::Maxwell).unwrap().ks.p_value < 1e-6);
        assert_eq!(m.dist().family(), Family::Gamma, "{:?}", m.candidates);
        // A heavy power-law tail (c < 0) needs the generalized Gamma.
        let x = draw_gengamma(&mut r, 2.0, -1.5, 1.0, 3000);
        let m = choose_model(&x).unwrap();
        assert_eq!(m.dist().family(), Family::GenGamma);
        assert!(m.passed());
    }

    #[test]
    fn stats_choice_falls_back_to_the_highest_p() {
        // A well-separated bimodal sample fits none of the families.
        let mut r = rng(22);
        let mut x = draw_gamma(&mut r, 50.0, 0.01, 1500);
        x.extend(draw_gamma(&mut r, 50.0, 0.05, 1500));
        let m = choose_model(&x).unwrap();
        assert!(!m.passed());
        let best = m
            .candidates
            .iter()
            .map(|c| c.ks.p_value)
            .fold(0.0, f64::max);
        assert_eq!(m.chosen().ks.p_value, best);
    }

    #[test]
    fn stats_choice_records_failed_families_and_serializes() {
        // Identical values: Maxwell fits, Gamma and generalized Gamma cannot.
        let m = choose_model(&[0.5; 20]).unwrap();
        assert_eq!(m.candidates.len(), 1);
        assert_eq!(m.failed.len(), 2);
        assert_eq!(m.dist().family(), Family::Maxwell);

        let mut r = rng(23);
        let m = choose_model(&draw_gamma(&mut r, 2.0, 1.0, 300)).unwrap();
        let text = toml::to_string(&m).unwrap();
        let back: ModelChoice = toml::from_str(&text).unwrap();
        assert_eq!(back, m);
        assert!(text.contains("family = \"gengamma\""), "{text}");
        // Deserialization validates parameters.
        let bad = text.replacen("sigma = ", "sigma = -", 1);
        assert!(toml::from_str::<ModelChoice>(&bad).is_err());
    }
}
