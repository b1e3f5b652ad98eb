//! Active sets for the extrapolation grade: global D-optimality (`gamma`, METHODS.md §2) and
//! clustered local D-optimality (`gamma_local`, METHODS.md §3), plus candidate selection for
//! labelling.
//!
//! - [`GlobalActiveSets`]: per species, the MaxVol active set of all training rows: its `m × m`
//!   rows (kept so that candidates can be stacked with them), the inverse `A^{-1}`, and which
//!   training atoms were chosen. `gamma_i = max_j |(B_i A^{-1})_j|`.
//! - [`ClusteredActiveSets`]: per species, the rows are standardized and partitioned (k-means or
//!   `config_type` labels; small clusters merged into the nearest centroid); one active set per
//!   (species, cluster). Query: nearest centroid for k-means, minimum gamma over the clusters for
//!   label partitions.
//! - [`select`]: MaxVol over (current active set ∪ candidate rows); the candidate structures that
//!   own the most selected rows are the ones to label.
//!
//! Builders read rows from a [`RowSource`], pass after pass, so data far larger than memory can
//! be used (only `batch + m` rows per species and cluster are held; see
//! [`maxvol::StreamingMaxVol`]). [`TableSource`] wraps a [`DescriptorTable`] in memory and
//! [`StructureSource`] computes descriptors chunk by chunk from structures.

use super::maxvol::{self, MaxVolError, Options, PassStats, RowId, StreamingMaxVol};
use super::screen::{LazyScreen, ScreenScratch};
use super::{DescriptorTable, Partition, UqError};
use crate::io::container::{Array, Container, ContainerError};
use crate::model::Model;
use crate::structure::Structure;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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
    /// Clusters with fewer than `min_cluster_factor × m_s` atoms are merged into the nearest
    /// cluster (Shuang et al.: about 3).
    pub min_cluster_factor: f64,
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
            min_cluster_factor: 3.0,
            kmeans_iters: 100,
            kmeans_sample: 20_000,
        }
    }
}

impl Settings {
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
        if self.max_passes < 2 {
            return bad("max_passes must be at least 2 (one to build, one to verify)");
        }
        if !(self.min_cluster_factor.is_finite() && self.min_cluster_factor >= 1.0) {
            return bad("min_cluster_factor must be a number >= 1 (3 is the usual value)");
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
pub fn structure_labels(data: &[Structure]) -> Vec<Option<String>> {
    data.iter().map(|s| s.config_type.clone()).collect()
}

fn bar(len: Option<u64>, show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    match len {
        Some(n) => {
            let b = indicatif::ProgressBar::new(n);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>24} [{bar:40}] {pos}/{len} atoms, {elapsed} (eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        }
        None => {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {pos} atoms, {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One active set
// ---------------------------------------------------------------------------------------------

/// The active set of one species (or one species and cluster).
#[derive(Clone, Debug, PartialEq)]
pub struct SpeciesActiveSet {
    /// Row length `m_s`.
    pub m: usize,
    /// Row-major `m × m`: the descriptors `B` of the active atoms.
    pub rows: Vec<f64>,
    /// Row-major `m × m` inverse of `rows`.
    pub inverse: Vec<f64>,
    /// Which atom each active row came from (structure index in the build data, atom index).
    pub source: Vec<RowId>,
    /// 1-norm condition number of the column-scaled active-set matrix.
    pub cond: f64,
    /// Single-precision screen of the batched grades (derived from `rows` and `inverse`, built
    /// on first use: do not change them after grading).
    pub screen: LazyScreen,
}

impl SpeciesActiveSet {
    /// Grade of one descriptor `b` (length `m`); `acc` is scratch of length `m`.
    #[inline]
    pub fn gamma(&self, b: &[f64], acc: &mut [f64]) -> f64 {
        maxvol::gamma(&self.inverse, self.m, b, &mut acc[..self.m])
    }

    /// Grades of many rows (row-major), through the single-precision screen (the same values
    /// as [`SpeciesActiveSet::gamma`] up to rounding, at about half the cost of an f64 GEMM).
    pub fn gamma_batch(&self, rows: &[f64], out: &mut [f64], scratch: &mut GammaScratch) {
        self.screen.get(&self.rows, &self.inverse, self.m).grades(
            rows,
            None,
            out,
            &mut scratch.screen,
        )
    }

    /// Grades of the rows `sel` of `rows` (row-major) into `out` (one per selected row).
    pub fn gamma_selected(
        &self,
        rows: &[f64],
        sel: &[usize],
        out: &mut [f64],
        scratch: &mut ScreenScratch,
    ) {
        self.screen
            .get(&self.rows, &self.inverse, self.m)
            .grades(rows, Some(sel), out, scratch)
    }

    fn from_rows(a: maxvol::ActiveRows) -> Self {
        SpeciesActiveSet {
            m: a.m,
            rows: a.rows,
            inverse: a.inverse,
            source: a.ids,
            cond: a.cond,
            screen: LazyScreen::default(),
        }
    }

    fn save(&self, c: &mut Container, prefix: &str) {
        let m = self.m;
        c.put(
            &format!("{prefix}.rows"),
            vec![m, m],
            Array::F64(self.rows.clone()),
        );
        c.put(
            &format!("{prefix}.inverse"),
            vec![m, m],
            Array::F64(self.inverse.clone()),
        );
        c.put(
            &format!("{prefix}.source"),
            vec![m, 2],
            Array::U32(
                self.source
                    .iter()
                    .flat_map(|r| [r.structure, r.atom])
                    .collect(),
            ),
        );
    }

    fn load(path: &Path, c: &Container, prefix: &str, m: usize) -> Result<Self, ContainerError> {
        let rn = format!("{prefix}.rows");
        let inn = format!("{prefix}.inverse");
        let sn = format!("{prefix}.source");
        let rows = c.f64(path, &rn, m * m)?;
        let inverse = c.f64(path, &inn, m * m)?;
        let src = c.u32_any(path, &sn)?;
        if src.len() != 2 * m {
            return Err(invalid(
                path,
                format!("array '{sn}' has {} numbers, expected {}", src.len(), 2 * m),
            ));
        }
        for (name, v) in [(&rn, &rows), (&inn, &inverse)] {
            if v.iter().any(|x| !x.is_finite()) {
                return Err(invalid(
                    path,
                    format!("array '{name}' has non-finite values (file corrupt or edited)"),
                ));
            }
        }
        // A cheap consistency probe (O(m^2)): rows · (inverse · x) must give back x.
        let x: Vec<f64> = (0..m).map(|j| 1.0 + (j % 7) as f64 / 7.0).collect();
        let y: Vec<f64> = (0..m)
            .map(|i| (0..m).map(|j| inverse[i * m + j] * x[j]).sum())
            .collect();
        let mut resid = 0.0f64;
        for i in 0..m {
            let z: f64 = (0..m).map(|j| rows[i * m + j] * y[j]).sum();
            resid = resid.max((z - x[i]).abs());
        }
        if resid.is_nan() || resid > 1e-4 {
            return Err(invalid(
                path,
                format!(
                    "array '{inn}' is not the inverse of '{rn}' (residual {resid:.1e}): the file was edited or corrupted; rebuild the active set with `aceuq activeset`"
                ),
            ));
        }
        let source = src
            .chunks_exact(2)
            .map(|p| RowId {
                structure: p[0],
                atom: p[1],
            })
            .collect();
        let cond = maxvol::condition(&rows, &inverse, m);
        Ok(SpeciesActiveSet {
            m,
            rows,
            inverse,
            source,
            cond,
            screen: LazyScreen::default(),
        })
    }
}

fn invalid(path: &Path, message: String) -> ContainerError {
    ContainerError::Invalid {
        path: path.display().to_string(),
        message,
    }
}

/// Caller-owned scratch for the per-atom grades (no allocation per call).
#[derive(Clone, Debug, Default)]
pub struct GammaScratch {
    acc: Vec<f64>,
    z: Vec<f64>,
    tmp: Vec<f64>,
    idx: Vec<usize>,
    screen: ScreenScratch,
}

impl GammaScratch {
    /// Scratch for rows of up to `m` numbers.
    pub fn new(m: usize) -> Self {
        GammaScratch {
            acc: vec![0.0; m],
            z: vec![0.0; m],
            tmp: vec![],
            idx: vec![],
            screen: ScreenScratch::default(),
        }
    }
    /// Scratch for every species of a model.
    pub fn for_model(model: &Model) -> Self {
        Self::new(
            (0..model.nspecies())
                .map(|s| model.nfuncs(s))
                .max()
                .unwrap_or(0),
        )
    }
    fn ensure(&mut self, m: usize) {
        if self.acc.len() < m {
            self.acc.resize(m, 0.0);
            self.z.resize(m, 0.0);
        }
    }
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

fn uq_meta(c: &mut Container) -> &mut toml::Table {
    let e = c
        .meta
        .entry("uq")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !e.is_table() {
        *e = toml::Value::Table(toml::Table::new());
    }
    e.as_table_mut().expect("just made a table")
}

fn read_meta<T: for<'de> Deserialize<'de>>(
    path: &Path,
    c: &Container,
    method: &str,
) -> Result<Option<T>, ContainerError> {
    let Some(v) = c.meta.get("uq").and_then(|u| u.get(method)) else {
        return Ok(None);
    };
    v.clone()
        .try_into()
        .map(Some)
        .map_err(|e: toml::de::Error| {
            invalid(path, format!("bad [uq.{method}] metadata: {}", e.message()))
        })
}

fn check_species(
    path: &Path,
    method: &str,
    info: &BuildInfo,
    model: &Model,
) -> Result<(), ContainerError> {
    if info.species != model.species {
        return Err(invalid(
            path,
            format!(
                "[uq.{method}] is for species [{}] but the model has [{}] (file edited?)",
                info.species.join(", "),
                model.species.join(", ")
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The pass driver shared by all builders
// ---------------------------------------------------------------------------------------------

struct Group {
    species: usize,
    mv: StreamingMaxVol,
    verified: bool,
    last: PassStats,
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
    let maxm = groups.iter().map(|g| g.mv.m()).max().unwrap_or(0);
    let mut passes = 0;
    while passes < settings.max_passes && groups.iter().any(|g| !g.verified) {
        passes += 1;
        for g in groups.iter_mut().filter(|g| !g.verified) {
            g.mv.begin_pass();
        }
        // Asked every pass: a streaming source may only know its size after the first.
        let pb = bar(source.rows_hint(), progress);
        pb.set_message(format!("active sets, pass {passes}"));
        let mut bufs: Vec<(Vec<f64>, Vec<RowId>)> = vec![(vec![], vec![]); groups.len()];
        let mut z = vec![0.0; maxm];
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
                            bufs[gi].0.extend_from_slice(row);
                            bufs[gi].1.push(id);
                        }
                    }
                    for (gi, (rows, ids)) in bufs.iter_mut().enumerate() {
                        if !ids.is_empty() {
                            debug_assert_eq!(groups[gi].mv.m(), m);
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
                "{}: not certified after {passes} passes (the last pass still made {} swaps{}): the set is close to, but not certainly, a local volume maximum; raise max_passes or max_iters",
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

// ---------------------------------------------------------------------------------------------
// Global active sets
// ---------------------------------------------------------------------------------------------

/// Per-species MaxVol active sets of the training data (the `gamma` estimator).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlobalActiveSets {
    /// One active set per species (model order).
    pub species: Vec<SpeciesActiveSet>,
    /// How it was built.
    pub info: BuildInfo,
}

const GLOBAL: &str = "gamma";
const LOCAL: &str = "gamma_local";

impl GlobalActiveSets {
    /// Build from a descriptor table in memory.
    pub fn build(
        model: &Model,
        table: &DescriptorTable,
        settings: &Settings,
        progress: bool,
    ) -> Result<Self, UqError> {
        let mut src = TableSource { table, labels: &[] };
        Self::build_from_source(model, &mut src, settings, progress)
    }

    /// Build from rows streamed by `source` (several passes).
    pub fn build_from_source(
        model: &Model,
        source: &mut dyn RowSource,
        settings: &Settings,
        progress: bool,
    ) -> Result<Self, UqError> {
        let ms: Vec<usize> = (0..model.nspecies()).map(|s| model.nfuncs(s)).collect();
        build_global(&model.species, &ms, source, settings, progress)
    }

    /// Grade of one atom of species `s` with descriptor `b`.
    #[inline]
    pub fn gamma(&self, s: usize, b: &[f64], scratch: &mut GammaScratch) -> f64 {
        scratch.ensure(b.len());
        self.species[s].gamma(b, &mut scratch.acc)
    }

    /// Grades of many atoms of species `s` (row-major rows), GEMM.
    pub fn gamma_batch(&self, s: usize, rows: &[f64], out: &mut [f64], scratch: &mut GammaScratch) {
        self.species[s].gamma_batch(rows, out, scratch)
    }

    /// Grades of every row of a descriptor table, per species.
    pub fn gamma_table(&self, table: &DescriptorTable) -> Vec<Vec<f64>> {
        table
            .per_species
            .iter()
            .enumerate()
            .map(|(s, sr)| {
                let mut out = vec![0.0; sr.len()];
                if !sr.is_empty() {
                    self.species[s].gamma_batch(&sr.rows, &mut out, &mut GammaScratch::default());
                }
                out
            })
            .collect()
    }

    /// Store into a model file container.
    pub fn save(&self, c: &mut Container) {
        for (s, set) in self.species.iter().enumerate() {
            set.save(c, &format!("uq.{GLOBAL}.{s}"));
        }
        let v = toml::Value::try_from(&self.info).expect("build info serializes");
        uq_meta(c).insert(GLOBAL.into(), v);
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let Some(info) = read_meta::<BuildInfo>(path, c, GLOBAL)? else {
            if c.arrays.keys().any(|k| k.starts_with("uq.gamma.")) {
                return Err(invalid(
                    path,
                    "arrays 'uq.gamma.*' are present but the [uq.gamma] metadata is missing (file edited?)".into(),
                ));
            }
            return Ok(None);
        };
        check_species(path, GLOBAL, &info, model)?;
        let species = (0..model.nspecies())
            .map(|s| SpeciesActiveSet::load(path, c, &format!("uq.{GLOBAL}.{s}"), model.nfuncs(s)))
            .collect::<Result<_, _>>()?;
        Ok(Some(GlobalActiveSets { species, info }))
    }
}

fn build_global(
    names: &[String],
    ms: &[usize],
    source: &mut dyn RowSource,
    settings: &Settings,
    progress: bool,
) -> Result<GlobalActiveSets, UqError> {
    settings.validate()?;
    let opts = settings.options();
    let mut groups = names
        .iter()
        .zip(ms)
        .enumerate()
        .map(|(s, (name, &m))| {
            Ok(Group {
                species: s,
                mv: StreamingMaxVol::new(m, settings.batch, opts, &format!("species {name}"))
                    .map_err(uq_err)?,
                verified: false,
                last: PassStats::default(),
            })
        })
        .collect::<Result<Vec<_>, UqError>>()?;
    let mut notes = vec![];
    let nm = |k: usize| format!("species {}", names[k]);
    let passes = run_passes(
        &mut groups,
        source,
        &ByStructure,
        settings,
        progress,
        &mut notes,
        &nm,
    )
    .map_err(PassError::into_uq)?;
    let atoms = groups.iter().map(|g| g.last.seen).collect();
    let verified = groups.iter().map(|g| g.verified).collect();
    let species: Vec<SpeciesActiveSet> = groups
        .into_iter()
        .map(|g| g.mv.into_active_rows().map(SpeciesActiveSet::from_rows))
        .collect::<Result<_, _>>()
        .map_err(uq_err)?;
    let named: Vec<(String, &SpeciesActiveSet)> = species
        .iter()
        .enumerate()
        .map(|(s, x)| (nm(s), x))
        .collect();
    condition_notes(&named, &mut notes);
    Ok(GlobalActiveSets {
        species,
        info: BuildInfo {
            tol: settings.tol,
            species: names.to_vec(),
            atoms,
            passes,
            verified,
            data: vec![],
            notes,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Clustered local active sets
// ---------------------------------------------------------------------------------------------

/// The partition and active sets of one species.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpeciesClusters {
    /// Per-column mean of the build rows (standardization).
    pub mean: Vec<f64>,
    /// Per-column standard deviation (1 where a column is constant).
    pub std: Vec<f64>,
    /// `1 / std`: the standardization multiplies by it (a division per column would cost as
    /// much as the rest of the cluster assignment).
    pub inv_std: Vec<f64>,
    /// Centroids in standardized space, row-major `k0 × m` (k-means centroids, or the mean of
    /// each label's rows).
    pub centroids: Vec<f64>,
    /// Final cluster of each centroid (small clusters are merged, so several centroids can
    /// share a cluster).
    pub centroid_cluster: Vec<u32>,
    /// Label of each centroid for `config_type` partitions (empty for k-means).
    pub labels: Vec<String>,
    /// Build atoms per final cluster.
    pub counts: Vec<usize>,
    /// One active set per final cluster.
    pub sets: Vec<SpeciesActiveSet>,
}

impl SpeciesClusters {
    fn m(&self) -> usize {
        self.mean.len()
    }

    fn k0(&self) -> usize {
        self.centroid_cluster.len()
    }

    /// Nearest centroid (standardized Euclidean) of descriptor `b`; `z` is scratch.
    #[inline(always)]
    fn nearest_centroid(&self, b: &[f64], z: &mut [f64]) -> usize {
        let m = self.m();
        let (b, z) = (&b[..m], &mut z[..m]);
        for j in 0..m {
            z[j] = (b[j] - self.mean[j]) * self.inv_std[j];
        }
        nearest(&self.centroids, m, z).0
    }

    /// The cluster of every row of `rows` (row-major, rows of `m`) into `cluster`: the same
    /// arithmetic as [`SpeciesClusters::nearest_centroid`], compiled for 256-bit vectors where
    /// the CPU has them (division and the distance sums vectorize; the results are bitwise the
    /// same, there being no fused operations).
    fn assign(&self, rows: &[f64], cluster: &mut [u32], z: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { self.assign_avx2(rows, cluster, z) };
                return;
            }
        }
        self.assign_impl(rows, cluster, z);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn assign_avx2(&self, rows: &[f64], cluster: &mut [u32], z: &mut [f64]) {
        self.assign_impl(rows, cluster, z);
    }

    #[inline(always)]
    fn assign_impl(&self, rows: &[f64], cluster: &mut [u32], z: &mut [f64]) {
        let m = self.m();
        for (r, c) in cluster.iter_mut().enumerate() {
            *c = self.centroid_cluster[self.nearest_centroid(&rows[r * m..(r + 1) * m], z)];
        }
    }
}

/// Index and squared distance of the row of `c` (row-major, rows of `m`) nearest to `z`; ties
/// to the lower index.
#[inline(always)]
fn nearest(c: &[f64], m: usize, z: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (k, ck) in c.chunks_exact(m).enumerate() {
        let d = super::optim::dist2(ck, z);
        if d < best.1 {
            best = (k, d);
        }
    }
    best
}

/// Clustered local D-optimality (the `gamma_local` estimator).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusteredActiveSets {
    /// How configuration space was partitioned.
    pub partition: Partition,
    /// Per species.
    pub species: Vec<SpeciesClusters>,
    /// How it was built.
    pub info: BuildInfo,
}

impl Default for ClusteredActiveSets {
    fn default() -> Self {
        ClusteredActiveSets {
            partition: Partition::KMeans(1),
            species: vec![],
            info: BuildInfo::default(),
        }
    }
}

struct ClusterRoute<'a> {
    species: &'a [SpeciesClusters],
    /// First group index of each species.
    base: Vec<usize>,
    /// Label -> cluster per species (label partitions).
    by_label: Vec<BTreeMap<String, usize>>,
    labelled: bool,
}

/// Label used for structures without a `config_type`.
pub const NO_LABEL: &str = "(none)";

impl Route for ClusterRoute<'_> {
    fn route(&self, s: usize, row: &[f64], label: Option<&str>, z: &mut [f64]) -> Option<usize> {
        let sc = &self.species[s];
        let c = if self.labelled {
            *self.by_label[s].get(label.unwrap_or(NO_LABEL))?
        } else {
            sc.centroid_cluster[sc.nearest_centroid(row, z)] as usize
        };
        Some(self.base[s] + c)
    }
}

impl ClusteredActiveSets {
    /// Build from a descriptor table in memory; `labels[k]` is the `config_type` of structure
    /// `k` of the table (see [`structure_labels`]; only used by [`Partition::ConfigType`]).
    pub fn build(
        model: &Model,
        table: &DescriptorTable,
        labels: &[Option<String>],
        partition: &Partition,
        settings: &Settings,
        seed: u64,
        progress: bool,
    ) -> Result<Self, UqError> {
        let mut src = TableSource { table, labels };
        Self::build_from_source(model, &mut src, partition, settings, seed, progress)
    }

    /// Build from rows streamed by `source` (several passes).
    pub fn build_from_source(
        model: &Model,
        source: &mut dyn RowSource,
        partition: &Partition,
        settings: &Settings,
        seed: u64,
        progress: bool,
    ) -> Result<Self, UqError> {
        let ms: Vec<usize> = (0..model.nspecies()).map(|s| model.nfuncs(s)).collect();
        build_clustered(
            &model.species,
            &ms,
            source,
            partition,
            settings,
            seed,
            progress,
        )
    }

    /// Local grade of one atom of species `s` with descriptor `b`, and its cluster index.
    /// k-means partitions: the nearest centroid's cluster; label partitions: the cluster with
    /// the smallest gamma.
    pub fn gamma_local(&self, s: usize, b: &[f64], scratch: &mut GammaScratch) -> (f64, usize) {
        scratch.ensure(b.len());
        let sc = &self.species[s];
        match self.partition {
            Partition::KMeans(_) => {
                let c = sc.centroid_cluster[sc.nearest_centroid(b, &mut scratch.z)] as usize;
                (sc.sets[c].gamma(b, &mut scratch.acc), c)
            }
            Partition::ConfigType => {
                let mut best = (f64::INFINITY, 0);
                for (c, set) in sc.sets.iter().enumerate() {
                    let g = set.gamma(b, &mut scratch.acc);
                    if g < best.0 || (g.is_nan() && best.0.is_infinite()) {
                        best = (g, c);
                    }
                }
                best
            }
        }
    }

    /// Local grades and clusters of many atoms of species `s` (row-major rows), GEMM per
    /// cluster.
    pub fn gamma_local_batch(
        &self,
        s: usize,
        rows: &[f64],
        gamma: &mut [f64],
        cluster: &mut [u32],
        scratch: &mut GammaScratch,
    ) {
        let sc = &self.species[s];
        let m = sc.m();
        let n = gamma.len();
        assert_eq!(
            rows.len(),
            n * m,
            "gamma_local_batch: rows and output differ"
        );
        assert_eq!(cluster.len(), n, "gamma_local_batch: cluster output length");
        scratch.ensure(m);
        match self.partition {
            Partition::KMeans(_) => {
                sc.assign(rows, cluster, &mut scratch.z);
                for (k, set) in sc.sets.iter().enumerate() {
                    scratch.idx.clear();
                    scratch
                        .idx
                        .extend((0..n).filter(|&r| cluster[r] as usize == k));
                    if scratch.idx.is_empty() {
                        continue;
                    }
                    scratch.tmp.resize(scratch.idx.len(), 0.0);
                    set.gamma_selected(rows, &scratch.idx, &mut scratch.tmp, &mut scratch.screen);
                    for (t, &r) in scratch.idx.iter().enumerate() {
                        gamma[r] = scratch.tmp[t];
                    }
                }
            }
            Partition::ConfigType => {
                gamma.fill(f64::INFINITY);
                cluster.fill(0);
                scratch.tmp.resize(n, 0.0);
                let mut tmp = std::mem::take(&mut scratch.tmp);
                for (k, set) in sc.sets.iter().enumerate() {
                    set.gamma_batch(rows, &mut tmp, scratch);
                    for r in 0..n {
                        if tmp[r] < gamma[r] {
                            gamma[r] = tmp[r];
                            cluster[r] = k as u32;
                        }
                    }
                }
                scratch.tmp = tmp;
            }
        }
    }

    /// Store into a model file container.
    pub fn save(&self, c: &mut Container) {
        let mut labels = toml::Table::new();
        for (s, sc) in self.species.iter().enumerate() {
            let p = format!("uq.{LOCAL}.{s}");
            let m = sc.m();
            let k0 = sc.k0();
            c.put(&format!("{p}.mean"), vec![m], Array::F64(sc.mean.clone()));
            c.put(&format!("{p}.std"), vec![m], Array::F64(sc.std.clone()));
            c.put(
                &format!("{p}.centroids"),
                vec![k0, m],
                Array::F64(sc.centroids.clone()),
            );
            c.put(
                &format!("{p}.centroid_cluster"),
                vec![k0],
                Array::U32(sc.centroid_cluster.clone()),
            );
            c.put(
                &format!("{p}.counts"),
                vec![sc.counts.len()],
                Array::U32(
                    sc.counts
                        .iter()
                        .map(|&n| n.min(u32::MAX as usize) as u32)
                        .collect(),
                ),
            );
            for (k, set) in sc.sets.iter().enumerate() {
                set.save(c, &format!("{p}.{k}"));
            }
            if !sc.labels.is_empty() {
                labels.insert(
                    self.info.species.get(s).cloned().unwrap_or(s.to_string()),
                    toml::Value::try_from(&sc.labels).expect("labels serialize"),
                );
            }
        }
        let meta = LocalMeta {
            partition: match self.partition {
                Partition::KMeans(_) => "kmeans".into(),
                Partition::ConfigType => "config_type".into(),
            },
            k: match self.partition {
                Partition::KMeans(k) => k,
                Partition::ConfigType => 0,
            },
            clusters: self.species.iter().map(|s| s.sets.len()).collect(),
            centroids: self.species.iter().map(|s| s.k0()).collect(),
            labels,
            build: self.info.clone(),
        };
        let v = toml::Value::try_from(&meta).expect("cluster metadata serializes");
        uq_meta(c).insert(LOCAL.into(), v);
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let Some(meta) = read_meta::<LocalMeta>(path, c, LOCAL)? else {
            if c.arrays.keys().any(|k| k.starts_with("uq.gamma_local.")) {
                return Err(invalid(
                    path,
                    "arrays 'uq.gamma_local.*' are present but the [uq.gamma_local] metadata is missing (file edited?)".into(),
                ));
            }
            return Ok(None);
        };
        check_species(path, LOCAL, &meta.build, model)?;
        let partition = match meta.partition.as_str() {
            "kmeans" => Partition::KMeans(meta.k),
            "config_type" => Partition::ConfigType,
            other => {
                return Err(invalid(
                    path,
                    format!(
                        "[uq.gamma_local] partition '{other}' is unknown (kmeans or config_type)"
                    ),
                ));
            }
        };
        let ns = model.nspecies();
        if meta.clusters.len() != ns || meta.centroids.len() != ns {
            return Err(invalid(
                path,
                format!("[uq.gamma_local] clusters/centroids must list {ns} species"),
            ));
        }
        let mut species = vec![];
        for s in 0..ns {
            let m = model.nfuncs(s);
            let p = format!("uq.{LOCAL}.{s}");
            let (kk, k0) = (meta.clusters[s], meta.centroids[s]);
            if kk == 0 || k0 < kk {
                return Err(invalid(
                    path,
                    format!(
                        "[uq.gamma_local] species {}: {kk} clusters from {k0} centroids is impossible",
                        model.species[s]
                    ),
                ));
            }
            let mean = c.f64(path, &format!("{p}.mean"), m)?;
            let std = c.f64(path, &format!("{p}.std"), m)?;
            let centroids = c.f64(path, &format!("{p}.centroids"), k0 * m)?;
            let cc_name = format!("{p}.centroid_cluster");
            let centroid_cluster = c.u32_any(path, &cc_name)?;
            let counts_name = format!("{p}.counts");
            let counts = c.u32_any(path, &counts_name)?;
            if centroid_cluster.len() != k0 {
                return Err(invalid(
                    path,
                    format!(
                        "array '{cc_name}' has {} numbers, expected {k0}",
                        centroid_cluster.len()
                    ),
                ));
            }
            if counts.len() != kk {
                return Err(invalid(
                    path,
                    format!(
                        "array '{counts_name}' has {} numbers, expected {kk}",
                        counts.len()
                    ),
                ));
            }
            let mut used = vec![false; kk];
            for &x in &centroid_cluster {
                if x as usize >= kk {
                    return Err(invalid(
                        path,
                        format!("array '{cc_name}' refers to cluster {x}, but there are {kk}"),
                    ));
                }
                used[x as usize] = true;
            }
            if let Some(k) = used.iter().position(|u| !u) {
                return Err(invalid(
                    path,
                    format!("array '{cc_name}': cluster {k} has no centroid"),
                ));
            }
            if std.iter().any(|v| !(v.is_finite() && *v > 0.0))
                || mean.iter().chain(&centroids).any(|v| !v.is_finite())
            {
                return Err(invalid(
                    path,
                    format!(
                        "species {}: standardization or centroids are not finite and positive (arrays '{p}.std', '{p}.mean', '{p}.centroids')",
                        model.species[s]
                    ),
                ));
            }
            let labels: Vec<String> = match meta.labels.get(&model.species[s]) {
                Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| {
                    invalid(path, format!("[uq.gamma_local.labels]: {}", e.message()))
                })?,
                None => vec![],
            };
            if partition == Partition::ConfigType && labels.len() != k0 {
                return Err(invalid(
                    path,
                    format!(
                        "[uq.gamma_local.labels] species {}: {} labels for {k0} centroids",
                        model.species[s],
                        labels.len()
                    ),
                ));
            }
            let sets = (0..kk)
                .map(|k| SpeciesActiveSet::load(path, c, &format!("{p}.{k}"), m))
                .collect::<Result<_, _>>()?;
            species.push(SpeciesClusters {
                mean,
                inv_std: reciprocals(&std),
                std,
                centroids,
                centroid_cluster,
                labels,
                counts: counts.iter().map(|&x| x as usize).collect(),
                sets,
            });
        }
        Ok(Some(ClusteredActiveSets {
            partition,
            species,
            info: meta.build,
        }))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct LocalMeta {
    /// "kmeans" or "config_type".
    partition: String,
    /// Requested number of k-means clusters (0 for config_type).
    k: usize,
    /// Final clusters per species.
    clusters: Vec<usize>,
    /// Centroids per species (before merging).
    centroids: Vec<usize>,
    /// Label of each centroid per species name (config_type partitions).
    labels: toml::Table,
    build: BuildInfo,
}

/// Per-species statistics gathered in the first pass of the clustered builder.
struct SpeciesStats {
    m: usize,
    n: usize,
    shift: Vec<f64>,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
    /// Reservoir sample of raw rows (k-means), row-major.
    sample: Vec<f64>,
    sample_n: usize,
    /// Per label: count and raw row sum (label partitions).
    labels: BTreeMap<String, (usize, Vec<f64>)>,
}

impl SpeciesStats {
    fn new(m: usize) -> Self {
        SpeciesStats {
            m,
            n: 0,
            shift: vec![],
            sum: vec![0.0; m],
            sumsq: vec![0.0; m],
            sample: vec![],
            sample_n: 0,
            labels: BTreeMap::new(),
        }
    }

    fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.n.max(1) as f64;
        let mut mean = vec![0.0; self.m];
        let mut std = vec![1.0; self.m];
        for j in 0..self.m {
            let d = self.sum[j] / n;
            mean[j] = self.shift.get(j).copied().unwrap_or(0.0) + d;
            let var = (self.sumsq[j] / n - d * d).max(0.0);
            let sd = var.sqrt();
            // Zero-variance columns (up to rounding) keep std 1, as METHODS §3 says.
            std[j] = if sd > 1e-12 * mean[j].abs().max(f64::MIN_POSITIVE) && sd > 0.0 {
                sd
            } else {
                1.0
            };
        }
        (mean, std)
    }
}

fn build_clustered(
    names: &[String],
    ms: &[usize],
    source: &mut dyn RowSource,
    partition: &Partition,
    settings: &Settings,
    seed: u64,
    progress: bool,
) -> Result<ClusteredActiveSets, UqError> {
    settings.validate()?;
    let ns = names.len();
    let labelled = match partition {
        Partition::KMeans(0) => {
            return Err(UqError::Data(
                "clusters: k-means needs at least 1 cluster".into(),
            ));
        }
        Partition::KMeans(_) => false,
        Partition::ConfigType => true,
    };
    // Pass 0: standardization, k-means sample, label statistics.
    let mut stats: Vec<SpeciesStats> = ms.iter().map(|&m| SpeciesStats::new(m)).collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..ns)
        .map(|s| {
            ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(s as u64 + 1)))
        })
        .collect();
    let cap = settings.kmeans_sample;
    let pb = bar(source.rows_hint(), progress);
    pb.set_message("cluster statistics");
    source.pass(&mut |chunk: Chunk<'_>| {
        for (s, sr) in chunk.table.per_species.iter().enumerate() {
            let st = &mut stats[s];
            let m = st.m;
            for r in 0..sr.len() {
                let row = sr.row(r);
                if st.shift.is_empty() {
                    st.shift = row.to_vec();
                }
                for j in 0..m {
                    let d = row[j] - st.shift[j];
                    st.sum[j] += d;
                    st.sumsq[j] += d * d;
                }
                st.n += 1;
                if labelled {
                    let l = chunk.label(sr.structure[r]).unwrap_or(NO_LABEL).to_string();
                    let e = st.labels.entry(l).or_insert_with(|| (0, vec![0.0; m]));
                    e.0 += 1;
                    e.1.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                } else if st.sample_n < cap {
                    st.sample.extend_from_slice(row);
                    st.sample_n += 1;
                } else {
                    // Reservoir sampling (Algorithm R): uniform over all rows seen.
                    let k = rngs[s].random_range(0..st.n);
                    if k < cap {
                        st.sample[k * m..(k + 1) * m].copy_from_slice(row);
                    }
                }
            }
            pb.inc(sr.len() as u64);
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    let mut notes = vec![];
    let mut species: Vec<SpeciesClusters> = vec![];
    for s in 0..ns {
        let st = &stats[s];
        let m = st.m;
        if st.n < m {
            return Err(uq_err(MaxVolError::TooFewRows {
                what: format!("species {}", names[s]),
                n: st.n,
                m,
            }));
        }
        let (mean, std) = st.mean_std();
        let inv_std = reciprocals(&std);
        let (centroids, counts, labels) = if labelled {
            let mut c = vec![];
            let mut n = vec![];
            let mut l = vec![];
            for (label, (count, sum)) in &st.labels {
                for j in 0..m {
                    c.push((sum[j] / *count as f64 - mean[j]) * inv_std[j]);
                }
                n.push(*count);
                l.push(label.clone());
            }
            (c, n, l)
        } else {
            let k = match partition {
                Partition::KMeans(k) => *k,
                Partition::ConfigType => unreachable!("labelled"),
            };
            let z = standardize(&st.sample, m, &mean, &inv_std);
            let (c, assign) = kmeans(&z, st.sample_n, m, k, settings.kmeans_iters, &mut rngs[s]);
            let mut n = vec![0usize; c.len() / m];
            for &a in &assign {
                n[a as usize] += 1;
            }
            (c, n, vec![])
        };
        species.push(SpeciesClusters {
            mean,
            std,
            inv_std,
            centroids,
            centroid_cluster: vec![],
            labels,
            counts,
            sets: vec![],
        });
    }
    // Exact counts when k-means saw only a sample.
    if !labelled && stats.iter().any(|st| st.sample_n < st.n) {
        for sc in species.iter_mut() {
            sc.counts.iter_mut().for_each(|c| *c = 0);
        }
        let mut z = vec![0.0; ms.iter().copied().max().unwrap_or(0)];
        source.pass(&mut |chunk: Chunk<'_>| {
            for (s, sr) in chunk.table.per_species.iter().enumerate() {
                let sc = &mut species[s];
                let m = sc.m();
                for r in 0..sr.len() {
                    let row = sr.row(r);
                    for j in 0..m {
                        z[j] = (row[j] - sc.mean[j]) * sc.inv_std[j];
                    }
                    let k = nearest(&sc.centroids, m, &z[..m]).0;
                    sc.counts[k] += 1;
                }
            }
            Ok(())
        })?;
    }
    // Merge clusters that are too small for a meaningful active set.
    let orig_counts: Vec<Vec<usize>> = species.iter().map(|sc| sc.counts.clone()).collect();
    for (s, sc) in species.iter_mut().enumerate() {
        let m = sc.m();
        let min_rows = (settings.min_cluster_factor * m as f64).ceil() as usize;
        let names_of = |k: usize, sc: &SpeciesClusters| {
            if sc.labels.is_empty() {
                format!("k-means cluster {k}")
            } else {
                format!("config_type '{}'", sc.labels[k])
            }
        };
        let (map, counts, msgs) = merge_small(&sc.centroids, &sc.counts, m, min_rows);
        for (from, into, n_from, dist) in msgs {
            notes.push(format!(
                "species {}: {} ({n_from} atoms, fewer than {:.1} × {m} = {min_rows}) merged into {} (nearest centroid, standardized distance {dist:.2})",
                names[s],
                names_of(from, sc),
                settings.min_cluster_factor,
                names_of(into, sc)
            ));
        }
        sc.centroid_cluster = map;
        sc.counts = counts;
    }
    // One streaming MaxVol per (species, cluster). A cluster whose rows admit no active set
    // (e.g. pure-Mg environments, where every function with an Al neighbour is zero) is merged
    // into its nearest cluster and the sets are built again.
    let (groups, base, passes) = loop {
        let (mut groups, base, gname) = make_groups(&species, names, settings)?;
        let by_label: Vec<BTreeMap<String, usize>> = species
            .iter()
            .map(|sc| {
                sc.labels
                    .iter()
                    .enumerate()
                    .map(|(c, l)| (l.clone(), sc.centroid_cluster[c] as usize))
                    .collect()
            })
            .collect();
        let route = ClusterRoute {
            species: &species,
            base: base.clone(),
            by_label,
            labelled,
        };
        let nm = |k: usize| gname[k].clone();
        match run_passes(
            &mut groups,
            source,
            &route,
            settings,
            progress,
            &mut notes,
            &nm,
        ) {
            Ok(p) => break (groups, base, p),
            Err(PassError::Groups(errs))
                if errs.iter().all(|(g, e)| {
                    matches!(
                        e,
                        MaxVolError::TooFewRows { .. }
                            | MaxVolError::ZeroColumn { .. }
                            | MaxVolError::RankDeficient { .. }
                    ) && species[groups[*g].species].counts.len() > 1
                }) =>
            {
                let mut done = vec![false; ns];
                for (g, e) in &errs {
                    let s = groups[*g].species;
                    if std::mem::replace(&mut done[s], true) {
                        continue; // one merge per species per round
                    }
                    let k = g - base[s];
                    let (into, dist) = merge_cluster(&mut species[s], &orig_counts[s], k);
                    let why = match e {
                        MaxVolError::TooFewRows { n, m, .. } => {
                            format!("{n} atoms for {m} basis functions")
                        }
                        MaxVolError::ZeroColumn { col, n, .. } => {
                            format!("basis function {col} is zero on all its {n} atoms")
                        }
                        MaxVolError::RankDeficient { rank, m, n, .. } => {
                            format!("its {n} atoms span only about {rank} of {m} dimensions")
                        }
                        _ => unreachable!("filtered above"),
                    };
                    notes.push(format!(
                        "{} has no active set ({why}): merged into {} (nearest centroid, standardized distance {dist:.2})",
                        gname[*g],
                        gname[base[s] + into]
                    ));
                }
            }
            Err(e) => return Err(e.into_uq()),
        }
    };
    let mut atoms = vec![0; ns];
    let mut verified = vec![true; ns];
    for g in &groups {
        atoms[g.species] += g.last.seen;
        verified[g.species] &= g.verified;
    }
    for (k, g) in groups.into_iter().enumerate() {
        let set = SpeciesActiveSet::from_rows(g.mv.into_active_rows().map_err(uq_err)?);
        species[g.species].sets.push(set);
        debug_assert_eq!(base[g.species] + species[g.species].sets.len() - 1, k);
    }
    let named: Vec<(String, &SpeciesActiveSet)> = species
        .iter()
        .enumerate()
        .flat_map(|(s, sc)| {
            sc.sets
                .iter()
                .enumerate()
                .map(move |(k, x)| (format!("species {}, cluster {k}", names[s]), x))
        })
        .collect();
    condition_notes(&named, &mut notes);
    Ok(ClusteredActiveSets {
        partition: partition.clone(),
        species,
        info: BuildInfo {
            tol: settings.tol,
            species: names.to_vec(),
            atoms,
            passes,
            verified,
            data: vec![],
            notes,
        },
    })
}

/// Groups, the first group of each species, and the groups' names.
type GroupSet = (Vec<Group>, Vec<usize>, Vec<String>);

/// One streaming MaxVol per (species, final cluster); returns the groups, the first group of
/// each species, and the groups' names.
fn make_groups(
    species: &[SpeciesClusters],
    names: &[String],
    settings: &Settings,
) -> Result<GroupSet, UqError> {
    let opts = settings.options();
    let mut groups = vec![];
    let mut base = vec![];
    let mut gname = vec![];
    for (s, sc) in species.iter().enumerate() {
        base.push(groups.len());
        for k in 0..sc.counts.len() {
            let what = if sc.labels.is_empty() {
                format!("species {}, cluster {k}", names[s])
            } else {
                let ls: Vec<&str> = (0..sc.k0())
                    .filter(|&c| sc.centroid_cluster[c] as usize == k)
                    .map(|c| sc.labels[c].as_str())
                    .collect();
                format!(
                    "species {}, cluster {k} (config_type {})",
                    names[s],
                    ls.join(", ")
                )
            };
            groups.push(Group {
                species: s,
                mv: StreamingMaxVol::new(sc.m(), settings.batch, opts, &what).map_err(uq_err)?,
                verified: false,
                last: PassStats::default(),
            });
            gname.push(what);
        }
    }
    Ok((groups, base, gname))
}

/// Merge final cluster `k` of a species into the final cluster with the nearest
/// (count-weighted) centroid; returns that cluster's index before renumbering and the
/// standardized distance. Clusters after `k` move down by one.
fn merge_cluster(sc: &mut SpeciesClusters, orig_counts: &[usize], k: usize) -> (usize, f64) {
    let m = sc.m();
    let kk = sc.counts.len();
    let mut cen = vec![0.0; kk * m];
    let mut w = vec![0.0; kk];
    for (i, &c) in sc.centroid_cluster.iter().enumerate() {
        let c = c as usize;
        let wi = orig_counts[i].max(1) as f64;
        w[c] += wi;
        for j in 0..m {
            cen[c * m + j] += wi * sc.centroids[i * m + j];
        }
    }
    for c in 0..kk {
        for j in 0..m {
            cen[c * m + j] /= w[c].max(1.0);
        }
    }
    let z = cen[k * m..(k + 1) * m].to_vec();
    let mut best = (usize::MAX, f64::INFINITY);
    for c in (0..kk).filter(|&c| c != k) {
        let d: f64 = cen[c * m..(c + 1) * m]
            .iter()
            .zip(&z)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        if d < best.1 {
            best = (c, d);
        }
    }
    let into = best.0;
    for c in sc.centroid_cluster.iter_mut() {
        if *c as usize == k {
            *c = into as u32;
        }
        if *c as usize > k {
            *c -= 1;
        }
    }
    sc.counts[into] += sc.counts[k];
    sc.counts.remove(k);
    (into, best.1.sqrt())
}

/// Rows `x` (row-major, rows of `m`) standardized: `(x - mean) * inv_std`.
fn standardize(x: &[f64], m: usize, mean: &[f64], inv_std: &[f64]) -> Vec<f64> {
    let mut z = x.to_vec();
    for row in z.chunks_exact_mut(m) {
        for j in 0..m {
            row[j] = (row[j] - mean[j]) * inv_std[j];
        }
    }
    z
}

/// `1 / s` of every entry.
fn reciprocals(s: &[f64]) -> Vec<f64> {
    s.iter().map(|v| 1.0 / v).collect()
}

/// Merge clusters with fewer than `min_rows` rows, smallest first, into the cluster with the
/// nearest (count-weighted) centroid, until none is small or one is left. Returns the final
/// cluster of each original cluster (final clusters numbered in order of their first original
/// member), the final counts, and the merges `(from, into, count_from, distance)` in original
/// indices.
#[allow(clippy::type_complexity)]
fn merge_small(
    centroids: &[f64],
    counts: &[usize],
    m: usize,
    min_rows: usize,
) -> (Vec<u32>, Vec<usize>, Vec<(usize, usize, usize, f64)>) {
    let k0 = counts.len();
    let mut alive = vec![true; k0];
    let mut cnt = counts.to_vec();
    let mut cen = centroids.to_vec();
    let mut owner: Vec<usize> = (0..k0).collect();
    let mut msgs = vec![];
    loop {
        let live: Vec<usize> = (0..k0).filter(|&k| alive[k]).collect();
        if live.len() <= 1 {
            break;
        }
        let Some(&small) = live
            .iter()
            .filter(|&&k| cnt[k] < min_rows)
            .min_by_key(|&&k| (cnt[k], k))
        else {
            break;
        };
        let z = &cen[small * m..(small + 1) * m];
        let mut best = (usize::MAX, f64::INFINITY);
        for &k in &live {
            if k == small {
                continue;
            }
            let d: f64 = cen[k * m..(k + 1) * m]
                .iter()
                .zip(z)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            if d < best.1 {
                best = (k, d);
            }
        }
        let into = best.0;
        msgs.push((small, into, cnt[small], best.1.sqrt()));
        let (a, b) = (cnt[into] as f64, cnt[small] as f64);
        if a + b > 0.0 {
            for j in 0..m {
                cen[into * m + j] = (a * cen[into * m + j] + b * cen[small * m + j]) / (a + b);
            }
        }
        cnt[into] += cnt[small];
        alive[small] = false;
        for o in owner.iter_mut() {
            if *o == small {
                *o = into;
            }
        }
    }
    let live: Vec<usize> = (0..k0).filter(|&k| alive[k]).collect();
    let map = owner
        .iter()
        .map(|o| live.iter().position(|l| l == o).expect("owner is alive") as u32)
        .collect();
    let final_counts = live.iter().map(|&k| cnt[k]).collect();
    (map, final_counts, msgs)
}

/// k-means (k-means++ initialization, Lloyd iterations) on row-major standardized rows.
/// Returns the centroids (row-major, at most `k` of them: fewer if there are fewer distinct
/// rows) and the cluster of each row.
fn kmeans(
    z: &[f64],
    n: usize,
    m: usize,
    k: usize,
    iters: usize,
    rng: &mut ChaCha8Rng,
) -> (Vec<f64>, Vec<u32>) {
    let k = k.min(n).max(1);
    let row = |i: usize| &z[i * m..(i + 1) * m];
    let d2 =
        |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum() };
    // k-means++: each new centre drawn with probability proportional to D^2.
    let mut cent: Vec<f64> = row(rng.random_range(0..n)).to_vec();
    let mut dmin: Vec<f64> = (0..n).map(|i| d2(row(i), &cent[..m])).collect();
    while cent.len() / m < k {
        let total: f64 = dmin.iter().sum();
        if total.is_nan() || total <= 0.0 {
            break; // every row coincides with a centre
        }
        let mut u = rng.random::<f64>() * total;
        let mut pick = n - 1;
        for (i, &d) in dmin.iter().enumerate() {
            if u < d {
                pick = i;
                break;
            }
            u -= d;
        }
        let c0 = cent.len();
        cent.extend_from_slice(row(pick));
        let c = cent[c0..].to_vec();
        dmin.par_iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = d.min(d2(&z[i * m..(i + 1) * m], &c)));
    }
    let kk = cent.len() / m;
    let mut assign = vec![u32::MAX; n];
    for _ in 0..iters {
        let new: Vec<(u32, f64)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let (c, d) = nearest(&cent, m, &z[i * m..(i + 1) * m]);
                (c as u32, d)
            })
            .collect();
        let changed = new.iter().zip(&assign).any(|(a, b)| a.0 != *b);
        for (a, b) in assign.iter_mut().zip(&new) {
            *a = b.0;
        }
        if !changed {
            break;
        }
        let mut sum = vec![0.0; kk * m];
        let mut cnt = vec![0usize; kk];
        for i in 0..n {
            let c = assign[i] as usize;
            cnt[c] += 1;
            for j in 0..m {
                sum[c * m + j] += z[i * m + j];
            }
        }
        for c in 0..kk {
            if cnt[c] > 0 {
                for j in 0..m {
                    cent[c * m + j] = sum[c * m + j] / cnt[c] as f64;
                }
            } else {
                // Empty cluster: restart it at the row farthest from its centre.
                let far = (0..n)
                    .max_by(|&a, &b| new[a].1.total_cmp(&new[b].1).then(b.cmp(&a)))
                    .unwrap_or(0);
                cent[c * m..(c + 1) * m].copy_from_slice(row(far));
            }
        }
    }
    (cent, assign)
}

// ---------------------------------------------------------------------------------------------
// Candidate selection
// ---------------------------------------------------------------------------------------------

/// One chosen candidate structure.
#[derive(Clone, Debug, PartialEq)]
pub struct Chosen {
    /// Index of the structure in the candidate data.
    pub structure: usize,
    /// Rows (atoms) of it that entered the active set.
    pub new_rows: usize,
    /// Its structure grade (max gamma over its atoms) against the model's active set.
    pub max_gamma: f64,
}

/// The result of [`select`].
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionReport {
    /// Chosen structures, most new rows first (ties: higher grade first, then lower index).
    pub chosen: Vec<Chosen>,
    /// Number of candidate structures that own at least one selected row.
    pub contributing: usize,
    /// Number of candidate structures seen.
    pub candidates: usize,
    /// Human-readable remarks (fewer contributors than asked, unverified MaxVol).
    pub notes: Vec<String>,
}

/// The rows of a source that extrapolate (gamma > tol) against a fixed set of active sets; also
/// records each structure's grade (max gamma of its atoms).
struct Extrapolative<'a, 'b> {
    inner: &'b mut dyn RowSource,
    sets: &'a GlobalActiveSets,
    tol: f64,
    grade: Vec<f64>,
}

impl RowSource for Extrapolative<'_, '_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        let (sets, tol, grade) = (self.sets, self.tol, &mut self.grade);
        let mut scratch = GammaScratch::default();
        let mut g = vec![];
        self.inner.pass(&mut |chunk: Chunk<'_>| {
            let mut out = DescriptorTable {
                per_species: Vec::with_capacity(chunk.table.per_species.len()),
            };
            for (s, sr) in chunk.table.per_species.iter().enumerate() {
                g.resize(sr.len(), 0.0);
                if !sr.is_empty() {
                    sets.species[s].gamma_batch(&sr.rows, &mut g, &mut scratch);
                }
                let mut keep = super::SpeciesRows {
                    m: sr.m,
                    ..Default::default()
                };
                for r in 0..sr.len() {
                    let k = (chunk.first + sr.structure[r]) as usize;
                    if grade.len() <= k {
                        grade.resize(k + 1, 0.0);
                    }
                    grade[k] = grade[k].max(g[r]);
                    if g[r] > tol {
                        keep.rows.extend_from_slice(sr.row(r));
                        keep.structure.push(sr.structure[r]);
                        keep.atom.push(sr.atom[r]);
                    }
                }
                out.per_species.push(keep);
            }
            sink(Chunk {
                table: &out,
                first: chunk.first,
                labels: chunk.labels,
            })
        })
    }
    fn rows_hint(&self) -> Option<u64> {
        self.inner.rows_hint()
    }
}

/// Choose up to `max_k` candidate structures for labelling: per species, MaxVol over the
/// model's active-set rows stacked with the candidates' rows; count the selected rows owned by
/// each candidate structure; take the structures with the most. Existing active rows are never
/// chosen. Only candidate atoms that extrapolate against the model's set (gamma > tol) may
/// enter: an atom inside the training domain is not worth labelling even if swaps made
/// elsewhere would later let it in. Memory stays bounded (rows stream through).
pub fn select(
    model: &Model,
    sets: &GlobalActiveSets,
    candidates: &mut dyn RowSource,
    max_k: usize,
    settings: &Settings,
    progress: bool,
) -> Result<SelectionReport, UqError> {
    settings.validate()?;
    if sets.species.len() != model.nspecies() {
        return Err(UqError::Data(format!(
            "the active sets have {} species, the model {}",
            sets.species.len(),
            model.nspecies()
        )));
    }
    let opts = settings.options();
    let mut groups = sets
        .species
        .iter()
        .enumerate()
        .map(|(s, set)| {
            let ids = (0..set.m as u32)
                .map(|k| RowId {
                    structure: RowId::EXISTING,
                    atom: k,
                })
                .collect();
            Ok(Group {
                species: s,
                mv: StreamingMaxVol::with_active_set(
                    set.m,
                    settings.batch,
                    opts,
                    &format!("species {}", model.species[s]),
                    set.rows.clone(),
                    ids,
                )
                .map_err(uq_err)?,
                verified: false,
                last: PassStats::default(),
            })
        })
        .collect::<Result<Vec<_>, UqError>>()?;
    let mut notes = vec![];
    let nm = |k: usize| format!("species {}", model.species[k]);
    let mut src = Extrapolative {
        inner: candidates,
        sets,
        tol: settings.tol,
        grade: vec![],
    };
    run_passes(
        &mut groups,
        &mut src,
        &ByStructure,
        settings,
        progress,
        &mut notes,
        &nm,
    )
    .map_err(PassError::into_uq)?;
    let grade = src.grade;
    let ncand = grade.len();
    let mut owned: BTreeMap<usize, usize> = BTreeMap::new();
    for g in groups {
        for id in g.mv.into_active_rows().map_err(uq_err)?.ids {
            if id.structure != RowId::EXISTING {
                *owned.entry(id.structure as usize).or_default() += 1;
            }
        }
    }
    let mut all: Vec<Chosen> = owned
        .iter()
        .map(|(&k, &n)| Chosen {
            structure: k,
            new_rows: n,
            max_gamma: grade.get(k).copied().unwrap_or(0.0),
        })
        .collect();
    all.sort_by(|a, b| {
        b.new_rows
            .cmp(&a.new_rows)
            .then(b.max_gamma.total_cmp(&a.max_gamma))
            .then(a.structure.cmp(&b.structure))
    });
    let contributing = all.len();
    if contributing < max_k {
        notes.push(format!(
            "only {contributing} of the {ncand} candidate structures add rows to the active set (asked for {max_k}); the others lie within the training domain (gamma <= {} for all their atoms, or displaced by better candidates)",
            settings.tol
        ));
    }
    all.truncate(max_k);
    Ok(SelectionReport {
        chosen: all,
        contributing,
        candidates: ncand,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{random_model, random_structure, tiny_cfg};
    use crate::uq::SpeciesRows;
    use rand_distr::{Distribution, StandardNormal};

    /// A synthetic one-species table: `blobs` Gaussian blobs in `m` dimensions, `per` rows each,
    /// `per_structure` rows per structure (structures do not mix blobs).
    fn blobs(
        m: usize,
        centres: &[f64],
        per: usize,
        per_structure: usize,
        seed: u64,
    ) -> DescriptorTable {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sr = SpeciesRows {
            m,
            ..Default::default()
        };
        for (b, &c) in centres.iter().enumerate() {
            for r in 0..per {
                for j in 0..m {
                    let x: f64 = StandardNormal.sample(&mut rng);
                    // Each blob is offset by `c` times its own direction (in every column, so
                    // that standardization keeps the blobs apart).
                    sr.rows
                        .push(x + c * (1.3 + 2.1 * b as f64 + 0.7 * j as f64).sin());
                }
                sr.structure.push(((b * per + r) / per_structure) as u32);
                sr.atom.push(((b * per + r) % per_structure) as u32);
            }
        }
        DescriptorTable {
            per_species: vec![sr],
        }
    }

    fn names() -> Vec<String> {
        vec!["Li".to_string()]
    }

    fn global(t: &DescriptorTable, settings: &Settings) -> GlobalActiveSets {
        let ms: Vec<usize> = t.per_species.iter().map(|s| s.m).collect();
        build_global(
            &names()[..ms.len()],
            &ms,
            &mut TableSource {
                table: t,
                labels: &[],
            },
            settings,
            false,
        )
        .unwrap()
    }

    fn clustered(
        t: &DescriptorTable,
        labels: &[Option<String>],
        p: Partition,
        settings: &Settings,
    ) -> ClusteredActiveSets {
        let ms: Vec<usize> = t.per_species.iter().map(|s| s.m).collect();
        build_clustered(
            &names()[..ms.len()],
            &ms,
            &mut TableSource { table: t, labels },
            &p,
            settings,
            7,
            false,
        )
        .unwrap()
    }

    fn small_batches() -> Settings {
        Settings {
            batch: 50,
            ..Default::default()
        }
    }

    #[test]
    fn one_cluster_reproduces_the_global_grade_exactly() {
        let t = blobs(6, &[0.0, 8.0, -8.0], 150, 10, 1);
        for settings in [Settings::default(), small_batches()] {
            let g = global(&t, &settings);
            let c = clustered(&t, &[], Partition::KMeans(1), &settings);
            assert_eq!(c.species[0].sets.len(), 1);
            assert_eq!(
                c.species[0].sets[0], g.species[0],
                "same active set, bit for bit"
            );
            let probe = blobs(6, &[3.0, 20.0], 40, 10, 2);
            let rows = &probe.per_species[0];
            let mut sc = GammaScratch::new(6);
            let mut gb = vec![0.0; rows.len()];
            let mut cb = vec![0u32; rows.len()];
            c.gamma_local_batch(0, &rows.rows, &mut gb, &mut cb, &mut sc);
            for r in 0..rows.len() {
                let a = g.gamma(0, rows.row(r), &mut sc);
                let (b, k) = c.gamma_local(0, rows.row(r), &mut sc);
                assert_eq!(a.to_bits(), b.to_bits());
                assert_eq!(k, 0);
                assert!((gb[r] - a).abs() <= 1e-12 * a.max(1.0));
            }
            // Every build row interpolates.
            let gt = g.gamma_table(&t);
            assert!(gt[0].iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
            assert!(g.info.verified[0]);
            assert_eq!(g.info.atoms, vec![450]);
        }
    }

    #[test]
    fn label_partition_reproduces_per_label_active_sets() {
        let t = blobs(5, &[0.0, 10.0, 25.0], 120, 6, 3);
        // Structures 0..20 are blob 0, 20..40 blob 1, 40..60 blob 2.
        let labels: Vec<Option<String>> = (0..60)
            .map(|k| Some(["liquid", "bcc", "surface"][k / 20].to_string()))
            .collect();
        let settings = Settings {
            min_cluster_factor: 4.0,
            ..small_batches()
        };
        let c = clustered(&t, &labels, Partition::ConfigType, &settings);
        let sc = &c.species[0];
        // Labels sorted: bcc, liquid, surface.
        assert_eq!(sc.labels, vec!["bcc", "liquid", "surface"]);
        assert_eq!(sc.counts, vec![120, 120, 120]);
        let sr = &t.per_species[0];
        for (k, label) in sc.labels.iter().enumerate() {
            // The rows of this label alone, same order and provenance.
            let mut sub = SpeciesRows {
                m: 5,
                ..Default::default()
            };
            for r in 0..sr.len() {
                if labels[sr.structure[r] as usize].as_deref() == Some(label.as_str()) {
                    sub.rows.extend_from_slice(sr.row(r));
                    sub.structure.push(sr.structure[r]);
                    sub.atom.push(sr.atom[r]);
                }
            }
            let g = global(
                &DescriptorTable {
                    per_species: vec![sub],
                },
                &settings,
            );
            let c_k = sc.centroid_cluster[k] as usize;
            assert_eq!(sc.sets[c_k], g.species[0], "label {label}");
        }
        // Query: a row from blob 2 gets its smallest gamma from the 'surface' set.
        let mut s = GammaScratch::new(5);
        let row = sr.row(300);
        let (g, k) = c.gamma_local(0, row, &mut s);
        assert_eq!(sc.labels[k], "surface");
        for set in &sc.sets {
            assert!(set.gamma(row, &mut s.acc) >= g);
        }
        // A label with too few atoms is merged into the nearest one, with a note.
        let mut labels2 = labels.clone();
        for l in labels2.iter_mut().take(3) {
            *l = Some("tiny".into()); // 18 rows of blob 0
        }
        let c2 = clustered(&t, &labels2, Partition::ConfigType, &settings);
        let sc2 = &c2.species[0];
        assert_eq!(sc2.labels, vec!["bcc", "liquid", "surface", "tiny"]);
        assert_eq!(sc2.sets.len(), 3);
        assert_eq!(
            sc2.centroid_cluster[3], sc2.centroid_cluster[1],
            "tiny joins liquid"
        );
        assert!(
            c2.info
                .notes
                .iter()
                .any(|n| n.contains("config_type 'tiny' (18 atoms")
                    && n.contains("merged into config_type 'liquid'")),
            "{:?}",
            c2.info.notes
        );
    }

    #[test]
    fn kmeans_finds_separated_blobs_and_merges_small_ones() {
        let t = blobs(4, &[0.0, 30.0, -30.0], 200, 10, 5);
        let settings = Settings {
            min_cluster_factor: 3.0,
            ..Default::default()
        };
        let c = clustered(&t, &[], Partition::KMeans(3), &settings);
        let sc = &c.species[0];
        let mut counts = sc.counts.clone();
        counts.sort();
        assert_eq!(counts, vec![200, 200, 200]);
        // Rows of one blob share a cluster; different blobs differ.
        let sr = &t.per_species[0];
        let mut s = GammaScratch::new(4);
        let k: Vec<usize> = [0, 250, 450]
            .iter()
            .map(|&r| c.gamma_local(0, sr.row(r), &mut s).1)
            .collect();
        assert!(k[0] != k[1] && k[1] != k[2] && k[0] != k[2], "{k:?}");
        for r in 0..200 {
            assert_eq!(c.gamma_local(0, sr.row(r), &mut s).1, k[0]);
        }
        // Local grades of build rows are <= tol for their own cluster.
        let mut gb = vec![0.0; sr.len()];
        let mut cb = vec![0u32; sr.len()];
        c.gamma_local_batch(0, &sr.rows, &mut gb, &mut cb, &mut s);
        assert!(gb.iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
        // K = 4 on three blobs splits one; with a minimum of 30 × 4 = 120 atoms the smaller
        // half is merged back into its nearest neighbour, the other half.
        let four = Settings {
            min_cluster_factor: 30.0,
            ..Default::default()
        };
        let c4 = clustered(&t, &[], Partition::KMeans(4), &four);
        let mut counts = c4.species[0].counts.clone();
        counts.sort();
        assert_eq!(counts, vec![200, 200, 200], "{:?}", c4.info.notes);
        assert_eq!(c4.species[0].centroid_cluster.len(), 4);
        assert_eq!(
            c4.info
                .notes
                .iter()
                .filter(|n| n.contains("merged into k-means cluster"))
                .count(),
            1,
            "{:?}",
            c4.info.notes
        );
        // Everything too small: one cluster remains.
        let big = Settings {
            min_cluster_factor: 60.0,
            ..Default::default()
        };
        let c1 = clustered(&t, &[], Partition::KMeans(3), &big);
        assert_eq!(c1.species[0].sets.len(), 1);
        assert_eq!(c1.species[0].counts, vec![600]);
        assert_eq!(
            c1.info
                .notes
                .iter()
                .filter(|n| n.contains("merged into k-means cluster"))
                .count(),
            2
        );
        // k-means on a sample gives exact counts from an extra pass.
        let sampled = Settings {
            kmeans_sample: 100,
            ..Default::default()
        };
        let c = clustered(&t, &[], Partition::KMeans(3), &sampled);
        assert_eq!(c.species[0].counts.iter().sum::<usize>(), 600);
        assert_eq!(c.info.atoms, vec![600]);
    }

    #[test]
    fn standardization_keeps_constant_columns() {
        let mut t = blobs(4, &[0.0], 50, 5, 9);
        for r in 0..50 {
            t.per_species[0].rows[r * 4 + 2] = 3.0;
        }
        let mut st = SpeciesStats::new(4);
        st.shift = t.per_species[0].row(0).to_vec();
        for r in 0..50 {
            for j in 0..4 {
                let d = t.per_species[0].row(r)[j] - st.shift[j];
                st.sum[j] += d;
                st.sumsq[j] += d * d;
            }
            st.n += 1;
        }
        let (mean, std) = st.mean_std();
        assert_eq!(std[2], 1.0);
        assert_eq!(mean[2], 3.0);
        assert!(std[0] > 0.5 && std[0] < 1.5);
    }

    fn model_and_data() -> (Model, Vec<Structure>) {
        let model = random_model(&["Al", "Mg"], &tiny_cfg(), 5);
        let data: Vec<Structure> = (0..8)
            .map(|k| {
                let mut s = random_structure(&["Al", "Mg"], 3, 100 + k, k % 2 == 0);
                s.config_type = Some(if k < 4 { "a" } else { "b" }.into());
                s
            })
            .collect();
        (model, data)
    }

    #[test]
    fn save_load_round_trip_and_edited_files() {
        let (model, data) = model_and_data();
        let table = crate::uq::descriptor_table(&model, &data).unwrap();
        let settings = Settings {
            min_cluster_factor: 1.0,
            ..Default::default()
        };
        let g = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
        let labels = structure_labels(&data);
        let c = ClusteredActiveSets::build(
            &model,
            &table,
            &labels,
            &Partition::ConfigType,
            &settings,
            1,
            false,
        )
        .unwrap();
        let k = ClusteredActiveSets::build(
            &model,
            &table,
            &labels,
            &Partition::KMeans(2),
            &settings,
            1,
            false,
        )
        .unwrap();
        // Streaming descriptors chunk by chunk gives the same sets (one batch holds all rows).
        let mut src = StructureSource {
            model: &model,
            data: &data,
            chunk: 3,
        };
        let g2 = GlobalActiveSets::build_from_source(&model, &mut src, &settings, false).unwrap();
        assert_eq!(g, g2);
        let p = Path::new("t.aceuq");
        let mut uq = crate::uq::UqModel::default();
        for local in [c, k] {
            uq.active_set = Some(g.clone());
            uq.local = Some(local.clone());
            let mut cont = crate::io::modelfile::to_container(&model);
            uq.save(&mut cont);
            let bytes = cont.to_bytes();
            let back =
                crate::uq::UqModel::load(p, &Container::from_bytes(p, &bytes).unwrap(), &model)
                    .unwrap();
            assert_eq!(back.active_set.as_ref(), Some(&g));
            assert_eq!(back.local.as_ref(), Some(&local));
        }
        let mut cont = crate::io::modelfile::to_container(&model);
        uq.save(&mut cont);
        // Absent estimators load as None.
        let mut bare = cont.clone();
        bare.arrays.retain(|k, _| !k.starts_with("uq."));
        bare.meta.remove("uq");
        assert!(GlobalActiveSets::load(p, &bare, &model).unwrap().is_none());
        assert!(
            ClusteredActiveSets::load(p, &bare, &model)
                .unwrap()
                .is_none()
        );
        // A CRC-valid edit of the inverse is caught by the consistency probe.
        let name = "uq.gamma.1.inverse";
        if let Some((_, Array::F64(v))) = cont.arrays.get_mut(name) {
            v[3] += 0.5;
        }
        let c2 = Container::from_bytes(p, &cont.to_bytes()).unwrap();
        let e = GlobalActiveSets::load(p, &c2, &model)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'uq.gamma.1.inverse' is not the inverse of 'uq.gamma.1.rows'"),
            "{e}"
        );
        // Wrong size names the array.
        let mut cont = crate::io::modelfile::to_container(&model);
        cont.put("uq.gamma.0.rows", vec![2], Array::F64(vec![1.0, 2.0]));
        let e = GlobalActiveSets::load(p, &cont, &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("array 'uq.gamma.0.rows' has 2 numbers"), "{e}");
        // A cluster map pointing nowhere.
        let mut cont = crate::io::modelfile::to_container(&model);
        cont.put(
            "uq.gamma_local.0.centroid_cluster",
            vec![2],
            Array::U32(vec![0, 9]),
        );
        let e = ClusteredActiveSets::load(p, &cont, &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refers to cluster 9"), "{e}");
        // Metadata for other species.
        let mut cont = crate::io::modelfile::to_container(&model);
        let uq = cont.meta.get_mut("uq").unwrap().as_table_mut().unwrap();
        let gm = uq.get_mut("gamma").unwrap().as_table_mut().unwrap();
        gm.insert("species".into(), toml::Value::Array(vec!["Li".into()]));
        let e = GlobalActiveSets::load(p, &cont, &model)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is for species [Li] but the model has [Al, Mg]"),
            "{e}"
        );
        // Arrays without metadata.
        let mut cont = crate::io::modelfile::to_container(&model);
        cont.meta.remove("uq");
        let e = GlobalActiveSets::load(p, &cont, &model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata is missing"), "{e}");
    }

    #[test]
    fn a_cluster_without_an_active_set_is_merged() {
        // Pure-Al structures: every function with a Mg neighbour is zero for their Al atoms.
        let (model, mut data) = model_and_data();
        for (k, s) in data.iter_mut().enumerate() {
            s.config_type = Some("mixed".into());
            if k < 4 {
                let mut p = random_structure(&["Al"], 3, 500 + k as u64, true);
                p.config_type = Some("pure_al".into());
                *s = p;
            }
        }
        for k in 0..4 {
            let mut s = random_structure(&["Al", "Mg"], 3, 700 + k, false);
            s.config_type = Some("mixed".into());
            data.push(s);
        }
        let table = crate::uq::descriptor_table(&model, &data).unwrap();
        let labels = structure_labels(&data);
        let settings = Settings {
            min_cluster_factor: 1.0,
            ..Default::default()
        };
        let c = ClusteredActiveSets::build(
            &model,
            &table,
            &labels,
            &Partition::ConfigType,
            &settings,
            1,
            false,
        )
        .unwrap();
        assert_eq!(c.species[0].labels, vec!["mixed", "pure_al"]);
        assert_eq!(c.species[0].sets.len(), 1, "{:?}", c.info.notes);
        assert_eq!(c.species[0].centroid_cluster, vec![0, 0]);
        assert!(
            c.info
                .notes
                .iter()
                .any(|n| n.starts_with(
                    "species Al, cluster 1 (config_type pure_al) has no active set (basis function"
                ) && n.contains("merged into species Al, cluster 0 (config_type mixed)")),
            "{:?}",
            c.info.notes
        );
        // The merged set grades every Al row <= tol.
        let sr = &table.per_species[0];
        let mut g = vec![0.0; sr.len()];
        let mut k = vec![0u32; sr.len()];
        c.gamma_local_batch(0, &sr.rows, &mut g, &mut k, &mut GammaScratch::new(sr.m));
        assert!(g.iter().all(|&v| v <= 1.01 * (1.0 + 1e-9)));
        // The global set of the same data is the same set (one cluster holding everything).
        let glob = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
        assert_eq!(glob.species[0], c.species[0].sets[0]);
    }

    #[test]
    fn a_species_with_one_atom_is_a_clear_error() {
        let (model, mut data) = model_and_data();
        for s in data.iter_mut() {
            for sym in s.symbols.iter_mut() {
                *sym = "Al".into();
            }
        }
        data[0].symbols[5] = "Mg".into();
        let table = crate::uq::descriptor_table(&model, &data).unwrap();
        let m = model.nfuncs(1);
        let e = GlobalActiveSets::build(&model, &table, &Settings::default(), false)
            .unwrap_err()
            .to_string();
        // The most basic problem first; Al (no Mg neighbours at all) is rank-deficient too.
        assert!(
            e.starts_with(&format!(
                "under-determined: species Mg has 1 atom, needs {m} (the basis size): add data or use a smaller basis; also: species Al: the 431 atoms' descriptors span only about"
            )),
            "{e}"
        );
        let e = ClusteredActiveSets::build(
            &model,
            &table,
            &[],
            &Partition::KMeans(2),
            &Settings::default(),
            1,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("under-determined: species Mg has 1 atom"),
            "{e}"
        );
    }

    #[test]
    fn selection_prefers_structures_outside_the_training_domain() {
        let (model, data) = model_and_data();
        let table = crate::uq::descriptor_table(&model, &data).unwrap();
        let g = GlobalActiveSets::build(&model, &table, &Settings::default(), false).unwrap();
        // Candidates: two copies of training structures (nothing new) and two compressed ones.
        let mut cands = vec![data[1].clone(), data[6].clone()];
        for k in 0..2 {
            let mut s = random_structure(&["Al", "Mg"], 3, 900 + k, false);
            for p in s.positions.iter_mut() {
                p.iter_mut().for_each(|x| *x *= 0.85);
            }
            if let Some(c) = s.cell.as_mut() {
                c.iter_mut()
                    .for_each(|r| r.iter_mut().for_each(|x| *x *= 0.85));
            }
            cands.push(s);
        }
        let mut src = StructureSource {
            model: &model,
            data: &cands,
            chunk: 2,
        };
        let rep = select(&model, &g, &mut src, 3, &Settings::default(), false).unwrap();
        assert_eq!(rep.candidates, 4);
        let chosen: Vec<usize> = rep.chosen.iter().map(|c| c.structure).collect();
        assert!(
            chosen.iter().all(|&k| k >= 2),
            "copies of training data are never chosen: {chosen:?}"
        );
        assert_eq!(rep.contributing, 2);
        assert!(
            rep.chosen
                .iter()
                .all(|c| c.new_rows > 0 && c.max_gamma > 1.01)
        );
        assert!(
            rep.notes
                .iter()
                .any(|n| n.contains("only 2 of the 4 candidate structures")),
            "{:?}",
            rep.notes
        );
        // Copies of training data grade <= tol.
        let t2 = crate::uq::descriptor_table(&model, &cands[..2]).unwrap();
        for v in g.gamma_table(&t2) {
            assert!(v.iter().all(|&x| x <= 1.01 * (1.0 + 1e-9)));
        }
    }

    #[test]
    fn near_singular_active_sets_are_reported() {
        // [[1, 1], [1, 1 + e]]: relative pivot ~e, 1-norm condition number ~4 / e.
        for (e, singular) in [(2e-10, false), (5e-11, true)] {
            let a = [1.0, 1.0, 1.0, 1.0 + e];
            match maxvol::invert(&a, 2, 1e-10, "species Li") {
                Ok(inv) => {
                    assert!(!singular);
                    assert!((inv.cond * e / 4.0 - 1.0).abs() < 0.01, "{}", inv.cond);
                    let set = SpeciesActiveSet {
                        m: 2,
                        rows: a.to_vec(),
                        inverse: inv.inv,
                        source: vec![RowId::default(); 2],
                        cond: inv.cond,
                        screen: LazyScreen::default(),
                    };
                    let mut notes = vec![];
                    condition_notes(&[("species Li".into(), &set)], &mut notes);
                    assert_eq!(notes.len(), 1);
                    assert!(notes[0].starts_with("species Li: the active-set matrix is nearly singular (condition number 2.0e10"), "{notes:?}");
                }
                Err(err) => {
                    assert!(singular);
                    assert!(err.to_string().starts_with("species Li: the active-set matrix is singular to working precision (LU pivot 1 is 5.0e-11"), "{err}");
                }
            }
        }
    }

    #[test]
    fn settings_are_checked() {
        let t = blobs(3, &[0.0], 30, 5, 1);
        let ms = [3usize];
        for bad in [
            Settings {
                tol: 0.9,
                ..Default::default()
            },
            Settings {
                max_passes: 1,
                ..Default::default()
            },
            Settings {
                min_cluster_factor: 0.5,
                ..Default::default()
            },
        ] {
            let e = build_global(
                &names(),
                &ms,
                &mut TableSource {
                    table: &t,
                    labels: &[],
                },
                &bad,
                false,
            );
            assert!(e.unwrap_err().to_string().starts_with("[uq.activeset]"));
        }
        let toml_text = "tol = 1.05\nbatch = 1000\n";
        let s: Settings = toml::from_str(toml_text).unwrap();
        assert_eq!(s.tol, 1.05);
        assert_eq!(s.max_iters, 300);
        assert!(toml::from_str::<Settings>("tolerance = 2").is_err());
    }

    // -----------------------------------------------------------------------------------------
    // Measurements on tests/data (not assertions): run with
    //   cargo test --release --lib uq::activeset::tests::measure -- --ignored --nocapture
    // -----------------------------------------------------------------------------------------

    use crate::basis::BasisConfig;
    use crate::model::fit::{FitConfig, fit};
    use crate::stats::metrics::{roc_auc, spearman};
    use std::time::Instant;

    fn read(path: &str) -> Vec<Structure> {
        let p = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
        crate::io::extxyz::read_file(&p, &Default::default()).unwrap()
    }

    /// Per-structure, per-atom values from a per-species row grader.
    fn per_atom(
        model: &Model,
        data: &[Structure],
        grade: &dyn Fn(usize, &[f64]) -> Vec<f64>,
    ) -> Vec<Vec<f64>> {
        let t = crate::uq::descriptor_table(model, data).unwrap();
        let mut out: Vec<Vec<f64>> = data.iter().map(|s| vec![f64::NAN; s.len()]).collect();
        for (s, sr) in t.per_species.iter().enumerate() {
            if sr.is_empty() {
                continue;
            }
            let g = grade(s, &sr.rows);
            for r in 0..sr.len() {
                out[sr.structure[r] as usize][sr.atom[r] as usize] = g[r];
            }
        }
        out
    }

    type Grader<'a> = Box<dyn Fn(usize, &[f64]) -> Vec<f64> + 'a>;

    fn global_grader(g: &GlobalActiveSets) -> Grader<'_> {
        Box::new(move |s, rows| {
            let m = g.species[s].m;
            let mut out = vec![0.0; rows.len() / m];
            g.species[s].gamma_batch(rows, &mut out, &mut GammaScratch::default());
            out
        })
    }

    fn local_grader(c: &ClusteredActiveSets) -> Grader<'_> {
        Box::new(move |s, rows| {
            let m = c.species[s].mean.len();
            let n = rows.len() / m;
            let (mut g, mut k) = (vec![0.0; n], vec![0u32; n]);
            c.gamma_local_batch(s, rows, &mut g, &mut k, &mut GammaScratch::new(m));
            g
        })
    }

    struct Row {
        name: String,
        auc: f64,
        auc_by_type: Vec<(String, f64)>,
        rho: f64,
        rho_in: f64,
        rho_novel: f64,
        median_in: f64,
        median_novel: f64,
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            f64::NAN
        } else {
            v[v.len() / 2]
        }
    }

    /// ROC-AUC of structure grades (in-distribution vs novel, overall and per novel
    /// config_type) and per-atom Spearman rho between the grade and |force error|.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_grader(
        name: &str,
        model: &Model,
        grade: &dyn Fn(usize, &[f64]) -> Vec<f64>,
        inside: &[Structure],
        novel: &[Structure],
        err_in: &[Vec<f64>],
        err_novel: &[Vec<f64>],
    ) -> Row {
        let gi = per_atom(model, inside, grade);
        let gn = per_atom(model, novel, grade);
        let smax = |g: &Vec<f64>| g.iter().copied().fold(0.0, f64::max);
        let si: Vec<f64> = gi.iter().map(smax).collect();
        let sn: Vec<f64> = gn.iter().map(smax).collect();
        let scores: Vec<f64> = si.iter().chain(&sn).copied().collect();
        let labels: Vec<bool> = si
            .iter()
            .map(|_| false)
            .chain(sn.iter().map(|_| true))
            .collect();
        let auc = roc_auc(&scores, &labels).unwrap();
        let mut types: Vec<String> = novel
            .iter()
            .map(|s| s.config_type.clone().unwrap_or_default())
            .collect();
        types.sort();
        types.dedup();
        let auc_by_type = types
            .iter()
            .map(|t| {
                let sel: Vec<f64> = sn
                    .iter()
                    .zip(novel)
                    .filter(|(_, s)| s.config_type.as_deref().unwrap_or_default() == t)
                    .map(|(g, _)| *g)
                    .collect();
                let sc: Vec<f64> = si.iter().chain(&sel).copied().collect();
                let lb: Vec<bool> = si
                    .iter()
                    .map(|_| false)
                    .chain(sel.iter().map(|_| true))
                    .collect();
                (t.clone(), roc_auc(&sc, &lb).unwrap())
            })
            .collect();
        let flat = |g: &[Vec<f64>]| g.iter().flatten().copied().collect::<Vec<f64>>();
        let (ai, an, ei, en) = (flat(&gi), flat(&gn), flat(err_in), flat(err_novel));
        let a: Vec<f64> = ai.iter().chain(&an).copied().collect();
        let e: Vec<f64> = ei.iter().chain(&en).copied().collect();
        Row {
            name: name.to_string(),
            auc,
            auc_by_type,
            rho: spearman(&a, &e).unwrap(),
            rho_in: spearman(&ai, &ei).unwrap(),
            rho_novel: spearman(&an, &en).unwrap(),
            median_in: median(ai),
            median_novel: median(an),
        }
    }

    fn print_rows(rows: &[Row]) {
        println!(
            "{:<34} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "estimator", "AUC", "rho all", "rho in", "rho nov", "med g in", "med g nov"
        );
        for r in rows {
            println!(
                "{:<34} {:>7.3} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>9.3}",
                r.name, r.auc, r.rho, r.rho_in, r.rho_novel, r.median_in, r.median_novel
            );
        }
        if rows.iter().any(|r| r.auc_by_type.len() > 1) {
            println!("ROC-AUC per novel config_type (vs the in-distribution structures):");
            print!("{:<34}", "estimator");
            for (t, _) in &rows[0].auc_by_type {
                print!(" {:>14}", &t[..t.len().min(14)]);
            }
            println!();
            for r in rows {
                print!("{:<34}", r.name);
                for (_, a) in &r.auc_by_type {
                    print!(" {a:>14.3}");
                }
                println!();
            }
        }
    }

    fn log_volume(rows: &[f64], m: usize) -> f64 {
        let a = faer::Mat::<f64>::from_fn(m, m, |i, j| rows[i * m + j]);
        let lu = a.partial_piv_lu();
        (0..m).map(|k| lu.U()[(k, k)].abs().ln()).sum()
    }

    #[test]
    #[ignore = "measurement: passes needed per batch size and candidate_gamma on liquid Li"]
    fn measure_candidate_threshold() {
        let train = read("li/train.xyz");
        let model = fit(
            &["Li".to_string()],
            &BasisConfig::default(),
            &FitConfig::default(),
            &train,
            &[],
            false,
        )
        .unwrap();
        let table = crate::uq::descriptor_table(&model, &train).unwrap();
        let sr = &table.per_species[0];
        let (n, m) = (sr.len(), sr.m);
        let ids: Vec<RowId> = (0..n)
            .map(|i| RowId {
                structure: 0,
                atom: i as u32,
            })
            .collect();
        for (batch, cand) in [
            (5000usize, 1.01),
            (5000, 0.9),
            (5000, 0.7),
            (5000, 0.5),
            (2000, 0.9),
            (2000, 0.7),
            (2000, 0.5),
            (500, 0.7),
            (500, 0.5),
        ] {
            let t = Instant::now();
            let mut mv = StreamingMaxVol::new(
                m,
                batch,
                Options {
                    candidate: cand,
                    ..Default::default()
                },
                "Li",
            )
            .unwrap();
            println!("batch {batch} candidate {cand}");
            for pass in 0..12 {
                mv.begin_pass();
                mv.push(&sr.rows, &ids).unwrap();
                let st = mv.end_pass().unwrap();
                let a = mv.clone().into_active_rows().unwrap();
                let mut g = vec![0.0; n];
                maxvol::gamma_batch(&a.inverse, m, &sr.rows, &mut g, &mut vec![]);
                println!(
                    "  pass {pass}: cand {} swaps {} logdet {:.4} max gamma now {:.4} t {:.2}",
                    st.candidates,
                    st.swaps,
                    log_volume(&a.rows, m),
                    g.iter().copied().fold(0.0, f64::max),
                    t.elapsed().as_secs_f64()
                );
                if st.verified {
                    break;
                }
            }
        }
    }

    #[test]
    #[ignore = "measurement on tests/data/li (about a minute); run with --ignored --nocapture"]
    fn measure_li() {
        let train = read("li/train.xyz");
        let valid = read("li/valid.xyz");
        let test = read("li/test.xyz");
        let novel = read("li/novel.xyz");
        let t = Instant::now();
        let model = fit(
            &["Li".to_string()],
            &BasisConfig::default(),
            &FitConfig::default(),
            &train,
            &valid,
            false,
        )
        .unwrap();
        println!(
            "fit: {} functions, {:.1} s",
            model.nfuncs(0),
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let table = crate::uq::descriptor_table(&model, &train).unwrap();
        println!(
            "descriptors of {} training atoms: {:.2} s",
            table.per_species[0].len(),
            t.elapsed().as_secs_f64()
        );
        // MaxVol timings.
        let sr = &table.per_species[0];
        let (n, m) = (sr.len(), sr.m);
        let t = Instant::now();
        let lu = maxvol::lu_pivots(&sr.rows, n, m, 1e-10);
        println!(
            "LU pivots of {n} x {m}: {:.2} s (smallest relative pivot {:.1e})",
            t.elapsed().as_secs_f64(),
            lu.smallest
        );
        let t = Instant::now();
        let dense = maxvol::maxvol(&sr.rows, n, m, &Options::default(), "species Li").unwrap();
        println!(
            "dense MaxVol: {:.2} s, {} swaps, converged {}, cond {:.1e}, log|det| {:.3}",
            t.elapsed().as_secs_f64(),
            dense.swaps.iters,
            dense.swaps.converged,
            dense.inverse.cond,
            log_volume(&maxvol::gather(&sr.rows, m, &dense.pivots), m)
        );
        let mut g = None;
        for batch in [20_000, 5_000, 2_000, 500] {
            let settings = Settings {
                batch,
                ..Default::default()
            };
            let t = Instant::now();
            let x = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
            let gt = x.gamma_table(&table);
            println!(
                "global active set, batch {batch:>5}: {:.2} s, {} passes, verified {}, log|det| {:.3}, max gamma on train {:.4}",
                t.elapsed().as_secs_f64(),
                x.info.passes,
                x.info.verified[0],
                log_volume(&x.species[0].rows, m),
                gt[0].iter().copied().fold(0.0, f64::max)
            );
            if g.is_none() {
                g = Some(x);
            }
        }
        let g = g.unwrap();
        // Batched and single-row gamma cost.
        let tt = crate::uq::descriptor_table(&model, &test).unwrap();
        let rows = &tt.per_species[0];
        let mut out = vec![0.0; rows.len()];
        let mut sc = GammaScratch::new(m);
        g.gamma_batch(0, &rows.rows, &mut out, &mut sc);
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            g.gamma_batch(0, &rows.rows, &mut out, &mut sc);
        }
        let per_b = t.elapsed().as_secs_f64() / (reps * rows.len()) as f64;
        let t = Instant::now();
        let mut acc = 0.0;
        for _ in 0..reps {
            for r in 0..rows.len() {
                acc += g.gamma(0, rows.row(r), &mut sc);
            }
        }
        let per_s = t.elapsed().as_secs_f64() / (reps * rows.len()) as f64;
        let pool = rayon::current_num_threads();
        println!(
            "gamma cost per atom (m = {m}, {} atoms, rayon threads {pool}): batched GEMM {:.2} us, single-row {:.2} us (checksum {acc:.3})",
            rows.len(),
            per_b * 1e6,
            per_s * 1e6
        );
        let t = Instant::now();
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| {
                for _ in 0..reps {
                    g.gamma_batch(0, &rows.rows, &mut out, &mut sc);
                }
            });
        println!(
            "  batched GEMM on one thread: {:.2} us/atom",
            t.elapsed().as_secs_f64() / (reps * rows.len()) as f64 * 1e6
        );
        // Grades.
        let err_in = crate::uq::force_errors(&model, &test).unwrap();
        let err_nov = crate::uq::force_errors(&model, &novel).unwrap();
        let mut rows_out = vec![evaluate_grader(
            "global gamma",
            &model,
            &*global_grader(&g),
            &test,
            &novel,
            &err_in,
            &err_nov,
        )];
        for k in 4..=8 {
            let t = Instant::now();
            let c = ClusteredActiveSets::build(
                &model,
                &table,
                &[],
                &Partition::KMeans(k),
                &Settings::default(),
                2024,
                false,
            )
            .unwrap();
            let counts: Vec<String> = c.species[0].counts.iter().map(|c| c.to_string()).collect();
            println!(
                "k-means K={k}: {:.1} s, clusters [{}], notes {:?}",
                t.elapsed().as_secs_f64(),
                counts.join(" "),
                c.info.notes
            );
            rows_out.push(evaluate_grader(
                &format!("gamma_local k-means K={k}"),
                &model,
                &*local_grader(&c),
                &test,
                &novel,
                &err_in,
                &err_nov,
            ));
        }
        print_rows(&rows_out);
    }

    #[test]
    #[ignore = "measurement on tests/data/almg (several minutes); run with --ignored --nocapture"]
    fn measure_almg() {
        let train = read("almg/train.xyz");
        let valid = read("almg/valid.xyz");
        let test = read("almg/test.xyz");
        let basis = BasisConfig {
            nmax: vec![6, 4, 2],
            lmax: vec![0, 2, 1],
            ..Default::default()
        };
        let species = vec!["Mg".to_string(), "Al".to_string()];
        let mut types: Vec<String> = train.iter().filter_map(|s| s.config_type.clone()).collect();
        types.sort();
        types.dedup();
        let only = std::env::var("ACEUQ_HOLDOUT").ok();
        let mut summary: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for h in types
            .iter()
            .filter(|t| only.as_deref().is_none_or(|o| o == t.as_str()))
        {
            let is_h = |s: &Structure| s.config_type.as_deref() == Some(h.as_str());
            let tr: Vec<Structure> = train.iter().filter(|s| !is_h(s)).cloned().collect();
            let va: Vec<Structure> = valid.iter().filter(|s| !is_h(s)).cloned().collect();
            let inside: Vec<Structure> = test.iter().filter(|s| !is_h(s)).cloned().collect();
            let novel: Vec<Structure> = train
                .iter()
                .chain(&valid)
                .chain(&test)
                .filter(|s| is_h(s))
                .cloned()
                .collect();
            let t = Instant::now();
            let model = fit(&species, &basis, &FitConfig::default(), &tr, &va, false).unwrap();
            let table = crate::uq::descriptor_table(&model, &tr).unwrap();
            println!(
                "\n== hold out {h}: fit {} functions/species on {} structures ({:.1} s); atoms Mg {} Al {}",
                model.nfuncs(0),
                tr.len(),
                t.elapsed().as_secs_f64(),
                table.per_species[0].len(),
                table.per_species[1].len()
            );
            let err_in = crate::uq::force_errors(&model, &inside).unwrap();
            let err_nov = crate::uq::force_errors(&model, &novel).unwrap();
            let fe = |e: &[Vec<f64>]| {
                let v: Vec<f64> = e.iter().flatten().copied().collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            println!(
                "mean |force error|: in-distribution {:.3} eV/Å, novel {:.3} eV/Å",
                fe(&err_in),
                fe(&err_nov)
            );
            let settings = Settings::default();
            let g = GlobalActiveSets::build(&model, &table, &settings, false).unwrap();
            let mut rows = vec![evaluate_grader(
                "global gamma",
                &model,
                &*global_grader(&g),
                &inside,
                &novel,
                &err_in,
                &err_nov,
            )];
            for k in [4, 6] {
                let c = ClusteredActiveSets::build(
                    &model,
                    &table,
                    &[],
                    &Partition::KMeans(k),
                    &settings,
                    2024,
                    false,
                )
                .unwrap();
                let cl: Vec<usize> = c.species.iter().map(|s| s.sets.len()).collect();
                rows.push(evaluate_grader(
                    &format!("gamma_local k-means K={k} {cl:?}"),
                    &model,
                    &*local_grader(&c),
                    &inside,
                    &novel,
                    &err_in,
                    &err_nov,
                ));
            }
            let labels = structure_labels(&tr);
            for f in [3.0, 1.5] {
                let st = Settings {
                    min_cluster_factor: f,
                    ..Default::default()
                };
                let c = ClusteredActiveSets::build(
                    &model,
                    &table,
                    &labels,
                    &Partition::ConfigType,
                    &st,
                    2024,
                    false,
                )
                .unwrap();
                let cl: Vec<usize> = c.species.iter().map(|s| s.sets.len()).collect();
                rows.push(evaluate_grader(
                    &format!("gamma_local config_type f={f} {cl:?}"),
                    &model,
                    &*local_grader(&c),
                    &inside,
                    &novel,
                    &err_in,
                    &err_nov,
                ));
            }
            print_rows(&rows);
            for r in &rows {
                let key = r.name.split(" [").next().unwrap().to_string();
                summary.entry(key).or_default().push((r.auc, r.rho));
            }
        }
        println!("\n== mean over held-out config_types");
        for (k, v) in &summary {
            let n = v.len() as f64;
            println!(
                "{k:<34} AUC {:.3}  rho {:.3}  (n = {})",
                v.iter().map(|x| x.0).sum::<f64>() / n,
                v.iter().map(|x| x.1).sum::<f64>() / n,
                v.len()
            );
        }
    }

    /// Rows made on the fly from real descriptors with multiplicative noise, never stored.
    struct Synthetic<'a> {
        base: &'a SpeciesRows,
        n: usize,
        chunk: usize,
        noise: f64,
    }

    impl RowSource for Synthetic<'_> {
        fn pass(
            &mut self,
            sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
        ) -> Result<(), UqError> {
            let m = self.base.m;
            let nb = self.base.len();
            for (c, c0) in (0..self.n).step_by(self.chunk).enumerate() {
                let c1 = (c0 + self.chunk).min(self.n);
                let mut rng = ChaCha8Rng::seed_from_u64(c as u64);
                let mut sr = SpeciesRows {
                    m,
                    ..Default::default()
                };
                sr.rows.reserve((c1 - c0) * m);
                for r in c0..c1 {
                    let b = self.base.row(r % nb);
                    for &v in b {
                        let x: f64 = StandardNormal.sample(&mut rng);
                        sr.rows.push(v * (1.0 + self.noise * x));
                    }
                    sr.structure.push(((r - c0) / 250) as u32);
                    sr.atom.push(((r - c0) % 250) as u32);
                }
                let t = DescriptorTable {
                    per_species: vec![sr],
                };
                sink(Chunk {
                    table: &t,
                    first: (c0 / 250) as u32,
                    labels: &[],
                })?;
            }
            Ok(())
        }
        fn rows_hint(&self) -> Option<u64> {
            Some(self.n as u64)
        }
    }

    #[test]
    #[ignore = "measurement: streaming MaxVol over 1e6 rows of m = 274 (minutes); ACEUQ_ROWS overrides the count"]
    fn measure_streaming_1e6() {
        let train = read("li/train.xyz");
        let model = fit(
            &["Li".to_string()],
            &BasisConfig::default(),
            &FitConfig::default(),
            &train,
            &[],
            false,
        )
        .unwrap();
        let table = crate::uq::descriptor_table(&model, &train).unwrap();
        let n: usize = std::env::var("ACEUQ_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let mut src = Synthetic {
            base: &table.per_species[0],
            n,
            chunk: 10_000,
            noise: 0.02,
        };
        // Cost of producing the rows alone (one pass, no MaxVol).
        let t = Instant::now();
        let mut count = 0usize;
        src.pass(&mut |c| {
            count += c.table.per_species[0].len();
            Ok(())
        })
        .unwrap();
        let produce = t.elapsed().as_secs_f64();
        let settings = Settings::default();
        let t = Instant::now();
        let g = GlobalActiveSets::build_from_source(&model, &mut src, &settings, false).unwrap();
        let total = t.elapsed().as_secs_f64();
        println!(
            "{count} rows x {}: producing one pass {produce:.1} s; build {total:.1} s in {} passes (verified {}), i.e. {:.1} s per pass net of producing, batch {}",
            table.per_species[0].m,
            g.info.passes,
            g.info.verified[0],
            (total - produce * g.info.passes as f64) / g.info.passes as f64,
            settings.batch
        );
        println!("notes: {:?}", g.info.notes);
    }
}
