//! Statistics: distribution fits, goodness of fit, statistical cutoffs and UQ metrics
//! (Annevelink & Viswanathan).
//!
//! The pieces, in the order they are used:
//! - [`dist`]: Maxwell, Gamma and scipy's generalized Gamma (location 0), with pdf, cdf,
//!   survival, quantiles and mean; [`special`] holds the incomplete gamma functions behind them,
//!   accurate in the far upper tail.
//! - [`fit`]: maximum-likelihood fits of the three families.
//! - [`ks`]: the one-sample Kolmogorov–Smirnov test, matching `scipy.stats.kstest` defaults.
//! - [`family_choice`]: the model choice (Maxwell, Gamma, generalized Gamma; first with p > 0.05,
//!   else the highest p).
//! - [`cutoff`]: the 1 - 1/N cutoffs, the upper (stability) cutoff and the serde-able
//!   per-(species, method) [`Calibration`] record.
//! - [`metrics`]: confusion counts, precision/recall/F1, the 2-D cutoff sweep, calibration
//!   curves and miscalibration area, Spearman rho, ROC-AUC.
//! - [`plot`]: PNG/SVG figures of all of the above and a Markdown table writer.
//!
//! Typical use:
//! ```
//! use aceuq::stats::{CalibrationOptions, calibrate};
//! // Per-atom force errors (eV/Å) and uncertainties of one species on validation data.
//! let errors: Vec<f64> = (1..=200).map(|i| 0.05 + 0.001 * i as f64).collect();
//! let unc: Vec<f64> = errors.iter().map(|e| 0.9 * e + 0.01).collect();
//! let cal = calibrate("Li", "ensemble", &errors, &unc, &CalibrationOptions::new(10_000)).unwrap();
//! assert!(cal.u_c > 0.0 && cal.u_max >= cal.u_c);
//! ```
//!
//! Layer 1 (foundation): pure statistics on slices of numbers; imports nothing of the crate.

// `!(x > 0.0)` is used on purpose throughout: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod ad;
pub mod cutoff;
pub mod dist;
pub mod family_choice;
pub mod fit;
pub mod gpd;
pub mod ks;
pub mod metrics;
#[cfg(feature = "cli")]
pub mod plot;
pub mod special;
pub mod tail;
pub mod upper;

/// Test vectors and seeded samplers shared by the unit tests of the crate.
#[cfg(test)]
pub(crate) mod tests;

pub use cutoff::{
    Calibration, CalibrationOptions, UpperCutoff, Zone, calibrate, cutoff_for_n, upper_cutoff,
};
pub use dist::{ContinuousDistribution, Distribution, Family, Gamma, GenGamma, Maxwell};
pub use family_choice::{Candidate, ModelChoice, choose_model, choose_model_from};
pub use fit::{GenGammaFit, fit_gamma, fit_gengamma, fit_maxwell};
pub use ks::{KsResult, kolmogorov_sf, ks_test};
pub use metrics::{
    CalibrationCurve, Confusion, Sweep, calibration_curve, confusion, count_of_fraction,
    miscalibration_area, pit_maxwell, recall_at_budget, roc_auc, spearman, stratified_auc, sweep,
    top_k_weights,
};

/// `x` with `digits` significant digits: plain notation for 1e-3 <= |x| < 1e5, else scientific
/// (`1.5000e-6` for 5 digits); "0", "inf", "NaN" as such. For the tables that show fitted
/// parameters, whose magnitudes span many decades (an error scale's slope can be 3e-4).
pub fn sig_digits(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    let digits = digits.max(1);
    if a == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (digits as i32 - 1 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.*e}", digits - 1)
    }
}

/// Errors of the statistics layer. Indices are 0-based positions in the slice passed in;
/// callers that read files translate them to file and line.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Not enough values.
    #[error("need at least {needed} values, got {n}")]
    TooFewSamples {
        /// Values given.
        n: usize,
        /// Values needed.
        needed: usize,
    },
    /// A value outside the domain (NaN, infinite, or non-positive where a fit needs x > 0).
    #[error("value at index {index} is {value}, but values must be {expected}; remove or fix it")]
    BadValue {
        /// 0-based index into the input slice.
        index: usize,
        /// The offending value.
        value: f64,
        /// What was expected (e.g. "finite and > 0").
        expected: &'static str,
    },
    /// A distribution parameter or argument out of range.
    #[error("invalid {name} = {value}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// The data do not determine the quantity (e.g. all values equal).
    #[error("{what} is impossible: {reason}")]
    Degenerate {
        /// What was attempted.
        what: &'static str,
        /// Why it failed and what to do.
        reason: String,
    },
    /// Two inputs that must pair up have different lengths.
    #[error("{what} have different lengths ({left} vs {right})")]
    LengthMismatch {
        /// The two inputs.
        what: &'static str,
        /// Length of the first.
        left: usize,
        /// Length of the second.
        right: usize,
    },
    /// An error with the species / method / quantity it happened for.
    #[error("{context}: {source}")]
    Context {
        /// Where it happened.
        context: String,
        /// The underlying error.
        source: Box<StatsError>,
    },
}
