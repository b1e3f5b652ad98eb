//! PLACEHOLDER: replaced by the implementation of this estimator (see ../mod.rs for the contract).

use crate::io::container::{Container, ContainerError};
use crate::model::Model;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Settings (placeholder).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// Placeholder.
#[derive(Clone, Debug, Default)]
pub struct Ensemble {}

impl Ensemble {
    /// Store into a model file container.
    pub fn save(&self, _c: &mut Container) {}
    /// Load from a model file container, if present.
    pub fn load(
        _path: &Path,
        _c: &Container,
        _model: &Model,
    ) -> Result<Option<Self>, ContainerError> {
        Ok(None)
    }
}
