#!/usr/bin/env python3
"""Writes reference copies made by numpy, for tests/numpy_reference.rs.

Each case is one raw little-endian file; run from any directory:
    python3 transforms/tests/data/make_reference.py
"""
import os

import numpy as np

OUT = os.path.dirname(os.path.abspath(__file__))


def write(name, array):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(np.ascontiguousarray(array).tobytes(order="C"))


def main():
    # A 5 x 7 float64 matrix with distinct values.
    a = np.arange(35, dtype="<f8").reshape(5, 7) * 1.5 - 4.0
    write("a_5x7_f64.bin", a)
    write("a_transposed.bin", a.T)
    with open(os.path.join(OUT, "a_fortran.bin"), "wb") as f:
        f.write(a.tobytes(order="F"))
    write("a_reversed_rows.bin", a[::-1, :])
    write("a_reversed_both.bin", a[::-1, ::-1])
    write("a_sub_1_2_3x4.bin", a[1:4, 2:6])
    write("a_strided_0_1_step_2_3.bin", a[::2, 1::3])

    # 6 x 9 int32 matrix stored in 2 x 3 tiles, tiles and elements row-major.
    b = np.arange(54, dtype="<i4").reshape(6, 9) * 7 - 100
    write("b_6x9_i32.bin", b)
    write("b_tiled_2x3.bin", b.reshape(3, 2, 3, 3).transpose(0, 2, 1, 3))

    # 3 x 4 x 5 float32 array in Fortran order, and with axes (2, 0, 1).
    c = (np.arange(60, dtype="<f4").reshape(3, 4, 5) - 30.0) / 4.0
    write("c_3x4x5_f32.bin", c)
    with open(os.path.join(OUT, "c_fortran.bin"), "wb") as f:
        f.write(c.tobytes(order="F"))
    write("c_axes_201.bin", c.transpose(2, 0, 1))

    # Records of (f8, i4, u2) with 2 bytes of padding: 16 bytes each.
    rec = np.dtype({"names": ["x", "id", "k"], "formats": ["<f8", "<i4", "<u2"],
                    "offsets": [0, 8, 12], "itemsize": 16})
    r = np.zeros(6, dtype=rec)
    r["x"] = np.linspace(-1.0, 1.5, 6)
    r["id"] = np.arange(6) * 1000 - 2500
    r["k"] = np.arange(6) * 11 + 3
    write("r_records.bin", r)
    for name in ("x", "id", "k"):
        write("r_field_%s.bin" % name, r[name])


if __name__ == "__main__":
    main()
