//! `aceuq calibrate`: statistical cutoffs per species and uncertainty method (Annevelink & Viswanathan),
//! stored in the model for `fix ace/uq/watch ... lower auto upper auto`; for `gamma_local` also
//! per (species, cluster), the validation atoms grouped by the cluster that graded them
//! ([`crate::stats::cutoff::calibrate_clusters`]; clusters with too few atoms keep the species
//! cutoffs).

use super::{DataKeys, load_model};
use crate::calibration::{CalibrateSettings, calibrate_potential, cluster_header};
use crate::stats::cutoff::{Calibration, MIN_CLUSTER_ATOMS, UpperRule};
use crate::stats::tail::TailPolicy;
use crate::uq::Method;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Arguments of `aceuq calibrate`.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// Model file (*.aceuq) with uncertainty estimators.
    #[arg(long, short)]
    pub model: PathBuf,
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
    /// Anderson-Darling, else a generalized Pareto tail), tail, or body (the seeds' rule).
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
    /// Output model (default: overwrite --model atomically).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub keys: DataKeys,
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
    let mut n = vec![0u64; model.nspecies()];
    for s in data {
        for sym in &s.symbols {
            if let Some(k) = model.species_index(sym) {
                n[k] += 1;
            }
        }
    }
    n
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
    if a.pool_size.is_some_and(|n| n < 2) {
        bail!(
            "--pool-size {} is too small: give the number of atoms the cutoffs will be applied \
             to (frames x atoms of the run you will watch, at least 2)",
            a.pool_size.unwrap_or(0)
        );
    }
    let valid = a.keys.read(&a.valid)?;
    let high = if a.high.is_empty() {
        vec![]
    } else {
        a.keys.read(&a.high)?
    };
    // The upper cutoffs are fitted to force errors: every frame needs its reference forces.
    for data in [&valid, &high] {
        a.keys.require(data, crate::io::extxyz::Label::Forces, "")?;
    }
    let nvalid = atoms_per_species(model, &valid);
    let napply: Vec<u64> = match (&a.pool, a.pool_size) {
        (Some(p), _) => {
            let frames = crate::io::extxyz::read_file(p, &Default::default())
                .with_context(|| format!("reading the pool {}", p.display()))?;
            atoms_per_species(model, &frames)
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
    };
    let files = |f: &[PathBuf]| {
        f.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let settings = CalibrateSettings {
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
            if high.is_empty() {
                String::new()
            } else {
                format!(
                    ", high {} ({} atoms)",
                    files(&a.high),
                    high.iter().map(|s| s.len()).sum::<usize>()
                )
            },
            napply
                .iter()
                .zip(&model.species)
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
    };
    let result = calibrate_potential(&pot, &valid, &high, &napply, &settings, &methods)?;
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
    let cals = result.calibration;
    pot.uq.calibration = cals;
    let out = a.out.as_ref().unwrap_or(&a.model);
    pot.save(out)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn names(m: &[Method]) -> String {
    m.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
}
