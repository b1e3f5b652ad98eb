pub mod cutoff;
