//! `aceuq report`: figures and a Markdown summary of how well each uncertainty method of a model
//! flags high-error atoms on labelled data (Annevelink & Viswanathan).

use super::calibrate::{atoms_per_species, text_table};
use super::{DataKeys, load_model};
use crate::stats::cutoff::{Calibration, CalibrationOptions, calibrate};
use crate::stats::metrics::{
    calibration_curve, linspace, miscalibration_area, pit_maxwell, spearman, sweep,
};
use crate::stats::plot::{self, CalibrationPlot, Marker, ParityPlot};
use crate::uq::{self, Method};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `aceuq report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Model file (*.aceuq) with uncertainty estimators.
    #[arg(long, short)]
    pub model: PathBuf,
    /// Labelled data to evaluate on; may be repeated.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Output folder (created).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Methods to report (default: all the model has).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<Method>,
    /// Figure formats.
    #[arg(long, value_delimiter = ',', default_value = "png,svg")]
    pub formats: Vec<String>,
    #[command(flatten)]
    pub keys: DataKeys,
}

/// One (method, species) panel of results.
struct Panel {
    method: Method,
    species: String,
    cal: Calibration,
    from_model: bool,
    n: usize,
    rho_atom: f64,
    rho_struct: f64,
    area: f64,
    scale: f64,
    at_cut: crate::stats::metrics::Confusion,
    best: Option<(f64, f64, f64)>,
    curve: crate::stats::metrics::CalibrationCurve,
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let pot = load_model(&a.model)?;
    let model = &pot.model;
    let available = pot.uq.methods();
    if available.is_empty() {
        bail!(
            "{} has no uncertainty estimators to report on",
            a.model.display()
        );
    }
    let methods = if a.methods.is_empty() {
        available.clone()
    } else {
        a.methods.clone()
    };
    for f in &a.formats {
        if f != "png" && f != "svg" {
            bail!("--formats takes png and/or svg, got '{f}'");
        }
    }
    let data = a.keys.read(&a.data)?;
    let errors = uq::force_errors(model, &data)?;
    if errors.iter().all(|e| e.is_empty()) {
        bail!("the data has no reference forces (check --forces-key)");
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let napply = atoms_per_species(model, &data);
    let mut panels = vec![];
    let mut written: Vec<PathBuf> = vec![];
    for &m in &methods {
        let u = pot.per_atom(&data, m)?;
        for (sp, name) in model.species.iter().enumerate() {
            let (mut es, mut us) = (vec![], vec![]);
            let (mut se, mut su) = (vec![], vec![]);
            for (k, s) in data.iter().enumerate() {
                if errors[k].is_empty() {
                    continue;
                }
                let (mut me, mut mu, mut any) = (0.0f64, 0.0f64, false);
                for (i, sym) in s.symbols.iter().enumerate() {
                    if model.species_index(sym) == Some(sp) {
                        es.push(errors[k][i]);
                        us.push(u[k][i]);
                        me = me.max(errors[k][i]);
                        mu = mu.max(u[k][i]);
                        any = true;
                    }
                }
                if any {
                    se.push(me);
                    su.push(mu);
                }
            }
            if es.len() < 10 {
                continue;
            }
            let stored = pot
                .uq
                .calibration
                .iter()
                .find(|c| c.method == m.name() && &c.species == name && c.cluster.is_none())
                .cloned();
            let from_model = stored.is_some();
            let cal = match stored {
                Some(c) => c,
                None => calibrate(
                    name,
                    m.name(),
                    &es,
                    &us,
                    &CalibrationOptions::new(napply[sp].max(2)),
                )?,
            };
            // Predictive Maxwell scale per atom: the uncertainty itself for methods in eV/Å, a
            // closed-form (Maxwell NLL) rescaling for the dimensionless grades.
            let dimensionless = matches!(m, Method::Gamma | Method::GammaLocal);
            let scale = if dimensionless {
                let s: f64 = es
                    .iter()
                    .zip(&us)
                    .map(|(e, u)| (e / u.max(1e-12)).powi(2))
                    .sum::<f64>();
                (s / (3.0 * es.len() as f64)).sqrt()
            } else {
                1.0
            };
            let sig: Vec<f64> = us.iter().map(|u| (u * scale).max(1e-12)).collect();
            let pit = pit_maxwell(&es, &sig)?;
            let curve = calibration_curve(&pit, 101)?;
            let area = miscalibration_area(&pit)?;
            let emax = es.iter().cloned().fold(0.0, f64::max).max(cal.e_c) * 1.05;
            let umax = us.iter().cloned().fold(0.0, f64::max).max(cal.u_c) * 1.05;
            let sw = sweep(&es, &us, &linspace(0.0, emax, 60), &linspace(0.0, umax, 60))?;
            let at_cut = crate::stats::metrics::confusion(&es, &us, cal.e_c, cal.u_c)?;
            let best = sw
                .best_f1()
                .map(|(i, j, f)| (sw.e_grid[i], sw.u_grid[j], f));
            let unit = if dimensionless { "" } else { "eV/Å" };
            let stem = format!("{}_{}", m.name(), name);
            for ext in &a.formats {
                let p = a.out.join(format!("{stem}_errors.{ext}"));
                let efits: Vec<(String, _)> = cal
                    .error
                    .candidates
                    .iter()
                    .map(|c| (c.dist.family().to_string(), c.dist))
                    .collect();
                plot::histogram_with_fits(
                    &p,
                    &format!("{name}: force errors ({} atoms)", es.len()),
                    "force error |ΔF| (eV/Å)",
                    &es,
                    &efits,
                    vec![Marker::new(format!("e_c = {:.3}", cal.e_c), cal.e_c)],
                )?;
                written.push(p);
                let p = a.out.join(format!("{stem}_uncertainty.{ext}"));
                let ufits: Vec<(String, _)> = cal
                    .uncertainty
                    .candidates
                    .iter()
                    .map(|c| {
                        (
                            format!("{} (KS p = {:.2e})", c.dist.family(), c.ks.p_value),
                            c.dist,
                        )
                    })
                    .collect();
                plot::histogram_with_fits(
                    &p,
                    &format!("{name}: {} ({} atoms)", m.name(), us.len()),
                    &format!(
                        "{} {}",
                        m.column(),
                        if unit.is_empty() {
                            String::new()
                        } else {
                            format!("({unit})")
                        }
                    ),
                    &us,
                    &ufits,
                    vec![
                        Marker::new(format!("lower u_c = {:.3}", cal.u_c), cal.u_c),
                        Marker::new(format!("upper u_max = {:.3}", cal.u_max), cal.u_max),
                    ],
                )?;
                written.push(p);
                written.extend(plot::sweep_heatmaps(
                    &a.out.join(format!("{stem}_sweep")),
                    ext,
                    &format!("{name}, {}", m.name()),
                    &sw,
                    cal.e_c,
                    cal.u_c,
                    unit,
                )?);
                let p = a.out.join(format!("{stem}_calibration.{ext}"));
                CalibrationPlot {
                    title: &format!("{name}, {}: calibration", m.name()),
                    curves: vec![(format!("{} (area {:.3})", m.name(), area), &curve)],
                }
                .write(&p)?;
                written.push(p);
                let p = a.out.join(format!("{stem}_parity.{ext}"));
                ParityPlot {
                    title: &format!("{name}, {}: uncertainty vs error", m.name()),
                    x_label: "force error |ΔF| (eV/Å)",
                    y_label: &format!(
                        "{} {}",
                        m.column(),
                        if unit.is_empty() {
                            String::new()
                        } else {
                            format!("({unit})")
                        }
                    ),
                    x: &es,
                    y: &us,
                    x_markers: vec![Marker::new(format!("e_c = {:.3}", cal.e_c), cal.e_c)],
                    y_markers: vec![Marker::new(format!("u_c = {:.3}", cal.u_c), cal.u_c)],
                    log: false,
                }
                .write(&p)?;
                written.push(p);
            }
            panels.push(Panel {
                method: m,
                species: name.clone(),
                cal,
                from_model,
                n: es.len(),
                rho_atom: spearman(&es, &us).unwrap_or(f64::NAN),
                rho_struct: spearman(&se, &su).unwrap_or(f64::NAN),
                area,
                scale,
                at_cut,
                best,
                curve,
            });
        }
    }
    if panels.is_empty() {
        bail!("no species with at least 10 labelled atoms in the data");
    }
    // Side-by-side calibration curves.
    for sp in &model.species {
        let curves: Vec<(String, &crate::stats::metrics::CalibrationCurve)> = panels
            .iter()
            .filter(|p| &p.species == sp)
            .map(|p| {
                (
                    format!("{} (area {:.3})", p.method.name(), p.area),
                    &p.curve,
                )
            })
            .collect();
        if curves.is_empty() {
            continue;
        }
        for ext in &a.formats {
            let p = a.out.join(format!("comparison_{sp}_calibration.{ext}"));
            CalibrationPlot {
                title: &format!("{sp}: calibration of all methods"),
                curves: curves.clone(),
            }
            .write(&p)?;
            written.push(p);
        }
    }
    let (md, table) = summary(&a.model, &a.data, &panels);
    let md_path = a.out.join("summary.md");
    crate::io::container::write_atomic(&md_path, md.as_bytes())?;
    print!("{table}");
    eprintln!(
        "wrote {} figures and {} in {}",
        written.len(),
        md_path.display(),
        a.out.display()
    );
    Ok(())
}

fn summary(model: &Path, data: &[PathBuf], panels: &[Panel]) -> (String, String) {
    let headers: Vec<String> = [
        "method",
        "species",
        "atoms",
        "Spearman (atoms)",
        "Spearman (structures)",
        "miscal. area",
        "e_c (eV/Å)",
        "u_c",
        "u_max",
        "P at cutoffs",
        "R at cutoffs",
        "F1 at cutoffs",
        "best F1 (e_c, u_c)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = panels
        .iter()
        .map(|p| {
            vec![
                p.method.name().to_string(),
                p.species.clone(),
                p.n.to_string(),
                format!("{:.3}", p.rho_atom),
                format!("{:.3}", p.rho_struct),
                format!("{:.3}", p.area),
                format!("{:.4}", p.cal.e_c),
                format!("{:.4}", p.cal.u_c),
                format!("{:.4}", p.cal.u_max),
                format!("{:.3}", p.at_cut.precision()),
                format!("{:.3}", p.at_cut.recall()),
                format!("{:.3}", p.at_cut.f1()),
                p.best
                    .map_or("-".into(), |(e, u, f)| format!("{f:.3} ({e:.3}, {u:.3})")),
            ]
        })
        .collect();
    let mut md = String::new();
    let _ = writeln!(md, "# aceuq report\n");
    let _ = writeln!(
        md,
        "Model `{}`, data {}.\n",
        model.display(),
        data.iter()
            .map(|d| format!("`{}`", d.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    md += &plot::markdown_table(&headers, &rows);
    let _ = writeln!(md, "\n## Distributions and cutoffs\n");
    md += &plot::markdown_table(
        &Calibration::table_header(),
        &panels.iter().map(|p| p.cal.table_row()).collect::<Vec<_>>(),
    );
    let _ = writeln!(md, "\nNotes:");
    for p in panels {
        let _ = writeln!(
            md,
            "- {} / {}: cutoffs {} ; calibration curve uses sigma = {}.",
            p.method.name(),
            p.species,
            if p.from_model {
                "from the model (`aceuq calibrate`)"
            } else {
                "fitted on this data with N = its atom count (the model has none)"
            },
            if p.scale == 1.0 {
                "the uncertainty (eV/Å)".to_string()
            } else {
                format!("{:.4} × the grade (Maxwell NLL scale)", p.scale)
            }
        );
    }
    let _ = writeln!(
        md,
        "\nHigh error: e > e_c; flagged: u > u_c. Spearman per atom and per structure (max over atoms). \
         Below the calibration diagonal = overconfident. KS p-values are optimistic (fitted on the same data)."
    );
    (md, text_table(&headers, &rows))
}
