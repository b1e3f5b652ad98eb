//! One active set (of a species, or of a species and cluster): its rows, their inverse and
//! provenance, the grades against it ([`SpeciesActiveSet`], [`GammaScratch`]), and its arrays
//! in a model file.

use crate::io::container::{Array, Container, ContainerError};
use crate::model::Model;
use crate::uq::maxvol::{self, RowId};
use crate::uq::persist::{bad, put_f64};
use crate::uq::screen::{LazyScreen, ScreenScratch};
use std::path::Path;

/// The active set of one species (or one species and cluster).
#[derive(Clone, Debug, PartialEq)]
pub struct SpeciesActiveSet {
    /// Row length `m_s`.
    pub m: usize,
    /// Row-major `m × m`: the descriptors `B` of the active atoms.
    pub rows: Vec<f64>,
    /// Row-major `m × m` inverse of `rows`.
    pub inverse: Vec<f64>,
    /// Which atom each active row came from (structure index in the build data, atom index).
    pub source: Vec<RowId>,
    /// 1-norm condition number of the column-scaled active-set matrix.
    pub cond: f64,
    /// Single-precision screen of the batched grades (derived from `rows` and `inverse`, built
    /// on first use: do not change them after grading).
    pub screen: LazyScreen,
}

impl SpeciesActiveSet {
    /// Grade of one descriptor `b` (length `m`); `acc` is scratch of length `m`.
    #[inline]
    pub fn gamma(&self, b: &[f64], acc: &mut [f64]) -> f64 {
        maxvol::gamma(&self.inverse, self.m, b, &mut acc[..self.m])
    }

    /// Grades of many rows (row-major), through the single-precision screen (the same values
    /// as [`SpeciesActiveSet::gamma`] up to rounding, at about half the cost of an f64 GEMM).
    pub fn gamma_batch(&self, rows: &[f64], out: &mut [f64], scratch: &mut GammaScratch) {
        self.screen.get(&self.rows, &self.inverse, self.m).grades(
            rows,
            None,
            out,
            &mut scratch.screen,
        )
    }

    /// Grades of the rows `sel` of `rows` (row-major) into `out` (one per selected row).
    pub fn gamma_selected(
        &self,
        rows: &[f64],
        sel: &[usize],
        out: &mut [f64],
        scratch: &mut ScreenScratch,
    ) {
        self.screen
            .get(&self.rows, &self.inverse, self.m)
            .grades(rows, Some(sel), out, scratch)
    }

    pub(super) fn from_rows(a: maxvol::ActiveRows) -> Self {
        SpeciesActiveSet {
            m: a.m,
            rows: a.rows,
            inverse: a.inverse,
            source: a.ids,
            cond: a.cond,
            screen: LazyScreen::default(),
        }
    }

    pub(super) fn save(&self, c: &mut Container, prefix: &str) {
        let m = self.m;
        put_f64(c, &format!("{prefix}.rows"), vec![m, m], &self.rows);
        put_f64(c, &format!("{prefix}.inverse"), vec![m, m], &self.inverse);
        c.put(
            &format!("{prefix}.source"),
            vec![m, 2],
            Array::U32(
                self.source
                    .iter()
                    .flat_map(|r| [r.structure, r.atom])
                    .collect(),
            ),
        );
    }

    pub(super) fn load(
        path: &Path,
        c: &Container,
        prefix: &str,
        m: usize,
    ) -> Result<Self, ContainerError> {
        let rn = format!("{prefix}.rows");
        let inn = format!("{prefix}.inverse");
        let sn = format!("{prefix}.source");
        let rows = c.f64(path, &rn, m * m)?;
        let inverse = c.f64(path, &inn, m * m)?;
        let src = c.u32_any(path, &sn)?;
        if src.len() != 2 * m {
            return Err(bad(
                path,
                format!("array '{sn}' has {} numbers, expected {}", src.len(), 2 * m),
            ));
        }
        for (name, v) in [(&rn, &rows), (&inn, &inverse)] {
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(
                    path,
                    format!("array '{name}' has non-finite values (file corrupt or edited)"),
                ));
            }
        }
        // A cheap consistency probe (O(m^2)): rows · (inverse · x) must give back x.
        let x: Vec<f64> = (0..m).map(|j| 1.0 + (j % 7) as f64 / 7.0).collect();
        let y: Vec<f64> = (0..m)
            .map(|i| (0..m).map(|j| inverse[i * m + j] * x[j]).sum())
            .collect();
        let mut resid = 0.0f64;
        for i in 0..m {
            let z: f64 = (0..m).map(|j| rows[i * m + j] * y[j]).sum();
            resid = resid.max((z - x[i]).abs());
        }
        if resid.is_nan() || resid > 1e-4 {
            return Err(bad(
                path,
                format!(
                    "array '{inn}' is not the inverse of '{rn}' (residual {resid:.1e}): the file was edited or corrupted; rebuild the active set with `aceuq activeset`"
                ),
            ));
        }
        let source = src
            .chunks_exact(2)
            .map(|p| RowId {
                structure: p[0],
                atom: p[1],
            })
            .collect();
        let cond = maxvol::condition(&rows, &inverse, m);
        Ok(SpeciesActiveSet {
            m,
            rows,
            inverse,
            source,
            cond,
            screen: LazyScreen::default(),
        })
    }
}

/// Caller-owned scratch for the per-atom grades (no allocation per call).
#[derive(Clone, Debug, Default)]
pub struct GammaScratch {
    pub(super) acc: Vec<f64>,
    pub(super) z: Vec<f64>,
    pub(super) tmp: Vec<f64>,
    pub(super) idx: Vec<usize>,
    pub(super) screen: ScreenScratch,
}

impl GammaScratch {
    /// Scratch for rows of up to `m` numbers.
    pub fn new(m: usize) -> Self {
        GammaScratch {
            acc: vec![0.0; m],
            z: vec![0.0; m],
            tmp: vec![],
            idx: vec![],
            screen: ScreenScratch::default(),
        }
    }
    /// Scratch for every species of a model.
    pub fn for_model(model: &Model) -> Self {
        Self::new(
            (0..model.nspecies())
                .map(|s| model.nfuncs(s))
                .max()
                .unwrap_or(0),
        )
    }
    pub(super) fn ensure(&mut self, m: usize) {
        if self.acc.len() < m {
            self.acc.resize(m, 0.0);
            self.z.resize(m, 0.0);
        }
    }
}
