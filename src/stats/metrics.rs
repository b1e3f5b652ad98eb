//! Evaluation metrics of Annevelink & Viswanathan: confusion counts and F1 at a pair of cutoffs, the 2-D
//! (e_c, u_c) sweep, the calibration curve with its miscalibration area, Spearman's rho and
//! ROC-AUC; for the uncertainty benchmark also the size-stratified ROC-AUC (each positive against
//! its own negatives) and the recall of the highest-error atoms at a labelling budget.
//!
//! Conventions: an atom has *high error* if e > e_c and is *flagged uncertain* if u > u_c
//! (strict inequalities). Precision is 0 when nothing is flagged, recall is 0 when no atom has a
//! high error, F1 is 0 when precision + recall = 0.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::special::gamma_p;

fn check_pair(what: &'static str, a: &[f64], b: &[f64]) -> Result<(), StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            what,
            left: a.len(),
            right: b.len(),
        });
    }
    if a.is_empty() {
        return Err(StatsError::TooFewSamples { n: 0, needed: 1 });
    }
    check_finite(a)?;
    check_finite(b)
}

fn check_finite(a: &[f64]) -> Result<(), StatsError> {
    match a.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::BadValue {
            index,
            value: a[index],
            expected: "finite",
        }),
        None => Ok(()),
    }
}

/// Confusion counts of "flagged uncertain" (u > u_c) against "high error" (e > e_c).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// High error and flagged.
    pub tp: u64,
    /// Flagged but not high error.
    pub fp: u64,
    /// High error but not flagged.
    pub fn_: u64,
    /// Neither.
    pub tn: u64,
}

impl Confusion {
    /// TP / (TP + FP); 0 if nothing is flagged.
    pub fn precision(&self) -> f64 {
        let flagged = self.tp + self.fp;
        if flagged == 0 {
            0.0
        } else {
            self.tp as f64 / flagged as f64
        }
    }
    /// TP / (TP + FN); 0 if no atom has a high error.
    pub fn recall(&self) -> f64 {
        let high = self.tp + self.fn_;
        if high == 0 {
            0.0
        } else {
            self.tp as f64 / high as f64
        }
    }
    /// 2 P R / (P + R); 0 if P + R = 0.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    /// Total number of atoms.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.fn_ + self.tn
    }
    /// F1 expected from flagging the same number of atoms at random: 2 b q / (b + q), b the
    /// high-error fraction, q the flagged fraction (0 if either is 0). The level an uncertainty
    /// must beat to carry information about the error.
    pub fn chance_f1(&self) -> f64 {
        let n = self.total() as f64;
        let b = (self.tp + self.fn_) as f64 / n.max(1.0);
        let q = (self.tp + self.fp) as f64 / n.max(1.0);
        if b + q > 0.0 {
            2.0 * b * q / (b + q)
        } else {
            0.0
        }
    }
    /// Why precision, recall and F1 say nothing about the uncertainty here, if they do not: no
    /// atom (or every atom) has a high error, or no atom (or every atom) is flagged. A trivial
    /// split scores F1 = 1 (every atom high and flagged) or 2b/(1 + b) (everything flagged, b the
    /// high-error fraction) whatever the uncertainty. None when both splits are informative.
    pub fn degenerate(&self) -> Option<&'static str> {
        let n = self.total();
        let high = self.tp + self.fn_;
        let flagged = self.tp + self.fp;
        if n == 0 {
            Some("no atoms")
        } else if high == 0 {
            Some("no atom has e > e_c")
        } else if high == n {
            Some("every atom has e > e_c")
        } else if flagged == 0 {
            Some("no atom has u > u_c")
        } else if flagged == n {
            Some("every atom has u > u_c")
        } else {
            None
        }
    }
}

/// Confusion counts at one pair of cutoffs.
pub fn confusion(
    errors: &[f64],
    uncertainties: &[f64],
    e_c: f64,
    u_c: f64,
) -> Result<Confusion, StatsError> {
    check_pair("errors and uncertainties", errors, uncertainties)?;
    let mut c = Confusion::default();
    for (&e, &u) in errors.iter().zip(uncertainties) {
        match (e > e_c, u > u_c) {
            (true, true) => c.tp += 1,
            (false, true) => c.fp += 1,
            (true, false) => c.fn_ += 1,
            (false, false) => c.tn += 1,
        }
    }
    Ok(c)
}

/// `n` evenly spaced values from `lo` to `hi` inclusive (a convenience for sweep grids).
pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![lo],
        _ => (0..n)
            .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
            .collect(),
    }
}

/// Confusion counts on a grid of (e_c, u_c), from [`sweep`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Error cutoffs (rows), eV/Å, in the order given.
    pub e_grid: Vec<f64>,
    /// Uncertainty cutoffs (columns), in the order given.
    pub u_grid: Vec<f64>,
    /// TP count, row-major: `tp[i * u_grid.len() + j]` for (`e_grid[i]`, `u_grid[j]`).
    pub tp: Vec<u64>,
    /// Atoms with e > `e_grid[i]`.
    pub n_high: Vec<u64>,
    /// Atoms with u > `u_grid[j]`.
    pub n_flagged: Vec<u64>,
    /// Total number of atoms.
    pub n: u64,
}

impl Sweep {
    /// Confusion counts at grid point (i, j).
    pub fn confusion(&self, i: usize, j: usize) -> Confusion {
        let tp = self.tp[i * self.u_grid.len() + j];
        let fp = self.n_flagged[j] - tp;
        let fn_ = self.n_high[i] - tp;
        Confusion {
            tp,
            fp,
            fn_,
            tn: self.n - tp - fp - fn_,
        }
    }
    fn matrix(&self, f: impl Fn(&Confusion) -> f64) -> Vec<f64> {
        let nu = self.u_grid.len();
        (0..self.e_grid.len() * nu)
            .map(|k| f(&self.confusion(k / nu, k % nu)))
            .collect()
    }
    /// F1 on the grid, row-major (rows e_grid, columns u_grid).
    pub fn f1(&self) -> Vec<f64> {
        self.matrix(Confusion::f1)
    }
    /// Precision on the grid, row-major.
    pub fn precision(&self) -> Vec<f64> {
        self.matrix(Confusion::precision)
    }
    /// Recall on the grid, row-major.
    pub fn recall(&self) -> Vec<f64> {
        self.matrix(Confusion::recall)
    }
    /// Grid point (i, j) with the highest F1 and that F1 (the first on ties); None if empty.
    /// Trivial splits count too (at e_c below every error and u_c below every uncertainty F1 is
    /// 1): see [`Sweep::best_informative_f1`].
    pub fn best_f1(&self) -> Option<(usize, usize, f64)> {
        self.best_where(|_| true)
    }
    /// As [`Sweep::best_f1`] over the grid points whose splits are informative: some but not all
    /// atoms flagged, and at least `min_high` high-error atoms but at most half of them (e_c is
    /// meant for the tail; where most atoms count as high-error, flagging nearly all scores F1
    /// near 1 whatever the uncertainty; with one or two high-error atoms F1 = 1 is luck). None if
    /// there is no such point (e.g. no atom above any e_c of the grid). Compare the F1 with
    /// [`Confusion::chance_f1`] at the same point.
    pub fn best_informative_f1(&self, min_high: u64) -> Option<(usize, usize, f64)> {
        self.best_where(|c| {
            let high = c.tp + c.fn_;
            c.degenerate().is_none() && high >= min_high.max(1) && 2 * high <= c.total()
        })
    }
    fn best_where(&self, keep: impl Fn(&Confusion) -> bool) -> Option<(usize, usize, f64)> {
        let nu = self.u_grid.len();
        let mut best: Option<(usize, usize, f64)> = None;
        for i in 0..self.e_grid.len() {
            for j in 0..nu {
                let c = self.confusion(i, j);
                if !keep(&c) {
                    continue;
                }
                let v = c.f1();
                if best.is_none_or(|b| v > b.2) {
                    best = Some((i, j, v));
                }
            }
        }
        best
    }
}

/// Sorted copy of a grid with the permutation back to the original order.
fn sorted_grid(grid: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..grid.len()).collect();
    idx.sort_by(|&a, &b| grid[a].total_cmp(&grid[b]));
    (idx.iter().map(|&i| grid[i]).collect(), idx)
}

/// Confusion counts on every (e_c, u_c) of a grid in O(n log g + g_e g_u) time.
///
/// Each atom is binned by how many grid cutoffs lie strictly below its error (and its
/// uncertainty); a 2-D suffix sum over the bins then gives TP for every grid pair at once.
pub fn sweep(
    errors: &[f64],
    uncertainties: &[f64],
    e_grid: &[f64],
    u_grid: &[f64],
) -> Result<Sweep, StatsError> {
    check_pair("errors and uncertainties", errors, uncertainties)?;
    check_finite(e_grid)?;
    check_finite(u_grid)?;
    let (es, eperm) = sorted_grid(e_grid);
    let (us, uperm) = sorted_grid(u_grid);
    let (ne, nu) = (es.len(), us.len());
    let w = nu + 1;
    // hist[ke * w + ku]: atoms with exactly ke grid e-cutoffs below e and ku u-cutoffs below u.
    let mut hist = vec![0u64; (ne + 1) * w];
    for (&e, &u) in errors.iter().zip(uncertainties) {
        let ke = es.partition_point(|&g| g < e);
        let ku = us.partition_point(|&g| g < u);
        hist[ke * w + ku] += 1;
    }
    // Suffix sums: s[a][b] = atoms with ke >= a and ku >= b.
    let mut s = vec![0u64; (ne + 2) * (w + 1)];
    let sw = w + 1;
    for a in (0..=ne).rev() {
        for b in (0..=nu).rev() {
            s[a * sw + b] =
                hist[a * w + b] + s[(a + 1) * sw + b] + s[a * sw + b + 1] - s[(a + 1) * sw + b + 1];
        }
    }
    // Sorted index r is "high error" for atoms with ke > r, i.e. ke >= r + 1.
    let mut tp = vec![0u64; ne * nu];
    for (r, &i) in eperm.iter().enumerate() {
        for (c, &j) in uperm.iter().enumerate() {
            tp[i * nu + j] = s[(r + 1) * sw + c + 1];
        }
    }
    let mut n_high = vec![0u64; ne];
    for (r, &i) in eperm.iter().enumerate() {
        n_high[i] = s[(r + 1) * sw];
    }
    let mut n_flagged = vec![0u64; nu];
    for (c, &j) in uperm.iter().enumerate() {
        n_flagged[j] = s[c + 1];
    }
    Ok(Sweep {
        e_grid: e_grid.to_vec(),
        u_grid: u_grid.to_vec(),
        tp,
        n_high,
        n_flagged,
        n: errors.len() as u64,
    })
}

/// Probability integral transform of each error under its own Maxwell predictive
/// distribution: PIT_k = F_Maxwell(e_k; sigma_k) = P(3/2, e_k^2 / (2 sigma_k^2)).
///
/// For uncertainties calibrated by the Maxwell likelihood (Annevelink & Viswanathan, e.g. the scaled
/// ensemble spread), sigma_k is the uncertainty u_k itself. Errors must be finite and >= 0,
/// sigmas finite and > 0.
pub fn pit_maxwell(errors: &[f64], sigmas: &[f64]) -> Result<Vec<f64>, StatsError> {
    check_pair("errors and sigmas", errors, sigmas)?;
    if let Some(index) = errors.iter().position(|&e| e < 0.0) {
        return Err(StatsError::BadValue {
            index,
            value: errors[index],
            expected: ">= 0 (an error magnitude)",
        });
    }
    if let Some(index) = sigmas.iter().position(|&s| !(s > 0.0)) {
        return Err(StatsError::BadValue {
            index,
            value: sigmas[index],
            expected: "> 0 (a Maxwell scale)",
        });
    }
    Ok(errors
        .iter()
        .zip(sigmas)
        .map(|(&e, &s)| gamma_p(1.5, e * e / (2.0 * s * s)))
        .collect())
}

/// Calibration curve (Tran et al. 2020): observed fraction of PIT values <= p against the
/// expected fraction p.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCurve {
    /// Expected fractions p (grid in [0, 1]).
    pub expected: Vec<f64>,
    /// Observed fraction of PIT <= p at each grid point.
    pub observed: Vec<f64>,
    /// Miscalibration area: integral over [0, 1] of |observed(p) - p| dp, computed exactly
    /// from the empirical CDF of the PIT values (not from the grid). 0 is perfect; an
    /// observed curve below the diagonal means overconfident uncertainties.
    pub area: f64,
}

/// Calibration curve of PIT values on a grid of `n_grid` >= 2 points in [0, 1].
pub fn calibration_curve(pit: &[f64], n_grid: usize) -> Result<CalibrationCurve, StatsError> {
    if pit.is_empty() {
        return Err(StatsError::TooFewSamples { n: 0, needed: 1 });
    }
    check_finite(pit)?;
    let mut s: Vec<f64> = pit.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let expected = linspace(0.0, 1.0, n_grid.max(2));
    let observed = expected
        .iter()
        .map(|&p| s.partition_point(|&v| v <= p) as f64 / n)
        .collect();
    Ok(CalibrationCurve {
        expected,
        observed,
        area: area_of_sorted(&s),
    })
}

/// Miscalibration area of PIT values (exact integral of |F_n(p) - p| over [0, 1]).
pub fn miscalibration_area(pit: &[f64]) -> Result<f64, StatsError> {
    Ok(calibration_curve(pit, 2)?.area)
}

/// Exact integral of |F_n(p) - p| for sorted values in [0, 1]: F_n is the constant i/n on
/// [s_i, s_{i+1}), and the integral of |c - p| over an interval has a closed form.
fn area_of_sorted(s: &[f64]) -> f64 {
    let n = s.len();
    let seg = |c: f64, a: f64, b: f64| -> f64 {
        if b <= a {
            0.0
        } else if c <= a {
            0.5 * ((b - c).powi(2) - (a - c).powi(2))
        } else if c >= b {
            0.5 * ((c - a).powi(2) - (c - b).powi(2))
        } else {
            0.5 * ((c - a).powi(2) + (b - c).powi(2))
        }
    };
    let mut area = 0.0;
    let mut left = 0.0;
    for (i, &v) in s.iter().enumerate() {
        area += seg(i as f64 / n as f64, left, v);
        left = v;
    }
    area + seg(1.0, left, 1.0)
}

/// Ranks 1..n with ties given their average rank.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share ranks i+1..=j+1.
        let r = 0.5 * ((i + 1) + (j + 1)) as f64;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Fewest pairs a reported rank correlation (of structures, and of atoms or pools, which are
/// far larger in practice) is computed from: with 2 pairs Spearman's rho is +-1 whatever the
/// data, with 4 a value of 1 has probability 1/24 by chance. The tables print "-" (or NaN) below
/// it.
pub const MIN_RANKED: usize = 5;

/// [`spearman`] of at least [`MIN_RANKED`] pairs, else NaN (as for a constant input).
pub fn spearman_or_nan(x: &[f64], y: &[f64]) -> f64 {
    if x.len() < MIN_RANKED {
        return f64::NAN;
    }
    spearman(x, y).unwrap_or(f64::NAN)
}

/// Spearman's rank correlation (Pearson correlation of average ranks), as
/// `scipy.stats.spearmanr`. Errors if either input is constant (rho undefined).
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    check_pair("the two rank inputs", x, y)?;
    let (rx, ry) = (average_ranks(x), average_ranks(y));
    let n = x.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        let (da, db) = (a - mean, b - mean);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(StatsError::Degenerate {
            what: "Spearman rho",
            reason: "one input is constant".into(),
        });
    }
    Ok(sxy / (sxx * syy).sqrt())
}

/// ROC-AUC of `scores` for binary `labels` (true = positive, e.g. a novel structure), in the
/// Mann–Whitney form: the probability that a random positive scores higher than a random
/// negative, ties counting 1/2. Errors if either class is empty.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64, StatsError> {
    if scores.len() != labels.len() {
        return Err(StatsError::LengthMismatch {
            what: "scores and labels",
            left: scores.len(),
            right: labels.len(),
        });
    }
    check_finite(scores)?;
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(StatsError::Degenerate {
            what: "ROC-AUC",
            reason: format!("needs both classes, got {n_pos} positive and {n_neg} negative"),
        });
    }
    let ranks = average_ranks(scores);
    let r_pos: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    let (p, q) = (n_pos as f64, n_neg as f64);
    Ok((r_pos - p * (p + 1.0) / 2.0) / (p * q))
}

/// ROC-AUC with one set of negatives per positive: the mean over positives i of the fraction of
/// `negatives[i]` that score below `positives[i]`, ties counting 1/2.
///
/// With the same negatives for every positive this is exactly [`roc_auc`]. The uncertainty
/// benchmark uses it to compare each novel structure only with in-distribution scores of its own
/// size (the maximum over as many atoms), so that the maximum's growth with the atom count cannot
/// masquerade as novelty. Errors if there is no positive or some positive has no negative.
pub fn stratified_auc(positives: &[f64], negatives: &[Vec<f64>]) -> Result<f64, StatsError> {
    if positives.len() != negatives.len() {
        return Err(StatsError::LengthMismatch {
            what: "positives and their negatives",
            left: positives.len(),
            right: negatives.len(),
        });
    }
    if positives.is_empty() {
        return Err(StatsError::TooFewSamples { n: 0, needed: 1 });
    }
    check_finite(positives)?;
    let mut total = 0.0;
    for (i, (&p, neg)) in positives.iter().zip(negatives).enumerate() {
        if neg.is_empty() {
            return Err(StatsError::Degenerate {
                what: "stratified ROC-AUC",
                reason: format!("positive {i} has no negatives to compare with"),
            });
        }
        check_finite(neg)?;
        let wins: f64 = neg
            .iter()
            .map(|&q| {
                if p > q {
                    1.0
                } else if p == q {
                    0.5
                } else {
                    0.0
                }
            })
            .sum();
        total += wins / neg.len() as f64;
    }
    Ok(total / positives.len() as f64)
}

/// `ceil(frac * n)` robust to rounding (0.05 * 100 is 5, not 6), at least 1 for n >= 1.
pub fn count_of_fraction(frac: f64, n: usize) -> usize {
    (((frac * n as f64) - 1e-9).ceil().max(1.0) as usize).min(n)
}

/// Probability that each value is among the `k` largest when ties are broken uniformly at
/// random: 1 above the k-th largest value, 0 below it, and for the values equal to it the
/// remaining slots divided by their number. The weights sum to `min(k, n)`.
pub fn top_k_weights(x: &[f64], k: usize) -> Vec<f64> {
    let n = x.len();
    let k = k.min(n);
    if k == 0 {
        return vec![0.0; n];
    }
    let mut s = x.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let t = s[k - 1];
    let above = x.iter().filter(|&&v| v > t).count();
    let tied = x.iter().filter(|&&v| v == t).count();
    let w_tie = (k - above) as f64 / tied as f64;
    x.iter()
        .map(|&v| {
            if v > t {
                1.0
            } else if v == t {
                w_tie
            } else {
                0.0
            }
        })
        .collect()
}

/// Recall of the highest-error atoms at a labelling budget: of the `ceil(top_frac * n)` atoms
/// with the largest errors, the expected fraction among the `ceil(budget_frac * n)` atoms with
/// the largest uncertainties (ties in either ranking broken uniformly at random, independently;
/// computed exactly as sum_i P(i in top errors) P(i in budget) / k). An uninformative
/// (constant) uncertainty scores `ceil(budget_frac * n) / n`; a perfect ranking scores 1 when
/// the budget is at least the top set.
pub fn recall_at_budget(
    errors: &[f64],
    uncertainties: &[f64],
    top_frac: f64,
    budget_frac: f64,
) -> Result<f64, StatsError> {
    check_pair("errors and uncertainties", errors, uncertainties)?;
    for (name, f) in [("top_frac", top_frac), ("budget_frac", budget_frac)] {
        if !(f > 0.0 && f <= 1.0) {
            return Err(StatsError::InvalidParameter { name, value: f });
        }
    }
    let n = errors.len();
    let k = count_of_fraction(top_frac, n);
    let b = count_of_fraction(budget_frac, n);
    let we = top_k_weights(errors, k);
    let wu = top_k_weights(uncertainties, b);
    Ok(we.iter().zip(&wu).map(|(a, c)| a * c).sum::<f64>() / k as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{draw_gamma, draw_maxwell, rng};

    #[test]
    fn stats_f1_edge_cases() {
        // Nothing flagged: precision 0 (not NaN), recall 0, F1 0.
        let c = confusion(&[1.0, 2.0], &[0.0, 0.0], 0.5, 1.0).unwrap();
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (0, 0, 2, 0));
        assert_eq!((c.precision(), c.recall(), c.f1()), (0.0, 0.0, 0.0));
        // No high errors: recall 0, precision 0 with false positives.
        let c = confusion(&[0.1, 0.2], &[5.0, 0.0], 0.5, 1.0).unwrap();
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (0, 1, 0, 1));
        assert_eq!((c.precision(), c.recall(), c.f1()), (0.0, 0.0, 0.0));
        // Empty confusion.
        assert_eq!(Confusion::default().f1(), 0.0);
        // Perfect.
        let c = confusion(&[0.1, 2.0, 3.0], &[0.0, 4.0, 5.0], 1.0, 1.0).unwrap();
        assert_eq!((c.precision(), c.recall(), c.f1()), (1.0, 1.0, 1.0));
        // Strict inequalities: values equal to the cutoffs are neither high nor flagged.
        let c = confusion(&[1.0], &[1.0], 1.0, 1.0).unwrap();
        assert_eq!(c.tn, 1);
        // P = 1/2, R = 1/3: F1 = 2 (1/6) / (5/6) = 0.4.
        let c = Confusion {
            tp: 1,
            fp: 1,
            fn_: 2,
            tn: 0,
        };
        assert!((c.f1() - 0.4).abs() < 1e-15);
        assert!(confusion(&[1.0], &[1.0, 2.0], 0.0, 0.0).is_err());
        assert!(confusion(&[f64::NAN], &[1.0], 0.0, 0.0).is_err());
    }

    #[test]
    fn stats_sweep_matches_brute_force() {
        let mut r = rng(41);
        let e = draw_gamma(&mut r, 2.0, 1.0, 3000);
        let u: Vec<f64> = e
            .iter()
            .zip(draw_gamma(&mut r, 4.0, 0.25, 3000))
            .map(|(a, b)| a * b)
            .collect();
        // Unsorted grids with a duplicate and values equal to data points (ties).
        let mut e_grid = linspace(0.0, 6.0, 25);
        e_grid.reverse();
        e_grid.push(e[5]);
        e_grid.push(2.0);
        let mut u_grid = linspace(0.0, 5.0, 19);
        u_grid.swap(0, 7);
        u_grid.push(u[9]);
        let s = sweep(&e, &u, &e_grid, &u_grid).unwrap();
        for (i, &ec) in e_grid.iter().enumerate() {
            for (j, &uc) in u_grid.iter().enumerate() {
                assert_eq!(
                    s.confusion(i, j),
                    confusion(&e, &u, ec, uc).unwrap(),
                    "({ec}, {uc})"
                );
            }
        }
        let f1 = s.f1();
        let (bi, bj, bf) = s.best_f1().unwrap();
        assert_eq!(f1[bi * u_grid.len() + bj], bf);
        assert!(f1.iter().all(|&v| v <= bf));
    }

    #[test]
    fn stats_best_f1_skips_trivial_splits() {
        // Grids from 0: at (0, 0) every atom is high-error and flagged, F1 = 1 whatever u is.
        let mut r = rng(43);
        let e = draw_gamma(&mut r, 2.0, 1.0, 2000);
        let u = draw_gamma(&mut r, 2.0, 1.0, 2000); // unrelated to e
        let (eg, ug) = (linspace(0.0, 8.0, 30), linspace(0.0, 8.0, 30));
        let s = sweep(&e, &u, &eg, &ug).unwrap();
        assert_eq!(s.best_f1().unwrap(), (0, 0, 1.0));
        assert_eq!(
            s.confusion(0, 0).degenerate(),
            Some("every atom has e > e_c")
        );
        let (i, j, f) = s.best_informative_f1(10).unwrap();
        let c = s.confusion(i, j);
        assert!(c.degenerate().is_none() && 2 * (c.tp + c.fn_) <= c.total());
        // An unrelated uncertainty does no better than flagging at random.
        assert!(f - c.chance_f1() < 0.05, "{f} vs chance {}", c.chance_f1());
        // One that tracks the error does.
        let u2: Vec<f64> = e.iter().zip(&u).map(|(a, b)| a + 0.1 * b).collect();
        let s2 = sweep(&e, &u2, &eg, &ug).unwrap();
        let (i, j, f) = s2.best_informative_f1(10).unwrap();
        assert!(f > 0.8 && f - s2.confusion(i, j).chance_f1() > 0.2, "{f}");
        // In-distribution: no atom above any e_c but the first (0): nothing informative.
        let s = sweep(&e, &u, &[0.0, 50.0, 60.0], &ug).unwrap();
        assert_eq!(s.best_informative_f1(10), None);
        // Too few high-error atoms: one atom above e_c, flagged alone, is F1 = 1 by luck.
        let top = e.iter().cloned().fold(0.0, f64::max);
        let k = e.iter().position(|&v| v == top).unwrap();
        let mut u1 = u.clone();
        u1[k] = 100.0;
        let lone = sweep(&e, &u1, &[0.999 * top], &[50.0]).unwrap();
        assert_eq!(lone.best_informative_f1(1), Some((0, 0, 1.0)));
        assert_eq!(lone.best_informative_f1(10), None);
        let c = confusion(&e, &u, 50.0, 1.0).unwrap();
        assert_eq!(c.degenerate(), Some("no atom has e > e_c"));
        assert_eq!(c.f1(), 0.0);
        let c = confusion(&e, &u, 1.0, 100.0).unwrap();
        assert_eq!(c.degenerate(), Some("no atom has u > u_c"));
        assert_eq!(confusion(&e, &u, 1.0, 1.0).unwrap().degenerate(), None);
    }

    #[test]
    fn stats_miscalibration_area_is_exact_and_vanishes_when_calibrated() {
        // One PIT at 0.5: the integral of |F_n(p) - p| is 1/8 + 1/8.
        assert!((miscalibration_area(&[0.5]).unwrap() - 0.25).abs() < 1e-15);
        // PIT values at (i - 1/2)/n: area 1/(4n).
        let n = 10;
        let pit: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
        assert!((miscalibration_area(&pit).unwrap() - 0.25 / n as f64).abs() < 1e-15);

        // Perfectly calibrated: each error drawn from Maxwell(sigma_k) with its own sigma_k.
        let mut r = rng(42);
        let mut areas = Vec::new();
        for n in [100usize, 10_000, 400_000] {
            let sigmas = draw_gamma(&mut r, 3.0, 0.1, n);
            let errors: Vec<f64> = sigmas
                .iter()
                .map(|&s| draw_maxwell(&mut r, s, 1)[0])
                .collect();
            let pit = pit_maxwell(&errors, &sigmas).unwrap();
            let area = miscalibration_area(&pit).unwrap();
            // E|F_n(p) - p| ~ sqrt(p(1-p)/n): the area shrinks like 1/sqrt(n).
            assert!(area * (n as f64).sqrt() < 2.0, "n={n}: area {area}");
            areas.push(area);
        }
        assert!(areas[2] < 0.003 && areas[2] < areas[0], "{areas:?}");

        // Overconfident (sigma too small by 2x): curve below the diagonal, large area.
        let sigmas = draw_gamma(&mut r, 3.0, 0.1, 5000);
        let errors: Vec<f64> = sigmas
            .iter()
            .map(|&s| draw_maxwell(&mut r, s, 1)[0])
            .collect();
        let half: Vec<f64> = sigmas.iter().map(|s| 0.5 * s).collect();
        let c = calibration_curve(&pit_maxwell(&errors, &half).unwrap(), 21).unwrap();
        assert!(c.area > 0.2, "area {}", c.area);
        assert!(c.observed[10] < c.expected[10]);
        assert_eq!((c.expected[0], c.expected[20]), (0.0, 1.0));
        assert_eq!(c.observed[20], 1.0);
    }

    #[test]
    fn stats_spearman_and_auc_hand_cases() {
        // Ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]: rho = 4.5 / sqrt(4.5 * 5).
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((rho - 4.5 / (22.5f64).sqrt()).abs() < 1e-15);
        assert!((spearman(&[1.0, 2.0, 3.0], &[30.0, 20.0, 10.0]).unwrap() + 1.0).abs() < 1e-15);
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_err());
        // Structure-level tables: too few pairs to rank is NaN, not a perfect correlation.
        assert!(spearman_or_nan(&[1.0, 2.0], &[3.0, 4.0]).is_nan());
        assert!(spearman_or_nan(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 4.0]).is_nan());
        let five = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(spearman_or_nan(&five, &five), 1.0);
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );

        // The classic example: AUC 0.75.
        let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((auc - 0.75).abs() < 1e-15);
        // Ties count 1/2: pairs (2,1)=1, (2,2)=1/2, (3,1)=1, (3,2)=1 -> 3.5/4.
        let auc = roc_auc(&[1.0, 2.0, 2.0, 3.0], &[false, false, true, true]).unwrap();
        assert!((auc - 0.875).abs() < 1e-15);
        // All tied: 0.5.
        assert_eq!(
            roc_auc(&[1.0; 4], &[false, true, false, true]).unwrap(),
            0.5
        );
        assert!(roc_auc(&[1.0, 2.0], &[true, true]).is_err());
    }

    #[test]
    fn stats_stratified_auc_hand_cases() {
        // Positive 2.0 vs [1, 2, 3]: (1 + 0.5 + 0) / 3 = 0.5; positive 5.0 vs [4]: 1.
        let a = stratified_auc(&[2.0, 5.0], &[vec![1.0, 2.0, 3.0], vec![4.0]]).unwrap();
        assert!((a - 0.75).abs() < 1e-15, "{a}");
        // Shared negatives: equal to the Mann-Whitney AUC.
        let neg = vec![0.1, 0.4];
        let a = stratified_auc(&[0.35, 0.8], &[neg.clone(), neg]).unwrap();
        let b = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((a - b).abs() < 1e-15 && (a - 0.75).abs() < 1e-15);
        // Each positive only against its own stratum: a plain AUC would give 1/4 here.
        let a = stratified_auc(&[1.0, 10.0], &[vec![0.5], vec![9.0]]).unwrap();
        assert_eq!(a, 1.0);
        assert_eq!(
            roc_auc(&[1.0, 10.0, 0.5, 9.0], &[true, true, false, false]).unwrap(),
            0.75
        );
        assert!(stratified_auc(&[1.0], &[vec![]]).is_err());
        assert!(stratified_auc(&[], &[]).is_err());
        assert!(stratified_auc(&[1.0], &[vec![1.0], vec![2.0]]).is_err());
        assert!(stratified_auc(&[f64::NAN], &[vec![1.0]]).is_err());
    }

    #[test]
    fn stats_recall_at_budget_hand_cases() {
        assert_eq!(count_of_fraction(0.05, 100), 5);
        assert_eq!(count_of_fraction(0.10, 100), 10);
        assert_eq!(count_of_fraction(0.05, 101), 6);
        assert_eq!(count_of_fraction(0.05, 3), 1);
        assert_eq!(
            top_k_weights(&[3.0, 1.0, 2.0, 2.0, 2.0], 2),
            vec![1.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
        );
        // 20 atoms, errors 0..19: top 5% = atom 19; budget 10% = 2 atoms.
        let e: Vec<f64> = (0..20).map(f64::from).collect();
        assert_eq!(recall_at_budget(&e, &e, 0.05, 0.10).unwrap(), 1.0);
        let rev: Vec<f64> = e.iter().map(|v| -v).collect();
        assert_eq!(recall_at_budget(&e, &rev, 0.05, 0.10).unwrap(), 0.0);
        // Atom 19 is the second most uncertain: inside the budget of 2.
        let mut u = vec![0.0; 20];
        u[3] = 5.0;
        u[19] = 4.0;
        assert_eq!(recall_at_budget(&e, &u, 0.05, 0.10).unwrap(), 1.0);
        // Third most uncertain: outside.
        u[7] = 4.5;
        assert_eq!(recall_at_budget(&e, &u, 0.05, 0.10).unwrap(), 0.0);
        // Constant uncertainty: the expected recall of a random pick, budget / n.
        let r = recall_at_budget(&e, &[1.0; 20], 0.05, 0.10).unwrap();
        assert!((r - 0.1).abs() < 1e-15, "{r}");
        // 40 atoms: top 2 errors (38, 39); budget 4 holds 39 and one of three tied at 38's rank.
        let e: Vec<f64> = (0..40).map(f64::from).collect();
        let mut u = vec![0.0; 40];
        u[39] = 9.0;
        u[0] = 8.0;
        u[1] = 7.0;
        for i in [38, 2, 3] {
            u[i] = 6.0;
        }
        let r = recall_at_budget(&e, &u, 0.05, 0.10).unwrap();
        assert!((r - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-15, "{r}");
        assert!(recall_at_budget(&e, &u, 0.0, 0.1).is_err());
        assert!(recall_at_budget(&e, &u[..3], 0.05, 0.1).is_err());
    }
}
