//! The life of a CDO handle: states, operations, and the one table that
//! says which operation is allowed where.
//!
//! ```text
//! producer: Declared -seal-> Sealed -offer-> Offered -withdraw-> Withdrawn -dispose-> Disposed
//! consumer: Declared -require-> Required -demand-> Demanded -dispose-> Disposed
//!                               Required -retract-> Retracted -dispose-> Disposed
//! ```
//!
//! Attributes change only while `Declared`; data may be attached while
//! `Declared` or `Sealed`; `require` seals implicitly; a handle that never
//! offered or required may be disposed at once.

use std::fmt;

/// Where a CDO handle is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Named; attributes may change.
    Declared,
    /// Attributes frozen.
    Sealed,
    /// Producer: data on offer, immutable.
    Offered,
    /// Producer: offer taken back.
    Withdrawn,
    /// Consumer: interest registered.
    Required,
    /// Consumer: data received.
    Demanded,
    /// Consumer: interest given up.
    Retracted,
    /// Finished; every further operation fails.
    Disposed,
}

/// An operation on a CDO handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Setting an attribute.
    SetAttribute,
    /// Attaching or allocating the producer's data.
    AttachData,
    /// Freezing the attributes.
    Seal,
    /// Publishing the data.
    Offer,
    /// Taking the offer back.
    Withdraw,
    /// Registering interest.
    Require,
    /// Receiving the data.
    Demand,
    /// Giving up interest.
    Retract,
    /// Ending the handle.
    Dispose,
}

impl State {
    /// Every state.
    pub const ALL: [State; 8] = [
        State::Declared,
        State::Sealed,
        State::Offered,
        State::Withdrawn,
        State::Required,
        State::Demanded,
        State::Retracted,
        State::Disposed,
    ];

    /// The state `op` leads to from `self`, `None` when not allowed.
    pub fn after(self, op: Op) -> Option<State> {
        use Op::*;
        use State::*;
        Some(match (self, op) {
            (Declared, SetAttribute) => Declared,
            (Declared | Sealed, AttachData) => self,
            (Declared, Seal) => Sealed,
            (Sealed, Offer) => Offered,
            (Offered, Withdraw) => Withdrawn,
            (Declared | Sealed, Require) => Required,
            (Required, Demand) => Demanded,
            (Required, Retract) => Retracted,
            (Declared | Sealed | Withdrawn | Demanded | Retracted, Dispose) => Disposed,
            _ => return None,
        })
    }
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 9] = [
        Op::SetAttribute,
        Op::AttachData,
        Op::Seal,
        Op::Offer,
        Op::Withdraw,
        Op::Require,
        Op::Demand,
        Op::Retract,
        Op::Dispose,
    ];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
