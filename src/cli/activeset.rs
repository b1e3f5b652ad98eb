//! `aceuq activeset`: (re)build a model's active sets (global `gamma`, optionally clustered
//! `gamma_local`) from data, streaming: frames are read and their descriptors computed chunk by
//! chunk, so the data never sit in memory at once.

use crate::io::extxyz::{ReadOptions, Reader};
use crate::model::Model;
use crate::uq::activeset::{
    Chunk, ClusteredActiveSets, GlobalActiveSets, RowSource, Settings, SpeciesActiveSet,
};
use crate::uq::{Partition, UqError};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// A label to cluster by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum ClusterLabel {
    /// The `config_type` of each frame.
    ConfigType,
}

/// Arguments of `aceuq activeset`.
#[derive(clap::Args, Debug)]
pub struct ActiveSetArgs {
    /// Model file (*.aceuq).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Data the active sets must cover (extended XYZ; energies and forces are not needed); may
    /// be repeated. Give all of it (training data and any new data): the sets are rebuilt.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Candidate rows per MaxVol batch, per species and cluster (memory ~ 16 × (N + m) × m bytes).
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Output model file (default: overwrite --model, atomically).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Also build clustered local active sets with K k-means clusters per species.
    #[arg(long, conflicts_with = "clusters_by", allow_negative_numbers = true)]
    pub clusters: Option<usize>,
    /// Also build clustered local active sets, one cluster per label.
    #[arg(long, value_enum)]
    pub clusters_by: Option<ClusterLabel>,
    /// MaxVol tolerance (> 1) [default: 1.01].
    #[arg(long, allow_hyphen_values = true)]
    pub tol: Option<f64>,
    /// Maximum passes over the data.
    #[arg(long, allow_negative_numbers = true)]
    pub max_passes: Option<usize>,
    /// Merge clusters with fewer atoms than this (default 30): too few to mean anything.
    #[arg(long, allow_negative_numbers = true)]
    pub min_cluster_atoms: Option<usize>,
    /// Seed for k-means.
    #[arg(long, default_value_t = 2024, allow_negative_numbers = true)]
    pub seed: u64,
    /// Frames per descriptor chunk.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    pub chunk: usize,
}

/// Frames of extended XYZ files streamed in chunks, descriptors computed per chunk.
pub struct XyzSource<'a> {
    pub model: &'a Model,
    pub files: &'a [PathBuf],
    pub opts: ReadOptions,
    /// Frames per chunk.
    pub chunk: usize,
    /// Atoms seen in the last complete pass (for progress bars).
    pub atoms: Option<u64>,
    /// Frames seen in the last complete pass.
    pub frames: usize,
}

impl<'a> XyzSource<'a> {
    /// A source over `files` with default reading options.
    pub fn new(model: &'a Model, files: &'a [PathBuf], chunk: usize) -> Self {
        XyzSource {
            model,
            files,
            opts: ReadOptions::default(),
            chunk: chunk.max(1),
            atoms: None,
            frames: 0,
        }
    }
}

impl RowSource for XyzSource<'_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        let mut first = 0u32;
        let mut atoms = 0u64;
        let mut buf: Vec<crate::Structure> = Vec::with_capacity(self.chunk);
        let mut emit = |buf: &mut Vec<crate::Structure>, first: &mut u32| -> Result<(), UqError> {
            if buf.is_empty() {
                return Ok(());
            }
            let table = crate::uq::descriptor_table(self.model, buf)?;
            let labels = crate::uq::activeset::structure_labels(buf);
            sink(Chunk {
                table: &table,
                first: *first,
                labels: &labels,
            })?;
            *first += buf.len() as u32;
            buf.clear();
            Ok(())
        };
        for f in self.files {
            let reader =
                Reader::open(f, self.opts.clone()).map_err(|e| UqError::Data(e.to_string()))?;
            for frame in reader {
                let s = frame.map_err(|e| UqError::Data(e.to_string()))?;
                atoms += s.len() as u64;
                buf.push(s);
                if buf.len() >= self.chunk {
                    emit(&mut buf, &mut first)?;
                }
            }
        }
        emit(&mut buf, &mut first)?;
        self.atoms = Some(atoms);
        self.frames = first as usize;
        Ok(())
    }

    fn rows_hint(&self) -> Option<u64> {
        self.atoms
    }
}

fn describe(name: &str, set: &SpeciesActiveSet) -> String {
    let mut structures: Vec<u32> = set.source.iter().map(|r| r.structure).collect();
    structures.sort();
    structures.dedup();
    format!(
        "{name}: {} active rows from {} frames, condition number {:.1e}",
        set.m,
        structures.len(),
        set.cond
    )
}

/// Run `aceuq activeset`.
pub fn run(a: &ActiveSetArgs) -> Result<()> {
    super::check_given(
        "--tol",
        a.tol,
        |t| t.is_finite() && t > 1.0,
        "a number above 1 (1.01 is the usual value)",
    )?;
    let t0 = std::time::Instant::now();
    let mut pot = super::load_model(&a.model)?;
    let model = &pot.model;
    let mut settings = Settings::default();
    if let Some(b) = a.batch {
        settings.batch = b;
    }
    if let Some(t) = a.tol {
        settings.tol = t;
    }
    if let Some(p) = a.max_passes {
        settings.max_passes = p;
    }
    if let Some(n) = a.min_cluster_atoms {
        settings.min_cluster_atoms = n;
    }
    settings.validate()?;
    if a.clusters == Some(0) {
        bail!("--clusters must be at least 1");
    }
    for f in &a.data {
        if !f.is_file() {
            bail!("{}: no such file", f.display());
        }
    }
    let partition = match (a.clusters, a.clusters_by) {
        (Some(k), _) => Some(Partition::KMeans(k)),
        (None, Some(ClusterLabel::ConfigType)) => Some(Partition::ConfigType),
        // Rebuild what the model had.
        (None, None) => pot.uq.local.as_ref().map(|l| l.partition.clone()),
    };
    let files: Vec<String> = a.data.iter().map(|p| p.display().to_string()).collect();
    let mut src = XyzSource::new(model, &a.data, a.chunk);
    let t = std::time::Instant::now();
    let mut global = GlobalActiveSets::build_from_source(model, &mut src, &settings, true)
        .context("cannot build the active sets")?;
    global.info.data = files.clone();
    let frames = src.frames;
    eprintln!(
        "global active sets from {frames} frames in {} passes ({:.1} s)",
        global.info.passes,
        t.elapsed().as_secs_f64()
    );
    for (s, set) in global.species.iter().enumerate() {
        eprintln!(
            "  {} ({} atoms)",
            describe(&format!("species {}", model.species[s]), set),
            global.info.atoms[s]
        );
    }
    for n in &global.info.notes {
        eprintln!("note: {n}");
    }
    let local = match &partition {
        Some(p) => {
            let t = std::time::Instant::now();
            let mut src = XyzSource::new(model, &a.data, a.chunk);
            let mut l =
                ClusteredActiveSets::build_from_source(model, &mut src, p, &settings, a.seed, true)
                    .context("cannot build the clustered active sets")?;
            l.info.data = files.clone();
            eprintln!(
                "clustered active sets ({}) in {} passes ({:.1} s)",
                match p {
                    Partition::KMeans(k) => format!("k-means, K = {k}"),
                    Partition::ConfigType => "by config_type".into(),
                },
                l.info.passes,
                t.elapsed().as_secs_f64()
            );
            eprint!("{}", l.cluster_table(&|_, _| None));
            for n in &l.info.notes {
                eprintln!("note: {n}");
            }
            Some(l)
        }
        None => None,
    };
    pot.uq.active_set = Some(global);
    pot.uq.local = local;
    // Per-cluster cutoffs name clusters of the clustered active sets just replaced.
    let dropped = pot.uq.drop_cluster_cutoffs();
    if dropped > 0 {
        eprintln!(
            "note: dropped {dropped} per-cluster gamma_local cutoffs (the clusters were rebuilt); \
             rerun `aceuq calibrate` for new ones"
        );
    }
    let out: &Path = a.out.as_deref().unwrap_or(&a.model);
    pot.save(out)?;
    eprintln!(
        "wrote {} ({:.1} s)",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
