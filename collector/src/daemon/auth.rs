//! Who may write to the ledger, and why a request was turned away.
//!
//! A request is a MUNGE credential and a body ([`runledger_record::wire`]). munged vouches for the
//! uid that made the credential and for its payload, which must be [`wire::digest`] of the body:
//! so the sender and the content are both authenticated, and munged's replay cache makes each
//! request one-shot. Only root and the site's `slurm_user` (slurmd runs the epilog as root; some
//! sites run it as SlurmUser) may send node records; anyone else on the cluster could otherwise
//! forge job history.
//!
//! Every refusal is a [`Reject`]: its [`Reject::reason`] is the short key the rejection counters
//! use, its `Display` the text logged and sent back to the sender.

use runledger_record::wire::{self, FrameError, ReplyKind};
use std::fmt;

/// The uids allowed to send node records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The `slurm_user` of the configuration, when it exists on this host.
    pub slurm_uid: Option<u32>,
    pub slurm_user: String,
}

impl Policy {
    /// Resolves `slurm_user` (getpwnam); when it does not exist, only root is allowed.
    pub fn new(slurm_user: &str) -> Policy {
        let slurm_uid = if slurm_user.is_empty() { None } else { lookup_uid(slurm_user) };
        Policy { slurm_uid, slurm_user: slurm_user.to_string() }
    }

    pub fn allows(&self, uid: u32) -> bool {
        uid == 0 || Some(uid) == self.slurm_uid
    }

    /// Who is allowed, for the startup log.
    pub fn describe(&self) -> String {
        match self.slurm_uid {
            Some(u) => format!("root and {} (uid {u})", self.slurm_user),
            None if self.slurm_user.is_empty() => "root only".into(),
            None => format!("root only (slurm_user '{}' does not exist here)", self.slurm_user),
        }
    }
}

/// The uid of a user name, from the passwd database.
pub fn lookup_uid(name: &str) -> Option<u32> {
    runledger_record::users::user_by_name(name).map(|u| u.uid)
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Reject {
    /// The connection limit was reached.
    TooManyConnections(usize),
    /// `max_queued` requests already wait for munged or a slot.
    Queued(usize),
    /// munged did not get to the credential within this wait (a storm).
    VerifyBusy(std::time::Duration),
    /// No credential within `auth_timeout_ms` (the limit, in ms).
    AuthTimeout(std::time::Duration),
    /// Closed while waiting for its credential, to make room for a newer connection.
    Evicted(usize),
    /// Not a runledger frame (wrong magic).
    BadFrame(String),
    /// A frame longer than the limit; refused before its body is read.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// The whole request did not arrive within the read deadline.
    Timeout,
    /// The peer closed the connection in the middle of a request.
    Truncated,
    Io(String),
    /// munged refused the credential.
    Credential(munge::Error),
    /// munged could not be asked (not running): not the sender's fault.
    MungeUnavailable(munge::Error),
    /// A valid credential from a uid that may not send node records.
    Uid(u32),
    /// The credential's payload is not the body's digest.
    DigestMismatch,
    /// The body is not a valid batch.
    Malformed(String),
    /// Node binding ([`crate::daemon::binding`]): the credential came from another address than the node
    /// the records name. Permanent: resending from the same host cannot help.
    NodeAddress {
        node: String,
        origin: std::net::Ipv4Addr,
        expected: Vec<std::net::IpAddr>,
    },
    /// Node binding: the node's address is not known (name not resolvable, not mapped).
    NodeUnresolved {
        node: String,
        error: String,
    },
    /// Node binding: munged on the sender's host did not know its own address.
    NoOrigin,
    /// A batch format this build does not speak (a newer epilog): an upgrade of the collector
    /// will take it, so the sender keeps it.
    Unsupported(String),
}

impl Reject {
    /// The counter key.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::TooManyConnections(_) => "too many connections",
            Reject::Queued(_) => "queue full",
            Reject::VerifyBusy(_) => "verification busy",
            Reject::AuthTimeout(_) => "credential timeout",
            Reject::Evicted(_) => "unauthenticated evicted",
            Reject::BadFrame(_) => "bad frame",
            Reject::TooLarge { .. } => "too large",
            Reject::Timeout => "timeout",
            Reject::Truncated => "truncated",
            Reject::Io(_) => "io error",
            Reject::Credential(e) => match e.code {
                munge::ErrorKind::Replayed => "credential replayed",
                munge::ErrorKind::Expired => "credential expired",
                munge::ErrorKind::Rewound => "credential rewound",
                munge::ErrorKind::Invalid => "credential invalid",
                munge::ErrorKind::BadCred => "not a credential",
                _ => "credential refused",
            },
            Reject::MungeUnavailable(_) => "munged unavailable",
            Reject::Uid(_) => "unauthorized uid",
            Reject::DigestMismatch => "digest mismatch",
            Reject::Malformed(_) => "malformed batch",
            Reject::NodeAddress { .. } => "node address mismatch",
            Reject::NodeUnresolved { .. } => "node unresolvable",
            Reject::NoOrigin => "no origin address",
            Reject::Unsupported(_) => "unsupported format",
        }
    }

    /// What the sender should do about it. Only what is wrong with the batch itself is
    /// permanent; whatever is the collector's, munged's or the network's state is not.
    pub fn kind(&self) -> ReplyKind {
        match self {
            Reject::TooManyConnections(_) | Reject::Queued(_) | Reject::VerifyBusy(_) => ReplyKind::Busy,
            // Resending from the same host cannot change its address: only an admin can.
            Reject::TooLarge { .. } | Reject::Malformed(_) | Reject::NodeAddress { .. } | Reject::NoOrigin => {
                ReplyKind::Permanent
            }
            Reject::BadFrame(_)
            | Reject::Timeout
            | Reject::Truncated
            | Reject::Io(_)
            | Reject::Credential(_)
            | Reject::MungeUnavailable(_)
            | Reject::Uid(_)
            | Reject::DigestMismatch
            | Reject::NodeUnresolved { .. }
            | Reject::AuthTimeout(_)
            | Reject::Evicted(_)
            | Reject::Unsupported(_) => ReplyKind::Retry,
        }
    }

    /// Maps an error reading a frame.
    pub fn from_frame(e: FrameError) -> Reject {
        match e {
            FrameError::TooLarge { len, max } => Reject::TooLarge { len, max },
            FrameError::BadMagic(_) => Reject::BadFrame(e.to_string()),
            FrameError::Io(io) => match io.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Reject::Timeout,
                std::io::ErrorKind::UnexpectedEof => Reject::Truncated,
                _ => Reject::Io(io.to_string()),
            },
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::TooManyConnections(n) => write!(f, "too many connections (limit {n}); retry later"),
            Reject::Queued(n) => {
                write!(f, "too many requests waiting to be verified (limit {n}, collector.max_queued); retry later")
            }
            Reject::VerifyBusy(d) => {
                write!(
                    f,
                    "credentials arrive faster than munged verifies them (waited {} ms); retry later",
                    d.as_millis()
                )
            }
            Reject::AuthTimeout(d) => {
                write!(f, "no credential within {} ms (collector.auth_timeout_ms)", d.as_millis())
            }
            Reject::Evicted(n) => write!(
                f,
                "closed before it authenticated: over {n} connections were waiting for a credential \
                 (collector.max_unauthenticated); the oldest made room"
            ),
            Reject::BadFrame(m) => f.write_str(m),
            Reject::TooLarge { len, max } => {
                write!(f, "message too large: {len} bytes exceeds the limit of {max} (collector.max_message_bytes)")
            }
            Reject::Timeout => f.write_str("request not received within the read timeout"),
            Reject::Truncated => f.write_str("connection closed in the middle of the request"),
            Reject::Io(m) => write!(f, "read error: {m}"),
            Reject::Credential(e) => write!(f, "credential refused: {}", e.message),
            Reject::MungeUnavailable(e) => write!(f, "collector cannot verify credentials now: {}", e.message),
            Reject::Uid(uid) => write!(f, "uid {uid} may not send node records (only root and the slurm user)"),
            Reject::DigestMismatch => f.write_str("digest mismatch: the credential does not sign this body"),
            Reject::Malformed(m) | Reject::Unsupported(m) => f.write_str(m),
            Reject::NodeAddress { node, origin, expected } => {
                let expected: Vec<String> = expected.iter().map(|a| a.to_string()).collect();
                write!(
                    f,
                    "records of node {node} refused: signed on {origin}, but {node} is {} \
                     (collector.node_binding = \"address\")",
                    expected.join(", ")
                )
            }
            Reject::NodeUnresolved { node, error } => write!(
                f,
                "records of node {node} refused: its address is unknown ({error}); add it to \
                 collector.node_addresses (collector.node_binding = \"address\")"
            ),
            Reject::NoOrigin => f.write_str(
                "refused: the credential carries no origin address (start munged with --origin), \
                 and collector.node_binding = \"address\"",
            ),
        }
    }
}

/// What a verified credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub uid: u32,
    pub gid: u32,
    /// The signed payload: the body's digest.
    pub digest: Vec<u8>,
    /// The address of the host whose munged encoded the credential (node binding).
    pub origin: Option<std::net::Ipv4Addr>,
}

/// Decodes a credential with `decode` (munge's, or a fake in tests) and checks the uid.
pub fn verify_credential(
    policy: &Policy,
    credential: &str,
    decode: impl Fn(&str) -> Result<munge::Decoded, munge::Error>,
) -> Result<Sender, Reject> {
    let d = decode(credential.trim()).map_err(|e| match e.code {
        munge::ErrorKind::Socket | munge::ErrorKind::Timeout | munge::ErrorKind::NoMemory | munge::ErrorKind::Snafu => {
            Reject::MungeUnavailable(e)
        }
        _ => Reject::Credential(e),
    })?;
    if !policy.allows(d.uid) {
        return Err(Reject::Uid(d.uid));
    }
    Ok(Sender { uid: d.uid, gid: d.gid, digest: d.payload, origin: d.addr })
}

/// Checks that the credential signed exactly this body.
pub fn check_digest(sender: &Sender, body: &[u8]) -> Result<(), Reject> {
    if sender.digest == wire::digest(body).as_bytes() {
        Ok(())
    } else {
        Err(Reject::DigestMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(uid: u32, payload: &str) -> impl Fn(&str) -> Result<munge::Decoded, munge::Error> + '_ {
        move |_| Ok(munge::Decoded { payload: payload.as_bytes().to_vec(), uid, gid: uid, addr: None })
    }

    fn err(code: munge::ErrorKind) -> impl Fn(&str) -> Result<munge::Decoded, munge::Error> {
        move |_| Err(munge::Error { code, message: format!("{code:?}") })
    }

    #[test]
    fn root_and_the_slurm_user_only() {
        let p = Policy { slurm_uid: Some(64030), slurm_user: "slurm".into() };
        let body = b"{}";
        let digest = wire::digest(body);
        for uid in [0, 64030] {
            let s = verify_credential(&p, "c", ok(uid, &digest)).unwrap();
            check_digest(&s, body).unwrap();
        }
        let r = verify_credential(&p, "c", ok(1000, &digest)).unwrap_err();
        assert_eq!(r.reason(), "unauthorized uid");
        assert!(r.to_string().contains("uid 1000"));
        let only_root = Policy { slurm_uid: None, slurm_user: "nosuchuser".into() };
        assert!(matches!(verify_credential(&only_root, "c", ok(64030, &digest)), Err(Reject::Uid(64030))));
        assert!(only_root.describe().contains("does not exist"));
    }

    #[test]
    fn digest_and_munge_failures() {
        let p = Policy { slurm_uid: None, slurm_user: String::new() };
        let s = verify_credential(&p, "c", ok(0, &wire::digest(b"other"))).unwrap();
        assert_eq!(check_digest(&s, b"body").unwrap_err().reason(), "digest mismatch");
        let r = verify_credential(&p, "c", err(munge::ErrorKind::Replayed)).unwrap_err();
        assert_eq!(r.reason(), "credential replayed");
        let r = verify_credential(&p, "c", err(munge::ErrorKind::Expired)).unwrap_err();
        assert_eq!(r.reason(), "credential expired");
        let r = verify_credential(&p, "c", err(munge::ErrorKind::Socket)).unwrap_err();
        assert_eq!(r.reason(), "munged unavailable");
    }

    #[test]
    fn user_lookup() {
        assert_eq!(lookup_uid("root"), Some(0));
        assert_eq!(lookup_uid("no-such-user-runledger"), None);
        assert_eq!(Policy::new("root").slurm_uid, Some(0));
    }
}
