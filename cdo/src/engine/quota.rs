//! Per-client quotas of the engine, and the limits of a pool manager.
//!
//! [`Limits`] is the configuration (with `CDO_MAX_*` environment
//! variables); [`Quotas`] keeps, per client, how much of each kind it holds
//! and refuses a request that would take it over its limit with
//! [`ErrorCode::QuotaExceeded`], before anything changes. One client at its
//! limits leaves the pool as it was for everyone else.

use super::registry::ClientId;
use crate::ipc::fasthash::FastMap;
use crate::ipc::wire::ErrorCode;

/// Resource limits of a pool manager; the defaults suit a node running a
/// few hundred clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most open connections, joined or not (`CDO_MAX_CONNECTIONS`).
    pub connections: usize,
    /// Most connections that have not joined yet (`CDO_MAX_PENDING`); a
    /// new one beyond closes the oldest.
    pub pending: usize,
    /// Most shared segments whose descriptor the manager holds for one
    /// client (`CDO_MAX_SEGMENTS`).
    pub segments: usize,
    /// Most objects one client offers at a time (`CDO_MAX_OFFERS`).
    pub offers: usize,
    /// Most outstanding requires of one client, a name required twice
    /// counting twice (`CDO_MAX_REQUIRES`).
    pub requires: usize,
    /// Most demands of one client waiting for an offer (`CDO_MAX_DEMANDS`).
    pub demands: usize,
    /// Most operations of one client waiting for acknowledgements, or
    /// withdrawals waiting for requires or a lifetime (`CDO_MAX_WAITERS`).
    pub waiters: usize,
    /// Most subscriptions and group memberships of one client
    /// (`CDO_MAX_SUBSCRIPTIONS`).
    pub subscriptions: usize,
    /// Bytes queued for a client above which the manager stops reading its
    /// requests until they drain (`CDO_MAX_QUEUED_BYTES`); above four
    /// times as much, events for it are dropped (counted in the stats).
    pub queued_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 1024,
            pending: 64,
            segments: 4096,
            offers: 1 << 20,
            requires: 1 << 20,
            demands: 1 << 16,
            waiters: 4096,
            subscriptions: 1024,
            queued_bytes: 16 << 20,
        }
    }
}

/// Where a limit lives in [`Limits`].
type Field = fn(&mut Limits) -> &mut usize;

/// The environment variable and field of every limit.
const VARS: [(&str, Field); 9] = [
    ("CDO_MAX_CONNECTIONS", |l| &mut l.connections),
    ("CDO_MAX_PENDING", |l| &mut l.pending),
    ("CDO_MAX_SEGMENTS", |l| &mut l.segments),
    ("CDO_MAX_OFFERS", |l| &mut l.offers),
    ("CDO_MAX_REQUIRES", |l| &mut l.requires),
    ("CDO_MAX_DEMANDS", |l| &mut l.demands),
    ("CDO_MAX_WAITERS", |l| &mut l.waiters),
    ("CDO_MAX_SUBSCRIPTIONS", |l| &mut l.subscriptions),
    ("CDO_MAX_QUEUED_BYTES", |l| &mut l.queued_bytes),
];

impl Limits {
    /// These limits with every `CDO_MAX_*` variable that is set applied.
    ///
    /// # Errors
    /// A message naming the variable whose value is not a positive number.
    pub fn with_env(mut self) -> Result<Self, String> {
        for (var, field) in VARS {
            if let Ok(v) = std::env::var(var) {
                *field(&mut self) = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{var}={v:?}: expected a positive number"))?;
            }
        }
        Ok(self)
    }
}

/// What a client holds, counted against its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Segment descriptors held by the manager.
    Segments,
    /// Objects on offer.
    Offers,
    /// Outstanding requires.
    Requires,
    /// Demands waiting for an offer.
    Demands,
    /// Operations waiting for acknowledgements.
    Waiters,
    /// Subscriptions and group memberships.
    Subscriptions,
}

const KINDS: usize = 6;

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Segments => "segments",
            Kind::Offers => "offered objects",
            Kind::Requires => "outstanding requires",
            Kind::Demands => "waiting demands",
            Kind::Waiters => "operations waiting for acknowledgements or withdrawals waiting",
            Kind::Subscriptions => "subscriptions",
        }
    }

    fn limit(self, l: &Limits) -> usize {
        match self {
            Kind::Segments => l.segments,
            Kind::Offers => l.offers,
            Kind::Requires => l.requires,
            Kind::Demands => l.demands,
            Kind::Waiters => l.waiters,
            Kind::Subscriptions => l.subscriptions,
        }
    }
}

/// Per-client counts of what each client holds, against [`Limits`].
#[derive(Debug, Default)]
pub struct Quotas {
    limits: Limits,
    used: FastMap<ClientId, [usize; KINDS]>,
    /// Owner of each segment the manager holds, by the manager's id.
    segment_owner: FastMap<u64, ClientId>,
}

impl Quotas {
    /// No client holds anything yet.
    pub fn new(limits: Limits) -> Self {
        Quotas {
            limits,
            ..Quotas::default()
        }
    }

    /// How many of `kind` `client` holds.
    pub fn used(&self, client: ClientId, kind: Kind) -> usize {
        self.used.get(&client).map_or(0, |u| u[kind.index()])
    }

    /// Whether `client` may take one more of `kind`.
    ///
    /// # Errors
    /// [`ErrorCode::QuotaExceeded`], with a message for people.
    pub fn check(&self, client: ClientId, kind: Kind) -> Result<(), (ErrorCode, String)> {
        self.check_count(kind, self.used(client, kind))
    }

    /// Whether a client holding `count` of `kind` may take one more.
    ///
    /// # Errors
    /// As [`Quotas::check`].
    pub fn check_count(&self, kind: Kind, count: usize) -> Result<(), (ErrorCode, String)> {
        let limit = kind.limit(&self.limits);
        if count >= limit {
            return Err((
                ErrorCode::QuotaExceeded,
                format!("at most {limit} {} per client", kind.name()),
            ));
        }
        Ok(())
    }

    /// `client` took one more of `kind`.
    pub fn add(&mut self, client: ClientId, kind: Kind) {
        self.used.entry(client).or_default()[kind.index()] += 1;
    }

    /// `client` gave `n` of `kind` back.
    pub fn sub(&mut self, client: ClientId, kind: Kind, n: usize) {
        if let Some(u) = self.used.get_mut(&client) {
            let slot = &mut u[kind.index()];
            *slot = slot.saturating_sub(n);
        }
    }

    /// `client` handed the manager segment `key`.
    pub fn add_segment(&mut self, client: ClientId, key: u64) {
        self.add(client, Kind::Segments);
        self.segment_owner.insert(key, client);
    }

    /// The manager closed segment `key`.
    pub fn drop_segment(&mut self, key: u64) {
        if let Some(client) = self.segment_owner.remove(&key) {
            self.sub(client, Kind::Segments, 1);
        }
    }

    /// `client` is gone: its counts go (its segments still count until
    /// they are closed, against nobody).
    pub fn forget(&mut self, client: ClientId) {
        self.used.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_count_per_client_and_kind() {
        let mut q = Quotas::new(Limits {
            offers: 2,
            ..Limits::default()
        });
        q.add(1, Kind::Offers);
        q.add(1, Kind::Offers);
        assert_eq!(
            q.check(1, Kind::Offers).unwrap_err().0,
            ErrorCode::QuotaExceeded
        );
        assert!(q.check(2, Kind::Offers).is_ok());
        assert!(q.check(1, Kind::Requires).is_ok());
        q.sub(1, Kind::Offers, 1);
        assert!(q.check(1, Kind::Offers).is_ok());
        q.add_segment(1, 7);
        assert_eq!(q.used(1, Kind::Segments), 1);
        q.drop_segment(7);
        q.drop_segment(7);
        assert_eq!(q.used(1, Kind::Segments), 0);
        q.forget(1);
        assert_eq!(q.used(1, Kind::Offers), 0);
    }

    #[test]
    fn limits_read_from_the_environment() {
        // Only this test sets these variables.
        std::env::set_var("CDO_MAX_SUBSCRIPTIONS", "7");
        let l = Limits::default().with_env().unwrap();
        assert_eq!(l.subscriptions, 7);
        std::env::set_var("CDO_MAX_SUBSCRIPTIONS", "0");
        assert!(Limits::default().with_env().is_err());
        std::env::remove_var("CDO_MAX_SUBSCRIPTIONS");
        assert_eq!(Limits::default().with_env().unwrap(), Limits::default());
    }
}
