//! Active-set inverse files (`.asi`) of pacemaker and ML-PACE's `pair_style pace/extrapolation`:
//! a numpy `.npz` archive (a zip of `.npy` arrays) holding, per element, the square matrix
//! `M` (the inverse of the active set's projection matrix), stored under the element's name
//! (`Cu.npy`). pacemaker writes it with `np.savez` (entries stored, not compressed).
//!
//! The extrapolation grade of an atom with projection vector `x` (see
//! [`super::bbasis::BBasisPotential::atom_projections`]) is `γ = max_i |Σ_k x_k M[k][i]|`, summed
//! over `k` in ascending order as ML-PACE does ([`gamma`]).
//!
//! What is read: stored entries only (ML-PACE's reader skips compressed entries, so
//! `np.savez_compressed` archives do not work there either, and no deflate implementation is a
//! dependency of aceuq: they are refused with a message saying so); zip64 records; `.npy` format
//! versions 1, 2 and 3; dtype `<f8`; C and Fortran order (read with numpy's meaning: a
//! Fortran-order file holds the same matrix as numpy shows it; ML-PACE's reader ignores the flag
//! and would use the transpose, but pacemaker never writes Fortran order). The CRC-32 of every
//! entry is checked. Errors name the file, the element and what is wrong.
//!
//! Whether the grade is linear (the projections `B_k` themselves, matrix size = number of basis
//! functions) or non-linear (`dF/dρ_p · B_k`, size = functions × densities) follows from the
//! matrix sizes, as in ML-PACE's `load_active_set`; it must be the same for every element.

use super::PaceError;
use std::path::Path;

/// One element's square matrix, row-major as numpy shows it: `data[k * n + i] = M[k][i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AsiMatrix {
    pub n: usize,
    pub data: Vec<f64>,
}

/// The active-set inverses of a potential, one per element, in the potential's element order.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveSet {
    pub elements: Vec<String>,
    /// Linear grade (projections `B_k`) rather than the non-linear `dF/dρ_p · B_k`.
    pub linear: bool,
    pub matrices: Vec<AsiMatrix>,
}

/// One array of an `.npz` archive.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Entry name without the `.npy` suffix.
    pub name: String,
    pub shape: Vec<usize>,
    /// The values in C order (a Fortran-order file is reordered on reading).
    pub data: Vec<f64>,
}

/// The extrapolation grade `max_i |Σ_k x_k M[k][i]|` exactly as ML-PACE computes it (the same
/// terms summed in the same order; a NaN sum is skipped by its `>` comparison, as there).
pub fn gamma(m: &AsiMatrix, x: &[f64]) -> f64 {
    let n = m.n;
    assert_eq!(x.len(), n, "projection vector length");
    // Row by row: acc[i] receives x_k M[k][i] for k = 0, 1, ... as in ML-PACE's column loop.
    let mut acc = vec![0.0f64; n];
    for (k, &xk) in x.iter().enumerate() {
        let row = &m.data[k * n..(k + 1) * n];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += xk * v;
        }
    }
    let mut g = 0.0f64;
    for a in acc {
        if a.abs() > g {
            g = a.abs();
        }
    }
    g
}

/// Read an `.asi` file for a potential with `elements` (in its order); `sizes[s]` is the
/// (linear, non-linear) projection count of element `s`.
pub fn read_asi(
    path: &Path,
    elements: &[String],
    sizes: &[(usize, usize)],
) -> Result<ActiveSet, PaceError> {
    let name = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| PaceError::Io(format!("{name}: cannot read: {e}")))?;
    parse_asi(&name, &bytes, elements, sizes)
}

/// [`read_asi`] from the bytes of the file (`file` names it in errors).
pub fn parse_asi(
    file: &str,
    bytes: &[u8],
    elements: &[String],
    sizes: &[(usize, usize)],
) -> Result<ActiveSet, PaceError> {
    assert_eq!(elements.len(), sizes.len(), "one size pair per element");
    let err = |m: String| PaceError::Data(format!("{file}: {m}"));
    let arrays = read_npz(file, bytes)?;
    if arrays.len() != elements.len() {
        return Err(err(format!(
            "{} arrays ({}) for a potential with {} elements ({}): there must be one per element",
            arrays.len(),
            arrays
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            elements.len(),
            elements.join(", ")
        )));
    }
    let mut slots: Vec<Option<NpyArray>> = vec![None; elements.len()];
    let mut linear: Option<bool> = None;
    for a in arrays {
        let Some(s) = elements.iter().position(|e| *e == a.name) else {
            return Err(err(format!(
                "array '{}' is not an element of the potential ({})",
                a.name,
                elements.join(", ")
            )));
        };
        let el = &a.name;
        if a.shape.len() != 2 || a.shape[0] != a.shape[1] {
            return Err(err(format!(
                "element {el}: the matrix has shape {:?}; it must be square",
                a.shape
            )));
        }
        let n = a.shape[0];
        let (lin, nonlin) = sizes[s];
        let this = if n == lin {
            true
        } else if n == nonlin {
            false
        } else {
            return Err(err(format!(
                "element {el}: a {n} x {n} matrix where the potential has {lin} projections \
                 (linear grade) or {nonlin} (non-linear grade, functions x densities)"
            )));
        };
        if let Some(prev) = linear
            && prev != this
        {
            return Err(err(format!(
                "element {el}: the matrix size says {} grade where another element's says {}; \
                 the grade must be of one kind for all elements",
                if this { "linear" } else { "non-linear" },
                if prev { "linear" } else { "non-linear" }
            )));
        }
        linear = Some(this);
        if let Some(k) = a.data.iter().position(|v| !v.is_finite()) {
            return Err(err(format!(
                "element {el}: entry [{}, {}] is {} (not a finite number)",
                k / n.max(1),
                k % n.max(1),
                a.data[k]
            )));
        }
        slots[s] = Some(a);
    }
    let matrices = slots
        .into_iter()
        .map(|a| {
            let a = a.expect("every element has its array (count and names checked)");
            AsiMatrix {
                n: a.shape[0],
                data: a.data,
            }
        })
        .collect();
    Ok(ActiveSet {
        elements: elements.to_vec(),
        linear: linear.unwrap_or(true),
        matrices,
    })
}

/// Write an `.asi` file: one `<element>.npy` per matrix (`.npy` format 1.0, `<f8`, C order),
/// stored in a zip archive with CRC-32, readable by numpy (`np.load`) and by ML-PACE.
pub fn write_asi(
    path: &Path,
    elements: &[String],
    matrices: &[AsiMatrix],
) -> Result<(), PaceError> {
    let name = path.display().to_string();
    let bytes = asi_bytes(elements, matrices).map_err(|e| match e {
        PaceError::Data(m) => PaceError::Data(format!("{name}: {m}")),
        other => other,
    })?;
    std::fs::write(path, bytes).map_err(|e| PaceError::Io(format!("{name}: cannot write: {e}")))
}

/// The bytes of an `.asi` file (see [`write_asi`]).
pub fn asi_bytes(elements: &[String], matrices: &[AsiMatrix]) -> Result<Vec<u8>, PaceError> {
    if elements.len() != matrices.len() {
        return Err(PaceError::Data(format!(
            "{} elements but {} matrices",
            elements.len(),
            matrices.len()
        )));
    }
    let mut entries = Vec::with_capacity(elements.len());
    for (el, m) in elements.iter().zip(matrices) {
        if m.data.len() != m.n * m.n {
            return Err(PaceError::Data(format!(
                "element {el}: {} values for a {} x {} matrix",
                m.data.len(),
                m.n,
                m.n
            )));
        }
        if el.is_empty() || elements.iter().filter(|e| *e == el).count() > 1 {
            return Err(PaceError::Data(format!(
                "element name '{el}' is empty or repeated"
            )));
        }
        entries.push((format!("{el}.npy"), npy_bytes(&[m.n, m.n], &m.data)));
    }
    zip_stored(&entries)
}

// ---------------------------------------------------------------------------------------------
// .npy

/// A `.npy` file (format 1.0, `<f8`, C order) of `data` with `shape`.
pub(super) fn npy_bytes(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64.
    let total = 10 + header.len() + 1;
    header.extend(std::iter::repeat_n(' ', total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 8 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A value of the `.npy` header dictionary.
#[derive(Debug, PartialEq)]
enum PyVal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parse the header dictionary `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 3), }`.
fn parse_header_dict(h: &str) -> Result<Vec<(String, PyVal)>, String> {
    let b = h.as_bytes();
    let mut p = 0;
    let ws = |p: &mut usize| {
        while *p < b.len() && b[*p].is_ascii_whitespace() {
            *p += 1;
        }
    };
    let string = |p: &mut usize| -> Result<String, String> {
        let q = b[*p];
        let start = *p + 1;
        let Some(len) = b[start..].iter().position(|&c| c == q) else {
            return Err("unterminated string".into());
        };
        *p = start + len + 1;
        Ok(h[start..start + len].to_string())
    };
    ws(&mut p);
    if b.get(p) != Some(&b'{') {
        return Err("the header is not a dictionary '{...}'".into());
    }
    p += 1;
    let mut out = vec![];
    loop {
        ws(&mut p);
        match b.get(p) {
            Some(b'}') => {
                p += 1;
                break;
            }
            Some(b'\'' | b'"') => {}
            _ => return Err("expected a quoted key or '}'".into()),
        }
        let key = string(&mut p)?;
        ws(&mut p);
        if b.get(p) != Some(&b':') {
            return Err(format!("expected ':' after '{key}'"));
        }
        p += 1;
        ws(&mut p);
        let val = match b.get(p) {
            Some(b'\'' | b'"') => PyVal::Str(string(&mut p)?),
            Some(b'(') => {
                p += 1;
                let mut dims = vec![];
                loop {
                    ws(&mut p);
                    match b.get(p) {
                        Some(b')') => {
                            p += 1;
                            break;
                        }
                        Some(c) if c.is_ascii_digit() => {
                            let s = p;
                            while p < b.len() && b[p].is_ascii_digit() {
                                p += 1;
                            }
                            let d = h[s..p]
                                .parse::<usize>()
                                .map_err(|_| format!("shape entry '{}' is too large", &h[s..p]))?;
                            dims.push(d);
                            ws(&mut p);
                            match b.get(p) {
                                Some(b',') => p += 1,
                                Some(b')') => {}
                                _ => return Err("expected ',' or ')' in the shape".into()),
                            }
                        }
                        _ => return Err("the shape is not a tuple of integers".into()),
                    }
                }
                PyVal::Tuple(dims)
            }
            _ if h[p..].starts_with("True") => {
                p += 4;
                PyVal::Bool(true)
            }
            _ if h[p..].starts_with("False") => {
                p += 5;
                PyVal::Bool(false)
            }
            _ => return Err(format!("unsupported value for '{key}'")),
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("key '{key}' given twice"));
        }
        out.push((key, val));
        ws(&mut p);
        match b.get(p) {
            Some(b',') => p += 1,
            Some(b'}') => {}
            _ => return Err("expected ',' or '}' in the dictionary".into()),
        }
    }
    ws(&mut p);
    if p != b.len() {
        return Err("content after the dictionary".into());
    }
    Ok(out)
}

/// Parse one `.npy` file (`what` names it in errors).
fn parse_npy(what: &str, b: &[u8]) -> Result<(Vec<usize>, Vec<f64>), String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(format!("{what} is not a .npy array (no \\x93NUMPY magic)"));
    }
    let (major, minor) = (b[6], b[7]);
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => {
            if b.len() < 12 {
                return Err(format!("{what}: truncated .npy header"));
            }
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        _ => {
            return Err(format!(
                "{what}: .npy format version {major}.{minor} (versions 1, 2 and 3 are read)"
            ));
        }
    };
    let Some(hbytes) = b.get(start..start + hlen) else {
        return Err(format!("{what}: truncated .npy header"));
    };
    let header =
        std::str::from_utf8(hbytes).map_err(|_| format!("{what}: the .npy header is not text"))?;
    let dict = parse_header_dict(header).map_err(|m| format!("{what}: .npy header: {m}"))?;
    let get = |k: &str| dict.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    match get("descr") {
        Some(PyVal::Str(d)) if d == "<f8" => {}
        Some(PyVal::Str(d)) => {
            return Err(format!(
                "{what}: dtype '{d}'; the active-set inverse must be float64 '<f8'"
            ));
        }
        _ => return Err(format!("{what}: .npy header without a 'descr' string")),
    }
    let fortran = match get("fortran_order") {
        Some(PyVal::Bool(f)) => *f,
        _ => {
            return Err(format!(
                "{what}: .npy header without 'fortran_order' True/False"
            ));
        }
    };
    let shape = match get("shape") {
        Some(PyVal::Tuple(s)) => s.clone(),
        _ => return Err(format!("{what}: .npy header without a 'shape' tuple")),
    };
    let body = &b[start + hlen..];
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|c| c.checked_mul(8).is_some())
        .ok_or_else(|| format!("{what}: shape {shape:?} is too large"))?;
    if body.len() != 8 * count {
        return Err(format!(
            "{what}: {} data bytes where shape {shape:?} of float64 needs {}",
            body.len(),
            8 * count
        ));
    }
    let raw: Vec<f64> = body
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let data = if fortran && shape.len() > 1 {
        // Fortran order: the first index varies fastest. Reorder to C order.
        let nd = shape.len();
        let mut out = vec![0.0; count];
        let mut idx = vec![0usize; nd];
        for v in raw {
            let mut c = 0;
            for (d, &i) in idx.iter().enumerate() {
                c = c * shape[d] + i;
            }
            out[c] = v;
            for d in 0..nd {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    } else {
        raw
    };
    Ok((shape, data))
}

// ---------------------------------------------------------------------------------------------
// zip

fn u16_at(b: &[u8], p: usize) -> Option<u64> {
    b.get(p..p + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]) as u64)
}

fn u32_at(b: &[u8], p: usize) -> Option<u64> {
    b.get(p..p + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
}

fn u64_at(b: &[u8], p: usize) -> Option<u64> {
    b.get(p..p + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// The arrays of an `.npz` archive, in the order of its central directory.
pub fn read_npz(file: &str, b: &[u8]) -> Result<Vec<NpyArray>, PaceError> {
    let err = |m: String| PaceError::Data(format!("{file}: {m}"));
    let not_zip = || {
        err(
            "not an .npz archive (no zip end-of-central-directory record): an .asi file is \
             written by numpy's np.savez"
                .into(),
        )
    };
    // End of central directory: 22 bytes plus a comment of up to 65535.
    if b.len() < 22 {
        return Err(not_zip());
    }
    let lo = b.len().saturating_sub(22 + 65535);
    let eocd = (lo..=b.len() - 22)
        .rev()
        .find(|&p| b[p..p + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(not_zip)?;
    let trunc = || err("truncated zip archive".into());
    let mut count = u16_at(b, eocd + 10).ok_or_else(trunc)?;
    let mut cd_size = u32_at(b, eocd + 12).ok_or_else(trunc)?;
    let mut cd_off = u32_at(b, eocd + 16).ok_or_else(trunc)?;
    if (count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_off == 0xFFFF_FFFF) && eocd >= 20 {
        // zip64: the locator sits right before the end record.
        let loc = eocd - 20;
        if b[loc..loc + 4] == [0x50, 0x4b, 0x06, 0x07] {
            let rec = u64_at(b, loc + 8).ok_or_else(trunc)? as usize;
            if b.get(rec..rec + 4) != Some(&[0x50, 0x4b, 0x06, 0x06]) {
                return Err(err("broken zip64 end-of-central-directory record".into()));
            }
            count = u64_at(b, rec + 32).ok_or_else(trunc)?;
            cd_size = u64_at(b, rec + 40).ok_or_else(trunc)?;
            cd_off = u64_at(b, rec + 48).ok_or_else(trunc)?;
        }
    }
    let cd_end = cd_off.checked_add(cd_size).filter(|&e| e <= b.len() as u64);
    if cd_end.is_none() {
        return Err(err(
            "the zip central directory lies outside the file (truncated?)".into(),
        ));
    }
    // Each central directory entry takes at least 46 bytes.
    if count > cd_size / 46 + 1 {
        return Err(err(format!(
            "{count} zip entries announced in a {cd_size}-byte directory"
        )));
    }
    let mut p = cd_off as usize;
    let mut out: Vec<NpyArray> = vec![];
    for e in 0..count {
        if b.get(p..p + 4) != Some(&[0x50, 0x4b, 0x01, 0x02]) {
            return Err(err(format!("zip central directory entry {e} is broken")));
        }
        let flags = u16_at(b, p + 8).ok_or_else(trunc)?;
        let method = u16_at(b, p + 10).ok_or_else(trunc)?;
        let crc = u32_at(b, p + 16).ok_or_else(trunc)? as u32;
        let mut csize = u32_at(b, p + 20).ok_or_else(trunc)?;
        let mut usize_ = u32_at(b, p + 24).ok_or_else(trunc)?;
        let nlen = u16_at(b, p + 28).ok_or_else(trunc)? as usize;
        let xlen = u16_at(b, p + 30).ok_or_else(trunc)? as usize;
        let clen = u16_at(b, p + 32).ok_or_else(trunc)? as usize;
        let mut off = u32_at(b, p + 42).ok_or_else(trunc)?;
        let name_bytes = b.get(p + 46..p + 46 + nlen).ok_or_else(trunc)?;
        let entry = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = b
            .get(p + 46 + nlen..p + 46 + nlen + xlen)
            .ok_or_else(trunc)?;
        // zip64 extended information: the 64-bit values of the fields set to all ones.
        let mut q = 0;
        while q + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[q], extra[q + 1]]);
            let len = u16::from_le_bytes([extra[q + 2], extra[q + 3]]) as usize;
            let body = extra.get(q + 4..q + 4 + len).unwrap_or(&[]);
            if id == 1 {
                let mut r = 0;
                for field in [&mut usize_, &mut csize, &mut off] {
                    if *field == 0xFFFF_FFFF {
                        let Some(v) = u64_at(body, r) else { break };
                        *field = v;
                        r += 8;
                    }
                }
            }
            q += 4 + len;
        }
        p += 46 + nlen + xlen + clen;
        let what = format!("entry '{entry}'");
        if flags & 1 != 0 {
            return Err(err(format!("{what} is encrypted")));
        }
        match method {
            0 => {}
            8 => {
                return Err(err(format!(
                    "{what} is deflate-compressed (np.savez_compressed): neither ML-PACE nor \
                     aceuq reads compressed active sets; save it with np.savez"
                )));
            }
            m => {
                return Err(err(format!(
                    "{what}: zip compression method {m} is not read"
                )));
            }
        }
        if csize != usize_ {
            return Err(err(format!(
                "{what} is stored but its sizes differ ({csize} and {usize_} bytes)"
            )));
        }
        let off = off as usize;
        if b.get(off..off + 4) != Some(&[0x50, 0x4b, 0x03, 0x04]) {
            return Err(err(format!("{what}: no local zip header at its offset")));
        }
        let ln = u16_at(b, off + 26).ok_or_else(trunc)? as usize;
        let lx = u16_at(b, off + 28).ok_or_else(trunc)? as usize;
        let start = off + 30 + ln + lx;
        let data = start
            .checked_add(csize as usize)
            .and_then(|end| b.get(start..end))
            .ok_or_else(|| {
                err(format!(
                    "{what} extends past the end of the file (truncated?)"
                ))
            })?;
        if crc32fast::hash(data) != crc {
            return Err(err(format!(
                "{what}: CRC-32 mismatch (the file is damaged)"
            )));
        }
        let Some(name) = entry.strip_suffix(".npy") else {
            return Err(err(format!("{what} is not a .npy array")));
        };
        let (shape, values) = parse_npy(&what, data).map_err(err)?;
        if out.iter().any(|a| a.name == name) {
            return Err(err(format!("array '{name}' appears twice")));
        }
        out.push(NpyArray {
            name: name.to_string(),
            shape,
            data: values,
        });
    }
    Ok(out)
}

/// A zip archive of `(name, bytes)` entries, stored (not compressed), with CRC-32.
pub(super) fn zip_stored(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, PaceError> {
    // DOS date 1980-01-01, time 00:00: the archive does not depend on when it was written.
    const DATE: u16 = (1 << 5) | 1;
    let mut out = vec![];
    let mut central = vec![];
    let big = |what: &str| PaceError::Data(format!("{what} is too large for a zip archive"));
    for (name, data) in entries {
        let off = u32::try_from(out.len()).map_err(|_| big("the archive"))?;
        let size = u32::try_from(data.len()).map_err(|_| big(name))?;
        let nlen = u16::try_from(name.len()).map_err(|_| big(name))?;
        let crc = crc32fast::hash(data);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed (2.0)
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&DATE.to_le_bytes());
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&nlen.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04]);
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02]);
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_off = u32::try_from(out.len()).map_err(|_| big("the archive"))?;
    let cd_size = u32::try_from(central.len()).map_err(|_| big("the archive"))?;
    let n = u16::try_from(entries.len()).map_err(|_| big("the number of entries"))?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06]);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
pub(super) mod test_support {
    //! Builders of malformed archives for the tests.
    pub fn npy(header: &str, major: u8, data: &[f64]) -> Vec<u8> {
        let mut h = header.to_string();
        let lenb = if major == 1 { 2 } else { 4 };
        let total = 8 + lenb + h.len() + 1;
        h.extend(std::iter::repeat_n(' ', total.next_multiple_of(64) - total));
        h.push('\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.push(major);
        out.push(0);
        if major == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(h.as_bytes());
        for v in data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        super::zip_stored(entries).expect("small archive")
    }
}
