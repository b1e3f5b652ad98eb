//! `aceuq select`: choose the candidate structures (e.g. frames dumped by an MD run when gamma
//! was high) that extend the model's active set most, for DFT labelling.

use crate::io::extxyz::{ReadOptions, WriteOptions};
use crate::structure::InfoValue;
use crate::uq::activeset::{Settings, StructureSource, select};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `aceuq select`.
#[derive(clap::Args, Debug)]
pub struct SelectArgs {
    /// Model file (*.aceuq) with active sets (`aceuq activeset`).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Candidate structures (extended XYZ, e.g. dumped by an MD run); may be repeated. A cut-off
    /// last frame (killed run) is skipped with a warning.
    #[arg(long, required = true, num_args = 1..)]
    pub candidates: Vec<PathBuf>,
    /// At most this many structures are chosen.
    #[arg(long = "max", allow_negative_numbers = true)]
    pub max: usize,
    /// Output extended XYZ with the chosen structures (most informative first), per-atom
    /// columns kept; each frame gains `aceuq_new_rows` and `aceuq_gamma_max`.
    #[arg(long, short)]
    pub out: PathBuf,
    /// MaxVol tolerance (> 1).
    #[arg(long, allow_hyphen_values = true)]
    pub tol: Option<f64>,
    /// Structures per descriptor chunk.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    pub chunk: usize,
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
    let pot = super::load_model(&a.model)?;
    let model = &pot.model;
    let Some(sets) = pot.uq.active_set.as_ref() else {
        bail!(
            "{}: the model has no active sets; build them with `aceuq activeset --model {} --data TRAIN.xyz`",
            a.model.display(),
            a.model.display()
        );
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
    for f in &a.candidates {
        let frames = crate::io::extxyz::read_file(f, &opts)?;
        if frames.is_empty() {
            bail!("{}: no frames", f.display());
        }
        cands.extend(frames);
    }
    let mut src = StructureSource {
        model,
        data: &cands,
        chunk: a.chunk,
    };
    let rep = select(model, sets, &mut src, a.max, &settings, true)
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
