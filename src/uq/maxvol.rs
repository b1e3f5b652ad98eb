//! PLACEHOLDER: MaxVol (see ../mod.rs).
