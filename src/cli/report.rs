//! `aceuq report`: figures and a Markdown summary of how well each uncertainty method of a model
//! flags high-error atoms on labelled data (Annevelink & Viswanathan).
//!
//! Once: `parity` (predicted against reference energy per atom, eV/atom, and force components,
//! eV/Å, a colour per composition / species, y = x, RMSE and MAE in the legends and in the
//! summary's accuracy table). Per species: `<species>_force_errors` (the force-error histogram
//! with its fits and e_c: the errors are the model's, the same for every method). Per (method,
//! species): the uncertainty histogram with the fitted families and the cutoffs (the axis from
//! the data, far cutoffs as arrows), F1 / precision / recall maps (trivial splits grey),
//! calibration curve, `_uq_vs_error` scatter. Per method, one panel per species:
//! `<method>_qq` (force errors and uncertainties against the model behind their 1 - 1/N cutoffs,
//! the body family alone drawn too, the tail threshold and the cutoff marked),
//! `<method>_exceedance` (the same models as survival curves on a log probability axis, down to
//! 1/N) and `<method>_upper` (force error against uncertainty with the fitted conditional error
//! model s(u), e_max and the upper cutoff, or why there is none). The summary names the model
//! behind each cutoff (body or generalized Pareto tail, its Anderson–Darling p-value, passed or
//! failed) and the upper rule's result.

use super::calibrate::{atoms_per_species, text_table};
use super::{DataKeys, load_model};
use crate::model::{Model, Prediction, Workspace};
use crate::stats::cutoff::{Calibration, CalibrationOptions, UpperRule, calibrate};
use crate::stats::family_choice::ModelChoice;
use crate::stats::metrics::{
    calibration_curve, linspace, miscalibration_area, pit_maxwell, spearman_or_nan, sweep,
};
use crate::stats::plot::{
    self, CalibrationPlot, Marker, ParityGroup, ParityPanel, ParityPlot, TailPanel, TailPlot,
    TailView, UpperPanel, UpperPlot, UqErrorPlot, p_value_text,
};
use crate::stats::tail::{CutoffFit, CutoffRule, TailPolicy};
use crate::structure::Structure;
use crate::uq::Method;
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
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
    /// Fit the cutoffs on this data (N = its atoms per species) even where the model has its own
    /// from `aceuq calibrate`; without it the model's are shown and only the entries it lacks are
    /// fitted here.
    #[arg(long)]
    pub refit: bool,
    /// Cutoffs fitted here: model of the 1 - 1/N quantiles, auto (the body family if it passes
    /// KS and Anderson-Darling and no more values lie above its cutoff than N allows, else a
    /// generalized Pareto tail), tail, or body [default: auto].
    #[arg(long)]
    pub tail: Option<TailPolicy>,
    /// Cutoffs fitted here: upper cutoff, conditional (fit e | u ~ Maxwell(s(u)), halt where
    /// P(e > max-error | u) reaches --p-halt) or ratio (the seeds' linear mapping)
    /// [default: conditional].
    #[arg(long)]
    pub upper_rule: Option<UpperRule>,
    /// Cutoffs fitted here: force error (eV/Å) at which the MD is considered unstable
    /// [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub max_error: Option<f64>,
    /// Cutoffs fitted here, conditional rule: the probability of an error above --max-error at
    /// which to halt [default: 0.5].
    #[arg(long, allow_hyphen_values = true)]
    pub p_halt: Option<f64>,
    #[command(flatten)]
    pub keys: DataKeys,
}

impl ReportArgs {
    /// Options of the cutoffs fitted on the report's data for a species with `n_apply` atoms.
    fn calibration_options(&self, n_apply: u64) -> CalibrationOptions {
        let mut o = CalibrationOptions::new(n_apply.max(2));
        if let Some(t) = self.tail {
            o.tail = t;
        }
        if let Some(r) = self.upper_rule {
            o.upper_rule = r;
        }
        if let Some(e) = self.max_error {
            o.e_max = e;
        }
        if let Some(p) = self.p_halt {
            o.p_halt = p;
        }
        o
    }

    /// The options that only act on cutoffs fitted here, as given on the command line.
    fn fit_options_given(&self) -> Vec<&'static str> {
        [
            ("--tail", self.tail.is_some()),
            ("--upper-rule", self.upper_rule.is_some()),
            ("--max-error", self.max_error.is_some()),
            ("--p-halt", self.p_halt.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, given)| given.then_some(n))
        .collect()
    }
}

/// A species' force errors (eV/Å) and each method's calibration of them.
type SpeciesErrors = (String, Vec<f64>, Vec<(Method, Calibration)>);

/// Fewest high-error atoms (e > e_c) at a grid point for its F1 to count as the best.
const MIN_HIGH_ERROR_ATOMS: u64 = 10;

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
    /// Best informative F1 on the grid: (e_c, u_c, F1, chance F1 there).
    best: Option<(f64, f64, f64, f64)>,
    curve: crate::stats::metrics::CalibrationCurve,
}

/// The data and cutoffs of one (method, species), for the per-method figures.
struct Entry {
    species: String,
    es: Vec<f64>,
    us: Vec<f64>,
    cal: Calibration,
}

/// Writes `<method>_qq.<ext>`, `<method>_exceedance.<ext>` (a row per species: force errors and
/// uncertainties against the models behind their cutoffs) and `<method>_upper.<ext>` (force
/// error against uncertainty with the conditional error model and the upper cutoff, a panel per
/// species). `unit`: the uncertainty's ("" for the dimensionless grades).
fn write_method_figures(
    out: &Path,
    ext: &str,
    method: Method,
    unit: &str,
    entries: &[Entry],
) -> Result<Vec<PathBuf>> {
    let name = method.name();
    let column = method.column();
    let mut tails = vec![];
    let mut uppers = vec![];
    for en in entries {
        let c = &en.cal;
        tails.push(TailPanel::from_fit(
            format!("{}: force error |ΔF| (n = {})", en.species, en.es.len()),
            "eV/Å",
            &en.es,
            &c.error,
            c.error_fit.as_ref(),
            c.e_c,
            c.n_apply,
        ));
        tails.push(TailPanel::from_fit(
            format!("{}: {column} (n = {})", en.species, en.us.len()),
            unit,
            &en.us,
            &c.uncertainty,
            c.uncertainty_fit.as_ref(),
            c.u_c,
            c.n_apply,
        ));
        uppers.push(UpperPanel::from_calibration(
            format!("{}: force error vs {column}", en.species),
            if unit.is_empty() {
                format!("{column} (dimensionless)")
            } else {
                format!("{column} ({unit})")
            },
            &en.us,
            &en.es,
            c,
        ));
    }
    let mut written = vec![];
    for (view, file, title) in [
        (
            TailView::Qq,
            "qq",
            format!("{name}: sample vs cutoff-model quantiles (cutoff at 1 - 1/N)"),
        ),
        (
            TailView::Exceedance,
            "exceedance",
            format!("{name}: exceedance probability, sample and cutoff models"),
        ),
    ] {
        let p = out.join(format!("{name}_{file}.{ext}"));
        TailPlot {
            title: &title,
            view,
            panels: &tails,
            columns: 2,
        }
        .write(&p)?;
        written.push(p);
    }
    let p = out.join(format!("{name}_upper.{ext}"));
    UpperPlot {
        title: &format!("{name}: force error vs uncertainty, upper (stability) cutoff"),
        panels: &uppers,
        columns: 2,
    }
    .write(&p)?;
    written.push(p);
    Ok(written)
}

/// The model behind a 1 - 1/N cutoff, e.g. "maxwell body + gpd tail above q0.900 (t = 0.1234,
/// xi = 0.123), AD p 0.31: passed".
fn cutoff_model_text(body: &ModelChoice, fit: Option<&CutoffFit>) -> String {
    let fam = body.dist().family();
    let Some(f) = fit else {
        return format!("{fam} body (no tail record: written before tail-aware cutoffs)");
    };
    let verdict = if f.passed { "passed" } else { "failed" };
    match (&f.rule, &f.tail) {
        (CutoffRule::Tail, Some(t)) => format!(
            "{fam} body + gpd tail above q{:.3} (t = {:.4}, xi = {:.3}), AD p {}: {verdict}",
            t.quantile,
            t.threshold,
            t.gpd.xi(),
            p_value_text(t.ad.p_value)
        ),
        _ => format!(
            "{fam} body, AD p {}: {verdict}",
            p_value_text(f.body_ad.p_value)
        ),
    }
}

/// The upper rule's result: a short cell and the details (the fitted s(u), why there is no
/// cutoff or a caveat).
fn upper_text(c: &Calibration) -> (String, String) {
    let rule = c.upper_rule.name();
    match (&c.upper_rule, &c.conditional) {
        (UpperRule::Conditional, Some(f)) => {
            let s = format!(
                "s(u) = {:.4} + {:.4e} u^{:.3} eV/Å; halt where P(e > {} eV/Å | u) = {}",
                f.scale.a, f.scale.b, f.scale.k, f.e_max, f.p_halt
            );
            match (f.u_max, &f.reason) {
                (Some(_), None) => (format!("{rule}: u_max = {:.4}", c.u_max), s),
                (Some(_), Some(r)) => (
                    format!("{rule}: u_max = {:.4} (see notes)", c.u_max),
                    format!("{s}; {r}"),
                ),
                (None, r) => (
                    format!("{rule}: none (see notes)"),
                    format!(
                        "{s}; no upper cutoff: {}",
                        r.as_deref().unwrap_or("no reason recorded")
                    ),
                ),
            }
        }
        (UpperRule::Conditional, None) => (
            format!("{rule}: u_max = {:.4}", c.u_max),
            "no fit record in the model".into(),
        ),
        (UpperRule::Ratio, _) => (
            format!("{rule}: u_max = {:.4}", c.u_max),
            format!(
                "u_max = mean_u + ratio (u_c - mean_u), ratio = {:.4}",
                c.ratio
            ),
        ),
    }
}

/// The model's prediction for every structure.
fn predictions(model: &Model, data: &[Structure]) -> Result<Vec<Prediction>> {
    Ok(data
        .par_iter()
        .map_init(|| Workspace::new(model), |ws, s| model.predict(s, ws))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Magnitude of the force error |F_pred - F_ref| (eV/Å) of every atom of every structure (empty
/// for structures without reference forces).
fn force_errors(data: &[Structure], preds: &[Prediction]) -> Vec<Vec<f64>> {
    data.iter()
        .zip(preds)
        .map(|(s, p)| match &s.forces {
            None => vec![],
            Some(fr) => p
                .forces
                .iter()
                .zip(fr)
                .map(|(a, b)| {
                    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
                })
                .collect(),
        })
        .collect()
}

/// The parity panels: energy per atom (eV/atom) of the structures with a reference energy, a
/// group per composition (its species joined by "+", in the model's order; a single species in
/// its colour of the force panel); force components (eV/Å) of the atoms with reference forces, a
/// group per species. A panel without data is left out.
fn parity_panels(model: &Model, data: &[Structure], preds: &[Prediction]) -> Vec<ParityPanel> {
    let mut energy: Vec<ParityGroup> = vec![];
    let mut force: Vec<ParityGroup> = model
        .species
        .iter()
        .enumerate()
        .map(|(k, sp)| ParityGroup {
            label: sp.clone(),
            color: k,
            reference: vec![],
            predicted: vec![],
        })
        .collect();
    for (s, p) in data.iter().zip(preds) {
        if let Some(e) = s.energy
            && !s.is_empty()
        {
            let present: Vec<usize> = (0..model.species.len())
                .filter(|&k| s.symbols.contains(&model.species[k]))
                .collect();
            let label = present
                .iter()
                .map(|&k| model.species[k].as_str())
                .collect::<Vec<_>>()
                .join("+");
            let n = s.len() as f64;
            match energy.iter_mut().find(|g| g.label == label) {
                Some(g) => {
                    g.reference.push(e / n);
                    g.predicted.push(p.energy / n);
                }
                None => energy.push(ParityGroup {
                    // Pure species first, in their colours; mixtures after.
                    color: match present[..] {
                        [k] => k,
                        _ => {
                            model.species.len()
                                + energy.iter().filter(|g| g.label.contains('+')).count()
                        }
                    },
                    label,
                    reference: vec![e / n],
                    predicted: vec![p.energy / n],
                }),
            }
        }
        if let Some(fr) = &s.forces {
            for ((sym, a), b) in s.symbols.iter().zip(&p.forces).zip(fr) {
                if let Some(k) = model.species_index(sym) {
                    force[k].reference.extend_from_slice(b);
                    force[k].predicted.extend_from_slice(a);
                }
            }
        }
    }
    energy.sort_by_key(|g| g.color);
    force.retain(|g| !g.reference.is_empty());
    let mut panels = vec![];
    if !energy.is_empty() {
        let n: usize = energy.iter().map(|g| g.reference.len()).sum();
        panels.push(ParityPanel {
            title: format!("energy per atom ({n} structures)"),
            quantity: "energy per atom".into(),
            unit: "eV/atom".into(),
            error_unit: ("meV/atom".into(), 1e3),
            groups: energy,
        });
    }
    if !force.is_empty() {
        let n: usize = force.iter().map(|g| g.reference.len() / 3).sum();
        panels.push(ParityPanel {
            title: format!("force components ({n} atoms)"),
            quantity: "force component".into(),
            unit: "eV/Å".into(),
            error_unit: ("meV/Å".into(), 1e3),
            groups: force,
        });
    }
    panels
}

/// A table cell of precision, recall or F1 at the cutoffs: the value, or why it is undefined or
/// trivial (no atom above e_c, none flagged, ...).
fn confusion_cells(c: &crate::stats::metrics::Confusion) -> [String; 3] {
    let high = c.tp + c.fn_;
    let flagged = c.tp + c.fp;
    let p = if flagged == 0 {
        "- (none flagged)".to_string()
    } else {
        format!("{:.3}", c.precision())
    };
    let r = if high == 0 {
        "- (no e > e_c)".to_string()
    } else {
        format!("{:.3}", c.recall())
    };
    let f = match c.degenerate() {
        Some(why) => format!("n/a: {why}"),
        None => format!("{:.3}", c.f1()),
    };
    [p, r, f]
}

/// The e_c markers of a species' force-error histogram: one per distinct e_c of the methods
/// (the methods named when they differ or there are several).
fn error_markers(cals: &[(Method, Calibration)]) -> Vec<Marker> {
    let mut groups: Vec<(f64, Vec<&str>)> = vec![];
    for (m, c) in cals {
        match groups
            .iter_mut()
            .find(|g| (g.0 - c.e_c).abs() <= 1e-9 * c.e_c.abs().max(1e-300))
        {
            Some(g) => g.1.push(m.name()),
            None => groups.push((c.e_c, vec![m.name()])),
        }
    }
    let one = groups.len() == 1;
    groups
        .into_iter()
        .map(|(e_c, names)| {
            let who = if one && names.len() > 1 {
                " (every method)".to_string()
            } else if one {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            };
            Marker::new(format!("e_c = {e_c:.3}{who}"), e_c)
        })
        .collect()
}

pub fn run(a: &ReportArgs) -> Result<()> {
    super::check_given(
        "--max-error",
        a.max_error,
        |e| e.is_finite() && e > 0.0,
        "a positive number of eV/Å",
    )?;
    super::check_given(
        "--p-halt",
        a.p_halt,
        |p| p > 0.0 && p < 1.0,
        "strictly between 0 and 1",
    )?;
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
    // Before anything is written: a report that fails half-way would leave its folder mixing
    // new figures with an earlier report's summary.
    if let Some(m) = methods.iter().find(|m| !available.contains(m)) {
        bail!(
            "{}: the model has no '{}' uncertainty (it has {}): leave it out of --methods, or \
             refit with `aceuq fit {}`",
            a.model.display(),
            m.name(),
            available
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", "),
            m.fit_option()
        );
    }
    for f in &a.formats {
        if f != "png" && f != "svg" {
            bail!("--formats takes png and/or svg, got '{f}'");
        }
    }
    let data = a.keys.read(&a.data)?;
    a.keys
        .require(&data, crate::io::extxyz::Label::Forces, "")?;
    a.keys.warn_missing(
        &data,
        crate::io::extxyz::Label::Energy,
        "energy errors are reported only for frames with an energy",
    );
    let preds = predictions(model, &data)?;
    let errors = force_errors(&data, &preds);
    if errors.iter().all(|e| e.is_empty()) {
        bail!("the data has no reference forces (check --forces-key)");
    }
    if a.out.exists() && !a.out.is_dir() {
        bail!(
            "--out {} is a file: the report is a folder of figures (give a folder name)",
            a.out.display()
        );
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let napply = atoms_per_species(model, &data);
    let mut panels = vec![];
    let mut written: Vec<PathBuf> = vec![];
    // Predicted against reference values: the model's, the same for every method (once).
    let parity = parity_panels(model, &data, &preds);
    for ext in &a.formats {
        let p = a.out.join(format!("parity.{ext}"));
        ParityPlot {
            title: "predicted vs reference on this data",
            panels: &parity,
            columns: 2,
        }
        .write(&p)?;
        written.push(p);
    }
    // The force errors of each species (the same for every method) and each method's
    // calibration of them, for one histogram per species after the methods.
    let mut species_errors: Vec<SpeciesErrors> = vec![];
    for &m in &methods {
        let u = pot.per_atom(&data, m)?;
        let mut entries: Vec<Entry> = vec![];
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
                .filter(|_| !a.refit)
                .cloned();
            let from_model = stored.is_some();
            let cal = match stored {
                Some(c) => c,
                None => {
                    let mut opts = a.calibration_options(napply[sp]);
                    if m == Method::Gp {
                        // As `aceuq calibrate`: no upper cutoff beyond the GP's plateau.
                        opts.u_sup = pot.uq.gp.as_ref().map(|g| g.plateau(sp));
                    }
                    calibrate(name, m.name(), &es, &us, &opts)?
                }
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
            // Trivial splits (every atom above e_c = 0 and u_c = 0 scores F1 = 1) are skipped.
            let best = sw
                .best_informative_f1(MIN_HIGH_ERROR_ATOMS)
                .map(|(i, j, f)| {
                    (
                        sw.e_grid[i],
                        sw.u_grid[j],
                        f,
                        sw.confusion(i, j).chance_f1(),
                    )
                });
            let unit = if dimensionless { "" } else { "eV/Å" };
            let stem = format!("{}_{}", m.name(), name);
            match species_errors.iter_mut().find(|x| &x.0 == name) {
                Some(x) => x.2.push((m, cal.clone())),
                None => species_errors.push((name.clone(), es.clone(), vec![(m, cal.clone())])),
            }
            let upper = if cal.u_max.is_finite() {
                Marker::new(format!("upper u_max = {:.3}", cal.u_max), cal.u_max)
            } else {
                Marker::new("no upper cutoff (u_max = ∞)", cal.u_max)
            };
            for ext in &a.formats {
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
                        upper.clone(),
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
                let p = a.out.join(format!("{stem}_uq_vs_error.{ext}"));
                UqErrorPlot {
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
            entries.push(Entry {
                species: name.clone(),
                es: es.clone(),
                us: us.clone(),
                cal: cal.clone(),
            });
            panels.push(Panel {
                method: m,
                species: name.clone(),
                cal,
                from_model,
                n: es.len(),
                rho_atom: spearman_or_nan(&es, &us),
                rho_struct: spearman_or_nan(&se, &su),
                area,
                scale,
                at_cut,
                best,
                curve,
            });
        }
        if !entries.is_empty() {
            let unit = if matches!(m, Method::Gamma | Method::GammaLocal) {
                ""
            } else {
                "eV/Å"
            };
            for ext in &a.formats {
                written.extend(write_method_figures(&a.out, ext, m, unit, &entries)?);
            }
        }
    }
    if panels.is_empty() {
        bail!("no species with at least 10 labelled atoms in the data");
    }
    for (sp, es, cals) in &species_errors {
        let (_, first) = &cals[0];
        let efits: Vec<(String, _)> = first
            .error
            .candidates
            .iter()
            .map(|c| (c.dist.family().to_string(), c.dist))
            .collect();
        let markers = error_markers(cals);
        let title = if markers.len() > 1 {
            format!(
                "{sp}: force errors ({} atoms; fits of the {} calibration)",
                es.len(),
                cals[0].0.name()
            )
        } else {
            format!("{sp}: force errors ({} atoms)", es.len())
        };
        for ext in &a.formats {
            let p = a.out.join(format!("{sp}_force_errors.{ext}"));
            plot::histogram_with_fits(
                &p,
                &title,
                "force error |ΔF| (eV/Å)",
                es,
                &efits,
                markers.clone(),
            )?;
            written.push(p);
        }
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
    let given = a.fit_options_given();
    if !given.is_empty() && panels.iter().any(|p| p.from_model) {
        eprintln!(
            "note: {} only act on cutoffs fitted on this data; the model's own cutoffs are shown \
             where it has them (add --refit to fit all on this data)",
            given.join(", ")
        );
    }
    let (md, table) = summary(&a.model, &a.data, &panels, &parity);
    let md_path = a.out.join("summary.md");
    crate::io::container::write_atomic(&md_path, md.as_bytes())?;
    let removed = replace_manifest(&a.out, &written)?;
    if removed > 0 {
        eprintln!(
            "removed {removed} figures of an earlier report in this folder that this one does not draw"
        );
    }
    print!("{table}");
    eprintln!(
        "wrote {} figures and {} in {}",
        written.len(),
        md_path.display(),
        a.out.display()
    );
    Ok(())
}

/// The list of the figures a report wrote, kept in its folder.
const MANIFEST: &str = "report_files.txt";

/// Record the figures this report wrote in its folder, and remove those an earlier report
/// there wrote (listed in its record) that this one did not: a figure left from another
/// selection of methods would sit beside a summary that does not mention it. Only files the
/// earlier record names, inside the folder, are removed. Returns how many.
fn replace_manifest(dir: &Path, written: &[PathBuf]) -> Result<usize> {
    let path = dir.join(MANIFEST);
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let now: Vec<String> = written.iter().filter_map(|p| name(p)).collect();
    let mut removed = 0;
    if let Ok(before) = std::fs::read_to_string(&path) {
        for old in before.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // A bare file name (no folder part), not written this time, and a regular file.
            if Path::new(old).components().count() != 1 || now.iter().any(|n| n == old) {
                continue;
            }
            let p = dir.join(old);
            if p.is_file() && std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
    }
    let mut text = now.join("\n");
    text.push('\n');
    crate::io::container::write_atomic(&path, text.as_bytes())?;
    Ok(removed)
}

/// The accuracy table of the parity panels: quantity, group, n, RMSE, MAE (in the panel's error
/// unit) and the unit; an "all" row per panel of several groups.
fn accuracy_rows(parity: &[ParityPanel]) -> Vec<Vec<String>> {
    let mut rows = vec![];
    for p in parity {
        let (unit, f) = (&p.error_unit.0, p.error_unit.1);
        let row = |group: &str, st: &plot::ParityStats| {
            vec![
                p.quantity.clone(),
                group.to_string(),
                st.n.to_string(),
                format!("{:.2}", st.rmse * f),
                format!("{:.2}", st.mae * f),
                unit.clone(),
            ]
        };
        for g in &p.groups {
            rows.push(row(
                &g.label,
                &plot::parity_stats(&g.reference, &g.predicted),
            ));
        }
        if p.groups.len() > 1 {
            rows.push(row("all", &p.stats()));
        }
    }
    rows
}

fn summary(
    model: &Path,
    data: &[PathBuf],
    panels: &[Panel],
    parity: &[ParityPanel],
) -> (String, String) {
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
        "best F1 (e_c, u_c); chance",
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
            ]
            .into_iter()
            .chain(confusion_cells(&p.at_cut))
            .chain([p
                .best
                .map_or("none: no informative split".into(), |(e, u, f, c)| {
                    format!("{f:.3} ({e:.3}, {u:.3}); chance {c:.3}")
                })])
            .collect()
        })
        .collect();
    let acc_headers: Vec<String> = ["quantity", "group", "n", "RMSE", "MAE", "unit"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let acc_rows = accuracy_rows(parity);
    let model_headers: Vec<String> = [
        "method",
        "species",
        "cutoffs from",
        "e_c model",
        "u_c model",
        "upper cutoff",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let model_rows: Vec<Vec<String>> = panels
        .iter()
        .map(|p| {
            vec![
                p.method.name().to_string(),
                p.species.clone(),
                if p.from_model { "model" } else { "this data" }.to_string(),
                cutoff_model_text(&p.cal.error, p.cal.error_fit.as_ref()),
                cutoff_model_text(&p.cal.uncertainty, p.cal.uncertainty_fit.as_ref()),
                upper_text(&p.cal).0,
            ]
        })
        .collect();
    let upper_notes: Vec<String> = panels
        .iter()
        .map(|p| {
            format!(
                "{} / {}: {}",
                p.method.name(),
                p.species,
                upper_text(&p.cal).1
            )
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
    let _ = writeln!(
        md,
        "\nPrecision, recall and F1 are n/a where they say nothing about the uncertainty: no atom \
         above e_c (typical of in-distribution data, where the 1 - 1/N cutoff exceeds every \
         error), none flagged, or every atom high-error or flagged (F1 = 1 or 2b/(1 + b) \
         whatever the uncertainty). The best F1 is searched over a 60 x 60 grid of (e_c, u_c) \
         from 0, skipping such splits and those where more than half the atoms count as \
         high-error (e_c is a tail cutoff; there flagging nearly everything scores F1 near 1) or \
         fewer than {MIN_HIGH_ERROR_ATOMS} are (F1 = 1 on one atom is luck); \"none\" when no \
         grid point qualifies. Chance: the F1 of flagging as many atoms at \
         random, 2bq/(b + q) (b, q: high-error and flagged fractions), the level to beat."
    );
    let _ = writeln!(md, "\n## Accuracy on this data (`parity`)\n");
    if acc_rows.is_empty() {
        let _ = writeln!(md, "No reference energies or forces.");
    } else {
        md += &plot::markdown_table(&acc_headers, &acc_rows);
        let _ = writeln!(
            md,
            "\nEnergy per atom: predicted E/N against the reference, per composition; force \
             components: every Cartesian component of every atom with reference forces, per \
             species."
        );
    }
    let _ = writeln!(md, "\n## Cutoff models and upper cutoff\n");
    md += &plot::markdown_table(&model_headers, &model_rows);
    let _ = writeln!(md);
    for n in &upper_notes {
        let _ = writeln!(md, "- {n}");
    }
    for p in panels {
        // The upper rule's reason is in its note already.
        let reason = p.cal.conditional.as_ref().and_then(|c| c.reason.as_deref());
        for w in &p.cal.warnings {
            if reason.is_some_and(|r| w.ends_with(r)) {
                continue;
            }
            let _ = writeln!(md, "- warning, {} / {}: {w}", p.method.name(), p.species);
        }
    }
    let _ = writeln!(
        md,
        "\nFigures: `parity` (predicted vs reference energy per atom and force components, once), \
         `<species>_force_errors` (force-error histogram with its fits and e_c, once per species: \
         the errors are the model's, not the method's); per method and species \
         `<method>_<species>_uncertainty` (histogram, fits, cutoffs; a cutoff beyond the data's \
         range is an arrow at the right edge), `_sweep_f1` / `_precision` / `_recall` (trivial \
         splits grey), `_calibration` and `_uq_vs_error` (uncertainty against force error, not a \
         parity plot)."
    );
    let _ = writeln!(
        md,
        "\nFigures per method: `<method>_qq` (sample vs model quantiles: points on y = x follow the \
         model; the body alone is drawn too, so one sees where a tail departs from it), \
         `<method>_exceedance` (the same on a log probability axis down to 1/N) and \
         `<method>_upper` (force error vs uncertainty with the median error 1.538 s(u) and the \
         upper cutoff)."
    );
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
    let mut console = text_table(&headers, &rows);
    console += "\n";
    if !acc_rows.is_empty() {
        console += "Accuracy on this data (parity):\n";
        console += &text_table(&acc_headers, &acc_rows);
        console += "\n";
    }
    console += &text_table(&model_headers, &model_rows);
    console += "\nUpper cutoffs:\n";
    for n in &upper_notes {
        console += &format!("  {n}\n");
    }
    (md, console)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{draw_gamma, draw_gpd, draw_maxwell, rng};

    /// Output directory of a test; kept after it so that a person can look at the figures.
    fn out_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join("aceuq-report-tests").join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Checks that `path` is a whole PNG: the signature, an IHDR first (returns its width and
    /// height), every chunk's CRC, at least one IDAT, and IEND last.
    fn check_png(path: &Path) -> (u32, u32) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        let (mut at, mut types) = (8, vec![]);
        let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
        while at < b.len() {
            let len = be(&b[at..]) as usize;
            let body = &b[at + 4..at + 8 + len];
            assert_eq!(
                crc32fast::hash(body),
                be(&b[at + 8 + len..]),
                "{}: bad CRC",
                path.display()
            );
            types.push(String::from_utf8_lossy(&body[..4]).to_string());
            at += 12 + len;
        }
        assert_eq!(at, b.len(), "{}: trailing bytes", path.display());
        assert_eq!(types.first().map(String::as_str), Some("IHDR"));
        assert_eq!(types.last().map(String::as_str), Some("IEND"));
        assert!(types.iter().any(|t| t == "IDAT"));
        (be(&b[16..]), be(&b[20..]))
    }

    /// Errors with a heavy tail (the cutoff model is a GPD tail) and an uncertainty that tracks
    /// them (an upper cutoff), and a species whose uncertainty does not (none).
    fn entries() -> Vec<Entry> {
        let mut r = rng(81);
        let mut ea = draw_maxwell(&mut r, 0.05, 3000);
        for (i, v) in draw_gpd(&mut r, 0.3, 0.05, 150).into_iter().enumerate() {
            ea[i * 20] = 0.15 + v;
        }
        let noise = draw_gamma(&mut r, 6.0, 1.0 / 6.0, ea.len());
        let ua: Vec<f64> = ea
            .iter()
            .zip(&noise)
            .map(|(e, z)| 0.8 * e * z + 0.01)
            .collect();
        let eb = draw_maxwell(&mut r, 0.04, 600);
        let ub = draw_gamma(&mut r, 3.0, 0.02, 600);
        [("Li", ea, ua), ("Mg", eb, ub)]
            .into_iter()
            .map(|(sp, es, us)| {
                let cal = calibrate(
                    sp,
                    "ensemble",
                    &es,
                    &us,
                    &CalibrationOptions::new(es.len() as u64),
                )
                .unwrap();
                Entry {
                    species: sp.into(),
                    es,
                    us,
                    cal,
                }
            })
            .collect()
    }

    #[test]
    fn report_writes_qq_exceedance_and_upper_figures() {
        let dir = out_dir("figures");
        let en = entries();
        let li = &en[0].cal;
        assert_eq!(li.error_fit.as_ref().unwrap().rule, CutoffRule::Tail);
        let files = write_method_figures(&dir, "png", Method::Ensemble, "eV/Å", &en).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "ensemble_qq.png",
                "ensemble_exceedance.png",
                "ensemble_upper.png"
            ]
        );
        // Two species: two rows of (errors, uncertainties) panels; two upper panels in a row.
        for (f, size) in files.iter().zip([(1720, 1490), (1720, 1490), (1720, 770)]) {
            assert_eq!(check_png(f), size, "{}", f.display());
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len > 30_000, "{}: {len} bytes", f.display());
        }

        // The summary's words for the models and the upper rule.
        let e = cutoff_model_text(&li.error, li.error_fit.as_ref());
        assert!(
            e.starts_with("maxwell body + gpd tail above q0.") && e.contains("xi = "),
            "{e}"
        );
        assert!(e.ends_with(": passed") || e.ends_with(": failed"), "{e}");
        assert!(cutoff_model_text(&li.error, None).contains("no tail record"));
        let (cell, detail) = upper_text(li);
        assert!(cell.starts_with("conditional: u_max = "), "{cell}");
        assert!(detail.starts_with("s(u) = "), "{detail}");
        let (cell, detail) = upper_text(&en[1].cal);
        assert_eq!(cell, "conditional: none (see notes)");
        assert!(detail.contains("no upper cutoff: "), "{detail}");
    }

    #[test]
    fn report_takes_the_cutoff_options_of_calibrate() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut v = vec![
                "aceuq", "report", "-m", "m.aceuq", "--data", "d.xyz", "-o", "o",
            ];
            v.extend_from_slice(extra);
            match crate::cli::Cli::try_parse_from(v).map(|c| c.command) {
                Ok(crate::cli::Command::Report(a)) => Ok(a),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e),
            }
        };
        let a = parse(&[]).unwrap();
        assert!(!a.refit && a.fit_options_given().is_empty());
        assert_eq!(a.calibration_options(1000), CalibrationOptions::new(1000));
        let a = parse(&[
            "--refit",
            "--tail",
            "body",
            "--upper-rule",
            "ratio",
            "--max-error",
            "0.5",
            "--p-halt",
            "0.2",
        ])
        .unwrap();
        assert!(a.refit);
        let o = a.calibration_options(1);
        assert_eq!(
            (o.n_apply, o.tail, o.upper_rule, o.e_max, o.p_halt),
            (2, TailPolicy::Body, UpperRule::Ratio, 0.5, 0.2)
        );
        assert_eq!(a.fit_options_given().len(), 4);
        assert!(parse(&["--tail", "gpd"]).is_err());
        assert!(parse(&["--upper-rule", "linear"]).is_err());
    }

    /// `aceuq report` end to end on a small fitted model: the per-method figures are written
    /// and the summary names the cutoff models; --refit with --upper-rule ratio fits here.
    /// A report into the folder of an earlier one removes the earlier figures it does not draw
    /// (named in the earlier record), and nothing else: not the user's files, not a path
    /// outside the folder.
    #[test]
    fn a_report_removes_only_the_stale_figures_of_an_earlier_one() {
        let dir = out_dir("manifest");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["gamma_qq.png", "distance_qq.png", "notes.txt"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let outside = dir.parent().unwrap().join("outside.png");
        std::fs::write(&outside, "x").unwrap();
        std::fs::write(
            dir.join(MANIFEST),
            "gamma_qq.png\ndistance_qq.png\n../outside.png\n",
        )
        .unwrap();
        let n = replace_manifest(&dir, &[dir.join("gamma_qq.png")]).unwrap();
        assert_eq!(n, 1);
        assert!(dir.join("gamma_qq.png").exists() && dir.join("notes.txt").exists());
        assert!(!dir.join("distance_qq.png").exists());
        assert!(outside.exists());
        assert_eq!(
            std::fs::read_to_string(dir.join(MANIFEST)).unwrap(),
            "gamma_qq.png\n"
        );
        let _ = std::fs::remove_file(outside);
    }

    #[test]
    fn report_runs_end_to_end_with_the_new_figures() {
        let dir = out_dir("run");
        let (mut pot, valid) = crate::testing::clustered_potential(2);
        let model = dir.join("m.aceuq");
        let data = dir.join("valid.xyz");
        crate::io::extxyz::write_file_atomic(
            &data,
            valid.iter(),
            &crate::io::extxyz::WriteOptions::lossless(),
        )
        .unwrap();
        // A stored calibration (from `aceuq calibrate`).
        let cal = crate::calibration::calibrate_potential(
            &pot,
            &valid,
            &[],
            &[10_000, 10_000],
            &Default::default(),
            &[Method::GammaLocal],
        )
        .unwrap();
        pot.uq.calibration = cal.calibration;
        pot.save(&model).unwrap();
        let methods = pot.uq.methods();
        assert_eq!(methods, [Method::GammaLocal]);
        let args = |out: &Path, refit: bool, rule: Option<UpperRule>| ReportArgs {
            model: model.clone(),
            data: vec![data.clone()],
            out: out.to_path_buf(),
            methods: vec![],
            formats: vec!["png".into()],
            refit,
            tail: None,
            upper_rule: rule,
            max_error: None,
            p_halt: None,
            keys: DataKeys {
                energy_key: "energy".into(),
                forces_key: "forces".into(),
            },
        };
        let out = dir.join("default");
        run(&args(&out, false, None)).unwrap();
        for m in &methods {
            for kind in ["qq", "exceedance", "upper"] {
                check_png(&out.join(format!("{}_{kind}.png", m.name())));
            }
        }
        // A true parity plot (two panels side by side), the force errors once per species, the
        // uncertainty-vs-error scatter under an honest name.
        assert_eq!(check_png(&out.join("parity.png")), (1640, 950));
        for sp in ["Al", "Mg"] {
            check_png(&out.join(format!("{sp}_force_errors.png")));
            check_png(&out.join(format!("gamma_local_{sp}_uq_vs_error.png")));
            assert!(!out.join(format!("gamma_local_{sp}_errors.png")).exists());
        }
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with("_parity.png")),
            "{names:?}"
        );
        let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(md.contains("## Cutoff models and upper cutoff"), "{md}");
        // The summary names the parity plot's RMSE: one row per species of force components,
        // one for the composition's energies, in meV.
        assert!(md.contains("## Accuracy on this data (`parity`)"), "{md}");
        let acc = |q: &str, g: &str| -> f64 {
            let l = md
                .lines()
                .find(|l| l.starts_with(&format!("| {q} ")) && l.contains(&format!("| {g} ")))
                .unwrap_or_else(|| panic!("{q} / {g}: {md}"));
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            assert_eq!(
                cells[6],
                if q == "energy per atom" {
                    "meV/atom"
                } else {
                    "meV/Å"
                }
            );
            cells[4].parse().unwrap()
        };
        let (rmse_al, rmse_mg) = (acc("force component", "Al"), acc("force component", "Mg"));
        assert!(rmse_al > 0.0 && rmse_mg > 0.0 && acc("force component", "all") > 0.0);
        assert!(acc("energy per atom", "Al+Mg") >= 0.0);
        // Cross-check against the fit's own metrics (meV/Å per component, all atoms).
        let pot2 = load_model(&model).unwrap();
        let m = crate::model::fit::evaluate(&pot2.model, &valid, "valid").unwrap();
        let all = acc("force component", "all");
        assert!(
            (all - m.force_rmse).abs() < 0.01 * m.force_rmse,
            "{all} vs {}",
            m.force_rmse
        );
        // No trivial "best F1 1.000 (0.000, 0.000)".
        assert!(!md.contains("1.000 (0.000, 0.000)"), "{md}");
        // The cutoffs come from the model; with --refit from this data.
        let row = |md: &str, m: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {m} ")) && l.contains("body"))
                .unwrap_or_else(|| panic!("{m}: {md}"))
                .to_string()
        };
        assert!(row(&md, "gamma_local").contains("| model "), "{md}");
        let out = dir.join("refit");
        run(&args(&out, true, Some(UpperRule::Ratio))).unwrap();
        let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
        let r = row(&md, "gamma_local");
        assert!(
            r.contains("| this data ") && r.contains("ratio: u_max = "),
            "{md}"
        );
        check_png(&out.join("gamma_local_upper.png"));
    }
}
