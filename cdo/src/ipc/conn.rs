//! Frames over a Unix stream socket, with descriptors as `SCM_RIGHTS`.
//!
//! Descriptors attach to the first byte of the `sendmsg` that carries their
//! frame, so they always arrive no later than the frame announcing them; the
//! reader queues them and hands them out in frame order.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::wire::{self, Frame, RequestId, WireError, HEADER_LEN, MAX_FRAME};

/// Most descriptors sent or received by one system call.
const FDS_PER_CALL: usize = 32;
/// Most received descriptors waiting for their frames.
const MAX_QUEUED_FDS: usize = 256;
/// Initial size of the read buffer.
const READ_BUF: usize = 256 * 1024;

/// Why a connection failed; the connection is unusable afterwards.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// A system call failed (a read timeout shows as `WouldBlock`).
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid frame.
    #[error("protocol: {0}")]
    Wire(#[from] WireError),
    /// A frame announced a descriptor that did not come.
    #[error("frame announced a descriptor that did not arrive")]
    MissingFd,
    /// Descriptors were lost (control buffer too small) or too many queued.
    #[error("too many descriptors from the peer")]
    TooManyFds,
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    Closed,
    /// A whole frame whose payload did not decode was skipped (with its
    /// descriptor); the connection is still in step.
    #[error("frame {id:?} refused: {error}")]
    Refused {
        /// Its request id, when it could be read.
        id: Option<RequestId>,
        /// Why it did not decode.
        error: WireError,
    },
}

impl From<Errno> for ConnError {
    fn from(e: Errno) -> Self {
        ConnError::Io(e.into())
    }
}

/// The receiving half: buffers bytes and descriptors, yields whole frames.
#[derive(Debug)]
pub struct Reader {
    sock: UnixStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
    /// Largest accepted payload.
    max_frame: usize,
    /// Most received descriptors waiting for their frames.
    max_fds: usize,
}

impl Reader {
    /// Reads frames of up to [`MAX_FRAME`] bytes from `sock`.
    pub fn new(sock: UnixStream) -> Self {
        Self::with_limits(sock, MAX_FRAME, MAX_QUEUED_FDS)
    }

    /// Reads frames of up to `max_frame` bytes (at most [`MAX_FRAME`]) from
    /// `sock`, with at most `max_fds` descriptors queued; its buffer holds
    /// two such frames at most.
    pub fn with_limits(sock: UnixStream, max_frame: usize, max_fds: usize) -> Self {
        let max_frame = max_frame.min(MAX_FRAME);
        Reader {
            sock,
            buf: vec![0; READ_BUF.min(2 * (max_frame + HEADER_LEN))],
            start: 0,
            end: 0,
            fds: VecDeque::new(),
            max_frame,
            max_fds: max_fds.min(MAX_QUEUED_FDS),
        }
    }

    /// Accepts frames of up to [`MAX_FRAME`] bytes and up to the usual
    /// number of queued descriptors from now on (after a handshake read
    /// with tighter [`Reader::with_limits`]).
    pub fn lift_limits(&mut self) {
        self.max_frame = MAX_FRAME;
        self.max_fds = MAX_QUEUED_FDS;
    }

    /// The socket (to set timeouts).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// The next complete frame already received, with its descriptor.
    ///
    /// A frame whose payload does not decode is skipped and reported as
    /// [`ConnError::Refused`]; the next call goes on after it.
    pub fn next_buffered(&mut self) -> Result<Option<(Frame, Option<OwnedFd>)>, ConnError> {
        let d = match wire::decode_limited(&self.buf[self.start..self.end], self.max_frame) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(None),
            Err(WireError::BadPayload {
                id,
                consumed,
                fds,
                error,
            }) => {
                self.start += consumed;
                for _ in 0..fds {
                    self.fds.pop_front();
                }
                return Err(ConnError::Refused { id, error: *error });
            }
            Err(e) => return Err(e.into()),
        };
        self.start += d.consumed;
        let fd = match d.fds {
            0 => None,
            _ => Some(self.fds.pop_front().ok_or(ConnError::MissingFd)?),
        };
        Ok(Some((d.frame, fd)))
    }

    /// Blocks for more bytes (up to the socket's read timeout).
    ///
    /// Errors with [`ConnError::Closed`] at a clean end of stream and with
    /// [`WireError::Truncated`] when the stream ends inside a frame.
    pub fn fill(&mut self) -> Result<(), ConnError> {
        self.receive(MsgFlags::empty())
    }

    /// Blocks for more bytes as [`Reader::fill`], after looking for them
    /// for up to `look` without sleeping (yielding the core between
    /// looks): in a busy exchange the next frame often comes within that
    /// time, and a thread that looks again costs less than one woken.
    ///
    /// Errors as [`Reader::fill`].
    pub fn fill_after_look(&mut self, look: std::time::Duration) -> Result<(), ConnError> {
        let start = std::time::Instant::now();
        while start.elapsed() < look {
            if self.try_fill()? {
                return Ok(());
            }
            std::thread::yield_now();
        }
        self.fill()
    }

    /// Takes the bytes already waiting on the socket without blocking;
    /// `Ok(false)` when there were none.
    ///
    /// Errors as [`Reader::fill`].
    pub fn try_fill(&mut self) -> Result<bool, ConnError> {
        match self.receive(MsgFlags::MSG_DONTWAIT) {
            Ok(()) => Ok(true),
            Err(ConnError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn receive(&mut self, flags: MsgFlags) -> Result<(), ConnError> {
        self.make_room();
        let mut cmsg = nix::cmsg_space!([RawFd; FDS_PER_CALL]);
        let (bytes, truncated) = loop {
            let mut iov = [IoSliceMut::new(&mut self.buf[self.end..])];
            match recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC | flags,
            ) {
                Ok(msg) => {
                    for c in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for fd in fds {
                                // SAFETY: the kernel just installed `fd` in our
                                // table for us; nothing else owns it.
                                self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                    }
                    break (msg.bytes, msg.flags.contains(MsgFlags::MSG_CTRUNC));
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if truncated || self.fds.len() > self.max_fds {
            return Err(ConnError::TooManyFds);
        }
        if bytes == 0 {
            return Err(match wire::need(&self.buf[self.start..self.end]) {
                None => ConnError::Closed,
                Some(e) => e.into(),
            });
        }
        self.end += bytes;
        Ok(())
    }

    /// Compacts the buffer and grows it to hold the largest frame.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < 16 * 1024 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < 16 * 1024 {
                let len = (self.buf.len() * 2).min(2 * (self.max_frame + HEADER_LEN));
                self.buf.resize(len, 0);
            }
        }
    }
}

/// The sending half: queues frames and their descriptors, sends them in as
/// few system calls as possible.
#[derive(Debug)]
pub struct Writer {
    sock: UnixStream,
    buf: Vec<u8>,
    /// Descriptors to send, with the offset of the frame that announces them.
    fds: Vec<(usize, Arc<OwnedFd>)>,
}

impl Writer {
    /// Writes frames to `sock`.
    pub fn new(sock: UnixStream) -> Self {
        Writer {
            sock,
            buf: Vec::with_capacity(64 * 1024),
            fds: Vec::new(),
        }
    }

    /// The socket (to set timeouts or shut it down).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Queues `frame`, with `fd` as its descriptor.
    pub fn push(&mut self, frame: &Frame, fd: Option<Arc<OwnedFd>>) -> Result<(), WireError> {
        let at = self.buf.len();
        wire::encode(frame, u8::from(fd.is_some()), &mut self.buf)?;
        if let Some(fd) = fd {
            self.fds.push((at, fd));
        }
        Ok(())
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Sends everything queued (blocking, up to the socket's write timeout).
    pub fn flush(&mut self) -> Result<(), ConnError> {
        let result = send_frames(&self.sock, &self.buf, &self.fds);
        self.buf.clear();
        self.fds.clear();
        result
    }

    /// Moves the queued frames out, for another thread to send with
    /// [`send_frames`]; the writer is empty afterwards.
    pub fn take(&mut self) -> (Vec<u8>, Vec<(usize, Arc<OwnedFd>)>) {
        (std::mem::take(&mut self.buf), std::mem::take(&mut self.fds))
    }

    /// Sends what the socket takes without blocking and keeps the rest
    /// queued; whether everything went.
    ///
    /// # Errors
    /// The socket's error (the queue is then emptied).
    pub fn try_flush(&mut self) -> Result<bool, ConnError> {
        match send_nonblocking(&self.sock, &self.buf, &self.fds) {
            Ok((bytes, fds)) => {
                self.buf.drain(..bytes);
                self.fds.drain(..fds);
                for (at, _) in &mut self.fds {
                    *at -= bytes;
                }
                Ok(self.buf.is_empty())
            }
            Err(e) => {
                self.buf.clear();
                self.fds.clear();
                Err(e)
            }
        }
    }
}

/// Sends encoded frames `buf` on `sock`, each descriptor of `fds` (with the
/// offset of its frame) as `SCM_RIGHTS` with the bytes of its frame; blocks
/// until all is sent or the socket fails.
///
/// # Errors
/// The socket's error; the peer then has part of the bytes at most.
pub fn send_frames(
    sock: &UnixStream,
    buf: &[u8],
    fds: &[(usize, Arc<OwnedFd>)],
) -> Result<(), ConnError> {
    send_some(sock, buf, fds, MsgFlags::empty()).map(|_| ())
}

/// Sends as much of `buf` (with `fds`, as [`send_frames`]) as the socket
/// takes without blocking; returns the bytes and descriptors sent.
///
/// # Errors
/// The socket's error, except that it would block.
pub fn send_nonblocking(
    sock: &UnixStream,
    buf: &[u8],
    fds: &[(usize, Arc<OwnedFd>)],
) -> Result<(usize, usize), ConnError> {
    send_some(sock, buf, fds, MsgFlags::MSG_DONTWAIT)
}

fn send_some(
    sock: &UnixStream,
    buf: &[u8],
    fds: &[(usize, Arc<OwnedFd>)],
    flags: MsgFlags,
) -> Result<(usize, usize), ConnError> {
    let mut pos = 0;
    let mut next_fd = 0;
    let flags = flags | MsgFlags::MSG_NOSIGNAL;
    while pos < buf.len() {
        let batch = &fds[next_fd..fds.len().min(next_fd + FDS_PER_CALL)];
        let end = fds
            .get(next_fd + FDS_PER_CALL)
            .map_or(buf.len(), |(at, _)| *at);
        let raw: Vec<RawFd> = batch.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        let iov = [IoSlice::new(&buf[pos..end])];
        let cmsgs: &[ControlMessage] = if raw.is_empty() {
            &[]
        } else {
            &[ControlMessage::ScmRights(&raw)]
        };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, flags, None) {
            Ok(n) => {
                pos += n;
                next_fd += raw.len();
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if flags.contains(MsgFlags::MSG_DONTWAIT) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((pos, next_fd))
}
