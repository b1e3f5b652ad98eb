//! The generalized Pareto distribution (GPD) of peaks over a threshold, and its
//! maximum-likelihood fit.
//!
//! Extreme value theory (Pickands–Balkema–de Haan): for a wide class of distributions the
//! excesses y = x - t over a high threshold t follow, approximately, a GPD with shape xi and
//! scale sigma:
//! - sf(y) = (1 + xi y / sigma)^(-1/xi) for xi != 0, exp(-y / sigma) for xi = 0;
//! - support y >= 0, and y <= -sigma / xi when xi < 0 (a bounded tail).
//!
//! xi > 0 is a power-law tail (heavier than any Gamma), xi = 0 an exponential-type tail
//! (Gamma, Maxwell, generalized Gamma with c > 0 all lie in this class in the limit), xi < 0 a
//! tail with a finite end point.
//!
//! The fit profiles sigma out (Grimshaw 1993): with theta = xi / sigma, the likelihood is
//! maximized in xi for fixed theta by xi(theta) = mean(ln(1 + theta y)), which leaves the
//! one-dimensional profile l(theta) = -n ln(xi(theta) / theta) - n xi(theta) - n, with the
//! exponential limit -n ln(mean y) - n at theta = 0. The profile is scanned on a grid over
//! theta in (-1/y_max, +inf) and the best cell refined by Brent's method, so the fit needs no
//! starting point and cannot diverge. xi is kept >= -0.5 (below it the maximum-likelihood
//! estimator is not regular and for xi < -1 the likelihood is unbounded).

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::dist::ContinuousDistribution;
use super::fit::brent_min;

/// Smallest shape the fit accepts (the maximum-likelihood estimator is regular above -0.5).
pub const GPD_XI_MIN: f64 = -0.5;

/// Generalized Pareto distribution of excesses y >= 0 (location 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GpdRaw")]
pub struct Gpd {
    xi: f64,
    sigma: f64,
}

#[derive(Deserialize)]
struct GpdRaw {
    xi: f64,
    sigma: f64,
}

impl TryFrom<GpdRaw> for Gpd {
    type Error = StatsError;
    fn try_from(r: GpdRaw) -> Result<Self, StatsError> {
        Gpd::new(r.xi, r.sigma)
    }
}

/// |xi| below which the xi = 0 (exponential) formulas are used, avoiding 0/0.
const XI_ZERO: f64 = 1e-9;

impl Gpd {
    /// GPD with shape `xi` (finite) and scale `sigma` (> 0).
    pub fn new(xi: f64, sigma: f64) -> Result<Self, StatsError> {
        if !xi.is_finite() {
            return Err(StatsError::InvalidParameter {
                name: "GPD shape xi",
                value: xi,
            });
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(StatsError::InvalidParameter {
                name: "GPD scale sigma",
                value: sigma,
            });
        }
        Ok(Self { xi, sigma })
    }
    /// Shape xi (> 0: power-law tail, 0: exponential, < 0: bounded).
    pub fn xi(&self) -> f64 {
        self.xi
    }
    /// Scale sigma.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }
    /// Upper end of the support (+inf unless xi < 0).
    pub fn upper_end(&self) -> f64 {
        if self.xi < -XI_ZERO {
            -self.sigma / self.xi
        } else {
            f64::INFINITY
        }
    }
    /// ln(1 + xi y / sigma) / xi, i.e. -ln sf(y), continuous through xi = 0.
    fn neg_ln_sf(&self, y: f64) -> f64 {
        let z = y / self.sigma;
        if self.xi.abs() < XI_ZERO {
            z
        } else {
            (self.xi * z).ln_1p() / self.xi
        }
    }
}

impl ContinuousDistribution for Gpd {
    fn ln_pdf(&self, y: f64) -> f64 {
        if !(y >= 0.0) || y > self.upper_end() {
            return f64::NEG_INFINITY;
        }
        let z = y / self.sigma;
        let l = if self.xi.abs() < XI_ZERO {
            -z
        } else {
            -(1.0 + 1.0 / self.xi) * (self.xi * z).ln_1p()
        };
        l - self.sigma.ln()
    }
    fn cdf(&self, y: f64) -> f64 {
        if !(y > 0.0) {
            return 0.0;
        }
        if y >= self.upper_end() {
            return 1.0;
        }
        -(-self.neg_ln_sf(y)).exp_m1()
    }
    fn sf(&self, y: f64) -> f64 {
        if !(y > 0.0) {
            return 1.0;
        }
        if y >= self.upper_end() {
            return 0.0;
        }
        (-self.neg_ln_sf(y)).exp()
    }
    fn ppf(&self, p: f64) -> f64 {
        if !(0.0..=1.0).contains(&p) {
            return f64::NAN;
        }
        // sf = 1 - p, computed as -ln(1 - p) without loss for small p.
        let l = -(-p).ln_1p();
        self.at_neg_ln_sf(l)
    }
    fn isf(&self, q: f64) -> f64 {
        if !(0.0..=1.0).contains(&q) {
            return f64::NAN;
        }
        self.at_neg_ln_sf(-q.ln())
    }
    fn mean(&self) -> f64 {
        if self.xi < 1.0 {
            self.sigma / (1.0 - self.xi)
        } else {
            f64::INFINITY
        }
    }
}

impl Gpd {
    /// The y with -ln sf(y) = l (l >= 0).
    fn at_neg_ln_sf(&self, l: f64) -> f64 {
        if l.is_infinite() {
            return self.upper_end();
        }
        if self.xi.abs() < XI_ZERO {
            self.sigma * l
        } else {
            self.sigma * (self.xi * l).exp_m1() / self.xi
        }
    }
}

/// Profile log-likelihood of the GPD at theta = xi / sigma; returns (l, xi).
fn profile(y: &[f64], theta: f64) -> (f64, f64) {
    let n = y.len() as f64;
    if theta.abs() < 1e-12 {
        let m = y.iter().sum::<f64>() / n;
        return (-n * m.ln() - n, 0.0);
    }
    let mut s = 0.0;
    for &v in y {
        let w = theta * v;
        if !(w > -1.0) {
            return (f64::NEG_INFINITY, f64::NAN);
        }
        s += w.ln_1p();
    }
    let xi = s / n;
    let ratio = xi / theta;
    if !(ratio > 0.0) {
        return (f64::NEG_INFINITY, xi);
    }
    (-n * ratio.ln() - n * xi - n, xi)
}

/// Maximum-likelihood GPD fit to excesses `y` (all finite and >= 0, at least 5, not all
/// equal). See the module documentation for the algorithm.
pub fn fit_gpd(y: &[f64]) -> Result<Gpd, StatsError> {
    if y.len() < 5 {
        return Err(StatsError::TooFewSamples {
            n: y.len(),
            needed: 5,
        });
    }
    for (index, &value) in y.iter().enumerate() {
        if !(value.is_finite() && value >= 0.0) {
            return Err(StatsError::BadValue {
                index,
                value,
                expected: "finite and >= 0 (excesses over the threshold)",
            });
        }
    }
    let ymax = y.iter().fold(0.0_f64, |m, &v| m.max(v));
    let ymean = y.iter().sum::<f64>() / y.len() as f64;
    if !(ymax > 0.0) || ymax - y.iter().fold(f64::INFINITY, |m, &v| m.min(v)) <= 1e-12 * ymax {
        return Err(StatsError::Degenerate {
            what: "GPD fit",
            reason: "all excesses are equal".into(),
        });
    }
    // theta on a grid: the negative side in (-1/ymax, 0) through u = theta * ymax in (-1, 0),
    // the positive side log-spaced from 1e-6 / ymean to 1e6 / ymean.
    let objective = |theta: f64| -> f64 {
        let (l, xi) = profile(y, theta);
        if !l.is_finite() || xi < GPD_XI_MIN {
            f64::INFINITY
        } else {
            -l
        }
    };
    let mut grid: Vec<f64> = Vec::new();
    for k in 1..40 {
        let u = -1.0 + (k as f64 / 40.0).powi(2);
        grid.push(u / ymax);
    }
    grid.push(0.0);
    for k in 0..=60 {
        grid.push(10f64.powf(-6.0 + 12.0 * k as f64 / 60.0) / ymean);
    }
    grid.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let values: Vec<f64> = grid.iter().map(|&t| objective(t)).collect();
    let (best, _) =
        values.iter().enumerate().fold(
            (0, f64::INFINITY),
            |(bi, bv), (i, &v)| {
                if v < bv { (i, v) } else { (bi, bv) }
            },
        );
    if !values[best].is_finite() {
        return Err(StatsError::Degenerate {
            what: "GPD fit",
            reason: "the likelihood is not finite anywhere (shape below -0.5)".into(),
        });
    }
    let lo = if best == 0 {
        grid[0] - 0.5 * (grid[0] + 1.0 / ymax)
    } else {
        grid[best - 1]
    };
    let hi = if best + 1 < grid.len() {
        grid[best + 1]
    } else {
        grid[best] * 2.0
    };
    let (theta, f) = brent_min(objective, lo, hi, 1e-10);
    let theta = if f <= values[best] { theta } else { grid[best] };
    let (_, xi) = profile(y, theta);
    let sigma = if theta.abs() < 1e-12 {
        ymean
    } else {
        xi / theta
    };
    Gpd::new(xi, sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{draw_gpd as draw, rng};

    #[test]
    fn stats_gpd_functions_are_consistent() {
        for (xi, sigma) in [(0.3, 2.0), (0.0, 1.5), (-0.25, 0.7), (1e-12, 1.0)] {
            let g = Gpd::new(xi, sigma).unwrap();
            for q in [0.5, 1e-3, 1e-9] {
                let y = g.isf(q);
                assert!((g.sf(y) / q - 1.0).abs() < 1e-10, "{xi} {q}");
                assert!((g.ppf(1.0 - q) - y).abs() <= 1e-6 * y.max(1.0));
                assert!((g.cdf(y) + g.sf(y) - 1.0).abs() < 1e-12);
            }
            // The density integrates to the CDF (midpoint rule up to the median).
            let med = g.isf(0.5);
            let h = med / 20000.0;
            let s: f64 = (0..20000).map(|k| g.pdf((k as f64 + 0.5) * h) * h).sum();
            assert!((s - 0.5).abs() < 1e-6, "{xi}: {s}");
        }
        // Closed forms: exponential sf(y) = exp(-y/sigma); xi = 0.5, sigma = 1: sf(y) = (1 + y/2)^-2.
        let e = Gpd::new(0.0, 2.0).unwrap();
        assert!((e.sf(3.0) - (-1.5f64).exp()).abs() < 1e-15);
        let p = Gpd::new(0.5, 1.0).unwrap();
        assert!((p.sf(2.0) - 0.25).abs() < 1e-15);
        assert_eq!(p.mean(), 2.0);
        let b = Gpd::new(-0.5, 1.0).unwrap();
        assert_eq!(b.upper_end(), 2.0);
        assert_eq!(b.sf(2.5), 0.0);
        assert!(Gpd::new(0.1, 0.0).is_err() && Gpd::new(f64::NAN, 1.0).is_err());
    }

    #[test]
    fn stats_gpd_fit_recovers_the_parameters() {
        let mut r = rng(41);
        for (xi, sigma) in [(0.3, 2.0), (0.0, 1.0), (-0.3, 0.5)] {
            let y = draw(&mut r, xi, sigma, 20000);
            let g = fit_gpd(&y).unwrap();
            assert!((g.xi() - xi).abs() < 0.03, "xi {xi}: {}", g.xi());
            assert!(
                (g.sigma() / sigma - 1.0).abs() < 0.04,
                "sigma {sigma}: {}",
                g.sigma()
            );
            // The fit is a maximum: nudging either parameter lowers the likelihood.
            let l0 = g.log_likelihood(&y);
            for (dx, ds) in [(0.01, 0.0), (-0.01, 0.0), (0.0, 0.01), (0.0, -0.01)] {
                let h = Gpd::new(g.xi() + dx, g.sigma() * (1.0 + ds)).unwrap();
                assert!(h.log_likelihood(&y) < l0, "{xi}: ({dx}, {ds})");
            }
        }
        assert!(fit_gpd(&[1.0; 10]).is_err());
        assert!(fit_gpd(&[1.0, 2.0]).is_err());
        let e = fit_gpd(&[0.1, 0.2, -0.3, 0.4, 0.5, 0.6])
            .unwrap_err()
            .to_string();
        assert!(e.contains("index 2"), "{e}");
    }
}
