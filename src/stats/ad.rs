//! One-sample Anderson–Darling test.
//!
//! A^2 = -n - (1/n) sum_i (2i - 1) [ln F(x_(i)) + ln(1 - F(x_(n+1-i)))], the sample sorted.
//! Unlike the Kolmogorov–Smirnov statistic, A^2 weights the squared CDF discrepancy by
//! 1 / (F (1 - F)), so it is sensitive in the tails, which is where cutoffs live.
//!
//! p-value: the distribution of A^2 for a fully specified continuous distribution, evaluated
//! with Marsaglia & Marsaglia, "Evaluating the Anderson-Darling distribution", J. Stat. Softw.
//! 9(2) (2004): the asymptotic CDF (their `adinf`, absolute error < 2e-6) plus their finite-n
//! correction (`errfix`). When the parameters were fitted on the same sample the p-value is
//! optimistic (too large), as for the KS test: use it to rank and to reject, not as an exact
//! significance level.

use serde::{Deserialize, Serialize};

use super::StatsError;

/// Result of a one-sample Anderson–Darling test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdResult {
    /// The statistic A^2.
    pub statistic: f64,
    /// p-value P(A^2 >= statistic) for a fully specified distribution.
    pub p_value: f64,
    /// Sample size n.
    pub n: usize,
}

/// The Anderson–Darling test of `x` against `cdf`. CDF values are clamped to
/// [1e-300, 1 - 1e-16] so that a point outside the fitted support gives a large, finite A^2.
pub fn ad_test(x: &[f64], cdf: impl Fn(f64) -> f64) -> Result<AdResult, StatsError> {
    if x.is_empty() {
        return Err(StatsError::TooFewSamples { n: 0, needed: 1 });
    }
    for (index, &value) in x.iter().enumerate() {
        if !value.is_finite() {
            return Err(StatsError::BadValue {
                index,
                value,
                expected: "finite",
            });
        }
    }
    let mut u: Vec<f64> = x
        .iter()
        .map(|&v| cdf(v).clamp(1e-300, 1.0 - 1e-16))
        .collect();
    u.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = u.len();
    let mut s = 0.0;
    for i in 0..n {
        let w = (2 * i + 1) as f64;
        s += w * (u[i].ln() + (-u[n - 1 - i]).ln_1p());
    }
    let statistic = -(n as f64) - s / n as f64;
    Ok(AdResult {
        statistic,
        p_value: ad_sf(n, statistic),
        n,
    })
}

/// Asymptotic CDF of A^2 (Marsaglia & Marsaglia 2004, `adinf`).
pub fn ad_cdf_inf(z: f64) -> f64 {
    if !(z > 0.0) {
        return 0.0;
    }
    if z < 2.0 {
        (-1.233_714_1 / z).exp() / z.sqrt()
            * (2.00012
                + (0.247105 - (0.0649821 - (0.0347962 - (0.011672 - 0.00168691 * z) * z) * z) * z)
                    * z)
    } else {
        (-(1.0776
            - (2.30695 - (0.43424 - (0.082433 - (0.008056 - 0.0003146 * z) * z) * z) * z) * z)
            .exp())
        .exp()
    }
}

/// Finite-n correction of the asymptotic CDF value `x` (Marsaglia & Marsaglia 2004, `errfix`).
fn errfix(n: usize, x: f64) -> f64 {
    let n = n as f64;
    if x > 0.8 {
        return (-130.2137
            + (745.2337 - (1705.091 - (1950.646 - (1116.360 - 255.7844 * x) * x) * x) * x) * x)
            / n;
    }
    let c = 0.01265 + 0.1757 / n;
    if x < c {
        let t = x / c;
        let t = t.sqrt() * (1.0 - t) * (49.0 * t - 102.0);
        return t * (0.0037 / (n * n) + 0.00078 / n + 0.00006) / n;
    }
    let t = (x - c) / (0.8 - c);
    let t = -0.00022633 + (6.54034 - (14.6538 - (14.458 - (8.259 - 1.91864 * t) * t) * t) * t) * t;
    t * (0.04213 / n + 0.01365 / (n * n)) / n
}

/// P(A^2 >= z) for a sample of n from a fully specified continuous distribution.
pub fn ad_sf(n: usize, z: f64) -> f64 {
    if z >= 2.0 {
        // 1 - adinf without cancellation; in the far tail (sf < 1e-3) the finite-n correction,
        // whose own error is ~1e-5 / n, is dropped.
        let g = 1.0776
            - (2.30695 - (0.43424 - (0.082433 - (0.008056 - 0.0003146 * z) * z) * z) * z) * z;
        let sf = -(-g.exp()).exp_m1();
        if sf < 1e-3 {
            return sf;
        }
    }
    let x = ad_cdf_inf(z);
    (1.0 - (x + errfix(n.max(1), x))).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::dist::{ContinuousDistribution, Maxwell};
    use crate::stats::tests::{draw_gamma, draw_maxwell, rng};

    #[test]
    fn stats_ad_matches_the_published_critical_values() {
        // Asymptotic upper percentage points of A^2, case 0 (Stephens 1974; D'Agostino &
        // Stephens, Goodness-of-Fit Techniques, Table 4.2): 10 % 1.933, 5 % 2.492, 1 % 3.857.
        for (z, p) in [(1.933, 0.10), (2.492, 0.05), (3.857, 0.01)] {
            let sf = 1.0 - ad_cdf_inf(z);
            assert!((sf - p).abs() < 0.002, "{z}: {sf}");
            // With the finite-n correction, n = 1000 is close to the limit.
            assert!((ad_sf(1000, z) - p).abs() < 0.003);
        }
        assert_eq!(ad_sf(50, 0.0), 1.0);
        assert!(ad_sf(50, 40.0) < 1e-12);
    }

    #[test]
    fn stats_ad_accepts_the_right_distribution_and_sees_a_wrong_tail() {
        let mut r = rng(5);
        let m = Maxwell::new(0.1).unwrap();
        // Calibration of the p-value under the null: about 5 % of samples below 0.05.
        let mut low = 0;
        for _ in 0..400 {
            let x = draw_maxwell(&mut r, 0.1, 200);
            if ad_test(&x, |v| m.cdf(v)).unwrap().p_value < 0.05 {
                low += 1;
            }
        }
        assert!((8..=35).contains(&low), "{low} of 400 below 0.05");
        // A Gamma sample with the Maxwell's mean and a heavier tail is rejected.
        let x = draw_gamma(&mut r, 2.0, m.mean() / 2.0, 2000);
        let t = ad_test(&x, |v| m.cdf(v)).unwrap();
        assert!(t.p_value < 1e-4, "{t:?}");
        assert!(ad_test(&[], |v| v).is_err());
        assert!(ad_test(&[0.1, f64::NAN], |v| v).is_err());
    }
}
