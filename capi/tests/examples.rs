//! The C, C++ and Fortran examples of `capi/examples/`, compiled against
//! `capi/include/` and linked to this build's `libmamba_capi.so`, then run:
//! each checks its own results and exits non-zero on a mismatch or on a
//! misuse that was not reported. A missing compiler skips its example with
//! the reason printed (`scripts/setup.sh` installs gcc, g++ and gfortran).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The directory holding `libmamba_capi.so`: `target/<profile>`, the
/// parent of this test's `deps/`, or `deps/` itself (cargo leaves the
/// library there, without a copy one level up, when a workspace build
/// compiled it more than once).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps").to_path_buf();
    let profile = deps.parent().expect("target/<profile>").to_path_buf();
    [profile, deps.clone()]
        .into_iter()
        .find(|dir| dir.join("libmamba_capi.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "libmamba_capi.so is in neither {} nor its parent",
                deps.display()
            )
        })
}

fn have(compiler: &str) -> bool {
    let found = Command::new(compiler)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: {compiler} is not installed (scripts/setup.sh installs it)");
    }
    found
}

/// Compiles `example` with `compiler` and `flags`, runs it, and returns its
/// standard output; fails the test on a compile error, a non-zero exit, or
/// a run that does not end within two minutes (a hang).
fn build_and_run(compiler: &str, flags: &[&str], example: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = lib_dir();
    let out = tempfile::tempdir().expect("temporary directory");
    let exe = out.path().join(example.split('.').next().expect("a name"));
    let compiled = Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("examples").join(example))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg("-lmamba_capi")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .expect("compiler runs");
    assert!(
        compiled.status.success(),
        "{compiler} {example}:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let mut child = Command::new(&exe)
        .env_remove("MSTRO_POOL_MANAGER_INFO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let give_up = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("example runs").is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            panic!("{example} hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = child.wait_with_output().expect("example output");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{example} failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    print!("{stdout}");
    stdout
}

#[test]
fn c_producer_and_consumer_threads_share_an_in_process_pool() {
    if have("gcc") {
        let out = build_and_run(
            "gcc",
            &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"],
            "maestro_threads.c",
        );
        assert!(out.contains("consumer: 32768 bytes, sum 4193280.0"));
        assert!(out.contains("maestro_threads: ok"));
    }
}

#[test]
fn c_producer_and_consumer_processes_share_a_pool_manager() {
    if have("gcc") {
        let out = build_and_run(
            "gcc",
            &["-std=c11", "-Wall", "-Wextra", "-Werror"],
            "maestro_processes.c",
        );
        assert!(out.contains("400000 bytes as produced"));
        assert!(out.contains("maestro_processes: ok"));
    }
}

#[test]
fn cpp_memory_pool_class_runs_on_mamba() {
    if have("g++") {
        let out = build_and_run(
            "g++",
            &["-std=c++17", "-Wall", "-Wextra", "-Werror"],
            "sirius_pool.cpp",
        );
        assert!(out.contains("round trip exact"));
        assert!(out.contains("double free refused"));
        assert!(out.contains("sirius_pool: ok"));
    }
}

#[test]
fn fortran_uses_mamba_through_iso_c_binding() {
    if have("gfortran") {
        let out = build_and_run("gfortran", &["-Wall", "-Werror"], "mamba_fortran.f90");
        assert!(out.contains("sum 5000050000.0"));
        assert!(out.contains("mamba_fortran: ok"));
    }
}
