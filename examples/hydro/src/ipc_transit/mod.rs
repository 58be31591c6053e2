//! The cross-process transport (`--pool-manager`): the analyses run as
//! separate processes that meet the solver through a CDO pool manager
//! ([`cdo::ipc`]), the way Maestro runs components around `mstro_pm`.
//!
//! Names, all under `hydro/`, by record sequence number `seq` (0, 1, ...
//! in output order, so a consumer knows the names to demand without
//! knowing the steps):
//!
//! - `hydro/output/<seq>/<field>`: one `f64` field of the record (`rho`,
//!   `rhou`, `rhov`, `E`), written in place into the producer's shared
//!   memory and viewed by the consumers without copying;
//! - `hydro/output/<seq>`: the record's index object, offered after its
//!   fields; its attributes say which step it is, or that the stream has
//!   ended ([`attributes::END`]);
//! - `hydro/done/<seq>/<role>`: offered by the consumer (`stats` or
//!   `render`) that finished with record `seq`, its views dropped.
//!
//! The statistics process demands every record. The pool manager has no
//! consumer groups yet, so the renderers share the records by a fixed rule
//! instead: record `seq` goes to renderer `seq mod N` ([`renderer_of`]).
//!
//! Back-pressure: the producer keeps at most `--ring` records out. Before
//! offering more it demands the oldest record's `done` objects (waiting for
//! the consumers, never dropping a record) and withdraws its objects. It
//! requires every `done` object it will demand, so a consumer can only
//! leave once its acknowledgements were seen; a consumer withdraws its
//! `done` objects `--ring` records behind the newest it has seen, which
//! the producer has read by then, so the manager holds a bounded number. At the end it offers one end
//! marker per residue `mod N` and waits for every consumer to acknowledge
//! one. Every wait is bounded, and a consumer process that exits with a
//! failure fails the producer at its next wait.

pub mod attributes;
pub mod consumer;
pub mod fetch;
pub mod processes;
pub mod producer;

use serde::{Deserialize, Serialize};

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
    }
}

/// The renderer (of `renderers`, at least one) that record `seq` goes to:
/// a stand-in for consumer groups until the pool manager has them.
pub fn renderer_of(seq: u64, renderers: usize) -> usize {
    (seq % renderers.max(1) as u64) as usize
}

/// What a consumer process did, sent to the producer as one JSON line on
/// its standard output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerReport {
    /// Steps of the records processed, in order.
    pub steps: Vec<u64>,
    /// Wall time spent working on them, in seconds.
    pub busy_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shares() {
        assert_eq!(index_name(3), "hydro/output/3");
        assert_eq!(field_name(3, 3), "hydro/output/3/E");
        assert_eq!(done_name(4, ConsumerRole::Render), "hydro/done/4/render");
        let shares: Vec<usize> = (0..5).map(|s| renderer_of(s, 2)).collect();
        assert_eq!(shares, [0, 1, 0, 1, 0]);
        assert_eq!(renderer_of(7, 0), 0);
    }
}
