//! `cdo-pm`: runs a CDO pool manager until SIGINT or SIGTERM.
//!
//! On start the manager prints the two `export` lines that let clients find
//! it (the token file's name rather than the token when it came from one); on a signal it disconnects every client and removes its socket
//! directory (and at start, those of managers that were killed). Logs go to
//! standard error (`RUST_LOG` filters them).
//!
//! The workflow token comes from `CDO_WORKFLOW_TOKEN` or from a private
//! file (`--token-file`, `CDO_WORKFLOW_TOKEN_FILE`), never from the command
//! line, where any user could read it.
//!
//! With `--federation-listen ADDR:PORT` (`CDO_FEDERATION_LISTEN`) the
//! manager also joins the managers of other nodes (`--federation-peers`,
//! `CDO_FEDERATION_PEERS`) as one pool; see `cdo::ipc::federation`. They
//! must share the workflow token. Nothing listens on the network without
//! that flag.

use std::path::PathBuf;
use std::time::Duration;

use cdo::ipc::components::log_to_stderr;
use cdo::ipc::endpoint::{read_token_file, TOKEN_ENV, TOKEN_FILE_ENV};
use cdo::ipc::federation::{self, FederationConfig};
use cdo::ipc::manager::{
    self, FaultPolicy, Limits, ManagerConfig, ProducerExit, ACK_TIMEOUT_ENV,
    KEEP_GROUP_RECORDS_ENV, LEASE_ENV, MAX_SEGMENT_ENV, POLICY_ENV, PRODUCER_EXIT_ENV,
};
use cdo::PoolConfig;
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

/// Runs a CDO pool manager.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Parent of the manager's private socket directory (default:
    /// `$XDG_RUNTIME_DIR` or the temporary directory).
    runtime_dir: Option<PathBuf>,
    /// File holding the workflow token clients must present (mode 0600);
    /// without it, `CDO_WORKFLOW_TOKEN`, or else a random token.
    #[arg(long, env = TOKEN_FILE_ENV)]
    token_file: Option<PathBuf>,
    /// Pool configuration, the YAML file an in-process pool reads
    /// (`duplicates`, `unknown_attributes`, `schemas`, `policy`,
    /// `ack_timeout_ms`, `keep_group_records`): user attributes of offers
    /// are checked against its schemas, second offers of a name refused or
    /// versioned. The options below (and their variables) override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `fail-fast` or `best-effort` (default: the configuration's, else
    /// `fail-fast`).
    #[arg(long, env = POLICY_ENV)]
    policy: Option<FaultPolicy>,
    /// How long an operation waits for acknowledged subscribers, in ms
    /// (default: the configuration's, else 10000).
    #[arg(long, env = ACK_TIMEOUT_ENV)]
    ack_timeout_ms: Option<u64>,
    /// How long a client's heartbeat may stop before it is dropped as
    /// dead, in ms.
    #[arg(long, env = LEASE_ENV, default_value_t = manager::DEFAULT_LEASE.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    lease_ms: u64,
    /// Consumer groups keep their records when their last member goes
    /// (for a member that joins later), instead of releasing them (also
    /// when the configuration says `keep_group_records: true`).
    #[arg(long, env = KEEP_GROUP_RECORDS_ENV)]
    keep_group_records: bool,
    /// What happens to the offers of a producer that leaves or dies:
    /// `withdraw` (with it), or `keep` (those with a minimum lifetime stay
    /// on offer until it ends) (default: the configuration's, else
    /// `withdraw`).
    #[arg(long, env = PRODUCER_EXIT_ENV)]
    producer_exit: Option<ProducerExit>,
    /// Largest shared segment an offer may bring, in bytes.
    #[arg(long, env = MAX_SEGMENT_ENV, default_value_t = manager::DEFAULT_MAX_SEGMENT)]
    max_segment_bytes: u64,
    /// Most open connections, joined or not.
    #[arg(long, env = "CDO_MAX_CONNECTIONS", value_parser = positive)]
    max_connections: Option<usize>,
    /// Most connections that have not joined yet (a new one beyond closes
    /// the oldest).
    #[arg(long, env = "CDO_MAX_PENDING", value_parser = positive)]
    max_pending: Option<usize>,
    /// Most segments held for one client.
    #[arg(long, env = "CDO_MAX_SEGMENTS", value_parser = positive)]
    max_segments: Option<usize>,
    /// Most objects one client offers at a time.
    #[arg(long, env = "CDO_MAX_OFFERS", value_parser = positive)]
    max_offers: Option<usize>,
    /// Most outstanding requires of one client.
    #[arg(long, env = "CDO_MAX_REQUIRES", value_parser = positive)]
    max_requires: Option<usize>,
    /// Most waiting demands of one client.
    #[arg(long, env = "CDO_MAX_DEMANDS", value_parser = positive)]
    max_demands: Option<usize>,
    /// Most operations of one client waiting for acknowledgements, and
    /// withdrawals waiting for requires or a lifetime.
    #[arg(long, env = "CDO_MAX_WAITERS", value_parser = positive)]
    max_waiters: Option<usize>,
    /// Most subscriptions of one client.
    #[arg(long, env = "CDO_MAX_SUBSCRIPTIONS", value_parser = positive)]
    max_subscriptions: Option<usize>,
    /// Bytes queued for a client above which its requests wait (events for
    /// it are dropped above four times as much).
    #[arg(long, env = "CDO_MAX_QUEUED_BYTES", value_parser = positive)]
    max_queued_bytes: Option<usize>,
    /// Address (`ip:port`, or `net/len:port`: this node's address in that
    /// subnet) to listen on for the pool managers of other nodes; without
    /// it, no federation and nothing listens.
    #[arg(long, env = federation::LISTEN_ENV)]
    federation_listen: Option<String>,
    /// Pool managers of other nodes to join, `host:port,...`, or from the
    /// launcher's job: `slurm`, `pmix`, `dir:PATH` or `launcher`.
    #[arg(long, env = federation::PEERS_ENV, default_value = "")]
    federation_peers: String,
    /// How long a read from another node may go without progress before
    /// the demand fails, in ms.
    #[arg(long, env = federation::REMOTE_TIMEOUT_ENV,
          default_value_t = federation::DEFAULT_REMOTE_TIMEOUT.as_millis() as u64)]
    remote_timeout_ms: u64,
    /// Objects of at most this many bytes travel to other nodes inline with
    /// their offer; larger ones are read remotely.
    #[arg(long, env = federation::EAGER_MAX_ENV,
          default_value_t = federation::DEFAULT_EAGER_MAX)]
    federation_eager_max: usize,
    /// libfabric provider of the reads between nodes (`tcp`, `verbs;ofi_rxm`,
    /// `cxi`...); default: `FI_PROVIDER` or libfabric's choice.
    #[arg(long, env = federation::PROVIDER_ENV)]
    fabric_provider: Option<String>,
}

/// A positive number.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

impl Args {
    /// The pool's semantics: the configuration file's (or the defaults),
    /// with the options given on top.
    fn pool(&self) -> Result<PoolConfig, cdo::Error> {
        let mut pool = match &self.config {
            Some(path) => PoolConfig::from_file(path)?,
            None => PoolConfig::default(),
        };
        if let Some(policy) = self.policy {
            pool.policy = policy;
        }
        if let Some(exit) = self.producer_exit {
            pool.producer_exit = exit;
        }
        if let Some(ms) = self.ack_timeout_ms {
            pool.ack_timeout = Duration::from_millis(ms);
        }
        pool.keep_group_records |= self.keep_group_records;
        Ok(pool)
    }

    /// The limits given, the defaults for the others.
    fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            connections: self.max_connections.unwrap_or(d.connections),
            pending: self.max_pending.unwrap_or(d.pending),
            segments: self.max_segments.unwrap_or(d.segments),
            offers: self.max_offers.unwrap_or(d.offers),
            requires: self.max_requires.unwrap_or(d.requires),
            demands: self.max_demands.unwrap_or(d.demands),
            waiters: self.max_waiters.unwrap_or(d.waiters),
            subscriptions: self.max_subscriptions.unwrap_or(d.subscriptions),
            queued_bytes: self.max_queued_bytes.unwrap_or(d.queued_bytes),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    log_to_stderr();
    let args = Args::parse();
    let token = match &args.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => std::env::var(TOKEN_ENV).ok(),
    };
    let config = ManagerConfig {
        limits: args.limits(),
        pool: args.pool()?,
        runtime_dir: args.runtime_dir,
        token: token.clone(),
        lease: Duration::from_millis(args.lease_ms),
        max_segment_bytes: args.max_segment_bytes,
        ..ManagerConfig::default()
    };
    // Block the signals before any thread starts, so every thread inherits
    // the mask and only `wait` below receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    let federation = match &args.federation_listen {
        Some(listen) => {
            let mut f = FederationConfig::parse(listen, &args.federation_peers, token.as_deref())?;
            f.remote_timeout = Duration::from_millis(args.remote_timeout_ms);
            f.eager_max = args.federation_eager_max;
            f.fabric.provider = args.fabric_provider.clone();
            Some(f)
        }
        None if !args.federation_peers.is_empty() => {
            return Err("--federation-peers needs --federation-listen".into())
        }
        None => None,
    };
    let handle = manager::start(config)?;
    let federation = match federation {
        Some(f) => Some(federation::start(f, &handle)?),
        None => None,
    };
    for (key, value) in handle.endpoint().env() {
        match &args.token_file {
            // The token stays in its file; clients read the same file.
            Some(path) if key == TOKEN_ENV => {
                println!("export {TOKEN_FILE_ENV}={}", path.display())
            }
            _ => println!("export {key}={value}"),
        }
    }
    let signal = signals.wait()?;
    tracing::info!(?signal, "stopping");
    drop(federation);
    handle.shutdown();
    Ok(())
}
