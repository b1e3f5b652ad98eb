//! Statistical cutoffs of a [`Potential`]'s uncertainty methods from labelled data: per species,
//! and for `gamma_local` per (species, cluster), the validation atoms grouped by the cluster that
//! graded them ([`crate::stats::cutoff::calibrate_clusters`]; clusters with too few atoms keep
//! the species cutoffs). Used by `aceuq calibrate` and by the closed loop.
//!
//! Layer 5 (beside [`crate::potential`]). Imports: `potential`, `stats::cutoff`, `uq`, `error`.

use crate::error::{Error, ErrorKind};
use crate::potential::Potential;
use crate::stats::cutoff::{
    Calibration, CalibrationOptions, ClusterCalibration, UpperRule, calibrate_clusters,
    calibrate_with_high,
};
use crate::stats::tail::TailPolicy;
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
}

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
    for &m in methods {
        let (u, clusters) = if m == Method::GammaLocal {
            let (u, c) = pot.gamma_local_per_atom(valid)?;
            (u, Some(c))
        } else {
            (pot.per_atom(valid, m)?, None)
        };
        let pairs = uq::pairs_by_species(model, valid, &errors, &u);
        let high_pairs = if high.is_empty() {
            vec![(vec![], vec![]); model.nspecies()]
        } else {
            let hu = if m == Method::GammaLocal {
                pot.gamma_local_per_atom(high)?.0
            } else {
                pot.per_atom(high, m)?
            };
            uq::pairs_by_species(model, high, &high_errors, &hu)
        };
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
            let mut opts = CalibrationOptions::new(napply[sp]);
            opts.e_max = settings.max_error;
            opts.tail = settings.tail;
            opts.upper_rule = settings.upper_rule;
            opts.p_halt = settings.p_halt;
            if m == Method::Gp {
                opts.u_sup = pot.uq.gp.as_ref().map(|g| g.plateau(sp));
            }
            let mut cal = calibrate_with_high(name, m.name(), &es, &us, &hes, &hus, &opts)?;
            cal.provenance = settings.provenance.clone();
            for w in &cal.warnings {
                caveats.push(format!("{name} {}: {w}", m.name()));
            }
            rows.push(cal.table_row());
            // The species' entries of this method, per-cluster ones included, are replaced.
            cals.retain(|c| !(c.species == cal.species && c.method == cal.method));
            // The species-level entry first: readers that do not know per-cluster entries take
            // the first entry of a (species, method).
            cals.push(cal.clone());
            let Some(groups) = by_cluster.as_ref().map(|g| &g[sp]) else {
                continue;
            };
            for outcome in calibrate_clusters(name, m.name(), groups, &opts, &cal) {
                let k = outcome.cluster();
                match outcome {
                    ClusterCalibration::Fitted(mut c) => {
                        c.provenance = settings.provenance.clone();
                        rows.push(c.table_row());
                        cluster_rows.push(vec![
                            name.clone(),
                            k.to_string(),
                            c.n_fit.to_string(),
                            c.n_apply.to_string(),
                            format!("{:.5}", c.u_c),
                            format!("{:.5}", c.u_max),
                            "own fit".into(),
                        ]);
                        cals.push(*c);
                    }
                    ClusterCalibration::Fallback {
                        n_fit,
                        n_apply,
                        reason,
                        ..
                    } => cluster_rows.push(vec![
                        name.clone(),
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
    }
    Ok(CalibrationResult {
        calibration: cals,
        rows,
        cluster_rows,
        warnings,
        caveats,
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
}
