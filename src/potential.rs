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
use crate::stats::cutoff::Calibration;
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

    /// The stored calibration entry behind [`Potential::stored_cutoffs`] (`cluster` `None`) or
    /// [`Potential::stored_cluster_cutoffs`] (`Some`: the cluster's own entry, else the
    /// species-level one).
    pub fn stored_calibration(
        &self,
        method: Method,
        species: usize,
        cluster: Option<usize>,
    ) -> Option<&Calibration> {
        self.uq
            .stored_calibration(&self.model, method, species, cluster)
    }

    /// `gamma_local` of every atom and its cluster (`[structure][atom]`), as the MD step
    /// computes them.
    pub fn gamma_local_per_atom(&self, data: &[Structure]) -> Result<ValuesAndClusters, UqError> {
        self.uq.gamma_local_per_atom(&self.model, data)
    }
}

/// Why a stored calibration entry has no upper (halting) cutoff, or `None` if it has one
/// (`u_max` finite). The conditional rule's stored reason (e.g. the method saturates below the
/// error limit), else a description of what is stored.
pub fn no_upper_reason(c: &Calibration) -> Option<String> {
    if c.u_max < f64::INFINITY {
        return None;
    }
    let stored = c
        .conditional
        .as_ref()
        .filter(|x| x.u_max.is_none())
        .and_then(|x| x.reason.clone());
    Some(one_line(&stored.unwrap_or_else(|| {
        format!(
            "the stored upper cutoff is {} (upper rule {})",
            c.u_max,
            c.upper_rule.name()
        )
    })))
}

/// The caveats of a stored calibration entry (what the sanity gates of `aceuq calibrate` found),
/// one line each, without the one saying there is no upper cutoff (see [`no_upper_reason`]).
pub fn calibration_caveats(c: &Calibration) -> Vec<String> {
    let no_upper = no_upper_reason(c).is_some();
    c.warnings
        .iter()
        .filter(|w| !(no_upper && w.starts_with("no upper cutoff")))
        .map(|w| one_line(w))
        .collect()
}

/// One line summing up what to know about a stored calibration entry: "no upper cutoff: <why>"
/// if it has none, then its caveats, separated by "; ". Empty if there is nothing to say.
pub fn calibration_note(c: &Calibration) -> String {
    no_upper_reason(c)
        .map(|r| format!("no upper cutoff: {r}"))
        .into_iter()
        .chain(calibration_caveats(c))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `s` with line breaks and tabs turned into spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
