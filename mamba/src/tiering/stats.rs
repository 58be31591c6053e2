//! What the tiering moved: per pair of spaces, per pass, and in total.

use crate::tier::{SpaceId, Tier};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Which way data moved in [`super::TIER_ORDER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// To a slower tier.
    Demotion,
    /// To a faster tier.
    Promotion,
}

/// The moves from one space to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairStats {
    /// The space the data left.
    pub from: SpaceId,
    /// Its tier.
    pub from_tier: Tier,
    /// The space the data went to.
    pub to: SpaceId,
    /// Its tier.
    pub to_tier: Tier,
    /// Demotion or promotion.
    pub direction: Direction,
    /// Bytes of data moved (the allocations' requested lengths).
    pub bytes: u64,
    /// Allocations moved.
    pub moves: u64,
    /// Of those, the moves whose pages moved in place (same address).
    pub in_place: u64,
}

/// Everything moved since the allocator was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TieringStats {
    /// Per pair of spaces that saw a move, ordered by (from, to).
    pub pairs: Vec<PairStats>,
    /// Rebalancing passes run ([`crate::Mamba::rebalance`] and the mover's).
    pub passes: u64,
    /// Time spent in passes and in moves made to pin data.
    pub time: Duration,
}

impl TieringStats {
    /// Bytes moved to slower tiers.
    pub fn demoted_bytes(&self) -> u64 {
        self.bytes(Direction::Demotion)
    }

    /// Bytes moved to faster tiers.
    pub fn promoted_bytes(&self) -> u64 {
        self.bytes(Direction::Promotion)
    }

    /// Bytes moved from spaces of tier `from` to spaces of tier `to`.
    pub fn bytes_between(&self, from: Tier, to: Tier) -> u64 {
        self.pairs
            .iter()
            .filter(|p| p.from_tier == from && p.to_tier == to)
            .map(|p| p.bytes)
            .sum()
    }

    fn bytes(&self, direction: Direction) -> u64 {
        self.pairs
            .iter()
            .filter(|p| p.direction == direction)
            .map(|p| p.bytes)
            .sum()
    }
}

/// What one rebalancing pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// Bytes demoted.
    pub demoted_bytes: u64,
    /// Bytes promoted.
    pub promoted_bytes: u64,
    /// Allocations moved.
    pub moves: usize,
    /// Movable allocations left where they were because they were pinned
    /// or being accessed.
    pub busy: usize,
    /// Moves that failed (the target refused the memory, a disk error):
    /// the data stayed where it was, intact, and the error was logged.
    pub failed: usize,
    /// How long the pass took.
    pub time: Duration,
}

/// The running totals behind [`TieringStats`].
#[derive(Debug, Default)]
pub(super) struct Totals {
    pairs: BTreeMap<(SpaceId, SpaceId), PairStats>,
    passes: u64,
    time: Duration,
}

impl Totals {
    /// Counts one move of `bytes` between two spaces.
    pub(super) fn record(
        &mut self,
        from: (SpaceId, Tier),
        to: (SpaceId, Tier),
        direction: Direction,
        bytes: usize,
        in_place: bool,
    ) {
        let pair = self.pairs.entry((from.0, to.0)).or_insert(PairStats {
            from: from.0,
            from_tier: from.1,
            to: to.0,
            to_tier: to.1,
            direction,
            bytes: 0,
            moves: 0,
            in_place: 0,
        });
        pair.bytes += bytes as u64;
        pair.moves += 1;
        pair.in_place += u64::from(in_place);
    }

    /// Counts time spent moving; `pass` when it was a whole pass.
    pub(super) fn add_time(&mut self, time: Duration, pass: bool) {
        self.time += time;
        self.passes += u64::from(pass);
    }

    /// A copy for the caller.
    pub(super) fn snapshot(&self) -> TieringStats {
        TieringStats {
            pairs: self.pairs.values().cloned().collect(),
            passes: self.passes,
            time: self.time,
        }
    }
}
