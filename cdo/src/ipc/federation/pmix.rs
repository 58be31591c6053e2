//! A PMIx client, loaded at run time: the key-value store of the PMIx
//! server that a launcher (Open MPI's `mpirun`, `prterun`, Slurm's
//! `srun --mpi=pmix`) runs on every node. Each process puts a value under
//! a key, commits, fences with the job's other processes, then gets the
//! others' values.
//!
//! The library is opened with `dlopen` (`libpmix.so.2`, the run-time
//! package of PMIx 4), so nothing is needed at build time and a build
//! without PMIx runs everywhere; [`Pmix::init`] says why when the library
//! or the launcher's server is missing. Only the few calls and the
//! structures of the PMIx 4 ABI used here are declared.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::OnceLock;
use std::time::Duration;

use libloading::{Library, Symbol};

/// The library names tried, in order.
const LIBRARIES: [&str; 2] = ["libpmix.so.2", "libpmix.so"];

/// `PMIX_MAX_NSLEN + 1`.
const NSPACE_LEN: usize = 256;
/// `PMIX_MAX_KEYLEN + 1`.
const KEY_LEN: usize = 512;
/// `PMIX_SUCCESS`.
const SUCCESS: i32 = 0;
/// `PMIX_ERR_TIMEOUT`.
const ERR_TIMEOUT: i32 = -24;
/// `PMIX_GLOBAL`: a value every process of the job may get.
const SCOPE_GLOBAL: u8 = 3;
/// `PMIX_BOOL`.
const TYPE_BOOL: u16 = 1;
/// `PMIX_STRING`.
const TYPE_STRING: u16 = 3;
/// `PMIX_INT`.
const TYPE_INT: u16 = 6;
/// `PMIX_UINT32`.
const TYPE_UINT32: u16 = 14;
/// `PMIX_RANK_WILDCARD`: the job itself rather than one of its ranks.
const RANK_WILDCARD: u32 = u32::MAX - 1;
/// `PMIX_JOB_SIZE`.
const JOB_SIZE: &str = "pmix.job.size";
/// `PMIX_COLLECT_DATA`: the fence brings every process's values along.
const COLLECT_DATA: &str = "pmix.collect";
/// `PMIX_TIMEOUT`: seconds a call may wait.
const TIMEOUT: &str = "pmix.timeout";

/// `pmix_proc_t`.
#[repr(C)]
struct Proc {
    nspace: [c_char; NSPACE_LEN],
    rank: u32,
}

/// `pmix_value_t`: a type tag and a 24-byte union (of which a string
/// pointer, a bool and a `u32` are used here).
#[repr(C)]
struct Value {
    kind: u16,
    data: [u64; 3],
}

/// `pmix_info_t`.
#[repr(C)]
struct Info {
    key: [c_char; KEY_LEN],
    flags: u32,
    value: Value,
}

impl Info {
    /// `key` (shorter than [`KEY_LEN`]) set to a value of type `kind`
    /// whose union's first word is `first`.
    fn new(key: &str, kind: u16, first: u64) -> Info {
        let mut info = Info {
            key: [0; KEY_LEN],
            flags: 0,
            value: Value {
                kind,
                data: [first, 0, 0],
            },
        };
        for (dst, &src) in info
            .key
            .iter_mut()
            .zip(key.as_bytes().iter().take(KEY_LEN - 1))
        {
            *dst = src as c_char;
        }
        info
    }
}

/// A union's first word holding `bytes` at its start, as C lays out a
/// member smaller than the word.
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..bytes.len()].copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

type InitFn = unsafe extern "C" fn(*mut Proc, *mut Info, usize) -> i32;
type FinalizeFn = unsafe extern "C" fn(*const Info, usize) -> i32;
type PutFn = unsafe extern "C" fn(u8, *const c_char, *mut Value) -> i32;
type CommitFn = unsafe extern "C" fn() -> i32;
type FenceFn = unsafe extern "C" fn(*const Proc, usize, *const Info, usize) -> i32;
type GetFn =
    unsafe extern "C" fn(*const Proc, *const c_char, *const Info, usize, *mut *mut Value) -> i32;
type ValueDestructFn = unsafe extern "C" fn(*mut Value);

/// Why a PMIx call failed.
#[derive(Debug, thiserror::Error)]
pub enum PmixError {
    /// No PMIx library could be opened, or it lacks a call.
    #[error("PMIx library unavailable: {0}")]
    Library(String),
    /// A PMIx call returned an error status.
    #[error("{call} failed with PMIx status {status}")]
    Call {
        /// The call.
        call: &'static str,
        /// Its status (a negative `pmix_status_t`).
        status: i32,
    },
    /// A fence ended before every process of the job had joined it.
    #[error("not every process of the job reached the PMIx fence within {0:?}")]
    FenceTimeout(Duration),
    /// A key or value holds a NUL byte, or is too long.
    #[error("PMIx key or value {0:?} is malformed (NUL byte or key too long)")]
    Malformed(String),
    /// A value came back with another type than expected.
    #[error("PMIx key {key:?} holds type {kind}, expected {expected}")]
    Type {
        /// The key.
        key: String,
        /// The type found.
        kind: u16,
        /// The type expected.
        expected: u16,
    },
}

/// An initialised PMIx client; finalised when dropped.
pub struct Pmix {
    me: Proc,
    lib: &'static Library,
}

impl std::fmt::Debug for Pmix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pmix").field("rank", &self.me.rank).finish()
    }
}

impl Pmix {
    /// Opens the library and connects to the launcher's PMIx server.
    ///
    /// # Errors
    /// [`PmixError::Library`] when no PMIx library is installed;
    /// [`PmixError::Call`] when no server answers (not started by a PMIx
    /// launcher).
    pub fn init() -> Result<Pmix, PmixError> {
        let lib = library()?;
        let mut me = Proc {
            nspace: [0; NSPACE_LEN],
            rank: 0,
        };
        // SAFETY: `PMIx_Init` has this signature in the PMIx 4 ABI; it
        // fills `me`, which is a valid `pmix_proc_t`, and takes no info.
        let status = unsafe { symbol::<InitFn>(lib, "PMIx_Init")?(&mut me, ptr::null_mut(), 0) };
        check("PMIx_Init", status)?;
        Ok(Pmix { me, lib })
    }

    /// This process's rank in its job.
    pub fn rank(&self) -> u32 {
        self.me.rank
    }

    /// The number of processes in the job (`PMIX_JOB_SIZE`).
    ///
    /// # Errors
    /// The server does not know it.
    pub fn job_size(&self) -> Result<u32, PmixError> {
        let job = self.proc(RANK_WILDCARD);
        self.get_with(&job, JOB_SIZE, TYPE_UINT32, |v| {
            let b = v.data[0].to_ne_bytes();
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        })
    }

    /// Puts `value` under `key` for every process of the job to get, and
    /// commits it (visible to the others after the next [`Pmix::fence`]).
    ///
    /// # Errors
    /// A malformed key or value, or a failed call.
    pub fn put(&self, key: &str, value: &str) -> Result<(), PmixError> {
        let k = cstring(key)?;
        let v = cstring(value)?;
        let mut val = Value {
            kind: TYPE_STRING,
            data: [v.as_ptr() as u64, 0, 0],
        };
        // SAFETY: the PMIx 4 signatures; `k` and `v` outlive the call,
        // which copies the value.
        let status =
            unsafe { symbol::<PutFn>(self.lib, "PMIx_Put")?(SCOPE_GLOBAL, k.as_ptr(), &mut val) };
        check("PMIx_Put", status)?;
        // SAFETY: as above, no arguments.
        check("PMIx_Commit", unsafe {
            symbol::<CommitFn>(self.lib, "PMIx_Commit")?()
        })
    }

    /// Waits until every process of the job has reached its fence, with
    /// their committed values collected, at most `timeout` (rounded up to
    /// whole seconds).
    ///
    /// # Errors
    /// A failed fence (a process of the job ended, or the launcher failed),
    /// or [`PmixError::FenceTimeout`] (a process of the job never took
    /// part).
    pub fn fence(&self, timeout: Duration) -> Result<(), PmixError> {
        let secs = i32::try_from(timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0))
            .unwrap_or(i32::MAX);
        let info = [
            Info::new(COLLECT_DATA, TYPE_BOOL, word(&[1])),
            Info::new(TIMEOUT, TYPE_INT, word(&secs.to_ne_bytes())),
        ];
        // SAFETY: the PMIx 4 signature; no processes means the whole job,
        // `info` is an array of valid `pmix_info_t`, alive for the call.
        let status = unsafe {
            symbol::<FenceFn>(self.lib, "PMIx_Fence")?(ptr::null(), 0, info.as_ptr(), info.len())
        };
        if status == ERR_TIMEOUT {
            return Err(PmixError::FenceTimeout(timeout));
        }
        check("PMIx_Fence", status)
    }

    /// The string that rank `rank` of this job put under `key`.
    ///
    /// # Errors
    /// No such key, or not a string.
    pub fn get(&self, rank: u32, key: &str) -> Result<String, PmixError> {
        let proc = self.proc(rank);
        self.get_with(&proc, key, TYPE_STRING, |v| {
            let s = v.data[0] as *const c_char;
            if s.is_null() {
                String::new()
            } else {
                // SAFETY: a PMIX_STRING value holds a NUL-terminated
                // string, alive until the value is destructed after this.
                unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
            }
        })
    }

    /// Gets `key` of `proc`, checks its type and reads it with `read`.
    fn get_with<T>(
        &self,
        proc: &Proc,
        key: &str,
        expected: u16,
        read: impl FnOnce(&Value) -> T,
    ) -> Result<T, PmixError> {
        let k = cstring(key)?;
        let mut out: *mut Value = ptr::null_mut();
        // SAFETY: the PMIx 4 signature; on success `out` points to a value
        // the library allocated with malloc.
        let status = unsafe {
            symbol::<GetFn>(self.lib, "PMIx_Get")?(proc, k.as_ptr(), ptr::null(), 0, &mut out)
        };
        check("PMIx_Get", status)?;
        if out.is_null() {
            return Err(PmixError::Call {
                call: "PMIx_Get",
                status,
            });
        }
        // SAFETY: `out` is the valid value PMIx_Get returned.
        let value = unsafe { &*out };
        let result = if value.kind == expected {
            Ok(read(value))
        } else {
            Err(PmixError::Type {
                key: key.into(),
                kind: value.kind,
                expected,
            })
        };
        // SAFETY: the value is ours to free: its contents with
        // PMIx_Value_destruct, then the struct itself (malloc'd).
        unsafe {
            if let Ok(destruct) = symbol::<ValueDestructFn>(self.lib, "PMIx_Value_destruct") {
                destruct(out);
            }
            libc::free(out as *mut c_void);
        }
        result
    }

    /// `rank` of this process's namespace.
    fn proc(&self, rank: u32) -> Proc {
        Proc {
            nspace: self.me.nspace,
            rank,
        }
    }
}

impl Drop for Pmix {
    fn drop(&mut self) {
        // SAFETY: the PMIx 4 signature, no info; the client was
        // initialised by `init`.
        if let Ok(finalize) = unsafe { symbol::<FinalizeFn>(self.lib, "PMIx_Finalize") } {
            // SAFETY: as above.
            let _ = unsafe { finalize(ptr::null(), 0) };
        }
    }
}

/// The PMIx library, opened once and never closed (its threads may
/// outlive a client).
fn library() -> Result<&'static Library, PmixError> {
    static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(open)
        .as_ref()
        .map_err(|why| PmixError::Library(why.clone()))
}

/// The first PMIx library that opens.
fn open() -> Result<Library, String> {
    let mut why = Vec::new();
    for name in LIBRARIES {
        // SAFETY: loading libpmix runs its initialisers, which only set up
        // the library's own state.
        match unsafe { Library::new(name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(why.join("; "))
}

/// The call `name` of `lib`, with the type `F` the caller declares.
///
/// # Safety
/// `F` must be the function's true signature.
unsafe fn symbol<'l, F>(lib: &'l Library, name: &str) -> Result<Symbol<'l, F>, PmixError> {
    // SAFETY: the caller gives the signature.
    unsafe { lib.get(name.as_bytes()) }.map_err(|e| PmixError::Library(format!("{name}: {e}")))
}

fn check(call: &'static str, status: i32) -> Result<(), PmixError> {
    if status == SUCCESS {
        Ok(())
    } else {
        Err(PmixError::Call { call, status })
    }
}

fn cstring(s: &str) -> Result<CString, PmixError> {
    if s.len() >= KEY_LEN {
        return Err(PmixError::Malformed(s.into()));
    }
    CString::new(s).map_err(|_| PmixError::Malformed(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_structures_have_the_pmix4_layout() {
        assert_eq!(std::mem::size_of::<Value>(), 32);
        assert_eq!(std::mem::size_of::<Proc>(), 260);
        assert_eq!(std::mem::size_of::<Info>(), 552);
        assert_eq!(std::mem::offset_of!(Info, value), 520);
    }

    #[test]
    fn infos_hold_their_key_and_a_small_value_at_the_union_start() {
        let info = Info::new(TIMEOUT, TYPE_INT, word(&7i32.to_ne_bytes()));
        let key: Vec<u8> = info
            .key
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        assert_eq!(key, TIMEOUT.as_bytes());
        let first = info.value.data[0].to_ne_bytes();
        assert_eq!(
            i32::from_ne_bytes([first[0], first[1], first[2], first[3]]),
            7
        );
        assert_eq!(&first[4..], [0; 4]);
        let long = Info::new(&"k".repeat(2 * KEY_LEN), TYPE_BOOL, word(&[1]));
        assert_eq!(long.key[KEY_LEN - 1], 0, "the key stays NUL-terminated");
        assert_eq!(word(&[1]).to_ne_bytes()[0], 1);
    }

    #[test]
    fn without_a_launcher_init_is_an_error() {
        if std::env::vars().any(|(k, _)| k.starts_with("PMIX_")) {
            eprintln!("skipped: started by a PMIx launcher");
            return;
        }
        // No library, or no server to connect to: an error either way.
        let err = Pmix::init().unwrap_err();
        assert!(
            matches!(
                err,
                PmixError::Library(_)
                    | PmixError::Call {
                        call: "PMIx_Init",
                        ..
                    }
            ),
            "{err}"
        );
    }

    #[test]
    fn keys_with_nul_bytes_are_refused() {
        assert!(matches!(cstring("a\0b"), Err(PmixError::Malformed(_))));
        assert!(matches!(
            cstring(&"k".repeat(KEY_LEN)),
            Err(PmixError::Malformed(_))
        ));
    }
}
