//! Evaluation: per-atom energy, gradient with respect to neighbour displacements, basis vectors,
//! and whole-structure predictions.
//!
//! Per atom: (1) accumulate `A` from every neighbour inside the pair cutoff, caching radial values,
//! harmonics and their derivatives; (2) one forward sweep over the monomial DAG; (3) for the energy,
//! one reverse sweep gives `w = dE/dA`; (4) per neighbour, `dE/dr_ij = sum_{n,lm} w (g'_n Y_lm r̂ +
//! g_n ∇Y_lm)` contracted first over `n`. Nothing is allocated per atom once the workspace has grown
//! to the largest neighbour count.

use super::env::Environments;
use super::{Model, TERM_LANES};
use crate::basis::sph::{SphHarm, num_lm};
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
    /// Per neighbour: distance (0 = outside the cutoff), radial values/derivatives, harmonics.
    rn: Vec<f64>,
    /// Unit vector to each neighbour.
    un: Vec<[f64; 3]>,
    /// Per neighbour: the radial basis's two angles (`[arg, θ]`), then their sines and cosines
    /// (`[sin arg, cos arg, sin θ, cos θ]`), and `dθ/dr`.
    ang: Vec<[f64; 2]>,
    trig: Vec<[f64; 4]>,
    dth: Vec<f64>,
    g: Vec<f64>,
    dg: Vec<f64>,
    y: Vec<f64>,
    /// Polynomial partials of the harmonics (project with `sph::project` for gradients).
    dy: Vec<[f64; 3]>,
    t: Vec<f64>,
    u: Vec<f64>,
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
            ang: vec![],
            trig: vec![],
            dth: vec![],
            g: vec![],
            dg: vec![],
            y: vec![],
            dy: vec![],
            t: vec![0.0; nlm],
            u: vec![0.0; nlm],
            jrow: vec![0.0; na],
            touched: vec![],
            dadr: vec![],
            dpm: vec![],
            macc: vec![],
            pe: vec![],
            pair: PairScratch::default(),
        }
    }

    fn reserve_neighbors(&mut self, nn: usize) {
        if self.rn.len() < nn {
            self.rn.resize(nn, 0.0);
            self.un.resize(nn, [0.0; 3]);
            self.ang.resize(nn, [0.0; 2]);
            self.trig.resize(nn, [0.0; 4]);
            self.dth.resize(nn, 0.0);
            self.g.resize(nn * self.nmax, 0.0);
            self.dg.resize(nn * self.nmax, 0.0);
            self.y.resize(nn * self.nlm, 0.0);
            self.dy.resize(nn * self.nlm, [0.0; 3]);
        }
    }
}

/// `rows[n*D + m] += g[n] * y[m]` for `n < nl`, `m < D` (D known at compile time, so the inner
/// loop unrolls).
///
/// # Safety
/// `rows` must hold `nl * D` values, `g` `nl`, `y` `D`.
#[inline(always)]
unsafe fn outer_acc<const D: usize>(rows: *mut f64, g: *const f64, y: *const f64, nl: usize) {
    // SAFETY: per the function contract.
    unsafe {
        let yv: [f64; D] = std::array::from_fn(|m| *y.add(m));
        for n in 0..nl {
            let gn = *g.add(n);
            let row = rows.add(n * D);
            for m in 0..D {
                *row.add(m) += gn * yv[m];
            }
        }
    }
}

/// [`outer_acc`] for a run-time row length.
///
/// # Safety
/// As [`outer_acc`] with `D = d`.
unsafe fn outer_acc_dyn(rows: *mut f64, g: *const f64, y: *const f64, nl: usize, d: usize) {
    // SAFETY: per the function contract.
    unsafe {
        for n in 0..nl {
            let gn = *g.add(n);
            for m in 0..d {
                *rows.add(n * d + m) += gn * *y.add(m);
            }
        }
    }
}

/// `t[m] = sum_n w[n*D+m] g[n]`, `u[m] = sum_n w[n*D+m] dg[n]`.
///
/// # Safety
/// `w` must hold `nl * D` values, `g`/`dg` `nl`, `t`/`u` `D`.
#[inline(always)]
unsafe fn contract<const D: usize>(
    w: *const f64,
    g: *const f64,
    dg: *const f64,
    t: *mut f64,
    u: *mut f64,
    nl: usize,
) {
    // SAFETY: per the function contract.
    unsafe {
        let mut tv = [0.0; D];
        let mut uv = [0.0; D];
        for n in 0..nl {
            let (gn, dgn) = (*g.add(n), *dg.add(n));
            let wr = w.add(n * D);
            for m in 0..D {
                let wm = *wr.add(m);
                tv[m] += wm * gn;
                uv[m] += wm * dgn;
            }
        }
        for m in 0..D {
            *t.add(m) = tv[m];
            *u.add(m) = uv[m];
        }
    }
}

/// [`contract`] for a run-time row length.
///
/// # Safety
/// As [`contract`] with `D = d`.
#[allow(clippy::too_many_arguments)]
unsafe fn contract_dyn(
    w: *const f64,
    g: *const f64,
    dg: *const f64,
    t: *mut f64,
    u: *mut f64,
    nl: usize,
    d: usize,
) {
    // SAFETY: per the function contract.
    unsafe {
        for m in 0..d {
            *t.add(m) = 0.0;
            *u.add(m) = 0.0;
        }
        for n in 0..nl {
            let (gn, dgn) = (*g.add(n), *dg.add(n));
            for m in 0..d {
                let wm = *w.add(n * d + m);
                *t.add(m) += wm * gn;
                *u.add(m) += wm * dgn;
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
/// -1 for 0), four values at a time written with one whole store (inlined into the AVX2 kernel,
/// one 256-bit store), so that the step loads that read them are forwarded from whole stores (a
/// wide load over narrower stores waits for them to reach the cache).
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
    stage_row(&der.term_stage, v, nv);
    // SAFETY: this function's contract.
    unsafe { basis_terms_avx2(der, v, b) }
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
    /// Accumulate `A` for centre species `si`, caching per-neighbour radial and angular values.
    #[inline(always)]
    fn compute_a(&self, ws: &mut Workspace, si: usize, rij: &[[f64; 3]], sj: &[u16]) {
        // Wide-register code elsewhere (faer's GEMM in fits and active sets) can leave the upper
        // halves of the vector registers dirty, which slows every SSE instruction below by ~1.7x
        // until cleared; clearing costs about a nanosecond.
        crate::simd::clear_upper_simd_state();
        let ns = self.nspecies();
        let lay = &self.bases[si].layout;
        let (nmax, nlm) = (ws.nmax, ws.nlm);
        ws.reserve_neighbors(rij.len());
        ws.a[..lay.len()].fill(0.0);
        // Distances and the radial basis's angles of every neighbour, then all their sines and
        // cosines in one branch-free loop (vectorised), then the rest per neighbour.
        let nn = rij.len();
        for (k, (r, &z)) in rij.iter().zip(sj).enumerate() {
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
        for (k, (r, &z)) in rij.iter().zip(sj).enumerate() {
            let z = z as usize;
            let rb = &self.radial[si * ns + z];
            if ws.rn[k] == 0.0 {
                continue;
            }
            let g = &mut ws.g[k * nmax..(k + 1) * nmax];
            let dg = &mut ws.dg[k * nmax..(k + 1) * nmax];
            let [sa, ca, st, ct] = ws.trig[k];
            rb.eval_trig((sa, ca), (st, ct), ws.dth[k], g, dg);
            let y = &mut ws.y[k * nlm..(k + 1) * nlm];
            let dy = &mut ws.dy[k * nlm..(k + 1) * nlm];
            ws.un[k] = ws.sph.eval_raw_grad(*r, y, dy).0;
            // A[z, l, n, m] += g_n Y_lm: per degree an outer product of the radial values and
            // the harmonics, written without bounds checks (the layout was validated when the
            // model was built; indices stay inside `lay.len() <= ws.a.len()`).
            debug_assert!(ws.a.len() >= lay.len());
            let a = ws.a.as_mut_ptr();
            for l in 0..=lay.lmax {
                let d = 2 * l + 1;
                let start = lay.start(z, l);
                let nl = lay.nmax_l[l];
                // SAFETY: start + nl * d <= lay.len() (layout construction), y has (lmax+1)^2
                // entries, g has nmax >= nl entries.
                unsafe {
                    let yl = y.as_ptr().add(l * l);
                    let rows = a.add(start);
                    match d {
                        1 => outer_acc::<1>(rows, g.as_ptr(), yl, nl),
                        3 => outer_acc::<3>(rows, g.as_ptr(), yl, nl),
                        5 => outer_acc::<5>(rows, g.as_ptr(), yl, nl),
                        7 => outer_acc::<7>(rows, g.as_ptr(), yl, nl),
                        9 => outer_acc::<9>(rows, g.as_ptr(), yl, nl),
                        _ => outer_acc_dyn(rows, g.as_ptr(), yl, nl, d),
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
            let f = crate::simd::features();
            if f.avx512() {
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA (and ACEUQ_SIMD allows them).
                return unsafe { self.atom_energy_grad_avx512(ws, si, rij, sj, grad, b) };
            }
            if f.avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (and ACEUQ_SIMD allows them).
                return unsafe { self.atom_energy_grad_avx2(ws, si, rij, sj, grad, b) };
            }
        }
        self.atom_energy_grad_body(ws, si, rij, sj, grad, b)
    }

    /// [`Model::atom_energy_grad_avx2`] with 512-bit lanes (AVX-512F): the same code and the
    /// same operations in the same order, so the same results bit for bit.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn atom_energy_grad_avx512(
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
        let nl = num_lm(lay.lmax);
        for (k, &z) in sj.iter().enumerate() {
            let rn = ws.rn[k];
            if rn == 0.0 {
                grad[k] = [0.0; 3];
                continue;
            }
            let z = z as usize;
            let g = &ws.g[k * nmax..(k + 1) * nmax];
            let dg = &ws.dg[k * nmax..(k + 1) * nmax];
            // t_lm = sum_n w g_n, u_lm = sum_n w g'_n
            debug_assert!(ws.dp.len() >= lay.len() && ws.t.len() >= nl && ws.u.len() >= nl);
            for l in 0..=lay.lmax {
                let d = 2 * l + 1;
                let nlr = lay.nmax_l[l];
                let start = lay.start(z, l);
                // SAFETY: as in `compute_a`: the (z, l) block of dE/dA lies inside the layout,
                // t/u have (lmax+1)^2 entries, g/dg have nmax >= nlr entries.
                unsafe {
                    let tl = ws.t.as_mut_ptr().add(l * l);
                    let ul = ws.u.as_mut_ptr().add(l * l);
                    let w = ws.dp.as_ptr().add(start);
                    let (gp, dgp) = (g.as_ptr(), dg.as_ptr());
                    match d {
                        1 => contract::<1>(w, gp, dgp, tl, ul, nlr),
                        3 => contract::<3>(w, gp, dgp, tl, ul, nlr),
                        5 => contract::<5>(w, gp, dgp, tl, ul, nlr),
                        7 => contract::<7>(w, gp, dgp, tl, ul, nlr),
                        9 => contract::<9>(w, gp, dgp, tl, ul, nlr),
                        _ => contract_dyn(w, gp, dgp, tl, ul, nlr, d),
                    }
                }
            }
            let y = &ws.y[k * nlm..k * nlm + nl];
            let dy = &ws.dy[k * nlm..k * nlm + nl];
            let mut radial_part = 0.0;
            let mut gv = [0.0; 3];
            for ((&uq, &tq), (&yq, dq)) in ws.u[..nl].iter().zip(&ws.t[..nl]).zip(y.iter().zip(dy))
            {
                radial_part += uq * yq;
                gv[0] += tq * dq[0];
                gv[1] += tq * dq[1];
                gv[2] += tq * dq[2];
            }
            // sum_lm t ∇Y = project(sum_lm t ∂Y/∂u) / r; the radial part points along u.
            let un = ws.un[k];
            let mut out = crate::basis::sph::project(gv, un, 1.0 / rn);
            // Core repulsion: half of the pair energy belongs to each atom.
            let (ec, dec) = self.core[si * ns + z].energy_deriv(rn);
            energy += 0.5 * ec;
            let c = radial_part + 0.5 * dec;
            out[0] += c * un[0];
            out[1] += c * un[1];
            out[2] += c * un[2];
            grad[k] = out;
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
        let (nmax, nlm) = (ws.nmax, ws.nlm);
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
            let g = &ws.g[k * nmax..(k + 1) * nmax];
            let dg = &ws.dg[k * nmax..(k + 1) * nmax];
            let y = &ws.y[k * nlm..(k + 1) * nlm];
            let dy = &ws.dy[k * nlm..(k + 1) * nlm];
            for l in 0..=lay.lmax {
                let d = 2 * l + 1;
                let start = lay.start(z, l);
                for n in 0..lay.nmax_l[l] {
                    for m in 0..d {
                        let q = l * l + m;
                        let gy = crate::basis::sph::project(dy[q], rhat, inv_r);
                        let a = start + n * d + m;
                        let base = a * nn3 + k * 3;
                        for al in 0..3 {
                            ws.dadr[base + al] = dg[n] * y[q] * rhat[al] + g[n] * gy[al];
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
