//! Clustered local active sets (the `gamma_local` estimator, docs/clustered.md): per species, the
//! build rows split by neighbourhood chemistry (multi-species models), standardized and
//! partitioned (k-means or `config_type` labels), one active set of any rank per cluster;
//! queries, the builder, the cluster listing and persistence.

use super::partition::{
    ClusterMap, SpeciesStats, merge_cluster, merge_small, reciprocals, standardize,
};
use super::rowspace::{Gram, RANK_EPS, row_space_note};
use super::species::{GammaScratch, SpeciesActiveSet};
use super::{
    BuildInfo, Chunk, ClusterFeatures, Group, NO_LABEL, PassError, Route, RowSource, Settings,
    TableSource, condition_notes, run_passes, uq_err,
};
use crate::io::container::{Array, Container, ContainerError};
use crate::model::Model;
use crate::uq::kmeans::{self, nearest};
use crate::uq::maxvol::{MaxVolError, PassStats, StreamingMaxVol};
use crate::uq::persist::{bad, get_meta_lenient, put_f64, put_meta};
use crate::uq::{DescriptorTable, Partition, UqError};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const LOCAL: &str = "gamma_local";

/// What the builder needs to know about a species' descriptor columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FuncLayout {
    /// Row length.
    pub m: usize,
    /// Body order minus one of each column (empty: unknown, all alike).
    pub order: Vec<u8>,
    /// The two-body columns and their neighbour species: the neighbourhood chemistry of a row
    /// is the set of species whose two-body columns are not all zero (empty: one species).
    pub pair: Vec<(u32, u16)>,
}

impl FuncLayout {
    /// The layout of species `s` of `model`.
    pub fn of(model: &Model, s: usize) -> Self {
        let b = &model.bases[s];
        let m = model.nfuncs(s);
        let order: Vec<u8> = (0..m).map(|f| b.order(f).min(255) as u8).collect();
        let pair = if model.nspecies() > 1 {
            (0..m)
                .filter(|&f| b.order(f) == 1)
                .map(|f| (f as u32, b.function_labels(f)[0].z))
                .collect()
        } else {
            vec![]
        };
        FuncLayout { m, order, pair }
    }

    /// Rows of `m` numbers, nothing else known.
    pub fn plain(m: usize) -> Self {
        FuncLayout {
            m,
            order: vec![],
            pair: vec![],
        }
    }
}

/// Neighbourhood chemistry of row `b`: bit `t` set if the two-body columns of neighbour
/// species `t` carry more than a millionth of the row's two-body weight.
fn chemistry(pair: &[(u32, u16)], b: &[f64]) -> u32 {
    let mut w = [0.0f64; 32];
    let mut total = 0.0;
    for &(f, z) in pair {
        let v = b[f as usize].abs();
        w[(z as usize).min(31)] += v;
        total += v;
    }
    let mut mask = 0u32;
    for (t, &wt) in w.iter().enumerate() {
        if wt > 1e-6 * total {
            mask |= 1 << t;
        }
    }
    mask
}

/// Readable name of a chemistry mask ("Al+Mg neighbours").
pub(super) fn chemistry_name(mask: u32, names: &[String]) -> String {
    let v: Vec<&str> = (0..names.len())
        .filter(|&t| mask & (1 << t) != 0)
        .map(|t| names[t].as_str())
        .collect();
    if v.is_empty() {
        "no neighbours".into()
    } else {
        format!("{} neighbours", v.join("+"))
    }
}

/// The partition and active sets of one species.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpeciesClusters {
    /// Per-column mean of the build rows (standardization).
    pub mean: Vec<f64>,
    /// Per-column scale: the standard deviation (1 where a column is constant), times the
    /// body-order weight for [`ClusterFeatures::BodyOrder`](super::ClusterFeatures).
    pub std: Vec<f64>,
    /// `1 / std`: the standardization multiplies by it (a division per column would cost as
    /// much as the rest of the cluster assignment).
    pub inv_std: Vec<f64>,
    /// Row-major `p × m` whitening map applied after standardization
    /// ([`ClusterFeatures::Whitened`](super::ClusterFeatures)); empty: none (`p = m`).
    pub whiten: Vec<f64>,
    /// Centroids in the clustering space, row-major `k0 × p` (k-means centroids, or the mean of
    /// each label's rows).
    pub centroids: Vec<f64>,
    /// Final cluster of each centroid (small clusters are merged, so several centroids can
    /// share a cluster).
    pub centroid_cluster: Vec<u32>,
    /// Neighbourhood chemistry of each centroid (bit `t`: neighbours of species `t`); empty for
    /// one-species models. A row is assigned among the centroids of its own chemistry (all
    /// centroids if none has it).
    pub chem: Vec<u32>,
    /// Two-body columns and neighbour species (from the model, not stored).
    pub pair: Vec<(u32, u16)>,
    /// Label of each centroid for `config_type` partitions (empty for k-means).
    pub labels: Vec<String>,
    /// Build atoms per final cluster.
    pub counts: Vec<usize>,
    /// One active set per final cluster.
    pub sets: Vec<SpeciesActiveSet>,
    /// Per final cluster: the `config_type`s of its build atoms and their counts, most frequent
    /// first (empty if unknown).
    pub inside: Vec<Vec<(String, usize)>>,
}

impl SpeciesClusters {
    pub(super) fn m(&self) -> usize {
        self.mean.len()
    }

    /// Dimension of the clustering space.
    pub(super) fn dim(&self) -> usize {
        if self.whiten.is_empty() {
            self.m()
        } else {
            self.whiten.len() / self.m()
        }
    }

    fn k0(&self) -> usize {
        self.centroid_cluster.len()
    }

    /// Map descriptor `b` into the clustering space; returns the slice of `z` (length `2 m`)
    /// holding it.
    #[inline(always)]
    fn features<'z>(&self, b: &[f64], z: &'z mut [f64]) -> &'z [f64] {
        let m = self.m();
        let (zs, zw) = z.split_at_mut(m);
        let b = &b[..m];
        for j in 0..m {
            zs[j] = (b[j] - self.mean[j]) * self.inv_std[j];
        }
        if self.whiten.is_empty() {
            return &z[..m];
        }
        let p = self.dim();
        for (k, w) in self.whiten.chunks_exact(m).enumerate() {
            zw[k] = crate::simd::reduce::dot(w, zs);
        }
        &z[m..m + p]
    }

    /// Nearest centroid of descriptor `b` in the clustering space, among the centroids of its
    /// neighbourhood chemistry; `z` is scratch of length `2 m`.
    #[inline(always)]
    fn nearest_centroid(&self, b: &[f64], z: &mut [f64]) -> usize {
        let mask = if self.chem.is_empty() {
            None
        } else {
            Some(chemistry(&self.pair, b))
        };
        let d = self.dim();
        let f = self.features(b, z);
        match mask {
            Some(mask) if self.chem.contains(&mask) => {
                let mut best = (0, f64::INFINITY);
                for (k, ck) in self.centroids.chunks_exact(d).enumerate() {
                    if self.chem[k] == mask {
                        let dd = crate::simd::reduce::dist2(ck, f);
                        if dd < best.1 {
                            best = (k, dd);
                        }
                    }
                }
                best.0
            }
            _ => nearest(&self.centroids, d, f).0,
        }
    }

    /// The cluster of every row of `rows` (row-major, rows of `m`) into `cluster`: the same
    /// arithmetic as [`SpeciesClusters::nearest_centroid`], compiled for 256-bit vectors where
    /// the CPU has them (division and the distance sums vectorize; the results are bitwise the
    /// same, there being no fused operations).
    fn assign(&self, rows: &[f64], cluster: &mut [u32], z: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::simd::features().avx2() {
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

/// Clustered local D-optimality (the `gamma_local` estimator).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusteredActiveSets {
    /// How configuration space was partitioned.
    pub partition: Partition,
    /// The k-means feature space.
    pub features: ClusterFeatures,
    /// Per species.
    pub species: Vec<SpeciesClusters>,
    /// How it was built.
    pub info: BuildInfo,
}

impl Default for ClusteredActiveSets {
    fn default() -> Self {
        ClusteredActiveSets {
            partition: Partition::KMeans(1),
            features: ClusterFeatures::default(),
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
    /// Species names (chemistry in label keys).
    names: &'a [String],
}

impl Route for ClusterRoute<'_> {
    fn route(&self, s: usize, row: &[f64], label: Option<&str>, z: &mut [f64]) -> Option<usize> {
        let sc = &self.species[s];
        let c = if self.labelled {
            *self.by_label[s].get(&label_key(label, &sc.pair, row, self.names))?
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
        let layouts: Vec<FuncLayout> = (0..model.nspecies())
            .map(|s| FuncLayout::of(model, s))
            .collect();
        build_clustered(
            &model.species,
            &layouts,
            source,
            partition,
            settings,
            seed,
            progress,
        )
    }

    /// Build from rows of any origin described by `layouts` (one per species `names`), e.g. a
    /// pacemaker potential's projections ([`FuncLayout::plain`]: no chemistry split).
    pub fn build_rows(
        names: &[String],
        layouts: &[FuncLayout],
        source: &mut dyn RowSource,
        partition: &Partition,
        settings: &Settings,
        seed: u64,
        progress: bool,
    ) -> Result<Self, UqError> {
        build_clustered(names, layouts, source, partition, settings, seed, progress)
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
                (
                    sc.sets[c].gamma_with(b, &mut scratch.acc, &mut scratch.proj),
                    c,
                )
            }
            Partition::ConfigType => {
                let mut best = (f64::INFINITY, 0);
                for (c, set) in sc.sets.iter().enumerate() {
                    let g = set.gamma_with(b, &mut scratch.acc, &mut scratch.proj);
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
                    set.gamma_selected(
                        rows,
                        &scratch.idx,
                        &mut scratch.tmp,
                        &mut scratch.screen,
                        &mut scratch.proj,
                    );
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
                    // The per-atom rule (`gamma_local`): the smallest grade, and NaN (a row
                    // with a NaN entry grades NaN in every set) rather than +inf.
                    for r in 0..n {
                        if tmp[r] < gamma[r] || (tmp[r].is_nan() && gamma[r].is_infinite()) {
                            gamma[r] = tmp[r];
                            cluster[r] = k as u32;
                        }
                    }
                }
                scratch.tmp = tmp;
            }
        }
    }

    /// One line per (species, cluster): build atoms, rank of its rows (of `m`), active-set
    /// rows, neighbourhood chemistry, the `config_type`s inside (at most three, most frequent
    /// first) and the cutoffs `cut(species, cluster)` gives (lower, upper), with a header.
    pub fn cluster_table(&self, cut: &dyn Fn(usize, usize) -> Option<(f64, f64)>) -> String {
        let names = &self.info.species;
        let mut out = format!(
            "{:<8} {:>7} {:>7} {:>9} {:>6}  {:<22} {:>10} {:>10}  config_types inside\n",
            "species", "cluster", "atoms", "rank", "active", "chemistry", "lower", "upper"
        );
        for (s, sc) in self.species.iter().enumerate() {
            let name = names.get(s).cloned().unwrap_or(s.to_string());
            for (k, set) in sc.sets.iter().enumerate() {
                let mut masks: Vec<u32> = (0..sc.k0())
                    .filter(|&c| sc.centroid_cluster[c] as usize == k)
                    .filter_map(|c| sc.chem.get(c).copied())
                    .collect();
                masks.sort_unstable();
                masks.dedup();
                let chem = if masks.is_empty() {
                    "-".to_string()
                } else {
                    masks
                        .iter()
                        .map(|&c| chemistry_name(c, names).replace(" neighbours", ""))
                        .collect::<Vec<_>>()
                        .join(" | ")
                };
                let inside = sc.inside.get(k).map_or("-".to_string(), |v| {
                    let total: usize = v.iter().map(|x| x.1).sum();
                    let mut parts: Vec<String> = v
                        .iter()
                        .take(3)
                        .map(|(l, n)| {
                            format!("{l} {:.0}%", 100.0 * *n as f64 / total.max(1) as f64)
                        })
                        .collect();
                    if v.len() > 3 {
                        parts.push(format!("+{} more", v.len() - 3));
                    }
                    parts.join(", ")
                });
                let (lo, hi) = match cut(s, k) {
                    Some((lo, hi)) => (format!("{lo:.4}"), format!("{hi:.4}")),
                    None => ("-".into(), "-".into()),
                };
                out.push_str(&format!(
                    "{:<8} {:>7} {:>7} {:>9} {:>6}  {:<22} {:>10} {:>10}  {}\n",
                    name,
                    k,
                    sc.counts.get(k).copied().unwrap_or(0),
                    format!("{}/{}", set.m, sc.m()),
                    set.m,
                    chem,
                    lo,
                    hi,
                    inside
                ));
            }
        }
        out
    }

    /// Store into a model file container.
    pub fn save(&self, c: &mut Container) {
        let mut labels = toml::Table::new();
        for (s, sc) in self.species.iter().enumerate() {
            let p = format!("uq.{LOCAL}.{s}");
            let m = sc.m();
            let k0 = sc.k0();
            put_f64(c, &format!("{p}.mean"), vec![m], &sc.mean);
            put_f64(c, &format!("{p}.std"), vec![m], &sc.std);
            put_f64(
                c,
                &format!("{p}.centroids"),
                vec![k0, sc.dim()],
                &sc.centroids,
            );
            if !sc.whiten.is_empty() {
                put_f64(c, &format!("{p}.whiten"), vec![sc.dim(), m], &sc.whiten);
            }
            if !sc.chem.is_empty() {
                c.put(&format!("{p}.chem"), vec![k0], Array::U32(sc.chem.clone()));
            }
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
            features: self.features.name().to_string(),
            inside: self
                .species
                .iter()
                .enumerate()
                .map(|(s, sc)| {
                    (
                        self.info.species.get(s).cloned().unwrap_or(s.to_string()),
                        sc.inside.clone(),
                    )
                })
                .collect(),
            build: self.info.clone(),
        };
        put_meta(c, LOCAL, &meta);
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let layouts: Vec<FuncLayout> = (0..model.nspecies())
            .map(|s| FuncLayout::of(model, s))
            .collect();
        Self::load_rows(path, c, &model.species, &layouts)
    }

    /// [`ClusteredActiveSets::load`] for rows described by `layouts` (one per species `names`),
    /// e.g. a pacemaker potential's projections ([`FuncLayout::plain`]).
    pub fn load_rows(
        path: &Path,
        c: &Container,
        names: &[String],
        layouts: &[FuncLayout],
    ) -> Result<Option<Self>, ContainerError> {
        let Some(meta) = get_meta_lenient::<LocalMeta>(path, c, LOCAL)? else {
            if c.arrays.keys().any(|k| k.starts_with("uq.gamma_local.")) {
                return Err(bad(
                    path,
                    "arrays 'uq.gamma_local.*' are present but the [uq.gamma_local] metadata is missing (file edited?)",
                ));
            }
            return Ok(None);
        };
        if meta.build.species != names {
            return Err(bad(
                path,
                format!(
                    "[uq.{LOCAL}] is for species [{}] but the model has [{}] (file edited?)",
                    meta.build.species.join(", "),
                    names.join(", ")
                ),
            ));
        }
        let partition = match meta.partition.as_str() {
            "kmeans" => Partition::KMeans(meta.k),
            "config_type" => Partition::ConfigType,
            other => {
                return Err(bad(
                    path,
                    format!(
                        "[uq.gamma_local] partition '{other}' is unknown (kmeans or config_type)"
                    ),
                ));
            }
        };
        let ns = names.len();
        if meta.clusters.len() != ns || meta.centroids.len() != ns {
            return Err(bad(
                path,
                format!("[uq.gamma_local] clusters/centroids must list {ns} species"),
            ));
        }
        let mut species = vec![];
        for s in 0..ns {
            let m = layouts[s].m;
            let p = format!("uq.{LOCAL}.{s}");
            let (kk, k0) = (meta.clusters[s], meta.centroids[s]);
            if kk == 0 || k0 < kk {
                return Err(bad(
                    path,
                    format!(
                        "[uq.gamma_local] species {}: {kk} clusters from {k0} centroids is impossible",
                        names[s]
                    ),
                ));
            }
            let mean = c.f64(path, &format!("{p}.mean"), m)?;
            let std = c.f64(path, &format!("{p}.std"), m)?;
            let wn = format!("{p}.whiten");
            let whiten = if c.arrays.contains_key(&wn) {
                let w = c.f64_any(path, &wn)?;
                if w.is_empty() || w.len() % m != 0 || w.len() > m * m {
                    return Err(bad(
                        path,
                        format!("array '{wn}' must hold p × {m} numbers (1 <= p <= {m})"),
                    ));
                }
                w
            } else {
                vec![]
            };
            let dim = if whiten.is_empty() {
                m
            } else {
                whiten.len() / m
            };
            let centroids = c.f64(path, &format!("{p}.centroids"), k0 * dim)?;
            let chn = format!("{p}.chem");
            let chem = if c.arrays.contains_key(&chn) {
                let v = c.u32_any(path, &chn)?;
                if v.len() != k0 {
                    return Err(bad(
                        path,
                        format!("array '{chn}' has {} numbers, expected {k0}", v.len()),
                    ));
                }
                v
            } else {
                vec![]
            };
            let cc_name = format!("{p}.centroid_cluster");
            let centroid_cluster = c.u32_any(path, &cc_name)?;
            let counts_name = format!("{p}.counts");
            let counts = c.u32_any(path, &counts_name)?;
            if centroid_cluster.len() != k0 {
                return Err(bad(
                    path,
                    format!(
                        "array '{cc_name}' has {} numbers, expected {k0}",
                        centroid_cluster.len()
                    ),
                ));
            }
            if counts.len() != kk {
                return Err(bad(
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
                    return Err(bad(
                        path,
                        format!("array '{cc_name}' refers to cluster {x}, but there are {kk}"),
                    ));
                }
                used[x as usize] = true;
            }
            if let Some(k) = used.iter().position(|u| !u) {
                return Err(bad(
                    path,
                    format!("array '{cc_name}': cluster {k} has no centroid"),
                ));
            }
            if std.iter().any(|v| !(v.is_finite() && *v > 0.0))
                || mean
                    .iter()
                    .chain(&centroids)
                    .chain(&whiten)
                    .any(|v| !v.is_finite())
            {
                return Err(bad(
                    path,
                    format!(
                        "species {}: standardization or centroids are not finite and positive (arrays '{p}.std', '{p}.mean', '{p}.centroids')",
                        names[s]
                    ),
                ));
            }
            let labels: Vec<String> = match meta.labels.get(&names[s]) {
                Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| {
                    bad(path, format!("[uq.gamma_local.labels]: {}", e.message()))
                })?,
                None => vec![],
            };
            if partition == Partition::ConfigType && labels.len() != k0 {
                return Err(bad(
                    path,
                    format!(
                        "[uq.gamma_local.labels] species {}: {} labels for {k0} centroids",
                        names[s],
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
                whiten,
                chem,
                pair: layouts[s].pair.clone(),
                inside: meta
                    .inside
                    .get(&names[s])
                    .filter(|v| v.len() == kk)
                    .cloned()
                    .unwrap_or_default(),
                centroids,
                centroid_cluster,
                labels,
                counts: counts.iter().map(|&x| x as usize).collect(),
                sets,
            });
        }
        let features = match meta.features.as_str() {
            "" | "standardized" => ClusterFeatures::Standardized,
            "body_order" => ClusterFeatures::BodyOrder,
            "whitened" => ClusterFeatures::Whitened,
            other => {
                return Err(bad(
                    path,
                    format!(
                        "[uq.gamma_local] features '{other}' is unknown (standardized, body_order or whitened)"
                    ),
                ));
            }
        };
        Ok(Some(ClusteredActiveSets {
            partition,
            features,
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
    /// k-means feature space.
    features: String,
    /// Per species name, per cluster: `[config_type, atoms]` pairs.
    inside: BTreeMap<String, Vec<Vec<(String, usize)>>>,
    build: BuildInfo,
}
pub(super) fn build_clustered(
    names: &[String],
    layouts: &[FuncLayout],
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
    let ms: Vec<usize> = layouts.iter().map(|l| l.m).collect();
    let mut stats: Vec<SpeciesStats> = ms.iter().map(|&m| SpeciesStats::new(m)).collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..ns)
        .map(|s| {
            ChaCha8Rng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(s as u64 + 1)))
        })
        .collect();
    let cap = settings.kmeans_sample;
    let pb = crate::progress::Bar::atoms(source.rows_hint(), progress);
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
                    let l = label_key(chunk.label(sr.structure[r]), &layouts[s].pair, row, names);
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
        // Fewer atoms than functions is fine: such clusters are graded in their row space.
        settings.enough_atoms(&names[s], st.n)?;
        let (mean, mut std) = st.mean_std();
        if settings.cluster_features == ClusterFeatures::BodyOrder {
            body_order_weights(&layouts[s].order, &mut std);
        }
        let inv_std = reciprocals(&std);
        let mut sc = SpeciesClusters {
            mean,
            std,
            inv_std,
            pair: layouts[s].pair.clone(),
            ..Default::default()
        };
        if labelled {
            // Label centroids: the standardized mean of each label's rows.
            let mut z = vec![];
            for (label, (count, sum)) in &st.labels {
                for j in 0..m {
                    z.push((sum[j] / *count as f64 - sc.mean[j]) * sc.inv_std[j]);
                }
                sc.counts.push(*count);
                sc.labels.push(label.clone());
            }
            sc.centroids = z;
        } else {
            let k = match partition {
                Partition::KMeans(k) => *k,
                Partition::ConfigType => unreachable!("labelled"),
            };
            super::check_cluster_count(k, settings.min_cluster_atoms, st.n, &names[s])
                .map_err(UqError::Data)?;
            let z = standardize(&st.sample, m, &sc.mean, &sc.inv_std);
            if settings.cluster_features == ClusterFeatures::Whitened {
                sc.whiten = whitening(&z, st.sample_n, m);
            }
            let p = sc.dim();
            let f = if sc.whiten.is_empty() {
                z
            } else {
                let mut f = Vec::with_capacity(st.sample_n * p);
                for row in z.chunks_exact(m) {
                    f.extend(
                        sc.whiten
                            .chunks_exact(m)
                            .map(|w| crate::simd::reduce::dot(w, row)),
                    );
                }
                f
            };
            // Neighbourhood chemistry first (multi-species), then k-means within each.
            let chem: Vec<u32> = if sc.pair.is_empty() {
                vec![0; st.sample_n]
            } else {
                st.sample
                    .chunks_exact(m)
                    .map(|row| chemistry(&sc.pair, row))
                    .collect()
            };
            let mut classes: Vec<u32> = chem.clone();
            classes.sort_unstable();
            classes.dedup();
            for &class in &classes {
                let idx: Vec<usize> = (0..st.sample_n).filter(|&i| chem[i] == class).collect();
                let sub: Vec<f64> = idx
                    .iter()
                    .flat_map(|&i| f[i * p..(i + 1) * p].iter().copied())
                    .collect();
                let (c, assign) = kmeans::kmeans(
                    &sub,
                    idx.len(),
                    p,
                    k.min(idx.len()).max(1),
                    settings.kmeans_iters,
                    &kmeans::Options::CLUSTERS,
                    &mut rngs[s],
                );
                let first = sc.counts.len();
                sc.counts.extend(std::iter::repeat_n(0, c.len() / p));
                for &a in &assign {
                    sc.counts[first + a] += 1;
                }
                sc.centroids.extend_from_slice(&c);
                if !sc.pair.is_empty() {
                    sc.chem.extend(std::iter::repeat_n(class, c.len() / p));
                }
            }
            if classes.len() > 1 {
                let list: Vec<String> = classes
                    .iter()
                    .map(|&c| {
                        format!(
                            "{} ({} atoms)",
                            chemistry_name(c, names),
                            chem.iter().filter(|&&x| x == c).count()
                        )
                    })
                    .collect();
                notes.push(format!(
                    "species {}: atoms split by neighbourhood chemistry before k-means{}: {}",
                    names[s],
                    if st.sample_n < st.n { " (sample)" } else { "" },
                    list.join(", ")
                ));
            }
        }
        species.push(sc);
    }
    // Exact counts when k-means saw only a sample.
    if !labelled && stats.iter().any(|st| st.sample_n < st.n) {
        for sc in species.iter_mut() {
            sc.counts.iter_mut().for_each(|c| *c = 0);
        }
        let mut z = vec![0.0; 2 * ms.iter().copied().max().unwrap_or(0)];
        source.pass(&mut |chunk: Chunk<'_>| {
            for (s, sr) in chunk.table.per_species.iter().enumerate() {
                let sc = &mut species[s];
                for r in 0..sr.len() {
                    let k = sc.nearest_centroid(sr.row(r), &mut z);
                    sc.counts[k] += 1;
                }
            }
            Ok(())
        })?;
    }
    // Merge clusters too small to mean anything (not merely smaller than the basis: a cluster
    // of any rank gets its own active set in its own row space).
    let orig_counts: Vec<Vec<usize>> = species.iter().map(|sc| sc.counts.clone()).collect();
    for (s, sc) in species.iter_mut().enumerate() {
        let min_rows = settings.min_cluster_atoms;
        let names_of = |k: usize, sc: &SpeciesClusters| {
            if sc.labels.is_empty() {
                format!("k-means cluster {k}")
            } else {
                format!("config_type '{}'", sc.labels[k])
            }
        };
        let (map, counts, msgs) = merge_small(&sc.centroids, &sc.counts, sc.dim(), min_rows);
        for (from, into, n_from, dist) in msgs {
            notes.push(format!(
                "species {}: {} has {n_from} atoms, fewer than min_cluster_atoms = {min_rows}: merged into {} (nearest centroid, standardized distance {dist:.2})",
                names[s],
                names_of(from, sc),
                names_of(into, sc)
            ));
        }
        sc.centroid_cluster = map;
        sc.counts = counts;
    }
    let inv_rms: Vec<Vec<f64>> = stats.iter().map(|st| st.inv_rms()).collect();
    let live: Vec<Vec<bool>> = stats.iter().map(|st| st.live()).collect();
    // One streaming MaxVol per (species, cluster), in the cluster's row space. A cluster that
    // spans every dimension is first tried at full rank (exactly the classic grade); if its
    // rows prove numerically rank-deficient, it is projected, dropping ever more of its
    // thinnest directions. Only a cluster whose rows are all zero is merged.
    let (groups, base, passes, inside) = 'build: loop {
        let by_label = label_maps(&species);
        let route = ClusterRoute {
            species: &species,
            base: cluster_base(&species),
            by_label,
            labelled,
            names,
        };
        let mut grams = row_spaces(&species, source, &route, &inv_rms, &live)?;
        let mut eps: Vec<Option<f64>> = grams
            .iter_mut()
            .map(|(gram, _)| {
                if gram.may_be_full_rank() {
                    None
                } else {
                    Some(RANK_EPS)
                }
            })
            .collect();
        loop {
            let (mut groups, base, gname) =
                make_groups(&species, names, settings, &mut grams, &eps, &inv_rms)?;
            if let Some(g) = groups
                .iter()
                .position(|g| g.proj.as_ref().is_some_and(|p| p.rank == 0))
            {
                let s = groups[g].species;
                let k = g - base[s];
                if species[s].counts.len() == 1 {
                    return Err(UqError::Data(format!(
                        "{}: every descriptor row is zero (atoms without neighbours?): no active set can be built",
                        gname[g]
                    )));
                }
                let sc = &mut species[s];
                let map = ClusterMap {
                    m: sc.dim(),
                    centroid_cluster: &mut sc.centroid_cluster,
                    centroids: &sc.centroids,
                    counts: &mut sc.counts,
                };
                let (into, dist) = merge_cluster(map, &orig_counts[s], k);
                notes.push(format!(
                    "{}: every descriptor row is zero: merged into {} (nearest centroid, standardized distance {dist:.2})",
                    gname[g],
                    gname[base[s] + into]
                ));
                continue 'build;
            }
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
                Ok(p) => {
                    // A full-rank set singular to working precision is graded in its row
                    // space, as a species' global set is (see `build_global`).
                    let singular: Vec<usize> = (0..groups.len())
                        .filter(|&g| {
                            eps[g].is_none()
                                && groups[g]
                                    .mv
                                    .cond()
                                    .is_some_and(|c| c.is_nan() || c > settings.max_condition)
                        })
                        .collect();
                    if !singular.is_empty() {
                        for &g in &singular {
                            notes.push(format!(
                                "{}: the full set MaxVol found is singular to working precision (condition number {:.1e} after column scaling), so it is graded in its row space",
                                gname[g],
                                groups[g].mv.cond().unwrap_or(f64::NAN)
                            ));
                            eps[g] = Some(RANK_EPS);
                        }
                        continue;
                    }
                    for (g, e) in eps.iter().enumerate() {
                        if let (Some(e), Some(p)) = (e, &groups[g].proj) {
                            notes.push(row_space_note(&gname[g], grams[g].0.n, p, *e));
                        }
                    }
                    let inside: Vec<Vec<(String, usize)>> =
                        grams.iter().map(|(g, _)| g.inside()).collect();
                    break 'build (groups, base, p, inside);
                }
                Err(PassError::Groups(errs))
                    if errs.iter().all(|(_, e)| {
                        matches!(
                            e,
                            MaxVolError::TooFewRows { .. }
                                | MaxVolError::ZeroColumn { .. }
                                | MaxVolError::RankDeficient { .. }
                        )
                    }) && errs.iter().all(|(g, _)| eps[*g].is_none_or(|e| e < 1e-2)) =>
                {
                    for (g, _) in &errs {
                        eps[*g] = Some(eps[*g].map_or(RANK_EPS, |e| e * 100.0));
                    }
                }
                Err(e) => return Err(e.into_uq()),
            }
        }
    };
    let mut atoms = vec![0; ns];
    let mut verified = vec![true; ns];
    for g in &groups {
        atoms[g.species] += g.last.seen;
        verified[g.species] &= g.verified;
    }
    for (k, (g, ins)) in groups.into_iter().zip(inside).enumerate() {
        species[g.species].inside.push(ins);
        // Clusters never go into an .asi (square_inverse): keep only their row space.
        let set = SpeciesActiveSet::from_rows(
            g.mv.into_active_rows().map_err(uq_err)?,
            g.proj.map(|p| p.thin()),
        );
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
        features: settings.cluster_features,
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

/// First group (cluster) index of each species.
fn cluster_base(species: &[SpeciesClusters]) -> Vec<usize> {
    let mut base = vec![];
    let mut n = 0;
    for sc in species {
        base.push(n);
        n += sc.counts.len();
    }
    base
}

/// Label -> final cluster, per species (label partitions).
fn label_maps(species: &[SpeciesClusters]) -> Vec<BTreeMap<String, usize>> {
    species
        .iter()
        .map(|sc| {
            sc.labels
                .iter()
                .enumerate()
                .map(|(c, l)| (l.clone(), sc.centroid_cluster[c] as usize))
                .collect()
        })
        .collect()
}

/// The Gram matrix of every final cluster's scaled rows (one pass), with its species.
fn row_spaces(
    species: &[SpeciesClusters],
    source: &mut dyn RowSource,
    route: &ClusterRoute<'_>,
    inv_rms: &[Vec<f64>],
    live: &[Vec<bool>],
) -> Result<Vec<(Gram, usize)>, UqError> {
    let mut grams: Vec<(Gram, usize)> = vec![];
    for (s, sc) in species.iter().enumerate() {
        for _ in 0..sc.counts.len() {
            grams.push((Gram::with_live(sc.m(), live[s].clone()), s));
        }
    }
    let maxm = species.iter().map(|s| s.m()).max().unwrap_or(0);
    let mut z = vec![0.0; 2 * maxm];
    source.pass(&mut |chunk: Chunk<'_>| {
        for (s, sr) in chunk.table.per_species.iter().enumerate() {
            for r in 0..sr.len() {
                let row = sr.row(r);
                let label = chunk.label(sr.structure[r]);
                let g = route.route(s, row, label, &mut z).ok_or_else(|| {
                    UqError::Data(format!(
                        "config_type '{}' was not in the first pass over the data (the data changed between passes?)",
                        label.unwrap_or(NO_LABEL)
                    ))
                })?;
                grams[g].0.push(row, &inv_rms[s]);
                grams[g].0.count(label.unwrap_or(NO_LABEL));
            }
        }
        Ok(())
    })?;
    Ok(grams)
}

/// One streaming MaxVol per (species, final cluster): at full rank where `eps[g]` is `None`,
/// else in the row space of the cluster's rows with singular values below `eps[g]` of the
/// largest dropped. Returns the groups, the first group of each species, and the groups' names.
fn make_groups(
    species: &[SpeciesClusters],
    names: &[String],
    settings: &Settings,
    grams: &mut [(Gram, usize)],
    eps: &[Option<f64>],
    inv_rms: &[Vec<f64>],
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
            let g = groups.len();
            let proj = match eps[g] {
                None => None,
                Some(e) => {
                    // A projection at this tolerance, or (if the rows still span everything)
                    // one that drops the thinnest direction.
                    let m = sc.m();
                    let r = grams[g].0.supported_rank();
                    let p = grams[g].0.projection(&inv_rms[s], e, r);
                    Some(p.unwrap_or_else(|| {
                        grams[g]
                            .0
                            .projection(&inv_rms[s], e, m - 1)
                            .expect("rank below m")
                    }))
                }
            };
            let dim = proj.as_ref().map_or(sc.m(), |p| p.rank);
            groups.push(Group {
                species: s,
                mv: StreamingMaxVol::new(dim.max(1), settings.batch, opts, &what)
                    .map_err(uq_err)?,
                verified: false,
                last: PassStats::default(),
                proj,
            });
            gname.push(what);
        }
    }
    Ok((groups, base, gname))
}

/// The label a row is clustered under in a `config_type` partition: the label itself, and for
/// multi-species models its neighbourhood chemistry.
fn label_key(label: Option<&str>, pair: &[(u32, u16)], row: &[f64], names: &[String]) -> String {
    let l = label.unwrap_or(NO_LABEL);
    if pair.is_empty() {
        l.to_string()
    } else {
        format!("{l} [{}]", chemistry_name(chemistry(pair, row), names))
    }
}

/// Scale `std` so that every body order's block of columns has the same total variance after
/// standardization: column `j` of a block of `n` columns is divided by `sqrt(n)`.
fn body_order_weights(order: &[u8], std: &mut [f64]) {
    if order.len() != std.len() {
        return;
    }
    let mut count = [0usize; 256];
    for &o in order {
        count[o as usize] += 1;
    }
    for (sd, &o) in std.iter_mut().zip(order) {
        *sd *= (count[o as usize] as f64).sqrt();
    }
}

/// Whitening map of standardized rows `z` (`n × m`): the leading principal components that
/// hold 95% of the variance (at most 20), each divided by its standard deviation. Row-major
/// `p × m`.
fn whitening(z: &[f64], n: usize, m: usize) -> Vec<f64> {
    let mut cov = nalgebra::DMatrix::<f64>::zeros(m, m);
    let x = nalgebra::DMatrix::from_row_slice(n, m, z);
    let mean = x.row_mean();
    let xc = nalgebra::DMatrix::from_fn(n, m, |i, j| x[(i, j)] - mean[j]);
    cov.gemm_tr(1.0 / n.max(1) as f64, &xc, &xc, 0.0);
    let eig = cov.symmetric_eigen();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let total: f64 = eig.eigenvalues.iter().map(|v| v.max(0.0)).sum();
    let mut acc = 0.0;
    let mut w = vec![];
    for &i in order.iter().take(20) {
        let l = eig.eigenvalues[i];
        if l.is_nan() || l <= 1e-12 * total {
            break;
        }
        let inv = 1.0 / l.sqrt();
        w.extend((0..m).map(|j| eig.eigenvectors[(j, i)] * inv));
        acc += l;
        if acc >= 0.95 * total {
            break;
        }
    }
    if w.is_empty() {
        w = (0..m).map(|j| if j == 0 { 1.0 } else { 0.0 }).collect();
    }
    w
}
