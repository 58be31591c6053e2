//! RAII owners of libfabric objects: each closes its object on drop and keeps
//! the objects it depends on alive (an endpoint its queues and address
//! vector, everything its domain and fabric), so the close order is always
//! valid. All `unsafe` calls into libfabric live here.

use std::ffi::{c_void, CStr, CString};
use std::ptr;
use std::rc::Rc;

use crate::error::{FabricError, Result};
use crate::sys;

/// `fi_strerror` of a positive libfabric error number.
pub(crate) fn strerror(errno: i32) -> String {
    // SAFETY: fi_strerror returns a pointer to a static NUL-terminated string
    // for every value, known or not.
    unsafe { CStr::from_ptr(sys::fi_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// `Ok(rc)` for a non-negative return code, the typed error otherwise.
fn check(call: &'static str, rc: isize) -> Result<usize> {
    if rc < 0 {
        Err(FabricError::call(call, (-rc) as i32))
    } else {
        Ok(rc as usize)
    }
}

/// A C string that libfabric may free (`fi_freeinfo` frees the hints' strings).
fn malloc_str(s: &str) -> Result<*mut libc::c_char> {
    let c =
        CString::new(s).map_err(|_| FabricError::Config(format!("{s:?} contains a NUL byte")))?;
    // SAFETY: `c` is a valid NUL-terminated string; strdup copies it into
    // malloc'd memory that fi_freeinfo releases with free().
    let p = unsafe { libc::strdup(c.as_ptr()) };
    if p.is_null() {
        return Err(FabricError::call("strdup", libc::ENOMEM));
    }
    Ok(p)
}

/// What `fi_getinfo` is asked for.
#[derive(Debug, Clone)]
pub(crate) struct Hints {
    /// Provider name (`tcp;ofi_rxm`, `sockets`, `verbs;ofi_rxm`...), or any.
    pub provider: Option<String>,
    /// Local address to bind the endpoint to (passed with `FI_SOURCE`).
    pub node: Option<String>,
    /// `FI_*` capability bits.
    pub caps: u64,
}

/// The list returned by `fi_getinfo`; its first entry is the one used.
pub struct Info {
    ptr: *mut sys::fi_info,
}

impl Info {
    /// Calls `fi_getinfo` for reliable-datagram endpoints with `hints.caps`,
    /// accepting the memory-registration modes FI_MR_LOCAL, FI_MR_VIRT_ADDR,
    /// FI_MR_ALLOCATED and FI_MR_PROV_KEY and the FI_CONTEXT/FI_CONTEXT2
    /// operation modes (the provider reports which of them it needs).
    pub(crate) fn get(hints: &Hints) -> Result<Info> {
        // SAFETY: fi_allocinfo returns a zeroed fi_info with its attribute
        // structs allocated, or null.
        let h = unsafe { sys::mfi_allocinfo() };
        if h.is_null() {
            return Err(FabricError::call("fi_allocinfo", libc::ENOMEM));
        }
        let hints_owner = Info { ptr: h };
        let prov = match &hints.provider {
            Some(p) => Some(malloc_str(p)?),
            None => None,
        };
        // SAFETY: h and its attribute pointers were allocated by fi_allocinfo
        // and are exclusively ours; prov_name takes a malloc'd string that
        // fi_freeinfo frees.
        unsafe {
            (*h).caps = hints.caps;
            (*h).mode = sys::FI_CONTEXT | sys::FI_CONTEXT2;
            (*(*h).ep_attr).type_ = sys::fi_ep_type_FI_EP_RDM;
            (*(*h).domain_attr).mr_mode = (sys::FI_MR_LOCAL
                | sys::FI_MR_VIRT_ADDR
                | sys::FI_MR_ALLOCATED
                | sys::FI_MR_PROV_KEY) as i32;
            (*(*h).domain_attr).threading = sys::fi_threading_FI_THREAD_DOMAIN;
            if let Some(p) = prov {
                (*(*h).fabric_attr).prov_name = p;
            }
        }
        let node = match &hints.node {
            Some(n) => Some(
                CString::new(n.as_str())
                    .map_err(|_| FabricError::Config(format!("node {n:?} contains a NUL byte")))?,
            ),
            None => None,
        };
        let (node_ptr, flags) = match &node {
            Some(n) => (n.as_ptr(), sys::FI_SOURCE),
            None => (ptr::null(), 0),
        };
        let mut out = ptr::null_mut();
        // SAFETY: the hints are valid, node is null or a live C string, and
        // `out` receives a list that Info owns from here on.
        let rc = unsafe {
            sys::fi_getinfo(
                sys::mfi_version(),
                node_ptr,
                ptr::null(),
                flags,
                h,
                &mut out,
            )
        };
        drop(hints_owner);
        check("fi_getinfo", rc as isize)?;
        if out.is_null() {
            return Err(FabricError::call("fi_getinfo", sys::FI_ENODATA as i32));
        }
        Ok(Info { ptr: out })
    }

    fn first(&self) -> &sys::fi_info {
        // SAFETY: ptr is a non-null list head owned by self.
        unsafe { &*self.ptr }
    }

    /// Provider names of every entry, deduplicated, in libfabric's order.
    pub(crate) fn provider_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut p = self.ptr;
        while !p.is_null() {
            // SAFETY: p walks the list owned by self; each entry's
            // fabric_attr is valid and prov_name a C string or null.
            let name = unsafe { cstr((*(*p).fabric_attr).prov_name) };
            if !names.contains(&name) {
                names.push(name);
            }
            // SAFETY: as above.
            p = unsafe { (*p).next };
        }
        names
    }

    /// Provider name of the chosen entry.
    pub fn provider(&self) -> String {
        // SAFETY: fabric_attr of a returned entry is valid.
        unsafe { cstr((*self.first().fabric_attr).prov_name) }
    }

    /// Fabric name of the chosen entry (a subnet for tcp).
    pub fn fabric_name(&self) -> String {
        // SAFETY: as in provider().
        unsafe { cstr((*self.first().fabric_attr).name) }
    }

    /// Domain name of the chosen entry (a NIC or interface).
    pub fn domain_name(&self) -> String {
        // SAFETY: domain_attr of a returned entry is valid.
        unsafe { cstr((*self.first().domain_attr).name) }
    }

    /// The `FI_MR_*` bits the provider requires.
    pub fn mr_mode(&self) -> u64 {
        // SAFETY: as in domain_name().
        unsafe { (*self.first().domain_attr).mr_mode as u64 }
    }

    /// Capabilities of the chosen entry.
    pub fn caps(&self) -> u64 {
        self.first().caps
    }

    /// Largest message or RMA transfer one operation may carry.
    pub fn max_msg_size(&self) -> usize {
        // SAFETY: ep_attr of a returned entry is valid.
        unsafe { (*self.first().ep_attr).max_msg_size }
    }

    /// Depth of the transmit queue.
    pub fn tx_size(&self) -> usize {
        // SAFETY: tx_attr of a returned entry is valid.
        unsafe { (*self.first().tx_attr).size }
    }
}

impl Drop for Info {
    fn drop(&mut self) {
        // SAFETY: ptr came from fi_getinfo or fi_allocinfo and is freed once.
        unsafe { sys::fi_freeinfo(self.ptr) }
    }
}

/// Copies a C string, `""` for null.
///
/// # Safety
/// `p` is null or a valid NUL-terminated string.
unsafe fn cstr(p: *const libc::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Closes a libfabric object, logging (not panicking on) a failure.
///
/// # Safety
/// `fid` is a live object closed exactly once.
unsafe fn close(what: &str, fid: *mut sys::fid) {
    // SAFETY: guaranteed by the caller.
    let rc = unsafe { sys::mfi_close(fid) };
    if rc != 0 {
        tracing::warn!(object = what, error = %strerror(-rc), "fi_close failed");
    }
}

/// An opened fabric (`fi_fabric`).
pub struct Fabric {
    ptr: *mut sys::fid_fabric,
    info: Info,
}

impl Fabric {
    /// Opens the fabric of the first entry of `info`.
    pub fn open(info: Info) -> Result<Rc<Fabric>> {
        let mut ptr = ptr::null_mut();
        // SAFETY: fabric_attr of the chosen entry is valid; ptr receives the
        // new object.
        let rc = unsafe { sys::fi_fabric(info.first().fabric_attr, &mut ptr, ptr::null_mut()) };
        check("fi_fabric", rc as isize)?;
        Ok(Rc::new(Fabric { ptr, info }))
    }

    /// The entry the fabric was opened from.
    pub fn info(&self) -> &Info {
        &self.info
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // SAFETY: ptr is live and closed once, after every child (they hold Rc<Fabric>).
        unsafe { close("fabric", &mut (*self.ptr).fid) }
    }
}

/// A resource domain (`fi_domain`): one NIC or interface.
pub struct Domain {
    ptr: *mut sys::fid_domain,
    fabric: Rc<Fabric>,
}

impl Domain {
    /// Opens the domain of the fabric's entry.
    pub fn open(fabric: &Rc<Fabric>) -> Result<Rc<Domain>> {
        let mut ptr = ptr::null_mut();
        // SAFETY: fabric and its info are live; ptr receives the new object.
        let rc = unsafe { sys::mfi_domain(fabric.ptr, fabric.info.ptr, &mut ptr) };
        check("fi_domain", rc as isize)?;
        Ok(Rc::new(Domain {
            ptr,
            fabric: fabric.clone(),
        }))
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        // SAFETY: ptr is live and closed once, after every child.
        unsafe { close("domain", &mut (*self.ptr).fid) }
    }
}

/// One completion: the operation's context and, for receives, its length.
pub(crate) struct Completion {
    pub context: *mut c_void,
    pub len: usize,
}

/// A completion queue (`fi_cq_open`, message format, polled).
pub struct CompletionQueue {
    ptr: *mut sys::fid_cq,
    _domain: Rc<Domain>,
}

impl CompletionQueue {
    /// Opens a polled queue of `size` entries.
    pub fn open(domain: &Rc<Domain>, size: usize) -> Result<Rc<CompletionQueue>> {
        let mut attr = sys::fi_cq_attr {
            size,
            format: sys::fi_cq_format_FI_CQ_FORMAT_MSG,
            wait_obj: sys::fi_wait_obj_FI_WAIT_NONE,
            ..Default::default()
        };
        let mut ptr = ptr::null_mut();
        // SAFETY: domain is live, attr is valid for the call.
        let rc = unsafe { sys::mfi_cq_open(domain.ptr, &mut attr, &mut ptr) };
        check("fi_cq_open", rc as isize)?;
        Ok(Rc::new(CompletionQueue {
            ptr,
            _domain: domain.clone(),
        }))
    }

    /// Reads up to `out.capacity()` completions (which also drives the
    /// provider's progress). An error completion is returned as the typed
    /// error with the failed operation's context.
    pub(crate) fn read(
        &self,
        out: &mut Vec<Completion>,
    ) -> std::result::Result<(), (FabricError, *mut c_void)> {
        let mut entries = [sys::fi_cq_msg_entry::default(); 16];
        // SAFETY: entries has room for 16 entries of the queue's format.
        let n = unsafe { sys::mfi_cq_read(self.ptr, entries.as_mut_ptr().cast(), entries.len()) };
        if n >= 0 {
            out.extend(entries[..n as usize].iter().map(|e| Completion {
                context: e.op_context,
                len: e.len,
            }));
            return Ok(());
        }
        let errno = (-n) as i32;
        if errno == sys::FI_EAGAIN as i32 {
            return Ok(());
        }
        if errno != sys::FI_EAVAIL as i32 {
            return Err((FabricError::call("fi_cq_read", errno), ptr::null_mut()));
        }
        let mut err = sys::fi_cq_err_entry::default();
        // SAFETY: err is a valid error entry to fill.
        let rc = unsafe { sys::mfi_cq_readerr(self.ptr, &mut err, 0) };
        if rc < 0 {
            return Err((
                FabricError::call("fi_cq_readerr", (-rc) as i32),
                ptr::null_mut(),
            ));
        }
        let mut buf = [0 as libc::c_char; 256];
        // SAFETY: err came from this queue; buf is a writable buffer of the
        // given length; the result is a C string (possibly buf itself).
        let detail = unsafe {
            cstr(sys::mfi_cq_strerror(
                self.ptr,
                err.prov_errno,
                err.err_data,
                buf.as_mut_ptr(),
                buf.len(),
            ))
        };
        Err((
            FabricError::Completion {
                op: "",
                errno: err.err,
                text: strerror(err.err),
                detail,
            },
            err.op_context,
        ))
    }
}

impl Drop for CompletionQueue {
    fn drop(&mut self) {
        // SAFETY: ptr is live and closed once, after the endpoints bound to it.
        unsafe { close("completion queue", &mut (*self.ptr).fid) }
    }
}

/// An address vector (`fi_av_open`): peers' addresses as `fi_addr_t`.
pub struct AddressVector {
    ptr: *mut sys::fid_av,
    _domain: Rc<Domain>,
}

impl AddressVector {
    /// Opens an address vector of the provider's preferred type.
    pub fn open(domain: &Rc<Domain>) -> Result<Rc<AddressVector>> {
        let mut attr = sys::fi_av_attr {
            type_: sys::fi_av_type_FI_AV_UNSPEC,
            ..Default::default()
        };
        let mut ptr = ptr::null_mut();
        // SAFETY: domain is live, attr is valid for the call.
        let rc = unsafe { sys::mfi_av_open(domain.ptr, &mut attr, &mut ptr) };
        check("fi_av_open", rc as isize)?;
        Ok(Rc::new(AddressVector {
            ptr,
            _domain: domain.clone(),
        }))
    }

    /// Inserts one endpoint name (from [`Endpoint::name`]) and returns its
    /// address.
    pub fn insert(&self, name: &[u8]) -> Result<u64> {
        let mut addr: sys::fi_addr_t = 0;
        // SAFETY: name is a readable buffer holding one address of the
        // provider's format (a wrong one is rejected by the provider).
        let rc = unsafe { sys::mfi_av_insert(self.ptr, name.as_ptr().cast(), 1, &mut addr, 0) };
        let n = check("fi_av_insert", rc as isize)?;
        if n != 1 {
            return Err(FabricError::call("fi_av_insert", libc::EINVAL));
        }
        Ok(addr)
    }
}

impl Drop for AddressVector {
    fn drop(&mut self) {
        // SAFETY: ptr is live and closed once, after the endpoints bound to it.
        unsafe { close("address vector", &mut (*self.ptr).fid) }
    }
}

/// A reliable-datagram endpoint bound to a transmit queue, a receive queue
/// and an address vector.
pub struct Endpoint {
    ptr: *mut sys::fid_ep,
    _tx: Rc<CompletionQueue>,
    _rx: Rc<CompletionQueue>,
    _av: Rc<AddressVector>,
    _domain: Rc<Domain>,
}

impl Endpoint {
    /// Opens, binds and enables an endpoint of the domain's entry.
    pub fn open(
        domain: &Rc<Domain>,
        tx: &Rc<CompletionQueue>,
        rx: &Rc<CompletionQueue>,
        av: &Rc<AddressVector>,
    ) -> Result<Endpoint> {
        let mut ptr = ptr::null_mut();
        // SAFETY: domain and the fabric's info are live.
        let rc = unsafe { sys::mfi_endpoint(domain.ptr, domain.fabric.info.ptr, &mut ptr) };
        check("fi_endpoint", rc as isize)?;
        let ep = Endpoint {
            ptr,
            _tx: tx.clone(),
            _rx: rx.clone(),
            _av: av.clone(),
            _domain: domain.clone(),
        };
        // SAFETY: (three binds and enable) every object is live and belongs
        // to the same domain; on error `ep` is dropped and closed.
        let rc = unsafe { sys::mfi_ep_bind(ep.ptr, &mut (*tx.ptr).fid, sys::FI_TRANSMIT as u64) };
        check("fi_ep_bind", rc as isize)?;
        // SAFETY: as above.
        let rc = unsafe { sys::mfi_ep_bind(ep.ptr, &mut (*rx.ptr).fid, sys::FI_RECV as u64) };
        check("fi_ep_bind", rc as isize)?;
        // SAFETY: as above.
        let rc = unsafe { sys::mfi_ep_bind(ep.ptr, &mut (*av.ptr).fid, 0) };
        check("fi_ep_bind", rc as isize)?;
        // SAFETY: as above.
        let rc = unsafe { sys::mfi_enable(ep.ptr) };
        check("fi_enable", rc as isize)?;
        Ok(ep)
    }

    /// The endpoint's address in the provider's format, for peers'
    /// [`AddressVector::insert`].
    pub fn name(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        let mut len = buf.len();
        // SAFETY: buf is writable for len bytes; len receives the size.
        let rc = unsafe { sys::mfi_getname(self.ptr, buf.as_mut_ptr().cast(), &mut len) };
        check("fi_getname", rc as isize)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Posts an RMA read of `len` bytes from the peer's `addr`/`key` into
    /// `buf`. Returns `Ok(false)` when the queue is full (retry after
    /// progress).
    ///
    /// # Safety
    /// `buf` stays valid and untouched for `len` bytes, and `context` valid,
    /// until the operation's completion is read or the endpoint is closed.
    #[allow(clippy::too_many_arguments)] // fi_read's own parameters
    pub(crate) unsafe fn read(
        &self,
        buf: *mut u8,
        len: usize,
        desc: *mut c_void,
        peer: u64,
        addr: u64,
        key: u64,
        context: *mut c_void,
    ) -> Result<bool> {
        // SAFETY: guaranteed by the caller.
        let rc =
            unsafe { sys::mfi_read(self.ptr, buf.cast(), len, desc, peer, addr, key, context) };
        posted("fi_read", rc)
    }

    /// Posts a tagged send of `len` bytes. `Ok(false)`: queue full.
    ///
    /// # Safety
    /// `buf` stays valid for `len` bytes, and `context` valid, until the
    /// completion is read or the endpoint is closed.
    pub(crate) unsafe fn tsend(
        &self,
        buf: *const u8,
        len: usize,
        desc: *mut c_void,
        peer: u64,
        tag: u64,
        context: *mut c_void,
    ) -> Result<bool> {
        // SAFETY: guaranteed by the caller.
        let rc = unsafe { sys::mfi_tsend(self.ptr, buf.cast(), len, desc, peer, tag, context) };
        posted("fi_tsend", rc)
    }

    /// Posts a tagged receive of up to `len` bytes from any peer.
    /// `Ok(false)`: queue full.
    ///
    /// # Safety
    /// As for [`Endpoint::read`].
    pub(crate) unsafe fn trecv(
        &self,
        buf: *mut u8,
        len: usize,
        desc: *mut c_void,
        tag: u64,
        ignore: u64,
        context: *mut c_void,
    ) -> Result<bool> {
        // SAFETY: guaranteed by the caller.
        let rc = unsafe {
            sys::mfi_trecv(
                self.ptr,
                buf.cast(),
                len,
                desc,
                u64::MAX,
                tag,
                ignore,
                context,
            )
        };
        posted("fi_trecv", rc)
    }
}

/// `Ok(true)` posted, `Ok(false)` queue full (-FI_EAGAIN), the error otherwise.
fn posted(call: &'static str, rc: isize) -> Result<bool> {
    if rc == -(sys::FI_EAGAIN as isize) {
        return Ok(false);
    }
    check(call, rc).map(|_| true)
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // SAFETY: ptr is live and closed once; its queues and address vector
        // outlive it (held by Rc).
        unsafe { close("endpoint", &mut (*self.ptr).fid) }
    }
}

/// A memory registration (`fi_mr_reg`).
pub struct MemoryRegion {
    ptr: *mut sys::fid_mr,
    _domain: Rc<Domain>,
}

impl MemoryRegion {
    /// Registers `len` bytes at `buf` with `FI_*` access bits. A
    /// `requested_key` is used only by providers without FI_MR_PROV_KEY.
    ///
    /// # Safety
    /// The memory stays mapped while the registration lives.
    pub(crate) unsafe fn register(
        domain: &Rc<Domain>,
        buf: *const u8,
        len: usize,
        access: u64,
        requested_key: u64,
    ) -> Result<MemoryRegion> {
        let mut ptr = ptr::null_mut();
        // SAFETY: guaranteed by the caller; domain is live.
        let rc = unsafe {
            sys::mfi_mr_reg(
                domain.ptr,
                buf.cast(),
                len,
                access,
                requested_key,
                0,
                &mut ptr,
            )
        };
        check("fi_mr_reg", rc as isize)?;
        Ok(MemoryRegion {
            ptr,
            _domain: domain.clone(),
        })
    }

    /// The key a peer passes to read this region.
    pub fn key(&self) -> u64 {
        // SAFETY: ptr is a live registration.
        unsafe { sys::mfi_mr_key(self.ptr) }
    }

    /// The local descriptor passed with operations on this memory.
    pub(crate) fn desc(&self) -> *mut c_void {
        // SAFETY: ptr is a live registration.
        unsafe { sys::mfi_mr_desc(self.ptr) }
    }
}

impl Drop for MemoryRegion {
    fn drop(&mut self) {
        // SAFETY: ptr is live and closed once, before its domain.
        unsafe { close("memory region", &mut (*self.ptr).fid) }
    }
}
