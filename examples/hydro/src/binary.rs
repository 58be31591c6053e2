//! Little-endian binary helpers shared by checkpoints and dumps.

use std::io::{self, Read, Write};

/// Reads one little-endian u64.
pub fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Reads one little-endian f64.
pub fn read_f64(r: &mut impl Read) -> io::Result<f64> {
    read_u64(r).map(f64::from_bits)
}

/// Reads `n` little-endian f64 values.
pub fn read_f64s(r: &mut impl Read, n: usize) -> io::Result<Vec<f64>> {
    (0..n).map(|_| read_f64(r)).collect()
}

/// Writes `values` as little-endian f64.
pub fn write_f64s(w: &mut impl Write, values: &[f64]) -> io::Result<()> {
    for v in values {
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}
