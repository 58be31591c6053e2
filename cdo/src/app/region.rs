//! A region of a field that a CDO group holds as blocks (a block
//! decomposition: each member's `block_start`, `shape`, `order` and
//! `element_type` say which part it is), assembled from the blocks that
//! overlap it with mamba-transforms' copy kernels: the redistribution of
//! a parallel field from the producers' decomposition into the
//! consumer's (seed requirement R4.1), with a change of order on the way
//! when the consumer asks for one (R4.2).

use crate::attrs::{Attributes, FlatAttributes, Layout};
use crate::error::{Error, Result};
use mamba_transforms::Layout as Strided;

/// One member of the group: its name, bytes and attributes.
pub(super) struct Block<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
    pub attrs: &'a FlatAttributes,
}

/// The part of a block that lies in the region: where it starts in the
/// field, and its extent.
struct Piece<'a> {
    block: &'a Block<'a>,
    /// The block's own start, shape and order.
    block_start: Vec<usize>,
    block_layout: Layout,
    start: Vec<usize>,
    size: Vec<usize>,
}

/// The error of group `group`.
fn error(group: &str, reason: String) -> Error {
    Error::Group {
        name: group.to_owned(),
        reason,
    }
}

/// `layout` for elements of `elem` bytes, as the kernels take it, for the
/// CDO `name`.
fn strided(name: &str, layout: &Layout, elem: usize) -> Result<Strided> {
    layout.strided(elem).map_err(|reason| Error::Layout {
        name: name.into(),
        reason,
    })
}

/// Fills `dst` with the region of `want.shape` elements starting at
/// `start` of the field that `blocks` of group `group` decompose, laid out
/// as `want` says.
///
/// # Errors
/// [`Error::Group`] when a block lacks its place (`block_start`, `shape`,
/// `element_type`), the blocks disagree on the element type, or they do
/// not cover the region exactly once; [`Error::Layout`] when `dst` is not
/// the region's size. Nothing is copied then.
pub(super) fn assemble(
    group: &str,
    blocks: &[Block<'_>],
    start: &[usize],
    want: &Layout,
    dst: &mut [u8],
) -> Result<()> {
    let rank = want.shape.len();
    if start.len() != rank {
        let reason = format!(
            "region start {start:?} and shape {:?} differ in rank",
            want.shape
        );
        return Err(error(group, reason));
    }
    let mut elem = None;
    let mut pieces = Vec::new();
    for block in blocks {
        let attrs = Attributes::from_flat(block.attrs)?;
        let missing = |what: &str| error(group, format!("member {} has no {what}", block.name));
        let layout = attrs.layout.clone().ok_or_else(|| missing("shape"))?;
        let size = attrs
            .element_type
            .ok_or_else(|| missing("element_type"))?
            .size();
        if attrs.block_start.len() != rank || layout.shape.len() != rank {
            return Err(missing(&format!("block_start and shape of rank {rank}")));
        }
        match elem {
            Some(e) if e != size => {
                return Err(error(group, "members differ in element size".into()));
            }
            _ => elem = Some(size),
        }
        let lo: Vec<usize> = (0..rank)
            .map(|d| start[d].max(attrs.block_start[d]))
            .collect();
        let hi: Vec<usize> = (0..rank)
            .map(|d| (start[d] + want.shape[d]).min(attrs.block_start[d] + layout.shape[d]))
            .collect();
        if (0..rank).any(|d| lo[d] >= hi[d]) {
            continue;
        }
        pieces.push(Piece {
            block,
            block_start: attrs.block_start,
            block_layout: layout,
            size: (0..rank).map(|d| hi[d] - lo[d]).collect(),
            start: lo,
        });
    }
    check_cover(group, &pieces, want)?;
    let elem = elem.unwrap_or(1);
    let region = strided(group, want, elem)?;
    // A padded region may lie in a larger buffer; a dense one fills it.
    let needed = region.required_len();
    if dst.len() < needed || (want.is_dense() && dst.len() != needed) {
        return Err(Error::Layout {
            name: group.into(),
            reason: format!(
                "the region takes {} bytes, not {}",
                region.required_len(),
                dst.len()
            ),
        });
    }
    for p in &pieces {
        let within_block: Vec<usize> = (0..rank).map(|d| p.start[d] - p.block_start[d]).collect();
        let within_region: Vec<usize> = (0..rank).map(|d| p.start[d] - start[d]).collect();
        let src = strided(p.block.name, &p.block_layout, elem)?;
        let copied = src
            .view(&within_block, &p.size)
            .and_then(|from| Ok((from, region.view(&within_region, &p.size)?)))
            .and_then(|(from, to)| mamba_transforms::copy(p.block.bytes, &from, dst, &to));
        copied.map_err(|e| Error::Layout {
            name: p.block.name.into(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// Whether `pieces` cover the region of `want.shape` exactly once: their
/// volumes add up to the region's and no two overlap.
fn check_cover(group: &str, pieces: &[Piece<'_>], want: &Layout) -> Result<()> {
    let volume = |size: &[usize]| size.iter().product::<usize>();
    let covered: usize = pieces.iter().map(|p| volume(&p.size)).sum();
    let overlap = |a: &Piece<'_>, b: &Piece<'_>| {
        (0..a.start.len())
            .all(|d| a.start[d] < b.start[d] + b.size[d] && b.start[d] < a.start[d] + a.size[d])
    };
    let twice = pieces.iter().enumerate().find_map(|(i, a)| {
        pieces[i + 1..]
            .iter()
            .find(|b| overlap(a, b))
            .map(|b| (a, b))
    });
    if let Some((a, b)) = twice {
        let reason = format!("members {} and {} overlap", a.block.name, b.block.name);
        return Err(error(group, reason));
    }
    if covered != volume(&want.shape) {
        let reason = format!(
            "the members cover {covered} of the region's {} elements",
            volume(&want.shape)
        );
        return Err(error(group, reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn attrs(start: [u64; 1], len: u64, element_type: &str) -> FlatAttributes {
        let mut a = FlatAttributes::new();
        a.insert("element_type".into(), Value::from(element_type));
        a.insert("shape".into(), Value::List(vec![Value::UInt(len)]));
        a.insert(
            "block_start".into(),
            Value::List(vec![Value::UInt(start[0])]),
        );
        a
    }

    fn line(len: usize) -> Layout {
        Layout {
            shape: vec![len],
            ..Layout::default()
        }
    }

    #[test]
    fn blocks_are_assembled_into_the_region() {
        let (a, b) = (attrs([0], 3, "u8"), attrs([3], 2, "u8"));
        let blocks = [
            Block {
                name: "g/a",
                bytes: &[0, 1, 2],
                attrs: &a,
            },
            Block {
                name: "g/b",
                bytes: &[3, 4],
                attrs: &b,
            },
        ];
        let mut dst = [9u8; 3];
        assemble("g", &blocks, &[1], &line(3), &mut dst).unwrap();
        assert_eq!(dst, [1, 2, 3]);
    }

    #[test]
    fn strided_blocks_and_regions_are_read_and_written_in_place() {
        // Every other byte of the block is padding (a halo, say).
        let mut a = attrs([0], 3, "u8");
        a.insert("strides".into(), Value::List(vec![Value::UInt(2)]));
        let blocks = [Block {
            name: "g/a",
            bytes: &[7, 0, 8, 0, 9],
            attrs: &a,
        }];
        let padded = Layout {
            shape: vec![3],
            strides: vec![2],
            ..Layout::default()
        };
        let mut dst = [1u8; 5];
        assemble("g", &blocks, &[0], &padded, &mut dst).unwrap();
        assert_eq!(dst, [7, 1, 8, 1, 9], "the region's padding untouched");
    }

    #[test]
    fn overlaps_gaps_and_mixed_elements_are_refused_before_a_byte_moves() {
        let cases = [
            (attrs([0], 3, "u8"), attrs([2], 3, "u8"), "overlap"),
            (attrs([0], 2, "u8"), attrs([3], 2, "u8"), "cover"),
            (attrs([0], 3, "u8"), attrs([3], 2, "u16"), "element size"),
        ];
        for (a, b, why) in cases {
            let blocks = [
                Block {
                    name: "g/a",
                    bytes: &[0; 3],
                    attrs: &a,
                },
                Block {
                    name: "g/b",
                    bytes: &[0; 4],
                    attrs: &b,
                },
            ];
            let mut dst = [9u8; 5];
            match assemble("g", &blocks, &[0], &line(5), &mut dst) {
                Err(Error::Group { reason, .. }) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: {other:?}"),
            }
            assert_eq!(dst, [9; 5], "{why}: nothing copied");
        }
        let mut plain = attrs([0], 5, "u8");
        plain.remove("block_start");
        let blocks = [Block {
            name: "g/p",
            bytes: &[0; 5],
            attrs: &plain,
        }];
        assert!(matches!(
            assemble("g", &blocks, &[0], &line(5), &mut [0; 5]),
            Err(Error::Group { .. })
        ));
    }
}
