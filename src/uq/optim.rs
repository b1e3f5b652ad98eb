//! Numerical helpers of the calibrated estimators: a bound-constrained minimizer (spectral
//! projected gradient), k-means (a wrapper of [`super::kmeans`]) and farthest-point sampling.

// `!(x > 0.0)` is used on purpose: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::simd::dist2;
use rayon::prelude::*;

/// Settings of [`spg`].
#[derive(Clone, Debug)]
pub struct SpgOptions {
    /// Iteration limit.
    pub max_iters: usize,
    /// Stop when the projected-gradient step `|P(x - g) - x|_inf` is below this.
    pub pg_tol: f64,
    /// Stop when the objective changed by less than `f_tol * (1 + |f|)` over `stall` iterations.
    pub f_tol: f64,
    pub stall: usize,
    /// Non-monotone line-search window (1 = monotone Armijo).
    pub memory: usize,
}

impl Default for SpgOptions {
    fn default() -> Self {
        SpgOptions {
            max_iters: 500,
            pg_tol: 1e-7,
            f_tol: 1e-10,
            stall: 10,
            memory: 10,
        }
    }
}

/// Result of [`spg`].
#[derive(Clone, Debug)]
pub struct SpgResult {
    pub x: Vec<f64>,
    pub f: f64,
    pub iters: usize,
    pub evals: usize,
    /// True if a stopping test (projected gradient or stalled objective) was met.
    pub converged: bool,
}

fn project(x: &mut [f64], lo: &[f64], hi: &[f64]) {
    for ((v, l), h) in x.iter_mut().zip(lo).zip(hi) {
        *v = v.max(*l).min(*h);
    }
}

fn pg_norm(x: &[f64], g: &[f64], lo: &[f64], hi: &[f64]) -> f64 {
    x.iter()
        .zip(g)
        .zip(lo.iter().zip(hi))
        .map(|((&xv, &gv), (&l, &h))| ((xv - gv).max(l).min(h) - xv).abs())
        .fold(0.0, f64::max)
}

/// Minimize `f` subject to `lower <= x <= upper` by the spectral projected gradient method
/// (Birgin, Martínez & Raydan, SIAM J. Optim. 10, 1196 (2000), algorithm SPG2): Barzilai–Borwein
/// step lengths, projection onto the box, and a non-monotone Armijo line search with safeguarded
/// quadratic backtracking. `fg(x, grad)` returns `f(x)` and writes the gradient; a non-finite value
/// is treated as "too far" and the step is shortened. Robust for the small, possibly non-convex
/// problems here (tens of parameters); it never leaves the box.
pub fn spg(
    mut fg: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    opts: &SpgOptions,
) -> SpgResult {
    let n = x0.len();
    assert!(
        lower.len() == n && upper.len() == n,
        "bounds of another length"
    );
    let (lmin, lmax) = (1e-12, 1e12);
    let gamma = 1e-4;
    let mut x = x0.to_vec();
    project(&mut x, lower, upper);
    let mut g = vec![0.0; n];
    let mut f = fg(&x, &mut g);
    let mut evals = 1;
    let res = |x: Vec<f64>, f: f64, iters, evals, converged| SpgResult {
        x,
        f,
        iters,
        evals,
        converged,
    };
    if !f.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return res(x, f, 0, evals, false);
    }
    let mut hist = vec![f];
    let pg = pg_norm(&x, &g, lower, upper);
    if pg <= opts.pg_tol {
        return res(x, f, 0, evals, true);
    }
    let mut lambda = (1.0 / pg).clamp(lmin, lmax);
    let (mut d, mut xn, mut gn) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut stalled = 0;
    for it in 1..=opts.max_iters {
        // A stop point per iteration: the GP's hyperparameter search is most of a fit with
        // `--gp` (11 of 14 s on the Li data) and had none, so Python's Ctrl-C waited for it.
        crate::progress::checkpoint();
        for i in 0..n {
            d[i] = (x[i] - lambda * g[i]).max(lower[i]).min(upper[i]) - x[i];
        }
        let gtd: f64 = g.iter().zip(&d).map(|(a, b)| a * b).sum();
        if !(gtd < 0.0) {
            // No descent direction left in the box: stationary to working precision.
            return res(x, f, it, evals, true);
        }
        let fmax = hist.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut alpha = 1.0;
        let mut fnew;
        let mut ok = false;
        for _ in 0..60 {
            for i in 0..n {
                xn[i] = x[i] + alpha * d[i];
            }
            fnew = fg(&xn, &mut gn);
            evals += 1;
            if fnew.is_finite()
                && gn.iter().all(|v| v.is_finite())
                && fnew <= fmax + gamma * alpha * gtd
            {
                ok = true;
                let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
                let sy: f64 = s
                    .iter()
                    .zip(gn.iter().zip(&g))
                    .map(|(s, (a, b))| s * (a - b))
                    .sum();
                let ss: f64 = s.iter().map(|v| v * v).sum();
                lambda = if sy <= 0.0 {
                    lmax
                } else {
                    (ss / sy).clamp(lmin, lmax)
                };
                let df = (f - fnew).abs();
                std::mem::swap(&mut x, &mut xn);
                std::mem::swap(&mut g, &mut gn);
                f = fnew;
                hist.push(f);
                if hist.len() > opts.memory.max(1) {
                    hist.remove(0);
                }
                if df <= opts.f_tol * (1.0 + f.abs()) {
                    stalled += 1;
                } else {
                    stalled = 0;
                }
                break;
            }
            let q = if fnew.is_finite() {
                -0.5 * alpha * alpha * gtd / (fnew - f - alpha * gtd)
            } else {
                f64::NAN
            };
            alpha = if q.is_finite() && q >= 0.1 * alpha && q <= 0.9 * alpha {
                q
            } else {
                0.5 * alpha
            };
        }
        if !ok {
            // The line search cannot improve: numerically converged (or a bad objective).
            return res(x, f, it, evals, false);
        }
        if pg_norm(&x, &g, lower, upper) <= opts.pg_tol || stalled >= opts.stall {
            return res(x, f, it, evals, true);
        }
    }
    res(x, f, opts.max_iters, evals, false)
}

/// Farthest-point sampling: `k` row indices of `points` (`n × dim`, row-major), starting from row
/// `first`, each next one the row farthest from those already chosen. Returns the indices and the
/// covering radius (largest distance of any row to its nearest chosen row).
pub fn farthest_points(points: &[f64], dim: usize, k: usize, first: usize) -> (Vec<usize>, f64) {
    let n = points.len() / dim.max(1);
    if n == 0 || k == 0 {
        return (vec![], 0.0);
    }
    let k = k.min(n);
    let mut chosen = Vec::with_capacity(k);
    let mut mind = vec![f64::INFINITY; n];
    let mut next = first.min(n - 1);
    loop {
        chosen.push(next);
        let c = &points[next * dim..(next + 1) * dim];
        mind.par_iter_mut()
            .zip(points.par_chunks_exact(dim))
            .for_each(|(m, p)| *m = m.min(dist2(p, c)));
        let (arg, far) = mind.par_iter().enumerate().map(|(i, &v)| (i, v)).reduce(
            || (usize::MAX, -1.0),
            |a, b| {
                if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) {
                    b
                } else {
                    a
                }
            },
        );
        if chosen.len() == k || far <= 0.0 {
            return (chosen, far.max(0.0).sqrt());
        }
        next = arg;
    }
}

/// k-means (k-means++ seeding, then Lloyd iterations until assignments stop changing or `iters`)
/// of the rows of `points` (`n × dim`). Returns `k' × dim` centres, `k' = min(k, n)`; an empty
/// cluster is re-seeded with the row farthest from its centre. This is
/// [`super::kmeans::kmeans`] with [`Options::INDUCING`](super::kmeans::Options::INDUCING).
pub fn kmeans(
    points: &[f64],
    dim: usize,
    k: usize,
    iters: usize,
    rng: &mut impl rand::Rng,
) -> Vec<f64> {
    let n = points.len() / dim.max(1);
    let k = k.min(n);
    if k == 0 {
        return vec![];
    }
    super::kmeans::kmeans(
        points,
        n,
        dim,
        k,
        iters,
        &super::kmeans::Options::INDUCING,
        rng,
    )
    .0
}

/// Maxwell negative log-likelihood `sum_k -ln p(e_k; s_k)` of force-error magnitudes `e` with
/// per-atom scales `s` (Maxwell: `p = sqrt(2/π) e² exp(-e²/2s²) / s³`).
pub fn maxwell_nll(e: &[f64], s: &[f64]) -> f64 {
    let c = 0.5 * (2.0 / std::f64::consts::PI).ln();
    e.iter()
        .zip(s)
        .map(|(&e, &s)| 3.0 * s.ln() - 2.0 * e.ln() + e * e / (2.0 * s * s) - c)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn spg_solves_a_bounded_quadratic_and_rosenbrock() {
        // min (x-3)^2 + 10 (y+1)^2 on [0,2] x [-5,5]: x = 2 (bound active), y = -1.
        let r = spg(
            |x, g| {
                g[0] = 2.0 * (x[0] - 3.0);
                g[1] = 20.0 * (x[1] + 1.0);
                (x[0] - 3.0).powi(2) + 10.0 * (x[1] + 1.0).powi(2)
            },
            &[0.5, 4.0],
            &[0.0, -5.0],
            &[2.0, 5.0],
            &SpgOptions::default(),
        );
        assert!(r.converged);
        assert!(
            (r.x[0] - 2.0).abs() < 1e-9 && (r.x[1] + 1.0).abs() < 1e-6,
            "{:?}",
            r.x
        );
        // Rosenbrock, unconstrained within a wide box: minimum at (1, 1).
        let r = spg(
            |x, g| {
                let (a, b) = (x[0], x[1]);
                g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
                g[1] = 200.0 * (b - a * a);
                (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
            },
            &[-1.2, 1.0],
            &[-10.0, -10.0],
            &[10.0, 10.0],
            &SpgOptions {
                max_iters: 20000,
                pg_tol: 1e-9,
                f_tol: 0.0,
                ..Default::default()
            },
        );
        assert!(
            (r.x[0] - 1.0).abs() < 1e-4 && (r.x[1] - 1.0).abs() < 1e-4,
            "{r:?}"
        );
    }

    #[test]
    fn kmeans_finds_separated_blobs_and_fps_covers() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let truth = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let mut pts = vec![];
        for c in &truth {
            for _ in 0..100 {
                pts.push(c[0] + rng.random_range(-1.0..1.0));
                pts.push(c[1] + rng.random_range(-1.0..1.0));
            }
        }
        let cen = kmeans(&pts, 2, 3, 50, &mut rng);
        for t in &truth {
            let best = (0..3)
                .map(|c| dist2(&cen[2 * c..2 * c + 2], t))
                .fold(f64::INFINITY, f64::min);
            assert!(best < 0.1, "centre near {t:?} missing: {cen:?}");
        }
        let (idx, radius) = farthest_points(&pts, 2, 30, 0);
        assert_eq!(idx.len(), 30);
        let mut worst = 0.0f64;
        for i in 0..pts.len() / 2 {
            let d = idx
                .iter()
                .map(|&j| dist2(&pts[2 * i..2 * i + 2], &pts[2 * j..2 * j + 2]))
                .fold(f64::INFINITY, f64::min);
            worst = worst.max(d.sqrt());
        }
        assert!((worst - radius).abs() < 1e-12, "{worst} vs {radius}");
        // Every blob gets several reference points.
        for t in &truth {
            let near = idx
                .iter()
                .filter(|&&j| dist2(&pts[2 * j..2 * j + 2], t) < 4.0)
                .count();
            assert!(near >= 5, "{near}");
        }
        // Asking for all rows returns all of them with zero radius.
        let (all, r0) = farthest_points(&pts, 2, 1000, 5);
        assert_eq!(all.len(), 300);
        assert_eq!(r0, 0.0);
    }
}
