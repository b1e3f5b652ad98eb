//! Writing: [`WriteOptions`] and [`RealFormat`], the number and word formatting of the comment
//! and atom lines, the writability checks, [`frame_to_string`], [`write_frame`] and the atomic
//! whole-file [`write_file_atomic`].

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::ExtxyzError;
use super::parse::fmt_pbc;
use crate::structure::{InfoValue, PropData, Structure};

/// How real numbers of a column are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealFormat {
    /// Fixed decimals, like C's `%.{n}f`.
    Fixed(usize),
    /// Significant digits, like C's `%.{n}g` (trailing zeros removed).
    Significant(usize),
    /// Shortest text that reads back to the identical `f64` (lossless).
    Shortest,
}

impl RealFormat {
    fn format(self, x: f64, out: &mut String) {
        match self {
            RealFormat::Fixed(d) => {
                let _ = write!(out, "{x:.d$}");
            }
            RealFormat::Significant(p) => push_g(x, p, out),
            RealFormat::Shortest => push_shortest(x, out),
        }
    }
}

/// Options for writing extended XYZ.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOptions {
    /// Positions (Å); default `%.8f`.
    pub positions: RealFormat,
    /// Forces (eV/Å); default `%.8f`.
    pub forces: RealFormat,
    /// Extra real per-atom columns ([`Structure::arrays`]); default `%.6g`.
    pub arrays: RealFormat,
    /// Key the energy is written under (default `energy`).
    pub energy_key: String,
    /// Property name the forces are written under (default `forces`).
    pub forces_key: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            positions: RealFormat::Fixed(8),
            forces: RealFormat::Fixed(8),
            arrays: RealFormat::Significant(6),
            energy_key: "energy".to_string(),
            forces_key: "forces".to_string(),
        }
    }
}

impl WriteOptions {
    /// Options that write every real number with full precision, so that reading gives back
    /// bit-identical values (larger files).
    pub fn lossless() -> Self {
        WriteOptions {
            positions: RealFormat::Shortest,
            forces: RealFormat::Shortest,
            arrays: RealFormat::Shortest,
            ..WriteOptions::default()
        }
    }
}

/// Shortest text that reads back to the same `f64` and never reads as an integer
/// (`1.0`, `1e-7`, `NaN`, `inf`).
fn push_shortest(x: f64, out: &mut String) {
    let _ = write!(out, "{x:?}");
}

/// C's `%.{p}g`: `p` significant digits, scientific notation for exponents below -4 or at
/// least `p`, trailing zeros removed.
pub(super) fn push_g(x: f64, p: usize, out: &mut String) {
    let p = p.max(1);
    if !x.is_finite() {
        let _ = write!(out, "{x}");
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Scientific formatting does the rounding, which fixes the exponent (9.9999996 -> 1e1).
    let sci = format!("{:.*e}", p - 1, x);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        out.push_str(trim_fraction(mant));
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        let fixed = format!("{x:.decimals$}");
        out.push_str(trim_fraction(&fixed));
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Characters that make a word need quoting on the comment line.
fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.chars().any(|c| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '{' | '}' | '[' | ']' | '=' | '\\')
        })
}

fn push_word(s: &str, out: &mut String) {
    if s.is_empty() {
        // ASE's parser runs an empty `""` into the next key; `" "` reads as empty everywhere.
        out.push_str("\" \"");
    } else if needs_quotes(s) {
        out.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn push_reals_quoted(v: &[f64], out: &mut String) {
    if v.is_empty() {
        // See push_word: an empty `""` confuses ASE.
        out.push_str("\" \"");
        return;
    }
    out.push('"');
    for (k, x) in v.iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        push_shortest(*x, out);
    }
    out.push('"');
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

/// A name usable in `Properties=` (no separators, no characters the comment line treats
/// specially).
fn valid_property_name(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    ':' | '"' | '\'' | '{' | '}' | '[' | ']' | '=' | '\\' | ','
                )
        })
}

/// A per-atom string usable as an atom-line column.
fn valid_column_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Format one frame as extended XYZ text (count line, comment line, atom lines).
///
/// The structure is checked first: inconsistent lengths, non-finite positions, forces, cell,
/// energy or virial, names that would break the format, and `info` keys that would be read
/// back as something else (for example an `info["energy"]`) are [`ExtxyzError::Write`] errors.
pub fn frame_to_string(s: &Structure, opts: &WriteOptions) -> Result<String, ExtxyzError> {
    let werr = |message: String| ExtxyzError::Write {
        origin: s.origin.to_string(),
        message,
    };
    check_writable(s, opts).map_err(werr)?;

    let n = s.len();
    let mut out = String::with_capacity(256 + n * 64);
    let _ = writeln!(out, "{n}");

    // Comment line.
    if let Some(c) = &s.cell {
        out.push_str("Lattice=");
        push_reals_quoted(c.as_flattened(), &mut out);
        out.push(' ');
    }
    out.push_str("Properties=species:S:1:pos:R:3");
    if s.forces.is_some() {
        let _ = write!(out, ":{}:R:3", opts.forces_key);
    }
    for (name, data) in &s.arrays {
        let ty = match data {
            PropData::Real { .. } => 'R',
            PropData::Int { .. } => 'I',
            PropData::Bool { .. } => 'L',
            PropData::Str(_) => 'S',
        };
        let _ = write!(out, ":{name}:{ty}:{}", data.ncols());
    }
    if let Some(e) = s.energy {
        out.push(' ');
        push_word(&opts.energy_key, &mut out);
        out.push('=');
        push_shortest(e, &mut out);
    }
    let _ = write!(out, " pbc=\"{}\"", fmt_pbc(s.pbc));
    if let Some(ct) = &s.config_type {
        out.push_str(" config_type=");
        push_word(ct, &mut out);
    }
    if let Some(v) = &s.virial {
        // ASE order: column-major.
        let mut flat = [0.0; 9];
        for (i, row) in v.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                flat[i + 3 * j] = *x;
            }
        }
        out.push_str(" virial=");
        push_reals_quoted(&flat, &mut out);
    }
    for (key, value) in &s.info {
        out.push(' ');
        push_word(key, &mut out);
        out.push('=');
        match value {
            InfoValue::Int(i) => {
                let _ = write!(out, "{i}");
            }
            InfoValue::Real(x) => push_shortest(*x, &mut out),
            InfoValue::Bool(b) => out.push(if *b { 'T' } else { 'F' }),
            InfoValue::Str(t) => push_word(t, &mut out),
            InfoValue::Reals(v) => push_reals_quoted(v, &mut out),
        }
    }
    out.push('\n');

    // Atom lines.
    let mut num = String::new();
    let mut push_real = |x: f64, f: RealFormat, width: usize, out: &mut String| {
        num.clear();
        f.format(x, &mut num);
        let _ = write!(out, " {num:>width$}");
    };
    for a in 0..n {
        let _ = write!(out, "{:<2}", s.symbols[a]);
        for &x in &s.positions[a] {
            push_real(x, opts.positions, 16, &mut out);
        }
        if let Some(f) = &s.forces {
            for &x in &f[a] {
                push_real(x, opts.forces, 16, &mut out);
            }
        }
        for (_, data) in &s.arrays {
            match data {
                PropData::Real { ncols, data } => {
                    for &x in &data[a * ncols..(a + 1) * ncols] {
                        push_real(x, opts.arrays, 12, &mut out);
                    }
                }
                PropData::Int { ncols, data } => {
                    for x in &data[a * ncols..(a + 1) * ncols] {
                        let _ = write!(out, " {x:>8}");
                    }
                }
                PropData::Bool { ncols, data } => {
                    for &x in &data[a * ncols..(a + 1) * ncols] {
                        out.push_str(if x { " T" } else { " F" });
                    }
                }
                PropData::Str(v) => {
                    out.push(' ');
                    out.push_str(&v[a]);
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Everything that would make the written frame invalid or read back differently.
fn check_writable(s: &Structure, opts: &WriteOptions) -> Result<(), String> {
    let n = s.len();
    if s.symbols.len() != n {
        return Err(format!(
            "{} symbols for {n} positions; give one symbol per atom",
            s.symbols.len()
        ));
    }
    if let Some((a, sym)) = s
        .symbols
        .iter()
        .enumerate()
        .find(|(_, t)| !valid_column_word(t))
    {
        return Err(format!(
            "atom {} has symbol '{sym}', which is empty or contains whitespace",
            a + 1
        ));
    }
    if let Some(a) = s
        .positions
        .iter()
        .position(|p| p.iter().any(|x| !x.is_finite()))
    {
        return Err(format!("atom {} has a non-finite position", a + 1));
    }
    if let Some(f) = &s.forces {
        if f.len() != n {
            return Err(format!(
                "{} forces for {n} atoms; give one force per atom",
                f.len()
            ));
        }
        if let Some(a) = f.iter().position(|p| p.iter().any(|x| !x.is_finite())) {
            return Err(format!("atom {} has a non-finite force", a + 1));
        }
    }
    match &s.cell {
        None if s.pbc.iter().any(|&p| p) => {
            return Err(format!(
                "pbc=\"{}\" without a cell; set the cell or make pbc all false",
                fmt_pbc(s.pbc)
            ));
        }
        Some(c) => {
            if c.iter().flatten().any(|x| !x.is_finite()) {
                return Err("the cell has a non-finite number".to_string());
            }
            for (k, name) in ["a", "b", "c"].iter().enumerate() {
                if s.pbc[k] && c[k].iter().all(|&x| x == 0.0) {
                    return Err(format!("lattice vector {name} is zero but periodic"));
                }
            }
        }
        None => {}
    }
    if s.energy.is_some_and(|e| !e.is_finite()) {
        return Err("the energy is not finite".to_string());
    }
    if s.virial
        .is_some_and(|v| v.iter().flatten().any(|x| !x.is_finite()))
    {
        return Err("the virial has a non-finite number".to_string());
    }
    if let Some(ct) = &s.config_type
        && (ct.is_empty() || ct.trim() != ct || has_line_break(ct))
    {
        return Err(format!(
            "config_type '{ct}' is empty, has leading or trailing blanks, or contains a line \
             break, which would not read back the same; trim it or set it to None"
        ));
    }
    if opts.energy_key.is_empty() || has_line_break(&opts.energy_key) {
        return Err("WriteOptions::energy_key is empty or contains a line break".to_string());
    }
    if !valid_property_name(&opts.forces_key)
        || ["species", "pos"].contains(&opts.forces_key.as_str())
    {
        return Err(format!(
            "WriteOptions::forces_key '{}' is not a usable property name",
            opts.forces_key
        ));
    }

    let mut names: HashSet<&str> = HashSet::new();
    for (name, data) in &s.arrays {
        if !valid_property_name(name) {
            return Err(format!(
                "array name '{name}' is empty or contains whitespace or one of : \" ' {{ }} [ ] \
                 = \\ ,; rename it"
            ));
        }
        if name == "species" || name == "pos" || *name == opts.forces_key {
            return Err(format!(
                "array '{name}' would be read back as the species, positions or forces; rename \
                 it (forces belong in Structure::forces)"
            ));
        }
        if !names.insert(name) {
            return Err(format!("array '{name}' appears twice"));
        }
        let (len, want) = match data {
            PropData::Real { ncols, data } => (data.len(), ncols * n),
            PropData::Int { ncols, data } => (data.len(), ncols * n),
            PropData::Bool { ncols, data } => (data.len(), ncols * n),
            PropData::Str(v) => (v.len(), n),
        };
        if data.ncols() == 0 {
            return Err(format!("array '{name}' has 0 columns"));
        }
        if len != want {
            return Err(format!(
                "array '{name}' has {len} values, expected {want} ({n} atoms x {} columns)",
                data.ncols()
            ));
        }
        if let PropData::Str(v) = data
            && let Some(a) = v.iter().position(|t| !valid_column_word(t))
        {
            return Err(format!(
                "array '{name}' of atom {} is '{}', which is empty or contains whitespace",
                a + 1,
                v[a]
            ));
        }
    }

    for (key, value) in &s.info {
        if key.is_empty() || has_line_break(key) {
            return Err(format!(
                "info key '{key}' is empty or contains a line break"
            ));
        }
        let lower = key.to_ascii_lowercase();
        let taken = matches!(lower.as_str(), "lattice" | "properties" | "pbc")
            || *key == opts.energy_key
            || key == "config_type"
            || key == "virial"
            || (key == "stress" && s.virial.is_none());
        if taken {
            return Err(format!(
                "info key '{key}' would be read back as the cell, properties, pbc, energy, \
                 config_type or virial; store it in the Structure field or rename it"
            ));
        }
        if let InfoValue::Str(t) = value
            && has_line_break(t)
        {
            return Err(format!("info '{key}' contains a line break"));
        }
    }
    Ok(())
}

/// Write one frame to `w`. The frame is formatted in full before anything is written, so an
/// invalid structure writes nothing.
pub fn write_frame<W: Write + ?Sized>(
    w: &mut W,
    s: &Structure,
    opts: &WriteOptions,
) -> Result<(), ExtxyzError> {
    let text = frame_to_string(s, opts)?;
    w.write_all(text.as_bytes())
        .map_err(|source| ExtxyzError::Io {
            file: "<output>".to_string(),
            context: format!("cannot write {}", s.origin),
            source,
        })
}

/// Write all `frames` to `path` atomically: they go to a temporary file in the same directory,
/// which is synced and then renamed over `path`. A reader sees either the old file or the whole
/// new one; on any error (including an unwritable structure) the temporary file is removed and
/// `path` is untouched. Returns the number of frames written. A device or FIFO (`/dev/null`,
/// `/dev/stdout`) is written in place instead.
pub fn write_file_atomic<'a, I>(
    path: impl AsRef<Path>,
    frames: I,
    opts: &WriteOptions,
) -> Result<usize, ExtxyzError>
where
    I: IntoIterator<Item = &'a Structure>,
{
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_err = |context: String| {
        let name = name.clone();
        move |source| ExtxyzError::Io {
            file: name,
            context,
            source,
        }
    };
    if crate::io::is_special_file(path) {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("cannot open".to_string()))?;
        let mut w = BufWriter::new(file);
        let mut count = 0;
        for s in frames {
            w.write_all(frame_to_string(s, opts)?.as_bytes())
                .map_err(io_err("cannot write".to_string()))?;
            count += 1;
        }
        w.flush().map_err(io_err("cannot write".to_string()))?;
        return Ok(count);
    }
    let file_name = path.file_name().ok_or_else(|| ExtxyzError::Io {
        file: name.clone(),
        context: "not a file path".to_string(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tmp, file) = create_temp(&dir, file_name).map_err(io_err(format!(
        "cannot create a temporary file in {}",
        dir.display()
    )))?;

    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 16, file);
        let mut count = 0;
        for s in frames {
            let text = frame_to_string(s, opts)?;
            w.write_all(text.as_bytes())
                .map_err(io_err(format!("cannot write {}", tmp.display())))?;
            count += 1;
        }
        let file = w
            .into_inner()
            .map_err(|e| io_err(format!("cannot write {}", tmp.display()))(e.into_error()))?;
        file.sync_all()
            .map_err(io_err(format!("cannot sync {}", tmp.display())))?;
        drop(file);
        std::fs::rename(&tmp, path)
            .map_err(io_err(format!("cannot rename {} to it", tmp.display())))?;
        Ok(count)
    })();
    match result {
        Ok(count) => {
            // Make the rename durable; failure here does not undo a completed write.
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(count)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Create a new, uniquely named hidden file next to the target.
fn create_temp(dir: &Path, file_name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..100 {
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp.{pid}.{k}"));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}
