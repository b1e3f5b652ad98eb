//! aceuq: linear atomic cluster expansion (ACE) potentials with per-atom uncertainty
//! for molecular dynamics, with a C ABI for the LAMMPS plugin.
//!
//! Units are LAMMPS `metal`: Å, eV, eV/Å.

pub mod ffi;
pub mod io;
pub mod stats;
pub mod structure;

pub use structure::Structure;
