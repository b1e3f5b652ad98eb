//! `aceuq fit`.

use super::DataKeys;
use crate::basis::{BasisConfig, SpeciesBasis};
use crate::model::fit::{self, FitConfig, Growth};
use crate::model::grow;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Arguments of `aceuq fit`. Flags override the config file, which overrides the defaults.
#[derive(clap::Args, Debug)]
pub struct FitArgs {
    /// Training data (extended XYZ with energies and forces); may be repeated.
    #[arg(long, required = true, num_args = 1..)]
    pub train: Vec<PathBuf>,
    /// Validation data: not fitted on, but they choose the ridge (`--ridge auto`), calibrate
    /// the ensemble and distance estimators and train the GP; errors are reported.
    #[arg(long, num_args = 1..)]
    pub valid: Vec<PathBuf>,
    /// Species of the model, comma separated (default: those in the training data).
    #[arg(long, value_delimiter = ',', value_parser = super::species_name)]
    pub species: Vec<String>,
    /// Output model file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// TOML file with [basis] and [fit] tables.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Cutoff radius (Å) [default: 5.5].
    #[arg(long, allow_hyphen_values = true)]
    pub cutoff: Option<f64>,
    /// Radial functions per body order, e.g. 12,8,5,3 (the count sets the maximum order)
    /// [default: 10,6,2].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, action = clap::ArgAction::Set)]
    pub nmax: Option<Vec<usize>>,
    /// Maximum angular degree per body order, e.g. 0,4,3,2 [default: 0,4,4].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, action = clap::ArgAction::Set)]
    pub lmax: Option<Vec<usize>>,
    /// Most distinct neighbour species in one function, per body order, e.g. 0,0,1: pair and
    /// three-body terms fully species-resolved, four-body terms one neighbour species at a time
    /// (0: no limit) [default: no limit].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, action = clap::ArgAction::Set)]
    pub max_species: Option<Vec<usize>>,
    /// Start of the radial resolution window (Å); default from the data.
    #[arg(long, allow_hyphen_values = true)]
    pub radial_inner: Option<f64>,
    /// Ridge regularization relative to column scale, or `auto` (the default): the value with
    /// the lowest validation error of a scan from 1e-9 to 1 (without --valid: on every fifth
    /// training structure held out, then refitted on all) [default: auto].
    #[arg(long, allow_hyphen_values = true)]
    pub ridge: Option<String>,
    /// Grow the basis on the validation data: fit the default basis, then larger ones
    /// (three- and four-body angular degree 6, then also a 7.5 Å cutoff) while the validation
    /// errors miss the target; keep the first that meets it, else the cheapest within 1.1x the
    /// lowest validation loss. Never past 10 fitted values per coefficient, 5000 coefficients
    /// (so not for three or more species) or half the available memory; the fit prints the
    /// plan. `auto` grows the default basis unless a basis flag or a [basis] table is given,
    /// `on` also grows a given basis, `off` never grows. Needs --valid [default: auto].
    #[arg(long)]
    pub grow_basis: Option<String>,
    /// Target of basis growth: validation force RMSE at most this fraction of the standard
    /// deviation of the validation force components [default: 0.1].
    #[arg(long, allow_hyphen_values = true)]
    pub target_force: Option<f64>,
    /// Target of basis growth: validation energy RMSE at most this many meV/atom [default: 3].
    #[arg(long, allow_hyphen_values = true)]
    pub target_energy: Option<f64>,
    /// Weight of the per-atom energy error. With a positive weight (the default) every training
    /// and validation frame needs an energy [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub energy_weight: Option<f64>,
    /// Weight of the force-component error. With a positive weight (the default) every training
    /// and validation frame needs forces [default: 0.01].
    #[arg(long, allow_hyphen_values = true)]
    pub force_weight: Option<f64>,
    /// Fit forces only (energy weight 0): energies are not fitted and need not be in the data.
    /// The one-body energies E0 stay 0 and the model's energies are only what its forces
    /// integrate to: unreliable as total energies, even as energy differences between
    /// compositions.
    #[arg(long, conflicts_with_all = ["energy_weight", "energy_only"])]
    pub force_only: bool,
    /// Fit energies only (force weight 0): forces are not fitted and need not be in the data.
    #[arg(long, conflicts_with = "force_weight")]
    pub energy_only: bool,
    /// Build global MaxVol active sets (uncertainty `gamma`).
    #[arg(long)]
    pub active_set: bool,
    /// Build clustered local active sets with K k-means clusters (uncertainty `gamma_local`).
    #[arg(long, conflicts_with = "clusters_by", allow_negative_numbers = true)]
    pub clusters: Option<usize>,
    /// Build clustered local active sets with one cluster per `config_type` label.
    #[arg(long, value_parser = ["config_type"])]
    pub clusters_by: Option<String>,
    /// Build an ensemble of N bootstrap members (uncertainty `ensemble`, calibrated on --valid).
    #[arg(long, allow_negative_numbers = true)]
    pub ensemble: Option<usize>,
    /// Build the latent-distance estimator (calibrated on --valid).
    #[arg(long)]
    pub distance: bool,
    /// Build the sparse Gaussian-process estimator (trained on --valid).
    #[arg(long)]
    pub gp: bool,
    /// Record the shortest distance of every species pair in the training data (uncertainty
    /// `contact`: an atom's closest neighbour relative to it).
    #[arg(long)]
    pub contact: bool,
    /// Print the basis size and stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub keys: DataKeys,
}

/// The fit config file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitFile {
    #[serde(default)]
    pub basis: BasisConfig,
    #[serde(default)]
    pub fit: FitConfig,
    #[serde(default)]
    pub uq: crate::uq::UqConfig,
}

/// Read a fit config file with errors that name the line.
pub fn read_config(path: &Path) -> Result<FitFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| 1 + text[..s.start].matches('\n').count());
        match line {
            Some(l) => anyhow::anyhow!("{}:{l}: {}", path.display(), e.message()),
            None => anyhow::anyhow!("{}: {}", path.display(), e.message()),
        }
    })
}

/// Species present in data, ordered by atomic number (then name).
pub fn species_in(data: &[crate::Structure]) -> Vec<String> {
    let mut v: Vec<String> = data
        .iter()
        .flat_map(|s| s.symbols.iter().cloned())
        .collect();
    v.sort();
    v.dedup();
    v.sort_by_key(|s| (crate::model::core::atomic_number(s), s.clone()));
    v
}

/// One line describing a basis: functions per species by body order, cutoff, species.
fn basis_line(b: &crate::basis::BasisConfig, species: &[String]) -> Result<String> {
    let sb = SpeciesBasis::generate(b, species.len())?;
    let by: Vec<String> = (1..=b.nmax.len())
        .map(|o| {
            (0..sb.len())
                .filter(|&f| sb.order(f) == o)
                .count()
                .to_string()
        })
        .collect();
    // Pairs with their own cutoff (the basis cutoff holds for the others).
    let mut pairs: Vec<String> = b
        .pair_cutoffs
        .iter()
        .map(|(k, v)| format!("{k} {v} Å"))
        .collect();
    pairs.sort();
    let pairs = if pairs.is_empty() {
        String::new()
    } else {
        format!(" ({})", pairs.join(", "))
    };
    Ok(format!(
        "{} functions per species (by order {}), cutoff {} Å{pairs}, species {}",
        sb.len(),
        by.join("/"),
        b.cutoff,
        species.join(",")
    ))
}

pub fn run(a: &FitArgs) -> Result<()> {
    use super::check_given;
    let non_negative = |v: f64| v.is_finite() && v >= 0.0;
    check_given(
        "--cutoff",
        a.cutoff,
        |v| v.is_finite() && v > 0.5 && v <= crate::basis::MAX_CUTOFF,
        &format!(
            "a number of Å above 0.5 and at most {}",
            crate::basis::MAX_CUTOFF
        ),
    )?;
    check_given(
        "--radial-inner",
        a.radial_inner,
        non_negative,
        "a number of Å ≥ 0 (and below the cutoff)",
    )?;
    let ridge = a
        .ridge
        .as_deref()
        .map(fit::Ridge::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--ridge {e}"))?;
    check_given(
        "--energy-weight",
        a.energy_weight,
        non_negative,
        "a number ≥ 0",
    )?;
    check_given(
        "--force-weight",
        a.force_weight,
        non_negative,
        "a number ≥ 0",
    )?;
    let grow = a
        .grow_basis
        .as_deref()
        .map(Growth::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--grow-basis {e}"))?;
    check_given(
        "--target-force",
        a.target_force,
        |v| v.is_finite() && v > 0.0,
        "a positive fraction of the force spread, e.g. 0.1",
    )?;
    check_given(
        "--target-energy",
        a.target_energy,
        |v| v.is_finite() && v > 0.0,
        "a positive number of meV/atom",
    )?;
    let mut cfg = match &a.config {
        Some(p) => read_config(p)?,
        None => FitFile::default(),
    };
    if let Some(v) = a.cutoff {
        cfg.basis.cutoff = v;
    }
    if let Some(v) = &a.nmax {
        cfg.basis.nmax = v.clone();
    }
    if let Some(v) = &a.lmax {
        cfg.basis.lmax = v.clone();
    }
    if let Some(v) = &a.max_species {
        cfg.basis.max_species = v.clone();
    }
    if let Some(v) = a.radial_inner {
        cfg.basis.radial_inner = Some(v);
    }
    if let Some(v) = ridge {
        cfg.fit.ridge = v;
    }
    if let Some(v) = grow {
        cfg.fit.grow_basis = v;
    }
    if let Some(v) = a.target_force {
        cfg.fit.target_force = v;
    }
    if let Some(v) = a.target_energy {
        cfg.fit.target_energy = v;
    }
    if let Some(v) = a.energy_weight {
        cfg.fit.energy_weight = v;
    }
    if let Some(v) = a.force_weight {
        cfg.fit.force_weight = v;
    }
    if a.force_only {
        cfg.fit.energy_weight = 0.0;
    }
    if a.energy_only {
        cfg.fit.force_weight = 0.0;
    }
    if a.active_set {
        cfg.uq.active_set = true;
    }
    if let Some(k) = a.clusters {
        if k == 0 {
            bail!("--clusters needs at least 1 cluster");
        }
        cfg.uq.clusters = Some(crate::uq::Partition::KMeans(k));
    }
    if a.clusters_by.is_some() {
        cfg.uq.clusters = Some(crate::uq::Partition::ConfigType);
    }
    if let Some(n) = a.ensemble {
        if n < 2 {
            bail!("--ensemble needs at least 2 members, got {n} (leave it out for no ensemble)");
        }
        cfg.uq.ensemble = n;
    }
    if a.distance {
        cfg.uq.distance = true;
    }
    if a.gp {
        cfg.uq.gp = true;
    }
    if a.contact {
        cfg.uq.contact = true;
    }
    cfg.basis.validate()?;
    let t0 = std::time::Instant::now();
    cfg.fit.validate()?;
    let train = a.keys.read(&a.train)?;
    let valid = a.keys.read(&a.valid)?;
    super::warn_repeated_frames(
        &[("--train", &train), ("--valid", &valid)],
        &|copy, earlier| match (copy, earlier) {
            ("--train", _) => "a training frame given twice weighs twice in the fit",
            (_, "--train") => {
                "a --valid frame that is also a training frame is validated on its own training \
                 data (the ridge choice and the validation errors are then optimistic)"
            }
            _ => {
                "a validation frame given twice counts twice in the validation errors and the \
                  ridge choice"
            }
        },
    );
    // A label the fit weighs must be in every frame: a misnamed key must not quietly turn into a
    // fit without it.
    use crate::io::extxyz::Label;
    for data in [&train, &valid] {
        if cfg.fit.energy_weight > 0.0 {
            a.keys
                .require(data, Label::Energy, "or fit forces only with --force-only")?;
        }
        if cfg.fit.force_weight > 0.0 {
            a.keys.require(
                data,
                Label::Forces,
                "or fit energies only with --energy-only",
            )?;
        }
    }
    let species = if a.species.is_empty() {
        species_in(&train)
    } else {
        a.species.clone()
    };
    if species.is_empty() {
        bail!("the training data has no atoms");
    }
    // A species the training data lack would get E0 = 0 and untrained coefficients, and its
    // atoms energies and forces from nothing.
    let present = species_in(&train);
    let absent: Vec<&str> = species
        .iter()
        .filter(|x| !present.contains(x))
        .map(|x| x.as_str())
        .collect();
    if !absent.is_empty() {
        bail!(
            "--species {}: the training data hold no atom of {} (they hold {}); add structures \
             with it, or leave it out of --species",
            species.join(","),
            absent.join(", "),
            present.join(", ")
        );
    }
    cfg.basis.check_pair_species(&species)?;
    // A species none of whose training atoms has a neighbour within the cutoff has descriptors
    // that are all zero: untrained coefficients (zero forces) and no active set.
    let rc = species
        .iter()
        .flat_map(|a| species.iter().map(|b| cfg.basis.pair_cutoff(a, b)))
        .fold(cfg.basis.cutoff, f64::max);
    let mut bonded = vec![false; species.len()];
    for st in &train {
        if bonded.iter().all(|&b| b) {
            break;
        }
        let nl = crate::neighbors::build(st, rc)?;
        for (i, sym) in st.symbols.iter().enumerate() {
            let Some(k) = species.iter().position(|x| x == sym) else {
                continue;
            };
            bonded[k] |= nl.range(i).any(|e| {
                let r = nl.rij[e];
                let d = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
                d < cfg.basis.pair_cutoff(sym, &st.symbols[nl.j[e] as usize])
            });
        }
    }
    let lone: Vec<&str> = species
        .iter()
        .zip(&bonded)
        .filter(|(_, b)| !**b)
        .map(|(x, _)| x.as_str())
        .collect();
    if !lone.is_empty() {
        bail!(
            "no {} atom of the training data has a neighbour within the cutoff ({} Å{}): its \
             descriptors are all zero, so nothing about it can be fitted; raise --cutoff (ACE \
             cutoffs are typically 4-7 Å) or add structures where it has neighbours",
            lone.join(" or "),
            cfg.basis.cutoff,
            if cfg.basis.pair_cutoffs.is_empty() {
                ""
            } else {
                ", or its pair's in [basis] pair_cutoffs"
            }
        );
    }
    // K k-means clusters need K x min_cluster_atoms atoms of each species: said after the
    // whole fit otherwise.
    if let Some(crate::uq::Partition::KMeans(k)) = cfg.uq.clusters {
        let min = cfg.uq.activeset.min_cluster_atoms;
        for sp in &species {
            let n: usize = train
                .iter()
                .map(|st| st.symbols.iter().filter(|x| *x == sp).count())
                .sum();
            crate::uq::activeset::check_cluster_count(k, min, n, sp)
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
        }
    }
    // Growth applies to the default basis: not when a basis flag or a [basis] table was given.
    let basis_given = a.cutoff.is_some()
        || a.nmax.is_some()
        || a.lmax.is_some()
        || a.max_species.is_some()
        || a.radial_inner.is_some()
        || match &a.config {
            Some(p) => std::fs::read_to_string(p)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .is_some_and(|t| t.contains_key("basis")),
            None => false,
        };
    let mut grows = match cfg.fit.grow_basis {
        Growth::Auto => !basis_given,
        Growth::On => true,
        Growth::Off => false,
    };
    if grows && valid.is_empty() {
        if cfg.fit.grow_basis == Growth::On {
            bail!(
                "--grow-basis on (or grow_basis = \"on\" in [fit]) chooses the basis on validation \
                 data: give --valid"
            );
        }
        eprintln!(
            "basis not grown: no --valid (growing the default basis is judged on validation \
             errors)"
        );
        grows = false;
    }
    let limits = grow::Limits::of_this_machine(cfg.uq.ensemble);
    let (rungs, refusal) = if grows {
        grow::plan(species.len(), &cfg.basis, &cfg.fit, &train, &limits)?
    } else {
        (vec![], None)
    };
    if rungs.len() > 1 {
        eprintln!(
            "basis grown while the validation errors miss the target (F RMSE ≤ {} x σ_F, E RMSE \
             ≤ {} meV/atom; --grow-basis off to fit one basis):",
            cfg.fit.target_force, cfg.fit.target_energy
        );
        for (k, r) in rungs.iter().enumerate() {
            eprintln!("  {}. {}", k + 1, basis_line(&r.basis, &species)?);
        }
        if let Some(why) = &refusal {
            eprintln!("  (no further: {why})");
        }
    } else {
        eprintln!("basis: {}", basis_line(&cfg.basis, &species)?);
        if grows {
            eprintln!(
                "basis not grown: {}",
                refusal
                    .as_deref()
                    .unwrap_or("it is already at the top of the ladder")
            );
        }
    }
    if a.dry_run {
        return Ok(());
    }
    let natoms: usize = train.iter().map(|s| s.len()).sum();
    eprintln!(
        "training on {} structures ({natoms} atoms), validating on {}",
        train.len(),
        valid.len()
    );
    let model = if rungs.len() > 1 {
        let mut say = |line: &str| eprintln!("== fitting {line}");
        let m = grow::fit_grown(
            &species, &cfg.basis, &cfg.fit, &train, &valid, &limits, true, &mut say,
        )?;
        if let Some(c) = &m.fit_info.basis_choice {
            eprint!("{}", grow::basis_choice_text(c));
        }
        m
    } else {
        fit::fit(&species, &cfg.basis, &cfg.fit, &train, &valid, true)?
    };
    if let Some(choice) = &model.fit_info.ridge_choice {
        eprint!("{}", fit::ridge_choice_text(choice));
    }
    // The error table goes to stdout after the model is saved: a reader that closes the pipe
    // early (`aceuq fit ... | head`) ends the process at the next write, and must not cost the
    // model.
    let table = fit::metrics_table(&model.fit_info.metrics);
    let mut pot = crate::potential::Potential::new(model);
    if cfg.uq.any() {
        if (cfg.uq.ensemble > 0 || cfg.uq.distance || cfg.uq.gp) && valid.is_empty() {
            bail!(
                "the ensemble, distance and GP estimators are calibrated on validation data: give --valid"
            );
        }
        let t1 = std::time::Instant::now();
        crate::uq::build(&pot.model, &mut pot.uq, &train, &valid, &cfg.uq, true)?;
        let names: Vec<&str> = pot.uq.methods().iter().map(|m| m.name()).collect();
        eprintln!(
            "uncertainty: {} ({:.1} s)",
            names.join(", "),
            t1.elapsed().as_secs_f64()
        );
    }
    pot.save(&a.out)?;
    eprintln!(
        "wrote {} ({:.1} s)",
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    print!("{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The defaults `--help` states are the ones the code uses.
    #[test]
    fn help_states_the_defaults_the_code_uses() {
        let mut cmd = super::super::Cli::command();
        let help = |cmd: &mut clap::Command, sub: &str| {
            cmd.find_subcommand_mut(sub)
                .unwrap_or_else(|| panic!("no subcommand {sub}"))
                .render_long_help()
                .to_string()
        };
        let fit = help(&mut cmd, "fit")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let b = crate::basis::BasisConfig::default();
        let f = crate::model::fit::FitConfig::default();
        let list = |v: &[usize]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        for want in [
            format!("[default: {}]", b.cutoff),
            format!("[default: {}]", list(&b.nmax)),
            format!("[default: {}]", list(&b.lmax)),
            format!("[default: {}]", f.ridge),
            format!("[default: {}]", f.energy_weight),
            format!("[default: {}]", f.force_weight),
            format!("[default: {}]", f.grow_basis),
            format!("[default: {}]", f.target_force),
            format!("[default: {}]", f.target_energy),
        ] {
            assert!(fit.contains(&want), "fit --help lacks {want}:\n{fit}");
        }
        let tol = crate::uq::activeset::Settings::default().tol;
        for sub in ["activeset", "select"] {
            let h = help(&mut cmd, sub);
            assert!(
                h.contains(&format!("[default: {tol}]")),
                "{sub} --help:\n{h}"
            );
        }
    }
}
