//! Global active sets (the `gamma` estimator, Podryabinkin & Shapeev): per species, the MaxVol active
//! set of all build rows; build, grades and persistence.

use super::rowspace::{Gram, RANK_EPS, ROWS_PER_DIMENSION, row_space_note};
use super::species::{GammaScratch, SpeciesActiveSet};
use super::{
    BuildInfo, BySpecies, ByStructure, Chunk, Group, PassError, RowSource, Settings, TableSource,
    condition_notes, run_passes, uq_err,
};
use crate::io::container::{Container, ContainerError};
use crate::model::Model;
use crate::uq::maxvol::{MaxVolError, PassStats, StreamingMaxVol};
use crate::uq::persist::{bad, check_species, get_meta_lenient, put_meta};
use crate::uq::{DescriptorTable, UqError};
use std::path::Path;

/// Per-species MaxVol active sets of the training data (the `gamma` estimator).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlobalActiveSets {
    /// One active set per species (model order).
    pub species: Vec<SpeciesActiveSet>,
    /// How it was built.
    pub info: BuildInfo,
}

const GLOBAL: &str = "gamma";

impl GlobalActiveSets {
    /// Sets given by their inverses alone (`.asi` files: per species `(m, M)`, `M` row-major
    /// `m × m`): the active rows are `M⁻¹`, where they came from is unknown. Enough to grade and
    /// to select against ([`super::select`]).
    pub fn from_inverses(
        names: &[String],
        inverses: &[(usize, Vec<f64>)],
    ) -> Result<GlobalActiveSets, UqError> {
        let species = names
            .iter()
            .zip(inverses)
            .map(|(name, (m, inv))| {
                let m = *m;
                // Rows of M (projections) differ in size by orders of magnitude: invert D M,
                // D scaling every row to a largest entry of 1, then A = (D M)⁻¹ D.
                let d: Vec<f64> = inv
                    .chunks_exact(m)
                    .map(|r| {
                        let x = r.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                        if x > 0.0 { 1.0 / x } else { 1.0 }
                    })
                    .collect();
                let scaled: Vec<f64> = inv.iter().enumerate().map(|(k, v)| v * d[k / m]).collect();
                let a = crate::uq::maxvol::invert(&scaled, m, 1e-14, &format!("species {name}"))
                    .map_err(uq_err)?;
                let rows: Vec<f64> = a
                    .inv
                    .iter()
                    .enumerate()
                    .map(|(k, v)| v * d[k % m])
                    .collect();
                Ok(SpeciesActiveSet {
                    m,
                    rows,
                    inverse: inv.clone(),
                    source: vec![],
                    cond: a.cond,
                    screen: Default::default(),
                    proj: None,
                })
            })
            .collect::<Result<Vec<_>, UqError>>()?;
        Ok(GlobalActiveSets {
            info: BuildInfo {
                species: names.to_vec(),
                ..Default::default()
            },
            species,
        })
    }

    /// Build from a descriptor table in memory.
    pub fn build(
        model: &Model,
        table: &DescriptorTable,
        settings: &Settings,
        progress: bool,
    ) -> Result<Self, UqError> {
        let mut src = TableSource { table, labels: &[] };
        Self::build_from_source(model, &mut src, settings, progress)
    }

    /// Build from rows streamed by `source` (several passes).
    pub fn build_from_source(
        model: &Model,
        source: &mut dyn RowSource,
        settings: &Settings,
        progress: bool,
    ) -> Result<Self, UqError> {
        let ms: Vec<usize> = (0..model.nspecies()).map(|s| model.nfuncs(s)).collect();
        build_global(&model.species, &ms, source, settings, progress)
    }

    /// Grade of one atom of species `s` with descriptor `b`.
    #[inline]
    pub fn gamma(&self, s: usize, b: &[f64], scratch: &mut GammaScratch) -> f64 {
        scratch.ensure(b.len());
        self.species[s].gamma_with(b, &mut scratch.acc, &mut scratch.proj)
    }

    /// Grades of many atoms of species `s` (row-major rows), GEMM.
    pub fn gamma_batch(&self, s: usize, rows: &[f64], out: &mut [f64], scratch: &mut GammaScratch) {
        self.species[s].gamma_batch(rows, out, scratch)
    }

    /// Grades of every row of a descriptor table, per species.
    pub fn gamma_table(&self, table: &DescriptorTable) -> Vec<Vec<f64>> {
        table
            .per_species
            .iter()
            .enumerate()
            .map(|(s, sr)| {
                let mut out = vec![0.0; sr.len()];
                if !sr.is_empty() {
                    self.species[s].gamma_batch(&sr.rows, &mut out, &mut GammaScratch::default());
                }
                out
            })
            .collect()
    }

    /// Store into a model file container.
    pub fn save(&self, c: &mut Container) {
        for (s, set) in self.species.iter().enumerate() {
            set.save(c, &format!("uq.{GLOBAL}.{s}"));
        }
        put_meta(c, GLOBAL, &self.info);
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let Some(info) = get_meta_lenient::<BuildInfo>(path, c, GLOBAL)? else {
            if c.arrays.keys().any(|k| k.starts_with("uq.gamma.")) {
                return Err(bad(
                    path,
                    "arrays 'uq.gamma.*' are present but the [uq.gamma] metadata is missing (file edited?)",
                ));
            }
            return Ok(None);
        };
        check_species(path, GLOBAL, &info.species, model)?;
        let species = (0..model.nspecies())
            .map(|s| SpeciesActiveSet::load(path, c, &format!("uq.{GLOBAL}.{s}"), model.nfuncs(s)))
            .collect::<Result<_, _>>()?;
        Ok(Some(GlobalActiveSets { species, info }))
    }
}

/// The atoms seen, whether certified, and the active set of each group (species order).
type Finished = (Vec<usize>, Vec<bool>, Vec<SpeciesActiveSet>);

fn finish(groups: Vec<Group>) -> Result<Finished, UqError> {
    let atoms = groups.iter().map(|g| g.last.seen).collect();
    let verified = groups.iter().map(|g| g.verified).collect();
    let species = groups
        .into_iter()
        .map(|g| {
            g.mv.into_active_rows()
                .map(|rows| SpeciesActiveSet::from_rows(rows, g.proj))
        })
        .collect::<Result<_, _>>()
        .map_err(uq_err)?;
    Ok((atoms, verified, species))
}

/// Whether a MaxVol failure means the rows span fewer dimensions than the basis (repaired by
/// grading in the rows' own space) rather than a numerical breakdown.
fn is_deficient(e: &MaxVolError) -> bool {
    matches!(
        e,
        MaxVolError::TooFewRows { .. }
            | MaxVolError::ZeroColumn { .. }
            | MaxVolError::RankDeficient { .. }
    )
}

/// Per-species active sets. A species with at least `ROWS_PER_DIMENSION × m` atoms spanning
/// every descriptor dimension gets the classic `m × m` set. One with fewer atoms (an alloy's
/// species with about a thousand atoms against 958 functions), or whose atoms span fewer
/// dimensions (functions no atom uses) is graded in its own row space, as the clusters
/// of [`super::ClusteredActiveSets`] are: at most one dimension per `ROWS_PER_DIMENSION` atoms,
/// `gamma = max(in-space grade, distance from the space / the set's width)`. The build says so
/// in its notes. Only a species with fewer than `min_cluster_atoms` atoms is an error.
pub fn build_any_rank(
    names: &[String],
    ms: &[usize],
    source: &mut dyn RowSource,
    settings: &Settings,
    progress: bool,
) -> Result<GlobalActiveSets, UqError> {
    build_global(names, ms, source, settings, progress)
}

/// [`build_any_rank`] (what [`GlobalActiveSets::build_from_source`] does for a model).
pub(super) fn build_global(
    names: &[String],
    ms: &[usize],
    source: &mut dyn RowSource,
    settings: &Settings,
    progress: bool,
) -> Result<GlobalActiveSets, UqError> {
    settings.validate()?;
    let mut notes = vec![];
    let nm = |k: usize| format!("species {}", names[k]);
    let mut groups = full_rank_groups(names, ms, settings)?;
    let (groups, passes) = match run_passes(
        &mut groups,
        source,
        &ByStructure,
        settings,
        progress,
        &mut notes,
        &nm,
    ) {
        Ok(p) => {
            // A full-rank set from fewer than ROWS_PER_DIMENSION atoms per function is thin
            // (In-P, 1338 atoms for 958 functions: validation atoms graded up to 680): such a
            // species is graded in its row space, as a cluster of that size is.
            let thin: Vec<usize> = groups
                .iter()
                .filter(|g| g.last.seen < ROWS_PER_DIMENSION * ms[g.species])
                .map(|g| g.species)
                .collect();
            if thin.is_empty() {
                (groups, p)
            } else {
                notes.clear();
                projected_build(names, ms, source, settings, progress, &thin, &mut notes)?
            }
        }
        Err(PassError::Groups(errs)) if errs.iter().all(|(_, e)| is_deficient(e)) => {
            notes.clear();
            let failed: Vec<usize> = errs.iter().map(|(g, _)| *g).collect();
            projected_build(names, ms, source, settings, progress, &failed, &mut notes)?
        }
        Err(e) => return Err(e.into_uq()),
    };
    let (mut atoms, mut verified, mut species) = finish(groups)?;
    // A full-rank set found by MaxVol can still be singular to working precision: rows that
    // span the basis only through directions of round-off size (measured: pacemaker's Cu-I
    // example potential on 13 varied Cu structures, condition number 3.8e17, training atoms
    // graded up to 1.3, and grades that changed by a third with the atom numbering). Such a
    // species is graded in its row space, whose rank cut drops those directions.
    let singular: Vec<usize> = species
        .iter()
        .enumerate()
        .filter(|(_, x)| x.proj.is_none() && (x.cond.is_nan() || x.cond > settings.max_condition))
        .map(|(s, _)| s)
        .collect();
    let passes = if singular.is_empty() {
        passes
    } else {
        notes.clear();
        for &s in &singular {
            notes.push(format!(
                "species {}: the full set MaxVol found is singular to working precision (condition number {:.1e} after column scaling), so it is graded in its row space",
                names[s], species[s].cond
            ));
        }
        // Species already graded in their row space stay there.
        let projected: Vec<usize> = (0..species.len())
            .filter(|s| species[*s].proj.is_some() || singular.contains(s))
            .collect();
        let (groups, again) = projected_build(
            names, ms, source, settings, progress, &projected, &mut notes,
        )?;
        let passes = passes + again;
        (atoms, verified, species) = finish(groups)?;
        passes
    };
    let named: Vec<(String, &SpeciesActiveSet)> = species
        .iter()
        .enumerate()
        .map(|(s, x)| (nm(s), x))
        .collect();
    condition_notes(&named, &mut notes);
    Ok(GlobalActiveSets {
        species,
        info: BuildInfo {
            tol: settings.tol,
            species: names.to_vec(),
            atoms,
            passes,
            verified,
            data: vec![],
            notes,
        },
    })
}

/// The build of [`build_global`] when the species `failed` admit no full-rank set, or too few
/// atoms for one (fewer than `ROWS_PER_DIMENSION` per function): their rows
/// Gram matrices (one pass), a projection onto the space each spans, and MaxVol there; the
/// tolerance for "spans" is relaxed by 100x while MaxVol still finds the rows rank-deficient.
fn projected_build(
    names: &[String],
    ms: &[usize],
    source: &mut dyn RowSource,
    settings: &Settings,
    progress: bool,
    failed: &[usize],
    notes: &mut Vec<String>,
) -> Result<(Vec<Group>, usize), UqError> {
    let ns = ms.len();
    let mut grams: Vec<Option<Gram>> = (0..ns)
        .map(|s| failed.contains(&s).then(|| Gram::new(ms[s])))
        .collect();
    let ones: Vec<Vec<f64>> = ms.iter().map(|&m| vec![1.0; m]).collect();
    source.pass(&mut |chunk: Chunk<'_>| {
        for (s, sr) in chunk.table.per_species.iter().enumerate() {
            if let Some(g) = grams[s].as_mut() {
                for r in 0..sr.len() {
                    g.push(sr.row(r), &ones[s]);
                }
            }
        }
        Ok(())
    })?;
    let mut inv_rms: Vec<Vec<f64>> = ones.clone();
    for (s, g) in grams.iter_mut().enumerate() {
        if let Some(g) = g {
            settings.enough_atoms(&names[s], g.n)?;
            inv_rms[s] = g.inv_rms();
            g.rescale(&inv_rms[s]);
        }
    }
    let opts = settings.options();
    let mut eps: Vec<Option<f64>> = (0..ns)
        .map(|s| failed.contains(&s).then_some(RANK_EPS))
        .collect();
    loop {
        let mut groups = vec![];
        for s in 0..ns {
            let what = format!("species {}", names[s]);
            let proj = match (eps[s], grams[s].as_mut()) {
                (Some(e), Some(g)) => {
                    let m = ms[s];
                    let p = g.projection(&inv_rms[s], e, g.supported_rank());
                    let p = p.unwrap_or_else(|| {
                        g.projection(&inv_rms[s], e, m - 1)
                            .expect("a rank below m gives a projection")
                    });
                    if p.rank == 0 {
                        return Err(UqError::Data(format!(
                            "{what}: every descriptor row is zero (atoms without neighbours?): no active set can be built"
                        )));
                    }
                    Some(p)
                }
                _ => None,
            };
            let dim = proj.as_ref().map_or(ms[s], |p| p.rank);
            groups.push(Group {
                species: s,
                mv: StreamingMaxVol::new(dim, settings.batch, opts, &what).map_err(uq_err)?,
                verified: false,
                last: PassStats::default(),
                proj,
            });
        }
        let nm = |k: usize| format!("species {}", names[k]);
        let mut pass_notes = vec![];
        match run_passes(
            &mut groups,
            source,
            &BySpecies,
            settings,
            progress,
            &mut pass_notes,
            &nm,
        ) {
            Ok(passes) => {
                for (s, g) in groups.iter().enumerate() {
                    if let (Some(e), Some(p), Some(gram)) = (eps[s], &g.proj, &grams[s]) {
                        notes.push(format!(
                            "{}; more structures with this species, or a smaller basis, give a full set",
                            row_space_note(&format!("species {}", names[s]), gram.n, p, e)
                        ));
                    }
                }
                notes.extend(pass_notes);
                return Ok((groups, passes));
            }
            Err(PassError::Groups(errs))
                if errs
                    .iter()
                    .all(|(g, e)| is_deficient(e) && eps[*g].is_some_and(|x| x < 1e-2)) =>
            {
                for (g, _) in &errs {
                    eps[*g] = eps[*g].map(|e| e * 100.0);
                }
            }
            Err(e) => return Err(e.into_uq()),
        }
    }
}

fn full_rank_groups(
    names: &[String],
    ms: &[usize],
    settings: &Settings,
) -> Result<Vec<Group>, UqError> {
    let opts = settings.options();
    names
        .iter()
        .zip(ms)
        .enumerate()
        .map(|(s, (name, &m))| {
            Ok(Group {
                species: s,
                mv: StreamingMaxVol::new(m, settings.batch, opts, &format!("species {name}"))
                    .map_err(uq_err)?,
                verified: false,
                last: PassStats::default(),
                proj: None,
            })
        })
        .collect::<Result<Vec<_>, UqError>>()
}
