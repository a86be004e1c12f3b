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
//! The kernel calls go through `nix` and `runledger_record::users`; the two that nix lacks (a
//! thread-only `setgroups`, capabilities) are in [`creds`](crate::creds), the epilog's one
//! `unsafe` module.

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};
use runledger_record::users;
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
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(dir, flags, Mode::empty()).map_err(|e| match e {
        Errno::ELOOP => ReadError::Refused("is a symbolic link".into()),
        Errno::ENOTDIR => ReadError::Refused("not a directory".into()),
        e => ReadError::Io(e.into()),
    })?;
    // The stream reads its own duplicate of the descriptor; entries are stat'ed against `fd`.
    let mut entries = Dir::from_fd(fd.try_clone().map_err(ReadError::Io)?).map_err(|e| ReadError::Io(e.into()))?;
    let mut out = Vec::new();
    for ent in entries.iter().take(max_entries) {
        if Instant::now() >= deadline {
            break;
        }
        let Ok(ent) = ent else { break };
        let name = ent.file_name();
        let Ok(text) = name.to_str() else { continue };
        if text == "." || text == ".." || !keep(text) {
            continue;
        }
        // The link is never followed: only regular files themselves are listed.
        let Ok(st) = nix::sys::stat::fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            continue;
        }
        out.push(DirFile { path: dir.join(text), size: st.st_size as u64, mtime: st.st_mtime });
    }
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
    let euid = users::euid();
    if euid != 0 {
        return if euid == uid {
            crate::creds::drop_thread_capabilities()
        } else {
            Err(format!("not root (euid {euid}): cannot read as uid {uid}"))
        };
    }
    let user = users::user_by_uid(uid);
    let gid = effective_gid(uid, gid, user.as_ref().map(|u| u.gid))?;
    // Without a name the user's supplementary groups are unknown: only the primary group, which
    // can only grant less than the user really has.
    let groups = match &user {
        Some(u) => users::groups_of(&u.name, gid),
        None => vec![gid],
    };
    crate::creds::set_thread_groups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    // setfsuid/setfsgid are per-thread syscalls in glibc too (no setxid broadcast). They report
    // no errors; an invalid id (-1) changes nothing and returns the current value, which is how
    // they are checked.
    nix::unistd::setfsgid(Gid::from_raw(gid));
    nix::unistd::setfsuid(Uid::from_raw(uid));
    let fsgid = nix::unistd::setfsgid(Gid::from_raw(u32::MAX)).as_raw();
    let fsuid = nix::unistd::setfsuid(Uid::from_raw(u32::MAX)).as_raw();
    if fsuid != uid || fsgid != gid {
        return Err(format!("fsuid/fsgid are {fsuid}/{fsgid}, wanted {uid}/{gid}"));
    }
    crate::creds::drop_thread_capabilities()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    const NOBODY: u32 = 65534;

    fn is_root() -> bool {
        users::euid() == 0
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
        let me = users::euid();
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
        assert_eq!(nix::unistd::setfsuid(Uid::from_raw(u32::MAX)).as_raw(), 0);
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
        let me = users::euid();
        let (uid, gid) = if is_root() { (NOBODY, NOBODY) } else { (me, users::egid()) };
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
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o666)).unwrap();
        let uid = if is_root() { NOBODY } else { users::euid() };
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
            if uid != users::euid() && !is_root() {
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
        let me = users::euid();
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
