//! What a [`Transport`](crate::Transport) is opened with, and what was chosen.

use std::fmt;
use std::time::Duration;

/// How pulls move bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChoice {
    /// RMA reads when the provider offers FI_RMA, the message path otherwise
    /// (reported with a warning).
    Auto,
    /// RMA reads only: opening fails when the provider lacks FI_RMA.
    Rma,
    /// The message path even where RMA exists (for tests and comparisons).
    Messages,
}

/// The path a transport's pulls take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPath {
    /// `fi_read` from the producer's registered memory into the destination.
    Rma,
    /// The consumer asks, the producer sends tagged messages that land
    /// directly in the destination buffer.
    Messages,
}

impl fmt::Display for PullPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PullPath::Rma => "rma",
            PullPath::Messages => "messages",
        })
    }
}

/// Chunking of large pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline {
    /// Bytes per operation (capped at the provider's maximum message size).
    pub chunk_size: usize,
    /// Operations in flight at once (capped at the transmit queue's depth).
    pub depth: usize,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            chunk_size: 1 << 20,
            depth: 8,
        }
    }
}

/// Configuration of a [`Transport`](crate::Transport).
#[derive(Debug, Clone)]
pub struct Config {
    /// libfabric provider (`tcp;ofi_rxm`, `sockets`, `verbs;ofi_rxm`, `cxi`,
    /// `efa`...). `None`: the `FI_PROVIDER` variable's choice, else
    /// libfabric's first provider with the capabilities needed.
    pub provider: Option<String>,
    /// Local address (host name or IP) the endpoint binds to. `None`: the
    /// provider's default interface.
    pub node: Option<String>,
    /// RMA or messages.
    pub path: PathChoice,
    /// Chunking of pulls.
    pub pipeline: Pipeline,
    /// How long a pull or a reply may go without any completion before it
    /// fails with [`FabricError::Timeout`](crate::FabricError::Timeout).
    pub timeout: Duration,
    /// Bytes of destination registrations the cache keeps.
    pub cache_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            provider: None,
            node: None,
            path: PathChoice::Auto,
            pipeline: Pipeline::default(),
            timeout: Duration::from_secs(10),
            cache_bytes: 1 << 30,
        }
    }
}

/// Where the provider's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderSource {
    /// [`Config::provider`].
    Config,
    /// The `FI_PROVIDER` environment variable (libfabric applies it).
    Environment,
    /// Neither: libfabric's first provider with the capabilities needed.
    Default,
}

impl fmt::Display for ProviderSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderSource::Config => "configuration",
            ProviderSource::Environment => "FI_PROVIDER",
            ProviderSource::Default => "libfabric default",
        })
    }
}

/// What a transport runs on: shown by tools and logged when it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Provider name as libfabric reports it (`tcp;ofi_rxm`).
    pub provider: String,
    /// Where the name came from.
    pub source: ProviderSource,
    /// Fabric name (a subnet for tcp).
    pub fabric: String,
    /// Domain name (a NIC or interface).
    pub domain: String,
    /// How pulls move bytes.
    pub path: PullPath,
    /// Why the message path was taken, when it was.
    pub reason: Option<String>,
    /// The `FI_MR_*` modes the provider requires, by name.
    pub mr_mode: Vec<&'static str>,
    /// Largest transfer of one operation.
    pub max_msg_size: usize,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "provider {} (from {}), fabric {}, domain {}, path {}",
            self.provider, self.source, self.fabric, self.domain, self.path
        )?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        write!(f, ", mr modes [{}]", self.mr_mode.join(","))
    }
}
