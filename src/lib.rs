//! aceuq: linear atomic cluster expansion (ACE) potentials with per-atom uncertainty
//! for molecular dynamics, with a C ABI for the LAMMPS plugin.
//!
//! Units are LAMMPS `metal`: Å, eV, eV/Å.

#![allow(clippy::needless_range_loop)] // index loops read like the formulas in numerical kernels

pub mod basis;
#[cfg(feature = "cli")]
pub mod bench;
pub mod calibration;
#[cfg(feature = "cli")]
pub mod cli;
pub mod elements;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod io;
pub mod model;
pub mod neighbors;
pub mod pace;
pub mod potential;
pub mod progress;
pub mod simd;
pub mod stats;
pub mod structure;
#[cfg(test)]
pub(crate) mod testing;
pub mod uq;
#[cfg(feature = "cli")]
pub mod workflow;

pub use potential::Potential;
pub use structure::Structure;
