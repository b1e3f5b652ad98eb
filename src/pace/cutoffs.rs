//! Calibrated `gamma` (and `gamma_local`) cutoffs of a pacemaker potential, kept in a small TOML
//! file beside the potential and its active-set inverse (`pot.cutoffs.toml`), so that neither
//! file changes and ML-PACE still reads the `.asi` (it refuses any array that is not an
//! element's matrix).
//!
//! The file names the potential and the active set it was calibrated with (and the clustered
//! local active sets, `.lasi`, when `gamma_local` was calibrated too) and carries a fingerprint
//! of each (FNV-1a 64 of the bytes, and the length): loading it with other files is an error,
//! because a cutoff on a grade means nothing for another active set.
//!
//! ```toml
//! # aceuq: calibrated gamma cutoffs of a pacemaker potential (`aceuq calibrate`); ...
//! format = "aceuq-pacemaker-cutoffs"
//! version = 1
//! potential = "pot.yaml"
//! potential_fingerprint = "fnv1a64:0123456789abcdef:52811"
//! active_set = "pot.asi"
//! active_set_fingerprint = "fnv1a64:...:..."
//! local_active_set = "pot.lasi"                  # only with gamma_local entries
//! local_active_set_fingerprint = "fnv1a64:...:..."
//! elements = ["Al", "Cu"]
//! [[calibration]]   # one entry per (method, element[, cluster]), as stored in .aceuq models
//! ```

use super::PaceError;
use crate::stats::cutoff::Calibration;
use crate::uq::Method;
use serde::{Deserialize, Serialize};
use std::path::Path;

const FORMAT: &str = "aceuq-pacemaker-cutoffs";
/// Version 2 added `gamma_local` entries and the `.lasi` fields (version 1 files still read).
const VERSION: u32 = 2;

/// The cutoffs file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaceCutoffs {
    format: String,
    version: u32,
    /// The potential file as given to `aceuq calibrate` (for messages).
    pub potential: String,
    pub potential_fingerprint: String,
    /// The active-set inverse as given to `aceuq calibrate`.
    pub active_set: String,
    pub active_set_fingerprint: String,
    /// The clustered local active sets (`.lasi`) as given to `aceuq calibrate`, when
    /// `gamma_local` was calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_active_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_active_set_fingerprint: Option<String>,
    /// The potential's elements, in its order.
    pub elements: Vec<String>,
    /// Per element the calibration of `gamma`, and of `gamma_local` (per element, then per
    /// cluster with enough atoms) with a `.lasi` (the same records as in `.aceuq` models).
    pub calibration: Vec<Calibration>,
}

/// `fnv1a64:<hex>:<length>` of a file's bytes.
pub fn fingerprint(path: &Path) -> Result<String, PaceError> {
    let bytes = std::fs::read(path)
        .map_err(|e| PaceError::Io(format!("{}: cannot read: {e}", path.display())))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(format!("fnv1a64:{h:016x}:{}", bytes.len()))
}

impl PaceCutoffs {
    /// Cutoffs calibrated for the potential at `potential` with the active set at `active_set`
    /// (and the clustered local active sets at `local`).
    pub fn new(
        potential: &Path,
        active_set: &Path,
        local: Option<&Path>,
        elements: &[String],
        calibration: Vec<Calibration>,
    ) -> Result<PaceCutoffs, PaceError> {
        Ok(PaceCutoffs {
            // Files without gamma_local stay readable by aceuq versions that know only gamma.
            version: if local.is_some() { VERSION } else { 1 },
            local_active_set: local.map(|p| p.display().to_string()),
            local_active_set_fingerprint: local.map(fingerprint).transpose()?,
            format: FORMAT.into(),
            potential: potential.display().to_string(),
            potential_fingerprint: fingerprint(potential)?,
            active_set: active_set.display().to_string(),
            active_set_fingerprint: fingerprint(active_set)?,
            elements: elements.to_vec(),
            calibration,
        })
    }

    /// Write atomically (a temporary file renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<(), PaceError> {
        let body = toml::to_string(self)
            .map_err(|e| PaceError::Data(format!("cannot serialize the cutoffs: {e}")))?;
        let text = format!(
            "# aceuq: calibrated cutoffs of a pacemaker potential, written by `aceuq \
             calibrate`.\n# Use: pair_coeff * * {} {}{} {} {}\n{body}",
            self.potential,
            self.active_set,
            self.local_active_set
                .as_ref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default(),
            path.display(),
            self.elements.join(" ")
        );
        crate::io::container::write_atomic(path, text.as_bytes())
            .map_err(|e| PaceError::Io(e.to_string()))
    }

    /// Read `path` (format and version checked) without comparing it with any potential
    /// (for `aceuq info`; [`PaceCutoffs::load`] for use).
    pub fn read(path: &Path) -> Result<PaceCutoffs, PaceError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| PaceError::Io(format!("{name}: cannot read: {e}")))?;
        let c: PaceCutoffs = toml::from_str(&text).map_err(|e| {
            PaceError::Data(format!(
                "{name}: not an aceuq cutoffs file of a pacemaker potential: {}",
                e.message()
            ))
        })?;
        if c.format != FORMAT {
            return Err(PaceError::Data(format!(
                "{name}: format '{}', expected '{FORMAT}'",
                c.format
            )));
        }
        if c.version > VERSION {
            return Err(PaceError::Data(format!(
                "{name}: version {} is newer than this aceuq reads ({VERSION}): update aceuq",
                c.version
            )));
        }
        Ok(c)
    }

    /// Read `path` and check that it was calibrated for these very files (`local`: the `.lasi`
    /// attached, if any; the file's `gamma_local` entries need the one they were calibrated
    /// with).
    pub fn load(
        path: &Path,
        potential: &Path,
        active_set: &Path,
        local: Option<&Path>,
        elements: &[String],
    ) -> Result<PaceCutoffs, PaceError> {
        let name = path.display().to_string();
        let c = PaceCutoffs::read(path)?;
        let redo = format!(
            "recalibrate: `aceuq calibrate --model {} --active-set {}{} --valid ... --out {name}`",
            potential.display(),
            active_set.display(),
            local
                .map(|l| format!(" --local-active-set {}", l.display()))
                .unwrap_or_default()
        );
        if c.potential_fingerprint != fingerprint(potential)? {
            return Err(PaceError::Data(format!(
                "{name}: calibrated for another potential file ({}), not {}: {redo}",
                c.potential,
                potential.display()
            )));
        }
        if c.active_set_fingerprint != fingerprint(active_set)? {
            return Err(PaceError::Data(format!(
                "{name}: calibrated with another active set ({}), not {}: cutoffs on one active \
                 set's gamma do not apply to another's; {redo}",
                c.active_set,
                active_set.display()
            )));
        }
        if c.elements != elements {
            return Err(PaceError::Data(format!(
                "{name}: elements {:?}, the potential has {elements:?}",
                c.elements
            )));
        }
        let has_local_entries = c
            .calibration
            .iter()
            .any(|x| x.method == Method::GammaLocal.name());
        for cal in &c.calibration {
            let local_entry = cal.method == Method::GammaLocal.name();
            if !elements.contains(&cal.species)
                || !(cal.method == Method::Gamma.name() || local_entry)
                || (cal.cluster.is_some() && !local_entry)
            {
                return Err(PaceError::Data(format!(
                    "{name}: an entry for '{}' of {}{}: only 'gamma' and 'gamma_local' (per \
                     cluster too) of the potential's elements can be calibrated",
                    cal.method,
                    cal.species,
                    cal.cluster
                        .map(|k| format!(" cluster {k}"))
                        .unwrap_or_default()
                )));
            }
            cal.check_stored()
                .map_err(|e| PaceError::Data(format!("{name}: {e}")))?;
        }
        if has_local_entries {
            let Some(fp) = &c.local_active_set_fingerprint else {
                return Err(PaceError::Data(format!(
                    "{name}: gamma_local entries without the clustered active sets they were \
                     calibrated with (no local_active_set_fingerprint): {redo}"
                )));
            };
            // Without a .lasi the gamma_local entries are simply unused.
            if let Some(l) = local
                && *fp != fingerprint(l)?
            {
                return Err(PaceError::Data(format!(
                    "{name}: gamma_local calibrated with other clustered active sets ({}), not \
                     {}: {redo}",
                    c.local_active_set.as_deref().unwrap_or("?"),
                    l.display()
                )));
            }
        }
        Ok(c)
    }

    /// The entry of `method` for element index `species`.
    pub fn entry(&self, method: Method, species: usize) -> Option<&Calibration> {
        let name = self.elements.get(species)?;
        self.calibration
            .iter()
            .find(|c| c.method == method.name() && &c.species == name && c.cluster.is_none())
    }

    /// The own entry of `gamma_local` cluster `cluster` of element index `species`, if
    /// calibrated (a cluster with too few validation atoms has none: the element's applies).
    pub fn cluster_entry(
        &self,
        method: Method,
        species: usize,
        cluster: usize,
    ) -> Option<&Calibration> {
        let name = self.elements.get(species)?;
        self.calibration
            .iter()
            .find(|c| c.method == method.name() && &c.species == name && c.cluster == Some(cluster))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cutoff::{CalibrationOptions, calibrate_with_high};

    fn entry(species: &str) -> Calibration {
        // Errors and grades of 200 made-up atoms, correlated.
        let u: Vec<f64> = (0..200).map(|k| 0.2 + 0.01 * k as f64).collect();
        let e: Vec<f64> = u
            .iter()
            .enumerate()
            .map(|(k, u)| 0.05 * u * (1.0 + 0.5 * ((k * 7919 % 200) as f64 / 200.0)))
            .collect();
        calibrate_with_high(
            species,
            "gamma",
            &e,
            &u,
            &[],
            &[],
            &CalibrationOptions::new(1000),
        )
        .unwrap()
    }

    #[test]
    fn cutoffs_round_trip_and_refuse_other_files() {
        let dir = std::env::temp_dir().join(format!("aceuq-pace-cutoffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pot, asi, other) = (dir.join("p.yace"), dir.join("p.asi"), dir.join("q.asi"));
        std::fs::write(&pot, "potential bytes").unwrap();
        std::fs::write(&asi, "active set bytes").unwrap();
        std::fs::write(&other, "another active set").unwrap();
        let els = vec!["Al".to_string(), "Cu".to_string()];
        let c = PaceCutoffs::new(&pot, &asi, None, &els, vec![entry("Al"), entry("Cu")]).unwrap();
        let path = dir.join("p.cutoffs.toml");
        c.save(&path).unwrap();
        let back = PaceCutoffs::load(&path, &pot, &asi, None, &els).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.entry(Method::Gamma, 1).unwrap().species, "Cu");
        assert!(back.entry(Method::GammaLocal, 1).is_none());
        let err = |r: Result<PaceCutoffs, PaceError>| r.unwrap_err().to_string();
        let e = err(PaceCutoffs::load(&path, &pot, &other, None, &els));
        assert!(e.contains("calibrated with another active set"), "{e}");
        std::fs::write(dir.join("p2.yace"), "potential bytes, edited").unwrap();
        let e = err(PaceCutoffs::load(
            &path,
            &dir.join("p2.yace"),
            &asi,
            None,
            &els,
        ));
        assert!(e.contains("calibrated for another potential file"), "{e}");
        let e = err(PaceCutoffs::load(&path, &pot, &asi, None, &els[..1]));
        assert!(e.contains("elements"), "{e}");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("version = 1", "version = 7")).unwrap();
        let e = err(PaceCutoffs::load(&path, &pot, &asi, None, &els));
        assert!(e.contains("newer than this aceuq reads"), "{e}");
        std::fs::write(&path, "format = \"something else\"\n").unwrap();
        let e = err(PaceCutoffs::load(&path, &pot, &asi, None, &els));
        assert!(e.contains("not an aceuq cutoffs file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
