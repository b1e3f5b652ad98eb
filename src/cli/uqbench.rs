//! `aceuq uq-bench`: the heterogeneity / model-accuracy study of Shuang et al.
//! (arXiv:2508.03405), with the metrics of Annevelink & Viswanathan, from a `bench.toml`: Spearman rho, calibration and novelty ROC-AUC of each uncertainty
//! method, for each training set and basis size, the per-subset novelty and error-ranking scores
//! and the gamma_local-vs-gamma verdict (rules in `bench::heterogeneity`); figures, Markdown
//! tables, `results.csv` and `subsets.csv`.

use crate::bench::figures::{BarPanel, Panel, Series, write_bars, write_panels};
use crate::bench::heterogeneity::{
    BenchConfig, CaseResult, Dataset, DatasetConfig, LABEL_BUDGET, MATCHED_DRAWS,
    NOVEL_MIN_ERROR_RATIO, NOVEL_MIN_FRACTION_ABOVE_P95, TOP_ERROR_FRACTION, VERDICT_AUC_TOLERANCE,
    group_by_type, run_case, split3, thin, verdict,
};
use crate::stats::plot::markdown_table;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `aceuq uq-bench`.
#[derive(clap::Args, Debug)]
pub struct UqBenchArgs {
    /// Benchmark configuration (see examples/uq-bench/bench.toml); data paths are relative to it.
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder (created).
    #[arg(long, short)]
    pub out: PathBuf,
    /// The CI size: the `[quick]` bases, fewer training frames, holdouts and members.
    #[arg(long)]
    pub quick: bool,
}

fn read_all(base: &Path, files: &[String]) -> Result<Vec<crate::Structure>> {
    let mut out = vec![];
    for f in files {
        let p = base.join(f);
        let frames = crate::io::extxyz::read_file(&p, &Default::default())
            .with_context(|| format!("reading {}", p.display()))?;
        if frames.is_empty() {
            bail!("{}: no frames", p.display());
        }
        // The benchmark fits energies and forces and measures force errors.
        for (label, key) in [
            (crate::io::extxyz::Label::Energy, "energy"),
            (crate::io::extxyz::Label::Forces, "forces"),
        ] {
            if let Some(m) = crate::io::extxyz::missing_label(&frames, label, key) {
                bail!(
                    "{m}: the benchmark reads the ASE keys energy= and forces:R:3; rename the key in the file"
                );
            }
        }
        out.extend(frames);
    }
    Ok(out)
}

/// Load and split one data set.
fn load(base: &Path, d: &DatasetConfig, cfg: &BenchConfig, quick: bool) -> Result<Dataset> {
    let ctx = || format!("dataset '{}'", d.name);
    let mut train = read_all(base, &d.train).with_context(ctx)?;
    if quick {
        train = thin(train, cfg.quick.max_train);
    }
    let mut valid = read_all(base, &d.valid).with_context(ctx)?;
    let mut test = read_all(base, &d.test).with_context(ctx)?;
    let mut holdout: Vec<(String, Vec<crate::Structure>)> = vec![];
    let max_holdouts = if quick {
        d.quick_holdouts.unwrap_or(cfg.quick.max_holdouts)
    } else {
        usize::MAX
    };
    let groups = group_by_type(read_all(base, &d.mixed).with_context(ctx)?);
    if d.holdout && d.holdout_group.is_empty() {
        for (name, frames) in groups.iter().take(max_holdouts) {
            holdout.push((name.clone(), frames.clone()));
        }
    }
    if d.holdout {
        for g in d.holdout_group.iter().take(max_holdouts) {
            let mut frames = vec![];
            for t in &g.types {
                match groups.iter().find(|(n, _)| n == t) {
                    Some((_, f)) => frames.extend(f.iter().cloned()),
                    None => bail!(
                        "dataset '{}': holdout_group '{}' names config_type '{t}', which no mixed \
                         file has (they have: {})",
                        d.name,
                        g.name,
                        groups
                            .iter()
                            .map(|g| g.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
            holdout.push((g.name.clone(), frames));
        }
    }
    for (_, frames) in groups {
        let [tr, va, te] = split3(frames, d.mixed_split);
        train.extend(tr);
        valid.extend(va);
        test.extend(te);
    }
    let novel = group_by_type(read_all(base, &d.novel).with_context(ctx)?);
    if valid.is_empty() || test.is_empty() {
        bail!(
            "dataset '{}': needs validation and test frames (valid/test files or mixed_split)",
            d.name
        );
    }
    Ok(Dataset {
        name: d.name.clone(),
        species: d.species.clone(),
        train,
        valid,
        test,
        novel,
        holdout,
    })
}

pub fn run(a: &UqBenchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("cannot read {}", a.config.display()))?;
    let cfg: BenchConfig =
        toml::from_str(&text).with_context(|| format!("{}: invalid config", a.config.display()))?;
    cfg.validate()
        .with_context(|| format!("{}", a.config.display()))?;
    let base = a
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // The bases of each data set: its `bases` (default all), or in the quick size its own
    // `quick_bases`, else `[quick] bases`, else the first two.
    let bases_for = |d: &DatasetConfig| -> Vec<crate::bench::heterogeneity::NamedBasis> {
        let names = if d.quick_bases.is_empty() {
            &cfg.quick.bases
        } else {
            &d.quick_bases
        };
        if !a.quick {
            cfg.basis
                .iter()
                .filter(|b| d.bases.is_empty() || d.bases.contains(&b.name))
                .cloned()
                .collect()
        } else if names.is_empty() {
            cfg.basis.iter().take(2).cloned().collect()
        } else {
            cfg.basis
                .iter()
                .filter(|b| names.contains(&b.name))
                .cloned()
                .collect()
        }
    };
    let members = if a.quick {
        cfg.quick.ensemble.max(2)
    } else {
        cfg.ensemble
    };
    let chosen: Vec<&DatasetConfig> = cfg
        .dataset
        .iter()
        .filter(|d| !a.quick || d.in_quick)
        .collect();
    if chosen.is_empty() {
        bail!(
            "{}: {}",
            a.config.display(),
            if a.quick {
                "no [[dataset]] is in the quick size (in_quick = true): mark one, or run \
                 without --quick"
            } else {
                "no [[dataset]] to benchmark: add one"
            }
        );
    }
    let data: Vec<Dataset> = chosen
        .iter()
        .map(|d| load(&base, d, &cfg, a.quick))
        .collect::<Result<_>>()?;
    let bases: Vec<Vec<_>> = chosen.iter().map(|d| bases_for(d)).collect();
    let out = super::OutFolder::create(&a.out)?;
    let t0 = Instant::now();
    let fits: usize = data
        .iter()
        .zip(&bases)
        .map(|(d, b)| (1 + d.holdout.len()) * b.len())
        .sum();
    let bar = fit_bar(fits);
    let mut results: Vec<CaseResult> = vec![];
    for (d, bases) in data.iter().zip(&bases) {
        for b in bases {
            let mut step = |msg: &str| {
                bar.set_message(msg.to_string());
                bar.inc(1);
                if bar.is_hidden() {
                    eprintln!("  {msg}");
                }
            };
            let r = run_case(&cfg, d, b, members, &mut step)?;
            let line = format!(
                "{} / {} ({} functions): test MAE {:.4} eV/Å; {}",
                r.dataset,
                r.basis,
                r.nfuncs,
                r.mae_test,
                r.methods
                    .iter()
                    .map(|m| format!(
                        "{} rho {:.2} area {:.3} AUC {:.2} matched AUC (novel) {:.2} recall {:.2}",
                        m.method.name(),
                        m.rho_atom,
                        m.area,
                        m.mean_auc(),
                        r.novel_mean(m, |s| s.auc_struct_matched),
                        r.novel_mean(m, |s| s.recall)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            results.push(r);
        }
    }
    bar.finish_and_clear();
    figures(&a.out, &results)?;
    write_csv(&a.out.join("results.csv"), &results)?;
    write_subsets_csv(&a.out.join("subsets.csv"), &results)?;
    let md = summary(a, &data, &results, members, t0.elapsed().as_secs_f64());
    crate::io::container::write_atomic(&a.out.join("summary.md"), md.as_bytes())?;
    print!("{md}");
    eprintln!("wrote {}", a.out.display());
    out.keep();
    Ok(())
}

fn fit_bar(n: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(n as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} fits, {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

/// Columns of results.csv (the `*_novel` columns: means over the genuinely novel subsets). A
/// column with a unit names it: `force_mae_test_meV_per_A` is the mean of |ΔF| (the norm of each
/// test atom's force error), `force_rmse_test_meV_per_A` the RMSE per Cartesian component; the
/// other columns are counts, names or dimensionless scores.
pub const CSV_HEADER: [&str; 18] = [
    "dataset",
    "basis",
    "nfuncs",
    "n_train",
    "force_mae_test_meV_per_A",
    "force_rmse_test_meV_per_A",
    "method",
    "spearman_atom",
    "spearman_structure",
    "miscalibration_area",
    "signed_calibration",
    "mean_auc",
    "n_novel_subsets",
    "auc_matched_novel",
    "auc_atom_novel",
    "spearman_pool_novel",
    "recall_top5_at_10_novel",
    "auc_by_subset",
];

/// Columns of subsets.csv: one row per (data set, basis, subset, method).
pub const SUBSETS_HEADER: [&str; 14] = [
    "dataset",
    "basis",
    "subset",
    "frames",
    "atoms",
    "error_ratio",
    "frac_above_p95",
    "genuinely_novel",
    "method",
    "auc_structure_max",
    "auc_structure_matched",
    "auc_atom",
    "spearman_pool",
    "recall_top5_at_10",
];

fn write_subsets_csv(path: &Path, results: &[CaseResult]) -> Result<()> {
    let mut s = SUBSETS_HEADER.join(",") + "\n";
    for r in results {
        for m in &r.methods {
            for (sc, nov) in m.subsets.iter().zip(&r.subsets) {
                let _ = writeln!(
                    s,
                    "\"{}\",{},{},{},{},{:.4},{:.4},{},{},{:.4},{:.4},{:.4},{:.4},{:.4}",
                    r.dataset,
                    r.basis,
                    sc.name,
                    nov.frames,
                    nov.atoms,
                    nov.error_ratio,
                    nov.frac_above_p95,
                    nov.novel,
                    m.method.name(),
                    sc.auc_struct,
                    sc.auc_struct_matched,
                    sc.auc_atom,
                    sc.rho_pool,
                    sc.recall
                );
            }
        }
    }
    crate::io::container::write_atomic(path, s.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn write_csv(path: &Path, results: &[CaseResult]) -> Result<()> {
    let mut s = CSV_HEADER.join(",") + "\n";
    for r in results {
        for m in &r.methods {
            let aucs = m
                .auc
                .iter()
                .map(|(n, v)| format!("{n}={v:.4}"))
                .collect::<Vec<_>>()
                .join(";");
            let _ = writeln!(
                s,
                "\"{}\",{},{},{},{:.3},{:.3},{},{:.4},{:.4},{:.4},{:.4},{:.4},{},{:.4},{:.4},{:.4},{:.4},\"{}\"",
                r.dataset,
                r.basis,
                r.nfuncs,
                r.n_train,
                1e3 * r.mae_test,
                r.rmse_test,
                m.method.name(),
                m.rho_atom,
                m.rho_struct,
                m.area,
                m.signed,
                m.mean_auc(),
                r.n_novel(),
                r.novel_mean(m, |s| s.auc_struct_matched),
                r.novel_mean(m, |s| s.auc_atom),
                r.novel_mean(m, |s| s.rho_pool),
                r.novel_mean(m, |s| s.recall),
                aucs
            );
        }
    }
    crate::io::container::write_atomic(path, s.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn figures(out: &Path, results: &[CaseResult]) -> Result<()> {
    let methods: Vec<crate::uq::Method> = results
        .first()
        .map(|r| r.methods.iter().map(|m| m.method).collect())
        .unwrap_or_default();
    // Calibration curves: one panel per (data set, basis), one line per method.
    let panels: Vec<Panel> = results
        .iter()
        .map(|r| {
            let mut series: Vec<Series> = r
                .methods
                .iter()
                .enumerate()
                .map(|(k, m)| Series {
                    label: format!("{} (area {:.3})", m.method.name(), m.area),
                    points: m
                        .curve
                        .expected
                        .iter()
                        .zip(&m.curve.observed)
                        .map(|(&p, &o)| (p, o, f64::NAN, f64::NAN))
                        .collect(),
                    markers: false,
                    color: k,
                    shape: 0,
                })
                .collect();
            series.push(Series {
                label: "ideal".into(),
                points: vec![
                    (0.0, 0.0, f64::NAN, f64::NAN),
                    (1.0, 1.0, f64::NAN, f64::NAN),
                ],
                markers: false,
                color: 7,
                shape: 0,
            });
            Panel {
                title: format!("{} / {}", r.dataset, r.basis),
                x_label: "expected fraction p".into(),
                y_label: "observed fraction of PIT ≤ p".into(),
                series,
                log_y: false,
            }
        })
        .collect();
    let ncols = results
        .iter()
        .map(|r| &r.basis)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    let p = out.join("calibration.png");
    write_panels(
        &p,
        "calibration of the Maxwell predictive distribution on in-distribution test atoms (below the diagonal: errors under-predicted)",
        &panels,
        ncols,
        (520, 420),
    )
    .with_context(|| format!("writing {}", p.display()))?;
    // Bars: Spearman, miscalibration area, mean novelty AUC per (data set, basis).
    let groups: Vec<String> = results
        .iter()
        .map(|r| format!("{} / {}", short(&r.dataset), r.basis))
        .collect();
    let per =
        |f: &dyn Fn(&crate::bench::heterogeneity::MethodScores) -> f64| -> Vec<(String, Vec<f64>)> {
            methods
                .iter()
                .map(|&m| {
                    (
                        m.name().to_string(),
                        results
                            .iter()
                            .map(|r| r.methods.iter().find(|x| x.method == m).map_or(f64::NAN, f))
                            .collect(),
                    )
                })
                .collect()
        };
    let p = out.join("scores.png");
    write_bars(
        &p,
        "uncertainty vs error (Spearman ρ), calibration and novelty detection",
        &[
            BarPanel {
                title: "Spearman ρ (atoms)".into(),
                y_label: "ρ".into(),
                groups: groups.clone(),
                series: per(&|m| m.rho_atom),
                y_range: Some((0.0, 1.0)),
            },
            BarPanel {
                title: "miscalibration area".into(),
                y_label: "area".into(),
                groups: groups.clone(),
                series: per(&|m| m.area),
                y_range: Some((0.0, 0.5)),
            },
            BarPanel {
                title: "novelty ROC-AUC (mean over subsets)".into(),
                y_label: "AUC".into(),
                groups: groups.clone(),
                series: per(&|m| m.mean_auc()),
                y_range: Some((0.0, 1.0)),
            },
        ],
        (620, 480),
    )
    .with_context(|| format!("writing {}", p.display()))?;
    // Novelty and error ranking, means over the genuinely novel subsets.
    type Scores = crate::bench::heterogeneity::SubsetScores;
    type NoveltyPanel<'a> = (&'a str, &'a str, &'a dyn Fn(&Scores) -> f64);
    let per_novel = |f: &dyn Fn(&Scores) -> f64| -> Vec<(String, Vec<f64>)> {
        methods
            .iter()
            .map(|&m| {
                (
                    m.name().to_string(),
                    results
                        .iter()
                        .map(|r| {
                            r.methods
                                .iter()
                                .find(|x| x.method == m)
                                .map_or(f64::NAN, |x| r.novel_mean(x, f))
                        })
                        .collect(),
                )
            })
            .collect()
    };
    let panels: [NoveltyPanel; 3] = [
        ("structure ROC-AUC, size-matched", "AUC", &|s| {
            s.auc_struct_matched
        }),
        ("atom ROC-AUC", "AUC", &|s| s.auc_atom),
        ("top-5 % error recall at 10 % budget", "recall", &|s| {
            s.recall
        }),
    ];
    let p = out.join("novelty.png");
    write_bars(
        &p,
        "genuinely novel subsets only (means; none: no bar)",
        &panels.map(|(title, y, f)| BarPanel {
            title: title.into(),
            y_label: y.into(),
            groups: groups.clone(),
            series: per_novel(f),
            y_range: Some((0.0, 1.0)),
        }),
        (620, 480),
    )
    .with_context(|| format!("writing {}", p.display()))?;
    // Accuracy: scores against the test error, one line per (data set, method): the colour is
    // the method's, the marker the data set's (keys without points name the markers).
    let mut datasets: Vec<String> = vec![];
    for r in results {
        if !datasets.contains(&r.dataset) {
            datasets.push(r.dataset.clone());
        }
    }
    let grey = crate::bench::figures::PALETTE.len() - 1;
    let lines = |f: &dyn Fn(&crate::bench::heterogeneity::MethodScores) -> f64| -> Vec<Series> {
        let mut v = vec![];
        let mut keys = vec![];
        for (di, d) in datasets.iter().enumerate() {
            keys.push(Series {
                label: short(d),
                points: vec![],
                markers: true,
                color: grey,
                shape: di,
            });
            for (mi, &m) in methods.iter().enumerate() {
                let mut pts: Vec<(f64, f64, f64, f64)> = results
                    .iter()
                    .filter(|r| &r.dataset == d)
                    .filter_map(|r| {
                        r.methods
                            .iter()
                            .find(|x| x.method == m)
                            .map(|x| (r.mae_test, f(x), f64::NAN, f64::NAN))
                    })
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                v.push(Series {
                    label: m.name().to_string(),
                    points: pts,
                    markers: true,
                    color: mi,
                    shape: di,
                });
            }
        }
        // The methods first in the legend, then what each marker stands for.
        v.extend(keys);
        v
    };
    let p = out.join("accuracy.png");
    write_panels(
        &p,
        "model accuracy (test force MAE) and uncertainty quality",
        &[
            Panel {
                title: "Spearman ρ vs test error".into(),
                x_label: "test mean |ΔF| (eV/Å)".into(),
                y_label: "Spearman ρ (atoms)".into(),
                series: lines(&|m| m.rho_atom),
                log_y: false,
            },
            Panel {
                title: "novelty ROC-AUC vs test error".into(),
                x_label: "test mean |ΔF| (eV/Å)".into(),
                y_label: "mean ROC-AUC".into(),
                series: lines(&|m| m.mean_auc()),
                log_y: false,
            },
        ],
        2,
        (640, 480),
    )
    .with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// Short label of a data set (its last word) for crowded axes.
fn short(name: &str) -> String {
    name.split_whitespace().last().unwrap_or(name).to_string()
}

fn summary(
    a: &UqBenchArgs,
    data: &[Dataset],
    results: &[CaseResult],
    members: usize,
    seconds: f64,
) -> String {
    let headers = strings(&[
        "data set",
        "basis (functions)",
        "test MAE (eV/Å)",
        "method",
        "Spearman atoms",
        "Spearman structures",
        "miscal. area",
        "signed calib.",
        "novelty AUC (mean)",
        "novel subsets",
        "matched AUC (novel)",
        "recall@10% (novel)",
    ]);
    let mut rows = vec![];
    for r in results {
        for m in &r.methods {
            rows.push(vec![
                r.dataset.clone(),
                format!("{} ({})", r.basis, r.nfuncs),
                format!("{:.4}", r.mae_test),
                m.method.name().to_string(),
                f3(m.rho_atom),
                f3(m.rho_struct),
                f3(m.area),
                format!("{:+.3}", m.signed),
                f3(m.mean_auc()),
                format!("{}/{}", r.n_novel(), r.subsets.len()),
                f3(r.novel_mean(m, |s| s.auc_struct_matched)),
                f3(r.novel_mean(m, |s| s.recall)),
            ]);
        }
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Uncertainty benchmark: heterogeneity and model accuracy\n"
    );
    let _ = writeln!(
        md,
        "Config `{}`{}; ensemble of {members} members. Total wall time {seconds:.0} s.\n",
        a.config.display(),
        if a.quick { " (quick size)" } else { "" }
    );
    for d in data {
        let _ = writeln!(
            md,
            "- **{}**: {} train / {} valid / {} test frames; novel subsets: {}; held out in turn: {}",
            d.name,
            d.train.len(),
            d.valid.len(),
            d.test.len(),
            if d.novel.is_empty() {
                "-".to_string()
            } else {
                d.novel
                    .iter()
                    .map(|(n, f)| format!("{n} ({})", f.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if d.holdout.is_empty() {
                "-".to_string()
            } else {
                d.holdout
                    .iter()
                    .map(|(n, f)| format!("{n} ({})", f.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    md.push('\n');
    md += &markdown_table(&headers, &rows);
    // Novelty per subset.
    let mut subsets: Vec<String> = vec![];
    for r in results {
        for m in &r.methods {
            for (n, _) in &m.auc {
                if !subsets.contains(n) {
                    subsets.push(n.clone());
                }
            }
        }
    }
    if !subsets.is_empty() {
        let _ = writeln!(md, "\n## Novelty ROC-AUC per subset\n");
        let mut h = vec!["data set".to_string(), "basis".into(), "method".into()];
        h.extend(subsets.iter().cloned());
        let mut rows = vec![];
        for r in results {
            for m in &r.methods {
                let mut row = vec![r.dataset.clone(), r.basis.clone(), m.method.name().into()];
                for s in &subsets {
                    row.push(
                        m.auc
                            .iter()
                            .find(|(n, _)| n == s)
                            .map_or("-".into(), |(_, v)| f3(*v)),
                    );
                }
                rows.push(row);
            }
        }
        md += &markdown_table(&h, &rows);
    }
    // Genuine novelty and the per-subset scores.
    if results.iter().any(|r| !r.subsets.is_empty()) {
        let _ = writeln!(
            md,
            "\n## Is each subset genuinely novel?\n\nPer-atom force errors of the model that \
             scored the subset (the refitted one for held-out subsets) against its \
             in-distribution test atoms. Genuinely novel: error ratio >= \
             {NOVEL_MIN_ERROR_RATIO} **and** fraction above the in-distribution 95th percentile \
             >= {NOVEL_MIN_FRACTION_ABOVE_P95} (0.05 for in-distribution atoms). Subsets that \
             fail are excluded from the `(novel)` means and the verdicts.\n"
        );
        let h = strings(&[
            "data set",
            "basis",
            "subset",
            "frames",
            "atoms",
            "error ratio",
            "> in-dist. p95",
            "genuinely novel",
        ]);
        let mut rows = vec![];
        for r in results {
            for n in &r.subsets {
                rows.push(vec![
                    r.dataset.clone(),
                    r.basis.clone(),
                    n.name.clone(),
                    n.frames.to_string(),
                    n.atoms.to_string(),
                    format!("{:.2}", n.error_ratio),
                    f3(n.frac_above_p95),
                    if n.novel { "yes" } else { "**not novel**" }.into(),
                ]);
            }
        }
        md += &markdown_table(&h, &rows);
        let _ = writeln!(md, "\n## Novelty detection and error ranking per subset\n");
        let h = strings(&[
            "data set",
            "basis",
            "subset",
            "method",
            "struct. AUC (max)",
            "struct. AUC (size-matched)",
            "atom AUC",
            "Spearman (pool)",
            "top-5% recall @10%",
        ]);
        let mut rows = vec![];
        for r in results {
            for (k, n) in r.subsets.iter().enumerate() {
                for m in &r.methods {
                    let sc = &m.subsets[k];
                    rows.push(vec![
                        r.dataset.clone(),
                        r.basis.clone(),
                        if n.novel {
                            n.name.clone()
                        } else {
                            format!("{} (not novel)", n.name)
                        },
                        m.method.name().into(),
                        f3(sc.auc_struct),
                        f3(sc.auc_struct_matched),
                        f3(sc.auc_atom),
                        f3(sc.rho_pool),
                        f3(sc.recall),
                    ]);
                }
            }
        }
        md += &markdown_table(&h, &rows);
        let _ = writeln!(
            md,
            "\n## Verdict: does gamma_local restore novelty sensitivity?\n\nPer data set, over \
             every (basis, genuinely novel subset) pair: gamma_local's size-matched structure \
             AUC >= gamma's - {VERDICT_AUC_TOLERANCE} on every pair and higher on average, and \
             its mean top-5 % recall at a 10 % budget >= gamma's. Thresholds fixed before any \
             run; nothing tuned.\n"
        );
        let mut names: Vec<&str> = vec![];
        for r in results {
            if !names.contains(&r.dataset.as_str()) {
                names.push(&r.dataset);
            }
        }
        let mut any = false;
        for d in names {
            if let Some(v) = verdict(results, d) {
                let _ = writeln!(md, "- {}", v.line());
                any = true;
            }
        }
        if !any {
            let _ = writeln!(
                md,
                "- no verdict: gamma and gamma_local were not both scored."
            );
        }
    }
    let _ = writeln!(
        md,
        "\nSpearman: uncertainty vs force error on the in-distribution test atoms (structures: max \
         over atoms). Calibration: PIT of the Maxwell predictive distribution (sigma = the ensemble's \
         calibrated spread; for gamma and gamma_local the grade times a scale fitted by the Maxwell \
         likelihood on the validation atoms); signed calib. = mean(observed - expected): > 0 \
         conservative, < 0 errors under-predicted. Novelty: ROC-AUC of the structure grade (max-atom \
         uncertainty), novel structures vs the in-distribution test structures; for held-out subsets \
         the model is refitted without the subset (and its test frames leave the in-distribution \
         test). The max over atoms grows with the atom count, so `struct. AUC (max)` is biased \
         whenever novel and in-distribution frames differ in size (Li: 13-128 vs mostly 250 atoms); \
         `size-matched` compares each novel frame of n atoms only with maxima over n atoms drawn \
         at random without replacement from each in-distribution frame ({MATCHED_DRAWS} draws per \
         frame, the same draws for every method; frames of equal size give the plain AUC). Atom \
         AUC: novel atoms vs in-distribution test atoms. Spearman (pool) and recall use the pool \
         of in-distribution test atoms + subset atoms: recall = expected fraction of the \
         ceil({TOP_ERROR_FRACTION} n) highest-error atoms among the ceil({LABEL_BUDGET} n) most \
         uncertain (ties split evenly; a constant uncertainty scores {LABEL_BUDGET}).\n\nFigures: \
         `calibration.png`, `scores.png`, `novelty.png`, `accuracy.png`; data: `results.csv` \
         (units in the column names: `force_mae_test_meV_per_A` = mean |ΔF| over the test atoms, \
         `force_rmse_test_meV_per_A` = RMSE per force component), `subsets.csv`."
    );
    md
}

/// A score to three decimals; "-" where it is undefined (NaN: no genuinely novel subset, a
/// subset too small to rank).
fn f3(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.3}")
    }
}

/// Owned copies of `v` (table headers).
fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
