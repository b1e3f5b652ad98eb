//! Multi-panel line figures for the benchmarks (plotters, PNG or SVG by extension): each panel
//! holds several series drawn as a mean line with a shaded spread band.

use crate::stats::plot::PlotError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";

/// Colours of successive series (shared with the statistics plots).
pub use crate::stats::plot::PALETTE;

/// One series: points (x, mean, low, high); the band low..high is shaded when it has width.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y, y_low, y_high); non-finite points are skipped.
    pub points: Vec<(f64, f64, f64, f64)>,
    /// Draw markers at the points (useful when x is not monotone or few points).
    pub markers: bool,
    /// Index into [`PALETTE`] (so one method keeps its colour across panels).
    pub color: usize,
}

/// One panel of a figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The series.
    pub series: Vec<Series>,
    /// Logarithmic y axis (non-positive values are skipped).
    pub log_y: bool,
}

/// Kind of the second figure type: bars grouped by category (one bar per series per group).
#[derive(Clone, Debug, PartialEq)]
pub struct BarPanel {
    /// Panel title.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// Category names along x.
    pub groups: Vec<String>,
    /// (series label, value per group); NaN values are not drawn.
    pub series: Vec<(String, Vec<f64>)>,
    /// Fixed y range, or None to fit the data (from 0).
    pub y_range: Option<(f64, f64)>,
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Write a grid of `cols` columns of panels with an overall title.
pub fn write_panels(
    path: &Path,
    title: &str,
    panels: &[Panel],
    cols: usize,
    panel_size: (u32, u32),
) -> Result<(), PlotError> {
    if panels.is_empty() {
        return Err(PlotError::Data {
            path: path.to_path_buf(),
            reason: "no panels".into(),
        });
    }
    let cols = cols.clamp(1, panels.len());
    let rows = panels.len().div_ceil(cols);
    let size = (panel_size.0 * cols as u32, panel_size.1 * rows as u32 + 50);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let res: Result<(), Box<dyn std::error::Error>> = match ext.as_str() {
        "png" => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw_grid(&root, title, panels, rows, cols).and_then(|_| Ok(root.present()?))
        }
        "svg" => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw_grid(&root, title, panels, rows, cols).and_then(|_| Ok(root.present()?))
        }
        _ => {
            return Err(PlotError::Format {
                path: path.to_path_buf(),
            });
        }
    };
    res.map_err(|e| draw_err(path, e))
}

fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
    rows: usize,
    cols: usize,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 30))?;
    let areas = root.split_evenly((rows, cols));
    for (p, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, p)?;
    }
    Ok(())
}

fn range(panel: &Panel) -> ((f64, f64), (f64, f64)) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for s in &panel.series {
        for &(x, y, lo, hi) in &s.points {
            if !(x.is_finite() && y.is_finite()) {
                continue;
            }
            x0 = x0.min(x);
            x1 = x1.max(x);
            for v in [y, lo, hi] {
                if v.is_finite() && (!panel.log_y || v > 0.0) {
                    y0 = y0.min(v);
                    y1 = y1.max(v);
                }
            }
        }
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = if panel.log_y { (0.1, 1.0) } else { (0.0, 1.0) };
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if panel.log_y {
        if y1 <= y0 {
            y1 = y0 * 10.0;
        }
        ((x0, x1), (y0 / 1.3, y1 * 1.3))
    } else {
        // Start at 0 unless the data sit far above it (small differences stay visible).
        let span = (y1 - y0).max(y1.abs() * 1e-3).max(1e-12);
        let lo = if y0 >= 0.0 && y0 < 0.3 * y1 {
            0.0
        } else {
            y0 - 0.08 * span
        };
        let hi = y1 + 0.08 * span;
        ((x0, x1), (lo, hi))
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = range(p);
    let mut b = ChartBuilder::on(area);
    b.caption(&p.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(p.x_label.as_str())
                .y_desc(p.y_label.as_str())
                .axis_desc_style((FONT, 15))
                .label_style((FONT, 13))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            let ok = |v: f64| v.is_finite() && (!p.log_y || v > 0.0);
            for s in &p.series {
                let col = PALETTE[s.color % PALETTE.len()];
                let pts: Vec<(f64, f64, f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|&(x, y, _, _)| x.is_finite() && ok(y))
                    .collect();
                let band: Vec<(f64, f64, f64)> = pts
                    .iter()
                    .filter(|&&(_, _, lo, hi)| ok(lo) && ok(hi) && hi > lo)
                    .map(|&(x, _, lo, hi)| (x, lo, hi))
                    .collect();
                if band.len() >= 2 {
                    let poly: Vec<(f64, f64)> = band
                        .iter()
                        .map(|&(x, lo, _)| (x, lo))
                        .chain(band.iter().rev().map(|&(x, _, hi)| (x, hi)))
                        .collect();
                    chart.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.18))))?;
                }
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().map(|&(x, y, _, _)| (x, y)),
                        col.stroke_width(2),
                    ))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                    });
                if s.markers {
                    chart.draw_series(
                        pts.iter()
                            .map(|&(x, y, _, _)| Circle::new((x, y), 3, col.filled())),
                    )?;
                }
            }
            if p.series.len() > 0 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .label_font((FONT, 13))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }
        }};
    }
    if p.log_y {
        body!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?);
    } else {
        body!(b.build_cartesian_2d(x0..x1, y0..y1)?);
    }
    Ok(())
}

/// Write a row of grouped bar panels with an overall title.
pub fn write_bars(
    path: &Path,
    title: &str,
    panels: &[BarPanel],
    panel_size: (u32, u32),
) -> Result<(), PlotError> {
    if panels.is_empty() {
        return Err(PlotError::Data {
            path: path.to_path_buf(),
            reason: "no panels".into(),
        });
    }
    let size = (panel_size.0 * panels.len() as u32, panel_size.1 + 50);
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(PlotError::Format {
            path: path.to_path_buf(),
        });
    }
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let res = (|| -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let r = root.titled(title, (FONT, 28))?;
        let areas = r.split_evenly((1, panels.len()));
        for (p, area) in panels.iter().zip(areas.iter()) {
            draw_bars(area, p)?;
        }
        root.present()?;
        Ok(())
    })();
    res.map_err(|e| draw_err(path, e))
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &BarPanel,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let ng = p.groups.len().max(1);
    let ns = p.series.len().max(1);
    let (y0, y1) = p.y_range.unwrap_or_else(|| {
        let m = p
            .series
            .iter()
            .flat_map(|(_, v)| v.iter())
            .filter(|v| v.is_finite())
            .cloned()
            .fold(0.0, f64::max);
        (0.0, if m > 0.0 { m * 1.15 } else { 1.0 })
    });
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..ng as f64, y0..y1)?;
    let groups = p.groups.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(ng * 2 + 1)
        .x_label_formatter(&|x| {
            let k = x.floor() as usize;
            if (x - k as f64 - 0.5).abs() < 0.01 && k < groups.len() {
                groups[k].clone()
            } else {
                String::new()
            }
        })
        .y_desc(p.y_label.as_str())
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 12))
        .draw()?;
    let w = 0.8 / ns as f64;
    for (k, (label, vals)) in p.series.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(
                vals.iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(g, &v)| {
                        let x = g as f64 + 0.1 + w * k as f64;
                        Rectangle::new([(x, y0), (x + w * 0.95, v.min(y1))], col.filled())
                    }),
            )?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], col.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
