//! Move the task or move the data: a pure cost comparison.
//!
//! For a task that reads `bytes` of data `passes` times, with the data on
//! one node and the task due on another:
//!
//! | action | cost |
//! |---|---|
//! | run remote | task-side backlog + memory passes x bytes x local cost x distance ratio |
//! | move the task | data-side backlog + memory passes x bytes x local cost |
//! | move the data | task-side backlog + bytes x migration cost + memory passes x bytes x local cost |
//!
//! The distance ratio is `distance(task, data) / distance(task, task)`
//! (hwloc distances, else the tree's). Memory passes are the passes, or
//! only the first when the data fits the last-level cache
//! ([`MigrationPolicy::cache_bytes`]): later ones are served by the cache.
//! Ties go to the least disruptive action (run remote, then move the task,
//! then move the data).
//!
//! [`MigrationPolicy::default`] holds documented constants;
//! [`crate::Mamba::migration_policy`] derives the figures from the node's
//! bandwidths and cache sizes ([`crate::topology::costs`]).

use super::domain::Domains;
use super::error::Result;
use serde::Serialize;

/// Cost model of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MigrationPolicy {
    /// Time to stream one byte from local memory (ns): 0.1 is 10 GB/s.
    pub local_ns_per_byte: f64,
    /// Time to migrate one byte to another node (ns), page moves included.
    pub migrate_ns_per_byte: f64,
    /// Expected wait per task queued ahead (ns), to turn queue lengths into
    /// a backlog.
    pub queued_task_ns: f64,
    /// Last-level cache of the task's side (bytes): data up to this size
    /// is read from memory on the first pass only. 0: unknown, every pass
    /// reads memory.
    pub cache_bytes: usize,
}

impl Default for MigrationPolicy {
    /// The constants used when the topology reports no bandwidth and no
    /// cache: 10 GB/s local streaming (0.1 ns per byte), 0.5 ns per
    /// migrated byte, 50 µs per queued task, no cache.
    fn default() -> Self {
        MigrationPolicy {
            local_ns_per_byte: 0.1,
            migrate_ns_per_byte: 0.5,
            queued_task_ns: 50_000.0,
            cache_bytes: 0,
        }
    }
}

/// What a task touches, and where things are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Bytes of data the task streams per pass.
    pub bytes: usize,
    /// Expected passes over the data (reuse).
    pub passes: u32,
    /// The node holding the data.
    pub data_node: u32,
    /// The node the task is due to run on.
    pub task_node: u32,
    /// Whether the task may run elsewhere.
    pub task_movable: bool,
    /// Whether the data's pages may move (NUMA memory on both sides).
    pub data_movable: bool,
}

/// Work already waiting on each side (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Backlog {
    /// Wait before the data's domain could start the task.
    pub data_side_ns: f64,
    /// Wait before the task's domain could start it.
    pub task_side_ns: f64,
}

/// The chosen action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Data and task share a domain: nothing to move.
    Local,
    /// Run the task where it is, reading the data remotely.
    RunRemote,
    /// Run the task in the data's domain.
    MoveTask,
    /// Migrate the data's pages to the task's node, run it there.
    MoveData,
}

/// A decision with the costs it compared (ns; `None`: not allowed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Node the task runs on.
    pub run_on: u32,
    /// Cost of running remote.
    pub run_remote_ns: f64,
    /// Cost of moving the task.
    pub move_task_ns: Option<f64>,
    /// Cost of moving the data.
    pub move_data_ns: Option<f64>,
    /// `distance(task, data) / distance(task, task)`.
    pub distance_ratio: f64,
}

impl MigrationPolicy {
    /// Decides for one task. Pure: the same inputs give the same decision,
    /// on any topology.
    ///
    /// # Errors
    /// [`super::AffinityError::UnknownNode`] for nodes the domains lack.
    pub fn decide(
        &self,
        domains: &Domains,
        task: &Footprint,
        backlog: Backlog,
    ) -> Result<Decision> {
        let locality = domains.locality();
        let (data_domain, _) = domains.home_of(task.data_node)?;
        let (task_domain, _) = domains.home_of(task.task_node)?;
        let ratio = locality.distance(task.task_node, task.data_node)? as f64
            / locality.distance(task.task_node, task.task_node)?.max(1) as f64;
        let memory_passes = if task.bytes <= self.cache_bytes {
            task.passes.min(1)
        } else {
            task.passes
        };
        let stream = task.bytes as f64 * f64::from(memory_passes) * self.local_ns_per_byte;
        let run_remote_ns = backlog.task_side_ns + stream * ratio;
        let move_task_ns = task.task_movable.then_some(backlog.data_side_ns + stream);
        let move_data_ns = task.data_movable.then_some(
            backlog.task_side_ns + task.bytes as f64 * self.migrate_ns_per_byte + stream,
        );
        let mut action = if data_domain == task_domain {
            Action::Local
        } else {
            Action::RunRemote
        };
        if action == Action::RunRemote {
            let mut best = run_remote_ns;
            for (candidate, cost) in [
                (Action::MoveTask, move_task_ns),
                (Action::MoveData, move_data_ns),
            ] {
                if let Some(cost) = cost.filter(|&c| c < best) {
                    best = cost;
                    action = candidate;
                }
            }
        }
        let run_on = match action {
            Action::MoveTask => task.data_node,
            _ => task.task_node,
        };
        Ok(Decision {
            action,
            run_on,
            run_remote_ns,
            move_task_ns,
            move_data_ns,
            distance_ratio: ratio,
        })
    }
}
