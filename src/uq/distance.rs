//! Latent-distance uncertainty (Annevelink & Viswanathan): how far an atom's environment is from the
//! nearest training environment of the same species, turned into a force-error scale.
//!
//! Features `z`: the basis vector standardized per species and reduced by PCA, plus the residual
//! norm outside the PCA subspace ([`super::features`]). `z*` is the nearest *reference*
//! environment in the `k` PCA coordinates (exact nearest neighbour by a k-d tree). The reference
//! set is every training environment of the species when there are at most `max_reference` of
//! them, else a subset of that size, so the per-atom cost is bounded by `max_reference`, not by
//! the training-set size. The subset is random by default: it keeps the density of the training
//! data, so nearest-reference distances keep their ranking within the training distribution, and a
//! dropped outlier can only make a query look farther (more uncertain), never nearer.
//! Farthest-point sampling (`reference = "farthest"`) keeps the outliers and covers the cloud
//! uniformly, but then typical environments sit about one covering radius from their reference,
//! which blurs the ranking (measured on Li test + novel atoms, 12 500 training environments:
//! Spearman 0.33 with 2000 random references, 0.26 with 2000 farthest points, 0.35 with all).
//! The covering radius (largest training-to-reference distance) is stored in the metadata.
//!
//! `sigma_f = sigma_0 + sum_i sigma_i d_i`, `d_i = |z_i - z*_i|` over all coordinates (the
//! residual included), `sigma_0, sigma_i >= 0`, by minimizing the Maxwell negative
//! log-likelihood of the validation force errors (Annevelink & Viswanathan). The problem is smooth but not
//! convex; it is solved in scaled variables (errors in units of their Maxwell scale, each `d_i` in
//! units of its validation mean) with bounds by the spectral projected gradient method
//! ([`super::optim::spg`]) from three starts (constant only; half constant, half distance; mostly
//! distance), keeping the best. The parameters are per species.

// `!(x > 0.0)` is used on purpose: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use super::features::{FeatureMap, FeatureSettings, rows_with_errors};
use super::kdtree::KdTree;
use super::optim::{SpgOptions, farthest_points, maxwell_nll, spg};
use super::persist::{bad, f64_checked, f64_finite, get_meta, put_f64, put_meta, size};
use super::{DescriptorTable, UqError};
use crate::io::container::{Container, ContainerError};
use crate::model::Model;
use crate::simd::{dist2, dot};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Latent-distance settings (`[uq.distance_settings]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// PCA: keep the components explaining this fraction of the standardized variance.
    pub variance_fraction: f64,
    /// PCA: at most this many components.
    pub max_components: usize,
    /// Append the out-of-subspace residual as an extra distance coordinate.
    pub residual: bool,
    /// At most this many reference environments per species.
    pub max_reference: usize,
    /// How to choose them when there are more training environments: "random" or "farthest".
    pub reference: Reference,
}

/// How the reference subset is chosen when a species has more than `max_reference` training
/// environments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// A seeded uniform random subset (keeps the density of the training data).
    Random,
    /// Farthest-point sampling (keeps the outliers, covers the cloud uniformly).
    Farthest,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            variance_fraction: 0.99,
            max_components: 16,
            residual: true,
            max_reference: 2000,
            reference: Reference::Random,
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
}

/// Per-species record in `[uq.distance]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeciesMeta {
    species: String,
    components: usize,
    residual: bool,
    explained_variance: f64,
    n_train: usize,
    n_reference: usize,
    /// Largest distance (PCA coordinates) of a training environment to its nearest reference.
    covering_radius: f64,
    calibration_atoms: usize,
    /// Maxwell NLL per validation atom at the optimum, and whether the optimizer converged.
    nll_per_atom: f64,
    converged: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    /// The seed, as text (TOML integers cannot hold every u64).
    seed: String,
    species: Vec<SpeciesMeta>,
}

#[derive(Clone, Debug)]
struct SpeciesDistance {
    features: FeatureMap,
    /// `n_ref × dim` reference features.
    reference: Vec<f64>,
    /// Tree over the first `k` coordinates of the references.
    tree: KdTree,
    /// `[sigma_0, sigma_1 .. sigma_dim]`, eV/Å per unit distance.
    sigma: Vec<f64>,
    /// The first `k` coordinates of the references in single precision, column-major
    /// `n_ref × k` (the batched brute-force screen multiplies it with the queries), their
    /// squared norms (of the f64 coordinates, rounded to f32), and the largest.
    ref_k: Vec<f32>,
    ref_norm2: Vec<f32>,
    ref_norm2_max: f64,
}

impl SpeciesDistance {
    fn new(features: FeatureMap, reference: Vec<f64>, sigma: Vec<f64>) -> SpeciesDistance {
        let (k, dim) = (features.k, features.dim());
        let n = reference.len() / dim;
        let mut pts = Vec::with_capacity(n * k);
        for r in reference.chunks_exact(dim) {
            pts.extend_from_slice(&r[..k]);
        }
        let tree = KdTree::build(&pts, k);
        let mut ref_k = vec![0.0f32; n * k];
        for (j, r) in pts.chunks_exact(k).enumerate() {
            for (c, &v) in r.iter().enumerate() {
                ref_k[c * n + j] = v as f32;
            }
        }
        let norm2: Vec<f64> = pts.chunks_exact(k).map(|r| dot(r, r)).collect();
        let ref_norm2_max = norm2.iter().fold(0.0f64, |a, &b| a.max(b));
        let ref_norm2 = norm2.iter().map(|&v| v as f32).collect();
        SpeciesDistance {
            features,
            reference,
            tree,
            sigma,
            ref_k,
            ref_norm2,
            ref_norm2_max,
        }
    }

    /// `sigma_0 + sum_i sigma_i |z_i - r_i|` for reference `j`.
    fn value_at(&self, z: &[f64], j: usize) -> f64 {
        let dim = self.features.dim();
        let r = &self.reference[j * dim..(j + 1) * dim];
        self.sigma[0]
            + z[..dim]
                .iter()
                .zip(r)
                .zip(&self.sigma[1..])
                .map(|((a, b), w)| (a - b).abs() * w)
                .sum::<f64>()
    }

    /// Component distances `|z - z*|` of reduced features `z` to the nearest reference.
    fn distances(&self, z: &[f64], d: &mut [f64]) {
        let dim = self.features.dim();
        let (j, _) = self
            .tree
            .nearest(&z[..self.features.k])
            .expect("reference set is never empty");
        let r = &self.reference[j * dim..(j + 1) * dim];
        for i in 0..dim {
            d[i] = (z[i] - r[i]).abs();
        }
    }
}

/// Caller-owned scratch for [`DistanceModel::value`] (no allocation per atom).
#[derive(Clone, Debug)]
pub struct Scratch {
    x: Vec<f64>,
    z: Vec<f64>,
    d: Vec<f64>,
    /// Batched form: features of a block of rows, their first `k` coordinates, and their dot
    /// products with every reference.
    zb: Vec<f64>,
    zk: Vec<f64>,
    zkf: Vec<f32>,
    dots: Vec<f32>,
    xb: Vec<f64>,
}

impl Scratch {
    /// Scratch sized for `dm`.
    pub fn new(dm: &DistanceModel) -> Scratch {
        let m = dm.species.iter().map(|s| s.features.m).max().unwrap_or(0);
        let d = dm
            .species
            .iter()
            .map(|s| s.features.dim())
            .max()
            .unwrap_or(0);
        Scratch {
            x: vec![0.0; m],
            z: vec![0.0; d],
            d: vec![0.0; d],
            zb: vec![],
            zk: vec![],
            zkf: vec![],
            dots: vec![],
            xb: vec![],
        }
    }
}

/// The calibrated latent-distance estimator, one per species.
#[derive(Clone, Debug)]
pub struct DistanceModel {
    species: Vec<SpeciesDistance>,
    meta: Meta,
}

impl DistanceModel {
    /// Build from the training descriptors (features and references), the validation descriptors
    /// and the main model's validation force errors (`valid_errors[structure][atom]`, indexed by
    /// the validation table's provenance, as [`super::force_errors`] returns).
    pub fn build(
        model: &Model,
        train: &DescriptorTable,
        valid: &DescriptorTable,
        valid_errors: &[Vec<f64>],
        settings: &Settings,
        seed: u64,
        progress: bool,
    ) -> Result<DistanceModel, UqError> {
        settings.features().validate("distance_settings")?;
        if settings.max_reference == 0 {
            return Err(UqError::Data(
                "[uq.distance_settings] max_reference must be at least 1".into(),
            ));
        }
        let ns = model.nspecies();
        if train.per_species.len() != ns || valid.per_species.len() != ns {
            return Err(UqError::Data(
                "descriptor tables do not match the model's species".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6469_7374_616e_6365);
        let mut species = Vec::with_capacity(ns);
        let mut metas = Vec::with_capacity(ns);
        for s in 0..ns {
            let name = &model.species[s];
            let tr = &train.per_species[s];
            if tr.m != model.nfuncs(s) || valid.per_species[s].m != model.nfuncs(s) {
                return Err(UqError::Data(format!(
                    "species {name}: descriptor rows have the wrong length"
                )));
            }
            let fm = FeatureMap::fit(&tr.rows, tr.m, &settings.features(), name)?;
            let (k, dim) = (fm.k, fm.dim());
            let zt = fm.apply_rows(&tr.rows);
            let n = tr.len();
            let pcs: Vec<f64> = zt.chunks_exact(dim).flat_map(|r| r[..k].to_vec()).collect();
            let chosen: Vec<usize> = if n <= settings.max_reference {
                (0..n).collect()
            } else {
                crate::progress::note(
                    progress,
                    &format!(
                        "distance: species {name}: choosing {} of {n} reference environments ({:?})",
                        settings.max_reference, settings.reference
                    ),
                );
                match settings.reference {
                    Reference::Farthest => {
                        farthest_points(&pcs, k, settings.max_reference, rng.random_range(0..n)).0
                    }
                    Reference::Random => {
                        let mut all: Vec<usize> = (0..n).collect();
                        all.shuffle(&mut rng);
                        all.truncate(settings.max_reference);
                        all.sort_unstable();
                        all
                    }
                }
            };
            let mut reference = Vec::with_capacity(chosen.len() * dim);
            for &i in &chosen {
                reference.extend_from_slice(&zt[i * dim..(i + 1) * dim]);
            }
            let mut sd = SpeciesDistance::new(fm, reference, vec![0.0; dim + 1]);
            // Covering radius: the largest distance of a training environment to its reference.
            let radius = if chosen.len() == n {
                0.0
            } else {
                pcs.par_chunks_exact(k)
                    .map(|p| sd.tree.nearest(p).map(|(_, d2)| d2).unwrap_or(0.0))
                    .reduce(|| 0.0, f64::max)
                    .sqrt()
            };
            // Validation distances and errors.
            let va = &valid.per_species[s];
            let (idx, e) = rows_with_errors(va, valid_errors)?;
            if e.len() < 10 {
                return Err(UqError::Data(format!(
                    "distance calibration: species {name} has {} validation atoms with reference forces; needs at least 10 (add validation structures containing {name})",
                    e.len()
                )));
            }
            let d: Vec<f64> = idx
                .par_iter()
                .map_init(
                    || (vec![0.0; tr.m], vec![0.0; dim], vec![0.0; dim]),
                    |(x, z, d), &r| {
                        sd.features.apply(va.row(r), x, z);
                        sd.distances(z, d);
                        d.clone()
                    },
                )
                .flatten()
                .collect();
            let fit = fit_sigma(&d, dim, &e)?;
            sd.sigma = fit.sigma;
            metas.push(SpeciesMeta {
                species: name.clone(),
                components: k,
                residual: sd.features.residual,
                explained_variance: sd.features.explained,
                n_train: n,
                n_reference: chosen.len(),
                covering_radius: radius,
                calibration_atoms: e.len(),
                nll_per_atom: fit.nll / e.len() as f64,
                converged: fit.converged,
            });
            species.push(sd);
        }
        Ok(DistanceModel {
            species,
            meta: Meta {
                seed: seed.to_string(),
                species: metas,
            },
        })
    }

    /// Calibrated uncertainty (eV/Å) of an atom of species `s` with basis vector `b`.
    /// Allocation-free; cost: one standardization and projection (`m × dim`), one k-d tree query
    /// over at most `max_reference` environments.
    pub fn value(&self, s: usize, b: &[f64], scratch: &mut Scratch) -> f64 {
        let sd = &self.species[s];
        let dim = sd.features.dim();
        let (z, d) = (&mut scratch.z[..dim], &mut scratch.d[..dim]);
        sd.features.apply(b, &mut scratch.x, z);
        sd.distances(z, d);
        sd.sigma[0]
            + d.iter()
                .zip(&sd.sigma[1..])
                .map(|(d, w)| d * w)
                .sum::<f64>()
    }

    /// [`DistanceModel::value`] of every row (`n × m_s`, row-major) of species `s` into `out`,
    /// single-threaded, for the per-step evaluation in MD. The same values as `value` (the same
    /// nearest reference, exactly): in the ~16 PCA dimensions a k-d tree ends up scanning most
    /// of the references anyway, so this scans all of them, blocks of rows at a time, with the
    /// dot products `z · r` from one single-precision GEMM; `|z - r|^2 - |z|^2 = |r|^2 - 2 z·r`
    /// then picks the candidates within its rounding-error bound of the minimum, and the
    /// nearest among them is decided on the exact squared distance in double precision.
    ///
    /// The bound: with `z`, `r` and `|r|^2` rounded to f32 and the `k`-term dot product summed
    /// in f32, `|r|^2 - 2 z·r` is off by at most `(k + 4) u (|z|^2 + 2 |r|^2)` (`u = 2^-24`,
    /// Higham §3.1, and `2 |z||r| <= |z|^2 + |r|^2`), below the `4 (k + 2) u (|z|^2 +
    /// max |r|^2)` used; candidates within twice that of the screened minimum contain the
    /// exact nearest.
    pub fn values_into(&self, s: usize, rows: &[f64], out: &mut [f64], sc: &mut Scratch) {
        use faer::linalg::matmul::matmul;
        use faer::{Accum, MatMut, MatRef, Par};
        /// Rows per block: bounds the dot-product scratch to `BLK × n_ref` numbers.
        const BLK: usize = 64;
        let sd = &self.species[s];
        let (m, k, dim) = (sd.features.m, sd.features.k, sd.features.dim());
        let nref = sd.ref_norm2.len();
        assert_eq!(
            rows.len(),
            out.len() * m,
            "values_into: rows and output differ"
        );
        if nref == 0 {
            out.fill(f64::NAN);
            return;
        }
        for (rb, ob) in rows.chunks(BLK * m).zip(out.chunks_mut(BLK)) {
            let nb = ob.len();
            sc.zb.resize(nb * dim, 0.0);
            sc.zk.resize(nb * k, 0.0);
            sc.zkf.resize(nb * k, 0.0);
            sc.dots.resize(nb * nref, 0.0);
            sd.features
                .apply_block(rb, nb, &mut sc.xb, &mut sc.zb[..nb * dim]);
            for r in 0..nb {
                sc.zk[r * k..(r + 1) * k].copy_from_slice(&sc.zb[r * dim..r * dim + k]);
            }
            for (f, &v) in sc.zkf.iter_mut().zip(&sc.zk) {
                *f = v as f32;
            }
            // dots (row-major nb × n_ref) = -2 z·r_j: the column-major (n_ref × k) · (k × nb)
            // product with weight -2.
            matmul(
                MatMut::from_column_major_slice_mut(&mut sc.dots, nref, nb),
                Accum::Replace,
                MatRef::from_column_major_slice(&sd.ref_k, nref, k),
                MatRef::from_column_major_slice(&sc.zkf, k, nb),
                -2.0f32,
                Par::Seq,
            );
            crate::simd::clear_upper_simd_state();
            for (r, o) in ob.iter_mut().enumerate() {
                let zk = &sc.zk[r * k..(r + 1) * k];
                let d = &sc.dots[r * nref..(r + 1) * nref];
                let lo = screen_min(&sd.ref_norm2, d) as f64;
                let zz = dot(zk, zk);
                let tol =
                    4.0 * (k as f64 + 2.0) * (f32::EPSILON as f64 / 2.0) * (zz + sd.ref_norm2_max);
                // The f32 threshold moved up so that no candidate is lost to its rounding (the
                // screened values can be negative).
                let t = lo + 2.0 * tol;
                let thr = (t + 1e-6 * t.abs()) as f32;
                let mut best = (usize::MAX, f64::INFINITY);
                let mut consider = |j: usize| {
                    let d2 = dist2(&sd.reference[j * dim..j * dim + k], zk);
                    if d2 < best.1 {
                        best = (j, d2);
                    }
                };
                if zz <= F32_SAFE && sd.ref_norm2_max <= F32_SAFE && lo.is_finite() {
                    screen_hits(&sd.ref_norm2, d, thr, &mut consider);
                } else if zz.is_finite() {
                    // Outside single precision's range: every reference in double precision.
                    (0..nref).for_each(&mut consider);
                }
                *o = if best.0 == usize::MAX {
                    f64::NAN
                } else {
                    sd.value_at(&sc.zb[r * dim..(r + 1) * dim], best.0)
                };
            }
        }
    }

    /// [`DistanceModel::values_into`] of every row (`n × m_s`, row-major) of species `s`, in
    /// parallel blocks (the same arithmetic as the MD path).
    pub fn values(&self, s: usize, rows: &[f64]) -> Vec<f64> {
        const PAR_BLOCK: usize = 256;
        let m = self.species[s].features.m.max(1);
        let mut out = vec![0.0; rows.len() / m];
        out.par_chunks_mut(PAR_BLOCK)
            .zip(rows.par_chunks(PAR_BLOCK * m))
            .for_each_init(
                || Scratch::new(self),
                |sc, (o, r)| self.values_into(s, r, o, sc),
            );
        out
    }

    /// `[sigma_0, sigma_1, ...]` of species `s` (eV/Å, then eV/Å per unit feature distance).
    pub fn sigma(&self, s: usize) -> &[f64] {
        &self.species[s].sigma
    }

    /// Number of reference environments of species `s`.
    pub fn n_reference(&self, s: usize) -> usize {
        self.species[s].tree.len()
    }

    /// Number of PCA components (without the residual) of species `s`.
    pub fn components(&self, s: usize) -> usize {
        self.species[s].features.k
    }

    /// The human-readable record stored as `[uq.distance]` (TOML), for reports and `aceuq info`.
    pub fn summary(&self) -> String {
        toml::to_string(&self.meta).unwrap_or_default()
    }

    /// Store into a model file container.
    pub fn save(&self, c: &mut Container) {
        put_meta(c, "distance", &self.meta);
        for (s, sd) in self.species.iter().enumerate() {
            let p = format!("uq.distance.{s}");
            sd.features.save(c, &format!("{p}.features"));
            let dim = sd.features.dim();
            put_f64(
                c,
                &format!("{p}.reference"),
                vec![sd.reference.len() / dim, dim],
                &sd.reference,
            );
            put_f64(c, &format!("{p}.sigma"), vec![dim + 1], &sd.sigma);
        }
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let Some(meta) = get_meta::<Meta>(path, c, "distance")? else {
            return Ok(None);
        };
        let ns = model.nspecies();
        crate::uq::persist::check_species_entries(
            path,
            "distance",
            meta.species.iter().map(|sm| sm.species.as_str()),
            model,
        )?;
        let mut species = Vec::with_capacity(ns);
        for (s, sm) in meta.species.iter().enumerate() {
            let p = format!("uq.distance.{s}");
            let m = model.nfuncs(s);
            let fm = FeatureMap::load(
                path,
                c,
                &format!("{p}.features"),
                m,
                sm.components,
                sm.residual,
                sm.explained_variance,
            )?;
            let dim = fm.dim();
            let name = format!("{p}.reference");
            let reference = f64_finite(path, c, &name, size(path, &name, sm.n_reference, dim)?)?;
            if sm.n_reference == 0 {
                return Err(bad(path, format!("array '{name}' is empty")));
            }
            let sigma = f64_checked(
                path,
                c,
                &format!("{p}.sigma"),
                dim + 1,
                "non-negative",
                |v| v >= 0.0,
            )?;
            if !(sigma[0] > 0.0) {
                return Err(bad(
                    path,
                    format!("array '{p}.sigma': sigma_0 must be positive (file corrupt or edited)"),
                ));
            }
            species.push(SpeciesDistance::new(fm, reference, sigma));
        }
        Ok(Some(DistanceModel { species, meta }))
    }
}

/// Result of [`fit_sigma`].
#[derive(Clone, Debug)]
pub struct SigmaFit {
    /// `[sigma_0, sigma_1 .. sigma_dim]`.
    pub sigma: Vec<f64>,
    /// Maxwell NLL at the optimum (sum over atoms).
    pub nll: f64,
    pub converged: bool,
}

/// Fit `sigma = s_0 + sum_i s_i d_i` (all `>= 0`) to errors `e` by Maxwell maximum likelihood;
/// `d` is `n × dim` row-major.
pub fn fit_sigma(d: &[f64], dim: usize, e: &[f64]) -> Result<SigmaFit, UqError> {
    let n = e.len();
    if n == 0 || d.len() != n * dim {
        return Err(UqError::Data(
            "distance calibration: no validation atoms".into(),
        ));
    }
    // Atoms with zero error carry no likelihood (ln 0); they are kept at a tiny floor so an
    // exact-zero label does not make the NLL infinite.
    let e_rms = (e.iter().map(|v| v * v).sum::<f64>() / (3.0 * n as f64)).sqrt();
    if !(e_rms > 0.0 && e_rms.is_finite()) {
        return Err(UqError::Data(
            "distance calibration: all validation force errors are zero".into(),
        ));
    }
    let et: Vec<f64> = e.iter().map(|v| (v / e_rms).max(1e-12)).collect();
    let e2: Vec<f64> = et.iter().map(|v| v * v).collect();
    let colscale: Vec<f64> = (0..dim)
        .map(|i| {
            let m = d.iter().skip(i).step_by(dim).sum::<f64>() / n as f64;
            if m > 0.0 && m.is_finite() { m } else { 1.0 }
        })
        .collect();
    // Scaled design: x = [1, d_1/c_1, ...].
    let np = dim + 1;
    let mut x = vec![0.0; n * np];
    for k in 0..n {
        x[k * np] = 1.0;
        for i in 0..dim {
            x[k * np + 1 + i] = d[k * dim + i] / colscale[i];
        }
    }
    let objective = |phi: &[f64], g: &mut [f64]| -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let mut f = 0.0;
        for k in 0..n {
            let row = &x[k * np..(k + 1) * np];
            let s: f64 = row.iter().zip(phi).map(|(a, b)| a * b).sum();
            if !(s > 0.0) {
                return f64::INFINITY;
            }
            f += 3.0 * s.ln() + e2[k] / (2.0 * s * s);
            let w = 3.0 / s - e2[k] / (s * s * s);
            for (gv, xv) in g.iter_mut().zip(row) {
                *gv += w * xv;
            }
        }
        g.iter_mut().for_each(|v| *v /= n as f64);
        f / n as f64
    };
    let mut lower = vec![0.0; np];
    lower[0] = 1e-6;
    let upper = vec![1e6; np];
    let share = 1.0 / dim.max(1) as f64;
    let starts: Vec<Vec<f64>> = vec![
        std::iter::once(1.0).chain(vec![0.0; dim]).collect(),
        std::iter::once(0.5).chain(vec![0.5 * share; dim]).collect(),
        std::iter::once(0.1).chain(vec![0.9 * share; dim]).collect(),
    ];
    let opts = SpgOptions {
        max_iters: 2000,
        pg_tol: 1e-8,
        f_tol: 1e-12,
        ..Default::default()
    };
    let best = starts
        .par_iter()
        .map(|x0| spg(objective, x0, &lower, &upper, &opts))
        .min_by(|a, b| a.f.total_cmp(&b.f))
        .expect("three starts");
    if !best.f.is_finite() {
        return Err(UqError::Numerical(
            "distance calibration: the likelihood could not be evaluated; check the validation errors".into(),
        ));
    }
    let mut sigma = vec![0.0; np];
    sigma[0] = best.x[0] * e_rms;
    for i in 0..dim {
        sigma[i + 1] = best.x[i + 1] * e_rms / colscale[i];
    }
    let s_all: Vec<f64> = (0..n)
        .map(|k| sigma[0] + (0..dim).map(|i| sigma[i + 1] * d[k * dim + i]).sum::<f64>())
        .collect();
    let e_floor: Vec<f64> = e.iter().map(|v| v.max(1e-12 * e_rms)).collect();
    Ok(SigmaFit {
        nll: maxwell_nll(&e_floor, &s_all),
        sigma,
        converged: best.converged,
    })
}

/// Lanes of the screening scans (two AVX2 registers of f32).
const SCAN: usize = 16;

/// Largest squared norm (of a query or a reference) screened in single precision: far below
/// the f32 range, so that no product or sum of the screen overflows or turns into NaN.
const F32_SAFE: f64 = 1e30;

/// Smallest screened value `n2[j] + d[j]` (+inf if none is a number).
fn screen_min(n2: &[f32], d: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::features().avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { screen_min_avx2(n2, d) };
        }
    }
    screen_min_impl(n2, d)
}

/// [`screen_min`] compiled for 256-bit vectors.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn screen_min_avx2(n2: &[f32], d: &[f32]) -> f32 {
    screen_min_impl(n2, d)
}

#[inline(always)]
fn screen_min_impl(n2: &[f32], d: &[f32]) -> f32 {
    // SCAN running minima: one is a chain of dependent compares; these vectorize.
    let mut lo = [f32::INFINITY; SCAN];
    for (a, b) in n2.chunks_exact(SCAN).zip(d.chunks_exact(SCAN)) {
        for l in 0..SCAN {
            let e = a[l] + b[l];
            lo[l] = if e < lo[l] { e } else { lo[l] };
        }
    }
    let mut m = lo
        .iter()
        .fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
    for j in n2.len() / SCAN * SCAN..n2.len().min(d.len()) {
        let e = n2[j] + d[j];
        if e < m {
            m = e;
        }
    }
    m
}

/// Calls `f(j)` for every `j` with `n2[j] + d[j] <= thr`, in increasing order.
fn screen_hits(n2: &[f32], d: &[f32], thr: f32, f: &mut dyn FnMut(usize)) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::features().avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { screen_hits_avx2(n2, d, thr, f) };
            return;
        }
    }
    screen_hits_impl(n2, d, thr, f)
}

/// [`screen_hits`] compiled for 256-bit vectors.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn screen_hits_avx2(n2: &[f32], d: &[f32], thr: f32, f: &mut dyn FnMut(usize)) {
    screen_hits_impl(n2, d, thr, f)
}

#[inline(always)]
fn screen_hits_impl(n2: &[f32], d: &[f32], thr: f32, f: &mut dyn FnMut(usize)) {
    // Candidates are rare (the nearest and its near ties): test a group without branches,
    // then look inside the groups that hold one.
    for (g, (a, b)) in n2.chunks_exact(SCAN).zip(d.chunks_exact(SCAN)).enumerate() {
        let mut hit = false;
        for l in 0..SCAN {
            hit |= a[l] + b[l] <= thr;
        }
        if hit {
            for l in 0..SCAN {
                if a[l] + b[l] <= thr {
                    f(g * SCAN + l);
                }
            }
        }
    }
    for j in n2.len() / SCAN * SCAN..n2.len().min(d.len()) {
        if n2[j] + d[j] <= thr {
            f(j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uq::{descriptor_table, force_errors};
    use rand_distr::Distribution;

    fn maxwell_draw(rng: &mut ChaCha8Rng, s: f64) -> f64 {
        let n = rand_distr::StandardNormal;
        let v: [f64; 3] = [n.sample(rng), n.sample(rng), n.sample(rng)];
        s * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
    }

    #[test]
    fn fit_sigma_recovers_planted_parameters_and_is_stationary() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let n = 20000;
        let mut d = vec![];
        let mut e = vec![];
        for _ in 0..n {
            let (d1, d2): (f64, f64) = (rng.random_range(0.0..2.0), rng.random_range(0.0..5.0));
            d.push(d1);
            d.push(d2);
            e.push(maxwell_draw(&mut rng, 0.05 + 0.3 * d1));
        }
        let fit = fit_sigma(&d, 2, &e).unwrap();
        let s = &fit.sigma;
        assert!((s[0] - 0.05).abs() < 0.01, "{s:?}");
        assert!((s[1] - 0.3).abs() < 0.02, "{s:?}");
        assert!(s[2] < 0.005, "{s:?}");
        // Optimality: no feasible nearby point has a lower NLL.
        let nll = |s: &[f64]| {
            let sig: Vec<f64> = (0..n)
                .map(|k| s[0] + s[1] * d[2 * k] + s[2] * d[2 * k + 1])
                .collect();
            maxwell_nll(&e, &sig)
        };
        let f0 = nll(s);
        assert!((f0 - fit.nll).abs() < 1e-6 * f0.abs());
        for i in 0..3 {
            for h in [1e-3, -1e-3] {
                let mut t = s.clone();
                t[i] = (t[i] + h * t[i].max(0.01)).max(0.0);
                assert!(
                    nll(&t) >= f0 - 1e-6,
                    "param {i} step {h}: {} < {f0}",
                    nll(&t)
                );
            }
        }
        // Pure noise: a constant model (distances carry nothing) is found.
        let e2: Vec<f64> = (0..n).map(|_| maxwell_draw(&mut rng, 0.1)).collect();
        let fit2 = fit_sigma(&d, 2, &e2).unwrap();
        assert!((fit2.sigma[0] - 0.1).abs() < 0.01, "{:?}", fit2.sigma);
        assert!(
            fit2.sigma[1] < 0.01 && fit2.sigma[2] < 0.005,
            "{:?}",
            fit2.sigma
        );
    }

    fn li_like_setup() -> (Model, Vec<crate::Structure>, Vec<crate::Structure>) {
        use crate::model::fit;
        use crate::testing::{random_structure, tiny_cfg};
        let names = vec!["Al".to_string(), "Mg".to_string()];
        let mut data: Vec<crate::Structure> = (0..16)
            .map(|k| random_structure(&["Al", "Mg"], 2, 300 + k as u64, k % 2 == 0))
            .collect();
        let mut teacher = fit::build_skeleton(
            &names,
            &crate::testing::small_cfg(),
            &fit::FitConfig::default(),
            &data,
        )
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for c in teacher.coefs.iter_mut() {
            for v in c.iter_mut() {
                *v = rng.random_range(-0.05..0.05);
            }
        }
        teacher.rebuild_derived();
        let mut ws = crate::model::Workspace::new(&teacher);
        for s in data.iter_mut() {
            let p = teacher.predict(s, &mut ws).unwrap();
            s.energy = Some(p.energy);
            s.forces = Some(p.forces);
        }
        let valid = data.split_off(12);
        let model = fit::fit(
            &names,
            &tiny_cfg(),
            &fit::FitConfig::default(),
            &data,
            &[],
            false,
        )
        .unwrap();
        (model, data, valid)
    }

    #[test]
    fn zero_distance_on_training_environments_and_round_trip() {
        let (model, train, valid) = li_like_setup();
        let tt = descriptor_table(&model, &train).unwrap();
        let vt = descriptor_table(&model, &valid).unwrap();
        let errs = force_errors(&model, &valid).unwrap();
        let settings = Settings {
            max_components: 6,
            ..Default::default()
        };
        let dm = DistanceModel::build(&model, &tt, &vt, &errs, &settings, 1, false).unwrap();
        let mut sc = Scratch::new(&dm);
        for s in 0..2 {
            assert_eq!(dm.n_reference(s), tt.per_species[s].len());
            let s0 = dm.sigma(s)[0];
            assert!(s0 > 0.0);
            for r in 0..tt.per_species[s].len() {
                let v = dm.value(s, tt.per_species[s].row(r), &mut sc);
                assert!(
                    (v - s0).abs() <= 1e-12 * s0,
                    "species {s} row {r}: {v} vs {s0}"
                );
            }
            // A perturbed environment is farther, hence at least as uncertain.
            let mut b = tt.per_species[s].row(0).to_vec();
            for v in b.iter_mut() {
                *v *= 1.5;
            }
            assert!(dm.value(s, &b, &mut sc) >= s0);
            // The blocked brute-force form (the MD path; features by one matrix product per
            // block) finds the same nearest reference as the k-d tree of the row-by-row form:
            // equal values up to rounding, on training rows (distance zero, several blocks of
            // rows) and on validation rows; the parallel form is the blocked one.
            for t in [&tt, &vt] {
                let rows = &t.per_species[s].rows;
                let mut out = vec![0.0; t.per_species[s].len()];
                dm.values_into(s, rows, &mut out, &mut sc);
                assert_eq!(out, dm.values(s, rows));
                for (r, v) in out.iter().enumerate() {
                    let one = dm.value(s, t.per_species[s].row(r), &mut sc);
                    assert!((v - one).abs() <= 1e-10 * one, "row {r}: {v} vs {one}");
                }
            }
            // Near ties, far closer than the single-precision screen can tell apart: rows
            // (1/2 + d) B_a + (1/2 - d) B_b, d ~ 1e-7, lie (features being affine in B) next to
            // the midpoint of two references; the screen must keep both.
            let tr = &tt.per_species[s];
            let (n, m) = (tr.len(), tr.m);
            let mut rows = vec![];
            for t in 0..n {
                let (a, b) = (tr.row(t), tr.row((t * 7 + 3) % n));
                let d = 1e-7 * (t as f64 / n as f64 - 0.5);
                rows.extend((0..m).map(|c| (0.5 + d) * a[c] + (0.5 - d) * b[c]));
            }
            let mut out = vec![0.0; n];
            dm.values_into(s, &rows, &mut out, &mut sc);
            for (r, v) in out.iter().enumerate() {
                let one = dm.value(s, &rows[r * m..(r + 1) * m], &mut sc);
                assert!((v - one).abs() <= 1e-10 * one, "near tie {r}: {v} vs {one}");
            }
            // Rows far outside single precision's range take the double-precision scan.
            let huge: Vec<f64> = rows[..3 * m].iter().map(|v| v * 1e25).collect();
            let mut out = vec![0.0; 3];
            dm.values_into(s, &huge, &mut out, &mut sc);
            for (r, v) in out.iter().enumerate() {
                let one = dm.value(s, &huge[r * m..(r + 1) * m], &mut sc);
                assert!(
                    v.is_finite() && (v - one).abs() <= 1e-10 * one,
                    "huge {r}: {v} vs {one}"
                );
            }
        }
        let mut c = Container::default();
        dm.save(&mut c);
        let p = Path::new("d.aceuq");
        let bytes = Container::from_bytes(p, &c.to_bytes()).unwrap();
        let back = DistanceModel::load(p, &bytes, &model).unwrap().unwrap();
        let mut sc2 = Scratch::new(&back);
        for s in 0..2 {
            assert_eq!(back.sigma(s), dm.sigma(s));
            for r in 0..vt.per_species[s].len() {
                let b = vt.per_species[s].row(r);
                assert_eq!(back.value(s, b, &mut sc2), dm.value(s, b, &mut sc));
            }
        }
        let mut bad_c = c.clone();
        put_f64(&mut bad_c, "uq.distance.1.sigma", vec![1], &[f64::NAN]);
        let e = DistanceModel::load(p, &bad_c, &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("uq.distance.1.sigma"), "{e}");
        let mut bad_c = c.clone();
        let (shape, arr) = bad_c.arrays["uq.distance.0.features.components"].clone();
        if let crate::io::container::Array::F64(mut v) = arr {
            v[0] += 0.5;
            bad_c.put(
                "uq.distance.0.features.components",
                shape,
                crate::io::container::Array::F64(v),
            );
        }
        let e = DistanceModel::load(p, &bad_c, &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("uq.distance.0.features.components"), "{e}");

        // A capped reference set: bounded size, covering radius recorded.
        let capped = Settings {
            max_reference: 20,
            ..settings
        };
        for reference in [Reference::Random, Reference::Farthest] {
            let st = Settings {
                reference,
                ..capped.clone()
            };
            let dm2 = DistanceModel::build(&model, &tt, &vt, &errs, &st, 1, false).unwrap();
            for s in 0..2 {
                assert_eq!(dm2.n_reference(s), 20);
                let r = dm2.meta.species[s].covering_radius;
                assert!(r > 0.0, "{reference:?}");
                // Every training environment lies within the covering radius of a reference.
                let mut sc = Scratch::new(&dm2);
                let sd = &dm2.species[s];
                for row in 0..tt.per_species[s].len() {
                    sd.features
                        .apply(tt.per_species[s].row(row), &mut sc.x, &mut sc.z);
                    let (_, d2) = sd.tree.nearest(&sc.z[..sd.features.k]).unwrap();
                    assert!(d2.sqrt() <= r * (1.0 + 1e-12));
                }
            }
            assert!(dm2.summary().contains("covering_radius"));
        }
        // Too few validation atoms is a clear error naming the species.
        let few: Vec<Vec<f64>> = errs
            .iter()
            .enumerate()
            .map(|(i, e)| if i == 0 { e.clone() } else { vec![] })
            .collect();
        let vt_one = descriptor_table(&model, &valid[..1]).unwrap();
        let err = DistanceModel::build(&model, &tt, &vt_one, &few[..1], &settings, 1, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("species Al") && err.contains("needs at least 10"),
            "{err}"
        );
    }
}
