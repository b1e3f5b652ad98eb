//! Global active sets (the `gamma` estimator, Podryabinkin & Shapeev): per species, the MaxVol active
//! set of all build rows; build, grades and persistence.

use super::species::{GammaScratch, SpeciesActiveSet};
use super::{
    BuildInfo, ByStructure, Group, PassError, RowSource, Settings, TableSource, condition_notes,
    run_passes, uq_err,
};
use crate::io::container::{Container, ContainerError};
use crate::model::Model;
use crate::uq::maxvol::{PassStats, StreamingMaxVol};
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
        self.species[s].gamma(b, &mut scratch.acc)
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

pub(super) fn build_global(
    names: &[String],
    ms: &[usize],
    source: &mut dyn RowSource,
    settings: &Settings,
    progress: bool,
) -> Result<GlobalActiveSets, UqError> {
    settings.validate()?;
    let opts = settings.options();
    let mut groups = names
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
        .collect::<Result<Vec<_>, UqError>>()?;
    let mut notes = vec![];
    let nm = |k: usize| format!("species {}", names[k]);
    let passes = run_passes(
        &mut groups,
        source,
        &ByStructure,
        settings,
        progress,
        &mut notes,
        &nm,
    )
    .map_err(PassError::into_uq)?;
    let atoms = groups.iter().map(|g| g.last.seen).collect();
    let verified = groups.iter().map(|g| g.verified).collect();
    let species: Vec<SpeciesActiveSet> = groups
        .into_iter()
        .map(|g| {
            g.mv.into_active_rows()
                .map(SpeciesActiveSet::from_rows_full)
        })
        .collect::<Result<_, _>>()
        .map_err(uq_err)?;
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
