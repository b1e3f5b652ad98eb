//! The atomic environments of one structure in the model's terms: every atom's species index and
//! its neighbours within the model's largest cutoff, with the neighbours' species alongside, ready
//! for the per-atom kernels (`atom_energy_grad`, `atom_descriptor`, ...). One home for the loop
//! "map species, build the neighbour list, gather each atom's neighbour species" that every
//! whole-structure evaluation starts with.

use super::{Model, ModelError};
use crate::neighbors::{self, NeighborList};
use crate::structure::Structure;

/// Environments of every atom of a structure.
#[derive(Clone, Debug)]
pub struct Environments {
    /// Model species index of every atom.
    pub species: Vec<u16>,
    /// Neighbours within the model's largest cutoff.
    pub nl: NeighborList,
    /// Species index of every neighbour entry of `nl` (parallel to `nl.j`).
    pub sj: Vec<u16>,
}

/// One atom's environment.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    /// Species index of the centre atom.
    pub si: usize,
    /// Displacements to the neighbours (Å).
    pub rij: &'a [[f64; 3]],
    /// Species indices of the neighbours.
    pub sj: &'a [u16],
    /// Indices of the neighbours in the structure.
    pub j: &'a [u32],
}

impl Environments {
    /// Map the species of `s` onto `model` and build its neighbour list.
    pub fn new(model: &Model, s: &Structure) -> Result<Environments, ModelError> {
        let species = model.map_species(s)?;
        let nl = neighbors::build(s, model.max_cutoff())?;
        Ok(Self::from_parts(species, nl))
    }

    /// Environments from species indices and a neighbour list already at hand.
    pub fn from_parts(species: Vec<u16>, nl: NeighborList) -> Environments {
        let sj = nl.j.iter().map(|&j| species[j as usize]).collect();
        Environments { species, nl, sj }
    }

    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.species.len()
    }

    /// True for a structure without atoms.
    pub fn is_empty(&self) -> bool {
        self.species.is_empty()
    }

    /// The environment of atom `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Env<'_> {
        let r = self.nl.range(i);
        Env {
            si: self.species[i] as usize,
            rij: &self.nl.rij[r.clone()],
            sj: &self.sj[r.clone()],
            j: &self.nl.j[r],
        }
    }
}
