//! Helpers of the GPU data plane tests (real devices and the test double).

use mamba::copy::copy_array;
use mamba::provider::cuda_devices;
use mamba::Array;
use mamba_transforms::{CopyPlan, Layout};

/// Whether the CUDA driver reports a device; when not, prints why the
/// calling test is skipped.
pub fn cuda_device_found() -> bool {
    match cuda_devices() {
        Ok(d) if !d.is_empty() => true,
        Ok(_) => {
            eprintln!("skipped: the CUDA driver reports no device");
            false
        }
        Err(e) => {
            eprintln!("skipped: no CUDA GPU on this machine ({e})");
            false
        }
    }
}

/// What the CPU copy engine makes of `src` in `dst_layout`, from a
/// destination holding `dst_init`.
pub fn cpu_copy(src: &[u8], src_layout: &Layout, dst_layout: &Layout, dst_init: &[u8]) -> Vec<u8> {
    let mut out = dst_init.to_vec();
    CopyPlan::new(src_layout, dst_layout)
        .unwrap()
        .execute(src, &mut out)
        .unwrap();
    out
}

/// The bytes of a device array, read back through the copy engine.
pub fn device_bytes(a: &Array<'_>) -> Vec<u8> {
    let mut out = vec![0u8; a.layout().required_len()];
    let mut host = Array::wrap(&mut out, a.layout().clone()).unwrap();
    copy_array(a, &mut host).unwrap();
    drop(host);
    out
}
