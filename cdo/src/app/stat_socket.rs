//! `cdo-stat` for a pool in the application's own process.
//!
//! A pool manager answers `cdo-stat` itself. An application whose pool
//! lives in its own process serves its counters on a Unix socket of its
//! own: the one [`STAT_SOCKET_ENV`] names when [`Pool::from_env`] makes the
//! pool, or one given to [`Pool::serve_stats`]. Each connection gets one
//! line of JSON and is closed; nothing is read from it. The line carries
//! the keys `cdo-stat` prints for a manager that mean the same here
//! (`objects`, `offers_total`, `views_total`, `view_bytes_total`,
//! `uptime_ms`), `"deployment": "in-process"`, and the in-process pool's
//! own counters under `counters`.
//!
//! The socket is readable and writable by its owner only (0600). A socket
//! file left at the path by a process that died is replaced; a path where
//! another process answers is refused.

use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::warn;

use super::{Inner, Pool, PoolStats};
use crate::error::{Error, Result};

/// Environment variable naming the socket on which an in-process pool made
/// by [`Pool::from_env`] serves its counters to `cdo-stat` (which reads
/// the same variable).
pub const STAT_SOCKET_ENV: &str = "CDO_STAT_SOCKET";

/// How long an answer may wait for a reader that does not read.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause after a failed accept (out of descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves an in-process pool's counters on a Unix socket until dropped;
/// dropping it stops its thread and removes the socket.
#[derive(Debug)]
pub struct StatServer {
    path: PathBuf,
    /// The listening socket, shut down to wake the thread's accept (even
    /// when the socket's file was removed meanwhile).
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatServer {
    fn start(pool: Arc<crate::Pool>, path: &Path) -> io::Result<StatServer> {
        let listener = bind(path)?;
        let serving = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("cdo-stat-serve".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || serve(&serving, &pool, &stop)
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = fs::remove_file(path);
                return Err(e);
            }
        };
        Ok(StatServer {
            path: path.to_owned(),
            listener,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept (Linux fails it once the listening socket is
        // shut down); the thread sees the flag and ends.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// Listens on `path` (0600), replacing a socket nobody answers on.
fn bind(path: &Path) -> io::Result<UnixListener> {
    let listener = match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = fs::symlink_metadata(path)?.file_type().is_socket();
            if !is_socket || UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{}: {}",
                        path.display(),
                        match is_socket {
                            true => "another process serves statistics there",
                            false => "a file that is not a socket is there",
                        }
                    ),
                ));
            }
            // Left by a process that died.
            fs::remove_file(path)?;
            UnixListener::bind(path)?
        }
        other => other?,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers each connection with one line until `stop`.
fn serve(listener: &UnixListener, pool: &crate::Pool, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "statistics socket: accept failed");
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let line = match answer(pool) {
            Ok(json) => json.to_string(),
            Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
        };
        let _ = conn.set_write_timeout(Some(ANSWER_TIMEOUT));
        let _ = writeln!(conn, "{line}");
    }
}

/// The line a connection gets (see the module docs).
fn answer(pool: &crate::Pool) -> Result<serde_json::Value> {
    let stats = PoolStats::of_local(pool)?;
    Ok(serde_json::json!({
        "deployment": "in-process",
        "uptime_ms": pool.uptime().as_millis() as u64,
        "objects": stats.objects,
        "offers_total": stats.offered,
        "views_total": stats.views,
        "view_bytes_total": stats.view_bytes,
        "counters": pool.stats(),
    }))
}

impl Pool {
    /// Serves this in-process pool's counters to `cdo-stat` on a Unix
    /// socket at `path` until the returned server is dropped: each
    /// connection gets one line of JSON (`deployment`, `uptime_ms`,
    /// `objects`, `offers_total`, `views_total`, `view_bytes_total`, and
    /// the in-process `counters`) and is closed; the socket is the
    /// owner's alone (0600). `cdo-stat` finds it through
    /// [`STAT_SOCKET_ENV`]; [`Pool::from_env`] serves by itself when that
    /// variable is set.
    ///
    /// ```
    /// use cdo::app::Pool;
    /// use std::io::Read;
    ///
    /// let pool = Pool::in_process(
    ///     std::sync::Arc::new(mamba::Mamba::from_env()?),
    ///     cdo::PoolConfig::default(),
    /// )?;
    /// let path = std::env::temp_dir().join(format!("cdo-stat-doc-{}", std::process::id()));
    /// let server = pool.serve_stats(&path)?;
    /// let mut line = String::new();
    /// std::os::unix::net::UnixStream::connect(&path)?.read_to_string(&mut line)?;
    /// let stats: serde_json::Value = serde_json::from_str(&line)?;
    /// assert_eq!(stats["deployment"], "in-process");
    /// drop(server);
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] through a pool manager (it answers `cdo-stat`
    /// itself); [`Error::StatServer`] when the socket cannot be made
    /// (another process serves at `path`, the directory is missing).
    pub fn serve_stats(&self, path: &Path) -> Result<StatServer> {
        match &self.inner {
            Inner::Local(p) => StatServer::start(Arc::clone(p), path).map_err(Error::StatServer),
            Inner::Remote(_) => Err(Error::Config(
                "a pool manager answers cdo-stat itself; CDO_POOL_SOCKET names it".into(),
            )),
        }
    }
}
