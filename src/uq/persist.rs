//! Small helpers shared by the estimators' `save`/`load`: the `[uq.<method>]` metadata table,
//! validated array reads that name the array at fault, and the check that stored species are
//! the model's.

use crate::io::container::{Array, Container, ContainerError};
use crate::model::Model;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// An error about a model file, naming the file.
pub(crate) fn bad(path: &Path, message: impl Into<String>) -> ContainerError {
    ContainerError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Store `value` as `c.meta["uq"][method]`, creating the `uq` table and keeping other entries.
pub(crate) fn put_meta<T: Serialize>(c: &mut Container, method: &str, value: &T) {
    let v = toml::Value::try_from(value).expect("uq metadata serializes to TOML");
    let uq = c
        .meta
        .entry("uq")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    if !uq.is_table() {
        *uq = toml::Value::Table(Default::default());
    }
    if let toml::Value::Table(t) = uq {
        t.insert(method.to_string(), v);
    }
}

/// Read `c.meta["uq"][method]`, `None` if the method is absent.
pub(crate) fn get_meta<T: DeserializeOwned>(
    path: &Path,
    c: &Container,
    method: &str,
) -> Result<Option<T>, ContainerError> {
    let Some(uq) = c.meta.get("uq") else {
        return Ok(None);
    };
    let Some(t) = uq.as_table() else {
        return Err(bad(path, "metadata 'uq' is not a table"));
    };
    let Some(v) = t.get(method) else {
        return Ok(None);
    };
    v.clone()
        .try_into()
        .map(Some)
        .map_err(|e: toml::de::Error| {
            bad(
                path,
                crate::io::modelfile::meta_message(&format!("metadata [uq.{method}]"), &e),
            )
        })
}

/// Read `c.meta["uq"][method]` as the active sets (`gamma`, `gamma_local`) do. Unlike
/// [`get_meta`]: `None` also when `uq` is not a table, and a metadata error reads
/// `bad [uq.<method>] metadata: …` (kept apart so that what loads, and every message, stays as
/// it was).
pub(crate) fn get_meta_lenient<T: DeserializeOwned>(
    path: &Path,
    c: &Container,
    method: &str,
) -> Result<Option<T>, ContainerError> {
    let Some(v) = c.meta.get("uq").and_then(|u| u.get(method)) else {
        return Ok(None);
    };
    v.clone()
        .try_into()
        .map(Some)
        .map_err(|e: toml::de::Error| {
            bad(
                path,
                crate::io::modelfile::meta_message(&format!("bad [uq.{method}] metadata"), &e),
            )
        })
}

/// An error unless `species`, as stored in `[uq.<method>]`, are the model's species in order.
pub(crate) fn check_species(
    path: &Path,
    method: &str,
    species: &[String],
    model: &Model,
) -> Result<(), ContainerError> {
    if species != model.species.as_slice() {
        return Err(bad(
            path,
            format!(
                "[uq.{method}] is for species [{}] but the model has [{}] (file edited?)",
                species.join(", "),
                model.species.join(", ")
            ),
        ));
    }
    Ok(())
}

/// An error unless the per-species entries of `[uq.<method>]` (their species names, in order)
/// are the model's species, naming the first entry that differs.
pub(crate) fn check_species_entries<'a>(
    path: &Path,
    method: &str,
    names: impl ExactSizeIterator<Item = &'a str>,
    model: &Model,
) -> Result<(), ContainerError> {
    let ns = model.nspecies();
    if names.len() != ns {
        return Err(bad(
            path,
            format!(
                "[uq.{method}] lists {} species, the model has {ns}",
                names.len()
            ),
        ));
    }
    for (s, name) in names.enumerate() {
        if name != model.species[s] {
            return Err(bad(
                path,
                format!(
                    "[uq.{method}] species {} is '{name}', the model's is '{}'",
                    s + 1,
                    model.species[s]
                ),
            ));
        }
    }
    Ok(())
}

/// Store an f64 array.
pub(crate) fn put_f64(c: &mut Container, name: &str, shape: Vec<usize>, v: &[f64]) {
    c.put(name, shape, Array::F64(v.to_vec()));
}

/// Read an f64 array of exactly `len` finite numbers.
pub(crate) fn f64_finite(
    path: &Path,
    c: &Container,
    name: &str,
    len: usize,
) -> Result<Vec<f64>, ContainerError> {
    let v = c.f64(path, name, len)?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(bad(
            path,
            format!("array '{name}': entry {i} is not finite (file corrupt or edited)"),
        ));
    }
    Ok(v)
}

/// Read an f64 array of exactly `len` finite numbers that also satisfy `ok` (described by
/// `what`, e.g. "positive").
pub(crate) fn f64_checked(
    path: &Path,
    c: &Container,
    name: &str,
    len: usize,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<Vec<f64>, ContainerError> {
    let v = f64_finite(path, c, name, len)?;
    if let Some(i) = v.iter().position(|&x| !ok(x)) {
        return Err(bad(
            path,
            format!(
                "array '{name}': entry {i} = {} is not {what} (file corrupt or edited)",
                v[i]
            ),
        ));
    }
    Ok(v)
}

/// `a * b` for array sizes read from metadata, with an error instead of an overflow.
pub(crate) fn size(path: &Path, what: &str, a: usize, b: usize) -> Result<usize, ContainerError> {
    a.checked_mul(b).ok_or_else(|| {
        bad(
            path,
            format!("{what}: size {a} x {b} is not representable (file corrupt or edited)"),
        )
    })
}
