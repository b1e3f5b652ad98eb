//! `aceuq cutoff`: fit Maxwell, Gamma and generalized Gamma to one column of values, choose by
//! the Kolmogorov–Smirnov test (Annevelink & Viswanathan) and print the 1 - 1/N cutoff.
//!
//! Input formats (detected from the content):
//! - plain columns separated by whitespace or commas, with or without a header line (a
//!   non-numeric first line, or a `#` comment line right before the data whose field count
//!   matches);
//! - DeePMD-kit `model_devi.out` (`#` header: step max_devi_v min_devi_v avg_devi_v max_devi_f
//!   min_devi_f avg_devi_f), a special case of the above;
//! - LAMMPS `dump custom` files (`ITEM: ATOMS id type x y z f_pace_gamma ...`): the column is
//!   taken from every timestep.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::stats::plot::{Marker, histogram_with_fits};
use crate::stats::{ContinuousDistribution, ModelChoice, StatsError, choose_model, cutoff_for_n};

/// Arguments of `aceuq cutoff`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct CutoffArgs {
    /// File with the values: whitespace/CSV columns (header optional), DeePMD-kit
    /// model_devi.out, or a LAMMPS `dump custom` file.
    #[arg(long, value_name = "FILE")]
    pub values: PathBuf,
    /// Column to use: a header name (e.g. max_devi_f, f_pace_gamma) or a 1-based index.
    /// May be omitted when the file has a single column.
    #[arg(long, value_name = "NAME|K")]
    pub column: Option<String>,
    /// Number of samples the cutoff will be applied to (N in CDF(x_c) = 1 - 1/N).
    /// Default: the number of values read.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub n: Option<u64>,
    /// Stability limit e_max (same units as the values, eV/Å for force errors): also report
    /// the tail probability above it and the upper (stability) cutoff.
    #[arg(long, value_name = "E", allow_hyphen_values = true)]
    pub max_error: Option<f64>,
    /// Write a histogram with the fitted pdfs and the cutoff (.png or .svg).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// Fewer values than this get a warning: their fits and quantiles rest on too few points.
const FEW_VALUES: usize = 20;

/// Errors of reading the values file or computing the cutoff.
#[derive(Debug, thiserror::Error)]
pub enum CutoffError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        msg: String,
    },
    /// The requested column does not exist or is ambiguous.
    #[error("{path}: {msg}")]
    Column {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the available columns.
        msg: String,
    },
    /// A value the fits cannot use, located in the file.
    #[error("{path}:{line}: column '{column}': {source}")]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Column name.
        column: String,
        /// The statistics error.
        source: StatsError,
    },
    /// Any other statistics error.
    #[error("{path}: column '{column}': {source}")]
    Stats {
        /// The file.
        path: PathBuf,
        /// Column name.
        column: String,
        /// The statistics error.
        source: StatsError,
    },
}

/// Which reader was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Whitespace- or comma-separated columns.
    Table,
    /// LAMMPS `dump custom`.
    LammpsDump,
}

/// One column read from a file, with the line of every value (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnData {
    /// Column name (header name, or "column K").
    pub name: String,
    /// The values.
    pub values: Vec<f64>,
    /// 1-based line number of each value.
    pub lines: Vec<usize>,
    /// Detected format.
    pub format: InputFormat,
    /// Number of LAMMPS timesteps read (0 for tables).
    pub timesteps: usize,
}

fn parse_err(path: &Path, line: usize, msg: impl Into<String>) -> CutoffError {
    CutoffError::Parse {
        path: path.to_path_buf(),
        line,
        msg: msg.into(),
    }
}

/// Reads one column from a table or LAMMPS dump file (format detected from the content).
pub fn read_column(path: &Path, column: Option<&str>) -> Result<ColumnData, CutoffError> {
    let text = std::fs::read_to_string(path).map_err(|source| CutoffError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_column(path, &text, column)
}

/// Like [`read_column`] on text already read; `path` names the input in errors.
pub fn parse_column(
    path: &Path,
    text: &str,
    column: Option<&str>,
) -> Result<ColumnData, CutoffError> {
    // A byte-order mark (spreadsheet exports) is not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        None => Err(CutoffError::Column {
            path: path.to_path_buf(),
            msg: "the file is empty".into(),
        }),
        Some(l) if l.starts_with("ITEM:") => read_lammps_dump(path, text, column),
        Some(_) => read_table(path, text, column),
    }
}

fn split_fields(line: &str) -> Vec<&str> {
    if line.contains(',') {
        line.split(',').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    }
}

/// Resolves a column spec (name, then 1-based index) against optional header names.
fn resolve_column(
    path: &Path,
    spec: Option<&str>,
    names: Option<&[String]>,
    ncol: usize,
) -> Result<(usize, String), CutoffError> {
    let avail = || match names {
        Some(n) => format!("available columns: {}", n.join(", ")),
        None => format!("the file has {ncol} unnamed columns; use --column K (1..={ncol})"),
    };
    let col_err = |msg: String| CutoffError::Column {
        path: path.to_path_buf(),
        msg,
    };
    let Some(spec) = spec else {
        if ncol == 1 {
            let name = names
                .and_then(|n| n.first().cloned())
                .unwrap_or_else(|| "column 1".into());
            return Ok((0, name));
        }
        return Err(col_err(format!(
            "the file has {ncol} columns; choose one with --column ({})",
            avail()
        )));
    };
    if let Some(names) = names {
        if let Some(i) = names.iter().position(|n| n == spec) {
            return Ok((i, names[i].clone()));
        }
        let ci: Vec<usize> = (0..names.len())
            .filter(|&i| names[i].eq_ignore_ascii_case(spec))
            .collect();
        if ci.len() == 1 {
            return Ok((ci[0], names[ci[0]].clone()));
        }
    }
    if let Ok(k) = spec.parse::<usize>() {
        if (1..=ncol).contains(&k) {
            let name = names
                .map(|n| n[k - 1].clone())
                .unwrap_or_else(|| format!("column {k}"));
            return Ok((k - 1, name));
        }
        return Err(col_err(format!("column {k} is out of range 1..={ncol}")));
    }
    Err(col_err(format!("no column named '{spec}' ({})", avail())))
}

fn read_table(path: &Path, text: &str, column: Option<&str>) -> Result<ColumnData, CutoffError> {
    let mut comment_header: Option<Vec<String>> = None;
    let mut text_header: Option<Vec<String>> = None;
    let mut ncol: Option<usize> = None;
    let mut idx: Option<(usize, String)> = None;
    let mut values = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            // Only a comment right before the data can name the columns (model_devi.out).
            if ncol.is_none() {
                let f: Vec<String> = split_fields(rest.trim())
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                comment_header = (!f.is_empty()).then_some(f);
            }
            continue;
        }
        let fields = split_fields(line);
        let parsed: Vec<Option<f64>> = fields.iter().map(|f| f.parse::<f64>().ok()).collect();
        if ncol.is_none() && text_header.is_none() && parsed.iter().any(Option::is_none) {
            // A non-numeric first line is the header; quoted names ("a","b") lose their quotes.
            let names: Vec<String> = fields
                .iter()
                .map(|f| {
                    f.strip_prefix('"')
                        .and_then(|g| g.strip_suffix('"'))
                        .unwrap_or(f)
                        .to_string()
                })
                .collect();
            // A name the chosen column has twice is ambiguous (other repeats, e.g. the empty
            // names of trailing cells, do not matter).
            if let Some((i, n)) = names
                .iter()
                .enumerate()
                .find(|(i, n)| Some(n.as_str()) == column && names[..*i].contains(n))
            {
                return Err(parse_err(
                    path,
                    lineno,
                    format!(
                        "the header names '{n}' twice (fields {} and {}): rename one",
                        names.iter().position(|m| m == n).unwrap_or(0) + 1,
                        i + 1
                    ),
                ));
            }
            text_header = Some(names);
            continue;
        }
        match ncol {
            None => {
                ncol = Some(fields.len());
                let names = text_header
                    .clone()
                    .filter(|h| h.len() == fields.len())
                    .or_else(|| comment_header.clone().filter(|h| h.len() == fields.len()));
                if let Some(h) = &text_header
                    && h.len() != fields.len()
                {
                    return Err(parse_err(
                        path,
                        lineno,
                        format!(
                            "the header has {} names but this first data line has {} fields",
                            h.len(),
                            fields.len()
                        ),
                    ));
                }
                idx = Some(resolve_column(
                    path,
                    column,
                    names.as_deref(),
                    fields.len(),
                )?);
            }
            Some(n) if n != fields.len() => {
                return Err(parse_err(
                    path,
                    lineno,
                    format!("{} fields, but the first data line has {n}", fields.len()),
                ));
            }
            _ => {}
        }
        // Only the chosen column must hold numbers: other columns may be text (the species
        // column of `aceuq eval --per-atom`).
        let (k, name) = idx.as_ref().expect("set with ncol");
        let Some(v) = parsed[*k] else {
            return Err(parse_err(
                path,
                lineno,
                format!(
                    "field {} '{}' of column '{name}' is not a number",
                    k + 1,
                    fields[*k]
                ),
            ));
        };
        values.push(v);
        lines.push(lineno);
    }
    let Some((_, name)) = idx else {
        return Err(CutoffError::Column {
            path: path.to_path_buf(),
            msg: "no data lines found".into(),
        });
    };
    Ok(ColumnData {
        name,
        values,
        lines,
        format: InputFormat::Table,
        timesteps: 0,
    })
}

fn read_lammps_dump(
    path: &Path,
    text: &str,
    column: Option<&str>,
) -> Result<ColumnData, CutoffError> {
    let all: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut values = Vec::new();
    let mut lines = Vec::new();
    let mut natoms: Option<usize> = None;
    let mut timestep = String::from("?");
    let mut timesteps = 0;
    let mut chosen_name: Option<String> = None;
    // Next non-empty line after index j, or a truncation error.
    let next_line = |j: usize, what: &str| -> Result<(usize, &str), CutoffError> {
        all.get(j)
            .map(|l| (j, l.trim()))
            .ok_or_else(|| parse_err(path, j + 1, format!("file ends where {what} was expected")))
    };
    while i < all.len() {
        let line = all[i].trim();
        if line.is_empty() {
            i += 1;
            continue;
        }
        let Some(item) = line.strip_prefix("ITEM:") else {
            return Err(parse_err(
                path,
                i + 1,
                format!("expected an 'ITEM:' line, found '{line}'"),
            ));
        };
        let item = item.trim();
        if item.starts_with("TIMESTEP") {
            let (j, l) = next_line(i + 1, "the timestep number")?;
            timestep = l.to_string();
            i = j + 1;
        } else if item.starts_with("NUMBER OF ATOMS") {
            let (j, l) = next_line(i + 1, "the number of atoms")?;
            natoms = Some(
                l.parse()
                    .map_err(|_| parse_err(path, j + 1, format!("'{l}' is not an atom count")))?,
            );
            i = j + 1;
        } else if item.starts_with("BOX BOUNDS") {
            i += 4;
        } else if let Some(cols) = item.strip_prefix("ATOMS") {
            let names: Vec<String> = cols.split_whitespace().map(str::to_string).collect();
            let n = natoms.ok_or_else(|| {
                parse_err(path, i + 1, "ITEM: ATOMS before ITEM: NUMBER OF ATOMS")
            })?;
            let (k, name) = match resolve_column(path, column, Some(&names), names.len()) {
                Ok(x) => x,
                // Found in earlier timesteps, missing here: say where.
                Err(CutoffError::Column { msg, .. }) if chosen_name.is_some() => {
                    return Err(parse_err(
                        path,
                        i + 1,
                        format!(
                            "timestep {timestep}: {msg} (its columns differ from earlier timesteps')"
                        ),
                    ));
                }
                Err(e) => return Err(e),
            };
            if let Some(prev) = &chosen_name
                && *prev != name
            {
                return Err(parse_err(
                    path,
                    i + 1,
                    format!("column '{name}' here, '{prev}' in earlier timesteps"),
                ));
            }
            chosen_name = Some(name);
            for a in 0..n {
                let j = i + 1 + a;
                let Some(l) = all.get(j) else {
                    return Err(parse_err(
                        path,
                        j + 1,
                        format!("file ends after {a} of {n} atom lines of timestep {timestep}"),
                    ));
                };
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() != names.len() {
                    return Err(parse_err(
                        path,
                        j + 1,
                        format!(
                            "{} fields, but ITEM: ATOMS names {} columns (timestep {timestep})",
                            f.len(),
                            names.len()
                        ),
                    ));
                }
                let v: f64 = f[k].parse().map_err(|_| {
                    parse_err(
                        path,
                        j + 1,
                        format!("'{}' in column {} is not a number", f[k], names[k]),
                    )
                })?;
                values.push(v);
                lines.push(j + 1);
            }
            timesteps += 1;
            i += 1 + n;
        } else {
            // Other sections (UNITS, TIME, ...) carry one value line.
            i += 2;
        }
    }
    let Some(name) = chosen_name else {
        return Err(CutoffError::Column {
            path: path.to_path_buf(),
            msg: "no 'ITEM: ATOMS' section found".into(),
        });
    };
    Ok(ColumnData {
        name,
        values,
        lines,
        format: InputFormat::LammpsDump,
        timesteps,
    })
}

/// Runs `aceuq cutoff` and prints the report to stdout.
pub fn run(args: &CutoffArgs) -> anyhow::Result<()> {
    let text = report(args)?;
    print!("{text}");
    Ok(())
}

/// Computes everything `aceuq cutoff` prints and returns it as text (written as a plot too if
/// asked).
pub fn report(args: &CutoffArgs) -> anyhow::Result<String> {
    super::check_given(
        "--max-error",
        args.max_error,
        |e| e.is_finite() && e > 0.0,
        "a positive number (in the units of the values)",
    )?;
    let path = args.values.as_path();
    let col = read_column(path, args.column.as_deref())?;
    let stats_err = |e: StatsError| match e {
        StatsError::BadValue { index, .. } if index < col.lines.len() => CutoffError::Value {
            path: path.to_path_buf(),
            line: col.lines[index],
            column: col.name.clone(),
            source: e,
        },
        e => CutoffError::Stats {
            path: path.to_path_buf(),
            column: col.name.clone(),
            source: e,
        },
    };
    // Bad values (zero, negative, NaN, inf) are named by their line first.
    crate::stats::fit::check_sample(&col.values).map_err(stats_err)?;
    let (lo, hi) = col
        .values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if col.values.len() >= 2 && hi - lo <= 1e-9 * hi.abs() {
        anyhow::bail!(
            "{}: the {} values of column '{}' are all equal (min {lo:.9e}, max {hi:.9e}): no \
             distribution can be fitted to them and a cutoff from them would mean nothing; give a \
             column whose values vary (the uncertainties of many atoms)",
            path.display(),
            col.values.len(),
            col.name
        );
    }
    let choice = choose_model(&col.values).map_err(stats_err)?;
    let n_apply = args.n.unwrap_or(col.values.len() as u64);
    let chosen = choice.dist();
    let x_c = cutoff_for_n(chosen, n_apply).map_err(stats_err)?;

    let mut out = String::new();
    let fmt = match col.format {
        InputFormat::Table => "table".to_string(),
        InputFormat::LammpsDump => format!("LAMMPS dump, {} timesteps", col.timesteps),
    };
    writeln!(out, "file:    {} ({fmt})", path.display())?;
    writeln!(
        out,
        "column:  {} ({} values, min {:.6e}, max {:.6e})",
        col.name,
        col.values.len(),
        lo,
        hi
    )?;
    writeln!(out)?;
    out.push_str(&candidates_table(&choice));
    writeln!(out)?;
    let how = if choice.passed() {
        format!("first family with KS p > {}", choice.alpha)
    } else {
        format!("no family has KS p > {}; highest p used", choice.alpha)
    };
    writeln!(out, "chosen:  {} ({how})", chosen.family())?;
    writeln!(
        out,
        "note:    KS p-values use parameters fitted to the same data, so they are optimistic"
    )?;
    if let Some(note) = &choice.chosen().note {
        writeln!(out, "warning: {note}")?;
    }
    if col.values.len() < FEW_VALUES {
        writeln!(
            out,
            "warning: only {} values: the fits, and a 1 - 1/N quantile from them, rest on very \
             few points (at least {FEW_VALUES}, better hundreds, for a cutoff to trust)",
            col.values.len()
        )?;
    }
    writeln!(out)?;
    let above = col.values.iter().filter(|&&v| v > x_c).count();
    writeln!(
        out,
        "cutoff x_c with CDF(x_c) = 1 - 1/N, N = {n_apply}: {x_c:.6e}"
    )?;
    writeln!(
        out,
        "values above x_c: {above} of {} (expected under the fit: {:.3})",
        col.values.len(),
        col.values.len() as f64 / n_apply as f64
    )?;
    let mut markers = vec![Marker::new(format!("x_c = {x_c:.4} (N = {n_apply})"), x_c)];
    if let Some(e_max) = args.max_error {
        let mean = chosen.mean();
        let tail = chosen.sf(e_max);
        let above_e = col.values.iter().filter(|&&v| v > e_max).count();
        let up = crate::stats::upper_cutoff(e_max, mean, x_c, mean, x_c);
        writeln!(out)?;
        writeln!(
            out,
            "max error e_max = {e_max}: P(X > e_max) = {tail:.3e} under the fit, \
            i.e. {:.3} expected among N = {n_apply}; observed {above_e} of {}",
            tail * n_apply as f64,
            col.values.len()
        )?;
        writeln!(
            out,
            "upper (stability) cutoff, values taken as errors: ratio = {:.4}, x_max = {:.6e}",
            up.ratio, up.u_max
        )?;
        writeln!(
            out,
            "  (an uncertainty on a different scale needs the error distribution too: \
            u_max = mean_u + ratio (u_c - mean_u))"
        )?;
        if up.u_max > x_c {
            markers.push(Marker::new(format!("x_max = {:.4}", up.u_max), up.u_max));
        } else {
            writeln!(
                out,
                "  (e_max lies at or below what the lower cutoff already allows: the ratio rule \
                never puts x_max below x_c, so x_max = x_c; a halt there would come with no \
                warning before it)"
            )?;
        }
    }
    if let Some(plot) = &args.plot {
        let fits: Vec<_> = choice
            .candidates
            .iter()
            .map(|c| {
                (
                    format!(
                        "{} {} (KS p = {:.2e})",
                        c.dist.family(),
                        c.dist.params_string(),
                        c.ks.p_value
                    ),
                    c.dist,
                )
            })
            .collect();
        histogram_with_fits(
            plot,
            &format!("{}: fits and 1 - 1/N cutoff", col.name),
            &format!("{} ({})", col.name, unit_guess(&col.name)),
            &col.values,
            &fits,
            markers,
        )?;
        writeln!(out)?;
        writeln!(out, "plot:    {}", plot.display())?;
    }
    Ok(out)
}

/// Units of well-known columns, for the plot's axis label.
fn unit_guess(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.ends_with("devi_f") {
        "eV/Å"
    } else if n.ends_with("devi_v") {
        "eV"
    } else if n.contains("gamma") {
        "extrapolation grade, dimensionless"
    } else {
        "units of the input column"
    }
}

/// The candidate table: family, parameters, log-likelihood, KS statistic and p-value.
pub fn candidates_table(choice: &ModelChoice) -> String {
    let headers: Vec<String> = ["", "family", "parameters", "log-lik", "KS D", "KS p"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rows: Vec<Vec<String>> = choice
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            vec![
                if i == choice.chosen {
                    "*".into()
                } else {
                    String::new()
                },
                c.dist.family().to_string(),
                c.dist.params_string(),
                format!("{:.4}", c.log_likelihood),
                format!("{:.5}", c.ks.statistic),
                format!("{:.4e}", c.ks.p_value),
            ]
        })
        .collect();
    for f in &choice.failed {
        rows.push(vec![
            String::new(),
            f.family.to_string(),
            format!("fit failed: {}", f.reason),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let mut t = crate::stats::plot::markdown_table(&headers, &rows);
    t.push_str("(* = chosen)\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{draw_gamma, draw_maxwell, rng};

    fn tmp(name: &str, text: &str) -> PathBuf {
        let p = crate::testing::scratch_dir(&format!("cutoff-{name}")).join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn args(path: &Path, column: Option<&str>) -> CutoffArgs {
        CutoffArgs {
            values: path.to_path_buf(),
            column: column.map(str::to_string),
            n: None,
            max_error: None,
            plot: None,
        }
    }

    #[test]
    fn stats_cli_reads_model_devi_out() {
        let mut r = rng(61);
        let f = draw_maxwell(&mut r, 0.04, 400);
        let mut text = String::from(
            "#       step         max_devi_v         min_devi_v         avg_devi_v         max_devi_f         min_devi_f         avg_devi_f\n",
        );
        for (i, v) in f.iter().enumerate() {
            text += &format!(
                "{:>12} {:18.6e} {:18.6e} {:18.6e} {:18.6e} {:18.6e} {:18.6e}\n",
                i * 10,
                0.01,
                0.001,
                0.005,
                v,
                v * 0.1,
                v * 0.5
            );
        }
        let p = tmp("model_devi.out", &text);
        let col = read_column(&p, Some("max_devi_f")).unwrap();
        assert_eq!(
            (col.name.as_str(), col.values.len(), col.lines[0]),
            ("max_devi_f", 400, 2)
        );
        assert!((col.values[3] - f[3]).abs() <= 1e-6 * f[3]);
        // By 1-based index, and case-insensitively.
        assert_eq!(read_column(&p, Some("5")).unwrap().values, col.values);
        assert_eq!(
            read_column(&p, Some("MAX_DEVI_F")).unwrap().values,
            col.values
        );
        // Without --column the error lists the names.
        let e = read_column(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("max_devi_f") && e.contains("model_devi.out"),
            "{e}"
        );
        let e = read_column(&p, Some("max_devi_x")).unwrap_err().to_string();
        assert!(e.contains("no column named 'max_devi_x'"), "{e}");

        let mut a = args(&p, Some("max_devi_f"));
        a.n = Some(10_000);
        a.max_error = Some(0.15);
        a.plot = Some(p.with_file_name("cutoff.png"));
        let out = report(&a).unwrap();
        assert!(
            out.contains("maxwell") && out.contains("gamma") && out.contains("gengamma"),
            "{out}"
        );
        assert!(out.contains("N = 10000") && out.contains("x_max"), "{out}");
        // e_max = 0.15 lies below x_c here: the ratio rule's x_max is x_c, and it says so.
        assert!(
            !out.contains("only 400 values") && out.contains("x_max = x_c"),
            "{out}"
        );
        let chosen = choose_model(&col.values).unwrap();
        let xc = chosen.dist().isf(1e-4);
        assert!(out.contains(&format!("{xc:.6e}")), "{out}");
        assert!(
            std::fs::metadata(p.with_file_name("cutoff.png"))
                .unwrap()
                .len()
                > 2000
        );
    }

    #[test]
    fn stats_cli_reads_plain_tables() {
        let mut r = rng(62);
        let v = draw_gamma(&mut r, 2.0, 0.3, 200);
        // CSV with a header.
        let mut csv = String::from("atom, gamma ,error\n");
        for (i, x) in v.iter().enumerate() {
            csv += &format!("{i},{x:?},0.1\n");
        }
        let p = tmp("values.csv", &csv);
        let col = read_column(&p, Some("gamma")).unwrap();
        assert_eq!(col.values, v);
        assert_eq!(col.lines[0], 2);
        // Whitespace, no header, single column: no --column needed.
        let ws: String = v.iter().map(|x| format!("  {x:?}\n")).collect();
        let p = tmp("values.txt", &format!("\n{ws}\n"));
        let col = read_column(&p, None).unwrap();
        assert_eq!(
            (col.values.clone(), col.name.as_str()),
            (v.clone(), "column 1")
        );
        assert!(report(&args(&p, None)).unwrap().contains("chosen:"));
        // A comment that does not match the column count is just a comment.
        let p = tmp("values2.txt", &format!("# uncertainties from run 3\n{ws}"));
        assert_eq!(read_column(&p, Some("1")).unwrap().values, v);
    }

    #[test]
    fn stats_cli_reads_lammps_dumps() {
        let mut r = rng(63);
        let g = draw_gamma(&mut r, 3.0, 0.5, 10);
        let mut text = String::new();
        for (t, chunk) in g.chunks(5).enumerate() {
            text += &format!(
                "ITEM: TIMESTEP\n{}\nITEM: NUMBER OF ATOMS\n5\nITEM: BOX BOUNDS pp pp pp\n0 10\n0 10\n0 10\nITEM: ATOMS id type x y z f_pace_gamma\n",
                t * 100
            );
            for (i, x) in chunk.iter().enumerate() {
                text += &format!("{} 1 0.0 1.0 2.0 {x:?}\n", i + 1);
            }
        }
        let p = tmp("gamma.dump", &text);
        let col = read_column(&p, Some("f_pace_gamma")).unwrap();
        assert_eq!((col.values.clone(), col.timesteps), (g.clone(), 2));
        assert_eq!(col.lines[0], 10);
        assert_eq!(read_column(&p, Some("6")).unwrap().values, g);
        let out = report(&args(&p, Some("f_pace_gamma"))).unwrap();
        assert!(out.contains("LAMMPS dump, 2 timesteps"), "{out}");

        // Truncated: the error names the line and the timestep.
        let cut: String = text
            .lines()
            .take(text.lines().count() - 2)
            .map(|l| format!("{l}\n"))
            .collect();
        let p = tmp("cut.dump", &cut);
        let e = read_column(&p, Some("f_pace_gamma"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cut.dump:") && e.contains("3 of 5") && e.contains("timestep 100"),
            "{e}"
        );
        // A bad number names its line.
        let bad = text.replacen(&format!("{:?}", g[2]), "abc", 1);
        let p = tmp("bad.dump", &bad);
        let e = read_column(&p, Some("f_pace_gamma"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.dump:12") && e.contains("'abc'"), "{e}");
        // A column that later timesteps lack: the error names the timestep and its line.
        let gone = text.replacen(
            "x y z f_pace_gamma\n1 1 0.0 1.0 2.0",
            "x y z c_other\n1 1 0.0 1.0 2.0",
            2,
        );
        let gone = gone.replacen("x y z c_other", "x y z f_pace_gamma", 1);
        let p = tmp("gone.dump", &gone);
        let e = read_column(&p, Some("f_pace_gamma"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gone.dump:") && e.contains("timestep 100") && e.contains("differ"),
            "{e}"
        );
    }

    #[test]
    fn stats_cli_bad_input_names_file_and_line() {
        let p = tmp("ragged.txt", "1 2\n3 4\n5\n");
        let e = read_column(&p, Some("1")).unwrap_err().to_string();
        assert!(e.contains("ragged.txt:3") && e.contains("1 fields"), "{e}");
        let p = tmp("text.txt", "a b\n1 2\n3 x\n");
        let e = read_column(&p, Some("b")).unwrap_err().to_string();
        assert!(e.contains("text.txt:3") && e.contains("'x'"), "{e}");
        // Text in another column is no obstacle (the species of `aceuq eval --per-atom`).
        assert_eq!(read_column(&p, Some("a")).unwrap().values, vec![1.0, 3.0]);
        let p = tmp("empty.txt", "\n\n");
        assert!(
            read_column(&p, None)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let e = read_column(Path::new("/no/such/file.txt"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/such/file.txt"), "{e}");
        // A zero value cannot be fitted: the error points at its line.
        let p = tmp("zero.txt", "0.5\n0.7\n0.0\n0.9\n");
        let e = report(&args(&p, None)).unwrap_err().to_string();
        assert!(e.contains("zero.txt:3") && e.contains("> 0"), "{e}");
        let p = tmp("few.txt", "0.5\n");
        assert!(report(&args(&p, None)).is_err());
        // Values without spread (equal, or equal to 1e-12) are refused, not fitted.
        for (name, text) in [
            ("equal.txt", "0.5\n".repeat(5)),
            (
                "near.txt",
                (0..100)
                    .map(|i| format!("{}\n", 1.0 + 1e-12 * i as f64))
                    .collect(),
            ),
        ] {
            let p = tmp(name, &text);
            let e = report(&args(&p, None)).unwrap_err().to_string();
            assert!(e.contains("all equal") && e.contains(name), "{e}");
        }
        // A byte-order mark and quoted names are read as the names; a repeated name is refused.
        let p = tmp("bom.csv", "\u{feff}\"a\",\"b\"\n1,2\n3,4\n");
        assert_eq!(read_column(&p, Some("b")).unwrap().values, vec![2.0, 4.0]);
        assert_eq!(read_column(&p, Some("a")).unwrap().values, vec![1.0, 3.0]);
        let p = tmp("trailing.csv", "a,b,,\n1,2,3,4\n5,6,7,8\n");
        assert_eq!(read_column(&p, Some("a")).unwrap().values, vec![1.0, 5.0]);
        let p = tmp("twice.csv", "a,a\n1,2\n");
        let e = read_column(&p, Some("a")).unwrap_err().to_string();
        assert!(e.contains("twice.csv:1") && e.contains("'a' twice"), "{e}");
        let p = tmp("range.txt", "1 2\n");
        assert!(
            read_column(&p, Some("3"))
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    /// A handful of values gets a warning; an e_max the lower cutoff already exceeds says that
    /// the upper cutoff is the lower one.
    #[test]
    fn stats_cli_warns_on_few_values_and_a_low_e_max() {
        let mut r = rng(63);
        let f = draw_maxwell(&mut r, 0.1, 8);
        let text: String = f.iter().map(|v| format!("{v}\n")).collect();
        let p = tmp("eight.txt", &text);
        let mut a = args(&p, None);
        a.max_error = Some(1e-3);
        let out = report(&a).unwrap();
        assert!(out.contains("only 8 values"), "{out}");
        assert!(out.contains("x_max = x_c"), "{out}");
    }

    #[test]
    fn stats_cli_args_parse() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: CutoffArgs,
        }
        let c = Cli::try_parse_from([
            "x",
            "--values",
            "f.out",
            "--column",
            "max_devi_f",
            "--n",
            "1000",
            "--max-error",
            "1.0",
        ])
        .unwrap();
        assert_eq!(c.a.n, Some(1000));
        assert_eq!(c.a.max_error, Some(1.0));
        assert!(Cli::try_parse_from(["x", "--column", "2"]).is_err());
    }
}
