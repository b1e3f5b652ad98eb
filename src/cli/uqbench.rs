//! `aceuq uq-bench`: the heterogeneity / model-accuracy study of Shuang et al. (METHODS.md §3,
//! §6) from a `bench.toml`: Spearman rho, calibration and novelty ROC-AUC of each uncertainty
//! method, for each training set and basis size; figures and a Markdown table.

use crate::bench::figures::{BarPanel, Panel, Series, write_bars, write_panels};
use crate::bench::heterogeneity::{
    BenchConfig, CaseResult, Dataset, DatasetConfig, group_by_type, run_case, split3, thin,
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
    let mut holdout = vec![];
    for (name, frames) in group_by_type(read_all(base, &d.mixed).with_context(ctx)?) {
        if d.holdout && (!quick || holdout.len() < cfg.quick.max_holdouts) {
            holdout.push((name.clone(), frames.clone()));
        }
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
    let bases: Vec<_> = if a.quick {
        if cfg.quick.bases.is_empty() {
            cfg.basis.iter().take(2).cloned().collect()
        } else {
            cfg.basis
                .iter()
                .filter(|b| cfg.quick.bases.contains(&b.name))
                .cloned()
                .collect()
        }
    } else {
        cfg.basis.clone()
    };
    let members = if a.quick {
        cfg.quick.ensemble.max(2)
    } else {
        cfg.ensemble
    };
    let data: Vec<Dataset> = cfg
        .dataset
        .iter()
        .map(|d| load(&base, d, &cfg, a.quick))
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let t0 = Instant::now();
    let fits: usize = data.iter().map(|d| 1 + d.holdout.len()).sum::<usize>() * bases.len();
    let bar = fit_bar(fits);
    let mut results: Vec<CaseResult> = vec![];
    for d in &data {
        for b in &bases {
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
                        "{} rho {:.2} area {:.3} AUC {:.2}",
                        m.method.name(),
                        m.rho_atom,
                        m.area,
                        m.mean_auc()
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
    let md = summary(a, &data, &results, members, t0.elapsed().as_secs_f64());
    crate::io::container::write_atomic(&a.out.join("summary.md"), md.as_bytes())?;
    print!("{md}");
    eprintln!("wrote {}", a.out.display());
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

/// Columns of results.csv.
pub const CSV_HEADER: [&str; 13] = [
    "dataset",
    "basis",
    "nfuncs",
    "n_train",
    "mae_test",
    "rmse_test",
    "method",
    "spearman_atom",
    "spearman_structure",
    "miscalibration_area",
    "signed_calibration",
    "mean_auc",
    "auc_by_subset",
];

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
                "\"{}\",{},{},{},{:.6},{:.6},{},{:.4},{:.4},{:.4},{:.4},{:.4},\"{}\"",
                r.dataset,
                r.basis,
                r.nfuncs,
                r.n_train,
                r.mae_test,
                r.rmse_test,
                m.method.name(),
                m.rho_atom,
                m.rho_struct,
                m.area,
                m.signed,
                m.mean_auc(),
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
        "uncertainty vs error (Spearman), calibration and novelty detection",
        &[
            BarPanel {
                title: "Spearman rho (atoms)".into(),
                y_label: "rho".into(),
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
                groups,
                series: per(&|m| m.mean_auc()),
                y_range: Some((0.0, 1.0)),
            },
        ],
        (620, 480),
    )
    .with_context(|| format!("writing {}", p.display()))?;
    // Accuracy: scores against the test error, one line per (data set, method).
    let mut datasets: Vec<String> = vec![];
    for r in results {
        if !datasets.contains(&r.dataset) {
            datasets.push(r.dataset.clone());
        }
    }
    let lines = |f: &dyn Fn(&crate::bench::heterogeneity::MethodScores) -> f64| -> Vec<Series> {
        let mut v = vec![];
        for (di, d) in datasets.iter().enumerate() {
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
                    label: format!("{} {}", short(d), m.name()),
                    points: pts,
                    markers: true,
                    color: di * methods.len() + mi,
                });
            }
        }
        v
    };
    let p = out.join("accuracy.png");
    write_panels(
        &p,
        "model accuracy (test force MAE) and uncertainty quality",
        &[
            Panel {
                title: "Spearman rho vs test error".into(),
                x_label: "test mean |ΔF| (eV/Å)".into(),
                y_label: "Spearman rho (atoms)".into(),
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
    let headers: Vec<String> = [
        "data set",
        "basis (functions)",
        "test MAE (eV/Å)",
        "method",
        "Spearman atoms",
        "Spearman structures",
        "miscal. area",
        "signed calib.",
        "novelty AUC (mean)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = vec![];
    for r in results {
        for m in &r.methods {
            rows.push(vec![
                r.dataset.clone(),
                format!("{} ({})", r.basis, r.nfuncs),
                format!("{:.4}", r.mae_test),
                m.method.name().to_string(),
                format!("{:.3}", m.rho_atom),
                format!("{:.3}", m.rho_struct),
                format!("{:.3}", m.area),
                format!("{:+.3}", m.signed),
                format!("{:.3}", m.mean_auc()),
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
                            .map_or("-".into(), |(_, v)| format!("{v:.3}")),
                    );
                }
                rows.push(row);
            }
        }
        md += &markdown_table(&h, &rows);
    }
    let _ = writeln!(
        md,
        "\nSpearman: uncertainty vs force error on the in-distribution test atoms (structures: max \
         over atoms). Calibration: PIT of the Maxwell predictive distribution (sigma = the ensemble's \
         calibrated spread; for gamma and gamma_local the grade times a scale fitted by the Maxwell \
         likelihood on the validation atoms); signed calib. = mean(observed - expected): > 0 \
         conservative, < 0 errors under-predicted. Novelty: ROC-AUC of the structure grade (max-atom \
         uncertainty), novel structures vs the in-distribution test structures; for held-out subsets \
         the model is refitted without the subset.\n\nFigures: `calibration.png`, `scores.png`, \
         `accuracy.png`; data: `results.csv`."
    );
    md
}
