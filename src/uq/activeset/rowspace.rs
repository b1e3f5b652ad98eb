//! The row space of one cluster of the clustered builder ([`super::ClusteredActiveSets`]): the
//! Gram matrix of its scaled rows, accumulated while streaming, and from it the [`Projection`]
//! onto the directions the rows span (see `species.rs` for how a projected set grades).

use super::species::Projection;
use crate::uq::maxvol::live_columns;
use faer::linalg::matmul::matmul;
use faer::mat::{MatMut, MatRef};
use faer::{Accum, Par};

/// Singular values below `RANK_EPS` times the largest count as zero when a cluster's rank is
/// taken from its Gram matrix. The Gram matrix squares the spread of the singular values, so
/// `1e-6` (eigenvalues `1e-12` of the largest) is about as small as double precision resolves.
pub const RANK_EPS: f64 = 1e-6;

/// A cluster, or a species' global set, keeps at most one dimension per `ROWS_PER_DIMENSION` of
/// its atoms. A set spanning
/// nearly as many dimensions as it has atoms is almost all atoms and very thin: every new atom
/// leaves its space along some direction only a handful of atoms define, and grades in the
/// millions (measured on Al-Mg: a mixed cluster of 1483 atoms spanning 1446 of 1626 dimensions
/// gave in-distribution cutoffs of 3e7). The directions with the least variance beyond that
/// count are left to the out-of-space grade. Clusters and species of at least `3 m` atoms that
/// span all dimensions keep the classic full-rank set.
pub const ROWS_PER_DIMENSION: usize = 3;

/// The build note for a set `what` of `n` atoms graded in its row space `p`, found at rank
/// tolerance `eps`.
pub(super) fn row_space_note(what: &str, n: usize, p: &Projection, eps: f64) -> String {
    format!(
        "{what}: its {n} atoms span {} of {} dimensions{}: graded in its own row space (at most one dimension per {ROWS_PER_DIMENSION} atoms; gamma = max of the in-space grade and the distance from the space over the set's width)",
        p.rank,
        p.m,
        if eps > RANK_EPS {
            format!(" (singular values below {eps:.0e} of the largest dropped)")
        } else {
            String::new()
        }
    )
}

/// Rows buffered before they are added to the Gram matrix (one matrix product per block).
const BLOCK: usize = 256;

/// `G = sum_i x'_i^T x'_i` over the scaled rows `x' = x / s` of one cluster.
pub(super) struct Gram {
    m: usize,
    /// The columns that are more than round-off ([`live_columns`]), decided once from unscaled
    /// rows (the species' column statistics, or this matrix before [`Gram::rescale`]): in
    /// scaled rows a dead column keeps its raw size, which says nothing about round-off.
    live: Option<Vec<bool>>,
    /// Rows added.
    pub(super) n: usize,
    g: Vec<f64>,
    buf: Vec<f64>,
    /// Rows per `config_type`.
    pub(super) labels: std::collections::BTreeMap<String, usize>,
}

impl Gram {
    pub(super) fn new(m: usize) -> Self {
        Gram {
            m,
            live: None,
            n: 0,
            g: vec![0.0; m * m],
            buf: Vec::with_capacity(BLOCK * m),
            labels: Default::default(),
        }
    }

    /// A Gram matrix of rows scaled by a species' column scales, with that species' live
    /// columns (see `SpeciesStats::live`).
    pub(super) fn with_live(m: usize, live: Vec<bool>) -> Self {
        Gram {
            live: Some(live),
            ..Gram::new(m)
        }
    }

    /// Add the row `x` scaled by `inv_scale`.
    pub(super) fn push(&mut self, x: &[f64], inv_scale: &[f64]) {
        self.buf
            .extend(x[..self.m].iter().zip(inv_scale).map(|(a, b)| a * b));
        self.n += 1;
        if self.buf.len() == BLOCK * self.m {
            self.flush();
        }
    }

    /// Count one row of `config_type` `label`.
    pub(super) fn count(&mut self, label: &str) {
        if let Some(n) = self.labels.get_mut(label) {
            *n += 1;
        } else {
            self.labels.insert(label.to_string(), 1);
        }
    }

    /// The `config_type`s of the rows, most frequent first.
    pub(super) fn inside(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> =
            self.labels.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Add the buffered rows.
    pub(super) fn flush(&mut self) {
        let m = self.m;
        let k = self.buf.len() / m;
        if k == 0 {
            return;
        }
        // Row-major buf (k × m) is column-major m × k: G += buf^T buf = B B^T with B = (m × k).
        let b = MatRef::from_column_major_slice(&self.buf, m, k);
        let dst = MatMut::from_column_major_slice_mut(&mut self.g, m, m);
        matmul(dst, Accum::Add, b, b.transpose(), 1.0, Par::Seq);
        crate::simd::clear_upper_simd_state();
        self.buf.clear();
    }

    /// Per column: `1 / rms` of the rows added so far (1 for a column zero, or
    /// round-off, on every row). Only meaningful for a Gram matrix of unscaled rows.
    pub(super) fn inv_rms(&mut self) -> Vec<f64> {
        self.flush();
        let n = self.n.max(1) as f64;
        let live = self.live();
        self.live = Some(live.clone());
        (0..self.m)
            .map(|j| {
                if live[j] {
                    (n / self.g[j * self.m + j]).sqrt()
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// Per column: whether it is more than round-off on some row ([`live_columns`]: compared with
    /// the largest column's root mean square), as fixed by [`Gram::inv_rms`] or
    /// [`Gram::with_live`], else from this matrix.
    fn live(&self) -> Vec<bool> {
        let m = self.m;
        if let Some(l) = &self.live {
            // Live for the species and not zero on every row of this matrix.
            return (0..m).map(|j| l[j] && self.g[j * m + j] > 0.0).collect();
        }
        let rms: Vec<f64> = (0..m).map(|j| self.g[j * m + j].max(0.0).sqrt()).collect();
        live_columns(&rms)
    }

    /// Rescale the accumulated rows by `inv_scale` (as if each had been pushed scaled).
    pub(super) fn rescale(&mut self, inv_scale: &[f64]) {
        self.flush();
        let m = self.m;
        for j in 0..m {
            for k in 0..m {
                self.g[j * m + k] *= inv_scale[j] * inv_scale[k];
            }
        }
    }

    /// Whether every column is nonzero on some row and there are at least
    /// `ROWS_PER_DIMENSION × m` rows (only then does the cluster get a full-rank set).
    pub(super) fn may_be_full_rank(&mut self) -> bool {
        self.flush();
        let m = self.m;
        self.n >= ROWS_PER_DIMENSION * m && self.live().iter().all(|&l| l)
    }

    /// The most dimensions the cluster's rows support (`n / ROWS_PER_DIMENSION`, at least 1,
    /// at most `m`).
    pub(super) fn supported_rank(&self) -> usize {
        (self.n / ROWS_PER_DIMENSION).clamp(1, self.m)
    }

    /// The projection onto the span of the rows, with singular values below `eps` times the
    /// largest dropped and at most `max_rank` directions kept; `None` if that keeps all `m`
    /// dimensions. Rank 0 (every row zero) gives a projection of rank 0, which the caller must
    /// reject.
    pub(super) fn projection(
        &mut self,
        inv_scale: &[f64],
        eps: f64,
        max_rank: usize,
    ) -> Option<Projection> {
        self.flush();
        let m = self.m;
        let live = self.live();
        let cols: Vec<u32> = (0..m).filter(|&j| live[j]).map(|j| j as u32).collect();
        let a = cols.len();
        if a == 0 {
            // Every row zero: rank 0 (an empty eigenproblem is not one nalgebra solves).
            return Some(Projection {
                m,
                inv_scale: inv_scale.to_vec(),
                cols,
                dead: (0..m as u32).collect(),
                q: vec![],
                qcols: 0,
                rank: 0,
                width: 0.0,
            });
        }
        let sub = nalgebra::DMatrix::from_fn(a, a, |i, k| {
            self.g[cols[i] as usize * m + cols[k] as usize]
        });
        let eig = sub.symmetric_eigen();
        let mut order: Vec<usize> = (0..a).collect();
        order.sort_by(|&x, &y| eig.eigenvalues[y].total_cmp(&eig.eigenvalues[x]));
        let top = order.first().map_or(0.0, |&i| eig.eigenvalues[i].max(0.0));
        let rank = order
            .iter()
            .filter(|&&i| top > 0.0 && eig.eigenvalues[i] > eps * eps * top)
            .count()
            .min(max_rank);
        if rank == m {
            return None;
        }
        let mut q = vec![0.0; a * a];
        for (c, &i) in order.iter().enumerate() {
            for k in 0..a {
                q[k * a + c] = eig.eigenvectors[(k, i)];
            }
        }
        // No build row lies farther from the kept space than all dropped variance together.
        let dropped: f64 = order[rank..]
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0))
            .sum();
        let dead = (0..m as u32)
            .filter(|j| cols.binary_search(j).is_err())
            .collect();
        Some(Projection {
            m,
            inv_scale: inv_scale.to_vec(),
            cols,
            dead,
            q,
            qcols: a,
            rank,
            width: dropped.sqrt(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows that are all zero (atoms without neighbours) give rank 0, which the caller
    /// refuses with a message, not a panic of the eigensolver.
    #[test]
    fn zero_rows_give_rank_zero() {
        let m = 4;
        let mut g = Gram::new(m);
        let scale = vec![1.0; m];
        for _ in 0..5 {
            g.push(&[0.0; 4], &scale);
        }
        let p = g.projection(&scale, 1e-6, m).expect("rank 0 < m");
        assert_eq!((p.rank, p.a(), p.dead.len()), (0, 0, m));
    }

    /// A thin projection (row-space columns only) gives the same in-space coordinates and, from
    /// the norms, the same distance from the space as the full rotation, one row at a time and
    /// in batches, for rows inside, near and far from the space.
    #[test]
    fn thin_projection_equals_the_full_rotation() {
        // 40 rows of 12 columns spanning 5 dimensions; column 11 zero on every row (dead).
        let (m, n, r) = (12usize, 40usize, 5usize);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut uni = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let basis: Vec<f64> = (0..r * m)
            .map(|k| if k % m == m - 1 { 0.0 } else { uni() })
            .collect();
        let row = |w: &[f64]| -> Vec<f64> {
            (0..m)
                .map(|j| (0..r).map(|t| w[t] * basis[t * m + j]).sum())
                .collect()
        };
        let mut g = Gram::new(m);
        let scale = vec![1.0; m];
        for _ in 0..n {
            let w: Vec<f64> = (0..r).map(|_| uni()).collect();
            g.push(&row(&w), &scale);
        }
        let full = g.projection(&scale, 1e-6, m).expect("rank-deficient");
        assert_eq!(full.rank, r);
        let thin = full.clone().thin();
        assert_eq!((thin.qcols, thin.q.len()), (r, full.a() * r));
        // Queries: in the space, slightly off it, far off it, and on the dead column.
        let mut queries = vec![];
        for off in [0.0, 1e-6, 0.3] {
            let w: Vec<f64> = (0..r).map(|_| uni()).collect();
            let mut b = row(&w);
            for v in b.iter_mut().take(m - 1) {
                *v += off * uni();
            }
            queries.push(b);
        }
        let mut dead = row(&[0.1, 0.2, 0.3, 0.4, 0.5]);
        dead[m - 1] = 0.7;
        queries.push(dead);
        let a = full.a();
        let (mut xa, mut y) = (vec![0.0; a], vec![0.0; a]);
        let (mut z1, mut z2) = (vec![0.0; r], vec![0.0; r]);
        for b in &queries {
            let rho1 = full.project(b, &mut z1, &mut xa, &mut y);
            let rho2 = thin.project(b, &mut z2, &mut xa, &mut y);
            for (u, v) in z1.iter().zip(&z2) {
                assert!((u - v).abs() < 1e-13, "{u} vs {v}");
            }
            // From the norms the distance loses the digits of |x|² below its rounding.
            assert!((rho1 - rho2).abs() < 1e-7, "rho {rho1} vs {rho2}");
        }
        let rows: Vec<f64> = queries.concat();
        let sel: Vec<usize> = (0..queries.len()).collect();
        let (mut zb1, mut rb1, mut zb2, mut rb2) = (vec![], vec![], vec![], vec![]);
        let (mut xs, mut ys) = (vec![], vec![]);
        full.project_rows(&rows, &sel, &mut zb1, &mut rb1, &mut xs, &mut ys);
        thin.project_rows(&rows, &sel, &mut zb2, &mut rb2, &mut xs, &mut ys);
        for (u, v) in zb1.iter().zip(&zb2) {
            assert!((u - v).abs() < 1e-13, "{u} vs {v}");
        }
        for (u, v) in rb1.iter().zip(&rb2) {
            assert!((u - v).abs() < 1e-7, "rho {u} vs {v}");
        }
        assert!(rb1[2] > 0.01 && rb1[3] > 0.5, "{rb1:?}");
    }
}
