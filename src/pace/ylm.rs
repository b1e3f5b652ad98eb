//! Complex spherical harmonics in pacemaker's normalisation: `sqrt(4π) Y_lm(û)` with the
//! Condon–Shortley phase (so `Y_00 = 1`), for `m >= 0`; negative `m` follow from
//! `Y_{l,-m} = (-1)^m conj(Y_lm)`.
//!
//! Written as `Y_lm(û) = Q_lm(u_z) (u_x + i u_y)^m` with `Q_lm` a polynomial in `u_z`, so both
//! the values and the gradients are free of angles and of divisions by `sin θ`.

/// A complex number (`re`, `im`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C64 {
    pub re: f64,
    pub im: f64,
}

impl C64 {
    #[inline]
    pub fn new(re: f64, im: f64) -> C64 {
        C64 { re, im }
    }
    #[inline]
    pub fn mul(self, o: C64) -> C64 {
        C64::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    #[inline]
    pub fn conj(self) -> C64 {
        C64::new(self.re, -self.im)
    }
    #[inline]
    pub fn scale(self, s: f64) -> C64 {
        C64::new(self.re * s, self.im * s)
    }
    #[inline]
    pub fn add(self, o: C64) -> C64 {
        C64::new(self.re + o.re, self.im + o.im)
    }
    /// Real part of `self * o`.
    #[inline]
    pub fn re_mul(self, o: C64) -> f64 {
        self.re * o.re - self.im * o.im
    }
}

/// Index of `(l, m)`, `0 <= m <= l`, in the triangular tables.
#[inline]
pub fn lm(l: usize, m: usize) -> usize {
    l * (l + 1) / 2 + m
}

/// Largest `lmax` supported (the potential reader refuses larger ones).
pub const LMAX_SUPPORTED: usize = 20;
pub const MAX_TERMS: usize = (LMAX_SUPPORTED + 1) * (LMAX_SUPPORTED + 2) / 2;

/// Recurrence coefficients of `Q_lm` up to `lmax`.
#[derive(Clone, Debug)]
pub struct Ylm {
    pub lmax: usize,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Ylm {
    pub fn new(lmax: usize) -> Ylm {
        assert!(lmax <= LMAX_SUPPORTED, "lmax {lmax} above {LMAX_SUPPORTED}");
        let n = lm(lmax, lmax) + 1;
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        for l in 2..=lmax {
            for m in 0..l - 1 {
                let (lf, mf) = (l as f64, m as f64);
                let l1 = (lf - 1.0) * (lf - 1.0);
                a[lm(l, m)] = ((4.0 * lf * lf - 1.0) / (lf * lf - mf * mf)).sqrt();
                b[lm(l, m)] = ((l1 - mf * mf) / (4.0 * l1 - 1.0)).sqrt();
            }
        }
        Ylm { lmax, a, b }
    }

    /// Values `y[lm(l,m)]` and gradients `dy[lm(l,m)][xyz]` of `Y_lm(r/|r|)` with respect to
    /// `r`, times `|r|` (divide by the distance to get the true gradient), for unit vector `u`.
    /// (The evaluator keeps [`Ylm::compute_q`] per neighbour and projects sums; this checks it.)
    #[cfg(test)]
    pub fn compute(&self, u: [f64; 3], y: &mut [C64], dy: &mut [[C64; 3]]) {
        self.compute_raw(u, y, dy);
        let n = lm(self.lmax, self.lmax) + 1;
        for g in &mut dy[..n] {
            *g = project(u, *g);
        }
    }

    /// Values `y[lm(l,m)]` and the gradients `g[lm(l,m)]` of the extension
    /// `f(v) = Q_lm(v_z) (v_x + i v_y)^m` at the unit vector `u`, before the projection on the
    /// tangent plane that [`Ylm::compute`] applies (`dy = (I - u u^T) g`, see [`project`]).
    /// The projection is linear, so a sum of such gradients can be projected once. (The
    /// evaluator keeps only `Q` and `dQ/dz` per neighbour, [`Ylm::compute_q`], and contracts
    /// with the powers of `u_x + i u_y` per `m`; this checks it.)
    #[cfg(test)]
    pub fn compute_raw(&self, u: [f64; 3], y: &mut [C64], g: &mut [[C64; 3]]) {
        let lmax = self.lmax;
        let n = lm(lmax, lmax) + 1;
        let (mut q, mut dq) = (vec![0.0; n], vec![0.0; n]);
        self.compute_q(u[2], &mut q, &mut dq);
        let mut wm = [C64::default(); LMAX_SUPPORTED + 1];
        powers(u, &mut wm[..=lmax]);
        for m in 0..=lmax {
            // d(w^m)/dx = m w^(m-1), d(w^m)/dy = i m w^(m-1).
            let wm1 = if m > 0 {
                wm[m - 1].scale(m as f64)
            } else {
                C64::default()
            };
            for l in m..=lmax {
                let k = lm(l, m);
                y[k] = wm[m].scale(q[k]);
                let gx = wm1.scale(q[k]);
                g[k] = [gx, C64::new(-gx.im, gx.re), wm[m].scale(dq[k])];
            }
        }
    }

    /// The polynomials `q[lm(l,m)] = Q_lm(z)` and their derivatives `dq = dQ_lm/dz`, `m >= 0`:
    /// `Y_lm(u) = Q_lm(u_z) w^m`, `w = u_x + i u_y` ([`powers`]).
    #[inline(always)]
    pub fn compute_q(&self, z: f64, q: &mut [f64], dq: &mut [f64]) {
        let lmax = self.lmax;
        let n = lm(lmax, lmax) + 1;
        let (q, dq) = (&mut q[..n], &mut dq[..n]);
        q[0] = 1.0;
        dq[0] = 0.0;
        if lmax >= 1 {
            let s3 = 3f64.sqrt();
            q[lm(1, 0)] = s3 * z;
            dq[lm(1, 0)] = s3;
            q[lm(1, 1)] = -(1.5f64).sqrt();
            dq[lm(1, 1)] = 0.0;
        }
        for l in 2..=lmax {
            for m in 0..l - 1 {
                let (a, b) = (self.a[lm(l, m)], self.b[lm(l, m)]);
                let (q1, q2) = (q[lm(l - 1, m)], q[lm(l - 2, m)]);
                q[lm(l, m)] = a * (z * q1 - b * q2);
                dq[lm(l, m)] = a * (q1 + z * dq[lm(l - 1, m)] - b * dq[lm(l - 2, m)]);
            }
            let t = ((2 * l + 1) as f64).sqrt() * q[lm(l - 1, l - 1)];
            q[lm(l, l - 1)] = t * z;
            dq[lm(l, l - 1)] = t;
            q[lm(l, l)] = -(1.0 + 0.5 / l as f64).sqrt() * q[lm(l - 1, l - 1)];
            dq[lm(l, l)] = 0.0;
        }
    }
}

/// `wm[m] = (u_x + i u_y)^m` for every `m` of `wm`.
#[inline(always)]
pub fn powers(u: [f64; 3], wm: &mut [C64]) {
    let w = C64::new(u[0], u[1]);
    let mut p = C64::new(1.0, 0.0);
    for x in wm.iter_mut() {
        *x = p;
        p = p.mul(w);
    }
}

/// `(I - u u^T) g` for a complex 3-vector `g` and a real unit vector `u`: the gradient of
/// `f(v / |v|)` at `v = u` from the gradient `g` of an extension of `f` (times `|v|`).
#[cfg(test)]
pub fn project(u: [f64; 3], g: [C64; 3]) -> [C64; 3] {
    let ug = C64::new(
        u[0] * g[0].re + u[1] * g[1].re + u[2] * g[2].re,
        u[0] * g[0].im + u[1] * g[1].im + u[2] * g[2].im,
    );
    [
        g[0].add(ug.scale(-u[0])),
        g[1].add(ug.scale(-u[1])),
        g[2].add(ug.scale(-u[2])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms of the first harmonics (times sqrt(4π)) and finite-difference gradients.
    #[test]
    fn values_and_gradients() {
        let ylm = Ylm::new(6);
        let n = lm(6, 6) + 1;
        let r = [0.3, -0.7, 0.55];
        let d: f64 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
        let d = d.sqrt();
        let u = [r[0] / d, r[1] / d, r[2] / d];
        let (mut y, mut dy) = (vec![C64::default(); n], vec![[C64::default(); 3]; n]);
        ylm.compute(u, &mut y, &mut dy);
        assert!((y[0].re - 1.0).abs() < 1e-15);
        assert!((y[lm(1, 0)].re - 3f64.sqrt() * u[2]).abs() < 1e-14);
        let y11 = -(1.5f64).sqrt();
        assert!((y[lm(1, 1)].re - y11 * u[0]).abs() < 1e-14);
        assert!((y[lm(1, 1)].im - y11 * u[1]).abs() < 1e-14);
        // sqrt(4π) Y_20 = sqrt(5)/2 (3z^2 - 1); sqrt(4π) Y_22 = sqrt(30)/4 (x + iy)^2.
        let y20 = 5f64.sqrt() / 2.0 * (3.0 * u[2] * u[2] - 1.0);
        assert!((y[lm(2, 0)].re - y20).abs() < 1e-14);
        let c22 = 30f64.sqrt() / 4.0;
        let w2 = C64::new(u[0], u[1]).mul(C64::new(u[0], u[1]));
        assert!(
            (y[lm(2, 2)].re - c22 * w2.re).abs() < 1e-14,
            "{:?}",
            y[lm(2, 2)]
        );
        // Unit norm: sum_m |Y_lm|^2 over m = -l..l equals 2l+1.
        for l in 0..=6 {
            let mut s = y[lm(l, 0)].re.powi(2);
            for m in 1..=l {
                let v = y[lm(l, m)];
                s += 2.0 * (v.re * v.re + v.im * v.im);
            }
            assert!((s - (2 * l + 1) as f64).abs() < 1e-12, "l {l}: {s}");
        }
        let h = 1e-6;
        for c in 0..3 {
            let mut rp = r;
            let mut rm = r;
            rp[c] += h;
            rm[c] -= h;
            let unit = |v: [f64; 3]| {
                let d = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                [v[0] / d, v[1] / d, v[2] / d]
            };
            let (mut yp, mut ym) = (y.clone(), y.clone());
            let mut scratch = dy.clone();
            ylm.compute(unit(rp), &mut yp, &mut scratch);
            ylm.compute(unit(rm), &mut ym, &mut scratch);
            for k in 0..n {
                let fd_re = (yp[k].re - ym[k].re) / (2.0 * h);
                let fd_im = (yp[k].im - ym[k].im) / (2.0 * h);
                assert!((fd_re - dy[k][c].re / d).abs() < 1e-7, "{k} {c}");
                assert!((fd_im - dy[k][c].im / d).abs() < 1e-7, "{k} {c}");
            }
        }
    }
}
