//! Carrying out a [`Decision`] for an allocation: schedule near the data,
//! or move the data's pages to the task's node.

use super::data::DataLocation;
use super::decide::{Action, Backlog, Decision, Footprint, MigrationPolicy};
use super::error::{AffinityError, Result};
use super::pool::AffinityPool;
use crate::allocation::Allocation;
use crate::allocator::Mamba;
use crate::tier::SpaceId;

/// Where to run a task after [`AffinityPool::place`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    /// The decision taken (and already carried out for the data).
    pub decision: Decision,
    /// The domain to run the task in.
    pub domain: usize,
}

impl AffinityPool {
    /// Decides, for a task due on `task_node` that streams `data` `passes`
    /// times, whether to move the task or the data, and moves the data when
    /// so decided ([`Mamba::move_pages`] to the space of `task_node`). The
    /// queues of the two domains give the backlogs. Run the task in the
    /// returned domain ([`AffinityPool::spawn_in_domain`] or a scope's).
    ///
    /// # Errors
    /// [`AffinityError::UnknownNode`]; [`AffinityError::NoLocality`] when
    /// the data is on no NUMA node; page-move errors (nothing is moved).
    pub fn place<'m>(
        &self,
        mamba: &'m Mamba,
        data: &mut Allocation<'m>,
        task_node: u32,
        passes: u32,
        policy: &MigrationPolicy,
    ) -> Result<Placed> {
        let domains = self.domains();
        let data_node = node_of(data, self)?;
        let queued = |node| -> Result<f64> {
            let (d, _) = domains.home_of(node)?;
            Ok(self.queued(d) as f64 * policy.queued_task_ns)
        };
        let backlog = Backlog {
            data_side_ns: queued(data_node)?,
            task_side_ns: queued(task_node)?,
        };
        self.carry_out(mamba, data, data_node, task_node, passes, policy, backlog)
    }

    /// [`AffinityPool::place`] with the backlogs given rather than read from
    /// the queues.
    ///
    /// # Errors
    /// As [`AffinityPool::place`].
    pub fn place_with_backlog<'m>(
        &self,
        mamba: &'m Mamba,
        data: &mut Allocation<'m>,
        task_node: u32,
        passes: u32,
        policy: &MigrationPolicy,
        backlog: Backlog,
    ) -> Result<Placed> {
        let data_node = node_of(data, self)?;
        self.carry_out(mamba, data, data_node, task_node, passes, policy, backlog)
    }

    /// Decides and carries out the placement of `data`, whose pages are on
    /// `data_node` (located once by the caller: a page query costs a
    /// system call).
    #[allow(clippy::too_many_arguments)]
    fn carry_out<'m>(
        &self,
        mamba: &'m Mamba,
        data: &mut Allocation<'m>,
        data_node: u32,
        task_node: u32,
        passes: u32,
        policy: &MigrationPolicy,
        backlog: Backlog,
    ) -> Result<Placed> {
        let domains = self.domains();
        let target_space = numa_space(mamba, task_node);
        let footprint = Footprint {
            bytes: data.len(),
            passes,
            data_node,
            task_node,
            task_movable: true,
            data_movable: target_space.is_some() && data.space().is_node_memory(),
        };
        let decision = policy.decide(domains, &footprint, backlog)?;
        if decision.action == Action::MoveData {
            if let Some(space) = target_space {
                mamba.move_pages(data, space)?;
            }
        }
        let (domain, _) = domains.home_of(decision.run_on)?;
        Ok(Placed { decision, domain })
    }
}

/// The node of an allocation's data.
fn node_of(data: &Allocation<'_>, pool: &AffinityPool) -> Result<u32> {
    data.data_node(pool.domains().locality())?
        .ok_or_else(|| AffinityError::NoLocality(format!("space {}", data.space().name)))
}

/// The CPU-addressable space of a NUMA node.
fn numa_space(mamba: &Mamba, node: u32) -> Option<SpaceId> {
    mamba
        .spaces()
        .find(|s| s.numa_node == Some(node) && s.is_node_memory())
        .map(|s| s.id)
}
