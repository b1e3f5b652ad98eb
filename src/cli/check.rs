//! `aceuq check-cutoffs`: do a model's stored cutoffs keep their promise on labelled data?
//!
//! - Lower cutoffs: on held-out in-distribution data (`--data`), each stored entry's u_c (and
//!   e_c) should be exceeded by about atoms / N atoms; the check passes within a factor 3 (at
//!   most 3 when fewer than one is expected). The fitted tails are also tested at 1, 3, 10, 30
//!   and 100 expected exceedances among the held-out atoms, which probes the model where N
//!   itself cannot.
//! - Upper cutoffs: on the held-out data plus `--novel` structures, the frames the upper cutoff
//!   would halt against the frames whose true max force error exceeds e_max, per method and
//!   per config_type: recall, false halts (true max error below e_max / 3), halts of modest
//!   errors (between e_max / 3 and e_max).
//! - The frame rule's probabilities: per method and band of probability, the unstable frames
//!   they expect against those observed (`CheckReport::reliability`).

use super::calibrate::text_table;
use super::{ForceKey, load_model};
use crate::calibration::{
    CheckReport, FrameOrigin, SPREAD_ALPHA, check_calibration, within_promise,
};
use crate::stats::cutoff::Spread;
use crate::uq::Method;
use anyhow::{Result, bail};
use std::path::PathBuf;

/// Arguments of `aceuq check-cutoffs`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Calibrated model file (*.aceuq), or a pacemaker potential (.ace, .yace, B-basis .yaml)
    /// with --active-set and --cutoffs.
    #[arg(long, short)]
    pub model: PathBuf,
    /// With a pacemaker potential: its active-set inverse (.asi).
    #[arg(long)]
    pub active_set: Option<PathBuf>,
    /// With a pacemaker potential: its clustered local active sets (.lasi; default: the active
    /// set's name with .lasi, if that file exists), for gamma_local.
    #[arg(long)]
    pub local_active_set: Option<PathBuf>,
    /// With a pacemaker potential: the cutoffs `aceuq calibrate` wrote for it (.toml).
    #[arg(long)]
    pub cutoffs: Option<PathBuf>,
    /// Held-out in-distribution labelled data (not used in the fit or the calibration).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Labelled novel or unstable structures, for the upper cutoffs (frames halted vs truly
    /// unstable).
    #[arg(long, num_args = 1..)]
    pub novel: Vec<PathBuf>,
    /// Methods to check (default: all with stored cutoffs).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<Method>,
    /// Also write the tables as Markdown to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write one CSV row per labelled frame and method: its file and index there, its true
    /// largest force error, its largest u / u_c and u / u_max, the frame rule's probability of
    /// an error above e_max, and whether the upper cutoffs halt it: by single atoms (`upper
    /// atom`), and by the frame rule or single atoms (`upper frame`, the watch's default).
    #[arg(long)]
    pub frames: Option<PathBuf>,
    #[command(flatten)]
    pub keys: ForceKey,
}

fn fmt_ratio(o: usize, e: f64) -> String {
    format!(
        "{o} / {e:.3} {}",
        if within_promise(o, e) { "ok" } else { "MISSED" }
    )
}

/// A count's probability from the calibration's sampling alone, on the side it lies:
/// "P(≥5) 0.081" (at least as many), "P(≤0) 0.31" (at most as few), "-" without stored counts.
fn fmt_spread(s: Option<Spread>, observed: usize) -> String {
    let p = |x: f64| {
        if x >= 0.01 {
            format!("{x:.2}")
        } else if x >= 1e-300 {
            format!("{x:.1e}")
        } else if x == 0.0 {
            "0".into()
        } else if x.is_nan() {
            "-".into()
        } else {
            // Underflowed: a count this far out has no probability worth printing.
            "<1e-300".into()
        }
    };
    match s {
        None => "-".into(),
        Some(s) if observed > 0 && s.at_least <= s.at_most => {
            format!("P(≥{observed}) {}", p(s.at_least))
        }
        Some(s) => format!("P(≤{observed}) {}", p(s.at_most)),
    }
}

/// The entries whose counts the calibration's sampling does not explain ([`SPREAD_ALPHA`]):
/// species, method, cluster, cutoff, observed / expected, probability. A species' e_c count is
/// listed once (the methods of one calibration share the species' error fit, and every row
/// repeats its count).
fn improbable(r: &CheckReport) -> Vec<Vec<String>> {
    let mut rows = vec![];
    let mut seen_e: Vec<(&str, usize)> = vec![];
    for x in &r.exceedances {
        let cl = x.cluster.map_or("-".into(), |c| c.to_string());
        if let Some(sp) = x.spread_u.filter(|s| s.p() < SPREAD_ALPHA) {
            rows.push(vec![
                x.species.clone(),
                x.method.clone(),
                cl.clone(),
                "u_c".into(),
                format!("{} / {:.3}", x.above_u_c, x.expected),
                fmt_spread(Some(sp), x.above_u_c),
            ]);
        }
        if x.cluster.is_some() {
            continue;
        }
        if let Some(sp) = x.spread_e.filter(|s| s.p() < SPREAD_ALPHA) {
            let key = (x.species.as_str(), x.above_e_c);
            if !seen_e.contains(&key) {
                seen_e.push(key);
                rows.push(vec![
                    x.species.clone(),
                    "(force error)".into(),
                    "-".into(),
                    "e_c".into(),
                    format!("{} / {:.3}", x.above_e_c, x.expected),
                    fmt_spread(Some(sp), x.above_e_c),
                ]);
            }
        }
    }
    if rows.is_empty() {
        rows.push(vec!["-".into(); 6]);
    }
    rows
}

/// The subsets (config_types) holding an entry's exceedances, "name u / e" each, most first.
fn where_exceeded(x: &crate::calibration::ExceedanceRow) -> String {
    let parts: Vec<String> = x
        .by_subset
        .iter()
        .map(|(name, u, e)| {
            if x.cluster.is_none() {
                format!("{name} {u} / {e}")
            } else {
                format!("{name} {u}")
            }
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The tables of a report as (title, headers, rows): exceedances, the counts the calibration's
/// sampling does not explain, tail levels, halts, and the frame rule's probabilities against
/// outcomes.
pub fn tables(r: &CheckReport) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let s = |x: &[&str]| x.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    let exc: Vec<Vec<String>> = r
        .exceedances
        .iter()
        .map(|x| {
            vec![
                x.species.clone(),
                x.method.clone(),
                x.cluster.map_or("-".into(), |c| c.to_string()),
                x.atoms.to_string(),
                x.n_apply.to_string(),
                fmt_ratio(x.above_u_c, x.expected),
                // e_c describes the species' errors; a cluster's own e_c is not used by the
                // watch (its upper cutoff comes from the species' fit).
                if x.cluster.is_none() {
                    fmt_ratio(x.above_e_c, x.expected)
                } else {
                    "-".into()
                },
                if x.cluster.is_none() {
                    format!(
                        "{} / {}",
                        fmt_spread(x.spread_u, x.above_u_c),
                        fmt_spread(x.spread_e, x.above_e_c)
                    )
                } else {
                    fmt_spread(x.spread_u, x.above_u_c)
                },
                where_exceeded(x),
            ]
        })
        .collect();
    let lev: Vec<Vec<String>> = r
        .exceedances
        .iter()
        .filter(|x| x.cluster.is_none())
        .map(|x| {
            let mut row = vec![x.species.clone(), x.method.clone()];
            for &(k, _, ou, _, oe) in &x.levels {
                row.push(format!("{k:.0}: {ou} / {oe}"));
            }
            row
        })
        .collect();
    let nlev = lev.iter().map(|r| r.len()).max().unwrap_or(2);
    let mut lev_head = s(&["species", "method"]);
    for k in 0..nlev.saturating_sub(2) {
        lev_head.push(format!("level {}", k + 1));
    }
    let lev: Vec<Vec<String>> = lev
        .into_iter()
        .map(|mut r| {
            r.resize(nlev, String::new());
            r
        })
        .collect();
    let halts: Vec<Vec<String>> = r
        .halts
        .iter()
        .map(|h| {
            let rec = h.recall();
            vec![
                h.method.clone(),
                h.subset.clone(),
                h.frames.to_string(),
                format!("{:.3}", h.max_error),
                h.unstable.to_string(),
                h.halted.to_string(),
                if rec.is_nan() {
                    "-".into()
                } else {
                    format!("{rec:.2}")
                },
                h.false_halts.to_string(),
                h.halted_modest.to_string(),
                if h.subset == "all" && h.unstable > 0 {
                    format!(
                        "best single threshold: recall {:.2} without false halts; {} false \
                         halts at recall 0.9{}",
                        h.best_recall_no_false,
                        h.best_false_at_90.unwrap_or(0),
                        if h.has_upper { "" } else { "; no upper cutoff" }
                    )
                } else if h.subset == "frame rule" {
                    format!(
                        "halt when P(some atom errs above e_max), from the fitted error scale \
                         s(u), reaches p_halt{}",
                        match &r.auto_rule {
                            Some((rule, Some(j))) if rule == "juror" && *j == h.method => {
                                "; the watch's upper auto (the calibration's choice)"
                            }
                            Some((rule, _)) if rule != "frame" => "",
                            _ if h.method == Method::Gamma.name() => "; the watch's upper auto",
                            _ => "",
                        }
                    )
                } else if h.subset == crate::calibration::VOTE_SUBSET {
                    format!(
                        "the watch's upper vote: an atom above the upper cutoff of any juror \
                         (gamma, ensemble, distance, gp: those with s(u)), or the frame rules of \
                         at least two{}",
                        if r.auto_rule.as_ref().is_some_and(|(rule, _)| rule == "vote") {
                            "; the watch's upper auto (the calibration's choice)"
                        } else {
                            ""
                        }
                    )
                } else if h.has_upper {
                    String::new()
                } else {
                    "no upper cutoff".into()
                },
            ]
        })
        .collect();
    let band = |b: Option<(f64, f64)>| match b {
        Some((lo, hi)) => format!("{lo}-{hi}"),
        None => "all".into(),
    };
    let mut reliability: Vec<Vec<String>> = r
        .reliability()
        .iter()
        .map(|x| {
            vec![
                x.method.clone(),
                band(x.band),
                x.frames.to_string(),
                format!("{:.2}", x.expected),
                x.observed.to_string(),
                fmt_spread(
                    Some(Spread {
                        at_least: x.at_least,
                        at_most: x.at_most,
                    }),
                    x.observed,
                ),
            ]
        })
        .collect();
    if reliability.is_empty() {
        // No method with a frame rule (e.g. upper cutoffs by the ratio rule only).
        reliability.push(vec!["-".into(); 6]);
    }
    vec![
        (
            "Lower cutoffs on held-out in-distribution atoms: observed / expected (atoms / N) \
             exceedances of u_c and of e_c; ok = within a factor 3 (at most 3 when below 1); \
             sampling P = the probability of a count at least as large (≥) or at most as small \
             (≤) from the finite calibration sample alone, for held-out data drawn like it (a \
             cutoff fitted on n values with m above it: the held-out count lies between two \
             beta-binomial laws; with n near N, 4 or more at about 1 expected have P near \
             0.1-0.2); where = the config_types of the atoms above u_c / above e_c"
                .into(),
            s(&[
                "species",
                "method",
                "cluster",
                "atoms",
                "N",
                "above u_c",
                "above e_c",
                "sampling P (u_c / e_c)",
                "where (u_c / e_c)",
            ]),
            exc,
        ),
        (
            format!(
                "Counts the calibration's sampling does not explain (sampling P below \
                 {SPREAD_ALPHA}; at most about 2 entries in 100 by chance): the held-out data are \
                 not drawn like the calibration data (other runs, arrangements or conditions)"
            ),
            s(&[
                "species",
                "method",
                "cluster",
                "cutoff",
                "observed / expected",
                "sampling P",
            ]),
            improbable(r),
        ),
        (
            "Fitted tails at k expected exceedances among the held-out atoms: k: observed for \
             the uncertainty / for the force error"
                .into(),
            lev_head,
            lev,
        ),
        (
            format!(
                "Upper cutoffs per frame: unstable = true max force error above {} eV/Å{}; recall \
                 = unstable frames halted / unstable frames; false halts = halted with a true \
                 max error below {:.3} eV/Å; modest = halted between that and {} eV/Å; the best \
                 single threshold on the frames' largest u / u_c shows what the method itself \
                 can separate, whatever the cutoff rule; the frame rule row halts a frame when \
                 1 - prod_i (1 - P(e_i > e_max | u_i)) over its atoms reaches p_halt or an \
                 atom is above its upper cutoff (upper frame; the 'all' row is upper atom, \
                 single atoms only); the upper vote row halts when an atom is above the upper \
                 cutoff of any juror or the frame rules of at least two jurors halt; the watch's \
                 upper auto applies the rule its notes name",
                r.e_max,
                per_method_e_max(r),
                r.e_max / 3.0,
                r.e_max
            ),
            s(&[
                "method",
                "subset",
                "frames",
                "max error",
                "unstable",
                "halted",
                "recall",
                "false halts",
                "modest",
                "notes",
            ]),
            halts,
        ),
        (
            "Frame probabilities against outcomes: the frame rule's P(some atom errs above \
             e_max) of each frame, summed per band of P (the unstable frames the error model \
             expects) against the frames truly above e_max (observed); sampling P = the \
             probability of a count at least as large (≥) or at most as small (≤) if the \
             probabilities were right and the frames independent (frames of one run are not: \
             read a small value as a warning, not a test); many more observed than expected in \
             a low band: frames the error model rates calm err above e_max (in-distribution \
             errors with a heavier tail than it fits); fewer in a high band: a cautious model"
                .into(),
            s(&[
                "method",
                "P band",
                "frames",
                "expected",
                "observed",
                "sampling P",
            ]),
            reliability,
        ),
    ]
}

fn markdown(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    out += &format!("|{}\n", "---|".repeat(headers.len()));
    for r in rows {
        out += &format!("| {} |\n", r.join(" | "));
    }
    out
}

/// When the checked methods were calibrated for different e_max (one recalibrated alone with
/// another `--max-error`), each is judged against its own: " (per method: gamma 0.5, ...; the
/// bounds below scale with it)"; empty when they all share the report's.
fn per_method_e_max(r: &crate::calibration::CheckReport) -> String {
    let mut seen: Vec<(&str, f64)> = vec![];
    for f in &r.frames {
        if !seen.iter().any(|(m, _)| *m == f.method) {
            seen.push((&f.method, f.e_max));
        }
    }
    if seen.iter().all(|&(_, e)| e == r.e_max) {
        return String::new();
    }
    let list: Vec<String> = seen.iter().map(|(m, e)| format!("{m} {e}")).collect();
    format!(
        " (per method: {}; the bounds below scale with it)",
        list.join(", ")
    )
}

pub fn run(a: &CheckArgs) -> Result<()> {
    if crate::pace::is_pacemaker_potential(&a.model) {
        return run_pacemaker(a);
    }
    super::refuse_pacemaker_options(&a.model, &a.active_set, &a.cutoffs)?;
    let pot = load_model(&a.model)?;
    if pot.uq.methods().is_empty() {
        bail!(
            "{} has no uncertainty estimators, so no cutoffs to check: fit it with e.g. `aceuq \
             fit --active-set --ensemble 4 --distance`, then `aceuq calibrate`",
            a.model.display()
        );
    }
    if pot.uq.calibration.is_empty() {
        bail!(
            "{} has no stored cutoffs: run `aceuq calibrate --model {} --valid VALID.xyz \
             --pool-size N` first",
            a.model.display(),
            a.model.display()
        );
    }
    let methods: Vec<Method> = if a.methods.is_empty() {
        pot.uq
            .methods()
            .into_iter()
            .filter(|m| pot.uq.calibration.iter().any(|c| c.method == m.name()))
            .collect()
    } else {
        // Each once, in the order given (`--methods gamma,gamma` checks gamma once).
        let mut m: Vec<Method> = vec![];
        for x in &a.methods {
            if !m.contains(x) {
                m.push(*x);
            }
        }
        m
    };
    for m in &methods {
        if !pot.uq.methods().contains(m) {
            bail!(
                "{} has no {} estimator (it has {}): refit with it to check it",
                a.model.display(),
                m.name(),
                pot.uq
                    .methods()
                    .iter()
                    .map(|x| x.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !pot.uq.calibration.iter().any(|c| c.method == m.name()) {
            bail!(
                "{} has no stored cutoffs for '{}': calibrate it first",
                a.model.display(),
                m.name()
            );
        }
    }
    let (data, novel, origin) = read_data(a)?;
    let report = check_calibration(&pot, &data, &novel, &methods)?;
    print_report(&report, a, &origin)
}

/// Held-out frames, novel frames, and where each came from.
type CheckFrames = (
    Vec<crate::Structure>,
    Vec<crate::Structure>,
    Vec<FrameOrigin>,
);

/// The labelled data of a check: held-out and novel frames (with reference forces), and for
/// each frame of the two in that order the file it came from and its index there.
fn read_data(a: &CheckArgs) -> Result<CheckFrames> {
    let keys = a.keys.keys();
    let mut origin = vec![];
    let mut read = |files: &[PathBuf]| -> Result<Vec<crate::Structure>> {
        let mut out = vec![];
        for f in files {
            let frames = keys.read(std::slice::from_ref(f))?;
            origin.extend((0..frames.len()).map(|k| FrameOrigin {
                file: f.display().to_string(),
                index: k,
            }));
            out.extend(frames);
        }
        Ok(out)
    };
    let data = read(&a.data)?;
    let novel = read(&a.novel)?;
    // Every check compares uncertainties with force errors.
    for d in [&data, &novel] {
        keys.require(d, crate::io::extxyz::Label::Forces, "")?;
    }
    Ok((data, novel, origin))
}

/// `aceuq check-cutoffs` of a pacemaker potential: gamma with its `.asi` against the cutoffs
/// file, which must have been calibrated for these very files.
fn run_pacemaker(a: &CheckArgs) -> Result<()> {
    use anyhow::Context;
    let (Some(asi_path), Some(cut_path)) = (&a.active_set, &a.cutoffs) else {
        bail!(
            "{} is a pacemaker potential: give its active-set inverse and cutoffs too \
             (--active-set pot.asi --cutoffs pot.cutoffs.toml; `aceuq calibrate --model {} \
             --active-set pot.asi ...` writes the cutoffs)",
            a.model.display(),
            a.model.display()
        );
    };
    if a.methods
        .iter()
        .any(|&m| m != Method::Gamma && m != Method::GammaLocal)
    {
        bail!(
            "a pacemaker potential has only 'gamma' and 'gamma_local' cutoffs (--methods \
             gamma,gamma_local)"
        );
    }
    let pot =
        crate::pace::PacePotential::load(&a.model).with_context(|| "cannot load the potential")?;
    let asi = crate::pace::read_active_set(asi_path, &pot)
        .with_context(|| "cannot use the active set")?;
    let local_path = super::pacemaker_local_active_set(asi_path, a.local_active_set.as_deref())?;
    let local = match &local_path {
        Some(p) => Some(
            crate::pace::read_local_active_set(p, &pot, &a.model)
                .with_context(|| format!("cannot use {}", p.display()))?,
        ),
        None => None,
    };
    let cut = crate::pace::cutoffs::PaceCutoffs::load(
        cut_path,
        &a.model,
        asi_path,
        local_path.as_deref(),
        &pot.model().elements,
    )
    .with_context(|| "cannot use the cutoffs")?;
    let mut calibration = cut.calibration.clone();
    if !a.methods.is_empty() {
        calibration.retain(|c| a.methods.iter().any(|m| m.name() == c.method));
    }
    if a.methods.contains(&Method::GammaLocal) && local.is_none() {
        bail!("--methods gamma_local: no clustered active sets (give --local-active-set pot.lasi)");
    }
    let (data, novel, origin) = read_data(a)?;
    let report = crate::calibration::check_pacemaker(
        &pot,
        &asi,
        local.as_ref(),
        &calibration,
        &data,
        &novel,
    )?;
    print_report(&report, a, &origin)
}

fn print_report(report: &CheckReport, a: &CheckArgs, origin: &[FrameOrigin]) -> Result<()> {
    let mut md = String::new();
    for (title, head, rows) in tables(report) {
        println!("{title}:");
        print!("{}", text_table(&head, &rows));
        println!();
        md += &format!("{title}:\n\n{}\n", markdown(&head, &rows));
    }
    if let Some(p) = &a.out {
        crate::io::container::write_atomic(p, md.as_bytes())?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.frames {
        crate::io::container::write_atomic(p, report.frames_csv(origin).as_bytes())?;
        eprintln!("wrote {} ({} rows)", p.display(), report.frames.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::ExceedanceRow;
    use crate::stats::cutoff::predictive_exceedances;

    fn row(method: &str, cluster: Option<usize>, above_u_c: usize, n_cal: usize) -> ExceedanceRow {
        let (atoms, n_apply) = (1000, 1000);
        ExceedanceRow {
            species: "Li".into(),
            method: method.into(),
            cluster,
            atoms,
            n_apply,
            expected: 1.0,
            above_u_c,
            above_e_c: 9,
            by_subset: vec![],
            levels: vec![],
            // Calibrations of n_cal values with n_cal / N above each cutoff.
            spread_u: predictive_exceedances(n_cal, n_cal / 1000, atoms, above_u_c),
            spread_e: predictive_exceedances(n_cal, n_cal / 1000, atoms, 9),
        }
    }

    /// The sampling column and the table of improbable counts: 5 at about 1 expected is
    /// improbable from 50 000 calibration values but not from 2000; 9 force errors above e_c
    /// are listed once per species although every method's row repeats them; a zero shows its
    /// at-most probability.
    #[test]
    fn improbable_counts_are_listed_by_the_calibration_size() {
        let r = CheckReport {
            exceedances: vec![
                row("gamma", None, 5, 50_000),
                row("ensemble", None, 5, 2000),
                row("gamma_local", Some(0), 0, 2000),
            ],
            ..Default::default()
        };
        let t = tables(&r);
        let (_, head, exc) = &t[0];
        let col = head
            .iter()
            .position(|h| h.starts_with("sampling P"))
            .unwrap();
        assert!(exc[0][col].starts_with("P(≥5) "), "{:?}", exc[0]);
        assert!(exc[2][col].starts_with("P(≤0) "), "{:?}", exc[2]);
        let (title, _, bad) = &t[1];
        assert!(title.starts_with("Counts the calibration's sampling"));
        let listed: Vec<(&str, &str)> =
            bad.iter().map(|r| (r[1].as_str(), r[3].as_str())).collect();
        assert_eq!(
            listed,
            [("gamma", "u_c"), ("(force error)", "e_c")],
            "{bad:?}"
        );
        // Nothing improbable: one placeholder row.
        let r = CheckReport {
            exceedances: vec![row("ensemble", Some(1), 2, 2000)],
            ..Default::default()
        };
        assert_eq!(tables(&r)[1].2, vec![vec!["-".to_string(); 6]]);
    }
}
