//! Modules loaded inside a batch script.
//!
//! The batch step's environment is fixed when the step starts, so `module load lammps` followed
//! by `mpirun lmp` in the script (the usual pattern where MPI is launched without srun) never
//! reaches a step record. While the batch step runs, a low-rate sampler thread in slurmstepd
//! (root, main process: never in the forked task) looks at the batch task's descendants and
//! reads `LOADEDMODULES`, `_LMFILES_` and `MODULEPATH` from their `/proc/<pid>/environ`, which
//! holds the environment each process was started with, i.e. after the script's `module load`.
//! At step end the modules seen are added to the batch step's record.
//!
//! Bounded on every axis: sampling rate (fast for the first seconds, then every few seconds),
//! processes looked at per tick, bytes read per environ (one buffer, reused), bytes kept per
//! variable, distinct environments and their bytes remembered, per tick as over the step: a job
//! cannot make slurmstepd's memory grow with what its processes put in their environment. At
//! step end the plugin waits only briefly for the thread; a thread stuck on a process's memory
//! is left behind rather than stalling slurmstepd.

use runledger_record::{modules, Module};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Processes looked at per tick.
const MAX_PROCS: usize = 512;
/// Bytes of one process's environ read.
const MAX_ENVIRON: u64 = 1 << 20;
/// Distinct module environments remembered per step (and per tick).
const MAX_SEEN: usize = 64;
/// Bytes of one module variable kept (cut at a `:` boundary): 64 KiB is some 2,000 modules.
const MAX_VAR: usize = 64 * 1024;
/// Bytes of module variables remembered per step (and per tick).
const MAX_SEEN_BYTES: usize = 1 << 20;
/// How long slurm_spank_exit waits for the sampler's last look.
pub const FINISH_WAIT: Duration = Duration::from_millis(300);

/// When to sample next: often at first (scripts load modules and launch right away), then
/// rarely (long runs keep the same processes).
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

#[derive(Default)]
struct State {
    stop: bool,
    done: bool,
    seen: Seen,
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

impl Sampler {
    /// Starts sampling the descendants of `root` (the batch task's pid).
    pub fn start(root: i32) -> std::io::Result<Sampler> {
        let shared = Arc::new(Shared::default());
        let inner = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("runledger-modules".into())
            .stack_size(256 * 1024)
            .spawn(move || run(root, &inner))?;
        Ok(Sampler { shared })
    }

    /// Stops the sampler, waiting at most `wait` for its last look, and returns the modules it
    /// saw (each once, in the order first seen in the environments).
    pub fn finish(self, wait: Duration) -> Vec<Module> {
        let deadline = Instant::now() + wait;
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stop = true;
        self.shared.changed.notify_all();
        while !st.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        modules_of(&st.seen)
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

fn run(root: i32, shared: &Shared) {
    let t0 = Instant::now();
    // The one environ buffer, reused across processes and ticks.
    let mut buf = Vec::new();
    loop {
        // Sampled without the lock (a read of /proc/<pid>/environ can block): `finish` never waits on it.
        let found = sample(root, &mut buf);
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        for vars in found.set {
            if !st.seen.add(vars) {
                break;
            }
        }
        if st.stop {
            st.done = true;
            shared.changed.notify_all();
            return;
        }
        let _unused = shared.changed.wait_timeout(st, interval(t0.elapsed()));
        // Loop: one more sample after a stop request, so the end state is seen too.
    }
}

/// The module variables of `root`'s descendants (not `root` itself: its environment is the
/// step's, already recorded) that have any, bounded as the step's are.
fn sample(root: i32, buf: &mut Vec<u8>) -> Seen {
    let mut seen = Seen::default();
    for pid in descendants(root) {
        if let Some(v) = module_vars(pid, buf) {
            if !seen.add(v) {
                break;
            }
        }
    }
    seen
}

/// Descendants of `root` by parent pid, breadth first, at most [`MAX_PROCS`].
fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if out.len() >= MAX_PROCS {
                return out;
            }
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// The parent pid from `/proc/<pid>/stat` (the field after the parenthesised command name,
/// which may itself contain spaces and parentheses).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
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
        let s = Sampler::start(std::process::id() as i32).unwrap();
        // Wait for the event itself (the grandchild runs with the variables), not a guess of how
        // long sh takes to start it; finish() then takes one more look, which sees it.
        let t0 = Instant::now();
        while !has_child_with_modules(child.id()) {
            assert!(t0.elapsed() < Duration::from_secs(30), "sh never started its child");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mods = s.finish(Duration::from_secs(10));
        child.kill().ok();
        child.wait().ok();
        let names: Vec<String> = mods.iter().map(Module::full_name).collect();
        assert_eq!(names, vec!["lammps/20220106", "gcc/12.2.0"], "{mods:?}");
        assert_eq!(mods[0].file.as_deref(), Some("/mf/lammps/20220106.lua"));
    }

    #[test]
    fn nothing_seen_without_descendants_and_finish_is_prompt() {
        let s = Sampler::start(i32::MAX - 1).unwrap();
        let t0 = Instant::now();
        assert!(s.finish(Duration::from_secs(2)).is_empty());
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
    fn parent_pid_from_stat() {
        assert_eq!(parent_of(std::process::id() as i32), Some(std::os::unix::process::parent_id() as i32));
        assert_eq!(parent_of(-5), None);
    }

    #[test]
    fn union_keeps_order_and_drops_repeats() {
        let m = |s: &str| Module::from_full_name(s).unwrap();
        let u = union(&[m("gcc/12"), m("mpi/4")], vec![m("mpi/4"), m("lammps/1")]);
        assert_eq!(u.iter().map(Module::full_name).collect::<Vec<_>>(), ["gcc/12", "mpi/4", "lammps/1"]);
    }
}
