//! Copies checked against values produced independently by numpy
//! (`tests/data/make_reference.py`).

use mamba_transforms::{copy, Layout, Order, RecordLayout};

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/", $name)).as_slice()
    };
}

/// Copies `src` (in layout `from`) to a fresh buffer in layout `to`.
fn convert(src: &[u8], from: &Layout, to: &Layout) -> Vec<u8> {
    let mut out = vec![0u8; to.required_len()];
    copy(src, from, &mut out, to).unwrap();
    out
}

#[test]
fn matrix_transposes_and_reversals() {
    let a = data!("a_5x7_f64.bin");
    let c = Layout::row_major(8, &[5, 7]).unwrap();
    let t = Layout::row_major(8, &[7, 5]).unwrap();
    assert_eq!(
        convert(a, &c.permute_axes(&[1, 0]).unwrap(), &t),
        data!("a_transposed.bin")
    );
    assert_eq!(
        convert(a, &c, &Layout::column_major(8, &[5, 7]).unwrap()),
        data!("a_fortran.bin")
    );
    assert_eq!(
        convert(a, &c.reversed(0).unwrap(), &c),
        data!("a_reversed_rows.bin")
    );
    let both = c.reversed(0).unwrap().reversed(1).unwrap();
    assert_eq!(convert(a, &both, &c), data!("a_reversed_both.bin"));
    // And back: the Fortran-order bytes read as Fortran order give `a`.
    let f = Layout::column_major(8, &[5, 7]).unwrap();
    assert_eq!(convert(data!("a_fortran.bin"), &f, &c), a);
}

#[test]
fn sub_arrays() {
    let a = data!("a_5x7_f64.bin");
    let c = Layout::row_major(8, &[5, 7]).unwrap();
    let sub = c.view(&[1, 2], &[3, 4]).unwrap();
    let dense = Layout::row_major(8, &[3, 4]).unwrap();
    assert_eq!(convert(a, &sub, &dense), data!("a_sub_1_2_3x4.bin"));
    let strided = c.strided_view(&[0, 1], &[3, 2], &[2, 3]).unwrap();
    let dense = Layout::row_major(8, &[3, 2]).unwrap();
    assert_eq!(
        convert(a, &strided, &dense),
        data!("a_strided_0_1_step_2_3.bin")
    );
}

#[test]
fn tiles() {
    let b = data!("b_6x9_i32.bin");
    let c = Layout::row_major(4, &[6, 9]).unwrap();
    let tiled = Layout::tiled(4, &[6, 9], &[2, 3], Order::RowMajor, Order::RowMajor).unwrap();
    assert_eq!(convert(b, &c, &tiled), data!("b_tiled_2x3.bin"));
    assert_eq!(convert(data!("b_tiled_2x3.bin"), &tiled, &c), b);
}

#[test]
fn three_dimensional_orders() {
    let x = data!("c_3x4x5_f32.bin");
    let c = Layout::row_major(4, &[3, 4, 5]).unwrap();
    let f = Layout::column_major(4, &[3, 4, 5]).unwrap();
    assert_eq!(convert(x, &c, &f), data!("c_fortran.bin"));
    let axes = c.permute_axes(&[2, 0, 1]).unwrap();
    let dense = Layout::row_major(4, &[5, 3, 4]).unwrap();
    assert_eq!(convert(x, &axes, &dense), data!("c_axes_201.bin"));
}

#[test]
fn records_split_and_join() {
    let rec = RecordLayout::new(
        16,
        &[
            mamba_transforms::Field { offset: 0, size: 8 },
            mamba_transforms::Field { offset: 8, size: 4 },
            mamba_transforms::Field {
                offset: 12,
                size: 2,
            },
        ],
    )
    .unwrap();
    let opts = mamba_transforms::ExecOptions::default();
    let (mut x, mut id, mut k) = (vec![0u8; 48], vec![0u8; 24], vec![0u8; 12]);
    rec.split(
        data!("r_records.bin"),
        6,
        &mut [&mut x, &mut id, &mut k],
        &opts,
    )
    .unwrap();
    assert_eq!(x, data!("r_field_x.bin"));
    assert_eq!(id, data!("r_field_id.bin"));
    assert_eq!(k, data!("r_field_k.bin"));
    let mut aos = vec![0xffu8; 96];
    rec.join(&[&x, &id, &k], 6, &mut aos, &opts).unwrap();
    // numpy zero-fills the padding, as `join` does.
    assert_eq!(aos, data!("r_records.bin"));
}
