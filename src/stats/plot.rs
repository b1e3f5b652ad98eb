//! Figures for the statistics layer (plotters; PNG or SVG chosen by the file extension) and a
//! Markdown table writer.
//!
//! Array-in APIs, one struct per figure kind:
//! - [`HistogramPlot`]: histogram (density) of a sample with fitted pdfs and vertical cutoffs.
//! - [`HeatmapPlot`]: a metric (F1, precision, recall) over an (x, y) grid with a colour bar
//!   and the statistical cutoffs as lines.
//! - [`CalibrationPlot`]: calibration curves with the diagonal, miscalibration area in the
//!   legend.
//! - [`ParityPlot`]: scatter of uncertainty vs error with cutoff lines (optionally log-log).
//! - [`markdown_table`] / [`write_markdown_table`].
//!
//! Every `write` checks its inputs first and returns [`PlotError`] rather than panicking.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::dist::{ContinuousDistribution, Distribution};
use super::metrics::CalibrationCurve;

/// Errors while drawing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The extension is neither .png nor .svg.
    #[error("{path}: unsupported plot format; use a .png or .svg file name")]
    Format {
        /// The path given.
        path: PathBuf,
    },
    /// The data cannot be drawn (empty, mismatched sizes, non-finite).
    #[error("cannot plot {path}: {reason}")]
    Data {
        /// The output path.
        path: PathBuf,
        /// What is wrong with the data.
        reason: String,
    },
    /// The backend failed (e.g. the directory does not exist or a font is missing).
    #[error("cannot draw {path}: {reason}")]
    Draw {
        /// The output path.
        path: PathBuf,
        /// The backend's message.
        reason: String,
    },
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Figure size in pixels (PNG) or user units (SVG).
pub const DEFAULT_SIZE: (u32, u32) = (1000, 700);

const FONT: &str = "sans-serif";

/// Line colours for successive curves (colour-blind friendly "Tableau 10" subset).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];
/// Colours of vertical/horizontal marker lines.
const MARKER_COLORS: [RGBColor; 4] = [
    RGBColor(0, 0, 0),
    RGBColor(230, 85, 13),
    RGBColor(117, 107, 177),
    RGBColor(99, 99, 99),
];

/// A labelled curve given by points (x, y).
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// The pdf of a distribution on `n` points of (0, x_max], labelled with its parameters
    /// unless `label` is given.
    pub fn pdf(dist: &Distribution, x_max: f64, n: usize, label: Option<&str>) -> Curve {
        let n = n.max(2);
        let points = (1..=n)
            .map(|i| {
                let x = x_max * i as f64 / n as f64;
                (x, dist.pdf(x))
            })
            .filter(|(_, y)| y.is_finite())
            .collect();
        let label = label
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} ({})", dist.family(), dist.params_string()));
        Curve { label, points }
    }
}

/// A labelled constant line (a cutoff).
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Legend text, e.g. "u_c = 3.1 (N = 10^4)".
    pub label: String,
    /// Position on the axis.
    pub value: f64,
}

impl Marker {
    /// A marker with a label.
    pub fn new(label: impl Into<String>, value: f64) -> Self {
        Self {
            label: label.into(),
            value,
        }
    }
}

enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> Result<Format, PlotError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => Err(PlotError::Format {
            path: path.to_path_buf(),
        }),
    }
}

/// Short tick label: up to 4 significant digits, scientific outside [1e-3, 1e5).
fn tick(v: &f64) -> String {
    let v = *v;
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        // 4 significant digits, trailing zeros of the fraction dropped (0.30000000004 -> 0.3).
        let digits = (3 - a.log10().floor() as i32).max(0) as usize;
        let t = format!("{v:.digits$}");
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t
        }
    } else {
        format!("{v:.2e}")
    }
}

fn data_err(path: &Path, reason: impl Into<String>) -> PlotError {
    PlotError::Data {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut r: Option<(f64, f64)> = None;
    for v in values.filter(|v| v.is_finite()) {
        r = Some(match r {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }
    r
}

/// Widens a degenerate range so the axis is drawable.
fn pad_range(lo: f64, hi: f64) -> (f64, f64) {
    if hi > lo {
        (lo, hi)
    } else {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - d, hi + d)
    }
}

/// A figure that can draw itself on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

fn write_figure<T: Figure>(path: &Path, size: (u32, u32), fig: &T) -> Result<(), PlotError> {
    // A closure cannot be generic over the backend, so dispatch by hand.
    let fail = |e: Box<dyn std::error::Error>| PlotError::Draw {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    match format_of(path)? {
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            fig.draw(&root).map_err(fail)?;
            root.present().map_err(|e| fail(Box::new(e)))
        }
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            fig.draw(&root).map_err(fail)?;
            root.present().map_err(|e| fail(Box::new(e)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Histogram with fitted pdfs.

/// Histogram (normalized to a density) of a sample with fitted pdfs and cutoff lines.
#[derive(Clone, Debug)]
pub struct HistogramPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// X axis label with units, e.g. "force error (eV/Å)".
    pub x_label: &'a str,
    /// The sample.
    pub values: &'a [f64],
    /// Number of bins (0: chosen from the sample size).
    pub bins: usize,
    /// Curves to overlay (usually [`Curve::pdf`] of each candidate fit).
    pub curves: Vec<Curve>,
    /// Vertical lines (cutoffs).
    pub markers: Vec<Marker>,
}

impl HistogramPlot<'_> {
    /// Writes the figure to `path` (.png or .svg).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        if self.values.iter().all(|v| !v.is_finite()) {
            return Err(data_err(path, "the sample has no finite values"));
        }
        write_figure(path, DEFAULT_SIZE, self)
    }
}

impl Figure for HistogramPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let vals: Vec<f64> = self
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let (vmin, vmax) = finite_range(vals.iter().copied()).unwrap_or((0.0, 1.0));
        let mk_max = finite_range(self.markers.iter().map(|m| m.value)).map_or(vmax, |r| r.1);
        let x0 = vmin.min(0.0);
        let (x0, x1) = pad_range(x0, vmax.max(mk_max) * 1.05);
        let bins = if self.bins > 0 {
            self.bins
        } else {
            ((vals.len() as f64).sqrt().ceil() as usize).clamp(10, 120)
        };
        let width = (vmax - x0.max(vmin.min(0.0))) / bins as f64;
        let width = if width > 0.0 { width } else { 1.0 };
        let mut counts = vec![0usize; bins];
        for &v in &vals {
            let k = (((v - x0) / width) as usize).min(bins - 1);
            counts[k] += 1;
        }
        let n = vals.len() as f64;
        let dens: Vec<f64> = counts.iter().map(|&c| c as f64 / (n * width)).collect();
        let ymax_curve = self
            .curves
            .iter()
            .flat_map(|c| {
                c.points
                    .iter()
                    .filter(|p| p.0 >= x0 && p.0 <= x1)
                    .map(|p| p.1)
            })
            .filter(|y| y.is_finite())
            .fold(0.0_f64, f64::max);
        let ymax_hist = dens.iter().copied().fold(0.0_f64, f64::max);
        // Do not let a pdf spike (e.g. Gamma with shape < 1 near 0) squash the histogram.
        let ymax = ymax_hist.max(ymax_curve.min(3.0 * ymax_hist.max(1e-300))) * 1.1;
        let ymax = if ymax > 0.0 { ymax } else { 1.0 };

        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FONT, 28))
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc("probability density")
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let bar = RGBColor(158, 202, 225);
        chart
            .draw_series(dens.iter().enumerate().map(|(k, &d)| {
                let a = x0 + width * k as f64;
                Rectangle::new([(a, 0.0), (a + width, d)], bar.filled())
            }))?
            .label(format!("sample (n = {})", vals.len()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], bar.filled()));
        for (i, c) in self.curves.iter().enumerate() {
            let col = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .copied()
                .filter(|p| p.0 >= x0 && p.0 <= x1 && p.1.is_finite())
                .map(|(x, y)| (x, y.min(ymax)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, col.stroke_width(3)))?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(3))
                });
        }
        for (i, m) in self.markers.iter().enumerate() {
            let col = MARKER_COLORS[i % MARKER_COLORS.len()];
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(m.value, 0.0), (m.value, ymax)],
                    10,
                    6,
                    col.stroke_width(2),
                ))?
                .label(m.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 17))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// Histogram of a sample with the pdfs of all fitted candidates and cutoff lines: the common
/// case of [`HistogramPlot`]. `candidates` are (label suffix, distribution), e.g. from
/// [`super::ModelChoice::candidates`].
pub fn histogram_with_fits(
    path: &Path,
    title: &str,
    x_label: &str,
    values: &[f64],
    fits: &[(String, Distribution)],
    markers: Vec<Marker>,
) -> Result<(), PlotError> {
    let vmax = finite_range(values.iter().copied()).map_or(1.0, |r| r.1);
    let mmax = finite_range(markers.iter().map(|m| m.value)).map_or(vmax, |r| r.1);
    let x_max = vmax.max(mmax) * 1.05;
    let curves = fits
        .iter()
        .map(|(label, d)| Curve::pdf(d, x_max, 400, Some(label)))
        .collect();
    HistogramPlot {
        title,
        x_label,
        values,
        bins: 0,
        curves,
        markers,
    }
    .write(path)
}

// ---------------------------------------------------------------------------------------------
// Heat map.

/// A scalar field on a grid with a colour bar, e.g. F1 over (u_c, e_c).
#[derive(Clone, Debug)]
pub struct HeatmapPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// X axis label with units.
    pub x_label: &'a str,
    /// Y axis label with units.
    pub y_label: &'a str,
    /// Colour-bar label, e.g. "F1".
    pub z_label: &'a str,
    /// Grid along x (strictly increasing), length nx.
    pub x: &'a [f64],
    /// Grid along y (strictly increasing), length ny.
    pub y: &'a [f64],
    /// Values, row-major by y: `z[iy * nx + ix]`. With x = u_grid and y = e_grid this is the
    /// layout of [`super::Sweep::f1`].
    pub z: &'a [f64],
    /// Colour scale range; None: the finite data range.
    pub z_range: Option<(f64, f64)>,
    /// Vertical lines (x cutoffs).
    pub x_markers: Vec<Marker>,
    /// Horizontal lines (y cutoffs).
    pub y_markers: Vec<Marker>,
}

/// Viridis colour map, t in [0, 1] (piecewise-linear through 9 anchor colours).
pub fn viridis(t: f64) -> RGBColor {
    const A: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let s = t * (A.len() - 1) as f64;
    let i = (s.floor() as usize).min(A.len() - 2);
    let f = s - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    RGBColor(
        mix(A[i].0, A[i + 1].0),
        mix(A[i].1, A[i + 1].1),
        mix(A[i].2, A[i + 1].2),
    )
}

/// Cell edges: midpoints between grid values, extended by half a step at the ends.
fn edges(g: &[f64]) -> Vec<f64> {
    let n = g.len();
    if n == 1 {
        let d = if g[0] == 0.0 { 0.5 } else { g[0].abs() * 0.05 };
        return vec![g[0] - d, g[0] + d];
    }
    let mut e = Vec::with_capacity(n + 1);
    e.push(g[0] - 0.5 * (g[1] - g[0]));
    for w in g.windows(2) {
        e.push(0.5 * (w[0] + w[1]));
    }
    e.push(g[n - 1] + 0.5 * (g[n - 1] - g[n - 2]));
    e
}

impl HeatmapPlot<'_> {
    /// Writes the figure to `path` (.png or .svg).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        if self.x.is_empty() || self.y.is_empty() {
            return Err(data_err(path, "empty grid"));
        }
        if self.z.len() != self.x.len() * self.y.len() {
            return Err(data_err(
                path,
                format!(
                    "z has {} values, grid is {} x {}",
                    self.z.len(),
                    self.x.len(),
                    self.y.len()
                ),
            ));
        }
        for (name, g) in [("x", self.x), ("y", self.y)] {
            if g.iter().any(|v| !v.is_finite()) || g.windows(2).any(|w| w[1] <= w[0]) {
                return Err(data_err(
                    path,
                    format!("{name} grid must be finite and strictly increasing"),
                ));
            }
        }
        write_figure(path, (1100, 750), self)
    }
}

impl Figure for HeatmapPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (zlo, zhi) = self
            .z_range
            .or_else(|| finite_range(self.z.iter().copied()))
            .map(|(a, b)| pad_range(a, b))
            .unwrap_or((0.0, 1.0));
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(150));
        let (xe, ye) = (edges(self.x), edges(self.y));
        let (x0, x1) = (xe[0], xe[xe.len() - 1]);
        let (y0, y1) = (ye[0], ye[ye.len() - 1]);
        let mut chart = ChartBuilder::on(&main)
            .caption(self.title, (FONT, 28))
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(85)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        let nx = self.x.len();
        chart.draw_series(self.z.iter().enumerate().map(|(k, &v)| {
            let (iy, ix) = (k / nx, k % nx);
            let col = if v.is_finite() {
                viridis((v - zlo) / (zhi - zlo))
            } else {
                RGBColor(200, 200, 200)
            };
            Rectangle::new([(xe[ix], ye[iy]), (xe[ix + 1], ye[iy + 1])], col.filled())
        }))?;
        // Markers outside the grid are not drawn but still listed (at the edge) in the legend.
        let x_col = RGBColor(230, 20, 50);
        let y_col = RGBColor(255, 255, 255);
        for m in &self.x_markers {
            let inside = m.value >= x0 && m.value <= x1;
            let label = if inside {
                m.label.clone()
            } else {
                format!("{} (outside the grid)", m.label)
            };
            let xv = m.value.clamp(x0, x1);
            let pts = if inside {
                vec![(xv, y0), (xv, y1)]
            } else {
                vec![]
            };
            chart
                .draw_series(DashedLineSeries::new(pts, 12, 6, x_col.stroke_width(3)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], x_col.stroke_width(3))
                });
        }
        for m in &self.y_markers {
            let inside = m.value >= y0 && m.value <= y1;
            let label = if inside {
                m.label.clone()
            } else {
                format!("{} (outside the grid)", m.label)
            };
            let pts = if inside {
                vec![(x0, m.value), (x1, m.value)]
            } else {
                vec![]
            };
            chart
                .draw_series(LineSeries::new(pts, y_col.stroke_width(3)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], y_col.stroke_width(3))
                });
        }
        if !self.x_markers.is_empty() || !self.y_markers.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 16).into_font().color(&WHITE))
                .background_style(RGBColor(60, 60, 60).mix(0.85))
                .border_style(WHITE)
                .draw()?;
        }
        // Colour bar.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(70)
            .margin_right(10)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, zlo..zhi)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(self.z_label)
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .y_label_formatter(&tick)
            .draw()?;
        const STEPS: usize = 200;
        cb.draw_series((0..STEPS).map(|i| {
            let a = zlo + (zhi - zlo) * i as f64 / STEPS as f64;
            let b = zlo + (zhi - zlo) * (i + 1) as f64 / STEPS as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                viridis((i as f64 + 0.5) / STEPS as f64).filled(),
            )
        }))?;
        Ok(())
    }
}

/// Writes the F1, precision and recall heat maps of a sweep as `<prefix>_f1.<ext>`,
/// `<prefix>_precision.<ext>` and `<prefix>_recall.<ext>` (ext: "png" or "svg"), with the
/// statistical cutoffs `e_c` (horizontal) and `u_c` (vertical) drawn as lines. The sweep's
/// grids must be strictly increasing. `u_unit` is the uncertainty's unit for the axis label.
/// Returns the paths written.
pub fn sweep_heatmaps(
    prefix: &Path,
    ext: &str,
    title: &str,
    sweep: &super::metrics::Sweep,
    e_c: f64,
    u_c: f64,
    u_unit: &str,
) -> Result<Vec<PathBuf>, PlotError> {
    let x_label = if u_unit.is_empty() {
        "uncertainty cutoff u_c (dimensionless)".to_string()
    } else {
        format!("uncertainty cutoff u_c ({u_unit})")
    };
    let mut written = Vec::new();
    for (name, z) in [
        ("f1", sweep.f1()),
        ("precision", sweep.precision()),
        ("recall", sweep.recall()),
    ] {
        let stem = prefix
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("sweep");
        let path = prefix.with_file_name(format!("{stem}_{name}.{ext}"));
        let label = match name {
            "f1" => "F1",
            "precision" => "precision",
            _ => "recall",
        };
        HeatmapPlot {
            title: &format!("{title}: {label}"),
            x_label: &x_label,
            y_label: "error cutoff e_c (eV/Å)",
            z_label: label,
            x: &sweep.u_grid,
            y: &sweep.e_grid,
            z: &z,
            z_range: Some((0.0, 1.0)),
            x_markers: vec![Marker::new(
                format!("statistical u_c = {}", tick(&u_c)),
                u_c,
            )],
            y_markers: vec![Marker::new(
                format!("statistical e_c = {}", tick(&e_c)),
                e_c,
            )],
        }
        .write(&path)?;
        written.push(path);
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Calibration curve.

/// Calibration curves (observed vs expected fraction) with the diagonal.
#[derive(Clone, Debug)]
pub struct CalibrationPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// (label, curve) pairs; the legend shows each curve's miscalibration area.
    pub curves: Vec<(String, &'a CalibrationCurve)>,
}

impl CalibrationPlot<'_> {
    /// Writes the figure to `path` (.png or .svg).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        if self.curves.is_empty() {
            return Err(data_err(path, "no calibration curves"));
        }
        write_figure(path, (850, 800), self)
    }
}

impl Figure for CalibrationPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FONT, 28))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("expected fraction p")
            .y_desc("observed fraction of PIT ≤ p")
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                10,
                6,
                grey.stroke_width(2),
            ))?
            .label("perfect calibration")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
            });
        for (i, (label, c)) in self.curves.iter().enumerate() {
            let col = PALETTE[i % PALETTE.len()];
            // Shade the area between the curve and the diagonal, the quantity reported.
            let poly: Vec<(f64, f64)> = c
                .expected
                .iter()
                .zip(&c.observed)
                .map(|(&p, &o)| (p, o))
                .chain(c.expected.iter().rev().map(|&p| (p, p)))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.15))))?;
            chart
                .draw_series(LineSeries::new(
                    c.expected.iter().copied().zip(c.observed.iter().copied()),
                    col.stroke_width(3),
                ))?
                .label(format!("{label} (miscalibration area = {:.4})", c.area))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 17))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        // State the reading rule on the figure itself.
        root.draw(&Text::new(
            "below the diagonal: overconfident",
            (520, 700),
            (FONT, 16).into_font().color(&grey),
        ))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Parity scatter.

/// Scatter of uncertainty (x) against true error (y) with cutoff lines.
#[derive(Clone, Debug)]
pub struct ParityPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// X label with units, e.g. "uncertainty (eV/Å)".
    pub x_label: &'a str,
    /// Y label with units, e.g. "force error (eV/Å)".
    pub y_label: &'a str,
    /// Uncertainties.
    pub x: &'a [f64],
    /// Errors.
    pub y: &'a [f64],
    /// Vertical lines (u_c, u_max).
    pub x_markers: Vec<Marker>,
    /// Horizontal lines (e_c, e_max).
    pub y_markers: Vec<Marker>,
    /// Log-log axes (non-positive points are then left out and counted in the title).
    pub log: bool,
}

impl ParityPlot<'_> {
    /// Writes the figure to `path` (.png or .svg).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        if self.x.len() != self.y.len() {
            return Err(data_err(
                path,
                format!("x has {} values, y has {}", self.x.len(), self.y.len()),
            ));
        }
        if self.x.is_empty() {
            return Err(data_err(path, "no points"));
        }
        write_figure(path, (900, 800), self)
    }

    fn points(&self) -> Vec<(f64, f64)> {
        self.x
            .iter()
            .zip(self.y)
            .map(|(&a, &b)| (a, b))
            .filter(|(a, b)| {
                a.is_finite() && b.is_finite() && (!self.log || (*a > 0.0 && *b > 0.0))
            })
            .collect()
    }
}

impl Figure for ParityPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let pts = self.points();
        let dropped = self.x.len() - pts.len();
        let title = if dropped > 0 {
            format!("{} ({dropped} points not drawn)", self.title)
        } else {
            self.title.to_string()
        };
        let xs = pts
            .iter()
            .map(|p| p.0)
            .chain(self.x_markers.iter().map(|m| m.value));
        let ys = pts
            .iter()
            .map(|p| p.1)
            .chain(self.y_markers.iter().map(|m| m.value));
        let keep = |v: &f64| !self.log || *v > 0.0;
        let (xa, xb) = finite_range(xs.filter(keep)).unwrap_or((1.0, 10.0));
        let (ya, yb) = finite_range(ys.filter(keep)).unwrap_or((1.0, 10.0));
        let col = PALETTE[0];
        macro_rules! body {
            ($xr:expr, $yr:expr, $x0:expr, $x1:expr, $y0:expr, $y1:expr) => {{
                let mut chart = ChartBuilder::on(root)
                    .caption(&title, (FONT, 28))
                    .margin(20)
                    .x_label_area_size(55)
                    .y_label_area_size(85)
                    .build_cartesian_2d($xr, $yr)?;
                chart
                    .configure_mesh()
                    .x_desc(self.x_label)
                    .y_desc(self.y_label)
                    .axis_desc_style((FONT, 20))
                    .label_style((FONT, 16))
                    .x_label_formatter(&tick)
                    .y_label_formatter(&tick)
                    .light_line_style(RGBColor(235, 235, 235))
                    .draw()?;
                chart
                    .draw_series(
                        pts.iter()
                            .map(|&p| Circle::new(p, 3, col.mix(0.45).filled())),
                    )?
                    .label(format!("atoms (n = {})", pts.len()))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 4, col.filled()));
                for (i, m) in self.x_markers.iter().enumerate() {
                    let c = MARKER_COLORS[i % MARKER_COLORS.len()];
                    chart
                        .draw_series(DashedLineSeries::new(
                            vec![(m.value, $y0), (m.value, $y1)],
                            10,
                            6,
                            c.stroke_width(2),
                        ))?
                        .label(m.label.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                        });
                }
                for (i, m) in self.y_markers.iter().enumerate() {
                    let c = PALETTE[(i + 1) % PALETTE.len()];
                    chart
                        .draw_series(LineSeries::new(
                            vec![($x0, m.value), ($x1, m.value)],
                            c.stroke_width(2),
                        ))?
                        .label(m.label.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .label_font((FONT, 17))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()?;
            }};
        }
        if self.log {
            let (x0, x1) = (xa / 1.5, xb * 1.5);
            let (y0, y1) = (ya / 1.5, yb * 1.5);
            body!((x0..x1).log_scale(), (y0..y1).log_scale(), x0, x1, y0, y1);
        } else {
            let (x0, x1) = pad_range(xa.min(0.0), xb * 1.05);
            let (y0, y1) = pad_range(ya.min(0.0), yb * 1.05);
            body!(x0..x1, y0..y1, x0, x1, y0, y1);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown table.

/// A Markdown (GitHub) table with padded columns; `|` in cells is escaped.
pub fn markdown_table(headers: &[String], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let ncol = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let cell = |r: &[String], i: usize| r.get(i).map(|s| esc(s)).unwrap_or_default();
    let width: Vec<usize> = (0..ncol)
        .map(|i| {
            rows.iter()
                .map(|r| cell(r, i).chars().count())
                .chain([3, cell(headers, i).chars().count()])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |r: &[String]| {
        let cells: Vec<String> = (0..ncol)
            .map(|i| {
                let c = cell(r, i);
                let pad = width[i] - c.chars().count();
                format!("{c}{}", " ".repeat(pad))
            })
            .collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(headers);
    let sep: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&format!("| {} |\n", sep.join(" | ")));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// Writes [`markdown_table`] to a file.
pub fn write_markdown_table(
    path: &Path,
    headers: &[String],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    std::fs::write(path, markdown_table(headers, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::family_choice::choose_model;
    use crate::stats::metrics::{calibration_curve, linspace, pit_maxwell, sweep};
    use crate::stats::tests::{draw_gamma, draw_maxwell, rng};

    /// Output directory for figures; kept after the test so that a person can look at them.
    fn out_dir() -> PathBuf {
        let d = std::env::temp_dir().join("aceuq-stats-plots");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn assert_written(p: &Path) {
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 2000, "{}: {len} bytes", p.display());
    }

    #[test]
    fn stats_plots_write_png_and_svg() {
        let dir = out_dir();
        let mut r = rng(51);
        let errors = draw_maxwell(&mut r, 0.05, 3000);
        let noise = draw_gamma(&mut r, 6.0, 1.0 / 6.0, 3000);
        let unc: Vec<f64> = errors
            .iter()
            .zip(&noise)
            .map(|(e, z)| 0.06 * z + 0.5 * e)
            .collect();
        let choice = choose_model(&unc).unwrap();
        let fits: Vec<(String, Distribution)> = choice
            .candidates
            .iter()
            .map(|c| {
                (
                    format!("{} (KS p = {:.2e})", c.dist.family(), c.ks.p_value),
                    c.dist,
                )
            })
            .collect();
        let u_c = choice.dist().isf(1e-4);
        let e_c = crate::stats::Maxwell::new(0.05).unwrap().isf(1e-4);
        for ext in ["png", "svg"] {
            let p = dir.join(format!("hist.{ext}"));
            histogram_with_fits(
                &p,
                "Ensemble uncertainty, Li: fits and cutoff",
                "uncertainty (eV/Å)",
                &unc,
                &fits,
                vec![Marker::new(format!("u_c = {u_c:.3} eV/Å (N = 10⁴)"), u_c)],
            )
            .unwrap();
            assert_written(&p);

            let e_grid = linspace(0.0, 0.3, 31);
            let u_grid = linspace(0.0, 0.25, 26);
            let s = sweep(&errors, &unc, &e_grid, &u_grid).unwrap();
            let f1 = s.f1();
            let p = dir.join(format!("f1.{ext}"));
            HeatmapPlot {
                title: "F1 over (u_c, e_c), Li",
                x_label: "uncertainty cutoff u_c (eV/Å)",
                y_label: "error cutoff e_c (eV/Å)",
                z_label: "F1",
                x: &u_grid,
                y: &e_grid,
                z: &f1,
                z_range: Some((0.0, 1.0)),
                x_markers: vec![Marker::new(format!("statistical u_c = {u_c:.3}"), u_c)],
                y_markers: vec![Marker::new(format!("statistical e_c = {e_c:.3}"), e_c)],
            }
            .write(&p)
            .unwrap();
            assert_written(&p);

            let good = calibration_curve(
                &pit_maxwell(&errors, &vec![0.05; errors.len()]).unwrap(),
                101,
            )
            .unwrap();
            let over = calibration_curve(
                &pit_maxwell(&errors, &vec![0.03; errors.len()]).unwrap(),
                101,
            )
            .unwrap();
            let p = dir.join(format!("calibration.{ext}"));
            CalibrationPlot {
                title: "Calibration, Li",
                curves: vec![
                    ("sigma = 0.05 (true)".into(), &good),
                    ("sigma = 0.03 (overconfident)".into(), &over),
                ],
            }
            .write(&p)
            .unwrap();
            assert_written(&p);

            for log in [false, true] {
                let p = dir.join(format!("parity{}.{ext}", if log { "_log" } else { "" }));
                ParityPlot {
                    title: "Uncertainty vs error, Li",
                    x_label: "uncertainty (eV/Å)",
                    y_label: "force error |ΔF| (eV/Å)",
                    x: &unc,
                    y: &errors,
                    x_markers: vec![Marker::new(format!("u_c = {u_c:.3}"), u_c)],
                    y_markers: vec![Marker::new(format!("e_c = {e_c:.3}"), e_c)],
                    log,
                }
                .write(&p)
                .unwrap();
                assert_written(&p);
            }
        }
        assert_eq!(tick(&0.30000000000000004), "0.3");
        assert_eq!(tick(&1000.0), "1000");
        assert_eq!(tick(&0.0125), "0.0125");
        assert_eq!(tick(&2.5e-5), "2.50e-5");
        let e_grid = linspace(0.0, 0.3, 16);
        let u_grid = linspace(0.0, 0.3, 16);
        let s = sweep(&errors, &unc, &e_grid, &u_grid).unwrap();
        let files = sweep_heatmaps(
            &dir.join("li_ens"),
            "png",
            "Li, ensemble",
            &s,
            e_c,
            u_c,
            "eV/Å",
        )
        .unwrap();
        assert_eq!(files.len(), 3);
        files.iter().for_each(|f| assert_written(f));
        let md = markdown_table(
            &["a".into(), "b|c".into()],
            &[vec!["1".into(), "22".into()], vec!["333".into()]],
        );
        assert_eq!(
            md,
            "| a   | b\\|c |\n| --- | ---- |\n| 1   | 22   |\n| 333 |      |\n"
        );
        write_markdown_table(&dir.join("t.md"), &["x".into()], &[vec!["1".into()]]).unwrap();
    }

    #[test]
    fn stats_plots_reject_bad_input() {
        let dir = out_dir();
        let v = [1.0, 2.0];
        let h = HistogramPlot {
            title: "t",
            x_label: "x",
            values: &v,
            bins: 0,
            curves: vec![],
            markers: vec![],
        };
        assert!(matches!(
            h.write(&dir.join("x.jpg")),
            Err(PlotError::Format { .. })
        ));
        let hm = HeatmapPlot {
            title: "t",
            x_label: "x",
            y_label: "y",
            z_label: "z",
            x: &[1.0, 2.0],
            y: &[1.0],
            z: &[1.0],
            z_range: None,
            x_markers: vec![],
            y_markers: vec![],
        };
        assert!(matches!(
            hm.write(&dir.join("h.png")),
            Err(PlotError::Data { .. })
        ));
        let missing = dir.join("no/such/dir/h.png");
        let h = HistogramPlot {
            title: "t",
            x_label: "x",
            values: &v,
            bins: 0,
            curves: vec![],
            markers: vec![],
        };
        assert!(h.write(&missing).is_err());
    }
}
