//! Parsing the text of one frame, without I/O: the comment line (`key=value` splitting with
//! delimiters and escapes, ASE's typing of values, `Lattice`, `pbc`, `Properties`, energy,
//! virial/stress, `config_type`) into a [`Header`], and the atom lines into a [`Structure`]
//! through [`FrameBuilder`]. Errors are messages; the reader adds file and line.

use std::collections::{BTreeMap, HashSet};

use super::options::ReadOptions;
use crate::structure::{InfoValue, Origin, PropData, Structure};

pub(super) fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// Column type of a `Properties` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PropType {
    Str,
    Real,
    Int,
    Bool,
}

impl PropType {
    fn letter(self) -> char {
        match self {
            PropType::Str => 'S',
            PropType::Real => 'R',
            PropType::Int => 'I',
            PropType::Bool => 'L',
        }
    }

    fn describe(self) -> &'static str {
        match self {
            PropType::Str => "a string",
            PropType::Real => "a real number",
            PropType::Int => "an integer",
            PropType::Bool => "a logical (T, F, True or False)",
        }
    }
}

/// What a `Properties` entry is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Species,
    Positions,
    Forces,
    /// Index into the extra arrays.
    Extra(usize),
}

#[derive(Clone, Debug)]
struct PropSpec {
    name: String,
    ty: PropType,
    ncols: usize,
    role: Role,
}

/// Everything the comment line says.
pub(super) struct Header {
    cell: Option<[[f64; 3]; 3]>,
    pbc: [bool; 3],
    props: Vec<PropSpec>,
    /// The `Properties` text as given, for messages.
    props_text: String,
    total_cols: usize,
    energy: Option<f64>,
    virial: Option<[[f64; 3]; 3]>,
    config_type: Option<String>,
    info: BTreeMap<String, InfoValue>,
}

const BOOL_WORDS: [(&str, bool); 8] = [
    ("T", true),
    ("F", false),
    ("True", true),
    ("False", false),
    ("true", true),
    ("false", false),
    ("TRUE", true),
    ("FALSE", false),
];

fn parse_bool_word(s: &str) -> Option<bool> {
    BOOL_WORDS.iter().find(|(w, _)| *w == s).map(|(_, b)| *b)
}

/// Items of a value, split on whitespace and commas as ASE does.
fn value_items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
}

fn parse_reals(raw: &str) -> Option<Vec<f64>> {
    value_items(raw).map(|t| t.parse::<f64>().ok()).collect()
}

/// ASE's typing of a comment-line value.
pub(super) fn classify(raw: &str) -> InfoValue {
    let items: Vec<&str> = value_items(raw).collect();
    if items.is_empty() {
        return InfoValue::Reals(Vec::new());
    }
    if let Some(ints) = items
        .iter()
        .map(|t| t.parse::<i64>().ok())
        .collect::<Option<Vec<_>>>()
    {
        return if ints.len() == 1 {
            InfoValue::Int(ints[0])
        } else {
            InfoValue::Reals(ints.iter().map(|&i| i as f64).collect())
        };
    }
    if let Some(reals) = items
        .iter()
        .map(|t| t.parse::<f64>().ok())
        .collect::<Option<Vec<_>>>()
    {
        return if reals.len() == 1 {
            InfoValue::Real(reals[0])
        } else {
            InfoValue::Reals(reals)
        };
    }
    if items.len() == 1
        && let Some(b) = parse_bool_word(items[0])
    {
        return InfoValue::Bool(b);
    }
    InfoValue::Str(raw.to_string())
}

/// Split a comment line into `(key, value)` pairs with delimiters removed and escapes resolved;
/// `None` for a bare key.
fn split_comment(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let chars: Vec<char> = line.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < n && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= n {
            break;
        }
        if chars[i] == '=' {
            return Err(format!(
                "comment line has '=' without a key at column {}; write key=value pairs",
                i + 1
            ));
        }
        let key = read_word(&chars, &mut i, true)?;
        let after_key = i;
        skip_ws(&mut i);
        if i < n && chars[i] == '=' {
            i += 1;
            skip_ws(&mut i);
            let value = if i < n {
                read_word(&chars, &mut i, false)?
            } else {
                String::new()
            };
            out.push((key, Some(value)));
        } else {
            i = after_key;
            out.push((key, None));
        }
    }
    Ok(out)
}

/// Read one key or value: bare characters and delimited segments up to unquoted whitespace
/// (or `=` for a key).
fn read_word(chars: &[char], i: &mut usize, stop_at_eq: bool) -> Result<String, String> {
    let n = chars.len();
    let mut s = String::new();
    while *i < n {
        let c = chars[*i];
        if c.is_whitespace() || (stop_at_eq && c == '=') {
            break;
        }
        let close = match c {
            '"' => Some('"'),
            '\'' => Some('\''),
            '{' => Some('}'),
            '[' => Some(']'),
            _ => None,
        };
        if c == '\\' {
            // A backslash takes the next character literally (a trailing one is kept).
            if *i + 1 < n {
                s.push(chars[*i + 1]);
                *i += 2;
            } else {
                s.push('\\');
                *i += 1;
            }
        } else if let Some(close) = close {
            let open_at = *i;
            *i += 1;
            loop {
                if *i >= n {
                    return Err(format!(
                        "comment line has an unclosed {c} at column {}; add the closing {close}",
                        open_at + 1
                    ));
                }
                let d = chars[*i];
                if d == '\\' && *i + 1 < n {
                    s.push(chars[*i + 1]);
                    *i += 2;
                } else if d == close {
                    *i += 1;
                    break;
                } else {
                    s.push(d);
                    *i += 1;
                }
            }
        } else {
            s.push(c);
            *i += 1;
        }
    }
    Ok(s)
}

pub(super) fn fmt_pbc(p: [bool; 3]) -> String {
    let b = |x: bool| if x { 'T' } else { 'F' };
    format!("{} {} {}", b(p[0]), b(p[1]), b(p[2]))
}

/// Parse the comment line. Errors are messages; the caller adds file and line.
pub(super) fn parse_header(line: &str, opts: &ReadOptions) -> Result<Header, String> {
    let pairs = split_comment(line)?;

    let mut seen: HashSet<String> = HashSet::new();
    let mut lattice: Option<String> = None;
    let mut pbc_raw: Option<String> = None;
    let mut props_raw: Option<String> = None;
    let mut energy_raw: Option<String> = None;
    let mut virial_raw: Option<String> = None;
    let mut stress_raw: Option<String> = None;
    let mut config_type: Option<String> = None;
    let mut info = BTreeMap::new();

    for (key, value) in pairs {
        let lower = key.to_ascii_lowercase();
        // Special keys count as duplicates in any case ("Lattice" and "lattice").
        let canon = match lower.as_str() {
            "lattice" | "properties" | "pbc" => lower.clone(),
            _ => key.clone(),
        };
        if !seen.insert(canon) {
            if value.is_none() {
                // `Lattice=5 0 0 0 5 0 0 0 5`, `pbc=T T T`: what follows the first is bare words.
                return Err(format!(
                    "the comment line has a bare word '{key}' more than once: a value with \
                     spaces must be quoted, e.g. Lattice=\"ax ay az bx by bz cx cy cz\" and \
                     pbc=\"T T T\""
                ));
            }
            return Err(format!(
                "key '{key}' appears twice in the comment line; keep only one (the reader does \
                 not guess which is meant)"
            ));
        }
        let needs_value = |what: &str| format!("key '{key}' has no value; write {key}={what}");
        match lower.as_str() {
            "lattice" => {
                lattice = Some(value.ok_or_else(|| needs_value("\"ax ay az bx by bz cx cy cz\""))?)
            }
            "pbc" => pbc_raw = Some(value.ok_or_else(|| needs_value("\"T T T\""))?),
            "properties" => {
                props_raw = Some(value.ok_or_else(|| needs_value("species:S:1:pos:R:3"))?)
            }
            _ if !opts.energy_key.is_empty() && key == opts.energy_key => {
                energy_raw = Some(value.ok_or_else(|| needs_value("<energy in eV>"))?)
            }
            _ if key == "virial" => {
                virial_raw = Some(value.ok_or_else(|| needs_value("\"9 numbers\""))?)
            }
            _ if key == "stress" => {
                // A stress that is not used (virial given) is kept as info below.
                stress_raw = Some(value.ok_or_else(|| needs_value("\"9 or 6 numbers\""))?)
            }
            _ if key == "config_type" => {
                config_type = Some(value.ok_or_else(|| needs_value("<name>"))?)
            }
            _ => {
                let v = match value {
                    Some(v) => classify(&v),
                    None => InfoValue::Bool(true),
                };
                info.insert(key, v);
            }
        }
    }

    let cell = match &lattice {
        None => None,
        Some(raw) => {
            let v = parse_reals(raw).filter(|v| v.len() == 9).ok_or_else(|| {
                format!(
                    "Lattice=\"{}\" is not 9 numbers; give the three lattice vectors as \
                     Lattice=\"ax ay az bx by bz cx cy cz\" (Å)",
                    truncate_for_message(raw)
                )
            })?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!(
                    "Lattice=\"{raw}\" has a non-finite number; fix the cell"
                ));
            }
            Some([[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]])
        }
    };

    let pbc = match &pbc_raw {
        None => [cell.is_some(); 3],
        Some(raw) => {
            let items: Vec<&str> = value_items(raw).collect();
            let parse = |t: &str| match t {
                "1" => Some(true),
                "0" => Some(false),
                _ => parse_bool_word(t),
            };
            let vals: Option<Vec<bool>> = items.iter().map(|t| parse(t)).collect();
            match vals.as_deref() {
                Some([b]) => [*b; 3],
                Some([a, b, c]) => [*a, *b, *c],
                _ => {
                    return Err(format!(
                        "pbc=\"{}\" is not three logicals; write for example pbc=\"T T F\"",
                        truncate_for_message(raw)
                    ));
                }
            }
        }
    };
    match cell {
        None if pbc.iter().any(|&p| p) => {
            return Err(format!(
                "no Lattice and pbc=\"{}\"; a periodic frame needs Lattice=\"ax ay az bx by bz \
                 cx cy cz\", or set pbc=\"F F F\" for a non-periodic one",
                fmt_pbc(pbc)
            ));
        }
        Some(c) => {
            for (k, name) in ["a", "b", "c"].iter().enumerate() {
                if pbc[k] && c[k].iter().all(|&x| x == 0.0) {
                    return Err(format!(
                        "Lattice vector {name} is zero but pbc=\"{}\" makes it periodic; fix the \
                         Lattice or the pbc",
                        fmt_pbc(pbc)
                    ));
                }
            }
        }
        None => {}
    }

    let props_text = props_raw.unwrap_or_else(|| "species:S:1:pos:R:3".to_string());
    let (props, total_cols) = parse_properties(&props_text, &opts.forces_key)?;

    let energy = match energy_raw {
        None => None,
        Some(raw) => {
            let e = raw.trim().parse::<f64>().map_err(|_| {
                format!(
                    "{}=\"{}\" is not a number; the energy key must hold one number (eV)",
                    opts.energy_key,
                    truncate_for_message(&raw)
                )
            })?;
            if !e.is_finite() {
                return Err(format!(
                    "{}={raw} is not finite; remove this frame or fix its energy",
                    opts.energy_key
                ));
            }
            Some(e)
        }
    };

    let volume = cell.map(|c| {
        Structure {
            cell: Some(c),
            ..Default::default()
        }
        .volume()
        .unwrap_or(0.0)
    });
    let virial =
        match (virial_raw, stress_raw) {
            (Some(raw), stress) => {
                if let Some(s) = stress {
                    info.insert("stress".to_string(), classify(&s));
                }
                let v = parse_reals(&raw).filter(|v| v.len() == 9).ok_or_else(|| {
                    format!(
                        "virial=\"{}\" is not 9 numbers; give the 3x3 virial (eV) as 9 numbers",
                        truncate_for_message(&raw)
                    )
                })?;
                Some(matrix_from_column_major(&v))
            }
            (None, Some(raw)) => {
                let v = parse_reals(&raw).filter(|v| v.len() == 9 || v.len() == 6).ok_or_else(|| {
                format!(
                    "stress=\"{}\" is not 9 or 6 numbers; give the 3x3 stress (eV/Å^3) as 9 \
                     numbers or 6 in Voigt order xx yy zz yz xz xy",
                    truncate_for_message(&raw)
                )
            })?;
                let s = if v.len() == 9 {
                    matrix_from_column_major(&v)
                } else {
                    [[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]]
                };
                let vol = match volume {
                    Some(vol) if vol > 0.0 => vol,
                    _ => {
                        return Err(
                            "stress= needs a Lattice with non-zero volume to be converted to \
                                a virial (virial = -stress * volume); add the Lattice or give \
                                virial= instead"
                                .to_string(),
                        );
                    }
                };
                Some(s.map(|row| row.map(|x| -x * vol)))
            }
            (None, None) => None,
        };
    if let Some(v) = &virial
        && v.iter().flatten().any(|x| !x.is_finite())
    {
        return Err(
            "virial/stress has a non-finite number; remove this frame or fix it".to_string(),
        );
    }

    // A grouping label: surrounding blanks are never meant, and an empty label is no label.
    let config_type = config_type
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());

    Ok(Header {
        cell,
        pbc,
        props,
        props_text,
        total_cols,
        energy,
        virial,
        config_type,
        info,
    })
}

/// ASE (Fortran) order of 9 numbers: `v[i + 3 j] = M[i][j]`.
fn matrix_from_column_major(v: &[f64]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = v[i + 3 * j];
        }
    }
    m
}

fn parse_properties(text: &str, forces_key: &str) -> Result<(Vec<PropSpec>, usize), String> {
    let fields: Vec<&str> = text.split(':').collect();
    if !fields.len().is_multiple_of(3) {
        return Err(format!(
            "Properties={text} is not a list of name:type:ncols triples; write for example \
             Properties=species:S:1:pos:R:3"
        ));
    }
    let mut props: Vec<PropSpec> = Vec::with_capacity(fields.len() / 3);
    let mut total: usize = 0;
    for t in fields.chunks(3) {
        let (name, ty, ncols) = (t[0], t[1], t[2]);
        if name.is_empty() {
            return Err(format!("Properties={text} has an entry without a name"));
        }
        let ty = match ty {
            "S" => PropType::Str,
            "R" => PropType::Real,
            "I" => PropType::Int,
            "L" => PropType::Bool,
            _ => {
                return Err(format!(
                    "Properties={text}: property '{name}' has type '{ty}'; the types are S \
                     (string), R (real), I (integer) and L (logical)"
                ));
            }
        };
        let ncols: usize = ncols.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
            format!(
                "Properties={text}: property '{name}' has column count '{ncols}'; it must be a \
                 positive integer"
            )
        })?;
        if ty == PropType::Str && ncols != 1 {
            return Err(format!(
                "Properties={text}: string property '{name}' has {ncols} columns; only S:1 is \
                 supported, split it into separate properties"
            ));
        }
        if props.iter().any(|p| p.name == name) {
            return Err(format!(
                "Properties={text} names '{name}' twice; rename one"
            ));
        }
        // Overflow here means the header lies; the atom lines could never match it.
        total = total.checked_add(ncols).ok_or_else(|| {
            format!("Properties={text} declares more columns than any atom line can hold")
        })?;
        props.push(PropSpec {
            name: name.to_string(),
            ty,
            ncols,
            role: Role::Extra(0),
        });
    }

    // Preferred names win whatever their position, so that the writer's names are always
    // the ones picked up again.
    let pick = |names: &[&str]| -> Option<usize> {
        names
            .iter()
            .find_map(|n| props.iter().position(|p| p.name == *n))
    };
    let species = pick(&["species", "symbols"]).ok_or_else(|| {
        format!(
            "Properties={text} has no species (or symbols) column; the first property of an \
             extended XYZ frame is usually species:S:1"
        )
    })?;
    let pos = pick(&["pos", "positions"]).ok_or_else(|| {
        format!("Properties={text} has no pos (or positions) column; add pos:R:3")
    })?;
    let forces = props.iter().position(|p| p.name == forces_key);
    let expect = |idx: usize, ty: PropType, ncols: usize| -> Result<(), String> {
        let p = &props[idx];
        if p.ty != ty || p.ncols != ncols {
            return Err(format!(
                "Properties={text}: '{}' is {}:{} but must be {}:{}",
                p.name,
                p.ty.letter(),
                p.ncols,
                ty.letter(),
                ncols
            ));
        }
        Ok(())
    };
    expect(species, PropType::Str, 1)?;
    expect(pos, PropType::Real, 3)?;
    if let Some(f) = forces {
        expect(f, PropType::Real, 3)?;
    }
    let mut extra = 0;
    for (k, p) in props.iter_mut().enumerate() {
        p.role = if k == species {
            Role::Species
        } else if k == pos {
            Role::Positions
        } else if Some(k) == forces {
            Role::Forces
        } else {
            extra += 1;
            Role::Extra(extra - 1)
        };
    }
    Ok((props, total))
}

/// Accumulates the atom lines of one frame.
pub(super) struct FrameBuilder {
    symbols: Vec<String>,
    /// The last species token as written, as read (`canonical_symbol`) and its atomic number,
    /// so that a run of atoms of one species looks the symbol up once.
    last_species: Option<(String, String, Option<u32>)>,
    /// The extras' index of an atomic-number column (`Z` or `numbers`, one integer), if any.
    z_extra: Option<usize>,
    positions: Vec<[f64; 3]>,
    forces: Option<Vec<[f64; 3]>>,
    extras: Vec<PropData>,
}

impl FrameBuilder {
    pub(super) fn new(h: &Header, natoms: u64) -> Self {
        // Never trust the count for allocation beyond a modest amount; vectors grow as lines
        // actually arrive.
        let cap = natoms.min(4096) as usize;
        let extras = h
            .props
            .iter()
            .filter(|p| matches!(p.role, Role::Extra(_)))
            .map(|p| match p.ty {
                PropType::Str => PropData::Str(Vec::new()),
                PropType::Real => PropData::Real {
                    ncols: p.ncols,
                    data: Vec::new(),
                },
                PropType::Int => PropData::Int {
                    ncols: p.ncols,
                    data: Vec::new(),
                },
                PropType::Bool => PropData::Bool {
                    ncols: p.ncols,
                    data: Vec::new(),
                },
            })
            .collect();
        let z_extra = h
            .props
            .iter()
            .filter(|p| matches!(p.role, Role::Extra(_)))
            .position(|p| {
                (p.name == "Z" || p.name == "numbers") && p.ty == PropType::Int && p.ncols == 1
            });
        FrameBuilder {
            symbols: Vec::with_capacity(cap),
            last_species: None,
            z_extra,
            positions: Vec::with_capacity(cap),
            forces: h
                .props
                .iter()
                .any(|p| p.role == Role::Forces)
                .then(|| Vec::with_capacity(cap)),
            extras,
        }
    }

    /// Parse one atom line; `atom` is the 1-based index in the frame.
    pub(super) fn push_atom(&mut self, line: &str, atom: u64, h: &Header) -> Result<(), String> {
        let ncols = line.split_ascii_whitespace().count();
        if ncols != h.total_cols {
            return Err(format!(
                "atom line has {ncols} columns, Properties says {} ({}); check the Properties \
                 key and the atom count of this frame",
                h.total_cols, h.props_text
            ));
        }
        let mut tokens = line.split_ascii_whitespace();
        let mut col = 0usize;
        for p in &h.props {
            // Column count was checked above, so the tokens are there.
            let mut next = || {
                col += 1;
                (col, tokens.next().unwrap_or(""))
            };
            let bad = |col: usize, tok: &str, k: usize| {
                let which = if p.ncols > 1 {
                    format!("'{}' component {} of {}", p.name, k + 1, p.ncols)
                } else {
                    format!("'{}'", p.name)
                };
                format!(
                    "atom {atom}: column {col} ({which}) is '{}', not {}",
                    truncate_for_message(tok),
                    p.ty.describe()
                )
            };
            let real =
                |col: usize, tok: &str, k: usize| tok.parse::<f64>().map_err(|_| bad(col, tok, k));
            match p.role {
                Role::Species => {
                    let (_, tok) = next();
                    let read = match &self.last_species {
                        Some((raw, read, _)) if raw == tok => read.clone(),
                        _ => {
                            let read = crate::elements::canonical_symbol(tok).into_owned();
                            let z = crate::elements::atomic_number(&read);
                            self.last_species = Some((tok.to_string(), read.clone(), z));
                            read
                        }
                    };
                    self.symbols.push(read);
                }
                Role::Positions | Role::Forces => {
                    let mut v = [0.0; 3];
                    for (k, x) in v.iter_mut().enumerate() {
                        let (c, tok) = next();
                        *x = real(c, tok, k)?;
                    }
                    if v.iter().any(|x| !x.is_finite()) {
                        let what = if p.role == Role::Positions {
                            "position"
                        } else {
                            "force"
                        };
                        return Err(format!(
                            "atom {atom} has a non-finite {what} ({} {} {}); remove this frame \
                             or fix the atom",
                            v[0], v[1], v[2]
                        ));
                    }
                    if p.role == Role::Positions {
                        self.positions.push(v);
                    } else if let Some(f) = &mut self.forces {
                        f.push(v);
                    }
                }
                Role::Extra(i) => match &mut self.extras[i] {
                    PropData::Str(v) => {
                        let (_, tok) = next();
                        v.push(tok.to_string());
                    }
                    PropData::Real { data, .. } => {
                        for k in 0..p.ncols {
                            let (c, tok) = next();
                            data.push(real(c, tok, k)?);
                        }
                    }
                    PropData::Int { data, .. } => {
                        for k in 0..p.ncols {
                            let (c, tok) = next();
                            data.push(tok.parse::<i64>().map_err(|_| bad(c, tok, k))?);
                        }
                    }
                    PropData::Bool { data, .. } => {
                        for k in 0..p.ncols {
                            let (c, tok) = next();
                            let b = match tok {
                                "T" | "True" => true,
                                "F" | "False" => false,
                                _ => return Err(bad(c, tok, k)),
                            };
                            data.push(b);
                        }
                    }
                },
            }
        }
        self.check_atomic_number(atom, h)
    }

    /// An atomic-number column (`Z`, or ASE's `numbers`) that names another element than the
    /// atom's species: refused (which of the two is right is the user's to say; ASE takes Z,
    /// this reader the species).
    fn check_atomic_number(&self, atom: u64, h: &Header) -> Result<(), String> {
        let Some(k) = self.z_extra else {
            return Ok(());
        };
        let PropData::Int { data, .. } = &self.extras[k] else {
            return Ok(());
        };
        // The last atom's species as written, as read and its number (no element: not compared).
        let (Some(&z), Some((raw, symbol, Some(from_species)))) = (data.last(), &self.last_species)
        else {
            return Ok(());
        };
        if z != i64::from(*from_species) {
            let name = h
                .props
                .iter()
                .filter(|p| matches!(p.role, Role::Extra(_)))
                .nth(k)
                .map_or("Z", |p| p.name.as_str());
            let written = if raw != symbol {
                format!(" (written '{raw}')")
            } else {
                String::new()
            };
            let named = u32::try_from(z)
                .ok()
                .and_then(crate::elements::element)
                .map(|e| format!(" ({})", e.0.to_string_lossy()))
                .unwrap_or_default();
            return Err(format!(
                "atom {atom}: species {symbol}{written} but {name} {z}{named}; the two columns \
                 disagree: correct one of them (this reader takes the species)"
            ));
        }
        Ok(())
    }

    pub(super) fn finish(self, h: Header, origin: Origin) -> Structure {
        let arrays = h
            .props
            .iter()
            .filter(|p| matches!(p.role, Role::Extra(_)))
            .map(|p| p.name.clone())
            .zip(self.extras)
            .collect();
        Structure {
            cell: h.cell,
            pbc: h.pbc,
            positions: self.positions,
            symbols: self.symbols,
            energy: h.energy,
            forces: self.forces,
            virial: h.virial,
            config_type: h.config_type,
            info: h.info,
            arrays,
            origin,
        }
    }
}
