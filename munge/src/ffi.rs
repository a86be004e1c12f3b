//! Hand-written declarations for the handful of libmunge symbols we use.
//!
//! Transcribed from `/usr/include/munge.h` (MUNGE 0.5.x). The API has been
//! stable for two decades, so a few lines here beat a bindgen dependency.
//! Only what `lib.rs` calls is declared.

#![allow(non_camel_case_types)]

use std::marker::{PhantomData, PhantomPinned};

use libc::{c_char, c_int, c_void, gid_t, uid_t};

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
