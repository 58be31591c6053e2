//! CDO groups through the one API: [`GroupOffer`] and [`GroupDemand`].

use super::region::{assemble, Block};
use super::{Cdo, Pool, View};
use crate::attrs::{FlatAttributes, Layout};
use crate::engine::names::{member_name, members_listed, MEMBERS};
use crate::error::{Error, Result};
use crate::lifecycle::State;
use crate::value::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A demanded member: its name, view and attributes.
type Member<'p> = (Arc<str>, View<'p>, FlatAttributes);

/// The producer side of a CDO group ([`Pool::declare_group`]): a named
/// collection offered and demanded as a batch, the same way in either
/// deployment.
///
/// A group `g` is its members `g/<member>` (ordinary CDOs, which may also
/// be required one by one) and a zero-length *manifest* CDO `g` whose
/// `members` attribute lists them, offered once every member is, so a
/// consumer that gets the manifest sees the group only whole. Withdrawal
/// goes the other way round: the manifest first. A group consumer keeps a
/// require of the manifest until it has required every member, so the
/// members cannot be withdrawn in between.
///
/// ```
/// use cdo::app::Pool;
/// use std::time::Duration;
///
/// let pool = Pool::from_env("example")?;
/// let mut consumer = pool.require_group("run1/step42", &[])?;
///
/// let mut group = pool.declare_group("run1/step42")?;
/// group.declare("rho")?.write(&[1; 8])?;
/// group.declare("u")?.write(&[2; 8])?;
/// group.offer()?;
///
/// let members = consumer.demand_timeout(Duration::from_secs(10))?;
/// assert_eq!(&*members[1].0, "run1/step42/u");
/// assert_eq!(members[1].1.bytes()?, &[2; 8]);
/// drop(members);
///
/// group.withdraw_timeout(Duration::from_secs(10))?;
/// group.dispose()?;
/// # Ok::<(), cdo::Error>(())
/// ```
#[derive(Debug)]
pub struct GroupOffer<'p> {
    pool: &'p Pool,
    manifest: Cdo<'p>,
    members: Vec<Cdo<'p>>,
}

/// The error of group `name`.
fn group_error(name: &str, reason: String) -> Error {
    Error::Group {
        name: name.to_owned(),
        reason,
    }
}

/// What is left of `timeout` from `deadline` on (`None`: without end).
fn left(deadline: Option<Instant>) -> Duration {
    deadline.map_or(Duration::MAX, |d| {
        d.saturating_duration_since(Instant::now())
    })
}

impl<'p> GroupOffer<'p> {
    pub(super) fn new(pool: &'p Pool, name: &str) -> Result<Self> {
        Ok(GroupOffer {
            pool,
            manifest: pool.declare(name)?,
            members: Vec::new(),
        })
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        self.manifest.name()
    }

    /// Declares the member `GROUP/member` and returns its handle, for
    /// attributes and data.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::Group`] for a member declared twice
    /// or once the group is offered.
    pub fn declare(&mut self, member: &str) -> Result<&mut Cdo<'p>> {
        if self.manifest.state() != State::Declared {
            let reason = "members are fixed once the group is offered".into();
            return Err(group_error(self.name(), reason));
        }
        let name = member_name(self.name(), member);
        if self.members.iter().any(|m| **m.name() == *name) {
            let reason = format!("member {member:?} declared twice");
            return Err(group_error(self.name(), reason));
        }
        self.members.push(self.pool.declare(&name)?);
        Ok(self.members.last_mut().expect("just pushed"))
    }

    /// Sets an attribute of the manifest (as [`Cdo::set`]), which
    /// selectors and events see; `members` is set by the offer.
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> Result<bool> {
        self.manifest.set(key, value)
    }

    /// The members' handles, in the order they were declared.
    pub fn members(&mut self) -> &mut [Cdo<'p>] {
        &mut self.members
    }

    /// Seals the members still declared and offers them, then the
    /// manifest. A failure part-way withdraws the members offered so far
    /// (no group is left half on offer; a withdrawal that must wait for a
    /// consumer stays requested, and [`GroupOffer::withdraw_timeout`]
    /// waits for it); the group cannot be offered again: dispose it.
    ///
    /// # Errors
    /// [`Error::Group`] when offered already; the first seal or offer
    /// error.
    pub fn offer(&mut self) -> Result<()> {
        if self.manifest.state() != State::Declared {
            return Err(group_error(self.name(), "offered already".into()));
        }
        let offered = self.offer_members().and_then(|()| {
            let names = self.members.iter().map(|m| m.name().to_string()).collect();
            self.manifest.set_members(names)?;
            self.manifest.seal()?;
            self.manifest.offer()
        });
        if offered.is_err() {
            for m in &mut self.members {
                if m.state() == State::Offered {
                    // Requested without waiting: the offer's error is the
                    // one to report.
                    let _ = m.withdraw_timeout(Duration::ZERO);
                }
            }
        }
        offered
    }

    fn offer_members(&mut self) -> Result<()> {
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
        Ok(())
    }

    /// Withdraws the manifest, then every member, each waiting as
    /// [`Cdo::withdraw_timeout`] does, up to `timeout` in all.
    ///
    /// # Errors
    /// [`Error::Timeout`]: what was withdrawn stays withdrawn; call again.
    pub fn withdraw_timeout(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        let handles = std::iter::once(&mut self.manifest).chain(&mut self.members);
        for cdo in handles {
            if cdo.state() == State::Offered {
                cdo.withdraw_timeout(left(deadline))?;
            }
        }
        Ok(())
    }

    /// Disposes the members and the manifest.
    ///
    /// # Errors
    /// [`Error::Group`] while something is still offered.
    pub fn dispose(&mut self) -> Result<()> {
        let mut handles = std::iter::once(&self.manifest).chain(&self.members);
        if let Some(m) = handles.find(|m| m.state() == State::Offered) {
            let reason = format!("{} is still offered", m.name());
            return Err(group_error(self.name(), reason));
        }
        for cdo in std::iter::once(&mut self.manifest).chain(&mut self.members) {
            if cdo.state() != State::Disposed {
                cdo.dispose()?;
            }
        }
        Ok(())
    }
}

/// The consumer side of a CDO group ([`Pool::require_group`]): the
/// members are demanded all at once ([`GroupDemand::demand_timeout`]) or
/// one by one ([`GroupDemand::next_timeout`]), so that a group larger than
/// memory can be read in a loop that drops each view before the next.
#[derive(Debug)]
pub struct GroupDemand<'p> {
    pool: &'p Pool,
    /// Demanded for its member list.
    manifest: Cdo<'p>,
    /// A second require of the manifest that holds its withdrawal until
    /// every member is required (a demand ends the other).
    hold: Cdo<'p>,
    /// What each member's handle sets before its require.
    wanted: Vec<(String, Value)>,
    /// The members required and not demanded yet, in the producer's order.
    members: VecDeque<Cdo<'p>>,
    /// Whether [`GroupDemand::demand_timeout`] or
    /// [`GroupDemand::demand_region`] took every member.
    taken: bool,
    /// The manifest's attributes, once it came.
    manifest_attributes: Option<FlatAttributes>,
}

impl<'p> GroupDemand<'p> {
    pub(super) fn new(pool: &'p Pool, name: &str, wanted: &[(&str, Value)]) -> Result<Self> {
        let mut hold = pool.declare(name)?;
        // Set here first, so that a wrong key or value fails now.
        for (key, value) in wanted {
            hold.set(key, value.clone())?;
        }
        hold.require()?;
        let mut manifest = pool.declare(name)?;
        manifest.require()?;
        Ok(GroupDemand {
            pool,
            manifest,
            hold,
            wanted: wanted
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            members: VecDeque::new(),
            taken: false,
            manifest_attributes: None,
        })
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        self.manifest.name()
    }

    /// The manifest's attributes (its `members` among them), once a
    /// demand got it.
    pub fn attributes(&self) -> Option<&FlatAttributes> {
        self.manifest_attributes.as_ref()
    }

    /// Waits up to `timeout` for the manifest, then requires every member
    /// and lets the manifest go; nothing to do once done.
    fn resolve(&mut self, timeout: Duration) -> Result<()> {
        if self.manifest.state() != State::Required {
            return Ok(());
        }
        let manifest = self.manifest.demand_timeout(timeout)?;
        self.manifest_attributes = self.manifest.offered_attributes();
        let listed = self
            .manifest_attributes
            .as_ref()
            .and_then(|a| a.get(MEMBERS).and_then(members_listed));
        let required = match listed {
            Some(names) => self.require_members(&names),
            None => Err(group_error(self.name(), "not a group manifest".into())),
        };
        drop(manifest);
        if required.is_err() {
            // Dropped, the members required so far are retracted.
            self.members.clear();
        }
        self.manifest.dispose()?;
        self.hold.retract()?;
        self.hold.dispose()?;
        required
    }

    fn require_members(&mut self, names: &[String]) -> Result<()> {
        for name in names {
            let mut m = self.pool.declare(name)?;
            for (key, value) in &self.wanted {
                m.set(key, value.clone())?;
            }
            m.require()?;
            self.members.push_back(m);
        }
        Ok(())
    }

    /// Demands the next member, waiting up to `timeout` in all (for the
    /// manifest first, on the first call); `None` after the last.
    ///
    /// # Errors
    /// [`Error::Timeout`] (call again: what was required stays required);
    /// [`Error::Group`] when the object is no group manifest; the
    /// demand's errors.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(Arc<str>, View<'p>)>> {
        let next = self.next_member(timeout)?;
        Ok(next.map(|(name, view, _)| (name, view)))
    }

    /// [`GroupDemand::next_timeout`], with the member's attributes.
    fn next_member(&mut self, timeout: Duration) -> Result<Option<Member<'p>>> {
        let deadline = Instant::now().checked_add(timeout);
        self.resolve(timeout)?;
        let Some(member) = self.members.front_mut() else {
            return Ok(None);
        };
        let view = member.demand_timeout(left(deadline))?;
        let mut member = self.members.pop_front().expect("looked at");
        let attrs = member.offered_attributes().unwrap_or_default();
        member.dispose()?;
        Ok(Some((Arc::clone(member.name()), view, attrs)))
    }

    /// Demands every member (those [`GroupDemand::next_timeout`] did not
    /// take), waiting up to `timeout` in all: their names and views, in
    /// the producer's order. Once the manifest is in, the members are on
    /// offer and required, so only their producer's death makes a member's
    /// demand fail; the members demanded before it are then let go.
    ///
    /// # Errors
    /// As [`GroupDemand::next_timeout`]; [`Error::Group`] when called
    /// again after it succeeded.
    pub fn demand_timeout(&mut self, timeout: Duration) -> Result<Vec<(Arc<str>, View<'p>)>> {
        if self.taken {
            return Err(group_error(self.name(), "demanded already".into()));
        }
        let deadline = Instant::now().checked_add(timeout);
        self.resolve(timeout)?;
        let mut views = Vec::with_capacity(self.members.len());
        while let Some(member) = self.next_timeout(left(deadline))? {
            views.push(member);
        }
        self.taken = true;
        Ok(views)
    }

    /// Demands every member (left) as one block of a field decomposed
    /// into them (each member's `block_start`, `shape`, `order` and
    /// `element_type` say which), and fills `dst` with the region of the
    /// field of `layout.shape` elements from `start` on, in
    /// `layout.order`: a field redistributed from the producers' block
    /// decomposition into the consumer's, with mamba-transforms' kernels.
    /// The members' views are let go before it returns.
    ///
    /// ```
    /// use cdo::app::Pool;
    /// use cdo::{Layout, Order, Value};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::from_env("example")?;
    /// // A 2 x 4 field of u8 as two 2 x 2 blocks, side by side.
    /// let mut field = pool.declare_group("field")?;
    /// for (member, column, bytes) in [("left", 0u64, [1, 2, 5, 6]), ("right", 2, [3, 4, 7, 8])] {
    ///     let block = field.declare(member)?;
    ///     block.set("element_type", "u8")?;
    ///     block.set("shape", vec![Value::UInt(2), Value::UInt(2)])?;
    ///     block.set("block_start", vec![Value::UInt(0), Value::UInt(column)])?;
    ///     block.write(&bytes)?;
    /// }
    /// field.offer()?;
    ///
    /// // Its second row, whole, in one buffer.
    /// let mut consumer = pool.require_group("field", &[])?;
    /// let row = Layout { shape: vec![1, 4], order: Order::RowMajor, ..Layout::default() };
    /// let mut dst = [0u8; 4];
    /// consumer.demand_region(&[1, 0], &row, &mut dst, Duration::from_secs(10))?;
    /// assert_eq!(dst, [5, 6, 7, 8]);
    ///
    /// field.withdraw_timeout(Duration::from_secs(10))?;
    /// # Ok::<(), cdo::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`GroupDemand::demand_timeout`]; [`Error::Group`] when a member
    /// does not say which block it is, the members differ in element type
    /// or do not cover the region exactly once; [`Error::Layout`] when
    /// `dst` is not the region's size; [`Error::Memory`] for a member in
    /// device memory.
    pub fn demand_region(
        &mut self,
        start: &[usize],
        layout: &Layout,
        dst: &mut [u8],
        timeout: Duration,
    ) -> Result<()> {
        if self.taken {
            return Err(group_error(self.name(), "demanded already".into()));
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut members = Vec::with_capacity(self.members.len());
        while let Some(member) = self.next_member(left(deadline))? {
            members.push(member);
        }
        self.taken = true;
        let blocks = members
            .iter()
            .map(|(name, view, attrs)| {
                Ok(Block {
                    name,
                    bytes: view.bytes()?,
                    attrs,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        assemble(self.name(), &blocks, start, layout, dst)
    }
}
