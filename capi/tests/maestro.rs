//! maestro.h called as C would call it, in both deployments: the same
//! producer/consumer scenario on the in-process pool and, after
//! `mstro_pm_start`, on a pool manager (each thread a client of its own).
//! One test, because the component state is per process.

use mamba_capi::cdo::{cdo_deployment, cdo_deployment_get, cdo_name_valid, cdo_open_handles};
use mamba_capi::maestro::*;
use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::Duration;

const RAW_PTR: &CStr = c".maestro.core.cdo.raw-ptr";
const SIZE: &CStr = c".maestro.core.cdo.scope.local-size";

fn ok(s: mstro_status) {
    assert_eq!(s, mstro_status::MSTRO_OK);
}

fn declare(name: &str) -> mstro_cdo {
    let name = CString::new(name).unwrap();
    let mut cdo = null_mut();
    // SAFETY: a valid name and a writable handle.
    ok(unsafe { mstro_cdo_declare(name.as_ptr(), null_mut(), &mut cdo) });
    cdo
}

/// A producer thread offers `name` from its own buffer; a consumer thread
/// requires it, waits a little, and demands: the producer's withdraw must
/// not return before the consumer started its demand.
fn hand_over(name: &str) {
    let started_demand = AtomicBool::new(false);
    let required = Barrier::new(2);
    let payload: Vec<u64> = (0..10_000).map(|i| i * i).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let cdo = declare(name);
            let mut size = (payload.len() * 8) as i64;
            // SAFETY: the buffer outlives the offer (withdrawn below); the
            // size is read at once (copy_value).
            unsafe {
                ok(mstro_cdo_attribute_set(
                    cdo,
                    RAW_PTR.as_ptr(),
                    payload.as_ptr() as *mut c_void,
                    false,
                    true,
                ));
                ok(mstro_cdo_attribute_set(
                    cdo,
                    SIZE.as_ptr(),
                    (&mut size as *mut i64).cast(),
                    true,
                    false,
                ));
                ok(mstro_cdo_seal(cdo));
                ok(mstro_cdo_offer(cdo));
            }
            required.wait();
            ok(mstro_cdo_withdraw(cdo));
            assert!(
                started_demand.load(Ordering::SeqCst),
                "withdraw returned before the required consumer demanded"
            );
            ok(mstro_cdo_dispose(cdo));
        });
        s.spawn(|| {
            let cdo = declare(name);
            ok(mstro_cdo_require(cdo));
            required.wait();
            std::thread::sleep(Duration::from_millis(100));
            started_demand.store(true, Ordering::SeqCst);
            ok(mstro_cdo_demand(cdo));
            let (mut data, mut len) = (null_mut(), 0i64);
            // SAFETY: writable out-parameters.
            ok(unsafe { mstro_cdo_access_ptr(cdo, &mut data, &mut len) });
            assert_eq!(len as usize, payload.len() * 8);
            // SAFETY: the consumer's view holds `len` bytes until dispose.
            let got = unsafe { std::slice::from_raw_parts(data as *const u64, payload.len()) };
            assert_eq!(got, &payload[..]);
            ok(mstro_cdo_dispose(cdo));
        });
    });
}

/// Calls out of order, NULLs and unknown keys give codes and change nothing.
fn misuse() {
    let cdo = declare("test/misuse");
    let key = c".maestro.core.cdo.nonsense";
    let mut v = 1i64;
    // SAFETY: valid strings; a value pointer to an int64_t.
    unsafe {
        assert_eq!(
            mstro_cdo_attribute_set(cdo, key.as_ptr(), (&mut v as *mut i64).cast(), true, false),
            mstro_status::MSTRO_NOENT
        );
        assert_eq!(
            mstro_cdo_attribute_set(cdo, SIZE.as_ptr(), null_mut(), true, false),
            mstro_status::MSTRO_INVARG
        );
        assert_eq!(mstro_cdo_offer(cdo), mstro_status::MSTRO_INVSTATE);
        assert_eq!(
            mstro_cdo_access_ptr(cdo, null_mut(), null_mut()),
            mstro_status::MSTRO_INVARG
        );
        let mut size = -5i64;
        assert_eq!(
            mstro_cdo_attribute_set(
                cdo,
                SIZE.as_ptr(),
                (&mut size as *mut i64).cast(),
                true,
                false
            ),
            mstro_status::MSTRO_INVARG
        );
    }
    assert_eq!(mstro_cdo_withdraw(cdo), mstro_status::MSTRO_INVSTATE);
    assert_eq!(mstro_cdo_retract(cdo), mstro_status::MSTRO_INVSTATE);
    ok(mstro_cdo_dispose(cdo));
    assert_eq!(mstro_cdo_dispose(cdo), mstro_status::MSTRO_INVARG);
    assert_eq!(mstro_cdo_require(null_mut()), mstro_status::MSTRO_INVARG);
    let mut out = null_mut();
    // SAFETY: NULL name, writable handle.
    let no_name = unsafe { mstro_cdo_declare(null(), null_mut(), &mut out) };
    assert_eq!(no_name, mstro_status::MSTRO_INVARG);
}

#[test]
fn both_deployments_hand_over_and_refuse_misuse_alike() {
    std::env::remove_var("MSTRO_POOL_MANAGER_INFO");
    assert_eq!(mstro_finalize(), mstro_status::MSTRO_INVSTATE);
    assert_eq!(cdo_deployment_get(), cdo_deployment::CDO_NOT_INITIALIZED);
    let (w, c) = (c"test", c"capi");
    // SAFETY: valid strings.
    ok(unsafe { mstro_init(w.as_ptr(), c.as_ptr(), 0) });
    // SAFETY: valid strings.
    let twice = unsafe { mstro_init(w.as_ptr(), c.as_ptr(), 0) };
    assert_eq!(twice, mstro_status::MSTRO_INVSTATE);
    assert_eq!(cdo_deployment_get(), cdo_deployment::CDO_IN_PROCESS);
    hand_over("test/local/field");
    misuse();
    assert_eq!(cdo_open_handles(), 0);
    ok(mstro_finalize());

    // SAFETY: valid strings.
    ok(unsafe { mstro_init(w.as_ptr(), c.as_ptr(), 1) });
    ok(mstro_pm_start());
    assert_eq!(mstro_pm_start(), mstro_status::MSTRO_INVSTATE);
    assert_eq!(cdo_deployment_get(), cdo_deployment::CDO_POOL_MANAGER_HERE);
    let mut info = null_mut();
    // SAFETY: a writable pointer; the string is released with free.
    unsafe {
        ok(mstro_pm_getinfo(&mut info));
        assert!(CStr::from_ptr(info).to_str().unwrap().contains(':'));
        libc::free(info.cast());
    }
    hand_over("test/pm/field");
    misuse();
    // A handle left open is ended by finalize.
    let _left = declare("test/pm/left-open");
    assert_eq!(cdo_open_handles(), 1);
    ok(mstro_finalize());
    assert_eq!(cdo_open_handles(), 0);

    // SAFETY: valid and NULL strings.
    unsafe {
        assert!(cdo_name_valid(c"run/step1/rho".as_ptr()));
        assert!(!cdo_name_valid(c"/rho".as_ptr()));
        assert!(!cdo_name_valid(null()));
        assert!(
            !CStr::from_ptr(mstro_status_description(mstro_status::MSTRO_NOENT as i32))
                .to_bytes()
                .is_empty()
        );
        // C lets any int through the enum: a value outside it is described,
        // not undefined behaviour.
        for outside in [-1, 8, 42, i32::MAX] {
            assert_eq!(
                CStr::from_ptr(mstro_status_description(outside)).to_bytes(),
                b"unknown status"
            );
        }
    }
}
