//! Generates the SPANK bindings from the installed Slurm headers.
//!
//! `<slurm/spank.h>` is read from `$SLURM_INCLUDE_DIR` (default `/usr/include`), so the plugin's
//! `plugin_version` is the SLURM_VERSION_NUMBER of the Slurm it is built for: Slurm refuses to
//! load a plugin built for another major release.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let include = PathBuf::from(env::var_os("SLURM_INCLUDE_DIR").unwrap_or_else(|| "/usr/include".into()));
    let spank_h = include.join("slurm/spank.h");
    if !spank_h.is_file() {
        panic!(
            "{} not found: install Slurm's development headers (Debian: libslurm-dev) or point \
             SLURM_INCLUDE_DIR at the directory that holds slurm/spank.h",
            spank_h.display()
        );
    }
    for h in ["spank.h", "slurm_version.h", "slurm_errno.h"] {
        println!("cargo:rerun-if-changed={}", include.join("slurm").join(h).display());
    }

    // Generate code the workspace's minimum Rust accepts (e.g. no `unsafe extern` blocks before 1.82).
    let target = env::var("CARGO_PKG_RUST_VERSION")
        .ok()
        .and_then(|v| {
            let mut it = v.split('.').skip(1).map(|n| n.parse::<u64>().ok());
            let minor = it.next()??;
            bindgen::RustTarget::stable(minor, it.next().flatten().unwrap_or(0)).ok()
        })
        .unwrap_or_else(|| bindgen::RustTarget::stable(75, 0).expect("1.75 is a known Rust target"));

    let bindings = bindgen::Builder::default()
        .rust_target(target)
        .header_contents("runledger_spank_wrapper.h", "#include <slurm/spank.h>\n")
        .clang_arg(format!("-I{}", include.display()))
        // Only what the plugin uses, so a newer header cannot sneak in anything else.
        .allowlist_type("spank_t")
        .allowlist_type("spank_option")
        .allowlist_type("spank_item")
        .allowlist_type("spank_context")
        .allowlist_function("spank_get_item")
        .allowlist_function("spank_getenv")
        .allowlist_function("spank_setenv")
        .allowlist_function("spank_context")
        .allowlist_function("spank_option_register")
        .allowlist_function("slurm_(error|info|verbose|debug)")
        .allowlist_var("SLURM_VERSION_NUMBER")
        .allowlist_var("ESPANK_SUCCESS")
        // Plain constants, never Rust enums: Slurm may hand back a value this build does not know.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on slurm/spank.h");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("spank_bindings.rs");
    bindings.write_to_file(&out).expect("writing the SPANK bindings");

    link_unwinder_statically();
}

/// Links the unwinder from `libgcc_eh.a` into the plugin, as gcc's `-static-libgcc` does.
///
/// srun and every step's slurmstepd dlopen() the plugin, and neither loads `libgcc_s.so.1` itself:
/// Rust's default dynamic unwinder made each of those dlopen()s load one more library (here 342 µs
/// to load the plugin with it, 176 µs without, 106 µs for an empty C plugin: `bench/plugin-dlopen`).
/// The static unwinder still catches every panic at the `extern "C"` entries (it finds the
/// plugin's frames through `dl_iterate_phdr`, whether or not the process has another unwinder
/// loaded). Without the archive the build still works, with the dynamic unwinder.
fn link_unwinder_statically() {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    println!("cargo:rerun-if-env-changed=CC");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let archive = std::process::Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file());
    match archive.as_deref().and_then(|p| p.parent()) {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=gcc_eh");
        }
        None => println!(
            "cargo:warning=`{cc} -print-file-name=libgcc_eh.a` found no archive: the plugin will load libgcc_s.so.1"
        ),
    }
}
