//! Reader and writer of pacemaker's `.yace` format: the C-tilde basis in YAML, as pacemaker's
//! `pace_yaml2yace` and ML-PACE's `ACECTildeBasisSet::save_yaml` write it and
//! `ACECTildeBasisSet::load_yaml` reads it. Unlike `.ace` it holds any number of elements, each
//! with its own embedding, and one radial specification per ordered species pair.
//!
//! Layout (yaml-cpp writes the inner mappings in flow style):
//!
//! ```text
//! elements: [Al, Ni]
//! E0: [0, 0]
//! deltaSplineBins: 0.001
//! embeddings:
//!   0: {ndensity: 1, FS_parameters: [1, 1], npoti: FinnisSinclair, rho_core_cutoff: 100000, drho_core_cutoff: 250}
//! bonds:
//!   [0, 1]: {nradmax: 2, lmax: 1, nradbasemax: 1, radbasename: ChebExpCos, radparameters: [3.2],
//!            radcoefficients: [[[..], [..]], [[..], [..]]], prehc: 550, lambdahc: 10, rcut: 8.7,
//!            dcut: 0.01, rcut_in: 0, dcut_in: 0, inner_cutoff_type: density}
//! functions:
//!   0:
//!     - {mu0: 0, rank: 2, ndensity: 1, num_ms_combs: 2, mus: [0, 1], ns: [1, 2], ls: [1, 1],
//!        ms_combs: [0, 0, 1, -1], ctildes: [-0.0074, 0.0149]}
//! ```
//!
//! Species are 0-based indices into `elements` (keys of `embeddings` and `functions`, `[mu_i,
//! mu_j]` keys of `bonds`, `mu0` and `mus`); radial indices `ns` are 1-based; `ms_combs` holds
//! `num_ms_combs` m-tuples of `rank` values one after the other, `ctildes` `num_ms_combs` groups
//! of `ndensity` coefficients; `radcoefficients[n][l][k]`.
//!
//! What `load_yaml` does, and this reader with it:
//! - sizes are global: `lmax`, `nradmax` and `nradbase` are the largest over the bonds, and a
//!   bond with smaller ones gets zero radial coefficients beyond its own (its base functions
//!   `g_k` are still evaluated up to the global `nradbase`, so rank-1 functions may use them);
//! - `inner_cutoff_type` is one setting of the whole radial-functions object: ML-PACE assigns it
//!   from every bond in turn, so the bond `[n-1, n-1]` (the last one) decides for all pairs;
//! - missing `rcut_in` / `dcut_in` are 0 and a missing `inner_cutoff_type` is `density` (the
//!   default of files written before the inner cutoffs existed);
//! - each species evaluates with its own `ndensity` (the coefficients of its functions are
//!   indexed with it), embedding (`npoti`, `FS_parameters`), core-energy cutoff and `E0`;
//! - ZBL needs the atomic numbers of the element symbols.
//!
//! Where ML-PACE would read past the end of an array or leave values undefined (a missing bond
//! or embedding, a function whose `ndensity` differs from its species', sizes that do not match)
//! this reader refuses the file, naming the key and line. One leniency: a missing `E0` (which
//! ML-PACE requires) is read as zeros, the meaning of an absent `E0:` in `.ace` files.
//! Unknown top-level keys are ignored, as ML-PACE ignores them. ACE.jl (`ACE.jl.*`) radial bases
//! are not supported.
//!
//! The YAML is read by a small parser of the subset these files use: block mappings and
//! sequences, flow sequences `[..]` and mappings `{..}` (nested, over several lines), plain and
//! quoted scalars, comments and document markers. Anchors, aliases, tags, block scalars and
//! complex keys (`? `) are refused with their line.

use super::radial::{Family, InnerCutoff, PairSpec};
use super::{CFunc, Embedding, MAX_DENSITIES, PaceError, PaceModel, SpeciesBasis};
use std::collections::HashSet;
use std::fmt::Write as _;

// ---------------------------------------------------------------------------------------------
// The YAML subset.

#[derive(Debug)]
pub(super) enum Kind {
    /// An empty value (`key:` with nothing below it).
    Null,
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML node and the (1-based) line where it starts.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) line: usize,
    pub(super) kind: Kind,
}

impl Node {
    /// The node as text: scalars as they are, sequences as `[a, b]` (keys of `bonds`).
    pub(super) fn text(&self) -> String {
        match &self.kind {
            Kind::Null => String::new(),
            Kind::Scalar(s) => s.clone(),
            Kind::Seq(v) => format!(
                "[{}]",
                v.iter().map(Node::text).collect::<Vec<_>>().join(", ")
            ),
            Kind::Map(v) => format!(
                "{{{}}}",
                v.iter()
                    .map(|(k, v)| format!("{}: {}", k.text(), v.text()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    pub(super) fn what(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing",
            Kind::Scalar(_) => "a single value",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Deepest nesting of collections accepted (real files need 7).
const MAX_DEPTH: usize = 64;

/// A line with content (blank and comment-only lines are dropped).
struct Line {
    /// Byte offset of the line's first character.
    begin: usize,
    /// Byte offset of the content: after the indentation, or after the `- ` of a sequence item
    /// once the item is being read (the rest of the line is then a line of its own).
    start: usize,
    /// Byte offset after the content (comment and trailing blanks removed).
    end: usize,
    /// Column of `start`.
    indent: usize,
    /// 1-based line number.
    no: usize,
}

/// What the content at the start of a line is.
enum Head {
    /// `key: ...`: the key and the offset after its colon.
    Key(Node, usize),
    /// A flow collection or quoted scalar (already read, ending at the offset).
    Flow(Node, usize),
    /// A plain scalar.
    Plain,
}

/// One segment of the key path named in errors.
enum Seg {
    Key(String),
    Index(usize),
}

struct Yaml<'a> {
    file: &'a str,
    src: &'a str,
    b: &'a [u8],
    /// Byte offset of the start of every physical line.
    starts: Vec<usize>,
    lines: Vec<Line>,
    cur: usize,
    depth: usize,
    path: Vec<Seg>,
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r')
}

fn is_dash(text: &str) -> bool {
    text == "-" || text.starts_with("- ") || text.starts_with("-\t")
}

impl<'a> Yaml<'a> {
    fn new(file: &'a str, src: &'a str) -> Result<Yaml<'a>, PaceError> {
        let b = src.as_bytes();
        let mut starts = vec![0];
        starts.extend(
            b.iter()
                .enumerate()
                .filter(|(_, c)| **c == b'\n')
                .map(|(i, _)| i + 1),
        );
        let mut y = Yaml {
            file,
            src,
            b,
            starts,
            lines: vec![],
            cur: 0,
            depth: 0,
            path: vec![],
        };
        let mut seen_doc = false;
        for no in 1..=y.starts.len() {
            let begin = y.starts[no - 1];
            let stop = y.starts.get(no).map_or(b.len(), |&s| s - 1);
            let mut i = begin;
            while i < stop && b[i] == b' ' {
                i += 1;
            }
            let end = y.content_end(i, stop);
            if end <= i {
                continue;
            }
            let text = &src[i..end];
            // Directives and document markers.
            if i == begin && (text == "---" || text.starts_with("--- ") || text.starts_with('%')) {
                if text.starts_with('%') && (seen_doc || !y.lines.is_empty()) {
                    return Err(y.err(no, "a YAML directive after the document started"));
                }
                if text.starts_with("---") {
                    if seen_doc || !y.lines.is_empty() {
                        return Err(y.err(no, "a second YAML document (only one is read)"));
                    }
                    seen_doc = true;
                    if text.len() > 3 {
                        return Err(y.err(no, "content after '---' on the same line"));
                    }
                }
                continue;
            }
            if i == begin && (text == "..." || text.starts_with("... ")) {
                // End of the document: anything after it must be blank or comments.
                let rest = &src[stop.min(src.len())..];
                if rest.lines().any(|l| {
                    let t = l.trim();
                    !t.is_empty() && !t.starts_with('#')
                }) {
                    return Err(y.err(no, "content after the end of the document ('...')"));
                }
                break;
            }
            y.lines.push(Line {
                begin,
                start: i,
                end,
                indent: i - begin,
                no,
            });
        }
        Ok(y)
    }

    /// End of the content of the line part `[i, stop)`: before a comment (a `#` at the start or
    /// after a blank, outside quotes) and trailing blanks.
    fn content_end(&self, i: usize, stop: usize) -> usize {
        let b = self.b;
        let mut end = stop;
        let mut quote = 0u8;
        let mut k = i;
        while k < stop {
            let c = b[k];
            if quote == b'"' {
                if c == b'\\' {
                    k += 1;
                } else if c == b'"' {
                    quote = 0;
                }
            } else if quote == b'\'' {
                if c == b'\'' {
                    if k + 1 < stop && b[k + 1] == b'\'' {
                        k += 1;
                    } else {
                        quote = 0;
                    }
                }
            } else if c == b'#' && (k == i || is_ws(b[k - 1])) {
                end = k;
                break;
            } else if (c == b'"' || c == b'\'')
                && (k == i || is_ws(b[k - 1]) || matches!(b[k - 1], b'[' | b'{' | b','))
            {
                quote = c;
            }
            k += 1;
        }
        while end > i && is_ws(b[end - 1]) {
            end -= 1;
        }
        end
    }

    fn path_text(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        if s.is_empty() { "YAML".into() } else { s }
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> PaceError {
        PaceError::Format {
            file: self.file.to_string(),
            line,
            key: self.path_text(),
            message: msg.to_string(),
        }
    }

    /// Line of the last non-blank character (where a truncated file ends).
    fn eof_line(&self) -> usize {
        let end = self.b.iter().rposition(|c| !c.is_ascii_whitespace());
        self.line_of(end.unwrap_or(0))
    }

    /// 1-based line of a byte offset.
    fn line_of(&self, off: usize) -> usize {
        self.starts.partition_point(|&s| s <= off).max(1)
    }

    fn enter(&mut self, line: usize) -> Result<(), PaceError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(line, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn unsupported(&self, line: usize, c: u8) -> PaceError {
        let what = match c {
            b'&' => "anchors ('&')",
            b'*' => "aliases ('*')",
            b'!' => "tags ('!')",
            b'|' | b'>' => "block scalars ('|', '>')",
            b'?' => "complex keys ('? ')",
            _ => "values starting with '%', '@' or '`'",
        };
        self.err(
            line,
            format!("YAML {what} are not supported in pacemaker YAML files"),
        )
    }

    /// The whole document.
    fn document(mut self) -> Result<Node, PaceError> {
        if self.lines.is_empty() {
            return Ok(Node {
                line: 1,
                kind: Kind::Null,
            });
        }
        let n = self.block()?;
        if let Some(l) = self.lines.get(self.cur) {
            return Err(self.err(l.no, "unexpected content here (wrong indentation?)"));
        }
        Ok(n)
    }

    /// The block node at the current line.
    fn block(&mut self) -> Result<Node, PaceError> {
        let (s, e, ind, no) = {
            let l = &self.lines[self.cur];
            (l.start, l.end, l.indent, l.no)
        };
        self.enter(no)?;
        let text = &self.src[s..e];
        let r = if text.starts_with('\t') {
            Err(self.err(no, "a tab in the indentation (YAML indents with spaces)"))
        } else if is_dash(text) {
            self.block_seq(ind)
        } else {
            match self.head(s, e)? {
                Head::Key(..) => self.block_map(ind),
                Head::Flow(n, end) => self.finish_flow(n, end),
                Head::Plain => self.plain(s, e, no),
            }
        };
        self.depth -= 1;
        r
    }

    /// What the content `[s, e)` of a line starts with.
    fn head(&mut self, s: usize, e: usize) -> Result<Head, PaceError> {
        let b = self.b;
        let no = self.line_of(s);
        match b[s] {
            b'[' | b'{' | b'"' | b'\'' => {
                let mut p = s;
                let n = self.flow(&mut p)?;
                let mut q = p;
                while q < e && is_ws(b[q]) {
                    q += 1;
                }
                if q < e && b[q] == b':' && (q + 1 == e || is_ws(b[q + 1])) {
                    Ok(Head::Key(n, q + 1))
                } else {
                    Ok(Head::Flow(n, p))
                }
            }
            c @ (b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`') => {
                Err(self.unsupported(no, c))
            }
            b'?' if s + 1 == e || is_ws(b[s + 1]) => Err(self.unsupported(no, b'?')),
            _ => {
                for k in s..e {
                    if b[k] == b':' && (k + 1 == e || is_ws(b[k + 1])) {
                        let key = self.src[s..k].trim_end().to_string();
                        return Ok(Head::Key(
                            Node {
                                line: no,
                                kind: Kind::Scalar(key),
                            },
                            k + 1,
                        ));
                    }
                }
                Ok(Head::Plain)
            }
        }
    }

    /// A flow node read up to `end`: the rest of its last line must be empty.
    fn finish_flow(&mut self, n: Node, end: usize) -> Result<Node, PaceError> {
        let idx = self.lines.partition_point(|l| l.begin <= end).max(1) - 1;
        let l = &self.lines[idx];
        if end < l.end && !self.src[end..l.end].trim().is_empty() {
            let no = l.no;
            return Err(self.err(
                no,
                format!(
                    "unexpected '{}' after the value",
                    self.src[end..l.end].trim()
                ),
            ));
        }
        self.cur = idx.max(self.cur) + 1;
        Ok(n)
    }

    /// A plain scalar filling the rest `[s, e)` of the line.
    fn plain(&mut self, s: usize, e: usize, no: usize) -> Result<Node, PaceError> {
        let text = self.src[s..e].trim();
        if let Some(c) = text.bytes().next()
            && matches!(c, b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`')
        {
            return Err(self.unsupported(no, c));
        }
        if text.contains(": ") || text.contains(":\t") {
            return Err(self.err(
                no,
                format!("'{text}': a 'key: value' inside a value (put it on a line of its own)"),
            ));
        }
        self.cur += 1;
        Ok(Node {
            line: no,
            kind: Kind::Scalar(text.to_string()),
        })
    }

    /// A value on the same line after `key: ` (a flow node or a plain scalar).
    fn inline(&mut self, s: usize, e: usize, no: usize) -> Result<Node, PaceError> {
        match self.b[s] {
            b'[' | b'{' | b'"' | b'\'' => {
                let mut p = s;
                let n = self.flow(&mut p)?;
                self.finish_flow(n, p)
            }
            b'-' if is_dash(&self.src[s..e]) => Err(self.err(
                no,
                "a list item on the line of its key (start the list on the next line)",
            )),
            _ => self.plain(s, e, no),
        }
    }

    fn block_map(&mut self, ind: usize) -> Result<Node, PaceError> {
        let line0 = self.lines[self.cur].no;
        let mut entries: Vec<(Node, Node)> = vec![];
        let mut seen = HashSet::new();
        while let Some(l) = self.lines.get(self.cur) {
            let (s, e, no) = (l.start, l.end, l.no);
            if self.b[s] == b'\t' {
                return Err(self.err(no, "a tab in the indentation (YAML indents with spaces)"));
            }
            if l.indent < ind {
                break;
            }
            if l.indent > ind {
                return Err(self.err(no, "unexpected indentation"));
            }
            if is_dash(&self.src[s..e]) {
                return Err(self.err(no, "a list item among 'key: value' entries"));
            }
            let Head::Key(key, after) = self.head(s, e)? else {
                return Err(self.err(
                    no,
                    format!("expected 'key: value', found '{}'", &self.src[s..e]),
                ));
            };
            let name = key.text();
            let fresh = seen.insert(name.clone());
            self.path.push(Seg::Key(name));
            if !fresh {
                return Err(self.err(no, "duplicate key"));
            }
            let mut r = after;
            while r < e && is_ws(self.b[r]) {
                r += 1;
            }
            let value = if r >= e {
                self.cur += 1;
                let mut v = match self.lines.get(self.cur) {
                    Some(n) if n.indent > ind => self.block()?,
                    // A block sequence may sit at the indentation of its key.
                    Some(n) if n.indent == ind && is_dash(&self.src[n.start..n.end]) => {
                        self.block()?
                    }
                    _ => Node {
                        line: no,
                        kind: Kind::Null,
                    },
                };
                // A collection below its key is reported at the key's line.
                v.line = no;
                v
            } else {
                self.inline(r, e, no)?
            };
            self.path.pop();
            entries.push((key, value));
        }
        Ok(Node {
            line: line0,
            kind: Kind::Map(entries),
        })
    }

    fn block_seq(&mut self, ind: usize) -> Result<Node, PaceError> {
        let line0 = self.lines[self.cur].no;
        let mut items = vec![];
        while let Some(l) = self.lines.get(self.cur) {
            let (s, e, no) = (l.start, l.end, l.no);
            if self.b[s] == b'\t' {
                return Err(self.err(no, "a tab in the indentation (YAML indents with spaces)"));
            }
            if l.indent < ind {
                break;
            }
            if l.indent > ind {
                return Err(self.err(no, "unexpected indentation"));
            }
            if !is_dash(&self.src[s..e]) {
                break;
            }
            self.path.push(Seg::Index(items.len()));
            let mut p = s + 1;
            while p < e && is_ws(self.b[p]) {
                p += 1;
            }
            let item = if p >= e {
                self.cur += 1;
                match self.lines.get(self.cur) {
                    Some(n) if n.indent > ind => self.block()?,
                    _ => Node {
                        line: no,
                        kind: Kind::Null,
                    },
                }
            } else {
                // The rest of the line is a node of its own, indented to where it starts.
                let l = &mut self.lines[self.cur];
                l.indent += p - l.start;
                l.start = p;
                self.block()?
            };
            self.path.pop();
            items.push(item);
        }
        Ok(Node {
            line: line0,
            kind: Kind::Seq(items),
        })
    }

    /// Skip blanks, line breaks and comments inside a flow collection.
    fn skip_flow_ws(&self, p: &mut usize) {
        let b = self.b;
        while *p < b.len() {
            match b[*p] {
                b' ' | b'\t' | b'\r' | b'\n' => *p += 1,
                b'#' if *p == 0 || matches!(b[*p - 1], b' ' | b'\t' | b'\r' | b'\n') => {
                    while *p < b.len() && b[*p] != b'\n' {
                        *p += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// A flow node (collection or scalar) starting at `*p`; `*p` ends after it.
    fn flow(&mut self, p: &mut usize) -> Result<Node, PaceError> {
        self.skip_flow_ws(p);
        if *p >= self.b.len() {
            return Err(self.err(self.eof_line(), "the file ends where a value is expected"));
        }
        let line = self.line_of(*p);
        self.enter(line)?;
        let r = self.flow_inner(p, line);
        self.depth -= 1;
        r
    }

    fn flow_inner(&mut self, p: &mut usize, line: usize) -> Result<Node, PaceError> {
        let b = self.b;
        let eof = |y: &Self, open: char| {
            y.err(
                y.eof_line(),
                format!("the file ends inside the '{open}' opened on line {line}"),
            )
        };
        match b[*p] {
            b'[' => {
                *p += 1;
                let mut items = vec![];
                loop {
                    self.skip_flow_ws(p);
                    if *p >= b.len() {
                        return Err(eof(self, '['));
                    }
                    if b[*p] == b']' {
                        *p += 1;
                        break;
                    }
                    items.push(self.flow(p)?);
                    self.skip_flow_ws(p);
                    match b.get(*p) {
                        None => return Err(eof(self, '[')),
                        Some(b',') => *p += 1,
                        Some(b']') => {
                            *p += 1;
                            break;
                        }
                        Some(b':') => {
                            return Err(self.err(
                                self.line_of(*p),
                                "'key: value' pairs inside a '[...]' list are not supported",
                            ));
                        }
                        Some(_) => {
                            return Err(self.err(
                                self.line_of(*p),
                                format!("expected ',' or ']' in the list opened on line {line}"),
                            ));
                        }
                    }
                }
                Ok(Node {
                    line,
                    kind: Kind::Seq(items),
                })
            }
            b'{' => {
                *p += 1;
                let mut entries: Vec<(Node, Node)> = vec![];
                let mut seen = HashSet::new();
                loop {
                    self.skip_flow_ws(p);
                    if *p >= b.len() {
                        return Err(eof(self, '{'));
                    }
                    if b[*p] == b'}' {
                        *p += 1;
                        break;
                    }
                    let key = self.flow(p)?;
                    let name = key.text();
                    let kline = key.line;
                    self.skip_flow_ws(p);
                    if b.get(*p) != Some(&b':') {
                        self.path.push(Seg::Key(name));
                        let e = self.err(kline, "expected ':' after the key");
                        return Err(e);
                    }
                    *p += 1;
                    let fresh = seen.insert(name.clone());
                    self.path.push(Seg::Key(name));
                    if !fresh {
                        return Err(self.err(kline, "duplicate key"));
                    }
                    self.skip_flow_ws(p);
                    let value = match b.get(*p) {
                        None => return Err(eof(self, '{')),
                        Some(b',' | b'}') => Node {
                            line: self.line_of(*p),
                            kind: Kind::Null,
                        },
                        Some(_) => self.flow(p)?,
                    };
                    self.path.pop();
                    entries.push((key, value));
                    self.skip_flow_ws(p);
                    match b.get(*p) {
                        None => return Err(eof(self, '{')),
                        Some(b',') => *p += 1,
                        Some(b'}') => {
                            *p += 1;
                            break;
                        }
                        Some(_) => {
                            return Err(self.err(
                                self.line_of(*p),
                                format!(
                                    "expected ',' or '}}' in the mapping opened on line {line}"
                                ),
                            ));
                        }
                    }
                }
                Ok(Node {
                    line,
                    kind: Kind::Map(entries),
                })
            }
            b'"' => self.double_quoted(p, line),
            b'\'' => self.single_quoted(p, line),
            c @ (b']' | b'}' | b',' | b':') => Err(self.err(
                line,
                format!("unexpected '{}' where a value is expected", c as char),
            )),
            c @ (b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`') => {
                Err(self.unsupported(line, c))
            }
            _ => {
                let s = *p;
                while *p < b.len() {
                    let c = b[*p];
                    let next = b.get(*p + 1).copied();
                    let stop = matches!(c, b',' | b'[' | b']' | b'{' | b'}' | b'\n')
                        || (c == b':'
                            && next.is_none_or(|n| {
                                matches!(n, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}')
                            }))
                        || (c == b'#' && *p > s && is_ws(b[*p - 1]));
                    if stop {
                        break;
                    }
                    *p += 1;
                }
                Ok(Node {
                    line,
                    kind: Kind::Scalar(self.src[s..*p].trim().to_string()),
                })
            }
        }
    }

    fn double_quoted(&mut self, p: &mut usize, line: usize) -> Result<Node, PaceError> {
        let b = self.b;
        *p += 1;
        let mut out: Vec<u8> = vec![];
        loop {
            let Some(&c) = b.get(*p) else {
                return Err(self.err(
                    self.eof_line(),
                    format!("the file ends inside the string opened on line {line}"),
                ));
            };
            *p += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = b.get(*p) else { continue };
                    *p += 1;
                    let simple = match e {
                        b'0' => Some('\0'),
                        b'a' => Some('\x07'),
                        b'b' => Some('\x08'),
                        b't' | b'\t' => Some('\t'),
                        b'n' => Some('\n'),
                        b'v' => Some('\x0b'),
                        b'f' => Some('\x0c'),
                        b'r' => Some('\r'),
                        b'e' => Some('\x1b'),
                        b' ' => Some(' '),
                        b'"' => Some('"'),
                        b'/' => Some('/'),
                        b'\\' => Some('\\'),
                        _ => None,
                    };
                    let ch = if let Some(ch) = simple {
                        ch
                    } else {
                        let digits = match e {
                            b'x' => 2,
                            b'u' => 4,
                            b'U' => 8,
                            b'\n' => {
                                // An escaped line break joins the lines.
                                while *p < b.len() && is_ws(b[*p]) {
                                    *p += 1;
                                }
                                continue;
                            }
                            _ => {
                                return Err(self.err(
                                    self.line_of(*p - 1),
                                    format!("unknown escape '\\{}' in a string", e as char),
                                ));
                            }
                        };
                        let hex = self.src.get(*p..*p + digits).unwrap_or("");
                        let code = u32::from_str_radix(hex, 16)
                            .ok()
                            .filter(|_| {
                                hex.len() == digits && hex.bytes().all(|h| h.is_ascii_hexdigit())
                            })
                            .and_then(char::from_u32);
                        let Some(ch) = code else {
                            return Err(self.err(
                                self.line_of(*p - 1),
                                format!("bad escape '\\{}{hex}' in a string", e as char),
                            ));
                        };
                        *p += digits;
                        ch
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                b'\n' | b'\r' => {
                    // Line folding: the break and the surrounding blanks become one space.
                    while out.last().is_some_and(|&x| x == b' ' || x == b'\t') {
                        out.pop();
                    }
                    while *p < b.len() && matches!(b[*p], b' ' | b'\t' | b'\r' | b'\n') {
                        *p += 1;
                    }
                    out.push(b' ');
                }
                _ => out.push(c),
            }
        }
        Ok(Node {
            line,
            kind: Kind::Scalar(String::from_utf8_lossy(&out).into_owned()),
        })
    }

    fn single_quoted(&mut self, p: &mut usize, line: usize) -> Result<Node, PaceError> {
        let b = self.b;
        *p += 1;
        let mut out: Vec<u8> = vec![];
        loop {
            let Some(&c) = b.get(*p) else {
                return Err(self.err(
                    self.eof_line(),
                    format!("the file ends inside the string opened on line {line}"),
                ));
            };
            *p += 1;
            match c {
                b'\'' if b.get(*p) == Some(&b'\'') => {
                    *p += 1;
                    out.push(b'\'');
                }
                b'\'' => break,
                b'\n' | b'\r' => {
                    while out.last().is_some_and(|&x| x == b' ' || x == b'\t') {
                        out.pop();
                    }
                    while *p < b.len() && matches!(b[*p], b' ' | b'\t' | b'\r' | b'\n') {
                        *p += 1;
                    }
                    out.push(b' ');
                }
                _ => out.push(c),
            }
        }
        Ok(Node {
            line,
            kind: Kind::Scalar(String::from_utf8_lossy(&out).into_owned()),
        })
    }
}

/// Parse a document of the supported YAML subset (also read by the B-basis `.yaml` reader,
/// `super::bbasis`).
pub(super) fn parse_document(file: &str, text: &str) -> Result<Node, PaceError> {
    Yaml::new(file, text)?.document()
}

// ---------------------------------------------------------------------------------------------
// From YAML nodes to the model.

/// Most elements of one potential.
const MAX_ELEMENTS: usize = 128;
/// Most radial coefficients over all pairs after padding to the global sizes (128 MiB).
const MAX_CRAD: usize = 1 << 24;
/// Most (node, function) entries of the look-up tables of all pairs together (2^26 entries of
/// 32 bytes: 2 GiB; a five-element potential at ML-PACE's default spacing needs ~2^24).
const MAX_TABLE_ENTRIES: f64 = (1u64 << 26) as f64;
const MAX_RADIAL: usize = 1000;
const MAX_RANK: usize = 32;

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, line: usize, key: &str, msg: impl std::fmt::Display) -> PaceError {
        PaceError::Format {
            file: self.file.to_string(),
            line,
            key: key.to_string(),
            message: msg.to_string(),
        }
    }

    pub(super) fn entries<'n>(
        &self,
        n: &'n Node,
        key: &str,
    ) -> Result<&'n [(Node, Node)], PaceError> {
        match &n.kind {
            Kind::Map(v) => Ok(v),
            _ => Err(self.err(
                n.line,
                key,
                format!("expected a mapping, found {}", n.what()),
            )),
        }
    }

    pub(super) fn get<'n>(&self, m: &'n Node, name: &str) -> Option<&'n Node> {
        match &m.kind {
            Kind::Map(v) => v
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s) if s == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value of `name` in mapping `m` (at `path`), which must be present.
    pub(super) fn req<'n>(
        &self,
        m: &'n Node,
        path: &str,
        name: &str,
    ) -> Result<&'n Node, PaceError> {
        self.get(m, name)
            .ok_or_else(|| self.err(m.line, &join(path, name), "missing"))
    }

    pub(super) fn scalar<'n>(
        &self,
        n: &'n Node,
        key: &str,
        what: &str,
    ) -> Result<&'n str, PaceError> {
        match &n.kind {
            Kind::Scalar(s) => Ok(s),
            _ => Err(self.err(n.line, key, format!("expected {what}, found {}", n.what()))),
        }
    }

    pub(super) fn num(&self, n: &Node, key: &str) -> Result<f64, PaceError> {
        let t = self.scalar(n, key, "a number")?;
        let v = match t.to_ascii_lowercase().as_str() {
            ".inf" | "+.inf" => Ok(f64::INFINITY),
            "-.inf" => Ok(f64::NEG_INFINITY),
            ".nan" => Ok(f64::NAN),
            _ => t.parse::<f64>(),
        };
        match v {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => Err(self.err(n.line, key, format!("'{t}' is not a finite number"))),
            Err(_) => Err(self.err(n.line, key, format!("'{t}' is not a number"))),
        }
    }

    pub(super) fn int(&self, n: &Node, key: &str, max: usize) -> Result<usize, PaceError> {
        let t = self.scalar(n, key, "an integer")?;
        match t.parse::<u64>() {
            Ok(v) if v <= max as u64 => Ok(v as usize),
            Ok(v) => Err(self.err(
                n.line,
                key,
                format!("{v} is larger than the supported {max}"),
            )),
            Err(_) => Err(self.err(n.line, key, format!("'{t}' is not a non-negative integer"))),
        }
    }

    pub(super) fn list<'n>(&self, n: &'n Node, key: &str) -> Result<&'n [Node], PaceError> {
        match &n.kind {
            Kind::Seq(v) => Ok(v),
            _ => Err(self.err(n.line, key, format!("expected a list, found {}", n.what()))),
        }
    }

    pub(super) fn nums(&self, n: &Node, key: &str) -> Result<Vec<f64>, PaceError> {
        self.list(n, key)?
            .iter()
            .map(|x| self.num(x, key))
            .collect()
    }

    pub(super) fn ints(&self, n: &Node, key: &str, max: usize) -> Result<Vec<usize>, PaceError> {
        self.list(n, key)?
            .iter()
            .map(|x| self.int(x, key, max))
            .collect()
    }

    /// A species index key of `embeddings` / `functions`.
    fn species_key(&self, k: &Node, key: &str, ne: usize) -> Result<usize, PaceError> {
        let t = self.scalar(k, key, "a species index")?;
        match t.parse::<usize>() {
            Ok(v) if v < ne => Ok(v),
            _ => Err(self.err(
                k.line,
                key,
                format!(
                    "'{t}' is not a species index (0 to {}, the positions in 'elements')",
                    ne - 1
                ),
            )),
        }
    }
}

pub(super) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// One bond as read (sizes of its own).
struct Bond {
    family: Family,
    nradmax: usize,
    lmax: usize,
    nradbase: usize,
    lambda: f64,
    /// `[n][l][k]`, flat.
    crad: Vec<f64>,
    prehc: f64,
    lambdahc: f64,
    rcut: f64,
    dcut: f64,
    rcut_in: f64,
    dcut_in: f64,
    inner: InnerCutoff,
}

fn read_bond(c: &Ctx, v: &Node, key: &str) -> Result<Bond, PaceError> {
    c.entries(v, key)?;
    let rb_node = c.req(v, key, "radbasename")?;
    let rb_key = join(key, "radbasename");
    let rb = c.scalar(rb_node, &rb_key, "a radial basis name")?;
    if rb.starts_with("ACE.jl") {
        return Err(c.err(
            rb_node.line,
            &rb_key,
            format!("'{rb}': ACE.jl radial bases are not supported (only pacemaker's)"),
        ));
    }
    let family = Family::from_name(rb).ok_or_else(|| {
        c.err(
            rb_node.line,
            &rb_key,
            format!(
                "unknown radial basis '{rb}' (supported: ChebExpCos, ChebPow, ChebLinear, SBessel)"
            ),
        )
    })?;
    let int = |name: &str, max: usize| c.int(c.req(v, key, name)?, &join(key, name), max);
    let num = |name: &str| c.num(c.req(v, key, name)?, &join(key, name));
    let opt = |name: &str, default: f64| match c.get(v, name) {
        Some(n) => c.num(n, &join(key, name)),
        None => Ok(default),
    };
    let nradmax = int("nradmax", MAX_RADIAL)?;
    let lmax = int("lmax", super::ylm::LMAX_SUPPORTED)?;
    let nradbase = int("nradbasemax", MAX_RADIAL)?;
    let rp_key = join(key, "radparameters");
    let rp_node = c.req(v, key, "radparameters")?;
    let rp = c.nums(rp_node, &rp_key)?;
    let Some(&lambda) = rp.first() else {
        return Err(c.err(rp_node.line, &rp_key, "empty (the first value is λ)"));
    };
    // radcoefficients: exactly [nradmax][lmax+1][nradbasemax].
    let rc_key = join(key, "radcoefficients");
    let rc = c.req(v, key, "radcoefficients")?;
    let shape = format!(
        "[nradmax = {nradmax}][lmax + 1 = {}][nradbasemax = {nradbase}]",
        lmax + 1
    );
    let outer = c.list(rc, &rc_key)?;
    if outer.len() != nradmax {
        return Err(c.err(
            rc.line,
            &rc_key,
            format!("{} lists where the shape is {shape}", outer.len()),
        ));
    }
    let mut crad = Vec::with_capacity(nradmax * (lmax + 1) * nradbase);
    for (n, row) in outer.iter().enumerate() {
        let ls = c.list(row, &rc_key)?;
        if ls.len() != lmax + 1 {
            return Err(c.err(
                row.line,
                &rc_key,
                format!(
                    "list [{n}] holds {} lists where the shape is {shape}",
                    ls.len()
                ),
            ));
        }
        for (l, ks) in ls.iter().enumerate() {
            let vals = c.nums(ks, &rc_key)?;
            if vals.len() != nradbase {
                return Err(c.err(
                    ks.line,
                    &rc_key,
                    format!(
                        "list [{n}][{l}] holds {} numbers where the shape is {shape}",
                        vals.len()
                    ),
                ));
            }
            crad.extend(vals);
        }
    }
    let inner = match c.get(v, "inner_cutoff_type") {
        None => InnerCutoff::Density,
        Some(n) => {
            let k = join(key, "inner_cutoff_type");
            match c.scalar(n, &k, "an inner cutoff type")? {
                "density" => InnerCutoff::Density,
                "distance" => InnerCutoff::Distance,
                "zbl" => InnerCutoff::Zbl,
                other => {
                    return Err(c.err(
                        n.line,
                        &k,
                        format!(
                            "unknown inner cutoff type '{other}' (supported: density, distance, \
                             zbl)"
                        ),
                    ));
                }
            }
        }
    };
    let rcut = num("rcut")?;
    if !(rcut > 0.0 && rcut <= 100.0) {
        return Err(c.err(
            c.req(v, key, "rcut")?.line,
            &join(key, "rcut"),
            format!("{rcut} is not in (0, 100] Å"),
        ));
    }
    Ok(Bond {
        family,
        nradmax,
        lmax,
        nradbase,
        lambda,
        crad,
        prehc: num("prehc")?,
        lambdahc: num("lambdahc")?,
        rcut,
        dcut: num("dcut")?,
        rcut_in: opt("rcut_in", 0.0)?,
        dcut_in: opt("dcut_in", 0.0)?,
        inner,
    })
}

/// Per-species settings from `embeddings`.
struct Emb {
    embedding: Embedding,
    ndensity: usize,
    rho_core_cut: f64,
    drho_core_cut: f64,
}

fn read_embedding(c: &Ctx, v: &Node, key: &str) -> Result<Emb, PaceError> {
    c.entries(v, key)?;
    let nd_node = c.req(v, key, "ndensity")?;
    let ndensity = c.int(nd_node, &join(key, "ndensity"), MAX_DENSITIES)?;
    if ndensity == 0 {
        return Err(c.err(nd_node.line, &join(key, "ndensity"), "must be at least 1"));
    }
    let np_node = c.req(v, key, "npoti")?;
    let np_key = join(key, "npoti");
    let npoti = c.scalar(np_node, &np_key, "an embedding name")?;
    if let Err(m) = Embedding::new(npoti, &[], 0) {
        return Err(c.err(np_node.line, &np_key, m));
    }
    let fs_node = c.req(v, key, "FS_parameters")?;
    let fs_key = join(key, "FS_parameters");
    let fs = c.nums(fs_node, &fs_key)?;
    let embedding =
        Embedding::new(npoti, &fs, ndensity).map_err(|m| c.err(fs_node.line, &fs_key, m))?;
    let num = |name: &str| c.num(c.req(v, key, name)?, &join(key, name));
    Ok(Emb {
        embedding,
        ndensity,
        rho_core_cut: num("rho_core_cutoff")?,
        drho_core_cut: num("drho_core_cutoff")?,
    })
}

/// Global sizes a function is checked against.
struct Limits {
    ne: usize,
    nradbase: usize,
    nradmax: usize,
    lmax: usize,
}

fn read_function(
    c: &Ctx,
    v: &Node,
    key: &str,
    mu: usize,
    ndensity: usize,
    lim: &Limits,
) -> Result<CFunc, PaceError> {
    c.entries(v, key)?;
    let field = |name: &str| c.req(v, key, name).map(|n| (n, join(key, name)));
    let (n, k) = field("mu0")?;
    let mu0 = c.int(n, &k, usize::MAX)?;
    if mu0 != mu {
        return Err(c.err(n.line, &k, format!("{mu0} in the list of species {mu}")));
    }
    let (n, k) = field("rank")?;
    let rank = c.int(n, &k, MAX_RANK)?;
    if rank == 0 {
        return Err(c.err(n.line, &k, "rank 0"));
    }
    let (n, k) = field("ndensity")?;
    let nd = c.int(n, &k, usize::MAX)?;
    if nd != ndensity {
        return Err(c.err(
            n.line,
            &k,
            format!(
                "{nd} where the embedding of species {mu} has ndensity {ndensity} (ML-PACE reads \
                 the coefficients with the species' value)"
            ),
        ));
    }
    let (n, k) = field("num_ms_combs")?;
    let nms = c.int(n, &k, 1 << 20)?;
    if rank == 1 && nms != 1 {
        return Err(c.err(
            n.line,
            &k,
            format!("{nms} for a rank-1 function (it has the one m-combination [0])"),
        ));
    }
    let sized = |name: &str, max: usize| -> Result<Vec<usize>, PaceError> {
        let (n, k) = field(name)?;
        let vals = c.ints(n, &k, max)?;
        if vals.len() != rank {
            return Err(c.err(n.line, &k, format!("{} values for rank {rank}", vals.len())));
        }
        Ok(vals)
    };
    let mus = sized("mus", lim.ne - 1)?;
    let nmax = if rank == 1 { lim.nradbase } else { lim.nradmax };
    let ns = sized("ns", nmax)?;
    if ns.contains(&0) {
        let (n, k) = field("ns")?;
        return Err(c.err(n.line, &k, "radial indices start at 1"));
    }
    let ls = sized("ls", lim.lmax)?;
    if rank == 1 && ls[0] != 0 {
        let (n, k) = field("ls")?;
        return Err(c.err(n.line, &k, "a rank-1 function must have l = 0"));
    }
    let (n, k) = field("ms_combs")?;
    let items = c.list(n, &k)?;
    if items.len() != rank * nms {
        return Err(c.err(
            n.line,
            &k,
            format!(
                "{} values where rank x num_ms_combs = {rank} x {nms} = {}",
                items.len(),
                rank * nms
            ),
        ));
    }
    let mut ms = Vec::with_capacity(items.len());
    for (q, item) in items.iter().enumerate() {
        let t = c.scalar(item, &k, "an integer")?;
        let l = ls[q % rank] as i64;
        match t.parse::<i64>() {
            Ok(m) if m.abs() <= l => ms.push(m as i8),
            Ok(m) => {
                return Err(c.err(
                    item.line,
                    &k,
                    format!("|m| = {} exceeds l = {l}", m.unsigned_abs()),
                ));
            }
            Err(_) => return Err(c.err(item.line, &k, format!("'{t}' is not an integer"))),
        }
    }
    let (n, k) = field("ctildes")?;
    let coefs = c.nums(n, &k)?;
    if coefs.len() != ndensity * nms {
        return Err(c.err(
            n.line,
            &k,
            format!(
                "{} values where ndensity x num_ms_combs = {ndensity} x {nms} = {}",
                coefs.len(),
                ndensity * nms
            ),
        ));
    }
    let small = |v: Vec<usize>| v.into_iter().map(|x| x as u16).collect();
    Ok(CFunc {
        mus: small(mus),
        ns: small(ns),
        ls: small(ls),
        ms,
        coefs,
    })
}

/// Parse the text of a `.yace` file (`file` names it in errors).
pub fn parse(file: &str, text: &str) -> Result<PaceModel, PaceError> {
    let root = Yaml::new(file, text)?.document()?;
    let c = Ctx { file };
    if !matches!(root.kind, Kind::Map(_)) {
        return Err(c.err(
            root.line,
            "file",
            format!(
                "expected a mapping of keys (elements, E0, deltaSplineBins, embeddings, bonds, \
                 functions), found {}",
                root.what()
            ),
        ));
    }

    // Elements.
    let el = c.req(&root, "", "elements")?;
    let mut elements: Vec<String> = vec![];
    for n in c.list(el, "elements")? {
        let s = c.scalar(n, "elements", "an element name")?;
        if s.is_empty() || elements.iter().any(|e| e == s) {
            return Err(c.err(
                n.line,
                "elements",
                format!("'{s}' is empty or listed twice"),
            ));
        }
        elements.push(s.to_string());
    }
    let ne = elements.len();
    if ne == 0 || ne > MAX_ELEMENTS {
        return Err(c.err(
            el.line,
            "elements",
            format!("{ne} elements (1 to {MAX_ELEMENTS} supported)"),
        ));
    }

    // E0 (zeros when absent).
    let e0 = match c.get(&root, "E0") {
        None => vec![0.0; ne],
        Some(n) => {
            let v = c.nums(n, "E0")?;
            if v.len() != ne {
                return Err(c.err(
                    n.line,
                    "E0",
                    format!("{} values for {ne} elements", v.len()),
                ));
            }
            v
        }
    };
    let dn = c.req(&root, "", "deltaSplineBins")?;
    let delta = c.num(dn, "deltaSplineBins")?;
    if delta <= 0.0 {
        return Err(c.err(
            dn.line,
            "deltaSplineBins",
            format!("{delta} must be positive"),
        ));
    }

    // Embeddings, one per species.
    let en = c.req(&root, "", "embeddings")?;
    let mut embs: Vec<Option<Emb>> = (0..ne).map(|_| None).collect();
    for (k, v) in c.entries(en, "embeddings")? {
        let mu = c.species_key(k, "embeddings", ne)?;
        let key = format!("embeddings.{mu}");
        if embs[mu].is_some() {
            return Err(c.err(k.line, &key, "species given twice"));
        }
        embs[mu] = Some(read_embedding(&c, v, &key)?);
    }
    let embs: Vec<Emb> = embs
        .into_iter()
        .enumerate()
        .map(|(mu, e)| {
            e.ok_or_else(|| {
                c.err(
                    en.line,
                    "embeddings",
                    format!("no embedding for species {mu} ({})", elements[mu]),
                )
            })
        })
        .collect::<Result<_, _>>()?;

    // Bonds, one per ordered pair.
    let bn = c.req(&root, "", "bonds")?;
    let mut bonds: Vec<Option<Bond>> = (0..ne * ne).map(|_| None).collect();
    for (k, v) in c.entries(bn, "bonds")? {
        let pair = match &k.kind {
            Kind::Seq(v) if v.len() == 2 => {
                let a = c.species_key(&v[0], "bonds", ne)?;
                let b = c.species_key(&v[1], "bonds", ne)?;
                Some((a, b))
            }
            _ => None,
        };
        let Some((a, b)) = pair else {
            return Err(c.err(
                k.line,
                "bonds",
                format!("key '{}' is not a pair of species indices [i, j]", k.text()),
            ));
        };
        let key = format!("bonds.[{a}, {b}]");
        if bonds[a * ne + b].is_some() {
            return Err(c.err(k.line, &key, "pair given twice"));
        }
        bonds[a * ne + b] = Some(read_bond(&c, v, &key)?);
    }
    let bonds: Vec<Bond> = bonds
        .into_iter()
        .enumerate()
        .map(|(p, b)| {
            b.ok_or_else(|| {
                c.err(
                    bn.line,
                    "bonds",
                    format!(
                        "no bond [{}, {}] ({}-{}): every ordered pair needs one",
                        p / ne,
                        p % ne,
                        elements[p / ne],
                        elements[p % ne]
                    ),
                )
            })
        })
        .collect::<Result<_, _>>()?;

    // Global sizes: the largest over the bonds.
    let lmax = bonds.iter().map(|b| b.lmax).max().unwrap_or(0);
    let nradmax = bonds.iter().map(|b| b.nradmax).max().unwrap_or(0);
    let nradbase = bonds.iter().map(|b| b.nradbase).max().unwrap_or(0);
    let cutoffmax = bonds.iter().map(|b| b.rcut).fold(0.0, f64::max);
    if nradbase == 0 {
        return Err(c.err(
            bn.line,
            "bonds",
            "nradbasemax is 0 in every bond: no radial basis",
        ));
    }
    let nl = lmax + 1;
    let per_pair = nradmax * nl * nradbase;
    if per_pair.saturating_mul(ne * ne) > MAX_CRAD {
        return Err(c.err(
            bn.line,
            "bonds",
            format!(
                "{ne}x{ne} pairs of nradmax x (lmax + 1) x nradbasemax = {nradmax} x {nl} x \
                 {nradbase} radial coefficients: more than the supported {MAX_CRAD}"
            ),
        ));
    }
    let entries: f64 = bonds
        .iter()
        .map(|b| (b.rcut / delta).floor() * (nradbase + nradmax * nl + 1) as f64)
        .sum();
    if entries > MAX_TABLE_ENTRIES {
        return Err(c.err(
            dn.line,
            "deltaSplineBins",
            format!(
                "the look-up tables of all pairs would take {:.1} GB: too large (increase \
                 deltaSplineBins)",
                entries * 32.0 / 1e9
            ),
        ));
    }
    // One inner cutoff type for all pairs: ML-PACE sets its radial functions' single
    // `inner_cutoff_type` from every bond in turn (mu_i, then mu_j, ascending), so the last bond
    // decides.
    let inner = bonds[ne * ne - 1].inner;
    let mut z = vec![0u32; ne];
    for (mu, name) in elements.iter().enumerate() {
        z[mu] = crate::model::core::atomic_number(name);
        if inner == InnerCutoff::Zbl && z[mu] == 0 {
            return Err(c.err(
                el.line,
                "elements",
                format!(
                    "'{name}' is not an element symbol with a known atomic number (H to Pu), \
                     which the ZBL core repulsion needs"
                ),
            ));
        }
    }
    let mut pairs = Vec::with_capacity(ne * ne);
    for (p, b) in bonds.iter().enumerate() {
        let mut crad = vec![0.0; per_pair];
        let bl = b.lmax + 1;
        for n in 0..b.nradmax {
            for l in 0..bl {
                for k in 0..b.nradbase {
                    crad[(n * nl + l) * nradbase + k] = b.crad[(n * bl + l) * b.nradbase + k];
                }
            }
        }
        pairs.push(PairSpec {
            family: b.family,
            lambda: b.lambda,
            cut: b.rcut,
            dcut: b.dcut,
            cut_in: b.rcut_in,
            dcut_in: b.dcut_in,
            inner,
            pre: b.prehc,
            lambda_hc: b.lambdahc,
            z: (z[p / ne], z[p % ne]),
            crad,
        });
    }

    // Functions of each species, rank 1 apart from the others (file order kept in each).
    let fnode = c.req(&root, "", "functions")?;
    let lim = Limits {
        ne,
        nradbase,
        nradmax,
        lmax,
    };
    let mut lists: Vec<Option<(Vec<CFunc>, Vec<CFunc>)>> = (0..ne).map(|_| None).collect();
    for (k, v) in c.entries(fnode, "functions")? {
        let mu = c.species_key(k, "functions", ne)?;
        let key = format!("functions.{mu}");
        if lists[mu].is_some() {
            return Err(c.err(k.line, &key, "species given twice"));
        }
        let items: &[Node] = match &v.kind {
            Kind::Null => &[],
            _ => c.list(v, &key)?,
        };
        let (mut r1, mut rest) = (vec![], vec![]);
        for (q, f) in items.iter().enumerate() {
            let func = read_function(&c, f, &format!("{key}[{q}]"), mu, embs[mu].ndensity, &lim)?;
            if func.rank() == 1 {
                r1.push(func);
            } else {
                rest.push(func);
            }
        }
        lists[mu] = Some((r1, rest));
    }
    let mut species = Vec::with_capacity(ne);
    for (mu, (list, emb)) in lists.into_iter().zip(embs).enumerate() {
        let Some((rank1, funcs)) = list else {
            return Err(c.err(
                fnode.line,
                "functions",
                format!("no functions for species {mu} ({})", elements[mu]),
            ));
        };
        species.push(SpeciesBasis {
            rank1,
            funcs,
            embedding: emb.embedding,
            rho_core_cut: emb.rho_core_cut,
            drho_core_cut: emb.drho_core_cut,
            e0: e0[mu],
        });
    }
    // What is left to fail here are the per-pair table sizes (cutoff / deltaSplineBins).
    PaceModel::new(
        elements, lmax, nradbase, nradmax, cutoffmax, delta, pairs, species,
    )
    .map_err(|m| c.err(dn.line, "deltaSplineBins", m))
}

// ---------------------------------------------------------------------------------------------
// Writer.

fn family_name(f: Family) -> &'static str {
    match f {
        Family::ChebExpCos => "ChebExpCos",
        Family::ChebPow => "ChebPow",
        Family::ChebLinear => "ChebLinear",
        Family::SBessel => "SBessel",
    }
}

/// A float that reads back to the same bits; with a `.` and a signed exponent so that YAML 1.1
/// readers (PyYAML) also see a float.
fn fnum(x: f64) -> String {
    let s = format!("{x:?}");
    match s.find('e') {
        Some(i) => {
            let (m, e) = (&s[..i], &s[i + 1..]);
            let m = if m.contains('.') {
                m.to_string()
            } else {
                format!("{m}.0")
            };
            let e = if e.starts_with('-') {
                e.to_string()
            } else {
                format!("+{e}")
            };
            format!("{m}e{e}")
        }
        None => s,
    }
}

fn fnums(v: &[f64]) -> String {
    format!(
        "[{}]",
        v.iter().map(|&x| fnum(x)).collect::<Vec<_>>().join(", ")
    )
}

fn inums(v: impl Iterator<Item = i64>) -> String {
    format!(
        "[{}]",
        v.map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// An element name: plain when it is a simple word, double-quoted otherwise.
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `.yace` text of a model (every bond written with the global sizes; ML-PACE and this
/// reader load it to the same potential, bit for bit here).
pub fn to_yace(m: &PaceModel) -> String {
    let ne = m.elements.len();
    let nl = m.lmax + 1;
    let (nb, nr) = (m.nradbase, m.nradmax);
    let mut o = String::new();
    let names: Vec<String> = m.elements.iter().map(|e| yaml_str(e)).collect();
    let _ = writeln!(o, "elements: [{}]", names.join(", "));
    let e0: Vec<f64> = m.species.iter().map(|s| s.e0).collect();
    let _ = writeln!(o, "E0: {}", fnums(&e0));
    let _ = writeln!(o, "deltaSplineBins: {}", fnum(m.delta));
    o.push_str("embeddings:\n");
    for (mu, s) in m.species.iter().enumerate() {
        let e = &s.embedding;
        let fs: Vec<f64> = e.params.iter().flat_map(|&(w, p)| [w, p]).collect();
        let name = if e.shifted_scaled {
            "FinnisSinclairShiftedScaled"
        } else {
            "FinnisSinclair"
        };
        let _ = writeln!(
            o,
            "  {mu}: {{ndensity: {}, FS_parameters: {}, npoti: {name}, rho_core_cutoff: {}, \
             drho_core_cutoff: {}}}",
            e.params.len(),
            fnums(&fs),
            fnum(s.rho_core_cut),
            fnum(s.drho_core_cut)
        );
    }
    o.push_str("bonds:\n");
    for (p, t) in m.pairs.iter().enumerate() {
        let s = &t.spec;
        let rc: Vec<String> = (0..nr)
            .map(|n| {
                let ls: Vec<String> = (0..nl)
                    .map(|l| fnums(&s.crad[(n * nl + l) * nb..(n * nl + l + 1) * nb]))
                    .collect();
                format!("[{}]", ls.join(", "))
            })
            .collect();
        let inner = match s.inner {
            InnerCutoff::Density => "density",
            InnerCutoff::Distance => "distance",
            InnerCutoff::Zbl => "zbl",
        };
        let _ = writeln!(
            o,
            "  [{}, {}]: {{nradmax: {nr}, lmax: {}, nradbasemax: {nb}, radbasename: {}, \
             radparameters: [{}], radcoefficients: [{}], prehc: {}, lambdahc: {}, rcut: {}, \
             dcut: {}, rcut_in: {}, dcut_in: {}, inner_cutoff_type: {inner}}}",
            p / ne,
            p % ne,
            m.lmax,
            family_name(s.family),
            fnum(s.lambda),
            rc.join(", "),
            fnum(s.pre),
            fnum(s.lambda_hc),
            fnum(s.cut),
            fnum(s.dcut),
            fnum(s.cut_in),
            fnum(s.dcut_in),
        );
    }
    o.push_str("functions:\n");
    for (mu, s) in m.species.iter().enumerate() {
        let nd = s.embedding.params.len();
        let _ = writeln!(o, "  {mu}:");
        for f in s.rank1.iter().chain(&s.funcs) {
            let rank = f.rank();
            let nms = f.ms.len() / rank.max(1);
            let u = |v: &[u16]| inums(v.iter().map(|&x| i64::from(x)));
            let _ = writeln!(
                o,
                "    - {{mu0: {mu}, rank: {rank}, ndensity: {nd}, num_ms_combs: {nms}, mus: {}, \
                 ns: {}, ls: {}, ms_combs: {}, ctildes: {}}}",
                u(&f.mus),
                u(&f.ns),
                u(&f.ls),
                inums(f.ms.iter().map(|&x| i64::from(x))),
                fnums(&f.coefs)
            );
        }
    }
    o
}
