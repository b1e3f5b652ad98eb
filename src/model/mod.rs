//! The linear ACE potential: definition, evaluation (`eval`), fitting (`fit`) and the short-range
//! core (`core`).
//!
//! Energy of atom `i` of species `s`: `E_i = E0_s + c_s · B_i + (1/2) sum_j φ_core(r_ij)`.
//!
//! Layer 2: owns the potential alone (species, radial and core terms, basis, coefficients,
//! evaluation tables) and the per-atom kernels. Imports basis, neighbors, structure, simd and
//! progress;
//! never uq, io or anything above (estimators are built from a model by `uq` and stored beside it
//! by `potential`).

pub mod core;
pub mod env;
pub mod eval;
pub mod fit;
pub mod grow;
mod tables;

pub(crate) use tables::{Derived, TERM_LANES};

use crate::basis::radial::RadialBasis;
use crate::basis::{BasisConfig, SpeciesBasis};
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
    /// How the ridge was chosen (fits with `ridge = "auto"`; absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ridge_choice: Option<fit::RidgeChoice>,
    /// How the basis was grown on the validation data (grown fits; absent otherwise and in
    /// older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis_choice: Option<grow::BasisChoice>,
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
