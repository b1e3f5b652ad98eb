//! The linear ACE potential: definition, evaluation (`eval`), fitting (`fit`) and the short-range
//! core (`core`).
//!
//! Energy of atom `i` of species `s`: `E_i = E0_s + c_s · B_i + (1/2) sum_j φ_core(r_ij)`.
//!
//! Layer 2: owns the potential alone (species, radial and core terms, basis, coefficients,
//! evaluation tables) and the per-atom kernels. Imports basis, neighbors, structure and simd;
//! never uq, io or anything above (estimators are built from a model by `uq` and stored beside it
//! by `potential`).

pub mod core;
pub mod env;
pub mod eval;
pub mod fit;

use crate::basis::radial::RadialBasis;
use crate::basis::{BasisConfig, Dag, SpeciesBasis};
use serde::{Deserialize, Serialize};

pub use eval::{Prediction, Workspace};

/// Errors raised while evaluating or fitting a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{origin}: species '{species}' of atom {atom} is not in the model (model species: {known})"
    )]
    UnknownSpecies {
        origin: String,
        species: String,
        atom: usize,
        known: String,
    },
    #[error(transparent)]
    Neighbors(#[from] crate::neighbors::NeighborError),
    #[error(transparent)]
    Basis(#[from] crate::basis::BasisError),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Numerical(String),
}

/// Provenance and quality of a fit, stored in the model file for people to read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FitInfo {
    /// aceuq version that made the fit.
    pub aceuq_version: String,
    /// Seconds since the Unix epoch when the fit finished.
    pub created_unix: u64,
    /// Training files.
    pub train_files: Vec<String>,
    /// Validation files.
    pub valid_files: Vec<String>,
    /// Numbers of training structures and atoms.
    pub n_train_structures: usize,
    pub n_train_atoms: usize,
    /// Fit settings used.
    pub settings: fit::FitConfig,
    /// Error table (train, and validation if given).
    pub metrics: Vec<fit::Metrics>,
}

/// A fitted linear ACE model for a set of species.
#[derive(Clone, Debug)]
pub struct Model {
    /// Species names; index = species id used everywhere in the model.
    pub species: Vec<String>,
    /// How the basis was chosen.
    pub basis_config: BasisConfig,
    /// Radial basis per (centre species, neighbour species), index `s * nspecies + z`.
    pub radial: Vec<RadialBasis>,
    /// Core repulsion per pair, index `s * nspecies + z`.
    pub core: Vec<core::CorePair>,
    /// B-basis per centre species.
    pub bases: Vec<SpeciesBasis>,
    /// Linear coefficients per centre species (length = number of basis functions).
    pub coefs: Vec<Vec<f64>>,
    /// One-body reference energy per species (eV).
    pub e0: Vec<f64>,
    /// How the model was made.
    pub fit_info: FitInfo,
    /// Evaluation data derived from the above (not stored in files).
    pub(crate) derived: Vec<Derived>,
}

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
}

/// Basis functions per block of the term tables (four f64 lanes of a 256-bit register).
pub(crate) const TERM_LANES: usize = 4;

impl Derived {
    fn new(b: &SpeciesBasis, c: &[f64]) -> Derived {
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
        let mut internal = Vec::new();
        let mut ctilde_int = ctilde[..na].to_vec();
        let mut leaves = Vec::new();
        let mut leaf_c = Vec::new();
        for (k, &[p, e]) in links.iter().enumerate() {
            let node = na + k;
            let parent = renum[p as usize];
            assert!(parent != u32::MAX, "parent precedes child");
            if has_child[node] {
                renum[node] = (na + internal.len()) as u32;
                internal.push([parent, e]);
                ctilde_int.push(ctilde[node]);
            } else {
                leaves.push([parent, e]);
                leaf_c.push(ctilde[node]);
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

impl Model {
    /// Assemble a model and build its evaluation tables.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        species: Vec<String>,
        basis_config: BasisConfig,
        radial: Vec<RadialBasis>,
        core: Vec<core::CorePair>,
        bases: Vec<SpeciesBasis>,
        coefs: Vec<Vec<f64>>,
        e0: Vec<f64>,
        fit_info: FitInfo,
    ) -> Result<Model, ModelError> {
        let ns = species.len();
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(ModelError::Data(format!("inconsistent model: {what}")))
            }
        };
        check(ns > 0, "no species")?;
        check(
            radial.len() == ns * ns && core.len() == ns * ns,
            "pair tables do not match the species",
        )?;
        check(
            bases.len() == ns && coefs.len() == ns && e0.len() == ns,
            "per-species tables do not match the species",
        )?;
        for s in 0..ns {
            check(
                coefs[s].len() == bases[s].len(),
                "coefficient count differs from basis size",
            )?;
            check(bases[s].layout.nspecies == ns, "basis layout species count")?;
            check(
                radial[s * ns..(s + 1) * ns]
                    .iter()
                    .all(|r| r.nmax >= bases[s].layout.nmax()),
                "radial basis smaller than the layout",
            )?;
        }
        let mut m = Model {
            species,
            basis_config,
            radial,
            core,
            bases,
            coefs,
            e0,
            fit_info,
            derived: vec![],
        };
        m.rebuild_derived();
        Ok(m)
    }

    /// Recompute the evaluation tables (after changing coefficients).
    pub fn rebuild_derived(&mut self) {
        self.derived = self
            .bases
            .iter()
            .zip(&self.coefs)
            .map(|(b, c)| Derived::new(b, c))
            .collect();
    }

    /// Number of species.
    pub fn nspecies(&self) -> usize {
        self.species.len()
    }

    /// Index of a species name.
    pub fn species_index(&self, name: &str) -> Option<usize> {
        self.species.iter().position(|s| s == name)
    }

    /// Largest cutoff over all pairs (Å).
    pub fn max_cutoff(&self) -> f64 {
        self.radial.iter().map(|r| r.rc).fold(0.0, f64::max)
    }

    /// Cutoff for centre species `s` and neighbour species `z` (Å).
    pub fn cutoff(&self, s: usize, z: usize) -> f64 {
        self.radial[s * self.nspecies() + z].rc
    }

    /// Number of basis functions of species `s`.
    pub fn nfuncs(&self, s: usize) -> usize {
        self.bases[s].len()
    }

    /// Map the symbols of a structure to species indices, with a clear error for unknown ones.
    pub fn map_species(&self, s: &crate::Structure) -> Result<Vec<u16>, ModelError> {
        s.symbols
            .iter()
            .enumerate()
            .map(|(i, sym)| {
                self.species_index(sym).map(|x| x as u16).ok_or_else(|| {
                    ModelError::UnknownSpecies {
                        origin: s.origin.to_string(),
                        species: sym.clone(),
                        atom: i + 1,
                        known: self.species.join(", "),
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
pub(crate) mod tests;
