//! Reading and writing data: extended XYZ frames and model files.

pub mod container;
pub mod extxyz;
pub mod lammps_data;
pub mod modelfile;
