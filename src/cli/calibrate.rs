//! `aceuq calibrate`: statistical cutoffs per species and uncertainty method (Annevelink & Viswanathan),
//! stored in the model for `fix ace/uq/watch ... lower auto upper auto`; for `gamma_local` also
//! per (species, cluster), the validation atoms grouped by the cluster that graded them
//! ([`crate::stats::cutoff::calibrate_clusters`]; clusters with too few atoms keep the species
//! cutoffs).

use super::{ForceKey, load_model};
use crate::calibration::{CalibrateSettings, calibrate_potential, cluster_header};
use crate::stats::cutoff::{Calibration, MIN_CLUSTER_ATOMS, UpperRule, predictive_exceedances};
use crate::stats::tail::TailPolicy;
use crate::uq::Method;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Arguments of `aceuq calibrate`.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// Model file (*.aceuq) with uncertainty estimators, or a pacemaker potential (.yaml, .yace,
    /// .ace) with its active-set inverse (--active-set).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Pacemaker potentials: the active-set inverse whose gamma is calibrated (default: the
    /// potential's name with .asi).
    #[arg(long)]
    pub active_set: Option<PathBuf>,
    /// Pacemaker potentials: the clustered local active sets whose gamma_local is calibrated
    /// too (default: the active set's name with .lasi, if that file exists).
    #[arg(long)]
    pub local_active_set: Option<PathBuf>,
    /// Validation data (labelled extended XYZ not used in the fit); may be repeated.
    #[arg(long, required = true, num_args = 1..)]
    pub valid: Vec<PathBuf>,
    /// Number of atoms the cutoffs will be applied to (e.g. frames × atoms of the MD run you
    /// will watch); split over species in the proportions of the validation data.
    #[arg(long, conflicts_with = "pool", allow_negative_numbers = true)]
    pub pool_size: Option<u64>,
    /// Or: a file of the frames the cutoffs will be applied to; atoms are counted per species.
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// Force error (eV/Å) at which the MD is considered unstable: the upper cutoff is the
    /// uncertainty at which such an error becomes likely (`--upper-rule`).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub max_error: f64,
    /// Labelled high-uncertainty structures (e.g. candidates the watch dumped, labelled with
    /// the reference method); they enter the upper cutoff's error-vs-uncertainty fit only.
    #[arg(long, num_args = 1..)]
    pub high: Vec<PathBuf>,
    /// Model of the 1 - 1/N quantiles: auto (the body family if it passes KS and
    /// Anderson-Darling and no more validation values lie above its cutoff than N allows, else
    /// a generalized Pareto tail), tail, or body (the seeds' rule).
    #[arg(long, default_value = "auto")]
    pub tail: TailPolicy,
    /// Upper cutoff: conditional (fit e | u ~ Maxwell(s(u)), halt where P(e > max-error | u)
    /// reaches --p-halt) or ratio (the seeds' linear mapping, for comparison).
    #[arg(long, default_value = "conditional")]
    pub upper_rule: UpperRule,
    /// Conditional rule: the probability of an error above --max-error at which to halt.
    #[arg(long, default_value_t = 0.5, allow_hyphen_values = true)]
    pub p_halt: f64,
    /// Methods to calibrate (default: all the model has).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<Method>,
    /// Output model (default: overwrite --model atomically). Pacemaker potentials: the cutoffs
    /// file written beside them (default: the potential's name with .cutoffs.toml).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub keys: ForceKey,
}

/// Print rows as an aligned text table.
pub fn text_table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (k, c) in r.iter().enumerate() {
            w[k] = w[k].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(k, c)| format!("{c:<width$}", width = w[k]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(headers) + "\n";
    for r in rows {
        out += &(line(r) + "\n");
    }
    out
}

/// Number of atoms per model species in `data`.
pub fn atoms_per_species(model: &crate::model::Model, data: &[crate::Structure]) -> Vec<u64> {
    atoms_per_name(&model.species, data)
}

/// Number of atoms of each of `species` in `data`.
fn atoms_per_name(species: &[String], data: &[crate::Structure]) -> Vec<u64> {
    let mut n = vec![0u64; species.len()];
    for s in data {
        for sym in &s.symbols {
            if let Some(k) = species.iter().position(|x| x == sym) {
                n[k] += 1;
            }
        }
    }
    n
}

/// How widely a held-out check of N atoms will scatter around its one expected exceedance of
/// each u_c, given the calibration atoms behind it: the range over the entries of P(4 or more)
/// ([`predictive_exceedances`]), against the 0.019 of a Poisson count. None without stored
/// calibration counts.
fn spread_note(cals: &[Calibration]) -> Option<String> {
    let mut p: Vec<f64> = cals
        .iter()
        .filter_map(|c| {
            let f = c.uncertainty_fit.as_ref()?;
            let atoms = usize::try_from(c.n_apply).ok()?;
            Some(predictive_exceedances(f.n, f.above?, atoms, 4)?.at_least)
        })
        .collect();
    if p.is_empty() {
        return None;
    }
    p.sort_by(f64::total_cmp);
    Some(format!(
        "sampling spread: a check on N held-out atoms drawn like these would see 4 or more \
         atoms above an entry's u_c, which is meant for about 1, with probability {:.3} to {:.3} \
         over the {} entries (median {:.3}; a Poisson count: 0.019) from the calibration \
         sample alone; more calibration atoms per entry narrow it (`aceuq check-cutoffs` \
         prints each count's probability)",
        p[0],
        p[p.len() - 1],
        p.len(),
        p[p.len() / 2]
    ))
}

pub fn run(a: &CalibrateArgs) -> Result<()> {
    super::check_number(
        "--max-error",
        a.max_error,
        a.max_error.is_finite() && a.max_error > 0.0,
        "a positive number of eV/Å",
    )?;
    super::check_number(
        "--p-halt",
        a.p_halt,
        a.p_halt > 0.0 && a.p_halt < 1.0,
        "strictly between 0 and 1",
    )?;
    if a.pool_size.is_some_and(|n| n < 2) {
        bail!(
            "--pool-size {} is too small: give the number of atoms the cutoffs will be applied \
             to (frames x atoms of the run you will watch, at least 2)",
            a.pool_size.unwrap_or(0)
        );
    }
    // 10^15 atom checks is far beyond any MD run (10^6 atoms checked every step for 10^9
    // steps); larger numbers are a slip, and above 2^63 the stored table cannot hold them.
    const MAX_POOL: u64 = 1_000_000_000_000_000;
    if let Some(n) = a.pool_size.filter(|&n| n > MAX_POOL) {
        bail!(
            "--pool-size {n} is too large: give the number of atoms the cutoffs will be applied \
             to (frames x atoms of the run you will watch), at most {MAX_POOL}"
        );
    }
    if crate::pace::is_pacemaker_potential(&a.model) {
        return run_pace(a);
    }
    if let Some(asi) = &a.active_set {
        bail!(
            "--active-set {}: only for pacemaker potentials (.yaml, .yace, .ace); an aceuq model \
             carries its own active sets",
            asi.display()
        );
    }
    let mut pot = load_model(&a.model)?;
    let model = &pot.model;
    let available = pot.uq.methods();
    if available.is_empty() {
        bail!(
            "{} has no uncertainty estimators: fit it with e.g. `aceuq fit --active-set --ensemble 4 --distance`",
            a.model.display()
        );
    }
    let methods = if a.methods.is_empty() {
        available.clone()
    } else {
        a.methods.clone()
    };
    for m in &methods {
        if !available.contains(m) {
            bail!(
                "{} has no '{}' uncertainty (it has: {})",
                a.model.display(),
                m.name(),
                names(&available)
            );
        }
    }
    let (valid, high) = read_data(a)?;
    warn_training_files(a, &model.fit_info.train_files);
    let nvalid = atoms_per_species(model, &valid);
    let napply = napply(a, &model.species, &nvalid, true)?;
    let settings = settings(a, &model.species, &nvalid, &napply, high_atoms(&high));
    let result = calibrate_potential(&pot, &valid, &high, &napply, &settings, &methods)?;
    print_result(a, &result);
    if result.rows.is_empty() {
        bail!(
            "nothing was calibrated: no species has 10 or more validation atoms in {} (see the \
             warnings above); {} is not written, and a stored calibration is kept as it was. \
             Give more labelled frames with --valid",
            a.valid
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            a.out.as_ref().unwrap_or(&a.model).display()
        );
    }
    if let (Some(old), None, false) = (&pot.uq.halt_rule, &result.halt_rule, a.methods.is_empty()) {
        crate::progress::warn(&format!(
            "the stored halting rule ({}) is dropped: after this run the jurors (gamma with \
             ensemble, distance, gp or contact) no longer share one fitted error relation with \
             the same --max-error and --p-halt, so no rule can be scored; the watch's `upper \
             auto` uses its default, the frame rule of the watched method. Calibrate the \
             methods together (without --methods) to choose one again",
            match (old.rule.as_str(), &old.juror) {
                ("vote", _) => format!("the vote of {}", old.jury.join(", ")),
                ("juror", Some(j)) => format!("{j}'s frame rule"),
                _ => "the frame rule".to_string(),
            }
        ));
    }
    pot.uq.calibration = result.calibration;
    pot.uq.halt_rule = result.halt_rule;
    let out = a.out.as_ref().unwrap_or(&a.model);
    pot.save(out)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// The validation and high-uncertainty structures, every frame with reference forces (the
/// upper cutoffs are fitted to force errors).
fn read_data(a: &CalibrateArgs) -> Result<(Vec<crate::Structure>, Vec<crate::Structure>)> {
    let keys = a.keys.keys();
    let valid = keys.read(&a.valid)?;
    let high = if a.high.is_empty() {
        vec![]
    } else {
        keys.read(&a.high)?
    };
    for data in [&valid, &high] {
        keys.require(data, crate::io::extxyz::Label::Forces, "")?;
    }
    warn_absurd_forces(&valid, "--valid");
    warn_absurd_forces(&high, "--high");
    super::warn_repeated_frames(&[("--valid", &valid), ("--high", &high)], &|_, _| {
        "each copy counts its atoms again in every fit of the calibration, and the sampling \
             spread it states is narrower than the data support"
    });
    Ok((valid, high))
}

/// A warning for each --valid or --high file that is one of the model's training files (as
/// the fit recorded them, resolved from here): its atoms are the ones the fit and the active
/// set were made from, so their errors and uncertainties are low by construction (gamma at
/// most 1) and every cutoff fitted to them is too low.
fn warn_training_files(a: &CalibrateArgs, train_files: &[String]) {
    let train: Vec<std::path::PathBuf> = train_files
        .iter()
        .filter_map(|t| std::fs::canonicalize(t).ok())
        .collect();
    for (flag, files) in [("--valid", &a.valid), ("--high", &a.high)] {
        for f in files {
            if std::fs::canonicalize(f).is_ok_and(|c| train.contains(&c)) {
                crate::progress::warn(&format!(
                    "{flag} {}: the model was fitted to this file (its fit names it as --train \
                     data; paths as given then, resolved from this folder): its errors and \
                     uncertainties are low by construction (gamma at most 1 on the active set's \
                     own atoms), so the cutoffs come out too low; calibrate on frames the fit \
                     did not train on",
                    f.display()
                ));
            }
        }
    }
}

// Reference forces above this (eV/Å) are no MD force: a unit slip or a damaged label.
use crate::structure::limits::SUSPECT_FORCE as ABSURD_FORCE;

/// A warning naming the frames whose reference forces exceed [`ABSURD_FORCE`]: one such label
/// makes that atom's force error huge, which the error fits of every method then try to explain
/// (the upper cutoffs can vanish, e_c balloon).
fn warn_absurd_forces(data: &[crate::Structure], option: &str) {
    let bad: Vec<String> = data
        .iter()
        .filter_map(|s| {
            let (a, v) = s.largest_force()?;
            (v > ABSURD_FORCE || v.is_nan())
                .then(|| format!("{}, atom {} ({v:.3e} eV/Å)", s.origin, a + 1))
        })
        .collect();
    if let Some(first) = bad.first() {
        crate::progress::warn(&format!(
            "{option}: {} frame(s) have a reference force above {ABSURD_FORCE} eV/Å, e.g. {first}: \
             check those labels (units, a damaged line); every method's error fit includes them",
            bad.len()
        ));
    }
}

fn high_atoms(high: &[crate::Structure]) -> usize {
    high.iter().map(|s| s.len()).sum()
}

/// N per species: atoms of --pool, or --pool-size split in the proportions of `nvalid`.
/// `strict` (aceuq models, which calibrate every species): a species left with N < 2 is an
/// error that says why (pacemaker potentials skip elements the validation data lack).
fn napply(a: &CalibrateArgs, species: &[String], nvalid: &[u64], strict: bool) -> Result<Vec<u64>> {
    let n = napply_split(a, species, nvalid)?;
    if strict && let Some(k) = (0..species.len()).find(|&k| n[k] < 2) {
        let s = &species[k];
        if nvalid[k] == 0 && a.pool.is_none() {
            bail!(
                "the validation data (--valid) have no {s} atoms, so --pool-size gives {s} no \
                 share of N: the cutoffs of each species are fitted on its own validation atoms; \
                 add labelled frames with {s}"
            );
        }
        if let Some(p) = &a.pool {
            bail!(
                "the pool {} has {} {s} atoms, too few to set N for {s} (every species of the \
                 model is calibrated): give --pool-size with the number of atoms of the run you \
                 will watch instead",
                p.display(),
                n[k]
            );
        }
    }
    Ok(n)
}

fn napply_split(a: &CalibrateArgs, species: &[String], nvalid: &[u64]) -> Result<Vec<u64>> {
    Ok(match (&a.pool, a.pool_size) {
        (Some(p), _) => {
            let frames = crate::io::extxyz::read_file(p, &Default::default())
                .with_context(|| format!("reading the pool {}", p.display()))?;
            atoms_per_name(species, &frames)
        }
        (None, Some(n)) => {
            let total: u64 = nvalid.iter().sum::<u64>().max(1);
            nvalid
                .iter()
                .map(|&k| ((n as f64) * k as f64 / total as f64).round() as u64)
                .collect()
        }
        (None, None) => {
            bail!("give --pool-size N (atoms the cutoffs will be applied to) or --pool FILE")
        }
    })
}

/// The settings of this run, with its provenance line.
fn settings(
    a: &CalibrateArgs,
    species: &[String],
    nvalid: &[u64],
    napply: &[u64],
    high_atoms: usize,
) -> CalibrateSettings {
    let files = |f: &[PathBuf]| {
        f.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    CalibrateSettings {
        max_error: a.max_error,
        tail: a.tail,
        upper_rule: a.upper_rule,
        p_halt: a.p_halt,
        provenance: Some(format!(
            "aceuq {} calibrate {}: valid {} ({} atoms){}; N {}; tail {}, upper {} (e_max {} \
             eV/A{})",
            env!("CARGO_PKG_VERSION"),
            crate::progress::utc_now(),
            files(&a.valid),
            nvalid.iter().sum::<u64>(),
            if a.high.is_empty() {
                String::new()
            } else {
                format!(", high {} ({high_atoms} atoms)", files(&a.high))
            },
            napply
                .iter()
                .zip(species)
                .map(|(n, s)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            a.tail.name(),
            a.upper_rule.name(),
            a.max_error,
            if a.upper_rule == UpperRule::Conditional {
                format!(", p_halt {}", a.p_halt)
            } else {
                String::new()
            }
        )),
    }
}

/// Warnings, caveats, the table and what its columns mean.
fn print_result(a: &CalibrateArgs, result: &crate::calibration::CalibrationResult) {
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    for w in &result.caveats {
        eprintln!("WARNING: {w}");
    }
    print!("{}", text_table(&Calibration::table_header(), &result.rows));
    println!(
        "\nu_c: lower cutoff (P(u > u_c) = 1/N: above it an atom is worth labelling). u_max: upper \
         cutoff, {}; inf: none, halt on another method. KS and AD p-values are optimistic \
         (parameters fitted on the same data).",
        match a.upper_rule {
            UpperRule::Conditional => format!(
                "where P(force error > {} eV/Å | u) reaches {}",
                a.max_error, a.p_halt
            ),
            UpperRule::Ratio => format!(
                "the seeds' linear mapping of {} eV/Å onto the uncertainty scale",
                a.max_error
            ),
        }
    );
    if !result.cluster_rows.is_empty() {
        println!(
            "\n{} per cluster (N of the species split over its clusters in proportion to their \
             validation atoms; a cluster with fewer than {MIN_CLUSTER_ATOMS} atoms, or whose fit \
             fails, uses the species cutoffs):",
            Method::GammaLocal.name()
        );
        print!("{}", text_table(&cluster_header(), &result.cluster_rows));
    }
    if let Some(note) = spread_note(&result.calibration) {
        println!("\n{note}");
    }
    if let Some(r) = &result.halt_rule {
        println!(
            "\nhalting rule of the watch's upper auto: {} ({}; upper vote or upper frame \
             choose one explicitly)",
            if r.rule == "juror" {
                format!("{}'s frame rule", r.sitting().join(", "))
            } else if r.votes() {
                format!("upper vote of {}", r.jury.join(", "))
            } else {
                "gamma's frame rule".to_string()
            },
            r.note()
        );
    }
}

/// `aceuq calibrate` for a pacemaker potential: `gamma` of its active-set inverse and
/// `gamma_local` of its clustered active sets (if any), cutoffs written to a file beside the
/// potential (which, like the `.asi` and `.lasi`, is not changed).
fn run_pace(a: &CalibrateArgs) -> Result<()> {
    if a.methods
        .iter()
        .any(|&m| m != Method::Gamma && m != Method::GammaLocal)
    {
        bail!(
            "{}: a pacemaker potential has only the 'gamma' grade of its active-set inverse and \
             the 'gamma_local' grade of its clustered active sets (remove --methods or give \
             --methods gamma,gamma_local)",
            a.model.display()
        );
    }
    let asi_path = super::pacemaker_active_set(&a.model, a.active_set.as_deref())?;
    let want_local = a.methods.is_empty() || a.methods.contains(&Method::GammaLocal);
    let local_path = if want_local {
        super::pacemaker_local_active_set(&asi_path, a.local_active_set.as_deref())?
    } else {
        None
    };
    if a.methods.contains(&Method::GammaLocal) && local_path.is_none() {
        bail!(
            "--methods gamma_local: no clustered active sets ({} does not exist): build them \
             with `aceuq activeset --model {} --data train.xyz --clusters K`, or give \
             --local-active-set pot.lasi",
            asi_path.with_extension("lasi").display(),
            a.model.display()
        );
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.model.with_extension("cutoffs.toml"));
    if out.extension().and_then(|e| e.to_str()) != Some("toml") {
        bail!(
            "--out {}: the cutoffs of a pacemaker potential are written as a TOML file beside \
             it (the potential and its .asi are not changed): give a name ending in .toml",
            out.display()
        );
    }
    let pot = crate::pace::PacePotential::load(&a.model)
        .with_context(|| format!("cannot load {}", a.model.display()))?;
    let asi = crate::pace::read_active_set(&asi_path, &pot)
        .with_context(|| format!("cannot load {}", asi_path.display()))?;
    let (local_path, local) =
        super::load_pacemaker_local(&pot, &a.model, local_path, a.local_active_set.is_some())?;
    if a.methods.contains(&Method::GammaLocal) && local.is_none() {
        bail!("--methods gamma_local: the clustered active sets could not be used (above)");
    }
    let methods: Vec<Method> = if a.methods.is_empty() {
        let mut m = vec![Method::Gamma];
        if local.is_some() {
            m.push(Method::GammaLocal);
        }
        m
    } else {
        a.methods.clone()
    };
    let elements = pot.model().elements.clone();
    let (valid, high) = read_data(a)?;
    let nvalid = atoms_per_name(&elements, &valid);
    let napply = napply(a, &elements, &nvalid, false)?;
    let settings = settings(a, &elements, &nvalid, &napply, high_atoms(&high));
    eprintln!(
        "{} ({}) with {}{}: {} of {} validation atoms",
        a.model.display(),
        pot.kind(),
        asi_path.display(),
        local_path
            .as_ref()
            .map(|p| format!(" and {}", p.display()))
            .unwrap_or_default(),
        names(&methods),
        nvalid.iter().sum::<u64>()
    );
    let result = crate::calibration::calibrate_pacemaker(
        &pot,
        &asi,
        local.as_ref(),
        &methods,
        &valid,
        &high,
        &napply,
        &settings,
    )?;
    print_result(a, &result);
    if result.calibration.is_empty() {
        bail!("no element had enough validation atoms: nothing written");
    }
    // The .lasi is named in the file only if its gamma_local was calibrated.
    let local_used = local_path
        .as_deref()
        .filter(|_| methods.contains(&Method::GammaLocal));
    let file = crate::pace::cutoffs::PaceCutoffs::new(
        &a.model,
        &asi_path,
        local_used,
        &elements,
        result.calibration,
    )?;
    file.save(&out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {}; in LAMMPS: pair_coeff * * {} {}{} {} {} (then fix ace/uq/watch ... lower auto \
         upper auto)",
        out.display(),
        a.model.display(),
        asi_path.display(),
        local_used
            .map(|p| format!(" {}", p.display()))
            .unwrap_or_default(),
        out.display(),
        elements.join(" ")
    );
    Ok(())
}

fn names(m: &[Method]) -> String {
    m.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
}
