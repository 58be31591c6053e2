//! Where the pool manager listens and how clients find it.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Environment variable naming the manager's socket.
pub const SOCKET_ENV: &str = "CDO_POOL_SOCKET";
/// Environment variable holding the workflow token.
pub const TOKEN_ENV: &str = "CDO_WORKFLOW_TOKEN";
/// File name of the socket inside the manager's private directory.
pub const SOCKET_NAME: &str = "pool.sock";

/// How a client reaches a pool manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The manager's socket.
    pub socket: PathBuf,
    /// The workflow token.
    pub token: String,
}

impl Endpoint {
    /// The endpoint named by `CDO_POOL_SOCKET` and `CDO_WORKFLOW_TOKEN`.
    pub fn from_env() -> Option<Endpoint> {
        Some(Endpoint {
            socket: std::env::var_os(SOCKET_ENV)?.into(),
            token: std::env::var(TOKEN_ENV).ok()?,
        })
    }

    /// The two environment variables that lead a child process here.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            (SOCKET_ENV, self.socket.display().to_string()),
            (TOKEN_ENV, self.token.clone()),
        ]
    }
}

/// `n` random bytes from the kernel, as hexadecimal.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0; n];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates a fresh directory only we can enter (0700) under `parent`.
///
/// The name is random and creation fails if it exists, so nobody can plant
/// it in advance.
pub fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    let dir = parent.join(format!("cdo-pm-{}-{}", std::process::id(), random_hex(6)?));
    DirBuilder::new().mode(0o700).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Listens on `path`, readable and writable by the owner only (0600).
///
/// The socket is created inside a 0700 directory, so the moment between
/// `bind` and `chmod` exposes nothing.
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
