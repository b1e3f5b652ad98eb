//! The MD step for a pacemaker potential ([`crate::pace::PaceModel`]): energies and neighbour
//! gradients of one domain, with the same inputs, outputs and checks as [`super::Engine`].
//! Uncertainties are not available for these potentials (asking for one is an error naming
//! what to do).

use super::{Atoms, Outputs};
use crate::error::{Error, ErrorKind};
use crate::pace::{PaceModel, PaceScratch};

/// A pacemaker potential and the scratch memory of its steps.
#[derive(Debug)]
pub struct PaceEngine {
    model: PaceModel,
    ws: PaceScratch,
    rij: Vec<[f64; 3]>,
    sj: Vec<i32>,
    grad: Vec<[f64; 3]>,
}

impl PaceEngine {
    pub fn new(model: PaceModel) -> PaceEngine {
        PaceEngine {
            model,
            ws: PaceScratch::default(),
            rij: vec![],
            sj: vec![],
            grad: vec![],
        }
    }

    pub fn model(&self) -> &PaceModel {
        &self.model
    }

    /// Energies and `dE_i/dr_ij` of the atoms of `ilist`; returns their total energy.
    pub fn step(&mut self, atoms: &Atoms, out: &mut Outputs) -> Result<f64, Error> {
        atoms.validate(self.model.nspecies())?;
        let bad = |m: String| Error::new(ErrorKind::InvalidArgument, m);
        if let Some((m, _)) = out.uq.first() {
            return Err(Error::new(
                ErrorKind::Missing,
                format!(
                    "'{}': a pacemaker potential carries no uncertainty estimators in aceuq yet; \
                     run it without uncertainty keywords",
                    m.name()
                ),
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
                .model
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
            total += e;
        }
        Ok(total)
    }
}
