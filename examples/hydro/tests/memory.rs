//! Memory placement by tier on a simulated Xeon Max node (DRAM, HBM and
//! NVDIMM NUMA nodes), described by mamba's test topology.

use std::path::PathBuf;

use clap::Parser;
use hydro::{AppError, Cli};

fn topology() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../mamba/tests/data/xeon-max-2s.xml")
        .display()
        .to_string()
}

fn run(memory: &str, out: &std::path::Path) -> Result<hydro::AppReport, AppError> {
    let topo = topology();
    let out = out.display().to_string();
    let cli = Cli::try_parse_from([
        "hydro",
        "--nx",
        "16",
        "--ny",
        "16",
        "--dx",
        "0.0625",
        "--tend",
        "1e9",
        "--nstepmax",
        "4",
        "--noutput",
        "2",
        "--workers",
        "2",
        "--topology",
        &topo,
        "--memory",
        memory,
        "--output",
        &out,
    ])
    .unwrap();
    hydro::run_app(&cli)
}

#[test]
fn state_scratch_and_records_land_in_the_requested_tier() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, space, tier) in [
        ("hbm", "hbm0", mamba::Tier::Hbm),
        ("hbm,dram", "hbm0", mamba::Tier::Hbm),
        ("bandwidth", "hbm0", mamba::Tier::Hbm),
        ("nvdimm,dram", "nvdimm0", mamba::Tier::Nvdimm),
        ("dram", "dram0", mamba::Tier::Dram),
    ] {
        let report = run(policy, dir.path()).unwrap();
        let m = &report.memory;
        assert_eq!(m.state, Some((space.to_string(), tier)), "{policy}");
        assert_eq!(m.records, Some((space.to_string(), tier)), "{policy}");
        // State planes, band scratch and record ring all come from the pool.
        assert_eq!(m.pools.len(), 1, "{policy}: {:?}", m.pools);
        assert_eq!(m.pools[0].name, space);
        assert!(m.pools[0].allocations >= 4 + 2 * 4 + 3, "{:?}", m.pools[0]);
        assert!(m.pools[0].high_water > 0);
        let text = report.to_string();
        assert!(
            text.contains(&format!("state in {space} ({tier})")),
            "{text}"
        );
    }
}

#[test]
fn a_tier_the_node_lacks_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = run("gpu", dir.path()).unwrap_err();
    assert!(matches!(err, AppError::Memory(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("gpu"), "{text}");
    assert!(text.contains("none of"), "{text}");
}
