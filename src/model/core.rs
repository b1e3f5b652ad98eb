//! Short-range repulsive core: the universal ZBL screened-Coulomb pair potential, switched on below
//! the shortest distance seen in training.
//!
//! The ACE part is only trustworthy where there was data; closer than that its radial functions
//! are clamped (see `basis::radial`) and nothing stops atoms from collapsing. ZBL is physical at
//! short range and is faded in smoothly (C² switch) over `[r_in, r_out]`, so it does not touch the
//! data region when `r_out` is the training data's minimum distance. During fitting its energy and
//! forces are subtracted from the targets, so the ACE part fits the remainder.

use serde::{Deserialize, Serialize};

/// Coulomb constant e²/(4πε0) in eV·Å.
const KE: f64 = 14.399645;

/// ZBL core for one species pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorePair {
    /// Atomic numbers.
    pub z1: u32,
    pub z2: u32,
    /// Below `r_in` (Å) the full ZBL acts.
    pub r_in: f64,
    /// Above `r_out` (Å) the core is zero.
    pub r_out: f64,
}

impl CorePair {
    /// Pair energy (eV) and its derivative with respect to distance (eV/Å).
    #[inline]
    pub fn energy_deriv(&self, r: f64) -> (f64, f64) {
        if r >= self.r_out || self.z1 == 0 || self.z2 == 0 {
            return (0.0, 0.0);
        }
        let (e, de) = zbl(self.z1 as f64, self.z2 as f64, r);
        if r <= self.r_in {
            return (e, de);
        }
        let w = self.r_out - self.r_in;
        let t = (r - self.r_in) / w;
        // S = 1 - (10 t^3 - 15 t^4 + 6 t^5), C² at both ends.
        let s = 1.0 - t * t * t * (10.0 - 15.0 * t + 6.0 * t * t);
        let ds = -30.0 * t * t * (1.0 - t) * (1.0 - t) / w;
        (e * s, de * s + e * ds)
    }
}

/// ZBL universal potential and derivative.
fn zbl(z1: f64, z2: f64, r: f64) -> (f64, f64) {
    const C: [f64; 4] = [0.18175, 0.50986, 0.28022, 0.02817];
    const D: [f64; 4] = [3.19980, 0.94229, 0.40290, 0.20162];
    let a = 0.46850 / (z1.powf(0.23) + z2.powf(0.23));
    let x = r / a;
    let (mut phi, mut dphi) = (0.0, 0.0);
    for k in 0..4 {
        let e = (-D[k] * x).exp();
        phi += C[k] * e;
        dphi -= C[k] * D[k] * e / a;
    }
    let pre = KE * z1 * z2;
    (pre * phi / r, pre * (dphi / r - phi / (r * r)))
}

/// Atomic number of a chemical symbol (0 if unknown: then no core is applied for that species).
pub fn atomic_number(symbol: &str) -> u32 {
    crate::elements::atomic_number(symbol).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switched_zbl_is_smooth_and_repulsive() {
        let p = CorePair {
            z1: 3,
            z2: 3,
            r_in: 1.7,
            r_out: 2.2,
        };
        let h = 1e-6;
        for r in [0.3, 1.0, 1.7, 1.8, 2.0, 2.19] {
            let (e, de) = p.energy_deriv(r);
            let fd = (p.energy_deriv(r + h).0 - p.energy_deriv(r - h).0) / (2.0 * h);
            assert!(
                (fd - de).abs() < 1e-5 * de.abs().max(1.0),
                "r={r}: {fd} vs {de}"
            );
            assert!(e > 0.0 && de < 0.0);
        }
        assert_eq!(p.energy_deriv(2.2), (0.0, 0.0));
        // Known magnitude: Li–Li ZBL at 1 Å is about 5.5 eV.
        let (e, _) = zbl(3.0, 3.0, 1.0);
        assert!((e - 5.5).abs() < 0.3, "{e}");
        assert_eq!(atomic_number("Li"), 3);
        assert_eq!(atomic_number("Mg"), 12);
        assert_eq!(atomic_number("Xx"), 0);
    }
}
