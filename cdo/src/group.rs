//! CDO groups: named collections offered and demanded as a batch.
//!
//! Members are named under the group (`run1/step42` holds
//! `run1/step42/rho`, ...). The producer offers the members, then a
//! zero-length *manifest* CDO under the group's own name whose `members`
//! attribute lists them: a consumer that sees the manifest sees every
//! member. Withdrawal goes the other way round (manifest first), and a
//! group demand keeps the manifest pinned until it has required every
//! member, so the members cannot vanish in between. Members can also be
//! required one by one like any CDO.

use crate::attrs::Place;
use crate::cdo::Cdo;
use crate::data::Data;
use crate::engine::names::member_name;
use crate::error::{Error, Result};
use crate::lifecycle::State;
use crate::pool::Pool;
use std::time::{Duration, Instant};

/// The producer side of a group.
#[derive(Debug)]
pub struct GroupOffer<'p> {
    pool: &'p Pool,
    manifest: Cdo<'p>,
    members: Vec<Cdo<'p>>,
}

impl<'p> GroupOffer<'p> {
    pub(crate) fn new(pool: &'p Pool, manifest: Cdo<'p>) -> Self {
        GroupOffer {
            pool,
            manifest,
            members: Vec::new(),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        self.manifest.name()
    }

    fn error(&self, reason: String) -> Error {
        Error::Group {
            name: self.name().to_owned(),
            reason,
        }
    }

    /// Declares the member `GROUP/member` and returns it for attributes
    /// and data.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Group`] for a duplicate member or
    /// after the group's offer.
    pub fn declare(&mut self, member: &str) -> Result<&mut Cdo<'p>> {
        if self.manifest.state() != State::Declared {
            return Err(self.error("members are fixed once the group is offered".into()));
        }
        let name = member_name(self.name(), member);
        if self.members.iter().any(|m| **m.name() == *name) {
            return Err(self.error(format!("member {member:?} declared twice")));
        }
        let cdo = self.pool.declare(&name)?;
        self.members.push(cdo);
        let last = self.members.len() - 1;
        Ok(&mut self.members[last])
    }

    /// The declared members.
    pub fn members(&mut self) -> &mut [Cdo<'p>] {
        &mut self.members
    }

    /// Seals the members still declared and offers them all, then the
    /// manifest. A failure part-way leaves the members offered so far on
    /// offer (withdraw the group to take them back).
    ///
    /// # Errors
    /// The first member's seal or offer error; [`Error::InvalidState`].
    pub fn offer(&mut self) -> Result<()> {
        if self.manifest.state() != State::Declared {
            return Err(self.error("offered already".into()));
        }
        for m in &mut self.members {
            if m.state() == State::Declared {
                m.seal()?;
            }
        }
        for m in &mut self.members {
            if m.state() == State::Sealed {
                m.offer()?;
            }
        }
        let names = self.members.iter().map(|m| m.name().to_string()).collect();
        self.manifest.set_members(names)?;
        self.manifest.seal()?;
        self.manifest.offer()
    }

    /// Withdraws the manifest, then every member, waiting for transfers in
    /// flight, up to `timeout` in all.
    ///
    /// # Errors
    /// [`Error::Timeout`] (what was withdrawn stays withdrawn; call again).
    pub fn withdraw_timeout(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        let left = || {
            deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            })
        };
        if self.manifest.state() == State::Offered {
            self.manifest.withdraw_timeout(left())?;
        }
        for m in &mut self.members {
            if m.state() == State::Offered {
                m.withdraw_timeout(left())?;
            }
        }
        Ok(())
    }

    /// Disposes the members and the manifest.
    ///
    /// # Errors
    /// [`Error::InvalidState`] while something is still offered.
    pub fn dispose(&mut self) -> Result<()> {
        if let Some(m) = self.members.iter().find(|m| m.state() == State::Offered) {
            return Err(self.error(format!("{} is still offered", m.name())));
        }
        for m in &mut self.members {
            if m.state() != State::Disposed {
                m.dispose()?;
            }
        }
        self.manifest.dispose()
    }
}

/// The consumer side of a group.
#[derive(Debug)]
pub struct GroupDemand<'p> {
    pool: &'p Pool,
    manifest: Cdo<'p>,
    place: Option<Place>,
}

impl<'p> GroupDemand<'p> {
    pub(crate) fn new(pool: &'p Pool, manifest: Cdo<'p>, place: Option<Place>) -> Self {
        GroupDemand {
            pool,
            manifest,
            place,
        }
    }

    /// Waits up to `timeout` for the group and returns every member's
    /// name and data, in the producer's order; the handles are disposed.
    ///
    /// # Errors
    /// [`Error::Timeout`] (still required: call again), member errors.
    pub fn demand_timeout(&mut self, timeout: Duration) -> Result<Vec<(String, Data)>> {
        if self.manifest.state() != State::Required {
            return Err(Error::InvalidState {
                name: self.manifest.name().clone(),
                op: crate::Op::Demand,
                state: self.manifest.state(),
            });
        }
        let deadline = Instant::now().checked_add(timeout);
        let Some(offer) = self.manifest.matched_offer(deadline) else {
            return Err(Error::Timeout {
                name: self.manifest.name().clone(),
                op: crate::Op::Demand,
                timeout,
            });
        };
        let mut members = Vec::with_capacity(offer.attrs.members.len());
        for name in &offer.attrs.members {
            let mut m = self.pool.declare(name)?;
            if let Some(p) = self.place {
                m.want_place(p)?;
            }
            m.require()?;
            members.push(m);
        }
        self.manifest.demand()?;
        self.manifest.dispose()?;
        members
            .iter_mut()
            .map(|m| {
                let data = m.demand()?;
                m.dispose()?;
                Ok((m.name().to_string(), data))
            })
            .collect()
    }
}
