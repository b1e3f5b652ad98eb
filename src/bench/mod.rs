//! The source papers' benchmarks (Annevelink & Viswanathan; Shuang et al., arXiv:2508.03405), as
//! library code the CLI drives:
//!
//! - [`al`]: the active-learning benchmark of Annevelink & Viswanathan on a fully labelled pool
//!   in time order (oracle, random and every uncertainty estimator), per-iteration metrics and
//!   their aggregation over repeats.
//! - [`heterogeneity`]: the study of Shuang et al.: homogeneous vs heterogeneous training data
//!   at several basis sizes; Spearman rho, calibration and novelty ROC-AUC per method, and per
//!   novel subset the size-matched structure and atom ROC-AUC, error-ranking recall at a
//!   labelling budget, a genuine-novelty check and the gamma_local-vs-gamma verdict.
//! - [`figures`] (CLI builds only): the PNG figures of both.
//!
//! Top layer (feature `cli`, not in the plugin's library): imports potential, uq, model, basis,
//! stats, structure;
//! only the CLI imports it.

pub mod al;
#[cfg(feature = "cli")]
pub mod figures;
pub mod heterogeneity;

use crate::model::ModelError;
use crate::stats::StatsError;
use crate::uq::UqError;

/// Errors of the benchmarks; messages say which input or step is at fault.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The input data cannot run the benchmark, with what to do.
    #[error("{0}")]
    Data(String),
    /// Fitting or evaluating a model failed.
    #[error("{context}: {source}")]
    Model {
        /// The step (e.g. "iteration 3: fit").
        context: String,
        /// The model error.
        source: ModelError,
    },
    /// Building or evaluating an uncertainty estimator failed.
    #[error("{context}: {source}")]
    Uq {
        /// The step.
        context: String,
        /// The estimator error.
        source: UqError,
    },
    /// A distribution fit or metric failed.
    #[error("{context}: {source}")]
    Stats {
        /// The step.
        context: String,
        /// The statistics error.
        source: StatsError,
    },
}

/// Mean of a slice (NaN when empty).
pub(crate) fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        f64::NAN
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

/// Fisher–Yates shuffle driven by a seeded generator (reproducible across platforms).
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut rand_chacha::ChaCha8Rng) {
    use rand::RngExt;
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}
