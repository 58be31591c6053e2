//! The end-of-run report: what ran, what it shows physically, how fast,
//! what the analyses cost, where the memory landed and where the files went.

use std::fmt;
use std::path::PathBuf;

use mamba::Tier;

use crate::cli::TransportKind;
use crate::driver::DriveReport;
use crate::memory::Memory;
use crate::outlet::TransitReport;
use crate::physics::Physics;

/// One pool that served the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    /// Space name (`hbm0`, `dram1`, ...).
    pub name: String,
    /// Its tier.
    pub tier: Tier,
    /// Largest number of bytes the pool held from its provider.
    pub high_water: usize,
    /// Allocations it served.
    pub allocations: u64,
}

/// Where the run's buffers came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// The placement policy ("heap" without mamba).
    pub policy: String,
    /// Space and tier of the state planes (`None` on the heap).
    pub state: Option<(String, Tier)>,
    /// Space and tier of the record buffers (`None` on the heap or without
    /// analyses).
    pub records: Option<(String, Tier)>,
    /// Pools that served at least one allocation.
    pub pools: Vec<PoolUse>,
}

impl MemoryReport {
    /// The policy and the pools' statistics of `memory`.
    pub fn new(memory: &Memory) -> MemoryReport {
        let pools = memory.mamba().map_or_else(Vec::new, |m| {
            m.stats()
                .into_iter()
                .filter(|(_, s)| s.allocations > 0)
                .map(|(info, s)| PoolUse {
                    name: info.name.clone(),
                    tier: info.tier,
                    high_water: s.high_water,
                    allocations: s.allocations,
                })
                .collect()
        });
        MemoryReport {
            policy: memory.describe(),
            pools,
            ..MemoryReport::default()
        }
    }
}

/// Everything a run of the application did.
#[derive(Debug, Clone, PartialEq)]
pub struct AppReport {
    /// Steps run by this invocation.
    pub steps: u64,
    /// Step count at the end (restarts included).
    pub total_steps: u64,
    /// Simulated time at the end.
    pub time: f64,
    /// Interior cells.
    pub cells: usize,
    /// How records reached the analyses (`None`: nothing in transit).
    pub transport: Option<TransportKind>,
    /// The checkpoint the run resumed from.
    pub restarted_from: Option<PathBuf>,
    /// The time loop's timings and the analyses' report.
    pub drive: DriveReport,
    /// Where memory landed.
    pub memory: MemoryReport,
    /// The physics of the statistics (`None` without analyses).
    pub physics: Option<Physics>,
    /// The directory of the analyses' files (`None` without analyses).
    pub output: Option<PathBuf>,
}

impl AppReport {
    /// Million cell updates per second of total wall time.
    pub fn mcells_per_second(&self) -> f64 {
        self.cells as f64 * self.steps as f64 / self.drive.total_seconds / 1e6
    }

    /// Million cell updates per second of the solver's own time.
    pub fn solver_mcells_per_second(&self) -> f64 {
        self.cells as f64 * self.steps as f64 / self.drive.solver_seconds / 1e6
    }

    /// Wall time beyond the solver's own, in percent of the latter.
    pub fn overhead_percent(&self) -> f64 {
        100.0 * (self.drive.total_seconds - self.drive.solver_seconds) / self.drive.solver_seconds
    }
}

fn place(p: &Option<(String, Tier)>) -> String {
    p.as_ref()
        .map_or_else(|| "heap".into(), |(name, tier)| format!("{name} ({tier})"))
}

/// The transport lines of a run through a CDO pool.
fn write_transit(f: &mut fmt::Formatter<'_>, t: &TransitReport) -> fmt::Result {
    let (place, runs) = match &t.manager {
        Some(m) => (
            format!(
                "pool manager ({} {})",
                if m.started { "started at" } else { "joined at" },
                m.socket
            ),
            "processes",
        ),
        None => ("cdo pool in process".to_string(), "threads"),
    };
    writeln!(
        f,
        "transport        {place}, {} consumer {runs}: {} objects offered, {} withdrawn",
        t.consumers, t.offered, t.withdrawn
    )?;
    let l = &t.left;
    writeln!(
        f,
        "  pool after the consumers left: {} objects; {} offers, {} views ({:.1} MiB) in all",
        l.objects,
        l.offered,
        l.views,
        l.view_bytes as f64 / (1 << 20) as f64
    )
}

impl fmt::Display for AppReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.drive;
        writeln!(
            f,
            "steps            {} (this run {})",
            self.total_steps, self.steps
        )?;
        writeln!(f, "final time       {:.6e}", self.time)?;
        if let Some(path) = &self.restarted_from {
            writeln!(f, "restarted from   {}", path.display())?;
        }
        if let Some(physics) = &self.physics {
            write!(f, "{physics}")?;
        }
        writeln!(
            f,
            "average MC/s     {:.2} (solver alone {:.2})",
            self.mcells_per_second(),
            self.solver_mcells_per_second()
        )?;
        writeln!(
            f,
            "wall time (s)    {:.3} total, {:.3} solver, overhead {:.1}%",
            d.total_seconds,
            d.solver_seconds,
            self.overhead_percent()
        )?;
        writeln!(
            f,
            "hand-off (s)     {:.3} copying and waiting, {:.3} waiting for the consumers, {:.3} draining",
            d.handoff_seconds, d.wait_seconds, d.drain_seconds
        )?;
        if let Some(o) = &d.outlet {
            let shares: Vec<String> = o
                .rendered_steps
                .iter()
                .map(|r| r.len().to_string())
                .collect();
            writeln!(
                f,
                "analyses         {} records, {:.1} MiB streamed, renderers {}, {} checkpoints, {:.3} s busy",
                o.records,
                o.bytes as f64 / (1 << 20) as f64,
                shares.join("+"),
                o.checkpoints.len(),
                o.busy_seconds
            )?;
        } else {
            writeln!(f, "analyses         off")?;
        }
        let transit = d.outlet.as_ref().and_then(|o| o.transit.as_ref());
        match (self.transport, transit) {
            (None, _) => writeln!(f, "transport        none")?,
            (Some(_), Some(t)) => write_transit(f, t)?,
            (Some(TransportKind::Channels), None) => writeln!(f, "transport        channels")?,
            (Some(TransportKind::Cdo), None) => writeln!(f, "transport        cdo")?,
        }
        let m = &self.memory;
        let records = match transit.and_then(|t| t.manager.as_ref()) {
            Some(_) => "the solver's shared memory".into(),
            None => place(&m.records),
        };
        writeln!(
            f,
            "memory           policy {}: state in {}, records in {}",
            m.policy,
            place(&m.state),
            records
        )?;
        for p in &m.pools {
            writeln!(
                f,
                "  pool {:<10} {:<7} high water {:.1} MiB, {} allocations",
                p.name,
                p.tier.to_string(),
                p.high_water as f64 / (1 << 20) as f64,
                p.allocations
            )?;
        }
        if let (Some(dir), Some(o)) = (&self.output, &d.outlet) {
            let frames: usize = o.rendered_steps.iter().map(Vec::len).sum();
            writeln!(
                f,
                "files            {}: {frames} frames density_<step>.png, {}, {}, {}",
                dir.display(),
                crate::analysis::STATS_CSV,
                crate::analysis::STATS_PNG,
                crate::physics::SUMMARY_TXT
            )?;
        }
        Ok(())
    }
}
