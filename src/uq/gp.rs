//! Sparse Gaussian-process uncertainty (Annevelink & Viswanathan): per species, a GP on the reduced features
//! predicts the log force error; the uncertainty is `u = exp(mu + 2 s)` (eV/Å), with `mu` the
//! predicted log error and `s` the GP's posterior standard deviation of it.
//!
//! Training targets: `y = ln(max(e, error_floor))` of the main model's force errors on the
//! *validation* atoms (at most `max_points` per species, a seeded random subset beyond). The model
//! never saw those atoms, so their errors are honest generalization errors; training-set errors
//! would be optimistic and cross-validated ones would need refits. A constant mean (the mean
//! target) is subtracted: far from all data the prediction returns to it.
//!
//! Inputs: the standardized, PCA-reduced features with the residual coordinate
//! ([`super::features`]). Kernel: squared exponential with one length scale per input coordinate
//! (ARD, default: PCA coordinates have very different spreads and the residual is a different
//! kind of coordinate) or a single one (`ard = false`), `k(x, x') = s_f² exp(-½ Σ_d (x_d - x'_d)² /
//! l_d²)`.
//!
//! Approximation: DTC (deterministic training conditional; the SoR mean with the exact prior
//! variance term) with `M` inducing points = k-means centres of the training inputs (default 100).
//! Marginal likelihood `y ~ N(0, Q_nn + σ_n² I)`, `Q = K_nm K_mm⁻¹ K_mn`, evaluated and
//! differentiated in `O(n M²)` through Cholesky factors and Woodbury's identity. Hyperparameters
//! (log length scales, log s_f, log σ_n) maximize it by the spectral projected gradient method
//! with bounds (length scales within 10⁻²–10² of each coordinate's spread, noise at least 10⁻⁴ of
//! the target spread) from `restarts` starts (length scales ×1, ×1/3, ×3, …), fitted on at most
//! `opt_points` of the points; the final posterior uses all of them.
//!
//! Prediction: `mu(x) = ȳ + k_x·w`, `s²(x) = s_f² - |L_m⁻¹ k_x|² + σ_n² |L_A⁻¹ L_m⁻¹ k_x|²`
//! (`L_m L_mᵀ = K_mm`, `L_A L_Aᵀ = σ_n² I + V Vᵀ`, `V = L_m⁻¹ K_mn`): the latent variance, without
//! the noise. It is ~0 at inducing points when the noise is small, grows away from the data and
//! plateaus at the prior `s_f²` far away (by design). Per atom: the feature map
//! (`m × dim`), `M` kernel values and two triangular solves (`M²`), independent of the data size.

// `!(x > 0.0)` is used on purpose: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use super::features::{FeatureMap, FeatureSettings, rows_with_errors};
use super::optim::{SpgOptions, kmeans, spg};
use super::persist::{bad, f64_checked, f64_finite, get_meta, put_f64, put_meta, size};
use super::{DescriptorTable, UqError};
use crate::io::container::{Container, ContainerError};
use crate::model::Model;
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, Mat, Par, Side};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Relative jitter added to the diagonal of `K_mm` (times `s_f²`).
const JITTER: f64 = 1e-6;

/// Sparse-GP settings (`[uq.gp_settings]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Number of inducing points (k-means centres) per species.
    pub inducing: usize,
    /// One length scale per input coordinate (true) or a single one (false).
    pub ard: bool,
    /// Hyperparameter optimizer starts.
    pub restarts: usize,
    /// At most this many validation atoms per species train the GP.
    pub max_points: usize,
    /// At most this many of them are used to fit the hyperparameters.
    pub opt_points: usize,
    /// Optimizer iterations per start.
    pub max_iters: usize,
    /// Force errors below this (eV/Å) are raised to it before taking the log.
    pub error_floor: f64,
    /// PCA: keep the components explaining this fraction of the standardized variance.
    pub variance_fraction: f64,
    /// PCA: at most this many components.
    pub max_components: usize,
    /// Append the out-of-subspace residual as an input coordinate.
    pub residual: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            inducing: 100,
            ard: true,
            restarts: 3,
            max_points: 4000,
            opt_points: 1500,
            max_iters: 200,
            error_floor: 1e-3,
            variance_fraction: 0.99,
            max_components: 8,
            residual: true,
        }
    }
}

impl Settings {
    fn features(&self) -> FeatureSettings {
        FeatureSettings {
            variance_fraction: self.variance_fraction,
            max_components: self.max_components,
            residual: self.residual,
        }
    }

    fn validate(&self) -> Result<(), UqError> {
        self.features().validate("gp_settings")?;
        let bad = |what: &str| Err(UqError::Data(format!("[uq.gp_settings] {what}")));
        if self.inducing == 0 {
            return bad("inducing must be at least 1");
        }
        if self.restarts == 0 {
            return bad("restarts must be at least 1");
        }
        if self.max_points < 10 || self.opt_points < 10 {
            return bad("max_points and opt_points must be at least 10");
        }
        if !(self.error_floor > 0.0 && self.error_floor.is_finite()) {
            return bad("error_floor must be a positive number of eV/Å");
        }
        Ok(())
    }
}

/// Hyperparameters of the squared-exponential kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Hyper {
    /// Length scale of every input coordinate.
    pub lengthscale: Vec<f64>,
    /// Signal variance `s_f²`.
    pub signal_var: f64,
    /// Noise variance `σ_n²`.
    pub noise_var: f64,
}

#[inline]
fn kern(a: &[f64], b: &[f64], inv_l2: &[f64], sf2: f64) -> f64 {
    let mut r = 0.0;
    for ((x, y), w) in a.iter().zip(b).zip(inv_l2) {
        r += (x - y) * (x - y) * w;
    }
    sf2 * (-0.5 * r).exp()
}

/// A fitted DTC sparse GP on `dim`-dimensional inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct GpCore {
    pub dim: usize,
    /// `M × dim` inducing inputs.
    pub inducing: Vec<f64>,
    pub hyper: Hyper,
    /// Constant mean of the targets.
    pub mean: f64,
    /// Mean weights: `mu = mean + k·w`.
    pub weights: Vec<f64>,
    /// Lower Cholesky factors of `K_mm` and of `σ_n² I + V Vᵀ`, `M × M` row-major.
    pub chol_kmm: Vec<f64>,
    pub chol_a: Vec<f64>,
    inv_l2: Vec<f64>,
    /// Evaluation tables derived from the above ([`GpCore::prepare`]): the inducing inputs
    /// transposed (`dim × M`), so the kernel row of an input is built with contiguous loops.
    inducing_t: Vec<f64>,
    /// `L_m^-1` and `L_A^-1 L_m^-1` with their rows interleaved (row `2a` of the first, `2a + 1`
    /// of the second; `2M × M`, column-major): one matrix product per block of inputs gives
    /// both triangular solves of the variance. Both are lower triangular, so column `j` is zero
    /// above row `2j` and the product skips those blocks ([`SOLVE_PANEL`]).
    solve: Vec<f64>,
}

/// Inputs predicted together by [`SparseGp::values_into`].
const BLOCK: usize = 64;

/// Columns of `solve` per product in [`GpCore::predict_block`]: each panel starts at the first
/// row its columns can be nonzero in, which skips about 40% of the multiply-adds of the full
/// `2M × M` product for `M = 100` inducing inputs.
const SOLVE_PANEL: usize = 16;

/// Scratch of the batched prediction (grows to one block).
#[derive(Clone, Debug, Default)]
struct BlockScratch {
    x: Vec<f64>,
    z: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    mu: Vec<f64>,
    var: Vec<f64>,
}

/// Scratch for one GP prediction.
#[derive(Clone, Debug)]
struct GpScratch {
    k: Vec<f64>,
    q: Vec<f64>,
}

/// `v[i] = exp(v[i])` for the kernel arguments (`<= 0`): with AVX2 and FMA four at a time
/// (Cody–Waite reduction by ln 2, degree-12 Taylor polynomial on |r| <= ln 2 / 2, exponent
/// bits built directly; within 2 ulp of `f64::exp`), otherwise, and for arguments that are
/// not finite, positive or below -708 (near the subnormal range), with `f64::exp`.
fn exp_in_place(v: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::features().avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { exp_avx2(v) };
            return;
        }
    }
    for x in v.iter_mut() {
        *x = x.exp();
    }
}

/// [`exp_in_place`] with AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(v: &mut [f64]) {
    use std::arch::x86_64::*;
    // Round-to-nearest by adding 1.5 * 2^52: the low mantissa bits then hold the integer.
    const SHIFT: f64 = 6755399441055744.0;
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for |n| < 2^11 (fdlibm's constants).
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1/k!, k = 12 down to 2.
    const C: [f64; 11] = [
        2.08767569878681e-9,
        2.505210838544172e-8,
        2.755731922398589e-7,
        2.7557319223985893e-6,
        2.48015873015873e-5,
        1.984126984126984e-4,
        1.388888888888889e-3,
        8.333333333333333e-3,
        4.1666666666666664e-2,
        1.6666666666666666e-1,
        0.5,
    ];
    let n4 = v.len() / 4 * 4;
    // SAFETY: every vector access is at k + 4 <= n4 <= v.len().
    unsafe {
        let (shift, log2e) = (_mm256_set1_pd(SHIFT), _mm256_set1_pd(LOG2E));
        let (hi, lo) = (_mm256_set1_pd(-LN2_HI), _mm256_set1_pd(-LN2_LO));
        let (one, bound, zero) = (
            _mm256_set1_pd(1.0),
            _mm256_set1_pd(-708.0),
            _mm256_setzero_pd(),
        );
        let bias = _mm256_set1_epi64x(1023);
        let mut k = 0;
        while k < n4 {
            let x = _mm256_loadu_pd(v.as_ptr().add(k));
            // In range: -708 <= x <= 0 (false for NaN).
            let ok = _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_GE_OQ>(x, bound),
                _mm256_cmp_pd::<_CMP_LE_OQ>(x, zero),
            );
            if _mm256_movemask_pd(ok) != 0b1111 {
                for x in &mut v[k..k + 4] {
                    *x = x.exp();
                }
                k += 4;
                continue;
            }
            let t = _mm256_fmadd_pd(x, log2e, shift);
            let n = _mm256_sub_pd(t, shift);
            let r = _mm256_fmadd_pd(n, hi, x);
            let r = _mm256_fmadd_pd(n, lo, r);
            let mut p = _mm256_set1_pd(C[0]);
            for &c in &C[1..] {
                p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c));
            }
            p = _mm256_fmadd_pd(p, r, one);
            p = _mm256_fmadd_pd(p, r, one);
            // 2^n from the integer in t's low bits: (n + 1023) << 52.
            let e = _mm256_slli_epi64::<52>(_mm256_add_epi64(_mm256_castpd_si256(t), bias));
            _mm256_storeu_pd(
                v.as_mut_ptr().add(k),
                _mm256_mul_pd(p, _mm256_castsi256_pd(e)),
            );
            k += 4;
        }
    }
    for x in &mut v[n4..] {
        *x = x.exp();
    }
}

/// `L x = b` in place for a row-major lower-triangular `l` (`m × m`).
fn forward_subst(l: &[f64], m: usize, b: &mut [f64]) {
    for i in 0..m {
        // Four partial sums (features::dot): a single running sum made this latency-bound.
        let s = crate::simd::dot(&l[i * m..i * m + i], &b[..i]);
        b[i] = (b[i] - s) / l[i * m + i];
    }
}

fn to_row_major(a: faer::MatRef<'_, f64>) -> Vec<f64> {
    let (r, c) = (a.nrows(), a.ncols());
    let mut v = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..=i.min(c - 1) {
            v[i * c + j] = a[(i, j)];
        }
    }
    v
}

impl GpCore {
    /// Fill the evaluation tables derived from the inducing inputs and the Cholesky factors.
    /// The explicit triangular inverses replace two substitutions per input by one blocked
    /// matrix product (the factors are well conditioned: `K_mm` carries a relative jitter).
    fn prepare(mut self) -> Self {
        let (m, dim) = (self.weights.len(), self.dim);
        self.inducing_t = (0..dim * m)
            .map(|t| self.inducing[(t % m) * dim + t / m])
            .collect();
        let lm = Mat::from_fn(m, m, |i, j| self.chol_kmm[i * m + j]);
        let la = Mat::from_fn(m, m, |i, j| self.chol_a[i * m + j]);
        let mut w1 = Mat::from_fn(m, m, |i, j| if i == j { 1.0 } else { 0.0 });
        solve_lower_triangular_in_place(lm.as_ref(), w1.as_mut(), Par::Seq);
        let mut w2 = w1.clone();
        solve_lower_triangular_in_place(la.as_ref(), w2.as_mut(), Par::Seq);
        let mut solve = vec![0.0; 2 * m * m];
        for j in 0..m {
            for a in 0..m {
                solve[j * 2 * m + 2 * a] = w1[(a, j)];
                solve[j * 2 * m + 2 * a + 1] = w2[(a, j)];
            }
        }
        self.solve = solve;
        crate::simd::clear_upper_simd_state();
        self
    }

    /// [`GpCore::predict`] of `nb` inputs (`z` row-major `nb × dim`): means into `sc.mu`, latent
    /// variances into `sc.var`.
    fn predict_block(&self, z: &[f64], nb: usize, sc: &mut BlockScratch) {
        let (m, dim) = (self.weights.len(), self.dim);
        let sf2 = self.hyper.signal_var;
        sc.k.resize(nb * m, 0.0);
        sc.v.resize(nb * 2 * m, 0.0);
        sc.mu.resize(nb, 0.0);
        sc.var.resize(nb, 0.0);
        for r in 0..nb {
            let zr = &z[r * dim..(r + 1) * dim];
            let kr = &mut sc.k[r * m..(r + 1) * m];
            // Squared scaled distances to every inducing input, one input coordinate at a time
            // (same order of additions as `kern`).
            kr.fill(0.0);
            for c in 0..dim {
                let (zc, w) = (zr[c], self.inv_l2[c]);
                for (d2, &u) in kr.iter_mut().zip(&self.inducing_t[c * m..(c + 1) * m]) {
                    let t = zc - u;
                    *d2 += t * t * w;
                }
            }
            for kv in kr.iter_mut() {
                *kv *= -0.5;
            }
            exp_in_place(kr);
            let mut mu = self.mean;
            for (kv, &w) in kr.iter_mut().zip(&self.weights) {
                *kv *= sf2;
                mu += *kv * w;
            }
            sc.mu[r] = mu;
        }
        let lhs = faer::MatRef::from_column_major_slice(&self.solve, 2 * m, m);
        let rhs = faer::MatRef::from_column_major_slice(&sc.k[..nb * m], m, nb);
        let mut dst = faer::MatMut::from_column_major_slice_mut(&mut sc.v[..nb * 2 * m], 2 * m, nb);
        // Column panel [j0, j1) of the triangular factors is zero above row 2 j0: the first
        // panel writes every row, the others add to the rows from 2 j0 on.
        for j0 in (0..m).step_by(SOLVE_PANEL) {
            let w = SOLVE_PANEL.min(m - j0);
            let rows = 2 * (m - j0);
            matmul(
                dst.as_mut().submatrix_mut(2 * j0, 0, rows, nb),
                if j0 == 0 { Accum::Replace } else { Accum::Add },
                lhs.submatrix(2 * j0, j0, rows, w),
                rhs.submatrix(j0, 0, w, nb),
                1.0,
                Par::Seq,
            );
        }
        crate::simd::clear_upper_simd_state();
        for r in 0..nb {
            let v = &sc.v[r * 2 * m..(r + 1) * 2 * m];
            let (mut qkk, mut qa) = (0.0, 0.0);
            for pair in v.chunks_exact(2) {
                qkk += pair[0] * pair[0];
                qa += pair[1] * pair[1];
            }
            sc.var[r] = (sf2 - qkk + self.hyper.noise_var * qa).max(0.0);
        }
    }

    /// Posterior mean and latent variance at `x` (length `dim`), using `sc` as scratch.
    fn predict(&self, x: &[f64], sc: &mut GpScratch) -> (f64, f64) {
        let m = self.weights.len();
        let (k, q) = (&mut sc.k[..m], &mut sc.q[..m]);
        let mut mu = self.mean;
        for j in 0..m {
            let kv = kern(
                x,
                &self.inducing[j * self.dim..(j + 1) * self.dim],
                &self.inv_l2,
                self.hyper.signal_var,
            );
            k[j] = kv;
            mu += kv * self.weights[j];
        }
        forward_subst(&self.chol_kmm, m, k);
        let qkk: f64 = k.iter().map(|v| v * v).sum();
        q.copy_from_slice(k);
        forward_subst(&self.chol_a, m, q);
        let qa: f64 = q.iter().map(|v| v * v).sum();
        let var = (self.hyper.signal_var - qkk + self.hyper.noise_var * qa).max(0.0);
        (mu, var)
    }

    #[cfg(test)]
    fn scratch(&self) -> GpScratch {
        GpScratch {
            k: vec![0.0; self.weights.len()],
            q: vec![0.0; self.weights.len()],
        }
    }

    /// Posterior with fixed hyperparameters and inducing inputs on data `x` (`n × dim`), `y`.
    pub fn condition(
        x: &[f64],
        y: &[f64],
        dim: usize,
        inducing: Vec<f64>,
        hyper: Hyper,
    ) -> Result<GpCore, UqError> {
        let n = y.len();
        let m = inducing.len() / dim;
        let mean = y.iter().sum::<f64>() / n.max(1) as f64;
        let yc: Vec<f64> = y.iter().map(|v| v - mean).collect();
        let inv_l2: Vec<f64> = hyper.lengthscale.iter().map(|l| 1.0 / (l * l)).collect();
        let (sf2, sn2) = (hyper.signal_var, hyper.noise_var);
        let zr = |a: usize| &inducing[a * dim..(a + 1) * dim];
        let kmm = Mat::from_fn(m, m, |a, b| {
            kern(zr(a), zr(b), &inv_l2, sf2) + if a == b { JITTER * sf2 } else { 0.0 }
        });
        let lm = kmm.llt(Side::Lower).map_err(|_| {
            UqError::Numerical("GP: the inducing-point kernel matrix is not positive definite; use fewer inducing points".into())
        })?;
        let mut v = Mat::from_fn(m, n, |a, i| {
            kern(zr(a), &x[i * dim..(i + 1) * dim], &inv_l2, sf2)
        });
        solve_lower_triangular_in_place(lm.L(), v.as_mut(), Par::Seq);
        let mut amat = Mat::<f64>::zeros(m, m);
        matmul(
            amat.as_mut(),
            Accum::Replace,
            v.as_ref(),
            v.transpose(),
            1.0,
            Par::Seq,
        );
        for a in 0..m {
            amat[(a, a)] += sn2;
        }
        let la = amat.llt(Side::Lower).map_err(|_| {
            UqError::Numerical("GP: the posterior system is not positive definite".into())
        })?;
        // w = L_m^-T L_A^-T L_A^-1 V y  (= (σ² K_mm + K_mn K_nm)^-1 K_mn y).
        let mut t = Mat::from_fn(m, 1, |a, _| (0..n).map(|i| v[(a, i)] * yc[i]).sum::<f64>());
        solve_lower_triangular_in_place(la.L(), t.as_mut(), Par::Seq);
        solve_upper_triangular_in_place(la.L().transpose(), t.as_mut(), Par::Seq);
        solve_upper_triangular_in_place(lm.L().transpose(), t.as_mut(), Par::Seq);
        let weights: Vec<f64> = (0..m).map(|a| t[(a, 0)]).collect();
        if weights.iter().any(|w| !w.is_finite()) {
            return Err(UqError::Numerical(
                "GP: posterior weights are not finite".into(),
            ));
        }
        Ok(GpCore {
            dim,
            chol_kmm: to_row_major(lm.L()),
            chol_a: to_row_major(la.L()),
            inducing,
            hyper,
            mean,
            weights,
            inv_l2,
            inducing_t: vec![],
            solve: vec![],
        }
        .prepare())
    }
}

/// The DTC marginal likelihood on fixed data and inducing inputs, as a function of
/// `theta = [ln l (dim values, or 1 if isotropic), ln s_f, ln σ_n]`.
pub struct Dtc<'a> {
    pub x: &'a [f64],
    /// Centred targets.
    pub y: &'a [f64],
    pub z: &'a [f64],
    pub dim: usize,
    pub ard: bool,
}

impl Dtc<'_> {
    /// Number of hyperparameters.
    pub fn n_params(&self) -> usize {
        if self.ard { self.dim + 2 } else { 3 }
    }

    /// Hyperparameters from `theta`.
    pub fn hyper(&self, theta: &[f64]) -> Hyper {
        let nl = self.n_params() - 2;
        Hyper {
            lengthscale: (0..self.dim)
                .map(|d| theta[if self.ard { d } else { 0 }].exp())
                .collect(),
            signal_var: (2.0 * theta[nl]).exp(),
            noise_var: (2.0 * theta[nl + 1]).exp(),
        }
    }

    /// Negative log marginal likelihood and, if `grad` is non-empty, its gradient w.r.t. `theta`.
    /// Returns +inf when a factorization fails (the optimizer then shortens its step).
    pub fn nll(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let (dim, n) = (self.dim, self.y.len());
        let m = self.z.len() / dim;
        let h = self.hyper(theta);
        let inv_l2: Vec<f64> = h.lengthscale.iter().map(|l| 1.0 / (l * l)).collect();
        let (sf2, sn2) = (h.signal_var, h.noise_var);
        let zr = |a: usize| &self.z[a * dim..(a + 1) * dim];
        let xr = |i: usize| &self.x[i * dim..(i + 1) * dim];
        let kmm = Mat::from_fn(m, m, |a, b| {
            kern(zr(a), zr(b), &inv_l2, sf2) + if a == b { JITTER * sf2 } else { 0.0 }
        });
        let kmn = Mat::from_fn(m, n, |a, i| kern(zr(a), xr(i), &inv_l2, sf2));
        let Ok(lm) = kmm.llt(Side::Lower) else {
            return f64::INFINITY;
        };
        let mut v = kmn.clone();
        solve_lower_triangular_in_place(lm.L(), v.as_mut(), Par::Seq);
        let mut amat = Mat::<f64>::zeros(m, m);
        matmul(
            amat.as_mut(),
            Accum::Replace,
            v.as_ref(),
            v.transpose(),
            1.0,
            Par::Seq,
        );
        for a in 0..m {
            amat[(a, a)] += sn2;
        }
        let Ok(la) = amat.llt(Side::Lower) else {
            return f64::INFINITY;
        };
        let mut beta = Mat::from_fn(m, 1, |a, _| {
            (0..n).map(|i| v[(a, i)] * self.y[i]).sum::<f64>()
        });
        solve_lower_triangular_in_place(la.L(), beta.as_mut(), Par::Seq);
        let yty: f64 = self.y.iter().map(|v| v * v).sum();
        let btb: f64 = (0..m).map(|a| beta[(a, 0)].powi(2)).sum();
        let logdet_a: f64 = (0..m).map(|a| 2.0 * la.L()[(a, a)].ln()).sum();
        let nll = 0.5 * (yty - btb) / sn2
            + 0.5 * ((n as f64 - m as f64) * sn2.ln() + logdet_a)
            + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        if grad.is_empty() || !nll.is_finite() {
            return nll;
        }
        // gamma = A^-1 V y; alpha = Σ^-1 y = (y - V^T gamma) / σ².
        let mut gamma = beta.clone();
        solve_upper_triangular_in_place(la.L().transpose(), gamma.as_mut(), Par::Seq);
        let alpha: Vec<f64> = (0..n)
            .map(|i| (self.y[i] - (0..m).map(|a| v[(a, i)] * gamma[(a, 0)]).sum::<f64>()) / sn2)
            .collect();
        // U = K_mm^-1 K_mn.
        let mut u = v.clone();
        solve_upper_triangular_in_place(lm.L().transpose(), u.as_mut(), Par::Seq);
        // B = W K_nm K_mm^-1 = Σ^-1 U^T - alpha (U alpha)^T, W = Σ^-1 - alpha alpha^T.
        let mut p = Mat::<f64>::zeros(m, m);
        matmul(
            p.as_mut(),
            Accum::Replace,
            v.as_ref(),
            u.transpose(),
            1.0,
            Par::Seq,
        );
        let q = la.solve(&p);
        let mut b = u.transpose().to_owned();
        matmul(
            b.as_mut(),
            Accum::Add,
            v.transpose(),
            q.as_ref(),
            -1.0,
            Par::Seq,
        );
        let ua: Vec<f64> = (0..m)
            .map(|a| (0..n).map(|i| u[(a, i)] * alpha[i]).sum())
            .collect();
        for j in 0..m {
            for i in 0..n {
                b[(i, j)] = b[(i, j)] / sn2 - alpha[i] * ua[j];
            }
        }
        // C = K_mm^-1 K_mn B.
        let mut c = Mat::<f64>::zeros(m, m);
        matmul(
            c.as_mut(),
            Accum::Replace,
            u.as_ref(),
            b.as_ref(),
            1.0,
            Par::Seq,
        );
        // dNLL = sum_ij B_ij dKnm_ij - 1/2 sum_jl C_jl dKmm_jl for kernel parameters.
        let nl = self.n_params() - 2;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut lg = vec![0.0; dim];
        for j in 0..m {
            let zj = zr(j);
            for i in 0..n {
                let w = b[(i, j)] * kmn[(j, i)];
                let xi = xr(i);
                for d in 0..dim {
                    lg[d] += w * (xi[d] - zj[d]).powi(2) * inv_l2[d];
                }
            }
            for l in 0..m {
                let w = -0.5 * c[(j, l)] * kmm[(j, l)];
                let zl = zr(l);
                for d in 0..dim {
                    lg[d] += w * (zj[d] - zl[d]).powi(2) * inv_l2[d];
                }
            }
        }
        if self.ard {
            grad[..dim].copy_from_slice(&lg);
        } else {
            grad[0] = lg.iter().sum();
        }
        let mut gs = 0.0;
        for j in 0..m {
            for i in 0..n {
                gs += 2.0 * b[(i, j)] * kmn[(j, i)];
            }
            for l in 0..m {
                gs -= c[(j, l)] * kmm[(j, l)];
            }
        }
        grad[nl] = gs;
        // Noise: sn2 (tr Σ^-1 - alpha·alpha), tr Σ^-1 = (n - M + sn2 tr A^-1) / sn2.
        let mut linv = Mat::<f64>::identity(m, m);
        solve_lower_triangular_in_place(la.L(), linv.as_mut(), Par::Seq);
        let tr_ainv: f64 = (0..m)
            .map(|j| (0..m).map(|i| linv[(i, j)].powi(2)).sum::<f64>())
            .sum();
        let tr_sinv = (n as f64 - m as f64 + sn2 * tr_ainv) / sn2;
        let aa: f64 = alpha.iter().map(|v| v * v).sum();
        grad[nl + 1] = sn2 * (tr_sinv - aa);
        nll
    }
}

/// Fit a DTC GP on `x` (`n × dim`), `y`: k-means inducing inputs, hyperparameters by maximum
/// marginal likelihood (several starts, on at most `settings.opt_points` points), then the
/// posterior on all points. Returns the GP, the NLL per point at the optimum and whether the
/// best start converged.
pub fn fit_gp(
    x: &[f64],
    y: &[f64],
    dim: usize,
    settings: &Settings,
    rng: &mut ChaCha8Rng,
) -> Result<(GpCore, f64, bool), UqError> {
    let n = y.len();
    if n < 2 || x.len() != n * dim {
        return Err(UqError::Data(format!(
            "GP: needs at least 2 points, got {n}"
        )));
    }
    let inducing = kmeans(x, dim, settings.inducing.min(n), 50, rng);
    // Hyperparameter subset.
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order.truncate(settings.opt_points.min(n));
    let xo: Vec<f64> = order
        .iter()
        .flat_map(|&i| x[i * dim..(i + 1) * dim].to_vec())
        .collect();
    let ymean = y.iter().sum::<f64>() / n as f64;
    let yo: Vec<f64> = order.iter().map(|&i| y[i] - ymean).collect();
    let ysd = (yo.iter().map(|v| v * v).sum::<f64>() / yo.len() as f64)
        .sqrt()
        .max(1e-6);
    let sd: Vec<f64> = (0..dim)
        .map(|d| {
            let c: Vec<f64> = xo.iter().skip(d).step_by(dim).cloned().collect();
            let mu = c.iter().sum::<f64>() / c.len() as f64;
            (c.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / c.len() as f64)
                .sqrt()
                .max(1e-8)
        })
        .collect();
    let dtc = Dtc {
        x: &xo,
        y: &yo,
        z: &inducing,
        dim,
        ard: settings.ard,
    };
    let np = dtc.n_params();
    let nl = np - 2;
    let sd_iso = (sd.iter().map(|v| v * v).sum::<f64>() / dim as f64).sqrt();
    let lsd: Vec<f64> = if settings.ard {
        sd.iter().map(|v| v.ln()).collect()
    } else {
        vec![sd_iso.ln()]
    };
    let mut lower = vec![0.0; np];
    let mut upper = vec![0.0; np];
    for p in 0..nl {
        lower[p] = lsd[p] + (1e-2f64).ln();
        upper[p] = lsd[p] + (1e2f64).ln();
    }
    lower[nl] = ysd.ln() + (1e-3f64).ln();
    upper[nl] = ysd.ln() + (1e2f64).ln();
    lower[nl + 1] = ysd.ln() + (1e-4f64).ln();
    upper[nl + 1] = ysd.ln() + (1e1f64).ln();
    let factors = [1.0f64, 1.0 / 3.0, 3.0, 0.1, 10.0];
    let starts: Vec<Vec<f64>> = (0..settings.restarts)
        .map(|r| {
            let f = factors[r % factors.len()] * (1.0 + (r / factors.len()) as f64);
            let mut t: Vec<f64> = lsd.iter().map(|l| l + f.ln()).collect();
            t.push(ysd.ln());
            t.push((0.5 * ysd).ln());
            t
        })
        .collect();
    let no = yo.len() as f64;
    let opts = SpgOptions {
        max_iters: settings.max_iters,
        pg_tol: 1e-5,
        f_tol: 1e-9,
        ..Default::default()
    };
    let best = starts
        .par_iter()
        .map(|t0| {
            spg(
                |t, g| {
                    let f = dtc.nll(t, g);
                    g.iter_mut().for_each(|v| *v /= no);
                    f / no
                },
                t0,
                &lower,
                &upper,
                &opts,
            )
        })
        .filter(|r| r.f.is_finite())
        .min_by(|a, b| a.f.total_cmp(&b.f))
        .ok_or_else(|| {
            UqError::Numerical(
                "GP: the marginal likelihood could not be evaluated at any start; check the validation errors".into(),
            )
        })?;
    let hyper = dtc.hyper(&best.x);
    let gp = GpCore::condition(x, y, dim, inducing, hyper)?;
    Ok((gp, best.f, best.converged))
}

/// Per-species record in `[uq.gp]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeciesMeta {
    species: String,
    components: usize,
    residual: bool,
    explained_variance: f64,
    n_points: usize,
    inducing: usize,
    /// Constant mean of ln(error), signal and noise variances (of ln error).
    mean: f64,
    signal_var: f64,
    noise_var: f64,
    /// Negative log marginal likelihood per point at the optimum, and convergence.
    nll_per_point: f64,
    converged: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    /// The seed, as text (TOML integers cannot hold every u64).
    seed: String,
    ard: bool,
    error_floor: f64,
    species: Vec<SpeciesMeta>,
}

#[derive(Clone, Debug)]
struct SpeciesGp {
    features: FeatureMap,
    gp: GpCore,
}

/// Caller-owned scratch for [`SparseGp::value`].
#[derive(Clone, Debug)]
pub struct Scratch {
    x: Vec<f64>,
    z: Vec<f64>,
    gp: GpScratch,
    blk: BlockScratch,
}

impl Scratch {
    /// Scratch sized for `g`.
    pub fn new(g: &SparseGp) -> Scratch {
        let m = g.species.iter().map(|s| s.features.m).max().unwrap_or(0);
        let d = g
            .species
            .iter()
            .map(|s| s.features.dim())
            .max()
            .unwrap_or(0);
        let mi = g
            .species
            .iter()
            .map(|s| s.gp.weights.len())
            .max()
            .unwrap_or(0);
        Scratch {
            x: vec![0.0; m],
            z: vec![0.0; d],
            gp: GpScratch {
                k: vec![0.0; mi],
                q: vec![0.0; mi],
            },
            blk: BlockScratch::default(),
        }
    }
}

/// The sparse-GP estimator, one GP per species.
#[derive(Clone, Debug)]
pub struct SparseGp {
    species: Vec<SpeciesGp>,
    meta: Meta,
}

impl SparseGp {
    /// Build from the training descriptors (feature standardization and PCA), the validation
    /// descriptors and the main model's validation force errors (`valid_errors[structure][atom]`
    /// by the validation table's provenance).
    pub fn build(
        model: &Model,
        train: &DescriptorTable,
        valid: &DescriptorTable,
        valid_errors: &[Vec<f64>],
        settings: &Settings,
        seed: u64,
        progress: bool,
    ) -> Result<SparseGp, UqError> {
        settings.validate()?;
        let ns = model.nspecies();
        if train.per_species.len() != ns || valid.per_species.len() != ns {
            return Err(UqError::Data(
                "descriptor tables do not match the model's species".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0067_705f_7365_6564);
        let mut species = Vec::with_capacity(ns);
        let mut metas = Vec::with_capacity(ns);
        for s in 0..ns {
            let name = &model.species[s];
            let tr = &train.per_species[s];
            let va = &valid.per_species[s];
            if tr.m != model.nfuncs(s) || va.m != model.nfuncs(s) {
                return Err(UqError::Data(format!(
                    "species {name}: descriptor rows have the wrong length"
                )));
            }
            let fm = FeatureMap::fit(&tr.rows, tr.m, &settings.features(), name)?;
            let (mut idx, e) = rows_with_errors(va, valid_errors)?;
            if idx.len() < 20 {
                return Err(UqError::Data(format!(
                    "GP: species {name} has {} validation atoms with reference forces; needs at least 20 (add validation structures containing {name})",
                    idx.len()
                )));
            }
            let mut pairs: Vec<(usize, f64)> = idx.drain(..).zip(e).collect();
            if pairs.len() > settings.max_points {
                pairs.shuffle(&mut rng);
                pairs.truncate(settings.max_points);
            }
            let dim = fm.dim();
            let rows: Vec<f64> = pairs
                .iter()
                .flat_map(|&(r, _)| va.row(r).to_vec())
                .collect();
            let x = fm.apply_rows(&rows);
            let y: Vec<f64> = pairs
                .iter()
                .map(|&(_, e)| e.max(settings.error_floor).ln())
                .collect();
            crate::progress::note(
                progress,
                &format!(
                    "gp: species {name}: {} points, {dim} inputs, {} inducing",
                    y.len(),
                    settings.inducing.min(y.len())
                ),
            );
            let (gp, nll, converged) = fit_gp(&x, &y, dim, settings, &mut rng)?;
            metas.push(SpeciesMeta {
                species: name.clone(),
                components: fm.k,
                residual: fm.residual,
                explained_variance: fm.explained,
                n_points: y.len(),
                inducing: gp.weights.len(),
                mean: gp.mean,
                signal_var: gp.hyper.signal_var,
                noise_var: gp.hyper.noise_var,
                nll_per_point: nll,
                converged,
            });
            species.push(SpeciesGp { features: fm, gp });
        }
        Ok(SparseGp {
            species,
            meta: Meta {
                seed: seed.to_string(),
                ard: settings.ard,
                error_floor: settings.error_floor,
                species: metas,
            },
        })
    }

    /// Predicted log force error `mu` and its posterior standard deviation `s` for an atom of
    /// species `s` with basis vector `b`.
    pub fn predict(&self, s: usize, b: &[f64], scratch: &mut Scratch) -> (f64, f64) {
        let sg = &self.species[s];
        let dim = sg.features.dim();
        let z = &mut scratch.z[..dim];
        sg.features.apply(b, &mut scratch.x, z);
        let (mu, var) = sg.gp.predict(z, &mut scratch.gp);
        (mu, var.sqrt())
    }

    /// The value [`SparseGp::value`] tends to far from the training data (the prior plateau):
    /// `exp(mean + 2 s_f)`. The uncertainty saturates there by design, so errors beyond what
    /// the GP predicts at the plateau cannot be flagged by it.
    pub fn plateau(&self, s: usize) -> f64 {
        let g = &self.species[s].gp;
        (g.mean + 2.0 * g.hyper.signal_var.sqrt()).exp()
    }

    /// Uncertainty `exp(mu + 2 s)` (eV/Å) of an atom of species `s` with basis vector `b`.
    /// Allocation-free; cost independent of the data size.
    pub fn value(&self, s: usize, b: &[f64], scratch: &mut Scratch) -> f64 {
        let (mu, sd) = self.predict(s, b, scratch);
        (mu + 2.0 * sd).exp()
    }

    /// [`SparseGp::value`] of every row (`n × m_s`, row-major) of species `s` into `out`
    /// (`n` values), in blocks: the reduced features and both triangular solves of a block are
    /// matrix products. Equal to the row-by-row form up to rounding; allocation-free once the
    /// scratch has grown to a block.
    pub fn values_into(&self, s: usize, rows: &[f64], out: &mut [f64], scratch: &mut Scratch) {
        let sg = &self.species[s];
        let (m, dim) = (sg.features.m, sg.features.dim());
        assert_eq!(
            rows.len(),
            out.len() * m,
            "values_into: rows and output differ"
        );
        let blk = &mut scratch.blk;
        for (b, o) in out.chunks_mut(BLOCK).enumerate() {
            let nb = o.len();
            blk.z.resize(nb * dim, 0.0);
            let r = &rows[b * BLOCK * m..(b * BLOCK + nb) * m];
            sg.features
                .apply_block(r, nb, &mut blk.x, &mut blk.z[..nb * dim]);
            let z = std::mem::take(&mut blk.z);
            sg.gp.predict_block(&z, nb, blk);
            blk.z = z;
            for ((v, mu), var) in o.iter_mut().zip(&blk.mu).zip(&blk.var) {
                *v = (mu + 2.0 * var.sqrt()).exp();
            }
        }
    }

    /// [`SparseGp::value`] of every row (`n × m_s`, row-major) of species `s`, in parallel.
    pub fn values(&self, s: usize, rows: &[f64]) -> Vec<f64> {
        let m = self.species[s].features.m;
        let mut out = vec![0.0; rows.len() / m.max(1)];
        out.par_chunks_mut(BLOCK)
            .zip(rows.par_chunks(BLOCK * m.max(1)))
            .for_each_init(
                || Scratch::new(self),
                |sc, (o, r)| self.values_into(s, r, o, sc),
            );
        out
    }

    /// Fitted hyperparameters of species `s`.
    pub fn hyper(&self, s: usize) -> &Hyper {
        &self.species[s].gp.hyper
    }

    /// The human-readable record stored as `[uq.gp]` (TOML), for reports and `aceuq info`.
    pub fn summary(&self) -> String {
        toml::to_string(&self.meta).unwrap_or_default()
    }

    /// Store into a model file container.
    pub fn save(&self, c: &mut Container) {
        put_meta(c, "gp", &self.meta);
        for (s, sg) in self.species.iter().enumerate() {
            let p = format!("uq.gp.{s}");
            sg.features.save(c, &format!("{p}.features"));
            let (m, dim) = (sg.gp.weights.len(), sg.gp.dim);
            put_f64(c, &format!("{p}.inducing"), vec![m, dim], &sg.gp.inducing);
            put_f64(
                c,
                &format!("{p}.lengthscale"),
                vec![dim],
                &sg.gp.hyper.lengthscale,
            );
            put_f64(c, &format!("{p}.weights"), vec![m], &sg.gp.weights);
            put_f64(c, &format!("{p}.chol_kmm"), vec![m, m], &sg.gp.chol_kmm);
            put_f64(c, &format!("{p}.chol_a"), vec![m, m], &sg.gp.chol_a);
        }
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let Some(meta) = get_meta::<Meta>(path, c, "gp")? else {
            return Ok(None);
        };
        let ns = model.nspecies();
        crate::uq::persist::check_species_entries(
            path,
            "gp",
            meta.species.iter().map(|sm| sm.species.as_str()),
            model,
        )?;
        let mut species = Vec::with_capacity(ns);
        for (s, sm) in meta.species.iter().enumerate() {
            let ok = |v: f64| v.is_finite();
            if !(ok(sm.mean)
                && sm.signal_var > 0.0
                && ok(sm.signal_var)
                && sm.noise_var > 0.0
                && ok(sm.noise_var))
                || sm.inducing == 0
            {
                return Err(bad(
                    path,
                    format!(
                        "[uq.gp] species {}: mean, variances or inducing count are not usable (file corrupt or edited)",
                        sm.species
                    ),
                ));
            }
            let p = format!("uq.gp.{s}");
            let fm = FeatureMap::load(
                path,
                c,
                &format!("{p}.features"),
                model.nfuncs(s),
                sm.components,
                sm.residual,
                sm.explained_variance,
            )?;
            let (m, dim) = (sm.inducing, fm.dim());
            let name = format!("{p}.inducing");
            let inducing = f64_finite(path, c, &name, size(path, &name, m, dim)?)?;
            let lengthscale =
                f64_checked(path, c, &format!("{p}.lengthscale"), dim, "positive", |v| {
                    v > 0.0
                })?;
            let weights = f64_finite(path, c, &format!("{p}.weights"), m)?;
            let tri = |name: &str| -> Result<Vec<f64>, ContainerError> {
                let full = format!("{p}.{name}");
                let l = f64_finite(path, c, &full, size(path, &full, m, m)?)?;
                for i in 0..m {
                    if !(l[i * m + i] > 0.0)
                        || l[i * m + i + 1..(i + 1) * m].iter().any(|v| *v != 0.0)
                    {
                        return Err(bad(
                            path,
                            format!(
                                "array '{full}' is not a Cholesky factor (row {i}; file corrupt or edited)"
                            ),
                        ));
                    }
                }
                Ok(l)
            };
            let chol_kmm = tri("chol_kmm")?;
            let chol_a = tri("chol_a")?;
            let inv_l2 = lengthscale.iter().map(|l| 1.0 / (l * l)).collect();
            species.push(SpeciesGp {
                features: fm,
                gp: GpCore {
                    dim,
                    inducing,
                    hyper: Hyper {
                        lengthscale,
                        signal_var: sm.signal_var,
                        noise_var: sm.noise_var,
                    },
                    mean: sm.mean,
                    weights,
                    chol_kmm,
                    chol_a,
                    inv_l2,
                    inducing_t: vec![],
                    solve: vec![],
                }
                .prepare(),
            });
        }
        Ok(Some(SparseGp { species, meta }))
    }
}

#[cfg(test)]
mod tests;
