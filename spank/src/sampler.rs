//! What a step's processes do while it runs, seen from a low-rate thread in slurmstepd.
//!
//! **Usage over time.** Every step's slurmstepd (root, main process: never in the forked task)
//! samples its processes every `sample_interval` seconds: CPU time (user + system), resident
//! memory, bytes read and written (`/proc/PID/io`), processes and threads. The step's processes
//! are slurmstepd's descendants; their CPU time and I/O is counted while they live, and that of
//! the ones already reaped through the `cutime`/`cstime` and I/O of whoever waited for them (in
//! the end slurmstepd itself, whose own CPU time is not counted), so a short-lived process
//! between two samples is not lost. The samples become a [`runledger_record::series::Series`],
//! bounded at [`runledger_record::series::MAX_POINTS`] points whatever the step's length, added
//! to the step's end record.
//!
//! **Modules loaded inside a batch script.** The batch step's environment is fixed when the step
//! starts, so `module load lammps` followed by `mpirun lmp` in the script (the usual pattern
//! where MPI is launched without srun) never reaches a step record. While the batch step runs,
//! the same thread looks at the batch task's descendants and reads `LOADEDMODULES`, `_LMFILES_`
//! and `MODULEPATH` from their `/proc/<pid>/environ`, which holds the environment each process
//! was started with, i.e. after the script's `module load`. At step end the modules seen are
//! added to the batch step's record.
//!
//! Bounded on every axis: sampling rate (modules: fast for the first seconds, then every few
//! seconds; usage: the interval), processes looked at per tick, bytes read per environ (one
//! buffer, reused), bytes kept per variable, distinct environments and their bytes remembered,
//! points per series: a job cannot make slurmstepd's memory grow with what its processes do. A
//! vanished process or an unreadable file costs a sample or a process, never the step; each kind
//! of trouble is reported once, at step end. At step end the plugin waits only briefly for the
//! thread, and only in the batch step (for a last look for modules; the usage's last sample it
//! takes itself); a thread stuck on a process's memory is left behind rather than stalling
//! slurmstepd. The thread starts in slurm_spank_init_post_opt and first does the step's other
//! slow work (`lib.rs`: the executable and the start record), so a step costs one thread start.

use runledger_record::series::{Point, Series, SeriesBuilder};
use runledger_record::{modules, now, Module};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Processes looked at per tick for modules.
const MAX_PROCS: usize = 512;
/// Processes of one step counted per usage sample (a step with more is undercounted, and says so).
const MAX_STEP_PROCS: usize = 8192;
/// Entries of /proc read per tick: the process table is bounded even on a node with a huge pid space.
const MAX_SCAN: usize = 65_536;
/// Bytes of one process's environ read.
const MAX_ENVIRON: u64 = 1 << 20;
/// Distinct module environments remembered per step (and per tick).
const MAX_SEEN: usize = 64;
/// Bytes of one module variable kept (cut at a `:` boundary): 64 KiB is some 2,000 modules.
const MAX_VAR: usize = 64 * 1024;
/// Bytes of module variables remembered per step (and per tick).
const MAX_SEEN_BYTES: usize = 1 << 20;
/// Kinds of trouble remembered for the step's log.
const MAX_PROBLEMS: usize = 8;
/// How long slurm_spank_exit waits for the sampler's last look.
pub const FINISH_WAIT: Duration = Duration::from_millis(300);

/// When to look for modules next: often at first (scripts load modules and launch right away),
/// then rarely (long runs keep the same processes).
fn interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(5) {
        Duration::from_millis(100)
    } else if elapsed < Duration::from_secs(60) {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    }
}

/// (LOADEDMODULES, _LMFILES_, MODULEPATH) as one process saw them.
type ModuleVars = (Option<String>, Option<String>, Option<String>);

/// Distinct module environments, bounded in number ([`MAX_SEEN`]) and bytes ([`MAX_SEEN_BYTES`]).
#[derive(Default)]
struct Seen {
    set: BTreeSet<ModuleVars>,
    bytes: usize,
}

impl Seen {
    /// Keeps `v` if it is new and fits; false once full (nothing more will be kept).
    fn add(&mut self, v: ModuleVars) -> bool {
        let size = [&v.0, &v.1, &v.2].iter().map(|s| s.as_ref().map_or(0, String::len)).sum::<usize>();
        if self.set.len() >= MAX_SEEN || self.bytes + size > MAX_SEEN_BYTES {
            return false;
        }
        if self.set.insert(v) {
            self.bytes += size;
        }
        true
    }
}

/// What the thread is asked to watch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Watch {
    /// The batch task's pid: its descendants' module variables are read.
    pub modules_root: Option<i32>,
    /// The batch task's pid is not known yet ([`Sampler::watch_modules`] gives it): the thread
    /// waits for it rather than ending when it has nothing else to do.
    pub modules_later: bool,
    /// The step's usage: slurmstepd's pid (the tasks' parent) and the interval in seconds.
    pub usage: Option<(i32, u32)>,
}

/// Cumulative counters of a step's processes at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counters {
    /// CPU time, clock ticks.
    cpu_ticks: u64,
    read_bytes: u64,
    write_bytes: u64,
}

/// Instant values of a step's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Gauges {
    rss_kib: u64,
    processes: u32,
    threads: u32,
}

/// The usage series being built, with the last sample's counters.
struct Usage {
    root: i32,
    every: Duration,
    builder: SeriesBuilder,
    last: Counters,
    last_at: Instant,
    /// The last gauges seen while the step's processes ran (the final sample, after they are
    /// reaped, carries these rather than zeros).
    gauges: Gauges,
    units: Units,
}

impl Usage {
    fn new(root: i32, interval_s: u32, units: Units, problems: &mut Problems) -> Usage {
        // The baseline: the tasks have just been forked and have used nothing yet; what
        // slurmstepd reaped before (nothing, in a fresh slurmstepd) is not the step's.
        let last = root_counters(root, problems);
        Usage {
            root,
            every: Duration::from_secs(interval_s.into()),
            builder: SeriesBuilder::new(interval_s),
            last,
            last_at: Instant::now(),
            gauges: Gauges::default(),
            units,
        }
    }

    /// Adds the sample `c` taken at `at` (counters only grow: a process that left the step's
    /// tree unreaped takes its counts with it, and the series then shows no use rather than less).
    fn record(&mut self, c: Counters, g: Option<Gauges>, at: Instant) {
        let secs = at.saturating_duration_since(self.last_at).as_secs_f64();
        let c = Counters {
            cpu_ticks: c.cpu_ticks.max(self.last.cpu_ticks),
            read_bytes: c.read_bytes.max(self.last.read_bytes),
            write_bytes: c.write_bytes.max(self.last.write_bytes),
        };
        if let Some(g) = g {
            self.gauges = g;
        }
        let cpu_s = (c.cpu_ticks - self.last.cpu_ticks) as f64 / self.units.ticks_per_s as f64;
        self.builder.push(Point {
            t: now(),
            secs: (secs * 100.0).round() / 100.0,
            cpu_cores: if secs > 0.0 { ((cpu_s / secs) * 1000.0).round() / 1000.0 } else { 0.0 },
            rss_kib: self.gauges.rss_kib,
            read_bytes: c.read_bytes - self.last.read_bytes,
            write_bytes: c.write_bytes - self.last.write_bytes,
            processes: self.gauges.processes,
            threads: self.gauges.threads,
            min: None,
            max: None,
        });
        self.last = c;
        self.last_at = at;
    }
}

/// Kinds of trouble seen, each once, for the step's log.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn note(&mut self, kind: &str, detail: impl std::fmt::Display) {
        if self.0.len() < MAX_PROBLEMS && !self.0.iter().any(|p| p.starts_with(kind)) {
            self.0.push(format!("{kind}: {detail}"));
        }
    }

    /// Moves `other`'s problems here (each kind still once): the thread gathers them without
    /// the lock and hands them over under it.
    fn absorb(&mut self, other: &mut Problems) {
        for p in other.0.drain(..) {
            let (kind, detail) = p.split_once(": ").unwrap_or((&p, ""));
            self.note(kind, detail);
        }
    }
}

#[derive(Default)]
struct State {
    stop: bool,
    done: bool,
    modules_root: Option<i32>,
    modules_later: bool,
    seen: Seen,
    usage: Option<Usage>,
    /// The system's units, once the helper has read them and taken the usage baseline (or had
    /// none to take): `Some` says both.
    units: Option<Units>,
    /// Whether there is anything to sample over time (usage, or modules in the batch step).
    wanted: bool,
    /// [`Sampler::sample`] has started the sampling thread.
    sampling: bool,
    problems: Problems,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A running sampler; [`Sampler::finish`] stops it and returns what it saw.
pub struct Sampler {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampler")
    }
}

/// What a sampler saw over the step.
#[derive(Debug, Default)]
pub struct Observed {
    /// Modules loaded inside the batch script, each once, in the order first seen.
    pub modules: Vec<Module>,
    /// The step's usage over time, when it was sampled.
    pub series: Option<Series>,
    /// What went wrong, each kind once.
    pub problems: Vec<String>,
}

impl Sampler {
    /// Starts watching; the usage baseline is taken, and sampling started, before this returns.
    #[cfg(test)]
    pub fn start(watch: Watch) -> std::io::Result<Sampler> {
        let s = Sampler::start_after(watch, None)?;
        let mut st = s.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.units.is_none() {
            st = s.shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        s.sample()?;
        Ok(s)
    }

    /// Starts the step's helper thread, which takes the usage baseline, runs `first` (the step's
    /// other slow lookups, see `lib.rs`) and ends; [`Sampler::sample`] then samples over time on a
    /// thread of its own, from the first task's post-fork on. When the helper cannot start,
    /// `first` is dropped unrun.
    ///
    /// The usage baseline (two reads in /proc, about 0.1 ms with the system's units) is taken by
    /// the helper, first of all, not here: the step's start waits for neither. The tasks are
    /// forked after this returns, and slurmstepd's counters move only when it reaps one, so a
    /// baseline a little later is the same baseline.
    ///
    /// Why two threads: a thread of the plugin alive while slurmstepd forks the tasks makes every
    /// fork dearer (`fork` 342 against 299 µs, median, in steps of 64 tasks; `srun -n64 true`
    /// 1.05× against 1.02× with sampling off, `TASKS=64 bench/plugin-overhead`), and glibc makes
    /// each of slurmstepd's credential changes before the fork wait for it too. The helper's work
    /// is done early; the sampling thread starts once every task is forked.
    pub fn start_after(watch: Watch, first: Option<Box<dyn FnOnce() + Send>>) -> std::io::Result<Sampler> {
        let shared = Arc::new(Shared::default());
        let usage = watch.usage.filter(|&(_, s)| s > 0);
        {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.modules_root = watch.modules_root;
            st.modules_later = watch.modules_later && watch.modules_root.is_none();
            st.wanted = usage.is_some() || watch.modules_root.is_some() || watch.modules_later;
        }
        let inner = Arc::clone(&shared);
        std::thread::Builder::new().name("runledger-helper".into()).stack_size(256 * 1024).spawn(move || {
            let units = Units::of_this_system();
            // Read without the lock, as every sample is: `finish` never waits on /proc.
            let mut problems = Problems::default();
            let baseline = usage.map(|(root, secs)| Usage::new(root, secs, units, &mut problems));
            {
                let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                st.usage = baseline;
                st.units = Some(units);
                st.problems.absorb(&mut problems);
                inner.changed.notify_all();
            }
            if let Some(first) = first {
                first();
            }
        })?;
        Ok(Sampler { shared })
    }

    /// Starts sampling over time on a thread of its own, once (every task of the step is forked
    /// by then); nothing when there is nothing to sample. It starts from the helper's baseline,
    /// waiting for it if need be.
    pub fn sample(&self) -> std::io::Result<()> {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.sampling || !st.wanted {
                return Ok(());
            }
            st.sampling = true;
        }
        let inner = Arc::clone(&self.shared);
        let spawned =
            std::thread::Builder::new().name("runledger-sampler".into()).stack_size(256 * 1024).spawn(move || {
                let units = {
                    let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                    while st.units.is_none() && !st.stop {
                        st = inner.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                    st.units
                };
                match units {
                    Some(units) => run(&inner, units),
                    None => {
                        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.done = true;
                        inner.changed.notify_all();
                    }
                }
            });
        if let Err(e) = spawned {
            // `finish` must not wait for a look no thread will take.
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.done = true;
            return Err(e);
        }
        Ok(())
    }

    /// Starts looking for modules under `root` (the batch task, once it exists).
    pub fn watch_modules(&self, root: i32) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.modules_root.is_none() {
            st.modules_root = Some(root);
            self.shared.changed.notify_all();
        }
    }

    /// Stops the sampler, waiting at most `wait` for its last look, takes the usage's last
    /// sample (the step's processes are reaped by now: slurmstepd's own counters hold them) and
    /// returns what it saw.
    pub fn finish(self, wait: Duration) -> Observed {
        let deadline = Instant::now() + wait;
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stop = true;
        self.shared.changed.notify_all();
        // Only a last look for modules is worth waiting for: the usage's last sample is taken
        // here, from slurmstepd's own counters, whatever the thread is doing.
        while st.modules_root.is_some() && !st.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        let st = &mut *st;
        let series = st.usage.take().map(|mut u| {
            let c = root_counters(u.root, &mut st.problems);
            u.record(c, None, Instant::now());
            u.builder.finish()
        });
        Observed { modules: modules_of(&st.seen), series, problems: std::mem::take(&mut st.problems.0) }
    }
}

fn modules_of(seen: &Seen) -> Vec<Module> {
    let mut out: Vec<Module> = Vec::new();
    let mut have = std::collections::HashSet::new();
    for (loaded, files, path) in &seen.set {
        for m in modules::parse_loaded(loaded.as_deref(), files.as_deref(), path.as_deref()) {
            // One more than the step keeps, so that the cap (modules::bound) still counts a drop.
            if out.len() > modules::MAX_MODULES {
                return out;
            }
            if have.insert((m.name.clone(), m.version.clone())) {
                out.push(m);
            }
        }
    }
    out
}

fn run(shared: &Shared, units: Units) {
    let mut t0 = Instant::now();
    // The one environ buffer, reused across processes and ticks.
    let mut buf = Vec::new();
    // Set when the batch task's pid is known: modules are looked for from then on.
    let mut modules_root = None;
    let mut next_modules = None;
    let mut problems = Problems::default();
    loop {
        let (usage_due, stopping) = {
            let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if modules_root.is_none() && st.modules_root.is_some() {
                modules_root = st.modules_root;
                t0 = Instant::now();
                next_modules = Some(t0);
            }
            (st.usage.as_ref().map(|u| (u.root, u.last_at + u.every)), st.stop)
        };
        let now_i = Instant::now();
        let want_modules = next_modules.is_some_and(|t| t <= now_i || stopping);
        let want_usage = usage_due.is_some_and(|(_, t)| t <= now_i) && !stopping;
        // Sampled without the lock (a read of /proc can block): `finish` never waits on it.
        let table = (want_modules || want_usage).then(|| ProcTable::read(&mut problems));
        let found = match (&table, modules_root) {
            (Some(t), Some(root)) if want_modules => Some(sample_modules(t, root, &mut buf)),
            _ => None,
        };
        let usage = match (&table, usage_due) {
            (Some(t), Some((root, _))) if want_usage => {
                Some((step_usage(t, root, units, &mut problems), Instant::now()))
            }
            _ => None,
        };
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.problems.absorb(&mut problems);
        if let Some(found) = found {
            for vars in found.set {
                if !st.seen.add(vars) {
                    break;
                }
            }
            next_modules = Some(Instant::now() + interval(t0.elapsed()));
        }
        if let (Some(((c, g), at)), Some(u)) = (usage, st.usage.as_mut()) {
            u.record(c, Some(g), at);
        }
        if st.stop {
            // One more look for modules after a stop request, so the end state is seen too: a
            // look that began before the request (`stopping` was false) may have missed what
            // the request's caller saw, so it does not count.
            if next_modules.is_none() || (want_modules && stopping) {
                st.done = true;
                shared.changed.notify_all();
                return;
            }
            continue;
        }
        if modules_root.is_none() && st.modules_root.is_some() {
            continue; // given while this looked: start looking for modules now
        }
        let wake = [next_modules, st.usage.as_ref().map(|u| u.last_at + u.every)].into_iter().flatten().min();
        match wake {
            Some(wake) => drop(shared.changed.wait_timeout(st, wake.saturating_duration_since(Instant::now()))),
            // Nothing to do until the batch task's pid (or the stop) comes.
            None if st.modules_later && modules_root.is_none() => drop(shared.changed.wait(st)),
            None => {
                st.done = true;
                shared.changed.notify_all();
                return;
            }
        }
    }
}

/// Clock ticks per second of /proc's times and bytes per page of its sizes, from the auxiliary
/// vector the kernel gave this process (AT_CLKTCK, AT_PAGESZ), so no libc call is needed.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Units {
    ticks_per_s: u64,
    page_kib: u64,
}

impl Units {
    fn of_this_system() -> Units {
        let auxv = fs::read("/proc/self/auxv").unwrap_or_default();
        let mut u = Units { ticks_per_s: 100, page_kib: 4 };
        for pair in auxv.chunks_exact(16) {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
            match (word(&pair[..8]), word(&pair[8..])) {
                (17, v) if v > 0 => u.ticks_per_s = v,        // AT_CLKTCK
                (6, v) if v >= 1024 => u.page_kib = v / 1024, // AT_PAGESZ
                _ => {}
            }
        }
        u
    }
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Stat {
    ppid: i32,
    /// utime + stime, ticks.
    own_ticks: u64,
    /// cutime + cstime: children it has waited for, ticks.
    reaped_ticks: u64,
    threads: u32,
    rss_pages: u64,
}

/// Parses `/proc/PID/stat` (the fields after the parenthesised command name, which may itself
/// contain spaces and parentheses).
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().take(22).collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        own_ticks: n(11)? + n(12)?,
        reaped_ticks: n(13)? + n(14)?,
        threads: n(17)?.try_into().ok()?,
        rss_pages: n(21)?,
    })
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `read_bytes` and `write_bytes` of `/proc/PID/io` (storage I/O, the process's and its reaped
/// children's).
fn read_io(pid: i32) -> std::io::Result<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/io"))?;
    let get = |k: &str| {
        text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(": ")?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    Ok((get("read_bytes"), get("write_bytes")))
}

/// Every process's stat at one moment (bounded by [`MAX_SCAN`]), and who is whose child.
#[derive(Default)]
struct ProcTable {
    stats: HashMap<i32, Stat>,
    children: HashMap<i32, Vec<i32>>,
}

impl ProcTable {
    fn read(problems: &mut Problems) -> ProcTable {
        let mut t = ProcTable::default();
        let dir = match fs::read_dir("/proc") {
            Ok(d) => d,
            Err(e) => {
                problems.note("cannot list /proc", e);
                return t;
            }
        };
        for entry in dir.flatten().take(MAX_SCAN) {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            // A process that vanished since the listing is simply not there.
            if let Some(s) = read_stat(pid) {
                t.children.entry(s.ppid).or_default().push(pid);
                t.stats.insert(pid, s);
            }
        }
        t
    }

    /// Descendants of `root` by parent pid, breadth first, at most `max`.
    fn descendants(&self, root: i32, max: usize) -> Vec<i32> {
        let mut out = Vec::new();
        let mut queue = vec![root];
        while let Some(p) = queue.pop() {
            for &c in self.children.get(&p).map(Vec::as_slice).unwrap_or_default() {
                if out.len() >= max {
                    return out;
                }
                out.push(c);
                queue.push(c);
            }
        }
        out
    }
}

/// The counters of `root` alone: what it reaped (CPU) and its I/O, which includes its reaped
/// children's. For slurmstepd that is the step's tasks that have ended, plus slurmstepd's own
/// few writes to the spool.
fn root_counters(root: i32, problems: &mut Problems) -> Counters {
    let mut c = Counters::default();
    match read_stat(root) {
        Some(s) => c.cpu_ticks = s.reaped_ticks,
        None => problems.note("cannot read slurmstepd's /proc stat", format!("pid {root}")),
    }
    match read_io(root) {
        Ok((r, w)) => (c.read_bytes, c.write_bytes) = (r, w),
        Err(e) => problems.note("cannot read slurmstepd's /proc io", e),
    }
    c
}

/// The step's counters and gauges: `root`'s own ([`root_counters`]) plus every live descendant's.
fn step_usage(t: &ProcTable, root: i32, units: Units, problems: &mut Problems) -> (Counters, Gauges) {
    let mut c = root_counters(root, problems);
    let mut g = Gauges::default();
    let procs = t.descendants(root, MAX_STEP_PROCS);
    if procs.len() >= MAX_STEP_PROCS {
        problems.note("too many processes", format!("counted the first {MAX_STEP_PROCS}"));
    }
    for pid in procs {
        let Some(s) = t.stats.get(&pid) else { continue };
        c.cpu_ticks += s.own_ticks + s.reaped_ticks;
        g.rss_kib += s.rss_pages * units.page_kib;
        g.processes += 1;
        g.threads += s.threads;
        match read_io(pid) {
            Ok((r, w)) => {
                c.read_bytes += r;
                c.write_bytes += w;
            }
            // Gone since the table was read: its I/O is its parent's now, or lost with it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.note("cannot read a process's /proc io", e),
        }
    }
    (c, g)
}

/// The module variables of `root`'s descendants (not `root` itself: its environment is the
/// step's, already recorded) that have any, bounded as the step's are.
fn sample_modules(t: &ProcTable, root: i32, buf: &mut Vec<u8>) -> Seen {
    let mut seen = Seen::default();
    for pid in t.descendants(root, MAX_PROCS) {
        if let Some(v) = module_vars(pid, buf) {
            if !seen.add(v) {
                break;
            }
        }
    }
    seen
}

fn module_vars(pid: i32, buf: &mut Vec<u8>) -> Option<ModuleVars> {
    buf.clear();
    fs::File::open(format!("/proc/{pid}/environ")).ok()?.take(MAX_ENVIRON).read_to_end(buf).ok()?;
    vars_of(buf)
}

/// The module variables of one environ block, each cut to [`MAX_VAR`] bytes at a `:`.
fn vars_of(environ: &[u8]) -> Option<ModuleVars> {
    let mut vars: ModuleVars = (None, None, None);
    for entry in environ.split(|&b| b == 0) {
        let get = |name: &[u8]| -> Option<String> {
            let v = entry.strip_prefix(name)?.strip_prefix(b"=")?;
            let v = if v.len() > MAX_VAR {
                let cut = &v[..MAX_VAR];
                &cut[..cut.iter().rposition(|&b| b == b':').unwrap_or(0)]
            } else {
                v
            };
            Some(String::from_utf8_lossy(v).into_owned())
        };
        if let Some(v) = get(b"LOADEDMODULES") {
            vars.0 = Some(v);
        } else if let Some(v) = get(b"_LMFILES_") {
            vars.1 = Some(v);
        } else if let Some(v) = get(b"MODULEPATH") {
            vars.2 = Some(v);
        }
    }
    (vars.0.as_deref().is_some_and(|s| !s.is_empty()) || vars.1.as_deref().is_some_and(|s| !s.is_empty()))
        .then_some(vars)
}

/// `base` followed by the modules of `more` it does not have yet.
pub fn union(base: &[Module], more: Vec<Module>) -> Vec<Module> {
    let mut out = base.to_vec();
    for m in more {
        if !out.iter().any(|o| o.name == m.name && o.version == m.version) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Whether a child of `parent` runs with `LOADEDMODULES` in its environment.
    fn has_child_with_modules(parent: u32) -> bool {
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid …: the ppid follows the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            ppid == Some(parent.to_string().as_str())
                && std::fs::read(e.path().join("environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v.starts_with(b"LOADEDMODULES=")))
        })
    }

    #[test]
    fn sees_modules_of_a_grandchild_started_after_module_load() {
        // sh (child) starts sleep (grandchild) with the variables `module load` would set.
        let mut child = Command::new("/bin/sh")
            .env_clear()
            .arg("-c")
            .arg(
                "LOADEDMODULES=lammps/20220106:gcc/12.2.0 _LMFILES_=/mf/lammps/20220106.lua:/mf/gcc/12.2.0.lua \
                  MODULEPATH=/mf sleep 5; true",
            )
            .spawn()
            .unwrap();
        let s =
            Sampler::start(Watch { modules_root: Some(std::process::id() as i32), modules_later: false, usage: None })
                .unwrap();
        // Wait for the event itself (the grandchild runs with the variables), not a guess of how
        // long sh takes to start it; finish() then takes one more look, which sees it.
        let t0 = Instant::now();
        while !has_child_with_modules(child.id()) {
            assert!(t0.elapsed() < Duration::from_secs(30), "sh never started its child");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mods = s.finish(Duration::from_secs(10)).modules;
        child.kill().ok();
        child.wait().ok();
        let names: Vec<String> = mods.iter().map(Module::full_name).collect();
        assert_eq!(names, vec!["lammps/20220106", "gcc/12.2.0"], "{mods:?}");
        assert_eq!(mods[0].file.as_deref(), Some("/mf/lammps/20220106.lua"));
    }

    #[test]
    fn nothing_seen_without_descendants_and_finish_is_prompt() {
        let s = Sampler::start(Watch { modules_root: Some(i32::MAX - 1), modules_later: false, usage: None }).unwrap();
        let t0 = Instant::now();
        let seen = s.finish(Duration::from_secs(2));
        assert!(seen.modules.is_empty() && seen.series.is_none() && seen.problems.is_empty(), "{seen:?}");
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    /// A job whose processes carry enormous module variables costs slurmstepd a bounded amount:
    /// each variable is cut (at a whole module), and what is remembered stays under its bounds.
    #[test]
    fn memory_per_tick_and_per_step_is_bounded() {
        let many: Vec<String> = (0..20_000).map(|i| format!("mod{i}/1.{i}")).collect();
        let environ = format!("LOADEDMODULES={}\0_LMFILES_=\0OTHER=x", many.join(":"));
        let (loaded, _, _) = vars_of(environ.as_bytes()).unwrap();
        let loaded = loaded.unwrap();
        assert!(loaded.len() <= MAX_VAR && loaded.len() > MAX_VAR - 32, "{}", loaded.len());
        assert!(loaded.split(':').all(|m| m.starts_with("mod") && m.contains("/1.")), "cut between modules");
        let mut seen = Seen::default();
        let mut kept = 0;
        for i in 0..10_000 {
            if seen.add((Some(format!("{loaded}:x{i}/1")), None, None)) {
                kept += 1;
            }
        }
        assert!(seen.bytes <= MAX_SEEN_BYTES && seen.set.len() <= MAX_SEEN, "{} bytes", seen.bytes);
        assert_eq!(kept, MAX_SEEN_BYTES / (loaded.len() + 6), "distinct environments until the bytes run out");
        // Repeats cost nothing.
        let mut s = Seen::default();
        for _ in 0..1000 {
            assert!(s.add((Some("gcc/12".into()), None, None)));
        }
        assert_eq!((s.set.len(), s.bytes), (1, 6));
    }

    #[test]
    fn stat_fields_even_with_a_hostile_command_name() {
        let me = read_stat(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id() as i32);
        assert!(me.threads >= 1 && me.rss_pages > 0, "{me:?}");
        assert_eq!(read_stat(-5), None);
        // comm may hold spaces and parentheses: fields are counted from the last ')'.
        let line =
            "42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0 150 25 3 4 20 0 5 0 99 1000 321 18446744073709551615 1";
        assert_eq!(
            parse_stat(line),
            Some(Stat { ppid: 7, own_ticks: 175, reaped_ticks: 7, threads: 5, rss_pages: 321 })
        );
        assert_eq!(parse_stat("42 (cut"), None);
    }

    #[test]
    fn units_come_from_the_auxiliary_vector() {
        // x86_64 Linux: USER_HZ 100 and 4 KiB pages (the test machine; elsewhere read, not assumed).
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Units::of_this_system(), Units { ticks_per_s: 100, page_kib: 4 });
        }
    }

    /// A root process (slurmstepd's place) runs two busy children, waits for them and idles: the
    /// series sees them while they run (processes, threads, memory) and, after they are reaped,
    /// through the root's own counters, so its CPU seconds are the children's, all of them.
    #[test]
    fn usage_series_counts_live_and_reaped_children() {
        let busy = "timeout 3 sh -c 'while :; do :; done'";
        let mut root = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{busy} & {busy} & wait; read x"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = root.id() as i32;
        let s = Sampler::start(Watch { modules_root: None, modules_later: false, usage: Some((pid, 1)) }).unwrap();
        // Wait for the event: both children reaped (the root waited: its reaped CPU shows, and
        // it has no descendants left).
        let t0 = Instant::now();
        loop {
            let t = ProcTable::read(&mut Problems::default());
            let reaped = t.stats.get(&pid).map_or(0, |s| s.reaped_ticks);
            if reaped > 0 && t.descendants(pid, 16).is_empty() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "the busy children never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
        let reaped_s = read_stat(pid).unwrap().reaped_ticks as f64 / Units::of_this_system().ticks_per_s as f64;
        let seen = s.finish(Duration::from_secs(10));
        drop(root.stdin.take());
        root.wait().unwrap();
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
        let series = seen.series.unwrap();
        assert_eq!((series.interval_s, series.per_point), (1, 1));
        assert!(series.points.len() >= 2, "{series:?}");
        assert!(
            (series.cpu_seconds() - reaped_s).abs() < 0.1,
            "{} against {reaped_s}: {series:?}",
            series.cpu_seconds()
        );
        assert!(reaped_s > 0.1, "the children burnt CPU");
        // Sampled while they ran: the sh loops (each under its timeout) with their threads and memory.
        let most = series.points.iter().map(|p| p.processes).max().unwrap();
        assert!(most >= 2, "{series:?}");
        assert!(series.points.iter().any(|p| p.threads >= 2 && p.rss_kib > 0), "{series:?}");
        assert!(series.rss_peak_kib > 0);
        let secs: f64 = series.points.iter().map(|p| p.secs).sum();
        assert!(secs > 0.0 && series.points.windows(2).all(|w| w[0].t <= w[1].t));
    }

    /// A root that vanished (or a /proc that cannot be read) gives fewer points and one message
    /// per kind of trouble, never a failure.
    #[test]
    fn a_vanished_root_gives_fewer_points_and_one_message() {
        let s =
            Sampler::start(Watch { modules_root: None, modules_later: false, usage: Some((i32::MAX - 1, 1)) }).unwrap();
        let seen = s.finish(Duration::from_secs(2));
        let series = seen.series.unwrap();
        assert_eq!(series.points.len(), 1, "the final sample only");
        assert_eq!(series.cpu_seconds(), 0.0);
        assert_eq!(seen.problems.len(), 2, "stat and io, each once: {:?}", seen.problems);
        assert!(seen.problems[0].starts_with("cannot read slurmstepd's /proc stat"), "{:?}", seen.problems);
    }

    #[test]
    fn interval_zero_means_no_series() {
        let s = Sampler::start(Watch {
            modules_root: None,
            modules_later: false,
            usage: Some((std::process::id() as i32, 0)),
        })
        .unwrap();
        assert!(s.finish(Duration::from_secs(2)).series.is_none());
    }

    #[test]
    fn union_keeps_order_and_drops_repeats() {
        let m = |s: &str| Module::from_full_name(s).unwrap();
        let u = union(&[m("gcc/12"), m("mpi/4")], vec![m("mpi/4"), m("lammps/1")]);
        assert_eq!(u.iter().map(Module::full_name).collect::<Vec<_>>(), ["gcc/12", "mpi/4", "lammps/1"]);
    }
}
