//! Generates the libfabric bindings with bindgen against the system headers
//! (Debian's libfabric-dev) and compiles the C shim that gives the headers'
//! static-inline calls a linkable symbol. Nothing is downloaded.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    let lib = pkg_config::Config::new()
        .atleast_version("1.17")
        .probe("libfabric")
        .unwrap_or_else(|e| {
            panic!("libfabric >= 1.17 not found through pkg-config ({e}); install libfabric-dev (scripts/setup.sh)")
        });

    let mut shim = cc::Build::new();
    shim.file("csrc/shim.c").warnings(true);
    for dir in &lib.include_paths {
        shim.include(dir);
    }
    shim.compile("mamba_fabric_shim");

    let mut builder = bindgen::Builder::default()
        .header("csrc/shim.h")
        .allowlist_function("mfi_.*|fi_getinfo|fi_freeinfo|fi_fabric|fi_strerror|fi_dupinfo")
        .allowlist_type("fi_.*|fid_.*")
        .allowlist_var("FI_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .layout_tests(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for dir in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen could not generate the libfabric bindings (libclang-dev installed?)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing the generated bindings");
}
