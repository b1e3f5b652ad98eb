//! `aceuq activeset`: (re)build a model's active sets (global `gamma`, optionally clustered
//! `gamma_local`) from data, streaming: frames are read and their descriptors computed chunk by
//! chunk, so the data never sit in memory at once.

use crate::io::extxyz::{ReadOptions, Reader};
use crate::model::Model;
use crate::uq::activeset::{
    Chunk, ClusteredActiveSets, GlobalActiveSets, RowSource, Settings, SpeciesActiveSet,
    build_any_rank,
};
use crate::uq::{DescriptorTable, Partition, SpeciesRows, UqError};
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
    /// Merge clusters with fewer atoms than this (default 30): too few to mean anything; also
    /// the fewest atoms of a species its global set is built from.
    #[arg(long, allow_negative_numbers = true)]
    pub min_cluster_atoms: Option<usize>,
    /// Seed for k-means.
    #[arg(long, default_value_t = 2024, allow_negative_numbers = true)]
    pub seed: u64,
    /// Frames per descriptor chunk.
    #[arg(
        long,
        default_value_t = 64,
        allow_negative_numbers = true,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
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
        let mut buf: Vec<crate::Structure> = Vec::with_capacity(self.chunk.min(1024));
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
    if crate::pace::is_pacemaker_potential(&a.model) {
        return run_pace(a);
    }
    let t0 = std::time::Instant::now();
    let mut pot = super::load_model(&a.model)?;
    let model = &pot.model;
    let mut settings = Settings::default();
    if let Some(b) = a.batch {
        if b == 0 {
            bail!("--batch must be at least 1");
        }
        settings.batch = b;
    }
    if let Some(t) = a.tol {
        settings.tol = t;
    }
    if let Some(p) = a.max_passes {
        if p < 2 {
            bail!("--max-passes must be at least 2 (one to build, one to verify), got {p}");
        }
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
            report_clusters(p, &l, t);
            Some(l)
        }
        None => None,
    };
    pot.uq.active_set = Some(global);
    pot.uq.local = local;
    // The grades of the new sets differ from those the stored cutoffs were calibrated on (and
    // per-cluster cutoffs name clusters just replaced): a cutoff kept would halt or dump at
    // the wrong level without a word.
    let (dropped, rule) = pot.uq.drop_grade_cutoffs();
    if dropped > 0 {
        eprintln!(
            "note: dropped {dropped} gamma and gamma_local cutoff entries{} (calibrated on the \
             previous active sets, whose grades these replace); rerun `aceuq calibrate` for new \
             ones",
            if rule {
                " and the stored halting rule"
            } else {
                ""
            }
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

/// Prints what a clustered build made: partition, passes, time since `t`, the cluster table
/// and the build's notes.
fn report_clusters(p: &Partition, l: &ClusteredActiveSets, t: std::time::Instant) {
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
}

/// Frames of extended XYZ files streamed in chunks, rows = a pacemaker potential's projections.
struct PaceSource<'a> {
    pot: &'a crate::pace::PacePotential,
    files: &'a [PathBuf],
    chunk: usize,
    atoms: Option<u64>,
    frames: usize,
}

impl PaceSource<'_> {
    /// Projections of `frames` (each with its file and 0-based index there, for messages).
    fn table(&self, frames: &[(crate::Structure, String)]) -> Result<DescriptorTable, UqError> {
        let refs: Vec<(&crate::Structure, &str)> =
            frames.iter().map(|(s, at)| (s, at.as_str())).collect();
        pace_table(self.pot, None, &refs)
    }
}

/// The projections of `frames` (each with a name for messages) as a descriptor table: the
/// potential's non-linear projections, or those `asi` grades (linear or not).
pub(super) fn pace_table(
    pot: &crate::pace::PacePotential,
    asi: Option<&crate::pace::ActiveSetInverse>,
    frames: &[(&crate::Structure, &str)],
) -> Result<DescriptorTable, UqError> {
    use rayon::prelude::*;
    let ns = pot.model().nspecies();
    let rows: Vec<Vec<(usize, Vec<f64>)>> = frames
        .par_iter()
        .map(|(s, at)| {
            match asi {
                Some(asi) => pot.grade_rows(asi, s),
                None => pot.structure_rows(s),
            }
            .map_err(|e| UqError::Data(format!("{at}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut table = DescriptorTable {
        per_species: (0..ns)
            .map(|z| SpeciesRows {
                m: asi.map_or_else(|| pot.nprojections(z), |a| a.species[z].0),
                ..Default::default()
            })
            .collect(),
    };
    for (k, frame) in rows.into_iter().enumerate() {
        for (i, (si, row)) in frame.into_iter().enumerate() {
            let o = &mut table.per_species[si];
            o.rows.extend_from_slice(&row);
            o.structure.push(k as u32);
            o.atom.push(i as u32);
        }
    }
    Ok(table)
}

impl RowSource for PaceSource<'_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        let mut first = 0u32;
        let mut atoms = 0u64;
        let mut buf: Vec<(crate::Structure, String)> = Vec::with_capacity(self.chunk.min(1024));
        let mut emit =
            |buf: &mut Vec<(crate::Structure, String)>, first: &mut u32| -> Result<(), UqError> {
                if buf.is_empty() {
                    return Ok(());
                }
                let table = self.table(buf)?;
                let labels: Vec<Option<String>> =
                    buf.iter().map(|(s, _)| s.config_type.clone()).collect();
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
            let reader = Reader::open(f, ReadOptions::default())
                .map_err(|e| UqError::Data(e.to_string()))?;
            for (k, frame) in reader.enumerate() {
                let s = frame.map_err(|e| UqError::Data(e.to_string()))?;
                atoms += s.len() as u64;
                buf.push((s, format!("{} frame {k}", f.display())));
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

/// `aceuq activeset` for a pacemaker potential: per species the MaxVol active set of the
/// potential's projections over the data, written as an active-set inverse (`.asi`) beside the
/// potential, which is not changed; with `--clusters`/`--clusters-by` also the clustered local
/// active sets (`gamma_local`), written beside it as a `.lasi` file of the same name.
fn run_pace(a: &ActiveSetArgs) -> Result<()> {
    if a.clusters == Some(0) {
        bail!("--clusters must be at least 1");
    }
    let t0 = std::time::Instant::now();
    let pot = crate::pace::PacePotential::load(&a.model)
        .with_context(|| format!("cannot load {}", a.model.display()))?;
    let out = match &a.out {
        Some(o) if o.extension().and_then(|e| e.to_str()) != Some("asi") => bail!(
            "--out {}: the active set of a pacemaker potential is written as an .asi file \
             (the potential itself is not changed): give a name ending in .asi",
            o.display()
        ),
        Some(o) => o.clone(),
        None => a.model.with_extension("asi"),
    };
    let mut settings = Settings::default();
    if let Some(b) = a.batch {
        if b == 0 {
            bail!("--batch must be at least 1");
        }
        settings.batch = b;
    }
    if let Some(t) = a.tol {
        settings.tol = t;
    }
    if let Some(p) = a.max_passes {
        if p < 2 {
            bail!("--max-passes must be at least 2 (one to build, one to verify), got {p}");
        }
        settings.max_passes = p;
    }
    if let Some(n) = a.min_cluster_atoms {
        settings.min_cluster_atoms = n;
    }
    settings.validate()?;
    for f in &a.data {
        if !f.is_file() {
            bail!("{}: no such file", f.display());
        }
    }
    let partition = match (a.clusters, a.clusters_by) {
        (Some(k), _) => Some(Partition::KMeans(k)),
        (None, Some(ClusterLabel::ConfigType)) => Some(Partition::ConfigType),
        (None, None) => None,
    };
    let local_out = out.with_extension("lasi");
    let elements = pot.model().elements.clone();
    let ms: Vec<usize> = (0..elements.len()).map(|s| pot.nprojections(s)).collect();
    eprintln!(
        "{}: {} ({}), projections per atom: {}",
        a.model.display(),
        pot.kind(),
        elements.join(" "),
        elements
            .iter()
            .zip(&ms)
            .map(|(e, m)| format!("{e} {m}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut src = PaceSource {
        pot: &pot,
        files: &a.data,
        chunk: a.chunk.max(1),
        atoms: None,
        frames: 0,
    };
    // Rank-adaptive, as for aceuq models: projections that are zero on all atoms (functions
    // that vanish by symmetry, or neighbour species the data never have) or linearly dependent
    // on the data get the distance-from-the-data-space term, written into the square inverse.
    let global = build_any_rank(&elements, &ms, &mut src, &settings, true)
        .with_context(|| format!("cannot build the active sets of {}", a.model.display()))?;
    eprintln!(
        "active sets from {} frames in {} passes",
        src.frames, global.info.passes
    );
    for (s, set) in global.species.iter().enumerate() {
        eprintln!(
            "  {} ({} atoms)",
            describe(&format!("species {}", elements[s]), set),
            global.info.atoms[s]
        );
    }
    for n in &global.info.notes {
        eprintln!("note: {n}");
    }
    if global.species.iter().any(|set| set.proj.is_some()) {
        eprintln!(
            "note: an .asi file holds one square matrix per species, so for a species graded in \
             its row space the distance from the space is its largest component rather than its \
             length (the same grade inside the space; outside it smaller by at most the square \
             root of the number of missing dimensions)"
        );
    }
    let inverses: Vec<(usize, Vec<f64>)> = global
        .species
        .iter()
        .map(|set| (set.row_len(), set.square_inverse()))
        .collect();
    // Both files are built before either is written, so a failed clustering leaves the old
    // pair as it was.
    let local = match &partition {
        Some(p) => {
            let t = std::time::Instant::now();
            let layouts = crate::pace::local::layouts(&pot);
            // The same frames again (a source streams them anew on every pass).
            let mut l = ClusteredActiveSets::build_rows(
                &elements, &layouts, &mut src, p, &settings, a.seed, true,
            )
            .with_context(|| {
                format!(
                    "cannot build the clustered active sets of {}",
                    a.model.display()
                )
            })?;
            l.info.data = a.data.iter().map(|p| p.display().to_string()).collect();
            report_clusters(p, &l, t);
            Some(l)
        }
        None => None,
    };
    crate::pace::write_active_set(&out, &pot, &inverses)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let mut files = vec![out.display().to_string()];
    if let Some(l) = &local {
        crate::pace::write_local_active_set(&local_out, &pot, &a.model, l)
            .with_context(|| format!("cannot write {}", local_out.display()))?;
        files.push(local_out.display().to_string());
    } else if local_out.is_file() {
        eprintln!(
            "note: {} is left as it was (clustered active sets are rebuilt only with --clusters \
             or --clusters-by)",
            local_out.display()
        );
    }
    eprintln!(
        "wrote {} ({:.1} s); use {} with `pair_coeff * * {} {} {}`",
        files.join(" and "),
        t0.elapsed().as_secs_f64(),
        if files.len() > 1 { "them" } else { "it" },
        a.model.display(),
        files.join(" "),
        elements.join(" ")
    );
    Ok(())
}
