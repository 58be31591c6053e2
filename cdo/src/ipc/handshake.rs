//! The opening of a connection: which protocol version and which
//! capabilities a client and the pool manager share.
//!
//! Since client protocol 9 a client opens with [`Msg::Hello`]: the range of
//! protocol versions it speaks, the [`Capabilities`] it would use, and
//! tagged [`Extension`]s. The manager answers [`Msg::Agreed`] (the highest
//! version both speak and the capabilities both have) or
//! [`Msg::NoCommonVersion`] (its own range; it then closes the connection).
//! After AGREED the client joins with [`Msg::Join`] carrying the agreed
//! version. A protocol 8 client skips HELLO and joins at once; so may a
//! protocol 9 client, which then has no capability.
//!
//! The shapes of HELLO, AGREED and NO-COMMON-VERSION never change: a later
//! protocol says what else it needs in new capability bits and new
//! extension tags, which an older peer ignores (unknown bits are not
//! agreed, unknown tags are skipped). So a client and a manager of
//! different protocol versions always learn whether they share one, and a
//! mismatch is a clear refusal on both sides.
//!
//! [`Msg::Hello`]: crate::ipc::wire::Msg::Hello
//! [`Msg::Agreed`]: crate::ipc::wire::Msg::Agreed
//! [`Msg::NoCommonVersion`]: crate::ipc::wire::Msg::NoCommonVersion
//! [`Msg::Join`]: crate::ipc::wire::Msg::Join

use std::fmt;

use serde::{Deserialize, Serialize};

use super::wire::{Msg, PROTOCOL_VERSION};

/// The oldest client protocol the manager still serves (JOIN without
/// HELLO).
pub const OLDEST_PROTOCOL_VERSION: u32 = 8;

/// Most extensions one HELLO or AGREED may carry.
pub const MAX_EXTENSIONS: usize = 16;

/// Most bytes of one extension's value.
pub const MAX_EXTENSION_BYTES: usize = 128;

/// A range of protocol versions, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// The oldest version.
    pub min: u32,
    /// The newest version.
    pub max: u32,
}

impl Versions {
    /// What this build serves as a pool manager: protocol 8 (plain JOIN)
    /// to [`PROTOCOL_VERSION`].
    pub const SERVED: Versions = Versions {
        min: OLDEST_PROTOCOL_VERSION,
        max: PROTOCOL_VERSION,
    };

    /// What this build's client speaks: [`PROTOCOL_VERSION`] only.
    pub const CLIENT: Versions = Versions {
        min: PROTOCOL_VERSION,
        max: PROTOCOL_VERSION,
    };

    /// Whether `version` is in the range.
    pub fn contains(self, version: u32) -> bool {
        self.min <= version && version <= self.max
    }

    /// Whether the range holds no version (`min > max`).
    pub fn is_empty(self) -> bool {
        self.min > self.max
    }

    /// Whether every version of `self` is in `other`.
    pub fn within(self, other: Versions) -> bool {
        !self.is_empty() && other.contains(self.min) && other.contains(self.max)
    }

    /// The highest version in both ranges, if any.
    pub fn highest_common(self, other: Versions) -> Option<u32> {
        let high = self.max.min(other.max);
        (high >= self.min.max(other.min)).then_some(high)
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "protocol {}", self.min)
        } else {
            write!(f, "protocols {} to {}", self.min, self.max)
        }
    }
}

/// A set of optional features of the protocol, one bit each. Bits this
/// build does not know are kept as they came (a newer peer's), never
/// agreed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capabilities(u64);

impl Capabilities {
    /// No capability.
    pub const NONE: Capabilities = Capabilities(0);
    /// Objects travel in sealed memfd segments (the same-node data plane).
    pub const MEMFD: Capabilities = Capabilities(1 << 0);
    /// Late-subscriber replay ([`Msg::SubscribeReplay`]).
    pub const REPLAY: Capabilities = Capabilities(1 << 1);
    /// Group records given back unfinished ([`Msg::GiveBack`]).
    pub const GIVE_BACK: Capabilities = Capabilities(1 << 2);
    /// The manager sends its attribute schema after WELCOME
    /// ([`Msg::Schema`]).
    pub const SCHEMA: Capabilities = Capabilities(1 << 3);
    /// The client tells the manager of its declares, seals and disposes
    /// that subscribers want ([`Msg::Lifecycle`]), read from the interest
    /// page sent after WELCOME ([`Msg::InterestPage`], see
    /// [`interest`](super::interest)).
    pub const LIFECYCLE: Capabilities = Capabilities(1 << 4);
    /// Requires and retracts carry the consumer handle's attributes for
    /// their events ([`Msg::RequireWith`], [`Msg::RetractWith`]).
    pub const CONSUMER_ATTRIBUTES: Capabilities = Capabilities(1 << 5);
    /// The client's own requires hold its withdrawals of the objects they
    /// were matched with, as another client's do (an application's
    /// handles behave as in process). Without it, a client's own requires
    /// hold none of its withdrawals. A client asks for it through
    /// [`ClientConfig::own_requires`](super::client::ClientConfig::own_requires).
    pub const OWN_REQUIRES: Capabilities = Capabilities(1 << 6);
    /// A withdrawal may name the object by the request that offered it
    /// ([`Msg::WithdrawOffer`]), so a client may have several versions of
    /// a name on offer (under `duplicates: version`), as an in-process
    /// application may.
    pub const WITHDRAW_OFFER: Capabilities = Capabilities(1 << 7);
    /// Every capability this build knows.
    pub const KNOWN: Capabilities = Capabilities(
        Self::MEMFD.0
            | Self::REPLAY.0
            | Self::GIVE_BACK.0
            | Self::SCHEMA.0
            | Self::LIFECYCLE.0
            | Self::CONSUMER_ATTRIBUTES.0
            | Self::OWN_REQUIRES.0
            | Self::WITHDRAW_OFFER.0,
    );

    /// The set as bits.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The set of `bits`, unknown ones included.
    pub fn from_bits(bits: u64) -> Capabilities {
        Capabilities(bits)
    }

    /// The set without the capabilities of `other`.
    pub fn without(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & !other.0)
    }

    /// Whether every capability of `other` is in the set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitAnd for Capabilities {
    type Output = Capabilities;
    fn bitand(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 & rhs.0)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::MEMFD, "memfd"),
            (Self::REPLAY, "replay"),
            (Self::GIVE_BACK, "give-back"),
            (Self::SCHEMA, "schema"),
            (Self::LIFECYCLE, "lifecycle"),
            (Self::CONSUMER_ATTRIBUTES, "consumer-attributes"),
            (Self::OWN_REQUIRES, "own-requires"),
            (Self::WITHDRAW_OFFER, "withdraw-offer"),
        ];
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "+" };
            first = false;
            f.write_str(s)
        };
        for (cap, name) in names {
            if self.contains(cap) {
                sep(f)?;
                f.write_str(name)?;
            }
        }
        let unknown = self.0 & !Self::KNOWN.0;
        if unknown != 0 {
            sep(f)?;
            write!(f, "{unknown:#x}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A tagged field that a later protocol adds to HELLO or AGREED; a peer
/// skips the tags it does not know. Protocol 9 defines none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// What the value means.
    pub tag: u16,
    /// The value, in the tag's own encoding.
    pub value: Vec<u8>,
}

/// The body of [`Msg::Hello`]: what a client speaks and would use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol versions the client speaks.
    pub versions: Versions,
    /// The capabilities it would use.
    pub capabilities: Capabilities,
    /// Tagged fields of later protocols.
    pub extensions: Vec<Extension>,
}

impl Hello {
    /// What this build's client sends.
    pub fn ours() -> Hello {
        Hello {
            versions: Versions::CLIENT,
            capabilities: Capabilities::KNOWN,
            extensions: Vec::new(),
        }
    }
}

/// The body of [`Msg::Agreed`]: what the connection uses from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreed {
    /// The protocol version, the one JOIN must carry.
    pub version: u32,
    /// The capabilities both sides have.
    pub capabilities: Capabilities,
    /// Tagged fields of later protocols.
    pub extensions: Vec<Extension>,
}

/// Why a HELLO is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The version range holds no version.
    #[error("empty version range {min}..={max}")]
    EmptyRange {
        /// Its oldest version.
        min: u32,
        /// Its newest version.
        max: u32,
    },
    /// More extensions than [`MAX_EXTENSIONS`].
    #[error("{0} extensions, at most {MAX_EXTENSIONS}")]
    TooManyExtensions(usize),
    /// An extension's value is longer than [`MAX_EXTENSION_BYTES`].
    #[error("extension {tag} of {len} bytes, at most {MAX_EXTENSION_BYTES}")]
    ExtensionTooLong {
        /// The extension's tag.
        tag: u16,
        /// Its length.
        len: usize,
    },
}

/// Checks that `hello` is well formed.
///
/// # Errors
/// The first thing wrong with it.
pub fn check(hello: &Hello) -> Result<(), HelloError> {
    let Versions { min, max } = hello.versions;
    if hello.versions.is_empty() {
        return Err(HelloError::EmptyRange { min, max });
    }
    if hello.extensions.len() > MAX_EXTENSIONS {
        return Err(HelloError::TooManyExtensions(hello.extensions.len()));
    }
    match hello
        .extensions
        .iter()
        .find(|e| e.value.len() > MAX_EXTENSION_BYTES)
    {
        Some(e) => Err(HelloError::ExtensionTooLong {
            tag: e.tag,
            len: e.value.len(),
        }),
        None => Ok(()),
    }
}

/// The manager's answer to a well-formed `hello` when it serves
/// `versions` with `capabilities`: the highest common version and the
/// capabilities both have, or `Err` with the manager's range when no
/// version is common. Extensions of unknown tags (all, in protocol 9) are
/// skipped.
///
/// # Errors
/// `versions` when it shares no version with the client's range.
pub fn negotiate(
    versions: Versions,
    capabilities: Capabilities,
    hello: &Hello,
) -> Result<Agreed, Versions> {
    let version = hello.versions.highest_common(versions).ok_or(versions)?;
    Ok(Agreed {
        version,
        capabilities: hello.capabilities & capabilities & Capabilities::KNOWN,
        extensions: Vec::new(),
    })
}

/// The capabilities a client must have agreed on to send `msg`.
pub fn required(msg: &Msg) -> Capabilities {
    match msg {
        Msg::SubscribeReplay(_) => Capabilities::REPLAY,
        Msg::GiveBack { .. } => Capabilities::GIVE_BACK,
        Msg::Lifecycle(_) => Capabilities::LIFECYCLE,
        Msg::RequireWith(_) | Msg::RetractWith(_) => Capabilities::CONSUMER_ATTRIBUTES,
        _ => Capabilities::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(min: u32, max: u32, caps: Capabilities) -> Hello {
        Hello {
            versions: Versions { min, max },
            capabilities: caps,
            extensions: Vec::new(),
        }
    }

    #[test]
    fn highest_common_version() {
        let served = Versions { min: 8, max: 9 };
        let agreed = negotiate(
            served,
            Capabilities::KNOWN,
            &hello(7, 12, Capabilities::NONE),
        );
        assert_eq!(agreed.map(|a| a.version), Ok(9));
        let agreed = negotiate(
            served,
            Capabilities::KNOWN,
            &hello(3, 8, Capabilities::NONE),
        );
        assert_eq!(agreed.map(|a| a.version), Ok(8));
        let refused = negotiate(
            served,
            Capabilities::KNOWN,
            &hello(10, 11, Capabilities::NONE),
        );
        assert_eq!(refused, Err(served));
        let refused = negotiate(
            served,
            Capabilities::KNOWN,
            &hello(2, 3, Capabilities::NONE),
        );
        assert_eq!(refused, Err(served));
    }

    #[test]
    fn capabilities_intersect_and_unknown_bits_are_not_agreed() {
        let served = Versions::SERVED;
        let client = Capabilities::REPLAY | Capabilities::from_bits(1 << 40);
        let agreed = negotiate(served, Capabilities::KNOWN, &hello(9, 9, client)).unwrap();
        assert_eq!(agreed.capabilities, Capabilities::REPLAY);
        let agreed = negotiate(served, Capabilities::MEMFD, &hello(9, 9, client)).unwrap();
        assert_eq!(agreed.capabilities, Capabilities::NONE);
        assert_eq!(client.to_string(), "replay+0x10000000000");
        assert_eq!(Capabilities::NONE.to_string(), "none");
    }

    #[test]
    fn malformed_hellos_are_named() {
        assert_eq!(
            check(&hello(9, 8, Capabilities::NONE)),
            Err(HelloError::EmptyRange { min: 9, max: 8 })
        );
        let mut h = hello(8, 9, Capabilities::NONE);
        h.extensions = vec![
            Extension {
                tag: 1,
                value: Vec::new()
            };
            MAX_EXTENSIONS + 1
        ];
        assert_eq!(
            check(&h),
            Err(HelloError::TooManyExtensions(MAX_EXTENSIONS + 1))
        );
        h.extensions = vec![Extension {
            tag: 7,
            value: vec![0; MAX_EXTENSION_BYTES + 1],
        }];
        assert!(matches!(
            check(&h),
            Err(HelloError::ExtensionTooLong { tag: 7, .. })
        ));
        assert_eq!(check(&Hello::ours()), Ok(()));
    }

    #[test]
    fn version_ranges() {
        assert!(Versions::CLIENT.within(Versions::SERVED));
        assert!(!Versions { min: 7, max: 9 }.within(Versions::SERVED));
        assert_eq!(Versions { min: 9, max: 9 }.to_string(), "protocol 9");
        assert_eq!(Versions::SERVED.to_string(), "protocols 8 to 9");
    }
}
