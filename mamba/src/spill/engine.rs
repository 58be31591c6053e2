//! The two ways a spill file moves blocks: io_uring, or plain
//! `pread`/`pwrite`. Both take block-aligned buffers, offsets and lengths
//! (what `O_DIRECT` demands) and move them whole, retrying short
//! transfers.

use io_uring::{opcode, types, IoUring};
use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// Which system interface carries a spill file's reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoEngine {
    /// Submission and completion rings (`io_uring`).
    IoUring,
    /// One `pread`/`pwrite` system call per transfer.
    Pread,
}

impl IoEngine {
    /// The name used in configuration and display.
    pub fn name(self) -> &'static str {
        match self {
            IoEngine::IoUring => "io_uring",
            IoEngine::Pread => "pread",
        }
    }
}

/// Direction of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    Read,
    Write,
}

/// A ready engine.
pub(super) enum Engine {
    /// One ring per file, one transfer in flight at a time.
    Ring(Box<Mutex<IoUring>>),
    Pread,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind().name())
    }
}

impl Engine {
    /// The engine asked for, or io_uring when the kernel lets us set up a
    /// ring and `pread` otherwise.
    pub(super) fn open(want: Option<IoEngine>) -> io::Result<Engine> {
        match want {
            Some(IoEngine::Pread) => Ok(Engine::Pread),
            Some(IoEngine::IoUring) => Ok(Engine::Ring(Box::new(Mutex::new(IoUring::new(8)?)))),
            None => match IoUring::new(8) {
                Ok(ring) => Ok(Engine::Ring(Box::new(Mutex::new(ring)))),
                Err(e) => {
                    tracing::info!(error = %e, "no io_uring: spill files use pread/pwrite");
                    Ok(Engine::Pread)
                }
            },
        }
    }

    pub(super) fn kind(&self) -> IoEngine {
        match self {
            Engine::Ring(_) => IoEngine::IoUring,
            Engine::Pread => IoEngine::Pread,
        }
    }

    /// Moves all `len` bytes between `buf` and the file at `offset`.
    ///
    /// # Safety
    /// `buf..buf+len` must be valid for the direction (readable for a
    /// write, writable for a read) and not used elsewhere meanwhile.
    pub(super) unsafe fn transfer_all(
        &self,
        fd: RawFd,
        dir: Dir,
        buf: *mut u8,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            // SAFETY: the remaining range lies inside the caller's buffer.
            let n = match unsafe {
                self.transfer(fd, dir, buf.add(done), len - done, offset + done as u64)
            } {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the spill file ended early",
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// One transfer; returns the bytes moved.
    ///
    /// # Safety
    /// As for [`Engine::transfer_all`].
    unsafe fn transfer(
        &self,
        fd: RawFd,
        dir: Dir,
        buf: *mut u8,
        len: usize,
        offset: u64,
    ) -> io::Result<usize> {
        let len = len.min(1 << 30);
        match self {
            Engine::Pread => {
                let off = offset as libc::off_t;
                // SAFETY: the caller guarantees the buffer; the kernel
                // checks the descriptor.
                let n = unsafe {
                    match dir {
                        Dir::Read => libc::pread(fd, buf.cast(), len, off),
                        Dir::Write => libc::pwrite(fd, buf.cast(), len, off),
                    }
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(n as usize)
            }
            Engine::Ring(ring) => {
                let entry = match dir {
                    Dir::Read => opcode::Read::new(types::Fd(fd), buf, len as u32)
                        .offset(offset)
                        .build(),
                    Dir::Write => opcode::Write::new(types::Fd(fd), buf, len as u32)
                        .offset(offset)
                        .build(),
                };
                let mut ring = ring.lock().unwrap_or_else(|p| p.into_inner());
                // SAFETY: the buffer stays valid until the completion is
                // reaped below (we wait for it under the lock).
                unsafe { ring.submission().push(&entry) }
                    .map_err(|_| io::Error::other("the io_uring submission queue is full"))?;
                loop {
                    match ring.submit_and_wait(1) {
                        Ok(_) => {}
                        // The entry is still queued or in flight: wait again.
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                    if let Some(cqe) = ring.completion().next() {
                        let r = cqe.result();
                        if r < 0 {
                            return Err(io::Error::from_raw_os_error(-r));
                        }
                        return Ok(r as usize);
                    }
                }
            }
        }
    }
}
