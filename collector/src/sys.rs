//! The few system calls the collector needs beyond the standard library, behind small functions.
//!
//! Everything goes through the [`nix`] crate, which owns the `unsafe`: `SO_PEERCRED`, `umask`,
//! `listen`, `recv` with `MSG_PEEK`, `setrlimit`. No raw libc call is left here (libc is still a
//! dependency for constants only: `O_TMPFILE`, signal numbers). Users and groups (passwd/group
//! look-ups, `getgrouplist`, the effective uid) are in [`runledger_record::users`], shared with
//! the plugin and the epilog. A caller's uid comes from the kernel (`SO_PEERCRED`), never from
//! anything the caller says.

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::socket::{self, sockopt, Backlog, MsgFlags};
use nix::sys::stat::Mode;
use std::io;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;

/// Who is at the other end of a local socket, as the kernel recorded it at connect time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// `SO_PEERCRED` of a connected Unix socket.
pub fn peer_cred(stream: &UnixStream) -> io::Result<PeerCred> {
    let cred = socket::getsockopt(stream, sockopt::PeerCredentials)?;
    Ok(PeerCred { pid: cred.pid(), uid: cred.uid(), gid: cred.gid() })
}

/// Sets the file mode creation mask; returns the previous one.
pub fn set_umask(mask: u32) -> u32 {
    nix::sys::stat::umask(Mode::from_bits_truncate(mask as libc::mode_t)).bits() as u32
}

/// Lets `backlog` connections wait to be accepted (listen(2) again on a listening socket; the
/// kernel caps it at net.core.somaxconn). The standard library's 128 is filled by a burst of a
/// few hundred connections, and then every further SYN, an epilog's too, is dropped until the
/// client's connect times out. A `backlog` above the C library's `SOMAXCONN` (which nix refuses)
/// asks for the kernel's own cap instead.
pub fn set_backlog(listener: &std::net::TcpListener, backlog: i32) -> io::Result<()> {
    let backlog = match Backlog::new(backlog) {
        Ok(b) => b,
        Err(_) if backlog > 0 => Backlog::MAXALLOWABLE,
        Err(e) => return Err(e.into()),
    };
    socket::listen(listener, backlog)?;
    Ok(())
}

/// Whether bytes wait to be read on a socket, without reading them or blocking (recv with
/// MSG_PEEK | MSG_DONTWAIT; the descriptor's own blocking mode, shared with its other handles,
/// is left alone). A closed peer or an error counts as nothing waiting.
pub fn bytes_waiting(fd: &impl AsRawFd) -> bool {
    let mut b = [0u8; 1];
    socket::recv(fd.as_raw_fd(), &mut b, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0)
}

/// Caps this process's address space and the size of any file it writes, in bytes, and its CPU
/// time in seconds (setrlimit; SIGXCPU at the limit, SIGKILL a second later). For the child
/// process that answers one user query: whatever the query does, it cannot take more.
pub fn limit_self(address_space: u64, file_size: u64, cpu_seconds: u64) -> io::Result<()> {
    let limits = [
        (Resource::RLIMIT_AS, address_space, address_space),
        (Resource::RLIMIT_FSIZE, file_size, file_size),
        (Resource::RLIMIT_CPU, cpu_seconds, cpu_seconds.saturating_add(1)),
    ];
    for (resource, soft, hard) in limits {
        setrlimit(resource, soft as libc::rlim_t, hard as libc::rlim_t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_cred_is_our_own_uid_on_a_socketpair() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.uid, runledger_record::users::euid());
        assert_eq!(c.gid, runledger_record::users::egid());
        assert_eq!(c.pid as u32, std::process::id());
    }

    #[test]
    fn bytes_waiting_sees_unread_bytes_without_taking_them() {
        use std::io::{Read, Write};
        let (mut a, mut b) = UnixStream::pair().unwrap();
        assert!(!bytes_waiting(&b));
        a.write_all(b"x").unwrap();
        assert!(bytes_waiting(&b));
        assert!(bytes_waiting(&b), "peeking leaves the byte there");
        let mut buf = [0u8; 1];
        b.read_exact(&mut buf).unwrap();
        assert!(!bytes_waiting(&b));
    }

    #[test]
    fn a_backlog_above_somaxconn_is_the_kernels_cap() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_backlog(&l, 4096).unwrap();
        set_backlog(&l, i32::MAX).unwrap();
        assert!(set_backlog(&l, -5).is_err());
    }
}
