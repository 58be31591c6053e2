//! A client's sending side. Any thread queues frames for a client (its own
//! connection thread replying, another client's thread delivering data or
//! an event) and sends what the socket takes at once, without blocking;
//! what it does not take waits for the client's sender thread, the only
//! one that blocks on the socket. So a client that stops reading stalls
//! nobody else (its socket's write timeout drops it), and a client that
//! reads gets its frames without a hop through another thread.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tracing::warn;

use crate::ipc::conn::{send_frames, Writer};
use crate::ipc::wire::Frame;

struct Queue {
    writer: Writer,
    /// No more frames will be sent (the connection ends or failed).
    closed: bool,
    /// The sender thread owns the socket's writes (the socket was full):
    /// others only queue.
    sender_busy: bool,
}

/// Frames waiting for one client's sender thread.
pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Outbox {
    /// An empty outbox for the client on `sock` (a clone of its socket;
    /// the sender thread writes to its own clone).
    pub fn new(sock: UnixStream) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(Queue {
                writer: Writer::new(sock),
                closed: false,
                sender_busy: false,
            }),
            ready: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frames` (each with its descriptor) for [`Outbox::flush`];
    /// dropped when the outbox is closed.
    pub fn queue(&self, frames: impl IntoIterator<Item = (Frame, Option<Arc<OwnedFd>>)>) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        for (frame, fd) in frames {
            if let Err(e) = q.writer.push(&frame, fd) {
                warn!(error = %e, "cannot encode a reply");
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
            }
        }
    }

    /// Sends what is queued, then lets the sender thread end.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The sender thread: writes queued frames to `sock` until the outbox
    /// is closed and empty, or the socket fails (it is then shut down, so
    /// the client's connection thread sees the end).
    pub fn run(&self, sock: &UnixStream) {
        loop {
            let (buf, fds) = {
                let mut q = self.lock();
                q.sender_busy = q.writer.queued() > 0;
                while !q.sender_busy && !q.closed {
                    q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
                if q.writer.queued() == 0 {
                    return;
                }
                q.sender_busy = true;
                q.writer.take()
            };
            if let Err(e) = send_frames(sock, &buf, &fds) {
                warn!(error = %e, "send to a client failed");
                let _ = sock.shutdown(std::net::Shutdown::Both);
                let mut q = self.lock();
                q.closed = true;
                q.writer.take();
                return;
            }
        }
    }
}
