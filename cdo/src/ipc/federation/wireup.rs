//! Where a node's peers come from (`CDO_FEDERATION_PEERS`,
//! `--federation-peers`): an explicit list, or the launcher that started
//! one manager per node.
//!
//! - `host:port,...`: the list itself;
//! - `slurm`: every other node of the `srun` step, at this node's port;
//! - `pmix`: each manager puts its listening address in the launcher's
//!   PMIx key-value store, fences with the others, and gets theirs
//!   (`mpirun`, `prterun`, `srun --mpi=pmix`; needs `libpmix.so.2` at run
//!   time, see [`super::pmix`]);
//! - `dir:PATH`: a rendezvous through a directory every node sees (a
//!   shared file system): each manager writes its address to
//!   `PATH/JOB/rank-N` and reads the others', with rank, size and job from
//!   the launcher's variables (any of [`Launch`]'s launchers);
//! - `launcher`: `slurm` under `srun`, else `pmix` where `PMIX_RANK` is
//!   set.
//!
//! The exchanges publish the listening address, so it must be one the
//! others can dial (not `0.0.0.0`: name the interface's address, or its
//! subnet, see [`super::listen`]) and its port fixed (not 0).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::launch::{Launch, Launcher};
use super::pmix::Pmix;

/// The PMIx key under which each manager puts its listening address.
pub const PMIX_KEY: &str = "cdo.federation.address";

/// How long a PMIx fence or a rendezvous waits for every rank's address.
pub const WIREUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A source of peer addresses, parsed from its text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// `host:port,...` (possibly empty).
    List(Vec<String>),
    /// `slurm`: the step's node list.
    Slurm,
    /// `pmix`: a PMIx put, fence and get.
    Pmix,
    /// `dir:PATH`: files in a shared directory.
    Rendezvous(PathBuf),
    /// `launcher`: Slurm's node list under `srun`, else PMIx.
    Launcher,
}

impl PeerSource {
    /// Parses `spec`.
    ///
    /// # Errors
    /// An entry of a list without a port, or `dir:` without a path.
    pub fn parse(spec: &str) -> Result<PeerSource, String> {
        let spec = spec.trim();
        match spec {
            "slurm" => return Ok(PeerSource::Slurm),
            "pmix" => return Ok(PeerSource::Pmix),
            "launcher" => return Ok(PeerSource::Launcher),
            _ => {}
        }
        if let Some(dir) = spec.strip_prefix("dir:") {
            if dir.trim().is_empty() {
                return Err("dir: needs a directory".into());
            }
            return Ok(PeerSource::Rendezvous(PathBuf::from(dir.trim())));
        }
        spec.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(p.to_string())
                }
                _ => Err(format!("{p:?}: expected host:port")),
            })
            .collect::<Result<_, _>>()
            .map(PeerSource::List)
    }

    /// The peers' addresses; `me` is this node's listening address, which
    /// the exchanges publish.
    ///
    /// # Errors
    /// Not started by the launcher the source needs, an address the others
    /// could not dial, a failed exchange, or a rendezvous that timed out.
    pub fn resolve(&self, me: SocketAddr) -> Result<Vec<String>, String> {
        match self {
            PeerSource::List(peers) => Ok(peers.clone()),
            PeerSource::Slurm => launch()?
                .filter(|l| l.launcher == Launcher::Slurm)
                .ok_or("not started by srun (no SLURM_PROCID)")?
                .peers(me.port()),
            PeerSource::Pmix => pmix_exchange(publishable(me)?),
            PeerSource::Rendezvous(dir) => {
                let l = launch()?.ok_or(
                    "no launcher variables (SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK)",
                )?;
                rendezvous(dir, &l, publishable(me)?, WIREUP_TIMEOUT)
            }
            PeerSource::Launcher => match launch()? {
                Some(l) if l.launcher == Launcher::Slurm => PeerSource::Slurm.resolve(me),
                _ if std::env::var_os("PMIX_RANK").is_some() => PeerSource::Pmix.resolve(me),
                _ => Err("started neither by srun nor by a PMIx launcher; list the peers or use dir:PATH".into()),
            },
        }
    }
}

fn launch() -> Result<Option<Launch>, String> {
    Launch::from_env()
}

/// `me`, if the other nodes can dial it.
fn publishable(me: SocketAddr) -> Result<SocketAddr, String> {
    if me.ip().is_unspecified() {
        Err(format!(
            "{me} cannot be published: listen on this node's address or subnet (such as 10.0.0.0/24:{})",
            me.port()
        ))
    } else if me.port() == 0 {
        Err(format!("{me} cannot be published: give a port"))
    } else {
        Ok(me)
    }
}

/// Puts `me` under [`PMIX_KEY`], fences, and gets every other rank's.
fn pmix_exchange(me: SocketAddr) -> Result<Vec<String>, String> {
    let pmix = Pmix::init()
        .map_err(|e| format!("{e} (not started by a PMIx launcher such as mpirun?)"))?;
    let size = pmix.job_size().map_err(|e| e.to_string())?;
    pmix.put(PMIX_KEY, &me.to_string())
        .and_then(|()| pmix.fence(WIREUP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    (0..size)
        .filter(|&r| r != pmix.rank())
        .map(|r| pmix.get(r, PMIX_KEY).map_err(|e| format!("rank {r}: {e}")))
        .collect()
}

/// Writes `me` to `dir/JOB/rank-R` and waits, up to `timeout`, until every
/// rank of the job has written its own; returns the others'.
fn rendezvous(
    dir: &Path,
    launch: &Launch,
    me: SocketAddr,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let size = launch.size.ok_or(
        "the launcher gives no job size (OMPI_COMM_WORLD_SIZE, SLURM_NTASKS, PMIX_SIZE, PMI_SIZE)",
    )?;
    let job: String = launch
        .job
        .as_deref()
        .unwrap_or("job")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = dir.join(job);
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
    // Written aside and renamed: a reader sees the whole address or none.
    let mine = dir.join(format!("rank-{}", launch.rank));
    let aside = dir.join(format!(".rank-{}", launch.rank));
    std::fs::write(&aside, me.to_string()).map_err(|e| io("cannot write", &aside, e))?;
    std::fs::rename(&aside, &mine).map_err(|e| io("cannot rename", &aside, e))?;
    let deadline = Instant::now() + timeout;
    let mut peers = Vec::new();
    for r in (0..size).filter(|&r| r != launch.rank) {
        let path = dir.join(format!("rank-{r}"));
        loop {
            match std::fs::read_to_string(&path) {
                Ok(addr) => {
                    peers.push(addr.trim().to_string());
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "rank {r} wrote no address to {} within {timeout:?}",
                            dir.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io("cannot read", &path, e)),
            }
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(PeerSource::parse(" slurm ").unwrap(), PeerSource::Slurm);
        assert_eq!(PeerSource::parse("pmix").unwrap(), PeerSource::Pmix);
        assert_eq!(PeerSource::parse("launcher").unwrap(), PeerSource::Launcher);
        assert_eq!(
            PeerSource::parse("dir:/shared/x").unwrap(),
            PeerSource::Rendezvous("/shared/x".into())
        );
        assert_eq!(
            PeerSource::parse("a:1, b:2,").unwrap(),
            PeerSource::List(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(PeerSource::parse("").unwrap(), PeerSource::List(vec![]));
        for bad in ["dir:", "a", "a:x", ":5"] {
            assert!(PeerSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unreachable_addresses_are_not_published() {
        assert!(publishable("0.0.0.0:7400".parse().unwrap()).is_err());
        assert!(publishable("10.0.0.1:0".parse().unwrap()).is_err());
        assert!(publishable("10.0.0.1:7400".parse().unwrap()).is_ok());
    }

    fn rank(r: u32, size: Option<u32>) -> Launch {
        Launch {
            launcher: Launcher::OpenMpi,
            rank: r,
            size,
            local_rank: None,
            node: None,
            nodes: Vec::new(),
            job: Some("42/7".into()),
        }
    }

    #[test]
    fn a_rendezvous_gives_each_rank_the_others_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..3u32)
            .map(|r| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let me: SocketAddr = format!("10.0.0.{}:7400", r + 1).parse().unwrap();
                    rendezvous(&d, &rank(r, Some(3)), me, WIREUP_TIMEOUT).unwrap()
                })
            })
            .collect();
        let got: Vec<Vec<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(got[0], ["10.0.0.2:7400", "10.0.0.3:7400"]);
        assert_eq!(got[1], ["10.0.0.1:7400", "10.0.0.3:7400"]);
        assert_eq!(got[2], ["10.0.0.1:7400", "10.0.0.2:7400"]);
        assert!(dir.path().join("42_7").join("rank-0").exists());
    }

    #[test]
    fn a_rendezvous_missing_a_rank_times_out_and_needs_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let me: SocketAddr = "10.0.0.1:7400".parse().unwrap();
        let err = rendezvous(dir.path(), &rank(0, Some(2)), me, Duration::ZERO).unwrap_err();
        assert!(err.contains("rank 1 wrote no address"), "{err}");
        let err = rendezvous(dir.path(), &rank(0, None), me, WIREUP_TIMEOUT).unwrap_err();
        assert!(err.contains("no job size"), "{err}");
    }
}
