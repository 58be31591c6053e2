//! The in-transit analyses as consumers of a CDO pool on [`cdo::app`],
//! whatever the deployment: the pool in this process (the default,
//! `--transport cdo`) or in a pool manager (`--pool-manager`), the way
//! Maestro runs components around `mstro_pm`. The producer
//! ([`TransitOutlet`]) and the consumers ([`consumer`]: statistics,
//! renderers, checkpoint archiver) are the same code in both; what
//! `--pool-manager` changes is only where the pool lives and how the
//! consumers start ([`launch`]): threads of this process on its
//! [`app::Pool`](cdo::app::Pool), or processes (this binary again, with the
//! hidden `--consumer` flag, started through `--consumer-agent` commands
//! where given) that join the manager with
//! [`app::Pool::from_env`](cdo::app::Pool::from_env).
//!
//! Names, all under `hydro/`, by record sequence number `seq` (0, 1, ...
//! in output order):
//!
//! - `hydro/output/<seq>/<field>`: one `f64` field of the record (`rho`,
//!   `rhou`, `rhov`, `E`), written in place into the pool's memory and
//!   viewed by the consumers without copying;
//! - `hydro/output/<seq>`: the record's index object, offered after its
//!   fields; its attributes say which step it is, or that the stream has
//!   ended ([`attributes::END`]);
//! - `hydro/done/<seq>/<role>`: offered by the consumer (`stats` or
//!   `render`) that finished with record `seq`, its views dropped;
//! - `hydro/ready/<role>/<member>`: offered by each consumer once it has
//!   joined its consumer group;
//! - `hydro/checkpoint/<step>` (with `--checkpoint-every`): a checkpoint
//!   CDO (bytes in the [checkpoint format](crate::checkpoint), `checkpoint`
//!   priority, the record's attributes), written in place after the record
//!   of its step.
//!
//! Every consumer group sees every record; within a group each record goes
//! to exactly one member. The statistics consumer is a group of one
//! ([`STATS_GROUP`]); the renderers form [`RENDER_GROUP`], where the pool
//! gives each index object ([`RECORD_SELECTOR`]) to the least loaded
//! member, and a record held by a member that leaves or dies to another.
//! The member demands the record's fields by name, zero-copy. Offers made
//! while a group has no member are not kept for it, so the producer waits
//! for every consumer's ready object before its first offer. With
//! `--no-analyses` there are no statistics and render consumers.
//!
//! Checkpoints: the archiver, started only when checkpoints are on, is the
//! one member of [`CHECKPOINT_GROUP`] ([`CHECKPOINT_SELECTOR`]): a
//! [`cdo::app::Archiver`] that stores each checkpoint in the archive
//! directory (`--archive`), then marks it done. A group record holds the
//! producer's withdrawal of it until then, so the producer keeps at most
//! [`CHECKPOINTS_OUT`] checkpoints out by withdrawing the oldest before
//! offering another. At the end it withdraws the rest, then tells the
//! archiver to leave (a flag for a thread, the end of its standard input
//! for a process).
//!
//! Back-pressure: the producer keeps at most `--ring` records out. Before
//! offering more it demands the oldest record's `done` objects (waiting for
//! the consumers, never dropping a record) and withdraws its objects. It
//! requires every `done` object it will demand, so a consumer can only
//! leave once its acknowledgements were seen; a consumer withdraws its
//! `done` objects `--ring` records behind the newest it has seen, which
//! the producer has read by then, so the pool holds a bounded number.
//!
//! End of stream: the producer offers one end marker per renderer, one at
//! a time, each after the previous was acknowledged. A member that got its
//! marker leaves its group before acknowledging it, so the next marker goes
//! to another member; the first marker also reaches the statistics
//! consumer. Every wait is bounded (`--consumer-timeout`), and a consumer
//! that fails fails the producer at its next wait (even when its group gave
//! its records to another member).

pub mod attributes;
pub mod consumer;
pub mod launch;
pub mod producer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisOptions;
use crate::cli::ConsumerRole;
use crate::outlet::OutletError;
use crate::state::FIELD_NAMES;

pub use consumer::run_consumer;
pub use producer::TransitOutlet;

/// The index object of record `seq`.
pub fn index_name(seq: u64) -> String {
    format!("hydro/output/{seq}")
}

/// The object of field `var` of record `seq`.
pub fn field_name(seq: u64, var: usize) -> String {
    format!("hydro/output/{seq}/{}", FIELD_NAMES[var])
}

/// The acknowledgement `role` offers once done with record `seq`.
pub fn done_name(seq: u64, role: ConsumerRole) -> String {
    format!("hydro/done/{seq}/{}", role_name(role))
}

/// The ready object of consumer `member` of `role`.
pub fn ready_name(role: ConsumerRole, member: usize) -> String {
    format!("hydro/ready/{}/{member}", role_name(role))
}

/// The name of a checkpoint CDO before its step.
const CHECKPOINT_PREFIX: &str = "hydro/checkpoint/";

/// The checkpoint CDO of `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{step}")
}

/// The step of the checkpoint CDO `name` (see [`checkpoint_name`]).
pub fn checkpoint_step(name: &str) -> Option<u64> {
    name.strip_prefix(CHECKPOINT_PREFIX)?.parse().ok()
}

/// The sequence number of the record whose index object is `name`.
pub fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix("hydro/output/")?.parse().ok()
}

/// The role's name in object names and messages.
pub fn role_name(role: ConsumerRole) -> &'static str {
    match role {
        ConsumerRole::Stats => "stats",
        ConsumerRole::Render => "render",
        ConsumerRole::Archive => "archive",
    }
}

/// The most checkpoints the producer has out at once (offered, not yet
/// withdrawn).
pub const CHECKPOINTS_OUT: usize = 2;

/// The consumer group of the statistics consumer.
pub const STATS_GROUP: &str = "hydro-stats";
/// The consumer group of the renderers.
pub const RENDER_GROUP: &str = "hydro-render";
/// The consumer group of the checkpoint archiver.
pub const CHECKPOINT_GROUP: &str = "hydro-checkpoints";
/// What the statistics and render groups receive: the records' index
/// objects.
pub const RECORD_SELECTOR: &str = "name ~ '^hydro/output/[0-9]+$'";
/// What the checkpoint archiver receives.
pub const CHECKPOINT_SELECTOR: &str = "priority == 'checkpoint'";

/// The consumer group of `role`.
pub fn group_of(role: ConsumerRole) -> &'static str {
    match role {
        ConsumerRole::Stats => STATS_GROUP,
        ConsumerRole::Render => RENDER_GROUP,
        ConsumerRole::Archive => CHECKPOINT_GROUP,
    }
}

/// The consumers of a run with `options`, as `(role, member)`: with the
/// analyses the statistics consumer, then the renderers (at least one);
/// then with an archive the archiver.
pub fn members(options: &AnalysisOptions) -> impl Iterator<Item = (ConsumerRole, usize)> {
    let renderers = if options.analyses {
        options.renderers.max(1)
    } else {
        0
    };
    let stats = options.analyses.then_some((ConsumerRole::Stats, 0));
    let archive = options.archive.as_ref().map(|_| (ConsumerRole::Archive, 0));
    stats
        .into_iter()
        .chain((0..renderers).map(|member| (ConsumerRole::Render, member)))
        .chain(archive)
}

/// What a consumer did (sent by a consumer process to the producer as one
/// JSON line on its standard output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerReport {
    /// Steps of the records processed (of the checkpoints archived, for
    /// the archiver), in order.
    pub steps: Vec<u64>,
    /// Wall time spent working on them, in seconds.
    pub busy_seconds: f64,
}

/// The user-attribute schema of the objects (namespace `hydro`), which an
/// in-process pool checks at once (a pool manager takes them as they come).
pub const SCHEMA: &str = "\
namespace: hydro
attributes:
  step: uint
  time: float
  dt: float
  producer: uint
  nx: uint
  ny: uint
  dx: float
  field: str
  units: str
  end: bool
";

/// The pool of a run in this process, over `mamba`, with the `hydro`
/// schema, placing the data written to it by `policy`.
///
/// # Errors
/// [`OutletError::Cdo`] when the schema does not load or `policy` finds no
/// space.
pub fn in_process_pool(
    mamba: Arc<mamba::Mamba>,
    policy: &mamba::Policy,
) -> Result<cdo::app::Pool, OutletError> {
    let mut schema = cdo::Schema::default();
    schema.add_yaml(SCHEMA, "hydro")?;
    let transport = Box::new(cdo::LocalTransport::new(Arc::clone(&mamba)));
    let mut pool = cdo::Pool::with_parts(mamba, cdo::PoolConfig::default(), schema, transport);
    pool.set_default_policy(policy)?;
    Ok(cdo::app::Pool::local(Arc::new(pool)))
}

/// The pool manager of a `--pool-manager` run, joined as the solver: the
/// one `CDO_POOL_SOCKET` names, else one started here (with
/// `CDO_FAULT_POLICY` and `CDO_ACK_TIMEOUT_MS` applied, as to `cdo-pm`),
/// which stops when the pool is dropped.
///
/// # Errors
/// [`OutletError::Manager`] when the manager cannot be configured or
/// started; [`OutletError::Cdo`] when it cannot be joined.
pub fn pool_manager() -> Result<cdo::app::Pool, OutletError> {
    const SOLVER: &str = "hydro-solver";
    if cdo::ipc::endpoint::Endpoint::from_env().is_some() {
        return Ok(cdo::app::Pool::from_env(SOLVER)?);
    }
    let config = cdo::ipc::manager::ManagerConfig::from_env().map_err(|e| {
        OutletError::Manager(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    cdo::app::Pool::start_manager(config, SOLVER).map_err(|e| match e {
        cdo::Error::ManagerStart(e) => OutletError::Manager(e),
        other => OutletError::Cdo(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_members() {
        assert_eq!(index_name(3), "hydro/output/3");
        assert_eq!(field_name(3, 3), "hydro/output/3/E");
        assert_eq!(done_name(4, ConsumerRole::Render), "hydro/done/4/render");
        assert_eq!(ready_name(ConsumerRole::Render, 1), "hydro/ready/render/1");
        assert_eq!(seq_of(&index_name(12)), Some(12));
        assert_eq!(seq_of(&field_name(12, 0)), None);
        assert_eq!(seq_of("other/12"), None);
        assert_eq!(checkpoint_step(&checkpoint_name(9)), Some(9));
        assert_eq!(checkpoint_step("hydro/checkpoint/x"), None);
        assert_eq!(checkpoint_step(&index_name(9)), None);
    }

    #[test]
    fn the_consumers_follow_the_options() {
        let mut options = AnalysisOptions {
            dir: "out".into(),
            renderers: 2,
            vtk: false,
            analyses: true,
            archive: None,
            resume_after: None,
        };
        let all: Vec<_> = members(&options).collect();
        assert_eq!(
            all,
            [
                (ConsumerRole::Stats, 0),
                (ConsumerRole::Render, 0),
                (ConsumerRole::Render, 1)
            ]
        );
        options.archive = Some("archive".into());
        assert_eq!(members(&options).last(), Some((ConsumerRole::Archive, 0)));
        assert_eq!(members(&options).count(), 4);
        options.analyses = false;
        let all: Vec<_> = members(&options).collect();
        assert_eq!(all, [(ConsumerRole::Archive, 0)], "the archiver only");
        options.analyses = true;
        options.renderers = 0;
        assert_eq!(members(&options).count(), 3, "at least one renderer");
    }

    #[test]
    fn the_selectors_pick_index_objects_and_checkpoints() {
        let records = cdo::Selector::parse(RECORD_SELECTOR).unwrap();
        let checkpoints = cdo::Selector::parse(CHECKPOINT_SELECTOR).unwrap();
        let plain = cdo::FlatAttributes::new();
        let checkpoint =
            cdo::FlatAttributes::from([("priority".to_string(), cdo::Value::from("checkpoint"))]);
        let picks = |selector: &cdo::Selector, name: &str, attrs| {
            selector.matches(&cdo::FlatView { name, attrs })
        };
        assert!(picks(&records, &index_name(7), &plain));
        assert!(!picks(&records, &field_name(7, 1), &plain));
        assert!(!picks(&records, &done_name(7, ConsumerRole::Stats), &plain));
        assert!(!picks(
            &records,
            &ready_name(ConsumerRole::Stats, 0),
            &plain
        ));
        assert!(!picks(&records, &checkpoint_name(7), &checkpoint));
        assert!(picks(&checkpoints, &checkpoint_name(7), &checkpoint));
        assert!(!picks(&checkpoints, &index_name(7), &plain));
    }
}
