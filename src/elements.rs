//! The chemical elements H to Pu: symbol, atomic number and standard atomic mass.
//!
//! Masses in g/mol: IUPAC's standard atomic weights, abridged to five significant digits (Li
//! the conventional 6.94, Al 26.9815 as the repository's data files have always carried);
//! for the elements without a standard weight (Tc, Pm, Po to Ac, Np, Pu) the mass of the
//! longest-lived isotope, as LAMMPS users and ASE take it.

/// (symbol, mass) by atomic number - 1; the symbols NUL-terminated for the C interface.
const ELEMENTS: [(&std::ffi::CStr, f64); 94] = [
    (c"H", 1.008),
    (c"He", 4.0026),
    (c"Li", 6.94),
    (c"Be", 9.0122),
    (c"B", 10.81),
    (c"C", 12.011),
    (c"N", 14.007),
    (c"O", 15.999),
    (c"F", 18.998),
    (c"Ne", 20.180),
    (c"Na", 22.99),
    (c"Mg", 24.305),
    (c"Al", 26.9815),
    (c"Si", 28.085),
    (c"P", 30.974),
    (c"S", 32.06),
    (c"Cl", 35.45),
    (c"Ar", 39.948),
    (c"K", 39.098),
    (c"Ca", 40.078),
    (c"Sc", 44.956),
    (c"Ti", 47.867),
    (c"V", 50.942),
    (c"Cr", 51.996),
    (c"Mn", 54.938),
    (c"Fe", 55.845),
    (c"Co", 58.933),
    (c"Ni", 58.693),
    (c"Cu", 63.546),
    (c"Zn", 65.38),
    (c"Ga", 69.723),
    (c"Ge", 72.63),
    (c"As", 74.922),
    (c"Se", 78.971),
    (c"Br", 79.904),
    (c"Kr", 83.798),
    (c"Rb", 85.468),
    (c"Sr", 87.62),
    (c"Y", 88.906),
    (c"Zr", 91.224),
    (c"Nb", 92.906),
    (c"Mo", 95.95),
    (c"Tc", 97.907),
    (c"Ru", 101.07),
    (c"Rh", 102.91),
    (c"Pd", 106.42),
    (c"Ag", 107.87),
    (c"Cd", 112.41),
    (c"In", 114.82),
    (c"Sn", 118.71),
    (c"Sb", 121.76),
    (c"Te", 127.60),
    (c"I", 126.90),
    (c"Xe", 131.29),
    (c"Cs", 132.91),
    (c"Ba", 137.33),
    (c"La", 138.91),
    (c"Ce", 140.12),
    (c"Pr", 140.91),
    (c"Nd", 144.24),
    (c"Pm", 144.91),
    (c"Sm", 150.36),
    (c"Eu", 151.96),
    (c"Gd", 157.25),
    (c"Tb", 158.93),
    (c"Dy", 162.50),
    (c"Ho", 164.93),
    (c"Er", 167.26),
    (c"Tm", 168.93),
    (c"Yb", 173.05),
    (c"Lu", 174.97),
    (c"Hf", 178.49),
    (c"Ta", 180.95),
    (c"W", 183.84),
    (c"Re", 186.21),
    (c"Os", 190.23),
    (c"Ir", 192.22),
    (c"Pt", 195.08),
    (c"Au", 196.97),
    (c"Hg", 200.59),
    (c"Tl", 204.38),
    (c"Pb", 207.2),
    (c"Bi", 208.98),
    (c"Po", 208.98),
    (c"At", 209.99),
    (c"Rn", 222.02),
    (c"Fr", 223.02),
    (c"Ra", 226.03),
    (c"Ac", 227.03),
    (c"Th", 232.04),
    (c"Pa", 231.04),
    (c"U", 238.03),
    (c"Np", 237.05),
    (c"Pu", 244.06),
];

/// Atomic number of a chemical symbol (exact spelling, "Li" not "li"); None if it is not one.
pub fn atomic_number(symbol: &str) -> Option<u32> {
    ELEMENTS
        .iter()
        .position(|e| e.0.to_bytes() == symbol.as_bytes())
        .map(|p| p as u32 + 1)
}

/// A species name in its usual spelling when it is an element symbol in another case ("li",
/// "LI" -> "Li"), as ASE reads symbols; anything else (a label such as "Li1") as given.
pub fn canonical_symbol(name: &str) -> std::borrow::Cow<'_, str> {
    if atomic_number(name).is_some() {
        return name.into();
    }
    let mut chars = name.chars();
    let cased: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars.map(|c| c.to_ascii_lowercase()))
        .collect();
    if atomic_number(&cased).is_some() {
        cased.into()
    } else {
        name.into()
    }
}

/// The element of atomic number `z` (1 to 94): its symbol (NUL-terminated) and mass.
pub fn element(z: u32) -> Option<(&'static std::ffi::CStr, f64)> {
    ELEMENTS.get((z as usize).checked_sub(1)?).copied()
}

/// Standard atomic mass (g/mol) of a chemical symbol; None if it is not one.
pub fn atomic_mass(symbol: &str) -> Option<f64> {
    element(atomic_number(symbol)?).map(|e| e.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_in_another_case_are_the_elements_and_labels_stay() {
        for (given, read) in [
            ("li", "Li"),
            ("LI", "Li"),
            ("Li", "Li"),
            ("mG", "Mg"),
            ("h", "H"),
            ("Li1", "Li1"),
            ("X", "X"),
            ("xx", "xx"),
            ("", ""),
            ("é", "é"),
        ] {
            assert_eq!(canonical_symbol(given), read, "{given}");
        }
    }

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
        let inversions = [c"K", c"Ni", c"I", c"Pa", c"Np"];
        for w in ELEMENTS.windows(2) {
            assert!(
                w[1].1 >= w[0].1 || inversions.contains(&w[1].0),
                "{} {} then {} {}",
                w[0].0.to_str().unwrap(),
                w[0].1,
                w[1].0.to_str().unwrap(),
                w[1].1
            );
            assert!(w[1].1 - w[0].1 < 13.0, "{:?} to {:?}", w[0].0, w[1].0);
        }
        // Distinct symbols.
        for (i, e) in ELEMENTS.iter().enumerate() {
            assert_eq!(atomic_number(e.0.to_str().unwrap()), Some(i as u32 + 1));
            assert_eq!(element(i as u32 + 1), Some(*e));
        }
        assert_eq!((element(0), element(95)), (None, None));
    }
}
