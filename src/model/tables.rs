//! The evaluation tables derived from a model's basis and coefficients, compiled once per
//! species when the model is assembled and read by the kernels in `eval`: the monomial DAG split
//! into internal nodes and leaves, and the blocked term tables that turn swept values into basis
//! functions.

use crate::basis::{Dag, SpeciesBasis};

/// Derived per-species evaluation tables.
#[derive(Clone, Debug, Default)]
pub(crate) struct Derived {
    pub dag: Dag,
    /// `[parent, extra]` of every non-`A` node, validated: `parent < n_a + k`, `extra < n_a`.
    pub links: Vec<[u32; 2]>,
    /// Energy-only evaluation splits the DAG: `internal` nodes (those with children), renumbered
    /// `n_a + k` in topological order, and `leaves` `[parent, extra]` (parents renumbered) with
    /// energy coefficients `leaf_c`, in the order the term tables read them (see `leaf_pos`);
    /// `ctilde_int` covers the `A`s and internal nodes.
    pub internal: Vec<[u32; 2]>,
    pub leaves: Vec<[u32; 2]>,
    pub leaf_c: Vec<f64>,
    pub ctilde_int: Vec<f64>,
    /// Basis functions from the energy-only sweep, over the values `v` the sweep leaves behind
    /// when asked to: the `A`s and renumbered internal nodes (`0..n_a + n_internal`), then every
    /// leaf monomial in `leaves` order (`n_v` values), then a staging row of
    /// `term_stage.len()` values, `v[n_v + k] = v[term_stage[k]]` or 0 where that is -1.
    /// Functions go in blocks of [`TERM_LANES`] (grouped by their number of terms, not in basis
    /// order): lane `j` of block `q` is function `term_out[q][j]` (`u32::MAX`: none) and equals
    /// `sum_{t in term_ptr[q]..term_ptr[q+1]} term_coef[t][j] * v[term_base[t] + j]`, terms in
    /// the basis's order (unused lanes read a staged 0 with coefficient 0).
    pub term_ptr: Vec<u32>,
    pub term_coef: Vec<[f64; TERM_LANES]>,
    pub term_base: Vec<u32>,
    pub term_out: Vec<[u32; TERM_LANES]>,
    pub term_stage: Vec<i32>,
    /// Position in `leaves` of each leaf in DAG order (the `n_a + k` nodes without children, in
    /// increasing `k`).
    pub leaf_pos: Vec<u32>,
    /// The leaves again, grouped by parent for the energy sweep (one register sum per parent
    /// instead of a read-modify-write chain on its adjoint): group `g` is `[parent, end]`, its
    /// leaves `group_leaves[previous end..end]` as `[extra, position in leaves]` with energy
    /// coefficients `group_c`.
    pub leaf_groups: Vec<[u32; 2]>,
    /// Swept-value index of every DAG node that is an `A` or internal (`u32::MAX` for leaves).
    pub node_value: Vec<u32>,
    pub group_leaves: Vec<[u32; 2]>,
    pub group_c: Vec<f64>,
}

/// Basis functions per block of the term tables (four f64 lanes of a 256-bit register).
pub(crate) const TERM_LANES: usize = 4;

impl Derived {
    pub(crate) fn new(b: &SpeciesBasis, c: &[f64]) -> Derived {
        let dag = b.build_dag();
        let na = dag.n_a;
        let links: Vec<[u32; 2]> = dag
            .parent
            .iter()
            .zip(&dag.extra)
            .map(|(&p, &e)| [p, e])
            .collect();
        // The unchecked sweeps in `eval` rely on these invariants.
        for (k, &[p, e]) in links.iter().enumerate() {
            assert!(
                (p as usize) < na + k && (e as usize) < na,
                "monomial DAG is not topologically ordered"
            );
        }
        let mut ctilde = vec![0.0; dag.len()];
        for f in 0..b.len() {
            for t in b.func_ptr[f] as usize..b.func_ptr[f + 1] as usize {
                ctilde[dag.mono_node[b.func_mono[t] as usize] as usize] += c[f] * b.func_coef[t];
            }
        }
        // Split into internal nodes and leaves for the energy-only path.
        let n = dag.len();
        let mut has_child = vec![false; n];
        for &[p, _] in &links {
            has_child[p as usize] = true;
        }
        let mut renum = vec![u32::MAX; n];
        for (k, r) in renum.iter_mut().enumerate().take(na) {
            *r = k as u32;
        }
        // Internal nodes are numbered by depth (product order), and within a depth by parent
        // and extra: still topological (a parent is one order lower), and siblings sit side by
        // side, so that the reverse sweep adds their parent's adjoint in a register instead of
        // a chain of read-modify-writes through memory.
        let mut depth = vec![0u32; n];
        for (k, &[p, _]) in links.iter().enumerate() {
            depth[na + k] = depth[p as usize] + 1;
        }
        let mut internal_nodes: Vec<usize> = (na..n).filter(|&node| has_child[node]).collect();
        internal_nodes.sort_by_key(|&node| depth[node]);
        let mut internal = Vec::new();
        let mut ctilde_int = ctilde[..na].to_vec();
        let mut start = 0;
        while start < internal_nodes.len() {
            // One depth at a time: the parents (one level up) are numbered already.
            let d = depth[internal_nodes[start]];
            let end = start
                + internal_nodes[start..]
                    .iter()
                    .take_while(|&&node| depth[node] == d)
                    .count();
            let level = &mut internal_nodes[start..end];
            level.sort_by_key(|&node| (renum[links[node - na][0] as usize], links[node - na][1]));
            for &node in level.iter() {
                let [p, e] = links[node - na];
                let parent = renum[p as usize];
                assert!(parent != u32::MAX, "parent precedes child");
                renum[node] = (na + internal.len()) as u32;
                internal.push([parent, e]);
                ctilde_int.push(ctilde[node]);
            }
            start = end;
        }
        let mut leaves = Vec::new();
        let mut leaf_c = Vec::new();
        for (k, &[p, e]) in links.iter().enumerate() {
            if !has_child[na + k] {
                let parent = renum[p as usize];
                assert!(parent != u32::MAX, "parent precedes child");
                leaves.push([parent, e]);
                leaf_c.push(ctilde[na + k]);
            }
        }
        // Each basis-function term as (value index in p, A index or the constant slot n_a).
        let mut leaf_of = vec![u32::MAX; n];
        {
            let mut li = 0;
            for (k, _) in links.iter().enumerate() {
                if !has_child[na + k] {
                    leaf_of[na + k] = li;
                    li += 1;
                }
            }
        }
        // Per function, its terms as (swept value, coefficient); a leaf is named by its
        // DAG-order number until the leaves are laid out below.
        let ni = internal.len();
        let nv = na + ni + leaves.len();
        assert!(nv <= i32::MAX as usize, "too many monomials");
        #[derive(Clone, Copy)]
        enum Ref {
            Value(u32),
            Leaf(u32),
        }
        let terms: Vec<Vec<(Ref, f64)>> = (0..b.len())
            .map(|f| {
                (b.func_ptr[f] as usize..b.func_ptr[f + 1] as usize)
                    .map(|t| {
                        let node = dag.mono_node[b.func_mono[t] as usize] as usize;
                        let r = if leaf_of[node] != u32::MAX {
                            Ref::Leaf(leaf_of[node])
                        } else {
                            assert!(
                                (renum[node] as usize) < na + ni,
                                "basis term outside the swept values"
                            );
                            Ref::Value(renum[node])
                        };
                        (r, b.func_coef[t])
                    })
                    .collect()
            })
            .collect();
        // Functions four at a time (one 256-bit register), step k of a block holding the k-th
        // term of each of its functions. The functions are grouped by their number of terms
        // (and where their non-leaf terms sit), so that few lanes idle; a block's results go
        // back to the functions' own places.
        let shape = |t: &[(Ref, f64)]| {
            let internal_at = t
                .iter()
                .enumerate()
                .filter(|(_, (r, _))| matches!(r, Ref::Value(_)))
                .fold(0u64, |m, (k, _)| m | 1u64 << k.min(63));
            (t.len(), internal_at)
        };
        let mut order: Vec<usize> = (0..b.len()).collect();
        order.sort_by_key(|&f| shape(&terms[f]));
        // The leaves are laid out in the order the blocks read them, so that a step reading
        // four fresh leaves reads four consecutive values (one load instead of a gather).
        let mut leaf_pos = vec![u32::MAX; leaves.len()];
        let mut next = 0u32;
        for block in order.chunks(TERM_LANES) {
            let steps = block.iter().map(|&f| terms[f].len()).max().unwrap_or(0);
            for k in 0..steps {
                for &f in block {
                    if let Some(&(Ref::Leaf(l), _)) = terms[f].get(k)
                        && leaf_pos[l as usize] == u32::MAX
                    {
                        leaf_pos[l as usize] = next;
                        next += 1;
                    }
                }
            }
        }
        for p in leaf_pos.iter_mut().filter(|p| **p == u32::MAX) {
            *p = next;
            next += 1;
        }
        let mut laid = vec![([0u32; 2], 0.0); leaves.len()];
        for (l, (&lf, &c)) in leaves.iter().zip(&leaf_c).enumerate() {
            laid[leaf_pos[l] as usize] = (lf, c);
        }
        let (leaves, leaf_c): (Vec<[u32; 2]>, Vec<f64>) = laid.into_iter().unzip();
        // The energy sweep reads the leaves grouped by parent (see `leaf_groups`).
        let mut by_parent: Vec<usize> = (0..leaves.len()).collect();
        by_parent.sort_by_key(|&l| (leaves[l][0], leaves[l][1]));
        let mut leaf_groups: Vec<[u32; 2]> = Vec::new();
        let mut group_leaves = Vec::with_capacity(leaves.len());
        let mut group_c = Vec::with_capacity(leaves.len());
        for &l in &by_parent {
            let [p, e] = leaves[l];
            if leaf_groups.last().is_none_or(|g| g[0] != p) {
                leaf_groups.push([p, 0]);
            }
            group_leaves.push([e, l as u32]);
            group_c.push(leaf_c[l]);
            leaf_groups.last_mut().expect("pushed above")[1] = group_leaves.len() as u32;
        }
        let index = |r: Ref| match r {
            Ref::Value(v) => v as i32,
            Ref::Leaf(l) => (na + ni) as i32 + leaf_pos[l as usize] as i32,
        };
        // Steps whose used lanes read consecutive values load them in place; the others
        // (and those with unused lanes) read a staging row after the swept values, filled by
        // `term_stage` (zeros in unused lanes), so that every step is one plain load.
        let mut term_ptr = vec![0u32];
        let mut term_coef = Vec::new();
        let mut term_base = Vec::new();
        let mut term_out = Vec::new();
        let mut term_stage = Vec::new();
        for block in order.chunks(TERM_LANES) {
            let steps = block.iter().map(|&f| terms[f].len()).max().unwrap_or(0);
            for k in 0..steps {
                let mut idx = [-1i32; TERM_LANES];
                let mut coef = [0.0; TERM_LANES];
                for (lane, &f) in block.iter().enumerate() {
                    if let Some(&(r, c)) = terms[f].get(k) {
                        idx[lane] = index(r);
                        coef[lane] = c;
                    }
                }
                let base = match in_place_base(&idx) {
                    Some(b) => b,
                    None => {
                        let b = nv + term_stage.len();
                        term_stage.extend_from_slice(&idx);
                        b
                    }
                };
                term_base.push(u32::try_from(base).expect("too many monomials"));
                term_coef.push(coef);
            }
            term_ptr.push(term_coef.len() as u32);
            let mut out = [u32::MAX; TERM_LANES];
            for (o, &f) in out.iter_mut().zip(block) {
                *o = f as u32;
            }
            term_out.push(out);
        }
        // The AVX2 staging gathers these without bounds checks.
        assert!(
            term_stage.iter().all(|&i| i < nv as i32),
            "staging index beyond the swept values"
        );
        Derived {
            dag,
            links,
            internal,
            leaves,
            leaf_c,
            ctilde_int,
            term_ptr,
            term_coef,
            term_base,
            term_out,
            term_stage,
            leaf_pos,
            leaf_groups,
            node_value: renum,
            group_leaves,
            group_c,
        }
    }
}

impl Derived {
    /// Length of the swept values the term tables read, staging row included.
    pub fn swept_len(&self) -> usize {
        self.dag.n_a + self.internal.len() + self.leaves.len() + self.term_stage.len()
    }
}

/// The first of [`TERM_LANES`] consecutive values holding the lanes `idx` reads, if every lane
/// is used and they are consecutive.
fn in_place_base(idx: &[i32; TERM_LANES]) -> Option<usize> {
    let base = idx[0];
    let run = base >= 0 && (0..TERM_LANES).all(|j| idx[j] == base + j as i32);
    run.then_some(base as usize)
}
