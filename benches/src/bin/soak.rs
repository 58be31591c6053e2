//! `soak`: runs a pool manager (`cdo-pm`, a separate process) under a steady
//! load for minutes and watches its resources.
//!
//! A producer process offers small objects at the target rate; a consumer
//! process demands each one, checks its bytes and drops the view; the
//! producer, told by a demand event, withdraws it (the withdrawal completes
//! once the view is released). Every sample prints the manager's resident
//! memory, its open descriptors (and how many are shared-memory segments),
//! the files in /dev/shm (machine-wide, so shown but not judged) and the
//! offer rate achieved since the previous sample; the verdict at the end
//! asks for flat resident memory (within a tolerance, after a warm-up), no
//! growth of descriptors, and no descriptor, segment or object left once
//! the producer and consumer are gone.
//!
//! ```text
//! soak --minutes 10 --rate 20000 --size 256
//! ```
//! The exit status is 0 when the verdict passes, 1 when it fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdo::ipc::client::{Client, ClientConfig, ClientError, Notice, Reply};
use cdo::ipc::endpoint::{Endpoint, SOCKET_ENV, TOKEN_ENV};
use cdo::ipc::wire::{Attributes, RequestId};
use cdo::EventKind;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Soak test of the CDO pool manager: steady load, resource samples, a verdict")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Length of the run, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Target objects per second (each offered, demanded and withdrawn).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Bytes per object.
    #[arg(long, default_value_t = 256)]
    size: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Tolerated growth of resident memory after the warm-up (median of the
    /// last third of the samples against the first third), in percent.
    #[arg(long, default_value_t = 10.0)]
    rss_tolerance: f64,
}

#[derive(Subcommand)]
enum Role {
    /// Offers objects at `rate` per second until `seconds` have passed.
    Producer { rate: u64, size: u64, seconds: f64 },
    /// Demands every object in turn until none comes for a while.
    Consumer { size: u64 },
}

/// Objects in flight per process (pipelined requests).
const WINDOW: usize = 512;

fn main() {
    let cli = Cli::parse();
    let code = match cli.role {
        Some(Role::Producer {
            rate,
            size,
            seconds,
        }) => producer(rate, size, seconds),
        Some(Role::Consumer { size }) => consumer(size),
        None => orchestrate(&cli),
    };
    std::process::exit(code);
}

fn client(role: &str) -> Client {
    let config = ClientConfig::from_env(role).expect("the orchestrator exports the endpoint");
    Client::connect(&config).expect("join the pool manager")
}

fn byte(i: u64) -> u8 {
    (i.wrapping_mul(131) >> 3) as u8
}

/// Waits for the reply to `id`; any failure ends the run.
fn settle(c: &mut Client, id: RequestId, what: &str) -> Reply {
    match c.wait(id, Some(Duration::from_secs(60))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {what} failed: {e}");
            std::process::exit(1);
        }
    }
}

fn producer(rate: u64, size: u64, seconds: f64) -> i32 {
    let mut c = client("soak-producer");
    c.subscribe("name ~ \"^o\"", EventKind::Demand.into(), false)
        .expect("subscribe to demands");
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut offered = 0u64;
    let mut pending: VecDeque<(RequestId, &str)> = VecDeque::new();
    while Instant::now() < end {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while offered < due && pending.len() < 2 * WINDOW {
            let i = offered;
            let id = c
                .submit_offer(&format!("o{i}"), size, Attributes::new(), |d| {
                    d.fill(byte(i))
                })
                .expect("queue an offer");
            pending.push_back((id, "offer"));
            offered += 1;
        }
        c.flush().expect("send");
        let mut demanded = Vec::new();
        let wait = if offered < due {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        };
        let mut first = true;
        loop {
            let n = if first {
                c.next_notice(Some(wait))
            } else {
                c.poll_notice()
            };
            first = false;
            match n.expect("read notices") {
                Some(Notice::Event(e)) => demanded.push(e.name),
                Some(Notice::Record(_)) => unreachable!("no group joined"),
                None => break,
            }
        }
        for name in demanded {
            let id = c.submit_withdraw(&name).expect("queue a withdrawal");
            pending.push_back((id, "withdraw"));
        }
        while pending.len() > WINDOW {
            let (id, what) = pending.pop_front().expect("non-empty");
            settle(&mut c, id, what);
        }
    }
    for (id, what) in pending {
        settle(&mut c, id, what);
    }
    println!("produced {offered}");
    // Objects not demanded yet are withdrawn by leaving.
    match c.leave(Duration::from_secs(60)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("soak: producer leave: {e}");
            1
        }
    }
}

fn consumer(size: u64) -> i32 {
    let mut c = client("soak-consumer");
    let mut next = 0u64;
    let mut pending: VecDeque<(u64, RequestId)> = VecDeque::new();
    let mut consumed = 0u64;
    loop {
        while pending.len() < WINDOW {
            let id = c
                .submit_demand(&format!("o{next}"))
                .expect("queue a demand");
            pending.push_back((next, id));
            next += 1;
        }
        let (i, id) = pending.pop_front().expect("non-empty");
        // The producer stops at its deadline: a long silence ends the run.
        match c.wait(id, Some(Duration::from_secs(5))) {
            Ok(Reply::Data(view)) => {
                if view.len() as u64 != size || view.iter().any(|&b| b != byte(i)) {
                    eprintln!("soak: object o{i} does not hold its bytes");
                    return 1;
                }
                consumed += 1;
            }
            Err(ClientError::Timeout) => break,
            Ok(other) => {
                eprintln!("soak: unexpected reply {other:?}");
                return 1;
            }
            Err(e) => {
                eprintln!("soak: demand failed: {e}");
                return 1;
            }
        }
    }
    println!("consumed {consumed}");
    0
}

/// One observation of the manager.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    rss_kib: u64,
    fds: usize,
    memfds: usize,
    shm_files: usize,
    offers: u64,
    objects: u64,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (open descriptors, of which memfds) of process `pid`.
fn fds(pid: u32) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let links: Vec<PathBuf> = dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect();
    let memfds = links
        .iter()
        .filter(|p| p.to_string_lossy().starts_with("/memfd:"))
        .count();
    (links.len(), memfds)
}

fn shm_files() -> usize {
    std::fs::read_dir("/dev/shm").map_or(0, |d| d.count())
}

/// Starts `cdo-pm` (next to this binary) and reads the socket it prints.
fn start_manager(token: &str) -> (Child, Endpoint) {
    let exe = std::env::current_exe().expect("own path");
    let pm = exe.with_file_name("cdo-pm");
    let mut child = Command::new(&pm)
        .env(TOKEN_ENV, token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e} (build it first)", pm.display()));
    let stdout = child.stdout.take().expect("piped");
    let mut socket = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read cdo-pm's output");
        if let Some(v) = line.strip_prefix(&format!("export {SOCKET_ENV}=")) {
            socket = Some(PathBuf::from(v));
            break;
        }
    }
    let socket = socket.expect("cdo-pm prints its socket");
    (
        child,
        Endpoint {
            socket,
            token: token.into(),
        },
    )
}

fn spawn_role(ep: &Endpoint, args: &[String]) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .args(args)
        .envs(ep.env())
        .spawn()
        .expect("spawn a soak process")
}

fn sample(pid: u32, stat: &mut Client, start: Instant) -> Sample {
    let s = match stat.stats() {
        Ok(s) => s,
        Err(e) => {
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
            eprintln!("soak: FAIL: the manager stopped answering ({e}); process alive: {alive}");
            std::process::exit(1);
        }
    };
    let (fds, memfds) = fds(pid);
    Sample {
        at: start.elapsed().as_secs_f64(),
        rss_kib: rss_kib(pid),
        fds,
        memfds,
        shm_files: shm_files(),
        offers: s.offers_total,
        objects: s.objects,
    }
}

fn orchestrate(cli: &Cli) -> i32 {
    let token = cdo::ipc::endpoint::random_hex(16).expect("random token");
    let (mut pm, ep) = start_manager(&token);
    let pid = pm.id();
    let mut stat = Client::connect(&ClientConfig::new(ep.clone(), "soak-stat")).expect("join");
    let start = Instant::now();
    let before = sample(pid, &mut stat, start);
    let seconds = cli.minutes * 60.0;
    let mut consumer = spawn_role(&ep, &["consumer".into(), cli.size.to_string()]);
    let mut producer = spawn_role(
        &ep,
        &[
            "producer".into(),
            cli.rate.to_string(),
            cli.size.to_string(),
            seconds.to_string(),
        ],
    );
    println!(
        "soak: {:.1} min at {} objects/s of {} bytes; manager pid {pid}",
        cli.minutes, cli.rate, cli.size
    );
    println!(
        "{:>7} {:>10} {:>6} {:>7} {:>6} {:>12} {:>9} {:>8}",
        "t (s)", "RSS (KiB)", "fds", "memfds", "shm", "offers", "rate/s", "objects"
    );
    let print = |s: &Sample, rate: f64| {
        println!(
            "{:>7.0} {:>10} {:>6} {:>7} {:>6} {:>12} {:>9.0} {:>8}",
            s.at, s.rss_kib, s.fds, s.memfds, s.shm_files, s.offers, rate, s.objects
        );
    };
    print(&before, 0.0);
    let mut samples = vec![before];
    let mut last = before;
    while producer.try_wait().expect("poll the producer").is_none() {
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed().as_secs_f64() - last.at < cli.every as f64 {
            continue;
        }
        let s = sample(pid, &mut stat, start);
        print(&s, (s.offers - last.offers) as f64 / (s.at - last.at));
        samples.push(s);
        last = s;
    }
    let produced_ok = producer.wait().map(|s| s.success()).unwrap_or(false);
    let consumed_ok = consumer.wait().map(|s| s.success()).unwrap_or(false);
    // Everything the run offered is gone once both have left.
    std::thread::sleep(Duration::from_millis(500));
    let after = sample(pid, &mut stat, start);
    print(&after, 0.0);
    drop(stat);
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = pm.wait();
    verdict(cli, &samples, &before, &after, produced_ok && consumed_ok)
}

fn verdict(cli: &Cli, samples: &[Sample], before: &Sample, after: &Sample, ran: bool) -> i32 {
    let total = after.offers - before.offers;
    let elapsed = cli.minutes * 60.0;
    println!(
        "soak: {total} objects offered, demanded and withdrawn in {elapsed:.0} s: {:.0}/s (target {})",
        total as f64 / elapsed,
        cli.rate
    );
    // Warm-up: the first quarter of the samples under load.
    let loaded = &samples[1.min(samples.len())..];
    let warm = &loaded[loaded.len() / 4..];
    let mut ok = ran;
    if !ran {
        println!("FAIL: the producer or the consumer failed");
    }
    if warm.len() >= 3 {
        // Flat: the median of the last third of the samples after warm-up
        // is within the tolerance of the median of the first third (medians,
        // so that one allocator hiccup is not a trend).
        let third = warm.len() / 3;
        let median = |s: &[Sample]| {
            let mut v: Vec<u64> = s.iter().map(|s| s.rss_kib).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let (early, late) = (median(&warm[..third]), median(&warm[warm.len() - third..]));
        let max = warm.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let growth = (late as f64 - early as f64) / early.max(1) as f64 * 100.0;
        let flat = growth <= cli.rss_tolerance;
        println!(
            "{}: resident memory after warm-up: median {early} KiB early, {late} KiB late ({growth:+.1}%, tolerance {}%), peak {max} KiB",
            if flat { "ok" } else { "FAIL" },
            cli.rss_tolerance
        );
        ok &= flat;
        let first = warm[0];
        let fd_max = warm.iter().map(|s| s.fds).max().unwrap_or(0);
        let fd_flat = fd_max <= first.fds + 16;
        println!(
            "{}: manager descriptors after warm-up {}, at most {fd_max}",
            if fd_flat { "ok" } else { "FAIL" },
            first.fds
        );
        ok &= fd_flat;
    } else {
        println!("FAIL: too few samples; run longer or sample more often (--every)");
        ok = false;
    }
    // /dev/shm is shared with every other process of the machine: shown,
    // not judged. The manager's own memfds are its segments.
    let no_leak = after.fds <= before.fds && after.memfds <= before.memfds && after.objects == 0;
    println!(
        "{}: after the run {} descriptors ({} memfds), {} objects; before {} ({}); /dev/shm files {} -> {}",
        if no_leak { "ok" } else { "FAIL" },
        after.fds,
        after.memfds,
        after.objects,
        before.fds,
        before.memfds,
        before.shm_files,
        after.shm_files,
    );
    ok &= no_leak;
    println!("soak: {}", if ok { "PASS" } else { "FAIL" });
    i32::from(!ok)
}
