//! A transport: one endpoint with its queues, address vector and
//! registrations, the pull (`read_into`) and the producer's side (`expose`,
//! `serve`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::cache::{CacheStats, RegCache};
use crate::config::{Choice, Config, PathChoice, Pipeline, ProviderSource, PullPath};
use crate::error::{FabricError, Result};
use crate::raw::{
    AddressVector, CompletionQueue, Domain, Endpoint, Fabric, Hints, Info, MemoryRegion,
};
use crate::sys;
use crate::wire::{self, Request, Status, Tag};

/// Capabilities of the RMA path (the tagged messages carry the fallback's
/// requests on the same endpoint).
const CAPS_RMA: u64 =
    sys::FI_RMA as u64 | sys::FI_READ as u64 | sys::FI_REMOTE_READ as u64 | sys::FI_TAGGED as u64;
/// Capabilities of the message path.
const CAPS_MSG: u64 = sys::FI_TAGGED as u64;

/// Depth of the completion queues.
const CQ_SIZE: usize = 256;
/// Requested key of the scratch buffer's registration (providers without
/// FI_MR_PROV_KEY take keys from the application, unique per domain).
const SCRATCH_KEY: u64 = 1;

/// A peer endpoint inserted into a transport's address vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    addr: u64,
    rma: bool,
}

impl Peer {
    /// Whether the peer accepts RMA reads of its regions.
    pub fn rma(&self) -> bool {
        self.rma
    }
}

/// A producer's registered memory as a consumer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteRegion {
    /// Remote address of the first byte, as the provider wants it (virtual
    /// address under FI_MR_VIRT_ADDR, offset into the registration otherwise).
    pub addr: u64,
    /// Bytes in the region.
    pub len: u64,
    /// Remote memory key.
    pub key: u64,
    /// Who holds it.
    pub peer: Peer,
}

impl RemoteRegion {
    /// The sub-region of `len` bytes at `offset`, or
    /// [`FabricError::OutOfRange`].
    pub fn slice(&self, offset: u64, len: u64) -> Result<RemoteRegion> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(RemoteRegion {
                addr: self.addr + offset,
                len,
                ..*self
            }),
            _ => Err(FabricError::OutOfRange {
                offset,
                len,
                region: self.len,
            }),
        }
    }
}

/// What a producer publishes so that a consumer can pull a region: the
/// provider, the producer's endpoint name, the region's address, length and
/// key. Its text form (`Display`/`FromStr`) is one line of `key=value` words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionDescriptor {
    /// Provider of the producer's transport (the consumer's must match).
    pub provider: String,
    /// Whether the producer accepts RMA reads.
    pub rma: bool,
    /// The producer's endpoint name.
    pub name: Vec<u8>,
    /// Remote address of the first byte.
    pub addr: u64,
    /// Bytes in the region.
    pub len: u64,
    /// Remote memory key.
    pub key: u64,
}

impl fmt::Display for RegionDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name: String = self.name.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "fabric-region provider={} rma={} addr={:x} len={} key={:x} name={}",
            self.provider, self.rma as u8, self.addr, self.len, self.key, name
        )
    }
}

impl FromStr for RegionDescriptor {
    type Err = FabricError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |what: &str| FabricError::Descriptor(format!("{what} in {s:?}"));
        let mut words = s.split_whitespace();
        if words.next() != Some("fabric-region") {
            return Err(bad("no fabric-region header"));
        }
        let fields: HashMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let field = |k: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| bad(&format!("no {k}=")))
        };
        let hex =
            |k: &str| u64::from_str_radix(field(k)?, 16).map_err(|_| bad(&format!("bad {k}=")));
        let name_hex = field("name")?;
        if name_hex.len() % 2 != 0 {
            return Err(bad("odd name="));
        }
        let name = (0..name_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&name_hex[i..i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(|_| bad("bad name="))?;
        Ok(RegionDescriptor {
            provider: field("provider")?.to_string(),
            rma: match field("rma")? {
                "1" => true,
                "0" => false,
                _ => return Err(bad("bad rma=")),
            },
            name,
            addr: hex("addr")?,
            len: field("len")?.parse().map_err(|_| bad("bad len="))?,
            key: hex("key")?,
        })
    }
}

/// A region a producer exposes; remote reads of it stop when it is dropped.
pub struct Exposed<'a> {
    descriptor: RegionDescriptor,
    table: Rc<RefCell<HashMap<u64, ExposedEntry>>>,
    _mr: MemoryRegion,
    _buf: PhantomData<&'a [u8]>,
}

impl Exposed<'_> {
    /// What a consumer needs to pull it.
    pub fn descriptor(&self) -> &RegionDescriptor {
        &self.descriptor
    }
}

impl Drop for Exposed<'_> {
    fn drop(&mut self) {
        self.table.borrow_mut().remove(&self.descriptor.key);
    }
}

/// Memory whose bytes stay at one address for the owner's whole life,
/// however the owner itself moves (a heap buffer, a mapping).
///
/// # Safety
/// [`StableBuffer::stable_bytes`] must return the same address and length
/// every time, valid until the owner is dropped.
pub unsafe trait StableBuffer {
    /// The bytes.
    fn stable_bytes(&self) -> &[u8];
}

// SAFETY: a Vec's heap buffer does not move when the Vec does, and only a
// mutable borrow (impossible while exposed) could reallocate it.
unsafe impl StableBuffer for Vec<u8> {
    fn stable_bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: a boxed slice's allocation never moves or changes length.
unsafe impl StableBuffer for Box<[u8]> {
    fn stable_bytes(&self) -> &[u8] {
        self
    }
}

/// A region exposed with [`Transport::expose_owned`]: keeps its owner, and
/// stops remote reads before giving it back or dropping it.
pub struct ExposedOwned<B> {
    // Dropped first: the registration goes before the memory.
    exposed: Exposed<'static>,
    owner: B,
}

impl<B> ExposedOwned<B> {
    /// What a consumer needs to pull it.
    pub fn descriptor(&self) -> &RegionDescriptor {
        self.exposed.descriptor()
    }

    /// The owner.
    pub fn owner(&self) -> &B {
        &self.owner
    }
}

/// What the message path's server needs of an exposed region.
struct ExposedEntry {
    ptr: *const u8,
    len: usize,
    /// Remote address of the first byte (see [`RemoteRegion::addr`]).
    base: u64,
    desc: *mut c_void,
}

/// One completion as the progress loop sees it.
struct Event {
    context: *mut c_void,
    len: usize,
    error: Option<FabricError>,
}

/// Small registered buffers for the message path's control messages.
struct Scratch {
    buf: *mut [u8],
    mr: Option<MemoryRegion>,
}

impl Scratch {
    fn ptr(&self, offset: usize) -> *mut u8 {
        assert!(offset < wire::SCRATCH_LEN);
        // SAFETY: offset lies within the allocation (checked above).
        unsafe { self.buf.cast::<u8>().add(offset) }
    }

    fn desc(&self) -> *mut c_void {
        self.mr.as_ref().map_or(std::ptr::null_mut(), |m| m.desc())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Deregister before freeing.
        self.mr = None;
        // SAFETY: buf came from Box::into_raw in Transport::open and is freed once.
        drop(unsafe { Box::from_raw(self.buf) });
    }
}

/// Waiting between polls without burning a shared core.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn reset(&mut self) {
        self.0 = 0;
    }

    fn idle(&mut self) {
        self.0 = self.0.saturating_add(1);
        if self.0 < 64 {
            std::hint::spin_loop();
        } else if self.0 < 256 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// One fabric endpoint with everything it needs: pulls remote regions into
/// local buffers and serves its own exposed regions.
///
/// A transport is single-threaded (libfabric's FI_THREAD_DOMAIN): create it
/// on the thread that uses it. Its progress is manual: a producer must call
/// [`Transport::serve`] while consumers pull, whatever the path, because
/// providers such as `tcp;ofi_rxm` only move bytes while both completion
/// queues are polled.
pub struct Transport {
    config: Config,
    choice: Choice,
    mr_mode: u64,
    /// Depth of the transmit queue.
    tx_size: usize,
    ep: RefCell<Option<Endpoint>>,
    name: Vec<u8>,
    tx: Rc<CompletionQueue>,
    rx: Rc<CompletionQueue>,
    av: Rc<AddressVector>,
    cache: RefCell<RegCache<MemoryRegion>>,
    exposed: Rc<RefCell<HashMap<u64, ExposedEntry>>>,
    scratch: Scratch,
    /// Contexts of the posted request receives of [`Transport::serve`].
    request_ctx: Box<[sys::fi_context2; wire::REQUEST_SLOTS]>,
    requests_posted: Cell<bool>,
    /// Completions read while waiting for something else.
    stray: RefCell<Vec<Event>>,
    peers: RefCell<HashMap<Vec<u8>, u64>>,
    next_key: Cell<u64>,
    next_request: Cell<u32>,
    domain: Rc<Domain>,
}

impl Transport {
    /// Chooses a provider and path (see [`Config`]), opens fabric, domain,
    /// queues, address vector and endpoint, and logs the choice.
    pub fn open(config: Config) -> Result<Transport> {
        let (info, choice) = choose(&config)?;
        if choice.path == PullPath::Messages {
            tracing::warn!(
                provider = %choice.provider,
                reason = choice.reason.as_deref().unwrap_or(""),
                "fabric pulls take the message path, not RMA"
            );
        }
        tracing::info!(%choice, "fabric transport opened");
        let mr_mode = info.mr_mode();
        let tx_size = info.tx_size();
        let fabric = Fabric::open(info)?;
        let domain = Domain::open(&fabric)?;
        let tx = CompletionQueue::open(&domain, CQ_SIZE)?;
        let rx = CompletionQueue::open(&domain, CQ_SIZE)?;
        let av = AddressVector::open(&domain)?;
        let ep = Endpoint::open(&domain, &tx, &rx, &av)?;
        let name = ep.name()?;
        let buf = Box::into_raw(vec![0u8; wire::SCRATCH_LEN].into_boxed_slice());
        let mut scratch = Scratch { buf, mr: None };
        let access = (sys::FI_SEND | sys::FI_RECV) as u64;
        // SAFETY: the scratch buffer is freed only after its registration
        // (Scratch's drop).
        scratch.mr = Some(unsafe {
            MemoryRegion::register(
                &domain,
                scratch.ptr(0),
                wire::SCRATCH_LEN,
                access,
                SCRATCH_KEY,
            )
        }?);
        Ok(Transport {
            cache: RefCell::new(RegCache::new(config.cache_bytes)),
            config,
            choice,
            mr_mode,
            tx_size,
            ep: RefCell::new(Some(ep)),
            name,
            tx,
            rx,
            av,
            exposed: Rc::default(),
            scratch,
            request_ctx: Box::new([sys::fi_context2::default(); wire::REQUEST_SLOTS]),
            requests_posted: Cell::new(false),
            stray: RefCell::default(),
            peers: RefCell::default(),
            next_key: Cell::new(SCRATCH_KEY + 1),
            next_request: Cell::new(1),
            domain,
        })
    }

    /// What the transport runs on.
    pub fn choice(&self) -> &Choice {
        &self.choice
    }

    /// The endpoint's name, for a peer's [`Transport::insert_peer`].
    pub fn address(&self) -> &[u8] {
        &self.name
    }

    /// Inserts a peer's endpoint name into the address vector. `rma`: whether
    /// the peer accepts RMA reads (see [`RegionDescriptor::rma`]).
    pub fn insert_peer(&self, name: &[u8], rma: bool) -> Result<Peer> {
        let addr = self.peer_addr(name)?;
        Ok(Peer { addr, rma })
    }

    /// The remote region a descriptor describes, its producer inserted as a
    /// peer. Fails when the descriptor comes from another provider.
    pub fn connect(&self, d: &RegionDescriptor) -> Result<RemoteRegion> {
        if d.provider != self.choice.provider {
            return Err(FabricError::Descriptor(format!(
                "the region was published over provider {}, this transport uses {}",
                d.provider, self.choice.provider
            )));
        }
        Ok(RemoteRegion {
            addr: d.addr,
            len: d.len,
            key: d.key,
            peer: self.insert_peer(&d.name, d.rma)?,
        })
    }

    /// Registers `buf` for remote reads (and for the message path's sends)
    /// until the returned guard is dropped.
    pub fn expose<'a>(&self, buf: &'a [u8]) -> Result<Exposed<'a>> {
        // SAFETY: the guard borrows `buf` for 'a, so the bytes outlive it.
        unsafe { self.expose_raw(buf.as_ptr(), buf.len()) }
    }

    /// Registers the bytes of `owner` for remote reads until the returned
    /// guard (which keeps `owner`) is dropped: for memory whose owner must
    /// move, such as a mapping held in a table.
    pub fn expose_owned<B: StableBuffer>(&self, owner: B) -> Result<ExposedOwned<B>> {
        let bytes = owner.stable_bytes();
        // SAFETY: StableBuffer promises the bytes stay where they are while
        // `owner` lives, wherever it moves; ExposedOwned drops the
        // registration before `owner` (field order).
        let exposed = unsafe { self.expose_raw(bytes.as_ptr(), bytes.len()) }?;
        Ok(ExposedOwned { exposed, owner })
    }

    /// Registers `len` bytes at `ptr` for remote reads.
    ///
    /// # Safety
    /// The bytes must stay allocated, at that address, for as long as the
    /// returned guard lives ('a is the caller's choice).
    unsafe fn expose_raw<'a>(&self, ptr: *const u8, len: usize) -> Result<Exposed<'a>> {
        // SAFETY: the caller keeps the bytes alive while the guard lives.
        let buf = unsafe { std::slice::from_raw_parts(ptr, len) };
        let access = (sys::FI_REMOTE_READ | sys::FI_SEND) as u64;
        let mr = self.register(buf.as_ptr(), buf.len(), access)?;
        let base = if self.mr_mode & sys::FI_MR_VIRT_ADDR as u64 != 0 {
            buf.as_ptr() as u64
        } else {
            0
        };
        let key = mr.key();
        self.exposed.borrow_mut().insert(
            key,
            ExposedEntry {
                ptr: buf.as_ptr(),
                len: buf.len(),
                base,
                desc: mr.desc(),
            },
        );
        Ok(Exposed {
            descriptor: RegionDescriptor {
                provider: self.choice.provider.clone(),
                rma: self.choice.path == PullPath::Rma,
                name: self.name.clone(),
                addr: base,
                len: buf.len() as u64,
                key,
            },
            table: self.exposed.clone(),
            _mr: mr,
            _buf: PhantomData,
        })
    }

    /// Pulls `remote` into `dst` with the configured pipeline.
    pub fn read_into(&self, remote: RemoteRegion, dst: &mut [u8]) -> Result<()> {
        self.read_into_with(remote, dst, self.config.pipeline)
    }

    /// Pulls `remote` into `dst` in chunks of `pipeline.chunk_size` bytes,
    /// `pipeline.depth` of them in flight: RMA reads straight into `dst`, or,
    /// on the message path (this transport's choice, or a peer without RMA),
    /// the producer's tagged sends received straight into `dst`. `dst` is
    /// registered through the registration cache. On a timeout the endpoint
    /// is closed (nothing may write into `dst` afterwards) and later calls
    /// fail with [`FabricError::Closed`].
    pub fn read_into_with(
        &self,
        remote: RemoteRegion,
        dst: &mut [u8],
        pipeline: Pipeline,
    ) -> Result<()> {
        if self.ep.borrow().is_none() {
            return Err(FabricError::Closed);
        }
        if dst.len() as u64 != remote.len {
            return Err(FabricError::LengthMismatch {
                dst: dst.len(),
                remote: remote.len,
            });
        }
        if dst.is_empty() {
            return Ok(());
        }
        let chunk = pipeline
            .chunk_size
            .clamp(1, self.choice.max_msg_size.max(1));
        let desc = self.local_desc(dst)?;
        let base = dst.as_mut_ptr();
        let len = dst.len();
        let chunks = len.div_ceil(chunk);
        let span = move |k: usize| (k * chunk, chunk.min(len - k * chunk));
        if self.choice.path == PullPath::Rma && remote.peer.rma {
            let depth = pipeline.depth.min(self.tx_depth());
            return self.pipeline(
                "fi_read",
                chunks,
                depth,
                |ep, k, ctx| {
                    let (off, n) = span(k);
                    // SAFETY: [off, off+n) lies within dst, which stays
                    // borrowed until every read completed or the endpoint
                    // was closed (pipeline guarantees either).
                    unsafe {
                        ep.read(
                            base.add(off),
                            n,
                            desc,
                            remote.peer.addr,
                            remote.addr + off as u64,
                            remote.key,
                            ctx,
                        )
                    }
                },
                |_, _| Ok(()),
            );
        }
        if self.choice.path == PullPath::Rma {
            tracing::warn!("the producer offers no RMA: this pull takes the message path");
        }
        self.pull_messages(remote, base, len, desc, chunk, chunks, pipeline.depth)
    }

    /// The message path's consumer side: request, status, then the data
    /// chunks received in place.
    #[allow(clippy::too_many_arguments)]
    fn pull_messages(
        &self,
        remote: RemoteRegion,
        base: *mut u8,
        len: usize,
        desc: *mut c_void,
        chunk: usize,
        chunks: usize,
        depth: usize,
    ) -> Result<()> {
        let id = self.next_request.get();
        self.next_request.set(id.wrapping_add(1) & wire::ID_MASK);
        let request = Request {
            id,
            addr: remote.addr,
            len: remote.len,
            key: remote.key,
            chunk: chunk as u64,
            reply_to: self.name.clone(),
        };
        let req_len = request.encode(
            // SAFETY: the request slot is free: no request is in flight.
            unsafe { self.scratch_slice(wire::REQUEST_OUT, wire::REQUEST_LEN) },
        )?;
        let sdesc = self.scratch.desc();
        // Operation 0 receives the status, operation 1 sends the request.
        self.pipeline(
            "request",
            2,
            2,
            |ep, k, ctx| {
                // SAFETY: both scratch slots stay allocated and untouched by
                // anything else until the two operations completed.
                unsafe {
                    if k == 0 {
                        ep.trecv(
                            self.scratch.ptr(wire::STATUS_IN),
                            wire::STATUS_LEN,
                            sdesc,
                            Tag::status(id),
                            0,
                            ctx,
                        )
                    } else {
                        ep.tsend(
                            self.scratch.ptr(wire::REQUEST_OUT),
                            req_len,
                            sdesc,
                            remote.peer.addr,
                            Tag::REQUEST,
                            ctx,
                        )
                    }
                }
            },
            |_, _| Ok(()),
        )?;
        let status = Status::decode(
            // SAFETY: the status receive has completed; nothing writes the slot.
            unsafe { self.scratch_slice(wire::STATUS_IN, wire::STATUS_LEN) },
        )?;
        if status.id != id {
            return Err(FabricError::Protocol(format!(
                "status of request {} answers {id}",
                status.id
            )));
        }
        if let Some(reason) = status.refusal() {
            return Err(FabricError::Refused(reason.into()));
        }
        let span = move |k: usize| (k * chunk, chunk.min(len - k * chunk));
        self.pipeline(
            "fi_trecv",
            chunks,
            depth,
            |ep, k, ctx| {
                let (off, n) = span(k);
                // SAFETY: [off, off+n) lies within the destination, borrowed
                // by the caller until every receive completed or the
                // endpoint was closed.
                unsafe { ep.trecv(base.add(off), n, desc, Tag::data(id, k as u32), 0, ctx) }
            },
            |k, got| {
                let (_, n) = span(k);
                if got == n {
                    Ok(())
                } else {
                    Err(FabricError::Protocol(format!(
                        "chunk {k} carried {got} bytes, {n} expected"
                    )))
                }
            },
        )
    }

    /// Serves this transport's exposed regions until `stop` returns true:
    /// drives progress (RMA reads of its memory need it with manual-progress
    /// providers) and answers message-path requests.
    pub fn serve(&self, mut stop: impl FnMut() -> bool) -> Result<()> {
        self.post_request_receives()?;
        let mut backoff = Backoff::default();
        let mut events = Vec::new();
        while !stop() {
            events.append(&mut self.stray.borrow_mut());
            if events.is_empty() {
                self.poll(&mut events)?;
            }
            if events.is_empty() {
                backoff.idle();
                continue;
            }
            backoff.reset();
            for ev in events.drain(..) {
                let Some(slot) = self.request_slot(ev.context) else {
                    tracing::debug!("fabric: completion of a finished operation ignored");
                    continue;
                };
                match ev.error {
                    Some(e) => tracing::warn!(error = %e, "fabric: a request receive failed"),
                    None => {
                        if let Err(e) = self.answer(slot, ev.len) {
                            if matches!(e, FabricError::Closed | FabricError::Timeout { .. }) {
                                return Err(e);
                            }
                            tracing::warn!(error = %e, "fabric: a pull request could not be served");
                        }
                    }
                }
                self.post_request_receive(slot)?;
            }
        }
        Ok(())
    }

    /// Closes the endpoint: later pulls and serves fail with
    /// [`FabricError::Closed`]. Registrations stay until dropped.
    pub fn close(&self) {
        if self.ep.borrow_mut().take().is_some() {
            self.requests_posted.set(false);
            tracing::debug!("fabric endpoint closed");
        }
    }

    /// Registration cache counts.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.borrow().stats()
    }

    /// Drops cached registrations overlapping `buf`: call it before freeing
    /// or remapping memory that was a pull's destination.
    pub fn forget_buffer(&self, buf: &[u8]) {
        let gone = self
            .cache
            .borrow_mut()
            .forget(buf.as_ptr() as usize, buf.len());
        drop(gone);
    }

    /// Answers the request received in slot `slot`: status, then the data.
    fn answer(&self, slot: usize, got: usize) -> Result<()> {
        let req = Request::decode(
            // SAFETY: this slot's receive completed and is reposted only after.
            unsafe {
                &self.scratch_slice(wire::request_in(slot), wire::REQUEST_LEN)
                    [..got.min(wire::REQUEST_LEN)]
            },
        )?;
        let peer = self.peer_addr(&req.reply_to)?;
        let table = self.exposed.borrow();
        let found = table.get(&req.key).ok_or("unknown key").and_then(|e| {
            let off = req
                .addr
                .checked_sub(e.base)
                .ok_or("address before the region")?;
            match off.checked_add(req.len) {
                Some(end) if end <= e.len as u64 => Ok((e, off as usize)),
                _ => Err("range beyond the region"),
            }
        });
        let status = Status::answer(req.id, req.len, found.as_ref().err().copied());
        let st_len = status.encode(
            // SAFETY: the status slot is free: the previous answer completed.
            unsafe { self.scratch_slice(wire::STATUS_OUT, wire::STATUS_LEN) },
        );
        let (src, chunks, chunk, desc) = match found {
            Ok((e, off)) => {
                let chunk = (req.chunk as usize).clamp(1, self.choice.max_msg_size.max(1));
                // SAFETY: off + len lies within the exposed region (checked).
                (
                    unsafe { e.ptr.add(off) },
                    (req.len as usize).div_ceil(chunk),
                    chunk,
                    e.desc,
                )
            }
            Err(reason) => {
                tracing::warn!(reason, key = req.key, "fabric: pull request refused");
                (std::ptr::null(), 0, 1, std::ptr::null_mut())
            }
        };
        let len = req.len as usize;
        let sdesc = self.scratch.desc();
        // Operation 0 sends the status, the others the chunks in order.
        self.pipeline(
            "fi_tsend",
            1 + chunks,
            self.config.pipeline.depth.min(self.tx_depth()),
            |ep, k, ctx| {
                // SAFETY: the status slot and the exposed memory (kept by the
                // table borrow held until the sends completed) stay valid.
                unsafe {
                    if k == 0 {
                        ep.tsend(
                            self.scratch.ptr(wire::STATUS_OUT),
                            st_len,
                            sdesc,
                            peer,
                            Tag::status(req.id),
                            ctx,
                        )
                    } else {
                        let off = (k - 1) * chunk;
                        ep.tsend(
                            src.add(off),
                            chunk.min(len - off),
                            desc,
                            peer,
                            Tag::data(req.id, (k - 1) as u32),
                            ctx,
                        )
                    }
                }
            },
            |_, _| Ok(()),
        )
    }

    fn post_request_receives(&self) -> Result<()> {
        if !self.requests_posted.get() {
            for slot in 0..wire::REQUEST_SLOTS {
                self.post_request_receive(slot)?;
            }
            self.requests_posted.set(true);
        }
        Ok(())
    }

    fn post_request_receive(&self, slot: usize) -> Result<()> {
        let guard = self.ep.borrow();
        let ep = guard.as_ref().ok_or(FabricError::Closed)?;
        let ctx = self.request_ctx[slot..]
            .as_ptr()
            .cast_mut()
            .cast::<c_void>();
        let mut backoff = Backoff::default();
        let start = Instant::now();
        loop {
            // SAFETY: the request slot and its context belong to this
            // transport, which outlives its endpoint's operations.
            let posted = unsafe {
                ep.trecv(
                    self.scratch.ptr(wire::request_in(slot)),
                    wire::REQUEST_LEN,
                    self.scratch.desc(),
                    Tag::REQUEST,
                    0,
                    ctx,
                )
            }?;
            if posted {
                return Ok(());
            }
            if start.elapsed() > self.config.timeout {
                return Err(FabricError::Timeout {
                    op: "fi_trecv",
                    timeout: self.config.timeout,
                    pending: 0,
                });
            }
            let mut events = Vec::new();
            self.poll(&mut events)?;
            self.stray.borrow_mut().append(&mut events);
            backoff.idle();
        }
    }

    fn request_slot(&self, context: *mut c_void) -> Option<usize> {
        let base = self.request_ctx.as_ptr() as usize;
        let off = (context as usize).checked_sub(base)?;
        let slot = off / std::mem::size_of::<sys::fi_context2>();
        (slot < wire::REQUEST_SLOTS && off % std::mem::size_of::<sys::fi_context2>() == 0)
            .then_some(slot)
    }

    /// Runs `count` operations with at most `depth` in flight: `post(ep, k,
    /// ctx)` posts operation `k` (`Ok(false)`: queue full, retried after
    /// progress); `done(k, len)` checks a completion. Fails with the first
    /// error once nothing is in flight, or with a timeout when no completion
    /// came for the configured time, after closing the endpoint.
    fn pipeline(
        &self,
        op: &'static str,
        count: usize,
        depth: usize,
        mut post: impl FnMut(&Endpoint, usize, *mut c_void) -> Result<bool>,
        mut done: impl FnMut(usize, usize) -> Result<()>,
    ) -> Result<()> {
        let depth = depth.clamp(1, count.max(1));
        let mut ctx = vec![sys::fi_context2::default(); depth];
        let base = ctx.as_mut_ptr();
        let size = std::mem::size_of::<sys::fi_context2>();
        let mut busy: Vec<Option<usize>> = vec![None; depth];
        let (mut next, mut inflight) = (0, 0);
        let mut first_err: Option<FabricError> = None;
        let mut last = Instant::now();
        let mut backoff = Backoff::default();
        let mut events = Vec::new();
        let guard = self.ep.borrow();
        let ep = guard.as_ref().ok_or(FabricError::Closed)?;
        loop {
            while first_err.is_none() && inflight < depth && next < count {
                let slot = busy
                    .iter()
                    .position(Option::is_none)
                    .expect("a slot is free below the depth");
                // SAFETY: slot < depth: within ctx.
                let c = unsafe { base.add(slot) }.cast::<c_void>();
                match post(ep, next, c) {
                    Ok(true) => {
                        busy[slot] = Some(next);
                        next += 1;
                        inflight += 1;
                    }
                    Ok(false) => break,
                    Err(e) => first_err = Some(e),
                }
            }
            if inflight == 0 && (next == count || first_err.is_some()) {
                break;
            }
            if let Err(e) = self.poll(&mut events) {
                drop(guard);
                self.close();
                return Err(e);
            }
            let mut progressed = false;
            for ev in events.drain(..) {
                let off = (ev.context as usize).wrapping_sub(base as usize);
                let slot = off / size;
                if off % size != 0 || slot >= depth || busy[slot].is_none() {
                    self.stray.borrow_mut().push(ev);
                    continue;
                }
                let k = busy[slot].take().expect("checked above");
                inflight -= 1;
                progressed = true;
                match ev.error {
                    Some(e) => {
                        first_err.get_or_insert(e.in_op(op));
                    }
                    None if first_err.is_none() => {
                        if let Err(e) = done(k, ev.len) {
                            first_err = Some(e);
                        }
                    }
                    None => {}
                }
            }
            if progressed {
                last = Instant::now();
                backoff.reset();
            } else if last.elapsed() > self.config.timeout {
                // Close before `ctx` and the caller's buffers go away.
                drop(guard);
                self.close();
                return Err(FabricError::Timeout {
                    op,
                    timeout: self.config.timeout,
                    pending: inflight,
                });
            } else {
                backoff.idle();
            }
        }
        drop(ctx);
        first_err.map_or(Ok(()), Err)
    }

    /// Reads both completion queues (tcp;ofi_rxm progresses only so).
    fn poll(&self, out: &mut Vec<Event>) -> Result<()> {
        for cq in [&self.tx, &self.rx] {
            let mut done = Vec::new();
            let res = cq.read(&mut done);
            out.extend(done.into_iter().map(|c| Event {
                context: c.context,
                len: c.len,
                error: None,
            }));
            match res {
                Ok(()) => {}
                Err((e, ctx)) if !ctx.is_null() => out.push(Event {
                    context: ctx,
                    len: 0,
                    error: Some(e),
                }),
                Err((e, _)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Operations one pipeline may keep in flight: the transmit queue's
    /// depth, within the completion queue's.
    fn tx_depth(&self) -> usize {
        self.tx_size.clamp(1, CQ_SIZE / 2)
    }

    fn peer_addr(&self, name: &[u8]) -> Result<u64> {
        if let Some(a) = self.peers.borrow().get(name) {
            return Ok(*a);
        }
        let a = self.av.insert(name)?;
        self.peers.borrow_mut().insert(name.to_vec(), a);
        Ok(a)
    }

    /// The descriptor of `dst`'s registration, from the cache or new.
    fn local_desc(&self, dst: &mut [u8]) -> Result<*mut c_void> {
        let start = dst.as_ptr() as usize;
        if let Some(mr) = self.cache.borrow_mut().lookup(start, dst.len()) {
            return Ok(mr.desc());
        }
        let mr = self.register(
            dst.as_ptr(),
            dst.len(),
            (sys::FI_READ | sys::FI_RECV) as u64,
        )?;
        let desc = mr.desc();
        let evicted = self.cache.borrow_mut().insert(start, dst.len(), mr);
        drop(evicted);
        Ok(desc)
    }

    /// Registers memory with a key unique in this transport's domain.
    fn register(&self, buf: *const u8, len: usize, access: u64) -> Result<MemoryRegion> {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        // SAFETY: every caller keeps the memory mapped while the registration
        // lives (borrowed slices of Exposed, cached destinations dropped by
        // forget_buffer, the scratch buffer freed after its registration).
        unsafe { MemoryRegion::register(&self.domain, buf, len, access, key) }
            .map_err(|e| registration_error(e, len, memlock_limit()))
    }

    /// The scratch slot at `offset` (one of `wire`'s constant slots).
    ///
    /// # Safety
    /// No other slice of the same slot may be alive while the returned one
    /// is, and no posted operation may be writing that slot (the transport
    /// is single-threaded; each slot serves one operation at a time).
    #[allow(clippy::mut_from_ref)] // the slot is raw memory, not data of `self`
    unsafe fn scratch_slice(&self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= wire::SCRATCH_LEN);
        // SAFETY: within the scratch allocation (the slots are constants
        // inside it); exclusive use is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.scratch.ptr(offset), len) }
    }
}

/// The soft RLIMIT_MEMLOCK, `None` when unlimited.
fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// A registration failure, turned into [`FabricError::Memlock`] when the
/// locked-memory limit is the likely cause.
fn registration_error(e: FabricError, len: usize, limit: Option<u64>) -> FabricError {
    match (&e, limit) {
        (FabricError::Call { errno, text, .. }, Some(limit))
            if [libc::ENOMEM, libc::EPERM, libc::ENOSPC].contains(errno) =>
        {
            FabricError::Memlock {
                len,
                limit: format!("{limit} bytes"),
                text: text.clone(),
            }
        }
        _ => e,
    }
}

/// `FI_MR_*` bit names.
fn mr_mode_names(bits: u64) -> Vec<&'static str> {
    [
        (sys::FI_MR_LOCAL, "FI_MR_LOCAL"),
        (sys::FI_MR_RAW, "FI_MR_RAW"),
        (sys::FI_MR_VIRT_ADDR, "FI_MR_VIRT_ADDR"),
        (sys::FI_MR_ALLOCATED, "FI_MR_ALLOCATED"),
        (sys::FI_MR_PROV_KEY, "FI_MR_PROV_KEY"),
        (sys::FI_MR_ENDPOINT, "FI_MR_ENDPOINT"),
    ]
    .into_iter()
    .filter(|(b, _)| bits & *b as u64 != 0)
    .map(|(_, n)| n)
    .collect()
}

/// `fi_getinfo` for the configured provider and path.
fn choose(config: &Config) -> Result<(Info, Choice)> {
    let env = std::env::var("FI_PROVIDER").ok().filter(|p| !p.is_empty());
    let (provider, source) = match (&config.provider, env) {
        (Some(p), _) => (Some(p.clone()), ProviderSource::Config),
        // libfabric applies FI_PROVIDER itself (including `^name` exclusions).
        (None, Some(_)) => (None, ProviderSource::Environment),
        (None, None) => (None, ProviderSource::Default),
    };
    let get = |caps| {
        Info::get(&Hints {
            provider: provider.clone(),
            node: config.node.clone(),
            caps,
        })
    };
    let no_data = |e: &FabricError| matches!(e, FabricError::Call { errno, .. } if *errno == sys::FI_ENODATA as i32);
    let (info, path, reason) = match config.path {
        PathChoice::Rma => (
            get(CAPS_RMA).map_err(|e| unavailable(e, &provider, config, CAPS_RMA))?,
            PullPath::Rma,
            None,
        ),
        PathChoice::Messages => (
            get(CAPS_MSG).map_err(|e| unavailable(e, &provider, config, CAPS_MSG))?,
            PullPath::Messages,
            Some("message path forced by configuration".to_string()),
        ),
        PathChoice::Auto => match get(CAPS_RMA) {
            Ok(info) => (info, PullPath::Rma, None),
            Err(e) if no_data(&e) => {
                let info =
                    get(CAPS_MSG).map_err(|e| unavailable(e, &provider, config, CAPS_MSG))?;
                let reason = format!("provider {} offers no FI_RMA", info.provider());
                (info, PullPath::Messages, Some(reason))
            }
            Err(e) => return Err(e),
        },
    };
    let choice = Choice {
        provider: info.provider(),
        source,
        fabric: info.fabric_name(),
        domain: info.domain_name(),
        path,
        reason,
        mr_mode: mr_mode_names(info.mr_mode()),
        max_msg_size: info.max_msg_size(),
    };
    Ok((info, choice))
}

/// Turns "no data" from `fi_getinfo` into a typed error naming what exists.
fn unavailable(
    e: FabricError,
    provider: &Option<String>,
    config: &Config,
    caps: u64,
) -> FabricError {
    if !matches!(&e, FabricError::Call { errno, .. } if *errno == sys::FI_ENODATA as i32) {
        return e;
    }
    let caps_text = if caps & sys::FI_RMA as u64 != 0 {
        "FI_RMA|FI_TAGGED"
    } else {
        "FI_TAGGED"
    }
    .to_string();
    match provider {
        Some(p) => {
            let available = Info::get(&Hints {
                provider: None,
                node: config.node.clone(),
                caps: CAPS_MSG,
            })
            .map(|i| i.provider_names().join(", "))
            .unwrap_or_else(|_| "none".into());
            FabricError::ProviderUnavailable {
                requested: p.clone(),
                caps: caps_text,
                available,
            }
        }
        None => FabricError::NoProvider {
            caps: caps_text,
            text: crate::raw::strerror(sys::FI_ENODATA as i32),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip_through_text() {
        let d = RegionDescriptor {
            provider: "tcp;ofi_rxm".into(),
            rma: true,
            name: vec![2, 0, 0x1f, 0x90, 127, 0, 0, 1],
            addr: 0x7f00_1234_5678,
            len: 1 << 20,
            key: 0xabc,
        };
        let text = d.to_string();
        assert_eq!(text.parse::<RegionDescriptor>().unwrap(), d);
        for bad in [
            "",
            "fabric-region provider=x",
            "other provider=x rma=1 addr=0 len=1 key=0 name=00",
            "fabric-region provider=x rma=2 addr=0 len=1 key=0 name=00",
            "fabric-region provider=x rma=1 addr=0 len=1 key=0 name=0",
        ] {
            assert!(
                matches!(
                    bad.parse::<RegionDescriptor>(),
                    Err(FabricError::Descriptor(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn slices_stay_within_their_region() {
        let r = RemoteRegion {
            addr: 1000,
            len: 100,
            key: 7,
            peer: Peer { addr: 0, rma: true },
        };
        let s = r.slice(10, 90).unwrap();
        assert_eq!((s.addr, s.len, s.key), (1010, 90, 7));
        assert!(matches!(
            r.slice(10, 91),
            Err(FabricError::OutOfRange {
                offset: 10,
                len: 91,
                region: 100
            })
        ));
        assert!(r.slice(u64::MAX, 2).is_err());
    }

    #[test]
    fn registration_failures_name_the_memlock_limit_when_it_is_the_cause() {
        let e = registration_error(
            FabricError::call("fi_mr_reg", libc::ENOMEM),
            1 << 24,
            Some(8 << 20),
        );
        let text = e.to_string();
        assert!(matches!(e, FabricError::Memlock { len, .. } if len == 1 << 24));
        assert!(
            text.contains("RLIMIT_MEMLOCK is 8388608 bytes") && text.contains("ulimit -l"),
            "{text}"
        );
        // Unlimited, or another errno: the plain call error.
        let e = registration_error(FabricError::call("fi_mr_reg", libc::ENOMEM), 1, None);
        assert!(matches!(
            e,
            FabricError::Call {
                call: "fi_mr_reg",
                ..
            }
        ));
        let e = registration_error(FabricError::call("fi_mr_reg", libc::EINVAL), 1, Some(1));
        assert!(matches!(e, FabricError::Call { errno, .. } if errno == libc::EINVAL));
    }

    #[test]
    fn mr_mode_bits_are_named() {
        let bits = (sys::FI_MR_LOCAL | sys::FI_MR_PROV_KEY) as u64;
        assert_eq!(mr_mode_names(bits), vec!["FI_MR_LOCAL", "FI_MR_PROV_KEY"]);
        assert!(mr_mode_names(0).is_empty());
    }
}
