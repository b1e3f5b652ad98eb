//! A data-driven upper (stability) cutoff from the relation between force error and
//! uncertainty.
//!
//! Model: given an atom's uncertainty u, its force-error magnitude is Maxwell with a scale that
//! grows with u, e | u ~ Maxwell(s(u)), s(u) = a + b u^k with a, b, k >= 0. The parameters
//! maximize the Maxwell likelihood of the (error, uncertainty) pairs of validation atoms plus any
//! labelled high-uncertainty structures (the candidates an active-learning loop labels are
//! exactly such data).
//!
//! The halting rule: halt when P(e > e_max | u) >= p_halt. Since P(e > e_max | s) =
//! Q(3/2, e_max^2 / 2 s^2) grows with s, that is s(u) >= s_halt = e_max / sqrt(2 Q^-1(3/2,
//! p_halt)) (s_halt = 0.650 e_max at p_halt = 0.5: the median of Maxwell(s) is 1.538 s), and
//! u_max = ((s_halt - a) / b)^(1/k).
//!
//! No upper cutoff when the method cannot reach s_halt: b = 0 (no trend), s(u) still below
//! s_halt at the method's supremum (a saturating estimator such as the sparse GP), or u_max more
//! than [`MAX_EXTRAPOLATION`] times beyond the largest uncertainty in the data (the trend does
//! not support it). When the errors at the smallest uncertainties already reach s_halt (a >=
//! s_halt), the model itself is too inaccurate and the fit reports that instead.
//!
//! The fit: u and e are scaled to O(1) (by the median of u and the root mean square of e); for k
//! on a log grid from 1/8 to about 38 (22 steps of 64^(1/16)) the likelihood is maximized over (ln a, ln b) by Nelder–Mead, and
//! the best k refined by Brent's method in ln k.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::fit::brent_min;
use super::special::gamma_q_inv;

/// Default P(e > e_max | u) at which to halt.
pub const DEFAULT_P_HALT: f64 = 0.5;
/// How far beyond the largest uncertainty in the data u_max may lie.
pub const MAX_EXTRAPOLATION: f64 = 20.0;
/// Range of the exponent k: a log grid from K_MIN, K_STEPS steps of a factor 64^(1/16) (to
/// about 38). The grid reached 8 until contact joined: its errors rise as a steep power of u
/// (u = the shortest training distance over the closest neighbour's, just above 1), where k
/// near 8 was the bound, not the fit; the first 17 points are the earlier grid.
const K_MIN: f64 = 0.125;
const K_STEPS: usize = 22;

/// s(u) = a + b u^k (eV/Å; u in the method's units).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorScale {
    /// Error scale at u = 0.
    pub a: f64,
    /// Slope.
    pub b: f64,
    /// Exponent.
    pub k: f64,
}

impl ErrorScale {
    /// s(u).
    pub fn s(&self, u: f64) -> f64 {
        self.a + self.b * u.max(0.0).powf(self.k)
    }
    /// The u with s(u) = s, if any (s > a, b > 0).
    pub fn u_at(&self, s: f64) -> Option<f64> {
        if s > self.a && self.b > 0.0 {
            let u = ((s - self.a) / self.b).powf(1.0 / self.k);
            u.is_finite().then_some(u)
        } else {
            None
        }
    }
    /// P(e > e | u) under Maxwell(s(u)).
    pub fn p_exceed(&self, u: f64, e: f64) -> f64 {
        let s = self.s(u);
        super::special::gamma_q(1.5, e * e / (2.0 * s * s))
    }
}

/// The fitted relation and the upper cutoff it gives (or why there is none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionalUpper {
    /// The fitted s(u).
    pub scale: ErrorScale,
    /// Pairs fitted.
    pub n_fit: usize,
    /// Of those, pairs from labelled high-uncertainty structures.
    pub n_high: usize,
    /// Largest uncertainty among the pairs.
    pub u_seen_max: f64,
    /// Largest error among the pairs, eV/Å.
    pub e_seen_max: f64,
    /// Error stability limit e_max, eV/Å.
    pub e_max: f64,
    /// P(e > e_max | u) at which to halt.
    pub p_halt: f64,
    /// The error scale s_halt at which P(e > e_max) = p_halt.
    pub s_halt: f64,
    /// The method's supremum, for a saturating method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u_sup: Option<f64>,
    /// The upper cutoff; `None`: the method cannot reach e_max (see `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u_max: Option<f64>,
    /// Why there is no upper cutoff, or a caveat about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ConditionalUpper {
    /// `ln(1 - P(e > e_max | u))`: an atom's share of the log-probability that no atom of a
    /// frame errs above e_max (the frame rule halts when `1 - exp(sum) >= p_halt`).
    /// NaN for a NaN `u` (a blown-up structure: the frame rule then halts).
    pub fn log_calm(&self, u: f64) -> f64 {
        if u.is_nan() {
            return f64::NAN;
        }
        (-self.scale.p_exceed(u, self.e_max)).ln_1p()
    }

    /// Whether a frame whose atoms' [`ConditionalUpper::log_calm`] sum to `log_calm` halts by
    /// the frame rule, and its probability of an error above e_max.
    /// An undefined probability (a NaN uncertainty) halts.
    pub fn frame_halts(&self, log_calm: f64) -> (bool, f64) {
        let p = -log_calm.exp_m1();
        // -0 (no atom with any chance) and an underflowed probability below the smallest normal
        // double (whose digits mean nothing) print as 0.
        let p = if p.abs() < f64::MIN_POSITIVE { 0.0 } else { p };
        (!(p < self.p_halt), p)
    }

    /// The fewest atoms of this species that can make the frame rule halt at `p_halt` (the
    /// watch compares with the smallest p_halt of the model's species, at most this relation's
    /// own): 1 when one atom can (an upper cutoff); otherwise the atoms at the largest
    /// uncertainty the method reaches (`u_sup` when it saturates, [`MAX_EXTRAPOLATION`] x the
    /// largest in the data when s grows without bound, any u when s does not grow) whose
    /// probabilities together reach p_halt; infinite when that probability is 0.
    pub fn atoms_to_halt(&self, p_halt: f64) -> f64 {
        if self.u_max.is_some() {
            return 1.0;
        }
        let u_top = match self.u_sup {
            // As in `conditional_upper`: values the data reached are reachable too.
            Some(u) => u.max(self.u_seen_max),
            // A scale that grows without bound but reaches s_halt only beyond
            // MAX_EXTRAPOLATION x the data (why there is no u_max): as far as the calibration
            // trusts the trend. Beyond it one atom would halt the frame, at uncertainties that
            // a run may never show (an atom 0.01 Å from another graded 10 by gamma).
            None if self.scale.b > 0.0 => MAX_EXTRAPOLATION * self.u_seen_max,
            None => 0.0,
        };
        let lc = self.log_calm(u_top);
        if lc < 0.0 {
            ((-p_halt).ln_1p() / lc).ceil().max(1.0)
        } else {
            f64::INFINITY
        }
    }
}

/// The p_halt the frame rule compares a frame's probability with, given the relations of a
/// model's species (None: no fitted relation): the smallest, so that it does not depend on which
/// species a frame (or an MPI rank's share of it) holds. None if no species has a relation.
pub fn frame_p_halt<'a>(
    relations: impl IntoIterator<Item = Option<&'a ConditionalUpper>>,
) -> Option<f64> {
    relations
        .into_iter()
        .flatten()
        .map(|c| c.p_halt)
        .reduce(f64::min)
}

/// The distribution of the number of successes among independent trials of probabilities `ps`
/// (Poisson binomial): element k is P(exactly k successes), k = 0..=ps.len(). Probabilities
/// outside [0, 1] (or NaN) are clamped into it (NaN as 1: an undefined frame probability halts).
pub fn poisson_binomial(ps: &[f64]) -> Vec<f64> {
    let mut pmf = vec![0.0; ps.len() + 1];
    pmf[0] = 1.0;
    for (n, &p) in ps.iter().enumerate() {
        let p = if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) };
        for k in (0..=n + 1).rev() {
            let stay = pmf[k] * (1.0 - p);
            let rise = if k > 0 { pmf[k - 1] * p } else { 0.0 };
            pmf[k] = stay + rise;
        }
    }
    pmf
}

/// The halting rule the watch's `upper auto` applies, as `aceuq calibrate` chose it by scoring
/// the candidates on the labelled frames it was given (validation and `--high`): the default
/// quantity's frame rule (`frame`), the vote of a jury of methods (`vote`: an atom above the
/// upper cutoff of any juror, or the frame rules of at least two jurors at p_halt), or one
/// juror's own frame rule (`juror`: an atom above its upper cutoff, or its frame probability at
/// p_halt; the best-scoring juror other than gamma). The vote is chosen only when it makes fewer
/// mistakes there (unstable frames missed plus false halts) than the frame rule, a single juror
/// only when it makes fewer than both: a tie keeps the cheaper rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HaltRule {
    /// `frame`, `vote` or `juror`.
    pub rule: String,
    /// The jurors (methods with a fitted error scale for every species), in the watch's order.
    pub jury: Vec<String>,
    /// The labelled frames scored, and those whose true largest force error exceeds e_max.
    pub frames: usize,
    pub unstable: usize,
    /// The frame rule's unstable frames halted and false halts (true largest force error below
    /// e_max / 3).
    pub frame_caught: usize,
    pub frame_false: usize,
    /// The same for the vote.
    pub vote_caught: usize,
    pub vote_false: usize,
    /// Force-error limit of the calibration, eV/Å.
    pub e_max: f64,
    /// The juror other than gamma whose own frame rule scored best, and its score (absent in
    /// files written before single jurors were scored: readers that do not know it keep the
    /// frame rule or the vote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub juror: Option<String>,
    #[serde(default)]
    pub juror_caught: usize,
    #[serde(default)]
    pub juror_false: usize,
}

/// One of the rules a [`HaltRule`] scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Frame,
    Vote,
    Juror,
}

impl HaltRule {
    /// Whether the watch's `upper auto` halts through jurors (the vote, or one juror's frame
    /// rule) instead of the watched quantity's own frame rule.
    pub fn votes(&self) -> bool {
        self.rule == "vote" || self.rule == "juror"
    }

    /// The methods that sit for the watch's `upper auto`: the jury for the vote, the one juror
    /// for `juror`, the jury scored otherwise.
    pub fn sitting(&self) -> Vec<String> {
        match (self.rule.as_str(), &self.juror) {
            ("juror", Some(j)) => vec![j.clone()],
            _ => self.jury.clone(),
        }
    }

    /// Mistakes of a rule: unstable frames missed plus false halts.
    pub fn mistakes(&self, kind: RuleKind) -> usize {
        let (caught, false_halts) = match kind {
            RuleKind::Vote => (self.vote_caught, self.vote_false),
            RuleKind::Frame => (self.frame_caught, self.frame_false),
            RuleKind::Juror => (self.juror_caught, self.juror_false),
        };
        self.unstable - caught.min(self.unstable) + false_halts
    }

    /// One line for logs and `aceuq info`.
    pub fn note(&self) -> String {
        let juror = match &self.juror {
            Some(j) => format!(
                ", {j}'s own frame rule {} with {}",
                self.juror_caught, self.juror_false
            ),
            None => String::new(),
        };
        let chosen = match (self.rule.as_str(), &self.juror) {
            ("vote", _) => "votes".to_string(),
            ("juror", Some(j)) => format!("halts by {j}'s frame rule"),
            _ => "uses the frame rule".to_string(),
        };
        let tie = if self.votes() {
            ""
        } else if (self.jury.len() >= 2
            && self.mistakes(RuleKind::Vote) == self.mistakes(RuleKind::Frame))
            || (self.juror.is_some()
                && self.mistakes(RuleKind::Juror) == self.mistakes(RuleKind::Frame))
        {
            " (a tie keeps the frame rule: one method per check)"
        } else {
            ""
        };
        // A jury of one (gamma alone) has no vote of its own.
        let vote = if self.jury.len() >= 2 {
            format!(
                "the vote of {} halts {} of those with {} false halts, ",
                self.jury.join(", "),
                self.vote_caught,
                self.vote_false
            )
        } else {
            String::new()
        };
        format!(
            "upper auto {chosen}: on the calibration's {} labelled frames ({} above {} eV/Å; \
             false halts: below {:.3} eV/Å) {vote}the frame rule {} with {}{juror}{tie}",
            self.frames,
            self.unstable,
            self.e_max,
            self.e_max / 3.0,
            self.frame_caught,
            self.frame_false,
        )
    }
}

/// Negative Maxwell log-likelihood without constants: sum 3 ln s + e^2 / 2 s^2.
fn nll(e: &[f64], v: &[f64], a: f64, b: f64) -> f64 {
    let mut t = 0.0;
    for (&ei, &vi) in e.iter().zip(v) {
        let s = a + b * vi;
        t += 3.0 * s.ln() + ei * ei / (2.0 * s * s);
    }
    t
}

/// Nelder–Mead minimization in two dimensions.
fn nelder_mead2(f: impl Fn([f64; 2]) -> f64, x0: [f64; 2], step: f64) -> ([f64; 2], f64) {
    let mut p = [x0, [x0[0] + step, x0[1]], [x0[0], x0[1] + step]];
    let mut fv = [f(p[0]), f(p[1]), f(p[2])];
    for _ in 0..400 {
        let mut idx = [0usize, 1, 2];
        idx.sort_by(|&i, &j| {
            fv[i]
                .partial_cmp(&fv[j])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let (b, m, w) = (idx[0], idx[1], idx[2]);
        if (fv[w] - fv[b]).abs() <= 1e-12 * (1.0 + fv[b].abs())
            && (p[w][0] - p[b][0]).abs().max((p[w][1] - p[b][1]).abs()) < 1e-9
        {
            break;
        }
        let c = [(p[b][0] + p[m][0]) / 2.0, (p[b][1] + p[m][1]) / 2.0];
        let at = |t: f64| [c[0] + t * (p[w][0] - c[0]), c[1] + t * (p[w][1] - c[1])];
        let xr = at(-1.0);
        let fr = f(xr);
        if fr < fv[b] {
            let xe = at(-2.0);
            let fe = f(xe);
            (p[w], fv[w]) = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < fv[m] {
            (p[w], fv[w]) = (xr, fr);
        } else {
            let xc = if fr < fv[w] { at(-0.5) } else { at(0.5) };
            let fc = f(xc);
            if fc < fv[w].min(fr) {
                (p[w], fv[w]) = (xc, fc);
            } else {
                for i in [m, w] {
                    p[i] = [(p[i][0] + p[b][0]) / 2.0, (p[i][1] + p[b][1]) / 2.0];
                    fv[i] = f(p[i]);
                }
            }
        }
    }
    let b = (0..3)
        .min_by(|&i, &j| {
            fv[i]
                .partial_cmp(&fv[j])
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap();
    (p[b], fv[b])
}

/// Maximum-likelihood s(u) = a + b u^k for force errors `e` (> 0, eV/Å) and uncertainties `u`
/// (>= 0), paired.
pub fn fit_error_scale(e: &[f64], u: &[f64]) -> Result<ErrorScale, StatsError> {
    if e.len() != u.len() {
        return Err(StatsError::LengthMismatch {
            what: "errors and uncertainties",
            left: e.len(),
            right: u.len(),
        });
    }
    super::fit::check_sample(e)?;
    if e.len() < 10 {
        return Err(StatsError::TooFewSamples {
            n: e.len(),
            needed: 10,
        });
    }
    for (index, &value) in u.iter().enumerate() {
        if !(value.is_finite() && value >= 0.0) {
            return Err(StatsError::BadValue {
                index,
                value,
                expected: "finite and >= 0",
            });
        }
    }
    let mut us = u.to_vec();
    us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let u_ref = {
        let m = us[us.len() / 2];
        if m > 0.0 {
            m
        } else {
            us[us.len() - 1].max(1e-300)
        }
    };
    let e_ref = (e.iter().map(|x| x * x).sum::<f64>() / (3.0 * e.len() as f64)).sqrt();
    let en: Vec<f64> = e.iter().map(|x| x / e_ref).collect();
    let un: Vec<f64> = u.iter().map(|x| x / u_ref).collect();
    // For fixed k: best (ln a, ln b); scaled units, where a + b ~ 1 at the median u.
    let best_for_k = |k: f64| -> ([f64; 2], f64) {
        let v: Vec<f64> = un.iter().map(|x| x.powf(k)).collect();
        let f = |p: [f64; 2]| {
            let (a, b) = (p[0].max(-60.0).exp(), p[1].max(-60.0).exp());
            let r = nll(&en, &v, a, b);
            if r.is_finite() { r } else { f64::INFINITY }
        };
        let mut best = nelder_mead2(f, [(0.5f64).ln(), (0.5f64).ln()], 1.0);
        // Restarts from the corners (errors independent of u; errors proportional to u^k).
        for x0 in [[0.0, -8.0], [-8.0, 0.0]] {
            let r = nelder_mead2(f, x0, 1.0);
            if r.1 < best.1 {
                best = r;
            }
        }
        best
    };
    let grid: Vec<f64> = (0..=K_STEPS)
        .map(|i| (K_MIN.ln() + 64f64.ln() * i as f64 / 16.0).exp())
        .collect();
    let vals: Vec<f64> = grid.iter().map(|&k| best_for_k(k).1).collect();
    let i = (0..grid.len())
        .min_by(|&i, &j| vals[i].partial_cmp(&vals[j]).unwrap())
        .unwrap();
    let lo = grid[i.saturating_sub(1)].ln();
    let hi = grid[(i + 1).min(grid.len() - 1)].ln();
    let (lk, f) = brent_min(|lk| best_for_k(lk.exp()).1, lo, hi, 1e-6);
    let k = if f <= vals[i] { lk.exp() } else { grid[i] };
    let (p, _) = best_for_k(k);
    let (a, b) = (p[0].max(-60.0).exp(), p[1].max(-60.0).exp());
    // Back to physical units: s = e_ref (a + b (u / u_ref)^k).
    let mut scale = ErrorScale {
        a: e_ref * a,
        b: e_ref * b / u_ref.powf(k),
        k,
    };
    // Parameters pinned at exp(-60) are zero.
    if a < 1e-20 {
        scale.a = 0.0;
    }
    if b < 1e-20 {
        scale.b = 0.0;
    }
    Ok(scale)
}

/// Fewest atoms at or above a candidate u_max whose errors can contradict it.
const MIN_CONTRADICTING: usize = 3;

/// If the data contradict halting at `x` (at least [`MIN_CONTRADICTING`] atoms with u >= x, of
/// which fewer than p_halt / 2 have e > e_max), the smallest data value t > x where they no
/// longer do (fewer such atoms above t, or enough large errors), with the counts at x.
fn contradicted(
    e: &[f64],
    u: &[f64],
    x: f64,
    e_max: f64,
    p_halt: f64,
) -> Option<(f64, usize, usize)> {
    let mut pairs: Vec<(f64, bool)> = u
        .iter()
        .zip(e)
        .filter(|p| *p.0 >= x)
        .map(|(&a, &b)| (a, b > e_max))
        .collect();
    let bad = |p: &[(f64, bool)]| {
        let k = p.iter().filter(|q| q.1).count();
        p.len() >= MIN_CONTRADICTING && (k as f64) < 0.5 * p_halt * p.len() as f64
    };
    if !bad(&pairs) {
        return None;
    }
    let n0 = pairs.len();
    let k0 = pairs.iter().filter(|q| q.1).count();
    pairs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    // Drop the lowest values until the rest no longer contradict; halt just above the last
    // dropped one.
    let mut i = 0;
    while i < pairs.len() && bad(&pairs[i..]) {
        i += 1;
    }
    let t = pairs[i - 1].0;
    Some((t, n0, k0))
}

/// The error scale at which P(e > e_max) = p_halt under Maxwell.
pub fn s_halt(e_max: f64, p_halt: f64) -> f64 {
    e_max / (2.0 * gamma_q_inv(1.5, p_halt)).sqrt()
}

/// Fits s(u) on the pairs (`n_high` of them from labelled high-uncertainty structures) and
/// derives the upper cutoff, or why there is none. `u_sup`: the method's supremum if it
/// saturates.
pub fn conditional_upper(
    e: &[f64],
    u: &[f64],
    n_high: usize,
    e_max: f64,
    p_halt: f64,
    u_sup: Option<f64>,
) -> Result<ConditionalUpper, StatsError> {
    if !(e_max.is_finite() && e_max > 0.0) {
        return Err(StatsError::InvalidParameter {
            name: "e_max",
            value: e_max,
        });
    }
    if !(p_halt > 0.0 && p_halt < 1.0) {
        return Err(StatsError::InvalidParameter {
            name: "p_halt",
            value: p_halt,
        });
    }
    let scale = fit_error_scale(e, u)?;
    let u_seen_max = u.iter().fold(0.0_f64, |m, &v| m.max(v));
    let e_seen_max = e.iter().fold(0.0_f64, |m, &v| m.max(v));
    let sh = s_halt(e_max, p_halt);
    let mut u_max = None;
    let reason = if scale.a >= sh {
        Some(format!(
            "the errors at the lowest uncertainty already reach the halting level (s(0) = {:.3} \
             eV/Å >= {sh:.3}): the potential itself is not accurate to {e_max} eV/Å; refit it \
             before trusting any cutoff",
            scale.a
        ))
    } else {
        match scale.u_at(sh) {
            None => Some(format!(
                "the force error does not grow with this uncertainty (s(u) = {:.3} eV/Å \
                 everywhere): it cannot flag errors of {e_max} eV/Å",
                scale.a
            )),
            // The far-field plateau is not a bound near the data (a GP's predicted mean can
            // rise above its prior there): values the data reached count as reachable.
            Some(x) => match u_sup.map(|sup| (sup, sup.max(u_seen_max))) {
                Some((sup, reach)) if x > reach => Some(format!(
                    "it saturates at {sup:.4e} far from the data (the largest value in the data \
                     is {u_seen_max:.4e}), where s(u) = {:.3} eV/Å is below the {sh:.3} eV/Å \
                     needed to expect errors of {e_max} eV/Å",
                    scale.s(reach)
                )),
                _ if x > MAX_EXTRAPOLATION * u_seen_max => Some(format!(
                    "it would reach {e_max} eV/Å only at u = {x:.4e}, more than \
                     {MAX_EXTRAPOLATION}x the largest value in the data ({u_seen_max:.4e}); label \
                     high-uncertainty structures (e.g. the candidates the watch dumps) and \
                     recalibrate with them"
                )),
                _ if let Some((t, n, k)) = contradicted(e, u, x, e_max, p_halt) => {
                    // The fit puts the halting level inside the data, where the atoms show
                    // far fewer large errors than it promises: halt only above them.
                    u_max = Some(t);
                    Some(format!(
                        "raised from {x:.4e} to {t:.4e}: {n} atoms with u >= {x:.4e} have only {k} \
                         force errors above {e_max} eV/Å, fewer than the fit promises"
                    ))
                }
                _ => {
                    u_max = Some(x);
                    (x > u_seen_max).then(|| {
                        format!(
                            "extrapolated: u_max = {x:.4e} is beyond the largest value in the \
                             data ({u_seen_max:.4e}); labelled high-uncertainty structures make it \
                             firmer"
                        )
                    })
                }
            },
        }
    };
    Ok(ConditionalUpper {
        scale,
        n_fit: e.len(),
        n_high,
        u_seen_max,
        e_seen_max,
        e_max,
        p_halt,
        s_halt: sh,
        u_sup,
        u_max,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_binomial_is_the_binomial_for_equal_probabilities() {
        let pmf = poisson_binomial(&[0.3; 5]);
        assert_eq!(pmf.len(), 6);
        // C(5, 2) 0.3^2 0.7^3 and C(5, 5) 0.3^5.
        assert!((pmf[2] - 10.0 * 0.09 * 0.343).abs() < 1e-14, "{pmf:?}");
        assert!((pmf[5] - 0.3f64.powi(5)).abs() < 1e-16, "{pmf:?}");
        assert!((pmf.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        // Certain and impossible trials shift the distribution; NaN counts as certain.
        let pmf = poisson_binomial(&[1.0, 0.0, f64::NAN, 0.5]);
        assert_eq!(pmf, vec![0.0, 0.0, 0.5, 0.5, 0.0]);
        assert_eq!(poisson_binomial(&[]), vec![1.0]);
    }
    use crate::stats::tests::{draw_gamma, rng};
    use rand_distr::Distribution as _;

    /// The atoms the frame rule needs: 1 with an upper cutoff or an unbounded scale within
    /// reach of the data; for a
    /// saturating method, the n at which n atoms at u_sup reach p_halt, checked against the
    /// Maxwell tail written out (erfc-free: for x/s = 1/0.17 the series term dominates) and
    /// against the rule itself (n - 1 atoms stay below p_halt, n reach it); none with b = 0.
    #[test]
    fn atoms_to_halt_of_a_saturating_method() {
        let mut c = ConditionalUpper {
            scale: ErrorScale {
                a: 0.02,
                b: 0.1,
                k: 1.0,
            },
            n_fit: 150,
            n_high: 0,
            u_seen_max: 1.4,
            e_seen_max: 0.1,
            e_max: 1.0,
            p_halt: 0.5,
            s_halt: 0.65,
            u_sup: Some(1.5),
            u_max: None,
            reason: None,
        };
        let n = c.atoms_to_halt(c.p_halt);
        // P(e > 1 | s = 0.17) for a Maxwell: sqrt(2/pi) (x/s) exp(-x^2/2s^2) + erfc(x/(sqrt2 s)),
        // the erfc term ~ exp(-x^2/2s^2) s/x sqrt(2/pi) (1 - ...): a few percent of the first.
        let (x, sd) = (1.0, 0.17);
        let lead =
            (2.0 / std::f64::consts::PI).sqrt() * (x / sd) * (-x * x / (2.0 * sd * sd)).exp();
        let p = c.scale.p_exceed(1.5, 1.0);
        assert!(p > lead && p < 1.1 * lead, "{p} vs leading term {lead}");
        let frame = |k: f64| c.frame_halts(k * c.log_calm(1.5)).0;
        assert!(n > 1e5 && frame(n) && !frame(n - 1.0), "{n}");
        // A smaller p_halt (another species') needs fewer atoms.
        assert!(c.atoms_to_halt(0.1) < n);
        c.u_max = Some(3.0);
        assert_eq!(c.atoms_to_halt(0.5), 1.0);
        (c.u_max, c.u_sup) = (None, None);
        assert_eq!(c.atoms_to_halt(0.5), 1.0);
        // An unbounded scale that reaches s_halt (0.65 at u = 6.3) only beyond 20x the data
        // (u 0.2): the atoms at u = 4, s = 0.42, that together reach p_halt.
        c.u_seen_max = 0.2;
        let n = c.atoms_to_halt(0.5);
        let frame = |k: f64| c.frame_halts(k * c.log_calm(4.0)).0;
        assert!(
            n > 1.0 && n.is_finite() && frame(n) && !frame(n - 1.0),
            "{n}"
        );
        c.u_seen_max = 1.4;
        // s constant at a: every atom has the same probability.
        (c.scale.a, c.scale.b) = (0.25, 0.0);
        let n = c.atoms_to_halt(0.5);
        assert!(n.is_finite() && c.frame_halts(n * c.log_calm(0.0)).0, "{n}");
        assert!(!c.frame_halts((n - 1.0) * c.log_calm(0.0)).0, "{n}");
        c.scale.a = 0.0;
        assert_eq!(c.atoms_to_halt(0.5), f64::INFINITY);
        // A NaN uncertainty makes the frame's probability undefined, and that halts.
        assert!(c.log_calm(f64::NAN).is_nan() && c.frame_halts(f64::NAN).0);
        // An underflowed probability (subnormal) is 0; a small normal one is kept.
        assert_eq!(c.frame_halts(-1e-320).1.to_bits(), 0);
        assert_eq!(c.frame_halts(-0.0).1.to_bits(), 0);
        assert_eq!(c.frame_halts(-1e-300).1, 1e-300);
    }

    /// Pairs drawn from the model itself: the fit recovers s(u), and u_max is where
    /// P(e > e_max | u) = p_halt.
    #[test]
    fn stats_upper_recovers_the_error_scale_and_halts_where_promised() {
        let mut r = rng(3);
        let truth = ErrorScale {
            a: 0.02,
            b: 0.01,
            k: 1.5,
        };
        let u = draw_gamma(&mut r, 1.2, 3.0, 6000);
        let nd = rand_distr::Normal::new(0.0, 1.0).unwrap();
        let e: Vec<f64> = u
            .iter()
            .map(|&x| {
                let s = truth.s(x);
                let v: [f64; 3] = [nd.sample(&mut r), nd.sample(&mut r), nd.sample(&mut r)];
                s * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
            })
            .collect();
        let fit = fit_error_scale(&e, &u).unwrap();
        for x in [1.0, 5.0, 20.0] {
            let rel = fit.s(x) / truth.s(x) - 1.0;
            assert!(rel.abs() < 0.06, "u {x}: {fit:?}");
        }
        let up = conditional_upper(&e, &u, 0, 1.0, 0.5, None).unwrap();
        let u_max = up.u_max.unwrap();
        assert!((up.scale.p_exceed(u_max, 1.0) - 0.5).abs() < 1e-9);
        let true_u = truth.u_at(s_halt(1.0, 0.5)).unwrap();
        assert!((u_max / true_u - 1.0).abs() < 0.1, "{u_max} vs {true_u}");
        // s_halt: the median of Maxwell(s) is 1.5382 s.
        assert!((s_halt(1.0, 0.5) * 1.538_172 - 1.0).abs() < 1e-5);
        // A saturating method whose supremum lies below u_max (and whose values stay below
        // it) gets no upper cutoff.
        let sup = 0.5 * u_max;
        let (es, us): (Vec<f64>, Vec<f64>) = e
            .iter()
            .zip(&u)
            .filter(|p| *p.1 <= sup)
            .map(|(a, b)| (*a, *b))
            .unzip();
        let sat = conditional_upper(&es, &us, 0, 1.0, 0.5, Some(sup)).unwrap();
        assert!(sat.u_max.is_none() && sat.reason.unwrap().contains("saturates"));
        // The far-field plateau of a GP is not a bound near the data: values the data reached
        // above it are reachable, and the cutoff stands.
        let near = conditional_upper(&e, &u, 0, 1.0, 0.5, Some(sup)).unwrap();
        assert_eq!(near.u_max, Some(u_max), "{near:?}");
        // A halting level far beyond the data is refused.
        let far = conditional_upper(&e, &u, 0, 1000.0, 0.5, None).unwrap();
        assert!(far.u_max.is_none(), "{far:?}");
        assert!(far.reason.unwrap().contains("recalibrate"));
    }

    /// A fit that puts the halting level inside the data, where the atoms have small errors,
    /// is raised above those atoms.
    #[test]
    fn stats_upper_is_raised_above_calm_atoms() {
        let mut r = rng(5);
        let u = draw_gamma(&mut r, 2.0, 1.0, 2000);
        let nd = rand_distr::Normal::new(0.0, 1.0).unwrap();
        let truth = ErrorScale {
            a: 0.02,
            b: 0.05,
            k: 2.0,
        };
        let mut e: Vec<f64> = u
            .iter()
            .map(|&x| {
                let s = truth.s(x);
                let v: [f64; 3] = [nd.sample(&mut r), nd.sample(&mut r), nd.sample(&mut r)];
                s * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
            })
            .collect();
        let up = conditional_upper(&e, &u, 0, 1.0, 0.5, None).unwrap();
        let x = up.u_max.unwrap();
        assert!(
            up.reason.as_deref().is_none_or(|r| !r.contains("raised")),
            "{up:?}"
        );
        // Make every atom above x calm: the fit (still driven by the bulk) is contradicted.
        let mut above = 0;
        for (ei, &ui) in e.iter_mut().zip(&u) {
            if ui >= 0.9 * x {
                *ei = 0.01;
                above += 1;
            }
        }
        assert!(above >= 3, "{above}");
        let up = conditional_upper(&e, &u, 0, 1.0, 0.5, None).unwrap();
        if let Some(t) = up.u_max {
            let umax = u.iter().fold(0.0_f64, |a, &b| a.max(b));
            assert!(t >= 0.9 * x, "{up:?}");
            // No three calm atoms lie above it.
            assert!(u.iter().filter(|&&v| v > t).count() < 3 || t >= umax);
        }
    }

    #[test]
    fn stats_upper_sees_no_trend_and_a_bad_model() {
        let mut r = rng(4);
        let u = draw_gamma(&mut r, 2.0, 1.0, 3000);
        // Errors independent of u.
        let e = draw_gamma(&mut r, 3.0, 0.02, 3000);
        let up = conditional_upper(&e, &u, 0, 1.0, 0.5, None).unwrap();
        assert!(up.u_max.is_none(), "{up:?}");
        // Errors of ~1 eV/Å everywhere: the model is the problem.
        let big: Vec<f64> = e.iter().map(|x| x * 50.0).collect();
        let up = conditional_upper(&big, &u, 0, 1.0, 0.5, None).unwrap();
        assert!(up.u_max.is_none());
        assert!(up.reason.unwrap().contains("not accurate"), "");
        assert!(conditional_upper(&e, &u[..10], 0, 1.0, 0.5, None).is_err());
        assert!(conditional_upper(&e, &u, 0, 1.0, 1.5, None).is_err());
    }
}
