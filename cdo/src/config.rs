//! Pool configuration.
//!
//! ```yaml
//! duplicates: version        # or reject
//! unknown_attributes: drop   # or reject
//! schemas: [app.yaml]        # relative to the configuration file
//! policy: best-effort        # or fail-fast
//! ack_timeout_ms: 2000       # how long acknowledged events hold an operation
//! ```

use crate::engine::{FaultPolicy, DEFAULT_ACK_TIMEOUT};
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Second offers of a name.
    pub duplicates: DuplicateOffers,
    /// Attributes no schema knows.
    pub unknown_attributes: UnknownAttributes,
    /// YAML schema files of user attributes.
    pub schemas: Vec<PathBuf>,
    /// What an operation whose acknowledged events time out does: fail
    /// with [`Error::AckTimeout`] (having taken effect) or succeed.
    pub policy: FaultPolicy,
    /// How long an operation waits for its acknowledged subscribers
    /// (`ack_timeout_ms` in YAML; default
    /// [`DEFAULT_ACK_TIMEOUT`], as in a pool manager).
    #[serde(rename = "ack_timeout_ms", deserialize_with = "millis")]
    pub ack_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            duplicates: DuplicateOffers::default(),
            unknown_attributes: UnknownAttributes::default(),
            schemas: Vec::new(),
            policy: FaultPolicy::default(),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

/// A duration given in milliseconds.
fn millis<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
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
