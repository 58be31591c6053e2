//! Legacy VTK files (binary STRUCTURED_POINTS, cell data) that ParaView and
//! VisIt open.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::record::RecordView;
use crate::state::NVAR;

/// Writes the four fields of `record` as cell data of a `nx x ny` image;
/// the title line carries the step, time, producer and units.
pub fn write_vtk(path: &Path, record: &RecordView<'_>) -> std::io::Result<()> {
    let m = record.meta();
    let units: Vec<String> = record
        .field_names()
        .iter()
        .zip(record.field_units())
        .map(|(name, unit)| format!("{name}[{unit}]"))
        .collect();
    let mut w = BufWriter::new(File::create(path)?);
    write!(
        w,
        "# vtk DataFile Version 3.0\nhydro step {} t {:e} producer {} {}\nBINARY\n\
         DATASET STRUCTURED_POINTS\nDIMENSIONS {} {} 1\nORIGIN 0 0 0\n\
         SPACING {:e} {:e} {:e}\nCELL_DATA {}\n",
        m.step,
        m.time,
        m.producer,
        units.join(" "),
        m.nx + 1,
        m.ny + 1,
        m.dx,
        m.dx,
        m.dx,
        m.nx * m.ny
    )?;
    for (var, name) in record.field_names().iter().enumerate().take(NVAR) {
        write!(w, "SCALARS {name} double 1\nLOOKUP_TABLE default\n")?;
        for v in record.field(var) {
            w.write_all(&v.to_be_bytes())?;
        }
        w.write_all(b"\n")?;
    }
    w.flush()
}
