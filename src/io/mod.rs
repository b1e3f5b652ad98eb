//! Reading and writing data: extended XYZ frames and model files.

pub mod extxyz;
