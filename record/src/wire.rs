//! How a batch travels from an epilog to the collector.
//!
//! One TCP connection carries one request and one reply. Every part is a frame: the 4-byte magic
//! `RLG1`, a big-endian u32 length, then the body. A request is two frames: a MUNGE credential
//! whose payload is [`digest`] of the body, then the body (the [`Batch`](crate::Batch) JSON).
//! munged thus authenticates the sender (uid) and, through the digest, the content, while the
//! body is not bound by MUNGE's payload limit (about 768 KiB); replayed and expired credentials
//! are refused by munged itself. The reply is one frame holding a [`Reply`] in JSON, sent only
//! after the batch is committed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

pub const MAGIC: [u8; 4] = *b"RLG1";

/// Largest frame a collector accepts by default (config `collector.max_message_bytes`).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Default TCP port: next to slurmctld (6817), slurmd (6818) and slurmdbd (6819).
pub const DEFAULT_PORT: u16 = 6820;

#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    BadMagic([u8; 4]),
    TooLarge { len: usize, max: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::BadMagic(m) => write!(f, "not a runledger frame (starts with {m:02x?})"),
            FrameError::TooLarge { len, max } => write!(f, "frame of {len} bytes exceeds the limit of {max}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

pub fn write_frame<W: Write>(w: &mut W, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame body over 4 GiB"))?;
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&MAGIC);
    head[4..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one frame, refusing (before allocating) any body over `max` bytes.
pub fn read_frame<R: Read>(r: &mut R, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    let magic: [u8; 4] = head[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let len = u32::from_be_bytes(head[4..].try_into().expect("4 bytes")) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// What the MUNGE credential of a request carries: `sha256:` and the body's hex digest.
pub fn digest(body: &[u8]) -> String {
    let d = Sha256::digest(body);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Sends a request: the credential frame, then the body frame.
pub fn write_request<W: Write>(w: &mut W, credential: &str, body: &[u8]) -> io::Result<()> {
    write_frame(w, credential.as_bytes())?;
    write_frame(w, body)
}

/// Longest credential frame accepted: MUNGE credentials of a digest are a few hundred bytes.
pub const MAX_CREDENTIAL_FRAME: usize = 4096;

/// Reads a request: (credential, body). The body limit is the collector's message limit.
pub fn read_request<R: Read>(r: &mut R, max_body: usize) -> Result<(String, Vec<u8>), FrameError> {
    let cred = read_frame(r, MAX_CREDENTIAL_FRAME)?;
    let cred = String::from_utf8(cred).map_err(|_| FrameError::Io(io::Error::other("credential is not text")))?;
    let body = read_frame(r, max_body)?;
    Ok((cred, body))
}

/// What a reply means for the batch it answers, decided by the collector where it refuses (or
/// commits) the batch, so that the sender never has to guess from the wording.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// Committed: the sender may delete its copy.
    Ok,
    /// Not stored now, for a reason that may pass (storage error, credential, munged, a request
    /// cut short): keep the batch and send it again in a later run.
    Retry,
    /// The collector is at its connection limit: retry after a backoff, in the same run.
    Busy,
    /// The batch itself can never be accepted (not a batch, invalid, larger than the limit):
    /// retrying cannot help; set it aside for an admin.
    Permanent,
    /// A kind this build does not know (a newer collector): treated as [`ReplyKind::Retry`],
    /// the choice that never loses a batch.
    #[serde(other)]
    Unknown,
}

/// The collector's answer to one batch.
///
/// `kind` was added after the first release: a reply from an older collector lacks it (`None`),
/// and an older epilog ignores it, reading `ok` and `error` as before.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// True only when every item of the batch is committed.
    pub ok: bool,
    /// Items applied (a duplicate counts: applying it again changed nothing).
    pub applied: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ReplyKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(applied: usize) -> Self {
        Reply { ok: true, applied, kind: Some(ReplyKind::Ok), error: None }
    }

    /// A refusal of `kind` (anything but [`ReplyKind::Ok`]) with the reason for the sender's log.
    pub fn refused(kind: ReplyKind, msg: impl Into<String>) -> Self {
        debug_assert!(kind != ReplyKind::Ok, "a refusal is not ok");
        Reply { ok: false, applied: 0, kind: Some(kind), error: Some(msg.into()) }
    }

    /// What the reply means: `kind` when the collector sent one; `None` for an older collector,
    /// whose reply only has `ok` and the wording of `error`.
    pub fn kind(&self) -> Option<ReplyKind> {
        match (self.ok, self.kind) {
            (true, _) => Some(ReplyKind::Ok),
            // An `ok` kind on a refusal is contradictory: the safe reading is "keep it".
            (false, Some(ReplyKind::Ok)) => Some(ReplyKind::Retry),
            (false, k) => k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        assert_eq!(read_frame(&mut buf.as_slice(), 5).unwrap(), b"hello");
        assert!(matches!(read_frame(&mut buf.as_slice(), 4), Err(FrameError::TooLarge { len: 5, max: 4 })));
        assert!(matches!(read_frame(&mut &b"GET / HTTP/1.1\r\n"[..], 100), Err(FrameError::BadMagic(_))));
        assert!(matches!(read_frame(&mut &buf[..7], 100), Err(FrameError::Io(_))));
        // A header announcing 4 GiB costs nothing before the limit check.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(read_frame(&mut huge.as_slice(), DEFAULT_MAX_FRAME), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn requests_carry_credential_then_body() {
        let mut buf = Vec::new();
        write_request(&mut buf, "MUNGE:abc:", b"{}").unwrap();
        let (cred, body) = read_request(&mut buf.as_slice(), 10).unwrap();
        assert_eq!((cred.as_str(), body.as_slice()), ("MUNGE:abc:", b"{}".as_slice()));
        assert!(matches!(read_request(&mut buf.as_slice(), 1), Err(FrameError::TooLarge { .. })));
        assert_eq!(digest(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn reply_kinds_travel_and_old_or_new_shapes_parse() {
        let r = Reply::refused(ReplyKind::Permanent, "invalid batch: x");
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"ok":false,"applied":0,"kind":"permanent","error":"invalid batch: x"}"#);
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), r);
        assert_eq!(serde_json::to_string(&Reply::ok(3)).unwrap(), r#"{"ok":true,"applied":3,"kind":"ok"}"#);
        // The last release's collector: no kind.
        let old: Reply = serde_json::from_str(r#"{"ok":false,"applied":0,"error":"not stored: x"}"#).unwrap();
        assert_eq!(old.kind(), None);
        let old_ok: Reply = serde_json::from_str(r#"{"ok":true,"applied":2}"#).unwrap();
        assert_eq!(old_ok.kind(), Some(ReplyKind::Ok));
        // A newer collector's kind this build does not know: kept, never set aside.
        let newer: Reply = serde_json::from_str(r#"{"ok":false,"applied":0,"kind":"later","error":"?"}"#).unwrap();
        assert_eq!(newer.kind(), Some(ReplyKind::Unknown));
        let odd = Reply { ok: false, applied: 0, kind: Some(ReplyKind::Ok), error: None };
        assert_eq!(odd.kind(), Some(ReplyKind::Retry));
    }
}
