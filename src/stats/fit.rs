//! Maximum-likelihood fits (location fixed at 0) of the three families of Annevelink & Viswanathan.
//!
//! - Maxwell: closed form sigma^2 = sum x^2 / (3 n).
//! - Gamma: the shape solves ln k - psi(k) = ln(mean x) - mean(ln x) (safeguarded Newton in
//!   ln k), then scale = mean / k. Same equations as scipy's `gamma.fit(x, floc=0)`.
//! - Generalized Gamma: both the scale and the shape a are profiled out, leaving a
//!   one-dimensional problem in c. For fixed c, x^c is Gamma(a, s^c) distributed, so the
//!   maximizing a(c) solves the Gamma equation for the sample x^c and s^c = mean(x^c) / a.
//!   The profile log-likelihood g(c) is scanned on a log grid of |c| (both signs) and the best
//!   cell refined by Brent's method. A scan plus bracketed refinement needs no starting point,
//!   cannot diverge, and every evaluation is finite, so the fit never returns NaN.
//!
//!   Flat likelihood: as c -> 0 (with a ~ 1 / (c^2 var ln x) -> infinity) the family tends to
//!   the log-normal, and for log-normal-like data the likelihood keeps increasing toward that
//!   limit without a maximum. The search then stops at the edge of the allowed range
//!   (a <= [`GENGAMMA_A_MAX`], |c| >= [`GENGAMMA_C_MIN`]) and the fit is flagged
//!   [`GenGammaFit::at_bound`]; the returned distribution is a valid generalized Gamma whose
//!   log-likelihood is within a tiny amount of the supremum. The same flag is set if the optimum
//!   runs into |c| = [`GENGAMMA_C_MAX`].

use super::StatsError;
use super::dist::{Gamma, GenGamma, Maxwell};
use super::special::{ln_gamma, trigamma};

/// Largest shape a of the Gamma and generalized Gamma fits (a larger a is reported as a bound).
pub const GAMMA_A_MAX: f64 = 1e7;
/// Largest shape a the generalized Gamma profile may use (near the log-normal limit).
pub const GENGAMMA_A_MAX: f64 = 1e5;
/// Smallest |c| searched by the generalized Gamma fit (in units where the sample's geometric
/// mean is 1).
pub const GENGAMMA_C_MIN: f64 = 1e-3;
/// Largest |c| searched by the generalized Gamma fit.
pub const GENGAMMA_C_MAX: f64 = 200.0;

/// Checks that a sample can be fitted: at least 2 values, all finite and > 0.
///
/// The error names the first offending value by its 0-based index.
pub fn check_sample(x: &[f64]) -> Result<(), StatsError> {
    if x.len() < 2 {
        return Err(StatsError::TooFewSamples {
            n: x.len(),
            needed: 2,
        });
    }
    for (index, &value) in x.iter().enumerate() {
        if !(value.is_finite() && value > 0.0) {
            return Err(StatsError::BadValue {
                index,
                value,
                expected: "finite and > 0",
            });
        }
    }
    Ok(())
}

/// Maxwell MLE: sigma^2 = sum x^2 / (3 n).
pub fn fit_maxwell(x: &[f64]) -> Result<Maxwell, StatsError> {
    check_sample(x)?;
    // Scale first so that sum x^2 cannot overflow for huge values.
    let m = x.iter().fold(0.0_f64, |m, &v| m.max(v));
    let s2: f64 = x.iter().map(|&v| (v / m) * (v / m)).sum::<f64>() / (3.0 * x.len() as f64);
    Maxwell::new(m * s2.sqrt())
}

/// ln a - psi(a), computed without the cancellation of the plain difference for large a.
fn ln_minus_digamma(a: f64) -> f64 {
    if a >= 10.0 {
        // 1/(2a) + sum B_2k / (2k a^2k).
        let r = 1.0 / (a * a);
        0.5 / a
            + r * (1.0 / 12.0
                - r * (1.0 / 120.0
                    - r * (1.0 / 252.0
                        - r * (1.0 / 240.0
                            - r * (1.0 / 132.0 - r * (691.0 / 32760.0 - r / 12.0))))))
    } else {
        // psi(a) = psi(a + k) - sum_{i<k} 1/(a + i), and a + k >= 10.
        let mut y = a;
        let mut sum = 0.0;
        while y < 10.0 {
            sum += 1.0 / y;
            y += 1.0;
        }
        a.ln() - y.ln() + ln_minus_digamma(y) + sum
    }
}

/// Solves ln a - psi(a) = s for the Gamma shape a (s > 0), clamped to [1e-12, a_max].
///
/// Returns (a, clamped). The left side decreases monotonically from +inf to 0, so the root is
/// unique; Newton in ln a is safeguarded by a bisection bracket.
fn solve_gamma_shape(s: f64, a_max: f64) -> (f64, bool) {
    const A_MIN: f64 = 1e-12;
    if !(s > 0.0) || !s.is_finite() {
        // s = 0: all values equal (a -> inf); s = inf cannot happen for finite data.
        return (a_max, true);
    }
    let h = |y: f64| ln_minus_digamma(y.exp()) - s; // decreasing in y = ln a
    let (mut lo, mut hi) = (A_MIN.ln(), a_max.ln());
    if h(hi) > 0.0 {
        return (a_max, true);
    }
    if h(lo) < 0.0 {
        return (A_MIN, true);
    }
    // Minka's closed-form approximation as the start.
    let a0 = (3.0 - s + ((s - 3.0) * (s - 3.0) + 24.0 * s).sqrt()) / (12.0 * s);
    let mut y = a0.ln().clamp(lo, hi);
    for _ in 0..200 {
        let hy = h(y);
        if hy > 0.0 {
            lo = y;
        } else {
            hi = y;
        }
        let a = y.exp();
        // d/dy (ln a - psi(a)) = 1 - a psi'(a) (< 0).
        let d = 1.0 - a * trigamma(a);
        let mut next = if d < 0.0 { y - hy / d } else { f64::NAN };
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        let done = (next - y).abs() < 1e-15 * (1.0 + y.abs()) || hi - lo < 1e-15;
        y = next;
        if done {
            break;
        }
    }
    (y.exp(), false)
}

/// Gamma MLE with location 0. Errors if the sample is invalid or all values are equal.
pub fn fit_gamma(x: &[f64]) -> Result<Gamma, StatsError> {
    check_sample(x)?;
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let mean_ln = x.iter().map(|v| v.ln()).sum::<f64>() / n;
    let s = mean.ln() - mean_ln;
    if !(s > 1e-14) {
        return Err(StatsError::Degenerate {
            what: "Gamma fit",
            reason: "all values are (nearly) equal".into(),
        });
    }
    let (a, _) = solve_gamma_shape(s, GAMMA_A_MAX);
    Gamma::new(a, mean / a)
}

/// Result of the generalized Gamma fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenGammaFit {
    /// The fitted distribution.
    pub dist: GenGamma,
    /// Log-likelihood of the sample at the fit.
    pub log_likelihood: f64,
    /// True if the optimum lies on the edge of the search range (flat likelihood toward the
    /// log-normal limit, or |c| at its maximum); see the module documentation.
    pub at_bound: bool,
    /// Number of profile-likelihood evaluations used.
    pub evaluations: usize,
}

/// The profile log-likelihood of the generalized Gamma in c, on log-centred data.
struct Profile {
    /// ln x_i - mean(ln x).
    l: Vec<f64>,
    max_l: f64,
    min_l: f64,
    evaluations: usize,
}

struct ProfilePoint {
    /// Mean log-likelihood per sample (of the centred data).
    g: f64,
    a: f64,
    /// ln mean exp(c l_i).
    m: f64,
    clamped: bool,
}

impl Profile {
    /// ln mean_i exp(c l_i), stable for tiny |c| (expm1 form) and huge |c| (log-sum-exp).
    fn ln_mean_exp(&self, c: f64) -> f64 {
        let n = self.l.len() as f64;
        let cmax = (c * self.max_l).max(c * self.min_l);
        if cmax.abs() < 0.5 && (c * self.min_l).abs().max(cmax.abs()) < 0.5 {
            let s: f64 = self.l.iter().map(|&v| (c * v).exp_m1()).sum::<f64>() / n;
            s.ln_1p()
        } else {
            let s: f64 = self.l.iter().map(|&v| (c * v - cmax).exp()).sum::<f64>() / n;
            cmax + s.ln()
        }
    }

    fn eval(&mut self, c: f64) -> ProfilePoint {
        self.evaluations += 1;
        let m = self.ln_mean_exp(c);
        // mean(c l) = 0, so by Jensen m >= 0; m is the Gamma statistic of the sample x^c.
        let (a, clamped) = solve_gamma_shape(m, GENGAMMA_A_MAX);
        // Mean log-likelihood at the profiled scale: with sum l = 0 it is
        // ln|c| - ln Gamma(a) + a ln a - a - a m; -ln Gamma(a) + a ln a - a is written via the
        // Stirling remainder for large a, where the three terms nearly cancel.
        let gamma_part = if a >= 10.0 {
            let r = 1.0 / (a * a);
            let rem = (1.0 / 12.0
                - r * (1.0 / 360.0 - r * (1.0 / 1260.0 - r * (1.0 / 1680.0 - r / 1188.0))))
                / a;
            0.5 * (a / (2.0 * std::f64::consts::PI)).ln() - rem
        } else {
            -ln_gamma(a) + a * a.ln() - a
        };
        let g = c.abs().ln() + gamma_part - a * m;
        // The scale relative to the geometric mean is exp((m - ln a)/c); beyond e^+-500 it is
        // not representable in f64 once multiplied out, so such points are excluded.
        let representable = ((m - a.ln()) / c).abs() < 500.0;
        let g = if g.is_finite() && representable {
            g
        } else {
            f64::NEG_INFINITY
        };
        ProfilePoint {
            g,
            a,
            m,
            clamped: clamped || !representable,
        }
    }
}

/// Brent's minimization of f on [lo, hi] (golden section with parabolic steps).
pub(crate) fn brent_min(mut f: impl FnMut(f64) -> f64, lo: f64, hi: f64, tol: f64) -> (f64, f64) {
    const GOLD: f64 = 0.381_966_011_250_105_1;
    let (mut a, mut b) = (lo, hi);
    let mut x = a + GOLD * (b - a);
    let (mut w, mut v) = (x, x);
    let mut fx = f(x);
    let (mut fw, mut fv) = (fx, fx);
    let mut d: f64 = 0.0;
    let mut e: f64 = 0.0;
    for _ in 0..200 {
        let xm = 0.5 * (a + b);
        let tol1 = tol * x.abs() + 1e-12;
        let tol2 = 2.0 * tol1;
        if (x - xm).abs() <= tol2 - 0.5 * (b - a) {
            break;
        }
        let mut golden = true;
        if e.abs() > tol1 {
            let r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            if p.abs() < (0.5 * q * e).abs() && p > q * (a - x) && p < q * (b - x) {
                e = d;
                d = p / q;
                let u = x + d;
                if u - a < tol2 || b - u < tol2 {
                    d = if xm >= x { tol1 } else { -tol1 };
                }
                golden = false;
            }
        }
        if golden {
            e = if x >= xm { a - x } else { b - x };
            d = GOLD * e;
        }
        let u = if d.abs() >= tol1 {
            x + d
        } else {
            x + tol1.copysign(d)
        };
        let fu = f(u);
        if fu <= fx {
            if u >= x {
                a = x;
            } else {
                b = x;
            }
            (v, fv, w, fw, x, fx) = (w, fw, x, fx, u, fu);
        } else {
            if u < x {
                a = u;
            } else {
                b = u;
            }
            if fu <= fw || w == x {
                (v, fv, w, fw) = (w, fw, u, fu);
            } else if fu <= fv || v == x || v == w {
                (v, fv) = (u, fu);
            }
        }
    }
    (x, fx)
}

/// Generalized Gamma MLE with location 0 (scipy's `gengamma`, c of either sign).
///
/// Errors if the sample is invalid or all values are equal. See the module documentation for
/// the algorithm and for what happens when the likelihood is flat.
pub fn fit_gengamma(x: &[f64]) -> Result<GenGammaFit, StatsError> {
    check_sample(x)?;
    let n = x.len() as f64;
    let mean_ln = x.iter().map(|v| v.ln()).sum::<f64>() / n;
    let l: Vec<f64> = x.iter().map(|v| v.ln() - mean_ln).collect();
    let var = l.iter().map(|v| v * v).sum::<f64>() / n;
    let (min_l, max_l) = l
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !(var > 1e-24) || max_l - min_l <= 0.0 {
        return Err(StatsError::Degenerate {
            what: "generalized Gamma fit",
            reason: "all values are (nearly) equal".into(),
        });
    }
    let mut prof = Profile {
        l,
        max_l,
        min_l,
        evaluations: 0,
    };

    // Below |c| ~ 1/sqrt(A_MAX var) the shape would exceed GENGAMMA_A_MAX anyway.
    let c_lo = GENGAMMA_C_MIN
        .max(0.5 / (GENGAMMA_A_MAX * var).sqrt())
        .min(1.0);
    let (t_lo, t_hi) = (c_lo.ln(), GENGAMMA_C_MAX.ln());
    const GRID: usize = 48;
    let step = (t_hi - t_lo) / (GRID - 1) as f64;

    // Scan t = ln|c| for both signs; remember the best grid point.
    let mut best = (f64::NEG_INFINITY, 1.0, 0usize);
    let mut grid = [[f64::NEG_INFINITY; GRID]; 2];
    for (si, sign) in [1.0, -1.0].into_iter().enumerate() {
        for (k, gk) in grid[si].iter_mut().enumerate() {
            let c = sign * (t_lo + step * k as f64).exp();
            *gk = prof.eval(c).g;
            if *gk > best.0 {
                best = (*gk, sign, k);
            }
        }
    }
    let (g_best, sign, k) = best;
    if g_best == f64::NEG_INFINITY {
        return Err(StatsError::Degenerate {
            what: "generalized Gamma fit",
            reason: "no parameters with a representable scale; the data span too many decades"
                .into(),
        });
    }
    // A grid neighbour outside the usable region means the optimum may lie beyond it.
    let row = &grid[if sign > 0.0 { 0 } else { 1 }];
    let next_to_excluded = (k > 0 && row[k - 1] == f64::NEG_INFINITY)
        || (k + 1 < GRID && row[k + 1] == f64::NEG_INFINITY);
    let lo = t_lo + step * (k.saturating_sub(1)) as f64;
    let hi = t_lo + step * ((k + 1).min(GRID - 1)) as f64;
    let (t_best, _) = brent_min(|t| -prof.eval(sign * t.exp()).g, lo, hi, 1e-10);
    // Keep the grid point if Brent did not improve on it (flat or noisy profile).
    let t_grid = t_lo + step * k as f64;
    let pb = prof.eval(sign * t_best.exp());
    let pg = prof.eval(sign * t_grid.exp());
    let (t, p) = if pb.g >= pg.g {
        (t_best, pb)
    } else {
        (t_grid, pg)
    };
    let c = sign * t.exp();
    let at_edge = (t - t_lo).abs() < 1e-6 * step || (t_hi - t).abs() < 1e-6 * step;
    let at_bound = at_edge || p.clamped || next_to_excluded;

    // Scale in the original units: ln s = mean ln x + (m - ln a) / c.
    let scale = (mean_ln + (p.m - p.a.ln()) / c).exp();
    let dist = GenGamma::new(p.a, c, scale).map_err(|e| StatsError::Degenerate {
        what: "generalized Gamma fit",
        reason: format!("optimum has invalid parameters ({e}); the data may span too many decades"),
    })?;
    // Log-likelihood in original units: the centred one minus n * mean ln x (Jacobian).
    let log_likelihood = n * p.g - n * mean_ln;
    Ok(GenGammaFit {
        dist,
        log_likelihood,
        at_bound,
        evaluations: prof.evaluations,
    })
}
