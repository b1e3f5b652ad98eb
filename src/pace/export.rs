//! Export of aceuq's linear models to pacemaker's `.yace` (C-tilde basis), so that ML-PACE's
//! `pair_style pace` can run them and both codes can be timed on the same model.
//!
//! What maps exactly:
//! - the angular part: a real harmonic (orthonormal, no Condon–Shortley phase) is a combination
//!   of the complex `Y_{l,±m}` that ML-PACE uses (Condon–Shortley, times `sqrt(4π)`), so every
//!   real `A_{z n l m}` is `(1/sqrt(4π)) sum_{m'} U_{m m'} A^pace_{z n l m'}`; expanding every
//!   monomial of every basis function and collecting per m-combination gives complex C-tilde
//!   coefficients whose m-sums are 0 and whose imaginary parts vanish (the basis is rotation
//!   invariant and even under inversion), so `Re(prod A)` times a real coefficient, what ML-PACE
//!   evaluates, is the same function. Combinations `M` and `-M` have equal `Re(prod A)` and are
//!   merged (pacemaker's "half basis");
//! - the linear energy: one density, embedding `FinnisSinclairShiftedScaled` with `[1, 1]`,
//!   which ML-PACE evaluates as exactly `F(ρ) = ρ` (`FinnisSinclair` with m = 1 is linear only up
//!   to rounding), and `E0` per species.
//!
//! What is approximate:
//! - the radial functions: ours, `cos(n θ(r)) f_c(r)` with `θ` clamped below `r0`, are not a
//!   pacemaker family, so each `g_n` of each species pair is fitted by least squares (values and
//!   derivatives on a fine grid over `[r_lo, rc]`) with `nradbase` functions of a pacemaker
//!   family; `crad[n][l][k]` is that fit for every `l`, and the rank-1 functions (which ML-PACE
//!   evaluates on the base functions `g_k` directly) get the fitted combination as well;
//! - the short-range core: ours adds a switched pair ZBL to the ACE energy below the shortest
//!   training distance `r_out` of each pair. The closest pacemaker form is the `zbl` inner
//!   cutoff with `r_in = r_out`: the same energy whenever every neighbour of an atom is beyond its
//!   pair's `r_out` (the data region), but closer than that ML-PACE blends the atom's energy
//!   from ACE to ZBL (ACE off entirely below `r_in - delta_in`), where we keep the ACE energy
//!   and add the switched ZBL; ML-PACE's ZBL is also shifted to vanish at the pair cutoff instead
//!   of being switched off at `r_out`. `delta_in` is our switch width, or shorter so that the
//!   ACE energy is off below our `r0`: below `r0` our radial functions are clamped (a kink no
//!   smooth base follows), and the fit then never needs to cross it;
//! - without a core (or with `core: false`), the fit reaches down to `r0 / 2` with the points
//!   below `r0` weighted down (`below_weight`), which keeps the window accurate and the functions
//!   closer than the training data bounded but not equal to ours.
//!
//! The fidelity is measured, not assumed: [`compare`] evaluates the native model and the exported
//! one (read back from its own text by aceuq's `.yace` reader) on structures ([`probe_structures`]
//! or the user's), and [`core_probe`] on dimers inside the core region.
//!
//! Layer 2: imports `model` and `basis` (same layer and below), `structure`; nothing above.

use super::radial::{Family, InnerCutoff, PairSpec};
use super::ylm::C64;
use super::{CFunc, Embedding, PaceError, PaceModel, SpeciesBasis};
use crate::basis::radial::RadialBasis;
use crate::model::Model;
use crate::structure::Structure;
use std::collections::BTreeMap;
use std::f64::consts::PI;

/// How to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Radial base family of every pair.
    pub family: Family,
    /// Its parameter λ (`radparameters[0]`).
    pub lambda: f64,
    /// Number of radial base functions (`nradbasemax`).
    pub nradbase: usize,
    /// `dcut` of every bond (ChebExpCos's second envelope; with ZBL also the width over which
    /// ML-PACE's ZBL is shifted to zero at the cutoff), Å.
    pub dcut: f64,
    /// Spacing of ML-PACE's radial look-up tables (`deltaSplineBins`), Å.
    pub delta: f64,
    /// Lower end of the radial fit (Å); `None`: per pair with a core, where ML-PACE's switch
    /// from ACE to ZBL ends (the larger of the core's `r_in` and our `r0`, see [`export`]),
    /// else half of the pair's `r0`.
    pub fit_from: Option<f64>,
    /// Grid points of the radial fit per pair.
    pub grid: usize,
    /// Weight of the fit points below a pair's `r0`, where our functions are clamped (a kink
    /// at `r0` that no smooth base can follow: a small weight keeps the fit inside the window
    /// accurate).
    pub below_weight: f64,
    /// Export the ZBL core (as ML-PACE's `zbl` inner cutoff); `false` drops it.
    pub core: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            family: Family::ChebExpCos,
            // Nearly linear in r: our functions have uniform resolution in r.
            lambda: 0.01,
            nradbase: 32,
            dcut: 1e-4,
            delta: 0.001,
            fit_from: None,
            grid: 4000,
            below_weight: 1e-4,
            core: true,
        }
    }
}

/// How well one species pair's radial functions were fitted.
#[derive(Clone, Debug)]
pub struct PairFit {
    pub centre: String,
    pub neighbour: String,
    /// Fit range (Å).
    pub r_lo: f64,
    pub rc: f64,
    /// Start of our resolution window (Å); below it our functions are clamped (a kink).
    pub r0: f64,
    /// Largest |Δg_n| over `n` and `[max(r0, r_lo), rc]`, and over `[r_lo, r0]` (0 if empty).
    pub max_err_window: f64,
    pub max_err_below: f64,
    /// Largest |Δg_n'| (Å⁻¹) over the whole fit range.
    pub max_derr: f64,
}

/// How the core was exported.
#[derive(Clone, Debug, PartialEq)]
pub enum CoreExport {
    /// The model has no core, or it was dropped on request (`inner_cutoff_type: density` with no
    /// core repulsion: the ACE energy alone).
    None,
    /// ML-PACE's `zbl` inner cutoff with `(r_in, delta_in)` per ordered pair.
    Zbl(Vec<(f64, f64)>),
}

/// The result of [`export`].
#[derive(Clone, Debug)]
pub struct Exported {
    /// The `.yace` text.
    pub text: String,
    /// The potential read back from `text` by aceuq's reader (what the fidelity is measured on).
    pub pace: PaceModel,
    pub pairs: Vec<PairFit>,
    pub core: CoreExport,
    /// Largest |imaginary part| of a collected C-tilde coefficient and largest |coefficient| of
    /// an m-combination whose m-sum is not 0, each relative to the largest coefficient: both
    /// are 0 for an exactly invariant basis (round-off only), and are dropped.
    pub max_imag_rel: f64,
    pub max_nonzero_msum_rel: f64,
    /// Per species: rank-1 functions, other functions, their m-combinations.
    pub counts: Vec<(usize, usize, usize)>,
}

/// Narrowest ACE-to-ZBL switch that starts at our `r0` rather than at the core's `r_in` (Å).
const MIN_SWITCH: f64 = 0.05;

/// Most m-combinations of one C-tilde function (ML-PACE stores the count as an `int`; larger
/// groups are split, which is the same potential).
const MAX_COMBS: usize = 1 << 15;

/// Export `model` to a pacemaker C-tilde potential.
pub fn export(model: &Model, opts: &ExportOptions) -> Result<Exported, PaceError> {
    let bad = |m: String| Err(PaceError::Data(m));
    let ns = model.nspecies();
    if !(opts.nradbase >= 2 && opts.nradbase <= 64) {
        return bad(format!(
            "--radial-base {} must be between 2 and 64",
            opts.nradbase
        ));
    }
    if !(opts.delta.is_finite() && opts.delta > 0.0 && opts.delta <= 0.01) {
        return bad(format!(
            "deltaSplineBins {} must be in (0, 0.01] Å",
            opts.delta
        ));
    }
    if !(opts.dcut.is_finite() && opts.dcut > 0.0 && opts.dcut < 1.0) {
        return bad(format!("dcut {} must be in (0, 1) Å", opts.dcut));
    }
    if !opts.lambda.is_finite()
        || (opts.family == Family::ChebExpCos && opts.lambda <= 0.0)
        || (opts.family == Family::ChebPow && opts.lambda < 1.0)
    {
        return bad(format!(
            "radial parameter {} is not usable with {:?} (ChebExpCos: > 0, ChebPow: >= 1)",
            opts.lambda, opts.family
        ));
    }
    if opts.grid < 4 * opts.nradbase {
        return bad(format!(
            "a radial fit grid of {} points for {} base functions",
            opts.grid, opts.nradbase
        ));
    }
    let lmax = model.bases.iter().map(|b| b.layout.lmax).max().unwrap_or(0);
    if lmax > super::ylm::LMAX_SUPPORTED {
        return bad(format!("lmax {lmax} is above what is supported"));
    }
    let nradmax = model
        .bases
        .iter()
        .map(|b| b.layout.nmax())
        .max()
        .unwrap_or(0);
    let nb = opts.nradbase;
    let nl = lmax + 1;

    // The core: ZBL inner cutoff when any pair has one. Per pair also where the radial fit
    // starts: below it ML-PACE's ACE energy is switched off (ZBL alone) or, without a core,
    // the fit is weighted down (closer than the training data).
    let active = |p: usize| {
        let c = &model.core[p];
        c.z1 > 0 && c.z2 > 0 && c.r_out > 0.0
    };
    let any_core = (0..ns * ns).any(active);
    let zbl = opts.core && any_core;
    if zbl {
        for name in &model.species {
            if crate::model::core::atomic_number(name) == 0 {
                return bad(format!(
                    "species '{name}' is not an element symbol: ML-PACE's ZBL core needs the \
                     atomic number of every species (export without the core with --no-core)"
                ));
            }
        }
    }
    let mut switch = Vec::with_capacity(ns * ns);
    let mut fit_lo = Vec::with_capacity(ns * ns);
    for p in 0..ns * ns {
        let (c, rb) = (&model.core[p], &model.radial[p]);
        let pair = || format!("{}-{}", model.species[p / ns], model.species[p % ns]);
        if zbl && active(p) {
            // ML-PACE goes from ACE (nearest neighbour beyond r_out) to ZBL (below the start).
            // Starting at our r0 when that is above r_in keeps the kink of our clamped radial
            // functions at r0 out of the fitted range, where no smooth base can follow it.
            let start = if rb.r0 <= c.r_out - MIN_SWITCH {
                c.r_in.max(rb.r0)
            } else {
                c.r_in
            };
            if c.r_out - start <= 2.0 * opts.delta {
                return bad(format!(
                    "pair {}: the core switch [{}, {}] Å is narrower than two radial table \
                     intervals",
                    pair(),
                    c.r_in,
                    c.r_out
                ));
            }
            switch.push((c.r_out, c.r_out - start));
            fit_lo.push(start);
        } else {
            // No core for this pair: ACE is switched to ZBL only closer than one table interval,
            // where ML-PACE stops anyway.
            switch.push((2.0 * opts.delta, opts.delta));
            fit_lo.push(0.5 * rb.r0);
        }
    }
    let core = if zbl {
        CoreExport::Zbl(switch.clone())
    } else {
        CoreExport::None
    };
    let inner = match core {
        CoreExport::None => InnerCutoff::Density,
        CoreExport::Zbl(_) => InnerCutoff::Zbl,
    };

    // Radial fits per ordered pair.
    let mut pairs = Vec::with_capacity(ns * ns);
    let mut fits = Vec::with_capacity(ns * ns);
    for s in 0..ns {
        let nr_s = model.bases[s].layout.nmax();
        for z in 0..ns {
            let p = s * ns + z;
            let rb = &model.radial[p];
            let (cut_in, dcut_in) = if zbl { switch[p] } else { (0.0, 0.0) };
            if rb.rc <= 4.0 * opts.dcut {
                return bad(format!(
                    "pair {}-{}: cutoff {} Å is too short for dcut {}",
                    model.species[s], model.species[z], rb.rc, opts.dcut
                ));
            }
            let mut spec = PairSpec {
                family: opts.family,
                lambda: opts.lambda,
                cut: rb.rc,
                dcut: opts.dcut,
                cut_in,
                dcut_in,
                inner,
                pre: if inner == InnerCutoff::Zbl { 1.0 } else { 0.0 },
                lambda_hc: 1.0,
                z: (
                    crate::model::core::atomic_number(&model.species[s]),
                    crate::model::core::atomic_number(&model.species[z]),
                ),
                crad: vec![0.0; nradmax * nl * nb],
            };
            let r_lo = opts.fit_from.unwrap_or(fit_lo[p]).max(2.0 * opts.delta);
            if r_lo >= rb.rc - 0.5 {
                return bad(format!(
                    "pair {}-{}: radial fit from {r_lo} Å to the cutoff {} Å: too short a range",
                    model.species[s], model.species[z], rb.rc
                ));
            }
            let (w, fit) = fit_radial(rb, &spec, nr_s, nb, r_lo, opts.grid, opts.below_weight)?;
            for n in 0..nr_s {
                for l in 0..nl {
                    let o = (n * nl + l) * nb;
                    spec.crad[o..o + nb].copy_from_slice(&w[n * nb..(n + 1) * nb]);
                }
            }
            pairs.push(spec);
            fits.push(PairFit {
                centre: model.species[s].clone(),
                neighbour: model.species[z].clone(),
                r_lo,
                rc: rb.rc,
                r0: rb.r0,
                ..fit
            });
        }
    }

    // Basis functions per species.
    let mut species = Vec::with_capacity(ns);
    let (mut max_imag, mut max_msum, mut max_coef) = (0.0f64, 0.0f64, 0.0f64);
    let mut counts = vec![];
    for s in 0..ns {
        let conv = convert_species(model, s, &pairs[s * ns..(s + 1) * ns], nb, nl)?;
        max_imag = max_imag.max(conv.max_imag);
        max_msum = max_msum.max(conv.max_msum);
        max_coef = max_coef.max(conv.max_coef);
        let ncomb: usize = conv.funcs.iter().map(|f| f.ms.len() / f.rank()).sum();
        counts.push((conv.rank1.len(), conv.funcs.len(), ncomb));
        species.push(SpeciesBasis {
            rank1: conv.rank1,
            funcs: conv.funcs,
            embedding: Embedding::new("FinnisSinclairShiftedScaled", &[1.0, 1.0], 1)
                .map_err(PaceError::Data)?,
            rho_core_cut: 100000.0,
            drho_core_cut: 250.0,
            e0: model.e0[s],
        });
    }
    let rel = |x: f64| if max_coef > 0.0 { x / max_coef } else { 0.0 };
    let (max_imag_rel, max_nonzero_msum_rel) = (rel(max_imag), rel(max_msum));
    if max_imag_rel > 1e-8 || max_nonzero_msum_rel > 1e-8 {
        return bad(format!(
            "the basis is not an invariant that pacemaker's format can hold (relative imaginary \
             part {max_imag_rel:.1e}, m-sum != 0 part {max_nonzero_msum_rel:.1e}): ML-PACE \
             evaluates Re(prod A) of rotation-invariant, inversion-even functions only"
        ));
    }
    let cutoffmax = model.max_cutoff();
    let built = PaceModel::new(
        model.species.clone(),
        lmax,
        nb,
        nradmax,
        cutoffmax,
        opts.delta,
        pairs,
        species,
    )
    .map_err(PaceError::Data)?;
    let text = super::to_yace(&built);
    let pace = PaceModel::parse_yace("exported.yace", &text)?;
    Ok(Exported {
        text,
        pace,
        pairs: fits,
        core,
        max_imag_rel,
        max_nonzero_msum_rel,
        counts,
    })
}

/// Least-squares fit of `g_n`, `n < nr`, of `rb` with the `nb` base functions of `spec` over
/// `[r_lo, rc]`: values and derivatives (times a length of 0.05 Å) at `grid` points. Returns
/// `w[n * nb + k]` and the errors on a finer, shifted grid.
fn fit_radial(
    rb: &RadialBasis,
    spec: &PairSpec,
    nr: usize,
    nb: usize,
    r_lo: f64,
    grid: usize,
    below_weight: f64,
) -> Result<(Vec<f64>, PairFit), PaceError> {
    const DW: f64 = 0.05;
    let rc = rb.rc;
    let (mut g, mut dg) = (vec![0.0; nb], vec![0.0; nb]);
    let nrb = rb.nmax.max(nr);
    let (mut t, mut dt) = (vec![0.0; nrb], vec![0.0; nrb]);
    let rows = 2 * grid;
    let mut a = nalgebra::DMatrix::<f64>::zeros(rows, nb);
    let mut b = nalgebra::DMatrix::<f64>::zeros(rows, nr);
    for i in 0..grid {
        let r = r_lo + (rc - r_lo) * (i as f64 + 0.5) / grid as f64;
        spec.base(r, &mut g, &mut dg);
        rb.eval(r, &mut t, &mut dt);
        let wt = if r < rb.r0 { below_weight } else { 1.0 };
        for k in 0..nb {
            a[(2 * i, k)] = wt * g[k];
            a[(2 * i + 1, k)] = wt * DW * dg[k];
        }
        for n in 0..nr {
            b[(2 * i, n)] = wt * t[n];
            b[(2 * i + 1, n)] = wt * DW * dt[n];
        }
    }
    // Column scaling, then a truncated SVD (the base functions are far from orthogonal).
    let scale: Vec<f64> = (0..nb)
        .map(|k| {
            let c = a.column(k).norm();
            if c > 0.0 { 1.0 / c } else { 0.0 }
        })
        .collect();
    for k in 0..nb {
        let sc = scale[k];
        a.column_mut(k).scale_mut(sc);
    }
    let svd = a.svd(true, true);
    let smax = svd.singular_values.max();
    let x = svd
        .solve(&b, 1e-13 * smax)
        .map_err(|e| PaceError::Data(format!("radial fit: {e}")))?;
    let mut w = vec![0.0; nr * nb];
    for n in 0..nr {
        for k in 0..nb {
            w[n * nb + k] = x[(k, n)] * scale[k];
        }
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(PaceError::Data(
            "radial fit: non-finite coefficients".into(),
        ));
    }
    // Errors on a 4x finer grid shifted from the fit points.
    let (mut ew, mut eb, mut ed) = (0.0f64, 0.0f64, 0.0f64);
    let check = 4 * grid;
    for i in 0..=check {
        let r = r_lo + (rc - r_lo) * (i as f64 + 0.37) / (check as f64 + 1.0);
        spec.base(r, &mut g, &mut dg);
        rb.eval(r, &mut t, &mut dt);
        for n in 0..nr {
            let c = &w[n * nb..(n + 1) * nb];
            let v: f64 = c.iter().zip(&g).map(|(a, b)| a * b).sum();
            let d: f64 = c.iter().zip(&dg).map(|(a, b)| a * b).sum();
            let e = (v - t[n]).abs();
            if r >= rb.r0 {
                ew = ew.max(e);
            } else {
                eb = eb.max(e);
            }
            ed = ed.max((d - dt[n]).abs());
        }
    }
    Ok((
        w,
        PairFit {
            centre: String::new(),
            neighbour: String::new(),
            r_lo,
            rc,
            r0: rb.r0,
            max_err_window: ew,
            max_err_below: eb,
            max_derr: ed,
        },
    ))
}

/// The complex weights of a real harmonic: `Y^real_{l m} = sum (m', u) u Y^CS_{l m'}`, with
/// `Y^CS` the orthonormal complex harmonic with the Condon–Shortley phase.
fn real_to_complex(m: i32) -> Vec<(i32, C64)> {
    let h = std::f64::consts::FRAC_1_SQRT_2;
    if m == 0 {
        return vec![(0, C64::new(1.0, 0.0))];
    }
    let mm = m.abs();
    let sign = if mm % 2 == 0 { 1.0 } else { -1.0 };
    if m > 0 {
        // ((-1)^m Y_m + Y_-m) / sqrt 2
        vec![(mm, C64::new(sign * h, 0.0)), (-mm, C64::new(h, 0.0))]
    } else {
        // -i ((-1)^m Y_m - Y_-m) / sqrt 2
        vec![(mm, C64::new(0.0, -sign * h)), (-mm, C64::new(0.0, h))]
    }
}

/// One species' basis as C-tilde functions.
struct Converted {
    /// Coefficient of `sum_j g_n(r_ij)` (our radial functions) per `[z * nmax + n]` (read by
    /// the tests, which check the conversion with exact radial functions).
    #[cfg_attr(not(test), allow(dead_code))]
    r1: Vec<f64>,
    rank1: Vec<CFunc>,
    funcs: Vec<CFunc>,
    max_imag: f64,
    max_msum: f64,
    max_coef: f64,
}

/// A factor `(neighbour species, n, l, m)`, `n` 0-based.
type Factor = (u16, u16, u16, i32);
/// Its `(neighbour species, n, l)`.
type Label = (u16, u16, u16);
/// An m-combination and its coefficient.
type Comb = (Vec<i32>, f64);

fn convert_species(
    model: &Model,
    s: usize,
    pairs: &[PairSpec],
    nb: usize,
    nl: usize,
) -> Result<Converted, PaceError> {
    let bas = &model.bases[s];
    let lay = &bas.layout;
    let coefs = &model.coefs[s];
    let ns = model.nspecies();
    let inv = 1.0 / (4.0 * PI).sqrt();
    // Rank 1: coefficient of sum_j g_n(r_ij) per (neighbour species, n).
    let mut r1 = vec![0.0; ns * lay.nmax()];
    let mut acc: BTreeMap<Vec<Factor>, C64> = BTreeMap::new();
    for f in 0..bas.len() {
        let cf = coefs[f];
        if cf == 0.0 {
            continue;
        }
        for t in bas.func_ptr[f] as usize..bas.func_ptr[f + 1] as usize {
            let coef = cf * bas.func_coef[t];
            let mono = bas.monomial(bas.func_mono[t] as usize);
            let facs: Vec<(usize, usize, usize, i32)> =
                mono.iter().map(|&a| lay.decode(a as usize)).collect();
            if facs.len() == 1 {
                let (z, n, l, m) = facs[0];
                if l != 0 || m != 0 {
                    return Err(PaceError::Data(format!(
                        "species {}: a one-factor term with l = {l}: not a rotation invariant",
                        model.species[s]
                    )));
                }
                r1[z * lay.nmax() + n] += coef * inv;
                continue;
            }
            // Expand the product of real A's into complex ones.
            let opts: Vec<Vec<(i32, C64)>> = facs.iter().map(|f| real_to_complex(f.3)).collect();
            let rank = facs.len();
            let mut idx = vec![0usize; rank];
            let pre = coef * inv.powi(rank as i32);
            loop {
                let mut w = C64::new(pre, 0.0);
                let mut key: Vec<Factor> = Vec::with_capacity(rank);
                for (q, &(z, n, l, _)) in facs.iter().enumerate() {
                    let (mp, u) = opts[q][idx[q]];
                    w = w.mul(u);
                    key.push((z as u16, n as u16, l as u16, mp));
                }
                key.sort_unstable();
                let e = acc.entry(key).or_default();
                *e = e.add(w);
                // Next combination.
                let mut q = 0;
                while q < rank {
                    idx[q] += 1;
                    if idx[q] < opts[q].len() {
                        break;
                    }
                    idx[q] = 0;
                    q += 1;
                }
                if q == rank {
                    break;
                }
            }
        }
    }
    // Collect: drop m-sum != 0, merge M with -M, group by labels.
    let mut max_coef = 0.0f64;
    for c in acc.values() {
        max_coef = max_coef.max(c.re.abs()).max(c.im.abs());
    }
    let (mut max_imag, mut max_msum) = (0.0f64, 0.0f64);
    let mut merged: BTreeMap<Vec<Factor>, f64> = BTreeMap::new();
    for (key, c) in &acc {
        let msum: i32 = key.iter().map(|f| f.3).sum();
        if msum != 0 {
            max_msum = max_msum.max(c.re.abs()).max(c.im.abs());
            continue;
        }
        max_imag = max_imag.max(c.im.abs());
        let mut neg: Vec<Factor> = key.iter().map(|&(z, n, l, m)| (z, n, l, -m)).collect();
        neg.sort_unstable();
        let ms = |k: &[Factor]| k.iter().map(|f| f.3).collect::<Vec<i32>>();
        let rep = if ms(&neg) > ms(key) { neg } else { key.clone() };
        *merged.entry(rep).or_default() += c.re;
    }
    // Group by (z, n, l) labels, ordered by rank then labels.
    let mut groups: BTreeMap<(usize, Vec<Label>), Vec<Comb>> = BTreeMap::new();
    let tiny = 1e-15 * max_coef;
    for (key, c) in merged {
        if c.abs() <= tiny {
            continue;
        }
        let labels: Vec<Label> = key.iter().map(|&(z, n, l, _)| (z, n, l)).collect();
        let ms: Vec<i32> = key.iter().map(|f| f.3).collect();
        groups
            .entry((labels.len(), labels))
            .or_default()
            .push((ms, c));
    }
    let mut funcs = vec![];
    for ((rank, labels), combs) in groups {
        for chunk in combs.chunks(MAX_COMBS) {
            funcs.push(CFunc {
                mus: labels.iter().map(|x| x.0).collect(),
                ns: labels.iter().map(|x| x.1 + 1).collect(),
                ls: labels.iter().map(|x| x.2).collect(),
                ms: chunk
                    .iter()
                    .flat_map(|(ms, _)| ms.iter().map(|&m| m as i8))
                    .collect(),
                coefs: chunk.iter().map(|(_, c)| *c).collect(),
            });
            debug_assert_eq!(funcs.last().unwrap().rank(), rank);
        }
    }
    // Rank 1 on the base functions: sum_n r1[z][n] g_n ≈ sum_k (sum_n r1[z][n] w[z][n][k]) g_k.
    let mut rank1 = vec![];
    let nr = lay.nmax();
    for z in 0..ns {
        // crad[(n * nl + l) * nb + k] of pair (s, z) at l = 0 is the fit of g_n.
        let crad = &pairs[z].crad;
        for k in 0..nb {
            let mut c = 0.0;
            for n in 0..nr {
                c += r1[z * nr + n] * crad[(n * nl) * nb + k];
            }
            if c != 0.0 {
                rank1.push(CFunc {
                    mus: vec![z as u16],
                    ns: vec![k as u16 + 1],
                    ls: vec![0],
                    ms: vec![0],
                    coefs: vec![c],
                });
            }
        }
    }
    Ok(Converted {
        r1,
        rank1,
        funcs,
        max_imag,
        max_msum,
        max_coef,
    })
}

/// Differences between the native model and the exported one on a set of structures.
#[derive(Clone, Debug, Default)]
pub struct Fidelity {
    pub structures: usize,
    pub atoms: usize,
    /// Largest |ΔE| / atoms of a structure (eV/atom).
    pub max_de_per_atom: f64,
    /// Largest |ΔE_i| of one atom (eV).
    pub max_de_atom: f64,
    /// Largest |ΔF| of one force component and their root mean square (eV/Å).
    pub max_df: f64,
    pub rms_df: f64,
    /// Root mean square of the native force components (eV/Å), for scale.
    pub rms_f: f64,
    /// Largest |Δvirial| component per atom (eV/atom).
    pub max_dvirial_per_atom: f64,
}

/// Evaluate `model` and `pace` on `frames` and compare energies, forces and virials.
pub fn compare(
    model: &Model,
    pace: &PaceModel,
    frames: &[Structure],
) -> Result<Fidelity, PaceError> {
    let mut ws = crate::model::Workspace::new(model);
    let mut fid = Fidelity::default();
    let (mut sdf, mut sf, mut nf) = (0.0, 0.0, 0usize);
    for (k, s) in frames.iter().enumerate() {
        if s.is_empty() {
            continue;
        }
        let a = model
            .predict(s, &mut ws)
            .map_err(|e| PaceError::Data(format!("structure {k}: native model: {e}")))?;
        let b = pace
            .predict(s)
            .map_err(|e| PaceError::Data(format!("structure {k}: exported model: {e}")))?;
        let n = s.len() as f64;
        fid.structures += 1;
        fid.atoms += s.len();
        fid.max_de_per_atom = fid.max_de_per_atom.max((a.energy - b.energy).abs() / n);
        for (x, y) in a.atom_energies.iter().zip(&b.atom_energies) {
            fid.max_de_atom = fid.max_de_atom.max((x - y).abs());
        }
        for (x, y) in a.forces.iter().zip(&b.forces) {
            for c in 0..3 {
                let d = x[c] - y[c];
                fid.max_df = fid.max_df.max(d.abs());
                sdf += d * d;
                sf += x[c] * x[c];
                nf += 1;
            }
        }
        for i in 0..3 {
            for j in 0..3 {
                let d = (a.virial[i][j] - b.virial[i][j]).abs() / n;
                fid.max_dvirial_per_atom = fid.max_dvirial_per_atom.max(d);
            }
        }
    }
    if nf > 0 {
        fid.rms_df = (sdf / nf as f64).sqrt();
        fid.rms_f = (sf / nf as f64).sqrt();
    }
    Ok(fid)
}

/// Shortest distance of each ordered species pair that the model was fitted for (Å): the core's
/// `r_out` (the shortest training distance) when it has a core, else `r0 / 0.75` (how a fit
/// chooses `r0`).
pub fn data_distances(model: &Model) -> Vec<f64> {
    let ns = model.nspecies();
    (0..ns * ns)
        .map(|p| {
            let c = &model.core[p];
            let rb = &model.radial[p];
            let d = if c.r_out > 0.0 { c.r_out } else { rb.r0 / 0.75 };
            d.min(rb.rc)
        })
        .collect()
}

/// A few periodic test structures inside the region the model was fitted for: bcc and fcc
/// lattices with nearest neighbours 1.05 to 1.4 times the longest of the pairs' shortest
/// training distances, species drawn at random, every atom displaced by up to 12 % of the
/// neighbour distance as long as no pair comes closer than its shortest training distance.
pub fn probe_structures(model: &Model, seed: u64) -> Vec<Structure> {
    use rand::{RngExt, SeedableRng};
    let ns = model.nspecies();
    let d = data_distances(model);
    let dpair = |a: usize, b: usize| d[a * ns + b].max(d[b * ns + a]);
    let dmax = d.iter().cloned().fold(0.0, f64::max);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![];
    let cases: [(bool, f64, usize); 4] = [
        (true, 1.05, 3),
        (true, 1.25, 3),
        (false, 1.1, 2),
        (false, 1.4, 2),
    ];
    for (bcc, factor, reps) in cases {
        let nn = factor * dmax;
        let (ac, basis): (f64, &[[f64; 3]]) = if bcc {
            (2.0 * nn / 3f64.sqrt(), &[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
        } else {
            (
                nn * std::f64::consts::SQRT_2,
                &[
                    [0.0, 0.0, 0.0],
                    [0.5, 0.5, 0.0],
                    [0.5, 0.0, 0.5],
                    [0.0, 0.5, 0.5],
                ],
            )
        };
        let l = ac * reps as f64;
        let mut pos = vec![];
        for i in 0..reps {
            for j in 0..reps {
                for k in 0..reps {
                    for b in basis {
                        pos.push([
                            (i as f64 + b[0]) * ac,
                            (j as f64 + b[1]) * ac,
                            (k as f64 + b[2]) * ac,
                        ]);
                    }
                }
            }
        }
        let mut spc: Vec<usize> = (0..pos.len()).map(|_| rng.random_range(0..ns)).collect();
        // Every species present.
        for (s, x) in spc.iter_mut().enumerate().take(ns) {
            *x = s;
        }
        let dist = |p: [f64; 3], q: [f64; 3]| {
            let mut s2 = 0.0;
            for c in 0..3 {
                let mut x = q[c] - p[c];
                x -= l * (x / l).round();
                s2 += x * x;
            }
            s2.sqrt()
        };
        for i in 0..pos.len() {
            for _ in 0..20 {
                let mut p = pos[i];
                for x in p.iter_mut() {
                    *x += rng.random_range(-0.12..0.12) * nn;
                }
                let ok = (0..pos.len())
                    .filter(|&j| j != i)
                    .all(|j| dist(p, pos[j]) >= dpair(spc[i], spc[j]));
                if ok {
                    pos[i] = p;
                    break;
                }
            }
        }
        out.push(Structure {
            cell: Some([[l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l]]),
            pbc: [true; 3],
            symbols: spc.iter().map(|&s| model.species[s].clone()).collect(),
            positions: pos,
            config_type: Some(format!(
                "{}_{factor}x_rattled",
                if bcc { "bcc" } else { "fcc" }
            )),
            ..Default::default()
        });
    }
    out
}

/// Whether some pair of atoms of `s` is closer than its species pair's core `r_out` (the
/// shortest training distance), where the exported short range differs from ours by design.
pub fn inside_core(model: &Model, s: &Structure) -> Result<bool, PaceError> {
    let ns = model.nspecies();
    let rmax = model.core.iter().map(|c| c.r_out).fold(0.0, f64::max);
    if rmax <= 0.0 || s.is_empty() {
        return Ok(false);
    }
    let sp = model
        .map_species(s)
        .map_err(|e| PaceError::Data(e.to_string()))?;
    let nl = crate::neighbors::build(s, rmax).map_err(|e| PaceError::Data(e.to_string()))?;
    for i in 0..s.len() {
        for k in nl.range(i) {
            let d = nl.rij[k];
            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            let p = sp[i] as usize * ns + sp[nl.j[k] as usize] as usize;
            if r < model.core[p].r_out {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Energy of an isolated dimer of one species pair at one distance, in both models.
#[derive(Clone, Debug)]
pub struct CoreProbe {
    pub pair: (String, String),
    pub r: f64,
    pub native: f64,
    pub exported: f64,
}

/// Dimers of every unordered species pair with a core at `r_out`, the middle of the core switch,
/// `r_in` and `0.8 r_in`: where the two short-range treatments differ.
pub fn core_probe(model: &Model, pace: &PaceModel) -> Result<Vec<CoreProbe>, PaceError> {
    let ns = model.nspecies();
    let mut ws = crate::model::Workspace::new(model);
    let mut out = vec![];
    for a in 0..ns {
        for b in a..ns {
            let c = &model.core[a * ns + b];
            if c.r_out <= 0.0 || c.z1 == 0 || c.z2 == 0 {
                continue;
            }
            for r in [c.r_out, 0.5 * (c.r_in + c.r_out), c.r_in, 0.8 * c.r_in] {
                if r <= 0.05 {
                    continue;
                }
                let s = Structure {
                    positions: vec![[0.0; 3], [r, 0.0, 0.0]],
                    symbols: vec![model.species[a].clone(), model.species[b].clone()],
                    ..Default::default()
                };
                let e1 = model
                    .predict(&s, &mut ws)
                    .map_err(|e| PaceError::Data(e.to_string()))?
                    .energy;
                let e2 = pace.predict(&s)?.energy;
                out.push(CoreProbe {
                    pair: (model.species[a].clone(), model.species[b].clone()),
                    r,
                    native: e1,
                    exported: e2,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basis::sph::SphHarm;
    use crate::pace::ylm::{Ylm, lm};

    /// Our real harmonics are the stated combinations of ML-PACE's complex ones.
    #[test]
    fn real_harmonics_from_complex() {
        let lmax = 6;
        let mut sph = SphHarm::new(lmax);
        let ylm = Ylm::new(lmax);
        let n = lm(lmax, lmax) + 1;
        for r in [[0.3f64, -0.7, 0.55], [-0.2, 0.1, -0.9], [1.0, 0.4, 0.0]] {
            let d = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
            let u = [r[0] / d, r[1] / d, r[2] / d];
            let mut yr = vec![0.0; (lmax + 1) * (lmax + 1)];
            sph.eval(r, &mut yr);
            let (mut yc, mut dy) = (vec![C64::default(); n], vec![[C64::default(); 3]; n]);
            ylm.compute(u, &mut yc, &mut dy);
            let full = |l: usize, m: i32| {
                let v = yc[lm(l, m.unsigned_abs() as usize)].scale(1.0 / (4.0 * PI).sqrt());
                if m >= 0 {
                    v
                } else if m % 2 == 0 {
                    v.conj()
                } else {
                    v.conj().scale(-1.0)
                }
            };
            for l in 0..=lmax {
                for m in -(l as i32)..=(l as i32) {
                    let mut s = C64::default();
                    for (mp, w) in real_to_complex(m) {
                        s = s.add(w.mul(full(l, mp)));
                    }
                    let want = yr[l * l + l + m as isize as usize];
                    assert!(
                        (s.re - want).abs() < 1e-14 && s.im.abs() < 1e-14,
                        "l {l} m {m}: {s:?} vs {want}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod conversion_tests {
    use super::*;
    use crate::pace::ylm::{Ylm, lm};

    /// The C-tilde functions with our exact radial functions give our energy to round-off: the
    /// angular conversion is exact (the radial fit is the only approximation).
    #[test]
    fn ctilde_equals_native_with_exact_radials() {
        for species in [&["Li"][..], &["Al", "Mg"][..]] {
            let cfg = crate::testing::small_cfg();
            let mut model = crate::testing::random_model(species, &cfg, 11);
            for c in model.core.iter_mut() {
                c.r_out = 0.0;
                c.r_in = 0.0;
            }
            let ns = model.nspecies();
            let opts = ExportOptions::default();
            let ex = export(&model, &opts).unwrap();
            assert!(ex.max_imag_rel < 1e-12 && ex.max_nonzero_msum_rel < 1e-12);
            let s = crate::testing::random_structure(species, 2, 3, true);
            let nl = crate::neighbors::build(&s, model.max_cutoff()).unwrap();
            let sp = model.map_species(&s).unwrap();
            let mut ws = crate::model::Workspace::new(&model);
            let lmax = ex.pace.lmax;
            let ylm = Ylm::new(lmax);
            let nt = lm(lmax, lmax) + 1;
            let (mut yc, mut dy) = (vec![C64::default(); nt], vec![[C64::default(); 3]; nt]);
            let (mut worst, mut scale) = (0.0f64, 0.0f64);
            for i in 0..s.len() {
                let si = sp[i] as usize;
                let range = nl.range(i);
                let rij = &nl.rij[range.clone()];
                let sj: Vec<u16> = nl.j[range].iter().map(|&j| sp[j as usize]).collect();
                let mut grad = vec![[0.0; 3]; rij.len()];
                let native = model.atom_energy_grad(&mut ws, si, rij, &sj, &mut grad, None);
                let pairs: Vec<PairSpec> = (0..ns)
                    .map(|z| ex.pace.pairs[si * ns + z].spec.clone())
                    .collect();
                let conv = convert_species(&model, si, &pairs, ex.pace.nradbase, lmax + 1).unwrap();
                let nmax = model.bases[si].layout.nmax();
                // Complex A with our radial functions, and the rank-1 sums.
                let nlm = (lmax + 1) * (lmax + 1);
                let mut a = vec![C64::default(); ns * nmax * nlm];
                let mut g1 = vec![0.0; ns * nmax];
                for (d, &z) in rij.iter().zip(&sj) {
                    let z = z as usize;
                    let rb = &model.radial[si * ns + z];
                    let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                    if r >= rb.rc {
                        continue;
                    }
                    let (mut g, mut dg) = (vec![0.0; rb.nmax], vec![0.0; rb.nmax]);
                    rb.eval(r, &mut g, &mut dg);
                    ylm.compute([d[0] / r, d[1] / r, d[2] / r], &mut yc, &mut dy);
                    for n in 0..nmax {
                        g1[z * nmax + n] += g[n];
                        for l in 0..=lmax {
                            for m in -(l as i32)..=(l as i32) {
                                let v = yc[lm(l, m.unsigned_abs() as usize)];
                                let v = if m >= 0 {
                                    v
                                } else if m % 2 == 0 {
                                    v.conj()
                                } else {
                                    v.conj().scale(-1.0)
                                };
                                let k = (z * nmax + n) * nlm + l * l + (l as i32 + m) as usize;
                                a[k] = a[k].add(v.scale(g[n]));
                            }
                        }
                    }
                }
                let mut e = model.e0[si];
                for (c, g) in conv.r1.iter().zip(&g1) {
                    e += c * g;
                }
                for f in &conv.funcs {
                    let rank = f.rank();
                    for (c, ms) in f.ms.chunks_exact(rank).enumerate() {
                        let mut p = C64::new(1.0, 0.0);
                        for t in 0..rank {
                            let (z, n, l) =
                                (f.mus[t] as usize, f.ns[t] as usize - 1, f.ls[t] as usize);
                            let k =
                                (z * nmax + n) * nlm + l * l + (l as i32 + ms[t] as i32) as usize;
                            p = p.mul(a[k]);
                        }
                        e += f.coefs[c] * p.re;
                    }
                }
                worst = worst.max((e - native).abs());
                scale = scale.max((native - model.e0[si]).abs());
            }
            assert!(
                worst < 1e-12 * scale.max(1.0),
                "{species:?}: C-tilde vs native energy differ by {worst:e} (scale {scale})"
            );
        }
    }
}
