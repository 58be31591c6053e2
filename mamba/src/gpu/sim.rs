//! The in-memory test double of a GPU, [`SimDevice`].

use super::device::{DevicePtr, DeviceRuntime, EventId, StreamId};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// First device address handed out: far above any user-space host address
/// of a 47-bit address space, so that a device address is never a valid
/// host pointer.
const FIRST_ADDRESS: u64 = 0xD000_0000_0000_0000;
/// Alignment of device allocations (as `cuMemAlloc`'s).
const DEVICE_ALIGN: u64 = 256;

/// Operation counts of one simulated device, counted when the operations
/// run (not when they are enqueued).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Host-to-device copies run.
    pub htod_copies: u64,
    /// Bytes they moved.
    pub htod_bytes: u64,
    /// Device-to-host copies run.
    pub dtoh_copies: u64,
    /// Bytes they moved.
    pub dtoh_bytes: u64,
    /// Copies within the device run.
    pub dtod_copies: u64,
    /// Bytes they moved.
    pub dtod_bytes: u64,
    /// Copies from this device to another run.
    pub peer_copies: u64,
    /// Bytes they moved.
    pub peer_bytes: u64,
    /// Device allocations made.
    pub allocs: u64,
    /// Device allocations freed (when the free ran on its stream).
    pub frees: u64,
    /// Device bytes allocated and not yet freed.
    pub live_bytes: u64,
    /// Pinned host allocations made.
    pub pinned_allocs: u64,
    /// Pinned host allocations freed.
    pub pinned_frees: u64,
    /// Host functions run in stream order ([`SimDevice::launch_host`]).
    pub launches: u64,
}

/// A host function run in stream order by [`SimDevice::launch_host`]: the
/// test double's stand-in for a kernel, reaching device memory through
/// [`SimMemory`].
pub type HostKernel = Box<dyn FnOnce(&mut SimMemory<'_>) -> Result<()> + Send>;

/// A pending [`HostKernel`].
struct Launch(HostKernel);

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Launch")
    }
}

/// The memory of a simulated device as a [`HostKernel`] sees it: reads
/// and writes by device address, checked against the allocations.
pub struct SimMemory<'a> {
    node: &'a mut Node,
    device: u32,
}

impl std::fmt::Debug for SimMemory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMemory")
            .field("device", &self.device)
            .finish()
    }
}

impl SimMemory<'_> {
    /// Copies `dst.len()` device bytes at `ptr` into `dst`.
    ///
    /// # Errors
    /// A range outside one allocation of the device.
    pub fn read(&self, ptr: DevicePtr, dst: &mut [u8]) -> Result<()> {
        let base = self.node.find("kernel read", self.device, ptr, dst.len())?;
        let at = (ptr.0 - base) as usize;
        dst.copy_from_slice(&self.node.memory[&base].bytes[at..at + dst.len()]);
        Ok(())
    }

    /// Copies `src` to the device bytes at `ptr`.
    ///
    /// # Errors
    /// A range outside one allocation of the device.
    pub fn write(&mut self, ptr: DevicePtr, src: &[u8]) -> Result<()> {
        let base = self
            .node
            .find("kernel write", self.device, ptr, src.len())?;
        let at = (ptr.0 - base) as usize;
        match self.node.memory.get_mut(&base) {
            Some(block) => {
                block.bytes[at..at + src.len()].copy_from_slice(src);
                Ok(())
            }
            None => Err(sim_err("kernel write", "allocation gone")),
        }
    }

    /// Runs `f` on the `src_len` device bytes at `src` and the `dst_len`
    /// device bytes at `dst` where they are, without copying them out and
    /// back, as a kernel reads and writes device memory. Bytes at an
    /// 8-byte aligned device address are 8-byte aligned on the host.
    ///
    /// # Errors
    /// A range outside one allocation of the device; overlapping ranges.
    pub fn read_write<R>(
        &mut self,
        src: DevicePtr,
        src_len: usize,
        dst: DevicePtr,
        dst_len: usize,
        f: impl FnOnce(&[u8], &mut [u8]) -> R,
    ) -> Result<R> {
        const CALL: &str = "kernel read-write";
        let src_base = self.node.find(CALL, self.device, src, src_len)?;
        let dst_base = self.node.find(CALL, self.device, dst, dst_len)?;
        let (s, d) = ((src.0 - src_base) as usize, (dst.0 - dst_base) as usize);
        let (from, to) = (s..s + src_len, d..d + dst_len);
        if src_base == dst_base {
            let bytes = &mut *self
                .node
                .memory
                .get_mut(&src_base)
                .ok_or_else(|| sim_err(CALL, "allocation gone"))?
                .bytes;
            return if from.end <= to.start {
                let (low, high) = bytes.split_at_mut(to.start);
                Ok(f(&low[from], &mut high[..dst_len]))
            } else if to.end <= from.start {
                let (low, high) = bytes.split_at_mut(from.start);
                Ok(f(&high[..src_len], &mut low[to]))
            } else {
                Err(sim_err(CALL, "the ranges overlap"))
            };
        }
        // Two allocations: the first and last of the range between them.
        let mut blocks = self
            .node
            .memory
            .range_mut(src_base.min(dst_base)..=src_base.max(dst_base));
        let (Some((_, first)), Some((_, last))) = (blocks.next(), blocks.next_back()) else {
            return Err(sim_err(CALL, "allocation gone"));
        };
        let (read, write) = if src_base < dst_base {
            (first, last)
        } else {
            (last, first)
        };
        Ok(f(&read.bytes[from], &mut write.bytes[to]))
    }
}

/// A host address carried by a pending operation.
#[derive(Debug, Clone, Copy)]
struct HostAddr(usize);

#[derive(Debug)]
enum Op {
    HtoD {
        dst: DevicePtr,
        src: HostAddr,
        len: usize,
    },
    DtoH {
        dst: HostAddr,
        src: DevicePtr,
        len: usize,
    },
    DtoD {
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
    },
    Mark {
        event: u64,
        generation: u64,
    },
    Wait {
        event: u64,
        generation: u64,
    },
    Free {
        ptr: DevicePtr,
    },
    Launch(Launch),
}

#[derive(Debug)]
struct Block {
    device: u32,
    bytes: Bytes,
}

/// The bytes of one allocation, stored as 8-byte words: the bytes at an
/// 8-byte aligned offset are 8-byte aligned in host memory, so that a
/// [`HostKernel`] can view them in place as `f64`s.
#[derive(Debug)]
struct Bytes {
    words: Vec<u64>,
    len: usize,
}

impl Bytes {
    fn zeroed(len: usize) -> Bytes {
        Bytes {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

impl std::ops::DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

#[derive(Debug)]
struct Stream {
    device: u32,
    queue: VecDeque<Op>,
}

#[derive(Debug)]
struct Event {
    device: u32,
    stream: Option<u64>,
    recorded: u64,
    completed: u64,
}

#[derive(Debug, Default)]
struct Node {
    memory: BTreeMap<u64, Block>,
    freeing: HashSet<u64>,
    next_address: u64,
    pinned: HashMap<usize, std::alloc::Layout>,
    streams: HashMap<u64, Stream>,
    events: HashMap<u64, Event>,
    stats: HashMap<u32, SimStats>,
}

fn sim_err(call: &'static str, message: impl Into<String>) -> Error {
    Error::Gpu {
        call,
        message: message.into(),
    }
}

impl Node {
    /// A stream or event handle, unique in the process so that a handle
    /// of another simulated device is never mistaken for one of ours.
    fn handle() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    fn stats(&mut self, device: u32) -> &mut SimStats {
        self.stats.entry(device).or_default()
    }

    /// The block holding `ptr..ptr+len` on `device`: its base address.
    fn find(&self, call: &'static str, device: u32, ptr: DevicePtr, len: usize) -> Result<u64> {
        let found = self.memory.range(..=ptr.0).next_back();
        match found {
            Some((&base, block))
                if block.device == device
                    && (ptr.0 - base)
                        .checked_add(len as u64)
                        .is_some_and(|end| end <= block.bytes.len() as u64) =>
            {
                Ok(base)
            }
            _ => Err(sim_err(
                call,
                format!(
                    "{len} bytes at {:#x} are not inside one allocation of device {device}",
                    ptr.0
                ),
            )),
        }
    }

    fn stream(&self, call: &'static str, device: u32, stream: StreamId) -> Result<()> {
        match self.streams.get(&stream.0) {
            Some(s) if s.device == device => Ok(()),
            _ => Err(sim_err(call, format!("unknown stream {}", stream.0))),
        }
    }

    fn event(&self, call: &'static str, device: u32, event: EventId) -> Result<&Event> {
        match self.events.get(&event.0) {
            Some(e) if e.device == device => Ok(e),
            _ => Err(sim_err(call, format!("unknown event {}", event.0))),
        }
    }

    fn enqueue(&mut self, stream: StreamId, op: Op) {
        if let Some(s) = self.streams.get_mut(&stream.0) {
            s.queue.push_back(op);
        }
    }

    fn event_done(&self, event: u64, generation: u64) -> bool {
        self.events
            .get(&event)
            .is_none_or(|e| e.completed >= generation)
    }

    /// Runs one operation of `stream`; when its head waits on an event not
    /// yet complete, runs one operation of the stream that event is
    /// recorded on instead. Whether anything ran.
    fn step(&mut self, stream: u64) -> Result<bool> {
        let Some(s) = self.streams.get_mut(&stream) else {
            return Ok(false);
        };
        let device = s.device;
        if let Some(Op::Wait { event, generation }) = s.queue.front() {
            let (event, generation) = (*event, *generation);
            if !self.event_done(event, generation) {
                let other = self.events.get(&event).and_then(|e| e.stream);
                return match other {
                    Some(other) if other != stream => self.step(other),
                    _ => Err(sim_err("cuStreamWaitEvent", "the wait can never end")),
                };
            }
        }
        let Some(op) = self
            .streams
            .get_mut(&stream)
            .and_then(|s| s.queue.pop_front())
        else {
            return Ok(false);
        };
        self.run(device, op)?;
        Ok(true)
    }

    fn run(&mut self, device: u32, op: Op) -> Result<()> {
        match op {
            Op::HtoD { dst, src, len } => {
                let base = self.find("cuMemcpyHtoDAsync", device, dst, len)?;
                let block = self.memory.get_mut(&base).expect("found above");
                let at = (dst.0 - base) as usize;
                // SAFETY: the caller of copy_htod_async promised that the
                // host range stays readable until the copy completed, which
                // is now.
                let host = unsafe { std::slice::from_raw_parts(src.0 as *const u8, len) };
                block.bytes[at..at + len].copy_from_slice(host);
                let st = self.stats(device);
                st.htod_copies += 1;
                st.htod_bytes += len as u64;
            }
            Op::DtoH { dst, src, len } => {
                let base = self.find("cuMemcpyDtoHAsync", device, src, len)?;
                let block = &self.memory[&base];
                let at = (src.0 - base) as usize;
                // SAFETY: the caller of copy_dtoh_async promised that the
                // host range stays writable and unshared until the copy
                // completed, which is now.
                let host = unsafe { std::slice::from_raw_parts_mut(dst.0 as *mut u8, len) };
                host.copy_from_slice(&block.bytes[at..at + len]);
                let st = self.stats(device);
                st.dtoh_copies += 1;
                st.dtoh_bytes += len as u64;
            }
            Op::DtoD { dst, src, len } => {
                let src_base = self.find("cuMemcpyDtoDAsync", device, src, len)?;
                let src_block = &self.memory[&src_base];
                let dst_device = self
                    .memory
                    .range(..=dst.0)
                    .next_back()
                    .map_or(device, |(_, b)| b.device);
                let at = (src.0 - src_base) as usize;
                let bytes = src_block.bytes[at..at + len].to_vec();
                let dst_base = self.find("cuMemcpyDtoDAsync", dst_device, dst, len)?;
                let at = (dst.0 - dst_base) as usize;
                let block = self.memory.get_mut(&dst_base).expect("found above");
                block.bytes[at..at + len].copy_from_slice(&bytes);
                let st = self.stats(device);
                if dst_device == device {
                    st.dtod_copies += 1;
                    st.dtod_bytes += len as u64;
                } else {
                    st.peer_copies += 1;
                    st.peer_bytes += len as u64;
                }
            }
            Op::Mark { event, generation } => {
                if let Some(e) = self.events.get_mut(&event) {
                    e.completed = e.completed.max(generation);
                }
            }
            Op::Wait { .. } => {}
            Op::Launch(Launch(kernel)) => {
                kernel(&mut SimMemory { node: self, device })?;
                self.stats(device).launches += 1;
            }
            Op::Free { ptr } => {
                self.freeing.remove(&ptr.0);
                if let Some(block) = self.memory.remove(&ptr.0) {
                    let st = self.stats(block.device);
                    st.frees += 1;
                    st.live_bytes -= block.bytes.len() as u64;
                }
            }
        }
        Ok(())
    }

    /// Runs `stream` until `done` holds.
    fn run_until(&mut self, stream: u64, done: impl Fn(&Node) -> bool) -> Result<()> {
        while !done(self) {
            if !self.step(stream)? {
                return Err(sim_err("cuStreamSynchronize", "the stream cannot progress"));
            }
        }
        Ok(())
    }
}

/// An in-memory **test double** of [`DeviceRuntime`]. It is
/// not a GPU: discovery never produces one and `mamba tiers` never shows
/// one. It exists so that the data plane's staging, chunking and stream
/// ordering are tested on machines without a GPU.
///
/// Device memory is host heap memory that the API never lets anyone
/// dereference: device addresses are numbers far from any host address, and
/// the bytes are reached only through the copies or [`SimDevice::peek`].
/// Streams are FIFO queues of pending operations that run only when
/// something forces them: [`DeviceRuntime::query_event`] (one operation of
/// the event's stream per query), [`DeviceRuntime::wait_event`], a
/// synchronization, or [`SimDevice::step`]. Copies read and write host
/// memory when they run, not when they are enqueued, so a host buffer
/// reused too early shows up as wrong bytes on the other side.
///
/// Devices made by one [`SimDevice::group`] share an address space and can
/// copy to each other (peer copies).
#[derive(Debug, Clone)]
pub struct SimDevice {
    ordinal: u32,
    node: Arc<Mutex<Node>>,
}

impl Default for SimDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl SimDevice {
    /// One simulated device, ordinal 0.
    pub fn new() -> Self {
        let mut devices = Self::group(1);
        devices.remove(0)
    }

    /// `count` simulated devices (ordinals `0..count`) that can reach each
    /// other's memory.
    pub fn group(count: u32) -> Vec<SimDevice> {
        let mut node = Node::default();
        node.next_address = FIRST_ADDRESS;
        let node = Arc::new(Mutex::new(node));
        (0..count)
            .map(|ordinal| SimDevice {
                ordinal,
                node: Arc::clone(&node),
            })
            .collect()
    }

    fn node(&self) -> MutexGuard<'_, Node> {
        // A panic while holding the lock cannot leave the node half-updated
        // in a way later calls rely on: keep going.
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one pending operation of `stream` (or of the stream it waits
    /// on); whether anything ran.
    ///
    /// # Errors
    /// An unknown stream; an error of the operation.
    pub fn step(&self, stream: StreamId) -> Result<bool> {
        let mut node = self.node();
        node.stream("step", self.ordinal, stream)?;
        node.step(stream.0)
    }

    /// The number of operations pending on `stream`.
    ///
    /// # Errors
    /// An unknown stream.
    pub fn pending(&self, stream: StreamId) -> Result<usize> {
        let node = self.node();
        node.stream("pending", self.ordinal, stream)?;
        Ok(node.streams[&stream.0].queue.len())
    }

    /// The device bytes `ptr..ptr+len` as they are now (pending work not
    /// run), for assertions.
    ///
    /// # Errors
    /// A range outside this device's allocations.
    pub fn peek(&self, ptr: DevicePtr, len: usize) -> Result<Vec<u8>> {
        let node = self.node();
        let base = node.find("peek", self.ordinal, ptr, len)?;
        let at = (ptr.0 - base) as usize;
        Ok(node.memory[&base].bytes[at..at + len].to_vec())
    }

    /// Enqueues `kernel` on `stream`: it runs in stream order, after the
    /// work enqueued before it and before the work enqueued after it, with
    /// this device's memory ([`SimMemory`]), as a kernel would on a GPU.
    /// Its error is the error of the synchronization that runs it.
    ///
    /// # Errors
    /// An unknown stream.
    pub fn launch_host(
        &self,
        stream: StreamId,
        kernel: impl FnOnce(&mut SimMemory<'_>) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let mut node = self.node();
        node.stream("launch_host", self.ordinal, stream)?;
        node.enqueue(stream, Op::Launch(Launch(Box::new(kernel))));
        Ok(())
    }

    /// Operation counts of this device so far.
    pub fn stats(&self) -> SimStats {
        self.node()
            .stats
            .get(&self.ordinal)
            .copied()
            .unwrap_or_default()
    }

    fn copy_checks(
        &self,
        call: &'static str,
        host: usize,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.node().stream(call, self.ordinal, stream)?;
        if host == 0 && len > 0 {
            return Err(sim_err(call, "null host pointer"));
        }
        Ok(())
    }
}

impl DeviceRuntime for SimDevice {
    fn ordinal(&self) -> u32 {
        self.ordinal
    }

    fn create_stream(&self) -> Result<StreamId> {
        let mut node = self.node();
        let id = Node::handle();
        node.streams.insert(
            id,
            Stream {
                device: self.ordinal,
                queue: VecDeque::new(),
            },
        );
        Ok(StreamId(id))
    }

    fn destroy_stream(&self, stream: StreamId) -> Result<()> {
        let mut node = self.node();
        node.stream("cuStreamDestroy", self.ordinal, stream)?;
        node.run_until(stream.0, |n| n.streams[&stream.0].queue.is_empty())?;
        node.streams.remove(&stream.0);
        Ok(())
    }

    unsafe fn copy_htod_async(
        &self,
        dst: DevicePtr,
        src: *const u8,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyHtoDAsync";
        self.copy_checks(CALL, src as usize, len, stream)?;
        let mut node = self.node();
        node.find(CALL, self.ordinal, dst, len)?;
        let src = HostAddr(src as usize);
        node.enqueue(stream, Op::HtoD { dst, src, len });
        Ok(())
    }

    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyDtoHAsync";
        self.copy_checks(CALL, dst as usize, len, stream)?;
        let mut node = self.node();
        node.find(CALL, self.ordinal, src, len)?;
        let dst = HostAddr(dst as usize);
        node.enqueue(stream, Op::DtoH { dst, src, len });
        Ok(())
    }

    unsafe fn copy_dtod_async(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        // SAFETY: forwarded contract; the same device on both sides.
        unsafe { self.copy_peer_async(self.ordinal, dst, src, len, stream) }
    }

    unsafe fn copy_peer_async(
        &self,
        dst_ordinal: u32,
        dst: DevicePtr,
        src: DevicePtr,
        len: usize,
        stream: StreamId,
    ) -> Result<()> {
        const CALL: &str = "cuMemcpyPeerAsync";
        let mut node = self.node();
        node.stream(CALL, self.ordinal, stream)?;
        node.find(CALL, self.ordinal, src, len)?;
        node.find(CALL, dst_ordinal, dst, len)?;
        node.enqueue(stream, Op::DtoD { dst, src, len });
        Ok(())
    }

    fn create_event(&self) -> Result<EventId> {
        let mut node = self.node();
        let id = Node::handle();
        node.events.insert(
            id,
            Event {
                device: self.ordinal,
                stream: None,
                recorded: 0,
                completed: 0,
            },
        );
        Ok(EventId(id))
    }

    fn destroy_event(&self, event: EventId) -> Result<()> {
        let mut node = self.node();
        node.event("cuEventDestroy", self.ordinal, event)?;
        node.events.remove(&event.0);
        Ok(())
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        const CALL: &str = "cuEventRecord";
        let mut node = self.node();
        node.stream(CALL, self.ordinal, stream)?;
        node.event(CALL, self.ordinal, event)?;
        let e = node.events.get_mut(&event.0).expect("checked above");
        e.recorded += 1;
        e.stream = Some(stream.0);
        let generation = e.recorded;
        node.enqueue(
            stream,
            Op::Mark {
                event: event.0,
                generation,
            },
        );
        Ok(())
    }

    fn query_event(&self, event: EventId) -> Result<bool> {
        let mut node = self.node();
        let e = node.event("cuEventQuery", self.ordinal, event)?;
        if e.completed >= e.recorded {
            return Ok(true);
        }
        if let Some(stream) = e.stream {
            node.step(stream)?;
        }
        let e = &node.events[&event.0];
        Ok(e.completed >= e.recorded)
    }

    fn wait_event(&self, event: EventId) -> Result<()> {
        let mut node = self.node();
        let e = node.event("cuEventSynchronize", self.ordinal, event)?;
        let (generation, stream) = (e.recorded, e.stream);
        match stream {
            Some(stream) => node.run_until(stream, |n| n.event_done(event.0, generation)),
            None => Ok(()),
        }
    }

    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        const CALL: &str = "cuStreamWaitEvent";
        let mut node = self.node();
        node.stream(CALL, self.ordinal, stream)?;
        let generation = node.event(CALL, self.ordinal, event)?.recorded;
        node.enqueue(
            stream,
            Op::Wait {
                event: event.0,
                generation,
            },
        );
        Ok(())
    }

    fn alloc_async(&self, len: usize, stream: StreamId) -> Result<DevicePtr> {
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        let mut node = self.node();
        node.stream("cuMemAllocAsync", self.ordinal, stream)?;
        let base = node.next_address;
        // A gap of one alignment unit after each block, so that an overrun
        // lands outside every allocation.
        let span = (len as u64).div_ceil(DEVICE_ALIGN) * DEVICE_ALIGN + DEVICE_ALIGN;
        node.next_address = base
            .checked_add(span)
            .ok_or(Error::SizeTooLarge { size: len })?;
        node.memory.insert(
            base,
            Block {
                device: self.ordinal,
                bytes: Bytes::zeroed(len),
            },
        );
        let st = node.stats(self.ordinal);
        st.allocs += 1;
        st.live_bytes += len as u64;
        Ok(DevicePtr(base))
    }

    unsafe fn free_async(&self, ptr: DevicePtr, stream: StreamId) -> Result<()> {
        const CALL: &str = "cuMemFreeAsync";
        let mut node = self.node();
        node.stream(CALL, self.ordinal, stream)?;
        let owned = node
            .memory
            .get(&ptr.0)
            .is_some_and(|b| b.device == self.ordinal);
        if !owned || !node.freeing.insert(ptr.0) {
            return Err(sim_err(
                CALL,
                format!(
                    "{:#x} is not a live allocation of device {}",
                    ptr.0, self.ordinal
                ),
            ));
        }
        node.enqueue(stream, Op::Free { ptr });
        Ok(())
    }

    fn alloc_pinned(&self, len: usize) -> Result<NonNull<u8>> {
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        let layout = std::alloc::Layout::from_size_align(len, crate::sys::page_size())
            .map_err(|_| Error::SizeTooLarge { size: len })?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| Error::Exhausted {
            call: "cuMemHostAlloc",
            reason: format!("{len} bytes"),
        })?;
        let mut node = self.node();
        node.pinned.insert(ptr.as_ptr() as usize, layout);
        node.stats(self.ordinal).pinned_allocs += 1;
        Ok(ptr)
    }

    unsafe fn free_pinned(&self, ptr: NonNull<u8>) -> Result<()> {
        let mut node = self.node();
        let layout = node
            .pinned
            .remove(&(ptr.as_ptr() as usize))
            .ok_or_else(|| sim_err("cuMemFreeHost", "not a pinned allocation"))?;
        // SAFETY: allocated by alloc_pinned with this layout, freed once
        // (it was just removed from the table).
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        node.stats(self.ordinal).pinned_frees += 1;
        Ok(())
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        let mut node = self.node();
        node.stream("cuStreamSynchronize", self.ordinal, stream)?;
        node.run_until(stream.0, |n| n.streams[&stream.0].queue.is_empty())
    }

    fn synchronize(&self) -> Result<()> {
        let mut node = self.node();
        let mine: Vec<u64> = node
            .streams
            .iter()
            .filter(|(_, s)| s.device == self.ordinal)
            .map(|(&id, _)| id)
            .collect();
        for id in mine {
            node.run_until(id, |n| n.streams[&id].queue.is_empty())?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for (&addr, &layout) in &self.pinned {
            // SAFETY: every entry is a live allocation of alloc_pinned with
            // this layout; the node (and every device of it) is gone.
            unsafe { std::alloc::dealloc(addr as *mut u8, layout) };
        }
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
