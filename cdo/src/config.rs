//! Pool configuration.
//!
//! ```yaml
//! duplicates: version        # or reject
//! unknown_attributes: drop   # or reject
//! schemas: [app.yaml]        # relative to the configuration file
//! ```

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What offering a name that is already on offer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateOffers {
    /// Fails with [`Error::AlreadyOffered`].
    #[default]
    Reject,
    /// Creates a new version; consumers get the newest one on offer.
    Version,
}

/// What setting an attribute that no schema knows does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownAttributes {
    /// Fails with [`Error::UnknownAttribute`].
    #[default]
    Reject,
    /// Ignores the attribute (the setter says it was dropped).
    Drop,
}

/// How a [`Pool`](crate::Pool) behaves.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Second offers of a name.
    pub duplicates: DuplicateOffers,
    /// Attributes no schema knows.
    pub unknown_attributes: UnknownAttributes,
    /// YAML schema files of user attributes.
    pub schemas: Vec<PathBuf>,
}

impl PoolConfig {
    /// Parses a YAML configuration; relative schema paths stay relative to
    /// the working directory.
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Reads a YAML configuration file; relative schema paths are taken
    /// relative to its directory.
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mut config = Self::from_yaml(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if let Some(dir) = path.parent() {
            for s in &mut config.schemas {
                if s.is_relative() {
                    *s = dir.join(&*s);
                }
            }
        }
        Ok(config)
    }
}
