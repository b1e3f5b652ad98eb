//! The ACE basis: radial functions, real spherical harmonics, and their rotation-invariant
//! products (the B-basis), stored as sparse combinations of monomials in the atomic base `A`.
//!
//! For a centre atom `i`, `A_{z n l m} = sum_{j: s_j = z} g_n(r_ij) Y_lm(r̂_ij)`. A basis function of
//! order `nu` is `B = sum_t c_t prod_{k<nu} A_{a_{t,k}}` over canonical monomials `t`
//! (see `coupling`). Monomials are evaluated by a prefix DAG: each product of `k` factors is its
//! prefix of `k-1` factors times one `A`, so all products cost one multiplication each and the
//! adjoint (dE/dA) one reverse sweep.
//!
//! Layer 1 (foundation): owns the basis definition and its DAG; imports nothing of the crate.

pub mod coupling;
pub mod radial;
pub mod sph;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// How the basis is chosen (part of the fit configuration and stored in the model file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasisConfig {
    /// Cutoff radius in Å for every species pair not listed in `pair_cutoffs`.
    pub cutoff: f64,
    /// Per-pair cutoffs in Å, keyed `"A-B"` (order does not matter).
    pub pair_cutoffs: BTreeMap<String, f64>,
    /// Start of the radial resolution window in Å; `None` = from the data (0.75 × the shortest
    /// distance seen for that pair in training).
    pub radial_inner: Option<f64>,
    /// Number of radial functions per body order (`nmax[nu-1]` for order `nu`); its length is the
    /// maximum order `nu` (body order `nu + 1`).
    pub nmax: Vec<usize>,
    /// Maximum angular degree per body order (`lmax[0]` must be 0).
    pub lmax: Vec<usize>,
    /// Most distinct neighbour species in one function, per body order (`max_species[nu-1]`
    /// for order `nu`; 0 or a missing entry: no limit). With several species the functions of
    /// high order mixing many neighbour species make up most of the basis: `[0, 0, 1]` keeps
    /// the pair and three-body terms fully species-resolved and the four-body terms to one
    /// neighbour species at a time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub max_species: Vec<usize>,
}

impl Default for BasisConfig {
    fn default() -> Self {
        BasisConfig {
            cutoff: 5.5,
            pair_cutoffs: BTreeMap::new(),
            radial_inner: None,
            // Chosen on Li, In-P and W-Be (tests/data; docs/benchmarks/alloys.md): four-body
            // angular degree 4 with two radial functions beats the earlier [10, 6, 4, 2] /
            // [0, 3, 2, 1] (five-body, four-body degree 2) on all three held-out sets
            // (Li 16.5 vs 18.4, In-P 112 vs 114, W-Be 147 vs 183 meV/Å; energies 1.7 vs 4.0 and
            // 3.7 vs 6.5 meV/atom on the alloys) with fewer functions (197 vs 274 for one
            // species, 958 vs 1626 for two), at 1.4-1.6x the cost per atom-step in LAMMPS.
            nmax: vec![10, 6, 2],
            lmax: vec![0, 4, 4],
            max_species: vec![],
        }
    }
}

/// Errors in a basis definition.
#[derive(Debug, thiserror::Error)]
pub enum BasisError {
    #[error("basis: {0}")]
    Invalid(String),
}

/// Largest cutoff radius (Å) a basis may have: beyond the range of any interatomic potential,
/// and each atom's neighbour list would hold tens of thousands of atoms.
pub const MAX_CUTOFF: f64 = 30.0;
impl BasisConfig {
    /// Check the definition is usable; messages say which setting to change.
    pub fn validate(&self) -> Result<(), BasisError> {
        let bad = |m: String| Err(BasisError::Invalid(m));
        if self.nmax.is_empty() || self.nmax.len() != self.lmax.len() {
            return bad(format!(
                "nmax ({} entries) and lmax ({} entries) must list the same, nonzero number of body orders",
                self.nmax.len(),
                self.lmax.len()
            ));
        }
        if self.nmax.len() > 6 {
            return bad(format!(
                "at most 6 orders (body order 7) are supported, got {}",
                self.nmax.len()
            ));
        }
        if self.lmax[0] != 0 {
            return bad("lmax[0] must be 0: order-1 functions are radial only".into());
        }
        if self.max_species.len() > self.nmax.len() {
            return bad(format!(
                "max_species has {} entries, more than the {} body orders of nmax",
                self.max_species.len(),
                self.nmax.len()
            ));
        }
        if self.lmax.iter().any(|&l| l > 8) {
            return bad("lmax above 8 is not supported".into());
        }
        if self.nmax.iter().any(|&n| n == 0 || n > 32) {
            return bad("every nmax must be between 1 and 32".into());
        }
        if !(self.cutoff.is_finite() && self.cutoff > 0.5 && self.cutoff <= MAX_CUTOFF) {
            return bad(format!(
                "cutoff must be a number of Å above 0.5 and at most {MAX_CUTOFF}, got {}",
                self.cutoff
            ));
        }
        for (k, v) in &self.pair_cutoffs {
            if !(v.is_finite() && *v > 0.5 && *v <= MAX_CUTOFF) {
                return bad(format!(
                    "pair cutoff {k} must be a number of Å above 0.5 and at most {MAX_CUTOFF}, \
                     got {v}"
                ));
            }
            if k.split('-').count() != 2 {
                return bad(format!("pair cutoff key '{k}' must look like \"Al-Mg\""));
            }
        }
        if let Some(r0) = self.radial_inner
            && !(r0.is_finite() && r0 >= 0.0 && r0 < self.cutoff)
        {
            return bad(format!("radial_inner must be in [0, cutoff), got {r0}"));
        }
        Ok(())
    }

    /// Check the pair cutoffs against the model's `species`: each key names two of them, as
    /// written in the data (`Al-Mg`), and each unordered pair appears once (`Al-Mg` and
    /// `Mg-Al` would give the pair two cutoffs, one per centre species). A key that names no
    /// species of the model was silently ignored before.
    pub fn check_pair_species(&self, species: &[String]) -> Result<(), BasisError> {
        let mut seen: Vec<([&str; 2], &str)> = Vec::new();
        for key in self.pair_cutoffs.keys() {
            let Some((a, b)) = key.split_once('-') else {
                continue; // validate() reports the shape
            };
            for x in [a, b] {
                if !species.iter().any(|s| s == x) {
                    let canon = crate::elements::canonical_symbol(x);
                    let hint = if species.iter().any(|s| *s == canon) {
                        format!(
                            "; species are written as in the data: \"{}\"",
                            key.split('-')
                                .map(|p| crate::elements::canonical_symbol(p).into_owned())
                                .collect::<Vec<_>>()
                                .join("-")
                        )
                    } else {
                        String::new()
                    };
                    return Err(BasisError::Invalid(format!(
                        "pair cutoff '{key}': '{x}' is not a species of the model ({}){hint}",
                        species.join(", ")
                    )));
                }
            }
            let pair = if a <= b { [a, b] } else { [b, a] };
            if let Some((_, other)) = seen.iter().find(|(p, _)| *p == pair) {
                return Err(BasisError::Invalid(format!(
                    "pair cutoffs '{other}' and '{key}' are the same pair: give it one cutoff"
                )));
            }
            seen.push((pair, key));
        }
        Ok(())
    }

    /// Cutoff for the pair `(a, b)` of species names.
    pub fn pair_cutoff(&self, a: &str, b: &str) -> f64 {
        self.pair_cutoffs
            .get(&format!("{a}-{b}"))
            .or_else(|| self.pair_cutoffs.get(&format!("{b}-{a}")))
            .copied()
            .unwrap_or(self.cutoff)
    }
}

/// Layout of the atomic base vector `A` of one centre species: blocks per neighbour species `z`,
/// then per degree `l`, then radial index `n < nmax_l[l]`, then `m`.
#[derive(Clone, Debug, PartialEq)]
pub struct ALayout {
    /// Number of neighbour species.
    pub nspecies: usize,
    /// Largest degree present.
    pub lmax: usize,
    /// Number of radial functions used with each degree.
    pub nmax_l: Vec<usize>,
    /// Offset of block `(z, l)` at `z * (lmax + 1) + l`.
    offsets: Vec<usize>,
    /// Size of one species block.
    block: usize,
}

impl ALayout {
    /// Layout for `nspecies` neighbour species with `nmax_l[l]` radial functions of degree `l`.
    pub fn new(nspecies: usize, nmax_l: Vec<usize>) -> Self {
        let lmax = nmax_l.len() - 1;
        let mut offsets = Vec::with_capacity(nspecies * (lmax + 1));
        let mut off = 0;
        for _z in 0..nspecies {
            for (l, &n) in nmax_l.iter().enumerate() {
                offsets.push(off);
                off += n * (2 * l + 1);
            }
        }
        let block = off / nspecies.max(1);
        ALayout {
            nspecies,
            lmax,
            nmax_l,
            offsets,
            block,
        }
    }

    /// Total length of `A`.
    pub fn len(&self) -> usize {
        self.block * self.nspecies
    }

    /// True if `A` is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of one neighbour-species block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Largest number of radial functions of any degree.
    pub fn nmax(&self) -> usize {
        self.nmax_l.iter().copied().max().unwrap_or(0)
    }

    /// Start of block `(z, l)`; entry `(n, m)` is at `start + n * (2l+1) + (m + l)`.
    #[inline]
    pub fn start(&self, z: usize, l: usize) -> usize {
        self.offsets[z * (self.lmax + 1) + l]
    }

    /// Index of `A_{z n l m}`.
    #[inline]
    pub fn index(&self, z: usize, n: usize, l: usize, m: i32) -> usize {
        self.start(z, l) + n * (2 * l + 1) + (m + l as i32) as usize
    }

    /// Decode an index into `(z, n, l, m)`.
    pub fn decode(&self, a: usize) -> (usize, usize, usize, i32) {
        let z = a / self.block;
        let rem = a - z * self.block;
        for l in (0..=self.lmax).rev() {
            let s = self.start(0, l);
            if rem >= s && self.nmax_l[l] > 0 {
                let off = rem - s;
                let d = 2 * l + 1;
                return (z, off / d, l, (off % d) as i32 - l as i32);
            }
        }
        unreachable!("index within layout")
    }
}

/// A one-particle label `(neighbour species z, radial index n, degree l)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    pub z: u16,
    pub n: u16,
    pub l: u16,
}

/// The B-basis of one centre species, as sparse combinations of monomials of `A`.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeciesBasis {
    /// Layout of `A`.
    pub layout: ALayout,
    /// Monomials: sorted `A` indices, `mono_ptr[k]..mono_ptr[k+1]` into `mono_idx`.
    pub mono_ptr: Vec<u32>,
    /// Flattened factor lists.
    pub mono_idx: Vec<u32>,
    /// Functions: terms `func_ptr[f]..func_ptr[f+1]` into `func_mono`/`func_coef`.
    pub func_ptr: Vec<u32>,
    /// Monomial of each term.
    pub func_mono: Vec<u32>,
    /// Coefficient of each term.
    pub func_coef: Vec<f64>,
    /// Labels of each function (its order is the number of labels), `label_ptr` like `func_ptr`.
    pub label_ptr: Vec<u32>,
    /// Flattened labels.
    pub labels: Vec<Label>,
}

/// The monomial DAG used for evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dag {
    /// Number of leading nodes that are the `A`s themselves.
    pub n_a: usize,
    /// For node `k >= n_a`: parent node.
    pub parent: Vec<u32>,
    /// For node `k >= n_a`: the extra `A` index multiplied onto the parent.
    pub extra: Vec<u32>,
    /// Node of each monomial.
    pub mono_node: Vec<u32>,
}

impl Dag {
    /// Total number of nodes (including the `A`s).
    pub fn len(&self) -> usize {
        self.n_a + self.parent.len()
    }

    /// True if there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SpeciesBasis {
    /// Number of basis functions.
    pub fn len(&self) -> usize {
        self.func_ptr.len() - 1
    }

    /// True if the basis has no functions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of monomials.
    pub fn n_monomials(&self) -> usize {
        self.mono_ptr.len() - 1
    }

    /// Factors (sorted `A` indices) of monomial `k`.
    pub fn monomial(&self, k: usize) -> &[u32] {
        &self.mono_idx[self.mono_ptr[k] as usize..self.mono_ptr[k + 1] as usize]
    }

    /// Labels of function `f`.
    pub fn function_labels(&self, f: usize) -> &[Label] {
        &self.labels[self.label_ptr[f] as usize..self.label_ptr[f + 1] as usize]
    }

    /// Body order minus one (`nu`) of function `f`.
    pub fn order(&self, f: usize) -> usize {
        (self.label_ptr[f + 1] - self.label_ptr[f]) as usize
    }

    /// Build the evaluation DAG: one node per distinct prefix of every monomial.
    pub fn build_dag(&self) -> Dag {
        let n_a = self.layout.len();
        let mut dag = Dag {
            n_a,
            ..Default::default()
        };
        let mut map: HashMap<(u32, u32), u32> = HashMap::new();
        dag.mono_node = vec![0; self.n_monomials()];
        // Process monomials by increasing length so that parents precede children.
        let mut order: Vec<usize> = (0..self.n_monomials()).collect();
        order.sort_by_key(|&k| (self.monomial(k).len(), self.monomial(k).to_vec()));
        for k in order {
            let f = self.monomial(k);
            let mut node = f[0];
            for &a in &f[1..] {
                node = *map.entry((node, a)).or_insert_with(|| {
                    dag.parent.push(node);
                    dag.extra.push(a);
                    (n_a + dag.parent.len() - 1) as u32
                });
            }
            dag.mono_node[k] = node;
        }
        dag
    }

    /// Enumerate the basis for one centre species with `nspecies` neighbour species.
    pub fn generate(config: &BasisConfig, nspecies: usize) -> Result<SpeciesBasis, BasisError> {
        config.validate()?;
        let max_order = config.nmax.len();
        let lmax_all = *config.lmax.iter().max().unwrap();
        let mut nmax_l = vec![0usize; lmax_all + 1];
        for nu in 1..=max_order {
            for l in 0..=config.lmax[nu - 1] {
                nmax_l[l] = nmax_l[l].max(config.nmax[nu - 1]);
            }
        }
        // The generation visits every non-decreasing tuple of (species, n, l) labels of each
        // order and couples the (2l+1) m-values of each: refuse settings whose work alone would
        // take minutes to forever and gigabytes, rather than appear to hang (nmax = 32 and
        // lmax = 8 at order 6 pass `validate` but mean ~1e19 products).
        for nu in 1..=max_order {
            // One species' labels; every species has the same.
            let weights: Vec<f64> = (0..config.nmax[nu - 1])
                .flat_map(|_| (0..=config.lmax[nu - 1]).map(|l| (2 * l + 1) as f64))
                .collect();
            let limit = species_limit(config, nu);
            let work = coupling_work_species(&weights, nspecies, nu, limit);
            if work > MAX_WORK_PER_ORDER {
                let limited = if limit < nspecies {
                    format!(" (at most {limit} neighbour species per function)")
                } else {
                    String::new()
                };
                let or_limit = if nspecies > 1 && nu > 1 && limit > 1 {
                    // One fewer distinct species than the order allows now, at least 1.
                    let k = limit.min(nspecies).min(nu).saturating_sub(1).max(1);
                    let mut example = vec!["0".to_string(); nu];
                    example[nu - 1] = k.to_string();
                    format!(
                        ", or limit the neighbour species per function of that order \
                         (max_species, e.g. --max-species {})",
                        example.join(",")
                    )
                } else {
                    String::new()
                };
                return Err(BasisError::Invalid(format!(
                    "order {nu}: {nspecies} species{limited} with nmax {} and lmax {} mean \
                     {work:.2e} angular products to couple (limit {MAX_WORK_PER_ORDER:.0e}, \
                     about 20 s): reduce nmax[{i}] or lmax[{i}]{or_limit}",
                    config.nmax[nu - 1],
                    config.lmax[nu - 1],
                    i = nu - 1
                )));
            }
        }
        let layout = ALayout::new(nspecies, nmax_l);
        let mut cache = coupling::CouplingCache::default();
        let mut mono_map: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut basis = SpeciesBasis {
            layout: layout.clone(),
            mono_ptr: vec![0],
            mono_idx: vec![],
            func_ptr: vec![0],
            func_mono: vec![],
            func_coef: vec![],
            label_ptr: vec![0],
            labels: vec![],
        };
        for nu in 1..=max_order {
            let mut alphabet = Vec::new();
            for z in 0..nspecies {
                for n in 0..config.nmax[nu - 1] {
                    for l in 0..=config.lmax[nu - 1] {
                        alphabet.push(Label {
                            z: z as u16,
                            n: n as u16,
                            l: l as u16,
                        });
                    }
                }
            }
            alphabet.sort();
            let species_limit = species_limit(config, nu);
            let mut tuple = Vec::with_capacity(nu);
            enumerate_tuples(&alphabet, nu, 0, &mut tuple, &mut |labels: &[Label]| {
                let lsum: usize = labels.iter().map(|x| x.l as usize).sum();
                if lsum % 2 == 1 {
                    return;
                }
                // Labels are sorted by species first: distinct species are the changes of z.
                let distinct = 1 + labels.windows(2).filter(|w| w[0].z != w[1].z).count();
                if distinct > species_limit {
                    return;
                }
                let ls: Vec<usize> = labels.iter().map(|x| x.l as usize).collect();
                // Group ids: equal labels share an id (labels are sorted, so runs are contiguous).
                let mut groups = Vec::with_capacity(nu);
                for (k, lab) in labels.iter().enumerate() {
                    let g = if k > 0 && *lab == labels[k - 1] {
                        groups[k - 1]
                    } else {
                        k
                    };
                    groups.push(g);
                }
                for terms in coupling::independent_invariants(&mut cache, &groups, &ls) {
                    for (ms, coef) in terms {
                        let mut factors: Vec<u32> = labels
                            .iter()
                            .zip(&ms)
                            .map(|(lab, &m)| {
                                layout.index(
                                    lab.z as usize,
                                    lab.n as usize,
                                    lab.l as usize,
                                    m as i32 - lab.l as i32,
                                ) as u32
                            })
                            .collect();
                        factors.sort_unstable();
                        let next = mono_map.len() as u32;
                        let id = *mono_map.entry(factors.clone()).or_insert_with(|| {
                            basis.mono_idx.extend_from_slice(&factors);
                            basis.mono_ptr.push(basis.mono_idx.len() as u32);
                            next
                        });
                        basis.func_mono.push(id);
                        basis.func_coef.push(coef);
                    }
                    basis.func_ptr.push(basis.func_mono.len() as u32);
                    basis.labels.extend_from_slice(labels);
                    basis.label_ptr.push(basis.labels.len() as u32);
                }
            });
        }
        if basis.is_empty() {
            return Err(BasisError::Invalid(
                "the settings produce an empty basis".into(),
            ));
        }
        Ok(basis)
    }
}

/// Most coupling work one order may take (see [`coupling_work_upto`]). Measured: 2.7e7 (one species,
/// nmax 8,6 at orders 3,4 with lmax 5,4) takes about 10 s and 0.4 GB; 2.3e8 (order 4 with
/// lmax 7) about a minute. The default basis needs 5e5 for four species.
const MAX_WORK_PER_ORDER: f64 = 5e7;

/// Sum over every non-decreasing tuple of `k` labels of the product of their weights `2l+1`
/// (the complete homogeneous symmetric polynomial h_k of the weights), for k = 0..=nu: the
/// number of m-combinations basis generation goes through. Computed in O(labels × nu), as
/// floats (no overflow for absurd settings).
fn coupling_work_upto(weights: &[f64], nu: usize) -> Vec<f64> {
    let mut h = vec![0.0; nu + 1];
    h[0] = 1.0;
    for &w in weights {
        for k in 1..=nu {
            h[k] += w * h[k - 1];
        }
    }
    h
}

/// The most distinct neighbour species of a function of order `nu` (`usize::MAX`: no limit).
fn species_limit(config: &BasisConfig, nu: usize) -> usize {
    config
        .max_species
        .get(nu - 1)
        .copied()
        .filter(|&k| k > 0)
        .unwrap_or(usize::MAX)
}

/// [`coupling_work_upto`]'s h_nu over the labels of `nspecies` species with the same `weights` each, counting
/// only tuples with at most `limit` distinct species (what `max_species` lets generation couple):
/// over the species, tuples of `j` labels with `d` distinct species, each new species adding
/// `i >= 1` labels of its own (work `h_i` of its weights).
fn coupling_work_species(weights: &[f64], nspecies: usize, nu: usize, limit: usize) -> f64 {
    let h = coupling_work_upto(weights, nu);
    let dmax = limit.min(nspecies).min(nu);
    // dp[d][j]
    let mut dp = vec![vec![0.0; nu + 1]; dmax + 1];
    dp[0][0] = 1.0;
    for _ in 0..nspecies {
        for d in (1..=dmax).rev() {
            for j in (1..=nu).rev() {
                let mut add = 0.0;
                for i in 1..=j {
                    add += dp[d - 1][j - i] * h[i];
                }
                dp[d][j] += add;
            }
        }
    }
    (0..=dmax).map(|d| dp[d][nu]).sum()
}

/// Visit every non-decreasing tuple of length `nu` from `alphabet` (sorted).
fn enumerate_tuples(
    alphabet: &[Label],
    nu: usize,
    start: usize,
    cur: &mut Vec<Label>,
    visit: &mut dyn FnMut(&[Label]),
) {
    if cur.len() == nu {
        visit(cur);
        return;
    }
    for k in start..alphabet.len() {
        cur.push(alphabet[k]);
        enumerate_tuples(alphabet, nu, k, cur, visit);
        cur.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// h_nu of all `weights` (see [`coupling_work_upto`]).
    fn coupling_work(weights: &[f64], nu: usize) -> f64 {
        coupling_work_upto(weights, nu)[nu]
    }

    /// Pair cutoffs must name the model's species as written, once per unordered pair.
    #[test]
    fn pair_cutoff_keys_name_the_models_species_once() {
        let species: Vec<String> = vec!["Al".into(), "Mg".into()];
        let with = |keys: &[(&str, f64)]| BasisConfig {
            pair_cutoffs: keys.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        };
        let err = |keys: &[(&str, f64)]| with(keys).check_pair_species(&species).unwrap_err();
        assert!(
            with(&[("Al-Mg", 6.0), ("Mg-Mg", 5.0)])
                .check_pair_species(&species)
                .is_ok()
        );
        let e = err(&[("al-mg", 6.0)]).to_string();
        assert!(
            e.contains("'al' is not a species of the model (Al, Mg)") && e.contains("\"Al-Mg\""),
            "{e}"
        );
        let e = err(&[("Al-Cu", 6.0)]).to_string();
        assert!(
            e.contains("'Cu' is not a species") && !e.contains("written"),
            "{e}"
        );
        let e = err(&[("Al-Mg", 6.0), ("Mg-Al", 4.5)]).to_string();
        assert!(e.contains("are the same pair"), "{e}");
    }

    #[test]
    fn layout_round_trips() {
        let lay = ALayout::new(2, vec![5, 3, 2]);
        let mut seen = vec![false; lay.len()];
        for z in 0..2 {
            for l in 0..3 {
                for n in 0..lay.nmax_l[l] {
                    for m in -(l as i32)..=(l as i32) {
                        let a = lay.index(z, n, l, m);
                        assert!(!seen[a]);
                        seen[a] = true;
                        assert_eq!(lay.decode(a), (z, n, l, m));
                    }
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn absurd_but_valid_settings_are_refused_quickly() {
        let huge = BasisConfig {
            nmax: vec![32; 6],
            lmax: vec![0, 8, 8, 8, 8, 8],
            ..Default::default()
        };
        huge.validate().unwrap();
        let t0 = std::time::Instant::now();
        let err = SpeciesBasis::generate(&huge, 2).unwrap_err().to_string();
        assert!(t0.elapsed().as_secs_f64() < 1.0);
        assert!(
            err.contains("order 3:") && err.contains("reduce nmax[2] or lmax[2]"),
            "{err}"
        );
        // Weights 1 (l = 0): the number of multisets, C(k + nu - 1, nu).
        assert_eq!(coupling_work(&[1.0; 3], 2), 6.0);
        assert_eq!(coupling_work(&[1.0, 3.0], 2), 1.0 + 3.0 + 9.0);
        // Order 4 with lmax 7 passed the tuple count but took a minute (found by `make fuzz`).
        let high_l = BasisConfig {
            nmax: vec![10, 6, 4, 2],
            lmax: vec![0, 3, 2, 7],
            ..Default::default()
        };
        let err = SpeciesBasis::generate(&high_l, 2).unwrap_err().to_string();
        assert!(err.contains("order 4:"), "{err}");
        // The default basis and large research bases stay inside the limit.
        for (nmax, lmax, ns) in [
            (vec![10, 6, 2], vec![0, 4, 4], 4),
            (vec![10, 6, 4, 2], vec![0, 3, 2, 1], 4),
            (vec![12, 8, 5, 3], vec![0, 4, 3, 2], 3),
            (vec![16, 12, 8, 6], vec![0, 6, 5, 4], 1),
        ] {
            for nu in 1..=nmax.len() {
                let w: Vec<f64> = (0..ns * nmax[nu - 1])
                    .flat_map(|_| (0..=lmax[nu - 1]).map(|l| (2 * l + 1) as f64))
                    .collect();
                assert!(coupling_work(&w, nu) < MAX_WORK_PER_ORDER);
            }
        }
    }

    /// `max_species` keeps the functions of an order to at most that many distinct neighbour
    /// species: with a limit of 1 every function of that order is a one-species function of
    /// some neighbour species, so the order's count is the species count times the one-species
    /// count; no limit (0) is the full basis; too many entries are refused.
    #[test]
    fn max_species_limits_the_neighbour_species_per_function() {
        let base = BasisConfig {
            nmax: vec![4, 3, 2],
            lmax: vec![0, 2, 2],
            ..Default::default()
        };
        let per_order = |b: &SpeciesBasis| {
            let mut c = vec![0usize; 3];
            for f in 0..b.len() {
                c[b.order(f) - 1] += 1;
            }
            c
        };
        let one = per_order(&SpeciesBasis::generate(&base, 1).unwrap());
        let full = per_order(&SpeciesBasis::generate(&base, 3).unwrap());
        let limit = |ms: Vec<usize>| {
            let cfg = BasisConfig {
                max_species: ms,
                ..base.clone()
            };
            SpeciesBasis::generate(&cfg, 3).unwrap()
        };
        assert_eq!(per_order(&limit(vec![0, 0, 0])), full);
        let b = limit(vec![0, 1, 1]);
        assert_eq!(per_order(&b), vec![full[0], 3 * one[1], 3 * one[2]]);
        for f in 0..b.len() {
            let labs = b.function_labels(f);
            assert!(labs.iter().all(|x| x.z == labs[0].z), "{labs:?}");
        }
        let two = per_order(&limit(vec![0, 0, 2]));
        assert_eq!(two[..2], full[..2]);
        assert!(3 * one[2] < two[2] && two[2] < full[2], "{two:?} {full:?}");
        let err = SpeciesBasis::generate(
            &BasisConfig {
                max_species: vec![0, 0, 1, 1],
                ..base.clone()
            },
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_species has 4 entries"), "{err}");
    }

    /// The work guard counts what generation couples: with no limit the same as over all
    /// labels; with a limit, fewer. Fourteen species with the default four-body settings are
    /// refused in full (and the message names the way out) and accepted with one neighbour
    /// species per four-body function.
    #[test]
    fn the_work_guard_follows_the_species_limit() {
        let w = [1.0, 3.0, 5.0, 1.0, 3.0];
        for ns in 1..5 {
            let all: Vec<f64> = (0..ns).flat_map(|_| w).collect();
            for nu in 1..5 {
                let full = coupling_work(&all, nu);
                let same = coupling_work_species(&w, ns, nu, usize::MAX);
                assert!(
                    (same / full - 1.0).abs() < 1e-12,
                    "{ns} {nu}: {same} {full}"
                );
                // One species at a time: ns times one species' work.
                let one = coupling_work_species(&w, ns, nu, 1);
                assert!((one / (ns as f64 * coupling_work(&w, nu)) - 1.0).abs() < 1e-12);
            }
        }
        let many = |ms: Vec<usize>| {
            SpeciesBasis::generate(
                &BasisConfig {
                    max_species: ms,
                    ..Default::default()
                },
                14,
            )
        };
        let err = many(vec![]).unwrap_err().to_string();
        assert!(
            err.contains("order 3: 14 species") && err.contains("--max-species 0,0,2"),
            "{err}"
        );
        let b = many(vec![0, 0, 1]).unwrap();
        assert!(!b.is_empty());
    }

    #[test]
    fn small_basis_counts() {
        // nu=1: n<3 -> 3 functions; nu=2 (n<2, l<=1): pairs (n1<=n2) per l: 3 + 3 = 6.
        let cfg = BasisConfig {
            nmax: vec![3, 2],
            lmax: vec![0, 1],
            ..Default::default()
        };
        let b = SpeciesBasis::generate(&cfg, 1).unwrap();
        assert_eq!(b.len(), 9);
        let dag = b.build_dag();
        for (k, &node) in dag.mono_node.iter().enumerate() {
            let f = b.monomial(k);
            if f.len() == 1 {
                assert_eq!(node, f[0]);
            } else {
                assert!(node as usize >= dag.n_a);
                assert_eq!(dag.extra[node as usize - dag.n_a], *f.last().unwrap());
            }
        }
    }
}
