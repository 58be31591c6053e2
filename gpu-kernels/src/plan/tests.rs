use super::*;
use mamba_transforms::Error;

fn rm(elem: usize, shape: &[usize]) -> Layout {
    Layout::row_major(elem, shape).unwrap()
}

fn plan(src: &Layout, dst: &Layout) -> CopyKernel {
    CopyKernel::plan(src, dst).unwrap()
}

#[test]
fn dense_copies_are_one_contiguous_run() {
    let a = rm(8, &[7, 5, 3]);
    assert_eq!(
        plan(&a, &a),
        CopyKernel::Pitched {
            rows: 1,
            row_bytes: 8 * 105,
            src_pitch: 0,
            dst_pitch: 0
        }
    );
    // A single element.
    let one = rm(16, &[1, 1]);
    assert_eq!(
        plan(&one, &one),
        CopyKernel::Pitched {
            rows: 1,
            row_bytes: 16,
            src_pitch: 0,
            dst_pitch: 0
        }
    );
}

#[test]
fn padded_rows_map_to_pitched_copies() {
    let padded = Layout::padded_rows(4, &[10, 7], 9).unwrap();
    let dense = rm(4, &[10, 7]);
    assert_eq!(
        plan(&padded, &dense),
        CopyKernel::Pitched {
            rows: 10,
            row_bytes: 28,
            src_pitch: 36,
            dst_pitch: 28
        }
    );
    assert_eq!(
        plan(&dense, &padded),
        CopyKernel::Pitched {
            rows: 10,
            row_bytes: 28,
            src_pitch: 28,
            dst_pitch: 36
        }
    );
}

#[test]
fn transposes_and_permutations_map_to_the_tiled_kernel() {
    // Source 17 x 33 row-major read transposed: dimension 0 of the copy
    // (33 long) is contiguous in the source, dimension 1 (17 long) in the
    // destination.
    let from = rm(8, &[17, 33]).permute_axes(&[1, 0]).unwrap();
    let to = rm(8, &[33, 17]);
    assert_eq!(
        plan(&from, &to),
        CopyKernel::Transpose {
            elem: 8,
            p: Dim {
                n: 33,
                src: 8,
                dst: 8 * 17
            },
            q: Dim {
                n: 17,
                src: 8 * 33,
                dst: 8
            },
            batch: vec![],
        }
    );
    // Every 3D permutation that moves the fastest dimension is a
    // (batched) transpose; the others are pitched or dense copies.
    let shape = [31, 17, 5];
    for perm in permutations3() {
        let src = rm(4, &shape).permute_axes(&perm).unwrap();
        let dst = rm(4, src.shape());
        let k = plan(&src, &dst);
        if perm[2] == 2 {
            assert_ne!(k.family(), "transpose", "{perm:?}");
        } else {
            assert_eq!(k.family(), "transpose", "{perm:?}");
        }
    }
    // [a][b][c] -> [a][c][b] keeps a as the batch.
    let src = rm(2, &[4, 6, 10]).permute_axes(&[0, 2, 1]).unwrap();
    match plan(&src, &rm(2, &[4, 10, 6])) {
        CopyKernel::Transpose { batch, p, q, .. } => {
            assert_eq!(
                batch,
                vec![Dim {
                    n: 4,
                    src: 120,
                    dst: 120
                }]
            );
            assert_eq!((p.n, q.n), (10, 6));
        }
        k => panic!("expected a transpose, got {k:?}"),
    }
}

#[test]
fn odd_element_sizes_and_general_strides_use_the_strided_kernel() {
    // 12-byte elements cannot be tiled.
    let src = rm(12, &[5, 7]).permute_axes(&[1, 0]).unwrap();
    assert_eq!(plan(&src, &rm(12, &[7, 5])).family(), "strided");
    // Reversal of the contiguous dimension.
    let a = rm(4, &[6, 9]);
    let k = plan(&a.reversed(1).unwrap(), &a);
    assert_eq!(
        k,
        CopyKernel::Strided {
            elem: 4,
            dims: vec![
                Dim {
                    n: 6,
                    src: 36,
                    dst: 36
                },
                Dim {
                    n: 9,
                    src: -4,
                    dst: 4
                }
            ]
        }
    );
    // Runs contiguous on both sides under two strided dimensions: whole
    // runs are the elements.
    let big = rm(1, &[4, 6, 10]);
    let view = big.view(&[1, 1, 0], &[3, 5, 8]).unwrap();
    let k = plan(&view, &rm(1, &[3, 5, 8]));
    assert_eq!(
        k,
        CopyKernel::Strided {
            elem: 8,
            dims: vec![
                Dim {
                    n: 3,
                    src: 60,
                    dst: 40
                },
                Dim {
                    n: 5,
                    src: 10,
                    dst: 8
                }
            ]
        }
    );
}

#[test]
fn normalisation_drops_unit_dimensions_and_merges_contiguous_ones() {
    let src = rm(4, &[1, 3, 1, 5, 2]);
    let k = plan(&src, &src);
    assert_eq!(k.family(), "pitched");
    // Strided views merge where both sides are contiguous.
    let dims = normalise(vec![
        Dim {
            n: 2,
            src: 60,
            dst: 30,
        },
        Dim {
            n: 3,
            src: 20,
            dst: 10,
        },
        Dim {
            n: 5,
            src: 3,
            dst: 2,
        },
    ]);
    assert_eq!(
        dims,
        vec![
            Dim {
                n: 6,
                src: 20,
                dst: 10
            },
            Dim {
                n: 5,
                src: 3,
                dst: 2
            }
        ]
    );
}

#[test]
fn bad_layouts_are_refused_like_the_cpu_planner() {
    let a = rm(4, &[3, 4]);
    assert_eq!(
        CopyKernel::plan(&a, &rm(4, &[4, 3])),
        Err(KernelError::Layout(Error::ShapeMismatch {
            src: vec![3, 4],
            dst: vec![4, 3]
        }))
    );
    assert!(matches!(
        CopyKernel::plan(&a, &rm(8, &[3, 4])),
        Err(KernelError::Layout(Error::ElementSizeMismatch { .. }))
    ));
    let replicated = Layout::from_byte_strides(4, &[3, 4], &[0, 4], 0).unwrap();
    assert!(matches!(
        CopyKernel::plan(&a, &replicated),
        Err(KernelError::Layout(Error::Overlap { .. }))
    ));
    let tiled = Layout::tiled(
        4,
        &[3, 4],
        &[2, 2],
        mamba_transforms::Order::RowMajor,
        mamba_transforms::Order::RowMajor,
    )
    .unwrap();
    assert_eq!(
        CopyKernel::plan(&tiled, &a),
        Err(KernelError::Layout(Error::NotStrided))
    );
}

#[test]
fn more_than_eight_unmergeable_dimensions_are_unsupported() {
    // Nine dimensions of extent 2 whose source order is reversed: no two
    // neighbours merge, and 1-byte elements with no contiguous pair still
    // tile, so use 3-byte elements to force the strided kernel.
    let shape = [2usize; 9];
    let src = rm(3, &shape)
        .permute_axes(&[8, 7, 6, 5, 4, 3, 2, 1, 0])
        .unwrap();
    assert!(matches!(
        CopyKernel::plan(&src, &rm(3, &shape)),
        Err(KernelError::Unsupported(_))
    ));
}

#[test]
fn pitched_launch_uses_the_widest_aligned_unit() {
    let k = CopyKernel::Pitched {
        rows: 100_000,
        row_bytes: 16_000,
        src_pitch: 16_384,
        dst_pitch: 16_000,
    };
    let l = k.launch(0x1000, 0x20000);
    assert_eq!(l.kernel, "pitched_16");
    assert_eq!(
        l.params,
        vec![0x1000, 0x20000, 100_000, 1000, 16_384, 16_000]
    );
    assert_eq!(l.grid, [4, 65_535, 1]);
    assert_eq!(l.block, [THREADS, 1, 1]);
    // An odd base address forces bytes.
    let l = k.launch(0x1001, 0x20000);
    assert_eq!(l.kernel, "pitched_1");
    assert_eq!(l.params[3], 16_000);
    // The pitch of a single row does not matter.
    let one = CopyKernel::Pitched {
        rows: 1,
        row_bytes: 1 << 33,
        src_pitch: 3,
        dst_pitch: 5,
    };
    let l = one.launch(0, 0);
    assert_eq!(l.kernel, "pitched_16");
    assert_eq!(l.grid[0], MAX_GRID_X as u32);
}

#[test]
fn short_rows_and_long_elements_get_one_thread_per_unit() {
    // 7 f32 per row, pitch 9: one thread per f32 over rows x units.
    let k = CopyKernel::Pitched {
        rows: 1000,
        row_bytes: 28,
        src_pitch: 36,
        dst_pitch: 28,
    };
    let l = k.launch(0x1000, 0x2000);
    assert_eq!(l.kernel, "strided_4");
    assert_eq!(&l.params[..7], &[0x1000, 0x2000, 7000, 2, 1, 1000, 7]);
    assert_eq!(&l.params[13..15], &[36, 4]);
    assert_eq!(&l.params[21..23], &[28, 4]);
    // 512-byte runs under two strided dimensions: 32 units each, split.
    let k = CopyKernel::Strided {
        elem: 512,
        dims: vec![
            Dim {
                n: 3,
                src: 8192,
                dst: 4096,
            },
            Dim {
                n: 8,
                src: 1024,
                dst: 512,
            },
        ],
    };
    let l = k.launch(0, 0);
    assert_eq!(l.kernel, "strided_16");
    assert_eq!(&l.params[..5], &[0, 0, 3 * 8 * 32, 3, 1]);
    assert_eq!(&l.params[5..8], &[3, 8, 32]);
    // Short elements stay whole.
    let k = CopyKernel::Strided {
        elem: 12,
        dims: vec![Dim {
            n: 5,
            src: 24,
            dst: 12,
        }],
    };
    assert_eq!(&k.launch(0, 0).params[2..5], &[5, 1, 3]);
}

#[test]
fn transpose_launch_geometry_covers_big_arrays_within_limits() {
    let k = CopyKernel::Transpose {
        elem: 8,
        p: Dim {
            n: 8192,
            src: 8,
            dst: 8 * 8192,
        },
        q: Dim {
            n: 8192,
            src: 8 * 8192,
            dst: 8,
        },
        batch: vec![],
    };
    let l = k.launch(0x10000, 0x20000);
    assert_eq!(l.kernel, "transpose_8");
    assert_eq!(l.grid, [256, 256, 1]);
    assert_eq!(l.block, [TILE, BLOCK_ROWS, 1]);
    assert_eq!(l.params.len(), 10 + 3 * MAX_BATCH);
    assert_eq!(
        &l.params[..10],
        &[0x10000, 0x20000, 8192, 8192, 8, 65536, 65536, 8, 0, 1]
    );

    // More than 65535 tiles along q and a large batch stay within the
    // y and z limits (the kernel loops); offsets beyond 4 GiB are plain
    // 64-bit words.
    let k = CopyKernel::Transpose {
        elem: 4,
        p: Dim {
            n: 3,
            src: 4,
            dst: 4 << 22,
        },
        q: Dim {
            n: 1 << 22,
            src: 12,
            dst: 4,
        },
        batch: vec![Dim {
            n: 100_000,
            src: -(12 << 22),
            dst: 12 << 22,
        }],
    };
    let l = k.launch(0x1_0000_0000, 0x9_0000_0000);
    assert_eq!(l.grid, [1, 65_535, 65_535]);
    assert_eq!(l.params[8], 1);
    assert_eq!(l.params[9], 100_000);
    assert_eq!(l.params[10], 100_000);
    assert_eq!(l.params[10 + MAX_BATCH] as i64, -(12 << 22));
    assert_eq!(l.params[10 + 2 * MAX_BATCH], 12 << 22);
}

#[test]
fn misaligned_transposes_fall_back_to_the_strided_kernel() {
    let from = rm(8, &[17, 33]).permute_axes(&[1, 0]).unwrap();
    let k = plan(&from, &rm(8, &[33, 17]));
    assert_eq!(k.launch(0x1000, 0x2000).kernel, "transpose_8");
    let l = k.launch(0x1004, 0x2000);
    assert_eq!(l.kernel, "strided_4");
    // Two units of 4 bytes per element, 33 * 17 elements.
    assert_eq!(&l.params[2..5], &[33 * 17, 2, 2]);
}

#[test]
fn strided_launch_packs_shape_and_strides_in_fixed_slots() {
    let k = CopyKernel::Strided {
        elem: 6,
        dims: vec![
            Dim {
                n: 3,
                src: -12,
                dst: 60,
            },
            Dim {
                n: 10,
                src: 36,
                dst: 6,
            },
        ],
    };
    let l = k.launch(0x100, 0x200);
    assert_eq!(l.kernel, "strided_2");
    assert_eq!(l.params.len(), 5 + 3 * MAX_RANK);
    assert_eq!(&l.params[..5], &[0x100, 0x200, 30, 2, 3]);
    assert_eq!(&l.params[5..7], &[3, 10]);
    assert!(l.params[7..13].iter().all(|&w| w == 0));
    assert_eq!(l.params[13] as i64, -12);
    assert_eq!(l.params[14], 36);
    assert_eq!(&l.params[21..23], &[60, 6]);
    assert_eq!(l.grid, [1, 1, 1]);
    // A big count is capped at the grid limit; the kernel loops.
    let big = CopyKernel::Strided {
        elem: 4,
        dims: vec![Dim {
            n: 1 << 34,
            src: 8,
            dst: 4,
        }],
    };
    assert_eq!(big.launch(0, 0).grid, [MAX_GRID_X as u32, 1, 1]);
}

#[test]
fn parameter_words_match_the_kernel_structs() {
    assert_eq!(struct_words("PitchedParams"), 6);
    assert_eq!(struct_words("StridedParams"), 5 + 3 * MAX_RANK);
    assert_eq!(struct_words("TransposeParams"), 10 + 3 * MAX_BATCH);
    assert_eq!(struct_words("ConvertParams"), 5);
    let src = rm(8, &[4, 4]);
    let launches = [
        CopyKernel::plan(&src, &src).unwrap().launch(0, 0),
        CopyKernel::plan(&src.permute_axes(&[1, 0]).unwrap(), &src)
            .unwrap()
            .launch(0, 0),
        CopyKernel::plan(&src.reversed(1).unwrap(), &src)
            .unwrap()
            .launch(0, 0),
        convert_launch(0, 0, 1, ElemType::U8, ElemType::F64),
    ];
    let names = [
        "PitchedParams",
        "TransposeParams",
        "StridedParams",
        "ConvertParams",
    ];
    for (l, name) in launches.iter().zip(names) {
        assert_eq!(l.params.len(), struct_words(name), "{name}");
    }
    // Every planned entry point exists in the source.
    for k in KERNELS {
        let family = k.split('_').next().unwrap();
        let width = k.split('_').nth(1);
        let found = match width {
            Some(w) if family == "transpose" => {
                crate::SOURCE.contains(&format!("TRANSPOSE_ENTRY({w},"))
            }
            Some(w) => {
                crate::SOURCE.contains(&format!("ENTRY({family}, "))
                    && crate::SOURCE.contains(&format!(", {w}, "))
            }
            None => crate::SOURCE.contains(&format!("void {k}(")),
        };
        assert!(found, "{k} missing from the kernel source");
    }
    for (define, value) in [
        ("MAX_RANK", MAX_RANK as u32),
        ("MAX_BATCH", MAX_BATCH as u32),
        ("TILE", TILE),
        ("BLOCK_ROWS", BLOCK_ROWS),
    ] {
        assert!(
            crate::SOURCE.contains(&format!("#define {define} {value}\n")),
            "{define} differs from the source"
        );
    }
    // The type codes follow the source's enum.
    assert!(crate::SOURCE
        .contains("enum ElemType { U8 = 0, I8, U16, I16, U32, I32, U64, I64, F32, F64 };"));
}

/// 64-bit words of a parameter struct of the kernel source (every field is
/// a 64-bit integer; arrays have MAX_RANK or MAX_BATCH entries).
fn struct_words(name: &str) -> usize {
    let src = crate::SOURCE;
    let start = src
        .find(&format!("struct {name} {{"))
        .expect("struct in source");
    let body = &src[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("};").unwrap()];
    body.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|decl| {
            let (ty, names) = decl.split_once(' ').unwrap();
            assert!(ty == "u64" || ty == "i64", "{name}: field type {ty}");
            names
                .split(',')
                .map(|n| {
                    if n.contains("[MAX_RANK]") {
                        MAX_RANK
                    } else if n.contains("[MAX_BATCH]") {
                        MAX_BATCH
                    } else {
                        1
                    }
                })
                .sum::<usize>()
        })
        .sum()
}

fn permutations3() -> Vec<[usize; 3]> {
    vec![
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ]
}

#[test]
fn copies_past_4_gib_map_to_every_family() {
    // The layouts of the GPU test of offsets past 4 GiB.
    let pitch = 4_400_000isize;
    let sparse = Layout::from_byte_strides(4, &[1024, 256], &[pitch, 4], 0).unwrap();
    assert!(sparse.required_len() > 1 << 32);
    let dense = rm(4, &[1024, 256]);
    assert_eq!(plan(&sparse, &dense).family(), "pitched");
    let rev = sparse.reversed(0).unwrap();
    assert_eq!(
        plan(&rev, &dense).launch(1 << 20, 1 << 20).kernel,
        "pitched_16"
    );
    let t = sparse.permute_axes(&[1, 0]).unwrap();
    assert_eq!(plan(&t, &rm(4, &[256, 1024])).family(), "transpose");
    let every4 = Layout::from_byte_strides(4, &[1024, 64], &[pitch, 16], 0).unwrap();
    assert_eq!(plan(&every4, &rm(4, &[1024, 64])).family(), "strided");
}
