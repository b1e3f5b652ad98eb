//! Options for reading extended XYZ, shared by the reader (files, streams) and the frame parser.

use super::error::WarningCallback;

/// Options for reading extended XYZ.
#[derive(Clone)]
pub struct ReadOptions {
    /// Comment-line key holding the reference energy in eV (default `energy`). Only this exact
    /// key is used; other energy-like keys stay in `info`.
    pub energy_key: String,
    /// Per-atom property (`R:3`) holding the reference forces in eV/Å (default `forces`).
    pub forces_key: String,
    /// Drop an incomplete last frame (fewer atom lines than its count, or a last line cut off
    /// mid-way) instead of failing; it is reported through `on_warning` and
    /// [`Reader::dropped_tail`](super::Reader::dropped_tail). Files cut off by a killed writer
    /// end this way (the incomplete frame of an interrupted [`super::append_frame`] is skipped by
    /// [`super::Reader::open`] in any case).
    pub allow_truncated_tail: bool,
    /// Called for each warning (a dropped tail). `None`: warnings are only recorded.
    pub on_warning: Option<WarningCallback>,
    /// Longest accepted line in bytes (default 16 MiB); bounds memory on corrupt input such as
    /// a binary file with no newlines.
    pub max_line_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            energy_key: "energy".to_string(),
            forces_key: "forces".to_string(),
            allow_truncated_tail: false,
            on_warning: None,
            max_line_bytes: 16 << 20,
        }
    }
}

impl std::fmt::Debug for ReadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOptions")
            .field("energy_key", &self.energy_key)
            .field("forces_key", &self.forces_key)
            .field("allow_truncated_tail", &self.allow_truncated_tail)
            .field(
                "on_warning",
                &self.on_warning.as_ref().map(|_| "<callback>"),
            )
            .field("max_line_bytes", &self.max_line_bytes)
            .finish()
    }
}
