//! Cross-process hand-off of CDOs through the pool manager, against the
//! file-system path (`/dev/shm` file written, renamed, read back).
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

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use cdo::ipc::client::{Client, ClientConfig};
use cdo::ipc::manager::{self, ManagerConfig};
use cdo::ipc::wire::{Attributes, RequestId};

use crate::{interleaved_medians, Better, Row};

/// Environment variable that turns this binary into the benchmark's consumer.
pub const CHILD_ENV: &str = "CDO_IPC_BENCH_CHILD";

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

fn child_main() {
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
/// and offer it, the child demands and reads them all, we withdraw them.
///
/// The withdrawals are sent without waiting: their replies (in `pending`,
/// with the offers') are collected at the start of the next call, so the
/// manager's bookkeeping overlaps whatever runs in between instead of adding
/// a round trip to this batch (every reply is still checked). A withdrawal is
/// answered once the child has reported its dropped views, which it does
/// before it answers.
fn handoff_cdo(
    producer: &mut Client,
    child: &mut Consumer,
    size: u64,
    first: u64,
    count: u64,
    pending: &mut Vec<RequestId>,
) {
    let names: Vec<String> = (first..first + count).map(|i| format!("h{i}")).collect();
    // The previous batch's withdrawals, answered by now in the common case:
    // their (cache-warm) slots are reused below.
    collect(producer, pending);
    for n in &names {
        let id = producer
            .submit_offer(n, size, Attributes::new(), |dst| dst.fill(first as u8))
            .expect("offer");
        pending.push(id);
    }
    producer.flush().expect("flush");
    let got = child.ask(&format!("cdo {first} {count}"));
    assert!(got.starts_with("ok"), "{got}");
    for n in &names {
        pending.push(producer.submit_withdraw(n).expect("withdraw"));
    }
    producer.flush().expect("flush");
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
    assert!(got.starts_with("ok"), "{got}");
    for i in first..first + count {
        std::fs::remove_file(format!("{prefix}-{i}")).expect("unlink");
    }
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
    let last = child.answer();
    assert!(last.starts_with("ok"), "{last}");
    (batches * CYCLE_BATCH) as f64 / elapsed.as_secs_f64()
}

/// Runs every case; see the module documentation for the child process.
pub fn run() -> Vec<Row> {
    run_matching("")
}

/// Runs the cases whose name contains `filter`.
pub fn run_matching(filter: &str) -> Vec<Row> {
    let pm = manager::start(ManagerConfig::default()).expect("start the pool manager");
    let mut producer = Client::connect(&ClientConfig::new(pm.endpoint().clone(), "bench-producer"))
        .expect("join the pool");
    let mut child = Command::new(std::env::current_exe().expect("our own path"))
        .env(CHILD_ENV, "1")
        .envs(pm.endpoint().env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the consumer");
    let mut consumer = Consumer {
        stdin: child.stdin.take().expect("piped"),
        stdout: BufReader::new(child.stdout.take().expect("piped")),
        child,
    };
    let mut rows = Vec::new();
    let mut seq = 0u64;
    let mut pending = Vec::new();
    for (case, size, per_sample, rounds) in [
        ("handoff-4KiB", 4u64 << 10, 256u64, 31),
        ("handoff-1MiB", 1 << 20, 16, 15),
        ("handoff-64MiB", 64 << 20, 1, 9),
    ] {
        if !case.contains(filter) {
            continue;
        }
        let mut buf = vec![0u8; size as usize];
        // Warm both paths (segments, the child's mappings, buffers).
        for _ in 0..2 {
            seq += per_sample;
            handoff_cdo(
                &mut producer,
                &mut consumer,
                size,
                seq,
                per_sample,
                &mut pending,
            );
        }
        handoff_file(&mut buf, &mut consumer, 0, per_sample);
        // Both closures talk to the one child.
        let shared = RefCell::new(&mut consumer);
        let (ours, peer) = interleaved_medians(
            rounds,
            || {
                seq += per_sample;
                let start = Instant::now();
                handoff_cdo(
                    &mut producer,
                    &mut shared.borrow_mut(),
                    size,
                    seq,
                    per_sample,
                    &mut pending,
                );
                start.elapsed()
            },
            || {
                let start = Instant::now();
                handoff_file(&mut buf, &mut shared.borrow_mut(), 0, per_sample);
                start.elapsed()
            },
        );
        collect(&mut producer, &mut pending);
        let us = |d: Duration| d.as_secs_f64() * 1e6 / per_sample as f64;
        rows.push(Row::compared(
            "cdo",
            case,
            "us/object",
            Better::Lower,
            us(ours),
            us(peer),
            "/dev/shm file",
        ));
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
    let _ = consumer.child.wait();
    drop(producer);
    pm.shutdown();
    rows
}
