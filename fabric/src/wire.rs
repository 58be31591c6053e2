//! The message path's control messages and tags, and the layout of the
//! registered scratch buffer they live in.
//!
//! A consumer sends a [`Request`] (tag [`Tag::REQUEST`]); the producer
//! answers with a [`Status`] (tag [`Tag::status`]) and, when it accepted,
//! the region's bytes in chunks (tag [`Tag::data`], one per chunk index), so
//! every chunk lands in its own posted receive whatever the arrival order.

use crate::error::{FabricError, Result};

/// Bytes of the scratch buffer.
pub(crate) const SCRATCH_LEN: usize = 4096;
/// Bytes reserved for one request.
pub(crate) const REQUEST_LEN: usize = 256;
/// Bytes reserved for one status.
pub(crate) const STATUS_LEN: usize = 64;
/// Offset of the consumer's outgoing request.
pub(crate) const REQUEST_OUT: usize = 0;
/// Offset of the consumer's incoming status.
pub(crate) const STATUS_IN: usize = 256;
/// Offset of the producer's outgoing status.
pub(crate) const STATUS_OUT: usize = 320;
/// Request receives a producer keeps posted.
pub(crate) const REQUEST_SLOTS: usize = 8;
/// Request ids use the tag's 28 id bits.
pub(crate) const ID_MASK: u32 = (1 << 28) - 1;

/// Offset of the producer's incoming request in slot `slot`.
pub(crate) fn request_in(slot: usize) -> usize {
    1024 + slot * REQUEST_LEN
}

const REQUEST_MAGIC: u32 = 0x5146_524d; // "MRFQ"
const STATUS_MAGIC: u32 = 0x5346_524d; // "MRFS"
/// Fixed part of a request before the reply-to name.
const REQUEST_HEAD: usize = 4 + 4 + 8 * 4 + 2;

/// Message tags: kind in bits 60..62, request id in 32..60, chunk in 0..32.
pub(crate) struct Tag;

impl Tag {
    /// Tag of every request.
    pub const REQUEST: u64 = 1 << 60;

    /// Tag of the status answering request `id`.
    pub fn status(id: u32) -> u64 {
        (2 << 60) | (((id & ID_MASK) as u64) << 32)
    }

    /// Tag of chunk `chunk` of request `id`.
    pub fn data(id: u32, chunk: u32) -> u64 {
        (3 << 60) | (((id & ID_MASK) as u64) << 32) | chunk as u64
    }
}

/// A consumer's request for a range of an exposed region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub id: u32,
    pub addr: u64,
    pub len: u64,
    pub key: u64,
    pub chunk: u64,
    /// The consumer's endpoint name, where the answer goes.
    pub reply_to: Vec<u8>,
}

fn take<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N]
        .try_into()
        .expect("length checked by the caller")
}

impl Request {
    /// Writes the request into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        let n = REQUEST_HEAD + self.reply_to.len();
        if n > out.len() {
            return Err(FabricError::Protocol(format!(
                "endpoint names of {} bytes do not fit a request",
                self.reply_to.len()
            )));
        }
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..16].copy_from_slice(&self.addr.to_le_bytes());
        out[16..24].copy_from_slice(&self.len.to_le_bytes());
        out[24..32].copy_from_slice(&self.key.to_le_bytes());
        out[32..40].copy_from_slice(&self.chunk.to_le_bytes());
        out[40..42].copy_from_slice(&(self.reply_to.len() as u16).to_le_bytes());
        out[REQUEST_HEAD..n].copy_from_slice(&self.reply_to);
        Ok(n)
    }

    /// Parses a received request.
    pub fn decode(b: &[u8]) -> Result<Request> {
        if b.len() < REQUEST_HEAD || u32::from_le_bytes(take(b, 0)) != REQUEST_MAGIC {
            return Err(FabricError::Protocol("malformed pull request".into()));
        }
        let name_len = u16::from_le_bytes(take(b, 40)) as usize;
        let name = b
            .get(REQUEST_HEAD..REQUEST_HEAD + name_len)
            .ok_or_else(|| FabricError::Protocol("truncated pull request".into()))?;
        Ok(Request {
            id: u32::from_le_bytes(take(b, 4)),
            addr: u64::from_le_bytes(take(b, 8)),
            len: u64::from_le_bytes(take(b, 16)),
            key: u64::from_le_bytes(take(b, 24)),
            chunk: u64::from_le_bytes(take(b, 32)),
            reply_to: name.to_vec(),
        })
    }
}

/// Why a request is refused, by code (0 is "accepted").
const REFUSALS: [&str; 3] = [
    "unknown key",
    "address before the region",
    "range beyond the region",
];

/// The producer's answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    pub id: u32,
    code: u32,
    pub len: u64,
}

impl Status {
    /// The answer to request `id`: accepted, or refused for `refusal` (one
    /// of the reasons the server gives).
    pub fn answer(id: u32, len: u64, refusal: Option<&str>) -> Status {
        let code = refusal.map_or(0, |r| {
            REFUSALS
                .iter()
                .position(|x| *x == r)
                .map_or(REFUSALS.len() as u32, |i| i as u32 + 1)
        });
        Status { id, code, len }
    }

    /// Why the request was refused, `None` when accepted.
    pub fn refusal(&self) -> Option<&'static str> {
        match self.code {
            0 => None,
            c => Some(REFUSALS.get(c as usize - 1).copied().unwrap_or("refused")),
        }
    }

    /// Writes the status into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        out[0..4].copy_from_slice(&STATUS_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.code.to_le_bytes());
        out[12..20].copy_from_slice(&self.len.to_le_bytes());
        20
    }

    /// Parses a received status.
    pub fn decode(b: &[u8]) -> Result<Status> {
        if b.len() < 20 || u32::from_le_bytes(take(b, 0)) != STATUS_MAGIC {
            return Err(FabricError::Protocol("malformed pull status".into()));
        }
        Ok(Status {
            id: u32::from_le_bytes(take(b, 4)),
            code: u32::from_le_bytes(take(b, 8)),
            len: u64::from_le_bytes(take(b, 12)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_reject_garbage() {
        let r = Request {
            id: 42,
            addr: 0xdead_beef,
            len: 1 << 26,
            key: 9,
            chunk: 1 << 20,
            reply_to: vec![1, 2, 3, 4, 5],
        };
        let mut buf = [0u8; REQUEST_LEN];
        let n = r.encode(&mut buf).unwrap();
        assert_eq!(Request::decode(&buf[..n]).unwrap(), r);
        assert!(Request::decode(&buf[..n - 1]).is_err(), "truncated name");
        assert!(Request::decode(&[0u8; 64]).is_err(), "no magic");
        let long = Request {
            reply_to: vec![0; REQUEST_LEN],
            ..r
        };
        assert!(long.encode(&mut buf).is_err());
    }

    #[test]
    fn statuses_carry_refusals() {
        let mut buf = [0u8; STATUS_LEN];
        for refusal in [None, Some("unknown key"), Some("range beyond the region")] {
            let s = Status::answer(7, 100, refusal);
            let n = s.encode(&mut buf);
            let back = Status::decode(&buf[..n]).unwrap();
            assert_eq!(back, s);
            assert_eq!(back.refusal(), refusal);
        }
        assert!(Status::decode(&buf[..10]).is_err());
    }

    #[test]
    fn tags_separate_kinds_ids_and_chunks() {
        let tags = [
            Tag::REQUEST,
            Tag::status(1),
            Tag::status(2),
            Tag::data(1, 0),
            Tag::data(1, 1),
            Tag::data(2, 0),
        ];
        for (i, a) in tags.iter().enumerate() {
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
