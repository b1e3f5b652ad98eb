//! Reading LAMMPS `dump custom` text files as structures: the frames an MD run dumped (for
//! example ML-PACE's `dump custom ... f_pace_gamma` of extrapolative structures), so that
//! `aceuq select` takes them as they are.
//!
//! Each timestep becomes one structure: the box (orthogonal or triclinic, `pp` = periodic), the
//! atoms sorted by `id` when there is one, species from an `element` column or from the atom
//! `type` mapped through the caller's list (the order of `pair_coeff * * model.aceuq El1 El2 ...`),
//! positions from `x y z`, `xu yu zu`, `xs ys zs` or `xsu ysu zsu`. Every other numeric column is
//! kept as a per-atom array (names made extended-XYZ safe: `f_watch[1]` becomes `f_watch_1`), and
//! the timestep as the info key `timestep`. Units are LAMMPS `metal` (Å). A last frame cut short
//! (a killed run) is skipped with a warning; anything else malformed is an error naming the file
//! and line.

use crate::structure::{InfoValue, Origin, PropData, Structure};
use std::path::Path;

/// A malformed dump, with the file and the one-based line.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {msg}")]
pub struct DumpError {
    /// The file.
    pub path: String,
    /// One-based line number.
    pub line: usize,
    /// What is wrong and what to do.
    pub msg: String,
}

/// Whether `text` looks like a LAMMPS dump: its first non-empty line is `ITEM: TIMESTEP`.
pub fn looks_like_dump(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with("ITEM: TIMESTEP"))
}

/// Frames read from a dump and the warnings met (a cut-off last frame).
#[derive(Debug, Default)]
pub struct DumpFrames {
    /// One structure per complete timestep, in file order.
    pub frames: Vec<Structure>,
    /// Warnings, each naming the file and line.
    pub warnings: Vec<String>,
    /// Whether species came from atom types (no `element` column) in some frame.
    pub from_types: bool,
}

/// Read a dump file; `type_symbols[k]` is the species of atom type `k + 1` (not needed when the
/// dump has an `element` column).
pub fn read_dump(path: &Path, type_symbols: Option<&[String]>) -> Result<DumpFrames, DumpError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DumpError {
        path: name.clone(),
        line: 0,
        msg: format!("cannot read the file: {e}"),
    })?;
    parse_dump(&name, &text, type_symbols)
}

/// Which columns hold the positions, and how to read them.
#[derive(Clone, Copy, PartialEq)]
enum PosKind {
    Cartesian,
    Scaled,
}

/// Parse the text of a dump (see [`read_dump`]).
pub fn parse_dump(
    name: &str,
    text: &str,
    type_symbols: Option<&[String]>,
) -> Result<DumpFrames, DumpError> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |line: usize, msg: String| DumpError {
        path: name.to_string(),
        line,
        msg,
    };
    let mut out = DumpFrames::default();
    let mut i = 0;
    // Skip blank lines; return the index of the next non-blank one.
    let skip = |mut j: usize| {
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        j
    };
    loop {
        i = skip(i);
        if i >= lines.len() {
            break;
        }
        let start = i;
        match parse_frame(&lines, i, name, type_symbols, out.frames.len()) {
            Ok((s, next, from_types)) => {
                out.frames.push(s);
                out.from_types |= from_types;
                i = next;
            }
            Err(Frame::Truncated(line)) if !out.frames.is_empty() => {
                out.warnings.push(format!(
                    "{name}:{}: the last frame is cut short (a killed run?): skipped",
                    start + 1
                ));
                let _ = line;
                break;
            }
            Err(Frame::Truncated(line)) => {
                return Err(err(
                    line,
                    "the file ends inside its first frame: no complete frame to read".into(),
                ));
            }
            Err(Frame::Bad(line, msg)) => return Err(err(line, msg)),
        }
    }
    if out.frames.is_empty() {
        return Err(err(1, "no frames: not a LAMMPS dump file".into()));
    }
    Ok(out)
}

/// Why a frame could not be read: the file ended inside it (line), or it is malformed.
enum Frame {
    Truncated(usize),
    Bad(usize, String),
}

fn parse_frame(
    lines: &[&str],
    mut i: usize,
    name: &str,
    type_symbols: Option<&[String]>,
    index: usize,
) -> Result<(Structure, usize, bool), Frame> {
    let first_line = i + 1;
    let get = |j: usize| -> Result<&str, Frame> {
        lines
            .get(j)
            .map(|l| l.trim())
            .ok_or(Frame::Truncated(lines.len()))
    };
    let expect_item = |j: usize, item: &str| -> Result<String, Frame> {
        let l = get(j)?;
        match l.strip_prefix("ITEM:") {
            Some(rest) if rest.trim_start().starts_with(item) => {
                Ok(rest.trim_start()[item.len()..].trim().to_string())
            }
            _ => Err(Frame::Bad(
                j + 1,
                format!(
                    "expected 'ITEM: {item}', found '{l}' (is this a `dump custom` text file?)"
                ),
            )),
        }
    };
    expect_item(i, "TIMESTEP")?;
    let ts_text = get(i + 1)?;
    let timestep: i64 = ts_text
        .parse()
        .map_err(|_| Frame::Bad(i + 2, format!("'{ts_text}' is not a timestep number")))?;
    i += 2;
    expect_item(i, "NUMBER OF ATOMS")?;
    let n_text = get(i + 1)?;
    let n: usize = n_text
        .parse()
        .map_err(|_| Frame::Bad(i + 2, format!("'{n_text}' is not an atom count")))?;
    if n == 0 {
        return Err(Frame::Bad(i + 2, "a frame with no atoms".into()));
    }
    i += 2;
    let bounds_spec = expect_item(i, "BOX BOUNDS")?;
    let words: Vec<&str> = bounds_spec.split_whitespace().collect();
    let triclinic = words.first().is_some_and(|w| *w == "xy");
    let flags: Vec<&str> = if triclinic {
        words[3.min(words.len())..].to_vec()
    } else {
        words.clone()
    };
    if flags.len() != 3 {
        return Err(Frame::Bad(
            i + 1,
            format!(
                "'ITEM: BOX BOUNDS {bounds_spec}': expected three boundary flags such as 'pp pp pp'"
            ),
        ));
    }
    let pbc = [0, 1, 2].map(|k| flags[k] == "pp");
    let mut b = [[0.0f64; 3]; 3];
    for (k, row) in b.iter_mut().enumerate() {
        let l = get(i + 1 + k)?;
        let v: Vec<f64> = l
            .split_whitespace()
            .map(|w| w.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| Frame::Bad(i + 2 + k, format!("'{l}' is not a line of box bounds")))?;
        let want = if triclinic { 3 } else { 2 };
        if v.len() != want || v.iter().any(|x| !x.is_finite()) {
            return Err(Frame::Bad(
                i + 2 + k,
                format!(
                    "'{l}': expected {want} finite numbers (lo hi{})",
                    if triclinic { " tilt" } else { "" }
                ),
            ));
        }
        row[..want].copy_from_slice(&v);
    }
    i += 4;
    // Bounding box to box (LAMMPS Howto triclinic): the tilts widen the x and y bounds.
    let (xy, xz, yz) = if triclinic {
        (b[0][2], b[1][2], b[2][2])
    } else {
        (0.0, 0.0, 0.0)
    };
    let xlo = b[0][0]
        - [0.0, xy, xz, xy + xz]
            .into_iter()
            .fold(f64::INFINITY, f64::min);
    let xhi = b[0][1]
        - [0.0, xy, xz, xy + xz]
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
    let ylo = b[1][0] - yz.min(0.0);
    let yhi = b[1][1] - yz.max(0.0);
    let (zlo, zhi) = (b[2][0], b[2][1]);
    let (lx, ly, lz) = (xhi - xlo, yhi - ylo, zhi - zlo);
    if !(lx > 0.0 && ly > 0.0 && lz > 0.0) {
        return Err(Frame::Bad(
            i - 2,
            format!("the box has a non-positive length ({lx}, {ly}, {lz})"),
        ));
    }
    let cell = [[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]];
    let cols_text = expect_item(i, "ATOMS")?;
    let cols: Vec<&str> = cols_text.split_whitespace().collect();
    let find = |c: &str| cols.iter().position(|x| *x == c);
    let (pos_cols, kind) = [
        (["x", "y", "z"], PosKind::Cartesian),
        (["xu", "yu", "zu"], PosKind::Cartesian),
        (["xs", "ys", "zs"], PosKind::Scaled),
        (["xsu", "ysu", "zsu"], PosKind::Scaled),
    ]
    .iter()
    .find_map(|(names, kind)| {
        let p: Option<Vec<usize>> = names.iter().map(|c| find(c)).collect();
        p.map(|p| ([p[0], p[1], p[2]], *kind))
    })
    .ok_or_else(|| {
        Frame::Bad(
            i + 1,
            format!(
                "no positions among the columns '{cols_text}': dump x y z (or xu yu zu, xs ys zs)"
            ),
        )
    })?;
    let id_col = find("id");
    let element_col = find("element");
    let type_col = find("type");
    if element_col.is_none() && type_col.is_none() {
        return Err(Frame::Bad(
            i + 1,
            format!("neither 'element' nor 'type' among the columns '{cols_text}'"),
        ));
    }
    if element_col.is_none() && type_symbols.is_none() {
        return Err(Frame::Bad(
            i + 1,
            "the dump has atom types but no 'element' column: give the element of each type \
             (--elements, in the order of pair_coeff)"
                .into(),
        ));
    }
    let extra: Vec<usize> = (0..cols.len())
        .filter(|k| {
            !pos_cols.contains(k)
                && Some(*k) != id_col
                && Some(*k) != element_col
                && Some(*k) != type_col
        })
        .collect();
    i += 1;
    let mut rows: Vec<(i64, String, [f64; 3], Vec<f64>)> = Vec::with_capacity(n);
    for a in 0..n {
        let l = get(i + a)?;
        if l.starts_with("ITEM:") {
            return Err(Frame::Bad(
                i + a + 1,
                format!("the frame has {a} atom lines where ITEM: NUMBER OF ATOMS says {n}"),
            ));
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != cols.len() {
            // A short final line of the file is a cut-off write, not a malformed frame.
            if i + a + 1 == lines.len() && f.len() < cols.len() {
                return Err(Frame::Truncated(i + a + 1));
            }
            return Err(Frame::Bad(
                i + a + 1,
                format!(
                    "{} fields where the ATOMS line names {}",
                    f.len(),
                    cols.len()
                ),
            ));
        }
        let num = |k: usize| -> Result<f64, Frame> {
            f[k].parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    Frame::Bad(
                        i + a + 1,
                        format!("'{}' in column '{}' is not a finite number", f[k], cols[k]),
                    )
                })
        };
        let id = match id_col {
            Some(k) => f[k].parse::<i64>().map_err(|_| {
                Frame::Bad(i + a + 1, format!("atom id '{}' is not an integer", f[k]))
            })?,
            None => a as i64,
        };
        let symbol = match (element_col, type_symbols) {
            (Some(k), _) => crate::elements::canonical_symbol(f[k]).into_owned(),
            (None, Some(ts)) => {
                let k = type_col.expect("checked");
                let t: usize = f[k].parse().map_err(|_| {
                    Frame::Bad(
                        i + a + 1,
                        format!("atom type '{}' is not a positive integer", f[k]),
                    )
                })?;
                ts.get(t.wrapping_sub(1)).cloned().ok_or_else(|| {
                    Frame::Bad(
                        i + a + 1,
                        format!(
                            "atom type {t}, but {} element(s) were given ({}): give one per type",
                            ts.len(),
                            ts.join(" ")
                        ),
                    )
                })?
            }
            (None, None) => unreachable!("checked above"),
        };
        let p = [num(pos_cols[0])?, num(pos_cols[1])?, num(pos_cols[2])?];
        let r = match kind {
            PosKind::Cartesian => [p[0] - xlo, p[1] - ylo, p[2] - zlo],
            PosKind::Scaled => [
                p[0] * cell[0][0] + p[1] * cell[1][0] + p[2] * cell[2][0],
                p[1] * cell[1][1] + p[2] * cell[2][1],
                p[2] * cell[2][2],
            ],
        };
        let ex = extra
            .iter()
            .map(|&k| f[k].parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        rows.push((id, symbol, r, ex));
    }
    if id_col.is_some() {
        rows.sort_by_key(|r| r.0);
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Frame::Bad(
                i + 1,
                format!("atom id {} appears twice in one frame", w[0].0),
            ));
        }
    }
    let mut s = Structure {
        cell: Some(cell),
        pbc,
        positions: rows.iter().map(|r| r.2).collect(),
        symbols: rows.iter().map(|r| r.1.clone()).collect(),
        origin: Origin {
            file: Some(name.to_string()),
            frame: index,
            line: first_line,
        },
        ..Default::default()
    };
    s.info.insert("timestep".into(), InfoValue::Int(timestep));
    for (e, &k) in extra.iter().enumerate() {
        let data: Vec<f64> = rows.iter().map(|r| r.3[e]).collect();
        if data.iter().all(|x| x.is_finite()) {
            s.arrays
                .push((safe_name(cols[k]), PropData::Real { ncols: 1, data }));
        }
    }
    if let Some(p) = s.limits_problem() {
        return Err(Frame::Bad(first_line, p.message));
    }
    Ok((s, i + n, element_col.is_none()))
}

/// A column name usable as an extended XYZ property: letters, digits and `_` (`f_watch[1]` ->
/// `f_watch_1`).
fn safe_name(c: &str) -> String {
    let s: String = c
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    s.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORTHO: &str = "ITEM: TIMESTEP\n100\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX BOUNDS pp pp pp\n\
        -1.0 9.0\n0.0 10.0\n0.0 12.0\nITEM: ATOMS id type x y z f_pace_gamma c_g[1]\n\
        3 2 1.0 2.0 3.0 4.5 0.1\n1 1 0.0 0.0 0.0 1.5 0.2\n2 1 5.0 5.0 5.0 2.5 0.3\n";

    fn species() -> Vec<String> {
        vec!["In".to_string(), "P".to_string()]
    }

    #[test]
    fn an_orthogonal_dump_gives_sorted_atoms_species_by_type_and_kept_columns() {
        let two = format!("{ORTHO}{}", ORTHO.replace("\n100\n", "\n200\n"));
        let d = parse_dump("a.dump", &two, Some(&species())).unwrap();
        assert_eq!(d.frames.len(), 2);
        assert!(d.warnings.is_empty() && d.from_types);
        let s = &d.frames[0];
        assert_eq!(s.symbols, ["In", "In", "P"]);
        // Positions relative to the box origin (xlo = -1).
        assert_eq!(
            s.positions,
            vec![[1.0, 0.0, 0.0], [6.0, 5.0, 5.0], [2.0, 2.0, 3.0]]
        );
        assert_eq!(
            s.cell.unwrap(),
            [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 12.0]]
        );
        assert_eq!(s.pbc, [true; 3]);
        assert_eq!(s.info.get("timestep"), Some(&InfoValue::Int(100)));
        assert_eq!(d.frames[1].info.get("timestep"), Some(&InfoValue::Int(200)));
        let names: Vec<&str> = s.arrays.iter().map(|a| a.0.as_str()).collect();
        assert_eq!(names, ["f_pace_gamma", "c_g_1"]);
        assert_eq!(
            s.arrays[0].1,
            PropData::Real {
                ncols: 1,
                data: vec![1.5, 2.5, 4.5]
            }
        );
        assert_eq!(s.origin.line, 1);
        assert_eq!(d.frames[1].origin.line, 13);
    }

    #[test]
    fn a_triclinic_scaled_dump_with_elements_gives_the_cell_and_cartesian_positions() {
        // Box a = (4,0,0), b = (1,5,0), c = (-0.5,0.5,6) at origin (0,0,0); bounds widened by
        // the tilts as LAMMPS writes them.
        let (xy, xz, yz) = (1.0, -0.5, 0.5);
        let xlo_b = 0.0
            + [0.0f64, xy, xz, xy + xz]
                .into_iter()
                .fold(f64::INFINITY, f64::min);
        let xhi_b = 4.0
            + [0.0f64, xy, xz, xy + xz]
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max);
        let text = format!(
            "ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS xy xz yz pp pp ff\n\
             {xlo_b} {xhi_b} {xy}\n0.0 5.5 {xz}\n0.0 6.0 {yz}\nITEM: ATOMS element xs ys zs\n\
             W 0.5 0.5 0.5\nBE 0.0 0.0 0.0\n"
        );
        let d = parse_dump("t.dump", &text, None).unwrap();
        assert!(!d.from_types);
        let s = &d.frames[0];
        assert_eq!(
            s.cell.unwrap(),
            [[4.0, 0.0, 0.0], [1.0, 5.0, 0.0], [-0.5, 0.5, 6.0]]
        );
        assert_eq!(s.pbc, [true, true, false]);
        // An element written in another case (BE) is read as the element, as in extended XYZ.
        assert_eq!(s.symbols, ["W", "Be"]);
        let want = [0.5 * (4.0 + 1.0 - 0.5), 0.5 * (5.0 + 0.5), 3.0];
        for k in 0..3 {
            assert!(
                (s.positions[0][k] - want[k]).abs() < 1e-12,
                "{:?}",
                s.positions[0]
            );
        }
    }

    #[test]
    fn a_cut_last_frame_is_skipped_and_bad_input_names_its_line() {
        let two = format!("{ORTHO}{}", ORTHO.replace("\n100\n", "\n200\n"));
        let cut = &two[..two.len() - 10];
        let d = parse_dump("c.dump", cut, Some(&species())).unwrap();
        assert_eq!(d.frames.len(), 1);
        assert!(d.warnings[0].contains("c.dump:13") && d.warnings[0].contains("cut short"));
        // Types without elements.
        let e = parse_dump("n.dump", ORTHO, None).unwrap_err().to_string();
        assert!(e.contains("n.dump:9") && e.contains("--elements"), "{e}");
        // A type beyond the elements given.
        let one = vec!["In".to_string()];
        let e = parse_dump("n.dump", ORTHO, Some(&one))
            .unwrap_err()
            .to_string();
        assert!(e.contains("n.dump:10") && e.contains("atom type 2"), "{e}");
        // A bad number.
        let bad = ORTHO.replace("5.0 5.0 5.0", "5.0 abc 5.0");
        let e = parse_dump("b.dump", &bad, Some(&species()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.dump:12") && e.contains("'abc'"), "{e}");
        // Too few atom lines before the next frame.
        let short = format!(
            "{}{ORTHO}",
            ORTHO.replace("NUMBER OF ATOMS\n3", "NUMBER OF ATOMS\n4")
        );
        let e = parse_dump("s.dump", &short, Some(&species()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.dump:13") && e.contains("3 atom lines"), "{e}");
        // Not a dump at all.
        assert!(!looks_like_dump("3\nLattice=...\n"));
        assert!(looks_like_dump("\nITEM: TIMESTEP\n0\n"));
        let e = parse_dump("x.xyz", "3\n\n", None).unwrap_err().to_string();
        assert!(e.contains("x.xyz:1") && e.contains("ITEM: TIMESTEP"), "{e}");
    }
}
