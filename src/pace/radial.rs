//! Radial part of a pacemaker potential: the radial base families `g_k(r)`, the contracted
//! radial functions `R_nl(r) = sum_k crad[n][l][k] g_k(r)`, the pair core repulsion, and the
//! cubic Hermite look-up tables through which ML-PACE evaluates all three.
//!
//! The tables matter for agreement: ML-PACE never evaluates the analytic functions during MD, it
//! interpolates them on a grid of `deltaSplineBins` (cubic Hermite between exact values and
//! derivatives at the nodes). Interpolation errors of the high Chebyshev orders reach 1e-9 eV/Å,
//! so we build the same tables from the same node values and interpolate the same way.

use std::f64::consts::PI;

/// Radial base family (`radbasename`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Chebyshev polynomials of `1 - 2 (e^{-λ r/rc} - e^{-λ}) / (1 - e^{-λ})`, with a cosine
    /// envelope over the whole range and a second one over the last `dcut`.
    ChebExpCos,
    /// `(1 - T_k(x))/2`, `x = 1 - 2 (1 - r/rc)^λ` (smooth at rc without a separate cutoff).
    ChebPow,
    /// `(1 - T_k(x))/2`, `x = 1 - r/rc`.
    ChebLinear,
    /// Orthogonalised combinations of `sinc` (simplified spherical Bessel functions).
    SBessel,
}

impl Family {
    /// The family of a `radbasename`, or `None` when unknown.
    pub fn from_name(name: &str) -> Option<Family> {
        match name {
            "ChebExpCos" => Some(Family::ChebExpCos),
            "ChebPow" => Some(Family::ChebPow),
            "ChebLinear" => Some(Family::ChebLinear),
            "SBessel" | "TEST_SBessel" => Some(Family::SBessel),
            _ => None,
        }
    }
}

/// How the short range is handled (`inner_cutoff_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnerCutoff {
    /// Core repulsion `pre e^{-λ r²}/r` added to the energy, ACE energy switched off by the
    /// core density `rho_core` (the `.ace` format's only kind).
    Density,
    /// As `Density`, but the radial basis is switched on and the core repulsion off between
    /// `r_in - delta_in` and `r_in`.
    Distance,
    /// ZBL screened Coulomb repulsion; the atom's energy goes from ZBL to ACE as its nearest
    /// neighbour crosses `[r_in - delta_in, r_in]`.
    Zbl,
}

/// The smooth step of ML-PACE's inner cutoffs: 1 below `r_in - delta`, 0 above `r_in`, a
/// quintic in between (value, derivative).
pub fn poly_cutoff(r: f64, r_in: f64, delta: f64) -> (f64, f64) {
    if r <= r_in - delta {
        (1.0, 0.0)
    } else if r >= r_in {
        (0.0, 0.0)
    } else {
        let x = 1.0 - 2.0 * (1.0 + (r - r_in) / delta);
        let f = 0.5 + 7.5 / 2.0 * (x / 4.0 - x.powi(3) / 6.0 + x.powi(5) / 20.0);
        let df = -7.5 / delta * (0.25 - x * x / 2.0 + x.powi(4) / 4.0);
        (f, df)
    }
}

/// Everything that defines the radial functions of one (centre, neighbour) species pair.
#[derive(Clone, Debug)]
pub struct PairSpec {
    pub family: Family,
    /// Family parameter λ (`radparameter`).
    pub lambda: f64,
    pub cut: f64,
    pub dcut: f64,
    pub cut_in: f64,
    pub dcut_in: f64,
    pub inner: InnerCutoff,
    /// Core repulsion prefactor and exponent (`Density`/`Distance`), or ZBL prefactor.
    pub pre: f64,
    pub lambda_hc: f64,
    /// Atomic numbers (ZBL only).
    pub z: (u32, u32),
    /// `crad[(n * (lmax+1) + l) * nradbase + k]`.
    pub crad: Vec<f64>,
}

/// Chebyshev polynomials of the first kind `T_0..T_n(x)` and their derivatives.
fn chebyshev(n: usize, x: f64, t: &mut [f64], dt: &mut [f64]) {
    // U_k (second kind) gives the derivatives: T_k' = k U_{k-1}.
    let mut u = vec![0.0; n + 1];
    t[0] = 1.0;
    u[0] = 1.0;
    if n >= 1 {
        t[1] = x;
        u[1] = 2.0 * x;
    }
    for m in 1..n {
        t[m + 1] = 2.0 * x * t[m] - t[m - 1];
        u[m + 1] = 2.0 * x * u[m] - u[m - 1];
    }
    dt[0] = 0.0;
    for m in 1..=n {
        dt[m] = m as f64 * u[m - 1];
    }
}

fn sinc(x: f64) -> f64 {
    if x != 0.0 { x.sin() / x } else { 1.0 }
}

fn dsinc(x: f64) -> f64 {
    if x != 0.0 {
        (x.cos() * x - x.sin()) / (x * x)
    } else {
        0.0
    }
}

/// The n-th simplified Bessel building block and its derivative.
fn sbessel_aux(r: f64, rc: f64, n: usize) -> (f64, f64) {
    let nf = n as f64;
    let (a, b) = ((nf + 1.0) * PI / rc, (nf + 2.0) * PI / rc);
    let sign = if n.is_multiple_of(2) { 1.0 } else { -1.0 };
    let pre = sign * 2f64.sqrt() * PI / rc.powf(1.5) * (nf + 1.0) * (nf + 2.0)
        / ((nf + 1.0).powi(2) + (nf + 2.0).powi(2)).sqrt();
    (
        pre * (sinc(r * a) + sinc(r * b)),
        pre * (dsinc(r * a) * a + dsinc(r * b) * b),
    )
}

impl PairSpec {
    /// Radial base `g_k(r)` and derivatives, `k < g.len()`, as the analytic functions.
    pub fn base(&self, r: f64, g: &mut [f64], dg: &mut [f64]) {
        let nb = g.len();
        g.fill(0.0);
        dg.fill(0.0);
        // With ZBL ML-PACE resets the inner cutoff of the radial basis to the boolean
        // `dcut_in == 0`, so it is 0 for every real ZBL potential: reproduce that.
        let cut_in = match self.inner {
            InnerCutoff::Zbl => (self.dcut_in == 0.0) as u8 as f64,
            _ => self.cut_in,
        };
        if r <= cut_in - self.dcut_in || r >= self.cut {
            return;
        }
        let (lam, cut, dcut) = (self.lambda, self.cut, self.dcut);
        let mut t = vec![0.0; nb + 1];
        let mut dt = vec![0.0; nb + 1];
        match self.family {
            Family::ChebExpCos => {
                let y1 = (-lam * r / cut).exp();
                let y2 = (-lam).exp();
                let x = 1.0 - 2.0 * ((y1 - y2) / (1.0 - y2));
                let dx = 2.0 * (lam / cut) * (y1 / (1.0 - y2));
                chebyshev(nb, x, &mut t, &mut dt);
                g[0] = t[0];
                dg[0] = dt[0] * dx;
                for k in 1..nb {
                    g[k] = 0.5 - 0.5 * t[k];
                    dg[k] = -0.5 * dt[k] * dx;
                }
                let env = 0.5 * (1.0 + (PI * r / cut).cos());
                let denv = -0.5 * (PI * r / cut).sin() * PI / cut;
                for k in 0..nb {
                    dg[k] = g[k] * denv + dg[k] * env;
                    g[k] *= env;
                }
                let start = cut - dcut;
                if r > start {
                    let fc = 0.5 * (1.0 + (PI * (r - start) / dcut).cos());
                    let dfc = -0.5 * (PI * (r - start) / dcut).sin() * PI / dcut;
                    for k in 0..nb {
                        dg[k] = g[k] * dfc + dg[k] * fc;
                        g[k] *= fc;
                    }
                }
            }
            Family::ChebPow | Family::ChebLinear => {
                let (x, dx) = if self.family == Family::ChebPow {
                    let y0 = 1.0 - r / cut;
                    let p = y0.powf(lam - 1.0);
                    (2.0 * (1.0 - p * y0) - 1.0, 2.0 * lam / cut * p)
                } else {
                    (1.0 - r / cut, -1.0 / cut)
                };
                chebyshev(nb, x, &mut t, &mut dt);
                for k in 0..nb {
                    g[k] = 0.5 - 0.5 * t[k + 1];
                    dg[k] = -0.5 * dt[k + 1] * dx;
                }
            }
            Family::SBessel => {
                if r < cut {
                    let (f0, df0) = sbessel_aux(r, cut, 0);
                    g[0] = f0;
                    dg[0] = df0;
                    let mut d_prev = 1.0;
                    for k in 1..nb {
                        let kf = k as f64;
                        let e = kf * kf * (kf + 2.0).powi(2) / (4.0 * (kf + 1.0).powi(4) + 1.0);
                        let d = 1.0 - e / d_prev;
                        let (f, df) = sbessel_aux(r, cut, k);
                        let s = (e / d_prev).sqrt();
                        g[k] = (f + s * g[k - 1]) / d.sqrt();
                        dg[k] = (df + s * dg[k - 1]) / d.sqrt();
                        d_prev = d;
                    }
                }
            }
        }
        if matches!(self.inner, InnerCutoff::Distance | InnerCutoff::Zbl) {
            let (fc, dfc) = poly_cutoff(r, cut_in, self.dcut_in);
            let (fc, dfc) = (1.0 - fc, -dfc);
            for k in 0..nb {
                dg[k] = dg[k] * fc + g[k] * dfc;
                g[k] *= fc;
            }
        }
    }

    /// Contracted radial functions `R_nl(r)` (`[n * (lmax+1) + l]`) from base values.
    pub fn contract(&self, g: &[f64], dg: &[f64], fr: &mut [f64], dfr: &mut [f64]) {
        let nb = g.len();
        for (nl, (f, df)) in fr.iter_mut().zip(dfr.iter_mut()).enumerate() {
            let c = &self.crad[nl * nb..(nl + 1) * nb];
            *f = c.iter().zip(g).map(|(a, b)| a * b).sum();
            *df = c.iter().zip(dg).map(|(a, b)| a * b).sum();
        }
    }

    /// Core repulsion energy of the pair and its derivative (analytic).
    pub fn core(&self, r: f64) -> (f64, f64) {
        match self.inner {
            InnerCutoff::Zbl => self.zbl(r),
            _ => {
                let (pre, lam) = (self.pre.abs(), self.lambda_hc.abs());
                let lr2 = lam * r * r;
                let (mut cr, mut dcr) = (0.0, 0.0);
                if lr2 < 50.0 {
                    let y = (-lr2).exp();
                    cr = pre * y / r;
                    dcr = -pre * y * (2.0 * lr2 + 1.0) / (r * r);
                    let x0 = r / self.cut;
                    let env = 0.5 * (1.0 + (PI * x0).cos());
                    let denv = -0.5 * (PI * x0).sin() * PI / self.cut;
                    dcr = cr * denv + dcr * env;
                    cr *= env;
                }
                if self.inner == InnerCutoff::Distance {
                    let (fc, dfc) = poly_cutoff(r, self.cut_in, self.dcut_in);
                    (cr * fc, dcr * fc + cr * dfc)
                } else {
                    (cr, dcr)
                }
            }
        }
    }

    /// ZBL repulsion switched smoothly to zero between `cut - dcut` and `cut`.
    fn zbl(&self, r: f64) -> (f64, f64) {
        let (out, inn) = (self.cut, self.cut - self.dcut);
        if r >= out {
            return (0.0, 0.0);
        }
        let (zi, zj) = (self.z.0 as f64, self.z.1 as f64);
        let a = 0.46850 / (zi.powf(0.23) + zj.powf(0.23));
        let (e, de, _) = zbl_screened(r, a);
        let (ec, dec, d2ec) = zbl_screened(out, a);
        let w = out - inn;
        let ca = (-3.0 * dec + w * d2ec) / (w * w);
        let cb = (2.0 * dec - w * d2ec) / (w * w * w);
        let cc = -ec + 0.5 * w * dec - w * w * d2ec / 12.0;
        let s = if r <= inn {
            cc
        } else {
            ca / 3.0 * (r - inn).powi(3) + cb / 4.0 * (r - inn).powi(4) + cc
        };
        let ds = if r > inn {
            ca * (r - inn).powi(2) + cb * (r - inn).powi(3)
        } else {
            0.0
        };
        let k = self.pre * COULOMB_EV_A / 2.0 * zi * zj;
        let (cr, dcr) = (k * (e + s), k * (de + ds));
        let (fc, dfc) = poly_cutoff(r, out, w);
        (cr * fc, dcr * fc + cr * dfc)
    }
}

/// `e² / (4π ε0)` in eV Å.
const COULOMB_EV_A: f64 = 14.399645351950543;

/// Universal ZBL screened Coulomb `φ(r/a)/r` and its first two derivatives.
fn zbl_screened(r: f64, a: f64) -> (f64, f64, f64) {
    const C: [f64; 4] = [0.18175, 0.50986, 0.28022, 0.02817];
    const D: [f64; 4] = [-3.19980, -0.94229, -0.40290, -0.20162];
    let (mut p, mut dp, mut d2p) = (0.0, 0.0, 0.0);
    for k in 0..4 {
        let t = C[k] * (D[k] * r / a).exp();
        p += t;
        dp += t * D[k];
        d2p += t * D[k] * D[k];
    }
    let e = p / r;
    let de = -p / (r * r) + dp / (a * r);
    let d2e = 2.0 * p / (r * r * r) - 2.0 * dp / (a * r * r) + d2p / (a * a * r);
    (e, de, d2e)
}

/// Cubic Hermite look-up table of `nf` functions on `[0, cutoff]`, nodes every
/// `cutoff / floor(cutoff / delta)` Å, built from exact values and derivatives at the nodes.
#[derive(Clone, Debug)]
pub struct Spline {
    nf: usize,
    nlut: usize,
    scale: f64,
    /// `[node][power 0..4][function]` polynomial coefficients in the node-relative coordinate
    /// (each power contiguous over the functions, so that the evaluation runs in vector lanes).
    c: Vec<f64>,
}

impl Spline {
    /// Tabulate `f(r, values, derivatives)` (which fills `nf` values and derivatives).
    pub fn new(
        nf: usize,
        delta: f64,
        cutoff: f64,
        mut f: impl FnMut(f64, &mut [f64], &mut [f64]),
    ) -> Spline {
        let nlut = (cutoff / delta) as usize;
        let scale = nlut as f64 / cutoff;
        let inv = 1.0 / scale;
        let mut c = vec![0.0; (nlut + 1) * 4 * nf];
        let (mut v, mut d) = (vec![0.0; nf], vec![0.0; nf]);
        // Value and scaled derivative at the node above (zero beyond the last node).
        let (mut f1, mut d1) = (vec![0.0; nf], vec![0.0; nf]);
        for n in (1..=nlut).rev() {
            f(inv * n as f64, &mut v, &mut d);
            for k in 0..nf {
                let (f0, d0) = (v[k], d[k] * inv);
                let row = &mut c[n * 4 * nf..(n + 1) * 4 * nf];
                row[k] = f0;
                row[nf + k] = d0;
                row[2 * nf + k] = 3.0 * (f1[k] - f0) - d1[k] - 2.0 * d0;
                row[3 * nf + k] = -2.0 * (f1[k] - f0) + d1[k] + d0;
                f1[k] = f0;
                d1[k] = d0;
            }
        }
        Spline { nf, nlut, scale, c }
    }

    /// Ask the CPU to fetch the look-up row of `r` into cache (a hint: no effect on results).
    #[inline(always)]
    pub fn prefetch(&self, r: f64) {
        #[cfg(target_arch = "x86_64")]
        {
            let x = r * self.scale;
            if !(1.0..self.nlut as f64).contains(&x) {
                return;
            }
            let nl = x as usize;
            let row = &self.c[nl * 4 * self.nf..(nl + 1) * 4 * self.nf];
            for off in (0..row.len()).step_by(8) {
                // SAFETY: prefetching is only a hint; the address lies inside `row`.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        row.as_ptr().add(off) as *const i8,
                    )
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = r;
    }

    /// Interpolated values and derivatives at `r`; zero at and beyond the last node. `None`
    /// when `r` lies in the first interval, where ML-PACE stops ("very small distance").
    #[inline(always)]
    pub fn eval(&self, r: f64, v: &mut [f64], d: &mut [f64]) -> Option<()> {
        let x = r * self.scale;
        let nl = x.floor();
        if nl < 1.0 {
            return None;
        }
        let nl = nl as usize;
        if nl >= self.nlut {
            v[..self.nf].fill(0.0);
            d[..self.nf].fill(0.0);
            return Some(());
        }
        let w = x - nl as f64;
        let nf = self.nf;
        let row = &self.c[nl * 4 * nf..(nl + 1) * 4 * nf];
        let (c0, rest) = row.split_at(nf);
        let (c1, rest) = rest.split_at(nf);
        let (c2, c3) = rest.split_at(nf);
        let (v, d) = (&mut v[..nf], &mut d[..nf]);
        for k in 0..nf {
            v[k] = c0[k] + w * (c1[k] + w * (c2[k] + w * c3[k]));
            d[k] = (c1[k] + w * (2.0 * c2[k] + 3.0 * w * c3[k])) * self.scale;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(family: Family, inner: InnerCutoff) -> PairSpec {
        let (nb, nr, l1) = (6, 3, 3);
        PairSpec {
            family,
            lambda: 2.3,
            cut: 5.5,
            dcut: 0.4,
            cut_in: 1.6,
            dcut_in: 0.3,
            inner,
            pre: 3.0,
            lambda_hc: 1.2,
            z: (29, 4),
            crad: (0..nb * nr * l1)
                .map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0)
                .collect(),
        }
    }

    /// Analytic derivatives of every family, the contraction and the core terms agree with
    /// central differences.
    #[test]
    fn derivatives_match_finite_differences() {
        let fams = [
            Family::ChebExpCos,
            Family::ChebPow,
            Family::ChebLinear,
            Family::SBessel,
        ];
        let inners = [
            InnerCutoff::Density,
            InnerCutoff::Distance,
            InnerCutoff::Zbl,
        ];
        for fam in fams {
            for inner in inners {
                let s = spec(fam, inner);
                for &r in &[0.9, 1.45, 2.2, 3.7, 5.3] {
                    let nb = 6;
                    let (mut g, mut dg) = (vec![0.0; nb], vec![0.0; nb]);
                    let (mut gp, mut gm, mut dd) = (vec![0.0; nb], vec![0.0; nb], vec![0.0; nb]);
                    let h = 1e-6;
                    s.base(r, &mut g, &mut dg);
                    s.base(r + h, &mut gp, &mut dd);
                    s.base(r - h, &mut gm, &mut dd);
                    for k in 0..nb {
                        let fd = (gp[k] - gm[k]) / (2.0 * h);
                        assert!(
                            (fd - dg[k]).abs() < 1e-6 * (1.0 + dg[k].abs()),
                            "{fam:?} {inner:?} r {r} k {k}: {fd} vs {}",
                            dg[k]
                        );
                    }
                    let (c, dc) = s.core(r);
                    let fd = (s.core(r + h).0 - s.core(r - h).0) / (2.0 * h);
                    assert!(
                        (fd - dc).abs() < 1e-6 * (1.0 + dc.abs()),
                        "core {inner:?} r {r}: {fd} vs {dc} ({c})"
                    );
                }
            }
        }
    }

    /// The Hermite table reproduces a smooth function to interpolation accuracy and returns
    /// exact node values.
    #[test]
    fn spline_interpolates() {
        let s = Spline::new(1, 0.01, 3.0, |r, v, d| {
            v[0] = (r * 1.3).sin();
            d[0] = 1.3 * (r * 1.3).cos();
        });
        let (mut v, mut d) = ([0.0], [0.0]);
        for &r in &[0.5, 1.234567, 2.0, 2.995] {
            s.eval(r, &mut v, &mut d).unwrap();
            assert!((v[0] - (r * 1.3).sin()).abs() < 1e-9, "{r}");
            assert!((d[0] - 1.3 * (r * 1.3).cos()).abs() < 1e-6, "{r}");
        }
        assert!(s.eval(0.005, &mut v, &mut d).is_none());
        s.eval(3.0, &mut v, &mut d).unwrap();
        assert_eq!((v[0], d[0]), (0.0, 0.0));
    }
}
