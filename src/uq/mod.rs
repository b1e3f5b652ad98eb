//! Per-atom uncertainty estimators (global D-optimality after Podryabinkin & Shapeev, clustered
//! after Shuang et al., the others after Annevelink & Viswanathan), built from a fitted model and
//! stored beside
//! it in the model file:
//! global D-optimality (MaxVol extrapolation grade `gamma`), clustered local D-optimality
//! (`gamma_local`), ensembles, latent distance and a sparse Gaussian process.
//!
//! Builders consume a [`DescriptorTable`] (the basis vectors `B_i` of many atoms, grouped by
//! species, with where each row came from) and, for the calibrated estimators, per-atom force
//! errors on validation data ([`force_errors`]). Each estimator stores itself in the model file
//! under array names `uq.<method>.*` and a TOML table `[uq.<method>]`.
//!
//! Layer 4. Owns: the estimators ([`UqModel`]), their building, evaluation and persistence. May import
//! model, basis, neighbors, structure, stats, io's container, simd and progress; reads a [`Model`] but never writes
//! into it, and imports nothing above it (potential, engine, ffi, cli).

pub mod activeset;
pub mod contact;
pub mod distance;
pub mod ensemble;
pub mod features;
pub mod gp;
pub mod kdtree;
pub(crate) mod kmeans;
pub mod maxvol;
pub mod method;
pub mod optim;
pub(crate) mod persist;
pub mod screen;

use crate::io::container::{Container, ContainerError};
use crate::model::env::Environments;
use crate::model::{Model, ModelError, Workspace};
use crate::structure::Structure;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use method::Method;

/// Errors building or evaluating uncertainty estimators.
#[derive(Debug, thiserror::Error)]
pub enum UqError {
    /// Not enough data to build an estimator, with what to do.
    #[error("{0}")]
    Data(String),
    /// A numerical failure, with what to do.
    #[error("{0}")]
    Numerical(String),
    /// The model does not carry the estimator that was asked for.
    #[error("the model has no '{}' uncertainty; refit with `aceuq fit {}`", method.name(), method.fit_option())]
    Missing { method: Method },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// How to partition configuration space for clustered local D-optimality.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partition {
    /// k-means with `k` clusters on the standardized descriptors.
    KMeans(usize),
    /// One cluster per `config_type` of the training structures.
    ConfigType,
}

/// The `[uq]` table of the fit configuration: which estimators to build, and their settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UqConfig {
    /// Build global MaxVol active sets (gamma).
    pub active_set: bool,
    /// Build clustered local active sets (gamma_local).
    pub clusters: Option<Partition>,
    /// Number of ensemble members (0 = no ensemble).
    pub ensemble: usize,
    /// Build the latent-distance estimator.
    pub distance: bool,
    /// Build the sparse GP estimator.
    pub gp: bool,
    /// Record the shortest training distances for the contact measure.
    pub contact: bool,
    /// MaxVol and active-set settings.
    pub activeset: activeset::Settings,
    /// Ensemble settings.
    pub ensemble_settings: ensemble::Settings,
    /// Latent-distance settings.
    pub distance_settings: distance::Settings,
    /// Sparse GP settings.
    pub gp_settings: gp::Settings,
    /// Seed for every random choice (k-means, bootstrap, inducing points).
    pub seed: u64,
}

impl Default for UqConfig {
    fn default() -> Self {
        UqConfig {
            active_set: false,
            clusters: None,
            ensemble: 0,
            distance: false,
            gp: false,
            contact: false,
            activeset: Default::default(),
            ensemble_settings: Default::default(),
            distance_settings: Default::default(),
            gp_settings: Default::default(),
            seed: 2024,
        }
    }
}

impl UqConfig {
    /// Every estimator with default settings (benchmarks, examples).
    pub fn everything() -> Self {
        UqConfig {
            active_set: true,
            clusters: Some(Partition::KMeans(4)),
            ensemble: 4,
            distance: true,
            gp: true,
            contact: true,
            ..Default::default()
        }
    }

    /// True if any estimator is requested.
    pub fn any(&self) -> bool {
        self.active_set
            || self.clusters.is_some()
            || self.ensemble > 0
            || self.distance
            || self.gp
            || self.contact
    }
}

/// Build the estimators `cfg` asks for into `uq` (replacing those of the same kind), from the
/// training structures (active sets, clusters, ensemble members, reference environments) and the
/// validation structures (calibration of the ensemble, distance and GP estimators). The model is
/// only read.
pub fn build(
    model: &Model,
    uq: &mut UqModel,
    train: &[Structure],
    valid: &[Structure],
    cfg: &UqConfig,
    progress: bool,
) -> Result<(), UqError> {
    if !cfg.any() {
        return Ok(());
    }
    let table = descriptor_table(model, train)?;
    let say = |notes: &[String]| {
        for n in notes {
            crate::progress::note(progress, &format!("note: {n}"));
        }
    };
    if cfg.contact {
        uq.contact = Some(contact::Contact::build(model, train)?);
    }
    if cfg.active_set {
        let a = activeset::GlobalActiveSets::build(model, &table, &cfg.activeset, progress)?;
        say(&a.info.notes);
        uq.active_set = Some(a);
    }
    if let Some(partition) = &cfg.clusters {
        let labels = activeset::structure_labels(train);
        let a = activeset::ClusteredActiveSets::build(
            model,
            &table,
            &labels,
            partition,
            &cfg.activeset,
            cfg.seed,
            progress,
        )?;
        say(&a.info.notes);
        crate::progress::note(
            progress,
            &format!(
                "gamma_local clusters:\n{}",
                a.cluster_table(&|_, _| None).trim_end()
            ),
        );
        uq.local = Some(a);
    }
    if cfg.ensemble > 0 || cfg.distance || cfg.gp {
        if valid.is_empty() {
            return Err(UqError::Data(
                "the ensemble, distance and GP estimators are calibrated on validation data: give validation structures".into(),
            ));
        }
        let valid_errors = force_errors(model, valid)?;
        if cfg.ensemble > 0 {
            let e = ensemble::Ensemble::build(
                model,
                train,
                valid,
                &valid_errors,
                cfg.ensemble,
                &cfg.ensemble_settings,
                cfg.seed,
                progress,
            )?;
            uq.ensemble = Some(e);
        }
        if cfg.distance || cfg.gp {
            let valid_table = descriptor_table(model, valid)?;
            if cfg.distance {
                let d = distance::DistanceModel::build(
                    model,
                    &table,
                    &valid_table,
                    &valid_errors,
                    &cfg.distance_settings,
                    cfg.seed,
                    progress,
                )?;
                uq.distance = Some(d);
            }
            if cfg.gp {
                let g = gp::SparseGp::build(
                    model,
                    &table,
                    &valid_table,
                    &valid_errors,
                    &cfg.gp_settings,
                    cfg.seed,
                    progress,
                )?;
                uq.gp = Some(g);
            }
        }
    }
    Ok(())
}

/// Everything uncertainty-related a model carries.
#[derive(Clone, Debug, Default)]
pub struct UqModel {
    pub active_set: Option<activeset::GlobalActiveSets>,
    pub local: Option<activeset::ClusteredActiveSets>,
    pub ensemble: Option<ensemble::Ensemble>,
    pub distance: Option<distance::DistanceModel>,
    pub gp: Option<gp::SparseGp>,
    pub contact: Option<contact::Contact>,
    /// Statistical cutoffs per (species, method) from `aceuq calibrate`.
    pub calibration: Vec<crate::stats::cutoff::Calibration>,
    /// The halting rule of the watch's `upper auto`, as `aceuq calibrate` chose it (None: the
    /// frame rule, as before there was a choice).
    pub halt_rule: Option<crate::stats::upper::HaltRule>,
}

impl UqModel {
    /// Which methods are available.
    pub fn methods(&self) -> Vec<Method> {
        let mut v = vec![];
        if self.active_set.is_some() {
            v.push(Method::Gamma);
        }
        if self.local.is_some() {
            v.push(Method::GammaLocal);
        }
        if self.ensemble.is_some() {
            v.push(Method::Ensemble);
        }
        if self.distance.is_some() {
            v.push(Method::Distance);
        }
        if self.gp.is_some() {
            v.push(Method::Gp);
        }
        if self.contact.is_some() {
            v.push(Method::Contact);
        }
        v
    }

    /// Store every present estimator.
    pub fn save(&self, c: &mut Container) {
        if let Some(x) = &self.active_set {
            x.save(c);
        }
        if let Some(x) = &self.local {
            x.save(c);
        }
        if let Some(x) = &self.ensemble {
            x.save(c);
        }
        if let Some(x) = &self.distance {
            x.save(c);
        }
        if let Some(x) = &self.gp {
            x.save(c);
        }
        if let Some(x) = &self.contact {
            x.save(c);
        }
        if !self.calibration.is_empty() {
            let v = toml::Value::try_from(&self.calibration).expect("calibration serializes");
            c.meta.insert("calibration".into(), v);
        }
        if let Some(r) = &self.halt_rule {
            let v = toml::Value::try_from(r).expect("halt rule serializes");
            c.meta.insert("halt_rule".into(), v);
        }
    }

    /// Load the estimators present in a container (a model file read from `path`).
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<UqModel, ContainerError> {
        let uq =
            UqModel {
                active_set: activeset::GlobalActiveSets::load(path, c, model)?,
                local: activeset::ClusteredActiveSets::load(path, c, model)?,
                ensemble: ensemble::Ensemble::load(path, c, model)?,
                distance: distance::DistanceModel::load(path, c, model)?,
                gp: gp::SparseGp::load(path, c, model)?,
                contact: contact::Contact::load(path, c, model)?,
                calibration: match c.meta.get("calibration") {
                    None => vec![],
                    Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| {
                        ContainerError::Invalid {
                            path: path.display().to_string(),
                            message: crate::io::modelfile::meta_message("calibration table", &e),
                        }
                    })?,
                },
                halt_rule: match c.meta.get("halt_rule") {
                    None => None,
                    Some(v) => Some(v.clone().try_into().map_err(|e: toml::de::Error| {
                        ContainerError::Invalid {
                            path: path.display().to_string(),
                            message: crate::io::modelfile::meta_message("halt rule", &e),
                        }
                    })?),
                },
            };
        uq.check_cluster_cutoffs(model)
            .and_then(|()| uq.check_entries(model))
            .and_then(|()| uq.halt_rule.as_ref().map_or(Ok(()), check_halt_rule))
            .map_err(|message| ContainerError::Invalid {
                path: path.display().to_string(),
                message,
            })?;
        Ok(uq)
    }

    /// Number of `gamma_local` clusters of species `species` (`None` without clustered active
    /// sets or for a species index out of range).
    pub fn gamma_local_clusters(&self, species: usize) -> Option<usize> {
        let local = self.local.as_ref()?;
        local.species.get(species).map(|sc| sc.sets.len())
    }

    /// Every per-cluster cutoff must name an existing `gamma_local` cluster of a model species
    /// (the clusters are indices into the estimator stored beside them).
    pub fn check_cluster_cutoffs(&self, model: &Model) -> Result<(), String> {
        for c in &self.calibration {
            let Some(k) = c.cluster else { continue };
            let what = format!(
                "calibration table: cutoffs of '{}' for cluster {k} of species {}",
                c.method, c.species
            );
            if c.method != Method::GammaLocal.name() {
                return Err(format!(
                    "{what}: only '{}' has per-cluster cutoffs",
                    Method::GammaLocal.name()
                ));
            }
            let Some(s) = model.species_index(&c.species) else {
                return Err(format!(
                    "{what}: the model has no species {} (it has {})",
                    c.species,
                    model.species.join(", ")
                ));
            };
            match self.gamma_local_clusters(s) {
                None => {
                    return Err(format!(
                        "{what}: the model has no clustered active sets ('{}'); rerun `aceuq calibrate`",
                        Method::GammaLocal.name()
                    ));
                }
                Some(n) if k >= n => {
                    return Err(format!(
                        "{what}: the model's '{}' has only {n} clusters for {} (0 to {}); rerun `aceuq calibrate`",
                        Method::GammaLocal.name(),
                        c.species,
                        n.saturating_sub(1)
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Every stored calibration entry is for a species of the model and, for the methods this
    /// build knows, has usable numbers ([`crate::stats::cutoff::Calibration::check_stored`]).
    fn check_entries(&self, model: &Model) -> Result<(), String> {
        for c in &self.calibration {
            if model.species_index(&c.species).is_none() {
                return Err(format!(
                    "a calibration entry of {} is for species {}, which the model does not have \
                     (it has {}): rerun `aceuq calibrate`",
                    c.method,
                    c.species,
                    model.species.join(", ")
                ));
            }
            // A method this build does not know (a newer writer's) is never looked up: its
            // entries are left as they are.
            if Method::from_name(&c.method).is_none() {
                continue;
            }
            c.check_stored()?;
        }
        Ok(())
    }

    /// Remove the cutoffs of the grades of rebuilt active sets (gamma's and every gamma_local
    /// entry: their values change with the sets) and the halting rule scored with them; the
    /// other methods' cutoffs stay. Returns the entries removed and whether a halting rule went.
    pub fn drop_grade_cutoffs(&mut self) -> (usize, bool) {
        let before = self.calibration.len();
        let grades = [Method::Gamma.name(), Method::GammaLocal.name()];
        self.calibration
            .retain(|c| !grades.contains(&c.method.as_str()));
        let dropped = before - self.calibration.len();
        let rule = dropped > 0 && self.halt_rule.take().is_some();
        (dropped, rule)
    }
}

/// Per-atom values of every structure and the `gamma_local` cluster of every atom
/// (`[structure][atom]` both).
pub type ValuesAndClusters = (Vec<Vec<f64>>, Vec<Vec<u32>>);

/// Paired (force errors, uncertainties) per species and cluster (`[species][cluster]`).
pub type ClusterPairs = Vec<Vec<(Vec<f64>, Vec<f64>)>>;

/// One structure's per-atom values and clusters.
type AtomValues = (Vec<f64>, Vec<u32>);

/// Scratch memory for per-atom uncertainty evaluation (one per thread; no allocation per atom).
#[derive(Clone, Debug, Default)]
pub struct UqScratch {
    gamma: activeset::GammaScratch,
    cluster: Vec<u32>,
    distance: Option<distance::Scratch>,
    gp: Option<gp::Scratch>,
}

impl UqScratch {
    /// The `gamma_local` cluster of every row of the last [`UqModel::evaluate_rows`] call for
    /// [`Method::GammaLocal`] (an index into the species' clusters); meaningless after a call for
    /// another method.
    pub fn gamma_local_clusters(&self) -> &[u32] {
        &self.cluster
    }

    /// Scratch sized for `model` and its estimators `uq`.
    pub fn new(model: &Model, uq: &UqModel) -> Self {
        UqScratch {
            gamma: activeset::GammaScratch::for_model(model),
            cluster: vec![],
            distance: uq.distance.as_ref().map(distance::Scratch::new),
            gp: uq.gp.as_ref().map(gp::Scratch::new),
        }
    }
}

/// Whether a stored halting rule is one this build applies: `frame`, `vote`, or `juror` naming a
/// known method, and a jury of known methods (anything else was written by a newer aceuq).
fn check_halt_rule(r: &crate::stats::upper::HaltRule) -> Result<(), String> {
    let known = |m: &str| Method::from_name(m).is_some();
    let rule_ok = match r.rule.as_str() {
        "frame" | "vote" => true,
        "juror" => r.juror.as_deref().is_some_and(known),
        _ => false,
    };
    if rule_ok && r.jury.iter().all(|m| known(m)) {
        return Ok(());
    }
    Err(format!(
        "halt rule: rule '{}'{}, jury [{}]: not one this build knows (frame, vote, or juror \
         naming one of {}): probably written by a newer aceuq; rebuild aceuq (and the LAMMPS \
         plugin: `make plugin`), or recalibrate with this one",
        r.rule,
        r.juror
            .as_deref()
            .map_or(String::new(), |j| format!(" with juror '{j}'")),
        r.jury.join(", "),
        Method::known()
    ))
}

/// Sets to 0 the value of every all-zero row of `rows` (`out.len()` rows): an atom without a
/// neighbour inside the cutoff, whose model force is 0 by symmetry, so that no force error can
/// be attributed to it. Gamma, `gamma_local`, the ensemble and contact give such an atom 0 by
/// construction; the latent distance and the GP do not (an empty environment lies far from the
/// training environments), and would flag or halt on an evaporated atom. The test stops at a
/// row's first nonzero entry: for an atom with neighbours, its first few functions.
fn zero_empty_environments(rows: &[f64], out: &mut [f64]) {
    if out.is_empty() {
        return;
    }
    let m = rows.len() / out.len();
    for (row, v) in rows.chunks_exact(m.max(1)).zip(out.iter_mut()) {
        if m > 0 && row.iter().all(|&x| x == 0.0) {
            *v = 0.0;
        }
    }
}

fn missing(method: Method) -> UqError {
    UqError::Missing { method }
}

impl UqModel {
    /// Per-atom uncertainty of `method` for atoms of species `species` from their basis vectors
    /// (`rows`: `n × m_s`, row-major) into `out` (`n` values). Methods that need more than the basis
    /// vector (the ensemble needs member forces) are evaluated elsewhere.
    pub fn evaluate_rows(
        &self,
        method: Method,
        species: usize,
        rows: &[f64],
        out: &mut [f64],
        scratch: &mut UqScratch,
    ) -> Result<(), UqError> {
        let uq = self;
        match method {
            Method::Gamma => {
                let a = uq.active_set.as_ref().ok_or_else(|| missing(method))?;
                a.gamma_batch(species, rows, out, &mut scratch.gamma);
            }
            Method::GammaLocal => {
                let a = uq.local.as_ref().ok_or_else(|| missing(method))?;
                scratch.cluster.clear();
                scratch.cluster.resize(out.len(), 0);
                a.gamma_local_batch(species, rows, out, &mut scratch.cluster, &mut scratch.gamma);
            }
            Method::Distance => {
                let d = uq.distance.as_ref().ok_or_else(|| missing(method))?;
                let sc = scratch
                    .distance
                    .get_or_insert_with(|| distance::Scratch::new(d));
                d.values_into(species, rows, out, sc);
            }
            Method::Gp => {
                let g = uq.gp.as_ref().ok_or_else(|| missing(method))?;
                let sc = scratch.gp.get_or_insert_with(|| gp::Scratch::new(g));
                g.values_into(species, rows, out, sc);
            }
            // Not from the basis vector: the ensemble needs member forces, contact the
            // neighbour distances.
            Method::Ensemble | Method::Contact => return Err(missing(method)),
        }
        if matches!(method, Method::Distance | Method::Gp) {
            zero_empty_environments(rows, out);
        }
        Ok(())
    }

    /// Lower and upper uncertainty cutoffs of `method` for `species` stored by `aceuq calibrate`
    /// (the species-level entry).
    pub fn stored_cutoffs(
        &self,
        model: &Model,
        method: Method,
        species: usize,
    ) -> Option<(f64, f64)> {
        self.stored_entry(model, method, species, None)
            .map(|c| (c.u_c, c.u_max))
    }

    /// Lower and upper cutoffs of `method` for the atoms of `species` in `gamma_local` cluster
    /// `cluster`: the cluster's own entry if `aceuq calibrate` stored one, else the species-level
    /// entry (clusters with too few calibration atoms, and methods other than `gamma_local`,
    /// have none). The flag says whether the cluster's own entry was used.
    pub fn stored_cluster_cutoffs(
        &self,
        model: &Model,
        method: Method,
        species: usize,
        cluster: usize,
    ) -> Option<(f64, f64, bool)> {
        if let Some(c) = self.stored_entry(model, method, species, Some(cluster)) {
            return Some((c.u_c, c.u_max, true));
        }
        self.stored_cutoffs(model, method, species)
            .map(|(lo, hi)| (lo, hi, false))
    }

    /// The calibration entry the cutoffs of [`UqModel::stored_cluster_cutoffs`] (with a cluster)
    /// or [`UqModel::stored_cutoffs`] (without) come from: for a cluster, its own entry if
    /// stored, else the species-level one.
    pub fn stored_calibration(
        &self,
        model: &Model,
        method: Method,
        species: usize,
        cluster: Option<usize>,
    ) -> Option<&crate::stats::cutoff::Calibration> {
        cluster
            .and_then(|k| self.stored_entry(model, method, species, Some(k)))
            .or_else(|| self.stored_entry(model, method, species, None))
    }

    fn stored_entry(
        &self,
        model: &Model,
        method: Method,
        species: usize,
        cluster: Option<usize>,
    ) -> Option<&crate::stats::cutoff::Calibration> {
        let name = model.species.get(species)?;
        self.calibration
            .iter()
            .find(|c| c.method == method.name() && &c.species == name && c.cluster == cluster)
    }

    /// Per-atom uncertainty of `method` for every atom of every structure (`[structure][atom]`).
    pub fn per_atom(
        &self,
        model: &Model,
        data: &[Structure],
        method: Method,
    ) -> Result<Vec<Vec<f64>>, UqError> {
        if !self.methods().contains(&method) {
            return Err(missing(method));
        }
        if method == Method::Ensemble {
            return self.per_atom_ensemble(model, data);
        }
        if let (Method::Contact, Some(c)) = (method, &self.contact) {
            return c.per_atom(model, data);
        }
        Ok(self
            .per_atom_rows(model, data, method, false)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// `gamma_local` of every atom of every structure and the cluster that graded it
    /// (`[structure][atom]` both), as the MD step computes them (one batch per species).
    pub fn gamma_local_per_atom(
        &self,
        model: &Model,
        data: &[Structure],
    ) -> Result<ValuesAndClusters, UqError> {
        if self.local.is_none() {
            return Err(missing(Method::GammaLocal));
        }
        Ok(self
            .per_atom_rows(model, data, Method::GammaLocal, true)?
            .into_iter()
            .unzip())
    }

    /// Values of a method graded from basis vectors, per structure and atom, with the
    /// `gamma_local` cluster of every atom if `clusters` (else empty).
    fn per_atom_rows(
        &self,
        model: &Model,
        data: &[Structure],
        method: Method,
        clusters: bool,
    ) -> Result<Vec<AtomValues>, UqError> {
        let ns = model.nspecies();
        data.par_iter()
            .map_init(
                || Workspace::new(model),
                |ws, s| -> Result<AtomValues, UqError> {
                    let envs = Environments::new(model, s)?;
                    let mut rows: Vec<Vec<f64>> = vec![vec![]; ns];
                    let mut atoms: Vec<Vec<usize>> = vec![vec![]; ns];
                    for i in 0..envs.len() {
                        let e = envs.get(i);
                        let start = rows[e.si].len();
                        rows[e.si].resize(start + model.nfuncs(e.si), 0.0);
                        model.atom_descriptor(ws, e.si, e.rij, e.sj, &mut rows[e.si][start..]);
                        atoms[e.si].push(i);
                    }
                    let mut out = vec![0.0; s.len()];
                    let mut cl = if clusters { vec![0; s.len()] } else { vec![] };
                    let mut scratch = UqScratch::new(model, self);
                    for z in 0..ns {
                        if atoms[z].is_empty() {
                            continue;
                        }
                        let mut vals = vec![0.0; atoms[z].len()];
                        self.evaluate_rows(method, z, &rows[z], &mut vals, &mut scratch)?;
                        for (&i, v) in atoms[z].iter().zip(vals) {
                            out[i] = v;
                        }
                        if clusters {
                            for (&i, &c) in atoms[z].iter().zip(scratch.gamma_local_clusters()) {
                                cl[i] = c;
                            }
                        }
                    }
                    Ok((out, cl))
                },
            )
            .collect()
    }

    /// Ensemble uncertainty of every atom (needs member forces, not only basis vectors).
    fn per_atom_ensemble(
        &self,
        model: &Model,
        data: &[Structure],
    ) -> Result<Vec<Vec<f64>>, UqError> {
        let ens = self
            .ensemble
            .as_ref()
            .ok_or_else(|| missing(Method::Ensemble))?;
        data.par_iter()
            .map_init(
                || Workspace::new(model),
                |ws, s| ens.sigma_structure(model, s, ws).map_err(UqError::from),
            )
            .collect()
    }
}

/// Basis vectors of many atoms of one species, row-major, with their provenance.
#[derive(Clone, Debug, Default)]
pub struct SpeciesRows {
    /// Row length (number of basis functions of the species).
    pub m: usize,
    /// `n × m` values, row-major.
    pub rows: Vec<f64>,
    /// Index of the structure each row came from (in the slice given to [`descriptor_table`]).
    pub structure: Vec<u32>,
    /// Index of the atom within its structure.
    pub atom: Vec<u32>,
}

impl SpeciesRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.structure.len()
    }
    /// True if there are no rows.
    pub fn is_empty(&self) -> bool {
        self.structure.is_empty()
    }
    /// Row `k`.
    pub fn row(&self, k: usize) -> &[f64] {
        &self.rows[k * self.m..(k + 1) * self.m]
    }
}

/// Basis vectors of all atoms of a data set, grouped by species (index = model species id).
#[derive(Clone, Debug, Default)]
pub struct DescriptorTable {
    pub per_species: Vec<SpeciesRows>,
}

/// Compute the basis vector of every atom of `data`, in parallel over structures.
pub fn descriptor_table(model: &Model, data: &[Structure]) -> Result<DescriptorTable, ModelError> {
    let ns = model.nspecies();
    let parts: Vec<Vec<SpeciesRows>> = data
        .par_iter()
        .enumerate()
        .map_init(
            || Workspace::new(model),
            |ws, (k, s)| -> Result<Vec<SpeciesRows>, ModelError> {
                let envs = Environments::new(model, s)?;
                let mut out: Vec<SpeciesRows> = (0..ns)
                    .map(|z| SpeciesRows {
                        m: model.nfuncs(z),
                        ..Default::default()
                    })
                    .collect();
                for i in 0..envs.len() {
                    let e = envs.get(i);
                    let o = &mut out[e.si];
                    let start = o.rows.len();
                    o.rows.resize(start + o.m, 0.0);
                    model.atom_descriptor(ws, e.si, e.rij, e.sj, &mut o.rows[start..]);
                    o.structure.push(k as u32);
                    o.atom.push(i as u32);
                }
                Ok(out)
            },
        )
        .collect::<Result<_, _>>()?;
    let mut table = DescriptorTable {
        per_species: (0..ns)
            .map(|z| SpeciesRows {
                m: model.nfuncs(z),
                ..Default::default()
            })
            .collect(),
    };
    for part in parts {
        for (z, p) in part.into_iter().enumerate() {
            let t = &mut table.per_species[z];
            t.rows.extend(p.rows);
            t.structure.extend(p.structure);
            t.atom.extend(p.atom);
        }
    }
    Ok(table)
}

/// Magnitude of the force error `|F_pred - F_ref|` (eV/Å) of every atom of every structure
/// (empty for structures without reference forces).
pub fn force_errors(model: &Model, data: &[Structure]) -> Result<Vec<Vec<f64>>, ModelError> {
    data.par_iter()
        .map_init(
            || Workspace::new(model),
            |ws, s| -> Result<Vec<f64>, ModelError> {
                let Some(fr) = &s.forces else {
                    return Ok(vec![]);
                };
                let p = model.predict(s, ws)?;
                Ok(p.forces
                    .iter()
                    .zip(fr)
                    .map(|(a, b)| {
                        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2))
                            .sqrt()
                    })
                    .collect())
            },
        )
        .collect()
}

impl UqModel {
    /// The clustered-local-D-optimality cluster of every atom (index into the species' clusters:
    /// the nearest k-means centroid, or the `config_type` cluster with the smallest grade).
    pub fn clusters_per_atom(
        &self,
        model: &Model,
        data: &[Structure],
    ) -> Result<Vec<Vec<usize>>, UqError> {
        let local = self
            .local
            .as_ref()
            .ok_or_else(|| missing(Method::GammaLocal))?;
        data.par_iter()
            .map_init(
                || {
                    (
                        Workspace::new(model),
                        activeset::GammaScratch::for_model(model),
                    )
                },
                |(ws, scratch), s| -> Result<Vec<usize>, UqError> {
                    let envs = Environments::new(model, s)?;
                    let mut b = Vec::new();
                    let mut out = Vec::with_capacity(envs.len());
                    for i in 0..envs.len() {
                        let e = envs.get(i);
                        b.clear();
                        b.resize(model.nfuncs(e.si), 0.0);
                        model.atom_descriptor(ws, e.si, e.rij, e.sj, &mut b);
                        out.push(local.gamma_local(e.si, &b, scratch).1);
                    }
                    Ok(out)
                },
            )
            .collect()
    }
}

/// Force errors and uncertainties of the atoms of each (species, cluster) (`[species][cluster]`,
/// `nclusters[s]` clusters for species `s`), for per-cluster calibration; `clusters` holds the
/// cluster of every atom (`[structure][atom]`, as [`UqModel::gamma_local_per_atom`] gives it);
/// structures without reference forces are skipped. A cluster index out of range is an error
/// naming the atom.
pub fn pairs_by_species_cluster(
    model: &Model,
    data: &[Structure],
    errors: &[Vec<f64>],
    u: &[Vec<f64>],
    clusters: &[Vec<u32>],
    nclusters: &[usize],
) -> Result<ClusterPairs, UqError> {
    let mut out: ClusterPairs = nclusters
        .iter()
        .map(|&n| vec![(Vec::new(), Vec::new()); n])
        .collect();
    for (k, s) in data.iter().enumerate() {
        if errors[k].is_empty() {
            continue;
        }
        for (i, sym) in s.symbols.iter().enumerate() {
            if let Some(sp) = model.species_index(sym) {
                let c = clusters[k][i] as usize;
                let Some(group) = out.get_mut(sp).and_then(|g| g.get_mut(c)) else {
                    return Err(UqError::Data(format!(
                        "structure {k}, atom {i} ({sym}): cluster {c} out of range"
                    )));
                };
                group.0.push(errors[k][i]);
                group.1.push(u[k][i]);
            }
        }
    }
    Ok(out)
}

/// Force errors and uncertainties of the atoms of each species (index = model species), for
/// calibration; structures without reference forces are skipped.
pub fn pairs_by_species(
    model: &Model,
    data: &[Structure],
    errors: &[Vec<f64>],
    u: &[Vec<f64>],
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut out = vec![(Vec::new(), Vec::new()); model.nspecies()];
    for (k, s) in data.iter().enumerate() {
        if errors[k].is_empty() {
            continue;
        }
        for (i, sym) in s.symbols.iter().enumerate() {
            if let Some(sp) = model.species_index(sym) {
                out[sp].0.push(errors[k][i]);
                out[sp].1.push(u[k][i]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An atom without a neighbour inside the cutoff (here one far from a periodic frame's
    /// atoms, in a non-periodic copy of it) gets 0 from every method: its model force is 0 by
    /// symmetry. The latent distance and the GP gave it their value for an empty environment
    /// (far from every training environment), so a watch on them flagged and halted on
    /// evaporated atoms. The other atoms keep their values.
    #[test]
    fn an_atom_without_neighbours_has_zero_uncertainty_from_every_method() {
        let cfg = UqConfig {
            clusters: Some(Partition::KMeans(2)),
            ..UqConfig::everything()
        };
        let (pot, valid) = crate::testing::teacher_potential(14, 410, 10, &cfg);
        let mut s0 = valid[0].clone();
        s0.pbc = [false; 3];
        let mut s = s0.clone();
        let far = [1e3, 1e3, 1e3];
        s.positions.push(far);
        s.symbols.push(s.symbols[0].clone());
        s.forces = None;
        s.energy = None;
        let before: Vec<Vec<f64>> = Method::ALL
            .iter()
            .map(|&m| {
                pot.uq
                    .per_atom(&pot.model, std::slice::from_ref(&s0), m)
                    .unwrap()
                    .remove(0)
            })
            .collect();
        for (k, &m) in Method::ALL.iter().enumerate() {
            let v = pot
                .uq
                .per_atom(&pot.model, std::slice::from_ref(&s), m)
                .unwrap();
            let v = &v[0];
            assert_eq!(v[v.len() - 1], 0.0, "{m:?}: lone atom");
            assert!(
                v[..v.len() - 1].iter().any(|&x| x > 0.0),
                "{m:?}: others all 0"
            );
            if !matches!(m, Method::Ensemble | Method::Contact) {
                assert_eq!(&v[..v.len() - 1], &before[k][..], "{m:?}: others changed");
            }
        }
        // Rows of the evaluation itself: only the all-zero row is set to 0.
        let m = pot.model.nfuncs(0);
        let mut rows = vec![0.0; 2 * m];
        rows[..m].fill(0.1);
        for method in [Method::Distance, Method::Gp] {
            let mut out = vec![f64::NAN; 2];
            let mut sc = UqScratch::new(&pot.model, &pot.uq);
            pot.uq
                .evaluate_rows(method, 0, &rows, &mut out, &mut sc)
                .unwrap();
            assert!(out[0] > 0.0 && out[1] == 0.0, "{method:?}: {out:?}");
        }
    }

    /// A stored halting rule this build cannot apply (an unknown rule or method, a `juror` rule
    /// without its juror) is refused at load naming a newer writer, not applied as something
    /// else.
    #[test]
    fn a_halting_rule_this_build_does_not_know_is_refused() {
        let rule = |rule: &str, juror: Option<&str>, jury: &[&str]| crate::stats::upper::HaltRule {
            rule: rule.into(),
            jury: jury.iter().map(|s| s.to_string()).collect(),
            frames: 10,
            unstable: 2,
            frame_caught: 1,
            frame_false: 0,
            vote_caught: 2,
            vote_false: 0,
            e_max: 1.0,
            juror: juror.map(str::to_string),
            juror_caught: 2,
            juror_false: 0,
        };
        let jury = ["gamma", "distance"];
        for ok in [
            rule("frame", None, &jury),
            rule("vote", None, &jury),
            rule("juror", Some("contact"), &jury),
        ] {
            assert_eq!(check_halt_rule(&ok), Ok(()));
        }
        for bad in [
            rule("juror", None, &jury),
            rule("juror", Some("oracle"), &jury),
            rule("majority", None, &jury),
            rule("vote", None, &["gamma", "tea_leaves"]),
        ] {
            let e = check_halt_rule(&bad).unwrap_err();
            assert!(e.contains("newer aceuq") && e.contains("halt rule"), "{e}");
        }
    }
}
