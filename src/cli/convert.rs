//! `aceuq to-lammps`: one frame of extended XYZ as a LAMMPS data file.

use crate::io::lammps_data::{data_file, species_masses};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Arguments of `aceuq to-lammps`.
#[derive(clap::Args, Debug)]
pub struct ToLammpsArgs {
    /// Extended XYZ file.
    #[arg(long)]
    pub data: PathBuf,
    /// Frame to convert (0-based; negative counts from the end).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub frame: i64,
    /// Species in LAMMPS type order, comma separated (default: as they appear in the frame).
    #[arg(long, value_delimiter = ',', value_parser = super::species_name)]
    pub species: Vec<String>,
    /// Output data file.
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(a: &ToLammpsArgs) -> Result<()> {
    let frames = crate::io::extxyz::read_file(&a.data, &Default::default())?;
    let n = frames.len() as i64;
    let k = if a.frame < 0 { n + a.frame } else { a.frame };
    if k < 0 || k >= n {
        bail!(
            "{}: frame {} does not exist ({} frames)",
            a.data.display(),
            a.frame,
            n
        );
    }
    let s = &frames[k as usize];
    if s.is_empty() {
        bail!(
            "{}: frame {} has 0 atoms: a LAMMPS data file needs at least one",
            a.data.display(),
            a.frame
        );
    }
    let species = if a.species.is_empty() {
        let mut v: Vec<String> = vec![];
        for sym in &s.symbols {
            if !v.contains(sym) {
                v.push(sym.clone());
            }
        }
        v
    } else {
        a.species.clone()
    };
    let masses = species_masses(&species).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (text, lb) = data_file(s, &species, &masses)?;
    crate::io::container::write_atomic(&a.out, text.as_bytes())
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    eprintln!(
        "wrote {} ({} atoms, types {}); use: boundary {}",
        a.out.display(),
        s.len(),
        species.join(" "),
        lb.boundary
    );
    Ok(())
}
