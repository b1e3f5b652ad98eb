//! One-sample Kolmogorov–Smirnov test, matching `scipy.stats.kstest(x, cdf)` with its defaults
//! (alternative='two-sided', method='auto').
//!
//! What scipy does (checked in scipy 1.17 source, `_stats_py.ks_1samp`): for a one-sample
//! two-sided test, method='auto' *always* selects 'exact', i.e. the p-value is
//! `kstwo.sf(D, n)`, the survival function of the exact finite-n distribution of D_n,
//! clipped to [0, 1]. (Older scipy switched to the asymptotic distribution for n > 10000;
//! current scipy does not.) `kstwo.sf` follows Simard & L'Ecuyer (2011), J. Stat. Softw. 39(11):
//! - n d <= 1/2: sf = 1; 1/2 < n d <= 1: Ruben–Gambino closed form n!/n^n (2nd - 1)^n;
//!   n d >= n - 1: sf = 2 (1 - d)^n;
//! - d >= 1/2: sf = 2 * smirnov(n, d) (exact, the one-sided events are disjoint);
//! - n <= 140: exact via Durbin's matrix (n d^2 <= 4; scipy uses Durbin below 0.754693 and
//!   Pomeranz's recursion above, both exact, so the values agree to rounding), otherwise
//!   2 * smirnov(n, d) (Miller's approximation);
//! - n > 140: n d^2 >= 370 gives 0, n d^2 >= 2.2 gives 2 * smirnov(n, d); below that
//!   1 - cdf with cdf from Durbin's matrix when n <= 1e5 and n d^1.5 <= 1.4, else the
//!   Pelz–Good asymptotic series.
//!
//! `smirnov(n, d)` = P(D_n^+ >= d) is evaluated exactly with the Birnbaum–Tingey sum in log
//! space (all terms positive, so no cancellation).
//!
//! The statistic: D = max(D+, D-), D+ = max_i (i/n - F(x_(i))), D- = max_i (F(x_(i)) - (i-1)/n).

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::dist::ContinuousDistribution;
use super::special::{ln_gamma, stirling_remainder};

/// Result of a one-sample Kolmogorov–Smirnov test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// The statistic D = sup |F_n - F|.
    pub statistic: f64,
    /// Two-sided p-value, as `scipy.stats.kstest` (method='auto', i.e. exact).
    pub p_value: f64,
    /// Sample size n.
    pub n: usize,
}

/// One-sample two-sided KS test of the sample `x` against `dist`.
///
/// Errors on an empty sample or a non-finite value (named by its 0-based index).
pub fn ks_test<D: ContinuousDistribution + ?Sized>(
    x: &[f64],
    dist: &D,
) -> Result<KsResult, StatsError> {
    let statistic = ks_statistic(x, |v| dist.cdf(v))?;
    let n = x.len();
    Ok(KsResult {
        statistic,
        p_value: kolmogorov_sf(n, statistic),
        n,
    })
}

/// The KS statistic D of a sample against a CDF (any callable).
pub fn ks_statistic(x: &[f64], cdf: impl Fn(f64) -> f64) -> Result<f64, StatsError> {
    if x.is_empty() {
        return Err(StatsError::TooFewSamples { n: 0, needed: 1 });
    }
    if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StatsError::BadValue {
            index,
            value,
            expected: "finite",
        });
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let mut d: f64 = 0.0;
    for (i, &v) in s.iter().enumerate() {
        let f = cdf(v);
        let dp = (i as f64 + 1.0) / n - f;
        let dm = f - i as f64 / n;
        d = d.max(dp).max(dm);
    }
    Ok(d)
}

/// P(D_n > d) for the two-sided one-sample statistic: scipy's `kstwo.sf(d, n)`.
pub fn kolmogorov_sf(n: usize, d: f64) -> f64 {
    kolmogn(n, d, false)
}

/// P(D_n <= d): scipy's `kstwo.cdf(d, n)`.
pub fn kolmogorov_cdf(n: usize, d: f64) -> f64 {
    kolmogn(n, d, true)
}

fn select(cdf_prob: f64, sf_prob: f64, want_cdf: bool) -> f64 {
    let p = if want_cdf { cdf_prob } else { sf_prob };
    if p.is_nan() { p } else { p.clamp(0.0, 1.0) }
}

/// ln(n! / n^n).
fn ln_nfact_over_npow(n: usize) -> f64 {
    let nf = n as f64;
    if n <= 140 {
        (1..=n).map(|i| (i as f64 / nf).ln()).sum()
    } else {
        // Stirling with n ln n removed analytically (it would cancel).
        0.5 * nf.ln() - nf + 0.5 * (2.0 * std::f64::consts::PI).ln() + stirling_remainder(nf)
    }
}

fn kolmogn(n: usize, x: f64, want_cdf: bool) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return select(1.0, 0.0, want_cdf);
    }
    if x <= 0.0 {
        return select(0.0, 1.0, want_cdf);
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return select(0.0, 1.0, want_cdf);
        }
        let prob = (ln_nfact_over_npow(n) + nf * (2.0 * t - 1.0).ln()).exp();
        return select(prob, 1.0 - prob, want_cdf);
    }
    if t >= nf - 1.0 {
        let prob = 2.0 * (1.0 - x).powf(nf);
        return select(1.0 - prob, prob, want_cdf);
    }
    if x >= 0.5 {
        let prob = 2.0 * smirnov_sf(n, x);
        return select(1.0 - prob, prob, want_cdf);
    }
    let nxx = t * x;
    if n <= 140 {
        if nxx <= 4.0 {
            let prob = durbin_cdf(n, x);
            return select(prob, 1.0 - prob, want_cdf);
        }
        let prob = 2.0 * smirnov_sf(n, x);
        return select(1.0 - prob, prob, want_cdf);
    }
    if !want_cdf {
        if nxx >= 370.0 {
            return 0.0;
        }
        if nxx >= 2.2 {
            return select(0.0, 2.0 * smirnov_sf(n, x), false);
        }
    }
    let cdf_prob = if nxx >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        durbin_cdf(n, x)
    } else {
        pelz_good_cdf(n, x)
    };
    select(cdf_prob, 1.0 - cdf_prob, want_cdf)
}

/// P(D_n^+ >= d), the one-sided Smirnov statistic (scipy.special.smirnov), by the exact
/// Birnbaum–Tingey sum d * sum_j C(n,j) (1 - d - j/n)^(n-j) (d + j/n)^(j-1), in log space.
pub fn smirnov_sf(n: usize, d: f64) -> f64 {
    if n == 0 || d.is_nan() {
        return f64::NAN;
    }
    if d <= 0.0 {
        return 1.0;
    }
    if d >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let nd = nf * d;
    let jmax = ((nf - nd).floor().max(0.0) as usize).min(n - 1);
    let half_ln_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    // ln m! - [(m + 1/2) ln m - m + ln(2 pi)/2].
    let rem = |m: f64| {
        if m >= 10.0 {
            stirling_remainder(m)
        } else {
            ln_gamma(m + 1.0) - ((m + 0.5) * m.ln() - m + half_ln_2pi)
        }
    };
    let rn = rem(nf);
    let mut terms = Vec::with_capacity(jmax + 1);
    // j = 0: (1 - d)^n / d.
    terms.push(nf * (-d).ln_1p() - d.ln());
    // j >= 1: ln C(n, j) (1 - d - j/n)^(n-j) (d + j/n)^(j-1), with Stirling's form of the
    // binomial so that the O(n ln n) parts cancel analytically: what remains are terms of
    // size O(n d), accurate to ~1e-13 even for n = 1e6.
    for j in 1..=jmax {
        let jf = j as f64;
        let nj = nf - jf;
        if nj - nd <= 0.0 {
            continue;
        }
        let t = nj * (-nd / nj).ln_1p() + jf * (nd / jf).ln_1p() - ((jf + nd) / nf).ln()
            + 0.5 * (nf / (jf * nj)).ln()
            - half_ln_2pi
            + rn
            - rem(jf)
            - rem(nj);
        terms.push(t);
    }
    let m = terms.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    if m == f64::NEG_INFINITY {
        return 0.0;
    }
    let s: f64 = terms.iter().map(|&v| (v - m).exp()).sum();
    (d.ln() + m + s.ln()).exp().clamp(0.0, 1.0)
}

/// Square matrix product c = a * b (row-major, dimension m).
fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * m];
    for i in 0..m {
        for k in 0..m {
            let aik = a[i * m + k];
            if aik == 0.0 {
                continue;
            }
            let brow = &b[k * m..(k + 1) * m];
            let crow = &mut c[i * m..(i + 1) * m];
            for (cv, bv) in crow.iter_mut().zip(brow) {
                *cv += aik * bv;
            }
        }
    }
    c
}

/// P(D_n < d) by Durbin's matrix formula, evaluated as in Marsaglia, Tsang & Wang (2003):
/// with d = (k - h)/n, k = ceil(n d), the answer is n!/n^n (H^n)_{kk} for a (2k-1)-square
/// matrix H. Powers are taken by squaring with a separate binary exponent to avoid overflow.
fn durbin_cdf(n: usize, d: f64) -> f64 {
    let nd = n as f64 * d;
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    // inv_fact[j] = 1/j!
    let mut inv_fact = vec![1.0; m + 1];
    for j in 1..=m {
        inv_fact[j] = inv_fact[j - 1] / j as f64;
    }
    let mut hm = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            if i + 1 >= j {
                hm[i * m + j] = inv_fact[i + 1 - j];
            }
        }
    }
    for i in 0..m {
        // First column and last row lose the h-power corners.
        hm[i * m] -= h.powi(i as i32 + 1) * inv_fact[i + 1];
        hm[(m - 1) * m + i] -= h.powi((m - i) as i32) * inv_fact[m - i];
    }
    if 2.0 * h - 1.0 > 0.0 {
        hm[(m - 1) * m] += (2.0 * h - 1.0).powi(m as i32) * inv_fact[m];
    }

    const BIG: f64 = 1.329_227_995_784_916e36; // 2^120
    let mut result: Option<(Vec<f64>, i64)> = None; // (matrix, binary exponent)
    let mut base = (hm, 0_i64);
    let mut e = n;
    while e > 0 {
        if e & 1 == 1 {
            result = Some(match result {
                None => base.clone(),
                Some((r, re)) => (matmul(&r, &base.0, m), re + base.1),
            });
            if let Some((r, re)) = result.as_mut() {
                let c = r[(k - 1) * m + (k - 1)].abs();
                if c > BIG {
                    r.iter_mut().for_each(|v| *v /= BIG);
                    *re += 120;
                }
            }
        }
        e >>= 1;
        if e > 0 {
            let sq = matmul(&base.0, &base.0, m);
            let mut ex = base.1 * 2;
            let mut sq = sq;
            let c = sq[(k - 1) * m + (k - 1)].abs();
            if c > BIG {
                sq.iter_mut().for_each(|v| *v /= BIG);
                ex += 120;
            }
            base = (sq, ex);
        }
    }
    let Some((r, re)) = result else { return 0.0 };
    let hkk = r[(k - 1) * m + (k - 1)];
    if !(hkk > 0.0) {
        return 0.0;
    }
    let ln_p = hkk.ln() + re as f64 * std::f64::consts::LN_2 + ln_nfact_over_npow(n);
    ln_p.exp().clamp(0.0, 1.0)
}

/// Pelz–Good (1976) asymptotic series for P(D_n <= d): K0 + K1/sqrt(n) + K2/n + K3/n^1.5 in
/// their small-z (theta-function) form, z = d sqrt(n).
fn pelz_good_cdf(n: usize, d: f64) -> f64 {
    use std::f64::consts::PI;
    let nf = n as f64;
    let z = nf.sqrt() * d;
    let (z2, z3, z4, z6) = (z * z, z * z * z, z.powi(4), z.powi(6));
    let pi2 = PI * PI;
    let (pi4, pi6) = (pi2 * pi2, pi2 * pi2 * pi2);
    let qlog = -pi2 / (8.0 * z2);
    if qlog < -708.0 {
        return 0.0;
    }
    let maxk = (16.0 * z / PI).ceil().max(1.0) as usize;
    let mut k = [0.0_f64; 4];
    for kk in 1..=maxk {
        let mm = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (mm * mm, mm.powi(4), mm.powi(6));
        let w = (qlog * m2).exp();
        k[0] += w;
        k[1] += w * (-z2 + pi2 / 4.0 * m2);
        k[2] += w
            * (6.0 * z6
                + 2.0 * z4
                + (2.0 * z4 - 5.0 * z2) * pi2 / 4.0 * m2
                + pi4 * (1.0 - 2.0 * z2) / 16.0 * m4);
        k[3] += w
            * (-30.0 * z6 - 90.0 * z.powi(8)
                + pi2 * (135.0 * z4 - 96.0 * z6) / 4.0 * m2
                + pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0 * m4
                + pi6 * (5.0 - 30.0 * z2) / 64.0 * m6);
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    k[0] *= sqrt2pi / z;
    k[1] *= sqrt2pi / (6.0 * z4);
    k[2] *= sqrt2pi / (72.0 * z.powi(7));
    k[3] *= sqrt2pi / (6480.0 * z.powi(10));
    // The second family of terms, over all integers k >= 1.
    let q2log = -pi2 / (2.0 * z2);
    let (mut s2, mut s3) = (0.0, 0.0);
    for kk in 1..=maxk {
        let kf = kk as f64;
        let w = (q2log * kf * kf).exp();
        s2 += kf * kf * w;
        s3 += (3.0 * z2 - pi2 * kf * kf) * kf * kf * w;
    }
    k[2] += s2 * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += s3 * pi2 * sqrt2pi / (216.0 * z6);
    let sn = nf.sqrt();
    k[0] + k[1] / sn + k[2] / nf + k[3] / (nf * sn)
}
