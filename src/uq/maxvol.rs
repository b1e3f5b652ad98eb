//! MaxVol (Goreinov et al.; Podryabinkin & Shapeev): the `m` rows of a tall `n × m` matrix `X` whose square submatrix `A`
//! has (locally) maximal `|det|`, and the extrapolation grade `gamma = max_j |(b A^{-1})_j|`.
//!
//! - [`maxvol`]: the dense algorithm on rows in memory. Initial pivots from an LU factorization
//!   with partial pivoting (faer); `C = X A^{-1}`; while `max |C_ij| > tol`, swap row `i` into
//!   position `j` and update `C` with a rank-1 correction (`O(n m)` per swap). Each swap multiplies
//!   `|det A|` by `|C_ij| > tol`, so the search terminates; at the end every row of `X` has
//!   `gamma <= tol`, i.e. no single swap grows the volume by more than the factor `tol`.
//! - [`StreamingMaxVol`]: the cumulative batched version for data that does not fit in memory
//!   (~1e6 rows of `m ~ 300`): rows arrive in chunks; rows with `gamma <= tol` against the current
//!   set are dropped at once, the others are buffered and, every `batch` rows, MaxVol runs on
//!   (active set ∪ buffer). Passes over the data repeat until a pass that started from a full-rank
//!   set makes no swap; that pass certifies `gamma <= tol` for every row.
//! - [`gamma`] (one row, allocation-free with a caller-owned accumulator) and [`gamma_batch`]
//!   (GEMM `B A^{-1}` with faer, then the row-wise max).
//!
//! `gamma` and the active set are invariant to scaling the columns of `X` (basis functions of very
//! different magnitudes are harmless); rank and singularity tests therefore use pivots relative
//! to each column's largest entry.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// MaxVol stopping rules and numerical thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Stop when every `|C_ij| <= tol`. Must exceed 1 (at 1 MaxVol could cycle between sets of
    /// equal volume); 1.01 is the usual choice.
    pub tol: f64,
    /// Maximum number of row swaps in one MaxVol run.
    pub max_iters: usize,
    /// A pivot smaller than this fraction of its column's largest entry means the rows are
    /// (numerically) rank-deficient.
    pub rank_tol: f64,
    /// Streaming only: rows with gamma above this (against the current set) enter a MaxVol
    /// batch. At most `tol`; lower values also keep rows just inside the boundary, which swaps
    /// elsewhere could push out, and so save passes over the data.
    pub candidate: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tol: 1.01,
            max_iters: 300,
            rank_tol: 1e-10,
            candidate: 1.01,
        }
    }
}

impl Options {
    /// Check the settings.
    pub fn validate(&self) -> Result<(), MaxVolError> {
        if !(self.tol.is_finite() && self.tol > 1.0) {
            return Err(MaxVolError::Settings(format!(
                "tol = {} must be a finite number > 1 (1.01 is the usual value)",
                self.tol
            )));
        }
        if self.max_iters == 0 {
            return Err(MaxVolError::Settings("max_iters must be at least 1".into()));
        }
        if !(self.rank_tol.is_finite() && self.rank_tol > 0.0 && self.rank_tol < 1.0) {
            return Err(MaxVolError::Settings(format!(
                "rank_tol = {} must be in (0, 1) (1e-10 is the default)",
                self.rank_tol
            )));
        }
        if !(self.candidate.is_finite() && self.candidate > 0.0 && self.candidate <= self.tol) {
            return Err(MaxVolError::Settings(format!(
                "candidate = {} must be in (0, tol = {}]",
                self.candidate, self.tol
            )));
        }
        Ok(())
    }
}

/// Errors of MaxVol. `what` names the rows ("species Li", "species Li, cluster 2").
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MaxVolError {
    /// Fewer rows than columns.
    #[error(
        "under-determined: {what} has {n} {}, needs {m} (the basis size): add data or use a smaller basis",
        atoms(.n)
    )]
    TooFewRows { what: String, n: usize, m: usize },
    /// A basis function that is zero on every row.
    #[error(
        "{what}: basis function {col} (0-based) is zero (or round-off, below 1e-10 of the largest function) for all {n} atoms, so no active set exists: add data where it is non-zero (other neighbour species or distances) or use a smaller basis"
    )]
    ZeroColumn { what: String, col: usize, n: usize },
    /// The rows span fewer than `m` dimensions.
    #[error(
        "{what}: the {n} atoms' descriptors span only about {rank} of the {m} basis dimensions (smallest LU pivot {rel:.1e} of its column scale, threshold {rank_tol:.0e}): the data lack variety (e.g. a perfect crystal where all atoms look alike, or a neighbour species that rarely occurs near this one); add more varied data or use a smaller basis"
    )]
    RankDeficient {
        what: String,
        n: usize,
        m: usize,
        rank: usize,
        rel: f64,
        rank_tol: f64,
    },
    /// A row with NaN or infinity.
    #[error(
        "{what}: the descriptor of {row} is not finite (NaN or infinity); check that structure"
    )]
    NotFinite { what: String, row: String },
    /// The active-set matrix cannot be inverted reliably.
    #[error(
        "{what}: the active-set matrix is singular to working precision ({detail}); gamma cannot be computed reliably: add more varied data or use a smaller basis"
    )]
    Singular { what: String, detail: String },
    /// Invalid options.
    #[error("MaxVol settings: {0}")]
    Settings(String),
}

fn atoms(n: &usize) -> &'static str {
    if *n == 1 { "atom" } else { "atoms" }
}

/// Where a row came from: structure index (in the data it was built from) and atom index.
/// `structure == u32::MAX` marks a row carried over from an existing active set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowId {
    pub structure: u32,
    pub atom: u32,
}

impl RowId {
    /// Marker structure index for rows of an existing active set.
    ///
    /// cbindgen:ignore
    pub const EXISTING: u32 = u32::MAX;
}

impl std::fmt::Display for RowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.structure == Self::EXISTING {
            write!(f, "active-set row {}", self.atom)
        } else {
            write!(f, "structure {} atom {}", self.structure, self.atom)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dense kernels
// ---------------------------------------------------------------------------------------------

/// Rows per GEMM block in [`gamma_batch`] and the streaming pre-filter (bounds scratch memory).
const BLOCK: usize = 2048;

fn par_for(flops: f64) -> Par {
    if flops > 4e6 && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// `out = X · A^{-1}` for row-major `X` (`n × m`) and row-major `A^{-1}` (`m × m`); `out` is
/// row-major `n × m`. Computed as the column-major product `(A^{-1})^T X^T`.
pub fn rows_times(x: &[f64], n: usize, m: usize, ainv: &[f64], out: &mut [f64]) {
    rows_times_rect(x, n, m, ainv, m, out);
}

/// `out = X B` for row-major `X` (`n × k`) and `B` (`k × c`); `out` is `n × c`, row-major.
pub fn rows_times_rect(x: &[f64], n: usize, k: usize, b: &[f64], c: usize, out: &mut [f64]) {
    assert_eq!(x.len(), n * k, "rows_times_rect: X has the wrong length");
    assert_eq!(b.len(), k * c, "rows_times_rect: B has the wrong length");
    assert_eq!(
        out.len(),
        n * c,
        "rows_times_rect: output has the wrong length"
    );
    if n == 0 || k == 0 || c == 0 {
        out.fill(0.0);
        return;
    }
    // Column-major views of the row-major arrays are their transposes: out^T = B^T X^T.
    let lhs = MatRef::from_column_major_slice(b, c, k);
    let rhs = MatRef::from_column_major_slice(x, k, n);
    let dst = MatMut::from_column_major_slice_mut(out, c, n);
    let par = par_for(2.0 * (n * k * c) as f64);
    matmul(dst, Accum::Replace, lhs, rhs, 1.0, par);
    crate::simd::clear_upper_simd_state();
}

/// Extrapolation grade of one row: `max_j |(b A^{-1})_j|`. `acc` (length `m`) is caller-owned
/// scratch, so the call does not allocate. NaN in `b` gives NaN.
#[inline]
pub fn gamma(ainv: &[f64], m: usize, b: &[f64], acc: &mut [f64]) -> f64 {
    debug_assert_eq!(b.len(), m);
    debug_assert_eq!(acc.len(), m);
    debug_assert_eq!(ainv.len(), m * m);
    acc.fill(0.0);
    for (k, &bk) in b.iter().enumerate() {
        if bk == 0.0 {
            continue;
        }
        let row = &ainv[k * m..(k + 1) * m];
        for (a, r) in acc.iter_mut().zip(row) {
            *a += bk * r;
        }
    }
    max_abs(acc)
}

/// Largest absolute value, NaN if any entry is NaN.
#[inline]
fn max_abs(v: &[f64]) -> f64 {
    // Four running maxima and a separate NaN flag: branch-free, so it vectorizes (one running
    // maximum with the NaN test was a chain of dependent compares, a few % of a gamma step).
    let mut mx = [0.0f64; 4];
    let mut nan = false;
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            let a = c[l].abs();
            nan |= a.is_nan();
            mx[l] = if a > mx[l] { a } else { mx[l] };
        }
    }
    for &x in rest {
        let a = x.abs();
        nan |= a.is_nan();
        mx[0] = if a > mx[0] { a } else { mx[0] };
    }
    if nan {
        f64::NAN
    } else {
        mx[0].max(mx[1]).max(mx[2].max(mx[3]))
    }
}

/// Grades of many rows (`rows` row-major `n × m`, `out` length `n`) with GEMM, in blocks of at
/// most 2048 rows; `scratch` grows to at most `2048 m` numbers and can be reused across calls.
pub fn gamma_batch(ainv: &[f64], m: usize, rows: &[f64], out: &mut [f64], scratch: &mut Vec<f64>) {
    let n = out.len();
    assert_eq!(
        rows.len(),
        n * m,
        "gamma_batch: rows and output differ in length"
    );
    for (blk, o) in out.chunks_mut(BLOCK).enumerate() {
        let nb = o.len();
        let x = &rows[blk * BLOCK * m..blk * BLOCK * m + nb * m];
        scratch.resize(nb * m, 0.0);
        let g = &mut scratch[..nb * m];
        rows_times(x, nb, m, ainv, g);
        for (r, v) in o.iter_mut().enumerate() {
            *v = max_abs(&g[r * m..(r + 1) * m]);
        }
    }
}

/// Columns whose scale is below this fraction of the largest column's hold nothing but
/// round-off. A function that vanishes on every row by symmetry (measured: a C-tilde function
/// of pacemaker's Cu potential under its second density, on rattled fcc Cu) is computed as a
/// difference of terms of ordinary size, so its values are noise at about 1e-16 of those
/// terms. Scaled to unit size, as every column is for pivoting and in the row spaces, that
/// noise would be graded as a direction of its own, and one that changes with the order in
/// which neighbours are summed (atom numbering, MPI ranks). Such columns count as zero.
pub const NEGLIGIBLE_COLUMN: f64 = 1e-10;

/// Per column of scales `d` (largest entries or roots of mean squares): whether it is more than
/// round-off, i.e. finite and above [`NEGLIGIBLE_COLUMN`] times the largest finite scale (a
/// zero column is not). The one rule for every place that scales columns.
pub fn live_columns(d: &[f64]) -> Vec<bool> {
    let top = d
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, &v| a.max(v));
    d.iter()
        .map(|&v| v.is_finite() && v > NEGLIGIBLE_COLUMN * top)
        .collect()
}

/// Largest absolute entry of each column of a row-major `n × m` matrix.
fn column_scales(x: &[f64], n: usize, m: usize) -> Vec<f64> {
    let mut d = vec![0.0f64; m];
    for r in 0..n {
        for (dk, &v) in d.iter_mut().zip(&x[r * m..(r + 1) * m]) {
            *dk = dk.max(v.abs());
        }
    }
    d
}

/// Pivot rows of an LU factorization with partial pivoting of `X` (`n × m`, `n >= 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct LuPivots {
    /// The first `min(n, m)` pivot rows; their span equals the span of all rows of `X`.
    pub rows: Vec<usize>,
    /// Number of pivots at least `rank_tol` of their column scale.
    pub rank: usize,
    /// Smallest relative pivot (|U_kk| / column scale) over the first `min(n, m)` pivots.
    pub smallest: f64,
    /// First column (0-based) that is zero on every row, or round-off ([`live_columns`]),
    /// if any.
    pub zero_column: Option<usize>,
}

/// LU with partial pivoting of the row-major `n × m` matrix `X` (faer). Columns are scaled to
/// unit maximum first (row pivoting is invariant to column scaling; the pivot sizes become
/// comparable to `rank_tol`).
pub fn lu_pivots(x: &[f64], n: usize, m: usize, rank_tol: f64) -> LuPivots {
    let d = column_scales(x, n, m);
    let live = live_columns(&d);
    let zero_column = live.iter().position(|&l| !l);
    let mat = Mat::<f64>::from_fn(n, m, |i, j| if live[j] { x[i * m + j] / d[j] } else { 0.0 });
    let lu = mat.partial_piv_lu();
    let k = n.min(m);
    let perm = lu.P().arrays().0;
    let rows: Vec<usize> = perm[..k].to_vec();
    let u = lu.U();
    let mut rank = 0;
    let mut smallest = f64::INFINITY;
    for j in 0..k {
        let p = u[(j, j)].abs();
        if p >= rank_tol {
            rank += 1;
        }
        if p.is_nan() || p < smallest {
            smallest = p;
        }
    }
    if zero_column.is_some() {
        rank = rank.min(m - 1);
    }
    LuPivots {
        rows,
        rank,
        smallest,
        zero_column,
    }
}

/// An inverse with its quality.
#[derive(Clone, Debug)]
pub struct Inverse {
    /// Row-major `m × m` inverse.
    pub inv: Vec<f64>,
    /// 1-norm condition number of the column-scaled matrix (exact, from the computed inverse).
    pub cond: f64,
}

/// Invert the row-major `m × m` matrix `A` (LU with partial pivoting, faer). Refuses a matrix
/// whose smallest relative pivot is below `rank_tol` or whose inverse is not finite.
pub fn invert(a: &[f64], m: usize, rank_tol: f64, what: &str) -> Result<Inverse, MaxVolError> {
    assert_eq!(a.len(), m * m, "invert: wrong matrix size");
    let d = column_scales(a, m, m);
    if let Some(col) = d.iter().position(|&v| v.is_nan() || v <= 0.0) {
        return Err(MaxVolError::Singular {
            what: what.to_string(),
            detail: format!("column {col} of the active set is zero"),
        });
    }
    let mat = Mat::<f64>::from_fn(m, m, |i, j| a[i * m + j]);
    let lu = mat.partial_piv_lu();
    let u = lu.U();
    let (mut worst, mut wj) = (f64::INFINITY, 0);
    for j in 0..m {
        let p = u[(j, j)].abs() / d[j];
        if p.is_nan() || p < worst {
            worst = p;
            wj = j;
        }
    }
    if worst.is_nan() || worst < rank_tol {
        return Err(MaxVolError::Singular {
            what: what.to_string(),
            detail: format!(
                "LU pivot {wj} is {worst:.1e} of its column scale, below rank_tol {rank_tol:.0e}"
            ),
        });
    }
    let inv = lu.inverse();
    let mut out = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            out[i * m + j] = inv[(i, j)];
        }
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(MaxVolError::Singular {
            what: what.to_string(),
            detail: "the inverse has non-finite entries".into(),
        });
    }
    let cond = condition(a, &out, m);
    Ok(Inverse { inv: out, cond })
}

/// 1-norm condition number of the column-scaled matrix, `||A D^-1||_1 ||D A^-1||_1` with `D`
/// the column scales of `A`, from `A` and its inverse (both row-major `m × m`; `O(m^2)`).
pub fn condition(a: &[f64], inv: &[f64], m: usize) -> f64 {
    let d = column_scales(a, m, m);
    let mut na = 0.0f64;
    let mut ni = 0.0f64;
    for j in 0..m {
        let (mut sa, mut si) = (0.0, 0.0);
        for i in 0..m {
            sa += a[i * m + j].abs() / d[j];
            si += d[i] * inv[i * m + j].abs();
        }
        na = na.max(sa);
        ni = ni.max(si);
    }
    na * ni
}

/// Outcome of [`maxvol_from`].
#[derive(Clone, Debug, PartialEq)]
pub struct Swaps {
    /// Number of swaps made.
    pub iters: usize,
    /// `max |C_ij|` when the search stopped (from the updated `C`).
    pub max_c: f64,
    /// True if it stopped because `max |C_ij| <= tol` (not because of `max_iters`).
    pub converged: bool,
}

/// Index of the largest |C_ij|: larger value first, then smaller row, then smaller column, so the
/// choice is the same whatever the parallel split.
#[derive(Clone, Copy, Debug)]
struct Best {
    v: f64,
    i: usize,
    j: usize,
}

impl Best {
    const NONE: Best = Best {
        v: -1.0,
        i: usize::MAX,
        j: usize::MAX,
    };
    fn better(self, o: Best) -> Best {
        if o.v > self.v || (o.v == self.v && (o.i, o.j) < (self.i, self.j)) {
            o
        } else {
            self
        }
    }
    fn of_row(self, row: &[f64], i: usize) -> Best {
        let mut b = self;
        for (j, &c) in row.iter().enumerate() {
            let v = c.abs();
            // NaN never wins (checked finite inputs cannot produce it except through
            // overflow, which then shows up as a non-converged, singular result).
            if v > b.v {
                b = Best { v, i, j };
            }
        }
        b
    }
}

/// Rows per parallel task in the rank-1 updates.
const TASK_ROWS: usize = 256;

fn argmax(c: &[f64], m: usize) -> Best {
    c.par_chunks(m * TASK_ROWS)
        .enumerate()
        .map(|(t, ch)| {
            let mut b = Best::NONE;
            for (r, row) in ch.chunks_exact(m).enumerate() {
                b = b.of_row(row, t * TASK_ROWS + r);
            }
            b
        })
        .reduce(|| Best::NONE, Best::better)
}

/// MaxVol from given initial pivots. `x` is row-major `n × m`, `pivots[j]` the row of `x` in
/// active position `j`, `ainv` the inverse of `x[pivots]`. On return `pivots` holds the final
/// set. `C` is recomputed from `ainv` at the start (GEMM), then updated by rank-1 corrections.
pub fn maxvol_from(
    x: &[f64],
    n: usize,
    m: usize,
    pivots: &mut [usize],
    ainv: &[f64],
    opts: &Options,
) -> Swaps {
    assert_eq!(pivots.len(), m, "maxvol_from: need m pivots");
    let mut c = vec![0.0; n * m];
    rows_times(x, n, m, ainv, &mut c);
    for (j, &p) in pivots.iter().enumerate() {
        let row = &mut c[p * m..(p + 1) * m];
        row.fill(0.0);
        row[j] = 1.0;
    }
    let mut best = argmax(&c, m);
    let mut iters = 0;
    let mut crow = vec![0.0; m];
    while best.v > opts.tol && iters < opts.max_iters {
        let (i, j) = (best.i, best.j);
        let cij = c[i * m + j];
        crow.copy_from_slice(&c[i * m..(i + 1) * m]);
        crow[j] -= 1.0;
        // C <- C - C[:, j] (C[i, :] - e_j) / C_ij  (Sherman–Morrison for A + e_j (x_i - a_j)),
        // fused with the search for the next maximum.
        best = c
            .par_chunks_mut(m * TASK_ROWS)
            .enumerate()
            .map(|(t, ch)| {
                let mut b = Best::NONE;
                for (r, row) in ch.chunks_exact_mut(m).enumerate() {
                    let gi = t * TASK_ROWS + r;
                    if gi == i {
                        // The incoming row becomes e_j exactly.
                        row.fill(0.0);
                        row[j] = 1.0;
                    } else {
                        let f = row[j] / cij;
                        if f != 0.0 {
                            for (a, cr) in row.iter_mut().zip(&crow) {
                                *a -= f * cr;
                            }
                        }
                    }
                    b = b.of_row(row, gi);
                }
                b
            })
            .reduce(|| Best::NONE, Best::better);
        pivots[j] = i;
        iters += 1;
    }
    Swaps {
        iters,
        max_c: best.v.max(0.0),
        converged: best.v <= opts.tol,
    }
}

/// Check that every entry of `x` is finite; name the first bad row with `name(row)`.
fn check_finite(
    x: &[f64],
    m: usize,
    what: &str,
    name: impl Fn(usize) -> String,
) -> Result<(), MaxVolError> {
    if let Some(k) = x.iter().position(|v| !v.is_finite()) {
        return Err(MaxVolError::NotFinite {
            what: what.to_string(),
            row: name(k / m.max(1)),
        });
    }
    Ok(())
}

/// A MaxVol result on rows in memory.
#[derive(Clone, Debug)]
pub struct Selection {
    /// `pivots[j]` = row of `X` in active position `j`.
    pub pivots: Vec<usize>,
    /// Row-major inverse of `X[pivots]`, computed afresh from the selected rows.
    pub inverse: Inverse,
    /// Swap statistics.
    pub swaps: Swaps,
    /// Smallest relative LU pivot of the initial factorization.
    pub lu_smallest: f64,
}

/// MaxVol on the row-major `n × m` matrix `X` in memory. `what` names the rows in errors.
pub fn maxvol(
    x: &[f64],
    n: usize,
    m: usize,
    opts: &Options,
    what: &str,
) -> Result<Selection, MaxVolError> {
    opts.validate()?;
    assert_eq!(x.len(), n * m, "maxvol: X has the wrong length");
    if n < m || m == 0 {
        return Err(MaxVolError::TooFewRows {
            what: what.to_string(),
            n,
            m,
        });
    }
    check_finite(x, m, what, |r| format!("row {r}"))?;
    let lu = lu_pivots(x, n, m, opts.rank_tol);
    check_rank(&lu, n, m, opts, what)?;
    let mut pivots = lu.rows.clone();
    let a0 = gather(x, m, &pivots);
    let inv0 = invert(&a0, m, opts.rank_tol, what)?;
    let mut swaps = maxvol_from(x, n, m, &mut pivots, &inv0.inv, opts);
    let mut inverse = invert(&gather(x, m, &pivots), m, opts.rank_tol, what)?;
    // Rank-1 updates drift; one more search from the fresh inverse makes the result certain.
    let again = maxvol_from(x, n, m, &mut pivots, &inverse.inv, opts);
    if again.iters > 0 {
        inverse = invert(&gather(x, m, &pivots), m, opts.rank_tol, what)?;
    }
    swaps.iters += again.iters;
    swaps.max_c = again.max_c;
    swaps.converged = again.converged;
    Ok(Selection {
        pivots,
        inverse,
        swaps,
        lu_smallest: lu.smallest,
    })
}

fn check_rank(
    lu: &LuPivots,
    n: usize,
    m: usize,
    opts: &Options,
    what: &str,
) -> Result<(), MaxVolError> {
    if let Some(col) = lu.zero_column {
        return Err(MaxVolError::ZeroColumn {
            what: what.to_string(),
            col,
            n,
        });
    }
    if lu.rank < m {
        return Err(MaxVolError::RankDeficient {
            what: what.to_string(),
            n,
            m,
            rank: lu.rank,
            rel: lu.smallest,
            rank_tol: opts.rank_tol,
        });
    }
    Ok(())
}

/// Copy the given rows of a row-major matrix.
pub fn gather(x: &[f64], m: usize, rows: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * m);
    for &r in rows {
        out.extend_from_slice(&x[r * m..(r + 1) * m]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Streaming (cumulative batched) MaxVol
// ---------------------------------------------------------------------------------------------

/// Statistics of one pass of [`StreamingMaxVol`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassStats {
    /// Rows seen in the pass.
    pub seen: usize,
    /// Rows that entered a MaxVol batch (all rows until the set has full rank, then only rows
    /// with gamma > tol against the set current at the time).
    pub candidates: usize,
    /// Row swaps (active-set changes) made in the pass.
    pub swaps: usize,
    /// Largest gamma seen while the set had full rank (0 if never).
    pub max_gamma: f64,
    /// True if the pass started from a full-rank set and made no swap: then every row of the
    /// data has `gamma <= tol` against the final set.
    pub verified: bool,
    /// A MaxVol run in this pass stopped at `max_iters`.
    pub hit_max_iters: bool,
}

/// The result of a MaxVol build: the active rows, their inverse and where they came from.
#[derive(Clone, Debug)]
pub struct ActiveRows {
    /// Row length.
    pub m: usize,
    /// Row-major `m × m`: row `j` is the descriptor of active row `j`.
    pub rows: Vec<f64>,
    /// Row-major `m × m` inverse of `rows`.
    pub inverse: Vec<f64>,
    /// Provenance of each active row.
    pub ids: Vec<RowId>,
    /// 1-norm condition number of the column-scaled active-set matrix.
    pub cond: f64,
}

/// Cumulative batched MaxVol over rows streamed in chunks, bounded memory
/// (`(batch + m) × m` numbers for `C` and the buffer).
///
/// Use: for each pass, [`begin_pass`](Self::begin_pass), [`push`](Self::push) every chunk of
/// rows, [`end_pass`](Self::end_pass); repeat passes until `end_pass` reports `verified`; then
/// [`into_active_rows`](Self::into_active_rows).
#[derive(Clone, Debug)]
pub struct StreamingMaxVol {
    m: usize,
    batch: usize,
    opts: Options,
    what: String,
    /// Active (or, before full rank, independent) rows, row-major, at most `m`.
    rows: Vec<f64>,
    ids: Vec<RowId>,
    /// Inverse of `rows` when there are `m` of them.
    inverse: Option<Inverse>,
    buf: Vec<f64>,
    buf_ids: Vec<RowId>,
    stats: PassStats,
    full_at_start: bool,
    total_seen: usize,
    scratch: Vec<f64>,
    gam: Vec<f64>,
}

impl StreamingMaxVol {
    /// An empty builder for rows of length `m`; MaxVol runs every `batch` candidate rows.
    pub fn new(m: usize, batch: usize, opts: Options, what: &str) -> Result<Self, MaxVolError> {
        opts.validate()?;
        if m == 0 {
            return Err(MaxVolError::Settings(format!("{what}: no basis functions")));
        }
        Ok(StreamingMaxVol {
            m,
            batch: batch.max(1),
            opts,
            what: what.to_string(),
            rows: vec![],
            ids: vec![],
            inverse: None,
            buf: vec![],
            buf_ids: vec![],
            stats: PassStats::default(),
            full_at_start: false,
            total_seen: 0,
            scratch: vec![],
            gam: vec![],
        })
    }

    /// Start from an existing full-rank active set (`rows` row-major `m × m`, e.g. to add
    /// candidate rows to a model's set). Errors if `rows` is singular.
    pub fn with_active_set(
        m: usize,
        batch: usize,
        opts: Options,
        what: &str,
        rows: Vec<f64>,
        ids: Vec<RowId>,
    ) -> Result<Self, MaxVolError> {
        let mut s = Self::new(m, batch, opts, what)?;
        assert_eq!(rows.len(), m * m, "with_active_set: need m rows");
        assert_eq!(ids.len(), m, "with_active_set: need m ids");
        check_finite(&rows, m, what, |r| ids[r].to_string())?;
        s.inverse = Some(invert(&rows, m, opts.rank_tol, what)?);
        s.rows = rows;
        s.ids = ids;
        Ok(s)
    }

    /// Row length.
    pub fn m(&self) -> usize {
        self.m
    }

    /// True once the set has `m` independent rows.
    pub fn full_rank(&self) -> bool {
        self.inverse.is_some()
    }

    /// Current active-set inverse (row-major), if full rank.
    pub fn inverse(&self) -> Option<&[f64]> {
        self.inverse.as_ref().map(|i| i.inv.as_slice())
    }

    /// Condition number of the current active set (column-scaled, 1-norm), if full rank.
    pub fn cond(&self) -> Option<f64> {
        self.inverse.as_ref().map(|i| i.cond)
    }

    /// Begin a pass over the data.
    pub fn begin_pass(&mut self) {
        self.stats = PassStats::default();
        self.full_at_start = self.full_rank();
        self.total_seen = 0;
    }

    /// Offer rows (row-major, `ids.len()` rows of length `m`).
    pub fn push(&mut self, rows: &[f64], ids: &[RowId]) -> Result<(), MaxVolError> {
        let m = self.m;
        assert_eq!(rows.len(), ids.len() * m, "push: rows and ids differ");
        check_finite(rows, m, &self.what, |r| ids[r].to_string())?;
        self.stats.seen += ids.len();
        self.total_seen += ids.len();
        let mut start = 0;
        while start < ids.len() {
            if !self.full_rank() {
                // Everything is a candidate until the set has full rank.
                let take = (self.batch - self.buf_ids.len().min(self.batch))
                    .max(1)
                    .min(ids.len() - start);
                self.buf
                    .extend_from_slice(&rows[start * m..(start + take) * m]);
                self.buf_ids.extend_from_slice(&ids[start..start + take]);
                self.stats.candidates += take;
                start += take;
            } else {
                let nb = BLOCK.min(ids.len() - start);
                let x = &rows[start * m..(start + nb) * m];
                self.gam.resize(nb, 0.0);
                let inv = &self.inverse.as_ref().expect("full rank").inv;
                gamma_batch(inv, m, x, &mut self.gam, &mut self.scratch);
                for (r, &g) in self.gam.iter().enumerate() {
                    if g > self.stats.max_gamma {
                        self.stats.max_gamma = g;
                    }
                    if g > self.opts.candidate {
                        self.buf.extend_from_slice(&x[r * m..(r + 1) * m]);
                        self.buf_ids.push(ids[start + r]);
                        self.stats.candidates += 1;
                    }
                }
                start += nb;
            }
            if self.buf_ids.len() >= self.batch {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Run MaxVol on (active set ∪ buffer).
    fn flush(&mut self) -> Result<(), MaxVolError> {
        if self.buf_ids.is_empty() {
            return Ok(());
        }
        let m = self.m;
        let mut x = std::mem::take(&mut self.rows);
        x.extend_from_slice(&self.buf);
        let mut ids = std::mem::take(&mut self.ids);
        ids.extend_from_slice(&self.buf_ids);
        self.buf.clear();
        self.buf_ids.clear();
        let n = ids.len();
        match &self.inverse {
            Some(inv) => {
                let mut pivots: Vec<usize> = (0..m).collect();
                let sw = maxvol_from(&x, n, m, &mut pivots, &inv.inv, &self.opts);
                self.stats.swaps += sw.iters;
                self.stats.hit_max_iters |= !sw.converged;
                self.rows = gather(&x, m, &pivots);
                self.ids = pivots.iter().map(|&p| ids[p]).collect();
                if sw.iters > 0 {
                    self.inverse = Some(invert(&self.rows, m, self.opts.rank_tol, &self.what)?);
                }
            }
            None => {
                let lu = lu_pivots(&x, n, m, self.opts.rank_tol);
                if n >= m && lu.zero_column.is_none() && lu.rank == m {
                    let mut pivots = lu.rows.clone();
                    let inv0 = invert(&gather(&x, m, &pivots), m, self.opts.rank_tol, &self.what)?;
                    let sw = maxvol_from(&x, n, m, &mut pivots, &inv0.inv, &self.opts);
                    // Entering full rank counts as a change of the set.
                    self.stats.swaps += sw.iters + 1;
                    self.stats.hit_max_iters |= !sw.converged;
                    self.rows = gather(&x, m, &pivots);
                    self.ids = pivots.iter().map(|&p| ids[p]).collect();
                    self.inverse = Some(invert(&self.rows, m, self.opts.rank_tol, &self.what)?);
                } else {
                    // Keep the LU pivot rows: they span everything seen so far.
                    self.rows = gather(&x, m, &lu.rows);
                    self.ids = lu.rows.iter().map(|&p| ids[p]).collect();
                    self.stats.swaps += 1;
                }
            }
        }
        Ok(())
    }

    /// Finish a pass: run MaxVol on what is buffered. Errors if, after a whole pass, the rows
    /// still do not have full rank (too few or too similar rows).
    pub fn end_pass(&mut self) -> Result<PassStats, MaxVolError> {
        self.flush()?;
        if !self.full_rank() {
            let n = self.total_seen;
            if n < self.m {
                return Err(MaxVolError::TooFewRows {
                    what: self.what.clone(),
                    n,
                    m: self.m,
                });
            }
            let lu = lu_pivots(&self.rows, self.ids.len(), self.m, self.opts.rank_tol);
            if let Some(col) = lu.zero_column {
                return Err(MaxVolError::ZeroColumn {
                    what: self.what.clone(),
                    col,
                    n,
                });
            }
            return Err(MaxVolError::RankDeficient {
                what: self.what.clone(),
                n,
                m: self.m,
                rank: lu.rank,
                rel: lu.smallest,
                rank_tol: self.opts.rank_tol,
            });
        }
        self.stats.verified = self.full_at_start && self.stats.swaps == 0;
        Ok(self.stats.clone())
    }

    /// The active set (call after a verified pass, or accept an unverified one).
    pub fn into_active_rows(self) -> Result<ActiveRows, MaxVolError> {
        let Some(inv) = self.inverse else {
            return Err(MaxVolError::TooFewRows {
                what: self.what,
                n: self.total_seen,
                m: self.m,
            });
        };
        Ok(ActiveRows {
            m: self.m,
            rows: self.rows,
            inverse: inv.inv,
            ids: self.ids,
            cond: inv.cond,
        })
    }
}

#[cfg(test)]
mod tests;
