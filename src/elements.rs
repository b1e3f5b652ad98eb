//! The chemical elements H to Pu: symbol, atomic number and standard atomic mass.
//!
//! Masses in g/mol: IUPAC's standard atomic weights, abridged to five significant digits (Li
//! the conventional 6.94, Al 26.9815 as the repository's data files have always carried);
//! for the elements without a standard weight (Tc, Pm, Po to Ac, Np, Pu) the mass of the
//! longest-lived isotope, as LAMMPS users and ASE take it.

/// (symbol, mass) by atomic number - 1.
const ELEMENTS: [(&str, f64); 94] = [
    ("H", 1.008),
    ("He", 4.0026),
    ("Li", 6.94),
    ("Be", 9.0122),
    ("B", 10.81),
    ("C", 12.011),
    ("N", 14.007),
    ("O", 15.999),
    ("F", 18.998),
    ("Ne", 20.180),
    ("Na", 22.99),
    ("Mg", 24.305),
    ("Al", 26.9815),
    ("Si", 28.085),
    ("P", 30.974),
    ("S", 32.06),
    ("Cl", 35.45),
    ("Ar", 39.948),
    ("K", 39.098),
    ("Ca", 40.078),
    ("Sc", 44.956),
    ("Ti", 47.867),
    ("V", 50.942),
    ("Cr", 51.996),
    ("Mn", 54.938),
    ("Fe", 55.845),
    ("Co", 58.933),
    ("Ni", 58.693),
    ("Cu", 63.546),
    ("Zn", 65.38),
    ("Ga", 69.723),
    ("Ge", 72.63),
    ("As", 74.922),
    ("Se", 78.971),
    ("Br", 79.904),
    ("Kr", 83.798),
    ("Rb", 85.468),
    ("Sr", 87.62),
    ("Y", 88.906),
    ("Zr", 91.224),
    ("Nb", 92.906),
    ("Mo", 95.95),
    ("Tc", 97.907),
    ("Ru", 101.07),
    ("Rh", 102.91),
    ("Pd", 106.42),
    ("Ag", 107.87),
    ("Cd", 112.41),
    ("In", 114.82),
    ("Sn", 118.71),
    ("Sb", 121.76),
    ("Te", 127.60),
    ("I", 126.90),
    ("Xe", 131.29),
    ("Cs", 132.91),
    ("Ba", 137.33),
    ("La", 138.91),
    ("Ce", 140.12),
    ("Pr", 140.91),
    ("Nd", 144.24),
    ("Pm", 144.91),
    ("Sm", 150.36),
    ("Eu", 151.96),
    ("Gd", 157.25),
    ("Tb", 158.93),
    ("Dy", 162.50),
    ("Ho", 164.93),
    ("Er", 167.26),
    ("Tm", 168.93),
    ("Yb", 173.05),
    ("Lu", 174.97),
    ("Hf", 178.49),
    ("Ta", 180.95),
    ("W", 183.84),
    ("Re", 186.21),
    ("Os", 190.23),
    ("Ir", 192.22),
    ("Pt", 195.08),
    ("Au", 196.97),
    ("Hg", 200.59),
    ("Tl", 204.38),
    ("Pb", 207.2),
    ("Bi", 208.98),
    ("Po", 208.98),
    ("At", 209.99),
    ("Rn", 222.02),
    ("Fr", 223.02),
    ("Ra", 226.03),
    ("Ac", 227.03),
    ("Th", 232.04),
    ("Pa", 231.04),
    ("U", 238.03),
    ("Np", 237.05),
    ("Pu", 244.06),
];

/// Atomic number of a chemical symbol (exact spelling, "Li" not "li"); None if it is not one.
pub fn atomic_number(symbol: &str) -> Option<u32> {
    ELEMENTS
        .iter()
        .position(|e| e.0 == symbol)
        .map(|p| p as u32 + 1)
}

/// Standard atomic mass (g/mol) of a chemical symbol; None if it is not one.
pub fn atomic_mass(symbol: &str) -> Option<f64> {
    ELEMENTS.iter().find(|e| e.0 == symbol).map(|e| e.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_has_its_number_and_a_mass_that_grows_with_it() {
        assert_eq!(atomic_number("H"), Some(1));
        assert_eq!(atomic_number("In"), Some(49));
        assert_eq!(atomic_number("Pu"), Some(94));
        assert_eq!(atomic_number("li"), None);
        assert_eq!(atomic_number("X"), None);
        // Spot checks against IUPAC's standard atomic weights (abridged).
        for (sym, m) in [
            ("In", 114.82),
            ("Fe", 55.845),
            ("Au", 196.97),
            ("U", 238.03),
        ] {
            assert_eq!(atomic_mass(sym), Some(m), "{sym}");
        }
        assert_eq!(atomic_mass("Xx"), None);
        // Masses follow the numbers (Bi and Po both 208.98) but for the known inversions (Ar-K, Co-Ni, Te-I, Th-Pa,
        // U-Np): a typo in the table would break this.
        let inversions = ["K", "Ni", "I", "Pa", "Np"];
        for w in ELEMENTS.windows(2) {
            assert!(
                w[1].1 >= w[0].1 || inversions.contains(&w[1].0),
                "{} {} then {} {}",
                w[0].0,
                w[0].1,
                w[1].0,
                w[1].1
            );
            assert!(w[1].1 - w[0].1 < 13.0, "{} to {}", w[0].0, w[1].0);
        }
        // Distinct symbols.
        for (i, e) in ELEMENTS.iter().enumerate() {
            assert_eq!(atomic_number(e.0), Some(i as u32 + 1));
        }
    }
}
