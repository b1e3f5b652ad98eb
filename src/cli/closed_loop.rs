//! `aceuq loop`: closed-loop on-the-fly active learning with LAMMPS (see `crate::workflow`).

use crate::stats::plot::{AXIS_LABELS, AxisFormat};
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
    let cutoffs = workflow::cutoff_rows(&rows);
    if !cutoffs.is_empty() {
        println!(
            "\ncutoffs of {} per iteration and species (upper: none = no uncertainty reaches a \
             force error of {} eV/Å; moved: change from the previous iteration; high atoms: \
             labelled high-uncertainty atoms behind u_max; after labelling: recalibrated \
             with the iteration's labels, which the next fit takes its u_max from when it finds \
             none)\n{}",
            cfg.run.quantity.name(),
            cfg.run.max_error,
            cutoff_table(&cutoffs)
        );
    }
    let why = match stop {
        Stop::Converged => {
            "converged: the last explorations ran their full length without a halt, dumping no \
             more candidate frames than in-distribution runs do ([loop] converged_candidates)"
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
                workflow::number_or(r.test_force_rmse, 1, "-"),
                workflow::number_or(r.test_energy_rmse, 2, "-"),
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

/// [`workflow::cutoff_rows`] as a text table.
fn cutoff_table(rows: &[Vec<String>]) -> String {
    let headers: Vec<String> = [
        "iter",
        "species",
        "u_c",
        "moved",
        "u_max",
        "moved",
        "u_max from",
        "valid atoms",
        "high atoms",
        "u_max after labelling",
        "high atoms",
        "caveats",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    super::calibrate::text_table(&headers, rows)
}

/// Six panels over iterations: data set size, test errors, candidates found, longest stable run,
/// lower and upper cutoffs.
fn plot(rows: &[IterationSummary], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1400, 1300)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 2));
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
        // An empty panel (no test set) gets a plain 0..1 axis, not one of round-off size.
        let ymax = ys
            .iter()
            .cloned()
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max)
            .max(if ys.iter().all(|y| !y.is_finite()) {
                1.0
            } else {
                1e-9
            })
            * 1.15;
        let title = if ys.iter().all(|y| !y.is_finite()) {
            format!("{title} (no [loop] test set)")
        } else {
            title.to_string()
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 26))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0..xmax, 0.0..ymax)?;
        // One number of decimals per axis: 3000 MD steps, not plotters' "3000.0".
        let yf = AxisFormat::new(0.0, ymax, AXIS_LABELS);
        chart
            .configure_mesh()
            .x_labels(xmax as usize + 1)
            .y_labels(AXIS_LABELS)
            .y_label_formatter(&|v| yf.label(v))
            .x_desc("iteration")
            .y_desc(*unit)
            .label_style(("sans-serif", 16))
            .draw()?;
        let points: Vec<(i32, f64)> = xs
            .iter()
            .cloned()
            .zip(ys.iter().cloned())
            .filter(|(_, y)| y.is_finite())
            .collect();
        chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(3)))?;
        chart.draw_series(
            points
                .iter()
                .map(|(x, y)| Circle::new((*x, *y), 5, BLUE.filled())),
        )?;
    }
    cutoff_panel(&panels[4], rows, false)?;
    cutoff_panel(&panels[5], rows, true)?;
    root.present()?;
    Ok(())
}

/// The lower (`upper` false) or upper cutoff per species over iterations; for the
/// upper cutoff also the recalibration after labelling (hollow). Missing upper cutoffs are left
/// out (the title says so).
fn cutoff_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    rows: &[IterationSummary],
    upper: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut species: Vec<&str> = vec![];
    for r in rows {
        for c in &r.cutoffs {
            if !species.contains(&c.species.as_str()) {
                species.push(&c.species);
            }
        }
    }
    let value = |c: &workflow::SpeciesCutoffs| if upper { c.upper } else { c.lower };
    let after = |c: &workflow::SpeciesCutoffs| c.upper_after_labelling.filter(|_| upper);
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| &r.cutoffs)
        .flat_map(|c| [Some(value(c)), after(c)])
        .flatten()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let hi = all.iter().cloned().fold(0.0, f64::max).max(1e-9) * 1.15;
    let xmax = rows.last().map_or(1, |r| r.iteration as i32) + 1;
    let title = if upper {
        "Upper cutoff u_max (hollow: after labelling; none: not drawn)"
    } else {
        "Lower cutoff u_c"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0..xmax, 0.0..hi)?;
    let yf = AxisFormat::new(0.0, hi, AXIS_LABELS);
    chart
        .configure_mesh()
        .x_labels(xmax as usize + 1)
        .y_labels(AXIS_LABELS)
        .y_label_formatter(&|v| yf.label(v))
        .x_desc("iteration")
        .y_desc("uncertainty")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (i, sp) in species.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(i32, f64)> = rows
            .iter()
            .filter_map(|r| {
                let c = r.cutoffs.iter().find(|c| c.species == *sp)?;
                Some((r.iteration as i32, value(c)))
            })
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
            .label(*sp)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 5, color.filled())),
        )?;
        let hollow: Vec<(i32, f64)> = rows
            .iter()
            .filter_map(|r| {
                let c = r.cutoffs.iter().find(|c| c.species == *sp)?;
                Some((r.iteration as i32, after(c)?))
            })
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .collect();
        chart.draw_series(
            hollow
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 8, color.stroke_width(2))),
        )?;
    }
    if !species.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}
