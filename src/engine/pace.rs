//! The MD step for a pacemaker potential ([`crate::pace::PaceModel`]): energies and neighbour
//! gradients of one domain, with the same inputs, outputs and checks as [`super::Engine`], and
//! the extrapolation grade `gamma` when an active-set inverse (`.asi`) is attached and the
//! clustered local grade `gamma_local` when clustered active sets (`.lasi`) are. Other
//! uncertainties are not available for these potentials (asking for one is an error naming
//! what to do).

use super::{Atoms, Outputs};
use crate::error::{Error, ErrorKind};
use crate::pace::cutoffs::PaceCutoffs;
use crate::pace::{ActiveSetInverse, GRADE_BLOCK, PaceModel, PacePotential, PaceScratch};
use crate::uq::Method;
use crate::uq::activeset::{ClusteredActiveSets, GammaScratch};

/// A pacemaker potential, its optional active-set inverse and the scratch memory of its steps.
#[derive(Debug)]
pub struct PaceEngine {
    pot: PacePotential,
    /// The potential file (cutoffs files are checked against it).
    path: std::path::PathBuf,
    asi: Option<ActiveSetInverse>,
    /// The `.asi` file the grade comes from.
    asi_path: Option<std::path::PathBuf>,
    /// Clustered local active sets (`gamma_local`) and the `.lasi` file they come from.
    local: Option<ClusteredActiveSets>,
    local_path: Option<std::path::PathBuf>,
    /// Calibrated cutoffs of the grades (`aceuq calibrate`).
    cutoffs: Option<PaceCutoffs>,
    ws: PaceScratch,
    rij: Vec<[f64; 3]>,
    sj: Vec<i32>,
    grad: Vec<[f64; 3]>,
    proj: Vec<f64>,
    acc: Vec<f64>,
    local_proj: Vec<f64>,
    local_scratch: GammaScratch,
    /// Per species: rows waiting for their grades.
    pending: Vec<Pending>,
    values: Vec<f64>,
    clusters: Vec<u32>,
}

impl PaceEngine {
    /// The potential `pot` read from `path`.
    pub fn new(pot: PacePotential, path: &std::path::Path) -> PaceEngine {
        let ns = pot.model().nspecies();
        PaceEngine {
            pot,
            path: path.to_path_buf(),
            asi: None,
            asi_path: None,
            local: None,
            local_path: None,
            cutoffs: None,
            ws: PaceScratch::default(),
            rij: vec![],
            sj: vec![],
            grad: vec![],
            proj: vec![],
            acc: vec![],
            local_proj: vec![],
            local_scratch: GammaScratch::default(),
            pending: (0..ns).map(|_| Pending::default()).collect(),
            values: vec![],
            clusters: vec![],
        }
    }

    pub fn model(&self) -> &PaceModel {
        self.pot.model()
    }

    /// Read and attach an active-set inverse file (`.asi`), checking its species and sizes
    /// against this potential's projections, or clustered local active sets (`.lasi`, checked
    /// against the potential file). Cutoffs loaded before are dropped (they must be loaded
    /// after the active sets they were calibrated with).
    pub fn load_active_set(&mut self, path: &std::path::Path) -> Result<(), Error> {
        if crate::pace::is_local_active_set(path) {
            let local = crate::pace::read_local_active_set(path, &self.pot, &self.path)
                .map_err(Error::from)?;
            self.local = Some(local);
            self.local_path = Some(path.to_path_buf());
            self.cutoffs = None;
            return Ok(());
        }
        let asi = crate::pace::read_active_set(path, &self.pot).map_err(Error::from)?;
        self.asi = Some(asi);
        self.asi_path = Some(path.to_path_buf());
        self.cutoffs = None;
        Ok(())
    }

    /// Read and attach the cutoffs `aceuq calibrate` wrote for this potential and its active
    /// set (which must be attached first: the file is checked against both).
    pub fn load_cutoffs(&mut self, path: &std::path::Path) -> Result<(), Error> {
        let Some(asi) = &self.asi_path else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: cutoffs of gamma need the active-set inverse they were calibrated with \
                     (pair_coeff * * pot.yaml pot.asi {} Elem ...)",
                    path.display(),
                    path.display()
                ),
            ));
        };
        let c = PaceCutoffs::load(
            path,
            &self.path,
            asi,
            self.local_path.as_deref(),
            &self.pot.model().elements,
        )
        .map_err(Error::from)?;
        self.cutoffs = Some(c);
        Ok(())
    }

    /// The calibration entry of `method` for element index `species` (with `cluster`: the
    /// `gamma_local` cluster's own entry, else the element's), if one was loaded.
    pub fn stored_calibration(
        &self,
        method: Method,
        species: usize,
        cluster: Option<usize>,
    ) -> Option<&crate::stats::cutoff::Calibration> {
        let c = self.cutoffs.as_ref()?;
        cluster
            .and_then(|k| c.cluster_entry(method, species, k))
            .or_else(|| c.entry(method, species))
    }

    /// Cutoffs (lower, upper) of `method` for the atoms of element `species` in `gamma_local`
    /// cluster `cluster`, and whether they are the cluster's own (else the element's).
    pub fn stored_cluster_cutoffs(
        &self,
        method: Method,
        species: usize,
        cluster: usize,
    ) -> Option<(f64, f64, bool)> {
        let c = self.cutoffs.as_ref()?;
        if let Some(x) = c.cluster_entry(method, species, cluster) {
            return Some((x.u_c, x.u_max, true));
        }
        c.entry(method, species).map(|x| (x.u_c, x.u_max, false))
    }

    /// Number of `gamma_local` clusters of element `species` (None without a `.lasi`).
    pub fn gamma_local_clusters(&self, species: usize) -> Option<usize> {
        self.local
            .as_ref()?
            .species
            .get(species)
            .map(|sc| sc.sets.len())
    }

    /// The clustered local active sets, if attached.
    pub fn local(&self) -> Option<&ClusteredActiveSets> {
        self.local.as_ref()
    }

    /// The uncertainties this potential can give: `gamma` with an active-set inverse,
    /// `gamma_local` with clustered local active sets.
    pub fn methods(&self) -> Vec<Method> {
        let mut v = vec![];
        if self.asi.is_some() {
            v.push(Method::Gamma);
        }
        if self.local.is_some() {
            v.push(Method::GammaLocal);
        }
        v
    }

    /// Energies and `dE_i/dr_ij` of the atoms of `ilist`; returns their total energy.
    pub fn step(&mut self, atoms: &Atoms, out: &mut Outputs) -> Result<f64, Error> {
        atoms.validate(self.pot.model().nspecies())?;
        let bad = |m: String| Error::new(ErrorKind::InvalidArgument, m);
        // Rows left by a step that stopped with an error belong to no atom of this one.
        for p in &mut self.pending {
            p.gamma_rows.clear();
            p.gamma_atoms.clear();
            p.local_rows.clear();
            p.local_atoms.clear();
        }
        let (mut want_gamma, mut want_local) = (false, false);
        for (m, _) in &out.uq {
            if *m == Method::Gamma && self.asi.is_some() {
                want_gamma = true;
                continue;
            }
            if *m == Method::GammaLocal && self.local.is_some() {
                want_local = true;
                continue;
            }
            return Err(Error::new(
                ErrorKind::Missing,
                match m {
                    Method::Gamma => "'gamma' of a pacemaker potential needs its active-set \
                                      inverse: `pair_coeff * * pot.yaml pot.asi Elem ...` (build \
                                      one with `aceuq activeset --model pot.yaml --data train.xyz`)"
                        .to_string(),
                    Method::GammaLocal => "'gamma_local' of a pacemaker potential needs its \
                                           clustered active sets: `pair_coeff * * pot.yaml \
                                           pot.asi pot.lasi Elem ...` (build both with `aceuq \
                                           activeset --model pot.yaml --data train.xyz --clusters K`)"
                        .to_string(),
                    _ => format!(
                        "'{}': aceuq gives a pacemaker potential only the 'gamma' (.asi file) and \
                         'gamma_local' (.lasi file) grades; remove '{}' from the uncertainty \
                         keywords",
                        m.name(),
                        m.name()
                    ),
                },
            ));
        }
        let Atoms {
            x,
            species,
            tag,
            ilist,
            offsets,
            neigh,
            nlocal,
        } = *atoms;
        if out.fij.len() != 3 * neigh.len() {
            return Err(bad(format!(
                "fij holds {} values, the neighbour list needs {}",
                out.fij.len(),
                3 * neigh.len()
            )));
        }
        if out.eatom.as_ref().is_some_and(|e| e.len() < nlocal) {
            return Err(bad(format!(
                "eatom holds fewer than nlocal = {nlocal} values"
            )));
        }
        if out
            .gamma_local_cluster
            .as_ref()
            .is_some_and(|c| c.len() < nlocal)
        {
            return Err(bad(format!(
                "gamma_local_cluster holds fewer than nlocal = {nlocal} values"
            )));
        }
        let id = |k: usize| tag.map(|t| t[k]).unwrap_or(k as i64 + 1);
        let mut total = 0.0;
        for (ii, &i) in ilist.iter().enumerate() {
            let i = i as usize;
            let (lo, hi) = (offsets[ii] as usize, offsets[ii + 1] as usize);
            out.fij[3 * lo..3 * hi].fill(0.0);
            let si = species[i];
            if si < 0 {
                continue;
            }
            let xi = [x[3 * i], x[3 * i + 1], x[3 * i + 2]];
            if !xi
                .iter()
                .all(|v| v.is_finite() && v.abs() <= crate::structure::limits::MAX_COORDINATE)
            {
                return Err(Error::new(
                    ErrorKind::Data,
                    format!(
                        "atom {} is at {xi:?} Å: not finite or beyond {:e} Å (the run has \
                         blown up, or the coordinates are not in Å)",
                        id(i),
                        crate::structure::limits::MAX_COORDINATE
                    ),
                ));
            }
            self.rij.clear();
            self.sj.clear();
            for &j in &neigh[lo..hi] {
                let j = j as usize;
                let r = [x[3 * j] - xi[0], x[3 * j + 1] - xi[1], x[3 * j + 2] - xi[2]];
                if !r.iter().all(|v| v.is_finite()) {
                    return Err(Error::new(
                        ErrorKind::Data,
                        format!("atom {} has a non-finite position", id(j)),
                    ));
                }
                self.rij.push(r);
                self.sj.push(species[j]);
            }
            self.grad.clear();
            self.grad.resize(hi - lo, [0.0; 3]);
            let e = self
                .pot
                .model()
                .atom_energy_grad(
                    &mut self.ws,
                    si as usize,
                    &self.rij,
                    &self.sj,
                    &mut self.grad,
                )
                .map_err(|e| Error::new(ErrorKind::Data, format!("atom {}: {e}", id(i))))?;
            for (k, g) in self.grad.iter().enumerate() {
                out.fij[3 * (lo + k)..3 * (lo + k) + 3].copy_from_slice(g);
            }
            if let Some(ea) = out.eatom.as_deref_mut() {
                ea[i] = e;
            }
            // The grades are computed per species in blocks of atoms (one matrix product each):
            // here only the projections, from the atomic base the energy just accumulated.
            let si = si as usize;
            if want_gamma && let Some(asi) = &self.asi {
                self.pot
                    .grade_projections_from_base(asi, &mut self.ws, si, &mut self.proj);
                let p = &mut self.pending[si];
                p.gamma_rows.extend_from_slice(&self.proj);
                p.gamma_atoms.push(i);
                if p.gamma_atoms.len() >= GRADE_BLOCK {
                    self.flush_gamma(si, out);
                }
            }
            if want_local && self.local.is_some() {
                self.pot
                    .projections_from_base(&mut self.ws, si, &mut self.local_proj);
                let p = &mut self.pending[si];
                p.local_rows.extend_from_slice(&self.local_proj);
                p.local_atoms.push(i);
                if p.local_atoms.len() >= GRADE_BLOCK {
                    self.flush_local(si, out);
                }
            }
            total += e;
        }
        for si in 0..self.pending.len() {
            self.flush_gamma(si, out);
            self.flush_local(si, out);
        }
        Ok(total)
    }

    /// Grades the atoms of species `si` waiting for `gamma` into `out`.
    fn flush_gamma(&mut self, si: usize, out: &mut Outputs) {
        let p = &mut self.pending[si];
        let n = p.gamma_atoms.len();
        if n > 0
            && let Some(asi) = &self.asi
        {
            self.values.resize(n, 0.0);
            asi.gamma_rows(si, &p.gamma_rows, &mut self.values, &mut self.acc);
            for (m, v) in out.uq.iter_mut() {
                if *m == Method::Gamma {
                    for (&i, &g) in p.gamma_atoms.iter().zip(&self.values) {
                        v[i] = g;
                    }
                }
            }
        }
        p.gamma_rows.clear();
        p.gamma_atoms.clear();
    }

    /// Grades the atoms of species `si` waiting for `gamma_local` (and their clusters) into
    /// `out`.
    fn flush_local(&mut self, si: usize, out: &mut Outputs) {
        let p = &mut self.pending[si];
        let n = p.local_atoms.len();
        if n > 0
            && let Some(local) = &self.local
        {
            self.values.resize(n, 0.0);
            self.clusters.resize(n, 0);
            local.gamma_local_batch(
                si,
                &p.local_rows,
                &mut self.values,
                &mut self.clusters,
                &mut self.local_scratch,
            );
            for (m, v) in out.uq.iter_mut() {
                if *m == Method::GammaLocal {
                    for (&i, &g) in p.local_atoms.iter().zip(&self.values) {
                        v[i] = g;
                    }
                }
            }
            if let Some(cl) = out.gamma_local_cluster.as_deref_mut() {
                for (&i, &c) in p.local_atoms.iter().zip(&self.clusters) {
                    cl[i] = c as i32;
                }
            }
        }
        p.local_rows.clear();
        p.local_atoms.clear();
    }
}

/// Projection rows of one species waiting for their grades, and the atoms they belong to.
#[derive(Debug, Default)]
struct Pending {
    gamma_rows: Vec<f64>,
    gamma_atoms: Vec<usize>,
    local_rows: Vec<f64>,
    local_atoms: Vec<usize>,
}
