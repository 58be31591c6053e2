//! Shared segments by key: registered with an offer, kept while objects
//! lie in them, closed once their producer forgot them and they are empty.

use super::{Engine, Outgoing};
use crate::engine::quota::Kind;
use crate::engine::registry::ClientId;
use crate::engine::{Effect, SegmentCheck};
use crate::ipc::fasthash::FastSet;
use crate::ipc::wire::{ErrorCode, Msg, SegmentRef};

pub(super) struct SegRec {
    pub(super) len: u64,
    pub(super) objects: u64,
    pub(super) forgotten: bool,
    pub(super) sent_to: FastSet<ClientId>,
}

impl Engine {
    /// The engine's key of the segment an offer names, registering the
    /// segment that came with it (which `check` checks).
    pub(super) fn segment_of(
        &mut self,
        cid: ClientId,
        seg: SegmentRef,
        check: Option<SegmentCheck<'_>>,
        out: &mut Outgoing,
    ) -> Result<u64, (ErrorCode, String)> {
        let Some(check) = check else {
            return self
                .client(cid)
                .own_segments
                .get(&seg.segment)
                .copied()
                .ok_or((
                    ErrorCode::BadSegment,
                    format!("segment {} never sent", seg.segment),
                ));
        };
        self.quotas.check(cid, Kind::Segments)?;
        let len = check().map_err(|text| (ErrorCode::BadSegment, text))?;
        let key = self.next_segment;
        self.next_segment += 1;
        out.push(Effect::Keep { segment: key });
        self.segments.insert(
            key,
            SegRec {
                len,
                objects: 0,
                forgotten: false,
                sent_to: FastSet::default(),
            },
        );
        self.quotas.add_segment(cid, key);
        if let Some(old) = self.client_mut(cid).own_segments.insert(seg.segment, key) {
            self.forget_segment(old, out);
        }
        Ok(key)
    }

    /// The offer that brought segment `key` (the producer's `segment`) was
    /// refused: the segment is not kept, as the producer assumes, and its
    /// next offer there sends the descriptor again.
    pub(super) fn refused_segment(
        &mut self,
        cid: ClientId,
        segment: u64,
        key: u64,
        out: &mut Outgoing,
    ) {
        let own = &mut self.client_mut(cid).own_segments;
        if own.get(&segment) == Some(&key) {
            own.remove(&segment);
        }
        self.forget_segment(key, out);
    }

    /// One object of segment `key` is gone.
    pub(super) fn unref_segment(&mut self, key: u64, out: &mut Outgoing) {
        let seg = self
            .segments
            .get_mut(&key)
            .expect("objects keep their segment");
        seg.objects -= 1;
        if seg.forgotten && seg.objects == 0 {
            self.drop_segment(key, out);
        }
    }

    pub(super) fn forget_segment(&mut self, key: u64, out: &mut Outgoing) {
        let seg = self.segments.get_mut(&key).expect("own segments are known");
        seg.forgotten = true;
        if seg.objects == 0 {
            self.drop_segment(key, out);
        }
    }

    pub(super) fn drop_segment(&mut self, key: u64, out: &mut Outgoing) {
        self.quotas.drop_segment(key);
        if let Some(seg) = self.segments.remove(&key) {
            for to in seg.sent_to {
                self.send(to, 0, Msg::SegmentGone { segment: key }, None, out);
            }
            out.push(Effect::Close { segment: key });
        }
    }
}
