//! Growing the basis on validation data: the default of `aceuq fit` when the basis is not given.
//!
//! One basis does not suit every system. The default (`10,6,2 / 0,4,4`, 5.5 Å) fits one-element
//! sets well and cheaply, but the two-element sets measured here need the angular degree of their
//! reference potentials (6 at three- and four-body order) and, for In–P, a longer range
//! (docs/benchmarks/alloys.md). So the fit climbs a short ladder of bases in increasing cost:
//!
//! 1. the given basis;
//! 2. three- and four-body angular degree raised to [`GROWN_LMAX`];
//! 3. that with the cutoff raised to [`GROWN_CUTOFF`] Å;
//!
//! and stops at the first whose validation errors meet the target (force RMSE at most
//! `target_force` times the standard deviation of the validation force components, energy RMSE
//! at most `target_energy` meV/atom). It never climbs to a basis with fewer than
//! [`MIN_OBS_PER_COEF`] fitted observations (energies and force components) per coefficient, to
//! one with more than [`MAX_GROWN_COEFS`] coefficients, or to one whose normal equations would
//! need more than half the available memory ([`Limits`]); [`plan`] says which stops it. When
//! no rung meets the target, it keeps the cheapest rung whose validation loss is within
//! [`LOSS_SLACK`] of the lowest: a larger basis has to earn its cost. Every rung is a full fit
//! (its own ridge scan); the record is stored in [`super::FitInfo::basis_choice`].

#[cfg(test)]
use super::fit::Growth;
use super::fit::{self, FitConfig, Metrics};
use super::{Model, ModelError};
use crate::basis::{BasisConfig, SpeciesBasis};
use crate::structure::Structure;
use serde::{Deserialize, Serialize};

/// Angular degree of the three- and four-body functions on the second rung.
pub const GROWN_LMAX: usize = 6;
/// Cutoff (Å) of the third rung.
pub const GROWN_CUTOFF: f64 = 7.5;
/// Fewest fitted observations per coefficient before a larger rung is tried (the usual rule
/// of thumb for least squares; force components of one structure are correlated, so fewer is
/// not safe).
pub const MIN_OBS_PER_COEF: f64 = 10.0;
/// Growth never fits more coefficients than this (all species): the normal equations are a
/// dense square matrix per thread (5000² x 8 B = 200 MB each), and a two-element fit at the
/// second rung (3758 coefficients) already took 1.3–1.6 GB with 2 threads. Three species at
/// the second rung would be 16 341. Larger bases are fitted when given, not grown into.
pub const MAX_GROWN_COEFS: usize = 5000;
/// When no rung meets the target, the cheapest rung whose validation loss is within this factor
/// of the lowest is kept (1.1 in loss, a sum of squares, is about 5 % in RMSE).
pub const LOSS_SLACK: f64 = 1.1;

/// How the basis of a grown fit was chosen (stored in the model file).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BasisChoice {
    /// Index into `trials` of the basis used.
    pub chosen: usize,
    /// Why the climb stopped and why this rung was kept.
    pub how: String,
    /// The target: force RMSE as a fraction of `sigma_f`, energy RMSE in meV/atom.
    pub target_force: f64,
    pub target_energy: f64,
    /// Standard deviation of the validation force components (meV/Å).
    pub sigma_f: f64,
    /// Whether the fit weighed energies and forces (a target on what it did not weigh is not
    /// checked).
    #[serde(default = "yes")]
    pub weighs_energy: bool,
    #[serde(default = "yes")]
    pub weighs_forces: bool,
    /// The rungs fitted, cheapest first.
    pub trials: Vec<BasisTrial>,
}

/// One rung of the ladder, fitted and evaluated on the validation data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BasisTrial {
    pub cutoff: f64,
    pub nmax: Vec<usize>,
    pub lmax: Vec<usize>,
    /// Functions per species.
    pub functions: usize,
    /// Validation energy RMSE (meV/atom), force RMSE (meV/Å) and loss (as the ridge scan's).
    pub energy_rmse: f64,
    pub force_rmse: f64,
    pub loss: f64,
    /// Wall time of the fit (s).
    pub seconds: f64,
}

fn yes() -> bool {
    true
}

/// The ladder above `base`, cheapest first; rungs that would not change the basis are left out.
pub fn ladder(base: &BasisConfig) -> Vec<BasisConfig> {
    let mut out = vec![base.clone()];
    let mut wide = base.clone();
    for l in wide.lmax.iter_mut().skip(1).take(2) {
        *l = (*l).max(GROWN_LMAX);
    }
    if wide != out[out.len() - 1] {
        out.push(wide.clone());
    }
    if wide.pair_cutoffs.is_empty() && wide.cutoff < GROWN_CUTOFF {
        wide.cutoff = GROWN_CUTOFF;
        out.push(wide);
    }
    out
}

/// Energies and force components the fit weighs.
pub fn observations(cfg: &FitConfig, train: &[Structure]) -> usize {
    train
        .iter()
        .map(|s| {
            let e = (cfg.energy_weight > 0.0 && s.energy.is_some()) as usize;
            let f = if cfg.force_weight > 0.0 {
                s.forces.as_ref().map_or(0, |f| 3 * f.len())
            } else {
                0
            };
            e + f
        })
        .sum()
}

/// Standard deviation of the force components of `data` (meV/Å; mean removed); 0 without forces.
pub fn force_spread(data: &[Structure]) -> f64 {
    let comps: Vec<f64> = data
        .iter()
        .filter_map(|s| s.forces.as_ref())
        .flat_map(|f| f.iter().flat_map(|v| v.iter().copied()))
        .collect();
    if comps.is_empty() {
        return 0.0;
    }
    let n = comps.len() as f64;
    let mean = comps.iter().sum::<f64>() / n;
    1000.0 * (comps.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// What a machine and a fit allow growth to use: the normal equations are dense `m x m` matrices
/// (`m` coefficients), about one per worker thread plus the solver's copies, and an ensemble
/// accumulates one more per member.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Bytes growth may plan for (default: half of the memory available).
    pub max_bytes: f64,
    /// Worker threads of the fit.
    pub threads: usize,
    /// Normal-equation matrices per thread (1, or 1 + ensemble members).
    pub matrices_per_thread: usize,
}

impl Limits {
    /// Half of the memory the system reports available (8 GB when it cannot be read), the
    /// current thread pool, and an ensemble of `ensemble` members built after the fit.
    pub fn of_this_machine(ensemble: usize) -> Limits {
        let avail = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemAvailable:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map(|kb| kb * 1024.0)
            .unwrap_or(16e9);
        Limits {
            max_bytes: 0.5 * avail,
            threads: rayon::current_num_threads().max(1),
            matrices_per_thread: 1 + ensemble,
        }
    }

    /// Estimated peak bytes of the normal equations for `coefs` coefficients: one matrix per
    /// thread and per ensemble member, and three more for the reduction and the solver.
    pub fn bytes_for(&self, coefs: usize) -> f64 {
        let m2 = 8.0 * (coefs as f64).powi(2);
        m2 * (self.threads * self.matrices_per_thread + 3) as f64
    }
}

/// One rung of a plan: the basis and its functions per species.
#[derive(Clone, Debug, PartialEq)]
pub struct Rung {
    pub basis: BasisConfig,
    pub functions: usize,
}

impl Rung {
    fn describe(&self) -> String {
        format!(
            "cutoff {} Å, nmax {}, lmax {}: {} functions per species",
            self.basis.cutoff,
            join(&self.basis.nmax),
            join(&self.basis.lmax),
            self.functions
        )
    }
}

/// The rungs of [`ladder`] that growth may fit for these data (the base always), and why the
/// climb cannot go further, if it cannot: more than [`MAX_GROWN_COEFS`] coefficients, fewer
/// than [`MIN_OBS_PER_COEF`] fitted values per coefficient, or more memory than `limits`.
/// Known before any fit, so `aceuq fit` can print the plan.
pub fn plan(
    nspecies: usize,
    base: &BasisConfig,
    cfg: &FitConfig,
    train: &[Structure],
    limits: &Limits,
) -> Result<(Vec<Rung>, Option<String>), ModelError> {
    let n_obs = observations(cfg, train);
    let mut out: Vec<Rung> = vec![];
    for (k, b) in ladder(base).into_iter().enumerate() {
        let rung = Rung {
            functions: SpeciesBasis::generate(&b, nspecies)?.len(),
            basis: b,
        };
        let coefs = nspecies * (rung.functions + 1);
        let next = || format!("the next basis ({})", rung.describe());
        let refusal = if k == 0 {
            None
        } else if coefs > MAX_GROWN_COEFS {
            Some(format!(
                "{} has {coefs} coefficients, more than growth takes on ({MAX_GROWN_COEFS}); give \
                 it with --lmax/--cutoff if the data and the machine allow",
                next()
            ))
        } else if (n_obs as f64) < MIN_OBS_PER_COEF * coefs as f64 {
            Some(format!(
                "{} has {coefs} coefficients and the {n_obs} fitted energies and force \
                 components are fewer than {MIN_OBS_PER_COEF} per coefficient",
                next()
            ))
        } else if limits.bytes_for(coefs) > limits.max_bytes {
            Some(format!(
                "{} would need about {:.1} GB for its normal equations ({} threads{}), more than \
                 the {:.1} GB growth may use (half the available memory); fewer threads \
                 (--threads) make it fit",
                next(),
                limits.bytes_for(coefs) / 1e9,
                limits.threads,
                if limits.matrices_per_thread > 1 {
                    format!(
                        ", {} matrices each for the ensemble",
                        limits.matrices_per_thread
                    )
                } else {
                    String::new()
                },
                limits.max_bytes / 1e9
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            return Ok((out, Some(why)));
        }
        out.push(rung);
    }
    Ok((out, None))
}

/// Which fitted rung to keep. `met` says whether the last trial met the target (the climb
/// stops there); `stop` is why the climb ended otherwise. Without a rung that meets the
/// target, the cheapest within [`LOSS_SLACK`] of the lowest validation loss is kept.
pub fn decide(trials: &[BasisTrial], met: bool, stop: &str) -> (usize, String) {
    let last = trials.len().saturating_sub(1);
    if met {
        return (
            last,
            format!("basis {} of the ladder meets the target", last + 1),
        );
    }
    let best = trials.iter().map(|t| t.loss).fold(f64::INFINITY, f64::min);
    let k = trials
        .iter()
        .position(|t| t.loss <= LOSS_SLACK * best)
        .unwrap_or(last);
    (
        k,
        format!(
            "no basis meets the target; {stop}; kept basis {}, the cheapest within {LOSS_SLACK}x \
             the lowest validation loss",
            k + 1
        ),
    )
}

/// Fit `base`, then larger rungs of [`plan`] while the validation errors miss the target (see
/// the module documentation). `valid` must not be empty. `say` receives one line per rung
/// before it is fitted (progress for people).
#[allow(clippy::too_many_arguments)]
pub fn fit_grown(
    species: &[String],
    base: &BasisConfig,
    cfg: &FitConfig,
    train: &[Structure],
    valid: &[Structure],
    limits: &Limits,
    progress: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Model, ModelError> {
    if valid.is_empty() {
        return Err(ModelError::Data(
            "growing the basis needs validation data: give --valid, or --grow-basis off".into(),
        ));
    }
    let (tf, te) = (cfg.target_force, cfg.target_energy);
    let sigma_f = force_spread(valid);
    let meets = |v: &Metrics| {
        let e_ok = cfg.energy_weight == 0.0 || v.n_energies == 0 || v.energy_rmse <= te;
        let f_ok = cfg.force_weight == 0.0 || v.n_forces == 0 || v.force_rmse <= tf * sigma_f;
        e_ok && f_ok
    };
    let (rungs, refusal) = plan(species.len(), base, cfg, train, limits)?;
    let mut trials: Vec<BasisTrial> = vec![];
    let mut models: Vec<Model> = vec![];
    let mut met = false;
    let mut stop = match refusal {
        Some(why) => format!("not climbing further: {why}"),
        None => "there is no larger basis on the ladder".into(),
    };
    for (k, rung) in rungs.iter().enumerate() {
        say(&format!(
            "basis {} of {}: {}",
            k + 1,
            rungs.len(),
            rung.describe()
        ));
        let t0 = std::time::Instant::now();
        let model = match fit::fit(species, &rung.basis, cfg, train, valid, progress) {
            Ok(m) => m,
            // A larger rung that cannot be fitted ends the climb; the first one is the fit.
            Err(e) if k > 0 => {
                stop = format!(
                    "the next basis ({}) could not be fitted: {e}",
                    rung.describe()
                );
                break;
            }
            Err(e) => return Err(e),
        };
        let v = model
            .fit_info
            .metrics
            .iter()
            .find(|m| m.set == "valid")
            .cloned()
            .ok_or_else(|| ModelError::Data("the fit reported no validation errors".into()))?;
        trials.push(BasisTrial {
            cutoff: rung.basis.cutoff,
            nmax: rung.basis.nmax.clone(),
            lmax: rung.basis.lmax.clone(),
            functions: rung.functions,
            energy_rmse: v.energy_rmse,
            force_rmse: v.force_rmse,
            loss: fit::validation_loss(cfg, &v),
            seconds: t0.elapsed().as_secs_f64(),
        });
        models.push(model);
        if meets(&v) {
            met = true;
            break;
        }
    }
    let (chosen, how) = decide(&trials, met, &stop);
    let mut model = models.swap_remove(chosen);
    model.fit_info.basis_choice = Some(BasisChoice {
        chosen,
        how,
        target_force: tf,
        target_energy: te,
        sigma_f,
        weighs_energy: cfg.energy_weight > 0.0,
        weighs_forces: cfg.force_weight > 0.0,
        trials,
    });
    Ok(model)
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The record of a grown fit as a table for people.
pub fn basis_choice_text(c: &BasisChoice) -> String {
    let mut target = vec![];
    if c.weighs_forces {
        target.push(format!(
            "F RMSE ≤ {} % of σ_F = {:.1} meV/Å",
            100.0 * c.target_force,
            c.sigma_f
        ));
    }
    if c.weighs_energy {
        target.push(format!("E RMSE ≤ {} meV/atom", c.target_energy));
    }
    let mut out = format!(
        "basis grown on the validation data (target: {}):\n",
        target.join(", ")
    );
    out.push_str(
        "  cutoff  nmax      lmax      functions  valid E RMSE  valid F RMSE  F/σ_F   fit\n",
    );
    out.push_str(
        "     (Å)                    per species    (meV/atom)       (meV/Å)          (s)\n",
    );
    for (k, t) in c.trials.iter().enumerate() {
        let mark = if k == c.chosen { " <" } else { "" };
        let ratio = if c.sigma_f > 0.0 {
            format!("{:5.1} %", 100.0 * t.force_rmse / c.sigma_f)
        } else {
            "    –  ".into()
        };
        out.push_str(&format!(
            "{:>8} {:<9} {:<9} {:>9} {:>13.3} {:>13.3} {ratio} {:>5.0}{mark}\n",
            t.cutoff,
            join(&t.nmax),
            join(&t.lmax),
            t.functions,
            t.energy_rmse,
            t.force_rmse,
            t.seconds
        ));
    }
    out.push_str(&format!("{}\n", c.how));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Workspace;
    use crate::testing::random_structure;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn base() -> BasisConfig {
        BasisConfig {
            cutoff: 4.8,
            nmax: vec![3, 2],
            lmax: vec![0, 2],
            ..Default::default()
        }
    }

    /// Al structures labelled by a random model of the second rung's basis, built on the
    /// training structures (so the students' radial and core terms are the teacher's), with
    /// Gaussian-like noise of `sigma` eV/Å on the forces.
    fn data(
        n_train: usize,
        n_valid: usize,
        sigma: f64,
    ) -> (Vec<String>, Vec<Structure>, Vec<Structure>) {
        let names = vec!["Al".to_string()];
        let mut all: Vec<Structure> = (0..n_train + n_valid)
            .map(|k| random_structure(&["Al"], 2, 300 + k as u64, k % 2 == 0))
            .collect();
        let rung2 = ladder(&base())[1].clone();
        let mut teacher =
            fit::build_skeleton(&names, &rung2, &FitConfig::default(), &all[..n_train]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        for c in teacher.coefs.iter_mut().flatten() {
            *c = rng.random_range(-0.05..0.05);
        }
        teacher.e0 = vec![-2.0];
        teacher.rebuild_derived();
        let mut ws = Workspace::new(&teacher);
        for s in all.iter_mut() {
            let p = teacher.predict(s, &mut ws).unwrap();
            s.energy = Some(p.energy);
            let mut f = p.forces;
            for v in f.iter_mut().flatten() {
                let u: f64 = (0..12).map(|_| rng.random_range(0.0..1.0)).sum::<f64>() - 6.0;
                *v += sigma * u;
            }
            s.forces = Some(f);
        }
        let valid = all.split_off(n_train);
        (names, all, valid)
    }

    #[test]
    fn the_ladder_raises_the_angular_degree_then_the_cutoff_and_skips_what_is_already_there() {
        let d = BasisConfig::default();
        let l = ladder(&d);
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(l[0], d);
        assert_eq!((l[1].lmax.clone(), l[1].cutoff), (vec![0, 6, 6], d.cutoff));
        assert_eq!(
            (l[2].lmax.clone(), l[2].cutoff),
            (vec![0, 6, 6], GROWN_CUTOFF)
        );
        assert_eq!(l[2].nmax, d.nmax);
        // A five-body degree is left alone.
        let five = BasisConfig {
            nmax: vec![8, 4, 2, 1],
            lmax: vec![0, 3, 2, 1],
            ..Default::default()
        };
        assert_eq!(ladder(&five)[1].lmax, vec![0, 6, 6, 1]);
        let big = BasisConfig {
            cutoff: 8.0,
            lmax: vec![0, 6, 6],
            ..Default::default()
        };
        assert_eq!(ladder(&big), vec![big.clone()]);
        // Per-pair cutoffs are the user's: not overridden.
        let mut pairs = d.clone();
        pairs.pair_cutoffs.insert("Al-Mg".into(), 5.0);
        assert_eq!(ladder(&pairs).len(), 2);
        assert_eq!(Growth::parse(" On "), Ok(Growth::On));
        // Commands that fit a configured basis refuse to be asked to grow it.
        let on = FitConfig {
            grow_basis: Growth::On,
            ..Default::default()
        };
        let err = on.refuse_growth("aceuq loop").unwrap_err();
        assert!(
            err.contains("aceuq loop fits the basis of its [basis] table"),
            "{err}"
        );
        assert!(FitConfig::default().refuse_growth("aceuq loop").is_ok());
        assert!(
            Growth::parse("yes")
                .unwrap_err()
                .contains("auto, on or off")
        );
    }

    fn roomy() -> Limits {
        Limits {
            max_bytes: 1e12,
            threads: 2,
            matrices_per_thread: 1,
        }
    }

    #[test]
    fn growth_climbs_to_the_basis_that_holds_the_teacher_and_stops_there() {
        let (names, train, valid) = data(20, 8, 0.0);
        let cfg = FitConfig {
            target_force: 0.01,
            ..Default::default()
        };
        let mut said = vec![];
        let mut say = |l: &str| said.push(l.to_string());
        let m = fit_grown(
            &names,
            &base(),
            &cfg,
            &train,
            &valid,
            &roomy(),
            false,
            &mut say,
        )
        .unwrap();
        let c = m
            .fit_info
            .basis_choice
            .clone()
            .expect("a grown fit records its choice");
        assert_eq!(c.trials.len(), 2, "{}", basis_choice_text(&c));
        assert_eq!(c.chosen, 1, "{}", basis_choice_text(&c));
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(c.how.contains("meets the target"), "{}", c.how);
        assert_eq!(m.basis_config, ladder(&base())[1]);
        let (t0, t1) = (&c.trials[0], &c.trials[1]);
        assert!(
            t0.force_rmse > 0.01 * c.sigma_f,
            "{}",
            basis_choice_text(&c)
        );
        assert!(
            t1.force_rmse < 1e-3 * c.sigma_f,
            "{}",
            basis_choice_text(&c)
        );
        assert!((c.sigma_f - force_spread(&valid)).abs() < 1e-12 && c.sigma_f > 0.0);
        // The stored validation errors are those of the kept model.
        let v = m
            .fit_info
            .metrics
            .iter()
            .find(|x| x.set == "valid")
            .unwrap();
        assert_eq!(v.force_rmse, t1.force_rmse);
        // The record survives the model file, and the text names the target.
        let cont = crate::io::modelfile::to_container(&m);
        let back =
            crate::io::modelfile::from_container(std::path::Path::new("m.aceuq"), &cont).unwrap();
        assert_eq!(back.fit_info.basis_choice, Some(c.clone()));
        let text = basis_choice_text(&c);
        assert!(
            text.contains("F RMSE ≤ 1 % of σ_F") && text.contains("E RMSE ≤ 3"),
            "{text}"
        );
        // Growth settings are not written to the file (older readers refuse unknown settings).
        let stored = toml::to_string(&m.fit_info.settings).unwrap();
        assert!(
            !stored.contains("target_")
                && !stored.contains("grow_basis")
                && stored.contains("ridge"),
            "{stored}"
        );
    }

    /// `fit_grown` from [`base`] with room to grow and no progress output.
    fn quiet(
        names: &[String],
        cfg: &FitConfig,
        train: &[Structure],
        valid: &[Structure],
    ) -> Result<Model, ModelError> {
        fit_grown(
            names,
            &base(),
            cfg,
            train,
            valid,
            &roomy(),
            false,
            &mut |_| {},
        )
    }

    fn trial(loss: f64) -> BasisTrial {
        BasisTrial {
            loss,
            ..Default::default()
        }
    }

    #[test]
    fn the_choice_is_the_rung_that_meets_the_target_else_the_cheapest_near_the_lowest_loss() {
        let t: Vec<BasisTrial> = [100.0, 60.0, 52.0, 50.0].map(trial).to_vec();
        assert_eq!(decide(&t, true, "x").0, 3);
        // 1.1 x 50 = 55: rung 3 (52) is the cheapest within it, neither the first nor the best.
        let (k, how) = decide(&t, false, "there is no larger basis on the ladder");
        assert_eq!(k, 2, "{how}");
        assert!(
            how.contains("kept basis 3") && how.contains("no larger basis"),
            "{how}"
        );
        // A larger rung that is worse is not kept.
        let t: Vec<BasisTrial> = [50.0, 54.0, 80.0].map(trial).to_vec();
        assert_eq!(decide(&t, false, "s").0, 0);
        assert_eq!(decide(&t[..1], false, "s").0, 0);
    }

    #[test]
    fn the_plan_stops_at_the_coefficient_cap_the_data_and_the_memory() {
        let d = BasisConfig::default();
        let cfg = FitConfig::default();
        let (_, train, _) = data(3, 0, 0.0);
        // 3 structures of 16 atoms: 147 fitted values, enough for the base only.
        let (rungs, why) = plan(1, &d, &cfg, &train, &roomy()).unwrap();
        assert_eq!(rungs.len(), 1);
        let why = why.unwrap();
        assert!(
            why.contains("147 fitted") && why.contains("fewer than 10 per"),
            "{why}"
        );
        // Plenty of values (the plan counts, it does not read positions): one element climbs
        // every rung; two can grow, three hit the coefficient cap at the second rung.
        let many: Vec<Structure> = (0..2000).map(|_| train[0].clone()).collect();
        let (rungs, why) = plan(1, &d, &cfg, &many, &roomy()).unwrap();
        assert_eq!((rungs.len(), why), (3, None));
        assert_eq!(plan(2, &d, &cfg, &many, &roomy()).unwrap().0.len(), 3);
        let (rungs, why) = plan(3, &d, &cfg, &many, &roomy()).unwrap();
        assert_eq!(rungs.len(), 1);
        assert!(why.unwrap().contains("more than growth takes on (5000)"));
        // Memory: two species at the second rung (3758 coefficients, 113 MB a matrix) with 64
        // threads and an ensemble of 8 need about 65 GB.
        let big = Limits {
            max_bytes: 12e9,
            threads: 64,
            matrices_per_thread: 9,
        };
        let (rungs, why) = plan(2, &d, &cfg, &many, &big).unwrap();
        assert_eq!(rungs.len(), 1);
        let why = why.unwrap();
        assert!(
            why.contains("64 threads, 9 matrices each") && why.contains("12.0 GB"),
            "{why}"
        );
        // Energy-only fits count energies only.
        let e_only = FitConfig {
            force_weight: 0.0,
            ..Default::default()
        };
        assert_eq!(observations(&e_only, &train), 3);
        assert_eq!(observations(&cfg, &train), 147);
    }

    #[test]
    fn a_grown_fit_keeps_the_planned_and_decided_rung_and_needs_validation_data() {
        // Three structures of 16 atoms: 147 values, fewer than 10 per coefficient of rung 2.
        let (names, train, valid) = data(3, 4, 0.0);
        let cfg = FitConfig {
            target_force: 1e-6,
            ..Default::default()
        };
        let m = quiet(&names, &cfg, &train, &valid).unwrap();
        let c = m.fit_info.basis_choice.unwrap();
        assert_eq!((c.trials.len(), c.chosen), (1, 0), "{c:?}");
        assert!(c.how.contains("fewer than 10 per coefficient"), "{}", c.how);
        assert_eq!(m.basis_config, base());
        // Noisy forces: no rung can meet a 1 % target; every rung is fitted and the choice
        // is the cheapest within LOSS_SLACK of the lowest validation loss.
        let (names, train, valid) = data(24, 8, 0.3);
        let cfg = FitConfig {
            target_force: 0.01,
            ..Default::default()
        };
        let m = quiet(&names, &cfg, &train, &valid).unwrap();
        let c = m.fit_info.basis_choice.unwrap();
        assert_eq!(c.trials.len(), 3, "{}", basis_choice_text(&c));
        assert!(c.how.contains("no basis meets the target"), "{}", c.how);
        let want = decide(&c.trials, false, "").0;
        assert_eq!(c.chosen, want, "{}", basis_choice_text(&c));
        assert_eq!(m.basis_config, ladder(&base())[want]);
        // Without validation data there is nothing to grow on.
        let err = quiet(&names, &cfg, &train, &[]).unwrap_err();
        assert!(err.to_string().contains("--valid"), "{err}");
    }
}
