//! Users and groups as NSS knows them, for the plugin, the epilog and the collector alike.
//!
//! Written once here (it was three hand-written copies of `getpw*_r`/`getgrouplist`) on top of
//! the `nix` crate, which sizes the buffers and owns the `unsafe`. Every look-up goes through
//! NSS, so LDAP/SSSD sites work like local ones. A look-up that fails for any reason (no such
//! entry, NSS down, a name with a NUL) is `None`: callers decide what that means for them, and
//! [`groups_of`] falls back to fewer groups, never more.

use nix::unistd::{Gid, Group, Uid, User as NixUser};
use std::ffi::CString;

/// A passwd entry, as much of it as runledger uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl From<NixUser> for User {
    fn from(u: NixUser) -> Self {
        User { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw() }
    }
}

/// The passwd entry of a uid (getpwuid_r).
pub fn user_by_uid(uid: u32) -> Option<User> {
    NixUser::from_uid(Uid::from_raw(uid)).ok().flatten().map(User::from)
}

/// The passwd entry of a user name (getpwnam_r).
pub fn user_by_name(name: &str) -> Option<User> {
    NixUser::from_name(name).ok().flatten().map(User::from)
}

/// The gid of a group name (getgrnam_r).
pub fn group_id(name: &str) -> Option<u32> {
    Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw())
}

/// The name of a gid (getgrgid_r).
pub fn group_name(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name)
}

/// Every group `name` belongs to, primary `gid` included (getgrouplist), as NSS says now. When
/// the list cannot be had, only `gid`: whoever uses it for access gets fewer groups, never more.
pub fn groups_of(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else { return vec![gid] };
    match nix::unistd::getgrouplist(&cname, Gid::from_raw(gid)) {
        Ok(groups) => groups.into_iter().map(Gid::as_raw).collect(),
        Err(_) => vec![gid],
    }
}

/// This process's effective uid.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// This process's effective gid.
pub fn egid() -> u32 {
    nix::unistd::getegid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_both_ways() {
        let root = user_by_uid(0).expect("uid 0 has a passwd entry");
        assert_eq!(root.name, "root");
        assert_eq!(user_by_name("root"), Some(root.clone()));
        assert!(groups_of(&root.name, root.gid).contains(&root.gid));
        assert_eq!(group_id("root"), Some(0));
    }

    #[test]
    fn unknown_names_are_none_and_groups_fall_back_to_the_primary() {
        assert_eq!(user_by_name("no-such-user-runledger"), None);
        assert_eq!(user_by_name("nul\0byte"), None);
        assert_eq!(group_id("no-such-group-runledger"), None);
        assert_eq!(group_id("nul\0byte"), None);
        assert_eq!(groups_of("nul\0byte", 4242), vec![4242]);
        // An unknown user is in no group of the database: only the primary one given.
        assert_eq!(groups_of("no-such-user-runledger", 4242), vec![4242]);
    }

    #[test]
    fn our_own_uid_is_the_effective_one() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (euid(), egid()));
    }
}
