//! Liveness: a client's heartbeat and the manager's lease on it.
//!
//! At JOIN the manager creates a one-page memfd (sealed against resizing),
//! maps it and sends its descriptor with WELCOME, with the lease length. The
//! client maps the page too and runs one small thread, its [`Heartbeat`],
//! that increments the page's counter every quarter lease, whatever the
//! application does: a client that computes for an hour without calling
//! the pool keeps its lease. The manager's connection thread looks at the
//! counter whenever it has waited a quarter lease for the client's frames
//! ([`Lease::expired`]). A counter that has not moved for a whole lease,
//! while no frame came either, means that the process is stopped (SIGSTOP,
//! a debugger) or hung hard enough to stop its heartbeat thread: the
//! manager then drops the client exactly as if its connection had ended.
//!
//! Why shared memory and not ping frames: the application's thread owns the
//! client's socket, so a ping would need a second reader of it or a lock
//! shared with the application; and a manager that stops reading a client
//! that is slow to take its replies (back-pressure) would no longer see its
//! pongs. A counter in shared memory needs neither and is read whatever the
//! socket's state, so a slow client is never taken for a dead one.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::page::SharedPage;

/// The shared page of one client's lease: a counter its heartbeat bumps.
#[derive(Debug)]
pub struct LeasePage(SharedPage);

impl LeasePage {
    /// A new page, and the descriptor to send to the client.
    ///
    /// # Errors
    /// As [`SharedPage::create`].
    pub fn create() -> io::Result<(LeasePage, OwnedFd)> {
        let (page, fd) = SharedPage::create(c"cdo-lease", 0)?;
        Ok((LeasePage(page), fd))
    }

    /// Maps the page the manager sent, once it is known not to shrink.
    ///
    /// # Errors
    /// As [`SharedPage::open`].
    pub fn open(fd: OwnedFd) -> io::Result<LeasePage> {
        SharedPage::open(fd, true).map(LeasePage)
    }

    /// One heartbeat.
    pub fn beat(&self) {
        self.0.word(0).fetch_add(1, Ordering::Relaxed);
    }

    /// Heartbeats so far.
    pub fn beats(&self) -> u64 {
        self.0.word(0).load(Ordering::Relaxed)
    }
}

/// The manager's lease on one client.
#[derive(Debug)]
pub struct Lease {
    page: LeasePage,
    length: Duration,
    seen: u64,
    renewed: Instant,
}

impl Lease {
    /// A lease of `length` over a new page; returns the page's descriptor
    /// for the client.
    ///
    /// # Errors
    /// As [`LeasePage::create`].
    pub fn new(length: Duration) -> io::Result<(Lease, OwnedFd)> {
        let (page, fd) = LeasePage::create()?;
        let lease = Lease {
            seen: page.beats(),
            page,
            length,
            renewed: Instant::now(),
        };
        Ok((lease, fd))
    }

    /// How often the lease is checked and the heartbeat beats: a quarter
    /// lease (at least a millisecond).
    pub fn tick(length: Duration) -> Duration {
        (length / 4).max(Duration::from_millis(1))
    }

    /// The client showed it is alive (it sent something) at `now`.
    pub fn renew(&mut self, now: Instant) {
        self.renewed = now;
    }

    /// Whether the lease ran out at `now`: no heartbeat and no renewal for
    /// its whole length. A heartbeat seen renews it.
    pub fn expired(&mut self, now: Instant) -> bool {
        let beats = self.page.beats();
        if beats != self.seen {
            self.seen = beats;
            self.renewed = now;
        }
        now.saturating_duration_since(self.renewed) >= self.length
    }
}

/// A client's heartbeat thread; stops when dropped.
#[derive(Debug)]
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Beats on `page` now and every `interval` until dropped.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(page: LeasePage, interval: Duration) -> io::Result<Heartbeat> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cdo-heartbeat".into())
            .spawn(move || {
                page.beat();
                // Ends when the sender is dropped (Disconnected).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    page.beat();
                }
            })?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_runs_out_only_without_heartbeats() {
        let (mut lease, fd) = Lease::new(Duration::from_secs(10)).unwrap();
        let client = LeasePage::open(fd).unwrap();
        let t0 = Instant::now();
        assert!(!lease.expired(t0 + Duration::from_secs(9)));
        assert!(lease.expired(t0 + Duration::from_secs(11)));
        // A beat seen at 12 s renews it until 22 s.
        client.beat();
        assert!(!lease.expired(t0 + Duration::from_secs(12)));
        assert!(!lease.expired(t0 + Duration::from_secs(21)));
        assert!(lease.expired(t0 + Duration::from_secs(23)));
        // So does traffic.
        lease.renew(t0 + Duration::from_secs(30));
        assert!(!lease.expired(t0 + Duration::from_secs(39)));
    }

    #[test]
    fn the_heartbeat_thread_beats_until_dropped() {
        let (page, fd) = LeasePage::create().unwrap();
        let heartbeat =
            Heartbeat::start(LeasePage::open(fd).unwrap(), Duration::from_millis(1)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while page.beats() < 3 {
            assert!(Instant::now() < deadline, "no heartbeat");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(heartbeat);
        let beats = page.beats();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(page.beats(), beats, "the thread stopped");
    }
}
