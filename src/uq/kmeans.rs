//! k-means (k-means++ seeding, then Lloyd iterations) and the nearest-centre search, shared by
//! the sparse GP's inducing inputs ([`super::optim::kmeans`]) and the clustered active sets'
//! partition ([`super::activeset::ClusteredActiveSets`]).
//!
//! The two callers had implementations of their own that differ in details which change the
//! results: the distance summed during seeding, what seeding does when every row already
//! coincides with a centre, whether the centres are updated once more in the iteration that
//! converged, and which row restarts an empty cluster. [`Options`] names each difference and
//! [`Options::INDUCING`] and [`Options::CLUSTERS`] reproduce each caller's former arithmetic bit
//! for bit.

use crate::simd::dist2;
use rand::RngExt;
use rayon::prelude::*;

/// The squared distance of a row to the latest centre during k-means++ seeding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedingDistance {
    /// [`dist2`]: four interleaved partial sums.
    Lanes,
    /// One running sum, left to right (rounds differently from `Lanes`).
    Sequential,
}

/// What k-means++ seeding does when the squared distances to the centres sum to zero (every row
/// coincides with a centre) or to NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DegenerateSeeding {
    /// Draw each remaining centre uniformly from the rows: always `k` centres, some repeated.
    DrawUniform,
    /// Stop: fewer than `k` centres.
    Stop,
}

/// The row that restarts a cluster left empty by an assignment: the row farthest from its
/// nearest centre in that assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyCluster {
    /// Among the rows not yet taken by another empty cluster in the same iteration; ties to the
    /// highest row index.
    FarthestUntaken,
    /// Among all rows (several empty clusters may restart at the same row); ties to the lowest
    /// row index.
    Farthest,
}

/// Where the callers' k-means differ (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub seeding_distance: SeedingDistance,
    pub degenerate_seeding: DegenerateSeeding,
    /// Recompute the centres also in the iteration whose assignments did not change (after which
    /// the iterations stop in either case).
    pub update_when_converged: bool,
    pub empty_cluster: EmptyCluster,
}

impl Options {
    /// The sparse GP's inducing inputs ([`super::optim::kmeans`]).
    pub const INDUCING: Options = Options {
        seeding_distance: SeedingDistance::Lanes,
        degenerate_seeding: DegenerateSeeding::DrawUniform,
        update_when_converged: true,
        empty_cluster: EmptyCluster::FarthestUntaken,
    };

    /// The clustered active sets' k-means partition (on standardized rows).
    pub const CLUSTERS: Options = Options {
        seeding_distance: SeedingDistance::Sequential,
        degenerate_seeding: DegenerateSeeding::Stop,
        update_when_converged: false,
        empty_cluster: EmptyCluster::Farthest,
    };
}

/// Index and squared distance ([`dist2`]) of the row of `c` (row-major, rows of `m`) nearest to
/// `z`; ties to the lower index.
#[inline(always)]
pub fn nearest(c: &[f64], m: usize, z: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (k, ck) in c.chunks_exact(m).enumerate() {
        let d = dist2(ck, z);
        if d < best.1 {
            best = (k, d);
        }
    }
    best
}

/// k-means of the `n` rows of `points` (row-major, rows of `dim`): k-means++ seeding (each new
/// centre drawn with probability proportional to its squared distance to the nearest centre so
/// far), then Lloyd iterations until the assignments stop changing or `iters`. The caller clamps
/// `k` to `1..=n` (`n >= 1`). Returns the centres (row-major; `k` of them, or fewer with
/// [`DegenerateSeeding::Stop`]) and the centre of each row (`usize::MAX` for every row if
/// `iters == 0`).
pub fn kmeans(
    points: &[f64],
    n: usize,
    dim: usize,
    k: usize,
    iters: usize,
    opts: &Options,
    rng: &mut impl rand::Rng,
) -> (Vec<f64>, Vec<usize>) {
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let seed_d2 = |a: &[f64], b: &[f64]| -> f64 {
        match opts.seeding_distance {
            SeedingDistance::Lanes => dist2(a, b),
            SeedingDistance::Sequential => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        }
    };
    // k-means++ seeding.
    let mut centres: Vec<f64> = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    centres.extend_from_slice(row(first));
    let mut d2: Vec<f64> = (0..n).map(|i| seed_d2(row(i), row(first))).collect();
    while centres.len() < k * dim {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut t = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &v) in d2.iter().enumerate() {
                if t < v {
                    pick = i;
                    break;
                }
                t -= v;
            }
            pick
        } else {
            match opts.degenerate_seeding {
                DegenerateSeeding::DrawUniform => rng.random_range(0..n),
                DegenerateSeeding::Stop => break,
            }
        };
        let c0 = centres.len();
        centres.extend_from_slice(row(pick));
        let cc = centres[c0..].to_vec();
        d2.par_iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = v.min(seed_d2(row(i), &cc)));
    }
    // Lloyd iterations.
    let kk = centres.len() / dim;
    let mut assign = vec![usize::MAX; n];
    for _ in 0..iters {
        let new: Vec<(usize, f64)> = (0..n)
            .into_par_iter()
            .map(|i| nearest(&centres, dim, row(i)))
            .collect();
        let changed = new.iter().zip(&assign).any(|(a, b)| a.0 != *b);
        for (a, b) in assign.iter_mut().zip(&new) {
            *a = b.0;
        }
        if !changed && !opts.update_when_converged {
            break;
        }
        let mut sum = vec![0.0; kk * dim];
        let mut cnt = vec![0usize; kk];
        for i in 0..n {
            let c = assign[i];
            cnt[c] += 1;
            for (s, v) in sum[c * dim..(c + 1) * dim].iter_mut().zip(row(i)) {
                *s += v;
            }
        }
        let mut taken: Vec<bool> = vec![];
        for c in 0..kk {
            if cnt[c] > 0 {
                for j in 0..dim {
                    centres[c * dim + j] = sum[c * dim + j] / cnt[c] as f64;
                }
            } else {
                let far = match opts.empty_cluster {
                    EmptyCluster::FarthestUntaken => {
                        if taken.is_empty() {
                            taken = vec![false; n];
                        }
                        let far = (0..n)
                            .filter(|&i| !taken[i])
                            .max_by(|&a, &b| new[a].1.total_cmp(&new[b].1))
                            .unwrap_or(0);
                        taken[far] = true;
                        far
                    }
                    EmptyCluster::Farthest => (0..n)
                        .max_by(|&a, &b| new[a].1.total_cmp(&new[b].1).then(b.cmp(&a)))
                        .unwrap_or(0),
                };
                centres[c * dim..(c + 1) * dim].copy_from_slice(row(far));
            }
        }
        if !changed {
            break;
        }
    }
    (centres, assign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    // The two k-means implementations as they were before they were merged here (verbatim but
    // for their names): `former_inducing` from `optim.rs`, `former_clusters` (with its
    // `former_nearest`) from `activeset.rs`. Oracles for `reproduces_both_former_kmeans`.

    /// k-means (k-means++ seeding, then Lloyd iterations until assignments stop changing or `iters`)
    /// of the rows of `points` (`n × dim`). Returns `k' × dim` centres, `k' = min(k, n)`; an empty
    /// cluster is re-seeded with the row farthest from its centre.
    fn former_inducing(
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
        let row = |i: usize| &points[i * dim..(i + 1) * dim];
        // k-means++ seeding.
        let mut centres: Vec<f64> = Vec::with_capacity(k * dim);
        let first = rng.random_range(0..n);
        centres.extend_from_slice(row(first));
        let mut d2: Vec<f64> = (0..n).map(|i| dist2(row(i), row(first))).collect();
        while centres.len() < k * dim {
            let total: f64 = d2.iter().sum();
            let pick = if total > 0.0 {
                let mut t = rng.random::<f64>() * total;
                let mut pick = n - 1;
                for (i, &v) in d2.iter().enumerate() {
                    if t < v {
                        pick = i;
                        break;
                    }
                    t -= v;
                }
                pick
            } else {
                rng.random_range(0..n)
            };
            centres.extend_from_slice(row(pick));
            let c = centres.len() / dim - 1;
            let cc = centres[c * dim..(c + 1) * dim].to_vec();
            d2.par_iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = v.min(dist2(&points[i * dim..(i + 1) * dim], &cc)));
        }
        let mut assign = vec![usize::MAX; n];
        for _ in 0..iters {
            let new: Vec<(usize, f64)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let p = row(i);
                    let mut best = (0, f64::INFINITY);
                    for c in 0..k {
                        let d = dist2(p, &centres[c * dim..(c + 1) * dim]);
                        if d < best.1 {
                            best = (c, d);
                        }
                    }
                    best
                })
                .collect();
            let changed = new.iter().zip(&assign).any(|(a, b)| a.0 != *b);
            for (a, b) in assign.iter_mut().zip(&new) {
                *a = b.0;
            }
            let mut sum = vec![0.0; k * dim];
            let mut cnt = vec![0usize; k];
            for i in 0..n {
                let c = assign[i];
                cnt[c] += 1;
                for (s, v) in sum[c * dim..(c + 1) * dim].iter_mut().zip(row(i)) {
                    *s += v;
                }
            }
            let mut taken = vec![false; n];
            for c in 0..k {
                if cnt[c] > 0 {
                    for j in 0..dim {
                        centres[c * dim + j] = sum[c * dim + j] / cnt[c] as f64;
                    }
                } else {
                    // Empty cluster: move it to the row worst served by its centre.
                    let far = (0..n)
                        .filter(|&i| !taken[i])
                        .max_by(|&a, &b| new[a].1.total_cmp(&new[b].1))
                        .unwrap_or(0);
                    taken[far] = true;
                    centres[c * dim..(c + 1) * dim].copy_from_slice(row(far));
                }
            }
            if !changed {
                break;
            }
        }
        centres
    }

    /// Index and squared distance of the row of `c` (row-major, rows of `m`) nearest to `z`; ties
    /// to the lower index.
    #[inline(always)]
    fn former_nearest(c: &[f64], m: usize, z: &[f64]) -> (usize, f64) {
        let mut best = (0, f64::INFINITY);
        for (k, ck) in c.chunks_exact(m).enumerate() {
            let d = crate::simd::dist2(ck, z);
            if d < best.1 {
                best = (k, d);
            }
        }
        best
    }

    /// k-means (k-means++ initialization, Lloyd iterations) on row-major standardized rows.
    /// Returns the centroids (row-major, at most `k` of them: fewer if there are fewer distinct
    /// rows) and the cluster of each row.
    fn former_clusters(
        z: &[f64],
        n: usize,
        m: usize,
        k: usize,
        iters: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f64>, Vec<u32>) {
        let k = k.min(n).max(1);
        let row = |i: usize| &z[i * m..(i + 1) * m];
        let d2 =
            |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum() };
        // k-means++: each new centre drawn with probability proportional to D^2.
        let mut cent: Vec<f64> = row(rng.random_range(0..n)).to_vec();
        let mut dmin: Vec<f64> = (0..n).map(|i| d2(row(i), &cent[..m])).collect();
        while cent.len() / m < k {
            let total: f64 = dmin.iter().sum();
            if total.is_nan() || total <= 0.0 {
                break; // every row coincides with a centre
            }
            let mut u = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &d) in dmin.iter().enumerate() {
                if u < d {
                    pick = i;
                    break;
                }
                u -= d;
            }
            let c0 = cent.len();
            cent.extend_from_slice(row(pick));
            let c = cent[c0..].to_vec();
            dmin.par_iter_mut()
                .enumerate()
                .for_each(|(i, d)| *d = d.min(d2(&z[i * m..(i + 1) * m], &c)));
        }
        let kk = cent.len() / m;
        let mut assign = vec![u32::MAX; n];
        for _ in 0..iters {
            let new: Vec<(u32, f64)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let (c, d) = former_nearest(&cent, m, &z[i * m..(i + 1) * m]);
                    (c as u32, d)
                })
                .collect();
            let changed = new.iter().zip(&assign).any(|(a, b)| a.0 != *b);
            for (a, b) in assign.iter_mut().zip(&new) {
                *a = b.0;
            }
            if !changed {
                break;
            }
            let mut sum = vec![0.0; kk * m];
            let mut cnt = vec![0usize; kk];
            for i in 0..n {
                let c = assign[i] as usize;
                cnt[c] += 1;
                for j in 0..m {
                    sum[c * m + j] += z[i * m + j];
                }
            }
            for c in 0..kk {
                if cnt[c] > 0 {
                    for j in 0..m {
                        cent[c * m + j] = sum[c * m + j] / cnt[c] as f64;
                    }
                } else {
                    // Empty cluster: restart it at the row farthest from its centre.
                    let far = (0..n)
                        .max_by(|&a, &b| new[a].1.total_cmp(&new[b].1).then(b.cmp(&a)))
                        .unwrap_or(0);
                    cent[c * m..(c + 1) * m].copy_from_slice(row(far));
                }
            }
        }
        (cent, assign)
    }

    /// Test rows: blobs, rows on an integer grid (exact distance ties), only a few distinct rows
    /// (degenerate seeding, empty clusters), small sets of small integers, and a row with a NaN.
    fn cases(seed: u64) -> Vec<(Vec<f64>, usize, usize)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = vec![];
        for (n, dim) in [(1, 3), (2, 1), (7, 4), (50, 5), (150, 3), (60, 9)] {
            let blobs: Vec<f64> = (0..n * dim)
                .map(|i| rng.random_range(-1.0..1.0) + 4.0 * ((i / dim) % 3) as f64)
                .collect();
            out.push((blobs, n, dim));
            let grid: Vec<f64> = (0..n * dim)
                .map(|_| rng.random_range(0..3) as f64)
                .collect();
            out.push((grid, n, dim));
        }
        for distinct in 1..=4 {
            let dim = 5;
            let d: Vec<f64> = (0..distinct * dim)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let rows: Vec<f64> = (0..40)
                .flat_map(|i| d[(i % distinct) * dim..(i % distinct + 1) * dim].to_vec())
                .collect();
            out.push((rows, 40, dim));
        }
        for _ in 0..3 {
            for (n, dim) in [(4, 1), (6, 1), (9, 2), (12, 1), (16, 2)] {
                let small: Vec<f64> = (0..n * dim)
                    .map(|_| rng.random_range(0..4) as f64)
                    .collect();
                out.push((small, n, dim));
            }
        }
        let mut nan: Vec<f64> = (0..30 * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
        nan[7] = f64::NAN;
        out.push((nan, 30, 2));
        out
    }

    #[test]
    fn reproduces_both_former_kmeans() {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
        let (mut runs, mut fewer) = (0, 0);
        for seed in 0..4u64 {
            for (rows, n, dim) in cases(seed) {
                for k in [1, 2, 3, 5, 8, n, n + 3] {
                    for iters in [0, 1, 2, 50] {
                        let s = seed * 1000 + (k * 10 + iters) as u64;
                        // The GP's inducing inputs, through `optim::kmeans`.
                        let (mut r1, mut r2) =
                            (ChaCha8Rng::seed_from_u64(s), ChaCha8Rng::seed_from_u64(s));
                        let a = super::super::optim::kmeans(&rows, dim, k, iters, &mut r1);
                        let b = former_inducing(&rows, dim, k, iters, &mut r2);
                        assert_eq!(bits(&a), bits(&b), "inducing n {n} dim {dim} k {k}");
                        assert_eq!(r1.random::<u64>(), r2.random::<u64>());
                        // The clustered active sets.
                        let (mut r1, mut r2) =
                            (ChaCha8Rng::seed_from_u64(s), ChaCha8Rng::seed_from_u64(s));
                        let (c, ac) = kmeans(
                            &rows,
                            n,
                            dim,
                            k.min(n).max(1),
                            iters,
                            &Options::CLUSTERS,
                            &mut r1,
                        );
                        let (d, ad) = former_clusters(&rows, n, dim, k, iters, &mut r2);
                        assert_eq!(bits(&c), bits(&d), "clusters n {n} dim {dim} k {k}");
                        let ac: Vec<u32> = ac.iter().map(|&x| x as u32).collect();
                        assert_eq!(ac, ad);
                        assert_eq!(r1.random::<u64>(), r2.random::<u64>());
                        runs += 1;
                        fewer += usize::from(c.len() / dim < k.min(n));
                    }
                }
            }
        }
        assert!(
            runs > 1000 && fewer > 10,
            "{runs} runs, {fewer} stopped seeding early"
        );
    }
}
