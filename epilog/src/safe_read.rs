//! Reading users' files as the user, never as root.
//!
//! The epilog runs as root, but a job's output files (and, later, its solver logs) are named by
//! the user: `--output=/etc/shadow`, a symlink planted in the work directory or a FIFO would make
//! a root reader leak or hang. So every such file is read by [`read_windows_as`]:
//!
//! 1. A dedicated, short-lived thread is spawned for the call. It alone takes the user's
//!    identity, with the raw Linux syscalls, which change only the calling thread's credentials:
//!    `setgroups(user's groups from getgrouplist)`, `setfsgid(gid)`, `setfsuid(uid)`, then reads
//!    them back to check they took. (glibc's `setgroups()`/`setuid()` wrappers would change ALL
//!    threads of the process — POSIX semantics through glibc's setxid broadcast — so they are not
//!    used. With fsuid ≠ 0 the kernel also drops the thread's file capabilities such as
//!    CAP_DAC_OVERRIDE, so the file permissions apply exactly as to the user.) Then the thread
//!    drops every other capability too (`capset` with empty sets, ambient set cleared, read back):
//!    whatever the reading code does wrong, this thread can do no more than the user. The gid is
//!    the one slurmd or the plugin gave, else the passwd entry's; a gid of 0 (root's group) for
//!    a user whose passwd entry does not say so is refused — the plugin records 0 when it could
//!    not learn the gid, and that must never open a log to group root — so nothing is read.
//! 2. Each path is opened with `O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY|O_CLOEXEC`: a FIFO opens
//!    without waiting for a writer, a symlink as the last component is refused (ELOOP), a tty is
//!    not made the controlling terminal.
//! 3. `fstat` on the open file: anything but a regular file (FIFO, socket, device, directory) is
//!    refused before a byte is read.
//! 4. At most `head_bytes` from the start and `tail_bytes` from the end are read (`pread`), and the
//!    file is closed. When every path is done, the thread ends and its credentials die with it.
//!
//! The caller waits at most until `deadline` (a file on a hung NFS mount blocks in the kernel);
//! paths not done by then are reported as [`ReadError::TimedOut`] and the reader thread is left to
//! finish or die with the process. If the process is not root it can only read as itself: any
//! other uid is refused.
//!
//! This module and the syslog calls are the only `unsafe` code of the epilog.

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// What was read of one file: its first bytes and its last bytes, never overlapping, so
/// `head ++ tail` is the whole file when [`Window::is_whole`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// The file's size when it was opened.
    pub size: u64,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

impl Window {
    pub fn is_whole(&self) -> bool {
        (self.head.len() + self.tail.len()) as u64 >= self.size
    }
}

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// Not a regular file, or a symlink: not read on principle.
    Refused(String),
    /// The user may not read it, it does not exist, or reading failed.
    Io(io::Error),
    /// Not done by the deadline.
    TimedOut,
    /// The user's identity could not be taken, so nothing was read.
    Identity(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Refused(why) => write!(f, "refused: {why}"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::TimedOut => f.write_str("not read before the deadline"),
            ReadError::Identity(why) => write!(f, "cannot read as the job's user: {why}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads a head and a tail window of each of `paths` with the identity of `uid` (and `gid`, else
/// the user's primary group from passwd), in one short-lived thread; see the module docs.
/// Returns one result per path, in order; never blocks past `deadline`.
pub fn read_windows_as(
    uid: u32,
    gid: Option<u32>,
    paths: &[PathBuf],
    head_bytes: u64,
    tail_bytes: u64,
    deadline: Instant,
) -> Vec<Result<Window, ReadError>> {
    let wanted: Vec<(PathBuf, u64, u64)> = paths.iter().map(|p| (p.clone(), head_bytes, tail_bytes)).collect();
    read_each_as(uid, gid, &wanted, deadline)
}

/// Like [`read_windows_as`], with a head and a tail size per path: `(path, head_bytes, tail_bytes)`.
pub fn read_each_as(
    uid: u32,
    gid: Option<u32>,
    wanted: &[(PathBuf, u64, u64)],
    deadline: Instant,
) -> Vec<Result<Window, ReadError>> {
    let owned = wanted.to_vec();
    let n = owned.len();
    let results = as_user(uid, gid, deadline, n, move |tx| {
        for (i, (p, head, tail)) in owned.iter().enumerate() {
            if Instant::now() >= deadline {
                return;
            }
            if tx.send((i, read_one(p, *head, *tail))).is_err() {
                return; // the caller gave up
            }
        }
    });
    results.into_iter().map(|r| r.unwrap_or(Err(ReadError::TimedOut))).collect()
}

/// One entry of a directory listed by [`list_dir_as`]: a regular file (symbolic links, FIFOs,
/// devices, sockets and directories are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirFile {
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// The regular files directly in `dir` whose name `keep` accepts, listed with the identity of
/// `uid` (so root never reveals the names in a directory the user may not read): the directory
/// is opened with O_NOFOLLOW|O_DIRECTORY (a symlinked work directory is not listed) and each
/// entry is `lstat`ed, never followed. At most `max_entries` entries are looked at.
pub fn list_dir_as(
    uid: u32,
    gid: Option<u32>,
    dir: &Path,
    keep: impl Fn(&str) -> bool + Send + 'static,
    max_entries: usize,
    deadline: Instant,
) -> Result<Vec<DirFile>, ReadError> {
    let dir = dir.to_path_buf();
    let mut r = as_user(uid, gid, deadline, 1, move |tx| {
        let _ = tx.send((0, list_one(&dir, &keep, max_entries, deadline)));
    });
    r.pop().flatten().unwrap_or(Err(ReadError::TimedOut))
}

fn list_one(
    dir: &Path,
    keep: &dyn Fn(&str) -> bool,
    max_entries: usize,
    deadline: Instant,
) -> Result<Vec<DirFile>, ReadError> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| ReadError::Refused("NUL in the path".into()))?;
    // SAFETY: valid NUL-terminated path; the fd is owned by the DIR stream below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP) => ReadError::Refused("is a symbolic link".into()),
            Some(libc::ENOTDIR) => ReadError::Refused("not a directory".into()),
            _ => ReadError::Io(e),
        });
    }
    // SAFETY: fd is an open directory; on success the stream owns it (closedir closes it).
    let d = unsafe { libc::fdopendir(fd) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fd is ours and still open.
        unsafe { libc::close(fd) };
        return Err(ReadError::Io(e));
    }
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < max_entries && Instant::now() < deadline {
        // SAFETY: d is a valid stream, used by this thread only.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        seen += 1;
        // SAFETY: d_name is NUL-terminated and valid until the next readdir.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let Ok(text) = name.to_str() else { continue };
        if text == "." || text == ".." || !keep(text) {
            continue;
        }
        // SAFETY: an all-zero stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: dirfd(d) is open, name is NUL-terminated, st is valid; the link is never followed.
        let rc = unsafe { libc::fstatat(libc::dirfd(d), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG {
            continue;
        }
        out.push(DirFile { path: dir.join(text), size: st.st_size as u64, mtime: st.st_mtime });
    }
    // SAFETY: d is valid and closed once.
    unsafe { libc::closedir(d) };
    Ok(out)
}

type Sent<T> = (usize, T);

/// Runs `work` on a fresh thread that has taken the identity of `uid`/`gid` (see the module
/// docs); it sends `n` indexed results, which are returned in order (`None`: not sent by
/// `deadline`). If the identity cannot be taken, every result is [`ReadError::Identity`].
fn as_user<T: Send + 'static>(
    uid: u32,
    gid: Option<u32>,
    deadline: Instant,
    n: usize,
    work: impl FnOnce(&mpsc::Sender<Sent<Result<T, ReadError>>>) + Send + 'static,
) -> Vec<Option<Result<T, ReadError>>> {
    let mut results: Vec<Option<Result<T, ReadError>>> = (0..n).map(|_| None).collect();
    if n == 0 {
        return results;
    }
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("read-as-user".into()).spawn(move || {
        if let Err(why) = become_user(uid, gid) {
            for i in 0..n {
                let _ = tx.send((i, Err(ReadError::Identity(why.clone()))));
            }
            return;
        }
        work(&tx);
    });
    if let Err(e) = spawned {
        return (0..n)
            .map(|_| Some(Err(ReadError::Identity(format!("cannot start the reader thread: {e}")))))
            .collect();
    }
    let mut pending = n;
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, r)) => {
                if results[i].is_none() {
                    pending -= 1;
                }
                results[i] = Some(r);
            }
            Err(_) => break, // timed out, or the thread stopped at the deadline
        }
    }
    results
}

fn read_one(path: &Path, head_bytes: u64, tail_bytes: u64) -> Result<Window, ReadError> {
    // std always adds O_CLOEXEC.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ReadError::Refused("is a symbolic link".into()),
            _ => ReadError::Io(e),
        })?;
    let meta = f.metadata().map_err(ReadError::Io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(ReadError::Refused(format!("is {what}")));
    }
    let size = meta.len();
    let head_len = size.min(head_bytes);
    let head = read_at(&f, 0, head_len).map_err(ReadError::Io)?;
    let tail_start = size.saturating_sub(tail_bytes).max(head_len);
    let tail = read_at(&f, tail_start, size - tail_start).map_err(ReadError::Io)?;
    Ok(Window { size, head, tail })
}

/// Up to `len` bytes from `offset` (fewer if the file shrank meanwhile).
fn read_at(f: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Gives the calling thread the file-access identity of `uid`. Only ever called on the
/// dedicated reader thread.
fn become_user(uid: u32, gid: Option<u32>) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return if euid == uid {
            drop_capabilities()
        } else {
            Err(format!("not root (euid {euid}): cannot read as uid {uid}"))
        };
    }
    let (name, pw_gid) = match passwd_entry(uid) {
        Some((n, g)) => (Some(n), Some(g)),
        None => (None, None),
    };
    let gid = effective_gid(uid, gid, pw_gid)?;
    // Without a name the user's supplementary groups are unknown: only the primary group, which
    // can only grant less than the user really has.
    let groups = match &name {
        Some(n) => group_list(n, gid),
        None => vec![gid],
    };
    // SAFETY: raw syscalls with a valid pointer/length pair; they change only this thread's
    // credentials (the kernel's creds are per task; no glibc setxid broadcast is involved).
    unsafe {
        if libc::syscall(libc::SYS_setgroups, groups.len() as libc::size_t, groups.as_ptr()) != 0 {
            return Err(format!("setgroups: {}", io::Error::last_os_error()));
        }
        libc::syscall(libc::SYS_setfsgid, gid as libc::c_long);
        libc::syscall(libc::SYS_setfsuid, uid as libc::c_long);
        // setfsuid/setfsgid report no errors; an invalid id (-1) changes nothing and returns the
        // current value, which is how they are checked.
        let fsgid = libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long) as u32;
        let fsuid = libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) as u32;
        if fsuid != uid || fsgid != gid {
            return Err(format!("fsuid/fsgid are {fsuid}/{fsgid}, wanted {uid}/{gid}"));
        }
    }
    drop_capabilities()
}

/// The gid to read as: `given`, else the passwd entry's. Fails closed: no gid at all, or gid 0
/// for a non-root user whose passwd entry does not have it (a gid recorded as 0 because it was
/// unknown), refuses the read rather than read with root's group.
fn effective_gid(uid: u32, given: Option<u32>, passwd_gid: Option<u32>) -> Result<u32, String> {
    let gid = given.or(passwd_gid).ok_or_else(|| format!("uid {uid} has no passwd entry and no gid was given"))?;
    if gid == 0 && uid != 0 && passwd_gid != Some(0) {
        return Err(format!("gid 0 (root's group) for uid {uid}, whose primary group is not 0: not read"));
    }
    Ok(gid)
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
fn drop_capabilities() -> Result<(), String> {
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

/// The user's name and primary group (getpwuid_r).
fn passwd_entry(uid: u32) -> Option<(CString, u32)> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid out-parameter (pointers NULL, ints 0).
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: buf/pw/res are valid for the call; getpwuid_r writes strings into buf only.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut res) };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || res.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name points into buf, NUL-terminated, valid while buf lives.
        let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_owned();
        return Some((name, pw.pw_gid));
    }
}

/// The user's groups (getgrouplist), always including `gid`.
fn group_list(name: &CStr, gid: u32) -> Vec<u32> {
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: name is NUL-terminated; groups has room for `count` entries.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= n || count > 65536 {
            return vec![gid]; // cannot size it: fewer groups, never more
        }
        n = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    const NOBODY: u32 = 65534;

    fn is_root() -> bool {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// A directory anyone may traverse (tempdirs are 0700), with a file of `mode`.
    fn setup(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        (d, p)
    }

    #[test]
    fn windows_do_not_overlap() {
        let (_d, p) = setup(0o644);
        let me = unsafe { libc::geteuid() };
        let r = read_windows_as(me, None, &[p.clone(), p.clone(), p.clone()], 0, 4, soon());
        let w = r[0].as_ref().unwrap();
        assert_eq!((w.size, w.head.as_slice(), w.tail.as_slice()), (10, &b""[..], &b"6789"[..]));
        assert!(!w.is_whole());
        let r = read_windows_as(me, None, std::slice::from_ref(&p), 3, 4, soon());
        let w = r[0].as_ref().unwrap();
        assert_eq!((w.head.as_slice(), w.tail.as_slice()), (&b"012"[..], &b"6789"[..]));
        let r = read_windows_as(me, None, &[p], 8, 8, soon());
        let w = r[0].as_ref().unwrap();
        assert_eq!((w.head.as_slice(), w.tail.as_slice()), (&b"01234567"[..], &b"89"[..]));
        assert!(w.is_whole());
        assert!(read_windows_as(me, None, &[], 8, 8, soon()).is_empty());
    }

    #[test]
    fn root_only_file_is_refused_to_nobody() {
        if !is_root() {
            eprintln!("skipped: needs root to switch identity");
            return;
        }
        let (_d, secret) = setup(0o600);
        let (_d2, public) = setup(0o644);
        let r = read_windows_as(NOBODY, Some(NOBODY), &[secret.clone(), public.clone()], 0, 64, soon());
        match &r[0] {
            Err(ReadError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied),
            other => panic!("root-only file read as nobody: {other:?}"),
        }
        assert_eq!(r[1].as_ref().unwrap().tail, b"0123456789");
        // The same file as root (uid 0) is readable: the refusal came from the identity.
        assert!(read_windows_as(0, Some(0), &[secret], 0, 64, soon())[0].is_ok());
        // The calling thread kept root's identity.
        assert_eq!(unsafe { libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) }, 0);
    }

    #[test]
    fn group_permissions_apply() {
        if !is_root() {
            return;
        }
        let (_d, p) = setup(0o640);
        std::os::unix::fs::chown(&p, Some(0), Some(NOBODY)).unwrap();
        assert!(read_windows_as(NOBODY, Some(NOBODY), std::slice::from_ref(&p), 0, 64, soon())[0].is_ok());
        assert!(read_windows_as(NOBODY, Some(1), &[p], 0, 64, soon())[0].is_err());
    }

    /// The reader thread's capability lines from /proc, read on that thread.
    fn reader_caps(uid: u32, gid: u32) -> Vec<String> {
        let r = as_user(uid, Some(gid), soon(), 1, |tx| {
            let status = std::fs::read_to_string("/proc/thread-self/status").map_err(ReadError::Io);
            let _ = tx.send((0, status));
        });
        let status = r.into_iter().next().flatten().expect("an answer").expect("status read");
        status.lines().filter(|l| l.starts_with("Cap") && !l.starts_with("CapBnd")).map(str::to_string).collect()
    }

    #[test]
    fn the_reader_thread_holds_no_capability_at_all() {
        let me = unsafe { libc::geteuid() };
        let (uid, gid) = if is_root() { (NOBODY, NOBODY) } else { (me, unsafe { libc::getegid() }) };
        let caps = reader_caps(uid, gid);
        assert_eq!(caps.len(), 4, "{caps:?}");
        for line in &caps {
            assert!(line.ends_with("0000000000000000"), "the reader thread still holds {line}");
        }
        if is_root() {
            // Reading as root itself drops them too (fsuid 0 would keep the file ones otherwise).
            assert!(reader_caps(0, 0).iter().all(|l| l.ends_with("0000000000000000")));
            // The caller kept its own.
            let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            assert!(own.lines().any(|l| l.starts_with("CapEff:") && !l.ends_with("0000000000000000")));
        }
    }

    #[test]
    fn an_unknown_gid_fails_closed() {
        assert!(effective_gid(1000, None, None).unwrap_err().contains("no passwd entry"));
        assert!(effective_gid(1000, Some(0), Some(1000)).unwrap_err().contains("root's group"));
        assert!(effective_gid(1000, Some(0), None).is_err());
        assert_eq!(effective_gid(1000, Some(0), Some(0)).unwrap(), 0, "a user whose primary group is 0");
        assert_eq!(effective_gid(0, Some(0), None).unwrap(), 0);
        assert_eq!(effective_gid(1000, None, Some(100)).unwrap(), 100);
        if !is_root() {
            return;
        }
        // A log readable by group root only: never read for a user whose gid was recorded as 0.
        let (_d, p) = setup(0o640);
        std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
        let r = read_windows_as(NOBODY, Some(0), std::slice::from_ref(&p), 0, 64, soon());
        assert!(matches!(&r[0], Err(ReadError::Identity(w)) if w.contains("root's group")), "{:?}", r[0]);
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let fifo = d.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        let uid = if is_root() { NOBODY } else { unsafe { libc::geteuid() } };
        // Opening a FIFO for reading blocks until a writer comes: returning at all is the test.
        let r = read_windows_as(uid, Some(uid), &[fifo, PathBuf::from("/dev/zero")], 0, 64, soon());
        assert!(matches!(&r[0], Err(ReadError::Refused(w)) if w.contains("FIFO")), "{:?}", r[0]);
        assert!(matches!(&r[1], Err(ReadError::Refused(w)) if w.contains("device")), "{:?}", r[1]);
    }

    #[test]
    fn symlink_to_shadow_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = d.path().join("slurm-1.out");
        std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
        for uid in [NOBODY, 0] {
            if uid != unsafe { libc::geteuid() } && !is_root() {
                continue;
            }
            let r = read_windows_as(uid, Some(uid), std::slice::from_ref(&link), 0, 64, soon());
            assert!(matches!(&r[0], Err(ReadError::Refused(w)) if w.contains("symbolic link")), "{:?}", r[0]);
        }
        // A directory is refused too.
        let r = read_windows_as(0, Some(0), &[d.path().to_path_buf()], 0, 64, soon());
        if is_root() {
            assert!(matches!(&r[0], Err(ReadError::Refused(_))), "{:?}", r[0]);
        }
    }

    #[test]
    fn past_deadline_reads_nothing_and_missing_files_are_errors() {
        let (_d, p) = setup(0o644);
        let me = unsafe { libc::geteuid() };
        let r = read_windows_as(me, None, &[p], 0, 64, Instant::now());
        assert!(matches!(r[0], Err(ReadError::TimedOut)), "{:?}", r[0]);
        let r = read_windows_as(me, None, &[PathBuf::from("/nonexistent/x")], 0, 64, soon());
        assert!(matches!(&r[0], Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound));
    }

    #[test]
    fn non_root_cannot_read_as_someone_else() {
        if is_root() {
            return;
        }
        let (_d, p) = setup(0o644);
        let r = read_windows_as(NOBODY - 1, None, &[p], 0, 64, soon());
        assert!(matches!(r[0], Err(ReadError::Identity(_))));
    }
}
