//! The pool-manager side of [`app`](super): one connection to the manager,
//! shared by every handle of the application, and the handle's state
//! machine on top of the client's name-based calls.

use super::View;
use crate::attrs::{self, Attributes, FlatAttributes};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ipc::client::{Client, ClientError, ManagerSchema, Notice, Reply};
use crate::ipc::convert::convert_view;
use crate::ipc::endpoint::Endpoint;
use crate::ipc::interest::InterestPage;
use crate::ipc::manager::ManagerHandle;
use crate::ipc::wire::{ErrorCode, RequestId, SIZE_KEY};
use crate::lifecycle::{Op, State};
use crate::value::Value;
use mamba::Mamba;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tracing::warn;

/// How long one thread holds the connection while it waits for a reply or
/// a notice; the application's other threads take their turn in between
/// (a reply that arrives meanwhile is filed for its thread).
const SLICE: Duration = Duration::from_millis(5);

/// An application's connection to a pool manager.
pub(super) struct Remote {
    conn: Mutex<Conn>,
    /// The manager joined.
    endpoint: Endpoint,
    /// The manager this application started, if it did; dropped after the
    /// connection (field order).
    manager: Option<ManagerHandle>,
    /// This process's memory, found on the first demand that wants its data
    /// in a space, tier or order of its own.
    mamba: OnceLock<Arc<Mamba>>,
    /// The manager's attribute rules, when it sent them: user attributes
    /// are then checked when set, as in process.
    schema: Option<ManagerSchema>,
    /// Which lifecycle events the pool's subscribers want, when the
    /// manager publishes it.
    interest: Option<Arc<InterestPage>>,
}

/// The client and the notices taken for other readers than their own.
struct Conn {
    client: Client,
    /// Notices read while waiting for another subscription's, by
    /// subscription.
    stash: HashMap<u64, VecDeque<Notice>>,
    /// The subscriptions and group memberships still open.
    open: HashSet<u64>,
}

impl Remote {
    pub(super) fn new(client: Client, endpoint: Endpoint, manager: Option<ManagerHandle>) -> Self {
        Remote {
            schema: client.schema().cloned(),
            interest: client.interest_page().cloned(),
            endpoint,
            conn: Mutex::new(Conn {
                client,
                stash: HashMap::new(),
                open: HashSet::new(),
            }),
            manager,
            mamba: OnceLock::new(),
        }
    }

    /// This process's memory as mamba's environment (`MAMBA_CONFIG`)
    /// describes it, found once.
    ///
    /// # Errors
    /// [`Error::Memory`] when mamba's configuration fails.
    fn mamba(&self) -> Result<&Arc<Mamba>> {
        if let Some(mamba) = self.mamba.get() {
            return Ok(mamba);
        }
        let found = Arc::new(Mamba::from_env()?);
        Ok(self.mamba.get_or_init(|| found))
    }

    /// The endpoint of the manager joined.
    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether this application started the manager it joined.
    pub(super) fn runs_manager(&self) -> bool {
        self.manager.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the client under the lock, start to end (for calls the
    /// manager answers at once: subscribe, query, acknowledge).
    pub(super) fn call<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        f(&mut self.lock().client)
    }

    /// Queues and sends a request; its reply is taken with [`Remote::wait`].
    pub(super) fn submit(
        &self,
        f: impl FnOnce(&mut Client) -> Result<RequestId, ClientError>,
    ) -> Result<RequestId, ClientError> {
        let mut conn = self.lock();
        let id = f(&mut conn.client)?;
        conn.client.flush()?;
        Ok(id)
    }

    /// The reply to `id`, waiting until `deadline` (forever for `None`) in
    /// slices, so that the application's other threads, an acknowledging
    /// subscriber among them, are not shut out meanwhile.
    ///
    /// # Errors
    /// The reply's error; [`ClientError::Timeout`] at the deadline, when
    /// the request stays pending (wait again to keep waiting).
    pub(super) fn wait(
        &self,
        id: RequestId,
        deadline: Option<Instant>,
    ) -> Result<Reply, ClientError> {
        loop {
            let reply = self
                .lock()
                .client
                .wait_keeping(id, Some(slice_until(deadline)));
            match reply {
                Err(ClientError::Timeout) if !passed(deadline) => std::thread::yield_now(),
                reply => return reply,
            }
        }
    }

    /// Gives up waiting for `id`: a late reply is dropped.
    pub(super) fn abandon(&self, id: RequestId) {
        // A reply already here is dropped with the result.
        let _ = self.lock().client.wait(id, Some(Duration::ZERO));
    }

    /// Reports the views dropped so far to the manager.
    pub(super) fn flush(&self) {
        // A dead connection fails the application's next call instead.
        let _ = self.lock().client.flush();
    }

    /// Sends a request that waits for no consumer (at most for
    /// acknowledgements) and waits for its reply up to the client's
    /// operation timeout; at the timeout the request is abandoned, as the
    /// client's own blocking calls abandon theirs.
    pub(super) fn request(
        &self,
        f: impl FnOnce(&mut Client) -> Result<RequestId, ClientError>,
    ) -> Result<Reply, ClientError> {
        let id = self.submit(f)?;
        self.await_reply(id)
    }

    /// The reply to request `id`, waiting up to the client's operation
    /// timeout, at which the request is abandoned.
    pub(super) fn await_reply(&self, id: RequestId) -> Result<Reply, ClientError> {
        let deadline = Instant::now().checked_add(self.lock().client.op_timeout());
        let reply = self.wait(id, deadline);
        if matches!(reply, Err(ClientError::Timeout)) {
            self.abandon(id);
        }
        reply
    }

    /// Tells the manager of lifecycle step `kind` (declare, seal, dispose)
    /// of `name`, whose attributes `attrs` gives, when the pool's
    /// subscribers want it; waits for the acknowledgements the step awaits,
    /// as in process. Costs one atomic load when nobody wants it.
    ///
    /// # Errors
    /// The connection's errors; [`ErrorCode::AckTimeout`] when
    /// acknowledgements were missing under the fail-fast policy.
    pub(super) fn lifecycle(
        &self,
        kind: EventKind,
        name: &str,
        attrs: impl FnOnce() -> FlatAttributes,
    ) -> Result<(), ClientError> {
        let wanted = self
            .interest
            .as_ref()
            .is_some_and(|page| page.get().wants(kind).is_some());
        if !wanted {
            return Ok(());
        }
        let id = {
            let mut conn = self.lock();
            let id = conn.client.submit_lifecycle(kind, name, attrs());
            conn.client.flush().and(id)?
        };
        match id {
            Some(id) => self.await_reply(id).map(drop),
            None => Ok(()),
        }
    }

    /// Records that subscription `sub` is open.
    pub(super) fn opened(&self, sub: u64) {
        self.lock().open.insert(sub);
    }

    /// Ends subscription `sub` and drops what waits for it.
    pub(super) fn close(&self, sub: u64) {
        let mut conn = self.lock();
        conn.open.remove(&sub);
        conn.stash.remove(&sub);
        // A dead connection has no subscription left to end.
        let _ = conn.client.unsubscribe(sub);
    }

    /// The next notice of subscription `sub`, waiting until `deadline`;
    /// notices of other open subscriptions read meanwhile are kept for
    /// them.
    pub(super) fn next_notice(
        &self,
        sub: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<Notice>, ClientError> {
        loop {
            {
                let mut conn = self.lock();
                if let Some(n) = conn.stash.get_mut(&sub).and_then(VecDeque::pop_front) {
                    return Ok(Some(n));
                }
                match conn.client.next_notice(Some(slice_until(deadline)))? {
                    Some(n) if n.subscription() == sub => return Ok(Some(n)),
                    Some(n) => {
                        let to = n.subscription();
                        if conn.open.contains(&to) {
                            conn.stash.entry(to).or_default().push_back(n);
                        }
                    }
                    None if passed(deadline) => return Ok(None),
                    None => {}
                }
            }
            std::thread::yield_now();
        }
    }
}

/// The next slice of a wait until `deadline`.
fn slice_until(deadline: Option<Instant>) -> Duration {
    deadline.map_or(SLICE, |d| {
        d.saturating_duration_since(Instant::now()).min(SLICE)
    })
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// The event an operation raises.
fn event_of(op: Op) -> EventKind {
    match op {
        Op::Offer => EventKind::Offer,
        Op::Withdraw => EventKind::Withdraw,
        Op::Require => EventKind::Require,
        Op::Demand => EventKind::Demand,
        Op::Retract => EventKind::Retract,
        Op::Seal => EventKind::Seal,
        Op::Dispose => EventKind::Dispose,
        Op::SetAttribute | Op::AttachData => EventKind::Declare,
    }
}

/// The error of `op` on `name` as one process would report it.
pub(super) fn op_error(e: ClientError, name: &Arc<str>, op: Op, waited: Duration) -> Error {
    let name = Arc::clone(name);
    match e {
        ClientError::Timeout => Error::Timeout {
            name,
            op,
            timeout: waited,
        },
        ClientError::Pool {
            code: ErrorCode::AckTimeout,
            ..
        } => Error::AckTimeout {
            name,
            kind: event_of(op),
            waited,
        },
        ClientError::Pool {
            code: ErrorCode::DuplicateName,
            ..
        } => Error::AlreadyOffered { name },
        other => Error::PoolManager(other),
    }
}

/// A CDO handle whose pool is a manager: the lifecycle of
/// [`lifecycle`](crate::lifecycle) checked here, the operations sent by
/// name.
pub(super) struct RemoteCdo<'p> {
    remote: &'p Remote,
    name: Arc<str>,
    state: State,
    attrs: Attributes,
    /// The producer's bytes until the offer copies them into shared memory.
    bytes: Option<Vec<u8>>,
    /// A withdrawal or demand sent and not answered yet.
    pending: Option<RequestId>,
    /// The request that offered this handle's object, which its
    /// withdrawal names (the client may have other versions of the name
    /// on offer).
    offered_by: Option<RequestId>,
    /// The attributes of the object demanded.
    received: Option<FlatAttributes>,
    /// The keys an offer of restored attributes carries (see
    /// [`RemoteCdo::restore_attributes`]); every built-in when `None`.
    restored: Option<Vec<String>>,
}

impl<'p> RemoteCdo<'p> {
    pub(super) fn new(remote: &'p Remote, name: &str) -> Self {
        RemoteCdo {
            remote,
            name: name.into(),
            state: State::Declared,
            attrs: Attributes::default(),
            bytes: None,
            pending: None,
            offered_by: None,
            received: None,
            restored: None,
        }
    }

    pub(super) fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(super) fn state(&self) -> State {
        self.state
    }

    pub(super) fn attributes(&self) -> &Attributes {
        &self.attrs
    }

    pub(super) fn offered_attributes(&self) -> Option<FlatAttributes> {
        match self.state {
            State::Offered | State::Withdrawn => Some(self.attrs.flatten()),
            _ => self.received.clone(),
        }
    }

    fn check(&self, op: Op) -> Result<State> {
        self.state.after(op).ok_or_else(|| Error::InvalidState {
            name: Arc::clone(&self.name),
            op,
            state: self.state,
        })
    }

    fn inconsistent(&self, reason: String) -> Error {
        Error::Inconsistent {
            name: Arc::clone(&self.name),
            reason,
        }
    }

    /// Sets a built-in attribute (type-checked here) or a user attribute
    /// (checked here against the manager's schema when it sent it, as an
    /// in-process pool checks against its own; by the manager when offered
    /// otherwise). False when the attribute was dropped as unknown.
    pub(super) fn set(&mut self, key: &str, value: Value) -> Result<bool> {
        self.check(Op::SetAttribute)?;
        let schema = self.remote.schema.as_ref().map(|m| (&*m.schema, m.unknown));
        let Some(new) = attrs::set_attribute(&self.attrs, key, value, schema)? else {
            return Ok(false);
        };
        let attached = self.bytes.as_ref().map(Vec::len);
        attrs::check_attached(new.size, attached).map_err(|reason| self.inconsistent(reason))?;
        self.attrs = new;
        Ok(true)
    }

    /// Sets the member list of a CDO group's manifest.
    pub(super) fn set_members(&mut self, members: Vec<String>) -> Result<()> {
        self.check(Op::SetAttribute)?;
        self.attrs.members = members;
        Ok(())
    }

    /// Sets each of `flat` (as [`RemoteCdo::set`]); the offer then carries
    /// only these keys, as they were kept, not every built-in.
    pub(super) fn restore_attributes(&mut self, flat: &FlatAttributes) -> Result<()> {
        for (key, value) in flat {
            self.set(key, value.clone())?;
        }
        self.restored = Some(flat.keys().cloned().collect());
        Ok(())
    }

    /// The size the attributes imply ([`attrs::Attributes::implied_size`]).
    fn implied_size(&self) -> Result<Option<u64>> {
        self.attrs
            .implied_size()
            .map_err(|reason| self.inconsistent(reason))
    }

    /// Copies `bytes` in as the data, as in process: empty bytes attach
    /// nothing ([`attrs::attach_sets_size`]).
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.check(Op::AttachData)?;
        if self.bytes.is_some() {
            return Err(self.inconsistent("data is attached already".into()));
        }
        let len = bytes.len() as u64;
        let sealed = self.state != State::Declared;
        match attrs::attach_sets_size(self.implied_size()?, len, sealed) {
            Err(reason) => return Err(self.inconsistent(reason)),
            Ok(true) => self.attrs.size = Some(len),
            Ok(false) => {}
        }
        if len > 0 {
            self.bytes = Some(bytes.to_vec());
        }
        Ok(())
    }

    /// The bytes to offer, writable: those written, or zeroed ones of the
    /// size the attributes imply.
    pub(super) fn buffer_mut(&mut self) -> Result<&mut [u8]> {
        self.check(Op::AttachData)?;
        if self.bytes.is_none() {
            let size = match self.implied_size()? {
                Some(s) if s > 0 => s,
                _ => return Err(self.inconsistent("allocation needs a non-zero size".into())),
            };
            let len = usize::try_from(size)
                .map_err(|_| self.inconsistent(format!("size {size} does not fit in memory")))?;
            self.bytes = Some(vec![0; len]);
        }
        Ok(self.bytes.as_deref_mut().unwrap_or_default())
    }

    /// Seals; with the manager's schema, fails as in process when a
    /// required attribute is missing.
    pub(super) fn seal(&mut self) -> Result<()> {
        let next = self.check(Op::Seal)?;
        if let Some(m) = &self.remote.schema {
            m.schema.check_required(&self.name, &self.attrs.user)?;
        }
        self.state = next;
        self.tell(EventKind::Seal, Op::Seal)
    }

    /// Tells the pool's subscribers of lifecycle step `kind` (of `op`),
    /// as [`Remote::lifecycle`].
    fn tell(&self, kind: EventKind, op: Op) -> Result<()> {
        let started = Instant::now();
        self.remote
            .lifecycle(kind, &self.name, || self.attrs.flatten())
            .map_err(|e| op_error(e, &self.name, op, started.elapsed()))
    }

    /// Raises the declaration event. A declaration always yields its
    /// handle, as in process: a failure to tell is only logged.
    pub(super) fn tell_declared(&self) {
        let told = self
            .remote
            .lifecycle(EventKind::Declare, &self.name, || self.attrs.flatten());
        if let Err(e) = told {
            warn!(name = %self.name, error = %e, "declare event not raised");
        }
    }

    /// Takes the reply of an operation that leads to `next`: an
    /// acknowledgement timeout means it took effect all the same.
    fn settle(
        &mut self,
        next: State,
        op: Op,
        started: Instant,
        reply: Result<Reply, ClientError>,
    ) -> Result<Reply> {
        let (taken, reply) = match reply {
            Ok(reply) => (true, Ok(reply)),
            Err(e) => {
                let e = op_error(e, &self.name, op, started.elapsed());
                (matches!(e, Error::AckTimeout { .. }), Err(e))
            }
        };
        if taken {
            self.state = next;
        }
        reply
    }

    pub(super) fn offer(&mut self) -> Result<()> {
        let next = self.check(Op::Offer)?;
        let size = self.implied_size()?.unwrap_or(0);
        let bytes = self.bytes.take().unwrap_or_default();
        if size != bytes.len() as u64 {
            let have = bytes.len();
            self.bytes = Some(bytes);
            return Err(self.inconsistent(format!("size {size} but {have} bytes attached")));
        }
        let mut flat = self.attrs.flatten();
        if let Some(keys) = &self.restored {
            flat.retain(|k, _| keys.contains(k));
        }
        // The offer carries the size in its own field.
        flat.remove(SIZE_KEY);
        let started = Instant::now();
        let name = Arc::clone(&self.name);
        let submitted = self
            .remote
            .submit(|c| c.submit_offer(&name, size, flat, |dst| dst.copy_from_slice(&bytes)));
        let reply = submitted.and_then(|id| {
            self.offered_by = Some(id);
            self.remote.await_reply(id)
        });
        self.settle(next, Op::Offer, started, reply).map(drop)
    }

    /// Sends the withdrawal of this handle's object.
    fn submit_withdraw(&self) -> std::result::Result<RequestId, ClientError> {
        let name = &self.name;
        match self.offered_by {
            Some(offer) => self.remote.submit(|c| c.submit_withdraw_offer(name, offer)),
            None => self.remote.submit(|c| c.submit_withdraw(name)),
        }
    }

    /// Withdraws, waiting until `deadline`; false (still offered, the
    /// withdrawal pending) when it passed.
    pub(super) fn withdraw_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let next = self.check(Op::Withdraw)?;
        let started = Instant::now();
        let id = match self.pending {
            Some(id) => id,
            None => {
                let id = self
                    .submit_withdraw()
                    .map_err(|e| op_error(e, &self.name, Op::Withdraw, Duration::ZERO))?;
                self.pending = Some(id);
                id
            }
        };
        match self.remote.wait(id, deadline) {
            Err(ClientError::Timeout) => Ok(false),
            reply => {
                self.pending = None;
                self.settle(next, Op::Withdraw, started, reply)
                    .map(|_| true)
            }
        }
    }

    pub(super) fn require(&mut self) -> Result<()> {
        let next = self.check(Op::Require)?;
        self.send_require(next)
    }

    /// Sends a require and goes to `next` once it is taken.
    fn send_require(&mut self, next: State) -> Result<()> {
        let started = Instant::now();
        let name = Arc::clone(&self.name);
        let attrs = self.attrs.flatten();
        let reply = self
            .remote
            .request(move |c| c.submit_require_with(&name, attrs));
        self.settle(next, Op::Require, started, reply).map(drop)
    }

    /// Demands, waiting until `deadline`; `None` (still required, the
    /// demand pending) when it passed.
    pub(super) fn demand_until(&mut self, deadline: Option<Instant>) -> Result<Option<View<'p>>> {
        let next = self.check(Op::Demand)?;
        let started = Instant::now();
        let id = match self.pending {
            Some(id) => id,
            None => {
                let name = Arc::clone(&self.name);
                let id = self
                    .remote
                    .submit(|c| c.submit_demand(&name))
                    .map_err(|e| op_error(e, &self.name, Op::Demand, Duration::ZERO))?;
                self.pending = Some(id);
                id
            }
        };
        let reply = match self.remote.wait(id, deadline) {
            Err(ClientError::Timeout) => return Ok(None),
            reply => reply,
        };
        self.pending = None;
        match self.settle(next, Op::Demand, started, reply)? {
            Reply::Data(view) => {
                self.received = Some(view.attrs().clone());
                if self.attrs.wants_as_offered() {
                    return Ok(Some(View::remote(view, self.remote)));
                }
                // Shared memory lies in no space of this process: a wanted
                // place, layout or way of storing records is always a
                // copy, as a place other than the data's is in process.
                let converted = self
                    .remote
                    .mamba()
                    .and_then(|mamba| convert_view(mamba, &view, &self.attrs));
                match converted {
                    Ok(converted) => {
                        drop(view);
                        self.remote.flush();
                        Ok(Some(View::local(converted.into())))
                    }
                    Err(e) => {
                        // The handle stays required, as in process: it
                        // requires again while its view still holds the
                        // object, so a producer's withdrawal waits for it.
                        // Should that fail, it stays demanded.
                        self.received = None;
                        if let Err(again) = self.send_require(State::Required) {
                            warn!(name = %self.name, error = %again, "not required again");
                        }
                        drop(view);
                        Err(e)
                    }
                }
            }
            other => Err(Error::PoolManager(ClientError::Unexpected(format!(
                "{other:?}"
            )))),
        }
    }

    pub(super) fn retract(&mut self) -> Result<()> {
        let next = self.check(Op::Retract)?;
        // The retraction ends a demand still waiting.
        if let Some(id) = self.pending.take() {
            self.remote.abandon(id);
        }
        let started = Instant::now();
        let name = Arc::clone(&self.name);
        let attrs = self.attrs.flatten();
        let reply = self
            .remote
            .request(move |c| c.submit_retract_with(&name, attrs));
        self.settle(next, Op::Retract, started, reply).map(drop)
    }

    pub(super) fn dispose(&mut self) -> Result<()> {
        self.state = self.check(Op::Dispose)?;
        self.bytes = None;
        self.tell(EventKind::Dispose, Op::Dispose)
    }
}

impl Drop for RemoteCdo<'_> {
    /// Gives up an offer (withdrawn once the requires made before are
    /// served) or a require, without waiting for the manager's answer.
    fn drop(&mut self) {
        let name = Arc::clone(&self.name);
        let follow_up = match self.state {
            State::Offered if self.pending.is_none() => Some(self.submit_withdraw()),
            State::Required => {
                let attrs = self.attrs.flatten();
                Some(
                    self.remote
                        .submit(move |c| c.submit_retract_with(&name, attrs)),
                )
            }
            _ => None,
        };
        if let Some(id) = self.pending.take() {
            self.remote.abandon(id);
        }
        if let Some(Ok(id)) = follow_up {
            self.remote.abandon(id);
        }
    }
}
