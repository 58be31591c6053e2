//! The statistics consumer: integrals, extrema and the area the blast has
//! reached, of every record, as CSV rows.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::record::RecordView;
use crate::state::{ID, IP, NVAR};

/// Statistics of one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsRow {
    /// Step of the record.
    pub step: u64,
    /// Simulated time.
    pub time: f64,
    /// Total mass: the sum of the density times the cell area.
    pub mass: f64,
    /// Total energy: the sum of `E` times the cell area.
    pub energy: f64,
    /// Minimum of each field.
    pub min: [f64; NVAR],
    /// Maximum of each field.
    pub max: [f64; NVAR],
    /// Area of the cells whose energy density exceeds [`DISTURBED`] times
    /// the record's smallest: the region a blast wave has swept (the gas
    /// ahead of the front is at rest at the background energy).
    pub blast_area: f64,
}

/// Energy density, as a multiple of the smallest, above which a cell counts
/// into [`StatsRow::blast_area`].
pub const DISTURBED: f64 = 10.0;

/// Sum of a field, row by row then over rows (the order of
/// [`State::total`](crate::State::total), so the result matches it bit for
/// bit).
fn total(field: &[f64], nx: usize) -> f64 {
    field
        .chunks_exact(nx)
        .map(|row| row.iter().sum::<f64>())
        .sum()
}

impl StatsRow {
    /// The statistics of `record`.
    pub fn of(record: &RecordView<'_>) -> StatsRow {
        let m = record.meta();
        let area = m.dx * m.dx;
        let extrema = |var: usize| {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &v in record.field(var) {
                lo = if v < lo { v } else { lo };
                hi = if v > hi { v } else { hi };
            }
            (lo, hi)
        };
        let ext: [(f64, f64); NVAR] = std::array::from_fn(extrema);
        let threshold = DISTURBED * ext[IP].0;
        let swept = record.field(IP).iter().filter(|&&e| e > threshold).count();
        let rho = record.field(ID);
        StatsRow {
            step: m.step,
            time: m.time,
            mass: total(rho, m.nx) * area,
            energy: total(record.field(IP), m.nx) * area,
            min: ext.map(|e| e.0),
            max: ext.map(|e| e.1),
            blast_area: swept as f64 * area,
        }
    }
}

impl StatsRow {
    /// Parses a line written by [`StatsCsv::write`] (`None` for the header
    /// or a malformed line).
    pub fn parse(line: &str) -> Option<StatsRow> {
        let mut fields = line.split(',');
        let step = fields.next()?.parse().ok()?;
        let values: Vec<f64> = fields.map(|v| v.parse().ok()).collect::<Option<_>>()?;
        if values.len() != 4 + 2 * NVAR {
            return None;
        }
        Some(StatsRow {
            step,
            time: values[0],
            mass: values[1],
            energy: values[2],
            min: std::array::from_fn(|v| values[3 + 2 * v]),
            max: std::array::from_fn(|v| values[4 + 2 * v]),
            blast_area: values[3 + 2 * NVAR],
        })
    }
}

/// The rows of the statistics CSV at `path` up to `last_step` (none when
/// the file does not exist): those to carry over into a restarted run, or
/// with `u64::MAX` all of them.
pub fn rows_up_to(path: &Path, last_step: u64) -> std::io::Result<Vec<StatsRow>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(StatsRow::parse)
            .filter(|r| r.step <= last_step)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes statistics rows as CSV with a header line.
#[derive(Debug)]
pub struct StatsCsv {
    out: BufWriter<File>,
}

impl StatsCsv {
    /// Creates `path` and writes the header (field names from `names`) and
    /// the rows `kept` from an earlier run.
    pub fn create(
        path: &Path,
        names: [&str; NVAR],
        kept: &[StatsRow],
    ) -> std::io::Result<StatsCsv> {
        let mut out = BufWriter::new(File::create(path)?);
        write!(out, "step,time,mass,energy")?;
        for name in names {
            write!(out, ",min_{name},max_{name}")?;
        }
        writeln!(out, ",blast_area")?;
        let mut csv = StatsCsv { out };
        for row in kept {
            csv.write(row)?;
        }
        Ok(csv)
    }
    /// Appends one row (floats in shortest round-trip form).
    pub fn write(&mut self, row: &StatsRow) -> std::io::Result<()> {
        write!(
            self.out,
            "{},{:e},{:e},{:e}",
            row.step, row.time, row.mass, row.energy
        )?;
        for var in 0..NVAR {
            write!(self.out, ",{:e},{:e}", row.min[var], row.max[var])?;
        }
        writeln!(self.out, ",{:e}", row.blast_area)
    }

    /// Flushes the file.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
