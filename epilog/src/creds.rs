//! The epilog's only `unsafe`: the per-thread credential syscalls `nix` does not offer.
//!
//! [`safe_read`](crate::safe_read)'s reader thread must change ITS OWN credentials only. glibc's
//! `setgroups()` (and so nix's) broadcasts the change to every thread of the process (POSIX
//! setxid semantics), which would hand the user's groups to the whole epilog; the raw syscall
//! changes the calling thread alone. Capabilities (`capset`/`capget`, the ambient set) have no
//! wrapper in nix at all. Everything else the epilog asks of the kernel goes through nix.

#![allow(unsafe_code)]

use std::io;

/// Sets the calling thread's supplementary groups, and only this thread's (raw `setgroups`).
pub fn set_thread_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: a valid pointer/length pair the kernel only reads.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len() as libc::size_t, groups.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the calling thread's capability sets (effective, permitted, inheritable, ambient) and
/// checks that they are empty. Raw syscalls on pid 0: only this thread changes.
pub fn drop_thread_capabilities() -> Result<(), String> {
    // SAFETY: prctl with integer arguments; EINVAL on a kernel without ambient sets is harmless
    // (then there is no ambient set to clear).
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let none = [CapData::default(); 2];
    // SAFETY: a valid header and two data structs, as version 3 requires.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, none.as_ptr()) } != 0 {
        return Err(format!("capset: {}", io::Error::last_os_error()));
    }
    let mut got = [CapData { effective: 1, permitted: 1, inheritable: 1 }; 2];
    // SAFETY: as above; capget writes the two structs.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, got.as_mut_ptr()) } != 0 {
        return Err(format!("capget: {}", io::Error::last_os_error()));
    }
    if got != none {
        return Err("capabilities are still held after dropping them".into());
    }
    Ok(())
}
