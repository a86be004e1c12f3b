//! runledger's SPANK plugin: records every Slurm job step into the node-local spool.
//!
//! Loaded by srun, sbatch/salloc and slurmstepd (`required runledger.so spool=... env_allow=...
//! env_deny=...` in plugstack.conf). In srun/sbatch/salloc it only handles `--runledger-tag`; in
//! slurmstepd (remote context, as root) it writes, per step and node:
//!
//! - `<spool>/jobs/<job>/<step>.start.json`, a [`runledger_record::StepStart`], built when the
//!   step's options are known (slurm_spank_init_post_opt) and written by the step's helper thread
//!   once it has found the executable, or by task_post_fork if the helper has not by then, so it
//!   is in the spool before any task runs; rewritten in task_post_fork if local task 0's real
//!   working directory differs from the environment's guess;
//! - `<spool>/jobs/<job>/<step>.end.json`, a [`runledger_record::StepEnd`], when the step is over
//!   (slurm_spank_exit), with every task's exit status, the step's CPU time and, for the batch
//!   step, where task 0 wrote stdout/stderr.
//!
//! For the node package's Python hook it makes each job a directory of the job's user and names
//! it to the tasks (`python`; off with `python=no`, `--runledger-python=no`, `RUNLEDGER_PYTHON=0`).
//! The helper thread makes it, and the first task's post-fork callback waits for that, so the
//! step's start does not wait for the file system (0.1 ms) and no task runs before it exists.
//!
//! It never harms a job: every callback returns 0 and only logs what went wrong, except the
//! option callback, which refuses a bad `--runledger-tag` in srun/sbatch/salloc (not in
//! slurmstepd). Nothing runs in the forked task before exec (no task_init/user_init callbacks).
//!
//! All `unsafe` and FFI is in `ffi`, behind the safe [`host::Host`] trait; the callbacks below
//! are thin, the logic lives in `step`, `tags` and `config`.

#![deny(unsafe_code)]

mod config;
#[cfg(not(test))]
mod ffi;
pub mod host;
mod log;
mod privileged;
mod python;
mod sampler;
mod step;
mod tags;

use config::Config;
use host::{Context, Host};
use runledger_record::spool::{expand_node, Spool};
use runledger_record::{now, Item, StepStart, TaskExit, STEP_BATCH};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Instant;
use step::{StepFacts, StepOutcome};

/// The plugin's name in Slurm's logs and option names (`_SLURM_SPANK_OPTION_runledger_...`).
pub const PLUGIN_NAME: &str = "runledger";
/// The option users tag steps with.
pub const TAG_OPTION: &str = "runledger-tag";
pub const TAG_ARGINFO: &str = "key=value[,key=value...]";
pub const TAG_USAGE: &str = "Label this job or step in runledger (at most 16 tags; key: 1-64 of A-Z a-z 0-9 _ . -; \
                             value: up to 256 printable characters, no ','). Give all tags in one option.";

/// What one process (one slurmstepd = one step on one node) remembers between callbacks.
#[derive(Debug, Default)]
struct Plugin {
    config: Config,
    tags: BTreeMap<String, String>,
    /// The step's start record, kept for its end record, shared with the helper thread.
    start: Option<Arc<PendingStart>>,
    outcome: StepOutcome,
    /// The step's helper thread (it makes the Python directory, finds the executable and writes
    /// the start record, then ends) and, from the first task's post-fork on, the thread that
    /// samples the step's processes over time and, in the batch step, looks for modules loaded
    /// inside the script.
    sampler: Option<sampler::Sampler>,
    /// `--runledger-python=yes|no`, when given.
    python_option: Option<bool>,
}

/// The start record while the helper thread may still be finding the executable. Whoever changes
/// it writes it, under the lock, so the file always holds the latest whole record.
#[derive(Debug)]
struct PendingStart {
    state: Mutex<StartState>,
    /// Signalled when the Python directory is made and when the executable search is over.
    found: Condvar,
    /// When slurm_spank_exit stops waiting for the executable.
    exe_deadline: Instant,
    spool: PathBuf,
}

#[derive(Debug)]
struct StartState {
    start: StepStart,
    /// The record is in the spool (or its write failed and was logged).
    written: bool,
    exe_done: bool,
    /// The job's Python directory is made (or was not to be, or could not be: then the record
    /// names none).
    python_done: bool,
    /// The step's end has taken the record: a late executable is dropped rather than written
    /// over what the end wrote.
    closed: bool,
}

impl PendingStart {
    fn new(start: StepStart, exe_done: bool, python_done: bool, spool: PathBuf) -> PendingStart {
        PendingStart {
            state: Mutex::new(StartState { start, written: false, exe_done, python_done, closed: false }),
            found: Condvar::new(),
            exe_deadline: Instant::now() + step::EXE_LOOKUP_BOUND,
            spool,
        }
    }

    fn lock(&self) -> MutexGuard<'_, StartState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On the helper thread (before [`Self::find_exe`]): makes the job's Python directory, if
    /// the step's start left that to it; the record names no directory when that failed.
    fn make_python_dir(&self, prep: Option<PythonPrep>) {
        let Some(p) = prep else { return };
        let made = privileged::as_root(|| python::prepare(&p.base, p.job_id, p.uid, p.gid));
        let mut st = self.lock();
        if let Err(e) = made {
            log::error(&format!(
                "step {}: no Python records: cannot make the job's directory in {}: {e}",
                label(&st.start),
                p.base.display()
            ));
            st.start.python_dir = None;
        }
        st.python_done = true;
        self.found.notify_all();
    }

    /// The state once the job's Python directory is made, or `wait` has passed.
    fn python_made(&self, wait: std::time::Duration) -> MutexGuard<'_, StartState> {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        while !st.python_done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::error(&format!(
                    "step {}: the job's Python directory is not made after {} ms; the tasks start without it",
                    label(&st.start),
                    wait.as_millis()
                ));
                break;
            }
            st = self.found.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        st
    }

    /// On the helper thread: finds the executable, then writes the record with it.
    fn find_exe(&self, query: Option<step::ExeQuery>) {
        let exe = query.and_then(|q| q.resolve());
        let mut st = self.lock();
        st.exe_done = true;
        self.found.notify_all();
        if st.closed {
            return;
        }
        st.start.exe = exe;
        let _logged = write_item(&self.spool, &Item::StepStart(st.start.clone()));
        st.written = true;
    }

    /// The record at the step's end, written if nobody has yet; waits for the executable until
    /// [`step::EXE_LOOKUP_BOUND`] after the step's start at most.
    fn close(&self) -> StepStart {
        let mut st = self.lock();
        while !st.exe_done {
            let left = self.exe_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.found.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        st.closed = true;
        if !st.written {
            let _logged = write_item(&self.spool, &Item::StepStart(st.start.clone()));
            st.written = true;
        }
        st.start.clone()
    }
}

/// The job's Python directory, left for the helper thread to make (it was not made yet).
#[derive(Clone, Debug)]
struct PythonPrep {
    base: PathBuf,
    job_id: u32,
    uid: u32,
    gid: u32,
}

// Callbacks run one at a time on slurmstepd's main thread; the lock guards against the
// unexpected (a re-entrant call would otherwise deadlock the step, so it is refused instead).
static PLUGIN: Mutex<Option<Plugin>> = Mutex::new(None);

fn with_plugin(what: &str, f: impl FnOnce(&mut Plugin) -> i32) -> i32 {
    let mut guard = match PLUGIN.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => {
            log::error(&format!("{what}: plugin state busy (re-entrant call?); skipped"));
            return 0;
        }
    };
    f(guard.get_or_insert_with(Plugin::default))
}

// --- the callbacks, called by `ffi` inside catch_unwind -------------------------------------

pub fn on_init(host: &dyn Host, args: &[String]) -> i32 {
    let ctx = host.context();
    // Slurm only delivers an option's value to slurmstepd if the option is registered there too.
    if ctx.takes_options() {
        if let Err(e) = host.register_tag_option() {
            log::error(&format!("cannot register --{TAG_OPTION}: {e}"));
        }
        if let Err(e) = host.register_python_option() {
            log::error(&format!("cannot register --{}: {e}", python::OPTION));
        }
    }
    with_plugin("slurm_spank_init", |p| p.init(ctx, args))
}

pub fn on_tag_option(arg: Option<&[u8]>, remote: bool) -> i32 {
    let parsed = arg.ok_or_else(|| "a value is required (key=value[,key=value...])".to_string()).and_then(tags::parse);
    match parsed {
        Ok(tags) => with_plugin("--runledger-tag", |p| {
            p.tags = tags;
            0
        }),
        Err(e) if remote => {
            // srun/sbatch checked it already; whatever happened, the step runs, without tags.
            log::error(&format!("--{TAG_OPTION}: {e}; recording the step without tags"));
            with_plugin("--runledger-tag", |p| {
                p.tags.clear();
                0
            })
        }
        Err(e) => {
            log::error(&format!("--{TAG_OPTION}: {e}"));
            -1
        }
    }
}

pub fn on_python_option(arg: Option<&[u8]>, remote: bool) -> i32 {
    let value = arg.map(String::from_utf8_lossy).unwrap_or_default();
    match python::parse_switch(&value) {
        Some(on) => with_plugin("--runledger-python", |p| {
            p.python_option = Some(on);
            0
        }),
        // srun/sbatch checked it already; in slurmstepd the step runs whatever it says.
        None if remote => 0,
        None => {
            log::error(&format!("--{}: expected yes or no, not '{value}'", python::OPTION));
            -1
        }
    }
}

pub fn on_init_post_opt(host: &dyn Host, _args: &[String]) -> i32 {
    if host.context() != Context::Remote {
        return 0;
    }
    with_plugin("slurm_spank_init_post_opt", |p| p.step_started(host))
}

pub fn on_task_post_fork(host: &dyn Host, _args: &[String]) -> i32 {
    if host.context() != Context::Remote {
        return 0;
    }
    with_plugin("slurm_spank_task_post_fork", |p| p.task_forked(host))
}

pub fn on_task_exit(host: &dyn Host, _args: &[String]) -> i32 {
    if host.context() != Context::Remote {
        return 0;
    }
    with_plugin("slurm_spank_task_exit", |p| p.task_exited(host))
}

pub fn on_exit(host: &dyn Host, _args: &[String]) -> i32 {
    if host.context() != Context::Remote {
        return 0;
    }
    with_plugin("slurm_spank_exit", |p| p.step_ended(host))
}

impl Plugin {
    fn init(&mut self, ctx: Context, args: &[String]) -> i32 {
        // Arguments matter only where records are written; elsewhere an error would only
        // confuse the user at their terminal.
        if ctx == Context::Remote {
            let (config, errors) = Config::from_args(args);
            for e in errors {
                log::error(&e);
            }
            self.config = config;
        }
        0
    }

    fn step_started(&mut self, host: &dyn Host) -> i32 {
        let mut problems = Vec::new();
        let facts = StepFacts::gather(host, &mut problems);
        let label = step::step_label(facts.job_id, facts.step_id);
        for p in problems {
            log::error(&format!("step {label}: {p}"));
        }
        let mut start = step::build_start_without_exe(&facts, &self.config.env_filter, &self.tags, now());
        let prep = match self.python_dir(host, &start) {
            Some((dir, prep)) => {
                start.python_dir = Some(dir);
                prep
            }
            None => None,
        };
        // The job's Python directory (mkdir, chown, chmod, rename: 0.1 ms), the executable search
        // (a stat per PATH entry, as the user, maybe on a hung mount), the record's write and the
        // usage baseline run on the step's helper thread, which then ends (sampling starts on a
        // thread of its own in task_post_fork): the step's start waits for none of them
        // (bench/plugin-callbacks times each).
        let query = step::exe_query(&facts, &start);
        let batch = start.step_id == STEP_BATCH;
        let pending = Arc::new(PendingStart::new(start, query.is_none(), prep.is_none(), self.config.spool.clone()));
        let watch = sampler::Watch {
            modules_root: None,
            modules_later: batch,
            usage: (self.config.sample_interval > 0).then(|| (std::process::id() as i32, self.config.sample_interval)),
        };
        let helper = Arc::clone(&pending);
        let helper_prep = prep.clone();
        let first = move || {
            helper.make_python_dir(helper_prep);
            helper.find_exe(query)
        };
        match sampler::Sampler::start_after(watch, Some(Box::new(first))) {
            Ok(s) => self.sampler = Some(s),
            Err(e) => {
                log::error(&format!(
                    "step {label}: cannot start the helper thread: {e}; no executable, no usage series"
                ));
                pending.make_python_dir(prep);
                pending.lock().exe_done = true;
            }
        }
        self.start = Some(pending);
        0
    }

    /// Names the job's Python directory to the tasks, unless the site, the option or the job's
    /// environment says no; `None` when Python is not recorded, else the directory and, unless
    /// an earlier step of the job made it, what the helper thread has to make. Cheap: two
    /// `lstat`s in slurmstepd before the tasks exist, nothing in the forked task.
    fn python_dir(&self, host: &dyn Host, start: &StepStart) -> Option<(String, Option<PythonPrep>)> {
        use runledger_record::python::{DIR_ENV, OPT_OUT_ENV};
        let env_value = host.getenv(OPT_OUT_ENV).ok().flatten();
        if !python::wanted(self.config.python, self.python_option, env_value.as_deref()) {
            return None;
        }
        let base = expand_node(&self.config.python_dir, &start.node);
        let dir = python::job_dir(&base, start.job_id).to_string_lossy().into_owned();
        let prep = (!python::is_made(&base, start.job_id, start.uid)).then_some(PythonPrep {
            base,
            job_id: start.job_id,
            uid: start.uid,
            gid: start.gid,
        });
        // A step started by srun in a batch script has the batch step's value already (srun
        // passes the script's environment on). Setting it again would cost slurmstepd's
        // setenvf(), which allocates and clears 256 KiB: about 0.2 ms of a step's start here,
        // the largest single part of the plugin's (uprobes on slurm_spank_init_post_opt).
        if host.getenv(DIR_ENV).ok().flatten().as_deref() == Some(dir.as_bytes()) {
            return Some((dir, prep));
        }
        match host.setenv(DIR_ENV, &dir) {
            Ok(()) => Some((dir, prep)),
            Err(e) => {
                log::error(&format!("step {}: no Python records: cannot set {DIR_ENV}: {e}", label(start)));
                None
            }
        }
    }

    fn task_forked(&mut self, host: &dyn Host) -> i32 {
        let Some(pending) = &self.start else { return 0 };
        let (job_id, step_id) = {
            let st = pending.lock();
            (st.start.job_id, st.start.step_id)
        };
        let label = step::step_label(job_id, step_id);
        let first_local = host.task_id().ok() == Some(0);
        let batch_output = step_id == STEP_BATCH && host.task_global_id().ok() == Some(0);
        if !first_local && !batch_output {
            return 0;
        }
        let pid = match host.task_pid() {
            Ok(pid) => pid,
            Err(e) => {
                log::error(&format!("step {label}: cannot read the pid of a task: {e}"));
                return 0;
            }
        };
        // slurmstepd chdir()s to the step's directory before it forks the tasks, so the task has
        // it already. Its stdio it sets up itself (prepare_stdio) just before it blocks on a pipe
        // until slurmstepd lets it exec, after this callback: wait for that point, briefly.
        if batch_output {
            if !step::wait_until_blocked_in_read(pid, step::STDIO_WAIT) {
                log::debug(&format!("step {label}: batch task not at its exec barrier; reading stdio anyway"));
            }
            self.outcome.stdout = step::open_file_path(pid, 1);
            self.outcome.stderr = step::open_file_path(pid, 2);
        }
        // Modules are looked for once the tasks exist (all of them: slurmstepd forks every local
        // task before their post_fork callbacks), so /proc is never read beside a fork.
        if let (true, Some(sampler)) = (batch_output, &self.sampler) {
            sampler.watch_modules(pid);
        }
        // Sampling starts now, on a thread of its own: every task is forked (a thread alive
        // during the forks makes each dearer, see sampler::Sampler::start_after).
        if let Some(sampler) = &self.sampler {
            if let Err(e) = sampler.sample() {
                log::error(&format!("step {label}: cannot start the sampler thread: {e}; no usage series"));
            }
        }
        if first_local {
            let cwd = step::proc_cwd(pid);
            // The tasks wait for this callback: none runs before the Python directory exists.
            let mut st = pending.python_made(python::PREPARE_WAIT);
            let moved = cwd.is_some() && cwd != st.start.cwd;
            if moved {
                st.start.cwd = cwd;
            }
            // No task runs before this returns: the record is in the spool by then, with or
            // without its executable (the helper rewrites it when it finds that).
            if moved || !st.written {
                let _logged = write_item(&pending.spool, &Item::StepStart(st.start.clone()));
                st.written = true;
            }
        }
        0
    }

    fn task_exited(&mut self, host: &dyn Host) -> i32 {
        let raw = match host.task_exit_status() {
            Ok(raw) => raw,
            Err(e) => {
                log::error(&format!("cannot read a task's exit status: {e}"));
                return 0;
            }
        };
        let task_id = host.task_id().ok().and_then(|t| u32::try_from(t).ok());
        let global_rank = host.task_global_id().ok();
        let (Some(task_id), Some(global_rank)) = (task_id.or(global_rank), global_rank.or(task_id)) else {
            log::error("cannot read the id of a task that exited");
            return 0;
        };
        self.outcome.tasks.push(TaskExit::from_wait(task_id, global_rank, raw, now()));
        0
    }

    fn step_ended(&mut self, host: &dyn Host) -> i32 {
        let mut start = match self.start.take() {
            Some(pending) => pending.close(),
            None => {
                // init_post_opt did not run or failed: still say that the step ended.
                let mut problems = Vec::new();
                let facts = StepFacts::gather(host, &mut problems);
                step::build_start(&facts, &self.config.env_filter, &self.tags, now())
            }
        };
        let mut series = None;
        if let Some(sampler) = self.sampler.take() {
            let seen = sampler.finish(sampler::FINISH_WAIT);
            for p in &seen.problems {
                log::error(&format!("step {}: sampler: {p}; fewer points", label(&start)));
            }
            series = seen.series;
            let mut all = sampler::union(&start.modules, seen.modules);
            let dropped = runledger_record::modules::bound(&mut all);
            if all.len() > start.modules.len() || dropped > 0 {
                start.modules = all;
                runledger_record::modules::count_dropped(&mut start.env, dropped);
                let _logged = self.write(&Item::StepStart(start.clone()));
            }
        }
        self.outcome.rusage = host.children_rusage();
        if self.outcome.rusage.is_none() {
            log::error(&format!("step {}: getrusage(RUSAGE_CHILDREN) failed; CPU time not recorded", label(&start)));
        }
        let mut end = step::build_end(&start, &self.outcome, now());
        end.series = series;
        let full = |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        if self.write(&Item::StepEnd(end.clone())).is_err_and(|e| full(&e)) && end.series.take().is_some() {
            // A full spool may still take the end without its series: the step's totals matter more.
            log::error(&format!("step {}: writing the step's end again without its usage series", label(&start)));
            let _logged = self.write(&Item::StepEnd(end));
        }
        self.outcome = StepOutcome::default();
        0
    }

    /// Writes one item to the spool; the error (logged already) when it could not.
    fn write(&self, item: &Item) -> std::io::Result<()> {
        write_item(&self.config.spool, item)
    }
}

/// Writes one item to the spool `setting` names; the error (logged already) when it could not.
fn write_item(setting: &Path, item: &Item) -> std::io::Result<()> {
    // `spool=/…/%n`: one spool per node when several slurmd share a host.
    let spool = Spool::new(expand_node(setting, item.node()));
    let what = format!("{} of step {}", item.kind(), item_label(item));
    // put_item makes the job's directory and any missing parent (0700): no Spool::ensure()
    // first, which costs four syscalls a write (the outbox it also makes is the epilog's). The
    // helper thread writes while slurmstepd may be lending every thread to the user: as_root.
    match privileged::as_root(|| spool.put_item(item)) {
        Ok(path) => {
            log::verbose(&format!("wrote {what} to {}", path.display()));
            Ok(())
        }
        Err(e) => {
            log::error(&format!("cannot write the {what} to {}: {e}", spool.root().display()));
            Err(e)
        }
    }
}

fn label(s: &StepStart) -> String {
    step::step_label(s.job_id, s.step_id)
}

fn item_label(item: &Item) -> String {
    match item {
        Item::StepStart(s) => label(s),
        Item::StepEnd(e) => step::step_label(e.job_id, e.step_id),
        Item::JobEnd(j) => j.job_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Rusage, SpankError, SpankResult};
    use crate::log::Level;
    use runledger_record::env::REDACTED;
    use runledger_record::ExitStatus;
    use std::cell::{Cell, RefCell};

    /// A step as slurmstepd would show it.
    struct FakeHost {
        ctx: Context,
        step_id: u32,
        env: Vec<Vec<u8>>,
        task: Cell<(i32, u32, i32, i32)>, // local id, global id, raw status, pid
        registered: RefCell<u32>,
        set: RefCell<Vec<(String, String)>>,
        fail_items: bool,
        array: (u32, u32),
    }

    impl FakeHost {
        fn new(ctx: Context, step_id: u32) -> Self {
            FakeHost {
                ctx,
                step_id,
                env: step::tests::env(&[
                    "SLURM_CLUSTER_NAME=testcl",
                    "SLURMD_NODENAME=n01",
                    "PATH=/usr/bin:/bin",
                    "PWD=/tmp",
                    "LOADEDMODULES=gcc/12.2.0",
                    "SECRET_THING=s3cr3t",
                ]),
                task: Cell::new((0, 0, 0, 0)),
                registered: RefCell::new(0),
                set: RefCell::new(Vec::new()),
                fail_items: false,
                array: (70, 7),
            }
        }
        fn ok<T>(&self, v: T) -> SpankResult<T> {
            if self.fail_items {
                Err(SpankError(3001))
            } else {
                Ok(v)
            }
        }
    }

    impl Host for FakeHost {
        fn context(&self) -> Context {
            self.ctx
        }
        fn job_id(&self) -> SpankResult<u32> {
            self.ok(77)
        }
        fn step_id(&self) -> SpankResult<u32> {
            self.ok(self.step_id)
        }
        fn uid(&self) -> SpankResult<u32> {
            self.ok(1000)
        }
        fn gid(&self) -> SpankResult<u32> {
            self.ok(100)
        }
        fn nnodes(&self) -> SpankResult<u32> {
            self.ok(1)
        }
        fn node_id(&self) -> SpankResult<u32> {
            self.ok(0)
        }
        fn local_task_count(&self) -> SpankResult<u32> {
            self.ok(2)
        }
        fn total_task_count(&self) -> SpankResult<u32> {
            self.ok(2)
        }
        fn ncpus(&self) -> SpankResult<u16> {
            self.ok(2)
        }
        fn job_alloc_mem(&self) -> SpankResult<u64> {
            self.ok(2048)
        }
        fn argv(&self) -> SpankResult<Vec<Vec<u8>>> {
            self.ok(vec![b"sleep".to_vec(), b"1".to_vec()])
        }
        fn env(&self) -> SpankResult<Vec<Vec<u8>>> {
            self.ok(self.env.clone())
        }
        fn getenv(&self, name: &str) -> SpankResult<Option<Vec<u8>>> {
            self.ok(step::env_get(&self.env, name).map(<[u8]>::to_vec))
        }
        fn array_job_id(&self) -> SpankResult<u32> {
            self.ok(self.array.0)
        }
        fn array_task_id(&self) -> SpankResult<u32> {
            self.ok(self.array.1)
        }
        fn slurm_version(&self) -> SpankResult<String> {
            self.ok("22.05.8".into())
        }
        fn task_id(&self) -> SpankResult<i32> {
            Ok(self.task.get().0)
        }
        fn task_global_id(&self) -> SpankResult<u32> {
            Ok(self.task.get().1)
        }
        fn task_exit_status(&self) -> SpankResult<i32> {
            Ok(self.task.get().2)
        }
        fn task_pid(&self) -> SpankResult<i32> {
            Ok(self.task.get().3)
        }
        fn register_tag_option(&self) -> SpankResult<()> {
            *self.registered.borrow_mut() += 1;
            Ok(())
        }
        fn register_python_option(&self) -> SpankResult<()> {
            *self.registered.borrow_mut() += 1;
            Ok(())
        }
        fn setenv(&self, name: &str, value: &str) -> SpankResult<()> {
            self.set.borrow_mut().push((name.to_string(), value.to_string()));
            Ok(())
        }
        fn user_name(&self, _uid: u32) -> Option<String> {
            Some("rltest".into())
        }
        fn hostname(&self) -> Option<String> {
            Some("host".into())
        }
        fn children_rusage(&self) -> Option<Rusage> {
            Some(Rusage { user_s: 2.0, sys_s: 0.5, max_rss_kib: 1234 })
        }
    }

    fn args(spool: &std::path::Path) -> Vec<String> {
        let py = spool.parent().unwrap_or(spool).join("python/%n");
        vec![format!("spool={}", spool.display()), "env_deny=PATH".into(), format!("python_dir={}", py.display())]
    }

    // One process per step in real life; the tests drive a Plugin value directly (the static
    // is shared by the test threads) and the callbacks only where the static does not matter.
    fn run_step(p: &mut Plugin, host: &FakeHost, args: &[String]) {
        assert_eq!(p.init(host.ctx, args), 0);
        p.tags = tags::parse(b"exp=alpha").unwrap();
        assert_eq!(p.step_started(host), 0);
        host.task.set((0, 0, 0, std::process::id() as i32));
        assert_eq!(p.task_forked(host), 0);
        assert_eq!(p.task_exited(host), 0);
        host.task.set((1, 1, 11 | 0x80, 0)); // SIGSEGV, core dumped
        assert_eq!(p.task_exited(host), 0);
        assert_eq!(p.step_ended(host), 0);
    }

    #[test]
    fn a_step_is_recorded_start_and_end() {
        let d = tempfile::tempdir().unwrap();
        let host = FakeHost::new(Context::Remote, 0);
        let mut p = Plugin::default();
        run_step(&mut p, &host, &args(d.path()));
        assert!(log::take().iter().all(|(l, _)| *l != Level::Error));

        let (items, bad) = Spool::new(d.path()).job_items(77);
        assert!(bad.is_empty(), "{bad:?}");
        let [Item::StepEnd(end), Item::StepStart(start)] = &items[..] else { panic!("{items:?}") };
        assert_eq!((start.cluster.as_str(), start.node.as_str(), start.user.as_str()), ("testcl", "n01", "rltest"));
        assert_eq!((start.array_job_id, start.array_task_id), (Some(70), Some(7)));
        assert_eq!(start.exe.as_deref(), Some("/usr/bin/sleep"));
        let here = std::env::current_dir().unwrap().display().to_string();
        assert_eq!(start.cwd, Some(here), "PWD=/tmp corrected from task 0's /proc/<pid>/cwd");
        assert_eq!(start.env["SECRET_THING"], REDACTED);
        assert!(!start.env.contains_key("PATH"), "env_deny= from the plugin arguments");
        assert_eq!(start.tags["exp"], "alpha");
        assert_eq!(start.modules[0].full_name(), "gcc/12.2.0");
        assert_eq!(end.tasks.len(), 2);
        assert_eq!(end.tasks[1].status, ExitStatus { code: 0, signal: 11, core_dumped: true });
        assert_eq!((end.cpu_user_s, end.max_rss_kib), (2.0, 1234));
        // Sampled at the default interval: a step shorter than it has the final sample only.
        let series = end.series.as_ref().expect("a usage series");
        assert_eq!((series.interval_s, series.points.len()), (30, 1), "{series:?}");
        assert_eq!(end.stdout, None, "stdout only for the batch step");
        assert!(p.start.is_none() && p.outcome.tasks.is_empty());
    }

    #[test]
    fn sample_interval_zero_writes_no_series() {
        let d = tempfile::tempdir().unwrap();
        let host = FakeHost::new(Context::Remote, 0);
        let mut p = Plugin::default();
        let mut a = args(d.path());
        a.push("sample_interval=0".into());
        run_step(&mut p, &host, &a);
        let (items, _) = Spool::new(d.path()).job_items(77);
        let Item::StepEnd(end) = &items[0] else { panic!("{items:?}") };
        assert_eq!(end.series, None);
        assert!(p.sampler.is_none());
    }

    #[test]
    fn python_directory_for_the_job_unless_turned_off() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        let me = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
        let mut host = FakeHost::new(Context::Remote, 0);
        let uid_is_me = |h: &FakeHost| h.set.borrow().clone();
        // The fake job belongs to uid 1000; only root may give a directory away.
        if me != 0 {
            eprintln!("SKIPPED python_directory_for_the_job_unless_turned_off: needs root (chown)");
            return;
        }
        // The helper thread makes it: the first task's post-fork returns once it is there.
        let want = d.path().join("python/n01/77");
        let mut p = Plugin::default();
        assert_eq!(p.init(host.ctx, &args(&spool)), 0);
        assert_eq!(p.step_started(&host), 0);
        host.task.set((0, 0, 0, std::process::id() as i32));
        assert_eq!(p.task_forked(&host), 0);
        assert!(python::is_made(&d.path().join("python/n01"), 77, 1000), "made before any task runs");
        assert_eq!(p.step_ended(&host), 0);
        let dir = want.to_string_lossy().into_owned();
        assert_eq!(uid_is_me(&host), [("RUNLEDGER_PYTHON_DIR".to_string(), dir.clone())]);
        let m = std::fs::symlink_metadata(&want).unwrap();
        assert_eq!(
            (std::os::unix::fs::MetadataExt::uid(&m), std::os::unix::fs::MetadataExt::mode(&m) & 0o777),
            (1000, 0o700)
        );
        let (items, _) = Spool::new(&spool).job_items(77);
        let Some(Item::StepStart(start)) = items.iter().find(|i| matches!(i, Item::StepStart(_))) else { panic!() };
        assert_eq!(start.python_dir.as_deref(), Some(dir.as_str()), "the epilog learns it from the spool");

        // A step of the same job whose environment has the variable already (srun in the batch
        // script) is not set again, and still records the directory; another value is replaced.
        host.env.push(format!("RUNLEDGER_PYTHON_DIR={dir}").into_bytes());
        host.set.borrow_mut().clear();
        let mut p = Plugin::default();
        run_step(&mut p, &host, &args(&spool));
        assert!(host.set.borrow().is_empty(), "set again: {:?}", host.set.borrow());
        let (items, _) = Spool::new(&spool).job_items(77);
        let Some(Item::StepStart(start)) = items.iter().find(|i| matches!(i, Item::StepStart(_))) else { panic!() };
        assert_eq!(start.python_dir.as_deref(), Some(dir.as_str()));
        host.env.pop();
        host.env.push(b"RUNLEDGER_PYTHON_DIR=/elsewhere/77".to_vec());
        run_step(&mut Plugin::default(), &host, &args(&spool));
        assert_eq!(uid_is_me(&host), [("RUNLEDGER_PYTHON_DIR".to_string(), dir.clone())]);
        host.env.pop();

        // RUNLEDGER_PYTHON=0 in the job, --runledger-python=no, python=no: no directory, no variable.
        std::fs::remove_dir_all(d.path().join("python")).unwrap();
        host.env.push(b"RUNLEDGER_PYTHON=0".to_vec());
        host.set.borrow_mut().clear();
        run_step(&mut Plugin::default(), &host, &args(&spool));
        host.env.pop();
        let mut p = Plugin { python_option: Some(false), ..Plugin::default() };
        run_step(&mut p, &host, &args(&spool));
        let mut site_off = args(&spool);
        site_off.push("python=no".into());
        run_step(&mut Plugin::default(), &host, &site_off);
        assert!(host.set.borrow().is_empty());
        assert!(!d.path().join("python").exists());
    }

    #[test]
    fn spool_per_node_from_the_percent_n_argument() {
        let d = tempfile::tempdir().unwrap();
        let host = FakeHost::new(Context::Remote, 0);
        let mut p = Plugin::default();
        run_step(&mut p, &host, &args(&d.path().join("%n")));
        let (items, bad) = Spool::new(d.path().join("n01")).job_items(77);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(items.len(), 2, "start and end in the node's own spool: {items:?}");
        assert!(!d.path().join("%n").exists(), "no literal %n directory");
    }

    #[test]
    fn batch_step_records_task_zero_output_files() {
        let d = tempfile::tempdir().unwrap();
        let host = FakeHost::new(Context::Remote, STEP_BATCH);
        let mut p = Plugin::default();
        // Task 0 is this test process here: whatever its fd 1/2 are (a file when cargo's output is
        // redirected, else a pipe or tty that is not recorded), that is what the record says.
        run_step(&mut p, &host, &args(d.path()));
        let (items, _) = Spool::new(d.path()).job_items(77);
        let Item::StepEnd(end) = &items[0] else { panic!() };
        let me = std::process::id() as i32;
        assert_eq!(end.step_id, STEP_BATCH);
        assert_eq!(
            (end.stdout.clone(), end.stderr.clone()),
            (step::open_file_path(me, 1), step::open_file_path(me, 2))
        );
    }

    #[test]
    fn spool_trouble_is_logged_never_fatal() {
        let d = tempfile::tempdir().unwrap();
        let blocker = d.path().join("file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let host = FakeHost::new(Context::Remote, 3);
        let mut p = Plugin::default();
        run_step(&mut p, &host, &[format!("spool={}/spool", blocker.display()), "bogus".into(), "python=no".into()]);
        let errors: Vec<String> = log::take().into_iter().filter(|(l, _)| *l == Level::Error).map(|(_, m)| m).collect();
        // The bad argument, then the start record with its cwd corrected (PWD=/tmp is not where
        // the fake task runs) and the end record: each failed write is logged, none is fatal. (The
        // helper thread's own write of the start logs on that thread, which this test cannot see.)
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("unknown plugin argument 'bogus'"));
        assert!(errors[1].starts_with("runledger: cannot write the step_start of step 77.3 to "), "{}", errors[1]);
        assert!(errors[2].contains("step_end of step 77.3"));
    }

    #[test]
    fn unreadable_items_still_give_records() {
        let d = tempfile::tempdir().unwrap();
        let mut host = FakeHost::new(Context::Remote, 0);
        host.fail_items = true;
        let mut p = Plugin::default();
        p.init(Context::Remote, &args(d.path()));
        assert_eq!(p.step_started(&host), 0);
        let errors = log::take();
        assert!(errors.iter().any(|(_, m)| m.contains("cannot read the job id: ESPANK_BAD_ARG")), "{errors:?}");
        assert_eq!(p.step_ended(&host), 0);
        // No job id: the records land under job 0 rather than nowhere.
        assert_eq!(Spool::new(d.path()).job_items(0).0.len(), 2);
    }

    #[test]
    fn the_start_is_spooled_before_any_task_runs() {
        let d = tempfile::tempdir().unwrap();
        let host = FakeHost::new(Context::Remote, 4);
        let mut p = Plugin::default();
        p.init(Context::Remote, &args(d.path()));
        assert_eq!(p.step_started(&host), 0);
        // task_post_fork of local task 0 is the last the plugin sees before the tasks exec.
        host.task.set((0, 0, 0, std::process::id() as i32));
        assert_eq!(p.task_forked(&host), 0);
        let (items, bad) = Spool::new(d.path()).job_items(77);
        assert!(bad.is_empty(), "{bad:?}");
        let [Item::StepStart(start)] = &items[..] else { panic!("{items:?}") };
        let here = std::env::current_dir().unwrap().display().to_string();
        assert_eq!(start.cwd, Some(here), "written with task 0's real cwd");
        // The executable comes from the helper thread, at the latest by the step's end.
        assert_eq!(p.step_ended(&host), 0);
        let (items, _) = Spool::new(d.path()).job_items(77);
        let Some(Item::StepStart(start)) = items.iter().find(|i| matches!(i, Item::StepStart(_))) else { panic!() };
        assert_eq!(start.exe.as_deref(), Some("/usr/bin/sleep"));
    }

    #[test]
    fn array_ids_only_for_array_tasks() {
        let mut host = FakeHost::new(Context::Remote, 0);
        for (job, task, want) in
            [(70, 7, (Some(70), Some(7))), (77, 0xffff_fffe, (None, None)), (0, 0xffff_fffe, (None, None))]
        {
            host.array = (job, task);
            let f = StepFacts::gather(&host, &mut Vec::new());
            assert_eq!((f.array_job_id, f.array_task_id), want);
        }
    }

    #[test]
    fn job_memory_is_read_from_the_spank_item() {
        let f = StepFacts::gather(&FakeHost::new(Context::Remote, 0), &mut Vec::new());
        assert_eq!(f.alloc_mem_mb, Some(2048));
    }

    #[test]
    fn end_without_start_is_still_written() {
        let d = tempfile::tempdir().unwrap();
        let host = FakeHost::new(Context::Remote, 5);
        let mut p = Plugin::default();
        p.init(Context::Remote, &args(d.path()));
        assert_eq!(p.step_ended(&host), 0);
        let (items, _) = Spool::new(d.path()).job_items(77);
        assert!(matches!(&items[..], [Item::StepEnd(e)] if e.step_id == 5 && e.node == "n01"));
    }

    // Serializes the tests that go through the process-wide PLUGIN static.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn other_contexts_only_register_the_option() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        for ctx in [Context::Local, Context::Allocator, Context::Slurmd, Context::JobScript, Context::Unknown] {
            let host = FakeHost::new(ctx, 0);
            assert_eq!(on_init(&host, &["bogus".into()]), 0);
            assert_eq!(*host.registered.borrow(), 2 * u32::from(ctx.takes_options()), "{ctx:?}");
            for cb in [on_init_post_opt, on_task_post_fork, on_task_exit, on_exit] {
                assert_eq!(cb(&host, &[]), 0);
            }
        }
        assert!(log::take().is_empty(), "plugin arguments are only checked in slurmstepd");
        let remote = FakeHost::new(Context::Remote, 0);
        on_init(&remote, &[]);
        assert_eq!(*remote.registered.borrow(), 2, "--runledger-tag and --runledger-python");
    }

    #[test]
    fn tag_option_refuses_bad_input_only_locally() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(on_tag_option(Some(b"exp=alpha"), false), 0);
        assert_eq!(on_tag_option(Some(b"bad key=x"), false), -1);
        let msgs = log::take();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0, Level::Error);
        assert!(msgs[0].1.starts_with("runledger: --runledger-tag: tag 1: key 'bad key' contains a space"), "{msgs:?}");
        assert_eq!(on_tag_option(None, false), -1);
        assert!(log::take()[0].1.contains("a value is required"));
        // In slurmstepd a bad value never fails the step.
        assert_eq!(on_tag_option(Some(b"bad key=x"), true), 0);
        assert!(log::take()[0].1.contains("recording the step without tags"));
    }
}
