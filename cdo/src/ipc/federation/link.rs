//! Messages between pool managers and their framing on a TCP stream: a
//! little-endian `u32` length, then the message in postcard.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use super::auth::PROOF_LEN;
use crate::events::EventKind;
use crate::ipc::wire::Attributes;

/// Largest peer frame accepted.
pub(super) const MAX_PEER_FRAME: usize = 1 << 20;

/// Every message between two pool managers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum PeerMsg {
    /// Dialler → listener, first message.
    Hello {
        /// Peer protocol version.
        version: u32,
        /// The dialler's node name (its listening address).
        node: String,
        /// The dialler's nonce.
        nonce: [u8; PROOF_LEN],
    },
    /// Listener → dialler: its nonce and its proof.
    Challenge {
        /// The listener's node name.
        node: String,
        /// The listener's nonce.
        nonce: [u8; PROOF_LEN],
        /// The listener's proof.
        proof: [u8; PROOF_LEN],
    },
    /// Dialler → listener: the dialler's proof.
    Proof {
        /// The proof.
        proof: [u8; PROOF_LEN],
    },
    /// Listener → dialler: joined.
    Welcome,
    /// Either way: the handshake failed, the connection closes.
    Refused {
        /// Why.
        reason: String,
    },
    /// An object offered on the sender's node, readable at `region`.
    Offered {
        /// Its name.
        name: String,
        /// Its attributes.
        attrs: Attributes,
        /// Its size.
        size: u64,
        /// A fabric region descriptor (text form) of its bytes.
        region: String,
    },
    /// A small object offered on the sender's node, its bytes carried in
    /// the message itself (the eager path: no remote read follows, and no
    /// memory of the sender's stays exposed for it).
    OfferedInline {
        /// Its name.
        name: String,
        /// Its attributes.
        attrs: Attributes,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The object is withdrawn on the sender's node: read it no more, and
    /// answer with `Released` once no read of it is in flight.
    Withdrawn {
        /// Its name.
        name: String,
    },
    /// The answer to `Withdrawn`, and to `Replica`: no read of the object
    /// is in flight any more.
    Released {
        /// Its name.
        name: String,
    },
    /// The sender's node has `members` members of consumer group `group`
    /// (0: none any more); the receiver keeps a proxy member of that
    /// weight in its group.
    Group {
        /// The group.
        group: String,
        /// Its selector.
        selector: String,
        /// The sender's members of it.
        members: u32,
        /// Since when the sender has members: a new value each time its
        /// members went from none to some.
        epoch: u64,
    },
    /// A record of `group` given to the receiver's members: the object the
    /// sender offered as `name` (announced before on this link), its
    /// delivery `event` on the sender's node.
    Record {
        /// The group.
        group: String,
        /// The object's name.
        name: String,
        /// The delivery's id on the sender's node.
        event: u64,
        /// The receiver's epoch of the group the record was given under
        /// (from its `Group`): a record given to members that have all
        /// gone since is dropped (the sender gives it to others).
        epoch: u64,
    },
    /// The answer to `Record`: a member of the sender's node is done with
    /// the receiver's delivery `event`.
    Done {
        /// The delivery's id on the receiver's node.
        event: u64,
    },
    /// `required`: a client of the sender's node requires `name`, which no
    /// node offered yet; the receiver requires it too, so that an offer of
    /// it there is held (its withdrawal waits) until the sender has its
    /// copy. Not `required`: the sender has it (or offers it itself) and
    /// the receiver's hold ends.
    Required {
        /// The name.
        name: String,
        /// Whether the hold starts or ends.
        required: bool,
    },
    /// The sender needs `name` (a demand or a require waits there) and
    /// lost the node that offered it, or could not read it from there;
    /// a receiver that holds a complete copy answers with `Replica` or
    /// `ReplicaInline`; the others raise a Require event of it from the
    /// sender's node, which a librarian there answers with an offer of
    /// its archived copy, until `Sought`.
    Seek {
        /// The name.
        name: String,
    },
    /// The sender's `Seek` of `name` is over (it has a copy): a require
    /// raised for it on the receiver's node ends.
    Sought {
        /// The name.
        name: String,
    },
    /// The answer to `Seek`: the sender's copy of `name`, readable at
    /// `region` until the receiver answers `Released`. Not an offer: the
    /// receiver raises no event and announces nothing of it.
    Replica {
        /// Its name.
        name: String,
        /// Its attributes.
        attrs: Attributes,
        /// Its size.
        size: u64,
        /// A fabric region descriptor (text form) of its bytes.
        region: String,
    },
    /// The answer to `Seek` for a small object: the sender's copy of
    /// `name`, its bytes in the message (no answer follows).
    ReplicaInline {
        /// Its name.
        name: String,
        /// Its attributes.
        attrs: Attributes,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// A consumer on the sender's node required, demanded or retracted
    /// `name`, which the receiver offers: the receiver raises that event
    /// for its subscribers, from the sender's node.
    Consumer {
        /// [`EventKind::Require`], [`EventKind::Demand`] or
        /// [`EventKind::Retract`]; any other is ignored.
        kind: EventKind,
        /// The object.
        name: String,
    },
    /// The lifecycle kinds (declare, seal, dispose) that the sender's own
    /// subscribers take, replacing what it said before: the receiver
    /// tells it of its clients' steps of those kinds.
    Interest {
        /// The kinds' [`EventMask`](crate::events::EventMask) bits; any
        /// other kind is ignored.
        kinds: u16,
    },
    /// A client on the sender's node declared, sealed or disposed `name`:
    /// the receiver raises that event for its subscribers, from the
    /// sender's node.
    Lifecycle {
        /// [`EventKind::Declare`], [`EventKind::Seal`] or
        /// [`EventKind::Dispose`]; any other is ignored.
        kind: EventKind,
        /// The object.
        name: String,
        /// The attributes the step's event carries.
        attrs: Attributes,
    },
}

/// Writes one framed message.
pub(super) fn write_msg(w: &mut impl Write, msg: &PeerMsg) -> io::Result<()> {
    write_frame(w, &encode(msg)?)
}

/// One message framed, ready to be written to any number of links.
pub(super) fn encode(msg: &PeerMsg) -> io::Result<Vec<u8>> {
    // The length prefix is written in place once the body is known.
    let frame = postcard::to_extend(msg, vec![0u8; 4])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = frame.len() - 4;
    if len > MAX_PEER_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("peer message of {len} bytes exceeds {MAX_PEER_FRAME}"),
        ));
    }
    let mut frame = frame;
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(frame)
}

/// Writes a frame made by [`encode`].
pub(super) fn write_frame(w: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame)?;
    w.flush()
}

/// Reads one framed message.
pub(super) fn read_msg(r: &mut impl Read) -> io::Result<PeerMsg> {
    let mut len = [0; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_PEER_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer frame of {len} bytes exceeds {MAX_PEER_FRAME}"),
        ));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    postcard::from_bytes(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_oversized_frames_are_refused() {
        let msg = PeerMsg::Offered {
            name: "a/b".into(),
            attrs: Attributes::new(),
            size: 7,
            region: "provider=tcp".into(),
        };
        let mut buf = Vec::new();
        write_msg(&mut buf, &msg).unwrap();
        assert_eq!(read_msg(&mut buf.as_slice()).unwrap(), msg);
        // The best-effort seek's messages too.
        let seek = [
            PeerMsg::Seek { name: "a/b".into() },
            PeerMsg::Sought { name: "a/b".into() },
            PeerMsg::Replica {
                name: "a/b".into(),
                attrs: Attributes::new(),
                size: 1 << 20,
                region: "provider=tcp".into(),
            },
            PeerMsg::ReplicaInline {
                name: "a/b".into(),
                attrs: Attributes::new(),
                bytes: vec![1, 2, 3],
            },
            // And a consumer's event for the offering node.
            PeerMsg::Consumer {
                kind: EventKind::Demand,
                name: "a/b".into(),
            },
            // And the lifecycle events that subscribers elsewhere take.
            PeerMsg::Interest { kinds: 0b1010 },
            PeerMsg::Lifecycle {
                kind: EventKind::Seal,
                name: "a/b".into(),
                attrs: Attributes::new(),
            },
        ];
        for msg in seek {
            let mut buf = Vec::new();
            write_msg(&mut buf, &msg).unwrap();
            assert_eq!(read_msg(&mut buf.as_slice()).unwrap(), msg);
        }
        let mut huge = ((MAX_PEER_FRAME + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let e = read_msg(&mut huge.as_slice()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A truncated frame is an error, not a partial message.
        assert!(read_msg(&mut &buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn an_inline_object_arrives_whole_or_not_at_all() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let msg = PeerMsg::OfferedInline {
            name: "small".into(),
            attrs: Attributes::new(),
            bytes: bytes.clone(),
        };
        let frame = encode(&msg).unwrap();
        let mut buf = Vec::new();
        write_frame(&mut buf, &frame).unwrap();
        write_msg(&mut buf, &msg).unwrap();
        // Encoded once or per message: the same frame, the same bytes back.
        assert_eq!(buf, [frame.clone(), frame.clone()].concat());
        let mut r = buf.as_slice();
        for _ in 0..2 {
            match read_msg(&mut r).unwrap() {
                PeerMsg::OfferedInline { bytes: got, .. } => assert_eq!(got, bytes),
                other => panic!("{other:?}"),
            }
        }
        // A link cut anywhere in the frame (a peer dying mid-message)
        // yields an error, never part of the object.
        for cut in 0..frame.len() {
            assert!(read_msg(&mut &frame[..cut]).is_err(), "cut at {cut}");
        }
    }
}
