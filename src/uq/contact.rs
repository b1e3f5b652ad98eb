//! Contact: how much closer an atom comes to a neighbour than any pair of the training data.
//!
//! Per atom, `u_i = max_j d_train(s_i, s_j) / r_ij` over its neighbours within the model's
//! cutoff, where `d_train(a, b)` is the shortest distance between an `a` and a `b` atom in the
//! training structures (a pair of species never seen together takes the shortest distance of
//! any pair). `u_i > 1`: atom `i` is closer to a neighbour than anything the fit saw, where the
//! radial functions are clamped and the ZBL core takes over; the force error there grows fast.
//!
//! It is the one measure on the repository's Li data that separates the unstable frames
//! (compressed and hot liquids, knock-ons: true largest force error above 1 eV/Å) from the calm
//! ones, where gamma, the ensemble, the latent distance and the GP do not
//! (`docs/benchmarks/cutoffs/README.md`); on Al–Mg and W–Be, whose unstable frames are liquids and
//! hot alloys at ordinary distances, it does not, and the other methods do. It costs one division
//! per neighbour. Like every method it is calibrated by `aceuq calibrate`: its lower cutoff from
//! the validation values, its upper one from the error relation e | u, which validation data
//! alone cannot pin down above u = 1 (in-distribution atoms never get there): give `--high`
//! labelled structures.

use super::UqError;
use super::persist::{bad, check_species_entries, get_meta, put_meta};
use crate::io::container::{Container, ContainerError};
use crate::model::Model;
use crate::model::env::Environments;
use crate::structure::Structure;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shortest training distance of every species pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    /// `ns × ns` (symmetric), Å.
    shortest: Vec<f64>,
    ns: usize,
    /// Neighbours at or beyond this distance (the model's largest cutoff) are not counted.
    reach: f64,
    /// The model's species (stored beside the distances).
    species: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    /// The model's species, in order.
    species: Vec<String>,
    /// Row `a`: the shortest training distance (Å) of species `a` to each species.
    shortest: Vec<Vec<f64>>,
}

impl Contact {
    /// The shortest distance of every species pair in `train`.
    pub fn build(model: &Model, train: &[Structure]) -> Result<Contact, UqError> {
        let ns = model.nspecies();
        let reach = model.max_cutoff();
        // The same shortest distances the fit switches the ZBL core on below (a full
        // neighbour list: the table is symmetric).
        let species_of = train
            .iter()
            .map(|s| model.map_species(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut shortest = crate::model::fit::min_pair_distances(train, &species_of, ns, reach)?;
        let overall = shortest.iter().copied().fold(f64::INFINITY, f64::min);
        if !overall.is_finite() {
            return Err(UqError::Data(
                "contact: the training structures have no pair of atoms within the model's \
                 cutoff"
                    .into(),
            ));
        }
        for d in shortest.iter_mut().filter(|d| !d.is_finite()) {
            *d = overall;
        }
        Ok(Contact {
            shortest,
            ns,
            reach,
            species: model.species.clone(),
        })
    }

    /// The shortest training distance of species `a` and `b` (Å).
    pub fn shortest(&self, a: usize, b: usize) -> f64 {
        self.shortest[a * self.ns + b]
    }

    /// `u` of an atom of species `si` with neighbours at `rij` of species `sj` (0 without a
    /// neighbour within the model's cutoff).
    #[inline]
    pub fn value(&self, si: usize, rij: &[[f64; 3]], sj: &[u16]) -> f64 {
        let row = &self.shortest[si * self.ns..(si + 1) * self.ns];
        let mut u: f64 = 0.0;
        for (r, &s) in rij.iter().zip(sj) {
            let d = crate::neighbors::norm(*r);
            if d < self.reach {
                u = u.max(row[s as usize] / d);
            }
        }
        u
    }

    /// `u` of every atom of every structure (`[structure][atom]`).
    pub fn per_atom(&self, model: &Model, data: &[Structure]) -> Result<Vec<Vec<f64>>, UqError> {
        data.par_iter()
            .map(|s| -> Result<Vec<f64>, UqError> {
                let envs = Environments::new(model, s)?;
                Ok((0..envs.len())
                    .map(|i| {
                        let e = envs.get(i);
                        self.value(e.si, e.rij, e.sj)
                    })
                    .collect())
            })
            .collect()
    }

    /// Store as `[uq.contact]`.
    pub fn save(&self, c: &mut Container) {
        let meta = Meta {
            species: self.species.clone(),
            shortest: self.shortest.chunks(self.ns).map(<[f64]>::to_vec).collect(),
        };
        put_meta(c, "contact", &meta);
    }

    /// Load from a model file container, if present.
    pub fn load(path: &Path, c: &Container, model: &Model) -> Result<Option<Self>, ContainerError> {
        let Some(meta) = get_meta::<Meta>(path, c, "contact")? else {
            return Ok(None);
        };
        check_species_entries(
            path,
            "contact",
            meta.species.iter().map(String::as_str),
            model,
        )?;
        let ns = model.nspecies();
        if meta.shortest.len() != ns || meta.shortest.iter().any(|r| r.len() != ns) {
            return Err(bad(
                path,
                format!("[uq.contact] shortest must be {ns} rows of {ns} distances"),
            ));
        }
        let shortest: Vec<f64> = meta.shortest.concat();
        if let Some(d) = shortest.iter().find(|d| !(d.is_finite() && **d > 0.0)) {
            return Err(bad(
                path,
                format!("[uq.contact] shortest holds {d}: distances must be positive and finite"),
            ));
        }
        Ok(Some(Contact {
            shortest,
            ns,
            reach: model.max_cutoff(),
            species: model.species.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fit;
    use crate::testing::random_structure;

    fn setup(species: &[&str], data_species: &[&str]) -> (Model, Vec<Structure>) {
        let names: Vec<String> = species.iter().map(|s| s.to_string()).collect();
        let data: Vec<Structure> = (0..6)
            .map(|k| random_structure(data_species, 2, 40 + k as u64, k % 2 == 0))
            .collect();
        let model = fit::build_skeleton(
            &names,
            &crate::testing::small_cfg(),
            &fit::FitConfig::default(),
            &data,
        )
        .unwrap();
        (model, data)
    }

    /// On its own training data no atom is closer to a neighbour than the shortest training
    /// distance of the pair (u <= 1) and the atoms of the closest pair of each species pair sit
    /// at exactly 1; a training structure compressed by a factor f has its largest u at
    /// exactly 1/f; the values survive a model file.
    #[test]
    fn training_atoms_reach_one_and_a_compressed_copy_one_over_f() {
        let (model, train) = setup(&["Al", "Mg"], &["Al", "Mg"]);
        let c = Contact::build(&model, &train).unwrap();
        let u = c.per_atom(&model, &train).unwrap();
        let top = u.iter().flatten().copied().fold(0.0, f64::max);
        assert_eq!(top, 1.0, "the closest pair itself");
        assert!(u.iter().flatten().all(|&v| v > 0.0 && v <= 1.0));
        // Every species pair seen has an atom at exactly 1 (within the last bit).
        let envs: Vec<_> = train
            .iter()
            .map(|s| Environments::new(&model, s).unwrap())
            .collect();
        for a in 0..2 {
            for b in 0..2 {
                let d = c.shortest(a, b);
                assert_eq!(d, c.shortest(b, a));
                let hit = envs.iter().any(|e| {
                    (0..e.len()).any(|i| {
                        let x = e.get(i);
                        x.si == a
                            && x.rij
                                .iter()
                                .zip(x.sj)
                                .any(|(r, &s)| s as usize == b && crate::neighbors::norm(*r) == d)
                    })
                });
                assert!(hit, "pair {a}-{b}: no training pair at {d}");
            }
        }
        // The structure holding the closest pair, compressed by f: its largest u is 1/f.
        let f = 0.9;
        let k = u.iter().position(|v| v.contains(&1.0)).unwrap();
        let mut s = train[k].clone();
        for p in s.positions.iter_mut() {
            for x in p.iter_mut() {
                *x *= f;
            }
        }
        if let Some(cell) = s.cell.as_mut() {
            for row in cell.iter_mut() {
                for x in row.iter_mut() {
                    *x *= f;
                }
            }
        }
        let uc = c.per_atom(&model, std::slice::from_ref(&s)).unwrap();
        let top = uc[0].iter().copied().fold(0.0, f64::max);
        assert!((top - 1.0 / f).abs() < 1e-12, "{top}");
        // Through a model file.
        let mut cont = Container::default();
        c.save(&mut cont);
        let p = Path::new("c.aceuq");
        let back = Contact::load(
            p,
            &Container::from_bytes(p, &cont.to_bytes()).unwrap(),
            &model,
        )
        .unwrap()
        .unwrap();
        assert_eq!(back, c);
        assert!(
            Contact::load(p, &Container::default(), &model)
                .unwrap()
                .is_none()
        );
    }

    /// A species pair the training data never put together takes the shortest distance of any
    /// pair; bad stored tables are refused naming the section.
    #[test]
    fn an_unseen_pair_takes_the_overall_shortest_and_bad_tables_are_refused() {
        let (model, train) = setup(&["Al", "Mg"], &["Al"]);
        let c = Contact::build(&model, &train).unwrap();
        let d = c.shortest(0, 0);
        assert!(d.is_finite() && d > 0.0);
        assert_eq!([c.shortest(0, 1), c.shortest(1, 1)], [d, d]);
        let p = Path::new("c.aceuq");
        for (shortest, want) in [
            ("[[1.0, 2.0]]", "must be 2 rows of 2"),
            ("[[1.0, 2.0], [2.0, -1.0]]", "positive and finite"),
        ] {
            let mut cont = Container::default();
            c.save(&mut cont);
            let text = format!("species = [\"Al\", \"Mg\"]\nshortest = {shortest}\n");
            let v: toml::Value = toml::from_str(&text).unwrap();
            put_meta(&mut cont, "contact", &v);
            let err = Contact::load(p, &cont, &model).unwrap_err().to_string();
            assert!(err.contains("[uq.contact]") && err.contains(want), "{err}");
        }
        // A field this build does not know: written by a newer aceuq.
        let mut cont = Container::default();
        let text = "species = [\"Al\", \"Mg\"]\nshortest = [[1.0, 1.0], [1.0, 1.0]]\nnew = 1\n";
        put_meta(
            &mut cont,
            "contact",
            &toml::from_str::<toml::Value>(text).unwrap(),
        );
        let err = Contact::load(p, &cont, &model).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }
}
