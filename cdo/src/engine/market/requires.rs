//! The requires one client made of one name: each is its own promise, as
//! each of an in-process pool's handles makes its own, so a client whose
//! two handles require a name holds its withdrawal until both are served.

use std::collections::VecDeque;

/// A client's requires of one name, oldest first, each with the object it
/// was matched with: the newest on offer when it was made, else the next
/// offered (`None` until then). A demand serves the oldest; a retraction
/// ends the newest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Matches {
    oldest: Option<u64>,
    /// The requires after the oldest (empty, allocating nothing, for the
    /// common single require).
    later: VecDeque<Option<u64>>,
}

impl Matches {
    /// One require, matched with `matched`.
    pub(super) fn new(matched: Option<u64>) -> Self {
        Matches {
            oldest: matched,
            later: VecDeque::new(),
        }
    }

    /// One more require, matched with `matched`.
    pub(super) fn push(&mut self, matched: Option<u64>) {
        self.later.push_back(matched);
    }

    /// How many requires there are (at least one).
    pub(super) fn len(&self) -> usize {
        1 + self.later.len()
    }

    /// The object the oldest require was matched with: the one a demand
    /// gets.
    pub(super) fn oldest(&self) -> Option<u64> {
        self.oldest
    }

    /// Whether one of the requires was matched with `object`.
    pub(super) fn holds(&self, object: u64) -> bool {
        self.iter().any(|m| m == Some(object))
    }

    /// Every require's match, oldest first.
    fn iter(&self) -> impl Iterator<Item = Option<u64>> + '_ {
        std::iter::once(self.oldest).chain(self.later.iter().copied())
    }

    /// Every require's match, to be matched again.
    pub(super) fn matches_mut(&mut self) -> impl Iterator<Item = &mut Option<u64>> {
        std::iter::once(&mut self.oldest).chain(self.later.iter_mut())
    }

    /// Ends one require: the oldest when `served` (a demand got its
    /// object), else the newest (a retraction). False when none is left.
    pub(super) fn end_one(&mut self, served: bool) -> bool {
        let next = match served {
            true => self.later.pop_front(),
            false => self.later.pop_back().map(|_| self.oldest),
        };
        match next {
            Some(oldest) => {
                self.oldest = oldest;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Matches;

    #[test]
    fn a_demand_serves_the_oldest_and_a_retraction_ends_the_newest() {
        let mut m = Matches::new(Some(1));
        m.push(Some(2));
        m.push(None);
        assert_eq!(m.len(), 3);
        assert!(m.holds(2) && !m.holds(3));

        assert!(m.end_one(true), "two are left");
        assert_eq!(m.oldest(), Some(2));
        assert!(m.end_one(false), "one is left");
        assert_eq!((m.len(), m.oldest()), (1, Some(2)));
        assert!(!m.end_one(false), "none is left");
    }

    #[test]
    fn every_match_can_be_made_again() {
        let mut m = Matches::new(None);
        m.push(Some(4));
        m.matches_mut()
            .filter(|x| x.is_none())
            .for_each(|x| *x = Some(5));
        assert!(m.holds(5) && m.holds(4));
        assert!(m.end_one(true));
        assert_eq!(m.oldest(), Some(4));
    }
}
