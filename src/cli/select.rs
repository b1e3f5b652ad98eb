//! `aceuq select`: choose the candidate structures (e.g. frames dumped by an MD run when gamma
//! was high) that extend the model's active set most, for DFT labelling.

use crate::io::extxyz::{ReadOptions, WriteOptions};
use crate::structure::InfoValue;
use crate::uq::UqError;
use crate::uq::activeset::{Chunk, GlobalActiveSets, RowSource, Settings, StructureSource, select};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `aceuq select`.
#[derive(clap::Args, Debug)]
pub struct SelectArgs {
    /// Model file (*.aceuq) with active sets (`aceuq activeset`), or a pacemaker potential
    /// (.yaml, .yace, .ace) with its active-set inverse (--active-set).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Pacemaker potentials: the active-set inverse to select against (default: the
    /// potential's name with .asi).
    #[arg(long)]
    pub active_set: Option<PathBuf>,
    /// Candidate structures: extended XYZ (the frames `fix ace/uq/watch` dumps) or LAMMPS
    /// `dump custom` text files (e.g. ML-PACE's extrapolative structures; atom types map to
    /// species through --elements); may be repeated. A cut-off last frame (killed run) is
    /// skipped with a warning.
    #[arg(long, required = true, num_args = 1..)]
    pub candidates: Vec<PathBuf>,
    /// Element of each atom type of LAMMPS dump candidates, in type order as in `pair_coeff * *
    /// model El1 El2 ...` (comma separated; default: the model's species in order). Not needed
    /// for dumps with an `element` column.
    #[arg(long, value_delimiter = ',', value_parser = super::species_name)]
    pub elements: Option<Vec<String>>,
    /// Also offer frames with config_type=halt (frames written above the upper cutoff, where
    /// the potential may already be unphysical). By default they are left out, as failed
    /// explorations, and counted.
    #[arg(long)]
    pub include_halted: bool,
    /// At most this many structures are chosen.
    #[arg(long = "max", allow_negative_numbers = true)]
    pub max: usize,
    /// Output extended XYZ with the chosen structures (most informative first), per-atom
    /// columns kept; each frame gains `aceuq_new_rows` and `aceuq_gamma_max`.
    #[arg(long, short)]
    pub out: PathBuf,
    /// MaxVol tolerance (> 1) [default: 1.01].
    #[arg(long, allow_hyphen_values = true)]
    pub tol: Option<f64>,
    /// Structures per descriptor chunk.
    #[arg(
        long,
        default_value_t = 64,
        allow_negative_numbers = true,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub chunk: usize,
}

/// Whether a candidate file is a LAMMPS dump (its first non-empty line is `ITEM: TIMESTEP`).
fn is_lammps_dump(path: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open the candidates", path.display()))?;
    let n = f.read(&mut head)?;
    Ok(crate::io::lammps_dump::looks_like_dump(
        &String::from_utf8_lossy(&head[..n]),
    ))
}

/// Run `aceuq select`.
pub fn run(a: &SelectArgs) -> Result<()> {
    super::check_given(
        "--tol",
        a.tol,
        |t| t.is_finite() && t > 1.0,
        "a number above 1 (1.01 is the usual value)",
    )?;
    if a.max == 0 {
        bail!("--max must be at least 1");
    }
    // An aceuq model's own active sets, or a pacemaker potential's .asi.
    let (native, pace) = if crate::pace::is_pacemaker_potential(&a.model) {
        let asi_path = super::pacemaker_active_set(&a.model, a.active_set.as_deref())?;
        let pot = crate::pace::PacePotential::load(&a.model)
            .with_context(|| format!("cannot load {}", a.model.display()))?;
        let asi = crate::pace::read_active_set(&asi_path, &pot)
            .with_context(|| format!("cannot load {}", asi_path.display()))?;
        let sets = GlobalActiveSets::from_inverses(&pot.model().elements, &asi.species)
            .with_context(|| format!("{}: the active-set matrices", asi_path.display()))?;
        (None, Some((pot, asi, sets)))
    } else {
        if let Some(p) = &a.active_set {
            bail!(
                "--active-set {}: only for pacemaker potentials (.yaml, .yace, .ace); an aceuq \
                 model carries its own active sets",
                p.display()
            );
        }
        (Some(super::load_model(&a.model)?), None)
    };
    let species: Vec<String> = match (&native, &pace) {
        (Some(pot), _) => pot.model.species.clone(),
        (_, Some((pot, ..))) => pot.model().elements.clone(),
        _ => unreachable!("one of the two is loaded"),
    };
    let sets = match (&native, &pace) {
        (Some(pot), _) => match pot.uq.active_set.as_ref() {
            Some(sets) => sets,
            None => bail!(
                "{}: the model has no active sets; build them with `aceuq activeset --model {} --data TRAIN.xyz`",
                a.model.display(),
                a.model.display()
            ),
        },
        (_, Some((.., sets))) => sets,
        _ => unreachable!("one of the two is loaded"),
    };
    let mut settings = Settings::default();
    if let Some(t) = a.tol {
        settings.tol = t;
    }
    let opts = ReadOptions {
        allow_truncated_tail: true,
        on_warning: Some(Arc::new(|w| eprintln!("{w}"))),
        ..Default::default()
    };
    let mut cands = Vec::new();
    let mut halts = 0;
    for f in &a.candidates {
        let frames = if is_lammps_dump(f)? {
            let types = a.elements.as_deref().unwrap_or(&species);
            let d = crate::io::lammps_dump::read_dump(f, Some(types))?;
            for w in &d.warnings {
                eprintln!("warning: {w}");
            }
            if a.elements.is_none() && d.from_types {
                eprintln!(
                    "note: {}: atom types read as {} (the model's species in order; give \
                     --elements for another pair_coeff order)",
                    f.display(),
                    species.join(" ")
                );
            }
            d.frames
        } else {
            crate::io::extxyz::read_file(f, &opts)?
        };
        if frames.is_empty() {
            bail!("{}: no frames", f.display());
        }
        for s in frames {
            if !a.include_halted && s.config_type.as_deref() == Some("halt") {
                halts += 1;
            } else {
                cands.push(s);
            }
        }
    }
    if halts > 0 {
        eprintln!(
            "note: left out {halts} frame(s) with config_type=halt: written above the upper \
             cutoff, they may already be unphysical (--include-halted offers them too)"
        );
    }
    if cands.is_empty() {
        bail!("no candidate structures left to choose from");
    }
    if let Some(bad) = cands
        .iter()
        .flat_map(|s| s.symbols.iter().map(move |x| (s, x)))
        .find(|(_, x)| !species.contains(x))
    {
        bail!(
            "{}: species '{}' is not in the model ({}){}",
            bad.0.origin,
            bad.1,
            species.join(", "),
            if a.elements.is_some() {
                "; check --elements"
            } else {
                ""
            }
        );
    }
    let rep = match (&native, &pace) {
        (Some(pot), _) => select(
            &species,
            sets,
            &mut StructureSource {
                model: &pot.model,
                data: &cands,
                chunk: a.chunk,
            },
            a.max,
            &settings,
            true,
        ),
        (_, Some((pot, asi, _))) => select(
            &species,
            sets,
            &mut PaceFrames {
                pot,
                asi,
                data: &cands,
                chunk: a.chunk.max(1),
            },
            a.max,
            &settings,
            true,
        ),
        _ => unreachable!("one of the two is loaded"),
    }
    .context("candidate selection failed")?;
    println!(
        "{:>4}  {:<40} {:>6} {:>9} {:>10}  config_type",
        "rank", "structure", "atoms", "new rows", "max gamma"
    );
    let mut out = Vec::with_capacity(rep.chosen.len());
    for (r, c) in rep.chosen.iter().enumerate() {
        let mut s = cands[c.structure].clone();
        println!(
            "{:>4}  {:<40} {:>6} {:>9} {:>10.3}  {}",
            r + 1,
            s.origin.to_string(),
            s.len(),
            c.new_rows,
            c.max_gamma,
            s.config_type.as_deref().unwrap_or("-")
        );
        s.info
            .insert("aceuq_new_rows".into(), InfoValue::Int(c.new_rows as i64));
        s.info
            .insert("aceuq_gamma_max".into(), InfoValue::Real(c.max_gamma));
        out.push(s);
    }
    for n in &rep.notes {
        eprintln!("note: {n}");
    }
    let n = crate::io::extxyz::write_file_atomic(&a.out, out.iter(), &WriteOptions::lossless())?;
    eprintln!(
        "wrote {} ({n} of {} candidate structures; {} add rows to the active set)",
        a.out.display(),
        rep.candidates,
        rep.contributing
    );
    Ok(())
}

/// Candidate structures in memory, graded on a pacemaker potential's projections of the kind
/// its active-set inverse holds, `chunk` structures at a time.
struct PaceFrames<'a> {
    pot: &'a crate::pace::PacePotential,
    asi: &'a crate::pace::ActiveSetInverse,
    data: &'a [crate::Structure],
    chunk: usize,
}

impl RowSource for PaceFrames<'_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        for (k, part) in self.data.chunks(self.chunk).enumerate() {
            let names: Vec<String> = part.iter().map(|s| s.origin.to_string()).collect();
            let refs: Vec<(&crate::Structure, &str)> = part
                .iter()
                .zip(&names)
                .map(|(s, n)| (s, n.as_str()))
                .collect();
            let table = super::activeset::pace_table(self.pot, Some(self.asi), &refs)?;
            sink(Chunk {
                table: &table,
                first: (k * self.chunk) as u32,
                labels: &[],
            })?;
        }
        Ok(())
    }

    fn rows_hint(&self) -> Option<u64> {
        Some(self.data.iter().map(|s| s.len() as u64).sum())
    }
}
