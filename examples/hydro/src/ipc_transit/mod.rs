//! The cross-process transport (`--pool-manager`): the analyses run as
//! separate processes that meet the solver through a CDO pool manager
//! ([`cdo::ipc`]), the way Maestro runs components around `mstro_pm`.
//!
//! Names, all under `hydro/`, by record sequence number `seq` (0, 1, ...
//! in output order):
//!
//! - `hydro/output/<seq>/<field>`: one `f64` field of the record (`rho`,
//!   `rhou`, `rhov`, `E`), written in place into the producer's shared
//!   memory and viewed by the consumers without copying;
//! - `hydro/output/<seq>`: the record's index object, offered after its
//!   fields; its attributes say which step it is, or that the stream has
//!   ended ([`attributes::END`]);
//! - `hydro/done/<seq>/<role>`: offered by the consumer (`stats` or
//!   `render`) that finished with record `seq`, its views dropped;
//! - `hydro/ready/<role>/<member>`: offered by each consumer process once
//!   it has joined its consumer group;
//! - `hydro/checkpoint/<step>` (with `--checkpoint-every`): a checkpoint
//!   CDO as the in-process transports make it (bytes in the
//!   [checkpoint format](crate::checkpoint), `checkpoint` priority, the
//!   [archive](crate::checkpoint_archive)'s attributes), written in place
//!   into the producer's shared memory after the record of its step.
//!
//! Every consumer group sees every record; within a group each record goes
//! to exactly one member. The statistics process is a group of one
//! ([`STATS_GROUP`]); the renderers form [`RENDER_GROUP`], where the pool
//! manager gives each index object ([`RECORD_SELECTOR`]) to the least
//! loaded member, and a record held by a member that dies to another. The
//! member demands the record's fields by name, zero-copy. Offers made
//! while a group has no member are not kept for it, so the producer waits
//! for every consumer's ready object before its first offer. With
//! `--no-analyses` there are no statistics and render processes.
//!
//! Checkpoints: the archive process, started only when checkpoints are on,
//! is the one member of [`CHECKPOINT_GROUP`] ([`CHECKPOINT_SELECTOR`]): a
//! [`cdo::ipc::components::ArchiverClient`] that stores each checkpoint
//! in the archive directory (`--archive`), then marks it done. A group
//! record holds the producer's withdrawal of it until then, so the
//! producer keeps at most [`CHECKPOINTS_OUT`] checkpoints out by
//! withdrawing the oldest before offering another, waiting for the answer
//! in slices and watching the consumer processes in between. At the end it
//! withdraws the rest the same way, then closes the archive process's
//! standard input, its signal to leave.
//!
//! Back-pressure: the producer keeps at most `--ring` records out. Before
//! offering more it demands the oldest record's `done` objects (waiting for
//! the consumers, never dropping a record) and withdraws its objects. It
//! requires every `done` object it will demand, so a consumer can only
//! leave once its acknowledgements were seen; a consumer withdraws its
//! `done` objects `--ring` records behind the newest it has seen, which
//! the producer has read by then, so the manager holds a bounded number.
//!
//! End of stream: the producer offers one end marker per renderer, one at
//! a time, each after the previous was acknowledged. A member that got its
//! marker leaves its group before acknowledging it, so the next marker goes
//! to another member; the first marker also reaches the statistics process.
//! Every wait is bounded, and a consumer process that exits with a failure
//! fails the producer at its next wait (even when its group gave its
//! records to another member).

pub mod archiver;
pub mod attributes;
pub mod consumer;
pub mod fetch;
pub mod processes;
pub mod producer;

use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisOptions;
use crate::cdo_transit::attributes::{CHECKPOINT_GROUP, CHECKPOINT_SELECTOR};
use crate::cli::ConsumerRole;
use crate::state::FIELD_NAMES;

pub use consumer::run_consumer;
pub use producer::IpcOutlet;

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

/// The ready object of consumer process `member` of `role`.
pub fn ready_name(role: ConsumerRole, member: usize) -> String {
    format!("hydro/ready/{}/{member}", role_name(role))
}

/// The sequence number of the record whose index object is `name`.
pub fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix("hydro/output/")?.parse().ok()
}

/// The consumer group of the statistics process.
pub const STATS_GROUP: &str = "hydro-stats";
/// The consumer group of the renderers.
pub const RENDER_GROUP: &str = "hydro-render";
/// What the consumer groups receive: the records' index objects.
pub const RECORD_SELECTOR: &str = "name ~ '^hydro/output/[0-9]+$'";

/// The consumer group of `role`.
pub fn group_of(role: ConsumerRole) -> &'static str {
    match role {
        ConsumerRole::Stats => STATS_GROUP,
        ConsumerRole::Render => RENDER_GROUP,
        ConsumerRole::Archive => CHECKPOINT_GROUP,
    }
}

/// The consumer processes of a run with `options`, as `(role, member)`:
/// with the analyses the statistics process, then the renderers (at least
/// one); then with an archive the archive process.
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

/// What a consumer process did, sent to the producer as one JSON line on
/// its standard output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerReport {
    /// Steps of the records processed (of the checkpoints archived, for
    /// the archive process), in order.
    pub steps: Vec<u64>,
    /// Wall time spent working on them, in seconds.
    pub busy_seconds: f64,
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
        assert_eq!(
            ready_name(ConsumerRole::Archive, 0),
            "hydro/ready/archive/0"
        );
    }

    #[test]
    fn the_processes_follow_the_options() {
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
        assert_eq!(
            all,
            [(ConsumerRole::Archive, 0)],
            "the archive process only"
        );
        options.analyses = true;
        options.renderers = 0;
        assert_eq!(members(&options).count(), 3, "at least one renderer");
    }

    #[test]
    fn the_selector_picks_index_objects_only() {
        let selector = cdo::Selector::parse(RECORD_SELECTOR).unwrap();
        let attrs = cdo::ipc::wire::Attributes::new();
        let picks = |name: &str| {
            selector.matches(&cdo::FlatView {
                name,
                attrs: &attrs,
            })
        };
        assert!(picks(&index_name(7)));
        assert!(!picks(&field_name(7, 1)));
        assert!(!picks(&done_name(7, ConsumerRole::Stats)));
        assert!(!picks(&ready_name(ConsumerRole::Stats, 0)));
        assert!(!picks(&crate::cdo_transit::attributes::checkpoint_name(7)));
    }

    #[test]
    fn the_archive_process_gets_the_checkpoints_only() {
        use crate::cdo_transit::attributes::{checkpoint_attributes, checkpoint_name};
        let selector = cdo::Selector::parse(CHECKPOINT_SELECTOR).unwrap();
        let meta = crate::record::RecordMeta {
            step: 6,
            time: 0.5,
            dt: 0.1,
            producer: 0,
            nx: 4,
            ny: 3,
            dx: 0.25,
        };
        let picks = |name: &str, attrs: &cdo::ipc::wire::Attributes| {
            selector.matches(&cdo::FlatView { name, attrs })
        };
        let checkpoint = checkpoint_attributes(&meta, 100).flatten();
        assert!(picks(&checkpoint_name(6), &checkpoint));
        assert!(!picks(
            &index_name(6),
            &attributes::record_attrs(&meta, None)
        ));
        let field = attributes::record_attrs(&meta, Some(0));
        assert!(!picks(&field_name(6, 0), &field));
        let ready = ready_name(ConsumerRole::Archive, 0);
        assert!(!picks(&ready, &Default::default()));
    }
}
