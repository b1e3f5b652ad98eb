//! Model files (`*.aceuq`): a [`Model`] stored in the [`container`](super::container) format.
//!
//! The TOML header holds everything a person wants to read (species, cutoffs, basis settings,
//! one-body energies, fit settings and errors, function counts); the binary arrays hold the basis
//! definition (monomials and coupling coefficients) and the fitted coefficients, so a model loads
//! without regenerating its basis and old models keep working when the generator changes.
//!
//! Owns: the model's sections of a model file. The uncertainty estimators add their own sections
//! (`uq.*`), and a whole file is read and written by the `Potential` bundle one layer up; this
//! module imports neither `uq` nor that bundle.

use super::container::{Array, Container, ContainerError};
use crate::basis::radial::RadialBasis;
use crate::basis::{ALayout, BasisConfig, Label, SpeciesBasis};
use crate::model::core::CorePair;
use crate::model::{FitInfo, Model};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairMeta {
    centre: String,
    neighbour: String,
    /// Cutoff (Å).
    cutoff: f64,
    /// Start of the radial resolution window (Å).
    radial_inner: f64,
    nmax: usize,
    /// ZBL core: atomic numbers and switching range (Å).
    core_z: [u32; 2],
    core_r_in: f64,
    core_r_out: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeciesMeta {
    name: String,
    /// One-body reference energy (eV).
    e0: f64,
    functions: usize,
    functions_by_order: Vec<usize>,
    monomials: usize,
    /// Radial functions per angular degree in the `A` layout.
    nmax_per_l: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelMeta {
    aceuq_version: String,
    units: String,
    species: Vec<SpeciesMeta>,
    basis: BasisConfig,
    pairs: Vec<PairMeta>,
    fit: FitInfo,
}

/// A metadata error of section `what`; when the file holds a field or value this build does not
/// know, the likely cause and the way out (a newer aceuq wrote it: the CLI, the LAMMPS plugin
/// and the Python module must be built from a source at least as new as the one that wrote it).
pub(crate) fn meta_message(what: &str, e: &toml::de::Error) -> String {
    let m = e.message().trim_end();
    if m.contains("unknown field") || m.contains("unknown variant") {
        format!(
            "{what}: {m}. The file holds something this build of aceuq does not know: it was \
             probably written by a newer aceuq. Read it with that version, or rebuild this one \
             from the same or a newer source (`make` for the CLI, `make plugin` for the LAMMPS \
             plugin, `make python` for the Python module)"
        )
    } else {
        format!("{what}: {m}")
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> ContainerError {
    ContainerError::Invalid {
        path: path.display().to_string(),
        message: msg.into(),
    }
}

/// Encode a model into a container.
pub fn to_container(model: &Model) -> Container {
    let ns = model.nspecies();
    let mut c = Container::default();
    let mut pairs = Vec::new();
    for s in 0..ns {
        for z in 0..ns {
            let r = &model.radial[s * ns + z];
            let k = &model.core[s * ns + z];
            pairs.push(PairMeta {
                centre: model.species[s].clone(),
                neighbour: model.species[z].clone(),
                cutoff: r.rc,
                radial_inner: r.r0,
                nmax: r.nmax,
                core_z: [k.z1, k.z2],
                core_r_in: k.r_in,
                core_r_out: k.r_out,
            });
        }
    }
    let species = (0..ns)
        .map(|s| {
            let b = &model.bases[s];
            let maxo = (0..b.len()).map(|f| b.order(f)).max().unwrap_or(0);
            SpeciesMeta {
                name: model.species[s].clone(),
                e0: model.e0[s],
                functions: b.len(),
                functions_by_order: (1..=maxo)
                    .map(|o| (0..b.len()).filter(|&f| b.order(f) == o).count())
                    .collect(),
                monomials: b.n_monomials(),
                nmax_per_l: b.layout.nmax_l.clone(),
            }
        })
        .collect();
    let meta = ModelMeta {
        aceuq_version: env!("CARGO_PKG_VERSION").to_string(),
        units: "metal (Å, eV, eV/Å)".into(),
        species,
        basis: model.basis_config.clone(),
        pairs,
        fit: model.fit_info.clone(),
    };
    c.meta = toml::Table::try_from(meta).expect("model metadata serializes");
    for s in 0..ns {
        let b = &model.bases[s];
        let p = format!("basis.{s}.");
        c.put(
            &format!("{p}mono_ptr"),
            vec![b.mono_ptr.len()],
            Array::U32(b.mono_ptr.clone()),
        );
        c.put(
            &format!("{p}mono_idx"),
            vec![b.mono_idx.len()],
            Array::U32(b.mono_idx.clone()),
        );
        c.put(
            &format!("{p}func_ptr"),
            vec![b.func_ptr.len()],
            Array::U32(b.func_ptr.clone()),
        );
        c.put(
            &format!("{p}func_mono"),
            vec![b.func_mono.len()],
            Array::U32(b.func_mono.clone()),
        );
        c.put(
            &format!("{p}func_coef"),
            vec![b.func_coef.len()],
            Array::F64(b.func_coef.clone()),
        );
        c.put(
            &format!("{p}label_ptr"),
            vec![b.label_ptr.len()],
            Array::U32(b.label_ptr.clone()),
        );
        let labels: Vec<u32> = b
            .labels
            .iter()
            .flat_map(|l| [l.z as u32, l.n as u32, l.l as u32])
            .collect();
        c.put(
            &format!("{p}labels"),
            vec![b.labels.len(), 3],
            Array::U32(labels),
        );
        c.put(
            &format!("coef.{s}"),
            vec![model.coefs[s].len()],
            Array::F64(model.coefs[s].clone()),
        );
    }
    c
}

/// Check compressed-row pointers: start at 0, non-decreasing, end at `len`.
fn check_ptr(path: &Path, name: &str, ptr: &[u32], len: usize) -> Result<(), ContainerError> {
    if ptr.first() != Some(&0)
        || ptr.windows(2).any(|w| w[0] > w[1])
        || *ptr.last().unwrap_or(&0) as usize != len
    {
        return Err(bad(
            path,
            format!("array '{name}' is inconsistent (file corrupt or edited)"),
        ));
    }
    Ok(())
}

/// Decode a model from a container read from `path`.
pub fn from_container(path: &Path, c: &Container) -> Result<Model, ContainerError> {
    // Uncertainty, calibration and halting-rule sections belong to their own modules.
    let mut core_meta = c.meta.clone();
    core_meta.remove("uq");
    core_meta.remove("calibration");
    core_meta.remove("halt_rule");
    let meta: ModelMeta = core_meta
        .try_into()
        .map_err(|e: toml::de::Error| bad(path, meta_message("metadata", &e)))?;
    let ns = meta.species.len();
    if ns == 0 {
        return Err(bad(path, "metadata lists no species"));
    }
    if meta.pairs.len() != ns * ns {
        return Err(bad(
            path,
            format!("metadata lists {} pairs for {ns} species", meta.pairs.len()),
        ));
    }
    let names: Vec<String> = meta.species.iter().map(|s| s.name.clone()).collect();
    let mut radial = Vec::with_capacity(ns * ns);
    let mut core = Vec::with_capacity(ns * ns);
    for (k, p) in meta.pairs.iter().enumerate() {
        let (s, z) = (k / ns, k % ns);
        if p.centre != names[s] || p.neighbour != names[z] {
            return Err(bad(
                path,
                format!(
                    "pair {} is {}-{}, expected {}-{}",
                    k + 1,
                    p.centre,
                    p.neighbour,
                    names[s],
                    names[z]
                ),
            ));
        }
        if !(p.cutoff.is_finite()
            && p.cutoff > 0.0
            && p.radial_inner >= 0.0
            && p.radial_inner < p.cutoff)
        {
            return Err(bad(
                path,
                format!(
                    "pair {}-{}: cutoff/radial_inner out of range",
                    p.centre, p.neighbour
                ),
            ));
        }
        if !(p.core_r_in.is_finite() && p.core_r_out.is_finite() && p.core_r_in <= p.core_r_out) {
            return Err(bad(
                path,
                format!("pair {}-{}: core range out of order", p.centre, p.neighbour),
            ));
        }
        radial.push(RadialBasis {
            rc: p.cutoff,
            r0: p.radial_inner,
            nmax: p.nmax,
        });
        core.push(CorePair {
            z1: p.core_z[0],
            z2: p.core_z[1],
            r_in: p.core_r_in,
            r_out: p.core_r_out,
        });
    }
    let mut bases = Vec::with_capacity(ns);
    let mut coefs = Vec::with_capacity(ns);
    for (s, sm) in meta.species.iter().enumerate() {
        let p = format!("basis.{s}.");
        if sm.nmax_per_l.is_empty()
            || sm.nmax_per_l.len() > 9
            || sm.nmax_per_l.iter().any(|&n| n > 64)
        {
            return Err(bad(path, format!("species {}: bad nmax_per_l", sm.name)));
        }
        let layout = ALayout::new(ns, sm.nmax_per_l.clone());
        if radial[s * ns..(s + 1) * ns]
            .iter()
            .any(|r| r.nmax < layout.nmax() || r.nmax > 64)
        {
            return Err(bad(
                path,
                format!("species {}: radial basis smaller than the layout", sm.name),
            ));
        }
        let mono_ptr = c.u32_any(path, &format!("{p}mono_ptr"))?;
        let mono_idx = c.u32_any(path, &format!("{p}mono_idx"))?;
        let func_ptr = c.u32_any(path, &format!("{p}func_ptr"))?;
        let func_mono = c.u32_any(path, &format!("{p}func_mono"))?;
        let func_coef = c.f64(path, &format!("{p}func_coef"), func_mono.len())?;
        let label_ptr = c.u32_any(path, &format!("{p}label_ptr"))?;
        let lab = c.u32_any(path, &format!("{p}labels"))?;
        check_ptr(path, &format!("{p}mono_ptr"), &mono_ptr, mono_idx.len())?;
        check_ptr(path, &format!("{p}func_ptr"), &func_ptr, func_mono.len())?;
        check_ptr(path, &format!("{p}label_ptr"), &label_ptr, lab.len() / 3)?;
        let nmono = mono_ptr.len() - 1;
        let nfunc = func_ptr.len() - 1;
        if label_ptr.len() != func_ptr.len() || lab.len() % 3 != 0 {
            return Err(bad(
                path,
                format!(
                    "species {}: label arrays do not match the functions",
                    sm.name
                ),
            ));
        }
        if mono_idx.iter().any(|&a| a as usize >= layout.len())
            || func_mono.iter().any(|&m| m as usize >= nmono)
            || mono_ptr.windows(2).any(|w| w[0] == w[1] || w[1] - w[0] > 8)
            || (0..nmono).any(|k| {
                mono_idx[mono_ptr[k] as usize..mono_ptr[k + 1] as usize]
                    .windows(2)
                    .any(|w| w[0] > w[1])
            })
        {
            return Err(bad(
                path,
                format!(
                    "species {}: basis tables are inconsistent (file corrupt or edited)",
                    sm.name
                ),
            ));
        }
        let labels: Vec<Label> = lab
            .chunks_exact(3)
            .map(|x| Label {
                z: x[0] as u16,
                n: x[1] as u16,
                l: x[2] as u16,
            })
            .collect();
        if labels.iter().any(|l| l.z as usize >= ns) || func_coef.iter().any(|v| !v.is_finite()) {
            return Err(bad(
                path,
                format!(
                    "species {}: basis labels or coefficients out of range",
                    sm.name
                ),
            ));
        }
        bases.push(SpeciesBasis {
            layout,
            mono_ptr,
            mono_idx,
            func_ptr,
            func_mono,
            func_coef,
            label_ptr,
            labels,
        });
        let cf = c.f64(path, &format!("coef.{s}"), nfunc)?;
        if cf.iter().any(|v| !v.is_finite()) {
            return Err(bad(
                path,
                format!("species {}: coefficients are not finite", sm.name),
            ));
        }
        coefs.push(cf);
    }
    let e0 = meta.species.iter().map(|s| s.e0).collect();
    Model::new(names, meta.basis, radial, core, bases, coefs, e0, meta.fit)
        .map_err(|e| bad(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Workspace;
    use crate::testing::{random_model, random_structure, small_cfg};

    /// A file with a top-level section this build does not know (as a newer aceuq may write):
    /// refused, with the likely cause and the way out.
    #[test]
    fn a_field_this_build_does_not_know_names_a_newer_writer() {
        let m = random_model(&["Al"], &small_cfg(), 3);
        let p = Path::new("t.aceuq");
        let mut c = to_container(&m);
        c.meta
            .insert("stopping_rule".into(), toml::Value::Integer(1));
        let c = Container::from_bytes(p, &c.to_bytes()).unwrap();
        let e = from_container(p, &c).unwrap_err().to_string();
        assert!(
            e.contains("unknown field `stopping_rule`")
                && e.contains("probably written by a newer aceuq")
                && e.contains("make plugin"),
            "{e}"
        );
        // Other metadata errors keep their own message only.
        let mut c = to_container(&m);
        c.meta.insert("units".into(), toml::Value::Integer(3));
        let c = Container::from_bytes(p, &c.to_bytes()).unwrap();
        let e = from_container(p, &c).unwrap_err().to_string();
        assert!(e.contains("metadata: ") && !e.contains("newer"), "{e}");
    }

    #[test]
    fn model_round_trips_exactly_and_rejects_edits() {
        let m = random_model(&["Al", "Mg"], &small_cfg(), 3);
        let p = Path::new("t.aceuq");
        let bytes = to_container(&m).to_bytes();
        let m2 = from_container(p, &Container::from_bytes(p, &bytes).unwrap()).unwrap();
        let s = random_structure(&["Al", "Mg"], 2, 1, true);
        let mut ws = Workspace::new(&m);
        let a = m.predict(&s, &mut ws).unwrap();
        let b = m2.predict(&s, &mut ws).unwrap();
        assert_eq!(a, b, "bit-identical predictions after a round trip");
        // A basis with a species limit keeps it (the functions and the stored setting).
        let cfg = crate::basis::BasisConfig {
            max_species: vec![0, 1, 1],
            ..small_cfg()
        };
        let ml = random_model(&["Al", "Mg"], &cfg, 4);
        assert!(ml.bases[0].len() < m.bases[0].len());
        let lb = to_container(&ml).to_bytes();
        let ml2 = from_container(p, &Container::from_bytes(p, &lb).unwrap()).unwrap();
        assert_eq!(ml2.basis_config.max_species, vec![0, 1, 1]);
        assert_eq!(ml2.bases[0].len(), ml.bases[0].len());
        assert_eq!(
            ml.predict(&s, &mut Workspace::new(&ml)).unwrap(),
            ml2.predict(&s, &mut Workspace::new(&ml2)).unwrap()
        );
        // A CRC-valid but inconsistent file (edited metadata) is refused with a message.
        let orig = format!("nmax_per_l = {:?}", m.bases[0].layout.nmax_l);
        let text =
            crate::io::container::tests::reseal(&crate::io::container::tests::replace_bytes(
                &bytes,
                orig.as_bytes(),
                b"nmax_per_l = [6, 6]",
            ));
        let err = from_container(p, &Container::from_bytes(p, &text).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inconsistent") || err.contains("out of range"),
            "{err}"
        );
    }

    /// A model file of format 1 (before the metadata checksum; committed in the fuzz corpus)
    /// still loads, and written again (format 2) gives the same predictions.
    #[test]
    fn format_1_model_files_still_load() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/model/li_plain.aceuq");
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.starts_with(b"ACEUQ-MODEL format=1\n"));
        let old = crate::Potential::load(&p).unwrap();
        let again = old.to_container().to_bytes();
        assert!(again.starts_with(b"ACEUQ-MODEL format=2\n"));
        let new = crate::Potential::from_container(&p, &Container::from_bytes(&p, &again).unwrap())
            .unwrap();
        let s = random_structure(&["Li"], 3, 2, true);
        let (a, b) = (
            old.model
                .predict(&s, &mut Workspace::new(&old.model))
                .unwrap(),
            new.model
                .predict(&s, &mut Workspace::new(&new.model))
                .unwrap(),
        );
        assert_eq!(a, b);
    }
}
