//! A client's sending side. Any thread queues frames for a client (its own
//! connection thread replying, another client's thread delivering data or
//! an event) and sends what the socket takes at once, without blocking;
//! what it does not take waits for the client's sender thread, the only
//! one that blocks on the socket. So a client that stops reading stalls
//! nobody else, and a client that reads gets its frames without a hop
//! through another thread.
//!
//! The queue is bounded by back-pressure, not by dropping the client: above
//! the high-water mark the client's connection thread stops reading its
//! requests ([`Outbox::wait_for_room`]) until the sender has delivered,
//! so its own requests cannot grow the queue; above four times the mark,
//! events for it (raised by others) are dropped and counted. Everything
//! else queued for it by others is bounded by its quotas (waiting demands,
//! group windows, segments). A slow client is never disconnected for being
//! slow: a send blocks until the client reads, its connection fails, or the
//! manager stops.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::warn;

use crate::ipc::conn::{send_frames, Writer};
use crate::ipc::wire::{ErrorCode, Frame, Msg, WireError};

/// Counters shared by every outbox of a manager.
#[derive(Debug, Default)]
pub struct Meters {
    /// Events dropped because their subscriber's queue was full.
    pub dropped_events: AtomicU64,
}

struct Queue {
    writer: Writer,
    /// Bytes the sender thread took and has not finished sending.
    sending: usize,
    /// No more frames will be sent (the connection ends or failed).
    closed: bool,
    /// The sender thread owns the socket's writes (the socket was full):
    /// others only queue.
    sender_busy: bool,
}

impl Queue {
    fn bytes(&self) -> usize {
        self.writer.queued() + self.sending
    }
}

/// Frames waiting for one client's sender thread.
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the sender thread.
    ready: Condvar,
    /// Wakes the connection thread waiting for the queue to drain.
    drained: Condvar,
    high_water: usize,
    meters: Arc<Meters>,
}

impl Outbox {
    /// An empty outbox for the client on `sock` (a clone of its socket;
    /// the sender thread writes to its own clone); its connection thread
    /// pauses above `high_water` queued bytes.
    pub fn new(sock: UnixStream, high_water: usize, meters: Arc<Meters>) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(Queue {
                writer: Writer::new(sock),
                sending: 0,
                closed: false,
                sender_busy: false,
            }),
            ready: Condvar::new(),
            drained: Condvar::new(),
            high_water,
            meters,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes queued and not yet taken by the client's socket.
    pub fn queued(&self) -> usize {
        self.lock().bytes()
    }

    /// Queues `frames` (each with its descriptor) for [`Outbox::flush`];
    /// dropped when the outbox is closed, events dropped above four times
    /// the high-water mark. A reply that cannot be encoded (larger than a
    /// frame) is replaced by an error reply to its request.
    pub fn queue(&self, frames: impl IntoIterator<Item = (Frame, Option<Arc<OwnedFd>>)>) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        for (frame, fd) in frames {
            if matches!(frame.msg, Msg::Event(_)) && q.bytes() > 4 * self.high_water {
                self.meters.dropped_events.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let id = frame.id;
            if let Err(e) = q.writer.push(&frame, fd) {
                warn!(error = %e, id, "cannot encode a frame for a client");
                if id != 0 {
                    let error = Frame {
                        id,
                        msg: unsendable(&e),
                    };
                    let _ = q.writer.push(&error, None);
                }
            }
        }
    }

    /// Sends what the socket takes without blocking; the rest goes to the
    /// sender thread.
    pub fn flush(&self) {
        let mut q = self.lock();
        if q.closed || q.sender_busy || q.writer.queued() == 0 {
            return;
        }
        match q.writer.try_flush() {
            Ok(true) => {}
            Ok(false) => {
                q.sender_busy = true;
                drop(q);
                self.ready.notify_one();
            }
            Err(e) => {
                // The client's connection thread notices the end.
                warn!(error = %e, "send to a client failed");
                let _ = q.writer.socket().shutdown(std::net::Shutdown::Both);
                q.closed = true;
                drop(q);
                self.drained.notify_all();
            }
        }
    }

    /// Blocks while more than the high-water mark is queued, until the
    /// client reads, the outbox closes, or `timeout` passes; whether there
    /// is room (or the outbox is closed).
    pub fn wait_for_room(&self, timeout: Duration) -> bool {
        let q = self.lock();
        let (q, _) = self
            .drained
            .wait_timeout_while(q, timeout, |q| !q.closed && q.bytes() > self.high_water)
            .unwrap_or_else(PoisonError::into_inner);
        q.closed || q.bytes() <= self.high_water
    }

    /// Sends what is queued, then lets the sender thread end.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.drained.notify_all();
    }

    /// The sender thread: writes queued frames to `sock` until the outbox
    /// is closed and empty, or the socket fails (it is then shut down, so
    /// the client's connection thread sees the end). A send blocks as long
    /// as the client does not read: slowness is not failure.
    pub fn run(&self, sock: &UnixStream) {
        loop {
            let (buf, fds) = {
                let mut q = self.lock();
                q.sending = 0;
                q.sender_busy = q.writer.queued() > 0;
                self.drained.notify_all();
                while !q.sender_busy && !q.closed {
                    q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
                if q.writer.queued() == 0 {
                    return;
                }
                q.sender_busy = true;
                let (buf, fds) = q.writer.take();
                q.sending = buf.len();
                (buf, fds)
            };
            if let Err(e) = send_frames(sock, &buf, &fds) {
                warn!(error = %e, "send to a client failed");
                let _ = sock.shutdown(std::net::Shutdown::Both);
                let mut q = self.lock();
                q.closed = true;
                q.sending = 0;
                q.writer.take();
                drop(q);
                self.drained.notify_all();
                return;
            }
        }
    }
}

/// The error reply standing for a reply that could not be encoded.
fn unsendable(e: &WireError) -> Msg {
    let code = match e {
        WireError::Oversized { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::Protocol,
    };
    Msg::Error {
        code,
        text: format!("the reply could not be sent: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::conn::Reader;
    use crate::ipc::wire::MAX_FRAME;

    #[test]
    fn an_unencodable_reply_becomes_an_error_reply() {
        let (a, b) = UnixStream::pair().unwrap();
        let outbox = Outbox::new(a, 1 << 20, Arc::default());
        let huge = Frame {
            id: 9,
            msg: Msg::Waiting {
                names: vec!["n".repeat(MAX_FRAME)],
            },
        };
        outbox.queue([(huge, None)]);
        outbox.flush();
        let mut reader = Reader::new(b);
        reader.fill().unwrap();
        let (frame, _) = reader.next_buffered().unwrap().unwrap();
        assert_eq!(frame.id, 9);
        assert!(matches!(
            frame.msg,
            Msg::Error {
                code: ErrorCode::TooLarge,
                ..
            }
        ));
    }

    #[test]
    fn events_are_dropped_only_far_above_the_high_water_mark() {
        let (a, _b) = UnixStream::pair().unwrap();
        let meters = Arc::new(Meters::default());
        let outbox = Outbox::new(a, 4096, meters.clone());
        let event = || Frame {
            id: 0,
            msg: Msg::Event(crate::ipc::wire::EventRef {
                subscription: 1,
                event: 1,
                kind: crate::EventKind::Offer,
                name: "x".repeat(1000),
                attrs: Default::default(),
                client: 1,
                needs_ack: false,
                node: None,
            }),
        };
        // Nobody reads and nobody flushes: everything stays queued.
        outbox.queue((0..100).map(|_| (event(), None)));
        let mut one = Vec::new();
        crate::ipc::wire::encode(&event(), 0, &mut one).unwrap();
        let queued = outbox.queued();
        let dropped = meters.dropped_events.load(Ordering::Relaxed) as usize;
        assert!(dropped > 0);
        assert_eq!(queued, (100 - dropped) * one.len());
        assert!(
            queued > 4 * 4096 && queued <= 4 * 4096 + one.len(),
            "{queued}"
        );
    }
}
