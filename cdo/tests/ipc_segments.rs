//! Shared segments as the manager and consumers trust them: sealed against
//! resizing and writing, within the size limit, and viewed one object at a
//! time (a consumer maps the pages of its object, never its neighbours').

mod ipc_common;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use cdo::ipc::conn::{Reader, Writer};
use cdo::ipc::endpoint::Endpoint;
use cdo::ipc::lease::{Heartbeat, Lease, LeasePage};
use cdo::ipc::manager::ManagerConfig;
use cdo::ipc::shm::{add_seals, memfd};
use cdo::ipc::wire::{Attributes, ErrorCode, Frame, Msg, SegmentRef, PROTOCOL_VERSION};
use ipc_common::{client, manager, manager_with, pattern};

const WAIT: Duration = Duration::from_secs(10);
const GROW_SHRINK: libc::c_int = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;

/// A producer speaking the protocol itself, to offer segments the client
/// library would never make.
struct RawProducer {
    reader: Reader,
    writer: Writer,
    next_id: u64,
    /// Keeps the lease, once WELCOME brought its page.
    heartbeat: Option<Heartbeat>,
}

impl RawProducer {
    fn join(ep: &Endpoint) -> RawProducer {
        let sock = UnixStream::connect(&ep.socket).unwrap();
        let mut raw = RawProducer {
            reader: Reader::new(sock.try_clone().unwrap()),
            writer: Writer::new(sock),
            next_id: 1,
            heartbeat: None,
        };
        let join = Msg::Join {
            component: "raw".into(),
            token: ep.token.clone(),
            version: PROTOCOL_VERSION,
        };
        let (reply, fd) = raw.request(join, None);
        let Msg::Welcome { lease_ms, .. } = reply else {
            panic!("expected WELCOME, got {reply:?}");
        };
        let page = LeasePage::open(fd.expect("the lease page")).unwrap();
        let beat = Lease::tick(Duration::from_millis(lease_ms));
        raw.heartbeat = Some(Heartbeat::start(page, beat).unwrap());
        raw
    }

    fn request(&mut self, msg: Msg, fd: Option<OwnedFd>) -> (Msg, Option<OwnedFd>) {
        let id = self.next_id;
        self.next_id += 1;
        self.writer
            .push(&Frame { id, msg }, fd.map(Arc::new))
            .unwrap();
        self.writer.flush().unwrap();
        loop {
            if let Some((frame, fd)) = self.reader.next_buffered().unwrap() {
                if frame.id == id {
                    return (frame.msg, fd);
                }
                continue;
            }
            self.reader.fill().unwrap();
        }
    }

    /// Offers `size` bytes at `offset` of producer segment `segment`
    /// (sending `fd` with it, if given).
    fn offer(
        &mut self,
        name: &str,
        segment: u64,
        offset: u64,
        size: u64,
        fd: Option<OwnedFd>,
    ) -> Msg {
        let msg = Msg::Offer {
            name: name.into(),
            attrs: Attributes::new(),
            size,
            segment: SegmentRef { segment, offset },
        };
        self.request(msg, fd).0
    }
}

/// A sparse memfd of `len` bytes holding `bytes` at each offset, then
/// sealed with `seals`.
fn segment(len: u64, contents: &[(u64, &[u8])], seals: libc::c_int) -> OwnedFd {
    let file = File::from(memfd(c"test-segment").unwrap());
    file.set_len(len).unwrap();
    for (offset, bytes) in contents {
        file.write_all_at(bytes, *offset).unwrap();
    }
    add_seals(file.as_fd(), seals).unwrap();
    file.into()
}

fn bad_segment(reply: &Msg, why: &str) {
    match reply {
        Msg::Error {
            code: ErrorCode::BadSegment,
            text,
        } => assert!(text.contains(why), "{text}"),
        other => panic!("expected BadSegment ({why}), got {other:?}"),
    }
}

#[test]
fn segments_without_every_seal_or_over_the_limit_are_refused() {
    let pm = manager_with(ManagerConfig {
        max_segment_bytes: 1 << 20,
        ..ManagerConfig::default()
    });
    let mut p = RawProducer::join(pm.endpoint());
    let unsealed = segment(4096, &[], 0);
    bad_segment(&p.offer("a", 1, 0, 8, Some(unsealed)), "resizing");
    let writable = segment(4096, &[], GROW_SHRINK);
    bad_segment(&p.offer("a", 2, 0, 8, Some(writable)), "writing");
    let huge = segment(2 << 20, &[], GROW_SHRINK | libc::F_SEAL_WRITE);
    bad_segment(&p.offer("a", 3, 0, 8, Some(huge)), "exceeds the limit");
    // Refused segments were not kept: naming them again is an error too.
    bad_segment(&p.offer("a", 3, 0, 8, None), "never sent");
    assert_eq!((pm.stats().segments, pm.stats().objects), (0, 0));

    for (i, write_seal) in [libc::F_SEAL_WRITE, libc::F_SEAL_FUTURE_WRITE]
        .into_iter()
        .enumerate()
    {
        let fd = segment(1 << 20, &[(0, b"sealed")], GROW_SHRINK | write_seal);
        let name = format!("ok{i}");
        assert_eq!(p.offer(&name, 10 + i as u64, 0, 6, Some(fd)), Msg::Ok);
    }
    let mut c = client(&pm, "c");
    assert_eq!(&*c.demand("ok1", WAIT).unwrap(), b"sealed");
    assert_eq!((pm.stats().segments, pm.stats().objects), (2, 2));
}

/// Length and file offset of the mapping of this process that holds
/// `addr`, from `/proc/self/maps`.
fn mapping_of(addr: *const u8) -> (u64, u64) {
    let addr = addr as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if (start..end).contains(&addr) {
            return (end - start, u64::from_str_radix(fields[2], 16).unwrap());
        }
    }
    panic!("{addr:#x} is not mapped");
}

#[test]
fn a_view_reaches_only_the_pages_of_its_own_object() {
    let pm = manager();
    let mut p = RawProducer::join(pm.endpoint());
    let (a, b) = (pattern(1, 100), pattern(2, 5000));
    let b_at = 3 * 4096 + 10;
    let fd = segment(
        8 * 4096,
        &[(100, &a), (b_at, &b)],
        GROW_SHRINK | libc::F_SEAL_WRITE,
    );
    assert_eq!(p.offer("a", 1, 100, 100, Some(fd)), Msg::Ok);
    assert_eq!(p.offer("b", 1, b_at, 5000, None), Msg::Ok);

    let mut c = client(&pm, "c");
    let va = c.demand("a", WAIT).unwrap();
    let vb = c.demand("b", WAIT).unwrap();
    assert_eq!((&*va, &*vb), (&a[..], &b[..]));
    assert_eq!(
        va.segment_identity().unwrap(),
        vb.segment_identity().unwrap()
    );
    // A is reached through a mapping of the segment's first page only, so
    // none of B's bytes (pages 3 and 4) are readable through it; B's
    // mapping starts at its own first page.
    assert_eq!(mapping_of(va.as_ptr()), (4096, 0));
    assert_eq!(mapping_of(vb.as_ptr()), (2 * 4096, 3 * 4096));
}

#[test]
fn a_tiny_object_in_a_huge_sparse_segment_maps_one_page() {
    let pm = manager();
    let mut p = RawProducer::join(pm.endpoint());
    let at = (6 << 30) + 123;
    let fd = segment(8 << 30, &[(at, b"tiny")], GROW_SHRINK | libc::F_SEAL_WRITE);
    assert_eq!(p.offer("tiny", 1, at, 4, Some(fd)), Msg::Ok);
    let mut c = client(&pm, "c");
    let v = c.demand("tiny", WAIT).unwrap();
    assert_eq!(&*v, b"tiny");
    assert_eq!(mapping_of(v.as_ptr()), (4096, 6 << 30));
}
