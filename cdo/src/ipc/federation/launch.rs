//! What the launcher tells a process about its job: Slurm (`srun`) and
//! the MPI launchers (Open MPI, PMI, PMIx) set variables that give the
//! rank and size, and Slurm the list of the step's nodes, from which a
//! federation takes its peers (`CDO_FEDERATION_PEERS=slurm`: every other
//! node of the step, at this node's listening port). The MPI launchers
//! give no node list; their ranks exchange addresses instead (PMIx or a
//! rendezvous directory, see [`super::wireup`]).

/// Which launcher started the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Slurm's `srun` (`SLURM_PROCID`, `SLURM_NODEID`, `SLURM_STEP_NODELIST`).
    Slurm,
    /// Open MPI's `mpirun` (`OMPI_COMM_WORLD_RANK`).
    OpenMpi,
    /// A PMI-1/2 launcher such as MPICH's Hydra (`PMI_RANK`).
    Pmi,
    /// A PMIx launcher (`PMIX_RANK`).
    Pmix,
}

/// The job as the launcher describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Who started us.
    pub launcher: Launcher,
    /// This process's rank in the job (step).
    pub rank: u32,
    /// Ranks in the job, when known.
    pub size: Option<u32>,
    /// This process's rank among those of its node, when known: the one
    /// with 0 runs the node's pool manager.
    pub local_rank: Option<u32>,
    /// Index of this node in [`Launch::nodes`] (Slurm).
    pub node: Option<usize>,
    /// Host names of the step's nodes, in order (Slurm; empty otherwise).
    pub nodes: Vec<String>,
    /// The job's identifier, when known.
    pub job: Option<String>,
}

impl Launch {
    /// The launch described by this process's environment, if a known
    /// launcher started it.
    ///
    /// # Errors
    /// A launcher variable with a malformed value.
    pub fn from_env() -> Result<Option<Launch>, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The launch described by the variables `get` returns (Slurm first,
    /// then Open MPI, PMIx and PMI).
    ///
    /// # Errors
    /// A launcher variable with a malformed value.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, String> {
        let num = |k: &str| -> Result<Option<u32>, String> {
            get(k)
                .map(|v| v.trim().parse().map_err(|e| format!("{k}={v:?}: {e}")))
                .transpose()
        };
        if let Some(rank) = num("SLURM_PROCID")? {
            let list = get("SLURM_STEP_NODELIST").or_else(|| get("SLURM_JOB_NODELIST"));
            let nodes = match list {
                Some(l) => expand_hostlist(&l)?,
                None => Vec::new(),
            };
            let node = num("SLURM_NODEID")?.map(|n| n as usize);
            if let Some(n) = node.filter(|_| !nodes.is_empty()) {
                if n >= nodes.len() {
                    return Err(format!(
                        "SLURM_NODEID={n} but the node list names {} nodes",
                        nodes.len()
                    ));
                }
            }
            return Ok(Some(Launch {
                launcher: Launcher::Slurm,
                rank,
                size: num("SLURM_STEP_NUM_TASKS")?.or(num("SLURM_NTASKS")?),
                local_rank: num("SLURM_LOCALID")?,
                node,
                nodes,
                job: get("SLURM_JOB_ID"),
            }));
        }
        let others = [
            (
                Launcher::OpenMpi,
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "OMPI_MCA_ess_base_jobid",
            ),
            (
                Launcher::Pmix,
                "PMIX_RANK",
                "PMIX_SIZE",
                "PMIX_LOCAL_RANK",
                "PMIX_NAMESPACE",
            ),
            (
                Launcher::Pmi,
                "PMI_RANK",
                "PMI_SIZE",
                "MPI_LOCALRANKID",
                "PMI_JOBID",
            ),
        ];
        for (launcher, rank, size, local, job) in others {
            if let Some(r) = num(rank)? {
                return Ok(Some(Launch {
                    launcher,
                    rank: r,
                    size: num(size)?,
                    local_rank: num(local)?,
                    node: None,
                    nodes: Vec::new(),
                    job: get(job),
                }));
            }
        }
        Ok(None)
    }

    /// `host:port` of every node of the step but this one.
    ///
    /// # Errors
    /// The launcher gave no node list or no node index (only Slurm does).
    pub fn peers(&self, port: u16) -> Result<Vec<String>, String> {
        let Some(me) = self.node.filter(|_| !self.nodes.is_empty()) else {
            return Err(format!(
                "{:?} gives no node list and index (SLURM_STEP_NODELIST, SLURM_NODEID); list the peers",
                self.launcher
            ));
        };
        Ok(self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != me)
            .map(|(_, h)| format!("{h}:{port}"))
            .collect())
    }
}

/// Expands a Slurm host list (`node[01-03,07],gpu5,r[1-2]n[1-2]`) into
/// host names, in order; zero-padding follows each range's lower bound.
///
/// # Errors
/// Unbalanced brackets or a malformed range.
pub fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in split_top(list)? {
        out.extend(expand_item(item)?);
    }
    Ok(out)
}

/// Splits at the commas outside brackets.
fn split_top(list: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut items) = (0i32, 0, Vec::new());
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("host list {list:?}: unbalanced or nested brackets"));
        }
    }
    if depth != 0 {
        return Err(format!("host list {list:?}: unclosed bracket"));
    }
    items.push(&list[start..]);
    Ok(items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect())
}

/// One item: text and bracket groups, expanded left to right.
fn expand_item(item: &str) -> Result<Vec<String>, String> {
    let Some(open) = item.find('[') else {
        return Ok(vec![item.to_string()]);
    };
    let close = open + item[open..].find(']').ok_or("unclosed bracket")?;
    let (prefix, ranges, rest) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    let tails = expand_item(rest)?;
    let mut out = Vec::new();
    for range in ranges.split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let bad = || format!("host list range {range:?} in {item:?}");
        let (a, b): (u64, u64) = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
        if a > b || b - a > 100_000 {
            return Err(bad());
        }
        let width = lo.trim().len();
        for n in a..=b {
            for tail in &tails {
                out.push(format!("{prefix}{n:0width$}{tail}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn host_lists_expand_like_slurm() {
        assert_eq!(
            expand_hostlist("node[01-03,07],gpu5").unwrap(),
            ["node01", "node02", "node03", "node07", "gpu5"]
        );
        assert_eq!(
            expand_hostlist("r[1-2]n[8-9]").unwrap(),
            ["r1n8", "r1n9", "r2n8", "r2n9"]
        );
        assert_eq!(expand_hostlist("a-b.x").unwrap(), ["a-b.x"]);
        for bad in ["n[1-", "n[3-1]", "n[x]", "n]1[", "n[[1]]"] {
            assert!(expand_hostlist(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_gives_rank_node_and_peers() {
        let l = Launch::from_vars(vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NODEID", "1"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_STEP_NODELIST", "cn[1-3]"),
            ("SLURM_NTASKS", "12"),
            ("SLURM_JOB_ID", "4242"),
            ("OMPI_COMM_WORLD_RANK", "9"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Slurm);
        assert_eq!(
            (l.rank, l.size, l.local_rank, l.node),
            (5, Some(12), Some(0), Some(1))
        );
        assert_eq!(l.job.as_deref(), Some("4242"));
        assert_eq!(l.peers(7400).unwrap(), ["cn1:7400", "cn3:7400"]);
    }

    #[test]
    fn mpi_launchers_give_ranks_but_no_node_list() {
        let l = Launch::from_vars(vars(&[
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "8"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (l.launcher, l.rank, l.size, l.local_rank),
            (Launcher::OpenMpi, 3, Some(8), Some(1))
        );
        assert!(l.peers(1).is_err());
        let p = Launch::from_vars(vars(&[("PMI_RANK", "2")]))
            .unwrap()
            .unwrap();
        assert_eq!((p.launcher, p.rank), (Launcher::Pmi, 2));
        let x = Launch::from_vars(vars(&[("PMIX_RANK", "0")]))
            .unwrap()
            .unwrap();
        assert_eq!(x.launcher, Launcher::Pmix);
        assert_eq!(Launch::from_vars(vars(&[])).unwrap(), None);
    }

    #[test]
    fn malformed_launcher_variables_are_errors() {
        assert!(Launch::from_vars(vars(&[("SLURM_PROCID", "x")])).is_err());
        let far = vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NODEID", "3"),
            ("SLURM_STEP_NODELIST", "cn[1-3]"),
        ]);
        assert!(Launch::from_vars(far).is_err());
    }
}
