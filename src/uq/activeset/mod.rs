//! Active sets for the extrapolation grade: global D-optimality (`gamma`, Podryabinkin & Shapeev) and
//! clustered local D-optimality (`gamma_local`, docs/clustered.md), plus candidate selection for
//! labelling.
//!
//! - [`GlobalActiveSets`]: per species, the MaxVol active set of all training rows: its `m × m`
//!   rows (kept so that candidates can be stacked with them), the inverse `A^{-1}`, and which
//!   training atoms were chosen. `gamma_i = max_j |(B_i A^{-1})_j|`.
//! - [`ClusteredActiveSets`]: per species, the atoms are split by neighbourhood chemistry
//!   (multi-species models), then partitioned (k-means on standardized rows, or `config_type`
//!   labels; clusters under `min_cluster_atoms` merged into the nearest centroid); one active set
//!   per (species, cluster), of any rank (a cluster spanning fewer dimensions is graded in its
//!   own row space, see `species.rs`). Query: nearest centroid of the atom's chemistry for
//!   k-means, minimum gamma over the clusters for label partitions.
//! - [`select`]: MaxVol over (current active set ∪ candidate rows); the candidate structures that
//!   own the most selected rows are the ones to label.
//!
//! Builders read rows from a [`RowSource`], pass after pass, so data far larger than memory can
//! be used (only `batch + m` rows per species and cluster are held; see
//! [`maxvol::StreamingMaxVol`](super::maxvol::StreamingMaxVol)). [`TableSource`] wraps a
//! [`DescriptorTable`] in memory and [`StructureSource`] computes descriptors chunk by chunk
//! from structures.
//!
//! Files: this one holds the build [`Settings`], the row sources, the build record
//! [`BuildInfo`] and the pass driver shared by all builders; `species.rs` one active set
//! ([`SpeciesActiveSet`], [`Projection`]); `global.rs` the global sets; `clustered.rs` the
//! clustered sets and their builder; `partition.rs` the standardization and cluster merging of
//! that builder; `rowspace.rs` the row space (Gram matrix, rank) of each cluster;
//! `select.rs` candidate selection.

use super::maxvol::{MaxVolError, Options, PassStats, RowId, StreamingMaxVol};
use super::{DescriptorTable, UqError};
use crate::model::Model;
use crate::structure::Structure;
use serde::{Deserialize, Serialize};

mod clustered;
mod global;
mod partition;
mod rowspace;
mod select;
mod species;

pub use clustered::{ClusteredActiveSets, FuncLayout, SpeciesClusters};
pub use global::{GlobalActiveSets, build_any_rank};
pub use select::{Chosen, SelectionReport, select};
pub use species::{GammaScratch, ProjScratch, Projection, SpeciesActiveSet};

/// Settings of the active-set builders (`[uq.activeset]` of the fit configuration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// MaxVol tolerance: rows with gamma above it enter the active set (> 1).
    pub tol: f64,
    /// Maximum row swaps per MaxVol run.
    pub max_iters: usize,
    /// Candidate rows per MaxVol batch, per species and cluster (memory: about
    /// `2 × (batch + m) × m × 8` bytes each).
    pub batch: usize,
    /// Maximum passes over the data; a pass that changes nothing certifies the result.
    pub max_passes: usize,
    /// Rows with gamma above this (against the set current at the time, <= tol) enter a MaxVol
    /// batch. Below `tol` so that rows just inside the boundary, which swaps elsewhere can push
    /// out, are reconsidered in the same pass: on liquid Li (12,500 rows, m = 274) 0.7 needs 3–7
    /// passes for batches of 500–5000 rows, 1.01 more than 12.
    pub candidate_gamma: f64,
    /// Relative LU pivot below which the data count as rank-deficient.
    pub rank_tol: f64,
    /// A full-rank set whose condition number (column-scaled, 1-norm) exceeds this keeps too
    /// few significant digits in its grades (1e12: fewer than four) and is graded in its row
    /// space instead, as a rank-deficient one is.
    pub max_condition: f64,
    /// Clusters with fewer atoms than this are merged into the nearest cluster: too few to
    /// mean anything. Any larger cluster keeps its own active set, of whatever rank its rows
    /// have (see `species.rs`).
    pub min_cluster_atoms: usize,
    /// Removed (clusters smaller than the basis are no longer merged); a clear error if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_cluster_factor: Option<f64>,
    /// The space in which k-means compares environments (see [`ClusterFeatures`]).
    pub cluster_features: ClusterFeatures,
    /// Maximum k-means (Lloyd) iterations.
    pub kmeans_iters: usize,
    /// At most this many rows per species (a uniform random sample) are used to fit k-means.
    pub kmeans_sample: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tol: 1.01,
            max_iters: 300,
            batch: 20_000,
            max_passes: 10,
            candidate_gamma: 0.7,
            rank_tol: 1e-10,
            max_condition: 1e12,
            min_cluster_atoms: 30,
            min_cluster_factor: None,
            cluster_features: ClusterFeatures::default(),
            kmeans_iters: 100,
            kmeans_sample: 20_000,
        }
    }
}

/// The space in which the clustered builder's k-means compares environments. Whatever the
/// choice, a multi-species model first splits every species' atoms by neighbourhood chemistry
/// (which species occur among the neighbours), so a pure-element neighbourhood and a mixed
/// one never share a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterFeatures {
    /// Every descriptor column standardized (zero mean, unit variance).
    #[default]
    Standardized,
    /// Standardized, then each body order's block scaled to the same total variance (so the
    /// many high-order functions do not outvote the few two-body ones, or the reverse).
    BodyOrder,
    /// Standardized, then the leading principal components (95% of the variance, at most 20)
    /// whitened to unit variance (Mahalanobis distance in the leading subspace).
    Whitened,
}

impl ClusterFeatures {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            ClusterFeatures::Standardized => "standardized",
            ClusterFeatures::BodyOrder => "body_order",
            ClusterFeatures::Whitened => "whitened",
        }
    }
}

impl Settings {
    /// An error unless species `name` has enough atoms (`n`) for any active set: at least
    /// `min_cluster_atoms`. Fewer atoms than basis functions is fine (the set lives in the space
    /// the atoms span).
    pub(super) fn enough_atoms(&self, name: &str, n: usize) -> Result<(), UqError> {
        if n >= self.min_cluster_atoms {
            return Ok(());
        }
        Err(UqError::Data(format!(
            "species {name}: {n} atom{} in the data, too few for an active set (at least min_cluster_atoms = {} needed): add structures with this species, or lower min_cluster_atoms (`--min-cluster-atoms` of `aceuq activeset`, [uq.activeset] in a fit's --config)",
            if n == 1 { "" } else { "s" },
            self.min_cluster_atoms
        )))
    }

    /// MaxVol options from these settings.
    pub fn options(&self) -> Options {
        Options {
            tol: self.tol,
            max_iters: self.max_iters,
            rank_tol: self.rank_tol,
            candidate: self.candidate_gamma,
        }
    }

    /// Check the settings.
    pub fn validate(&self) -> Result<(), UqError> {
        self.options()
            .validate()
            .map_err(|e| UqError::Data(format!("[uq.activeset] {e}")))?;
        let bad = |what: &str| Err(UqError::Data(format!("[uq.activeset] {what}")));
        if self.batch == 0 {
            return bad("batch must be at least 1");
        }
        if self.max_condition.is_nan() || self.max_condition < 1.0 {
            return bad("max_condition must be at least 1 (1e12 is the usual value)");
        }
        if self.max_passes < 2 {
            return bad("max_passes must be at least 2 (one to build, one to verify)");
        }
        if self.min_cluster_factor.is_some() {
            return bad(
                "min_cluster_factor is no longer used: a cluster smaller than the basis now keeps its own active set in its own row space; use min_cluster_atoms (default 30) to merge clusters too small to mean anything",
            );
        }
        if self.min_cluster_atoms == 0 {
            return bad("min_cluster_atoms must be at least 1 (30 is the usual value)");
        }
        if self.kmeans_iters == 0 || self.kmeans_sample == 0 {
            return bad("kmeans_iters and kmeans_sample must be at least 1");
        }
        Ok(())
    }
}

fn uq_err(e: MaxVolError) -> UqError {
    match e {
        MaxVolError::Singular { .. } => UqError::Numerical(e.to_string()),
        _ => UqError::Data(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Row sources
// ---------------------------------------------------------------------------------------------

/// One chunk of rows streamed by a [`RowSource`].
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    /// Descriptor rows of the chunk's structures; `structure` indices are local to the chunk.
    pub table: &'a DescriptorTable,
    /// Global index of the chunk's first structure (local structure `k` is `first + k`).
    pub first: u32,
    /// `config_type` of each structure of the chunk (local index; may be shorter when labels
    /// are not needed, missing entries count as no label).
    pub labels: &'a [Option<String>],
}

impl Chunk<'_> {
    fn label(&self, local: u32) -> Option<&str> {
        self.labels.get(local as usize).and_then(|l| l.as_deref())
    }
}

/// Something that can stream descriptor rows, possibly several times.
pub trait RowSource {
    /// Call `sink` once per chunk, in order. Every pass must produce the same rows in the same
    /// order and chunks (the builders make several passes).
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError>;

    /// Total number of rows (all species), if known, for progress bars.
    fn rows_hint(&self) -> Option<u64> {
        None
    }
}

/// A [`DescriptorTable`] in memory as a [`RowSource`] (one chunk).
pub struct TableSource<'a> {
    pub table: &'a DescriptorTable,
    /// `config_type` per structure of the table (only needed for label partitions).
    pub labels: &'a [Option<String>],
}

impl RowSource for TableSource<'_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        sink(Chunk {
            table: self.table,
            first: 0,
            labels: self.labels,
        })
    }
    fn rows_hint(&self) -> Option<u64> {
        Some(self.table.per_species.iter().map(|s| s.len() as u64).sum())
    }
}

/// Structures in memory whose descriptors are computed `chunk` structures at a time (memory
/// bounded by one chunk of descriptors).
pub struct StructureSource<'a> {
    pub model: &'a Model,
    pub data: &'a [Structure],
    /// Structures per chunk.
    pub chunk: usize,
}

impl RowSource for StructureSource<'_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        let chunk = self.chunk.max(1);
        for (k, part) in self.data.chunks(chunk).enumerate() {
            let table = super::descriptor_table(self.model, part)?;
            let labels = structure_labels(part);
            sink(Chunk {
                table: &table,
                first: (k * chunk) as u32,
                labels: &labels,
            })?;
        }
        Ok(())
    }
    fn rows_hint(&self) -> Option<u64> {
        Some(self.data.iter().map(|s| s.len() as u64).sum())
    }
}

/// The `config_type` of each structure.
/// Whether `n` atoms of species `sp` support `k` k-means clusters of at least `min` atoms
/// each; the message (starting "clusters K:") names the largest K that works, or says that no
/// K does.
pub fn check_cluster_count(k: usize, min: usize, n: usize, sp: &str) -> Result<(), String> {
    let need = k.saturating_mul(min);
    if n >= need {
        return Ok(());
    }
    let advice = if n >= min {
        format!("use K <= {}", n / min.max(1))
    } else {
        "too few for even one cluster: give more training atoms of it".to_string()
    };
    Err(format!(
        "clusters {k}: K = {k} k-means clusters need at least K × min_cluster_atoms = {k} × \
         {min} = {need} atoms of species {sp}, but the data have {n}: {advice} (or lower \
         min_cluster_atoms: `--min-cluster-atoms` of `aceuq activeset`, [uq.activeset] in a \
         fit's --config)"
    ))
}

pub fn structure_labels(data: &[Structure]) -> Vec<Option<String>> {
    data.iter().map(|s| s.config_type.clone()).collect()
}

/// How an active-set collection was built (stored as `[uq.gamma]` / `[uq.gamma_local]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildInfo {
    /// MaxVol tolerance used.
    pub tol: f64,
    /// Species names, in model order.
    pub species: Vec<String>,
    /// Atoms of each species in the build data.
    pub atoms: Vec<usize>,
    /// Passes over the data.
    pub passes: usize,
    /// Whether a final pass certified gamma <= tol for every build row (per species).
    pub verified: Vec<bool>,
    /// Files of the build data (as given), if known.
    pub data: Vec<String>,
    /// Messages of the build (merged clusters, conditioning, unverified sets).
    pub notes: Vec<String>,
}

/// Label used for structures without a `config_type`.
pub const NO_LABEL: &str = "(none)";

// ---------------------------------------------------------------------------------------------
// The pass driver shared by all builders
// ---------------------------------------------------------------------------------------------

struct Group {
    species: usize,
    mv: StreamingMaxVol,
    verified: bool,
    last: PassStats,
    /// Rows are projected onto this row space before MaxVol (rank-deficient clusters).
    proj: Option<Projection>,
}

/// Assigns a row to a group (index into the group list).
trait Route {
    /// `None` if the row cannot be placed (a label never seen in the statistics pass).
    fn route(&self, s: usize, row: &[f64], label: Option<&str>, z: &mut [f64]) -> Option<usize>;
    /// True if every row of species `s` goes to group `s` (lets the driver skip copying).
    fn identity(&self) -> bool {
        false
    }
}

struct ByStructure;
impl Route for ByStructure {
    fn route(&self, s: usize, _: &[f64], _: Option<&str>, _: &mut [f64]) -> Option<usize> {
        Some(s)
    }
    fn identity(&self) -> bool {
        true
    }
}

/// Every row of species `s` to group `s`, through the per-row path (which projects rows for
/// groups that have a projection).
struct BySpecies;
impl Route for BySpecies {
    fn route(&self, s: usize, _: &[f64], _: Option<&str>, _: &mut [f64]) -> Option<usize> {
        Some(s)
    }
}

/// Why a sequence of passes failed.
enum PassError {
    Uq(UqError),
    /// Groups (by index) whose rows admit no active set.
    Groups(Vec<(usize, MaxVolError)>),
}

impl From<UqError> for PassError {
    fn from(e: UqError) -> Self {
        PassError::Uq(e)
    }
}

impl PassError {
    /// One error listing every failure, the most basic (too few atoms) first.
    fn into_uq(self) -> UqError {
        let mut errors = match self {
            PassError::Uq(e) => return e,
            PassError::Groups(v) => v.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        };
        errors.sort_by_key(|e| match e {
            MaxVolError::TooFewRows { .. } => 0,
            MaxVolError::ZeroColumn { .. } => 1,
            MaxVolError::RankDeficient { .. } => 2,
            _ => 3,
        });
        let first = errors.remove(0);
        if errors.is_empty() {
            return uq_err(first);
        }
        let rest: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let msg = format!("{first}; also: {}", rest.join("; "));
        match first {
            MaxVolError::Singular { .. } => UqError::Numerical(msg),
            _ => UqError::Data(msg),
        }
    }
}

/// Run passes until every group is verified or `max_passes`; returns the number of passes.
fn run_passes(
    groups: &mut [Group],
    source: &mut dyn RowSource,
    route: &dyn Route,
    settings: &Settings,
    progress: bool,
    notes: &mut Vec<String>,
    names: &dyn Fn(usize) -> String,
) -> Result<usize, PassError> {
    let maxm = groups
        .iter()
        .map(|g| g.proj.as_ref().map_or(g.mv.m(), |p| p.m))
        .max()
        .unwrap_or(0);
    let (mut xa, mut y) = (vec![0.0; maxm], vec![0.0; maxm]);
    let mut passes = 0;
    while passes < settings.max_passes && groups.iter().any(|g| !g.verified) {
        passes += 1;
        for g in groups.iter_mut().filter(|g| !g.verified) {
            g.mv.begin_pass();
        }
        // Asked every pass: a streaming source may only know its size after the first.
        let pb = crate::progress::Bar::atoms(source.rows_hint(), progress);
        pb.set_message(format!("active sets, pass {passes}"));
        let mut bufs: Vec<(Vec<f64>, Vec<RowId>)> = vec![(vec![], vec![]); groups.len()];
        let mut z = vec![0.0; 2 * maxm];
        source.pass(&mut |chunk: Chunk<'_>| {
            for (s, sr) in chunk.table.per_species.iter().enumerate() {
                if sr.is_empty() {
                    continue;
                }
                let m = sr.m;
                let ids = sr.structure.iter().zip(&sr.atom).map(|(&k, &a)| RowId {
                    structure: chunk.first + k,
                    atom: a,
                });
                if route.identity() {
                    let g = &mut groups[s];
                    if !g.verified {
                        let ids: Vec<RowId> = ids.collect();
                        g.mv.push(&sr.rows, &ids).map_err(uq_err)?;
                    }
                } else {
                    for (r, id) in ids.enumerate() {
                        let row = sr.row(r);
                        let label = chunk.label(sr.structure[r]);
                        let gi = route.route(s, row, label, &mut z).ok_or_else(|| {
                            UqError::Data(format!(
                                "config_type '{}' of structure {} was not in the first pass over the data (the data changed between passes?)",
                                label.unwrap_or(NO_LABEL),
                                chunk.first + sr.structure[r]
                            ))
                        })?;
                        if !groups[gi].verified {
                            match &groups[gi].proj {
                                None => bufs[gi].0.extend_from_slice(row),
                                Some(p) => {
                                    let at = bufs[gi].0.len();
                                    bufs[gi].0.resize(at + p.rank, 0.0);
                                    p.project(row, &mut bufs[gi].0[at..], &mut xa, &mut y);
                                }
                            }
                            bufs[gi].1.push(id);
                        }
                    }
                    for (gi, (rows, ids)) in bufs.iter_mut().enumerate() {
                        if !ids.is_empty() {
                            debug_assert_eq!(
                                groups[gi].proj.as_ref().map_or(groups[gi].mv.m(), |p| p.m),
                                m
                            );
                            groups[gi].mv.push(rows, ids).map_err(uq_err)?;
                            rows.clear();
                            ids.clear();
                        }
                    }
                }
                pb.inc(sr.len() as u64);
            }
            Ok(())
        })?;
        pb.finish_and_clear();
        // Collect every group's failure so that all problems are reported (or, for clusters,
        // repaired) at once.
        let mut errors = vec![];
        for (k, g) in groups.iter_mut().enumerate().filter(|(_, g)| !g.verified) {
            match g.mv.end_pass() {
                Ok(st) => {
                    g.verified = st.verified;
                    g.last = st;
                }
                Err(e) => errors.push((k, e)),
            }
        }
        if !errors.is_empty() {
            return Err(PassError::Groups(errors));
        }
    }
    for (k, g) in groups.iter().enumerate() {
        if !g.verified {
            notes.push(format!(
                "{}: not certified after {passes} passes (the last pass still made {} swaps{}): the set is close to, but not certainly, a local volume maximum; raise max_passes (`--max-passes` of `aceuq activeset`; max_passes or max_iters in [uq.activeset] of a fit's --config)",
                names(k),
                g.last.swaps,
                if g.last.hit_max_iters {
                    ", hitting max_iters"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(passes)
}

fn condition_notes(sets: &[(String, &SpeciesActiveSet)], notes: &mut Vec<String>) {
    for (name, s) in sets {
        if s.cond.is_nan() || s.cond > 1e10 {
            notes.push(format!(
                "{name}: the active-set matrix is nearly singular (condition number {:.1e} after column scaling); gamma keeps only about {:.0} significant digits: more varied data or a smaller basis would help",
                s.cond,
                (16.0 - s.cond.log10()).max(0.0)
            ));
        }
    }
}

#[cfg(test)]
mod tests;
