//! The rules of an offer that both hosts apply: the pool manager through
//! the [`Engine`](super::Engine), the in-process [`Pool`](crate::Pool)
//! under its per-name locks. Each rule is written once, here, so that the
//! two deployments cannot drift apart on it (`tests/semantics.rs` checks
//! each in both).

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use crate::attrs::Priority;
use crate::config::DuplicateOffers;

/// How far ahead a minimum lifetime too long for the clock ends: it holds
/// as good as forever (about 136 years).
const FOREVER: Duration = Duration::from_secs(1 << 32);

/// Whether a new offer of a name is admitted while `on_offer` offers of
/// it are not withdrawn: always under [`DuplicateOffers::Version`], only
/// when there is none under [`DuplicateOffers::Reject`].
pub(crate) fn admits_offer(duplicates: DuplicateOffers, on_offer: bool) -> bool {
    duplicates == DuplicateOffers::Version || !on_offer
}

/// The version of a new offer of a name whose newest offer still on offer
/// has version `newest` (`None`: nothing on offer): 0 for the first, one
/// more than the newest otherwise. A number withdrawn with its offer is
/// given again to the next.
pub(crate) fn next_version(newest: Option<u64>) -> u64 {
    newest.map_or(0, |v| v + 1)
}

/// When the minimum lifetime `lifetime` of an object offered at `offered`
/// ends: `None` for no lifetime (zero); a lifetime past what the clock can
/// hold ends [`FOREVER`] from now, never at once.
pub(crate) fn lifetime_end(lifetime: Duration, offered: Instant) -> Option<Instant> {
    (!lifetime.is_zero()).then(|| {
        offered
            .checked_add(lifetime)
            .or_else(|| offered.checked_add(FOREVER))
            .unwrap_or(offered)
    })
}

/// Whether a minimum lifetime that ends at `end` (`None`: no lifetime)
/// is over at the time `now` gives; the clock is read only for a
/// lifetime (a withdrawal asks on every cycle).
#[inline]
pub(crate) fn lifetime_over(end: Option<Instant>, now: impl FnOnce() -> Instant) -> bool {
    end.is_none_or(|end| now() >= end)
}

/// An offer as guided-I/O order sees it: its priority, name and version.
pub(crate) type GuidedIo<'a> = (Priority, &'a str, u64);

/// Guided-I/O order, what a query lists first: by priority (output
/// first), then name, then version.
pub(crate) fn guided_io_order(a: GuidedIo<'_>, b: GuidedIo<'_>) -> Ordering {
    a.cmp(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_offer_is_admitted_only_as_a_version() {
        assert!(admits_offer(DuplicateOffers::Reject, false));
        assert!(!admits_offer(DuplicateOffers::Reject, true));
        assert!(admits_offer(DuplicateOffers::Version, true));
        assert!(admits_offer(DuplicateOffers::Version, false));
    }

    #[test]
    fn versions_count_from_the_newest_on_offer() {
        assert_eq!(next_version(None), 0);
        assert_eq!(next_version(Some(0)), 1);
        assert_eq!(next_version(Some(41)), 42);
    }

    #[test]
    fn a_lifetime_ends_after_itself_and_an_endless_one_never_at_once() {
        let now = Instant::now();
        assert_eq!(lifetime_end(Duration::ZERO, now), None);
        let second = Duration::from_secs(1);
        assert_eq!(lifetime_end(second, now), Some(now + second));
        let endless = lifetime_end(Duration::MAX, now).expect("a lifetime");
        assert!(endless >= now + Duration::from_secs(1 << 31));
    }
}
