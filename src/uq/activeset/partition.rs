//! Standardization statistics and cluster merging of the clustered builder
//! ([`super::ClusteredActiveSets`]).

use crate::uq::maxvol::live_columns;
use std::collections::BTreeMap;

/// Per-species statistics gathered in the first pass of the clustered builder.
pub(super) struct SpeciesStats {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) shift: Vec<f64>,
    pub(super) sum: Vec<f64>,
    pub(super) sumsq: Vec<f64>,
    /// Reservoir sample of raw rows (k-means), row-major.
    pub(super) sample: Vec<f64>,
    pub(super) sample_n: usize,
    /// Per label: count and raw row sum (label partitions).
    pub(super) labels: BTreeMap<String, (usize, Vec<f64>)>,
}

impl SpeciesStats {
    pub(super) fn new(m: usize) -> Self {
        SpeciesStats {
            m,
            n: 0,
            shift: vec![],
            sum: vec![0.0; m],
            sumsq: vec![0.0; m],
            sample: vec![],
            sample_n: 0,
            labels: BTreeMap::new(),
        }
    }

    /// Per column `1 / rms` of the rows (1 for a column that is zero on every row, or
    /// round-off, [`live_columns`]): the scale of the clusters' row spaces.
    pub(super) fn inv_rms(&self) -> Vec<f64> {
        self.rms()
            .iter()
            .zip(self.live())
            .map(|(&r, live)| if live { 1.0 / r } else { 1.0 })
            .collect()
    }

    /// Per column: root mean square of the rows.
    fn rms(&self) -> Vec<f64> {
        let n = self.n.max(1) as f64;
        (0..self.m)
            .map(|j| {
                let d = self.sum[j] / n;
                let mean = self.shift.get(j).copied().unwrap_or(0.0) + d;
                let var = (self.sumsq[j] / n - d * d).max(0.0);
                (var + mean * mean).sqrt()
            })
            .collect()
    }

    /// Per column: whether its root mean square is more than round-off ([`live_columns`]). The
    /// one decision every clustered step uses.
    pub(super) fn live(&self) -> Vec<bool> {
        live_columns(&self.rms())
    }

    pub(super) fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.n.max(1) as f64;
        let mut mean = vec![0.0; self.m];
        let mut std = vec![1.0; self.m];
        let live = self.live();
        for j in 0..self.m {
            let d = self.sum[j] / n;
            mean[j] = self.shift.get(j).copied().unwrap_or(0.0) + d;
            let var = (self.sumsq[j] / n - d * d).max(0.0);
            let sd = var.sqrt();
            // Zero-variance columns (up to rounding) and round-off columns keep std 1
            // (docs/clustered.md): scaled up, their noise would route atoms.
            std[j] = if live[j] && sd > 1e-12 * mean[j].abs().max(f64::MIN_POSITIVE) && sd > 0.0 {
                sd
            } else {
                1.0
            };
        }
        (mean, std)
    }
}

/// The parts of a species' partition that merging changes: the final cluster of every k-means
/// centroid, the centroids (rows of `m`), and the final clusters' atom counts.
pub(super) struct ClusterMap<'a> {
    pub(super) m: usize,
    pub(super) centroid_cluster: &'a mut [u32],
    pub(super) centroids: &'a [f64],
    pub(super) counts: &'a mut Vec<usize>,
}

/// Merge final cluster `k` of a species into the final cluster with the nearest
/// (count-weighted) centroid; returns that cluster's index before renumbering and the
/// standardized distance. Clusters after `k` move down by one.
pub(super) fn merge_cluster(sc: ClusterMap<'_>, orig_counts: &[usize], k: usize) -> (usize, f64) {
    let m = sc.m;
    let kk = sc.counts.len();
    let mut cen = vec![0.0; kk * m];
    let mut w = vec![0.0; kk];
    for (i, &c) in sc.centroid_cluster.iter().enumerate() {
        let c = c as usize;
        let wi = orig_counts[i].max(1) as f64;
        w[c] += wi;
        for j in 0..m {
            cen[c * m + j] += wi * sc.centroids[i * m + j];
        }
    }
    for c in 0..kk {
        for j in 0..m {
            cen[c * m + j] /= w[c].max(1.0);
        }
    }
    let z = cen[k * m..(k + 1) * m].to_vec();
    let mut best = (usize::MAX, f64::INFINITY);
    for c in (0..kk).filter(|&c| c != k) {
        let d: f64 = cen[c * m..(c + 1) * m]
            .iter()
            .zip(&z)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        if d < best.1 {
            best = (c, d);
        }
    }
    let into = best.0;
    for c in sc.centroid_cluster.iter_mut() {
        if *c as usize == k {
            *c = into as u32;
        }
        if *c as usize > k {
            *c -= 1;
        }
    }
    sc.counts[into] += sc.counts[k];
    sc.counts.remove(k);
    (into, best.1.sqrt())
}

/// Rows `x` (row-major, rows of `m`) standardized: `(x - mean) * inv_std`.
pub(super) fn standardize(x: &[f64], m: usize, mean: &[f64], inv_std: &[f64]) -> Vec<f64> {
    let mut z = x.to_vec();
    for row in z.chunks_exact_mut(m) {
        for j in 0..m {
            row[j] = (row[j] - mean[j]) * inv_std[j];
        }
    }
    z
}

/// `1 / s` of every entry.
pub(super) fn reciprocals(s: &[f64]) -> Vec<f64> {
    s.iter().map(|v| 1.0 / v).collect()
}

/// Merge clusters with fewer than `min_rows` rows, smallest first, into the cluster with the
/// nearest (count-weighted) centroid, until none is small or one is left. Returns the final
/// cluster of each original cluster (final clusters numbered in order of their first original
/// member), the final counts, and the merges `(from, into, count_from, distance)` in original
/// indices.
#[allow(clippy::type_complexity)]
pub(super) fn merge_small(
    centroids: &[f64],
    counts: &[usize],
    m: usize,
    min_rows: usize,
) -> (Vec<u32>, Vec<usize>, Vec<(usize, usize, usize, f64)>) {
    let k0 = counts.len();
    let mut alive = vec![true; k0];
    let mut cnt = counts.to_vec();
    let mut cen = centroids.to_vec();
    let mut owner: Vec<usize> = (0..k0).collect();
    let mut msgs = vec![];
    loop {
        let live: Vec<usize> = (0..k0).filter(|&k| alive[k]).collect();
        if live.len() <= 1 {
            break;
        }
        let Some(&small) = live
            .iter()
            .filter(|&&k| cnt[k] < min_rows)
            .min_by_key(|&&k| (cnt[k], k))
        else {
            break;
        };
        let z = &cen[small * m..(small + 1) * m];
        let mut best = (usize::MAX, f64::INFINITY);
        for &k in &live {
            if k == small {
                continue;
            }
            let d: f64 = cen[k * m..(k + 1) * m]
                .iter()
                .zip(z)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            if d < best.1 {
                best = (k, d);
            }
        }
        let into = best.0;
        msgs.push((small, into, cnt[small], best.1.sqrt()));
        let (a, b) = (cnt[into] as f64, cnt[small] as f64);
        if a + b > 0.0 {
            for j in 0..m {
                cen[into * m + j] = (a * cen[into * m + j] + b * cen[small * m + j]) / (a + b);
            }
        }
        cnt[into] += cnt[small];
        alive[small] = false;
        for o in owner.iter_mut() {
            if *o == small {
                *o = into;
            }
        }
    }
    let live: Vec<usize> = (0..k0).filter(|&k| alive[k]).collect();
    let map = owner
        .iter()
        .map(|o| live.iter().position(|l| l == o).expect("owner is alive") as u32)
        .collect();
    let final_counts = live.iter().map(|&k| cnt[k]).collect();
    (map, final_counts, msgs)
}
