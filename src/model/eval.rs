//! Evaluation: per-atom energy, gradient with respect to neighbour displacements, basis vectors,
//! and whole-structure predictions.
//!
//! Per atom: (1) accumulate `A` from every neighbour inside the pair cutoff, caching radial values,
//! harmonics and their derivatives; (2) one forward sweep over the monomial DAG; (3) for the energy,
//! one reverse sweep gives `w = dE/dA`; (4) per neighbour, `dE/dr_ij = sum_{n,lm} w (g'_n Y_lm r̂ +
//! g_n ∇Y_lm)` contracted first over `n`. Nothing is allocated per atom once the workspace has grown
//! to the largest neighbour count (and number of neighbour groups below).
//!
//! The per-neighbour work of (1) and (4) runs on eight neighbours of one species at a time, one
//! per vector lane (radial values, harmonics, the contraction of (4)), and `A` is summed eight
//! radial indices at a time in registers over all neighbours. Every value is the same sum in the
//! same order as neighbour by neighbour, so all kernel families give the same bits.

use super::env::Environments;
use super::{Model, TERM_LANES};
use crate::basis::sph::{SPH_LANES, SphHarm, num_lm};
use crate::structure::Structure;

mod lanes;
use lanes::PairScratch;
pub use lanes::{LaneAtom, MemberTables};

/// Scratch memory for evaluating one atom at a time (one per thread).
#[derive(Clone, Debug)]
pub struct Workspace {
    sph: SphHarm,
    nmax: usize,
    nlm: usize,
    a: Vec<f64>,
    p: Vec<f64>,
    dp: Vec<f64>,
    /// Per neighbour: distance (0 = outside the cutoff).
    rn: Vec<f64>,
    /// Unit vector to each neighbour.
    un: Vec<[f64; 3]>,
    /// Core repulsion energy of each neighbour pair (eV).
    ec: Vec<f64>,
    /// Per neighbour: the radial basis's two angles (`[arg, θ]`), then their sines and cosines
    /// (`[sin arg, cos arg, sin θ, cos θ]`), and `dθ/dr`.
    ang: Vec<[f64; 2]>,
    trig: Vec<[f64; 4]>,
    dth: Vec<f64>,
    /// Per neighbour inside the cutoff (`nmax` entries each): its radial values, for the `A`
    /// accumulation; everything else reads the lane-form values below.
    g: Vec<f64>,
    /// The neighbours inside the cutoff grouped by species (in their order within a species),
    /// species `z` at `zk[zstart[z]..zstart[z + 1]]`.
    zk: Vec<u32>,
    zstart: Vec<usize>,
    /// Lane-form values of the neighbours inside the cutoff, `SPH_LANES` neighbours of one
    /// species per group (the groups of species `z` from `gstart[z]`): radial values and
    /// derivatives (`nmax` per group), harmonics and their partials (`nlm` per group).
    gstart: Vec<usize>,
    /// Each neighbour's place in the lane-form values: `group * SPH_LANES + lane`.
    lpos: Vec<u32>,
    lg: Vec<[f64; SPH_LANES]>,
    ldg: Vec<[f64; SPH_LANES]>,
    ly: Vec<[f64; SPH_LANES]>,
    ldy: Vec<[[f64; SPH_LANES]; 3]>,
    /// Fit scratch: one Jacobian row over `A`, the entries touched, and dA/dr per neighbour.
    jrow: Vec<f64>,
    touched: Vec<u32>,
    dadr: Vec<f64>,
    /// Multi-member adjoints `dE^(k)/dp`, member-minor (grown on first use).
    dpm: Vec<f64>,
    /// Member energy accumulators (one lane per member, padded).
    macc: Vec<f64>,
    /// Two-atom lane pass: the values of the `A`s and internal nodes of both atoms, each
    /// repeated over one group of lanes (`[atom 0 × LANES, atom 1 × LANES]` per node). The
    /// two-atom pass is an x86-64 vector kernel; other CPUs pass one atom at a time.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pe: Vec<f64>,
    /// Two-atom lane pass: scratch of the paired force contraction.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pair: PairScratch,
}

impl Workspace {
    /// Workspace sized for `model`.
    pub fn new(model: &Model) -> Self {
        let lmax = model.bases.iter().map(|b| b.layout.lmax).max().unwrap_or(0);
        let nmax = model.radial.iter().map(|r| r.nmax).max().unwrap_or(0);
        let na = model
            .bases
            .iter()
            .map(|b| b.layout.len())
            .max()
            .unwrap_or(0);
        let nodes = model.derived.iter().map(|d| d.dag.len()).max().unwrap_or(0);
        // The swept values and the term tables' staging row (at least the DAG's nodes).
        let swept = model
            .derived
            .iter()
            .map(|d| d.swept_len())
            .max()
            .unwrap_or(0);
        let nlm = num_lm(lmax);
        Workspace {
            sph: SphHarm::new(lmax),
            nmax,
            nlm,
            // One extra slot holds the constant 1 used by the basis-function term table.
            a: vec![0.0; na + 1],
            p: vec![0.0; swept],
            dp: vec![0.0; nodes],
            rn: vec![],
            un: vec![],
            ec: vec![],
            ang: vec![],
            trig: vec![],
            dth: vec![],
            g: vec![],
            zk: vec![],
            zstart: vec![],
            gstart: vec![],
            lpos: vec![],
            lg: vec![],
            ldg: vec![],
            ly: vec![],
            ldy: vec![],
            jrow: vec![0.0; na],
            touched: vec![],
            dadr: vec![],
            dpm: vec![],
            macc: vec![],
            pe: vec![],
            pair: PairScratch::default(),
        }
    }

    /// Neighbour `k`'s values in the lane form of `compute_a` (for a neighbour inside the
    /// cutoff, after `compute_a`): `[g, dg, y, dy]`, the radial values and derivatives (value
    /// `n` at offset `n * SPH_LANES`), the harmonics (`Y_q` at `q * SPH_LANES`) and their
    /// partials (component `c` of `∂Y_q/∂u` at `(3 q + c) * SPH_LANES`).
    #[inline(always)]
    fn lane_rows(&self, k: usize) -> [*const f64; 4] {
        let p = self.lpos[k] as usize;
        debug_assert!((p / SPH_LANES + 1) * self.nmax <= self.lg.len());
        debug_assert!((p / SPH_LANES + 1) * self.nlm <= self.ly.len());
        let dy = self.ldy.as_ptr() as *const [f64; SPH_LANES];
        // SAFETY: compute_a placed neighbour k's values in group p / SPH_LANES, whose nmax
        // radial and nlm harmonic entries lie inside lg, ldg, ly and ldy.
        unsafe {
            [
                lane_value(self.lg.as_ptr(), p, self.nmax, 0),
                lane_value(self.ldg.as_ptr(), p, self.nmax, 0),
                lane_value(self.ly.as_ptr(), p, self.nlm, 0),
                lane_value(dy, p, 3 * self.nlm, 0),
            ]
        }
    }

    fn reserve_groups(&mut self, groups: usize) {
        if self.lg.len() < groups * self.nmax {
            self.lg.resize(groups * self.nmax, [0.0; SPH_LANES]);
            self.ldg.resize(groups * self.nmax, [0.0; SPH_LANES]);
        }
        if self.ly.len() < groups * self.nlm {
            self.ly.resize(groups * self.nlm, [0.0; SPH_LANES]);
            self.ldy.resize(groups * self.nlm, [[0.0; SPH_LANES]; 3]);
        }
    }

    fn reserve_neighbors(&mut self, nn: usize) {
        if self.rn.len() < nn {
            self.rn.resize(nn, 0.0);
            self.un.resize(nn, [0.0; 3]);
            self.ec.resize(nn, 0.0);
            self.lpos.resize(nn, 0);
            self.ang.resize(nn, [0.0; 2]);
            self.trig.resize(nn, [0.0; 4]);
            self.dth.resize(nn, 0.0);
            // A_ROWS more: `accumulate_a` reads a whole vector of radial values per neighbour.
            self.g.resize(nn * self.nmax + A_ROWS, 0.0);
        }
    }
}

/// Rows of `A` summed per pass of [`accumulate_a`]: one vector of eight radial indices.
const A_ROWS: usize = 8;

/// One `(species, l)` block of `A`: `rows[n*D + m] = sum_k g_k[n] Y_k[yoff + m]` over the
/// neighbours `ks` (in their order) for `n < nl`, `m < D`. Eight radial indices at a time are
/// summed in registers over all neighbours (one vector per `m`) and stored once, instead of
/// every neighbour loading and storing the whole block; each entry is the same sum in the same
/// order as neighbour-by-neighbour accumulation from zero, so the values are the same bit for
/// bit. `D` is known at compile time, so the accumulators stay in registers.
///
/// # Safety
/// `rows` must hold `nl * D` values; for every `k` in `ks`, `g` must hold `k * nmax + nl +
/// A_ROWS` values (rows past `nl` are read and ignored); `yl` the lane-form harmonics of the
/// neighbours `ks` in their order (`SPH_LANES` per group of `nlm` entries: `(ks.len() - 1) /
/// SPH_LANES + 1` groups), and `yoff + D <= nlm`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate_a<const D: usize>(
    rows: *mut f64,
    nl: usize,
    ks: &[u32],
    g: *const f64,
    nmax: usize,
    yl: *const [f64; SPH_LANES],
    nlm: usize,
    yoff: usize,
) {
    // SAFETY: per the function contract.
    unsafe {
        let mut n0 = 0;
        while n0 < nl {
            let mut acc = [[0.0f64; A_ROWS]; D];
            for (p, &k) in ks.iter().enumerate() {
                let gk = g.add(k as usize * nmax + n0);
                let gv: [f64; A_ROWS] = std::array::from_fn(|j| *gk.add(j));
                let yk = lane_value(yl, p, nlm, yoff);
                for (m, am) in acc.iter_mut().enumerate() {
                    let ym = *yk.add(m * SPH_LANES);
                    for j in 0..A_ROWS {
                        am[j] += gv[j] * ym;
                    }
                }
            }
            for j in 0..(nl - n0).min(A_ROWS) {
                let row = rows.add((n0 + j) * D);
                for (m, am) in acc.iter().enumerate() {
                    *row.add(m) = am[j];
                }
            }
            n0 += A_ROWS;
        }
    }
}

/// Address of entry `i` of the `p`-th neighbour in lane-form values (`SPH_LANES` neighbours per
/// group, `per` entries per group, one lane each); entry `i + 1` is `SPH_LANES` further on.
///
/// # Safety
/// `base` must hold `(p / SPH_LANES + 1) * per` entries and `i < per`.
#[inline(always)]
unsafe fn lane_value(base: *const [f64; SPH_LANES], p: usize, per: usize, i: usize) -> *const f64 {
    // SAFETY: per the function contract (the lane offset wraps, so that an empty buffer's
    // dangling pointer is never offset by `add`; it is not read then).
    unsafe { (base.add((p / SPH_LANES) * per + i) as *const f64).wrapping_add(p % SPH_LANES) }
}

/// [`accumulate_a`] for a run-time row length (degrees above those dispatched at compile time).
///
/// # Safety
/// As [`accumulate_a`] with `D = d`.
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate_a_dyn(
    rows: *mut f64,
    nl: usize,
    d: usize,
    ks: &[u32],
    g: *const f64,
    nmax: usize,
    yl: *const [f64; SPH_LANES],
    nlm: usize,
    yoff: usize,
) {
    // SAFETY: per the function contract.
    unsafe {
        for i in 0..nl * d {
            *rows.add(i) = 0.0;
        }
        for (p, &k) in ks.iter().enumerate() {
            let (gk, yk) = (g.add(k as usize * nmax), lane_value(yl, p, nlm, yoff));
            for n in 0..nl {
                let gn = *gk.add(n);
                for m in 0..d {
                    *rows.add(n * d + m) += gn * *yk.add(m * SPH_LANES);
                }
            }
        }
    }
}

/// `b = T v` through the blocked term tables of `der` (see `Derived::term_ptr`); `b` holds the
/// species' functions, `v` the swept values with their staging row filled (every step base is
/// at most `v.len() - TERM_LANES` and every output function below `b.len()`, as
/// `Derived::new` builds them).
fn basis_terms(der: &crate::model::Derived, v: &[f64], b: &mut [f64]) {
    for (q, out) in der.term_out.iter().enumerate() {
        let (lo, hi) = (der.term_ptr[q] as usize, der.term_ptr[q + 1] as usize);
        let mut s = [0.0; TERM_LANES];
        for (&base, coef) in der.term_base[lo..hi].iter().zip(&der.term_coef[lo..hi]) {
            let x = &v[base as usize..base as usize + TERM_LANES];
            for j in 0..TERM_LANES {
                s[j] += coef[j] * x[j];
            }
        }
        for (&f, &sj) in out.iter().zip(&s) {
            if f != u32::MAX {
                b[f as usize] = sj;
            }
        }
    }
}

/// The staging row `v[nv..]` from `stage` (see `Derived::term_stage`: an index below `nv`, or
/// -1 for 0), four values at a time. Portable kernel; on AVX2 CPUs [`stage_row_avx2`].
#[inline(always)]
fn stage_row(stage: &[i32], v: &mut [f64], nv: usize) {
    let (swept, row) = v.split_at_mut(nv);
    for (x, idx) in row
        .chunks_exact_mut(TERM_LANES)
        .zip(stage.chunks_exact(TERM_LANES))
    {
        let g = |i: i32| if i >= 0 { swept[i as usize] } else { 0.0 };
        let four: [f64; TERM_LANES] = std::array::from_fn(|j| g(idx[j]));
        x.copy_from_slice(&four);
    }
}

/// [`stage_row`] then [`basis_terms_avx2`], in one AVX2 function.
///
/// # Safety
/// As [`basis_terms_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stage_and_terms_avx2(
    der: &crate::model::Derived,
    v: &mut [f64],
    nv: usize,
    b: &mut [f64],
) {
    // SAFETY: AVX2 (this function's contract); every stage index is below nv (Derived::new).
    unsafe { stage_row_avx2(&der.term_stage, v, nv) };
    // SAFETY: this function's contract.
    unsafe { basis_terms_avx2(der, v, b) }
}

/// [`stage_row`] with one masked AVX2 gather and one 256-bit store per four values (the same
/// values; 0.72 -> 0.62 µs for the basis vector of a Li atom of the example model, in cache:
/// the scalar version's per-lane branches on unused lanes, half of the staged values, cost more
/// than the gather).
///
/// # Safety
/// The CPU must support AVX2; every index of `stage` is below `nv`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stage_row_avx2(stage: &[i32], v: &mut [f64], nv: usize) {
    use std::arch::x86_64::*;
    let n = stage.len() / TERM_LANES * TERM_LANES;
    assert!(v.len() >= nv + n);
    let p = v.as_mut_ptr();
    for k in (0..n).step_by(TERM_LANES) {
        // SAFETY: k + 4 <= stage.len(); lanes with an index of -1 are masked off (not read), the
        // others read below nv (contract); the store is inside v (asserted).
        unsafe {
            let idx = _mm_loadu_si128(stage.as_ptr().add(k) as *const __m128i);
            let keep = _mm_cmpgt_epi32(idx, _mm_set1_epi32(-1));
            let mask = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(keep));
            let x = _mm256_mask_i32gather_pd::<8>(_mm256_setzero_pd(), p, idx, mask);
            _mm256_storeu_pd(p.add(nv + k), x);
        }
    }
}

/// [`basis_terms`] with AVX2, one load per step (bitwise the same results: the same products
/// and sums, rounded separately).
///
/// # Safety
/// The CPU must support AVX2; every step base is at most `v.len() - TERM_LANES`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn basis_terms_avx2(der: &crate::model::Derived, v: &[f64], b: &mut [f64]) {
    use std::arch::x86_64::*;
    let nblocks = der.term_out.len();
    let nsteps = der.term_coef.len();
    assert!(der.term_ptr.len() == nblocks + 1 && der.term_ptr[nblocks] as usize <= nsteps);
    assert!(der.term_base.len() == nsteps);
    for (q, out) in der.term_out.iter().enumerate() {
        let (lo, hi) = (der.term_ptr[q] as usize, der.term_ptr[q + 1] as usize);
        // SAFETY: lo <= hi <= nsteps (tables built increasing, last asserted); every base is
        // at most v.len() - TERM_LANES (function contract).
        let s = unsafe {
            let mut s = _mm256_setzero_pd();
            for t in lo..hi {
                let c = _mm256_loadu_pd(der.term_coef.as_ptr().add(t) as *const f64);
                let base = *der.term_base.get_unchecked(t) as usize;
                let x = _mm256_loadu_pd(v.as_ptr().add(base));
                s = _mm256_add_pd(s, _mm256_mul_pd(c, x));
            }
            let mut tmp = [0.0; TERM_LANES];
            _mm256_storeu_pd(tmp.as_mut_ptr(), s);
            tmp
        };
        for (&f, &sj) in out.iter().zip(&s) {
            if f != u32::MAX {
                b[f as usize] = sj;
            }
        }
    }
}

/// Energies, forces and virial of one structure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prediction {
    /// Total energy (eV).
    pub energy: f64,
    /// Energy of each atom (eV).
    pub atom_energies: Vec<f64>,
    /// Forces (eV/Å).
    pub forces: Vec<[f64; 3]>,
    /// Virial `-sum_pairs r_ij ⊗ dE/dr_ij` (eV); equals `-stress * volume`.
    pub virial: [[f64; 3]; 3],
}

impl Model {
    /// Accumulate `A` for centre species `si`, keeping every neighbour's radial values,
    /// harmonics and their derivatives in lane form (see [`Workspace`]).
    #[inline(always)]
    fn compute_a(&self, ws: &mut Workspace, si: usize, rij: &[[f64; 3]], sj: &[u16]) {
        // Wide-register code elsewhere (faer's GEMM in fits and active sets) can leave the upper
        // halves of the vector registers dirty, which slows every SSE instruction below by ~1.7x
        // until cleared; clearing costs about a nanosecond.
        crate::simd::clear_upper_simd_state();
        let ns = self.nspecies();
        let lay = &self.bases[si].layout;
        let (nmax, nlm) = (ws.nmax, ws.nlm);
        // The unchecked reads below rely on a workspace built for this model.
        assert!(
            ws.sph.lmax() >= lay.lmax
                && (0..ns).all(|z| self.radial[si * ns + z].nmax <= nmax)
                && ws.a.len() > lay.len()
                && sj.len() == rij.len(),
            "workspace of another model, or neighbour species and displacements of different lengths"
        );
        ws.reserve_neighbors(rij.len());
        ws.a[..lay.len()].fill(0.0);
        // Distances and the radial basis's angles of every neighbour, then all their sines and
        // cosines in one branch-free loop (vectorised), then the rest per neighbour.
        let nn = rij.len();
        for (k, (r, &z)) in rij.iter().zip(sj).enumerate() {
            assert!(
                (z as usize) < ns,
                "neighbour species {z} of a {ns}-species model"
            );
            let rb = &self.radial[si * ns + z as usize];
            let rn = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
            if rn >= rb.rc || rn == 0.0 {
                ws.rn[k] = 0.0;
                ws.ang[k] = [0.0; 2];
                continue;
            }
            ws.rn[k] = rn;
            let (arg, theta, dtheta) = rb.angles(rn);
            ws.ang[k] = [arg, theta];
            ws.dth[k] = dtheta;
        }
        for (t, &[arg, theta]) in ws.trig[..nn].iter_mut().zip(&ws.ang[..nn]) {
            let (sa, ca) = crate::basis::radial::sin_cos_0_pi(arg);
            let (st, ct) = crate::basis::radial::sin_cos_0_pi(theta);
            *t = [sa, ca, st, ct];
        }
        // The neighbours inside the cutoff, grouped by species (each species' in their order).
        ws.zk.clear();
        ws.zstart.clear();
        for z in 0..ns {
            ws.zstart.push(ws.zk.len());
            let inside = (0..nn).filter(|&k| sj[k] as usize == z && ws.rn[k] != 0.0);
            ws.zk.extend(inside.map(|k| k as u32));
        }
        ws.zstart.push(ws.zk.len());
        // Lane-form values: the neighbours of each species in groups of SPH_LANES (the last
        // group of a species padded with its first neighbour), group `gstart[z] + p / LANES`
        // lane `p % LANES` for the species' p-th neighbour.
        ws.gstart.clear();
        let mut groups = 0;
        for z in 0..ns {
            ws.gstart.push(groups);
            groups += (ws.zstart[z + 1] - ws.zstart[z]).div_ceil(SPH_LANES);
        }
        ws.gstart.push(groups);
        ws.reserve_groups(groups);
        for z in 0..ns {
            let rb = &self.radial[si * ns + z];
            let zk = &ws.zk[ws.zstart[z]..ws.zstart[z + 1]];
            for (gi, ks) in (ws.gstart[z]..).zip(zk.chunks(SPH_LANES)) {
                let pick = |j: usize| ks.get(j).copied().unwrap_or(ks[0]) as usize;
                // Radial values and derivatives.
                let trig: [[f64; 4]; SPH_LANES] = std::array::from_fn(|j| ws.trig[pick(j)]);
                let dth: [f64; SPH_LANES] = std::array::from_fn(|j| ws.dth[pick(j)]);
                let lg = &mut ws.lg[gi * nmax..(gi + 1) * nmax];
                let ldg = &mut ws.ldg[gi * nmax..(gi + 1) * nmax];
                rb.eval_trig_lanes(&trig, &dth, lg, ldg);
                for (j, &k) in ks.iter().enumerate() {
                    let k = k as usize;
                    let g = &mut ws.g[k * nmax..k * nmax + rb.nmax];
                    for (gn, l) in g.iter_mut().zip(lg.iter()) {
                        *gn = l[j];
                    }
                }
                // Harmonics and their partials.
                let r: [[f64; SPH_LANES]; 3] =
                    std::array::from_fn(|c| std::array::from_fn(|j| rij[pick(j)][c]));
                let ly = &mut ws.ly[gi * nlm..(gi + 1) * nlm];
                let ldy = &mut ws.ldy[gi * nlm..(gi + 1) * nlm];
                let u = ws.sph.eval_raw_grad_lanes(&r, ly, ldy);
                for (j, &k) in ks.iter().enumerate() {
                    ws.un[k as usize] = [u[0][j], u[1][j], u[2][j]];
                    ws.lpos[k as usize] = (gi * SPH_LANES + j) as u32;
                }
            }
        }
        // A[z, l, n, m] = sum over the neighbours of species z of g_n Y_lm, block by block, the
        // neighbours of each species in their order.
        let a = ws.a.as_mut_ptr();
        let g = ws.g.as_ptr();
        debug_assert!(ws.a.len() >= lay.len());
        debug_assert!(ws.g.len() >= nn * nmax + A_ROWS);
        for z in 0..ns {
            let ks = &ws.zk[ws.zstart[z]..ws.zstart[z + 1]];
            // SAFETY: the species' groups start at gstart[z] < ly.len() / nlm (or it has none).
            let yl = unsafe { ws.ly.as_ptr().add(ws.gstart[z] * nlm) };
            for l in 0..=lay.lmax {
                let d = 2 * l + 1;
                let nl = lay.nmax_l[l];
                // SAFETY: start + nl * d <= lay.len() (layout construction); every k < nn, g
                // holds nn * nmax + A_ROWS values (`reserve_neighbors`) and nl <= nmax; the
                // species' groups hold nlm lane values each and l * l + d <= nlm.
                unsafe {
                    let rows = a.add(lay.start(z, l));
                    let yo = l * l;
                    match d {
                        1 => accumulate_a::<1>(rows, nl, ks, g, nmax, yl, nlm, yo),
                        3 => accumulate_a::<3>(rows, nl, ks, g, nmax, yl, nlm, yo),
                        5 => accumulate_a::<5>(rows, nl, ks, g, nmax, yl, nlm, yo),
                        7 => accumulate_a::<7>(rows, nl, ks, g, nmax, yl, nlm, yo),
                        9 => accumulate_a::<9>(rows, nl, ks, g, nmax, yl, nlm, yo),
                        11 => accumulate_a::<11>(rows, nl, ks, g, nmax, yl, nlm, yo),
                        13 => accumulate_a::<13>(rows, nl, ks, g, nmax, yl, nlm, yo),
                        _ => accumulate_a_dyn(rows, nl, d, ks, g, nmax, yl, nlm, yo),
                    }
                }
            }
        }
    }

    /// Forward sweep of the DAG: `p[node]` = value of every monomial prefix.
    fn forward(&self, ws: &mut Workspace, si: usize) {
        let der = &self.derived[si];
        let na = der.dag.n_a;
        let links = &der.links;
        assert!(ws.p.len() >= na + links.len() && ws.a.len() >= na);
        ws.p[..na].copy_from_slice(&ws.a[..na]);
        let p = ws.p.as_mut_ptr();
        let a = ws.a.as_ptr();
        for (k, &[par, ex]) in links.iter().enumerate() {
            // SAFETY: `links` were validated in `Derived::new`: par < na + k, ex < na, and the
            // buffers are at least `na + links.len()` long (asserted above).
            unsafe { *p.add(na + k) = *p.add(par as usize) * *a.add(ex as usize) };
        }
    }

    /// Energy of atom `i` (species `si`) with neighbours at displacements `rij` of species `sj`,
    /// and `grad[k] = dE_i/dr_ij` for every neighbour (zero for those outside the cutoff).
    /// If `b` is given, the basis vector `B_i` is written there as well.
    pub fn atom_energy_grad(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        grad: &mut [[f64; 3]],
        b: Option<&mut [f64]>,
    ) -> f64 {
        #[cfg(target_arch = "x86_64")]
        {
            // The AVX2 build on AVX-512 hosts too: since the neighbours went into vector lanes, a
            // 512-bit build of this evaluation (the same code) was slower on both host kinds
            // measured, most with the basis vector (Intel Xeon, the MD-step harness: gamma every
            // step 10.46-10.56 against 9.14-9.25 µs/atom-step, energy + forces equal; AMD EPYC,
            // make bench: energy + forces 6.94 against 6.67). 512-bit lanes pay in the
            // ensemble's two-atom lane pass, which keeps them.
            let f = crate::simd::features();
            if f.avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (and ACEUQ_SIMD allows them).
                return unsafe { self.atom_energy_grad_avx2(ws, si, rij, sj, grad, b) };
            }
        }
        self.atom_energy_grad_body(ws, si, rij, sj, grad, b)
    }

    /// [`Model::atom_energy_grad`] compiled for AVX2 + FMA: the same code (inlined here, with the
    /// radial basis, the harmonics and the product sweep), so the compiler's vector lanes are
    /// 256 bits wide. The same operations in the same order (Rust never contracts a multiply and
    /// an add into a fused multiply-add by itself), so the results equal the portable build's
    /// bit for bit.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn atom_energy_grad_avx2(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        grad: &mut [[f64; 3]],
        b: Option<&mut [f64]>,
    ) -> f64 {
        self.atom_energy_grad_body(ws, si, rij, sj, grad, b)
    }

    #[inline(always)]
    pub(crate) fn atom_energy_grad_body(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        grad: &mut [[f64; 3]],
        b: Option<&mut [f64]>,
    ) -> f64 {
        self.compute_a(ws, si, rij, sj);
        let mut energy = self.e0[si];
        if let Some(b) = b {
            energy += self.energy_reverse_fused::<true>(ws, si);
            self.basis_from_fused(ws, si, b);
        } else {
            energy += self.energy_reverse_fused::<false>(ws, si);
        }
        let ns = self.nspecies();
        let lay = &self.bases[si].layout;
        let (nmax, nlm) = (ws.nmax, ws.nlm);
        const L: usize = SPH_LANES;
        assert!(ws.dp.len() >= lay.len() && grad.len() >= sj.len());
        // dE/dr_ij = sum_{n,lm} w (g'_n Y_lm u + g_n ∇Y_lm), SPH_LANES neighbours of one species
        // at a time, one per lane: per (l, m), t = sum_n w g_n and u = sum_n w g'_n, then
        // sum_lm u Y (along the bond) and sum_lm t ∂Y/∂u (projected below). Per lane these are
        // the sums of the neighbour-by-neighbour contraction in the same order.
        for z in 0..ns {
            let zk = &ws.zk[ws.zstart[z]..ws.zstart[z + 1]];
            let core = &self.core[si * ns + z];
            for (gi, ks) in (ws.gstart[z]..).zip(zk.chunks(L)) {
                let lg = &ws.lg[gi * nmax..(gi + 1) * nmax];
                let ldg = &ws.ldg[gi * nmax..(gi + 1) * nmax];
                let ly = &ws.ly[gi * nlm..(gi + 1) * nlm];
                let ldy = &ws.ldy[gi * nlm..(gi + 1) * nlm];
                let mut radial = [0.0; L];
                let mut gv = [[0.0; L]; 3];
                for l in 0..=lay.lmax {
                    let d = 2 * l + 1;
                    let nlr = lay.nmax_l[l];
                    let w = &ws.dp[lay.start(z, l)..lay.start(z, l) + nlr * d];
                    for m in 0..d {
                        let (mut tv, mut uv) = ([0.0; L], [0.0; L]);
                        for n in 0..nlr {
                            // SAFETY: n * d + m < nlr * d = w.len(); nlr <= nmax = lg.len().
                            let (wm, gn, dgn) = unsafe {
                                (
                                    *w.get_unchecked(n * d + m),
                                    lg.get_unchecked(n),
                                    ldg.get_unchecked(n),
                                )
                            };
                            for j in 0..L {
                                tv[j] += wm * gn[j];
                                uv[j] += wm * dgn[j];
                            }
                        }
                        let (yq, dq) = (&ly[l * l + m], &ldy[l * l + m]);
                        for j in 0..L {
                            radial[j] += uv[j] * yq[j];
                            gv[0][j] += tv[j] * dq[0][j];
                            gv[1][j] += tv[j] * dq[1][j];
                            gv[2][j] += tv[j] * dq[2][j];
                        }
                    }
                }
                for (j, &k) in ks.iter().enumerate() {
                    let k = k as usize;
                    let (rn, un) = (ws.rn[k], ws.un[k]);
                    // sum_lm t ∇Y = project(sum_lm t ∂Y/∂u) / r; the radial part points along u.
                    let mut out =
                        crate::basis::sph::project([gv[0][j], gv[1][j], gv[2][j]], un, 1.0 / rn);
                    // Core repulsion: half of the pair energy belongs to each atom.
                    let (ec, dec) = core.energy_deriv(rn);
                    ws.ec[k] = ec;
                    let c = radial[j] + 0.5 * dec;
                    out[0] += c * un[0];
                    out[1] += c * un[1];
                    out[2] += c * un[2];
                    grad[k] = out;
                }
            }
        }
        // Zero gradients outside the cutoff; core energies summed in neighbour order.
        for (k, gk) in grad[..sj.len()].iter_mut().enumerate() {
            if ws.rn[k] == 0.0 {
                *gk = [0.0; 3];
            } else {
                energy += 0.5 * ws.ec[k];
            }
        }
        energy
    }

    /// Energy-only path: forward over internal DAG nodes, leaf monomials folded into the energy
    /// and their reverse contributions in one pass, then the reverse sweep over internal nodes.
    /// Returns `c · B` and leaves `dE/dA` in `ws.dp[..n_a]`. With `LEAVES`, the value of every
    /// leaf monomial is left in `ws.p` after the internal nodes (for `basis_from_fused`).
    #[inline(always)]
    fn energy_reverse_fused<const LEAVES: bool>(&self, ws: &mut Workspace, si: usize) -> f64 {
        let der = &self.derived[si];
        let na = der.dag.n_a;
        let ni = der.internal.len();
        let nl = der.leaves.len();
        assert!(ws.p.len() >= na + ni + nl && ws.dp.len() >= na + ni && ws.a.len() >= na);
        assert!(der.leaf_c.len() == nl && der.ctilde_int.len() == na + ni);
        ws.p[..na].copy_from_slice(&ws.a[..na]);
        let p = ws.p.as_mut_ptr();
        let dp = ws.dp.as_mut_ptr();
        let a = ws.a.as_ptr();
        let mut e = 0.0;
        // SAFETY: `Derived::new` validated every index: internal parents < na + k, leaf parents
        // < na + ni, extras < na; buffer lengths asserted above.
        unsafe {
            for (k, &[par, ex]) in der.internal.iter().enumerate() {
                *p.add(na + k) = *p.add(par as usize) * *a.add(ex as usize);
            }
            // The A and internal-node terms of the energy (four partial sums: one running sum
            // was a chain of hundreds of dependent additions), and their adjoints' start.
            let nint = na + ni;
            e += crate::simd::dot(&der.ctilde_int, std::slice::from_raw_parts(p, nint));
            std::ptr::copy_nonoverlapping(der.ctilde_int.as_ptr(), dp, nint);
            // Leaves by parent: sum_l c_l A_ex(l) in registers (two chains), added once to the
            // parent's adjoint; each extra's adjoint gets c_l p_parent (distinct extras within
            // a group, so those updates do not wait on each other).
            let gl = der.group_leaves.as_ptr();
            let gc = der.group_c.as_ptr();
            let mut j = 0usize;
            let mut e_leaves = 0.0;
            for &[par, end] in &der.leaf_groups {
                let (par, end) = (par as usize, end as usize);
                let pp = *p.add(par);
                let (mut s0, mut s1) = (0.0, 0.0);
                while j + 1 < end {
                    let ([e0, l0], [e1, l1]) = (*gl.add(j), *gl.add(j + 1));
                    let (c0, c1) = (*gc.add(j), *gc.add(j + 1));
                    let (a0, a1) = (*a.add(e0 as usize), *a.add(e1 as usize));
                    if LEAVES {
                        *p.add(na + ni + l0 as usize) = pp * a0;
                        *p.add(na + ni + l1 as usize) = pp * a1;
                    }
                    s0 += c0 * a0;
                    s1 += c1 * a1;
                    *dp.add(e0 as usize) += c0 * pp;
                    *dp.add(e1 as usize) += c1 * pp;
                    j += 2;
                }
                if j < end {
                    let [e0, l0] = *gl.add(j);
                    let c0 = *gc.add(j);
                    let a0 = *a.add(e0 as usize);
                    if LEAVES {
                        *p.add(na + ni + l0 as usize) = pp * a0;
                    }
                    s0 += c0 * a0;
                    *dp.add(e0 as usize) += c0 * pp;
                    j += 1;
                }
                let sum = s0 + s1;
                e_leaves += pp * sum;
                *dp.add(par) += sum;
            }
            e += e_leaves;
            // Internal nodes in reverse: siblings are adjacent (see `Derived::new`), so their
            // parent's adjoint is summed in a register and written once per run.
            let mut k = ni;
            while k > 0 {
                let par = der.internal[k - 1][0] as usize;
                let pp = *p.add(par);
                let mut sum = 0.0;
                while k > 0 && der.internal[k - 1][0] as usize == par {
                    k -= 1;
                    let ex = der.internal[k][1] as usize;
                    let d = *dp.add(na + k);
                    sum += d * *a.add(ex);
                    *dp.add(ex) += d * pp;
                }
                *dp.add(par) += sum;
            }
        }
        e
    }

    /// `B_i` from the values left by a sweep that kept its leaf values
    /// ([`Model::energy_reverse_fused`] with `LEAVES`, or the lane pass with `leaves`): one
    /// load and multiply-add per step of the precomputed term tables, four functions at a time
    /// (see `Derived::term_ptr`). The same operations in the same order on every CPU (products
    /// and sums rounded separately), so the values are the same.
    fn basis_from_fused(&self, ws: &mut Workspace, si: usize, b: &mut [f64]) {
        self.basis_terms_with(ws, si, b, true);
    }

    /// [`Model::basis_from_fused`] with the portable kernel whatever the CPU (tests).
    #[cfg(test)]
    pub(crate) fn basis_from_fused_portable(&self, ws: &mut Workspace, si: usize, b: &mut [f64]) {
        self.basis_terms_with(ws, si, b, false);
    }

    /// The term-table product of [`Model::basis_from_fused`]; `simd`: use the AVX2 kernel when
    /// the CPU has it.
    fn basis_terms_with(&self, ws: &mut Workspace, si: usize, b: &mut [f64], simd: bool) {
        let der = &self.derived[si];
        let nv = der.dag.n_a + der.internal.len() + der.leaves.len();
        let nx = der.swept_len();
        let nf = self.bases[si].len();
        assert!(ws.p.len() >= nx && b.len() >= nf);
        assert!(der.term_out.len() == nf.div_ceil(TERM_LANES));
        let v = &mut ws.p[..nx];
        let b = &mut b[..nf];
        #[cfg(target_arch = "x86_64")]
        {
            if simd && crate::simd::features().avx2() {
                // SAFETY: the CPU supports AVX2 (checked just above); every step base is at
                // most nx - TERM_LANES (built so in Derived::new).
                unsafe { stage_and_terms_avx2(der, v, nv, b) };
                return;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd;
        stage_row(&der.term_stage, v, nv);
        basis_terms(der, v, b);
    }

    /// `B_i` from the forward-swept monomials in the workspace.
    fn basis_from_p(&self, ws: &Workspace, si: usize, b: &mut [f64]) {
        let bas = &self.bases[si];
        let dag = &self.derived[si].dag;
        for f in 0..bas.len() {
            let mut v = 0.0;
            for t in bas.func_ptr[f] as usize..bas.func_ptr[f + 1] as usize {
                v += bas.func_coef[t] * ws.p[dag.mono_node[bas.func_mono[t] as usize] as usize];
            }
            b[f] = v;
        }
    }

    /// Basis vector `B_i` only (no derivatives).
    pub fn atom_descriptor(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        b: &mut [f64],
    ) {
        self.compute_a(ws, si, rij, sj);
        self.forward(ws, si);
        self.basis_from_p(ws, si, b);
    }

    /// Core-repulsion energy of atom `i` (half of each pair) and its gradient, added into `grad`.
    pub fn atom_core(&self, si: usize, rij: &[[f64; 3]], sj: &[u16], grad: &mut [[f64; 3]]) -> f64 {
        let ns = self.nspecies();
        let mut e = 0.0;
        for (k, (r, &z)) in rij.iter().zip(sj).enumerate() {
            let rn = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
            let (ec, dec) = self.core[si * ns + z as usize].energy_deriv(rn);
            if ec != 0.0 || dec != 0.0 {
                e += 0.5 * ec;
                let c = 0.5 * dec / rn;
                for d in 0..3 {
                    grad[k][d] += c * r[d];
                }
            }
        }
        e
    }

    /// Basis vector `B_i` and its derivatives `db[(f * nn + k) * 3 + α] = dB_f/d(r_ij)_α` for the
    /// `nn = rij.len()` neighbours (used by the fit; not the hot path of MD).
    pub fn atom_descriptor_grad(
        &self,
        ws: &mut Workspace,
        si: usize,
        rij: &[[f64; 3]],
        sj: &[u16],
        b: &mut [f64],
        db: &mut Vec<f64>,
    ) {
        self.compute_a(ws, si, rij, sj);
        self.forward(ws, si);
        self.basis_from_p(ws, si, b);
        let bas = &self.bases[si];
        let lay = &bas.layout;
        let na = lay.len();
        let nn = rij.len();
        let nn3 = nn * 3;
        // dA_a/dr_k for every A index a and neighbour k: dg_n Y_lm r̂ + g_n ∇Y_lm.
        ws.dadr.clear();
        ws.dadr.resize(na * nn3, 0.0);
        for k in 0..nn {
            let rn = ws.rn[k];
            if rn == 0.0 {
                continue;
            }
            let z = sj[k] as usize;
            let rhat = ws.un[k];
            let inv_r = 1.0 / rn;
            // The neighbour's values in the lane form of `compute_a` (entries S apart).
            const S: usize = SPH_LANES;
            let [g, dg, y, dy] = ws.lane_rows(k);
            for l in 0..=lay.lmax {
                let d = 2 * l + 1;
                let start = lay.start(z, l);
                for n in 0..lay.nmax_l[l] {
                    for m in 0..d {
                        let q = l * l + m;
                        // SAFETY: n < nmax_l[l] <= nmax radial entries and q < (lmax + 1)^2 <=
                        // nlm harmonics of the neighbour (`Workspace::lane_rows`).
                        let (gn, dgn, yq, dyq) = unsafe {
                            (
                                *g.add(n * S),
                                *dg.add(n * S),
                                *y.add(q * S),
                                [0, 1, 2].map(|c| *dy.add((3 * q + c) * S)),
                            )
                        };
                        let gy = crate::basis::sph::project(dyq, rhat, inv_r);
                        let a = start + n * d + m;
                        let base = a * nn3 + k * 3;
                        for al in 0..3 {
                            ws.dadr[base + al] = dgn * yq * rhat[al] + gn * gy[al];
                        }
                    }
                }
            }
        }
        db.clear();
        db.resize(bas.len() * nn3, 0.0);
        for f in 0..bas.len() {
            // Jacobian row dB_f/dA by the product rule over each monomial's factors.
            for t in bas.func_ptr[f] as usize..bas.func_ptr[f + 1] as usize {
                let coef = bas.func_coef[t];
                let fac = bas.monomial(bas.func_mono[t] as usize);
                for p in 0..fac.len() {
                    let mut prod = coef;
                    for (q, &a) in fac.iter().enumerate() {
                        if q != p {
                            prod *= ws.a[a as usize];
                        }
                    }
                    let a = fac[p] as usize;
                    if ws.jrow[a] == 0.0 {
                        ws.touched.push(a as u32);
                    }
                    ws.jrow[a] += prod;
                    if ws.jrow[a] == 0.0 {
                        // Keep "touched" bookkeeping exact even if a sum cancels to zero.
                        ws.jrow[a] = f64::MIN_POSITIVE;
                    }
                }
            }
            let out = &mut db[f * nn3..(f + 1) * nn3];
            for &a in &ws.touched {
                let a = a as usize;
                let j = ws.jrow[a];
                ws.jrow[a] = 0.0;
                let row = &ws.dadr[a * nn3..(a + 1) * nn3];
                for (o, r) in out.iter_mut().zip(row) {
                    *o += j * r;
                }
            }
            ws.touched.clear();
        }
    }

    /// Energies, forces and virial of a structure.
    pub fn predict(
        &self,
        s: &Structure,
        ws: &mut Workspace,
    ) -> Result<Prediction, super::ModelError> {
        Ok(self.predict_with(&Environments::new(self, s)?, ws))
    }

    /// Like [`Model::predict`] with the structure's environments already at hand.
    pub fn predict_with(&self, envs: &Environments, ws: &mut Workspace) -> Prediction {
        let n = envs.len();
        let mut pred = Prediction {
            atom_energies: vec![0.0; n],
            forces: vec![[0.0; 3]; n],
            ..Default::default()
        };
        let mut grad = Vec::new();
        for i in 0..n {
            let env = envs.get(i);
            let rij = env.rij;
            grad.clear();
            grad.resize(rij.len(), [0.0; 3]);
            let e = self.atom_energy_grad(ws, env.si, rij, env.sj, &mut grad, None);
            pred.atom_energies[i] = e;
            pred.energy += e;
            for (k, &j) in env.j.iter().enumerate() {
                let gk = grad[k];
                for d in 0..3 {
                    pred.forces[i][d] += gk[d];
                    pred.forces[j as usize][d] -= gk[d];
                }
                for a in 0..3 {
                    for c in 0..3 {
                        pred.virial[a][c] -= rij[k][a] * gk[c];
                    }
                }
            }
        }
        pred
    }
}

#[cfg(test)]
mod lane_form_tests {
    use super::*;
    use crate::basis::BasisConfig;
    use crate::testing::{random_model, random_structure, small_cfg};

    /// `A` and the neighbour gradients of the lane-form evaluation equal, bit for bit, the
    /// neighbour-by-neighbour computation with the one-neighbour radial basis and harmonics (how
    /// the evaluation ran before its lane form), for two species (neighbours grouped by species)
    /// and two bases, over every atom of a random structure.
    #[test]
    fn lane_form_equals_neighbour_by_neighbour_bit_for_bit() {
        for cfg in [BasisConfig::default(), small_cfg()] {
            let model = random_model(&["Al", "Mg"], &cfg, 11);
            let s = random_structure(&["Al", "Mg"], 2, 5, true);
            let sp = model.map_species(&s).unwrap();
            let nl = crate::neighbors::build(&s, model.max_cutoff()).unwrap();
            let ns = model.nspecies();
            let mut ws = Workspace::new(&model);
            let mut inside_total = 0;
            for i in 0..s.len() {
                let si = sp[i] as usize;
                let r = nl.range(i);
                let rij: Vec<[f64; 3]> = nl.rij[r.clone()].to_vec();
                let sj: Vec<u16> = nl.j[r].iter().map(|&j| sp[j as usize]).collect();
                let mut grad = vec![[f64::NAN; 3]; rij.len()];
                model.atom_energy_grad_body(&mut ws, si, &rij, &sj, &mut grad, None);
                let lay = &model.bases[si].layout;
                let nlm = num_lm(lay.lmax);
                let mut sph = SphHarm::new(lay.lmax);
                let mut a = vec![0.0; lay.len()];
                let mut nbs = vec![];
                for (k, rv) in rij.iter().enumerate() {
                    let z = sj[k] as usize;
                    let rb = &model.radial[si * ns + z];
                    let rn = (rv[0] * rv[0] + rv[1] * rv[1] + rv[2] * rv[2]).sqrt();
                    if rn >= rb.rc || rn == 0.0 {
                        assert_eq!(grad[k], [0.0; 3], "atom {i} neighbour {k} outside");
                        continue;
                    }
                    let (mut g, mut dg) = (vec![0.0; rb.nmax], vec![0.0; rb.nmax]);
                    rb.eval(rn, &mut g, &mut dg);
                    let (mut y, mut dy) = (vec![0.0; nlm], vec![[0.0; 3]; nlm]);
                    let (un, _) = sph.eval_raw_grad(*rv, &mut y, &mut dy);
                    for l in 0..=lay.lmax {
                        let d = 2 * l + 1;
                        for n in 0..lay.nmax_l[l] {
                            for m in 0..d {
                                a[lay.start(z, l) + n * d + m] += g[n] * y[l * l + m];
                            }
                        }
                    }
                    nbs.push((k, z, rn, un, g, dg, y, dy));
                }
                inside_total += nbs.len();
                let same = a.iter().zip(&ws.a).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "atom {i}: A differs from the neighbour-by-neighbour sums"
                );
                // The gradients from the same dE/dA, contracted neighbour by neighbour.
                let w = &ws.dp[..lay.len()];
                for (k, z, rn, un, g, dg, y, dy) in nbs {
                    let (mut radial, mut gv) = (0.0, [0.0; 3]);
                    for l in 0..=lay.lmax {
                        let d = 2 * l + 1;
                        let start = lay.start(z, l);
                        for m in 0..d {
                            let (mut t, mut u) = (0.0, 0.0);
                            for n in 0..lay.nmax_l[l] {
                                t += w[start + n * d + m] * g[n];
                                u += w[start + n * d + m] * dg[n];
                            }
                            let q = l * l + m;
                            radial += u * y[q];
                            for c in 0..3 {
                                gv[c] += t * dy[q][c];
                            }
                        }
                    }
                    let mut out = crate::basis::sph::project(gv, un, 1.0 / rn);
                    let (_, dec) = model.core[si * ns + z].energy_deriv(rn);
                    let c = radial + 0.5 * dec;
                    for d in 0..3 {
                        out[d] += c * un[d];
                    }
                    let bits = |v: [f64; 3]| v.map(f64::to_bits);
                    assert_eq!(bits(out), bits(grad[k]), "atom {i} neighbour {k}");
                }
            }
            assert!(
                inside_total > 10 * s.len(),
                "too few neighbours to test anything"
            );
        }
    }
}
