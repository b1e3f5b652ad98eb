//! `aceuq eval`.

use super::{DataKeys, load_model};
use crate::model::{Workspace, fit};
use anyhow::Result;
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `aceuq eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Model file (*.aceuq).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Labelled data (extended XYZ); may be repeated.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Write one row per atom to this CSV file.
    #[arg(long)]
    pub per_atom: Option<PathBuf>,
    #[command(flatten)]
    pub keys: DataKeys,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let data = a.keys.read(&a.data)?;
    let name = if a.data.len() == 1 {
        a.data[0].display().to_string()
    } else {
        "data".into()
    };
    let metrics = fit::evaluate(&model, &data, &name)?;
    print!("{}", fit::metrics_table(&[metrics]));
    if let Some(path) = &a.per_atom {
        let rows: Vec<String> = data
            .par_iter()
            .enumerate()
            .map_init(
                || Workspace::new(&model),
                |ws, (k, s)| -> Result<String> {
                    let p = model.predict(s, ws)?;
                    let mut out = String::new();
                    for i in 0..s.len() {
                        let f = p.forces[i];
                        let (r, err) = match &s.forces {
                            Some(fr) => {
                                let r = fr[i];
                                let e = ((f[0] - r[0]).powi(2) + (f[1] - r[1]).powi(2) + (f[2] - r[2]).powi(2)).sqrt();
                                (r, e)
                            }
                            None => ([f64::NAN; 3], f64::NAN),
                        };
                        writeln!(
                            out,
                            "{k},{i},{},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e}",
                            s.symbols[i], p.atom_energies[i], f[0], f[1], f[2], r[0], r[1], r[2], err
                        )
                        .expect("writing to a String");
                    }
                    Ok(out)
                },
            )
            .collect::<Result<_>>()?;
        let mut text = String::from(
            "structure,atom,species,energy_atom,fx,fy,fz,fx_ref,fy_ref,fz_ref,force_error\n",
        );
        for r in rows {
            text.push_str(&r);
        }
        crate::io::container::write_atomic(path, text.as_bytes())?;
        eprintln!(
            "wrote {} ({} atoms)",
            path.display(),
            data.iter().map(|s| s.len()).sum::<usize>()
        );
    }
    Ok(())
}
