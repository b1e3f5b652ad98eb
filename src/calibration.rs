//! Statistical cutoffs of a [`Potential`]'s uncertainty methods from labelled data: per species,
//! and for `gamma_local` per (species, cluster), the validation atoms grouped by the cluster that
//! graded them ([`crate::stats::cutoff::calibrate_clusters`]; clusters with too few atoms keep
//! the species cutoffs). Used by `aceuq calibrate` and by the closed loop.
//!
//! Layer 5 (beside [`crate::potential`]). Imports: `potential`, `stats::cutoff`, `uq`, `error`.

use crate::error::{Error, ErrorKind};
use crate::potential::Potential;
use crate::stats::cutoff::{
    Calibration, CalibrationOptions, ClusterCalibration, Spread, UpperRule, calibrate_clusters,
    calibrate_with_high, predictive_exceedances,
};
use crate::stats::tail::TailPolicy;
use crate::stats::upper::{HaltRule, RuleKind};
use crate::uq::{self, Method};

/// What [`calibrate_potential`] derived.
#[derive(Debug)]
pub struct CalibrationResult {
    /// The model's calibration table after this run: the entries of the calibrated (species,
    /// method) pairs replaced (their per-cluster entries too), the others kept.
    pub calibration: Vec<Calibration>,
    /// Rows of [`Calibration::table_header`] for every fitted entry (species-level and cluster).
    pub rows: Vec<Vec<String>>,
    /// Rows of [`cluster_header`]: every `gamma_local` cluster, fitted or falling back.
    pub cluster_rows: Vec<Vec<String>>,
    /// Species skipped for lack of validation atoms.
    pub warnings: Vec<String>,
    /// Every stored entry's sanity-gate warnings ("Li gamma: ...").
    pub caveats: Vec<String>,
    /// The halting rule for the watch's `upper auto`, scored on the labelled frames (None: the
    /// calibration has no jury of two methods with a fitted error scale, or no `gamma`).
    pub halt_rule: Option<HaltRule>,
}

/// The methods that sit on the jury of the watch's `upper vote`, in its order.
pub const JURY: [Method; 4] = [
    Method::Gamma,
    Method::Ensemble,
    Method::Distance,
    Method::Gp,
];

/// The methods whose own frame rule the calibration scores as a halting rule for the watch's
/// `upper auto` besides gamma's (`juror`): the jury's and contact. Contact does not sit on the
/// vote's jury: on Al–Mg its frame rule halts 5 calm frames, and as a juror it added a false
/// halt to the vote (`docs/benchmarks/cutoffs/README.md`).
pub const SINGLE_JURORS: [Method; 4] = [
    Method::Ensemble,
    Method::Distance,
    Method::Gp,
    Method::Contact,
];

/// Columns of [`CalibrationResult::cluster_rows`].
pub fn cluster_header() -> Vec<String> {
    [
        "species", "cluster", "atoms", "N", "u_c", "u_max", "cutoffs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// How [`calibrate_potential`] derives the cutoffs (defaults: see [`CalibrationOptions::new`]).
#[derive(Clone, Debug)]
pub struct CalibrateSettings {
    /// Force error (eV/Å) at which the MD is considered unstable.
    pub max_error: f64,
    /// Which model gives the 1 - 1/N quantiles.
    pub tail: TailPolicy,
    /// How the upper cutoff is derived.
    pub upper_rule: UpperRule,
    /// Conditional rule: halt where P(e > max_error | u) reaches this.
    pub p_halt: f64,
    /// Stored with every entry (what the cutoffs were derived from).
    pub provenance: Option<String>,
}

impl CalibrateSettings {
    /// The options of one entry applied to `n_apply` atoms.
    fn options(&self, n_apply: u64) -> CalibrationOptions {
        let mut opts = CalibrationOptions::new(n_apply);
        opts.e_max = self.max_error;
        opts.tail = self.tail;
        opts.upper_rule = self.upper_rule;
        opts.p_halt = self.p_halt;
        opts
    }
}

impl Default for CalibrateSettings {
    fn default() -> Self {
        let o = CalibrationOptions::new(2);
        Self {
            max_error: o.e_max,
            tail: o.tail,
            upper_rule: o.upper_rule,
            p_halt: o.p_halt,
            provenance: None,
        }
    }
}

/// Cutoffs of `methods` per species (`napply[s]`: N of species `s`, at least 2), and for
/// `gamma_local` per (species, cluster), from the force errors and uncertainties of the
/// validation data `valid`. `high`: labelled high-uncertainty structures (e.g. candidates the
/// watch dumped, labelled), used by the conditional upper cutoff only.
pub fn calibrate_potential(
    pot: &Potential,
    valid: &[crate::Structure],
    high: &[crate::Structure],
    napply: &[u64],
    settings: &CalibrateSettings,
    methods: &[Method],
) -> Result<CalibrationResult, Error> {
    let model = &pot.model;
    let errors = uq::force_errors(model, valid)?;
    if errors.iter().all(|e| e.is_empty()) {
        return Err(Error::new(
            ErrorKind::Data,
            "the validation data has no reference forces (check --forces-key)",
        ));
    }
    let high_errors = uq::force_errors(model, high)?;
    if !high.is_empty() && high_errors.iter().all(|e| e.is_empty()) {
        return Err(Error::new(
            ErrorKind::Data,
            "the high-uncertainty structures have no reference forces (check --forces-key)",
        ));
    }
    for (s, &n) in model.species.iter().zip(napply) {
        if n < 2 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the cutoffs of {s} would apply to N = {n} atoms; N must be at least 2 (give \
                     the number of atoms of the run you will watch: frames x atoms)"
                ),
            ));
        }
    }
    let mut cals: Vec<Calibration> = pot.uq.calibration.clone();
    let (mut rows, mut cluster_rows, mut warnings, mut caveats) = (vec![], vec![], vec![], vec![]);
    // Per-atom values of the validation then the high structures, per method (not gamma_local):
    // the choice of the halting rule below checks the same structures.
    let mut known: Vec<(Method, Vec<Vec<f64>>)> = vec![];
    for &m in methods {
        let (u, clusters) = if m == Method::GammaLocal {
            let (u, c) = pot.gamma_local_per_atom(valid)?;
            (u, Some(c))
        } else {
            (pot.per_atom(valid, m)?, None)
        };
        let pairs = uq::pairs_by_species(model, valid, &errors, &u);
        let hu = if high.is_empty() {
            vec![]
        } else if m == Method::GammaLocal {
            pot.gamma_local_per_atom(high)?.0
        } else {
            pot.per_atom(high, m)?
        };
        let high_pairs = if high.is_empty() {
            vec![(vec![], vec![]); model.nspecies()]
        } else {
            uq::pairs_by_species(model, high, &high_errors, &hu)
        };
        if m != Method::GammaLocal {
            known.push((m, u.iter().chain(&hu).cloned().collect()));
        }
        let by_cluster = match &clusters {
            Some(c) => {
                let n: Vec<usize> = (0..model.nspecies())
                    .map(|s| pot.uq.gamma_local_clusters(s).unwrap_or(0))
                    .collect();
                Some(uq::pairs_by_species_cluster(
                    model, valid, &errors, &u, c, &n,
                )?)
            }
            None => None,
        };
        for (sp, ((name, (es, us)), (hes, hus))) in
            model.species.iter().zip(pairs).zip(high_pairs).enumerate()
        {
            if es.len() < 10 {
                warnings.push(format!(
                    "species {name}: only {} validation atoms, skipped (need at least 10)",
                    es.len()
                ));
                continue;
            }
            let mut opts = settings.options(napply[sp]);
            if m == Method::Gp {
                opts.u_sup = pot.uq.gp.as_ref().map(|g| g.plateau(sp));
            }
            let mut cal = calibrate_with_high(name, m.name(), &es, &us, &hes, &hus, &opts)?;
            cal.provenance = settings.provenance.clone();
            push_caveats(&mut caveats, name, m, &cal.warnings);
            rows.push(cal.table_row());
            // The species' entries of this method, per-cluster ones included, are replaced.
            cals.retain(|c| !(c.species == cal.species && c.method == cal.method));
            // The species-level entry first: readers that do not know per-cluster entries take
            // the first entry of a (species, method).
            cals.push(cal.clone());
            let Some(groups) = by_cluster.as_ref().map(|g| &g[sp]) else {
                continue;
            };
            let out = ClusterOut {
                rows: &mut rows,
                cluster_rows: &mut cluster_rows,
                cals: &mut cals,
                caveats: &mut caveats,
            };
            calibrate_cluster_entries(name, m, groups, &opts, &cal, settings, out);
        }
    }
    // The stored choice is scored again when a juror was calibrated in this run; a run that
    // calibrates no juror (e.g. gamma_local alone) keeps it.
    let halt_rule = if methods
        .iter()
        .any(|m| JURY.contains(m) || SINGLE_JURORS.contains(m))
    {
        choose_halt_rule(pot, &cals, valid, high, &known)?
    } else {
        pot.uq.halt_rule.clone()
    };
    if let Some(r) = halt_rule.as_ref().filter(|r| r.unstable == 0) {
        caveats.push(untested_rule(r));
    }
    Ok(CalibrationResult {
        calibration: cals,
        rows,
        cluster_rows,
        warnings,
        caveats,
        halt_rule,
    })
}

/// What a halting rule chosen on labelled frames none of which is unstable does not know.
fn untested_rule(r: &HaltRule) -> String {
    format!(
        "halting rule: none of the {} labelled frames it was chosen on errs above {} eV/Å, so \
         upper auto was chosen on false halts alone and the upper cutoffs extrapolate the errors \
         seen at low uncertainty (on novel structures they may halt calm frames or miss \
         unstable ones); label structures the watch dumps or halts on and pass them with --high",
        r.frames, r.e_max
    )
}

/// The methods of `list` the model has with a fitted error scale (species-level entry) for every
/// species of `calibration`, answering gamma's question (none without gamma's relation).
fn jurors(pot: &Potential, calibration: &[Calibration], list: &[Method]) -> Vec<Method> {
    let have = pot.uq.methods();
    // Each species' relation of method `m` (None if any species has none).
    let relations = |m: Method| -> Option<Vec<&crate::stats::upper::ConditionalUpper>> {
        pot.model
            .species
            .iter()
            .map(|sp| {
                calibration
                    .iter()
                    .find(|c| &c.species == sp && c.method == m.name() && c.cluster.is_none())
                    .and_then(|c| c.conditional.as_ref())
            })
            .collect()
    };
    // Jurors judge the same question as gamma: the same e_max and p_halt per species (methods
    // calibrated in separate runs with another --max-error or --p-halt do not sit).
    let Some(g) = relations(Method::Gamma) else {
        return vec![];
    };
    list.iter()
        .copied()
        .filter(|m| have.contains(m))
        .filter(|&m| {
            relations(m).is_some_and(|r| {
                r.iter()
                    .zip(&g)
                    .all(|(a, b)| a.e_max == b.e_max && a.p_halt == b.p_halt)
            })
        })
        .collect()
}

/// Scores the halting rules of the watch's `upper auto` on the labelled frames of a calibration
/// (`valid` and `high`) under the cutoffs `calibration`: `gamma`'s frame rule, the vote of the
/// jurors ([`jurors`] of [`JURY`]) and the frame rule of each of [`SINGLE_JURORS`] alone. None
/// without `gamma` and a second method that can halt. `known`: the per-atom values the
/// calibration computed (see [`check_calibration_with`]).
fn choose_halt_rule(
    pot: &Potential,
    calibration: &[Calibration],
    valid: &[crate::Structure],
    high: &[crate::Structure],
    known: &[(Method, Vec<Vec<f64>>)],
) -> Result<Option<HaltRule>, Error> {
    let jury = jurors(pot, calibration, &JURY);
    let singles = jurors(pot, calibration, &SINGLE_JURORS);
    if jury.first() != Some(&Method::Gamma) || (jury.len() < 2 && singles.is_empty()) {
        return Ok(None);
    }
    let mut checked = jury.clone();
    checked.extend(singles.iter().filter(|m| !jury.contains(m)));
    // Only the checked methods' entries: the check's e_max is then theirs (the same for all).
    let mut p = pot.clone();
    p.uq.calibration = calibration
        .iter()
        .filter(|c| checked.iter().any(|m| m.name() == c.method))
        .cloned()
        .collect();
    let report = check_calibration_with(&p, valid, high, &checked, known)?;
    Ok(pick_halt_rule(&report, &jury, &singles))
}

/// The halting rule from a check of the jurors `jury` (gamma first) and the methods `singles`:
/// gamma's frame rule, the vote of `jury`, and the best of the `singles`' own frame rules (fewest mistakes, the earlier juror
/// on a tie), scored by their mistakes on the report's frames; the vote only if it makes fewer
/// than the frame rule, the single juror only if it makes fewer than both. None without the
/// frame rule's row, or without the vote's row and a single juror.
fn pick_halt_rule(report: &CheckReport, jury: &[Method], singles: &[Method]) -> Option<HaltRule> {
    let row = |m: &str, subset: &str| {
        report
            .halts
            .iter()
            .find(|h| h.method == m && h.subset == subset)
    };
    let f = row(Method::Gamma.name(), "frame rule")?;
    // Without a vote (gamma the only juror) the vote scores as the frame rule: never chosen.
    let v = match row(VOTE, VOTE_SUBSET) {
        Some(v) => v,
        None if jury.len() < 2 && !singles.is_empty() => f,
        None => return None,
    };
    let mistakes =
        |caught: usize, false_halts: usize| f.unstable - caught.min(f.unstable) + false_halts;
    let single = singles
        .iter()
        .filter_map(|m| row(m.name(), "frame rule").map(|h| (m.name(), h.caught, h.false_halts)))
        .min_by_key(|(_, c, fh)| mistakes(*c, *fh));
    let mut rule = HaltRule {
        rule: "frame".into(),
        jury: jury.iter().map(|m| m.name().to_string()).collect(),
        frames: f.frames,
        unstable: f.unstable,
        frame_caught: f.caught,
        frame_false: f.false_halts,
        vote_caught: v.caught,
        vote_false: v.false_halts,
        e_max: report.e_max,
        juror: single.map(|s| s.0.to_string()),
        juror_caught: single.map_or(0, |s| s.1),
        juror_false: single.map_or(0, |s| s.2),
    };
    let (frame, vote) = (
        rule.mistakes(RuleKind::Frame),
        rule.mistakes(RuleKind::Vote),
    );
    if vote < frame {
        rule.rule = "vote".into();
    }
    if single.is_some() && rule.mistakes(RuleKind::Juror) < frame.min(vote) {
        rule.rule = "juror".into();
    }
    Some(rule)
}

/// The method name of the vote's rows in a [`CheckReport`], and the subset of its summary row.
pub const VOTE: &str = "vote";
pub const VOTE_SUBSET: &str = "upper vote";

/// The question a juror's error relation answers for one species, (e_max, p_halt); None: no
/// question asked (the species is not in the checked data).
type Question = Option<(f64, f64)>;

/// The watch's `upper vote` on every checked frame, from the frame rows of the jurors in the
/// report (those of [`JURY`] with a frame rule): a frame halts when one of its atoms is above
/// the upper cutoff of any juror, or when the frame rules of at least two jurors reach p_halt
/// (an undefined probability counts). Adds one row per frame and a summary row; nothing with
/// fewer than two jurors. `question(method)`: per species the (e_max, p_halt) of the method's
/// fitted error relation, None for a species the checked data do not have; the whole answer None
/// when the method lacks a relation for a species they have (it cannot sit, as in the watch,
/// which leaves out a juror that cannot judge every species of the run). A juror sits only if it
/// answers the jury's question for every species, and the largest such jury sits (a tie: the one
/// with the earliest juror, gamma first).
fn add_vote(report: &mut CheckReport, question: impl Fn(&str) -> Option<Vec<Question>>) {
    let candidates: Vec<&str> = JURY
        .iter()
        .map(|m| m.name())
        .filter(|n| {
            report
                .frames
                .iter()
                .any(|r| r.method == *n && r.p_frame.is_some())
        })
        .collect();
    let (candidates, questions): (Vec<&str>, Vec<Vec<Question>>) = candidates
        .into_iter()
        .filter_map(|n| Some((n, question(n)?)))
        .unzip();
    // Per species, the question of the first juror with a relation there (in `order`); a juror
    // that answers another one where both have a relation does not sit.
    let seat = |order: &[usize]| {
        let mut reference: Vec<Question> = vec![];
        let mut seated = vec![];
        for &j in order {
            let q = &questions[j];
            if reference.len() < q.len() {
                reference.resize(q.len(), None);
            }
            let agrees = q
                .iter()
                .zip(&reference)
                .all(|(a, r)| a.is_none() || r.is_none() || a == r);
            if agrees {
                for (r, a) in reference.iter_mut().zip(q) {
                    if r.is_none() {
                        *r = *a;
                    }
                }
                seated.push(j);
            }
        }
        (seated, reference)
    };
    // As in the watch, the largest agreeing group sits (a tie: the one seated from the earliest
    // juror, gamma first): each juror in turn leads the seating.
    let (seated, reference) = (0..candidates.len())
        .map(|lead| {
            let order: Vec<usize> = std::iter::once(lead)
                .chain((0..candidates.len()).filter(|&j| j != lead))
                .collect();
            seat(&order)
        })
        .fold(None, |best: Option<(Vec<usize>, _)>, s| match best {
            Some(b) if b.0.len() >= s.0.len() => Some(b),
            _ => Some(s),
        })
        .unwrap_or_default();
    let jury: Vec<&str> = (0..candidates.len())
        .filter(|j| seated.contains(j))
        .map(|j| candidates[j])
        .collect();
    if jury.len() < 2 {
        return;
    }
    let nframes = report.frames.iter().map(|r| r.frame + 1).max().unwrap_or(0);
    let mut by_frame: Vec<Vec<&FrameRow>> = vec![vec![]; nframes];
    for r in &report.frames {
        if jury.contains(&r.method.as_str()) {
            by_frame[r.frame].push(r);
        }
    }
    let mut rows = vec![];
    let mut total = HaltRow {
        method: VOTE.into(),
        subset: VOTE_SUBSET.into(),
        has_upper: true,
        ..Default::default()
    };
    // The jury's own error limit (the report's is the first calibration entry's).
    let e_max = reference
        .iter()
        .flatten()
        .next()
        .map_or(report.e_max, |q| q.0);
    for rs in by_frame.iter().filter(|rs| rs.len() == jury.len()) {
        let first = rs[0];
        let above = rs.iter().any(|r| r.halted_atom);
        let votes = rs
            .iter()
            .filter(|r| match (r.p_frame, r.p_halt) {
                (Some(p), Some(h)) => p >= h || p.is_nan(),
                _ => false,
            })
            .count();
        let halted = above || votes >= 2;
        let unstable = first.max_error > e_max;
        total.frames += 1;
        total.max_error = total.max_error.max(first.max_error);
        total.unstable += usize::from(unstable);
        total.halted += usize::from(halted);
        total.caught += usize::from(halted && unstable);
        total.false_halts += usize::from(halted && first.max_error < e_max / 3.0);
        total.halted_modest += usize::from(halted && !unstable && first.max_error >= e_max / 3.0);
        rows.push(FrameRow {
            method: VOTE.into(),
            score: rs.iter().map(|r| r.score).fold(0.0, f64::max),
            upper_ratio: rs.iter().filter_map(|r| r.upper_ratio).reduce(f64::max),
            p_frame: None,
            halted_atom: above,
            halted_frame: Some(halted),
            p_halt: None,
            ..first.clone()
        });
    }
    report.frames.extend(rows);
    report.halts.push(total);
}

/// The warnings of species `name`'s entry of `method` into `caveats` ("Li gamma: ..."); the
/// force-error cutoff is the same for every method, so its warnings go in once ("Li: ...").
fn push_caveats(caveats: &mut Vec<String>, name: &str, method: Method, warnings: &[String]) {
    for w in warnings {
        if w.starts_with("force errors:") {
            let once = format!("{name}: {w}");
            if !caveats.contains(&once) {
                caveats.push(once);
            }
        } else {
            caveats.push(format!("{name} {}: {w}", method.name()));
        }
    }
}

/// Where [`calibrate_cluster_entries`] writes.
struct ClusterOut<'a> {
    rows: &'a mut Vec<Vec<String>>,
    cluster_rows: &'a mut Vec<Vec<String>>,
    cals: &'a mut Vec<Calibration>,
    caveats: &'a mut Vec<String>,
}

/// The per-cluster entries of `method` for species `name` (`groups[k]`: errors and
/// uncertainties of cluster `k`'s atoms; `cal` the species-level entry): fitted clusters get
/// their own entry, the others are listed as falling back to the species'.
fn calibrate_cluster_entries(
    name: &str,
    method: Method,
    groups: &[(Vec<f64>, Vec<f64>)],
    opts: &CalibrationOptions,
    cal: &Calibration,
    settings: &CalibrateSettings,
    out: ClusterOut<'_>,
) {
    for outcome in calibrate_clusters(name, method.name(), groups, opts, cal) {
        let k = outcome.cluster();
        match outcome {
            ClusterCalibration::Fitted(mut c) => {
                c.provenance = settings.provenance.clone();
                // Of a cluster's own fit the watch uses u_c and, with the seeds' ratio rule
                // only, the upper cutoff its own e_c gives (with the conditional rule the upper
                // cutoff is the species'; the force-error cutoff the watch and the checks use is
                // always the species'): its warnings about its force errors are dropped, the
                // others are stored and printed like the species' (calibrate, info, the fix).
                c.warnings.retain(|w| !w.starts_with("force errors:"));
                for w in &c.warnings {
                    out.caveats
                        .push(format!("{name} {} cluster {k}: {w}", method.name()));
                }
                out.rows.push(c.table_row());
                out.cluster_rows.push(vec![
                    name.to_string(),
                    k.to_string(),
                    c.n_fit.to_string(),
                    c.n_apply.to_string(),
                    format!("{:.5}", c.u_c),
                    format!("{:.5}", c.u_max),
                    "own fit".into(),
                ]);
                out.cals.push(*c);
            }
            ClusterCalibration::Fallback {
                n_fit,
                n_apply,
                reason,
                ..
            } => out.cluster_rows.push(vec![
                name.to_string(),
                k.to_string(),
                n_fit.to_string(),
                n_apply.to_string(),
                format!("{:.5}", cal.u_c),
                format!("{:.5}", cal.u_max),
                format!("species fallback: {reason}"),
            ]),
        }
    }
}

/// Expected exceedance counts at which [`check_calibration`] also tests the fitted tails.
pub const CHECK_LEVELS: [f64; 5] = [1.0, 3.0, 10.0, 30.0, 100.0];

/// Whether `observed` keeps the promise `expected` (exceedances of a 1 - 1/N cutoff on held-out
/// data): within a factor 3 of it, or at most 3 when fewer than one is expected.
pub fn within_promise(observed: usize, expected: f64) -> bool {
    let o = observed as f64;
    if expected < 1.0 {
        o <= 3.0
    } else {
        o <= 3.0 * expected && o >= expected / 3.0
    }
}

/// One stored entry checked on held-out in-distribution data.
#[derive(Clone, Debug)]
pub struct ExceedanceRow {
    pub species: String,
    pub method: String,
    pub cluster: Option<usize>,
    /// Held-out atoms the entry applies to.
    pub atoms: usize,
    /// The entry's N.
    pub n_apply: u64,
    /// Expected exceedances of u_c and e_c: atoms / N.
    pub expected: f64,
    /// Atoms above u_c.
    pub above_u_c: usize,
    /// Atoms whose force error is above e_c.
    pub above_e_c: usize,
    /// Where the exceedances are: per subset (config_type, "-" without one) with any, the
    /// atoms above u_c and above e_c, most first. For a cluster row only u_c counts (the
    /// watch does not use a cluster's own e_c, and `check-cutoffs` shows none): its e counts here
    /// are 0.
    pub by_subset: Vec<(String, usize, usize)>,
    /// For each of [`CHECK_LEVELS`] below atoms / 2: (expected k, the model quantile with k
    /// exceedances expected among these atoms: uncertainty and error, atoms above each).
    pub levels: Vec<(f64, f64, usize, f64, usize)>,
    /// How probable counts as far out as `above_u_c` and `above_e_c` are from the sampling of
    /// the calibration values alone ([`crate::stats::cutoff::predictive_exceedances`]); `None`
    /// for cutoffs stored without their calibration counts.
    pub spread_u: Option<Spread>,
    pub spread_e: Option<Spread>,
}

/// Below this [`Spread::p`] a count of exceedances is called improbable from the calibration's
/// sampling alone: the held-out data are then not drawn like the calibration data. A check of
/// many entries flags at most about 2 in 100 by chance (each side at most 1 in 100).
pub const SPREAD_ALPHA: f64 = 0.01;

/// Frame-level outcome of the upper cutoff of one method on labelled data.
#[derive(Clone, Debug, Default)]
pub struct HaltRow {
    pub method: String,
    /// Subset (config_type) or "all".
    pub subset: String,
    pub frames: usize,
    /// Frames whose true max force error exceeds e_max.
    pub unstable: usize,
    /// Frames with an atom above its upper cutoff.
    pub halted: usize,
    /// Unstable and halted.
    pub caught: usize,
    /// Halted although the true max error is below e_max / 3.
    pub false_halts: usize,
    /// Halted with a true max error between e_max / 3 and e_max.
    pub halted_modest: usize,
    /// Largest true max force error of the subset's frames, eV/Å.
    pub max_error: f64,
    /// Whether the method has an upper cutoff for every species.
    pub has_upper: bool,
    /// What any single threshold on this method could do (row "all" only; frame score = the
    /// largest u / u_c over its atoms): the best recall with no false halt, and the fewest
    /// false halts at a recall of at least 0.9. NaN / None when no frame is unstable.
    pub best_recall_no_false: f64,
    pub best_false_at_90: Option<usize>,
}

/// Bands of the frame rule's probability in [`CheckReport::reliability`]: [0, 0.01), [0.01,
/// 0.1), [0.1, 0.5), [0.5, 0.9), [0.9, 1].
pub const RELIABILITY_BANDS: [f64; 6] = [0.0, 0.01, 0.1, 0.5, 0.9, 1.0];

/// The frame rule's probabilities against what happened, for one method and one band of
/// probabilities: are the frames it rates at P unstable about P of the time?
#[derive(Clone, Debug, PartialEq)]
pub struct ReliabilityRow {
    pub method: String,
    /// The band [lo, hi) of the frames' probabilities (the last band includes 1); None: every
    /// frame with a probability.
    pub band: Option<(f64, f64)>,
    pub frames: usize,
    /// The sum of the frames' probabilities: the unstable frames the error model expects.
    pub expected: f64,
    /// The frames whose true largest force error is above e_max.
    pub observed: usize,
    /// P(count >= observed) and P(count <= observed) if the probabilities were right and the
    /// frames independent (a Poisson binomial).
    pub at_least: f64,
    pub at_most: f64,
}

impl CheckReport {
    /// Per method (in the order of the frame rows) with a frame rule, the frames' probabilities
    /// of an error above e_max summed per band of [`RELIABILITY_BANDS`] against the frames
    /// truly above it, then the same over every frame: a calibrated error model expects about
    /// as many as it finds in every band. Bands without frames are left out; frames whose
    /// probability is undefined (a NaN uncertainty) are not counted.
    pub fn reliability(&self) -> Vec<ReliabilityRow> {
        let mut methods: Vec<&str> = Vec::new();
        for f in &self.frames {
            if f.p_frame.is_some() && !methods.contains(&f.method.as_str()) {
                methods.push(&f.method);
            }
        }
        let row = |method: &str, band: Option<(f64, f64)>, frames: &[(f64, bool)]| {
            let ps: Vec<f64> = frames.iter().map(|&(p, _)| p).collect();
            let observed = frames.iter().filter(|&&(_, u)| u).count();
            let pmf = crate::stats::upper::poisson_binomial(&ps);
            let at_least = pmf[observed..].iter().sum::<f64>().min(1.0);
            let at_most = pmf[..=observed].iter().sum::<f64>().min(1.0);
            ReliabilityRow {
                method: method.to_string(),
                band,
                frames: frames.len(),
                expected: ps.iter().sum(),
                observed,
                at_least,
                at_most,
            }
        };
        let mut rows = Vec::new();
        for m in methods {
            let all: Vec<(f64, bool)> = self
                .frames
                .iter()
                .filter(|f| f.method == m)
                .filter_map(|f| {
                    f.p_frame
                        .filter(|p| p.is_finite())
                        .map(|p| (p.clamp(0.0, 1.0), f.max_error > f.e_max))
                })
                .collect();
            for w in RELIABILITY_BANDS.windows(2) {
                let last = w[1] >= 1.0;
                let band: Vec<(f64, bool)> = all
                    .iter()
                    .copied()
                    .filter(|&(p, _)| p >= w[0] && (p < w[1] || last))
                    .collect();
                if !band.is_empty() {
                    rows.push(row(m, Some((w[0], w[1])), &band));
                }
            }
            if !all.is_empty() {
                rows.push(row(m, None, &all));
            }
        }
        rows
    }

    /// The per-frame rows as CSV (`aceuq check-cutoffs --frames`), one line per frame and
    /// method after a header; empty fields where a method has no frame rule, and u / u_max
    /// empty where no atom of the frame has an upper cutoff. `origin`: the
    /// file and index of each checked frame (held-out then novel, as given to the check; empty
    /// fields where it is shorter).
    pub fn frames_csv(&self, origin: &[FrameOrigin]) -> String {
        let mut out = String::from(
            "method,frame,file,index_in_file,set,config_type,atoms,max_force_error,e_max,\
             u_over_u_c,u_over_u_max,p_frame,p_halt,halted_atom,halted_frame\n",
        );
        let opt = |x: Option<String>| x.unwrap_or_default();
        for r in &self.frames {
            let (file, index) = origin
                .get(r.frame)
                .map_or((String::new(), String::new()), |o| {
                    (csv_field(&o.file), o.index.to_string())
                });
            out += &format!(
                "{},{},{file},{index},{},{},{},{:.6e},{},{:.6e},{},{},{},{},{}\n",
                r.method,
                r.frame,
                if r.novel { "novel" } else { "held-out" },
                csv_field(&r.subset),
                r.atoms,
                r.max_error,
                r.e_max,
                r.score,
                opt(r.upper_ratio.map(|x| format!("{x:.6e}"))),
                opt(r.p_frame.map(|p| format!("{p:.6e}"))),
                opt(r.p_halt.map(|p| p.to_string())),
                u8::from(r.halted_atom),
                opt(r.halted_frame.map(|h| u8::from(h).to_string())),
            );
        }
        out
    }
}

/// [`HaltRow::best_recall_no_false`] and [`HaltRow::best_false_at_90`] from (score, true max
/// error) per frame.
fn best_thresholds(frames: &[(f64, f64)], e_max: f64) -> (f64, Option<usize>) {
    let hi: Vec<f64> = frames.iter().filter(|f| f.1 > e_max).map(|f| f.0).collect();
    if hi.is_empty() {
        return (f64::NAN, None);
    }
    let lo: Vec<f64> = frames
        .iter()
        .filter(|f| f.1 < e_max / 3.0)
        .map(|f| f.0)
        .collect();
    let top_lo = lo.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let recall = hi.iter().filter(|&&x| x > top_lo).count() as f64 / hi.len() as f64;
    let mut h = hi.clone();
    h.sort_by(|a, b| b.partial_cmp(a).unwrap());
    // Halting at score >= h[k-1] catches the k highest; the smallest k with k / n >= 0.9.
    let k = (0.9 * h.len() as f64).ceil() as usize;
    let t = h[k.max(1) - 1];
    (recall, Some(lo.iter().filter(|&&x| x >= t).count()))
}

impl HaltRow {
    /// caught / unstable (NaN if no frame is unstable).
    pub fn recall(&self) -> f64 {
        if self.unstable == 0 {
            f64::NAN
        } else {
            self.caught as f64 / self.unstable as f64
        }
    }
}

/// One labelled frame of a check under one method: what the upper cutoffs decide for it and
/// why (`aceuq check-cutoffs --frames`).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameRow {
    pub method: String,
    /// Index among the checked frames: the held-out frames first, then the novel ones.
    pub frame: usize,
    /// Whether the frame is one of the novel ones (else held-out).
    pub novel: bool,
    /// Its config_type ("-" without one).
    pub subset: String,
    pub atoms: usize,
    /// True largest force error of its atoms, eV/Å.
    pub max_error: f64,
    /// Largest u / u_c over its atoms (the frame score of the best single threshold).
    pub score: f64,
    /// Largest u / u_max over its atoms (above 1: an atom is above its upper cutoff; None when
    /// no atom has a finite upper cutoff: an empty field in the CSV).
    pub upper_ratio: Option<f64>,
    /// The frame rule's probability that some atom errs above e_max (None: the method has no
    /// fitted error relation for every species).
    pub p_frame: Option<f64>,
    /// Halted by single atoms (`upper atom`).
    pub halted_atom: bool,
    /// Halted as the watch's `upper frame` (its default) halts: `p_frame` at or above p_halt,
    /// or an atom above its upper cutoff (so `halted_atom` implies it; None as for `p_frame`).
    pub halted_frame: Option<bool>,
    /// The largest-force-error bound e_max and the p_halt of the check (the calibration's).
    pub e_max: f64,
    pub p_halt: Option<f64>,
}

/// Where a checked frame came from: its file and its index among that file's frames.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameOrigin {
    pub file: String,
    pub index: usize,
}

/// `s` as one CSV field: quoted (with quotes doubled) when it holds a comma, a quote or a line
/// break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// What [`check_calibration`] found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub exceedances: Vec<ExceedanceRow>,
    pub halts: Vec<HaltRow>,
    /// Every labelled frame under every method.
    pub frames: Vec<FrameRow>,
    pub e_max: f64,
    /// The rule the watch's `upper auto` applies (the calibration's choice): `frame`, `vote`,
    /// or `juror` with the juror's name; None: the model stores no choice (the frame rule).
    pub auto_rule: Option<(String, Option<String>)>,
}

/// Checks a model's stored cutoffs on labelled data: for every stored entry of `methods` the
/// observed vs expected exceedances of u_c and e_c (and of the fitted tails at
/// [`CHECK_LEVELS`]), on `in_dist` (held-out in-distribution data); and, on `in_dist` plus
/// `novel`, which frames the upper cutoffs halt against which frames are truly unstable (max
/// force error above e_max), per method and per config_type.
pub fn check_calibration(
    pot: &Potential,
    in_dist: &[crate::Structure],
    novel: &[crate::Structure],
    methods: &[Method],
) -> Result<CheckReport, Error> {
    check_calibration_with(pot, in_dist, novel, methods, &[])
}

/// [`check_calibration`] reusing per-atom values already computed: `known` holds, for some
/// methods other than `gamma_local`, the values of `in_dist` then `novel` (one row per
/// structure); the other methods are computed.
fn check_calibration_with(
    pot: &Potential,
    in_dist: &[crate::Structure],
    novel: &[crate::Structure],
    methods: &[Method],
    known: &[(Method, Vec<Vec<f64>>)],
) -> Result<CheckReport, Error> {
    let model = &pot.model;
    let err_in = uq::force_errors(model, in_dist)?;
    let err_nv = uq::force_errors(model, novel)?;
    if !in_dist.is_empty() && err_in.iter().all(|e| e.is_empty()) {
        return Err(Error::new(
            ErrorKind::Data,
            "the held-out data has no reference forces (check --forces-key)",
        ));
    }
    let all: Vec<crate::Structure> = in_dist.iter().chain(novel).cloned().collect();
    let errs: Vec<Vec<f64>> = err_in.into_iter().chain(err_nv).collect();
    let cluster_cutoffs = |m: Method, s: usize, k: usize| {
        pot.uq
            .stored_cluster_cutoffs(model, m, s, k)
            .map(|x| (x.0, x.1))
    };
    let src = CutoffSource {
        species: &model.species,
        calibration: &pot.uq.calibration,
        cluster_cutoffs: &cluster_cutoffs,
        nclusters: (0..model.nspecies())
            .map(|s| pot.uq.gamma_local_clusters(s))
            .collect(),
    };
    let mut report = CheckReport {
        e_max: src.e_max(),
        auto_rule: pot
            .uq
            .halt_rule
            .as_ref()
            .map(|r| (r.rule.clone(), r.juror.clone())),
        ..Default::default()
    };
    for &m in methods {
        let (u, clusters) = if m == Method::GammaLocal {
            let (u, c) = pot.gamma_local_per_atom(&all)?;
            (u, Some(c))
        } else if let Some((_, u)) = known.iter().find(|k| k.0 == m) {
            (u.clone(), None)
        } else {
            (pot.per_atom(&all, m)?, None)
        };
        let data = CheckData {
            n_in_dist: in_dist.len(),
            all: &all,
            errs: &errs,
        };
        check_method(&mut report, &src, &data, m, &u, clusters.as_deref());
    }
    // The species of the checked data: a juror must judge each of them.
    let present = src.present(&all);
    add_vote(&mut report, |name| {
        model
            .species
            .iter()
            .zip(&present)
            .map(|(sp, &here)| {
                let relation = pot
                    .uq
                    .calibration
                    .iter()
                    .find(|c| &c.species == sp && c.method == name && c.cluster.is_none())
                    .and_then(|c| c.conditional.as_ref())
                    .map(|r| (r.e_max, r.p_halt));
                match (here, relation) {
                    (false, _) => Some(None),
                    (true, Some(q)) => Some(Some(q)),
                    (true, None) => None,
                }
            })
            .collect()
    });
    Ok(report)
}

/// [`check_calibration`] for a pacemaker potential: its `gamma` (graded with the active-set
/// inverse `asi`) and, with the clustered local active sets `local`, its `gamma_local`, against
/// the cutoffs `calibration` that `aceuq calibrate` stored beside it (methods without an entry
/// are skipped).
pub fn check_pacemaker(
    pot: &crate::pace::PacePotential,
    asi: &crate::pace::ActiveSetInverse,
    local: Option<&uq::activeset::ClusteredActiveSets>,
    calibration: &[Calibration],
    in_dist: &[crate::Structure],
    novel: &[crate::Structure],
) -> Result<CheckReport, Error> {
    use rayon::prelude::*;
    if !in_dist.is_empty() && in_dist.iter().all(|s| s.forces.is_none()) {
        return Err(Error::new(
            ErrorKind::Data,
            "the held-out data has no reference forces (check --forces-key)",
        ));
    }
    let all: Vec<crate::Structure> = in_dist.iter().chain(novel).cloned().collect();
    // Per frame: force errors of every atom (empty when unlabelled) and grades.
    type Frame = (Vec<f64>, PaceFrameGrades);
    let per: Vec<Frame> = all
        .par_iter()
        .enumerate()
        .map(|(k, s)| -> Result<Frame, Error> {
            let at = |e: crate::pace::PaceError| {
                Error::new(ErrorKind::Data, format!("structure {k}: {e}"))
            };
            let g = pace_grades(pot, Some(asi), local, s).map_err(at)?;
            let e = match &s.forces {
                None => vec![],
                Some(fr) => pace_force_errors(pot, s, fr).map_err(at)?,
            };
            Ok((e, g))
        })
        .collect::<Result<_, _>>()?;
    let mut errs = Vec::with_capacity(per.len());
    let (mut u, mut ul, mut cl) = (vec![], vec![], vec![]);
    for (e, (g, gl, c)) in per {
        errs.push(e);
        u.push(g);
        ul.push(gl);
        cl.push(c);
    }
    let elements = &pot.model().elements;
    let entry = |m: Method, s: usize, k: Option<usize>| {
        calibration
            .iter()
            .find(|x| x.method == m.name() && x.species == elements[s] && x.cluster == k)
    };
    // A cluster's own cutoffs, else its element's.
    let cluster_cutoffs = |m: Method, s: usize, k: usize| {
        entry(m, s, Some(k))
            .or_else(|| entry(m, s, None))
            .map(|c| (c.u_c, c.u_max))
    };
    let src = CutoffSource {
        species: elements,
        calibration,
        cluster_cutoffs: &cluster_cutoffs,
        nclusters: local.map(|l| l.species.iter().map(|sc| sc.sets.len()).collect()),
    };
    let mut report = CheckReport {
        e_max: src.e_max(),
        ..Default::default()
    };
    let data = CheckData {
        n_in_dist: in_dist.len(),
        all: &all,
        errs: &errs,
    };
    let has = |m: Method| calibration.iter().any(|c| c.method == m.name());
    if has(Method::Gamma) {
        check_method(&mut report, &src, &data, Method::Gamma, &u, None);
    }
    if local.is_some() && has(Method::GammaLocal) {
        check_method(&mut report, &src, &data, Method::GammaLocal, &ul, Some(&cl));
    }
    Ok(report)
}

/// The force error |F_pot - F_ref| of every atom of `s` (eV/Å), `reference` its labels.
fn pace_force_errors(
    pot: &crate::pace::PacePotential,
    s: &crate::Structure,
    reference: &[[f64; 3]],
) -> Result<Vec<f64>, crate::pace::PaceError> {
    let p = pot.model().predict(s)?;
    Ok(p.forces
        .iter()
        .zip(reference)
        .map(|(a, b)| {
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
        })
        .collect())
}

/// What a check needs of whoever holds the cutoffs (an aceuq model, or the cutoffs file of a
/// pacemaker potential).
struct CutoffSource<'a> {
    species: &'a [String],
    calibration: &'a [Calibration],
    /// (lower, upper) cutoff of (method, species, gamma_local cluster).
    cluster_cutoffs: &'a dyn Fn(Method, usize, usize) -> Option<(f64, f64)>,
    /// gamma_local clusters per species (None: no clustered active sets).
    nclusters: Option<Vec<usize>>,
}

impl CutoffSource<'_> {
    fn cal_of(&self, m: Method, s: usize, c: Option<usize>) -> Option<&Calibration> {
        self.calibration
            .iter()
            .find(|x| x.method == m.name() && x.species == self.species[s] && x.cluster == c)
    }

    fn species_index(&self, sym: &str) -> Option<usize> {
        self.species.iter().position(|x| x == sym)
    }

    /// Which species of the model the structures hold.
    fn present(&self, all: &[crate::Structure]) -> Vec<bool> {
        let mut present = vec![false; self.species.len()];
        for sym in all.iter().flat_map(|st| &st.symbols) {
            if let Some(s) = self.species_index(sym) {
                present[s] = true;
            }
        }
        present
    }

    fn e_max(&self) -> f64 {
        self.calibration
            .first()
            .map_or(crate::stats::cutoff::DEFAULT_E_MAX, |c| c.e_max)
    }

    /// The e_max method `m` was calibrated for (methods may be recalibrated alone, with
    /// another `--max-error`).
    fn e_max_of(&self, m: Method) -> Option<f64> {
        self.calibration
            .iter()
            .find(|c| c.method == m.name())
            .map(|c| c.e_max)
    }
}

/// The labelled frames of a check: the held-out ones first (`n_in_dist`), then the novel ones,
/// with every atom's force error (empty for an unlabelled frame).
struct CheckData<'a> {
    n_in_dist: usize,
    all: &'a [crate::Structure],
    errs: &'a [Vec<f64>],
}

/// The exceedance rows and halt rows of method `m` (per-atom values `u`, and for gamma_local
/// each atom's cluster), added to `report`.
fn check_method(
    report: &mut CheckReport,
    src: &CutoffSource,
    d: &CheckData,
    m: Method,
    u: &[Vec<f64>],
    clusters: Option<&[Vec<u32>]>,
) {
    let (all, errs) = (d.all, d.errs);
    let in_dist = &all[..d.n_in_dist];
    // Frames are unstable above this method's own e_max.
    let e_max = src.e_max_of(m).unwrap_or(report.e_max);
    // Exceedances on the in-distribution part, per (species, cluster entry).
    let mut keys: Vec<(usize, Option<usize>)> = (0..src.species.len()).map(|s| (s, None)).collect();
    if let Some(n) = src.nclusters.as_ref().filter(|_| clusters.is_some()) {
        for (s, &k) in n.iter().enumerate() {
            keys.extend((0..k).map(|c| (s, Some(c))));
        }
    }
    for (s, c) in keys {
        let Some(cal) = src.cal_of(m, s, c) else {
            continue;
        };
        let (mut uu, mut ee, mut sub) = (vec![], vec![], vec![]);
        for (f, st) in in_dist.iter().enumerate() {
            for (a, sym) in st.symbols.iter().enumerate() {
                if src.species_index(sym) != Some(s) {
                    continue;
                }
                if let (Some(k), Some(cl)) = (c, clusters)
                    && cl[f][a] as usize != k
                {
                    continue;
                }
                if let Some(&e) = errs[f].get(a) {
                    uu.push(u[f][a]);
                    ee.push(e);
                    sub.push(f);
                }
            }
        }
        if uu.is_empty() {
            continue;
        }
        let n = uu.len();
        let count = |x: &[f64], c: f64| x.iter().filter(|&&v| v > c).count();
        let levels = CHECK_LEVELS
            .iter()
            .filter(|&&k| k <= n as f64 / 2.0)
            .map(|&k| {
                let q = k / n as f64;
                let qu = cal.uncertainty_quantile(q);
                let qe = cal.error_quantile(q);
                (k, qu, count(&uu, qu), qe, count(&ee, qe))
            })
            .collect();
        let mut by_subset: Vec<(String, usize, usize)> = vec![];
        for ((&v, &e), &f) in uu.iter().zip(&ee).zip(&sub) {
            // A cluster's e_c is not used (see check-cutoffs): only its u_c exceedances.
            let au = usize::from(v > cal.u_c);
            let ae = usize::from(c.is_none() && e > cal.e_c);
            if au + ae == 0 {
                continue;
            }
            let name = in_dist[f].config_type.as_deref().unwrap_or("-");
            match by_subset.iter_mut().find(|x| x.0 == name) {
                Some(x) => {
                    x.1 += au;
                    x.2 += ae;
                }
                None => by_subset.push((name.to_string(), au, ae)),
            }
        }
        by_subset.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
        let (above_u_c, above_e_c) = (count(&uu, cal.u_c), count(&ee, cal.e_c));
        let spread = |fit: Option<&crate::stats::tail::CutoffFit>, observed: usize| {
            fit.and_then(|f| predictive_exceedances(f.n, f.above?, n, observed))
        };
        report.exceedances.push(ExceedanceRow {
            species: src.species[s].clone(),
            method: m.name().to_string(),
            cluster: c,
            atoms: n,
            n_apply: cal.n_apply,
            expected: n as f64 / cal.n_apply as f64,
            above_u_c,
            above_e_c,
            by_subset,
            levels,
            spread_u: spread(cal.uncertainty_fit.as_ref(), above_u_c),
            spread_e: spread(cal.error_fit.as_ref(), above_e_c),
        });
    }
    // Halts per frame on everything, per subset and in total.
    let upper = |s: usize, f: usize, a: usize| -> f64 {
        match (clusters, src.cal_of(m, s, None)) {
            (Some(cl), Some(_)) => {
                (src.cluster_cutoffs)(m, s, cl[f][a] as usize).map_or(f64::INFINITY, |x| x.1)
            }
            (_, Some(c)) => c.u_max,
            _ => f64::INFINITY,
        }
    };
    let has_upper =
        (0..src.species.len()).all(|s| src.cal_of(m, s, None).is_some_and(|c| c.u_max.is_finite()));
    let mut rows: Vec<HaltRow> = vec![];
    let mut total = HaltRow {
        method: m.name().into(),
        subset: "all".into(),
        has_upper,
        ..Default::default()
    };
    let mut scored: Vec<(f64, f64)> = vec![];
    // The frame rule (the watch's `upper frame`): halt a frame when the probability that any
    // of its atoms errs above e_max, 1 - prod_i (1 - P(e_i > e_max | u_i)) under each species'
    // fitted e | u, reaches p_halt, or when an atom is above its upper cutoff (only when every
    // species of the data has the fitted relation: the watch asks it of the species it maps).
    let present = src.present(all);
    let conds: Option<Vec<Option<&crate::stats::upper::ConditionalUpper>>> = (0..src.species.len())
        .map(|s| {
            let c = src.cal_of(m, s, None).and_then(|c| c.conditional.as_ref());
            if present[s] { c.map(Some) } else { Some(c) }
        })
        .collect();
    let first_cond = conds
        .as_ref()
        .and_then(|cs| cs.iter().flatten().next().copied());
    let mut frame_rule = conds
        .as_ref()
        .filter(|_| first_cond.is_some())
        .map(|_| HaltRow {
            method: m.name().into(),
            subset: "frame rule".into(),
            has_upper: true,
            ..Default::default()
        });
    for (f, st) in all.iter().enumerate() {
        if errs[f].is_empty() {
            continue;
        }
        let emax = errs[f].iter().fold(0.0_f64, |x, &y| x.max(y));
        let score = st
            .symbols
            .iter()
            .enumerate()
            .fold(0.0_f64, |acc, (a, sym)| {
                let lower = src.species_index(sym).and_then(|s| match clusters {
                    Some(cl) => (src.cluster_cutoffs)(m, s, cl[f][a] as usize).map(|x| x.0),
                    None => src.cal_of(m, s, None).map(|c| c.u_c),
                });
                match lower {
                    Some(l) if l > 0.0 => acc.max(u[f][a] / l),
                    _ => acc,
                }
            });
        scored.push((score, emax));
        let halted = st.symbols.iter().enumerate().any(|(a, sym)| {
            src.species_index(sym)
                .is_some_and(|s| u[f][a] > upper(s, f, a))
        });
        let upper_ratio = st
            .symbols
            .iter()
            .enumerate()
            .fold(None, |acc: Option<f64>, (a, sym)| {
                match src.species_index(sym).map(|s| upper(s, f, a)) {
                    Some(x) if x.is_finite() && x > 0.0 => {
                        let r = u[f][a] / x;
                        Some(acc.map_or(r, |m| m.max(r)))
                    }
                    _ => acc,
                }
            });
        let mut row = FrameRow {
            method: m.name().into(),
            frame: f,
            novel: f >= d.n_in_dist,
            subset: st.config_type.clone().unwrap_or_else(|| "-".into()),
            atoms: st.len(),
            max_error: emax,
            score,
            upper_ratio,
            p_frame: None,
            halted_atom: halted,
            halted_frame: None,
            e_max,
            p_halt: None,
        };
        if let (Some(cs), Some(r)) = (&conds, frame_rule.as_mut()) {
            let mut log_calm = 0.0f64;
            for (a, sym) in st.symbols.iter().enumerate() {
                // Every species of the data has its relation (`conds`).
                if let Some(c) = src.species_index(sym).and_then(|s| cs[s]) {
                    log_calm += c.log_calm(u[f][a]);
                }
            }
            // Every species' relation has the same p_halt (one calibration run).
            // As the watch's `upper frame`: the frame, or any atom above its upper cutoff.
            let by_frame = first_cond.map(|c| c.frame_halts(log_calm));
            let halted = halted || by_frame.is_some_and(|x| x.0);
            (row.p_frame, row.halted_frame) = (by_frame.map(|x| x.1), Some(halted));
            row.p_halt = first_cond.map(|c| c.p_halt);
            let unstable = emax > e_max;
            r.frames += 1;
            r.max_error = r.max_error.max(emax);
            r.unstable += usize::from(unstable);
            r.halted += usize::from(halted);
            r.caught += usize::from(halted && unstable);
            r.false_halts += usize::from(halted && emax < e_max / 3.0);
            r.halted_modest += usize::from(halted && !unstable && emax >= e_max / 3.0);
        }
        let subset = row.subset.clone();
        report.frames.push(row);
        let pos = match rows.iter().position(|r| r.subset == subset) {
            Some(p) => p,
            None => {
                rows.push(HaltRow {
                    method: m.name().into(),
                    subset,
                    has_upper,
                    ..Default::default()
                });
                rows.len() - 1
            }
        };
        for r in [&mut rows[pos], &mut total] {
            r.frames += 1;
            r.max_error = r.max_error.max(emax);
            let unstable = emax > e_max;
            r.unstable += usize::from(unstable);
            r.halted += usize::from(halted);
            r.caught += usize::from(halted && unstable);
            r.false_halts += usize::from(halted && emax < e_max / 3.0);
            r.halted_modest += usize::from(halted && !unstable && emax >= e_max / 3.0);
        }
    }
    (total.best_recall_no_false, total.best_false_at_90) = best_thresholds(&scored, e_max);
    report.halts.extend(rows);
    report.halts.push(total);
    report.halts.extend(frame_rule);
}

/// One labelled atom of a pacemaker potential: element, force error, `gamma` (NaN without an
/// `.asi`), `gamma_local` and its cluster (NaN, 0 without a `.lasi`).
type PaceAtom = (usize, f64, f64, f64, u32);

/// Per atom of a frame: `gamma`, `gamma_local` and its cluster.
type PaceFrameGrades = (Vec<f64>, Vec<f64>, Vec<u32>);

/// The grades of every atom of `s` that [`calibrate_pacemaker`] and [`check_pacemaker`] use:
/// `gamma` with `asi`, `gamma_local` and its cluster with `local` (NaN / 0 otherwise).
fn pace_grades(
    pot: &crate::pace::PacePotential,
    asi: Option<&crate::pace::ActiveSetInverse>,
    local: Option<&uq::activeset::ClusteredActiveSets>,
    s: &crate::Structure,
) -> Result<PaceFrameGrades, crate::pace::PaceError> {
    let g = match asi {
        Some(asi) => pot.grades(asi, s)?,
        None => vec![f64::NAN; s.len()],
    };
    let (gl, cl) = match local {
        Some(l) => pot.gamma_local(l, s)?,
        None => (vec![f64::NAN; s.len()], vec![0; s.len()]),
    };
    Ok((g, gl, cl))
}

/// Cutoffs of `gamma` (with the active-set inverse `asi`) and of `gamma_local` (with the
/// clustered local active sets `local`: per element, then per cluster with enough atoms) for
/// every element of a pacemaker potential, from the force errors and grades of the validation
/// data `valid` (and of `high`, for the conditional upper cutoff), by the same rules as
/// [`calibrate_potential`]. `napply[s]`: N of element `s`. `methods`: `gamma` and/or
/// `gamma_local`.
#[allow(clippy::too_many_arguments)]
pub fn calibrate_pacemaker(
    pot: &crate::pace::PacePotential,
    asi: &crate::pace::ActiveSetInverse,
    local: Option<&uq::activeset::ClusteredActiveSets>,
    methods: &[Method],
    valid: &[crate::Structure],
    high: &[crate::Structure],
    napply: &[u64],
    settings: &CalibrateSettings,
) -> Result<CalibrationResult, Error> {
    use rayon::prelude::*;
    let elements = &pot.model().elements;
    if methods.contains(&Method::GammaLocal) && local.is_none() {
        return Err(Error::new(
            ErrorKind::Missing,
            "gamma_local of a pacemaker potential needs its clustered active sets (.lasi)",
        ));
    }
    // Every labelled atom of `data`, per element.
    let atoms = |data: &[crate::Structure]| -> Result<Vec<Vec<PaceAtom>>, Error> {
        let per: Vec<Vec<PaceAtom>> = data
            .par_iter()
            .enumerate()
            .map(|(k, s)| -> Result<Vec<PaceAtom>, Error> {
                let Some(fr) = &s.forces else {
                    return Ok(vec![]);
                };
                let at = |e: crate::pace::PaceError| {
                    Error::new(ErrorKind::Data, format!("structure {k}: {e}"))
                };
                let e = pace_force_errors(pot, s, fr).map_err(at)?;
                let (g, gl, cl) = pace_grades(pot, Some(asi), local, s).map_err(at)?;
                Ok(s.symbols
                    .iter()
                    .enumerate()
                    .filter_map(|(i, sym)| {
                        Some((pot.model().species_index(sym)?, e[i], g[i], gl[i], cl[i]))
                    })
                    .collect())
            })
            .collect::<Result<_, _>>()?;
        let mut out = vec![vec![]; elements.len()];
        for a in per.into_iter().flatten() {
            out[a.0].push(a);
        }
        Ok(out)
    };
    if valid.iter().all(|s| s.forces.is_none()) {
        return Err(Error::new(
            ErrorKind::Data,
            "the validation data has no reference forces (check --forces-key)",
        ));
    }
    if !high.is_empty() && high.iter().all(|s| s.forces.is_none()) {
        return Err(Error::new(
            ErrorKind::Data,
            "the high-uncertainty structures have no reference forces (check --forces-key)",
        ));
    }
    let va = atoms(valid)?;
    let ha = atoms(high)?;
    let grade = |m: Method, a: &PaceAtom| if m == Method::Gamma { a.2 } else { a.3 };
    let split = |m: Method, v: &[PaceAtom]| -> (Vec<f64>, Vec<f64>) {
        v.iter().map(|a| (a.1, grade(m, a))).unzip()
    };
    let (mut cals, mut rows, mut cluster_rows, mut warnings, mut caveats) =
        (vec![], vec![], vec![], vec![], vec![]);
    for &m in methods {
        for (sp, (name, (v, h))) in elements.iter().zip(va.iter().zip(&ha)).enumerate() {
            if v.len() < 10 {
                if m == methods[0] {
                    warnings.push(format!(
                        "element {name}: only {} validation atoms, skipped (need at least 10)",
                        v.len()
                    ));
                }
                continue;
            }
            // Checked only for the elements calibrated: an element absent from the validation
            // data (and so from a --pool-size split) is skipped above, not an error.
            if napply[sp] < 2 {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the cutoffs of {name} would apply to N = {} atoms; N must be at least 2 \
                         (give the number of atoms of the run you will watch: frames x atoms)",
                        napply[sp]
                    ),
                ));
            }
            let opts = settings.options(napply[sp]);
            let (es, us) = split(m, v);
            let (hes, hus) = split(m, h);
            let mut cal = calibrate_with_high(name, m.name(), &es, &us, &hes, &hus, &opts)?;
            cal.provenance = settings.provenance.clone();
            push_caveats(&mut caveats, name, m, &cal.warnings);
            rows.push(cal.table_row());
            cals.push(cal.clone());
            if m != Method::GammaLocal {
                continue;
            }
            let Some(nk) = local
                .and_then(|l| l.species.get(sp))
                .map(|sc| sc.sets.len())
            else {
                continue;
            };
            let mut groups = vec![(vec![], vec![]); nk];
            for a in v {
                let g: &mut (Vec<f64>, Vec<f64>) = &mut groups[(a.4 as usize).min(nk - 1)];
                g.0.push(a.1);
                g.1.push(a.3);
            }
            let out = ClusterOut {
                rows: &mut rows,
                cluster_rows: &mut cluster_rows,
                cals: &mut cals,
                caveats: &mut caveats,
            };
            calibrate_cluster_entries(name, m, &groups, &opts, &cal, settings, out);
        }
    }
    Ok(CalibrationResult {
        calibration: cals,
        rows,
        cluster_rows,
        warnings,
        caveats,
        halt_rule: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cutoff::MIN_CLUSTER_ATOMS;

    /// `aceuq calibrate` on gamma_local: a species-level entry per species and an entry per
    /// cluster with enough validation atoms (fitted on exactly that cluster's atoms, N its share),
    /// the others listed as falling back; everything survives save and load, and a stored cluster
    /// index the model does not have is refused at load time.
    #[test]
    fn gamma_local_cutoffs_per_cluster_are_derived_and_round_trip() {
        let (mut pot, valid) = crate::testing::clustered_potential(3);
        let napply = [60_000u64, 40_000];
        let r = calibrate_potential(
            &pot,
            &valid,
            &[],
            &napply,
            &CalibrateSettings::default(),
            &[Method::GammaLocal],
        )
        .unwrap();
        let (u, clusters) = pot.gamma_local_per_atom(&valid).unwrap();
        let errors = uq::force_errors(&pot.model, &valid).unwrap();
        let gl = Method::GammaLocal.name();
        let mut fitted = 0;
        for (s, name) in pot.model.species.iter().enumerate() {
            let species_level = r
                .calibration
                .iter()
                .find(|c| &c.species == name && c.method == gl && c.cluster.is_none())
                .expect("species-level entry");
            let ns = species_level.n_fit;
            let nclusters = pot.uq.gamma_local_clusters(s).unwrap();
            assert!(
                nclusters >= 2,
                "{name}: {nclusters} clusters ({:?})",
                pot.uq.local.as_ref().map(|l| &l.info.notes)
            );
            for k in 0..nclusters {
                // The uncertainties of this cluster's atoms, as the MD step grades them.
                let (mut mine, mut errs) = (vec![], vec![]);
                for (j, st) in valid.iter().enumerate() {
                    for (i, sym) in st.symbols.iter().enumerate() {
                        if sym == name && clusters[j][i] as usize == k {
                            mine.push(u[j][i]);
                            errs.push(errors[j][i]);
                        }
                    }
                }
                let row = r
                    .cluster_rows
                    .iter()
                    .find(|row| &row[0] == name && row[1] == k.to_string())
                    .expect("every cluster is listed");
                assert_eq!(
                    row[2],
                    mine.len().to_string(),
                    "{name} cluster {k}: atom count"
                );
                let own = r
                    .calibration
                    .iter()
                    .find(|c| &c.species == name && c.method == gl && c.cluster == Some(k));
                if mine.len() >= MIN_CLUSTER_ATOMS {
                    let c = own.unwrap_or_else(|| panic!("{name} cluster {k}: {row:?}"));
                    fitted += 1;
                    assert_eq!(c.n_fit, mine.len());
                    let share = napply[s] as f64 * mine.len() as f64 / ns as f64;
                    assert_eq!(c.n_apply, share.round() as u64);
                    // Fitted on exactly this cluster's atoms.
                    let mut o = CalibrationOptions::new(c.n_apply);
                    o.upper_rule = crate::stats::cutoff::UpperRule::Ratio;
                    let mut direct =
                        crate::stats::cutoff::calibrate(name, gl, &errs, &mine, &o).unwrap();
                    direct.cluster = Some(k);
                    // ... except the upper cutoff: the species' conditional fit.
                    direct.upper_rule = species_level.upper_rule;
                    direct.conditional = species_level.conditional.clone();
                    direct.u_max = species_level.u_max.max(direct.u_c);
                    // ... and no warnings about its own force errors (the watch uses the
                    // species' e_c) or its own ratio cutoff (replaced).
                    direct.warnings.retain(|w| {
                        !w.starts_with("force errors:")
                            && !w.starts_with(crate::stats::cutoff::RATIO_EXTRAPOLATED)
                    });
                    assert!(c.warnings.iter().all(|w| !w.starts_with("force errors:")));
                    assert_eq!(&direct, c, "{name} cluster {k}");
                    assert!(c.u_c != species_level.u_c);
                    assert_eq!(row[6], "own fit");
                    assert!(
                        r.rows
                            .iter()
                            .any(|t| t[0] == *name && t[2] == k.to_string())
                    );
                } else {
                    assert!(
                        own.is_none(),
                        "{name} cluster {k}: only {} atoms",
                        mine.len()
                    );
                    assert!(row[6].starts_with("species fallback"), "{row:?}");
                    assert_eq!(row[4], format!("{:.5}", species_level.u_c));
                }
            }
        }
        assert!(fitted >= 2, "{fitted} clusters got cutoffs of their own");

        // Save and load: the table comes back whole; lookups take the cluster's own entry and
        // fall back to the species for a cluster without one.
        pot.uq.calibration = r.calibration.clone();
        let dir = std::env::temp_dir().join(format!("aceuq-calib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.aceuq");
        pot.save(&path).unwrap();
        let back = Potential::load(&path).unwrap();
        assert_eq!(back.uq.calibration, r.calibration);
        let c = r.calibration.iter().find(|c| c.cluster.is_some()).unwrap();
        let s = back.model.species_index(&c.species).unwrap();
        let k = c.cluster.unwrap();
        assert_eq!(
            back.stored_cluster_cutoffs(Method::GammaLocal, s, k),
            Some((c.u_c, c.u_max, true))
        );
        let (lo, hi) = back.stored_cutoffs(Method::GammaLocal, s).unwrap();
        assert!(lo != c.u_c);
        let mut one_less = pot.clone();
        one_less
            .uq
            .calibration
            .retain(|x| !(x.species == c.species && x.cluster == Some(k)));
        assert_eq!(
            one_less.stored_cluster_cutoffs(Method::GammaLocal, s, k),
            Some((lo, hi, false))
        );

        // A cluster index beyond the model's clusters is refused when the file is loaded.
        let n = pot.uq.gamma_local_clusters(s).unwrap();
        let mut bad = pot.clone();
        for x in bad.uq.calibration.iter_mut() {
            if x.cluster == Some(k) && x.species == c.species {
                x.cluster = Some(n);
            }
        }
        bad.save(&path).unwrap();
        let e = Potential::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(&format!("cluster {n} of species {}", c.species))
                && e.contains(&format!("only {n} clusters")),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `pot` calibrated on `valid` (N = 300 per species) for `methods`, stored in it.
    fn calibrated(pot: &mut Potential, valid: &[crate::Structure], methods: &[Method]) {
        let napply = vec![300u64; pot.model.nspecies()];
        let r = calibrate_potential(
            pot,
            valid,
            &[],
            &napply,
            &CalibrateSettings::default(),
            methods,
        )
        .unwrap();
        pot.uq.calibration = r.calibration;
    }

    /// The largest value of every frame, in increasing order.
    fn sorted_frame_maxima(v: &[Vec<f64>]) -> Vec<f64> {
        let mut m: Vec<f64> = v
            .iter()
            .map(|f| f.iter().fold(0.0, |a, &b| f64::max(a, b)))
            .collect();
        m.sort_by(|a, b| a.partial_cmp(b).unwrap());
        m
    }

    /// Methods calibrated for different e_max (one recalibrated alone with another
    /// `--max-error`) are each judged against their own: the unstable count of a method's
    /// frames follows its e_max, not the first stored entry's.
    #[test]
    fn check_judges_each_method_against_its_own_e_max() {
        let cfg = crate::uq::UqConfig {
            active_set: true,
            distance: true,
            ..Default::default()
        };
        let (mut pot, valid) = crate::testing::teacher_potential(38, 900, 22, &cfg);
        calibrated(&mut pot, &valid, &[Method::Gamma, Method::Distance]);
        let errs = uq::force_errors(&pot.model, &valid).unwrap();
        let fmax = sorted_frame_maxima(&errs);
        // gamma at the 25th percentile of the frames' max errors, distance at the 75th.
        let pick = |q: f64| fmax[((fmax.len() - 1) as f64 * q) as usize];
        let own = [(Method::Gamma, pick(0.25)), (Method::Distance, pick(0.75))];
        for c in pot.uq.calibration.iter_mut() {
            let e = own.iter().find(|(m, _)| m.name() == c.method).unwrap().1;
            c.e_max = e;
            if let Some(x) = c.conditional.as_mut() {
                x.e_max = e;
            }
        }
        let rep = check_calibration(&pot, &valid, &[], &[Method::Gamma, Method::Distance]).unwrap();
        for (m, e) in own {
            let all = rep
                .halts
                .iter()
                .find(|h| h.subset == "all" && h.method == m.name())
                .unwrap();
            let want = fmax.iter().filter(|&&x| x > e).count();
            assert_eq!(all.unstable, want, "{m:?} at e_max {e}");
            assert!(
                rep.frames
                    .iter()
                    .filter(|f| f.method == m.name())
                    .all(|f| f.e_max == e)
            );
        }
        assert_ne!(own[0].1, own[1].1);
    }

    /// The check recounts what it promises: exceedances of the stored u_c and e_c per entry,
    /// and per frame halts against true max errors with the e_max / 3 false-halt band; a
    /// method without an upper cutoff halts nothing.
    #[test]
    fn check_counts_exceedances_and_halts_per_frame() {
        let (mut pot, valid) = crate::testing::clustered_potential(3);
        calibrated(&mut pot, &valid, &[Method::GammaLocal]);
        // Upper cutoffs chosen so that some frames halt: the median of the per-frame max gamma.
        let u = pot.gamma_local_per_atom(&valid).unwrap().0;
        let errs = uq::force_errors(&pot.model, &valid).unwrap();
        let frame_max = sorted_frame_maxima(&u);
        let cut = frame_max[frame_max.len() / 2];
        // e_max at the median frame max error, so both kinds of frames exist.
        let emax = sorted_frame_maxima(&errs);
        let e_max = emax[emax.len() / 2];
        for c in pot.uq.calibration.iter_mut() {
            c.u_max = cut;
            c.e_max = e_max;
            if let Some(x) = c.conditional.as_mut() {
                x.e_max = e_max;
            }
        }
        let rep = check_calibration(&pot, &valid, &[], &[Method::GammaLocal]).unwrap();
        assert_eq!(rep.e_max, e_max);
        assert!(rep.exceedances.iter().any(|r| r.cluster.is_some()));
        // Cluster rows: the breakdown adds up to the u_c count and has no e_c counts.
        for row in rep.exceedances.iter().filter(|r| r.cluster.is_some()) {
            let su: usize = row.by_subset.iter().map(|x| x.1).sum();
            assert_eq!(su, row.above_u_c);
            assert!(row.by_subset.iter().all(|x| x.2 == 0 && x.1 > 0));
        }
        for row in rep.exceedances.iter().filter(|r| r.cluster.is_none()) {
            let s = pot.model.species_index(&row.species).unwrap();
            let cal = pot
                .uq
                .calibration
                .iter()
                .find(|c| c.species == row.species)
                .unwrap();
            let (mut n, mut au, mut ae) = (0, 0, 0);
            for (f, st) in valid.iter().enumerate() {
                for (a, sym) in st.symbols.iter().enumerate() {
                    if pot.model.species_index(sym) == Some(s) {
                        n += 1;
                        au += usize::from(u[f][a] > cal.u_c);
                        ae += usize::from(errs[f][a] > cal.e_c);
                    }
                }
            }
            assert_eq!((row.atoms, row.above_u_c, row.above_e_c), (n, au, ae));
            // Checked on its own calibration data, an entry counts exactly the values its
            // calibration stored above its cutoffs, and the sampling spread is computed.
            let fit =
                |f: &Option<crate::stats::tail::CutoffFit>| f.as_ref().map(|f| (f.n, f.above));
            assert_eq!(fit(&cal.uncertainty_fit), Some((n, Some(au))));
            assert_eq!(fit(&cal.error_fit), Some((n, Some(ae))));
            assert!(row.spread_u.is_some() && row.spread_e.is_some());
            // The per-subset breakdown adds up to the totals, without empty entries.
            let (su, se) = row
                .by_subset
                .iter()
                .fold((0, 0), |acc, x| (acc.0 + x.1, acc.1 + x.2));
            assert_eq!((su, se), (au, ae));
            assert!(row.by_subset.iter().all(|x| x.1 + x.2 > 0));
            assert_eq!(row.expected, n as f64 / 300.0);
            // The tail levels count atoms above the model quantile with k expected.
            for &(k, qu, ou, _, _) in &row.levels {
                assert!((cal.uncertainty_quantile(k / n as f64) - qu).abs() < 1e-12);
                let recount = valid
                    .iter()
                    .enumerate()
                    .flat_map(|(f, st)| {
                        st.symbols.iter().enumerate().map(move |(a, sy)| (f, a, sy))
                    })
                    .filter(|(f, a, sy)| pot.model.species_index(sy) == Some(s) && u[*f][*a] > qu)
                    .count();
                assert_eq!(ou, recount);
            }
        }
        let all = rep.halts.iter().find(|h| h.subset == "all").unwrap();
        let (mut halted, mut unstable, mut caught, mut low) = (0, 0, 0, 0);
        for f in 0..valid.len() {
            let h = u[f].iter().any(|&x| x > cut);
            let em = errs[f].iter().fold(0.0, |a: f64, &b| a.max(b));
            halted += usize::from(h);
            unstable += usize::from(em > e_max);
            caught += usize::from(h && em > e_max);
            low += usize::from(h && em < e_max / 3.0);
        }
        assert!(halted > 0 && unstable > 0);
        assert_eq!(
            (
                all.frames,
                all.halted,
                all.unstable,
                all.caught,
                all.false_halts
            ),
            (valid.len(), halted, unstable, caught, low)
        );
        assert!(all.has_upper);
        // The frame rule: P(some atom errs above e_max) from each species' fitted s(u), or an
        // atom above its upper cutoff.
        let fr = rep
            .halts
            .iter()
            .find(|h| h.subset == "frame rule")
            .expect("a frame rule row");
        let (mut fh, mut fc) = (0, 0);
        // One per-frame row per frame, in order, for the one method checked.
        assert_eq!(rep.frames.len(), valid.len());
        for (f, st) in valid.iter().enumerate() {
            let mut log_calm = 0.0f64;
            let mut p_halt = 0.0;
            for (a, sym) in st.symbols.iter().enumerate() {
                let c = pot
                    .uq
                    .calibration
                    .iter()
                    .find(|c| &c.species == sym && c.cluster.is_none())
                    .and_then(|c| c.conditional.as_ref())
                    .expect("a fitted relation");
                p_halt = c.p_halt;
                log_calm += (-c.scale.p_exceed(u[f][a], c.e_max)).ln_1p();
            }
            let h = 1.0 - log_calm.exp() >= p_halt || u[f].iter().any(|&x| x > cut);
            let em = errs[f].iter().fold(0.0, |a: f64, &b| a.max(b));
            fh += usize::from(h);
            fc += usize::from(h && em > e_max);
            let row = &rep.frames[f];
            let umax = u[f].iter().fold(0.0, |a: f64, &b| a.max(b));
            assert_eq!(
                (row.frame, row.novel, row.atoms, row.max_error),
                (f, false, st.len(), em)
            );
            assert_eq!(row.method, "gamma_local");
            let ratio = row.upper_ratio.expect("an upper cutoff");
            assert!((ratio - umax / cut).abs() <= 1e-12 * ratio);
            assert_eq!(row.halted_atom, umax > cut);
            assert_eq!(row.halted_frame, Some(h));
            let p = row.p_frame.expect("a frame probability");
            assert!((p - (1.0 - log_calm.exp())).abs() <= 1e-12, "{p}");
        }
        let csv = rep.frames_csv(&[]);
        assert_eq!(csv.lines().count(), 1 + valid.len());
        assert!(csv.starts_with("method,frame,file,index_in_file,set,config_type,atoms,"));
        // Novel frames follow the held-out ones; origins and CSV quoting.
        let mut rep2 =
            check_calibration(&pot, &valid[..2], &valid[2..4], &[Method::GammaLocal]).unwrap();
        let order: Vec<(usize, bool)> = rep2.frames.iter().map(|r| (r.frame, r.novel)).collect();
        assert_eq!(order, [(0, false), (1, false), (2, true), (3, true)]);
        rep2.frames[0].subset = "a,\"b\"".into();
        let origin: Vec<FrameOrigin> = ["x.xyz", "x.xyz", "y,z.xyz", "y,z.xyz"]
            .iter()
            .zip([0, 1, 0, 1])
            .map(|(f, index)| FrameOrigin {
                file: f.to_string(),
                index,
            })
            .collect();
        let csv = rep2.frames_csv(&origin);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(
            lines[1].starts_with("gamma_local,0,x.xyz,0,held-out,\"a,\"\"b\"\"\","),
            "{}",
            lines[1]
        );
        assert!(
            lines[4].starts_with("gamma_local,3,\"y,z.xyz\",1,novel,"),
            "{}",
            lines[4]
        );
        // Every row has the header's 15 fields (outside quotes) and says e_max and p_halt.
        for l in &lines[2..] {
            assert_eq!(
                l.split(',').count() - usize::from(l.contains("\"y,z")),
                15,
                "{l}"
            );
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[f.len() - 7].parse::<f64>().unwrap(), e_max);
        }
        assert_eq!((fr.frames, fr.halted, fr.caught), (valid.len(), fh, fc));
        assert!(fh > 0 && fh < valid.len(), "{fh} of {} frames", valid.len());
        // No upper cutoff: nothing halts, and the row says so.
        for c in pot.uq.calibration.iter_mut() {
            c.u_max = f64::INFINITY;
        }
        let rep = check_calibration(&pot, &valid, &[], &[Method::GammaLocal]).unwrap();
        let all = rep.halts.iter().find(|h| h.subset == "all").unwrap();
        assert_eq!(all.halted, 0);
        assert!(!all.has_upper);
        // ... and the frames' u / u_max is empty, not 0 (as if far below a cutoff).
        assert!(rep.frames.iter().all(|r| r.upper_ratio.is_none()));
        for l in rep.frames_csv(&[]).lines().skip(1) {
            assert_eq!(l.split(',').nth(10), Some(""), "{l}");
        }
        assert!(within_promise(3, 0.5) && !within_promise(4, 0.5));
        assert!(within_promise(4, 10.0) && !within_promise(3, 10.0) && !within_promise(31, 10.0));
    }

    #[test]
    fn best_thresholds_find_the_separating_limits() {
        // Scores: unstable frames 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 (e = 2); calm frames with
        // scores 1, 2 and a false-halt candidate at 6.5 (e = 0.1); a modest frame at 20 (e = 0.5).
        let mut f: Vec<(f64, f64)> = (5..15).map(|x| (x as f64, 2.0)).collect();
        f.extend([(1.0, 0.1), (2.0, 0.1), (6.5, 0.1), (20.0, 0.5)]);
        let (r, n) = best_thresholds(&f, 1.0);
        // Above 6.5: 7..14 = 8 of 10 unstable frames; 90 % recall needs the threshold at 6,
        // which halts the 6.5 frame.
        assert_eq!((r, n), (0.8, Some(1)));
        assert!(best_thresholds(&[(1.0, 0.1)], 1.0).0.is_nan());
    }

    /// A juror's frame row: frame `f` (true largest error `e`), frame probability `p` (None: no
    /// frame rule), an atom above its upper cutoff or not.
    fn juror(method: &str, f: usize, e: f64, p: Option<f64>, above: bool) -> FrameRow {
        FrameRow {
            method: method.into(),
            frame: f,
            novel: false,
            subset: "-".into(),
            atoms: 10,
            max_error: e,
            score: 0.5,
            upper_ratio: p.map(|_| if above { 1.5 } else { 0.5 }),
            p_frame: p,
            halted_atom: above,
            halted_frame: p.map(|p| above || p >= 0.5),
            e_max: 1.0,
            p_halt: p.map(|_| 0.5),
        }
    }

    /// The reliability rows: per band of frame probabilities, their sum against the frames truly
    /// above e_max, with the Poisson-binomial probabilities of the count; a method without a
    /// frame rule has no rows, an undefined probability is not counted, empty bands are left out.
    #[test]
    fn reliability_sums_the_frame_probabilities_per_band() {
        let mut report = CheckReport {
            e_max: 1.0,
            ..Default::default()
        };
        // (true error, probability): two calm frames rated 0.001 and 0.005, one of them unstable;
        // two at 0.3 and 0.2, neither unstable; one certain and unstable; one undefined; two on
        // band edges (0.01 and 0.9 open the bands they start), calm.
        let frames = [
            (1.2, 0.001),
            (0.1, 0.005),
            (0.5, 0.3),
            (0.2, 0.2),
            (3.0, 1.0),
            (2.0, f64::NAN),
            (0.1, 0.01),
            (0.1, 0.9),
        ];
        for (f, &(e, p)) in frames.iter().enumerate() {
            report.frames.push(juror("ensemble", f, e, Some(p), false));
            report.frames.push(juror("gp", f, e, None, false));
        }
        let rows = report.reliability();
        let bands: Vec<_> = rows
            .iter()
            .map(|r| (r.band, r.frames, r.observed))
            .collect();
        assert_eq!(
            bands,
            vec![
                (Some((0.0, 0.01)), 2, 1),
                (Some((0.01, 0.1)), 1, 0),
                (Some((0.1, 0.5)), 2, 0),
                (Some((0.9, 1.0)), 2, 1),
                (None, 7, 2),
            ]
        );
        assert!(rows.iter().all(|r| r.method == "ensemble"));
        // The first band: expected 0.006; P(>= 1) = 1 - 0.999 * 0.995, P(<= 1) = 1 - 5e-6.
        assert!((rows[0].expected - 0.006).abs() < 1e-15);
        assert!((rows[0].at_least - (1.0 - 0.999 * 0.995)).abs() < 1e-12);
        assert!((rows[0].at_most - (1.0 - 0.001 * 0.005)).abs() < 1e-12);
        // None of the 0.3 / 0.2 frames: P(<= 0) = 0.7 * 0.8.
        assert!((rows[2].at_most - 0.56).abs() < 1e-12);
        assert!((rows[2].at_least - 1.0).abs() < 1e-12);
        // One of the 1.0 / 0.9 frames: certain, P(<= 1) = 1 - 0.9.
        assert!((rows[3].at_most - 0.1).abs() < 1e-12);
        assert!((rows[4].expected - 2.416).abs() < 1e-12);
    }

    /// The watch's `upper vote` in `check-cutoffs`: a frame halts when an atom is above the upper
    /// cutoff of any juror, or when at least two jurors' frame probabilities reach p_halt (an
    /// undefined one counts); one vote is not enough; methods without a frame rule, and
    /// `gamma_local`, do not sit; fewer than two jurors give no vote rows.
    #[test]
    fn the_vote_halts_on_one_atom_or_two_frame_rules() {
        // (true error, [gamma, ensemble, distance] probabilities, atom above in distance)
        let frames = [
            (1.5, [0.9, 0.1, 0.2], false), // one vote: no halt (a missed unstable frame)
            (2.0, [0.9, 0.6, 0.1], false), // two votes: halt
            (0.1, [0.1, 0.1, 0.1], true),  // an atom above: halt (a false halt)
            (0.5, [f64::NAN, 0.1, f64::NAN], false), // two undefined: halt (modest)
            (0.2, [0.4, 0.49, 0.3], false), // none: no halt
        ];
        let mut report = CheckReport {
            e_max: 1.0,
            ..Default::default()
        };
        for (m, name) in ["gamma", "ensemble", "distance"].iter().enumerate() {
            for (f, (e, p, above)) in frames.iter().enumerate() {
                report.frames.push(juror(
                    name,
                    f,
                    *e,
                    Some(p[m]),
                    *above && *name == "distance",
                ));
            }
        }
        // Not jurors: gamma_local (even halting every frame), gp without a frame rule.
        for (f, (e, ..)) in frames.iter().enumerate() {
            report
                .frames
                .push(juror("gamma_local", f, *e, Some(1.0), true));
            report.frames.push(juror("gp", f, *e, None, false));
        }
        // Every juror answers the same question: P(e > 1 eV/Å) at p_halt 0.5.
        let same = |_: &str| Some(vec![Some((1.0, 0.5))]);
        let mut other = report.clone();
        add_vote(&mut report, same);
        let votes: Vec<&FrameRow> = report.frames.iter().filter(|r| r.method == VOTE).collect();
        let halted: Vec<bool> = votes.iter().map(|r| r.halted_frame.unwrap()).collect();
        assert_eq!(halted, [false, true, true, true, false]);
        assert_eq!(votes[2].upper_ratio, Some(1.5));
        assert!(votes[2].halted_atom && !votes[1].halted_atom);
        let row = report.halts.last().unwrap();
        assert_eq!(
            (row.method.as_str(), row.subset.as_str()),
            (VOTE, VOTE_SUBSET)
        );
        assert_eq!(
            (
                row.frames,
                row.unstable,
                row.caught,
                row.false_halts,
                row.halted_modest
            ),
            (5, 2, 1, 1, 1)
        );
        // One juror: no vote.
        let mut one = CheckReport {
            e_max: 1.0,
            frames: vec![juror("gamma", 0, 2.0, Some(0.9), true)],
            ..Default::default()
        };
        add_vote(&mut one, same);
        assert!(one.frames.iter().all(|r| r.method != VOTE) && one.halts.is_empty());
        // Distance calibrated for P(e > 2 eV/Å) does not sit: gamma and ensemble vote alone (its
        // atom above no longer halts frame 2, its undefined probability no longer counts in
        // frame 3).
        let mut agree = other.clone();
        let mut lacking = other.clone();
        add_vote(&mut other, |m| match m {
            "distance" => Some(vec![Some((2.0, 0.5)), Some((1.0, 0.5))]),
            _ => Some(vec![Some((1.0, 0.5)), Some((1.0, 0.5))]),
        });
        let halted = |r: &CheckReport| -> Vec<bool> {
            r.frames
                .iter()
                .filter(|r| r.method == VOTE)
                .map(|r| r.halted_frame.unwrap())
                .collect()
        };
        assert_eq!(halted(&other), [false, true, false, false, false]);
        // Distance without a relation for a species of the data does not sit either (the watch
        // leaves out a juror that cannot judge every species of the run): the verdicts of gamma
        // and ensemble alone.
        add_vote(&mut lacking, |m| match m {
            "distance" => None,
            _ => Some(vec![Some((1.0, 0.5)), Some((1.0, 0.5))]),
        });
        assert_eq!(halted(&lacking), [false, true, false, false, false]);
        // A species the data do not have asks nothing (None for every juror): with the same
        // question for the other, all three sit (the same verdicts as with every juror agreeing).
        add_vote(&mut agree, |_| Some(vec![Some((1.0, 0.5)), None]));
        assert_eq!(halted(&agree), [false, true, true, true, false]);
        // Gamma recalibrated for P(e > 2 eV/Å): the larger group that agrees, ensemble and
        // distance, votes without it (frame 1 keeps one vote, frame 3 one undefined probability;
        // distance's atom above halts frame 2), at the jury's e_max.
        let mut two = agree.clone();
        two.frames.retain(|r| r.method != VOTE);
        two.halts.clear();
        add_vote(&mut two, |m| match m {
            "gamma" => Some(vec![Some((2.0, 0.5))]),
            _ => Some(vec![Some((1.0, 0.5))]),
        });
        assert_eq!(halted(&two), [false, false, true, false, false]);
        assert_eq!(two.halts.last().unwrap().unstable, 2);
        // Two groups of two: the one with the earliest juror (gamma's) sits, and the frame (true
        // error 1.5 eV/Å) is unstable at its e_max (1), not at the other group's (2).
        let mut tie = CheckReport::default();
        for m in ["gamma", "ensemble", "distance", "gp"] {
            tie.frames.push(juror(m, 0, 1.5, Some(0.1), false));
        }
        add_vote(&mut tie, |m| match m {
            "gamma" | "ensemble" => Some(vec![Some((1.0, 0.5))]),
            _ => Some(vec![Some((2.0, 0.5))]),
        });
        assert_eq!(tie.halts.last().unwrap().unstable, 1);
    }

    /// A small Al-Mg potential with gamma and the latent distance (fitted on 18 teacher frames),
    /// and its 12 validation frames.
    fn gamma_distance_potential() -> (Potential, Vec<crate::Structure>) {
        let cfg = crate::uq::UqConfig {
            active_set: true,
            distance: true,
            ..Default::default()
        };
        crate::testing::teacher_potential(30, 77, 18, &cfg)
    }

    /// `check-cutoffs` seats the vote as the watch does: a juror needs an error relation for
    /// every species of the checked data, and only for those.
    #[test]
    fn the_check_seats_jurors_by_the_species_of_the_data() {
        let (mut pot, valid) = gamma_distance_potential();
        let valid = &valid[..];
        let methods = [Method::Gamma, Method::Distance];
        pot.uq.calibration = calibrate_potential(
            &pot,
            valid,
            &[],
            &[10_000, 10_000],
            &CalibrateSettings::default(),
            &methods,
        )
        .unwrap()
        .calibration;
        let voted = |pot: &Potential, data: &[crate::Structure]| {
            let rep = check_calibration(pot, data, &[], &methods).unwrap();
            rep.frames.iter().any(|r| r.method == VOTE)
        };
        assert!(
            voted(&pot, valid),
            "gamma and distance vote on Al-Mg frames"
        );
        // Distance loses its relation for Mg.
        let mut no_mg = pot.clone();
        for c in no_mg.uq.calibration.iter_mut() {
            if c.method == "distance" && c.species == "Mg" {
                c.conditional = None;
            }
        }
        // With Mg in the data it cannot judge every atom: no second juror, no vote.
        assert!(!voted(&no_mg, valid));
        // Frames of Al alone (every atom renamed Al: the reference forces are then no physical
        // labels, only the species matter here): distance judges them all and sits, as in a run
        // that maps Al only.
        let al_only: Vec<crate::Structure> = valid
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.symbols.iter_mut().for_each(|x| *x = "Al".into());
                s
            })
            .collect();
        assert!(voted(&no_mg, &al_only));
    }

    /// `pick_halt_rule` reads gamma's frame-rule row and the vote's row (not gamma's single-atom
    /// "all" row): the vote when it misses fewer unstable frames or halts fewer calm ones, the
    /// frame rule on a tie.
    #[test]
    fn the_vote_is_picked_only_when_it_makes_fewer_mistakes() {
        let row = |method: &str, subset: &str, caught: usize, false_halts: usize| HaltRow {
            method: method.into(),
            subset: subset.into(),
            frames: 10,
            unstable: 4,
            caught,
            false_halts,
            ..Default::default()
        };
        let jury = [Method::Gamma, Method::Distance];
        let report = |frame: (usize, usize), vote: (usize, usize)| CheckReport {
            // A decoy: gamma's single-atom row, as good as the vote.
            halts: vec![
                row("gamma", "all", vote.0, vote.1),
                row("gamma", "frame rule", frame.0, frame.1),
                row(VOTE, VOTE_SUBSET, vote.0, vote.1),
            ],
            e_max: 1.0,
            ..Default::default()
        };
        let pick = |f, v| pick_halt_rule(&report(f, v), &jury, &[]).unwrap();
        let r = pick((3, 0), (4, 0));
        assert!(r.votes() && r.jury == ["gamma", "distance"]);
        assert_eq!(
            (r.frames, r.unstable, r.frame_caught, r.vote_caught),
            (10, 4, 3, 4)
        );
        assert!(pick((4, 1), (4, 0)).votes());
        assert!(!pick((4, 0), (4, 0)).votes(), "a tie keeps the frame rule");
        assert!(!pick((3, 0), (4, 2)).votes());
        assert!(pick_halt_rule(&CheckReport::default(), &jury, &[]).is_none());
        // A single juror's own frame rule: only when it makes fewer mistakes than both (the best
        // of them, the earlier on a tie); it sits alone for upper auto.
        let singles = [Method::Distance, Method::Contact];
        let with = |frame: (usize, usize), vote: (usize, usize), d: (usize, usize), c| {
            let mut r = report(frame, vote);
            r.halts.push(row("distance", "frame rule", d.0, d.1));
            r.halts.push(row("contact", "frame rule", 4, c));
            pick_halt_rule(&r, &jury, &singles).unwrap()
        };
        let r = with((2, 0), (3, 1), (3, 1), 0);
        assert_eq!(
            (r.rule.as_str(), r.juror.as_deref()),
            ("juror", Some("contact"))
        );
        assert_eq!((r.juror_caught, r.juror_false), (4, 0));
        assert!(r.votes() && r.sitting() == ["contact"]);
        assert!(
            r.note().contains("halts by contact's frame rule"),
            "{}",
            r.note()
        );
        // As good as the vote: the vote stays; as good as the frame rule: the frame rule stays.
        assert_eq!(with((2, 0), (4, 1), (3, 1), 1).rule, "vote");
        assert_eq!(with((3, 0), (3, 1), (2, 0), 1).rule, "frame");
        // The earlier of two equal singles is the one scored.
        let r = with((2, 0), (2, 2), (4, 0), 0);
        assert_eq!(
            (r.rule.as_str(), r.juror.as_deref()),
            ("juror", Some("distance"))
        );
        assert_eq!(r.sitting(), ["distance"]);
        // Without that single juror the stored jury sits.
        assert_eq!(pick((3, 0), (4, 0)).sitting(), ["gamma", "distance"]);
    }

    /// The halting rule `calibrate` stores: the vote only when it makes fewer mistakes (missed
    /// unstable frames plus false halts) on the labelled frames; a tie keeps the frame rule. On a
    /// model with gamma and distance calibrated on in-distribution frames (none unstable) it is a
    /// tie, scored on every validation frame; it is stored in the model file and read back, and a
    /// calibration without two jurors stores none.
    #[test]
    fn the_halting_rule_is_chosen_by_mistakes_and_round_trips() {
        let mut r = crate::stats::upper::HaltRule {
            rule: "frame".into(),
            jury: vec!["gamma".into(), "distance".into()],
            frames: 20,
            unstable: 5,
            frame_caught: 4,
            frame_false: 1,
            vote_caught: 5,
            vote_false: 1,
            e_max: 1.0,
            juror: None,
            juror_caught: 0,
            juror_false: 0,
        };
        assert_eq!(
            (r.mistakes(RuleKind::Frame), r.mistakes(RuleKind::Vote)),
            (2, 1)
        );
        r.vote_false = 2;
        assert_eq!(r.mistakes(RuleKind::Vote), 2);
        assert!(
            r.note().contains("a tie keeps the frame rule"),
            "{}",
            r.note()
        );

        let (mut pot, valid) = gamma_distance_potential();
        let valid = &valid[..];
        let napply = [10_000u64, 10_000];
        let only_gamma = calibrate_potential(
            &pot,
            valid,
            &[],
            &napply,
            &CalibrateSettings::default(),
            &[Method::Gamma],
        )
        .unwrap();
        assert!(only_gamma.halt_rule.is_none());
        let res = calibrate_potential(
            &pot,
            valid,
            &[],
            &napply,
            &CalibrateSettings::default(),
            &[Method::Gamma, Method::Distance],
        )
        .unwrap();
        let rule = res.halt_rule.clone().expect("gamma and distance sit");
        assert_eq!(rule.jury, ["gamma", "distance"]);
        assert_eq!(rule.frames, valid.len());
        // In-distribution frames: nothing unstable, nothing halted, a tie.
        assert_eq!(
            (
                rule.unstable,
                rule.mistakes(RuleKind::Frame),
                rule.mistakes(RuleKind::Vote)
            ),
            (0, 0, 0)
        );
        assert!(!rule.votes(), "{rule:?}");
        // ... which the calibration says: the rule is untested on unstable frames.
        let untested = format!(
            "halting rule: none of the {} labelled frames it was chosen on errs above 1 eV/Å",
            valid.len()
        );
        assert!(
            res.caveats.iter().any(|c| c.starts_with(&untested)),
            "{:?}",
            res.caveats
        );
        // Calibrating no juror keeps the stored choice; a juror calibrated for another e_max
        // does not sit.
        let mut voted = rule.clone();
        voted.rule = "vote".into();
        let mut p2 = pot.clone();
        p2.uq.calibration = res.calibration.clone();
        p2.uq.halt_rule = Some(voted.clone());
        let mut other = CalibrateSettings::default();
        let kept = calibrate_potential(&p2, valid, &[], &napply, &other, &[]).unwrap();
        assert_eq!(kept.halt_rule, Some(voted));
        other.max_error = 2.0;
        let mixed =
            calibrate_potential(&p2, valid, &[], &napply, &other, &[Method::Distance]).unwrap();
        assert!(mixed.halt_rule.is_none(), "{:?}", mixed.halt_rule);
        pot.uq.calibration = res.calibration;
        pot.uq.halt_rule = Some(rule.clone());
        let dir = crate::testing::scratch_dir("halt_rule_round_trip");
        let path = dir.join("m.aceuq");
        pot.save(&path).unwrap();
        let back = crate::Potential::load(&path).unwrap();
        assert_eq!(back.uq.halt_rule, Some(rule));
    }
}
