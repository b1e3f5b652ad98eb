//! D-optimal selection of candidate structures for labelling ([`select`]): MaxVol over the
//! model's active set stacked with the candidates' extrapolating rows.

use super::global::GlobalActiveSets;
use super::species::GammaScratch;
use super::{
    BySpecies, ByStructure, Chunk, Group, PassError, Route, RowSource, Settings, run_passes, uq_err,
};
use crate::uq::maxvol::{PassStats, RowId, StreamingMaxVol};
use crate::uq::{DescriptorTable, UqError};
use std::collections::BTreeMap;

/// One chosen candidate structure.
#[derive(Clone, Debug, PartialEq)]
pub struct Chosen {
    /// Index of the structure in the candidate data.
    pub structure: usize,
    /// Rows (atoms) of it that entered the active set.
    pub new_rows: usize,
    /// Its structure grade (max gamma over its atoms) against the model's active set.
    pub max_gamma: f64,
}

/// The result of [`select`].
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionReport {
    /// Chosen structures, most new rows first (ties: higher grade first, then lower index).
    pub chosen: Vec<Chosen>,
    /// Number of candidate structures that own at least one selected row.
    pub contributing: usize,
    /// Number of candidate structures seen.
    pub candidates: usize,
    /// Human-readable remarks (fewer contributors than asked, unverified MaxVol).
    pub notes: Vec<String>,
}

/// The rows of a source that extrapolate (gamma > tol) against a fixed set of active sets; also
/// records each structure's grade (max gamma of its atoms).
struct Extrapolative<'a, 'b> {
    inner: &'b mut dyn RowSource,
    sets: &'a GlobalActiveSets,
    tol: f64,
    grade: Vec<f64>,
}

impl RowSource for Extrapolative<'_, '_> {
    fn pass(
        &mut self,
        sink: &mut dyn FnMut(Chunk<'_>) -> Result<(), UqError>,
    ) -> Result<(), UqError> {
        let (sets, tol, grade) = (self.sets, self.tol, &mut self.grade);
        let mut scratch = GammaScratch::default();
        let mut g = vec![];
        self.inner.pass(&mut |chunk: Chunk<'_>| {
            let mut out = DescriptorTable {
                per_species: Vec::with_capacity(chunk.table.per_species.len()),
            };
            for (s, sr) in chunk.table.per_species.iter().enumerate() {
                g.resize(sr.len(), 0.0);
                if !sr.is_empty() {
                    sets.species[s].gamma_batch(&sr.rows, &mut g, &mut scratch);
                }
                let mut keep = crate::uq::SpeciesRows {
                    m: sr.m,
                    ..Default::default()
                };
                for r in 0..sr.len() {
                    let k = (chunk.first + sr.structure[r]) as usize;
                    if grade.len() <= k {
                        grade.resize(k + 1, 0.0);
                    }
                    grade[k] = grade[k].max(g[r]);
                    if g[r] > tol {
                        keep.rows.extend_from_slice(sr.row(r));
                        keep.structure.push(sr.structure[r]);
                        keep.atom.push(sr.atom[r]);
                    }
                }
                out.per_species.push(keep);
            }
            sink(Chunk {
                table: &out,
                first: chunk.first,
                labels: chunk.labels,
            })
        })
    }
    fn rows_hint(&self) -> Option<u64> {
        self.inner.rows_hint()
    }
}

/// Choose up to `max_k` candidate structures for labelling: per species, MaxVol over the
/// model's active-set rows stacked with the candidates' rows; count the selected rows owned by
/// each candidate structure; take the structures with the most. Existing active rows are never
/// chosen. Only candidate atoms that extrapolate against the model's set (gamma > tol) may
/// enter: an atom inside the training domain is not worth labelling even if swaps made
/// elsewhere would later let it in. Memory stays bounded (rows stream through).
pub fn select(
    species: &[String],
    sets: &GlobalActiveSets,
    candidates: &mut dyn RowSource,
    max_k: usize,
    settings: &Settings,
    progress: bool,
) -> Result<SelectionReport, UqError> {
    settings.validate()?;
    if sets.species.len() != species.len() {
        return Err(UqError::Data(format!(
            "the active sets have {} species, the model {}",
            sets.species.len(),
            species.len()
        )));
    }
    let opts = settings.options();
    let mut groups = sets
        .species
        .iter()
        .enumerate()
        .map(|(s, set)| {
            let ids = (0..set.m as u32)
                .map(|k| RowId {
                    structure: RowId::EXISTING,
                    atom: k,
                })
                .collect();
            Ok(Group {
                species: s,
                mv: StreamingMaxVol::with_active_set(
                    set.m,
                    settings.batch,
                    opts,
                    &format!("species {}", species[s]),
                    set.rows.clone(),
                    ids,
                )
                .map_err(uq_err)?,
                verified: false,
                last: PassStats::default(),
                // A set graded in its species' row space selects there: candidates' rows are
                // projected onto that space before MaxVol.
                proj: set.proj.as_deref().cloned(),
            })
        })
        .collect::<Result<Vec<_>, UqError>>()?;
    let mut notes = vec![];
    let nm = |k: usize| format!("species {}", species[k]);
    let mut src = Extrapolative {
        inner: candidates,
        sets,
        tol: settings.tol,
        grade: vec![],
    };
    let projected = groups.iter().any(|g| g.proj.is_some());
    let route: &dyn Route = if projected { &BySpecies } else { &ByStructure };
    run_passes(
        &mut groups,
        &mut src,
        route,
        settings,
        progress,
        &mut notes,
        &nm,
    )
    .map_err(PassError::into_uq)?;
    let grade = src.grade;
    let ncand = grade.len();
    let mut owned: BTreeMap<usize, usize> = BTreeMap::new();
    for g in groups {
        for id in g.mv.into_active_rows().map_err(uq_err)?.ids {
            if id.structure != RowId::EXISTING {
                *owned.entry(id.structure as usize).or_default() += 1;
            }
        }
    }
    let mut all: Vec<Chosen> = owned
        .iter()
        .map(|(&k, &n)| Chosen {
            structure: k,
            new_rows: n,
            max_gamma: grade.get(k).copied().unwrap_or(0.0),
        })
        .collect();
    all.sort_by(|a, b| {
        b.new_rows
            .cmp(&a.new_rows)
            .then(b.max_gamma.total_cmp(&a.max_gamma))
            .then(a.structure.cmp(&b.structure))
    });
    let contributing = all.len();
    if contributing < max_k {
        notes.push(format!(
            "only {contributing} of the {ncand} candidate structures add rows to the active set (asked for {max_k}); the others lie within the training domain (gamma <= {} for all their atoms, or displaced by better candidates)",
            settings.tol
        ));
    }
    all.truncate(max_k);
    Ok(SelectionReport {
        chosen: all,
        contributing,
        candidates: ncand,
        notes,
    })
}
