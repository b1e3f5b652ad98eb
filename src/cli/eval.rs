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
    /// Model file (*.aceuq), or a pacemaker potential (.yaml, .yace or .ace: energies and forces
    /// only).
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

/// `aceuq eval` of a pacemaker potential: the error table and the per-atom CSV, no uncertainty.
fn run_pace(a: &EvalArgs) -> Result<()> {
    // A .yaml B-basis potential is evaluated through its C-tilde form, as `info` and
    // `calibrate` read it.
    let pot = crate::pace::PacePotential::load(&a.model)?;
    let pace = pot.model();
    let data = a.keys.read(&a.data)?;
    let preds: Vec<crate::model::Prediction> = data
        .par_iter()
        .map(|s| pace.predict(s))
        .collect::<Result<_, _>>()?;
    print!(
        "{}",
        fit::metrics_table(&[fit::metrics_of(&data, &preds, &set_name(a))])
    );
    if let Some(path) = &a.per_atom {
        let mut text = String::from(CSV_HEADER);
        text.push('\n');
        for (k, (s, p)) in data.iter().zip(&preds).enumerate() {
            for i in 0..s.len() {
                atom_row(&mut text, k, i, s, p);
                text.push('\n');
            }
        }
        crate::io::container::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

const CSV_HEADER: &str =
    "structure,atom,species,energy_atom,fx,fy,fz,fx_ref,fy_ref,fz_ref,force_error";

/// The name of the evaluated set: the file name (the whole path would crowd the table).
fn set_name(a: &EvalArgs) -> String {
    if a.data.len() == 1 {
        a.data[0].file_name().map_or_else(
            || a.data[0].display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        )
    } else {
        "data".into()
    }
}

/// The CSV columns of atom `i` of structure `k` up to `force_error`.
fn atom_row(
    out: &mut String,
    k: usize,
    i: usize,
    s: &crate::Structure,
    p: &crate::model::Prediction,
) {
    let f = p.forces[i];
    let (r, err) = match &s.forces {
        Some(fr) => {
            let r = fr[i];
            let e = ((f[0] - r[0]).powi(2) + (f[1] - r[1]).powi(2) + (f[2] - r[2]).powi(2)).sqrt();
            (r, e)
        }
        None => ([f64::NAN; 3], f64::NAN),
    };
    write!(
        out,
        "{k},{i},{},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e},{:.10e}",
        s.symbols[i], p.atom_energies[i], f[0], f[1], f[2], r[0], r[1], r[2], err
    )
    .expect("writing to a String");
}

pub fn run(a: &EvalArgs) -> Result<()> {
    if crate::pace::is_pacemaker_potential(&a.model) {
        return run_pace(a);
    }
    let pot = load_model(&a.model)?;
    let model = &pot.model;
    let data = a.keys.read(&a.data)?;
    use crate::io::extxyz::Label;
    a.keys.warn_missing(
        &data,
        Label::Energy,
        "energy errors are reported only for frames with an energy",
    );
    a.keys.warn_missing(
        &data,
        Label::Forces,
        "force errors (and their correlation with the uncertainties) are reported only for \
         frames with forces",
    );
    let name = set_name(a);
    let metrics = fit::evaluate(model, &data, &name)?;
    print!("{}", fit::metrics_table(&[metrics]));
    // Uncertainties of every method the model carries, and how they rank the true errors.
    let methods = pot.uq.methods();
    let mut uq_values = Vec::with_capacity(methods.len());
    if !methods.is_empty() {
        let errors = crate::uq::force_errors(model, &data)?;
        let mut rows = vec![];
        for &m in &methods {
            let u = pot.per_atom(&data, m)?;
            let (mut ea, mut ua, mut es, mut us) = (vec![], vec![], vec![], vec![]);
            for (k, e) in errors.iter().enumerate() {
                if e.is_empty() {
                    continue;
                }
                ea.extend_from_slice(e);
                ua.extend_from_slice(&u[k]);
                es.push(e.iter().cloned().fold(0.0, f64::max));
                us.push(u[k].iter().cloned().fold(0.0, f64::max));
            }
            let rho = |x: &[f64], y: &[f64]| {
                let r = crate::stats::metrics::spearman_or_nan(x, y);
                if r.is_nan() {
                    "-".to_string()
                } else {
                    format!("{r:.3}")
                }
            };
            rows.push(vec![m.name().to_string(), rho(&ea, &ua), rho(&es, &us)]);
            uq_values.push(u);
        }
        println!();
        print!(
            "{}",
            super::calibrate::text_table(
                &[
                    "uncertainty".into(),
                    "Spearman vs |ΔF| (atoms)".into(),
                    "(structures, max)".into()
                ],
                &rows
            )
        );
    }
    if let Some(path) = &a.per_atom {
        // The cluster of each atom, next to gamma_local.
        let clusters = if methods.contains(&crate::uq::Method::GammaLocal) {
            Some(pot.clusters_per_atom(&data)?)
        } else {
            None
        };
        let rows: Vec<String> = data
            .par_iter()
            .enumerate()
            .map_init(
                || Workspace::new(model),
                |ws, (k, s)| -> Result<String> {
                    let p = model.predict(s, ws)?;
                    let uq_values = &uq_values;
                    let (methods, clusters) = (&methods, &clusters);
                    let mut out = String::new();
                    for i in 0..s.len() {
                        atom_row(&mut out, k, i, s, &p);
                        for (u, m) in uq_values.iter().zip(methods.iter()) {
                            write!(out, ",{:.10e}", u[k][i]).expect("writing to a String");
                            if let (crate::uq::Method::GammaLocal, Some(c)) = (m, &clusters) {
                                write!(out, ",{}", c[k][i]).expect("writing to a String");
                            }
                        }
                        out.push('\n');
                    }
                    Ok(out)
                },
            )
            .collect::<Result<_>>()?;
        let mut text = String::from(CSV_HEADER);
        for m in &methods {
            text.push(',');
            text.push_str(m.column());
            if *m == crate::uq::Method::GammaLocal {
                text.push_str(",cluster");
            }
        }
        text.push('\n');
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
