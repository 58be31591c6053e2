//! Where the pool manager listens and how clients find it.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Environment variable naming the manager's socket.
pub const SOCKET_ENV: &str = "CDO_POOL_SOCKET";
/// Environment variable holding the workflow token.
pub const TOKEN_ENV: &str = "CDO_WORKFLOW_TOKEN";
/// Environment variable naming a file that holds the workflow token (used
/// when [`TOKEN_ENV`] is not set); the file must be ours and private (0600).
pub const TOKEN_FILE_ENV: &str = "CDO_WORKFLOW_TOKEN_FILE";
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
    /// The endpoint named by `CDO_POOL_SOCKET` and `CDO_WORKFLOW_TOKEN`
    /// (or the private file `CDO_WORKFLOW_TOKEN_FILE` names).
    pub fn from_env() -> Option<Endpoint> {
        let token = match std::env::var(TOKEN_ENV) {
            Ok(token) => token,
            Err(_) => read_token_file(Path::new(&std::env::var_os(TOKEN_FILE_ENV)?)).ok()?,
        };
        Some(Endpoint {
            socket: std::env::var_os(SOCKET_ENV)?.into(),
            token,
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

/// The token in file `path` (surrounding whitespace trimmed), which must
/// be a regular file of ours that nobody else may read or write (0600 or
/// stricter): the token then appears in no command line and no
/// environment.
///
/// # Errors
/// The file cannot be read, is not ours, or is open to others
/// (`PermissionDenied`).
pub fn read_token_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: a token file must be a file of ours with mode 0600",
                path.display()
            ),
        ));
    }
    let mut token = String::new();
    file.read_to_string(&mut token)?;
    Ok(token.trim().to_owned())
}

/// `n` random bytes from the kernel, as hexadecimal.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0; n];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Prefix of the name of a manager's private directory, followed by the
/// manager's pid, a dash and random hexadecimal.
const DIR_PREFIX: &str = "cdo-pm-";

/// Creates a fresh directory only we can enter (0700) under `parent`.
///
/// The name is random and creation fails if it exists, so nobody can plant
/// it in advance.
pub fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    let dir = parent.join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        random_hex(6)?
    ));
    DirBuilder::new().mode(0o700).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// The pid of the manager that made private directory `name`, if `name`
/// is one.
fn dir_pid(name: &str) -> Option<i32> {
    let (pid, hex) = name.strip_prefix(DIR_PREFIX)?.split_once('-')?;
    let hex_ok = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    hex_ok.then(|| pid.parse().ok()).flatten()
}

/// Removes the private directories under `parent` that managers killed
/// before they could clean up left behind (with their socket): only
/// directories (not links) owned by us, mode 0700, named as
/// [`private_dir`] names them, whose manager process is gone, holding
/// nothing but the socket. Returns how many it removed.
pub fn remove_stale_dirs(parent: &Path) -> usize {
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let uid = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(dir_pid) else {
            continue;
        };
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let ours = meta.is_dir() && meta.uid() == uid && meta.mode() & 0o777 == 0o700;
        if !ours || pid == std::process::id() as i32 {
            continue;
        }
        // Signal 0 checks that the process exists: a live manager (or a
        // process that took its pid) keeps its directory.
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if !gone {
            continue;
        }
        let dir = entry.path();
        let socket = dir.join(SOCKET_NAME);
        let is_socket = fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket());
        if is_socket {
            let _ = fs::remove_file(&socket);
        }
        if fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed the directory of a dead pool manager");
            removed += 1;
        }
    }
    removed
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_must_be_private() {
        let path = std::env::temp_dir().join(format!("cdo-token-{}", random_hex(4).unwrap()));
        fs::write(&path, "secret-1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token_file(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "secret-1");
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn stale_directories_of_dead_managers_are_removed() {
        let parent = std::env::temp_dir().join(format!("cdo-stale-{}", random_hex(4).unwrap()));
        fs::create_dir(&parent).unwrap();
        // A child that exits at once gives a pid that is surely gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = parent.join(format!("{DIR_PREFIX}{dead}-00ff"));
        DirBuilder::new().mode(0o700).create(&stale).unwrap();
        drop(UnixListener::bind(stale.join(SOCKET_NAME)).unwrap());
        let live = private_dir(&parent).unwrap();
        let foreign = parent.join(format!("{DIR_PREFIX}{dead}-0a"));
        DirBuilder::new().mode(0o700).create(&foreign).unwrap();
        fs::write(foreign.join("keep"), b"not a socket").unwrap();
        let other = parent.join(format!("{DIR_PREFIX}{dead}-zz"));
        DirBuilder::new().mode(0o700).create(&other).unwrap();
        assert_eq!(remove_stale_dirs(&parent), 1);
        assert!(!stale.exists());
        assert!(live.exists(), "ours, alive");
        assert!(foreign.join("keep").exists(), "not only a socket");
        assert!(other.exists(), "not a manager's name");
        fs::remove_file(foreign.join("keep")).unwrap();
        for d in [live, foreign, other] {
            fs::remove_dir(d).unwrap();
        }
        fs::remove_dir(parent).unwrap();
    }
}
