//! Which lifecycle events the pool's subscribers want: one word in a page
//! the manager shares with every client.
//!
//! Declare, seal and dispose happen in a client alone: the manager sees
//! them only if the client tells it ([`Msg::Lifecycle`]). So that a pool
//! whose subscribers want none of them pays nothing, the manager keeps an
//! [`Interest`] in a shared page: the lifecycle kinds some plain
//! subscription takes, and those an acknowledged one takes. It writes the
//! page under its state lock, before it answers the subscribe or
//! unsubscribe that changed it, so a client that reads it after that answer
//! sees the change. A client reads it with one atomic load per declare,
//! seal or dispose, and tells the manager only of the kinds it holds:
//! without waiting for a reply when nobody acknowledges them, otherwise as
//! a request whose reply waits for the acknowledgements, as in process.
//!
//! The page is sealed against writes through new mappings
//! (`F_SEAL_FUTURE_WRITE`): clients map it read-only and cannot change what
//! the others see.
//!
//! [`Msg::Lifecycle`]: super::wire::Msg::Lifecycle

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use super::page::SharedPage;
use crate::events::{EventKind, EventMask};

/// The event kinds a client raises itself, and tells the manager of.
pub const LIFECYCLE_KINDS: EventMask = EventMask::from_bits(
    1 << EventKind::Declare as u16 | 1 << EventKind::Seal as u16 | 1 << EventKind::Dispose as u16,
);

/// What the pool's subscribers want of the lifecycle kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Kinds some plain subscription takes.
    pub heard: EventMask,
    /// Kinds some acknowledged subscription takes (a subset of `heard`).
    pub awaited: EventMask,
}

impl Interest {
    /// Nobody wants any.
    pub const NONE: Interest = Interest {
        heard: EventMask::NONE,
        awaited: EventMask::NONE,
    };

    /// The interest of subscriptions to `kinds`, acknowledged or not.
    pub fn of(kinds: EventMask, ack: bool) -> Interest {
        let heard = EventMask::from_bits(kinds.bits() & LIFECYCLE_KINDS.bits());
        Interest {
            heard,
            awaited: if ack { heard } else { EventMask::NONE },
        }
    }

    /// Whether a step of `kind` is to be told: `None` when nobody wants
    /// it, `Some(wait)` when someone does, `wait` saying whether an
    /// acknowledged subscriber does (the step then waits for it).
    pub fn wants(self, kind: EventKind) -> Option<bool> {
        self.heard
            .contains(kind)
            .then(|| self.awaited.contains(kind))
    }

    /// Both interests together.
    #[must_use]
    pub fn union(self, other: Interest) -> Interest {
        Interest {
            heard: self.heard | other.heard,
            awaited: self.awaited | other.awaited,
        }
    }

    fn to_word(self) -> u64 {
        u64::from(self.heard.bits()) | u64::from(self.awaited.bits()) << 16
    }

    fn from_word(word: u64) -> Interest {
        let heard = EventMask::from_bits(word as u16 & LIFECYCLE_KINDS.bits());
        let awaited = EventMask::from_bits((word >> 16) as u16 & heard.bits());
        Interest { heard, awaited }
    }
}

/// The page that carries the pool's [`Interest`].
#[derive(Debug)]
pub struct InterestPage(SharedPage);

impl InterestPage {
    /// The manager's page (nobody interested yet), and the descriptor to
    /// send to clients.
    ///
    /// # Errors
    /// As [`SharedPage::create`].
    pub fn create() -> io::Result<(InterestPage, OwnedFd)> {
        let (page, fd) = SharedPage::create(c"cdo-interest", libc::F_SEAL_FUTURE_WRITE)?;
        Ok((InterestPage(page), fd))
    }

    /// A client's read-only view of the page the manager sent.
    ///
    /// # Errors
    /// As [`SharedPage::open`].
    pub fn open(fd: OwnedFd) -> io::Result<InterestPage> {
        SharedPage::open(fd, false).map(InterestPage)
    }

    /// Publishes `interest` (the manager's side only).
    pub fn set(&self, interest: Interest) {
        self.0.word(0).store(interest.to_word(), Ordering::Release);
    }

    /// The interest published last.
    pub fn get(&self) -> Interest {
        Interest::from_word(self.0.word(0).load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lifecycle_kinds_count() {
        let all = Interest::of(EventMask::ALL, false);
        assert_eq!(all.heard, LIFECYCLE_KINDS);
        assert_eq!(all.awaited, EventMask::NONE);
        let offers = Interest::of(EventKind::Offer | EventKind::Withdraw, true);
        assert_eq!(offers, Interest::NONE);
        let seals = Interest::of(EventKind::Seal | EventKind::Offer, true);
        assert_eq!(seals.heard, EventKind::Seal.into());
        assert_eq!(seals.awaited, EventKind::Seal.into());
    }

    #[test]
    fn a_client_reads_what_the_manager_publishes() {
        let (page, fd) = InterestPage::create().unwrap();
        let client = InterestPage::open(fd).unwrap();
        assert_eq!(client.get(), Interest::NONE);
        let wanted = Interest::of(EventKind::Declare.into(), false)
            .union(Interest::of(EventKind::Dispose.into(), true));
        page.set(wanted);
        assert_eq!(client.get(), wanted);
        assert_eq!(client.get().wants(EventKind::Declare), Some(false));
        assert_eq!(client.get().wants(EventKind::Dispose), Some(true));
        assert_eq!(client.get().wants(EventKind::Seal), None);
    }

    #[test]
    fn clients_cannot_map_the_page_writable() {
        let (_page, fd) = InterestPage::create().unwrap();
        assert!(SharedPage::open(fd, true).is_err());
    }

    #[test]
    fn a_word_with_stray_bits_reads_as_lifecycle_kinds_only() {
        let stray = Interest::from_word(u64::MAX);
        assert_eq!(stray.heard, LIFECYCLE_KINDS);
        assert_eq!(stray.awaited, LIFECYCLE_KINDS);
        let awaited_unheard = Interest::from_word(1 << (16 + EventKind::Seal as u16));
        assert_eq!(awaited_unheard, Interest::NONE);
    }
}
