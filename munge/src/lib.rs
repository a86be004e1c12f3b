//! Thin safe layer over libmunge.
//!
//! runledger needs to know *who* produced a record: a component seals what it
//! writes in a MUNGE credential, and whoever decodes the credential learns
//! the UID/GID that munged vouches for. This crate is the
//! only place that touches libmunge; it does for MUNGE what rusqlite does for
//! SQLite — hand-written `extern "C"` declarations (`src/ffi.rs`), owned
//! wrappers that free C memory exactly once, and C error codes turned into a
//! Rust [`Error`] — and nothing more. No policy (TTLs, realms, UID
//! restrictions) lives here.
//!
//! All `unsafe` is in `src/ffi.rs` (the declarations and the context type that
//! owns a `munge_ctx_t` and the buffers libmunge hands back); the rest of the
//! crate is under `deny(unsafe_code)`.
//!
//! ```no_run
//! let cred = munge::encode(b"job 42 finished")?;
//! let decoded = munge::decode(&cred)?;
//! assert_eq!(decoded.payload, b"job 42 finished");
//! println!("sealed by uid {} gid {}", decoded.uid, decoded.gid);
//! # Ok::<(), munge::Error>(())
//! ```
//!
//! # Threads
//!
//! A libmunge context must not be used by two threads at once (munge.h,
//! "Context Functions"), so [`Context`] is `Send` but not `Sync`: move it to
//! a thread, or give each thread its own. The free functions [`encode`] and
//! [`decode`] build a fresh context per call, so any number of threads may
//! call them concurrently.
//!
//! ```compile_fail,E0277
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<munge::Context>();
//! ```
//!
//! # Replay and expiry
//!
//! munged remembers every credential it has decoded until the credential
//! expires (default TTL 300 s, daemon maximum 3600 s); this replay cache is
//! per daemon, i.e. per host. Decoding the same
//! credential a second time fails with [`ErrorKind::Replayed`]; decoding it
//! after the TTL fails with [`ErrorKind::Expired`]. A credential is therefore
//! a one-shot, short-lived token: decode it once, promptly, and keep the
//! result — not the credential — if you need it later.
//!
//! # Payload size limit
//!
//! MUNGE is meant for small payloads. libmunge and munged (0.5.15, the
//! Debian 12 version) refuse any request message larger than
//! `MUNGE_MAXIMUM_REQ_LEN` = 1 MiB (`src/libcommon/munge_defs.h`; munge.h
//! itself states no limit). Encoding sends the raw payload, so a
//! payload of up to about 1 MiB still *encodes*; but decoding sends the
//! base64 credential text, which is about 4/3 of the payload plus a header,
//! so only payloads up to about 768 KiB can ever be *decoded* (measured:
//! 786 310 bytes with the default AES-128/SHA-256, no compression). A larger
//! credential would be accepted at the producer and fail only at the
//! consumer, so [`Context::encode`] rejects payloads longer than
//! [`MAX_PAYLOAD_LEN`] (768 000 bytes, leaving headroom for the bigger
//! SHA-512 MAC) with [`ErrorKind::BadLength`] before talking to munged.
//! "A few MiB" does **not** fit in one credential: seal a digest of the data
//! (or split it) instead.

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
mod ffi;

use ffi::RawCtx;

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_int;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Largest payload [`Context::encode`] accepts, in bytes.
///
/// Chosen so that the resulting credential text stays under munged's 1 MiB
/// request limit and can therefore be decoded; see the
/// [crate documentation](crate#payload-size-limit).
pub const MAX_PAYLOAD_LEN: usize = 768_000;

/// What went wrong, mirroring libmunge's `munge_err_t`.
///
/// The variants most callers care about are [`Socket`](Self::Socket) (munged
/// is not running or not reachable), and, when decoding,
/// [`Invalid`](Self::Invalid), [`Expired`](Self::Expired),
/// [`Rewound`](Self::Rewound) and [`Replayed`](Self::Replayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `EMUNGE_SNAFU`: internal error.
    Snafu,
    /// `EMUNGE_BAD_ARG`: invalid argument (e.g. a socket path with a NUL byte).
    BadArg,
    /// `EMUNGE_BAD_LENGTH`: message too long (see [`MAX_PAYLOAD_LEN`]).
    BadLength,
    /// `EMUNGE_OVERFLOW`: buffer overflow.
    Overflow,
    /// `EMUNGE_NO_MEMORY`: out of memory.
    NoMemory,
    /// `EMUNGE_SOCKET`: could not talk to munged (usually: it is not running).
    Socket,
    /// `EMUNGE_TIMEOUT`: socket timeout.
    Timeout,
    /// `EMUNGE_BAD_CRED`: not a credential (bad armor or format, or an
    /// embedded NUL byte).
    BadCred,
    /// `EMUNGE_BAD_VERSION`: unsupported credential version.
    BadVersion,
    /// `EMUNGE_BAD_CIPHER`: unsupported cipher type.
    BadCipher,
    /// `EMUNGE_BAD_MAC`: unsupported MAC type.
    BadMac,
    /// `EMUNGE_BAD_ZIP`: unsupported compression type.
    BadZip,
    /// `EMUNGE_BAD_REALM`: unrecognized security realm.
    BadRealm,
    /// `EMUNGE_CRED_INVALID`: the credential does not verify (wrong key,
    /// tampered with).
    Invalid,
    /// `EMUNGE_CRED_EXPIRED`: older than its time-to-live.
    Expired,
    /// `EMUNGE_CRED_REWOUND`: encoded in the future (clock skew).
    Rewound,
    /// `EMUNGE_CRED_REPLAYED`: already decoded once.
    Replayed,
    /// `EMUNGE_CRED_UNAUTHORIZED`: this UID/GID may not decode it.
    Unauthorized,
    /// A code this crate does not know (newer libmunge).
    Other(i32),
}

impl ErrorKind {
    fn from_raw(code: c_int) -> Self {
        match code {
            ffi::EMUNGE_SNAFU => Self::Snafu,
            ffi::EMUNGE_BAD_ARG => Self::BadArg,
            ffi::EMUNGE_BAD_LENGTH => Self::BadLength,
            ffi::EMUNGE_OVERFLOW => Self::Overflow,
            ffi::EMUNGE_NO_MEMORY => Self::NoMemory,
            ffi::EMUNGE_SOCKET => Self::Socket,
            ffi::EMUNGE_TIMEOUT => Self::Timeout,
            ffi::EMUNGE_BAD_CRED => Self::BadCred,
            ffi::EMUNGE_BAD_VERSION => Self::BadVersion,
            ffi::EMUNGE_BAD_CIPHER => Self::BadCipher,
            ffi::EMUNGE_BAD_MAC => Self::BadMac,
            ffi::EMUNGE_BAD_ZIP => Self::BadZip,
            ffi::EMUNGE_BAD_REALM => Self::BadRealm,
            ffi::EMUNGE_CRED_INVALID => Self::Invalid,
            ffi::EMUNGE_CRED_EXPIRED => Self::Expired,
            ffi::EMUNGE_CRED_REWOUND => Self::Rewound,
            ffi::EMUNGE_CRED_REPLAYED => Self::Replayed,
            ffi::EMUNGE_CRED_UNAUTHORIZED => Self::Unauthorized,
            other => Self::Other(other),
        }
    }

    /// The libmunge `munge_err_t` number (also `munge`/`unmunge`'s exit code).
    pub fn code(self) -> i32 {
        match self {
            Self::Snafu => ffi::EMUNGE_SNAFU,
            Self::BadArg => ffi::EMUNGE_BAD_ARG,
            Self::BadLength => ffi::EMUNGE_BAD_LENGTH,
            Self::Overflow => ffi::EMUNGE_OVERFLOW,
            Self::NoMemory => ffi::EMUNGE_NO_MEMORY,
            Self::Socket => ffi::EMUNGE_SOCKET,
            Self::Timeout => ffi::EMUNGE_TIMEOUT,
            Self::BadCred => ffi::EMUNGE_BAD_CRED,
            Self::BadVersion => ffi::EMUNGE_BAD_VERSION,
            Self::BadCipher => ffi::EMUNGE_BAD_CIPHER,
            Self::BadMac => ffi::EMUNGE_BAD_MAC,
            Self::BadZip => ffi::EMUNGE_BAD_ZIP,
            Self::BadRealm => ffi::EMUNGE_BAD_REALM,
            Self::Invalid => ffi::EMUNGE_CRED_INVALID,
            Self::Expired => ffi::EMUNGE_CRED_EXPIRED,
            Self::Rewound => ffi::EMUNGE_CRED_REWOUND,
            Self::Replayed => ffi::EMUNGE_CRED_REPLAYED,
            Self::Unauthorized => ffi::EMUNGE_CRED_UNAUTHORIZED,
            Self::Other(code) => code,
        }
    }
}

/// A failed libmunge call (or an argument rejected before making one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind of failure.
    pub code: ErrorKind,
    /// Human-readable detail, from libmunge where it offers one.
    pub message: String,
}

impl Error {
    fn new(code: ErrorKind, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "munge: {}", self.message)
    }
}

impl std::error::Error for Error {}

/// A successfully decoded credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The payload given to `encode` (empty if there was none).
    pub payload: Vec<u8>,
    /// UID of the process that encoded the credential, as seen by munged.
    pub uid: u32,
    /// GID of the process that encoded the credential, as seen by munged.
    pub gid: u32,
    /// IPv4 address of the host whose munged encoded the credential (munged's origin address,
    /// from its host name or `--origin`); `None` when munged did not know it (0.0.0.0).
    pub addr: Option<std::net::Ipv4Addr>,
}

/// A connection setup for talking to munged: which socket to use.
///
/// Holds two libmunge contexts, one for encoding and one for decoding, as
/// munge.h advises (decoding overwrites a context's settings with those of
/// the credential). `Send` but not `Sync`: see the
/// [crate documentation](crate#threads).
pub struct Context {
    enc: RawCtx,
    dec: RawCtx,
    socket: Option<PathBuf>,
}

impl Context {
    /// A context using munged's default socket (`/run/munge/munge.socket.2`
    /// on Debian).
    ///
    /// # Panics
    ///
    /// If libmunge cannot allocate a context (out of memory).
    pub fn new() -> Self {
        Self::build(None).expect("libmunge: out of memory creating a context")
    }

    /// A context talking to munged at `path` instead of the default socket.
    ///
    /// The path is not checked here; a wrong path shows up as
    /// [`ErrorKind::Socket`] on the first `encode`/`decode`. Fails with
    /// [`ErrorKind::BadArg`] if the path contains a NUL byte.
    pub fn with_socket(path: &Path) -> Result<Self, Error> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::new(ErrorKind::BadArg, format!("socket path {} contains a NUL byte", path.display()))
        })?;
        let mut ctx = Self::build(Some(&c_path))?;
        ctx.socket = Some(path.to_path_buf());
        Ok(ctx)
    }

    fn build(socket: Option<&CStr>) -> Result<Self, Error> {
        Ok(Context { enc: RawCtx::new(socket)?, dec: RawCtx::new(socket)?, socket: None })
    }

    /// Create a credential carrying `payload`, vouching for this process's
    /// UID and GID. Returns the credential text (`MUNGE:...:`).
    ///
    /// Fails with [`ErrorKind::BadLength`] if `payload` is longer than
    /// [`MAX_PAYLOAD_LEN`], and with [`ErrorKind::Socket`] if munged is not
    /// reachable.
    pub fn encode(&self, payload: &[u8]) -> Result<String, Error> {
        self.enc.encode(payload)
    }

    /// Validate `cred` with munged and return its payload and the encoder's
    /// UID/GID.
    ///
    /// A credential decodes only once ([`ErrorKind::Replayed`] afterwards)
    /// and only within its time-to-live. Text that is not a credential,
    /// including a string with an embedded NUL byte, yields an error
    /// (typically [`ErrorKind::BadCred`]), never a panic.
    pub fn decode(&self, cred: &str) -> Result<Decoded, Error> {
        self.dec.decode(cred)
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("socket", &self.socket).finish_non_exhaustive()
    }
}

/// [`Context::encode`] with munged's default socket and a fresh context, so
/// it is safe to call from any number of threads at once.
pub fn encode(payload: &[u8]) -> Result<String, Error> {
    RawCtx::new(None)?.encode(payload)
}

/// [`Context::decode`] with munged's default socket and a fresh context, so
/// it is safe to call from any number of threads at once.
pub fn decode(cred: &str) -> Result<Decoded, Error> {
    RawCtx::new(None)?.decode(cred)
}

#[cfg(test)]
mod tests;
