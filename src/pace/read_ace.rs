//! Reader of pacemaker's `.ace` text format (the C-tilde basis as ML-PACE's
//! `ACECTildeBasisSet::load` reads it; single element, like every file in that format).
//!
//! Layout: optional comment lines, then `nelements=`, `elements:`, `lmax=`,
//! `[embedding-function: NAME]`, `K FS parameters: ...`, `core energy-cutoff parameters: ...`,
//! `[E0: ...]`, `radbasename=`, `nradbase=`, `nradmax=`, `cutoffmax=`, `deltaSplineBins=`,
//! `core repulsion parameters:`, `radparameter=`, `cutoff=`, `dcut=`, `crad=` (nradbase x nradmax
//! x (lmax+1) numbers, k slowest), `rankmax=`, `ndensitymax=`, `num_c_tilde_max=`,
//! `num_ms_combinations_max=`, `total_basis_size_rank1:` and its functions,
//! `total_basis_size:` and its functions. A function: `ctilde_basis_func: rank=R ndens=P mu0=S
//! mu=( .. ) n=( .. ) l=( .. ) num_ms=M` then M lines `< m1 .. mR >: c1 .. cP`.

use super::radial::{Family, InnerCutoff, PairSpec};
use super::{CFunc, Embedding, PaceError, PaceModel, SpeciesBasis};

/// Whitespace tokens with their line numbers; `key=value` is split after the `=`.
struct Tokens<'a> {
    file: &'a str,
    toks: Vec<(&'a str, usize)>,
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn new(file: &'a str, text: &'a str) -> Tokens<'a> {
        let mut toks = vec![];
        for (ln, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for t in line.split_whitespace() {
                match t.find('=') {
                    Some(i) if i + 1 < t.len() => {
                        toks.push((&t[..=i], ln + 1));
                        toks.push((&t[i + 1..], ln + 1));
                    }
                    _ => toks.push((t, ln + 1)),
                }
            }
        }
        Tokens { file, toks, pos: 0 }
    }

    fn line(&self) -> usize {
        self.toks
            .get(self.pos.min(self.toks.len().saturating_sub(1)))
            .map_or(0, |t| t.1)
    }

    fn err(&self, key: &str, msg: impl std::fmt::Display) -> PaceError {
        PaceError::Format {
            file: self.file.to_string(),
            line: self.line(),
            key: key.to_string(),
            message: msg.to_string(),
        }
    }

    /// An error pointing at the line of token `pos` (an earlier token than the current one).
    fn err_at(&self, pos: usize, key: &str, msg: impl std::fmt::Display) -> PaceError {
        PaceError::Format {
            file: self.file.to_string(),
            line: self.toks.get(pos).map_or_else(|| self.line(), |t| t.1),
            key: key.to_string(),
            message: msg.to_string(),
        }
    }

    /// Tokens not read yet.
    fn remaining(&self) -> usize {
        self.toks.len().saturating_sub(self.pos)
    }

    fn peek(&self) -> Option<&'a str> {
        self.toks.get(self.pos).map(|t| t.0)
    }

    fn next(&mut self, key: &str) -> Result<&'a str, PaceError> {
        let t = self
            .peek()
            .ok_or_else(|| self.err(key, "the file ends here"))?;
        self.pos += 1;
        Ok(t)
    }

    /// Consume the literal words of `words` (e.g. `core repulsion parameters:`).
    fn expect(&mut self, key: &str, words: &str) -> Result<(), PaceError> {
        for w in words.split_whitespace() {
            let at = self.pos;
            let t = self.next(key)?;
            if t != w {
                self.pos = at;
                return Err(self.err(key, format!("expected '{words}', found '{t}'")));
            }
        }
        Ok(())
    }

    /// Consume `words` if they come next.
    fn accept(&mut self, words: &str) -> bool {
        let ws: Vec<&str> = words.split_whitespace().collect();
        let ok = ws
            .iter()
            .enumerate()
            .all(|(k, w)| self.toks.get(self.pos + k).is_some_and(|t| t.0 == *w));
        if ok {
            self.pos += ws.len();
        }
        ok
    }

    fn f64(&mut self, key: &str) -> Result<f64, PaceError> {
        let at = self.pos;
        let t = self.next(key)?;
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => {
                self.pos = at;
                Err(self.err(key, format!("'{t}' is not a finite number")))
            }
            Err(_) => {
                self.pos = at;
                Err(self.err(key, format!("'{t}' is not a number")))
            }
        }
    }

    fn usize(&mut self, key: &str, max: usize) -> Result<usize, PaceError> {
        let at = self.pos;
        let t = self.next(key)?;
        match t.parse::<usize>() {
            Ok(v) if v <= max => Ok(v),
            Ok(v) => {
                self.pos = at;
                Err(self.err(key, format!("{v} is larger than the supported {max}")))
            }
            Err(_) => {
                self.pos = at;
                Err(self.err(key, format!("'{t}' is not a non-negative integer")))
            }
        }
    }

    fn i32(&mut self, key: &str) -> Result<i32, PaceError> {
        let at = self.pos;
        let t = self.next(key)?;
        t.parse::<i32>().map_err(|_| {
            self.pos = at;
            self.err(key, format!("'{t}' is not an integer"))
        })
    }

    /// `key` followed by `n` numbers.
    fn f64s(&mut self, key: &str, words: &str, n: usize) -> Result<Vec<f64>, PaceError> {
        self.expect(key, words)?;
        (0..n).map(|_| self.f64(key)).collect()
    }
}

/// Parse the text of a `.ace` file (`file` names it in errors).
pub fn parse(file: &str, text: &str) -> Result<PaceModel, PaceError> {
    let mut t = Tokens::new(file, text);
    // Skip free text before `nelements=` (the header line of LAMMPS potential files).
    while t.peek().is_some_and(|w| w != "nelements=") {
        t.pos += 1;
    }
    t.expect("nelements", "nelements=")?;
    let ne = t.usize("nelements", 1 << 16)?;
    if ne != 1 {
        t.pos -= 1;
        return Err(t.err(
            "nelements",
            "the .ace format holds one element (ML-PACE reads the embedding of the first \
             element only); export multi-element potentials as .yace",
        ));
    }
    t.expect("elements", "elements:")?;
    let elements: Vec<String> = (0..ne)
        .map(|_| t.next("elements").map(str::to_string))
        .collect::<Result<_, _>>()?;
    t.expect("lmax", "lmax=")?;
    let lmax = t.usize("lmax", super::ylm::LMAX_SUPPORTED)?;
    let npoti = if t.accept("embedding-function:") {
        let name = t.next("embedding-function")?.to_string();
        // Only the name is checked here; the parameter count once ndensitymax is known.
        if let Err(m) = Embedding::new(&name, &[], 0) {
            return Err(t.err_at(t.pos - 1, "embedding-function", m));
        }
        name
    } else {
        "FinnisSinclair".to_string()
    };
    let fs_pos = t.pos;
    let nfs = t.usize("FS parameters", 64)?;
    t.expect("FS parameters", "FS parameters:")?;
    let fs: Vec<f64> = (0..nfs)
        .map(|_| t.f64("FS parameters"))
        .collect::<Result<_, _>>()?;
    let cut_core = t.f64s(
        "core energy-cutoff parameters",
        "core energy-cutoff parameters:",
        2 * ne,
    )?;
    let e0 = if t.accept("E0:") {
        (0..ne).map(|_| t.f64("E0")).collect::<Result<_, _>>()?
    } else {
        vec![0.0; ne]
    };
    t.expect("radbasename", "radbasename=")?;
    let rb = t.next("radbasename")?;
    let family = Family::from_name(rb).ok_or_else(|| {
        t.pos -= 1;
        t.err(
            "radbasename",
            format!(
                "unknown radial basis '{rb}' (supported: ChebExpCos, ChebPow, ChebLinear, SBessel)"
            ),
        )
    })?;
    t.expect("nradbase", "nradbase=")?;
    let nradbase = t.usize("nradbase", 1000)?;
    if nradbase == 0 {
        return Err(t.err_at(t.pos - 1, "nradbase", "must be at least 1"));
    }
    t.expect("nradmax", "nradmax=")?;
    let nradmax = t.usize("nradmax", 1000)?;
    t.expect("cutoffmax", "cutoffmax=")?;
    let cutoffmax = t.f64("cutoffmax")?;
    t.expect("deltaSplineBins", "deltaSplineBins=")?;
    let delta = t.f64("deltaSplineBins")?;
    let np = ne * ne;
    let hc = t.f64s(
        "core repulsion parameters",
        "core repulsion parameters:",
        2 * np,
    )?;
    let lam = t.f64s("radparameter", "radparameter=", np)?;
    let cut = t.f64s("cutoff", "cutoff=", np)?;
    let dcut = t.f64s("dcut", "dcut=", np)?;
    t.expect("crad", "crad=")?;
    let nl = lmax + 1;
    let mut pairs = vec![];
    for p in 0..np {
        // Read the numbers first: memory follows the file, not the sizes its header claims.
        let mut vals = Vec::with_capacity((nradmax * nl * nradbase).min(t.remaining()));
        for _ in 0..nradmax * nl * nradbase {
            vals.push(t.f64("crad")?);
        }
        let mut crad = vec![0.0; vals.len()];
        let mut it = vals.into_iter();
        for k in 0..nradbase {
            for n in 0..nradmax {
                for l in 0..nl {
                    crad[(n * nl + l) * nradbase + k] = it.next().unwrap_or(0.0);
                }
            }
        }
        pairs.push(PairSpec {
            family,
            lambda: lam[p],
            cut: cut[p],
            dcut: dcut[p],
            cut_in: 0.0,
            dcut_in: 1e-5,
            inner: InnerCutoff::Density,
            pre: hc[2 * p],
            lambda_hc: hc[2 * p + 1],
            z: (0, 0),
            crad,
        });
    }
    t.expect("rankmax", "rankmax=")?;
    let rankmax = t.usize("rankmax", 32)?;
    t.expect("ndensitymax", "ndensitymax=")?;
    let ndensity = t.usize("ndensitymax", super::MAX_DENSITIES)?;
    if ndensity == 0 {
        return Err(t.err_at(t.pos - 1, "ndensitymax", "must be at least 1"));
    }
    let embedding =
        Embedding::new(&npoti, &fs, ndensity).map_err(|m| t.err_at(fs_pos, "FS parameters", m))?;
    t.expect("num_c_tilde_max", "num_c_tilde_max=")?;
    t.usize("num_c_tilde_max", usize::MAX)?;
    t.expect("num_ms_combinations_max", "num_ms_combinations_max=")?;
    t.usize("num_ms_combinations_max", usize::MAX)?;
    let ctx = FuncLimits {
        ne,
        nradbase,
        nradmax,
        lmax,
        rankmax,
        ndensity,
    };
    t.expect("total_basis_size_rank1", "total_basis_size_rank1:")?;
    let n1: Vec<usize> = (0..ne)
        .map(|_| t.usize("total_basis_size_rank1", 1 << 24))
        .collect::<Result<_, _>>()?;
    let mut rank1: Vec<Vec<CFunc>> = vec![];
    for &n in &n1 {
        rank1.push(
            (0..n)
                .map(|_| read_func(&mut t, &ctx, true))
                .collect::<Result<_, _>>()?,
        );
    }
    t.expect("total_basis_size", "total_basis_size:")?;
    let nn: Vec<usize> = (0..ne)
        .map(|_| t.usize("total_basis_size", 1 << 24))
        .collect::<Result<_, _>>()?;
    let mut species = vec![];
    for (mu, (&n, r1)) in nn.iter().zip(rank1).enumerate() {
        let funcs: Vec<CFunc> = (0..n)
            .map(|_| read_func(&mut t, &ctx, false))
            .collect::<Result<_, _>>()?;
        species.push(SpeciesBasis {
            rank1: r1,
            funcs,
            embedding: embedding.clone(),
            rho_core_cut: cut_core[2 * mu],
            drho_core_cut: cut_core[2 * mu + 1],
            e0: e0[mu],
        });
    }
    if let Some(w) = t.peek() {
        return Err(t.err(
            "end of file",
            format!("unexpected '{w}' after the last function"),
        ));
    }
    PaceModel::new(
        elements, lmax, nradbase, nradmax, cutoffmax, delta, pairs, species,
    )
    .map_err(|m| PaceError::Format {
        file: file.to_string(),
        line: 0,
        key: "potential".into(),
        message: m,
    })
}

struct FuncLimits {
    ne: usize,
    nradbase: usize,
    nradmax: usize,
    lmax: usize,
    rankmax: usize,
    ndensity: usize,
}

/// One function; `rank1`: whether it is in the rank-1 list (rank 1) or after it (rank >= 2).
fn read_func(t: &mut Tokens, c: &FuncLimits, rank1: bool) -> Result<CFunc, PaceError> {
    const K: &str = "ctilde_basis_func";
    t.expect(K, "ctilde_basis_func: rank=")?;
    let rank = t.usize("rank", c.rankmax)?;
    if rank == 0 {
        return Err(t.err_at(t.pos - 1, "rank", "rank 0"));
    }
    if rank1 != (rank == 1) {
        return Err(t.err_at(
            t.pos - 1,
            "rank",
            format!(
                "a rank-{rank} function in the {} list (rank-1 functions come first, under \
                 total_basis_size_rank1, higher ranks after, under total_basis_size)",
                if rank1 { "rank-1" } else { "higher-rank" }
            ),
        ));
    }
    t.expect(K, "ndens=")?;
    let nd = t.usize("ndens", c.ndensity)?;
    if nd != c.ndensity {
        return Err(t.err_at(
            t.pos - 1,
            "ndens",
            format!("{nd} where ndensitymax is {}", c.ndensity),
        ));
    }
    t.expect(K, "mu0=")?;
    t.usize("mu0", c.ne - 1)?;
    let list = |t: &mut Tokens, key: &str, max: usize, one_based: bool| {
        t.expect(key, &format!("{key}= ("))?;
        let v = (0..rank)
            .map(|_| {
                let x = t.usize(key, max)?;
                if one_based && x == 0 {
                    return Err(t.err_at(t.pos - 1, key, "radial indices start at 1"));
                }
                Ok(x as u16)
            })
            .collect::<Result<Vec<u16>, _>>()?;
        t.expect(key, ")")?;
        Ok::<_, PaceError>(v)
    };
    let mus = list(t, "mu", c.ne - 1, false)?;
    let nmax = if rank == 1 { c.nradbase } else { c.nradmax };
    let ns = list(t, "n", nmax, true)?;
    let ls = list(t, "l", c.lmax, false)?;
    if rank == 1 && ls[0] != 0 {
        // The l list ends with its ')', on the l= line.
        return Err(t.err_at(t.pos - 1, "l", "a rank-1 function must have l = 0"));
    }
    t.expect(K, "num_ms=")?;
    let nms = t.usize("num_ms", 1 << 20)?;
    // Capacity bounded by what the file still holds (a header may lie about num_ms).
    let mut ms = Vec::with_capacity((nms * rank).min(t.remaining()));
    let mut coefs = Vec::with_capacity((nms * nd).min(t.remaining()));
    for _ in 0..nms {
        t.expect("ms", "<")?;
        for r in 0..rank {
            let m = t.i32("ms")?;
            if m.unsigned_abs() > u32::from(ls[r]) {
                t.pos -= 1;
                return Err(t.err(
                    "ms",
                    format!("|m| = {} exceeds l = {}", m.unsigned_abs(), ls[r]),
                ));
            }
            ms.push(m as i8);
        }
        t.expect("ms", ">:")?;
        for _ in 0..nd {
            coefs.push(t.f64("ctilde")?);
        }
    }
    Ok(CFunc {
        mus,
        ns,
        ls,
        ms,
        coefs,
    })
}
