//! Ensemble uncertainty (Annevelink & Viswanathan): `n_e` linear ACE fits that differ by the data they saw;
//! the spread of their forces on an atom, scaled by a prefactor calibrated on validation atoms,
//! estimates the force error of the main model.
//!
//! Members. By default each member is a fit on a bootstrap resample of the training *structures*
//! (structures, not atoms or force components, because the rows of one structure are strongly
//! correlated): multinomial counts (classic bootstrap, N draws with replacement from N
//! structures) or independent Poisson(1) weights. All members' normal equations are accumulated
//! in ONE pass over the training data ([`crate::model::fit::fit_weighted_members`]): each
//! structure's design block is built once and added with each member's weight. Bootstrap is the
//! default because it reflects what the data actually pin down, including the misfit of a basis
//! that cannot represent the reference exactly, which dominates ACE force errors.
//!
//! Alternatively (`sampling = "posterior"`) members are draws from the Gaussian posterior of the
//! ridge fit ([`crate::model::fit::fit_posterior_draws`]): exact for the linear-Gaussian model and
//! cheaper, but its spread only measures how well the coefficients are determined (a leverage, as
//! D-optimality), not model misfit; the calibrated prefactor absorbs the overall scale.
//!
//! Raw spread per atom: `u_i = sqrt( sum_xyz (1/n_e) sum_k (f_k,i - fbar_i)^2 )` of the member
//! forces. Calibrated: `sigma_i = A_e u_i`, `A_e = sqrt( sum_k (e_k/u_k)^2 / (3 n) )`, the maximum of
//! the Maxwell likelihood of the main model's validation force errors `e_k` with scales `A u_k`
//! (`d/dA sum [3 ln(A u) + e^2/(2 A^2 u^2)] = 0`). One prefactor per species from that species'
//! validation atoms; a species without validation atoms uses the prefactor of all atoms.
//!
//! Evaluation. Member forces need every member's energy gradient per atom; the descriptor work
//! (`A`, forward sweep) is shared: [`crate::model::Model::atom_energy_grad_members`] with the
//! per-species [`MemberTables`] from [`Ensemble::tables`]. The forces on atom `i` sum
//! contributions from its neighbours' energies, so a caller accumulates per-member forces over all
//! atoms (as [`Ensemble::member_forces`] does), then calls [`Ensemble::sigma`] per atom.
//!
//! In MD (the C ABI and the LAMMPS plugin) the same spread comes cheaper: the forces of the
//! `n_e - 1` [`Ensemble::spread_directions`] carry it exactly, and they share one lane pass with
//! the main model's energy and forces ([`Ensemble::step_tables`], lane 0 the model), so an
//! ensemble step costs about one evaluation of 4 lanes instead of a scalar evaluation plus one of
//! `n_e` lanes; [`Ensemble::sigma_from_directions`] turns the summed direction forces into sigma.

use super::UqError;
use super::optim::maxwell_nll;
use super::persist::{bad, f64_checked, f64_finite, get_meta, put_f64, put_meta, size};
use crate::io::container::{Container, ContainerError};
use crate::model::eval::MemberTables;
use crate::model::fit::{self, MemberFit};
use crate::model::{Model, ModelError, Workspace};
use crate::structure::Structure;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How ensemble members are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Fits on bootstrap resamples of the training structures.
    Bootstrap,
    /// Draws from the Gaussian posterior of the ridge fit.
    Posterior,
}

/// Bootstrap weights of the training structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampling {
    /// Counts of N draws with replacement from N structures (the classic bootstrap).
    Multinomial,
    /// Independent Poisson(1) counts per structure (the "Poisson bootstrap").
    Poisson,
}

/// Ensemble settings (`[uq.ensemble_settings]`); the member count is `[uq] ensemble`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// "bootstrap" (default) or "posterior".
    pub sampling: Sampling,
    /// Bootstrap weights: "multinomial" (default) or "poisson".
    pub resampling: Resampling,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sampling: Sampling::Bootstrap,
            resampling: Resampling::Multinomial,
        }
    }
}

/// Human-readable record stored as `[uq.ensemble]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    members: usize,
    sampling: Sampling,
    resampling: Resampling,
    /// The seed, as text (TOML integers cannot hold every u64).
    seed: String,
    /// Validation atoms used for each species' prefactor (0: the all-atom prefactor was used).
    calibration_atoms: Vec<usize>,
    /// Posterior noise variance (posterior sampling only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    posterior_sigma2: Option<f64>,
}

/// A calibrated ensemble of linear ACE coefficient sets sharing the model's basis.
#[derive(Clone, Debug)]
pub struct Ensemble {
    n_members: usize,
    /// `coefs[s][k]`: member `k`'s coefficients of species `s`.
    coefs: Vec<Vec<Vec<f64>>>,
    /// `e0[s][k]`: member `k`'s one-body energy of species `s` (eV).
    e0: Vec<Vec<f64>>,
    /// Calibrated prefactor `A_e` per species.
    prefactor: Vec<f64>,
    meta: Meta,
    /// Interleaved evaluation tables per species (derived).
    tables: Vec<MemberTables>,
}

/// Raw spread `sqrt( sum_xyz (1/n_e) sum_k (f_k - fbar)^2 )` of one atom's member forces (eV/Å).
pub fn raw_spread(forces: &[[f64; 3]]) -> f64 {
    let n = forces.len();
    if n == 0 {
        return 0.0;
    }
    let mut mean = [0.0; 3];
    for f in forces {
        for d in 0..3 {
            mean[d] += f[d];
        }
    }
    for v in mean.iter_mut() {
        *v /= n as f64;
    }
    let mut s = 0.0;
    for f in forces {
        for d in 0..3 {
            s += (f[d] - mean[d]).powi(2);
        }
    }
    (s / n as f64).sqrt()
}

/// Maxwell maximum-likelihood prefactor `A = sqrt( sum_k (e_k/u_k)^2 / (3 n) )` for errors `e` and
/// raw spreads `u` (atoms with `u = 0` carry no information about `A` and are skipped). `None` if
/// no atom remains.
pub fn maxwell_prefactor(e: &[f64], u: &[f64]) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for (&e, &u) in e.iter().zip(u) {
        if u > 0.0 && e.is_finite() && u.is_finite() {
            s += (e / u).powi(2);
            n += 1;
        }
    }
    let a = (s / (3.0 * n as f64)).sqrt();
    (n > 0 && a > 0.0 && a.is_finite()).then_some(a)
}

impl Ensemble {
    /// Build an ensemble of `n_members` for `model` (whose fit settings, basis, radial windows and
    /// core the members share), fitted on `train`, calibrated on `valid` with the main model's
    /// per-atom force errors `valid_errors` (one vector per validation structure, as
    /// [`super::force_errors`] returns; empty for structures without forces).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        model: &Model,
        train: &[Structure],
        valid: &[Structure],
        valid_errors: &[Vec<f64>],
        n_members: usize,
        settings: &Settings,
        seed: u64,
        progress: bool,
    ) -> Result<Ensemble, UqError> {
        if n_members < 2 {
            return Err(UqError::Data(format!(
                "an ensemble needs at least 2 members to have a spread (got {n_members}); set `ensemble = 8` in [uq]"
            )));
        }
        if valid.len() != valid_errors.len() {
            return Err(UqError::Data(format!(
                "ensemble calibration: {} validation structures but {} error vectors",
                valid.len(),
                valid_errors.len()
            )));
        }
        let cfg = &model.fit_info.settings;
        let mut posterior_sigma2 = None;
        let members = match settings.sampling {
            Sampling::Bootstrap => {
                let weights =
                    bootstrap_weights(model, train, n_members, settings.resampling, seed)?;
                fit::fit_weighted_members(model, cfg, train, &weights, progress)?
            }
            Sampling::Posterior => {
                let p = fit::fit_posterior_draws(model, cfg, train, n_members, seed, progress)?;
                posterior_sigma2 = Some(p.sigma2);
                p.draws
            }
        };
        let ns = model.nspecies();
        let meta = Meta {
            members: n_members,
            sampling: settings.sampling,
            resampling: settings.resampling,
            seed: seed.to_string(),
            calibration_atoms: vec![0; ns],
            posterior_sigma2,
        };
        let mut ens = Ensemble::from_members(model, &members, vec![1.0; ns], meta)?;
        ens.calibrate(model, valid, valid_errors)?;
        Ok(ens)
    }

    /// An ensemble from member fits with given prefactors (no calibration).
    fn from_members(
        model: &Model,
        members: &[MemberFit],
        prefactor: Vec<f64>,
        meta: Meta,
    ) -> Result<Ensemble, UqError> {
        let ns = model.nspecies();
        let coefs: Vec<Vec<Vec<f64>>> = (0..ns)
            .map(|s| members.iter().map(|m| m.coefs[s].clone()).collect())
            .collect();
        let e0: Vec<Vec<f64>> = (0..ns)
            .map(|s| members.iter().map(|m| m.e0[s]).collect())
            .collect();
        let mut ens = Ensemble {
            n_members: members.len(),
            coefs,
            e0,
            prefactor,
            meta,
            tables: vec![],
        };
        ens.tables = ens.make_tables(model)?;
        Ok(ens)
    }

    fn make_tables(&self, model: &Model) -> Result<Vec<MemberTables>, ModelError> {
        (0..model.nspecies())
            .map(|s| {
                let c: Vec<&[f64]> = self.coefs[s].iter().map(|v| v.as_slice()).collect();
                model.member_tables(s, &c, &self.e0[s])
            })
            .collect()
    }

    /// Set each species' prefactor from the validation errors.
    fn calibrate(
        &mut self,
        model: &Model,
        valid: &[Structure],
        valid_errors: &[Vec<f64>],
    ) -> Result<(), UqError> {
        let ns = model.nspecies();
        let per: Vec<(Vec<u16>, Vec<f64>)> = valid
            .par_iter()
            .zip(valid_errors)
            .filter(|(_, e)| !e.is_empty())
            .map_init(
                || Workspace::new(model),
                |ws, (s, e)| -> Result<_, ModelError> {
                    if e.len() != s.len() {
                        return Err(ModelError::Data(format!(
                            "{}: {} force errors for {} atoms",
                            s.origin,
                            e.len(),
                            s.len()
                        )));
                    }
                    Ok((
                        model.map_species(s)?,
                        self.raw_spread_structure(model, s, ws)?,
                    ))
                },
            )
            .collect::<Result<_, _>>()?;
        let mut e_s = vec![vec![]; ns];
        let mut u_s = vec![vec![]; ns];
        for ((sp, u), e) in per
            .iter()
            .zip(valid_errors.iter().filter(|e| !e.is_empty()))
        {
            for ((&z, &u), &e) in sp.iter().zip(u).zip(e) {
                e_s[z as usize].push(e);
                u_s[z as usize].push(u);
            }
        }
        let all_e: Vec<f64> = e_s.concat();
        let all_u: Vec<f64> = u_s.concat();
        let global = maxwell_prefactor(&all_e, &all_u).ok_or_else(|| {
            UqError::Data(
                "ensemble calibration needs validation structures with reference forces (pass --valid with forces) and members that differ".into(),
            )
        })?;
        for s in 0..ns {
            match maxwell_prefactor(&e_s[s], &u_s[s]) {
                Some(a) => {
                    self.prefactor[s] = a;
                    self.meta.calibration_atoms[s] = e_s[s].len();
                }
                None => {
                    self.prefactor[s] = global;
                    self.meta.calibration_atoms[s] = 0;
                }
            }
        }
        Ok(())
    }

    /// Number of members.
    pub fn n_members(&self) -> usize {
        self.n_members
    }

    /// Member `k`'s coefficients of species `s`.
    pub fn member_coefs(&self, k: usize, s: usize) -> &[f64] {
        &self.coefs[s][k]
    }

    /// Member `k`'s one-body energy of species `s` (eV).
    pub fn member_e0(&self, k: usize, s: usize) -> f64 {
        self.e0[s][k]
    }

    /// Calibrated prefactor `A_e` of species `s`.
    pub fn prefactor(&self, s: usize) -> f64 {
        self.prefactor[s]
    }

    /// Evaluation tables per species for [`Model::atom_energy_grad_members`] (the per-member
    /// energy coefficients of every DAG node, interleaved).
    pub fn tables(&self) -> &[MemberTables] {
        &self.tables
    }

    /// Calibrated uncertainty (eV/Å) of an atom of species `s` from its member forces
    /// (`n_members` vectors).
    pub fn sigma(&self, s: usize, member_forces: &[[f64; 3]]) -> f64 {
        self.prefactor[s] * raw_spread(member_forces)
    }

    /// Number of spread directions, `n_members - 1` (see [`Ensemble::spread_directions`]).
    pub fn n_directions(&self) -> usize {
        self.n_members.saturating_sub(1)
    }

    /// Coefficient vectors of species `s` whose forces carry the whole member spread:
    /// `w_q = (1/sqrt(n_e)) sum_k h_q[k] c_k`, `q = 1..n_e-1`, with `h_q` the Helmert contrasts
    /// (orthonormal and orthogonal to `(1, ..., 1)`).
    ///
    /// Why: forces are linear in the coefficients, `f_k = J c_k` (plus the core repulsion, the
    /// same for every member), so the deviations `f_k - fbar = J d_k`, `d_k = c_k - cbar`. The
    /// matrix `D = [d_1 .. d_ne]` has `D 1 = 0`; completing the `h_q` with `1/sqrt(n_e)` to an
    /// orthogonal `H` gives `sum_k |J d_k|^2 = ||J D H||_F^2 = sum_q |J D h_q|^2`, and
    /// `D h_q = C h_q` because `h_q ⟂ 1`. Hence `u_i^2 = sum_q |F_q,i|^2` with `F_q` the forces
    /// of `w_q` alone (no one-body energy, no core repulsion): `n_e - 1` force evaluations
    /// instead of `n_e`, and no mean to subtract. The same `h_q` are used for every species, so
    /// that the directions of all species together are those of the concatenated coefficients.
    pub fn spread_directions(&self, s: usize) -> Vec<Vec<f64>> {
        let ne = self.n_members;
        let m = self.coefs[s].first().map_or(0, |c| c.len());
        let scale = 1.0 / (ne as f64).sqrt();
        (1..ne)
            .map(|q| {
                // h_q = (1, ..., 1, -q, 0, ...) / sqrt(q (q + 1)) over members 0..q.
                let h = scale / ((q * (q + 1)) as f64).sqrt();
                let mut w = vec![0.0; m];
                for c in &self.coefs[s][..q] {
                    for (wv, cv) in w.iter_mut().zip(c) {
                        *wv += cv;
                    }
                }
                for (wv, cv) in w.iter_mut().zip(&self.coefs[s][q]) {
                    *wv = h * (*wv - q as f64 * cv);
                }
                w
            })
            .collect()
    }

    /// Evaluation tables per species for one step of MD with the ensemble: lane 0 is the main
    /// model (its coefficients, one-body energy and core repulsion), lanes `1..=n_directions`
    /// the [`Ensemble::spread_directions`] (no one-body energy, no core repulsion). One pass of
    /// [`Model::atom_energy_grad_lanes`] then gives the energy and forces of the main model and
    /// the direction forces from which [`Ensemble::sigma_from_directions`] takes the spread.
    pub fn step_tables(&self, model: &Model) -> Result<Vec<MemberTables>, ModelError> {
        let nd = self.n_directions();
        (0..model.nspecies())
            .map(|s| {
                let dirs = self.spread_directions(s);
                let mut c: Vec<&[f64]> = vec![model.coefs[s].as_slice()];
                c.extend(dirs.iter().map(|v| v.as_slice()));
                let mut e0 = vec![0.0; nd + 1];
                e0[0] = model.e0[s];
                let mut core = vec![0.0; nd + 1];
                core[0] = 1.0;
                model.lane_tables(s, &c, &e0, &core)
            })
            .collect()
    }

    /// Calibrated uncertainty (eV/Å) of an atom of species `s` from the forces of the spread
    /// directions on it (`n_directions` vectors, see [`Ensemble::spread_directions`]):
    /// `A_e sqrt( sum_q |F_q|^2 )`, equal to [`Ensemble::sigma`] of the member forces up to
    /// rounding.
    pub fn sigma_from_directions(&self, s: usize, direction_forces: &[[f64; 3]]) -> f64 {
        let ss: f64 = direction_forces
            .iter()
            .map(|f| f[0] * f[0] + f[1] * f[1] + f[2] * f[2])
            .sum();
        self.prefactor[s] * ss.sqrt()
    }

    /// Forces of every member on every atom of a structure, `[member][atom]` (eV/Å), from one
    /// shared descriptor pass per atom.
    pub fn member_forces(
        &self,
        model: &Model,
        s: &Structure,
        ws: &mut Workspace,
    ) -> Result<Vec<Vec<[f64; 3]>>, ModelError> {
        let envs = crate::model::env::Environments::new(model, s)?;
        let ne = self.n_members;
        let n = envs.len();
        let mut forces = vec![vec![[0.0; 3]; n]; ne];
        let mut energies = vec![0.0; ne];
        let mut grads = Vec::new();
        for i in 0..n {
            let env = envs.get(i);
            grads.resize(env.rij.len() * ne, [0.0; 3]);
            model.atom_energy_grad_members(
                ws,
                env.si,
                env.rij,
                env.sj,
                &self.tables[env.si],
                &mut energies,
                &mut grads,
            );
            for (jj, &j) in env.j.iter().enumerate() {
                for (k, f) in forces.iter_mut().enumerate() {
                    let g = grads[jj * ne + k];
                    for d in 0..3 {
                        f[i][d] += g[d];
                        f[j as usize][d] -= g[d];
                    }
                }
            }
        }
        Ok(forces)
    }

    /// Raw member spread of every atom of a structure (eV/Å, uncalibrated).
    pub fn raw_spread_structure(
        &self,
        model: &Model,
        s: &Structure,
        ws: &mut Workspace,
    ) -> Result<Vec<f64>, ModelError> {
        let f = self.member_forces(model, s, ws)?;
        let mut buf = vec![[0.0; 3]; self.n_members];
        Ok((0..s.len())
            .map(|i| {
                for (b, fk) in buf.iter_mut().zip(&f) {
                    *b = fk[i];
                }
                raw_spread(&buf)
            })
            .collect())
    }

    /// Calibrated uncertainty of every atom of a structure (eV/Å): the offline evaluator.
    pub fn sigma_structure(
        &self,
        model: &Model,
        s: &Structure,
        ws: &mut Workspace,
    ) -> Result<Vec<f64>, ModelError> {
        let species = model.map_species(s)?;
        let raw = self.raw_spread_structure(model, s, ws)?;
        Ok(raw
            .iter()
            .zip(&species)
            .map(|(u, &z)| self.prefactor[z as usize] * u)
            .collect())
    }

    /// Maxwell negative log-likelihood of errors `e` with scales `a * u` (what the prefactor
    /// minimizes; exposed for checks and reports).
    pub fn calibration_nll(a: f64, e: &[f64], u: &[f64]) -> f64 {
        let s: Vec<f64> = u.iter().map(|u| a * u).collect();
        maxwell_nll(e, &s)
    }

    /// The human-readable record stored as `[uq.ensemble]` (TOML), for reports and `aceuq info`.
    pub fn summary(&self) -> String {
        toml::to_string(&self.meta).unwrap_or_default()
    }

    /// Store into a model file container.
    pub fn save(&self, c: &mut Container) {
        put_meta(c, "ensemble", &self.meta);
        let ns = self.coefs.len();
        for s in 0..ns {
            let m = self.coefs[s].first().map(|v| v.len()).unwrap_or(0);
            put_f64(
                c,
                &format!("uq.ensemble.coef.{s}"),
                vec![self.n_members, m],
                &self.coefs[s].concat(),
            );
        }
        put_f64(
            c,
            "uq.ensemble.e0",
            vec![ns, self.n_members],
            &self.e0.concat(),
        );
        put_f64(c, "uq.ensemble.prefactor", vec![ns], &self.prefactor);
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let Some(meta) = get_meta::<Meta>(path, c, "ensemble")? else {
            return Ok(None);
        };
        let ns = model.nspecies();
        let ne = meta.members;
        if ne == 0 || ne > 100_000 {
            return Err(bad(
                path,
                format!(
                    "[uq.ensemble] members = {ne} is not a usable member count (file corrupt or edited)"
                ),
            ));
        }
        if meta.calibration_atoms.len() != ns {
            return Err(bad(
                path,
                format!(
                    "[uq.ensemble] calibration_atoms lists {} species, the model has {ns}",
                    meta.calibration_atoms.len()
                ),
            ));
        }
        let mut coefs = Vec::with_capacity(ns);
        for s in 0..ns {
            let m = model.nfuncs(s);
            let name = format!("uq.ensemble.coef.{s}");
            let flat = f64_finite(path, c, &name, size(path, &name, ne, m)?)?;
            coefs.push(
                flat.chunks_exact(m.max(1))
                    .map(|r| r.to_vec())
                    .collect::<Vec<_>>(),
            );
        }
        let e0flat = f64_finite(path, c, "uq.ensemble.e0", ns * ne)?;
        let e0 = e0flat.chunks_exact(ne).map(|r| r.to_vec()).collect();
        let prefactor = f64_checked(path, c, "uq.ensemble.prefactor", ns, "positive", |v| {
            v > 0.0
        })?;
        let mut ens = Ensemble {
            n_members: ne,
            coefs,
            e0,
            prefactor,
            meta,
            tables: vec![],
        };
        ens.tables = ens
            .make_tables(model)
            .map_err(|e| bad(path, e.to_string()))?;
        Ok(Some(ens))
    }
}

/// Per-member bootstrap weights of the training structures. A member whose resample leaves out
/// every structure containing some species (possible for rare species) is redrawn.
fn bootstrap_weights(
    model: &Model,
    train: &[Structure],
    n_members: usize,
    how: Resampling,
    seed: u64,
) -> Result<Vec<Vec<f64>>, UqError> {
    let nt = train.len();
    if nt == 0 {
        return Err(UqError::Data("no training structures".into()));
    }
    let ns = model.nspecies();
    let present: Vec<Vec<bool>> = train
        .iter()
        .map(|s| {
            let sp = model.map_species(s)?;
            let mut p = vec![false; ns];
            for z in sp {
                p[z as usize] = true;
            }
            Ok(p)
        })
        .collect::<Result<_, ModelError>>()?;
    let needed: Vec<bool> = (0..ns).map(|z| present.iter().any(|p| p[z])).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x656e_7365_6d62_6c65);
    let poisson = rand_distr::Poisson::new(1.0).expect("Poisson(1) is valid");
    let mut out = Vec::with_capacity(n_members);
    for k in 0..n_members {
        let mut tries = 0;
        loop {
            let mut w = vec![0.0; nt];
            match how {
                Resampling::Multinomial => {
                    for _ in 0..nt {
                        w[rng.random_range(0..nt)] += 1.0;
                    }
                }
                Resampling::Poisson => {
                    for v in w.iter_mut() {
                        *v = poisson.sample(&mut rng);
                    }
                }
            }
            let covered =
                (0..ns).all(|z| !needed[z] || (0..nt).any(|t| w[t] > 0.0 && present[t][z]));
            if covered && w.iter().sum::<f64>() > 0.0 {
                out.push(w);
                break;
            }
            tries += 1;
            if tries > 1000 {
                return Err(UqError::Data(format!(
                    "ensemble member {k}: no bootstrap resample of the {nt} training structures contains every species; add structures with the rare species"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fit::FitConfig;
    use crate::testing::{random_structure, tiny_cfg};

    /// Training data labelled by a teacher OUTSIDE the student's function space (a larger basis),
    /// so that fits on different resamples really differ.
    fn data(n: usize, seed: u64) -> (Vec<Structure>, Model) {
        let names = vec!["Al".to_string(), "Mg".to_string()];
        let mut structs: Vec<Structure> = (0..n)
            .map(|k| random_structure(&["Al", "Mg"], 2, seed + k as u64, k % 2 == 0))
            .collect();
        let big = crate::testing::small_cfg();
        let mut teacher =
            fit::build_skeleton(&names, &big, &FitConfig::default(), &structs).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for c in teacher.coefs.iter_mut() {
            for v in c.iter_mut() {
                *v = rng.random_range(-0.05..0.05);
            }
        }
        teacher.e0 = vec![-2.0, -1.0];
        teacher.rebuild_derived();
        let mut ws = Workspace::new(&teacher);
        for s in structs.iter_mut() {
            let p = teacher.predict(s, &mut ws).unwrap();
            s.energy = Some(p.energy);
            s.forces = Some(p.forces);
        }
        (structs, teacher)
    }

    fn student(train: &[Structure]) -> Model {
        let names = vec!["Al".to_string(), "Mg".to_string()];
        fit::fit(
            &names,
            &tiny_cfg(),
            &FitConfig::default(),
            train,
            &[],
            false,
        )
        .unwrap()
    }

    #[test]
    fn all_one_weights_reproduce_fit_and_members_differ() {
        let (train, _) = data(14, 10);
        let model = student(&train);
        let cfg = &model.fit_info.settings;
        let ones = vec![vec![1.0; train.len()]];
        let m = fit::fit_weighted_members(&model, cfg, &train, &ones, false).unwrap();
        // Same normal equations up to summation order; the system is ill-conditioned (tiny
        // ridge), so compare coefficients loosely and predictions tightly.
        for s in 0..2 {
            let scale = model.coefs[s].iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (a, b) in m[0].coefs[s].iter().zip(&model.coefs[s]) {
                assert!((a - b).abs() <= 1e-4 * scale, "{a} vs {b}");
            }
        }
        let mut refit = model.clone();
        refit.coefs = m[0].coefs.clone();
        refit.e0 = m[0].e0.clone();
        refit.rebuild_derived();
        let probe = random_structure(&["Al", "Mg"], 2, 4242, true);
        let p0 = model.predict(&probe, &mut Workspace::new(&model)).unwrap();
        let p1 = refit.predict(&probe, &mut Workspace::new(&refit)).unwrap();
        assert!((p0.energy - p1.energy).abs() < 1e-6 * probe.len() as f64);
        for (a, b) in p0.forces.iter().zip(&p1.forces) {
            for d in 0..3 {
                assert!((a[d] - b[d]).abs() < 1e-6, "{a:?} vs {b:?}");
            }
        }
        let w = bootstrap_weights(&model, &train, 4, Resampling::Multinomial, 1).unwrap();
        for wk in &w {
            assert_eq!(wk.iter().sum::<f64>(), train.len() as f64);
        }
        let members = fit::fit_weighted_members(&model, cfg, &train, &w, false).unwrap();
        for a in 0..4 {
            for b in 0..a {
                let d: f64 = members[a].coefs[0]
                    .iter()
                    .zip(&members[b].coefs[0])
                    .map(|(x, y)| (x - y).abs())
                    .sum();
                assert!(d > 1e-6, "members {a} and {b} are identical");
            }
        }
        // Poisson weights are non-negative integers with mean about 1.
        let wp = bootstrap_weights(&model, &train, 50, Resampling::Poisson, 2).unwrap();
        let mean = wp.iter().flatten().sum::<f64>() / (50 * train.len()) as f64;
        assert!((mean - 1.0).abs() < 0.1, "{mean}");
        assert!(wp.iter().flatten().all(|v| v.fract() == 0.0 && *v >= 0.0));
    }

    #[test]
    fn member_kernel_equals_per_member_predict_and_single_member_has_no_spread() {
        let (train, _) = data(12, 30);
        let model = student(&train);
        let cfg = &model.fit_info.settings;
        let w = bootstrap_weights(&model, &train, 3, Resampling::Poisson, 5).unwrap();
        let members = fit::fit_weighted_members(&model, cfg, &train, &w, false).unwrap();
        let meta = |n| Meta {
            members: n,
            sampling: Sampling::Bootstrap,
            resampling: Resampling::Poisson,
            seed: "0".into(),
            calibration_atoms: vec![0, 0],
            posterior_sigma2: None,
        };
        let ens = Ensemble::from_members(&model, &members, vec![1.0, 1.0], meta(3)).unwrap();
        let test = random_structure(&["Al", "Mg"], 2, 777, true);
        let mut ws = Workspace::new(&model);
        let mf = ens.member_forces(&model, &test, &mut ws).unwrap();
        // Energies too: sum of per-atom member energies equals the member model's energy.
        let species = model.map_species(&test).unwrap();
        let nl = crate::neighbors::build(&test, model.max_cutoff()).unwrap();
        let mut etot = [0.0; 3];
        let mut en = vec![0.0; 3];
        let mut g = vec![];
        let mut sj = vec![];
        for i in 0..test.len() {
            let r = nl.range(i);
            sj.clear();
            sj.extend(nl.j[r.clone()].iter().map(|&j| species[j as usize]));
            g.resize(r.len() * 3, [0.0; 3]);
            let si = species[i] as usize;
            model.atom_energy_grad_members(
                &mut ws,
                si,
                &nl.rij[r],
                &sj,
                &ens.tables()[si],
                &mut en,
                &mut g,
            );
            for k in 0..3 {
                etot[k] += en[k];
            }
        }
        for (k, mfit) in members.iter().enumerate() {
            let mut mk = model.clone();
            mk.coefs = mfit.coefs.clone();
            mk.e0 = mfit.e0.clone();
            mk.rebuild_derived();
            let p = mk.predict(&test, &mut Workspace::new(&mk)).unwrap();
            assert!(
                (p.energy - etot[k]).abs() < 1e-9 * p.energy.abs().max(1.0),
                "member {k}: {} vs {}",
                p.energy,
                etot[k]
            );
            for (a, b) in p.forces.iter().zip(&mf[k]) {
                for d in 0..3 {
                    assert!((a[d] - b[d]).abs() < 1e-10, "member {k}: {a:?} vs {b:?}");
                }
            }
        }
        // Two lane groups (6 members: the 3 twice) give the same forces per member.
        let six: Vec<MemberFit> = members.iter().chain(&members).cloned().collect();
        let ens6 = Ensemble::from_members(&model, &six, vec![1.0, 1.0], meta(6)).unwrap();
        let mf6 = ens6.member_forces(&model, &test, &mut ws).unwrap();
        for k in 0..6 {
            assert_eq!(mf6[k], mf[k % 3], "member {k}");
        }
        let raw = ens.raw_spread_structure(&model, &test, &mut ws).unwrap();
        assert!(
            raw.iter().all(|&u| u > 1e-8),
            "members must differ: {raw:?}"
        );
        // One member: zero spread everywhere.
        let one = Ensemble::from_members(&model, &members[..1], vec![1.0, 1.0], meta(1)).unwrap();
        let raw1 = one.raw_spread_structure(&model, &test, &mut ws).unwrap();
        assert!(raw1.iter().all(|&u| u == 0.0), "{raw1:?}");
        // Spread formula on a hand example: forces ±(1,0,0) -> mean 0, spread 1.
        assert_eq!(raw_spread(&[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), 1.0);
    }

    /// The spread from the direction forces of one lane pass (the step tables: model in lane 0,
    /// directions after) equals the spread of the member forces, for 1 to 6 members (one and two
    /// groups of lanes), two species; lane 0 reproduces the model's forces.
    #[test]
    fn direction_forces_carry_the_member_spread() {
        let (train, _) = data(12, 60);
        let model = student(&train);
        let cfg = &model.fit_info.settings;
        let w = bootstrap_weights(&model, &train, 6, Resampling::Poisson, 7).unwrap();
        let members = fit::fit_weighted_members(&model, cfg, &train, &w, false).unwrap();
        let test = random_structure(&["Al", "Mg"], 2, 991, true);
        let species = model.map_species(&test).unwrap();
        let nl = crate::neighbors::build(&test, model.max_cutoff()).unwrap();
        let mut ws = Workspace::new(&model);
        let reference = model.predict(&test, &mut ws).unwrap();
        for ne in 1..=6 {
            let meta = Meta {
                members: ne,
                sampling: Sampling::Bootstrap,
                resampling: Resampling::Poisson,
                seed: "0".into(),
                calibration_atoms: vec![0, 0],
                posterior_sigma2: None,
            };
            let ens = Ensemble::from_members(&model, &members[..ne], vec![1.5, 0.5], meta).unwrap();
            assert_eq!(ens.n_directions(), ne - 1);
            let want = ens.sigma_structure(&model, &test, &mut ws).unwrap();
            let tables = ens.step_tables(&model).unwrap();
            let nc = ne - 1;
            let mut cols = vec![vec![[0.0; 3]; nc]; test.len()];
            let mut forces = vec![[0.0; 3]; test.len()];
            let (mut en, mut g, mut sj) = (vec![0.0; ne], vec![], vec![]);
            for i in 0..test.len() {
                let r = nl.range(i);
                sj.clear();
                sj.extend(nl.j[r.clone()].iter().map(|&j| species[j as usize]));
                g.resize(r.len() * ne, [0.0; 3]);
                let si = species[i] as usize;
                let rij = &nl.rij[r.clone()];
                model.atom_energy_grad_lanes(
                    &mut ws,
                    si,
                    rij,
                    &sj,
                    &tables[si],
                    &mut en,
                    &mut g,
                    None,
                );
                assert!(
                    (en[0] - reference.atom_energies[i]).abs() < 1e-12,
                    "{ne} members, atom {i}"
                );
                for (jj, &j) in nl.j[r].iter().enumerate() {
                    let j = j as usize;
                    for d in 0..3 {
                        forces[i][d] += g[jj * ne][d];
                        forces[j][d] -= g[jj * ne][d];
                        for q in 0..nc {
                            cols[i][q][d] += g[jj * ne + 1 + q][d];
                            cols[j][q][d] -= g[jj * ne + 1 + q][d];
                        }
                    }
                }
            }
            for i in 0..test.len() {
                let got = ens.sigma_from_directions(species[i] as usize, &cols[i]);
                assert!(
                    (got - want[i]).abs() <= 1e-9 * want[i] + 1e-14,
                    "{ne} members, atom {i}: {got} vs {}",
                    want[i]
                );
                if ne > 1 {
                    assert!(want[i] > 1e-8, "members must differ");
                }
                for d in 0..3 {
                    assert!((forces[i][d] - reference.forces[i][d]).abs() < 1e-10);
                }
            }
        }
    }

    #[test]
    fn prefactor_is_the_closed_form_and_minimizes_the_maxwell_nll() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let u: Vec<f64> = (0..500).map(|_| rng.random_range(0.01..0.2)).collect();
        // Errors drawn as |N(0, (2.5 u)^2 I_3)|: the MLE should be near 2.5.
        let normal = rand_distr::StandardNormal;
        let e: Vec<f64> = u
            .iter()
            .map(|&u| {
                let v: [f64; 3] = [
                    normal.sample(&mut rng),
                    normal.sample(&mut rng),
                    normal.sample(&mut rng),
                ];
                2.5 * u * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
            })
            .collect();
        let a = maxwell_prefactor(&e, &u).unwrap();
        let closed = (e.iter().zip(&u).map(|(e, u)| (e / u).powi(2)).sum::<f64>()
            / (3.0 * e.len() as f64))
            .sqrt();
        assert!((a - closed).abs() < 1e-14);
        assert!((a - 2.5).abs() < 0.15, "{a}");
        // Golden-section search on the NLL lands on the same value.
        let (mut lo, mut hi) = (0.1, 20.0);
        let gr = 0.5 * (5f64.sqrt() - 1.0);
        for _ in 0..200 {
            let x1 = hi - gr * (hi - lo);
            let x2 = lo + gr * (hi - lo);
            if Ensemble::calibration_nll(x1, &e, &u) < Ensemble::calibration_nll(x2, &e, &u) {
                hi = x2;
            } else {
                lo = x1;
            }
        }
        assert!((0.5 * (lo + hi) - a).abs() < 1e-6, "{lo} {hi} vs {a}");
        let nll = |x| Ensemble::calibration_nll(x, &e, &u);
        assert!(nll(a) < nll(a * 1.01) && nll(a) < nll(a * 0.99));
        assert_eq!(maxwell_prefactor(&[1.0], &[0.0]), None);
    }

    #[test]
    fn build_calibrates_and_round_trips_through_a_container() {
        let (all, _) = data(20, 50);
        let (train, valid) = all.split_at(15);
        let model = student(train);
        let errs = crate::uq::force_errors(&model, valid).unwrap();
        let err = Ensemble::build(
            &model,
            train,
            valid,
            &errs,
            1,
            &Settings::default(),
            1,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least 2 members"), "{err}");
        for sampling in [Sampling::Bootstrap, Sampling::Posterior] {
            let settings = Settings {
                sampling,
                ..Default::default()
            };
            let ens = Ensemble::build(&model, train, valid, &errs, 4, &settings, 9, false).unwrap();
            // The prefactor equals the closed form on the validation atoms of each species.
            let mut ws = Workspace::new(&model);
            let mut e_s = vec![vec![]; 2];
            let mut u_s = vec![vec![]; 2];
            for (s, e) in valid.iter().zip(&errs) {
                let sp = model.map_species(s).unwrap();
                let u = ens.raw_spread_structure(&model, s, &mut ws).unwrap();
                for i in 0..s.len() {
                    e_s[sp[i] as usize].push(e[i]);
                    u_s[sp[i] as usize].push(u[i]);
                }
            }
            for s in 0..2 {
                let a = maxwell_prefactor(&e_s[s], &u_s[s]).unwrap();
                assert!((ens.prefactor(s) - a).abs() < 1e-12 * a, "{sampling:?}");
                assert_eq!(ens.meta.calibration_atoms[s], e_s[s].len());
            }
            let mut c = Container::default();
            ens.save(&mut c);
            let p = Path::new("m.aceuq");
            let bytes = Container::from_bytes(p, &c.to_bytes()).unwrap();
            let back = Ensemble::load(p, &bytes, &model).unwrap().unwrap();
            assert_eq!(back.coefs, ens.coefs);
            assert_eq!(back.e0, ens.e0);
            assert_eq!(back.prefactor, ens.prefactor);
            assert_eq!(back.meta, ens.meta);
            let s0 = &valid[0];
            assert_eq!(
                back.sigma_structure(&model, s0, &mut ws).unwrap(),
                ens.sigma_structure(&model, s0, &mut ws).unwrap()
            );
            // Edited metadata: a member count that does not match the arrays names the array.
            let mut bad_c = c.clone();
            bad_c.meta["uq"]["ensemble"]
                .as_table_mut()
                .unwrap()
                .insert("members".into(), toml::Value::Integer(3));
            let e = Ensemble::load(p, &bad_c, &model).unwrap_err().to_string();
            assert!(e.contains("uq.ensemble.coef.0"), "{e}");
            // Edited arrays are named.
            let mut bad_c = c.clone();
            put_f64(&mut bad_c, "uq.ensemble.prefactor", vec![2], &[1.0, -1.0]);
            let e = Ensemble::load(p, &bad_c, &model).unwrap_err().to_string();
            assert!(e.contains("uq.ensemble.prefactor"), "{e}");
            let mut bad_c = c.clone();
            put_f64(&mut bad_c, "uq.ensemble.coef.1", vec![1], &[1.0]);
            let e = Ensemble::load(p, &bad_c, &model).unwrap_err().to_string();
            assert!(e.contains("uq.ensemble.coef.1"), "{e}");
        }
        // Absent: None.
        assert!(
            Ensemble::load(Path::new("x"), &Container::default(), &model)
                .unwrap()
                .is_none()
        );
    }
}
