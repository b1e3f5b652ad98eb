//! Clustered local active sets of a pacemaker potential (aceuq's `gamma_local` on the potential's
//! projections), kept in their own file beside the potential and its `.asi` (`pot.lasi`), so
//! that neither of those changes and ML-PACE still reads the `.asi`.
//!
//! The file is an aceuq container (the `.aceuq` binary layout) holding
//! [`ClusteredActiveSets`] built on the rows of [`PacePotential::structure_rows`] (the
//! non-linear projections, functions × densities, whatever kind of `.asi` sits beside it), plus
//! a `[pacemaker]` table naming the potential with a fingerprint of its bytes: clusters and
//! active sets of one potential's projections mean nothing for another's, so loading the file
//! with another potential is an error that names the command to rebuild it.
//!
//! Each atom is graded by the active set of the cluster whose centroid is nearest to its
//! standardized projections (k-means), or by the cluster with the smallest grade (clusters by
//! `config_type`): see `docs/clustered.md`.

use super::cutoffs::fingerprint;
use super::{PaceError, PacePotential};
use crate::io::container::Container;
use crate::structure::Structure;
use crate::uq::activeset::{ClusteredActiveSets, FuncLayout, GammaScratch};
use serde::{Deserialize, Serialize};
use std::path::Path;

const FORMAT: &str = "aceuq-pacemaker-local-active-sets";
const VERSION: u32 = 1;

/// Whether `path` names a clustered local active-set file (`.lasi`), by its extension.
pub fn is_local_active_set(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("lasi")
}

/// The `[pacemaker]` table of a `.lasi` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    /// The potential file as given to `aceuq activeset` (for messages).
    potential: String,
    potential_fingerprint: String,
    elements: Vec<String>,
    /// Projections per atom of each element (the rows' length).
    projections: Vec<usize>,
}

/// The row layouts of `pot`'s projections (no chemistry split: the rows carry no labels of
/// their columns).
pub fn layouts(pot: &PacePotential) -> Vec<FuncLayout> {
    (0..pot.model().nspecies())
        .map(|s| FuncLayout::plain(pot.nprojections(s)))
        .collect()
}

/// Write the clustered active sets `sets` of the potential `pot` (read from `potential`) to
/// `path`, atomically.
pub fn write_local_active_set(
    path: &Path,
    pot: &PacePotential,
    potential: &Path,
    sets: &ClusteredActiveSets,
) -> Result<(), PaceError> {
    let elements = &pot.model().elements;
    let projections: Vec<usize> = (0..elements.len()).map(|s| pot.nprojections(s)).collect();
    for (s, sc) in sets.species.iter().enumerate() {
        if sc.mean.len() != projections[s] {
            return Err(PaceError::Data(format!(
                "{}: element {}: clusters of rows of {} numbers for {} projections",
                path.display(),
                elements[s],
                sc.mean.len(),
                projections[s]
            )));
        }
    }
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        potential: potential.display().to_string(),
        potential_fingerprint: fingerprint(potential)?,
        elements: elements.clone(),
        projections,
    };
    let mut c = Container::default();
    c.meta.insert(
        "pacemaker".into(),
        toml::Value::try_from(&header).expect("header serializes"),
    );
    sets.save(&mut c);
    c.write_atomic(path)
        .map_err(|e| PaceError::Io(e.to_string()))
}

/// Read the clustered local active sets at `path` for the potential `pot` read from
/// `potential`, checking that they were built for that very file.
pub fn read_local_active_set(
    path: &Path,
    pot: &PacePotential,
    potential: &Path,
) -> Result<ClusteredActiveSets, PaceError> {
    let name = path.display().to_string();
    let c = Container::read(path).map_err(|e| PaceError::Data(e.to_string()))?;
    let header: Header = c
        .meta
        .get("pacemaker")
        .ok_or_else(|| {
            PaceError::Data(format!(
                "{name}: not a clustered active-set file of a pacemaker potential (no \
                 [pacemaker] table; `aceuq activeset --model <potential> --data ... --clusters K` \
                 writes one)"
            ))
        })?
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| {
            PaceError::Data(format!("{name}: [pacemaker]: {}", e.message()))
        })?;
    if header.format != FORMAT {
        return Err(PaceError::Data(format!(
            "{name}: format '{}', expected '{FORMAT}'",
            header.format
        )));
    }
    if header.version > VERSION {
        return Err(PaceError::Data(format!(
            "{name}: version {} is newer than this aceuq reads ({VERSION}): update aceuq",
            header.version
        )));
    }
    let rebuild = format!(
        "rebuild it: `aceuq activeset --model {} --data train.xyz --clusters K --out {}`",
        potential.display(),
        path.with_extension("asi").display()
    );
    if header.potential_fingerprint != fingerprint(potential)? {
        return Err(PaceError::Data(format!(
            "{name}: built for another potential file ({}), not {}: clusters of one potential's \
             projections do not apply to another's; {rebuild}",
            header.potential,
            potential.display()
        )));
    }
    let elements = &pot.model().elements;
    let layouts = layouts(pot);
    let ms: Vec<usize> = layouts.iter().map(|l| l.m).collect();
    if &header.elements != elements || header.projections != ms {
        return Err(PaceError::Data(format!(
            "{name}: elements {:?} with {:?} projections, the potential has {elements:?} with \
             {ms:?}; {rebuild}",
            header.elements, header.projections
        )));
    }
    ClusteredActiveSets::load_rows(path, &c, elements, &layouts)
        .map_err(|e| PaceError::Data(e.to_string()))?
        .ok_or_else(|| {
            PaceError::Data(format!("{name}: holds no clustered active sets; {rebuild}"))
        })
}

impl PacePotential {
    /// The non-linear projection row of one atom (what `.lasi` files cluster) from the atomic
    /// base already in `ws` (left by the energy of the same atom).
    pub fn projections_from_base(
        &self,
        ws: &mut super::PaceScratch,
        si: usize,
        out: &mut Vec<f64>,
    ) {
        out.resize(self.nprojections(si), 0.0);
        match self {
            PacePotential::CTilde(m) => m.atom_projections_from_base(ws, si, out),
            PacePotential::BBasis(b) => b.atom_projections_from_base(ws, si, out),
        }
    }

    /// `gamma_local` of every atom of `s` with the clustered active sets `local`, and the
    /// cluster that graded it, as the MD step computes them.
    pub fn gamma_local(
        &self,
        local: &ClusteredActiveSets,
        s: &Structure,
    ) -> Result<(Vec<f64>, Vec<u32>), PaceError> {
        let mut scratch = GammaScratch::default();
        Ok(self
            .structure_rows(s)?
            .iter()
            .map(|(si, row)| {
                let (g, c) = local.gamma_local(*si, row, &mut scratch);
                (g, c as u32)
            })
            .unzip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uq::activeset::{Settings, TableSource};
    use crate::uq::{DescriptorTable, Partition, SpeciesRows};

    /// Projections of every atom of `frames` as a descriptor table.
    fn table(pot: &PacePotential, frames: &[Structure]) -> DescriptorTable {
        let mut t = DescriptorTable {
            per_species: (0..pot.model().nspecies())
                .map(|s| SpeciesRows {
                    m: pot.nprojections(s),
                    ..Default::default()
                })
                .collect(),
        };
        for (k, f) in frames.iter().enumerate() {
            for (i, (si, row)) in pot.structure_rows(f).unwrap().into_iter().enumerate() {
                let o = &mut t.per_species[si];
                o.rows.extend_from_slice(&row);
                o.structure.push(k as u32);
                o.atom.push(i as u32);
            }
        }
        t
    }

    /// Clustered sets of the B-basis Al-Cu test potential: written and read back unchanged;
    /// every build atom grades at most the MaxVol tolerance in its cluster; a file of another
    /// potential, a container without the pacemaker table and an `.asi` are refused by name.
    #[test]
    fn lasi_round_trips_grades_its_atoms_and_refuses_other_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let yaml = root.join("tests/data/pace/bbasis_alcu.yaml");
        let pot = PacePotential::load(&yaml).unwrap();
        let frames = crate::io::extxyz::read_file(
            root.join("tests/data/pace/bbasis_alcu_mlpace.xyz"),
            &Default::default(),
        )
        .unwrap();
        let t = table(&pot, &frames);
        let settings = Settings {
            min_cluster_atoms: 10,
            ..Default::default()
        };
        let sets = ClusteredActiveSets::build_rows(
            &pot.model().elements,
            &layouts(&pot),
            &mut TableSource {
                table: &t,
                labels: &[],
            },
            &Partition::KMeans(2),
            &settings,
            7,
            false,
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("aceuq-lasi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.lasi");
        write_local_active_set(&path, &pot, &yaml, &sets).unwrap();
        let back = read_local_active_set(&path, &pot, &yaml).unwrap();
        assert_eq!(back, sets);
        let mut worst = 0.0f64;
        for f in &frames {
            let (g, c) = pot.gamma_local(&back, f).unwrap();
            for (s, (gi, ci)) in f.symbols.iter().zip(g.iter().zip(&c)) {
                let si = pot.model().species_index(s).unwrap();
                assert!((*ci as usize) < back.species[si].sets.len());
                worst = worst.max(*gi);
            }
        }
        assert!(
            worst <= settings.tol + 1e-9,
            "a build atom grades {worst} > tol {}",
            settings.tol
        );
        let err = |p: &Path, pot_path: &Path| {
            read_local_active_set(p, &pot, pot_path)
                .unwrap_err()
                .to_string()
        };
        let other = dir.join("other.yaml");
        let mut text = std::fs::read_to_string(&yaml).unwrap();
        text.push_str("\n# edited\n");
        std::fs::write(&other, text).unwrap();
        let e = err(&path, &other);
        assert!(e.contains("built for another potential file"), "{e}");
        assert!(e.contains("aceuq activeset --model"), "{e}");
        let mut plain = Container::default();
        sets.save(&mut plain);
        let bare = dir.join("bare.lasi");
        plain.write_atomic(&bare).unwrap();
        let e = err(&bare, &yaml);
        assert!(e.contains("no [pacemaker] table"), "{e}");
        let asi = dir.join("renamed.lasi");
        std::fs::copy(root.join("tests/data/pace/bbasis_alcu_linear.asi"), &asi).unwrap();
        let e = err(&asi, &yaml);
        assert!(e.contains("renamed.lasi"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
