//! Cross-process hand-off of CDOs through the pool manager, against the
//! file-system path (`/dev/shm` file written, renamed, read back) and against
//! a hand-made shared-memory pool (`memfd pool`), the limit to aim at.
//!
//! The second process is this very binary, re-executed by [`run`] with
//! [`CHILD_ENV`] set: the binary's `main` must call
//! [`child_main_if_requested`] before anything else. The child joins the pool
//! manager that [`run`] starts in-process (found through `CDO_POOL_SOCKET` and
//! `CDO_WORKFLOW_TOKEN`), reads one command per line on stdin and answers one
//! line on stdout. In both paths the producer (this process) writes every byte
//! of each object and the consumer (the child) reads every byte; both paths
//! hand over a batch of objects per pipe message ("take these", "done"), so
//! the comparison is of the data paths: shared-memory slots plus pipelined
//! control messages against create/write/rename/open/read/unlink.
//!
//! The memfd pool is what a user would write by hand: one memfd per object
//! size, cut into as many slots as a timed batch holds, pre-faulted by the
//! producer and shared once with the consumer (inherited at spawn; the
//! consumer maps it with `MAP_POPULATE`). Per batch the producer writes every
//! byte of its slots and sends one notice on a Unix socket (which memfd,
//! which slots); the consumer reads the slots in place, checksums every byte
//! and answers with the checksum, after which the producer reuses the slots.
//!
//! Every path's checksums are verified against what the producer wrote. A
//! timed sample of ours ends when the manager has answered every offer and
//! every withdrawal of the batch.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::manager::{self, ManagerConfig};
use cdo::ipc::wire::{Attributes, RequestId};

use crate::{interleaved_medians, Better, Row};

/// Environment variable that turns this binary into the benchmark's consumer.
pub const CHILD_ENV: &str = "CDO_IPC_BENCH_CHILD";

/// Environment variable naming the consumer's end of the memfd pool's
/// notice socket (an inherited descriptor).
const NOTICE_ENV: &str = "CDO_IPC_BENCH_NOTICE";
/// Environment variable listing the memfd pools the consumer inherits:
/// `fd:slot_size:slots`, comma-separated, in the order of their index.
const MEMFD_ENV: &str = "CDO_IPC_BENCH_MEMFDS";

/// Size of the objects of the `cycles-poolmanager` case.
const CYCLE_OBJECT: u64 = 64;
/// Objects per pipelined batch of the `cycles-poolmanager` case.
const CYCLE_BATCH: usize = 2000;

/// Runs the consumer and exits if [`CHILD_ENV`] is set; returns otherwise.
pub fn child_main_if_requested() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_main();
        std::process::exit(0);
    }
}

/// Sum of all bytes taken as little-endian words: reads every byte.
fn checksum(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let tail: u64 = words.remainder().iter().map(|&b| u64::from(b)).sum();
    words
        .map(|w| u64::from_le_bytes(w.try_into().expect("8-byte chunk")))
        .fold(tail, u64::wrapping_add)
}

/// [`checksum`] of `size` bytes that all hold `byte`, without reading them.
fn expected_checksum(size: u64, byte: u8) -> u64 {
    let word = u64::from_le_bytes([byte; 8]);
    (size / 8)
        .wrapping_mul(word)
        .wrapping_add((size % 8) * u64::from(byte))
}

/// Checks a consumer's `ok SUM` answer against the expected sum.
fn check_answer(got: &str, expected: u64) {
    assert_eq!(got, format!("ok {expected}"), "the consumer's checksum");
}

/// A shared mapping of a whole memfd.
struct Shared {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; who writes and who reads a
// slot is ordered by the notice socket's messages.
unsafe impl Send for Shared {}

impl Shared {
    /// Maps `len` bytes of `fd`, writable or (with `MAP_POPULATE`) read-only.
    fn map(fd: i32, len: usize, writable: bool) -> Shared {
        let (prot, flags) = if writable {
            (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED)
        } else {
            (libc::PROT_READ, libc::MAP_SHARED | libc::MAP_POPULATE)
        };
        // SAFETY: a fresh shared mapping of a memfd of at least `len` bytes;
        // nothing else refers to the returned range.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap the memfd");
        Shared {
            ptr: ptr.cast(),
            len,
        }
    }

    /// The bytes `offset..offset + len` (a slot the consumer may read).
    fn slice(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.len, "slot out of the mapping");
        // SAFETY: in bounds (checked); the producer does not write a slot
        // between its notice and the consumer's answer.
        unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) }
    }

    /// The bytes `offset..offset + len` for the producer to fill.
    fn slice_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset + len <= self.len, "slot out of the mapping");
        // SAFETY: in bounds (checked), writable mapping; the consumer reads
        // a slot only between its notice and its answer.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mapped in `map`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The producer's side of one memfd pool: `slots` slots of `slot` bytes.
struct MemfdPool {
    fd: OwnedFd,
    map: Shared,
    slot: usize,
    slots: usize,
}

impl MemfdPool {
    /// A memfd of `slots * slot` bytes, mapped and pre-faulted, that child
    /// processes inherit.
    fn new(slot: usize, slots: usize) -> MemfdPool {
        let len = slot * slots;
        // SAFETY: a valid C string; no MFD_CLOEXEC, so the consumer inherits
        // the descriptor.
        let raw = unsafe { libc::memfd_create(c"cdo-bench-pool".as_ptr(), 0) };
        assert!(raw >= 0, "memfd_create");
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sizes the memfd we own.
        let rc = unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) };
        assert_eq!(rc, 0, "ftruncate the memfd");
        let mut map = Shared::map(fd.as_raw_fd(), len, true);
        // Pre-fault every page.
        map.slice_mut(0, len).fill(0);
        MemfdPool {
            fd,
            map,
            slot,
            slots,
        }
    }
}

/// The consumer's side of the memfd pools: answers each notice (pool,
/// first slot, count; three little-endian u64) with the checksum of the
/// slots (one little-endian u64), until the socket closes.
fn serve_memfd_notices(mut socket: UnixStream, pools: Vec<(Shared, usize)>) {
    let mut notice = [0u8; 24];
    while socket.read_exact(&mut notice).is_ok() {
        let word = |i: usize| {
            u64::from_le_bytes(notice[8 * i..8 * i + 8].try_into().expect("8 bytes")) as usize
        };
        let (map, slot) = &pools[word(0)];
        let sum = (word(1)..word(1) + word(2)).fold(0u64, |s, k| {
            s.wrapping_add(checksum(map.slice(k * slot, *slot)))
        });
        socket
            .write_all(&sum.to_le_bytes())
            .expect("answer the notice");
    }
}

/// Starts the consumer's memfd thread when the producer shared pools.
fn start_memfd_consumer() {
    let Some(notice) = std::env::var_os(NOTICE_ENV) else {
        return;
    };
    let fd: i32 = notice
        .to_str()
        .and_then(|s| s.parse().ok())
        .expect("a descriptor");
    // SAFETY: the producer left this end of its socket pair open for us and
    // nothing else in this process uses it.
    let socket = unsafe { UnixStream::from_raw_fd(fd) };
    let spec = std::env::var(MEMFD_ENV).unwrap_or_default();
    let pools = spec
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let f: Vec<usize> = p.split(':').map(|n| n.parse().expect("a number")).collect();
            let map = Shared::map(f[0] as i32, f[1] * f[2], false);
            (map, f[1])
        })
        .collect();
    std::thread::spawn(move || serve_memfd_notices(socket, pools));
}

fn child_main() {
    start_memfd_consumer();
    let config =
        ClientConfig::from_env("bench-consumer").expect("CDO_POOL_SOCKET and CDO_WORKFLOW_TOKEN");
    let mut client = Client::connect(&config).expect("join the pool");
    let mut buf = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read a command");
        let words: Vec<&str> = line.split(' ').collect();
        let answer = match words[..] {
            ["cdo", first, count] => {
                let first: u64 = first.parse().expect("first");
                let count: u64 = count.parse().expect("count");
                let names: Vec<String> = (first..first + count).map(|i| format!("h{i}")).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let views = client
                    .demand_many(&refs, Duration::from_secs(60))
                    .expect("demand");
                let sum = views.iter().fold(0u64, |s, v| s.wrapping_add(checksum(v)));
                // Report the dropped views now: the producer's withdrawals
                // wait for it, and it reuses their slots in its next batch.
                drop(views);
                client.flush().expect("release");
                sum
            }
            ["file", prefix, first, count, size] => {
                let first: u64 = first.parse().expect("first");
                let count: u64 = count.parse().expect("count");
                buf.resize(size.parse().expect("size"), 0);
                let mut sum = 0u64;
                for i in first..first + count {
                    File::open(format!("{prefix}-{i}"))
                        .and_then(|mut f| f.read_exact(&mut buf))
                        .expect("read the file");
                    sum = sum.wrapping_add(checksum(&buf));
                }
                sum
            }
            ["cycles", batches] => {
                let batches: usize = batches.parse().expect("batches");
                let mut sum = 0u64;
                for b in 0..batches {
                    let names: Vec<String> =
                        (0..CYCLE_BATCH).map(|i| format!("c{b}-{i}")).collect();
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    let views = client
                        .demand_many(&refs, Duration::from_secs(60))
                        .expect("demand");
                    sum = views.iter().fold(sum, |s, v| s.wrapping_add(checksum(v)));
                    drop(views);
                    client.flush().expect("release");
                    writeln!(out, "done {b}")
                        .and_then(|()| out.flush())
                        .expect("answer");
                }
                sum
            }
            _ => panic!("unknown command {line:?}"),
        };
        writeln!(out, "ok {answer}")
            .and_then(|()| out.flush())
            .expect("answer");
    }
}

/// The consumer process and its pipes.
struct Consumer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Consumer {
    fn tell(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("command the child");
        self.stdin.flush().expect("command the child");
    }

    fn ask(&mut self, line: &str) -> String {
        self.tell(line);
        self.answer()
    }

    fn answer(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).expect("child answer");
        assert!(!s.is_empty(), "the consumer process died");
        s.trim().to_owned()
    }
}

/// `count` hand-offs through the pool: we fill each object in shared memory
/// and offer it, the child demands and reads them all, we withdraw them and
/// wait for every reply (offers' and withdrawals'), all inside the call.
///
/// A withdrawal is answered once the child has reported its dropped views,
/// which it does before it answers.
fn handoff_cdo(producer: &mut Client, child: &mut Consumer, size: u64, first: u64, count: u64) {
    let names: Vec<String> = (first..first + count).map(|i| format!("h{i}")).collect();
    let mut pending = Vec::with_capacity(2 * names.len());
    for n in &names {
        let id = producer
            .submit_offer(n, size, Attributes::new(), |dst| dst.fill(first as u8))
            .expect("offer");
        pending.push(id);
    }
    producer.flush().expect("flush");
    let got = child.ask(&format!("cdo {first} {count}"));
    check_answer(
        &got,
        count.wrapping_mul(expected_checksum(size, first as u8)),
    );
    for n in &names {
        pending.push(producer.submit_withdraw(n).expect("withdraw"));
    }
    producer.flush().expect("flush");
    collect(producer, &mut pending);
}

/// Waits for the replies to `pending` and checks that they succeeded.
fn collect(producer: &mut Client, pending: &mut Vec<RequestId>) {
    for id in pending.drain(..) {
        producer.wait(id, None).expect("request failed");
    }
}

/// `count` hand-offs through files: we fill a buffer, write it to a
/// temporary file in /dev/shm and rename it, for each object; the child opens
/// and reads them all; we unlink them.
fn handoff_file(buf: &mut [u8], child: &mut Consumer, first: u64, count: u64) {
    let prefix = format!("/dev/shm/cdo-bench-{}", std::process::id());
    let tmp = format!("{prefix}.tmp");
    for i in first..first + count {
        buf.fill(i as u8);
        File::create(&tmp)
            .and_then(|mut f| f.write_all(buf))
            .expect("write the file");
        std::fs::rename(&tmp, format!("{prefix}-{i}")).expect("rename");
    }
    let got = child.ask(&format!("file {prefix} {first} {count} {}", buf.len()));
    let expected = (first..first + count).fold(0u64, |s, i| {
        s.wrapping_add(expected_checksum(buf.len() as u64, i as u8))
    });
    check_answer(&got, expected);
    for i in first..first + count {
        std::fs::remove_file(format!("{prefix}-{i}")).expect("unlink");
    }
}

/// `count` hand-offs through memfd pool number `index`: we fill `count`
/// slots, send one notice, the child reads them in place and answers with
/// their checksum, which we check; the slots are then free for reuse.
fn handoff_memfd(
    pool: &mut MemfdPool,
    index: usize,
    socket: &mut UnixStream,
    byte: u8,
    count: usize,
) {
    assert!(count <= pool.slots, "a batch fits the pool");
    let slot = pool.slot;
    for k in 0..count {
        pool.map.slice_mut(k * slot, slot).fill(byte);
    }
    let mut notice = [0u8; 24];
    for (i, w) in [index, 0, count].into_iter().enumerate() {
        notice[8 * i..8 * i + 8].copy_from_slice(&(w as u64).to_le_bytes());
    }
    socket.write_all(&notice).expect("notice the consumer");
    let mut answer = [0u8; 8];
    socket
        .read_exact(&mut answer)
        .expect("the consumer answers");
    let expected = (count as u64).wrapping_mul(expected_checksum(slot as u64, byte));
    assert_eq!(
        u64::from_le_bytes(answer),
        expected,
        "the consumer's checksum"
    );
}

/// Offer+demand+withdraw cycles per second, pipelined in batches: the child
/// demands batch `b` while we withdraw batch `b - 1` and offer batch `b`.
fn cycles(producer: &mut Client, child: &mut Consumer, batches: usize) -> f64 {
    child.tell(&format!("cycles {batches}"));
    let names = |b: usize| (0..CYCLE_BATCH).map(move |i| format!("c{b}-{i}"));
    let start = Instant::now();
    let mut ids = Vec::with_capacity(2 * CYCLE_BATCH);
    for b in 0..=batches {
        if b > 0 {
            let done = child.answer();
            assert_eq!(done, format!("done {}", b - 1));
            for n in names(b - 1) {
                ids.push(producer.submit_withdraw(&n).expect("withdraw"));
            }
        }
        if b < batches {
            for n in names(b) {
                let id = producer
                    .submit_offer(&n, CYCLE_OBJECT, Attributes::new(), |d| d.fill(b as u8))
                    .expect("offer");
                ids.push(id);
            }
        }
        producer.flush().expect("flush");
        for id in ids.drain(..) {
            producer.wait(id, None).expect("reply");
        }
    }
    let elapsed = start.elapsed();
    let expected = (0..batches).fold(0u64, |s, b| {
        s.wrapping_add((CYCLE_BATCH as u64).wrapping_mul(expected_checksum(CYCLE_OBJECT, b as u8)))
    });
    check_answer(&child.answer(), expected);
    (batches * CYCLE_BATCH) as f64 / elapsed.as_secs_f64()
}

/// Runs every case; see the module documentation for the child process.
pub fn run() -> Vec<Row> {
    run_matching("")
}

/// Runs the cases whose name contains `filter`.
pub fn run_matching(filter: &str) -> Vec<Row> {
    let cases = [
        ("handoff-4KiB", 4u64 << 10, 256u64, 31),
        ("handoff-1MiB", 1 << 20, 16, 15),
        ("handoff-64MiB", 64 << 20, 1, 9),
    ];
    let cases: Vec<_> = cases.into_iter().filter(|c| c.0.contains(filter)).collect();
    // The memfd pools, made before the consumer starts so that it inherits
    // them with its end of the notice socket.
    let mut pools: Vec<MemfdPool> = cases
        .iter()
        .map(|&(_, size, per_sample, _)| MemfdPool::new(size as usize, per_sample as usize))
        .collect();
    let (mut notices, theirs) = UnixStream::pair().expect("a socket pair");
    // SAFETY: clears close-on-exec on a descriptor we own, so that the
    // consumer inherits it.
    let rc = unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) };
    assert_eq!(rc, 0, "fcntl");
    let spec: Vec<String> = pools
        .iter()
        .map(|p| format!("{}:{}:{}", p.fd.as_raw_fd(), p.slot, p.slots))
        .collect();
    let pm = manager::start(ManagerConfig::default()).expect("start the pool manager");
    let mut producer = Client::connect(&ClientConfig::new(pm.endpoint().clone(), "bench-producer"))
        .expect("join the pool");
    let mut child = Command::new(std::env::current_exe().expect("our own path"))
        .env(CHILD_ENV, "1")
        .env(NOTICE_ENV, theirs.as_raw_fd().to_string())
        .env(MEMFD_ENV, spec.join(","))
        .envs(pm.endpoint().env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the consumer");
    drop(theirs);
    let mut consumer = Consumer {
        stdin: child.stdin.take().expect("piped"),
        stdout: BufReader::new(child.stdout.take().expect("piped")),
        child,
    };
    let mut rows = Vec::new();
    let mut seq = 0u64;
    for (index, (case, size, per_sample, rounds)) in cases.into_iter().enumerate() {
        let mut buf = vec![0u8; size as usize];
        let pool = &mut pools[index];
        // Warm every path (segments, the child's mappings, buffers).
        for _ in 0..2 {
            seq += per_sample;
            handoff_cdo(&mut producer, &mut consumer, size, seq, per_sample);
            handoff_memfd(pool, index, &mut notices, seq as u8, per_sample as usize);
        }
        handoff_file(&mut buf, &mut consumer, 0, per_sample);
        let us = |d: Duration| d.as_secs_f64() * 1e6 / per_sample as f64;
        // Both closures talk to the one child.
        let shared = RefCell::new(&mut consumer);
        let mut time_ours = || {
            seq += per_sample;
            let start = Instant::now();
            handoff_cdo(
                &mut producer,
                &mut shared.borrow_mut(),
                size,
                seq,
                per_sample,
            );
            start.elapsed()
        };
        let (ours, file) = interleaved_medians(rounds, &mut time_ours, || {
            let start = Instant::now();
            handoff_file(&mut buf, &mut shared.borrow_mut(), 0, per_sample);
            start.elapsed()
        });
        let mut byte = 0u8;
        let (ours_memfd, memfd) = interleaved_medians(rounds, &mut time_ours, || {
            byte = byte.wrapping_add(1);
            let start = Instant::now();
            handoff_memfd(pool, index, &mut notices, byte, per_sample as usize);
            start.elapsed()
        });
        for (ours, theirs, peer) in [
            (ours, file, "/dev/shm file"),
            (ours_memfd, memfd, "memfd pool"),
        ] {
            rows.push(Row::compared(
                "cdo",
                case,
                "us/object",
                Better::Lower,
                us(ours),
                us(theirs),
                peer,
            ));
        }
    }
    if "cycles-poolmanager".contains(filter) {
        cycles(&mut producer, &mut consumer, 5);
        let mut rates: Vec<f64> = (0..5)
            .map(|_| cycles(&mut producer, &mut consumer, 20))
            .collect();
        rates.sort_by(f64::total_cmp);
        rows.push(Row::alone(
            "cdo",
            "cycles-poolmanager",
            "cycles/s",
            Better::Higher,
            rates[rates.len() / 2],
        ));
    }
    drop(consumer.stdin);
    drop(notices);
    let _ = consumer.child.wait();
    drop(producer);
    pm.shutdown();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_checksum_is_the_checksum_of_the_filled_bytes() {
        for size in [0usize, 1, 7, 8, 9, 4096, 4099] {
            for byte in [0u8, 1, 0x7f, 0xff] {
                let bytes = vec![byte; size];
                assert_eq!(
                    expected_checksum(size as u64, byte),
                    checksum(&bytes),
                    "{size} bytes of {byte}"
                );
            }
        }
    }
}
