//! Checking that read frames carry the reference labels a command needs, with messages that
//! name the key looked for and the keys the file has instead (`REF_energy=` read with the default
//! key `energy` must not silently become a fit without energies).

use crate::structure::{InfoValue, PropData, Structure};

/// A reference label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// The total energy (comment-line key, [`super::ReadOptions::energy_key`]).
    Energy,
    /// The forces (per-atom `R:3` property, [`super::ReadOptions::forces_key`]).
    Forces,
}

/// Frames without a label: the first of them and what its file has instead.
#[derive(Clone, Debug, PartialEq)]
pub struct MissingLabel {
    pub label: Label,
    /// The key that was looked for.
    pub key: String,
    /// File of the first frame without it (`"?"` for frames made in code).
    pub file: String,
    /// 1-based frame index and line of that frame in its file.
    pub frame: usize,
    pub line: usize,
    /// Frames of that file without the label, and frames of that file.
    pub missing: usize,
    pub total: usize,
    /// Keys of that frame that look like the label: numeric comment-line keys whose name
    /// contains "energ", or real per-atom properties with 3 columns, most likely first.
    pub candidates: Vec<String>,
    /// For forces: every per-atom property of the frame besides species and positions, as
    /// `name:type:columns`.
    pub properties: Vec<String>,
}

impl MissingLabel {
    /// The most likely key to use instead, if any.
    pub fn suggestion(&self) -> Option<&str> {
        self.candidates.first().map(|s| s.as_str())
    }
}

impl std::fmt::Display for MissingLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, count) = (
            match self.label {
                Label::Energy => format!("no energy key '{}'", self.key),
                Label::Forces => format!("no per-atom forces property '{}'", self.key),
            },
            if self.missing == self.total {
                format!("none of its {} frames has it", self.total)
            } else {
                format!("{} of its {} frames lack it", self.missing, self.total)
            },
        );
        write!(
            f,
            "{}:{}: frame {} has {what} ({count})",
            self.file, self.line, self.frame
        )?;
        match self.label {
            Label::Energy if self.candidates.is_empty() => {
                write!(f, "; its comment line has no other energy-like key")
            }
            Label::Energy => write!(f, "; its comment line has {}", self.candidates.join(", ")),
            Label::Forces if self.properties.is_empty() => {
                write!(
                    f,
                    "; it has no per-atom property besides species and positions"
                )
            }
            Label::Forces => write!(
                f,
                "; its per-atom properties besides species and positions are {}",
                self.properties.join(", ")
            ),
        }
    }
}

/// The first frame of `frames` without `label` (read under `key`), or `None` when every frame has
/// it.
pub fn missing_label(frames: &[Structure], label: Label, key: &str) -> Option<MissingLabel> {
    let has = |s: &Structure| match label {
        Label::Energy => s.energy.is_some(),
        Label::Forces => s.forces.is_some(),
    };
    let first = frames.iter().find(|s| !has(s))?;
    let same_file = frames
        .iter()
        .filter(|s| s.origin.file == first.origin.file)
        .collect::<Vec<_>>();
    let (candidates, properties) = match label {
        Label::Energy => (energy_like(first), Vec::new()),
        Label::Forces => forces_like(first),
    };
    Some(MissingLabel {
        label,
        key: key.to_string(),
        file: first.origin.file.clone().unwrap_or_else(|| "?".into()),
        frame: first.origin.frame + 1,
        line: first.origin.line,
        missing: same_file.iter().filter(|s| !has(s)).count(),
        total: same_file.len(),
        candidates,
        properties,
    })
}

/// Numeric comment-line keys whose name contains "energ": exactly "energy" (any case) first,
/// then names ending in "energy" (`REF_energy`, `free_energy`), then the others.
fn energy_like(s: &Structure) -> Vec<String> {
    let mut v: Vec<(u8, &String)> = s
        .info
        .iter()
        .filter(|(_, v)| matches!(v, InfoValue::Real(_) | InfoValue::Int(_)))
        .filter_map(|(k, _)| {
            let l = k.to_ascii_lowercase();
            let rank = if l == "energy" {
                0
            } else if l.ends_with("energy") {
                1
            } else if l.contains("energ") {
                2
            } else {
                return None;
            };
            Some((rank, k))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, k)| k.clone()).collect()
}

/// Real 3-column per-atom properties (names containing "forc" first), and every per-atom
/// property as `name:type:columns`.
fn forces_like(s: &Structure) -> (Vec<String>, Vec<String>) {
    let mut cands: Vec<(u8, &String)> = s
        .arrays
        .iter()
        .filter(|(_, d)| matches!(d, PropData::Real { ncols: 3, .. }))
        .map(|(n, _)| (u8::from(!n.to_ascii_lowercase().contains("forc")), n))
        .collect();
    cands.sort_by_key(|(r, _)| *r);
    let props = s
        .arrays
        .iter()
        .map(|(n, d)| {
            let t = match d {
                PropData::Real { .. } => 'R',
                PropData::Int { .. } => 'I',
                PropData::Bool { .. } => 'L',
                PropData::Str(_) => 'S',
            };
            format!("{n}:{t}:{}", d.ncols())
        })
        .collect();
    (cands.into_iter().map(|(_, n)| n.clone()).collect(), props)
}
