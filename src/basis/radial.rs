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
        let arg = PI * r / self.rc;
        let fc = 0.5 * (1.0 + arg.cos());
        let dfc = -0.5 * PI / self.rc * arg.sin();
        let width = self.rc - self.r0;
        let x = (r - self.r0) / width;
        let (theta, dtheta) = if x <= 0.0 {
            (0.0, 0.0)
        } else {
            (PI * x, PI / width)
        };
        let (c1, s1) = (theta.cos(), theta.sin());
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

#[cfg(test)]
mod tests {
    use super::*;

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
