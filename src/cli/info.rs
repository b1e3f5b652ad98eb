//! The calibration part of `aceuq info`: every stored cutoff entry, per method, with the models
//! behind its cutoffs, whether their checks passed, the upper rule and why a method has no upper
//! cutoff, the caveats and where the cutoffs came from.

use crate::potential::{Potential, calibration_caveats, no_upper_reason};
use crate::stats::cutoff::{Calibration, UpperRule};
use crate::stats::family_choice::ModelChoice;
use crate::stats::tail::{CutoffFit, CutoffRule};
use crate::uq::Method;

/// `x` with 5 significant digits, in plain notation where that stays short.
fn sig(x: f64) -> String {
    crate::stats::sig_digits(x, 5)
}

/// The model a 1 - 1/N cutoff came from ("gengamma", "maxwell + gpd tail q0.900 xi 0.123") and
/// its check ("pass", "FAIL", with the Anderson–Darling p-value of the rule's model).
fn cutoff_model(choice: &ModelChoice, fit: Option<&CutoffFit>) -> (String, String) {
    let family = choice.dist().family().to_string();
    let verdict = |ok: bool| if ok { "pass" } else { "FAIL" };
    match fit {
        // Files written before tail-aware cutoffs: the body family and its KS test.
        None => (
            family,
            format!(
                "{} (KS p {:.2e})",
                verdict(choice.passed()),
                choice.chosen().ks.p_value
            ),
        ),
        Some(f) => match (&f.rule, &f.tail) {
            (CutoffRule::Tail, Some(t)) => (
                format!(
                    "{family} + gpd tail q{:.3} xi {:.3}",
                    t.quantile,
                    t.gpd.xi()
                ),
                format!("{} (AD p {:.2e})", verdict(f.passed), t.ad.p_value),
            ),
            _ => (
                family,
                format!("{} (AD p {:.2e})", verdict(f.passed), f.body_ad.p_value),
            ),
        },
    }
}

/// How an entry's upper cutoff was derived, in words.
fn upper_rule_text(c: &Calibration) -> String {
    match (c.upper_rule, &c.conditional) {
        (UpperRule::Conditional, Some(x)) => format!(
            "upper rule conditional: e | u ~ Maxwell(s(u)), s(u) = {} + {} u^{} eV/Å; halt where \
             P(e > {} eV/Å | u) >= {}, i.e. s(u) >= {} eV/Å; fitted on {} pairs ({} from \
             high-uncertainty structures), u up to {}, e up to {} eV/Å{}",
            sig(x.scale.a),
            sig(x.scale.b),
            sig(x.scale.k),
            x.e_max,
            x.p_halt,
            sig(x.s_halt),
            x.n_fit,
            x.n_high,
            sig(x.u_seen_max),
            sig(x.e_seen_max),
            x.u_sup
                .map(|s| format!(", the method's far-field plateau {}", sig(s)))
                .unwrap_or_default()
        ),
        (UpperRule::Conditional, None) => {
            "upper rule conditional (the fit is not stored)".to_string()
        }
        (UpperRule::Ratio, _) => format!(
            "upper rule ratio: u_max = mean_u + {} (u_c - mean_u) with mean_u = {}, from e_max \
             {} eV/Å, mean_e {} eV/Å",
            sig(c.ratio),
            sig(c.mean_u),
            c.e_max,
            sig(c.mean_e)
        ),
    }
}

/// Every stored calibration entry of `pot`, a block per method: a table (species, cluster, N,
/// n_fit, the lower cutoff u_c with its model and check, e_c with its model and check, the upper
/// cutoff u_max or "none"), then per entry the upper rule and s(u), why there is no upper cutoff,
/// the caveats, and the provenance. Empty if nothing is stored.
pub fn calibration_text(pot: &Potential) -> String {
    let mut t = calibration_entries_text(&pot.uq.calibration, &pot.model.species);
    if let Some(r) = &pot.uq.halt_rule {
        t += &format!("halting rule: {}\n", r.note());
    }
    t
}

/// [`calibration_text`] of calibration entries `cals`, species in the order of `species`.
pub fn calibration_entries_text(cals: &[Calibration], species: &[String]) -> String {
    if cals.is_empty() {
        return String::new();
    }
    let species_rank = |name: &str| species.iter().position(|s| s == name).unwrap_or(usize::MAX);
    // Methods in the ABI's order, then any other name found in the file.
    let mut methods: Vec<String> = Method::ALL.iter().map(|m| m.name().to_string()).collect();
    for c in cals {
        if !methods.contains(&c.method) {
            methods.push(c.method.clone());
        }
    }
    let mut out = String::from(
        "\ncalibrated cutoffs (`aceuq calibrate`; N: atoms the cutoffs apply to, n_fit: \
         validation atoms fitted; u in the method's units, e in eV/Å; u_max none: this method \
         never halts a run, halt on another):\n",
    );
    for method in &methods {
        let mut entries: Vec<&Calibration> = cals.iter().filter(|c| &c.method == method).collect();
        if entries.is_empty() {
            continue;
        }
        entries.sort_by_key(|c| (species_rank(&c.species), c.cluster.map_or(0, |k| k + 1)));
        out += &format!("\n{method}:\n");
        let headers: Vec<String> = [
            "species",
            "cluster",
            "N",
            "n_fit",
            "u_c (lower)",
            "u_c model",
            "check",
            "e_c",
            "e_c model",
            "check",
            "u_max (upper)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|c| {
                let (um, uc) = cutoff_model(&c.uncertainty, c.uncertainty_fit.as_ref());
                let (em, ec) = cutoff_model(&c.error, c.error_fit.as_ref());
                vec![
                    c.species.clone(),
                    c.cluster.map_or("-".into(), |k| k.to_string()),
                    c.n_apply.to_string(),
                    c.n_fit.to_string(),
                    sig(c.u_c),
                    um,
                    uc,
                    sig(c.e_c),
                    em,
                    ec,
                    if c.u_max < f64::INFINITY {
                        sig(c.u_max)
                    } else {
                        "none".into()
                    },
                ]
            })
            .collect();
        for line in super::calibrate::text_table(&headers, &rows).lines() {
            out += &format!("  {}\n", line.trim_end());
        }
        let mut provenance: Vec<&str> = vec![];
        for c in &entries {
            let who = match c.cluster {
                Some(k) => format!("{} cluster {k}", c.species),
                None => c.species.clone(),
            };
            // A cluster shares its species' upper rule unless it stored another.
            let species_entry = entries
                .iter()
                .find(|s| s.species == c.species && s.cluster.is_none());
            let shared = c.cluster.is_some()
                && species_entry.is_some_and(|s| {
                    s.upper_rule == c.upper_rule && s.conditional == c.conditional
                });
            if !shared {
                out += &format!("  {who}: {}\n", upper_rule_text(c));
            }
            if let Some(r) = no_upper_reason(c) {
                out += &format!("  {who}: no upper cutoff: {r}\n");
            }
            for w in calibration_caveats(c) {
                out += &format!("  {who}: warning: {w}\n");
            }
            if let Some(p) = c.provenance.as_deref()
                && !provenance.contains(&p)
            {
                provenance.push(p);
            }
        }
        let unknown = entries.iter().filter(|c| c.provenance.is_none()).count();
        if unknown == entries.len() {
            out += "  provenance: not stored\n";
        } else if unknown > 0 {
            out += &format!(
                "  provenance: not stored for {unknown} of {} entries\n",
                entries.len()
            );
        }
        for p in provenance {
            out += &format!("  provenance: {p}\n");
        }
    }
    out
}

/// `aceuq info` of a pacemaker potential (`.ace`, `.yace`, B-basis `.yaml`), with what aceuq
/// keeps beside it: its active-set inverse, clustered local active sets and calibrated cutoffs,
/// each checked against it.
pub fn pace_text(
    model: &std::path::Path,
    active_set: Option<&std::path::Path>,
    local: Option<&std::path::Path>,
    cutoffs: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    use crate::pace::cutoffs::PaceCutoffs;
    use crate::pace::{PacePotential, read_active_set};
    use anyhow::Context;
    let pot = PacePotential::load(model).with_context(|| "cannot load the potential")?;
    let m = pot.model();
    let mut out = format!(
        "potential  {} ({}; read by aceuq, unchanged)
elements   {}
",
        model.display(),
        pot.kind(),
        m.elements.join(", ")
    );
    for (s, sp) in m.species.iter().enumerate() {
        let maxr = sp.funcs.iter().map(|f| f.rank()).max().unwrap_or(1);
        let by: Vec<String> = (1..=maxr)
            .map(|r| {
                (if r == 1 { sp.rank1.len() } else { 0 }
                    + sp.funcs.iter().filter(|f| f.rank() == r).count())
                .to_string()
            })
            .collect();
        out += &format!(
            "  {:<4} {} functions (by rank {}), E0 = {:.6} eV; embedding {}; gamma projections: {}
",
            m.elements[s],
            sp.rank1.len() + sp.funcs.len(),
            by.join("/"),
            sp.e0,
            sp.embedding.describe(),
            pot.nprojections(s)
        );
    }
    out += &format!(
        "  basis: lmax {}, nradmax {}, nradbase {}, largest cutoff {:.3} Å
",
        m.lmax, m.nradmax, m.nradbase, m.cutoffmax
    );
    match active_set {
        Some(a) => {
            let asi = read_active_set(a, &pot).with_context(|| "cannot use the active set")?;
            let sizes: Vec<String> = asi
                .species
                .iter()
                .zip(&m.elements)
                .map(|((n, _), e)| format!("{e} {n} x {n}"))
                .collect();
            out += &format!(
                "
active set {} ({} grade): {}
",
                a.display(),
                if asi.linear { "linear" } else { "non-linear" },
                sizes.join(", ")
            );
        }
        None => {
            out += "
active set: none given (--active-set pot.asi; `aceuq activeset` builds one)
"
        }
    }
    let cut = cutoffs
        .map(|c| PaceCutoffs::read(c).with_context(|| "cannot read the cutoffs"))
        .transpose()?;
    if let Some(l) = local {
        let sets = crate::pace::read_local_active_set(l, &pot, model)
            .with_context(|| format!("cannot use {}", l.display()))?;
        let el = &m.elements;
        let cut_of = |s: usize, k: usize| {
            let c = cut.as_ref()?;
            let e = c
                .calibration
                .iter()
                .find(|x| x.method == "gamma_local" && x.species == el[s] && x.cluster == Some(k))
                .or_else(|| {
                    c.calibration.iter().find(|x| {
                        x.method == "gamma_local" && x.species == el[s] && x.cluster.is_none()
                    })
                })?;
            Some((e.u_c, e.u_max))
        };
        out += &format!(
            "\nclustered active sets {} (gamma_local, {}):\n{}",
            l.display(),
            match sets.partition {
                crate::uq::Partition::KMeans(k) => format!("k-means, K = {k}"),
                crate::uq::Partition::ConfigType => "by config_type".into(),
            },
            sets.cluster_table(&cut_of)
        );
    }
    match cutoffs {
        Some(c) => {
            let cut = cut.expect("read above");
            let check = match active_set {
                Some(a) => match PaceCutoffs::load(c, model, a, local, &m.elements) {
                    Ok(_) => "calibrated for this very potential and active set".to_string(),
                    Err(e) => format!("NOT usable with these files: {e}"),
                },
                None => format!(
                    "calibrated for {} with {} (give --active-set to check they match)",
                    cut.potential, cut.active_set
                ),
            };
            out += &format!(
                "
cutoffs {}: {check}
",
                c.display()
            );
            out += &calibration_entries_text(&cut.calibration, &cut.elements);
        }
        None => {
            out += "
calibrated cutoffs: none given (--cutoffs pot.cutoffs.toml; `aceuq calibrate \
                    --model pot --active-set pot.asi` writes one)
"
        }
    }
    Ok(out)
}

/// `aceuq info` of a pacemaker cutoffs file alone: what it was calibrated for, whether those
/// files (at the paths it stored) are still the same, and its cutoffs.
pub fn pace_cutoffs_text(path: &std::path::Path) -> anyhow::Result<String> {
    use crate::pace::cutoffs::PaceCutoffs;
    use anyhow::Context;
    let cut = PaceCutoffs::read(path).with_context(|| "cannot read the cutoffs")?;
    let same = |stored: &str, fp: &str| match crate::pace::cutoffs::fingerprint(
        std::path::Path::new(stored),
    ) {
        Ok(f) if f == fp => "unchanged since calibration".to_string(),
        Ok(_) => "CHANGED since calibration: recalibrate".to_string(),
        Err(_) => "not found at that path (from here)".to_string(),
    };
    let mut out = format!(
        "cutoffs    {} (grades of a pacemaker potential, `aceuq calibrate`)\npotential  {} ({})\n\
         active set {} ({})\n",
        path.display(),
        cut.potential,
        same(&cut.potential, &cut.potential_fingerprint),
        cut.active_set,
        same(&cut.active_set, &cut.active_set_fingerprint),
    );
    if let (Some(l), Some(fp)) = (&cut.local_active_set, &cut.local_active_set_fingerprint) {
        out += &format!("clustered  {l} ({})\n", same(l, fp));
    }
    out += &format!("elements   {}\n", cut.elements.join(", "));
    out += &calibration_entries_text(&cut.calibration, &cut.elements);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cutoff::{CalibrationOptions, calibrate};
    use crate::stats::upper::{ConditionalUpper, ErrorScale};

    #[test]
    fn sig_keeps_five_digits() {
        assert_eq!(sig(2.345678), "2.3457");
        assert_eq!(sig(123.456), "123.46");
        assert_eq!(sig(0.0123456), "0.012346");
        assert_eq!(sig(1.5e-6), "1.5000e-6");
        assert_eq!(sig(0.0), "0");
        assert_eq!(sig(f64::INFINITY), "inf");
    }

    /// Every stored entry is listed under its method with its cutoffs and models; an entry
    /// without an upper cutoff says "none" and why; caveats, the upper rule and the provenance
    /// are shown.
    #[test]
    fn info_lists_every_entry_with_its_models_reasons_and_caveats() {
        let m = crate::testing::random_model(&["Li"], &crate::testing::small_cfg(), 3);
        let mut pot = Potential::new(m);
        // Maxwell errors and an uncertainty that tracks them with gamma noise.
        let mut r = crate::stats::tests::rng(5);
        let e = crate::stats::tests::draw_maxwell(&mut r, 0.05, 400);
        let noise = crate::stats::tests::draw_gamma(&mut r, 8.0, 1.0 / 8.0, 400);
        let u: Vec<f64> = e
            .iter()
            .zip(&noise)
            .map(|(x, z)| 3.0 * x * z + 0.1)
            .collect();
        let mut opts = CalibrationOptions::new(10_000);
        opts.upper_rule = UpperRule::Ratio;
        let mut gamma = calibrate("Li", "gamma", &e, &u, &opts).unwrap();
        gamma.provenance = Some("aceuq test calibrate: valid v.xyz".into());
        gamma.warnings = vec!["only 150 validation atoms: the tails are poorly determined".into()];
        let mut gp = gamma.clone();
        gp.method = "gp".into();
        gp.u_max = f64::INFINITY;
        gp.upper_rule = UpperRule::Conditional;
        gp.warnings = vec!["no upper cutoff: it saturates at 1.0000e0".into()];
        gp.conditional = Some(ConditionalUpper {
            scale: ErrorScale {
                a: 0.02,
                b: 0.1,
                k: 1.5,
            },
            n_fit: 400,
            n_high: 0,
            u_seen_max: 0.9,
            e_seen_max: 0.08,
            e_max: 1.0,
            p_halt: 0.5,
            s_halt: 0.65,
            u_sup: Some(1.0),
            u_max: None,
            reason: Some("it saturates at 1.0000e0".into()),
        });
        pot.uq.calibration = vec![gp.clone(), gamma.clone()];
        let text = calibration_text(&pot);
        // gamma comes first (method order), then gp.
        let (g, p) = (
            text.find("\ngamma:\n").unwrap(),
            text.find("\ngp:\n").unwrap(),
        );
        assert!(g < p, "{text}");
        let gamma_block = &text[g..p];
        let gp_block = &text[p..];
        assert!(gamma_block.contains("u_c model") && gamma_block.contains("u_max (upper)"));
        let row = gamma_block
            .lines()
            .find(|l| l.trim_start().starts_with("Li "))
            .unwrap();
        for want in [
            "10000",
            "400",
            &sig(gamma.u_c),
            &sig(gamma.e_c),
            &sig(gamma.u_max),
            gamma.uncertainty.dist().family().name(),
        ] {
            assert!(row.contains(want), "{want} in {row}");
        }
        assert!(row.contains("pass") || row.contains("FAIL"), "{row}");
        assert!(gamma_block.contains("Li: upper rule ratio: u_max = mean_u + "));
        assert!(gamma_block.contains("Li: warning: only 150 validation atoms"));
        assert!(gamma_block.contains("provenance: aceuq test calibrate: valid v.xyz"));
        let gp_row = gp_block
            .lines()
            .find(|l| l.trim_start().starts_with("Li "))
            .unwrap();
        assert!(gp_row.trim_end().ends_with("none"), "{gp_row}");
        assert!(
            gp_block.contains("Li: no upper cutoff: it saturates at 1.0000e0"),
            "{gp_block}"
        );
        // The reason is said once, not again as a warning.
        assert_eq!(
            gp_block.matches("saturates at 1.0000e0").count(),
            1,
            "{gp_block}"
        );
        assert!(gp_block.contains(
            "Li: upper rule conditional: e | u ~ Maxwell(s(u)), s(u) = 0.020000 + 0.10000 u^1.5000 eV/Å"
        ));
        assert!(
            gp_block.contains("the method's far-field plateau 1.0000"),
            "{gp_block}"
        );
        // Nothing stored: nothing shown.
        pot.uq.calibration.clear();
        assert_eq!(calibration_text(&pot), "");
    }
}
