//! One active set (of a species, or of a species and cluster): its rows, their inverse and
//! provenance, the grades against it ([`SpeciesActiveSet`], [`GammaScratch`]), and its arrays
//! in a model file.
//!
//! An active set of a cluster may have any rank ([`Projection`]). The rows `X_c` of a cluster
//! often span fewer than `m` dimensions: a pure-Al neighbourhood of an Al–Mg model makes every
//! function with a Mg neighbour zero, and a cluster of 100 atoms spans at most 100 of 274. Such
//! a set lives in the cluster's own row space: with `x' = x / s` (`s` the species' per-column
//! root mean square, so that the metric does not depend on the functions' units) and `Q = [V_r
//! | V_perp]` an orthonormal basis of the nonzero columns whose first `r` columns span the
//! scaled rows (eigenvectors of their Gram matrix with singular value above `RANK_EPS` times
//! the largest), MaxVol on `z = x' V_r` gives an `r × r` active set `A`. A query row is graded
//! `gamma = max(gamma_in, gamma_out)` with `gamma_in = max_j |(z A^-1)_j|` (the classic grade in
//! the row space) and `gamma_out = rho / w`, `rho = |x' - z V_r^T|` (how far the row leaves the
//! space, from the complement and the columns the cluster never uses) and `w` the smallest
//! singular value of `A` (the set's thinnest width: leaving the space by `w` counts like moving
//! one active row's worth along its thinnest direction), or, if larger, the square root of the
//! variance the rank cut dropped (which bounds every build row's own distance from the space,
//! so build rows still grade at most 1). A full-rank cluster has no projection
//! and is graded exactly as before (`gamma = max_j |(x A^-1)_j|`, the same arithmetic).

use crate::io::container::{Array, Container, ContainerError};
use crate::model::Model;
use crate::uq::maxvol::{self, RowId};
use crate::uq::persist::{bad, put_f64};
use crate::uq::screen::{LazyScreen, ScreenScratch};
use std::path::Path;
use std::sync::Arc;

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
    /// The cluster's row space when it spans fewer than all dimensions (then `m` is its rank
    /// and queries are full descriptor rows of length `proj.m`); `None`: full rank.
    pub proj: Option<Arc<Projection>>,
}

/// The row space of a rank-deficient cluster (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// Descriptor length.
    pub m: usize,
    /// Per column: `1 / s`, `s` the root mean square of the species' build rows (1 for a column
    /// that is zero on every row).
    pub inv_scale: Vec<f64>,
    /// Columns nonzero on some row of the cluster, ascending (`a` of them).
    pub cols: Vec<u32>,
    /// The other columns.
    pub dead: Vec<u32>,
    /// Row-major `a × qcols` matrix with orthonormal columns; its first `rank` columns span the
    /// cluster's scaled rows. `qcols` is `a` (the full rotation, which
    /// [`SpeciesActiveSet::square_inverse`] needs) or `rank` ([`Projection::thin`]: the distance
    /// from the space then comes from the norms, `|x|² - |Q_rᵀ x|²`).
    pub q: Vec<f64>,
    /// Columns of `q`.
    pub qcols: usize,
    /// Dimension of the row space (`r`).
    pub rank: usize,
    /// Scale of the distance from the space: the smallest singular value of the `r × r` active
    /// set, or, if larger, the bound `sqrt(sum of the dropped eigenvalues of the Gram matrix)` on
    /// any build row's own distance from the space (so that no build row grades above 1 for
    /// the directions the rank cut dropped). Before the set is built: that bound.
    pub width: f64,
}

impl Projection {
    /// Number of columns the cluster uses.
    pub fn a(&self) -> usize {
        self.cols.len()
    }

    /// Keep only the first `rank` columns of `q` (the row space): the grades stay the same up
    /// to rounding (the distance from the space comes from the norms instead of the complement
    /// coordinates), storage and the per-row projection shrink by `a / rank`, and
    /// [`SpeciesActiveSet::square_inverse`] is no longer available.
    pub fn thin(self) -> Projection {
        let (a, c, r) = (self.a(), self.qcols, self.rank);
        if c == r {
            return self;
        }
        let mut q = Vec::with_capacity(a * r);
        for k in 0..a {
            q.extend_from_slice(&self.q[k * c..k * c + r]);
        }
        Projection {
            q,
            qcols: r,
            ..self
        }
    }

    /// Project one descriptor row: `z` (length `rank`) and `rho`, the distance of the scaled
    /// row from the row space. `y` is scratch of length `a`, `xa` of length `a`.
    pub fn project(&self, b: &[f64], z: &mut [f64], xa: &mut [f64], y: &mut [f64]) -> f64 {
        let (a, c) = (self.a(), self.qcols);
        let (xa, y) = (&mut xa[..a], &mut y[..c]);
        for (k, &j) in self.cols.iter().enumerate() {
            xa[k] = b[j as usize] * self.inv_scale[j as usize];
        }
        y.fill(0.0);
        for (k, &x) in xa.iter().enumerate() {
            let q = &self.q[k * c..(k + 1) * c];
            for (yi, qi) in y.iter_mut().zip(q) {
                *yi += x * qi;
            }
        }
        z[..self.rank].copy_from_slice(&y[..self.rank]);
        self.residual(b, xa, y)
    }

    /// `rho` of a row `b` from its scaled used columns `xa` and its coordinates `y` (all `a` of
    /// them, or the `rank` in-space ones of a thin projection).
    #[inline]
    fn residual(&self, b: &[f64], xa: &[f64], y: &[f64]) -> f64 {
        let mut r2: f64 = if self.qcols == self.rank && self.rank < self.a() {
            let total: f64 = xa.iter().map(|v| v * v).sum();
            let inside: f64 = y.iter().map(|v| v * v).sum();
            let d = total - inside;
            if d.is_nan() {
                f64::NAN
            } else if d <= 4.0 * xa.len() as f64 * f64::EPSILON * total {
                // Below the rounding of the two norms (or negative): in the space.
                0.0
            } else {
                d
            }
        } else {
            y[self.rank..].iter().map(|v| v * v).sum()
        };
        for &j in &self.dead {
            let v = b[j as usize] * self.inv_scale[j as usize];
            r2 += v * v;
        }
        r2.sqrt()
    }

    /// Project rows `sel` of `rows` (row-major, rows of `m`): `z` gets `sel.len() × rank`,
    /// `rho` one number per row. `xa` and `y` are scratch.
    pub fn project_rows(
        &self,
        rows: &[f64],
        sel: &[usize],
        z: &mut Vec<f64>,
        rho: &mut Vec<f64>,
        xa: &mut Vec<f64>,
        y: &mut Vec<f64>,
    ) {
        let (m, a, c, r, n) = (self.m, self.a(), self.qcols, self.rank, sel.len());
        xa.clear();
        xa.reserve(n * a);
        for &i in sel {
            let b = &rows[i * m..(i + 1) * m];
            xa.extend(
                self.cols
                    .iter()
                    .map(|&j| b[j as usize] * self.inv_scale[j as usize]),
            );
        }
        y.resize(n * c, 0.0);
        maxvol::rows_times_rect(xa, n, a, &self.q, c, y);
        z.clear();
        rho.clear();
        for (t, &i) in sel.iter().enumerate() {
            let yt = &y[t * c..(t + 1) * c];
            z.extend_from_slice(&yt[..r]);
            rho.push(self.residual(&rows[i * m..(i + 1) * m], &xa[t * a..(t + 1) * a], yt));
        }
    }

    /// The grade from `gamma_in` and `rho` (NaN stays NaN).
    #[inline]
    pub fn combine(&self, gamma_in: f64, rho: f64) -> f64 {
        let out = rho / self.width;
        if gamma_in.is_nan() || out.is_nan() {
            f64::NAN
        } else {
            gamma_in.max(out)
        }
    }
}

impl SpeciesActiveSet {
    /// Grade of one descriptor `b` (length `m`); `acc` is scratch of length `m`.
    #[inline]
    pub fn gamma(&self, b: &[f64], acc: &mut [f64]) -> f64 {
        self.gamma_with(b, acc, &mut ProjScratch::default())
    }

    /// [`SpeciesActiveSet::gamma`] with caller-owned scratch for a projected set (no
    /// allocation once the scratch has grown).
    pub fn gamma_with(&self, b: &[f64], acc: &mut [f64], ps: &mut ProjScratch) -> f64 {
        match &self.proj {
            None => maxvol::gamma(&self.inverse, self.m, b, &mut acc[..self.m]),
            Some(p) => {
                let a = p.a();
                ps.z.resize(p.rank, 0.0);
                ps.xa.resize(a, 0.0);
                ps.y.resize(a, 0.0);
                let rho = p.project(b, &mut ps.z, &mut ps.xa, &mut ps.y);
                let g = maxvol::gamma(&self.inverse, self.m, &ps.z, &mut acc[..self.m]);
                p.combine(g, rho)
            }
        }
    }

    /// Length of the descriptor rows this set grades.
    pub fn row_len(&self) -> usize {
        self.proj.as_ref().map_or(self.m, |p| p.m)
    }

    /// The set as one square `n × n` matrix `M` (`n` = [`Self::row_len`], row-major, rows:
    /// descriptor components) whose grade `max_i |Σ_k b_k M[k][i]|` is that of a plain active-set
    /// inverse: the format of ML-PACE's `.asi` files. A full-rank set gives its inverse. A set
    /// graded in a row space gives, per column: the `r` in-space columns (scaling, rotation and
    /// inverse composed), then one column per complement direction and per column no build
    /// row uses, scaled by `1 / width`. Its grade equals [`Self::gamma`] for rows in the space
    /// and otherwise takes the distance from the space as the largest component of the residual
    /// rather than its length (smaller by at most a factor `sqrt(n - r)`).
    pub fn square_inverse(&self) -> Vec<f64> {
        let Some(p) = &self.proj else {
            return self.inverse.clone();
        };
        let (n, a, r) = (p.m, p.a(), p.rank);
        debug_assert_eq!(self.m, r);
        assert_eq!(
            p.qcols, a,
            "square_inverse needs the full rotation (not a thin projection)"
        );
        let mut out = vec![0.0; n * n];
        for (k, &j) in p.cols.iter().enumerate() {
            let j = j as usize;
            let s = p.inv_scale[j];
            let q = &p.q[k * a..(k + 1) * a];
            let row = &mut out[j * n..(j + 1) * n];
            // In-space columns: z = (b ∘ inv_scale)[cols] · Q[:, :r], grade z · inverse.
            for (t, &qt) in q[..r].iter().enumerate() {
                let inv = &self.inverse[t * r..(t + 1) * r];
                for (o, &v) in row[..r].iter_mut().zip(inv) {
                    *o += s * qt * v;
                }
            }
            // Complement directions of the used columns.
            for (o, &qt) in row[r..a].iter_mut().zip(&q[r..]) {
                *o = s * qt / p.width;
            }
        }
        // Columns no build row uses: their own direction each.
        for (d, &j) in p.dead.iter().enumerate() {
            let j = j as usize;
            out[j * n + a + d] = p.inv_scale[j] / p.width;
        }
        out
    }

    /// Grades of many rows (row-major), through the single-precision screen (the same values
    /// as [`SpeciesActiveSet::gamma`] up to rounding, at about half the cost of an f64 GEMM).
    pub fn gamma_batch(&self, rows: &[f64], out: &mut [f64], scratch: &mut GammaScratch) {
        if self.proj.is_some() {
            let sel: Vec<usize> = (0..out.len()).collect();
            return self.gamma_selected(rows, &sel, out, &mut scratch.screen, &mut scratch.proj);
        }
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
        screen_scratch: &mut ScreenScratch,
        ps: &mut ProjScratch,
    ) {
        let screen = self.screen.get(&self.rows, &self.inverse, self.m);
        let Some(p) = &self.proj else {
            return screen.grades(rows, Some(sel), out, screen_scratch);
        };
        p.project_rows(rows, sel, &mut ps.z, &mut ps.rho, &mut ps.xa, &mut ps.y);
        screen.grades(&ps.z, None, out, screen_scratch);
        for (o, &rho) in out.iter_mut().zip(&ps.rho) {
            *o = p.combine(*o, rho);
        }
    }

    /// A set from a MaxVol result on rows projected by `proj` (its width is set here).
    pub(super) fn from_rows(a: maxvol::ActiveRows, proj: Option<Projection>) -> Self {
        let proj = proj.map(|mut p| {
            p.width = smallest_singular_value(&a.rows, a.m).max(p.width);
            Arc::new(p)
        });
        SpeciesActiveSet {
            m: a.m,
            rows: a.rows,
            inverse: a.inverse,
            source: a.ids,
            cond: a.cond,
            screen: LazyScreen::default(),
            proj,
        }
    }

    pub(super) fn save(&self, c: &mut Container, prefix: &str) {
        let m = self.m;
        if let Some(p) = &self.proj {
            let a = p.a();
            put_f64(
                c,
                &format!("{prefix}.proj.inv_scale"),
                vec![p.m],
                &p.inv_scale,
            );
            c.put(
                &format!("{prefix}.proj.cols"),
                vec![a],
                Array::U32(p.cols.clone()),
            );
            put_f64(c, &format!("{prefix}.proj.q"), vec![a, p.qcols], &p.q);
            put_f64(c, &format!("{prefix}.proj.width"), vec![1], &[p.width]);
        }
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
        let proj = Projection::load(path, c, prefix, m)?;
        let m = proj.as_ref().map_or(m, |p| p.rank);
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
            proj: proj.map(Arc::new),
        })
    }
}

impl Projection {
    /// The projection stored under `prefix` (`None` for a full-rank set), checked: the columns
    /// ascending and below `m`, scales finite and positive, `q` orthogonal, the width positive.
    fn load(
        path: &Path,
        c: &Container,
        prefix: &str,
        m: usize,
    ) -> Result<Option<Projection>, ContainerError> {
        let qn = format!("{prefix}.proj.q");
        if !c.arrays.contains_key(&qn) {
            return Ok(None);
        }
        let inv_scale = c.f64(path, &format!("{prefix}.proj.inv_scale"), m)?;
        let cn = format!("{prefix}.proj.cols");
        let cols = c.u32_any(path, &cn)?;
        if cols.is_empty()
            || cols.windows(2).any(|w| w[0] >= w[1])
            || cols.iter().any(|&j| j as usize >= m)
        {
            return Err(bad(
                path,
                format!("array '{cn}' must list distinct columns below {m} in ascending order"),
            ));
        }
        let a = cols.len();
        let width = c.f64(path, &format!("{prefix}.proj.width"), 1)?[0];
        let rn = format!("{prefix}.rows");
        let rank = match c.arrays.get(&rn) {
            Some((shape, _)) if shape.len() == 2 && shape[0] == shape[1] => shape[0],
            _ => return Err(bad(path, format!("array '{rn}' must be square"))),
        };
        if rank == 0 || rank > a {
            return Err(bad(
                path,
                format!("array '{rn}': rank {rank} for a projection onto {a} columns"),
            ));
        }
        // The full rotation (a × a) or its row-space columns (a × rank).
        let qcols = match c.arrays.get(&qn) {
            Some((shape, _)) if shape.len() == 2 && shape[0] == a && shape[1] == rank => rank,
            _ => a,
        };
        let q = c.f64(path, &qn, a * qcols)?;
        if inv_scale.iter().any(|v| !(v.is_finite() && *v > 0.0))
            || q.iter().any(|v| !v.is_finite())
            || !(width.is_finite() && width > 0.0)
        {
            return Err(bad(
                path,
                format!(
                    "the projection '{prefix}.proj.*' has non-finite or non-positive scales or width (file corrupt or edited)"
                ),
            ));
        }
        // Orthonormality probe (O(a qcols)): Q^T (Q x) = x.
        let x: Vec<f64> = (0..qcols).map(|j| 1.0 + (j % 5) as f64 / 5.0).collect();
        let y: Vec<f64> = (0..a)
            .map(|i| (0..qcols).map(|j| q[i * qcols + j] * x[j]).sum())
            .collect();
        let mut resid = 0.0f64;
        for j in 0..qcols {
            let back: f64 = (0..a).map(|i| q[i * qcols + j] * y[i]).sum();
            resid = resid.max((back - x[j]).abs());
        }
        if resid.is_nan() || resid > 1e-6 {
            return Err(bad(
                path,
                format!(
                    "array '{qn}' is not orthogonal (residual {resid:.1e}): the file was edited or corrupted"
                ),
            ));
        }
        let dead = (0..m as u32)
            .filter(|j| cols.binary_search(j).is_err())
            .collect();
        Ok(Some(Projection {
            m,
            inv_scale,
            cols,
            dead,
            q,
            qcols,
            rank,
            width,
        }))
    }
}

/// Smallest singular value of the row-major `m × m` matrix `a`.
pub(super) fn smallest_singular_value(a: &[f64], m: usize) -> f64 {
    if m == 0 {
        return 0.0;
    }
    let mat = nalgebra::DMatrix::from_row_slice(m, m, a);
    mat.singular_values().min()
}

/// Scratch of the projected grades.
#[derive(Clone, Debug, Default)]
pub struct ProjScratch {
    z: Vec<f64>,
    rho: Vec<f64>,
    xa: Vec<f64>,
    y: Vec<f64>,
}

/// Caller-owned scratch for the per-atom grades (no allocation per call).
#[derive(Clone, Debug, Default)]
pub struct GammaScratch {
    pub(super) acc: Vec<f64>,
    pub(super) z: Vec<f64>,
    pub(super) tmp: Vec<f64>,
    pub(super) idx: Vec<usize>,
    pub(super) screen: ScreenScratch,
    pub(super) proj: ProjScratch,
}

impl GammaScratch {
    /// Scratch for rows of up to `m` numbers.
    pub fn new(m: usize) -> Self {
        GammaScratch {
            acc: vec![0.0; m],
            z: vec![0.0; 2 * m],
            tmp: vec![],
            idx: vec![],
            screen: ScreenScratch::default(),
            proj: ProjScratch::default(),
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
            self.z.resize(2 * m, 0.0);
        }
    }
}
