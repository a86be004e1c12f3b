//! The one place with `unsafe`: the SPANK ABI.
//!
//! - the symbols `SPANK_PLUGIN(runledger, 1)` defines, with C layout;
//! - the `slurm_spank_*` entry points, each a thin shim that builds a [`Spank`] handle and calls
//!   the safe callback in `lib.rs` inside `catch_unwind` (a panic is logged, never unwinds into
//!   Slurm, and the callback returns 0);
//! - [`Spank`], the safe [`Host`] over a `spank_t`;
//! - logging through `slurm_error`/`slurm_info`/... always with a `"%s"` format.
//!
//! Bindings come from bindgen over the installed `<slurm/spank.h>` (build.rs). libslurm is never
//! linked: `spank_*` and `slurm_*` stay undefined in the .so and resolve from the process that
//! dlopen()s it (slurmstepd, srun, sbatch, salloc, slurmd).
//!
//! Compiled out of the unit tests (whose binary has no Slurm to resolve those symbols); the logic
//! it calls is tested through [`Host`] fakes.

#![allow(unsafe_code)]

use crate::host::{Context, Host, Level, Rusage, SpankError, SpankResult};
use std::ffi::{c_char, c_int, CStr, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

#[allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, clippy::all)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/spank_bindings.rs"));
}

// --- SPANK_PLUGIN(runledger, 1) ---------------------------------------------------------------

/// `const char plugin_name[] = "runledger";`
#[no_mangle]
pub static plugin_name: [u8; 10] = *b"runledger\0";
/// `const char plugin_type[] = "spank";`
#[no_mangle]
pub static plugin_type: [u8; 6] = *b"spank\0";
/// `const unsigned int plugin_version = SLURM_VERSION_NUMBER;` of the headers built against.
#[no_mangle]
pub static plugin_version: u32 = sys::SLURM_VERSION_NUMBER;
/// `const unsigned int spank_plugin_version = 1;`
#[no_mangle]
pub static spank_plugin_version: u32 = 1;

// The name in the symbol and the one the option env variables use must agree.
const _: () = {
    let (a, b) = (plugin_name, crate::PLUGIN_NAME.as_bytes());
    assert!(a.len() == b.len() + 1 && a[a.len() - 1] == 0);
    let mut i = 0;
    while i < b.len() {
        assert!(a[i] == b[i]);
        i += 1;
    }
};

// --- entry points -----------------------------------------------------------------------------

type Callback = fn(&dyn Host, &[String]) -> i32;

/// Runs a safe callback for a `spank_f` entry point. Never unwinds; a panic returns 0.
///
/// # Safety
/// `sp`, `ac` and `av` are what Slurm passed to the entry point.
unsafe fn enter(name: &str, sp: sys::spank_t, ac: c_int, av: *mut *mut c_char, f: Callback) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let args = unsafe { plugin_args(ac, av) };
        let spank = Spank { sp, _handle: PhantomData };
        f(&spank, &args)
    }));
    match result {
        Ok(rc) => rc,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // Even logging is guarded: nothing may unwind into Slurm.
            let _ = catch_unwind(|| log(Level::Error, &format!("runledger: {name}: internal error: {msg}")));
            0
        }
    }
}

/// The plugin's arguments from plugstack.conf.
///
/// # Safety
/// `av` is null or points to `ac` pointers, each null or a C string.
unsafe fn plugin_args(ac: c_int, av: *mut *mut c_char) -> Vec<String> {
    if av.is_null() || ac <= 0 {
        return Vec::new();
    }
    let raw = unsafe { std::slice::from_raw_parts(av, ac as usize) };
    raw.iter().filter(|p| !p.is_null()).map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()).collect()
}

/// # Safety
/// Called by Slurm with a valid handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init(sp: sys::spank_t, ac: c_int, av: *mut *mut c_char) -> c_int {
    unsafe { enter("slurm_spank_init", sp, ac, av, crate::on_init) }
}

/// # Safety
/// Called by Slurm with a valid handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init_post_opt(sp: sys::spank_t, ac: c_int, av: *mut *mut c_char) -> c_int {
    unsafe { enter("slurm_spank_init_post_opt", sp, ac, av, crate::on_init_post_opt) }
}

/// # Safety
/// Called by Slurm with a valid handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_task_post_fork(sp: sys::spank_t, ac: c_int, av: *mut *mut c_char) -> c_int {
    unsafe { enter("slurm_spank_task_post_fork", sp, ac, av, crate::on_task_post_fork) }
}

/// # Safety
/// Called by Slurm with a valid handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_task_exit(sp: sys::spank_t, ac: c_int, av: *mut *mut c_char) -> c_int {
    unsafe { enter("slurm_spank_task_exit", sp, ac, av, crate::on_task_exit) }
}

/// # Safety
/// Called by Slurm with a valid handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_exit(sp: sys::spank_t, ac: c_int, av: *mut *mut c_char) -> c_int {
    unsafe { enter("slurm_spank_exit", sp, ac, av, crate::on_exit) }
}

/// The `--runledger-tag` callback (`spank_opt_cb_f`).
unsafe extern "C" fn tag_option_cb(_val: c_int, optarg: *const c_char, remote: c_int) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let arg = if optarg.is_null() { None } else { Some(unsafe { CStr::from_ptr(optarg) }.to_bytes()) };
        crate::on_tag_option(arg, remote != 0)
    }));
    result.unwrap_or_else(|_| {
        let _ = catch_unwind(|| log(Level::Error, "runledger: --runledger-tag: internal error; option ignored"));
        0
    })
}

/// The `--runledger-python` callback (`spank_opt_cb_f`).
unsafe extern "C" fn python_option_cb(_val: c_int, optarg: *const c_char, remote: c_int) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let arg = if optarg.is_null() { None } else { Some(unsafe { CStr::from_ptr(optarg) }.to_bytes()) };
        crate::on_python_option(arg, remote != 0)
    }));
    result.unwrap_or_else(|_| {
        let _ = catch_unwind(|| log(Level::Error, "runledger: --runledger-python: internal error; option ignored"));
        0
    })
}

// --- the handle -------------------------------------------------------------------------------

/// A SPANK handle, valid for the duration of one callback.
pub struct Spank<'a> {
    sp: sys::spank_t,
    _handle: PhantomData<&'a ()>,
}

fn check(rc: sys::spank_err_t) -> SpankResult<()> {
    if rc == sys::ESPANK_SUCCESS {
        Ok(())
    } else {
        Err(SpankError(rc))
    }
}

/// Most entries read from a C string array (argv, env): a guard against a missing terminator.
const MAX_ARRAY: usize = 1 << 20;

/// Copies a NULL-terminated (or `len`-long) array of C strings.
///
/// # Safety
/// `arr` is null or points to C string pointers, terminated by null or at least `len` long.
unsafe fn c_string_array(arr: *const *const c_char, len: Option<usize>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if arr.is_null() {
        return out;
    }
    for i in 0..len.unwrap_or(MAX_ARRAY).min(MAX_ARRAY) {
        let p = unsafe { *arr.add(i) };
        if p.is_null() {
            if len.is_none() {
                break;
            }
            continue;
        }
        out.push(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec());
    }
    out
}

impl Spank<'_> {
    fn item_u32(&self, item: sys::spank_item_t) -> SpankResult<u32> {
        let mut v: u32 = 0;
        // The item's documented argument type is uint32_t * (uid_t/gid_t are u32 on Linux).
        check(unsafe { sys::spank_get_item(self.sp, item, &mut v as *mut u32) })?;
        Ok(v)
    }

    fn item_int(&self, item: sys::spank_item_t) -> SpankResult<i32> {
        let mut v: c_int = 0;
        check(unsafe { sys::spank_get_item(self.sp, item, &mut v as *mut c_int) })?;
        Ok(v)
    }
}

impl Host for Spank<'_> {
    fn context(&self) -> Context {
        match unsafe { sys::spank_context() } {
            sys::S_CTX_LOCAL => Context::Local,
            sys::S_CTX_REMOTE => Context::Remote,
            sys::S_CTX_ALLOCATOR => Context::Allocator,
            sys::S_CTX_SLURMD => Context::Slurmd,
            sys::S_CTX_JOB_SCRIPT => Context::JobScript,
            _ => Context::Unknown,
        }
    }

    fn job_id(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_ID)
    }
    fn step_id(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_STEPID)
    }
    fn uid(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_UID)
    }
    fn gid(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_GID)
    }
    fn nnodes(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_NNODES)
    }
    fn node_id(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_NODEID)
    }
    fn local_task_count(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_LOCAL_TASK_COUNT)
    }
    fn total_task_count(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_TOTAL_TASK_COUNT)
    }

    fn ncpus(&self) -> SpankResult<u16> {
        // uint16_t *, not uint32_t *: Slurm writes two bytes.
        let mut v: u16 = 0;
        check(unsafe { sys::spank_get_item(self.sp, sys::S_JOB_NCPUS, &mut v as *mut u16) })?;
        Ok(v)
    }

    fn job_alloc_mem(&self) -> SpankResult<u64> {
        // uint64_t * in 22.05 and 24.11 alike.
        let mut v: u64 = 0;
        check(unsafe { sys::spank_get_item(self.sp, sys::S_JOB_ALLOC_MEM, &mut v as *mut u64) })?;
        Ok(v)
    }

    fn argv(&self) -> SpankResult<Vec<Vec<u8>>> {
        let mut argc: c_int = 0;
        let mut argv: *const *const c_char = ptr::null();
        check(unsafe {
            sys::spank_get_item(
                self.sp,
                sys::S_JOB_ARGV,
                &mut argc as *mut c_int,
                &mut argv as *mut *const *const c_char,
            )
        })?;
        let argc = usize::try_from(argc).map_err(|_| SpankError::INVALID)?;
        Ok(unsafe { c_string_array(argv, Some(argc)) })
    }

    fn env(&self) -> SpankResult<Vec<Vec<u8>>> {
        let mut env: *const *const c_char = ptr::null();
        check(unsafe { sys::spank_get_item(self.sp, sys::S_JOB_ENV, &mut env as *mut *const *const c_char) })?;
        Ok(unsafe { c_string_array(env, None) })
    }

    fn getenv(&self, name: &str) -> SpankResult<Option<Vec<u8>>> {
        let name = CString::new(name).map_err(|_| SpankError::INVALID)?;
        let mut len = 4096usize;
        loop {
            let mut buf = vec![0u8; len];
            let rc = unsafe { sys::spank_getenv(self.sp, name.as_ptr(), buf.as_mut_ptr().cast(), len as c_int) };
            match rc {
                sys::ESPANK_SUCCESS => {
                    let n = buf.iter().position(|&c| c == 0).unwrap_or(len);
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                sys::ESPANK_ENV_NOEXIST => return Ok(None),
                sys::ESPANK_NOSPACE if len < 16 << 20 => len *= 4,
                rc => return Err(SpankError(rc)),
            }
        }
    }

    fn array_job_id(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_ARRAY_ID)
    }
    fn array_task_id(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_JOB_ARRAY_TASK_ID)
    }

    fn slurm_version(&self) -> SpankResult<String> {
        let mut v: *const c_char = ptr::null();
        check(unsafe { sys::spank_get_item(self.sp, sys::S_SLURM_VERSION, &mut v as *mut *const c_char) })?;
        if v.is_null() {
            return Err(SpankError::INVALID);
        }
        Ok(unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
    }

    fn task_id(&self) -> SpankResult<i32> {
        self.item_int(sys::S_TASK_ID)
    }
    fn task_global_id(&self) -> SpankResult<u32> {
        self.item_u32(sys::S_TASK_GLOBAL_ID)
    }
    fn task_exit_status(&self) -> SpankResult<i32> {
        self.item_int(sys::S_TASK_EXIT_STATUS)
    }
    fn task_pid(&self) -> SpankResult<i32> {
        let mut v: libc::pid_t = 0;
        check(unsafe { sys::spank_get_item(self.sp, sys::S_TASK_PID, &mut v as *mut libc::pid_t) })?;
        Ok(v)
    }

    fn register_tag_option(&self) -> SpankResult<()> {
        // Slurm keeps the pointers for the life of the process: leak one small allocation per
        // process (slurm_spank_init runs once) rather than hand out pointers to read-only data.
        let leak = |s: &str| CString::new(s).expect("no NUL in option strings").into_raw();
        let opt = Box::into_raw(Box::new(sys::spank_option {
            name: leak(crate::TAG_OPTION),
            arginfo: leak(crate::TAG_ARGINFO),
            usage: leak(crate::TAG_USAGE),
            has_arg: 1,
            val: 0,
            cb: Some(tag_option_cb),
        }));
        check(unsafe { sys::spank_option_register(self.sp, opt) })
    }

    fn register_python_option(&self) -> SpankResult<()> {
        // Leaked like the tag option's: Slurm keeps the pointers for the life of the process.
        let leak = |s: &str| CString::new(s).expect("no NUL in option strings").into_raw();
        let opt = Box::into_raw(Box::new(sys::spank_option {
            name: leak(crate::python::OPTION),
            arginfo: leak(crate::python::OPTION_ARGINFO),
            usage: leak(crate::python::OPTION_USAGE),
            has_arg: 1,
            val: 0,
            cb: Some(python_option_cb),
        }));
        check(unsafe { sys::spank_option_register(self.sp, opt) })
    }

    fn setenv(&self, name: &str, value: &str) -> SpankResult<()> {
        let name = CString::new(name).map_err(|_| SpankError::INVALID)?;
        let value = CString::new(value).map_err(|_| SpankError::INVALID)?;
        check(unsafe { sys::spank_setenv(self.sp, name.as_ptr(), value.as_ptr(), 1) })
    }

    // The three below are plain libc calls: safe through record's users module and nix.
    fn user_name(&self, uid: u32) -> Option<String> {
        runledger_record::users::user_by_uid(uid).map(|u| u.name)
    }

    fn hostname(&self) -> Option<String> {
        nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned())
    }

    fn children_rusage(&self) -> Option<Rusage> {
        use nix::sys::{resource, time::TimeValLike};
        let ru = resource::getrusage(resource::UsageWho::RUSAGE_CHILDREN).ok()?;
        let secs = |tv: nix::sys::time::TimeVal| tv.num_microseconds() as f64 / 1e6;
        Some(Rusage {
            user_s: secs(ru.user_time()),
            sys_s: secs(ru.system_time()),
            max_rss_kib: u64::try_from(ru.max_rss()).unwrap_or(0),
        })
    }
}

// --- logging ----------------------------------------------------------------------------------

/// Logs through Slurm. The message is always an argument to `"%s"`, never a format.
pub fn log(level: Level, msg: &str) {
    let msg = CString::new(msg.replace('\0', "\\0")).expect("NULs replaced");
    let fmt = c"%s".as_ptr();
    unsafe {
        match level {
            Level::Error => sys::slurm_error(fmt, msg.as_ptr()),
            Level::Info => sys::slurm_info(fmt, msg.as_ptr()),
            Level::Verbose => sys::slurm_verbose(fmt, msg.as_ptr()),
            Level::Debug => sys::slurm_debug(fmt, msg.as_ptr()),
        }
    }
}
