//! Reduced per-atom features shared by the latent-distance and sparse-GP estimators: the basis
//! vector `B_i` standardized per species (training mean and standard deviation; zero-variance
//! columns keep std 1), projected on its leading principal components, plus
//! (optionally) the norm of the part the projection discards.
//!
//! Dimension: the smallest `k` whose components explain `variance_fraction` of the standardized
//! variance, capped at `max_components` (and at least 1). The projections are not whitened: a
//! Euclidean distance between reduced features approximates the standardized distance, dominated by
//! the directions in which the training data actually vary.
//!
//! The residual coordinate `r = |x - P^T P x|` (x standardized, P the kept components) measures
//! how far an environment lies outside the subspace the training data span. It is appended as the
//! last coordinate when `residual` is set; the nearest-neighbour search uses only the `k`
//! projections, and estimators may weight the residual separately. A novel environment usually
//! differs in exactly the low-variance directions that the projection drops, so this keeps the
//! novelty signal that PCA alone would throw away.

// `!(x > 0.0)` is used on purpose: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use super::UqError;
use super::persist::{bad, f64_checked, f64_finite, put_f64};
use crate::io::container::{Container, ContainerError};
use crate::simd::dot;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Side};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How to reduce the features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureSettings {
    /// Keep the leading principal components that explain this fraction of the standardized
    /// variance (0 < f <= 1).
    pub variance_fraction: f64,
    /// At most this many components (>= 1).
    pub max_components: usize,
    /// Append the out-of-subspace residual norm as an extra coordinate.
    pub residual: bool,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        FeatureSettings {
            variance_fraction: 0.99,
            max_components: 16,
            residual: true,
        }
    }
}

impl FeatureSettings {
    /// Check the settings (`what` names the TOML table in messages).
    pub fn validate(&self, what: &str) -> Result<(), UqError> {
        if !(self.variance_fraction > 0.0 && self.variance_fraction <= 1.0) {
            return Err(UqError::Data(format!(
                "[uq.{what}] variance_fraction must be in (0, 1], got {}",
                self.variance_fraction
            )));
        }
        if self.max_components == 0 {
            return Err(UqError::Data(format!(
                "[uq.{what}] max_components must be at least 1"
            )));
        }
        Ok(())
    }
}

/// Standardization and projection of one species' basis vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMap {
    /// Length of `B_i`.
    pub m: usize,
    /// Training mean of every basis function.
    pub mean: Vec<f64>,
    /// 1 / training standard deviation (1 for constant columns).
    pub inv_std: Vec<f64>,
    /// Number of principal components kept.
    pub k: usize,
    /// `k × m` orthonormal rows, leading component first.
    pub components: Vec<f64>,
    /// Variance of the standardized training data along each kept component.
    pub variance: Vec<f64>,
    /// Fraction of the total standardized variance the kept components explain.
    pub explained: f64,
    /// Whether the residual norm is appended.
    pub residual: bool,
}

impl FeatureMap {
    /// Fit on `n × m` row-major training rows (`species` names errors).
    pub fn fit(
        rows: &[f64],
        m: usize,
        settings: &FeatureSettings,
        species: &str,
    ) -> Result<FeatureMap, UqError> {
        let n = rows.len().checked_div(m).unwrap_or(0);
        if n < 2 || m == 0 {
            return Err(UqError::Data(format!(
                "species {species} has {n} training atoms; the feature standardization needs at least 2"
            )));
        }
        let mut mean = vec![0.0; m];
        for r in rows.chunks_exact(m) {
            for (a, v) in mean.iter_mut().zip(r) {
                *a += v;
            }
        }
        mean.iter_mut().for_each(|v| *v /= n as f64);
        let mut var = vec![0.0; m];
        for r in rows.chunks_exact(m) {
            for ((a, v), mu) in var.iter_mut().zip(r).zip(&mean) {
                *a += (v - mu) * (v - mu);
            }
        }
        // Columns of round-off (a function that vanishes on the data by symmetry) keep std 1:
        // scaled up, their noise would become principal directions of its own.
        let rms: Vec<f64> = var
            .iter()
            .zip(&mean)
            .map(|(&v, mu)| (v / n as f64 + mu * mu).sqrt())
            .collect();
        let live = crate::uq::maxvol::live_columns(&rms);
        let inv_std: Vec<f64> = var
            .iter()
            .zip(&mean)
            .zip(&live)
            .map(|((&v, mu), &live)| {
                let sd = (v / (n - 1) as f64).sqrt();
                // Constant (or numerically constant) columns keep std 1.
                if live && sd > 1e-12 * mu.abs().max(1e-300) && sd > 0.0 {
                    1.0 / sd
                } else {
                    1.0
                }
            })
            .collect();
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(UqError::Numerical(format!(
                "species {species}: a training basis vector is not finite"
            )));
        }
        let x = Mat::from_fn(n, m, |i, j| (rows[i * m + j] - mean[j]) * inv_std[j]);
        let mut cov = Mat::<f64>::zeros(m, m);
        matmul(
            cov.as_mut(),
            Accum::Replace,
            x.transpose(),
            x.as_ref(),
            1.0 / (n - 1) as f64,
            Par::rayon(0),
        );
        let evd = cov.self_adjoint_eigen(Side::Lower).map_err(|e| {
            UqError::Numerical(format!(
                "species {species}: eigendecomposition of the feature covariance failed ({e:?})"
            ))
        })?;
        let s = evd.S().column_vector();
        let u = evd.U();
        // Eigenvalues come in non-decreasing order: take them from the top.
        let ev: Vec<f64> = (0..m).rev().map(|j| s[j].max(0.0)).collect();
        let total: f64 = ev.iter().sum();
        if !(total > 0.0) {
            return Err(UqError::Data(format!(
                "species {species}: all training environments have the same basis vector; add varied data"
            )));
        }
        let mut k = 0;
        let mut cum = 0.0;
        while k < m.min(settings.max_components) {
            cum += ev[k];
            k += 1;
            if cum >= settings.variance_fraction * total {
                break;
            }
        }
        let mut components = vec![0.0; k * m];
        for c in 0..k {
            let col = m - 1 - c;
            for j in 0..m {
                components[c * m + j] = u[(j, col)];
            }
        }
        Ok(FeatureMap {
            m,
            mean,
            inv_std,
            k,
            components,
            variance: ev[..k].to_vec(),
            explained: cum / total,
            residual: settings.residual,
        })
    }

    /// Output dimension (`k`, plus 1 with the residual).
    pub fn dim(&self) -> usize {
        self.k + self.residual as usize
    }

    /// Reduced features of one basis vector `b` (length `m`) into `out` (length `dim()`), using
    /// `x` (length `m`) as scratch.
    pub fn apply(&self, b: &[f64], x: &mut [f64], out: &mut [f64]) {
        let m = self.m;
        for j in 0..m {
            x[j] = (b[j] - self.mean[j]) * self.inv_std[j];
        }
        let x = &x[..m];
        let xx = dot(x, x);
        let mut zz = 0.0;
        for c in 0..self.k {
            let z = dot(&self.components[c * m..(c + 1) * m], x);
            out[c] = z;
            zz += z * z;
        }
        if self.residual {
            out[self.k] = (xx - zz).max(0.0).sqrt();
        }
    }

    /// [`FeatureMap::apply`] of `nb` rows at once (`rows` row-major `nb × m`, `out` row-major
    /// `nb × dim()`), the projection as one matrix product; `x` is scratch (grows to `nb × m`).
    /// Equal to the row-by-row form up to rounding.
    pub fn apply_block(&self, rows: &[f64], nb: usize, x: &mut Vec<f64>, out: &mut [f64]) {
        let (m, k, d) = (self.m, self.k, self.dim());
        assert!(
            rows.len() == nb * m && out.len() == nb * d,
            "apply_block: {nb} rows need {} inputs and {} outputs",
            nb * m,
            nb * d
        );
        if nb == 0 {
            return;
        }
        x.resize(nb * m, 0.0);
        for (xr, br) in x.chunks_exact_mut(m).zip(rows.chunks_exact(m)) {
            for j in 0..m {
                xr[j] = (br[j] - self.mean[j]) * self.inv_std[j];
            }
        }
        // Column-major views: X^T is m × nb, the components k × m row-major are m × k, and the
        // output rows (stride d) are the columns of a k × nb matrix.
        let xt = faer::MatRef::from_column_major_slice(&x[..nb * m], m, nb);
        let ct = faer::MatRef::from_column_major_slice(&self.components, m, k);
        let zt = faer::MatMut::from_column_major_slice_with_stride_mut(out, k, nb, d);
        matmul(zt, Accum::Replace, ct.transpose(), xt, 1.0, Par::Seq);
        crate::simd::clear_upper_simd_state();
        if self.residual {
            for (xr, o) in x.chunks_exact(m).zip(out.chunks_exact_mut(d)) {
                let zz: f64 = o[..k].iter().map(|z| z * z).sum();
                o[k] = (dot(xr, xr) - zz).max(0.0).sqrt();
            }
        }
    }

    /// Reduced features of `n × m` rows, `n × dim()` row-major (parallel).
    pub fn apply_rows(&self, rows: &[f64]) -> Vec<f64> {
        use rayon::prelude::*;
        // Blocks as in the evaluation paths (`apply_block`), so that training environments
        // map to the same reduced features there.
        const BLOCK: usize = 256;
        let (d, m) = (self.dim(), self.m.max(1));
        let mut out = vec![0.0; rows.len() / m * d];
        out.par_chunks_mut(BLOCK * d.max(1))
            .zip(rows.par_chunks(BLOCK * m))
            .for_each_init(Vec::new, |x, (o, r)| self.apply_block(r, r.len() / m, x, o));
        out
    }

    /// Store under `<prefix>.mean`, `.inv_std`, `.components`, `.variance` (and `.shape`: k,
    /// residual flag, explained fraction are in the caller's metadata).
    pub fn save(&self, c: &mut Container, prefix: &str) {
        put_f64(c, &format!("{prefix}.mean"), vec![self.m], &self.mean);
        put_f64(c, &format!("{prefix}.inv_std"), vec![self.m], &self.inv_std);
        put_f64(
            c,
            &format!("{prefix}.components"),
            vec![self.k, self.m],
            &self.components,
        );
        put_f64(
            c,
            &format!("{prefix}.variance"),
            vec![self.k],
            &self.variance,
        );
    }

    /// Load what [`FeatureMap::save`] wrote, for `m` basis functions and `k` components.
    pub fn load(
        path: &Path,
        c: &Container,
        prefix: &str,
        m: usize,
        k: usize,
        residual: bool,
        explained: f64,
    ) -> Result<FeatureMap, ContainerError> {
        if k == 0 || k > m {
            return Err(bad(
                path,
                format!(
                    "{prefix}: {k} components for {m} basis functions (file corrupt or edited)"
                ),
            ));
        }
        let mean = f64_finite(path, c, &format!("{prefix}.mean"), m)?;
        let inv_std = f64_checked(path, c, &format!("{prefix}.inv_std"), m, "positive", |v| {
            v > 0.0
        })?;
        let components = f64_finite(path, c, &format!("{prefix}.components"), k * m)?;
        let variance = f64_checked(
            path,
            c,
            &format!("{prefix}.variance"),
            k,
            "non-negative",
            |v| v >= 0.0,
        )?;
        // The rows must be orthonormal (a cheap check that catches edited numbers).
        for a in 0..k {
            for b in 0..=a {
                let d: f64 = (0..m)
                    .map(|j| components[a * m + j] * components[b * m + j])
                    .sum();
                let want = if a == b { 1.0 } else { 0.0 };
                if (d - want).abs() > 1e-6 {
                    return Err(bad(
                        path,
                        format!(
                            "array '{prefix}.components': rows {b} and {a} are not orthonormal (file corrupt or edited)"
                        ),
                    ));
                }
            }
        }
        Ok(FeatureMap {
            m,
            mean,
            inv_std,
            k,
            components,
            variance,
            explained,
            residual,
        })
    }
}

/// Rows of `rows` whose atom has a force error in `errors` (indexed `[structure][atom]` by the
/// rows' provenance; structures without forces have an empty vector), and those errors.
pub(crate) fn rows_with_errors(
    rows: &super::SpeciesRows,
    errors: &[Vec<f64>],
) -> Result<(Vec<usize>, Vec<f64>), UqError> {
    let mut idx = vec![];
    let mut e = vec![];
    for k in 0..rows.len() {
        let (t, a) = (rows.structure[k] as usize, rows.atom[k] as usize);
        let Some(es) = errors.get(t) else {
            return Err(UqError::Data(format!(
                "validation errors given for {} structures, but the descriptor table refers to structure {}",
                errors.len(),
                t + 1
            )));
        };
        if es.is_empty() {
            continue;
        }
        let Some(&v) = es.get(a) else {
            return Err(UqError::Data(format!(
                "validation structure {}: {} force errors, but atom {} exists",
                t + 1,
                es.len(),
                a + 1
            )));
        };
        if !v.is_finite() || v < 0.0 {
            return Err(UqError::Data(format!(
                "validation structure {}, atom {}: force error {v} is not a finite magnitude",
                t + 1,
                a + 1
            )));
        }
        idx.push(k);
        e.push(v);
    }
    Ok((idx, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn pca_finds_the_planted_subspace_and_residual_measures_the_rest() {
        // 5-D data that varies (after standardization) mostly in 2 directions.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let m = 5;
        let n = 2000;
        let mut rows = vec![];
        for _ in 0..n {
            let a: f64 = rng.random_range(-1.0..1.0);
            let b: f64 = rng.random_range(-1.0..1.0);
            let e = |r: &mut ChaCha8Rng| 1e-3 * r.random_range(-1.0..1.0);
            let v = [
                3.0 + 10.0 * a + e(&mut rng),
                -2.0 + 0.1 * (a + b) + e(&mut rng),
                b + e(&mut rng),
                b - a + e(&mut rng),
                7.0,
            ];
            rows.extend_from_slice(&v);
        }
        let s = FeatureSettings {
            variance_fraction: 0.999,
            max_components: 4,
            residual: true,
        };
        let f = FeatureMap::fit(&rows, m, &s, "X").unwrap();
        assert_eq!(f.k, 2, "explained {:?}", f.variance);
        assert!(f.explained > 0.999);
        assert_eq!(f.inv_std[4], 1.0, "constant column keeps std 1");
        let mut x = vec![0.0; m];
        let mut z = vec![0.0; 3];
        // A training-like point has a tiny residual; moving along a dropped direction does not
        // change the projection but grows the residual.
        f.apply(&rows[..m], &mut x, &mut z);
        assert!(z[2] < 0.05, "{z:?}");
        let mut off = rows[..m].to_vec();
        off[2] += 0.5; // breaks the b = col2, b - a = col3 relation
        let mut z2 = vec![0.0; 3];
        f.apply(&off, &mut x, &mut z2);
        assert!(z2[2] > 0.3, "{z2:?}");
        // Too few rows is a clear error.
        let err = FeatureMap::fit(&rows[..m], m, &s, "Li").unwrap_err();
        assert!(err.to_string().contains("species Li"), "{err}");
        // Round trip through a container.
        let mut c = Container::default();
        f.save(&mut c, "t.f");
        let g = FeatureMap::load(Path::new("x"), &c, "t.f", m, 2, true, f.explained).unwrap();
        assert_eq!(f, g);
    }
}
