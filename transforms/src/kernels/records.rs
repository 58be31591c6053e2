//! Array of structures <-> structure of arrays. Records are processed in
//! chunks that fit in the L1 cache: the structure side is read or written
//! once, sequentially, and each field array is one sequential stream.

use super::gather::{gather, gather_nt};
use super::stream::{fence, stream_copy};
use super::{for_each_group, DstPtr, Exec, JDim, SrcPtr};
use crate::error::{Error, Result};

/// Bytes of records handled per chunk.
const CHUNK_BYTES: usize = 16 << 10;

/// A validated record description and a record count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordJob {
    /// Bytes per record in the array of structures.
    pub record: usize,
    /// `(offset, size)` of each field inside a record.
    pub fields: Vec<(usize, usize)>,
    /// Number of records.
    pub n: usize,
}

impl RecordJob {
    /// Checks the buffers: `aos` holds `n` records, field buffer `f` holds
    /// `n` values of its size, fields lie inside the record. Returns the
    /// chunk length in records.
    fn check(&self, aos: usize, fields: impl ExactSizeIterator<Item = usize>) -> Result<usize> {
        if fields.len() != self.fields.len() {
            return Err(Error::BufferCount {
                expected: self.fields.len(),
                found: fields.len(),
            });
        }
        let need = |n: usize, size: usize| n.checked_mul(size).ok_or(Error::Overflow);
        let aos_need = need(self.n, self.record)?;
        if aos < aos_need {
            return Err(Error::OutOfBounds {
                needed: aos_need,
                len: aos,
            });
        }
        for (len, &(off, size)) in fields.zip(&self.fields) {
            if off.checked_add(size).is_none_or(|e| e > self.record) {
                return Err(Error::InvalidRecord("field outside the record"));
            }
            let needed = need(self.n, size)?;
            if len < needed {
                return Err(Error::OutOfBounds { needed, len });
            }
        }
        Ok((CHUNK_BYTES / self.record).max(1))
    }

    /// Runs `f(scratch, first, count)` over the record chunks, in parallel
    /// or not.
    fn chunks(&self, chunk: usize, ex: Exec, f: impl Fn(&mut Vec<u8>, usize, usize) + Sync) {
        let count = self.n.div_ceil(chunk);
        let run = |scratch: &mut Vec<u8>, c: usize| {
            let first = c * chunk;
            f(scratch, first, chunk.min(self.n - first));
        };
        let threads = rayon::current_num_threads();
        if ex.parallel && threads > 1 {
            for_each_group(count, threads * 4, ex.nt, Vec::new, run);
        } else {
            let mut scratch = Vec::new();
            (0..count).for_each(|c| run(&mut scratch, c));
            if ex.nt {
                fence();
            }
        }
    }
}

/// Splits `job.n` records from `aos` into one array per field.
pub(crate) fn split_records(
    job: &RecordJob,
    aos: &[u8],
    fields: &mut [&mut [u8]],
    ex: Exec,
) -> Result<()> {
    let chunk = job.check(aos.len(), fields.iter().map(|f| f.len()))?;
    let src = SrcPtr(aos.as_ptr());
    let dsts: Vec<DstPtr> = fields.iter_mut().map(|f| DstPtr(f.as_mut_ptr())).collect();
    let rec = job.record as isize;
    job.chunks(chunk, ex, |_, first, count| {
        for (dst, &(off, size)) in dsts.iter().zip(&job.fields) {
            let g = JDim {
                n: count,
                s: rec,
                d: size as isize,
            };
            // SAFETY: records `first..first + count` and their field values
            // are inside the buffers (checked above); chunks are disjoint,
            // so each destination byte has one writer.
            unsafe {
                let s = src.get().add(first * job.record + off);
                let d = dst.get().add(first * size);
                if ex.nt {
                    gather_nt(size, s, d, g, count);
                } else {
                    gather(size, s, d, g, count);
                }
            }
        }
    });
    Ok(())
}

/// Joins one array per field into `job.n` records in `aos`; bytes of the
/// records that no field covers are set to zero.
pub(crate) fn join_records(
    job: &RecordJob,
    fields: &[&[u8]],
    aos: &mut [u8],
    ex: Exec,
) -> Result<()> {
    let chunk = job.check(aos.len(), fields.iter().map(|f| f.len()))?;
    let dst = DstPtr(aos.as_mut_ptr());
    let srcs: Vec<SrcPtr> = fields.iter().map(|f| SrcPtr(f.as_ptr())).collect();
    let rec = job.record as isize;
    job.chunks(chunk, ex, |scratch, first, count| {
        if scratch.len() < chunk * job.record {
            // Zeroed once: fields overwrite the same bytes in every chunk,
            // the gaps stay zero.
            *scratch = vec![0; chunk * job.record];
        }
        for (src, &(off, size)) in srcs.iter().zip(&job.fields) {
            let g = JDim {
                n: count,
                s: size as isize,
                d: rec,
            };
            // SAFETY: field values `first..first + count` are inside the
            // field buffers (checked above) and the scratch holds `chunk`
            // records.
            unsafe {
                gather(
                    size,
                    src.get().add(first * size),
                    scratch.as_mut_ptr().add(off),
                    g,
                    count,
                )
            };
        }
        let bytes = count * job.record;
        // SAFETY: records `first..first + count` are inside `aos` (checked
        // above) and written by this chunk only.
        unsafe {
            let d = dst.get().add(first * job.record);
            if ex.nt {
                stream_copy(d, scratch.as_ptr(), bytes);
            } else {
                std::ptr::copy_nonoverlapping(scratch.as_ptr(), d, bytes);
            }
        }
    });
    Ok(())
}
