//! Radial basis functions, smooth to zero (value and first derivative) at the cutoff.
//!
//! `g_n(r) = cos(n θ(r)) · f_c(r)`, `θ(r) = π · clamp((r - r0)/(rc - r0), 0, 1)`,
//! `f_c(r) = (1 + cos(π r/rc))/2` for `r < rc`, else 0.
//!
//! `cos(nθ)` is the Chebyshev polynomial `T_n(cos θ)`, so the set is a complete polynomial basis on
//! the resolution window `[r0, rc]` with uniform resolution in `r`. Below `r0` (closer than the
//! training data ever went) `θ` is clamped to 0; every `cos(nθ)` has zero slope at `θ = 0`, so the
//! clamp keeps the functions C¹ and bounded instead of letting polynomials blow up. The short-range
//! physics there is left to the repulsive core (see `model::core`).

use std::f64::consts::PI;

/// Radial basis for one (centre species, neighbour species) pair.
#[derive(Clone, Debug, PartialEq)]
pub struct RadialBasis {
    /// Cutoff radius in Å.
    pub rc: f64,
    /// Start of the resolution window in Å (`0 <= r0 < rc`).
    pub r0: f64,
    /// Number of functions `n = 0..nmax`.
    pub nmax: usize,
}

impl RadialBasis {
    /// The two angles of the basis at distance `r < rc`: `π r / rc` (cutoff function) and
    /// `θ(r)` (the Chebyshev angle, clamped to 0 below `r0`), both in `[0, π]`, and `dθ/dr`.
    #[inline(always)]
    pub fn angles(&self, r: f64) -> (f64, f64, f64) {
        let arg = PI * r / self.rc;
        let width = self.rc - self.r0;
        let x = (r - self.r0) / width;
        if x <= 0.0 {
            (arg, 0.0, 0.0)
        } else {
            (arg, PI * x, PI / width)
        }
    }

    /// Values `g[n]` and derivatives `dg[n] = d g_n / d r` (Å⁻¹) for `n < nmax`; both slices must
    /// have length at least `nmax`. Zero at and beyond the cutoff.
    #[inline(always)]
    pub fn eval(&self, r: f64, g: &mut [f64], dg: &mut [f64]) {
        let n = self.nmax;
        if r >= self.rc {
            g[..n].fill(0.0);
            dg[..n].fill(0.0);
            return;
        }
        let (arg, theta, dtheta) = self.angles(r);
        self.eval_trig(sin_cos_0_pi(arg), sin_cos_0_pi(theta), dtheta, g, dg);
    }

    /// [`RadialBasis::eval`] for `r < rc` from the sine and cosine of the two [`angles`]
    /// (`arg`, `theta`, as [`sin_cos_0_pi`] gives them) and `dθ/dr`, so that a caller can
    /// compute the trigonometric functions of all neighbours in one vectorised loop first (the
    /// evaluation does, then [`RadialBasis::eval_trig_lanes`] for eight neighbours at a time).
    ///
    /// [`angles`]: RadialBasis::angles
    #[inline(always)]
    pub fn eval_trig(
        &self,
        (sin_arg, cos_arg): (f64, f64),
        (s1, c1): (f64, f64),
        dtheta: f64,
        g: &mut [f64],
        dg: &mut [f64],
    ) {
        let n = self.nmax;
        let fc = 0.5 * (1.0 + cos_arg);
        let dfc = -0.5 * PI / self.rc * sin_arg;
        // cos(nθ), sin(nθ) by the angle-addition recurrence.
        let (mut c, mut s) = (1.0, 0.0);
        for k in 0..n {
            g[k] = c * fc;
            dg[k] = c * dfc - (k as f64) * s * dtheta * fc;
            let cn = c * c1 - s * s1;
            let sn = s * c1 + c * s1;
            c = cn;
            s = sn;
        }
    }
}

impl RadialBasis {
    /// [`RadialBasis::eval_trig`] of `L` distances at once, one per lane: per lane the same
    /// operations in the same order, so the same values bit for bit. `trig[lane]` is
    /// `[sin arg, cos arg, sin θ, cos θ]`; writes `g[n][lane]`, `dg[n][lane]` for `n < nmax`.
    #[inline(always)]
    pub fn eval_trig_lanes<const L: usize>(
        &self,
        trig: &[[f64; 4]; L],
        dtheta: &[f64; L],
        g: &mut [[f64; L]],
        dg: &mut [[f64; L]],
    ) {
        let fc: [f64; L] = std::array::from_fn(|j| 0.5 * (1.0 + trig[j][1]));
        let dfc: [f64; L] = std::array::from_fn(|j| -0.5 * PI / self.rc * trig[j][0]);
        let (s1, c1): ([f64; L], [f64; L]) = (
            std::array::from_fn(|j| trig[j][2]),
            std::array::from_fn(|j| trig[j][3]),
        );
        let (mut c, mut s) = ([1.0; L], [0.0; L]);
        for (k, (gk, dgk)) in g[..self.nmax]
            .iter_mut()
            .zip(&mut dg[..self.nmax])
            .enumerate()
        {
            let kf = k as f64;
            *gk = std::array::from_fn(|j| c[j] * fc[j]);
            *dgk = std::array::from_fn(|j| c[j] * dfc[j] - kf * s[j] * dtheta[j] * fc[j]);
            let cn: [f64; L] = std::array::from_fn(|j| c[j] * c1[j] - s[j] * s1[j]);
            let sn: [f64; L] = std::array::from_fn(|j| s[j] * c1[j] + c[j] * s1[j]);
            c = cn;
            s = sn;
        }
    }
}

/// `(sin x, cos x)` for `0 <= x <= π` (the radial basis's angles), within about 2 ulp of the
/// correctly rounded values (absolute error below 2.3e-16 over the range; checked against the
/// system's libm in the tests). Branch-free, so that a loop over many angles vectorises: the
/// angle is reduced to `|y| <= π/4` around 0, π/2 or π (exactly: `x - q π/2` with a two-part π/2,
/// and Sterbenz's lemma for the first subtraction), and the sine and cosine of `y` come from
/// their Taylor series to degree 17 and 18 (truncation below 5e-17 relative at `π/4`). Exact at
/// 0: `(0, 1)`.
#[inline(always)]
pub fn sin_cos_0_pi(x: f64) -> (f64, f64) {
    // π/2 rounded to f64 (std's FRAC_PI_2), and the rest of π/2 beyond it.
    const PIO2_HI: f64 = std::f64::consts::FRAC_PI_2;
    const PIO2_LO: f64 = 6.123_233_995_736_766e-17;
    const PIO4: f64 = PI / 4.0;
    let q1 = x > PIO4;
    let q2 = x > 3.0 * PIO4;
    let q = q1 as u8 as f64 + q2 as u8 as f64;
    let y = (x - q * PIO2_HI) - q * PIO2_LO;
    let z = y * y;
    const S: [f64; 8] = [
        -1.0 / 6.0,
        1.0 / 120.0,
        -1.0 / 5040.0,
        1.0 / 362_880.0,
        -1.0 / 39_916_800.0,
        1.0 / 6_227_020_800.0,
        -1.0 / 1_307_674_368_000.0,
        1.0 / 355_687_428_096_000.0,
    ];
    const C: [f64; 9] = [
        -0.5,
        1.0 / 24.0,
        -1.0 / 720.0,
        1.0 / 40_320.0,
        -1.0 / 3_628_800.0,
        1.0 / 479_001_600.0,
        -1.0 / 87_178_291_200.0,
        1.0 / 20_922_789_888_000.0,
        -1.0 / 6_402_373_705_728_000.0,
    ];
    let mut ps = S[7];
    for &k in S[..7].iter().rev() {
        ps = ps * z + k;
    }
    let mut pc = C[8];
    for &k in C[..8].iter().rev() {
        pc = pc * z + k;
    }
    let sy = y + y * z * ps;
    let cy = 1.0 + z * pc;
    // x = y (q 0): (sin y, cos y); x = y + π/2: (cos y, -sin y); x = y + π: (-sin y, -cos y).
    let (s0, c0) = if q1 { (cy, -sy) } else { (sy, cy) };
    if q2 { (-sy, -cy) } else { (s0, c0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane evaluation gives each lane exactly what the one-distance evaluation gives.
    #[test]
    fn lanes_equal_one_distance_bit_for_bit() {
        let rb = RadialBasis {
            rc: 5.2,
            r0: 1.5,
            nmax: 10,
        };
        const L: usize = 8;
        let r: [f64; L] = std::array::from_fn(|j| 0.9 + 0.55 * j as f64);
        let trig: [[f64; 4]; L] = std::array::from_fn(|j| {
            let (arg, theta, _) = rb.angles(r[j]);
            let ((sa, ca), (st, ct)) = (sin_cos_0_pi(arg), sin_cos_0_pi(theta));
            [sa, ca, st, ct]
        });
        let dth: [f64; L] = std::array::from_fn(|j| rb.angles(r[j]).2);
        let (mut gl, mut dgl) = (vec![[0.0; L]; 10], vec![[0.0; L]; 10]);
        rb.eval_trig_lanes(&trig, &dth, &mut gl, &mut dgl);
        let (mut g, mut dg) = (vec![0.0; 10], vec![0.0; 10]);
        for j in 0..L {
            rb.eval(r[j], &mut g, &mut dg);
            for n in 0..10 {
                assert_eq!(g[n].to_bits(), gl[n][j].to_bits(), "r {} n {n}", r[j]);
                assert_eq!(dg[n].to_bits(), dgl[n][j].to_bits(), "r {} n {n}", r[j]);
            }
        }
    }

    #[test]
    fn derivative_matches_finite_differences_and_vanishes_at_cutoff() {
        let rb = RadialBasis {
            rc: 5.2,
            r0: 1.5,
            nmax: 10,
        };
        let (mut g, mut dg) = (vec![0.0; 10], vec![0.0; 10]);
        let (mut gp, mut dgp) = (vec![0.0; 10], vec![0.0; 10]);
        let (mut gm, mut dgm) = (vec![0.0; 10], vec![0.0; 10]);
        for r in [0.7, 1.2, 1.6, 2.5, 3.3, 4.9, 5.19] {
            rb.eval(r, &mut g, &mut dg);
            let h = 1e-6;
            rb.eval(r + h, &mut gp, &mut dgp);
            rb.eval(r - h, &mut gm, &mut dgm);
            for k in 0..10 {
                let fd = (gp[k] - gm[k]) / (2.0 * h);
                assert!(
                    (fd - dg[k]).abs() < 1e-7,
                    "r={r} n={k}: fd {fd} vs {}",
                    dg[k]
                );
            }
        }
        rb.eval(5.2 - 1e-9, &mut g, &mut dg);
        for k in 0..10 {
            assert!(g[k].abs() < 1e-12 && dg[k].abs() < 1e-6);
        }
        rb.eval(7.0, &mut g, &mut dg);
        assert!(g.iter().chain(dg.iter()).all(|v| *v == 0.0));
    }

    /// The branch-free sine and cosine against the system's libm over [0, π], at the ends and
    /// at the reduction boundaries π/4 and 3π/4: absolute differences below 2.3e-16, and
    /// exact at 0.
    #[test]
    fn sin_cos_match_libm_on_zero_to_pi() {
        assert_eq!(sin_cos_0_pi(0.0), (0.0, 1.0));
        let mut worst: f64 = 0.0;
        let n = 200_000;
        let specials = [PI, PI / 4.0, 3.0 * PI / 4.0, PI / 2.0, 1e-300, 1e-8];
        let xs = (0..=n)
            .map(|i| PI * i as f64 / n as f64)
            .chain(specials.into_iter().flat_map(|x: f64| {
                [
                    x,
                    f64::from_bits(x.to_bits() - 1),
                    f64::from_bits(x.to_bits() + 1),
                ]
            }));
        for x in xs.filter(|x| (0.0..=PI).contains(x)) {
            let (s, c) = sin_cos_0_pi(x);
            let d = (s - x.sin()).abs().max((c - x.cos()).abs());
            assert!(
                d < 2.3e-16,
                "x = {x:e}: ({s:e}, {c:e}) vs ({:e}, {:e})",
                x.sin(),
                x.cos()
            );
            worst = worst.max(d);
        }
        eprintln!("largest difference from libm: {worst:e}");
    }

    #[test]
    fn continuous_derivative_at_window_start() {
        let rb = RadialBasis {
            rc: 5.0,
            r0: 2.0,
            nmax: 8,
        };
        let (mut g1, mut d1) = (vec![0.0; 8], vec![0.0; 8]);
        let (mut g2, mut d2) = (vec![0.0; 8], vec![0.0; 8]);
        rb.eval(2.0 - 1e-9, &mut g1, &mut d1);
        rb.eval(2.0 + 1e-9, &mut g2, &mut d2);
        for k in 0..8 {
            assert!((g1[k] - g2[k]).abs() < 1e-8);
            assert!(
                (d1[k] - d2[k]).abs() < 1e-6,
                "n={k}: {} vs {}",
                d1[k],
                d2[k]
            );
        }
    }
}
