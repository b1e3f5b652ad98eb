//! Multi-panel line figures for the benchmarks (plotters, PNG or SVG by extension): each panel
//! holds several series drawn as a mean line with a shaded spread band; and rows of grouped bar
//! panels (PNG).
//!
//! Legends: entries with the same label and colour are merged (their marker is shown when they
//! all share it), and when every panel uses the same label for a colour (the same methods in every
//! panel) one legend is drawn for the whole figure, below its title, instead of one per panel.
//! Axes: tick labels from [`AxisFormat`] (an integer axis reads "3000", an axis of integers has
//! integer ticks), a flat series keeps a minimum y range ([`widen_to_min_span`]); PNG text goes
//! through [`crate::stats::plot::GlyphSafe`].

use crate::stats::plot::{AXIS_LABELS, AxisFormat, PlotError, png_area, tick, widen_to_min_span};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const FONT: &str = "sans-serif";

/// Colours of successive series (shared with the statistics plots).
pub use crate::stats::plot::PALETTE;

/// Number of marker shapes ([`Series::shape`]): circle, square, triangle, diamond.
pub const SHAPES: usize = 4;

/// Smallest y span of a linear panel, relative to the largest |y| ([`widen_to_min_span`]).
const MIN_REL_SPAN: f64 = 0.05;

/// One series: points (x, mean, low, high); the band low..high is shaded when it has width.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text ("" leaves the series out of the legend).
    pub label: String,
    /// (x, y, y_low, y_high); non-finite points are skipped. A series without points is a legend
    /// key only (e.g. what a marker shape stands for).
    pub points: Vec<(f64, f64, f64, f64)>,
    /// Draw markers at the points (useful when x is not monotone or few points).
    pub markers: bool,
    /// Index into [`PALETTE`] (so one method keeps its colour across panels).
    pub color: usize,
    /// Marker shape, modulo [`SHAPES`] (e.g. one per data set).
    pub shape: usize,
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
    /// Category names along x (" / " starts a new line of the label).
    pub groups: Vec<String>,
    /// (series label, value per group); NaN values are not drawn.
    pub series: Vec<(String, Vec<f64>)>,
    /// Fixed y range, or None to fit the data (from 0).
    pub y_range: Option<(f64, f64)>,
}

/// One legend entry: its text and swatch.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    /// Text.
    pub label: String,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// A line (a series with points).
    pub line: bool,
    /// A marker shape, when every merged series shares it.
    pub shape: Option<usize>,
    /// A filled box (bars).
    pub bar: bool,
}

/// The legend of a list of series, merged by (label, colour) in first-seen order: a line if any
/// merged series is drawn, a marker if they all have the same one; unlabelled series left out.
pub fn legend_entries<'a>(series: impl IntoIterator<Item = &'a Series>) -> Vec<LegendEntry> {
    let mut out: Vec<LegendEntry> = vec![];
    // Per entry: the shapes seen (None: a series without markers).
    let mut shapes: Vec<Vec<Option<usize>>> = vec![];
    for s in series {
        if s.label.is_empty() {
            continue;
        }
        let has_points = !s.points.is_empty();
        let shape = s.markers.then_some(s.shape % SHAPES);
        match out
            .iter()
            .position(|e| e.label == s.label && e.color == s.color)
        {
            Some(k) => {
                out[k].line |= has_points;
                shapes[k].push(shape);
            }
            None => {
                out.push(LegendEntry {
                    label: s.label.clone(),
                    color: s.color,
                    line: has_points,
                    shape: None,
                    bar: false,
                });
                shapes.push(vec![shape]);
            }
        }
    }
    for (e, sh) in out.iter_mut().zip(&shapes) {
        e.shape = match sh.first() {
            Some(&Some(first)) if sh.iter().all(|&x| x == Some(first)) => Some(first),
            _ => None,
        };
        // A key without points or marker would show nothing: give it its line.
        if !e.line && e.shape.is_none() {
            e.line = true;
        }
    }
    out
}

/// One legend for every panel, if the panels agree: merged over all panels, no label with two
/// colours and no colour drawn as a line under two labels. None when they disagree (each
/// panel then keeps its own legend).
pub fn shared_legend(per_panel: &[Vec<LegendEntry>]) -> Option<Vec<LegendEntry>> {
    let mut all: Vec<LegendEntry> = vec![];
    for e in per_panel.iter().flatten() {
        match all
            .iter_mut()
            .find(|a| a.label == e.label && a.color == e.color)
        {
            Some(a) => {
                a.line |= e.line;
                if a.shape != e.shape {
                    a.shape = None;
                    a.line = true;
                }
            }
            None => all.push(e.clone()),
        }
    }
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let same_label = a.label == b.label;
            let same_line_colour = a.color == b.color && a.line && b.line;
            if same_label || same_line_colour {
                return None;
            }
        }
    }
    Some(all)
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws the marker `shape` of colour `col` at pixel `c` of `area`.
fn draw_shape<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: (i32, i32),
    shape: usize,
    col: RGBColor,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (x, y) = c;
    match shape % SHAPES {
        0 => area.draw(&Circle::new(c, 4, col.filled()))?,
        1 => area.draw(&Rectangle::new(
            [(x - 4, y - 4), (x + 4, y + 4)],
            col.filled(),
        ))?,
        2 => area.draw(&Polygon::new(
            vec![(x, y - 5), (x + 5, y + 4), (x - 5, y + 4)],
            col.filled(),
        ))?,
        _ => area.draw(&Polygon::new(
            vec![(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y)],
            col.filled(),
        ))?,
    }
    Ok(())
}

/// Draws the swatch of `e` with its left edge at pixel (x, y) (vertical centre), 24 pixels wide.
fn draw_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    e: &LegendEntry,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let col = PALETTE[e.color % PALETTE.len()];
    if e.bar {
        area.draw(&Rectangle::new(
            [(x + 4, y - 6), (x + 20, y + 6)],
            col.filled(),
        ))?;
        return Ok(());
    }
    if e.line {
        area.draw(&PathElement::new(
            vec![(x, y), (x + 24, y)],
            col.stroke_width(2),
        ))?;
    }
    if let Some(s) = e.shape {
        draw_shape(area, (x + 12, y), s, col)?;
    }
    Ok(())
}

/// Width in pixels of one legend entry (swatch, gap, text, spacing) at `size`.
fn entry_width<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    e: &LegendEntry,
    size: u32,
) -> u32 {
    let w = area
        .estimate_text_size(&e.label, &(FONT, size).into_text_style(area))
        .map(|s| s.0)
        .unwrap_or(8 * e.label.chars().count() as u32);
    24 + 8 + w + 26
}

/// Row of each entry when the entries flow left to right in rows of at most `width` pixels.
fn legend_rows<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    width: u32,
    size: u32,
) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = vec![];
    let mut used = 0;
    for (k, e) in entries.iter().enumerate() {
        let w = entry_width(area, e, size);
        if rows.is_empty() || (used + w > width && !rows.last().unwrap().is_empty()) {
            rows.push(vec![]);
            used = 0;
        }
        rows.last_mut().unwrap().push(k);
        used += w;
    }
    rows
}

/// Legend font size and line height, pixels.
const LEGEND_FONT: u32 = 15;
const LEGEND_ROW: u32 = 24;

/// Height of the figure legend strip of `entries` on an area of `width` pixels.
fn strip_height<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    width: u32,
) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    8 + LEGEND_ROW * legend_rows(area, entries, width.saturating_sub(40), LEGEND_FONT).len() as u32
}

/// The figure legend: entries in centred rows across `area`.
fn draw_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    for (r, row) in legend_rows(area, entries, w.saturating_sub(40), LEGEND_FONT)
        .iter()
        .enumerate()
    {
        let total: u32 = row
            .iter()
            .map(|&k| entry_width(area, &entries[k], LEGEND_FONT))
            .sum();
        let mut x = (w.saturating_sub(total) / 2) as i32;
        let y = (4 + LEGEND_ROW * r as u32 + LEGEND_ROW / 2) as i32;
        for &k in row {
            let e = &entries[k];
            draw_swatch(area, (x, y), e)?;
            area.draw(&Text::new(
                e.label.clone(),
                (x + 32, y),
                (FONT, LEGEND_FONT)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            x += entry_width(area, e, LEGEND_FONT) as i32;
        }
    }
    Ok(())
}

/// A panel's own legend: a boxed column of entries in the corner of its plotting area (`plot`,
/// pixel coordinates) that covers the fewest of `points` (pixels, the series' points and the
/// lines between them sampled), upper right on ties.
fn draw_box<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    points: &[(i32, i32)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    if entries.is_empty() {
        return Ok(());
    }
    let size = 13;
    let row = 19;
    let w = entries
        .iter()
        .map(|e| entry_width(plot, e, size) - 26 + 10)
        .max()
        .unwrap_or(0) as i32;
    let (pw, ph) = plot.dim_in_pixel();
    let h = 8 + row * entries.len() as i32;
    let (right, bottom) = (pw as i32 - w - 8, ph as i32 - h - 6);
    let corners = [(right, 6), (8, 6), (right, bottom), (8, bottom)];
    let covered = |&(x0, y0): &(i32, i32)| {
        points
            .iter()
            .filter(|&&(x, y)| x >= x0 - 4 && x <= x0 + w + 4 && y >= y0 - 4 && y <= y0 + h + 4)
            .count()
    };
    let (x0, y0) = corners
        .iter()
        .copied()
        .min_by_key(|c| covered(c))
        .unwrap_or(corners[0]);
    plot.draw(&Rectangle::new(
        [(x0, y0), (x0 + w, y0 + h)],
        WHITE.mix(0.85).filled(),
    ))?;
    plot.draw(&Rectangle::new([(x0, y0), (x0 + w, y0 + h)], BLACK))?;
    for (k, e) in entries.iter().enumerate() {
        let y = y0 + 4 + row * k as i32 + row / 2;
        draw_swatch(plot, (x0 + 6, y), e)?;
        plot.draw(&Text::new(
            e.label.clone(),
            (x0 + 38, y),
            (FONT, size)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// The largest font size up to `max` (down to 14) at which `title` fits the width of `area`.
fn title_size<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, title: &str, max: u32) -> u32 {
    let (w, _) = area.dim_in_pixel();
    (14..=max)
        .rev()
        .find(|&size| {
            area.estimate_text_size(title, &(FONT, size).into_text_style(area))
                .is_ok_and(|(tw, _)| tw + 20 <= w)
        })
        .unwrap_or(14)
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
    let legends: Vec<Vec<LegendEntry>> = panels.iter().map(|p| legend_entries(&p.series)).collect();
    let shared = shared_legend(&legends);
    // Room for the shared legend: estimated at about 8 pixels per character.
    let width = panel_size.0 * cols as u32;
    let legend_h = shared.as_ref().map_or(0, |s| {
        let chars: u32 = s
            .iter()
            .map(|e| 8 * e.label.chars().count() as u32 + 58)
            .sum();
        8 + LEGEND_ROW * chars.div_ceil(width.saturating_sub(60).max(1))
    });
    let size = (width, panel_size.1 * rows as u32 + 50 + legend_h);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let fig = Grid {
        title,
        panels,
        rows,
        cols,
        legends: &legends,
        shared: shared.as_deref(),
    };
    let res: DrawResult = match ext.as_str() {
        "png" => {
            let root = png_area(path, size);
            fig.draw(&root).and_then(|_| Ok(root.present()?))
        }
        "svg" => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            fig.draw(&root).and_then(|_| Ok(root.present()?))
        }
        _ => {
            return Err(PlotError::Format {
                path: path.to_path_buf(),
            });
        }
    };
    res.map_err(|e| draw_err(path, e))
}

struct Grid<'a> {
    title: &'a str,
    panels: &'a [Panel],
    rows: usize,
    cols: usize,
    legends: &'a [Vec<LegendEntry>],
    shared: Option<&'a [LegendEntry]>,
}

impl Grid<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(self.title, (FONT, title_size(root, self.title, 30)))?;
        let (w, _) = root.dim_in_pixel();
        let body = match self.shared {
            Some(entries) => {
                let (strip, body) = root.split_vertically(strip_height(&root, entries, w));
                draw_strip(&strip, entries)?;
                body
            }
            None => root,
        };
        let areas = body.split_evenly((self.rows, self.cols));
        for ((p, area), legend) in self.panels.iter().zip(areas.iter()).zip(self.legends) {
            let own = if self.shared.is_some() {
                &[][..]
            } else {
                &legend[..]
            };
            draw_panel(area, p, own)?;
        }
        Ok(())
    }
}

/// The axis ranges of a panel: x over the data; y over the data and bands, at least
/// [`MIN_REL_SPAN`] of its magnitude, from 0 when the data sit near it.
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
    // A little room so that markers at the ends are drawn whole.
    let pad = 0.02 * (x1 - x0);
    let (x0, x1) = (x0 - pad, x1 + pad);
    if panel.log_y {
        if y1 <= y0 {
            y1 = y0 * 10.0;
        }
        ((x0, x1), (y0 / 1.3, y1 * 1.3))
    } else {
        let nonneg = y0 >= 0.0;
        let (mut a, mut b) = widen_to_min_span(y0, y1, MIN_REL_SPAN);
        if nonneg && a < 0.0 {
            (a, b) = (0.0, b - a);
        }
        let span = b - a;
        // Start at 0 unless the data sit far above it (small differences stay visible).
        let lo = if a >= 0.0 && a < 0.3 * b {
            0.0
        } else {
            a - 0.08 * span
        };
        let hi = b + 0.08 * span;
        ((x0, x1), (lo, hi))
    }
}

/// Labels to request on a linear axis over [lo, hi]: one per integer when the values on it are
/// all integers and there are at most [`AXIS_LABELS`] integers in the range (so an iteration axis
/// has no 0.5), else [`AXIS_LABELS`].
pub fn axis_label_count(lo: f64, hi: f64, values: impl IntoIterator<Item = f64>) -> usize {
    let integral = values
        .into_iter()
        .filter(|v| v.is_finite())
        .all(|v| v == v.round());
    let integers = hi.floor() - lo.ceil() + 1.0;
    if integral && integers >= 2.0 && integers <= AXIS_LABELS as f64 {
        integers as usize
    } else {
        AXIS_LABELS
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
    legend: &[LegendEntry],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = range(p);
    let pts_x = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let nx = axis_label_count(x0, x1, pts_x);
    let pts_y = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|q| [q.1, q.2, q.3]));
    let ny = axis_label_count(y0, y1, pts_y);
    let (xf, yf) = (AxisFormat::new(x0, x1, nx), AxisFormat::new(y0, y1, ny));
    let mut b = ChartBuilder::on(area);
    b.caption(&p.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65);
    macro_rules! body {
        ($chart:expr, $yfmt:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_labels(nx)
                .y_labels(ny)
                .x_label_formatter(&|v| xf.label(v))
                .y_label_formatter($yfmt)
                .x_desc(p.x_label.as_str())
                .y_desc(p.y_label.as_str())
                .axis_desc_style((FONT, 15))
                .label_style((FONT, 13))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            let ok = |v: f64| v.is_finite() && (!p.log_y || v > 0.0);
            let px = chart.plotting_area().strip_coord_spec();
            let base = px.get_base_pixel();
            // Pixels the legend should not cover: the points and their lines, sampled.
            let mut occupied: Vec<(i32, i32)> = vec![];
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
                    .map(|&(x, _, lo, hi)| (x, lo.max(y0), hi.min(y1)))
                    .collect();
                if band.len() >= 2 {
                    let poly: Vec<(f64, f64)> = band
                        .iter()
                        .map(|&(x, lo, _)| (x, lo))
                        .chain(band.iter().rev().map(|&(x, _, hi)| (x, hi)))
                        .collect();
                    chart.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.18))))?;
                }
                chart.draw_series(LineSeries::new(
                    pts.iter().map(|&(x, y, _, _)| (x, y)),
                    col.stroke_width(2),
                ))?;
                let pix: Vec<(i32, i32)> = pts
                    .iter()
                    .map(|&(x, y, _, _)| {
                        let (bx, by) = chart.backend_coord(&(x, y));
                        (bx - base.0, by - base.1)
                    })
                    .collect();
                for w in pix.windows(2) {
                    for t in 0..=10 {
                        let f = t as f64 / 10.0;
                        occupied.push((
                            w[0].0 + (f * (w[1].0 - w[0].0) as f64) as i32,
                            w[0].1 + (f * (w[1].1 - w[0].1) as f64) as i32,
                        ));
                    }
                }
                occupied.extend_from_slice(&pix);
                if s.markers {
                    for &c in &pix {
                        draw_shape(&px, c, s.shape, col)?;
                    }
                }
            }
            draw_box(&px, legend, &occupied)?;
        }};
    }
    if p.log_y {
        body!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?, &tick);
    } else {
        body!(b.build_cartesian_2d(x0..x1, y0..y1)?, &|v| yf.label(v));
    }
    Ok(())
}

/// Smallest width of one bar group, pixels: more groups widen the panels (and stack them).
const BAR_GROUP_MIN: u32 = 95;
/// Widest figure of bar panels side by side before they are stacked, pixels.
const BAR_ROW_MAX: u32 = 2400;

/// Write bar panels with an overall title and one legend (the series): side by side, or one
/// above the other when the groups need more width than [`BAR_ROW_MAX`] allows.
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
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(PlotError::Format {
            path: path.to_path_buf(),
        });
    }
    let ng = panels.iter().map(|p| p.groups.len()).max().unwrap_or(1) as u32;
    let pw = panel_size.0.max(80 + ng * BAR_GROUP_MIN);
    let n = panels.len() as u32;
    let (rows, cols) = if pw * n > BAR_ROW_MAX { (n, 1) } else { (1, n) };
    let mut entries: Vec<LegendEntry> = vec![];
    for p in panels {
        for (k, (label, _)) in p.series.iter().enumerate() {
            if !entries.iter().any(|e| &e.label == label) {
                entries.push(LegendEntry {
                    label: label.clone(),
                    color: k,
                    line: false,
                    shape: None,
                    bar: true,
                });
            }
        }
    }
    let size = (pw * cols, panel_size.1 * rows + 50 + 8 + LEGEND_ROW);
    let root = png_area(path, size);
    let res = (|| -> DrawResult {
        root.fill(&WHITE)?;
        let r = root.titled(title, (FONT, title_size(&root, title, 28)))?;
        let (w, _) = r.dim_in_pixel();
        let (strip, body) = r.split_vertically(strip_height(&r, &entries, w));
        draw_strip(&strip, &entries)?;
        let areas = body.split_evenly((rows as usize, cols as usize));
        for (p, area) in panels.iter().zip(areas.iter()) {
            draw_bars(area, p)?;
        }
        root.present()?;
        Ok(())
    })();
    res.map_err(|e| draw_err(path, e))
}

/// Font size and lines of a group label that fit in `width` pixels: split at " / ", the largest
/// size from 13 down to 9 at which every line fits, lines shortened with "…" if none does.
fn group_label<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    width: u32,
) -> (u32, Vec<String>) {
    let lines: Vec<String> = label.split(" / ").map(str::to_string).collect();
    let text_w = |t: &str, size: u32| {
        area.estimate_text_size(t, &(FONT, size).into_text_style(area))
            .map(|s| s.0)
            .unwrap_or(7 * t.chars().count() as u32)
    };
    for size in (9..=13).rev() {
        if lines.iter().all(|l| text_w(l, size) <= width) {
            return (size, lines);
        }
    }
    let short = lines
        .iter()
        .map(|l| {
            let mut t: String = l.clone();
            while t.chars().count() > 2 && text_w(&format!("{t}…"), 9) > width {
                t.pop();
            }
            if &t == l { t } else { format!("{t}…") }
        })
        .collect();
    (9, short)
}

fn draw_bars<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &BarPanel) -> DrawResult
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
    // A negative value (a Spearman rho below 0) extends the axis down rather than vanishing.
    let low = p
        .series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(|v| v.is_finite())
        .fold(y0, |a, &v| a.min(v));
    let y0 = if low < y0 { low - 0.05 * (y1 - y0) } else { y0 };
    let lines = p
        .groups
        .iter()
        .map(|g| g.split(" / ").count())
        .max()
        .unwrap_or(1) as u32;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(14 + 16 * lines)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..ng as f64, y0..y1)?;
    let yf = AxisFormat::new(y0, y1, AXIS_LABELS);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(AXIS_LABELS)
        .y_label_formatter(&|v| yf.label(v))
        .y_desc(p.y_label.as_str())
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 12))
        .draw()?;
    let w = 0.8 / ns as f64;
    for (k, (_, vals)) in p.series.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        chart.draw_series(vals.iter().enumerate().filter(|(_, v)| v.is_finite()).map(
            |(g, &v)| {
                let x = g as f64 + 0.1 + w * k as f64;
                let base = 0f64.clamp(y0, y1);
                Rectangle::new([(x, base), (x + w * 0.95, v.min(y1))], col.filled())
            },
        ))?;
    }
    // Group labels under the axis, each within its group's width.
    let base = area.get_base_pixel();
    let group_px = {
        let (a, _) = chart.backend_coord(&(0.0, y0));
        let (b, _) = chart.backend_coord(&(1.0, y0));
        (b - a).max(1) as u32
    };
    for (g, label) in p.groups.iter().enumerate() {
        let (cx, cy) = chart.backend_coord(&(g as f64 + 0.5, y0));
        let (size, text) = group_label(area, label, group_px.saturating_sub(6));
        for (i, line) in text.iter().enumerate() {
            area.draw(&Text::new(
                line.clone(),
                (cx - base.0, cy - base.1 + 6 + (size as i32 + 3) * i as i32),
                (FONT, size)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, color: usize, shape: usize, points: usize) -> Series {
        Series {
            label: label.into(),
            points: (0..points)
                .map(|i| (i as f64, i as f64, f64::NAN, f64::NAN))
                .collect(),
            markers: true,
            color,
            shape,
        }
    }

    #[test]
    fn bench_figures_legends_merge_and_share() {
        // The same method in two data sets (two shapes): one entry, a line without a marker;
        // keys without points: marker only.
        let s = [
            series("gamma", 0, 0, 3),
            series("gamma", 0, 1, 3),
            series("ensemble", 2, 0, 3),
            series("homogeneous", 7, 0, 0),
            series("phases", 7, 1, 0),
            series("", 3, 0, 3),
        ];
        let e = legend_entries(&s);
        let labels: Vec<&str> = e.iter().map(|x| x.label.as_str()).collect();
        assert_eq!(labels, ["gamma", "ensemble", "homogeneous", "phases"]);
        assert!(e[0].line && e[0].shape.is_none());
        assert!(e[1].line && e[1].shape == Some(0));
        assert!(!e[2].line && e[2].shape == Some(0));
        assert!(!e[3].line && e[3].shape == Some(1));
        // Panels with the same methods (one lacking "random") share one legend...
        let a = legend_entries(&[series("oracle", 0, 0, 2), series("random", 1, 0, 2)]);
        let b = legend_entries(&[series("oracle", 0, 0, 2)]);
        let shared = shared_legend(&[a.clone(), b]).unwrap();
        assert_eq!(shared, a);
        // ... panels that give one colour two meanings (train / u_c < u) do not.
        let c = legend_entries(&[series("train", 0, 0, 2)]);
        let d = legend_entries(&[series("u_c < u ≤ u_max", 0, 0, 2)]);
        assert!(shared_legend(&[c, d]).is_none());
    }

    #[test]
    fn bench_figures_axes_have_integer_ticks_and_a_minimum_span() {
        // An iteration axis 0..6: 7 labels, 0 to 6, no ".0" and no 0.5.
        assert_eq!(axis_label_count(0.0, 6.0, [0.0, 3.0, 6.0]), 7);
        let f = AxisFormat::new(0.0, 6.0, 7);
        assert_eq!(f.label(&3.0), "3");
        // Non-integer data keep the default.
        assert_eq!(axis_label_count(0.0, 6.0, [0.5]), AXIS_LABELS);
        // A flat coverage of 1.0: the y range is not blown up to +-8e-5.
        let p = Panel {
            title: "coverage".into(),
            x_label: "iteration".into(),
            y_label: "fraction".into(),
            series: vec![Series {
                label: "gamma".into(),
                points: (0..5).map(|i| (i as f64, 1.0, 1.0, 1.0)).collect(),
                markers: true,
                color: 0,
                shape: 0,
            }],
            log_y: false,
        };
        let (_, (lo, hi)) = range(&p);
        assert!(hi - lo >= 0.05 && lo < 1.0 && hi > 1.0, "{lo}..{hi}");
        let labels: Vec<String> = {
            use plotters::coord::ranged1d::Ranged;
            let f = AxisFormat::new(lo, hi, AXIS_LABELS);
            plotters::coord::types::RangedCoordf64::from(lo..hi)
                .key_points(AXIS_LABELS)
                .iter()
                .map(|v| f.label(v))
                .collect()
        };
        // Three decimals at most (not 0.99992, 0.99994, ...).
        assert!(
            labels
                .iter()
                .all(|l| l.split('.').nth(1).is_none_or(|d| d.len() <= 3)),
            "{labels:?}"
        );
        // All zeros: from 0, not below.
        let mut z = p.clone();
        z.series[0].points = (0..5).map(|i| (i as f64, 0.0, 0.0, 0.0)).collect();
        let (_, (lo, hi)) = range(&z);
        assert!(lo == 0.0 && hi > 0.5, "{lo}..{hi}");
    }

    #[test]
    fn bench_figures_write_panels_and_bars() {
        let dir = std::env::temp_dir().join("aceuq-bench-figures");
        std::fs::create_dir_all(&dir).unwrap();
        let methods = ["oracle", "random", "gamma"];
        let mk = |title: &str, f: &dyn Fn(usize, f64) -> f64| Panel {
            title: title.into(),
            x_label: "iteration".into(),
            y_label: "frames".into(),
            series: methods
                .iter()
                .enumerate()
                .map(|(k, m)| Series {
                    label: m.to_string(),
                    points: (0..7)
                        .map(|i| {
                            let y = f(k, i as f64);
                            (i as f64, y, y - 1.0, y + 1.0)
                        })
                        .collect(),
                    markers: true,
                    color: k,
                    shape: 0,
                })
                .collect(),
            log_y: false,
        };
        let panels = [
            mk("data set size", &|k, i| 5.0 + i * (k + 1) as f64 * 500.0),
            mk("coverage", &|_, _| 1.0),
        ];
        let p = dir.join("panels.png");
        write_panels(&p, "test: one legend, integer axes", &panels, 2, (560, 420)).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 10_000);
        let groups: Vec<String> = (0..12)
            .map(|i| format!("heterogeneous{i} / medium"))
            .collect();
        let bars = [BarPanel {
            title: "Spearman ρ (atoms)".into(),
            y_label: "ρ".into(),
            groups: groups.clone(),
            series: methods
                .iter()
                .enumerate()
                .map(|(k, m)| {
                    (
                        m.to_string(),
                        (0..12).map(|g| (g + k) as f64 / 15.0).collect(),
                    )
                })
                .collect(),
            y_range: Some((0.0, 1.0)),
        }];
        let p = dir.join("bars.png");
        write_bars(&p, "test: bars", &bars, (620, 480)).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 10_000);
    }
}
