//! Pool configuration.
//!
//! ```yaml
//! duplicates: version        # or reject
//! unknown_attributes: drop   # or reject
//! schemas: [app.yaml]        # relative to the configuration file
//! policy: best-effort        # or fail-fast
//! ack_timeout_ms: 2000       # how long acknowledged events hold an operation
//! keep_group_records: true   # groups keep their records for a later member
//! producer_exit: keep        # or withdraw: a dropped producer's offers
//! ```
//!
//! The semantics a pool manager takes from its environment
//! ([`POLICY_ENV`], [`ACK_TIMEOUT_ENV`], [`KEEP_GROUP_RECORDS_ENV`],
//! [`PRODUCER_EXIT_ENV`]) an
//! in-process pool takes from the same variables
//! ([`PoolConfig::with_env`]), so that moving an application between the
//! two deployments changes neither its code nor its environment.

use crate::engine::{FaultPolicy, ProducerExit, DEFAULT_ACK_TIMEOUT};
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

/// What setting a user attribute that the pool's schema does not know does
/// (a pool without a schema checks none: see [`crate::schema`]).
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
    /// Whether a consumer group whose last member leaves keeps the records
    /// it held (queued or not finished) for a member that joins later
    /// (offers made while it has no member are not recorded). Off by
    /// default: the records are released, so their producers can withdraw
    /// them. On, a member that joins and leaves holds those objects until
    /// another member takes them.
    pub keep_group_records: bool,
    /// What happens to the offers of a producer that goes: withdrawn with
    /// it (the default), or kept for the rest of their minimum lifetime
    /// ([`ProducerExit::Keep`]). In process a producer goes when its
    /// application's [`app::Pool`](crate::app::Pool) is dropped; through a
    /// pool manager, when its client leaves or dies.
    pub producer_exit: ProducerExit,
}

/// Environment variable naming the [`FaultPolicy`] (`fail-fast`,
/// `best-effort`), in either deployment.
pub const POLICY_ENV: &str = "CDO_FAULT_POLICY";
/// Environment variable giving the acknowledgement timeout in
/// milliseconds, in either deployment.
pub const ACK_TIMEOUT_ENV: &str = "CDO_ACK_TIMEOUT_MS";
/// Environment variable: `1` or `true` makes consumer groups keep their
/// records when their last member goes
/// ([`PoolConfig::keep_group_records`]), in either deployment.
pub const KEEP_GROUP_RECORDS_ENV: &str = "CDO_KEEP_GROUP_RECORDS";
/// Environment variable: what happens to the offers of a producer that
/// goes (`withdraw`, the default, or `keep`; see [`ProducerExit`]), in
/// either deployment.
pub const PRODUCER_EXIT_ENV: &str = "CDO_PRODUCER_EXIT";

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            duplicates: DuplicateOffers::default(),
            unknown_attributes: UnknownAttributes::default(),
            schemas: Vec::new(),
            policy: FaultPolicy::default(),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            keep_group_records: false,
            producer_exit: ProducerExit::default(),
        }
    }
}

/// A duration given in milliseconds.
fn millis<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

impl PoolConfig {
    /// This configuration with [`POLICY_ENV`], [`ACK_TIMEOUT_ENV`],
    /// [`KEEP_GROUP_RECORDS_ENV`] and [`PRODUCER_EXIT_ENV`] applied where
    /// they are set: the variables
    /// a pool manager reads for the same settings.
    ///
    /// ```
    /// let config = cdo::PoolConfig::default().with_env()?;
    /// # Ok::<(), cdo::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable whose value is malformed.
    pub fn with_env(self) -> Result<Self> {
        self.with_vars(|key| std::env::var(key).ok())
            .map_err(Error::Config)
    }

    /// [`PoolConfig::with_env`] over the variables `var` gives.
    pub(crate) fn with_vars(
        mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        if let Some(v) = var(POLICY_ENV) {
            self.policy = v.parse().map_err(|e| format!("{POLICY_ENV}: {e}"))?;
        }
        if let Some(v) = var(ACK_TIMEOUT_ENV) {
            let ms: u64 = v
                .parse()
                .map_err(|e| format!("{ACK_TIMEOUT_ENV}={v:?}: {e}"))?;
            self.ack_timeout = Duration::from_millis(ms);
        }
        if let Some(v) = var(KEEP_GROUP_RECORDS_ENV) {
            self.keep_group_records = match v.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(format!(
                        "{KEEP_GROUP_RECORDS_ENV}={v:?}: expected 0, 1, true or false"
                    ))
                }
            };
        }
        if let Some(v) = var(PRODUCER_EXIT_ENV) {
            self.producer_exit = v.parse().map_err(|e| format!("{PRODUCER_EXIT_ENV}: {e}"))?;
        }
        Ok(self)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| {
            set.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_manager_s_variables_set_the_same_semantics_in_process() {
        let config = PoolConfig::default()
            .with_vars(vars(&[
                (POLICY_ENV, "best-effort"),
                (ACK_TIMEOUT_ENV, "250"),
                (KEEP_GROUP_RECORDS_ENV, "true"),
                (PRODUCER_EXIT_ENV, "keep"),
            ]))
            .unwrap();
        assert_eq!(config.policy, FaultPolicy::BestEffort);
        assert_eq!(config.ack_timeout, Duration::from_millis(250));
        assert!(config.keep_group_records);
        assert_eq!(config.producer_exit, ProducerExit::Keep);

        let unset = PoolConfig::default().with_vars(vars(&[])).unwrap();
        assert_eq!(unset.policy, FaultPolicy::FailFast);
        assert_eq!(unset.ack_timeout, DEFAULT_ACK_TIMEOUT);
        assert!(!unset.keep_group_records);
        assert_eq!(unset.producer_exit, ProducerExit::Withdraw);
    }

    #[test]
    fn a_malformed_variable_is_named_in_the_error() {
        for (key, value) in [
            (POLICY_ENV, "sometimes"),
            (ACK_TIMEOUT_ENV, "-1"),
            (KEEP_GROUP_RECORDS_ENV, "yes"),
            (PRODUCER_EXIT_ENV, "linger"),
        ] {
            let e = PoolConfig::default()
                .with_vars(vars(&[(key, value)]))
                .unwrap_err();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn keep_group_records_and_producer_exit_are_read_from_yaml() {
        let yaml = "keep_group_records: true\nproducer_exit: keep\n";
        let config = PoolConfig::from_yaml(yaml).unwrap();
        assert!(config.keep_group_records);
        assert_eq!(config.producer_exit, ProducerExit::Keep);
    }
}
