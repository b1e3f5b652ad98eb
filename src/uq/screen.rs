//! Exact extrapolation grades `gamma = max_j |(B A^{-1})_j|` at about half the cost of the f64
//! product: a single-precision product finds the few columns that can hold the maximum, and
//! only those are computed in double precision.
//!
//! The rows are first centred and scaled by the active set's own column means `mu` and standard
//! deviations `sd`: `B A^{-1} = mu A^{-1} + x M` with `x = (B - mu) / sd` and `M = diag(sd) A^{-1}`.
//! Without this the products cancel heavily (on the Li test atoms `sum_k |B_k| |A^{-1}_kj|` is up
//! to 10^4 times `gamma`) and the single-precision error bound below would leave dozens of
//! candidate columns per atom; after it, about two.
//!
//! Rigour: with `x` and `M` rounded to f32 and the dot products accumulated in f32 (in any order,
//! fused or not), `|fl(x M)_j - (x M)_j| <= gamma_{m+3} sum_k |x_k| |M_kj| <= gamma_{m+3} |x|_2
//! |M_j|_2` (Higham, §3.1; Cauchy–Schwarz), with `gamma_n = n u / (1 - n u)`, `u = 2^-24`. With
//! `t_j` that bound (plus the double-precision rounding of the centring, `4 (m + 2) u_64
//! (|B|_2 + |mu|_2) |A^{-1}_j|_2`) and `a_j` the screened value, the column `j*` holding
//! the maximum satisfies `|a_j*| + t_j* >= |c_j*| >= max_j (|a_j| - t_j)`, so every column that
//! fails this test can be skipped; the grade is the largest exact `|c_j|` over the candidates.
//! Rows whose scaled norm is not finite or could overflow single precision are graded in full in
//! double precision (a NaN in `B` gives NaN, as [`super::maxvol::gamma`]).

use faer::linalg::matmul::matmul;
use faer::mat::{MatMut, MatRef};
use faer::{Accum, Par};

/// Rows per single-precision product (scratch `2 × BLOCK × m` f32).
const BLOCK: usize = 128;

/// Largest scaled row norm times column norm graded through single precision (far below the
/// f32 range, so no partial sum can overflow).
const F32_SAFE: f64 = 1e30;

/// Largest scaled row norm graded through single precision, and the range of `|M_kj|` (nonzero)
/// for which the screen is used at all: inside these, no f32 conversion overflows and what
/// underflow can lose (below `2^-149` per rounding, times `|M| <= 1e20` or `|x| <= 1e15`, over
/// `~3 m` roundings) stays far below [`UNDERFLOW_SLACK`].
const X_MAX: f64 = 1e15;
const M_RANGE: (f64, f64) = (1e-20, 1e20);

/// Absolute slack added to the candidate bound for single-precision underflow.
const UNDERFLOW_SLACK: f64 = 1e-18;

/// The precomputed single- and double-precision forms of one active set's inverse.
#[derive(Clone, Debug, PartialEq)]
pub struct Screen {
    m: usize,
    mean: Vec<f64>,
    inv_sd: Vec<f64>,
    /// `|mu|_2`.
    mean_norm: f64,
    /// `mu A^{-1}` (length m).
    v: Vec<f64>,
    /// `M = diag(sd) A^{-1}` in f32, row-major m × m.
    mf: Vec<f32>,
    /// `A^{-1}` column-major (column j contiguous) for the exact candidates.
    at: Vec<f64>,
    /// Per column: single-precision bound factor times `|M_j|_2` (multiplies `|x|_2`).
    tol: Vec<f64>,
    /// Per column: double-precision centring bound factor times `|A^{-1}_j|_2` (multiplies
    /// `|B|_2 + |mu|_2`).
    tol64: Vec<f64>,
    /// Largest `|M_j|_2`.
    max_col: f64,
    /// Whether `M` fits single precision (see [`M_RANGE`]); if not, every row is graded in
    /// double precision.
    usable: bool,
}

/// Caller-owned scratch of [`Screen::grades`] (grows once, then no allocation).
#[derive(Clone, Debug, Default)]
pub struct ScreenScratch {
    xf: Vec<f32>,
    cf: Vec<f32>,
    /// Per row of the block: `|x|_2` and `|B|_2 + |mu|_2`.
    xn: Vec<[f64; 2]>,
    /// Per column of one row: the upper bound `|a_j| + t_j` (AVX2 path).
    ub: Vec<f64>,
}

/// Row `i` of the graded rows: `sel[i]` if a selection is given.
#[inline(always)]
fn row_of<'a>(rows: &'a [f64], sel: Option<&[usize]>, i: usize, m: usize) -> &'a [f64] {
    let r = match sel {
        Some(s) => s[i],
        None => i,
    };
    &rows[r * m..(r + 1) * m]
}

impl Screen {
    /// From the active rows `a` (row-major m × m, the rows the inverse belongs to) and the
    /// inverse `ainv` (row-major m × m).
    pub fn new(a: &[f64], ainv: &[f64], m: usize) -> Screen {
        assert!(
            a.len() == m * m && ainv.len() == m * m,
            "Screen: m × m matrices"
        );
        let mut mean = vec![0.0; m];
        let mut inv_sd = vec![1.0; m];
        if m > 0 {
            for r in 0..m {
                for (mu, &v) in mean.iter_mut().zip(&a[r * m..(r + 1) * m]) {
                    *mu += v;
                }
            }
            mean.iter_mut().for_each(|mu| *mu /= m as f64);
            for (k, is) in inv_sd.iter_mut().enumerate() {
                let var = (0..m)
                    .map(|r| (a[r * m + k] - mean[k]).powi(2))
                    .sum::<f64>()
                    / m as f64;
                let sd = var.sqrt();
                *is = if sd > 0.0 && sd.is_finite() {
                    1.0 / sd
                } else {
                    1.0
                };
            }
        }
        let mut v = vec![0.0; m];
        let mut mf = vec![0.0f32; m * m];
        let mut at = vec![0.0; m * m];
        let mut col2 = vec![0.0; m];
        let mut acol2 = vec![0.0; m];
        let mut in_range = true;
        for k in 0..m {
            let sd = 1.0 / inv_sd[k];
            for j in 0..m {
                let aij = ainv[k * m + j];
                v[j] += mean[k] * aij;
                let x = sd * aij;
                in_range &= x == 0.0 || (M_RANGE.0..=M_RANGE.1).contains(&x.abs());
                mf[k * m + j] = x as f32;
                at[j * m + k] = aij;
                col2[j] += x * x;
                acol2[j] += aij * aij;
            }
        }
        let g32 = gamma_n(m + 3, f32::EPSILON as f64 / 2.0);
        let g64 = 4.0 * gamma_n(m + 2, f64::EPSILON / 2.0);
        let norms: Vec<f64> = col2.iter().map(|c| c.sqrt()).collect();
        Screen {
            m,
            mean_norm: mean.iter().map(|x| x * x).sum::<f64>().sqrt(),
            mean,
            inv_sd,
            v,
            mf,
            at,
            usable: in_range && norms.iter().all(|c| c.is_finite()),
            tol: norms.iter().map(|c| g32 * c).collect(),
            tol64: acol2.iter().map(|c| g64 * c.sqrt()).collect(),
            max_col: norms.iter().cloned().fold(0.0, f64::max),
        }
    }

    /// Grades of rows of `rows` (row-major, row length m): of row `sel[i]` into `out[i]` if
    /// `sel` is given, else of row `i`.
    pub fn grades(
        &self,
        rows: &[f64],
        sel: Option<&[usize]>,
        out: &mut [f64],
        sc: &mut ScreenScratch,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::simd::features().avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { self.grades_avx2(rows, sel, out, sc) };
                return;
            }
        }
        self.grades_impl::<false>(rows, sel, out, sc);
    }

    /// [`Screen::grades`] with the portable row kernels whatever the CPU (tests).
    #[cfg(test)]
    fn grades_portable(
        &self,
        rows: &[f64],
        sel: Option<&[usize]>,
        out: &mut [f64],
        sc: &mut ScreenScratch,
    ) {
        self.grades_impl::<false>(rows, sel, out, sc);
    }

    /// [`Screen::grades`] with the AVX2 row kernels.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn grades_avx2(
        &self,
        rows: &[f64],
        sel: Option<&[usize]>,
        out: &mut [f64],
        sc: &mut ScreenScratch,
    ) {
        self.grades_impl::<true>(rows, sel, out, sc);
    }

    /// The grades; `AVX`: use the AVX2+FMA row kernels (the caller checked the CPU).
    #[inline(always)]
    fn grades_impl<const AVX: bool>(
        &self,
        rows: &[f64],
        sel: Option<&[usize]>,
        out: &mut [f64],
        sc: &mut ScreenScratch,
    ) {
        let m = self.m;
        let n = out.len();
        match sel {
            Some(s) => assert_eq!(s.len(), n, "Screen::grades: selection and output differ"),
            None => assert_eq!(rows.len(), n * m, "Screen::grades: rows and output differ"),
        }
        if m == 0 {
            out.fill(0.0);
            return;
        }
        sc.xf.resize(BLOCK * m, 0.0);
        sc.cf.resize(BLOCK * m, 0.0);
        sc.xn.resize(BLOCK, [0.0; 2]);
        sc.ub.resize(m, 0.0);
        for b0 in (0..n).step_by(BLOCK) {
            let nb = BLOCK.min(n - b0);
            for i in 0..nb {
                let b = row_of(rows, sel, b0 + i, m);
                let xf = &mut sc.xf[i * m..(i + 1) * m];
                #[cfg(target_arch = "x86_64")]
                let (x2, b2) = if AVX {
                    // SAFETY: AVX is only set by `grades_avx2`.
                    unsafe { self.scale_avx2(b, xf) }
                } else {
                    self.scale(b, xf)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let (x2, b2) = self.scale(b, xf);
                sc.xn[i] = [x2.sqrt(), b2.sqrt() + self.mean_norm];
            }
            let lhs = MatRef::from_column_major_slice(&self.mf, m, m);
            let rhs = MatRef::from_column_major_slice(&sc.xf[..nb * m], m, nb);
            let dst = MatMut::from_column_major_slice_mut(&mut sc.cf[..nb * m], m, nb);
            matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
            crate::simd::clear_upper_simd_state();
            for i in 0..nb {
                let [xn, bn] = sc.xn[i];
                let b = row_of(rows, sel, b0 + i, m);
                let c = &sc.cf[i * m..(i + 1) * m];
                let screened =
                    self.usable && xn <= X_MAX && xn * self.max_col <= F32_SAFE && bn.is_finite();
                out[b0 + i] = if screened {
                    #[cfg(target_arch = "x86_64")]
                    let g = if AVX {
                        // SAFETY: as above.
                        unsafe { self.finish_avx2(c, b, xn, bn, &mut sc.ub) }
                    } else {
                        self.finish(c, b, xn, bn)
                    };
                    #[cfg(not(target_arch = "x86_64"))]
                    let g = self.finish(c, b, xn, bn);
                    g
                } else {
                    self.full(b)
                };
            }
        }
    }

    /// `x = (b - mu) / sd` rounded to f32 into `xf`; returns `(|x|^2, |b|^2)`.
    fn scale(&self, b: &[f64], xf: &mut [f32]) -> (f64, f64) {
        let (mut x2, mut b2) = (0.0, 0.0);
        for k in 0..self.m {
            let x = (b[k] - self.mean[k]) * self.inv_sd[k];
            x2 += x * x;
            b2 += b[k] * b[k];
            xf[k] = x as f32;
        }
        (x2, b2)
    }

    /// Is column `j` a candidate: `|a_j| + t_j >= lo`?
    #[inline(always)]
    fn upper(&self, j: usize, c: &[f32], xn: f64, bn: f64) -> f64 {
        (self.v[j] + c[j] as f64).abs() + self.tol[j] * xn + self.tol64[j] * bn + UNDERFLOW_SLACK
    }

    /// The grade of one row from its screened product `c` (f32) and norms: the candidate
    /// columns (see the module documentation) computed exactly.
    fn finish(&self, c: &[f32], b: &[f64], xn: f64, bn: f64) -> f64 {
        let mut lo = 0.0f64;
        for j in 0..self.m {
            let t = self.tol[j] * xn + self.tol64[j] * bn + UNDERFLOW_SLACK;
            lo = lo.max((self.v[j] + c[j] as f64).abs() - t);
        }
        let mut g = 0.0f64;
        for j in 0..self.m {
            if self.upper(j, c, xn, bn) >= lo {
                g = g.max(self.exact(j, b).abs());
            }
        }
        g
    }

    /// `(B A^{-1})_j` in double precision.
    fn exact(&self, j: usize, b: &[f64]) -> f64 {
        let col = &self.at[j * self.m..(j + 1) * self.m];
        b.iter().zip(col).map(|(x, y)| x * y).sum()
    }

    /// Every column in double precision (rows that cannot go through single precision; NaN if
    /// any column is NaN).
    fn full(&self, b: &[f64]) -> f64 {
        let mut g = 0.0f64;
        for j in 0..self.m {
            let c = self.exact(j, b).abs();
            if c.is_nan() {
                return f64::NAN;
            }
            g = g.max(c);
        }
        g
    }

    /// [`Screen::scale`] with AVX2 (four lanes, fused multiply-adds for the norms).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scale_avx2(&self, b: &[f64], xf: &mut [f32]) -> (f64, f64) {
        use std::arch::x86_64::*;
        let m = self.m;
        assert!(b.len() >= m && xf.len() >= m && self.mean.len() == m && self.inv_sd.len() == m);
        let (mut x2, mut b2) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let mut k = 0;
        // SAFETY: k + 4 <= m for every vector access; lengths asserted above.
        unsafe {
            while k + 4 <= m {
                let bv = _mm256_loadu_pd(b.as_ptr().add(k));
                let mu = _mm256_loadu_pd(self.mean.as_ptr().add(k));
                let is = _mm256_loadu_pd(self.inv_sd.as_ptr().add(k));
                let x = _mm256_mul_pd(_mm256_sub_pd(bv, mu), is);
                x2 = _mm256_fmadd_pd(x, x, x2);
                b2 = _mm256_fmadd_pd(bv, bv, b2);
                _mm_storeu_ps(xf.as_mut_ptr().add(k), _mm256_cvtpd_ps(x));
                k += 4;
            }
        }
        let (mut sx, mut sb) = (hsum(x2), hsum(b2));
        for k in k..m {
            let x = (b[k] - self.mean[k]) * self.inv_sd[k];
            sx += x * x;
            sb += b[k] * b[k];
            xf[k] = x as f32;
        }
        (sx, sb)
    }

    /// [`Screen::finish`] with AVX2: the bound and candidate tests four columns at a time (the
    /// upper bounds of the first pass kept in `ub` for the second), the exact columns as
    /// four-lane dot products.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish_avx2(&self, c: &[f32], b: &[f64], xn: f64, bn: f64, ub: &mut [f64]) -> f64 {
        use std::arch::x86_64::*;
        let m = self.m;
        assert!(c.len() >= m && b.len() >= m && self.v.len() == m);
        assert!(self.tol.len() == m && self.tol64.len() == m && self.at.len() == m * m);
        let (xv, bv) = (_mm256_set1_pd(xn), _mm256_set1_pd(bn));
        let sign = _mm256_set1_pd(-0.0);
        let slack = _mm256_set1_pd(UNDERFLOW_SLACK);
        let end = m / 4 * 4;
        // SAFETY (all vector accesses): j + 4 <= end <= m; lengths asserted above.
        // |a_j| and t_j for columns j..j+4 (a macro: closures do not inherit the target
        // features).
        macro_rules! at {
            ($j:expr) => {{
                let j = $j;
                unsafe {
                    let a = _mm256_add_pd(
                        _mm256_loadu_pd(self.v.as_ptr().add(j)),
                        _mm256_cvtps_pd(_mm_loadu_ps(c.as_ptr().add(j))),
                    );
                    let t = _mm256_fmadd_pd(
                        _mm256_loadu_pd(self.tol.as_ptr().add(j)),
                        xv,
                        _mm256_fmadd_pd(_mm256_loadu_pd(self.tol64.as_ptr().add(j)), bv, slack),
                    );
                    (_mm256_andnot_pd(sign, a), t)
                }
            }};
        }
        // First pass: the lower bound, and each column's upper bound kept for the second.
        assert!(ub.len() >= m);
        let mut lo4 = _mm256_setzero_pd();
        let mut j = 0;
        while j < end {
            let (a, t) = at!(j);
            lo4 = _mm256_max_pd(lo4, _mm256_sub_pd(a, t));
            // SAFETY: j + 4 <= end <= m <= ub.len().
            unsafe { _mm256_storeu_pd(ub.as_mut_ptr().add(j), _mm256_add_pd(a, t)) };
            j += 4;
        }
        let mut lo = hmax(lo4);
        for j in end..m {
            let t = self.tol[j] * xn + self.tol64[j] * bn + UNDERFLOW_SLACK;
            lo = lo.max((self.v[j] + c[j] as f64).abs() - t);
        }
        let lov = _mm256_set1_pd(lo);
        let mut g = 0.0f64;
        let mut j = 0;
        while j < end {
            // SAFETY: as above.
            let u = unsafe { _mm256_loadu_pd(ub.as_ptr().add(j)) };
            let mask = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GE_OQ>(u, lov));
            if mask != 0 {
                for l in 0..4 {
                    if mask & (1 << l) != 0 {
                        // SAFETY: the CPU supports AVX2 and FMA (this function's contract).
                        g = g.max(unsafe { self.exact_avx2(j + l, b) }.abs());
                    }
                }
            }
            j += 4;
        }
        for j in end..m {
            if self.upper(j, c, xn, bn) >= lo {
                // SAFETY: as above.
                g = g.max(unsafe { self.exact_avx2(j, b) }.abs());
            }
        }
        g
    }

    /// [`Screen::exact`] with AVX2 (two four-lane accumulators).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exact_avx2(&self, j: usize, b: &[f64]) -> f64 {
        use std::arch::x86_64::*;
        let m = self.m;
        let col = &self.at[j * m..(j + 1) * m];
        let b = &b[..m];
        let (mut s0, mut s1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let mut k = 0;
        // SAFETY: k + 8 (or k + 4) <= m for every vector access; both slices have m entries.
        unsafe {
            while k + 8 <= m {
                let (bp, cp) = (b.as_ptr().add(k), col.as_ptr().add(k));
                s0 = _mm256_fmadd_pd(_mm256_loadu_pd(bp), _mm256_loadu_pd(cp), s0);
                s1 = _mm256_fmadd_pd(_mm256_loadu_pd(bp.add(4)), _mm256_loadu_pd(cp.add(4)), s1);
                k += 8;
            }
            if k + 4 <= m {
                let (bp, cp) = (b.as_ptr().add(k), col.as_ptr().add(k));
                s0 = _mm256_fmadd_pd(_mm256_loadu_pd(bp), _mm256_loadu_pd(cp), s0);
                k += 4;
            }
        }
        let mut s = hsum(_mm256_add_pd(s0, s1));
        for k in k..m {
            s += b[k] * col[k];
        }
        s
    }
}

/// `n u / (1 - n u)` (Higham's gamma_n).
fn gamma_n(n: usize, u: f64) -> f64 {
    let nu = n as f64 * u;
    nu / (1.0 - nu)
}

/// Sum of the four lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hsum(v: std::arch::x86_64::__m256d) -> f64 {
    let mut a = [0.0f64; 4];
    // SAFETY: `a` holds four values.
    unsafe { std::arch::x86_64::_mm256_storeu_pd(a.as_mut_ptr(), v) };
    (a[0] + a[1]) + (a[2] + a[3])
}

/// Largest of the four lanes (all finite or +0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hmax(v: std::arch::x86_64::__m256d) -> f64 {
    let mut a = [0.0f64; 4];
    // SAFETY: `a` holds four values.
    unsafe { std::arch::x86_64::_mm256_storeu_pd(a.as_mut_ptr(), v) };
    a[0].max(a[1]).max(a[2].max(a[3]))
}

/// A [`Screen`] built on first use from the matrices it derives from. Derived data: two values
/// compare equal whether or not it has been built.
#[derive(Clone, Debug, Default)]
pub struct LazyScreen(std::sync::OnceLock<Screen>);

impl PartialEq for LazyScreen {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl LazyScreen {
    /// The screen of active rows `a` with inverse `ainv` (m × m), built on the first call; the
    /// owner must not change them afterwards.
    pub fn get(&self, a: &[f64], ainv: &[f64], m: usize) -> &Screen {
        self.0.get_or_init(|| Screen::new(a, ainv, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uq::maxvol;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// Rows like ACE descriptors: a large common offset, columns of very different scales, and
    /// strongly correlated columns (so `B A^{-1}` cancels heavily).
    fn rows(rng: &mut ChaCha8Rng, n: usize, m: usize, spread: f64) -> Vec<f64> {
        let mut out = vec![0.0; n * m];
        for r in 0..n {
            let common: f64 = StandardNormal.sample(rng);
            for k in 0..m {
                let z: f64 = StandardNormal.sample(rng);
                let scale = 10f64.powf(3.0 * k as f64 / m as f64 - 1.0);
                out[r * m + k] = scale * (1e3 + 5.0 * common + 0.1 * spread * z);
            }
        }
        out
    }

    #[test]
    fn screened_grades_equal_the_double_precision_grades() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for m in [1, 5, 37, 130] {
            let a = rows(&mut rng, m, m, 1.0);
            let inv = maxvol::invert(&a, m, 1e-14, "test").unwrap().inv;
            let screen = Screen::new(&a, &inv, m);
            // Interpolating, extrapolating and far-out rows, plus the active rows themselves.
            let mut q = rows(&mut rng, 300, m, 1.0);
            q.extend(rows(&mut rng, 300, m, 4.0));
            q.extend(rows(&mut rng, 20, m, 1e4));
            // Near ties: (1/2 + d1) a_p + (1/2 + d2) a_q has two coordinates 1/2 + d, d ~ 1e-6,
            // far closer than the single-precision error, so the screen must keep both.
            for t in 0..200 {
                let (p, r) = (t % m, (t * 7 + 1) % m);
                let d: [f64; 2] = [
                    StandardNormal.sample(&mut rng),
                    StandardNormal.sample(&mut rng),
                ];
                for k in 0..m {
                    q.push((0.5 + 1e-6 * d[0]) * a[p * m + k] + (0.5 + 1e-6 * d[1]) * a[r * m + k]);
                }
            }
            q.extend_from_slice(&a);
            let n = q.len() / m;
            let mut got = vec![0.0; n];
            let mut sc = ScreenScratch::default();
            screen.grades(&q, None, &mut got, &mut sc);
            let mut portable = vec![0.0; n];
            screen.grades_portable(&q, None, &mut portable, &mut sc);
            let mut acc = vec![0.0; m];
            let mut worst = 0.0f64;
            for r in 0..n {
                let want = maxvol::gamma(&inv, m, &q[r * m..(r + 1) * m], &mut acc);
                worst = worst.max((got[r] - want).abs() / want);
                worst = worst.max((portable[r] - want).abs() / want);
            }
            assert!(worst < 1e-9, "m {m}: worst relative difference {worst:e}");
            // An active row has grade 1 (its own column).
            for r in n - m..n {
                assert!(
                    (got[r] - 1.0).abs() < 1e-8,
                    "m {m}: active row grade {}",
                    got[r]
                );
            }
            // Selected rows = the same rows graded in place.
            let sel: Vec<usize> = (0..n).rev().step_by(3).collect();
            let mut part = vec![0.0; sel.len()];
            screen.grades(&q, Some(&sel), &mut part, &mut sc);
            for (t, &r) in sel.iter().enumerate() {
                assert_eq!(part[t], got[r]);
            }
        }
    }

    #[test]
    fn rows_outside_single_precision_are_graded_in_double_precision() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let m = 12;
        let a = rows(&mut rng, m, m, 1.0);
        let inv = maxvol::invert(&a, m, 1e-14, "test").unwrap().inv;
        let screen = Screen::new(&a, &inv, m);
        let mut q = rows(&mut rng, 3, m, 1.0);
        q[..m].iter_mut().for_each(|v| *v *= 1e40);
        q[m + 4] = f64::NAN;
        let mut got = vec![0.0; 3];
        screen.grades(&q, None, &mut got, &mut ScreenScratch::default());
        let mut acc = vec![0.0; m];
        let want = maxvol::gamma(&inv, m, &q[..m], &mut acc);
        assert!(got[0].is_finite() && got[0] > 1e30);
        assert!((got[0] - want).abs() <= 1e-9 * want, "{} vs {want}", got[0]);
        assert!(got[1].is_nan());
        let want2 = maxvol::gamma(&inv, m, &q[2 * m..], &mut acc);
        assert!((got[2] - want2).abs() <= 1e-9 * want2);
        // A matrix outside the screen's single-precision range (one entry 1e25 times larger;
        // the screen only needs some matrix, not the inverse of the rows): graded in double
        // precision throughout.
        let mut inv = inv;
        inv[3 * m + 5] *= 1e25;
        let screen = Screen::new(&a, &inv, m);
        assert!(!screen.usable);
        let q = rows(&mut rng, 4, m, 2.0);
        let mut got = vec![0.0; 4];
        screen.grades(&q, None, &mut got, &mut ScreenScratch::default());
        for r in 0..4 {
            let want = maxvol::gamma(&inv, m, &q[r * m..(r + 1) * m], &mut acc);
            assert!((got[r] - want).abs() <= 1e-9 * want, "{} vs {want}", got[r]);
        }
    }
}
