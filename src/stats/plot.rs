//! Figures for the statistics layer (plotters; PNG or SVG chosen by the file extension) and a
//! Markdown table writer.
//!
//! Array-in APIs, one struct per figure kind:
//! - [`HistogramPlot`]: histogram (density) of a sample with fitted pdfs and vertical cutoffs.
//! - [`HeatmapPlot`]: a metric (F1, precision, recall) over an (x, y) grid with a colour bar
//!   and the statistical cutoffs as lines.
//! - [`CalibrationPlot`]: calibration curves with the diagonal, miscalibration area in the
//!   legend.
//! - [`ParityPlot`]: predicted against reference values (energy per atom, force components), a
//!   colour per species or composition, y = x, RMSE and MAE in the legend ([`parity_stats`]).
//! - [`UqErrorPlot`]: scatter of uncertainty vs error with cutoff lines (optionally log-log).
//! - [`TailPlot`]: samples against the model behind their 1 - 1/N cutoff (body family, or body +
//!   generalized Pareto tail), as QQ plots or as exceedance (survival) plots on a log
//!   probability axis, the body alone drawn too, with the tail threshold and the cutoff; the
//!   panels built by [`TailPanel::from_fit`], the points by [`qq_points`].
//! - [`UpperPlot`]: force error against uncertainty (log-log) with the conditional error model
//!   e | u ~ Maxwell(s(u)), e_max and the lower and upper cutoffs ([`UpperPanel::from_calibration`]).
//! - [`markdown_table`] / [`write_markdown_table`].
//!
//! - Shared by every figure (and `bench::figures`): [`AxisFormat`] (tick labels with one number of
//!   decimals per axis: "3000", not "3000.0"), [`widen_to_min_span`] (a flat series stays flat),
//!   [`histogram_range`] (the axis from the data, far cutoffs as arrows) and [`GlyphSafe`] (PNG
//!   text without missing glyphs: [`GLYPH_FALLBACKS`]).
//!
//! Every `write` checks its inputs first and returns [`PlotError`] rather than panicking.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::cutoff::{Calibration, UpperRule};
use super::dist::{ContinuousDistribution, Distribution};
use super::family_choice::ModelChoice;
use super::metrics::CalibrationCurve;
use super::special::gamma_q_inv;
use super::tail::{CutoffFit, CutoffRule};

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
pub(crate) fn tick(v: &f64) -> String {
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

// ---------------------------------------------------------------------------------------------
// Axis labels, value ranges and glyphs shared by every figure (also `bench::figures`).

/// Labels requested on a linear axis (plotters' default, set explicitly so that
/// [`AxisFormat::new`] sees the same key points as the mesh).
pub const AXIS_LABELS: usize = 11;

/// How the labels of one linear axis are written: one number of decimals for the whole axis, the
/// fewest that write every label exactly, so an integer step reads "3000" (not plotters' own
/// "3000.0") and 0.0466, 0.0468, ... keep their last digit; scientific notation when the largest
/// label is below 1e-3 or from 1e5 up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisFormat {
    decimals: usize,
    scientific: bool,
}

impl AxisFormat {
    /// The format of an axis over [lo, hi] with at most `labels` labels, from the key points
    /// plotters places there.
    pub fn new(lo: f64, hi: f64, labels: usize) -> Self {
        use plotters::coord::ranged1d::Ranged;
        use plotters::coord::types::RangedCoordf64;
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Self::for_values(&[lo, hi]);
        }
        Self::for_values(&RangedCoordf64::from(lo..hi).key_points(labels.max(2)))
    }

    /// The format that writes each of `values` exactly (to 1e-6 relative).
    pub fn for_values(values: &[f64]) -> Self {
        let v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let mag = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if mag == 0.0 {
            return AxisFormat {
                decimals: 0,
                scientific: false,
            };
        }
        let scientific = !(1e-3..1e5).contains(&mag);
        let scale = if scientific {
            10f64.powi(-(mag.log10().floor() as i32))
        } else {
            1.0
        };
        let exact = |d: usize| {
            v.iter().all(|&k| {
                let x = k * scale * 10f64.powi(d as i32);
                (x - x.round()).abs() <= 1e-6 * x.abs().max(1.0)
            })
        };
        let decimals = (0..=12).find(|&d| exact(d)).unwrap_or(12);
        AxisFormat {
            decimals,
            scientific,
        }
    }

    /// The label of `v`.
    pub fn label(&self, v: &f64) -> String {
        let d = self.decimals;
        let s = if self.scientific {
            if *v == 0.0 {
                return "0".into();
            }
            format!("{v:.d$e}")
        } else {
            format!("{v:.d$}")
        };
        // "-0", "-0.00": a key point a rounding error below zero.
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    }
}

/// Widens [lo, hi] symmetrically to a span of at least `rel` times its largest magnitude (1 when
/// both ends are 0), so that a flat or nearly flat series (a coverage of 1.0 throughout) is drawn
/// as a flat line rather than blown up to fill the axis with rounding noise.
pub fn widen_to_min_span(lo: f64, hi: f64, rel: f64) -> (f64, f64) {
    let mag = lo.abs().max(hi.abs());
    let min_span = if mag > 0.0 { rel * mag } else { 1.0 };
    if hi - lo >= min_span {
        (lo, hi)
    } else {
        let mid = 0.5 * (lo + hi);
        (mid - 0.5 * min_span, mid + 0.5 * min_span)
    }
}

/// Non-ASCII characters the figures use and what to write when the font lacks them.
pub const GLYPH_FALLBACKS: [(char, &str); 16] = [
    ('Å', "A"),
    ('Δ', "d"),
    ('≤', "<="),
    ('≥', ">="),
    ('ρ', "rho"),
    ('ξ', "xi"),
    ('σ', "sigma"),
    ('×', "x"),
    ('–', "-"),
    ('−', "-"),
    ('±', "+/-"),
    ('→', "->"),
    ('∞', "inf"),
    ('…', "..."),
    ('⁴', "^4"),
    ('°', " deg"),
];

/// `text` with every character the font lacks (`covered` false) replaced by its
/// [`GLYPH_FALLBACKS`] entry, or by "?" if it has none. ASCII is taken as covered.
pub fn glyph_safe_text(text: &str, mut covered: impl FnMut(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() || covered(c) {
            out.push(c);
        } else {
            match GLYPH_FALLBACKS.iter().find(|(g, _)| *g == c) {
                Some((_, s)) => out.push_str(s),
                None => out.push('?'),
            }
        }
    }
    out
}

/// Whether the font of `style` draws `c` as itself rather than as the font's placeholder (or
/// nothing): both are rasterized and compared. Cached per (font, character).
fn font_has_glyph<S: plotters_backend::BackendTextStyle>(style: &S, c: char) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<(String, char), bool>>> = OnceLock::new();
    let key = (style.family().as_str().to_string(), c);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|m| m.get(&key).copied()) {
        return v;
    }
    let pixels = |t: char| -> Option<Vec<(i32, i32)>> {
        let mut px = vec![];
        style
            .draw(&t.to_string(), (0, 0), |x, y, col| {
                if col.alpha > 0.25 {
                    px.push((x, y));
                }
                Ok::<(), ()>(())
            })
            .ok()?
            .ok()?;
        px.sort_unstable();
        Some(px)
    };
    let has = c.is_whitespace()
        || match (pixels(c), pixels('\u{FFFD}')) {
            (Some(a), Some(p)) => !a.is_empty() && (c == '\u{FFFD}' || a != p),
            (Some(a), None) => !a.is_empty(),
            _ => false,
        };
    if let Ok(mut m) = cache.lock() {
        m.insert(key, has);
    }
    has
}

/// A bitmap backend whose text never shows a missing glyph: each character the font cannot draw
/// is written as its [`GLYPH_FALLBACKS`] entry (e.g. "≤" as "<="), checked against the font
/// actually loaded. Every PNG of the crate is drawn through it; SVG text keeps its characters
/// (the viewer's fonts draw them).
pub struct GlyphSafe<DB>(pub DB);

/// A PNG drawing area of `size` pixels at `path`, with [`GlyphSafe`] text.
pub fn png_area(path: &Path, size: (u32, u32)) -> DrawingArea<GlyphSafe<BitMapBackend<'_>>, Shift> {
    GlyphSafe(BitMapBackend::new(path, size)).into_drawing_area()
}

impl<DB: DrawingBackend> DrawingBackend for GlyphSafe<DB> {
    type ErrorType = DB::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(
        &mut self,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: plotters_backend::BackendCoord,
        color: plotters_backend::BackendColor,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: plotters_backend::BackendCoord,
        to: plotters_backend::BackendCoord,
        style: &S,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: plotters_backend::BackendCoord,
        bottom_right: plotters_backend::BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = (i32, i32)>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: plotters_backend::BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = (i32, i32)>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }
    fn draw_text<S: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: plotters_backend::BackendCoord,
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        let t = glyph_safe_text(text, |c| font_has_glyph(style, c));
        self.0.draw_text(&t, style, pos)
    }
    fn estimate_text_size<S: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        let t = glyph_safe_text(text, |c| font_has_glyph(style, c));
        self.0.estimate_text_size(&t, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: plotters_backend::BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
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
            let root = png_area(path, size);
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

/// The x axis of a histogram: from min(0, smallest value) to the largest value, or to 2.5 times
/// the 99.5th percentile when the largest lies beyond that (a few far values would squeeze the
/// rest into a sliver); a marker up to 25 % beyond the data widens the axis to include it, one
/// further out does not (it is drawn as an arrow at the edge). Returns (lo, hi, the number of
/// values beyond hi).
pub fn histogram_range(values: &[f64], markers: &[f64]) -> (f64, f64, usize) {
    let s = sorted_finite(values);
    let Some((&first, &last)) = s.first().zip(s.last()) else {
        return (0.0, 1.0, 0);
    };
    let k = ((0.995 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    let p = s[k];
    // The largest value within 2.5 p (all of them unless a few lie far out).
    let mut hi = if p > 0.0 && last > 2.5 * p {
        s[s.partition_point(|&v| v <= 2.5 * p) - 1]
    } else {
        last
    };
    let data_hi = hi;
    for &m in markers {
        if m.is_finite() && m > hi && m <= 1.25 * data_hi.max(0.0) {
            hi = m;
        }
    }
    let lo = first.min(0.0);
    let (lo, hi) = pad_range(lo, hi + 0.04 * (hi - lo));
    let beyond = s.iter().filter(|&&v| v > hi).count();
    (lo, hi, beyond)
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
        let marks: Vec<f64> = self.markers.iter().map(|m| m.value).collect();
        let (x0, x1, beyond) = histogram_range(&vals, &marks);
        let bins = if self.bins > 0 {
            self.bins
        } else {
            ((vals.len() as f64).sqrt().ceil() as usize).clamp(10, 120)
        };
        // Bins over the data's part of the axis (not the padding).
        let top = vals.iter().copied().filter(|&v| v <= x1).fold(x0, f64::max);
        let width = (top - x0) / bins as f64;
        let width = if width > 0.0 { width } else { 1.0 };
        let mut counts = vec![0usize; bins];
        for &v in vals.iter().filter(|&&v| v <= x1) {
            let k = (((v - x0) / width) as usize).min(bins - 1);
            counts[k] += 1;
        }
        // A density of the whole sample (the values beyond the axis count in n), comparable
        // with the fitted pdfs.
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
        let (xf, yf) = (
            AxisFormat::new(x0, x1, AXIS_LABELS),
            AxisFormat::new(0.0, ymax, AXIS_LABELS),
        );
        chart
            .configure_mesh()
            .x_labels(AXIS_LABELS)
            .y_labels(AXIS_LABELS)
            .x_desc(self.x_label)
            .y_desc("probability density")
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .x_label_formatter(&|v| xf.label(v))
            .y_label_formatter(&|v| yf.label(v))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let bar = RGBColor(158, 202, 225);
        let sample = if beyond > 0 {
            format!(
                "sample (n = {}; {beyond} beyond the axis, up to {})",
                vals.len(),
                tick(&vals.iter().copied().fold(f64::MIN, f64::max))
            )
        } else {
            format!("sample (n = {})", vals.len())
        };
        chart
            .draw_series(dens.iter().enumerate().map(|(k, &d)| {
                let a = x0 + width * k as f64;
                Rectangle::new([(a, 0.0), (a + width, d)], bar.filled())
            }))?
            .label(sample)
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
        // Markers on the axis are lines; beyond it, a boxed arrow label at the right edge
        // (stacked below the middle, clear of the legend); not finite (no such cutoff), a legend
        // entry only.
        let mut arrows = 0;
        let px = chart.plotting_area().strip_coord_spec();
        let (pw, ph) = px.dim_in_pixel();
        for (i, m) in self.markers.iter().enumerate() {
            let col = MARKER_COLORS[i % MARKER_COLORS.len()];
            let inside = m.value.is_finite() && m.value >= x0 && m.value <= x1;
            let pts = if inside {
                vec![(m.value, 0.0), (m.value, ymax)]
            } else {
                vec![]
            };
            let label = if inside || !m.value.is_finite() {
                m.label.clone()
            } else {
                format!("{} (beyond the axis →)", m.label)
            };
            chart
                .draw_series(DashedLineSeries::new(pts, 10, 6, col.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            if m.value.is_finite() && m.value > x1 {
                let text = format!("{} →", m.label);
                let style = (FONT, 18)
                    .into_font()
                    .color(&col)
                    .pos(Pos::new(HPos::Right, VPos::Center));
                let (tw, th) = px.estimate_text_size(&text, &style)?;
                let y = (ph as f64 * (0.55 + 0.09 * arrows as f64)) as i32;
                let (x, half) = (pw as i32 - 6, th as i32 / 2 + 4);
                arrows += 1;
                px.draw(&Rectangle::new(
                    [(x - tw as i32 - 6, y - half), (x + 4, y + half)],
                    WHITE.mix(0.9).filled(),
                ))?;
                px.draw(&Rectangle::new(
                    [(x - tw as i32 - 6, y - half), (x + 4, y + half)],
                    col.stroke_width(1),
                ))?;
                px.draw(&Text::new(text, (x, y), style))?;
            }
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
/// [`super::ModelChoice::candidates`]. The pdfs are drawn over the histogram's axis
/// ([`histogram_range`]).
pub fn histogram_with_fits(
    path: &Path,
    title: &str,
    x_label: &str,
    values: &[f64],
    fits: &[(String, Distribution)],
    markers: Vec<Marker>,
) -> Result<(), PlotError> {
    let marks: Vec<f64> = markers.iter().map(|m| m.value).collect();
    let (_, x_max, _) = histogram_range(values, &marks);
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
        let (xf, yf) = (
            AxisFormat::new(x0, x1, AXIS_LABELS),
            AxisFormat::new(y0, y1, AXIS_LABELS),
        );
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(AXIS_LABELS)
            .y_labels(AXIS_LABELS)
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .x_label_formatter(&|v| xf.label(v))
            .y_label_formatter(&|v| yf.label(v))
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
        let zf = AxisFormat::new(zlo, zhi, AXIS_LABELS);
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(AXIS_LABELS)
            .y_desc(self.z_label)
            .axis_desc_style((FONT, 20))
            .label_style((FONT, 16))
            .y_label_formatter(&|v| zf.label(v))
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
    // Cells whose split is trivial or undefined (no atom above e_c, every atom flagged, ...)
    // are grey: there the scores say nothing about the uncertainty (F1 = 1 at (0, 0)).
    let nu = sweep.u_grid.len();
    let masked = |z: Vec<f64>| -> Vec<f64> {
        z.into_iter()
            .enumerate()
            .map(|(k, v)| {
                if sweep.confusion(k / nu, k % nu).degenerate().is_some() {
                    f64::NAN
                } else {
                    v
                }
            })
            .collect()
    };
    for (name, z) in [
        ("f1", masked(sweep.f1())),
        ("precision", masked(sweep.precision())),
        ("recall", masked(sweep.recall())),
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
            title: &format!("{title}: {label} (grey: trivial split)"),
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
        let f = AxisFormat::new(0.0, 1.0, AXIS_LABELS);
        chart
            .configure_mesh()
            .x_labels(AXIS_LABELS)
            .y_labels(AXIS_LABELS)
            .x_label_formatter(&|v| f.label(v))
            .y_label_formatter(&|v| f.label(v))
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
// Uncertainty against error.

/// Scatter of an uncertainty against the true error (either on x) with cutoff lines; not a
/// parity plot (that is [`ParityPlot`]: predicted against reference values).
#[derive(Clone, Debug)]
pub struct UqErrorPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// X label with units, e.g. "uncertainty (eV/Å)".
    pub x_label: &'a str,
    /// Y label with units, e.g. "force error (eV/Å)".
    pub y_label: &'a str,
    /// The x values (errors or uncertainties).
    pub x: &'a [f64],
    /// The y values, paired with `x`.
    pub y: &'a [f64],
    /// Vertical lines (cutoffs of x).
    pub x_markers: Vec<Marker>,
    /// Horizontal lines (cutoffs of y).
    pub y_markers: Vec<Marker>,
    /// Log-log axes (non-positive points are then left out and counted in the title).
    pub log: bool,
}

impl UqErrorPlot<'_> {
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

impl Figure for UqErrorPlot<'_> {
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
            ($xr:expr, $yr:expr, $x0:expr, $x1:expr, $y0:expr, $y1:expr, $xf:expr, $yf:expr) => {{
                let mut chart = ChartBuilder::on(root)
                    .caption(&title, (FONT, 28))
                    .margin(20)
                    .x_label_area_size(55)
                    .y_label_area_size(85)
                    .build_cartesian_2d($xr, $yr)?;
                chart
                    .configure_mesh()
                    .x_labels(AXIS_LABELS)
                    .y_labels(AXIS_LABELS)
                    .x_desc(self.x_label)
                    .y_desc(self.y_label)
                    .axis_desc_style((FONT, 20))
                    .label_style((FONT, 16))
                    .x_label_formatter($xf)
                    .y_label_formatter($yf)
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
            body!(
                (x0..x1).log_scale(),
                (y0..y1).log_scale(),
                x0,
                x1,
                y0,
                y1,
                &log_tick,
                &log_tick
            );
        } else {
            let (x0, x1) = pad_range(xa.min(0.0), xb * 1.05);
            let (y0, y1) = pad_range(ya.min(0.0), yb * 1.05);
            let (xf, yf) = (
                AxisFormat::new(x0, x1, AXIS_LABELS),
                AxisFormat::new(y0, y1, AXIS_LABELS),
            );
            body!(x0..x1, y0..y1, x0, x1, y0, y1, &|v| xf.label(v), &|v| yf
                .label(v));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Parity: predicted against reference values.

/// One group of points of a [`ParityPanel`] (a species, or a composition of structures).
#[derive(Clone, Debug, PartialEq)]
pub struct ParityGroup {
    /// Legend text, e.g. "Li".
    pub label: String,
    /// Index into [`PALETTE`] (so a species keeps its colour across panels).
    pub color: usize,
    /// Reference values.
    pub reference: Vec<f64>,
    /// Predicted values, paired with `reference`.
    pub predicted: Vec<f64>,
}

/// RMSE and MAE of predicted against reference values (finite pairs only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParityStats {
    /// Finite pairs.
    pub n: usize,
    /// Root-mean-square of predicted - reference.
    pub rmse: f64,
    /// Mean absolute value of predicted - reference.
    pub mae: f64,
}

/// [`ParityStats`] of paired values (NaN errors when there is no finite pair).
pub fn parity_stats(reference: &[f64], predicted: &[f64]) -> ParityStats {
    let (mut n, mut s2, mut s1) = (0usize, 0.0, 0.0);
    for (r, p) in reference.iter().zip(predicted) {
        let d = p - r;
        if d.is_finite() {
            n += 1;
            s2 += d * d;
            s1 += d.abs();
        }
    }
    let m = n as f64;
    ParityStats {
        n,
        rmse: if n > 0 { (s2 / m).sqrt() } else { f64::NAN },
        mae: if n > 0 { s1 / m } else { f64::NAN },
    }
}

/// One panel of a [`ParityPlot`]: predicted against reference values of one quantity, a colour
/// per group, the y = x line, and each group's RMSE and MAE in the legend.
#[derive(Clone, Debug, PartialEq)]
pub struct ParityPanel {
    /// Panel title, e.g. "energy per atom".
    pub title: String,
    /// The quantity on the axes, e.g. "energy per atom" (the axes read "reference ..." and
    /// "predicted ...").
    pub quantity: String,
    /// Unit of the values, e.g. "eV/atom".
    pub unit: String,
    /// Unit of the RMSE and MAE in the legend and its factor from `unit`, e.g. ("meV/atom",
    /// 1000).
    pub error_unit: (String, f64),
    /// The groups.
    pub groups: Vec<ParityGroup>,
}

impl ParityPanel {
    /// The statistics of all groups together.
    pub fn stats(&self) -> ParityStats {
        let r: Vec<f64> = self
            .groups
            .iter()
            .flat_map(|g| g.reference.iter().copied())
            .collect();
        let p: Vec<f64> = self
            .groups
            .iter()
            .flat_map(|g| g.predicted.iter().copied())
            .collect();
        parity_stats(&r, &p)
    }

    /// "RMSE 16.9, MAE 13.0 meV/Å" of `s` in the panel's error unit (3 significant digits).
    pub fn stats_text(&self, s: &ParityStats) -> String {
        let (u, f) = (&self.error_unit.0, self.error_unit.1);
        let sig3 = |v: f64| {
            let d = if v.is_finite() && v != 0.0 {
                (2 - v.abs().log10().floor() as i32).max(0) as usize
            } else {
                0
            };
            format!("{v:.d$}")
        };
        format!("RMSE {}, MAE {} {u}", sig3(s.rmse * f), sig3(s.mae * f))
    }
}

/// Predicted against reference values, one panel per quantity (energy per atom, force
/// components).
#[derive(Clone, Debug)]
pub struct ParityPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// The panels, filled row by row.
    pub panels: &'a [ParityPanel],
    /// Panels per row.
    pub columns: usize,
}

/// Size of one parity panel (about square once the legend is below), pixels.
const PARITY_PANEL: (u32, u32) = (820, 900);

impl ParityPlot<'_> {
    /// Writes the figure to `path` (.png or .svg).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        if self.panels.is_empty() {
            return Err(data_err(path, "no panels"));
        }
        for p in self.panels {
            for g in &p.groups {
                if g.reference.len() != g.predicted.len() {
                    return Err(data_err(
                        path,
                        format!(
                            "{} / {}: {} reference and {} predicted values",
                            p.title,
                            g.label,
                            g.reference.len(),
                            g.predicted.len()
                        ),
                    ));
                }
            }
            if p.stats().n == 0 {
                return Err(data_err(path, format!("{}: no finite pairs", p.title)));
            }
        }
        let size = panels_size(self.panels.len(), self.columns, PARITY_PANEL);
        write_figure(path, size, self)
    }
}

impl Figure for ParityPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let areas = panel_areas(root, self.title, self.panels.len(), self.columns)?;
        for (p, area) in self.panels.iter().zip(areas) {
            draw_parity(p, &area)?;
        }
        Ok(())
    }
}

fn draw_parity<DB: DrawingBackend>(p: &ParityPanel, area: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let all = p.stats();
    let values = p.groups.iter().flat_map(|g| {
        g.reference
            .iter()
            .zip(&g.predicted)
            .filter(|(r, q)| r.is_finite() && q.is_finite())
            .flat_map(|(r, q)| [*r, *q])
    });
    let (a, b) = finite_range(values).unwrap_or((0.0, 1.0));
    let (lo, hi) = pad_range(a - 0.04 * (b - a), b + 0.04 * (b - a));
    let many = p.groups.len() > 1;
    let n_legend = 1 + p.groups.len() + usize::from(many);
    let (top, bottom) = split_for_legend(area, n_legend);
    let unit = &p.unit;
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{}: {}", p.title, p.stats_text(&all)), (FONT, 24))
        .margin(TAIL_MARGIN)
        .x_label_area_size(50)
        .y_label_area_size(TAIL_Y_LABELS)
        .build_cartesian_2d(lo..hi, lo..hi)?;
    let f = AxisFormat::new(lo, hi, AXIS_LABELS);
    chart
        .configure_mesh()
        .x_labels(AXIS_LABELS)
        .y_labels(AXIS_LABELS)
        .x_desc(format!("reference {} ({unit})", p.quantity))
        .y_desc(format!("predicted {} ({unit})", p.quantity))
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&|v| f.label(v))
        .y_label_formatter(&|v| f.label(v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let grey = RGBColor(120, 120, 120);
    chart.draw_series(LineSeries::new(
        vec![(lo, lo), (hi, hi)],
        grey.stroke_width(1),
    ))?;
    let mut legend: Vec<(Swatch, String)> = vec![(
        Swatch::Line(grey, 1),
        "y = x (prediction = reference)".into(),
    )];
    for g in &p.groups {
        let col = PALETTE[g.color % PALETTE.len()];
        // Largest deviations last (drawn on top, never thinned away).
        let mut pts: Vec<(f64, f64)> = g
            .reference
            .iter()
            .zip(&g.predicted)
            .map(|(&r, &q)| (r, q))
            .filter(|(r, q)| r.is_finite() && q.is_finite())
            .collect();
        pts.sort_by(|x, y| (x.1 - x.0).abs().total_cmp(&(y.1 - y.0).abs()));
        let shown = thin(&pts, 30_000, 3_000);
        chart.draw_series(
            shown
                .iter()
                .map(|&q| Circle::new(q, 2, col.mix(0.5).filled())),
        )?;
        let s = parity_stats(&g.reference, &g.predicted);
        legend.push((
            Swatch::Dot(col),
            format!("{} (n = {}): {}", g.label, s.n, p.stats_text(&s)),
        ));
    }
    if many {
        legend.push((
            Swatch::Blank,
            format!("all (n = {}): {}", all.n, p.stats_text(&all)),
        ));
    }
    draw_legend_below(&bottom, (TAIL_MARGIN + TAIL_Y_LABELS) as i32, &legend)
}

// ---------------------------------------------------------------------------------------------
// Tail plots: QQ and exceedance, against the model behind a 1 - 1/N cutoff.

/// Exceedance probability given to the i-th smallest (0-based) of n values: the Hazen plotting
/// position (n - i - 1/2) / n. The largest value gets 1 / (2n), the smallest 1 - 1 / (2n).
pub fn exceedance_position(i: usize, n: usize) -> f64 {
    (n as f64 - i as f64 - 0.5) / n as f64
}

/// The finite values of a sample, ascending.
fn sorted_finite(sample: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = sample.iter().copied().filter(|v| v.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// QQ points of a sample against a model given by its inverse survival function `isf`
/// (q -> x with P(X > x) = q): the i-th smallest finite value x_(i) against the model's quantile
/// at the same exceedance probability, `(isf(q_i), x_(i))` with q_i = [`exceedance_position`].
/// Ascending in the sample value. A sample that follows the model lies on y = x; points whose
/// model quantile is not finite are left out.
pub fn qq_points(sample: &[f64], isf: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let s = sorted_finite(sample);
    let n = s.len();
    s.iter()
        .enumerate()
        .map(|(i, &x)| (isf(exceedance_position(i, n)), x))
        .filter(|(m, _)| m.is_finite())
        .collect()
}

/// The empirical survival function of a sample at its own values: `(x_(i), q_i)`, ascending in x,
/// with the same plotting positions as [`qq_points`].
pub fn empirical_survival(sample: &[f64]) -> Vec<(f64, f64)> {
    let s = sorted_finite(sample);
    let n = s.len();
    s.iter()
        .enumerate()
        .map(|(i, &x)| (x, exceedance_position(i, n)))
        .collect()
}

/// At most `max` of rank-ordered points for drawing: all of the last `top` (the upper tail),
/// the others evenly thinned.
fn thin<T: Copy>(pts: &[T], max: usize, top: usize) -> Vec<T> {
    if pts.len() <= max {
        return pts.to_vec();
    }
    let top = top.min(max).min(pts.len());
    let (rest, tail) = pts.split_at(pts.len() - top);
    let keep = max - top;
    let mut out: Vec<T> = if keep == 0 || rest.is_empty() {
        vec![]
    } else {
        (0..keep)
            .map(|k| rest[k * (rest.len() - 1) / (keep - 1).max(1)])
            .collect()
    };
    out.extend_from_slice(tail);
    out
}

/// A p-value for a legend or a table: two decimals, scientific below 0.01, "< 1e-10" below that.
pub fn p_value_text(p: f64) -> String {
    if p >= 0.01 {
        format!("{p:.2}")
    } else if p >= 1e-10 {
        format!("{p:.1e}")
    } else {
        "< 1e-10".into()
    }
}

/// A log axis over [lo, hi] with labels at 1, 2, 3, 5 × 10^k (less than 1.5 decades), 1, 2, 5 ×
/// 10^k (less than 3) or the powers of ten (every few for more than 12 decades), and light grid
/// lines at the other integer multiples. plotters' own labels start at the first power of ten
/// inside the range, which leaves a range such as 0.12..6 with no label below 1.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let decades = (hi / lo).log10();
    let labelled: &[f64] = if decades < 1.5 {
        &[1.0, 2.0, 3.0, 5.0]
    } else if decades < 3.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let every = (decades / 12.0).ceil().max(1.0) as usize;
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let inside = |x: &f64| *x >= lo && *x <= hi;
    let bold: Vec<f64> = (k0..=k1)
        .step_by(every)
        .flat_map(|k| labelled.iter().map(move |m| m * 10f64.powi(k)))
        .filter(inside)
        .collect();
    let light: Vec<f64> = if decades <= 8.0 {
        (k0..=k1)
            .flat_map(|k| (1..10).map(move |m| m as f64 * 10f64.powi(k)))
            .filter(inside)
            .collect()
    } else {
        vec![]
    };
    (lo..hi)
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light)
}

/// Tick label on a log axis: powers of ten below 1e-3 as "1e-4", others as [`tick`].
fn log_tick(v: &f64) -> String {
    let v = *v;
    if v > 0.0 && v < 1e-3 {
        let e = v.log10().round();
        if (v / 10f64.powf(e) - 1.0).abs() < 1e-6 {
            return format!("1e{}", e as i32);
        }
    }
    tick(&v)
}

/// One model of a [`TailPanel`], evaluated for drawing.
#[derive(Clone, Debug, PartialEq)]
pub struct TailModel {
    /// Legend text.
    pub label: String,
    /// QQ points (model quantile, sample value), ascending.
    pub qq: Vec<(f64, f64)>,
    /// Survival curve (x, P(X > x)) on [0, x_max].
    pub survival: Vec<(f64, f64)>,
}

impl TailModel {
    /// A model given by its inverse survival function and survival function: the QQ points of
    /// `sample` ([`qq_points`]) and the survival curve on 400 steps of [0, x_max].
    pub fn new(
        label: impl Into<String>,
        sample: &[f64],
        x_max: f64,
        isf: impl Fn(f64) -> f64,
        sf: impl Fn(f64) -> f64,
    ) -> Self {
        const STEPS: usize = 400;
        let survival = (0..=STEPS)
            .map(|i| {
                let x = x_max * i as f64 / STEPS as f64;
                (x, sf(x))
            })
            .filter(|p| p.1.is_finite())
            .collect();
        TailModel {
            label: label.into(),
            qq: qq_points(sample, isf),
            survival,
        }
    }
}

/// One panel of a [`TailPlot`]: a sample, the models it is compared with (the first is the one
/// the cutoff comes from), the tail threshold and the 1 - 1/N cutoff.
#[derive(Clone, Debug, PartialEq)]
pub struct TailPanel {
    /// Panel title, e.g. "Li: force errors (n = 2500)".
    pub title: String,
    /// Unit of the values for the axes ("" for dimensionless).
    pub unit: String,
    /// The sample.
    pub sample: Vec<f64>,
    /// Models, the cutoff's first.
    pub models: Vec<TailModel>,
    /// The threshold t of the generalized Pareto tail, if one was fitted.
    pub threshold: Option<Marker>,
    /// The 1 - 1/N cutoff and N.
    pub cutoff: Option<(Marker, u64)>,
}

impl TailPanel {
    /// The panel of `sample` against the model behind a cutoff: the model `fit` chose (body, or
    /// body + generalized Pareto tail), the body family alone when the tail was chosen (to see
    /// where the tail departs from it), the fitted but unused tail when the body was chosen, the
    /// threshold t and the cutoff `cutoff` at 1 - 1/N, N = `n_apply`. Without `fit` (model files
    /// written before tail-aware cutoffs) the body alone.
    pub fn from_fit(
        title: impl Into<String>,
        unit: impl Into<String>,
        sample: &[f64],
        body: &ModelChoice,
        fit: Option<&CutoffFit>,
        cutoff: f64,
        n_apply: u64,
    ) -> Self {
        let s = sorted_finite(sample);
        let s_max = s.last().copied().unwrap_or(1.0);
        let c = if cutoff.is_finite() { cutoff } else { 0.0 };
        let t_max = fit
            .and_then(|f| f.tail.as_ref())
            .map_or(0.0, |t| t.threshold);
        let x_max = s_max.max(c).max(t_max) * 1.08;
        let d = *body.dist();
        let fam = d.family();
        let body_ks = p_value_text(body.chosen().ks.p_value);
        let verdict = |ok: bool| if ok { "passed" } else { "failed" };
        let body_model =
            |label: String| TailModel::new(label, &s, x_max, |q| d.isf(q), |x| d.sf(x));
        let mut models = vec![];
        let mut threshold = None;
        match fit {
            None => models.push(body_model(format!(
                "{fam} body {} (KS p {body_ks}; no tail record)",
                d.params_string()
            ))),
            Some(f) => {
                let body_ad = p_value_text(f.body_ad.p_value);
                match (&f.rule, &f.tail) {
                    (CutoffRule::Tail, Some(t)) => {
                        models.push(TailModel::new(
                            format!(
                                "cutoff model: {fam} body + gpd tail, ξ = {:.3} (tail KS p {}, \
                                 AD p {}: {})",
                                t.gpd.xi(),
                                p_value_text(t.ks.p_value),
                                p_value_text(t.ad.p_value),
                                verdict(f.passed)
                            ),
                            &s,
                            x_max,
                            |q| f.isf(body, q),
                            |x| f.sf(body, x),
                        ));
                        models.push(body_model(format!(
                            "{fam} body alone (KS p {body_ks}, AD p {body_ad})"
                        )));
                        threshold = Some(Marker::new(
                            format!(
                                "gpd threshold t = {} (q{:.3}, {} excesses)",
                                tick(&t.threshold),
                                t.quantile,
                                t.n_exceed
                            ),
                            t.threshold,
                        ));
                    }
                    (_, tail) => {
                        models.push(body_model(format!(
                            "cutoff model: {fam} body (KS p {body_ks}, AD p {body_ad}: {})",
                            verdict(f.passed)
                        )));
                        if let Some(t) = tail {
                            let mut alt = f.clone();
                            alt.rule = CutoffRule::Tail;
                            models.push(TailModel::new(
                                format!(
                                    "gpd tail, not used: ξ = {:.3} (AD p {})",
                                    t.gpd.xi(),
                                    p_value_text(t.ad.p_value)
                                ),
                                &s,
                                x_max,
                                |q| alt.isf(body, q),
                                |x| alt.sf(body, x),
                            ));
                            threshold = Some(Marker::new(
                                format!(
                                    "threshold of the unused tail t = {} (q{:.3})",
                                    tick(&t.threshold),
                                    t.quantile
                                ),
                                t.threshold,
                            ));
                        }
                    }
                }
            }
        }
        let cutoff = cutoff.is_finite().then(|| {
            (
                Marker::new(
                    format!("cutoff 1 - 1/N = {} (N = {n_apply})", tick(&cutoff)),
                    cutoff,
                ),
                n_apply,
            )
        });
        TailPanel {
            title: title.into(),
            unit: unit.into(),
            sample: s,
            models,
            threshold,
            cutoff,
        }
    }

    fn unit_text(&self) -> String {
        if self.unit.is_empty() {
            "dimensionless".into()
        } else {
            self.unit.clone()
        }
    }
}

/// Which view a [`TailPlot`] draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailView {
    /// Sample quantiles against model quantiles (linear axes, the upper tail spread out), with
    /// y = x.
    Qq,
    /// Empirical and model survival P(X > x) on a log axis, down to 1/N.
    Exceedance,
}

/// Panels of samples against their cutoff models, one figure: e.g. one row per species, the
/// force errors and the uncertainties side by side.
#[derive(Clone, Debug)]
pub struct TailPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// QQ or exceedance.
    pub view: TailView,
    /// The panels, filled row by row.
    pub panels: &'a [TailPanel],
    /// Panels per row.
    pub columns: usize,
}

/// Size of one panel of a multi-panel figure, pixels.
const PANEL_SIZE: (u32, u32) = (860, 720);
/// Height of a multi-panel figure's title, pixels.
const TITLE_HEIGHT: u32 = 50;

fn grid(n: usize, columns: usize) -> (usize, usize) {
    let cols = columns.clamp(1, n.max(1));
    (n.div_ceil(cols), cols)
}

/// Pixel size of a figure of `n` panels of `panel` pixels each, in `columns` columns, below the
/// title.
fn panels_size(n: usize, columns: usize, panel: (u32, u32)) -> (u32, u32) {
    let (rows, cols) = grid(n, columns);
    (panel.0 * cols as u32, TITLE_HEIGHT + panel.1 * rows as u32)
}

/// A white figure with `title`, split into the areas of `n` panels in `columns` columns (row by
/// row): the frame every multi-panel figure draws its panels into.
fn panel_areas<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    n: usize,
    columns: usize,
) -> Result<Vec<DrawingArea<DB, Shift>>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let body = root.titled(title, (FONT, 30))?;
    Ok(body.split_evenly(grid(n, columns)))
}

impl TailPlot<'_> {
    /// Writes the figure to `path` (.png or .svg).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        if self.panels.is_empty() {
            return Err(data_err(path, "no panels"));
        }
        for p in self.panels {
            if p.sample.iter().filter(|v| v.is_finite()).count() < 2 {
                return Err(data_err(
                    path,
                    format!("{}: fewer than 2 finite values", p.title),
                ));
            }
        }
        let size = panels_size(self.panels.len(), self.columns, PANEL_SIZE);
        write_figure(path, size, self)
    }
}

impl Figure for TailPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let areas = panel_areas(root, self.title, self.panels.len(), self.columns)?;
        for (p, area) in self.panels.iter().zip(areas) {
            match self.view {
                TailView::Qq => draw_qq(p, &area)?,
                TailView::Exceedance => draw_exceedance(p, &area)?,
            }
        }
        Ok(())
    }
}

/// Legend entry of a marker that may lie beyond the axis.
fn marker_label(m: &Marker, inside: bool) -> String {
    if inside {
        m.label.clone()
    } else {
        format!("{} (beyond the axis)", m.label)
    }
}

/// How a legend entry drawn outside the chart shows its series.
#[derive(Clone, Copy, Debug)]
enum Swatch {
    Line(RGBColor, u32),
    Dashed(RGBColor, u32),
    Dot(RGBColor),
    Ring(RGBColor),
    /// No swatch (a line of text, e.g. a total).
    Blank,
}

/// Line height of a legend drawn below a chart, pixels.
const LEGEND_LINE: u32 = 19;

/// Height of a legend of `n` entries drawn below a chart.
fn legend_height(n: usize) -> u32 {
    14 + LEGEND_LINE * n as u32
}

/// A legend below a chart (never over the data): one entry per line, from `x0` pixels.
fn draw_legend_below<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x0: i32,
    entries: &[(Swatch, String)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for (i, (sw, label)) in entries.iter().enumerate() {
        let y = 4 + (LEGEND_LINE as i32) * i as i32 + LEGEND_LINE as i32 / 2;
        let (a, b) = (x0, x0 + 24);
        match *sw {
            Swatch::Line(c, w) => {
                area.draw(&PathElement::new(vec![(a, y), (b, y)], c.stroke_width(w)))?
            }
            Swatch::Dashed(c, w) => {
                area.draw(&PathElement::new(
                    vec![(a, y), (a + 9, y)],
                    c.stroke_width(w),
                ))?;
                area.draw(&PathElement::new(
                    vec![(a + 15, y), (b, y)],
                    c.stroke_width(w),
                ))?;
            }
            Swatch::Dot(c) => area.draw(&Circle::new((a + 12, y), 4, c.filled()))?,
            Swatch::Ring(c) => area.draw(&Circle::new((a + 12, y), 4, c.stroke_width(1)))?,
            Swatch::Blank => {}
        }
        area.draw(&Text::new(
            label.clone(),
            (b + 8, y - 8),
            (FONT, 15).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

/// Number of legend entries of a tail panel: the sample or y = x, the models, the markers, and
/// 1/N on the exceedance view.
fn tail_legend_len(p: &TailPanel, view: TailView) -> usize {
    1 + p.models.len()
        + p.threshold.iter().count()
        + p.cutoff.iter().count() * if view == TailView::Exceedance { 2 } else { 1 }
}

/// Splits a tail panel into the chart and the legend strip below it.
fn split_for_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: usize,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let (_, h) = area.dim_in_pixel();
    area.split_vertically(h.saturating_sub(legend_height(entries)))
}

/// Left edge of the plotting area in a tail panel (margin + y label area).
const TAIL_Y_LABELS: u32 = 85;
const TAIL_MARGIN: u32 = 12;

fn draw_qq<DB: DrawingBackend>(p: &TailPanel, area: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (s_min, s_max) = finite_range(p.sample.iter().copied()).unwrap_or((0.0, 1.0));
    // The axes cover the sample and the cutoff model's quantiles; the other models are cut
    // there (their legend says how many points are beyond), and so is a cutoff far beyond.
    let chosen_max = p
        .models
        .first()
        .and_then(|m| finite_range(m.qq.iter().map(|q| q.0)))
        .map_or(s_max, |r| r.1);
    let mut hi = s_max.max(chosen_max);
    if let Some(t) = &p.threshold {
        hi = hi.max(t.value);
    }
    if let Some((c, _)) = &p.cutoff
        && c.value <= 1.5 * hi
    {
        hi = hi.max(c.value);
    }
    let (lo, hi) = pad_range(s_min.min(0.0), hi * 1.04);
    let unit = p.unit_text();
    let (top, bottom) = split_for_legend(area, tail_legend_len(p, TailView::Qq));
    let mut legend: Vec<(Swatch, String)> = vec![];
    let mut chart = ChartBuilder::on(&top)
        .caption(&p.title, (FONT, 24))
        .margin(TAIL_MARGIN)
        .x_label_area_size(50)
        .y_label_area_size(TAIL_Y_LABELS)
        .build_cartesian_2d(lo..hi, lo..hi)?;
    let f = AxisFormat::new(lo, hi, AXIS_LABELS);
    chart
        .configure_mesh()
        .x_labels(AXIS_LABELS)
        .y_labels(AXIS_LABELS)
        .x_desc(format!("model quantile ({unit})"))
        .y_desc(format!("sample quantile ({unit})"))
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&|v| f.label(v))
        .y_label_formatter(&|v| f.label(v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let grey = RGBColor(120, 120, 120);
    chart.draw_series(LineSeries::new(
        vec![(lo, lo), (hi, hi)],
        grey.stroke_width(1),
    ))?;
    legend.push((
        Swatch::Line(grey, 1),
        "y = x: the sample follows the model".into(),
    ));
    let inside = |v: f64| v >= lo && v <= hi;
    for (k, m) in p.models.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        let pts: Vec<(f64, f64)> =
            m.qq.iter()
                .copied()
                .filter(|q| inside(q.0) && inside(q.1))
                .collect();
        let beyond = m.qq.len() - pts.len();
        let label = if beyond > 0 {
            format!("{} ({beyond} beyond the axis)", m.label)
        } else {
            m.label.clone()
        };
        let pts = thin(&pts, 1500, 300);
        if k == 0 {
            chart.draw_series(
                pts.iter()
                    .map(|&q| Circle::new(q, 3, col.mix(0.7).filled())),
            )?;
            legend.push((Swatch::Dot(col), label));
        } else {
            chart.draw_series(pts.iter().map(|&q| Circle::new(q, 3, col.stroke_width(1))))?;
            legend.push((Swatch::Ring(col), label));
        }
    }
    let lines = p
        .threshold
        .iter()
        .map(|m| (m, MARKER_COLORS[2]))
        .chain(p.cutoff.iter().map(|(m, _)| (m, MARKER_COLORS[0])));
    for (m, col) in lines {
        if inside(m.value) {
            chart.draw_series(DashedLineSeries::new(
                vec![(m.value, lo), (m.value, hi)],
                10,
                6,
                col.stroke_width(2),
            ))?;
        }
        legend.push((Swatch::Dashed(col, 2), marker_label(m, inside(m.value))));
    }
    draw_legend_below(&bottom, (TAIL_MARGIN + TAIL_Y_LABELS) as i32, &legend)
}

fn draw_exceedance<DB: DrawingBackend>(p: &TailPanel, area: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let emp = empirical_survival(&p.sample);
    let n = emp.len().max(1);
    let (s_min, s_max) = finite_range(p.sample.iter().copied()).unwrap_or((0.0, 1.0));
    let mut hi = s_max;
    if let Some(t) = &p.threshold {
        hi = hi.max(t.value);
    }
    let mut p_floor = 0.5 / n as f64;
    if let Some((c, big_n)) = &p.cutoff {
        hi = hi.max(c.value);
        p_floor = p_floor.min(1.0 / *big_n as f64);
    }
    let (x0, x1) = pad_range(s_min.min(0.0), hi * 1.05);
    let y0 = (p_floor / 4.0).max(1e-300);
    let y1 = 1.5;
    let unit = p.unit_text();
    let (top, bottom) = split_for_legend(area, tail_legend_len(p, TailView::Exceedance));
    let mut legend: Vec<(Swatch, String)> = vec![];
    let mut chart = ChartBuilder::on(&top)
        .caption(&p.title, (FONT, 24))
        .margin(TAIL_MARGIN)
        .x_label_area_size(50)
        .y_label_area_size(TAIL_Y_LABELS)
        .build_cartesian_2d(x0..x1, log_axis(y0, y1))?;
    let xf = AxisFormat::new(x0, x1, AXIS_LABELS);
    chart
        .configure_mesh()
        .x_labels(AXIS_LABELS)
        .x_desc(format!("value ({unit})"))
        .y_desc("exceedance probability P(X > x)")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&|v| xf.label(v))
        .y_label_formatter(&log_tick)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let dark = RGBColor(40, 40, 40);
    let pts = thin(&emp, 1500, 300);
    chart.draw_series(
        pts.iter()
            .map(|&q| Circle::new(q, 2, dark.mix(0.6).filled())),
    )?;
    legend.push((
        Swatch::Dot(dark),
        format!(
            "sample (n = {}): the i-th largest at P = (i - 1/2)/n",
            emp.len()
        ),
    ));
    for (k, m) in p.models.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        // The curve down to the bottom of the axis, clamped there.
        let mut curve = vec![];
        for &(x, q) in &m.survival {
            if x < x0 || x > x1 {
                continue;
            }
            curve.push((x, q.clamp(y0, y1)));
            if q < y0 {
                break;
            }
        }
        if k == 0 {
            chart.draw_series(LineSeries::new(curve, col.stroke_width(3)))?;
            legend.push((Swatch::Line(col, 3), m.label.clone()));
        } else {
            chart.draw_series(DashedLineSeries::new(curve, 10, 6, col.stroke_width(2)))?;
            legend.push((Swatch::Dashed(col, 2), m.label.clone()));
        }
    }
    if let Some(t) = &p.threshold {
        let col = MARKER_COLORS[2];
        chart.draw_series(DashedLineSeries::new(
            vec![(t.value, y0), (t.value, y1)],
            10,
            6,
            col.stroke_width(2),
        ))?;
        legend.push((Swatch::Dashed(col, 2), t.label.clone()));
    }
    if let Some((c, big_n)) = &p.cutoff {
        let col = MARKER_COLORS[0];
        chart.draw_series(DashedLineSeries::new(
            vec![(c.value, y0), (c.value, y1)],
            10,
            6,
            col.stroke_width(2),
        ))?;
        legend.push((Swatch::Dashed(col, 2), c.label.clone()));
        let q = 1.0 / *big_n as f64;
        let grey = RGBColor(120, 120, 120);
        chart.draw_series(DashedLineSeries::new(
            vec![(x0, q), (x1, q)],
            4,
            4,
            grey.stroke_width(1),
        ))?;
        legend.push((
            Swatch::Dashed(grey, 1),
            format!("P = 1/N = {}", log_tick(&q)),
        ));
    }
    draw_legend_below(&bottom, (TAIL_MARGIN + TAIL_Y_LABELS) as i32, &legend)
}

// ---------------------------------------------------------------------------------------------
// Error against uncertainty with the conditional error model and the upper cutoff.

/// Exceedance-q quantile of Maxwell(s) over s: the e with P(e > e | s) = q is s times this.
pub fn maxwell_quantile_factor(q: f64) -> f64 {
    (2.0 * gamma_q_inv(1.5, q)).sqrt()
}

/// One panel of an [`UpperPlot`]: force error against uncertainty of one species.
#[derive(Clone, Debug, PartialEq)]
pub struct UpperPanel {
    /// Panel title.
    pub title: String,
    /// Uncertainty axis label with units.
    pub u_label: String,
    /// Uncertainties.
    pub u: Vec<f64>,
    /// Force errors, eV/Å (paired with `u`).
    pub e: Vec<f64>,
    /// Curves of the error model (the first solid, the others dashed; an empty label leaves a
    /// curve out of the legend).
    pub curves: Vec<Curve>,
    /// The error stability limit e_max, eV/Å (a horizontal line).
    pub e_max: f64,
    /// Vertical lines: the lower cutoff u_c, the upper cutoff u_max.
    pub u_markers: Vec<Marker>,
    /// Shown above the chart (e.g. why there is no upper cutoff).
    pub note: Option<String>,
}

impl UpperPanel {
    /// The panel of one calibration: with the conditional rule, the median error 1.538 s(u) of
    /// the fitted e | u ~ Maxwell(s(u)) and its 5 % and 95 % quantiles; e_max; u_c; u_max, or a
    /// note saying why there is none; with the ratio rule, u_max and a note saying so.
    pub fn from_calibration(
        title: impl Into<String>,
        u_label: impl Into<String>,
        u: &[f64],
        e: &[f64],
        cal: &Calibration,
    ) -> Self {
        let pos = |v: &f64| v.is_finite() && *v > 0.0;
        let (ua, ub) = finite_range(u.iter().copied().filter(pos)).unwrap_or((1e-3, 1.0));
        let mut top = ub.max(cal.u_c);
        if cal.u_max.is_finite() {
            top = top.max(cal.u_max);
        }
        let (x0, x1) = upper_x_range(ua, top);
        let mut u_markers = vec![Marker::new(
            format!("lower cutoff u_c = {}", tick(&cal.u_c)),
            cal.u_c,
        )];
        let mut curves = vec![];
        let note = match (&cal.upper_rule, &cal.conditional) {
            (UpperRule::Conditional, Some(c)) => {
                let sc = c.scale;
                let grid: Vec<f64> = (0..=300)
                    .map(|i| (x0.ln() + (x1 / x0).ln() * i as f64 / 300.0).exp())
                    .collect();
                let curve = |q: f64, label: String| Curve {
                    label,
                    points: grid
                        .iter()
                        .map(|&x| (x, sc.s(x) * maxwell_quantile_factor(q)))
                        .collect(),
                };
                curves.push(curve(
                    0.5,
                    format!(
                        "median error {:.3} s(u), s(u) = {} + {} u^{:.2}",
                        maxwell_quantile_factor(0.5),
                        tick(&sc.a),
                        tick(&sc.b),
                        sc.k
                    ),
                ));
                curves.push(curve(
                    0.05,
                    "5 % and 95 % quantiles of Maxwell(s(u))".into(),
                ));
                curves.push(curve(0.95, String::new()));
                match c.u_max {
                    Some(_) => {
                        u_markers.push(Marker::new(
                            format!(
                                "upper cutoff u_max = {} (P(e > e_max | u) = {})",
                                tick(&cal.u_max),
                                c.p_halt
                            ),
                            cal.u_max,
                        ));
                        c.reason.clone()
                    }
                    None => Some(format!(
                        "no upper cutoff: {}",
                        c.reason.as_deref().unwrap_or("no reason recorded")
                    )),
                }
            }
            (rule, _) => {
                if cal.u_max.is_finite() {
                    u_markers.push(Marker::new(
                        format!(
                            "upper cutoff u_max = {} ({} rule)",
                            tick(&cal.u_max),
                            rule.name()
                        ),
                        cal.u_max,
                    ));
                }
                Some(match rule {
                    UpperRule::Ratio => format!(
                        "ratio rule: u_max = mean_u + ratio (u_c - mean_u), ratio = {:.3}; no \
                         error model s(u) was fitted (use the conditional rule to see one)",
                        cal.ratio
                    ),
                    UpperRule::Conditional => {
                        "conditional rule, but no fit record in the model".into()
                    }
                })
            }
        };
        UpperPanel {
            title: title.into(),
            u_label: u_label.into(),
            u: u.to_vec(),
            e: e.to_vec(),
            curves,
            e_max: cal.e_max,
            u_markers,
            note,
        }
    }
}

/// The uncertainty axis range of an [`UpperPanel`] (log scale): from the smallest positive value
/// to the largest value or cutoff.
fn upper_x_range(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo * 0.5, lo * 2.0)
    };
    (lo / 1.5, hi * 1.5)
}

/// Force error against uncertainty, one panel per species, log-log: the atoms, the fitted
/// conditional error model, e_max and the cutoffs.
#[derive(Clone, Debug)]
pub struct UpperPlot<'a> {
    /// Figure title.
    pub title: &'a str,
    /// The panels, filled row by row.
    pub panels: &'a [UpperPanel],
    /// Panels per row.
    pub columns: usize,
}

impl UpperPlot<'_> {
    /// Writes the figure to `path` (.png or .svg).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        if self.panels.is_empty() {
            return Err(data_err(path, "no panels"));
        }
        for p in self.panels {
            if p.u.len() != p.e.len() {
                return Err(data_err(
                    path,
                    format!(
                        "{}: {} uncertainties, {} errors",
                        p.title,
                        p.u.len(),
                        p.e.len()
                    ),
                ));
            }
            if p.u.is_empty() {
                return Err(data_err(path, format!("{}: no points", p.title)));
            }
        }
        let size = panels_size(self.panels.len(), self.columns, PANEL_SIZE);
        write_figure(path, size, self)
    }
}

/// Greedy word wrap to lines of at most `width` characters (longer words stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + w.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

impl Figure for UpperPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let areas = panel_areas(root, self.title, self.panels.len(), self.columns)?;
        for (p, area) in self.panels.iter().zip(areas) {
            draw_upper(p, &area)?;
        }
        Ok(())
    }
}

fn draw_upper<DB: DrawingBackend>(p: &UpperPanel, area: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let area = area.titled(&p.title, (FONT, 24))?;
    let (w, _) = area.dim_in_pixel();
    // About 7 pixels per character at size 16.
    let note = p
        .note
        .as_deref()
        .map(|n| wrap(n, ((w as usize).saturating_sub(40) / 7).max(30)))
        .unwrap_or_default();
    let (top, plot) = area.split_vertically(8 + 20 * note.len() as u32);
    // Red when there is no upper cutoff, grey for caveats and the ratio rule.
    let col = if p
        .note
        .as_deref()
        .is_some_and(|n| n.starts_with("no upper cutoff"))
    {
        RGBColor(170, 30, 30)
    } else {
        RGBColor(80, 80, 80)
    };
    for (i, line) in note.iter().enumerate() {
        top.draw(&Text::new(
            line.clone(),
            (20, 4 + 20 * i as i32),
            (FONT, 16).into_font().color(&col),
        ))?;
    }
    let pts: Vec<(f64, f64)> =
        p.u.iter()
            .zip(&p.e)
            .map(|(&u, &e)| (u, e))
            .filter(|(u, e)| u.is_finite() && e.is_finite() && *u > 0.0 && *e > 0.0)
            .collect();
    let dropped = p.u.len() - pts.len();
    let pos = |v: &f64| v.is_finite() && *v > 0.0;
    let (ua, ub) = finite_range(pts.iter().map(|q| q.0)).unwrap_or((1e-3, 1.0));
    let top_u = p
        .u_markers
        .iter()
        .map(|m| m.value)
        .filter(pos)
        .fold(ub, f64::max);
    let (x0, x1) = upper_x_range(ua, top_u);
    let (ea, eb) = finite_range(pts.iter().map(|q| q.1)).unwrap_or((1e-3, 1.0));
    // Headroom above the data and e_max for the legend (upper left: low uncertainty and large
    // errors, where atoms are rare).
    let (y0, y1) = (ea / 1.5, eb.max(p.e_max) * 12.0);
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(85)
        .build_cartesian_2d(log_axis(x0, x1), log_axis(y0, y1))?;
    chart
        .configure_mesh()
        .x_desc(p.u_label.as_str())
        .y_desc("force error |ΔF| (eV/Å)")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&log_tick)
        .y_label_formatter(&log_tick)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let col = PALETTE[0];
    chart
        .draw_series(
            pts.iter()
                .map(|&q| Circle::new(q, 2, col.mix(0.35).filled())),
        )?
        .label(if dropped > 0 {
            format!("atoms (n = {}; {dropped} at zero not drawn)", pts.len())
        } else {
            format!("atoms (n = {})", pts.len())
        })
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, col.filled()));
    let curve_col = PALETTE[1];
    for (k, c) in p.curves.iter().enumerate() {
        let pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| x >= x0 && x <= x1 && y >= y0 && y <= y1)
            .collect();
        let width = if k == 0 { 3 } else { 2 };
        let series = if k == 0 {
            chart.draw_series(LineSeries::new(pts, curve_col.stroke_width(width)))?
        } else {
            chart.draw_series(DashedLineSeries::new(
                pts,
                8,
                6,
                curve_col.stroke_width(width),
            ))?
        };
        if !c.label.is_empty() {
            series.label(c.label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], curve_col.stroke_width(width))
            });
        }
    }
    let emax_col = PALETTE[3];
    chart
        .draw_series(LineSeries::new(
            vec![(x0, p.e_max), (x1, p.e_max)],
            emax_col.stroke_width(2),
        ))?
        .label(format!("e_max = {} eV/Å", tick(&p.e_max)))
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], emax_col.stroke_width(2))
        });
    for (i, m) in p.u_markers.iter().enumerate() {
        let c = MARKER_COLORS[i % MARKER_COLORS.len()];
        let inside = m.value >= x0 && m.value <= x1;
        let pts = if inside {
            vec![(m.value, y0), (m.value, y1)]
        } else {
            vec![]
        };
        chart
            .draw_series(DashedLineSeries::new(pts, 10, 6, c.stroke_width(2)))?
            .label(marker_label(m, inside))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
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
                let p = dir.join(format!(
                    "uq_vs_error{}.{ext}",
                    if log { "_log" } else { "" }
                ));
                UqErrorPlot {
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

    /// A Maxwell body whose top 5 % is replaced by a heavier generalized Pareto tail.
    fn heavy_tailed(seed: u64, n: usize) -> Vec<f64> {
        let mut r = rng(seed);
        let mut x = draw_maxwell(&mut r, 0.05, n);
        let y = crate::stats::tests::draw_gpd(&mut r, 0.3, 0.05, n / 20);
        for (i, v) in y.into_iter().enumerate() {
            x[i * 20] = 0.15 + v;
        }
        x
    }

    #[test]
    fn stats_qq_points_are_model_quantiles_at_hazen_positions() {
        // By hand: exponential isf(q) = -ln q; positions 5/6, 1/2, 1/6 for n = 3, ascending in
        // the sample; the non-finite value is left out.
        let qq = qq_points(&[3.0, 1.0, f64::NAN, 2.0], |q| -q.ln());
        let want = [
            ((6.0f64 / 5.0).ln(), 1.0),
            (2.0f64.ln(), 2.0),
            (6.0f64.ln(), 3.0),
        ];
        assert_eq!(qq.len(), 3);
        for (g, w) in qq.iter().zip(want) {
            assert!((g.0 - w.0).abs() < 1e-15 && g.1 == w.1, "{qq:?}");
        }
        assert_eq!(
            empirical_survival(&[3.0, 1.0, 2.0]),
            vec![(1.0, 5.0 / 6.0), (2.0, 0.5), (3.0, 1.0 / 6.0)]
        );
        // A sample made of a model's own quantiles at the plotting positions, in any order, lies
        // on y = x.
        let m = crate::stats::Maxwell::new(0.1).unwrap();
        let n = 500;
        let sample: Vec<f64> = (0..n)
            .rev()
            .map(|i| m.isf(exceedance_position(i, n)))
            .collect();
        for (x, y) in qq_points(&sample, |q| m.isf(q)) {
            assert!((x / y - 1.0).abs() < 1e-12, "{x} vs {y}");
        }

        // A heavy tail: the spliced cutoff model follows it, the body alone falls short.
        let x = heavy_tailed(21, 4000);
        let body = crate::stats::choose_model_from(
            &x,
            &[crate::stats::Family::Maxwell],
            crate::stats::family_choice::DEFAULT_ALPHA,
        )
        .unwrap();
        let fit = crate::stats::tail::fit_cutoff(&x, &body, crate::stats::tail::TailPolicy::Auto)
            .unwrap();
        assert_eq!(fit.rule, CutoffRule::Tail, "{}", fit.note);
        let c = fit.isf(&body, 1e-4);
        let panel = TailPanel::from_fit("t", "eV/Å", &x, &body, Some(&fit), c, 10_000);
        assert_eq!(panel.models.len(), 2);
        let (chosen, alone) = (&panel.models[0], &panel.models[1]);
        assert!(
            chosen
                .label
                .starts_with("cutoff model: maxwell body + gpd tail")
        );
        assert!(alone.label.starts_with("maxwell body alone"));
        // The largest value is set against the model's quantile at 1 / (2n).
        let top = chosen.qq.last().unwrap();
        assert_eq!(top.0, fit.isf(&body, 0.5 / x.len() as f64));
        assert_eq!(top.1, x.iter().cloned().fold(0.0, f64::max));
        let t = fit.tail.as_ref().unwrap();
        assert_eq!(panel.threshold.as_ref().unwrap().value, t.threshold);
        let (cut, big_n) = panel.cutoff.as_ref().unwrap();
        assert_eq!((cut.value, *big_n), (c, 10_000));
        // Above the threshold: mean |sample / model - 1| of each model.
        let misfit = |m: &TailModel| {
            let above: Vec<f64> =
                m.qq.iter()
                    .filter(|q| q.1 > t.threshold)
                    .map(|q| (q.1 / q.0 - 1.0).abs())
                    .collect();
            above.iter().sum::<f64>() / above.len() as f64
        };
        assert!(
            misfit(chosen) < 0.05 && misfit(alone) > 4.0 * misfit(chosen),
            "{} vs {}",
            misfit(chosen),
            misfit(alone)
        );
        // The survival curves: the spliced one is the body's below t, p_t at t.
        let at_t = chosen
            .survival
            .iter()
            .min_by(|a, b| {
                (a.0 - t.threshold)
                    .abs()
                    .total_cmp(&(b.0 - t.threshold).abs())
            })
            .unwrap();
        assert!((fit.sf(&body, at_t.0) - at_t.1).abs() < 1e-15);
        assert!((fit.sf(&body, t.threshold) - t.p_exceed).abs() < 1e-12);
        // Thinning keeps the whole upper tail.
        let v: Vec<usize> = (0..10_000).collect();
        let th = thin(&v, 1000, 300);
        assert_eq!(th.len(), 1000);
        assert_eq!(th[0], 0);
        assert_eq!(&th[700..], &v[9700..]);
        assert_eq!(wrap("aa bb cc dd", 5), ["aa bb", "cc dd"]);
        assert_eq!(p_value_text(0.0), "< 1e-10");
        assert_eq!(p_value_text(0.0123), "0.01");
        assert_eq!(log_tick(&1e-4), "1e-4");
        // Labels below the first power of ten inside a short log range.
        let keys = log_axis(0.12, 6.3).key_points(plotters::coord::ranged1d::BoldPoints(11));
        assert_eq!(keys, [0.2, 0.5, 1.0, 2.0, 5.0]);
        assert!((maxwell_quantile_factor(0.5) - 1.538_172).abs() < 1e-5);
    }

    #[test]
    fn stats_tail_and_upper_plots_write_png_and_svg() {
        use crate::stats::cutoff::{CalibrationOptions, calibrate};
        let dir = out_dir();
        let mut r = rng(52);
        // Species A: heavy-tailed errors, an uncertainty that tracks them (an upper cutoff).
        let ea = heavy_tailed(22, 3000);
        let noise = draw_gamma(&mut r, 6.0, 1.0 / 6.0, ea.len());
        let ua: Vec<f64> = ea
            .iter()
            .zip(&noise)
            .map(|(e, z)| 0.8 * e * z + 0.01)
            .collect();
        let ca = calibrate("A", "ensemble", &ea, &ua, &CalibrationOptions::new(3000)).unwrap();
        // Species B: errors of ~1 eV/Å whatever the uncertainty (no upper cutoff: the model
        // itself is not accurate enough).
        let eb = draw_maxwell(&mut r, 0.8, 800);
        let ub = draw_gamma(&mut r, 3.0, 0.02, 800);
        let cb = calibrate("B", "ensemble", &eb, &ub, &CalibrationOptions::new(800)).unwrap();
        assert!(cb.conditional.as_ref().unwrap().u_max.is_none());
        let mut tails = vec![];
        let mut uppers = vec![];
        for (name, e, u, c) in [("A", &ea, &ua, &ca), ("B", &eb, &ub, &cb)] {
            tails.push(TailPanel::from_fit(
                format!("{name}: force error |ΔF|"),
                "eV/Å",
                e,
                &c.error,
                c.error_fit.as_ref(),
                c.e_c,
                c.n_apply,
            ));
            tails.push(TailPanel::from_fit(
                format!("{name}: uncertainty"),
                "eV/Å",
                u,
                &c.uncertainty,
                c.uncertainty_fit.as_ref(),
                c.u_c,
                c.n_apply,
            ));
            uppers.push(UpperPanel::from_calibration(
                format!("{name}: force error vs uncertainty"),
                "uncertainty (eV/Å)",
                u,
                e,
                c,
            ));
        }
        // A: s(u) drawn, u_c and u_max marked (the note, if any, says u_max is extrapolated).
        assert!(ca.u_max.is_finite() && uppers[0].curves.len() == 3);
        assert_eq!(uppers[0].u_markers.len(), 2, "{:?}", uppers[0].note);
        assert!(
            uppers[1]
                .note
                .as_deref()
                .unwrap()
                .starts_with("no upper cutoff: ")
        );
        for ext in ["png", "svg"] {
            for (view, stem) in [(TailView::Qq, "qq"), (TailView::Exceedance, "exceedance")] {
                let p = dir.join(format!("tail_{stem}.{ext}"));
                TailPlot {
                    title: "ensemble: tails",
                    view,
                    panels: &tails,
                    columns: 2,
                }
                .write(&p)
                .unwrap();
                assert_written(&p);
            }
            let p = dir.join(format!("upper.{ext}"));
            UpperPlot {
                title: "ensemble: upper cutoff",
                panels: &uppers,
                columns: 2,
            }
            .write(&p)
            .unwrap();
            assert_written(&p);
        }
        let empty = TailPlot {
            title: "t",
            view: TailView::Qq,
            panels: &[],
            columns: 2,
        };
        assert!(matches!(
            empty.write(&dir.join("e.png")),
            Err(PlotError::Data { .. })
        ));
    }

    #[test]
    fn stats_plot_axis_labels_ranges_and_glyphs() {
        use plotters::coord::ranged1d::Ranged;
        use plotters::coord::types::RangedCoordf64;
        let labels = |lo: f64, hi: f64| -> Vec<String> {
            let f = AxisFormat::new(lo, hi, AXIS_LABELS);
            RangedCoordf64::from(lo..hi)
                .key_points(AXIS_LABELS)
                .iter()
                .map(|v| f.label(v))
                .collect()
        };
        // An integer axis: plotters' own labels read "3000.0".
        let l = labels(0.0, 3300.0);
        assert!(l.contains(&"3000".to_string()), "{l:?}");
        assert!(l.iter().all(|t| !t.contains('.')), "{l:?}");
        // One number of decimals per axis, enough for the step.
        let l = labels(0.04655, 0.04845);
        assert!(l.iter().all(|t| t.len() == l[0].len()), "{l:?}");
        assert!(l.contains(&"0.0470".to_string()), "{l:?}");
        let l = labels(-0.5, 0.5);
        assert!(
            l.contains(&"0.0".to_string()) && !l.iter().any(|t| t == "-0.0"),
            "{l:?}"
        );
        assert_eq!(
            AxisFormat::for_values(&[0.0, 2e-5, 4e-5]).label(&2e-5),
            "2e-5"
        );
        assert_eq!(AxisFormat::for_values(&[0.0, 2e5]).label(&2e5), "2e5");
        // A flat series keeps a minimum range; a wide one is left alone.
        assert_eq!(widen_to_min_span(1.0, 1.0, 0.05), (0.975, 1.025));
        assert_eq!(widen_to_min_span(0.0, 0.0, 0.05), (-0.5, 0.5));
        assert_eq!(widen_to_min_span(0.2, 0.9, 0.05), (0.2, 0.9));

        // Histogram range from the data: a far cutoff does not stretch the axis.
        let mut r = rng(53);
        let mut x = draw_maxwell(&mut r, 0.05, 3000);
        let top = x.iter().cloned().fold(0.0, f64::max);
        let (lo, hi, beyond) = histogram_range(&x, &[5.0]);
        assert_eq!((lo, beyond), (0.0, 0));
        assert!(hi >= top && hi < 1.1 * top, "{hi} vs {top}");
        // A cutoff just beyond the data widens the axis to it.
        let (_, hi, _) = histogram_range(&x, &[1.2 * top]);
        assert!(hi > 1.2 * top && hi < 1.3 * top, "{hi}");
        // A single far value is left beyond the axis (and counted).
        x.push(50.0);
        let (_, hi, beyond) = histogram_range(&x, &[]);
        assert!(hi < 1.0 && beyond == 1, "{hi} {beyond}");
        let p = out_dir().join("hist_far_cutoff.png");
        histogram_with_fits(
            &p,
            "far cutoff",
            "uncertainty (eV/Å)",
            &x,
            &[],
            vec![
                Marker::new("lower u_c = 0.25", 0.25),
                Marker::new("upper u_max = 5.861", 5.861),
                Marker::new("no upper cutoff (u_max = ∞)", f64::INFINITY),
            ],
        )
        .unwrap();
        assert_written(&p);

        // Glyphs: a character the font lacks is written as its fallback (or "?").
        assert_eq!(
            glyph_safe_text("u_c < u ≤ u_max, ρ", |_| false),
            "u_c < u <= u_max, rho"
        );
        assert_eq!(glyph_safe_text("a\u{E000}Å", |c| c == 'Å'), "a?Å");
        let style = TextStyle::from((FONT, 16).into_font());
        assert!(font_has_glyph(&style, 'a'));
        assert!(
            !font_has_glyph(&style, '\u{E000}'),
            "no font has private-use glyphs"
        );
        assert!(
            GLYPH_FALLBACKS
                .iter()
                .all(|(c, s)| !c.is_ascii() && s.is_ascii())
        );
    }

    #[test]
    fn stats_parity_plot_has_rmse_and_mae() {
        let s = parity_stats(&[0.0, 1.0, 2.0, f64::NAN], &[0.0, 2.0, 0.0, 1.0]);
        assert_eq!(s.n, 3);
        assert!((s.rmse - (5.0f64 / 3.0).sqrt()).abs() < 1e-15 && (s.mae - 1.0).abs() < 1e-15);
        let mut r = rng(54);
        let refs = draw_maxwell(&mut r, 1.0, 600);
        let noise = draw_maxwell(&mut r, 0.02, 600);
        let group = |label: &str, k: usize| ParityGroup {
            label: label.into(),
            color: k,
            reference: refs[k * 300..(k + 1) * 300].to_vec(),
            predicted: refs[k * 300..(k + 1) * 300]
                .iter()
                .zip(&noise[k * 300..])
                .map(|(a, b)| a + b - 0.03)
                .collect(),
        };
        let panel = ParityPanel {
            title: "force components".into(),
            quantity: "force component".into(),
            unit: "eV/Å".into(),
            error_unit: ("meV/Å".into(), 1e3),
            groups: vec![group("Al", 0), group("Mg", 1)],
        };
        let all = panel.stats();
        assert_eq!(all.n, 600);
        assert!(
            panel.stats_text(&all).starts_with("RMSE ")
                && panel.stats_text(&all).ends_with(" meV/Å")
        );
        let p = out_dir().join("parity.png");
        ParityPlot {
            title: "predicted vs reference",
            panels: std::slice::from_ref(&panel),
            columns: 2,
        }
        .write(&p)
        .unwrap();
        assert_written(&p);
        let mut bad = panel;
        bad.groups[0].predicted.pop();
        assert!(matches!(
            ParityPlot {
                title: "t",
                panels: &[bad],
                columns: 1
            }
            .write(&out_dir().join("bad.png")),
            Err(PlotError::Data { .. })
        ));
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
