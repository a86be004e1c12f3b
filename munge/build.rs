//! Link against the system libmunge.
//!
//! We ask pkg-config first (it knows about non-standard prefixes); if it has
//! no `munge.pc` we fall back to a plain `-lmunge`, which works for the
//! distribution packages (Debian's `libmunge-dev`, EL's `munge-devel`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if pkg_config::Config::new().atleast_version("0.5").probe("munge").is_ok() {
        // pkg-config has emitted the link-lib / link-search lines.
        return;
    }
    println!("cargo:rustc-link-lib=munge");
}
