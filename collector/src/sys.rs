//! The few libc calls the collector needs, behind safe functions: the only `unsafe` in the crate.
//!
//! Users and groups come from NSS (`getpwnam_r`, `getpwuid_r`, `getgrnam_r`, `getgrouplist`), so
//! LDAP/SSSD sites work like local ones; a caller's uid comes from the kernel (`SO_PEERCRED`),
//! never from anything the caller says.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;

/// A passwd entry, as much of it as the collector uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Calls a `get*_r` function with a growing buffer until it fits (ERANGE) or 1 MiB is reached.
fn with_buffer<T>(mut call: impl FnMut(&mut [u8]) -> Result<Option<T>, i32>) -> Option<T> {
    let mut len = 16 * 1024;
    loop {
        let mut buf = vec![0u8; len];
        match call(&mut buf) {
            Ok(found) => return found,
            Err(libc::ERANGE) if len < (1 << 20) => len *= 4,
            Err(_) => return None,
        }
    }
}

fn passwd(by: impl Fn(*mut libc::passwd, &mut [u8], *mut *mut libc::passwd) -> i32) -> Option<User> {
    with_buffer(|buf| {
        // SAFETY: passwd is plain data; the get*_r call fills it with pointers into `buf`, which
        // outlives every read below; `result` is a valid out-pointer.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = by(&mut pwd, buf, &mut result);
            if rc != 0 {
                return Err(rc);
            }
            if result.is_null() || pwd.pw_name.is_null() {
                return Ok(None);
            }
            let name = CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
            Ok(Some(User { name, uid: pwd.pw_uid, gid: pwd.pw_gid }))
        }
    })
}

/// The passwd entry of a user name.
pub fn user_by_name(name: &str) -> Option<User> {
    let cname = CString::new(name).ok()?;
    // SAFETY: every pointer is valid for the call; `buf` is writable for its length.
    passwd(|pwd, buf, result| unsafe {
        libc::getpwnam_r(cname.as_ptr(), pwd, buf.as_mut_ptr().cast(), buf.len(), result)
    })
}

/// The passwd entry of a uid.
pub fn user_by_uid(uid: u32) -> Option<User> {
    // SAFETY: as in `user_by_name`.
    passwd(|pwd, buf, result| unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr().cast(), buf.len(), result) })
}

/// The gid of a group name.
pub fn group_id(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: group is plain data filled by getgrnam_r with pointers into `buf`; only the gid
        // is read.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result);
            match rc {
                0 if result.is_null() => Ok(None),
                0 => Ok(Some(grp.gr_gid)),
                e => Err(e),
            }
        }
    })
}

/// Every group the user belongs to (primary and supplementary), as NSS says now.
pub fn groups_of(user: &User) -> Vec<u32> {
    let Ok(cname) = CString::new(user.name.as_str()) else { return vec![user.gid] };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let asked = n;
        // SAFETY: `groups` has room for `n` gids; getgrouplist sets `n` to the number it needs.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), user.gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n <= asked {
            n = asked * 2;
        }
        if n > 65_536 {
            return vec![user.gid];
        }
    }
}

/// Who is at the other end of a local socket, as the kernel recorded it at connect time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// `SO_PEERCRED` of a connected Unix socket.
pub fn peer_cred(stream: &UnixStream) -> io::Result<PeerCred> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable ucred of `len` bytes; the fd is open for the call's duration.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred { pid: cred.pid, uid: cred.uid, gid: cred.gid })
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Sets the file mode creation mask; returns the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Lets `backlog` connections wait to be accepted (listen(2) again on a listening socket; the
/// kernel caps it at net.core.somaxconn). The standard library's 128 is filled by a burst of a
/// few hundred connections, and then every further SYN, an epilog's too, is dropped until the
/// client's connect times out.
pub fn set_backlog(listener: &std::net::TcpListener, backlog: i32) -> io::Result<()> {
    // SAFETY: listen on an open socket descriptor touches no memory of ours.
    if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether bytes wait to be read on a socket, without reading them or blocking (recv with
/// MSG_PEEK | MSG_DONTWAIT; the descriptor's own blocking mode, shared with its other handles,
/// is left alone). A closed peer or an error counts as nothing waiting.
pub fn bytes_waiting(fd: &impl AsRawFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: `b` is a writable buffer of 1 byte; the fd is open for the call's duration.
    let n = unsafe { libc::recv(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n > 0
}

/// Caps this process's address space and the size of any file it writes, in bytes, and its CPU
/// time in seconds (setrlimit; SIGXCPU at the limit, SIGKILL a second later). For the child
/// process that answers one user query: whatever the query does, it cannot take more.
pub fn limit_self(address_space: u64, file_size: u64, cpu_seconds: u64) -> io::Result<()> {
    let limits = [
        (libc::RLIMIT_AS, address_space, address_space),
        (libc::RLIMIT_FSIZE, file_size, file_size),
        (libc::RLIMIT_CPU, cpu_seconds, cpu_seconds.saturating_add(1)),
    ];
    for (resource, soft, hard) in limits {
        let lim = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
        // SAFETY: `lim` is a valid rlimit the call only reads.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_both_ways() {
        let root = user_by_uid(0).expect("uid 0 has a passwd entry");
        assert_eq!(root.name, "root");
        assert_eq!(user_by_name("root"), Some(root.clone()));
        assert!(groups_of(&root).contains(&root.gid));
        assert_eq!(group_id("root"), Some(0));
    }

    #[test]
    fn unknown_names_are_none() {
        assert_eq!(user_by_name("no-such-user-runledger"), None);
        assert_eq!(user_by_name("nul\0byte"), None);
        assert_eq!(group_id("no-such-group-runledger"), None);
    }

    #[test]
    fn peer_cred_is_our_own_uid_on_a_socketpair() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.uid, euid());
        assert_eq!(c.pid as u32, std::process::id());
    }
}
