//! What the plugin can learn from the process that loaded it, as a safe trait.
//!
//! [`crate::ffi::Spank`] implements [`Host`] over the real SPANK handle inside slurmstepd, srun
//! or sbatch; the unit tests implement it with plain data. Everything above this trait is safe
//! Rust that never sees a raw pointer.

use std::fmt;

/// How loud a message is in Slurm's log (slurm_error, slurm_info, slurm_verbose, slurm_debug).
/// Here, below both the logger (crate::log) and the SPANK binding that prints (crate::ffi).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Info,
    Verbose,
    Debug,
}

/// Where the plugin was loaded (`spank_context()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// srun.
    Local,
    /// slurmstepd: the only place steps are recorded.
    Remote,
    /// sbatch / salloc.
    Allocator,
    /// slurmd itself.
    Slurmd,
    /// slurmd's prolog/epilog runner.
    JobScript,
    /// `spank_context()` failed or returned a value this build does not know.
    Unknown,
}

impl Context {
    /// The contexts that take `--runledger-tag`: where the user types it (srun, sbatch/salloc)
    /// and where its value is delivered (slurmstepd).
    pub fn takes_options(self) -> bool {
        matches!(self, Context::Local | Context::Remote | Context::Allocator)
    }
}

/// A SPANK error code (`spank_err_t`), shown by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpankError(pub u32);

impl SpankError {
    // slurm/slurm_errno.h, 22.05: ESPANK_ERROR = 3000 and the codes that follow it.
    const NAMES: [&'static str; 11] = [
        "ESPANK_ERROR",
        "ESPANK_BAD_ARG",
        "ESPANK_NOT_TASK",
        "ESPANK_ENV_EXISTS",
        "ESPANK_ENV_NOEXIST",
        "ESPANK_NOSPACE",
        "ESPANK_NOT_REMOTE",
        "ESPANK_NOEXIST",
        "ESPANK_NOT_EXECD",
        "ESPANK_NOT_AVAIL",
        "ESPANK_NOT_LOCAL",
    ];

    /// Not a Slurm code: the item came back as a null pointer or otherwise unusable.
    pub const INVALID: SpankError = SpankError(u32::MAX);

    pub fn name(self) -> Option<&'static str> {
        self.0.checked_sub(3000).and_then(|i| Self::NAMES.get(i as usize).copied())
    }
}

impl fmt::Display for SpankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None if *self == SpankError::INVALID => f.write_str("invalid value"),
            None => write!(f, "spank error {}", self.0),
        }
    }
}

impl std::error::Error for SpankError {}

pub type SpankResult<T> = Result<T, SpankError>;

/// Resource use of the reaped children of this process (`getrusage(RUSAGE_CHILDREN)`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rusage {
    pub user_s: f64,
    pub sys_s: f64,
    /// Largest resident set of any one child, in KiB (Linux's `ru_maxrss` unit).
    pub max_rss_kib: u64,
}

/// The SPANK handle's items plus the few OS facts a record needs.
///
/// Item getters mirror `spank_get_item` (and its C types); strings and environment entries are
/// raw bytes because nothing guarantees they are UTF-8.
pub trait Host {
    fn context(&self) -> Context;

    fn job_id(&self) -> SpankResult<u32>;
    fn step_id(&self) -> SpankResult<u32>;
    fn uid(&self) -> SpankResult<u32>;
    fn gid(&self) -> SpankResult<u32>;
    fn nnodes(&self) -> SpankResult<u32>;
    fn node_id(&self) -> SpankResult<u32>;
    fn local_task_count(&self) -> SpankResult<u32>;
    fn total_task_count(&self) -> SpankResult<u32>;
    /// S_JOB_NCPUS is a `uint16_t`.
    fn ncpus(&self) -> SpankResult<u16>;
    /// S_JOB_ALLOC_MEM: the job's memory on this node in MiB, a `uint64_t` (0: no limit).
    fn job_alloc_mem(&self) -> SpankResult<u64>;
    fn argv(&self) -> SpankResult<Vec<Vec<u8>>>;
    /// The step's environment, `NAME=value` entries.
    fn env(&self) -> SpankResult<Vec<Vec<u8>>>;
    /// One variable of the step's environment; `Ok(None)` when unset.
    fn getenv(&self, name: &str) -> SpankResult<Option<Vec<u8>>>;
    /// S_JOB_ARRAY_ID: 0 when the job is not part of an array.
    fn array_job_id(&self) -> SpankResult<u32>;
    fn array_task_id(&self) -> SpankResult<u32>;
    fn slurm_version(&self) -> SpankResult<String>;

    // Task items: only valid in task callbacks.
    fn task_id(&self) -> SpankResult<i32>;
    fn task_global_id(&self) -> SpankResult<u32>;
    /// The raw wait(2) status of the task (task_exit only).
    fn task_exit_status(&self) -> SpankResult<i32>;
    fn task_pid(&self) -> SpankResult<i32>;

    /// Registers `--runledger-tag` (slurm_spank_init only).
    fn register_tag_option(&self) -> SpankResult<()>;
    /// Registers `--runledger-python` (srun, sbatch, salloc and slurmstepd).
    fn register_python_option(&self) -> SpankResult<()>;
    /// Sets a variable in the environment the step's tasks start with (remote context).
    fn setenv(&self, name: &str, value: &str) -> SpankResult<()>;

    // OS facts.
    /// The passwd name of `uid` (getpwuid_r).
    fn user_name(&self, uid: u32) -> Option<String>;
    /// This machine's host name (gethostname).
    fn hostname(&self) -> Option<String>;
    fn children_rusage(&self) -> Option<Rusage>;
}
