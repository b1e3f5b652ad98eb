//! pacemaker's B-basis potentials (`.yaml`, what `pacemaker` fits and `pair_style
//! pace/extrapolation` reads together with an active-set inverse `.asi`), read the way ML-PACE's
//! `ACEBBasisSet` reads them, for two uses:
//!
//! - energies and forces: the B-basis converted to the C-tilde form evaluated by
//!   [`PaceModel`] (as ML-PACE's `to_ACECTildeBasisSet` does: per (species, n, l) tuple the
//!   generalized Clebsch–Gordan coefficient times the B coefficient, summed per m-combination);
//! - extrapolation grades: per atom the projections on every B function in ML-PACE's order,
//!   linear (`B_k`) or through the linearised embedding (`dF/dρ_p · B_k`), and
//!   `γ = max_i |Σ_k x_k M[k][i]|` with the active-set inverse `M` ([`super::asi`]).
//!
//! A B function of rank `r` couples `r` atomic bases `A[μ_t][n_t][l_t][m_t]` to a rotation
//! invariant: `B = Σ_{m} C^{l,L}_{m} Re(Π_t A_t)`, with `C` the product of Clebsch–Gordan
//! coefficients along ML-PACE's coupling tree (pairs `(0,1)`, `(2,3)`, ... first, then their
//! intermediate `L`s — `lint` in the file — pairwise, an odd factor last), over the m-tuples with
//! `Σ m = 0` whose first non-zero `m` is positive (the others doubled: the "half basis").
//!
//! Order of the projections (what the rows of `.asi` matrices refer to): per central species,
//! the functions of every species block in file order (`skip: true` ones left out), sorted by
//! (rank, species, n, l, number of m-combinations, m-combinations) with the very algorithm of
//! libstdc++'s `std::sort` (introsort) after each block and once more at the end, as ML-PACE does
//! — ties (same n, l but different `lint`) keep ML-PACE's order; then each function's factors are
//! put in (species, n, l) order and equal m-tuples merged (`order_and_compress`); rank-1
//! functions first, then the others. Non-linear projections are density-major:
//! `x[p * nfunctions + k]`.
//!
//! File format (`BBasisConfiguration::save`): top-level `global: {DeltaSplineBins}` and
//! `species:` a list of blocks; optional `metadata` and `auxdata` are ignored. A block
//! `speciesblock: "A"` holds the embedding of A (`ndensityi`, `npoti`, `parameters` = `[w0, m0,
//! w1, m1, ...]`, optional `rho_core_cut`, `drho_core_cut`), the radial basis of the pair A-A
//! (`lmaxi`, `nradmaxi`, `nradbaseij`, `radbase`, `radparameters`, `radcoefficients[n][l][k]`,
//! `rcutij`, `dcutij`), the inner cutoff (`core-repulsion: [prefactor, λ]`, `inner_cutoff_type`,
//! `r_in`, `delta_in`) and `nbody:` functions `{type: "A A A", nr: [..], nl: [..], lint: [..],
//! c: [one per density], skip: false}`. A block `"A B"` holds the radial basis of the pair A-B
//! (or takes it from `"B A"`) and functions centred on A with neighbours of both species; blocks
//! of three or more species hold functions only. Elements are indexed in lexicographic order of
//! their names, as in ML-PACE.
//!
//! As in ML-PACE, older files are read too: flat `radcoefficients` (reshaped with k slowest, then
//! n, then l), embedding settings in blocks of several species (ignored), a scalar `c` for one
//! density, `lint` given below rank 3 (ignored). Where ML-PACE would crash, read undefined
//! values or silently ignore a typo, this reader refuses the file naming the key and line:
//! unknown keys (except inside `metadata` and `auxdata`), a missing embedding or bond (ML-PACE
//! would give the pair a zero cutoff), a species block given twice, `radcoefficients` of another
//! shape than declared (ML-PACE ignores extra values), functions without any valid
//! m-combination, the pre-`nbody` `density:` layout, and ML-PACE's `TEST_*` stub radial bases.
//!
//! One difference in what is computed: when the species of a potential have different numbers
//! of densities, ML-PACE's non-linear grade sums over `functions x (largest ndensity)` entries of
//! each atom's projection vector, reading past the species' own matrix (multiplied by zeros); here
//! the sum stops at the species' own size, which is the same number unless that memory holds a
//! NaN or an infinity.

use super::asi::{self, ActiveSet};
use super::radial::{self, Family, InnerCutoff, PairSpec};
use super::read_yace::{Ctx, Kind, Node, join, parse_document};
use super::ylm::C64;
use super::{CFunc, Embedding, MAX_DENSITIES, PaceError, PaceModel, PaceScratch, SpeciesBasis};
use crate::neighbors;
use crate::structure::Structure;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

#[cfg(test)]
#[path = "tests_bbasis.rs"]
mod tests;

/// Most elements of one potential.
const MAX_ELEMENTS: usize = 64;
const MAX_RADIAL: usize = 1000;
/// Largest rank of a function (ML-PACE has no limit; 8 is beyond any fitted potential).
const MAX_RANK: usize = 10;
/// Most m-tuples one function may enumerate (`Π (2 l_t + 1)`).
const MAX_M_SPACE: u64 = 20_000_000;
/// Most m-combinations of all functions together.
const MAX_TOTAL_COMBS: usize = 50_000_000;
/// Most m-tuples enumerated for all functions together (`Π_{t>0} (2 l_t + 1)` each).
const MAX_TOTAL_M_SPACE: u64 = 100_000_000;
/// Most (node, function) entries of the radial look-up tables of all pairs (as for `.yace`).
const MAX_TABLE_ENTRIES: f64 = (1u64 << 26) as f64;

// ---------------------------------------------------------------------------------------------
// Public interface.

/// A B-basis potential: its C-tilde model and its B functions in ML-PACE's order.
#[derive(Clone, Debug)]
pub struct BBasisPotential {
    model: PaceModel,
    species: Vec<BSpecies>,
}

/// The B functions of one central species, flat for evaluation.
#[derive(Clone, Debug, Default)]
struct BSpecies {
    ndensity: usize,
    /// Rank-1 functions: index of their `A1` (`μ * nradbase + n - 1`).
    r1_idx: Vec<u32>,
    /// Rank > 1, per function: its number of m-combinations.
    ncomb: Vec<u32>,
    /// Per m-combination: its rank and generalized Clebsch–Gordan coefficient.
    rank: Vec<u8>,
    cg: Vec<f64>,
    /// Per factor: the index of its `A` (`(μ * nradmax + n - 1) * (lmax+1)² + l² + l + m`).
    idx: Vec<u32>,
    /// Per function (rank 1 first) and density: its coefficient, `coefs[k * ndensity + p]`.
    coefs: Vec<f64>,
    /// Per function: `type`, `nr`, `nl`, `lint` as in the file (after compression's reorder).
    labels: Vec<String>,
}

impl BSpecies {
    fn nfunctions(&self) -> usize {
        self.r1_idx.len() + self.ncomb.len()
    }
}

impl BBasisPotential {
    /// Read a B-basis `.yaml` file.
    pub fn load(path: &Path) -> Result<BBasisPotential, PaceError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| PaceError::Io(format!("{name}: cannot read: {e}")))?;
        BBasisPotential::parse(&name, &text)
    }

    /// Parse the text of a B-basis `.yaml` file (`name` names it in errors).
    pub fn parse(name: &str, text: &str) -> Result<BBasisPotential, PaceError> {
        let root = parse_document(name, text)?;
        let c = Ctx { file: name };
        let cfg = read_config(&c, &root)?;
        build(&c, cfg)
    }

    /// The C-tilde model (energies, forces, virials).
    pub fn model(&self) -> &PaceModel {
        &self.model
    }

    /// Element names, in species-index order (lexicographic).
    pub fn elements(&self) -> &[String] {
        &self.model.elements
    }

    /// Number of densities of species `si`.
    pub fn ndensity(&self, si: usize) -> usize {
        self.species[si].ndensity
    }

    /// Number of B functions of species `si` (rank 1 included).
    pub fn nfunctions(&self, si: usize) -> usize {
        self.species[si].nfunctions()
    }

    /// Length of the non-linear projections [`BBasisPotential::atom_projections`] of species
    /// `si`: densities x functions.
    pub fn nprojections(&self, si: usize) -> usize {
        self.species[si].ndensity * self.species[si].nfunctions()
    }

    /// Length of the linear projections [`BBasisPotential::atom_projections_linear`]: the
    /// number of functions.
    pub fn nprojections_linear(&self, si: usize) -> usize {
        self.species[si].nfunctions()
    }

    /// Per species the (linear, non-linear) projection counts, what an `.asi` matrix may have.
    pub fn projection_sizes(&self) -> Vec<(usize, usize)> {
        (0..self.species.len())
            .map(|s| (self.nprojections_linear(s), self.nprojections(s)))
            .collect()
    }

    /// The B functions of species `si` in projection order, as `type nr nl lint` text.
    pub fn function_labels(&self, si: usize) -> &[String] {
        &self.species[si].labels
    }

    /// Read the active-set inverse `.asi` of this potential.
    pub fn read_active_set(&self, path: &Path) -> Result<ActiveSet, PaceError> {
        asi::read_asi(path, self.elements(), &self.projection_sizes())
    }

    /// Linear projections of an atom of species `si` (neighbours `rij[k] = x_j - x_i` of species
    /// `sj[k]`, `-1` ignored): `out[k] = B_k`, ML-PACE's `projections`.
    pub fn atom_projections_linear(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        out: &mut [f64],
    ) -> Result<(), PaceError> {
        self.model.accumulate(ws, si, rij, sj)?;
        self.atom_projections_linear_from_base(ws, si, out);
        Ok(())
    }

    /// [`BBasisPotential::atom_projections_linear`] from the atomic base already in `ws` (see
    /// [`PaceModel::atom_projections_from_base`]).
    pub fn atom_projections_linear_from_base(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        out: &mut [f64],
    ) {
        let nf = self.species[si].nfunctions();
        assert_eq!(out.len(), nf, "projection buffer size");
        self.densities(ws, si, out);
    }

    /// Non-linear projections of an atom (the linearised embedding): `out[p * nf + k] =
    /// dF/dρ_p · B_k` with `nf` the number of functions, ML-PACE's `dE_dc` (the derivative
    /// before the core-repulsion switch `f_cut` is applied, as there).
    pub fn atom_projections(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
        out: &mut [f64],
    ) -> Result<(), PaceError> {
        self.model.accumulate(ws, si, rij, sj)?;
        self.atom_projections_from_base(ws, si, out);
        Ok(())
    }

    /// [`BBasisPotential::atom_projections`] from the atomic base already in `ws` (see
    /// [`PaceModel::atom_projections_from_base`]).
    pub fn atom_projections_from_base(&self, ws: &mut PaceScratch, si: usize, out: &mut [f64]) {
        let sp = &self.species[si];
        let (nd, nf) = (sp.ndensity, sp.nfunctions());
        assert_eq!(out.len(), nd * nf, "projection buffer size");
        self.densities(ws, si, &mut out[..nf]);
        ws.drho.clear();
        ws.drho.resize(nd, 0.0);
        self.model.species[si].embedding.eval(&ws.rho, &mut ws.drho);
        // Density 0 last: its block holds the projections the others are made from.
        for p in (0..nd).rev() {
            let d = ws.drho[p];
            for k in 0..nf {
                out[p * nf + k] = d * out[k];
            }
        }
    }

    /// Energy of one atom evaluated through the B functions (ML-PACE's `ACEBEvaluator`
    /// energy): densities `ρ_p = Σ_k c_kp B_k`, embedding, core repulsion and its switch.
    pub fn atom_energy(
        &self,
        ws: &mut PaceScratch,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[i32],
    ) -> Result<f64, PaceError> {
        let nf = self.species[si].nfunctions();
        let sr = self.model.accumulate(ws, si, rij, sj)?;
        let mut proj = vec![0.0; nf];
        self.densities(ws, si, &mut proj);
        let sp = &self.model.species[si];
        ws.drho.clear();
        ws.drho.resize(ws.rho.len(), 0.0);
        let e_ace = sp.embedding.eval(&ws.rho, &mut ws.drho);
        let e = if sr.zbl {
            let fcut = if sr.kmin != usize::MAX {
                let mu = ws.mu[sr.kmin];
                let ne = self.model.nspecies();
                let dcut_in = self.model.pairs[si * ne + mu].spec.dcut_in;
                radial::poly_cutoff(dcut_in - sr.dmin, dcut_in, dcut_in).0
            } else {
                1.0
            };
            e_ace * fcut + sr.rho_core * (1.0 - fcut)
        } else {
            let (rc, drc) = (sp.rho_core_cut, sp.drho_core_cut);
            let fcut = if sr.rho_core >= rc {
                0.0
            } else if sr.rho_core <= rc - drc {
                1.0
            } else {
                radial::poly_cutoff(sr.rho_core, rc, drc).0
            };
            e_ace * fcut + sr.rho_core
        };
        Ok(e + sp.e0)
    }

    /// Per-atom extrapolation grades of a structure with an active set of this potential
    /// (linear or non-linear projections, as the active set's matrix sizes say).
    pub fn extrapolation_grades(
        &self,
        s: &Structure,
        active: &ActiveSet,
    ) -> Result<Vec<f64>, PaceError> {
        if active.elements != self.model.elements {
            return Err(PaceError::Data(format!(
                "the active set is for elements {} but the potential has {}",
                active.elements.join(" "),
                self.model.elements.join(" ")
            )));
        }
        for (si, m) in active.matrices.iter().enumerate() {
            let want = if active.linear {
                self.nprojections_linear(si)
            } else {
                self.nprojections(si)
            };
            if m.n != want || m.data.len() != m.n * m.n {
                return Err(PaceError::Data(format!(
                    "the active set of {} is {} x {} where the potential has {want} projections",
                    self.model.elements[si], m.n, m.n
                )));
            }
        }
        let species = self.species_of(s)?;
        let nl = neighbors::build(s, self.model.max_cutoff())
            .map_err(|e| PaceError::Data(e.to_string()))?;
        let mut ws = PaceScratch::default();
        let mut sj = vec![];
        let mut x = vec![];
        let mut out = Vec::with_capacity(s.len());
        for i in 0..s.len() {
            let range = nl.range(i);
            let rij = &nl.rij[range.clone()];
            sj.clear();
            sj.extend(nl.j[range].iter().map(|&j| species[j as usize]));
            let si = species[i] as usize;
            if active.linear {
                x.resize(self.nprojections_linear(si), 0.0);
                self.atom_projections_linear(&mut ws, si, rij, &sj, &mut x)?;
            } else {
                x.resize(self.nprojections(si), 0.0);
                self.atom_projections(&mut ws, si, rij, &sj, &mut x)?;
            }
            out.push(asi::gamma(&active.matrices[si], &x));
        }
        Ok(out)
    }

    /// Species index of every atom.
    fn species_of(&self, s: &Structure) -> Result<Vec<i32>, PaceError> {
        s.symbols
            .iter()
            .enumerate()
            .map(|(i, sym)| {
                self.model
                    .species_index(sym)
                    .map(|v| v as i32)
                    .ok_or_else(|| {
                        PaceError::Data(format!(
                            "atom {i}: species '{sym}' is not in the potential (elements: {})",
                            self.model.elements.join(" ")
                        ))
                    })
            })
            .collect()
    }

    /// Projections `B_k` into `out` (length: number of functions) and the densities into
    /// `ws.rho`, from the atomic base in `ws`, in ML-PACE's order of operations.
    fn densities(&self, ws: &mut PaceScratch, si: usize, out: &mut [f64]) {
        let sp = &self.species[si];
        let nd = sp.ndensity;
        let nr1 = sp.r1_idx.len();
        ws.rho.clear();
        ws.rho.resize(nd, 0.0);
        for (k, &i) in sp.r1_idx.iter().enumerate() {
            let a = ws.a1[i as usize];
            out[k] = a;
            for p in 0..nd {
                ws.rho[p] += sp.coefs[k * nd + p] * a;
            }
        }
        let (mut c, mut q) = (0usize, 0usize);
        for (f, &ncomb) in sp.ncomb.iter().enumerate() {
            let k = nr1 + f;
            let cf = &sp.coefs[k * nd..(k + 1) * nd];
            let mut proj = 0.0;
            for _ in 0..ncomb {
                let rank = sp.rank[c] as usize;
                let mut b = C64::new(1.0, 0.0);
                for &i in &sp.idx[q..q + rank] {
                    b = b.mul(ws.a[i as usize]);
                }
                let g = sp.cg[c];
                proj += b.re * g;
                for p in 0..nd {
                    ws.rho[p] += b.re * (g * cf[p]);
                }
                q += rank;
                c += 1;
            }
            out[k] = proj;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file as read.

/// One `nbody` entry.
#[derive(Clone, Debug)]
struct FuncSpec {
    key: String,
    line: usize,
    elements: Vec<String>,
    ns: Vec<u16>,
    ls: Vec<u16>,
    lint: Vec<u16>,
    coefs: Vec<f64>,
    skip: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct Radial {
    family: Family,
    lmax: usize,
    nradmax: usize,
    nradbase: usize,
    radparameters: Vec<f64>,
    /// `[n][l][k]` flat.
    crad: Vec<f64>,
    rcut: f64,
    dcut: f64,
}

#[derive(Clone, Debug)]
struct EmbSpec {
    ndensity: usize,
    npoti: String,
    params: Vec<f64>,
    rho_cut: f64,
    drho_cut: f64,
    line: usize,
}

#[derive(Clone, Debug)]
struct Block {
    key: String,
    line: usize,
    name: String,
    /// The names of `speciesblock`, a single one doubled (`A` -> `A A`).
    elements_vec: Vec<String>,
    nspecies: usize,
    emb: Option<EmbSpec>,
    radial: Option<Radial>,
    /// `core-repulsion` as given (`None`: not in the block).
    core: Option<[f64; 2]>,
    inner: String,
    inner_line: usize,
    r_in: f64,
    delta_in: f64,
    funcs: Vec<FuncSpec>,
}

struct Config {
    delta: f64,
    delta_line: usize,
    blocks: Vec<Block>,
}

const TOP_KEYS: [&str; 4] = ["metadata", "auxdata", "global", "species"];
const BLOCK_KEYS: [&str; 20] = [
    "speciesblock",
    "ndensityi",
    "npoti",
    "parameters",
    "rho_core_cut",
    "drho_core_cut",
    "nradmaxi",
    "lmaxi",
    "rcutij",
    "dcutij",
    "NameOfCutoffFunctionij",
    "r_in",
    "delta_in",
    "inner_cutoff_type",
    "nradbaseij",
    "radbase",
    "radparameters",
    "radcoefficients",
    "core-repulsion",
    "nbody",
];
const FUNC_KEYS: [&str; 6] = ["type", "nr", "nl", "lint", "c", "skip"];

/// Refuse keys of mapping `m` (at `path`) that are not in `known`.
fn known_keys(c: &Ctx, m: &Node, path: &str, known: &[&str]) -> Result<(), PaceError> {
    for (k, _) in c.entries(m, path)? {
        let name = k.text();
        if !known.contains(&name.as_str()) {
            let msg = if name == "density" {
                "the old B-basis layout (densities listed per block) is not supported; \
                 functions belong under 'nbody'"
                    .to_string()
            } else {
                format!("unknown key (known: {})", known.join(", "))
            };
            return Err(c.err(k.line, &join(path, &name), msg));
        }
    }
    Ok(())
}

fn read_config(c: &Ctx, root: &Node) -> Result<Config, PaceError> {
    if !matches!(root.kind, Kind::Map(_)) {
        return Err(c.err(
            root.line,
            "file",
            format!(
                "expected a mapping with 'global' and 'species' (a B-basis potential), found {}",
                root.what()
            ),
        ));
    }
    known_keys(c, root, "", &TOP_KEYS)?;
    let g = c.req(root, "", "global")?;
    known_keys(c, g, "global", &["DeltaSplineBins"])?;
    let dn = c.req(g, "global", "DeltaSplineBins")?;
    let delta = c.num(dn, "global.DeltaSplineBins")?;
    if delta <= 0.0 {
        return Err(c.err(
            dn.line,
            "global.DeltaSplineBins",
            format!("{delta} must be positive"),
        ));
    }
    let sn = c.req(root, "", "species")?;
    let items = c.list(sn, "species")?;
    if items.is_empty() {
        return Err(c.err(sn.line, "species", "no species blocks"));
    }
    let mut blocks = vec![];
    for (q, b) in items.iter().enumerate() {
        blocks.push(read_block(c, b, &format!("species[{q}]"))?);
    }
    Ok(Config {
        delta,
        delta_line: dn.line,
        blocks,
    })
}

fn split(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn read_block(c: &Ctx, v: &Node, key: &str) -> Result<Block, PaceError> {
    c.entries(v, key)?;
    known_keys(c, v, key, &BLOCK_KEYS)?;
    let k = |n: &str| join(key, n);
    let sb = c.req(v, key, "speciesblock")?;
    let name = c
        .scalar(sb, &k("speciesblock"), "element names")?
        .to_string();
    let mut elements_vec = split(&name);
    if elements_vec.is_empty() {
        return Err(c.err(sb.line, &k("speciesblock"), "no element names"));
    }
    let mut uniq = elements_vec.clone();
    uniq.sort();
    uniq.dedup();
    let nspecies = uniq.len();
    if elements_vec.len() == 1 {
        elements_vec.push(elements_vec[0].clone());
    }
    let num = |n: &str| -> Result<Option<(f64, usize)>, PaceError> {
        match c.get(v, n) {
            Some(x) => Ok(Some((c.num(x, &k(n))?, x.line))),
            None => Ok(None),
        }
    };
    // Embedding (one-species blocks).
    let emb = if nspecies == 1 {
        let nd_node = c.req(v, key, "ndensityi")?;
        let ndensity = c.int(nd_node, &k("ndensityi"), MAX_DENSITIES)?;
        if ndensity == 0 {
            return Err(c.err(nd_node.line, &k("ndensityi"), "must be at least 1"));
        }
        let np = c.req(v, key, "npoti")?;
        let npoti = c.scalar(np, &k("npoti"), "an embedding name")?.to_string();
        if let Err(m) = Embedding::new(&npoti, &[], 0) {
            return Err(c.err(np.line, &k("npoti"), m));
        }
        let pn = c.req(v, key, "parameters")?;
        let params = c.nums(pn, &k("parameters"))?;
        if params.len() != 2 * ndensity {
            return Err(c.err(
                pn.line,
                &k("parameters"),
                format!(
                    "{} values where ndensityi = {ndensity} needs {} ([w, m] per density)",
                    params.len(),
                    2 * ndensity
                ),
            ));
        }
        Some(EmbSpec {
            ndensity,
            npoti,
            params,
            rho_cut: num("rho_core_cut")?.map_or(100000.0, |x| x.0),
            drho_cut: num("drho_core_cut")?.map_or(250.0, |x| x.0),
            line: nd_node.line,
        })
    } else {
        // Embedding settings in blocks of several species are ignored, as ML-PACE does (older
        // pacemaker versions wrote `rho_core_cut` there).
        None
    };
    // Radial basis.
    let radial = if c.get(v, "lmaxi").is_some() {
        if nspecies > 2 {
            return Err(c.err(
                c.req(v, key, "lmaxi")?.line,
                &k("lmaxi"),
                format!(
                    "a radial basis in the {nspecies}-species block '{name}' (radial bases \
                     belong to one- and two-species blocks)"
                ),
            ));
        }
        Some(read_radial(c, v, key)?)
    } else {
        for n in [
            "nradmaxi",
            "nradbaseij",
            "radbase",
            "radparameters",
            "radcoefficients",
        ] {
            if let Some(x) = c.get(v, n) {
                return Err(c.err(
                    x.line,
                    &k(n),
                    "the radial basis is partially defined (no 'lmaxi' in this block)",
                ));
            }
        }
        None
    };
    // Inner cutoff and core repulsion.
    let core = match c.get(v, "core-repulsion") {
        Some(x) => {
            let vals = c.nums(x, &k("core-repulsion"))?;
            let [pre, lam] = vals[..] else {
                return Err(c.err(
                    x.line,
                    &k("core-repulsion"),
                    format!(
                        "{} values where [prefactor, lambda] is expected",
                        vals.len()
                    ),
                ));
            };
            Some([pre, lam])
        }
        None => None,
    };
    let (inner, inner_line) = match c.get(v, "inner_cutoff_type") {
        Some(x) => {
            let t = c.scalar(x, &k("inner_cutoff_type"), "an inner cutoff type")?;
            if !matches!(t, "density" | "distance" | "zbl") {
                return Err(c.err(
                    x.line,
                    &k("inner_cutoff_type"),
                    format!("unknown inner cutoff type '{t}' (supported: density, distance, zbl)"),
                ));
            }
            (t.to_string(), x.line)
        }
        // ML-PACE's default for files written before the inner cutoffs existed.
        None => ("density".to_string(), sb.line),
    };
    let r_in = num("r_in")?.map_or(0.0, |x| x.0);
    let delta_in = num("delta_in")?.map_or(0.0, |x| x.0);
    // Functions.
    let mut funcs = vec![];
    if let Some(nb) = c.get(v, "nbody") {
        let items: &[Node] = match &nb.kind {
            Kind::Null => &[],
            _ => c.list(nb, &k("nbody"))?,
        };
        for (q, f) in items.iter().enumerate() {
            let fk = format!("{key}.nbody[{q}]");
            funcs.push(read_func(c, f, &fk, &elements_vec[0], &uniq, &name)?);
        }
    }
    Ok(Block {
        key: key.to_string(),
        line: sb.line,
        name,
        elements_vec,
        nspecies,
        emb,
        radial,
        core,
        inner,
        inner_line,
        r_in,
        delta_in,
        funcs,
    })
}

fn read_radial(c: &Ctx, v: &Node, key: &str) -> Result<Radial, PaceError> {
    let k = |n: &str| join(key, n);
    let int = |n: &str, max: usize| c.int(c.req(v, key, n)?, &k(n), max);
    let lmax = int("lmaxi", super::ylm::LMAX_SUPPORTED)?;
    let nradmax = int("nradmaxi", MAX_RADIAL)?;
    let nradbase = int("nradbaseij", MAX_RADIAL)?;
    let rb = c.req(v, key, "radbase")?;
    let rbname = c.scalar(rb, &k("radbase"), "a radial basis name")?;
    let family = Family::from_name(rbname).ok_or_else(|| {
        c.err(
            rb.line,
            &k("radbase"),
            format!(
                "unknown radial basis '{rbname}' (supported: ChebExpCos, ChebPow, ChebLinear, \
                 SBessel)"
            ),
        )
    })?;
    let rp = c.req(v, key, "radparameters")?;
    let radparameters = c.nums(rp, &k("radparameters"))?;
    if radparameters.is_empty() {
        return Err(c.err(rp.line, &k("radparameters"), "empty (the first value is λ)"));
    }
    let rc_key = k("radcoefficients");
    let rc = c.req(v, key, "radcoefficients")?;
    let shape = format!(
        "[nradmaxi = {nradmax}][lmaxi + 1 = {}][nradbaseij = {nradbase}]",
        lmax + 1
    );
    let outer = c.list(rc, &rc_key)?;
    let total = nradmax * (lmax + 1) * nradbase;
    if outer
        .first()
        .is_some_and(|x| matches!(x.kind, Kind::Scalar(_)))
    {
        // The old flat layout, which ML-PACE reshapes: k slowest, then n, then l.
        let flat = c.nums(rc, &rc_key)?;
        if flat.len() != total {
            return Err(c.err(
                rc.line,
                &rc_key,
                format!(
                    "{} numbers in the flat (old) layout where {shape} needs {total}",
                    flat.len()
                ),
            ));
        }
        let mut crad = vec![0.0; total];
        let mut j = 0;
        for k in 0..nradbase {
            for n in 0..nradmax {
                for l in 0..=lmax {
                    crad[(n * (lmax + 1) + l) * nradbase + k] = flat[j];
                    j += 1;
                }
            }
        }
        return finish_radial(
            c,
            v,
            key,
            family,
            (lmax, nradmax, nradbase),
            radparameters,
            crad,
        );
    }
    if outer.len() != nradmax {
        return Err(c.err(
            rc.line,
            &rc_key,
            format!("{} lists where the shape is {shape}", outer.len()),
        ));
    }
    let mut crad = Vec::with_capacity(total);
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
    finish_radial(
        c,
        v,
        key,
        family,
        (lmax, nradmax, nradbase),
        radparameters,
        crad,
    )
}

/// The cutoffs of a radial basis and the whole of it.
fn finish_radial(
    c: &Ctx,
    v: &Node,
    key: &str,
    family: Family,
    (lmax, nradmax, nradbase): (usize, usize, usize),
    radparameters: Vec<f64>,
    crad: Vec<f64>,
) -> Result<Radial, PaceError> {
    let k = |n: &str| join(key, n);
    let rn = c.req(v, key, "rcutij")?;
    let rcut = c.num(rn, &k("rcutij"))?;
    if !(rcut > 0.0 && rcut <= 100.0) {
        return Err(c.err(
            rn.line,
            &k("rcutij"),
            format!("{rcut} is not in (0, 100] Å"),
        ));
    }
    let dcut = c.num(c.req(v, key, "dcutij")?, &k("dcutij"))?;
    if let Some(x) = c.get(v, "NameOfCutoffFunctionij") {
        c.scalar(x, &k("NameOfCutoffFunctionij"), "a name")?;
    }
    Ok(Radial {
        family,
        lmax,
        nradmax,
        nradbase,
        radparameters,
        crad,
        rcut,
        dcut,
    })
}

fn read_func(
    c: &Ctx,
    v: &Node,
    key: &str,
    mu0: &str,
    block_elements: &[String],
    block: &str,
) -> Result<FuncSpec, PaceError> {
    c.entries(v, key)?;
    known_keys(c, v, key, &FUNC_KEYS)?;
    let k = |n: &str| join(key, n);
    let tn = c.req(v, key, "type")?;
    let elements = split(c.scalar(tn, &k("type"), "element names")?);
    match elements.first() {
        Some(e) if e == mu0 => {}
        _ => {
            return Err(c.err(
                tn.line,
                &k("type"),
                format!(
                    "'{}' does not start with the central element {mu0} of block '{block}'",
                    elements.join(" ")
                ),
            ));
        }
    }
    if let Some(e) = elements.iter().find(|e| !block_elements.contains(e)) {
        return Err(c.err(
            tn.line,
            &k("type"),
            format!("element {e} is not one of block '{block}'"),
        ));
    }
    let rank = elements.len() - 1;
    if rank == 0 {
        return Err(c.err(
            tn.line,
            &k("type"),
            "only the central element: a function needs at least one neighbour",
        ));
    }
    if rank > MAX_RANK {
        return Err(c.err(
            tn.line,
            &k("type"),
            format!("rank {rank} is above the supported {MAX_RANK}"),
        ));
    }
    let sized = |n: &str, max: usize, len: usize| -> Result<Vec<u16>, PaceError> {
        let node = c.req(v, key, n)?;
        let vals = c.ints(node, &k(n), max)?;
        if vals.len() != len {
            return Err(c.err(
                node.line,
                &k(n),
                format!(
                    "{} values where '{}' (rank {rank}) needs {len}",
                    vals.len(),
                    elements.join(" ")
                ),
            ));
        }
        Ok(vals.into_iter().map(|x| x as u16).collect())
    };
    let ns = sized("nr", MAX_RADIAL, rank)?;
    if ns.contains(&0) {
        let n = c.req(v, key, "nr")?;
        return Err(c.err(n.line, &k("nr"), "radial indices start at 1"));
    }
    let ls = sized("nl", super::ylm::LMAX_SUPPORTED, rank)?;
    let lint = if rank > 2 {
        sized("lint", 2 * super::ylm::LMAX_SUPPORTED, rank - 2)?
    } else {
        // ML-PACE does not read `lint` below rank 3.
        vec![]
    };
    let cn = c.req(v, key, "c")?;
    let coefs = match &cn.kind {
        Kind::Scalar(_) => vec![c.num(cn, &k("c"))?],
        _ => c.nums(cn, &k("c"))?,
    };
    let skip = match c.get(v, "skip") {
        None => false,
        Some(x) => match c.scalar(x, &k("skip"), "true or false")? {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "on" | "On" => true,
            "false" | "False" | "FALSE" | "no" | "No" | "off" | "Off" => false,
            t => return Err(c.err(x.line, &k("skip"), format!("'{t}' is not true or false"))),
        },
    };
    // ML-PACE's `validate_ls_LS`.
    let bad = |m: String| c.err(v.line, key, m);
    match rank {
        1 if ls[0] != 0 => return Err(bad("a rank-1 function must have nl = [0]".into())),
        2 if ls[0] != ls[1] => {
            return Err(bad(format!(
                "nl = {:?}: a rank-2 function couples equal l's",
                ls
            )));
        }
        3 | 5 if lint[rank - 3] != ls[rank - 1] => {
            return Err(bad(format!(
                "lint = {lint:?}: its last value must equal the last nl ({}) at rank {rank}",
                ls[rank - 1]
            )));
        }
        r if r >= 4 && r != 5 && lint[r - 3] != lint[r - 4] => {
            return Err(bad(format!(
                "lint = {lint:?}: its last two values must be equal at rank {rank}"
            )));
        }
        _ => {}
    }
    if ls.iter().map(|&l| l as u32).sum::<u32>() % 2 != 0 {
        return Err(bad(format!("nl = {ls:?}: the sum of the l's must be even")));
    }
    Ok(FuncSpec {
        key: key.to_string(),
        line: v.line,
        elements,
        ns,
        ls,
        lint,
        coefs,
        skip,
    })
}

// ---------------------------------------------------------------------------------------------
// From the file to the potential.

/// A B function while the basis is built (ML-PACE's `ACEBBasisFunction`).
#[derive(Clone, Debug)]
struct BFunc {
    rank: usize,
    mu0: u16,
    mus: Vec<u16>,
    ns: Vec<u16>,
    ls: Vec<u16>,
    lint: Vec<u16>,
    coefs: Vec<f64>,
    /// `ms[c * rank + t]`.
    ms: Vec<i8>,
    /// Generalized Clebsch–Gordan coefficient per m-combination.
    cg: Vec<f64>,
}

/// ML-PACE's `compare` of basis functions: rank, central species, species, n, l, number of
/// m-combinations, the m-combinations (`lint` is not compared).
fn less(a: &BFunc, b: &BFunc) -> bool {
    a.rank
        .cmp(&b.rank)
        .then(a.mu0.cmp(&b.mu0))
        .then_with(|| a.mus.cmp(&b.mus))
        .then_with(|| a.ns.cmp(&b.ns))
        .then_with(|| a.ls.cmp(&b.ls))
        .then(a.cg.len().cmp(&b.cg.len()))
        .then_with(|| a.ms.cmp(&b.ms))
        == Ordering::Less
}

fn build(c: &Ctx, cfg: Config) -> Result<BBasisPotential, PaceError> {
    let Config {
        delta,
        delta_line,
        mut blocks,
    } = cfg;
    // One block per species tuple.
    for (i, b) in blocks.iter().enumerate() {
        if let Some(prev) = blocks[..i]
            .iter()
            .find(|p| p.elements_vec == b.elements_vec)
        {
            return Err(c.err(
                b.line,
                &join(&b.key, "speciesblock"),
                format!(
                    "block '{}' is given twice (also {} on line {})",
                    b.name, prev.key, prev.line
                ),
            ));
        }
    }
    // Two-species blocks take the radial basis and core repulsion of their dual ('A B' <-> 'B
    // A') when they have none, as ML-PACE's reader does; both given must agree.
    for i in 0..blocks.len() {
        if blocks[i].nspecies != 2 {
            continue;
        }
        let dual_vec = vec![
            blocks[i].elements_vec[1].clone(),
            blocks[i].elements_vec[0].clone(),
        ];
        let Some(j) = blocks.iter().position(|b| b.elements_vec == dual_vec) else {
            if blocks[i].radial.is_none() {
                let b = &blocks[i];
                return Err(c.err(
                    b.line,
                    &b.key,
                    format!(
                        "block '{}' has no radial basis (lmaxi, nradmaxi, ...) and there is no \
                         block '{}' to take it from",
                        b.name,
                        dual_vec.join(" ")
                    ),
                ));
            }
            continue;
        };
        match (blocks[i].radial.is_some(), blocks[j].radial.is_some()) {
            (false, false) => {
                let b = &blocks[i];
                return Err(c.err(
                    b.line,
                    &b.key,
                    format!(
                        "the radial basis is defined neither in block '{}' nor in '{}'",
                        b.name, blocks[j].name
                    ),
                ));
            }
            (false, true) => blocks[i].radial = blocks[j].radial.clone(),
            (true, false) => blocks[j].radial = blocks[i].radial.clone(),
            (true, true) => {
                let (a, b) = (&blocks[i], &blocks[j]);
                if a.radial != b.radial
                    || a.r_in != b.r_in
                    || a.delta_in != b.delta_in
                    || a.inner != b.inner
                {
                    return Err(c.err(
                        b.line,
                        &b.key,
                        format!(
                            "the radial basis of block '{}' differs from that of '{}' ({}, \
                             line {}): a pair has one radial basis",
                            b.name, a.name, a.key, a.line
                        ),
                    ));
                }
            }
        }
        match (blocks[i].core.is_some(), blocks[j].core.is_some()) {
            (false, true) => copy_core(&mut blocks, j, i),
            (true, false) => copy_core(&mut blocks, i, j),
            (true, true) => {
                let (a, b) = (&blocks[i], &blocks[j]);
                if a.core != b.core || a.r_in != b.r_in || a.delta_in != b.delta_in {
                    return Err(c.err(
                        b.line,
                        &b.key,
                        format!(
                            "core repulsion or inner cutoff (r_in, delta_in) of block '{}' \
                             differs from that of '{}' ({}, line {})",
                            b.name, a.name, a.key, a.line
                        ),
                    ));
                }
            }
            (false, false) => {}
        }
    }
    // Elements in lexicographic order.
    let mut elements: Vec<String> = blocks
        .iter()
        .flat_map(|b| b.elements_vec.iter().cloned())
        .collect();
    elements.sort();
    elements.dedup();
    let ne = elements.len();
    if ne > MAX_ELEMENTS {
        return Err(c.err(
            blocks[0].line,
            "species",
            format!("{ne} elements (at most {MAX_ELEMENTS} supported)"),
        ));
    }
    let index = |e: &str| elements.iter().position(|x| x == e).expect("listed") as u16;
    // One inner cutoff type for all one- and two-species blocks.
    let pair_blocks: Vec<&Block> = blocks.iter().filter(|b| b.nspecies <= 2).collect();
    let inner_name = pair_blocks.first().map(|b| b.inner.clone());
    for b in &pair_blocks {
        if Some(&b.inner) != inner_name.as_ref() {
            return Err(c.err(
                b.inner_line,
                &join(&b.key, "inner_cutoff_type"),
                format!(
                    "'{}' where block '{}' has '{}': inner_cutoff_type must be the same in all \
                     one- and two-species blocks",
                    b.inner,
                    pair_blocks[0].name,
                    inner_name.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    let inner = match inner_name.as_deref() {
        Some("distance") => InnerCutoff::Distance,
        Some("zbl") => InnerCutoff::Zbl,
        _ => InnerCutoff::Density,
    };
    // Bonds and embeddings.
    let mut bonds: Vec<Option<&Block>> = vec![None; ne * ne];
    let mut embs: Vec<Option<&Block>> = vec![None; ne];
    for b in &blocks {
        if b.nspecies > 2 {
            continue;
        }
        let (i, j) = (
            index(&b.elements_vec[0]) as usize,
            index(&b.elements_vec[1]) as usize,
        );
        if b.radial.is_none() {
            return Err(c.err(
                b.line,
                &b.key,
                format!(
                    "block '{}' has no radial basis (lmaxi, nradmaxi, nradbaseij, radbase, \
                     radparameters, radcoefficients, rcutij, dcutij)",
                    b.name
                ),
            ));
        }
        bonds[i * ne + j] = Some(b);
        if b.emb.is_some() {
            embs[i] = Some(b);
        }
    }
    for (p, b) in bonds.iter().enumerate() {
        if b.is_none() {
            return Err(c.err(
                blocks[0].line,
                "species",
                format!(
                    "no radial basis for the pair {}-{}: blocks '{}' (or '{} {}' for a pair) are \
                     needed for every element and pair of elements",
                    elements[p / ne],
                    elements[p % ne],
                    elements[p / ne],
                    elements[p / ne],
                    elements[p % ne]
                ),
            ));
        }
    }
    let bonds: Vec<&Block> = bonds.into_iter().map(|b| b.expect("checked")).collect();
    let rad = |p: usize| bonds[p].radial.as_ref().expect("checked");
    let embs: Vec<&Block> = embs
        .into_iter()
        .enumerate()
        .map(|(mu, e)| {
            e.ok_or_else(|| {
                c.err(
                    blocks[0].line,
                    "species",
                    format!(
                        "no embedding for {}: its block (speciesblock: {}) with ndensityi, \
                         npoti and parameters is missing",
                        elements[mu], elements[mu]
                    ),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let nds: Vec<usize> = embs
        .iter()
        .map(|b| b.emb.as_ref().expect("one-species block").ndensity)
        .collect();
    // Global sizes.
    let lmax = (0..ne * ne).map(|p| rad(p).lmax).max().unwrap_or(0);
    let nradmax = (0..ne * ne).map(|p| rad(p).nradmax).max().unwrap_or(0);
    let nradbase = (0..ne * ne).map(|p| rad(p).nradbase).max().unwrap_or(0);
    let cutoffmax = (0..ne * ne).map(|p| rad(p).rcut).fold(0.0, f64::max);
    if nradbase == 0 {
        return Err(c.err(
            bonds[0].line,
            &join(&bonds[0].key, "nradbaseij"),
            "nradbaseij is 0 in every block: no radial basis",
        ));
    }
    let nl = lmax + 1;
    let per_pair = nradmax * nl * nradbase;
    if per_pair.saturating_mul(ne * ne) > 1 << 24 {
        return Err(c.err(
            bonds[0].line,
            &bonds[0].key,
            format!(
                "{ne}x{ne} pairs of nradmax x (lmax + 1) x nradbase = {nradmax} x {nl} x \
                 {nradbase} radial coefficients: too many"
            ),
        ));
    }
    let entries: f64 = (0..ne * ne)
        .map(|p| (rad(p).rcut / delta).floor() * (nradbase + nradmax * nl + 1) as f64)
        .sum();
    if entries > MAX_TABLE_ENTRIES {
        return Err(c.err(
            delta_line,
            "global.DeltaSplineBins",
            format!(
                "the radial look-up tables of all pairs would take {:.1} GB: too large \
                 (increase DeltaSplineBins)",
                entries * 32.0 / 1e9
            ),
        ));
    }
    // Radial functions of every pair, padded to the global sizes.
    let mut pairs = Vec::with_capacity(ne * ne);
    for p in 0..ne * ne {
        let (b, r) = (bonds[p], rad(p));
        let mut crad = vec![0.0; per_pair];
        let bl = r.lmax + 1;
        for n in 0..r.nradmax {
            for l in 0..bl {
                for k in 0..r.nradbase {
                    crad[(n * nl + l) * nradbase + k] = r.crad[(n * bl + l) * r.nradbase + k];
                }
            }
        }
        let z = |e: &str| crate::model::core::atomic_number(e);
        let (zi, zj) = (z(&elements[p / ne]), z(&elements[p % ne]));
        if inner == InnerCutoff::Zbl && (zi == 0 || zj == 0) {
            return Err(c.err(
                b.line,
                &join(&b.key, "speciesblock"),
                format!(
                    "'{}' is not made of element symbols with a known atomic number (H to Pu), \
                     which the ZBL core repulsion needs",
                    b.name
                ),
            ));
        }
        let core = b.core.unwrap_or([0.0, 0.0]);
        pairs.push(PairSpec {
            family: r.family,
            lambda: r.radparameters[0],
            cut: r.rcut,
            dcut: r.dcut,
            cut_in: b.r_in,
            dcut_in: b.delta_in,
            inner,
            pre: core[0],
            lambda_hc: core[1],
            z: (zi, zj),
            crad,
        });
    }
    // The B functions of every central species, sorted after each block as ML-PACE does.
    let mut cgc = CgCache::default();
    let mut per_species: Vec<Vec<BFunc>> = vec![vec![]; ne];
    let mut total_combs = 0usize;
    let mut total_space = 0u64;
    let mut trees: HashMap<usize, Vec<[usize; 3]>> = HashMap::new();
    for b in &blocks {
        if b.funcs.is_empty() {
            continue;
        }
        let mu0 = index(&b.elements_vec[0]);
        let nd = nds[mu0 as usize];
        for f in &b.funcs {
            if f.skip {
                continue;
            }
            let fail = |m: String| c.err(f.line, &f.key, m);
            if f.coefs.len() != nd {
                return Err(c.err(
                    f.line,
                    &join(&f.key, "c"),
                    format!(
                        "{} coefficients where the embedding of {} has ndensityi = {nd}",
                        f.coefs.len(),
                        elements[mu0 as usize]
                    ),
                ));
            }
            let rank = f.ns.len();
            let mus: Vec<u16> = f.elements[1..].iter().map(|e| index(e)).collect();
            for t in 0..rank {
                let r = rad(mu0 as usize * ne + mus[t] as usize);
                let pair = format!("{}-{}", elements[mu0 as usize], elements[mus[t] as usize]);
                let (n, l) = (f.ns[t] as usize, f.ls[t] as usize);
                if rank == 1 && n > r.nradbase {
                    return Err(fail(format!(
                        "nr = {n} is above nradbaseij = {} of the pair {pair}",
                        r.nradbase
                    )));
                }
                if rank > 1 && n > r.nradmax {
                    return Err(fail(format!(
                        "nr = {n} is above nradmaxi = {} of the pair {pair}",
                        r.nradmax
                    )));
                }
                if l > r.lmax {
                    return Err(fail(format!(
                        "nl = {l} is above lmaxi = {} of the pair {pair}",
                        r.lmax
                    )));
                }
            }
            if let Some(&big) = f.lint.iter().max()
                && big as usize > 2 * lmax
            {
                return Err(fail(format!(
                    "lint {:?}: {big} is above 2 lmax = {}",
                    f.lint,
                    2 * lmax
                )));
            }
            let space: u64 = f.ls.iter().map(|&l| 2 * l as u64 + 1).product();
            if space > MAX_M_SPACE {
                return Err(fail(format!(
                    "{space} m-tuples to enumerate: more than the supported {MAX_M_SPACE}"
                )));
            }
            total_space += space / (2 * f.ls[0] as u64 + 1);
            if total_space > MAX_TOTAL_M_SPACE {
                return Err(fail(format!(
                    "more than {MAX_TOTAL_M_SPACE} m-tuples to enumerate in all: too large"
                )));
            }
            let tree = match trees.get(&rank) {
                Some(t) => t.clone(),
                None => {
                    let t = coupling_tree(rank)
                        .ok_or_else(|| fail(format!("no coupling tree for rank {rank}")))?;
                    trees.insert(rank, t.clone());
                    t
                }
            };
            let (ms, cg) = ms_cg_list(&f.ls, &f.lint, &tree, &mut cgc);
            if cg.is_empty() {
                return Err(fail(format!(
                    "nl = {:?}, lint = {:?}: no m-combination couples to an invariant (the l's \
                     and lint's violate a triangle condition)",
                    f.ls, f.lint
                )));
            }
            total_combs += cg.len();
            if total_combs > MAX_TOTAL_COMBS {
                return Err(fail(format!(
                    "more than {MAX_TOTAL_COMBS} m-combinations in all: too large"
                )));
            }
            per_species[mu0 as usize].push(BFunc {
                rank,
                mu0,
                mus,
                ns: f.ns.clone(),
                ls: f.ls.clone(),
                lint: f.lint.clone(),
                coefs: f.coefs.clone(),
                ms,
                cg,
            });
        }
        std_sort(&mut per_species[mu0 as usize], less);
    }
    for funcs in per_species.iter_mut() {
        std_sort(funcs, less);
        for f in funcs.iter_mut() {
            order_and_compress(f);
        }
    }
    // Evaluation arrays of the B functions.
    let nlm = nl * nl;
    let species_b: Vec<BSpecies> = per_species
        .iter()
        .enumerate()
        .map(|(mu, funcs)| {
            let nd = nds[mu];
            let mut s = BSpecies {
                ndensity: nd,
                ..Default::default()
            };
            let (r1, rest): (Vec<&BFunc>, Vec<&BFunc>) = funcs.iter().partition(|f| f.rank == 1);
            for f in r1.iter().chain(&rest) {
                s.coefs.extend_from_slice(&f.coefs);
                s.labels.push(label(f, &elements));
            }
            for f in &r1 {
                s.r1_idx
                    .push((f.mus[0] as usize * nradbase + f.ns[0] as usize - 1) as u32);
            }
            for f in &rest {
                s.ncomb.push(f.cg.len() as u32);
                for (cix, ms) in f.ms.chunks_exact(f.rank).enumerate() {
                    s.rank.push(f.rank as u8);
                    s.cg.push(f.cg[cix]);
                    for t in 0..f.rank {
                        let l = f.ls[t] as usize;
                        let i = (f.mus[t] as usize * nradmax + f.ns[t] as usize - 1) * nlm
                            + (l * l + l).wrapping_add_signed(ms[t] as isize);
                        s.idx.push(i as u32);
                    }
                }
            }
            s
        })
        .collect();
    // The C-tilde model.
    let mut species = Vec::with_capacity(ne);
    for (mu, funcs) in per_species.iter().enumerate() {
        let e = embs[mu].emb.as_ref().expect("one-species block");
        let embedding = Embedding::new(&e.npoti, &e.params, e.ndensity)
            .map_err(|m| c.err(e.line, &join(&embs[mu].key, "parameters"), m))?;
        let (rank1, rest) = to_ctilde(funcs, e.ndensity);
        species.push(SpeciesBasis {
            rank1,
            funcs: rest,
            embedding,
            rho_core_cut: e.rho_cut,
            drho_core_cut: e.drho_cut,
            e0: 0.0,
        });
    }
    let model = PaceModel::new(
        elements, lmax, nradbase, nradmax, cutoffmax, delta, pairs, species,
    )
    .map_err(|m| c.err(delta_line, "global.DeltaSplineBins", m))?;
    Ok(BBasisPotential {
        model,
        species: species_b,
    })
}

/// Core repulsion and inner cutoff of block `from` copied to block `to`.
fn copy_core(blocks: &mut [Block], from: usize, to: usize) {
    let (core, inner, r_in, delta_in) = {
        let f = &blocks[from];
        (f.core, f.inner.clone(), f.r_in, f.delta_in)
    };
    let t = &mut blocks[to];
    t.core = core;
    t.inner = inner;
    t.r_in = r_in;
    t.delta_in = delta_in;
}

fn label(f: &BFunc, elements: &[String]) -> String {
    let mut s = elements[f.mu0 as usize].clone();
    for &m in &f.mus {
        s.push(' ');
        s.push_str(&elements[m as usize]);
    }
    s.push_str(&format!(" nr={:?} nl={:?}", f.ns, f.ls));
    if !f.lint.is_empty() {
        s.push_str(&format!(" lint={:?}", f.lint));
    }
    s
}

/// ML-PACE's `order_and_compress_b_basis_function`: put the factors of every m-combination in
/// (species, n, l, m) order, merge equal m-tuples (summing their coefficients), drop those
/// below 1e-15, and keep the result only if it has fewer combinations.
fn order_and_compress(f: &mut BFunc) {
    let r = f.rank;
    let num = f.cg.len();
    if num == 0 {
        return;
    }
    let mut map: BTreeMap<Vec<i8>, f64> = BTreeMap::new();
    let mut sorted_first: Vec<(u16, u16, u16, i8, usize)> = vec![];
    for cix in 0..num {
        let mut v: Vec<(u16, u16, u16, i8, usize)> = (0..r)
            .map(|t| (f.mus[t], f.ns[t], f.ls[t], f.ms[cix * r + t], t))
            .collect();
        v.sort();
        let key: Vec<i8> = v.iter().map(|x| x.3).collect();
        *map.entry(key).or_insert(0.0) += f.cg[cix];
        if cix == 0 {
            sorted_first = v;
        }
    }
    map.retain(|_, g| g.abs() >= 1e-15);
    if map.len() < num {
        f.mus = sorted_first.iter().map(|x| x.0).collect();
        f.ns = sorted_first.iter().map(|x| x.1).collect();
        f.ls = sorted_first.iter().map(|x| x.2).collect();
        f.ms = map.keys().flatten().copied().collect();
        f.cg = map.values().copied().collect();
    }
}

/// ML-PACE's `to_ACECTildeBasisSet` for one central species: B functions grouped by their
/// (species, n, l), coefficients `c_p · C` summed per m-tuple; sorted like the B functions.
fn to_ctilde(funcs: &[BFunc], nd: usize) -> (Vec<CFunc>, Vec<CFunc>) {
    type Key = (Vec<u16>, Vec<u16>, Vec<u16>);
    let mut groups: BTreeMap<Key, BTreeMap<Vec<i8>, Vec<f64>>> = BTreeMap::new();
    for f in funcs {
        let g = groups
            .entry((f.mus.clone(), f.ns.clone(), f.ls.clone()))
            .or_default();
        for (cix, ms) in f.ms.chunks_exact(f.rank).enumerate() {
            let acc = g.entry(ms.to_vec()).or_insert_with(|| vec![0.0; nd]);
            for p in 0..nd {
                acc[p] += f.coefs[p] * f.cg[cix];
            }
        }
    }
    let mut out: Vec<CFunc> = groups
        .into_iter()
        .map(|((mus, ns, ls), combs)| CFunc {
            mus,
            ns,
            ls,
            ms: combs.keys().flatten().copied().collect(),
            coefs: combs.into_values().flatten().collect(),
        })
        .collect();
    // Distinct (species, n, l): a total order, any sort gives ML-PACE's.
    out.sort_by(|a, b| {
        a.rank()
            .cmp(&b.rank())
            .then_with(|| a.mus.cmp(&b.mus))
            .then_with(|| a.ns.cmp(&b.ns))
            .then_with(|| a.ls.cmp(&b.ls))
            .then((a.ms.len()).cmp(&b.ms.len()))
            .then_with(|| a.ms.cmp(&b.ms))
    });
    out.into_iter().partition(|f| f.rank() == 1)
}

// ---------------------------------------------------------------------------------------------
// Couplings.

/// ML-PACE's coupling tree of rank `r`: triples (factor or intermediate, factor or
/// intermediate, result); factors are `0..r`, intermediates `r..2r-2` (the `lint` values in
/// order), the final `L = 0` is `2r - 2`.
fn coupling_tree(r: usize) -> Option<Vec<[usize; 3]>> {
    if r < 2 {
        return Some(vec![]);
    }
    let last = 2 * r - 2;
    let mut ms_q: VecDeque<usize> = (0..r).collect();
    let mut big_q: VecDeque<usize> = (r..2 * r - 2).collect();
    let mut interm: VecDeque<Option<usize>> = VecDeque::new();
    let mut tree = vec![];
    let mut i_int = None;
    for _ in 0..r / 2 {
        let (i1, i2) = (ms_q.pop_front()?, ms_q.pop_front()?);
        i_int = big_q.pop_front();
        tree.push([i1, i2, i_int.unwrap_or(last)]);
        interm.push_back(i_int);
    }
    while interm.len() > 1 && i_int.is_some() {
        let (i1, i2) = (interm.pop_front()??, interm.pop_front()??);
        i_int = big_q.pop_front();
        tree.push([i1, i2, i_int.unwrap_or(last)]);
        interm.push_back(i_int);
    }
    if i_int.is_some() {
        let (i1, i2) = (interm.pop_front()??, ms_q.pop_front()?);
        tree.push([i1, i2, last]);
    }
    (tree.len() == r - 1).then_some(tree)
}

/// The m-tuples with `Σ m = 0` and a non-negative first non-zero `m` in ML-PACE's enumeration
/// order (`m_0` fastest), with their generalized Clebsch–Gordan coefficients (doubled when the
/// first non-zero `m` is positive); tuples with a zero coefficient are left out.
fn ms_cg_list(
    ls: &[u16],
    lint: &[u16],
    tree: &[[usize; 3]],
    cgc: &mut CgCache,
) -> (Vec<i8>, Vec<f64>) {
    let r = ls.len();
    let (mut ms_out, mut cg_out) = (vec![], vec![]);
    if r == 1 {
        if ls[0] == 0 {
            ms_out.push(0);
            cg_out.push(1.0);
        }
        return (ms_out, cg_out);
    }
    let mut big_l: Vec<i32> = ls.iter().map(|&l| l as i32).collect();
    big_l.extend(lint.iter().map(|&l| l as i32));
    big_l.push(0);
    let l: Vec<i32> = ls.iter().map(|&x| x as i32).collect();
    // m_1 .. m_{r-1} as an odometer (m_1 fastest); m_0 = -Σ the others, the least significant
    // digit of ML-PACE's enumeration index.
    let mut m: Vec<i32> = l.iter().map(|&x| -x).collect();
    let mut mm = vec![0i32; 2 * r - 1];
    'outer: loop {
        let rest: i32 = m[1..].iter().sum();
        m[0] = -rest;
        if m[0].abs() <= l[0] {
            let sign = m.iter().find(|&&x| x != 0).map_or(0, |&x| x.signum());
            if sign >= 0 {
                mm[..r].copy_from_slice(&m);
                let mut g = 1.0;
                let mut valid = true;
                for &[i1, i2, ic] in tree {
                    mm[ic] = mm[i1] + mm[i2];
                    if mm[i1].abs() > big_l[i1]
                        || mm[i2].abs() > big_l[i2]
                        || mm[ic].abs() > big_l[ic]
                    {
                        valid = false;
                        break;
                    }
                    g *= cgc.get(big_l[i1], mm[i1], big_l[i2], mm[i2], big_l[ic], mm[ic]);
                    if g == 0.0 {
                        break;
                    }
                }
                if valid && g != 0.0 {
                    if sign > 0 {
                        g *= 2.0;
                    }
                    ms_out.extend(m.iter().map(|&x| x as i8));
                    cg_out.push(g);
                }
            }
        }
        // Next tuple of m_1 .. m_{r-1}.
        for t in 1..r {
            if m[t] < l[t] {
                m[t] += 1;
                continue 'outer;
            }
            m[t] = -l[t];
        }
        break;
    }
    (ms_out, cg_out)
}

/// Clebsch–Gordan coefficients, cached.
#[derive(Default)]
struct CgCache {
    map: HashMap<[i32; 6], f64>,
    fact: Vec<Big>,
}

impl CgCache {
    fn get(&mut self, j1: i32, m1: i32, j2: i32, m2: i32, j: i32, m: i32) -> f64 {
        let key = [j1, m1, j2, m2, j, m];
        if let Some(&v) = self.map.get(&key) {
            return v;
        }
        let v = self.compute(j1, m1, j2, m2, j, m);
        self.map.insert(key, v);
        v
    }

    fn factorial(&mut self, n: usize) -> &Big {
        if self.fact.is_empty() {
            self.fact.push(Big::from_u64(1));
        }
        while self.fact.len() <= n {
            let k = self.fact.len();
            let mut next = self.fact[k - 1].clone();
            next.mul_small(k as u32);
            self.fact.push(next);
        }
        &self.fact[n]
    }

    /// `<j1 m1 j2 m2 | j m>` (Condon–Shortley phase) from Racah's formula in exact integer
    /// arithmetic, rounded once at the end (within about one unit in the last place).
    fn compute(&mut self, j1: i32, m1: i32, j2: i32, m2: i32, j: i32, m: i32) -> f64 {
        if m1 + m2 != m
            || j < (j1 - j2).abs()
            || j > j1 + j2
            || m1.abs() > j1
            || m2.abs() > j2
            || m.abs() > j
        {
            return 0.0;
        }
        let k = (j1 + j2 + j) as usize;
        let zmin = 0.max(j2 - j - m1).max(j1 - j + m2);
        let zmax = (j1 + j2 - j).min(j1 - m1).min(j2 + m2);
        let (mut pos, mut neg) = (Big::from_u64(0), Big::from_u64(0));
        for z in zmin..=zmax {
            let parts = [
                z,
                j1 + j2 - j - z,
                j1 - m1 - z,
                j2 + m2 - z,
                j - j2 + m1 + z,
                j - j1 - m2 + z,
            ];
            // K! / Π parts! (an integer: the parts sum to K), by exact division.
            let mut t = self.factorial(k).clone();
            for &a in &parts {
                for d in 2..=a as u32 {
                    let rem = t.div_small(d);
                    debug_assert_eq!(rem, 0);
                }
            }
            if z % 2 == 0 {
                pos = pos.plus(&t);
            } else {
                neg = neg.plus(&t);
            }
        }
        let (s, sign) = match pos.cmp_big(&neg) {
            Ordering::Equal => return 0.0,
            Ordering::Greater => (pos.minus(&neg), 1.0),
            Ordering::Less => (neg.minus(&pos), -1.0),
        };
        // C² = (2j+1) F S² / ((K+1)! (K!)²), F the product of nine factorials.
        let mut num = s.times(&s);
        num.mul_small((2 * j + 1) as u32);
        for a in [
            j + j1 - j2,
            j - j1 + j2,
            j1 + j2 - j,
            j + m,
            j - m,
            j1 - m1,
            j1 + m1,
            j2 - m2,
            j2 + m2,
        ] {
            let f = self.factorial(a as usize).clone();
            num = num.times(&f);
        }
        let kf = self.factorial(k).clone();
        let den = self.factorial(k + 1).clone().times(&kf).times(&kf);
        let (fa, ea) = num.mant_exp();
        let (fb, eb) = den.mant_exp();
        let mut ratio = fa / fb;
        let mut e = ea - eb;
        if e % 2 != 0 {
            ratio *= 2.0;
            e -= 1;
        }
        sign * scale2(ratio.sqrt(), e / 2)
    }
}

/// `x · 2^e` (exact while in range).
fn scale2(mut x: f64, mut e: i64) -> f64 {
    while e > 0 {
        let s = e.min(1000);
        x *= f64::from_bits(((1023 + s) as u64) << 52);
        e -= s;
    }
    while e < 0 {
        let s = (-e).min(1000);
        x /= f64::from_bits(((1023 + s) as u64) << 52);
        e += s;
    }
    x
}

/// A non-negative integer of any size (little-endian 32-bit limbs).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for limb in self.0.iter_mut() {
            let v = *limb as u64 * m as u64 + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    /// Divide by `d` in place, returning the remainder.
    fn div_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let v = (rem << 32) | *limb as u64;
            *limb = (v / d as u64) as u32;
            rem = v % d as u64;
        }
        self.trim();
        rem as u32
    }

    fn plus(&self, o: &Big) -> Big {
        let n = self.0.len().max(o.0.len());
        let mut out = Vec::with_capacity(n + 1);
        let mut carry = 0u64;
        for i in 0..n {
            let v = *self.0.get(i).unwrap_or(&0) as u64 + *o.0.get(i).unwrap_or(&0) as u64 + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        if carry > 0 {
            out.push(carry as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// `self - o` for `self >= o`.
    fn minus(&self, o: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let mut v = self.0[i] as i64 - *o.0.get(i).unwrap_or(&0) as i64 - borrow;
            borrow = 0;
            if v < 0 {
                v += 1 << 32;
                borrow = 1;
            }
            out.push(v as u32);
        }
        debug_assert_eq!(borrow, 0);
        let mut b = Big(out);
        b.trim();
        b
    }

    fn times(&self, o: &Big) -> Big {
        let mut out = vec![0u32; self.0.len() + o.0.len() + 1];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in o.0.iter().enumerate() {
                let v = out[i + j] as u64 + a as u64 * b as u64 + carry;
                out[i + j] = v as u32;
                carry = v >> 32;
            }
            let mut k = i + o.0.len();
            while carry > 0 {
                let v = out[k] as u64 + carry;
                out[k] = v as u32;
                carry = v >> 32;
                k += 1;
            }
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn cmp_big(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }

    /// `(f, e)` with `self ≈ f · 2^e`, `f` the top 64 bits rounded once to a double (a sticky
    /// bit keeps the rounding correct).
    fn mant_exp(&self) -> (f64, i64) {
        let bits = match self.0.last() {
            None => return (0.0, 0),
            Some(&top) => 32 * self.0.len() as i64 - top.leading_zeros() as i64,
        };
        let shift = (bits - 64).max(0);
        let mut top = 0u64;
        let mut sticky = false;
        for (i, &limb) in self.0.iter().enumerate() {
            for bit in 0..32 {
                if limb >> bit & 1 == 1 {
                    let pos = 32 * i as i64 + bit;
                    if pos >= shift {
                        top |= 1 << (pos - shift);
                    } else {
                        sticky = true;
                    }
                }
            }
        }
        if sticky {
            top |= 1;
        }
        (top as f64, shift)
    }
}

// ---------------------------------------------------------------------------------------------
// libstdc++'s std::sort.

/// Sort `v` exactly as libstdc++'s `std::sort` (introsort: median-of-three quicksort to
/// 16-element runs, heapsort below `2 log2 n` levels, then insertion sort), so that elements
/// that compare equal end up where ML-PACE (built with GCC) puts them.
fn std_sort<T: Clone>(v: &mut [T], less: fn(&T, &T) -> bool) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as usize;
    introsort_loop(v, 0, n, depth, less);
    final_insertion_sort(v, less);
}

const SORT_THRESHOLD: usize = 16;

fn introsort_loop<T: Clone>(
    v: &mut [T],
    first: usize,
    mut last: usize,
    mut depth: usize,
    less: fn(&T, &T) -> bool,
) {
    while last - first > SORT_THRESHOLD {
        if depth == 0 {
            heap_sort(&mut v[first..last], less);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(v, first, last, less);
        introsort_loop(v, cut, last, depth, less);
        last = cut;
    }
}

fn partition_pivot<T: Clone>(
    v: &mut [T],
    first: usize,
    last: usize,
    less: fn(&T, &T) -> bool,
) -> usize {
    let mid = first + (last - first) / 2;
    let (a, b, c) = (first + 1, mid, last - 1);
    // Median of three moved to `first`.
    let pick = if less(&v[a], &v[b]) {
        if less(&v[b], &v[c]) {
            b
        } else if less(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if less(&v[a], &v[c]) {
        a
    } else if less(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(first, pick);
    // Unguarded partition of [first + 1, last) around v[first].
    let (mut lo, mut hi) = (first + 1, last);
    loop {
        while less(&v[lo], &v[first]) {
            lo += 1;
        }
        hi -= 1;
        while less(&v[first], &v[hi]) {
            hi -= 1;
        }
        if lo >= hi {
            return lo;
        }
        v.swap(lo, hi);
        lo += 1;
    }
}

fn final_insertion_sort<T: Clone>(v: &mut [T], less: fn(&T, &T) -> bool) {
    let n = v.len();
    let guarded = n.min(SORT_THRESHOLD);
    // Guarded insertion sort of the first 16.
    for i in 1..guarded {
        if less(&v[i], &v[0]) {
            v[..=i].rotate_right(1);
        } else {
            linear_insert(v, i, less);
        }
    }
    // The smallest element is among the first 16: the rest needs no guard.
    for i in guarded..n {
        linear_insert(v, i, less);
    }
}

fn linear_insert<T: Clone>(v: &mut [T], mut last: usize, less: fn(&T, &T) -> bool) {
    let val = v[last].clone();
    while last > 0 && less(&val, &v[last - 1]) {
        v[last] = v[last - 1].clone();
        last -= 1;
    }
    v[last] = val;
}

fn heap_sort<T: Clone>(v: &mut [T], less: fn(&T, &T) -> bool) {
    let len = v.len();
    if len >= 2 {
        let mut parent = (len - 2) / 2;
        loop {
            let val = v[parent].clone();
            adjust_heap(v, parent, len, val, less);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        let val = v[last].clone();
        v[last] = v[0].clone();
        adjust_heap(&mut v[..last], 0, last, val, less);
    }
}

fn adjust_heap<T: Clone>(
    v: &mut [T],
    mut hole: usize,
    len: usize,
    val: T,
    less: fn(&T, &T) -> bool,
) {
    let top = hole;
    let mut second = hole;
    while second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if less(&v[second], &v[second - 1]) {
            second -= 1;
        }
        v[hole] = v[second].clone();
        hole = second;
    }
    if len.is_multiple_of(2) && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        v[hole] = v[second - 1].clone();
        hole = second - 1;
    }
    // Push `val` up from the hole.
    while hole > top {
        let parent = (hole - 1) / 2;
        if !less(&v[parent], &val) {
            break;
        }
        v[hole] = v[parent].clone();
        hole = parent;
    }
    v[hole] = val;
}
