//! Reading and writing data: extended XYZ frames and model files.
//!
//! Layer 3: owns file formats (extended XYZ read/write/append, the binary container, the model's
//! sections of a model file, LAMMPS data files). Imports structure, basis and model; never uq or
//! anything above it.

pub mod container;
pub mod extxyz;
pub mod lammps_data;
pub mod modelfile;
