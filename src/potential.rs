//! A potential as users hold it: the fitted [`Model`] together with the uncertainty estimators
//! and statistical cutoffs built for it ([`UqModel`]), loaded from and saved to one `*.aceuq`
//! file.
//!
//! Layer 5. Owns: the bundle and its file (the model's sections through [`crate::io::modelfile`], the
//! estimators' sections through [`UqModel::save`]/[`UqModel::load`]). May import model, uq and
//! io; none of them imports this module.

use crate::io::container::{Container, ContainerError};
use crate::io::modelfile;
use crate::model::Model;
use crate::structure::Structure;
use crate::uq::{Method, UqError, UqModel, ValuesAndClusters};
use std::path::Path;

/// A fitted model and everything uncertainty-related built for it.
#[derive(Clone, Debug)]
pub struct Potential {
    /// The linear ACE potential (energies and forces).
    pub model: Model,
    /// Its uncertainty estimators and stored cutoffs (empty unless built).
    pub uq: UqModel,
}

impl Potential {
    /// A potential without uncertainty estimators.
    pub fn new(model: Model) -> Self {
        Potential {
            model,
            uq: UqModel::default(),
        }
    }

    /// The whole potential as a container (model sections first, then every estimator).
    pub fn to_container(&self) -> Container {
        let mut c = modelfile::to_container(&self.model);
        self.uq.save(&mut c);
        c
    }

    /// Decode a potential from a container read from `path`.
    pub fn from_container(path: &Path, c: &Container) -> Result<Potential, ContainerError> {
        let model = modelfile::from_container(path, c)?;
        let uq = UqModel::load(path, c, &model)?;
        Ok(Potential { model, uq })
    }

    /// Load a model file (`*.aceuq`).
    pub fn load(path: &Path) -> Result<Potential, ContainerError> {
        Self::from_container(path, &Container::read(path)?)
    }

    /// Save to a model file atomically (a reader never sees half a file).
    pub fn save(&self, path: &Path) -> Result<(), ContainerError> {
        self.to_container().write_atomic(path)
    }

    /// Per-atom uncertainty of `method` for every atom of every structure (`[structure][atom]`).
    pub fn per_atom(&self, data: &[Structure], method: Method) -> Result<Vec<Vec<f64>>, UqError> {
        self.uq.per_atom(&self.model, data, method)
    }

    /// The cluster of every atom (`[structure][atom]`) under the clustered active sets.
    pub fn clusters_per_atom(&self, data: &[Structure]) -> Result<Vec<Vec<usize>>, UqError> {
        self.uq.clusters_per_atom(&self.model, data)
    }

    /// Lower and upper cutoffs of `method` for species index `species` stored by `aceuq calibrate`.
    pub fn stored_cutoffs(&self, method: Method, species: usize) -> Option<(f64, f64)> {
        self.uq.stored_cutoffs(&self.model, method, species)
    }

    /// Lower and upper cutoffs of `method` for the atoms of species `species` in `gamma_local`
    /// cluster `cluster`: the cluster's own, else the species-level ones (the flag says which);
    /// see [`UqModel::stored_cluster_cutoffs`].
    pub fn stored_cluster_cutoffs(
        &self,
        method: Method,
        species: usize,
        cluster: usize,
    ) -> Option<(f64, f64, bool)> {
        self.uq
            .stored_cluster_cutoffs(&self.model, method, species, cluster)
    }

    /// `gamma_local` of every atom and its cluster (`[structure][atom]`), as the MD step
    /// computes them.
    pub fn gamma_local_per_atom(&self, data: &[Structure]) -> Result<ValuesAndClusters, UqError> {
        self.uq.gamma_local_per_atom(&self.model, data)
    }
}
