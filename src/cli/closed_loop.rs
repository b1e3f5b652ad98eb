//! `aceuq loop`: closed-loop on-the-fly active learning with LAMMPS (see `crate::workflow`).

use crate::workflow::{self, IterationSummary, Stop, Tools, config::LoopConfig};
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Arguments of `aceuq loop`.
#[derive(clap::Args, Debug)]
pub struct LoopArgs {
    /// Loop configuration (TOML: [loop], [labeller], [[exploration]], optionally [lammps],
    /// [basis], [fit], [uq]).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Run folder (created; an existing one is resumed where it stopped).
    #[arg(long)]
    pub run_dir: PathBuf,
}

pub fn run(a: &LoopArgs) -> Result<()> {
    let cfg = LoopConfig::read(&a.config).map_err(|e| anyhow!(e))?;
    let tools = Tools::resolve(&cfg)?;
    let resumed = a.run_dir.join("summary.csv").is_file();
    eprintln!(
        "aceuq loop: {} exploration(s), up to {} iterations of {} labelled structures{}; run folder {}",
        cfg.exploration.len(),
        cfg.run.max_iterations,
        cfg.run.max_new,
        if resumed { " (resuming)" } else { "" },
        a.run_dir.display()
    );
    let t0 = std::time::Instant::now();
    let say = |m: &str| {
        let line = format!("[{:>6.0} s] {m}", t0.elapsed().as_secs_f64());
        eprintln!("{line}");
        workflow::log_line(&a.run_dir, &line);
    };
    let (rows, stop) = workflow::run(&cfg, &a.run_dir, &tools, &say)?;
    println!("\n{}", table(&rows));
    let why = match stop {
        Stop::Converged => {
            "converged: the last explorations ran without any atom above the lower cutoff"
        }
        Stop::MaxIterations => "stopped at max_iterations (not converged)",
        Stop::WallTime => "stopped at the wall-time limit (not converged)",
        Stop::NothingToSelect => "stopped: candidates were found but none extends the training set",
    };
    println!("{why}");
    if !rows.is_empty() {
        let png = a.run_dir.join("summary.png");
        plot(&rows, &png).map_err(|e| anyhow!("cannot draw {}: {e}", png.display()))?;
        eprintln!(
            "wrote {} and {}",
            a.run_dir.join("summary.csv").display(),
            png.display()
        );
    }
    Ok(())
}

fn table(rows: &[IterationSummary]) -> String {
    let headers: Vec<String> = [
        "iter",
        "structures",
        "atoms",
        "test F RMSE (meV/Å)",
        "test E RMSE (meV/atom)",
        "candidates",
        "labelled",
        "failed",
        "halts",
        "longest stable (steps)",
        "time (s)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.iteration.to_string(),
                r.structures.to_string(),
                r.atoms.to_string(),
                format!("{:.1}", r.test_force_rmse),
                format!("{:.2}", r.test_energy_rmse),
                r.candidates.to_string(),
                r.labelled.to_string(),
                r.failed.to_string(),
                format!("{}/{}", r.halts, r.explorations),
                r.longest_stable_steps.to_string(),
                format!("{:.0}", r.seconds),
            ]
        })
        .collect();
    super::calibrate::text_table(&headers, &body)
}

/// Four panels over iterations: data set size, test errors, candidates found, longest stable run.
fn plot(rows: &[IterationSummary], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 2));
    let xs: Vec<i32> = rows.iter().map(|r| r.iteration as i32).collect();
    let xmax = xs.last().copied().unwrap_or(1) + 1;
    let series: [(&str, &str, Vec<f64>); 4] = [
        (
            "Training data",
            "structures",
            rows.iter().map(|r| r.structures as f64).collect(),
        ),
        (
            "Test force RMSE",
            "meV/Å",
            rows.iter().map(|r| r.test_force_rmse).collect(),
        ),
        (
            "Candidates above the lower cutoff",
            "frames",
            rows.iter().map(|r| r.candidates as f64).collect(),
        ),
        (
            "Longest stable exploration",
            "MD steps",
            rows.iter().map(|r| r.longest_stable_steps as f64).collect(),
        ),
    ];
    for (area, (title, unit, ys)) in panels.iter().zip(series.iter()) {
        let ymax = ys.iter().cloned().fold(0.0, f64::max).max(1e-9) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(*title, ("sans-serif", 26))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0..xmax, 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_labels(xmax as usize + 1)
            .x_desc("iteration")
            .y_desc(*unit)
            .label_style(("sans-serif", 16))
            .draw()?;
        chart.draw_series(LineSeries::new(
            xs.iter().cloned().zip(ys.iter().cloned()),
            BLUE.stroke_width(3),
        ))?;
        chart.draw_series(
            xs.iter()
                .zip(ys)
                .map(|(x, y)| Circle::new((*x, *y), 5, BLUE.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}
