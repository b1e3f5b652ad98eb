//! Real spherical harmonics of a direction, with their exact Cartesian gradients.
//!
//! Convention: orthonormal real harmonics without the Condon–Shortley phase,
//! `Y_{l,m>0} = sqrt(2) N_lm P_l^m(cos θ) cos(mφ)`, `Y_{l,0} = N_l0 P_l(cos θ)`,
//! `Y_{l,-m} = sqrt(2) N_lm P_l^m(cos θ) sin(mφ)`, `N_lm = sqrt((2l+1)/(4π) (l-m)!/(l+m)!)`.
//! Flat index `l*l + l + m`.
//!
//! With `u = r/|r|`, `P_l^m(z) sin^m θ · e^{imφ} = Q_l^m(u_z) (u_x + i u_y)^m` where
//! `Q_l^m = d^m P_l / dz^m` is a polynomial, so every harmonic is a polynomial in `u`. Its gradient
//! with respect to `r` is the tangential part of the polynomial gradient divided by `|r|`.

/// Number of harmonics up to and including `lmax`.
pub const fn num_lm(lmax: usize) -> usize {
    (lmax + 1) * (lmax + 1)
}

/// Flat index of `(l, m)`.
#[inline]
pub const fn lm_index(l: usize, m: i32) -> usize {
    (l * l + l) + m as isize as usize
}

/// Evaluator for real spherical harmonics up to a fixed `lmax`, holding the normalization table.
#[derive(Clone, Debug)]
pub struct SphHarm {
    lmax: usize,
    /// `F[l][m] = N_lm` (times sqrt 2 for m > 0), indexed `l*(l+1)/2 + m`.
    norm: Vec<f64>,
    /// Scratch for `Q_l^m` values, same indexing as `norm`.
    q: Vec<f64>,
    /// Scratch for `(u_x + i u_y)^m`: real and imaginary parts.
    c: Vec<f64>,
    s: Vec<f64>,
    /// Recurrence coefficients `(2l-1)/(l-m)` and `(l+m-1)/(l-m)`, indexed like `norm`.
    ra: Vec<f64>,
    rb: Vec<f64>,
    /// Scratch of [`SphHarm::eval_raw_grad_lanes`]: `q`, `c`, `s` with one value per lane.
    ql: Vec<[f64; SPH_LANES]>,
    cl: Vec<[f64; SPH_LANES]>,
    sl: Vec<[f64; SPH_LANES]>,
}

/// Directions evaluated together by [`SphHarm::eval_raw_grad_lanes`].
pub const SPH_LANES: usize = 8;

/// One value per lane.
type Lanes = [f64; SPH_LANES];

/// `a * b` lane by lane.
#[inline(always)]
fn lmul(a: &Lanes, b: &Lanes) -> Lanes {
    std::array::from_fn(|j| a[j] * b[j])
}

/// `s * b` lane by lane.
#[inline(always)]
fn smul(s: f64, b: &Lanes) -> Lanes {
    std::array::from_fn(|j| s * b[j])
}

#[inline]
fn tri(l: usize, m: usize) -> usize {
    l * (l + 1) / 2 + m
}

impl SphHarm {
    /// Prepare harmonics up to `lmax` (inclusive).
    pub fn new(lmax: usize) -> Self {
        let mut norm = vec![0.0; tri(lmax, lmax) + 1];
        for l in 0..=lmax {
            for m in 0..=l {
                // (l-m)!/(l+m)! as a product, stable for the l used here.
                let mut ratio = 1.0;
                for k in (l - m + 1)..=(l + m) {
                    ratio /= k as f64;
                }
                let n = ((2 * l + 1) as f64 / (4.0 * std::f64::consts::PI) * ratio).sqrt();
                norm[tri(l, m)] = if m == 0 {
                    n
                } else {
                    n * std::f64::consts::SQRT_2
                };
            }
        }
        let len = norm.len();
        let mut ra = vec![0.0; len];
        let mut rb = vec![0.0; len];
        for l in 0..=lmax {
            for m in 0..l {
                let inv = 1.0 / (l - m) as f64;
                ra[tri(l, m)] = ((2 * l) as f64 - 1.0) * inv;
                rb[tri(l, m)] = ((l + m) as f64 - 1.0) * inv;
            }
        }
        SphHarm {
            lmax,
            norm,
            q: vec![0.0; len],
            c: vec![0.0; lmax + 1],
            s: vec![0.0; lmax + 1],
            ra,
            rb,
            ql: vec![[0.0; SPH_LANES]; len],
            cl: vec![[0.0; SPH_LANES]; lmax + 1],
            sl: vec![[0.0; SPH_LANES]; lmax + 1],
        }
    }

    /// Largest degree evaluated.
    pub fn lmax(&self) -> usize {
        self.lmax
    }

    /// Fill `q[tri(l,m)] = Q_l^m(z)` for all l <= lmax, m <= l.
    #[inline(always)]
    fn legendre(&mut self, z: f64) {
        let (q, ra, rb) = (&mut self.q, &self.ra, &self.rb);
        let mut qmm = 1.0; // Q_m^m = (2m-1)!!
        for m in 0..=self.lmax {
            if m > 0 {
                qmm *= (2 * m - 1) as f64;
            }
            q[tri(m, m)] = qmm;
            if m < self.lmax {
                q[tri(m + 1, m)] = (2 * m + 1) as f64 * z * qmm;
            }
            for l in (m + 2)..=self.lmax {
                let t = tri(l, m);
                q[t] = ra[t] * z * q[tri(l - 1, m)] - rb[t] * q[tri(l - 2, m)];
            }
        }
    }

    /// Fill `(x + i y)^m` for m = 0..=lmax.
    #[inline(always)]
    fn powers(&mut self, x: f64, y: f64) {
        self.c[0] = 1.0;
        self.s[0] = 0.0;
        for m in 1..=self.lmax {
            self.c[m] = self.c[m - 1] * x - self.s[m - 1] * y;
            self.s[m] = self.c[m - 1] * y + self.s[m - 1] * x;
        }
    }

    /// Harmonics of the direction of `r` (need not be normalized, must be nonzero) into `y`
    /// (length at least `num_lm(lmax)`).
    pub fn eval(&mut self, r: [f64; 3], y: &mut [f64]) {
        let inv = 1.0 / (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
        let u = [r[0] * inv, r[1] * inv, r[2] * inv];
        self.legendre(u[2]);
        self.powers(u[0], u[1]);
        for l in 0..=self.lmax {
            let base = l * l + l;
            y[base] = self.norm[tri(l, 0)] * self.q[tri(l, 0)];
            for m in 1..=l {
                let f = self.norm[tri(l, m)] * self.q[tri(l, m)];
                y[base + m] = f * self.c[m];
                y[base - m] = f * self.s[m];
            }
        }
    }

    /// Harmonics of the direction of `r` and their gradients with respect to `r` (Å⁻¹).
    /// `dy[k]` is the gradient of `y[k]`.
    pub fn eval_grad(&mut self, r: [f64; 3], y: &mut [f64], dy: &mut [[f64; 3]]) {
        let (u, inv) = self.eval_raw_grad(r, y, dy);
        for d in dy[..num_lm(self.lmax)].iter_mut() {
            *d = project(*d, u, inv);
        }
    }

    /// Harmonics of the direction of `r` and their *polynomial* partials `g[k] = ∂Y_k/∂u` with
    /// the components of `u = r/|r|` treated as independent. The gradient with respect to `r` is
    /// [`project`]`(g, u, 1/|r|)`; since projection is linear, a caller that only needs
    /// `sum_k t_k ∇Y_k` can contract first and project once. Returns `(u, 1/|r|)`.
    #[inline(always)]
    pub fn eval_raw_grad(
        &mut self,
        r: [f64; 3],
        y: &mut [f64],
        g: &mut [[f64; 3]],
    ) -> ([f64; 3], f64) {
        let rn = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
        let inv = 1.0 / rn;
        let u = [r[0] * inv, r[1] * inv, r[2] * inv];
        self.legendre(u[2]);
        self.powers(u[0], u[1]);
        let nlm = num_lm(self.lmax);
        let (y, g) = (&mut y[..nlm], &mut g[..nlm]);
        for l in 0..=self.lmax {
            let base = l * l + l;
            let t = tri(l, 0);
            let f0 = self.norm[t];
            y[base] = f0 * self.q[t];
            let dq0 = if l >= 1 { self.q[t + 1] } else { 0.0 };
            g[base] = [0.0, 0.0, f0 * dq0];
            for m in 1..=l {
                let f = self.norm[t + m];
                let fq = f * self.q[t + m];
                let fdq = if m < l { f * self.q[t + m + 1] } else { 0.0 };
                let (c, s) = (self.c[m], self.s[m]);
                let mfq = m as f64 * fq;
                let (cm1, sm1) = (mfq * self.c[m - 1], mfq * self.s[m - 1]);
                y[base + m] = fq * c;
                y[base - m] = fq * s;
                // d c_m/dx = m c_{m-1}, d c_m/dy = -m s_{m-1}; d s_m/dx = m s_{m-1}, d s_m/dy = m c_{m-1}.
                g[base + m] = [cm1, -sm1, fdq * c];
                g[base - m] = [sm1, cm1, fdq * s];
            }
        }
        (u, inv)
    }
}

impl SphHarm {
    /// [`SphHarm::eval_raw_grad`] of [`SPH_LANES`] directions at once, one per lane: the same
    /// operations in the same order for each lane, so the values are those of
    /// [`SphHarm::eval_raw_grad`] bit for bit, computed in vector registers across the
    /// directions. Writes `y[i][lane]` and `g[i][c][lane]` for the `num_lm(lmax)` harmonics and
    /// returns the unit vectors `u[c][lane]`. Every `r` must be nonzero (pad with any direction).
    #[inline(always)]
    pub fn eval_raw_grad_lanes(
        &mut self,
        r: &[Lanes; 3],
        y: &mut [Lanes],
        g: &mut [[Lanes; 3]],
    ) -> [Lanes; 3] {
        let rn: Lanes = std::array::from_fn(|j| {
            (r[0][j] * r[0][j] + r[1][j] * r[1][j] + r[2][j] * r[2][j]).sqrt()
        });
        let inv: Lanes = std::array::from_fn(|j| 1.0 / rn[j]);
        let u = [lmul(&r[0], &inv), lmul(&r[1], &inv), lmul(&r[2], &inv)];
        let lmax = self.lmax;
        let (q, ra, rb) = (&mut self.ql, &self.ra, &self.rb);
        // Q_l^m(u_z), as `legendre`.
        let z = &u[2];
        let mut qmm = 1.0;
        for m in 0..=lmax {
            if m > 0 {
                qmm *= (2 * m - 1) as f64;
            }
            q[tri(m, m)] = [qmm; SPH_LANES];
            if m < lmax {
                let f = (2 * m + 1) as f64;
                q[tri(m + 1, m)] = std::array::from_fn(|j| f * z[j] * qmm);
            }
            for l in (m + 2)..=lmax {
                let t = tri(l, m);
                let (a, b) = (ra[t], rb[t]);
                let (q1, q2) = (q[tri(l - 1, m)], q[tri(l - 2, m)]);
                q[t] = std::array::from_fn(|j| a * z[j] * q1[j] - b * q2[j]);
            }
        }
        // (u_x + i u_y)^m, as `powers`.
        let (c, s) = (&mut self.cl, &mut self.sl);
        c[0] = [1.0; SPH_LANES];
        s[0] = [0.0; SPH_LANES];
        for m in 1..=lmax {
            let (cp, sp) = (c[m - 1], s[m - 1]);
            c[m] = std::array::from_fn(|j| cp[j] * u[0][j] - sp[j] * u[1][j]);
            s[m] = std::array::from_fn(|j| cp[j] * u[1][j] + sp[j] * u[0][j]);
        }
        let nlm = num_lm(lmax);
        let (y, g) = (&mut y[..nlm], &mut g[..nlm]);
        for l in 0..=lmax {
            let base = l * l + l;
            let t = tri(l, 0);
            let f0 = self.norm[t];
            y[base] = smul(f0, &q[t]);
            let dq0 = if l >= 1 { q[t + 1] } else { [0.0; SPH_LANES] };
            g[base] = [[0.0; SPH_LANES], [0.0; SPH_LANES], smul(f0, &dq0)];
            for m in 1..=l {
                let f = self.norm[t + m];
                let fq = smul(f, &q[t + m]);
                let fdq = if m < l {
                    smul(f, &q[t + m + 1])
                } else {
                    [0.0; SPH_LANES]
                };
                let (cm, sm) = (&c[m], &s[m]);
                let mfq = smul(m as f64, &fq);
                let (cm1, sm1) = (lmul(&mfq, &c[m - 1]), lmul(&mfq, &s[m - 1]));
                y[base + m] = lmul(&fq, cm);
                y[base - m] = lmul(&fq, sm);
                g[base + m] = [cm1, std::array::from_fn(|j| -sm1[j]), lmul(&fdq, cm)];
                g[base - m] = [sm1, cm1, lmul(&fdq, sm)];
            }
        }
        u
    }
}

/// Tangential projection of a polynomial gradient, divided by |r|: the gradient with respect
/// to `r` of a function of `u = r/|r|` whose polynomial partials are `g`.
#[inline]
pub fn project(g: [f64; 3], u: [f64; 3], inv_r: f64) -> [f64; 3] {
    let gu = g[0] * u[0] + g[1] * u[1] + g[2] * u[2];
    [
        (g[0] - gu * u[0]) * inv_r,
        (g[1] - gu * u[1]) * inv_r,
        (g[2] - gu * u[2]) * inv_r,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// Gauss–Legendre nodes and weights on [-1, 1] by Newton iteration.
    pub(crate) fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut x = vec![0.0; n];
        let mut w = vec![0.0; n];
        for i in 0..n {
            let mut z = (PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            for _ in 0..100 {
                let (mut p0, mut p1) = (1.0, z);
                for k in 2..=n {
                    let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                    p0 = p1;
                    p1 = p2;
                }
                let dp = n as f64 * (z * p1 - p0) / (z * z - 1.0);
                let dz = p1 / dp;
                z -= dz;
                if dz.abs() < 1e-15 {
                    break;
                }
            }
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let dp = n as f64 * (z * p1 - p0) / (z * z - 1.0);
            x[i] = z;
            w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
        }
        (x, w)
    }

    #[test]
    fn orthonormal_by_quadrature() {
        let lmax = 6;
        let nlm = num_lm(lmax);
        let mut sh = SphHarm::new(lmax);
        let (zs, ws) = gauss_legendre(lmax + 2);
        let nphi = 2 * lmax + 3;
        let mut gram = vec![0.0; nlm * nlm];
        let mut y = vec![0.0; nlm];
        for (z, w) in zs.iter().zip(&ws) {
            for k in 0..nphi {
                let phi = 2.0 * PI * k as f64 / nphi as f64;
                let st = (1.0 - z * z).sqrt();
                sh.eval([st * phi.cos(), st * phi.sin(), *z], &mut y);
                let wt = w * 2.0 * PI / nphi as f64;
                for a in 0..nlm {
                    for b in 0..nlm {
                        gram[a * nlm + b] += wt * y[a] * y[b];
                    }
                }
            }
        }
        for a in 0..nlm {
            for b in 0..nlm {
                let expect = if a == b { 1.0 } else { 0.0 };
                assert!(
                    (gram[a * nlm + b] - expect).abs() < 1e-12,
                    "gram[{a},{b}] = {}",
                    gram[a * nlm + b]
                );
            }
        }
    }

    #[test]
    fn known_low_order_values() {
        // Y_1,-1 = c y, Y_1,0 = c z, Y_1,1 = c x with c = sqrt(3/4π); Y_2,-2 = sqrt(15/4π) x y.
        let mut sh = SphHarm::new(2);
        let r = [0.3, -1.2, 0.7];
        let n = (0.09f64 + 1.44 + 0.49).sqrt();
        let u = [r[0] / n, r[1] / n, r[2] / n];
        let mut y = vec![0.0; 9];
        sh.eval(r, &mut y);
        let c1 = (3.0 / (4.0 * PI)).sqrt();
        assert!((y[0] - 0.5 / PI.sqrt()).abs() < 1e-14);
        assert!((y[1] - c1 * u[1]).abs() < 1e-14);
        assert!((y[2] - c1 * u[2]).abs() < 1e-14);
        assert!((y[3] - c1 * u[0]).abs() < 1e-14);
        assert!((y[4] - (15.0 / (4.0 * PI)).sqrt() * u[0] * u[1]).abs() < 1e-14);
        let y20 = (5.0 / (16.0 * PI)).sqrt() * (3.0 * u[2] * u[2] - 1.0);
        assert!((y[6] - y20).abs() < 1e-14);
    }

    /// The lane evaluation gives each lane exactly what the one-direction evaluation gives.
    #[test]
    fn lanes_equal_one_direction_bit_for_bit() {
        for lmax in [0, 1, 4, 6] {
            let nlm = num_lm(lmax);
            let mut sh = SphHarm::new(lmax);
            let dirs: [[f64; 3]; SPH_LANES] = std::array::from_fn(|j| {
                let t = j as f64 + 0.37;
                [(1.3 * t).sin() * 2.1, (0.7 * t).cos() - 0.2, 1.7 - 0.45 * t]
            });
            let r: [[f64; SPH_LANES]; 3] =
                std::array::from_fn(|c| std::array::from_fn(|j| dirs[j][c]));
            let mut yl = vec![[0.0; SPH_LANES]; nlm];
            let mut gl = vec![[[0.0; SPH_LANES]; 3]; nlm];
            let u = sh.eval_raw_grad_lanes(&r, &mut yl, &mut gl);
            let (mut y, mut g) = (vec![0.0; nlm], vec![[0.0; 3]; nlm]);
            for (j, d) in dirs.iter().enumerate() {
                let (u1, _) = sh.eval_raw_grad(*d, &mut y, &mut g);
                for c in 0..3 {
                    assert_eq!(u1[c].to_bits(), u[c][j].to_bits(), "lmax {lmax} lane {j}");
                }
                for i in 0..nlm {
                    assert_eq!(
                        y[i].to_bits(),
                        yl[i][j].to_bits(),
                        "lmax {lmax} lane {j} Y {i}"
                    );
                    for c in 0..3 {
                        assert_eq!(g[i][c].to_bits(), gl[i][c][j].to_bits(), "lane {j} dY {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let lmax = 7;
        let nlm = num_lm(lmax);
        let mut sh = SphHarm::new(lmax);
        let mut y = vec![0.0; nlm];
        let mut dy = vec![[0.0; 3]; nlm];
        let mut yp = vec![0.0; nlm];
        let mut ym = vec![0.0; nlm];
        for r in [
            [0.3, -1.2, 0.7],
            [0.0, 0.0, 2.0],
            [1e-3, 0.0, -1.5],
            [-2.0, 0.5, 0.1],
        ] {
            sh.eval_grad(r, &mut y, &mut dy);
            let h = 1e-6;
            for a in 0..3 {
                let mut rp = r;
                let mut rm = r;
                rp[a] += h;
                rm[a] -= h;
                sh.eval(rp, &mut yp);
                sh.eval(rm, &mut ym);
                for k in 0..nlm {
                    let fd = (yp[k] - ym[k]) / (2.0 * h);
                    assert!(
                        (fd - dy[k][a]).abs() < 1e-7,
                        "r={r:?} k={k} a={a}: fd {fd} vs {}",
                        dy[k][a]
                    );
                }
            }
        }
    }
}
