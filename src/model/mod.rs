//! The linear ACE potential: definition, evaluation (`eval`), fitting (`fit`) and the short-range
//! core (`core`).
//!
//! Energy of atom `i` of species `s`: `E_i = E0_s + c_s · B_i + (1/2) sum_j φ_core(r_ij)`.

pub mod core;
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
    /// Uncertainty estimators built for this model (empty unless requested).
    pub uq: crate::uq::UqModel,
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
    /// energy coefficients `leaf_c`; `ctilde_int` covers the `A`s and internal nodes.
    pub internal: Vec<[u32; 2]>,
    pub leaves: Vec<[u32; 2]>,
    pub leaf_c: Vec<f64>,
    pub ctilde_int: Vec<f64>,
    /// Basis functions from the energy-only sweep, over the values `v` the sweep leaves behind
    /// when asked to: the `A`s and renumbered internal nodes (`0..n_a + n_internal`), then every
    /// leaf monomial in leaf order. Functions go in blocks of [`TERM_LANES`]: block `q` holds
    /// functions `q * TERM_LANES ..`, and function `q * TERM_LANES + j` is
    /// `sum_{t in term_ptr[q]..term_ptr[q+1]} term_coef[t][j] * v[term_idx[t][j]]` (terms in the
    /// basis's order; padding terms have coefficient 0 and index 0).
    pub term_ptr: Vec<u32>,
    pub term_idx: Vec<[i32; TERM_LANES]>,
    pub term_coef: Vec<[f64; TERM_LANES]>,
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
        // Per function, its terms as (index of the swept value, coefficient).
        let nv = na + internal.len() + leaves.len();
        assert!(nv <= i32::MAX as usize, "too many monomials");
        let terms: Vec<Vec<(i32, f64)>> = (0..b.len())
            .map(|f| {
                (b.func_ptr[f] as usize..b.func_ptr[f + 1] as usize)
                    .map(|t| {
                        let node = dag.mono_node[b.func_mono[t] as usize] as usize;
                        let idx = if leaf_of[node] != u32::MAX {
                            (na + internal.len()) as u32 + leaf_of[node]
                        } else {
                            renum[node]
                        };
                        assert!((idx as usize) < nv, "basis term outside the swept values");
                        (idx as i32, b.func_coef[t])
                    })
                    .collect()
            })
            .collect();
        // Functions four at a time (one 256-bit register), step k of a block holding the k-th
        // term of each of its functions; functions with fewer terms are padded with coefficient
        // 0 on value 0.
        let mut term_ptr = vec![0u32];
        let mut term_idx = Vec::new();
        let mut term_coef = Vec::new();
        for block in terms.chunks(TERM_LANES) {
            let steps = block.iter().map(Vec::len).max().unwrap_or(0);
            for k in 0..steps {
                let mut idx = [0i32; TERM_LANES];
                let mut coef = [0.0; TERM_LANES];
                for (lane, t) in block.iter().enumerate() {
                    if let Some(&(i, c)) = t.get(k) {
                        idx[lane] = i;
                        coef[lane] = c;
                    }
                }
                term_idx.push(idx);
                term_coef.push(coef);
            }
            term_ptr.push(term_idx.len() as u32);
        }
        Derived {
            dag,
            links,
            internal,
            leaves,
            leaf_c,
            ctilde_int,
            term_ptr,
            term_idx,
            term_coef,
        }
    }
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
            uq: Default::default(),
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
