//! The device modes give identical answers: CPU only, the test double
//! with the whole block resident, and the block streamed in small chunks.

use clap::Parser;
use sirius::{run_app, Cli, Report};

const ARGS: [&str; 12] = [
    "--kpoints",
    "0,0,0;0.25,0.5,-0.1",
    "--nmax",
    "1,2",
    "--v",
    "0.2,0.1,-0.15",
    "--bands",
    "4",
    "--iterations",
    "2",
    "--tolerance",
    "1e-9",
];

/// The command line of [`ARGS`] followed by `extra`.
fn cli(extra: &[&str]) -> Cli {
    Cli::try_parse_from(
        ["sirius"]
            .into_iter()
            .chain(ARGS)
            .chain(extra.iter().copied()),
    )
    .unwrap()
}

fn run(extra: &[&str]) -> Report {
    run_app(&cli(extra)).unwrap()
}

fn eigenvalues(r: &Report) -> Vec<Vec<f64>> {
    r.kpoints.iter().map(|k| k.eigenvalues.clone()).collect()
}

#[test]
fn host_resident_and_streamed_agree_bit_for_bit() {
    let cpu = run(&["--device", "cpu"]);
    let resident = run(&["--device", "sim"]);
    // 125 plane waves * 16 bytes per vector at nmax 2; two slots in and
    // out of two vectors each.
    let budget = (4 * 2 * 125 * 16).to_string();
    let streamed = run(&["--device", "sim", "--device-budget", &budget]);
    assert!(cpu.max_error() < 1e-8, "{}", cpu.max_error());
    assert_eq!(eigenvalues(&cpu), eigenvalues(&resident));
    assert_eq!(eigenvalues(&cpu), eigenvalues(&streamed));

    assert_eq!(cpu.bytes_to_device, 0);
    assert_eq!(cpu.bytes_from_device, 0);
    assert!(cpu.device.starts_with("cpu"), "{}", cpu.device);
    assert!(
        resident.device.contains("test double"),
        "{}",
        resident.device
    );
    // Every vector goes in and comes back once per apply, whatever the
    // chunking.
    assert!(resident.bytes_to_device > 0);
    assert_eq!(resident.bytes_to_device, resident.bytes_from_device);
    assert_eq!(resident.bytes_to_device, streamed.bytes_to_device);
    assert_eq!(streamed.bytes_to_device, streamed.bytes_from_device);
    // The wave functions move as CDOs around every eigensolver call: into
    // the host's own space on the CPU (no copy), host -> simulated GPU
    // space -> host with the test double, the same bytes resident or
    // streamed.
    assert!(cpu.staging.starts_with("CDO"), "{}", cpu.staging);
    assert!(cpu.staged_calls > 0);
    assert_eq!(cpu.zero_copy_handovers, 2 * cpu.staged_calls);
    assert_eq!(cpu.handover_bytes_to_device, 0);
    assert_eq!(cpu.handover_bytes_from_device, 0);
    for sim in [&resident, &streamed] {
        assert!(sim.staging.contains("gpu1"), "{}", sim.staging);
        assert_eq!(sim.staged_calls, cpu.staged_calls);
        assert_eq!(sim.zero_copy_handovers, 0);
        assert!(sim.handover_bytes_to_device > 0);
        // Two steps of blocks of 4 bands and 2 guard bands, at 27 and 125
        // plane waves, each way.
        assert_eq!(sim.handover_bytes_to_device, 2 * (27 + 125) * 6 * 16);
        assert_eq!(sim.handover_bytes_to_device, sim.handover_bytes_from_device);
        assert!(sim.bytes_to_device > sim.handover_bytes_to_device);
    }
    assert_eq!(
        resident.handover_bytes_to_device,
        streamed.handover_bytes_to_device
    );
    // Streaming cuts the blocks into more chunks than applies.
    assert!(streamed.device_chunks > resident.device_chunks);
    assert_eq!(cpu.device_chunks, resident.device_chunks);
}

#[test]
fn gpu_runs_resident_and_streamed_match_the_cpu_or_are_skipped() {
    let budget = (4 * 2 * 125 * 16).to_string();
    let cpu = run(&["--device", "cpu"]);
    for extra in [
        &["--device", "gpu"][..],
        &["--device", "gpu", "--device-budget", &budget],
    ] {
        match run_app(&cli(extra)) {
            Err(sirius::AppError::Device(sirius::DeviceError::NoGpu(why))) => {
                eprintln!("skipped: no usable CUDA device ({why})");
                return;
            }
            Err(e) => panic!("{extra:?}: {e}"),
            Ok(gpu) => {
                // The GPU only moves the data: the apply is the CPU's, so
                // the answers are the same bits.
                assert_eq!(eigenvalues(&gpu), eigenvalues(&cpu), "{extra:?}");
                assert!(gpu.device.starts_with("gpu"), "{}", gpu.device);
                assert!(gpu.bytes_to_device > 0);
                assert_eq!(gpu.bytes_to_device, gpu.bytes_from_device);
                eprintln!(
                    "{extra:?}: {} bytes each way in {} chunks, {:?} heap allocations after the first step",
                    gpu.bytes_to_device, gpu.device_chunks, gpu.raw_allocations_after_first_iteration
                );
            }
        }
    }
}
