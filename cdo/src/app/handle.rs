//! [`Cdo`]: a handle on one object in either deployment, and [`View`]:
//! the bytes a demand gives.

use super::remote::{Remote, RemoteCdo};
use crate::attrs::{Attributes, FlatAttributes, Priority};
use crate::data::Data;
use crate::error::{Error, Result};
use crate::ipc::client;
use crate::lifecycle::{Op, State};
use crate::value::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A handle on the CDO of one name, as producer or consumer, in either
/// deployment; see the [module docs](super). Dropping it gives up its
/// offer or require.
#[derive(Debug)]
pub struct Cdo<'p>(Inner<'p>);

enum Inner<'p> {
    Local(crate::Cdo<'p>),
    /// Boxed: a remote handle keeps its attributes and bytes, and one
    /// allocation is nothing beside its requests' round trips.
    Remote(Box<RemoteCdo<'p>>),
}

impl std::fmt::Debug for Inner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inner::Local(c) => c.fmt(f),
            Inner::Remote(c) => f
                .debug_struct("Cdo")
                .field("name", c.name())
                .field("state", &c.state())
                .finish(),
        }
    }
}

impl<'p> Cdo<'p> {
    pub(super) fn local(cdo: crate::Cdo<'p>) -> Self {
        Cdo(Inner::Local(cdo))
    }

    pub(super) fn remote(cdo: RemoteCdo<'p>) -> Self {
        Cdo(Inner::Remote(Box::new(cdo)))
    }

    /// The name.
    pub fn name(&self) -> &Arc<str> {
        match &self.0 {
            Inner::Local(c) => c.name(),
            Inner::Remote(c) => c.name(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        match &self.0 {
            Inner::Local(c) => c.state(),
            Inner::Remote(c) => c.state(),
        }
    }

    /// This handle's attributes.
    pub fn attributes(&self) -> &Attributes {
        match &self.0 {
            Inner::Local(c) => c.attributes(),
            Inner::Remote(c) => c.attributes(),
        }
    }

    /// The attributes of the offer this handle made (producer) or received
    /// (consumer, after a demand), flat and with the size.
    pub fn offered_attributes(&self) -> Option<FlatAttributes> {
        match &self.0 {
            Inner::Local(c) => c.offered_attributes().map(Attributes::flatten),
            Inner::Remote(c) => c.offered_attributes(),
        }
    }

    /// Sets an attribute by key (built-in or `namespace.key`); false when
    /// an in-process pool's configuration dropped an unknown key.
    ///
    /// # Errors
    /// [`Error::InvalidState`] after the seal; [`Error::TypeMismatch`],
    /// [`Error::ReadOnlyAttribute`] for built-ins; in process also
    /// [`Error::UnknownAttribute`] and schema type errors.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> Result<bool> {
        match &mut self.0 {
            Inner::Local(c) => c.set(key, value),
            Inner::Remote(c) => c.set(key, value.into()),
        }
    }

    /// Sets every attribute of `flat` (as [`Cdo::set`] each), kept
    /// elsewhere (an archive's): through a manager the offer then carries
    /// only these keys, as a producer of the object sent them, not every
    /// built-in as after [`Cdo::set`]; in process nothing differs.
    pub(crate) fn restore_attributes(&mut self, flat: &FlatAttributes) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => flat
                .iter()
                .try_for_each(|(key, value)| c.set(key, value.clone()).map(drop)),
            Inner::Remote(c) => c.restore_attributes(flat),
        }
    }

    /// Sets the member list of a CDO group's manifest (the read-only
    /// `members` attribute).
    pub(super) fn set_members(&mut self, members: Vec<String>) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => c.set_members(members),
            Inner::Remote(c) => c.set_members(members),
        }
    }

    /// Sets the guided-I/O priority (`priority`).
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set_priority(&mut self, priority: Priority) -> Result<()> {
        self.set("priority", priority.name()).map(drop)
    }

    /// Sets the minimum time the object stays on offer
    /// (`lifetime_ms`).
    ///
    /// # Errors
    /// As [`Cdo::set`].
    pub fn set_lifetime(&mut self, lifetime: Duration) -> Result<()> {
        let ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        self.set("lifetime_ms", ms).map(drop)
    }

    /// Producer: attaches a copy of `bytes` (their length becomes the size
    /// if unset).
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless declared or sealed;
    /// [`Error::Inconsistent`] when data is attached already or the length
    /// contradicts the size; memory errors.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => c.write(bytes),
            Inner::Remote(c) => c.write(bytes),
        }
    }

    /// Producer: the bytes to offer, writable in place: those attached, or
    /// new ones of the attributes' size (placed by highest bandwidth in
    /// process; in memory of this process, copied into shared memory at the
    /// offer, through a manager).
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless declared or sealed;
    /// [`Error::Inconsistent`] without a non-zero size; memory errors.
    pub fn buffer_mut(&mut self) -> Result<&mut [u8]> {
        self.buffer_mut_placed(&mamba::Policy::highest_bandwidth())
    }

    /// [`Cdo::buffer_mut`], new bytes placed by `policy` in process (say
    /// the tier the producer's own data is in); through a manager they
    /// are in memory of this process, copied into the manager's shared
    /// memory at the offer, whatever the policy.
    ///
    /// # Errors
    /// As [`Cdo::buffer_mut`]; in process [`Error::Memory`] when `policy`
    /// finds no room.
    pub fn buffer_mut_placed(&mut self, policy: &mamba::Policy) -> Result<&mut [u8]> {
        match &mut self.0 {
            Inner::Local(c) => {
                if c.buffer_mut().is_none() {
                    return c.allocate(policy);
                }
                match c.buffer_mut() {
                    Some(b) => b.as_mut_slice(),
                    None => Ok(&mut []),
                }
            }
            Inner::Remote(c) => c.buffer_mut(),
        }
    }

    /// Freezes the attributes.
    ///
    /// # Errors
    /// [`Error::InvalidState`]; in process also the consistency and
    /// schema checks of [`crate::Cdo::seal`].
    pub fn seal(&mut self) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => c.seal(),
            Inner::Remote(c) => c.seal(),
        }
    }

    /// Producer: publishes the data.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless sealed; [`Error::Inconsistent`] when
    /// the data is missing; [`Error::AlreadyOffered`] under the `reject`
    /// duplicate policy; [`Error::AckTimeout`] (offered all the same).
    pub fn offer(&mut self) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => c.offer(),
            Inner::Remote(c) => c.offer(),
        }
    }

    /// Producer: takes the offer back, waiting for the requires made before
    /// and for the minimum lifetime.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless offered; [`Error::AckTimeout`]
    /// (withdrawn all the same).
    pub fn withdraw(&mut self) -> Result<()> {
        self.withdraw_until(None, Duration::MAX)
    }

    /// [`Cdo::withdraw`], giving up after `timeout` (still offered; a later
    /// call keeps waiting).
    ///
    /// # Errors
    /// As [`Cdo::withdraw`]; [`Error::Timeout`].
    pub fn withdraw_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.withdraw_until(Instant::now().checked_add(timeout), timeout)
    }

    fn withdraw_until(&mut self, deadline: Option<Instant>, timeout: Duration) -> Result<()> {
        let done = match &mut self.0 {
            Inner::Local(c) => return c.withdraw_timeout(timeout),
            Inner::Remote(c) => c.withdraw_until(deadline)?,
        };
        match done {
            true => Ok(()),
            false => Err(Error::Timeout {
                name: Arc::clone(self.name()),
                op: Op::Withdraw,
                timeout,
            }),
        }
    }

    /// Consumer: registers interest; the newest offer of the name, or the
    /// next one, will be demanded.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless declared or sealed;
    /// [`Error::AckTimeout`] (required all the same).
    pub fn require(&mut self) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => c.require(),
            Inner::Remote(c) => c.require(),
        }
    }

    /// Consumer: waits for the data and returns a view of it.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless required; [`Error::AckTimeout`]
    /// (demanded, the data not given); memory and layout errors of
    /// delivering it where and how this handle wants it (still required:
    /// through a pool manager the handle requires again, which its
    /// subscribers see as a second require event).
    pub fn demand(&mut self) -> Result<View<'p>> {
        self.demand_until(None, Duration::MAX)
    }

    /// [`Cdo::demand`], giving up after `timeout` (still required; a later
    /// call keeps waiting).
    ///
    /// # Errors
    /// As [`Cdo::demand`]; [`Error::Timeout`].
    pub fn demand_timeout(&mut self, timeout: Duration) -> Result<View<'p>> {
        self.demand_until(Instant::now().checked_add(timeout), timeout)
    }

    fn demand_until(&mut self, deadline: Option<Instant>, timeout: Duration) -> Result<View<'p>> {
        let view = match &mut self.0 {
            Inner::Local(c) => return c.demand_timeout(timeout).map(View::local),
            Inner::Remote(c) => c.demand_until(deadline)?,
        };
        view.ok_or_else(|| Error::Timeout {
            name: Arc::clone(self.name()),
            op: Op::Demand,
            timeout,
        })
    }

    /// Consumer: gives up interest without receiving the data.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless required; [`Error::AckTimeout`]
    /// (retracted all the same).
    pub fn retract(&mut self) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => c.retract(),
            Inner::Remote(c) => c.retract(),
        }
    }

    /// Ends the handle; views already received stay valid.
    ///
    /// # Errors
    /// [`Error::InvalidState`] while offered or required.
    pub fn dispose(&mut self) -> Result<()> {
        match &mut self.0 {
            Inner::Local(c) => c.dispose(),
            Inner::Remote(c) => c.dispose(),
        }
    }
}

/// The bytes of a demanded object or a group record: the producer's own
/// bytes where the deployment allows (see the [module docs](super)).
pub struct View<'p>(ViewInner<'p>);

enum ViewInner<'p> {
    Local(Data),
    /// The view (taken out only on drop) and the connection to tell.
    Remote(Option<client::View>, &'p Remote),
}

impl<'p> View<'p> {
    pub(super) fn local(data: Data) -> Self {
        View(ViewInner::Local(data))
    }

    pub(super) fn remote(view: client::View, remote: &'p Remote) -> Self {
        View(ViewInner::Remote(Some(view), remote))
    }

    /// The bytes.
    ///
    /// # Errors
    /// [`Error::Memory`] for in-process data the CPU cannot address.
    pub fn bytes(&self) -> Result<&[u8]> {
        match &self.0 {
            ViewInner::Local(d) => d.as_slice(),
            ViewInner::Remote(v, _) => Ok(v.as_deref().unwrap_or_default()),
        }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        match &self.0 {
            ViewInner::Local(d) => d.len(),
            ViewInner::Remote(v, _) => v.as_deref().map_or(0, <[u8]>::len),
        }
    }

    /// Whether the object has no bytes (a synchronisation token).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("len", &self.len()).finish()
    }
}

impl Drop for Cdo<'_> {
    /// In process, a required handle is retracted, and an offered one
    /// withdrawn, as through a manager: the pool's subscribers hear a
    /// retract or withdraw event (nothing waits for its acknowledgement).
    /// The rest is the handle's own drop.
    fn drop(&mut self) {
        if let Inner::Local(c) = &mut self.0 {
            c.retract_dropped();
            c.withdraw_dropped();
        }
    }
}

impl Drop for View<'_> {
    /// Through a manager, tells it at once that the view is gone, so that
    /// the producer's withdrawal need not wait for the next request.
    fn drop(&mut self) {
        if let ViewInner::Remote(view, remote) = &mut self.0 {
            drop(view.take());
            remote.flush();
        }
    }
}
