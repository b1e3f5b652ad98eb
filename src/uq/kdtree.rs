//! A static k-d tree for exact nearest-neighbour queries in a low-dimensional feature space
//! (the PCA-reduced descriptors of the latent-distance estimator).
//!
//! Built once (median split on the widest coordinate, leaves of at most [`LEAF`] points), queried
//! allocation-free by recursion with pruning on the distance to the splitting plane. Exact: the
//! answer equals a brute-force scan (tested). In the reduced dimensions used here (≲ 20) a query
//! visits a small fraction of the points; its cost is bounded by the (capped) reference set size.

// `!(x > 0.0)` is used on purpose: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::simd::dist2;

/// Points per leaf.
pub const LEAF: usize = 8;

#[derive(Clone, Debug)]
struct Node {
    /// Range of points `[lo, hi)` in the reordered arrays.
    lo: u32,
    hi: u32,
    /// Children (`u32::MAX` for a leaf), splitting coordinate and value.
    left: u32,
    right: u32,
    dim: u32,
    split: f64,
}

/// k-d tree over `n` points of dimension `dim`.
#[derive(Clone, Debug, Default)]
pub struct KdTree {
    dim: usize,
    /// Points reordered by the tree, row-major.
    points: Vec<f64>,
    /// Original index of each reordered point.
    index: Vec<u32>,
    nodes: Vec<Node>,
}

impl KdTree {
    /// Build from `n × dim` row-major points.
    pub fn build(points: &[f64], dim: usize) -> KdTree {
        assert!(dim > 0, "k-d tree needs at least one dimension");
        let n = points.len() / dim;
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut nodes = Vec::new();
        if n > 0 {
            build_node(points, dim, &mut order, 0, n, &mut nodes);
        }
        let mut re = Vec::with_capacity(n * dim);
        for &i in &order {
            re.extend_from_slice(&points[i as usize * dim..(i as usize + 1) * dim]);
        }
        KdTree {
            dim,
            points: re,
            index: order,
            nodes,
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True if the tree holds no points.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Nearest point to `q` (length `dim`): its original index and the squared distance.
    /// `None` for an empty tree.
    pub fn nearest(&self, q: &[f64]) -> Option<(usize, f64)> {
        if self.nodes.is_empty() {
            return None;
        }
        let mut best = (u32::MAX, f64::INFINITY);
        let q = &q[..self.dim];
        if self.dim <= MAX_INCREMENTAL_DIM {
            let mut off = [0.0; MAX_INCREMENTAL_DIM];
            self.search_incremental(0, q, 0.0, &mut off, &mut best);
        } else {
            self.search(0, q, &mut best);
        }
        Some((self.index[best.0 as usize] as usize, best.1))
    }

    fn scan_leaf(&self, nd: &Node, q: &[f64], best: &mut (u32, f64)) {
        let dim = self.dim;
        for p in nd.lo..nd.hi {
            let pi = p as usize;
            let x = &self.points[pi * dim..(pi + 1) * dim];
            // Most points are rejected on their first coordinates (in the distance estimator
            // they are PCA components, largest variance first). The partial sum is a sum of a
            // subset of the same non-negative terms, so it never exceeds the rounded full
            // distance and skipping on it is exact.
            if dim > 8 {
                let mut s = [0.0f64; 4];
                for c in 0..4 {
                    let d = x[c] - q[c];
                    s[c] = d * d;
                }
                if (s[0] + s[1]) + (s[2] + s[3]) >= best.1 {
                    continue;
                }
            }
            let d = dist2(x, q);
            if d < best.1 {
                *best = (p, d);
            }
        }
    }

    /// Search with the exact squared distance from `q` to the cell (`rd`, kept incrementally
    /// through the per-coordinate offsets `off`, Arya & Mount 1993): prunes much better than the
    /// distance to the splitting plane alone once the dimension exceeds a few.
    fn search_incremental(
        &self,
        node: usize,
        q: &[f64],
        rd: f64,
        off: &mut [f64; MAX_INCREMENTAL_DIM],
        best: &mut (u32, f64),
    ) {
        let nd = &self.nodes[node];
        if nd.left == u32::MAX {
            self.scan_leaf(nd, q, best);
            return;
        }
        let d = nd.dim as usize;
        let diff = q[d] - nd.split;
        let (near, far) = if diff <= 0.0 {
            (nd.left, nd.right)
        } else {
            (nd.right, nd.left)
        };
        self.search_incremental(near as usize, q, rd, off, best);
        let old = off[d];
        let rd_far = rd - old * old + diff * diff;
        if rd_far < best.1 {
            off[d] = diff;
            self.search_incremental(far as usize, q, rd_far, off, best);
            off[d] = old;
        }
    }

    fn search(&self, node: usize, q: &[f64], best: &mut (u32, f64)) {
        let nd = &self.nodes[node];
        if nd.left == u32::MAX {
            self.scan_leaf(nd, q, best);
            return;
        }
        let diff = q[nd.dim as usize] - nd.split;
        let (near, far) = if diff <= 0.0 {
            (nd.left, nd.right)
        } else {
            (nd.right, nd.left)
        };
        self.search(near as usize, q, best);
        if diff * diff < best.1 {
            self.search(far as usize, q, best);
        }
    }
}

/// Dimensions up to which the incremental cell distance is tracked (on the stack).
const MAX_INCREMENTAL_DIM: usize = 64;

fn build_node(
    points: &[f64],
    dim: usize,
    order: &mut [u32],
    lo: usize,
    hi: usize,
    nodes: &mut Vec<Node>,
) -> u32 {
    let id = nodes.len();
    nodes.push(Node {
        lo: lo as u32,
        hi: hi as u32,
        left: u32::MAX,
        right: u32::MAX,
        dim: 0,
        split: 0.0,
    });
    if hi - lo <= LEAF {
        return id as u32;
    }
    // Split on the coordinate with the widest spread.
    let coord = |i: u32, d: usize| points[i as usize * dim + d];
    let (mut best_d, mut best_w) = (0, -1.0);
    for d in 0..dim {
        let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
        for &i in &order[lo..hi] {
            let v = coord(i, d);
            mn = mn.min(v);
            mx = mx.max(v);
        }
        if mx - mn > best_w {
            best_w = mx - mn;
            best_d = d;
        }
    }
    if !(best_w > 0.0) {
        // All points identical: keep them in one leaf.
        return id as u32;
    }
    let mid = lo + (hi - lo) / 2;
    order[lo..hi].select_nth_unstable_by(mid - lo, |&a, &b| {
        coord(a, best_d).total_cmp(&coord(b, best_d))
    });
    let split = coord(order[mid], best_d);
    // Points left of `mid` are <= split, points from `mid` on are >= split.
    let left = build_node(points, dim, order, lo, mid, nodes);
    let right = build_node(points, dim, order, mid, hi, nodes);
    let nd = &mut nodes[id];
    nd.left = left;
    nd.right = right;
    nd.dim = best_d as u32;
    nd.split = split;
    id as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn nearest_equals_brute_force(
            dim in 1usize..6,
            pts in proptest::collection::vec(-5.0f64..5.0, 0..600),
            qs in proptest::collection::vec(-7.0f64..7.0, 6..60),
            dup in 0usize..3,
        ) {
            let n = pts.len() / dim;
            let mut pts = pts[..n * dim].to_vec();
            // Duplicated points and coarse values exercise ties and zero-width splits.
            for _ in 0..dup {
                let copy = pts.clone();
                pts.extend(copy.iter().map(|v| (v * 2.0).round() / 2.0));
            }
            let n = pts.len() / dim;
            let tree = KdTree::build(&pts, dim);
            prop_assert_eq!(tree.len(), n);
            for q in qs.chunks_exact(dim) {
                match tree.nearest(q) {
                    None => prop_assert_eq!(n, 0),
                    Some((i, d)) => {
                        let brute = (0..n)
                            .map(|j| dist2(&pts[j * dim..(j + 1) * dim], q))
                            .fold(f64::INFINITY, f64::min);
                        prop_assert_eq!(d, brute);
                        prop_assert_eq!(dist2(&pts[i * dim..(i + 1) * dim], q), d);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod high_dim_tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn plane_pruning_path_above_the_incremental_limit_is_exact() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let dim = MAX_INCREMENTAL_DIM + 6;
        let pts: Vec<f64> = (0..300 * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let tree = KdTree::build(&pts, dim);
        for _ in 0..20 {
            let q: Vec<f64> = (0..dim).map(|_| rng.random_range(-1.5..1.5)).collect();
            let (i, d) = tree.nearest(&q).unwrap();
            let brute = (0..300)
                .map(|j| dist2(&pts[j * dim..(j + 1) * dim], &q))
                .fold(f64::INFINITY, f64::min);
            assert_eq!(d, brute);
            assert_eq!(dist2(&pts[i * dim..(i + 1) * dim], &q), d);
        }
    }
}
