//! `aceuq al-bench`: the active-learning benchmark of Annevelink & Viswanathan on a labelled pool in time
//! order, for the oracle, random sampling and the uncertainty estimators; per-iteration CSVs,
//! the paper's Figure-4 panels per method, a comparison figure and a Markdown summary.

use crate::bench::al::{self, AlRun, AlSettings, Iteration, Selector};
use crate::bench::figures::{Panel, Series, write_panels};
use crate::stats::plot::markdown_table;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `aceuq al-bench`.
#[derive(clap::Args, Debug)]
pub struct AlBenchArgs {
    /// Fully labelled pool in time order (extended XYZ, e.g. `runs/data/li_pool.xyz` from
    /// `scripts/gen_data.py`).
    #[arg(long)]
    pub pool: PathBuf,
    /// Selectors: oracle, random, gamma, gamma_local, ensemble, distance, gp, contact
    /// (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "oracle,random,gamma,distance,ensemble"
    )]
    pub method: Vec<String>,
    /// Output folder (created).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Seed of the first repeat (repeat r uses seed + r).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub seed: u64,
    /// Repeats per method with different seeds (mean and spread in the figures).
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    pub repeats: usize,
    /// Small basis and fewer ensemble members/clusters (~1 s per fit): the CI size.
    #[arg(long)]
    pub quick: bool,
    /// Species of the model (default: those of the pool, in order of appearance).
    #[arg(long, value_delimiter = ',', value_parser = super::species_name)]
    pub species: Vec<String>,
    /// k-means clusters of gamma_local (default 4, 2 with --quick). Each cluster needs 30
    /// training atoms of its species from the first fit on: small cells need fewer clusters.
    #[arg(long, allow_negative_numbers = true)]
    pub clusters: Option<usize>,
    /// Force error (eV/Å) at which the MD counts as unstable (sets u_max).
    #[arg(long, default_value_t = crate::stats::cutoff::DEFAULT_E_MAX, allow_hyphen_values = true)]
    pub max_error: f64,
    /// Iteration limit per run.
    #[arg(long, allow_negative_numbers = true)]
    pub max_iterations: Option<usize>,
    /// Model of the 1 - 1/N quantiles: auto (the body family, or a generalized Pareto tail when
    /// the body fails KS or Anderson-Darling or its own values exceed its cutoff more often than
    /// N allows), tail or body (the seeds' rule).
    #[arg(long, default_value = "auto")]
    pub tail: crate::stats::tail::TailPolicy,
    /// Upper cutoff of the uncertainty methods: conditional or ratio (the seeds' rule).
    #[arg(long, default_value = "conditional")]
    pub upper_rule: crate::stats::cutoff::UpperRule,
    #[command(flatten)]
    pub keys: super::DataKeys,
}

pub fn run(a: &AlBenchArgs) -> Result<()> {
    super::check_number(
        "--max-error",
        a.max_error,
        a.max_error.is_finite() && a.max_error > 0.0,
        "a positive number of eV/Å",
    )?;
    let selectors: Vec<Selector> = a
        .method
        .iter()
        .map(|m| {
            Selector::from_name(m.trim()).with_context(|| {
                format!(
                    "unknown --method '{m}': use oracle, random, gamma, gamma_local, ensemble, \
                     distance, gp or contact"
                )
            })
        })
        .collect::<Result<_>>()?;
    if a.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    // Repeat r runs with seed + r: the last must not wrap around.
    if a.seed.checked_add(a.repeats as u64 - 1).is_none() {
        bail!(
            "--seed {} with --repeats {}: the last repeat's seed (seed + repeats - 1) is beyond \
             {}; choose a smaller --seed",
            a.seed,
            a.repeats,
            u64::MAX
        );
    }
    let pool = a
        .keys
        .read(std::slice::from_ref(&a.pool))
        .with_context(|| format!("reading the pool {}", a.pool.display()))?;
    // The benchmark fits energies and forces and measures force errors.
    for label in [
        crate::io::extxyz::Label::Energy,
        crate::io::extxyz::Label::Forces,
    ] {
        a.keys.require(&pool, label, "")?;
    }
    let species = if a.species.is_empty() {
        let mut v: Vec<String> = vec![];
        for s in &pool {
            for sym in &s.symbols {
                if !v.contains(sym) {
                    v.push(sym.clone());
                }
            }
        }
        v
    } else {
        a.species.clone()
    };
    let mut settings = if a.quick {
        AlSettings::quick(species)
    } else {
        AlSettings::new(species)
    };
    if let Some(k) = a.clusters {
        if k == 0 {
            bail!("--clusters must be at least 1");
        }
        settings.uq.clusters = Some(crate::uq::Partition::KMeans(k));
    }
    settings.e_max = a.max_error;
    settings.tail = a.tail;
    settings.upper_rule = a.upper_rule;
    if let Some(n) = a.max_iterations {
        settings.max_iterations = n.max(1);
    }
    al::check_pool(&pool, &settings).with_context(|| a.pool.display().to_string())?;
    let out = super::OutFolder::create(&a.out)?;
    let natoms: usize = pool.iter().map(|s| s.len()).sum();
    eprintln!(
        "pool {}: {} frames, {} atoms; {} x {} runs ({} basis)",
        a.pool.display(),
        pool.len(),
        natoms,
        selectors.len(),
        a.repeats,
        if a.quick { "quick" } else { "default" }
    );
    let bar = progress(selectors.len() * a.repeats);
    let t0 = Instant::now();
    let mut all: Vec<(Selector, Vec<AlRun>)> = vec![];
    for &sel in &selectors {
        let mut runs = vec![];
        for r in 0..a.repeats {
            let seed = a.seed + r as u64;
            bar.set_message(format!("{} seed {seed}", sel.name()));
            let mut line = |it: &Iteration| {
                say(
                    &bar,
                    format!(
                        "  {:<11} seed {seed} it {:>2}: {:>3} frames, pool MAE {:.4} eV/Å, u_c {:.4}, u_max {:.4}, \
                     {} uncertain / {} unstable frames, stop {}, +{}",
                        sel.name(),
                        it.iteration,
                        it.dataset(),
                        it.mae_pool,
                        it.u_c,
                        it.u_max,
                        it.frames_between,
                        it.frames_above,
                        it.stop_frame.map_or("none".into(), |k| k.to_string()),
                        it.added
                    ),
                );
                // What the calibration warned about explains odd cutoffs (an upper cutoff
                // extrapolated from one validation frame halting the first pool frame).
                for w in &it.warnings {
                    say(&bar, format!("    calibration warning: {w}"));
                }
            };
            let run = al::run(&pool, sel, &settings, seed, &mut line)
                .with_context(|| format!("{} (seed {seed})", sel.name()))?;
            write_csv(&a.out.join(format!("{}_seed{seed}.csv", sel.name())), &run)?;
            say(
                &bar,
                format!(
                    "{} seed {seed}: final data set {} frames after {} fits ({}), {:.0} s",
                    sel.name(),
                    run.final_size(),
                    run.iterations.len(),
                    match run.stalled_at {
                        _ if run.converged => "converged".to_string(),
                        Some(k) => format!(
                            "stalled: halted at pool frame {k}, nothing left to label before it"
                        ),
                        None => "iteration limit".to_string(),
                    },
                    run.seconds
                ),
            );
            runs.push(run);
            bar.inc(1);
        }
        figure4(
            &a.out.join(format!("{}_figure4.png", sel.name())),
            sel,
            &runs,
        )?;
        all.push((sel, runs));
    }
    bar.finish_and_clear();
    comparison(&a.out.join("comparison.png"), &all)?;
    let md = summary_md(a, &pool, &all, t0.elapsed().as_secs_f64());
    crate::io::container::write_atomic(&a.out.join("summary.md"), md.as_bytes())?;
    print!("{md}");
    eprintln!("wrote {}", a.out.display());
    out.keep();
    Ok(())
}

/// Print above the bar, or plainly when the bar is hidden (not a terminal).
fn say(bar: &indicatif::ProgressBar, msg: String) {
    if bar.is_hidden() {
        eprintln!("{msg}");
    } else {
        bar.println(msg);
    }
}

fn progress(n: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        // Keep println working (it prints directly when the bar is hidden).
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(n as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>22} [{bar:30}] {pos}/{len} runs, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b
}

/// Per-iteration CSV of one run.
pub fn write_csv(path: &Path, run: &AlRun) -> Result<()> {
    let mut s = Iteration::csv_header(run.selector).join(",") + "\n";
    let classify = run.selector != Selector::Random;
    for it in &run.iterations {
        s += &(it.csv_row(classify).join(",") + "\n");
    }
    crate::io::container::write_atomic(path, s.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn band_series(
    runs: &[AlRun],
    metric: &str,
    label: &str,
    x_metric: Option<&str>,
    color: usize,
) -> Series {
    let b = al::aggregate(runs, metric);
    let xs = x_metric.map(|m| al::aggregate(runs, m));
    Series {
        label: label.to_string(),
        points: b
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let x = xs.as_ref().map_or(v.iteration as f64, |x| {
                    x.get(k).map_or(f64::NAN, |x| x.mean)
                });
                (x, v.mean, v.min, v.max)
            })
            .collect(),
        markers: true,
        color,
        shape: 0,
    }
}

fn figure4(path: &Path, sel: Selector, runs: &[AlRun]) -> Result<()> {
    let it = "iteration";
    let classify = sel != Selector::Random;
    let mut panels = vec![
        Panel {
            title: "mean force error vs data set".into(),
            x_label: "data set (frames)".into(),
            y_label: "mean |ΔF| (eV/Å)".into(),
            series: vec![
                band_series(runs, "mae_train", "train", Some("dataset"), 0),
                band_series(runs, "mae_valid", "valid", Some("dataset"), 1),
                band_series(runs, "mae_pool", "pool", Some("dataset"), 2),
            ],
            log_y: false,
        },
        Panel {
            title: "pool frames between / above the cutoffs".into(),
            x_label: it.into(),
            y_label: "frames".into(),
            series: vec![
                band_series(runs, "frames_between", "u_c < u ≤ u_max", None, 0),
                band_series(runs, "frames_above", "u > u_max", None, 1),
            ],
            log_y: false,
        },
    ];
    if classify {
        panels.push(Panel {
            title: "pool atom fractions".into(),
            x_label: it.into(),
            y_label: "fraction of pool atoms".into(),
            series: vec![
                band_series(runs, "tp_fraction", "true positive", None, 0),
                band_series(runs, "uncertain_fraction", "uncertain (u > u_c)", None, 1),
                band_series(runs, "high_error_fraction", "high error (e > e_c)", None, 2),
            ],
            log_y: false,
        });
        panels.push(Panel {
            title: "classification at the cutoffs (atoms)".into(),
            x_label: it.into(),
            y_label: "score".into(),
            series: vec![
                band_series(runs, "precision", "precision", None, 0),
                band_series(runs, "recall", "recall", None, 1),
                band_series(runs, "f1", "F1", None, 2),
                band_series(runs, "frame_f1", "F1 (frames)", None, 3),
            ],
            log_y: false,
        });
    }
    panels.push(Panel {
        title: "data set size".into(),
        x_label: it.into(),
        y_label: "frames".into(),
        series: vec![band_series(runs, "dataset", "train + valid", None, 0)],
        log_y: false,
    });
    panels.push(Panel {
        title: "coverage (furthest frame reached)".into(),
        x_label: it.into(),
        y_label: "fraction of the pool".into(),
        series: vec![band_series(runs, "coverage", "coverage", None, 0)],
        log_y: false,
    });
    write_panels(
        path,
        &format!(
            "{}: active learning on the pool ({} repeats; line = mean, band = min–max)",
            sel.name(),
            runs.len()
        ),
        &panels,
        3,
        (560, 420),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn comparison(path: &Path, all: &[(Selector, Vec<AlRun>)]) -> Result<()> {
    let per = |metric: &str, x: Option<&str>| -> Vec<Series> {
        all.iter()
            .enumerate()
            .map(|(k, (s, runs))| band_series(runs, metric, s.name(), x, k))
            .collect()
    };
    let per_c = |metric: &str| -> Vec<Series> {
        all.iter()
            .enumerate()
            .filter(|(_, (s, _))| *s != Selector::Random)
            .map(|(k, (s, runs))| band_series(runs, metric, s.name(), None, k))
            .collect()
    };
    let panels = vec![
        Panel {
            title: "data set size".into(),
            x_label: "iteration".into(),
            y_label: "frames".into(),
            series: per("dataset", None),
            log_y: false,
        },
        Panel {
            title: "pool error vs data set".into(),
            x_label: "data set (frames)".into(),
            y_label: "mean |ΔF| on the pool (eV/Å)".into(),
            series: per("mae_pool", Some("dataset")),
            log_y: false,
        },
        Panel {
            title: "coverage".into(),
            x_label: "iteration".into(),
            y_label: "fraction of the pool reached".into(),
            series: per("coverage", None),
            log_y: false,
        },
        Panel {
            title: "F1 at the cutoffs (atoms)".into(),
            x_label: "iteration".into(),
            y_label: "F1".into(),
            series: per_c("f1"),
            log_y: false,
        },
        Panel {
            title: "F1 vs the oracle's frames".into(),
            x_label: "iteration".into(),
            y_label: "frame F1".into(),
            series: per_c("frame_f1"),
            log_y: false,
        },
        Panel {
            title: "uncertain frames in the pool".into(),
            x_label: "iteration".into(),
            y_label: "frames with u_c < u ≤ u_max".into(),
            series: per("frames_between", None),
            log_y: false,
        },
    ];
    write_panels(
        path,
        "active-learning benchmark: all methods (line = mean, band = min–max over repeats)",
        &panels,
        3,
        (560, 420),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn pm(v: [f64; 4], digits: usize) -> String {
    if v[0].is_nan() {
        return "-".into();
    }
    format!(
        "{:.d$} ± {:.d$} ({:.d$}–{:.d$})",
        v[0],
        v[1],
        v[2],
        v[3],
        d = digits
    )
}

fn summary_md(
    a: &AlBenchArgs,
    pool: &[crate::Structure],
    all: &[(Selector, Vec<AlRun>)],
    seconds: f64,
) -> String {
    let headers: Vec<String> = [
        "method",
        "repeats",
        "converged",
        "final data set (frames)",
        "fits",
        "final pool MAE (eV/Å)",
        "final coverage",
        "mean F1 (atoms)",
        "mean F1 (frames vs oracle)",
        "s / run",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = all
        .iter()
        .filter_map(|(_, runs)| al::summarize(runs))
        .map(|s| {
            let f = |v: f64| {
                if v.is_nan() {
                    "-".into()
                } else {
                    format!("{v:.3}")
                }
            };
            vec![
                s.selector.name().to_string(),
                s.repeats.to_string(),
                s.converged.to_string(),
                pm(s.final_size, 1),
                pm(s.iterations, 1),
                pm(s.final_mae_pool, 4),
                pm(s.final_coverage, 2),
                f(s.mean_f1),
                f(s.mean_frame_f1),
                format!("{:.0}", s.seconds),
            ]
        })
        .collect();
    let natoms: usize = pool.iter().map(|s| s.len()).sum();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Active-learning benchmark (Annevelink & Viswanathan)\n"
    );
    let _ = writeln!(
        md,
        "Pool `{}`: {} frames, {} atoms, in time order. {} basis, seeds {}..{}, e_max = {} eV/Å, \
         quantile model `--tail {}`, upper cutoff `--upper-rule {}`. Total wall time {:.0} s.\n",
        a.pool.display(),
        pool.len(),
        natoms,
        if a.quick { "quick (small)" } else { "default" },
        a.seed,
        a.seed + a.repeats as u64 - 1,
        a.max_error,
        a.tail.name(),
        a.upper_rule.name(),
        seconds
    );
    md += &markdown_table(&headers, &rows);
    let _ = writeln!(
        md,
        "\nValues: mean ± standard deviation (min–max) over repeats. Cutoffs from the validation \
         atoms with N = pool atoms per species. Frame F1 compares the frames a method flags \
         (any atom u > u_c) with the frames that have an atom above the error cutoff (e > e_c): \
         how well the statistical cutoffs track the oracle. `random` uses the oracle's stop rule \
         and batch size, so it has no classification scores. Precision is undefined where \
         nothing is flagged, recall where nothing errs above e_c, F1 where neither (`nan` in the \
         CSV files, left out of the means, `-` when undefined in every iteration).\n"
    );
    let _ = writeln!(
        md,
        "Figures: `comparison.png`, `<method>_figure4.png`; per-iteration data: `<method>_seed<S>.csv`."
    );
    md
}
