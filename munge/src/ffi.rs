//! The crate's only `unsafe`: the libmunge declarations and [`RawCtx`], the safe owner of one
//! `munge_ctx_t` that `lib.rs` builds on.
//!
//! The declarations are hand-written for the handful of libmunge symbols we use, transcribed
//! from `/usr/include/munge.h` (MUNGE 0.5.x). The API has been stable for two decades, so a few
//! lines here beat a bindgen dependency.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{CStr, CString};
use std::marker::{PhantomData, PhantomPinned};
use std::ptr::{self, NonNull};

use libc::{c_char, c_int, c_void, gid_t, uid_t};

use crate::{Decoded, Error, ErrorKind, MAX_PAYLOAD_LEN};

/// `struct munge_ctx`: opaque, only ever handled through a pointer.
#[repr(C)]
pub struct munge_ctx {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `munge_ctx_t` is `struct munge_ctx *`.
pub type munge_ctx_t = *mut munge_ctx;

/// `munge_err_t` is a C enum; on every ABI we target that is an `int`.
pub type munge_err_t = c_int;

/// `munge_opt_t` value for the daemon socket path (argument: `const char *`).
pub const MUNGE_OPT_SOCKET: c_int = 8;

/// `munge_opt_t` value for the IPv4 address of the host that encoded a decoded credential
/// (argument of `munge_ctx_get`: `struct in_addr *`).
pub const MUNGE_OPT_ADDR4: c_int = 5;

// `munge_err_t` values (munge.h, "MUNGE error codes").
pub const EMUNGE_SUCCESS: munge_err_t = 0;
pub const EMUNGE_SNAFU: munge_err_t = 1;
pub const EMUNGE_BAD_ARG: munge_err_t = 2;
pub const EMUNGE_BAD_LENGTH: munge_err_t = 3;
pub const EMUNGE_OVERFLOW: munge_err_t = 4;
pub const EMUNGE_NO_MEMORY: munge_err_t = 5;
pub const EMUNGE_SOCKET: munge_err_t = 6;
pub const EMUNGE_TIMEOUT: munge_err_t = 7;
pub const EMUNGE_BAD_CRED: munge_err_t = 8;
pub const EMUNGE_BAD_VERSION: munge_err_t = 9;
pub const EMUNGE_BAD_CIPHER: munge_err_t = 10;
pub const EMUNGE_BAD_MAC: munge_err_t = 11;
pub const EMUNGE_BAD_ZIP: munge_err_t = 12;
pub const EMUNGE_BAD_REALM: munge_err_t = 13;
pub const EMUNGE_CRED_INVALID: munge_err_t = 14;
pub const EMUNGE_CRED_EXPIRED: munge_err_t = 15;
pub const EMUNGE_CRED_REWOUND: munge_err_t = 16;
pub const EMUNGE_CRED_REPLAYED: munge_err_t = 17;
pub const EMUNGE_CRED_UNAUTHORIZED: munge_err_t = 18;

extern "C" {
    /// On success `*cred` is a malloc'd NUL-terminated string the caller frees.
    pub fn munge_encode(cred: *mut *mut c_char, ctx: munge_ctx_t, buf: *const c_void, len: c_int) -> munge_err_t;

    /// `*buf` (malloc'd, may be set even on some errors) is freed by the caller.
    pub fn munge_decode(
        cred: *const c_char,
        ctx: munge_ctx_t,
        buf: *mut *mut c_void,
        len: *mut c_int,
        uid: *mut uid_t,
        gid: *mut gid_t,
    ) -> munge_err_t;

    /// Static string; never freed.
    pub fn munge_strerror(e: munge_err_t) -> *const c_char;

    /// NULL on allocation failure.
    pub fn munge_ctx_create() -> munge_ctx_t;

    pub fn munge_ctx_destroy(ctx: munge_ctx_t);

    /// Detailed message for the last error on `ctx`, or NULL; owned by `ctx`.
    pub fn munge_ctx_strerror(ctx: munge_ctx_t) -> *const c_char;

    /// Variadic: the argument is a pointer to the type `opt` names (see `munge_opt_t`).
    pub fn munge_ctx_get(ctx: munge_ctx_t, opt: c_int, ...) -> munge_err_t;

    /// Variadic: the argument type depends on `opt` (see `munge_opt_t`).
    pub fn munge_ctx_set(ctx: munge_ctx_t, opt: c_int, ...) -> munge_err_t;
}

/// Build from a failed call on `ctx`: prefer the context's detailed
/// message (e.g. which socket path failed), else the generic one.
pub(crate) fn ctx_error(code: c_int, ctx: &RawCtx) -> Error {
    // SAFETY: `ctx` is a live context; the returned string (if any) is
    // owned by it and copied out before the context is used again.
    let detail = unsafe { munge_ctx_strerror(ctx.as_ptr()) };
    let message = if detail.is_null() {
        strerror(code)
    } else {
        // SAFETY: non-NULL, NUL-terminated, valid until `ctx` changes.
        unsafe { CStr::from_ptr(detail) }.to_string_lossy().into_owned()
    };
    Error::new(ErrorKind::from_raw(code), message)
}

pub(crate) fn strerror(code: c_int) -> String {
    // SAFETY: munge_strerror accepts any value and returns a static string.
    let s = unsafe { munge_strerror(code) };
    if s.is_null() {
        format!("munge error {code}")
    } else {
        // SAFETY: static NUL-terminated string.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }
}

/// Owns one `munge_ctx_t`; destroys it on drop.
pub(crate) struct RawCtx(NonNull<munge_ctx>);

impl RawCtx {
    pub(crate) fn new(socket: Option<&CStr>) -> Result<Self, Error> {
        // SAFETY: no preconditions; NULL means out of memory.
        let ptr = unsafe { munge_ctx_create() };
        let ctx = NonNull::new(ptr)
            .map(RawCtx)
            .ok_or_else(|| Error::new(ErrorKind::NoMemory, "munge_ctx_create: out of memory"))?;
        if let Some(path) = socket {
            // SAFETY: live context; MUNGE_OPT_SOCKET takes a `const char *`,
            // which libmunge copies.
            let rc = unsafe { munge_ctx_set(ctx.as_ptr(), MUNGE_OPT_SOCKET, path.as_ptr()) };
            if rc != EMUNGE_SUCCESS {
                return Err(ctx_error(rc, &ctx));
            }
        }
        Ok(ctx)
    }

    fn as_ptr(&self) -> munge_ctx_t {
        self.0.as_ptr()
    }

    pub(crate) fn encode(&self, payload: &[u8]) -> Result<String, Error> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::new(
                ErrorKind::BadLength,
                format!(
                    "payload of {} bytes exceeds the {MAX_PAYLOAD_LEN}-byte limit \
                     (munged cannot decode larger credentials)",
                    payload.len()
                ),
            ));
        }
        let (buf, len) = if payload.is_empty() {
            (ptr::null(), 0)
        } else {
            // Fits: MAX_PAYLOAD_LEN < c_int::MAX.
            (payload.as_ptr().cast::<c_void>(), payload.len() as c_int)
        };
        let mut cred: *mut c_char = ptr::null_mut();
        // SAFETY: live context; `buf` points to `len` readable bytes (or is
        // NULL with len 0); `cred` is a valid out-pointer.
        let rc = unsafe { munge_encode(&mut cred, self.as_ptr(), buf, len) };
        let owned = CBuf(cred.cast());
        if rc != EMUNGE_SUCCESS {
            return Err(ctx_error(rc, self));
        }
        if owned.0.is_null() {
            return Err(Error::new(ErrorKind::Snafu, "munge_encode succeeded but returned no credential"));
        }
        // SAFETY: libmunge returns a NUL-terminated string on success.
        let text = unsafe { CStr::from_ptr(owned.0.cast::<c_char>()) };
        text.to_str()
            .map(str::to_owned)
            .map_err(|_| Error::new(ErrorKind::Snafu, "munge_encode returned non-UTF-8 text"))
    }

    pub(crate) fn decode(&self, cred: &str) -> Result<Decoded, Error> {
        let cred = CString::new(cred).map_err(|e| {
            Error::new(ErrorKind::BadCred, format!("credential contains a NUL byte at offset {}", e.nul_position()))
        })?;
        let mut buf: *mut c_void = ptr::null_mut();
        let mut len: c_int = 0;
        let mut uid: libc::uid_t = 0;
        let mut gid: libc::gid_t = 0;
        // SAFETY: `cred` is NUL-terminated; live context; all out-pointers
        // are valid for writes.
        let rc = unsafe { munge_decode(cred.as_ptr(), self.as_ptr(), &mut buf, &mut len, &mut uid, &mut gid) };
        // libmunge may allocate the payload even on error (expired, rewound,
        // replayed): take ownership first so it is freed on every path.
        let owned = CBuf(buf);
        if rc != EMUNGE_SUCCESS {
            return Err(ctx_error(rc, self));
        }
        let payload = match usize::try_from(len) {
            Ok(n) if n > 0 && !owned.0.is_null() => {
                // SAFETY: libmunge allocated `len` bytes (plus a NUL) at `buf`.
                unsafe { std::slice::from_raw_parts(owned.0.cast::<u8>(), n) }.to_vec()
            }
            _ => Vec::new(),
        };
        let mut addr = libc::in_addr { s_addr: 0 };
        // SAFETY: live context that just decoded a credential; MUNGE_OPT_ADDR4 writes one
        // `struct in_addr` through the pointer.
        let rc = unsafe { munge_ctx_get(self.as_ptr(), MUNGE_OPT_ADDR4, &mut addr as *mut libc::in_addr) };
        let addr = std::net::Ipv4Addr::from(u32::from_be(addr.s_addr));
        let addr = (rc == EMUNGE_SUCCESS && !addr.is_unspecified()).then_some(addr);
        Ok(Decoded { payload, uid, gid, addr })
    }
}

impl Drop for RawCtx {
    fn drop(&mut self) {
        // SAFETY: created by munge_ctx_create, destroyed exactly once.
        unsafe { munge_ctx_destroy(self.as_ptr()) }
    }
}

/// A malloc'd buffer handed to us by libmunge; `free`d on drop (NULL is fine).
struct CBuf(*mut c_void);

impl Drop for CBuf {
    fn drop(&mut self) {
        // SAFETY: NULL or a pointer libmunge allocated with malloc for us.
        unsafe { libc::free(self.0) }
    }
}

// SAFETY: a munge context is plain heap data with no thread affinity; it only
// must not be used from two threads at once, which `!Sync` (inherited from
// the raw pointer) plus `&self` methods already guarantees.
unsafe impl Send for RawCtx {}
