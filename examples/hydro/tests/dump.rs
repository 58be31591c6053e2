//! The final dump's format.

mod common;

use hydro::Dump;

#[test]
fn dump_has_a_json_header_and_little_endian_planes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("final.bin");
    let solver = common::run(common::blast(12, 4), 1);
    let p = solver.params();
    Dump::write(
        &path,
        solver.state(),
        p.dx,
        solver.step_count(),
        solver.time(),
    )
    .unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes[..newline]).unwrap();
    assert_eq!(header["nx"], 12);
    assert_eq!(header["ny"], 12);
    assert_eq!(header["steps"], 4);
    assert_eq!(
        header["fields"],
        serde_json::json!(["rho", "rhou", "rhov", "E"])
    );
    assert_eq!(bytes.len() - newline - 1, 4 * 12 * 12 * 8);
    // First value: density of cell (0, 0); the energy plane comes last.
    let first = f64::from_le_bytes(bytes[newline + 1..newline + 9].try_into().unwrap());
    assert_eq!(first, solver.state().get(0, 0, 0));

    let dump = Dump::read(&path).unwrap();
    assert_eq!(dump.planes, common::planes(solver.state()));
    assert_eq!(dump.header.t, solver.time());
}
